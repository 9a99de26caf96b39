//! The wasm reactor runtime: loads WebAssembly components that target the
//! `batpak:reactor@0.2.0` world or the frozen `@0.1.0` one ([`WitVersion`];
//! both side by side), runs each on its own thread against a log, and
//! commits what they propose through gates — reactions and the reactor's
//! checkpoint in one atomic commit, so every source event's reactions land
//! exactly once, even across `kill -9`.
//!
//! The runner, parking, hot swap and shadow reach the log only through the
//! log seam, [`batpak_log::EventLog`]: the embedded store (pass `&Store`)
//! or another log (pass a [`batpak_log::SharedLog`]). A commit whose
//! outcome is unknown (a timeout, a lost reply) is resolved from the
//! checkpoint before anything else is committed (`runner/landing.rs`).
//!
//! One concept per module, data flowing one way (runtime → log seam →
//! store; nothing below depends on the runtime), no module cycles
//! (`python3 tools/modcycles.py host/runtime`; CI runs it on the workspace):
//! - the [`Runtime`] (engine, epoch ticker, linker; a second, Winch engine
//!   made on first use) and the [`CompileCache`] (memory-mapped loads, LRU
//!   eviction; location in its docs); tiers ([`CodeTier`]): a large
//!   component missing from the cache serves on baseline code while its
//!   optimised code compiles in the background (`optimisation.rs`), then
//!   moves to it at a batch boundary;
//! - loading: [`Plugin::load`] reads a plugin file (opened once, regular
//!   files only, size capped, checked on the descriptor before reading:
//!   [`read_regular`], which the CLI uses for its config files too), scans it (memory and table counts,
//!   component-model async), compiles, links and initialises it, failing
//!   with a [`LoadError`]; [`Inspection::of`] does the same for `inspect`;
//!   with a compile cache, a file unchanged since its content was hashed
//!   (device, inode, size, mtime, ctime: `file_record.rs`) is neither read
//!   nor hashed again; [`LoadSteps`] says where a load's time went;
//! - the sandbox: WASI with nothing granted, frozen clocks, deterministic
//!   random unless [`RandomSource::Real`] is granted, NaN canonicalisation,
//!   and one memory budget per instance over all its memories and tables;
//!   failures are classified by trap code and the budget's own record, and
//!   carry the wasm backtrace and the guest's own stderr text;
//! - the leaf types shared by all: [`Descriptor`], [`Reaction`],
//!   [`ReactFailure`]; the [`Reactor`] trait (wasm and native) and the
//!   [`HostServices`] lent to it;
//! - the built-in [`CapabilityGate`] and admission through it and the caller's gates, the runner ([`spawn`],
//!   [`RunnerHandle`], [`RunnerError`]), parking and replay, status, log;
//! - hot swap: [`RunnerHandle::swap`] at a batch boundary with a typed
//!   [`SwapOutcome`] or [`SwapRefusal`], recorded as system events;
//!   [`swap_file`] loads a file and swaps it in; [`shadow`] replays a
//!   candidate version over handled events in a scratch store.
//!
//! ```no_run
//! use batpak_runtime::{self as runtime, Plugin, PluginSettings, Runtime, RuntimeConfig, RunnerSettings};
//! use batpak_store::{CanalHandle, Store};
//! let store = Store::open("./batpak-data")?;
//! let rt = Runtime::new(RuntimeConfig {
//!     cache_dir: runtime::default_cache_dir(),
//!     ..RuntimeConfig::default()
//! })?;
//! let plugin = Plugin::load(&rt, "inventory.wasm", PluginSettings::default())?;
//! let handle = runtime::spawn(&store, Box::new(plugin), RunnerSettings::default())?;
//! // ... later
//! Box::new(handle).stop_and_join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod admission;
mod batch_builder;
mod bindings;
mod cache;
mod cache_dir;
mod capability_gate;
mod code_tier;
mod component_file;
mod convert;
mod descriptor;
mod failure;
mod file_record;
mod flat_batch;
mod flat_proposals;
mod guest_output;
mod guest_text;
mod host_imports;
mod inspect;
mod limiter;
mod linker;
mod load_error;
mod load_steps;
mod log;
mod optimisation;
mod parking;
mod plugin;
mod plugin_state;
mod prepare;
mod random;
mod reaction;
mod reactor;
mod regular_file;
mod runner;
mod runtime;
mod sandbox_clock;
mod services;
mod shadow;
mod shadow_error;
mod status;

mod trap;
mod wit;
mod wit_v1;
mod wit_v2;
mod world;

pub use cache::{CacheLimits, CompileCache, CompileSource, WASMTIME_VERSION};
pub use cache_dir::{
    default_cache_dir, prepare_cache_dir, CacheDirError, DirRepair, CACHE_DIR_NAME,
};
pub use capability_gate::{CapabilityGate, ReactionContext, ReactorInfo};
pub use code_tier::CodeTier;
pub use descriptor::{validate_reactor_name, Descriptor, MAX_REACTOR_NAME_LEN};
pub use failure::{FailureKind, ReactFailure};
pub use guest_text::MAX_GUEST_ERROR_BYTES;
pub use host_imports::{READ_ENTITY_BYTES, READ_ENTITY_CAP};
pub use inspect::{descriptor_json, InitOutcome, Inspection};
pub use load_error::LoadError;
pub use load_steps::LoadSteps;
pub use log::{log, set_log_sink, LogLevel, LogSink};
pub use parking::{
    parked_events, request_replay, FailurePolicy, ParkedEvent, ParkedSet, ParkingError,
};
pub use plugin::Plugin;
pub use prepare::{PluginSettings, DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT, MAX_LIFT_BYTES};
pub use random::RandomSource;
pub use reaction::{Reaction, ReactionCause, ReactionVerdict};
pub use reactor::Reactor;
pub use regular_file::{open_regular, read_regular, read_regular_text, FileRefusal};
pub use runner::swap::{
    check_swap, describe_region, refusal_for, swap_file, RolledBackRecord, SwapOutcome,
    SwapRefusal, SwapRefusedRecord, ROLLED_BACK_KIND, SWAPPED_KIND, SWAP_REFUSED_KIND,
};
pub use runner::{
    cursor_id, live_instances, spawn, Instance, RunnerError, RunnerHandle, RunnerSettings,
    SwapTicket, DEFAULT_DURABLE_WINDOW, DEFAULT_LOG_RETRY, DEFAULT_MAX_BATCH, MAX_INSTANCES,
    MAX_OUTPUT_BYTES, MAX_OUTPUT_HOST_BYTES, MAX_PROPOSALS_PER_CALL, MAX_PROPOSAL_NAME_BYTES,
    RETIRED_REGION,
};
pub use runtime::{
    Runtime, RuntimeConfig, RuntimeError, DEFAULT_BASELINE_FROM_BYTES, DEFAULT_MAX_MEMORIES,
    DEFAULT_MAX_PLUGIN_FILE_BYTES, DEFAULT_MAX_TABLES,
};
pub use services::HostServices;
pub use shadow::{shadow, DiffKind, ShadowDiff, ShadowRange, ShadowReport};
pub use shadow_error::ShadowError;
pub use status::{ReactorStatus, RunState, StatusSnapshot};
pub use wit::{
    WitVersion, CURRENT_VERSION, EXPORT_INTERFACE, HOST_INTERFACE, OFFERED_VERSIONS, WIT_PACKAGE,
    WIT_WORLD,
};
