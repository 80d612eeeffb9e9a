//! The values a node publishes about itself, and how they are encoded in gossip.
//!
//! chitchat values are strings; ours are versioned postcard, base64-encoded. Each record starts
//! with its version so that a reader can refuse a newer format instead of misreading it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde::{Deserialize, Serialize};

/// Version of the records below.
pub const RECORD_VERSION: u16 = 1;
/// Largest encoded value we publish or accept: chitchat silently stalls a node's replication on
/// a value that does not fit one message, so values stay far below it.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;
/// Largest record: what is left of [`MAX_VALUE_BYTES`] once the signed envelope is around it.
pub const MAX_BODY_BYTES: usize = MAX_VALUE_BYTES - crate::trust::signed::OVERHEAD;

/// Key of the node record.
pub const NODE_KEY: &str = "node";
/// Prefix of service-instance keys: `svc/<service>/<node>`.
pub const SERVICE_PREFIX: &str = "svc/";
/// Prefix of cell-summary keys (`crate::cells`): `cell/<cell>/...`.
pub const CELL_PREFIX: &str = "cell/";

/// Whether a node takes new traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Taking traffic.
    Serving,
    /// Finishing what it has; peers should stop choosing it.
    Draining,
    /// Gone by its own decision: not a failure.
    Left,
}

/// What a node says about itself (key [`NODE_KEY`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// [`RECORD_VERSION`].
    pub version: u16,
    /// Node name (equal to its certificate's).
    pub name: String,
    /// Advertised QUIC address.
    pub mesh_addr: SocketAddr,
    /// Admin API address, if it listens on a reachable address.
    pub admin_addr: Option<SocketAddr>,
    /// Free-form labels (zone, version, ...).
    pub labels: BTreeMap<String, String>,
    /// Serving, draining or left.
    pub status: NodeStatus,
}

/// Application protocol of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 or HTTP/2.
    Http,
    /// gRPC (HTTP/2).
    Grpc,
    /// Raw TCP.
    Tcp,
}

/// Health of a service instance, from its node's checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Checks pass (or no check configured).
    Passing,
    /// Degraded but serving.
    Warning,
    /// Failing: gets no new traffic.
    Critical,
}

/// How callers spread requests over the instances of a service. Each instance publishes the
/// choice of its node's configuration, so every caller uses the service owner's choice.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Balancer {
    /// Power of two choices over peak-EWMA latency, penalised by pending requests.
    #[default]
    P2cEwma,
    /// Each instance in turn.
    RoundRobin,
    /// The instance with the fewest requests in flight (ties: random).
    LeastRequest,
}

/// One instance of a service, served by the publishing node (key `svc/<service>/<node>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// [`RECORD_VERSION`].
    pub version: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Labels used for subsets (version, zone, ...).
    pub labels: BTreeMap<String, String>,
    /// Relative weight for load balancing.
    pub weight: u32,
    /// Current health.
    pub health: Health,
    /// How callers balance requests over the service's instances.
    pub balancer: Balancer,
}

/// Why a gossiped value was ignored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Larger than [`MAX_BODY_BYTES`] (writing) or [`MAX_VALUE_BYTES`] (reading).
    #[error("value of {0} bytes is over the limit")]
    TooLarge(usize),
    /// Not base64.
    #[error("value is not base64")]
    Base64,
    /// Another version.
    #[error("record version {0} is not supported")]
    Version(u16),
    /// Does not decode.
    #[error("malformed record: {0}")]
    Decode(postcard::Error),
}

/// Encodes a record as a gossip value.
pub fn encode<T: Serialize>(record: &T) -> Result<String, RecordError> {
    let bytes = postcard::to_stdvec(record).map_err(RecordError::Decode)?;
    let value = STANDARD_NO_PAD.encode(bytes);
    if value.len() > MAX_BODY_BYTES {
        return Err(RecordError::TooLarge(value.len()));
    }
    Ok(value)
}

#[derive(Deserialize)]
struct VersionPrefix {
    version: u16,
}

/// Decodes a gossip value, bounding its size first and refusing other versions.
pub fn decode<T: serde::de::DeserializeOwned>(value: &str) -> Result<T, RecordError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(RecordError::TooLarge(value.len()));
    }
    let bytes = STANDARD_NO_PAD
        .decode(value)
        .map_err(|_| RecordError::Base64)?;
    let (prefix, _) =
        postcard::take_from_bytes::<VersionPrefix>(&bytes).map_err(RecordError::Decode)?;
    if prefix.version != RECORD_VERSION {
        return Err(RecordError::Version(prefix.version));
    }
    postcard::from_bytes(&bytes).map_err(RecordError::Decode)
}

/// The key of `node`'s instance of `service`.
pub fn service_key(service: &str, node: &str) -> String {
    format!("{SERVICE_PREFIX}{service}/{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_values_are_refused() {
        let rec = ServiceRecord {
            version: RECORD_VERSION,
            protocol: Protocol::Grpc,
            labels: [("version".to_string(), "v2".to_string())].into(),
            weight: 3,
            health: Health::Warning,
            balancer: Balancer::LeastRequest,
        };
        let v = encode(&rec).unwrap();
        assert_eq!(decode::<ServiceRecord>(&v).unwrap(), rec);
        assert!(matches!(
            decode::<ServiceRecord>("!!"),
            Err(RecordError::Base64)
        ));
        assert!(matches!(
            decode::<ServiceRecord>(&"A".repeat(MAX_VALUE_BYTES + 1)),
            Err(RecordError::TooLarge(_))
        ));
        let future = ServiceRecord { version: 2, ..rec };
        assert!(matches!(
            decode::<ServiceRecord>(&encode(&future).unwrap()),
            Err(RecordError::Version(2))
        ));
    }
}
