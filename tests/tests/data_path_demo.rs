//! `murmur demo` works as printed: it comes up with no arguments, the `curl` lines it prints
//! reach the echo service across the mesh, and Ctrl-C stops it and removes its files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use murmur_tests::node::binary;
use murmur_tests::{http, netns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `(address, path)` of a printed `curl -H 'Host: echo' http://ADDR/PATH` line.
fn curl_target(line: &str) -> Option<(SocketAddr, String)> {
    let url = line.split_whitespace().find(|w| w.starts_with("http://"))?;
    let rest = url.strip_prefix("http://")?;
    let (addr, path) = rest.split_once('/')?;
    Some((addr.parse().ok()?, format!("/{path}")))
}

#[test]
fn the_demo_runs_and_its_curl_works() {
    netns::run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let demo_dir = dir.path().join("demo");
        let mut child = Command::new(binary())
            .arg("demo")
            .arg("--dir")
            .arg(&demo_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut printed = Vec::new();
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("the demo printed no instructions: {printed:#?}"));
            let done = line.contains("Ctrl-C stops the demo");
            printed.push(line);
            if done {
                break;
            }
        }
        let text = printed.join("\n");
        println!("{text}");
        let host_line = printed
            .iter()
            .find(|l| l.trim_start().starts_with("curl -H 'Host: echo'"))
            .expect("a curl line with Host: echo");
        let (addr, path) = curl_target(host_line).unwrap();
        assert_eq!(
            addr.port(),
            7421,
            "the demo's outbound proxy is on the default port"
        );
        let r = http::send(addr, "GET", &path, &[("host", "echo")], vec![])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert!(
            r.text().starts_with("hello from echo on node"),
            "{}",
            r.text()
        );
        println!("request to the printed target: {}", r.text().trim());

        // The printed lines themselves, run by a shell, where curl is installed.
        if Command::new("curl").arg("--version").output().is_ok() {
            for line in printed
                .iter()
                .filter(|l| l.trim_start().starts_with("curl -"))
            {
                let cmd = line.split('#').next().unwrap().trim();
                let out = Command::new("bash")
                    .args(["-c", &format!("{cmd} -sS")])
                    .output()
                    .unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                println!("$ {cmd}\n{}", stdout.trim());
                assert!(
                    out.status.success(),
                    "{cmd}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                if line.contains("nowhere") {
                    assert!(stdout.contains("unknown service"), "{stdout}");
                } else {
                    assert!(stdout.starts_with("hello from echo on node"), "{stdout}");
                }
            }
        }

        assert!(demo_dir.join("ca").join("ca.crt").exists());
        kill(
            Pid::from_raw(i32::try_from(child.id()).unwrap()),
            Signal::SIGINT,
        )
        .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "the demo exited with {status}");
        assert!(!demo_dir.exists(), "the demo left its directory behind");
    });
}
