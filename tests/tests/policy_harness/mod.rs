//! A small harness for the policy end-to-end tests: a CA made with `murmur ca init`, nodes
//! started as real `murmur run` processes on their own loopback addresses, the admin API read
//! over plain HTTP, and the `murmur` CLI run as a user would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `murmur` binary, built once per test run.
pub fn murmur() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "murmur-node", "--bin", "murmur"])
            .status()
            .expect("cargo build");
        assert!(status.success(), "building murmur failed");
        let exe = std::env::current_exe().unwrap();
        // target/debug/deps/<test> -> target/debug/murmur
        exe.parent().unwrap().parent().unwrap().join("murmur")
    })
}

/// A loopback /24 of our own, so tests running in parallel never share an address.
fn subnet() -> [u8; 3] {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let second = 100 + (pid % 100) as u8;
    let third = ((pid / 100 % 200 + n) % 250 + 1) as u8;
    [127, second, third]
}

/// A mesh under test: a CA and the nodes started from it.
pub struct Mesh {
    pub dir: tempfile::TempDir,
    net: [u8; 3],
    pub extra_config: String,
}

/// One `murmur run` process.
pub struct Node {
    pub name: String,
    pub mesh: SocketAddr,
    pub admin: SocketAddr,
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
}

impl Mesh {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        run_ok(
            Command::new(murmur())
                .args(["ca", "init", "--dir"])
                .arg(dir.path().join("ca")),
        );
        Self {
            dir,
            net: subnet(),
            extra_config: String::new(),
        }
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    pub fn operator(&self) -> PathBuf {
        self.ca_dir().join("operator.crt")
    }

    fn ip(&self, i: u8) -> String {
        format!("{}.{}.{}.{}", self.net[0], self.net[1], self.net[2], i)
    }

    /// Writes the node's certificate and config and starts it; `seeds` are node indexes.
    pub fn start(&self, i: u8, seeds: &[u8]) -> Node {
        let name = format!("n{i}");
        let ndir = self.dir.path().join(&name);
        if !ndir.exists() {
            std::fs::create_dir_all(&ndir).unwrap();
            run_ok(
                Command::new(murmur())
                    .args(["cert", "issue", "--name", &name, "--out"])
                    .arg(&ndir)
                    .arg("--ca-dir")
                    .arg(self.ca_dir()),
            );
        }
        let ip = self.ip(i);
        let seeds: Vec<String> = seeds
            .iter()
            .map(|s| format!("\"{}:7420\"", self.ip(*s)))
            .collect();
        let config = ndir.join("node.toml");
        let text = format!(
            "name = \"{name}\"\nlisten = \"{ip}:7420\"\nadmin = \"{ip}:7422\"\noutbound = \"{ip}:7421\"\n\
             data_dir = \"data\"\nseeds = [{}]\n[tls]\nca = \"{}\"\ncert = \"{name}.crt\"\nkey = \"{name}.key\"\n{}",
            seeds.join(", "),
            self.ca_dir().join("ca.crt").display(),
            self.extra_config,
        );
        std::fs::write(&config, text).unwrap();
        let mut node = Node {
            name,
            mesh: format!("{ip}:7420").parse().unwrap(),
            admin: format!("{ip}:7422").parse().unwrap(),
            child: None,
            config,
            log: ndir.join("node.log"),
        };
        node.spawn();
        node
    }

    /// Runs the CLI.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(murmur())
            .args(args)
            .arg("--identity")
            .arg(self.operator())
            .output()
            .unwrap()
    }
}

impl Node {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(murmur())
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        eventually(&format!("{} answers", self.name), || {
            http_get(self.admin, "/healthz").is_some_and(|(s, _)| s == 200)
        });
    }

    /// `GET /v1/policies[?all=true]` as JSON.
    pub fn policies(&self) -> Option<Value> {
        let (status, body) = http_get(self.admin, "/v1/policies?all=true")?;
        (status == 200)
            .then(|| serde_json::from_slice(&body).ok())
            .flatten()
    }

    /// The digest of the node's effective set.
    pub fn digest(&self) -> Option<String> {
        Some(self.policies()?["digest"].as_str()?.to_owned())
    }

    /// Whether the node holds `kind/name` (not deleted).
    pub fn holds(&self, kind: &str, name: &str) -> bool {
        self.policies().is_some_and(|p| {
            p["documents"].as_array().is_some_and(|docs| {
                docs.iter()
                    .any(|d| d["kind"] == kind && d["name"] == name && d["deleted"] == false)
            })
        })
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded) for a graceful exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the same node again (same data directory).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a command that must succeed.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A bounded HTTP/1.1 exchange with the admin API.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut resp = Vec::new();
    s.take(64 << 20).read_to_end(&mut resp).ok()?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = std::str::from_utf8(&resp[..split])
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, resp[split + 4..].to_vec()))
}

pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, Vec<u8>)> {
    http(addr, "GET", path, b"")
}

/// Waits (up to 60 s) for `cond`.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
