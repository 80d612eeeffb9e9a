//! Signed documents for the tests of this module: a throw-away CA, an operator, and helpers.

use murmur_transport::identity::{Name, Role};
use murmur_transport::signing::Signer;
use murmur_transport::testing::TestPki;
use murmur_transport::tls::TrustBundle;

use super::document::{PolicyDocument, VerifyContext, verify};
use super::service::now_ms;
use super::spec::{PolicyBody, RateLimitSpec, TokenUseSpec};
use super::{Hlc, Kind, Stamp, sign};

pub(crate) struct Fixture {
    pub(crate) pki: TestPki,
    pub(crate) operator: Signer,
    pub(crate) bundle: TrustBundle,
    /// A wall time inside the operator certificate's validity.
    pub(crate) base_ms: u64,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let pki = TestPki::new("murmur.local");
        let operator = Signer::load(&pki.ca.operator_cert, &pki.ca.operator_key).unwrap();
        let bundle = TrustBundle::load(&pki.ca.ca_cert, pki.trust_domain.clone()).unwrap();
        Self {
            pki,
            operator,
            bundle,
            base_ms: now_ms() - 60_000,
        }
    }

    /// A signer of another role or CA, issued from this PKI.
    pub(crate) fn signer(&self, role: Role, name: &str) -> Signer {
        let paths = self.pki.issue(role, name, &[]);
        Signer::load(&paths.cert, &paths.key).unwrap()
    }

    pub(crate) fn stamp(&self, offset_ms: u64, logical: u32, origin: &str) -> Stamp {
        Stamp {
            hlc: Hlc {
                ms: self.base_ms + offset_ms,
                logical,
            },
            origin: origin.into(),
        }
    }

    /// A signed `ratelimit` (or its delete with `rate` `None`).
    pub(crate) fn value(&self, name: &str, stamp: Stamp, rate: Option<u32>) -> String {
        let body = rate.map(|r| ratelimit(name, r));
        sign(&self.operator, body_kind(), &n(name), stamp, body.as_ref()).unwrap()
    }

    pub(crate) fn doc(&self, name: &str, stamp: Stamp, rate: Option<u32>) -> PolicyDocument {
        self.check(&self.value(name, stamp, rate)).unwrap()
    }

    pub(crate) fn check(&self, value: &str) -> Result<PolicyDocument, super::Rejection> {
        verify(
            value,
            &VerifyContext {
                bundle: &self.bundle,
                now_ms: now_ms(),
                max_skew: std::time::Duration::from_secs(60),
            },
        )
    }
}

fn body_kind() -> Kind {
    Kind::Ratelimit
}

pub(crate) fn n(s: &str) -> Name {
    Name::parse("name", s).unwrap()
}

pub(crate) fn ratelimit(name: &str, rate: u32) -> PolicyBody {
    PolicyBody::Ratelimit(RateLimitSpec {
        name: n(name),
        service: n("web"),
        rate,
        per: super::spec::PolicyDuration::from_secs(1),
        burst: None,
        by: Default::default(),
        scope: Default::default(),
    })
}

/// A token's use, recorded by node `issuer`, for a token expiring at `expires_ms`.
pub(crate) fn token_use(id: &str, issuer: &str, expires_ms: u64) -> PolicyBody {
    PolicyBody::TokenUse(TokenUseSpec {
        name: n(id),
        node: n("web-1"),
        key: "ab".repeat(32),
        issuer: n(issuer),
        serial: "4a0b".into(),
        expires_ms,
    })
}
