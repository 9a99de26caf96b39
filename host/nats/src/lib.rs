//! batpak-nats: the host's log on a NATS JetStream cluster, for running
//! beyond one machine. Groundwork: the CLI does not select it yet.
//!
//! - A **partition** is one stream (`BATPAK_P<n>`, its own Raft group);
//!   an entity's partition is `fnv1a64(entity) % K` ([`partition`]).
//!   Sequences are per partition: global order is per partition.
//! - **Entity chains** hold within the partition as in the embedded store:
//!   each event carries its entity sequence, the previous event's id and
//!   hash, and its own hash (checked on read). Every write carries
//!   `Nats-Expected-Last-Subject-Sequence` on its entity's subjects, so two
//!   hosts writing one entity cannot fork its chain; a writer whose view
//!   was stale re-reads and chains again. `expected_sequence` is honoured.
//! - An **append** returns once the stream's quorum has fsynced it; it is
//!   de-duplicated by `Nats-Msg-Id` (id or idempotency key) within the
//!   stream's 2-minute window.
//! - A **commit** — a reactor's reactions plus its checkpoint — is one
//!   atomic batch, fenced by `Nats-Expected-Last-Subject-Sequence` on the
//!   reactor's checkpoint subject: a stale instance's batch is refused
//!   whole ([`LogError::Fenced`]). The host's own records go as an atomic
//!   batch without a checkpoint ([`NatsLog::append_batch`]).
//! - An operation whose answer did not come ends in [`LogError::Unknown`]
//!   (it may or may not have been stored) with how to resolve it: a commit
//!   by its checkpoint's token ([`NatsLog::resolve_commit`], final: when the
//!   checkpoint is still at the commit's fence it seals the fence, so a copy
//!   of the commit still in flight can never land later), an append by
//!   sending it again (de-duplicated within the window), a record batch by
//!   looking a record up (not final while a copy may be in flight: re-send
//!   it, its entity checks let only one copy land).
//!
//! The client (`async-nats`, atomic batches through Synadia's
//! `jetstream-extra`) runs on one dedicated thread with a current-thread
//! tokio runtime; the API here is synchronous.
//!
//! [`init_cluster`] refuses a node older than nats-server 2.12 or without
//! `jetstream { sync_interval: always }` (read from each node's monitoring
//! endpoint), naming the fix.
//!
//! # Behind the log seam
//! The runtime's seam (`batpak_log::EventLog`, one value per partition)
//! maps onto this API one call each; [`PartitionLog`] is that adapter (what
//! the table cannot say — unknown outcomes resolved inside, other
//! partitions refused — is in its module docs):
//!
//! | `EventLog` | `NatsLog` (partition `p`) |
//! |---|---|
//! | `read(region, after, max)` | [`NatsLog::read_region`] (`events`, `scanned`) |
//! | `describe()` | `nats partition {p} of {K}` |
//! | `open_cursor` | `ReadCursor` over `read` and `wait_for_events` (every stored message is durable) |
//! | `commit` with checkpoint and fence | [`NatsLog::commit`] of [`Commit::new`]`(p, cursor, records, `[`encode_cursor`]`(update), fence)` |
//! | `Committed { upto, fence }` | `upto`: [`Committed::checkpoint`]; `fence`: `Fence(`[`Committed::checkpoint`]`)` |
//! | a checkpoint without a fence | fenced on the checkpoint's current sequence, read first |
//! | `Durability::{Accepted, Visible, Durable}` | all `Durable`: an acknowledgement means a quorum fsynced it |
//! | `commit` without checkpoint, `append_system` | [`NatsLog::append_batch`] |
//! | `checkpoint(cursor)` | [`NatsLog::checkpoint`] + [`decode_cursor`] |
//! | `fence(cursor)` | the checkpoint's `sequence` (0 without one) |
//! | `get(id)` | [`NatsLog::lookup_in`] (this partition only) |
//! | `get_by_sequence`, `entity_events` | [`NatsLog::get_by_sequence`], [`NatsLog::entity_events`] |
//! | `heads()` | [`NatsLog::last_known`] for both `accepted` and `durable` |
//! | `wait_durable(seq)` | true once [`NatsLog::last_known`] (or [`NatsLog::last_sequence`]) reaches `seq` |
//! | `wait_for_events(after, t)` | [`NatsLog::wait`], then [`NatsLog::last_sequence`] |
//! | `subscribe(region, capacity)` | [`NatsLog::subscribe`] (a [`LiveFeed`]: the same canal) |
//!
//! Errors map as: `Fenced` → `CommitError::Fenced` (`found`: re-read the
//! checkpoint); a checkpointed commit's `Unknown` and `Unavailable` (a
//! stale leader can answer that during a leader change while the new one
//! stores the batch) → resolved inside with [`NatsLog::resolve_commit`],
//! `Unknown` only when that fails (a record batch's `Unknown` → `Unknown`);
//! otherwise `Unavailable`, `Contended` →
//! `Unavailable`; `Conflict`, `BatchTooLarge`, `Invalid`, `Unsupported`,
//! `Refused` → `Refused`; `Damaged` → `Failed`; `ClientThreadGone` →
//! `Closed`.

#![warn(missing_docs)]

mod cluster_init;
mod codec;
mod cursor_state;
mod driver;
mod error;
mod event_log;
mod heads;
mod layout;
mod lease;
mod lease_fence;
mod live_feed;
mod log;
pub mod partition;
mod plugin_store;
pub mod server_check;

pub use cluster_init::{init_cluster, InitError, InitSpec};
pub use cursor_state::{decode_cursor, encode_cursor};
pub use error::LogError;
pub use event_log::{CrossPartition, PartitionLog};
pub use layout::{Layout, LAYOUT_BUCKET, LAYOUT_KEY, MAX_PARTITIONS, PLUGINS_BUCKET};
pub use lease::{
    host_id, preferred, reactor_slot, HostBeat, LeaseError, LeaseSnapshot, LeaseView, Leases,
    Running, LEASES_BUCKET,
};
pub use lease_fence::seal_for_takeover;
pub use live_feed::LiveFeed;
pub use log::{
    Appended, Checkpoint, Commit, Committed, NatsLog, NatsOptions, ReadBatch, Resolution,
    COMMIT_HEADER, MAX_REACTIONS, MAX_READ,
};
pub use plugin_store::{PluginStore, PluginStoreError, ReactorVersion};
