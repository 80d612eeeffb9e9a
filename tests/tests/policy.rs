//! End-to-end policy tests through real `murmur` processes, each in its own network namespace
//! (issue: signed policy by gossip): apply on one node of five; the document outliving its
//! origin and a whole-mesh restart; invalid documents refused at apply time; forged, altered
//! and replayed documents changing nothing, whether handed to a node or gossiped by a member;
//! concurrent versions, also across a partition, ending with one winner; a delete made during a
//! partition winning after the heal.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use murmur_tests::policy::rogue::Rogue;
use murmur_tests::policy::sign::{
    body_json, next_stamp, persisted, sign_toml, signer, stamp, tamper,
};
use murmur_tests::policy::{
    Policies, PolicyState, admin_url, apply, cli, cli_as, cli_spawn, ensure, failed, hold,
    policies, post, printed_digest, quic_url, states, succeeded, wait_agree, write,
};
use murmur_tests::{Cluster, NodeSpec, netns, wait_until};
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(60);

const POLICY: &str = r#"
[[route]]
name = "web-canary"
service = "web"
backends = [{ service = "web", subset = { version = "v1" }, weight = 90 },
            { service = "web", subset = { version = "v2" }, weight = 10 }]

[[timeout]]
name = "web-timeouts"
service = "web"
request = "5s"

[[authz]]
name = "web-authz"
service = "web"
default = "deny"
rules = [{ name = "frontend", action = "allow", callers = [{ service = "frontend" }] }]
"#;

/// A one-document policy file: ratelimit `name` of service web at `rate`.
fn ratelimit(name: &str, rate: u32) -> String {
    format!("[[ratelimit]]\nname = \"{name}\"\nservice = \"web\"\nrate = {rate}\n")
}

/// The rate of ratelimit `name` in force on a node.
fn rate(p: &Policies, name: &str) -> Option<u64> {
    p.doc("ratelimit", name)
        .filter(|d| !d.deleted)
        .and_then(|d| d.body.as_ref()?["rate"].as_u64())
}

/// `n1..=nN`.
fn names(n: u8) -> Vec<String> {
    (1..=n).map(|i| format!("n{i}")).collect()
}

fn refs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

#[test]
fn apply_on_one_of_five_converges_everywhere() {
    netns::run(|| async {
        let mut c = Cluster::new();
        c.chain(5, |s| s);
        let all = names(5);
        let all = refs(&all);
        c.wait_alive(&all, &all, LIMIT).await;
        let empty = policies(c.node("n1")).await.unwrap().digest;

        let file = write(c.dir.path(), "web.toml", POLICY);
        let started = Instant::now();
        let out = apply(&c.pki, &file, &admin_url(c.node("n1")));
        assert!(out.contains("route/web-canary: created"), "{out}");
        let digest = printed_digest(&out);
        assert_ne!(digest, empty);
        wait_agree(
            &c,
            &all,
            "all five to report the apply's digest",
            LIMIT,
            |p| ensure(p.digest == digest, || p.digest.clone()),
        )
        .await;
        println!(
            "apply on 1 of 5 nodes: all five report digest {digest} after {:?}",
            started.elapsed()
        );

        // Through any node's mesh address over QUIC, with the operator certificate.
        let started = Instant::now();
        let out = succeeded(&cli(
            &c.pki,
            &[
                "policy",
                "delete",
                "timeout",
                "web-timeouts",
                "--node",
                &quic_url(c.node("n4")),
            ],
        ));
        let digest = printed_digest(&out);
        wait_agree(&c, &all, "all five to agree on the delete", LIMIT, |p| {
            ensure(
                p.digest == digest
                    && !p.holds("timeout", "web-timeouts")
                    && p.holds("route", "web-canary"),
                || format!("{p:?}"),
            )
        })
        .await;
        println!(
            "delete over QUIC on node 4: all five agree after {:?}",
            started.elapsed()
        );

        // `policy list` starts with the digest.
        let text = succeeded(&cli(
            &c.pki,
            &["policy", "list", "--node", &quic_url(c.node("n5"))],
        ));
        assert!(
            text.starts_with(&format!("node n5  digest {digest}  documents 2")),
            "{text}"
        );
    });
}

#[test]
fn the_policy_outlives_its_origin_and_a_whole_mesh_restart() {
    netns::run(|| async {
        let mut c = Cluster::new();
        // Forget dead members quickly, so the newcomer can only learn from custodians.
        let fast_forget = |mut s: NodeSpec| {
            s.gossip_toml = "dead_node_grace = \"4s\"\n".into();
            s
        };
        c.chain(4, fast_forget);
        let four = ["n1", "n2", "n3", "n4"];
        c.wait_alive(&four, &four, LIMIT).await;
        let file = write(c.dir.path(), "web.toml", POLICY);
        let digest = printed_digest(&apply(&c.pki, &file, &admin_url(c.node("n1"))));
        wait_agree(&c, &four, "all four to hold the policy", LIMIT, |p| {
            ensure(p.digest == digest, || p.digest.clone())
        })
        .await;

        // Kill the origin: the others keep the documents, and a node that joins after the
        // origin is forgotten receives them.
        c.node_mut("n1").stop_with(Signal::SIGKILL);
        let survivors = ["n2", "n3", "n4"];
        wait_until("n2 to forget the origin", LIMIT, || async {
            let all = c.node("n2").admin_get("/v1/members?all=true").await?.text();
            ensure(!all.contains("\"n1\""), || all)
        })
        .await;
        for p in states(&c, &survivors).await.unwrap() {
            assert_eq!(p.digest, digest, "{} lost documents", p.node);
        }
        let started = Instant::now();
        let seeds = [c.node("n2").mesh(), c.node("n3").mesh()];
        c.add(fast_forget(
            NodeSpec::new("n5", Cluster::ip(6))
                .seed(seeds[0])
                .seed(seeds[1]),
        ));
        let (_, answering) = wait_until("n5 to answer", LIMIT, || policies(c.node("n5"))).await;
        wait_agree(
            &c,
            &["n5"],
            "the newcomer to receive the policy",
            LIMIT,
            |p| ensure(p.digest == digest, || p.digest.clone()),
        )
        .await;
        println!(
            "a node joining after the origin died had the policy {:?} after it started \
             (answering after {answering:?})",
            started.elapsed()
        );

        // Stop everyone, start everyone: the set is intact, from disk alone.
        c.node_mut("n5").stop_with(Signal::SIGKILL);
        for n in survivors {
            c.node_mut(n).stop_with(Signal::SIGTERM);
        }
        let started = Instant::now();
        for n in four {
            c.node_mut(n).restart();
        }
        c.wait_alive(&four, &four, LIMIT).await;
        wait_agree(
            &c,
            &four,
            "the restarted mesh to have the set",
            LIMIT,
            |p| {
                ensure(p.digest == digest && p.holds("authz", "web-authz"), || {
                    format!("{p:?}")
                })
            },
        )
        .await;
        println!(
            "whole-mesh restart: policy intact after {:?}",
            started.elapsed()
        );
    });
}

#[test]
fn invalid_documents_are_refused_at_apply_and_never_spread() {
    netns::run(|| async {
        let mut c = Cluster::new();
        c.chain(2, |s| s);
        let both = ["n1", "n2"];
        c.wait_alive(&both, &both, LIMIT).await;
        let empty = policies(c.node("n1")).await.unwrap().digest;
        let node = admin_url(c.node("n1"));
        let big_rules: Vec<String> = (0..60)
            .map(|i| format!("{{ name = \"r{i}\", action = \"allow\", callers = [{{ spiffe = \"spiffe://murmur.local/node/a-rather-long-node-name-{i}-*\" }}] }}"))
            .collect();
        let cases = [
            (
                "unknown-kind.toml",
                "[[routes]]\nname = \"x\"\n".to_owned(),
                "unknown-kind.toml: unknown kind `routes`; the kinds are route, retry, timeout, ratelimit, circuit, authz, accesslog, external",
            ),
            (
                "missing.toml",
                "[[route]]\nname = \"x\"\nservice = \"web\"\n".to_owned(),
                "missing.toml: route \"x\": field `backends`: at least one backend is required (or a `redirect`)",
            ),
            (
                "type.toml",
                "[[ratelimit]]\nname = \"x\"\nservice = \"web\"\nrate = \"lots\"\n".to_owned(),
                "type.toml: ratelimit \"x\": field `rate`: invalid type: string \"lots\", expected u32",
            ),
            (
                "big.toml",
                format!(
                    "[[authz]]\nname = \"big\"\nservice = \"web\"\ndefault = \"deny\"\nrules = [{}]\n",
                    big_rules.join(", ")
                ),
                "big.toml: authz \"big\": document is",
            ),
        ];
        for (name, text, reason) in &cases {
            let path = write(c.dir.path(), name, text);
            let err = failed(&cli(
                &c.pki,
                &[
                    "policy",
                    "apply",
                    "-f",
                    path.to_str().unwrap(),
                    "--node",
                    &node,
                ],
            ));
            let expected = format!("error: {}", c.dir.path().join(reason).display());
            assert!(err.contains(&expected), "{name}: {err}");
        }
        // The node itself refuses what the CLI would not have sent: garbage, and documents
        // signed by a node's key instead of an operator's.
        let reply = murmur_tests::http::send(
            c.node("n1").admin(),
            "POST",
            "/v1/policies",
            &[("content-type", "application/json")],
            br#"{"documents":["AAAA"]}"#.to_vec(),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 400);
        assert!(
            reply.text().contains("malformed document"),
            "{}",
            reply.text()
        );
        let ok = write(c.dir.path(), "ok.toml", &ratelimit("r", 5));
        let err = failed(&cli_as(
            &c.pki.out_dir.join("n1.crt"),
            &[
                "policy",
                "apply",
                "-f",
                ok.to_str().unwrap(),
                "--node",
                &node,
            ],
        ));
        assert!(
            err.contains("signature refused") && err.contains("operator identity is required"),
            "{err}"
        );

        // Nothing reached the other node, which never even saw a document to reject.
        hold(
            "nothing to change anywhere",
            Duration::from_secs(2),
            || async {
                for p in states(&c, &both).await? {
                    ensure(p.digest == empty && p.count == 0, || format!("{p:?}"))?;
                }
                Ok(())
            },
        )
        .await;
        let (a, b) = (
            policies(c.node("n1")).await.unwrap(),
            policies(c.node("n2")).await.unwrap(),
        );
        assert_eq!(b.rejected_total, 0, "{b:?}");
        assert!(a.rejected_total >= 2, "{a:?}");
        assert!(
            c.node("n1")
                .log_tail(usize::MAX)
                .contains("policy document rejected")
        );
    });
}

/// Applies ratelimit `limit` at rate 1, then at rate 2, through the CLI on n1, and waits until
/// every node of `names` holds the second version. Returns both versions as n1 keeps them (the
/// bytes the operator's CLI signed) and the digest.
async fn two_versions(c: &Cluster, names: &[&str]) -> (String, String, String) {
    let node = admin_url(c.node("n1"));
    let v1 = write(c.dir.path(), "v1.toml", &ratelimit("limit", 1));
    apply(&c.pki, &v1, &node);
    let old = persisted(c.node("n1"), "ratelimit", "limit");
    let v2 = write(c.dir.path(), "v2.toml", &ratelimit("limit", 2));
    let out = apply(&c.pki, &v2, &node);
    assert!(out.contains("ratelimit/limit: updated"), "{out}");
    let digest = printed_digest(&out);
    let new = persisted(c.node("n1"), "ratelimit", "limit");
    wait_agree(c, names, "every node to hold version 2", LIMIT, |p| {
        ensure(p.digest == digest && rate(p, "limit") == Some(2), || {
            format!("{p:?}")
        })
    })
    .await;
    (old, new, digest)
}

/// Waits until `observer` lists none of `others` as alive; returns how long it took.
async fn wait_cut_off(c: &Cluster, observer: &str, others: &[&str]) -> Duration {
    let what = format!("{observer} to declare {others:?} dead");
    let (_, took) = wait_until(&what, LIMIT, || async {
        let m = c.node(observer).members().await?;
        let alive = m
            .iter()
            .any(|(n, s, _)| s == "alive" && others.contains(&n.as_str()));
        ensure(!alive, || format!("{m:?}"))
    })
    .await;
    took
}

/// Every node of `names` still has digest `digest` and version `stamp` of ratelimit `limit`.
async fn unchanged(
    c: &Cluster,
    names: &[&str],
    digest: &str,
    stamp: &murmur_membership::policy::Stamp,
) -> Result<(), String> {
    for p in states(c, names).await? {
        let held = p.doc("ratelimit", "limit").map(|d| &d.stamp);
        ensure(p.digest == digest && held == Some(stamp), || {
            format!("{}: digest {} limit {held:?}", p.node, p.digest)
        })?;
    }
    Ok(())
}

#[test]
fn forged_altered_and_replayed_documents_handed_to_a_node_change_nothing() {
    netns::run(|| async {
        let mut c = Cluster::new();
        c.chain(3, |s| s);
        let all = ["n1", "n2", "n3"];
        c.wait_alive(&all, &all, LIMIT).await;
        let (old, new, digest) = two_versions(&c, &all).await;
        let current = murmur_tests::policy::sign::payload(&new).stamp;
        let before = states(&c, &all).await.unwrap();
        let n1 = c.node("n1");

        // (a) Signed by a node's key instead of an operator's, the way the CLI signs.
        let forged = write(c.dir.path(), "forged.toml", &ratelimit("limit", 999));
        let err = failed(&cli_as(
            &c.pki.out_dir.join("n2.crt"),
            &[
                "policy",
                "apply",
                "-f",
                forged.to_str().unwrap(),
                "--node",
                &admin_url(n1),
            ],
        ));
        assert!(
            err.contains("signature refused") && err.contains("operator identity is required"),
            "{err}"
        );
        // (b) The operator's document with its body altered, or its stamp raised, after
        // signing.
        let altered = tamper(&new, |p| p.body = Some(body_json(&ratelimit("limit", 999))));
        let restamped = tamper(&new, |p| p.stamp.hlc.ms += 1_000);
        for (what, doc) in [("altered", altered), ("re-stamped", restamped)] {
            let reply = post(n1, &[doc]).await;
            assert_eq!(reply.status, 400, "{what}: {}", reply.text());
            assert!(
                reply.text().contains("signature refused"),
                "{what}: {}",
                reply.text()
            );
        }
        // (c) The old version, genuinely signed, replayed after the newer one won: it
        // verifies, so it is no refusal, but it loses to the version in force.
        let reply = post(n1, &[old]).await;
        assert_eq!(reply.status, 409, "{}", reply.text());
        assert!(reply.text().contains("a newer version"), "{}", reply.text());

        // The refusals are counted where they were handed in (the counters are published
        // with the node's next policy round, hence the wait).
        let (after, _) = wait_until("n1 to count three refusals", LIMIT, || async {
            let p = policies(n1).await?;
            ensure(
                p.rejected("signature") == before[0].rejected("signature") + 3,
                || format!("{:?}", p.rejected),
            )?;
            Ok(p)
        })
        .await;
        assert_eq!(
            after.rejected_total,
            before[0].rejected_total + 3,
            "{after:?}"
        );
        hold("nothing to change anywhere", Duration::from_secs(3), || {
            unchanged(&c, &all, &digest, &current)
        })
        .await;
        // Nothing was gossiped: the other nodes never saw a document to refuse.
        for (p, was) in states(&c, &all).await.unwrap()[1..]
            .iter()
            .zip(&before[1..])
        {
            assert_eq!(p.rejected_total, was.rejected_total, "{p:?}");
        }
        println!(
            "handed to n1: node-signed, altered and re-stamped refused (signature refusals {} -> {}), \
             old version refused as stale; digest {digest} unchanged on all three",
            before[0].rejected("signature"),
            after.rejected("signature")
        );
    });
}

#[test]
fn forged_altered_and_replayed_documents_gossiped_by_a_member_change_nothing() {
    netns::run(|| async {
        let mut c = Cluster::new();
        c.chain(3, |s| s);
        let all = ["n1", "n2", "n3"];
        c.wait_alive(&all, &all, LIMIT).await;
        let (old, new, digest) = two_versions(&c, &all).await;
        let current = murmur_tests::policy::sign::payload(&new).stamp;
        let before = states(&c, &all).await.unwrap();

        // A member with a valid node certificate, gossiping what it likes under its own keys.
        let evil = Rogue::join(&c.pki, "evil", Cluster::ip(9), c.node("n1").mesh()).await;
        wait_until("every node to list evil alive", LIMIT, || async {
            for n in all {
                let m = c.node(n).members().await?;
                let alive = m.iter().any(|(name, s, _)| name == "evil" && s == "alive");
                ensure(alive, || format!("{n}: {m:?}"))?;
            }
            Ok(())
        })
        .await;
        let evil_key = signer(&c.pki.out_dir.join("evil.crt"));
        let newer = |p: &Policies| stamp(next_stamp(p).hlc, "evil");
        let by_node = sign_toml(&evil_key, &ratelimit("limit", 999), newer(&before[0]));
        let altered = tamper(&new, |p| p.body = Some(body_json(&ratelimit("limit", 999))));
        let restamped = tamper(&new, |p| p.stamp.hlc.ms += 1_000);
        evil.publish("policy/ratelimit/limit", &by_node).await;
        evil.publish("policy/ratelimit/altered", &altered).await;
        evil.publish("policy/ratelimit/restamped", &restamped).await;
        // A genuine old version under another document's key.
        evil.publish("policy/ratelimit/replayed", &old).await;
        let (_, took) = wait_until("every node to refuse the forgeries", LIMIT, || async {
            for (p, was) in states(&c, &all).await?.iter().zip(&before) {
                ensure(
                    p.rejected("signature") == was.rejected("signature") + 3
                        && p.rejected("wrong-key") > was.rejected("wrong-key"),
                    || format!("{}: {:?}", p.node, p.rejected),
                )?;
            }
            Ok(())
        })
        .await;
        println!("forgeries gossiped by a member: refused by all three within {took:?}");
        hold("nothing to change anywhere", Duration::from_secs(3), || {
            unchanged(&c, &all, &digest, &current)
        })
        .await;

        // The old version replayed under its own key, where custodians publish it. A fresh
        // forgery published after it tells when every node has read it: a member's keys
        // travel in the order they were set.
        evil.publish("policy/ratelimit/limit", &old).await;
        let marker = sign_toml(&evil_key, &ratelimit("marker", 1), newer(&before[0]));
        evil.publish("policy/ratelimit/marker", &marker).await;
        wait_until("every node to read the replay", LIMIT, || async {
            for (p, was) in states(&c, &all).await?.iter().zip(&before) {
                ensure(
                    p.rejected("signature") == was.rejected("signature") + 4,
                    || format!("{}: {:?}", p.node, p.rejected),
                )?;
            }
            Ok(())
        })
        .await;
        hold(
            "the replay to change nothing",
            Duration::from_secs(3),
            || unchanged(&c, &all, &digest, &current),
        )
        .await;
        for p in states(&c, &all).await.unwrap() {
            assert!(!p.holds("ratelimit", "marker"), "{p:?}");
            assert_eq!(rate(&p, "limit"), Some(2), "{p:?}");
        }
    });
}

#[test]
fn concurrent_versions_end_with_one_winner_everywhere_also_across_a_partition() {
    netns::run(|| async {
        let mut c = Cluster::new();
        c.chain(4, |s| s);
        let all = ["n1", "n2", "n3", "n4"];
        c.wait_alive(&all, &all, LIMIT).await;

        // The same moment on two connected nodes: the very same clock reading, two origins,
        // two bodies. The stamp's origin breaks the tie: n3's wins everywhere.
        let op = signer(&murmur_tests::policy::operator(&c.pki));
        let now = murmur_membership::policy::service::now_ms();
        let ps = states(&c, &["n1", "n3"]).await.unwrap();
        let hlc = ps.iter().map(|p| p.clock.read(now)).max().unwrap().next();
        let va = [sign_toml(&op, &ratelimit("x", 1), stamp(hlc, "n1"))];
        let vc = [sign_toml(&op, &ratelimit("x", 3), stamp(hlc, "n3"))];
        let started = Instant::now();
        let (ra, rc) = tokio::join!(post(c.node("n1"), &va), post(c.node("n3"), &vc));
        assert_eq!(rc.status, 200, "{}", rc.text());
        // n1 refuses its own only if n3's reached it first (it is the higher version).
        assert!(ra.status == 200 || ra.status == 409, "{}", ra.text());
        let winner = stamp(hlc, "n3");
        let (_, took) = wait_agree(&c, &all, "one winner for x", LIMIT, |p| {
            let held = p.doc("ratelimit", "x").map(|d| &d.stamp);
            ensure(held == Some(&winner) && rate(p, "x") == Some(3), || {
                format!("{held:?}")
            })
        })
        .await;
        println!(
            "same-moment applies on n1 and n3 (n1 answered {}): all four on n3's version after {took:?} \
             ({:?} since the applies)",
            ra.status,
            started.elapsed()
        );

        // Partition {n1, n2} | {n3, n4}; each side applies its own version of y at the same
        // moment, and the left side a newer x.
        let (left, right) = (
            [Cluster::ip(2), Cluster::ip(3)],
            [Cluster::ip(4), Cluster::ip(5)],
        );
        netns::split(&left, &right);
        let y_left = write(c.dir.path(), "y-left.toml", &ratelimit("y", 10));
        let y_right = write(c.dir.path(), "y-right.toml", &ratelimit("y", 20));
        let x_later = write(c.dir.path(), "x-later.toml", &ratelimit("x", 100));
        let on = |file: &std::path::Path, node: &str| {
            cli_spawn(
                &c.pki,
                &[
                    "policy",
                    "apply",
                    "-f",
                    file.to_str().unwrap(),
                    "--node",
                    &admin_url(c.node(node)),
                ],
            )
        };
        let (a, b) = (on(&y_left, "n2"), on(&y_right, "n4"));
        succeeded(&a.wait_with_output().unwrap());
        succeeded(&b.wait_with_output().unwrap());
        apply(&c.pki, &x_later, &admin_url(c.node("n1")));
        let (lp, _) = wait_agree(&c, &["n1", "n2"], "the left side on its y", LIMIT, |p| {
            ensure(
                rate(p, "y") == Some(10) && rate(p, "x") == Some(100),
                || format!("{p:?}"),
            )
        })
        .await;
        let (rp, _) = wait_agree(&c, &["n3", "n4"], "the right side on its y", LIMIT, |p| {
            ensure(rate(p, "y") == Some(20) && rate(p, "x") == Some(3), || {
                format!("{p:?}")
            })
        })
        .await;
        // Let the partition be a real one: each side has declared the other dead.
        let cut = wait_cut_off(&c, "n1", &["n3", "n4"]).await;
        wait_cut_off(&c, "n3", &["n1", "n2"]).await;
        println!("partition: the sides declared each other dead after {cut:?}");
        let (yl, yr) = (
            lp[0].doc("ratelimit", "y").unwrap().clone(),
            rp[0].doc("ratelimit", "y").unwrap().clone(),
        );
        assert_ne!(yl.stamp, yr.stamp);
        let expected = if yl.stamp > yr.stamp { yl } else { yr };

        let healed = Instant::now();
        netns::unsplit(&left, &right);
        let (_, took) = wait_agree(
            &c,
            &all,
            "one winner for y and x after the heal",
            LIMIT,
            |p| {
                let y = p.doc("ratelimit", "y");
                ensure(
                    y.is_some_and(|d| d.stamp == expected.stamp && d.hash == expected.hash)
                        && rate(p, "x") == Some(100),
                    || format!("y {y:?} x {:?}", rate(p, "x")),
                )
            },
        )
        .await;
        println!(
            "partition healed: all four on the same winner (y from {}, x from n1) after {took:?} \
             ({:?} since the heal)",
            expected.stamp,
            healed.elapsed()
        );
    });
}

#[test]
fn a_delete_made_during_a_partition_wins_after_the_heal_and_nothing_comes_back() {
    netns::run(|| async {
        let mut c = Cluster::new();
        c.chain(5, |s| s);
        let all = names(5);
        let all = refs(&all);
        c.wait_alive(&all, &all, LIMIT).await;
        let text = format!("{}\n{}", ratelimit("gone", 4), ratelimit("kept", 7));
        let file = write(c.dir.path(), "limits.toml", &text);
        let digest = printed_digest(&apply(&c.pki, &file, &admin_url(c.node("n1"))));
        wait_agree(&c, &all, "all five to hold both", LIMIT, |p| {
            ensure(p.digest == digest, || p.digest.clone())
        })
        .await;

        // Cut n5 off, and wait until it has declared everyone else dead: it is then the only
        // live custodian it knows of, and republishes its old copy.
        let majority = ["n1", "n2", "n3", "n4"];
        let (isolated, rest) = ([Cluster::ip(6)], [2, 3, 4, 5].map(Cluster::ip));
        netns::split(&isolated, &rest);
        let cut = wait_cut_off(&c, "n5", &majority).await;
        println!("n5 cut off: it declared the others dead after {cut:?}");
        let out = succeeded(&cli(
            &c.pki,
            &[
                "policy",
                "delete",
                "ratelimit",
                "gone",
                "--node",
                &admin_url(c.node("n2")),
            ],
        ));
        assert!(out.contains("ratelimit/gone: deleted"), "{out}");
        let deleted = printed_digest(&out);
        wait_agree(
            &c,
            &majority,
            "the majority to apply the delete",
            LIMIT,
            |p| {
                ensure(
                    p.digest == deleted && p.doc("ratelimit", "gone").is_some_and(|d| d.deleted),
                    || format!("{p:?}"),
                )
            },
        )
        .await;
        let n5 = policies(c.node("n5")).await.unwrap();
        assert!(
            n5.holds("ratelimit", "gone"),
            "the partition leaked: {n5:?}"
        );
        assert_eq!(n5.digest, digest);

        let healed = Instant::now();
        netns::unsplit(&isolated, &rest);
        let (_, took) = wait_agree(&c, &all, "the delete to win everywhere", LIMIT, |p| {
            ensure(
                p.digest == deleted
                    && p.doc("ratelimit", "gone").is_some_and(|d| d.deleted)
                    && p.holds("ratelimit", "kept"),
                || format!("{p:?}"),
            )
        })
        .await;
        println!(
            "delete made while n5 was cut off: all five agree after the heal in {took:?} \
             ({:?} since the heal)",
            healed.elapsed()
        );
        // And the old copy never comes back, anywhere, although n5 held and published it.
        hold("the delete to hold", Duration::from_secs(6), || async {
            for p in states(&c, &all).await? {
                ensure(p.digest == deleted && !p.holds("ratelimit", "gone"), || {
                    format!("{p:?}")
                })?;
            }
            Ok(())
        })
        .await;
    });
}
