//! The heartbeats of a Syn's or SynAck's digest, read and rewritten where they sit in the
//! encoded bytes.
//!
//! Packing moves every heartbeat of a digest twice per message (once on each end, see
//! `pack::beats`). Decoding the whole message for that, and encoding it again, allocated every
//! member's name and cost most of a packed exchange's CPU; the heartbeats are eight bytes at a
//! known place in each entry, so they are read and written there instead.

use std::ops::Range;

use super::{Blocks, MAGIC, MessageError, Reader, Spans, V1, put_stream};

/// One digest entry as it sits in the digest's items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Where the entry's encoded id lies in [`Digest::items`]: two entries name the same
    /// incarnation exactly when these bytes are equal.
    pub id: Range<usize>,
    /// Its heartbeat.
    pub heartbeat: u64,
}

/// A message's digest items, gathered from their blocks, and its entries.
#[derive(Debug)]
pub struct Digest {
    /// The items of the digest stream, decompressed and contiguous.
    pub items: Vec<u8>,
    /// Its entries in order, duplicates included.
    pub entries: Vec<Entry>,
    /// Where the items lie in the message: raw blocks' payloads, in order. `None` when a block is
    /// compressed, and the items cannot be written back in place.
    blocks: Spans,
}

impl Digest {
    /// The digest of `bytes`: a Syn or SynAck (or its header and digest alone) that passed the
    /// prescan.
    pub fn read(bytes: &[u8]) -> Result<Self, MessageError> {
        let mut r = Reader::new(bytes);
        if r.u16("header")? != MAGIC || r.u8("header")? != V1 || r.u8("header")? > 1 {
            return Err(MessageError::Header);
        }
        let (items, blocks) = r.stream_spans()?;
        let entries = entries(&items)?;
        Ok(Self {
            items,
            entries,
            blocks,
        })
    }

    /// The bytes of an entry's id.
    pub fn id(&self, e: &Entry) -> &[u8] {
        id_bytes(&self.items, e)
    }

    /// Each entry's id bytes and its heartbeat, to change before [`Self::write`].
    pub fn heartbeats_mut(&mut self) -> impl Iterator<Item = (&[u8], &mut u64)> {
        let items = &self.items;
        self.entries
            .iter_mut()
            .map(move |e| (id_bytes(items, e), &mut e.heartbeat))
    }

    /// Writes the entries' heartbeats, as they are now in [`Self::entries`], into `bytes`: the
    /// message this digest was read from. Refused when its digest is not in raw blocks.
    pub fn write(mut self, bytes: &mut [u8]) -> Result<(), MessageError> {
        let blocks = self
            .blocks
            .take()
            .ok_or(MessageError::Malformed("digest: compressed block"))?;
        let malformed = || MessageError::Malformed("digest: not the message it was read from");
        for e in &self.entries {
            // `entries` read eight heartbeat bytes right after each id.
            let at = e.id.end..e.id.end + 8;
            let slot = self.items.get_mut(at).ok_or_else(malformed)?;
            slot.copy_from_slice(&e.heartbeat.to_le_bytes());
        }
        let mut items = self.items.as_slice();
        for block in blocks {
            let (head, rest) = items.split_at_checked(block.len()).ok_or_else(malformed)?;
            bytes
                .get_mut(block)
                .ok_or_else(malformed)?
                .copy_from_slice(head);
            items = rest;
        }
        Ok(())
    }

    /// The digest's roster: a Syn's header, then this digest in raw blocks with every entry's
    /// heartbeat, last GC and max version zero. Two nodes that hold the same incarnations make
    /// the same bytes, whatever else they know of them.
    pub fn roster(self) -> Vec<u8> {
        let mut items = self.items;
        for e in &self.entries {
            // `entries` read 24 bytes of numbers right after each id.
            if let Some(numbers) = items.get_mut(e.id.end..e.id.end + 24) {
                numbers.fill(0);
            }
        }
        let mut out = MAGIC.to_le_bytes().to_vec();
        out.extend_from_slice(&[V1, 0]);
        put_stream(&mut out, &items, Blocks::Raw);
        out
    }
}

fn id_bytes<'a>(items: &'a [u8], e: &Entry) -> &'a [u8] {
    items.get(e.id.clone()).unwrap_or(&[])
}

/// The entries of a digest's items: each an id, then heartbeat, last_gc and max_version.
fn entries(items: &[u8]) -> Result<Vec<Entry>, MessageError> {
    let mut r = Reader::new(items);
    let mut entries = Vec::new();
    while !r.buf.is_empty() {
        let start = r.pos();
        r.id_parts()?;
        let end = r.pos();
        let heartbeat = r.u64("digest entry")?;
        r.take(16, "digest entry")?;
        entries.push(Entry {
            id: start..end,
            heartbeat,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests;
