//! End-to-end tests of `batpak-host`: the real binary, real plugins built
//! from `plugins/` sources, real files and real crashes. One test binary, so
//! wasmtime is linked once.

mod common;
use batpak_provision::step as provision_step;
// The NATS cluster harness of host/nats's cluster tests (`crate::provision`
// is the path it names), for the host-level cluster scenarios.
#[allow(dead_code)]
#[path = "../../host/nats/tests/cluster/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../../host/nats/tests/cluster/shared.rs"]
mod nats_shared;
#[allow(dead_code)]
#[path = "../../host/nats/tests/cluster/provision.rs"]
mod provision;

mod append_memory;
mod atomic_append;
mod bytes_as_sent;
mod cli_store;
mod cluster_cli;
mod cluster_hosts;
mod cluster_http;
mod cold_start;
mod command_parity;
mod control_plane;
mod demo;
mod fuzz_corpus;
mod guest_sdks;
mod guest_units;
mod hot_swap;
mod http_hardening;
mod instances;
mod integrity;
mod language_figures;
mod languages;
mod plugin_budgets;
mod readme_examples;
mod region_change_message;
mod runtime_cache;
mod runtime_crash;
mod runtime_flow;
mod runtime_hostile;
mod runtime_native;
mod runtime_refusals;
mod runtime_versions;
mod sdk_js;
mod service;
mod shadow_across_swap;
mod toolchains;
mod trace;
mod untrusted_paths;
