//! `murmur token create` and `murmur token inspect`: join tokens, signed with an operator
//! certificate.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use clap::Subcommand;
use murmur_transport::certs::write_private_file;
use murmur_transport::identity::Name;
use murmur_transport::issuance::token::{create, read_claims};
use murmur_transport::signing::Signer;

use super::policy::IDENTITY_ENV;
use super::policy_client::Identity;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a join token: permission for one node name (and its services) to obtain a first
    /// certificate from any issuer of the mesh, once, before it expires.
    ///
    /// Give the token to the node (`murmur run --join-token FILE`) as you would a key: whoever
    /// holds it can join under that name until it is used or expires.
    Create {
        /// The node name the token admits.
        #[arg(long, value_parser = |s: &str| Name::parse("node name", s))]
        name: Name,
        /// A service the node may serve (repeatable).
        #[arg(long = "service", value_parser = |s: &str| Name::parse("service name", s))]
        services: Vec<Name>,
        /// How long the token may be used: 1h, 10m, 2d (at most 7d).
        #[arg(long, default_value = "1h", value_parser = super::ttl::parse)]
        ttl: Duration,
        /// Write the token to this file (mode 0600) instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Operator certificate that signs; its key is the file beside it with extension .key.
        #[arg(long, env = IDENTITY_ENV, default_value = "ca/operator.crt")]
        identity: PathBuf,
    },
    /// Print what a token grants (without checking its signature).
    Inspect {
        /// The token file.
        file: PathBuf,
    },
}

pub fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            name,
            services,
            ttl,
            out,
            identity,
        } => {
            let id = Identity::new(&identity, None);
            let signer = Signer::load(&id.cert, &id.key).with_context(|| {
                format!(
                    "cannot load the operator identity {} (choose one with --identity)",
                    id.cert.display()
                )
            })?;
            let (token, claims) =
                create(&signer, name, services, ttl, crate::clock::unix_now_ms())?;
            match &out {
                Some(path) => write_private_file(path, format!("{token}\n").as_bytes())?,
                None => writeln!(std::io::stdout(), "{token}")?,
            }
            eprintln!(
                "token {} for node {} (services: {}), valid until {}, signed by {}{}",
                claims.id,
                claims.name,
                names(&claims.services),
                expiry(claims.expires_ms),
                signer.id(),
                out.map(|p| format!(", written to {}", p.display()))
                    .unwrap_or_default()
            );
            Ok(())
        }
        TokenCommand::Inspect { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let claims = read_claims(&text)?;
            println!("id           {}", claims.id);
            println!("trust domain {}", claims.trust_domain);
            println!("node         {}", claims.name);
            println!("services     {}", names(&claims.services));
            println!("expires      {}", expiry(claims.expires_ms));
            Ok(())
        }
    }
}

fn names(services: &[Name]) -> String {
    if services.is_empty() {
        "-".into()
    } else {
        services
            .iter()
            .map(Name::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn expiry(ms: u64) -> String {
    crate::cli::output::rfc3339(UNIX_EPOCH + Duration::from_millis(ms))
}
