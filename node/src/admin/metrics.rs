//! `GET /metrics`: Prometheus text format.

use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use murmur_membership::MemberState;

use super::http::{Body, with_type};
use crate::node::NodeContext;
use crate::telemetry::metrics::render_now;

/// Renders every metric of the node.
pub async fn get(ctx: &NodeContext) -> hyper::Response<Body> {
    let mut out = String::with_capacity(16 * 1024);
    let t = &ctx.telemetry;
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
    let shares: Vec<_> = ctx
        .proxy
        .traffic
        .shares()
        .into_iter()
        .map(|(doc, share)| (vec![("ratelimit", doc)], share))
        .collect();
    render_now(
        &mut out,
        "murmur_ratelimit_share",
        "gauge",
        "This instance's share of each global rate limit (split through gossip).",
        &shares,
    );
    node_metrics(ctx, &mut out);
    render_now(
        &mut out,
        "murmur_gossip_incarnations",
        "gauge",
        "Node incarnations gossip remembers, live and dead: each is an entry of every digest; \
         a single message holds about 6 000.",
        &[(vec![], ctx.membership.known_incarnations().await as f64)],
    );
    with_type(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        out.into_bytes(),
    )
}

fn node_metrics(ctx: &NodeContext, out: &mut String) {
    let view = ctx.membership.view();
    let states = [
        MemberState::Alive,
        MemberState::Draining,
        MemberState::Left,
        MemberState::Dead,
    ];
    let members: Vec<_> = states
        .iter()
        .map(|s| {
            let name = super::members::state_name(*s);
            (vec![("state", name.to_owned())], view.count(*s) as f64)
        })
        .collect();
    render_now(
        out,
        "murmur_members",
        "gauge",
        "Members by state, as this node sees them.",
        &members,
    );
    render_now(
        out,
        "murmur_view_stale",
        "gauge",
        "1 while part of the view comes from disk (fail-static), not gossip.",
        &[(vec![], f64::from(u8::from(view.stale)))],
    );

    let g = &ctx.gossip_stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;
    render_now(
        out,
        "murmur_gossip_messages_total",
        "counter",
        "Gossip messages sent and received.",
        &[
            (vec![("direction", "sent".into())], load(&g.sent)),
            (vec![("direction", "received".into())], load(&g.received)),
        ],
    );
    render_now(
        out,
        "murmur_gossip_bytes_total",
        "counter",
        "Gossip payload bytes.",
        &[
            (vec![("direction", "sent".into())], load(&g.sent_bytes)),
            (
                vec![("direction", "received".into())],
                load(&g.received_bytes),
            ),
        ],
    );
    render_now(
        out,
        "murmur_gossip_rejected_total",
        "counter",
        "Gossip messages refused as malformed or oversized.",
        &[(vec![], load(&g.rejected))],
    );
    render_now(
        out,
        "murmur_gossip_dropped_total",
        "counter",
        "Gossip messages dropped (peer unreachable or queue full).",
        &[(vec![], load(&g.dropped))],
    );
    render_now(
        out,
        "murmur_handshakes_refused_total",
        "counter",
        "QUIC connections refused at the handshake (missing, foreign or invalid certificate).",
        &[(vec![], load(&ctx.endpoint.counters().handshakes_refused))],
    );

    let peers = ctx.endpoint.peer_stats();
    let rtt: Vec<_> = peers
        .iter()
        .map(|p| (vec![("peer", p.peer.clone())], p.rtt.as_secs_f64()))
        .collect();
    render_now(
        out,
        "murmur_quic_rtt_seconds",
        "gauge",
        "Smoothed round-trip time to each peer.",
        &rtt,
    );
    let lost: Vec<_> = peers
        .iter()
        .map(|p| (vec![("peer", p.peer.clone())], p.lost_packets as f64))
        .collect();
    render_now(
        out,
        "murmur_quic_lost_packets_total",
        "counter",
        "Packets declared lost on the connection to each peer.",
        &lost,
    );
    let sent: Vec<_> = peers
        .iter()
        .map(|p| (vec![("peer", p.peer.clone())], p.sent_packets as f64))
        .collect();
    render_now(
        out,
        "murmur_quic_sent_packets_total",
        "counter",
        "Packets sent on the connection to each peer.",
        &sent,
    );

    let status = ctx.policy.status();
    render_now(
        out,
        "murmur_policy_documents",
        "gauge",
        "Policy documents in force (deletes excluded).",
        &[(vec![], status.effective.len() as f64)],
    );
    render_now(
        out,
        "murmur_policy_digest_info",
        "gauge",
        "Digest of the policy set in force: equal digests mean equal policy.",
        &[(vec![("digest", status.effective.digest().to_owned())], 1.0)],
    );
    let rejected: Vec<_> = status
        .rejected
        .iter()
        .map(|(reason, n)| (vec![("reason", (*reason).to_owned())], *n as f64))
        .collect();
    render_now(
        out,
        "murmur_policy_rejected_total",
        "counter",
        "Policy documents refused, by reason.",
        &rejected,
    );

    let ts = &ctx.traces.stats;
    render_now(
        out,
        "murmur_trace_spans_exported_total",
        "counter",
        "Spans delivered to the OTLP collector.",
        &[(vec![], load(&ts.exported))],
    );
    render_now(
        out,
        "murmur_trace_spans_dropped_total",
        "counter",
        "Spans dropped because the export queue was full or the collector failed.",
        &[(vec![], load(&ts.dropped))],
    );

    let cert = ctx.tls.local_cert();
    let expiry = cert
        .not_after
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    render_now(
        out,
        "murmur_certificate_expiry_timestamp_seconds",
        "gauge",
        "When this node's certificate expires (Unix time).",
        &[(vec![("serial", cert.serial)], expiry)],
    );
    render_now(
        out,
        "murmur_node_info",
        "gauge",
        "This node: name, generation and version.",
        &[(
            vec![
                ("name", ctx.config.name.to_string()),
                (
                    "generation",
                    ctx.membership.chitchat_id().generation_id.to_string(),
                ),
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ],
            1.0,
        )],
    );
}
