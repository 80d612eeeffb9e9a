//! The configuration file as written: every field optional, unknown fields refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use murmur_membership::records::{Balancer, Protocol};
use murmur_transport::identity::{Name, TrustDomain};
use serde::Deserialize;

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
    /// Admin API address.
    pub admin: Option<SocketAddr>,
    /// Outbound HTTP proxy address.
    pub outbound: Option<SocketAddr>,
    /// State directory.
    pub data_dir: Option<PathBuf>,
    /// Node labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Runtime worker threads.
    pub threads: Option<usize>,
    /// TLS files.
    pub tls: Option<RawTls>,
    /// Gossip tuning.
    pub gossip: Option<RawGossip>,
    /// Trace export.
    pub telemetry: Option<RawTelemetry>,
    /// Policy settings.
    pub policy: Option<RawPolicy>,
    /// Graceful drain.
    pub drain: Option<RawDrain>,
    /// Certificates: issuing for others, renewing, joining with a token.
    pub identity: Option<RawIdentity>,
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
