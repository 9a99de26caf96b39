//! `run --store nats://… --listen ADDR`: the HTTP API of the embedded host
//! (`batpak-service`'s server, written once: same routes, token rules and
//! limits) served against the cluster. This file is the cluster's side of
//! the service's two seams:
//!
//! - [`ClusterLog`] ([`ServedLog`]): `POST /v1/events` appends each event
//!   to its entity's partition through the cluster `append`'s own path
//!   ([`Causes::append`]: causation settled, durable on a quorum, the
//!   receipt with `partition` and `seq` there). There is no transaction
//!   across partitions, so an array is checked whole first (nothing is
//!   written when one event is bad) and then appended in order, as
//!   `append --jsonl` on a cluster; a failure part-way says which events
//!   are stored. `GET /v1/events` and the follow stream read partition by
//!   partition ([`scan_partition`], each line as the cluster `events` prints
//!   it, [`cluster_line`]); order is per partition, and every reply says so
//!   (`"order": "partition"` and a cursor per partition in a page, the
//!   `Batpak-Order: partition` header on a follow stream).
//! - [`ClusterOperator`] (`batpak_service::Operator`, in its own file):
//!   status, pause and resume over the cluster's operations, and the
//!   per-slot `/metrics` series of this host.
//!
//! The bearer token comes from `--token-file` (a cluster host keeps no
//! local directory; every host of a cluster can be given the same file).

use crate::cluster::address::ClusterAddress;
use crate::cluster::append::{Causes, ClusterAppendError};
use crate::cluster::cluster_operator::ClusterOperator;
use crate::cluster::events::cluster_line;
use crate::cluster::held_slots::HeldSlots;
use crate::cluster::partition_scan::scan_partition;
use batpak_nats::{LogError, NatsLog};
use batpak_service::{
    ErrorCode, Follower, NewEvent, Page, PartitionPage, Query, ServedLog, WireError, MAX_PAGE,
    MAX_PAGE_BYTES, MAX_WAIT_MS,
};
use batpak_store::{Event, EventId, Region};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a cluster's reads are ordered, in replies and the follow header.
pub const ORDER: &str = "partition";

/// Longest single wait on a partition before every partition is read again
/// (a wait is woken by one partition's new events).
const WAIT_SLICE: Duration = Duration::from_millis(250);

fn bad(m: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::BadRequest, m)
}

/// A log error as the HTTP API answers it.
fn log_error(e: LogError) -> WireError {
    let code = match &e {
        LogError::Conflict { .. } => ErrorCode::Conflict,
        LogError::Invalid(_) | LogError::BatchTooLarge { .. } => ErrorCode::BadRequest,
        LogError::Unsupported { .. } => ErrorCode::Unsupported,
        // Nothing stored; retry shortly.
        LogError::Unavailable { .. } | LogError::Contended { .. } => ErrorCode::Busy,
        _ => ErrorCode::Store,
    };
    WireError::new(code, e.to_string())
}

fn append_error(e: ClusterAppendError) -> WireError {
    match e {
        e @ ClusterAppendError::UnknownCausation(_) => {
            WireError::new(ErrorCode::NotFound, e.to_string())
        }
        ClusterAppendError::Log(e) => log_error(e),
    }
}

/// The filters of a [`Query`], checked, as the cluster applies them to
/// each event.
struct Filter {
    region: Region,
    system: bool,
    entity: Option<String>,
    id: Option<EventId>,
    caused_by: Option<EventId>,
    correlation: Option<EventId>,
}

impl Filter {
    fn new(q: &Query) -> Result<Filter, WireError> {
        for k in &q.kinds {
            batpak_store::validate_kind(k).map_err(|e| bad(format!("kinds: {e}")))?;
        }
        if q.entity.is_some() && q.entity_prefix.is_some() {
            return Err(bad("give either entity or entity_prefix, not both"));
        }
        let id = |what: &str, v: &Option<String>| {
            v.as_deref()
                .map(|s| {
                    s.parse::<EventId>().map_err(|_| {
                        bad(format!(
                            "{what}: {s:?} is not an event id; expected 32 hex digits as printed \
                             in an event's \"id\""
                        ))
                    })
                })
                .transpose()
        };
        let mut region = Region::all().kinds(q.kinds.clone());
        region.scope = q.scope.clone();
        region.entity_prefix = q.entity_prefix.clone().or_else(|| q.entity.clone());
        Ok(Filter {
            region,
            // A listed kind filters (`batpak.*` ones too); `system` without
            // kinds adds the host's records, as on the embedded store.
            system: q.system && q.kinds.is_empty(),
            entity: q.entity.clone(),
            id: id("id", &q.id)?,
            caused_by: id("caused_by", &q.caused_by)?,
            correlation: id("correlation", &q.correlation)?,
        })
    }

    fn matches(&self, e: &Event) -> bool {
        let h = &e.header;
        self.entity
            .as_ref()
            .is_none_or(|en| &h.coordinate.entity == en)
            && self.id.is_none_or(|i| h.id == i)
            && self.caused_by.is_none_or(|c| h.causation == Some(c))
            && self.correlation.is_none_or(|c| h.correlation == c)
            && self.region.matches_parts_or_system(
                &h.coordinate.entity,
                &h.coordinate.scope,
                &h.kind,
                self.system,
            )
    }
}

/// The cluster as the service's [`ServedLog`] (see the module docs).
pub struct ClusterLog {
    log: Arc<NatsLog>,
    address: String,
}

impl ClusterLog {
    /// Serves `log` (the cluster at `address`, for messages).
    pub fn new(log: Arc<NatsLog>, address: &ClusterAddress) -> ClusterLog {
        ClusterLog {
            log,
            address: address.to_string(),
        }
    }

    /// The partitions `q` reads, as the cluster `events` picks them.
    fn partitions(&self, q: &Query) -> Result<Vec<u32>, WireError> {
        let k = self.log.layout().partitions;
        if q.after > 0 && q.partition.is_none() {
            return Err(bad(format!(
                "after={}: on a cluster sequences are per partition; add partition=N (each \
                 event names its \"partition\" and its \"seq\" there, and a page gives each \
                 partition's next_after)",
                q.after
            )));
        }
        Ok(match (q.partition, &q.entity) {
            (Some(p), _) if p >= k => {
                return Err(bad(format!(
                    "partition={p}: the cluster has partitions 0 to {}",
                    k - 1
                )))
            }
            (Some(p), _) => vec![p],
            // An entity lives in one partition.
            (None, Some(entity)) => vec![self.log.partition_of(entity)],
            (None, None) => (0..k).collect(),
        })
    }

    /// One pass over `parts` from `afters` (moved on), collecting matching
    /// lines until `max` events or [`MAX_PAGE_BYTES`] (always at least one
    /// event); per partition whether it stopped full. On an error no
    /// cursor moves, so nothing is skipped when the pass is tried again.
    fn pass(
        &self,
        filter: &Filter,
        parts: &[u32],
        cursors: &mut [u64],
        max: usize,
    ) -> Result<(Vec<Box<RawValue>>, Vec<bool>), WireError> {
        let mut afters = cursors.to_vec();
        let mut events: Vec<Box<RawValue>> = Vec::new();
        let mut bytes = 0usize;
        let mut full = vec![false; parts.len()];
        for (i, &p) in parts.iter().enumerate() {
            if events.len() >= max || (bytes >= MAX_PAGE_BYTES && !events.is_empty()) {
                full[i] = true;
                continue;
            }
            let mut damage = None;
            // Set when the page ends before an event: the cursor stays
            // just before it, so it comes in the next page.
            let mut cut_before = None;
            let mut stopped = false;
            let scanned = scan_partition(
                &self.log,
                p,
                afters[i],
                |e| {
                    if !filter.matches(e) {
                        return true;
                    }
                    let line = cluster_line(p, e);
                    if !events.is_empty() && bytes + line.len() > MAX_PAGE_BYTES {
                        cut_before = Some(e.header.sequence - 1);
                        stopped = true;
                        return false;
                    }
                    bytes += line.len();
                    events.push(RawValue::from_string(line).expect("an event line is JSON"));
                    stopped = events.len() >= max;
                    !stopped
                },
                &mut |d| {
                    damage.get_or_insert(d);
                },
            )
            .map_err(log_error)?;
            if let Some(d) = damage {
                return Err(WireError::new(
                    ErrorCode::Store,
                    format!(
                        "{d}; reported, never read around (`batpak-host verify --store {}` \
                         checks every partition)",
                        self.address
                    ),
                ));
            }
            afters[i] = cut_before.unwrap_or(scanned);
            full[i] = stopped;
        }
        cursors.copy_from_slice(&afters);
        Ok((events, full))
    }

    /// Waits (at most `wait`, one slice) for new events in the first of
    /// `parts`; the next pass reads every partition again.
    fn wait(&self, parts: &[u32], afters: &[u64], wait: Duration) {
        if let (Some(p), Some(after)) = (parts.first(), afters.first()) {
            if !wait.is_zero() {
                let _ = self.log.wait(*p, *after, wait.min(WAIT_SLICE));
            }
        }
    }
}

impl ServedLog for ClusterLog {
    fn append(&self, events: Vec<NewEvent>) -> Result<Value, WireError> {
        let props = batpak_service::proposals(events)?;
        // Every event checked first (causes: an event of the cluster or an
        // earlier event's "id"): nothing is written when one is bad.
        let mut causes = Causes::default();
        for (i, p) in props.iter().enumerate() {
            let mut p = p.clone();
            causes.settle(&self.log, &mut p).map_err(|e| {
                let w = append_error(e);
                WireError::new(w.code, format!("event {i}: {}", w.message))
            })?;
            causes.remember(&p);
        }
        let n = props.len();
        let mut causes = Causes::default();
        let mut receipts = Vec::with_capacity(n);
        for (i, mut p) in props.into_iter().enumerate() {
            // An id fixed here can be named when the outcome is unknown: a
            // retry with it is de-duplicated.
            let id = *p.id.get_or_insert_with(EventId::generate);
            match causes.append(&self.log, p) {
                Ok(r) => receipts.push(r),
                Err(e) => {
                    let unknown = matches!(e, ClusterAppendError::Log(LogError::Unknown { .. }));
                    let mut w = append_error(e);
                    if unknown {
                        w.message = format!(
                            "{}; its id is {id}: send it again with \"id\": \"{id}\" and it is \
                             stored once (de-duplicated within 2 minutes)",
                            w.message
                        );
                    }
                    let message = if i == 0 {
                        format!("event 0: {}", w.message)
                    } else {
                        format!(
                            "event {i}: {}; events 0 to {} are stored (ids {}), the rest were not \
                             sent — on a cluster a request is appended event by event, not as one \
                             transaction: events with an \"id\" or \"idempotency_key\" can be sent \
                             again (de-duplicated within 2 minutes)",
                            w.message,
                            i - 1,
                            receipts
                                .iter()
                                .map(|r| r["id"].as_str().unwrap_or("?"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    return Err(WireError::new(w.code, message));
                }
            }
        }
        Ok(json!({ "receipts": receipts, "order": ORDER }))
    }

    fn read(&self, q: &Query, stop: &dyn Fn() -> bool) -> Result<Page, WireError> {
        let filter = Filter::new(q)?;
        let parts = self.partitions(q)?;
        let max = usize::try_from(q.limit.unwrap_or(MAX_PAGE as u64))
            .unwrap_or(MAX_PAGE)
            .clamp(1, MAX_PAGE);
        let deadline = Instant::now() + Duration::from_millis(q.wait_ms.min(MAX_WAIT_MS));
        let mut afters = vec![q.after; parts.len()];
        loop {
            let (events, full) = self.pass(&filter, &parts, &mut afters, max)?;
            let more = full.iter().any(|f| *f);
            let now = Instant::now();
            if !events.is_empty() || more || now >= deadline || stop() {
                return Ok(Page {
                    events,
                    next_after: if parts.len() == 1 { afters[0] } else { 0 },
                    more,
                    order: Some(ORDER.into()),
                    partitions: parts
                        .iter()
                        .zip(&afters)
                        .zip(&full)
                        .map(|((p, a), f)| PartitionPage {
                            partition: *p,
                            next_after: *a,
                            more: *f,
                        })
                        .collect(),
                });
            }
            self.wait(&parts, &afters, deadline - now);
        }
    }

    fn follow(&self, q: Query) -> Result<Box<dyn Follower>, WireError> {
        let filter = Filter::new(&q)?;
        let parts = self.partitions(&q)?;
        Ok(Box::new(ClusterFollower {
            log: ClusterLog {
                log: self.log.clone(),
                address: self.address.clone(),
            },
            filter,
            afters: vec![q.after; parts.len()],
            parts,
        }))
    }

    fn order(&self) -> Option<&'static str> {
        Some(ORDER)
    }

    fn write_metrics(&self, out: &mut String) {
        let name = "batpak_cluster_partition_sequence";
        let _ = writeln!(
            out,
            "# HELP {name} Highest sequence of the partition this host has seen stored (a lower bound of its head).\n# TYPE {name} gauge"
        );
        for p in 0..self.log.layout().partitions {
            let _ = writeln!(
                out,
                "{name}{{partition=\"{p}\"}} {}",
                self.log.last_known(p)
            );
        }
    }
}

/// A follow stream over the cluster: one cursor per partition.
struct ClusterFollower {
    log: ClusterLog,
    filter: Filter,
    parts: Vec<u32>,
    afters: Vec<u64>,
}

impl Follower for ClusterFollower {
    fn next(
        &mut self,
        wait: Duration,
        stop: &dyn Fn() -> bool,
    ) -> Result<Vec<Box<RawValue>>, WireError> {
        let pass = |f: &mut Self| {
            match f.log.pass(&f.filter, &f.parts, &mut f.afters, MAX_PAGE) {
                Ok((events, _)) => Ok(events),
                // A partition without a leader for a moment (an election):
                // the stream goes on from the same cursors once it answers.
                Err(e) if e.code == ErrorCode::Busy => {
                    std::thread::sleep(wait.min(WAIT_SLICE));
                    Ok(Vec::new())
                }
                Err(e) => Err(e),
            }
        };
        let events = pass(self)?;
        if !events.is_empty() || stop() {
            return Ok(events);
        }
        self.log.wait(&self.parts, &self.afters, wait);
        pass(self)
    }
}

/// Starts the HTTP API of a cluster host (see the module docs) on `listen`,
/// with the bearer token in `token_file`.
///
/// # Errors
/// The address cannot be bound, or the token file is missing or unusable
/// (the message names the fix).
pub fn serve(
    address: &ClusterAddress,
    log: Arc<NatsLog>,
    held: Arc<HeldSlots>,
    listen: std::net::SocketAddr,
    token_file: &std::path::Path,
) -> Result<batpak_service::Service, batpak_service::ServiceError> {
    batpak_service::Service::start_http(
        Arc::new(ClusterLog::new(log.clone(), address)),
        Arc::new(ClusterOperator::new(address.clone(), log, held)),
        listen,
        token_file,
    )
}
