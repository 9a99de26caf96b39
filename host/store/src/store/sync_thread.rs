//! The sync thread: fsyncs what was written but nobody asked to be durable
//! within `sync_interval`, so appends that did not wait for durability
//! still reach the disk soon. Durable appenders do not use it: they fsync
//! on their own thread (leader-based group commit, see `durability.rs`).

use super::durability::Durability;
use std::time::Duration;

/// Runs until the store shuts down (everything synced) or fails.
pub(crate) fn sync_loop(dur: &Durability, interval: Duration) {
    let mut st = dur.state.lock();
    loop {
        if st.poisoned.is_some() || (st.shutdown && st.written <= st.durable) {
            return;
        }
        let dirty = st.written > st.durable;
        let due = st.unsynced_since.is_some_and(|t| t.elapsed() >= interval);
        if dirty && (due || st.shutdown) {
            if st.syncing {
                // A leader's fsync is in flight; it covers this or restarts the timer.
                let _ = dur
                    .durable_cv
                    .wait_for(&mut st, interval.max(Duration::from_millis(1)));
            } else {
                dur.lead_sync(&mut st);
            }
            continue;
        }
        let wake = st.unsynced_since.filter(|_| dirty).map(|t| t + interval);
        st.sync_timed = wake.is_some();
        match wake {
            Some(t) => {
                let _ = dur.sync_cv.wait_until(&mut st, t);
            }
            None => dur.sync_cv.wait(&mut st),
        }
    }
}
