//! batpak-nats: the host's log on a NATS JetStream cluster, for running
//! beyond one machine. Groundwork: the CLI does not select it yet.
//!
//! - A **partition** is one stream (`BATPAK_P<n>`, its own Raft group);
//!   an entity's partition is `fnv1a64(entity) % K` ([`partition`]).
//! - An **append** returns once the stream's quorum has fsynced it; it is
//!   de-duplicated by `Nats-Msg-Id` (id or idempotency key) within the
//!   stream's 2-minute window.
//! - A **commit** — a reactor's reactions plus its checkpoint — is one
//!   atomic batch, fenced by `Nats-Expected-Last-Subject-Sequence` on the
//!   reactor's checkpoint subject: a stale instance's batch is refused
//!   whole ([`LogError::Fenced`]).
//! - An operation whose answer did not come ends in [`LogError::Unknown`]
//!   (it may or may not have been stored) with how to resolve it.
//!
//! The client (`async-nats`) runs on one dedicated thread with a
//! current-thread tokio runtime; the API here is synchronous.
//!
//! `init_cluster` refuses a node older than nats-server 2.12 or without
//! `jetstream { sync_interval: always }` (read from each node's monitoring
//! endpoint), naming the fix.

#![warn(missing_docs)]

mod cluster_init;
mod codec;
mod cursor_state;
mod driver;
mod error;
mod heads;
mod layout;
mod log;
pub mod partition;
pub mod server_check;

pub use cluster_init::{init_cluster, InitError, InitSpec};
pub use cursor_state::{decode_cursor, encode_cursor};
pub use error::LogError;
pub use layout::{Layout, LAYOUT_BUCKET, LAYOUT_KEY, MAX_PARTITIONS, PLUGINS_BUCKET};
pub use log::{
    Appended, Checkpoint, Commit, Committed, NatsLog, NatsOptions, ReadBatch, Resolution,
    COMMIT_HEADER, MAX_REACTIONS, MAX_READ,
};
