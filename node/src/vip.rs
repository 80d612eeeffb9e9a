//! Virtual IPs: one address per service (IPv4, and IPv6 when a range is set), the same on every
//! node without a coordinator, and unchanged while the service exists.
//!
//! An address comes from the service name alone: SHA-256 of the name and a probe number picks
//! an address in the range, probe 0 first. Every node hashes the same names, so every node
//! gives the same answer. Only when two services hash to one address does the second take its
//! next probe; which one is second depends on which a node saw first (services that arrive
//! together are placed in name order, so nodes with the same history agree). An address is
//! sticky: once given, it stays with its service while the service exists, whatever appears
//! later; when the service goes, its address is held for it for [`VipSettings::hold`], so a
//! service that comes back (or an app with a cached answer) finds the same one. With the
//! default ranges (2^28 IPv4 addresses) the chance that any two names collide is about 0.2%
//! for 1 000 services and 2% for 3 000; a collision is logged.
//!
//! [`Allocator`] is the pure core; [`run`] keeps it in step with the cluster view and publishes
//! [`VipMap`] snapshots that the DNS and the captured-connection listener read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::{Ipv4Net, Ipv6Net};
use murmur_membership::ClusterView;
use tokio::sync::watch;
use tracing::{info, warn};

/// Probes tried per family before a service goes without an address.
const MAX_PROBES: u32 = 64;
/// Addresses held for services that went away, at most (the oldest are freed first).
const MAX_HELD: usize = 4096;

/// The ranges virtual IPs come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipSettings {
    /// IPv4 range (default `240.0.0.0/4`, the range Consul uses too: never assigned on the
    /// Internet).
    pub v4: Ipv4Net,
    /// IPv6 range, if services get AAAA records too.
    pub v6: Option<Ipv6Net>,
    /// How long a removed service's address stays reserved for it.
    pub hold: Duration,
}

impl Default for VipSettings {
    fn default() -> Self {
        Self {
            v4: Ipv4Net::new(Ipv4Addr::new(240, 0, 0, 0), 4).unwrap_or_default(),
            v6: Ipv6Net::new(
                Ipv6Addr::new(0xfd6d, 0x7572, 0x6d75, 0x7200, 0, 0, 0, 0),
                64,
            )
            .ok(),
            hold: Duration::from_secs(600),
        }
    }
}

/// A service's addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vip {
    /// IPv4.
    pub v4: Option<Ipv4Addr>,
    /// IPv6.
    pub v6: Option<Ipv6Addr>,
}

/// A snapshot of the assignment, for readers.
#[derive(Clone, Debug, Default)]
pub struct VipMap {
    by_name: HashMap<String, Vip>,
    by_ip: HashMap<IpAddr, String>,
    v4: Option<Ipv4Net>,
    v6: Option<Ipv6Net>,
}

impl VipMap {
    /// The addresses of `service`.
    pub fn of(&self, service: &str) -> Option<Vip> {
        self.by_name.get(service).copied()
    }

    /// The service `ip` belongs to.
    pub fn service_at(&self, ip: IpAddr) -> Option<&str> {
        self.by_ip.get(&canonical(ip)).map(String::as_str)
    }

    /// Whether `ip` is inside a virtual-IP range (assigned or not).
    pub fn in_range(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(a) => self.v4.is_some_and(|n| n.contains(&a)),
            IpAddr::V6(a) => self.v6.is_some_and(|n| n.contains(&a)),
        }
    }
}

/// An IPv4 address seen through a dual-stack socket (`::ffff:a.b.c.d`) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The allocator: sticky assignments, addresses held for removed services.
#[derive(Debug)]
pub struct Allocator {
    settings: VipSettings,
    assigned: BTreeMap<String, Vip>,
    taken: HashMap<IpAddr, String>,
    /// Addresses of removed services: address → (service, since).
    held: HashMap<IpAddr, (String, Instant)>,
}

impl Allocator {
    /// An allocator with nothing assigned.
    pub fn new(settings: VipSettings) -> Self {
        Self {
            settings,
            assigned: BTreeMap::new(),
            taken: HashMap::new(),
            held: HashMap::new(),
        }
    }

    /// Brings the assignment in line with `services` (the services that exist now); returns
    /// whether anything changed. New services are placed in name order.
    pub fn update<'a>(
        &mut self,
        services: impl IntoIterator<Item = &'a str>,
        now: Instant,
    ) -> bool {
        let wanted: BTreeSet<&str> = services.into_iter().collect();
        let hold = self.settings.hold;
        self.held
            .retain(|_, (_, since)| now.duration_since(*since) < hold);
        let gone: Vec<String> = self
            .assigned
            .keys()
            .filter(|s| !wanted.contains(s.as_str()))
            .cloned()
            .collect();
        let mut changed = !gone.is_empty();
        for name in gone {
            if let Some(vip) = self.assigned.remove(&name) {
                for ip in addrs(vip) {
                    self.taken.remove(&ip);
                    self.held.insert(ip, (name.clone(), now));
                }
            }
        }
        self.bound_held();
        for name in wanted {
            let had = self
                .assigned
                .get(name)
                .copied()
                .unwrap_or(Vip { v4: None, v6: None });
            // A service the range had no room for is tried again at every change.
            let v4 = had.v4.or_else(|| {
                let net = self.settings.v4;
                self.place(name, |k| IpAddr::V4(v4_probe(&net, name, k)))
                    .and_then(|ip| match ip {
                        IpAddr::V4(a) => Some(a),
                        IpAddr::V6(_) => None,
                    })
            });
            let v6 = had.v6.or_else(|| {
                let net = self.settings.v6?;
                self.place(name, |k| IpAddr::V6(v6_probe(&net, name, k)))
                    .and_then(|ip| match ip {
                        IpAddr::V6(a) => Some(a),
                        IpAddr::V4(_) => None,
                    })
            });
            let vip = Vip { v4, v6 };
            if self.assigned.get(name) != Some(&vip) {
                self.claim(name, vip);
                changed = true;
            }
        }
        changed
    }

    /// The first probe of `name` that no other service holds.
    fn place(&self, name: &str, probe: impl Fn(u32) -> IpAddr) -> Option<IpAddr> {
        for k in 0..MAX_PROBES {
            let ip = probe(k);
            let free = !self.taken.contains_key(&ip)
                && self.held.get(&ip).is_none_or(|(owner, _)| owner == name);
            if free {
                if k > 0 {
                    info!(service = %name, %ip, probe = k,
                        "virtual IP: the service's first address is taken by another; using probe {k}");
                }
                return Some(ip);
            }
        }
        warn!(service = %name, "virtual IP: no free address after {MAX_PROBES} probes; the range is too small");
        None
    }

    fn claim(&mut self, name: &str, vip: Vip) {
        for ip in addrs(vip) {
            self.held.remove(&ip);
            self.taken.insert(ip, name.to_owned());
        }
        self.assigned.insert(name.to_owned(), vip);
    }

    /// Frees the oldest holds beyond [`MAX_HELD`].
    fn bound_held(&mut self) {
        if self.held.len() <= MAX_HELD {
            return;
        }
        let mut by_age: Vec<(Instant, IpAddr)> =
            self.held.iter().map(|(ip, (_, t))| (*t, *ip)).collect();
        by_age.sort_unstable();
        let excess = self.held.len() - MAX_HELD;
        for (_, ip) in by_age.into_iter().take(excess) {
            self.held.remove(&ip);
        }
    }

    /// The snapshot readers use.
    pub fn snapshot(&self) -> VipMap {
        VipMap {
            by_name: self.assigned.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            by_ip: self.taken.clone(),
            v4: Some(self.settings.v4),
            v6: self.settings.v6,
        }
    }
}

fn addrs(vip: Vip) -> impl Iterator<Item = IpAddr> {
    vip.v4
        .map(IpAddr::V4)
        .into_iter()
        .chain(vip.v6.map(IpAddr::V6))
}

/// 128 bits of SHA-256 over the name and the probe number.
fn hash(name: &str, probe: u32) -> u128 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"murmur-vip\0");
    ctx.update(name.as_bytes());
    ctx.update(&probe.to_be_bytes());
    let d = ctx.finish();
    let mut first = [0u8; 16];
    first.copy_from_slice(&d.as_ref()[..16]);
    u128::from_be_bytes(first)
}

/// Probe `k` of `name` in `net`: never the network address, nor the all-ones one.
fn v4_probe(net: &Ipv4Net, name: &str, k: u32) -> Ipv4Addr {
    let hosts = 1u128 << (32 - u32::from(net.prefix_len()));
    let base = u32::from(net.network());
    let offset = if hosts > 2 {
        1 + hash(name, k) % (hosts - 2)
    } else {
        0
    };
    Ipv4Addr::from(base.wrapping_add(u32::try_from(offset).unwrap_or(0)))
}

/// Probe `k` of `name` in `net`: never the network address.
fn v6_probe(net: &Ipv6Net, name: &str, k: u32) -> Ipv6Addr {
    let bits = 128 - u32::from(net.prefix_len());
    let base = u128::from(net.network());
    let offset = match bits {
        0 => 0,
        128 => hash(name, k).max(1),
        b => 1 + hash(name, k) % ((1u128 << b) - 1),
    };
    Ipv6Addr::from(base.wrapping_add(offset))
}

/// Keeps the assignment in step with the services of the cluster view, publishing each change.
pub async fn run(
    mut view: watch::Receiver<Arc<ClusterView>>,
    mut allocator: Allocator,
    publish: watch::Sender<Arc<VipMap>>,
) {
    loop {
        let services: Vec<String> = view.borrow_and_update().services.keys().cloned().collect();
        if allocator.update(services.iter().map(String::as_str), crate::clock::now()) {
            publish.send_replace(Arc::new(allocator.snapshot()));
        }
        if view.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(v4: &str, v6: Option<&str>) -> VipSettings {
        VipSettings {
            v4: v4.parse().unwrap(),
            v6: v6.map(|s| s.parse().unwrap()),
            hold: Duration::from_secs(60),
        }
    }

    #[test]
    fn the_address_is_a_function_of_the_name_alone() {
        let t0 = Instant::now();
        let mut a = Allocator::new(VipSettings::default());
        let mut b = Allocator::new(VipSettings::default());
        a.update(["web", "redis", "health"], t0);
        // Another node that learned the services one by one, in another order, among others.
        b.update(["zeta"], t0);
        b.update(["zeta", "redis"], t0);
        b.update(["zeta", "redis", "health", "web"], t0);
        let (sa, sb) = (a.snapshot(), b.snapshot());
        for s in ["web", "redis", "health"] {
            assert_eq!(sa.of(s), sb.of(s), "{s}");
            let vip = sa.of(s).unwrap();
            let v4 = vip.v4.unwrap();
            assert!(sa.in_range(IpAddr::V4(v4)) && v4.octets()[0] >= 240, "{v4}");
            assert!(sa.in_range(IpAddr::V6(vip.v6.unwrap())));
            assert_eq!(sa.service_at(IpAddr::V4(v4)), Some(s));
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            assert_eq!(
                sa.service_at(mapped),
                Some(s),
                "a v4 address via a dual-stack socket"
            );
        }
        assert_ne!(sa.of("web"), sa.of("redis"));
        assert!(!sa.in_range("10.1.2.3".parse().unwrap()));
        assert!(sa.service_at("240.0.0.1".parse().unwrap()).is_none());
    }

    #[test]
    fn addresses_stay_while_services_exist_and_come_back_after_a_removal() {
        let t0 = Instant::now();
        // A range of two usable addresses: every pair of services collides.
        let mut a = Allocator::new(settings("10.0.0.0/30", None));
        assert!(a.update(["one"], t0));
        let one = a.snapshot().of("one").unwrap();
        assert!(a.update(["one", "two"], t0));
        let two = a.snapshot().of("two").unwrap();
        assert_ne!(one, two);
        assert!(!a.update(["two", "one"], t0), "nothing changed");
        // `one` goes: its address is held for it, `three` may not take it.
        a.update(["two", "three"], t0 + Duration::from_secs(1));
        assert_eq!(a.snapshot().of("three").and_then(|v| v.v4), None);
        assert_eq!(a.snapshot().of("two"), Some(two), "untouched by the others");
        a.update(["two"], t0 + Duration::from_secs(2));
        a.update(["two", "one"], t0 + Duration::from_secs(3));
        assert_eq!(a.snapshot().of("one"), Some(one), "back at its address");
        // After the hold, the address is free for another service.
        a.update(["two"], t0 + Duration::from_secs(4));
        a.update(["two", "three"], t0 + Duration::from_secs(100));
        assert_eq!(a.snapshot().of("three"), Some(one));
    }

    #[test]
    fn probes_stay_inside_the_range_and_avoid_its_ends() {
        let net: Ipv4Net = "192.168.7.0/24".parse().unwrap();
        let net6: Ipv6Net = "fd00::/120".parse().unwrap();
        for k in 0..200 {
            let ip = v4_probe(&net, "svc", k);
            assert!(net.contains(&ip) && ip != net.network() && ip != net.broadcast());
            let ip6 = v6_probe(&net6, "svc", k);
            assert!(net6.contains(&ip6) && ip6 != net6.network());
        }
        let host: Ipv4Net = "10.9.9.9/32".parse().unwrap();
        assert_eq!(v4_probe(&host, "svc", 3), Ipv4Addr::new(10, 9, 9, 9));
    }

    proptest::proptest! {
        /// However the services come and go, an assigned address never moves while its service
        /// stays, and no two services share one.
        #[test]
        fn sticky_and_unique(steps in proptest::collection::vec(
            proptest::collection::btree_set(0u8..12, 0..12), 1..20)) {
            let mut a = Allocator::new(settings("10.0.0.0/28", Some("fd00::/124")));
            let t0 = Instant::now();
            let mut before: BTreeMap<String, Vip> = BTreeMap::new();
            for (i, set) in steps.iter().enumerate() {
                let names: Vec<String> = set.iter().map(|n| format!("s{n}")).collect();
                a.update(names.iter().map(String::as_str), t0 + Duration::from_secs(i as u64));
                let snap = a.snapshot();
                let mut seen = BTreeSet::new();
                for n in &names {
                    let vip = snap.of(n).unwrap();
                    if let Some(old) = before.get(n) {
                        proptest::prop_assert_eq!(*old, vip);
                    }
                    for ip in addrs(vip) {
                        proptest::prop_assert!(seen.insert(ip), "{} shared", ip);
                    }
                }
                before = names.iter().map(|n| (n.clone(), snap.of(n).unwrap())).collect();
            }
        }
    }
}
