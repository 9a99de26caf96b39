//! The compile cache can only cost time: a damaged or tampered entry is
//! detected before wasmtime loads it, and the component is recompiled.

use crate::common::*;

#[test]
fn a_damaged_cache_entry_is_recompiled_not_loaded() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let inv = plugin("inventory");
    append(&data, &[order(1, "widget", 1)]);
    let first = host_ok(
        &data,
        &["run", "--until-idle", "--quiet", inv.to_str().unwrap()],
    );
    assert!(stderr(&first).contains("compiled in"), "{}", stderr(&first));
    let second = host_ok(
        &data,
        &["run", "--until-idle", "--quiet", inv.to_str().unwrap()],
    );
    assert!(
        stderr(&second).contains("compile cache"),
        "{}",
        stderr(&second)
    );

    // Flip one bit in the middle of every entry: inside the compiled code.
    let entries: Vec<_> = std::fs::read_dir(data.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert!(!entries.is_empty(), "no cache entry was written");
    for p in &entries {
        let mut b = std::fs::read(p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x10;
        std::fs::write(p, b).unwrap();
    }
    append(&data, &[order(2, "widget", 1)]);
    let third = host_ok(
        &data,
        &["run", "--until-idle", "--quiet", inv.to_str().unwrap()],
    );
    let err = stderr(&third);
    assert!(
        err.contains("ignoring unusable cache entry") && err.contains("digest"),
        "{err}"
    );
    assert!(err.contains("compiled in"), "{err}");
    // And the reactor still did its job.
    assert_eq!(events_of(&data, "inventory.reserved").len(), 2);
}
