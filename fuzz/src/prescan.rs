//! The gate in front of chitchat's decoder (`transport::gossip::prescan`).
//!
//! chitchat 0.13 keeps its message decoder private; the only public way in is its UDP socket,
//! far too slow to fuzz through. What matters is that the prescan lets through nothing whose
//! decoding would cost more than it promises. So every message it accepts is walked again here,
//! independently, and each compressed block is decompressed exactly as chitchat does
//! (`zstd::bulk::decompress_to_buffer` into a 64 KiB buffer), checking the bound.

use murmur_transport::gossip::prescan as gate;

/// What the prescan promises for one compressed block.
const MAX_BLOCK_OUTPUT: usize = 16 * 1024;
/// Blocks in one message.
const MAX_BLOCKS: usize = 32;

/// The prescan, then a second look at whatever it accepted.
pub fn prescan(data: &[u8]) {
    if gate(data).is_err() {
        return;
    }
    let mut walk = Walk {
        buf: data,
        blocks: 0,
        decompressed: 0,
        out: vec![0; usize::from(u16::MAX)],
    };
    assert_eq!(walk.take(2), Some(&45_139u16.to_le_bytes()[..]), "magic");
    assert_eq!(walk.take(1), Some(&[1u8][..]), "protocol version 1");
    let kind = walk.take(1).map(|b| b[0]);
    match kind {
        Some(0) => {
            walk.stream();
            let len = walk.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]));
            let len = len.expect("accepted Syn has a cluster id length");
            assert!(
                walk.take(usize::from(len)).is_some(),
                "accepted Syn has its cluster id"
            );
        }
        Some(1) => {
            walk.stream();
            walk.stream();
        }
        Some(2) => walk.stream(),
        other => panic!("accepted message type {other:?}"),
    }
    assert!(walk.buf.is_empty(), "accepted message has trailing bytes");
    assert!(walk.blocks <= MAX_BLOCKS);
    // chitchat concatenates every block before decoding the items: bounded by the block count.
    assert!(walk.decompressed <= MAX_BLOCKS * usize::from(u16::MAX));
}

struct Walk<'a> {
    buf: &'a [u8],
    blocks: usize,
    decompressed: usize,
    out: Vec<u8>,
}

impl<'a> Walk<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let head = self.buf.get(..n)?;
        self.buf = &self.buf[n..];
        Some(head)
    }

    fn stream(&mut self) {
        loop {
            let tag = self.take(1).expect("accepted stream is complete")[0];
            if tag == 0 {
                return;
            }
            self.blocks += 1;
            let len = self.take(2).expect("accepted block has a length");
            let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
            let block = self.take(len).expect("accepted block is complete");
            match tag {
                1 => self.decompress(block),
                2 => self.decompressed += block.len(),
                other => panic!("accepted block tag {other}"),
            }
        }
    }

    fn decompress(&mut self, block: &[u8]) {
        // A frame that fails to decompress is refused by chitchat; only the size is ours to check.
        if let Ok(n) = zstd::bulk::decompress_to_buffer(block, &mut self.out[..]) {
            assert!(
                n <= MAX_BLOCK_OUTPUT,
                "accepted block decompresses to {n} bytes"
            );
            self.decompressed += n;
        }
    }
}
