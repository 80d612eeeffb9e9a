//! The configuration file as written: every field optional, unknown fields refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use murmur_membership::records::{Balancer, Protocol};
use murmur_transport::identity::{Name, TrustDomain};
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use super::duration::HumanDuration;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Node name (a DNS label; must match the certificate).
    pub name: Option<Name>,
    /// Trust domain (defaults to the one the CA names).
    pub trust_domain: Option<TrustDomain>,
    /// UDP address for QUIC (gossip and traffic).
    pub listen: Option<SocketAddr>,
    /// Address peers reach this node at.
    pub advertise: Option<SocketAddr>,
    /// Seed addresses, `host:port`.
    pub seeds: Option<Vec<String>>,
    /// The cell this node belongs to (a DNS label; none: the default cell).
    pub cell: Option<Name>,
    /// Mesh addresses, `host:port`, of nodes in other cells: where this node's cell link
    /// starts when it becomes a custodian.
    pub cell_seeds: Option<Vec<String>>,
    /// Admin API address.
    pub admin: Option<SocketAddr>,
    /// The outbound HTTP proxy: its address, or a table (`[outbound]`).
    pub outbound: Option<RawOutbound>,
    /// State directory.
    pub data_dir: Option<PathBuf>,
    /// Node labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Threads, one single-threaded runtime each.
    pub threads: Option<usize>,
    /// TLS files.
    pub tls: Option<RawTls>,
    /// Gossip tuning.
    pub gossip: Option<RawGossip>,
    /// Trace export.
    pub telemetry: Option<RawTelemetry>,
    /// The access log.
    pub access_log: Option<RawAccessLog>,
    /// Policy settings.
    pub policy: Option<RawPolicy>,
    /// Graceful drain.
    pub drain: Option<RawDrain>,
    /// The mesh DNS.
    pub dns: Option<RawDns>,
    /// Transparent capture.
    pub capture: Option<RawCapture>,
    /// Connection and stream limits.
    pub limits: Option<RawLimits>,
    /// Certificates: issuing for others, renewing, joining with a token.
    pub identity: Option<RawIdentity>,
    /// The gateway for clients outside the mesh.
    pub gateway: Option<RawGateway>,
    /// Local services this node serves.
    #[serde(default, rename = "service")]
    pub services: Vec<RawService>,
    /// Local listeners for remote TCP services.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<RawUpstream>,
}

/// `[tls]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Trust bundle (one or more CA certificates).
    pub ca: Option<PathBuf>,
    /// Node certificate.
    pub cert: Option<PathBuf>,
    /// Node private key.
    pub key: Option<PathBuf>,
    /// How often certificate files are checked for changes.
    pub reload_interval: Option<HumanDuration>,
}

/// `[gateway]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    /// The HTTPS listener.
    pub listen: Option<SocketAddr>,
    /// A plain-HTTP listener that redirects to HTTPS.
    pub http_listen: Option<SocketAddr>,
    /// How often the certificate files are checked for changes.
    pub reload_interval: Option<HumanDuration>,
    /// Connections one client address may hold open.
    pub max_connections_per_ip: Option<usize>,
    /// Requests per second one client address may send.
    pub rate_per_ip: Option<u32>,
    /// Certificates (`[[gateway.certificate]]`).
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<RawGatewayCert>,
}

/// `[[gateway.certificate]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGatewayCert {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[identity]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// Issuer certificate (`murmur ca issuer`): this node signs certificates for others.
    pub issuer_cert: Option<PathBuf>,
    /// Issuer key.
    pub issuer_key: Option<PathBuf>,
    /// Lifetime of the certificates this node signs as an issuer.
    pub leaf_ttl: Option<HumanDuration>,
    /// Renew this node's certificate through the mesh's issuers.
    pub renew: Option<bool>,
    /// Join token file: obtain the first certificate with it.
    pub join_token: Option<PathBuf>,
}

/// `[gossip]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGossip {
    /// Nodes with different cluster ids ignore each other.
    pub cluster_id: Option<String>,
    /// Time between gossip rounds.
    pub interval: Option<HumanDuration>,
    /// Phi-accrual threshold.
    pub phi_threshold: Option<f64>,
    /// Heartbeat gaps longer than this are not learned from.
    pub max_interval: Option<HumanDuration>,
    /// How long dead members are remembered.
    pub dead_node_grace: Option<HumanDuration>,
    /// How long deleted keys are remembered.
    pub tombstone_grace: Option<HumanDuration>,
    /// How long persisted entries are served beside gossip after a restart.
    pub fail_static_warmup: Option<HumanDuration>,
}

/// `[policy]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Stamps further in the future are refused.
    pub max_skew: Option<HumanDuration>,
    /// How long deletes are kept and republished.
    pub tombstone_retention: Option<HumanDuration>,
    /// Nodes besides the origin that republish each document.
    pub custodians: Option<usize>,
}

/// `[[service]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Service name.
    pub name: Name,
    /// Address of the local instance.
    pub address: SocketAddr,
    /// `http`, `grpc` or `tcp`.
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Labels (version, zone, ...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Load-balancing weight.
    #[serde(default)]
    pub weight: Option<u32>,
    /// How callers balance over the instances: `p2c-ewma`, `round-robin` or `least-request`.
    #[serde(default)]
    pub balancer: Option<Balancer>,
    /// Active health check of the local instance.
    #[serde(default)]
    pub health: Option<RawHealth>,
}

/// `[service.health]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// `http` (GET `path`) or `tcp` (connect).
    pub check: Option<RawCheckKind>,
    /// Path of the HTTP check.
    pub path: Option<String>,
    /// Accepted statuses, `"200-399"`.
    pub expect: Option<String>,
    /// Time between checks.
    pub interval: Option<HumanDuration>,
    /// Time allowed for one check.
    pub timeout: Option<HumanDuration>,
    /// Passes that make a failing instance healthy again.
    pub healthy_threshold: Option<u32>,
    /// Failures that make a healthy instance critical.
    pub unhealthy_threshold: Option<u32>,
}

/// Kind of health check.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawCheckKind {
    /// HTTP GET.
    Http,
    /// TCP connect.
    Tcp,
}

/// `[limits]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// How long a request waits for a peer to allow one more stream.
    pub stream_wait: Option<HumanDuration>,
    /// Streams a peer may have open to this node at once.
    pub streams_per_peer: Option<u32>,
    /// Largest UDP payload of a QUIC packet (MTU discovery searches up to it).
    pub max_udp_payload: Option<u32>,
    /// Kernel buffer of the mesh UDP socket, each way, bytes.
    pub udp_buffer: Option<u32>,
    /// The outbound HTTP listener.
    pub outbound: Option<RawListenerLimits>,
    /// Each `[[upstream]]` listener.
    pub upstream: Option<RawListenerLimits>,
    /// The listeners of captured connections.
    pub captured: Option<RawListenerLimits>,
    /// The admin API listener.
    pub admin: Option<RawListenerLimits>,
    /// The gateway's listeners.
    pub gateway: Option<RawListenerLimits>,
}

/// `[limits.outbound]`, `[limits.upstream]`, `[limits.admin]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerLimits {
    /// Connections open at once.
    pub max_connections: Option<usize>,
    /// Time for a connection's first byte.
    pub first_byte_timeout: Option<HumanDuration>,
    /// Idle time after which a connection is closed.
    pub idle_timeout: Option<HumanDuration>,
}

/// `[[upstream]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// Remote service.
    pub service: Name,
    /// Local TCP address to listen on.
    pub listen: SocketAddr,
}

/// `[telemetry]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// OTLP collector endpoint.
    pub endpoint: Option<String>,
    /// `grpc` or `http`.
    pub protocol: Option<RawOtlpProtocol>,
    /// Share of new traces recorded, 0.0 to 1.0.
    pub sampling_ratio: Option<f64>,
    /// `service.name` of the node's spans.
    pub service_name: Option<String>,
    /// Time allowed for one export.
    pub export_timeout: Option<HumanDuration>,
}

/// `[access_log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    /// `"stderr"` or a file path.
    pub output: Option<String>,
    /// Services logged without a document; `"*"` for every one.
    pub services: Option<Vec<String>>,
    /// Lines waiting for the writer at most.
    pub queue: Option<usize>,
}

/// OTLP transport as written in the file.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawOtlpProtocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP (protobuf).
    Http,
}

/// `[drain]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrain {
    /// Longest a drain may take.
    pub timeout: Option<HumanDuration>,
    /// Inbound silence that ends the wait for peers.
    pub quiet: Option<HumanDuration>,
    /// Shortest wait after announcing.
    pub min_wait: Option<HumanDuration>,
}

/// `outbound`: an address (`outbound = "127.0.0.1:7421"`) or a table (`[outbound]`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RawOutbound {
    /// Address of the outbound proxy.
    pub listen: Option<SocketAddr>,
    /// CONNECT and absolute-form requests to hosts outside the mesh.
    pub external: Option<RawExternal>,
}

/// The table form of [`RawOutbound`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutboundTable {
    listen: Option<SocketAddr>,
    external: Option<RawExternal>,
}

impl<'de> Deserialize<'de> for RawOutbound {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawOutbound;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "an address such as \"127.0.0.1:7421\", or a table with `listen` and \
                     `external`",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawOutbound, E> {
                let listen = s.parse().map_err(|_| {
                    E::custom(format!(
                        "{s:?} is not an address such as \"127.0.0.1:7421\""
                    ))
                })?;
                Ok(RawOutbound {
                    listen: Some(listen),
                    external: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawOutbound, A::Error> {
                let t = RawOutboundTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawOutbound {
                    listen: t.listen,
                    external: t.external,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `[outbound] external`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawExternal {
    /// Pass through directly.
    Allow,
    /// Refuse with 403.
    Deny,
}

/// `[dns]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// Answer DNS (default: true when the table is present).
    pub enabled: Option<bool>,
    /// UDP and TCP address.
    pub listen: Option<SocketAddr>,
    /// `<service>.<suffix>`.
    pub suffix: Option<String>,
    /// Also answer a bare `<service>`.
    pub bare_names: Option<bool>,
    /// Resolvers for other names, `ip:port`.
    pub upstreams: Option<Vec<SocketAddr>>,
    /// The file whose nameservers are the upstreams when none are given.
    pub resolv_conf: Option<PathBuf>,
    /// IPv4 range of the virtual IPs.
    pub vip_range: Option<String>,
    /// IPv6 range of the virtual IPs ("" for none).
    pub vip_range6: Option<String>,
}

/// `[capture]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapture {
    /// Capture (default: true when the table is present).
    pub enabled: Option<bool>,
    /// The port redirected connections arrive at.
    pub port: Option<u16>,
    /// Firewall mark of the node's own sockets.
    pub mark: Option<u32>,
    /// Users whose processes are not captured.
    pub exempt_uids: Option<Vec<u32>>,
    /// The nftables table.
    pub table: Option<String>,
}
