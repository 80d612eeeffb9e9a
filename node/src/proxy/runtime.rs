//! What the data path shares across requests: the handles every request of either direction
//! may use, built once by the node.

use std::sync::Arc;
use std::time::Instant;

use murmur_membership::ClusterView;
use murmur_transport::endpoint::MeshEndpoint;
use tokio::sync::watch;

use super::local::LocalClients;
use super::plan::Caller;
use crate::balance::{Balancers, Choice, Offer};
use crate::names::MeshNames;
use crate::services::Services;
use crate::telemetry::Telemetry;
use crate::telemetry::requests::UNKNOWN_SERVICE;
use crate::telemetry::traces::Tracing;
use crate::traffic::Traffic;
use crate::traffic::circuit::{OutlierConfig, Transition};
use crate::vip::VipMap;

/// What the outbound proxy does with CONNECT and absolute-form requests for hosts outside the
/// mesh (`[outbound] external`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum External {
    /// Pass them through directly (the default).
    #[default]
    Allow,
    /// Refuse them with 403.
    Deny,
}

/// The data path's handles.
#[derive(Debug)]
pub struct Proxy {
    /// This node's name.
    pub node: String,
    /// This node's SPIFFE ID.
    pub id: String,
    /// This node's zone (its `zone` label), if it has one.
    pub zone: Option<String>,
    /// The QUIC endpoint (connection cache).
    pub endpoint: MeshEndpoint,
    /// The cluster view.
    pub view: watch::Receiver<Arc<ClusterView>>,
    /// Balancer state of every called service.
    pub balancers: Arc<Balancers>,
    /// Local services (for inbound streams).
    pub services: Arc<Services>,
    /// Pooled clients to local apps.
    pub local: LocalClients,
    /// Request metrics and traffic summaries.
    pub telemetry: Arc<Telemetry>,
    /// Client and server spans.
    pub traces: Arc<Tracing>,
    /// Traffic policy: compiled documents and the state they keep.
    pub traffic: Arc<Traffic>,
    /// How apps name services.
    pub names: MeshNames,
    /// The services' virtual IPs.
    pub vips: watch::Receiver<Arc<VipMap>>,
    /// Requests for hosts outside the mesh.
    pub external: External,
    /// The firewall mark of this node's own connections to hosts outside the mesh (set while
    /// capturing, so they are never captured).
    pub mark: Option<u32>,
    /// TLS client configurations for hosts outside the mesh.
    pub origination: super::external::origination::Origination,
}

impl Proxy {
    /// The metrics label of an inbound stream for `service`: itself if this node serves it,
    /// else one fixed label (a peer can name any service; labels must not grow with it).
    pub fn inbound_label<'a>(&self, service: &'a str) -> &'a str {
        if self.services.get(service).is_some() {
            service
        } else {
            UNKNOWN_SERVICE
        }
    }

    /// The metrics label of an outbound request for `service`: itself if the mesh knows it,
    /// else one fixed label (a local app can name any host).
    pub fn outbound_label<'a>(&self, service: &'a str) -> &'a str {
        if self.view.borrow().services.contains_key(service) {
            service
        } else {
            UNKNOWN_SERVICE
        }
    }

    /// Logs and counts what an attempt's result did to `node`'s instance of `service` (HTTP
    /// and TCP alike): an ejection, or a return after a probe.
    pub fn note(&self, service: &str, node: &str, t: Transition) {
        match t {
            Transition::None => {}
            Transition::Ejected(time) => {
                self.telemetry.ejections.get(&[service, node]).inc();
                tracing::info!(%service, %node, ?time, "endpoint ejected after failures");
            }
            Transition::Returned => {
                tracing::info!(%service, %node, "ejected endpoint is back after a successful probe");
            }
        }
    }

    /// The balancer's order for one request that arrived at `now`, as a plan asks for it
    /// ([`super::plan::Order`]).
    pub fn order(
        &self,
        now: Instant,
    ) -> impl FnMut(&str, Choice, &[Offer<'_>], Option<&OutlierConfig>) -> Vec<usize> + '_ {
        move |service, choice, offers, outlier| {
            self.balancers.order(service, choice, offers, now, outlier)
        }
    }

    /// This node as the caller of `service`, for a plan.
    pub fn caller(&self, service: &str) -> Caller<'_> {
        self.caller_logging(self.telemetry.access_log.configured(service))
    }

    /// This node as a caller whose configuration `logs` the service's requests (or not), for
    /// a plan: [`Self::caller`] once that is known.
    pub fn caller_logging(&self, logs: bool) -> Caller<'_> {
        Caller {
            id: &self.id,
            zone: self.zone.as_deref(),
            logs,
        }
    }
}
