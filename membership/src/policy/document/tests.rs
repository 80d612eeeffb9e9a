use super::*;
use crate::policy::fixtures::{Fixture, n, ratelimit, token_use};
use crate::policy::spec::{PolicyBody, RevocationSpec};

fn reencode(value: &str, f: impl FnOnce(&mut SignedDocument)) -> String {
    let mut doc: SignedDocument = records::decode(value).unwrap();
    f(&mut doc);
    records::encode(&doc).unwrap()
}

fn repayload(value: &str, f: impl FnOnce(&mut Payload)) -> String {
    reencode(value, |doc| {
        let mut p: Payload = postcard::from_bytes(&doc.payload).unwrap();
        f(&mut p);
        doc.payload = postcard::to_stdvec(&p).unwrap();
    })
}

#[test]
fn signed_documents_verify_and_carry_what_was_signed() {
    let fx = Fixture::new();
    let stamp = fx.stamp(0, 3, "n1");
    let doc = fx.doc("limit", stamp.clone(), Some(7));
    assert_eq!(doc.kind(), Kind::Ratelimit);
    assert_eq!(doc.name().as_str(), "limit");
    assert_eq!(doc.stamp(), &stamp);
    assert_eq!(doc.body(), Some(&ratelimit("limit", 7)));
    assert_eq!(doc.signer(), fx.operator.id());
    assert_eq!(doc.key(), "policy/ratelimit/limit");
    let tomb = fx.doc("limit", fx.stamp(1, 0, "n1"), None);
    assert!(tomb.is_tombstone());
    // The same content signed twice has the same payload hash, different envelopes.
    let again = fx.doc("limit", stamp, Some(7));
    assert_eq!(again.payload_hash(), doc.payload_hash());
    assert_ne!(again.value(), doc.value());
}

#[test]
fn documents_signed_by_no_operator_are_refused() {
    let fx = Fixture::new();
    let node = fx.signer(murmur_transport::identity::Role::Node, "n2");
    let body = ratelimit("limit", 1);
    let v = sign(
        &node,
        Kind::Ratelimit,
        &n("limit"),
        fx.stamp(0, 0, "n2"),
        Some(&body),
    )
    .unwrap();
    let e = fx.check(&v).unwrap_err();
    assert_eq!(e.code(), "signature", "{e}");
    assert!(e.to_string().contains("operator"), "{e}");

    let other = Fixture::new();
    let v = other.value("limit", other.stamp(0, 0, "n1"), Some(1));
    assert_eq!(fx.check(&v).unwrap_err().code(), "signature");
}

#[test]
fn altered_or_restamped_documents_are_refused() {
    let fx = Fixture::new();
    let v = fx.value("limit", fx.stamp(0, 0, "n1"), Some(5));
    let altered = repayload(&v, |p| p.body = Some(ratelimit("limit", 5000).to_json()));
    assert_eq!(fx.check(&altered).unwrap_err().code(), "signature");
    let restamped = repayload(&v, |p| p.stamp.hlc.logical += 1);
    assert_eq!(fx.check(&restamped).unwrap_err().code(), "signature");
    let reorigined = repayload(&v, |p| p.stamp.origin = "evil".into());
    assert_eq!(fx.check(&reorigined).unwrap_err().code(), "signature");
    let unsigned = reencode(&v, |d| d.signature.clear());
    assert_eq!(fx.check(&unsigned).unwrap_err().code(), "signature");
    let chainless = reencode(&v, |d| d.chain.clear());
    assert_eq!(fx.check(&chainless).unwrap_err().code(), "signature");
}

#[test]
fn the_chain_is_checked_at_the_stamp_time() {
    let fx = Fixture::new();
    // Stamped in 1970: the operator certificate was not valid then.
    let stamp = Stamp {
        hlc: Hlc {
            ms: 1_000,
            logical: 0,
        },
        origin: "n1".into(),
    };
    let v = fx.value("limit", stamp, Some(5));
    assert_eq!(fx.check(&v).unwrap_err().code(), "signature");
}

#[test]
fn future_stamps_beyond_the_skew_are_refused() {
    let fx = Fixture::new();
    let now = crate::policy::service::now_ms();
    let soon = Stamp {
        hlc: Hlc {
            ms: now + 30_000,
            logical: 0,
        },
        origin: "n1".into(),
    };
    assert!(fx.check(&fx.value("a", soon, Some(1))).is_ok());
    let later = Stamp {
        hlc: Hlc {
            ms: now + 600_000,
            logical: 0,
        },
        origin: "n1".into(),
    };
    let e = fx.check(&fx.value("a", later, Some(1))).unwrap_err();
    assert_eq!(e.code(), "future", "{e}");
}

#[test]
fn signed_but_invalid_bodies_are_refused() {
    let fx = Fixture::new();
    let sign_payload = |p: &Payload| {
        let payload = postcard::to_stdvec(p).unwrap();
        let signature = fx.operator.sign(&signed_message(&payload)).unwrap();
        records::encode(&SignedDocument {
            version: RECORD_VERSION,
            payload,
            chain: fx.operator.chain().iter().map(|c| c.to_vec()).collect(),
            signature,
        })
        .unwrap()
    };
    let mut p = Payload {
        version: PAYLOAD_VERSION,
        kind: Kind::Ratelimit,
        name: "limit".into(),
        stamp: fx.stamp(0, 0, "n1"),
        body: Some(r#"{"name":"limit","service":"web","rate":0}"#.into()),
    };
    assert_eq!(fx.check(&sign_payload(&p)).unwrap_err().code(), "invalid");
    p.body = Some(r#"{"name":"other","service":"web","rate":3}"#.into());
    assert_eq!(fx.check(&sign_payload(&p)).unwrap_err().code(), "invalid");
    p.body = Some(r#"{"name":"limit","service":"web","rate":3,"extra":1}"#.into());
    assert_eq!(fx.check(&sign_payload(&p)).unwrap_err().code(), "invalid");
    p.kind = Kind::Route;
    p.body = Some(r#"{"name":"limit","service":"web","rate":3}"#.into());
    assert_eq!(fx.check(&sign_payload(&p)).unwrap_err().code(), "invalid");
    p.name = "Not A Name".into();
    assert_eq!(fx.check(&sign_payload(&p)).unwrap_err().code(), "malformed");
}

#[test]
fn garbage_is_malformed_and_never_panics() {
    let fx = Fixture::new();
    for v in ["", "!!!", "AAAA", &"A".repeat(20_000)] {
        assert_eq!(fx.check(v).unwrap_err().code(), "malformed");
    }
}

#[test]
fn the_largest_body_still_fits_a_gossip_value() {
    let fx = Fixture::new();
    // An authz document just under the body limit.
    let json_of = |rules: &[String]| {
        format!(
            r#"{{"name":"big","service":"web","default":"deny","rules":[{}]}}"#,
            rules.join(",")
        )
    };
    let mut rules: Vec<String> = Vec::new();
    for i in 0..64 {
        let mut more = rules.clone();
        more.push(format!(
            r#"{{"name":"r{i}","action":"allow","callers":[{{"spiffe":"spiffe://murmur.local/node/n{i}-*"}}]}}"#
        ));
        let encoded = PolicyBody::from_json(Kind::Authz, &json_of(&more))
            .unwrap()
            .to_json();
        if encoded.len() > MAX_BODY_BYTES {
            break;
        }
        rules = more;
    }
    let body = PolicyBody::from_json(Kind::Authz, &json_of(&rules)).unwrap();
    assert!(body.to_json().len() > MAX_BODY_BYTES - 200);
    assert!(body.to_json().len() <= MAX_BODY_BYTES);
    let v = sign(
        &fx.operator,
        Kind::Authz,
        &n("big"),
        fx.stamp(0, 0, "n1"),
        Some(&body),
    )
    .unwrap();
    assert!(v.len() <= records::MAX_VALUE_BYTES, "{} bytes", v.len());
    assert!(fx.check(&v).is_ok());
}

#[test]
fn token_uses_are_signed_by_nodes_revocations_by_operators_and_neither_the_other_way() {
    use murmur_transport::identity::Role;
    let fx = Fixture::new();
    let node = fx.signer(Role::Node, "n1");
    let id = "0123456789abcdef0123456789abcdef";
    let body = token_use(id, "n1", fx.base_ms + 3_600_000);
    let by_node = sign(
        &node,
        Kind::TokenUse,
        &n(id),
        fx.stamp(0, 0, "n1"),
        Some(&body),
    )
    .unwrap();
    let doc = fx.check(&by_node).unwrap();
    assert_eq!(doc.signer(), node.id());
    assert_eq!(doc.key(), format!("policy/token-use/{id}"));
    assert_eq!(doc.body().and_then(PolicyBody::service), None);
    assert_eq!(
        doc.body().and_then(PolicyBody::expires_ms),
        Some(fx.base_ms + 3_600_000)
    );
    let by_operator = sign(
        &fx.operator,
        Kind::TokenUse,
        &n(id),
        fx.stamp(0, 0, "n1"),
        Some(&body),
    )
    .unwrap();
    let e = fx.check(&by_operator).unwrap_err();
    assert!(e.to_string().contains("a node identity is required"), "{e}");
    // A use cannot be deleted: that would let a token be used again.
    let tomb = sign(&node, Kind::TokenUse, &n(id), fx.stamp(1, 0, "n1"), None).unwrap();
    assert_eq!(fx.check(&tomb).unwrap_err().code(), "invalid");

    let revoke = PolicyBody::Revocation(RevocationSpec::node(n("web-1"), Some("stolen".into())));
    let v = sign(
        &fx.operator,
        Kind::Revocation,
        &n("web-1"),
        fx.stamp(0, 0, "n1"),
        Some(&revoke),
    )
    .unwrap();
    assert!(fx.check(&v).is_ok());
    let v = sign(
        &node,
        Kind::Revocation,
        &n("web-1"),
        fx.stamp(0, 0, "n1"),
        Some(&revoke),
    )
    .unwrap();
    assert!(fx.check(&v).unwrap_err().to_string().contains("operator"));
    // A revocation named after something else than what it revokes is invalid.
    let v = sign(
        &fx.operator,
        Kind::Revocation,
        &n("other"),
        fx.stamp(0, 0, "n1"),
        Some(&revoke),
    )
    .unwrap();
    assert_eq!(fx.check(&v).unwrap_err().code(), "invalid");
    let serial = RevocationSpec::serial("4A:0B", None).unwrap();
    assert_eq!(serial.name.as_str(), "serial-4a0b");
    assert!(RevocationSpec::serial("xyz", None).is_err());
}

proptest::proptest! {
    #[test]
    fn verifying_arbitrary_values_never_panics(s in "\\PC{0,300}") {
        let fx = FIXTURE.with(|f| f.bundle.clone());
        let _ = verify(&s, &VerifyContext { bundle: &fx, now_ms: 0, max_skew: Duration::ZERO });
    }
}

thread_local! {
    static FIXTURE: Fixture = Fixture::new();
}
