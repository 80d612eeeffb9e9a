//! The capture rules' life (issue 13, acceptance 5): while the node runs, the ruleset holds
//! its own table and nothing else; SIGTERM removes it; after SIGKILL the stale table refuses
//! connections to the virtual IPs at once (it blackholes nothing, and other traffic is
//! untouched) and a restart replaces it with one table. `murmur capture print` shows exactly
//! the rules the node installs, without installing them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use murmur_tests::apps::EchoApp;
use murmur_tests::onboarding::{self, ask, client, output, run_ok, tables};
use murmur_tests::pki::murmur;
use murmur_tests::{Cluster, netns, wait_until};
use nix::sys::signal::Signal;

const DNS: &str = "127.0.0.153:53";

fn addr(ip: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Cluster::ip(ip), port))
}

/// n1 captures (and answers DNS, for the virtual IP) with two runtimes, each listening for
/// captured connections on the same port; n2 serves web.
async fn mesh() -> Cluster {
    let mut c = Cluster::new();
    c.chain(2, |mut s| {
        if s.name == "n1" {
            s.extra_toml = "threads = 2\n\n[dns]\nupstreams = []\n\n[capture]\n".into();
            s
        } else {
            s.service("web", addr(3, 8080), "http")
        }
    });
    c.node("n1").wait_instances("web", &["n2"]).await;
    c
}

/// The virtual IPv4 address of web, once n1 answers for it.
async fn web_vip() -> IpAddr {
    let (v, _) = wait_until(
        "n1 to resolve web.mesh",
        Duration::from_secs(30),
        || async {
            let (_, found) = ask(DNS.parse().unwrap(), "web.mesh.", RecordType::A).await;
            found.first().copied().ok_or_else(|| "no answer".to_owned())
        },
    )
    .await;
    v
}

/// Waits until the ruleset holds exactly `want` tables.
async fn wait_tables(want: &[&str]) {
    wait_until(
        &format!("tables {want:?}"),
        Duration::from_secs(30),
        || async {
            let t = tables();
            if t == want {
                Ok(())
            } else {
                Err(format!("{t:?}"))
            }
        },
    )
    .await;
}

/// `curl URL`: the exit code and stdout (7: the connection was refused; 28: it timed out).
async fn curl(url: &str) -> (Option<i32>, String) {
    let out = output(&client(
        None,
        Path::new("curl"),
        &["-sS", "--connect-timeout", "10", "--max-time", "20", url],
    ))
    .await;
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_node_owns_one_table_removed_on_exit_and_replaced_after_a_crash() {
    netns::run(|| async {
        onboarding::vip_routes();
        EchoApp::start(addr(3, 8080), "web").await;
        let mut c = mesh().await;
        wait_tables(&["table inet murmur"]).await;
        let vip = web_vip().await;
        let (via_vip, direct) = (format!("http://{vip}/x"), "http://127.0.0.3:8080/direct");
        assert_eq!(curl(&via_vip).await, (Some(0), "web GET /x\n".into()));
        assert_eq!(curl(direct).await, (Some(0), "web GET /direct\n".into()));
        println!("running: {:?}", tables());

        // SIGTERM: the table goes with the node; other traffic never noticed.
        assert!(c.node_mut("n1").stop(Signal::SIGTERM).await, "clean exit");
        assert_eq!(tables(), Vec::<String>::new());
        assert_eq!(curl(direct).await, (Some(0), "web GET /direct\n".into()));

        // SIGKILL leaves the table: connections to the virtual IPs are refused at once (not
        // left hanging), everything else goes through.
        c.node_mut("n1").restart();
        wait_tables(&["table inet murmur"]).await;
        assert_eq!(curl(&via_vip).await.1, "web GET /x\n");
        c.node_mut("n1").stop_with(Signal::SIGKILL);
        assert_eq!(
            tables(),
            ["table inet murmur"],
            "a killed node cannot clean up"
        );
        assert_eq!(curl(&via_vip).await.0, Some(7), "refused, not blackholed");
        assert_eq!(curl(direct).await, (Some(0), "web GET /direct\n".into()));

        // The restart replaces the stale table: still one, with one chain of rules.
        c.node_mut("n1").restart();
        wait_until(
            "web through the restarted node",
            Duration::from_secs(30),
            || async {
                match curl(&via_vip).await {
                    (Some(0), body) if body == "web GET /x\n" => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
        assert_eq!(tables(), ["table inet murmur"]);
        let rules = onboarding::ruleset();
        assert_eq!(rules.matches("chain output").count(), 1, "{rules}");
        assert_eq!(rules.matches("redirect to :15001").count(), 2, "{rules}");
        println!("after SIGKILL and restart:\n{rules}");
        assert!(c.node_mut("n1").stop(Signal::SIGTERM).await);
        assert_eq!(tables(), Vec::<String>::new());
    });
}

#[test]
fn capture_print_shows_the_installed_rules_without_installing_them() {
    netns::run(|| async {
        let mut c = mesh().await;
        wait_tables(&["table inet murmur"]).await;
        let installed = onboarding::ruleset();
        assert!(c.node_mut("n1").stop(Signal::SIGTERM).await);
        assert_eq!(tables(), Vec::<String>::new());

        let config = c.node("n1").dir.join("node.toml");
        let printed = murmur(&["capture", "print", "--config", config.to_str().unwrap()]);
        assert_eq!(tables(), Vec::<String>::new(), "printing installs nothing");
        println!("{printed}");
        let file = c.dir.path().join("printed.nft");
        std::fs::write(&file, &printed).unwrap();
        run_ok(std::process::Command::new("nft").arg("-f").arg(&file)).await;
        assert_eq!(onboarding::ruleset(), installed);
    });
}
