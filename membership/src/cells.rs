//! Cells: past one gossip domain.
//!
//! A node belongs to one cell. Members, health and heartbeats gossip only within the cell (its
//! own [`Membership`](crate::Membership), cluster id `murmur/<cell>`; the default cell keeps
//! `murmur`). Above the cells runs a second gossip layer, the *top layer* (cluster id
//! [`TOP_CLUSTER_ID`]), whose members are each cell's custodians.
//!
//! # How to use it
//!
//! 1. Start the cell's membership as today (`Membership::start`), with the cluster id
//!    [`cluster_id`]`(cell)`.
//! 2. If [`runs_link`] (not in [`DEFAULT_CELL`] with no top-layer seeds), start
//!    [`CellLink::start`]`(CellLinkConfig { settings: CellSettings::new(cell, &gossip),
//!    top_addr, top_seeds, tls, transport }, membership.clone())`. `transport` is a
//!    [`TopTransport`]: over QUIC, [`QuicTopTransport`], which opens a fresh gossip channel
//!    [`TOP_CHANNEL`] of the node's endpoint for each top-layer instance (`top_addr` is then
//!    the mesh address); in memory,
//!    [`SharedTransport`] of the simulated network (`top_addr` is then an address of its own).
//! 3. Read the view as today: `Membership::view()`/`watch()` now also list other cells'
//!    instances in `services` (each with `Endpoint::cell = Some(cell)`, `stale` when the cell's
//!    summary was not renewed for `ageing.stale_after`, gone after `expire_after`), and the
//!    cells themselves in `ClusterView::cells`. Local instances keep `cell: None`; an instance
//!    whose node is a routable member of this cell is shown only as local.
//! 4. [`CellLink::status`] says who the cell's custodians are and whether this node acts;
//!    [`CellLink::top`] gives the top-layer [`Membership`](crate::Membership) while this node
//!    is in it (to carry policy documents across cells); [`CellLink::set_policy_digest`] sets
//!    the digest the summary carries; [`CellLink::shutdown`] leaves the top layer.
//!
//! A single-cell mesh starts no `CellLink`: nothing new is gossiped, no top layer runs, and
//! the view is exactly what it was (an empty [`RemoteView`](crate::RemoteView) changes
//! nothing).
//!
//! # What runs where
//!
//! Every member ranks its cell's live members by rendezvous hash ([`rank::custodians`], k =
//! [`rank::DEFAULT_CUSTODIANS`]). The ranked ones join the top layer (a second `Membership`,
//! fresh generation each time, label `cell=<cell>`); one that stops being ranked stays
//! `linger` longer, so handovers overlap. The first live one *acts*: it publishes its cell's
//! summary in its top-layer namespace and copies (bridges) every other cell's summary that is
//! not expired into its own namespace in the cell. The next ranked stands by in the top layer
//! with the directory already read, watching the heartbeats of the ones ranked ahead of it:
//! once none of them moved for `takeover` (five gossip intervals), it publishes and bridges
//! too, without waiting for in-cell detection (tuned to ride out stalls, so slower) to drop
//! them from the ranking. Two acting at once for a while (a stall, not a death) costs bytes,
//! not correctness: readers keep the newest header of each cell.
//!
//! # Keys (all signed like every other value; see [`summary`])
//!
//! - top layer, acting custodian of cell C: `cell/C/h`, `cell/C/s/<service>`, `cell/C/t`;
//! - cell layer, acting custodian of C: the same keys of every other cell D (`cell/D/...`),
//!   bodies copied verbatim.
//!
//! Every member reads the `cell/` keys of the namespaces of its cell's 2k best-ranked live
//! members (the custodians and the ones just outranked; any other member's `cell/` keys are
//! ignored), custodians also every top-layer namespace; keeps the newest header per cell (and
//! the newest beacon, whoever carried it); and judges freshness by when it last saw the cell's
//! beacon move on ([`directory::Freshness`]). A cell stays known until it expires, even when
//! no namespace carries it for a moment (a custodian died and the next one has not bridged
//! yet). Headers stamped more than [`directory::MAX_SKEW`] ahead of this node's clock are
//! ignored; a custodian taking over stamps above the newest header of its cell it can see.
//!
//! Not checked: that a top-layer member speaks for the cell it names. Other cells cannot see
//! this cell's members; a custodian could publish a summary for a cell it is not in. Dials
//! still check the serving node's certificate name and that it may serve the service, so a
//! lying summary can fail or steer calls, not take them over.
//!
//! # Push, not pull
//!
//! Remote summaries are pushed into every cell rather than pulled on demand: the same code runs
//! over any chitchat transport (the simulator measures it), every node routes to another
//! cell's instance with no request of its own first, and an unchanged directory costs nothing
//! but digests and beacons. What it costs: a header or shard travels only when it changes,
//! a beacon (about 0.2 KB signed) per cell every `beacon_every` (5 s): with 50 cells about
//! 2 KB/s per node, plus changed shards (about 0.5 KB each). A node joining a cell copies the
//! whole directory (about 20 KB per cell of 50 services). Pulling remote services a node calls
//! from a custodian would cut both, at the price of a first request that waits.

mod cache;
pub mod directory;
mod link;
pub mod publish;
mod quic;
pub mod rank;
mod silence;
pub mod summary;

pub use crate::records::CELL_PREFIX as KEY_PREFIX;
pub use link::{
    CELL_LABEL, CellLink, CellLinkConfig, CellSettings, CellStatus, DEFAULT_CELL, SharedTransport,
    TOP_CLUSTER_ID, TopTransport, cluster_id, runs_link, wall_ms,
};
pub use quic::{QuicTopTransport, TOP_CHANNEL};
