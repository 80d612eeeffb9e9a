//! The winning set on disk, so that a node restarts with the policy it had even when no peer
//! is reachable, and a whole-mesh restart loses nothing.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Version of the file format.
const FILE_VERSION: u16 = 1;
/// Files larger than this are not read back.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// What is kept: the gossip values of every winner, tombstones included.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PolicyFile {
    /// [`FILE_VERSION`].
    pub version: u16,
    /// When it was written, ms since the epoch.
    pub saved_at_ms: u64,
    /// Signed documents as gossiped (verified again when read back).
    pub documents: Vec<String>,
}

/// Writes the file atomically (temporary file, fsync, rename).
pub fn save(path: &Path, saved_at_ms: u64, documents: Vec<String>) -> std::io::Result<()> {
    let file = PolicyFile {
        version: FILE_VERSION,
        saved_at_ms,
        documents,
    };
    let body = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reads a file written by [`save`]; `None` when absent, too large or of another format.
pub fn load(path: &Path) -> Option<PolicyFile> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > MAX_FILE_BYTES {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    let file: PolicyFile = serde_json::from_slice(&bytes).ok()?;
    (file.version == FILE_VERSION).then_some(file)
}
