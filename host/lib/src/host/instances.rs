//! Parallel instances by key, the host's part: the check that `run` starts
//! a reactor with the number of instances its checkpoints record, and the
//! operator's hand-over to another number (`reset NAME --instances M`).
//!
//! A reactor run as `N` instances has one live checkpoint per instance
//! (cursor `reactor.NAME` for one, `reactor.NAME.i-of-N` for more; see
//! [`Instance`]). Starting it with another count would read the log with
//! new cursors from the start, handling again what the old ones handled,
//! so it is refused ([`InstancesError::Mismatch`]) naming the hand-over.
//!
//! The hand-over, with no host running: every live checkpoint must be at
//! one position `P` (`run --until-idle` leaves every instance at the head:
//! a reactor of several instances stops at its position). Then the new
//! instances' checkpoints are written at `P`, keyed for their shards, and
//! the old ones retired (keyed [`RETIRED_REGION`], which no runner opens),
//! each as one durable append with a `batpak.reactor.instances` record.
//! Every event up to `P` was handled by its old instance and every later
//! one is left to its new instance: nothing lost, nothing repeated. A crash
//! part-way leaves live checkpoints of both counts, all at `P`: `run`
//! refuses, and the same reset completes the hand-over.

use batpak_runtime::{live_instances, Instance, RETIRED_REGION};
use batpak_store::system::{RESET_ENTITY_PREFIX, SYSTEM_SCOPE};
use batpak_store::{
    AppendOptions, CheckpointUpdate, Coordinate, EventId, Proposal, Region, Store, StoreError,
};
use serde::Serialize;
use serde_json::json;

/// The kind of the record of each step of a hand-over.
pub const INSTANCES_KIND: &str = "batpak.reactor.instances";

/// Why a reactor's instances cannot start or be handed over.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstancesError {
    /// `run` asks for another number of instances than the store's live
    /// checkpoints record.
    #[error("reactor {reactor}: run asks for {asked} instance(s), but the store's checkpoints record {}; starting another number would handle events again. Changing the number of instances is a hand-over: stop `run`, run `batpak-host run --until-idle` with the recorded number (so every instance stops at one position), then `batpak-host reset {reactor} --instances {asked} --plugin FILE`, then start `run` with {asked}", describe(.recorded))]
    Mismatch {
        /// The reactor.
        reactor: String,
        /// The number asked for.
        asked: u32,
        /// The live checkpoints: cursor and position.
        recorded: Vec<(String, u64)>,
    },
    /// The live checkpoints are not all at one position (or an old
    /// instance has none), so no single position hands over without loss.
    #[error("reactor {reactor}: its instances are not at one position ({}); a hand-over needs every instance at one position. Run `batpak-host run --until-idle` with the current number of instances (each then stops at the head), then run this reset again", describe(.positions))]
    NotAligned {
        /// The reactor.
        reactor: String,
        /// Each live checkpoint (or missing instance) and its position.
        positions: Vec<(String, u64)>,
    },
    /// No live checkpoint: nothing to hand over.
    #[error("reactor {0} has no checkpoint in this store: nothing to hand over; start `run` with the number of instances you want")]
    NoCheckpoint(String),
    /// The store failed.
    #[error("the store: {0}")]
    Store(#[from] StoreError),
}

fn describe(list: &[(String, u64)]) -> String {
    list.iter()
        .map(|(c, p)| format!("{c} at {p}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that reactor `name` may start as `count` instances on `store`:
/// its live checkpoints (if any) are all of `count` instances.
///
/// # Errors
/// [`InstancesError::Mismatch`] naming the hand-over.
pub fn check_instances(store: &Store, name: &str, count: u32) -> Result<(), InstancesError> {
    let live = live_instances(name, &store.checkpoints());
    if live.iter().all(|(i, _)| i.count == count) {
        return Ok(());
    }
    Err(InstancesError::Mismatch {
        reactor: name.to_string(),
        asked: count,
        recorded: live
            .into_iter()
            .map(|(_, c)| (c.cursor, c.sequence))
            .collect(),
    })
}

/// What a hand-over did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HandOver {
    /// The reactor.
    pub reactor: String,
    /// The numbers of instances its live checkpoints recorded.
    pub from: Vec<u32>,
    /// The number of instances it has now.
    pub to: u32,
    /// The position every new instance starts after.
    pub position: u64,
    /// The cursors written live, then the cursors retired.
    pub started: Vec<String>,
    /// The old cursors retired.
    pub retired: Vec<String>,
}

/// Hands reactor `name` (whose unsharded region is `region`) over to
/// `count` instances (see the module doc). The caller makes sure no host
/// runs on `store`.
///
/// # Errors
/// [`InstancesError::NoCheckpoint`], [`InstancesError::NotAligned`], or
/// the store failing (then the same call completes it).
pub fn hand_over(
    store: &Store,
    name: &str,
    region: &Region,
    count: u32,
) -> Result<HandOver, InstancesError> {
    let live = live_instances(name, &store.checkpoints());
    if live.is_empty() {
        return Err(InstancesError::NoCheckpoint(name.to_string()));
    }
    let mut from: Vec<u32> = live.iter().map(|(i, _)| i.count).collect();
    from.sort_unstable();
    from.dedup();
    // Each old instance, at its checkpoint (an instance of an old count
    // without one has handled nothing: at 0).
    let mut old: Vec<(Instance, String, u64)> = live
        .iter()
        .map(|(i, c)| (*i, c.cursor.clone(), c.sequence))
        .collect();
    for &k in from.iter().filter(|&&k| k != count) {
        for i in Instance::all(k) {
            if !live.iter().any(|(l, _)| *l == i) {
                old.push((i, format!("{} (no checkpoint)", i.cursor_id(name)), 0));
            }
        }
    }
    // P is the furthest checkpoint; every other instance must have nothing
    // of its own shard between its checkpoint and P (it stopped at P, or
    // what lies between belongs to other shards), else those events would
    // be handled by nobody.
    let position = old.iter().map(|o| o.2).max().unwrap_or(0);
    for (i, _, at) in &old {
        if *at < position {
            let next = store.scan(&i.region(region), *at, 1, false)?;
            if next.first().is_some_and(|e| e.sequence() <= position) {
                return Err(InstancesError::NotAligned {
                    reactor: name.to_string(),
                    positions: old.iter().map(|o| (o.1.clone(), o.2)).collect(),
                });
            }
        }
    }
    let positions: Vec<(String, u64)> = old.iter().map(|o| (o.1.clone(), o.2)).collect();
    let event_id = if position == 0 {
        EventId(0)
    } else {
        store
            .get_by_sequence(position)?
            .map(|e| e.header.id)
            .ok_or_else(|| InstancesError::NotAligned {
                reactor: name.to_string(),
                positions: positions.clone(),
            })?
    };
    let step = |cursor: &str, fingerprint: [u8; 32], action: &str| -> Result<(), StoreError> {
        let record = json!({
            "reactor": name,
            "cursor": cursor,
            "action": action,
            "from": from,
            "to": count,
            "position": position,
        });
        let proposal = Proposal::new(
            Coordinate {
                entity: format!("{RESET_ENTITY_PREFIX}{name}"),
                scope: SYSTEM_SCOPE.into(),
            },
            INSTANCES_KIND,
            serde_json::to_vec(&record).expect("a JSON value serialises"),
        );
        store.append_system(
            vec![proposal],
            AppendOptions::durable().with_checkpoint(CheckpointUpdate {
                cursor: cursor.to_string(),
                region: fingerprint,
                sequence: position,
                event_id,
            }),
        )?;
        Ok(())
    };
    // New ones first: a crash between leaves both counts live at one
    // position, which `run` refuses and this call completes.
    let mut started = Vec::new();
    for i in Instance::all(count) {
        let cursor = i.cursor_id(name);
        step(&cursor, i.region(region).fingerprint(), "start")?;
        started.push(cursor);
    }
    let mut retired = Vec::new();
    for (i, c) in &live {
        if i.count != count {
            step(&c.cursor, RETIRED_REGION, "retire")?;
            retired.push(c.cursor.clone());
        }
    }
    Ok(HandOver {
        reactor: name.to_string(),
        from,
        to: count,
        position,
        started,
        retired,
    })
}
