//! The request handler: the mesh's names answered here from the virtual-IP map, everything else
//! handed to a hickory forwarder (a [`Catalog`] whose only zone is the root).
//!
//! Answers for the mesh are authoritative with a short TTL (the map changes as services come
//! and go): an existing service gets its A (and AAAA) records, a name under the suffix that no
//! service has is NXDOMAIN, another record type is an empty NOERROR. NXDOMAIN carries no SOA,
//! so resolvers do not cache it and a service is found as soon as it appears.

use std::iter;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::resolver::config::{ConnectionConfig, NameServerConfig, ResolverOpts};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::forwarder::{ForwardConfig, ForwardZoneHandler};
use hickory_server::zone_handler::{Catalog, MessageResponseBuilder};
use tokio::sync::{Semaphore, watch};
use tracing::debug;

use crate::names::{MeshNames, Named};
use crate::telemetry::Telemetry;
use crate::vip::{Vip, VipMap};

/// TTL of the mesh's answers, seconds.
pub const TTL: u32 = 5;
/// Forwarded queries in flight at once; more are answered SERVFAIL at once.
const MAX_FORWARDING: usize = 256;

/// The node's DNS handler.
pub struct MeshDns {
    names: MeshNames,
    vips: watch::Receiver<Arc<VipMap>>,
    forward: Option<Catalog>,
    forwarding: Semaphore,
    telemetry: Arc<Telemetry>,
}

impl MeshDns {
    /// A handler answering `names` from `vips` and forwarding the rest through `forward`.
    pub fn new(
        names: MeshNames,
        vips: watch::Receiver<Arc<VipMap>>,
        forward: Option<Catalog>,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        Self {
            names,
            vips,
            forward,
            forwarding: Semaphore::new(MAX_FORWARDING),
            telemetry,
        }
    }

    fn count(&self, answer: &str) {
        self.telemetry.dns_queries.get(&[answer]).inc();
    }

    /// The service a query name is for, if it is the mesh's to answer; `Some(None)` for the
    /// apex and for names under the suffix without a service.
    fn mesh_name(&self, qname: &str) -> Option<Option<(String, Vip)>> {
        let vips = self.vips.borrow();
        let lookup = |label: &str| {
            let service = label.to_ascii_lowercase();
            vips.of(&service).map(|vip| (service, vip))
        };
        match self.names.classify(qname) {
            Named::Suffixed(label) => Some(lookup(label)),
            Named::Apex => Some(None),
            Named::Bare(label) if self.names.bare => lookup(label).map(Some),
            Named::Bare(_) | Named::Outside => None,
        }
    }

    async fn answer_mesh<R: ResponseHandler>(
        &self,
        request: &Request,
        found: Option<(String, Vip)>,
        apex: bool,
        mut rh: R,
    ) -> ResponseInfo {
        let Ok(info) = request.request_info() else {
            return fail(request, ResponseCode::FormErr);
        };
        let qtype = info.query.query_type();
        let name: Name = info.query.name().clone().into();
        let mut md = Metadata::response_from_request(&request.metadata);
        md.authoritative = true;
        md.recursion_available = self.forward.is_some();
        let mut answers = Vec::new();
        match &found {
            Some((_, vip)) => {
                let (a, aaaa) = match qtype {
                    RecordType::A => (true, false),
                    RecordType::AAAA => (false, true),
                    RecordType::ANY => (true, true),
                    _ => (false, false),
                };
                if let Some(v4) = vip.v4.filter(|_| a) {
                    answers.push(Record::from_rdata(name.clone(), TTL, RData::A(A(v4))));
                }
                if let Some(v6) = vip.v6.filter(|_| aaaa) {
                    answers.push(Record::from_rdata(name, TTL, RData::AAAA(AAAA(v6))));
                }
                self.count(if answers.is_empty() { "nodata" } else { "vip" });
            }
            None if apex => self.count("nodata"),
            None => {
                md.response_code = ResponseCode::NXDomain;
                self.count("nxdomain");
            }
        }
        let edns = response_edns(request);
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let response = builder.build(
            md,
            answers.iter(),
            iter::empty(),
            iter::empty(),
            iter::empty(),
        );
        match rh.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                debug!(error = %e, "DNS answer not sent");
                fail(request, ResponseCode::ServFail)
            }
        }
    }

    async fn forward<R: ResponseHandler, T: Time>(&self, request: &Request, rh: R) -> ResponseInfo {
        let Some(catalog) = &self.forward else {
            self.count("refused");
            return send_error(request, ResponseCode::Refused, rh).await;
        };
        let Ok(_permit) = self.forwarding.try_acquire() else {
            self.count("overloaded");
            return send_error(request, ResponseCode::ServFail, rh).await;
        };
        self.count("forwarded");
        catalog.handle_request::<R, T>(request, rh).await
    }
}

#[async_trait]
impl RequestHandler for MeshDns {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        rh: R,
    ) -> ResponseInfo {
        let Ok(info) = request.request_info() else {
            self.count("malformed");
            return send_error(request, ResponseCode::FormErr, rh).await;
        };
        let qname = info.query.name().to_string();
        let mesh = if request.metadata.op_code == OpCode::Query {
            self.mesh_name(&qname)
        } else {
            None
        };
        match mesh {
            Some(found) => {
                let apex = matches!(self.names.classify(&qname), Named::Apex);
                self.answer_mesh(request, found, apex, rh).await
            }
            None => self.forward::<R, T>(request, rh).await,
        }
    }
}

/// The EDNS of the answer, if the query had one (RFC 6891 asks for it).
fn response_edns(request: &Request) -> Option<Edns> {
    request.edns.as_ref().map(|req| {
        let mut e = Edns::new();
        e.set_max_payload(req.max_payload().max(512));
        e.set_version(0);
        e
    })
}

/// What the server records when no answer could be sent.
fn fail(request: &Request, code: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = code;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

async fn send_error<R: ResponseHandler>(
    request: &Request,
    code: ResponseCode,
    mut rh: R,
) -> ResponseInfo {
    let response =
        MessageResponseBuilder::from_message_request(request).error_msg(&request.metadata, code);
    rh.send_response(response)
        .await
        .unwrap_or_else(|_| fail(request, ResponseCode::ServFail))
}

/// A catalog that forwards every name to `upstreams` (UDP, then TCP for truncated answers);
/// `None` without upstreams.
pub fn forwarder(upstreams: &[SocketAddr]) -> anyhow::Result<Option<Catalog>> {
    if upstreams.is_empty() {
        return Ok(None);
    }
    let name_servers = upstreams
        .iter()
        .map(|a| {
            let mut udp = ConnectionConfig::udp();
            udp.port = a.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = a.port();
            NameServerConfig::new(a.ip(), true, vec![udp, tcp])
        })
        .collect();
    let mut options = ResolverOpts::default();
    options.timeout = std::time::Duration::from_secs(3);
    options.attempts = 2;
    let handler = ForwardZoneHandler::builder_tokio(ForwardConfig {
        name_servers,
        options: Some(options),
    })
    .build()
    .map_err(anyhow::Error::msg)
    .context("cannot set up DNS forwarding")?;
    let mut catalog = Catalog::new();
    catalog.upsert(
        hickory_proto::rr::LowerName::from(Name::root()),
        vec![Arc::new(handler)],
    );
    Ok(Some(catalog))
}
