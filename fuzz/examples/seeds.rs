//! Writes the seed inputs of every target into `seeds/<target>/`: valid encodings made by the
//! project's own encoders, the TOML examples of the documentation, and real certificates, so the
//! fuzzer starts from inputs that reach deep into each decoder. Run from `fuzz/`:
//! `cargo run --example seeds`. Signed seeds are signed by a throw-away CA of this run; the
//! targets sign with their own, so such seeds exercise decoding and refusal, not acceptance.

// A tool run by hand: any failure should stop it where it happened.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use bytes::BytesMut;
use futures_executor::block_on;
use murmur_fuzz::pki::pki;
use murmur_fuzz::policy::{chain, payload, signed};
use murmur_membership::policy::{Kind, parse_file};
use murmur_membership::records::{
    Balancer, Health, NodeRecord, NodeStatus, Protocol, RECORD_VERSION, ServiceRecord, encode,
    service_key,
};
use murmur_membership::view::{NodeSnapshot, build};
use murmur_transport::wire::{
    GossipFrame, StreamHeader, StreamKind, WIRE_VERSION, encode_gossip, write_header,
};

fn main() {
    let root = Path::new("seeds");
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
    };

    // wire_gossip: frames after the kind byte.
    for (i, (from, payload)) in [
        ("127.0.0.2:7420", vec![]),
        ("[::1]:7420", vec![1, 2, 3]),
        ("10.0.0.5:65535", vec![0xab; 300]),
    ]
    .into_iter()
    .enumerate()
    {
        let frame = GossipFrame {
            version: WIRE_VERSION,
            from: from.parse().unwrap(),
            payload,
        };
        put(
            "wire_gossip",
            &format!("frame-{i}"),
            &encode_gossip(&frame).unwrap()[1..],
        );
    }

    // wire_header: length-prefixed headers after the kind byte.
    let mut h = StreamHeader::new("web");
    put("wire_header", "plain", &header_bytes(&h));
    h.deadline_ms = Some(1500);
    h.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    h.attrs = vec![
        ("route".into(), "r1".into()),
        ("caller".into(), "api".into()),
    ];
    put("wire_header", "full", &header_bytes(&h));

    // gossip_prescan: chitchat V1 messages.
    let z = |data: &[u8]| {
        let c = zstd::bulk::compress(data, 0).unwrap();
        let mut v = vec![1];
        v.extend_from_slice(&u16::try_from(c.len()).unwrap().to_le_bytes());
        v.extend_from_slice(&c);
        v
    };
    let raw = |data: &[u8]| {
        let mut v = vec![2];
        v.extend_from_slice(&u16::try_from(data.len()).unwrap().to_le_bytes());
        v.extend_from_slice(data);
        v
    };
    let msg = |kind: u8, parts: &[Vec<u8>]| {
        let mut v = 45_139u16.to_le_bytes().to_vec();
        v.extend_from_slice(&[1, kind]);
        for p in parts {
            v.extend_from_slice(p);
        }
        v
    };
    let stream = |blocks: &[Vec<u8>]| {
        let mut v: Vec<u8> = blocks.concat();
        v.push(0);
        v
    };
    let mut cluster = 6u16.to_le_bytes().to_vec();
    cluster.extend_from_slice(b"murmur");
    let digest = stream(&[z(b"node-1\x00\x01\x02\x03 digest entries")]);
    let delta = stream(&[z(&[7u8; 1000]), raw(b"uncompressed delta")]);
    put(
        "gossip_prescan",
        "syn",
        &msg(0, &[digest.clone(), cluster.clone()]),
    );
    put(
        "gossip_prescan",
        "synack",
        &msg(1, &[digest.clone(), delta.clone()]),
    );
    put(
        "gossip_prescan",
        "ack",
        &msg(2, std::slice::from_ref(&delta)),
    );
    // gossip_message: the same shapes (refused by our decoder: their items are noise), and
    // well-formed messages of every kind.
    for (name, bytes) in [
        ("noise-syn", msg(0, &[digest, cluster.clone()])),
        ("noise-ack", msg(2, std::slice::from_ref(&delta))),
    ] {
        put("gossip_message", name, &bytes);
    }
    {
        use murmur_transport::gossip::message::{
            DigestEntry, Kind, Kv, Message, NodeDelta, encode,
        };
        let id = chitchat::ChitchatId::new("web-1", 7, "10.0.0.1:7420".parse().unwrap());
        let entry = DigestEntry {
            id: id.clone(),
            heartbeat: 123_456,
            last_gc: 0,
            max_version: 3,
        };
        let nd = NodeDelta {
            id,
            last_gc: 0,
            from_version: 0,
            kvs: vec![Kv {
                key: "node".into(),
                value: "1s.AQ.AA.x".into(),
                version: 1,
                status: 0,
            }],
            set_max_version: None,
        };
        for (name, kind) in [
            ("syn", Kind::Syn),
            ("synack", Kind::SynAck),
            ("ack", Kind::Ack),
        ] {
            let m = Message {
                kind,
                digest: if kind == Kind::Ack {
                    vec![]
                } else {
                    vec![entry.clone()]
                },
                cluster_id: if kind == Kind::Syn {
                    "murmur".into()
                } else {
                    String::new()
                },
                delta: if kind == Kind::Syn {
                    vec![]
                } else {
                    vec![nd.clone()]
                },
            };
            put("gossip_message", name, &encode(&m));
        }
    }
    put(
        "gossip_prescan",
        "bomb",
        &msg(2, &[stream(&[z(&[0u8; 60_000])])]),
    );

    // gossip_unpack: an honest SynAck packed against the receiver's Syn, the same naming a base
    // the receiver lacks, and one packed alone.
    {
        use murmur_fuzz::pack::{syn, syn_base};
        use murmur_transport::gossip::message::{Kind, decode, encode};
        use murmur_transport::gossip::pack::Packer;
        let (receiver, peer) = (Packer::default(), Packer::default());
        let sent = receiver.pack(1, &syn(20)).unwrap();
        peer.unpack(2, sent.base, &sent.bytes).unwrap();
        let mut answer = decode(&syn(20)).unwrap();
        answer.kind = Kind::SynAck;
        answer.cluster_id.clear();
        let reply = peer.pack(2, &encode(&answer)).unwrap();
        assert_eq!(reply.base, Some(syn_base()));
        put(
            "gossip_unpack",
            "synack",
            &[&[1u8][..], &reply.bytes].concat(),
        );
        let unknown = [&[2u8][..], &[0xab; 8], &reply.bytes].concat();
        put("gossip_unpack", "unknown-base", &unknown);
        let alone = Packer::default().pack(3, &encode(&answer)).unwrap();
        put(
            "gossip_unpack",
            "alone",
            &[&[0u8][..], &alone.bytes].concat(),
        );
    }

    // cert_der and cert_sans.
    let pki = pki();
    put("cert_der", "ca", &pki.ca_der);
    put("cert_der", "operator", &pki.operator.chain()[0]);
    put("cert_der", "node", &pki.node.chain()[0]);
    for (i, seed) in [
        &[0u8; 64][..],
        &[0x41; 128],
        &(0..=255).collect::<Vec<u8>>(),
    ]
    .into_iter()
    .enumerate()
    {
        put("cert_sans", &format!("bytes-{i}"), seed);
        put("policy_merge", &format!("bytes-{i}"), seed);
    }

    // identity.
    for (i, s) in [
        "spiffe://murmur.local/node/web-1",
        "spiffe://corp.example/operator/alice",
        "murmur.local",
        "web-1",
    ]
    .into_iter()
    .enumerate()
    {
        put("identity", &format!("id-{i}"), s.as_bytes());
    }

    // issuance_request: a join (a token of this run's operator and a request), a renewal, an
    // answer, and a bare request and token.
    {
        use murmur_transport::certs::make_request;
        use murmur_transport::identity::{Name, SpiffeId};
        use murmur_transport::issuance::protocol::{
            Answer, Refusal, RefusalCode, Request, encode_answer, encode_request,
        };
        use murmur_transport::issuance::token;
        let n = |s: &str| Name::parse("name", s).unwrap();
        let (token, _) = token::create(
            &pki.operator,
            n("n1"),
            vec![n("web")],
            std::time::Duration::from_secs(3600),
            pki.base_ms,
        )
        .unwrap();
        let id = SpiffeId::node(pki.test.trust_domain.clone(), n("n1"));
        let (_, csr) = make_request(&id, &[n("web")]).unwrap();
        let join = Request::Join {
            token: token.clone(),
            csr: csr.clone(),
        };
        put("issuance_request", "join", &encode_request(&join).unwrap());
        let renew = Request::Renew { csr: csr.clone() };
        put(
            "issuance_request",
            "renew",
            &encode_request(&renew).unwrap(),
        );
        let answer = Answer::Refused(Refusal::new(RefusalCode::TokenUsed, "used"));
        put(
            "issuance_request",
            "answer",
            &encode_answer(&answer).unwrap(),
        );
        put("issuance_request", "csr", &csr);
        put("issuance_request", "token", token.as_bytes());
    }

    // records: gossip values, and the postcard inside them (the target also base64s its input).
    let node = NodeRecord {
        version: RECORD_VERSION,
        name: "web-1".into(),
        mesh_addr: "127.0.0.2:7420".parse().unwrap(),
        admin_addr: Some("127.0.0.2:7422".parse().unwrap()),
        labels: [("zone".to_string(), "eu-1a".to_string())].into(),
        status: NodeStatus::Serving,
    };
    let service = ServiceRecord {
        version: RECORD_VERSION,
        protocol: Protocol::Grpc,
        labels: [("version".to_string(), "v2".to_string())].into(),
        weight: 3,
        health: Health::Passing,
        balancer: Balancer::LeastRequest,
    };
    let doc_payload = payload(
        Kind::Timeout,
        "web-timeout",
        Some(r#"{"name":"web-timeout","service":"web","request":"2s"}"#.into()),
    );
    let doc = signed(&doc_payload, chain(&pki.operator)).unwrap();
    for (name, value) in [
        ("node", encode(&node).unwrap()),
        ("service", encode(&service).unwrap()),
        ("document", doc.clone()),
    ] {
        put("records", &format!("{name}-value"), value.as_bytes());
        put(
            "records",
            &format!("{name}-postcard"),
            &STANDARD_NO_PAD.decode(&value).unwrap(),
        );
    }

    // persist_files: the files as the node writes them.
    let view = build(
        "web-1",
        &[NodeSnapshot {
            name: "web-2".into(),
            generation: 7,
            addr: node.mesh_addr,
            live: true,
            joining: false,
            kvs: vec![
                ("node".into(), encode(&node).unwrap()),
                (service_key("web", "web-2"), encode(&service).unwrap()),
            ],
        }],
    );
    let dir = tempfile_dir();
    let path = dir.join("view.json");
    murmur_membership::persist::save(&path, &view).unwrap();
    put("persist_files", "view", &fs::read(&path).unwrap());
    let path = dir.join("policy.json");
    murmur_membership::policy::persist::save(&path, 1, vec![doc.clone()]).unwrap();
    put("persist_files", "policy", &fs::read(&path).unwrap());
    fs::remove_dir_all(&dir).unwrap();

    // policy_file, policy_document, node_config: the documentation's TOML examples.
    let docs = fs::read_to_string("../docs/policy.md").unwrap();
    let readme = fs::read_to_string("../README.md").unwrap();
    for (i, block) in toml_blocks(&docs)
        .into_iter()
        .chain(toml_blocks(&readme))
        .enumerate()
    {
        put("node_config", &format!("example-{i}"), block.as_bytes());
        let Ok(bodies) = parse_file("docs", block) else {
            continue;
        };
        put("policy_file", &format!("example-{i}"), block.as_bytes());
        for (j, body) in bodies.iter().enumerate() {
            let kind = Kind::ALL.iter().position(|k| *k == body.kind()).unwrap();
            let mut input = vec![2, u8::try_from(kind).unwrap()];
            input.extend_from_slice(body.to_json().as_bytes());
            put("policy_document", &format!("body-{i}-{j}"), &input);
            let p = payload(body.kind(), body.name().as_str(), Some(body.to_json()));
            put(
                "policy_document",
                &format!("payload-{i}-{j}"),
                &[&[1][..], &p].concat(),
            );
        }
    }
    put(
        "policy_document",
        "value",
        &[&[0][..], doc.as_bytes()].concat(),
    );
    put(
        "policy_document",
        "chain",
        &[&[3][..], &pki.operator.chain()[0]].concat(),
    );

    // node_traceparent.
    for (i, s) in [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00 ",
    ]
    .into_iter()
    .enumerate()
    {
        put("node_traceparent", &format!("tp-{i}"), s.as_bytes());
    }

    // node_frame: payloads of HEAD, TRAILERS and REFUSED frames, after the selector byte.
    node_frames(&put);
    put("node_config", "duration", b"250ms");
}

fn header_bytes(h: &StreamHeader) -> Vec<u8> {
    let mut out = Vec::new();
    block_on(write_header(&mut out, StreamKind::Http, h)).unwrap();
    out[1..].to_vec()
}

fn toml_blocks(md: &str) -> Vec<&str> {
    md.split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect()
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("murmur-fuzz-seeds-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn node_frames(put: &dyn Fn(&str, &str, &[u8])) {
    murmur_fuzz::node::seed_frames(&mut |name: &str, which: u8, payload: &BytesMut| {
        put("node_frame", name, &[&[which][..], payload].concat());
    });
}
