//! A store directory of untrusted files: segments, the index snapshot, the
//! durable marker, checkpoints — whatever is on disk after a crash, a
//! damaged disk or a hostile edit. The input is a list of files, each
//! `[name length u8][name][length u32 LE][bytes]` (relative names of
//! `[A-Za-z0-9._-/]`, such as `segments/00000001.seg`), written to a [`SimDisk`]; then the store is verified, tailed with
//! a [`LogReader`], opened (recovery: frames, events, snapshot, marker),
//! read and closed. Each step may refuse the directory; none may panic or
//! allocate without bound. The input is also decoded as one segment frame.

use batpak_store::{
    decode_frame, verify_dir_on, Disk, LogReader, Region, SimDisk, Store, StoreOptions,
};
use std::path::Path;
use std::sync::Arc;

const DIR: &str = "/fuzz/data";

/// The files of an input.
pub fn files(mut data: &[u8]) -> Vec<(String, &[u8])> {
    let mut out = Vec::new();
    while let Some((&n, rest)) = data.split_first() {
        let n = n as usize;
        if rest.len() < n + 4 {
            break;
        }
        let name = &rest[..n];
        let len = u32::from_le_bytes([rest[n], rest[n + 1], rest[n + 2], rest[n + 3]]) as usize;
        let rest = &rest[n + 4..];
        let bytes = &rest[..len.min(rest.len())];
        data = &rest[bytes.len()..];
        let ok = name
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-/".contains(c))
            && name
                .split(|&c| c == b'/')
                .all(|part| !part.is_empty() && part != b"." && part != b"..");
        if ok {
            out.push((String::from_utf8_lossy(name).into_owned(), bytes));
        }
    }
    out
}

/// Lays `files` out as an input.
pub fn input(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Feeds one directory.
pub fn run(data: &[u8]) {
    let _ = decode_frame(data);
    let disk = Arc::new(SimDisk::new(1));
    let dir = Path::new(DIR);
    disk.create_dir_all(dir).expect("a simulated directory");
    for (name, bytes) in files(data) {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            disk.create_dir_all(parent).expect("a simulated directory");
        }
        disk.write_file(&path, bytes);
    }
    let _ = verify_dir_on(&*disk, dir);
    if let Ok(mut reader) = LogReader::open_on(disk.clone(), dir) {
        for _ in 0..64 {
            match reader.poll(1 << 20) {
                Ok(events) if !events.is_empty() => {}
                _ => break,
            }
        }
    }
    let options = StoreOptions {
        disk: disk.clone(),
        ..StoreOptions::default()
    };
    if let Ok(store) = Store::open_with(dir, options) {
        let _ = store.scan(&Region::all(), 0, 10_000, true);
        let _ = store.verify();
        let _ = store.close();
    }
}

/// Directories a real store leaves: after appends (with keys, causation,
/// a checkpoint), after a clean close (with an index snapshot), and one
/// cut mid-frame.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    use batpak_store::{AppendOptions, CheckpointUpdate, Coordinate, Proposal, Wait};
    let disk = Arc::new(SimDisk::new(7));
    let dir = Path::new(DIR);
    let options = || StoreOptions {
        disk: disk.clone(),
        segment_size: 4096,
        ..StoreOptions::default()
    };
    let snapshot = |tag: &str, out: &mut Vec<(String, Vec<u8>)>| {
        let mut names = disk.list(dir).expect("listing the simulated directory");
        let segments = disk.list(&dir.join("segments")).unwrap_or_default();
        names.extend(segments.into_iter().map(|n| format!("segments/{n}")));
        names.sort();
        let files: Vec<(String, Vec<u8>)> = names
            .into_iter()
            .filter_map(|n| disk.read_file(&dir.join(&n)).map(|b| (n, b)))
            .collect();
        out.push((tag.to_string(), input(&files)));
        files
    };
    let mut out = Vec::new();
    let store = Store::open_with(dir, options()).expect("a simulated store");
    let c = |e: &str| Coordinate::new(e, "shop").expect("a coordinate");
    let first = store
        .append(
            Proposal::new(c("order:1"), "order.placed", br#"{"q":1}"#.to_vec()),
            AppendOptions {
                wait: Wait::Durable,
                checkpoint: None,
            },
        )
        .expect("an append");
    let mut keyed = Proposal::new(c("order:2"), "order.paid", br#"{"n":2}"#.to_vec());
    keyed.idempotency_key = Some("k1".into());
    keyed.causation = Some(first.id);
    store
        .append_batch(
            vec![
                keyed,
                Proposal::new(c("order:3"), "order.placed", vec![b'x'; 3000]),
            ],
            AppendOptions {
                wait: Wait::Durable,
                checkpoint: Some(CheckpointUpdate {
                    cursor: "reactor-a".into(),
                    region: Region::all().fingerprint(),
                    sequence: first.sequence,
                    event_id: first.id,
                }),
            },
        )
        .expect("a batch append");
    snapshot("open", &mut out);
    store.close().expect("closing the simulated store");
    let closed = snapshot("closed", &mut out);
    // The last segment cut inside its last frame.
    let mut cut = closed.clone();
    if let Some((_, seg)) = cut.iter_mut().rev().find(|(n, _)| n.ends_with(".seg")) {
        let len = seg.len();
        seg.truncate(len.saturating_sub(7));
    }
    out.push(("cut".into(), input(&cut)));
    out
}
