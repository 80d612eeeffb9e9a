//! How the CLI reaches a node: its admin API over HTTP, or its mesh address over QUIC with the
//! operator certificate.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use murmur_transport::certs::{ca_trust_domain, parse_leaf, read_certs_pem};
use murmur_transport::endpoint::{MeshEndpoint, PeerConnection, QuicSettings};
use murmur_transport::tls::{CredentialPaths, TlsState, load_material};

use crate::policy::control;

/// Where the CLI sends policy requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A node's admin API (`http://HOST:PORT` or a bare `HOST:PORT`).
    Admin(SocketAddr),
    /// Any node's mesh address (`quic://HOST:PORT`).
    Mesh(SocketAddr),
}

impl Target {
    /// Parses `http://HOST:PORT`, `quic://HOST:PORT` or `HOST:PORT` (admin).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (mesh, rest) = if let Some(r) = s.strip_prefix("quic://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else if s.contains("://") {
            return Err(format!(
                "{s:?}: use http://HOST:PORT (admin API) or quic://HOST:PORT (mesh address)"
            ));
        } else {
            (false, s)
        };
        let rest = rest.trim_end_matches('/');
        let addr = rest
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("{s:?} is not HOST:PORT"))?;
        Ok(if mesh {
            Self::Mesh(addr)
        } else {
            Self::Admin(addr)
        })
    }
}

/// The operator's files.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Operator certificate.
    pub cert: PathBuf,
    /// Its key: the certificate's path with extension `.key`.
    pub key: PathBuf,
    /// Trust bundle (for QUIC).
    pub ca: PathBuf,
}

impl Identity {
    /// From `--identity` and an optional `--ca`.
    pub fn new(cert: &Path, ca: Option<&Path>) -> Self {
        let ca = ca.map_or_else(|| cert.with_file_name("ca.crt"), Path::to_path_buf);
        Self {
            cert: cert.to_path_buf(),
            key: cert.with_extension("key"),
            ca,
        }
    }
}

/// A connected client.
pub enum NodeClient {
    /// Over HTTP.
    Admin(SocketAddr),
    /// Over QUIC.
    Mesh {
        /// The connection.
        conn: PeerConnection,
        /// Keeps the client endpoint alive.
        endpoint: MeshEndpoint,
    },
}

impl NodeClient {
    /// Connects to `target` (QUIC needs the operator's identity).
    pub async fn connect(target: &Target, identity: &Identity) -> anyhow::Result<Self> {
        match target {
            Target::Admin(addr) => Ok(Self::Admin(*addr)),
            Target::Mesh(addr) => {
                let tls = operator_tls(identity)?;
                let endpoint = MeshEndpoint::client(tls, QuicSettings::default())
                    .context("cannot open a QUIC endpoint")?;
                let conn = endpoint
                    .connect(*addr, None)
                    .await
                    .with_context(|| format!("cannot reach the node at quic://{addr}"))?;
                Ok(Self::Mesh { conn, endpoint })
            }
        }
    }

    /// Sends a request; returns status and body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        match self {
            Self::Admin(addr) => {
                let (status, body) = super::client::call(*addr, method, path, body).await?;
                Ok((status, body.to_vec()))
            }
            Self::Mesh { conn, .. } => {
                let resp = control::call(conn, method, path, body.unwrap_or_default()).await?;
                Ok((resp.status, resp.body))
            }
        }
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        if let Self::Mesh { endpoint, .. } = self {
            endpoint.close(std::time::Duration::from_millis(200)).await;
        }
    }
}

fn operator_tls(identity: &Identity) -> anyhow::Result<std::sync::Arc<TlsState>> {
    let certs = read_certs_pem(&identity.ca)?;
    let Some(first) = certs.first() else {
        bail!("{} holds no certificate", identity.ca.display());
    };
    let td = ca_trust_domain(first)?;
    let paths = CredentialPaths {
        cert: identity.cert.clone(),
        key: identity.key.clone(),
        bundle: identity.ca.clone(),
    };
    let leaf = read_certs_pem(&identity.cert)?;
    let Some(leaf) = leaf.first() else {
        bail!("{} holds no certificate", identity.cert.display());
    };
    let id = parse_leaf(leaf)?.id;
    let material = load_material(&paths, &td)?;
    TlsState::new(id, material)
        .with_context(|| format!("{} cannot be used to connect", identity.cert.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_admin_unless_quic() {
        let a: SocketAddr = "127.0.0.2:7422".parse().unwrap();
        assert_eq!(Target::parse("127.0.0.2:7422"), Ok(Target::Admin(a)));
        assert_eq!(
            Target::parse("http://127.0.0.2:7422/"),
            Ok(Target::Admin(a))
        );
        assert_eq!(Target::parse("quic://127.0.0.2:7422"), Ok(Target::Mesh(a)));
        assert!(Target::parse("https://127.0.0.2:7422").is_err());
        assert!(Target::parse("quic://nowhere").is_err());
    }
}
