use super::*;

#[test]
fn a_send_carries_whole_packets_up_to_the_limit() {
    assert_eq!(per_send(1200), 54 * 1200);
    assert_eq!(per_send(8972), 7 * 8972);
    assert_eq!(per_send(65_495), 65_495);
    assert!(per_send(1200) <= MAX_SEND);
}

fn batch(len: usize, segment: Option<usize>) -> Vec<usize> {
    let contents = vec![0u8; len];
    let transmit = Transmit {
        destination: "127.0.0.1:1".parse().expect("addr"),
        ecn: None,
        contents: &contents,
        segment_size: segment,
        src_ip: None,
    };
    let mut sends = Vec::new();
    in_sends(&transmit, |t| {
        sends.push(t.contents.len());
        Ok(())
    })
    .expect("sent");
    sends
}

#[test]
fn only_a_batch_over_one_send_is_split_and_then_into_whole_packets() {
    assert_eq!(batch(1200, None), [1200]);
    assert_eq!(batch(12_000, Some(1200)), [12_000]);
    assert_eq!(batch(89_720, Some(8972)), [7 * 8972, 3 * 8972]);
}

#[test]
fn a_refused_first_send_is_reported_and_a_later_one_is_not() {
    let contents = vec![0u8; 89_720];
    let transmit = Transmit {
        destination: "127.0.0.1:1".parse().expect("addr"),
        ecn: None,
        contents: &contents,
        segment_size: Some(8972),
        src_ip: None,
    };
    let full = || io::Error::from(io::ErrorKind::WouldBlock);
    assert!(in_sends(&transmit, |_| Err(full())).is_err());
    let mut calls = 0;
    let later = in_sends(&transmit, |_| {
        calls += 1;
        if calls == 1 { Ok(()) } else { Err(full()) }
    });
    assert!(
        later.is_ok(),
        "the first part is out: the batch counts as sent"
    );
    assert_eq!(calls, 2);
}
