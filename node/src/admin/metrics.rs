//! `GET /metrics`: Prometheus text format.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use murmur_membership::MemberState;

use super::http::{Body, with_type};
use super::state::AdminState;
use crate::telemetry::metrics::render_now;

/// Renders every metric of the node.
pub async fn get(state: &AdminState) -> hyper::Response<Body> {
    let mut out = String::with_capacity(16 * 1024);
    let t = &state.telemetry;
    t.requests.render(&mut out);
    t.duration.render(&mut out);
    t.in_flight.render(&mut out);
    t.retries.render(&mut out);
    t.rate_limited.render(&mut out);
    t.denied.render(&mut out);
    t.shadow_denied.render(&mut out);
    t.timeouts.render(&mut out);
    t.retry_budget_exhausted.render(&mut out);
    t.ejections.render(&mut out);
    t.overloaded.render(&mut out);
    t.faults.render(&mut out);
    t.route_requests.render(&mut out);
    t.route_duration.render(&mut out);
    t.cross_zone.render(&mut out);
    t.mirrored.render(&mut out);
    let log = t.access_log.counts();
    single(
        &mut out,
        "murmur_access_log_lines_total",
        "counter",
        "Access log lines written.",
        load(&log.written),
    );
    single(
        &mut out,
        "murmur_access_log_dropped_total",
        "counter",
        "Access log lines dropped: the writer's queue was full (a slow or stalled output) or \
         the output failed.",
        load(&log.dropped),
    );
    t.dns_queries.render(&mut out);
    t.captured.render(&mut out);
    t.external.render(&mut out);
    t.gateway_requests.render(&mut out);
    t.gateway_connections.render(&mut out);
    traffic_metrics(state, &mut out);
    membership_metrics(state, &mut out);
    let incarnations = state.membership.known_incarnations().await as f64;
    single(
        &mut out,
        "murmur_gossip_incarnations",
        "gauge",
        "Node incarnations gossip remembers, live and dead: each is an entry of every digest; \
         a single message holds about 6 000.",
        incarnations,
    );
    gossip_metrics(state, &mut out);
    guard_metrics(state, &mut out);
    listener_metrics(state, &mut out);
    quic_metrics(state, &mut out);
    policy_metrics(state, &mut out);
    trace_metrics(state, &mut out);
    identity_metrics(state, &mut out);
    with_type(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        out.into_bytes(),
    )
}

/// An unlabelled sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    render_now(out, name, kind, help, &[(vec![], value)]);
}

fn load(c: &AtomicU64) -> f64 {
    c.load(Ordering::Relaxed) as f64
}

fn traffic_metrics(state: &AdminState, out: &mut String) {
    let shares: Vec<_> = state
        .traffic
        .shares()
        .into_iter()
        .map(|(doc, share)| (vec![("ratelimit", doc)], share))
        .collect();
    let help = "This instance's share of each global rate limit (split through gossip).";
    render_now(out, "murmur_ratelimit_share", "gauge", help, &shares);
}

fn membership_metrics(state: &AdminState, out: &mut String) {
    let view = state.membership.view();
    let members: Vec<_> = [
        MemberState::Alive,
        MemberState::Draining,
        MemberState::Left,
        MemberState::Dead,
        MemberState::Joining,
    ]
    .iter()
    .map(|s| {
        let name = crate::api::members::state_name(*s);
        (vec![("state", name.to_owned())], view.count(*s) as f64)
    })
    .collect();
    let help = "Members by state, as this node sees them.";
    render_now(out, "murmur_members", "gauge", help, &members);
    let help = "1 while part of the view comes from disk (fail-static), not gossip.";
    single(
        out,
        "murmur_view_stale",
        "gauge",
        help,
        f64::from(u8::from(view.stale)),
    );
}

fn gossip_metrics(state: &AdminState, out: &mut String) {
    let g = &state.gossip_stats;
    let by_direction = |sent: &AtomicU64, received: &AtomicU64| {
        vec![
            (vec![("direction", "sent".to_owned())], load(sent)),
            (vec![("direction", "received".to_owned())], load(received)),
        ]
    };
    let help = "Gossip messages sent and received.";
    render_now(
        out,
        "murmur_gossip_messages_total",
        "counter",
        help,
        &by_direction(&g.sent, &g.received),
    );
    let help = "Gossip payload bytes.";
    render_now(
        out,
        "murmur_gossip_bytes_total",
        "counter",
        help,
        &by_direction(&g.sent_bytes, &g.received_bytes),
    );
    let help = "Gossip messages refused as malformed, oversized or empty once filtered, or \
                naming a packing base this node does not hold.";
    single(
        out,
        "murmur_gossip_rejected_total",
        "counter",
        help,
        load(&g.rejected),
    );
    let help = "Of those, packed gossip messages naming a base this node does not hold (a peer \
                restarted, a base evicted, a roster of other members): dropped as lost.";
    single(
        out,
        "murmur_gossip_base_missing_total",
        "counter",
        help,
        load(&g.base_missing),
    );
    let help = "Gossip messages dropped (peer unreachable or queue full).";
    single(
        out,
        "murmur_gossip_dropped_total",
        "counter",
        help,
        load(&g.dropped),
    );
    let help = "Gossip messages sent packed against an earlier message the peer holds \
                (digests shrink to the beats that changed).";
    single(
        out,
        "murmur_gossip_sent_against_base_total",
        "counter",
        help,
        load(&g.sent_against_base),
    );
    let help = "Of those, Syns sent packed against this node's list of members, to a peer not \
                gossiped with yet (dropped by a peer that knows other members).";
    single(
        out,
        "murmur_gossip_sent_against_roster_total",
        "counter",
        help,
        load(&g.sent_against_roster),
    );
    let help = "Streams to a peer not opened: it allowed no more at once and none freed in time.";
    let exhausted = load(&state.endpoint.counters().streams_exhausted);
    single(
        out,
        "murmur_quic_streams_exhausted_total",
        "counter",
        help,
        exhausted,
    );
    let help =
        "QUIC connections refused at the handshake (missing, foreign or invalid certificate).";
    let refused = load(&state.endpoint.counters().handshakes_refused);
    single(
        out,
        "murmur_handshakes_refused_total",
        "counter",
        help,
        refused,
    );
}

/// What the gossip guard kept from chitchat: the signs of a member speaking for another.
fn guard_metrics(state: &AdminState, out: &mut String) {
    let g = state.membership.guard_stats();
    let refused: Vec<_> = g
        .refused
        .iter()
        .map(|(why, n)| (vec![("reason", why.label().to_owned())], *n as f64))
        .collect();
    let help = "Gossip deltas and digest entries refused before chitchat saw them, by reason.";
    render_now(
        out,
        "murmur_gossip_refused_total",
        "counter",
        help,
        &refused,
    );
    let help = "Relayed heartbeats above what their member can have reached, not believed.";
    single(
        out,
        "murmur_gossip_heartbeats_clamped_total",
        "counter",
        help,
        g.heartbeats_clamped as f64,
    );
    let forged: Vec<_> = g
        .forged_self
        .iter()
        .map(|(sender, n)| (vec![("sender", sender.clone())], *n as f64))
        .collect();
    let help = "Gossip about this node sent by others (only this node may write it), by sender.";
    render_now(
        out,
        "murmur_gossip_forged_self_total",
        "counter",
        help,
        &forged,
    );
    let help = "Gossip messages altered by the guard before chitchat saw them.";
    single(
        out,
        "murmur_gossip_filtered_total",
        "counter",
        help,
        load(&state.gossip_stats.filtered),
    );
}

/// Connections of each local listener: open, refused at the cap, closed for silence.
fn listener_metrics(state: &AdminState, out: &mut String) {
    let per = |f: &dyn Fn(&crate::listener::ListenerStats) -> f64| -> Vec<_> {
        state
            .listeners
            .iter()
            .map(|g| (vec![("listener", g.name.clone())], f(&g.stats)))
            .collect()
    };
    let help = "Connections open on each local listener.";
    render_now(
        out,
        "murmur_listener_connections",
        "gauge",
        help,
        &per(&|s| load(&s.open)),
    );
    let help = "Connections closed at once because the listener was at its connection cap.";
    render_now(
        out,
        "murmur_listener_refused_total",
        "counter",
        help,
        &per(&|s| load(&s.refused)),
    );
    let timeouts: Vec<_> = state
        .listeners
        .iter()
        .flat_map(|g| {
            [
                ("first_byte", load(&g.stats.first_byte_timeouts)),
                ("idle", load(&g.stats.idle_timeouts)),
            ]
            .map(|(why, n)| {
                (
                    vec![("listener", g.name.clone()), ("reason", why.to_owned())],
                    n,
                )
            })
        })
        .collect();
    let help = "Connections closed for silence: no first byte in time, or idle.";
    render_now(
        out,
        "murmur_listener_timeouts_total",
        "counter",
        help,
        &timeouts,
    );
}

fn quic_metrics(state: &AdminState, out: &mut String) {
    let peers = state.endpoint.peer_stats();
    let per_peer = |f: &dyn Fn(&murmur_transport::endpoint::PeerStats) -> f64| -> Vec<_> {
        peers
            .iter()
            .map(|p| (vec![("peer", p.peer.clone())], f(p)))
            .collect()
    };
    let help = "Smoothed round-trip time to each peer (its slowest connection).";
    render_now(
        out,
        "murmur_quic_rtt_seconds",
        "gauge",
        help,
        &per_peer(&|p| p.rtt.as_secs_f64()),
    );
    let help = "Packets declared lost on the connections to each peer since it was last \
                connected, closed connections included.";
    render_now(
        out,
        "murmur_quic_lost_packets_total",
        "counter",
        help,
        &per_peer(&|p| p.lost_packets as f64),
    );
    let help = "Packets sent on the connections to each peer since it was last connected, \
                closed connections included.";
    render_now(
        out,
        "murmur_quic_sent_packets_total",
        "counter",
        help,
        &per_peer(&|p| p.sent_packets as f64),
    );
    let help = "Largest UDP payload the path to each peer carries, as MTU discovery found it.";
    render_now(
        out,
        "murmur_quic_path_mtu_bytes",
        "gauge",
        help,
        &per_peer(&|p| f64::from(p.mtu)),
    );
}

fn policy_metrics(state: &AdminState, out: &mut String) {
    let status = state.policy.policy.status();
    let help = "Policy documents in force (deletes excluded).";
    single(
        out,
        "murmur_policy_documents",
        "gauge",
        help,
        status.effective.len() as f64,
    );
    let digest = vec![("digest", status.effective.digest().to_owned())];
    let help = "Digest of the policy set in force: equal digests mean equal policy.";
    render_now(
        out,
        "murmur_policy_digest_info",
        "gauge",
        help,
        &[(digest, 1.0)],
    );
    let rejected: Vec<_> = status
        .rejected
        .iter()
        .map(|(reason, n)| (vec![("reason", (*reason).to_owned())], *n as f64))
        .collect();
    let help = "Policy documents refused, by reason.";
    render_now(
        out,
        "murmur_policy_rejected_total",
        "counter",
        help,
        &rejected,
    );
}

fn trace_metrics(state: &AdminState, out: &mut String) {
    let ts = &state.traces;
    let help = "Spans delivered to the OTLP collector.";
    single(
        out,
        "murmur_trace_spans_exported_total",
        "counter",
        help,
        load(&ts.exported),
    );
    let help = "Spans dropped because the export queue was full or the collector failed.";
    single(
        out,
        "murmur_trace_spans_dropped_total",
        "counter",
        help,
        load(&ts.dropped),
    );
}

fn identity_metrics(state: &AdminState, out: &mut String) {
    let cert = state.tls.local_cert();
    let expiry = cert
        .not_after
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let help = "When this node's certificate expires (Unix time).";
    let serial = vec![("serial", cert.serial)];
    render_now(
        out,
        "murmur_certificate_expiry_timestamp_seconds",
        "gauge",
        help,
        &[(serial, expiry)],
    );
    let info = vec![
        ("name", state.node.name.clone()),
        (
            "generation",
            state.membership.chitchat_id().generation_id.to_string(),
        ),
        ("version", env!("CARGO_PKG_VERSION").to_owned()),
    ];
    let help = "This node: name, generation and version.";
    render_now(out, "murmur_node_info", "gauge", help, &[(info, 1.0)]);
    renewal_metrics(state, out);
    issuer_metrics(state, out);
    mesh_certificate_metrics(state, out);
}

fn renewal_metrics(state: &AdminState, out: &mut String) {
    let r = state.identity.renew.snapshot();
    let help = "Renewals of this node's certificate, by result.";
    render_now(
        out,
        "murmur_certificate_renewals_total",
        "counter",
        help,
        &[
            (vec![("result", "ok".to_owned())], r.renewals as f64),
            (vec![("result", "failed".to_owned())], r.failures as f64),
        ],
    );
}

fn issuer_metrics(state: &AdminState, out: &mut String) {
    let Some(issuer) = &state.identity.issuer else {
        return;
    };
    let s = issuer.stats();
    let help = "Certificates this issuer signed, by request kind.";
    render_now(
        out,
        "murmur_issuer_issued_total",
        "counter",
        help,
        &[
            (vec![("kind", "join".to_owned())], load(&s.joins)),
            (vec![("kind", "renewal".to_owned())], load(&s.renewals)),
        ],
    );
    let refused: Vec<_> = s
        .refused()
        .into_iter()
        .map(|(code, n)| (vec![("reason", code.as_str().to_owned())], n as f64))
        .collect();
    let help = "Certificate requests this issuer refused, by reason.";
    render_now(
        out,
        "murmur_issuer_refused_total",
        "counter",
        help,
        &refused,
    );
    let expiry = issuer
        .authority()
        .not_after()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let help = "When this node's issuer credential expires (Unix time): renew it before.";
    single(
        out,
        "murmur_issuer_expiry_timestamp_seconds",
        "gauge",
        help,
        expiry,
    );
}

/// Every member's certificate expiry, and the warnings (near expiry, failing to renew,
/// expired, revoked) as `murmur status` and the dashboard show them.
fn mesh_certificate_metrics(state: &AdminState, out: &mut String) {
    let view = state.membership.view();
    let certs = crate::identity::warnings::assess(
        &view,
        &state.tls.revocations(),
        crate::clock::unix_now_ms(),
    );
    let expiry: Vec<_> = certs
        .iter()
        .filter_map(|c| {
            let r = c.record.as_ref()?;
            Some((
                vec![("node", c.name.clone())],
                r.not_after_ms as f64 / 1000.0,
            ))
        })
        .collect();
    let help = "When each member's certificate expires (Unix time), as it gossips it.";
    render_now(
        out,
        "murmur_mesh_certificate_expiry_timestamp_seconds",
        "gauge",
        help,
        &expiry,
    );
    let warnings: Vec<_> = certs
        .iter()
        .filter_map(|c| {
            let w = c.warning.as_ref()?;
            Some((
                vec![("node", c.name.clone()), ("reason", w.label().to_owned())],
                1.0,
            ))
        })
        .collect();
    let help = "1 for each member whose certificate needs attention: expiring (less than a \
                third of its life left), renewal-failing, expired or revoked.";
    render_now(
        out,
        "murmur_mesh_certificate_warnings",
        "gauge",
        help,
        &warnings,
    );
}
