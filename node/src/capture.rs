//! Transparent capture: nftables rules, in one table of the node's own, that redirect local
//! apps' outbound TCP to the virtual-IP ranges into the node, which reads each connection's
//! original destination (`proxy::captured`). Nothing else on the host is touched.
//!
//! The ruleset is loaded with `nft -f -` as one transaction that first deletes the table, so a
//! table left by a node that crashed is replaced, never doubled. It is deleted again when the
//! node stops. The node's own sockets carry [`CaptureSettings::mark`] and are not redirected;
//! so are the processes of [`CaptureSettings::exempt_uids`] (the node's user, when it has one).
//! `murmur capture print` shows the same ruleset without loading it.

use std::fmt::Write as _;
use std::process::Stdio;

use anyhow::Context;
use ipnet::{Ipv4Net, Ipv6Net};
use tokio::io::AsyncWriteExt;
use tracing::info;

/// `[capture]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSettings {
    /// The port redirected connections arrive at, on 127.0.0.1 and ::1.
    pub port: u16,
    /// The firewall mark of the node's own sockets (never redirected).
    pub mark: u32,
    /// Users whose processes are never redirected.
    pub exempt_uids: Vec<u32>,
    /// The node's nftables table (family `inet`).
    pub table: String,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        Self {
            port: 15001,
            mark: 0x4d55,
            exempt_uids: Vec::new(),
            table: "murmur".into(),
        }
    }
}

/// The ruleset for `settings` and the virtual-IP ranges, as `nft -f` reads it: replaces any
/// table of the same name in one transaction.
pub fn ruleset(settings: &CaptureSettings, v4: Ipv4Net, v6: Option<Ipv6Net>) -> String {
    let t = &settings.table;
    let mut s = String::new();
    // Declaring the table first makes the delete succeed when there is none (nft 1.0.6 has no
    // `destroy`); both happen in the same transaction as the new table.
    let _ = writeln!(
        s,
        "table inet {t}\ndelete table inet {t}\ntable inet {t} {{"
    );
    let _ = writeln!(s, "  chain output {{");
    let _ = writeln!(s, "    type nat hook output priority -100; policy accept;");
    let _ = writeln!(s, "    meta mark {:#x} return", settings.mark);
    for uid in &settings.exempt_uids {
        let _ = writeln!(s, "    meta skuid {uid} return");
    }
    let port = settings.port;
    let _ = writeln!(s, "    ip daddr {v4} meta l4proto tcp redirect to :{port}");
    if let Some(v6) = v6 {
        let _ = writeln!(s, "    ip6 daddr {v6} meta l4proto tcp redirect to :{port}");
    }
    s.push_str("  }\n}\n");
    s
}

/// The script that removes the table (and succeeds when there is none).
pub fn removal(settings: &CaptureSettings) -> String {
    let t = &settings.table;
    format!("table inet {t}\ndelete table inet {t}\n")
}

/// Loads `script` with `nft -f -`.
pub async fn apply(script: &str) -> anyhow::Result<()> {
    nft(&["-f", "-"], script).await
}

/// Checks that the rules would load (nft present, permission, syntax) without loading them:
/// the node fails before it joins the mesh rather than after.
pub async fn check(
    settings: &CaptureSettings,
    v4: Ipv4Net,
    v6: Option<Ipv6Net>,
) -> anyhow::Result<()> {
    nft(&["-c", "-f", "-"], &ruleset(settings, v4, v6))
        .await
        .context("cannot install the capture rules")
}

async fn nft(args: &[&str], script: &str) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run `nft` (install the nftables package)")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .context("cannot write the ruleset to nft")?;
    }
    let out = child
        .wait_with_output()
        .await
        .context("nft did not finish")?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let hint = if err.contains("Operation not permitted") {
        " (capture needs root or CAP_NET_ADMIN)"
    } else {
        ""
    };
    anyhow::bail!("nft refused the ruleset{hint}: {}", err.trim())
}

/// Installs the rules, replacing a stale table of an earlier run.
pub async fn install(
    settings: &CaptureSettings,
    v4: Ipv4Net,
    v6: Option<Ipv6Net>,
) -> anyhow::Result<()> {
    apply(&ruleset(settings, v4, v6))
        .await
        .context("cannot install the capture rules")?;
    info!(table = %settings.table, port = settings.port, %v4, ?v6, "capturing TCP to virtual IPs");
    Ok(())
}

/// Removes the rules.
pub async fn remove(settings: &CaptureSettings) {
    match apply(&removal(settings)).await {
        Ok(()) => info!(table = %settings.table, "capture rules removed"),
        Err(e) => {
            tracing::error!(error = %e, table = %settings.table, "cannot remove the capture rules")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_replaces_the_table_and_exempts_the_node() {
        let s = CaptureSettings {
            exempt_uids: vec![990],
            ..CaptureSettings::default()
        };
        let text = ruleset(
            &s,
            "240.0.0.0/4".parse().unwrap(),
            Some("fd6d:7572:6d75:7200::/64".parse().unwrap()),
        );
        assert_eq!(
            text,
            "table inet murmur\ndelete table inet murmur\ntable inet murmur {\n  chain output {\n    \
             type nat hook output priority -100; policy accept;\n    meta mark 0x4d55 return\n    \
             meta skuid 990 return\n    ip daddr 240.0.0.0/4 meta l4proto tcp redirect to :15001\n    \
             ip6 daddr fd6d:7572:6d75:7200::/64 meta l4proto tcp redirect to :15001\n  }\n}\n"
        );
        let v4_only = ruleset(
            &CaptureSettings::default(),
            "10.77.0.0/16".parse().unwrap(),
            None,
        );
        assert!(!v4_only.contains("ip6") && !v4_only.contains("skuid"));
        assert_eq!(removal(&s), "table inet murmur\ndelete table inet murmur\n");
    }
}
