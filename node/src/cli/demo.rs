//! `murmur demo`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the demo's CA, certificates and state; must not exist, and is removed on
    /// exit [default: a new directory under the system's temporary directory].
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    super::client_runtime()?.block_on(crate::demo::run(args.dir))
}
