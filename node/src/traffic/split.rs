//! Weighted backends (canary splits) and label subsets. Pure: the randomness is an argument.

use std::collections::BTreeMap;

use murmur_membership::policy::spec::Backend;

/// The backend a request goes to, given 64 random bits: backend `i` is chosen with probability
/// `weight_i / Σ weight`. `None` only for an empty list.
pub fn pick(backends: &[Backend], random: u64) -> Option<&Backend> {
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        return backends.first();
    }
    let mut r = random % total;
    for b in backends {
        let w = u64::from(b.weight);
        if r < w {
            return Some(b);
        }
        r -= w;
    }
    backends.last()
}

/// Whether an instance with `labels` belongs to `subset` (it carries every label of it).
pub fn in_subset(labels: &BTreeMap<String, String>, subset: &BTreeMap<String, String>) -> bool {
    subset.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// `version=v2,zone=a`, for messages.
pub fn describe(subset: &BTreeMap<String, String>) -> String {
    subset
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use murmur_transport::identity::Name;

    use super::*;

    fn backend(version: &str, weight: u32) -> Backend {
        Backend {
            service: Name::parse("service", "web").unwrap(),
            subset: BTreeMap::from([("version".to_owned(), version.to_owned())]),
            weight,
        }
    }

    #[test]
    fn every_weight_unit_maps_to_its_backend() {
        let bs = [backend("v1", 90), backend("v2", 10)];
        let mut counts = BTreeMap::new();
        for r in 0..100u64 {
            *counts
                .entry(pick(&bs, r).unwrap().subset["version"].clone())
                .or_insert(0) += 1;
        }
        assert_eq!(counts["v1"], 90);
        assert_eq!(counts["v2"], 10);
        // Large random values wrap the same way.
        assert_eq!(pick(&bs, u64::MAX).unwrap().weight, 90);
        assert!(pick(&[], 3).is_none());
    }

    #[test]
    fn subsets_table() {
        let labels = BTreeMap::from([
            ("version".to_owned(), "v2".to_owned()),
            ("zone".to_owned(), "a".to_owned()),
        ]);
        let sub = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(in_subset(&labels, &sub(&[])));
        assert!(in_subset(&labels, &sub(&[("version", "v2")])));
        assert!(in_subset(
            &labels,
            &sub(&[("version", "v2"), ("zone", "a")])
        ));
        assert!(!in_subset(&labels, &sub(&[("version", "v1")])));
        assert!(!in_subset(&labels, &sub(&[("tier", "gold")])));
        assert_eq!(
            describe(&sub(&[("zone", "a"), ("version", "v2")])),
            "version=v2,zone=a"
        );
    }
}
