//! rustls verifiers and certificate resolvers backed by the live [`TlsState`].

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{Revocations, TlsError, TlsState, TrustBundle, Usage};
use crate::identity::Role;

/// Verifies servers: the chain must verify against the bundle and name a node of our trust
/// domain that is not revoked; when the client dialled `<name>.node.<td>`, the node must be
/// `<name>`.
#[derive(Debug)]
pub struct MeshServerVerifier {
    trust: ServerTrust,
}

/// What a server is verified against.
#[derive(Debug)]
enum ServerTrust {
    /// The live bundle and revocations of our own TLS state.
    Live(Arc<TlsState>),
    /// A bundle given once: a client that has no certificate (and so no TLS state) yet.
    Fixed {
        bundle: TrustBundle,
        provider: Arc<CryptoProvider>,
    },
}

impl MeshServerVerifier {
    /// Verifies against the live state of this endpoint.
    pub fn live(tls: Arc<TlsState>) -> Self {
        Self {
            trust: ServerTrust::Live(tls),
        }
    }

    /// Verifies against `bundle` (a node joining with a token).
    pub fn fixed(bundle: TrustBundle) -> Self {
        Self {
            trust: ServerTrust::Fixed {
                bundle,
                provider: super::provider(),
            },
        }
    }

    fn provider(&self) -> &CryptoProvider {
        match &self.trust {
            ServerTrust::Live(tls) => tls.crypto(),
            ServerTrust::Fixed { provider, .. } => provider,
        }
    }
}

/// Verifies clients: nodes and operators of our trust domain that are not revoked. A client
/// with no certificate gets through the handshake; the endpoint then lets it ask for a
/// certificate and nothing else.
#[derive(Debug)]
pub struct MeshClientVerifier(pub Arc<TlsState>);

/// Serves our current certificate.
#[derive(Debug)]
pub(crate) struct CurrentCert(pub(crate) Arc<TlsState>);

impl ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = chain_of(end_entity, intermediates);
        match &self.trust {
            ServerTrust::Live(tls) => verify_server(
                &tls.snapshot().bundle,
                &tls.revocations(),
                &chain,
                server_name,
                now,
            ),
            ServerTrust::Fixed { bundle, .. } => {
                verify_server(bundle, &Revocations::default(), &chain, server_name, now)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_signature(self.provider(), message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_signature(self.provider(), message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes(self.provider())
    }
}

impl ClientCertVerifier for MeshClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let chain = chain_of(end_entity, intermediates);
        let info = self
            .0
            .snapshot()
            .bundle
            .verify(&chain, Usage::Client, now)
            .map_err(to_rustls)?;
        if self.0.revocations().of_chain(&info, &chain[1..]).is_some() {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_signature(self.0.crypto(), message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_signature(self.0.crypto(), message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes(self.0.crypto())
    }
}

/// The checks of a server's certificate: chain and trust domain, a node, not revoked, and the
/// node the client dialled (when it dialled `<name>.node.<td>`).
fn verify_server(
    bundle: &TrustBundle,
    revocations: &Revocations,
    chain: &[CertificateDer<'static>],
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<ServerCertVerified, rustls::Error> {
    let info = bundle
        .verify(chain, Usage::Server, now)
        .map_err(to_rustls)?;
    if info.id.role != Role::Node {
        return Err(other(format!("{} is not a node", info.id)));
    }
    if revocations.of_chain(&info, &chain[1..]).is_some() {
        return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
    }
    let suffix = format!(".node.{}", bundle.trust_domain());
    if let ServerName::DnsName(dns) = server_name
        && let Some(expected) = dns.as_ref().strip_suffix(&suffix)
        && info.id.name.as_str() != expected
    {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ));
    }
    Ok(ServerCertVerified::assertion())
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.snapshot().certified.clone())
    }
}

impl ResolvesClientCert for CurrentCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.snapshot().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn tls12_signature(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

fn tls13_signature(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

fn schemes(provider: &CryptoProvider) -> Vec<SignatureScheme> {
    provider
        .signature_verification_algorithms
        .supported_schemes()
}

fn chain_of(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Vec<CertificateDer<'static>> {
    std::iter::once(end_entity)
        .chain(intermediates)
        .map(|c| c.clone().into_owned())
        .collect()
}

fn other(msg: String) -> rustls::Error {
    let err: Box<dyn std::error::Error + Send + Sync> = msg.into();
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::from(err))))
}

/// Maps our verification errors to the TLS alerts a peer should see.
fn to_rustls(e: TlsError) -> rustls::Error {
    let cert_err = match &e {
        TlsError::Chain(w) => match w {
            webpki::Error::UnknownIssuer => CertificateError::UnknownIssuer,
            webpki::Error::CertExpired { .. } => CertificateError::Expired,
            webpki::Error::CertNotValidYet { .. } => CertificateError::NotValidYet,
            webpki::Error::InvalidSignatureForPublicKey => CertificateError::BadSignature,
            webpki::Error::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
            _ => return other(e.to_string()),
        },
        _ => return other(e.to_string()),
    };
    rustls::Error::InvalidCertificate(cert_err)
}
