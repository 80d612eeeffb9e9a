//! `murmur demo`: a whole mesh in one process. Three nodes on loopback with a throw-away CA and
//! certificates in a temporary directory, built-in apps behind two of them, and instructions
//! that work as printed. Everything is removed on exit.
//!
//! ```text
//!   you ─curl─▶ node a (outbound 127.0.0.1:7421) ══QUIC+mTLS══▶ node b ─▶ echo
//!                                                  ══QUIC+mTLS══▶ node c ─▶ echo, tcp-echo
//! ```

mod apps;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use murmur_membership::records::Protocol;
use murmur_transport::certs::{CaInit, IssueRequest, init_ca, issue};
use murmur_transport::identity::{Name, Role, TrustDomain};

use super::client::get_json;
use super::rt::client_runtime;
use crate::api::services::ServicesResponse;
use crate::config::{Config, Overrides};
use crate::proxy::Upstream;
use crate::services::LocalService;

/// Removes the demo directory when dropped, whatever happened.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback TCP port: `preferred` if free, else any free one.
fn tcp_port(preferred: u16) -> anyhow::Result<u16> {
    if preferred != 0 && TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return Ok(preferred);
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A loopback UDP port: `preferred` if free, else any free one.
fn udp_port(preferred: u16) -> anyhow::Result<u16> {
    if preferred != 0 && UdpSocket::bind(("127.0.0.1", preferred)).is_ok() {
        return Ok(preferred);
    }
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn name(s: &str) -> anyhow::Result<Name> {
    Ok(Name::parse("name", s)?)
}

/// One demo node's addresses.
struct Plan {
    name: &'static str,
    mesh: SocketAddr,
    admin: SocketAddr,
    outbound: SocketAddr,
}

fn plan(name: &'static str, mesh: u16, admin: u16, outbound: u16) -> anyhow::Result<Plan> {
    let lo = |p| SocketAddr::from(([127, 0, 0, 1], p));
    Ok(Plan {
        name,
        mesh: lo(udp_port(mesh)?),
        admin: lo(tcp_port(admin)?),
        outbound: lo(tcp_port(outbound)?),
    })
}

fn config(dir: &Path, p: &Plan, seed: Option<SocketAddr>) -> anyhow::Result<Config> {
    let certs = dir.join("certs");
    let mut c = Config::load(
        None,
        Overrides {
            name: Some(name(p.name)?),
            listen: Some(p.mesh),
            seeds: seed.map(|s| vec![s.to_string()]).unwrap_or_default(),
            admin: Some(p.admin),
            outbound: Some(p.outbound),
            data_dir: Some(dir.join("data").join(p.name)),
            ca: Some(dir.join("ca").join("ca.crt")),
            cert: Some(certs.join(format!("{}.crt", p.name))),
            key: Some(certs.join(format!("{}.key", p.name))),
            ..Overrides::default()
        },
    )?;
    c.gossip.interval = Duration::from_millis(200);
    c.gossip.initial_interval = c.gossip.interval;
    Ok(c)
}

fn service(n: &str, address: SocketAddr, protocol: Protocol) -> anyhow::Result<LocalService> {
    Ok(LocalService::with_defaults(
        name(n)?,
        address,
        Default::default(),
        Some(protocol),
        None,
        None,
    ))
}

fn make_pki(dir: &Path) -> anyhow::Result<()> {
    init_ca(&CaInit {
        dir: dir.join("ca"),
        trust_domain: TrustDomain::parse("demo.murmur")?,
        days: 1,
        operator: name("admin")?,
        force: true,
    })?;
    for (node, services) in [
        ("a", vec![]),
        ("b", vec!["echo"]),
        ("c", vec!["echo", "tcp-echo"]),
    ] {
        issue(&IssueRequest {
            ca_dir: dir.join("ca"),
            role: Role::Node,
            name: name(node)?,
            services: services.into_iter().map(name).collect::<Result<_, _>>()?,
            validity: Duration::from_secs(86_400),
            out_dir: dir.join("certs"),
            force: true,
        })?;
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the demo's CA, certificates and state; must not exist, and is removed on
    /// exit [default: a new directory under the system's temporary directory].
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// `murmur demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    client_runtime()?.block_on(demo(args.dir))
}

/// Runs the demo until SIGINT or SIGTERM.
async fn demo(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("murmur-demo-{}", std::process::id()))
    });
    if dir.exists() {
        bail!("{} already exists: choose another --dir", dir.display());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _cleanup = TempDir(dir.clone());
    make_pki(&dir)?;

    let echo_b = apps::http_echo("b").await?;
    let echo_c = apps::http_echo("c").await?;
    let tcp_c = apps::tcp_echo().await?;

    let a = plan("a", 7420, 7422, 7421)?;
    let b = plan("b", 0, 0, 0)?;
    let c = plan("c", 0, 0, 0)?;
    let tcp_listen = SocketAddr::from(([127, 0, 0, 1], tcp_port(7423)?));
    let mut ca = config(&dir, &a, None)?;
    ca.upstreams.push(Upstream {
        service: name("tcp-echo")?,
        listen: tcp_listen,
    });
    let mut cb = config(&dir, &b, Some(a.mesh))?;
    cb.services.push(service("echo", echo_b, Protocol::Http)?);
    let mut cc = config(&dir, &c, Some(a.mesh))?;
    cc.services.push(service("echo", echo_c, Protocol::Http)?);
    cc.services.push(service("tcp-echo", tcp_c, Protocol::Tcp)?);

    let nodes = [
        tokio::spawn(crate::node::run(crate::node::prepare(ca)?, Vec::new())),
        tokio::spawn(crate::node::run(crate::node::prepare(cb)?, Vec::new())),
        tokio::spawn(crate::node::run(crate::node::prepare(cc)?, Vec::new())),
    ];
    wait_ready(a.admin, &nodes).await?;
    print_instructions(&dir, &a, &b, &c, tcp_listen);
    let mut failed = None;
    for n in nodes {
        match n.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(e),
            Err(e) => failed = Some(anyhow::anyhow!("a demo node crashed: {e}")),
        }
    }
    println!("demo stopped; removed {}", dir.display());
    failed.map_or(Ok(()), Err)
}

/// Waits until node a sees both echo instances and the TCP echo, or a node fails.
async fn wait_ready(
    admin: SocketAddr,
    nodes: &[tokio::task::JoinHandle<anyhow::Result<()>>],
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if nodes.iter().any(tokio::task::JoinHandle::is_finished) {
            bail!("a demo node stopped during startup (see the log above)");
        }
        if let Ok(resp) = get_json::<ServicesResponse>(admin, "/v1/services").await {
            let count = |s: &str| {
                resp.services
                    .iter()
                    .find(|x| x.name == s)
                    .map_or(0, |x| x.instances.len())
            };
            if count("echo") == 2 && count("tcp-echo") == 1 {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the demo mesh did not come up within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_instructions(dir: &Path, a: &Plan, b: &Plan, c: &Plan, tcp: SocketAddr) {
    let out = a.outbound;
    println!(
        "\nMurmuration demo: three nodes on this machine, talking QUIC with mutual TLS.\n\
         CA, certificates and state live in {} (removed when the demo stops).\n",
        dir.display()
    );
    println!(
        "  node a  mesh {}  outbound {}  admin {}  (your app's sidecar)",
        a.mesh, a.outbound, a.admin
    );
    println!("  node b  mesh {}  serves echo (HTTP)", b.mesh);
    println!(
        "  node c  mesh {}  serves echo (HTTP), tcp-echo (TCP)\n",
        c.mesh
    );
    println!("Try (each request goes app -> node a -> QUIC -> node b or c -> echo app):\n");
    println!("  curl -H 'Host: echo' http://{out}/hello");
    println!("  curl -x http://{out} http://echo/hello");
    println!("  curl --http2-prior-knowledge http://{out}/h2 -H 'Host: echo.mesh'");
    println!("  curl -H 'Host: nowhere' http://{out}/   # 503: unknown service");
    println!(
        "  printf 'hello over TCP\\n' | nc -N {} {}   # with netcat installed",
        tcp.ip(),
        tcp.port()
    );
    println!("  murmur services --admin {}", a.admin);
    println!("  murmur members --admin {}\n", a.admin);
    println!("Ctrl-C stops the demo.");
}
