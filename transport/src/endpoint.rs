//! The QUIC endpoint of a node: one UDP socket that accepts connections from verified peers and
//! dials them, with one cached connection per peer. A node with several runtimes has one such
//! socket and cache per runtime (a shard, [`crate::shard`]), all on the mesh port, each packet
//! steered to the shard that owns its connection ([`MeshEndpoint::bind_sharded`]).
//!
//! Incoming gossip streams go to a bounded queue per gossip channel, read by that channel's
//! gossip transport (channel 0: the cell; others: the top layer of cells, see
//! [`MeshEndpoint::gossip_channel`]); other streams go to the [`StreamHandler`] the node
//! installs. Connections we dial are served the same way, so a
//! peer may open streams on whichever connection exists between us.

mod anonymous;
mod config;
mod peers;
mod registry;
mod runtime;
mod serve;
mod socket;
mod steer;
mod udp;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use quinn::{RecvStream, Runtime, SendStream};
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc};

pub use anonymous::{AnonymousConnection, AnonymousStream, connect_anonymous};
pub use config::{MAX_UDP_PAYLOAD, QuicSettings};
pub use peers::{ConnectError, OpenError, PeerConnection, PeerStats};

use crate::identity::{Name, PeerIdentity};
use crate::tls::TlsState;
use crate::wire::{StreamHeader, StreamKind};

/// Gossip messages waiting for the gossip transport; beyond this they are dropped, as UDP would.
const GOSSIP_QUEUE: usize = 1024;

/// A bidirectional stream opened by a verified peer.
#[derive(Debug)]
pub struct InboundStream {
    /// Who opened it.
    pub peer: Arc<PeerIdentity>,
    /// The peer's UDP address.
    pub remote: SocketAddr,
    /// What the stream is for.
    pub kind: StreamKind,
    /// Its header.
    pub header: StreamHeader,
    /// Our side's send half.
    pub send: SendStream,
    /// Our side's receive half.
    pub recv: RecvStream,
}

/// The work a [`StreamHandler`] does for one stream.
pub type StreamWork = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Receives the bidirectional streams peers open. The returned work runs on the task that read
/// the stream's header: no second task, no extra wake-up on the request path.
pub trait StreamHandler: Send + Sync + 'static {
    /// Takes one stream.
    fn handle(&self, stream: InboundStream) -> StreamWork;

    /// Takes one `Identity` stream of a client that presented no certificate (a node joining
    /// with a token). Refused unless the node serves them.
    fn handle_anonymous(&self, mut stream: AnonymousStream) -> StreamWork {
        let _ = stream.send.reset(quinn::VarInt::from_u32(0x13));
        Box::pin(async {})
    }
}

/// A gossip message received from a verified node.
#[derive(Debug)]
pub struct GossipDatagram {
    /// The sender's advertised mesh address.
    pub from: SocketAddr,
    /// The sender's node name, from its certificate.
    pub sender: Name,
    /// The chitchat message bytes (at most [`crate::wire::MAX_GOSSIP_PAYLOAD`]), as chitchat
    /// encoded them or packed.
    pub payload: Vec<u8>,
    /// `Some(base)` when the payload is packed ([`crate::gossip::pack`]), against `base` if
    /// that is `Some` too.
    pub packed: Option<Option<u64>>,
    /// The connection it came on: adopted for `from` once the address is verified
    /// ([`MeshEndpoint::adopt`]).
    pub conn: PeerConnection,
}

/// Settings of a [`MeshEndpoint`].
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// UDP address to bind.
    pub listen: SocketAddr,
    /// Address peers reach us at; `None` means the bound address, which must then name a
    /// specific IP (not 0.0.0.0).
    pub advertise: Option<SocketAddr>,
    /// QUIC tuning.
    pub quic: QuicSettings,
    /// Secret for stateless resets. Keep it across restarts (the node stores it in its data
    /// directory): a restarted node then resets its peers' connections to its previous
    /// incarnation at once, instead of leaving them to time out. `None`: a random one.
    pub reset_key: Option<[u8; 32]>,
}

/// A node's QUIC endpoint. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MeshEndpoint {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// One per runtime the node runs (at least one).
    shards: Box<[Shard]>,
    tls: Arc<TlsState>,
    advertise: SocketAddr,
    settings: QuicSettings,
    handler: OnceLock<Arc<dyn StreamHandler>>,
    /// The queue of each gossip channel, by channel (at most 256: the key is a byte, and only
    /// this node opens channels).
    gossip: Mutex<BTreeMap<u8, mpsc::Sender<GossipDatagram>>>,
    counters: Arc<Counters>,
    registry: registry::Registry,
    anonymous: Arc<Semaphore>,
    /// Packet counts per peer that never go down ([`MeshEndpoint::peer_stats`]).
    ledger: Mutex<peers::stats::Ledger>,
}

/// One runtime's share: its endpoint (whose drivers run on that runtime), how it dials, and
/// the connections dialled or adopted there.
#[derive(Debug)]
struct Shard {
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    peers: peers::PeerCache,
}

impl Shard {
    fn new(endpoint: quinn::Endpoint, client_config: quinn::ClientConfig) -> Self {
        Self {
            endpoint,
            client_config,
            peers: peers::PeerCache::default(),
        }
    }
}

/// Events worth counting at the endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections refused during or right after the handshake (bad or missing certificate).
    pub handshakes_refused: AtomicU64,
    /// Gossip frames that did not decode.
    pub gossip_malformed: AtomicU64,
    /// Gossip frames dropped because the gossip loop was behind.
    pub gossip_dropped: AtomicU64,
    /// Streams not opened because the peer allowed no more at once and none freed in time.
    pub streams_exhausted: AtomicU64,
}

impl std::fmt::Debug for dyn StreamHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamHandler")
    }
}

impl MeshEndpoint {
    /// Binds the UDP socket and starts accepting connections, on the current runtime. Returns
    /// the endpoint and the receiver of incoming gossip.
    pub fn bind(
        config: EndpointConfig,
        tls: Arc<TlsState>,
    ) -> std::io::Result<(Self, mpsc::Receiver<GossipDatagram>)> {
        Self::bind_sharded(config, tls, &[Handle::current()])
    }

    /// Like [`MeshEndpoint::bind`], with one endpoint per runtime in `shards` (the first is
    /// shard 0), all on the mesh port: each accepts, dials and drives its connections on its
    /// own runtime, and the kernel hands each packet to the endpoint of its connection
    /// ([`steer`]). Calls made on a thread of shard `i` ([`crate::shard::current`]) dial from
    /// shard `i`.
    pub fn bind_sharded(
        config: EndpointConfig,
        tls: Arc<TlsState>,
        shards: &[Handle],
    ) -> std::io::Result<(Self, mpsc::Receiver<GossipDatagram>)> {
        if shards.is_empty() || shards.len() > crate::shard::MAX_SHARDS {
            return Err(std::io::Error::other(format!(
                "{} runtimes: a node runs 1 to {}",
                shards.len(),
                crate::shard::MAX_SHARDS
            )));
        }
        let endpoints = shard_endpoints(&config, &tls, shards)?;
        let advertise = match config.advertise {
            Some(addr) => addr,
            None => endpoints[0].endpoint.local_addr()?,
        };
        if advertise.ip().is_unspecified() || advertise.port() == 0 {
            return Err(std::io::Error::other(format!(
                "advertised mesh address {advertise} is not reachable: set it explicitly"
            )));
        }
        let (gossip_tx, gossip_rx) = mpsc::channel(GOSSIP_QUEUE);
        let gossip = Mutex::new(BTreeMap::from([(0, gossip_tx)]));
        let inner = Arc::new(Inner {
            shards: endpoints.into_boxed_slice(),
            tls,
            advertise,
            settings: config.quic,
            handler: OnceLock::new(),
            gossip,
            counters: Arc::default(),
            registry: registry::Registry::default(),
            anonymous: Arc::new(Semaphore::new(anonymous::MAX_ANONYMOUS)),
            ledger: Mutex::default(),
        });
        let this = Self { inner };
        for (index, handle) in shards.iter().enumerate() {
            handle.spawn(serve::accept_loop(this.clone(), index));
        }
        Ok((this, gossip_rx))
    }

    /// A client-only endpoint (for operator tools): binds an ephemeral port and accepts nothing.
    pub fn client(tls: Arc<TlsState>, quic: QuicSettings) -> std::io::Result<Self> {
        let client_config = config::client_config(&tls, &quic).map_err(std::io::Error::other)?;
        let bind: SocketAddr = ([0, 0, 0, 0], 0).into();
        let endpoint = quinn::Endpoint::client(bind)?;
        Ok(Self {
            inner: Arc::new(Inner {
                shards: Box::new([Shard::new(endpoint, client_config)]),
                tls,
                advertise: bind,
                settings: quic,
                handler: OnceLock::new(),
                gossip: Mutex::default(),
                counters: Arc::default(),
                registry: registry::Registry::default(),
                anonymous: Arc::new(Semaphore::new(0)),
                ledger: Mutex::default(),
            }),
        })
    }

    /// A fresh receiver of gossip channel `channel` (0 is the one [`MeshEndpoint::bind`]
    /// returned). It replaces the channel's previous receiver, which sees nothing more: a
    /// custodian that leaves the top layer and joins again starts a new gossip instance.
    pub fn gossip_channel(&self, channel: u8) -> mpsc::Receiver<GossipDatagram> {
        let (tx, rx) = mpsc::channel(GOSSIP_QUEUE);
        self.inner
            .gossip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(channel, tx);
        rx
    }

    /// Hands a received gossip message to its channel's queue; `false` when the channel is not
    /// open or its queue is full.
    fn deliver_gossip(&self, channel: u8, datagram: GossipDatagram) -> bool {
        let tx = self
            .inner
            .gossip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&channel)
            .cloned();
        tx.is_some_and(|tx| tx.try_send(datagram).is_ok())
    }

    /// Installs the handler of bidirectional streams. Only the first call has an effect; streams
    /// that arrive before it are refused.
    pub fn set_handler(&self, handler: Arc<dyn StreamHandler>) {
        let _ = self.inner.handler.set(handler);
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.shards[0].endpoint.local_addr()
    }

    /// The address peers reach us at.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.inner.advertise
    }

    /// The live TLS state (certificate, bundle).
    pub fn tls(&self) -> &Arc<TlsState> {
        &self.inner.tls
    }

    /// QUIC settings in use.
    pub fn settings(&self) -> &QuicSettings {
        &self.inner.settings
    }

    /// The cached connection to `addr`, dialling it if needed. With `expected`, the peer must be
    /// that node.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: Option<&Name>,
    ) -> Result<PeerConnection, ConnectError> {
        peers::connect(self, addr, expected, |conn| {
            tokio::spawn(serve::serve_connection(self.clone(), conn));
        })
        .await
    }

    /// The cached connection to `addr`, if one is open (and, with `expected`, that node's),
    /// found without waiting: the data path awaits [`Self::connect`] only when this has none, so
    /// that dialling's future is not part of every request's.
    pub fn ready(&self, addr: SocketAddr, expected: Option<&Name>) -> Option<PeerConnection> {
        peers::ready(self, addr, expected)
    }

    /// Uses `conn` for traffic to `addr`, which its peer proved is its own address: a peer that
    /// dialled us needs no second connection back. Never replaces an open connection to another
    /// node, so a frame claiming someone else's address cannot take over that address.
    ///
    /// The connection goes to the cache of the shard that drives it.
    pub fn adopt(&self, addr: SocketAddr, conn: &PeerConnection) {
        self.shard_at(conn.shard()).peers.adopt(addr, conn);
    }

    /// A new connection to `addr` outside the cache, whose handshake presents the credentials
    /// in use now: a renewal must prove the current certificate, not the one a long-lived cached
    /// connection was opened with. Nothing serves streams the peer opens on it; dropping it
    /// closes it.
    pub async fn connect_fresh(
        &self,
        addr: SocketAddr,
        expected: Option<&Name>,
    ) -> Result<PeerConnection, ConnectError> {
        peers::dial(self, addr, expected)
            .await
            .map_err(|reason| ConnectError::Unreachable { addr, reason })
    }

    /// Endpoint event counters.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Closes the connection to `addr` (a peer declared dead): requests waiting on it fail now
    /// instead of at the idle timeout, and the next one dials again.
    pub fn disconnect(&self, addr: SocketAddr, reason: &str) {
        for shard in &self.inner.shards {
            shard.peers.disconnect(addr, reason.as_bytes());
        }
    }

    /// Closes every connection (whichever side dialled) to a peer whose certificate the current
    /// revocations refuse; returns how many. New handshakes are refused by the verifiers.
    pub fn close_revoked(&self) -> usize {
        let revoked = self.inner.tls.revocations();
        if revoked.is_empty() {
            return 0;
        }
        self.inner.registry.close_where(
            |peer| revoked.of_peer(peer).is_some(),
            serve::codes::REVOKED,
            b"certificate revoked",
        )
    }

    /// The peer of every open connection, by node (or operator) name, sorted; a peer connected
    /// both ways is listed twice.
    pub fn connected_peers(&self) -> Vec<String> {
        self.inner.registry.peers()
    }

    /// RTT, MTU and packet counts of the connected peers, one entry per peer (each shard has
    /// its own connection to a peer), in name order. The counts are counters: they include the
    /// connections to the peer that closed while it stayed connected ([`peers::stats`]).
    pub fn peer_stats(&self) -> Vec<PeerStats> {
        let (mut open, mut closed) = (Vec::new(), Vec::new());
        for shard in self.inner.shards.iter() {
            let samples = shard.peers.stats();
            open.extend(samples.open);
            closed.extend(samples.closed);
        }
        self.inner
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .merge(open, closed)
    }

    /// Closes every connection and waits (bounded) for peers to acknowledge.
    pub async fn close(&self, grace: Duration) {
        for shard in &self.inner.shards {
            shard.endpoint.close(0u32.into(), b"node stopping");
        }
        let idle = async {
            for shard in &self.inner.shards {
                shard.endpoint.wait_idle().await;
            }
        };
        let _ = tokio::time::timeout(grace, idle).await;
    }

    /// The current thread's shard.
    fn shard(&self) -> &Shard {
        self.shard_at(crate::shard::current())
    }

    /// Shard `index` (shard 0 for an index this endpoint does not have).
    fn shard_at(&self, index: usize) -> &Shard {
        crate::shard::item(&self.inner.shards, index)
    }
}

/// One QUIC endpoint for each runtime of `shards`, each on its own socket of the mesh port's
/// group, its driver on that runtime, and (with more than one) dialing with first IDs that name
/// its shard, so that a peer with as many shards answers on the same one.
fn shard_endpoints(
    config: &EndpointConfig,
    tls: &Arc<TlsState>,
    shards: &[Handle],
) -> std::io::Result<Vec<Shard>> {
    let server = config::server_config(tls, &config.quic).map_err(std::io::Error::other)?;
    let client_config = config::client_config(tls, &config.quic).map_err(std::io::Error::other)?;
    let runtime = Arc::new(runtime::DriverRuntime);
    let sockets = bind_sockets(config, shards.len())?;
    let mut endpoints = Vec::with_capacity(shards.len());
    for (index, (handle, socket)) in shards.iter().zip(sockets).enumerate() {
        // quinn registers the socket and spawns the endpoint's driver on the runtime
        // entered here.
        let _entered = handle.enter();
        let socket = runtime.wrap_udp_socket(socket)?;
        let quic = quic_config(config, index, shards.len())?;
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            quic,
            Some(server.clone()),
            socket,
            runtime.clone(),
        )?;
        let mut client = client_config.clone();
        if shards.len() > 1 {
            let (shard, count) = shard_of(index, shards.len())?;
            client.initial_dst_cid_provider(Arc::new(move || steer::initial_cid(shard, count)));
        }
        endpoints.push(Shard::new(endpoint, client));
    }
    Ok(endpoints)
}

/// The mesh port's socket for each of `shards` (more than one: a reuse-port group, steered).
fn bind_sockets(
    config: &EndpointConfig,
    shards: usize,
) -> std::io::Result<Vec<std::net::UdpSocket>> {
    if shards == 1 {
        return Ok(vec![socket::bind(
            config.listen,
            config.quic.udp_buffer,
            false,
        )?]);
    }
    // A reuse-port group would take in a socket of another process of the same user that
    // shares the port the same way: a plain bind first fails on a busy port, as with one shard.
    // It also picks the port, should the config ask for any.
    let addr = std::net::UdpSocket::bind(config.listen)?.local_addr()?;
    let mut sockets = Vec::with_capacity(shards);
    for _ in 0..shards {
        sockets.push(socket::bind(addr, config.quic.udp_buffer, true)?);
    }
    steer::attach(&sockets[0], shards)?;
    Ok(sockets)
}

/// quinn's endpoint settings for shard `shard` of `shards`.
fn quic_config(
    config: &EndpointConfig,
    shard: usize,
    shards: usize,
) -> std::io::Result<quinn::EndpointConfig> {
    let mut quic = match config.reset_key {
        Some(secret) => quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            &secret,
        ))),
        None => quinn::EndpointConfig::default(),
    };
    quic.max_udp_payload_size(config.quic.max_udp_payload)
        .map_err(|e| std::io::Error::other(format!("QUIC max UDP payload: {e}")))?;
    if shards > 1 {
        let (shard, shards) = shard_of(shard, shards)?;
        quic.cid_generator(move || Box::new(steer::ShardCids::new(shard, shards)));
    }
    Ok(quic)
}

/// Shard `shard` of `shards` as connection IDs carry them.
fn shard_of(shard: usize, shards: usize) -> std::io::Result<(u8, u8)> {
    match (u8::try_from(shard), u8::try_from(shards)) {
        (Ok(shard), Ok(shards)) => Ok((shard, shards)),
        _ => Err(std::io::Error::other("too many runtimes")),
    }
}
