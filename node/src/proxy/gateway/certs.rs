//! The gateway's certificates: PEM files, a chain and a key per entry, chosen by the name the
//! client asks for (SNI) among the DNS names each certificate carries (its subject alternative
//! names, wildcards included); a client that sends no name gets the first entry. The files are
//! checked every `reload_interval`: a changed pair replaces the old one for new handshakes,
//! without a restart; a pair that does not load (half written, a key of another certificate)
//! leaves the old one serving, and says why.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use murmur_membership::policy::spec::common::host_matches;
use murmur_transport::certs::{read_certs_pem, read_key_pem};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tracing::{info, warn};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::telemetry::Telemetry;

/// One certificate of the gateway: its chain and its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// When the files last changed, as far as their metadata says (modification time and length
/// of both).
type Stamp = Option<(SystemTime, u64, SystemTime, u64)>;

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// DNS names of the leaf, lower case (`*.example.com` for a wildcard).
    names: Vec<String>,
    stamp: Stamp,
}

/// The certificates in force, as rustls asks for them on each handshake.
#[derive(Debug)]
pub struct Certificates {
    files: Vec<CertFiles>,
    loaded: RwLock<Arc<Vec<Loaded>>>,
}

impl Certificates {
    /// Loads every pair: an error names the file and what is wrong. Blocking: call it before the
    /// runtime starts.
    pub fn load(files: &[CertFiles]) -> anyhow::Result<Self> {
        let loaded = files
            .iter()
            .map(|f| load_pair(f).map_err(|e| anyhow::anyhow!("gateway certificate: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            files: files.to_vec(),
            loaded: RwLock::new(Arc::new(loaded)),
        })
    }

    fn current(&self) -> Arc<Vec<Loaded>> {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The certificate for `sni` (lower case): the first whose names match, else the first.
    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let current = self.current();
        let named = sni.and_then(|name| {
            current
                .iter()
                .find(|l| l.names.iter().any(|p| host_matches(p, name)))
        });
        named.or_else(|| current.first()).map(|l| l.key.clone())
    }

    /// Checks the files again every `every` and takes the pairs that changed and load.
    pub async fn watch(self: Arc<Self>, every: Duration, telemetry: Arc<Telemetry>) {
        loop {
            tokio::time::sleep(every).await;
            let this = self.clone();
            let Ok(changed) = tokio::task::spawn_blocking(move || this.reload()).await else {
                continue;
            };
            for (i, result) in changed {
                let path = &self.files[i].cert;
                match result {
                    Ok(names) => {
                        telemetry.gateway_connections.get(&["reloaded"]).inc();
                        info!(cert = %path.display(), ?names, "gateway certificate reloaded");
                    }
                    Err(e) => {
                        telemetry.gateway_connections.get(&["reload_failed"]).inc();
                        warn!(cert = %path.display(), error = %e, "gateway certificate not reloaded; the old one stays");
                    }
                }
            }
        }
    }

    /// Reloads the pairs whose files changed since they were loaded; returns what happened to
    /// each (its index, its names or the error). Blocking.
    fn reload(&self) -> Vec<(usize, Result<Vec<String>, String>)> {
        let current = self.current();
        let mut next: Option<Vec<Loaded>> = None;
        let mut report = Vec::new();
        for (i, files) in self.files.iter().enumerate() {
            let stamp = stamp_of(files);
            let Some(old) = current.get(i) else { continue };
            if stamp == old.stamp {
                continue;
            }
            let result = load_pair(files);
            let next = next.get_or_insert_with(|| {
                current
                    .iter()
                    .map(|l| Loaded {
                        key: l.key.clone(),
                        names: l.names.clone(),
                        stamp: l.stamp,
                    })
                    .collect()
            });
            match result {
                Ok(loaded) => {
                    report.push((i, Ok(loaded.names.clone())));
                    next[i] = loaded;
                }
                Err(e) => {
                    report.push((i, Err(e)));
                    // Not tried again until the files change again.
                    next[i].stamp = stamp;
                }
            }
        }
        if let Some(next) = next {
            *self.loaded.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        }
        report
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name().map(str::to_ascii_lowercase);
        self.pick(sni.as_deref())
    }
}

/// Reads and checks one pair: the key must belong to the leaf, which must name a host.
fn load_pair(files: &CertFiles) -> Result<Loaded, String> {
    let stamp = stamp_of(files);
    let chain = read_certs_pem(&files.cert).map_err(|e| e.to_string())?;
    let key = read_key_pem(&files.key).map_err(|e| e.to_string())?;
    let names = chain.first().map(|c| dns_names(c)).unwrap_or_default();
    if names.is_empty() {
        return Err(format!(
            "{}: the certificate names no DNS host (subjectAltName)",
            files.cert.display()
        ));
    }
    let provider = murmur_transport::tls::provider();
    let key = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| format!("{} and {}: {e}", files.cert.display(), files.key.display()))?;
    Ok(Loaded {
        key: Arc::new(key),
        names,
        stamp,
    })
}

/// The DNS subject alternative names of a certificate, lower case.
fn dns_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[allow(
    clippy::disallowed_methods,
    reason = "called before the runtime starts or on a blocking thread"
)]
fn stamp_of(files: &CertFiles) -> Stamp {
    let of = |p: &PathBuf| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    let (c, k) = (of(&files.cert)?, of(&files.key)?);
    Some((c.0, c.1, k.0, k.1))
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "a synchronous test writing files"
)]
mod tests {
    use super::*;

    /// A self-signed certificate for `names`, written to `<dir>/<file>.crt` and `.key`.
    fn write(dir: &std::path::Path, file: &str, names: &[&str]) -> (CertFiles, Vec<u8>) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let issued = rcgen::generate_simple_self_signed(names).unwrap();
        let files = CertFiles {
            cert: dir.join(format!("{file}.crt")),
            key: dir.join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, issued.cert.pem()).unwrap();
        std::fs::write(&files.key, issued.signing_key.serialize_pem()).unwrap();
        (files, issued.cert.der().to_vec())
    }

    fn served(c: &Certificates, sni: Option<&str>) -> Vec<u8> {
        c.pick(sni).unwrap().cert[0].to_vec()
    }

    #[test]
    fn the_name_asked_for_picks_the_certificate_and_a_change_on_disk_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, a_der) = write(dir.path(), "a", &["shop.example.com"]);
        let (b, b_der) = write(dir.path(), "b", &["*.example.org", "example.org"]);
        let certs = Certificates::load(&[a, b.clone()]).unwrap();
        assert_eq!(served(&certs, Some("shop.example.com")), a_der);
        assert_eq!(served(&certs, Some("api.example.org")), b_der);
        assert_eq!(served(&certs, Some("example.org")), b_der);
        // No name, or one no certificate has: the first.
        assert_eq!(served(&certs, None), a_der);
        assert_eq!(served(&certs, Some("other.test")), a_der);
        assert!(certs.reload().is_empty(), "nothing changed");

        // Renewed on disk: served from the next handshake.
        let (_, a2_der) = write(dir.path(), "a", &["shop.example.com"]);
        let report = certs.reload();
        assert_eq!(report.len(), 1, "{report:?}");
        assert!(report[0].1.is_ok(), "{report:?}");
        assert_eq!(served(&certs, Some("shop.example.com")), a2_der);

        // A key of another certificate: refused, the old pair keeps serving.
        let (other, _) = write(dir.path(), "other", &["shop.example.com"]);
        std::fs::copy(&other.key, &b.key).unwrap();
        let report = certs.reload();
        assert!(matches!(&report[..], [(1, Err(_))]), "{report:?}");
        assert_eq!(served(&certs, Some("api.example.org")), b_der);
        assert!(
            certs.reload().is_empty(),
            "a refused pair is not read again unchanged"
        );
    }

    #[test]
    fn a_pair_that_does_not_load_is_refused_at_start_with_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = write(dir.path(), "a", &["shop.example.com"]);
        std::fs::write(&a.key, "not a key").unwrap();
        let e = Certificates::load(&[a]).unwrap_err().to_string();
        assert!(e.contains("a.key"), "{e}");
    }
}
