//! `murmur ca init`.

use std::path::PathBuf;

use clap::Subcommand;
use murmur_transport::certs::{CaInit, init_ca};
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
}

pub fn run(cmd: CaCommand) -> anyhow::Result<()> {
    let CaCommand::Init {
        dir,
        trust_domain,
        days,
        operator,
        force,
    } = cmd;
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
