//! SPIFFE IDs, trust domains and names (`transport::identity`), against a reference reading of
//! the rules written out again here.

use murmur_transport::identity::{Name, Role, SpiffeId, TrustDomain};

/// The input as a name, a trust domain and a SPIFFE ID: accepted exactly when the rules say so,
/// printed back as the very input, and unchanged through JSON and postcard.
pub fn identity(data: &[u8]) {
    let Some(s) = crate::text(data) else {
        return;
    };
    match Name::parse("fuzzed name", s) {
        Ok(n) => {
            assert!(is_label(s), "accepted name {s:?}");
            assert_eq!(n.as_str(), s);
            let json = serde_json::to_string(&n).unwrap();
            assert_eq!(serde_json::from_str::<Name>(&json).unwrap(), n);
        }
        Err(e) => {
            assert!(!is_label(s), "refused name {s:?}");
            assert!(e.to_string().contains("fuzzed name"));
            assert!(serde_json::from_value::<Name>(s.into()).is_err());
        }
    }
    match TrustDomain::parse(s) {
        Ok(td) => {
            assert!(is_trust_domain(s), "accepted trust domain {s:?}");
            assert_eq!(td.to_string(), s);
        }
        Err(_) => assert!(!is_trust_domain(s), "refused trust domain {s:?}"),
    }
    match s.parse::<SpiffeId>() {
        Ok(id) => {
            assert!(is_spiffe_id(s), "accepted SPIFFE ID {s:?}");
            assert_eq!(id.to_string(), s);
            let bytes = postcard::to_stdvec(&id).unwrap();
            assert_eq!(postcard::from_bytes::<SpiffeId>(&bytes).unwrap(), id);
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<SpiffeId>(&json).unwrap(), id);
            let same = match id.role {
                Role::Node => SpiffeId::node(id.trust_domain.clone(), id.name.clone()),
                Role::Operator => SpiffeId::operator(id.trust_domain.clone(), id.name.clone()),
            };
            assert_eq!(same, id);
        }
        Err(_) => assert!(!is_spiffe_id(s), "refused SPIFFE ID {s:?}"),
    }
}

fn is_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_trust_domain(s: &str) -> bool {
    (1..=255).contains(&s.len()) && s.split('.').all(is_label)
}

fn is_spiffe_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("spiffe://") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    matches!(parts.as_slice(), [td, role, name]
        if is_trust_domain(td) && matches!(*role, "node" | "operator") && is_label(name))
}
