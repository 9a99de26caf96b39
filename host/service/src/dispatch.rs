//! One place that turns an operation into a result, for the socket and
//! the HTTP API alike.

use crate::operator::Operator;
use crate::protocol::Op;
use crate::query;
use crate::served_log::ServedLog;
use crate::wire_error::{ErrorCode, WireError};
use batpak_store::{BulkAppend, EventId, Store};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A reply's value as its JSON text (what the socket and HTTP send).
fn to_raw(v: &impl serde::Serialize) -> Result<Box<RawValue>, WireError> {
    serde_json::value::to_raw_value(v).map_err(|e| WireError::new(ErrorCode::Store, e.to_string()))
}

/// Counters for `/metrics`: counts only, nothing about event contents.
#[derive(Default, Debug)]
pub(crate) struct Metrics {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub appended: AtomicU64,
    pub local_connections: AtomicU64,
    pub http_connections: AtomicU64,
    pub http_unauthorized: AtomicU64,
}

pub(crate) struct Ctx {
    /// What appends, reads and follow streams go to.
    pub log: Arc<dyn ServedLog>,
    /// The embedded store, when that is what is served: the control
    /// socket, bulk appends and `verify` need it (a cluster host serves
    /// HTTP only).
    pub store: Option<Store>,
    pub operator: Arc<dyn Operator>,
    pub stop: AtomicBool,
    pub metrics: Metrics,
}

impl Ctx {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The embedded store, or why `what` is not served here (a cluster
    /// host has none).
    fn embedded(&self, what: &str) -> Result<&Store, WireError> {
        self.store.as_ref().ok_or_else(|| {
            WireError::new(
                ErrorCode::Unsupported,
                format!("{what} is served by a host on an embedded store only"),
            )
        })
    }

    /// Runs `op`. A panic in a handler becomes an error reply: a hostile
    /// request never takes the host down.
    pub(crate) fn dispatch(&self, op: Op) -> Result<Box<RawValue>, WireError> {
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.run(op))) {
            Ok(r) => r,
            Err(p) => Err(WireError::new(
                ErrorCode::Store,
                format!(
                    "the host failed on this request ({}); it keeps serving — please report this",
                    batpak_store::panic_message(p.as_ref())
                ),
            )),
        }
    }

    fn run(&self, op: Op) -> Result<Box<RawValue>, WireError> {
        let o = &self.operator;
        let parse_event = |s: &str| {
            s.parse::<EventId>().map_err(|_| {
                WireError::new(
                    ErrorCode::BadRequest,
                    format!("event: {s:?} is not an event id; expected 32 hex digits"),
                )
            })
        };
        let value = |v: Result<Value, serde_json::Error>| {
            v.map_err(|e| WireError::new(ErrorCode::Store, e.to_string()))
        };
        let v: Result<Value, WireError> = match op {
            Op::Ping => Ok(json!({
                "pid": std::process::id(),
                "data": self.store.as_ref().map(|s| s.dir().display().to_string()),
            })),
            Op::Append { events } => {
                let n = events.len() as u64;
                let r = self.log.append(events)?;
                self.metrics.appended.fetch_add(n, Ordering::Relaxed);
                Ok(r)
            }
            Op::Read(q) => {
                // Straight to the reply's text: each event line keeps its
                // payload's stored bytes (a `Value` would re-encode them).
                let page = self.log.read(&q, &|| self.stopping())?;
                return to_raw(&page);
            }
            Op::Verify => query::verify(self.embedded("verify")?),
            Op::Status => Ok(o.status_reply()?),
            Op::Pause { name } => Ok(o.pause_reply(&name)?),
            Op::Resume { name } => Ok(o.resume_reply(&name)?),
            Op::Reset { name, to } => value(serde_json::to_value(o.reset(&name, to)?)),
            Op::Parked { plugin } => Ok(Value::Array(o.parked(plugin.as_deref())?)),
            Op::ParkedReplay { plugin, event } => {
                let event = event.as_deref().map(parse_event).transpose()?;
                Ok(Value::Array(o.parked_replay(plugin.as_deref(), event)?))
            }
            Op::Swap { name, file } => Ok(o.swap(&name, &file)?),
            Op::BulkPart { .. } | Op::BulkCommit => Err(WireError::new(
                ErrorCode::BadRequest,
                "bulk appends are served on the control socket only (`batpak-host append --jsonl`)",
            )),
        };
        to_raw(&v?)
    }

    /// Runs a bulk operation for the connection that holds `bulk` (its
    /// open transaction, if any); other operations go to [`Ctx::dispatch`].
    pub(crate) fn dispatch_bulk(
        &self,
        bulk: &mut Option<BulkAppend>,
        op: Op,
    ) -> Result<Box<RawValue>, WireError> {
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| self.run_bulk(bulk, op)));
        let r = r.unwrap_or_else(|p| {
            Err(WireError::new(
                ErrorCode::Store,
                format!(
                    "the host failed on this request ({}); it keeps serving — please report this",
                    batpak_store::panic_message(p.as_ref())
                ),
            ))
        });
        if r.is_err() {
            // A refused part abandons the transaction: nothing of it counts.
            if let Some(b) = bulk.take() {
                b.abort();
            }
        }
        r
    }

    fn run_bulk(&self, bulk: &mut Option<BulkAppend>, op: Op) -> Result<Box<RawValue>, WireError> {
        let v: Result<Value, WireError> = match op {
            Op::BulkPart { events } => {
                if events.is_empty() {
                    return Err(WireError::new(
                        ErrorCode::BadRequest,
                        "no events in the part",
                    ));
                }
                if events.len() > query::MAX_APPEND_EVENTS {
                    return Err(WireError::new(
                        ErrorCode::TooLarge,
                        format!(
                            "{} events in one part; send at most {} per part",
                            events.len(),
                            query::MAX_APPEND_EVENTS
                        ),
                    ));
                }
                let props = events
                    .into_iter()
                    .enumerate()
                    .map(|(i, e)| query::proposal(i, e))
                    .collect::<Result<Vec<_>, _>>()?;
                let meta: Vec<(batpak_store::Coordinate, String)> = props
                    .iter()
                    .map(|p| (p.coordinate.clone(), p.kind.clone()))
                    .collect();
                let b = match bulk {
                    Some(b) => b,
                    None => bulk.insert(
                        self.embedded("bulk appends")?
                            .begin_bulk()
                            .map_err(query::store_error)?,
                    ),
                };
                let receipts = b.append(props).map_err(query::store_error)?;
                let list: Vec<Value> = receipts
                    .iter()
                    .zip(&meta)
                    .map(|(r, (c, k))| query::receipt_json(r, c, k))
                    .collect();
                Ok(json!({ "receipts": list }))
            }
            Op::BulkCommit => {
                let b = bulk.take().ok_or_else(|| {
                    WireError::new(
                        ErrorCode::BadRequest,
                        "no bulk transaction is open on this connection",
                    )
                })?;
                let n = b.commit().map_err(query::store_error)?;
                self.metrics.appended.fetch_add(n, Ordering::Relaxed);
                Ok(json!({ "appended": n }))
            }
            other => return self.run(other),
        };
        to_raw(&v?)
    }

    /// The Prometheus text exposition of the counters and reactor states.
    pub(crate) fn metrics_text(&self) -> String {
        let m = &self.metrics;
        let mut s = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "batpak_service_requests_total",
            "Requests served (socket and HTTP).",
            m.requests.load(Ordering::Relaxed),
        );
        counter(
            "batpak_service_errors_total",
            "Requests answered with an error.",
            m.errors.load(Ordering::Relaxed),
        );
        counter(
            "batpak_service_appended_total",
            "Events appended through the service.",
            m.appended.load(Ordering::Relaxed),
        );
        counter(
            "batpak_service_local_connections_total",
            "Control socket connections accepted.",
            m.local_connections.load(Ordering::Relaxed),
        );
        counter(
            "batpak_service_http_connections_total",
            "HTTP connections accepted.",
            m.http_connections.load(Ordering::Relaxed),
        );
        counter(
            "batpak_service_http_unauthorized_total",
            "HTTP requests refused for a missing or wrong token.",
            m.http_unauthorized.load(Ordering::Relaxed),
        );
        self.log.write_metrics(&mut s);
        self.operator.write_metrics(&mut s);
        s
    }
}
