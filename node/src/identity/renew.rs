//! Renewal: at about half of its certificate's remaining life (with jitter), a node makes a new
//! key and asks an issuer for a certificate for the same identity and services, authenticated
//! by its current certificate: its own issuer first if it is one, then the mesh's issuers in a
//! random order. The new certificate is swapped into the TLS state (new handshakes use it at
//! once; open connections and the requests on them carry on) and written over the credential
//! files, so a restart uses it too.

use std::sync::Arc;
use std::time::Duration;

use murmur_membership::ClusterView;
use murmur_transport::certs::{
    CertInfo, make_request, pem_certs, serial_of, write_private_file, write_public_file,
};
use murmur_transport::endpoint::MeshEndpoint;
use murmur_transport::identity::{Name, PeerIdentity};
use murmur_transport::issuance::exchange::exchange;
use murmur_transport::issuance::protocol::{Answer, RefusalCode, Request};
use murmur_transport::tls::{CredentialPaths, Material, TlsState};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::watch;
use tracing::{info, warn};

use super::issuer::Issuer;
use super::record::issuers_in;
use super::serve::{FORWARD_TIMEOUT, alive_issuers, shuffled};
use super::status::{RenewStatus, RenewalState};

/// Longest sleep between looks at the certificate (a certificate replaced from files gets a new
/// schedule within this time).
const LOOK_EVERY: Duration = Duration::from_secs(5);
/// Renewal is due between 85 % and 100 % of the way to the half of the remaining life.
const JITTER: f64 = 0.15;

/// What the renewal task works with.
#[derive(Debug)]
pub struct Renewer {
    /// This node.
    pub node: Name,
    /// The live credentials.
    pub tls: Arc<TlsState>,
    /// To reach issuers.
    pub endpoint: MeshEndpoint,
    /// Who the issuers are.
    pub view: watch::Receiver<Arc<ClusterView>>,
    /// This node's own issuer, if any.
    pub issuer: Option<Arc<Issuer>>,
    /// Where the renewed certificate and key are written.
    pub paths: CredentialPaths,
    /// Shared status.
    pub status: Arc<RenewStatus>,
}

/// When a certificate seen at `now_ms` is due for renewal: half of its remaining life, minus up
/// to [`JITTER`] of it (`draw` in 0..1), so nodes issued together do not all renew at once.
pub fn due_ms(not_after_ms: u64, now_ms: u64, draw: f64) -> u64 {
    let half = not_after_ms.saturating_sub(now_ms) / 2;
    let factor = 1.0 - JITTER * draw.clamp(0.0, 1.0);
    now_ms + (half as f64 * factor) as u64
}

/// How long to wait after a failed attempt: a tenth of the time left, between 1 and 30 s.
pub fn retry_after(not_after_ms: u64, now_ms: u64) -> Duration {
    let left = Duration::from_millis(not_after_ms.saturating_sub(now_ms));
    (left / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Renews until the task is dropped.
pub async fn run(r: Renewer) {
    let mut plan: Option<(String, u64)> = None;
    let mut retry_at: Option<u64> = None;
    loop {
        let cert = r.tls.local_cert();
        let now = crate::clock::unix_now_ms();
        let due = match &plan {
            Some((serial, due)) if *serial == cert.serial => *due,
            _ => {
                let due = due_ms(ms(&cert.not_after), now, draw());
                plan = Some((cert.serial.clone(), due));
                retry_at = None;
                r.status.update(|s| s.next_ms = Some(due));
                due
            }
        };
        let wake = retry_at.unwrap_or(due);
        if now < wake {
            let nap = Duration::from_millis(wake - now).min(LOOK_EVERY);
            tokio::time::sleep(nap).await;
            continue;
        }
        let now = crate::clock::unix_now_ms();
        match attempt(&r, &cert).await {
            Ok(issuer) => {
                r.status.renewed(&issuer, now);
                plan = None;
            }
            Err(Failure::NoIssuer) => {
                r.status.update(|s| s.state = RenewalState::NoIssuer);
                retry_at = Some(now + millis(retry_after(ms(&cert.not_after), now)));
            }
            Err(Failure::Failed(e)) => {
                warn!(error = %e, "certificate renewal failed; retrying");
                r.status.failed(&e, now);
                retry_at = Some(now + millis(retry_after(ms(&cert.not_after), now)));
            }
        }
        if let Some(at) = retry_at {
            r.status.update(|s| s.next_ms = Some(at));
        }
    }
}

enum Failure {
    /// No issuer is announced: nothing to try.
    NoIssuer,
    /// Every issuer tried refused or could not be reached.
    Failed(String),
}

/// One renewal: a new key, a request, the issuers in turn; returns the issuer that signed.
async fn attempt(r: &Renewer, cert: &CertInfo) -> Result<String, Failure> {
    let services: Vec<Name> = cert.services.iter().cloned().collect();
    let (key, csr) = make_request(r.tls.identity(), &services)
        .map_err(|e| Failure::Failed(format!("cannot make a certificate request: {e}")))?;
    let request = Request::Renew { csr: csr.clone() };
    let mut errors = Vec::new();
    if let Some(issuer) = r.issuer.as_ref().filter(|i| i.is_valid()) {
        let me = PeerIdentity {
            id: cert.id.clone(),
            services: cert.services.clone(),
            not_after: cert.not_after,
            serial: cert.serial.clone(),
            issuer_serials: r
                .tls
                .certified()
                .0
                .cert
                .iter()
                .skip(1)
                .filter_map(|c| serial_of(c))
                .collect(),
        };
        match take(r, &key, issuer.renew(&me, &csr)).await {
            Ok(by) => return Ok(by),
            Err(e) => errors.push(format!("{} (self): {e}", r.node)),
        }
    }
    let view = r.view.borrow().clone();
    let issuers = alive_issuers(&view, &r.node);
    if issuers.is_empty() && errors.is_empty() {
        // Issuers announced but none alive is a failure; none announced at all is a mesh
        // without issuers (hand-issued certificates), where there is nothing to try.
        let known: Vec<String> = issuers_in(&view, &r.node)
            .into_iter()
            .map(|(n, _)| n.to_string())
            .collect();
        if known.is_empty() {
            return Err(Failure::NoIssuer);
        }
        return Err(Failure::Failed(format!(
            "no issuer is alive in this node's view (known: {})",
            known.join(", ")
        )));
    }
    for (name, addr) in shuffled(issuers) {
        // A fresh handshake: the issuer checks the certificate in use now.
        let answer = match r.endpoint.connect_fresh(addr, Some(&name)).await {
            Ok(conn) => exchange(&conn, &request, FORWARD_TIMEOUT)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let outcome = match answer {
            Ok(answer) => take(r, &key, answer).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(by) => return Ok(by),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    Err(Failure::Failed(errors.join("; ")))
}

/// Installs an issued certificate with `key`; returns who issued it.
async fn take(r: &Renewer, key: &rcgen::KeyPair, answer: Answer) -> Result<String, String> {
    let (chain, issuer) = match answer {
        Answer::Issued { chain, issuer } => (chain, issuer),
        Answer::Refused(refusal) if refusal.code == RefusalCode::Revoked => {
            return Err(format!("revoked: {}", refusal.message));
        }
        Answer::Refused(refusal) => return Err(refusal.message),
    };
    let chain: Vec<CertificateDer<'static>> = chain.into_iter().map(CertificateDer::from).collect();
    let key_der = key.serialize_der();
    let material = Material {
        chain: chain.clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der)),
        bundle: r.tls.bundle(),
    };
    let info = r
        .tls
        .replace(material)
        .map_err(|e| format!("issuer {issuer} sent an unusable certificate: {e}"))?;
    info!(serial = %info.serial, %issuer, not_after = ?info.not_after, "certificate renewed");
    persist(&r.paths, &chain, key.serialize_pem()).await;
    Ok(issuer)
}

/// Writes the renewed credentials over the files (key first: the certificate names it).
async fn persist(paths: &CredentialPaths, chain: &[CertificateDer<'static>], key_pem: String) {
    let cert_pem = pem_certs(chain);
    let paths = paths.clone();
    let written = tokio::task::spawn_blocking(move || {
        write_private_file(&paths.key, key_pem.as_bytes())?;
        write_public_file(&paths.cert, cert_pem.as_bytes())
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            warn!(error = %e, "renewed certificate in use but not saved: a restart would use the old files")
        }
        Err(e) => warn!(error = %e, "renewed certificate in use but not saved"),
    }
}

fn ms(t: &std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A draw in 0..1.
fn draw() -> f64 {
    let mut b = [0u8; 8];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_about_half_of_the_remaining_life() {
        let now = 1_000_000;
        let day = 86_400_000;
        assert_eq!(due_ms(now + day, now, 0.0), now + day / 2);
        let early = due_ms(now + day, now, 1.0);
        assert!(early < now + day / 2 && early >= now + day / 2 * 85 / 100);
        // An expired certificate is due now.
        assert_eq!(due_ms(now - 1, now, 0.5), now);
        // 60 s certificates retry every few seconds, long ones every 30 s at most.
        assert_eq!(retry_after(now + 30_000, now), Duration::from_secs(3));
        assert_eq!(retry_after(now + day, now), Duration::from_secs(30));
        assert_eq!(retry_after(now, now), Duration::from_secs(1));
    }
}
