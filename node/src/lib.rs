//! The Murmuration node: a sidecar proxy that joins a mesh by gossip and carries its app's
//! traffic over QUIC with mutual TLS. `murmur` (`main.rs`) is a thin binary over this library.
//!
//! Layers, top to bottom (a module imports only from layers below it; `docs/architecture.md`
//! has the whole map):
//!
//! - [`cli`]: the command line — `murmur run` and the client commands of the admin API.
//! - `config`: the file and flags, parsed once into the settings each part below takes.
//! - `node`: the composition root — builds every part from the config, spawns the node's tasks,
//!   and stops them gracefully.
//! - `admin`, `streams`: the admin API and the router of peers' streams.
//! - `proxy` (the data path), `dns` (the mesh DNS), `capture` (nftables rules), `policy`,
//!   `identity` (issuing, joining, renewal, revocations), `drain`, `services`, `health`.
//! - `traffic` (traffic policy), `balance`, `telemetry`, `vip` (virtual IPs).
//! - [`api`] (the admin JSON), `clock`, `signals`, `logging`, `names` (how apps name services),
//!   `listener` (local listeners' limits), `workers`.

// Tests may block, sleep and read the wall clock; what the node itself may not is in
// node/clippy.toml.
#![cfg_attr(test, allow(clippy::disallowed_methods, clippy::disallowed_types))]

pub mod api;
pub mod cli;

mod admin;
mod balance;
mod capture;
mod cells;
mod clock;
mod config;
mod dns;
mod drain;
mod health;
mod identity;
mod listener;
mod logging;
mod names;
mod node;
mod policy;
mod proxy;
mod readiness;
mod services;
mod shards;
mod signals;
mod streams;
mod telemetry;
mod traffic;
mod vip;
mod workers;

/// Internals the fuzz targets drive directly (the `fuzzing` feature, which only `fuzz/` enables).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use crate::config::{duration, raw};
    pub use crate::proxy::frame;
    pub use crate::telemetry::traceparent;
}
