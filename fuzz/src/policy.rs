//! Policy: the TOML file an operator writes, the signed document that travels in gossip, and
//! the merge of versions (`membership::policy`).

pub mod merge;

use std::time::Duration;

use murmur_membership::policy::document::{PAYLOAD_VERSION, Payload};
use murmur_membership::policy::spec::PolicyBody;
use murmur_membership::policy::{
    Hlc, Kind, MAX_BODY_BYTES, PolicyDocument, SignedDocument, Stamp, key, parse_file, parse_key,
    verify,
};
use murmur_membership::records::{self, RECORD_VERSION};
use murmur_transport::identity::{Name, Role};
use murmur_transport::signing::Signer;

use crate::pki::{MAX_SKEW, pki};

/// A policy file. Whatever is accepted is valid, fits the size limit, is unique per kind and
/// name, and survives both ways it is re-encoded: the JSON that is signed and the TOML that
/// `policy get` prints.
pub fn file(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    let bodies = match parse_file("fuzz.toml", text) {
        Ok(bodies) => bodies,
        Err(e) => {
            assert_eq!(e.file, "fuzz.toml");
            assert!(e.to_string().starts_with("fuzz.toml: "));
            return;
        }
    };
    let mut seen = std::collections::BTreeSet::new();
    for body in &bodies {
        assert!(seen.insert((body.kind(), body.name().clone())), "duplicate");
        body.validate().unwrap();
        let json = body.to_json();
        assert!(json.len() <= MAX_BODY_BYTES);
        assert_eq!(&PolicyBody::from_json(body.kind(), &json).unwrap(), body);
        let toml = body.to_toml();
        let again = parse_file("get", &toml).unwrap_or_else(|e| panic!("{toml}\n{e}"));
        assert_eq!(again, std::slice::from_ref(body), "{toml}");
    }
}

/// What an operator's signature covers, prepended to the payload (the `document` module keeps
/// it private; [`signing_context_is_current`] fails if the two drift apart).
const SIGNING_CONTEXT: &[u8] = b"murmur policy document v1\0";

/// A gossip value, in one of four shapes chosen by the first byte:
/// 0. the rest as the value itself;
/// 1. the rest as a payload, signed by the operator (reaches the payload decoder);
/// 2. the rest as the JSON body of a document of a kind the next byte picks, signed (reaches
///    the body decoders: such a document is accepted exactly when its body is valid);
/// 3. the rest as the leaf certificate of the signer's chain (never accepted).
pub fn document(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(signing_context_is_current);
    let cx = pki().context(MAX_SKEW);
    match mode % 4 {
        0 => {
            if let Some(value) = crate::text(rest)
                && let Ok(doc) = verify(value, &cx)
            {
                accepted(value, &doc);
            }
        }
        1 => {
            let Some(value) = signed(rest, chain(&pki().operator)) else {
                return;
            };
            if let Ok(doc) = verify(&value, &cx) {
                accepted(&value, &doc);
                let payload: Payload = postcard::from_bytes(rest).unwrap();
                assert_eq!(payload.kind, doc.kind());
                assert_eq!(payload.name, doc.name().as_str());
                assert_eq!(&payload.stamp, doc.stamp());
                assert!(postcard::to_stdvec(&payload).unwrap().len() <= rest.len());
            }
        }
        2 => body(rest),
        _ => {
            let payload = payload(Kind::Timeout, "fuzz", Some("{}".into()));
            let mut chain = chain(&pki().operator);
            if chain[0] == rest {
                return;
            }
            chain[0] = rest.to_vec();
            if let Some(value) = signed(&payload, chain) {
                assert!(verify(&value, &cx).is_err(), "a forged chain was accepted");
            }
        }
    }
}

fn body(rest: &[u8]) {
    let Some((&k, json)) = rest.split_first() else {
        return;
    };
    let Some(json) = crate::text(json) else {
        return;
    };
    let kind = Kind::ALL[usize::from(k) % Kind::ALL.len()];
    let name = serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get("name")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "fuzz".to_owned());
    let payload = payload(kind, &name, Some(json.to_owned()));
    let Some(value) = signed(&payload, chain(&pki().operator)) else {
        return;
    };
    let verdict = verify(&value, &pki().context(MAX_SKEW));
    let expected = Name::parse("name", &name).ok().and_then(|n| {
        let body = PolicyBody::from_json(kind, json).ok()?;
        (json.len() <= MAX_BODY_BYTES && body.name() == &n).then_some(body)
    });
    match (&verdict, &expected) {
        (Ok(doc), Some(body)) => {
            accepted(&value, doc);
            assert_eq!(doc.body(), Some(body));
        }
        (Err(_), None) => {}
        _ => panic!("{kind} {json:?}: verify says {verdict:?}, the body decoder {expected:?}"),
    }
}

/// What holds for every accepted document.
fn accepted(value: &str, doc: &PolicyDocument) {
    let cx = pki().context(MAX_SKEW);
    assert_eq!(doc.value(), value);
    assert_eq!(doc.key(), key(doc.kind(), doc.name().as_str()));
    assert_eq!(
        parse_key(&doc.key()),
        Some((doc.kind(), doc.name().as_str()))
    );
    assert_eq!(doc.signer().role, Role::Operator);
    assert!(doc.stamp().hlc.ms <= cx.now_ms + MAX_SKEW.as_millis() as u64);
    if let Some(body) = doc.body() {
        assert_eq!(body.kind(), doc.kind());
        assert_eq!(body.name(), doc.name());
        body.validate().unwrap();
    }
    let again = verify(value, &cx).unwrap();
    assert!(again == *doc, "verification is not deterministic");
    // The envelope re-encoded (shortest form) carries the same signed content.
    let envelope: SignedDocument = records::decode(value).unwrap();
    let shorter = records::encode(&envelope).unwrap();
    let same = verify(&shorter, &cx).unwrap();
    assert_eq!(same.payload_hash(), doc.payload_hash());
    assert_eq!(same.body(), doc.body());
}

/// An unsigned payload of the current version.
pub fn payload(kind: Kind, name: &str, body: Option<String>) -> Vec<u8> {
    postcard::to_stdvec(&Payload {
        version: PAYLOAD_VERSION,
        kind,
        name: name.to_owned(),
        stamp: Stamp {
            hlc: Hlc {
                ms: pki().base_ms,
                logical: 0,
            },
            origin: "n1".into(),
        },
        body,
    })
    .unwrap()
}

/// A signer's chain, DER.
pub fn chain(signer: &Signer) -> Vec<Vec<u8>> {
    signer.chain().iter().map(|c| c.to_vec()).collect()
}

/// `payload` signed by the operator and sent with `chain`; `None` when too large for gossip.
pub fn signed(payload: &[u8], chain: Vec<Vec<u8>>) -> Option<String> {
    let mut msg = SIGNING_CONTEXT.to_vec();
    msg.extend_from_slice(payload);
    let doc = SignedDocument {
        version: RECORD_VERSION,
        payload: payload.to_vec(),
        chain,
        signature: pki().operator.sign(&msg).unwrap(),
    };
    records::encode(&doc).ok()
}

/// Fails when this crate's copy of the signing context no longer matches the project's.
pub fn signing_context_is_current() {
    let p = payload(Kind::Timeout, "fuzz", None);
    let value = signed(&p, chain(&pki().operator)).unwrap();
    let cx = pki().context(Duration::MAX);
    assert!(verify(&value, &cx).is_ok(), "the signing context changed");
}
