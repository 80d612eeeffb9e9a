use std::net::UdpSocket;
use std::time::Duration;

use quinn::Runtime;

use super::*;

#[test]
fn a_send_carries_whole_packets_up_to_the_limit() {
    assert_eq!(per_send(1200), 54 * 1200);
    assert_eq!(per_send(8972), 7 * 8972);
    assert_eq!(per_send(65_495), 65_495);
    assert!(per_send(1200) <= MAX_SEND);
}

/// Ten packets of a jumbo frame's payload in one batch, as quinn hands them over: 89 720
/// bytes, more than one send may carry (the kernel refuses the batch whole). Every packet must
/// arrive, whole and in order.
#[tokio::test]
async fn a_batch_larger_than_one_send_arrives_whole() {
    const SEGMENT: usize = 8972;
    const PACKETS: u8 = 10;
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    receiver
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let sender = bind("127.0.0.1:0".parse().expect("addr"), 1 << 20, false).expect("bind sender");
    let sender = Arc::new(Batches(
        quinn::TokioRuntime.wrap_udp_socket(sender).expect("wrap"),
    ));
    if sender.max_transmit_segments() < usize::from(PACKETS) {
        // No segmentation offload here: quinn never hands over such a batch.
        return;
    }
    // The runtime learns that the socket is writable before anything is sent, as in quinn.
    let mut poller = sender.clone().create_io_poller();
    std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx))
        .await
        .expect("writable");
    let contents: Vec<u8> = (0..PACKETS)
        .flat_map(|i| std::iter::repeat_n(i, SEGMENT))
        .collect();
    sender
        .try_send(&Transmit {
            destination: receiver.local_addr().expect("addr"),
            ecn: None,
            contents: &contents,
            segment_size: Some(SEGMENT),
            src_ip: None,
        })
        .expect("send");
    let mut buf = vec![0u8; 65_536];
    for i in 0..PACKETS {
        let n = receiver.recv(&mut buf).expect("a packet of the batch");
        assert_eq!(n, SEGMENT, "packet {i}");
        assert!(
            buf[..n].iter().all(|&b| b == i),
            "packet {i} out of order or mixed"
        );
    }
}
