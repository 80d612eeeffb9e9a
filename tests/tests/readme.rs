//! The README quickstart works when followed literally.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use murmur_tests::netns;
use murmur_tests::node::binary;

/// The shell commands between the quickstart markers of README.md.
fn quickstart() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("<!-- quickstart:begin -->")
        .expect("begin marker");
    let end = readme.find("<!-- quickstart:end -->").expect("end marker");
    readme[start..end]
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_quickstart_works_as_written() {
    let script = quickstart();
    assert!(script.contains("murmur members"), "{script}");
    netns::run(move || async move {
        let dir = tempfile::tempdir().unwrap();
        let bin_dir = binary().parent().unwrap().to_owned();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // Stop the nodes the quickstart leaves running, whatever happened.
        let wrapped = format!("set -e\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n{script}\n");
        let out = Command::new("bash")
            .arg("-c")
            .arg(&wrapped)
            .current_dir(dir.path())
            .env("PATH", path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "quickstart failed\n{stdout}\n{stderr}"
        );
        let alive: Vec<&str> = stdout
            .lines()
            .filter(|l| l.split_whitespace().nth(2) == Some("alive"))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(alive, ["a", "b", "c"], "{stdout}");
        println!("{stdout}");
    });
}
