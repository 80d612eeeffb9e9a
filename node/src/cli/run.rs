//! `murmur run`: start a node from a config file and/or flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use murmur_transport::identity::{Name, TrustDomain};

use crate::config::{Config, Overrides};
use crate::proxy::External;

/// Every setting can come from the file (`--config`), a `MURMUR_*` environment variable or a
/// flag; a flag wins over the environment, which wins over the file.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML configuration file (see README for every field).
    #[arg(long, short, env = "MURMUR_CONFIG")]
    config: Option<PathBuf>,
    /// Node name; must match the certificate's spiffe://<td>/node/<name>.
    #[arg(long, env = "MURMUR_NAME", value_parser = |s: &str| Name::parse("node name", s))]
    name: Option<Name>,
    /// UDP address for QUIC, gossip and traffic [default: 0.0.0.0:7420].
    #[arg(long, env = "MURMUR_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address peers reach this node at (required when --listen is 0.0.0.0).
    #[arg(long, env = "MURMUR_ADVERTISE")]
    advertise: Option<SocketAddr>,
    /// A seed node's mesh address, host:port (repeatable; comma-separated in the environment).
    /// One reachable seed is enough.
    #[arg(long = "seed", env = "MURMUR_SEEDS", value_delimiter = ',')]
    seeds: Vec<String>,
    /// The cell this node belongs to (a DNS label) [default: the default cell, which gossips
    /// exactly as a mesh without cells].
    #[arg(long, env = "MURMUR_CELL", value_parser = |s: &str| Name::parse("cell name", s))]
    cell: Option<Name>,
    /// The mesh address of a node in another cell, host:port (repeatable; comma-separated in
    /// the environment): where this node's cell link starts when it is a custodian.
    #[arg(long = "cell-seed", env = "MURMUR_CELL_SEEDS", value_delimiter = ',')]
    cell_seeds: Vec<String>,
    /// Admin API address [default: 127.0.0.1:7422].
    #[arg(long, env = super::client::ADMIN_ENV)]
    admin: Option<SocketAddr>,
    /// Outbound HTTP proxy address [default: 127.0.0.1:7421].
    #[arg(long, env = "MURMUR_OUTBOUND")]
    outbound: Option<SocketAddr>,
    /// Directory for state kept across restarts [default: ./murmur-data/<name>].
    #[arg(long, env = "MURMUR_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Trust bundle: one or more CA certificates (PEM).
    #[arg(long, env = "MURMUR_CA")]
    ca: Option<PathBuf>,
    /// Node certificate (PEM).
    #[arg(long, env = "MURMUR_CERT")]
    cert: Option<PathBuf>,
    /// Node private key (PEM).
    #[arg(long, env = "MURMUR_KEY")]
    key: Option<PathBuf>,
    /// Trust domain [default: the one the CA certificate names].
    #[arg(long, env = "MURMUR_TRUST_DOMAIN", value_parser = TrustDomain::parse)]
    trust_domain: Option<TrustDomain>,
    /// Threads, each with its own share of the data path (a single-threaded runtime with its
    /// own QUIC endpoint, app and gateway listeners); 1 runs everything on one core [default: 1].
    #[arg(long, env = "MURMUR_THREADS")]
    threads: Option<usize>,
    /// Answer DNS for the mesh on this address (UDP and TCP), e.g. 127.0.0.153:53: services
    /// as <service>.mesh with a virtual IP each; other names are forwarded.
    #[arg(long, env = "MURMUR_DNS")]
    dns: Option<SocketAddr>,
    /// Capture local apps' TCP to the services' virtual IPs (nftables rules in the node's own
    /// table; needs root or CAP_NET_ADMIN). `murmur capture print` shows the rules.
    #[arg(long, env = "MURMUR_CAPTURE")]
    capture: bool,
    /// CONNECT and absolute-form requests for hosts outside the mesh: pass them through
    /// (allow) or answer 403 (deny) [default: allow].
    #[arg(long, env = "MURMUR_EXTERNAL", value_parser = parse_external)]
    external: Option<External>,
    /// Join token (`murmur token create`): obtain this node's first certificate from an issuer
    /// of the mesh through a seed. The key is made here and never leaves; key and certificate
    /// are kept in <data-dir>/identity unless --cert/--key say otherwise.
    #[arg(long, env = "MURMUR_JOIN_TOKEN")]
    join_token: Option<PathBuf>,
    /// Issuer certificate (`murmur ca issuer`): this node signs certificates for others.
    #[arg(long, env = "MURMUR_ISSUER_CERT", requires = "issuer_key")]
    issuer_cert: Option<PathBuf>,
    /// The issuer certificate's key.
    #[arg(long, env = "MURMUR_ISSUER_KEY", requires = "issuer_cert")]
    issuer_key: Option<PathBuf>,
}

fn parse_external(s: &str) -> Result<External, String> {
    match s {
        "allow" => Ok(External::Allow),
        "deny" => Ok(External::Deny),
        other => Err(format!("{other:?}: use allow or deny")),
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        name: args.name,
        trust_domain: args.trust_domain,
        listen: args.listen,
        advertise: args.advertise,
        seeds: args.seeds,
        cell: args.cell,
        cell_seeds: args.cell_seeds,
        admin: args.admin,
        outbound: args.outbound,
        data_dir: args.data_dir,
        ca: args.ca,
        cert: args.cert,
        key: args.key,
        threads: args.threads,
        dns: args.dns,
        capture: args.capture,
        external: args.external,
        join_token: args.join_token,
        issuer_cert: args.issuer_cert,
        issuer_key: args.issuer_key,
    };
    let config = Config::load(args.config.as_deref(), overrides)?;
    // One single-threaded runtime per thread: this one, and the shards beside it (each runs
    // its own share of the data path, see `shards.rs`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    crate::node::join(&config, &runtime)?;
    let shards = crate::shards::Shards::start(config.threads.saturating_sub(1))
        .context("cannot start the node's runtimes (threads)")?;
    let prepared = crate::node::prepare(config)?;
    let ran = runtime.block_on(crate::node::run(prepared, shards.handles().to_vec()));
    // The shards stop once the node has closed its connections.
    drop(shards);
    ran
}
