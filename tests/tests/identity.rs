//! Identity without hand issuing (issue: join tokens, issuers anywhere in the mesh, short-lived
//! certificates renewed automatically): a mesh grown from one hand-issued issuer and tokens,
//! renewal of 60 s certificates under load, through either issuer, across a partition and after
//! an issuer dies; bad joins refused; revocation.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use murmur_tests::apps::EchoApp;
use murmur_tests::load::Load;
use murmur_tests::node::binary;
use murmur_tests::{Cluster, NodeSpec, netns, wait_until};
use nix::sys::signal::Signal;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);
/// Lifetime of the certificates the issuers sign.
const LEAF: &str = "60s";
const ALL: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];

fn app_addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 1, i], 8080))
}

/// n1 has a hand-issued certificate (2 minutes) and an issuer credential; n2 joins with a token
/// and is the second issuer; n3 to n5 join with tokens alone, through seeds that are issuers
/// (n1, n2) or only forward to one (n3). `web` is served on n4 and n5, `api` on n2 and n3.
async fn token_mesh(c: &mut Cluster) -> Vec<EchoApp> {
    let n1_issuer = c.pki.issuer_toml("n1", LEAF);
    let mut n1 = NodeSpec::new("n1", Cluster::ip(2)).identity(&n1_issuer);
    n1.cert_ttl = Some("2m".into());
    c.add(n1);
    let mut apps = Vec::new();
    let seeds = [("n2", 2), ("n3", 3), ("n4", 4), ("n5", 2)];
    for (name, seed_ip) in seeds {
        let i: u8 = name[1..].parse().unwrap();
        let mut spec = NodeSpec::new(name, Cluster::ip(i + 1))
            .seed(SocketAddr::from((Cluster::ip(seed_ip), 7420)));
        let service = if i <= 3 { "api" } else { "web" };
        let app = EchoApp::start(app_addr(i), name).await;
        spec = spec.service(service, app.addr, "http");
        apps.push(app);
        if name == "n2" {
            spec = spec.identity(&c.pki.issuer_toml("n2", LEAF));
        }
        let token = c.pki.token(name, &[service], "10m");
        c.add(spec.join_token(token));
    }
    c.wait_alive(&ALL, &ALL, LIMIT).await;
    apps
}

async fn status(c: &Cluster, node: &str) -> Result<Value, String> {
    let reply = c.node(node).admin_get("/v1/status").await?;
    if reply.status != 200 {
        return Err(format!("{node}: {}", reply.text()));
    }
    Ok(reply.json())
}

fn renewals(s: &Value) -> u64 {
    s["identity"]["renewals"].as_u64().unwrap_or(0)
}

fn last_issuer(s: &Value) -> String {
    s["identity"]["last_issuer"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Renewals and generation of each node.
async fn counts(c: &Cluster, names: &[&str]) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for n in names {
        let s = status(c, n).await.unwrap();
        out.push((
            (*n).to_owned(),
            renewals(&s),
            s["generation"].as_u64().unwrap(),
        ));
    }
    out
}

/// Waits until every node of `names` has renewed `more` times since `before`, each renewal
/// since then by an issuer `allowed` accepts (its last issuer is checked at every look).
async fn wait_renewed(
    c: &Cluster,
    before: &[(String, u64, u64)],
    more: u64,
    limit: Duration,
    allowed: impl Fn(&str, &str) -> bool,
) -> Duration {
    let what = format!(
        "{more} more renewals on {:?}",
        before.iter().map(|b| &b.0).collect::<Vec<_>>()
    );
    let (_, took) = wait_until(&what, limit, || async {
        let mut pending = Vec::new();
        for (name, was, _) in before {
            let s = status(c, name).await?;
            let by = last_issuer(&s);
            if renewals(&s) > *was && !allowed(name, &by) {
                return Err(format!("FAIL: {name} renewed through {by}"));
            }
            if renewals(&s) < was + more {
                pending.push(format!(
                    "{name}: {} renewals, {} ({})",
                    renewals(&s),
                    s["identity"]["renewal"],
                    s["identity"]["renewal_error"]
                ));
            }
        }
        if pending.is_empty() {
            Ok(())
        } else {
            Err(pending.join("; "))
        }
    })
    .await;
    took
}

#[test]
fn tokens_bring_up_five_nodes_from_one_hand_issued_issuer_and_60s_certificates_renew_under_load() {
    netns::run(|| async {
        let mut c = Cluster::new();
        let started = Instant::now();
        let _apps = token_mesh(&mut c).await;
        println!(
            "n1 by hand, n2-n5 by token: all list all five after {:?}",
            started.elapsed()
        );
        // Only n1's certificate came from the CA by hand; the others from an issuer.
        for n in ["n2", "n3", "n4", "n5"] {
            let s = status(&c, n).await.unwrap();
            let issuer = s["certificate"]["issuer"].as_str().unwrap();
            assert!(
                issuer.contains("issuer n1") || issuer.contains("issuer n2"),
                "{n}: {issuer}"
            );
        }
        for n in ALL {
            c.node(n).wait_instances("web", &["n4", "n5"]).await;
            c.node(n).wait_instances("api", &["n2", "n3"]).await;
        }

        let before = counts(&c, &ALL).await;
        let loads: Vec<(&str, Load)> = [
            ("n1", "web"),
            ("n2", "web"),
            ("n3", "web"),
            ("n4", "api"),
            ("n5", "api"),
        ]
        .into_iter()
        .map(|(from, svc)| {
            (
                from,
                Load::start(
                    c.node(from).outbound(),
                    svc,
                    10,
                    2,
                    Duration::from_secs(400),
                ),
            )
        })
        .collect();
        let load_started = Instant::now();
        wait_renewed(&c, &before, 2, Duration::from_secs(300), |_, _| true).await;
        // At least three lifetimes of load.
        if let Some(rest) = Duration::from_secs(185).checked_sub(load_started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        let after = counts(&c, &ALL).await;
        let mut total = 0;
        for (from, load) in loads {
            let (summary, _) = load.stop().await;
            println!(
                "load from {from}: {} of {} requests ok, by instance {:?}",
                summary.ok, summary.total, summary.by_instance
            );
            assert!(summary.total > 1000, "the load from {from} did not run");
            assert!(
                summary.failures.is_empty(),
                "failed requests from {from}: {:?}",
                summary.failures
            );
            total += summary.total;
        }
        for name in ALL {
            let s = status(&c, name).await.unwrap();
            let left = s["certificate"]["expires_in_s"].as_i64().unwrap();
            assert!(left > 0, "{name}'s certificate expired");
            assert_ne!(
                s["identity"]["renewal"], "failing",
                "{name}: {}",
                s["identity"]
            );
        }
        for ((name, r0, g0), (_, r1, g1)) in before.iter().zip(&after) {
            println!(
                "{name}: {} renewals during {:?} of load",
                r1 - r0,
                load_started.elapsed()
            );
            assert!(r1 - r0 >= 2, "{name} renewed {} times", r1 - r0);
            assert_eq!(g0, g1, "{name} restarted");
            assert!(c.node(name).is_running_ref(), "{name} exited");
        }
        println!("{total} requests across the mesh, none failed, no node restarted");
    });
}

#[test]
fn renewal_goes_on_through_the_issuer_of_each_side_of_a_partition_and_after_an_issuer_dies() {
    netns::run(|| async {
        let mut c = Cluster::new();
        let _apps = token_mesh(&mut c).await;

        // n1 and n3 on one side, n2, n4 and n5 on the other.
        let left = [Cluster::ip(2), Cluster::ip(4)];
        let right = [Cluster::ip(3), Cluster::ip(5), Cluster::ip(6)];
        netns::split(&left, &right);
        let side = |node: &str| {
            if node == "n1" || node == "n3" {
                "n1"
            } else {
                "n2"
            }
        };
        let before = counts(&c, &ALL).await;
        let took = wait_renewed(&c, &before, 2, Duration::from_secs(180), |node, by| {
            by == side(node)
        })
        .await;
        println!("partition: every node renewed twice through the issuer of its side in {took:?}");
        for n in ALL {
            let s = status(&c, n).await.unwrap();
            assert_eq!(last_issuer(&s), side(n), "{n}");
            assert!(
                s["certificate"]["expires_in_s"].as_i64().unwrap() > 0,
                "{n} expired"
            );
        }
        netns::unsplit(&left, &right);
        c.wait_alive(&ALL, &ALL, LIMIT).await;

        // n1 dies: n2 renews everyone left.
        c.node_mut("n1").stop_with(Signal::SIGKILL);
        let rest = ["n2", "n3", "n4", "n5"];
        let before = counts(&c, &rest).await;
        let took = wait_renewed(&c, &before, 2, Duration::from_secs(180), |_, by| by == "n2").await;
        println!("n1 killed: n2-n5 each renewed twice through n2 in {took:?}");
        for n in rest {
            let s = status(&c, n).await.unwrap();
            assert!(
                s["certificate"]["expires_in_s"].as_i64().unwrap() > 0,
                "{n} expired"
            );
        }
        let issued = status(&c, "n2").await.unwrap()["identity"]["issuer"]["renewals"]
            .as_u64()
            .unwrap();
        assert!(issued >= 8, "n2 issued {issued} renewals");

        // n1 comes back after its certificate expired: it signs its own with its issuer
        // credential, and is a member and an issuer again.
        let file = c.pki.out_dir.join("n1.crt");
        let expired = || {
            let der = murmur_transport::certs::read_certs_pem(&file)
                .unwrap()
                .remove(0);
            let info = murmur_transport::certs::parse_leaf(&der).unwrap();
            info.not_after < std::time::SystemTime::now()
        };
        wait_until("n1's certificate to expire", LIMIT, || async {
            if expired() {
                Ok(())
            } else {
                Err("valid".into())
            }
        })
        .await;
        c.node_mut("n1").restart();
        c.wait_alive(&ALL, &ALL, LIMIT).await;
        let s = status(&c, "n1").await.unwrap();
        assert!(s["certificate"]["expires_in_s"].as_i64().unwrap() > 0);
        assert!(!expired());
        assert!(s["identity"]["issuer"].is_object(), "{}", s["identity"]);
        println!(
            "n1 restarted after its certificate expired: serial {}, issued by itself",
            s["certificate"]["serial"]
        );
    });
}

/// Runs `murmur run` joining with `token` as `name`, expecting it to be refused; returns its
/// stderr. A node that joins instead is stopped after a minute, and the test fails.
fn refused_join(dir: &Path, c: &Cluster, name: &str, ip: u8, token: &Path) -> String {
    let seed = c.node("n2").mesh().to_string();
    let ip = Cluster::ip(ip);
    let log = dir.with_extension("log");
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let mut child = Command::new(binary())
        .args(["run", "--name", name, "--seed", &seed])
        .args([
            "--listen",
            &format!("{ip}:7420"),
            "--admin",
            &format!("{ip}:7422"),
        ])
        .args(["--outbound", &format!("{ip}:7421")])
        .arg("--ca")
        .arg(c.pki.ca_cert())
        .arg("--data-dir")
        .arg(dir)
        .arg("--join-token")
        .arg(token)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} joined with a token that should have been refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{name} exited successfully: {err}");
    assert!(
        !dir.join("identity/node.crt").exists(),
        "{name} got a certificate"
    );
    err
}

/// Joins n1's issuer signed, and token uses it recorded.
async fn issued(c: &Cluster) -> (u64, usize) {
    let s = status(c, "n1").await.unwrap();
    let joins = s["identity"]["issuer"]["joins"].as_u64().unwrap();
    let p = c.node("n1").admin_get("/v1/policies").await.unwrap().json();
    let uses = p["documents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "token-use")
        .count();
    (joins, uses)
}

#[test]
fn bad_joins_are_refused_with_a_clear_error_and_nothing_is_issued() {
    use murmur_transport::issuance::exchange::exchange_anonymous;
    use murmur_transport::issuance::protocol::{Answer, Request};

    netns::run(|| async {
        let mut c = Cluster::new();
        c.add(NodeSpec::new("n1", Cluster::ip(2)).identity(&c.pki.issuer_toml("n1", "1h")));
        // n2 is no issuer: joins through it are forwarded to n1.
        let token = c.pki.token("n2", &[], "10m");
        c.add(
            NodeSpec::new("n2", Cluster::ip(3))
                .seed(c.node("n1").mesh())
                .join_token(token),
        );
        c.wait_alive(&["n1", "n2"], &["n1", "n2"], LIMIT).await;
        let work = c.dir.path().join("joins");
        let base = issued(&c).await;
        assert_eq!(base, (1, 1), "n2's join");

        // A token used twice: the first use joins, the second is refused.
        let t = c.pki.token("web-1", &[], "10m");
        c.add(
            NodeSpec::new("web-1", Cluster::ip(20))
                .seed(c.node("n2").mesh())
                .join_token(t.clone()),
        );
        c.wait_alive(&["n1", "web-1"], &["n1", "n2", "web-1"], LIMIT)
            .await;
        let after_first = issued(&c).await;
        assert_eq!(
            after_first,
            (base.0 + 1, base.1 + 1),
            "the first use of web-1's token"
        );
        let err = refused_join(&work.join("second"), &c, "web-1", 21, &t);
        assert!(err.contains("was already used by node web-1"), "{err}");
        println!("used twice: {}", err.trim());

        // A token for a asking for b.
        let ta = c.pki.token("a", &[], "10m");
        let err = refused_join(&work.join("b"), &c, "b", 22, &ta);
        assert!(
            err.contains("admits spiffe://test.mesh/node/a, but the request asks for spiffe://test.mesh/node/b"),
            "{err}"
        );
        println!("name A asking for B: {}", err.trim());

        // An expired token.
        let tx = c.pki.token("x", &[], "1s");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let err = refused_join(&work.join("x"), &c, "x", 23, &tx);
        assert!(err.contains("the token expired"), "{err}");
        println!("expired: {}", err.trim());

        // A token signed by another mesh's operator (same trust domain).
        let other = murmur_tests::Pki::new(&c.dir.path().join("other"));
        let tf = other.token("f", &[], "10m");
        let err = refused_join(&work.join("f"), &c, "f", 24, &tf);
        assert!(err.contains("signature is refused"), "{err}");
        println!("foreign operator: {}", err.trim());

        // Requests asking for more than the token grants.
        let tg = c.pki.token("g", &["web"], "10m");
        let token = std::fs::read_to_string(&tg).unwrap();
        let bundle = murmur_transport::tls::TrustBundle::load(
            &c.pki.ca_cert(),
            murmur_transport::identity::TrustDomain::parse("test.mesh").unwrap(),
        )
        .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = |sans: &[&str], ca: bool| {
            let mut p = rcgen::CertificateParams::default();
            p.subject_alt_names = sans
                .iter()
                .map(|s| match s.strip_prefix("spiffe:") {
                    Some(_) => rcgen::SanType::URI(s.to_string().try_into().unwrap()),
                    None => rcgen::SanType::DnsName(s.to_string().try_into().unwrap()),
                })
                .collect();
            if ca {
                p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            }
            p.serialize_request(&key).unwrap().der().to_vec()
        };
        let ask = |csr: Vec<u8>| {
            let request = Request::Join {
                token: token.trim().to_owned(),
                csr,
            };
            let bundle = bundle.clone();
            let seed = c.node("n2").mesh();
            async move {
                exchange_anonymous(
                    bundle,
                    seed,
                    &request,
                    &Default::default(),
                    Duration::from_secs(10),
                )
                .await
                .unwrap()
                .0
            }
        };
        let own = [
            "spiffe://test.mesh/node/g",
            "g.node.test.mesh",
            "web.svc.test.mesh",
        ];
        let extra = [own.as_slice(), &["pay.svc.test.mesh"]].concat();
        let Answer::Refused(r) = ask(csr(&extra, false)).await else {
            panic!("a request with an extra name was signed");
        };
        assert!(
            r.message
                .contains("names it may not have: DNS:pay.svc.test.mesh"),
            "{}",
            r.message
        );
        println!("extra SAN: {}", r.message);
        let Answer::Refused(r) = ask(csr(&own, true)).await else {
            panic!("a request for CA:TRUE was signed");
        };
        assert!(
            r.message.contains("asks to be a certificate authority"),
            "{}",
            r.message
        );
        println!("CA:TRUE: {}", r.message);

        // Nothing was issued or recorded by any refusal...
        let (joins, uses) = issued(&c).await;
        assert_eq!(
            (joins, uses),
            after_first,
            "a refused request was issued or recorded"
        );
        let refused = status(&c, "n1").await.unwrap()["identity"]["issuer"]["refused"].clone();
        println!("n1 refused: {refused}");
        for code in [
            "token-used",
            "wrong-name",
            "token-expired",
            "token-invalid",
            "bad-request",
        ] {
            assert!(
                refused[code].as_u64().unwrap_or(0) >= 1,
                "{code}: {refused}"
            );
        }
        // ...and the tokens refused for a bad request are still good for a good one.
        let Answer::Issued { chain, issuer } = ask(csr(&own, false)).await else {
            panic!("g's token no longer works");
        };
        assert_eq!((chain.len(), issuer.as_str()), (2, "n1"));
    });
}

#[test]
fn a_revoked_node_loses_every_connection_is_listed_revoked_everywhere_and_cannot_renew() {
    netns::run(|| async {
        let mut c = Cluster::new();
        c.add(NodeSpec::new("n1", Cluster::ip(2)).identity(&c.pki.issuer_toml("n1", LEAF)));
        let seed = c.node("n1").mesh();
        let app = EchoApp::start(app_addr(4), "n4").await;
        for (name, i) in [("n2", 3), ("n3", 4), ("n4", 5)] {
            let mut spec = NodeSpec::new(name, Cluster::ip(i)).seed(seed);
            if name == "n4" {
                spec = spec.service("web", app.addr, "http");
            }
            // n3 is an issuer too: revoked below, its own issuer must refuse it.
            if name == "n3" {
                spec = spec.identity(&c.pki.issuer_toml("n3", LEAF));
            }
            let token = c.pki.token(
                name,
                &spec
                    .cert_services
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                "10m",
            );
            c.add(spec.join_token(token));
        }
        let all = ["n1", "n2", "n3", "n4"];
        c.wait_alive(&all, &all, LIMIT).await;
        c.node("n2").wait_instances("web", &["n4"]).await;
        let load = Load::start(
            c.node("n2").outbound(),
            "web",
            20,
            2,
            Duration::from_secs(60),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let peers = |s: &Value| -> Vec<String> {
            s["identity"]["peers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_owned())
                .collect()
        };
        assert!(peers(&status(&c, "n4").await.unwrap()).len() >= 2);
        let renewed = renewals(&status(&c, "n4").await.unwrap());

        let operator = c.pki.ca_dir.join("operator.crt");
        let out = murmur_tests::pki::murmur(&[
            "cert",
            "revoke",
            "--name",
            "n4",
            "--reason",
            "test",
            "--node",
            &c.node("n1").admin().to_string(),
            "--identity",
            operator.to_str().unwrap(),
        ]);
        let revoked_at = Instant::now();
        println!("{}", out.trim());
        let (_, took) = wait_until(
            "n4 revoked and cut off everywhere",
            Duration::from_secs(5),
            || async {
                for o in ["n1", "n2", "n3"] {
                    let m = c.node(o).members().await?;
                    let state = m
                        .iter()
                        .find(|(n, _, _)| n == "n4")
                        .map(|(_, s, _)| s.clone());
                    if !matches!(state.as_deref(), Some("revoked" | "dead")) {
                        return Err(format!("{o} lists n4 {state:?}"));
                    }
                    let p = peers(&status(&c, o).await?);
                    if p.iter().any(|p| p == "n4") {
                        return Err(format!("{o} still connected to n4"));
                    }
                }
                let p = peers(&status(&c, "n4").await?);
                if !p.is_empty() {
                    return Err(format!("n4 still connected to {p:?}"));
                }
                Ok(())
            },
        )
        .await;
        println!(
            "n4 listed revoked and without any connection everywhere {took:?} after the revocation was applied"
        );
        // n4 serves web alone: once everyone refuses it, no request reaches it.
        let cut = revoked_at.duration_since(load.started) + took;
        let (summary, samples) = load.stop().await;
        let after = samples.iter().filter(|s| s.ok() && s.at > cut).count();
        println!(
            "requests to n4's web: {} ok of {}; ok after n4 was cut off: {after}",
            summary.ok, summary.total
        );
        assert!(summary.ok > 0, "the load never reached n4");
        assert_eq!(after, 0, "requests still reached the revoked node");

        // n4 cannot renew: its next attempts fail, and its certificate runs out.
        let (_, took) = wait_until("n4's renewal to fail", Duration::from_secs(60), || async {
            let s = status(&c, "n4").await?;
            if s["identity"]["renewal"] == "failing" {
                Ok(())
            } else {
                Err(s["identity"].to_string())
            }
        })
        .await;
        let s = status(&c, "n4").await.unwrap();
        assert_eq!(renewals(&s), renewed, "n4 renewed after its revocation");
        println!(
            "n4 renewal failing {took:?} later: {}",
            s["identity"]["renewal_error"]
        );
        let mesh = c.node("n1").admin_get("/v1/mesh").await.unwrap().json();
        let n4 = mesh["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "n4")
            .unwrap()
            .clone();
        assert_eq!(n4["state"], "revoked");
        assert!(
            n4["certificate"]["warning"]
                .as_str()
                .unwrap()
                .contains("revoked"),
            "{n4}"
        );

        // An issuer refuses to renew a revoked node, its own node included: n3 (an issuer) is
        // revoked through its own admin API, so it hears of it first.
        murmur_tests::pki::murmur(&[
            "cert",
            "revoke",
            "--name",
            "n3",
            "--node",
            &c.node("n3").admin().to_string(),
            "--identity",
            operator.to_str().unwrap(),
        ]);
        let (_, took) = wait_until("n3's own issuer to refuse it", LIMIT, || async {
            let s = status(&c, "n3").await?;
            let e = s["identity"]["renewal_error"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            if e.contains("n3 (self): revoked: node n3 is revoked") {
                Ok(e)
            } else {
                Err(s["identity"].to_string())
            }
        })
        .await;
        let s = status(&c, "n3").await.unwrap();
        println!(
            "n3 (an issuer) revoked: its renewal refused {took:?} later: {}",
            s["identity"]["renewal_error"]
        );
        let refused = &s["identity"]["issuer"]["refused"]["revoked"];
        assert!(refused.as_u64().unwrap_or(0) >= 1, "{}", s["identity"]);
    });
}

#[test]
fn an_issuer_whose_log_cannot_be_written_still_answers() {
    netns::run(|| async {
        // A full disk under stderr: every log line fails to be written.
        let mut c = Cluster::new();
        let mut n1 = NodeSpec::new("n1", Cluster::ip(2)).identity(&c.pki.issuer_toml("n1", LEAF));
        n1.stderr = Some("/dev/full".into());
        c.add(n1);
        let token = c.pki.token("n2", &[], "10m");
        c.add(
            NodeSpec::new("n2", Cluster::ip(3))
                .seed(c.node("n1").mesh())
                .join_token(token),
        );
        c.wait_alive(&["n1", "n2"], &["n1", "n2"], LIMIT).await;
        let s = status(&c, "n1").await.unwrap();
        assert_eq!(s["identity"]["issuer"]["joins"], 1, "{}", s["identity"]);
        // And renewals are answered too.
        let (_, took) = wait_until("n2 to renew through n1", LIMIT, || async {
            let s = status(&c, "n2").await?;
            if renewals(&s) >= 1 {
                Ok(())
            } else {
                Err(s["identity"].to_string())
            }
        })
        .await;
        println!("n1 logs to /dev/full: it issued n2's certificate and renewed it after {took:?}");
    });
}
