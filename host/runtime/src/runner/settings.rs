//! [`RunnerSettings`]: how a runner behaves.

use crate::admission::ReactionContext;
use crate::log::LogLevel;
use crate::parking::FailurePolicy;
use batpak_store::GateSet;
use std::sync::Arc;
use std::time::Duration;

/// Default largest batch.
pub const DEFAULT_MAX_BATCH: usize = 256;

/// How a runner behaves. The defaults suit production; tests shorten the
/// waits.
#[derive(Clone)]
pub struct RunnerSettings {
    /// Largest batch pulled (a reactor's own non-zero `max_batch` lowers it).
    pub max_batch: usize,
    /// How long one pull waits for events before coming back empty.
    pub pull_wait: Duration,
    /// The operator's grant: kinds this reactor may emit (`None` grants
    /// every kind it declares).
    pub grant_emits: Option<Vec<String>>,
    /// Caller-defined gates, evaluated after the capability gate.
    pub gates: Arc<GateSet<ReactionContext>>,
    /// Retry, backoff and parking policy.
    pub policy: FailurePolicy,
    /// Queue bound of a lossy subscription.
    pub subscription_capacity: usize,
    /// A batch with no output does not write a checkpoint at once; one is
    /// written after this long, after `checkpoint_batches` such batches,
    /// when idle, and at shutdown. Redelivering such a batch is harmless.
    pub checkpoint_interval: Duration,
    /// See `checkpoint_interval`.
    pub checkpoint_batches: u32,
    /// Re-deliver parked events whose replay was requested, before the
    /// first pull.
    pub replay_parked: bool,
    /// Lowest level of the runner's own log lines.
    pub log_level: LogLevel,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        RunnerSettings {
            max_batch: DEFAULT_MAX_BATCH,
            pull_wait: Duration::from_millis(100),
            grant_emits: None,
            gates: Arc::new(GateSet::new()),
            policy: FailurePolicy::default(),
            subscription_capacity: 4096,
            checkpoint_interval: Duration::from_secs(1),
            checkpoint_batches: 64,
            replay_parked: true,
            log_level: LogLevel::Info,
        }
    }
}

impl std::fmt::Debug for RunnerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerSettings")
            .field("max_batch", &self.max_batch)
            .field("grant_emits", &self.grant_emits)
            .field("gates", &self.gates.len())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The cursor id of reactor `name`: `reactor.<name>`.
pub fn cursor_id(name: &str) -> String {
    format!("reactor.{name}")
}
