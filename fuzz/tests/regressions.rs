//! Replays every committed seed and regression input through its target's checks, on the stable
//! toolchain without libFuzzer: `cargo test -p murmur-fuzz` (and `cargo test --workspace`).

// A test: a panic is how it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

#[test]
fn every_seed_and_regression_passes_its_target_except_the_open_bugs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let open: BTreeSet<String> = fs::read_to_string(root.join("regressions/open.txt"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.trim().to_owned())
        .collect();
    let mut wrong = Vec::new();
    let mut count = 0;
    for (target, check) in murmur_fuzz::TARGETS {
        let mut seeds = 0;
        for dir in ["seeds", "regressions"] {
            let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let name = path.strip_prefix(root).unwrap().display().to_string();
                let data = fs::read(&path).unwrap();
                let failed = catch_unwind(AssertUnwindSafe(|| check(&data))).is_err();
                match (failed, open.contains(&name)) {
                    (true, false) => wrong.push(format!("{name} fails")),
                    (false, true) => wrong.push(format!("{name} passes: remove it from open.txt")),
                    _ => {}
                }
                seeds += 1;
            }
        }
        assert!(
            seeds > 0,
            "{target} has no seeds: run `cargo run --example seeds`"
        );
        count += seeds;
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    eprintln!(
        "{count} inputs replayed, {} open bugs still reproduce",
        open.len()
    );
}
