//! The compile cache: in the user's cache directory (XDG) for every command
//! that loads a plugin, bounded, owner-only, shared safely between
//! processes — and it can only cost time: a damaged or tampered entry is
//! detected before wasmtime loads it, and the component is recompiled.

use crate::common::*;
use serde_json::Value;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `batpak-host --data <data> <args>` with the cache's environment
/// variables cleared, and `BATPAK_CACHE_DIR=<cache>` when given.
fn cmd(cache: Option<&Path>, data: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    for v in [
        "BATPAK_CACHE_DIR",
        "BATPAK_CACHE_MAX_MB",
        "BATPAK_NO_CACHE",
        "XDG_CACHE_HOME",
    ] {
        c.env_remove(v);
    }
    if let Some(dir) = cache {
        c.env("BATPAK_CACHE_DIR", dir);
    }
    c.arg("--data").arg(data).args(args).stdin(Stdio::null());
    c
}

fn ok(mut c: Command) -> Output {
    let out = c.output().expect("running batpak-host");
    assert!(
        out.status.success(),
        "{c:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `inspect FILE` through the cache in `cache`; returns (JSON, stderr).
fn inspect(mut c: Command, file: &Path) -> (Value, String) {
    c.arg("inspect").arg(file);
    let out = ok(c);
    (
        serde_json::from_slice(&out.stdout).expect("inspect prints JSON"),
        stderr(&out),
    )
}

/// The entry directories of a cache (named by 48 hex digits).
fn entries(cache: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.len() == 48 && n.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .collect();
    v.sort();
    v
}

/// Everything in a cache directory other than entries, the tag and the
/// file records (32 hex digits each, in `files/`).
fn leftovers(cache: &Path) -> Vec<String> {
    let names = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut left: Vec<String> = names(cache)
        .into_iter()
        .filter(|n| n != "CACHEDIR.TAG" && n != "files" && n.len() != 48)
        .collect();
    left.extend(
        names(&cache.join("files"))
            .into_iter()
            .filter(|n| n.len() != 32)
            .map(|n| format!("files/{n}")),
    );
    left
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Input for the pass-through reactor.
fn bench_input(dir: &Path) -> PathBuf {
    let lines: Vec<String> = (0..3)
        .map(|i| {
            format!(r#"{{"entity":"a:{i}","scope":"s","kind":"bench.in","payload":{{"n":{i}}}}}"#)
        })
        .collect();
    write_file(dir, "input.jsonl", &(lines.join("\n") + "\n"))
}

/// The passthrough component with a custom section appended: same
/// behaviour, another digest, so another cache entry.
fn variant(dir: &Path, k: u32) -> PathBuf {
    let mut bytes = std::fs::read(plugin("passthrough")).unwrap();
    let name = b"cache-test";
    let mut sec = vec![name.len() as u8];
    sec.extend_from_slice(name);
    sec.extend_from_slice(&k.to_le_bytes());
    bytes.push(0);
    bytes.push(sec.len() as u8);
    bytes.extend_from_slice(&sec);
    let p = dir.join(format!("variant{k}.wasm"));
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn a_second_test_of_an_unchanged_plugin_loads_from_the_cache() {
    let dir = tempdir();
    let (cache, data) = (dir.path().join("cache"), dir.path().join("data"));
    let input = bench_input(dir.path());
    let pt = plugin("passthrough");
    let args = [
        "test",
        pt.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ];
    let first = ok(cmd(Some(&cache), &data, &args));
    let err = stderr(&first);
    assert!(
        err.contains("passthrough 0.1.0: compiled in")
            && err.contains(&format!("kept in the compile cache {}", cache.display())),
        "{err}"
    );
    assert_eq!(entries(&cache).len(), 1, "one entry written");
    let second = ok(cmd(Some(&cache), &data, &args));
    let err2 = stderr(&second);
    assert!(
        err2.contains("passthrough 0.1.0: loaded from the compile cache in"),
        "{err2}"
    );
    assert!(!err2.contains("compiled in"), "{err2}");
    assert_eq!(first.stdout, second.stdout, "the same reactions");
    assert_eq!(json_lines(&second.stdout).len(), 3);
    // `inspect` shares it, and says so in its JSON.
    let (v, _) = inspect(cmd(Some(&cache), &data, &[]), &pt);
    assert_eq!(v["compiled"], "cached", "{v}");
    assert!(v["compile_ms"].as_f64().is_some(), "{v}");
    // Nothing was put in the data directory: test and inspect read no store.
    assert!(!data.exists(), "test wrote into --data");
}

#[test]
fn the_default_cache_follows_xdg_and_can_be_moved_or_turned_off() {
    let dir = tempdir();
    let d = dir.path();
    let data = d.join("data");
    let pt = plugin("passthrough");
    // $XDG_CACHE_HOME/batpak-host first.
    let mut c = cmd(None, &data, &[]);
    c.env("XDG_CACHE_HOME", d.join("xdg"))
        .env("HOME", d.join("home"));
    let (v, _) = inspect(c, &pt);
    assert_eq!(v["compiled"], "compiled");
    assert_eq!(entries(&d.join("xdg/batpak-host")).len(), 1);
    assert!(!d.join("home").exists());
    // Else ~/.cache/batpak-host (a relative XDG_CACHE_HOME is ignored, as
    // the XDG specification says).
    let mut c = cmd(None, &data, &[]);
    c.env("XDG_CACHE_HOME", "relative")
        .env("HOME", d.join("home"));
    inspect(c, &pt);
    assert_eq!(entries(&d.join("home/.cache/batpak-host")).len(), 1);
    // --cache-dir beats BATPAK_CACHE_DIR.
    let mut c2 = cmd(Some(&d.join("env")), &data, &["inspect"]);
    c2.arg(&pt).arg("--cache-dir").arg(d.join("flag"));
    let out = ok(c2);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["compiled"], "compiled");
    assert_eq!(entries(&d.join("flag")).len(), 1);
    assert!(!d.join("env").exists());
    // --no-cache and BATPAK_NO_CACHE=1: nothing read or written.
    let mut c = cmd(Some(&d.join("flag")), &data, &["inspect", "--no-cache"]);
    c.arg(&pt);
    let v: Value = serde_json::from_slice(&ok(c).stdout).unwrap();
    assert_eq!(v["compiled"], "compiled", "--no-cache reads no cache");
    let mut c = cmd(Some(&d.join("off")), &data, &[]);
    c.env("BATPAK_NO_CACHE", "1");
    let (v, _) = inspect(c, &pt);
    assert_eq!(v["compiled"], "compiled");
    assert!(!d.join("off").exists(), "BATPAK_NO_CACHE=1 writes no cache");
    // A value that means nothing is refused, naming the variable.
    let mut c = cmd(Some(&d.join("flag")), &data, &["inspect"]);
    c.arg(&pt).env("BATPAK_CACHE_MAX_MB", "lots");
    let out = c.output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("BATPAK_CACHE_MAX_MB"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_cache_is_owner_only_and_an_unsafe_directory_is_closed_or_refused() {
    let dir = tempdir();
    let (cache, data) = (dir.path().join("cache"), dir.path().join("data"));
    let pt = plugin("passthrough");
    inspect(cmd(Some(&cache), &data, &[]), &pt);
    let entry = &entries(&cache)[0];
    assert_eq!(mode(&cache), 0o700, "cache directory");
    assert_eq!(mode(entry), 0o700, "entry directory");
    assert_eq!(mode(&entry.join("code.cwasm")), 0o600);
    assert_eq!(mode(&entry.join("meta")), 0o600);

    // Opened up to reading: closed again, entries kept.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (v, err) = inspect(cmd(Some(&cache), &data, &[]), &pt);
    assert!(err.contains("was readable by others (mode 755)"), "{err}");
    assert_eq!(mode(&cache), 0o700);
    assert_eq!(v["compiled"], "cached");

    // Opened up to writing: anyone could have replaced the code — or a
    // file record, which says what a plugin file holds — so it is closed
    // and emptied, records too, and the plugin compiled again.
    let files = cache.join("files");
    if files.exists() {
        assert_eq!(mode(&files), 0o700, "file records directory");
    } else {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&files)
            .unwrap();
    }
    std::fs::write(files.join("planted"), "a record someone else wrote").unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (v, err) = inspect(cmd(Some(&cache), &data, &[]), &pt);
    assert!(
        err.contains("was writable by others (mode 777)")
            && err.contains("discarded the compiled plugins in it (1)"),
        "{err}"
    );
    assert_eq!(mode(&cache), 0o700);
    assert_eq!(v["compiled"], "compiled");
    assert!(
        !files.join("planted").exists(),
        "file records discarded too"
    );

    // A directory open to others that this host did not create is not
    // changed, only refused.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("precious"), "keep me").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (v, err) = inspect(cmd(Some(&shared), &data, &[]), &pt);
    assert!(
        err.contains("not using the compile cache")
            && err.contains("is open to other users (mode 777)")
            && err.contains("chmod 700"),
        "{err}"
    );
    assert_eq!(v["compiled"], "compiled");
    assert_eq!(mode(&shared), 0o777, "left as it was");
    let names: Vec<_> = std::fs::read_dir(&shared).unwrap().collect();
    assert_eq!(names.len(), 1, "nothing written into it");

    // Another user's directory is refused (only root can make one here).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&theirs, Some(4242), Some(4242)).unwrap();
        let (v, err) = inspect(cmd(Some(&theirs), &data, &[]), &pt);
        assert!(err.contains("belongs to user 4242"), "{err}");
        assert_eq!(v["compiled"], "compiled");
        assert!(entries(&theirs).is_empty(), "nothing written into it");
        assert_eq!(std::fs::metadata(&theirs).unwrap().uid(), 4242);
    }
}

#[test]
fn the_cache_stays_under_its_cap_and_evicts_the_least_recently_used() {
    let dir = tempdir();
    let (cache, data) = (dir.path().join("cache"), dir.path().join("data"));
    let (a, b) = (plugin("passthrough"), variant(dir.path(), 1));
    inspect(cmd(Some(&cache), &data, &[]), &a);
    let only_a = entries(&cache);
    assert_eq!(only_a.len(), 1);
    // A cap of 0 MiB keeps only the entry just written.
    let mut c = cmd(Some(&cache), &data, &[]);
    c.env("BATPAK_CACHE_MAX_MB", "0");
    inspect(c, &b);
    let only_b = entries(&cache);
    assert_eq!(only_b.len(), 1);
    assert_ne!(only_a, only_b, "a was evicted, b kept");
    // Under the default cap both stay.
    inspect(cmd(Some(&cache), &data, &[]), &a);
    assert_eq!(entries(&cache).len(), 2);
    assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
}

#[test]
fn eviction_does_not_break_a_host_running_the_evicted_code() {
    let dir = tempdir();
    let (cache, data) = (dir.path().join("cache"), dir.path().join("data"));
    let pt = plugin("passthrough");
    inspect(cmd(Some(&cache), &data, &[]), &pt);
    let mut c = cmd(Some(&cache), &data, &["run", "--quiet"]);
    c.arg(&pt).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawning run");
    let mut lines = Lines::new(child.stderr.take().unwrap());
    lines.wait_for(
        "saying it loaded from the cache",
        Duration::from_secs(60),
        |l| l.contains("loaded passthrough") && l.contains("compile cache"),
    );
    // Evict it from another process while the host has it mapped.
    let mut c = cmd(Some(&cache), &data, &[]);
    c.env("BATPAK_CACHE_MAX_MB", "0");
    inspect(c, &variant(dir.path(), 2));
    assert_eq!(
        entries(&cache).len(),
        1,
        "the running plugin's entry is gone"
    );
    // The host serves (status through its socket), and its reactor still
    // runs the unlinked code.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !host(&data, &["status"]).status.success() {
        assert!(Instant::now() < deadline, "run never served status");
        std::thread::sleep(Duration::from_millis(50));
    }
    append(
        &data,
        &(0..3)
            .map(|i| {
                serde_json::json!({"entity": format!("a:{i}"), "scope": "s", "kind": "bench.in", "payload": {"n": i}})
            })
            .collect::<Vec<_>>(),
    );
    while events_of(&data, "bench.out").len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the reactor did not react after its cache entry was evicted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // `shadow` (here beside the running host) compiles through the same
    // cache: the evicted entry is back.
    let mut c = cmd(Some(&cache), &data, &["shadow", "passthrough"]);
    c.arg(&pt);
    ok(c);
    assert_eq!(entries(&cache).len(), 2, "shadow wrote its compiled plugin");
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(60)).success());
}

#[test]
fn tests_started_at_once_on_a_cold_cache_all_succeed_and_share_one_entry() {
    let dir = tempdir();
    let (cache, data) = (dir.path().join("cache"), dir.path().join("data"));
    let input = bench_input(dir.path());
    let pt = plugin("passthrough");
    let children: Vec<_> = (0..4)
        .map(|_| {
            let mut c = cmd(
                Some(&cache),
                &data,
                &[
                    "test",
                    pt.to_str().unwrap(),
                    "--input",
                    input.to_str().unwrap(),
                ],
            );
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            c.spawn().expect("spawning test")
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outs {
        let err = stderr(o);
        assert!(o.status.success(), "{err}");
        assert_eq!(json_lines(&o.stdout).len(), 3, "{err}");
        assert!(
            !err.contains("unusable") && !err.contains("could not write"),
            "a concurrent writer disturbed another: {err}"
        );
    }
    assert_eq!(entries(&cache).len(), 1, "one shared entry");
    assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
    let again = ok(cmd(
        Some(&cache),
        &data,
        &[
            "test",
            pt.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ],
    ));
    assert!(
        stderr(&again).contains("loaded from the compile cache"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn a_damaged_or_substituted_cache_entry_is_recompiled_not_loaded() {
    let dir = tempdir();
    let (cache, data) = (dir.path().join("cache"), dir.path().join("data"));
    let inv = plugin("inventory");
    let run = |data: &Path| {
        let mut c = cmd(Some(&cache), data, &["run", "--until-idle", "--quiet"]);
        c.arg(&inv);
        stderr(&ok(c))
    };
    append(&data, &[order(1, "widget", 1)]);
    assert!(run(&data).contains("compiled in"));
    assert!(run(&data).contains("compile cache"));

    // Flip one bit in the middle of the artifact — inside the compiled
    // code, far from the bytes the per-load check hashes — and put the
    // mtime back: the ctime (which nobody can set back) still gives it away.
    let entry = entries(&cache)[0].clone();
    let code = entry.join("code.cwasm");
    let mtime = std::fs::metadata(&code).unwrap().modified().unwrap();
    let mut b = std::fs::read(&code).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x10;
    std::fs::write(&code, b).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&code)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    append(&data, &[order(2, "widget", 1)]);
    let err = run(&data);
    assert!(
        err.contains("ignoring unusable cache entry")
            && err.contains("changed since it was written"),
        "{err}"
    );
    assert!(err.contains("compiled in"), "{err}");
    assert_eq!(events_of(&data, "inventory.reserved").len(), 2);

    // Another component's entry copied in its place (a valid artifact and
    // a valid record, of something else): refused.
    let other = variant(dir.path(), 3);
    inspect(cmd(Some(&cache), &data, &[]), &other);
    let other_entry = entries(&cache).into_iter().find(|e| *e != entry).unwrap();
    for f in ["code.cwasm", "meta"] {
        std::fs::copy(other_entry.join(f), entry.join(f)).unwrap();
    }
    append(&data, &[order(3, "widget", 1)]);
    let err = run(&data);
    assert!(err.contains("ignoring unusable cache entry"), "{err}");
    assert!(err.contains("compiled in"), "{err}");
    assert_eq!(events_of(&data, "inventory.reserved").len(), 3);

    // A link in place of the entry: not followed.
    std::fs::remove_dir_all(&entry).unwrap();
    std::os::unix::fs::symlink(&other_entry, &entry).unwrap();
    append(&data, &[order(4, "widget", 1)]);
    let err = run(&data);
    assert!(err.contains("ignoring unusable cache entry"), "{err}");
    assert!(err.contains("compiled in"), "{err}");
    assert_eq!(events_of(&data, "inventory.reserved").len(), 4);
    assert!(
        std::fs::symlink_metadata(&entry).unwrap().is_dir(),
        "the link was replaced by a real entry"
    );
}

/// Overwrites `len` bytes at `at` of `file` in place (same inode, same
/// size) with `bytes`, then puts its mtime back: only the ctime, which no
/// user-space call can set, shows the change.
fn rewrite_in_place(file: &Path, at: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let before = std::fs::metadata(file).unwrap();
    let mut f = std::fs::File::options().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(bytes).unwrap();
    f.set_modified(before.modified().unwrap()).unwrap();
    drop(f);
    let after = std::fs::metadata(file).unwrap();
    assert_eq!(
        (after.ino(), after.len(), after.modified().unwrap()),
        (before.ino(), before.len(), before.modified().unwrap()),
        "same inode, size and mtime"
    );
}

#[test]
fn an_unchanged_plugin_file_is_not_read_again_and_any_change_to_it_is_seen() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    // The WAT pass-through, and a twin of the same size that emits
    // `bench.oux` instead: other bytes, other reactions.
    let src =
        std::fs::read_to_string(workspace().join("plugins/passthrough-wat/reactor.wat")).unwrap();
    let twin = src.replace("bench.out", "bench.oux");
    assert_eq!(twin.len(), src.len());
    assert_ne!(twin, src);
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let live = plugins.join("pt.wat");
    std::fs::write(&live, &src).unwrap();
    // Each run on a fresh store of two `bench.in` events: its stderr and
    // how many `bench.out` and `bench.oux` it proposed.
    let runs = std::cell::Cell::new(0);
    let run = || {
        runs.set(runs.get() + 1);
        let data = dir.path().join(format!("data{}", runs.get()));
        let events: Vec<Value> = (0..2)
            .map(|i| {
                serde_json::json!({"entity": format!("a:{i}"), "scope": "s", "kind": "bench.in", "payload": {"n": i}})
            })
            .collect();
        append(&data, &events);
        let mut c = cmd(Some(&cache), &data, &["run", "--until-idle", "--quiet"]);
        c.arg(&live);
        let err = stderr(&ok(c));
        (
            err,
            events_of(&data, "bench.out").len(),
            events_of(&data, "bench.oux").len(),
        )
    };
    const UNCHANGED: &str = "file unchanged since its last load: not read again";
    // A file changed within the last second is always read and hashed
    // (two changes within one clock tick can share a ctime); after that,
    // one load records it.
    std::thread::sleep(Duration::from_millis(1200));
    let (err, out, oux) = run();
    assert!(
        err.contains("compiled in") && !err.contains(UNCHANGED),
        "{err}"
    );
    assert_eq!((out, oux), (2, 0));
    // Unchanged: found by its record, neither read nor hashed.
    let (err, out, oux) = run();
    assert!(
        err.contains("compile cache") && err.contains(UNCHANGED),
        "{err}"
    );
    assert_eq!((out, oux), (2, 0));

    // A byte flipped in the cached artifact, in place, its mtime put back:
    // the record still finds the file unchanged, but the artifact's own
    // check refuses the entry before wasmtime sees it; recompiled.
    let entry = entries(&cache).pop().unwrap();
    let code = entry.join("code.cwasm");
    let len = std::fs::metadata(&code).unwrap().len();
    let mut byte = [0u8];
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&code).unwrap();
        f.seek(SeekFrom::Start(len / 2)).unwrap();
        f.read_exact(&mut byte).unwrap();
    }
    rewrite_in_place(&code, len / 2, &[byte[0] ^ 0x10]);
    let (err, out, oux) = run();
    assert!(
        err.contains("ignoring unusable cache entry")
            && err.contains("changed since it was written")
            && err.contains("compiled in"),
        "{err}"
    );
    assert_eq!((out, oux), (2, 0));

    // Rewritten in place: same inode, same size, mtime put back, new
    // bytes. Read, hashed and compiled; the new plugin serves.
    rewrite_in_place(&live, 0, twin.as_bytes());
    let (err, out, oux) = run();
    assert!(
        err.contains("compiled in") && !err.contains(UNCHANGED),
        "{err}"
    );
    assert_eq!((out, oux), (0, 2), "the rewritten plugin serves:\n{err}");

    // Replaced by a rename (a new inode): read and hashed; its content is
    // the first one, so it loads from the cache, and that plugin serves.
    let tmp = plugins.join(".pt.wat.new");
    std::fs::write(&tmp, &src).unwrap();
    std::fs::rename(&tmp, &live).unwrap();
    let (err, out, oux) = run();
    assert!(
        err.contains("compile cache") && !err.contains(UNCHANGED),
        "{err}"
    );
    assert_eq!((out, oux), (2, 0), "the renamed-in plugin serves:\n{err}");

    // Its record, once written, damaged: a miss (read and hashed again),
    // never a wrong digest; the next load writes it afresh.
    std::thread::sleep(Duration::from_millis(1200));
    run();
    let (err, _, _) = run();
    assert!(err.contains(UNCHANGED), "{err}");
    let records: Vec<PathBuf> = std::fs::read_dir(cache.join("files"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(records.len(), 1, "one record per plugin path");
    let raw = std::fs::read(&records[0]).unwrap();
    rewrite_in_place(&records[0], 70, &[raw[70] ^ 1]);
    let (err, out, oux) = run();
    assert!(
        err.contains("compile cache") && !err.contains(UNCHANGED),
        "{err}"
    );
    assert_eq!((out, oux), (2, 0));
    let (err, out, _) = run();
    assert!(err.contains(UNCHANGED), "{err}");
    assert_eq!(out, 2);
}

#[test]
fn the_library_cache_evicts_the_least_recently_used_first() {
    use batpak_runtime::{CacheLimits, CompileCache, CompileSource, Runtime, RuntimeConfig};
    let dir = tempdir();
    let cache_dir = dir.path().join("cache");
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    // Component text: wasmtime compiles it as it is.
    let wat = |n: u32| {
        format!("(component (core module (func (export \"f{n}\") (result i32) (i32.const {n}))))")
            .into_bytes()
    };
    let digest = |b: &[u8]| blake3::hash(b).to_hex().to_string();
    let open =
        |max_bytes| CompileCache::new(&cache_dir, rt.engine(), CacheLimits { max_bytes }).unwrap();
    let all = open(u64::MAX);
    let (a, b, c) = (wat(1), wat(2), wat(3));
    let (_, src, _) = all.load_or_compile(rt.engine(), &digest(&a), &a).unwrap();
    assert_eq!(src, CompileSource::Compiled);
    let one = all.size();
    std::thread::sleep(Duration::from_millis(20));
    all.load_or_compile(rt.engine(), &digest(&b), &b).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    // A hit makes a the most recently used.
    let (_, src, _) = all.load_or_compile(rt.engine(), &digest(&a), &a).unwrap();
    assert_eq!(src, CompileSource::Cached);
    std::thread::sleep(Duration::from_millis(20));
    // Room for two: writing c evicts b, the least recently used.
    let two = open(2 * one + one / 2);
    two.load_or_compile(rt.engine(), &digest(&c), &c).unwrap();
    assert!(two.path_for(&digest(&a)).exists(), "a was used last");
    assert!(!two.path_for(&digest(&b)).exists(), "b was evicted");
    assert!(two.path_for(&digest(&c)).exists(), "c was just written");
    assert!(two.size() <= 2 * one + one / 2);
    assert!(two.verify_all().unwrap().is_empty());
    // The directory deleted under a running process: a miss, then made
    // again owner-only on the next write.
    std::fs::remove_dir_all(&cache_dir).unwrap();
    let (_, src, _) = two.load_or_compile(rt.engine(), &digest(&a), &a).unwrap();
    assert_eq!(src, CompileSource::Compiled);
    assert_eq!(mode(&cache_dir), 0o700);
    let (_, src, _) = two.load_or_compile(rt.engine(), &digest(&a), &a).unwrap();
    assert_eq!(src, CompileSource::Cached);
}

#[test]
fn test_help_shows_each_default_once() {
    let out = Command::new(bin())
        .args(["test", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(help.matches("[default: 256]").count(), 1, "{help}");
    for line in help.lines() {
        assert!(line.matches("[default:").count() <= 1, "{line}");
    }
}

#[test]
fn test_says_that_data_is_not_used() {
    let dir = tempdir();
    let input = bench_input(dir.path());
    let pt = plugin("passthrough");
    let cache = dir.path().join("cache");
    let args = [
        "test",
        pt.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ];
    // Given (before or after the subcommand): a note.
    let err = stderr(&ok(cmd(Some(&cache), &dir.path().join("d1"), &args)));
    assert!(
        err.contains("--data") && err.contains("is not used"),
        "{err}"
    );
    let mut c = Command::new(bin());
    c.env("BATPAK_CACHE_DIR", &cache)
        .args(args)
        .arg("--data")
        .arg(dir.path().join("d2"));
    let err = stderr(&ok(c));
    assert!(err.contains("is not used"), "{err}");
    // Not given: no note.
    let mut c = Command::new(bin());
    c.env("BATPAK_CACHE_DIR", &cache)
        .current_dir(dir.path())
        .args(args);
    let err = stderr(&ok(c));
    assert!(!err.contains("is not used"), "{err}");
    assert!(!dir.path().join("d1").exists() && !dir.path().join("d2").exists());
}
