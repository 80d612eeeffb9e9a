//! `murmur policy apply|list|get|delete`: sign documents with an operator key and hand them to
//! a node; read what a node holds.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use murmur_membership::policy::{Kind, PolicyBody, Stamp, parse_file, sign};
use murmur_transport::identity::Name;
use murmur_transport::signing::Signer;

use super::client::decode;
use super::output::{Output, print_table};
use super::policy_client::{Identity, NodeClient, Target};
use super::rt::client_runtime;
use crate::api::policies::{ApplyRequest, ApplyResponse, DocumentJson, PoliciesResponse};

/// Environment variable naming the node the policy commands talk to.
pub const NODE_ENV: &str = "MURMUR_NODE";
/// Environment variable naming the operator certificate.
pub const IDENTITY_ENV: &str = "MURMUR_IDENTITY";

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Sign every document of a TOML file and hand them to a node, which spreads them to the
    /// whole mesh. The file is validated completely first; nothing is sent if any document is
    /// invalid. See docs/policy.md for the document kinds.
    Apply {
        /// Policy file (TOML: [[route]], [[retry]], [[timeout]], [[ratelimit]], [[circuit]],
        /// [[authz]]).
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Show what would change, without changing anything.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        common: Common,
    },
    /// List the documents a node holds, after the digest of its effective set.
    List {
        /// Also list deletes still remembered.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        common: Common,
    },
    /// Print one document as TOML (or JSON).
    Get {
        /// route, retry, timeout, ratelimit, circuit or authz.
        kind: String,
        /// Document name.
        name: String,
        /// Output format: TOML unless json.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        common: Common,
    },
    /// Sign a delete of one document and hand it to a node.
    Delete {
        /// route, retry, timeout, ratelimit, circuit or authz.
        kind: String,
        /// Document name.
        name: String,
        /// Show what would change, without changing anything.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        common: Common,
    },
}

/// Options every policy command takes.
#[derive(Debug, Args)]
pub struct Common {
    /// The node to talk to: http://HOST:PORT (or HOST:PORT) is its admin API, on this host;
    /// quic://HOST:PORT is any node's mesh address, reached over QUIC with the operator
    /// certificate.
    #[arg(long, env = NODE_ENV, default_value = "http://127.0.0.1:7422", value_parser = Target::parse)]
    node: Target,
    /// Operator certificate that signs (and, over QUIC, connects); its key is the file beside
    /// it with extension .key.
    #[arg(long, env = IDENTITY_ENV, default_value = "ca/operator.crt")]
    identity: PathBuf,
    /// Trust bundle, for QUIC [default: ca.crt beside the identity].
    #[arg(long)]
    ca: Option<PathBuf>,
}

impl Common {
    pub(super) fn identity(&self) -> Identity {
        Identity::new(&self.identity, self.ca.as_deref())
    }

    pub(super) fn signer(&self) -> anyhow::Result<Signer> {
        let id = self.identity();
        Signer::load(&id.cert, &id.key).with_context(|| {
            format!(
                "cannot load the operator identity {} (choose one with --identity)",
                id.cert.display()
            )
        })
    }
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    client_runtime()?.block_on(async move {
        match cmd {
            PolicyCommand::Apply {
                file,
                dry_run,
                common,
            } => apply(&file, dry_run, &common).await,
            PolicyCommand::List {
                all,
                output,
                common,
            } => list(all, output, &common).await,
            PolicyCommand::Get {
                kind,
                name,
                output,
                common,
            } => get(&kind, &name, output, &common).await,
            PolicyCommand::Delete {
                kind,
                name,
                dry_run,
                common,
            } => delete(&kind, &name, dry_run, &common).await,
        }
    })
}

/// A document to sign: kind, name and body (none: a delete).
pub(super) type Version = (Kind, Name, Option<PolicyBody>);

async fn apply(file: &std::path::Path, dry_run: bool, common: &Common) -> anyhow::Result<()> {
    let label = file.display().to_string();
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {label}"))?;
    let docs = parse_file(&label, &text)?;
    if docs.is_empty() {
        bail!("{label}: no documents ([[route]], [[retry]], ... tables)");
    }
    let versions: Vec<Version> = docs
        .into_iter()
        .map(|b| (b.kind(), b.name().clone(), Some(b)))
        .collect();
    let resp = push(&versions, dry_run, common).await?;
    print_results(&resp);
    Ok(())
}

async fn delete(kind: &str, name: &str, dry_run: bool, common: &Common) -> anyhow::Result<()> {
    let kind = parse_kind(kind)?;
    let name = Name::parse("policy name", name)?;
    let resp = push(&[(kind, name.clone(), None)], dry_run, common).await?;
    print_results(&resp);
    if resp.results.iter().any(|r| r.outcome == "absent") {
        bail!("there is no {kind} named \"{name}\" to delete");
    }
    Ok(())
}

/// Stamps (above the node's clock), signs and sends; retries once if someone applied a newer
/// version in between.
pub(super) async fn push(
    versions: &[Version],
    dry_run: bool,
    common: &Common,
) -> anyhow::Result<ApplyResponse> {
    let signer = common.signer()?;
    let client = NodeClient::connect(&common.node, &common.identity()).await?;
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        let (status, body) = client.call("GET", "/v1/policies", None).await?;
        let state: PoliciesResponse = decode(status, &body)?;
        let mut hlc = state.clock;
        let mut documents = Vec::with_capacity(versions.len());
        for (kind, name, body) in versions {
            hlc = hlc.next();
            let stamp = Stamp {
                hlc,
                origin: state.node.clone(),
            };
            documents.push(sign(&signer, *kind, name, stamp, body.as_ref())?);
        }
        let req = serde_json::to_vec(&ApplyRequest { documents, dry_run })?;
        let (status, body) = client.call("POST", "/v1/policies", Some(req)).await?;
        if status == 409 && attempt < 3 {
            continue;
        }
        break decode::<ApplyResponse>(status, &body);
    };
    client.close().await;
    result
}

pub(super) fn print_results(resp: &ApplyResponse) {
    let verb = if resp.dry_run { "would be " } else { "" };
    for r in &resp.results {
        println!("{}/{}: {verb}{}", r.kind, r.name, r.outcome);
    }
    if resp.dry_run {
        println!("(dry run: nothing changed on node {})", resp.node);
    } else {
        println!("node {}  digest {}", resp.node, resp.digest);
    }
}

async fn list(all: bool, output: Output, common: &Common) -> anyhow::Result<()> {
    let path = if all {
        "/v1/policies?all=true"
    } else {
        "/v1/policies"
    };
    let client = NodeClient::connect(&common.node, &common.identity()).await?;
    let (status, body) = client.call("GET", path, None).await?;
    client.close().await;
    let resp: PoliciesResponse = decode(status, &body)?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
        return Ok(());
    }
    println!(
        "node {}  digest {}  documents {}  rejected {}",
        resp.node, resp.digest, resp.count, resp.rejected_total
    );
    let rows: Vec<Vec<String>> = resp
        .documents
        .iter()
        .map(|d| {
            vec![
                d.kind.to_string(),
                d.name.clone(),
                match (&d.service, d.deleted) {
                    (_, true) => "(deleted)".to_owned(),
                    (Some(service), false) => service.clone(),
                    (None, false) => "-".to_owned(),
                },
                d.stamp.to_string(),
                d.signer.clone(),
                d.hash.clone(),
            ]
        })
        .collect();
    print_table(
        &["KIND", "NAME", "SERVICE", "STAMP", "SIGNER", "HASH"],
        &rows,
    );
    Ok(())
}

async fn get(kind: &str, name: &str, output: Output, common: &Common) -> anyhow::Result<()> {
    let kind = parse_kind(kind)?;
    let client = NodeClient::connect(&common.node, &common.identity()).await?;
    let (status, body) = client
        .call("GET", &format!("/v1/policies/{kind}/{name}"), None)
        .await?;
    client.close().await;
    let doc: DocumentJson = decode(status, &body)?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "# stamp {}  signer {}  hash {}",
        doc.stamp, doc.signer, doc.hash
    );
    match &doc.body {
        None => println!("# deleted"),
        Some(json) => {
            let body = PolicyBody::from_json(kind, &json.to_string())
                .context("the node sent a body this client cannot read")?;
            print!("{}", body.to_toml());
        }
    }
    Ok(())
}

fn parse_kind(s: &str) -> anyhow::Result<Kind> {
    Kind::parse(s)
        .with_context(|| format!("unknown kind {s:?}; the kinds are {}", Kind::all_names()))
}
