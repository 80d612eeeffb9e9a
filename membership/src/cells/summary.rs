//! The summary a cell publishes of itself, and its keys.
//!
//! A summary is split so that every value stays under `records::MAX_BODY_BYTES` and a health change
//! re-sends one small value, not the whole cell:
//! - `cell/<cell>/h` — [`Header`]: members, custodians (with their top-layer addresses, so
//!   custodians of other cells can seed from them), policy digest, the exported services;
//! - `cell/<cell>/s/<service>` — [`Shard`]: the instances of one service;
//! - `cell/<cell>/t` — [`Beacon`]: renewed every few seconds, so readers can tell a summary
//!   that is merely unchanged from one nobody renews any more (stale).
//!
//! Every value is versioned postcard in base64 ([`records::encode`]), checked for size,
//! version, names and counts when decoded: a summary comes from another cell, which this
//! node cannot check the membership of.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use murmur_transport::identity::Name;
use serde::{Deserialize, Serialize};

use crate::records::{self, Balancer, CELL_PREFIX, Health, Protocol, RECORD_VERSION, RecordError};

/// Services one cell may export (more are left out of its header, in name order).
pub const MAX_SERVICES_PER_CELL: usize = 256;
/// Instances of one service one cell may export (more are left out, in node order).
pub const MAX_ENDPOINTS_PER_SERVICE: usize = 128;
/// Custodians a header may name.
pub const MAX_CUSTODIANS: usize = 4;
/// Labels one instance may carry in a summary.
pub const MAX_LABELS: usize = 16;
/// Longest cell name.
pub const MAX_CELL_NAME: usize = 63;
/// Longest service, node, label key or label value in a summary.
pub const MAX_NAME: usize = 128;

/// Why a summary value was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SummaryError {
    /// The value does not decode (size, base64, version, postcard).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A name that is empty, too long or holds characters a key cannot, or a node name no
    /// certificate could hold.
    #[error("invalid name {0:?}")]
    Name(String),
    /// More entries than the bound.
    #[error("{what}: {count} entries, at most {max}")]
    Count {
        /// Which list.
        what: &'static str,
        /// How many it has.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// The value does not belong where it was found (another cell or service than its key).
    #[error("value does not match its key")]
    Mismatch,
}

/// A custodian as a header names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Custodian {
    /// Node name.
    pub name: String,
    /// Where its top-layer gossip listens.
    pub top_addr: SocketAddr,
}

/// What a cell says of itself (key `cell/<cell>/h`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// [`RECORD_VERSION`].
    pub version: u16,
    /// The cell.
    pub cell: String,
    /// When the content last changed (publisher's clock, ms since the epoch): the newest
    /// header of a cell wins when several custodians publish it.
    pub stamp_ms: u64,
    /// Alive or draining members.
    pub members: u32,
    /// The cell's custodians, best ranked first.
    pub custodians: Vec<Custodian>,
    /// Digest of the policy documents the cell holds (zero when none is published).
    pub policy_digest: [u8; 32],
    /// The exported services, sorted: their shards are read, others ignored.
    pub services: Vec<String>,
}

/// The instances of one service in one cell (key `cell/<cell>/s/<service>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// [`RECORD_VERSION`].
    pub version: u16,
    /// The cell.
    pub cell: String,
    /// The service.
    pub service: String,
    /// Its instances, by node name.
    pub instances: Vec<Instance>,
}

/// One instance of a service, as another cell needs it to route there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The serving node (its certificate must name it: dials check it).
    pub node: String,
    /// Its QUIC address.
    pub mesh_addr: SocketAddr,
    /// Protocol.
    pub protocol: Protocol,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Load-balancing weight.
    pub weight: u32,
    /// Health.
    pub health: Health,
    /// Balancer the instance asks for.
    pub balancer: Balancer,
    /// The node is draining.
    pub draining: bool,
}

/// Proof that someone still renews a cell's summary (key `cell/<cell>/t`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beacon {
    /// [`RECORD_VERSION`].
    pub version: u16,
    /// The cell.
    pub cell: String,
    /// When it was renewed (publisher's clock, ms since the epoch).
    pub stamp_ms: u64,
}

/// What a `cell/...` key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellKey<'a> {
    /// The header of a cell.
    Header(&'a str),
    /// The beacon of a cell.
    Beacon(&'a str),
    /// The shard of (cell, service).
    Shard(&'a str, &'a str),
}

/// The key of `cell`'s header.
pub fn header_key(cell: &str) -> String {
    format!("{CELL_PREFIX}{cell}/h")
}

/// The key of `cell`'s beacon.
pub fn beacon_key(cell: &str) -> String {
    format!("{CELL_PREFIX}{cell}/t")
}

/// The key of the shard of `service` in `cell`.
pub fn shard_key(cell: &str, service: &str) -> String {
    format!("{CELL_PREFIX}{cell}/s/{service}")
}

/// Parses a gossip key; `None` for anything that is not a well-formed cell key.
pub fn parse_key(key: &str) -> Option<CellKey<'_>> {
    let rest = key.strip_prefix(CELL_PREFIX)?;
    let (cell, what) = rest.split_once('/')?;
    if !valid_cell(cell) {
        return None;
    }
    match what {
        "h" => Some(CellKey::Header(cell)),
        "t" => Some(CellKey::Beacon(cell)),
        _ => {
            let service = what.strip_prefix("s/")?;
            valid_name(service).then_some(CellKey::Shard(cell, service))
        }
    }
}

/// Whether `cell` may name a cell: 1 to [`MAX_CELL_NAME`] bytes of ASCII letters, digits,
/// `-`, `_` and `.`.
pub fn valid_cell(cell: &str) -> bool {
    !cell.is_empty()
        && cell.len() <= MAX_CELL_NAME
        && cell
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `name` may name a service or label in a summary: 1 to [`MAX_NAME`] bytes, printable,
/// no `/` (it would change what a key means). A node's name must be a node name
/// ([`Name`]), which is stricter.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.chars().all(|c| !c.is_control() && c != '/')
}

fn name(n: &str) -> Result<(), SummaryError> {
    if valid_name(n) {
        Ok(())
    } else {
        Err(SummaryError::Name(n.chars().take(MAX_NAME).collect()))
    }
}

fn count(what: &'static str, count: usize, max: usize) -> Result<(), SummaryError> {
    if count > max {
        return Err(SummaryError::Count { what, count, max });
    }
    Ok(())
}

impl Header {
    /// Checks every bound and name.
    pub fn check(&self) -> Result<(), SummaryError> {
        if !valid_cell(&self.cell) {
            return Err(SummaryError::Name(self.cell.clone()));
        }
        count("custodians", self.custodians.len(), MAX_CUSTODIANS)?;
        count("services", self.services.len(), MAX_SERVICES_PER_CELL)?;
        for c in &self.custodians {
            name(&c.name)?;
        }
        for s in &self.services {
            name(s)?;
        }
        if !self.services.windows(2).all(|w| w[0] < w[1]) {
            return Err(SummaryError::Mismatch);
        }
        Ok(())
    }
}

impl Shard {
    /// Checks every bound and name.
    pub fn check(&self) -> Result<(), SummaryError> {
        if !valid_cell(&self.cell) {
            return Err(SummaryError::Name(self.cell.clone()));
        }
        name(&self.service)?;
        count("instances", self.instances.len(), MAX_ENDPOINTS_PER_SERVICE)?;
        for i in &self.instances {
            // Dials check the node's certificate, which holds only valid node names: an
            // instance on a node named otherwise could never be reached.
            if Name::parse("node name", &i.node).is_err() {
                return Err(SummaryError::Name(i.node.chars().take(MAX_NAME).collect()));
            }
            count("labels", i.labels.len(), MAX_LABELS)?;
            for (k, v) in &i.labels {
                name(k)?;
                if v.len() > MAX_NAME {
                    return Err(SummaryError::Name(k.clone()));
                }
            }
        }
        Ok(())
    }
}

/// Decodes and checks the header found under the key of `cell`.
pub fn decode_header(cell: &str, value: &str) -> Result<Header, SummaryError> {
    let h: Header = records::decode(value)?;
    h.check()?;
    if h.cell != cell {
        return Err(SummaryError::Mismatch);
    }
    Ok(h)
}

/// Decodes and checks the shard found under the key of (`cell`, `service`).
pub fn decode_shard(cell: &str, service: &str, value: &str) -> Result<Shard, SummaryError> {
    let s: Shard = records::decode(value)?;
    s.check()?;
    if s.cell != cell || s.service != service {
        return Err(SummaryError::Mismatch);
    }
    Ok(s)
}

/// Decodes and checks the beacon found under the key of `cell`.
pub fn decode_beacon(cell: &str, value: &str) -> Result<Beacon, SummaryError> {
    let b: Beacon = records::decode(value)?;
    if b.cell != cell {
        return Err(SummaryError::Mismatch);
    }
    Ok(b)
}

/// Encodes a header, leaving out the last services until it fits one value.
pub fn encode_header(h: &Header) -> Result<String, SummaryError> {
    let mut h = h.clone();
    h.services.truncate(MAX_SERVICES_PER_CELL);
    loop {
        match records::encode(&h) {
            Err(RecordError::TooLarge(_)) if !h.services.is_empty() => {
                h.services.pop();
            }
            other => return Ok(other?),
        }
    }
}

/// Encodes a shard, leaving out the last instances until it fits one value.
pub fn encode_shard(s: &Shard) -> Result<String, SummaryError> {
    let mut s = s.clone();
    s.instances.truncate(MAX_ENDPOINTS_PER_SERVICE);
    loop {
        match records::encode(&s) {
            Err(RecordError::TooLarge(_)) if !s.instances.is_empty() => {
                s.instances.pop();
            }
            other => return Ok(other?),
        }
    }
}

/// Encodes a beacon.
pub fn encode_beacon(cell: &str, stamp_ms: u64) -> Result<String, SummaryError> {
    Ok(records::encode(&Beacon {
        version: RECORD_VERSION,
        cell: cell.to_owned(),
        stamp_ms,
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{MAX_BODY_BYTES, MAX_VALUE_BYTES};

    fn instance(node: String, i: u8) -> Instance {
        Instance {
            node,
            mesh_addr: SocketAddr::from(([10, 0, i / 200, i % 200 + 1], 7420)),
            protocol: Protocol::Http,
            labels: BTreeMap::from([("version".to_owned(), "v1".to_owned())]),
            weight: 1,
            health: Health::Passing,
            balancer: Balancer::P2cEwma,
            draining: false,
        }
    }

    #[test]
    fn keys_parse_back_and_foreign_or_malformed_keys_do_not() {
        assert_eq!(
            parse_key(&header_key("east")),
            Some(CellKey::Header("east"))
        );
        assert_eq!(
            parse_key(&beacon_key("east")),
            Some(CellKey::Beacon("east"))
        );
        assert_eq!(
            parse_key(&shard_key("east", "web")),
            Some(CellKey::Shard("east", "web"))
        );
        for bad in [
            "cell/east",
            "cell//h",
            "cell/east/x",
            "cell/east/s/",
            "cell/east/s/a/b",
            "cell/e st/h",
            "svc/web/a",
            &format!("cell/{}/h", "c".repeat(MAX_CELL_NAME + 1)),
        ] {
            assert_eq!(parse_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_cell_of_200_nodes_and_50_services_fits_in_values_under_the_limit() {
        // 400 instances (two per node), node names of 10 characters, one label.
        let mut total = 0;
        let mut services = Vec::new();
        for s in 0..50u8 {
            let service = format!("service-{s:02}");
            let instances = (0..8u8)
                .map(|i| {
                    let n = s * 4 + i / 2;
                    instance(format!("node-{n:05}"), n)
                })
                .collect();
            let shard = Shard {
                version: RECORD_VERSION,
                cell: "cell-01".into(),
                service: service.clone(),
                instances,
            };
            let v = encode_shard(&shard).unwrap();
            assert!(v.len() <= MAX_BODY_BYTES);
            assert_eq!(decode_shard("cell-01", &service, &v).unwrap(), shard);
            total += v.len();
            services.push(service);
        }
        let header = Header {
            version: RECORD_VERSION,
            cell: "cell-01".into(),
            stamp_ms: 1_700_000_000_000,
            members: 200,
            custodians: vec![Custodian {
                name: "node-00001".into(),
                top_addr: "10.0.0.2:7420".parse().unwrap(),
            }],
            policy_digest: [7; 32],
            services,
        };
        let h = encode_header(&header).unwrap();
        assert_eq!(decode_header("cell-01", &h).unwrap(), header);
        total += h.len();
        // About 21 KB in base64 was estimated; the signed envelope adds at most 160 B a value.
        assert!(total < 24 * 1024, "{total}");
        assert!(
            total + 51 * crate::trust::signed::OVERHEAD < 32 * 1024,
            "{total}"
        );
    }

    #[test]
    fn oversized_lists_are_cut_to_fit_and_refused_when_decoded() {
        let instances: Vec<Instance> = (0..200u8)
            .map(|i| instance(format!("{}-{i}", "n".repeat(58)), i))
            .collect();
        let shard = Shard {
            version: RECORD_VERSION,
            cell: "c".into(),
            service: "web".into(),
            instances,
        };
        let v = encode_shard(&shard).unwrap();
        assert!(v.len() <= MAX_BODY_BYTES);
        let back = decode_shard("c", "web", &v).unwrap();
        // Cut by size, not only by count: the names are long enough that fewer fit.
        assert!(!back.instances.is_empty() && back.instances.len() < MAX_ENDPOINTS_PER_SERVICE);
        assert_eq!(back.instances[..], shard.instances[..back.instances.len()]);
        // Someone else's encoder may not cut: too many instances are refused.
        let many = Shard {
            instances: (0..=MAX_ENDPOINTS_PER_SERVICE)
                .map(|i| instance(format!("n{i}"), 1))
                .collect(),
            ..shard
        };
        let raw = records::encode(&many).unwrap();
        assert!(matches!(
            decode_shard("c", "web", &raw),
            Err(SummaryError::Count { .. })
        ));
        assert!(raw.len() <= MAX_VALUE_BYTES);
    }

    #[test]
    fn values_under_another_key_bad_names_and_other_versions_are_refused() {
        let shard = Shard {
            version: RECORD_VERSION,
            cell: "c".into(),
            service: "web".into(),
            instances: vec![instance("n1".into(), 1)],
        };
        let v = encode_shard(&shard).unwrap();
        assert!(matches!(
            decode_shard("d", "web", &v),
            Err(SummaryError::Mismatch)
        ));
        assert!(matches!(
            decode_shard("c", "api", &v),
            Err(SummaryError::Mismatch)
        ));
        let slash = Shard {
            instances: vec![instance("a/b".into(), 1)],
            ..shard.clone()
        };
        assert!(matches!(
            decode_shard("c", "web", &records::encode(&slash).unwrap()),
            Err(SummaryError::Name(_))
        ));
        // A name a key could hold but no certificate could: no dial would ever reach it.
        let upper = Shard {
            instances: vec![instance("Node-1".into(), 1)],
            ..shard.clone()
        };
        assert!(matches!(
            decode_shard("c", "web", &records::encode(&upper).unwrap()),
            Err(SummaryError::Name(n)) if n == "Node-1"
        ));
        let future = Shard {
            version: 2,
            ..shard
        };
        assert!(matches!(
            decode_shard("c", "web", &records::encode(&future).unwrap()),
            Err(SummaryError::Record(RecordError::Version(2)))
        ));
        let header = Header {
            version: RECORD_VERSION,
            cell: "c".into(),
            stamp_ms: 1,
            members: 1,
            custodians: vec![],
            policy_digest: [0; 32],
            services: vec!["b".into(), "a".into()],
        };
        let unsorted = records::encode(&header).unwrap();
        assert!(decode_header("c", &unsorted).is_err());
        assert!(decode_header("c", "%%").is_err());
        assert!(decode_beacon("c", &encode_beacon("d", 5).unwrap()).is_err());
        assert_eq!(
            decode_beacon("c", &encode_beacon("c", 5).unwrap())
                .unwrap()
                .stamp_ms,
            5
        );
    }
}
