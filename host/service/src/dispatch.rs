//! One place that turns an operation into a result, for the socket and
//! the HTTP API alike.

use crate::operator::Operator;
use crate::protocol::Op;
use crate::query;
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

/// A per-reactor metric: name, help, Prometheus type, how to read it.
type ReactorMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&crate::ReactorState) -> u64,
);

pub(crate) struct Ctx {
    pub store: Store,
    pub operator: Arc<dyn Operator>,
    pub stop: AtomicBool,
    pub metrics: Metrics,
}

impl Ctx {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
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
                "data": self.store.dir().display().to_string(),
            })),
            Op::Append { events } => {
                let n = events.len() as u64;
                let r = query::append(&self.store, events)?;
                self.metrics.appended.fetch_add(n, Ordering::Relaxed);
                Ok(r)
            }
            Op::Read(q) => {
                // Straight to the reply's text: each event line keeps its
                // payload's stored bytes (a `Value` would re-encode them).
                let page = query::read(&self.store, &q, &|| self.stopping())?;
                return to_raw(&page);
            }
            Op::Verify => query::verify(&self.store),
            Op::Status => value(serde_json::to_value(o.try_status()?)),
            Op::Pause { name } => value(serde_json::to_value(o.pause(&name)?)),
            Op::Resume { name } => value(serde_json::to_value(o.resume(&name)?)),
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
                    None => bulk.insert(self.store.begin_bulk().map_err(query::store_error)?),
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
        let w = self.store.watermarks();
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
        let _ = writeln!(s, "# HELP batpak_store_durable_sequence Highest durable global sequence.\n# TYPE batpak_store_durable_sequence gauge\nbatpak_store_durable_sequence {}", w.durable);
        let states = self.operator.status();
        // Counts that only grow are Prometheus counters (`_total`, so
        // `rate()` reads a restart as a reset); positions and lag are gauges.
        let per_reactor: [ReactorMetric; 5] = [
            (
                "batpak_reactor_position",
                "Last global sequence the reactor handled.",
                "gauge",
                |r| r.position,
            ),
            (
                "batpak_reactor_lag",
                "Durable events in the reactor's region not yet handled.",
                "gauge",
                |r| r.lag,
            ),
            (
                "batpak_reactor_events_in_total",
                "Events delivered since start.",
                "counter",
                |r| r.events_in,
            ),
            (
                "batpak_reactor_reactions_out_total",
                "Reactions appended since start.",
                "counter",
                |r| r.reactions_out,
            ),
            (
                "batpak_reactor_parked_total",
                "Events parked since start.",
                "counter",
                |r| r.parked,
            ),
        ];
        for (name, help, kind, f) in per_reactor {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for r in &states {
                let _ = writeln!(s, "{name}{{reactor=\"{}\"}} {}", r.name, f(r));
            }
        }
        let _ = writeln!(s, "# HELP batpak_reactor_running 1 when the reactor is running.\n# TYPE batpak_reactor_running gauge");
        for r in &states {
            let running = u64::from(r.state == crate::ReactorRunState::Running);
            let _ = writeln!(
                s,
                "batpak_reactor_running{{reactor=\"{}\"}} {running}",
                r.name
            );
        }
        s
    }
}
