//! The decoders against arbitrary bytes: frames, the recovery scan (through
//! open and verify), snapshots and the durable marker. Every input gives an
//! error or a sound result — never a panic or a hang. Bounded for CI; a
//! longer run: `BATPAK_FUZZ_CASES=20000 cargo test --release -p batpak-store --test store fuzz`.

use batpak_store::{
    decode_frame, encode_frame, verify_dir_on, AppendOptions, Coordinate, Proposal, Region,
    SimDisk, Store, StoreError, StoreOptions,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn cases() -> u32 {
    std::env::var("BATPAK_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn options(disk: &SimDisk) -> StoreOptions {
    StoreOptions {
        segment_size: 2000,
        sync_interval: Duration::from_millis(1),
        disk: Arc::new(disk.clone()),
        ..StoreOptions::default()
    }
}

/// A small healthy store on a simulated disk; returns the disk and the
/// paths of its files.
fn healthy(seed: u64) -> SimDisk {
    let disk = SimDisk::new(seed);
    let store = Store::open_with("/f", options(&disk)).unwrap();
    for i in 0..30u32 {
        let p = Proposal::new(
            Coordinate::new(format!("e{}", i % 4), "fuzz").unwrap(),
            "fuzz.k",
            format!("payload {i}").into_bytes(),
        );
        store.append(p, AppendOptions::visible()).unwrap();
    }
    store.close().unwrap();
    disk
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn fuzz_frame_decoder_never_panics() {
    let r = runner().run(&proptest::collection::vec(any::<u8>(), 0..600), |bytes| {
        let _ = decode_frame(&bytes);
        // Also behind a valid header claiming any length.
        let mut framed = Vec::new();
        encode_frame(&bytes, &mut framed);
        let n = framed.len();
        framed.truncate(n - bytes.len() / 2);
        let _ = decode_frame(&framed);
        Ok(())
    });
    r.unwrap();
}

/// Open and verify must both return (error or not) for any damage to any
/// file of a store, and an open that succeeds must read back every event
/// without panicking.
#[test]
fn fuzz_recovery_scan_snapshot_and_marker_with_damaged_files() {
    let files = [
        "/f/segments/00000001.seg",
        "/f/segments/00000002.seg",
        "/f/index.snap",
        "/f/DURABLE",
    ];
    let strategy = (
        any::<u64>(),
        0usize..files.len(),
        proptest::collection::vec((any::<u32>(), any::<u8>()), 1..6),
        prop::option::of(any::<u32>()),
        prop::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
    );
    let r = runner().run(&strategy, |(seed, which, flips, cut, replace)| {
        let disk = healthy(seed);
        let path = Path::new(files[which]);
        let mut bytes = disk.read_file(path).unwrap_or_default();
        if let Some(new) = replace {
            bytes = new;
        } else {
            for (at, x) in flips {
                if !bytes.is_empty() {
                    let i = at as usize % bytes.len();
                    bytes[i] ^= x.max(1);
                }
            }
            if let Some(c) = cut {
                let keep = c as usize % (bytes.len() + 1);
                bytes.truncate(keep);
            }
        }
        disk.write_file(path, &bytes);
        let report = verify_dir_on(&disk, Path::new("/f")).unwrap();
        match Store::open_with("/f", options(&disk)) {
            Ok(store) => {
                // Whatever opened must read back cleanly or fail typed.
                match store.scan(&Region::all(), 0, usize::MAX, true) {
                    Ok(_) | Err(StoreError::Corrupt { .. }) => {}
                    Err(e) => panic!("unexpected read error {e:?}"),
                }
                let _ = store.close();
            }
            Err(StoreError::Corrupt { .. } | StoreError::AcknowledgedLoss { .. }) => {
                prop_assert!(
                    !report.is_sound(),
                    "verify called a store sound that does not open"
                );
            }
            Err(e) => panic!("unexpected open error {e:?}"),
        }
        Ok(())
    });
    eprintln!("damaged-store cases tried: {}", cases());
    r.unwrap();
}
