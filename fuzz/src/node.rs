//! Decoders of the node, through the surface its library opens to fuzzing
//! (`murmur_node::fuzzing`, built with `--cfg fuzzing`): the W3C `traceparent` parser, the
//! framing of proxied HTTP exchanges, and the configuration file.

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use murmur_node::fuzzing::frame::{
    BodyKind, FRAME_HEADER, FRAME_VERSION, Fields, MAX_HEAD_BYTES, Refusal, RequestHead,
    ResponseHead, Trailers, Value, decode_head, fields, header_map, put_head, put_trailers,
};
use murmur_node::fuzzing::traceparent::TraceParent;
use murmur_node::fuzzing::{duration, raw};

/// A `traceparent` header value: what parses prints back as the (trimmed) input, and every
/// valid value parses back to itself.
pub fn traceparent(data: &[u8]) {
    if let Some(s) = crate::text(data)
        && let Some(tp) = TraceParent::parse(s)
    {
        assert_eq!(tp.to_string(), s.trim(), "parsed {s:?} as {tp:?}");
    }
    let mut u = Unstructured::new(data);
    if let Ok((trace_id, span_id, flags)) = <([u8; 16], [u8; 8], u8)>::arbitrary(&mut u) {
        let tp = TraceParent {
            trace_id,
            span_id,
            flags,
        };
        let parsed = TraceParent::parse(&tp.to_string());
        let valid = trace_id != [0; 16] && span_id != [0; 8];
        assert_eq!(parsed, valid.then_some(tp));
    }
}

/// The payload of a HEAD, TRAILERS or REFUSED frame (the first byte picks which): what decodes
/// re-encodes, within the frame limit, to a frame that decodes to the same value, and header
/// fields that make a header map come back from it unchanged.
pub fn frame(data: &[u8]) {
    let Some((&which, payload)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            head::<RequestHead>(payload);
        }
        1 => {
            head::<ResponseHead>(payload);
        }
        2 => {
            let Some(t) = head::<Trailers>(payload) else {
                return;
            };
            if let Ok(map) = header_map(t.headers.clone()) {
                let mut out = BytesMut::new();
                put_trailers(&map, &mut out).unwrap();
                let again: Trailers = decode_head(&out[FRAME_HEADER..]).unwrap();
                assert_eq!(header_map(again.headers).unwrap(), map);
                assert_eq!(header_map(fields(&map)).unwrap(), map);
            }
        }
        _ => {
            head::<Refusal>(payload);
        }
    }
    // A head built from the input goes through the encoder and back.
    let mut u = Unstructured::new(payload);
    if let Ok((method, path, authority, headers, body)) =
        <(String, String, String, Vec<(String, Vec<u8>)>, Option<u64>)>::arbitrary(&mut u)
    {
        let head = RequestHead {
            version: FRAME_VERSION,
            method,
            path,
            authority,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k, Value(v)))
                .collect::<Fields>(),
            body: body.map_or(BodyKind::Stream, BodyKind::Length),
        };
        let mut out = BytesMut::new();
        if put_head(&head, &mut out).is_ok() {
            let back: RequestHead = decode_head(&out[FRAME_HEADER..]).unwrap();
            assert_eq!(back, head);
        } else {
            assert!(out.is_empty());
            assert!(postcard::to_stdvec(&head).unwrap().len() > MAX_HEAD_BYTES);
        }
    }
}

fn head<T>(payload: &[u8]) -> Option<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = decode_head(payload).ok()?;
    let mut out = BytesMut::new();
    put_head(&value, &mut out).unwrap();
    assert!(out.len() - FRAME_HEADER <= payload.len());
    let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
    assert_eq!(len, out.len() - FRAME_HEADER);
    assert_eq!(decode_head::<T>(&out[FRAME_HEADER..]).unwrap(), value);
    Some(value)
}

/// The configuration file as TOML into its raw form (every field optional, unknown ones
/// refused), and the duration syntax it shares with policy.
pub fn config(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    let _ = toml::from_str::<raw::RawConfig>(text);
    if let Ok(d) = duration::parse(text) {
        let shown = duration::HumanDuration(d).to_string();
        assert_eq!(duration::parse(&shown), Ok(d), "{text:?} shown as {shown}");
    }
}

/// Example frame payloads for the seeds of the `node_frame` target: `out(name, selector,
/// payload)`, the selector being the target's first byte.
pub fn seed_frames(out: &mut dyn FnMut(&str, u8, &BytesMut)) {
    let headers: Fields = vec![
        ("content-type".into(), Value(b"application/grpc".to_vec())),
        ("x-bin".into(), Value(vec![0x80, b'a'])),
    ];
    let mut buf = BytesMut::new();
    let mut emit = |name: &str, which: u8, buf: &mut BytesMut| {
        out(name, which, &buf.split_off(FRAME_HEADER));
        buf.clear();
    };
    let request = RequestHead {
        version: FRAME_VERSION,
        method: "POST".into(),
        path: "/a?b=c".into(),
        authority: "web".into(),
        headers: headers.clone(),
        body: BodyKind::Length(5),
    };
    put_head(&request, &mut buf).unwrap();
    emit("request", 0, &mut buf);
    let response = ResponseHead {
        version: FRAME_VERSION,
        status: 200,
        headers: headers.clone(),
        body: BodyKind::Stream,
    };
    put_head(&response, &mut buf).unwrap();
    emit("response", 1, &mut buf);
    put_trailers(&header_map(headers).unwrap(), &mut buf).unwrap();
    emit("trailers", 2, &mut buf);
    let refusal = Refusal {
        version: FRAME_VERSION,
        reason: "service not served here".into(),
    };
    put_head(&refusal, &mut buf).unwrap();
    emit("refused", 3, &mut buf);
}
