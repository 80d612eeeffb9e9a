//! Loading the node's credentials, with errors that say what to do: an expired or not yet valid
//! certificate is named as such with its dates and the command that issues a new one (rather
//! than the chain verifier's internal error), a certificate for another node names both.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use murmur_transport::certs::{CertError, parse_leaf, read_certs_pem};
use murmur_transport::identity::{Name, SpiffeId, TrustDomain};
use murmur_transport::tls::{CredentialPaths, TlsState, load_material};

/// The node's TLS state from `paths`, checked for `name` in `td`.
pub fn load(
    paths: &CredentialPaths,
    td: &TrustDomain,
    name: &Name,
) -> anyhow::Result<Arc<TlsState>> {
    check_validity(paths, name, crate::clock::unix_now())?;
    let id = SpiffeId::node(td.clone(), name.clone());
    let material = load_material(paths, td)?;
    TlsState::new(id, material).with_context(|| {
        format!(
            "the certificate {} cannot be used by node {name}",
            paths.cert.display()
        )
    })
}

/// Refuses a certificate outside its validity at unix second `now`, saying how to fix it.
fn check_validity(paths: &CredentialPaths, name: &Name, now: u64) -> Result<(), CertError> {
    let chain = read_certs_pem(&paths.cert)?;
    let Some(leaf) = chain.first() else {
        return Ok(());
    };
    let info = parse_leaf(leaf)?;
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let cert = paths.cert.display();
    if secs(info.not_after) < now {
        return Err(CertError::Shape(format!(
            "{cert} expired on {}: issue a new one with `murmur cert issue --ca-dir <ca dir> \
             --name {name}` (and the same --service flags), then reload or restart the node",
            date(info.not_after)
        )));
    }
    if secs(info.not_before) > now {
        return Err(CertError::Shape(format!(
            "{cert} is not valid before {}: check this host's clock, or issue a new one",
            date(info.not_before)
        )));
    }
    Ok(())
}

fn date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("unix time {secs}"))
}

#[cfg(test)]
mod tests {
    use murmur_transport::testing::TestPki;

    use super::*;

    #[test]
    fn an_expired_or_future_certificate_says_when_and_what_to_do() {
        let pki = TestPki::new("t.test");
        let paths = pki.node("n1", &[]);
        let name = Name::parse("n", "n1").unwrap();
        let now = crate::clock::unix_now();
        assert!(check_validity(&paths, &name, now).is_ok());
        // 31 days later the 30-day certificate has expired.
        let later = check_validity(&paths, &name, now + 31 * 86_400)
            .unwrap_err()
            .to_string();
        assert!(
            later.contains("expired on") && later.contains("murmur cert issue"),
            "{later}"
        );
        assert!(later.contains("--name n1"), "{later}");
        assert!(!later.contains("CertExpired"), "{later}");
        let earlier = check_validity(&paths, &name, now - 86_400)
            .unwrap_err()
            .to_string();
        assert!(earlier.contains("not valid before"), "{earlier}");
    }
}
