//! Mirroring: a copy of a request sent to the mirror's instance on a task of its own, its
//! answer read and discarded. The original never waits for it and never sees it fail: the copy
//! is spawned, bounded in time ([`MIRROR_TIMEOUT`]) and in number (at most
//! [`crate::traffic::state::MAX_MIRRORS`] in flight; beyond, copies are skipped). A request
//! without a body is copied at once; one with a body once the body has been sent whole, from
//! the recording kept for it (at most [`MIRROR_BODY_LIMIT`] bytes; larger ones are skipped).
//! The copy carries `x-murmur-mirror: <route>` so its app can tell it from real traffic.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use murmur_membership::view::Endpoint;
use murmur_transport::wire::{StreamHeader, StreamKind};
use tracing::debug;

use super::body;
use super::dial;
use super::frame::{self, FrameReader, RequestHead};
use super::plan::{Identity, Mirrored, Target};
use super::replay::ReplayBody;
use super::runtime::Proxy;

/// Longest a copy may take, answer included.
pub const MIRROR_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body copied.
pub const MIRROR_BODY_LIMIT: u64 = 64 * 1024;
/// The header that marks a copy.
pub const MIRROR_HEADER: &str = "x-murmur-mirror";

/// What became of a copy, as counted in `murmur_mirrored_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It was answered.
    Sent,
    /// It failed or timed out.
    Failed,
    /// It was not sent.
    Skipped,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

/// Counts a copy of a request of `route`.
pub fn count(proxy: &Proxy, mirrored: &Mirrored<'_>, route: &str, outcome: Outcome) {
    proxy
        .telemetry
        .mirrored
        .get(&[mirrored.service, route, outcome.as_str()])
        .inc();
}

/// Sends a copy of `head` (and `body`, if the request has one) to the mirror's instance,
/// without waiting; counts it.
pub fn spawn(
    proxy: &Proxy,
    mirrored: &Mirrored<'_>,
    route: &str,
    head: &RequestHead,
    body: Option<ReplayBody>,
) {
    let (Some(target), Some(slot)) = (mirrored.target, proxy.traffic.mirror_slot()) else {
        count(proxy, mirrored, route, Outcome::Skipped);
        return;
    };
    let mut copy = head.clone();
    // A route's name is checked when its document is accepted: it is a valid value.
    if let Ok(value) = HeaderValue::from_str(route) {
        copy.headers.append(MIRROR_HEADER, value);
    }
    let mut bytes = BytesMut::with_capacity(256);
    if frame::put_head(&copy, &mut bytes).is_err() {
        count(proxy, mirrored, route, Outcome::Skipped);
        return;
    }
    let endpoint = proxy.endpoint.clone();
    let telemetry = proxy.telemetry.clone();
    let instance = target.endpoint.clone();
    let (service, route) = (mirrored.service.to_owned(), route.to_owned());
    tokio::spawn(async move {
        let _slot = slot;
        let sent = tokio::time::timeout(
            MIRROR_TIMEOUT,
            send(&endpoint, &instance, &service, bytes.freeze(), body),
        )
        .await;
        let outcome = match sent {
            Ok(Ok(())) => Outcome::Sent,
            Ok(Err(e)) => {
                debug!(%service, node = %instance.node, error = %e, "mirrored request failed");
                Outcome::Failed
            }
            Err(_) => Outcome::Failed,
        };
        telemetry
            .mirrored
            .get(&[&service, &route, outcome.as_str()])
            .inc();
    });
}

/// One copy: the stream, the body, the answer read to its end.
async fn send(
    endpoint: &murmur_transport::endpoint::MeshEndpoint,
    instance: &Endpoint,
    service: &str,
    head: Bytes,
    body: Option<ReplayBody>,
) -> Result<(), String> {
    let target = Target {
        endpoint: instance,
        identity: Identity {
            node: &instance.node,
            service,
        },
        cross_zone: None,
    };
    let header = StreamHeader::new(service);
    let (mut tx, rx) = dial::open(
        endpoint,
        &target,
        &header,
        StreamKind::Http,
        &head,
        body.is_none(),
    )
    .await
    .map_err(|e| e.to_string())?;
    if let Some(b) = body {
        body::send(&mut tx, BytesMut::new(), b)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut reader = FrameReader::new(rx);
    while reader.next().await.map_err(|e| e.to_string())?.is_some() {}
    Ok(())
}
