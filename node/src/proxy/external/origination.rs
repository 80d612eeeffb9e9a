//! TLS the node speaks to hosts outside the mesh for apps that send plain HTTP (an `external`
//! document with `tls`): one client configuration per trust source — the system's roots, or a
//! CA file an operator put on every node — built on a blocking thread the first time it is
//! needed and again when it is a minute old, so a changed file is taken without a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use murmur_transport::certs::read_certs_pem;
use rustls::{ClientConfig, RootCertStore};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long a configuration is used before its roots are read again.
const FRESH_FOR: Duration = Duration::from_secs(60);
/// Trust sources kept at once (documents name a few).
const MAX_SOURCES: usize = 64;

/// A client configuration and when its roots were read.
type Built = (Instant, Arc<ClientConfig>);

/// Client configurations by trust source (`None`: the system's roots).
#[derive(Debug, Default)]
pub struct Origination {
    configs: Mutex<HashMap<Option<String>, Built>>,
}

impl Origination {
    /// The configuration for `ca` (a PEM file), or the system's roots.
    pub async fn config(&self, ca: Option<&str>) -> Result<Arc<ClientConfig>, String> {
        let key = ca.map(str::to_owned);
        let mut configs = self.configs.lock().await;
        if let Some((at, config)) = configs.get(&key)
            && at.elapsed() < FRESH_FOR
        {
            return Ok(config.clone());
        }
        let source = key.clone();
        let config = tokio::task::spawn_blocking(move || build(source.as_deref()))
            .await
            .map_err(|e| e.to_string())??;
        if configs.len() >= MAX_SOURCES {
            configs.clear();
        }
        configs.insert(key, (Instant::now(), config.clone()));
        Ok(config)
    }
}

/// Reads the roots and builds a client configuration (blocking).
fn build(ca: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(file) => {
            let certs = read_certs_pem(std::path::Path::new(file)).map_err(|e| e.to_string())?;
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("{file}: a CA certificate is unusable: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                // A system store may hold certificates rustls cannot use: skip those.
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(format!(
                    "no usable CA certificate in the system's store ({} errors): install \
                     ca-certificates, or give the document `tls.ca`",
                    found.errors.len()
                ));
            }
        }
    }
    let mut config = ClientConfig::builder_with_provider(murmur_transport::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
