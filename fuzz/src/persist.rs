//! Files read back at start (`membership::persist`, `membership::policy::persist`): the
//! last-known cluster view and the last winning policy set. Both are JSON of our own making, but
//! a file on disk is still input: a crash mid-write or another program can leave anything.

use std::time::Duration;

use murmur_membership::persist::{FailStatic, fuzzing, mark_stale};
use murmur_membership::policy::persist::PolicyFile;
use murmur_membership::policy::verify;
use murmur_membership::view::ClusterView;
use tokio::time::Instant;

use crate::pki::pki;

/// Documents of a policy file checked per input (each costs a signature check).
const MAX_DOCUMENTS: usize = 8;

/// The input as a view file and as a policy file.
pub fn files(data: &[u8]) {
    if let Some(view) = fuzzing::decode(data) {
        view_file(view);
    }
    if let Ok(file) = serde_json::from_slice::<PolicyFile>(data) {
        // Restoring checks each document again, without the clock-skew rule.
        let cx = pki().context(Duration::MAX);
        for value in file.documents.iter().take(MAX_DOCUMENTS) {
            if let Ok(doc) = verify(value, &cx) {
                assert_eq!(doc.value(), value);
            }
        }
    }
}

/// A view read back is written back identically, and the fail-static rules hold on it.
fn view_file(view: ClusterView) {
    let json = serde_json::json!({ "version": 1, "view": view });
    let bytes = serde_json::to_vec(&json).unwrap();
    assert_eq!(fuzzing::decode(&bytes).as_ref(), Some(&view));

    let me = view.self_name.clone();
    let stale = mark_stale(view, &me);
    assert!(stale.stale);
    assert!(!stale.members.contains_key(&me));
    assert!(stale.members.values().all(|m| m.stale));
    for eps in stale.services.values() {
        assert!(!eps.is_empty());
        assert!(eps.iter().all(|e| e.stale && e.node.as_str() != me));
    }

    // With nothing heard from gossip yet, the disk's members all come back.
    let mut fs = FailStatic::new(Some(stale.clone()), Duration::from_secs(30));
    let live = ClusterView {
        self_name: me,
        ..ClusterView::default()
    };
    let merged = fs.apply(live, Instant::now());
    for name in stale.members.keys() {
        assert!(merged.members.contains_key(name), "{name} is lost");
    }
}
