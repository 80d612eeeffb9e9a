//! The typed bodies of policy documents, one per kind, as the data path reads them.
//!
//! Every body names itself (`name`); traffic policy also names the service it applies to
//! (`service`), identity documents (revocations, token uses) apply to the mesh. Bodies are
//! strict (`deny_unknown_fields`) and validated beyond their types ([`PolicyBody::validate`]):
//! a document that is accepted anywhere is well-formed everywhere.

pub mod accesslog;
pub mod actions;
pub mod authz;
pub mod circuit;
pub mod common;
pub mod external;
pub mod grpc;
pub mod ratelimit;
pub mod retry;
pub mod revocation;
pub mod route;
pub mod timeout;
pub mod token_use;

use murmur_transport::identity::Name;
use serde::Serialize;

pub use self::accesslog::AccessLogSpec;
pub use self::actions::{HashPolicy, HeaderActions, Mirror, Redirect, Rewrite};
pub use self::authz::{Action, AuthzMode, AuthzRule, AuthzSpec, CallerMatch};
pub use self::circuit::CircuitSpec;
pub use self::common::{FieldError, PathMatch, PolicyDuration, PolicyRegex};
pub use self::external::{ExternalSpec, Originate};
pub use self::grpc::GrpcCode;
pub use self::ratelimit::{LimitKey, LimitScope, RateLimitSpec};
pub use self::retry::{Backoff, RetryBudget, RetrySpec};
pub use self::revocation::RevocationSpec;
pub use self::route::{AbortFault, Backend, DelayFault, Fault, HeaderMatch, RouteMatch, RouteSpec};
pub use self::timeout::TimeoutSpec;
pub use self::token_use::TokenUseSpec;
use super::Kind;

/// The body of a document, by kind.
#[derive(Clone, Debug, PartialEq)]
pub enum PolicyBody {
    /// `route` (boxed: by far the largest body)
    Route(Box<RouteSpec>),
    /// `retry`
    Retry(RetrySpec),
    /// `timeout`
    Timeout(TimeoutSpec),
    /// `ratelimit`
    Ratelimit(RateLimitSpec),
    /// `circuit`
    Circuit(CircuitSpec),
    /// `authz`
    Authz(AuthzSpec),
    /// `accesslog`
    Accesslog(AccessLogSpec),
    /// `revocation`
    Revocation(RevocationSpec),
    /// `token-use`
    TokenUse(TokenUseSpec),
    /// `external`
    External(ExternalSpec),
}

/// Why a body was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// It does not have the shape of its kind (unknown or missing field, wrong type).
    #[error("{0}")]
    Shape(String),
    /// A field has an invalid value.
    #[error(transparent)]
    Field(#[from] FieldError),
}

impl PolicyBody {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Route(_) => Kind::Route,
            Self::Retry(_) => Kind::Retry,
            Self::Timeout(_) => Kind::Timeout,
            Self::Ratelimit(_) => Kind::Ratelimit,
            Self::Circuit(_) => Kind::Circuit,
            Self::Authz(_) => Kind::Authz,
            Self::Accesslog(_) => Kind::Accesslog,
            Self::Revocation(_) => Kind::Revocation,
            Self::TokenUse(_) => Kind::TokenUse,
            Self::External(_) => Kind::External,
        }
    }

    /// The document name.
    pub fn name(&self) -> &Name {
        match self {
            Self::Route(s) => &s.name,
            Self::Retry(s) => &s.name,
            Self::Timeout(s) => &s.name,
            Self::Ratelimit(s) => &s.name,
            Self::Circuit(s) => &s.name,
            Self::Authz(s) => &s.name,
            Self::Accesslog(s) => &s.name,
            Self::Revocation(s) => &s.name,
            Self::TokenUse(s) => &s.name,
            Self::External(s) => &s.name,
        }
    }

    /// The service it applies to; `None` for identity documents, which apply to the mesh.
    pub fn service(&self) -> Option<&Name> {
        match self {
            Self::Route(s) => Some(&s.service),
            Self::Retry(s) => Some(&s.service),
            Self::Timeout(s) => Some(&s.service),
            Self::Ratelimit(s) => Some(&s.service),
            Self::Circuit(s) => Some(&s.service),
            Self::Authz(s) => Some(&s.service),
            Self::Accesslog(s) => Some(&s.service),
            Self::Revocation(_) | Self::TokenUse(_) | Self::External(_) => None,
        }
    }

    /// When the document stops mattering, ms since the epoch (token uses: the token's expiry).
    pub fn expires_ms(&self) -> Option<u64> {
        match self {
            Self::TokenUse(t) => Some(t.expires_ms),
            _ => None,
        }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            Self::Route(s) => s.validate(),
            Self::Retry(s) => s.validate(),
            Self::Timeout(s) => s.validate(),
            Self::Ratelimit(s) => s.validate(),
            Self::Circuit(s) => s.validate(),
            Self::Authz(s) => s.validate(),
            Self::Accesslog(s) => s.validate(),
            Self::Revocation(s) => s.validate(),
            Self::TokenUse(s) => s.validate(),
            Self::External(s) => s.validate(),
        }
    }

    /// Reads a body of `kind` from any serde value (a TOML table, JSON) and validates it.
    pub fn from_value<'de, D>(kind: Kind, value: D) -> Result<Self, BodyError>
    where
        D: serde::Deserializer<'de>,
        D::Error: std::fmt::Display,
    {
        let shape = |e: D::Error| BodyError::Shape(e.to_string());
        let body = match kind {
            Kind::Route => Self::Route(serde::Deserialize::deserialize(value).map_err(shape)?),
            Kind::Retry => Self::Retry(serde::Deserialize::deserialize(value).map_err(shape)?),
            Kind::Timeout => Self::Timeout(serde::Deserialize::deserialize(value).map_err(shape)?),
            Kind::Ratelimit => {
                Self::Ratelimit(serde::Deserialize::deserialize(value).map_err(shape)?)
            }
            Kind::Circuit => Self::Circuit(serde::Deserialize::deserialize(value).map_err(shape)?),
            Kind::Authz => Self::Authz(serde::Deserialize::deserialize(value).map_err(shape)?),
            Kind::Accesslog => {
                Self::Accesslog(serde::Deserialize::deserialize(value).map_err(shape)?)
            }
            Kind::Revocation => {
                Self::Revocation(serde::Deserialize::deserialize(value).map_err(shape)?)
            }
            Kind::TokenUse => {
                Self::TokenUse(serde::Deserialize::deserialize(value).map_err(shape)?)
            }
            Kind::External => {
                Self::External(serde::Deserialize::deserialize(value).map_err(shape)?)
            }
        };
        body.validate()?;
        Ok(body)
    }

    /// Reads a body of `kind` from the JSON carried in signed documents.
    pub fn from_json(kind: Kind, json: &str) -> Result<Self, BodyError> {
        let mut de = serde_json::Deserializer::from_str(json);
        let body = Self::from_value(kind, &mut de)?;
        de.end().map_err(|e| BodyError::Shape(e.to_string()))?;
        Ok(body)
    }

    /// The compact JSON carried in signed documents.
    pub fn to_json(&self) -> String {
        let r = match self {
            Self::Route(s) => serde_json::to_string(s),
            Self::Retry(s) => serde_json::to_string(s),
            Self::Timeout(s) => serde_json::to_string(s),
            Self::Ratelimit(s) => serde_json::to_string(s),
            Self::Circuit(s) => serde_json::to_string(s),
            Self::Authz(s) => serde_json::to_string(s),
            Self::Accesslog(s) => serde_json::to_string(s),
            Self::Revocation(s) => serde_json::to_string(s),
            Self::TokenUse(s) => serde_json::to_string(s),
            Self::External(s) => serde_json::to_string(s),
        };
        // Plain structs with string keys always serialize; keep an empty object otherwise.
        r.unwrap_or_else(|_| "{}".to_owned())
    }

    /// The body as a TOML document of its kind (`[[route]] ...`), for display.
    pub fn to_toml(&self) -> String {
        fn wrap<T: Serialize>(kind: Kind, spec: &T) -> String {
            let mut table = toml::Table::new();
            let value =
                toml::Value::try_from(spec).unwrap_or(toml::Value::Table(toml::Table::new()));
            table.insert(kind.as_str().to_owned(), toml::Value::Array(vec![value]));
            toml::to_string(&table).unwrap_or_default()
        }
        match self {
            Self::Route(s) => wrap(Kind::Route, s),
            Self::Retry(s) => wrap(Kind::Retry, s),
            Self::Timeout(s) => wrap(Kind::Timeout, s),
            Self::Ratelimit(s) => wrap(Kind::Ratelimit, s),
            Self::Circuit(s) => wrap(Kind::Circuit, s),
            Self::Authz(s) => wrap(Kind::Authz, s),
            Self::Accesslog(s) => wrap(Kind::Accesslog, s),
            Self::Revocation(s) => wrap(Kind::Revocation, s),
            Self::TokenUse(s) => wrap(Kind::TokenUse, s),
            Self::External(s) => wrap(Kind::External, s),
        }
    }
}
