//! Reading identities out of certificates (`transport::certs::parse_leaf`, `ca_trust_domain`).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use murmur_transport::certs::{CertInfo, ca_trust_domain, parse_leaf};
use murmur_transport::identity::{Name, Role, SpiffeId, TrustDomain};
use rcgen::string::Ia5String;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

/// Raw DER. Whatever is accepted is self-consistent: the ID prints back as itself, services
/// come from DNS SANs of the ID's trust domain, and no certificate is both a leaf and a CA.
pub fn der(data: &[u8]) {
    if let Ok(info) = parse_leaf(data) {
        check_leaf(&info);
        assert!(ca_trust_domain(data).is_err(), "a leaf is not a CA");
    }
    if let Ok(td) = ca_trust_domain(data) {
        assert_eq!(TrustDomain::parse(td.as_str()).unwrap(), td);
    }
}

fn check_leaf(info: &CertInfo) {
    assert_eq!(info.id.to_string().parse::<SpiffeId>().unwrap(), info.id);
    assert!(info.serial.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(info.services.is_empty() || info.id.role == Role::Node);
    for s in &info.services {
        let san = info.id.trust_domain.service_dns_name(s);
        assert!(info.dns_names.contains(&san), "{san} is not a SAN");
    }
    assert_eq!(info.peer_identity().id, info.id);
}

#[derive(Arbitrary, Debug)]
enum Uri {
    Spiffe {
        td: Vec<u8>,
        role: u8,
        name: Vec<u8>,
        trailing: Option<Vec<u8>>,
    },
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Dns {
    Service(Vec<u8>),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Sans {
    uris: Vec<Uri>,
    dns: Vec<Dns>,
    ips: Vec<IpAddr>,
    ca: u8,
}

/// Certificates made from fuzzer-chosen SANs with a fixed key: what `parse_leaf` and
/// `ca_trust_domain` accept is exactly what the SPIFFE rules allow, and they read back the
/// names that were written.
pub fn sans(data: &[u8]) {
    let Ok(sans) = Sans::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let uris: Vec<String> = sans.uris.iter().take(3).map(uri).collect();
    let td_of_first = uris
        .first()
        .and_then(|u| u.parse::<SpiffeId>().ok())
        .map(|id| id.trust_domain);
    let dns: Vec<String> = sans
        .dns
        .iter()
        .take(6)
        .map(|d| match (d, &td_of_first) {
            (Dns::Service(s), Some(td)) => format!("{}.svc.{td}", dnsish(s)),
            (Dns::Service(s) | Dns::Raw(s), _) => dnsish(s),
        })
        .collect();
    let mut params = CertificateParams::default();
    for u in &uris {
        let Ok(s) = Ia5String::try_from(u.as_str()) else {
            return;
        };
        params.subject_alt_names.push(SanType::URI(s));
    }
    for d in &dns {
        let Ok(s) = Ia5String::try_from(d.as_str()) else {
            return;
        };
        params.subject_alt_names.push(SanType::DnsName(s));
    }
    for ip in sans.ips.iter().take(2) {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let ca = sans.ca % 3 == 2;
    params.is_ca = match sans.ca % 3 {
        0 => IsCa::NoCa,
        1 => IsCa::ExplicitNoCa,
        _ => IsCa::Ca(BasicConstraints::Unconstrained),
    };
    let Ok(cert) = params.self_signed(key()) else {
        return;
    };
    let der = cert.der();

    let leaf = parse_leaf(der);
    let expect_leaf = !ca && uris.len() == 1 && uris[0].parse::<SpiffeId>().is_ok();
    assert_eq!(leaf.is_ok(), expect_leaf, "{uris:?} ca={ca}: {leaf:?}");
    if let Ok(info) = leaf {
        check_leaf(&info);
        assert_eq!(info.id.to_string(), uris[0]);
        assert_eq!(info.dns_names, dns);
        let services: BTreeSet<Name> = if info.id.role == Role::Node {
            let suffix = format!(".svc.{}", info.id.trust_domain);
            dns.iter()
                .filter_map(|d| d.strip_suffix(&suffix))
                .filter_map(|s| Name::parse("service", s).ok())
                .collect()
        } else {
            BTreeSet::new()
        };
        assert_eq!(info.services, services);
    }

    let expect_td = ca
        .then(|| uris.iter().find_map(|u| u.strip_prefix("spiffe://")))
        .flatten()
        .and_then(|td| TrustDomain::parse(td.trim_end_matches('/')).ok());
    assert_eq!(ca_trust_domain(der).ok(), expect_td, "{uris:?} ca={ca}");
}

fn uri(u: &Uri) -> String {
    match u {
        Uri::Spiffe {
            td,
            role,
            name,
            trailing,
        } => {
            let role = ["node", "operator", "workload", ""][usize::from(role % 4)];
            let mut s = format!("spiffe://{}/{role}/{}", dnsish(td), dnsish(name));
            if let Some(t) = trailing {
                s.push('/');
                s.push_str(&dnsish(t));
            }
            s
        }
        Uri::Raw(s) => s.clone(),
    }
}

/// Bytes as text over an alphabet that makes valid DNS names likely and invalid ones possible.
pub fn dnsish(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-.abcdexyz012-.A_/:%";
    bytes
        .iter()
        .take(80)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

fn key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::generate().unwrap())
}
