//! batpak-host-lib: the running batpak-host as a library — what the
//! `batpak-host` binary runs, and what an embedder (or the benchmarks) can
//! run without it.
//!
//! - [`Host`]: load plugins ([`Host::prepare`]), open the store and start a
//!   runner per reactor, the `--watch` plugin watcher and the service
//!   ([`PreparedHost::start`]), serve until asked to stop ([`Host::run`]),
//!   stop cleanly ([`Host::stop`]). A [`Control`] operates the reactors
//!   from any thread (status, pause, resume, swap, add, stop); a
//!   [`HostObserver`] sees what a display loop shows; a [`Console`]
//!   receives log lines.
//! - The store commands ([`append`], [`events`], [`verify`], [`parked`],
//!   [`trace`]) on a data directory, through the host running on it when
//!   there is one.
//! - The `test` harness ([`test_plugin`]), shadow replay
//!   ([`shadow_replay`]), a swap asked of a running host ([`SwapRequest`]),
//!   the demo's job ([`prepare_demo`]).
//!
//! Modules are private; everything public is re-exported here.

#![warn(missing_docs)]

mod cluster;
mod control_error;
mod demo;
mod host;
mod hot_swap;
mod plugins;
mod store_commands;
mod test_harness;
mod trace;
mod usage;
mod views;

pub use cluster::address::{ClusterAddress, STORE_ENV};
pub use cluster::append::cluster_append;
pub use cluster::cluster_host::{
    run_cluster_host, ClusterReport, ClusterRunConfig, ClusterRunError, DEFAULT_LEASE_TTL,
};
pub use cluster::cluster_pause::{cluster_pause, PAUSE_WAIT};
pub use cluster::cluster_reset::{cluster_reset, ClusterResetError, PartitionReset, RESET_WAIT};
pub use cluster::cluster_status::{cluster_status, SlotStatus};
pub use cluster::cluster_swap::{cluster_swap, ClusterSwap};
pub use cluster::connect::open_log;
pub use cluster::dev::{cluster_dev, default_toolchains, ClusterDevArgs, LocalCluster};
pub use cluster::events::cluster_events;
pub use cluster::init::{cluster_init, ClusterInitArgs};
pub use cluster::trace::cluster_trace;
pub use cluster::verify::cluster_verify;
pub use control_error::ControlError;
pub use demo::job::{ensure_wasm_target, prepare_demo, print_demo_trees, DemoArgs, DemoRun};
pub use host::instances::{check_instances, hand_over, HandOver, InstancesError, INSTANCES_KIND};
pub use host::log_filter::Console;
pub use host::operator::{connect_running, hand_over_instances, reset_checkpoint};
pub use host::start::{Host, HostConfig, HostError, PreparedHost, LOCK_WAIT};
pub use host::supervisor::{
    Control, HostObserver, NoObserver, ReactorSummary, ShutdownReport, LIST_DEADLINE,
    LOAD_DEADLINE, STOP_DEADLINE,
};
pub use hot_swap::shadow::replay as shadow_replay;
pub use hot_swap::swap_request::SwapRequest;
pub use plugins::compile_cache::CacheOptions;
pub use plugins::plugin_config::{
    mib_to_bytes, parse_instances_flag, Flags, PluginConfigFile, Resolved,
};
pub use store_commands::{
    append, events, open as open_store, parked, recovery_notes, verify, AppendArgs, Checker,
    EventFormat, EventsArgs, LocalStore, ParkedAction, ParkedArgs, PartRefused, StoreAccess,
};
pub use test_harness::harness::{test as test_plugin, TestArgs};
pub use trace::build::{trace, TraceArgs, TraceFormat};
pub use usage::Usage;
pub use views::{
    human_bytes, InstanceView, ParkedLine, PendingView, ReactorView, ReplayRequestedLine,
    RollbackView, SwapView,
};

pub use batpak_nats::server_check::ServerCheckError;
pub use batpak_nats::{InitError, LogError as ClusterLogError};
pub use batpak_runtime::{LogLevel, ShadowRange, ShadowReport};
pub use batpak_service::{
    ClientError, ErrorCode, InstanceState, ReactorState, ResetOutcome, ResetTo, ServiceOptions,
};
