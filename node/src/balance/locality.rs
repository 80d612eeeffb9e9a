//! Zone preference: a caller whose node has a `zone` label sends to instances in its own zone
//! while enough of them are healthy, and spills over to the other zones as they fail. Pure.
//!
//! While at least [`SPILL_THRESHOLD`] of the local zone's instances take traffic, every request
//! stays local. Below it, the local zone keeps the share `healthy / total / SPILL_THRESHOLD` of
//! the requests and the rest go to the other zones (Envoy's overprovisioning factor of 1.4, the
//! same rule): with one of three local instances failing 95 % of the requests stay local, with
//! two 48 %, with all three none.

use crate::traffic::fault::percent_of;

/// Share of the local zone's instances that must take traffic for all requests to stay local.
pub const SPILL_THRESHOLD: f64 = 0.7;

/// Where one request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stay {
    /// To the local zone.
    Local,
    /// To the other zones.
    Remote,
}

/// Decides for one request: `healthy` of the local zone's `total` instances take traffic, and
/// `remote` instances elsewhere do. `draw` is called only for a partial spill.
pub fn decide(total: usize, healthy: usize, remote: usize, draw: impl FnOnce() -> u64) -> Stay {
    if healthy == 0 {
        return Stay::Remote;
    }
    if remote == 0 || total == 0 {
        return Stay::Local;
    }
    let share = healthy as f64 / total as f64 / SPILL_THRESHOLD;
    if share >= 1.0 || percent_of(draw()) < share * 100.0 {
        Stay::Local
    } else {
        Stay::Remote
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spill_table() {
        let never = || -> u64 { panic!("no draw needed") };
        // (total, healthy, remote, expected)
        let sure: &[(usize, usize, usize, Stay)] = &[
            (3, 3, 6, Stay::Local),
            (3, 0, 6, Stay::Remote),
            (3, 0, 0, Stay::Remote),
            (3, 1, 0, Stay::Local),
            (10, 7, 6, Stay::Local),
        ];
        for (t, h, r, want) in sure {
            assert_eq!(decide(*t, *h, *r, never), *want, "{t} {h} {r}");
        }
        // One of three healthy: a third / 0.7 = 47.6 % stay.
        let local = (0..10_000u64)
            .filter(|i| decide(3, 1, 6, || i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) == Stay::Local)
            .count();
        assert!((4560..=4960).contains(&local), "{local}");
    }
}
