//! How long a crash takes to detect, with the default gossip settings, when only two nodes
//! survive: fewer members relay fewer heartbeats, so detection takes longer than in a larger
//! mesh. The README's numbers come from here (the test prints them; timing is asserted only
//! loosely).

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use murmur_tests::{Cluster, NodeSpec, netns, wait_until};
use nix::sys::signal::Signal;

#[test]
fn a_crash_is_detected_by_both_survivors_of_a_three_node_mesh() {
    netns::run(|| async {
        let mut c = Cluster::new();
        // Production gossip settings (500 ms), not the faster ones of the other tests.
        c.chain(3, |s: NodeSpec| NodeSpec {
            gossip_interval: "500ms",
            ..s
        });
        let all = ["n1", "n2", "n3"];
        c.wait_alive(&all, &all, Duration::from_secs(30)).await;
        // Let the failure detectors learn the heartbeat rhythm.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let killed = Instant::now();
        // A killed process does not exit successfully: only that it stopped matters.
        let _ = c.node_mut("n3").stop_with(Signal::SIGKILL);
        let mut took = Vec::new();
        for o in ["n1", "n2"] {
            wait_until(
                &format!("{o} to list n3 dead"),
                Duration::from_secs(30),
                || async {
                    let m = c.node(o).members().await?;
                    match m.iter().find(|(n, _, _)| n == "n3") {
                        Some((_, s, _)) if s == "dead" => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                },
            )
            .await;
            took.push(killed.elapsed());
        }
        println!("SIGKILL of n3 seen by both survivors after {took:?}");
    });
}
