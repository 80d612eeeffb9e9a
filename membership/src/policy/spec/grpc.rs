//! gRPC status codes, by the names policy documents use (`"UNAVAILABLE"`), and the HTTP status
//! each one stands for when the mesh classifies a call (google.rpc.Code's mapping).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A gRPC status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum GrpcCode {
    /// 0
    Ok = 0,
    /// 1
    Cancelled = 1,
    /// 2
    Unknown = 2,
    /// 3
    InvalidArgument = 3,
    /// 4
    DeadlineExceeded = 4,
    /// 5
    NotFound = 5,
    /// 6
    AlreadyExists = 6,
    /// 7
    PermissionDenied = 7,
    /// 8
    ResourceExhausted = 8,
    /// 9
    FailedPrecondition = 9,
    /// 10
    Aborted = 10,
    /// 11
    OutOfRange = 11,
    /// 12
    Unimplemented = 12,
    /// 13
    Internal = 13,
    /// 14
    Unavailable = 14,
    /// 15
    DataLoss = 15,
    /// 16
    Unauthenticated = 16,
}

/// Every code with its name, by number.
const CODES: [(GrpcCode, &str); 17] = [
    (GrpcCode::Ok, "OK"),
    (GrpcCode::Cancelled, "CANCELLED"),
    (GrpcCode::Unknown, "UNKNOWN"),
    (GrpcCode::InvalidArgument, "INVALID_ARGUMENT"),
    (GrpcCode::DeadlineExceeded, "DEADLINE_EXCEEDED"),
    (GrpcCode::NotFound, "NOT_FOUND"),
    (GrpcCode::AlreadyExists, "ALREADY_EXISTS"),
    (GrpcCode::PermissionDenied, "PERMISSION_DENIED"),
    (GrpcCode::ResourceExhausted, "RESOURCE_EXHAUSTED"),
    (GrpcCode::FailedPrecondition, "FAILED_PRECONDITION"),
    (GrpcCode::Aborted, "ABORTED"),
    (GrpcCode::OutOfRange, "OUT_OF_RANGE"),
    (GrpcCode::Unimplemented, "UNIMPLEMENTED"),
    (GrpcCode::Internal, "INTERNAL"),
    (GrpcCode::Unavailable, "UNAVAILABLE"),
    (GrpcCode::DataLoss, "DATA_LOSS"),
    (GrpcCode::Unauthenticated, "UNAUTHENTICATED"),
];

impl GrpcCode {
    /// The code with this number; numbers gRPC does not define are `UNKNOWN`, as the gRPC
    /// specification has clients treat them.
    pub fn from_number(n: u32) -> Self {
        usize::try_from(n)
            .ok()
            .and_then(|i| CODES.get(i))
            .map_or(Self::Unknown, |(c, _)| *c)
    }

    /// The value of a `grpc-status` header or trailer (`"14"`); `None` if it is not a number.
    pub fn from_header(value: &[u8]) -> Option<Self> {
        if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        Some(u32::try_from(n).map_or(Self::Unknown, Self::from_number))
    }

    /// The code named `name` (`"UNAVAILABLE"`).
    pub fn from_name(name: &str) -> Option<Self> {
        CODES.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        CODES[self as usize].1
    }

    /// The HTTP status it stands for (google.rpc.Code): `UNAVAILABLE` is 503, `NOT_FOUND` 404,
    /// `OK` 200. The mesh classifies a gRPC call by it: 5xx is a failure, as for HTTP.
    pub fn http_status(self) -> u16 {
        match self {
            Self::Ok => 200,
            Self::Cancelled => 499,
            Self::Unknown | Self::Internal | Self::DataLoss => 500,
            Self::InvalidArgument | Self::FailedPrecondition | Self::OutOfRange => 400,
            Self::DeadlineExceeded => 504,
            Self::NotFound => 404,
            Self::AlreadyExists | Self::Aborted => 409,
            Self::PermissionDenied => 403,
            Self::ResourceExhausted => 429,
            Self::Unimplemented => 501,
            Self::Unavailable => 503,
            Self::Unauthenticated => 401,
        }
    }

    /// Every name, for error messages.
    pub fn names() -> String {
        CODES.map(|(_, n)| n).join(", ")
    }
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for GrpcCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for GrpcCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_name(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{s:?} is not a gRPC status; the statuses are {}",
                Self::names()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_table() {
        // (header value, code, name, HTTP status)
        let cases: &[(&[u8], Option<GrpcCode>, &str, u16)] = &[
            (b"0", Some(GrpcCode::Ok), "OK", 200),
            (b"14", Some(GrpcCode::Unavailable), "UNAVAILABLE", 503),
            (b"5", Some(GrpcCode::NotFound), "NOT_FOUND", 404),
            (
                b"16",
                Some(GrpcCode::Unauthenticated),
                "UNAUTHENTICATED",
                401,
            ),
            (b"17", Some(GrpcCode::Unknown), "UNKNOWN", 500),
            (b"99999999999", None, "", 0),
            (b"4294967296", Some(GrpcCode::Unknown), "UNKNOWN", 500),
            (b"", None, "", 0),
            (b"-1", None, "", 0),
            (b"1 4", None, "", 0),
        ];
        for (value, code, name, http) in cases {
            let got = GrpcCode::from_header(value);
            assert_eq!(got, *code, "{:?}", String::from_utf8_lossy(value));
            if let Some(c) = got {
                assert_eq!(c.name(), *name);
                assert_eq!(c.http_status(), *http);
                assert_eq!(GrpcCode::from_name(name), Some(c));
            }
        }
        for (i, (c, _)) in CODES.iter().enumerate() {
            assert_eq!(*c as usize, i, "the table is by number");
        }
    }
}
