//! `murmur services`: every service in the mesh and its instances, as one node sees them.

use std::net::SocketAddr;

use clap::Args;

use super::client::{ADMIN_ENV, get_json};
use super::output::{Output, labels, print_table};
use super::rt::client_runtime;
use crate::api::services::ServicesResponse;

#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// Admin API of the node to ask.
    #[arg(long, env = ADMIN_ENV, default_value = crate::config::typed::DEFAULT_ADMIN)]
    admin: SocketAddr,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    output: Output,
}

pub fn run(args: ServicesArgs) -> anyhow::Result<()> {
    let resp: ServicesResponse =
        client_runtime()?.block_on(get_json(args.admin, "/v1/services"))?;
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
        return Ok(());
    }
    let mut rows = Vec::new();
    for s in &resp.services {
        for i in &s.instances {
            let state = if !i.accepts_traffic {
                if i.draining { "draining" } else { "critical" }
            } else {
                match i.health {
                    murmur_membership::records::Health::Warning => "warning",
                    _ => "passing",
                }
            };
            rows.push(vec![
                s.name.clone(),
                i.node.clone(),
                i.mesh_addr.to_string(),
                json_name(&i.protocol),
                format!("{state}{}", if i.stale { " (stale)" } else { "" }),
                i.weight.to_string(),
                json_name(&s.balancer),
                labels(&i.labels),
            ]);
        }
    }
    print_table(
        &[
            "SERVICE", "NODE", "ADDRESS", "PROTOCOL", "HEALTH", "WEIGHT", "BALANCER", "LABELS",
        ],
        &rows,
    );
    Ok(())
}

/// How a serde enum value is spelled in JSON and config.
fn json_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
