//! The failure policy and parking: what happens to an event a reactor keeps
//! failing on.
//!
//! Parking is a record in the log, not a side file: a
//! `batpak.reactor.parked` event on the reactor's stream (`reactor:<name>`,
//! scope `batpak`), caused by the parked event and committed together with
//! the checkpoint past it. `batpak-host parked replay` appends a
//! `batpak.reactor.replay-requested`; the reactor's next run re-delivers the
//! event and commits its reactions together with a `batpak.reactor.unparked`
//! record (or parks it again, with a record that `replaces` the old one).
//! Every record id is derived, so a crash in the middle repeats nothing.

use super::admission::{ReactorInfo, REACTOR_STREAM_PREFIX, SYSTEM_SCOPE};
use super::failure::ReactFailure;
use batpak_log::{CommitError, EventLog, LogError};
use batpak_store::Region;
use batpak_store::{Coordinate, Event, EventId, Proposal};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Kind of a parked record.
pub const PARKED_KIND: &str = "batpak.reactor.parked";
/// Kind of a replay request.
pub const REPLAY_KIND: &str = "batpak.reactor.replay-requested";
/// Kind of the record that resolves a parked event after a successful replay.
pub const UNPARKED_KIND: &str = "batpak.reactor.unparked";

/// How persistently to retry before isolating and parking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Calls per batch before bisecting it (at least 1).
    pub attempts: u32,
    /// Wait before the first retry; each later wait is `backoff_factor`
    /// times longer, up to `max_backoff`.
    pub backoff: Duration,
    /// Growth of the wait between retries.
    pub backoff_factor: u32,
    /// Longest wait between retries.
    pub max_backoff: Duration,
    /// Attempts to get a fresh, initialised instance before the runner
    /// gives up on the plugin (instantiation failures never park events).
    pub instantiate_attempts: u32,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            attempts: 3,
            backoff: Duration::from_millis(50),
            backoff_factor: 4,
            max_backoff: Duration::from_secs(5),
            instantiate_attempts: 5,
        }
    }
}

impl FailurePolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let mut d = self.backoff;
        for _ in 1..attempt {
            d = d.saturating_mul(self.backoff_factor.max(1));
            if d >= self.max_backoff {
                return self.max_backoff;
            }
        }
        d.min(self.max_backoff)
    }
}

/// Payload of a `batpak.reactor.parked` record (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedRecord {
    /// Reactor name.
    pub reactor: String,
    /// Reactor version that failed.
    pub version: String,
    /// Component digest that failed.
    pub component: String,
    /// The parked event's id.
    pub event: String,
    /// Its global sequence.
    pub sequence: u64,
    /// Its kind.
    pub kind: String,
    /// Its entity.
    pub entity: String,
    /// Its scope.
    pub scope: String,
    /// Why it was parked: the guest's own message first, then the detail
    /// (the trap, the wasm backtrace, what the guest wrote to stderr).
    pub cause: String,
    /// The failure kind (`trap`, `timeout`, `out-of-memory`, `error`,
    /// `malformed-output`).
    pub failure: String,
    /// Calls that included this event and failed.
    pub attempts: u32,
    /// The parked record this one replaces (a replay that failed again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// Payload of a replay request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayRequest {
    /// Reactor name.
    pub reactor: String,
    /// The parked record to replay.
    pub parked: String,
    /// The parked event.
    pub event: String,
}

/// Payload of an unparked record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnparkedRecord {
    /// Reactor name.
    pub reactor: String,
    /// The parked record resolved.
    pub parked: String,
    /// The event that was replayed.
    pub event: String,
    /// Reactions appended by the replay.
    pub reactions: u64,
    /// Proposals denied during the replay.
    pub denials: u64,
}

/// A parked event that is still unresolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkedEvent {
    /// Id of the parked record.
    pub parked: EventId,
    /// Sequence of the parked record.
    pub parked_seq: u64,
    /// When it was parked (µs since the Unix epoch).
    pub parked_at_us: u64,
    /// The record.
    pub record: ParkedRecord,
    /// True when a replay was requested and not done yet.
    pub replay_requested: bool,
}

impl ParkedEvent {
    /// The parked event's id.
    pub fn event_id(&self) -> Option<EventId> {
        self.record.event.parse().ok()
    }
}

fn stream(reactor: &str) -> Coordinate {
    Coordinate {
        entity: format!("{REACTOR_STREAM_PREFIX}{reactor}"),
        scope: SYSTEM_SCOPE.to_string(),
    }
}

/// The record that parks `source`.
pub(crate) fn park_proposal(
    info: &ReactorInfo,
    source: &Event,
    failure: &ReactFailure,
    attempts: u32,
    replaces: Option<EventId>,
) -> Proposal {
    let h = &source.header;
    let rec = ParkedRecord {
        reactor: info.name.clone(),
        version: info.version.clone(),
        component: info.digest.clone(),
        event: h.id.to_string(),
        sequence: h.sequence,
        kind: h.kind.clone(),
        entity: h.coordinate.entity.clone(),
        scope: h.coordinate.scope.clone(),
        cause: failure.full(),
        failure: failure.kind.as_str().to_string(),
        attempts,
        replaces: replaces.map(|r| r.to_string()),
    };
    let mut p = Proposal::new(
        stream(&info.name),
        PARKED_KIND,
        serde_json::to_vec(&rec).expect("parked record encodes"),
    );
    p.causation = Some(h.id);
    p.correlation = Some(h.correlation);
    p.id = Some(EventId::derive(&[
        b"parked",
        info.name.as_bytes(),
        &h.id.0.to_be_bytes(),
        &replaces.map(|r| r.0.to_be_bytes()).unwrap_or_default(),
    ]));
    p.meta = info.lineage();
    p
}

/// The record that resolves `parked` after its replay succeeded.
pub(crate) fn unparked_proposal(
    info: &ReactorInfo,
    parked: &ParkedEvent,
    reactions: u64,
    denials: u64,
) -> Proposal {
    let rec = UnparkedRecord {
        reactor: info.name.clone(),
        parked: parked.parked.to_string(),
        event: parked.record.event.clone(),
        reactions,
        denials,
    };
    let mut p = Proposal::new(
        stream(&info.name),
        UNPARKED_KIND,
        serde_json::to_vec(&rec).expect("unparked record encodes"),
    );
    p.causation = Some(parked.parked);
    p.id = Some(EventId::derive(&[
        b"unparked",
        info.name.as_bytes(),
        &parked.parked.0.to_be_bytes(),
    ]));
    p.meta = info.lineage();
    p
}

/// Folds the host's parking records, in log order, into the set of parked
/// events that are still unresolved.
#[derive(Debug, Default)]
pub struct ParkedSet {
    entity: Option<String>,
    open: BTreeMap<EventId, ParkedEvent>,
}

impl ParkedSet {
    /// An empty set that keeps only reactor `reactor`'s records when given.
    pub fn new(reactor: Option<&str>) -> ParkedSet {
        ParkedSet {
            entity: reactor.map(|r| format!("{REACTOR_STREAM_PREFIX}{r}")),
            open: BTreeMap::new(),
        }
    }

    /// Takes one event into account; events that are not parking records
    /// are ignored, so a whole log can be fed through.
    pub fn add(&mut self, e: &Event) {
        let h = &e.header;
        if h.coordinate.scope != SYSTEM_SCOPE
            || !h.coordinate.entity.starts_with(REACTOR_STREAM_PREFIX)
            || self
                .entity
                .as_ref()
                .is_some_and(|en| *en != h.coordinate.entity)
        {
            return;
        }
        match h.kind.as_str() {
            PARKED_KIND => {
                let Ok(record) = serde_json::from_slice::<ParkedRecord>(&e.payload) else {
                    return;
                };
                if let Some(old) = record
                    .replaces
                    .as_ref()
                    .and_then(|r| r.parse::<EventId>().ok())
                {
                    self.open.remove(&old);
                }
                self.open.insert(
                    h.id,
                    ParkedEvent {
                        parked: h.id,
                        parked_seq: h.sequence,
                        parked_at_us: h.timestamp_us,
                        record,
                        replay_requested: false,
                    },
                );
            }
            REPLAY_KIND => {
                if let Ok(r) = serde_json::from_slice::<ReplayRequest>(&e.payload) {
                    if let Some(p) = r
                        .parked
                        .parse()
                        .ok()
                        .and_then(|id: EventId| self.open.get_mut(&id))
                    {
                        p.replay_requested = true;
                    }
                }
            }
            UNPARKED_KIND => {
                if let Ok(r) = serde_json::from_slice::<UnparkedRecord>(&e.payload) {
                    if let Ok(id) = r.parked.parse::<EventId>() {
                        self.open.remove(&id);
                    }
                }
            }
            _ => {}
        }
    }

    /// The unresolved parked events, oldest first.
    pub fn into_vec(self) -> Vec<ParkedEvent> {
        let mut v: Vec<ParkedEvent> = self.open.into_values().collect();
        v.sort_by_key(|p| p.parked_seq);
        v
    }
}

/// Why listing or requesting replays failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParkingError {
    /// The log could not be read.
    #[error(transparent)]
    Read(#[from] LogError),
    /// The replay requests could not be committed.
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// Every unresolved parked event, oldest first; only reactor `reactor`'s
/// when given. Reads the log through the seam (`&store` works).
///
/// # Errors
/// The log could not be read.
pub fn parked_events(
    log: &dyn EventLog,
    reactor: Option<&str>,
) -> Result<Vec<ParkedEvent>, LogError> {
    let mut region = Region::all()
        .kinds([PARKED_KIND, REPLAY_KIND, UNPARKED_KIND])
        .scope(SYSTEM_SCOPE);
    if let Some(r) = reactor {
        region = region.entity_prefix(format!("{REACTOR_STREAM_PREFIX}{r}"));
    }
    let mut set = ParkedSet::new(reactor);
    let mut after = 0;
    loop {
        let page = log.read(&region, after, 10_000)?;
        if page.events.is_empty() {
            break;
        }
        after = page.scanned;
        for e in &page.events {
            set.add(e);
        }
    }
    Ok(set.into_vec())
}

/// Appends a replay request for every unresolved parked event that matches
/// (`reactor`, `event`) and has none pending yet. Returns the requests made
/// (request id and the parked event).
///
/// # Errors
/// The log could not be read or written.
pub fn request_replay(
    log: &dyn EventLog,
    reactor: Option<&str>,
    event: Option<EventId>,
) -> Result<Vec<(EventId, ParkedEvent)>, ParkingError> {
    let mut made = Vec::new();
    let mut proposals = Vec::new();
    for p in parked_events(log, reactor)? {
        if p.replay_requested || event.is_some_and(|e| p.event_id() != Some(e)) {
            continue;
        }
        let req = ReplayRequest {
            reactor: p.record.reactor.clone(),
            parked: p.parked.to_string(),
            event: p.record.event.clone(),
        };
        let mut prop = Proposal::new(
            stream(&p.record.reactor),
            REPLAY_KIND,
            serde_json::to_vec(&req).expect("replay request encodes"),
        );
        prop.causation = Some(p.parked);
        let id = EventId::generate();
        prop.id = Some(id);
        proposals.push(prop);
        made.push((id, p));
    }
    if !proposals.is_empty() {
        log.append_system(proposals)?;
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = FailurePolicy {
            attempts: 3,
            backoff: Duration::from_millis(50),
            backoff_factor: 4,
            max_backoff: Duration::from_millis(500),
            instantiate_attempts: 1,
        };
        assert_eq!(p.delay(1), Duration::from_millis(50));
        assert_eq!(p.delay(2), Duration::from_millis(200));
        assert_eq!(p.delay(3), Duration::from_millis(500));
        assert_eq!(p.delay(30), Duration::from_millis(500));
    }
}
