//! `murmur ca init` and `murmur ca issuer`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use murmur_transport::certs::{CaInit, IssuerInit, init_ca, init_issuer};
use murmur_transport::identity::{DEFAULT_TRUST_DOMAIN, Name, TrustDomain};

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a mesh CA (ECDSA P-256) and a first operator certificate.
    ///
    /// Writes ca.crt (give it to every node as the trust bundle), ca.key (keep it safe:
    /// whoever has it can mint identities), operator.crt and operator.key (signs policy).
    Init {
        /// Directory to write into (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// Trust domain of the mesh: the host part of every SPIFFE ID.
        #[arg(long, default_value = DEFAULT_TRUST_DOMAIN, value_parser = TrustDomain::parse)]
        trust_domain: TrustDomain,
        /// Validity of the CA, in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Name of the first operator.
        #[arg(long, default_value = "admin", value_parser = |s: &str| Name::parse("operator name", s))]
        operator: Name,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Create an issuer credential: an intermediate CA, signed by the root, that an issuer node
    /// uses to sign short-lived certificates for the others (`[identity] issuer_cert` and
    /// `issuer_key`). It may sign leaf certificates only (path length 0), and only names of the
    /// trust domain (a DNS name constraint); the root's key can then stay offline.
    ///
    /// Writes <out>/<name>-issuer.crt and <out>/<name>-issuer.key (mode 0600).
    Issuer {
        /// Directory holding the root's ca.crt and ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Name of the issuer, usually the node that holds it.
        #[arg(long, value_parser = |s: &str| Name::parse("issuer name", s))]
        name: Name,
        /// Validity: 30d, 720h... Renew it before it ends (the node reloads the files).
        #[arg(long, default_value = "30d", value_parser = super::ttl::parse)]
        ttl: Duration,
        /// Output directory [default: the CA directory].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(cmd: CaCommand) -> anyhow::Result<()> {
    let (dir, trust_domain, days, operator, force) = match cmd {
        CaCommand::Init {
            dir,
            trust_domain,
            days,
            operator,
            force,
        } => (dir, trust_domain, days, operator, force),
        CaCommand::Issuer {
            ca_dir,
            name,
            ttl,
            out,
            force,
        } => return issuer(ca_dir, name, ttl, out, force),
    };
    let report = init_ca(&CaInit {
        dir,
        trust_domain,
        days,
        operator,
        force,
    })?;
    println!("CA certificate   {}", report.ca_cert.display());
    println!(
        "CA key           {}  (mode 0600; keep it offline)",
        report.ca_key.display()
    );
    println!("operator         {}", report.operator_id);
    println!("operator cert    {}", report.operator_cert.display());
    println!("operator key     {}", report.operator_key.display());
    Ok(())
}

fn issuer(
    ca_dir: PathBuf,
    name: Name,
    validity: Duration,
    out: Option<PathBuf>,
    force: bool,
) -> anyhow::Result<()> {
    let files = init_issuer(&IssuerInit {
        out_dir: out.unwrap_or_else(|| ca_dir.clone()),
        ca_dir,
        name,
        validity,
        force,
    })?;
    println!("issuer cert      {}", files.cert.display());
    println!(
        "issuer key       {}  (mode 0600; only the issuer node needs it)",
        files.key.display()
    );
    println!("trust domain     {}", files.trust_domain);
    println!(
        "expires          {}",
        crate::cli::output::rfc3339(files.not_after)
    );
    println!(
        "use it with      [identity] issuer_cert = ..., issuer_key = ... (or --issuer-cert/--issuer-key)"
    );
    Ok(())
}
