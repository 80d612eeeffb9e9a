//! `murmur cert issue`, `murmur cert inspect` and `murmur cert revoke`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::bail;
use clap::{Subcommand, ValueEnum};
use murmur_membership::policy::Kind;
use murmur_membership::policy::spec::{PolicyBody, RevocationSpec};
use murmur_transport::certs::{IssueRequest, issue, parse_leaf, read_certs_pem};
use murmur_transport::identity::{Name, Role};

use super::policy::{Common, print_results, push};
use super::rt::client_runtime;

/// Kind of certificate.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// A mesh node.
    Node,
    /// An operator (signs policy).
    Operator,
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue a node (or operator) certificate signed by the mesh CA.
    ///
    /// A node certificate carries exactly one URI SAN spiffe://<trust-domain>/node/<name>, the
    /// DNS SAN <name>.node.<trust-domain>, and <service>.svc.<trust-domain> for each service the
    /// node may serve. Writes <out>/<name>.crt and <out>/<name>.key (mode 0600).
    Issue {
        /// Directory holding ca.crt and ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Node (or operator) name: a DNS label such as "web-1".
        #[arg(long, value_parser = |s: &str| Name::parse("name", s))]
        name: Name,
        /// A service this node may serve (repeatable).
        #[arg(long = "service", value_parser = |s: &str| Name::parse("service name", s))]
        services: Vec<Name>,
        /// Validity in days [default: 90].
        #[arg(long, conflicts_with = "ttl")]
        days: Option<u32>,
        /// Validity as a lifetime: 90d, 24h, 10m (at least 1m). Nodes that renew through issuers
        /// replace it at about half of it.
        #[arg(long, value_parser = super::ttl::parse)]
        ttl: Option<Duration>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Node or operator certificate.
        #[arg(long, value_enum, default_value_t = RoleArg::Node)]
        role: RoleArg,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Print the identity, services and validity of a certificate file.
    Inspect {
        /// PEM certificate (the first certificate of the file is shown).
        file: PathBuf,
    },
    /// Revoke a node (every certificate it holds) or one certificate, mesh-wide.
    ///
    /// Signs a revocation with the operator certificate and hands it to a node, which spreads
    /// it by gossip: within seconds every node closes the connections of the revoked
    /// certificate and refuses new ones, and issuers refuse to renew it. Undo with
    /// `murmur policy delete revocation <name>` (or `serial-<hex>`).
    Revoke {
        /// The node to revoke.
        #[arg(long, value_parser = |s: &str| Name::parse("node name", s), required_unless_present = "serial", conflicts_with = "serial")]
        name: Option<Name>,
        /// The serial of the certificate to revoke (hex, as `murmur cert inspect` prints it).
        #[arg(long)]
        serial: Option<String>,
        /// Why, kept with the revocation.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

pub fn run(cmd: CertCommand) -> anyhow::Result<()> {
    match cmd {
        CertCommand::Issue {
            ca_dir,
            name,
            services,
            days,
            ttl,
            out,
            role,
            force,
        } => {
            let validity = match (days, ttl) {
                (_, Some(ttl)) => ttl,
                (Some(0), None) => bail!("--days must be at least 1"),
                (Some(d), None) => Duration::from_secs(u64::from(d) * 86_400),
                (None, None) => Duration::from_secs(90 * 86_400),
            };
            let role = match role {
                RoleArg::Node => Role::Node,
                RoleArg::Operator => Role::Operator,
            };
            let files = issue(&IssueRequest {
                ca_dir,
                role,
                name,
                services,
                validity,
                out_dir: out,
                force,
            })?;
            println!("identity     {}", files.id);
            println!("certificate  {}", files.cert.display());
            println!("key          {}  (mode 0600)", files.key.display());
            Ok(())
        }
        CertCommand::Inspect { file } => inspect(&file),
        CertCommand::Revoke {
            name,
            serial,
            reason,
            common,
        } => revoke(name, serial.as_deref(), reason, &common),
    }
}

fn revoke(
    name: Option<Name>,
    serial: Option<&str>,
    reason: Option<String>,
    common: &Common,
) -> anyhow::Result<()> {
    let spec = match (name, serial) {
        (Some(node), _) => RevocationSpec::node(node, reason),
        (None, Some(serial)) => RevocationSpec::serial(serial, reason)?,
        (None, None) => bail!("give --name NODE or --serial HEX"),
    };
    let doc = spec.name.clone();
    let body = PolicyBody::Revocation(spec);
    let resp = client_runtime()?.block_on(async {
        push(
            &[(Kind::Revocation, doc.clone(), Some(body))],
            false,
            common,
        )
        .await
    })?;
    print_results(&resp);
    println!("undo with: murmur policy delete revocation {doc}");
    Ok(())
}

fn inspect(file: &std::path::Path) -> anyhow::Result<()> {
    let certs = read_certs_pem(file)?;
    let leaf = certs
        .first()
        .ok_or_else(|| anyhow::anyhow!("{}: no certificate", file.display()))?;
    let info = parse_leaf(leaf)?;
    let services: Vec<&str> = info.services.iter().map(Name::as_str).collect();
    println!("identity     {}", info.id);
    println!("role         {}", info.id.role);
    println!(
        "services     {}",
        if services.is_empty() {
            "-".to_owned()
        } else {
            services.join(", ")
        }
    );
    println!("dns names    {}", info.dns_names.join(", "));
    println!("serial       {}", info.serial);
    println!("issuer       {}", info.issuer);
    println!(
        "not before   {}",
        crate::cli::output::rfc3339(info.not_before)
    );
    println!(
        "not after    {}",
        crate::cli::output::rfc3339(info.not_after)
    );
    println!("expires in   {}", expiry_words(info.not_after));
    Ok(())
}

/// "in 89 days", or "EXPIRED 3 days ago".
pub fn expiry_words(not_after: SystemTime) -> String {
    match not_after.duration_since(SystemTime::now()) {
        Ok(left) => format!(
            "{} days {} hours",
            left.as_secs() / 86_400,
            left.as_secs() % 86_400 / 3600
        ),
        Err(e) => format!("EXPIRED {} days ago", e.duration().as_secs() / 86_400),
    }
}
