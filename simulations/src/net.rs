//! An in-memory network for many chitchat nodes in one process.
//!
//! Every node opens a socket on [`SimNet`] (it implements chitchat's [`Transport`]). A message
//! goes through chitchat's own encoder and decoder on the way (see [`codec`]), so the byte counts
//! are the real encoded sizes and a message over the size limit fails exactly as it would on
//! a real socket. Then the network decides, with its own seeded random generator, whether the
//! message is lost, cut by a partition, or delivered after a delay.
//!
//! All times are tokio times: under a paused runtime, a delay costs no wall-clock time.

mod codec;
mod inbox;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::bail;
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::{ChitchatEnvelope, ChitchatMessage};
use murmur_transport::gossip::pack::{Packed, Packer};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

pub use codec::{Codec, Coded};
use inbox::Inbox;

/// Largest chitchat message a UDP datagram (and our QUIC gossip transport) carries.
pub const MAX_MESSAGE_BYTES: usize = 65_507;

/// How one link behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkModel {
    /// Probability that a message is lost, in `[0, 1]`.
    pub loss: f64,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra one-way delay, uniform in `[0, jitter)`.
    pub jitter: Duration,
}

impl Default for LinkModel {
    fn default() -> Self {
        // A LAN: about a millisecond each way.
        Self {
            loss: 0.0,
            delay: Duration::from_micros(500),
            jitter: Duration::from_millis(1),
        }
    }
}

/// The whole network's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// Behaviour of every link without its own model.
    pub link: LinkModel,
    /// Largest message accepted; larger ones fail to send.
    pub mtu: usize,
    /// Messages waiting at one receiver; more are dropped (a full socket buffer).
    pub inbox_capacity: usize,
    /// Seed of every random decision the network takes.
    pub seed: u64,
    /// At most this many `Syn`s per gossip round from one node to open addresses; the rest are
    /// not sent. Stands in for a gossip fanout below chitchat's own (`GOSSIP_COUNT`, 3, a
    /// constant): an experiment, not something the node does. `None`: chitchat's fanout.
    pub syn_fanout: Option<usize>,
    /// Pack gossip as nodes do between each other (`murmur_transport::gossip::pack`): a SynAck
    /// against the Syn it answers, a Syn against the pair's last SynAck. Off: chitchat's own
    /// encoding, as a node sends to a peer that does not speak it, and as the flat report was
    /// measured.
    pub packed: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            link: LinkModel::default(),
            mtu: MAX_MESSAGE_BYTES,
            inbox_capacity: 4096,
            seed: 0,
            syn_fanout: None,
            packed: false,
        }
    }
}

/// The kinds of chitchat message, in the order of [`Traffic::sent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Digest of the initiator.
    Syn = 0,
    /// Digest and delta of the responder.
    SynAck = 1,
    /// Delta of the initiator.
    Ack = 2,
    /// Refusal from another cluster.
    BadCluster = 3,
}

impl Kind {
    fn of(message: &ChitchatMessage) -> Self {
        match message {
            ChitchatMessage::Syn { .. } => Self::Syn,
            ChitchatMessage::SynAck { .. } => Self::SynAck,
            ChitchatMessage::Ack { .. } => Self::Ack,
            ChitchatMessage::BadCluster => Self::BadCluster,
        }
    }
}

/// Messages and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// Messages.
    pub msgs: u64,
    /// Encoded bytes (chitchat payload, without transport headers).
    pub bytes: u64,
}

impl Flow {
    fn add(&mut self, bytes: usize) {
        self.msgs += 1;
        self.bytes += bytes as u64;
    }

    /// `self - earlier`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            msgs: self.msgs - earlier.msgs,
            bytes: self.bytes - earlier.bytes,
        }
    }
}

/// What one node sent and received, cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Sent, by [`Kind`].
    pub sent: [Flow; 4],
    /// Received (delivered to chitchat).
    pub received: Flow,
    /// Refused because larger than the MTU (never left the node), by [`Kind`].
    pub oversize: [Flow; 4],
    /// Lost to link loss.
    pub lost: u64,
    /// Cut by a partition.
    pub cut: u64,
    /// Sent to an address nobody listens on (a dead node).
    pub unreachable: u64,
    /// Dropped because the receiver's inbox was full.
    pub overflow: u64,
    /// Dropped by the receiver: packed against a base it did not hold, other than a roster.
    pub refused: u64,
    /// Dropped by the receiver: a Syn packed against the sender's roster, which the receiver
    /// had not made (the two knew different members).
    pub roster_missed: u64,
    /// Largest `Syn` (digest) sent.
    pub max_syn_bytes: u64,
    /// Estimated bytes on the wire for everything sent (see [`wire_estimate`]).
    pub wire_bytes: u64,
}

impl Traffic {
    /// Everything sent.
    pub fn sent_total(&self) -> Flow {
        let mut total = Flow::default();
        for f in &self.sent {
            total.msgs += f.msgs;
            total.bytes += f.bytes;
        }
        total
    }
}

/// The in-memory network. Cheap to clone; all clones are the same network.
#[derive(Clone)]
pub struct SimNet {
    state: Arc<Mutex<NetState>>,
}

struct Port {
    id: u64,
    inbox: Arc<Inbox>,
}

struct NetState {
    rng: StdRng,
    config: NetConfig,
    ports: HashMap<SocketAddr, Port>,
    next_id: u64,
    groups: HashMap<SocketAddr, u32>,
    links: HashMap<(SocketAddr, SocketAddr), LinkModel>,
    traffic: HashMap<SocketAddr, Traffic>,
    /// Seed addresses: `Syn`s to them are never held back by [`NetConfig::syn_fanout`].
    seeds: HashSet<SocketAddr>,
}

impl SimNet {
    /// A network with `config`.
    pub fn new(config: NetConfig) -> anyhow::Result<Self> {
        check_link(&config.link)?;
        Ok(Self {
            state: Arc::new(Mutex::new(NetState {
                rng: StdRng::seed_from_u64(config.seed),
                config,
                ports: HashMap::new(),
                next_id: 0,
                groups: HashMap::new(),
                links: HashMap::new(),
                traffic: HashMap::new(),
                seeds: HashSet::new(),
            })),
        })
    }

    /// Marks `addrs` as seeds, whose `Syn`s a fanout below chitchat's never holds back.
    /// chitchat adds a `Syn` to a seed after the sampled peers, and that one is what keeps
    /// groups that formed apart at the start from staying apart: withheld, a cluster of 12
    /// stayed split in two for good in one start of six.
    pub fn add_seeds(&self, addrs: impl IntoIterator<Item = SocketAddr>) {
        self.lock().seeds.extend(addrs);
    }

    /// The fanout to hold `Syn`s to `to` to. None when there is no limit, when `to` is a seed,
    /// or when nothing listens there (chitchat's extra `Syn` to a dead node).
    fn fanout_towards(&self, to: SocketAddr) -> Option<usize> {
        let st = self.lock();
        st.config
            .syn_fanout
            .filter(|_| st.ports.contains_key(&to) && !st.seeds.contains(&to))
    }

    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the model of every link that has none of its own.
    pub fn set_default_link(&self, link: LinkModel) -> anyhow::Result<()> {
        check_link(&link)?;
        self.lock().config.link = link;
        Ok(())
    }

    /// Gives the link `from → to` its own model (one direction only).
    pub fn set_link(
        &self,
        from: SocketAddr,
        to: SocketAddr,
        link: LinkModel,
    ) -> anyhow::Result<()> {
        check_link(&link)?;
        self.lock().links.insert((from, to), link);
        Ok(())
    }

    /// Splits the network: messages between different groups are cut. Addresses in no group
    /// form one more group together.
    pub fn partition(&self, groups: &[Vec<SocketAddr>]) {
        let mut st = self.lock();
        st.groups.clear();
        for (i, group) in groups.iter().enumerate() {
            for addr in group {
                st.groups.insert(*addr, i as u32 + 1);
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&self) {
        self.lock().groups.clear();
    }

    /// Crashes whoever listens on `addr`: its queued and future messages vanish, and the
    /// address is free again at once.
    pub fn kill(&self, addr: SocketAddr) {
        self.lock().ports.remove(&addr);
    }

    /// Cumulative traffic of every address that sent or received anything.
    pub fn traffic(&self) -> HashMap<SocketAddr, Traffic> {
        self.lock().traffic.clone()
    }

    /// A random number from the network's seeded generator (for scenario decisions that
    /// should follow the seed too).
    pub fn random_below(&self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        self.lock().rng.random_range(0..n)
    }

    fn release(&self, addr: SocketAddr, id: u64) {
        let mut st = self.lock();
        if st.ports.get(&addr).is_some_and(|p| p.id == id) {
            st.ports.remove(&addr);
        }
    }

    fn count_refused(&self, addr: SocketAddr, roster: bool) {
        let mut inner = self.lock();
        let t = inner.traffic.entry(addr).or_default();
        if roster {
            t.roster_missed += 1;
        } else {
            t.refused += 1;
        }
    }

    fn count_received(&self, addr: SocketAddr, bytes: usize) {
        self.lock()
            .traffic
            .entry(addr)
            .or_default()
            .received
            .add(bytes);
    }

    /// Takes one encoded message from `from` (socket `id`) to `to`.
    fn route(
        &self,
        from: (SocketAddr, u64),
        to: SocketAddr,
        env: ChitchatEnvelope,
        bytes: usize,
        packed: Option<Packed>,
    ) -> anyhow::Result<()> {
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.ports.get(&from.0).is_none_or(|p| p.id != from.1) {
            // A crashed node's last words: they never reach the wire.
            return Ok(());
        }
        let kind = Kind::of(&env.message);
        let mtu = st.config.mtu;
        let traffic = st.traffic.entry(from.0).or_default();
        if bytes > mtu {
            traffic.oversize[kind as usize].add(bytes);
            bail!("a {kind:?} of {bytes} bytes is over the {mtu}-byte message limit");
        }
        traffic.sent[kind as usize].add(bytes);
        traffic.wire_bytes += wire_estimate(bytes);
        if kind == Kind::Syn {
            traffic.max_syn_bytes = traffic.max_syn_bytes.max(bytes as u64);
        }
        let group = |a: &SocketAddr| st.groups.get(a).copied().unwrap_or(0);
        if group(&from.0) != group(&to) {
            traffic.cut += 1;
            return Ok(());
        }
        let link = st
            .links
            .get(&(from.0, to))
            .copied()
            .unwrap_or(st.config.link);
        if link.loss > 0.0 && st.rng.random_bool(link.loss) {
            traffic.lost += 1;
            return Ok(());
        }
        let Some(port) = st.ports.get(&to) else {
            traffic.unreachable += 1;
            return Ok(());
        };
        let jitter = link.jitter.mul_f64(st.rng.random::<f64>());
        let at = Instant::now() + link.delay + jitter;
        let outcome = RecvOutcome {
            from_addr: from.0,
            envelope: env,
            num_bytes_received: bytes,
        };
        if !port
            .inbox
            .push(at, outcome, packed, st.config.inbox_capacity)
        {
            traffic.overflow += 1;
        }
        Ok(())
    }
}

/// Bytes one gossip message of `payload` bytes takes on the wire over our QUIC transport, as
/// an estimate: our frame header (version and sender address, about 12 bytes) once, then per
/// packet of up to 1 200 bytes IPv4 (20) + UDP (8) + QUIC short header (about 12) + STREAM
/// frame header (about 6) + AEAD tag (16). Acknowledgements and handshakes are not counted.
pub fn wire_estimate(payload: usize) -> u64 {
    const FRAME: usize = 12;
    const PACKET_PAYLOAD: usize = 1200;
    const PACKET_OVERHEAD: usize = 20 + 8 + 12 + 6 + 16;
    let framed = payload + FRAME;
    (framed + framed.div_ceil(PACKET_PAYLOAD) * PACKET_OVERHEAD) as u64
}

fn check_link(link: &LinkModel) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&link.loss) {
        bail!("loss must be within [0, 1], not {}", link.loss);
    }
    Ok(())
}

impl std::fmt::Debug for SimNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("SimNet")
            .field("config", &st.config)
            .field("ports", &st.ports.len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Transport for SimNet {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let packed = self.lock().config.packed;
        let codec = Codec::new(packed).await?;
        let mut st = self.lock();
        if st.ports.contains_key(&listen_addr) {
            bail!("address {listen_addr} is in use");
        }
        st.next_id += 1;
        let id = st.next_id;
        let inbox = Arc::new(Inbox::default());
        st.ports.insert(
            listen_addr,
            Port {
                id,
                inbox: inbox.clone(),
            },
        );
        Ok(Box::new(SimSocket {
            addr: listen_addr,
            id,
            net: self.clone(),
            inbox,
            codec,
            packer: packed.then(Packer::default),
            round: None,
        }))
    }
}

/// One node's socket.
struct SimSocket {
    addr: SocketAddr,
    id: u64,
    net: SimNet,
    inbox: Arc<Inbox>,
    codec: Codec,
    /// This node's bases, by peer address, when gossip is packed.
    packer: Option<Packer>,
    /// The instant of this node's last gossip round (chitchat sends a round's `Syn`s one after
    /// the other at one virtual instant) and how many of them went to open addresses.
    round: Option<(Instant, usize)>,
}

impl SimSocket {
    /// Whether to leave out a `Syn` to `to`, over the network's fanout for this round.
    fn withhold(&mut self, to: SocketAddr) -> bool {
        let Some(max) = self.net.fanout_towards(to) else {
            return false;
        };
        let now = Instant::now();
        let sent = match self.round {
            Some((at, sent)) if at == now => sent,
            _ => 0,
        };
        if sent >= max {
            return true;
        }
        self.round = Some((now, sent + 1));
        false
    }
}

#[async_trait]
impl Socket for SimSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.addr)
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        if matches!(envelope.message, ChitchatMessage::Syn { .. }) && self.withhold(to) {
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        let coded = self.codec.round_trip(envelope).await?;
        let num_bytes_sent = coded.len;
        let packed = match (&self.packer, &coded.bytes) {
            (Some(packer), Some(bytes)) => Some(packer.pack(peer_key(to), bytes)?),
            _ => None,
        };
        let len = packed.as_ref().map_or(coded.len, |p| p.bytes.len());
        self.net
            .route((self.addr, self.id), to, coded.envelope, len, packed)?;
        Ok(SendOutcome { num_bytes_sent })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let (outcome, packed) = self.inbox.pop().await;
            if let (Some(packer), Some(p)) = (&self.packer, packed) {
                let from = peer_key(outcome.from_addr);
                if packer.unpack(from, p.base, &p.bytes).is_err() {
                    self.net.count_refused(self.addr, p.roster);
                    continue;
                }
            }
            self.net
                .count_received(self.addr, outcome.num_bytes_received);
            return Ok(outcome);
        }
    }
}

/// The key of the one connection a node would hold to `addr`.
fn peer_key(addr: SocketAddr) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&addr, &mut h);
    std::hash::Hasher::finish(&h)
}

impl Drop for SimSocket {
    fn drop(&mut self) {
        self.net.release(self.addr, self.id);
    }
}
