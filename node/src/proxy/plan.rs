//! The decision for one request, before any I/O: which route it takes, which backend (service
//! and subset) of the route, which instances may take it and in what order (by the balancer,
//! or by consistent hashing of a key; the caller's zone first), the identity each must
//! present, what faults to inject, which timeouts, retry policy and circuit apply, whether the
//! route answers a redirect itself, and whether the request is mirrored and where ([`decide`]);
//! and whether it is access-logged ([`logs`]). A pure function of the request, the caller, the cluster view, the compiled
//! policy, the balancer's order and the random draws it is handed. HTTP requests and TCP
//! connections alike are decided here; [`super::exchange`] and [`super::upstream`] only carry
//! the plan out.

use std::collections::BTreeMap;

use http::HeaderMap;
use murmur_membership::ClusterView;
use murmur_membership::policy::spec::{Redirect, RetrySpec};
use murmur_membership::view::Endpoint;
use murmur_transport::identity::Name;

use super::route::{RouteError, candidates_in};
use crate::balance::locality::{self, Stay};
use crate::balance::{Choice, Offer};
use crate::traffic::circuit::OutlierConfig;
use crate::traffic::compiled::ServicePolicy;
use crate::traffic::fault::{self, Injected};
use crate::traffic::routes::Route;
use crate::traffic::timeout::Timeouts;
use crate::traffic::{Circuit, Compiled, accesslog, routes, split};

/// The label naming an instance's zone (on the instance, or else on its node).
pub const ZONE_LABEL: &str = "zone";

/// What the request is, for matching.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    /// An HTTP request: routes, faults, timeouts and retries may apply.
    Http {
        /// The host of a request that came in through a gateway (lower case, no port): only
        /// routes naming it apply. `None` for a request from inside the mesh.
        host: Option<&'a str>,
        /// Method.
        method: &'a str,
        /// Normalized path, without query.
        path: &'a str,
        /// Headers.
        headers: &'a HeaderMap,
    },
    /// A TCP connection: no route matches it; the service's circuit still orders and ejects.
    Tcp,
}

/// The calling node, as far as a decision needs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Caller<'a> {
    /// Its SPIFFE ID: the key of `hash = { caller = true }`.
    pub id: &'a str,
    /// Its zone (`zone` label), if it has one: instances in it are preferred.
    pub zone: Option<&'a str>,
    /// Its configuration logs the requests of the service (`[access_log] services`).
    pub logs: bool,
}

/// Who must answer an attempt: the node the view names, proven by its certificate, and a
/// certificate that names the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity<'a> {
    /// The node (`spiffe://<td>/node/<node>`, server name `<node>.node.<td>`).
    pub node: &'a Name,
    /// The service its certificate must name (`<service>.svc.<td>`).
    pub service: &'a str,
}

/// One instance to try.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The instance as the view lists it.
    pub endpoint: &'a Endpoint,
    /// What the peer must prove.
    pub identity: Identity<'a>,
    /// Its zone, when the caller has a zone and this is another one.
    pub cross_zone: Option<&'a str>,
}

/// Where a mirrored copy of the request goes.
#[derive(Clone, Copy, Debug)]
pub struct Mirrored<'a> {
    /// The service.
    pub service: &'a str,
    /// The instance, if any can take it.
    pub target: Option<Target<'a>>,
}

/// What to do with one request. Borrows from the compiled policy and the view: a request for a
/// service without policy allocates nothing here but the list of targets.
#[derive(Debug)]
pub struct Plan<'a> {
    /// The service the request goes to (a route's backend may name another one).
    pub target: &'a str,
    /// The route taken, if any.
    pub route: Option<&'a Route>,
    /// The instances to try, in the balancer's order (retries go round it again).
    pub targets: Vec<Target<'a>>,
    /// Faults to inject.
    pub injected: Injected,
    /// Timeouts, if a document sets any.
    pub timeouts: Option<Timeouts>,
    /// The retry policy, if any.
    pub retry: Option<&'a RetrySpec>,
    /// The target's circuit policy, if any.
    pub circuit: Option<&'a Circuit>,
    /// The route answers this redirect instead of forwarding (then there are no targets).
    pub redirect: Option<&'a Redirect>,
    /// A copy of the request goes here too (boxed: most plans have none).
    pub mirror: Option<Box<Mirrored<'a>>>,
}

impl Plan<'_> {
    /// The outlier ejection of the target's circuit, if any.
    pub fn outlier(&self) -> Option<&OutlierConfig> {
        self.circuit.map(|c| &c.outlier)
    }

    /// The name of the route taken, if any.
    pub fn route_name(&self) -> Option<&str> {
        self.route.map(|r| r.name.as_str())
    }
}

/// Orders the offered instances of a service for one request: the balancer, with its state.
pub trait Order {
    /// Indexes into `offers`, best first; ejected instances are left out (`outlier`).
    fn order(
        &mut self,
        service: &str,
        choice: Choice,
        offers: &[Offer<'_>],
        outlier: Option<&OutlierConfig>,
    ) -> Vec<usize>;
}

impl<F> Order for F
where
    F: FnMut(&str, Choice, &[Offer<'_>], Option<&OutlierConfig>) -> Vec<usize>,
{
    fn order(
        &mut self,
        service: &str,
        choice: Choice,
        offers: &[Offer<'_>],
        outlier: Option<&OutlierConfig>,
    ) -> Vec<usize> {
        self(service, choice, offers, outlier)
    }
}

/// Whether an HTTP request for a service under `policy` is written to the access log: as its
/// `accesslog` document says, else as the caller's configuration does. Decided before the
/// request is routed, so that requests that cannot be are logged too.
pub fn logs(
    policy: Option<&ServicePolicy>,
    caller: Caller<'_>,
    random: impl FnOnce() -> u64,
) -> bool {
    accesslog::sampled(
        policy.and_then(|p| p.accesslog.as_ref()),
        caller.logs,
        random,
    )
}

/// Decides. `random` is called only when a choice needs it (a split, a fault, a partial
/// spill-over, a mirror); `order` once, and once more for a mirror.
pub fn decide<'a>(
    compiled: &'a Compiled,
    view: &'a ClusterView,
    service: &'a str,
    subject: Subject<'_>,
    caller: Caller<'_>,
    mut random: impl FnMut() -> u64,
    mut order: impl Order,
) -> Result<Plan<'a>, RouteError> {
    let policy = compiled.service(service);
    let (route, headers) = match subject {
        Subject::Http {
            host,
            method,
            path,
            headers,
        } => (
            policy.and_then(|p| routes::select(&p.routes, host, method, path, headers)),
            Some(headers),
        ),
        Subject::Tcp => (None, None),
    };
    let http = headers.is_some();
    let route_name = route.map(|r| r.name.as_str());
    let mut plan = Plan {
        target: service,
        route,
        targets: Vec::new(),
        injected: Injected::default(),
        timeouts: policy
            .filter(|_| http)
            .and_then(|p| p.timeouts_for(route_name)),
        retry: policy
            .filter(|_| http)
            .and_then(|p| p.retry_for(route_name))
            .map(|r| &**r),
        circuit: None,
        redirect: route.and_then(|r| r.redirect.as_ref()),
        mirror: None,
    };
    let Some(route) = route.filter(|_| plan.redirect.is_none()) else {
        if plan.redirect.is_some() {
            return Ok(plan);
        }
        plan.circuit = policy.and_then(|p| p.circuit.as_ref());
        return instances(plan, view, None, None, caller, random, order);
    };
    let backend = match route.backends.len() {
        0 | 1 => route.backends.first(),
        _ => split::pick(&route.backends, random()),
    };
    plan.target = backend.map_or(service, |b| b.service.as_str());
    plan.injected = route
        .fault
        .as_ref()
        .map(|f| fault::decide(f, fault::percent_of(random()), fault::percent_of(random())))
        .unwrap_or_default();
    let hashed = route.hash.as_ref().zip(headers).and_then(|(h, headers)| {
        Some(Choice::Ring {
            key: h.key_of(headers, caller.id)?,
            load_factor: h.load_factor,
        })
    });
    plan.mirror = route
        .mirror
        .as_ref()
        .filter(|m| fault::percent_of(random()) < m.percent)
        .map(|m| {
            Box::new(Mirrored {
                service: m.service.as_str(),
                target: mirror_target(view, compiled, m, caller, &mut order),
            })
        });
    let subset = backend.map(|b| &b.subset).filter(|s| !s.is_empty());
    plan.circuit = if plan.target == service {
        policy
    } else {
        compiled.service(plan.target)
    }
    .and_then(|p| p.circuit.as_ref());
    instances(plan, view, subset, hashed, caller, random, order)
}

/// Fills in the instances of the plan's target (in `subset`) in their order: by `hashed`
/// (consistent hashing) if given, else by the balancer, the caller's zone first.
fn instances<'a>(
    mut plan: Plan<'a>,
    view: &'a ClusterView,
    subset: Option<&BTreeMap<String, String>>,
    hashed: Option<Choice>,
    caller: Caller<'_>,
    mut random: impl FnMut() -> u64,
    mut order: impl Order,
) -> Result<Plan<'a>, RouteError> {
    let target = plan.target;
    let (balancer, mut endpoints) = candidates_in(view, target, subset)?;
    // Consistent hashing sends a key to the same instance from every caller, whatever its zone.
    if let (Some(zone), None) = (caller.zone, hashed) {
        endpoints = prefer_zone(view, target, subset, endpoints, zone, &mut random);
    }
    let choice = hashed.unwrap_or(Choice::Balancer(balancer));
    plan.targets = ordered(
        view,
        &endpoints,
        target,
        choice,
        plan.outlier(),
        caller,
        &mut order,
    );
    Ok(plan)
}

/// `endpoints` of `target` in the order `order` gives, as targets.
fn ordered<'a>(
    view: &'a ClusterView,
    endpoints: &[&'a Endpoint],
    target: &'a str,
    choice: Choice,
    outlier: Option<&OutlierConfig>,
    caller: Caller<'_>,
    order: &mut impl Order,
) -> Vec<Target<'a>> {
    let offers: Vec<Offer<'_>> = endpoints
        .iter()
        .map(|e| Offer {
            node: e.node.as_str(),
            weight: e.weight,
        })
        .collect();
    order
        .order(target, choice, &offers, outlier)
        .into_iter()
        .filter_map(|i| endpoints.get(i))
        .map(|e| Target {
            endpoint: e,
            identity: Identity {
                node: &e.node,
                service: target,
            },
            cross_zone: caller
                .zone
                .and_then(|z| zone_of(view, e).filter(|theirs| *theirs != z)),
        })
        .collect()
}

/// The instance a mirrored copy goes to: the first in the balancer's order of the mirror's
/// service and subset; `None` if it has none that takes traffic.
fn mirror_target<'a>(
    view: &'a ClusterView,
    compiled: &'a Compiled,
    m: &'a murmur_membership::policy::spec::Mirror,
    caller: Caller<'_>,
    order: &mut impl Order,
) -> Option<Target<'a>> {
    let subset = Some(&m.subset).filter(|s| !s.is_empty());
    let (balancer, endpoints) = candidates_in(view, m.service.as_str(), subset).ok()?;
    let outlier = compiled
        .service(m.service.as_str())
        .and_then(|p| p.circuit.as_ref())
        .map(|c| &c.outlier);
    let choice = Choice::Balancer(balancer);
    ordered(
        view,
        &endpoints,
        m.service.as_str(),
        choice,
        outlier,
        caller,
        order,
    )
    .into_iter()
    .next()
}

/// The zone of an instance: its own `zone` label, else its node's.
pub fn zone_of<'v>(view: &'v ClusterView, e: &'v Endpoint) -> Option<&'v str> {
    e.labels
        .get(ZONE_LABEL)
        .or_else(|| view.members.get(e.node.as_str())?.labels.get(ZONE_LABEL))
        .map(String::as_str)
}

/// Of the instances that take traffic (`usable`), those of the caller's `zone`, or of the other
/// zones when too few local ones are healthy ([`locality`]). Without any instance in the zone,
/// all of them.
fn prefer_zone<'v>(
    view: &'v ClusterView,
    target: &str,
    subset: Option<&BTreeMap<String, String>>,
    usable: Vec<&'v Endpoint>,
    zone: &str,
    random: impl FnMut() -> u64,
) -> Vec<&'v Endpoint> {
    let local = |e: &&'v Endpoint| zone_of(view, e) == Some(zone);
    let total = view
        .endpoints(target)
        .iter()
        .filter(|e| subset.is_none_or(|s| split::in_subset(&e.labels, s)))
        .filter(local)
        .count();
    if total == 0 {
        return usable;
    }
    let (here, elsewhere): (Vec<&Endpoint>, Vec<&Endpoint>) = usable.into_iter().partition(local);
    match locality::decide(total, here.len(), elsewhere.len(), random) {
        Stay::Remote if !elsewhere.is_empty() => elsewhere,
        _ => here,
    }
}

/// Whether `view` still lists `node` as an instance of `service`: an attempt after the first
/// skips instances the mesh has given up on since the plan was made.
pub fn still_listed(view: &ClusterView, service: &str, node: &str) -> bool {
    view.endpoints(service).iter().any(|e| e.node == node)
}

#[cfg(test)]
mod tests;
