//! The resolvers names outside the mesh are forwarded to: the ones the config names, or the
//! host's — the `nameserver` lines of its resolv.conf, read when the node starts.
//!
//! Once the host's resolv.conf points at the node itself, reading it again would make the node
//! forward to itself. So this node's own address is left out, and the last list that was read
//! without it is kept in the data directory (`dns-upstreams`): a node restarted after it took
//! over resolv.conf still forwards where the host did before.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use tracing::{info, warn};

/// Where the resolvers for names outside the mesh come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamSource {
    /// Given in the config.
    Explicit(Vec<SocketAddr>),
    /// The `nameserver` lines of this file, read at start (the host's `/etc/resolv.conf`).
    ResolvConf(PathBuf),
}

/// The file in the data directory that keeps the host's resolvers.
pub const SAVED: &str = "dns-upstreams";

/// The upstream resolvers for `source`, given that this node answers DNS on `own`; `data_dir`
/// keeps the host's list across a takeover. Reads files: call before the runtime starts.
#[allow(
    clippy::disallowed_methods,
    reason = "runs in node::prepare, before the runtime starts"
)]
pub fn resolve(
    source: &UpstreamSource,
    own: SocketAddr,
    data_dir: &Path,
) -> anyhow::Result<Vec<SocketAddr>> {
    let path = match source {
        UpstreamSource::Explicit(list) => return Ok(list.clone()),
        UpstreamSource::ResolvConf(path) => path,
    };
    let saved = data_dir.join(SAVED);
    let text = std::fs::read(path).unwrap_or_default();
    let read = nameservers(&text);
    let usable: Vec<SocketAddr> = read.iter().copied().filter(|a| !is_own(*a, own)).collect();
    if !usable.is_empty() {
        let listed = render(&usable);
        if std::fs::read_to_string(&saved).ok().as_deref() != Some(listed.as_str()) {
            std::fs::write(&saved, listed)
                .with_context(|| format!("cannot write {}", saved.display()))?;
        }
        return Ok(usable);
    }
    let kept = parse_saved(&std::fs::read_to_string(&saved).unwrap_or_default());
    if kept.is_empty() {
        warn!(file = %path.display(), "no resolver to forward to (none listed, or only this \
            node): names outside the mesh will be refused; set dns.upstreams");
    } else {
        info!(file = %path.display(), upstreams = ?kept,
            "resolv.conf points at this node; forwarding to the resolvers it listed before");
    }
    Ok(kept)
}

/// The nameservers of a resolv.conf (port 53), in order.
fn nameservers(text: &[u8]) -> Vec<SocketAddr> {
    match hickory_server::resolver::system_conf::parse_resolv_conf(text) {
        Ok((config, _)) => config
            .name_servers()
            .iter()
            .map(|ns| SocketAddr::new(ns.ip, 53))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Whether `upstream` is this node's own DNS address.
fn is_own(upstream: SocketAddr, own: SocketAddr) -> bool {
    if upstream.port() != own.port() {
        return false;
    }
    let (u, o) = (unmap(upstream.ip()), unmap(own.ip()));
    u == o || (o.is_unspecified() && (u.is_loopback() || u.is_unspecified()))
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn render(list: &[SocketAddr]) -> String {
    list.iter().map(|a| format!("{a}\n")).collect()
}

fn parse_saved(text: &str) -> Vec<SocketAddr> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_resolvers_are_read_then_kept_across_a_takeover() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("resolv.conf");
        let own: SocketAddr = "127.0.0.53:53".parse().unwrap();
        let source = UpstreamSource::ResolvConf(conf.clone());
        std::fs::write(
            &conf,
            "# comment\nsearch example.org\nnameserver 10.0.0.2\nnameserver 127.0.0.53\noptions ndots:2\n",
        )
        .unwrap();
        let first = resolve(&source, own, dir.path()).unwrap();
        assert_eq!(first, ["10.0.0.2:53".parse::<SocketAddr>().unwrap()]);
        // The node took over: resolv.conf names only the node. The list read before is used.
        std::fs::write(&conf, "nameserver 127.0.0.53\n").unwrap();
        assert_eq!(resolve(&source, own, dir.path()).unwrap(), first);
        // An explicit list wins; a missing file and nothing saved mean no forwarding.
        let explicit = UpstreamSource::Explicit(vec!["127.0.0.9:5353".parse().unwrap()]);
        assert_eq!(resolve(&explicit, own, dir.path()).unwrap().len(), 1);
        let empty = tempfile::tempdir().unwrap();
        let missing = UpstreamSource::ResolvConf(empty.path().join("nope"));
        assert!(resolve(&missing, own, empty.path()).unwrap().is_empty());
    }

    #[test]
    fn own_address_table() {
        let own = |s: &str| s.parse::<SocketAddr>().unwrap();
        let cases = [
            ("127.0.0.53:53", "127.0.0.53:53", true),
            ("127.0.0.1:53", "0.0.0.0:53", true),
            ("[::ffff:127.0.0.53]:53", "127.0.0.53:53", true),
            ("127.0.0.53:53", "127.0.0.53:5353", false),
            ("10.0.0.2:53", "0.0.0.0:53", false),
            ("127.0.0.1:53", "127.0.0.53:53", false),
        ];
        for (upstream, node, want) in cases {
            assert_eq!(is_own(own(upstream), own(node)), want, "{upstream} {node}");
        }
    }
}
