use super::*;

fn flags() -> Overrides {
    Overrides {
        name: Some(Name::parse("node name", "a").unwrap()),
        trust_domain: Some(TrustDomain::default()),
        listen: Some("127.0.0.2:7420".parse().unwrap()),
        cert: Some("a.crt".into()),
        key: Some("a.key".into()),
        ca: Some("ca.crt".into()),
        ..Overrides::default()
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<RawConfig, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

#[test]
fn defaults_parse() {
    assert_ne!(parse_default(DEFAULT_ADMIN).port(), 0);
    assert_ne!(parse_default(DEFAULT_OUTBOUND).port(), 0);
}

#[test]
fn flags_alone_make_a_config_with_defaults() {
    let c = Config::from_parts(RawConfig::default(), flags(), Path::new(""), &no_env).unwrap();
    assert_eq!(c.admin.to_string(), DEFAULT_ADMIN);
    assert_eq!(c.data_dir, PathBuf::from("murmur-data/a"));
    assert_eq!(c.threads, 1);
}

#[test]
fn threads_outside_one_to_the_shard_limit_are_refused_by_name() {
    let with = |threads| Overrides {
        threads: Some(threads),
        ..flags()
    };
    let limit = murmur_transport::shard::MAX_SHARDS;
    for threads in [0, limit + 1] {
        let err = Config::from_parts(RawConfig::default(), with(threads), Path::new(""), &no_env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("threads") && err.contains("1 to 64"),
            "{threads}: {err}"
        );
    }
    let c = Config::from_parts(RawConfig::default(), with(limit), Path::new(""), &no_env).unwrap();
    assert_eq!(c.threads, limit);
}

#[test]
fn unknown_and_ill_typed_fields_name_the_line_and_field() {
    let err = parse("name = \"a\"\n\nlisen = \"1.2.3.4:5\"\n").unwrap_err();
    assert!(err.contains("line 3") && err.contains("lisen"), "{err}");
    let err = parse("name = \"a\"\n[gossip]\ninterval = 5\n").unwrap_err();
    assert!(err.contains("line 3") && err.contains("interval"), "{err}");
    let err = parse("name = \"Bad_Name\"\n").unwrap_err();
    assert!(err.contains("line 1") && err.contains("DNS label"), "{err}");
    let err =
        parse("[[service]]\nname = \"web\"\naddress = \"127.0.0.1:80\"\nprotocol = \"udp\"\n")
            .unwrap_err();
    assert!(err.contains("line 4") && err.contains("http"), "{err}");
}

#[test]
fn flags_override_the_file_and_paths_are_relative_to_it() {
    let raw = parse(
        "name = \"b\"\nseeds = [\"10.0.0.1:7420\"]\n[tls]\ncert = \"b.crt\"\nkey = \"b.key\"\nca = \"ca.crt\"\n",
    )
    .unwrap();
    let mut f = flags();
    f.cert = None;
    f.seeds = vec!["10.0.0.2:7420".into()];
    let c = Config::from_parts(raw, f, Path::new("/etc/murmur"), &no_env).unwrap();
    assert_eq!(c.name.as_str(), "a");
    assert_eq!(c.tls.cert, PathBuf::from("/etc/murmur/b.crt"));
    assert_eq!(c.seeds, ["10.0.0.1:7420", "10.0.0.2:7420"]);
}

#[test]
fn unreachable_listen_and_bad_seeds_are_refused_with_a_fix() {
    let mut f = flags();
    f.listen = Some("0.0.0.0:7420".parse().unwrap());
    let err = Config::from_parts(RawConfig::default(), f, Path::new(""), &no_env).unwrap_err();
    assert!(err.to_string().contains("advertise"), "{err}");

    let mut f = flags();
    f.seeds = vec!["nohost".into()];
    let err = Config::from_parts(RawConfig::default(), f, Path::new(""), &no_env).unwrap_err();
    assert!(err.to_string().contains("host:port"), "{err}");

    let mut f = flags();
    f.name = None;
    let err = Config::from_parts(RawConfig::default(), f, Path::new(""), &no_env).unwrap_err();
    assert!(err.to_string().contains("--name"), "{err}");
}

#[test]
fn telemetry_comes_from_the_file_then_the_standard_environment() {
    let env = |k: &str| match k {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://collector:4318".to_owned()),
        "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("http/protobuf".to_owned()),
        "OTEL_TRACES_SAMPLER_ARG" => Some("0.25".to_owned()),
        _ => None,
    };
    let c = Config::from_parts(RawConfig::default(), flags(), Path::new(""), &env).unwrap();
    assert_eq!(c.traces.endpoint.as_deref(), Some("http://collector:4318"));
    assert_eq!(c.traces.protocol, OtlpProtocol::Http);
    assert!((c.traces.sampling_ratio - 0.25).abs() < 1e-9);

    let raw =
        parse("[telemetry]\nendpoint = \"http://127.0.0.1:4317\"\nprotocol = \"grpc\"\n").unwrap();
    let c = Config::from_parts(raw, flags(), Path::new(""), &env).unwrap();
    assert_eq!(c.traces.endpoint.as_deref(), Some("http://127.0.0.1:4317"));
    assert_eq!(c.traces.protocol, OtlpProtocol::Grpc);

    let c = Config::from_parts(RawConfig::default(), flags(), Path::new(""), &no_env).unwrap();
    assert_eq!(c.traces.endpoint, None);
    let raw = parse("[telemetry]\nsampling_ratio = 2.0\n").unwrap();
    assert!(Config::from_parts(raw, flags(), Path::new(""), &no_env).is_err());
}

#[test]
fn the_access_log_goes_to_stderr_or_a_file_beside_the_config() {
    let c = Config::from_parts(RawConfig::default(), flags(), Path::new(""), &no_env).unwrap();
    assert_eq!(c.access_log.output, Output::Stderr);
    assert!(c.access_log.services.is_empty());
    let raw =
        parse("[access_log]\noutput = \"logs/access.log\"\nservices = [\"web\", \"*\"]\n").unwrap();
    let c = Config::from_parts(raw, flags(), Path::new("/etc/murmur"), &no_env).unwrap();
    assert_eq!(
        c.access_log.output,
        Output::File(PathBuf::from("/etc/murmur/logs/access.log"))
    );
    assert_eq!(c.access_log.services, ["web", "*"]);
    // (file, the error names)
    let bad = [
        (
            "[access_log]\nservices = [\"Web!\"]\n",
            "access_log.services",
        ),
        ("[access_log]\nqueue = 0\n", "access_log.queue"),
        ("[access_log]\noutput = \"\"\n", "access_log.output"),
    ];
    for (text, field) in bad {
        let err = Config::from_parts(parse(text).unwrap(), flags(), Path::new(""), &no_env)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(field), "{text}: {err}");
    }
    assert!(
        parse("[access_log]\npath = \"x\"\n")
            .unwrap_err()
            .contains("unknown field")
    );
}

#[test]
fn health_checks_parse_with_defaults_and_refuse_bad_values() {
    let raw = parse(
        "[[service]]\nname = \"web\"\naddress = \"127.0.0.1:80\"\n[service.health]\npath = \"/healthz\"\nexpect = \"200-204\"\n",
    )
    .unwrap();
    let c = Config::from_parts(raw, flags(), Path::new(""), &no_env).unwrap();
    let h = c.services[0].health.clone().unwrap();
    assert_eq!(
        h.probe,
        Probe::Http {
            path: "/healthz".into(),
            expect: 200..=204
        }
    );
    assert_eq!(h.interval, Duration::from_secs(2));
    let raw = parse(
        "[[service]]\nname = \"web\"\naddress = \"127.0.0.1:80\"\n[service.health]\nexpect = \"ok\"\n",
    )
    .unwrap();
    let err = Config::from_parts(raw, flags(), Path::new(""), &no_env).unwrap_err();
    assert!(
        err.to_string().contains("service web: health.expect"),
        "{err}"
    );
}

#[test]
fn the_complete_example_in_the_readme_is_valid() {
    let readme = include_str!("../../../../README.md");
    let start = readme.find("A complete file:").expect("README example");
    let block = &readme[start..];
    let body = block
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("toml block");
    let raw = parse(body).unwrap_or_else(|e| panic!("README example: {e}"));
    let c = Config::from_parts(raw, Overrides::default(), Path::new(""), &no_env).unwrap();
    assert_eq!(c.name.as_str(), "web-1");
    assert!(c.services[0].health.is_some());
    assert_eq!(c.drain.timeout, Duration::from_secs(30));
    assert_eq!(c.traces.endpoint.as_deref(), Some("http://127.0.0.1:4317"));
    assert_eq!(c.outbound.to_string(), DEFAULT_OUTBOUND);
    assert_eq!(c.external, External::Allow);
    assert_eq!(
        c.dns.map(|d| d.listen.to_string()).as_deref(),
        Some(DEFAULT_DNS)
    );
    assert_eq!(c.vips, VipSettings::default());
    assert_eq!(c.capture, Some(CaptureSettings::default()));
    let g = c.gateway.expect("the example has a gateway");
    assert_eq!(g.listen.port(), 443);
    assert_eq!(g.certificates.len(), 1);
    assert_eq!(g.rate_per_ip, Some(100));
}

fn config(text: &str) -> Result<Config, String> {
    let raw = parse(text)?;
    Config::from_parts(raw, flags(), Path::new("/etc/murmur"), &no_env).map_err(|e| e.to_string())
}

#[test]
fn outbound_is_an_address_or_a_table_with_the_external_setting() {
    let c = config("outbound = \"127.0.0.9:7000\"\n").unwrap();
    assert_eq!(c.outbound.to_string(), "127.0.0.9:7000");
    assert_eq!(c.external, External::Allow);
    let c = config("[outbound]\nlisten = \"127.0.0.9:7001\"\nexternal = \"deny\"\n").unwrap();
    assert_eq!(
        (c.outbound.to_string().as_str(), c.external),
        ("127.0.0.9:7001", External::Deny)
    );
    let c = config("[outbound]\nexternal = \"deny\"\n").unwrap();
    assert_eq!(c.outbound.to_string(), DEFAULT_OUTBOUND);
    for (text, want) in [
        ("outbound = \"nowhere\"\n", "not an address"),
        ("[outbound]\nexternal = \"maybe\"\n", "allow"),
        ("[outbound]\nlisen = \"1.2.3.4:5\"\n", "lisen"),
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.contains("line") && err.contains(want), "{text}: {err}");
    }
    let mut f = flags();
    f.external = Some(External::Deny);
    let c = Config::from_parts(RawConfig::default(), f, Path::new(""), &no_env).unwrap();
    assert_eq!(c.external, External::Deny);
}

#[test]
fn dns_is_off_unless_asked_and_takes_its_upstreams_from_resolv_conf_by_default() {
    let c = config("").unwrap();
    assert!(c.dns.is_none() && c.capture.is_none());
    assert_eq!(c.names, MeshNames::default());
    let c = config("[dns]\n").unwrap();
    let d = c.dns.unwrap();
    assert_eq!(d.listen.to_string(), DEFAULT_DNS);
    assert_eq!(
        d.upstreams,
        UpstreamSource::ResolvConf(DEFAULT_RESOLV_CONF.into())
    );
    let c = config(
        "[dns]\nlisten = \"127.0.0.53:5353\"\nsuffix = \"Mesh.Internal\"\nbare_names = true\n\
         resolv_conf = \"host-resolv.conf\"\nvip_range = \"10.77.0.0/16\"\nvip_range6 = \"\"\n",
    )
    .unwrap();
    let d = c.dns.unwrap();
    assert_eq!(
        d.upstreams,
        UpstreamSource::ResolvConf("/etc/murmur/host-resolv.conf".into())
    );
    assert_eq!((c.names.suffix(), c.names.bare), ("mesh.internal", true));
    assert_eq!(c.vips.v4.to_string(), "10.77.0.0/16");
    assert!(c.vips.v6.is_none());
    assert!(config("[dns]\nenabled = false\n").unwrap().dns.is_none());
    let mut f = flags();
    f.dns = Some("127.0.0.77:53".parse().unwrap());
    let c = Config::from_parts(RawConfig::default(), f, Path::new(""), &no_env).unwrap();
    assert_eq!(c.dns.unwrap().listen.to_string(), "127.0.0.77:53");
    for (text, field) in [
        ("[dns]\nsuffix = \"a..b\"\n", "dns.suffix"),
        ("[dns]\nvip_range = \"10.0.0.0/28\"\n", "dns.vip_range"),
        ("[dns]\nvip_range = \"10.0.0.1/16\"\n", "dns.vip_range"),
        ("[dns]\nvip_range = \"fd00::/64\"\n", "dns.vip_range"),
        ("[dns]\nvip_range6 = \"10.0.0.0/8\"\n", "dns.vip_range6"),
        (
            "[dns]\nupstreams = [\"10.0.0.2:53\"]\nresolv_conf = \"x\"\n",
            "dns.upstreams",
        ),
    ] {
        let err = config(text).unwrap_err();
        assert!(err.starts_with(field), "{text}: {err}");
    }
}

#[test]
fn capture_from_the_table_or_the_flag() {
    let c = config("[capture]\nport = 15006\nmark = 0x77\nexempt_uids = [990]\n").unwrap();
    let cap = c.capture.unwrap();
    assert_eq!(
        (cap.port, cap.mark, cap.exempt_uids, cap.table.as_str()),
        (15006, 0x77, vec![990], "murmur")
    );
    assert!(
        config("[capture]\nenabled = false\n")
            .unwrap()
            .capture
            .is_none()
    );
    let mut f = flags();
    f.capture = true;
    let c = Config::from_parts(RawConfig::default(), f, Path::new(""), &no_env).unwrap();
    assert_eq!(c.capture, Some(CaptureSettings::default()));
    let err = config("[capture]\ntable = \"my table\"\n").unwrap_err();
    assert!(err.starts_with("capture.table"), "{err}");
    // `murmur capture print` reads only these tables of a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(
        &file,
        "[dns]\nvip_range = \"10.1.0.0/16\"\n[capture]\nport = 9\n",
    )
    .unwrap();
    let (cap, vips) = capture_settings(Some(&file)).unwrap();
    assert_eq!((cap.port, vips.v4.to_string().as_str()), (9, "10.1.0.0/16"));
}

#[test]
fn limits_default_and_are_validated_by_field() {
    let c = Config::from_parts(RawConfig::default(), flags(), Path::new(""), &no_env).unwrap();
    assert_eq!(c.listeners, crate::listener::ListenerSettings::default());
    assert_eq!(c.quic.stream_wait, Duration::from_secs(1));
    let raw = parse(
        "[limits]\nstream_wait = \"250ms\"\nstreams_per_peer = 64\n\
         max_udp_payload = 1452\nudp_buffer = 1048576\n\
         [limits.upstream]\nmax_connections = 10\nidle_timeout = \"5m\"\n",
    )
    .unwrap();
    let c = Config::from_parts(raw, flags(), Path::new(""), &no_env).unwrap();
    assert_eq!(c.quic.stream_wait, Duration::from_millis(250));
    assert_eq!(c.quic.max_bidi_streams, 64);
    assert_eq!((c.quic.max_udp_payload, c.quic.udp_buffer), (1452, 1 << 20));
    assert_eq!(c.listeners.upstream.max_connections, 10);
    assert_eq!(c.listeners.upstream.idle_timeout, Duration::from_secs(300));
    assert_eq!(c.listeners.admin, crate::listener::ListenerLimits::ADMIN);
    for (text, field) in [
        (
            "[limits.admin]\nmax_connections = 0\n",
            "limits.admin.max_connections",
        ),
        (
            "[limits.outbound]\nidle_timeout = \"0s\"\n",
            "limits.outbound.idle_timeout",
        ),
        (
            "[limits]\nstreams_per_peer = 0\n",
            "limits.streams_per_peer",
        ),
        (
            "[limits]\nmax_udp_payload = 1199\n",
            "limits.max_udp_payload",
        ),
        (
            "[limits]\nmax_udp_payload = 65528\n",
            "limits.max_udp_payload",
        ),
        ("[limits]\nudp_buffer = 1000\n", "limits.udp_buffer"),
    ] {
        let err = Config::from_parts(parse(text).unwrap(), flags(), Path::new(""), &no_env)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(field), "{err}");
    }
}

#[test]
fn a_service_twice_or_at_the_node_s_own_listener_is_refused_by_name() {
    let cases = [
        (
            "[[service]]\nname = \"web\"\naddress = \"127.0.0.1:8080\"\n\
             [[service]]\nname = \"web\"\naddress = \"127.0.0.1:8081\"\n",
            "service web: is defined twice",
        ),
        (
            "[[service]]\nname = \"web\"\naddress = \"127.0.0.1:7421\"\n",
            "service web: address: 127.0.0.1:7421 is this node's outbound listener",
        ),
        (
            "outbound = \"0.0.0.0:9000\"\n[[service]]\nname = \"web\"\naddress = \"10.1.2.3:9000\"\n",
            "is this node's outbound listener",
        ),
        (
            "[[service]]\nname = \"web\"\naddress = \"127.0.0.1:7422\"\n",
            "is this node's admin listener",
        ),
    ];
    for (text, expected) in cases {
        let err = Config::from_parts(parse(text).unwrap(), flags(), Path::new(""), &no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn a_missing_trust_bundle_is_reported_as_tls_ca() {
    // Without a trust domain set, the bundle is read first to learn it: its absence is still a
    // problem of `tls.ca`.
    let mut f = flags();
    f.trust_domain = None;
    f.ca = Some("/nonexistent/ca.crt".into());
    let err = Config::from_parts(RawConfig::default(), f, Path::new(""), &no_env)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("tls.ca: "), "{err}");
}

#[test]
fn a_node_joining_with_a_token_keeps_its_credentials_in_its_data_dir() {
    let mut f = flags();
    f.cert = None;
    f.key = None;
    f.join_token = Some("web-1.token".into());
    let c = Config::from_parts(RawConfig::default(), f, Path::new(""), &no_env).unwrap();
    assert_eq!(c.tls.cert, PathBuf::from("murmur-data/a/identity/node.crt"));
    assert_eq!(c.tls.key, PathBuf::from("murmur-data/a/identity/node.key"));
    assert_eq!(
        c.identity.join_token.as_deref(),
        Some(Path::new("web-1.token"))
    );
    assert!(c.identity.renew && c.identity.issuer.is_none());
    // Without a token, the certificate must be named.
    let mut f = flags();
    f.cert = None;
    let e = Config::from_parts(RawConfig::default(), f, Path::new(""), &no_env).unwrap_err();
    assert!(e.to_string().contains("tls.cert"), "{e}");
}

#[test]
fn identity_settings_are_checked() {
    let raw =
        parse("[identity]\nissuer_cert = \"i.crt\"\nleaf_ttl = \"10m\"\nrenew = false\n").unwrap();
    let e = Config::from_parts(raw, flags(), Path::new("/etc/m"), &no_env).unwrap_err();
    assert!(e.to_string().contains("issuer_key"), "{e}");
    let raw = parse("[identity]\nissuer_cert = \"i.crt\"\nissuer_key = \"i.key\"\nleaf_ttl = \"10m\"\nrenew = false\n").unwrap();
    let c = Config::from_parts(raw, flags(), Path::new("/etc/m"), &no_env).unwrap();
    let issuer = c.identity.issuer.unwrap();
    assert_eq!(issuer.cert, PathBuf::from("/etc/m/i.crt"));
    assert_eq!(c.identity.leaf_ttl, Duration::from_secs(600));
    assert!(!c.identity.renew);
    let raw = parse("[identity]\nleaf_ttl = \"30s\"\n").unwrap();
    let e = Config::from_parts(raw, flags(), Path::new(""), &no_env).unwrap_err();
    assert!(e.to_string().contains("identity.leaf_ttl"), "{e}");
}

#[test]
fn the_gateway_needs_an_address_and_a_certificate_and_takes_paths_beside_the_file() {
    assert!(config("").unwrap().gateway.is_none());
    let c = config(
        "[gateway]\nlisten = \"0.0.0.0:8443\"\nhttp_listen = \"0.0.0.0:8080\"\n\
         [[gateway.certificate]]\ncert = \"shop.crt\"\nkey = \"/keys/shop.key\"\n\
         [limits.gateway]\nmax_connections = 100\n",
    )
    .unwrap();
    let g = c.gateway.unwrap();
    assert_eq!(g.listen.to_string(), "0.0.0.0:8443");
    assert_eq!(g.http_listen.map(|a| a.port()), Some(8080));
    assert_eq!(
        g.certificates[0].cert,
        PathBuf::from("/etc/murmur/shop.crt")
    );
    assert_eq!(g.certificates[0].key, PathBuf::from("/keys/shop.key"));
    assert_eq!(g.max_connections_per_ip, 256);
    assert_eq!(g.rate_per_ip, None);
    assert_eq!(g.reload_interval, Duration::from_secs(5));
    assert_eq!(g.limits.max_connections, 100);
    assert_eq!(g.limits.first_byte_timeout, Duration::from_secs(10));
    let cert = "[[gateway.certificate]]\ncert = \"a.crt\"\nkey = \"a.key\"\n";
    for (text, field) in [
        (format!("[gateway]\n{cert}"), "gateway.listen"),
        (
            "[gateway]\nlisten = \"0.0.0.0:443\"\n".to_owned(),
            "gateway.certificate",
        ),
        (
            format!("[gateway]\nlisten = \"0.0.0.0:443\"\nmax_connections_per_ip = 0\n{cert}"),
            "gateway.max_connections_per_ip",
        ),
    ] {
        let err = config(&text).unwrap_err();
        assert!(err.starts_with(field), "{text}: {err}");
    }
    let looped = format!(
        "[gateway]\nlisten = \"127.0.0.1:8443\"\n{cert}\n[[service]]\nname = \"web\"\n\
         address = \"127.0.0.1:8443\"\n"
    );
    let err = config(&looped).unwrap_err();
    assert!(err.contains("gateway listener"), "{err}");
}

#[test]
fn the_default_cell_keeps_the_cluster_id_and_a_named_cell_gets_its_own() {
    let c = Config::from_parts(RawConfig::default(), flags(), Path::new(""), &no_env).unwrap();
    assert_eq!(c.gossip.cluster_id, "murmur");
    assert_eq!(
        c.cell,
        crate::cells::CellSettings::new(None, Vec::new(), "murmur")
    );
    assert!(!c.cell.linked);

    let raw = parse(
        "cell = \"eu-1\"\ncell_seeds = [\"10.1.0.5:7420\"]\n[gossip]\ncluster_id = \"prod\"\n",
    )
    .unwrap();
    let mut f = flags();
    f.cell_seeds = vec!["10.2.0.5:7420".into()];
    let c = Config::from_parts(raw, f, Path::new(""), &no_env).unwrap();
    assert_eq!(c.gossip.cluster_id, "prod/eu-1");
    assert_eq!(c.cell.name, "eu-1");
    assert!(c.cell.linked);
    assert_eq!(c.cell.seeds, ["10.1.0.5:7420", "10.2.0.5:7420"]);
    assert_eq!(c.cell.top_cluster_id, "prod-top");

    // The flag wins over the file.
    let raw = parse("cell = \"eu-1\"\n").unwrap();
    let mut f = flags();
    f.cell = Some(Name::parse("cell", "us-2").unwrap());
    let c = Config::from_parts(raw, f, Path::new(""), &no_env).unwrap();
    assert_eq!(c.gossip.cluster_id, "murmur/us-2");
}

#[test]
fn a_bad_cell_name_or_cell_seed_is_refused_naming_the_field() {
    let err = parse("cell = \"EU_1\"\n").unwrap_err();
    assert!(err.contains("line 1") && err.contains("DNS label"), "{err}");
    let err = parse("cell = \"\"\n").unwrap_err();
    assert!(err.contains("line 1"), "{err}");
    let raw = parse("cell_seeds = [\"10.1.0.5\"]\n").unwrap();
    let err = Config::from_parts(raw, flags(), Path::new(""), &no_env)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cell_seeds:") && err.contains("10.1.0.5"),
        "{err}"
    );
}
