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
        self.issue_with(name, services, "--days", &days.to_string())
    }

    /// [`Pki::issue`] with a validity given as a lifetime (`2m`, `1h`).
    pub fn issue_with_ttl(&self, name: &str, services: &[&str], ttl: &str) -> Issued {
        self.issue_with(name, services, "--ttl", ttl)
    }

    fn issue_with(&self, name: &str, services: &[&str], flag: &str, value: &str) -> Issued {
        let mut args = vec![
            "cert",
            "issue",
            flag,
            value,
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

    /// An issuer credential for `name` (`murmur ca issuer`), valid 5 days.
    pub fn issuer(&self, name: &str) -> Issued {
        murmur(&[
            "ca",
            "issuer",
            "--ca-dir",
            path(&self.ca_dir),
            "--name",
            name,
            "--ttl",
            "5d",
            "--out",
            path(&self.out_dir),
            "--force",
        ]);
        Issued {
            cert: self.out_dir.join(format!("{name}-issuer.crt")),
            key: self.out_dir.join(format!("{name}-issuer.key")),
        }
    }

    /// `[identity]` lines making a node an issuer with this credential, signing certificates
    /// that live `leaf_ttl`.
    pub fn issuer_toml(&self, name: &str, leaf_ttl: &str) -> String {
        let issuer = self.issuer(name);
        format!(
            "issuer_cert = \"{}\"\nissuer_key = \"{}\"\nleaf_ttl = \"{leaf_ttl}\"",
            issuer.cert.display(),
            issuer.key.display()
        )
    }

    /// A join token for node `name` and `services`, valid `ttl`, signed by this CA's operator;
    /// returns the token file.
    pub fn token(&self, name: &str, services: &[&str], ttl: &str) -> PathBuf {
        std::fs::create_dir_all(&self.out_dir).expect("certs dir");
        let out = self.out_dir.join(format!("{name}-{}.token", unique()));
        let operator = self.ca_dir.join("operator.crt");
        let mut args = vec![
            "token",
            "create",
            "--name",
            name,
            "--ttl",
            ttl,
            "--identity",
            path(&operator),
            "--out",
            path(&out),
        ];
        for s in services {
            args.extend(["--service", s]);
        }
        murmur(&args);
        out
    }
}

/// A number not used before in this process (token files do not overwrite each other).
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
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
