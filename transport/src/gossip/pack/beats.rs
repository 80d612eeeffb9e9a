//! Heartbeats, moved out of a packed message's digest into a column of their own.
//!
//! Between a base and the next message, nearly every digest entry's heartbeat moved on and
//! little else in it did (name, generation, address, versions). Left in place, each moved
//! heartbeat cuts zstd's match against the base into a short literal and a new match: about
//! 7 bytes per member, most of a Syn in a cell of 200. So the sender writes each entry with the
//! heartbeat the base holds for that incarnation, which then matches whole, and sends the
//! differences apart, before the message: as whole [`HEARTBEAT_STEP`]s (a postcard list of
//! signed integers), then what is left over (a list of unsigned ones). A node's heartbeat moves
//! in those steps, plus one for each gossip round in between, so the steps are alike (every
//! heartbeat moved by about the time since the base) and the remainders small, and zstd's
//! entropy coder packs both in a few bits each. The receiver adds them back and gets the
//! sender's raw encoding, byte for byte.
//!
//! Empty lists mean nothing was moved (no base, or no digest).

use std::collections::HashMap;

use chitchat::ChitchatId;

use super::{HEARTBEAT_STEP, PackError};
use crate::gossip::message::{self, Message};
use crate::gossip::prescan;

/// `msg` (whose raw encoding is `raw`) as it is compressed against `base` (a base's raw bytes:
/// a header and digest), or compressed alone: the heartbeat differences, then the message with
/// the base's heartbeats.
pub(super) fn split(
    mut msg: Message,
    raw: Vec<u8>,
    base: Option<&[u8]>,
) -> Result<Vec<u8>, PackError> {
    let in_base = base.and_then(|b| message::decode_digest_part(b).ok());
    let (column, moved) = match in_base.filter(|_| !msg.digest.is_empty()) {
        // Nothing moves: the message goes as it was encoded.
        None => (Column::default(), raw),
        Some(entries) => {
            let held: HashMap<&ChitchatId, u64> =
                entries.iter().map(|e| (&e.id, e.heartbeat)).collect();
            let mut column = Column::default();
            for e in &mut msg.digest {
                let was = held.get(&e.id).copied().unwrap_or(e.heartbeat);
                let moved = e.heartbeat.wrapping_sub(was).cast_signed();
                column.steps.push(moved.div_euclid(STEP));
                column.rest.push(moved.rem_euclid(STEP).cast_unsigned());
                e.heartbeat = was;
            }
            (column, message::encode_raw(&msg))
        }
    };
    let mut body = postcard::to_stdvec(&column).map_err(|_| PackError::Column)?;
    body.extend_from_slice(&moved);
    Ok(body)
}

/// The raw encoding `body` (as [`split`] made it) stands for, prescanned.
pub(super) fn join(body: &[u8]) -> Result<Vec<u8>, PackError> {
    let (column, moved) =
        postcard::take_from_bytes::<Column>(body).map_err(|_| PackError::Column)?;
    prescan::prescan(moved)?;
    if column.steps.is_empty() && column.rest.is_empty() {
        return Ok(moved.to_vec());
    }
    let mut msg = message::decode(moved)?;
    let n = msg.digest.len();
    if column.steps.len() != n || column.rest.len() != n {
        return Err(PackError::Column);
    }
    let moved = column.steps.into_iter().zip(column.rest);
    for (e, (steps, rest)) in msg.digest.iter_mut().zip(moved) {
        let by = steps.wrapping_mul(STEP).wrapping_add_unsigned(rest);
        e.heartbeat = e.heartbeat.wrapping_add_signed(by);
    }
    Ok(message::encode_raw(&msg))
}

/// [`HEARTBEAT_STEP`], as the differences are counted.
const STEP: i64 = HEARTBEAT_STEP.cast_signed();

/// How far each digest entry's heartbeat moved: `steps × STEP + rest`.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
struct Column {
    steps: Vec<i64>,
    rest: Vec<u64>,
}
