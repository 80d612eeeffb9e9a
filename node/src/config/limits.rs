//! `[limits]`: connection caps and timeouts of the local listeners, and how long a request
//! waits for a busy peer to allow one more stream.

use std::time::Duration;

use murmur_transport::endpoint::{MAX_UDP_PAYLOAD, QuicSettings};

use super::raw::{RawLimits, RawListenerLimits};
use crate::listener::{ListenerLimits, ListenerSettings};

/// A problem with one field: its name and what is wrong.
pub type Invalid = (String, String);

/// The listener settings and the QUIC settings `raw` asks for.
pub fn limits(raw: RawLimits) -> Result<(ListenerSettings, QuicSettings), Invalid> {
    let defaults = ListenerSettings::default();
    let listeners = ListenerSettings {
        outbound: listener("limits.outbound", raw.outbound, defaults.outbound)?,
        upstream: listener("limits.upstream", raw.upstream, defaults.upstream)?,
        captured: listener("limits.captured", raw.captured, defaults.captured)?,
        admin: listener("limits.admin", raw.admin, defaults.admin)?,
        gateway: listener("limits.gateway", raw.gateway, defaults.gateway)?,
    };
    let mut quic = QuicSettings::default();
    if let Some(wait) = raw.stream_wait {
        quic.stream_wait = positive("limits.stream_wait", wait.0)?;
    }
    if let Some(n) = raw.streams_per_peer {
        if !(1..=65_536).contains(&n) {
            return Err((
                "limits.streams_per_peer".into(),
                format!("{n} is outside 1..=65536"),
            ));
        }
        quic.max_bidi_streams = n;
    }
    if let Some(n) = raw.max_udp_payload {
        quic.max_udp_payload = u16::try_from(n)
            .ok()
            .filter(|n| (1200..=MAX_UDP_PAYLOAD).contains(n))
            .ok_or_else(|| {
                (
                    "limits.max_udp_payload".into(),
                    format!("{n} is outside 1200..={MAX_UDP_PAYLOAD} (QUIC's limits)"),
                )
            })?;
    }
    if let Some(n) = raw.udp_buffer {
        if !(64 << 10..=1 << 30).contains(&n) {
            return Err((
                "limits.udp_buffer".into(),
                format!("{n} is outside 65536..=1073741824 bytes"),
            ));
        }
        quic.udp_buffer = n;
    }
    Ok((listeners, quic))
}

fn listener(
    field: &str,
    raw: Option<RawListenerLimits>,
    default: ListenerLimits,
) -> Result<ListenerLimits, Invalid> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    let max_connections = raw.max_connections.unwrap_or(default.max_connections);
    if max_connections == 0 {
        return Err((
            format!("{field}.max_connections"),
            "must be at least 1".into(),
        ));
    }
    let timeout = |name: &str, v: Option<super::duration::HumanDuration>, d: Duration| {
        v.map_or(Ok(d), |v| positive(&format!("{field}.{name}"), v.0))
    };
    Ok(ListenerLimits {
        max_connections,
        first_byte_timeout: timeout(
            "first_byte_timeout",
            raw.first_byte_timeout,
            default.first_byte_timeout,
        )?,
        idle_timeout: timeout("idle_timeout", raw.idle_timeout, default.idle_timeout)?,
    })
}

fn positive(field: &str, d: Duration) -> Result<Duration, Invalid> {
    if d.is_zero() {
        return Err((field.into(), "must be longer than 0s".into()));
    }
    Ok(d)
}
