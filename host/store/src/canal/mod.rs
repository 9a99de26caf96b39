//! Canals: the delivery primitives that feed consumers.
//!
//! Two kinds share one pull surface, [`Canal::pull_batch`]:
//! - [`Cursor`]: ordered by global sequence, delivers only **durable** events,
//!   checkpointed in the log, at-least-once across restarts (effectively-once
//!   when the consumer commits its output together with the checkpoint).
//! - [`Subscription`]: live, bounded, lossy; a subscriber that falls behind is
//!   cut off and told how many events it missed.
//!
//! [`ReactorCanal`] selects between them for reactors.

mod cursor;
mod subscription;

pub use cursor::Cursor;
pub use subscription::Subscription;

use crate::event::{Event, EventId};
use crate::event_view::EventView;
use std::fmt;
use std::time::Duration;

/// One pulled canal batch without forcing one allocation for one-item canals.
#[derive(Debug)]
pub enum CanalBatch<I> {
    /// No matching item was available before the deadline.
    Empty,
    /// Exactly one item was available.
    One(I),
    /// More than one item was available.
    Many(Vec<I>),
}

impl<I> CanalBatch<I> {
    /// True when this batch contains no item.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        matches!(self, Self::Empty)
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(_) => 1,
            Self::Many(v) => v.len(),
        }
    }

    /// The items as a slice.
    pub fn as_slice(&self) -> &[I] {
        match self {
            Self::Empty => &[],
            Self::One(i) => std::slice::from_ref(i),
            Self::Many(v) => v,
        }
    }

    /// The items as a vector.
    pub fn into_vec(self) -> Vec<I> {
        match self {
            Self::Empty => Vec::new(),
            Self::One(i) => vec![i],
            Self::Many(v) => v,
        }
    }

    /// Builds the right variant for a vector of items.
    pub fn from_vec(mut v: Vec<I>) -> Self {
        match v.len() {
            0 => Self::Empty,
            1 => Self::One(v.pop().expect("one item")),
            _ => Self::Many(v),
        }
    }
}

/// Minimal event reference yielded by a [`Canal`].
pub trait CanalItem {
    /// Event id to fetch from the store.
    fn event_id(&self) -> u128;
}

impl CanalItem for Event {
    fn event_id(&self) -> u128 {
        self.header.id.0
    }
}

impl CanalItem for EventView {
    fn event_id(&self) -> u128 {
        self.id().0
    }
}

impl CanalItem for EventId {
    fn event_id(&self) -> u128 {
        self.0
    }
}

/// Why a canal stopped producing items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The consumer or its handle asked the canal to stop.
    Stopped,
    /// The store was closed.
    StoreClosed,
    /// A lossy subscriber fell behind its bound and was cut off; `missed`
    /// counts the matching events it did not receive, up to the moment it
    /// noticed.
    Lagged {
        /// Matching events dropped for this subscriber.
        missed: u64,
    },
    /// The canal failed reading the store (message says where).
    Failed(String),
}

/// Terminal canal closure, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanalClosed {
    /// Why the canal closed.
    pub reason: CloseReason,
}

impl fmt::Display for CanalClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            CloseReason::Stopped => write!(f, "canal closed: stopped"),
            CloseReason::StoreClosed => write!(f, "canal closed: the store was closed"),
            CloseReason::Lagged { missed } => write!(
                f,
                "canal closed: subscriber fell behind and was cut off after missing {missed} event(s); resubscribe, or use a cursor to receive every event"
            ),
            CloseReason::Failed(m) => write!(f, "canal closed: {m}"),
        }
    }
}

impl std::error::Error for CanalClosed {}

/// Common consumption surface over the delivery primitives.
///
/// Implementors keep their own ordering, backpressure, durability and
/// checkpoint contracts; `Canal` only standardises "produce the next batch".
pub trait Canal: Send {
    /// Per-item unit yielded by this canal.
    type Item: CanalItem + Send;
    /// Error returned by a terminal or failed pull.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Pull up to `max` items, blocking (without spinning) for at most
    /// `deadline` when nothing is available. An empty batch means the deadline
    /// passed; an error means the canal cannot produce more items.
    ///
    /// # Errors
    /// The canal's terminal error.
    fn pull_batch(
        &mut self,
        max: usize,
        deadline: Duration,
    ) -> Result<CanalBatch<Self::Item>, Self::Error>;
}

/// Lifecycle for a running canal-backed worker (for example a reactor).
pub trait CanalHandle: Send {
    /// The worker's terminal failure (the seed's `StoreError`, widened so a
    /// runtime can report its own typed failures).
    type Error: std::error::Error + Send + Sync + 'static;
    /// Signal stop without blocking. The worker finishes the batch in flight.
    fn stop(&self);
    /// Wait for the worker to exit.
    ///
    /// # Errors
    /// The worker's terminal failure, or a panic turned into an error.
    fn join(self: Box<Self>) -> Result<(), Self::Error>;
    /// Signal stop, then wait for the worker to exit.
    ///
    /// # Errors
    /// As [`join`](Self::join).
    fn stop_and_join(self: Box<Self>) -> Result<(), Self::Error>;
}

/// Which delivery primitive feeds a reactor.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum ReactorCanal {
    /// Ordered, durable, checkpointed replay through [`Cursor`]. The default:
    /// nothing is skipped and, with the checkpoint committed alongside the
    /// reactions, each event's reactions land exactly once.
    #[default]
    CursorGuaranteed,
    /// Lossy push observation through [`Subscription`]. No checkpoint, no
    /// replay; for live views that may skip work under backpressure.
    LossySubscription,
}
