//! `external`: a host outside the mesh that apps may call through their node, and how.

use murmur_transport::identity::Name;
use serde::{Deserialize, Serialize};

use super::authz::{CallerMatch, check_spiffe_pattern};
use super::common::{FieldError, check_host_pattern, check_len};

/// Calls from apps to hosts outside the mesh (CONNECT or absolute-form through their node, or
/// captured) whose host is one of `hosts` and port one of `ports`: who may make them (`callers`;
/// none: every node), and whether the node speaks TLS to the host for the app (`tls`): the app
/// sends plain HTTP to `http://api.example.com/`, the node HTTPS, verifying the host's
/// certificate with the system's roots or the CAs of `tls.ca`. With `[outbound] external =
/// "deny"`, only hosts a document names pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalSpec {
    /// Document name.
    pub name: Name,
    /// Host names, exact or `*.example.com`.
    pub hosts: Vec<String>,
    /// Ports apps call (default 80 and 443).
    #[serde(default = "default_ports")]
    pub ports: Vec<u16>,
    /// Callers allowed, any of which matches; empty: every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callers: Vec<CallerMatch>,
    /// The node originates TLS to the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Originate>,
}

/// TLS the node speaks to the host on the app's behalf.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Originate {
    /// The host's HTTPS port (default 443).
    #[serde(default = "https")]
    pub port: u16,
    /// A PEM file of the CAs the host's certificate must chain to, on every node; none: the
    /// system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

fn default_ports() -> Vec<u16> {
    vec![80, 443]
}

fn https() -> u16 {
    443
}

impl ExternalSpec {
    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.hosts.is_empty() {
            return Err(FieldError::new("hosts", "name at least one host"));
        }
        check_len("hosts", &self.hosts, 16)?;
        for (i, h) in self.hosts.iter().enumerate() {
            check_host_pattern(&format!("hosts[{i}]"), h)?;
        }
        if self.ports.is_empty() {
            return Err(FieldError::new("ports", "name at least one port"));
        }
        check_len("ports", &self.ports, 16)?;
        if self.ports.contains(&0) {
            return Err(FieldError::new("ports", "0 is not a port"));
        }
        check_len("callers", &self.callers, 32)?;
        for (i, c) in self.callers.iter().enumerate() {
            if let CallerMatch::Spiffe(p) = c {
                check_spiffe_pattern(p).map_err(|m| FieldError::new(format!("callers[{i}]"), m))?;
            }
        }
        if let Some(t) = &self.tls {
            if t.port == 0 {
                return Err(FieldError::new("tls.port", "0 is not a port"));
            }
            if let Some(ca) = &t.ca
                && (!ca.starts_with('/') || ca.len() > 1024 || ca.contains('\0'))
            {
                return Err(FieldError::new(
                    "tls.ca",
                    format!("{ca:?} is not an absolute path of a PEM file"),
                ));
            }
        }
        Ok(())
    }

    /// Whether calls to `host` (lower case) on `port` are the document's.
    pub fn covers(&self, host: &str, port: u16) -> bool {
        self.ports.contains(&port)
            && self
                .hosts
                .iter()
                .any(|p| super::common::host_matches(p, host))
    }
}
