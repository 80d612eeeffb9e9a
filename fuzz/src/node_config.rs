//! The node's configuration file in its raw form, compiled in by path (see [`crate::node`]):
//! `raw.rs` refers to its sibling `duration.rs` as `super::duration`, so both live here.

#![allow(dead_code, unreachable_pub)]

#[path = "../../node/src/config/duration.rs"]
pub mod duration;
#[path = "../../node/src/config/raw.rs"]
pub mod raw;
