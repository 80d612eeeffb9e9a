//! Revoked certificates: node names (every certificate of the node) and serial numbers (one
//! certificate). The node fills this from signed revocation documents; every handshake checks
//! it after the chain, so a revoked peer can neither connect nor be connected to.

use std::collections::BTreeSet;

use rustls_pki_types::CertificateDer;

use crate::certs::{CertInfo, serial_of};
use crate::identity::{Name, PeerIdentity, Role};

/// The revocations in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revocations {
    nodes: BTreeSet<Name>,
    serials: BTreeSet<String>,
}

impl Revocations {
    /// Revokes every certificate of `nodes`, and the certificates with `serials` (hex, any case,
    /// with or without colons).
    pub fn new(
        nodes: impl IntoIterator<Item = Name>,
        serials: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            nodes: nodes.into_iter().collect(),
            serials: serials.into_iter().map(|s| normalize_serial(&s)).collect(),
        }
    }

    /// What is revoked, for people: `node web-1`, `serial 4a0b`.
    pub fn describe(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("node {n}"))
            .chain(self.serials.iter().map(|s| format!("serial {s}")))
            .collect()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.serials.is_empty()
    }

    /// Whether node `name` is revoked (all its certificates).
    pub fn node_revoked(&self, name: &Name) -> bool {
        self.nodes.contains(name)
    }

    /// Whether the certificate with this serial is revoked.
    pub fn serial_revoked(&self, serial: &str) -> bool {
        self.serials.contains(&normalize_serial(serial))
    }

    /// Why a certificate is refused, if it is.
    pub fn reason(&self, role: Role, name: &Name, serial: &str) -> Option<String> {
        if role == Role::Node && self.node_revoked(name) {
            Some(format!("node {name} is revoked"))
        } else if self.serial_revoked(serial) {
            Some(format!(
                "certificate serial {} is revoked",
                normalize_serial(serial)
            ))
        } else {
            None
        }
    }

    /// Why a verified chain is refused: its leaf, or an issuer certificate in it, is revoked.
    pub fn of_chain(&self, info: &CertInfo, issuers: &[CertificateDer<'_>]) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let serials: Vec<String> = issuers.iter().filter_map(|c| serial_of(c)).collect();
        self.reason(info.id.role, &info.id.name, &info.serial)
            .or_else(|| self.issuer_reason(&serials))
    }

    /// [`Revocations::reason`] for a connected peer, its issuers included.
    pub fn of_peer(&self, peer: &PeerIdentity) -> Option<String> {
        self.reason(peer.id.role, &peer.id.name, &peer.serial)
            .or_else(|| self.issuer_reason(&peer.issuer_serials))
    }

    fn issuer_reason(&self, serials: &[String]) -> Option<String> {
        serials.iter().find(|s| self.serial_revoked(s)).map(|s| {
            format!(
                "issuer certificate serial {} is revoked",
                normalize_serial(s)
            )
        })
    }
}

/// Serials as certificates print them: lowercase hex, no colons, no leading zero bytes' worth of
/// difference in case.
pub fn normalize_serial(s: &str) -> String {
    s.chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::parse("n", s).unwrap()
    }

    #[test]
    fn names_revoke_node_certificates_and_serials_any_certificate() {
        let r = Revocations::new([name("web-1")], ["4A:0B".to_owned()]);
        assert!(r.reason(Role::Node, &name("web-1"), "11").is_some());
        // An operator that happens to share a node's name is not that node.
        assert!(r.reason(Role::Operator, &name("web-1"), "11").is_none());
        assert!(r.reason(Role::Operator, &name("alice"), "4a0b").is_some());
        assert!(r.reason(Role::Node, &name("web-2"), "4a0c").is_none());
        assert!(Revocations::default().is_empty() && !r.is_empty());
    }
}
