//! A set of nodes sharing one CA, started in the current network namespace.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::node::{NodeProc, NodeSpec};
use crate::pki::Pki;
use crate::wait::wait_until;

/// Nodes of one mesh and their files; logs are printed if the test fails.
#[derive(Debug)]
pub struct Cluster {
    /// Holds every file of the test.
    pub dir: tempfile::TempDir,
    /// The CA.
    pub pki: Pki,
    /// Nodes, in the order added.
    pub nodes: Vec<NodeProc>,
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

impl Cluster {
    /// An empty cluster with a fresh CA.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new(dir.path());
        Self {
            dir,
            pki,
            nodes: Vec::new(),
        }
    }

    /// `127.0.0.<i>`.
    pub fn ip(i: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, i)
    }

    /// Starts a node and returns its index.
    pub fn add(&mut self, spec: NodeSpec) -> usize {
        let node = NodeProc::start(spec, self.dir.path(), &self.pki);
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Starts `n` nodes `n1..` on 127.0.0.2.., each seeded with the previous one only (a
    /// chain); `customize` adjusts each spec.
    pub fn chain(&mut self, n: u8, customize: impl Fn(NodeSpec) -> NodeSpec) {
        for i in 0..n {
            let mut spec = NodeSpec::new(&format!("n{}", i + 1), Self::ip(i + 2));
            if i > 0 {
                spec = spec.seed(NodeSpec::new("", Self::ip(i + 1)).mesh());
            }
            self.add(customize(spec));
        }
    }

    /// Two nodes in a chain: n2 serves `service` (`protocol`) from the app at `app`, n1 calls
    /// it. Returns once n1 lists the instance.
    pub async fn serving_pair(service: &str, app: SocketAddr, protocol: &str) -> Self {
        let mut c = Self::new();
        c.chain(2, |s| {
            if s.name == "n2" {
                s.service(service, app, protocol)
            } else {
                s
            }
        });
        c.node("n1").wait_instances(service, &["n2"]).await;
        c
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> &NodeProc {
        self.nodes
            .iter()
            .find(|n| n.name() == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// The node called `name`, mutably.
    pub fn node_mut(&mut self, name: &str) -> &mut NodeProc {
        self.nodes
            .iter_mut()
            .find(|n| n.name() == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Waits until every node in `observers` lists exactly `alive` as alive members (other
    /// states allowed only if `strict` is false). Returns how long it took.
    pub async fn wait_alive(
        &self,
        observers: &[&str],
        alive: &[&str],
        limit: Duration,
    ) -> Duration {
        let mut expected: Vec<String> = alive.iter().map(|s| (*s).to_owned()).collect();
        expected.sort();
        let what = format!("{observers:?} to list exactly {expected:?} alive");
        let (_, took) = wait_until(&what, limit, || async {
            let mut states = Vec::new();
            for o in observers {
                let members = self.node(o).members().await?;
                let live: Vec<String> = members
                    .iter()
                    .filter(|(_, s, _)| s == "alive")
                    .map(|(n, _, _)| n.clone())
                    .collect();
                if live != expected {
                    states.push(format!("{o}: {members:?}"));
                }
            }
            if states.is_empty() {
                Ok(())
            } else {
                Err(states.join("; "))
            }
        })
        .await;
        took
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in &self.nodes {
                eprintln!(
                    "----- log of {} (last 40 lines) -----\n{}",
                    n.name(),
                    n.log_tail(40)
                );
            }
        }
    }
}
