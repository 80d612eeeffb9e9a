//! The kinds of policy document.

use std::fmt;

use murmur_transport::identity::Role;
use serde::{Deserialize, Serialize};

/// What a policy document configures. Encoded by index in signed payloads: append only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Request routing: matches, weighted backends, fault injection.
    Route,
    /// Retries of failed requests, with a budget.
    Retry,
    /// Request and per-try deadlines.
    Timeout,
    /// Inbound token buckets.
    Ratelimit,
    /// Outlier ejection and pending-request caps.
    Circuit,
    /// Allow/deny rules on caller, path and method.
    Authz,
    /// Access logging of a service's requests.
    Accesslog,
    /// A revoked node or certificate (signed by an operator, like traffic policy).
    Revocation,
    /// A join token's use, recorded by the issuer node that honoured it (signed by that node).
    #[serde(rename = "token-use")]
    TokenUse,
    /// A host outside the mesh apps may call, by whom, and whether the node originates TLS.
    External,
}

impl Kind {
    /// The traffic policy kinds: what an operator writes in a policy file.
    pub const ALL: [Self; 8] = [
        Self::Route,
        Self::Retry,
        Self::Timeout,
        Self::Ratelimit,
        Self::Circuit,
        Self::Authz,
        Self::Accesslog,
        Self::External,
    ];

    /// The identity kinds: written by `murmur cert revoke` and by issuer nodes, never in files.
    pub const IDENTITY: [Self; 2] = [Self::Revocation, Self::TokenUse];

    /// The kind's name as written in files, keys and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Route => "route",
            Self::Retry => "retry",
            Self::Timeout => "timeout",
            Self::Ratelimit => "ratelimit",
            Self::Circuit => "circuit",
            Self::Authz => "authz",
            Self::Accesslog => "accesslog",
            Self::Revocation => "revocation",
            Self::TokenUse => "token-use",
            Self::External => "external",
        }
    }

    /// Who may sign a document of this kind: operators, except for token uses, which the issuer
    /// node that honoured the token signs.
    pub fn signer_role(self) -> Role {
        match self {
            Self::TokenUse => Role::Node,
            _ => Role::Operator,
        }
    }

    /// Parses a kind name (any kind, traffic or identity).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .chain(Self::IDENTITY)
            .find(|k| k.as_str() == s)
    }

    /// The traffic kind names, for error messages about files: `route, retry, ...`.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }

    /// Every kind name, for error messages about kinds on the command line.
    pub fn all_names() -> String {
        let mut names: Vec<&str> = Self::ALL.map(Self::as_str).to_vec();
        names.extend(Self::IDENTITY.map(Self::as_str));
        names.join(", ")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
