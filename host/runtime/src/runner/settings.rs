//! [`RunnerSettings`]: how a runner behaves.

use crate::capability_gate::ReactionContext;
use crate::descriptor::Descriptor;
use crate::log::LogLevel;
use crate::parking::FailurePolicy;
use batpak_store::GateSet;
use std::sync::Arc;
use std::time::Duration;

/// Default largest batch.
pub const DEFAULT_MAX_BATCH: usize = 256;

/// Default [`RunnerSettings::durable_window`]: enough batches in flight for
/// one fsync to cover several of them when the disk is slower than the
/// reactor, few enough that a crash redelivers little.
pub const DEFAULT_DURABLE_WINDOW: u32 = 4;

/// Default [`RunnerSettings::log_retry`]: longer than a replicated log's
/// leader election, short enough that a log gone for good is reported.
pub const DEFAULT_LOG_RETRY: Duration = Duration::from_secs(30);

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
    /// Hot swap: a new version that fails (a call errs, traps or times out)
    /// within its first `swap_rollback` batches is replaced by the version
    /// it replaced, which handles the failing batch again. 0: never.
    pub swap_rollback: u32,
    /// Committed batches whose fsync the runner does not wait for before
    /// handling the next batch (0: wait for each batch's fsync before the
    /// next pull). Every batch is still appended atomically with its
    /// checkpoint, in order, so a crash loses at most these last batches
    /// and redelivers exactly them; the runner waits for all of them
    /// before it reports idle, swaps or stops.
    pub durable_window: u32,
    /// How long the runner keeps retrying a log that is unavailable — a
    /// read, a commit, or the reads that resolve a commit of unknown
    /// outcome — before it stops with the error. Retries wait
    /// `policy`'s backoff.
    pub log_retry: Duration,
    /// Which of the reactor's parallel instances this runner is: it reads
    /// only that shard of the region, under that instance's cursor id
    /// (the default, 0 of 1, is the whole region under `reactor.<name>`).
    /// Only a cursor canal runs as more than one instance.
    pub instance: super::instance::Instance,
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
            swap_rollback: 0,
            durable_window: DEFAULT_DURABLE_WINDOW,
            log_retry: DEFAULT_LOG_RETRY,
            instance: super::instance::Instance::default(),
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
            .field("swap_rollback", &self.swap_rollback)
            .field("durable_window", &self.durable_window)
            .field("log_retry", &self.log_retry)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// The largest batch: the operator's limit, lowered by the reactor's own.
pub(crate) fn batch_limit(settings: &RunnerSettings, d: &Descriptor) -> usize {
    match d.max_batch {
        0 => settings.max_batch,
        n => settings.max_batch.min(n as usize),
    }
    .max(1)
}
