//! Private network namespaces for tests (DESIGN.md, testing tier 4).
//!
//! [`run`] creates a named namespace, runs the test body on a thread that entered it, and
//! deletes it afterwards, also when the body panics. Processes spawned from that thread inherit
//! the namespace. Partitions are `ip rule ... blackhole` rules inside it.

use std::fs::File;
use std::future::Future;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{CloneFlags, setns};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Deletes the namespace when dropped, even on panic.
struct Guard {
    name: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `body` in a fresh network namespace with loopback up, on its own thread with a
/// current-thread tokio runtime, and returns its result. Panics propagate.
pub fn run<F, Fut, T>(body: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let name = format!(
        "murmur-t{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let status = Command::new("ip").args(["netns", "add", &name]).status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "`ip netns add {name}` failed: these tests need root (or CAP_SYS_ADMIN) and iproute2"
    );
    let guard = Guard { name: name.clone() };
    let handle = std::thread::spawn(move || {
        let ns = File::open(format!("/run/netns/{name}")).expect("open the namespace");
        setns(ns, CloneFlags::CLONE_NEWNET).expect("enter the namespace");
        ip(&["link", "set", "lo", "up"]);
        // Let partitions be expressed as rules evaluated before the local table.
        ip(&["rule", "del", "priority", "0"]);
        ip(&["rule", "add", "priority", "100", "lookup", "local"]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(body())
    });
    let result = handle.join();
    drop(guard);
    match result {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs `ip` with `args` in the current thread's namespace and asserts success.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Drops all traffic between `a` and `b`, both ways.
pub fn partition(a: Ipv4Addr, b: Ipv4Addr) {
    rule("add", a, b);
    rule("add", b, a);
}

/// Restores traffic between `a` and `b`.
pub fn heal(a: Ipv4Addr, b: Ipv4Addr) {
    rule("del", a, b);
    rule("del", b, a);
}

/// Cuts every pair between the two groups.
pub fn split(left: &[Ipv4Addr], right: &[Ipv4Addr]) {
    for a in left {
        for b in right {
            partition(*a, *b);
        }
    }
}

/// Undoes [`split`].
pub fn unsplit(left: &[Ipv4Addr], right: &[Ipv4Addr]) {
    for a in left {
        for b in right {
            heal(*a, *b);
        }
    }
}

fn rule(op: &str, from: Ipv4Addr, to: Ipv4Addr) {
    let (from, to) = (from.to_string(), to.to_string());
    ip(&[
        "rule",
        op,
        "from",
        &from,
        "to",
        &to,
        "priority",
        "10",
        "blackhole",
    ]);
}
