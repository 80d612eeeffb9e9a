//! Which certificates of the mesh deserve a warning: expired, near expiry (less than a third of
//! its life, or less than the warning horizon, left), failing to renew, or revoked. One rule for
//! `murmur status`, the dashboard and the metrics.

use std::time::Duration;

use super::record::IdentityRecord;
use super::status::RenewalState;

/// Why a node's certificate deserves attention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertWarning {
    /// Revoked: peers refuse it.
    Revoked,
    /// Expired: peers refuse it.
    Expired,
    /// Less than a third of its life (or less than the horizon) left.
    Expiring {
        /// Seconds left.
        left_s: u64,
    },
    /// Renewal attempts have been failing.
    RenewalFailing {
        /// Seconds since the first failure of the series.
        for_s: u64,
        /// The last error.
        error: String,
    },
}

impl CertWarning {
    /// A short label for metrics: `revoked`, `expired`, `expiring` or `renewal-failing`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Expiring { .. } => "expiring",
            Self::RenewalFailing { .. } => "renewal-failing",
        }
    }

    /// For a person.
    pub fn message(&self) -> String {
        match self {
            Self::Revoked => "revoked: every node refuses it".into(),
            Self::Expired => "certificate EXPIRED: peers refuse it".into(),
            Self::Expiring { left_s } => format!("certificate expires in {left_s} s"),
            Self::RenewalFailing { for_s, error } => {
                format!("renewal failing for {for_s} s: {error}")
            }
        }
    }
}

/// The warning a node's record deserves at `now_ms`, if any; `horizon` is the longest time
/// before expiry that always warns (a long-lived certificate warns that far ahead).
pub fn warning_of(
    record: &IdentityRecord,
    revoked: bool,
    now_ms: u64,
    horizon: Duration,
) -> Option<CertWarning> {
    if revoked {
        return Some(CertWarning::Revoked);
    }
    if record.not_after_ms <= now_ms {
        return Some(CertWarning::Expired);
    }
    if let RenewalState::Failing { since_ms, error } = &record.renewal {
        return Some(CertWarning::RenewalFailing {
            for_s: now_ms.saturating_sub(*since_ms) / 1000,
            error: error.clone(),
        });
    }
    let life = record.not_after_ms.saturating_sub(record.not_before_ms);
    let horizon_ms = u64::try_from(horizon.as_millis()).unwrap_or(u64::MAX);
    let left = record.not_after_ms - now_ms;
    (left < (life / 3).min(horizon_ms)).then_some(CertWarning::Expiring {
        left_s: left / 1000,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(not_before_ms: u64, not_after_ms: u64, renewal: RenewalState) -> IdentityRecord {
        IdentityRecord {
            version: 1,
            serial: "01".into(),
            not_before_ms,
            not_after_ms,
            issuer_until_ms: None,
            renewal,
        }
    }

    #[test]
    fn warns_in_the_last_third_of_life_within_the_horizon_and_on_failures() {
        let day = 86_400_000;
        let horizon = Duration::from_secs(14 * 86_400);
        // A 66 s certificate (60 s plus backdating) renewed at half life never warns...
        let r = record(0, 66_000, RenewalState::Renewed);
        assert_eq!(warning_of(&r, false, 40_000, horizon), None);
        // ...but does once less than a third is left.
        assert!(matches!(
            warning_of(&r, false, 50_000, horizon),
            Some(CertWarning::Expiring { left_s: 16 })
        ));
        // A 90-day certificate warns 14 days ahead, not 30.
        let long = record(0, 90 * day, RenewalState::Off);
        assert_eq!(warning_of(&long, false, 70 * day, horizon), None);
        assert!(warning_of(&long, false, 77 * day, horizon).is_some());
        let failing = RenewalState::Failing {
            since_ms: 1_000,
            error: "no issuer reachable".into(),
        };
        let f = warning_of(&record(0, day, failing), false, 11_000, horizon).unwrap();
        assert_eq!(f.label(), "renewal-failing");
        assert!(f.message().contains("10 s") && f.message().contains("no issuer"));
        assert_eq!(
            warning_of(&r, false, 70_000, horizon),
            Some(CertWarning::Expired)
        );
        assert_eq!(
            warning_of(&r, true, 1_000, horizon),
            Some(CertWarning::Revoked)
        );
    }
}

/// Warnings about certificates more than this far from expiry are not raised for long-lived
/// certificates (a third of a 90-day life would be a month).
pub const HORIZON: Duration = Duration::from_secs(14 * 86_400);

/// What a node knows about one member's certificate.
#[derive(Clone, Debug)]
pub struct MemberCert {
    /// Member name.
    pub name: String,
    /// Its gossiped identity record, if it published one.
    pub record: Option<super::record::IdentityRecord>,
    /// Whether the revocations in force refuse it (by name or by its gossiped serial).
    pub revoked: bool,
    /// What deserves attention.
    pub warning: Option<CertWarning>,
}

/// Every member's certificate as `view` and `revocations` say at `now_ms`.
pub fn assess(
    view: &murmur_membership::ClusterView,
    revocations: &murmur_transport::tls::Revocations,
    now_ms: u64,
) -> Vec<MemberCert> {
    view.members
        .values()
        .map(|m| {
            let record = m
                .extensions
                .get(super::record::IDENTITY_EXTENSION)
                .and_then(|v| super::record::decode(v));
            let by_name = murmur_transport::identity::Name::parse("node name", &m.name)
                .is_ok_and(|n| revocations.node_revoked(&n));
            let by_serial = record
                .as_ref()
                .is_some_and(|r| revocations.serial_revoked(&r.serial));
            let revoked = by_name || by_serial;
            let warning = match &record {
                Some(r) => warning_of(r, revoked, now_ms, HORIZON),
                None if revoked => Some(CertWarning::Revoked),
                None => None,
            };
            MemberCert {
                name: m.name.clone(),
                record,
                revoked,
                warning,
            }
        })
        .collect()
}
