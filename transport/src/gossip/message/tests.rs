use super::*;
use crate::gossip::codec::{Decoder, Encoder};
use crate::gossip::prescan;

fn id(name: &str, generation: u64, port: u16) -> ChitchatId {
    ChitchatId::new(name, generation, ([10, 0, 0, 1], port).into())
}

fn sample(kind: Kind) -> Message {
    let digest: Vec<DigestEntry> = (0..300)
        .map(|i| DigestEntry {
            id: id(&format!("node-{i}"), 7, 7000 + i),
            heartbeat: 1000 + u64::from(i),
            last_gc: 0,
            max_version: u64::from(i % 9),
        })
        .collect();
    let delta = (0..40)
        .map(|i| NodeDelta {
            id: id(&format!("node-{i}"), 7, 7000 + i),
            last_gc: 0,
            from_version: 1,
            kvs: (2..6)
                .map(|v| Kv {
                    key: format!("svc/s{v}/node-{i}"),
                    value: "x".repeat(300 + v as usize),
                    version: v,
                    status: STATUS_SET,
                })
                .collect(),
            set_max_version: None,
        })
        .chain(std::iter::once(NodeDelta {
            id: id("empty", 1, 1),
            last_gc: 0,
            from_version: 0,
            kvs: Vec::new(),
            set_max_version: Some(4),
        }))
        .collect();
    let mut digest: Vec<DigestEntry> = digest;
    // chitchat keeps a digest in a map: it encodes it in id order.
    digest.sort_by(|a, b| a.id.cmp(&b.id));
    let mut m = Message {
        kind,
        digest,
        cluster_id: "murmur".into(),
        delta,
    };
    match kind {
        Kind::Syn => m.delta.clear(),
        Kind::Ack => m.digest.clear(),
        Kind::SynAck => {}
    }
    if kind != Kind::Syn {
        m.cluster_id.clear();
    }
    m
}

/// Our encoding decodes in chitchat, and chitchat's encoding of the result decodes back to the
/// same message with ours: both sides speak the same format.
#[tokio::test]
async fn round_trips_through_chitchat() {
    let mut decoder = Decoder::new().await.unwrap();
    let mut encoder = Encoder::new().await.unwrap();
    for kind in [Kind::Syn, Kind::SynAck, Kind::Ack] {
        let msg = sample(kind);
        let ours = encode(&msg);
        assert_eq!(prescan(&ours), Ok(()), "{kind:?}");
        assert!(decode(&ours).unwrap() == msg, "{kind:?}: ours");
        let envelope = decoder
            .decode(&ours)
            .await
            .unwrap()
            .expect("chitchat refused it");
        let theirs = encoder.encode(envelope).await.unwrap();
        assert!(decode(&theirs).unwrap() == msg, "{kind:?}: theirs");
    }
}

fn ack_with(ops: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_le_bytes().to_vec();
    out.extend([V1, 2]);
    put_stream(&mut out, ops, Blocks::Zstd);
    out
}

fn node_op(out: &mut Vec<u8>, name: &str) {
    out.push(0);
    put_id(out, &id(name, 1, 1));
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
}

fn kv_op(out: &mut Vec<u8>, version: u64) {
    out.push(1);
    put_str(out, "k");
    put_str(out, "v");
    out.extend_from_slice(&version.to_le_bytes());
    out.push(STATUS_SET);
}

fn max_op(out: &mut Vec<u8>, version: u64) {
    out.push(2);
    out.extend_from_slice(&version.to_le_bytes());
}

/// The op sequences chitchat's decoder accepts but its state machine asserts on, and the ones
/// it refuses, are refused here.
#[test]
fn refuses_op_sequences_chitchat_would_crash_or_fail_on() {
    let mut crash = Vec::new();
    node_op(&mut crash, "x");
    kv_op(&mut crash, 100);
    max_op(&mut crash, 50);
    assert_eq!(
        decode(&ack_with(&crash)),
        Err(MessageError::Delta("set-max-version mixed with other ops"))
    );

    let mut kv_first = Vec::new();
    kv_op(&mut kv_first, 1);
    assert!(matches!(
        decode(&ack_with(&kv_first)),
        Err(MessageError::Delta(_))
    ));

    let mut twice = Vec::new();
    node_op(&mut twice, "x");
    node_op(&mut twice, "x");
    assert!(matches!(
        decode(&ack_with(&twice)),
        Err(MessageError::Delta(_))
    ));

    let mut backwards = Vec::new();
    node_op(&mut backwards, "x");
    kv_op(&mut backwards, 5);
    kv_op(&mut backwards, 5);
    assert!(matches!(
        decode(&ack_with(&backwards)),
        Err(MessageError::Delta(_))
    ));

    let mut alone = Vec::new();
    node_op(&mut alone, "x");
    max_op(&mut alone, 9);
    let msg = decode(&ack_with(&alone)).unwrap();
    assert_eq!(msg.delta[0].set_max_version, Some(9));
    assert_eq!(msg.delta[0].max_version(), 9);
}

proptest::proptest! {
    #[test]
    fn never_panics_on_a_valid_stream_of_garbage(ops in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = decode(&ack_with(&ops));
    }
}

/// The raw encoding (what packed gossip compresses) is a message chitchat reads as it is.
#[tokio::test]
async fn raw_encoding_reads_in_chitchat() {
    let mut decoder = Decoder::new().await.unwrap();
    for kind in [Kind::Syn, Kind::SynAck, Kind::Ack] {
        let mut msg = sample(kind);
        // Raw, the whole sample would not fit the datagram that reaches chitchat's decoder.
        msg.delta.truncate(8);
        let raw = encode_raw(&msg);
        assert!(
            raw.len() > encode(&msg).len(),
            "{kind:?}: raw is not compressed"
        );
        assert_eq!(prescan(&raw), Ok(()), "{kind:?}");
        assert!(decode(&raw).unwrap() == msg, "{kind:?}: ours");
        let envelope = decoder.decode(&raw).await.unwrap();
        assert!(envelope.is_some(), "{kind:?}: chitchat refused it");
    }
}
