//! A lossy live feed of one partition's region: the store's
//! [`Subscription`](batpak_store::Subscription) over a cluster. An ordered
//! push consumer (ephemeral, delivering from now on) runs on the client
//! thread and hands matching events to a bounded buffer; a subscriber that
//! falls behind the bound is cut off ([`CloseReason::Lagged`]). A consumer,
//! not a core subscription, because a core subscription also sees the
//! messages of atomic batches that never commit.

use crate::codec;
use batpak_store::{Canal, CanalBatch, CanalClosed, CloseReason, Event, Region};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why the forwarding task stopped (read once the buffer is drained).
#[derive(Default)]
pub(crate) struct FeedEnd {
    missed: AtomicU64,
    failed: Mutex<Option<String>>,
}

/// A live feed: [`Canal`] of [`Event`]s, closed with [`CanalClosed`].
/// Dropping it stops its consumer.
pub struct LiveFeed {
    rx: Receiver<Event>,
    end: Arc<FeedEnd>,
    task: tokio::task::AbortHandle,
}

impl LiveFeed {
    pub(crate) fn new(
        rx: Receiver<Event>,
        end: Arc<FeedEnd>,
        task: tokio::task::AbortHandle,
    ) -> Self {
        LiveFeed { rx, end, task }
    }

    fn closed(&self) -> CanalClosed {
        let missed = self.end.missed.load(Ordering::Acquire);
        let failed = self
            .end
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let reason = if missed > 0 {
            CloseReason::Lagged { missed }
        } else if let Some(why) = failed {
            CloseReason::Failed(why)
        } else {
            CloseReason::StoreClosed
        };
        CanalClosed { reason }
    }
}

impl Canal for LiveFeed {
    type Item = Event;
    type Error = CanalClosed;

    fn pull_batch(
        &mut self,
        max: usize,
        deadline: Duration,
    ) -> Result<CanalBatch<Event>, CanalClosed> {
        let mut out = Vec::new();
        match self.rx.recv_timeout(deadline) {
            Ok(e) => out.push(e),
            Err(RecvTimeoutError::Timeout) => return Ok(CanalBatch::Empty),
            Err(RecvTimeoutError::Disconnected) => return Err(self.closed()),
        }
        while out.len() < max.max(1) {
            match self.rx.try_recv() {
                Ok(e) => out.push(e),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        Ok(CanalBatch::from_vec(out))
    }
}

impl Drop for LiveFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards the consumer's messages of partition `p` matching `region`
/// into `tx` until the buffer is full (lagged), the consumer fails, or the
/// feed is dropped.
pub(crate) async fn forward(
    p: u32,
    region: Region,
    mut messages: async_nats::jetstream::consumer::push::Ordered,
    tx: SyncSender<Event>,
    end: Arc<FeedEnd>,
) {
    use futures_util::StreamExt;
    while let Some(m) = messages.next().await {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                *end.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                return;
            }
        };
        let sequence = match m.info() {
            Ok(info) => info.stream_sequence,
            Err(e) => {
                *end.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                return;
            }
        };
        let event = match codec::decode(p, sequence, &m.payload) {
            Ok(e) => e,
            Err(e) => {
                *end.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                return;
            }
        };
        if !region.matches(&event.header) {
            continue;
        }
        match tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                end.missed.fetch_add(1, Ordering::AcqRel);
                return;
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
    *end.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some("the consumer ended".into());
}
