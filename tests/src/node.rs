//! One `murmur run` process: its configuration, its life, its admin API.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use murmur_node::api::members::MembersResponse;
use murmur_node::api::services::ServicesResponse;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::http::{self, Reply};
use crate::pki::Pki;

/// The `murmur` binary under test: `$MURMUR_BIN`, or the one built beside the test executable.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MURMUR_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/murmur
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("murmur"))
        .expect("target dir");
    assert!(
        candidate.exists(),
        "{} not found: build it first (`cargo build -p murmur-node`) or set MURMUR_BIN",
        candidate.display()
    );
    candidate
}

/// A local service instance served by a node.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Service name.
    pub name: String,
    /// Address of the app.
    pub address: SocketAddr,
    /// `http`, `grpc` or `tcp`.
    pub protocol: String,
    /// Extra TOML lines inside the `[[service]]` table.
    pub extra: String,
}

/// How to run one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node name.
    pub name: String,
    /// Its loopback address (mesh, admin and outbound ports on it).
    pub ip: Ipv4Addr,
    /// Seeds.
    pub seeds: Vec<SocketAddr>,
    /// Its cell (`cell = ...`), when set.
    pub cell: Option<String>,
    /// Mesh addresses of nodes in other cells (`cell_seeds`).
    pub cell_seeds: Vec<SocketAddr>,
    /// Services in its certificate.
    pub cert_services: Vec<String>,
    /// Services in its configuration.
    pub services: Vec<ServiceSpec>,
    /// Extra top-level TOML, appended to the file.
    pub extra_toml: String,
    /// Gossip interval (tests run faster than production).
    pub gossip_interval: &'static str,
    /// Extra lines inside `[gossip]`.
    pub gossip_toml: String,
    /// Validity of its certificate, days.
    pub cert_days: u32,
    /// `[outbound] external` (`allow` or `deny`), when set.
    pub external: Option<&'static str>,
    /// Extra environment variables of the process.
    pub env: Vec<(String, String)>,
    /// Validity of its hand-issued certificate as a lifetime (`2m`); overrides `cert_days`.
    pub cert_ttl: Option<String>,
    /// A join token: the node gets its certificate from an issuer, none is issued by hand.
    pub join_token: Option<PathBuf>,
    /// Lines inside `[identity]` (issuer credential, leaf lifetime, ...).
    pub identity_toml: String,
    /// Where its stderr goes instead of its log file (`/dev/full`: a full disk).
    pub stderr: Option<PathBuf>,
    /// The process sees this file as `/etc/hosts` (a mount namespace of its own).
    pub hosts_file: Option<PathBuf>,
}

impl NodeSpec {
    /// A node named `name` on `ip`, with a 200 ms gossip interval.
    pub fn new(name: &str, ip: Ipv4Addr) -> Self {
        Self {
            name: name.into(),
            ip,
            seeds: Vec::new(),
            cell: None,
            cell_seeds: Vec::new(),
            cert_services: Vec::new(),
            services: Vec::new(),
            extra_toml: String::new(),
            gossip_interval: "200ms",
            gossip_toml: String::new(),
            cert_days: 90,
            external: None,
            env: Vec::new(),
            cert_ttl: None,
            join_token: None,
            identity_toml: String::new(),
            stderr: None,
            hosts_file: None,
        }
    }

    /// Sets an environment variable of the process (e.g. `NOTIFY_SOCKET`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Joins with `token` instead of a hand-issued certificate.
    pub fn join_token(mut self, token: PathBuf) -> Self {
        self.join_token = Some(token);
        self
    }

    /// Adds lines to `[identity]`.
    pub fn identity(mut self, lines: &str) -> Self {
        self.identity_toml.push_str(lines);
        self.identity_toml.push('\n');
        self
    }

    /// Adds a seed.
    pub fn seed(mut self, addr: SocketAddr) -> Self {
        self.seeds.push(addr);
        self
    }

    /// Puts the node in `cell`, reaching the other cells through `seeds`.
    pub fn cell(mut self, cell: &str, seeds: &[SocketAddr]) -> Self {
        self.cell = Some(cell.into());
        self.cell_seeds = seeds.to_vec();
        self
    }

    /// Serves `name` from the app at `address`.
    pub fn service(mut self, name: &str, address: SocketAddr, protocol: &str) -> Self {
        if !self.cert_services.iter().any(|s| s == name) {
            self.cert_services.push(name.into());
        }
        self.services.push(ServiceSpec {
            name: name.into(),
            address,
            protocol: protocol.into(),
            extra: String::new(),
        });
        self
    }

    /// Serves `name` with extra TOML lines in its `[[service]]` table (e.g. `balancer = ...`).
    pub fn service_with(
        mut self,
        name: &str,
        address: SocketAddr,
        protocol: &str,
        extra: &str,
    ) -> Self {
        self = self.service(name, address, protocol);
        if let Some(s) = self.services.last_mut() {
            s.extra = extra.to_owned();
        }
        self
    }

    /// Adds a local TCP listener for the remote `service`.
    pub fn upstream(mut self, service: &str, listen: SocketAddr) -> Self {
        let _ = writeln!(
            self.extra_toml,
            "\n[[upstream]]\nservice = \"{service}\"\nlisten = \"{listen}\""
        );
        self
    }

    /// The QUIC address.
    pub fn mesh(&self) -> SocketAddr {
        SocketAddr::from((self.ip, 7420))
    }

    fn config(&self, dir: &Path, pki: &Pki) -> String {
        let services: Vec<&str> = self.cert_services.iter().map(String::as_str).collect();
        let issued = match (&self.join_token, &self.cert_ttl) {
            (Some(_), _) => None,
            (None, Some(ttl)) => Some(pki.issue_with_ttl(&self.name, &services, ttl)),
            (None, None) => Some(pki.issue_for_days(&self.name, &services, self.cert_days)),
        };
        let mut t = String::new();
        let ip = self.ip;
        let _ = writeln!(t, "name = \"{}\"", self.name);
        let _ = writeln!(t, "listen = \"{ip}:7420\"\nadmin = \"{ip}:7422\"");
        match self.external {
            Some(e) => writeln!(
                t,
                "outbound = {{ listen = \"{ip}:7421\", external = \"{e}\" }}"
            ),
            None => writeln!(t, "outbound = \"{ip}:7421\""),
        }
        .unwrap_or_default();
        let _ = writeln!(t, "data_dir = \"{}\"", dir.join("data").display());
        let seeds: Vec<String> = self.seeds.iter().map(|s| format!("\"{s}\"")).collect();
        let _ = writeln!(t, "seeds = [{}]", seeds.join(", "));
        if let Some(cell) = &self.cell {
            let seeds: Vec<String> = self.cell_seeds.iter().map(|s| format!("\"{s}\"")).collect();
            let _ = writeln!(t, "cell = \"{cell}\"\ncell_seeds = [{}]", seeds.join(", "));
        }
        t.push_str(&self.extra_toml);
        let _ = writeln!(t, "\n[tls]\nca = \"{}\"", pki.ca_cert().display());
        if let Some(issued) = issued {
            let _ = writeln!(
                t,
                "cert = \"{}\"\nkey = \"{}\"",
                issued.cert.display(),
                issued.key.display()
            );
        }
        let _ = writeln!(t, "\n[identity]\n{}", self.identity_toml);
        if let Some(token) = &self.join_token {
            let _ = writeln!(t, "join_token = \"{}\"", token.display());
        }
        let _ = writeln!(t, "\n[gossip]\ninterval = \"{}\"", self.gossip_interval);
        t.push_str(&self.gossip_toml);
        for s in &self.services {
            let _ = writeln!(
                t,
                "\n[[service]]\nname = \"{}\"\naddress = \"{}\"\nprotocol = \"{}\"\n{}",
                s.name, s.address, s.protocol, s.extra
            );
        }
        t
    }
}

/// A running (or stopped) node process.
#[derive(Debug)]
pub struct NodeProc {
    /// How it was started.
    pub spec: NodeSpec,
    /// Its directory (config, data, log).
    pub dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl NodeProc {
    /// Writes the config, issues the certificate and starts the process.
    pub fn start(spec: NodeSpec, root: &Path, pki: &Pki) -> Self {
        let dir = root.join(&spec.name);
        std::fs::create_dir_all(&dir).expect("node dir");
        std::fs::write(dir.join("node.toml"), spec.config(&dir, pki)).expect("write config");
        let mut node = Self {
            spec,
            dir,
            child: None,
            starts: 0,
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = match &self.spec.stderr {
            Some(path) => std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .expect("stderr target"),
            None => {
                std::fs::File::create(self.dir.join(format!("log.{}", self.starts))).expect("log")
            }
        };
        let mut command = match &self.spec.hosts_file {
            Some(hosts) => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
                    .arg(hosts)
                    .arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let child = command
            .args(["run", "--config"])
            .arg(self.dir.join("node.toml"))
            .env(
                "RUST_LOG",
                std::env::var("MURMUR_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn murmur");
        self.child = Some(child);
    }

    /// Starts the process again (a new generation).
    pub fn restart(&mut self) {
        self.stop_with(Signal::SIGKILL);
        self.spawn();
    }

    /// Node name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// QUIC address.
    pub fn mesh(&self) -> SocketAddr {
        self.spec.mesh()
    }

    /// Admin API address.
    pub fn admin(&self) -> SocketAddr {
        SocketAddr::from((self.spec.ip, 7422))
    }

    /// Outbound proxy address.
    pub fn outbound(&self) -> SocketAddr {
        SocketAddr::from((self.spec.ip, 7421))
    }

    /// Process id, while running.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }

    /// Sends `sig` without waiting.
    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }

    /// [`NodeProc::stop_with`] without blocking the test's thread: apps the test serves on it
    /// keep answering, so a node draining requests to them can finish (with the blocking wait,
    /// a request in flight to such an app holds the drain until its timeout).
    pub async fn stop(&mut self, sig: Signal) -> bool {
        let Some((mut child, deadline)) = self.take_signalled(sig) else {
            return false;
        };
        loop {
            if let Some(success) = exited(&mut child, deadline) {
                return success;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `sig` and waits (up to 30 s) for the process to exit; returns whether it exited
    /// with success. Blocks the thread: with apps served on it and requests in flight, use
    /// [`NodeProc::stop`].
    pub fn stop_with(&mut self, sig: Signal) -> bool {
        let Some((mut child, deadline)) = self.take_signalled(sig) else {
            return false;
        };
        loop {
            if let Some(success) = exited(&mut child, deadline) {
                return success;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Takes the child and sends it `sig`; returns it with the time it has to exit.
    fn take_signalled(&mut self, sig: Signal) -> Option<(Child, std::time::Instant)> {
        let child = self.child.take()?;
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), sig);
        }
        Some((child, std::time::Instant::now() + Duration::from_secs(30)))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Whether the process is still running (without reaping it).
    pub fn is_running_ref(&self) -> bool {
        self.pid()
            .is_some_and(|pid| kill(Pid::from_raw(pid), None).is_ok() && !is_zombie(pid))
    }

    /// The last `n` lines of the current log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join(format!("log.{}", self.starts)))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// GET from the admin API.
    pub async fn admin_get(&self, path: &str) -> Result<Reply, String> {
        http::get(self.admin(), path).await
    }

    /// `(service, node)` of every service instance this node lists, sorted.
    pub async fn services(&self) -> Result<Vec<(String, String)>, String> {
        let reply = self.admin_get("/v1/services").await?;
        if reply.status != 200 {
            return Err(format!("{}: {}", reply.status, reply.text()));
        }
        let listed: ServicesResponse = reply.decode()?;
        let mut out: Vec<(String, String)> = listed
            .services
            .into_iter()
            .flat_map(|s| {
                let name = s.name;
                s.instances.into_iter().map(move |i| (name.clone(), i.node))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Waits (up to 60 s) until this node lists exactly `nodes` as instances of `service`.
    pub async fn wait_instances(&self, service: &str, nodes: &[&str]) {
        let mut want: Vec<String> = nodes.iter().map(|n| (*n).to_owned()).collect();
        want.sort();
        crate::wait_until(
            &format!("{} to list {service} on {want:?}", self.name()),
            Duration::from_secs(60),
            || async {
                let all = self.services().await?;
                let got: Vec<String> = all
                    .iter()
                    .filter(|(s, _)| s == service)
                    .map(|(_, n)| n.clone())
                    .collect();
                if got == want {
                    Ok(())
                } else {
                    Err(format!("{got:?}"))
                }
            },
        )
        .await;
    }

    /// `(name, state, generation)` of every member this node lists.
    pub async fn members(&self) -> Result<Vec<(String, String, u64)>, String> {
        let reply = self.admin_get("/v1/members").await?;
        if reply.status != 200 {
            return Err(format!("{}: {}", reply.status, reply.text()));
        }
        let listed: MembersResponse = reply.decode()?;
        let mut out: Vec<(String, String, u64)> = listed
            .members
            .into_iter()
            .map(|m| (m.name, m.state, m.generation))
            .collect();
        out.sort();
        Ok(out)
    }
}

/// Whether `child` exited with success, once it exited (killed after `deadline`: false).
fn exited(child: &mut Child, deadline: std::time::Instant) -> Option<bool> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status.success());
    }
    if std::time::Instant::now() > deadline {
        let _ = child.kill();
        let _ = child.wait();
        return Some(false);
    }
    None
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `(VmRSS, VmHWM)` of a process in KiB.
pub fn memory_kib(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
