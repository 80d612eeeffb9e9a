//! Bounds on relayed heartbeats.
//!
//! chitchat passes a member's heartbeat along in every digest, unsigned, and believes any
//! higher value: a relay could raise X's heartbeat so far that X's real beats never count again
//! (X dead everywhere), or keep raising it after X died (X alive forever). Heartbeats cannot be
//! signed (chitchat bumps them itself), so they are bounded instead:
//!
//! - A node's heartbeat counts microseconds of its own monotonic clock since it started
//!   ([`own_heartbeat`]; chitchat's own +1 per message is noise beside it), so how far it can
//!   have moved is known from elapsed time.
//! - A receiver anchors each member's heartbeat to something the member said itself: the value
//!   in a digest the member sent directly (the sender is authenticated by mutual TLS), or,
//!   until then, the heartbeat in its signed `head` record, re-signed every head period.
//! - A relayed heartbeat above `anchor + RATE × elapsed + slack` is not believed. The elapsed
//!   time stops counting [`Horizon`] after the member last showed life itself (a direct message
//!   or a new head): a dead member cannot be kept alive longer than that.
//!
//! What remains (see docs/architecture.md): a relay may still push a heartbeat up to the bound,
//! so after it stops the member's real beats count again only once they pass it: at most the
//! slack plus 5% of the time since the anchor.

use std::collections::HashMap;
use std::time::Duration;

use chitchat::{ChitchatId, Deserializable, Heartbeat};
use murmur_transport::gossip::pack::HEARTBEAT_STEP;
use tokio::time::Instant;

/// Heartbeat units (microseconds) per second a member may advance, with room for clock-rate
/// differences and chitchat's increments.
const RATE_PER_SEC: f64 = 1.05e6;
/// Slack over a direct anchor: the tick of [`own_heartbeat`] and reordering.
const SLACK_DIRECT: u64 = 2_000_000;
/// Extra slack over a head anchor for how long the head took to reach us.
const HEAD_TRAVEL: Duration = Duration::from_secs(10);

/// How heads and liveness are paced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Horizon {
    /// How often a node signs its head record again.
    pub head_period: Duration,
    /// How long after a member last showed life its heartbeat may still advance.
    pub horizon: Duration,
}

impl Horizon {
    /// Heads every `head_period`; a member silent for three of them is no longer kept alive.
    pub fn new(head_period: Duration) -> Self {
        Self {
            head_period,
            horizon: head_period * 3,
        }
    }
}

/// This node's heartbeat after `elapsed` since it started.
pub fn own_heartbeat(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// This node's heartbeat after `elapsed` since it started, as it gossips it: [`own_heartbeat`]
/// in whole steps of [`HEARTBEAT_STEP`] (100 ms). Packed gossip sends how far each member's
/// heartbeat moved; in steps that takes a few bits per member, in exact microseconds about
/// three bytes, in every digest.
pub fn stepped_heartbeat(elapsed: Duration) -> u64 {
    let us = own_heartbeat(elapsed);
    us - us % HEARTBEAT_STEP
}

/// A chitchat heartbeat of value `n` (chitchat only builds them through its decoder).
pub fn heartbeat(n: u64) -> Heartbeat {
    let mut bytes: &[u8] = &n.to_le_bytes();
    Heartbeat::deserialize(&mut bytes).unwrap_or_default()
}

#[derive(Clone, Copy, Debug)]
struct Mark {
    hb: u64,
    at: Instant,
}

#[derive(Clone, Copy, Debug, Default)]
struct Anchor {
    direct: Option<Mark>,
    head: Option<Mark>,
    alive_at: Option<Instant>,
}

/// What each member last said about its own heartbeat.
#[derive(Debug, Default)]
pub struct Anchors {
    map: HashMap<ChitchatId, Anchor>,
}

impl Anchors {
    /// `id` itself told us its heartbeat is `hb`.
    pub fn direct(&mut self, id: &ChitchatId, hb: u64, now: Instant) {
        let a = self.map.entry(id.clone()).or_default();
        if a.direct.is_none_or(|d| hb >= d.hb) {
            a.direct = Some(Mark { hb, at: now });
        }
        a.alive_at = Some(now);
    }

    /// A new head of `id`, signed by it, says its heartbeat was `hb`.
    pub fn head(&mut self, id: &ChitchatId, hb: u64, now: Instant) {
        let a = self.map.entry(id.clone()).or_default();
        if a.head.is_none_or(|h| hb > h.hb) {
            a.head = Some(Mark { hb, at: now });
            a.alive_at = Some(now);
        }
    }

    /// The highest heartbeat of `id` a relay may report now; `None` without an anchor.
    pub fn ceiling(&self, id: &ChitchatId, now: Instant, pace: Horizon) -> Option<u64> {
        let a = self.map.get(id)?;
        let (mark, slack) = match (a.direct, a.head) {
            (Some(d), _) => (d, SLACK_DIRECT),
            (None, Some(h)) => {
                let travel = own_heartbeat(pace.head_period + HEAD_TRAVEL);
                (h, SLACK_DIRECT + travel)
            }
            (None, None) => return None,
        };
        let until = a.alive_at.map_or(now, |t| now.min(t + pace.horizon));
        let elapsed = until.saturating_duration_since(mark.at).as_secs_f64();
        // Saturating: an f64 beyond u64 converts to u64::MAX.
        let advance = (elapsed * RATE_PER_SEC) as u64;
        Some(mark.hb.saturating_add(advance).saturating_add(slack))
    }

    /// Forgets members `keep` rejects (chitchat dropped them).
    pub fn retain(&mut self, keep: impl Fn(&ChitchatId) -> bool) {
        self.map.retain(|id, _| keep(id));
    }

    /// Members anchored.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no member is anchored.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ChitchatId {
        ChitchatId::new("x", 1, ([10, 0, 0, 1], 7420).into())
    }

    #[test]
    fn heartbeats_are_built_with_the_value_asked() {
        assert_eq!(u64::from(heartbeat(123_456_789)), 123_456_789);
        assert_eq!(own_heartbeat(Duration::from_millis(1500)), 1_500_000);
        assert_eq!(
            stepped_heartbeat(Duration::from_micros(1_234_567)),
            1_200_000
        );
        assert_eq!(stepped_heartbeat(Duration::from_micros(99_999)), 0);
    }

    #[test]
    fn the_ceiling_follows_time_from_the_anchor_and_stops_at_the_horizon() {
        let pace = Horizon::new(Duration::from_secs(10));
        let mut a = Anchors::default();
        let t0 = Instant::now();
        assert_eq!(a.ceiling(&id(), t0, pace), None);
        a.direct(&id(), 5_000_000, t0);
        let c0 = a.ceiling(&id(), t0, pace).unwrap();
        assert_eq!(c0, 5_000_000 + SLACK_DIRECT);
        // An honest member 20 s later is at 25 000 000: under the bound, which is not far above.
        let c20 = a
            .ceiling(&id(), t0 + Duration::from_secs(20), pace)
            .unwrap();
        assert!((25_000_000..=28_000_000).contains(&c20), "{c20}");
        // Without new signs of life the bound stops growing after the horizon (30 s).
        let c60 = a
            .ceiling(&id(), t0 + Duration::from_secs(60), pace)
            .unwrap();
        let c600 = a
            .ceiling(&id(), t0 + Duration::from_secs(600), pace)
            .unwrap();
        assert_eq!(c60, c600);
        assert!(c600 < 40_000_000);
        // A new head is a sign of life; a lower direct value (reordered) does not move the mark.
        a.head(&id(), 60_000_000, t0 + Duration::from_secs(55));
        a.direct(&id(), 1, t0 + Duration::from_secs(55));
        assert!(
            a.ceiling(&id(), t0 + Duration::from_secs(80), pace)
                .unwrap()
                > c600
        );
    }

    #[test]
    fn a_head_alone_gives_a_looser_bound() {
        let pace = Horizon::new(Duration::from_secs(10));
        let mut a = Anchors::default();
        let t0 = Instant::now();
        a.head(&id(), 1_000_000, t0);
        let c = a.ceiling(&id(), t0, pace).unwrap();
        assert_eq!(c, 1_000_000 + SLACK_DIRECT + 20_000_000);
        assert!(c < u64::MAX / 2);
    }
}
