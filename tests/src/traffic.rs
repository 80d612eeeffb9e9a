//! Helpers for the traffic-policy tests: policy applied with the `murmur policy` CLI as an
//! operator would, metrics read from a node, and bounded load over keep-alive connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use murmur_membership::policy::spec::RetryBudget;

use crate::http::Reply;
use crate::{Cluster, policy};

/// Signs the documents of `text` with the CA's operator key and applies them through `node`'s
/// admin API (the `murmur policy apply` CLI, as an operator runs it); waits until every running
/// node of the cluster holds the same set. Returns the digest.
pub async fn apply(cluster: &Cluster, node: &str, text: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!("policy-{}.toml", N.fetch_add(1, Ordering::Relaxed));
    let file = policy::write(cluster.dir.path(), &name, text);
    let target = policy::admin_url(cluster.node(node));
    let digest = policy::printed_digest(&policy::apply(&cluster.pki, &file, &target));
    let running: Vec<&str> = cluster
        .nodes
        .iter()
        .filter(|n| n.is_running_ref())
        .map(|n| n.name())
        .collect();
    let what = format!("every node to hold policy digest {digest}");
    policy::wait_agree(cluster, &running, &what, Duration::from_secs(30), |p| {
        policy::ensure(p.digest == digest, || format!("digest {}", p.digest))
    })
    .await;
    digest
}

/// The sum of the samples of metric `name` whose labels contain every `label="value"` pair of
/// `labels`, as `node` reports them.
pub async fn metric(cluster: &Cluster, node: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = cluster
        .node(node)
        .admin_get("/metrics")
        .await
        .expect("metrics")
        .text();
    let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| wanted.iter().all(|w| l.contains(w.as_str())))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One request of a load run.
#[derive(Debug, Clone)]
pub struct Req {
    /// Method.
    pub method: &'static str,
    /// Target (path or absolute URI).
    pub target: String,
    /// Headers (`host` names the service).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Req {
    /// A GET of `path` from `service`.
    pub fn get(service: &str, path: &str) -> Self {
        Self {
            method: "GET",
            target: path.to_owned(),
            headers: vec![("host".into(), service.into())],
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    /// A request with this method and body.
    pub fn with(mut self, method: &'static str, body: &[u8]) -> Self {
        self.method = method;
        self.body = body.to_vec();
        self
    }
}

/// A finished request: when it was sent (since the run started), and its reply or error.
#[derive(Debug, Clone)]
pub struct Done {
    /// Index in the run.
    pub index: usize,
    /// Sent this long after the run started.
    pub at: Duration,
    /// How long it took, to the end of the reply.
    pub took: Duration,
    /// The reply.
    pub reply: Result<Reply, String>,
}

impl Done {
    /// Status, or 0 for a failed exchange.
    pub fn status(&self) -> u16 {
        self.reply.as_ref().map_or(0, |r| r.status)
    }
}

/// Sends `total` requests made by `make(i)` to `addr` from `concurrency` keep-alive
/// connections; each request is bounded by 30 s. Returns them in index order.
pub async fn load(
    addr: SocketAddr,
    total: usize,
    concurrency: usize,
    make: impl Fn(usize) -> Req + Send + Sync + 'static,
) -> Vec<Done> {
    load_paced(addr, total, concurrency, None, make).await
}

/// Like [`load`], but request `i` is not sent before `i · interval` from the start (a fixed
/// rate, as long as `concurrency` keeps up).
pub async fn load_paced(
    addr: SocketAddr,
    total: usize,
    concurrency: usize,
    interval: Option<Duration>,
    make: impl Fn(usize) -> Req + Send + Sync + 'static,
) -> Vec<Done> {
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (make, next) = (make.clone(), next.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            let mut conn: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if let Some(iv) = interval {
                    tokio::time::sleep_until((start + iv * i as u32).into()).await;
                }
                let at = start.elapsed();
                let reply = send_on(&mut conn, addr, make(i)).await;
                let took = start.elapsed().saturating_sub(at);
                if reply.is_err() {
                    conn = None;
                }
                out.push(Done {
                    index: i,
                    at,
                    took,
                    reply,
                });
            }
            out
        });
    }
    let mut all = Vec::with_capacity(total);
    while let Some(r) = set.join_next().await {
        all.extend(r.expect("load worker"));
    }
    all.sort_by_key(|d| d.index);
    all
}

async fn send_on(
    conn: &mut Option<crate::http::Sender>,
    addr: SocketAddr,
    req: Req,
) -> Result<Reply, String> {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        *conn = Some(crate::http::connect(addr).await?);
    }
    let sender = conn.as_mut().ok_or("no connection")?;
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    crate::http::exchange(
        sender,
        &addr.to_string(),
        req.method,
        &req.target,
        &headers,
        req.body,
    )
    .await
}

/// Sends `raw` as the request target, byte for byte (no client-side normalization), on a new
/// connection; returns the status and body.
pub async fn raw_get(addr: SocketAddr, raw: &str, host: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let req = format!("GET {raw} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status line: {text:?}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| "no answer in 30 s".to_owned())?
}

/// `count / total` as a percentage.
pub fn pct(count: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        count as f64 * 100.0 / total as f64
    }
}

/// The most retries the default retry budget (`RetryBudget::default()`: 20 % of the requests,
/// 10/s over a 10 s window of ten slots) can grant to `requests` requests sent within `took`.
///
/// A grant is checked against a window reaching back over its own slot and the nine before,
/// so at least nine tenths of the window, and that window then holds at most `ratio` of its
/// requests plus the reserve. Going back from the last grant, the window of the last grant
/// before the current window's start is disjoint from it, so ⌈took / 0.9 window⌉ disjoint
/// windows hold every grant. The reserve is not spread over the window: a run of 12 s can spend
/// it at its start and again when that slot expires.
pub fn default_retry_budget(requests: usize, took: Duration) -> f64 {
    let budget = RetryBudget::default();
    let window = budget.window.0.as_secs_f64();
    let reserve = f64::from(budget.min_per_second) * window;
    let windows = (took.as_secs_f64() / (0.9 * window)).ceil().max(1.0);
    budget.ratio * requests as f64 + reserve * windows
}
