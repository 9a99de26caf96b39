//! Store operations shared by the socket and the HTTP API: appends,
//! filtered reads (one page, optionally long-polled) and verify, with the
//! JSON shapes the CLI prints.

use crate::wire_error::{ErrorCode, WireError};
use batpak_store::{
    hex, AppendOptions, Coordinate, Event, EventId, Lookup, Proposal, Receipt, Region, Store,
    StoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// One new event, as a client sends it.
///
/// `payload` is any JSON value and is stored as its JSON text; `payload_text`
/// is stored exactly as given (what `append --payload` and `--jsonl` send
/// once they have checked the text is JSON with no key given twice, and
/// `append --payload-text` sends as is). Exactly one of the two. The HTTP
/// API reads a body with [`parse_events`], which keeps each `"payload"` as
/// the text the client sent (it arrives here as `payload_text`); a
/// `payload` built as a [`Value`] is stored as serde_json writes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// Entity (e.g. `order:42`).
    pub entity: String,
    /// Scope (e.g. `shop`).
    pub scope: String,
    /// Kind; `batpak.*` is refused.
    pub kind: String,
    /// Payload as JSON, stored as its JSON text (`"payload": null` is the
    /// JSON `null`, not a missing payload).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub payload: Option<serde_json::Value>,
    /// Payload text, stored verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_text: Option<String>,
    /// Explicit id (32 hex digits) for the new event. A retry with the same
    /// id returns the first receipt; a later event of the same batch may
    /// name it as its causation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Id (32 hex digits) of the causing event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation: Option<String>,
    /// Correlation id (32 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
    /// A retry with the same key returns the first receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The entity's current sequence must equal this (0 for a new entity),
    /// or the whole batch is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_entity_seq: Option<u64>,
}

/// A field that is present is `Some`, even when it is `null` (serde's
/// default for `Option` would read `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Most events one read page returns.
pub const MAX_PAGE: usize = 10_000;
/// Most stored bytes (event headers and payloads) one read page carries:
/// a page ends early with `more: true` when the next event would pass it,
/// but always carries at least one event (a payload is at most
/// `MAX_PAYLOAD_LEN`, 16 MiB). Bounds the host's memory per read and keeps
/// every reply under the socket's frame limit.
pub const MAX_PAGE_BYTES: usize = 8 << 20;
/// Longest a read long-polls for new events.
pub const MAX_WAIT_MS: u64 = 30_000;
/// Most events one append request carries.
pub const MAX_APPEND_EVENTS: usize = 10_000;

/// Which events to read: the filters of `batpak-host events`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Query {
    /// Only this entity (exact name).
    pub entity: Option<String>,
    /// Only entities starting with this prefix.
    pub entity_prefix: Option<String>,
    /// Only this scope.
    pub scope: Option<String>,
    /// Only events carrying this correlation id (32 hex digits).
    pub correlation: Option<String>,
    /// Only events directly caused by this event (32 hex digits).
    pub caused_by: Option<String>,
    /// Only the event with this id (32 hex digits).
    pub id: Option<String>,
    /// Only these kinds (none: every kind).
    pub kinds: Vec<String>,
    /// Only events with a global sequence greater than this (on a cluster:
    /// with a sequence greater than this in [`Query::partition`]).
    pub after: u64,
    /// On a cluster: only this partition (sequences are per partition, so
    /// `after` needs it there). The embedded store refuses it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// At most this many events in this page (capped at [`MAX_PAGE`]).
    pub limit: Option<u64>,
    /// Include the host's own `batpak.*` events.
    pub system: bool,
    /// When nothing matches yet, wait up to this long for new events
    /// (capped at [`MAX_WAIT_MS`]).
    pub wait_ms: u64,
}

/// One page of a read: durable events only, in log order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Page {
    /// The events, each the exact JSON line `events` prints
    /// ([`event_line`]): a JSON payload is its stored bytes, so its numbers,
    /// key order and spacing come back as they were written.
    pub events: Vec<Box<RawValue>>,
    /// Pass this as `after` for the next page: every matching event up to
    /// it has been returned.
    pub next_after: u64,
    /// More matching events may follow at once (the page was full: its
    /// event limit or [`MAX_PAGE_BYTES`] was reached); when false, every durable matching event has been returned.
    pub more: bool,
    /// On a cluster, `"partition"`: there is no global order, each event
    /// names its `partition` and its `seq` there (absent on the embedded
    /// store, whose order is global).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// On a cluster, each partition read and where to go on in it: pass
    /// `partition` and its `next_after` as `after` for its next page
    /// (`next_after` above is then the one partition's, when one was read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionPage>,
}

/// Where a cluster read stopped in one partition (see [`Page::partitions`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionPage {
    /// The partition.
    pub partition: u32,
    /// Every matching event of the partition up to this sequence has been
    /// returned.
    pub next_after: u64,
    /// More matching events may follow in this partition at once.
    pub more: bool,
}

/// A receipt as `append` prints it.
pub fn receipt_json(r: &Receipt, c: &Coordinate, kind: &str) -> Value {
    serde_json::to_value(ReceiptLine::new(r, c, kind)).expect("a receipt encodes")
}

/// A receipt as `append` prints it, borrowed: serialised straight to a
/// line (as a large `append --jsonl` does for each event) without the
/// map of [`receipt_json`]. Its fields are that value's, in sorted order,
/// so both print the same text.
#[derive(Serialize)]
pub struct ReceiptLine<'a> {
    deduplicated: bool,
    entity: &'a str,
    entity_seq: u64,
    hash: String,
    id: String,
    kind: &'a str,
    scope: &'a str,
    seq: u64,
    timestamp_us: u64,
}

impl<'a> ReceiptLine<'a> {
    /// The line of receipt `r` for an event of kind `kind` at `c`.
    pub fn new(r: &Receipt, c: &'a Coordinate, kind: &'a str) -> ReceiptLine<'a> {
        ReceiptLine {
            deduplicated: r.deduplicated,
            entity: &c.entity,
            entity_seq: r.entity_sequence,
            hash: hex(&r.hash),
            id: r.id.to_string(),
            kind,
            scope: &c.scope,
            seq: r.sequence,
            timestamp_us: r.timestamp_us,
        }
    }
}

/// An event as `events` prints it.
pub fn event_json(e: &Event) -> Value {
    let h = &e.header;
    let payload = match serde_json::from_slice::<Value>(&e.payload) {
        Ok(v) => v,
        Err(_) => Value::String(String::from_utf8_lossy(&e.payload).into_owned()),
    };
    let mut v = json!({
        "id": h.id.to_string(),
        "seq": h.sequence,
        "entity": h.coordinate.entity,
        "scope": h.coordinate.scope,
        "kind": h.kind,
        "entity_seq": h.entity_sequence,
        "causation": h.causation.map(|c| c.to_string()),
        "correlation": h.correlation.to_string(),
        "timestamp_us": h.timestamp_us,
        "payload": payload,
    });
    if !h.meta.is_empty() {
        v["meta"] = h
            .meta
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    v
}

/// An event as the one JSON line `events` prints: the fields of
/// [`event_json`], with a JSON payload written as its stored bytes (never
/// re-encoded: a 29-digit number, key order and spacing stay as the client
/// wrote them; its line breaks, which JSON allows only as spacing, become
/// spaces so the event stays one line). A payload that is not JSON (or
/// repeats a key) is the JSON string of its text.
pub fn event_line(e: &Event) -> String {
    let v = event_json(e);
    let raw = std::str::from_utf8(&e.payload)
        .ok()
        .filter(|t| crate::raw_json::RawJson::parse(t).is_ok());
    let (Some(payload), Some(fields)) = (raw, v.as_object()) else {
        return v.to_string();
    };
    let mut line = String::from("{");
    for (i, (k, val)) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(&Value::from(k.as_str()).to_string());
        line.push(':');
        if k == "payload" {
            line.push_str(&payload.trim().replace(['\n', '\r'], " "));
        } else {
            line.push_str(&val.to_string());
        }
    }
    line.push('}');
    line
}

/// Parses an append request's body — one event object or an array of
/// them — keeping each `"payload"` as the exact text the client sent (it
/// becomes the stored bytes: numbers, key order and spacing unchanged).
///
/// # Errors
/// [`ErrorCode::BadRequest`]: the body is not JSON, repeats a key anywhere
/// (in an event or its payload), or an event is malformed (named by index).
pub fn parse_events(body: &[u8]) -> Result<Vec<NewEvent>, WireError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| bad(format!("the body is not JSON: it is not UTF-8 ({e})")))?;
    let json = crate::raw_json::RawJson::parse(text).map_err(|e| {
        bad(format!(
            "the body is not JSON an event can be read from: {e}"
        ))
    })?;
    let (items, single) = match json.items() {
        Some(items) => (items, false),
        None => (vec![json], true),
    };
    if single && json.fields().is_none() {
        return Err(bad("the body must be one event object or an array of them: {\"entity\",\"scope\",\"kind\",\"payload\"[,\"causation\",\"correlation\",\"idempotency_key\",\"expected_entity_seq\"]}"));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| new_event_as_sent(item).map_err(|e| bad(format!("event {i}: {e}"))))
        .collect()
}

/// Reads one event object, its `"payload"` kept as sent: it travels on
/// as `payload_text` (checked JSON, stored verbatim), so no step after
/// this one re-encodes it.
pub(crate) fn new_event_as_sent(
    item: crate::raw_json::RawJson<'_>,
) -> Result<NewEvent, serde_json::Error> {
    let mut ev: NewEvent = serde_json::from_str(item.text())?;
    if ev.payload.is_some() && ev.payload_text.is_none() {
        let raw = item
            .fields()
            .and_then(|f| f.into_iter().find(|(k, _)| k == "payload"))
            .map(|(_, raw)| raw.to_string());
        if let Some(raw) = raw {
            ev.payload = None;
            ev.payload_text = Some(raw);
        }
    }
    Ok(ev)
}

fn bad(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::BadRequest, msg)
}

/// Maps a store error to a wire error; validation problems are the
/// caller's, everything else is the store's.
pub(crate) fn store_error(e: StoreError) -> WireError {
    let code = match &e {
        StoreError::Invalid { .. } | StoreError::BadBatch(_) => ErrorCode::BadRequest,
        StoreError::SequenceConflict { .. } => ErrorCode::Conflict,
        StoreError::IdempotencyConflict(_) => ErrorCode::IdempotencyConflict,
        StoreError::UnknownCausation { .. } => ErrorCode::NotFound,
        _ => ErrorCode::Store,
    };
    WireError::new(code, e.to_string())
}

fn parse_id(what: &str, index: usize, s: &str) -> Result<EventId, WireError> {
    s.parse::<EventId>().map_err(|_| {
        bad(format!(
            "event {index}: {what} {s:?} is not an event id; expected 32 hex digits as printed in a receipt's \"id\""
        ))
    })
}

/// Checks a client's event and turns it into a proposal.
///
/// # Errors
/// [`ErrorCode::BadRequest`] naming the event's index and the problem.
pub fn proposal(index: usize, e: NewEvent) -> Result<Proposal, WireError> {
    let coordinate =
        Coordinate::new(e.entity, e.scope).map_err(|err| bad(format!("event {index}: {err}")))?;
    let payload = match (e.payload, e.payload_text) {
        (Some(_), Some(_)) => {
            return Err(bad(format!(
                "event {index}: give either \"payload\" (JSON) or \"payload_text\" (verbatim text), not both"
            )))
        }
        (Some(v), None) => serde_json::to_vec(&v).expect("a JSON value serialises"),
        (None, Some(t)) => t.into_bytes(),
        (None, None) => {
            return Err(bad(format!(
                "event {index}: missing field \"payload\": give the event's data as \"payload\" (any JSON value, e.g. {{}} when there is none) or as \"payload_text\" (text stored verbatim)"
            )))
        }
    };
    let mut p = Proposal::new(coordinate, e.kind, payload);
    p.id =
        e.id.as_deref()
            .map(|s| parse_id("id", index, s))
            .transpose()?;
    p.causation = e
        .causation
        .as_deref()
        .map(|s| parse_id("causation", index, s))
        .transpose()?;
    p.correlation = e
        .correlation
        .as_deref()
        .map(|s| parse_id("correlation", index, s))
        .transpose()?;
    p.idempotency_key = e.idempotency_key;
    p.expected_sequence = e.expected_entity_seq;
    p.validate(false)
        .map_err(|err| bad(format!("event {index}: {err}")))?;
    Ok(p)
}

/// Checks one append request's events and turns them into proposals, in
/// order: at least one and at most [`MAX_APPEND_EVENTS`], each valid. Any
/// served log's `append` starts here, so a store and a cluster refuse the
/// same requests with the same errors.
///
/// # Errors
/// [`ErrorCode::BadRequest`] for no events or a bad one (naming its index),
/// [`ErrorCode::TooLarge`] for more than [`MAX_APPEND_EVENTS`].
pub fn proposals(events: Vec<NewEvent>) -> Result<Vec<Proposal>, WireError> {
    if events.is_empty() {
        return Err(bad("no events to append"));
    }
    if events.len() > MAX_APPEND_EVENTS {
        return Err(WireError::new(
            ErrorCode::TooLarge,
            format!(
                "{} events in one request; send at most {MAX_APPEND_EVENTS} per request",
                events.len()
            ),
        ));
    }
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| proposal(i, e))
        .collect()
}

/// Appends `events` atomically and durably; replies `{"receipts": [...]}`
/// only once they are durable.
///
/// # Errors
/// A bad event (nothing appended), a conflict, or a store failure.
pub fn append(store: &Store, events: Vec<NewEvent>) -> Result<Value, WireError> {
    let props = proposals(events)?;
    let meta: Vec<(Coordinate, String)> = props
        .iter()
        .map(|p| (p.coordinate.clone(), p.kind.clone()))
        .collect();
    let receipts = store
        .append_batch(props, AppendOptions::durable())
        .map_err(store_error)?;
    let list: Vec<Value> = receipts
        .iter()
        .zip(&meta)
        .map(|(r, (c, k))| receipt_json(r, c, k))
        .collect();
    Ok(json!({ "receipts": list }))
}

/// Reads one page of durable events matching `q`, waiting up to
/// `q.wait_ms` when none match yet, or until `stop` says the host is
/// shutting down.
///
/// # Errors
/// A bad kind filter or a store failure.
pub fn read(store: &Store, q: &Query, stop: &dyn Fn() -> bool) -> Result<Page, WireError> {
    for k in &q.kinds {
        batpak_store::validate_kind(k).map_err(|e| bad(format!("kinds: {e}")))?;
    }
    if q.entity.is_some() && q.entity_prefix.is_some() {
        return Err(bad("give either entity or entity_prefix, not both"));
    }
    if let Some(p) = q.partition {
        return Err(bad(format!(
            "partition={p}: the embedded store has one global order and no partitions; \
             leave partition out (it selects a partition of a NATS cluster, `--store`)"
        )));
    }
    let parse = |what: &str, v: &Option<String>| -> Result<Option<EventId>, WireError> {
        v.as_deref()
            .map(|s| {
                s.parse::<EventId>().map_err(|_| {
                    bad(format!(
                        "{what}: {s:?} is not an event id; expected 32 hex digits as printed in an event's \"id\""
                    ))
                })
            })
            .transpose()
    };
    let id = parse("id", &q.id)?;
    let caused_by = parse("caused_by", &q.caused_by)?;
    let correlation = parse("correlation", &q.correlation)?;
    // The narrowest index answers; the other filters check its events.
    let lookup = if let Some(i) = id {
        Lookup::Id(i)
    } else if let Some(c) = caused_by {
        Lookup::CausedBy(c)
    } else if let Some(c) = correlation {
        Lookup::Correlation(c)
    } else if let Some(e) = &q.entity {
        Lookup::Entity(e.clone())
    } else {
        Lookup::All
    };
    let mut region = Region::all().kinds(q.kinds.clone());
    region.scope = q.scope.clone();
    region.entity_prefix = q.entity_prefix.clone().or_else(|| q.entity.clone());
    // A listed `batpak.*` kind matches by itself; `system` without kinds
    // adds every host record in the entities and scope asked for (listed
    // kinds always filter).
    let include_system = q.system && q.kinds.is_empty();
    let page = usize::try_from(q.limit.unwrap_or(MAX_PAGE as u64))
        .unwrap_or(MAX_PAGE)
        .clamp(1, MAX_PAGE);
    let deadline = Instant::now() + Duration::from_millis(q.wait_ms.min(MAX_WAIT_MS));
    let mut after = q.after;
    loop {
        // Durable events only: a follower never sees an event a crash could
        // take back.
        let durable = store.watermarks().durable;
        let (scanned, cut) = store
            .lookup_bounded(
                &lookup,
                &region,
                after,
                page,
                include_system,
                MAX_PAGE_BYTES,
            )
            .map_err(store_error)?;
        // A page the byte budget ended is full too: more may follow at once.
        let full = scanned.len() == page || cut;
        let next_after = match scanned.last() {
            Some(e) if full => e.header.sequence.min(durable.max(after)),
            _ => durable.max(after),
        };
        let events: Vec<Box<RawValue>> = scanned
            .iter()
            .filter(|e| e.header.sequence <= next_after)
            .filter(|e| {
                q.entity
                    .as_ref()
                    .is_none_or(|en| &e.header.coordinate.entity == en)
                    && id.is_none_or(|i| e.header.id == i)
                    && caused_by.is_none_or(|c| e.header.causation == Some(c))
                    && correlation.is_none_or(|c| e.header.correlation == c)
            })
            .map(|e| RawValue::from_string(event_line(e)).expect("an event line is JSON"))
            .collect();
        if !events.is_empty() || full && next_after > after {
            return Ok(Page {
                events,
                next_after,
                more: full,
                order: None,
                partitions: Vec::new(),
            });
        }
        let now = Instant::now();
        if now >= deadline || stop() {
            return Ok(Page {
                events,
                next_after,
                more: full,
                order: None,
                partitions: Vec::new(),
            });
        }
        after = next_after;
        let wait = (deadline - now).min(Duration::from_millis(200));
        // A failed store wakes this wait with its error: report it rather
        // than poll a store that will never move again.
        store.wait_durable(after + 1, wait).map_err(store_error)?;
    }
}

/// Verifies the store (see [`verify_json`] for the reply).
///
/// # Errors
/// The check could not run.
pub fn verify(store: &Store) -> Result<Value, WireError> {
    let r = store.verify().map_err(store_error)?;
    Ok(verify_json(&r))
}

/// A verify report as JSON, the same with or without a running host:
/// `{"sound","segments","frames","events","problems","torn_tail_to_cut",
/// "uncommitted_transaction_to_drop"}` (the last two `null` or
/// `{"segment","offset","bytes"|"events"}`: what the next open cuts or
/// drops; a running host already did both when it opened the store).
pub fn verify_json(r: &batpak_store::VerifyReport) -> Value {
    let mut problems = r.problems.clone();
    if let Some(e) = &r.open_error {
        problems.insert(0, format!("the store does not open: {e}"));
    }
    let tail = r.tail_to_cut.map(
        |(segment, offset, bytes)| json!({"segment": segment, "offset": offset, "bytes": bytes}),
    );
    let txn = r.uncommitted_to_drop.map(
        |(segment, offset, events)| json!({"segment": segment, "offset": offset, "events": events}),
    );
    json!({
        "sound": r.is_sound(),
        "segments": r.segments,
        "frames": r.frames,
        "events": r.events,
        "problems": problems,
        "torn_tail_to_cut": tail,
        "uncommitted_transaction_to_drop": txn,
    })
}
