//! The sync thread: fsyncs what the writer wrote and advances the durable
//! watermark, so concurrent durable appends share one fsync (group commit).
//! After each fsync it records the durable position in the marker file.

use super::durability::{unpark_all, Durability};
use super::durable_mark::DurableMark;
use std::time::{Duration, Instant};

/// Runs until the store shuts down (everything synced) or fails.
pub(crate) fn sync_loop(dur: &Durability, mark: &DurableMark, interval: Duration) {
    loop {
        let (target, pos, file) = {
            let mut st = dur.state.lock();
            loop {
                if st.poisoned.is_some() || (st.shutdown && st.written <= st.durable) {
                    return;
                }
                let dirty = st.written > st.durable;
                let due = st.unsynced_since.is_some_and(|t| t.elapsed() >= interval);
                if dirty && (st.durable_requested > st.durable || due || st.shutdown) {
                    break;
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
            st.unsynced_since = None;
            (st.written, st.written_pos, st.sync_file.clone())
        };
        let r = file.sync().and_then(|_| mark.record(pos));
        let mut st = dur.state.lock();
        match r {
            Ok(()) => {
                st.durable = st.durable.max(target);
                if st.written > st.durable {
                    st.unsynced_since.get_or_insert_with(Instant::now);
                }
            }
            Err(e) => {
                if st.poisoned.is_none() {
                    st.poisoned = Some(format!("fsync of the log failed: {e}"));
                }
            }
        }
        let waiters = st.take_done_waiters();
        drop(st);
        unpark_all(waiters);
        dur.durable_cv.notify_all();
        dur.visible_cv.notify_all();
    }
}
