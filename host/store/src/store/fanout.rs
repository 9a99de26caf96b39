//! Push side of lossy subscriptions: bounded per-subscriber queues the
//! writer fills without ever waiting for a consumer.

use super::Region;
use crate::event::Event;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub(crate) struct QState {
    pub queue: VecDeque<Event>,
    /// Set when the queue was full: from then on events are only counted.
    pub cut_off: bool,
    pub missed: u64,
    pub store_closed: bool,
}

/// One subscriber's bounded queue.
pub(crate) struct SubscriberQueue {
    region: Region,
    capacity: usize,
    state: Mutex<QState>,
    cv: Condvar,
    dropped: AtomicBool,
}

impl SubscriberQueue {
    pub fn new(region: Region, capacity: usize) -> Self {
        SubscriberQueue {
            region,
            capacity: capacity.max(1),
            state: Mutex::new(QState {
                queue: VecDeque::new(),
                cut_off: false,
                missed: 0,
                store_closed: false,
            }),
            cv: Condvar::new(),
            dropped: AtomicBool::new(false),
        }
    }

    /// Called by the writer: filters at push, never blocks on the consumer
    /// beyond the queue's short lock. A full queue cuts the subscriber off.
    pub fn push_all(&self, events: &[Event]) {
        let mut st = self.state.lock();
        let mut pushed = false;
        for e in events.iter().filter(|e| self.region.matches(&e.header)) {
            if st.cut_off {
                st.missed += 1;
            } else if st.queue.len() >= self.capacity {
                st.cut_off = true;
                st.missed += 1;
            } else {
                st.queue.push_back(e.clone());
                pushed = true;
            }
        }
        if pushed || st.cut_off {
            self.cv.notify_one();
        }
    }

    pub fn close_store(&self) {
        self.state.lock().store_closed = true;
        self.cv.notify_all();
    }

    pub fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::Release);
    }

    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    /// Waits until something happened or the deadline passed, then runs `f`
    /// on the state.
    pub fn wait<R>(&self, deadline: Instant, f: impl FnOnce(&mut QState) -> R) -> R {
        let mut st = self.state.lock();
        while st.queue.is_empty() && !st.cut_off && !st.store_closed && !self.is_dropped() {
            if self.cv.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        f(&mut st)
    }

    pub fn missed(&self) -> u64 {
        self.state.lock().missed
    }
}
