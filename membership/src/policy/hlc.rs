//! Hybrid logical clocks and document stamps.
//!
//! A stamp orders versions of one document across the mesh without trusting any single clock:
//! the physical part follows wall time, the logical part breaks ties and keeps causality when
//! clocks lag (a version stamped after seeing another is always greater than it).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A hybrid logical clock reading: milliseconds since the Unix epoch, then a counter.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Hlc {
    /// Physical part: wall-clock milliseconds since the Unix epoch.
    pub ms: u64,
    /// Logical part: orders readings within one millisecond.
    pub logical: u32,
}

impl Hlc {
    /// The reading a clock that has seen `self` shows at wall time `now_ms`: never below what
    /// it has seen, and following wall time when that is ahead.
    pub fn read(self, now_ms: u64) -> Self {
        if now_ms > self.ms {
            Self {
                ms: now_ms,
                logical: 0,
            }
        } else {
            self
        }
    }

    /// The smallest reading strictly after `self`.
    pub fn next(self) -> Self {
        match self.logical.checked_add(1) {
            Some(logical) => Self {
                ms: self.ms,
                logical,
            },
            None => Self {
                ms: self.ms.saturating_add(1),
                logical: 0,
            },
        }
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.ms, self.logical)
    }
}

/// When and where a version of a document was made: the order of versions, signed with them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamp {
    /// Clock reading (compared first).
    pub hlc: Hlc,
    /// Name of the node that took the document (compared second).
    pub origin: String,
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.hlc, self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_never_go_back_and_next_is_strictly_greater() {
        let seen = Hlc {
            ms: 1_000,
            logical: 4,
        };
        assert_eq!(
            seen.read(900),
            seen,
            "a lagging wall clock does not go back"
        );
        assert_eq!(
            seen.read(2_000),
            Hlc {
                ms: 2_000,
                logical: 0
            }
        );
        assert!(seen.next() > seen);
        let top = Hlc {
            ms: 5,
            logical: u32::MAX,
        };
        assert!(top.next() > top);
    }

    #[test]
    fn stamps_order_by_clock_then_origin() {
        let a = Stamp {
            hlc: Hlc { ms: 1, logical: 0 },
            origin: "b".into(),
        };
        let b = Stamp {
            hlc: Hlc { ms: 1, logical: 1 },
            origin: "a".into(),
        };
        let c = Stamp {
            hlc: Hlc { ms: 1, logical: 1 },
            origin: "c".into(),
        };
        assert!(a < b && b < c);
    }
}
