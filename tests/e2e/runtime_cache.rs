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

    // Flip one bit in the middle of every entry — inside the compiled code,
    // far from the bytes the per-load check hashes — and put the mtime
    // back: the ctime (which nobody can set back) still gives it away.
    let entries: Vec<_> = std::fs::read_dir(data.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert!(!entries.is_empty(), "no cache entry was written");
    for p in &entries {
        let mtime = std::fs::metadata(p).unwrap().modified().unwrap();
        let mut b = std::fs::read(p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x10;
        std::fs::write(p, b).unwrap();
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
    append(&data, &[order(2, "widget", 1)]);
    let third = host_ok(
        &data,
        &["run", "--until-idle", "--quiet", inv.to_str().unwrap()],
    );
    let err = stderr(&third);
    assert!(
        err.contains("ignoring unusable cache entry")
            && err.contains("changed since it was written"),
        "{err}"
    );
    assert!(err.contains("compiled in"), "{err}");
    // And the reactor still did its job.
    assert_eq!(events_of(&data, "inventory.reserved").len(), 2);
}

#[test]
fn the_cache_is_owner_only_capped_and_evicts_the_least_recently_used() {
    use batpak_runtime::{CacheLimits, CompileCache, CompileSource, Runtime, RuntimeConfig};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let cache_dir = dir.path().join("cache");
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    // Component text: wasmtime compiles it as it is.
    let wat = |n: u32| {
        format!("(component (core module (func (export \"f{n}\") (result i32) (i32.const {n}))))")
            .into_bytes()
    };
    let digest = |b: &[u8]| blake3::hash(b).to_hex().to_string();
    let one = CompileCache::new(
        &cache_dir,
        rt.engine(),
        CacheLimits {
            max_bytes: u64::MAX,
        },
    );
    let (a, b) = (wat(1), wat(2));
    let (_, src, _) = one.load_or_compile(rt.engine(), &digest(&a), &a).unwrap();
    assert_eq!(src, CompileSource::Compiled);
    let mode = std::fs::metadata(&cache_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "cache directory is owner-only");
    let entry = std::fs::metadata(one.path_for(&digest(&a))).unwrap();
    assert_eq!(entry.permissions().mode() & 0o077, 0);
    let (_, src, _) = one.load_or_compile(rt.engine(), &digest(&a), &a).unwrap();
    assert_eq!(src, CompileSource::Cached);
    let size_a = one.size();
    assert!(size_a > 0);
    // A cap that holds one entry: writing b evicts a (least recently used).
    let capped = CompileCache::new(
        &cache_dir,
        rt.engine(),
        CacheLimits {
            max_bytes: size_a + size_a / 2,
        },
    );
    capped
        .load_or_compile(rt.engine(), &digest(&b), &b)
        .unwrap();
    assert!(capped.path_for(&digest(&b)).exists());
    assert!(!capped.path_for(&digest(&a)).exists(), "a was evicted");
    assert!(capped.size() <= size_a + size_a / 2);
    assert!(capped.verify_all().unwrap().is_empty());
    // A cache directory others may write is not trusted.
    std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (_, src, _) = capped
        .load_or_compile(rt.engine(), &digest(&b), &b)
        .unwrap();
    assert_eq!(src, CompileSource::Compiled);
}
