//! Integrity findings of issue 7, driven through the real binary: damage is
//! reported (segment and offset, non-zero exit), never read around; the
//! recovery policy cuts only un-acknowledged torn tails; `verify` changes
//! nothing; `append --jsonl` is all or nothing.

use crate::common::{append_payloads, run};
use batpak_store::{AppendOptions, Coordinate, Proposal, Store, StoreOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn rand_seed() -> u64 {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    std::env::var("BATPAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(s)
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A store of 60 events over several small segments. With `clean`, closed
/// (snapshot, marker synced); otherwise the files are copied while the owner
/// is still running — what a `kill -9` leaves behind.
fn make_store(root: &Path, clean: bool) -> PathBuf {
    let live = root.join("live");
    let opts = StoreOptions {
        segment_size: 4096,
        ..StoreOptions::default()
    };
    let store = Store::open_with(&live, opts).unwrap();
    for i in 0..60 {
        let p = Proposal::new(
            Coordinate::new(format!("order:{}", i % 5), "shop").unwrap(),
            "order.placed",
            format!("{{\"sku\":\"widget\",\"n\":{i}}}").into_bytes(),
        );
        store.append(p, AppendOptions::durable()).unwrap();
    }
    let out = root.join("store");
    if clean {
        store.close().unwrap();
        copy_dir(&live, &out);
    } else {
        copy_dir(&live, &out);
        drop(store);
    }
    std::fs::remove_file(out.join("LOCK")).ok();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("segments")).unwrap();
    // Owner-only, as the store requires of its directory.
    std::fs::set_permissions(to, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    for e in std::fs::read_dir(from.join("segments")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join("segments").join(e.file_name())).unwrap();
    }
}

fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    for d in [dir.to_path_buf(), dir.join("segments")] {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            // A refused open may create LOCK (to say who tried); nothing else.
            if p.is_file() && p.file_name().unwrap() != "LOCK" {
                m.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    m
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Asserts that every reader refuses the damaged store naming segment and
/// offset, and that nothing changed its files.
fn assert_refused(dir: &Path, what: &str) {
    let before = files(dir);
    let o = run(dir, &["events"], None);
    assert!(!o.status.success(), "{what}: events exited 0 on damage");
    let e = err(&o);
    assert!(
        e.contains("segment") && e.contains("offset"),
        "{what}: events: {e}"
    );
    let o = run(dir, &["verify"], None);
    assert_eq!(o.status.code(), Some(1), "{what}: verify: {}", err(&o));
    assert_eq!(lines(&o)[0]["sound"], false, "{what}");
    let o = run(
        dir,
        &["append", "--entity", "x", "--scope", "s", "--kind", "k"],
        None,
    );
    assert!(
        !o.status.success(),
        "{what}: append succeeded on a damaged store"
    );
    assert!(err(&o).contains("segment"), "{what}: append: {}", err(&o));
    assert_eq!(files(dir), before, "{what}: the damaged store was modified");
}

#[test]
fn byte_flips_anywhere_in_sealed_and_last_segments_are_refused() {
    let seed = rand_seed();
    eprintln!("seed {seed} (BATPAK_SEED={seed} reproduces)");
    let mut rng = seed | 1;
    let root = crate::common::tempdir();
    let mut tried = 0;
    for clean in [true, false] {
        let pristine = make_store(&root.path().join(format!("p{clean}")), clean);
        let segs = segments(&pristine);
        assert!(segs.len() >= 3, "the store spans several segments");
        for (which, seg) in [(0, &segs[0]), (segs.len() - 1, segs.last().unwrap())] {
            let len = std::fs::metadata(seg).unwrap().len();
            for k in 0..12u64 {
                let at = if k == 0 { 5 } else { next(&mut rng) % len };
                let bit = 1u8 << (next(&mut rng) % 8);
                let case = root.path().join(format!("c{clean}-{which}-{k}"));
                copy_dir(&pristine, &case);
                let p = case.join("segments").join(seg.file_name().unwrap());
                let mut b = std::fs::read(&p).unwrap();
                b[at as usize] ^= bit;
                std::fs::write(&p, &b).unwrap();
                assert_refused(
                    &case,
                    &format!("clean={clean} segment {} byte {at} bit {bit}", which + 1),
                );
                tried += 1;
            }
        }
    }
    eprintln!("byte flips tried: {tried}");
}

#[test]
fn a_payload_flip_under_a_sound_snapshot_is_not_delivered() {
    // Issue 7 finding 1: with index.snap present, `widget` -> `vidget` was
    // read back as if intact.
    let root = crate::common::tempdir();
    let dir = make_store(root.path(), true);
    assert!(dir.join("index.snap").is_file());
    let seg = &segments(&dir)[1];
    let mut b = std::fs::read(seg).unwrap();
    let at = b.windows(6).position(|w| w == b"widget").unwrap();
    b[at] = b'v';
    std::fs::write(seg, &b).unwrap();
    assert_refused(&dir, "payload flip with a snapshot");
    let o = run(&dir, &["events"], None);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("vidget"),
        "the damaged payload was printed"
    );
}

#[test]
fn deleted_and_reordered_segments_are_refused() {
    let root = crate::common::tempdir();
    for clean in [true, false] {
        let pristine = make_store(&root.path().join(format!("p{clean}")), clean);
        let segs = segments(&pristine);
        let n = segs.len();
        for (name, victim) in [("first", 0), ("middle", n / 2), ("last", n - 1)] {
            let case = root.path().join(format!("del-{clean}-{name}"));
            copy_dir(&pristine, &case);
            std::fs::remove_file(
                case.join("segments")
                    .join(segs[victim].file_name().unwrap()),
            )
            .unwrap();
            assert_refused(&case, &format!("clean={clean}: {name} segment deleted"));
        }
        let case = root.path().join(format!("swap-{clean}"));
        copy_dir(&pristine, &case);
        let (a, b) = (
            case.join("segments").join(segs[0].file_name().unwrap()),
            case.join("segments").join(segs[1].file_name().unwrap()),
        );
        let tmp = case.join("segments").join("tmp");
        std::fs::rename(&a, &tmp).unwrap();
        std::fs::rename(&b, &a).unwrap();
        std::fs::rename(&tmp, &b).unwrap();
        assert_refused(&case, &format!("clean={clean}: segments 1 and 2 swapped"));
    }
}

#[test]
fn corrupt_stale_and_foreign_snapshots_are_never_trusted() {
    let root = crate::common::tempdir();
    let dir = make_store(&root.path().join("a"), true);
    let other = make_store(&root.path().join("b"), true);
    let count = |d: &Path| {
        let o = run(d, &["events"], None);
        assert!(o.status.success(), "{}", err(&o));
        lines(&o).len()
    };
    assert_eq!(count(&dir), 60);
    // Damaged snapshot: ignored, rebuilt, nothing lost.
    let snap = dir.join("index.snap");
    let mut b = std::fs::read(&snap).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0xff;
    std::fs::write(&snap, &b).unwrap();
    let o = run(
        &dir,
        &["append", "--entity", "x", "--scope", "s", "--kind", "k"],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(count(&dir), 61);
    // A snapshot from another store: ignored.
    std::fs::copy(other.join("index.snap"), &snap).unwrap();
    let o = run(
        &dir,
        &["append", "--entity", "x", "--scope", "s", "--kind", "k"],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(count(&dir), 62);
    // A snapshot whose proof no longer matches the segments (payload flipped
    // under it) is not trusted: the rescan finds the damage.
    let seg = &segments(&dir)[0];
    let mut b = std::fs::read(seg).unwrap();
    let at = b.windows(6).position(|w| w == b"widget").unwrap();
    b[at + 1] ^= 1;
    std::fs::write(seg, &b).unwrap();
    assert_refused(&dir, "payload flip under a snapshot");
}

/// The store (a library) names the damage and what to do about the store;
/// the command line adds its own advice — which command gives the full
/// report, which option picks another directory — chosen by the error's
/// variant, so its messages read as they always did.
#[test]
fn store_errors_come_with_the_command_lines_advice() {
    let d = crate::common::tempdir();
    append_payloads(d.path(), (0..20).map(|i| format!("value-{i:02}")));
    let seg = d.path().join("segments").join("00000001.seg");
    let mut b = std::fs::read(&seg).unwrap();
    let at = b.windows(8).position(|w| w == b"value-10").unwrap();
    b[at + 7] ^= 1;
    std::fs::write(&seg, &b).unwrap();
    let o = run(
        d.path(),
        &["append", "--entity", "x", "--scope", "s", "--kind", "k"],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let e = err(&o);
    assert!(e.contains("corrupt store: segment 00000001 offset "), "{e}");
    assert!(
        e.contains("Nothing was changed; run `batpak-host verify` for a full report and restore the damaged segment from a backup"),
        "{e}"
    );
    let empty = crate::common::tempdir();
    let o = run(&empty.path().join("nothing-here"), &["events"], None);
    assert_eq!(o.status.code(), Some(1));
    let e = err(&o);
    assert!(
        e.contains("(no segments directory); append an event first or pass the right --data"),
        "{e}"
    );
}

#[test]
fn events_stops_at_damage_followed_by_acknowledged_events_and_follow_exits() {
    // Issue 7 finding 2: 10 of 20 printed, exit 0, --follow stalled.
    let d = crate::common::tempdir();
    append_payloads(d.path(), (0..20).map(|i| format!("value-{i:02}")));
    let seg = d.path().join("segments").join("00000001.seg");
    let mut b = std::fs::read(&seg).unwrap();
    let at = b.windows(8).position(|w| w == b"value-10").unwrap();
    b[at + 7] ^= 1;
    std::fs::write(&seg, &b).unwrap();
    let o = run(d.path(), &["events"], None);
    assert!(!o.status.success(), "events exited 0 after a short read");
    assert_eq!(
        lines(&o).len(),
        10,
        "the intact events before the damage are printed"
    );
    let e = err(&o);
    assert!(
        e.contains("segment 00000001") && e.contains("offset"),
        "{e}"
    );
    // --follow must exit too (bounded wait).
    let mut child = Command::new(env!("CARGO_BIN_EXE_batpak-host"))
        .arg("--data")
        .arg(d.path())
        .args(["events", "--follow"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("events --follow kept running on a damaged log");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
}

#[test]
fn acknowledged_tail_damage_fails_closed_and_verify_changes_nothing() {
    // Issue 7 finding 3: opening (even via verify) cut an acknowledged
    // frame, and verify then said "sound".
    let d = crate::common::tempdir();
    append_payloads(d.path(), (0..5).map(|i| format!("v{i}")));
    let seg = d.path().join("segments").join("00000001.seg");
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let before = files(d.path());
    let o = run(d.path(), &["verify"], None);
    assert_eq!(o.status.code(), Some(1));
    let rep = &lines(&o)[0];
    assert_eq!(rep["sound"], false);
    assert!(
        rep["problems"].to_string().contains("acknowledged"),
        "{rep}"
    );
    assert_eq!(files(d.path()), before, "verify changed the store");
    assert_refused(d.path(), "acknowledged last frame torn");
}

#[test]
fn an_unacknowledged_torn_tail_is_cut_reported_and_recorded() {
    let d = crate::common::tempdir();
    append_payloads(d.path(), (0..3).map(|i| format!("v{i}")));
    // A write that never completed (nobody was told it was durable).
    let seg = d.path().join("segments").join("00000001.seg");
    let mut b = std::fs::read(&seg).unwrap();
    let last = b.windows(4).rposition(|w| w == b"BPKF").unwrap();
    let torn = b[last..last + 17].to_vec();
    b.extend_from_slice(&torn);
    std::fs::write(&seg, &b).unwrap();
    let before = files(d.path());
    // verify: read-only, says what an open would do, still sound.
    let o = run(d.path(), &["verify"], None);
    assert!(o.status.success(), "{}", err(&o));
    let rep = &lines(&o)[0];
    assert_eq!(rep["sound"], true);
    assert_eq!(rep["torn_tail_to_cut"]["bytes"], 17);
    assert_eq!(files(d.path()), before, "verify changed the store");
    // events: every acknowledged event, and a note on stderr.
    let o = run(d.path(), &["events"], None);
    assert!(o.status.success());
    assert_eq!(lines(&o).len(), 3);
    assert!(err(&o).contains("incomplete write"), "{}", err(&o));
    // The next open cuts it, says so, and records it.
    let o = run(
        d.path(),
        &["append", "--entity", "a", "--scope", "s", "--kind", "k"],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        err(&o).contains("cut a torn write of 17 byte(s)"),
        "{}",
        err(&o)
    );
    let o = run(
        d.path(),
        &["events", "--kind", "batpak.store.recovered"],
        None,
    );
    let rec = lines(&o);
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0]["payload"]["bytes_cut"], 17);
    let o = run(d.path(), &["verify"], None);
    assert!(o.status.success());
}

#[test]
fn jsonl_with_a_bad_causation_at_line_4501_appends_nothing() {
    // Issue 7 finding 4: 4096 events were appended before the bad line.
    let d = crate::common::tempdir();
    let mut input = String::new();
    for i in 1..=5000 {
        if i == 4501 {
            input.push_str(r#"{"entity":"a","scope":"s","kind":"k","payload":1,"causation":"0123456789abcdef0123456789abcdef"}"#);
        } else if i == 10 {
            // Causation to an earlier line of the same file is fine.
            input.push_str(r#"{"entity":"a","scope":"s","kind":"k","payload":1,"causation":"00000000000000000000000000000005"}"#);
        } else if i == 5 {
            input.push_str(r#"{"id":"00000000000000000000000000000005","entity":"a","scope":"s","kind":"k","payload":1}"#);
        } else {
            input.push_str(&format!(
                r#"{{"entity":"e{}","scope":"s","kind":"k","payload":{i}}}"#,
                i % 7
            ));
        }
        input.push('\n');
    }
    let file = d.path().join("in.jsonl");
    std::fs::write(&file, &input).unwrap();
    let data = d.path().join("data");
    let o = run(&data, &["append", "--jsonl", file.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    let e = err(&o);
    assert!(e.contains(":4501:") && e.contains("causation"), "{e}");
    assert!(e.contains("nothing was appended"), "{e}");
    assert!(lines(&o).is_empty(), "no receipts printed");
    let o = run(&data, &["events", "--system"], None);
    assert!(o.status.success(), "{}", err(&o));
    assert!(lines(&o).is_empty(), "nothing was appended");
    // Without the bad line the whole file goes in, same through stdin.
    let fixed: String = input
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 4500)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let o = run(&data, &["append", "--jsonl", "-"], Some(&fixed));
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(lines(&o).len(), 4999);
    let o = run(&data, &["events"], None);
    assert_eq!(lines(&o).len(), 4999);
}

#[test]
fn verify_works_on_a_store_another_process_holds() {
    let d = crate::common::tempdir();
    let store = Store::open(d.path()).unwrap();
    let p = Proposal::new(Coordinate::new("a", "s").unwrap(), "k", b"1".to_vec());
    store.append(p, AppendOptions::durable()).unwrap();
    let o = run(d.path(), &["verify"], None);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(lines(&o)[0]["sound"], true);
    assert_eq!(lines(&o)[0]["events"], 1);
}

/// Issue 16 finding 9: with the durable marker gone, the index snapshot
/// still says how far the log was acknowledged. A cut-short last segment is
/// refused (not cut as a torn tail) and a deleted last segment is reported
/// by `verify` (it said "sound").
#[test]
fn losing_the_marker_and_the_end_of_the_log_is_refused_and_reported() {
    let root = crate::common::tempdir();
    let dir = make_store(root.path(), true);
    let segs = segments(&dir);
    assert!(segs.len() >= 3, "{segs:?}");
    // Truncate the last segment mid-frame and delete the marker.
    let last = segs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len / 2 + 7)
        .unwrap();
    std::fs::remove_file(dir.join("DURABLE")).unwrap();
    let before = files(&dir);
    let o = run(&dir, &["verify"], None);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let rep = &lines(&o)[0];
    assert_eq!(rep["sound"], false, "{rep}");
    assert!(rep["torn_tail_to_cut"].is_null(), "{rep}");
    assert!(rep["problems"].to_string().contains("index.snap"), "{rep}");
    let o = run(
        &dir,
        &["append", "--entity", "x", "--scope", "s", "--kind", "k"],
        None,
    );
    assert!(!o.status.success(), "the open cut acknowledged events");
    let e = err(&o);
    assert!(e.contains("acknowledged data may be lost"), "{e}");
    assert!(e.contains("backup"), "{e}");
    assert_eq!(files(&dir), before, "the refused open changed the store");

    // Delete the whole last segment and the marker: verify said "sound".
    let root = crate::common::tempdir();
    let dir = make_store(root.path(), true);
    let segs = segments(&dir);
    std::fs::remove_file(segs.last().unwrap()).unwrap();
    std::fs::remove_file(dir.join("DURABLE")).unwrap();
    let o = run(&dir, &["verify"], None);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let rep = &lines(&o)[0];
    assert_eq!(rep["sound"], false, "{rep}");
    let missing = format!("segment file {:08} is missing", segs.len());
    assert!(rep["problems"].to_string().contains(&missing), "{rep}");
    let o = run(
        &dir,
        &["append", "--entity", "x", "--scope", "s", "--kind", "k"],
        None,
    );
    assert!(!o.status.success());
    assert!(err(&o).contains(&missing), "{}", err(&o));
}

/// Issue 16 finding 8: a data directory other users can read is refused
/// with the `chmod` that fixes it; the store's own files are owner-only.
#[test]
fn a_data_directory_other_users_can_read_is_refused_naming_the_chmod() {
    use std::os::unix::fs::PermissionsExt;
    let root = crate::common::tempdir();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let append = ["append", "--entity", "x", "--scope", "s", "--kind", "k"];
    let o = run(&data, &append, None);
    assert!(!o.status.success(), "a 0755 data directory was used");
    let e = err(&o);
    assert!(e.contains(&format!("chmod 700 {}", data.display())), "{e}");
    assert!(e.contains("0755"), "{e}");
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        0,
        "nothing created"
    );
    // verify says an open would refuse.
    std::fs::create_dir(data.join("segments")).unwrap();
    let o = run(&data, &["verify"], None);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("chmod 700"), "{}", err(&o));
    std::fs::remove_dir(data.join("segments")).unwrap();
    // Doing what the message says fixes it.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let o = run(&data, &append, None);
    assert!(o.status.success(), "{}", err(&o));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data.join("segments")), 0o700);
    for p in [
        data.join("DURABLE"),
        data.join("index.snap"),
        segments(&data)[0].clone(),
    ] {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    // A directory the host creates itself is owner-only.
    let fresh = root.path().join("fresh").join("data");
    let o = run(&fresh, &append, None);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(mode(&fresh), 0o700);
}

/// Issue 16 finding 8: the copy of `append --jsonl -` input (every payload)
/// is owner-only while it exists.
#[test]
fn the_jsonl_spool_of_stdin_is_owner_only() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let root = crate::common::tempdir();
    let data = root.path().join("data");
    let mut child = Command::new(crate::common::bin())
        .arg("--data")
        .arg(&data)
        .args(["append", "--jsonl", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            b"{\"entity\":\"acct:1\",\"scope\":\"s\",\"kind\":\"k\",\"payload\":{\"secret\":1}}\n",
        )
        .unwrap();
    stdin.flush().unwrap();
    let prefix = format!("batpak-jsonl-{}-", child.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    let spool = loop {
        let found = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with(&prefix));
        if let Some(e) = found {
            break e.path();
        }
        assert!(
            Instant::now() < deadline,
            "no spool file {prefix}* appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mode = std::fs::metadata(&spool).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", spool.display());
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", err(&out));
    assert!(!spool.exists(), "the spool is removed");
}
