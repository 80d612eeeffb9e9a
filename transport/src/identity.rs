//! SPIFFE identities: trust domains, names, and the identity a certificate proves.
//!
//! A node certificate carries exactly one URI SAN `spiffe://<trust-domain>/node/<name>`; an
//! operator certificate carries `spiffe://<trust-domain>/operator/<name>`. Names are DNS labels
//! so that they can also appear in DNS SANs (`<name>.node.<trust-domain>`).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The trust domain used when none is given.
pub const DEFAULT_TRUST_DOMAIN: &str = "murmur.local";

/// Why a name, trust domain or SPIFFE ID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A node, service or operator name that is not a DNS label.
    #[error(
        "{what} {value:?} is not a valid DNS label: use 1 to 63 lowercase letters, digits or '-', \
         not starting or ending with '-'"
    )]
    InvalidName {
        /// What the name was for ("node name", "service name", ...).
        what: &'static str,
        /// The refused value.
        value: String,
    },
    /// A trust domain that is not a lowercase DNS name.
    #[error(
        "trust domain {0:?} is not valid: use dot-separated DNS labels (lowercase letters, digits, \
         '-'), at most 255 characters, e.g. \"murmur.local\""
    )]
    InvalidTrustDomain(String),
    /// A URI that is not a SPIFFE ID of a Murmuration node or operator.
    #[error(
        "{0:?} is not a Murmuration SPIFFE ID (expected spiffe://<trust-domain>/node/<name> or \
         spiffe://<trust-domain>/operator/<name>)"
    )]
    InvalidSpiffeId(String),
}

/// A validated DNS label, used for node, service and operator names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// Validates `value` as a name; `what` says what it names, for the error message.
    pub fn parse(what: &'static str, value: &str) -> Result<Self, IdentityError> {
        Self::checked(what, value.to_owned())
    }

    fn checked(what: &'static str, value: String) -> Result<Self, IdentityError> {
        if is_dns_label(&value) {
            Ok(Self(value))
        } else {
            Err(IdentityError::InvalidName { what, value })
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = IdentityError;
    /// Validates `value` as [`Name::parse`] does, keeping the string rather than copying it.
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::checked("name", value)
    }
}

impl From<Name> for String {
    fn from(name: Name) -> Self {
        name.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// A SPIFFE trust domain such as `murmur.local`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Validates a trust domain.
    pub fn parse(value: &str) -> Result<Self, IdentityError> {
        let ok = !value.is_empty() && value.len() <= 255 && value.split('.').all(is_dns_label);
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdentityError::InvalidTrustDomain(value.to_owned()))
        }
    }

    /// The trust domain as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The DNS name a node presents as its TLS server name: `<name>.node.<trust-domain>`.
    pub fn node_dns_name(&self, node: &Name) -> String {
        format!("{node}.node.{}", self.0)
    }

    /// The DNS SAN that entitles a node to serve `service`: `<service>.svc.<trust-domain>`.
    pub fn service_dns_name(&self, service: &Name) -> String {
        format!("{service}.svc.{}", self.0)
    }
}

impl Default for TrustDomain {
    fn default() -> Self {
        Self(DEFAULT_TRUST_DOMAIN.to_owned())
    }
}

impl TryFrom<String> for TrustDomain {
    type Error = IdentityError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<TrustDomain> for String {
    fn from(td: TrustDomain) -> Self {
        td.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a certificate entitles its holder to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// A mesh node (sidecar).
    Node,
    /// A person or tool that administers the mesh (signs policy).
    Operator,
}

impl Role {
    fn path_segment(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path_segment())
    }
}

/// A SPIFFE ID of a node or operator: `spiffe://<trust-domain>/<role>/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpiffeId {
    /// The trust domain.
    pub trust_domain: TrustDomain,
    /// Node or operator.
    pub role: Role,
    /// The node or operator name.
    pub name: Name,
}

impl SpiffeId {
    /// The ID of node `name` in `trust_domain`.
    pub fn node(trust_domain: TrustDomain, name: Name) -> Self {
        Self {
            trust_domain,
            role: Role::Node,
            name,
        }
    }

    /// The ID of operator `name` in `trust_domain`.
    pub fn operator(trust_domain: TrustDomain, name: Name) -> Self {
        Self {
            trust_domain,
            role: Role::Operator,
            name,
        }
    }
}

impl FromStr for SpiffeId {
    type Err = IdentityError;
    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        let bad = || IdentityError::InvalidSpiffeId(uri.to_owned());
        let rest = uri.strip_prefix("spiffe://").ok_or_else(bad)?;
        let mut parts = rest.split('/');
        let (Some(td), Some(role), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let role = match role {
            "node" => Role::Node,
            "operator" => Role::Operator,
            _ => return Err(bad()),
        };
        Ok(Self {
            trust_domain: TrustDomain::parse(td).map_err(|_| bad())?,
            role,
            name: Name::parse("name", name).map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/{}/{}",
            self.trust_domain, self.role, self.name
        )
    }
}

/// What a verified certificate proves about its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The single SPIFFE ID of the certificate.
    pub id: SpiffeId,
    /// Services the holder may serve (from `<service>.svc.<trust-domain>` DNS SANs).
    pub services: BTreeSet<Name>,
    /// End of the certificate's validity.
    pub not_after: SystemTime,
    /// Serial number, hex.
    pub serial: String,
    /// Serials (hex) of the issuer certificates the peer presented between its certificate and
    /// the trust anchor: revoking an issuer credential refuses everything it signed.
    pub issuer_serials: Vec<String>,
}

impl PeerIdentity {
    /// Whether the holder's certificate entitles it to serve `service`.
    pub fn may_serve(&self, service: &str) -> bool {
        self.services.iter().any(|s| s.as_str() == service)
    }
}

/// RFC 1123 label, lowercase only (SPIFFE IDs are case-sensitive; we keep one spelling).
fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dns_label_rules() {
        for good in ["a", "node-1", "x9", &"a".repeat(63)] {
            assert!(Name::parse("node name", good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "é", &"a".repeat(64)] {
            let err = Name::parse("node name", bad).unwrap_err();
            assert!(err.to_string().contains("node name"), "{err}");
        }
    }

    #[test]
    fn spiffe_ids_round_trip_and_reject_other_shapes() {
        let id: SpiffeId = "spiffe://murmur.local/node/web-1".parse().unwrap();
        assert_eq!(id.role, Role::Node);
        assert_eq!(id.name.as_str(), "web-1");
        assert_eq!(id.to_string(), "spiffe://murmur.local/node/web-1");
        let op: SpiffeId = "spiffe://corp.example/operator/alice".parse().unwrap();
        assert_eq!(op.role, Role::Operator);
        for bad in [
            "spiffe://murmur.local/node",
            "spiffe://murmur.local/node/a/b",
            "spiffe://murmur.local/workload/a",
            "https://murmur.local/node/a",
            "spiffe://Bad_TD/node/a",
            "spiffe://murmur.local/node/A",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_names_are_derived_from_the_trust_domain() {
        let td = TrustDomain::parse("mesh.example").unwrap();
        let n = Name::parse("node name", "a").unwrap();
        assert_eq!(td.node_dns_name(&n), "a.node.mesh.example");
        assert_eq!(td.service_dns_name(&n), "a.svc.mesh.example");
        assert!(TrustDomain::parse("a..b").is_err());
        assert!(TrustDomain::parse("").is_err());
    }
}
