//! The limits of the local listeners, and their defaults.

use std::time::Duration;

/// The limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections open at once; more are accepted and closed.
    pub max_connections: usize,
    /// A connection must move its first byte (either way) within this time.
    pub first_byte_timeout: Duration,
    /// A connection with nothing in flight and no byte either way for this long is closed.
    pub idle_timeout: Duration,
}

impl ListenerLimits {
    /// The outbound HTTP proxy: as many connections as the streams a peer takes; HTTP
    /// keep-alive connections idle for two minutes are closed.
    pub const OUTBOUND: Self = Self {
        max_connections: 4096,
        first_byte_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(120),
    };
    /// An `[[upstream]]` TCP listener: database pools keep connections idle for long, so the
    /// idle timeout is an hour; at most half a peer's stream limit per listener.
    pub const UPSTREAM: Self = Self {
        max_connections: 512,
        first_byte_timeout: Duration::MAX,
        idle_timeout: Duration::from_secs(3600),
    };
    /// Captured connections (`crate::capture`): any protocol, database pools included, so
    /// the upstream listener's timeouts; as many at once as the outbound proxy takes.
    pub const CAPTURED: Self = Self {
        max_connections: 4096,
        first_byte_timeout: Duration::MAX,
        idle_timeout: Duration::from_secs(3600),
    };
    /// The gateway: clients outside the mesh, over the Internet. A client has 10 s to start
    /// its TLS handshake and a minute of silence between requests.
    pub const GATEWAY: Self = Self {
        max_connections: 4096,
        first_byte_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
    };
    /// The admin API: a few operators and scrapers.
    pub const ADMIN: Self = Self {
        max_connections: 64,
        first_byte_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
    };
}

/// The limits of every kind of listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerSettings {
    /// The outbound HTTP proxy.
    pub outbound: ListenerLimits,
    /// Each `[[upstream]]` listener.
    pub upstream: ListenerLimits,
    /// The listeners of captured connections (all of them together).
    pub captured: ListenerLimits,
    /// The admin API.
    pub admin: ListenerLimits,
    /// The gateway's listeners (HTTPS and plain HTTP together).
    pub gateway: ListenerLimits,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        Self {
            outbound: ListenerLimits::OUTBOUND,
            upstream: ListenerLimits::UPSTREAM,
            captured: ListenerLimits::CAPTURED,
            admin: ListenerLimits::ADMIN,
            gateway: ListenerLimits::GATEWAY,
        }
    }
}
