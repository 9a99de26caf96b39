//! The watermarks a caller can read or wait for.

use super::durability::{Durability, Stopped};
use super::StoreError;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The store's progress markers. Always `durable <= written` and
/// `visible <= written`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermarks {
    /// Highest sequence handed to the writer.
    pub accepted: u64,
    /// Highest sequence written to the segment file (page cache).
    pub written: u64,
    /// Highest sequence readable through the index.
    pub visible: u64,
    /// Highest sequence known to be on stable storage.
    pub durable: u64,
}

impl Durability {
    /// Current watermarks.
    pub fn watermarks(&self) -> Watermarks {
        let st = self.state.lock();
        Watermarks {
            accepted: self.accepted.load(Ordering::Acquire),
            written: st.written,
            visible: st.visible,
            durable: st.durable,
        }
    }

    /// `min(visible, durable)`: what a cursor may deliver.
    pub fn deliverable(&self) -> Result<u64, Stopped> {
        let st = self.state.lock();
        if let Some(p) = &st.poisoned {
            return Err(Stopped::Failed(p.clone()));
        }
        Ok(st.visible.min(st.durable))
    }

    /// Waits until more than `after` is deliverable, the deadline passes or
    /// the store stops. Returns the deliverable watermark.
    pub fn wait_deliverable(&self, after: u64, deadline: Instant) -> Result<u64, Stopped> {
        let mut st = self.state.lock();
        loop {
            if let Some(p) = &st.poisoned {
                return Err(Stopped::Failed(p.clone()));
            }
            let d = st.visible.min(st.durable);
            if d > after {
                return Ok(d);
            }
            if st.shutdown {
                return Err(Stopped::Closed);
            }
            if self.durable_cv.wait_until(&mut st, deadline).timed_out() {
                return Ok(st.visible.min(st.durable));
            }
        }
    }

    /// Waits until `s` is durable or `timeout` passes, fsyncing on this
    /// thread when it is the one to lead.
    pub fn wait_durable(&self, s: u64, timeout: Duration) -> Result<bool, StoreError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        loop {
            if let Some(p) = &st.poisoned {
                return Err(self.failure(p));
            }
            if st.durable >= s {
                return Ok(true);
            }
            if st.shutdown || Instant::now() >= deadline {
                return Ok(false);
            }
            if st.visible < s {
                let _ = self.visible_cv.wait_until(&mut st, deadline);
            } else {
                self.make_durable(&mut st, s, Some(deadline));
            }
        }
    }

    /// Makes everything accepted so far durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        let s = self.accepted.load(Ordering::Acquire);
        self.wait(s, true, true)
    }
}
