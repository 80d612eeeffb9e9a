//! Incarnation numbers: each start must use a larger generation than the last, even if the
//! clock went backwards, or peers would take the new incarnation's writes for stale ones.

#![allow(
    clippy::disallowed_methods,
    reason = "read and written by `prepare`, before the node's runtime starts"
)]

use std::path::Path;

use anyhow::Context;

const FILE: &str = "generation";
const RESET_KEY_FILE: &str = "reset-key";

/// The QUIC stateless-reset secret of this node, created on first start and kept (mode 0600),
/// so that after a restart peers' connections to the old incarnation are reset at once.
pub fn reset_key(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(RESET_KEY_FILE);
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return Ok(key);
    }
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(&key)?;
    Ok(key)
}

/// The generation for this start: now in milliseconds, or one more than the last, whichever
/// is larger. It is recorded before being used.
pub fn next(data_dir: &Path) -> anyhow::Result<u64> {
    let path = data_dir.join(FILE);
    let last = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let now = crate::clock::unix_now_ms();
    let next = now.max(last.saturating_add(1));
    std::fs::write(&path, next.to_string())
        .with_context(|| format!("cannot record the generation in {}", path.display()))?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    #[test]
    fn generations_always_grow() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::next(dir.path()).unwrap();
        let b = super::next(dir.path()).unwrap();
        assert!(b > a);
        std::fs::write(dir.path().join(super::FILE), (u64::MAX / 2).to_string()).unwrap();
        assert_eq!(super::next(dir.path()).unwrap(), u64::MAX / 2 + 1);
    }
}
