//! `murmur cert issue` and `murmur cert inspect`.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Subcommand, ValueEnum};
use murmur_transport::certs::{IssueRequest, issue, parse_leaf, read_certs_pem};
use murmur_transport::identity::{Name, Role};

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
        /// Validity in days.
        #[arg(long, default_value_t = 90)]
        days: u32,
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
}

pub fn run(cmd: CertCommand) -> anyhow::Result<()> {
    match cmd {
        CertCommand::Issue {
            ca_dir,
            name,
            services,
            days,
            out,
            role,
            force,
        } => {
            let role = match role {
                RoleArg::Node => Role::Node,
                RoleArg::Operator => Role::Operator,
            };
            let files = issue(&IssueRequest {
                ca_dir,
                role,
                name,
                services,
                validity: std::time::Duration::from_secs(u64::from(days) * 86_400),
                out_dir: out,
                force,
            })?;
            println!("identity     {}", files.id);
            println!("certificate  {}", files.cert.display());
            println!("key          {}  (mode 0600)", files.key.display());
            Ok(())
        }
        CertCommand::Inspect { file } => inspect(&file),
    }
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
