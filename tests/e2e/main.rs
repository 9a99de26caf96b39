//! End-to-end tests of `batpak-host`: the real binary, real plugins built
//! from `plugins/` sources, real files and real crashes. One test binary, so
//! wasmtime is linked once.

mod common;
use batpak_provision::step as provision_step;

mod atomic_append;
mod bytes_as_sent;
mod cli_store;
mod cluster_cli;
mod cold_start;
mod command_parity;
mod control_plane;
mod demo;
mod fuzz_corpus;
mod guest_sdks;
mod guest_units;
mod hot_swap;
mod http_hardening;
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
