//! Gossip values (`membership::records`): versioned postcard in base64, bounded before decoding.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::SocketAddr;

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use murmur_membership::policy::SignedDocument;
use murmur_membership::records::{
    Balancer, Health, MAX_VALUE_BYTES, NodeRecord, NodeStatus, Protocol, RECORD_VERSION,
    ServiceRecord, decode, encode,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::wire_addr;

/// The input as a gossip value, and its bytes as the postcard inside one, decoded as every
/// record type; then records built from the input go through `encode` and back.
pub fn records(data: &[u8]) {
    if let Some(value) = crate::text(data) {
        each_type(value);
    }
    let value = STANDARD_NO_PAD.encode(data);
    each_type(&value);

    let mut u = Unstructured::new(data);
    if let Ok(node) = node_record(&mut u) {
        round_trip(&node);
    }
    if let Ok(service) = service_record(&mut u) {
        round_trip(&service);
    }
}

fn each_type(value: &str) {
    decoded::<NodeRecord>(value);
    decoded::<ServiceRecord>(value);
    decoded::<SignedDocument>(value);
}

/// A decoded value re-encodes to a value no longer than the input (postcard's own encoding is
/// the shortest; the decoder also takes over-long varints and trailing bytes) that decodes to
/// the same record.
fn decoded<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &str) {
    let Ok(record) = decode::<T>(value) else {
        return;
    };
    assert!(value.len() <= MAX_VALUE_BYTES);
    let again = encode(&record).unwrap();
    assert!(again.len() <= value.len());
    assert_eq!(decode::<T>(&again).unwrap(), record);
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(record: &T) {
    match encode(record) {
        Ok(value) => assert_eq!(&decode::<T>(&value).unwrap(), record),
        Err(_) => {
            let bytes = postcard::to_stdvec(record).unwrap();
            assert!(STANDARD_NO_PAD.encode(bytes).len() > MAX_VALUE_BYTES);
        }
    }
}

fn node_record(u: &mut Unstructured<'_>) -> arbitrary::Result<NodeRecord> {
    Ok(NodeRecord {
        version: RECORD_VERSION,
        name: u.arbitrary()?,
        mesh_addr: wire_addr(u.arbitrary()?),
        admin_addr: Option::<SocketAddr>::arbitrary(u)?.map(wire_addr),
        labels: BTreeMap::arbitrary(u)?,
        status: *u.choose(&[NodeStatus::Serving, NodeStatus::Draining, NodeStatus::Left])?,
    })
}

fn service_record(u: &mut Unstructured<'_>) -> arbitrary::Result<ServiceRecord> {
    Ok(ServiceRecord {
        version: RECORD_VERSION,
        protocol: *u.choose(&[Protocol::Http, Protocol::Grpc, Protocol::Tcp])?,
        labels: BTreeMap::arbitrary(u)?,
        weight: u.arbitrary()?,
        health: *u.choose(&[Health::Passing, Health::Warning, Health::Critical])?,
        balancer: *u.choose(&[
            Balancer::P2cEwma,
            Balancer::RoundRobin,
            Balancer::LeastRequest,
        ])?,
    })
}
