//! Node configuration: a TOML file and command-line flags, parsed in two stages.
//!
//! Stage one ([`raw`]) is a serde image of the file with `deny_unknown_fields`, so a typo is an
//! error that names the file, line and field. Stage two ([`typed`]) merges flags over the file,
//! applies defaults and validates everything into a [`Config`] whose invalid states cannot be
//! represented.

#![allow(
    clippy::disallowed_methods,
    reason = "the config is read once, before the node's runtime starts"
)]

pub mod duration;
pub mod limits;
pub mod raw;
pub mod typed;

pub use typed::{Config, ConfigError, Overrides, capture_settings};
