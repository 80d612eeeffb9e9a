//! The validated configuration a node runs with, and how flags and file are merged into it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use murmur_membership::GossipSettings;
use murmur_transport::certs::{ca_trust_domain, read_certs_pem};
use murmur_transport::endpoint::QuicSettings;
use murmur_transport::identity::{Name, TrustDomain};
use murmur_transport::tls::CredentialPaths;

use super::raw::{
    RawAccessLog, RawCapture, RawCheckKind, RawConfig, RawDns, RawDrain, RawExternal, RawGateway,
    RawGossip, RawHealth, RawIdentity, RawOtlpProtocol, RawPolicy, RawService, RawTelemetry,
    RawTls,
};
use crate::capture::CaptureSettings;
use crate::cells::CellSettings;
use crate::dns::{DnsSettings, UpstreamSource};
use crate::drain::DrainSettings;
use crate::health::CheckConfig;
use crate::health::probe::{Probe, parse_expect};
use crate::health::state::Thresholds;
use crate::identity::{IdentitySettings, IssuerFiles, MIN_LEAF_TTL};
use crate::listener::ListenerSettings;
use crate::names::MeshNames;
use crate::policy::PolicySettings;
use crate::proxy::gateway::{CertFiles, GatewaySettings};
use crate::proxy::{External, Upstream};
use crate::services::LocalService;
use crate::telemetry::accesslog::{AccessLogSettings, DEFAULT_QUEUE, Output};
use crate::telemetry::traces::{OtlpProtocol, TraceSettings};
use crate::vip::VipSettings;

/// Default QUIC port.
pub const DEFAULT_MESH_PORT: u16 = 7420;
/// Default outbound proxy address.
pub const DEFAULT_OUTBOUND: &str = "127.0.0.1:7421";
/// Default admin API address.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:7422";
/// Default address of the mesh DNS (a loopback address no common resolver uses).
pub const DEFAULT_DNS: &str = "127.0.0.153:53";
/// Default resolv.conf whose nameservers the DNS forwards to.
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";

/// A configuration problem, naming where it is and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid (syntax, unknown or ill-typed field); the message has the line.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with line, column and field.
        message: String,
    },
    /// A required setting is absent.
    #[error("{field} is required: set `{field}` in the config file or pass --{flag}")]
    Missing {
        /// File field.
        field: &'static str,
        /// Flag name.
        flag: &'static str,
    },
    /// A setting has an invalid value.
    #[error("{field}: {message}")]
    Invalid {
        /// Which setting.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// Settings given as command-line flags; each overrides the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--name`
    pub name: Option<Name>,
    /// `--trust-domain`
    pub trust_domain: Option<TrustDomain>,
    /// `--listen`
    pub listen: Option<SocketAddr>,
    /// `--advertise`
    pub advertise: Option<SocketAddr>,
    /// `--seed` (adds to the file's seeds)
    pub seeds: Vec<String>,
    /// `--cell`
    pub cell: Option<Name>,
    /// `--cell-seed` (adds to the file's cell seeds)
    pub cell_seeds: Vec<String>,
    /// `--admin`
    pub admin: Option<SocketAddr>,
    /// `--outbound`
    pub outbound: Option<SocketAddr>,
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--ca`
    pub ca: Option<PathBuf>,
    /// `--cert`
    pub cert: Option<PathBuf>,
    /// `--key`
    pub key: Option<PathBuf>,
    /// `--threads`
    pub threads: Option<usize>,
    /// `--dns` (turns the mesh DNS on, on this address)
    pub dns: Option<SocketAddr>,
    /// `--capture`
    pub capture: bool,
    /// `--external`
    pub external: Option<External>,
    /// `--join-token`
    pub join_token: Option<PathBuf>,
    /// `--issuer-cert`
    pub issuer_cert: Option<PathBuf>,
    /// `--issuer-key`
    pub issuer_key: Option<PathBuf>,
}

/// Everything a node runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Node name.
    pub name: Name,
    /// Trust domain.
    pub trust_domain: TrustDomain,
    /// QUIC bind address.
    pub listen: SocketAddr,
    /// Advertised QUIC address (None: the bound one).
    pub advertise: Option<SocketAddr>,
    /// Seeds.
    pub seeds: Vec<String>,
    /// The node's cell and the seeds of the cell link.
    pub cell: CellSettings,
    /// Admin API.
    pub admin: SocketAddr,
    /// Outbound HTTP proxy.
    pub outbound: SocketAddr,
    /// Requests for hosts outside the mesh.
    pub external: External,
    /// How apps name services (the DNS and the proxy).
    pub names: MeshNames,
    /// Virtual IP ranges.
    pub vips: VipSettings,
    /// The mesh DNS, if on.
    pub dns: Option<DnsSettings>,
    /// Transparent capture, if on.
    pub capture: Option<CaptureSettings>,
    /// State directory.
    pub data_dir: PathBuf,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Threads, each running a single-threaded runtime with its own share of the data path.
    pub threads: usize,
    /// Credential files.
    pub tls: CredentialPaths,
    /// Credential poll interval.
    pub reload_interval: Duration,
    /// Gossip tuning.
    pub gossip: GossipSettings,
    /// Fail-static warm-up.
    pub fail_static_warmup: Duration,
    /// QUIC tuning.
    pub quic: QuicSettings,
    /// Connection caps and timeouts of the local listeners.
    pub listeners: ListenerSettings,
    /// Policy settings.
    pub policy: PolicySettings,
    /// Graceful drain.
    pub drain: DrainSettings,
    /// Local services.
    pub services: Vec<LocalService>,
    /// Upstream listeners.
    pub upstreams: Vec<Upstream>,
    /// Trace export.
    pub traces: TraceSettings,
    /// The access log.
    pub access_log: AccessLogSettings,
    /// Certificates: issuing, renewing, joining.
    pub identity: IdentitySettings,
    /// The gateway for clients outside the mesh, if on.
    pub gateway: Option<GatewaySettings>,
}

/// Reads an environment variable; injected so tests need not touch the process environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Reads `file` (if any) and applies `flags` over it.
    pub fn load(file: Option<&Path>, flags: Overrides) -> Result<Self, ConfigError> {
        Self::load_with_env(file, flags, &|k| std::env::var(k).ok())
    }

    /// [`Config::load`] with an explicit environment.
    pub fn load_with_env(
        file: Option<&Path>,
        flags: Overrides,
        env: Env<'_>,
    ) -> Result<Self, ConfigError> {
        let raw = match file {
            Some(path) => parse_file(path)?,
            None => RawConfig::default(),
        };
        // Relative paths in a file are relative to the file, as users expect.
        let base = file.and_then(Path::parent).unwrap_or(Path::new(""));
        Self::from_parts(raw, flags, base, env)
    }

    fn from_parts(
        raw: RawConfig,
        flags: Overrides,
        base: &Path,
        env: Env<'_>,
    ) -> Result<Self, ConfigError> {
        let name = flags
            .name
            .clone()
            .or(raw.name)
            .ok_or(ConfigError::Missing {
                field: "name",
                flag: "name",
            })?;
        let data_dir = flags
            .data_dir
            .clone()
            .or(raw.data_dir.map(|d| base.join(d)))
            .unwrap_or_else(|| PathBuf::from("murmur-data").join(name.as_str()));
        let identity = identity_settings(&flags, raw.identity.unwrap_or_default(), base)?;
        let tls_raw = raw.tls.unwrap_or_default();
        let reload_interval = tls_raw
            .reload_interval
            .map_or(Duration::from_secs(5), |d| d.0);
        // A node joining with a token keeps the credentials it obtains in its data directory.
        let joined = identity
            .join_token
            .as_ref()
            .map(|_| data_dir.join(JOINED_DIR));
        let tls = credential_paths(&flags, tls_raw, base, joined.as_deref())?;
        let trust_domain = match flags.trust_domain.clone().or(raw.trust_domain) {
            Some(td) => td,
            None => trust_domain_of(&tls.bundle)?,
        };
        let listen = flags
            .listen
            .or(raw.listen)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], DEFAULT_MESH_PORT)));
        let advertise = flags.advertise.or(raw.advertise);
        check_reachable(listen, advertise)?;
        let mut seeds = raw.seeds.unwrap_or_default();
        seeds.extend(flags.seeds.iter().cloned());
        for s in &seeds {
            check_seed(s)?;
        }
        let (mut gossip, fail_static_warmup) = gossip_settings(raw.gossip.unwrap_or_default())?;
        let cell = cell_settings(
            flags.cell.clone().or(raw.cell),
            raw.cell_seeds,
            &flags,
            &gossip.cluster_id,
        )?;
        // The cell's own gossip is a domain of its own; the default cell keeps the mesh's id.
        gossip.cluster_id = cell.cluster_id(&gossip.cluster_id);
        let (listeners, quic) = super::limits::limits(raw.limits.unwrap_or_default())
            .map_err(|(field, message)| ConfigError::Invalid { field, message })?;
        let threads = flags.threads.or(raw.threads).unwrap_or(1);
        let raw_outbound = raw.outbound.unwrap_or_default();
        let dns_present = raw.dns.is_some();
        let dns_raw = raw.dns.unwrap_or_default();
        let (names, vips) = (mesh_names(&dns_raw)?, vip_settings(&dns_raw)?);
        let dns = dns_settings(dns_raw, dns_present, flags.dns, base)?;
        let capture = capture_of(raw.capture, flags.capture)?;
        if threads == 0 || threads > murmur_transport::shard::MAX_SHARDS {
            return Err(ConfigError::Invalid {
                field: "threads".into(),
                message: format!(
                    "must be 1 to {} (one runtime per thread; more threads than cores only \
                     adds switching)",
                    murmur_transport::shard::MAX_SHARDS
                ),
            });
        }
        let admin = flags
            .admin
            .or(raw.admin)
            .unwrap_or_else(|| parse_default(DEFAULT_ADMIN));
        let outbound = flags
            .outbound
            .or(raw_outbound.listen)
            .unwrap_or_else(|| parse_default(DEFAULT_OUTBOUND));
        let services = services(raw.services)?;
        let upstreams: Vec<Upstream> = raw
            .upstreams
            .into_iter()
            .map(|u| Upstream {
                service: u.service,
                listen: u.listen,
            })
            .collect();
        let gateway = match raw.gateway {
            Some(g) => Some(gateway_settings(g, base, listeners.gateway)?),
            None => None,
        };
        let mut own = vec![("outbound", outbound), ("admin", admin)];
        own.extend(upstreams.iter().map(|u| ("upstream", u.listen)));
        if let Some(g) = &gateway {
            own.push(("gateway", g.listen));
            own.extend(g.http_listen.map(|a| ("gateway", a)));
        }
        check_no_loop(&services, &own)?;
        Ok(Self {
            name,
            trust_domain,
            listen,
            advertise,
            seeds,
            cell,
            admin,
            outbound,
            external: flags.external.unwrap_or(match raw_outbound.external {
                Some(RawExternal::Deny) => External::Deny,
                Some(RawExternal::Allow) | None => External::Allow,
            }),
            names,
            vips,
            dns,
            capture,
            data_dir,
            labels: raw.labels.unwrap_or_default(),
            threads,
            tls,
            reload_interval,
            drain: drain_settings(raw.drain.unwrap_or_default(), gossip.interval),
            gossip,
            fail_static_warmup,
            quic,
            listeners,
            policy: policy_settings(raw.policy.unwrap_or_default())?,
            services,
            upstreams,
            traces: trace_settings(raw.telemetry.unwrap_or_default(), env)?,
            access_log: access_log_settings(raw.access_log.unwrap_or_default(), base)?,
            identity,
            gateway,
        })
    }
}

/// The naming rules from `[dns]` (the proxy follows them whether or not the DNS is on).
fn mesh_names(d: &RawDns) -> Result<MeshNames, ConfigError> {
    MeshNames::new(
        d.suffix.as_deref().unwrap_or("mesh"),
        d.bare_names.unwrap_or(false),
    )
    .map_err(|message| ConfigError::Invalid {
        field: "dns.suffix".into(),
        message,
    })
}

/// The virtual-IP ranges from `[dns]`.
fn vip_settings(d: &RawDns) -> Result<VipSettings, ConfigError> {
    let mut s = VipSettings::default();
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        field: format!("dns.{field}"),
        message,
    };
    if let Some(r) = &d.vip_range {
        let net: ipnet::Ipv4Net = r.parse().map_err(|_| {
            invalid(
                "vip_range",
                format!("{r:?} is not an IPv4 range such as \"240.0.0.0/4\""),
            )
        })?;
        if net.prefix_len() > 24 || net.network() != net.addr() {
            return Err(invalid(
                "vip_range",
                format!("{r:?} must be a network address with a prefix of /24 or shorter"),
            ));
        }
        s.v4 = net;
    }
    if let Some(r) = &d.vip_range6 {
        s.v6 = if r.is_empty() {
            None
        } else {
            let net: ipnet::Ipv6Net = r.parse().map_err(|_| {
                invalid("vip_range6", format!("{r:?} is not an IPv6 range such as \"fd6d:7572:6d75:7200::/64\" (\"\" for none)"))
            })?;
            if net.prefix_len() > 112 || net.network() != net.addr() {
                return Err(invalid(
                    "vip_range6",
                    format!("{r:?} must be a network address with a prefix of /112 or shorter"),
                ));
            }
            Some(net)
        };
    }
    Ok(s)
}

/// `[dns]` and `--dns`: on when the flag is given or the table is present (and not disabled).
fn dns_settings(
    d: RawDns,
    present: bool,
    flag: Option<SocketAddr>,
    base: &Path,
) -> Result<Option<DnsSettings>, ConfigError> {
    if flag.is_none() && !(present && d.enabled.unwrap_or(true)) {
        return Ok(None);
    }
    let upstreams = match (d.upstreams, d.resolv_conf) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid {
                field: "dns.upstreams".into(),
                message: "set either upstreams or resolv_conf, not both".into(),
            });
        }
        (Some(list), None) => UpstreamSource::Explicit(list),
        (None, Some(path)) => UpstreamSource::ResolvConf(base.join(path)),
        (None, None) => UpstreamSource::ResolvConf(DEFAULT_RESOLV_CONF.into()),
    };
    Ok(Some(DnsSettings {
        listen: flag
            .or(d.listen)
            .unwrap_or_else(|| parse_default(DEFAULT_DNS)),
        upstreams,
    }))
}

/// The capture settings and virtual-IP ranges of `file` (or the defaults), as `murmur capture
/// print` shows them: nothing else of the file is needed or checked.
pub fn capture_settings(
    file: Option<&Path>,
) -> Result<(CaptureSettings, VipSettings), ConfigError> {
    let raw = match file {
        Some(path) => parse_file(path)?,
        None => RawConfig::default(),
    };
    let vips = vip_settings(&raw.dns.unwrap_or_default())?;
    let capture = capture_of(raw.capture, true)?.unwrap_or_default();
    Ok((capture, vips))
}

/// `[capture]` and `--capture`.
fn capture_of(c: Option<RawCapture>, flag: bool) -> Result<Option<CaptureSettings>, ConfigError> {
    let enabled = flag || c.as_ref().is_some_and(|c| c.enabled.unwrap_or(true));
    if !enabled {
        return Ok(None);
    }
    let c = c.unwrap_or_default();
    let d = CaptureSettings::default();
    let table = c.table.unwrap_or(d.table);
    let ok = !table.is_empty()
        && table.len() <= 64
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(ConfigError::Invalid {
            field: "capture.table".into(),
            message: format!("{table:?} must be letters, digits, '_' or '-' (at most 64)"),
        });
    }
    if c.port == Some(0) {
        return Err(ConfigError::Invalid {
            field: "capture.port".into(),
            message: "must be a port number above 0".into(),
        });
    }
    Ok(Some(CaptureSettings {
        port: c.port.unwrap_or(d.port),
        mark: c.mark.unwrap_or(d.mark),
        exempt_uids: c.exempt_uids.unwrap_or_default(),
        table,
    }))
}

fn drain_settings(d: RawDrain, gossip_interval: Duration) -> DrainSettings {
    DrainSettings {
        timeout: d.timeout.map_or(Duration::from_secs(30), |t| t.0),
        quiet: d.quiet.map_or(Duration::from_secs(1), |t| t.0),
        // Enough rounds for the news to reach every peer of a mid-sized mesh.
        min_wait: d.min_wait.map_or(gossip_interval * 4, |t| t.0),
    }
}

fn check_config(service: &Name, h: RawHealth) -> Result<CheckConfig, ConfigError> {
    let field = |f: &str| format!("service {service}: health.{f}");
    let kind = match h.check {
        Some(k) => k,
        None if h.path.is_some() || h.expect.is_some() => RawCheckKind::Http,
        None => RawCheckKind::Tcp,
    };
    if matches!(kind, RawCheckKind::Tcp) && (h.path.is_some() || h.expect.is_some()) {
        return Err(ConfigError::Invalid {
            field: field("check"),
            message: "a tcp check has no path or expect: remove them or use check = \"http\""
                .into(),
        });
    }
    let probe = match kind {
        RawCheckKind::Tcp => Probe::Tcp,
        RawCheckKind::Http => {
            let path = h.path.unwrap_or_else(|| "/".into());
            if !path.starts_with('/') {
                return Err(ConfigError::Invalid {
                    field: field("path"),
                    message: format!("{path:?} must start with '/'"),
                });
            }
            let expect = parse_expect(h.expect.as_deref().unwrap_or("200-399")).map_err(|m| {
                ConfigError::Invalid {
                    field: field("expect"),
                    message: m,
                }
            })?;
            Probe::Http { path, expect }
        }
    };
    let interval = h.interval.map_or(Duration::from_secs(2), |d| d.0);
    let timeout = h
        .timeout
        .map_or(Duration::from_secs(1), |d| d.0)
        .min(interval);
    if interval < Duration::from_millis(100) {
        return Err(ConfigError::Invalid {
            field: field("interval"),
            message: "must be at least 100ms".into(),
        });
    }
    let defaults = Thresholds::default();
    Ok(CheckConfig {
        probe,
        interval,
        timeout,
        thresholds: Thresholds {
            healthy: h.healthy_threshold.unwrap_or(defaults.healthy).max(1),
            unhealthy: h.unhealthy_threshold.unwrap_or(defaults.unhealthy).max(1),
        },
    })
}

/// `[telemetry]` over the standard `OTEL_*` variables: the file wins, the environment fills in.
fn trace_settings(t: RawTelemetry, env: Env<'_>) -> Result<TraceSettings, ConfigError> {
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        field: field.into(),
        message,
    };
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let endpoint = t
        .endpoint
        .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .filter(|e| !e.is_empty() && !disabled);
    if let Some(e) = &endpoint
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        return Err(invalid(
            "telemetry.endpoint",
            format!("{e:?} must be a URL such as \"http://127.0.0.1:4317\""),
        ));
    }
    let protocol = match t.protocol {
        Some(RawOtlpProtocol::Grpc) => OtlpProtocol::Grpc,
        Some(RawOtlpProtocol::Http) => OtlpProtocol::Http,
        None => match env("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
            None | Some("grpc") => OtlpProtocol::Grpc,
            Some("http/protobuf" | "http") => OtlpProtocol::Http,
            Some(other) => {
                return Err(invalid(
                    "OTEL_EXPORTER_OTLP_PROTOCOL",
                    format!("{other:?} is not supported: use grpc or http/protobuf"),
                ));
            }
        },
    };
    let sampling_ratio = match t.sampling_ratio {
        Some(r) => r,
        None => match env("OTEL_TRACES_SAMPLER_ARG") {
            Some(v) => v.parse().map_err(|_| {
                invalid("OTEL_TRACES_SAMPLER_ARG", format!("{v:?} is not a number"))
            })?,
            None => 1.0,
        },
    };
    if !(0.0..=1.0).contains(&sampling_ratio) {
        return Err(invalid(
            "telemetry.sampling_ratio",
            format!("{sampling_ratio} is outside 0.0..=1.0"),
        ));
    }
    Ok(TraceSettings {
        endpoint,
        protocol,
        sampling_ratio,
        service_name: t
            .service_name
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| "murmur".into()),
        export_timeout: t.export_timeout.map_or(Duration::from_secs(5), |d| d.0),
    })
}

/// `[access_log]`: stderr unless a file is named (relative to the config file).
fn access_log_settings(a: RawAccessLog, base: &Path) -> Result<AccessLogSettings, ConfigError> {
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        field: field.into(),
        message,
    };
    let output = match a.output.as_deref() {
        None | Some("stderr") => Output::Stderr,
        Some("") => {
            return Err(invalid(
                "access_log.output",
                "give \"stderr\" or the path of a file".into(),
            ));
        }
        Some(path) => Output::File(base.join(path)),
    };
    let services = a.services.unwrap_or_default();
    if let Some(bad) = services
        .iter()
        .find(|s| *s != "*" && Name::parse("service", s).is_err())
    {
        return Err(invalid(
            "access_log.services",
            format!("{bad:?} is not a service name (or \"*\" for every service)"),
        ));
    }
    let queue = a.queue.unwrap_or(DEFAULT_QUEUE);
    if !(1..=1 << 20).contains(&queue) {
        return Err(invalid(
            "access_log.queue",
            format!("{queue} is outside 1..1048576"),
        ));
    }
    Ok(AccessLogSettings {
        output,
        services,
        queue,
    })
}

/// `[gateway]`: an HTTPS listener with at least one certificate (paths relative to the file).
fn gateway_settings(
    g: RawGateway,
    base: &Path,
    limits: crate::listener::ListenerLimits,
) -> Result<GatewaySettings, ConfigError> {
    let invalid = |field: &str, message: &str| ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    };
    let listen = g.listen.ok_or_else(|| {
        invalid(
            "gateway.listen",
            "the gateway needs an address to listen on, such as \"0.0.0.0:443\"",
        )
    })?;
    if g.certificates.is_empty() {
        return Err(invalid(
            "gateway.certificate",
            "the gateway needs at least one certificate: add a [[gateway.certificate]] table \
             with `cert` and `key` (PEM files)",
        ));
    }
    if g.certificates.len() > 256 {
        return Err(invalid("gateway.certificate", "at most 256 certificates"));
    }
    let per_ip = g.max_connections_per_ip.unwrap_or(256);
    if per_ip == 0 {
        return Err(invalid(
            "gateway.max_connections_per_ip",
            "must be at least 1",
        ));
    }
    let reload_interval = g.reload_interval.map_or(Duration::from_secs(5), |d| d.0);
    if reload_interval.is_zero() {
        return Err(invalid("gateway.reload_interval", "must be longer than 0s"));
    }
    Ok(GatewaySettings {
        listen,
        http_listen: g.http_listen,
        certificates: g
            .certificates
            .into_iter()
            .map(|c| CertFiles {
                cert: base.join(c.cert),
                key: base.join(c.key),
            })
            .collect(),
        reload_interval,
        max_connections_per_ip: per_ip,
        rate_per_ip: match g.rate_per_ip {
            Some(0) => return Err(invalid("gateway.rate_per_ip", "must be at least 1")),
            r => r,
        },
        limits,
    })
}

/// Where a node joining with a token keeps its credentials, inside its data directory.
pub const JOINED_DIR: &str = "identity";

/// Certificate, key and bundle: flags first, then the file (relative to it); a node joining
/// with a token that names no certificate and key gets `node.crt` and `node.key` in `joined`.
fn credential_paths(
    flags: &Overrides,
    t: RawTls,
    base: &Path,
    joined: Option<&Path>,
) -> Result<CredentialPaths, ConfigError> {
    let pick =
        |flag: &Option<PathBuf>, file: Option<PathBuf>, field, name, default: Option<PathBuf>| {
            flag.clone()
                .or(file.map(|p| base.join(p)))
                .or(default)
                .ok_or(ConfigError::Missing { field, flag: name })
        };
    Ok(CredentialPaths {
        cert: pick(
            &flags.cert,
            t.cert,
            "tls.cert",
            "cert",
            joined.map(|d| d.join("node.crt")),
        )?,
        key: pick(
            &flags.key,
            t.key,
            "tls.key",
            "key",
            joined.map(|d| d.join("node.key")),
        )?,
        bundle: pick(&flags.ca, t.ca, "tls.ca", "ca", None)?,
    })
}

/// `[identity]` and its flags.
fn identity_settings(
    flags: &Overrides,
    i: RawIdentity,
    base: &Path,
) -> Result<IdentitySettings, ConfigError> {
    let path =
        |flag: &Option<PathBuf>, file: Option<PathBuf>| flag.clone().or(file.map(|p| base.join(p)));
    let issuer = match (
        path(&flags.issuer_cert, i.issuer_cert),
        path(&flags.issuer_key, i.issuer_key),
    ) {
        (Some(cert), Some(key)) => Some(IssuerFiles { cert, key }),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(ConfigError::Invalid {
                field: "identity.issuer_cert".into(),
                message: "an issuer needs both `issuer_cert` and `issuer_key` (as `murmur ca \
                          issuer` wrote them)"
                    .into(),
            });
        }
    };
    let defaults = IdentitySettings::default();
    let leaf_ttl = i.leaf_ttl.map_or(defaults.leaf_ttl, |d| d.0);
    if leaf_ttl < MIN_LEAF_TTL {
        return Err(ConfigError::Invalid {
            field: "identity.leaf_ttl".into(),
            message: format!(
                "must be at least {} s (certificates are renewed at half their life)",
                MIN_LEAF_TTL.as_secs()
            ),
        });
    }
    Ok(IdentitySettings {
        issuer,
        leaf_ttl,
        renew: i.renew.unwrap_or(defaults.renew),
        join_token: path(&flags.join_token, i.join_token),
    })
}

/// Peers must be told an address they can reach.
fn check_reachable(listen: SocketAddr, advertise: Option<SocketAddr>) -> Result<(), ConfigError> {
    if listen.ip().is_unspecified() && advertise.is_none() {
        return Err(ConfigError::Invalid {
            field: "listen".into(),
            message: format!(
                "{listen} listens on every interface, so peers need to be told where to reach \
                 this node: set `advertise` (or --advertise) to its address"
            ),
        });
    }
    Ok(())
}

fn services(raw: Vec<RawService>) -> Result<Vec<LocalService>, ConfigError> {
    let mut seen = std::collections::BTreeSet::new();
    raw.into_iter()
        .map(|s| {
            if !seen.insert(s.name.clone()) {
                return Err(ConfigError::Invalid {
                    field: format!("service {}", s.name),
                    message: "is defined twice: each [[service]] needs a name of its own (merge \
                              them, or give the second another name)"
                        .into(),
                });
            }
            let health = s.health.map(|h| check_config(&s.name, h)).transpose()?;
            Ok(LocalService {
                health,
                ..LocalService::with_defaults(
                    s.name, s.address, s.labels, s.protocol, s.weight, s.balancer,
                )
            })
        })
        .collect()
}

/// A service whose address is one of this node's own listeners would send every request
/// back into the node: refused here (the hop limit catches loops through other nodes).
fn check_no_loop(services: &[LocalService], own: &[(&str, SocketAddr)]) -> Result<(), ConfigError> {
    for s in services {
        for (what, addr) in own {
            let same_port = s.address.port() == addr.port();
            if same_port && (s.address.ip() == addr.ip() || addr.ip().is_unspecified()) {
                return Err(ConfigError::Invalid {
                    field: format!("service {}: address", s.name),
                    message: format!(
                        "{} is this node's {what} listener: requests would loop back into the \
                         node; give the address of the app instead",
                        s.address
                    ),
                });
            }
        }
    }
    Ok(())
}

fn parse_default(s: &str) -> SocketAddr {
    // The defaults are literals above; a test checks that they parse.
    s.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
}

fn parse_file(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

fn trust_domain_of(bundle: &Path) -> Result<TrustDomain, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        field: "trust_domain".into(),
        message,
    };
    // The bundle is read here first (to learn the trust domain): a problem with the file is
    // a problem with `tls.ca`, whatever it was read for.
    let certs = read_certs_pem(bundle).map_err(|e| ConfigError::Invalid {
        field: "tls.ca".into(),
        message: format!("{e} (the trust bundle: set `tls.ca` or --ca)"),
    })?;
    let first = certs
        .first()
        .ok_or_else(|| invalid(format!("{} holds no certificate", bundle.display())))?;
    ca_trust_domain(first).map_err(|e| {
        invalid(format!(
            "not set, and {} does not name one ({e}): set `trust_domain`",
            bundle.display()
        ))
    })
}

fn check_seed(seed: &str) -> Result<(), ConfigError> {
    let ok = seed
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            field: "seeds".into(),
            message: format!("{seed:?} is not host:port (for example \"10.0.0.5:7420\")"),
        })
    }
}

/// The cell (`cell`, `--cell`) and the cell link's seeds (file, then flags) of mesh `mesh`.
fn cell_settings(
    name: Option<Name>,
    file_seeds: Option<Vec<String>>,
    flags: &Overrides,
    mesh: &str,
) -> Result<CellSettings, ConfigError> {
    let mut seeds = file_seeds.unwrap_or_default();
    seeds.extend(flags.cell_seeds.iter().cloned());
    for s in &seeds {
        check_seed(s).map_err(|_| ConfigError::Invalid {
            field: "cell_seeds".into(),
            message: format!("{s:?} is not host:port (for example \"10.1.0.5:7420\")"),
        })?;
    }
    Ok(CellSettings::new(name, seeds, mesh))
}

fn gossip_settings(g: RawGossip) -> Result<(GossipSettings, Duration), ConfigError> {
    let mut s = GossipSettings::default();
    if let Some(id) = g.cluster_id {
        s.cluster_id = id;
    }
    if let Some(d) = g.interval {
        if d.0 < Duration::from_millis(10) {
            return Err(ConfigError::Invalid {
                field: "gossip.interval".into(),
                message: "must be at least 10ms".into(),
            });
        }
        s.interval = d.0;
        s.initial_interval = d.0 * 2;
    }
    if let Some(phi) = g.phi_threshold {
        if !(1.0..=100.0).contains(&phi) {
            return Err(ConfigError::Invalid {
                field: "gossip.phi_threshold".into(),
                message: format!("{phi} is outside 1..100 (16 is the default)"),
            });
        }
        s.phi_threshold = phi;
    }
    if let Some(d) = g.max_interval {
        s.max_interval = d.0;
    }
    if let Some(d) = g.dead_node_grace {
        s.dead_node_grace = d.0;
    }
    if let Some(d) = g.tombstone_grace {
        s.tombstone_grace = d.0;
    }
    let warmup = g
        .fail_static_warmup
        .map_or(Duration::from_secs(15), |d| d.0);
    Ok((s, warmup))
}

fn policy_settings(p: RawPolicy) -> Result<PolicySettings, ConfigError> {
    let mut s = PolicySettings::default();
    let invalid = |field: &str, message: &str| ConfigError::Invalid {
        field: format!("policy.{field}"),
        message: message.to_owned(),
    };
    if let Some(d) = p.max_skew {
        if d.0 < Duration::from_secs(1) {
            return Err(invalid("max_skew", "must be at least 1s"));
        }
        s.max_skew = d.0;
    }
    if let Some(d) = p.tombstone_retention {
        if d.0 < Duration::from_secs(60) {
            return Err(invalid(
                "tombstone_retention",
                "must be at least 1m, and longer than any partition you expect to heal",
            ));
        }
        s.tombstone_retention = d.0;
    }
    if let Some(k) = p.custodians {
        if !(1..=16).contains(&k) {
            return Err(invalid("custodians", "must be between 1 and 16"));
        }
        s.custodians = k;
    }
    Ok(s)
}

#[cfg(test)]
mod tests;
