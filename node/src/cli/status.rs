//! `murmur status` (one screen about a node and the mesh it sees) and `murmur top` (its traffic,
//! refreshing).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;

use super::client::{ADMIN_ENV, get_json};
use super::output::print_table;
use super::rt::client_runtime;
use crate::api::mesh::MeshResponse;
use crate::api::policies::PoliciesResponse;
use crate::api::status::{CellJson, StatusResponse};
use crate::api::traffic::TrafficResponse;
use crate::api::traffic::{Direction, TrafficSummary};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Admin API of the node to ask.
    #[arg(long, env = ADMIN_ENV, default_value = crate::config::typed::DEFAULT_ADMIN)]
    admin: SocketAddr,
    /// Warn when the certificate expires within this many days.
    #[arg(long, default_value_t = 14)]
    warn_days: u64,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Admin API of the node to ask.
    #[arg(long, env = ADMIN_ENV, default_value = crate::config::typed::DEFAULT_ADMIN)]
    admin: SocketAddr,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 2)]
    every: u64,
    /// Stop after this many screens (default: until Ctrl-C).
    #[arg(long)]
    count: Option<u64>,
}

pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let rt = client_runtime()?;
    let (status, mesh, traffic, policy) = rt.block_on(async {
        anyhow::Ok((
            get_json::<StatusResponse>(args.admin, "/v1/status").await?,
            get_json::<MeshResponse>(args.admin, "/v1/mesh").await?,
            get_json::<TrafficResponse>(args.admin, "/v1/traffic").await?,
            policy_line(args.admin).await,
        ))
    })?;
    print!(
        "{}",
        render_status(&status, &mesh, &traffic, policy.as_deref(), args.warn_days)
    );
    Ok(())
}

/// The policy digest line, if the node serves `/v1/policies`.
async fn policy_line(admin: SocketAddr) -> Option<String> {
    let p = get_json::<PoliciesResponse>(admin, "/v1/policies")
        .await
        .ok()?;
    Some(format!("{} ({} documents)", p.digest, p.documents.len()))
}

fn render_status(
    s: &StatusResponse,
    mesh: &MeshResponse,
    traffic: &TrafficResponse,
    policy: Option<&str>,
    warn_days: u64,
) -> String {
    let mut out = String::new();
    let days_left = s.certificate.expires_in_s / 86_400;
    out.push_str(&format!(
        "node         {}  {}  generation {}  up {}\n",
        s.name,
        s.id,
        s.generation,
        human(Duration::from_secs(s.uptime_s))
    ));
    out.push_str(&format!(
        "certificate  serial {}  expires {} ({} days)\n",
        s.certificate.serial,
        super::output::rfc3339(UNIX_EPOCH + Duration::from_secs(s.certificate.not_after_unix)),
        days_left
    ));
    out.push_str(&identity_lines(s));
    // A node that renews is covered by the mesh's warnings below; one that cannot (renewal off,
    // or no issuer anywhere in the mesh: hand-issued certificates) needs a hand.
    let issuers = mesh
        .nodes
        .iter()
        .any(|n| n.certificate.as_ref().is_some_and(|c| c.issuer));
    let renews = issuers && !matches!(s.identity.renewal.as_str(), "off" | "no-issuer");
    if s.certificate.expires_in_s <= 0 {
        out.push_str(
            "WARNING      the certificate has EXPIRED: peers refuse this node; issue a new one\n",
        );
    } else if (s.certificate.expires_in_s as u64) < warn_days * 86_400 && !renews {
        out.push_str(&format!(
            "WARNING      the certificate expires in {}: issue a new one (`murmur cert issue`) and replace the files; the node picks them up without a restart\n",
            human(Duration::from_secs(s.certificate.expires_in_s as u64))
        ));
    }
    for n in &mesh.nodes {
        if let Some(w) = n.certificate.as_ref().and_then(|c| c.warning.as_ref()) {
            out.push_str(&format!("WARNING      node {}: {w}\n", n.name));
        }
    }
    let count = |state: &str| mesh.nodes.iter().filter(|n| n.state == state).count();
    let joining = match count("joining") {
        0 => String::new(),
        n => format!(", {n} joining"),
    };
    out.push_str(&format!(
        "members      {} alive, {} draining, {} dead, {} revoked{joining}{}\n",
        count("alive"),
        count("draining"),
        count("dead"),
        count("revoked"),
        if mesh.stale {
            " (view partly from disk: stale)"
        } else {
            ""
        }
    ));
    out.push_str(&cell_lines(&s.cell));
    out.push_str(&format!("policy       {}\n", policy.unwrap_or("-")));
    out.push('\n');
    out.push_str(&service_table(mesh, traffic));
    out
}

/// The cell, its custodians and the other cells; nothing for a node without the cell link (a
/// single-cell mesh reads as before).
fn cell_lines(c: &CellJson) -> String {
    if !c.linked {
        return String::new();
    }
    let custodians = if c.custodians.is_empty() {
        "none yet".to_owned()
    } else {
        c.custodians.join(", ")
    };
    let me = if c.acting {
        " (this node acts)"
    } else if c.in_top {
        " (this node stands by)"
    } else {
        ""
    };
    let mut out = format!("cell         {}  custodians {custodians}{me}\n", c.name);
    for r in &c.remote {
        out.push_str(&format!(
            "  cell {}  {} members, {} services  from {}{}\n",
            r.name,
            r.members,
            r.services,
            r.custodians.first().map_or("?", String::as_str),
            if r.stale { "  STALE" } else { "" }
        ));
    }
    out
}

/// Renewal and, for an issuer, its credential.
fn identity_lines(s: &StatusResponse) -> String {
    let i = &s.identity;
    let mut out = format!("renewal      {}", i.renewal);
    if i.renewals > 0 {
        out.push_str(&format!(
            "  ({} renewals, last by {})",
            i.renewals,
            i.last_issuer.as_deref().unwrap_or("?")
        ));
    }
    if let Some(next) = i.next_renewal_unix_ms {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        out.push_str(&format!(
            "  next attempt in {}",
            human(Duration::from_millis(next.saturating_sub(now)))
        ));
    }
    if let Some(e) = &i.renewal_error {
        out.push_str(&format!("  last error: {e}"));
    }
    out.push('\n');
    if let Some(issuer) = &i.issuer {
        out.push_str(&format!(
            "issuer       serial {}  expires {}  issued {} joins, {} renewals\n",
            issuer.serial,
            super::output::rfc3339(UNIX_EPOCH + Duration::from_secs(issuer.not_after_unix)),
            issuer.joins,
            issuer.renewals
        ));
    }
    if !i.revoked.is_empty() {
        out.push_str(&format!("revoked      {}\n", i.revoked.join(", ")));
    }
    out
}

fn service_table(mesh: &MeshResponse, traffic: &TrafficResponse) -> String {
    let find = |dir: Direction, svc: &str| -> Option<&TrafficSummary> {
        traffic
            .services
            .iter()
            .find(|t| t.direction == dir && t.service == svc)
    };
    let mut names: Vec<String> = mesh.services.iter().map(|s| s.name.clone()).collect();
    for t in &traffic.services {
        if !names.contains(&t.service) {
            names.push(t.service.clone());
        }
    }
    let rows: Vec<Vec<String>> = names
        .iter()
        .map(|name| {
            let eps = mesh
                .services
                .iter()
                .find(|s| &s.name == name)
                .map_or(&[][..], |s| &s.endpoints[..]);
            let passing = eps
                .iter()
                .filter(|e| e.health == murmur_membership::records::Health::Passing && !e.draining)
                .count();
            let mut row = vec![name.clone(), format!("{passing}/{}", eps.len())];
            for dir in [Direction::Outbound, Direction::Inbound] {
                row.extend(traffic_cells(find(dir, name)));
            }
            row
        })
        .collect();
    let mut out = String::from("services (traffic over the last minute)\n");
    out.push_str(&super::output::table(
        &[
            "SERVICE", "HEALTHY", "OUT RPS", "OUT OK", "OUT P99", "IN RPS", "IN OK", "IN P99",
        ],
        &rows,
    ));
    out
}

fn traffic_cells(t: Option<&TrafficSummary>) -> [String; 3] {
    match t {
        Some(t) if t.requests > 0 => [
            format!("{:.2}", t.rate),
            format!("{:.1}%", t.success_rate * 100.0),
            format!("{} ms", t.p99_ms),
        ],
        _ => ["-".into(), "-".into(), "-".into()],
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

pub fn top(args: TopArgs) -> anyhow::Result<()> {
    let rt = client_runtime()?;
    let mut screens = 0;
    loop {
        let traffic: TrafficResponse = rt.block_on(get_json(args.admin, "/v1/traffic"))?;
        let now = SystemTime::now();
        let rows: Vec<Vec<String>> = traffic
            .services
            .iter()
            .filter(|t| t.requests > 0)
            .map(|t| {
                vec![
                    t.service.clone(),
                    t.direction.as_str().to_owned(),
                    format!("{:.2}", t.rate),
                    format!("{:.1}%", t.success_rate * 100.0),
                    format!("{} ms", t.p50_ms),
                    format!("{} ms", t.p99_ms),
                ]
            })
            .collect();
        // Clear the screen and go home, like top(1).
        print!("\x1b[2J\x1b[H");
        println!(
            "murmur top — node {} — last {} s — {}",
            traffic.node,
            traffic.window_s,
            super::output::rfc3339(now)
        );
        print_table(
            &["SERVICE", "DIRECTION", "RPS", "SUCCESS", "P50", "P99"],
            &rows,
        );
        screens += 1;
        if args.count.is_some_and(|c| screens >= c) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(args.every.max(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::status::RemoteCellJson;

    #[test]
    fn the_cell_is_shown_only_when_linked_with_stale_cells_marked() {
        assert_eq!(cell_lines(&CellJson::default()), "");
        let c = CellJson {
            name: "a".into(),
            linked: true,
            custodians: vec!["a1".into(), "a2".into()],
            acting: true,
            in_top: true,
            remote: vec![RemoteCellJson {
                name: "b".into(),
                members: 3,
                custodians: vec!["b2".into(), "b1".into()],
                services: 2,
                stale: true,
                policy_digest: String::new(),
            }],
        };
        assert_eq!(
            cell_lines(&c),
            "cell         a  custodians a1, a2 (this node acts)\n  cell b  3 members, 2 services  \
             from b2  STALE\n"
        );
    }
}
