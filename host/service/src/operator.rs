//! Operating reactors from outside: the [`Operator`] trait the CLI's
//! supervisor implements (this crate knows nothing of wasm), the state it
//! reports, and the checkpoint reset both a running host and the offline
//! CLI use.

use crate::wire_error::{ErrorCode, WireError};
use batpak_store::system::{RESET_ENTITY_PREFIX, SYSTEM_SCOPE};
use batpak_store::{AppendOptions, CheckpointUpdate, Coordinate, EventId, Proposal, Region, Store};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use batpak_store::system::RESET_KIND;

/// Where a reactor is in its life, as an operator sees it: the one reactor
/// state the runtime's status and the CLI's output use too.
pub use batpak_store::ReactorRunState;

/// One reactor's state for `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactorState {
    /// Reactor name.
    pub name: String,
    /// Version the plugin declares.
    pub version: String,
    /// Component digest (blake3 of the component bytes).
    pub digest: String,
    /// Life-cycle state.
    pub state: ReactorRunState,
    /// The reactor's position: every event of its region up to this global
    /// sequence is handled (events of other regions are skipped, so it moves
    /// past them too). `pause` stops it there, the checkpoint keeps it, and
    /// `resume` continues after it; a swap lands there.
    pub position: u64,
    /// Events in the reactor's own region that are durable and not yet
    /// handled (capped at [`LAG_CAP`]; `lag_capped` says so).
    pub lag: u64,
    /// True when `lag` hit [`LAG_CAP`] and the real figure is larger.
    pub lag_capped: bool,
    /// Events delivered since this host started the reactor.
    pub events_in: u64,
    /// Reactions appended since then.
    pub reactions_out: u64,
    /// Parked events since then.
    pub parked: u64,
    /// The terminal error of a failed reactor.
    pub error: Option<String>,
    /// The last hot swap of this reactor in this host, when there was one:
    /// when, at which log position, old and new version and digest, and the
    /// id of its `batpak.plugin.swapped` record.
    /// When that swap's new version failed on probation and was rolled
    /// back, `last_swap.rolled_back` says so, and `version` is the restored
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_swap: Option<serde_json::Value>,
    /// The plugin file the running version was loaded from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// `run --watch`: the watched file that is the reactor's source (a new
    /// file there swaps it in, even after a `swap` command loaded another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watched: Option<PathBuf>,
    /// Work in progress and what it waits for: `{"action": "swap", "file",
    /// "bytes", "waiting_for": "compiling" | "a batch boundary" | …,
    /// "for_ms", "text": "swap to big.wasm: compiling 18.2 MB, 9 s"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<serde_json::Value>,
    /// Which of the reactor's parallel instances by key this is (absent
    /// for a reactor run as one instance; `name#index/count` names it in
    /// `pause`, `resume` and `reset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceState>,
}

/// Instance `index` of `count` of a reactor (see `ReactorState::instance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceState {
    /// Which instance, `0..count`.
    pub index: u32,
    /// How many instances the reactor runs as.
    pub count: u32,
}

impl InstanceState {
    /// How `status` and the control commands name it: `name#index/count`.
    pub fn label(&self, name: &str) -> String {
        format!("{name}#{}/{}", self.index, self.count)
    }
}

/// Counting lag stops here: `status` stays cheap on a huge backlog.
pub const LAG_CAP: u64 = 1_000_000;

/// Events matching `region` that are durable and after `position`, capped
/// at [`LAG_CAP`]: the honest lag of a reactor (other reactors' output and
/// host records outside its region do not count).
pub fn region_lag(store: &Store, region: &Region, position: u64) -> (u64, bool) {
    let durable = store.watermarks().durable;
    let mut after = position;
    let mut n = 0u64;
    while after < durable && n < LAG_CAP {
        let Ok(batch) = store.scan(region, after, 65_536, false) else {
            break;
        };
        let Some(last) = batch.last() else { break };
        after = last.header.sequence;
        n += batch
            .iter()
            .filter(|e| e.header.sequence <= durable)
            .count() as u64;
    }
    (n.min(LAG_CAP), n >= LAG_CAP)
}

/// Where `reset` moves a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetTo {
    /// Before the first event: re-deliver the whole region.
    Start,
    /// After the last durable event: skip the backlog.
    End,
    /// Keep the current position (to re-key a checkpoint for a new region).
    Current,
    /// After this global sequence.
    Sequence(u64),
}

impl FromStr for ResetTo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "start" => Ok(ResetTo::Start),
            "end" => Ok(ResetTo::End),
            "current" => Ok(ResetTo::Current),
            n => n.parse::<u64>().map(ResetTo::Sequence).map_err(|_| {
                format!("{n:?}: expected start, end, current or a global sequence number")
            }),
        }
    }
}

/// The words [`FromStr`] reads back: `start`, `end`, `current` or the
/// sequence number. A reset record's `"requested"` field holds them, on a
/// store and on a cluster alike.
impl std::fmt::Display for ResetTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResetTo::Start => f.write_str("start"),
            ResetTo::End => f.write_str("end"),
            ResetTo::Current => f.write_str("current"),
            ResetTo::Sequence(n) => write!(f, "{n}"),
        }
    }
}

/// What a reset did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetOutcome {
    /// Reactor name.
    pub reactor: String,
    /// Position before.
    pub from: u64,
    /// Position after.
    pub to: u64,
    /// Id of the `batpak.reactor.reset` event that records it.
    pub event: String,
    /// Global sequence of that event.
    pub seq: u64,
}

/// An operation on a reactor failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// No reactor of that name runs in this host.
    #[error("no reactor named {0:?} runs in this host; `batpak-host status` lists them")]
    NoSuchReactor(String),
    /// The operation does not fit the reactor's state.
    #[error("{0}")]
    Refused(String),
    /// Bad input (a sequence beyond the log, a malformed id).
    #[error("{0}")]
    Invalid(String),
    /// This host does not offer the operation.
    #[error("{0} is not supported by this host")]
    Unsupported(&'static str),
    /// The store or the runtime failed.
    #[error("{0}")]
    Failed(String),
    /// The host did not finish in time (the message says what, and that it
    /// goes on).
    #[error("{0}")]
    TimedOut(String),
}

impl From<OpError> for WireError {
    fn from(e: OpError) -> WireError {
        let code = match &e {
            OpError::NoSuchReactor(_) => ErrorCode::NotFound,
            OpError::Refused(_) => ErrorCode::Refused,
            OpError::Invalid(_) => ErrorCode::BadRequest,
            OpError::Unsupported(_) => ErrorCode::Unsupported,
            OpError::Failed(_) => ErrorCode::Store,
            OpError::TimedOut(_) => ErrorCode::Busy,
        };
        WireError::new(code, e.to_string())
    }
}

/// What a running host lets the service do to its reactors. The CLI's
/// supervisor implements it; every method is called from service threads
/// while the reactors run, so implementations lock what they share.
pub trait Operator: Send + Sync {
    /// Every reactor's state, in a stable order (empty when the host cannot
    /// say in time; [`try_status`](Self::try_status) tells why).
    fn status(&self) -> Vec<ReactorState>;
    /// Every reactor's state, or why the host could not list them in time.
    ///
    /// # Errors
    /// [`OpError::TimedOut`] and the like.
    fn try_status(&self) -> Result<Vec<ReactorState>, OpError> {
        Ok(self.status())
    }
    /// Stops `name`'s runner at a batch boundary; its checkpoint keeps the
    /// position. Pausing a paused reactor is not an error.
    ///
    /// # Errors
    /// Unknown reactor, or the runner failed while stopping.
    fn pause(&self, name: &str) -> Result<ReactorState, OpError>;
    /// Starts a paused reactor again from its checkpoint.
    ///
    /// # Errors
    /// Unknown reactor, not paused, or it cannot start.
    fn resume(&self, name: &str) -> Result<ReactorState, OpError>;
    /// Moves a paused reactor's checkpoint (see [`reset_checkpoint`]).
    ///
    /// # Errors
    /// [`OpError::Refused`] while it runs; a sequence beyond the log.
    fn reset(&self, name: &str, to: ResetTo) -> Result<ResetOutcome, OpError>;
    /// Unresolved parked events as `parked` prints them.
    ///
    /// # Errors
    /// The store failed.
    fn parked(&self, plugin: Option<&str>) -> Result<Vec<Value>, OpError>;
    /// Requests replay of parked events; one JSON object per request.
    ///
    /// # Errors
    /// The store failed.
    fn parked_replay(
        &self,
        plugin: Option<&str>,
        event: Option<EventId>,
    ) -> Result<Vec<Value>, OpError>;
    /// Hot swap (issue 11): loads `file` and swaps it in for `name`.
    ///
    /// # Errors
    /// [`OpError::Unsupported`] until a host implements it.
    fn swap(&self, name: &str, file: &Path) -> Result<Value, OpError> {
        let _ = (name, file);
        Err(OpError::Unsupported("swap"))
    }
    /// `status` as the socket and `GET /v1/reactors` reply: by default
    /// [`try_status`](Self::try_status)'s list. A host whose reactors run
    /// per partition (a cluster) replies with its own per-partition list.
    ///
    /// # Errors
    /// As [`try_status`](Self::try_status).
    fn status_reply(&self) -> Result<Value, OpError> {
        to_value(&self.try_status()?)
    }
    /// `pause` as the socket and `POST /v1/reactors/NAME/pause` reply: by
    /// default [`pause`](Self::pause)'s state.
    ///
    /// # Errors
    /// As [`pause`](Self::pause).
    fn pause_reply(&self, name: &str) -> Result<Value, OpError> {
        to_value(&self.pause(name)?)
    }
    /// `resume` as the socket and `POST /v1/reactors/NAME/resume` reply:
    /// by default [`resume`](Self::resume)'s state.
    ///
    /// # Errors
    /// As [`resume`](Self::resume).
    fn resume_reply(&self, name: &str) -> Result<Value, OpError> {
        to_value(&self.resume(name)?)
    }
    /// The reactors' lines of the Prometheus text (`/metrics`), appended to
    /// `out`: by default one series per reactor from
    /// [`status`](Self::status). Must not wait long: a scrape is cheap.
    fn write_metrics(&self, out: &mut String) {
        reactor_metrics(&self.status(), out);
    }
}

fn to_value(v: &impl Serialize) -> Result<Value, OpError> {
    serde_json::to_value(v).map_err(|e| OpError::Failed(e.to_string()))
}

/// A per-reactor metric: name, help, Prometheus type, how to read it.
type ReactorMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ReactorState) -> u64,
);

/// The per-reactor series of `/metrics` for `states`.
fn reactor_metrics(states: &[ReactorState], s: &mut String) {
    use std::fmt::Write as _;
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
        for r in states {
            let _ = writeln!(s, "{name}{{reactor=\"{}\"}} {}", r.name, f(r));
        }
    }
    let _ = writeln!(s, "# HELP batpak_reactor_running 1 when the reactor is running.\n# TYPE batpak_reactor_running gauge");
    for r in states {
        let running = u64::from(r.state == ReactorRunState::Running);
        let _ = writeln!(
            s,
            "batpak_reactor_running{{reactor=\"{}\"}} {running}",
            r.name
        );
    }
}

/// Moves cursor `cursor` of reactor `reactor` to `to`, keyed for the region
/// with fingerprint `region` ([`Region::fingerprint`]):
/// one durable append of a `batpak.reactor.reset` system event together with
/// the new checkpoint, so the move and its record land together or not at
/// all. The reactor must not be running (the caller checks).
///
/// Passing the fingerprint of a *new* version's region re-keys the checkpoint: with
/// [`ResetTo::Current`] the new region continues from the old position;
/// with [`ResetTo::Start`] history is re-delivered, and the runtime's
/// derived reaction ids make reactions committed before idempotent.
///
/// # Errors
/// [`OpError::Invalid`] for a sequence beyond the durable log;
/// [`OpError::Failed`] when the store fails.
pub fn reset_checkpoint(
    store: &Store,
    reactor: &str,
    cursor: &str,
    region: [u8; 32],
    to: ResetTo,
) -> Result<ResetOutcome, OpError> {
    let failed = |e: batpak_store::StoreError| OpError::Failed(e.to_string());
    let from = store.checkpoint(cursor).map(|c| c.sequence).unwrap_or(0);
    let durable = store.watermarks().durable;
    let target = match to {
        ResetTo::Start => 0,
        ResetTo::End => durable,
        ResetTo::Current => from,
        ResetTo::Sequence(n) if n > durable => {
            return Err(OpError::Invalid(format!(
                "sequence {n} is beyond the end of the durable log ({durable}); pick 0..={durable}, start or end"
            )))
        }
        ResetTo::Sequence(n) => n,
    };
    let event_id = if target == 0 {
        EventId(0)
    } else {
        store
            .get_by_sequence(target)
            .map_err(failed)?
            .ok_or_else(|| OpError::Invalid(format!("no event at sequence {target}")))?
            .header
            .id
    };
    let record = json!({
        "reactor": reactor,
        "cursor": cursor,
        "from": from,
        "to": target,
        "region": batpak_store::hex(&region),
        "requested": to.to_string(),
    });
    let coordinate = Coordinate {
        entity: format!("{RESET_ENTITY_PREFIX}{reactor}"),
        scope: SYSTEM_SCOPE.into(),
    };
    let proposal = Proposal::new(
        coordinate,
        RESET_KIND,
        serde_json::to_vec(&record).expect("a JSON value serialises"),
    );
    let receipts = store
        .append_system(
            vec![proposal],
            AppendOptions::durable().with_checkpoint(CheckpointUpdate {
                cursor: cursor.to_string(),
                region,
                sequence: target,
                event_id,
            }),
        )
        .map_err(failed)?;
    Ok(ResetOutcome {
        reactor: reactor.to_string(),
        from,
        to: target,
        event: receipts[0].id.to_string(),
        seq: receipts[0].sequence,
    })
}
