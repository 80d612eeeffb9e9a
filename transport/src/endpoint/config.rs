//! QUIC and TLS configuration for node endpoints, sized for a proxy rather than quinn's defaults.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};
use rustls::client::Resumption;
use rustls::server::NoServerSessionStorage;

use crate::tls::{
    CurrentCert, MeshClientVerifier, MeshServerVerifier, TlsError, TlsState, TrustBundle,
    alpn_protocols, provider,
};

/// QUIC tuning of an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuicSettings {
    /// Concurrent bidirectional streams a peer may open (one per proxied request or TCP
    /// connection).
    pub max_bidi_streams: u32,
    /// Concurrent unidirectional streams (one per gossip message in flight).
    pub max_uni_streams: u32,
    /// Flow-control window of one stream, bytes.
    pub stream_window: u32,
    /// Flow-control window of a whole connection, bytes. Bounds the memory one peer can pin.
    pub connection_window: u32,
    /// Keep-alive interval; also how quickly a dead peer is noticed on an idle connection.
    pub keep_alive: Duration,
    /// A connection silent for this long is closed.
    pub idle_timeout: Duration,
    /// Time allowed for a handshake.
    pub connect_timeout: Duration,
    /// RTT assumed before the first measurement (small for a datacentre mesh).
    pub initial_rtt: Duration,
    /// How long opening a stream may wait for the peer to allow one more (it allows
    /// `max_bidi_streams` at once); then the open fails with [`super::OpenError::Busy`].
    pub stream_wait: Duration,
    /// Largest UDP payload a packet may carry. Path MTU discovery searches up to it and the
    /// endpoint accepts datagrams this large; a path that carries less (a 1500-byte Ethernet)
    /// is found by the search and costs a few lost probes. Every packet has a fixed cost
    /// (encryption, acknowledgement, its share of a system call), so where the path carries
    /// more (jumbo frames, loopback between sidecars of one host) a bulk transfer costs a
    /// fraction of the CPU. The default is a 9000-byte jumbo frame's payload: on loopback,
    /// 64 KiB packets carried 3 % more than that and held 20 MiB more under bulk load.
    pub max_udp_payload: u16,
    /// Kernel buffer of the UDP socket, each way, bytes (capped by `net.core.rmem_max` and
    /// `wmem_max`). A bulk transfer overflows the usual 200 KiB default even on loopback.
    pub udp_buffer: u32,
    /// Offer packed gossip ([`crate::gossip::pack`]) in the handshake. Off, the endpoint
    /// speaks only what nodes spoke before it (for mixed-version tests).
    pub packed_gossip: bool,
}

impl Default for QuicSettings {
    fn default() -> Self {
        Self {
            max_bidi_streams: 1024,
            max_uni_streams: 128,
            stream_window: 1 << 20,
            connection_window: 16 << 20,
            keep_alive: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            initial_rtt: Duration::from_millis(50),
            stream_wait: Duration::from_secs(1),
            max_udp_payload: JUMBO_UDP_PAYLOAD,
            udp_buffer: 4 << 20,
            packed_gossip: true,
        }
    }
}

/// The largest payload QUIC allows over UDP (quinn's upper limit).
pub const MAX_UDP_PAYLOAD: u16 = 65_527;

/// The UDP payload of a 9000-byte jumbo frame over IPv4.
const JUMBO_UDP_PAYLOAD: u16 = 9000 - 20 - 8;

fn transport(s: &QuicSettings) -> Result<Arc<TransportConfig>, TlsError> {
    let mut t = TransportConfig::default();
    let mut mtu = MtuDiscoveryConfig::default();
    mtu.upper_bound(s.max_udp_payload);
    t.mtu_discovery_config(Some(mtu));
    t.max_concurrent_bidi_streams(VarInt::from_u32(s.max_bidi_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(s.max_uni_streams))
        .stream_receive_window(VarInt::from_u32(s.stream_window))
        .receive_window(VarInt::from_u32(s.connection_window))
        .send_window(u64::from(s.connection_window))
        .keep_alive_interval(Some(s.keep_alive))
        .initial_rtt(s.initial_rtt)
        .max_idle_timeout(Some(
            IdleTimeout::try_from(s.idle_timeout)
                .map_err(|_| TlsError::Key("QUIC idle timeout out of range".into()))?,
        ));
    Ok(Arc::new(t))
}

/// The server side: require and verify client certificates, serve our current certificate.
pub(super) fn server_config(
    tls: &Arc<TlsState>,
    s: &QuicSettings,
) -> Result<quinn::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(tls.crypto().clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(MeshClientVerifier(tls.clone())))
        .with_cert_resolver(Arc::new(CurrentCert(tls.clone())));
    cfg.alpn_protocols = alpn_protocols(s.packed_gossip);
    cfg.session_storage = Arc::new(NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    cfg.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(cfg).map_err(|e| TlsError::Key(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport(s)?);
    server.migration(false);
    Ok(server)
}

/// The client side: present our current certificate, verify servers as mesh nodes.
pub(super) fn client_config(
    tls: &Arc<TlsState>,
    s: &QuicSettings,
) -> Result<quinn::ClientConfig, TlsError> {
    let cfg = rustls::ClientConfig::builder_with_provider(tls.crypto().clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(MeshServerVerifier::live(tls.clone())))
        .with_client_cert_resolver(Arc::new(CurrentCert(tls.clone())));
    quic_client(cfg, s)
}

/// The client side of a node without a certificate yet: present none, verify servers as mesh
/// nodes of `bundle`.
pub(super) fn anonymous_client_config(
    bundle: TrustBundle,
    s: &QuicSettings,
) -> Result<quinn::ClientConfig, TlsError> {
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(MeshServerVerifier::fixed(bundle)))
        .with_no_client_auth();
    quic_client(cfg, s)
}

/// Our ALPN, no resumption, no early data, and the QUIC transport settings.
fn quic_client(
    mut cfg: rustls::ClientConfig,
    s: &QuicSettings,
) -> Result<quinn::ClientConfig, TlsError> {
    cfg.alpn_protocols = alpn_protocols(s.packed_gossip);
    cfg.resumption = Resumption::disabled();
    cfg.enable_early_data = false;
    let crypto = QuicClientConfig::try_from(cfg).map_err(|e| TlsError::Key(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport(s)?);
    Ok(client)
}
