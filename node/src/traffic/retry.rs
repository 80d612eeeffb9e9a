//! `retry`: whether a failed attempt is tried again, and how long to wait first. Pure.
//!
//! An attempt fails in one of four ways:
//!
//! | failure | retried when |
//! |---|---|
//! | unreachable: no stream to the node, or the node refused before its app saw anything | `on_connect_failure` (any method: nothing was processed) |
//! | a response status | the status is in `statuses` |
//! | a gRPC status, before any response message | the status is in `grpc_statuses`, and the server sent no negative `grpc-retry-pushback-ms` |
//! | the stream broke after the request was sent, before a response | `502` is in `statuses` |
//! | the per-try timeout fired | `504` is in `statuses` |
//!
//! The last three may have reached the app, so they are retried only for idempotent methods
//! (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) unless `non_idempotent` is set, and only when the
//! request body could be kept for replay (at most `max_body_bytes`, and fully read by then).
//! Every retry also needs `max_retries` not to be reached and the budget ([`super::budget`]).

use std::time::Duration;

use murmur_membership::policy::spec::{GrpcCode, RetrySpec};

/// How one attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Nothing reached the app.
    Unreachable,
    /// The app (or the serving node) answered with this status.
    Status(u16),
    /// A gRPC call ended with this status before any response message.
    Grpc(GrpcCode),
    /// The stream failed after the request was sent, before a response.
    Broken,
    /// The per-try timeout fired.
    PerTryTimeout,
}

/// Why a failure is not retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRetry {
    /// The policy does not retry this kind of failure.
    NotRetryable,
    /// The method is not idempotent.
    NotIdempotent,
    /// The body was not kept (too large, or not fully read yet).
    BodyNotKept,
    /// `max_retries` reached.
    Exhausted,
}

/// Methods that may be repeated without changing the outcome (RFC 9110 §9.2.2).
pub fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// Whether the failure may be retried under `spec`, after `retries` retries so far, for a
/// request with `method` whose body is (`replayable`) or is not available again. The budget
/// is asked separately, last, so that only retries that would happen use it.
pub fn decide(
    spec: &RetrySpec,
    method: &str,
    failure: Failure,
    replayable: bool,
    retries: u32,
) -> Result<(), NoRetry> {
    let reached_app = match failure {
        Failure::Unreachable if spec.on_connect_failure => false,
        Failure::Status(s) if spec.statuses.contains(&s) => true,
        Failure::Grpc(c) if spec.grpc_statuses.contains(&c) => true,
        Failure::Broken if spec.statuses.contains(&502) => true,
        Failure::PerTryTimeout if spec.statuses.contains(&504) => true,
        _ => return Err(NoRetry::NotRetryable),
    };
    if reached_app && !spec.non_idempotent && !idempotent(method) {
        return Err(NoRetry::NotIdempotent);
    }
    if !replayable {
        return Err(NoRetry::BodyNotKept);
    }
    if retries >= spec.max_retries {
        return Err(NoRetry::Exhausted);
    }
    Ok(())
}

/// The longest `grpc-retry-pushback-ms` waited for: a server asking for more is not retried
/// (the request would hold the app's call that long, deadline or not).
pub const MAX_PUSHBACK: Duration = Duration::from_secs(10);

/// What a gRPC server said about retrying its answer (`grpc-retry-pushback-ms`, gRPC's retry
/// design A6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushback {
    /// Nothing: the policy's backoff applies.
    None,
    /// Retry after this long instead of the backoff.
    After(Duration),
    /// Do not retry (a negative or malformed value, or a wait over [`MAX_PUSHBACK`]).
    Refused,
}

impl Pushback {
    /// Reads the header's value, if the answer had one.
    pub fn of(value: Option<&[u8]>) -> Self {
        let Some(v) = value else {
            return Self::None;
        };
        let ms = std::str::from_utf8(v)
            .ok()
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<u64>().ok());
        match ms.map(Duration::from_millis) {
            Some(d) if d <= MAX_PUSHBACK => Self::After(d),
            _ => Self::Refused,
        }
    }
}

/// The wait before retry number `n` (1 for the first): `base · 2^(n-1)` capped at `max`, of
/// which a random half (from `draw` in `[0, 1)`) is taken off so that callers do not retry in
/// step ("equal jitter").
pub fn backoff(spec: &RetrySpec, n: u32, draw: f64) -> Duration {
    let base = spec.backoff.base.0;
    let max = spec.backoff.max.0;
    let exp = base
        .checked_mul(1u32 << n.saturating_sub(1).min(20))
        .unwrap_or(max)
        .min(max);
    let half = exp / 2;
    half + half.mul_f64(draw.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use murmur_membership::policy::{Kind, PolicyBody};

    use super::*;

    fn spec(extra: &str) -> RetrySpec {
        let text = format!("name = \"r\"\nservice = \"web\"\n{extra}");
        let v: toml::Value = toml::from_str(&text).unwrap();
        match PolicyBody::from_value(Kind::Retry, v).unwrap() {
            PolicyBody::Retry(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn decisions_table() {
        use Failure::*;
        use NoRetry::*;
        let s = spec("statuses = [503, 504]");
        let post_ok = spec("statuses = [503]\nnon_idempotent = true");
        let no_connect = spec("on_connect_failure = false\nstatuses = [502]");
        let grpc = spec("grpc_statuses = [\"UNAVAILABLE\"]");
        let grpc_post = spec("grpc_statuses = [\"UNAVAILABLE\"]\nnon_idempotent = true");
        // (spec, method, failure, replayable, retries so far, expected)
        type Case<'a> = (
            &'a RetrySpec,
            &'a str,
            Failure,
            bool,
            u32,
            Result<(), NoRetry>,
        );
        let cases: &[Case<'_>] = &[
            (&s, "GET", Status(503), true, 0, Ok(())),
            (&s, "GET", Status(503), true, 1, Ok(())),
            (&s, "GET", Status(503), true, 2, Err(Exhausted)),
            (&s, "GET", Status(500), true, 0, Err(NotRetryable)),
            (&s, "GET", Status(200), true, 0, Err(NotRetryable)),
            (&s, "PUT", Status(503), true, 0, Ok(())),
            (&s, "POST", Status(503), true, 0, Err(NotIdempotent)),
            (&s, "PATCH", Status(503), true, 0, Err(NotIdempotent)),
            (&s, "POST", Unreachable, true, 0, Ok(())),
            (&s, "GET", Status(503), false, 0, Err(BodyNotKept)),
            (&s, "GET", PerTryTimeout, true, 0, Ok(())),
            (&s, "GET", Broken, true, 0, Err(NotRetryable)),
            (
                &grpc,
                "POST",
                Grpc(GrpcCode::Unavailable),
                true,
                0,
                Err(NotIdempotent),
            ),
            (
                &grpc_post,
                "POST",
                Grpc(GrpcCode::Unavailable),
                true,
                0,
                Ok(()),
            ),
            (
                &grpc_post,
                "POST",
                Grpc(GrpcCode::Internal),
                true,
                0,
                Err(NotRetryable),
            ),
            (
                &s,
                "GET",
                Grpc(GrpcCode::Unavailable),
                true,
                0,
                Err(NotRetryable),
            ),
            (&post_ok, "POST", Status(503), true, 0, Ok(())),
            (&post_ok, "POST", PerTryTimeout, true, 0, Err(NotRetryable)),
            (&no_connect, "GET", Unreachable, true, 0, Err(NotRetryable)),
            (&no_connect, "GET", Broken, true, 0, Ok(())),
        ];
        for (i, (spec, m, f, replay, n, want)) in cases.iter().enumerate() {
            assert_eq!(
                decide(spec, m, *f, *replay, *n),
                *want,
                "case {i}: {m} {f:?}"
            );
        }
    }

    #[test]
    fn pushback_table() {
        let cases: &[(Option<&[u8]>, Pushback)] = &[
            (None, Pushback::None),
            (Some(b"250"), Pushback::After(Duration::from_millis(250))),
            (Some(b"0"), Pushback::After(Duration::ZERO)),
            (Some(b"10000"), Pushback::After(MAX_PUSHBACK)),
            (Some(b"10001"), Pushback::Refused),
            (Some(b"-1"), Pushback::Refused),
            (Some(b"soon"), Pushback::Refused),
            (Some(b""), Pushback::Refused),
            (Some(b"99999999999999999999999"), Pushback::Refused),
        ];
        for (v, want) in cases {
            assert_eq!(Pushback::of(*v), *want, "{v:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let s = spec("backoff = { base = \"20ms\", max = \"100ms\" }");
        let ms = Duration::from_millis;
        // (retry number, draw, expected)
        let cases = [
            (1, 0.0, ms(10)),
            (1, 1.0, ms(20)),
            (2, 0.0, ms(20)),
            (3, 0.5, ms(60)),
            (4, 1.0, ms(100)),
            (30, 0.0, ms(50)),
        ];
        for (n, draw, want) in cases {
            assert_eq!(backoff(&s, n, draw), want, "retry {n} draw {draw}");
        }
    }
}
