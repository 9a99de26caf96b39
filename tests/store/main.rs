//! The store crate's end-to-end tests: real files, real `kill -9` of a child
//! process. They link only `batpak-store` (no wasmtime).

mod store_bulk;
mod store_core;
mod store_crash;
mod store_evidence;
mod store_fuzz;
mod store_idempotency;
mod store_index;
mod store_power;
mod store_private;

/// A temporary directory only its owner can access: the store refuses a
/// directory group or others can read (`tempfile` makes `0777 & !umask`).
pub(crate) fn tempdir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
}
