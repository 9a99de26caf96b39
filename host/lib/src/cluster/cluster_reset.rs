//! `reset NAME --to start|end|current --store nats://…`: moves a paused
//! reactor's checkpoint in every partition (or in one, `--partition P`,
//! which also takes a sequence of that partition).
//!
//! - **Paused first.** As the embedded `reset` refuses a running reactor,
//!   this one refuses unless `pause NAME --store` has flagged the reactor
//!   paused (the refusal names the `pause` command), and then waits (at most
//!   [`RESET_WAIT`]) until no host renews a lease of its slots: hosts that
//!   follow the flag release them; a host that is stuck or cut off (so
//!   `pause` could not see it stop) stops renewing, and after its lease's
//!   TTL it counts as gone. A host still renewing after the wait is named
//!   in the refusal. Each partition's move is a **fenced commit**: the
//!   reset record and the new checkpoint as one atomic batch, fenced on the
//!   checkpoint just read. So the stuck host's instance, when it wakes and
//!   commits, is refused whole (fenced) — the host then drops the slot, and
//!   follows the pause flag — and the slot, taken again on `resume`, starts
//!   from the reset position; a commit that lands between the read and the
//!   reset's batch makes that batch fenced, and the reset reads the
//!   checkpoint again and retries.
//! - **Positions are per partition.** `start` (before the first event) and
//!   `end` (after the partition's last event) apply to each partition; a
//!   sequence is only accepted with `--partition P` (it is a sequence of
//!   that partition's stream, as `events --partition P` shows), and must be
//!   an event's. `current` keeps each position (it only records).
//! - **Recorded per partition.** Each move writes the embedded reset's
//!   record, `batpak.reactor.reset` with `{reactor, cursor, from, to,
//!   region, requested}` plus `partition`, on that partition's own copy of
//!   the reactor's reset entity ([`local_entity`]`("batpak.reactor:<name>",
//!   p, K)`), in the same batch as the checkpoint: both land or neither.
//! - **Re-delivery duplicates nothing**, as on the embedded store: a slot's
//!   log leaves out reactions already stored while the instance is below
//!   the highest `from` recorded ([`SlotLog`](crate::cluster::slot_log)).

use crate::cluster::address::ClusterAddress;
use crate::cluster::cluster_host::DEFAULT_LEASE_TTL;
use crate::cluster::cluster_host::{open_log, ClusterRunError};
use crate::cluster::cluster_run_error::{open_plugin_store, plugins_error};
use batpak_nats::partition::local_entity;
use batpak_nats::{
    decode_cursor, encode_cursor, host_id, reactor_slot, Commit, LeaseView, Leases, LogError,
    NatsLog, NatsOptions, Resolution,
};
use batpak_runtime::cursor_id;
use batpak_service::ResetTo;
use batpak_store::system::{RESET_ENTITY_PREFIX, RESET_KIND, SYSTEM_SCOPE};
use batpak_store::{CheckpointUpdate, Coordinate, EventId, Proposal};
use serde::Serialize;
use std::time::{Duration, Instant};

/// The longest `reset` waits for the hosts to stop renewing the leases of
/// a paused reactor's slots.
pub const RESET_WAIT: Duration = Duration::from_secs(30);

/// How often one partition's move is tried again after another commit
/// moved its checkpoint between the read and the reset's batch.
const TRIES: u32 = 8;

/// What the reset did in one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionReset {
    /// Reactor name.
    pub reactor: String,
    /// The partition.
    pub partition: u32,
    /// Position before (a sequence of the partition; 0: none).
    pub from: u64,
    /// Position after.
    pub to: u64,
    /// Id of the `batpak.reactor.reset` event that records it.
    pub event: String,
    /// That event's sequence in the partition.
    pub seq: u64,
}

/// Why a cluster reset failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterResetError {
    /// Refused before anything moved, or the cluster did not answer.
    #[error(transparent)]
    Cluster(#[from] ClusterRunError),
    /// A partition's move failed; the partitions in `done` are reset
    /// (each recorded), the others are not.
    #[error(
        "resetting reactor {reactor} in partition {partition}: partitions {done:?} are reset, \
         the others are not; run the same reset again (a partition already there is moved \
         again and recorded again)"
    )]
    Partition {
        /// The reactor.
        reactor: String,
        /// The partition that failed.
        partition: u32,
        /// The partitions reset before it.
        done: Vec<u32>,
        /// Why.
        #[source]
        source: LogError,
    },
}

/// Moves reactor `name`'s checkpoint to `to` in partition `partition`, or
/// in every partition (see the module docs). Returns one entry per
/// partition moved, in order.
///
/// # Errors
/// [`ClusterRunError::Usage`] (inside [`ClusterResetError::Cluster`]) for a
/// reactor the cluster does not run, one not paused or still held by a
/// host, a sequence without `--partition` or that is not an event's, a
/// partition the cluster does not have, or a reactor with no checkpoint
/// anywhere; [`ClusterResetError::Partition`] when a partition's move
/// fails.
pub fn cluster_reset(
    address: &ClusterAddress,
    name: &str,
    to: ResetTo,
    partition: Option<u32>,
) -> Result<Vec<PartitionReset>, ClusterResetError> {
    let usage = |m: String| ClusterResetError::Cluster(ClusterRunError::Usage(m));
    batpak_runtime::validate_reactor_name(name).map_err(usage)?;
    if let (ResetTo::Sequence(n), None) = (to, partition) {
        return Err(usage(format!(
            "--to {n}: on a cluster a sequence belongs to one partition (each has its own \
             order); name it with --partition P (`batpak-host events --store {address} \
             --partition P` shows its sequences), or use --to start or --to end for every \
             partition"
        )));
    }
    let options = NatsOptions::default();
    let log = open_log(address, &options)?;
    let k = log.layout().partitions;
    if let Some(p) = partition.filter(|p| *p >= k) {
        return Err(usage(format!(
            "--partition {p}: the cluster at {address} has partitions 0 to {}",
            k - 1
        )));
    }
    let store = open_plugin_store(address, &options, &log)?;
    let run_error = plugins_error(address);
    let plugins_error = |source| ClusterResetError::Cluster(run_error(source));
    if store.current(name).map_err(plugins_error)?.is_none() {
        return Err(usage(format!(
            "the cluster at {address} runs no reactor {name:?} (`status --store {address}` lists them)"
        )));
    }
    if !store.paused(name).map_err(plugins_error)? {
        return Err(usage(format!(
            "reactor {name} is not paused: a reset moves the checkpoint of a reactor no host \
             runs. Pause it first (`batpak-host pause {name} --store {address}`), reset, then \
             `batpak-host resume {name} --store {address}`"
        )));
    }
    let held = wait_released(address, &options, name, k, log.layout().replicas)?;
    if !held.is_empty() {
        return Err(usage(format!(
            "reactor {name} is flagged paused, but after {} s these instances still run \
             (their hosts keep renewing the leases): {}; `batpak-host status --store {address}` \
             shows them. Reset again once they stopped",
            RESET_WAIT.as_secs(),
            held.join(", ")
        )));
    }
    let cursor = cursor_id(name);
    let region = region_of(&log, &cursor, name)
        .map_err(|(p, source)| ClusterResetError::Partition {
            reactor: name.to_string(),
            partition: p,
            done: Vec::new(),
            source,
        })?
        .ok_or_else(|| {
            usage(format!(
                "reactor {name} has no checkpoint on the cluster at {address} yet (no instance \
                 has committed): there is nothing to reset"
            ))
        })?;
    let targets: Vec<u32> = match partition {
        Some(p) => vec![p],
        None => (0..k).collect(),
    };
    let mut out: Vec<PartitionReset> = Vec::new();
    for p in targets {
        let moved = reset_partition(&log, name, &cursor, region, to, p);
        match moved {
            Ok(r) => out.push(r),
            Err(Step::Usage(m)) => return Err(usage(m)),
            Err(Step::Log(source)) => {
                return Err(ClusterResetError::Partition {
                    reactor: name.to_string(),
                    partition: p,
                    done: out.iter().map(|r| r.partition).collect(),
                    source,
                })
            }
        }
    }
    Ok(out)
}

/// Waits (at most [`RESET_WAIT`]) until every slot of reactor `name` is
/// free or its holder stopped renewing for the lease's TTL; returns the
/// slots still renewed then (`partition P on host H`), empty when none.
fn wait_released(
    address: &ClusterAddress,
    options: &NatsOptions,
    name: &str,
    partitions: u32,
    replicas: u32,
) -> Result<Vec<String>, ClusterResetError> {
    let shown = address.to_string();
    let leases_error = |source| {
        ClusterResetError::Cluster(ClusterRunError::Leases {
            address: shown.clone(),
            source,
        })
    };
    let leases = Leases::open(
        address.servers(),
        options,
        &host_id(&format!("reset-{}", std::process::id())),
        DEFAULT_LEASE_TTL,
        replicas,
    )
    .map_err(leases_error)?;
    let deadline = Instant::now() + RESET_WAIT;
    loop {
        let snap = leases.snapshot().map_err(leases_error)?;
        let held: Vec<String> = (0..partitions)
            .filter_map(|p| match snap.lease(&reactor_slot(name, p)) {
                LeaseView::Held {
                    holder,
                    expired: false,
                    ..
                } => Some(format!("partition {p} on host {holder}")),
                _ => None,
            })
            .collect();
        if held.is_empty() || Instant::now() >= deadline {
            return Ok(held);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The reactor's region fingerprint, from the first partition whose
/// checkpoint holds a cursor state (every instance shares one region).
fn region_of(log: &NatsLog, cursor: &str, name: &str) -> Result<Option<[u8; 32]>, (u32, LogError)> {
    for p in 0..log.layout().partitions {
        let Some(c) = log.checkpoint(p, cursor).map_err(|e| (p, e))? else {
            continue;
        };
        // A takeover's seal of a partition with no checkpoint is empty.
        if c.payload.is_empty() {
            continue;
        }
        let state = decode_cursor(cursor, &c.payload).ok_or_else(|| {
            (
                p,
                LogError::Damaged {
                    partition: p,
                    sequence: c.sequence,
                    reason: format!("the checkpoint of reactor {name} is not a cursor state"),
                },
            )
        })?;
        return Ok(Some(state.region));
    }
    Ok(None)
}

/// Why one partition's move stopped.
enum Step {
    /// The request does not fit this partition (the message).
    Usage(String),
    /// The cluster failed.
    Log(LogError),
}

impl From<LogError> for Step {
    fn from(e: LogError) -> Step {
        Step::Log(e)
    }
}

/// The last event of partition `p` at or below `from`: its sequence and
/// id, `(0, 0)` when there is none. Checkpoint and outbox messages share
/// the stream's sequence, so the tail is walked down to an event.
fn last_event_at_or_below(log: &NatsLog, p: u32, from: u64) -> Result<(u64, EventId), LogError> {
    let mut s = from;
    while s > 0 {
        if let Some(e) = log.get_by_sequence(p, s)? {
            return Ok((s, e.header.id));
        }
        s -= 1;
    }
    Ok((0, EventId(0)))
}

/// Moves the checkpoint in partition `p` (one fenced commit with the
/// record), retrying when another commit moved it in between.
fn reset_partition(
    log: &NatsLog,
    name: &str,
    cursor: &str,
    region: [u8; 32],
    to: ResetTo,
    p: u32,
) -> Result<PartitionReset, Step> {
    let entity = local_entity(
        &format!("{RESET_ENTITY_PREFIX}{name}"),
        p,
        log.layout().partitions,
    );
    let mut last_error = None;
    for _ in 0..TRIES {
        let current = log.checkpoint(p, cursor)?;
        let expected = current.as_ref().map_or(0, |c| c.sequence);
        let state = current
            .as_ref()
            .filter(|c| !c.payload.is_empty())
            .and_then(|c| decode_cursor(cursor, &c.payload));
        let from = state.as_ref().map_or(0, |s| s.sequence);
        let (target, event_id) = match to {
            ResetTo::Start => (0, EventId(0)),
            ResetTo::Current => (from, state.as_ref().map_or(EventId(0), |s| s.event_id)),
            ResetTo::End => last_event_at_or_below(log, p, log.last_sequence(p)?)?,
            ResetTo::Sequence(0) => (0, EventId(0)),
            ResetTo::Sequence(n) => {
                let last = log.last_sequence(p)?;
                if n > last {
                    return Err(Step::Usage(format!(
                        "sequence {n} is beyond the end of partition {p} ({last}); pick an \
                         event's sequence there (`events --partition {p}`), start or end"
                    )));
                }
                match log.get_by_sequence(p, n)? {
                    Some(e) => (n, e.header.id),
                    None => {
                        return Err(Step::Usage(format!(
                            "sequence {n} of partition {p} is not an event (a checkpoint or an \
                             outbox message); pick an event's sequence (`events --partition \
                             {p}`), start or end"
                        )))
                    }
                }
            }
        };
        let record = serde_json::json!({
            "reactor": name,
            "cursor": cursor,
            "partition": p,
            "from": from,
            "to": target,
            "region": batpak_store::hex(&region),
            "requested": to.to_string(),
        });
        let mut proposal = Proposal::new(
            Coordinate {
                entity: entity.clone(),
                scope: SYSTEM_SCOPE.into(),
            },
            RESET_KIND,
            serde_json::to_vec(&record).expect("a JSON value serialises"),
        );
        let id = EventId::generate();
        proposal.id = Some(id);
        let update = CheckpointUpdate {
            cursor: cursor.to_string(),
            region,
            sequence: target,
            event_id,
        };
        let commit = Commit::new(p, cursor, vec![proposal], encode_cursor(&update), expected);
        let seq = match log.commit(&commit) {
            Ok(done) => done.reactions.first().map(|r| r.1),
            Err(LogError::Fenced { .. }) => continue,
            Err(e @ (LogError::Unknown { .. } | LogError::Unavailable { .. })) => {
                match log.resolve_commit(&commit)? {
                    Resolution::Landed(_) => log.lookup_in(p, id)?.map(|e| e.header.sequence),
                    Resolution::NotLanded { .. } => {
                        last_error = Some(e);
                        continue;
                    }
                }
            }
            Err(e) => return Err(Step::Log(e)),
        };
        return Ok(PartitionReset {
            reactor: name.to_string(),
            partition: p,
            from,
            to: target,
            event: id.to_string(),
            seq: seq.unwrap_or(0),
        });
    }
    Err(Step::Log(
        last_error.unwrap_or(LogError::Contended { tries: TRIES }),
    ))
}
