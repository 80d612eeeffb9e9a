//! `murmur run`: start a node from a config file and/or flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use murmur_transport::identity::{Name, TrustDomain};

use crate::config::{Config, Overrides};

/// Every setting can come from the file (`--config`) or a flag; flags win.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML configuration file (see README for every field).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Node name; must match the certificate's spiffe://<td>/node/<name>.
    #[arg(long, value_parser = |s: &str| Name::parse("node name", s))]
    name: Option<Name>,
    /// UDP address for QUIC, gossip and traffic [default: 0.0.0.0:7420].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Address peers reach this node at (required when --listen is 0.0.0.0).
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// A seed node's mesh address, host:port (repeatable). One reachable seed is enough.
    #[arg(long = "seed")]
    seeds: Vec<String>,
    /// Admin API address [default: 127.0.0.1:7422].
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Outbound HTTP proxy address [default: 127.0.0.1:7421].
    #[arg(long)]
    outbound: Option<SocketAddr>,
    /// Directory for state kept across restarts [default: ./murmur-data/<name>].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Trust bundle: one or more CA certificates (PEM).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Node certificate (PEM).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Node private key (PEM).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Trust domain [default: the one the CA certificate names].
    #[arg(long, value_parser = TrustDomain::parse)]
    trust_domain: Option<TrustDomain>,
    /// Worker threads; 1 runs everything on one core [default: 1].
    #[arg(long)]
    threads: Option<usize>,
    /// Join token (`murmur token create`): obtain this node's first certificate from an issuer
    /// of the mesh through a seed. The key is made here and never leaves; key and certificate
    /// are kept in <data-dir>/identity unless --cert/--key say otherwise.
    #[arg(long)]
    join_token: Option<PathBuf>,
    /// Issuer certificate (`murmur ca issuer`): this node signs certificates for others.
    #[arg(long, requires = "issuer_key")]
    issuer_cert: Option<PathBuf>,
    /// The issuer certificate's key.
    #[arg(long, requires = "issuer_cert")]
    issuer_key: Option<PathBuf>,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        name: args.name,
        trust_domain: args.trust_domain,
        listen: args.listen,
        advertise: args.advertise,
        seeds: args.seeds,
        admin: args.admin,
        outbound: args.outbound,
        data_dir: args.data_dir,
        ca: args.ca,
        cert: args.cert,
        key: args.key,
        threads: args.threads,
        join_token: args.join_token,
        issuer_cert: args.issuer_cert,
        issuer_key: args.issuer_key,
    };
    let config = Config::load(args.config.as_deref(), overrides)?;
    let runtime = if config.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads)
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    crate::node::join(&config, &runtime)?;
    let prepared = crate::node::prepare(config)?;
    runtime.block_on(crate::node::run(prepared))
}
