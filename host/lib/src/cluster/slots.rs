//! The slots one cluster host owns: for each, the lease revision it holds
//! (the next renew's fence), when it last renewed, and the real runner
//! (`batpak_runtime::spawn` over the partition's [`PartitionLog`]).

use crate::cluster::slot_log::SlotLog;
use batpak_log::{CommitError, SharedLog};
use batpak_nats::{PartitionLog, Running};
use batpak_runtime::{RunnerError, RunnerHandle, SwapTicket};
use batpak_store::CanalHandle;
use std::time::{Duration, Instant};

/// The default lease TTL of `run --store`: a dead host's slots move after
/// about this long.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(4);

/// One (reactor, partition) this host holds the lease of and runs.
pub struct OwnedSlot {
    /// `reactor/<name>/<partition>`.
    pub slot: String,
    /// The reactor's index in the host's plugin list.
    pub reactor: usize,
    /// The lease's revision this host wrote last (renew fence).
    pub revision: u64,
    /// When the lease was last written by this host (its own clock).
    pub renewed: Instant,
    /// The runner.
    pub handle: Option<RunnerHandle>,
    /// A swap handed to the runner, waiting for its batch boundary.
    pub swap: Option<SwapTicket>,
}

/// How a runner ended.
pub enum Ended {
    /// Stopped when asked (a batch boundary), its work committed.
    Clean,
    /// Another host took the slot over: its commit was refused whole by
    /// the fence.
    Fenced(String),
    /// Failed otherwise (the message).
    Failed(String),
}

impl OwnedSlot {
    /// True once the runner thread has exited by itself.
    pub fn finished(&self) -> bool {
        self.handle.as_ref().is_none_or(RunnerHandle::is_finished)
    }

    /// What the runner runs now (a swap changes it), for the lease.
    pub fn running(&self) -> Option<Running> {
        self.handle.as_ref().map(|h| {
            let info = h.running();
            Running {
                version: info.version,
                digest: info.digest,
            }
        })
    }

    /// Stops the runner at its next batch boundary (the batch in hand is
    /// committed, or refused by the fence) and says how it ended.
    pub fn stop(&mut self) -> Ended {
        let Some(h) = self.handle.take() else {
            return Ended::Clean;
        };
        ended(Box::new(h).stop_and_join())
    }
}

/// Sorts a runner's result.
pub fn ended(r: Result<(), RunnerError>) -> Ended {
    match r {
        Ok(()) => Ended::Clean,
        Err(
            e @ RunnerError::Commit {
                source: CommitError::Fenced { .. },
                ..
            },
        ) => Ended::Fenced(format!("{e:#}")),
        Err(e) => Ended::Failed(format!("{e:#}")),
    }
}

/// The log reactor `reactor`'s slot runner runs over (see [`SlotLog`]),
/// counting its checkpointed commits in `commits`.
pub fn shared(
    p: &PartitionLog,
    reactor: &str,
    commits: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> SharedLog {
    std::sync::Arc::new(SlotLog::new(p.clone(), reactor, commits))
}
