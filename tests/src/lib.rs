//! The end-to-end harness: real `murmur` processes, each test in its own network namespace.
//!
//! A test body runs on a thread that entered a fresh network namespace ([`netns::run`]), so the
//! nodes it starts, the apps it serves and the requests it sends see only that namespace's
//! loopback: tests can use the addresses an issue names (127.0.0.2, ...) and the default ports,
//! run in parallel, and cut links with `ip rule` without touching the host.

// A harness reports failure by panicking; that is what a failed test is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod apps;
pub mod cluster;
pub mod gateway;
pub mod grpc;
pub mod health_app;
pub mod hostile;
pub mod http;
pub mod load;
pub mod netns;
pub mod node;
pub mod onboarding;
pub mod otlp;
pub mod pki;
pub mod policy;
pub mod promql;
pub mod quic;
pub mod traffic;
pub mod wait;

pub use cluster::Cluster;
pub use node::{NodeProc, NodeSpec};
pub use pki::Pki;
pub use wait::wait_until;
