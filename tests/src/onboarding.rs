//! Helpers for the tests of unchanged apps: clients run as they would on a host whose
//! resolv.conf points at the node (a mount namespace with its own `/etc/resolv.conf`, inside
//! the test's network namespace), Python clients from the test environment, DNS queries, the
//! routes the virtual-IP ranges need, and the firewall state.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::apps::Proc;
use crate::netns;

/// The default virtual-IP ranges of a node.
pub const VIP_RANGE: &str = "240.0.0.0/4";
/// The default IPv6 virtual-IP range.
pub const VIP_RANGE6: &str = "fd6d:7572:6d75:7200::/64";

/// Proxy variables a client could read; removed from every client's environment unless the
/// test sets them.
const PROXY_VARS: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "grpc_proxy",
    "no_proxy",
];

/// The Python with requests, grpcio and websockets: `$MURMUR_TEST_PYTHON`, or the virtual
/// environment `scripts/test` makes in `target/test-python`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MURMUR_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-python/bin/python3");
    assert!(
        p.exists(),
        "{} not found: run scripts/test (it makes a virtual environment with requests, grpcio \
         and websockets) or set MURMUR_TEST_PYTHON",
        p.display()
    );
    p
}

/// A script of `tests/py`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py").join(name)
}

/// Routes for the virtual-IP ranges (a host's default route does this; a test namespace has
/// none): without one, `connect()` fails before the capture rule is consulted. The IPv4 one
/// names its source address: through `lo` without one, a socket would be bound to 0.0.0.0,
/// where no answer can come back.
pub fn vip_routes() {
    netns::ip(&["route", "add", VIP_RANGE, "dev", "lo", "src", "127.0.0.1"]);
    netns::ip(&["-6", "route", "add", VIP_RANGE6, "dev", "lo"]);
}

/// A client command: `program args` without proxy variables, inside a mount namespace whose
/// `/etc/resolv.conf` is `resolv` when given.
pub fn client(resolv: Option<&Path>, program: &Path, args: &[&str]) -> Command {
    let mut cmd = match resolv {
        Some(file) => {
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg("mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"")
                .arg(file)
                .arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args);
    for v in PROXY_VARS {
        cmd.env_remove(v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to the end (at most 60 s) and returns its stdout, asserting success. Async: the
/// apps the test serves run on the same thread meanwhile.
pub async fn run_ok(cmd: &Command) -> String {
    let out = output(cmd).await;
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` under `timeout 60`, so a hung client fails the test rather than stalling it.
pub async fn output(cmd: &Command) -> Output {
    let mut bounded = tokio::process::Command::new("timeout");
    bounded
        .arg("60")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => bounded.env(k, v),
            None => bounded.env_remove(k),
        };
    }
    bounded
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run a client")
}

/// `python script args` as a client.
pub fn py(resolv: Option<&Path>, name: &str, args: &[&str]) -> Command {
    let script = script(name);
    let mut all = vec![script.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    client(resolv, &python(), &all)
}

/// A resolv.conf in `dir` naming `nameserver`.
pub fn resolv_conf(dir: &Path, name: &str, nameserver: IpAddr) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(
        &file,
        format!("nameserver {nameserver}\noptions timeout:2 attempts:2\n"),
    )
    .expect("write resolv.conf");
    file
}

/// Asks `server` for `name` (`rtype`) over UDP; returns the response code and the addresses.
pub async fn ask(server: SocketAddr, name: &str, rtype: RecordType) -> (ResponseCode, Vec<IpAddr>) {
    let mut m = Message::query();
    m.metadata.id = 7;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).expect("name"), rtype));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    socket
        .send_to(&m.to_vec().expect("encode"), server)
        .await
        .expect("send query");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no DNS answer from {server} for {name} in 10 s"))
        .expect("receive answer");
    let answer = Message::from_vec(&buf[..n]).expect("decode answer");
    let addrs = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    (answer.metadata.response_code, addrs)
}

/// The firewall ruleset of this namespace.
pub fn ruleset() -> String {
    let out = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .expect("nft not found: install nftables (scripts/test does)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The tables of the ruleset (`table inet murmur`, ...).
pub fn tables() -> Vec<String> {
    ruleset()
        .lines()
        .filter(|l| l.starts_with("table "))
        .map(|l| l.trim_end_matches(" {").to_owned())
        .collect()
}

/// A DNS server standing in for the host's resolver: dnsmasq on `ip:53`, answering
/// `<name>` with `addr` for each pair, and NXDOMAIN for the rest (it forwards nowhere).
pub fn host_resolver(ip: IpAddr, records: &[(&str, IpAddr)]) -> Proc {
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
    ])
    // Authoritative for example.test: NXDOMAIN for the names it does not list.
    .arg("--local=/example.test/")
    .args(["--port", "53", "--user=root", "--pid-file="])
    .arg(format!("--listen-address={ip}"));
    for (name, addr) in records {
        cmd.arg(format!("--host-record={name},{addr}"));
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq not found: install dnsmasq-base (scripts/test does)");
    Proc(child)
}

/// The WebSocket echo server of `tests/py` on `addr`, once it is listening.
pub fn ws_echo_server(addr: SocketAddr) -> Proc {
    let mut child = Command::new(python())
        .arg(script("ws_echo_server.py"))
        .args([addr.ip().to_string(), addr.port().to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the WebSocket echo server");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .expect("read the server's first line");
    assert_eq!(
        line.trim(),
        "ready",
        "the WebSocket echo server did not start"
    );
    Proc(child)
}
