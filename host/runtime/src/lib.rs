//! The wasm reactor runtime: loads WebAssembly components that target the
//! `batpak:reactor@0.1.0` world, runs each on its own thread against the
//! store, and appends what they propose through gates — reactions and the
//! reactor's checkpoint in one atomic append, so every source event's
//! reactions land exactly once, even across `kill -9`.
//!
//! One concept per module, and data flows one way (runtime → canal, gate,
//! store; nothing below depends on the runtime):
//! - [`engine`]: the [`Runtime`] — engine, epoch ticker, linker — and
//!   [`cache`], the on-disk compile cache;
//! - [`plugin`]: loading and checking a component; [`Plugin`] is the wasm
//!   [`Reactor`]; `bindings` holds the WIT bindings and host imports;
//! - [`reactor`]: the [`Reactor`] trait shared by wasm and native reactors;
//! - [`admission`]: proposals from reactions, the capability gate;
//! - [`runner`]: the per-reactor thread and its commit protocol;
//! - [`parking`]: retry policy, parked records, replay;
//! - [`status`]: live counters; [`log`]: the host log;
//! - [`shadow`]: shadow replay of a candidate version on a scratch store;
//! - [`swap`]: hot swap — checks, typed outcome, swap/rollback records.
//!
//! ```no_run
//! use batpak_runtime::{self as runtime, PluginSettings, Runtime, RuntimeConfig, RunnerSettings};
//! use batpak_store::{CanalHandle, Store};
//! let store = Store::open("./batpak-data")?;
//! let rt = Runtime::new(RuntimeConfig::with_cache("./batpak-data/cache"))?;
//! let plugin = rt.load_plugin("inventory.wasm", PluginSettings::default())?;
//! let handle = runtime::spawn(&store, Box::new(plugin), RunnerSettings::default())?;
//! // ... later
//! Box::new(handle).stop_and_join()?;
//! # Ok::<(), anyhow::Error>(())
//! ```

#![warn(missing_docs)]

mod admission;
mod bindings;
mod cache;
mod engine;
mod log;
mod parking;
mod plugin;
mod reactor;
mod runner;
mod shadow;
mod status;
mod swap;

pub use admission::{CapabilityGate, ReactionContext, ReactorInfo};
pub use bindings::{EXPORT_INTERFACE, HOST_INTERFACE, WIT_PACKAGE, WIT_WORLD};
pub use cache::{CompileCache, CompileSource};
pub use engine::{Runtime, RuntimeConfig};
pub use log::{log, LogLevel};
pub use parking::{parked_events, request_replay, FailurePolicy, ParkedEvent, ParkedSet};
pub use plugin::{inspect, Inspection, Plugin, PluginSettings, WorldInfo};
pub use reactor::{
    validate_reactor_name, Descriptor, FailureKind, HostServices, ReactFailure, Reaction,
    ReactionCause, ReactionVerdict, Reactor,
};
pub use runner::{spawn, RunnerError, RunnerHandle, RunnerSettings};
pub use shadow::{shadow, DiffKind, ShadowDiff, ShadowRange, ShadowReport};
pub use status::{ReactorStatus, RunState, StatusSnapshot};
pub use swap::{
    check_swap, swap_file, unloadable, RolledBackRecord, SwapOutcome, SwapRefusal,
    SwapRefusedRecord, ROLLED_BACK_KIND, SWAPPED_KIND, SWAP_REFUSED_KIND,
};

/// Converts a wasmtime error (its own type, not `std::error::Error`) into an
/// `anyhow::Error`, keeping the whole chain.
pub(crate) fn wasm_error(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!(e.into_boxed_dyn_error())
}
