//! Many real membership nodes in one process, over an in-memory network, in virtual time.
//!
//! This crate measures how the gossip layer (chitchat, driven by `murmur-membership`) behaves
//! as the mesh grows: join convergence, propagation of a key, failure detection, false deaths
//! under loss, bandwidth, partition healing and long churn. See the crate README.

pub mod cluster;
pub mod net;
pub mod output;
pub mod probe;
pub mod report;
pub mod scenarios;
pub mod stats;
