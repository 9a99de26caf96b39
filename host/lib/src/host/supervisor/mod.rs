//! The supervisor of `run`: owns the store, the runners (one per reactor),
//! the status display and shutdown. Other threads reach it through a
//! [`Control`] handle — list reactors, stop or start one, swap one's plugin,
//! shut down — whose requests it serves between two status ticks, so every
//! change happens on one thread, in order. With `run --watch` it also acts
//! on what the plugin watcher settled: a replaced file is swapped in, a new
//! file starts its reactor, a removed file stops it (checkpoint kept).
//!
//! The supervisor never waits on a compile or a batch: a plugin file is
//! compiled on a worker thread, a swap is handed to the runner and polled
//! until its next batch boundary, and a stop is polled until the batch in
//! flight is done (see `pending_op`). Meanwhile it keeps answering, and
//! `status` shows what each reactor's pending work waits for.

mod control;
mod core;
mod observer;
mod swap_orchestration;
mod watched;

pub use self::control::{Control, LIST_DEADLINE, LOAD_DEADLINE, STOP_DEADLINE};
pub use self::core::{RunPolicy, Supervisor};
pub use self::observer::{HostObserver, NoObserver, ReactorSummary, ShutdownReport};
pub use crate::control_error::ControlError;
