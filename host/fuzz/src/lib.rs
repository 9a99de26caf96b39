//! The fuzz targets of batpak-host: one module per decoder an untrusted
//! party reaches, each with `run(data)` (feed one input; panics on a
//! finding) and `seeds()` (real inputs for the committed seed corpus).
//!
//! | target | what is untrusted | decoder |
//! | --- | --- | --- |
//! | [`proposals`] | a plugin's `@0.2.0` proposals buffer | `batpak_layout::decode_proposals` |
//! | [`batch`] | (the reactor's side) a batch buffer | `batpak_layout::check_batch`, the check the Rust SDK's unchecked string reads rely on |
//! | [`http`] | bytes on the HTTP port | the HTTP head, body (Content-Length and chunked), query and percent decoders, routing, JSON bodies, of a running service |
//! | [`socket`] | frames on the control socket, and a reply as the client reads it | `read_frame`, the `Request`/`Reply` JSON, dispatch |
//! | [`store`] | segment, index snapshot and durable-marker files | opening, verifying and tailing a store (frames, events, snapshot, marker) on the simulated disk |
//! | [`json`] | an event as JSON (HTTP body, socket, `--jsonl` line) | `RawJson` (the raw slicer), `NewEvent`, `proposal` |
//!
//! The 0.1.0 proposals (a `list<proposal>` lifted by wasmtime's canonical
//! ABI, then moved field by field into a reaction) are not a target: the
//! lifting is wasmtime's and the host code after it is in `batpak-runtime`,
//! which cannot be built without wasmtime; its names and kinds end in the
//! store's validation, which [`json`] reaches through `proposal`.

mod alloc_limit;
pub mod batch;
pub mod http;
pub mod json;
pub mod proposals;
mod service;
pub mod socket;
pub mod store;

pub use alloc_limit::MAX_ALLOCATION;

#[global_allocator]
static ALLOCATOR: alloc_limit::Limited = alloc_limit::Limited;

/// Runs target `name` on `data`; `false` for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "proposals" => proposals::run(data),
        "batch" => batch::run(data),
        "http" => http::run(data),
        "socket" => socket::run(data),
        "store" => store::run(data),
        "json" => json::run(data),
        _ => return false,
    }
    true
}

/// Every target's name.
pub const TARGETS: [&str; 6] = ["proposals", "batch", "http", "socket", "store", "json"];

/// The seed inputs of target `name` (file name, bytes).
pub fn seeds(name: &str) -> Vec<(String, Vec<u8>)> {
    match name {
        "proposals" => proposals::seeds(),
        "batch" => batch::seeds(),
        "http" => http::seeds(),
        "socket" => socket::seeds(),
        "store" => store::seeds(),
        "json" => json::seeds(),
        _ => Vec::new(),
    }
}
