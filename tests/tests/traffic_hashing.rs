//! Consistent hashing end to end (issue 18, acceptance 4): a route hashing a header onto five
//! instances; from three different caller nodes each key always reaches the same instance, and
//! when one of the five instances leaves only its keys (about a fifth) move.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use murmur_tests::apps::EchoApp;
use murmur_tests::http;
use murmur_tests::traffic::apply;
use murmur_tests::{Cluster, NodeSpec, netns};
use nix::sys::signal::Signal;

const KEYS: usize = 200;

/// The instance each key reaches from `caller`'s outbound proxy.
async fn owners(c: &Cluster, caller: &str) -> Vec<String> {
    let mut conn = http::connect(c.node(caller).outbound()).await.unwrap();
    let mut out = Vec::with_capacity(KEYS);
    for k in 0..KEYS {
        let user = format!("user-{k}");
        let r = http::exchange(
            &mut conn,
            "cart",
            "GET",
            "/cart",
            &[("host", "cart"), ("x-user", &user)],
            Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        out.push(r.text().split(' ').next().unwrap().to_owned());
    }
    out
}

fn spread(owners: &[String]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for o in owners {
        *m.entry(o.as_str()).or_insert(0) += 1;
    }
    m
}

#[test]
fn every_caller_maps_a_key_to_the_same_instance_and_a_removal_moves_a_fifth() {
    netns::run(|| async {
        let mut c = Cluster::new();
        for (i, name) in ["n1", "n2", "n3"].iter().enumerate() {
            let mut spec = NodeSpec::new(name, Cluster::ip(i as u8 + 2));
            if i > 0 {
                spec = spec.seed(NodeSpec::new("", Cluster::ip(2)).mesh());
            }
            c.add(spec);
        }
        let seed = c.node("n1").mesh();
        let instances = ["s1", "s2", "s3", "s4", "s5"];
        for (i, name) in instances.iter().enumerate() {
            let app = SocketAddr::from(([127, 0, 1, i as u8 + 1], 8080));
            EchoApp::start(app, name).await;
            c.add(
                NodeSpec::new(name, Cluster::ip(i as u8 + 5))
                    .seed(seed)
                    .service("cart", app, "http"),
            );
        }
        for caller in ["n1", "n2", "n3"] {
            c.node(caller).wait_instances("cart", &instances).await;
        }
        apply(
            &c,
            "n1",
            r#"
[[route]]
name = "cart-sticky"
service = "cart"
backends = [{ service = "cart" }]
hash = { header = "x-user" }
"#,
        )
        .await;

        let before: Vec<Vec<String>> = vec![
            owners(&c, "n1").await,
            owners(&c, "n2").await,
            owners(&c, "n3").await,
        ];
        let again = owners(&c, "n1").await;
        println!("{KEYS} keys over five instances: {:?}", spread(&before[0]));
        assert_eq!(
            again, before[0],
            "each key always reaches the same instance"
        );
        for (caller, o) in ["n2", "n3"].iter().zip(&before[1..]) {
            assert_eq!(*o, before[0], "{caller} maps every key as n1 does");
        }
        assert_eq!(spread(&before[0]).len(), 5, "every instance holds keys");

        // s3 leaves.
        assert!(c.node_mut("s3").stop_with(Signal::SIGTERM));
        let four = ["s1", "s2", "s4", "s5"];
        for caller in ["n1", "n2", "n3"] {
            c.node(caller).wait_instances("cart", &four).await;
        }
        let after: Vec<Vec<String>> = vec![
            owners(&c, "n1").await,
            owners(&c, "n2").await,
            owners(&c, "n3").await,
        ];
        let held = before[0].iter().filter(|o| *o == "s3").count();
        let moved: Vec<usize> = (0..KEYS)
            .filter(|k| after[0][*k] != before[0][*k])
            .collect();
        println!(
            "s3 left: {} of {KEYS} keys moved ({:.1} %), s3 held {held}; now {:?}",
            moved.len(),
            moved.len() as f64 * 100.0 / KEYS as f64,
            spread(&after[0])
        );
        for (caller, o) in ["n2", "n3"].iter().zip(&after[1..]) {
            assert_eq!(*o, after[0], "{caller} still maps every key as n1 does");
        }
        assert!(
            moved.iter().all(|k| before[0][*k] == "s3"),
            "only s3's keys move"
        );
        assert_eq!(moved.len(), held, "all of s3's keys move");
        let share = moved.len() as f64 / KEYS as f64;
        assert!((0.1..=0.3).contains(&share), "about a fifth: {share}");
    });
}
