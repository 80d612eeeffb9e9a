//! End-to-end policy tests through real `murmur` processes: apply on one node of five, the
//! document outliving its origin and a whole-mesh restart, and invalid documents refused at
//! apply time without reaching another node.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod policy_harness;

use std::time::{Duration, Instant};

use policy_harness::{Mesh, Node, eventually, http};

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

fn write(mesh: &Mesh, name: &str, text: &str) -> String {
    let path = mesh.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn apply(mesh: &Mesh, file: &str, node: &str) -> (bool, String, String) {
    let out = mesh.cli(&["policy", "apply", "-f", file, "--node", node]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn alive(nodes: &[&Node], n: usize) {
    for node in nodes {
        eventually(&format!("{} sees {n} members", node.name), || {
            http(node.admin, "GET", "/v1/members", b"")
                .and_then(|(_, b)| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| {
                    v["members"]
                        .as_array()
                        .map(|m| m.iter().filter(|m| m["state"] == "alive").count())
                })
                == Some(n)
        });
    }
}

fn converged(nodes: &[&Node], digest: &str) -> bool {
    nodes.iter().all(|n| n.digest().as_deref() == Some(digest))
}

#[test]
fn apply_on_one_of_five_converges_everywhere() {
    let mesh = Mesh::new();
    let nodes: Vec<Node> = (1..=5).map(|i| mesh.start(i, &[1])).collect();
    let all: Vec<&Node> = nodes.iter().collect();
    alive(&all, 5);
    let empty = nodes[0].digest().unwrap();

    let file = write(&mesh, "web.toml", POLICY);
    let started = Instant::now();
    let (ok, out, err) = apply(&mesh, &file, &format!("http://{}", nodes[0].admin));
    assert!(ok, "{err}");
    assert!(out.contains("route/web-canary: created"), "{out}");
    let digest = out.split("digest ").nth(1).unwrap().trim().to_owned();
    assert_ne!(digest, empty);
    eventually("all five report the same digest", || {
        converged(&all, &digest)
    });
    println!(
        "apply on 1 of 5 nodes: all five report digest {digest} after {:?}",
        started.elapsed()
    );

    // Through any node's mesh address over QUIC, with the operator certificate.
    let delete = mesh.cli(&[
        "policy",
        "delete",
        "timeout",
        "web-timeouts",
        "--node",
        &format!("quic://{}", nodes[3].mesh),
    ]);
    assert!(
        delete.status.success(),
        "{}",
        String::from_utf8_lossy(&delete.stderr)
    );
    let digest = String::from_utf8_lossy(&delete.stdout)
        .split("digest ")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    let started = Instant::now();
    eventually("all five agree on the delete", || converged(&all, &digest));
    println!(
        "delete over QUIC on node 4: all five agree after {:?}",
        started.elapsed()
    );
    assert!(
        nodes
            .iter()
            .all(|n| !n.holds("timeout", "web-timeouts") && n.holds("route", "web-canary"))
    );

    // `policy list` starts with the digest, on every node.
    let list = mesh.cli(&[
        "policy",
        "list",
        "--node",
        &format!("quic://{}", nodes[4].mesh),
    ]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.starts_with(&format!("node n5  digest {digest}  documents 2")),
        "{text}"
    );
}

#[test]
fn the_policy_outlives_its_origin_and_a_whole_mesh_restart() {
    let mut mesh = Mesh::new();
    // Forget dead members quickly, so the newcomer can only learn from custodians.
    mesh.extra_config = "[gossip]\ndead_node_grace = \"4s\"\n".into();
    let mut nodes: Vec<Node> = (1..=4).map(|i| mesh.start(i, &[1, 2])).collect();
    alive(&nodes.iter().collect::<Vec<_>>(), 4);
    let file = write(&mesh, "web.toml", POLICY);
    let (ok, out, err) = apply(&mesh, &file, &nodes[0].admin.to_string());
    assert!(ok, "{err}");
    let digest = out.split("digest ").nth(1).unwrap().trim().to_owned();
    eventually("all four hold it", || {
        converged(&nodes.iter().collect::<Vec<_>>(), &digest)
    });

    // Kill the origin: the others keep the documents, and a node that joins after the origin
    // is forgotten receives them.
    nodes[0].kill();
    let survivors: Vec<&Node> = nodes[1..].iter().collect();
    eventually("the origin is forgotten", || {
        http(survivors[0].admin, "GET", "/v1/members?all=true", b"")
            .is_some_and(|(_, b)| !String::from_utf8_lossy(&b).contains("\"n1\""))
    });
    assert!(converged(&survivors, &digest));
    let started = Instant::now();
    let newcomer = mesh.start(5, &[2, 3]);
    eventually("the newcomer receives the documents", || {
        newcomer.digest().as_deref() == Some(&digest)
    });
    println!(
        "a node joining after the origin died had the policy after {:?}",
        started.elapsed()
    );

    // Stop everyone, start everyone: the set is intact.
    drop(newcomer);
    for n in nodes.iter_mut().skip(1) {
        n.stop();
    }
    let started = Instant::now();
    for n in nodes.iter_mut() {
        n.restart();
    }
    alive(&nodes.iter().collect::<Vec<_>>(), 4);
    eventually("the restarted mesh has the set", || {
        converged(&nodes.iter().collect::<Vec<_>>(), &digest)
    });
    println!(
        "whole-mesh restart: policy intact after {:?}",
        started.elapsed()
    );
    assert!(nodes.iter().all(|n| n.holds("authz", "web-authz")));
}

#[test]
fn invalid_documents_are_refused_at_apply_and_never_spread() {
    let mesh = Mesh::new();
    let a = mesh.start(1, &[]);
    let b = mesh.start(2, &[1]);
    alive(&[&a, &b], 2);
    let empty = a.digest().unwrap();
    let node = a.admin.to_string();
    let big_rules: Vec<String> = (0..60)
        .map(|i| format!("{{ name = \"r{i}\", action = \"allow\", callers = [{{ spiffe = \"spiffe://murmur.local/node/a-rather-long-node-name-{i}-*\" }}] }}"))
        .collect();
    let cases = [
        (
            "unknown-kind.toml",
            "[[routes]]\nname = \"x\"\n".to_owned(),
            "unknown-kind.toml: unknown kind `routes`; the kinds are route, retry, timeout, ratelimit, circuit, authz",
        ),
        (
            "missing.toml",
            "[[route]]\nname = \"x\"\nservice = \"web\"\n".to_owned(),
            "missing.toml: route \"x\": field `backends`: missing field `backends`",
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
        let path = mesh.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = mesh.cli(&[
            "policy",
            "apply",
            "-f",
            path.to_str().unwrap(),
            "--node",
            &node,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains(&format!(
                "error: {}",
                mesh.dir.path().join(reason).display()
            )),
            "{name}: {err}"
        );
    }
    // The node itself refuses what the CLI would not have sent: garbage, and documents signed
    // by a node's key instead of an operator's.
    let (status, body) = http(
        a.admin,
        "POST",
        "/v1/policies",
        br#"{"documents":["AAAA"]}"#,
    )
    .unwrap();
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("malformed document"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let ok = mesh.dir.path().join("ok.toml");
    std::fs::write(
        &ok,
        "[[ratelimit]]\nname = \"r\"\nservice = \"web\"\nrate = 5\n",
    )
    .unwrap();
    let by_node = std::process::Command::new(policy_harness::murmur())
        .args([
            "policy",
            "apply",
            "-f",
            ok.to_str().unwrap(),
            "--node",
            &node,
            "--identity",
        ])
        .arg(mesh.dir.path().join("n1").join("n1.crt"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&by_node.stderr);
    assert!(
        err.contains("signature refused") && err.contains("operator identity is required"),
        "{err}"
    );

    // Nothing reached the other node, which never even saw a document to reject.
    std::thread::sleep(Duration::from_secs(2));
    for n in [&a, &b] {
        assert_eq!(n.digest().as_deref(), Some(empty.as_str()));
    }
    assert_eq!(b.policies().unwrap()["rejected_total"], 0);
    assert!(a.policies().unwrap()["rejected_total"].as_u64().unwrap() >= 2);
    assert!(a.log().contains("policy document rejected"));
}
