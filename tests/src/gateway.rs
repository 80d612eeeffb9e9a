//! Helpers for the gateway tests: a public-web CA of the test's own (rcgen) that issues the
//! gateway's certificates, the `[gateway]` table of a node, curl over TLS from a chosen client
//! address, and clients that hold connections to the gateway open without finishing anything.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::onboarding::client;

/// A CA standing in for a public one: clients are given its certificate (`--cacert`).
pub struct WebCa {
    /// Its certificate, PEM.
    pub file: PathBuf,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for WebCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebCa").field("file", &self.file).finish()
    }
}

impl WebCa {
    /// A CA called `name`, its certificate written to `dir/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let file = dir.join(format!("{name}.pem"));
        std::fs::write(&file, cert.pem()).unwrap();
        Self {
            file,
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Issues a certificate for `names` to `cert` and `key` (written whole, the key first, as
    /// a renewal tool would replace them).
    pub fn issue(&self, names: &[&str], cert: &Path, key: &Path) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = CertificateParams::new(names).unwrap();
        let pair = KeyPair::generate().unwrap();
        let issued = params.signed_by(&pair, &self.issuer).unwrap();
        let tmp = key.with_extension("tmp");
        std::fs::write(&tmp, pair.serialize_pem()).unwrap();
        std::fs::rename(&tmp, key).unwrap();
        std::fs::write(&tmp, issued.pem()).unwrap();
        std::fs::rename(&tmp, cert).unwrap();
    }

    /// A TLS client trusting only this CA, offering ALPN http/1.1.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

/// The `[gateway]` table (and `[limits.gateway]`) of a node: HTTPS on `listen`, plain HTTP on
/// `http_listen`, the certificates `(cert, key)` and `extra` lines inside `[gateway]`.
pub fn gateway_toml(
    listen: SocketAddr,
    http_listen: SocketAddr,
    certs: &[(PathBuf, PathBuf)],
    extra: &str,
    limits: &str,
) -> String {
    let mut t = format!(
        "\n[gateway]\nlisten = \"{listen}\"\nhttp_listen = \"{http_listen}\"\n\
         reload_interval = \"200ms\"\n{extra}\n"
    );
    for (cert, key) in certs {
        t.push_str(&format!(
            "\n[[gateway.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ));
    }
    if !limits.is_empty() {
        t.push_str(&format!("\n[limits.gateway]\n{limits}\n"));
    }
    t
}

/// `curl` over HTTPS to `https://<host>:<port><path>` at `gateway`, from `source`, trusting
/// `ca`; prints the body, then a line `<status> <http version>`.
pub fn curl(
    ca: &Path,
    source: IpAddr,
    gateway: SocketAddr,
    host: &str,
    path: &str,
    args: &[&str],
) -> Command {
    let port = gateway.port();
    let resolve = format!("{host}:{port}:{}", gateway.ip());
    let url = format!("https://{host}:{port}{path}");
    let source = source.to_string();
    let mut all = vec![
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        ca.to_str().unwrap(),
        "--interface",
        &source,
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_code} %{http_version}",
    ];
    all.extend_from_slice(args);
    all.push(&url);
    client(None, Path::new("curl"), &all)
}

/// How a connection held open by [`hold`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// The gateway closed it after this long.
    Closed(Duration),
    /// It was still open at the deadline.
    Open,
    /// It could not be opened.
    Failed,
}

/// What a flooding connection does once open.
#[derive(Clone, Copy, Debug)]
pub enum Flood {
    /// Sends nothing.
    Idle,
    /// Starts a TLS handshake and sends one byte every 300 ms.
    SlowHandshake,
    /// Finishes the handshake, then sends a request head one header every 500 ms.
    SlowHead,
}

/// Opens one connection from `source` to `gateway` and behaves as `kind` until the gateway
/// closes it or `limit` passes.
pub async fn hold(
    kind: Flood,
    source: IpAddr,
    gateway: SocketAddr,
    tls: tokio_rustls::TlsConnector,
    limit: Duration,
) -> Held {
    let started = Instant::now();
    let Ok(stream) = connect_from(source, gateway).await else {
        return Held::Failed;
    };
    let left = limit.saturating_sub(started.elapsed());
    let closed = match kind {
        Flood::Idle => tokio::time::timeout(left, until_closed(stream)).await,
        Flood::SlowHandshake => tokio::time::timeout(left, slow_handshake(stream)).await,
        Flood::SlowHead => tokio::time::timeout(left, slow_head(stream, tls)).await,
    };
    match closed {
        Ok(()) => Held::Closed(started.elapsed()),
        Err(_) => Held::Open,
    }
}

async fn connect_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

/// Resolves when the peer closes (or resets) the connection.
async fn until_closed(mut stream: TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// A TLS record header and a ClientHello, a byte at a time.
async fn slow_handshake(mut stream: TcpStream) {
    // Handshake record, TLS 1.0 on the record layer, 512 bytes long: never completed.
    let mut bytes = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    bytes.extend(std::iter::repeat_n(0x2a, 500));
    let mut buf = [0u8; 64];
    for b in bytes {
        if stream.write_all(&[b]).await.is_err() {
            return;
        }
        tokio::select! {
            // Whatever comes back (an alert, the end) means the gateway gave up on it.
            _ = stream.read(&mut buf) => return,
            () = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
    }
    until_closed(stream).await;
}

/// A finished handshake, then a request head that never ends.
async fn slow_head(stream: TcpStream, tls: tokio_rustls::TlsConnector) {
    let name = ServerName::try_from("shop.example.test").unwrap();
    let Ok(mut stream) = tls.connect(name, stream).await else {
        return;
    };
    if stream
        .write_all(b"GET /api/slow HTTP/1.1\r\nhost: shop.example.test\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut buf = [0u8; 1024];
    for _ in 0..1000 {
        if stream.write_all(b"x-slow: 1\r\n").await.is_err() {
            return;
        }
        tokio::select! {
            // Whatever comes back (a 408, the end) means the gateway gave up on it.
            _ = stream.read(&mut buf) => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// An HTTPS app (HTTP/1.1 over TLS only) with a certificate of `ca` for `name`: answers
/// `secure <method> <path>` and the `host` it was sent; counts TLS handshakes.
#[derive(Debug, Clone)]
pub struct HttpsApp {
    /// Handshakes completed.
    pub handshakes: Arc<std::sync::atomic::AtomicU64>,
}

impl HttpsApp {
    /// Starts the app on `addr`.
    pub async fn start(addr: SocketAddr, ca: &WebCa, name: &str, dir: &Path) -> Self {
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        ca.issue(&[name], &cert, &key);
        let chain: Vec<CertificateDer<'static>> = {
            use rustls_pki_types::pem::PemObject;
            CertificateDer::pem_file_iter(&cert)
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let key = {
            use rustls_pki_types::pem::PemObject;
            rustls_pki_types::PrivateKeyDer::from_pem_file(&key).unwrap()
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let handshakes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = handshakes.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, counted) = (acceptor.clone(), counted.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let svc = hyper::service::service_fn(
                        |req: hyper::Request<hyper::body::Incoming>| async move {
                            let host = req
                                .headers()
                                .get("host")
                                .and_then(|h| h.to_str().ok())
                                .unwrap_or("-")
                                .to_owned();
                            let text = format!(
                                "secure {} {} host={host}\n",
                                req.method(),
                                req.uri().path()
                            );
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(text)),
                            ))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Self { handshakes }
    }
}
