//! Certificate requests (`transport::issuance`, `transport::certs`): the envelopes of an
//! `Identity` stream, the join token inside a join, and the certificate request an issuer reads
//! from a node it does not trust yet.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use murmur_transport::certs::read_request;
use murmur_transport::identity::{Name, SpiffeId};
use murmur_transport::issuance::Authority;
use murmur_transport::issuance::protocol::{
    MAX_REQUEST_BYTES, Request, decode_answer, decode_request, encode_answer, encode_request,
};
use murmur_transport::issuance::token;

use crate::pki::pki;

/// The bytes as a request envelope, an answer envelope, a token and a certificate request.
/// Nothing panics; an envelope re-encodes to itself; a token is accepted only when it is for
/// this mesh and not expired; a certificate request that is read is signed for exactly the
/// identity and (at most) the services granted, as a leaf.
pub fn request(data: &[u8]) {
    if data.len() <= MAX_REQUEST_BYTES
        && let Ok(req) = decode_request(data)
    {
        let again = encode_request(&req).unwrap();
        assert_eq!(decode_request(&again).unwrap(), req);
        match &req {
            Request::Join { token, csr } => {
                check_token(token);
                check_csr(csr);
            }
            Request::Renew { csr } => check_csr(csr),
        }
    }
    if let Ok(answer) = decode_answer(data) {
        let again = encode_answer(&answer).unwrap();
        assert_eq!(decode_answer(&again).unwrap(), answer);
    }
    if let Some(text) = crate::text(data) {
        check_token(text);
    }
    check_csr(data);
}

fn check_token(text: &str) {
    let now = pki().base_ms + 60_000;
    let _ = token::read_claims(text);
    if let Ok(t) = token::verify(text, &pki().bundle, now) {
        assert_eq!(&t.claims.trust_domain, pki().bundle.trust_domain());
        assert!(t.claims.expires_ms > now);
    }
}

fn check_csr(der: &[u8]) {
    let id = SpiffeId::node(pki().test.trust_domain.clone(), name("n1"));
    let services: BTreeSet<Name> = [name("web")].into();
    let Ok(req) = read_request(der, &id, &services) else {
        return;
    };
    let issued = authority()
        .sign(
            &req,
            &id,
            &services,
            Duration::from_secs(600),
            &pki().bundle,
        )
        .unwrap();
    // `info` is what the bundle verified and `parse_leaf` read, and that refuses a CA.
    assert_eq!(issued.info.id, id);
    assert_eq!(issued.info.services, services);
}

/// An issuer credential of the process's PKI.
fn authority() -> &'static Authority {
    static AUTHORITY: OnceLock<Authority> = OnceLock::new();
    AUTHORITY.get_or_init(|| pki().test.authority("fuzz"))
}

fn name(s: &str) -> Name {
    Name::parse("name", s).unwrap()
}
