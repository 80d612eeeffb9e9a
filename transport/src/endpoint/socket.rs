//! The endpoint's UDP socket: buffers sized for a proxy, and batches the kernel accepts.
//!
//! The kernel's default UDP buffers (about 200 KiB) overflow under a bulk transfer even on
//! loopback: every datagram dropped there is a QUIC packet lost. And quinn hands the socket
//! batches of up to ten packets for one segmentation-offload (GSO) send without bounding their
//! total: once MTU discovery finds a path MTU above 6.5 KB (jumbo frames, loopback), a batch
//! passes the 64 KiB one send may carry, the kernel refuses it with `EMSGSIZE`, and quinn-udp
//! drops it silently (it expects that error only from MTU probes). [`in_sends`] splits such a
//! batch.

use std::io;
use std::net::SocketAddr;

use quinn::udp::Transmit;
use socket2::{Domain, Protocol, Socket, Type};

/// The most UDP payload one send may carry: an IPv4 datagram's 65 535 bytes less its IP and
/// UDP headers. A GSO batch is one datagram to the kernel until it is segmented.
const MAX_SEND: usize = 65_535 - 20 - 8;

/// Binds a UDP socket on `addr` asking the kernel for `buffer` bytes each way. The kernel
/// grants at most `net.core.rmem_max` / `wmem_max`; less than asked is logged, not an error.
/// With `shared`, other sockets may bind the same address (`SO_REUSEPORT`): one per shard.
pub(super) fn bind(addr: SocketAddr, buffer: u32, shared: bool) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if shared {
        socket.set_reuse_port(true)?;
    }
    let asked = buffer as usize;
    // Failing to resize is not fatal: the socket works with the kernel's default.
    if let Err(e) = socket.set_recv_buffer_size(asked) {
        tracing::warn!(error = %e, "cannot size the UDP receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(asked) {
        tracing::warn!(error = %e, "cannot size the UDP send buffer");
    }
    // Linux reports twice what it granted (it counts its bookkeeping).
    let granted = socket.recv_buffer_size().unwrap_or(0) / 2;
    if granted < asked {
        tracing::warn!(
            asked,
            granted,
            "the kernel granted a smaller UDP receive buffer than asked: bulk transfers may \
             lose packets; raise net.core.rmem_max and net.core.wmem_max"
        );
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// How many bytes of a batch of `segment`-sized packets one send carries: whole packets only.
fn per_send(segment: usize) -> usize {
    (MAX_SEND / segment).max(1) * segment
}

/// Sends `transmit` with `send`, as several sends when it is a GSO batch larger than one send
/// may carry.
pub(super) fn in_sends(
    transmit: &Transmit<'_>,
    mut send: impl FnMut(&Transmit<'_>) -> io::Result<()>,
) -> io::Result<()> {
    let Some(segment) = transmit
        .segment_size
        .filter(|&s| s > 0 && transmit.contents.len() > MAX_SEND)
    else {
        return send(transmit);
    };
    for (i, part) in transmit.contents.chunks(per_send(segment)).enumerate() {
        let sent = send(&Transmit {
            contents: part,
            ..*transmit
        });
        match sent {
            Ok(()) => {}
            // The first send decides: if the socket is full, quinn keeps the whole batch and
            // tries again when it is writable.
            Err(e) if i == 0 => return Err(e),
            // Part of the batch is out: reporting a failure now would send that part twice.
            // What is not sent is lost as on any network, and QUIC's recovery sends it again.
            Err(e) => {
                tracing::debug!(error = %e, "rest of a packet batch not sent");
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
