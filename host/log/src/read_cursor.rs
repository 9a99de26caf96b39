//! [`ReadCursor`]: a [`LogCursor`] built on [`EventLog::read`], for logs
//! without a cursor of their own.

use crate::cursor::LogCursor;
use crate::error::LogError;
use crate::event_log::EventLog;
use batpak_store::{Canal, CanalBatch, EventView, Region};
use std::time::{Duration, Instant};

/// A [`LogCursor`] made of [`EventLog::read`] and
/// [`EventLog::wait_for_events`]: any log can hand one out from
/// [`open_cursor`](EventLog::open_cursor) when it has no better way.
#[derive(Debug)]
pub struct ReadCursor<L> {
    log: L,
    region: Region,
    position: u64,
}

impl<L: EventLog> ReadCursor<L> {
    /// A cursor over `region` of `log`, delivering after `after`.
    pub fn new(log: L, region: Region, after: u64) -> ReadCursor<L> {
        ReadCursor {
            log,
            region,
            position: after,
        }
    }
}

impl<L: EventLog> Canal for ReadCursor<L> {
    type Item = EventView;
    type Error = LogError;

    fn pull_batch(
        &mut self,
        max: usize,
        deadline: Duration,
    ) -> Result<CanalBatch<EventView>, LogError> {
        let deadline = Instant::now() + deadline;
        loop {
            let durable = self.log.heads().durable;
            if durable > self.position {
                let mut got = self.log.read(&self.region, self.position, max.max(1))?;
                // Deliver only what is durable. The read returned every
                // match up to `scanned`, so none at or below `durable` is
                // skipped by moving there.
                got.events.retain(|e| e.sequence() <= durable);
                self.position = self.position.max(got.scanned.min(durable));
                if !got.events.is_empty() {
                    // Owned events, handed out as views over them.
                    return Ok(CanalBatch::from_vec(
                        got.events.into_iter().map(EventView::from).collect(),
                    ));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(CanalBatch::Empty);
            }
            self.log.wait_for_events(self.position, deadline - now)?;
        }
    }
}

impl<L: EventLog> LogCursor for ReadCursor<L> {
    fn position(&self) -> u64 {
        self.position
    }
    fn region(&self) -> &Region {
        &self.region
    }
}
