//! `murmur members`: the mesh as one node sees it.

use std::net::SocketAddr;

use clap::Args;

use super::client::{ADMIN_ENV, get_json};
use super::output::{Output, labels, print_table};
use super::rt::client_runtime;
use crate::api::members::MembersResponse;

#[derive(Debug, Args)]
pub struct MembersArgs {
    /// Admin API of the node to ask.
    #[arg(long, env = ADMIN_ENV, default_value = crate::config::typed::DEFAULT_ADMIN)]
    admin: SocketAddr,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Also list members that left.
    #[arg(long)]
    all: bool,
    /// Wait (up to 30 s) until at least this many members are alive before printing.
    #[arg(long, value_name = "N")]
    wait_alive: Option<usize>,
}

pub fn run(args: MembersArgs) -> anyhow::Result<()> {
    let path = if args.all {
        "/v1/members?all=true"
    } else {
        "/v1/members"
    };
    let resp = client_runtime()?.block_on(fetch(args.admin, path, args.wait_alive))?;
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = resp
        .members
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.mesh_addr.to_string(),
                format!("{}{}", m.state, if m.stale { " (stale)" } else { "" }),
                m.generation.to_string(),
                labels(&m.labels),
                if m.services.is_empty() {
                    "-".into()
                } else {
                    m.services.join(",")
                },
            ]
        })
        .collect();
    print_table(
        &[
            "NAME",
            "ADDRESS",
            "STATE",
            "GENERATION",
            "LABELS",
            "SERVICES",
        ],
        &rows,
    );
    Ok(())
}

async fn fetch(
    admin: SocketAddr,
    path: &str,
    wait_alive: Option<usize>,
) -> anyhow::Result<MembersResponse> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let last = get_json::<MembersResponse>(admin, path).await;
        let Some(want) = wait_alive else { return last };
        if let Ok(resp) = &last {
            let alive = resp.members.iter().filter(|m| m.state == "alive").count();
            if alive >= want {
                return last;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return match last {
                Ok(resp) => {
                    let alive = resp.members.iter().filter(|m| m.state == "alive").count();
                    anyhow::bail!("only {alive} of {want} members alive after 30 s")
                }
                Err(e) => Err(e),
            };
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
