//! What the running host reports, as `Serialize` structs: a reactor as the
//! control channel lists it (with its last swap, rollback and pending work),
//! and the lines `parked` prints.

use batpak_runtime::{ParkedEvent, RolledBackRecord, RunState, StatusSnapshot, SwapOutcome};
use batpak_store::{EventId, Region};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// One line of `parked`: an unresolved parked event.
#[derive(Serialize, Debug)]
pub struct ParkedLine<'a> {
    /// Id of the parked record.
    pub parked: String,
    /// Its global sequence.
    pub parked_seq: u64,
    /// When it was parked, microseconds since the Unix epoch.
    pub parked_at_us: u64,
    /// The reactor that failed on it.
    pub reactor: &'a str,
    /// Its version.
    pub version: &'a str,
    /// Digest of the component that failed.
    pub component: &'a str,
    /// Id of the event it failed on.
    pub event: &'a str,
    /// That event's global sequence.
    pub sequence: u64,
    /// That event's kind.
    pub kind: &'a str,
    /// Its entity.
    pub entity: &'a str,
    /// Its scope.
    pub scope: &'a str,
    /// How the reactor failed (`error`, `trap`, `timeout`, …).
    pub failure: &'a str,
    /// The failure's message.
    pub cause: &'a str,
    /// Calls made before it was parked.
    pub attempts: u32,
    /// The parked record this one replaces (`null` for a first failure).
    pub replaces: Option<&'a str>,
    /// A replay of it has been asked for.
    pub replay_requested: bool,
}

impl<'a> From<&'a ParkedEvent> for ParkedLine<'a> {
    fn from(p: &'a ParkedEvent) -> Self {
        let r = &p.record;
        ParkedLine {
            parked: p.parked.to_string(),
            parked_seq: p.parked_seq,
            parked_at_us: p.parked_at_us,
            reactor: &r.reactor,
            version: &r.version,
            component: &r.component,
            event: &r.event,
            sequence: r.sequence,
            kind: &r.kind,
            entity: &r.entity,
            scope: &r.scope,
            failure: &r.failure,
            cause: &r.cause,
            attempts: r.attempts,
            replaces: r.replaces.as_deref(),
            replay_requested: p.replay_requested,
        }
    }
}

/// One line of `parked replay`: a replay request recorded.
#[derive(Serialize, Debug)]
pub struct ReplayRequestedLine<'a> {
    /// Id of the request event.
    pub replay_requested: String,
    /// The parked record it resolves.
    pub parked: String,
    /// The reactor that replays it.
    pub reactor: &'a str,
    /// The event it re-delivers.
    pub event: &'a str,
}

impl<'a> ReplayRequestedLine<'a> {
    /// The line for request `request` of parked event `p`.
    pub fn new(request: EventId, p: &'a ParkedEvent) -> Self {
        ReplayRequestedLine {
            replay_requested: request.to_string(),
            parked: p.parked.to_string(),
            reactor: &p.record.reactor,
            event: &p.record.event,
        }
    }
}

/// A reactor under the supervisor, as a control channel lists it.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ReactorView {
    /// Reactor name.
    pub name: String,
    /// Version it runs.
    pub version: String,
    /// blake3 digest of the component it runs.
    pub digest: String,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// Starting, running, stopping (finishing its batch in flight),
    /// stopped (also when paused: see `paused`) or failed; never paused
    /// (`paused` says that).
    pub state: RunState,
    /// Running and caught up with the durable log (shown as `idle`).
    pub caught_up: bool,
    /// Its position: every event of its region up to this global sequence
    /// is handled (events of other regions are skipped, so it moves past
    /// them too); a stopped reactor resumes after it.
    pub position: u64,
    /// The store's durable watermark when this view was taken. `head -
    /// position` counts every later event, other regions' included, so it
    /// bounds what is left to do rather than measuring it.
    pub head: u64,
    /// Events delivered to it.
    pub events_in: u64,
    /// Reactions it appended.
    pub reactions_out: u64,
    /// Proposals a gate denied.
    pub denials: u64,
    /// Events it parked.
    pub parked: u64,
    /// Parked events replayed and resolved.
    pub unparked: u64,
    /// Failed calls.
    pub failures: u64,
    /// Events a lossy subscription dropped (0 for cursors).
    pub missed: u64,
    /// It reads a lossy subscription (no checkpoint).
    pub lossy: bool,
    /// Stopped by an operator (`pause`, `Control::stop`): keeps its
    /// position and may be started again.
    pub paused: bool,
    /// The region its cursor reads (for the service's region lag).
    #[serde(skip)]
    pub region: Region,
    /// Its runner's terminal error, if it failed.
    pub error: Option<String>,
    /// The last hot swap of this reactor in this run (`None` before the
    /// first).
    pub last_swap: Option<SwapView>,
    /// Work started and not finished (a swap compiling or waiting for a
    /// batch boundary, a start compiling, a stop finishing its batch).
    pub pending: Option<PendingView>,
    /// `run --watch`: the watched file that is this reactor's source (a
    /// new file there swaps it in, even after a `swap` command loaded
    /// another file).
    pub watched: Option<PathBuf>,
    /// Which of the reactor's parallel instances this is (`None`: it runs
    /// as one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceView>,
}

/// Instance `index` of `count` of a reactor.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceView {
    /// Which instance, `0..count`.
    pub index: u32,
    /// How many instances the reactor runs as.
    pub count: u32,
}

impl From<batpak_runtime::Instance> for InstanceView {
    fn from(i: batpak_runtime::Instance) -> Self {
        InstanceView {
            index: i.index,
            count: i.count,
        }
    }
}

impl ReactorView {
    /// How `status` and control commands name it: the reactor's name, or
    /// `name#index/count` for one of several instances.
    pub fn label(&self) -> String {
        match self.instance {
            Some(i) => format!("{}#{}/{}", self.name, i.index, i.count),
            None => self.name.clone(),
        }
    }
}

/// A completed hot swap, as `status` shows it.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct SwapView {
    /// When it happened, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Log position of the swap: the last sequence the old version handled.
    pub position: u64,
    /// The version swapped out.
    pub old_version: String,
    /// Its digest.
    pub old_digest: String,
    /// The version swapped in.
    pub new_version: String,
    /// Its digest.
    pub new_digest: String,
    /// Id of the `batpak.plugin.swapped` record.
    pub record: String,
    /// Present when the new version failed on probation
    /// (`--swap-rollback`) and the old one runs again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<RollbackView>,
}

/// The rollback of a swap, as `status` shows it.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct RollbackView {
    /// When it happened, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Position at the rollback.
    pub position: u64,
    /// The version that failed and was removed (the swap's new version).
    pub failed_version: String,
    /// The version running again.
    pub restored_version: String,
    /// Its digest.
    pub restored_digest: String,
    /// Batches the failed version completed.
    pub batches: u32,
    /// Why it was rolled back.
    pub reason: String,
}

impl RollbackView {
    /// The view of rollback `r`, which happened `at`.
    pub fn new(r: &RolledBackRecord, at: SystemTime) -> Self {
        RollbackView {
            at_ms: millis(at),
            position: r.position,
            failed_version: r.failed_version.clone(),
            restored_version: r.restored_version.clone(),
            restored_digest: r.restored_digest.clone(),
            batches: r.batches,
            reason: r.reason.clone(),
        }
    }
}

fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl SwapView {
    /// The same swap, rolled back (`None`: kept).
    pub fn with_rollback(mut self, r: Option<RollbackView>) -> Self {
        self.rolled_back = r;
        self
    }

    /// The view of swap `o`, which happened `at`.
    pub fn new(o: &SwapOutcome, at: SystemTime) -> Self {
        SwapView {
            at_ms: at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            position: o.position,
            old_version: o.old_version.clone(),
            old_digest: o.old_digest.clone(),
            new_version: o.new_version.clone(),
            new_digest: o.new_digest.clone(),
            record: o.record.clone(),
            rolled_back: None,
        }
    }
}

impl ReactorView {
    /// The view of a reactor from its runner's status `snap` (`idle`:
    /// caught up at `head`), the digest and file it runs, its region, and
    /// whether an operator stopped it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        snap: &StatusSnapshot,
        idle: bool,
        head: u64,
        digest: &str,
        path: PathBuf,
        region: Region,
        stopped_by_operator: bool,
    ) -> Self {
        let state = match snap.state {
            s @ (RunState::Failed | RunState::Stopped) => s,
            _ if stopped_by_operator => RunState::Stopped,
            s => s,
        };
        ReactorView {
            name: snap.name.clone(),
            version: snap.version.clone(),
            digest: digest.to_string(),
            path,
            state,
            caught_up: state == RunState::Running && idle,
            position: snap.position,
            head,
            events_in: snap.events_in,
            reactions_out: snap.reactions_out,
            denials: snap.denials,
            parked: snap.parked,
            unparked: snap.unparked,
            failures: snap.failures,
            missed: snap.missed,
            lossy: snap.lossy,
            paused: stopped_by_operator,
            region,
            error: snap.error.clone(),
            last_swap: None,
            pending: None,
            watched: None,
            instance: None,
        }
    }

    /// The same view showing the reactor's last hot swap.
    pub fn with_last_swap(mut self, last_swap: Option<SwapView>) -> Self {
        self.last_swap = last_swap;
        self
    }
}

/// Work in progress for one reactor, as `status` shows it.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct PendingView {
    /// `swap`, `start` or `stop`.
    pub action: &'static str,
    /// The plugin file being loaded (swap and start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Its size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// What it waits for: `compiling`, `a batch boundary`, `the reactor to
    /// start` or `the batch in flight`.
    pub waiting_for: &'static str,
    /// How long it has been waiting, in milliseconds.
    pub for_ms: u64,
    /// The same in words: `swap to big.wasm: compiling 18.2 MB, 9 s`.
    pub text: String,
}

/// `n` bytes as `512 B`, `42.0 kB`, `18.2 MB` or `1.1 GB` (powers of 1000).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000_000_000, "GB"), (1_000_000, "MB"), (1_000, "kB")];
    for (size, unit) in UNITS {
        if n >= size {
            return format!("{:.1} {unit}", n as f64 / size as f64);
        }
    }
    format!("{n} B")
}
