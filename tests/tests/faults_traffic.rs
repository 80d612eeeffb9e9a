//! Failure scenarios under traffic, each in its own network namespace: health checks, rolling
//! restarts, crashes, partitions, a whole-mesh restart without seeds (issue: health, failure
//! and partitions).

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use murmur_tests::health_app::HealthApp;
use murmur_tests::load::{Load, Sample, summarize};
use murmur_tests::{Cluster, NodeSpec, netns, wait_until};
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(60);

fn app_addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 1, i], 8080))
}

/// n1 (the caller, no services) and n2..=n<k> serving `web` from a [`HealthApp`] each, all
/// seeded with n1. Returns the apps, in node order.
async fn web_mesh(c: &mut Cluster, k: u8, service_extra: &str) -> Vec<HealthApp> {
    c.add(NodeSpec::new("n1", Cluster::ip(2)));
    let seed = c.node("n1").mesh();
    let mut apps = Vec::new();
    for i in 2..=k {
        let name = format!("n{i}");
        let app = HealthApp::start(app_addr(i), &name).await;
        c.add(
            NodeSpec::new(&name, Cluster::ip(i + 1))
                .seed(seed)
                .service_with("web", app.addr, "http", service_extra),
        );
        apps.push(app);
    }
    let serving: Vec<String> = (2..=k).map(|i| format!("n{i}")).collect();
    let serving: Vec<&str> = serving.iter().map(String::as_str).collect();
    c.node("n1").wait_instances("web", &serving).await;
    apps
}

/// Seconds between `t` and the last sample after it served by `instance`.
fn last_served_after(samples: &[Sample], instance: &str, t: Duration) -> Option<Duration> {
    samples
        .iter()
        .filter(|s| s.at >= t && s.instance.as_deref() == Some(instance))
        .map(|s| s.at - t)
        .max()
}

#[test]
fn a_failing_health_check_takes_an_instance_out_and_recovery_brings_it_back() {
    netns::run(|| async {
        let mut c = Cluster::new();
        let check = "[service.health]\npath = \"/healthz\"\ninterval = \"500ms\"\ntimeout = \"300ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n";
        let apps = web_mesh(&mut c, 4, check).await;
        let load = Load::start(
            c.node("n1").outbound(),
            "web",
            100,
            4,
            Duration::from_secs(60),
        );
        let (_, _) = wait_until("all three instances to serve", LIMIT, || async {
            let s = summarize(&load.samples());
            if s.by_instance.len() == 3 {
                Ok(())
            } else {
                Err(format!("{:?}", s.by_instance))
            }
        })
        .await;

        let sick = &apps[1]; // n3
        let t0 = load.started.elapsed();
        sick.set_healthy(false);
        wait_until("n3 to get no traffic for 2 s", LIMIT, || async {
            let samples = load.samples();
            let now = load.started.elapsed();
            let recent = samples.iter().any(|s| {
                s.at + Duration::from_secs(2) > now && s.instance.as_deref() == Some("n3")
            });
            let waited = now > t0 + Duration::from_secs(2);
            if waited && !recent {
                Ok(())
            } else {
                Err("n3 still served".into())
            }
        })
        .await;
        let out_after = last_served_after(&load.samples(), "n3", t0).unwrap_or_default();
        println!(
            "n3 failing its check: last request served {out_after:?} after (check interval 500 ms, 2 failures to flip, plus gossip)"
        );

        let t1 = load.started.elapsed();
        sick.set_healthy(true);
        let (_, passing) = wait_until("n1 to see n3 passing", LIMIT, || async {
            let v = c.node("n1").admin_get("/v1/services").await?.json();
            let n3 = v["services"][0]["instances"]
                .as_array()
                .and_then(|a| a.iter().find(|i| i["node"] == "n3").cloned());
            match n3 {
                Some(i) if i["health"] == "passing" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        println!("n3 passing again: n1 sees it passing after {passing:?}");
        wait_until("n3 to get traffic again", LIMIT, || async {
            if load
                .samples()
                .iter()
                .any(|s| s.at > t1 && s.instance.as_deref() == Some("n3"))
            {
                Ok(())
            } else {
                Err("not yet".into())
            }
        })
        .await;
        println!(
            "n3 passing again: traffic back {:?} after it recovered",
            load.started.elapsed() - t1
        );
        let (summary, _) = load.stop().await;
        println!(
            "requests: {} ok of {}, by instance {:?}",
            summary.ok, summary.total, summary.by_instance
        );
        assert!(
            summary.failures.is_empty(),
            "failures: {:?}",
            summary.failures
        );
    });
}

#[test]
fn a_rolling_restart_of_every_serving_node_fails_no_request() {
    netns::run(|| async {
        let mut c = Cluster::new();
        web_mesh(&mut c, 4, "").await;
        let load = Load::start(
            c.node("n1").outbound(),
            "web",
            100,
            4,
            Duration::from_secs(120),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        for name in ["n2", "n3", "n4"] {
            let t = Instant::now();
            assert!(
                c.node_mut(name).stop(Signal::SIGTERM).await,
                "{name} did not exit cleanly"
            );
            let drained = t.elapsed();
            c.node_mut(name).restart();
            let since = load.started.elapsed();
            let (_, back) = wait_until(&format!("{name} to serve again"), LIMIT, || async {
                if load
                    .samples()
                    .iter()
                    .any(|s| s.at > since && s.instance.as_deref() == Some(name))
                {
                    Ok(())
                } else {
                    Err("not yet".into())
                }
            })
            .await;
            println!(
                "{name}: drained and exited in {drained:?}, serving again {back:?} after restart"
            );
        }
        let (summary, _) = load.stop().await;
        println!(
            "rolling restart: {} of {} requests ok, by instance {:?}",
            summary.ok, summary.total, summary.by_instance
        );
        assert!(summary.total > 500, "the load did not run");
        assert!(
            summary.failures.is_empty(),
            "failed requests: {:?}",
            summary.failures
        );
    });
}

#[test]
fn a_crashed_node_gets_no_request_after_it_is_detected() {
    netns::run(|| async {
        let mut c = Cluster::new();
        let apps = web_mesh(&mut c, 4, "").await;
        let load = Load::start(
            c.node("n1").outbound(),
            "web",
            100,
            4,
            Duration::from_secs(60),
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let killed_at = load.started.elapsed();
        let served_before = apps[2].served();
        c.node_mut("n4").stop_with(Signal::SIGKILL);
        let (_, detection) = wait_until("n1 to declare n4 dead", LIMIT, || async {
            let m = c.node("n1").members().await?;
            if m.iter().any(|(n, s, _)| n == "n4" && s == "dead") {
                Ok(())
            } else {
                Err(format!("{m:?}"))
            }
        })
        .await;
        let detected_at = load.started.elapsed();
        println!("n4 killed: detected dead by n1 after {detection:?}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (summary, samples) = load.stop().await;
        let before: Vec<_> = samples
            .iter()
            .filter(|s| s.at >= killed_at && s.at < detected_at && !s.ok())
            .collect();
        let after: Vec<_> = samples
            .iter()
            .filter(|s| s.at >= detected_at && !s.ok())
            .collect();
        println!(
            "{} requests, {} failed between the crash and its detection, {} after; by instance {:?}",
            summary.total,
            before.len(),
            after.len(),
            summary.by_instance
        );
        assert!(
            after.is_empty(),
            "requests failed after detection: {after:?}"
        );
        assert_eq!(
            apps[2].served(),
            served_before,
            "n4's app was reached without its node"
        );
        assert!(
            samples
                .iter()
                .filter(|s| s.at >= detected_at)
                .all(|s| s.instance.as_deref() != Some("n4"))
        );
    });
}

/// Each node's view as comparable text: members with state and generation, and instances.
async fn views(c: &Cluster, names: &[&str]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for n in names {
        let members = c.node(n).members().await?;
        let services = c.node(n).services().await?;
        out.push(format!("{members:?} {services:?}"));
    }
    Ok(out)
}

async fn wait_identical(c: &Cluster, names: &[&str], what: &str) -> Duration {
    let (_, took) = wait_until(what, LIMIT, || async {
        let v = views(c, names).await?;
        if v.windows(2).all(|w| w[0] == w[1]) && v[0].matches("\"alive\"").count() == names.len() {
            Ok(())
        } else {
            Err(v.join("\n"))
        }
    })
    .await;
    took
}

#[test]
fn isolating_one_node_of_five_leaves_the_other_four_serving() {
    netns::run(|| async {
        let mut c = Cluster::new();
        web_mesh(&mut c, 5, "").await;
        let all = ["n1", "n2", "n3", "n4", "n5"];
        wait_identical(&c, &all, "five identical views").await;
        let load = Load::start(
            c.node("n1").outbound(),
            "web",
            100,
            4,
            Duration::from_secs(90),
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let isolated = Cluster::ip(6); // n5
        let others: Vec<_> = (2..=5).map(Cluster::ip).collect();
        let cut_at = load.started.elapsed();
        netns::split(&[isolated], &others);
        let (_, dropped) = wait_until("the four to drop n5's instance", LIMIT, || async {
            for n in ["n1", "n2", "n3", "n4"] {
                let s = c.node(n).services().await?;
                if s.iter().any(|(_, node)| node == "n5") {
                    return Err(format!("{n}: {s:?}"));
                }
            }
            Ok(())
        })
        .await;
        println!("n5 isolated: the four dropped its instance after {dropped:?}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        netns::unsplit(&[isolated], &others);
        let healed = wait_identical(&c, &all, "five identical views after healing").await;
        println!("healed: all five report identical membership and service views after {healed:?}");
        let (summary, samples) = load.stop().await;
        let during: Vec<_> = samples
            .iter()
            .filter(|s| s.at >= cut_at && !s.ok())
            .collect();
        println!(
            "{} requests, {} ok, by instance {:?}; failures {:?}",
            summary.total, summary.ok, summary.by_instance, during
        );
        assert!(
            summary.failures.is_empty(),
            "the four did not keep serving: {:?}",
            summary.failures
        );
    });
}

#[test]
fn a_two_three_split_keeps_both_sides_working_and_heals() {
    netns::run(|| async {
        let mut c = Cluster::new();
        // n1 calls from the small side {n1, n2}, n3 from the large one {n3, n4, n5}; web runs on
        // n2..n5, so each side has instances of its own.
        web_mesh(&mut c, 5, "").await;
        let all = ["n1", "n2", "n3", "n4", "n5"];
        wait_identical(&c, &all, "five identical views").await;
        let small = [Cluster::ip(2), Cluster::ip(3)]; // n1, n2
        let large = [Cluster::ip(4), Cluster::ip(5), Cluster::ip(6)]; // n3, n4, n5
        let left = Load::start(
            c.node("n1").outbound(),
            "web",
            50,
            2,
            Duration::from_secs(90),
        );
        let right = Load::start(
            c.node("n3").outbound(),
            "web",
            50,
            2,
            Duration::from_secs(90),
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        netns::split(&small, &large);
        let (_, took) = wait_until(
            "each side to keep only its own instances",
            LIMIT,
            || async {
                let l = c.node("n1").services().await?;
                let r = c.node("n3").services().await?;
                let l_ok = l.iter().all(|(_, n)| n == "n2");
                let r_ok = r.iter().all(|(_, n)| n != "n2") && r.len() == 3;
                if l_ok && r_ok {
                    Ok(())
                } else {
                    Err(format!("left {l:?} right {r:?}"))
                }
            },
        )
        .await;
        println!("split 2/3: each side on its own instances after {took:?}");
        let split_done = (left.started.elapsed(), right.started.elapsed());
        tokio::time::sleep(Duration::from_secs(3)).await;
        netns::unsplit(&small, &large);
        let healed = wait_identical(&c, &all, "views to reconverge").await;
        println!("healed: identical views after {healed:?}");
        let (ls, lsamples) = left.stop().await;
        let (rs, rsamples) = right.stop().await;
        let left_after: Vec<_> = lsamples
            .iter()
            .filter(|s| s.at >= split_done.0 && !s.ok())
            .collect();
        let right_after: Vec<_> = rsamples
            .iter()
            .filter(|s| s.at >= split_done.1 && !s.ok())
            .collect();
        println!(
            "small side: {} of {} ok {:?}; large side: {} of {} ok {:?}",
            ls.ok, ls.total, ls.by_instance, rs.ok, rs.total, rs.by_instance
        );
        assert!(
            left_after.is_empty() && right_after.is_empty(),
            "failures once split: {left_after:?} {right_after:?}"
        );
        assert!(
            ls.failures.is_empty() && rs.failures.is_empty(),
            "failures: {:?} {:?}",
            ls.failures,
            rs.failures
        );
    });
}

const ROUTE_POLICY: &str = r#"
[[route]]
name = "web-all"
service = "web"
backends = [{ service = "web", weight = 1 }]
"#;

async fn digest(c: &Cluster, n: &str) -> Result<String, String> {
    let v = c.node(n).admin_get("/v1/policies").await?.json();
    v["digest"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{v}"))
}

#[test]
fn a_whole_mesh_restart_without_seeds_serves_from_the_persisted_view_and_loses_nothing() {
    netns::run(|| async {
        let mut c = Cluster::new();
        // n1 is every node's only seed; n3 and n4 serve web, n4 also api (registered at run time).
        c.add(NodeSpec::new("n1", Cluster::ip(2)));
        let seed = c.node("n1").mesh();
        c.add(NodeSpec::new("n2", Cluster::ip(3)).seed(seed));
        let mut apps = Vec::new();
        for i in [3u8, 4] {
            let name = format!("n{i}");
            let app = HealthApp::start(app_addr(i), &name).await;
            let mut spec = NodeSpec::new(&name, Cluster::ip(i + 1))
                .seed(seed)
                .service("web", app.addr, "http");
            if i == 4 {
                spec.cert_services.push("api".into());
            }
            c.add(spec);
            apps.push(app);
        }
        let api = HealthApp::start(SocketAddr::from(([127, 0, 1, 40], 8080)), "api-on-n4").await;
        c.node("n2").wait_instances("web", &["n3", "n4"]).await;
        let reg = format!("{{\"name\":\"api\",\"address\":\"{}\"}}", api.addr);
        let r = murmur_tests::http::send(
            c.node("n4").admin(),
            "POST",
            "/v1/services",
            &[("content-type", "application/json")],
            reg.into_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let file = c.dir.path().join("route.toml");
        std::fs::write(&file, ROUTE_POLICY).unwrap();
        let identity = c.pki.ca_dir.join("operator.crt");
        murmur_tests::pki::murmur(&[
            "policy",
            "apply",
            "-f",
            file.to_str().unwrap(),
            "--node",
            &format!("http://{}", c.node("n2").admin()),
            "--identity",
            identity.to_str().unwrap(),
        ]);
        let all = ["n1", "n2", "n3", "n4"];
        let (before, _) = wait_until(
            "one policy digest everywhere and api on n4",
            LIMIT,
            || async {
                let mut ds = Vec::new();
                for n in all {
                    ds.push(digest(&c, n).await?);
                }
                let api_seen = c
                    .node("n2")
                    .services()
                    .await?
                    .contains(&("api".into(), "n4".into()));
                if ds.windows(2).all(|w| w[0] == w[1]) && api_seen {
                    Ok(ds[0].clone())
                } else {
                    Err(format!("{ds:?} api {api_seen}"))
                }
            },
        )
        .await;

        // Power loss everywhere; everything but the seed comes back.
        for n in &mut c.nodes {
            n.stop_with(Signal::SIGKILL);
        }
        for n in ["n2", "n3", "n4"] {
            c.node_mut(n).restart();
        }
        let (_, _) = wait_until("n2 to answer from its persisted view", LIMIT, || async {
            let m = c.node("n2").admin_get("/v1/members").await?.json();
            if m["stale"] == true {
                Ok(())
            } else {
                Err(format!("{m}"))
            }
        })
        .await;
        // No seed: gossip cannot start, but traffic flows on the persisted endpoints.
        let load = Load::start(
            c.node("n2").outbound(),
            "web",
            50,
            2,
            Duration::from_secs(60),
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let during = summarize(&load.samples());
        let alive_during = c.node("n2").members().await.unwrap();
        println!(
            "seed down: n2 serves from disk ({alive_during:?}); {} of {} requests ok, by instance {:?}",
            during.ok, during.total, during.by_instance
        );
        assert!(
            during.total > 50 && during.failures.is_empty(),
            "fail-static did not serve: {:?}",
            during.failures
        );
        for n in ["n2", "n3", "n4"] {
            assert_eq!(
                digest(&c, n).await.unwrap(),
                before,
                "{n} lost its policy across the restart"
            );
        }

        // The seed returns: gossip resumes and the views are live again.
        c.node_mut("n1").restart();
        let (_, took) = wait_until("live, complete views everywhere", LIMIT, || async {
            for n in all {
                let m = c.node(n).admin_get("/v1/members").await?.json();
                let alive = m["members"].as_array().map_or(0, |a| {
                    a.iter()
                        .filter(|x| x["state"] == "alive" && x["stale"] == false)
                        .count()
                });
                if m["stale"] != false || alive != 4 {
                    return Err(format!("{n}: {m}"));
                }
                let s = c.node(n).services().await?;
                if !s.contains(&("api".into(), "n4".into()))
                    || s.iter().filter(|(x, _)| x == "web").count() != 2
                {
                    return Err(format!("{n}: {s:?}"));
                }
                if digest(&c, n).await? != before {
                    return Err(format!("{n}: policy changed"));
                }
            }
            Ok(())
        })
        .await;
        let (summary, _) = load.stop().await;
        println!(
            "seed back: live views everywhere after {took:?}; policy and the runtime registration intact; {} of {} requests ok",
            summary.ok, summary.total
        );
        assert!(summary.failures.is_empty(), "{:?}", summary.failures);
    });
}

#[test]
fn murmur_drain_stops_new_traffic_without_stopping_the_node() {
    netns::run(|| async {
        let mut c = Cluster::new();
        web_mesh(&mut c, 3, "").await;
        let readyz = |n: &str| {
            let admin = c.node(n).admin();
            async move {
                murmur_tests::http::get(admin, "/readyz")
                    .await
                    .map(|r| r.status)
            }
        };
        wait_until("n2 to be ready", LIMIT, || async {
            match readyz("n2").await? {
                200 => Ok(()),
                other => Err(other.to_string()),
            }
        })
        .await;
        let load = Load::start(
            c.node("n1").outbound(),
            "web",
            100,
            4,
            Duration::from_secs(60),
        );
        wait_until("both instances to serve", LIMIT, || async {
            let s = summarize(&load.samples());
            if s.by_instance.len() == 2 {
                Ok(())
            } else {
                Err(format!("{:?}", s.by_instance))
            }
        })
        .await;
        let admin = c.node("n2").admin().to_string();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(murmur_tests::node::binary())
                .args(["drain", "--admin", &admin])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let drained_at = load.started.elapsed();
        println!("{}", String::from_utf8_lossy(&out.stdout).trim());
        assert_eq!(
            readyz("n2").await.unwrap(),
            503,
            "a drained node is not ready"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after: Vec<_> = load
            .samples()
            .into_iter()
            .filter(|s| s.at > drained_at && s.instance.as_deref() == Some("n2"))
            .collect();
        assert!(
            after.is_empty(),
            "n2 got {} requests after its drain returned",
            after.len()
        );
        assert!(c.nodes[1].is_running_ref(), "drain must not stop the node");

        let admin = c.node("n2").admin().to_string();
        murmur_tests::pki::murmur(&["drain", "--undo", "--admin", &admin]);
        let undone = load.started.elapsed();
        wait_until("n2 to serve again", LIMIT, || async {
            if load
                .samples()
                .iter()
                .any(|s| s.at > undone && s.instance.as_deref() == Some("n2"))
            {
                Ok(())
            } else {
                Err("not yet".into())
            }
        })
        .await;
        assert_eq!(readyz("n2").await.unwrap(), 200);
        let (summary, _) = load.stop().await;
        println!(
            "drain and undo: {} of {} requests ok, by instance {:?}",
            summary.ok, summary.total, summary.by_instance
        );
        assert!(summary.failures.is_empty(), "{:?}", summary.failures);
    });
}
