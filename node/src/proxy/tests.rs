//! The data path's "do" side without processes: caller and serving proxies in this test, each
//! on its own QUIC endpoint on loopback with certificates from a throw-away CA, apps as tasks.

mod edges;
mod exchange;
mod harness;
mod inbound;
mod limits;
mod onboarding;
mod upstream;
