//! Murmuration's secure substrate.
//!
//! This crate owns everything a node needs to prove who it is and to talk to other nodes:
//! SPIFFE identities ([`identity`]), certificate issuance and parsing ([`certs`]), mutual TLS
//! with one crypto provider, *ring* ([`tls`]), the QUIC endpoint with its per-peer connection
//! cache and typed stream headers ([`endpoint`], [`wire`]), operator signatures ([`signing`]),
//! issuance of certificates by issuer nodes ([`issuance`]: issuer credentials, join tokens, the
//! request protocol), and the chitchat transport that carries gossip over QUIC instead of plain
//! UDP ([`gossip`]).
//!
//! It knows nothing of services, policy or HTTP.

pub mod certs;
pub mod endpoint;
pub mod gossip;
pub mod identity;
pub mod issuance;
pub mod node_key;
pub mod shard;
pub mod signing;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod tls;
pub mod wire;
