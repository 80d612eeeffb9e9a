//! Certificates for tests, made with the `murmur` CLI itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::node::binary;

/// A mesh CA in a test directory.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA directory (ca.crt, ca.key, operator.crt, operator.key).
    pub ca_dir: PathBuf,
    /// Where issued certificates go.
    pub out_dir: PathBuf,
}

/// Paths of one issued certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Certificate.
    pub cert: PathBuf,
    /// Key.
    pub key: PathBuf,
}

impl Pki {
    /// Runs `murmur ca init` in `dir/ca`.
    pub fn new(dir: &Path) -> Self {
        let ca_dir = dir.join("ca");
        murmur(&[
            "ca",
            "init",
            "--dir",
            path(&ca_dir),
            "--trust-domain",
            "test.mesh",
        ]);
        Self {
            ca_dir,
            out_dir: dir.join("certs"),
        }
    }

    /// The trust bundle.
    pub fn ca_cert(&self) -> PathBuf {
        self.ca_dir.join("ca.crt")
    }

    /// Issues (or re-issues) a node certificate for `name` naming `services`.
    pub fn issue(&self, name: &str, services: &[&str]) -> Issued {
        self.issue_for_days(name, services, 90)
    }

    /// [`Pki::issue`] with a validity of `days`.
    pub fn issue_for_days(&self, name: &str, services: &[&str], days: u32) -> Issued {
        let days = days.to_string();
        let mut args = vec![
            "cert",
            "issue",
            "--days",
            &days,
            "--ca-dir",
            path(&self.ca_dir),
            "--name",
            name,
            "--out",
            path(&self.out_dir),
            "--force",
        ];
        for s in services {
            args.extend(["--service", s]);
        }
        murmur(&args);
        Issued {
            cert: self.out_dir.join(format!("{name}.crt")),
            key: self.out_dir.join(format!("{name}.key")),
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Runs a `murmur` tool command and asserts it succeeds; returns stdout.
pub fn murmur(args: &[&str]) -> String {
    let out = Command::new(binary())
        .args(args)
        .output()
        .expect("run murmur");
    assert!(
        out.status.success(),
        "murmur {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
