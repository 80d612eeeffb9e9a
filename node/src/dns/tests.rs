//! The DNS server on loopback, queried over UDP and TCP with hickory's message types: mesh
//! names answered from the virtual-IP map as it changes, everything else forwarded (here to a
//! second instance standing in for the host's resolver).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;

use super::{bind, start};
use crate::names::MeshNames;
use crate::telemetry::Telemetry;
use crate::vip::{Allocator, VipMap, VipSettings};

/// A DNS server for `suffix` answering `services`, forwarding to `upstreams`.
async fn server(
    suffix: &str,
    bare: bool,
    services: &[&str],
    upstreams: &[SocketAddr],
) -> (
    SocketAddr,
    Allocator,
    watch::Sender<Arc<VipMap>>,
    Arc<Telemetry>,
) {
    let listeners = same_port().await;
    let udp = listeners.udp.local_addr().unwrap();
    let mut alloc = Allocator::new(VipSettings::default());
    alloc.update(services.iter().copied(), Instant::now());
    let (tx, rx) = watch::channel(Arc::new(alloc.snapshot()));
    let telemetry = Arc::new(Telemetry::default());
    let names = MeshNames::new(suffix, bare).unwrap();
    start(listeners, names, upstreams, rx, telemetry.clone()).unwrap();
    (udp, alloc, tx, telemetry)
}

/// Listeners on one port for UDP and TCP, as a resolver expects: the UDP socket's free port is
/// taken for TCP too, which fails when a TCP socket elsewhere on the machine holds that port
/// (a client's ephemeral port, say); then another port is tried.
async fn same_port() -> super::DnsListeners {
    for _ in 0..50 {
        let listeners = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let udp = listeners.udp.local_addr().unwrap();
        if udp.port() == listeners.tcp.local_addr().unwrap().port() {
            return listeners;
        }
        drop(listeners);
        if let Ok(l) = bind(udp).await {
            return l;
        }
    }
    panic!("no port free for both UDP and TCP in 50 tries");
}

fn query(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    m.to_vec().unwrap()
}

async fn ask_udp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(&query(name, rtype), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.recv(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, 4242);
    m
}

async fn ask_tcp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let mut s = TcpStream::connect(server).await.unwrap();
    let q = query(name, rtype);
    s.write_all(&u16::try_from(q.len()).unwrap().to_be_bytes())
        .await
        .unwrap();
    s.write_all(&q).await.unwrap();
    let len = s.read_u16().await.unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn addrs(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn mesh_names_get_their_virtual_ips_and_other_names_are_forwarded() {
    // The "host's resolver": another instance, authoritative for `example.test`.
    let (upstream, up_alloc, _up_tx, _) = server("example.test", false, &["www"], &[]).await;
    let www = up_alloc.snapshot().of("www").unwrap();
    let (dns, mut alloc, tx, telemetry) =
        server("mesh", false, &["web", "redis"], &[upstream]).await;
    let web = alloc.snapshot().of("web").unwrap();

    for m in [
        ask_udp(dns, "web.mesh.", RecordType::A).await,
        ask_tcp(dns, "WEB.Mesh.", RecordType::A).await,
    ] {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(addrs(&m), [IpAddr::V4(web.v4.unwrap())]);
        assert_eq!(m.answers[0].ttl, super::handler::TTL);
    }
    let m = ask_udp(dns, "web.mesh.", RecordType::AAAA).await;
    assert_eq!(addrs(&m), [IpAddr::V6(web.v6.unwrap())]);
    let m = ask_udp(dns, "web.mesh.", RecordType::MX).await;
    assert_eq!(
        (m.metadata.response_code, m.answers.len()),
        (ResponseCode::NoError, 0)
    );
    let m = ask_udp(dns, "nope.mesh.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Bare names are not answered unless asked for: this one is forwarded, and unknown there.
    let m = ask_udp(dns, "web.", RecordType::A).await;
    assert_ne!(addrs(&m), [IpAddr::V4(web.v4.unwrap())]);

    // Forwarded, answered by the upstream as if asked directly.
    let direct = ask_udp(upstream, "www.example.test.", RecordType::A).await;
    let via = ask_udp(dns, "www.example.test.", RecordType::A).await;
    assert_eq!(addrs(&via), [IpAddr::V4(www.v4.unwrap())]);
    assert_eq!(addrs(&via), addrs(&direct));
    let m = ask_tcp(dns, "nothing.example.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // A service that appears is answered at once; one that goes is NXDOMAIN.
    alloc.update(["web", "api"], Instant::now());
    tx.send_replace(Arc::new(alloc.snapshot()));
    let api = alloc.snapshot().of("api").unwrap();
    assert_eq!(
        addrs(&ask_udp(dns, "api.mesh.", RecordType::A).await),
        [IpAddr::V4(api.v4.unwrap())]
    );
    let m = ask_udp(dns, "redis.mesh.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    let mut out = String::new();
    telemetry.dns_queries.render(&mut out);
    assert!(out.contains(r#"answer="vip"} 4"#), "{out}");
    assert!(out.contains(r#"answer="forwarded"} 3"#), "{out}");
}

#[tokio::test]
async fn bare_names_when_asked_and_refusal_without_upstreams() {
    let (dns, alloc, _tx, _) = server("mesh", true, &["web"], &[]).await;
    let web = alloc.snapshot().of("web").unwrap();
    let m = ask_udp(dns, "web.", RecordType::A).await;
    assert_eq!(addrs(&m), [IpAddr::V4(web.v4.unwrap())]);
    let m = ask_udp(dns, "example.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}
