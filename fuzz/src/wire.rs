//! The envelopes at the start of every QUIC stream between nodes (`transport::wire`).

use std::net::{SocketAddr, SocketAddrV6};

use arbitrary::{Arbitrary, Unstructured};
use futures_executor::block_on;
use murmur_transport::wire::{
    GossipFrame, MAX_GOSSIP_PAYLOAD, MAX_HEADER_BYTES, StreamHeader, StreamKind, WIRE_VERSION,
    WireError, decode_gossip, decode_versioned, encode_gossip, read_header, write_header,
};

/// `decode_gossip` on the bytes after the kind byte; then a frame built from the bytes goes
/// through `encode_gossip` and back.
pub fn gossip(data: &[u8]) {
    if let Ok(frame) = decode_gossip(data) {
        assert_eq!(frame.version, WIRE_VERSION);
        assert!(frame.payload.len() <= MAX_GOSSIP_PAYLOAD);
        let again = encode_gossip(&frame).unwrap();
        assert_eq!(StreamKind::from_byte(again[0]), Some(StreamKind::Gossip));
        // postcard's own encoding is the shortest one (the decoder takes over-long varints).
        assert!(again.len() - 1 <= data.len());
        assert_eq!(decode_gossip(&again[1..]).unwrap(), frame);
    } else if let Ok(frame) = decode_versioned::<GossipFrame>("gossip frame", data) {
        // Only the size limits separate the two decoders.
        assert!(frame.payload.len() > MAX_GOSSIP_PAYLOAD);
    }

    let mut u = Unstructured::new(data);
    let Ok((from, payload)) = <(SocketAddr, Vec<u8>)>::arbitrary(&mut u) else {
        return;
    };
    let frame = GossipFrame {
        version: WIRE_VERSION,
        from: wire_addr(from),
        payload,
    };
    let bytes = encode_gossip(&frame).unwrap();
    assert_eq!(decode_gossip(&bytes[1..]).unwrap(), frame);
}

/// serde writes an IPv6 socket address as address and port only: flow label and scope id do
/// not travel (a property of the format, not a decoding bug), so round trips start without them.
pub fn wire_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => addr,
        SocketAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(*a.ip(), a.port(), 0, 0)),
    }
}

#[derive(Arbitrary, Debug)]
struct Header {
    kind: u8,
    service: String,
    deadline_ms: Option<u32>,
    traceparent: Option<String>,
    attrs: Vec<(String, String)>,
}

/// `read_header` over the bytes after the kind byte: it reads exactly the announced length,
/// never more than [`MAX_HEADER_BYTES`], and what it returns is written back identically. Then a
/// header built from the bytes goes through `write_header` and back.
pub fn header(data: &[u8]) {
    let mut rest = data;
    match block_on(read_header(&mut rest)) {
        Ok(h) => {
            assert_eq!(h.version, WIRE_VERSION);
            let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
            assert!(len <= MAX_HEADER_BYTES);
            assert_eq!(data.len() - rest.len(), 2 + len, "read exactly one header");
            let mut out = Vec::new();
            block_on(write_header(&mut out, StreamKind::Control, &h)).unwrap();
            assert!(out.len() - 1 <= 2 + len);
            let mut again = &out[1..];
            assert_eq!(block_on(read_header(&mut again)).unwrap(), h);
            assert!(again.is_empty());
        }
        Err(WireError::TooLarge { len, .. }) => {
            assert!(len > MAX_HEADER_BYTES);
            assert_eq!(
                rest.len(),
                data.len() - 2,
                "refused before reading the body"
            );
        }
        Err(_) => {}
    }

    let mut u = Unstructured::new(data);
    let Ok(h) = Header::arbitrary(&mut u) else {
        return;
    };
    let kind = StreamKind::from_byte(h.kind);
    if let Some(k) = kind {
        assert_eq!(k as u8, h.kind);
    }
    let header = StreamHeader {
        version: WIRE_VERSION,
        service: h.service,
        deadline_ms: h.deadline_ms,
        traceparent: h.traceparent,
        attrs: h.attrs,
    };
    let encoded_len = postcard::to_stdvec(&header).unwrap().len();
    let mut out = Vec::new();
    match block_on(write_header(
        &mut out,
        kind.unwrap_or(StreamKind::Http),
        &header,
    )) {
        Ok(()) => {
            assert!(encoded_len <= MAX_HEADER_BYTES);
            assert_eq!(block_on(read_header(&mut &out[1..])).unwrap(), header);
        }
        Err(WireError::TooLarge { .. }) => assert!(encoded_len > MAX_HEADER_BYTES),
        Err(e) => panic!("writing a header failed: {e}"),
    }
}
