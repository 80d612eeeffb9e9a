//! What the serving node checks before its app sees a request: authorization, then rate limits
//! (unauthorized callers do not use up the limit of authorized ones). The same for HTTP
//! requests and TCP connections; a refusal is a [`LocalReply`] (403 or 429).

use murmur_transport::identity::PeerIdentity;
use tracing::info;

use super::errors::LocalReply;
use super::runtime::Proxy;
use crate::traffic::authz::{self, Caller, Subject};
use crate::traffic::compiled::ServicePolicy;
use crate::traffic::ratelimit::{Admission, retry_after_secs};
use crate::traffic::share;

/// Checks the service's `authz` and `ratelimit` documents (in `policy`, what applies to
/// `service`) for a request from `peer`.
pub fn check(
    proxy: &Proxy,
    policy: Option<&ServicePolicy>,
    service: &str,
    peer: &PeerIdentity,
    subject: Subject<'_>,
) -> Result<(), LocalReply> {
    let Some(policy) = policy else {
        return Ok(());
    };
    if policy.authz.is_empty() && policy.ratelimits.is_empty() {
        return Ok(());
    }
    let id = peer.id.to_string();
    if !policy.authz.is_empty() {
        let caller = Caller {
            id: &id,
            services: &peer.services,
        };
        let verdict = authz::evaluate(&policy.authz, &caller, subject);
        // Only for log lines: formatted when one is written.
        let what = || subject.map_or_else(|| "TCP".to_owned(), |(m, p)| format!("{m} {p}"));
        for d in &verdict.shadow {
            let label = d.label();
            proxy.telemetry.shadow_denied.get(&[service, &label]).inc();
            if proxy.traffic.should_log(&format!("shadow {label} {id}")) {
                info!(%service, caller = %id, request = %what(), rule = %label,
                    "authz (shadow mode) would deny this request; let through");
            }
        }
        if let Some(d) = verdict.denied {
            let label = d.label();
            proxy.telemetry.denied.get(&[service, &label]).inc();
            if proxy.traffic.should_log(&format!("deny {label} {id}")) {
                info!(%service, caller = %id, request = %what(), rule = %label, "authz denied");
            }
            return Err(
                LocalReply::new(403, "denied", 7, d.message(service)).with("x-murmur-authz", label)
            );
        }
    }
    if !policy.ratelimits.is_empty() {
        // Until the share of a global limit is computed: an equal part.
        let first_share = || {
            let view = proxy.view.borrow();
            let live = share::instances(&view, service, &view.self_name).len();
            1.0 / live.max(1) as f64
        };
        let admission = proxy.traffic.admit(
            service,
            &policy.ratelimits,
            &id,
            crate::clock::now(),
            first_share,
        );
        if let Admission::Limited {
            doc,
            retry_after,
            rate,
        } = admission
        {
            proxy.telemetry.rate_limited.get(&[service]).inc();
            let secs = retry_after_secs(retry_after);
            let message = format!(
                "rate limited by ratelimit \"{doc}\" ({rate:.1} requests/s at this instance of \
                 {service}, on node {}); retry after {secs} s",
                proxy.node
            );
            return Err(LocalReply::new(429, "rate-limited", 8, message)
                .with("retry-after", secs.to_string())
                .with("x-murmur-ratelimit", doc));
        }
    }
    Ok(())
}
