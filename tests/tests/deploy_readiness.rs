//! systemd readiness (issue: deploy, acceptance 3). The node is run as the unit runs it
//! (`Type=notify`: `NOTIFY_SOCKET` names a datagram socket) and the test reads that socket:
//! `READY=1` must come only once the node has joined, and `STOPPING=1` when it drains.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use murmur_tests::{Cluster, NodeSpec, netns, wait_until};
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(60);

/// The service manager's end: a datagram socket the node sends its notifications to.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
    /// Every line received so far, in order (`READY=1`, `STATUS=...`, ...).
    lines: Vec<String>,
}

impl NotifySocket {
    fn bind(dir: &Path, name: &str) -> Self {
        let path = dir.join(format!("{name}.notify"));
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_nonblocking(true).unwrap();
        Self {
            sock,
            path,
            lines: Vec::new(),
        }
    }

    fn env(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Reads whatever has arrived.
    fn poll(&mut self) -> &[String] {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.lines.extend(msg.lines().map(str::to_owned));
        }
        &self.lines
    }

    fn has(&mut self, line: &str) -> bool {
        self.poll().iter().any(|l| l == line)
    }
}

async fn readyz(c: &Cluster, node: &str) -> u16 {
    c.node(node)
        .admin_get("/readyz")
        .await
        .map_or(0, |r| r.status)
}

#[test]
fn ready_is_sent_only_after_the_node_has_joined_and_stopping_when_it_drains() {
    netns::run(|| async {
        let mut c = Cluster::new();
        let mut a_sock = NotifySocket::bind(c.dir.path(), "a");
        let mut b_sock = NotifySocket::bind(c.dir.path(), "b");
        let a_spec = NodeSpec::new("a", Cluster::ip(2)).env("NOTIFY_SOCKET", a_sock.env());
        // b's seed (a) is not up yet: b serves its admin API but has not joined.
        c.add(
            NodeSpec::new("b", Cluster::ip(3))
                .seed(a_spec.mesh())
                .env("NOTIFY_SOCKET", b_sock.env()),
        );
        wait_until("b to answer /readyz with 503", LIMIT, || async {
            match readyz(&c, "b").await {
                503 => Ok(()),
                s => Err(format!("status {s}")),
            }
        })
        .await;
        // Give a premature READY=1 every chance to show: several gossip rounds (200 ms here)
        // and view refreshes pass with the seed down.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                !b_sock.has("READY=1"),
                "READY=1 before joining: {:?}",
                b_sock.lines
            );
            assert_eq!(readyz(&c, "b").await, 503);
        }

        let waiting = "STATUS=not ready: no peer reached yet (seeds unreachable?)";
        wait_until("b to tell the service manager why it waits", LIMIT, || {
            let seen = b_sock.has(waiting);
            async move {
                if seen {
                    Ok(())
                } else {
                    Err("nothing yet".into())
                }
            }
        })
        .await;

        // The first node of a mesh (no seeds) is ready on its own.
        c.add(a_spec);
        wait_until("a (no seeds) to send READY=1", LIMIT, || {
            let seen = a_sock.has("READY=1");
            async move { if seen { Ok(()) } else { Err("not yet".into()) } }
        })
        .await;
        let (_, took) = wait_until("b to send READY=1 once it reaches a", LIMIT, || {
            let seen = b_sock.has("READY=1");
            async move { if seen { Ok(()) } else { Err("not yet".into()) } }
        })
        .await;
        // What READY=1 promised holds: b has joined (a is alive in its view) and serves.
        assert_eq!(readyz(&c, "b").await, 200);
        let members = c.node("b").members().await.unwrap();
        assert!(
            members.iter().any(|(n, s, _)| n == "a" && s == "alive"),
            "{members:?}"
        );
        let lines = b_sock.poll().to_vec();
        println!("b's notifications ({took:?} after a started): {lines:?}");
        let ready_at = lines.iter().position(|l| l == "READY=1").unwrap();
        assert_eq!(lines.iter().filter(|l| *l == "READY=1").count(), 1);
        assert!(lines[..ready_at].iter().any(|l| l == waiting), "{lines:?}");

        // SIGTERM: STOPPING=1 as the drain begins, then a clean exit.
        let b = c.nodes.iter_mut().find(|n| n.name() == "b").unwrap();
        assert!(b.stop_with(Signal::SIGTERM), "b exits 0 after SIGTERM");
        let lines = b_sock.poll().to_vec();
        let stopping_at = lines.iter().position(|l| l == "STOPPING=1");
        assert!(stopping_at.is_some_and(|s| s > ready_at), "{lines:?}");
    });
}
