//! The routing decision, separate from doing it: which service a request is for, and which
//! instances may take it. Pure functions of the request and the cluster view; the balancer then
//! orders the candidates and only after that does any I/O start.

use std::collections::BTreeMap;
use std::net::IpAddr;

use http::header::HOST;
use http::{HeaderMap, Uri};
use murmur_membership::ClusterView;
use murmur_membership::records::{Balancer, Protocol};
use murmur_membership::view::Endpoint;
use murmur_transport::identity::Name;

use crate::names::{MeshNames, Named};
use crate::traffic::split;
use crate::vip::VipMap;

/// Why a request cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The request does not name a service in a usable way.
    #[error("{0}")]
    BadTarget(String),
    /// No node serves the service.
    #[error("unknown service {0:?}: no node in the mesh serves it")]
    Unknown(String),
    /// An address in the virtual-IP range that no service has (any longer).
    #[error("no service has the virtual IP {0}: it may have left the mesh")]
    NoVip(IpAddr),
    /// Instances exist but none takes new traffic.
    #[error("no reachable instance of service {service:?}: {detail}")]
    NoInstance {
        /// The service.
        service: String,
        /// What was tried or why nothing could be.
        detail: String,
    },
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A mesh service.
    Service(Name),
    /// A host outside the mesh (only a proxy request, CONNECT or absolute-form, names one).
    External {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
    },
}

/// Where a request goes: the host of its CONNECT or absolute-form target (proxy use) or of
/// its `:authority` (HTTP/2), else of its `Host` header. A mesh name (`<service>.<suffix>`, a
/// single label other than `localhost`) or a virtual IP names a service; a proxy request to
/// any other host goes outside the mesh, a `Host` header naming one is refused.
pub fn destination_of(
    uri: &Uri,
    headers: &HeaderMap,
    names: &MeshNames,
    vips: &VipMap,
) -> Result<Destination, RouteError> {
    if let Some(a) = uri.authority() {
        let default_port = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        return classify(
            a.host(),
            a.port_u16().unwrap_or(default_port),
            names,
            vips,
            true,
        );
    }
    // RFC 9112 3.2: a request with more than one Host is answered 400.
    if headers.get_all(HOST).iter().nth(1).is_some() {
        return Err(RouteError::BadTarget(
            "the request has more than one Host header".into(),
        ));
    }
    let value = headers.get(HOST).ok_or_else(|| {
        RouteError::BadTarget(
            "the request names no service: send `Host: <service>` or use this address as an \
             HTTP proxy"
                .into(),
        )
    })?;
    let text = value
        .to_str()
        .map_err(|_| RouteError::BadTarget("the Host header is not text".into()))?;
    let authority: http::uri::Authority = text
        .parse()
        .map_err(|_| RouteError::BadTarget(format!("Host {text:?} is not a host name")))?;
    classify(authority.host(), 80, names, vips, false)
}

fn classify(
    host: &str,
    port: u16,
    names: &MeshNames,
    vips: &VipMap,
    proxied: bool,
) -> Result<Destination, RouteError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let external = || {
        if proxied {
            Ok(Destination::External {
                host: bare.to_ascii_lowercase(),
                port,
            })
        } else {
            Err(RouteError::BadTarget(format!(
                "{host:?} is not a service name: address services by name (`Host: <service>` or \
                 `http://<service>/...`), not by IP address or domain"
            )))
        }
    };
    if let Ok(ip) = bare.parse::<IpAddr>() {
        if !vips.in_range(ip) {
            return external();
        }
        return match vips.service_at(ip) {
            Some(s) => service(s),
            None => Err(RouteError::NoVip(ip)),
        };
    }
    match names.classify(host) {
        Named::Suffixed(label) => service(label),
        Named::Bare(label) if !label.eq_ignore_ascii_case("localhost") => service(label),
        Named::Apex => Err(RouteError::BadTarget(format!("{host:?} names no service"))),
        Named::Bare(_) | Named::Outside => external(),
    }
}

fn service(label: &str) -> Result<Destination, RouteError> {
    Name::try_from(label.to_ascii_lowercase())
        .map(Destination::Service)
        .map_err(|_| RouteError::BadTarget(format!("{label:?} is not a service name")))
}

/// The protocol of `service`, as its instances publish it (they should agree; the first by node
/// name decides, the same way on every caller).
pub fn protocol_of(view: &ClusterView, service: &str) -> Result<Protocol, RouteError> {
    view.endpoints(service)
        .first()
        .map(|e| e.protocol)
        .ok_or_else(|| RouteError::Unknown(service.to_owned()))
}

/// The instances of `service` that may take a new request, among those in `subset` (carrying
/// all its labels) if given, and the balancer their owner chose. Stale instances (known only
/// from the persisted view) count: they are the best knowledge while gossip is down.
pub fn candidates_in<'v>(
    view: &'v ClusterView,
    service: &str,
    subset: Option<&BTreeMap<String, String>>,
) -> Result<(Balancer, Vec<&'v Endpoint>), RouteError> {
    let all = view.endpoints(service);
    if all.is_empty() {
        return Err(RouteError::Unknown(service.to_owned()));
    }
    let in_subset = |e: &&Endpoint| subset.is_none_or(|s| split::in_subset(&e.labels, s));
    if let Some(s) = subset
        && !all.iter().any(|e| in_subset(&e))
    {
        return Err(RouteError::NoInstance {
            service: service.to_owned(),
            detail: format!("no instance is in subset {}", split::describe(s)),
        });
    }
    let mut usable: Vec<&Endpoint> = all
        .iter()
        .filter(in_subset)
        .filter(|e| e.accepts_new_traffic())
        .collect();
    if usable.is_empty() {
        // Every healthy instance is draining: serving from a draining node beats failing.
        usable = all
            .iter()
            .filter(in_subset)
            .filter(|e| e.draining && e.health == murmur_membership::records::Health::Passing)
            .collect();
    }
    if usable.is_empty() {
        let states: Vec<String> = all
            .iter()
            .filter(in_subset)
            .map(|e| {
                let why = if e.draining {
                    "draining"
                } else {
                    "failing health checks"
                };
                format!("{} {why}", e.node)
            })
            .collect();
        return Err(RouteError::NoInstance {
            service: service.to_owned(),
            detail: states.join(", "),
        });
    }
    prefer_own_cell(&mut usable);
    // Instances should agree; if they do not, the first by node name decides, the same way on
    // every caller.
    let balancer = usable[0].balancer;
    Ok((balancer, usable))
}

/// Keeps the best tier of `usable`: this node's cell's instances; else other cells' from a
/// fresh summary; else those from a stale one (a cell cut off from the others still calls
/// what it last knew).
fn prefer_own_cell(usable: &mut Vec<&Endpoint>) {
    let tier = |e: &Endpoint| match (&e.cell, e.stale) {
        (None, _) => 0,
        (Some(_), false) => 1,
        (Some(_), true) => 2,
    };
    if let Some(best) = usable.iter().map(|e| tier(e)).min() {
        usable.retain(|e| tier(e) == best);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use http::HeaderValue;
    use murmur_membership::records::{Health, Protocol};

    use super::*;

    fn candidates<'v>(
        view: &'v ClusterView,
        service: &str,
    ) -> Result<(Balancer, Vec<&'v Endpoint>), RouteError> {
        candidates_in(view, service, None)
    }

    fn vips() -> crate::vip::VipMap {
        let mut alloc = crate::vip::Allocator::new(crate::vip::VipSettings::default());
        alloc.update(["db"], std::time::Instant::now());
        alloc.snapshot()
    }

    fn target(uri: &str, host: Option<&str>) -> Result<String, RouteError> {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(HOST, HeaderValue::from_str(v).unwrap());
        }
        let names = MeshNames::default();
        destination_of(&uri.parse().unwrap(), &h, &names, &vips()).map(|d| match d {
            Destination::Service(n) => n.to_string(),
            Destination::External { host, port } => format!("external {host} {port}"),
        })
    }

    #[test]
    fn the_destination_comes_from_the_target_or_the_host_header() {
        let db = vips().of("db").unwrap();
        let (db4, db6) = (db.v4.unwrap().to_string(), db.v6.unwrap().to_string());
        // (target, Host header, expected; None: refused as a bad target)
        let cases: Vec<(String, Option<&str>, Option<String>)> = vec![
            ("/hello".into(), Some("echo"), Some("echo".into())),
            ("/hello".into(), Some("echo.mesh"), Some("echo".into())),
            ("/hello".into(), Some("Echo.Mesh:8080"), Some("echo".into())),
            ("/hello".into(), Some("echo.mesh."), Some("echo".into())),
            (
                "http://web/x?y=1".into(),
                Some("ignored"),
                Some("web".into()),
            ),
            ("http://web.mesh:80/x".into(), None, Some("web".into())),
            ("web.mesh:6379".into(), None, Some("web".into())),
            (format!("http://{db4}:8080/"), None, Some("db".into())),
            (format!("[{db6}]:443"), None, Some("db".into())),
            ("/".into(), Some(db4.as_str()), Some("db".into())),
            (
                "http://example.com/x".into(),
                None,
                Some("external example.com 80".into()),
            ),
            (
                "https://example.com/x".into(),
                None,
                Some("external example.com 443".into()),
            ),
            (
                "example.com:8443".into(),
                None,
                Some("external example.com 8443".into()),
            ),
            (
                "127.0.0.1:9000".into(),
                None,
                Some("external 127.0.0.1 9000".into()),
            ),
            ("[::1]:9000".into(), None, Some("external ::1 9000".into())),
            (
                "http://localhost:3000/".into(),
                None,
                Some("external localhost 3000".into()),
            ),
            ("/hello".into(), None, None),
            ("/hello".into(), Some("127.0.0.1:7421"), None),
            ("/hello".into(), Some("example.com"), None),
            ("/hello".into(), Some("bad_name"), None),
            ("/hello".into(), Some("mesh"), None),
        ];
        for (uri, host, want) in &cases {
            let got = target(uri, *host);
            match want {
                Some(name) => {
                    assert_eq!(got.as_deref().ok(), Some(name.as_str()), "{uri} {host:?}");
                }
                None => assert!(
                    matches!(got, Err(RouteError::BadTarget(_))),
                    "{uri} {host:?}: {got:?}"
                ),
            }
        }
        // An address in the range that no service has is an unknown service, never a host.
        assert!(matches!(
            target("http://240.0.0.1/", None),
            Err(RouteError::NoVip(_))
        ));
    }

    #[test]
    fn two_host_headers_are_a_bad_target() {
        let mut h = HeaderMap::new();
        h.append(HOST, HeaderValue::from_static("web"));
        h.append(HOST, HeaderValue::from_static("admin"));
        let got = destination_of(&"/x".parse().unwrap(), &h, &MeshNames::default(), &vips());
        assert!(matches!(got, Err(RouteError::BadTarget(ref m)) if m.contains("more than one")));
    }

    fn ep(node: &str, health: Health, draining: bool, balancer: Balancer) -> Endpoint {
        Endpoint {
            service: "web".into(),
            node: murmur_transport::testing::name(node),
            mesh_addr: "127.0.0.2:7420".parse().unwrap(),
            protocol: Protocol::Http,
            labels: BTreeMap::new(),
            weight: 1,
            health,
            balancer,
            draining,
            stale: false,
            cell: None,
        }
    }

    fn view(eps: Vec<Endpoint>) -> ClusterView {
        let mut v = ClusterView::default();
        v.services.insert("web".into(), eps);
        v
    }

    #[test]
    fn candidates_table() {
        use Balancer::*;
        use Health::*;
        type Want = Result<(Balancer, Vec<&'static str>), &'static str>;
        let cases: Vec<(Vec<Endpoint>, Want)> = vec![
            (vec![], Err("unknown")),
            (
                vec![
                    ep("a", Passing, false, RoundRobin),
                    ep("b", Warning, false, P2cEwma),
                ],
                Ok((RoundRobin, vec!["a"])),
            ),
            (
                vec![
                    ep("a", Critical, false, LeastRequest),
                    ep("b", Passing, false, P2cEwma),
                ],
                Ok((P2cEwma, vec!["b"])),
            ),
            (
                vec![
                    ep("a", Passing, true, P2cEwma),
                    ep("b", Critical, false, P2cEwma),
                ],
                Ok((P2cEwma, vec!["a"])),
            ),
            (
                vec![
                    ep("a", Warning, true, P2cEwma),
                    ep("b", Critical, false, P2cEwma),
                ],
                Err("no instance"),
            ),
        ];
        for (eps, want) in cases {
            let v = view(eps);
            let got = candidates(&v, "web")
                .map(|(b, e)| (b, e.iter().map(|e| e.node.as_str()).collect::<Vec<_>>()));
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w),
                (Err(RouteError::Unknown(s)), Err("unknown")) => assert_eq!(s, "web"),
                (Err(RouteError::NoInstance { detail, .. }), Err("no instance")) => {
                    assert_eq!(detail, "a draining, b failing health checks");
                }
                (g, w) => panic!("got {g:?}, want {w:?}"),
            }
        }
        assert!(matches!(
            candidates(&view(vec![]), "other"),
            Err(RouteError::Unknown(_))
        ));
    }

    #[test]
    fn subsets_narrow_the_candidates() {
        let mut v1 = ep("a", Health::Passing, false, Balancer::P2cEwma);
        v1.labels.insert("version".into(), "v1".into());
        let mut v2 = ep("b", Health::Passing, false, Balancer::P2cEwma);
        v2.labels.insert("version".into(), "v2".into());
        let mut v2sick = ep("c", Health::Critical, false, Balancer::P2cEwma);
        v2sick.labels.insert("version".into(), "v2".into());
        let v = view(vec![v1, v2, v2sick]);
        let sub = |ver: &str| BTreeMap::from([("version".to_owned(), ver.to_owned())]);
        let nodes = |s: Option<&BTreeMap<String, String>>| {
            candidates_in(&v, "web", s)
                .map(|(_, e)| e.iter().map(|e| e.node.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(nodes(None).unwrap(), ["a", "b"]);
        assert_eq!(nodes(Some(&sub("v2"))).unwrap(), ["b"]);
        match nodes(Some(&sub("v3"))) {
            Err(RouteError::NoInstance { detail, .. }) => {
                assert_eq!(detail, "no instance is in subset version=v3");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn own_cell_first_then_other_cells_fresh_then_stale() {
        let local = |n: &str, h: Health| ep(n, h, false, Balancer::P2cEwma);
        let remote = |n: &str, stale: bool| Endpoint {
            cell: Some("b".into()),
            stale,
            ..local(n, Health::Passing)
        };
        let nodes = |eps: Vec<Endpoint>| {
            let v = view(eps);
            candidates(&v, "web")
                .map(|(_, e)| e.iter().map(|e| e.node.to_string()).collect::<Vec<_>>())
                .unwrap()
        };
        let all = || {
            vec![
                local("a", Health::Passing),
                remote("r1", false),
                remote("r2", true),
            ]
        };
        assert_eq!(nodes(all()), ["a"]);
        // This cell's only instance fails its checks: other cells', fresh ones first.
        let mut sick = all();
        sick[0].health = Health::Critical;
        assert_eq!(nodes(sick), ["r1"]);
        assert_eq!(
            nodes(vec![remote("r2", true), local("a", Health::Critical)]),
            ["r2"]
        );
        // A stale local instance (from the persisted view) is still this cell's.
        let mut persisted = local("a", Health::Passing);
        persisted.stale = true;
        assert_eq!(nodes(vec![persisted, remote("r1", false)]), ["a"]);
    }
}
