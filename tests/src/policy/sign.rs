//! Signed documents made the way `murmur policy apply` makes them, and broken on purpose:
//! signed by the wrong key, altered or re-stamped after signing.

use std::path::Path;

use murmur_membership::policy::document::Payload;
use murmur_membership::policy::service::now_ms;
use murmur_membership::policy::{Hlc, SignedDocument, Stamp, parse_file, sign};
use murmur_membership::records;
use murmur_transport::signing::Signer;

use super::Policies;
use crate::node::NodeProc;

/// The signing key of a certificate (its key is the file beside it with extension `.key`),
/// whatever its role: an operator's, or a node's for a forgery.
pub fn signer(cert: &Path) -> Signer {
    Signer::load(cert, &cert.with_extension("key")).expect("load signer")
}

/// A stamp for a document handed to the node whose state is `p`, one tick above its clock:
/// what the CLI stamps.
pub fn next_stamp(p: &Policies) -> Stamp {
    Stamp {
        hlc: p.clock.read(now_ms()).next(),
        origin: p.node.clone(),
    }
}

/// A stamp at `hlc` with `origin`.
pub fn stamp(hlc: Hlc, origin: &str) -> Stamp {
    Stamp {
        hlc,
        origin: origin.to_owned(),
    }
}

/// Signs the single document of the policy file `toml` with `stamp`.
pub fn sign_toml(signer: &Signer, toml: &str, stamp: Stamp) -> String {
    let mut docs = parse_file("test.toml", toml).expect("a valid policy file");
    assert_eq!(docs.len(), 1, "one document expected");
    let body = docs.remove(0);
    sign(signer, body.kind(), body.name(), stamp, Some(&body)).expect("sign")
}

/// The signed payload of a document.
pub fn payload(value: &str) -> Payload {
    let doc: SignedDocument = records::decode(value).expect("a signed document");
    postcard::from_bytes(&doc.payload).expect("a payload")
}

/// `value` with its payload changed by `f` after signing; signature and chain are kept.
pub fn tamper(value: &str, f: impl FnOnce(&mut Payload)) -> String {
    let mut doc: SignedDocument = records::decode(value).expect("a signed document");
    let mut p: Payload = postcard::from_bytes(&doc.payload).expect("a payload");
    f(&mut p);
    doc.payload = postcard::to_stdvec(&p).expect("encode payload");
    records::encode(&doc).expect("encode document")
}

/// The compact JSON body of the single document of the policy file `toml`.
pub fn body_json(toml: &str) -> String {
    let docs = parse_file("test.toml", toml).expect("a valid policy file");
    docs.first().expect("one document").to_json()
}

/// The signed document a node keeps on disk for `kind/name`: the exact bytes an operator's
/// apply produced (the node writes its winning set before answering the apply).
pub fn persisted(node: &NodeProc, kind: &str, name: &str) -> String {
    let path = node.dir.join("data").join("policies.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file: serde_json::Value = serde_json::from_str(&text).expect("policies.json is JSON");
    file["documents"]
        .as_array()
        .expect("a documents array")
        .iter()
        .filter_map(|d| d.as_str())
        .find(|d| {
            let p = payload(d);
            p.kind.as_str() == kind && p.name == name
        })
        .unwrap_or_else(|| panic!("{} keeps no {kind}/{name}", node.name()))
        .to_owned()
}
