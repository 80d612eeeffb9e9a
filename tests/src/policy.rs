//! Policy helpers: the `murmur policy` CLI run as an operator runs it, a node's policy state
//! read from its admin API, and waits on what every node holds.
//!
//! [`sign`] makes documents the way the CLI does (and breaks them on purpose); [`rogue`] is a
//! member that gossips whatever it likes.

pub mod rogue;
pub mod sign;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::http::{self, Reply};
use crate::node::{NodeProc, binary};
use crate::pki::Pki;
use crate::wait::wait_until;

/// The operator certificate `murmur ca init` wrote (its key is beside it).
pub fn operator(pki: &Pki) -> PathBuf {
    pki.ca_dir.join("operator.crt")
}

/// Runs `murmur ARGS --identity IDENTITY` and returns what it did, success or not.
pub fn cli_as(identity: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .arg("--identity")
        .arg(identity)
        .output()
        .expect("run murmur")
}

/// Runs `murmur ARGS` as the operator, success or not.
pub fn cli(pki: &Pki, args: &[&str]) -> Output {
    cli_as(&operator(pki), args)
}

/// Starts `murmur ARGS` as the operator without waiting (for applies at the same moment);
/// collect it with [`Child::wait_with_output`].
pub fn cli_spawn(pki: &Pki, args: &[&str]) -> Child {
    Command::new(binary())
        .args(args)
        .arg("--identity")
        .arg(operator(pki))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn murmur")
}

/// The stdout of a command that must have succeeded.
pub fn succeeded(out: &Output) -> String {
    assert!(
        out.status.success(),
        "murmur failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stderr of a command that must have failed.
pub fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "murmur succeeded where it must fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `http://ADMIN` of a node, for `--node`.
pub fn admin_url(node: &NodeProc) -> String {
    format!("http://{}", node.admin())
}

/// `quic://MESH` of a node, for `--node`.
pub fn quic_url(node: &NodeProc) -> String {
    format!("quic://{}", node.mesh())
}

/// `murmur policy apply -f FILE --node TARGET` as the operator; asserts success, returns stdout.
pub fn apply(pki: &Pki, file: &Path, target: &str) -> String {
    let file = file.to_str().expect("test paths are UTF-8");
    succeeded(&cli(
        pki,
        &["policy", "apply", "-f", file, "--node", target],
    ))
}

/// The digest an apply or delete printed (`node NAME  digest D`).
pub fn printed_digest(stdout: &str) -> String {
    stdout
        .split("digest ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in {stdout:?}"))
        .to_owned()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write policy file");
    path
}

use murmur_node::api::policies::ApplyRequest;
pub use murmur_node::api::policies::{DocumentJson as Doc, PoliciesResponse as Policies};

/// What the tests ask of a node's policy state.
pub trait PolicyState {
    /// The version held of `kind/name`, a delete included.
    fn doc(&self, kind: &str, name: &str) -> Option<&Doc>;
    /// Whether `kind/name` is in force (held and not deleted).
    fn holds(&self, kind: &str, name: &str) -> bool;
    /// Refusals counted for `reason` (`signature`, `wrong-key`, ...).
    fn rejected(&self, reason: &str) -> u64;
}

impl PolicyState for Policies {
    fn doc(&self, kind: &str, name: &str) -> Option<&Doc> {
        self.documents
            .iter()
            .find(|d| d.kind.as_str() == kind && d.name == name)
    }

    fn holds(&self, kind: &str, name: &str) -> bool {
        self.doc(kind, name).is_some_and(|d| !d.deleted)
    }

    fn rejected(&self, reason: &str) -> u64 {
        self.rejected.get(reason).copied().unwrap_or(0)
    }
}

/// A node's policy state, deletes included.
pub async fn policies(node: &NodeProc) -> Result<Policies, String> {
    let reply = node.admin_get("/v1/policies?all=true").await?;
    if reply.status != 200 {
        return Err(format!("{}: {}", reply.status, reply.text()));
    }
    serde_json::from_slice(&reply.body).map_err(|e| format!("{e}: {}", reply.text()))
}

/// `POST /v1/policies` of signed documents to a node's admin API, as the CLI sends them.
pub async fn post(node: &NodeProc, documents: &[String]) -> Reply {
    let body = ApplyRequest {
        documents: documents.to_vec(),
        dry_run: false,
    };
    http::send(
        node.admin(),
        "POST",
        "/v1/policies",
        &[("content-type", "application/json")],
        serde_json::to_vec(&body).expect("an apply request encodes"),
    )
    .await
    .expect("admin API answers")
}

/// Waits until every node of `names` reports the same digest and `check` accepts each one's
/// state. Returns the states (in the order of `names`) and the time it took.
pub async fn wait_agree(
    c: &Cluster,
    names: &[&str],
    what: &str,
    limit: Duration,
    check: impl Fn(&Policies) -> Result<(), String>,
) -> (Vec<Policies>, Duration) {
    wait_until(what, limit, || async {
        let states = states(c, names).await?;
        let digests: Vec<&str> = states.iter().map(|p| p.digest.as_str()).collect();
        if digests.iter().any(|d| *d != digests[0]) {
            return Err(format!("digests {digests:?}"));
        }
        for p in &states {
            check(p).map_err(|e| format!("{}: {e}", p.node))?;
        }
        Ok(states)
    })
    .await
}

/// The policy state of each node of `names`, in order.
pub async fn states(c: &Cluster, names: &[&str]) -> Result<Vec<Policies>, String> {
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        out.push(policies(c.node(n)).await.map_err(|e| format!("{n}: {e}"))?);
    }
    Ok(out)
}

/// Asserts that `cond` holds at every look during `period` (every 100 ms): for things that
/// must not happen, which no deadline can wait for.
pub async fn hold<F, Fut>(what: &str, period: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let until = Instant::now() + period;
    loop {
        if let Err(state) = cond().await {
            panic!("{what} stopped holding: {state}");
        }
        if Instant::now() >= until {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `Ok` when `cond`, else `Err(why)`: for the checks given to [`wait_agree`] and [`hold`].
pub fn ensure(cond: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(why()) }
}
