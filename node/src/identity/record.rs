//! What every node gossips about its identity (`x/identity`): its certificate's serial and
//! validity, whether it is an issuer (and until when), and how its renewals go. Any node can then
//! find the issuers, and warn about every certificate of the mesh near expiry or failing to
//! renew.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use murmur_membership::records::{self, RECORD_VERSION};
use murmur_membership::view::EXTENSION_PREFIX;
use murmur_membership::{ClusterView, GossipKeys};
use murmur_transport::identity::Name;
use murmur_transport::tls::TlsState;
use serde::{Deserialize, Serialize};

use super::issuer::Issuer;
use super::status::{RenewStatus, RenewalState};

/// Key (without the extension prefix) of the identity record.
pub const IDENTITY_EXTENSION: &str = "identity";
/// How often the record is checked for changes.
const EVERY: Duration = Duration::from_secs(1);

/// A node's gossiped identity record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRecord {
    /// Record version.
    pub version: u16,
    /// Serial of its certificate (hex).
    pub serial: String,
    /// Start of its validity, ms since the epoch.
    pub not_before_ms: u64,
    /// End of its validity, ms since the epoch.
    pub not_after_ms: u64,
    /// When it holds a valid issuer credential: until when.
    pub issuer_until_ms: Option<u64>,
    /// How its renewals go.
    pub renewal: RenewalState,
}

/// The record of this node now.
pub fn record_of(tls: &TlsState, issuer: Option<&Issuer>, renew: &RenewStatus) -> IdentityRecord {
    let cert = tls.local_cert();
    let issuer_until_ms = issuer
        .filter(|i| i.is_valid())
        .map(|i| ms(i.authority().not_after()));
    IdentityRecord {
        version: RECORD_VERSION,
        serial: cert.serial,
        not_before_ms: ms(cert.not_before),
        not_after_ms: ms(cert.not_after),
        issuer_until_ms,
        renewal: renew.snapshot().state,
    }
}

/// Republishes this node's record whenever it changes, until the task is dropped.
pub async fn publish_loop(
    tls: Arc<TlsState>,
    issuer: Option<Arc<Issuer>>,
    renew: Arc<RenewStatus>,
    keys: GossipKeys,
) {
    let key = format!("{EXTENSION_PREFIX}{IDENTITY_EXTENSION}");
    let mut last: Option<IdentityRecord> = None;
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let record = record_of(&tls, issuer.as_deref(), &renew);
        if last.as_ref() == Some(&record) {
            continue;
        }
        if let Ok(value) = records::encode(&record) {
            keys.set(&key, &value).await;
            last = Some(record);
        }
    }
}

/// Another node's record, if it published a valid one.
pub fn decode(value: &str) -> Option<IdentityRecord> {
    records::decode(value).ok()
}

/// Members other than `me` whose record says they hold a valid issuer credential now, with
/// their mesh addresses.
pub fn issuers_in(view: &ClusterView, me: &Name) -> Vec<(Name, SocketAddr)> {
    let now_ms = crate::clock::unix_now_ms();
    view.members
        .values()
        .filter(|m| m.name != me.as_str())
        .filter(|m| {
            m.extensions
                .get(IDENTITY_EXTENSION)
                .and_then(|v| decode(v))
                .and_then(|r| r.issuer_until_ms)
                .is_some_and(|until| until > now_ms)
        })
        .filter_map(|m| Some((Name::parse("node name", &m.name).ok()?, m.mesh_addr)))
        .collect()
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
