//! Cell summaries as the top layer carries them, in the harness's own stand-in format.
//!
//! One value per exported service (a shard: the service's endpoints, postcard then base64 with
//! the records codec, as B3 of the design proposes) and one head per cell (member count, shard
//! count). Every value starts with `<stamp_ms> <signer> `: the publisher's clock when it wrote
//! it and its node name, so that receivers keep the newest copy and can tell a fresh summary
//! from a stale one. Keys: `cell/<cell>/head`, `cell/<cell>/svc/<service>`, and `pol/<id>` for
//! policy documents carried mesh-wide.

use std::collections::BTreeMap;

use murmur_membership::Endpoint;
use murmur_membership::records::{self, Balancer};

use crate::cluster::{host_addr, host_name, service, service_of};

/// Prefix of every cell summary key.
pub const CELL_PREFIX: &str = "cell/";
/// Prefix of policy documents carried between cells.
pub const POLICY_PREFIX: &str = "pol/";

/// Name of cell `c`.
pub fn cell_name(c: usize) -> String {
    format!("c{c:03}")
}

/// Key of cell `c`'s head.
pub fn head_key(c: usize) -> String {
    format!("{CELL_PREFIX}{}/head", cell_name(c))
}

/// Key of cell `c`'s shard for `service`.
pub fn shard_key(c: usize, service: &str) -> String {
    format!("{CELL_PREFIX}{}/svc/{service}", cell_name(c))
}

/// The cell a summary key belongs to, by name.
pub fn cell_of_key(key: &str) -> Option<&str> {
    key.strip_prefix(CELL_PREFIX)?.split('/').next()
}

/// A stamped value: `<stamp_ms> <signer> <body>`.
pub fn stamped(stamp_ms: u64, signer: &str, body: &str) -> String {
    format!("{stamp_ms} {signer} {body}")
}

/// The stamp and signer of a stamped value.
pub fn stamp_of(value: &str) -> Option<(u64, &str)> {
    let mut parts = value.splitn(3, ' ');
    let stamp = parts.next()?.parse().ok()?;
    Some((stamp, parts.next()?))
}

/// A head body.
pub fn head_body(members: usize, shards: usize) -> String {
    format!("members={members} shards={shards}")
}

/// A shard body: the endpoints, encoded.
pub fn shard_body(endpoints: &[Endpoint]) -> String {
    records::encode(&endpoints.to_vec()).unwrap_or_default()
}

/// Exported endpoints of a cell of `size` hosts starting at host `first`, all serving, as
/// the full cells' nodes publish them (node `i` serves `service_of(i)`).
pub fn synthetic(first: usize, size: usize) -> BTreeMap<String, Vec<Endpoint>> {
    let record = service();
    let mut services: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
    for i in 0..size {
        let name = service_of(i);
        services.entry(name.clone()).or_default().push(Endpoint {
            service: name,
            node: host_name(first + i),
            mesh_addr: host_addr(first + i),
            protocol: record.protocol,
            labels: record.labels.clone(),
            weight: record.weight,
            health: record.health,
            balancer: Balancer::default(),
            draining: false,
            stale: false,
        });
    }
    services
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_and_keys_round_trip() {
        let v = stamped(1234, "node-00007", "members=200 shards=20");
        assert_eq!(stamp_of(&v), Some((1234, "node-00007")));
        assert_eq!(stamp_of("x"), None);
        assert_eq!(cell_of_key(&shard_key(3, "svc-01")), Some("c003"));
        assert_eq!(cell_of_key("pol/x"), None);
    }

    #[test]
    fn a_synthetic_cell_has_every_host_once() {
        let s = synthetic(400, 200);
        assert_eq!(s.values().map(Vec::len).sum::<usize>(), 200);
        let shard = shard_body(&s["svc-00"]);
        // Ten endpoints, about 40 bytes each before base64.
        assert!((300..1000).contains(&shard.len()), "{}", shard.len());
    }
}
