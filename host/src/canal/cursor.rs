//! Cursors: ordered, durable, checkpointed delivery.

use super::{Canal, CanalBatch, CanalClosed, CloseReason, Region};
use crate::event::{hex, Event, EventId, ValidationError};
use crate::store::{AppendOptions, CheckpointUpdate, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

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

/// An ordered, durable, checkpointed canal over a region.
///
/// - Delivers events matching its region in global-sequence order, each
///   once per process, and only once they are **durable**, so a checkpoint
///   can never point past what survives a crash.
/// - Blocks on a condition variable (no spinning) until data or deadline.
/// - A named cursor resumes after its last committed checkpoint: delivery is
///   at-least-once across restarts. Commit the checkpoint in the same append
///   as the consumer's output ([`Cursor::checkpoint_for`] with
///   [`AppendOptions::with_checkpoint`]) to get effectively-once.
pub struct Cursor {
    store: Store,
    region: Region,
    fingerprint: [u8; 32],
    id: Option<String>,
    position: u64,
}

impl Cursor {
    /// An unnamed cursor delivering events after sequence `after`. It never
    /// checkpoints.
    pub fn new(store: Store, region: Region, after: u64) -> Cursor {
        let fingerprint = region.fingerprint();
        Cursor {
            store,
            region,
            fingerprint,
            id: None,
            position: after,
        }
    }

    pub(crate) fn open(store: Store, id: &str, region: Region) -> Result<Cursor, StoreError> {
        validate_cursor_id(id).map_err(|source| StoreError::Invalid { index: 0, source })?;
        let fingerprint = region.fingerprint();
        let mismatch = |reason: String| StoreError::CheckpointMismatch {
            cursor: id.to_string(),
            reason,
        };
        let mut position = 0;
        if let Some(cp) = store.checkpoint(id) {
            if cp.region != fingerprint {
                return Err(mismatch(format!(
                    "it was committed for another region (fingerprint {}, this region is {}); \
                     resuming would skip or repeat events. Use a new cursor id for the new region",
                    &hex(&cp.region)[..16],
                    &hex(&fingerprint)[..16]
                )));
            }
            if cp.sequence > 0 {
                match store.get_by_sequence(cp.sequence)? {
                    Some(e) if e.header.id == cp.event_id => {}
                    Some(e) => {
                        return Err(mismatch(format!(
                            "it names event {} at sequence {}, but the log has {} there",
                            cp.event_id, cp.sequence, e.header.id
                        )))
                    }
                    None => {
                        return Err(mismatch(format!(
                            "it names sequence {}, beyond the end of the log",
                            cp.sequence
                        )))
                    }
                }
            }
            position = cp.sequence;
        }
        Ok(Cursor {
            store,
            region,
            fingerprint,
            id: Some(id.to_string()),
            position,
        })
    }

    /// The cursor id, when named.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The region read.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Last global sequence delivered or skipped (0 = nothing yet).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Moves the cursor so the next pull starts after `after`.
    pub fn rewind_to(&mut self, after: u64) {
        self.position = after;
    }

    /// A checkpoint update for `sequence` / `event_id`, to commit with
    /// [`AppendOptions::with_checkpoint`]. `None` for an unnamed cursor.
    pub fn checkpoint_for(&self, sequence: u64, event_id: EventId) -> Option<CheckpointUpdate> {
        self.id.as_ref().map(|id| CheckpointUpdate {
            cursor: id.clone(),
            region: self.fingerprint,
            sequence,
            event_id,
        })
    }

    /// Durably commits the checkpoint at [`position`](Self::position).
    ///
    /// # Errors
    /// The append failed, or the cursor is unnamed.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        let id = match self.position {
            0 => EventId(0),
            p => self
                .store
                .get_by_sequence(p)?
                .map(|e| e.header.id)
                .ok_or_else(|| StoreError::BadBatch(format!("sequence {p} is not in the log")))?,
        };
        let cp = self
            .checkpoint_for(self.position, id)
            .ok_or_else(|| StoreError::BadBatch("an unnamed cursor has no checkpoint".into()))?;
        self.store
            .append_system(Vec::new(), AppendOptions::durable().with_checkpoint(cp))?;
        Ok(())
    }
}

impl Canal for Cursor {
    type Item = Event;
    type Error = CanalClosed;

    fn pull_batch(
        &mut self,
        max: usize,
        deadline: Duration,
    ) -> Result<CanalBatch<Event>, CanalClosed> {
        let core = &self.store.inner;
        let fail = |m: String| CanalClosed {
            reason: CloseReason::Failed(m),
        };
        let deadline = Instant::now() + deadline;
        let max = max.max(1);
        let mut upto = core.deliverable().map_err(fail)?;
        loop {
            if upto > self.position {
                let (entries, scanned) =
                    core.scan_entries(&self.region, self.position, max, false, upto);
                if !entries.is_empty() {
                    let events = core
                        .read_entries(&entries)
                        .map_err(|e| fail(e.to_string()))?;
                    // The scan stops at the max-th match, so `scanned` is
                    // either that event or the last sequence looked at.
                    self.position = scanned;
                    return Ok(CanalBatch::from_vec(events));
                }
                self.position = scanned;
            }
            if Instant::now() >= deadline {
                return Ok(CanalBatch::Empty);
            }
            upto = core
                .wait_deliverable(self.position, deadline)
                .map_err(|m| {
                    if m.contains("closed") {
                        CanalClosed {
                            reason: CloseReason::StoreClosed,
                        }
                    } else {
                        fail(m)
                    }
                })?;
        }
    }
}
