//! Checkpoints: a named cursor's committed position, recorded in the log as a
//! `batpak.cursor.checkpoint` system event.

use crate::event::{hex, EventId, ValidationError};
use serde::{Deserialize, Serialize};

/// A committed cursor position, recorded in the log as a
/// `batpak.cursor.checkpoint` system event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The cursor id.
    pub cursor: String,
    /// Fingerprint of the region the cursor was reading.
    pub region: [u8; 32],
    /// Last global sequence the cursor had fully handled.
    pub sequence: u64,
    /// Id of the event at `sequence` (zero when `sequence` is 0).
    pub event_id: EventId,
}

#[derive(Serialize, Deserialize)]
struct Record {
    cursor: String,
    region: String,
    sequence: u64,
    event_id: String,
}

impl Checkpoint {
    /// The JSON payload of the checkpoint record.
    pub(crate) fn to_record(&self) -> Vec<u8> {
        serde_json::to_vec(&Record {
            cursor: self.cursor.clone(),
            region: hex(&self.region),
            sequence: self.sequence,
            event_id: self.event_id.to_string(),
        })
        .expect("checkpoint encodes")
    }

    /// Parses a checkpoint record; `None` when it is not one.
    pub(crate) fn from_record(bytes: &[u8]) -> Option<Checkpoint> {
        let r: Record = serde_json::from_slice(bytes).ok()?;
        let mut region = [0u8; 32];
        if r.region.len() != 64 {
            return None;
        }
        for (i, b) in region.iter_mut().enumerate() {
            *b = u8::from_str_radix(r.region.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Checkpoint {
            cursor: r.cursor,
            region,
            sequence: r.sequence,
            event_id: r.event_id.parse().ok()?,
        })
    }
}

/// Checks a cursor id: 1 to 64 characters of `a-z 0-9 . _ -`.
pub(crate) fn validate_cursor_id(id: &str) -> Result<(), ValidationError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(ValidationError::BadName {
            what: "cursor id",
            value: id.chars().take(80).collect(),
            reason: "use 1 to 64 characters of a-z, 0-9, '.', '_' and '-'".into(),
        })
    }
}
