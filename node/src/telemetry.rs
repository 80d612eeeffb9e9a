//! What a node tells about its traffic: Prometheus metrics ([`metrics`]), one-minute traffic
//! summaries for the CLI and dashboard ([`traffic`]), per-request accounting that feeds both
//! ([`requests`]), the gossiped summary of a node's calls ([`mesh`]), trace export
//! ([`traces`]) and the access log ([`accesslog`]).

pub mod accesslog;
pub mod mesh;
pub mod metrics;
pub mod requests;
pub mod stats;
pub mod traceparent;
pub mod traces;
pub mod traffic;

pub use requests::{Outcome, Telemetry};
