//! TCP across the mesh through an upstream listener: a real protocol (Redis, with the Debian
//! `redis-server` and `redis-cli`), half-close in both directions, and a prompt close when no
//! instance is reachable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use murmur_tests::apps::{TcpEcho, redis_server};
use murmur_tests::{Cluster, netns, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn redis_cli(addr: SocketAddr, args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("redis-cli not found: install redis-tools");
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            input.write_all(bytes).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

#[test]
fn redis_and_half_close_through_an_upstream_listener() {
    netns::run(|| async {
        let redis_addr = SocketAddr::from((Cluster::ip(3), 6379));
        let echo_addr = SocketAddr::from((Cluster::ip(3), 7001));
        let redis_local = SocketAddr::from((Cluster::ip(2), 6380));
        let echo_local = SocketAddr::from((Cluster::ip(2), 7000));
        let ghost_local = SocketAddr::from((Cluster::ip(2), 7002));
        let mut c = Cluster::new();
        let _redis = redis_server(redis_addr, c.dir.path());
        TcpEcho::start(echo_addr).await;
        c.chain(2, |s| {
            if s.name == "n2" {
                s.service("redis", redis_addr, "tcp")
                    .service("tcp-echo", echo_addr, "tcp")
                    .service("ghost", SocketAddr::from((Cluster::ip(3), 9)), "tcp")
            } else {
                s.upstream("redis", redis_local)
                    .upstream("tcp-echo", echo_local)
                    .upstream("ghost", ghost_local)
            }
        });
        let n1 = c.node("n1");
        n1.wait_instances("redis", &["n2"]).await;
        n1.wait_instances("tcp-echo", &["n2"]).await;
        n1.wait_instances("ghost", &["n2"]).await;
        wait_until("redis to answer", Duration::from_secs(30), || async {
            let out = Command::new("redis-cli")
                .args(["-h", "127.0.0.3", "-p", "6379", "PING"])
                .output()
                .map_err(|e| e.to_string())?;
            if String::from_utf8_lossy(&out.stdout).trim() == "PONG" {
                Ok(())
            } else {
                Err("not yet".into())
            }
        })
        .await;

        // Redis through the mesh: node n1's listener -> QUIC -> n2 -> redis-server.
        assert_eq!(
            redis_cli(redis_local, &["SET", "greeting", "hello mesh"], None),
            "OK"
        );
        assert_eq!(
            redis_cli(redis_local, &["GET", "greeting"], None),
            "hello mesh"
        );
        let big = vec![b'x'; 2 << 20];
        assert_eq!(
            redis_cli(redis_local, &["-x", "SET", "big"], Some(&big)),
            "OK"
        );
        assert_eq!(redis_cli(redis_local, &["STRLEN", "big"], None), "2097152");
        let piped = redis_cli(redis_local, &[], Some(b"INCR n\nINCR n\nINCR n\nGET n\n"));
        assert_eq!(piped.lines().collect::<Vec<_>>(), ["1", "2", "3", "3"]);
        println!("redis-cli through the mesh: SET/GET, a 2 MiB value, pipelined INCRs");

        // Half-close: we send and shut down our side; the app still answers after seeing EOF,
        // and its close reaches us.
        let mut s = tokio::net::TcpStream::connect(echo_local).await.unwrap();
        let payload: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253) as u8).collect();
        s.write_all(&payload).await.unwrap();
        s.shutdown().await.unwrap();
        let mut back = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut back))
            .await
            .expect("the app's close never arrived")
            .unwrap();
        assert_eq!(&back[..payload.len()], &payload[..]);
        assert_eq!(
            &back[payload.len()..],
            format!("bye {}\n", payload.len()).as_bytes()
        );
        println!("half-close: 1 MiB echoed, then the app's reply after our FIN, then its FIN");

        // No reachable instance: the connection is closed at once, not left hanging.
        let t = Instant::now();
        let mut s = tokio::net::TcpStream::connect(ghost_local).await.unwrap();
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .expect("an unreachable TCP service left the connection hanging");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        println!(
            "unreachable TCP instance: connection closed after {:?}",
            t.elapsed()
        );
    });
}
