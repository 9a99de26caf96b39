//! batpak-nats: the host's log on a NATS JetStream cluster, for running
//! beyond one machine: what `--store nats://…` selects.
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
//!   whole ([`LogError::Fenced`]). Reactions for entities of other
//!   partitions ride in the same batch as outbox messages and reach their
//!   partitions through a [`Relay`] (below). The host's own records go as
//!   an atomic batch without a checkpoint ([`NatsLog::append_batch`]; this
//!   partition's entities only).
//! - An operation whose answer did not come ends in [`LogError::Unknown`]
//!   (it may or may not have been stored) with how to resolve it: a commit
//!   by its checkpoint's token ([`NatsLog::resolve_commit`], final: when the
//!   checkpoint is still at the commit's fence it seals the fence, so a copy
//!   of the commit still in flight can never land later; behind its own
//!   seal it also looks one of the commit's records up, because a copy a
//!   killed leader had replicated can be committed ahead of the seal, and
//!   then writes the commit's checkpoint again), an append by
//!   sending it again (de-duplicated within the window), a record batch by
//!   sending it again (it is looked up by id after its heads are read, so
//!   only one copy lands).
//!
//! # Subjects
//! Partition `p`'s stream `BATPAK_P<p>` holds `batpak.p<p>.>`:
//!
//! | subject | what |
//! |---|---|
//! | `batpak.p<p>.e.<entity token>.<id hex>` | an event of `p` |
//! | `batpak.p<p>.ck.<cursor token>` | a checkpoint: reactor cursors `reactor.<name>`, relay cursors `relay.<source>`; its sequence is the fence |
//! | `batpak.p<p>.o.<q>.<id hex>` | an outbox message: a record committed in `p` for an entity of partition `q`, the whole proposal (derived id, entity, scope, kind, causation, correlation, idempotency key, meta, payload) in the event envelope with entity sequence 0 and no chain link |
//!
//! Tokens escape every byte but ASCII letters, digits, `-` and `_` as
//! `~HH` ([`partition::token`]).
//!
//! # Reactions to other partitions: outbox and relay
//! An atomic batch covers one stream, so a commit in partition `p` with a
//! record whose entity lives in partition `q` writes that record as an
//! outbox message `batpak.p<p>.o.<q>.<id>` **in the same batch** as `p`'s
//! own records and the checkpoint, fenced by the same checkpoint: the
//! reactions to every partition land together or not at all, and a stale
//! instance's batch (outbox included) is refused whole. One [`Relay`] per
//! target partition `q` (run under a lease: one running relay per target
//! across hosts) forwards the outbox messages for `q` from every other
//! partition, in each source's order. Each forward is one fenced commit in
//! `q`: the forwarded events (same ids; entity sequence, chain link and
//! hash computed in `q` as for any append, checked against `q`'s heads)
//! plus the relay's checkpoint `relay.<p>` in `q` (payload: the sequence in
//! `p` of the last message forwarded), fenced on that checkpoint.
//!
//! Why each record lands in `q` exactly once:
//! - *At most once.* Message `m` (sequence `s` in `p`) is forwarded only by
//!   a batch that also moves `relay.<p>` from a position below `s` to one at
//!   or above it, fenced on the checkpoint's sequence at that position.
//!   Positions only grow, and every write of the checkpoint changes its
//!   sequence; so two batches carrying `m` are fenced on the same sequence
//!   (they started from the same checkpoint) or one starts at or past `s`
//!   (it does not carry `m`). Of two batches fenced on one sequence at most
//!   one lands. A seal written by [`NatsLog::resolve_commit`] keeps the
//!   position and takes a new sequence, so a forward still in flight on the
//!   old sequence is refused and the retry (fenced on the seal) is the only
//!   one that can land. This holds for a zombie relay, a relay restarted
//!   after any pause, and after the stream's de-duplication window:
//!   `Nats-Msg-Id` plays no part.
//! - *At least once.* The outbox message is stored whenever the source
//!   commit is (same atomic batch); a relay never moves its position past a
//!   message it did not forward in the same batch; a damaged or misaddressed
//!   message stops the relay with [`LogError::Damaged`] instead of being
//!   skipped. So every message is forwarded once a relay runs long enough.
//!
//! What a reader sees: a reaction to another partition is an event of
//! that partition only once its relay forwarded it (the source's commit
//! and the forward are two atomic steps; in between it is in the source's
//! outbox, not an event anywhere). [`RelayHandle::status`] gives each
//! source's forwarded position and lag. Reads are not batches, so a
//! [`PartitionLog`] reads any partition: `entity_events` asks the entity's
//! own partition, `get` looks in its own partition first, then the others.
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
//! the outbox — is in its module docs):
//!
//! | `EventLog` | `NatsLog` (partition `p`) |
//! |---|---|
//! | `read(region, after, max)` | [`NatsLog::read_region`] (`events`, `scanned`) |
//! | `describe()` | `nats partition {p} of {K}` |
//! | `open_cursor` | `ReadCursor` over `read` and `wait_for_events` (every stored message is durable) |
//! | `commit` with checkpoint and fence | [`NatsLog::commit`] of [`Commit::new`]`(p, cursor, records, `[`encode_cursor`]`(update), fence)` (records of other partitions to the outbox) |
//! | `Committed { upto, fence }` | `upto`: [`Committed::checkpoint`]; `fence`: `Fence(`[`Committed::checkpoint`]`)` |
//! | a checkpoint without a fence | fenced on the checkpoint's current sequence, read first |
//! | `Durability::{Accepted, Visible, Durable}` | all `Durable`: an acknowledgement means a quorum fsynced it |
//! | `commit` without checkpoint, `append_system` | [`NatsLog::append_batch`] (this partition's entities only: [`CrossPartition`] otherwise) |
//! | `checkpoint(cursor)` | [`NatsLog::checkpoint`] + [`decode_cursor`] |
//! | `fence(cursor)` | the checkpoint's `sequence` (0 without one) |
//! | `get(id)` | [`NatsLog::lookup_in`] this partition, then the others |
//! | `get_by_sequence`, `entity_events` | [`NatsLog::get_by_sequence`], [`NatsLog::entity_events`] (the entity's own partition) |
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
mod relay;
pub mod server_check;

pub use cluster_init::{init_cluster, InitError, InitSpec};
pub use cursor_state::{decode_cursor, encode_cursor};
pub use error::LogError;
pub use event_log::{CrossPartition, PartitionLog};
pub use layout::{Layout, LAYOUT_BUCKET, LAYOUT_KEY, MAX_PARTITIONS, PLUGINS_BUCKET};
pub use lease::{
    host_id, preferred, reactor_slot, relay_slot, HostBeat, LeaseError, LeaseSnapshot, LeaseView,
    Leases, Running, LEASES_BUCKET,
};
pub use lease_fence::seal_for_takeover;
pub use live_feed::LiveFeed;
pub use log::{
    Appended, Checkpoint, Commit, Committed, NatsLog, NatsOptions, ReadBatch, Resolution,
    StoredMessage, COMMIT_HEADER, MAX_REACTIONS, MAX_READ,
};
pub use plugin_store::{PluginStore, PluginStoreError, ReactorVersion};
pub use relay::{
    Relay, RelayError, RelayHandle, RelaySettings, RelayState, RelayStatus, SourceStatus,
    StepReport,
};
