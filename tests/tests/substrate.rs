//! The secure substrate end to end: joining from seeds, keeping strangers out, surviving
//! garbage, restarts, clean leaves and certificate rotation (issue: secure substrate).

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use murmur_tests::node::{NodeSpec, binary};
use murmur_tests::{Cluster, netns, quic, wait_until};
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn five_nodes_seeded_as_a_chain_all_list_all_five() {
    netns::run(|| async {
        let mut c = Cluster::new();
        let start = Instant::now();
        c.chain(5, |s| s);
        let all = ["n1", "n2", "n3", "n4", "n5"];
        c.wait_alive(&all, &all, LIMIT).await;
        println!(
            "five nodes on 127.0.0.2-6, chained seeds: all list all five after {:?}",
            start.elapsed()
        );
    });
}

/// Honest nodes keep listing exactly `honest` for a while.
async fn never_listed(c: &Cluster, honest: &[&str], watch: Duration) {
    let until = Instant::now() + watch;
    while Instant::now() < until {
        for n in honest {
            let members = c.node(n).members().await.unwrap();
            let names: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
            assert_eq!(names, honest, "{n} lists a stranger");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn strangers_cannot_join_or_learn_anything() {
    netns::run(|| async {
        let mut c = Cluster::new();
        c.chain(2, |s| s);
        c.wait_alive(&["n1", "n2"], &["n1", "n2"], LIMIT).await;
        let seed = c.node("n1").mesh();

        // A node whose certificate comes from another CA.
        let other = murmur_tests::Pki::new(&c.dir.path().join("other"));
        let rogue = murmur_tests::NodeProc::start(
            NodeSpec::new("rogue", Cluster::ip(20)).seed(seed),
            &c.dir.path().join("rogue-dir"),
            &other,
        );

        // A client with no certificate at all.
        match quic::connect_without_certificate(seed).await {
            Err(e) => println!("no-certificate client refused at connect: {e}"),
            Ok(conn) => {
                // TLS 1.3 lets the client finish first; the server's refusal arrives next.
                if let Ok(mut s) = conn.open_uni().await {
                    let _ = s.write_all(b"\x01hello").await;
                    let _ = s.finish();
                }
                let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
                assert!(
                    closed.is_ok(),
                    "the server kept a connection without a client certificate"
                );
                assert!(conn.accept_uni().await.is_err() && conn.accept_bi().await.is_err());
                println!("no-certificate client closed: {}", closed.unwrap());
            }
        }

        // A node whose certificate names another node refuses to start.
        let n2 = c.pki.issue("n2", &[]);
        let out = Command::new(binary())
            .args([
                "run",
                "--name",
                "evil",
                "--listen",
                "127.0.0.21:7420",
                "--admin",
                "127.0.0.21:7422",
            ])
            .args(["--seed", &seed.to_string(), "--ca"])
            .arg(c.pki.ca_cert())
            .arg("--cert")
            .arg(&n2.cert)
            .arg("--key")
            .arg(&n2.key)
            .arg("--data-dir")
            .arg(c.dir.path().join("evil"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "a node ran with another node's certificate"
        );
        assert!(
            stderr.contains("spiffe://test.mesh/node/n2") && stderr.contains("evil"),
            "{stderr}"
        );

        never_listed(&c, &["n1", "n2"], Duration::from_secs(3)).await;
        let rogue_view = rogue.members().await.unwrap();
        let names: Vec<&str> = rogue_view.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(names, ["rogue"], "the rogue learned about the cluster");
    });
}

/// A tiny deterministic generator for garbage bytes.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A QUIC v1 Initial header followed by garbage, `len` bytes in all.
fn fake_initial(len: usize) -> Vec<u8> {
    let mut p = vec![0xC3, 0, 0, 0, 1, 8];
    p.extend(garbage(1, 8));
    p.push(8);
    p.extend(garbage(2, 8));
    p.extend([0, 0x44, 0xD0]);
    p.extend(garbage(3, 1200));
    p.truncate(len);
    p
}

/// What a real chitchat node sends over plain UDP to its seed.
async fn plain_chitchat_syn() -> Vec<u8> {
    use chitchat::transport::UdpTransport;
    use chitchat::{
        ChitchatConfig, ChitchatId, FailureDetectorConfig, ProtocolVersion, spawn_chitchat,
    };
    let tap = tokio::net::UdpSocket::bind("127.0.0.30:0").await.unwrap();
    let listen: SocketAddr = "127.0.0.31:40000".parse().unwrap();
    let config = ChitchatConfig {
        chitchat_id: ChitchatId::new("intruder", 1, listen),
        cluster_id: "murmur".into(),
        gossip_interval: Duration::from_millis(100),
        listen_addr: listen,
        seed_nodes: vec![tap.local_addr().unwrap().to_string()],
        failure_detector_config: FailureDetectorConfig::default(),
        marked_for_deletion_grace_period: Duration::from_secs(60),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V1,
    };
    let handle = spawn_chitchat(
        config,
        vec![("policy".into(), "allow-all".into())],
        &UdpTransport,
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 65_536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), tap.recv_from(&mut buf))
        .await
        .expect("chitchat sent a SYN")
        .unwrap();
    drop(handle);
    buf.truncate(n);
    buf
}

#[test]
fn garbage_on_the_mesh_port_changes_nothing_and_draws_no_amplified_reply() {
    netns::run(|| async {
        let mut c = Cluster::new();
        c.chain(2, |s| s);
        c.wait_alive(&["n1", "n2"], &["n1", "n2"], LIMIT).await;
        let target = c.node("n1").mesh();
        let sock = tokio::net::UdpSocket::bind("127.0.0.40:0").await.unwrap();

        let mut payloads: Vec<(String, Vec<u8>)> = Vec::new();
        for (i, len) in [1usize, 7, 20, 64, 300, 1200, 1500, 9000]
            .into_iter()
            .enumerate()
        {
            payloads.push((format!("random {len} B"), garbage(i as u64 + 10, len)));
        }
        for len in [10, 30, 60, 300, 1199, 1200, 1300] {
            payloads.push((
                format!("QUIC Initial header + garbage, {len} B"),
                fake_initial(len),
            ));
        }
        for len in [25, 40, 100, 1200] {
            let mut p = garbage(len as u64, len);
            p[0] = 0x40 | (p[0] & 0x3f);
            payloads.push((format!("QUIC short header + garbage, {len} B"), p));
        }
        payloads.push(("plain-UDP chitchat SYN".into(), plain_chitchat_syn().await));

        let mut buf = vec![0u8; 65_536];
        for (what, p) in &payloads {
            sock.send_to(p, target).await.unwrap();
            let mut replied = 0usize;
            while let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf)).await
            {
                replied += n;
            }
            println!("{what}: sent {}, reply {replied} B", p.len());
            assert!(
                replied <= p.len(),
                "{what}: {replied} B answered to {} B",
                p.len()
            );
        }
        assert!(c.nodes[0].is_running_ref(), "n1 crashed");
        never_listed(&c, &["n1", "n2"], Duration::from_secs(2)).await;
    });
}

async fn generation_of(c: &Cluster, name: &str) -> u64 {
    let status = c.node(name).admin_get("/v1/status").await.unwrap();
    status.json()["generation"].as_u64().unwrap()
}

#[test]
fn a_killed_and_restarted_node_is_listed_once_with_its_new_generation() {
    netns::run(|| async {
        let mut c = Cluster::new();
        c.chain(3, |s| s);
        let all = ["n1", "n2", "n3"];
        c.wait_alive(&all, &all, LIMIT).await;
        let old = generation_of(&c, "n3").await;
        c.node_mut("n3").restart();
        let (new, _) = wait_until("n3 to answer again", LIMIT, || async {
            Ok::<_, String>(
                c.node("n3").admin_get("/v1/status").await?.json()["generation"]
                    .as_u64()
                    .unwrap_or(0),
            )
        })
        .await;
        assert!(new > old);
        let (_, took) = wait_until("n1 and n2 to list the new n3", LIMIT, || async {
            for o in ["n1", "n2"] {
                let m = c.node(o).members().await?;
                if !m
                    .iter()
                    .any(|(n, s, g)| n == "n3" && s == "alive" && *g == new)
                {
                    return Err(format!("{o}: {m:?}"));
                }
            }
            Ok(())
        })
        .await;
        println!("restarted n3 (generation {old} -> {new}) listed after {took:?}");
        // For a while after, n3 appears exactly once everywhere, always the new incarnation.
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            for o in all {
                let m = c.node(o).members().await.unwrap();
                let n3: Vec<_> = m.iter().filter(|(n, _, _)| n == "n3").collect();
                assert_eq!(n3.len(), 1, "{o}: {m:?}");
                assert_eq!(n3[0].2, new, "{o} lists the old incarnation: {m:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

#[test]
fn a_node_stopped_with_sigterm_leaves_well_before_failure_detection() {
    netns::run(|| async {
        let mut c = Cluster::new();
        // Failure detection this slow (phi 100 x a mean heartbeat gap of 0.2-0.35 s) takes
        // 20 s or more to declare a silent node dead: only a real leave is fast.
        c.chain(3, |mut s| {
            s.gossip_interval = "500ms";
            s.gossip_toml = "phi_threshold = 100.0\n".into();
            s
        });
        let all = ["n1", "n2", "n3"];
        c.wait_alive(&all, &all, LIMIT).await;
        let start = Instant::now();
        assert!(
            c.node_mut("n3").stop_with(Signal::SIGTERM),
            "n3 did not exit cleanly"
        );
        let (_, took) = wait_until(
            "n3 to disappear from n1 and n2",
            Duration::from_secs(10),
            || async {
                for o in ["n1", "n2"] {
                    let m = c.node(o).members().await?;
                    if m.iter().any(|(n, _, _)| n == "n3") {
                        return Err(format!("{o}: {m:?}"));
                    }
                }
                Ok(())
            },
        )
        .await;
        println!(
            "n3 gone from the others {took:?} after its exit ({:?} after SIGTERM)",
            start.elapsed()
        );
        let all_members = c
            .node("n1")
            .admin_get("/v1/members?all=true")
            .await
            .unwrap()
            .json();
        let n3 = all_members["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "n3")
            .cloned();
        assert_eq!(n3.unwrap()["state"], "left");
    });
}

#[test]
fn replaced_certificate_files_are_used_without_a_restart() {
    use murmur_transport::endpoint::{MeshEndpoint, QuicSettings};
    use murmur_transport::identity::{Name, SpiffeId, TrustDomain};
    use murmur_transport::tls::{CredentialPaths, TlsState, load_material};
    netns::run(|| async {
        let mut c = Cluster::new();
        c.chain(2, |s| s);
        c.wait_alive(&["n1", "n2"], &["n1", "n2"], LIMIT).await;
        let admin = c.node("n2").admin();
        let serial = move || async move {
            murmur_tests::http::get(admin, "/v1/status").await.map(|r| {
                r.json()["certificate"]["serial"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
        };
        let old = serial().await.unwrap();
        c.pki.issue("n2", &[]);
        c.node("n2").signal(Signal::SIGHUP);
        let (new, took) = wait_until("n2 to use its new certificate", LIMIT, || async {
            let s = serial().await?;
            if s != old { Ok(s) } else { Err(s) }
        })
        .await;
        println!("new certificate {new} in use {took:?} after SIGHUP");

        // A new connection sees the new certificate.
        let td = TrustDomain::parse("test.mesh").unwrap();
        let probe = c.pki.issue("probe", &[]);
        let paths = CredentialPaths {
            cert: probe.cert,
            key: probe.key,
            bundle: c.pki.ca_cert(),
        };
        let tls = TlsState::new(
            SpiffeId::node(td.clone(), Name::parse("n", "probe").unwrap()),
            load_material(&paths, &td).unwrap(),
        )
        .unwrap();
        let ep = MeshEndpoint::client(tls, QuicSettings::default()).unwrap();
        let conn = ep.connect(c.node("n2").mesh(), None).await.unwrap();
        assert_eq!(conn.identity().serial, new);
        assert!(c.nodes[1].is_running_ref());
    });
}
