//! Live counters of a running reactor, shared between its runner thread and
//! whoever watches it (the CLI's status line, `--until-idle`, benchmarks).

use parking_lot::Mutex;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

const NOT_OBSERVED: u64 = u64::MAX;

/// Where a runner is in its life: the one reactor state
/// ([`batpak_store::ReactorRunState`]) the service and the CLI report too.
/// A runner sets only `Starting`, `Running`, `Stopped` and `Failed` (see
/// [`ReactorStatus::error`]); the host adds the operator's states.
pub use batpak_store::ReactorRunState as RunState;

/// Counters of one runner. All reads are racy snapshots; each counter only
/// grows.
#[derive(Debug)]
pub struct ReactorStatus {
    name: String,
    version: Mutex<String>,
    events_in: AtomicU64,
    reactions_out: AtomicU64,
    denials: AtomicU64,
    parked: AtomicU64,
    unparked: AtomicU64,
    failures: AtomicU64,
    missed: AtomicU64,
    position: AtomicU64,
    idle_at: AtomicU64,
    state: AtomicU8,
    error: Mutex<Option<String>>,
    lossy: bool,
}

/// A copy of a runner's counters at one moment.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StatusSnapshot {
    /// Reactor name.
    pub name: String,
    /// Reactor version.
    pub version: String,
    /// Events delivered to the reactor (each once, however often retried).
    pub events_in: u64,
    /// Reactions appended.
    pub reactions_out: u64,
    /// Proposals denied by a gate (each recorded).
    pub denials: u64,
    /// Events parked.
    pub parked: u64,
    /// Parked events successfully replayed.
    pub unparked: u64,
    /// Failed `react` calls (including retries).
    pub failures: u64,
    /// Events a lossy subscription dropped.
    pub missed: u64,
    /// Cursor position (last sequence handled or skipped).
    pub position: u64,
    /// Durable watermark minus position (0 for lossy subscriptions).
    pub lag: u64,
    /// Whether it uses a lossy subscription.
    pub lossy: bool,
    /// Life-cycle state.
    pub state: RunState,
    /// Terminal error, if it failed.
    pub error: Option<String>,
}

impl ReactorStatus {
    /// Fresh counters for reactor `name`.
    pub fn new(name: &str, version: &str, lossy: bool) -> Self {
        ReactorStatus {
            name: name.to_string(),
            version: Mutex::new(version.to_string()),
            events_in: AtomicU64::new(0),
            reactions_out: AtomicU64::new(0),
            denials: AtomicU64::new(0),
            parked: AtomicU64::new(0),
            unparked: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            position: AtomicU64::new(0),
            idle_at: AtomicU64::new(NOT_OBSERVED),
            state: AtomicU8::new(RunState::Starting as u8),
            error: Mutex::new(None),
            lossy,
        }
    }

    /// The reactor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn set_version(&self, v: &str) {
        *self.version.lock() = v.to_string();
    }
    pub(crate) fn add_in(&self, n: u64) {
        self.events_in.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_out(&self, n: u64) {
        self.reactions_out.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_denials(&self, n: u64) {
        self.denials.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_parked(&self) {
        self.parked.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_unparked(&self) {
        self.unparked.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_missed(&self, n: u64) {
        self.missed.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn set_position(&self, p: u64) {
        self.position.store(p, Ordering::Relaxed);
    }

    /// Records that a pull came back empty after the runner had seen durable
    /// watermark `w`: every matching event up to `w` has been handled.
    pub(crate) fn idle_at(&self, w: u64) {
        self.idle_at.store(w, Ordering::SeqCst);
    }

    /// Forgets the idle observation (a batch is being handled).
    pub(crate) fn busy(&self) {
        self.idle_at.store(NOT_OBSERVED, Ordering::SeqCst);
    }

    pub(crate) fn set_state(&self, s: RunState) {
        self.state.store(s as u8, Ordering::SeqCst);
    }

    pub(crate) fn fail(&self, e: String) {
        *self.error.lock() = Some(e);
        self.set_state(RunState::Failed);
    }

    /// The life-cycle state.
    pub fn state(&self) -> RunState {
        let n = self.state.load(Ordering::SeqCst);
        RunState::ALL
            .into_iter()
            .find(|s| *s as u8 == n)
            .unwrap_or(RunState::Failed)
    }

    /// The terminal error, when the runner failed.
    pub fn error(&self) -> Option<String> {
        self.error.lock().clone()
    }

    /// True when the runner has handled everything up to durable watermark
    /// `durable` and has nothing pending, or has exited (an exited runner
    /// makes no more progress to wait for).
    pub fn is_idle_at(&self, durable: u64) -> bool {
        match self.state() {
            RunState::Running => self.idle_at.load(Ordering::SeqCst) == durable,
            s => s.has_exited(),
        }
    }

    /// A snapshot; `durable` is the store's current durable watermark.
    pub fn snapshot(&self, durable: u64) -> StatusSnapshot {
        let position = self.position.load(Ordering::Relaxed);
        StatusSnapshot {
            name: self.name.clone(),
            version: self.version.lock().clone(),
            events_in: self.events_in.load(Ordering::Relaxed),
            reactions_out: self.reactions_out.load(Ordering::Relaxed),
            denials: self.denials.load(Ordering::Relaxed),
            parked: self.parked.load(Ordering::Relaxed),
            unparked: self.unparked.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            missed: self.missed.load(Ordering::Relaxed),
            position,
            lag: if self.lossy {
                0
            } else {
                durable.saturating_sub(position)
            },
            lossy: self.lossy,
            state: self.state(),
            error: self.error(),
        }
    }
}

impl fmt::Display for StatusSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: in {}, out {}, denied {}, parked {}",
            self.name, self.events_in, self.reactions_out, self.denials, self.parked
        )?;
        if self.unparked > 0 {
            write!(f, ", unparked {}", self.unparked)?;
        }
        if self.failures > 0 {
            write!(f, ", failures {}", self.failures)?;
        }
        if self.lossy {
            write!(f, ", missed {}", self.missed)?;
        } else {
            write!(f, ", lag {}", self.lag)?;
        }
        match self.state {
            RunState::Failed => write!(f, ", FAILED")?,
            RunState::Stopped => write!(f, ", stopped")?,
            _ => {}
        }
        Ok(())
    }
}
