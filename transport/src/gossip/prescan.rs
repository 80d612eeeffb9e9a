//! A cheap structural check of a chitchat message before chitchat decodes it.
//!
//! chitchat decompresses every zstd block of a message into a 64 KiB buffer with no limit on the
//! number of blocks, so one 64 KB datagram can expand to over 100 MB. Our gossip comes only from
//! verified nodes, but one compromised or buggy node must not take others down: this walks the
//! message layout (magic, version, type, block streams) and bounds what decoding would produce
//! before the bytes reach chitchat.
//!
//! Layout (chitchat 0.13, protocol V1): `magic u16 LE = 45139 | version u8 | type u8 | body`.
//! Syn = digest stream, cluster id (u16 LE length + bytes); SynAck = digest stream, delta
//! stream; Ack = delta stream. A stream is blocks `tag u8 (0 end, 1 zstd, 2 raw) | len u16 LE |
//! bytes`, ended by tag 0.

const MAGIC: u16 = 45_139;
/// chitchat flushes a block every 16 KiB of input, so no honest block decodes to more.
const MAX_BLOCK_OUTPUT: u64 = 16 * 1024;
/// Enough for the digest of a few thousand nodes plus a full delta.
const MAX_BLOCKS: usize = 32;

/// Why a message was refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrescanError {
    /// Not a chitchat message.
    #[error("bad magic or truncated header")]
    Header,
    /// A protocol version we do not run (the mesh speaks V1 only).
    #[error("unsupported chitchat protocol version {0}")]
    Version(u8),
    /// A message type peers never need to send us.
    #[error("unexpected message type {0}")]
    Type(u8),
    /// A block stream that is truncated or malformed.
    #[error("malformed block stream")]
    Stream,
    /// More blocks, or more decompressed bytes, than an honest message has.
    #[error("message would decompress beyond the limit")]
    Bomb,
    /// Bytes after the message.
    #[error("trailing bytes")]
    Trailing,
}

/// Checks that `bytes` is a well-formed V1 Syn, SynAck or Ack whose decompressed size is bounded.
pub fn prescan(bytes: &[u8]) -> Result<(), PrescanError> {
    let mut cur = Cursor {
        buf: bytes,
        blocks: 0,
    };
    let magic = cur.u16().ok_or(PrescanError::Header)?;
    if magic != MAGIC {
        return Err(PrescanError::Header);
    }
    let version = cur.u8().ok_or(PrescanError::Header)?;
    if version != 1 {
        return Err(PrescanError::Version(version));
    }
    match cur.u8().ok_or(PrescanError::Header)? {
        0 => {
            cur.stream()?;
            let len = cur.u16().ok_or(PrescanError::Stream)?;
            cur.take(usize::from(len)).ok_or(PrescanError::Stream)?;
        }
        1 => {
            cur.stream()?;
            cur.stream()?;
        }
        2 => cur.stream()?,
        other => return Err(PrescanError::Type(other)),
    }
    if cur.buf.is_empty() {
        Ok(())
    } else {
        Err(PrescanError::Trailing)
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    blocks: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn stream(&mut self) -> Result<(), PrescanError> {
        loop {
            let tag = self.u8().ok_or(PrescanError::Stream)?;
            if tag == 0 {
                return Ok(());
            }
            self.blocks += 1;
            if self.blocks > MAX_BLOCKS {
                return Err(PrescanError::Bomb);
            }
            let len = self.u16().ok_or(PrescanError::Stream)?;
            let block = self.take(usize::from(len)).ok_or(PrescanError::Stream)?;
            match tag {
                1 => check_zstd_block(block)?,
                2 => {}
                _ => return Err(PrescanError::Stream),
            }
        }
    }
}

/// A compressed block must be exactly one zstd frame that declares its (small) content size;
/// zstd refuses to produce more than a frame declares.
fn check_zstd_block(block: &[u8]) -> Result<(), PrescanError> {
    use zstd::zstd_safe;
    let frame_len =
        zstd_safe::find_frame_compressed_size(block).map_err(|_| PrescanError::Stream)?;
    if frame_len != block.len() {
        return Err(PrescanError::Bomb);
    }
    match zstd_safe::get_frame_content_size(block) {
        Ok(Some(n)) if n <= MAX_BLOCK_OUTPUT => Ok(()),
        Ok(_) => Err(PrescanError::Bomb),
        Err(_) => Err(PrescanError::Stream),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u8) -> Vec<u8> {
        let mut v = MAGIC.to_le_bytes().to_vec();
        v.push(1);
        v.push(kind);
        v
    }

    fn zstd_block(data: &[u8]) -> Vec<u8> {
        let c = zstd::bulk::compress(data, 0).unwrap();
        let mut v = vec![1];
        v.extend_from_slice(&u16::try_from(c.len()).unwrap().to_le_bytes());
        v.extend_from_slice(&c);
        v
    }

    #[test]
    fn accepts_small_ack_and_refuses_other_shapes() {
        let mut ack = header(2);
        ack.extend(zstd_block(&[7u8; 1000]));
        ack.push(0);
        assert_eq!(prescan(&ack), Ok(()));

        let mut trailing = ack.clone();
        trailing.push(9);
        assert_eq!(prescan(&trailing), Err(PrescanError::Trailing));
        assert_eq!(prescan(&ack[..ack.len() - 1]), Err(PrescanError::Stream));
        assert_eq!(prescan(&header(3)), Err(PrescanError::Type(3)));
        let mut v0 = header(2);
        v0[2] = 0;
        assert_eq!(prescan(&v0), Err(PrescanError::Version(0)));
        assert_eq!(prescan(b"GET / HTTP/1.1\r\n"), Err(PrescanError::Header));
    }

    #[test]
    fn refuses_decompression_bombs() {
        // One block that expands to 64 KiB.
        let mut big = header(2);
        big.extend(zstd_block(&[0u8; 65_000]));
        big.push(0);
        assert_eq!(prescan(&big), Err(PrescanError::Bomb));

        // Many small blocks, each within the limit.
        let mut many = header(2);
        for _ in 0..=MAX_BLOCKS {
            many.extend(zstd_block(&[1u8; 100]));
        }
        many.push(0);
        assert_eq!(prescan(&many), Err(PrescanError::Bomb));

        // Two frames in one block.
        let mut c = zstd::bulk::compress(&[1u8; 10], 0).unwrap();
        c.extend(zstd::bulk::compress(&[2u8; 10], 0).unwrap());
        let mut two = header(2);
        two.push(1);
        two.extend_from_slice(&u16::try_from(c.len()).unwrap().to_le_bytes());
        two.extend_from_slice(&c);
        two.push(0);
        assert_eq!(prescan(&two), Err(PrescanError::Bomb));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = prescan(&bytes);
        }
    }
}
