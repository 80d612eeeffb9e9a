//! The envelope of every value a node publishes about itself: the value bound to its slot
//! (node, generation, address, key, chitchat version) and to the manifest of the node's keys
//! after the write, signed with the node's key.
//!
//! Text form (chitchat values are strings): `1s.<signature>.<manifest>.<body>` for a value,
//! `1w.<signature>.<manifest>.` for a withdrawn key (signed; chitchat tombstones cannot carry a
//! signature, so signed namespaces never use them). Signature and manifest are base64 without
//! padding, which has no dots; the body is the value as the layer above wrote it.

use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use chitchat::ChitchatId;
use ring::digest::{SHA256, digest};

/// Key of the node's certificate chain (signed by the certificate's own key).
pub const CERT_KEY: &str = "cert";
/// Key of the node's head record: its heartbeat when it last signed it.
pub const HEAD_KEY: &str = "head";
/// The most the envelope adds to a body (an ECDSA signature of at most 72 bytes and a
/// manifest, in base64, plus tag and separators).
pub const OVERHEAD: usize = 160;

const DOMAIN: &[u8] = b"murmur node state v1\0";
const SET: &str = "1s";
const WITHDRAWN: &str = "1w";

/// Where a value lives: what its signature binds it to.
#[derive(Clone, Copy, Debug)]
pub struct Slot<'a> {
    /// The incarnation whose namespace holds it.
    pub id: &'a ChitchatId,
    /// The key.
    pub key: &'a str,
    /// The chitchat version it has there.
    pub version: u64,
}

/// A parsed envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The value, or `None` for a withdrawn key.
    pub body: Option<&'a str>,
    /// SHA-256 of the node's (key, version) pairs right after this write.
    pub manifest: [u8; 32],
    /// The signature over [`signed_bytes`].
    pub signature: Vec<u8>,
}

/// Parses a gossiped value; `None` if it is not a signed envelope.
pub fn parse(value: &str) -> Option<Envelope<'_>> {
    let mut parts = value.splitn(4, '.');
    let tag = parts.next()?;
    let signature = STANDARD_NO_PAD.decode(parts.next()?).ok()?;
    let manifest = STANDARD_NO_PAD
        .decode(parts.next()?)
        .ok()?
        .try_into()
        .ok()?;
    let rest = parts.next()?;
    let body = match tag {
        SET => Some(rest),
        WITHDRAWN if rest.is_empty() => None,
        _ => return None,
    };
    Some(Envelope {
        body,
        manifest,
        signature,
    })
}

/// The body of a gossiped value, if it is a signed envelope that is not withdrawn. Values are
/// verified before chitchat stores them, so readers only unwrap.
pub fn body(value: &str) -> Option<&str> {
    parse(value)?.body
}

/// The text form of an envelope.
pub fn render(body: Option<&str>, manifest: &[u8; 32], signature: &[u8]) -> String {
    let (tag, body) = match body {
        Some(b) => (SET, b),
        None => (WITHDRAWN, ""),
    };
    format!(
        "{tag}.{}.{}.{body}",
        STANDARD_NO_PAD.encode(signature),
        STANDARD_NO_PAD.encode(manifest)
    )
}

/// The bytes a signature covers.
pub fn signed_bytes(slot: Slot<'_>, body: Option<&str>, manifest: &[u8; 32]) -> Vec<u8> {
    let fields: (&str, u64, SocketAddr, &str, u64, Option<&str>, &[u8; 32]) = (
        &slot.id.node_id,
        slot.id.generation_id,
        slot.id.gossip_advertise_addr,
        slot.key,
        slot.version,
        body,
        manifest,
    );
    let mut out = DOMAIN.to_vec();
    // Serializing plain fields into a Vec cannot fail.
    out.extend(postcard::to_stdvec(&fields).unwrap_or_default());
    out
}

/// The manifest of a node's keys: SHA-256 over its (key, version) pairs in key order.
pub fn manifest<'a>(pairs: impl IntoIterator<Item = (&'a str, u64)>) -> [u8; 32] {
    let mut bytes = Vec::new();
    for (key, version) in pairs {
        bytes.extend_from_slice(&(key.len() as u64).to_le_bytes());
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(&version.to_le_bytes());
    }
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, &bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_bodies_may_hold_dots() {
        let m = manifest([("a", 1), ("b", 2)]);
        let v = render(Some("x.y.z"), &m, &[1, 2, 3]);
        let e = parse(&v).unwrap();
        assert_eq!(e.body, Some("x.y.z"));
        assert_eq!(e.manifest, m);
        assert_eq!(e.signature, [1, 2, 3]);
        let w = render(None, &m, &[9; 70]);
        assert_eq!(parse(&w).unwrap().body, None);
        assert_eq!(body(&w), None);
        assert!(w.len() <= OVERHEAD);
        for bad in [
            "",
            "plain",
            "1s.!!.AA.x",
            "1x.AQ.AA.x",
            "1w.AQ.AQ.x",
            "1s.AQ.AQ",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_signed_bytes_bind_every_part_of_the_slot() {
        let id = ChitchatId::new("n", 1, ([10, 0, 0, 1], 7420).into());
        let m = manifest([("k", 3)]);
        let slot = Slot {
            id: &id,
            key: "k",
            version: 3,
        };
        let base = signed_bytes(slot, Some("v"), &m);
        let other_gen = ChitchatId::new("n", 2, id.gossip_advertise_addr);
        let other_addr = ChitchatId::new("n", 1, ([10, 0, 0, 2], 7420).into());
        let variants = [
            signed_bytes(Slot { version: 4, ..slot }, Some("v"), &m),
            signed_bytes(Slot { key: "j", ..slot }, Some("v"), &m),
            signed_bytes(
                Slot {
                    id: &other_gen,
                    ..slot
                },
                Some("v"),
                &m,
            ),
            signed_bytes(
                Slot {
                    id: &other_addr,
                    ..slot
                },
                Some("v"),
                &m,
            ),
            signed_bytes(slot, None, &m),
            signed_bytes(slot, Some("w"), &m),
            signed_bytes(slot, Some("v"), &manifest([("k", 4)])),
        ];
        for v in variants {
            assert_ne!(v, base);
        }
    }
}
