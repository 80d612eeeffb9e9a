//! A small HTTP/1.1 client for the admin API, used by the CLI commands.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

/// Environment variable naming the admin address the CLI talks to.
pub const ADMIN_ENV: &str = "MURMUR_ADMIN";
/// Admin responses larger than this are refused.
const MAX_RESPONSE: usize = 32 << 20;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends a request to the admin API and returns status and body.
pub async fn call(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<(u16, Bytes)> {
    call_within(admin, method, path, body, TIMEOUT).await
}

/// [`call`] with its own time limit, for operations that take long (a drain).
pub async fn call_within(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    limit: Duration,
) -> anyhow::Result<(u16, Bytes)> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(admin)
            .await
            .with_context(|| format!("cannot reach the admin API at {admin}: is the node running? (--admin or {ADMIN_ENV} choose another)"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", admin.to_string())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the admin response: {e}"))?
            .to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(limit, exchange)
        .await
        .with_context(|| format!("the admin API at {admin} did not answer within {limit:?}"))?
}

/// GETs `path` and decodes a JSON body; a non-2xx answer becomes an error with its message.
pub async fn get_json<T: DeserializeOwned>(admin: SocketAddr, path: &str) -> anyhow::Result<T> {
    let (status, body) = call(admin, "GET", path, None).await?;
    decode(status, &body)
}

/// Decodes a JSON answer, turning API errors into readable errors.
pub fn decode<T: DeserializeOwned>(status: u16, body: &[u8]) -> anyhow::Result<T> {
    if !(200..300).contains(&status) {
        let msg = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        bail!("the node answered {status}: {msg}");
    }
    serde_json::from_slice(body).context("the node's answer is not the expected JSON")
}
