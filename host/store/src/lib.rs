//! batpak-store: the durable causal event log under batpak-host — events,
//! the store, canals and gates. No WebAssembly and no command line live
//! here; the runtime and the CLI build on this crate, never the reverse.
//!
//! Data flows one way inside the crate too: [`Gate`]s and canals
//! ([`Cursor`], [`Subscription`]) build on the [`Store`], which builds on the
//! event model ([`Event`], [`Proposal`], [`Receipt`]).
//!
//! ```no_run
//! use batpak_store::{AppendOptions, Coordinate, Proposal, Store};
//! let store = Store::open("./batpak-data")?;
//! let receipt = store.append(
//!     Proposal::new(Coordinate::new("order:1", "shop")?, "order.placed", br#"{"sku":"widget","qty":2}"#.to_vec()),
//!     AppendOptions::durable(),
//! )?;
//! println!("appended {} at sequence {}", receipt.id, receipt.sequence);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod canal;
mod event;
mod event_view;
mod gate;
mod iso_time;
mod panic_message;
mod reactor_state;
mod store;
pub mod system;

pub use canal::{
    Canal, CanalBatch, CanalClosed, CanalHandle, CanalItem, CloseReason, Cursor, ReactorCanal,
    Subscription,
};
pub use event::{
    hex, now_us, validate_kind, validate_name, ChainLink, Coordinate, Event, EventHeader, EventId,
    Meta, Proposal, Receipt, ValidationError, MAX_IDEMPOTENCY_KEY_LEN, MAX_KIND_LEN, MAX_NAME_LEN,
    MAX_PAYLOAD_LEN,
};
pub use event_view::{CoordinateRef, EventView, SharedBytes};
pub use gate::{denial_event, record_denial, Denial, DenialRecord, Gate, GateSet};
pub use iso_time::iso_time;
pub use panic_message::panic_message;
pub use reactor_state::ReactorRunState;
/// Test hooks (the `testing` feature): a simulated disk that loses power
/// or fails an operation on cue, the frame codec, and verifying or reading
/// on any disk. Not part of the library's API.
#[cfg(any(test, feature = "testing"))]
pub use store::{decode_frame, encode_frame, verify_dir_on, FrameError, SimDisk, SimError, SimOp};
pub use store::{
    fnv1a64, opens_clean, partition_of, verify_dir, AppendOptions, AppendPlan, BulkAppend,
    Checkpoint, CheckpointUpdate, Disk, DiskFile, IdempotencyConflict, IndexMemory, LogReader,
    Lookup, Notices, OsDisk, RecoveryInfo, Region, Shard, Store, StoreError, StoreNotice,
    StoreOptions, VerifyReport, Wait, Watermarks, PLAN_MAX_ENTRIES,
};
pub use system::{is_system_kind, DENIED_KIND, RECOVERED_KIND, SYSTEM_KIND_PREFIX};
