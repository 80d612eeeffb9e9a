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
//! Both ends rewrite the heartbeats where they sit in the encoded message
//! ([`Digest`]), without decoding the rest.
//!
//! Empty lists mean nothing was moved (no base, or no digest).

use std::collections::HashMap;

use super::{HEARTBEAT_STEP, PackError};
use crate::gossip::message::Digest;
use crate::gossip::prescan;

/// `raw`, a message's raw encoding, as it is compressed against `base` (a base's raw bytes: a
/// header and digest), or compressed alone: the heartbeat differences, then the message with
/// the base's heartbeats.
pub(super) fn split(mut raw: Vec<u8>, base: Option<&[u8]>) -> Result<Vec<u8>, PackError> {
    let column = match base.and_then(|b| Digest::read(b).ok()) {
        Some(held) => move_back(&held, &mut raw)?,
        // Nothing moves: the message goes as it was encoded.
        None => Column::default(),
    };
    let mut body = postcard::to_stdvec(&column).map_err(|_| PackError::Column)?;
    body.extend_from_slice(&raw);
    Ok(body)
}

/// Writes each of `raw`'s heartbeats as `held` has it for the same incarnation, and returns how
/// far each had moved (nothing when `raw` has no digest).
fn move_back(held: &Digest, raw: &mut [u8]) -> Result<Column, PackError> {
    let mut column = Column::default();
    let Ok(mut digest) = Digest::read(raw) else {
        return Ok(column);
    };
    if digest.entries.is_empty() {
        return Ok(column);
    }
    let held: HashMap<&[u8], u64> = held
        .entries
        .iter()
        .map(|e| (held.id(e), e.heartbeat))
        .collect();
    for (id, heartbeat) in digest.heartbeats_mut() {
        let base = held.get(id).copied().unwrap_or(*heartbeat);
        let moved = heartbeat.wrapping_sub(base).cast_signed();
        column.steps.push(moved.div_euclid(STEP));
        column.rest.push(moved.rem_euclid(STEP).cast_unsigned());
        *heartbeat = base;
    }
    digest.write(raw)?;
    Ok(column)
}

/// The raw encoding `body` (as [`split`] made it) stands for, prescanned.
pub(super) fn join(body: &[u8]) -> Result<Vec<u8>, PackError> {
    let (column, moved) =
        postcard::take_from_bytes::<Column>(body).map_err(|_| PackError::Column)?;
    prescan::prescan(moved)?;
    let mut raw = moved.to_vec();
    if column.steps.is_empty() && column.rest.is_empty() {
        return Ok(raw);
    }
    let mut digest = Digest::read(&raw)?;
    let n = digest.entries.len();
    if column.steps.len() != n || column.rest.len() != n {
        return Err(PackError::Column);
    }
    let moved = column.steps.into_iter().zip(column.rest);
    for ((_, heartbeat), (steps, rest)) in digest.heartbeats_mut().zip(moved) {
        let by = steps.wrapping_mul(STEP).wrapping_add_unsigned(rest);
        *heartbeat = heartbeat.wrapping_add_signed(by);
    }
    digest.write(&mut raw)?;
    Ok(raw)
}

/// [`HEARTBEAT_STEP`], as the differences are counted.
const STEP: i64 = HEARTBEAT_STEP.cast_signed();

/// How far each digest entry's heartbeat moved: `steps × STEP + rest`.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
struct Column {
    steps: Vec<i64>,
    rest: Vec<u64>,
}
