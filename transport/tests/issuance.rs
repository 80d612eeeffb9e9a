//! Issuer credentials, certificate requests and join tokens: what an issuer signs verifies
//! everywhere, and everything that asks for more is refused with an error that says why.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use murmur_transport::certs::{
    CsrError, IssuerInit, init_issuer, make_request, read_certs_pem, read_request, request_for,
};
use murmur_transport::identity::{Name, SpiffeId, TrustDomain};
use murmur_transport::issuance::Authority;
use murmur_transport::issuance::token::{self, TokenError};
use murmur_transport::signing::Signer;
use murmur_transport::testing::TestPki;
use murmur_transport::tls::{TlsError, Usage};
use rcgen::string::Ia5String;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls_pki_types::{CertificateDer, UnixTime};

fn n(s: &str) -> Name {
    Name::parse("name", s).unwrap()
}

fn node_id(pki: &TestPki, name: &str) -> SpiffeId {
    SpiffeId::node(pki.trust_domain.clone(), n(name))
}

fn services(names: &[&str]) -> BTreeSet<Name> {
    names.iter().map(|s| n(s)).collect()
}

/// The issuer certificate and an rcgen issuer over it, to sign what `Authority` never would.
fn raw_issuer(pki: &TestPki, name: &str) -> (CertificateDer<'static>, Issuer<'static, KeyPair>) {
    let files = pki.issuer(name);
    let cert = read_certs_pem(&files.cert).unwrap().remove(0);
    let key = KeyPair::from_pem(&std::fs::read_to_string(&files.key).unwrap()).unwrap();
    let issuer = Issuer::from_ca_cert_der(&cert, key).unwrap();
    (cert, issuer)
}

fn leaf(issuer: &Issuer<'_, KeyPair>, sans: Vec<SanType>, ca: IsCa) -> CertificateDer<'static> {
    let mut p = CertificateParams::default();
    p.subject_alt_names = sans;
    p.is_ca = ca;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    p.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.not_before = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    p.not_after = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let key = KeyPair::generate().unwrap();
    p.signed_by(&key, issuer).unwrap().der().clone()
}

fn uri(s: &str) -> SanType {
    SanType::URI(Ia5String::try_from(s).unwrap())
}

fn dns(s: &str) -> SanType {
    SanType::DnsName(Ia5String::try_from(s).unwrap())
}

#[test]
fn an_issuer_signs_exactly_the_identity_granted_and_it_verifies_as_a_peer() {
    let pki = TestPki::new("test.mesh");
    let bundle = pki.bundle();
    let authority = pki.authority("n1");
    let id = node_id(&pki, "web-1");
    let (_key, csr) = make_request(&id, &[n("web")]).unwrap();
    let req = read_request(&csr, &id, &services(&["web", "api"])).unwrap();
    let issued = authority
        .sign(
            &req,
            &id,
            &services(&["web", "api"]),
            Duration::from_secs(60),
            &bundle,
        )
        .unwrap();
    assert_eq!(issued.chain.len(), 2, "leaf and issuer");
    for usage in [Usage::Server, Usage::Client] {
        let info = bundle
            .verify(&issued.chain, usage, UnixTime::now())
            .unwrap();
        assert_eq!(info.id, id);
        // Exactly what was granted (the request asked for less).
        assert_eq!(info.services, services(&["api", "web"]));
    }
    let info = &issued.info;
    let life = info.not_after.duration_since(SystemTime::now()).unwrap();
    assert!(life <= Duration::from_secs(60) && life > Duration::from_secs(50));
    // Backdated by a tenth of its life, not by minutes.
    let window = info.not_after.duration_since(info.not_before).unwrap();
    assert!(window <= Duration::from_secs(67), "{window:?}");
}

#[test]
fn the_issuer_certificate_is_constrained_and_the_trust_domain_is_checked_by_us() {
    let pki = TestPki::new("test.mesh");
    let bundle = pki.bundle();
    let (inter, issuer) = raw_issuer(&pki, "n1");
    let now = UnixTime::now();

    // DNS names outside the trust domain: webpki's name constraint refuses them.
    let outside = leaf(
        &issuer,
        vec![uri("spiffe://test.mesh/node/x"), dns("x.node.evil.test")],
        IsCa::ExplicitNoCa,
    );
    let e = bundle
        .verify(&[outside, inter.clone()], Usage::Server, now)
        .unwrap_err();
    assert!(
        matches!(e, TlsError::Chain(webpki::Error::NameConstraintViolation)),
        "{e}"
    );

    // A URI of another trust domain is not bound by DNS constraints: the chain verifies in
    // webpki, and only our check after it refuses the identity.
    let foreign = leaf(
        &issuer,
        vec![uri("spiffe://evil.test/node/x"), dns("x.node.test.mesh")],
        IsCa::ExplicitNoCa,
    );
    let anchors: Vec<_> = bundle
        .certs()
        .iter()
        .map(|c| webpki::anchor_from_trusted_cert(c).unwrap())
        .collect();
    let ee = webpki::EndEntityCert::try_from(&foreign).unwrap();
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        std::slice::from_ref(&inter),
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .expect("webpki accepts a foreign URI under a DNS-constrained intermediate");
    let e = bundle
        .verify(&[foreign, inter.clone()], Usage::Server, now)
        .unwrap_err();
    assert!(matches!(e, TlsError::TrustDomain { .. }), "{e}");

    // Path length 0: a CA under the issuer cannot sign anything that verifies.
    let mut sub = CertificateParams::default();
    sub.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    sub.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    sub.subject_alt_names = vec![uri("spiffe://test.mesh")];
    let sub_key = KeyPair::generate().unwrap();
    let sub_cert = sub.signed_by(&sub_key, &issuer).unwrap();
    let sub_issuer = Issuer::from_ca_cert_der(sub_cert.der(), sub_key).unwrap();
    let deep = leaf(
        &sub_issuer,
        vec![uri("spiffe://test.mesh/node/x"), dns("x.node.test.mesh")],
        IsCa::ExplicitNoCa,
    );
    let e = bundle
        .verify(&[deep, sub_cert.der().clone(), inter], Usage::Server, now)
        .unwrap_err();
    assert!(matches!(e, TlsError::Chain(_)), "{e}");
}

#[test]
fn requests_for_more_than_the_grant_are_refused_with_the_reason() {
    let pki = TestPki::new("test.mesh");
    let id = node_id(&pki, "web-1");
    let granted = services(&["web"]);
    let key = KeyPair::generate().unwrap();
    let csr_with = |sans: Vec<SanType>, ca: IsCa| {
        let mut p = CertificateParams::default();
        p.subject_alt_names = sans;
        p.is_ca = ca;
        p.serialize_request(&key).unwrap().der().to_vec()
    };
    let own = || {
        vec![
            uri("spiffe://test.mesh/node/web-1"),
            dns("web-1.node.test.mesh"),
        ]
    };

    let mut extra = own();
    extra.push(dns("pay.svc.test.mesh"));
    let e = read_request(&csr_with(extra, IsCa::NoCa), &id, &granted).unwrap_err();
    assert_eq!(
        e,
        CsrError::ExtraNames(vec!["DNS:pay.svc.test.mesh".into()])
    );
    assert!(e.to_string().contains("pay.svc.test.mesh"), "{e}");

    let mut ip = own();
    ip.push(SanType::IpAddress("10.0.0.1".parse().unwrap()));
    assert!(matches!(
        read_request(&csr_with(ip, IsCa::NoCa), &id, &granted),
        Err(CsrError::ExtraNames(_))
    ));

    let ca = csr_with(own(), IsCa::Ca(BasicConstraints::Unconstrained));
    let e = read_request(&ca, &id, &granted).unwrap_err();
    assert_eq!(e, CsrError::AsksForCa);
    assert!(e.to_string().contains("CA:TRUE"), "{e}");

    let other = csr_with(
        vec![
            uri("spiffe://test.mesh/node/db-1"),
            dns("db-1.node.test.mesh"),
        ],
        IsCa::NoCa,
    );
    let e = read_request(&other, &id, &granted).unwrap_err();
    assert!(
        matches!(&e, CsrError::WrongIdentity { asked, .. } if asked.ends_with("/node/db-1")),
        "{e}"
    );

    let two = vec![
        uri("spiffe://test.mesh/node/web-1"),
        uri("spiffe://test.mesh/node/web-2"),
    ];
    assert_eq!(
        read_request(&csr_with(two, IsCa::NoCa), &id, &granted).unwrap_err(),
        CsrError::SpiffeIds(2)
    );

    let good = request_for(&key, &id, &[n("web")]).unwrap();
    let mut tampered = good.clone();
    let last = tampered.len() - 5;
    tampered[last] ^= 0x01;
    assert!(read_request(&tampered, &id, &granted).is_err());
    assert!(matches!(
        read_request(b"not a request", &id, &granted),
        Err(CsrError::Unreadable(_))
    ));
    assert!(read_request(&good, &id, &granted).is_ok());
}

#[test]
fn tokens_verify_once_signed_by_an_operator_and_refuse_the_rest() {
    let pki = TestPki::new("test.mesh");
    let bundle = pki.bundle();
    let operator = Signer::load(&pki.ca.operator_cert, &pki.ca.operator_key).unwrap();
    let now = murmur_transport_now_ms();
    let (text, claims) = token::create(
        &operator,
        n("web-1"),
        vec![n("web")],
        Duration::from_secs(3600),
        now,
    )
    .unwrap();
    assert!(text.starts_with(token::TOKEN_PREFIX));
    let ok = token::verify(&text, &bundle, now + 1_000).unwrap();
    assert_eq!(ok.claims, claims);
    assert_eq!(ok.claims.name, n("web-1"));
    assert_eq!(ok.signer, *operator.id());

    // Expired.
    let e = token::verify(&text, &bundle, now + 3_601_000).unwrap_err();
    assert!(matches!(e, TokenError::Expired { .. }), "{e}");
    assert!(e.to_string().contains("expired"), "{e}");

    // Signed by the operator of another mesh with the same trust domain.
    let other = TestPki::new("test.mesh");
    let foreign = Signer::load(&other.ca.operator_cert, &other.ca.operator_key).unwrap();
    let (bad, _) =
        token::create(&foreign, n("web-1"), vec![], Duration::from_secs(60), now).unwrap();
    let e = token::verify(&bad, &bundle, now).unwrap_err();
    assert!(matches!(e, TokenError::Signature(_)), "{e}");

    // Signed by a node, not an operator: refused when made, and when presented.
    let node_paths = pki.node("n1", &[]);
    let node = Signer::load(&node_paths.cert, &node_paths.key).unwrap();
    assert!(token::create(&node, n("x"), vec![], Duration::from_secs(60), now).is_err());

    // Any change to the token breaks it.
    let mut chars: Vec<char> = text.chars().collect();
    let i = chars.len() - 10;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    assert!(token::verify(&tampered, &bundle, now).is_err());
    assert!(matches!(
        token::verify("hello", &bundle, now),
        Err(TokenError::Malformed(_))
    ));
    // Another trust domain.
    let td = TestPki::new("other.mesh");
    let e = token::verify(&text, &td.bundle(), now).unwrap_err();
    assert!(matches!(e, TokenError::TrustDomain { .. }), "{e}");
}

#[test]
fn issuers_need_a_root_that_allows_them_and_a_credential_that_is_one() {
    let pki = TestPki::new("test.mesh");
    // A root made with path length 0 (as `ca init` did before issuers existed).
    let old = tempfile::tempdir().unwrap();
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.subject_alt_names = vec![uri("spiffe://test.mesh")];
    let key = KeyPair::generate().unwrap();
    let root = p.self_signed(&key).unwrap();
    std::fs::write(old.path().join("ca.crt"), root.pem()).unwrap();
    std::fs::write(old.path().join("ca.key"), key.serialize_pem()).unwrap();
    let e = init_issuer(&IssuerInit {
        ca_dir: old.path().to_owned(),
        name: n("n1"),
        validity: Duration::from_secs(86_400),
        out_dir: old.path().join("out"),
        force: false,
    })
    .unwrap_err();
    assert!(e.to_string().contains("path length 0"), "{e}");

    // An issuer may not outlive its root.
    let e = init_issuer(&IssuerInit {
        ca_dir: pki.ca_dir(),
        name: n("n1"),
        validity: Duration::from_secs(100 * 365 * 86_400),
        out_dir: pki.path().join("out"),
        force: false,
    })
    .unwrap_err();
    assert!(e.to_string().contains("outlive"), "{e}");

    // A node certificate is no issuer credential; an issuer of another CA is refused.
    let node = pki.node("n1", &[]);
    let e = Authority::load(&node.cert, &node.key, &pki.bundle()).unwrap_err();
    assert!(e.to_string().contains("not an issuer"), "{e}");
    let other = TestPki::new("test.mesh");
    let files = other.issuer("x");
    let e = Authority::load(&files.cert, &files.key, &pki.bundle()).unwrap_err();
    assert!(e.to_string().contains("refused by the trust bundle"), "{e}");
    // And one of another trust domain.
    let td = TrustDomain::parse("other.mesh").unwrap();
    let foreign = TestPki::new(td.as_str());
    let files = foreign.issuer("y");
    assert!(Authority::load(&files.cert, &files.key, &pki.bundle()).is_err());
}

fn murmur_transport_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
