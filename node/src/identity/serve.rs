//! Serving `Identity` streams: renewals from nodes (answered by this node's issuer), joins from
//! nodes without a certificate (answered by this node's issuer, or forwarded to an issuer of the
//! mesh when this node is only their seed), and joins other seeds forward here.
//!
//! The endpoint's stream handler hands these streams over through a bounded queue; a bounded
//! number are served at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use murmur_membership::{ClusterView, MemberState};
use murmur_transport::endpoint::{AnonymousStream, InboundStream, MeshEndpoint};
use murmur_transport::identity::{Name, PeerIdentity, Role};
use murmur_transport::issuance::exchange::{exchange, read_request, write_answer};
use murmur_transport::issuance::protocol::{Answer, Refusal, RefusalCode, Request};
use tokio::sync::{mpsc, watch};
use tracing::debug;

use super::issuer::Issuer;
use super::record::issuers_in;

/// Streams waiting to be served.
const QUEUE: usize = 64;
/// Streams served at once.
const CONCURRENT: usize = 8;
/// A request must arrive whole within this time.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to an issuer a join is forwarded to.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// An `Identity` stream, from a verified peer or from a client without a certificate.
#[derive(Debug)]
pub enum IdentityStream {
    /// From a node (renewal, or a join a seed forwards).
    Peer(InboundStream),
    /// From a client without a certificate (a join).
    Anonymous(AnonymousStream),
}

/// The queue between the stream handler and [`run`].
pub fn queue() -> (mpsc::Sender<IdentityStream>, mpsc::Receiver<IdentityStream>) {
    mpsc::channel(QUEUE)
}

/// What serving needs.
#[derive(Clone, Debug)]
pub struct IdentityService {
    /// This node's issuer, if it is one.
    pub issuer: Option<Arc<Issuer>>,
    /// To reach issuers a join is forwarded to.
    pub endpoint: MeshEndpoint,
    /// Who the issuers are.
    pub view: watch::Receiver<Arc<ClusterView>>,
    /// This node.
    pub node: Name,
}

/// Serves the streams that arrive on `streams`, a bounded number at once, until every sender
/// is gone.
pub async fn run(service: IdentityService, streams: mpsc::Receiver<IdentityStream>) {
    crate::workers::serve_bounded(streams, CONCURRENT, move |stream| {
        let service = service.clone();
        async move { serve(&service, stream).await }
    })
    .await;
}

async fn serve(service: &IdentityService, stream: IdentityStream) {
    let (peer, mut send, mut recv) = match stream {
        IdentityStream::Peer(s) => (Some(s.peer), s.send, s.recv),
        IdentityStream::Anonymous(s) => (None, s.send, s.recv),
    };
    let answer = match read_request(&mut recv, READ_TIMEOUT).await {
        Ok(request) => answer(service, peer.as_deref(), request).await,
        Err(e) => Answer::Refused(Refusal::new(RefusalCode::BadRequest, e)),
    };
    write_answer(&mut send, &answer, READ_TIMEOUT).await;
}

async fn answer(
    service: &IdentityService,
    peer: Option<&PeerIdentity>,
    request: Request,
) -> Answer {
    match (request, peer) {
        (Request::Renew { csr }, Some(peer)) => match &service.issuer {
            Some(issuer) => issuer.renew(peer, &csr),
            None => not_an_issuer(&service.node),
        },
        (Request::Renew { .. }, None) => Answer::Refused(Refusal::new(
            RefusalCode::BadRequest,
            "a renewal is authenticated by the current certificate: connect with it",
        )),
        (Request::Join { token, csr }, peer) => match &service.issuer {
            Some(issuer) => issuer.join(&token, &csr).await,
            // A join a seed forwarded is not forwarded again.
            None if peer.is_some_and(|p| p.id.role == Role::Node) => not_an_issuer(&service.node),
            None => forward(service, Request::Join { token, csr }).await,
        },
    }
}

fn not_an_issuer(node: &Name) -> Answer {
    Answer::Refused(Refusal::new(
        RefusalCode::NotAnIssuer,
        format!("node {node} is not an issuer"),
    ))
}

/// Hands a join to the issuers of the mesh in turn until one answers for good.
async fn forward(service: &IdentityService, request: Request) -> Answer {
    let view = service.view.borrow().clone();
    let issuers = alive_issuers(&view, &service.node);
    let mut tried = Vec::new();
    for (name, addr) in shuffled(issuers) {
        match forward_to(service, &name, addr, &request).await {
            Ok(Answer::Refused(r)) if r.code.worth_another_issuer() => {
                tried.push(format!("{name}: {}", r.message));
            }
            Ok(answer) => return answer,
            Err(e) => tried.push(format!("{name}: {e}")),
        }
    }
    let detail = if tried.is_empty() {
        "no member announces an issuer credential".to_owned()
    } else {
        tried.join("; ")
    };
    Answer::Refused(Refusal::new(
        RefusalCode::NoIssuer,
        format!("seed {} reached no issuer: {detail}", service.node),
    ))
}

async fn forward_to(
    service: &IdentityService,
    name: &Name,
    addr: SocketAddr,
    request: &Request,
) -> Result<Answer, String> {
    let conn = service
        .endpoint
        .connect(addr, Some(name))
        .await
        .map_err(|e| e.to_string())?;
    debug!(issuer = %name, "forwarding a join");
    exchange(&conn, request, FORWARD_TIMEOUT)
        .await
        .map_err(|e| e.to_string())
}

/// The alive members other than `me` that announce a valid issuer credential.
pub fn alive_issuers(view: &ClusterView, me: &Name) -> Vec<(Name, SocketAddr)> {
    issuers_in(view, me)
        .into_iter()
        .filter(|(n, _)| {
            view.members
                .get(n.as_str())
                .is_some_and(|m| m.state == MemberState::Alive && !m.stale)
        })
        .collect()
}

/// `items` in a random order (issuers share the load; a dead one is not always tried first).
pub fn shuffled<T>(mut items: Vec<T>) -> Vec<T> {
    let rng = ring::rand::SystemRandom::new();
    for i in (1..items.len()).rev() {
        let mut b = [0u8; 8];
        if ring::rand::SecureRandom::fill(&rng, &mut b).is_err() {
            break;
        }
        let j = (u64::from_le_bytes(b) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
    items
}
