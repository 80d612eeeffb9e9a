//! `timeout`: which deadlines bound a request, and which one fired. Pure: time is an argument.
//!
//! - `request` bounds the whole exchange, retries and an injected delay included: from the
//!   moment the calling node has the request head to the end of the response body;
//! - `per_try` bounds each attempt until its response head (at most what is left of `request`);
//! - `idle` bounds the silence between body chunks, either direction.
//!
//! The time left for an attempt travels to the serving node in the stream header, which stops
//! work (cancels the call to its app) when it runs out.

use std::time::{Duration, Instant};

use murmur_membership::policy::spec::{PolicyDuration, TimeoutSpec};

/// Which timeout fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fired {
    /// The whole exchange took too long.
    Request,
    /// One attempt took too long.
    PerTry,
    /// A body was silent too long.
    Idle,
}

impl Fired {
    /// `request`, `per-try` or `idle`: the `x-murmur-timeout` header and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::PerTry => "per-try",
            Self::Idle => "idle",
        }
    }
}

/// The timeouts of one request and the document they come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Document name.
    pub doc: String,
    /// Whole exchange.
    pub request: Option<Duration>,
    /// Each attempt.
    pub per_try: Option<Duration>,
    /// Silence on a body.
    pub idle: Option<Duration>,
}

impl Timeouts {
    /// The timeouts of a document.
    pub fn of(spec: &TimeoutSpec) -> Self {
        Self {
            doc: spec.name.to_string(),
            request: spec.request.map(|d| d.0),
            per_try: spec.per_try.map(|d| d.0),
            idle: spec.idle.map(|d| d.0),
        }
    }

    /// The duration of the timeout that fired.
    pub fn duration(&self, fired: Fired) -> Option<Duration> {
        match fired {
            Fired::Request => self.request,
            Fired::PerTry => self.per_try,
            Fired::Idle => self.idle,
        }
    }

    /// When the next attempt, started at `now`, must have its response head, and which
    /// timeout that is; `None` without `request` or `per_try`.
    pub fn attempt_limit(
        &self,
        request_deadline: Option<Instant>,
        now: Instant,
    ) -> Option<(Instant, Fired)> {
        let per_try = self.per_try.map(|d| (now + d, Fired::PerTry));
        let request = request_deadline.map(|d| (d, Fired::Request));
        match (request, per_try) {
            // The request deadline wins ties: it is the one the caller set for the whole call.
            (Some(r), Some(p)) => Some(if r.0 <= p.0 { r } else { p }),
            (r, p) => r.or(p),
        }
    }

    /// The 504 body: which timeout fired, how long it was, which document set it.
    pub fn message(&self, fired: Fired, service: &str) -> String {
        let d = self
            .duration(fired)
            .map_or_else(|| "?".to_owned(), |d| PolicyDuration(d).to_string());
        let what = match fired {
            Fired::Request => {
                format!("the request timeout ({d}) expired before {service} answered")
            }
            Fired::PerTry => {
                format!("the per-try timeout ({d}) expired on the last attempt to {service}")
            }
            Fired::Idle => format!("the idle timeout ({d}) expired: a body was silent too long"),
        };
        format!("{what} (timeout \"{}\")", self.doc)
    }
}

/// Milliseconds left until `deadline`, for the stream header: rounded up, so the serving node
/// (which counts from the stream's arrival, later) never gives up before the caller does; at
/// least 1.
pub fn millis_left(deadline: Instant, now: Instant) -> u32 {
    let left = deadline.saturating_duration_since(now);
    let ms = left.as_millis() + u128::from(!left.subsec_nanos().is_multiple_of(1_000_000));
    u32::try_from(ms).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use murmur_transport::identity::Name;

    use super::*;

    fn spec(name: &str, route: Option<&str>, request: Option<u64>) -> TimeoutSpec {
        TimeoutSpec {
            name: Name::parse("n", name).unwrap(),
            service: Name::parse("s", "web").unwrap(),
            route: route.map(|r| Name::parse("r", r).unwrap()),
            request: request.map(PolicyDuration::from_millis),
            per_try: None,
            idle: None,
        }
    }

    #[test]
    fn the_route_specific_document_wins_over_the_service_wide_one() {
        let specs = [
            spec("a-all", None, Some(1000)),
            spec("b-slow", Some("slow"), Some(9000)),
            spec("c-all", None, Some(5)),
        ];
        let name = |r: Option<&str>| {
            crate::traffic::compiled::scoped(&specs, r, |s| s.route.as_ref())
                .map(|s| s.name.to_string())
        };
        assert_eq!(name(Some("slow")).as_deref(), Some("b-slow"));
        assert_eq!(name(Some("other")).as_deref(), Some("a-all"));
        assert_eq!(name(None).as_deref(), Some("a-all"));
        assert_eq!(
            crate::traffic::compiled::scoped(&specs[1..2], None, |s| s.route.as_ref()),
            None
        );
        assert_eq!(
            Timeouts::of(&specs[1]).request,
            Some(Duration::from_secs(9))
        );
    }

    #[test]
    fn the_earlier_of_request_and_per_try_limits_an_attempt() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let t = Timeouts {
            doc: "t".into(),
            request: Some(ms(1000)),
            per_try: Some(ms(300)),
            idle: None,
        };
        let deadline = Some(t0 + ms(1000));
        // (attempt start offset ms, expected limit offset ms, which)
        let cases = [
            (0, 300, Fired::PerTry),
            (600, 900, Fired::PerTry),
            (700, 1000, Fired::Request),
            (800, 1000, Fired::Request),
        ];
        for (start, limit, fired) in cases {
            let got = t.attempt_limit(deadline, t0 + ms(start));
            assert_eq!(got, Some((t0 + ms(limit), fired)), "start {start}");
        }
        let only_idle = Timeouts {
            idle: Some(ms(5)),
            ..Timeouts::default()
        };
        assert_eq!(only_idle.attempt_limit(None, t0), None);
        assert_eq!(millis_left(t0 + ms(250), t0), 250);
        assert_eq!(millis_left(t0 + Duration::from_micros(249_001), t0), 250);
        assert_eq!(millis_left(t0, t0 + ms(5)), 1);
    }

    #[test]
    fn messages_name_the_timeout_and_the_document() {
        let t = Timeouts {
            doc: "web-timeouts".into(),
            request: Some(Duration::from_millis(200)),
            per_try: Some(Duration::from_millis(100)),
            idle: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            t.message(Fired::Request, "web"),
            "the request timeout (200ms) expired before web answered (timeout \"web-timeouts\")"
        );
        assert!(
            t.message(Fired::PerTry, "web")
                .contains("per-try timeout (100ms)")
        );
        assert!(t.message(Fired::Idle, "web").contains("idle timeout (2s)"));
    }
}
