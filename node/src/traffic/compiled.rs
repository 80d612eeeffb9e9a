//! The policy set compiled per service: what each request reads (an `Arc` clone), rebuilt
//! whenever the set changes.

use std::collections::HashMap;
use std::sync::Arc;

use murmur_membership::policy::spec::external::ExternalSpec;
use murmur_membership::policy::spec::{AccessLogSpec, RateLimitSpec, RetrySpec, TimeoutSpec};
use murmur_membership::policy::{PolicyBody, PolicySet};
use murmur_transport::identity::Name;

use super::circuit::OutlierConfig;
use super::{authz, routes, timeout};

/// A service's `circuit` document, compiled.
#[derive(Clone, Debug)]
pub struct Circuit {
    /// Document name.
    pub doc: String,
    /// Outlier ejection.
    pub outlier: OutlierConfig,
    /// Cap on requests pending for the service.
    pub max_pending: Option<u32>,
}

/// Everything that applies to one service, ready to use.
#[derive(Clone, Debug, Default)]
pub struct ServicePolicy {
    /// Routes, in the order they are tried.
    pub routes: Vec<routes::Route>,
    /// Timeout documents, by name.
    pub timeouts: Vec<TimeoutSpec>,
    /// Retry documents, by name.
    pub retries: Vec<Arc<RetrySpec>>,
    /// The first circuit document by name.
    pub circuit: Option<Circuit>,
    /// Rate limits, by name.
    pub ratelimits: Vec<RateLimitSpec>,
    /// Authorization documents, by name.
    pub authz: Vec<authz::Authz>,
    /// The first access-log document by name.
    pub accesslog: Option<AccessLogSpec>,
}

impl ServicePolicy {
    /// The retry document for requests taking `route` (see [`scoped`]).
    pub fn retry_for(&self, route: Option<&str>) -> Option<&Arc<RetrySpec>> {
        scoped(&self.retries, route, |r| r.route.as_ref())
    }

    /// The timeouts for requests taking `route` (see [`scoped`]).
    pub fn timeouts_for(&self, route: Option<&str>) -> Option<timeout::Timeouts> {
        scoped(&self.timeouts, route, |t| t.route.as_ref()).map(timeout::Timeouts::of)
    }
}

/// Of documents sorted by name, the one for `route`: the first naming that route, else the first
/// naming none (it applies to every route of the service).
pub fn scoped<'a, T>(
    items: &'a [T],
    route: Option<&str>,
    route_of: impl Fn(&T) -> Option<&Name>,
) -> Option<&'a T> {
    let named = route.and_then(|r| {
        items
            .iter()
            .find(|i| route_of(i).is_some_and(|n| n.as_str() == r))
    });
    named.or_else(|| items.iter().find(|i| route_of(i).is_none()))
}

/// The policy set, compiled per service.
#[derive(Debug, Default)]
pub struct Compiled {
    services: HashMap<String, Arc<ServicePolicy>>,
    /// Routes naming hosts (what a gateway exposes), with their service, in the order they are
    /// tried across services: priority, then name (names are unique per kind).
    edge: Vec<(String, routes::Route)>,
    /// `external` documents, by name.
    externals: Vec<ExternalSpec>,
}

/// Where a gateway sends a request, by its host and the routes naming it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeTarget<'a> {
    /// The service of the first route that names the host and matches.
    Service(&'a str),
    /// Routes name the host, but none matches this request.
    NoRoute,
    /// No route names the host.
    UnknownHost,
}

impl Compiled {
    /// Compiles a set (documents come in (kind, name) order, so each list is by name).
    pub fn new(set: &PolicySet) -> Self {
        Self::from_bodies(set.iter().filter_map(|d| d.body()))
    }

    /// Compiles bodies given in (kind, name) order.
    pub fn from_bodies<'a>(bodies: impl IntoIterator<Item = &'a PolicyBody>) -> Self {
        let mut services: HashMap<String, ServicePolicy> = HashMap::new();
        let mut externals = Vec::new();
        for body in bodies {
            if let PolicyBody::External(e) = body {
                externals.push(e.clone());
                continue;
            }
            // Identity documents (revocations, token uses) apply to no service.
            let Some(service) = body.service() else {
                continue;
            };
            let p = services.entry(service.to_string()).or_default();
            match body {
                PolicyBody::Route(r) => p.routes.push(routes::Route::new(r)),
                PolicyBody::Timeout(t) => p.timeouts.push(t.clone()),
                PolicyBody::Retry(r) => p.retries.push(Arc::new(r.clone())),
                PolicyBody::Circuit(c) => {
                    if p.circuit.is_none() {
                        p.circuit = Some(Circuit {
                            doc: c.name.to_string(),
                            outlier: OutlierConfig::of(c),
                            max_pending: c.max_pending,
                        });
                    }
                }
                PolicyBody::Ratelimit(r) => p.ratelimits.push(r.clone()),
                PolicyBody::Authz(a) => p.authz.push(authz::Authz::new(a)),
                PolicyBody::Accesslog(a) => {
                    if p.accesslog.is_none() {
                        p.accesslog = Some(a.clone());
                    }
                }
                PolicyBody::Revocation(_) | PolicyBody::TokenUse(_) | PolicyBody::External(_) => {}
            }
        }
        for p in services.values_mut() {
            routes::sort(&mut p.routes);
        }
        let mut edge: Vec<(String, routes::Route)> = services
            .iter()
            .flat_map(|(s, p)| {
                p.routes
                    .iter()
                    .filter(|r| !r.hosts.is_empty())
                    .map(move |r| (s.clone(), r.clone()))
            })
            .collect();
        edge.sort_by(|(_, a), (_, b)| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
        Self {
            externals,
            edge,
            services: services
                .into_iter()
                .map(|(k, v)| (k, Arc::new(v)))
                .collect(),
        }
    }

    /// Every service with policy, and what applies to it.
    pub fn services(&self) -> impl Iterator<Item = (&str, &Arc<ServicePolicy>)> {
        self.services.iter().map(|(s, p)| (s.as_str(), p))
    }

    /// Where a gateway request for `host` (lower case, no port) goes: the service of the first
    /// route, across services, that names the host and matches the request.
    pub fn edge_target(
        &self,
        host: &str,
        method: &str,
        path: &str,
        headers: &http::HeaderMap,
    ) -> EdgeTarget<'_> {
        let mut named = false;
        for (service, route) in &self.edge {
            if !route.serves_host(Some(host)) {
                continue;
            }
            named = true;
            if route.matches(Some(host), method, path, headers) {
                return EdgeTarget::Service(service);
            }
        }
        if named {
            EdgeTarget::NoRoute
        } else {
            EdgeTarget::UnknownHost
        }
    }

    /// The `external` document for calls to `host` (lower case) on `port`: the first by name.
    pub fn external_for(&self, host: &str, port: u16) -> Option<&ExternalSpec> {
        self.externals.iter().find(|e| e.covers(host, port))
    }

    /// What applies to `service`, if anything.
    pub fn service(&self, service: &str) -> Option<&Arc<ServicePolicy>> {
        if self.services.is_empty() {
            return None;
        }
        self.services.get(service)
    }
}
