//! Re-reading certificate, key and trust bundle when their files change (or on demand, e.g.
//! SIGHUP), without a restart.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tracing::{info, warn};

use super::{Material, TlsError, TlsState, TrustBundle};
use crate::certs::{read_certs_pem, read_key_pem};
use crate::identity::TrustDomain;

/// Where a node's credentials live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialPaths {
    /// Certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// Trust bundle: one or more CA certificates (PEM).
    pub bundle: PathBuf,
}

/// Reads credentials from disk.
pub fn load_material(paths: &CredentialPaths, td: &TrustDomain) -> Result<Material, TlsError> {
    Ok(Material {
        chain: read_certs_pem(&paths.cert)?,
        key: read_key_pem(&paths.key)?,
        bundle: TrustBundle::load(&paths.bundle, td.clone())?,
    })
}

/// Size and modification time of each credential file, to notice replacements cheaply.
type Fingerprint = [Option<(SystemTime, u64)>; 3];

/// Watches credential files and swaps them into a [`TlsState`] when they change.
#[derive(Debug)]
pub struct CredentialWatcher {
    state: Arc<TlsState>,
    paths: CredentialPaths,
    seen: Fingerprint,
}

impl CredentialWatcher {
    /// A watcher whose baseline is the files as they are now.
    pub fn new(state: Arc<TlsState>, paths: CredentialPaths) -> Self {
        let seen = fingerprint(&paths);
        Self { state, paths, seen }
    }

    /// Reloads if the files changed since the last successful load (or `force`). Returns the
    /// outcome when a reload was attempted. A failed reload keeps the old credentials and is
    /// retried at the next change or poll, so a half-written pair of files heals by itself.
    pub fn check(&mut self, force: bool) -> Option<Result<String, TlsError>> {
        let now = fingerprint(&self.paths);
        if !force && now == self.seen {
            return None;
        }
        let td = self.state.identity().trust_domain.clone();
        let material = match load_material(&self.paths, &td) {
            Ok(m) => m,
            Err(e) => return Some(Err(e)),
        };
        // Files this node wrote itself after renewing hold what is already in use.
        if self.state.is_current(&material) {
            self.seen = now;
            return None;
        }
        Some(match self.state.replace(material) {
            Ok(info) => {
                self.seen = now;
                Ok(info.serial)
            }
            Err(e) => Err(e),
        })
    }

    /// Polls every `interval`, and at once whenever `trigger` is notified, until the task is
    /// dropped.
    pub async fn run(mut self, interval: Duration, trigger: Arc<Notify>) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = tick.tick() => false,
                () = trigger.notified() => true,
            };
            // The check stats and reads files: it runs on a blocking thread, never on the
            // runtime's.
            let checked = tokio::task::spawn_blocking(move || {
                let outcome = self.check(forced);
                (self, outcome)
            })
            .await;
            let outcome = match checked {
                Ok((watcher, outcome)) => {
                    self = watcher;
                    outcome
                }
                Err(e) => {
                    warn!(error = %e, "the credential check failed; no more reloads");
                    return;
                }
            };
            match outcome {
                Some(Ok(serial)) => {
                    info!(%serial, cert = %self.paths.cert.display(), "credentials reloaded")
                }
                Some(Err(e)) => {
                    warn!(error = %e, "credentials not reloaded; keeping the current ones")
                }
                None => {}
            }
        }
    }
}

fn fingerprint(paths: &CredentialPaths) -> Fingerprint {
    [stat(&paths.cert), stat(&paths.key), stat(&paths.bundle)]
}

fn stat(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
