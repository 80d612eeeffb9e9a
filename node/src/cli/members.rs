//! `murmur members`: the mesh as one node sees it.

use std::net::SocketAddr;

use clap::Args;

use super::output::{Output, labels, print_table};
use crate::admin::members::MembersResponse;
use crate::client::{ADMIN_ENV, get_json};

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
}

pub fn run(args: MembersArgs) -> anyhow::Result<()> {
    let path = if args.all {
        "/v1/members?all=true"
    } else {
        "/v1/members"
    };
    let resp: MembersResponse = super::client_runtime()?.block_on(get_json(args.admin, path))?;
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
