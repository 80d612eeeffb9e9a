//! One throw-away PKI per fuzzing process: a mesh CA, its operator (who signs policy) and a
//! node, so that targets can sign what the fuzzer chose and reach the code behind the signature
//! check.

use std::sync::OnceLock;
use std::time::Duration;

use murmur_membership::policy::VerifyContext;
use murmur_membership::policy::service::now_ms;
use murmur_transport::certs::read_certs_pem;
use murmur_transport::identity::Role;
use murmur_transport::signing::Signer;
use murmur_transport::testing::TestPki;
use murmur_transport::tls::TrustBundle;

/// The PKI and what targets need from it.
pub struct Pki {
    /// Keeps the files alive.
    pub test: TestPki,
    /// The CA's operator: its signatures verify.
    pub operator: Signer,
    /// A node: its signatures are refused (wrong role).
    pub node: Signer,
    /// The trust bundle (the CA).
    pub bundle: TrustBundle,
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// A wall time inside every certificate's validity, ms since the epoch.
    pub base_ms: u64,
}

/// Largest clock skew allowed by the verification context of the targets.
pub const MAX_SKEW: Duration = Duration::from_secs(60);

/// The process's PKI, made on first use.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let test = TestPki::new("murmur.local");
        let operator = Signer::load(&test.ca.operator_cert, &test.ca.operator_key).unwrap();
        let paths = test.issue(Role::Node, "n1", &["web"]);
        let node = Signer::load(&paths.cert, &paths.key).unwrap();
        let bundle = TrustBundle::load(&test.ca.ca_cert, test.trust_domain.clone()).unwrap();
        let ca_der = read_certs_pem(&test.ca.ca_cert).unwrap()[0].to_vec();
        Pki {
            test,
            operator,
            node,
            bundle,
            ca_der,
            base_ms: now_ms() - 60_000,
        }
    })
}

impl Pki {
    /// The context a node verifies gossip with, `skew` its clock-skew limit.
    pub fn context(&self, skew: Duration) -> VerifyContext<'_> {
        VerifyContext {
            bundle: &self.bundle,
            now_ms: self.base_ms + 60_000,
            max_skew: skew,
        }
    }
}
