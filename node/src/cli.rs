//! The command line: `murmur run` starts a node; the other commands are tools and clients of a
//! running node's admin API.

#![allow(
    clippy::disallowed_methods,
    reason = "the command line is synchronous: it reads and writes files, and waits, outside any node runtime"
)]

mod ca;
mod capture;
mod cert;
mod client;
mod demo;
mod drain;
mod members;
mod output;
mod policy;
mod policy_client;
mod rt;
mod run;
mod service;
mod services;
mod status;
mod token;
mod ttl;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::logging::{self, LogFormat};

/// Exit code for a usage or configuration error (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;

/// Murmuration: a service mesh with no control plane. Every service instance gets a node; nodes
/// find each other by gossip and carry traffic over QUIC with mutual TLS.
#[derive(Debug, Parser)]
#[command(
    name = "murmur",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Log format: human-readable text or one JSON object per line. RUST_LOG sets the filter.
    #[arg(long, global = true, env = "MURMUR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a local three-node mesh with demo services, print what to try, serve until Ctrl-C.
    Demo(demo::DemoArgs),
    /// Run a node.
    Run(Box<run::RunArgs>),
    /// Create the mesh certificate authority, and issuer credentials for issuer nodes.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Issue, inspect and revoke node and operator certificates.
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Show the nftables rules of transparent capture without installing them.
    #[command(subcommand)]
    Capture(capture::CaptureCommand),
    /// Create join tokens: a node's way in without hand-issued certificates.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// List the members of the mesh as a node sees them.
    Members(members::MembersArgs),
    /// One screen about a node: identity, certificate expiry, members, policy, services and
    /// their traffic.
    Status(status::StatusArgs),
    /// A node's traffic per service (rate, success rate, latency), refreshing.
    Top(status::TopArgs),
    /// Apply, list, show and delete signed policy documents.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Drain a running node without stopping it: peers stop sending it new requests, and the
    /// command returns once in-flight requests are done. `--undo` takes traffic again.
    Drain(drain::DrainArgs),
    /// List every service in the mesh and its instances.
    Services(services::ServicesArgs),
    /// Register or deregister a local service on a running node.
    #[command(subcommand)]
    Service(service::ServiceCommand),
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints what to try; its three nodes' info logs would drown it.
    let default_filter = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    logging::init(cli.log_format, default_filter);
    let result = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Ca(cmd) => ca::run(cmd),
        Command::Cert(cmd) => cert::run(cmd),
        Command::Capture(cmd) => capture::run(cmd),
        Command::Token(cmd) => token::run(cmd),
        Command::Members(args) => members::run(args),
        Command::Status(args) => status::status(args),
        Command::Top(args) => status::top(args),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Drain(args) => drain::run(args),
        Command::Services(args) => services::run(args),
        Command::Service(cmd) => service::run(cmd),
        Command::Demo(args) => demo::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// A configuration problem, the node's credentials included (a certificate that cannot be
/// read, has expired or names another node is fixed in the configuration, not by retrying),
/// exits with [`EXIT_USAGE`]; anything else with 1.
fn exit_code(e: &anyhow::Error) -> u8 {
    let config = e.chain().any(|c| {
        c.is::<crate::config::ConfigError>()
            || c.is::<murmur_transport::tls::TlsError>()
            || c.is::<murmur_transport::certs::CertError>()
    });
    if config { EXIT_USAGE } else { 1 }
}

/// The error and its causes on one line, each cause once: a message that already ends with
/// its cause's text (`path: No such file`) is not followed by it again.
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn causes_are_told_once_and_credential_problems_are_configuration_errors() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let cert = murmur_transport::certs::CertError::Io {
            path: "a.crt".into(),
            source: io,
        };
        let e = anyhow::Error::new(cert).context("cannot load the node's credentials");
        assert_eq!(
            super::describe(&e),
            "cannot load the node's credentials: a.crt: No such file"
        );
        assert_eq!(super::exit_code(&e), super::EXIT_USAGE);
        assert_eq!(super::exit_code(&anyhow::anyhow!("port in use")), 1);
    }
}
