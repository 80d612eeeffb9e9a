//! Failure and restart scenarios, each in its own network namespace (issue: health, failure and
//! partitions). Scenarios that need traffic live in `faults_traffic.rs`.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use murmur_tests::{Cluster, netns, wait_until};
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(60);

/// What `observer` says about `name`: its state, or "absent".
async fn state_of(c: &Cluster, observer: &str, name: &str) -> Result<String, String> {
    let m = c.node(observer).members().await?;
    Ok(m.iter()
        .find(|(n, _, _)| n == name)
        .map_or("absent".into(), |(_, s, _)| s.clone()))
}

#[test]
fn a_two_second_stall_is_tolerated_and_a_twenty_second_one_is_detected_and_healed() {
    netns::run(|| async {
        let mut c = Cluster::new();
        // The production defaults: this is what failure detection is tuned for.
        c.chain(5, |mut s| {
            s.gossip_interval = "500ms";
            s
        });
        let all = ["n1", "n2", "n3", "n4", "n5"];
        c.wait_alive(&all, &all, LIMIT).await;
        let others = ["n1", "n2", "n3", "n4"];

        // 2 s: nobody may call it dead, at any moment.
        c.node("n5").signal(Signal::SIGSTOP);
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            for o in others {
                let s = state_of(&c, o, "n5").await.unwrap();
                assert_eq!(s, "alive", "{o} declared a 2 s stall {s}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.node("n5").signal(Signal::SIGCONT);
        // And not just after either, while the heartbeats catch up.
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            for o in others {
                assert_eq!(
                    state_of(&c, o, "n5").await.unwrap(),
                    "alive",
                    "{o} after the 2 s stall"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("2 s stall: no node declared n5 dead");

        // 20 s: declared dead, then alive again after SIGCONT, same generation (no restart).
        let before =
            c.node("n5").admin_get("/v1/status").await.unwrap().json()["generation"].as_u64();
        c.node("n5").signal(Signal::SIGSTOP);
        let stalled = Instant::now();
        let (_, detected) = wait_until(
            "all others to declare n5 dead",
            Duration::from_secs(20),
            || async {
                for o in others {
                    let s = state_of(&c, o, "n5").await?;
                    if s != "dead" {
                        return Err(format!("{o}: {s}"));
                    }
                }
                Ok(())
            },
        )
        .await;
        println!("20 s stall: n5 declared dead by all after {detected:?}");
        let rest = Duration::from_secs(20).saturating_sub(stalled.elapsed());
        tokio::time::sleep(rest).await;
        c.node("n5").signal(Signal::SIGCONT);
        let (_, back) = wait_until("n5 to be alive again everywhere", LIMIT, || async {
            for o in others {
                let s = state_of(&c, o, "n5").await?;
                if s != "alive" {
                    return Err(format!("{o}: {s}"));
                }
            }
            Ok(())
        })
        .await;
        let after =
            c.node("n5").admin_get("/v1/status").await.unwrap().json()["generation"].as_u64();
        assert_eq!(before, after, "n5 must come back without a restart");
        println!("after SIGCONT: n5 alive again everywhere within {back:?}, same generation");
    });
}

async fn generations(c: &Cluster, names: &[&str]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for n in names {
        let g = c.node(n).admin_get("/v1/status").await.unwrap().json()["generation"]
            .as_u64()
            .unwrap();
        out.insert((*n).to_owned(), g);
    }
    out
}

/// Every observer lists every name once, alive, with exactly the generation in `expected`.
async fn exactly(c: &Cluster, expected: &BTreeMap<String, u64>) -> Result<(), String> {
    for o in expected.keys() {
        let m = c.node(o).members().await?;
        let listed: BTreeMap<String, u64> = m
            .iter()
            .filter(|(_, s, _)| s == "alive")
            .map(|(n, _, g)| (n.clone(), *g))
            .collect();
        if m.len() != expected.len() || &listed != expected {
            return Err(format!("{o}: {m:?}"));
        }
    }
    Ok(())
}

fn whole_mesh_restart(signal: Signal) {
    netns::run(move || async move {
        let mut c = Cluster::new();
        c.chain(4, |s| s);
        let all = ["n1", "n2", "n3", "n4"];
        c.wait_alive(&all, &all, LIMIT).await;
        let old = generations(&c, &all).await;
        for n in &mut c.nodes {
            n.stop_with(signal);
        }
        for n in &mut c.nodes {
            n.restart();
        }
        let (new, _) = wait_until("every node to answer", LIMIT, || async {
            let mut out = BTreeMap::new();
            for n in all {
                let r = c.node(n).admin_get("/v1/status").await?;
                out.insert(
                    n.to_owned(),
                    r.json()["generation"].as_u64().ok_or("no generation")?,
                );
            }
            Ok(out)
        })
        .await;
        for n in all {
            assert!(new[n] > old[n], "{n} kept its generation");
        }
        let (_, took) = wait_until("one listing per node, all new generations", LIMIT, || {
            exactly(&c, &new)
        })
        .await;
        println!("after a {signal:?} of every node: views whole again in {took:?}");
        // And it stays that way: no old incarnation comes back, no duplicate appears.
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            exactly(&c, &new).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

#[test]
fn stopping_and_starting_every_node_resurrects_nothing() {
    whole_mesh_restart(Signal::SIGTERM);
}

#[test]
fn crashing_and_starting_every_node_resurrects_nothing() {
    whole_mesh_restart(Signal::SIGKILL);
}
