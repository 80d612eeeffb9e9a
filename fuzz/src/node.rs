//! Decoders of the node, through the surface its library opens to fuzzing
//! (`murmur_node::fuzzing`, built with `--cfg fuzzing`): the W3C `traceparent` parser, the
//! framing of proxied HTTP exchanges, and the configuration file.

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue};
use murmur_node::fuzzing::frame::{
    BodyKind, FRAME_HEADER, FRAME_VERSION, MAX_HEAD_BYTES, Refusal, RequestHead, ResponseHead,
    Trailers, decode_head, put_head, put_trailers,
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
/// re-encodes, within the frame limit, to a frame that decodes to the same value, and trailers
/// encoded from their decoded map come back as the same map.
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
            let mut out = BytesMut::new();
            put_trailers(&t.headers, &mut out).unwrap();
            let again: Trailers = decode_head(&out[FRAME_HEADER..]).unwrap();
            assert_eq!(again.headers, t.headers);
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
            // Fields that are not valid headers cannot be in a head to begin with.
            headers: headers
                .into_iter()
                .filter_map(|(k, v)| {
                    let name = HeaderName::from_bytes(k.as_bytes()).ok()?;
                    Some((name, HeaderValue::from_bytes(&v).ok()?))
                })
                .collect::<HeaderMap>(),
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
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/grpc"));
    if let Ok(bin) = HeaderValue::from_bytes(&[0x80, b'a']) {
        headers.insert("x-bin", bin);
    }
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
    put_trailers(&headers, &mut buf).unwrap();
    emit("trailers", 2, &mut buf);
    let refusal = Refusal {
        version: FRAME_VERSION,
        reason: "service not served here".into(),
    };
    put_head(&refusal, &mut buf).unwrap();
    emit("refused", 3, &mut buf);
}
