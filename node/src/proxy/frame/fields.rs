//! Header fields on the wire: a sequence of `(name, value bytes)`, names lower-case, a name's
//! values in order. They are encoded from a [`HeaderMap`] and decoded into one directly, with
//! no list of owned strings in between (that list cost two allocations per field on each
//! side of every hop). Every name and value is checked as it is decoded: the peer is
//! verified, but its bytes are still input.

use std::cell::RefCell;
use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess};
use serde::ser::{SerializeSeq, Serializer};

use crate::proxy::headers::HOPS;
use crate::telemetry::traceparent::TRACEPARENT;

/// Fields reserved before decoding: what a head usually carries. The count a peer announces
/// is not trusted with an allocation; the map grows past this as fields really arrive.
const RESERVED: usize = 16;

/// The refusal of a head with more fields than a map holds.
const TOO_MANY: &str = "too many header fields";

/// The most bytes of a refused name that an error quotes.
const QUOTED: usize = 64;

thread_local! {
    /// Which field the last decoding on this thread refused, and why. postcard's errors carry
    /// none of serde's text (a refused value arrives as "Serde Deserialization Error"), so the
    /// visitors leave it here for [`take_refused`]. A refusal always ends its decoding with an
    /// error, and the one decoder of these fields (`decode_head`) takes it then, on the same
    /// thread: a good head costs nothing here.
    static REFUSED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records why a field was refused (only refusals pay for the text).
fn refuse(why: String) {
    REFUSED.with(|r| *r.borrow_mut() = Some(why));
}

/// Why the last decoding on this thread refused a field, if it did; forgets it.
pub(super) fn take_refused() -> Option<String> {
    REFUSED.with(|r| r.borrow_mut().take())
}

/// Encodes `map` (for `#[serde(with = "fields")]`).
pub fn serialize<S: Serializer>(map: &HeaderMap, s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(map.len()))?;
    for (name, value) in map {
        seq.serialize_element(&(name.as_str(), Raw(value.as_bytes())))?;
    }
    seq.end()
}

/// Decodes a map (for `#[serde(with = "fields")]`).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<HeaderMap, D::Error> {
    d.deserialize_seq(Fields)
}

/// Bytes, encoded as bytes rather than as a sequence of numbers.
struct Raw<'a>(&'a [u8]);

impl serde::Serialize for Raw<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

struct Fields;

impl<'de> de::Visitor<'de> for Fields {
    type Value = HeaderMap;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of header fields")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HeaderMap, A::Error> {
        let mut map = HeaderMap::with_capacity(seq.size_hint().unwrap_or(0).min(RESERVED));
        while let Some((name, value)) = seq.next_element_seed(Field)? {
            // A frame's bound keeps the count far below the map's limit; should that ever
            // change, the peer's input is refused rather than the map panicking.
            map.try_append(name, value).map_err(|_| {
                refuse(TOO_MANY.to_owned());
                de::Error::custom(TOO_MANY)
            })?;
        }
        Ok(map)
    }
}

/// One `(name, value)` pair.
struct Field;

impl<'de> DeserializeSeed<'de> for Field {
    type Value = (HeaderName, HeaderValue);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_tuple(2, self)
    }
}

impl<'de> de::Visitor<'de> for Field {
    type Value = (HeaderName, HeaderValue);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a header name and value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let name = seq
            .next_element_seed(Name)?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let value = seq
            .next_element_seed(Value(&name))?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        Ok((name, value))
    }
}

/// A header name, checked.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = HeaderName;

    // Read as bytes: postcard lays out a string and bytes alike, and `HeaderName::from_bytes`
    // admits only ASCII token characters, so a separate UTF-8 pass would check nothing more.
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<HeaderName, D::Error> {
        d.deserialize_bytes(self)
    }
}

impl de::Visitor<'_> for Name {
    type Value = HeaderName;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a header name")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<HeaderName, E> {
        if let Some(known) = known_name(v) {
            return Ok(known);
        }
        HeaderName::from_bytes(v).map_err(|_| {
            let quoted = v.get(..QUOTED).unwrap_or(v).escape_ascii();
            let cut = if v.len() > QUOTED { "..." } else { "" };
            refuse(format!("`{quoted}{cut}` is not a valid header name"));
            E::invalid_value(de::Unexpected::Bytes(v), &self)
        })
    }
}

/// The names the mesh itself and gRPC put on most messages that are not among `http`'s
/// standard ones: `from_bytes` would copy each into a new allocation, a static name costs
/// nothing.
fn known_name(v: &[u8]) -> Option<HeaderName> {
    static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
    static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
    static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
    static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
    let known = match v {
        b"x-murmur-hops" => &HOPS,
        b"traceparent" => &TRACEPARENT,
        b"tracestate" => &TRACESTATE,
        b"grpc-status" => &GRPC_STATUS,
        b"grpc-message" => &GRPC_MESSAGE,
        b"grpc-timeout" => &GRPC_TIMEOUT,
        _ => return None,
    };
    Some(known.clone())
}

/// A header value, checked (values need not be UTF-8, but may not hold control characters); of
/// the header named, for the error.
struct Value<'a>(&'a HeaderName);

impl<'de> DeserializeSeed<'de> for Value<'_> {
    type Value = HeaderValue;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<HeaderValue, D::Error> {
        d.deserialize_bytes(self)
    }
}

impl de::Visitor<'_> for Value<'_> {
    type Value = HeaderValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a header value")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<HeaderValue, E> {
        HeaderValue::from_bytes(v).map_err(|_| {
            // The value itself is not quoted: it may be a credential.
            refuse(format!(
                "the value of header `{}` is not a valid header value",
                self.0
            ));
            E::invalid_value(de::Unexpected::Bytes(v), &self)
        })
    }
}
