//! The checks behind Murmuration's fuzz targets.
//!
//! Every target is one function of this crate taking the fuzzer's bytes; `fuzz_targets/` only
//! wraps them for libFuzzer, and `tests/regressions.rs` replays the committed seeds and
//! regression inputs through the same functions on the stable toolchain. A check panics (and
//! libFuzzer reports a crash) when a decoder panics, or when a property of what it decoded does
//! not hold: a decoded value re-encodes to something that decodes to the same value, an
//! accepted input obeys the limits the decoder promises, and so on.

// A failed check is a panic, so unwrapping is how this crate says what must hold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cert;
pub mod identity;
pub mod issuance;
pub mod message;
pub mod node;
pub mod pack;
pub mod persist;
pub mod pki;
pub mod policy;
pub mod prescan;
pub mod records;
pub mod wire;

/// The check of one target: panics when the input breaks a property.
pub type Check = fn(&[u8]);

/// Every target by name.
pub const TARGETS: &[(&str, Check)] = &[
    ("wire_gossip", targets::wire_gossip),
    ("wire_header", targets::wire_header),
    ("gossip_prescan", targets::gossip_prescan),
    ("gossip_message", targets::gossip_message),
    ("gossip_unpack", targets::gossip_unpack),
    ("cert_der", targets::cert_der),
    ("cert_sans", targets::cert_sans),
    ("identity", targets::identity),
    ("issuance_request", targets::issuance_request),
    ("records", targets::records),
    ("persist_files", targets::persist_files),
    ("policy_file", targets::policy_file),
    ("policy_document", targets::policy_document),
    ("policy_merge", targets::policy_merge),
    ("node_traceparent", targets::node_traceparent),
    ("node_frame", targets::node_frame),
    ("node_config", targets::node_config),
];

/// The entry point of each target.
pub mod targets {
    pub use crate::cert::{der as cert_der, sans as cert_sans};
    pub use crate::identity::identity;
    pub use crate::issuance::request as issuance_request;
    pub use crate::message::message as gossip_message;
    pub use crate::node::traceparent as node_traceparent;
    pub use crate::node::{config as node_config, frame as node_frame};
    pub use crate::pack::unpack as gossip_unpack;
    pub use crate::persist::files as persist_files;
    pub use crate::policy::{
        document as policy_document, file as policy_file, merge::merge as policy_merge,
    };
    pub use crate::prescan::prescan as gossip_prescan;
    pub use crate::records::records;
    pub use crate::wire::{gossip as wire_gossip, header as wire_header};
}

/// The input as text, if it is UTF-8.
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}
