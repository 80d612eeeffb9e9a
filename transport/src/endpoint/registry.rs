//! Every open connection to a verified peer, whichever side dialled: what must be closed when a
//! peer's certificate is revoked.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::peers::PeerConnection;
use crate::identity::PeerIdentity;

/// Open connections by their stable id.
#[derive(Debug, Default)]
pub(super) struct Registry {
    conns: Mutex<HashMap<usize, PeerConnection>>,
}

impl Registry {
    pub(super) fn insert(&self, conn: &PeerConnection) {
        self.lock().insert(conn.stable_id(), conn.clone());
    }

    pub(super) fn remove(&self, conn: &PeerConnection) {
        self.lock().remove(&conn.stable_id());
    }

    /// Closes every connection whose peer matches; returns how many.
    pub(super) fn close_where(
        &self,
        matches: impl Fn(&PeerIdentity) -> bool,
        code: quinn::VarInt,
        reason: &[u8],
    ) -> usize {
        let doomed: Vec<PeerConnection> = self
            .lock()
            .values()
            .filter(|c| matches(c.identity()))
            .cloned()
            .collect();
        for c in &doomed {
            c.close(code, reason);
        }
        doomed.len()
    }

    /// The peers of open connections (one entry per connection).
    pub(super) fn peers(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lock()
            .values()
            .filter(|c| c.is_open())
            .map(|c| c.identity().id.name.to_string())
            .collect();
        names.sort();
        names
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, PeerConnection>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
