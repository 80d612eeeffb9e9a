//! `murmur capture print`: the nftables rules that `murmur run --capture` installs, printed
//! instead of installed — for operators who manage their own firewall, and for init
//! containers that set up a pod's network before the node starts without privileges.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::capture;

/// Capture commands.
#[derive(Debug, Subcommand)]
pub enum CaptureCommand {
    /// Print the ruleset (`nft -f` reads it) for the configuration's [capture] and [dns]
    /// settings, without installing it. Remove it with `nft delete table inet <table>`.
    Print(PrintArgs),
}

/// `murmur capture print`
#[derive(Debug, Args)]
pub struct PrintArgs {
    /// The node's TOML configuration file (only [capture] and [dns] are read).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// Runs a capture command.
pub fn run(cmd: CaptureCommand) -> anyhow::Result<()> {
    match cmd {
        CaptureCommand::Print(args) => {
            let (settings, vips) = crate::config::capture_settings(args.config.as_deref())?;
            print!(
                "# murmur: redirect local TCP to the virtual IPs to port {} (the node's capture \
                 listener).\n# Load: nft -f FILE   Remove: nft delete table inet {}\n# The \
                 virtual-IP ranges need a route (a default route is enough).\n{}",
                settings.port,
                settings.table,
                capture::ruleset(&settings, vips.v4, vips.v6)
            );
            Ok(())
        }
    }
}
