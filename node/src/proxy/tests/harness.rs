//! Two (or more) nodes' data paths in one process: real QUIC endpoints and certificates, a
//! cluster view set by the test, apps served by tasks.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use murmur_membership::ClusterView;
use murmur_membership::records::{Balancer, Health, Protocol};
use murmur_membership::view::Endpoint;
use murmur_transport::endpoint::{
    EndpointConfig, InboundStream, MeshEndpoint, QuicSettings, StreamHandler, StreamWork,
};
use murmur_transport::identity::Role;
use murmur_transport::testing::{TestPki, name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::balance::Balancers;
use crate::listener::{Gate, ListenerLimits};
use crate::names::MeshNames;
use crate::proxy::local::LocalClients;
use crate::proxy::runtime::{External, Proxy};
use crate::proxy::{inbound, outbound, upstream};
use crate::services::{LocalService, Services};
use crate::telemetry::Telemetry;
use crate::telemetry::traces::Tracing;
use crate::traffic::Traffic;
use crate::traffic::tests::compiled;
use crate::vip::{Allocator, VipMap, VipSettings};

/// One node's data path.
pub struct Node {
    pub proxy: Arc<Proxy>,
    pub addr: SocketAddr,
    view: watch::Sender<Arc<ClusterView>>,
    vips: watch::Sender<Arc<VipMap>>,
}

/// Routes HTTP and TCP streams to the data path, as the node's stream handler does.
struct Handler(Arc<Proxy>);

impl StreamHandler for Handler {
    fn handle(&self, stream: InboundStream) -> StreamWork {
        inbound::serve(self.0.clone(), stream)
    }
}

/// A node `node` whose certificate names `certified`, serving `local` under `policy` (TOML).
pub fn node(
    pki: &TestPki,
    node: &str,
    certified: &[&str],
    local: &[LocalService],
    policy: &str,
) -> Node {
    node_with(pki, node, certified, local, policy, quic(), External::Allow)
}

/// The usual pair: node `b` serves `web` from `app`, and node `a` (under `policy`) sees it
/// there. Keep both: a dropped node closes its endpoint.
pub fn web_pair(pki: &TestPki, app: SocketAddr, policy: &str) -> (Node, Node) {
    let b = node(pki, "b", &["web"], &[local("web", app, Protocol::Http)], "");
    let a = node(pki, "a", &[], &[], policy);
    a.sees("web", vec![instance("web", "b", b.addr)]);
    (a, b)
}

/// The QUIC settings of test nodes: a short connect timeout, so a dead peer fails fast.
pub fn quic() -> QuicSettings {
    QuicSettings {
        connect_timeout: Duration::from_millis(500),
        ..QuicSettings::default()
    }
}

/// [`node`] with QUIC settings of its own, and requests for hosts outside the mesh as
/// `external` says.
pub fn node_with(
    pki: &TestPki,
    node: &str,
    certified: &[&str],
    local: &[LocalService],
    policy: &str,
    quic: QuicSettings,
    external: External,
) -> Node {
    let tls = pki.tls(&pki.node(node, certified), Role::Node, node);
    let config = EndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
        quic,
        reset_key: None,
    };
    let (endpoint, _gossip) = MeshEndpoint::bind(config, tls.clone()).unwrap();
    let services = Services::from_config(local, &tls.local_cert()).unwrap();
    let (view, view_rx) = watch::channel(Arc::new(ClusterView {
        self_name: node.to_owned(),
        ..ClusterView::default()
    }));
    let (vips, vips_rx) = watch::channel(Arc::new(VipMap::default()));
    let proxy = Arc::new(Proxy {
        node: node.to_owned(),
        id: tls.identity().to_string(),
        zone: None,
        endpoint: endpoint.clone(),
        view: view_rx,
        balancers: Arc::new(Balancers::new(7)),
        services: Arc::new(services),
        local: LocalClients::new(1),
        telemetry: Arc::new(Telemetry::default()),
        traces: Arc::new(Tracing::disabled()),
        traffic: Traffic::fixed(compiled(policy), 7),
        names: MeshNames::default(),
        vips: vips_rx,
        external,
        mark: None,
        origination: crate::proxy::external::origination::Origination::default(),
    });
    endpoint.set_handler(Arc::new(Handler(proxy.clone())));
    Node {
        addr: endpoint.local_addr().unwrap(),
        proxy,
        view,
        vips,
    }
}

/// A local service of `protocol` at `address`.
pub fn local(service: &str, address: SocketAddr, protocol: Protocol) -> LocalService {
    LocalService::with_defaults(
        name(service),
        address,
        BTreeMap::new(),
        Some(protocol),
        None,
        Some(Balancer::RoundRobin),
    )
}

/// An instance of `service` on node `node` at `addr`, as gossip would list it.
pub fn instance(service: &str, node: &str, addr: SocketAddr) -> Endpoint {
    Endpoint {
        service: service.to_owned(),
        node: name(node),
        mesh_addr: addr,
        protocol: Protocol::Http,
        labels: BTreeMap::new(),
        weight: 1,
        health: Health::Passing,
        balancer: Balancer::RoundRobin,
        draining: false,
        stale: false,
        cell: None,
    }
}

impl Node {
    /// Makes this node see `instances` of `service`, in this order, and gives every service
    /// it sees a virtual IP.
    pub fn sees(&self, service: &str, instances: Vec<Endpoint>) {
        self.view.send_modify(|v| {
            let mut next = (**v).clone();
            next.services.insert(service.to_owned(), instances);
            *v = Arc::new(next);
        });
        let mut vips = Allocator::new(VipSettings::default());
        vips.update(
            self.view.borrow().services.keys().map(String::as_str),
            std::time::Instant::now(),
        );
        self.vips.send_replace(Arc::new(vips.snapshot()));
    }

    /// The outbound HTTP listener of this node, serving with the default limits.
    pub async fn outbound(&self) -> SocketAddr {
        self.outbound_with(ListenerLimits::OUTBOUND).await.0
    }

    /// The outbound HTTP listener of this node with `limits`, serving; and its gate.
    pub async fn outbound_with(&self, limits: ListenerLimits) -> (SocketAddr, Arc<Gate>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = Arc::new(Gate::new("outbound", limits));
        tokio::spawn(outbound::serve(self.proxy.clone(), listener, gate.clone()));
        (addr, gate)
    }

    /// A local TCP listener for `service` on this node, serving with the default limits.
    pub async fn upstream(&self, service: &str) -> SocketAddr {
        self.upstream_with(service, ListenerLimits::UPSTREAM)
            .await
            .0
    }

    /// A local TCP listener for `service` with `limits`, serving; and its gate.
    pub async fn upstream_with(
        &self,
        service: &str,
        limits: ListenerLimits,
    ) -> (SocketAddr, Arc<Gate>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = Arc::new(Gate::new(format!("upstream:{service}"), limits));
        tokio::spawn(upstream::serve(
            self.proxy.clone(),
            name(service),
            listener,
            gate.clone(),
        ));
        (addr, gate)
    }

    /// Requests counted by this node's metrics, as `/metrics` shows them.
    pub fn requests(&self) -> String {
        let mut out = String::new();
        self.proxy.telemetry.requests.render(&mut out);
        out
    }
}

/// An HTTP app answering `<tag> <method> <path>`, after `delay`.
pub async fn http_app(tag: &'static str, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        tokio::time::sleep(delay).await;
                        let body = format!("{tag} {} {}", req.method(), req.uri().path());
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A TCP app echoing what it reads.
pub async fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// An address where nothing answers QUIC.
pub fn nowhere() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

/// A plain HTTP/1.1 exchange: `(status, body)`.
pub async fn get(proxy: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// Waits (up to 10 s) until `cond` holds.
pub async fn wait_for(cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not met within 10 s");
}
