//! Traffic policy in the data path: what each policy kind does to requests, live, on every
//! node the documents reach.
//!
//! The policy set ([`PolicySet`], from gossip) is compiled into per-service [`ServicePolicy`]
//! whenever it changes ([`Compiled`], [`compiled`]); requests read the compiled form (an `Arc` clone) and the
//! state that outlives a request lives in [`Traffic`] ([`state`]): retry budgets, rate-limit buckets,
//! pending counts. Outlier ejection state lives with the balancer ([`crate::balance`]).
//!
//! | kind | where | module |
//! |---|---|---|
//! | `route` (match, split, subset, fault, header edits, rewrite, redirect, mirror, hashing) | calling node | [`routes`], [`split`], [`fault`], [`actions`] |
//! | `timeout` | calling node; deadline enforced on the serving node too | [`timeout`] |
//! | `retry` | calling node | [`retry`], [`budget`] |
//! | `circuit` | calling node | [`circuit`] |
//! | `ratelimit` | serving node | [`ratelimit`], [`share`] |
//! | `authz` | serving node | [`authz`] |
//! | `accesslog` | calling and serving node | [`accesslog`] |
//!
//! Paths are normalized once ([`normalize`]) before routing and authorization see them.
//! A service no document names costs one hash lookup per request.

pub mod accesslog;
pub mod actions;
pub mod authz;
pub mod budget;
pub mod circuit;
pub mod compiled;
pub mod fault;
pub mod matching;
pub mod normalize;
pub mod ratelimit;
pub mod retry;
pub mod routes;
pub mod share;
pub mod split;
pub mod state;
pub mod timeout;

pub use compiled::{Circuit, Compiled};
pub use state::Traffic;

#[cfg(test)]
pub(crate) mod tests;
