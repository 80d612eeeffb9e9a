//! Apps that are not changed reach the mesh by name (issue 13, acceptance 1 and 2): in a
//! namespace whose resolv.conf points at the node's DNS, `curl http://web.mesh/`, Python
//! `requests`, `redis-cli -h redis.mesh` and a Python grpcio channel to `health.mesh:50051`
//! reach services through captured TCP — no Host header, proxy variable or port mapping — and
//! the calls show in metrics and traces. Every node gives a service the same virtual IP; a
//! service that leaves and comes back has the same one; other names resolve as before.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use murmur_tests::apps::EchoApp;
use murmur_tests::onboarding::{self, ask, client, py, run_ok};
use murmur_tests::otlp::{self, Spans};
use murmur_tests::pki::murmur;
use murmur_tests::traffic::metric;
use murmur_tests::{Cluster, grpc, netns, wait_until};

const N1_DNS: &str = "127.0.0.153:53";
const N3_DNS: &str = "127.0.0.154:53";
const HOST_RESOLVER: u8 = 9;

fn addr(ip: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Cluster::ip(ip), port))
}

fn dns(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// n1 (the apps' node: DNS, capture, traces) and n3 (DNS only) call n2, which serves web
/// (http), redis (tcp) and health (grpc), and may serve api and billing (its certificate names
/// them).
async fn mesh(dir: &Path) -> (Cluster, PathBuf) {
    let mut c = Cluster::new();
    let host_resolv =
        onboarding::resolv_conf(dir, "host-resolv.conf", Cluster::ip(HOST_RESOLVER).into());
    let n1 = format!(
        "\n[dns]\nlisten = \"{N1_DNS}\"\nresolv_conf = \"{}\"\n\n[capture]\n\n[telemetry]\n\
         endpoint = \"http://127.0.0.51:4318\"\nprotocol = \"http\"\n",
        host_resolv.display()
    );
    let n2 = "\n[telemetry]\nendpoint = \"http://127.0.0.51:4318\"\nprotocol = \"http\"\n";
    let n3 =
        format!("\n[dns]\nlisten = \"{N3_DNS}\"\nupstreams = [\"127.0.0.{HOST_RESOLVER}:53\"]\n");
    c.chain(3, |mut s| {
        match s.name.as_str() {
            "n1" => s.extra_toml = n1.clone(),
            "n2" => {
                s = s
                    .service("web", addr(3, 8080), "http")
                    .service("redis", addr(3, 6379), "tcp")
                    .service("health", addr(3, 50051), "grpc");
                s.cert_services.extend(["api".into(), "billing".into()]);
                s.extra_toml = n2.into();
            }
            _ => s.extra_toml = n3.clone(),
        }
        s
    });
    for n in ["n1", "n3"] {
        for svc in ["web", "redis", "health"] {
            c.node(n).wait_instances(svc, &["n2"]).await;
        }
    }
    let apps_resolv = onboarding::resolv_conf(dir, "apps-resolv.conf", dns(N1_DNS).ip());
    (c, apps_resolv)
}

/// What `server` answers for `name`, A and AAAA together, once it answers NOERROR.
async fn vips(server: SocketAddr, name: &str) -> Vec<IpAddr> {
    let (found, _) = wait_until(
        &format!("{server} to resolve {name}"),
        Duration::from_secs(30),
        || async {
            let (code, mut v4) = ask(server, name, RecordType::A).await;
            let (_, v6) = ask(server, name, RecordType::AAAA).await;
            if code != ResponseCode::NoError || v4.is_empty() {
                return Err(format!("{code:?} {v4:?}"));
            }
            v4.extend(v6);
            Ok(v4)
        },
    )
    .await;
    found
}

#[test]
fn unchanged_clients_reach_services_by_name_through_capture() {
    netns::run(|| async {
        onboarding::vip_routes();
        let spans = otlp::http_receiver(dns("127.0.0.51:4318")).await;
        let dir = tempfile::tempdir().unwrap();
        EchoApp::start(addr(3, 8080), "web").await;
        grpc::serve_echo(addr(3, 50051)).await;
        let _redis = murmur_tests::apps::redis_server(addr(3, 6379), dir.path());
        let (c, resolv) = mesh(dir.path()).await;
        let web = vips(dns(N1_DNS), "web.mesh.").await;
        assert!(web.iter().any(IpAddr::is_ipv4) && web.iter().any(IpAddr::is_ipv6));
        println!("web.mesh is {web:?}");
        let r = Some(resolv.as_path());

        let curl = |url: &str, v6: bool| {
            let mut args = vec!["-sS", "--max-time", "10"];
            if v6 {
                args.push("-6");
            }
            args.push(url);
            client(r, Path::new("curl"), &args)
        };
        let got = run_ok(&curl("http://web.mesh/curl", false)).await;
        assert_eq!(got, "web GET /curl\n");
        let got = run_ok(&curl("http://web.mesh:8000/over-ipv6", true)).await;
        assert_eq!(got, "web GET /over-ipv6\n");
        let requests = run_ok(&py(r, "http_get.py", &["http://web.mesh/requests"])).await;
        assert_eq!(requests, "200\nweb GET /requests\n");
        let redis = |args: &[&str]| {
            let mut all = vec!["-h", "redis.mesh"];
            all.extend_from_slice(args);
            client(r, Path::new("redis-cli"), &all)
        };
        let set = run_ok(&redis(&["SET", "greeting", "hello mesh"])).await;
        assert_eq!(set.trim(), "OK");
        let get = run_ok(&redis(&["GET", "greeting"])).await;
        assert_eq!(get.trim(), "hello mesh");
        let grpc_reply = run_ok(&py(r, "grpc_call.py", &["health.mesh:50051", "hi"])).await;
        assert_eq!(grpc_reply.trim(), "echo: hi");
        println!("curl, curl -6, requests, redis-cli and grpcio reached web, redis and health");

        // Every one of them came through capture, and shows in both nodes' metrics.
        let captured = "murmur_captured_connections_total";
        assert!(metric(&c, "n1", captured, &[("result", "accepted")]).await >= 6.0);
        let requests = "murmur_requests_total";
        for (svc, class, at_least) in [
            ("web", "2xx", 3.0),
            ("redis", "closed", 2.0),
            ("health", "2xx", 1.0),
        ] {
            let out = [
                ("direction", "outbound"),
                ("service", svc),
                ("peer", "n2"),
                ("status_class", class),
            ];
            let inb = [
                ("direction", "inbound"),
                ("service", svc),
                ("peer", "n1"),
                ("status_class", class),
            ];
            let (o, i) = (
                metric(&c, "n1", requests, &out).await,
                metric(&c, "n2", requests, &inb).await,
            );
            println!("{svc}: n1 outbound {o}, n2 inbound {i} ({class})");
            assert!(o >= at_least && i >= at_least, "{svc}: {o} {i}");
        }
        // And in traces: each call's client span on n1 has its server span on n2.
        for name in ["GET web", "TCP redis", "POST health"] {
            wait_for_pair(&spans, name).await;
        }
    });
}

/// Waits until a client span called `name` and a server span of the same trace arrived.
async fn wait_for_pair(spans: &Spans, name: &str) {
    wait_until(
        &format!("client and server spans {name:?}"),
        Duration::from_secs(60),
        || async {
            let all = spans.all();
            let clients: Vec<_> = all
                .iter()
                .filter(|s| s.name == name && s.kind == 3)
                .collect();
            let paired = clients.iter().any(|c| {
                all.iter().any(|s| {
                    s.name == name
                        && s.kind == 2
                        && s.trace_id == c.trace_id
                        && s.parent_span_id == c.span_id
                })
            });
            if paired {
                Ok(())
            } else {
                Err(format!(
                    "{} spans, {} client ones named {name:?}",
                    all.len(),
                    clients.len()
                ))
            }
        },
    )
    .await;
}

#[test]
fn every_node_gives_the_same_stable_address_and_other_names_resolve_as_before() {
    netns::run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let host = onboarding::host_resolver(
            Cluster::ip(HOST_RESOLVER).into(),
            &[("www.example.test", "192.0.2.7".parse().unwrap())],
        );
        let (c, resolv) = mesh(dir.path()).await;
        for svc in ["web.mesh.", "redis.mesh.", "health.mesh."] {
            let (a, b) = (vips(dns(N1_DNS), svc).await, vips(dns(N3_DNS), svc).await);
            println!("{svc} n1 {a:?} n3 {b:?}");
            assert_eq!(a, b, "{svc}");
        }

        // A service registered, joined by another, removed and registered again: one address.
        let n2_admin = c.node("n2").admin().to_string();
        let reg = |name: &str, address: &str| {
            murmur(&[
                "service",
                "register",
                "--admin",
                &n2_admin,
                "--name",
                name,
                "--address",
                address,
            ]);
        };
        reg("api", "127.0.0.3:8090");
        c.node("n1").wait_instances("api", &["n2"]).await;
        let api = vips(dns(N1_DNS), "api.mesh.").await;
        reg("billing", "127.0.0.3:8091");
        c.node("n3").wait_instances("billing", &["n2"]).await;
        assert_eq!(vips(dns(N3_DNS), "api.mesh.").await, api);
        murmur(&["service", "deregister", "--admin", &n2_admin, "api"]);
        for n in ["n1", "n3"] {
            c.node(n).wait_instances("api", &[]).await;
        }
        wait_until("api.mesh to be gone", Duration::from_secs(30), || async {
            match ask(dns(N1_DNS), "api.mesh.", RecordType::A).await {
                (ResponseCode::NXDomain, _) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        reg("api", "127.0.0.3:8090");
        assert_eq!(
            vips(dns(N1_DNS), "api.mesh.").await,
            api,
            "back at its address"
        );
        assert_eq!(vips(dns(N3_DNS), "api.mesh.").await, api);
        println!("api.mesh is {api:?} before and after leaving the mesh, on n1 and n3");

        // Names outside the mesh: the host's resolver's answers, through either node.
        let direct = ask(addr(HOST_RESOLVER, 53), "www.example.test.", RecordType::A).await;
        assert_eq!(direct.1, ["192.0.2.7".parse::<IpAddr>().unwrap()]);
        for node in [N1_DNS, N3_DNS] {
            assert_eq!(
                ask(dns(node), "www.example.test.", RecordType::A).await,
                direct
            );
            let missing = ask(dns(node), "nope.example.test.", RecordType::A).await;
            let missing_direct =
                ask(addr(HOST_RESOLVER, 53), "nope.example.test.", RecordType::A).await;
            assert_eq!(missing, missing_direct);
            assert_eq!(missing.0, ResponseCode::NXDomain);
        }
        // And for an app, through getaddrinfo: the mesh's names and the others alike.
        let r = Some(resolv.as_path());
        let seen = run_ok(&py(r, "resolve.py", &["www.example.test"])).await;
        assert_eq!(seen.trim(), "192.0.2.7");
        let seen = run_ok(&py(r, "resolve.py", &["web.mesh"])).await;
        let mut web: Vec<String> = vips(dns(N1_DNS), "web.mesh.")
            .await
            .iter()
            .map(ToString::to_string)
            .collect();
        web.sort();
        assert_eq!(seen.trim().lines().collect::<Vec<_>>(), web);
        drop(host);
    });
}
