//! Our own decoder of chitchat messages (`transport::gossip::message`), which every gossip
//! message passes before the guard and chitchat see it: whatever the prescan lets through
//! decodes or is refused without panicking, and what decodes encodes again to bytes the
//! prescan accepts and that decode to the same message (so a filtered message chitchat sees is
//! the one the guard judged).

use murmur_transport::gossip::message::{decode, encode};
use murmur_transport::gossip::prescan;

/// Prescan, decode, then the round trip.
pub fn message(data: &[u8]) {
    if prescan(data).is_err() {
        return;
    }
    let Ok(msg) = decode(data) else {
        return;
    };
    let again = encode(&msg);
    assert!(
        prescan(&again).is_ok(),
        "a re-encoded message fails the prescan"
    );
    assert_eq!(
        decode(&again).as_ref(),
        Ok(&msg),
        "the round trip changes the message"
    );
}
