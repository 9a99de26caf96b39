//! Lossy subscriptions: live events from a bounded queue.

use super::{Canal, CanalBatch, CanalClosed, CloseReason};
use crate::event::Event;
use crate::store::{Region, Store, SubscriberQueue};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A bounded, lossy, live view of events matching a region.
///
/// Events are pushed by the store's writer as they become visible (not
/// waiting for durability), filtered at push. The writer never waits for a
/// subscriber: when this subscriber's queue is full it is **cut off**. It
/// still receives what was queued, then `pull_batch` fails with
/// [`CloseReason::Lagged`] carrying how many matching events it missed.
/// Nothing is replayed: resubscribe to continue from the live head, or use a
/// [`Cursor`](super::Cursor) when every event matters.
pub struct Subscription {
    queue: Arc<SubscriberQueue>,
    closed: Option<CanalClosed>,
    _store: Store,
}

impl Subscription {
    /// Subscribes to live events matching `region`, buffering at most
    /// `capacity` of them (at least 1).
    pub fn new(store: &Store, region: Region, capacity: usize) -> Subscription {
        let store = store.clone();
        let queue = Arc::new(SubscriberQueue::new(region, capacity));
        store.inner.core.add_subscriber(queue.clone());
        Subscription {
            queue,
            closed: None,
            _store: store,
        }
    }

    /// Matching events dropped because this subscriber fell behind.
    pub fn missed(&self) -> u64 {
        self.queue.missed()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.queue.mark_dropped();
    }
}

impl Canal for Subscription {
    type Item = Event;
    type Error = CanalClosed;

    fn pull_batch(
        &mut self,
        max: usize,
        deadline: Duration,
    ) -> Result<CanalBatch<Event>, CanalClosed> {
        if let Some(c) = &self.closed {
            return Err(c.clone());
        }
        let max = max.max(1);
        let r = self.queue.wait(Instant::now() + deadline, |st| {
            if !st.queue.is_empty() {
                let n = st.queue.len().min(max);
                return Ok(st.queue.drain(..n).collect::<Vec<_>>());
            }
            if st.cut_off {
                return Err(CloseReason::Lagged { missed: st.missed });
            }
            if st.store_closed {
                return Err(CloseReason::StoreClosed);
            }
            Ok(Vec::new())
        });
        match r {
            Ok(v) => Ok(CanalBatch::from_vec(v)),
            Err(reason) => {
                self.queue.mark_dropped();
                let c = CanalClosed { reason };
                self.closed = Some(c.clone());
                Err(c)
            }
        }
    }
}
