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
mod store_views;

/// A temporary directory only its owner can access: the store refuses a
/// directory group or others can read (`tempfile` makes `0777 & !umask`).
pub(crate) fn tempdir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
}

/// Flips one byte of the payload stored after `needle` in the store's
/// segment file under `dir` (the store is single-segment in these tests),
/// so a read of that event meets damage on disk.
pub(crate) fn damage_payload(dir: &std::path::Path, needle: &[u8]) {
    let seg = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[at + 3] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();
}
