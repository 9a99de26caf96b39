//! What feeds a runner: a reactor's named cursor over the log seam (the
//! log's [`LogCursor`] plus the checkpoint the runner commits with its
//! output), or a lossy live subscription.

use super::error::RunnerError;
use super::log_retry::retry_transient;
use super::settings::RunnerSettings;
use crate::descriptor::Descriptor;
use batpak_log::{Fence, LogCursor, SharedLog};
use batpak_store::{
    Canal, CanalBatch, CanalClosed, CheckpointUpdate, Event, EventId, EventView, StoreError,
};

pub(super) enum Feed {
    Cursor(ReactorCursor),
    Lossy(Box<dyn Canal<Item = Event, Error = CanalClosed>>),
}

/// A reactor's cursor: ordered, durable delivery from the log, resumed
/// after the reactor's checkpoint, which the runner commits atomically
/// with the reactions (so each source event's reactions land once).
pub(super) struct ReactorCursor {
    canal: Box<dyn LogCursor>,
    id: String,
    fingerprint: [u8; 32],
}

impl ReactorCursor {
    /// Opens reactor `d`'s cursor after its checkpoint, which must have
    /// been written for `d`'s region and name the event at its sequence.
    /// Reads are retried while the log is unavailable, up to
    /// `settings.log_retry`. Returns it with the fence for its first
    /// commit, read together with the position.
    pub(super) fn open(
        log: &SharedLog,
        d: &Descriptor,
        settings: &RunnerSettings,
    ) -> Result<(ReactorCursor, Fence), RunnerError> {
        let id = settings.instance.cursor_id(&d.name);
        let region = settings.instance.region(&d.region);
        let fingerprint = region.fingerprint();
        let read = |what: &str| RunnerError::log(format!("reactor {}: {what}", d.name));
        // Position and fence from one consistent read (see
        // `EventLog::fenced_checkpoint`): a fence newer than the position
        // would let this instance redo what another one committed.
        let (cp, fence) = retry_transient(settings, || log.fenced_checkpoint(&id))
            .map_err(read("reading its checkpoint"))?;
        let mut position = 0;
        if let Some(cp) = cp {
            // A checkpoint keyed for another region: name the fix.
            if cp.region == super::instance::RETIRED_REGION {
                return Err(RunnerError::OpenCursor {
                    reactor: d.name.clone(),
                    source: StoreError::CheckpointMismatch {
                        cursor: id,
                        reason: "this instance was retired by a hand-over to another number of instances; run the reactor with the number of instances its live checkpoints record".into(),
                    },
                });
            }
            if cp.region != fingerprint {
                return Err(RunnerError::RegionChanged {
                    reactor: d.name.clone(),
                    region: super::swap::describe_region(&d.region),
                });
            }
            if cp.sequence > 0 {
                let at = retry_transient(settings, || log.get_by_sequence(cp.sequence))
                    .map_err(read("reading the event at its checkpoint"))?;
                let reason = match at {
                    Some(e) if e.header.id == cp.event_id => None,
                    Some(e) => Some(format!(
                        "it names event {} at sequence {}, but the log has {} there",
                        cp.event_id, cp.sequence, e.header.id
                    )),
                    None => Some(format!(
                        "it names sequence {}, beyond the end of the log",
                        cp.sequence
                    )),
                };
                if let Some(reason) = reason {
                    return Err(RunnerError::OpenCursor {
                        reactor: d.name.clone(),
                        source: StoreError::CheckpointMismatch { cursor: id, reason },
                    });
                }
            }
            position = cp.sequence;
        }
        let canal = retry_transient(settings, || log.open_cursor(&region, position))
            .map_err(read("opening its cursor"))?;
        Ok((
            ReactorCursor {
                canal,
                id,
                fingerprint,
            },
            fence,
        ))
    }

    /// The cursor id (`reactor.<name>`, or an instance's).
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// Last sequence delivered or looked past.
    pub(super) fn position(&self) -> u64 {
        self.canal.position()
    }

    /// The checkpoint past `sequence` (the event `id`), to commit with the
    /// output that handled it.
    pub(super) fn checkpoint_for(&self, sequence: u64, id: EventId) -> CheckpointUpdate {
        CheckpointUpdate {
            cursor: self.id.clone(),
            region: self.fingerprint,
            sequence,
            event_id: id,
        }
    }

    /// Pulls up to `max` events, waiting at most `wait`: views of the
    /// bytes the log read (see [`EventView`]).
    pub(super) fn pull_batch(
        &mut self,
        max: usize,
        wait: std::time::Duration,
    ) -> Result<CanalBatch<EventView>, batpak_log::LogError> {
        self.canal.pull_batch(max, wait)
    }
}
