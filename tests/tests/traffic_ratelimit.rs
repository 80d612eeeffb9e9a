//! Rate limits end to end: a global limit of R requests per second over three serving nodes,
//! split among them through gossip with no central limiter, holds the mesh-wide accepted rate
//! within 10 % of R; the excess gets 429 with `retry-after`; per-caller buckets keep one
//! caller's excess from starving another (issue 6, acceptance 5).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use murmur_tests::apps::EchoApp;
use murmur_tests::traffic::{Req, apply, load, load_paced, metric};
use murmur_tests::{Cluster, NodeSpec, netns};

fn app_addr(ip: u8) -> SocketAddr {
    SocketAddr::from((Cluster::ip(ip), 8080))
}

/// n1 calls `web`; n2, n3, n4 serve it from apps named a, b, c, with `extra` TOML in each
/// `[[service]]` (e.g. the balancer callers use).
async fn three_instances(extra: &str) -> Cluster {
    for (ip, name) in [(3, "a"), (4, "b"), (5, "c")] {
        EchoApp::start(app_addr(ip), name).await;
    }
    let mut c = Cluster::new();
    c.chain(4, |s| match s.name.as_str() {
        "n2" => s.service_with("web", app_addr(3), "http", extra),
        "n3" => s.service_with("web", app_addr(4), "http", extra),
        "n4" => s.service_with("web", app_addr(5), "http", extra),
        _ => s,
    });
    c.node("n1")
        .wait_instances("web", &["n2", "n3", "n4"])
        .await;
    c
}

const R: f64 = 60.0;
const GLOBAL: &str = r#"
[[ratelimit]]
name = "web-global"
service = "web"
rate = 60
burst = 20
scope = "global"
"#;

/// What a global-limit run measured.
struct Run {
    /// Accepted per second over the steady window.
    rate: f64,
    /// Answers with 429 in the window.
    limited: Vec<murmur_tests::traffic::Done>,
}

/// Offers 150 requests per second (two and a half times the limit) for 12 s through n1 and
/// measures the accepted rate from the 2nd second on (the first holds the initial bursts).
async fn offer(c: &Cluster, label: &str) -> Run {
    let interval = Duration::from_micros(6667);
    let done = load_paced(c.node("n1").outbound(), 1800, 16, Some(interval), |_| {
        Req::get("web", "/")
    })
    .await;
    let (from, to) = (Duration::from_secs(2), Duration::from_secs(12));
    let window: Vec<_> = done.iter().filter(|d| d.at >= from && d.at < to).collect();
    let accepted = window.iter().filter(|d| d.status() == 200).count();
    let limited: Vec<_> = window
        .iter()
        .filter(|d| d.status() == 429)
        .map(|d| (*d).clone())
        .collect();
    let other = window.len() - accepted - limited.len();
    let secs = (to - from).as_secs_f64();
    let rate = accepted as f64 / secs;
    let mut per_second = Vec::new();
    for s in 2..12 {
        per_second.push(
            window
                .iter()
                .filter(|d| d.status() == 200 && d.at.as_secs() == s)
                .count(),
        );
    }
    let mut by_app: BTreeMap<String, usize> = BTreeMap::new();
    for d in window.iter().filter(|d| d.status() == 200) {
        let t = d.reply.as_ref().unwrap().text();
        *by_app.entry(t[..1].to_owned()).or_default() += 1;
    }
    println!(
        "{label}: global limit {R}/s over 3 instances, offered 150/s: {accepted} accepted in \
         {secs} s = {rate:.1}/s ({:+.1} % of R), {} answered 429, {other} other; accepted per \
         second {per_second:?}; per instance {by_app:?}",
        (rate - R) / R * 100.0,
        limited.len()
    );
    assert_eq!(other, 0);
    Run { rate, limited }
}

#[test]
fn a_global_limit_holds_mesh_wide_within_ten_percent() {
    netns::run(|| async {
        // Callers spread the load evenly.
        let c = three_instances("balancer = \"round-robin\"").await;
        apply(&c, "n1", GLOBAL).await;
        let run = offer(&c, "round-robin callers").await;
        assert!(
            (run.rate - R).abs() <= R * 0.1,
            "accepted {:.1}/s",
            run.rate
        );
        let mut shares = Vec::new();
        for n in ["n2", "n3", "n4"] {
            shares.push(
                metric(
                    &c,
                    n,
                    "murmur_ratelimit_share",
                    &[("ratelimit", "web-global")],
                )
                .await,
            );
        }
        println!("shares after the run: {shares:?}");
        let r = run.limited[0].reply.as_ref().unwrap();
        let after: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(after >= 1);
        assert_eq!(r.headers["x-murmur-error"], "rate-limited");
        assert!(
            r.text().contains("ratelimit \"web-global\""),
            "{}",
            r.text()
        );
        let mut counted = 0.0;
        for n in ["n2", "n3", "n4"] {
            counted += metric(&c, n, "murmur_rate_limited_total", &[("service", "web")]).await;
        }
        assert!(counted >= run.limited.len() as f64);
    });
}

/// With the default balancer (power of two choices over peak-EWMA latency) one caller moves
/// its load between the three instances every few seconds; shares follow within about half a
/// second. The mesh never admits much more than R, and loses a little while load moves.
#[test]
fn a_global_limit_follows_load_moved_by_the_balancer() {
    netns::run(|| async {
        let c = three_instances("").await;
        apply(&c, "n1", GLOBAL).await;
        let run = offer(&c, "p2c-ewma caller").await;
        assert!(run.rate <= R * 1.1, "over-admitted: {:.1}/s", run.rate);
        assert!(run.rate >= R * 0.75, "under-admitted: {:.1}/s", run.rate);
    });
}

#[test]
fn per_caller_buckets_are_separate() {
    netns::run(|| async {
        let mut c = three_instances("balancer = \"round-robin\"").await;
        c.add(NodeSpec::new("n5", Cluster::ip(6)).seed(c.node("n1").mesh()));
        c.node("n5")
            .wait_instances("web", &["n2", "n3", "n4"])
            .await;
        apply(
            &c,
            "n1",
            r#"
[[ratelimit]]
name = "web-per-caller"
service = "web"
rate = 5
per = "1m"
by = "caller"
"#,
        )
        .await;
        // Each instance gives each caller 5 requests a minute: 15 across the three.
        let n1 = load(c.node("n1").outbound(), 40, 1, |_| Req::get("web", "/")).await;
        let n5 = load(c.node("n5").outbound(), 40, 1, |_| Req::get("web", "/")).await;
        let ok = |d: &[murmur_tests::traffic::Done]| d.iter().filter(|d| d.status() == 200).count();
        println!(
            "per caller, 5 a minute per instance: n1 got {} of 40, then n5 got {} of 40",
            ok(&n1),
            ok(&n5)
        );
        assert_eq!(ok(&n1), 15);
        assert_eq!(ok(&n5), 15, "n1's excess did not use n5's tokens");
        let r = n1
            .iter()
            .find(|d| d.status() == 429)
            .unwrap()
            .reply
            .as_ref()
            .unwrap();
        let after: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&after), "{after}");
    });
}
