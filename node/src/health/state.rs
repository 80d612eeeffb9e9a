//! Consecutive check results to health, with hysteresis.

use murmur_membership::records::Health;

/// How many consecutive results flip the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Passes that make a critical instance passing again.
    pub healthy: u32,
    /// Failures that make a passing instance critical.
    pub unhealthy: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            healthy: 2,
            unhealthy: 2,
        }
    }
}

/// The health of one instance as results come in.
#[derive(Debug)]
pub struct Machine {
    thresholds: Thresholds,
    current: Option<Health>,
    streak: u32,
}

impl Machine {
    /// No result yet.
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            current: None,
            streak: 0,
        }
    }

    /// Takes one result; returns the new health when it changed. The first result decides at
    /// once: an instance should not wait several intervals to get its first traffic, nor keep
    /// it while it is already failing.
    pub fn observe(&mut self, passed: bool) -> Option<Health> {
        let target = if passed {
            Health::Passing
        } else {
            Health::Critical
        };
        let Some(current) = self.current else {
            self.current = Some(target);
            return Some(target);
        };
        if current == target {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if passed {
            self.thresholds.healthy
        } else {
            self.thresholds.unhealthy
        };
        if self.streak >= needed.max(1) {
            self.current = Some(target);
            self.streak = 0;
            Some(target)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_flip_health_only_after_a_streak() {
        let mut m = Machine::new(Thresholds {
            healthy: 3,
            unhealthy: 2,
        });
        assert_eq!(m.observe(true), Some(Health::Passing));
        assert_eq!(m.observe(false), None);
        assert_eq!(m.observe(true), None, "a single failure is forgiven");
        assert_eq!(m.observe(false), None);
        assert_eq!(m.observe(false), Some(Health::Critical));
        assert_eq!(m.observe(true), None);
        assert_eq!(m.observe(true), None);
        assert_eq!(m.observe(false), None, "the streak restarts");
        assert_eq!(m.observe(true), None);
        assert_eq!(m.observe(true), None);
        assert_eq!(m.observe(true), Some(Health::Passing));
    }

    #[test]
    fn a_first_failure_is_critical_at_once() {
        let mut m = Machine::new(Thresholds::default());
        assert_eq!(m.observe(false), Some(Health::Critical));
    }
}
