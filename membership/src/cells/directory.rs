//! Reading other cells' summaries out of gossip state, judging how fresh each is, and turning
//! them into the endpoints the view lays over this cell's own.
//!
//! The same reader serves both layers: in the top layer each custodian's namespace holds its
//! own cell's summary; in a cell, the acting custodian's namespace holds the summaries of every
//! other cell it bridges in. When several namespaces hold a cell (two custodians during a
//! handover), the header with the newest stamp wins and its shards come from the same
//! namespace, so a reader never mixes two versions of a cell.

use std::collections::BTreeMap;
use std::time::Duration;

use murmur_transport::identity::Name;
use tokio::time::Instant;
use tracing::debug;

use super::summary::{self, CellKey, Header, Shard};
use crate::view::{Endpoint, RemoteCell, RemoteView};

/// Cells one node keeps at most (more are ignored, in name order).
pub const MAX_CELLS: usize = 256;
/// How far ahead of this node's clock a beacon may be and still count: clocks differ, but a
/// beacon far in the future would keep a dead cell fresh.
pub const MAX_SKEW: Duration = Duration::from_secs(30);

/// One cell's summary as read from one or more namespaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellSummary {
    /// Its header.
    pub header: Header,
    /// The shards its header lists and that decoded, by service.
    pub shards: BTreeMap<String, Shard>,
    /// The newest beacon (ms since the epoch, the publisher's clock), or the header's stamp.
    pub beacon_ms: u64,
    /// The bodies as found, by key: what a custodian bridges into its cell verbatim.
    pub raw: BTreeMap<String, String>,
}

/// Summaries of other cells, by cell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    /// By cell name.
    pub cells: BTreeMap<String, CellSummary>,
}

/// The summaries one namespace holds: (key, body) pairs, bodies already unwrapped from their
/// signed envelopes. Keys outside `cell/` are skipped.
fn read_namespace<'a>(
    own_cell: &str,
    max_stamp: u64,
    kvs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, CellSummary> {
    let mut headers: BTreeMap<&str, (Header, &str, &str)> = BTreeMap::new();
    let mut beacons: BTreeMap<&str, (u64, &str, &str)> = BTreeMap::new();
    let mut shards: BTreeMap<(&str, &str), (&str, &str)> = BTreeMap::new();
    for (key, body) in kvs {
        match summary::parse_key(key) {
            Some(CellKey::Header(c)) if c != own_cell => match summary::decode_header(c, body) {
                // A stamp from the future would win over every honest header to come.
                Ok(h) if h.stamp_ms > max_stamp => {
                    debug!(%key, stamp = h.stamp_ms, "cell header from the future ignored");
                }
                Ok(h) => {
                    headers.insert(c, (h, key, body));
                }
                Err(e) => debug!(%key, error = %e, "cell header ignored"),
            },
            Some(CellKey::Beacon(c)) if c != own_cell => match summary::decode_beacon(c, body) {
                Ok(b) => {
                    beacons.insert(c, (b.stamp_ms, key, body));
                }
                Err(e) => debug!(%key, error = %e, "cell beacon ignored"),
            },
            Some(CellKey::Shard(c, s)) if c != own_cell => {
                shards.insert((c, s), (key, body));
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    for (cell, (header, hkey, hbody)) in headers.into_iter().take(MAX_CELLS) {
        let mut raw = BTreeMap::from([(hkey.to_owned(), hbody.to_owned())]);
        let mut beacon_ms = header.stamp_ms;
        if let Some((ms, bkey, bbody)) = beacons.get(cell) {
            beacon_ms = beacon_ms.max(*ms);
            raw.insert((*bkey).to_owned(), (*bbody).to_owned());
        }
        let mut got = BTreeMap::new();
        for service in &header.services {
            let Some((skey, sbody)) = shards.get(&(cell, service.as_str())) else {
                continue;
            };
            match summary::decode_shard(cell, service, sbody) {
                Ok(s) => {
                    raw.insert((*skey).to_owned(), (*sbody).to_owned());
                    got.insert(service.clone(), s);
                }
                Err(e) => debug!(key = %skey, error = %e, "cell shard ignored"),
            }
        }
        out.insert(
            cell.to_owned(),
            CellSummary {
                header,
                shards: got,
                beacon_ms,
                raw,
            },
        );
    }
    out
}

impl CellSummary {
    /// Takes the newer header (with its shards) and the newer beacon of `self` and `other`,
    /// with their bodies: a custodian bridges the beacon that counts.
    fn merge(&mut self, mut other: Self) {
        let key = summary::beacon_key(&self.header.cell);
        let beacon = if other.beacon_ms > self.beacon_ms {
            (other.beacon_ms, other.raw.remove(&key))
        } else {
            (self.beacon_ms, self.raw.remove(&key))
        };
        if other.header.stamp_ms > self.header.stamp_ms {
            *self = other;
        }
        self.beacon_ms = beacon.0;
        match beacon.1 {
            Some(body) => {
                self.raw.insert(key, body);
            }
            None => {
                self.raw.remove(&key);
            }
        }
    }
}

impl Directory {
    /// Reads every namespace (one per member) and keeps, per cell other than `own_cell`, the
    /// newest summary; at most [`MAX_CELLS`] cells. Headers stamped after `now_ms` plus
    /// [`MAX_SKEW`] are ignored.
    pub fn read<'a, N, I>(own_cell: &str, now_ms: u64, namespaces: N) -> Self
    where
        N: IntoIterator<Item = I>,
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut dir = Self::default();
        for ns in namespaces {
            dir.merge(Self {
                cells: read_namespace(own_cell, max_stamp(now_ms), ns),
            });
        }
        dir
    }

    /// Takes each beacon (cell, stamp, key, body) newer than the one held for a known cell;
    /// beacons of cells not known are left for the summary that comes with them. Whether a
    /// beacon is believable is judged by its age ([`Freshness`]), as for one read with its summary.
    pub fn renew_beacons(&mut self, beacons: Vec<(String, u64, String, String)>) {
        for (cell, ms, key, body) in beacons {
            let Some(s) = self.cells.get_mut(&cell) else {
                continue;
            };
            if ms > s.beacon_ms {
                s.beacon_ms = ms;
                s.raw.insert(key, body);
            }
        }
    }

    /// Adds what `other` knows that this one does not, or knows newer (a custodian reads the
    /// top layer and its own cell).
    pub fn merge(&mut self, other: Self) {
        for (cell, s) in other.cells {
            if self.cells.len() >= MAX_CELLS && !self.cells.contains_key(&cell) {
                continue;
            }
            match self.cells.get_mut(&cell) {
                None => {
                    self.cells.insert(cell, s);
                }
                Some(cur) => cur.merge(s),
            }
        }
    }
}

/// The newest header stamp believed at `now_ms`.
pub fn max_stamp(now_ms: u64) -> u64 {
    let skew = u64::try_from(MAX_SKEW.as_millis()).unwrap_or(u64::MAX);
    now_ms.saturating_add(skew)
}

/// How old a cell's summary is, as this node judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Age {
    /// Renewed recently.
    Fresh,
    /// Not renewed for `stale_after`: still used, marked stale.
    Stale,
    /// Not renewed for `expire_after`: dropped.
    Expired,
}

/// When summaries turn stale and expire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ageing {
    /// Not renewed for this long: stale.
    pub stale_after: Duration,
    /// Not renewed for this long: expired.
    pub expire_after: Duration,
}

/// When this node last saw each cell's beacon move on. Ages by this node's own clock, so a
/// custodian's clock only matters through [`MAX_SKEW`].
#[derive(Debug, Default)]
pub struct Freshness {
    seen: BTreeMap<String, (u64, Instant)>,
}

impl Freshness {
    /// The age of `cell`'s summary whose newest beacon says `beacon_ms`, now.
    pub fn judge(
        &mut self,
        cell: &str,
        beacon_ms: u64,
        now: Instant,
        wall_ms: u64,
        ageing: Ageing,
    ) -> Age {
        let skew = u64::try_from(MAX_SKEW.as_millis()).unwrap_or(u64::MAX);
        // A beacon from the future moves nothing on (first seen, it counts as renewed now).
        let believable = beacon_ms <= wall_ms.saturating_add(skew);
        let entry = self
            .seen
            .entry(cell.to_owned())
            .or_insert((if believable { beacon_ms } else { wall_ms }, now));
        if believable && beacon_ms > entry.0 {
            *entry = (beacon_ms, now);
        }
        let by_us = now.duration_since(entry.1);
        let by_stamp = Duration::from_millis(wall_ms.saturating_sub(entry.0).saturating_sub(skew));
        let age = by_us.max(by_stamp);
        if age >= ageing.expire_after {
            Age::Expired
        } else if age >= ageing.stale_after {
            Age::Stale
        } else {
            Age::Fresh
        }
    }

    /// Forgets cells no longer in `dir` (the map stays bounded by [`MAX_CELLS`]).
    pub fn retain(&mut self, dir: &Directory) {
        self.seen.retain(|c, _| dir.cells.contains_key(c));
    }
}

/// The ages of every cell of `dir`, now.
pub fn judge_all(
    dir: &Directory,
    fresh: &mut Freshness,
    now: Instant,
    wall_ms: u64,
    ageing: Ageing,
) -> BTreeMap<String, Age> {
    fresh.retain(dir);
    dir.cells
        .iter()
        .map(|(c, s)| (c.clone(), fresh.judge(c, s.beacon_ms, now, wall_ms, ageing)))
        .collect()
}

/// What the view shows of `dir`: every cell not expired, its endpoints marked with the cell
/// and, when the summary is stale, stale.
pub fn remote_view(dir: &Directory, ages: &BTreeMap<String, Age>) -> RemoteView {
    let mut out = RemoteView::default();
    for (cell, s) in &dir.cells {
        let stale = match ages.get(cell) {
            Some(Age::Fresh) => false,
            Some(Age::Stale) => true,
            Some(Age::Expired) | None => continue,
        };
        for (service, shard) in &s.shards {
            let eps = out.services.entry(service.clone()).or_default();
            eps.extend(shard.instances.iter().filter_map(|i| {
                Some(Endpoint {
                    service: service.clone(),
                    // Checked when the shard was decoded (`Shard::check`).
                    node: Name::try_from(i.node.clone()).ok()?,
                    mesh_addr: i.mesh_addr,
                    protocol: i.protocol,
                    labels: i.labels.clone(),
                    weight: i.weight,
                    health: i.health,
                    balancer: i.balancer,
                    draining: i.draining,
                    stale,
                    cell: Some(cell.clone()),
                })
            }));
        }
        out.cells.insert(
            cell.clone(),
            RemoteCell {
                members: s.header.members,
                custodians: s.header.custodians.iter().map(|c| c.name.clone()).collect(),
                services: s.header.services.len(),
                stale,
                policy_digest: hex(&s.header.policy_digest),
            },
        );
    }
    out
}

fn hex(digest: &[u8; 32]) -> String {
    if digest.iter().all(|b| *b == 0) {
        return String::new();
    }
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cells::summary::{Custodian, Instance, encode_beacon, encode_header, encode_shard};
    use crate::records::{Balancer, Health, Protocol, RECORD_VERSION};

    fn ns(cell: &str, stamp: u64, beacon: Option<u64>, nodes: &[&str]) -> Vec<(String, String)> {
        let shard = Shard {
            version: RECORD_VERSION,
            cell: cell.into(),
            service: "web".into(),
            instances: nodes
                .iter()
                .map(|n| Instance {
                    node: (*n).into(),
                    mesh_addr: "10.0.0.1:7420".parse().unwrap(),
                    protocol: Protocol::Http,
                    labels: BTreeMap::new(),
                    weight: 1,
                    health: Health::Passing,
                    balancer: Balancer::default(),
                    draining: false,
                })
                .collect(),
        };
        let header = Header {
            version: RECORD_VERSION,
            cell: cell.into(),
            stamp_ms: stamp,
            members: 3,
            custodians: vec![Custodian {
                name: "c1".into(),
                top_addr: "10.0.0.9:7420".parse().unwrap(),
            }],
            policy_digest: [0; 32],
            services: vec!["web".into()],
        };
        let mut out = vec![
            (
                summary::shard_key(cell, "web"),
                encode_shard(&shard).unwrap(),
            ),
            (summary::header_key(cell), encode_header(&header).unwrap()),
        ];
        if let Some(b) = beacon {
            out.push((summary::beacon_key(cell), encode_beacon(cell, b).unwrap()));
        }
        out
    }

    fn read(own: &str, namespaces: &[Vec<(String, String)>]) -> Directory {
        Directory::read(
            own,
            10_000,
            namespaces
                .iter()
                .map(|n| n.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        )
    }

    #[test]
    fn the_newest_header_wins_with_its_own_shards_and_the_newest_beacon_counts() {
        let old = ns("east", 100, Some(900), &["old"]);
        let new = ns("east", 200, Some(300), &["new"]);
        let mine = ns("west", 500, None, &["me"]);
        let dir = read("west", &[old.clone(), new.clone(), mine]);
        assert_eq!(dir.cells.len(), 1, "the reader's own cell is not read");
        let east = &dir.cells["east"];
        assert_eq!(east.header.stamp_ms, 200);
        assert_eq!(east.shards["web"].instances[0].node, "new");
        assert_eq!(east.beacon_ms, 900);
        assert_eq!(east.raw.len(), 3);
        let bridged = &east.raw[&summary::beacon_key("east")];
        assert_eq!(
            summary::decode_beacon("east", bridged).unwrap().stamp_ms,
            900
        );
        assert_eq!(
            read("west", &[new.clone(), old]).cells["east"]
                .header
                .stamp_ms,
            200
        );
        // A header stamped in the future does not win.
        let future = ns("east", 10_000 + 31_000, None, &["forged"]);
        assert_eq!(
            read("west", &[new, future]).cells["east"].header.stamp_ms,
            200
        );
    }

    #[test]
    fn shards_not_in_the_header_and_garbage_are_ignored_and_cells_are_bounded() {
        let mut n = ns("east", 1, None, &["a"]);
        n.push((summary::shard_key("east", "api"), n[0].1.clone()));
        n.push((summary::header_key("south"), "%%".into()));
        n.push(("cell/north/h".into(), n[1].1.clone()));
        let dir = read("west", &[n]);
        assert_eq!(dir.cells.keys().collect::<Vec<_>>(), ["east"]);
        assert_eq!(dir.cells["east"].shards.len(), 1);

        let many: Vec<Vec<(String, String)>> = (0..MAX_CELLS + 5)
            .map(|i| ns(&format!("c{i:04}"), 1, None, &["a"]))
            .collect();
        assert_eq!(read("west", &many).cells.len(), MAX_CELLS);
    }

    #[test]
    fn a_summary_turns_stale_then_expires_unless_its_beacon_moves_on() {
        let ageing = Ageing {
            stale_after: Duration::from_secs(10),
            expire_after: Duration::from_secs(60),
        };
        let t0 = Instant::now();
        let wall = 1_000_000;
        let mut f = Freshness::default();
        assert_eq!(f.judge("e", wall, t0, wall, ageing), Age::Fresh);
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(f.judge("e", wall, t1, wall + 11_000, ageing), Age::Stale);
        // Renewed: fresh again.
        assert_eq!(
            f.judge("e", wall + 11_000, t1, wall + 11_000, ageing),
            Age::Fresh
        );
        let t2 = t1 + Duration::from_secs(61);
        assert_eq!(
            f.judge("e", wall + 11_000, t2, wall + 72_000, ageing),
            Age::Expired
        );
        // A beacon from far in the future moves nothing on.
        let mut g = Freshness::default();
        let future = wall + 3_600_000;
        assert_eq!(g.judge("e", future, t0, wall, ageing), Age::Fresh);
        assert_eq!(
            g.judge("e", future + 1, t1, wall + 11_000, ageing),
            Age::Stale
        );
        // A summary first seen long after its last beacon is not fresh.
        let mut h = Freshness::default();
        assert_eq!(h.judge("e", wall, t0, wall + 120_000, ageing), Age::Expired);
    }

    #[test]
    fn the_remote_view_marks_cell_and_staleness_and_leaves_expired_cells_out() {
        let dir = read(
            "west",
            &[
                ns("east", 1, None, &["e1"]),
                ns("north", 1, None, &["n1"]),
                ns("south", 1, None, &["s1"]),
            ],
        );
        let ages = BTreeMap::from([
            ("east".to_owned(), Age::Fresh),
            ("north".to_owned(), Age::Stale),
            ("south".to_owned(), Age::Expired),
        ]);
        let r = remote_view(&dir, &ages);
        assert_eq!(r.cells.keys().collect::<Vec<_>>(), ["east", "north"]);
        assert!(r.cells["north"].stale && !r.cells["east"].stale);
        let eps: Vec<(&str, Option<&str>, bool)> = r.services["web"]
            .iter()
            .map(|e| (e.node.as_str(), e.cell.as_deref(), e.stale))
            .collect();
        assert_eq!(
            eps,
            [("e1", Some("east"), false), ("n1", Some("north"), true)]
        );

        // Laid over a view: a node that is a member here is reached as a local one.
        let mut view = crate::view::ClusterView::default();
        view.members.insert(
            "n1".into(),
            crate::view::Member {
                name: "n1".into(),
                generation: 1,
                mesh_addr: "10.0.0.3:7420".parse().unwrap(),
                admin_addr: None,
                labels: BTreeMap::new(),
                state: crate::view::MemberState::Alive,
                services: vec![],
                stale: false,
                extensions: BTreeMap::new(),
            },
        );
        let over = crate::view::overlay(view.clone(), &r);
        assert_eq!(over.endpoints("web").len(), 1);
        assert_eq!(over.endpoints("web")[0].node, "e1");
        assert_eq!(over.cells.len(), 2);
        assert_eq!(
            crate::view::overlay(view.clone(), &RemoteView::default()),
            view
        );
    }
}
