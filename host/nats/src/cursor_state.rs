//! A cursor's checkpoint (the store's [`CheckpointUpdate`] /
//! [`batpak_store::Checkpoint`]) as the bytes of a checkpoint message, so a
//! log behind the seam stores the same cursor state the embedded store
//! does: `{"region":"<64 hex>","sequence":N,"event_id":"<32 hex>"}`.
//! The sequence is the partition's stream sequence of the last event the
//! cursor handled.

use batpak_store::{hex, Checkpoint, CheckpointUpdate, EventId};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct State {
    region: String,
    sequence: u64,
    event_id: String,
}

/// The checkpoint message bytes of `update`.
pub fn encode_cursor(update: &CheckpointUpdate) -> Vec<u8> {
    serde_json::to_vec(&State {
        region: hex(&update.region),
        sequence: update.sequence,
        event_id: format!("{:032x}", update.event_id.0),
    })
    .expect("a cursor state serialises")
}

/// The cursor state in checkpoint message bytes, for cursor `cursor`;
/// `None` when the bytes are not one (damage or another writer).
pub fn decode_cursor(cursor: &str, bytes: &[u8]) -> Option<Checkpoint> {
    let s: State = serde_json::from_slice(bytes).ok()?;
    if s.region.len() != 64 || s.event_id.len() != 32 {
        return None;
    }
    let mut region = [0u8; 32];
    for (i, b) in region.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.region.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Checkpoint {
        cursor: cursor.to_string(),
        region,
        sequence: s.sequence,
        event_id: EventId(u128::from_str_radix(&s.event_id, 16).ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_state_round_trips_and_garbage_is_none() {
        let u = CheckpointUpdate {
            cursor: "low-stock".into(),
            region: [7; 32],
            sequence: 42,
            event_id: EventId(99),
        };
        let c = decode_cursor("low-stock", &encode_cursor(&u)).unwrap();
        assert_eq!(
            (c.cursor.as_str(), c.region, c.sequence, c.event_id),
            ("low-stock", [7; 32], 42, EventId(99))
        );
        assert_eq!(decode_cursor("x", b"pos=5"), None);
    }
}
