//! `murmur drain`: drain a running node without stopping it.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::client::{ADMIN_ENV, call, call_within, decode};
use super::rt::client_runtime;
use crate::api::drain::DrainReport;

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Admin API of the node to drain.
    #[arg(long, env = ADMIN_ENV, default_value = crate::config::typed::DEFAULT_ADMIN)]
    admin: SocketAddr,
    /// Take traffic again instead.
    #[arg(long)]
    undo: bool,
}

pub fn run(args: DrainArgs) -> anyhow::Result<()> {
    let rt = client_runtime()?;
    if args.undo {
        let (status, body) = rt.block_on(call(args.admin, "POST", "/v1/undrain", None))?;
        anyhow::ensure!(
            status == 200,
            "the node answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        println!("node at {} takes traffic again", args.admin);
        return Ok(());
    }
    // The node bounds the drain by its own [drain] timeout; wait a little longer than any sane one.
    let (status, body) = rt.block_on(call_within(
        args.admin,
        "POST",
        "/v1/drain",
        None,
        Duration::from_secs(600),
    ))?;
    let report: DrainReport = decode(status, &body)?;
    println!(
        "drained in {} ms (new traffic stopped after {} ms){}",
        report.took_ms,
        report.quiet_after_ms,
        if report.complete {
            String::new()
        } else {
            format!(
                "; gave up with {} requests still in progress",
                report.in_flight_left
            )
        }
    );
    Ok(())
}
