//! The store crate's end-to-end tests: real files, real `kill -9` of a child
//! process. They link only `batpak-store` (no wasmtime).

mod store_bulk;
mod store_core;
mod store_crash;
mod store_fuzz;
mod store_idempotency;
mod store_index;
mod store_power;
