//! How this node's renewals go: what the admin API shows, what the node gossips, what the
//! metrics count.

use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};

/// The state of renewal, as gossiped and shown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RenewalState {
    /// This node does not renew (`renew = false`).
    Off,
    /// Not due yet (no attempt so far).
    #[default]
    Waiting,
    /// The last attempt succeeded.
    Renewed,
    /// Due, but no issuer is announced in the mesh: nothing to try.
    NoIssuer,
    /// Due, and every attempt since `since_ms` failed.
    Failing {
        /// When the first failed attempt of this series was, ms since the epoch.
        since_ms: u64,
        /// The last error.
        error: String,
    },
}

impl RenewalState {
    /// Lowercase label: `off`, `waiting`, `renewed`, `no-issuer` or `failing`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Waiting => "waiting",
            Self::Renewed => "renewed",
            Self::NoIssuer => "no-issuer",
            Self::Failing { .. } => "failing",
        }
    }

    /// The last error, while failing.
    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Failing { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// What renewal has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RenewSnapshot {
    /// Current state.
    pub state: RenewalState,
    /// Successful renewals since start.
    pub renewals: u64,
    /// Failed attempts since start.
    pub failures: u64,
    /// The issuer of the last renewal.
    pub last_issuer: Option<String>,
    /// When the last renewal happened, ms since the epoch.
    pub last_renewed_ms: Option<u64>,
    /// When the next attempt is due, ms since the epoch.
    pub next_ms: Option<u64>,
}

/// Longest error kept (it is gossiped).
const MAX_ERROR: usize = 300;

/// Shared renewal status.
#[derive(Debug, Default)]
pub struct RenewStatus {
    inner: RwLock<RenewSnapshot>,
}

impl RenewStatus {
    /// A status starting in `state`.
    pub fn new(state: RenewalState) -> Self {
        Self {
            inner: RwLock::new(RenewSnapshot {
                state,
                ..RenewSnapshot::default()
            }),
        }
    }

    /// What it says now.
    pub fn snapshot(&self) -> RenewSnapshot {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes it.
    pub fn update(&self, f: impl FnOnce(&mut RenewSnapshot)) {
        f(&mut self.inner.write().unwrap_or_else(PoisonError::into_inner));
    }

    /// A renewal succeeded.
    pub fn renewed(&self, issuer: &str, now_ms: u64) {
        self.update(|s| {
            s.state = RenewalState::Renewed;
            s.renewals += 1;
            s.last_issuer = Some(issuer.to_owned());
            s.last_renewed_ms = Some(now_ms);
        });
    }

    /// An attempt failed with `error`.
    pub fn failed(&self, error: &str, now_ms: u64) {
        let mut error = error.to_owned();
        if error.len() > MAX_ERROR {
            let mut cut = MAX_ERROR;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            error.truncate(cut);
        }
        self.update(|s| {
            s.failures += 1;
            let since_ms = match s.state {
                RenewalState::Failing { since_ms, .. } => since_ms,
                _ => now_ms,
            };
            s.state = RenewalState::Failing { since_ms, error };
        });
    }
}
