//! The seam between the service and the log it serves: appends, reads,
//! follow streams and the log's own `/metrics` lines. The HTTP API (and the
//! control socket) are written once against [`ServedLog`]; the embedded
//! [`Store`] implements it here, and the host library implements it for a
//! NATS JetStream cluster (this crate knows nothing of NATS: dependencies
//! flow from the host library to this crate, never back).

use crate::query::{self, NewEvent, Page, Query};
use crate::wire_error::WireError;
use batpak_store::Store;
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Duration;

/// The log a service serves. Every method is called from service threads
/// (one per connection), so implementations lock what they share.
pub trait ServedLog: Send + Sync {
    /// Appends a client's events and replies `{"receipts": [...]}` only
    /// once they are durable (the log says how a batch is stored: the
    /// embedded store appends it atomically).
    ///
    /// # Errors
    /// A bad event (nothing appended), a conflict, or a log failure; the
    /// message says what is stored.
    fn append(&self, events: Vec<NewEvent>) -> Result<Value, WireError>;

    /// One page of durable events matching `q`, waiting up to `q.wait_ms`
    /// when none match yet, or until `stop` says the host is stopping.
    ///
    /// # Errors
    /// A bad filter, damage, or a log failure.
    fn read(&self, q: &Query, stop: &dyn Fn() -> bool) -> Result<Page, WireError>;

    /// A follower of the events matching `q` (from `q.after` on; `q.limit`
    /// is the caller's business), for `GET /v1/events/follow`.
    ///
    /// # Errors
    /// A bad filter.
    fn follow(&self, q: Query) -> Result<Box<dyn Follower>, WireError>;

    /// How events are ordered, when not in one global order: sent with a
    /// follow stream as the `Batpak-Order` header (a cluster: `partition`,
    /// each event naming its partition and its sequence there).
    fn order(&self) -> Option<&'static str> {
        None
    }

    /// The log's own lines of the Prometheus text (gauges of its heads),
    /// appended to `out`. Must not wait on the network: a scrape is cheap.
    fn write_metrics(&self, out: &mut String);
}

/// A follow stream's source: each call returns the next events in order.
pub trait Follower: Send {
    /// The next matching events, each as its JSON line, waiting at most
    /// about `wait` when there are none (then an empty list), or until
    /// `stop` says the host is stopping.
    ///
    /// # Errors
    /// A failed read (damage, a failed log): the stream ends with it.
    fn next(
        &mut self,
        wait: Duration,
        stop: &dyn Fn() -> bool,
    ) -> Result<Vec<Box<RawValue>>, WireError>;
}

impl ServedLog for Store {
    fn append(&self, events: Vec<NewEvent>) -> Result<Value, WireError> {
        query::append(self, events)
    }

    fn read(&self, q: &Query, stop: &dyn Fn() -> bool) -> Result<Page, WireError> {
        query::read(self, q, stop)
    }

    fn follow(&self, q: Query) -> Result<Box<dyn Follower>, WireError> {
        Ok(Box::new(StoreFollower {
            store: self.clone(),
            q,
        }))
    }

    fn write_metrics(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP batpak_store_durable_sequence Highest durable global sequence.\n# TYPE batpak_store_durable_sequence gauge\nbatpak_store_durable_sequence {}", self.watermarks().durable);
    }
}

/// Follows the embedded store: one long-polled page after another, its
/// cursor the page's `next_after`.
struct StoreFollower {
    store: Store,
    q: Query,
}

impl Follower for StoreFollower {
    fn next(
        &mut self,
        wait: Duration,
        stop: &dyn Fn() -> bool,
    ) -> Result<Vec<Box<RawValue>>, WireError> {
        self.q.wait_ms = wait.as_millis() as u64;
        let page = query::read(&self.store, &self.q, stop)?;
        self.q.after = page.next_after;
        Ok(page.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire_error::ErrorCode;

    #[test]
    fn the_embedded_store_appends_follows_and_refuses_a_partition() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("data")).unwrap();
        let log: &dyn ServedLog = &store;
        let e = NewEvent {
            entity: "order:1".into(),
            scope: "shop".into(),
            kind: "order.placed".into(),
            payload_text: Some("{}".into()),
            ..NewEvent::default()
        };
        let r = log.append(vec![e]).unwrap();
        assert_eq!(r["receipts"][0]["seq"], 1);
        let mut f = log.follow(Query::default()).unwrap();
        let lines = f.next(Duration::from_millis(100), &|| false).unwrap();
        assert_eq!(lines.len(), 1);
        // Nothing more: an empty list after the wait, not an error.
        assert!(f
            .next(Duration::from_millis(50), &|| false)
            .unwrap()
            .is_empty());
        assert_eq!(log.order(), None);
        let q = Query {
            partition: Some(0),
            ..Query::default()
        };
        let err = log.read(&q, &|| false).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(err.message.contains("no partitions"), "{err}");
        let mut m = String::new();
        log.write_metrics(&mut m);
        assert!(m.contains("batpak_store_durable_sequence 1"), "{m}");
    }
}
