//! `revocation`: a node (every certificate it holds) or one certificate (by serial) that no node
//! may connect to or accept, and that no issuer renews. Made by `murmur cert revoke`; undone by
//! deleting the document.

use murmur_transport::identity::Name;
use serde::{Deserialize, Serialize};

use super::common::FieldError;

/// Prefix of the document name of a serial's revocation: `serial-<hex>`.
pub const SERIAL_PREFIX: &str = "serial-";
/// Longest serial (RFC 5280: at most 20 octets).
const MAX_SERIAL_HEX: usize = 40;
/// Longest reason.
const MAX_REASON: usize = 256;

/// A revocation. Exactly one of `node` and `serial`; the document is named after what it
/// revokes (the node's name, or `serial-<hex>`), so revoking the same thing twice is one
/// document and deleting it lifts the revocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationSpec {
    /// Document name.
    pub name: Name,
    /// Every certificate of this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Name>,
    /// The certificate with this serial (lowercase hex, no colons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Why, for whoever reads it later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RevocationSpec {
    /// The document revoking node `node`.
    pub fn node(node: Name, reason: Option<String>) -> Self {
        Self {
            name: node.clone(),
            node: Some(node),
            serial: None,
            reason,
        }
    }

    /// The document revoking the certificate with `serial` (any case, colons allowed).
    pub fn serial(serial: &str, reason: Option<String>) -> Result<Self, FieldError> {
        let serial = normalize(serial);
        check_serial(&serial)?;
        let name = Name::parse("revocation name", &format!("{SERIAL_PREFIX}{serial}"))
            .map_err(|e| FieldError::new("serial", e.to_string()))?;
        Ok(Self {
            name,
            node: None,
            serial: Some(serial),
            reason,
        })
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), FieldError> {
        match (&self.node, &self.serial) {
            (Some(node), None) if *node == self.name => {}
            (Some(node), None) => {
                return Err(FieldError::new(
                    "name",
                    format!("a node's revocation is named after the node ({node})"),
                ));
            }
            (None, Some(serial)) => {
                check_serial(serial)?;
                if self.name.as_str() != format!("{SERIAL_PREFIX}{serial}") {
                    return Err(FieldError::new(
                        "name",
                        format!("a serial's revocation is named {SERIAL_PREFIX}{serial}"),
                    ));
                }
            }
            _ => {
                return Err(FieldError::new(
                    "node",
                    "give exactly one of `node` and `serial`",
                ));
            }
        }
        if self.reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
            return Err(FieldError::new(
                "reason",
                format!("at most {MAX_REASON} bytes"),
            ));
        }
        Ok(())
    }
}

fn normalize(serial: &str) -> String {
    serial
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn check_serial(serial: &str) -> Result<(), FieldError> {
    let hex = serial
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if serial.is_empty() || serial.len() > MAX_SERIAL_HEX || !hex {
        return Err(FieldError::new(
            "serial",
            format!(
                "{serial:?} is not a certificate serial: lowercase hex, 1 to {MAX_SERIAL_HEX} \
                 digits, as `murmur cert inspect` prints it"
            ),
        ));
    }
    Ok(())
}
