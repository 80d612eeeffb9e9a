use std::io::IoSliceMut;
use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};

use super::*;

const SIZE: usize = 100;

fn socket() -> Arc<MeshSocket> {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    Arc::new(MeshSocket::new(s).expect("register"))
}

fn send(from: &MeshSocket, to: SocketAddr, tag: u8) {
    let contents = [tag; SIZE];
    let transmit = Transmit {
        destination: to,
        ecn: None,
        contents: &contents,
        segment_size: None,
        src_ip: None,
    };
    from.try_send(&transmit).expect("send");
}

/// Receives until `want` bytes came or 10 s passed; returns the bytes.
async fn receive(socket: &MeshSocket, want: usize) -> Vec<u8> {
    let mut storage = vec![0u8; BATCH_SIZE * 2048];
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < want {
        let mut bufs: Vec<IoSliceMut<'_>> = storage.chunks_mut(2048).map(IoSliceMut::new).collect();
        let mut meta = vec![RecvMeta::default(); bufs.len()];
        let polled = std::future::poll_fn(|cx| socket.poll_recv(cx, &mut bufs, &mut meta));
        let n = match tokio::time::timeout_at(deadline, polled).await {
            Ok(r) => r.expect("recv"),
            Err(_) => panic!("{} of {want} bytes after 10 s", got.len()),
        };
        for (buf, m) in bufs.iter().zip(&meta).take(n) {
            got.extend_from_slice(&buf[..m.len]);
        }
    }
    got
}

/// More datagrams than one receive takes, queued before the first read: the reads that fill
/// every slot keep the socket ready, so the rest arrive without another datagram to wake them.
#[tokio::test]
async fn a_queue_longer_than_one_receive_is_read_to_the_end() {
    let (a, b) = (socket(), socket());
    let to = b.local_addr().expect("addr");
    let count = 3 * BATCH_SIZE + 5;
    for i in 0..count {
        send(&a, to, u8::try_from(i % 251).expect("small"));
    }
    let got = receive(&b, count * SIZE).await;
    assert_eq!(got.len(), count * SIZE);
    let tags: Vec<u8> = got.chunks(SIZE).map(|c| c[0]).collect();
    let sent: Vec<u8> = (0..count)
        .map(|i| u8::try_from(i % 251).expect("small"))
        .collect();
    assert_eq!(tags, sent);
}

/// A receive that emptied the queue clears readiness; a datagram sent afterwards is a new
/// edge and is received, again and again.
#[tokio::test]
async fn each_datagram_after_an_emptied_queue_wakes_the_reader() {
    let (a, b) = (socket(), socket());
    let to = b.local_addr().expect("addr");
    for tag in 0..20u8 {
        let reader = {
            let b = b.clone();
            tokio::spawn(async move { receive(&b, SIZE).await })
        };
        // Sent while the reader waits (or about to), not before it started.
        tokio::task::yield_now().await;
        send(&a, to, tag);
        let got = reader.await.expect("reader");
        assert_eq!(got, vec![tag; SIZE]);
    }
}

/// Before any refused send the socket counts as writable at once, with nothing registered.
/// After one, the wait registers a duplicate of the socket, ends once it is writable, and gives
/// the duplicate up: the poller can be used again, and the socket still sends and receives.
#[tokio::test]
async fn the_writability_wait_happens_only_after_a_refused_send() {
    let (a, b) = (socket(), socket());
    let mut writable = Writable {
        socket: a.clone(),
        waiting: None,
    };
    let waker = std::task::Waker::noop();
    let polled = Pin::new(&mut writable).poll_writable(&mut Context::from_waker(waker));
    assert!(matches!(polled, Poll::Ready(Ok(()))), "{polled:?}");
    assert!(writable.waiting.is_none());
    for _ in 0..3 {
        a.refused.store(true, Ordering::Relaxed);
        std::future::poll_fn(|cx| Pin::new(&mut writable).poll_writable(cx))
            .await
            .expect("writable");
        assert!(writable.waiting.is_none());
        assert!(!a.refused.load(Ordering::Relaxed));
    }
    send(&a, b.local_addr().expect("addr"), 7);
    assert_eq!(receive(&b, SIZE).await, vec![7; SIZE]);
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
    let sender = super::super::socket::bind("127.0.0.1:0".parse().expect("addr"), 1 << 20, false)
        .expect("bind sender");
    let sender = Arc::new(MeshSocket::new(sender).expect("register"));
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
