//! A throw-away PKI for tests: a CA in a temporary directory and certificates issued on demand.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::certs::{
    CaInit, CaInitReport, IssueRequest, IssuerFiles, IssuerInit, init_ca, init_issuer, issue,
};
use crate::endpoint::{EndpointConfig, MeshEndpoint, QuicSettings, StreamHandler};
use crate::identity::{Name, Role, SpiffeId, TrustDomain};
use crate::issuance::Authority;
use crate::tls::{CredentialPaths, TlsState, TrustBundle, load_material};

/// A CA and the certificates issued from it, deleted when dropped.
#[derive(Debug)]
pub struct TestPki {
    dir: tempfile::TempDir,
    /// The CA files.
    pub ca: CaInitReport,
    /// Its trust domain.
    pub trust_domain: TrustDomain,
}

impl TestPki {
    /// A new CA for `trust_domain`.
    pub fn new(trust_domain: &str) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let trust_domain = TrustDomain::parse(trust_domain).unwrap_or_else(|e| panic!("{e}"));
        let ca = init_ca(&CaInit {
            dir: dir.path().join("ca"),
            trust_domain: trust_domain.clone(),
            days: 30,
            operator: name("admin"),
            force: false,
        })
        .unwrap_or_else(|e| panic!("ca init: {e}"));
        Self {
            dir,
            ca,
            trust_domain,
        }
    }

    /// The directory everything lives in.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The CA directory (for `issue`).
    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// Issues (or re-issues, replacing the files) a certificate and returns its paths.
    pub fn issue(&self, role: Role, node: &str, services: &[&str]) -> CredentialPaths {
        let out_dir = self.dir.path().join("issued");
        let files = issue(&IssueRequest {
            ca_dir: self.ca_dir(),
            role,
            name: name(node),
            services: services.iter().map(|s| name(s)).collect(),
            validity: std::time::Duration::from_secs(30 * 86_400),
            out_dir,
            force: true,
        })
        .unwrap_or_else(|e| panic!("issue {node}: {e}"));
        CredentialPaths {
            cert: files.cert,
            key: files.key,
            bundle: self.ca.ca_cert.clone(),
        }
    }

    /// The trust bundle (the CA).
    pub fn bundle(&self) -> TrustBundle {
        TrustBundle::load(&self.ca.ca_cert, self.trust_domain.clone())
            .unwrap_or_else(|e| panic!("bundle: {e}"))
    }

    /// Makes an issuer credential named `name`, valid 10 days.
    pub fn issuer(&self, name: &str) -> IssuerFiles {
        init_issuer(&IssuerInit {
            ca_dir: self.ca_dir(),
            name: self::name(name),
            validity: std::time::Duration::from_secs(10 * 86_400),
            out_dir: self.dir.path().join("issuers"),
            force: true,
        })
        .unwrap_or_else(|e| panic!("issuer {name}: {e}"))
    }

    /// The credential of a new issuer named `name`, ready to sign.
    pub fn authority(&self, name: &str) -> Authority {
        let files = self.issuer(name);
        Authority::load(&files.cert, &files.key, &self.bundle())
            .unwrap_or_else(|e| panic!("authority {name}: {e}"))
    }

    /// A node certificate's paths.
    pub fn node(&self, node: &str, services: &[&str]) -> CredentialPaths {
        self.issue(Role::Node, node, services)
    }

    /// Live TLS state for `paths` claiming identity `role`/`node`.
    pub fn tls(&self, paths: &CredentialPaths, role: Role, node: &str) -> Arc<TlsState> {
        let id = SpiffeId {
            trust_domain: self.trust_domain.clone(),
            role,
            name: name(node),
        };
        let material = load_material(paths, &self.trust_domain).unwrap_or_else(|e| panic!("{e}"));
        TlsState::new(id, material).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// `s` as a [`Name`], which a test knows is valid (panics otherwise).
pub fn name(s: &str) -> Name {
    Name::parse("name", s).unwrap_or_else(|e| panic!("{e}"))
}

/// A gossip guard that lets every message through untouched and believes every claimed address:
/// for tests of the transport itself, where no layer above checks who may say what.
#[derive(Debug, Default)]
pub struct OpenGuard;

#[async_trait::async_trait]
impl crate::gossip::GossipGuard for OpenGuard {
    async fn admit(
        &self,
        _sender: &Name,
        _from: std::net::SocketAddr,
        _message: &mut crate::gossip::message::Message,
    ) -> crate::gossip::Admission {
        crate::gossip::Admission {
            from_verified: true,
            ..crate::gossip::Admission::default()
        }
    }
}

/// An endpoint on a free loopback port with the default QUIC settings, serving the streams
/// peers open with `handler` (its gossip is not read).
pub fn serving_endpoint(tls: Arc<TlsState>, handler: Arc<dyn StreamHandler>) -> MeshEndpoint {
    let (ep, _gossip) = MeshEndpoint::bind(
        EndpointConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            advertise: None,
            reset_key: None,
            quic: QuicSettings::default(),
        },
        tls,
    )
    .unwrap_or_else(|e| panic!("bind: {e}"));
    ep.set_handler(handler);
    ep
}
