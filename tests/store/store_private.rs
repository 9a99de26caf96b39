//! Permissions like PostgreSQL's data directory (issue 16, finding 8): the
//! store refuses a directory group or others can access, naming the
//! `chmod` that fixes it, and creates its directories 0700 and its files
//! 0600 — real directories and files.

use batpak_store::{AppendOptions, Coordinate, Proposal, Store, StoreError};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn prop(i: u32) -> Proposal {
    Proposal::new(
        Coordinate::new("acct:1", "test").unwrap(),
        "money.deposited",
        format!("{{\"n\":{i}}}").into_bytes(),
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_data_directory_others_can_access_is_refused_naming_the_chmod() {
    let root = crate::tempdir().unwrap();
    for bits in [0o750, 0o705, 0o770, 0o755, 0o701] {
        let dir = root.path().join(format!("d{bits:o}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(bits)).unwrap();
        let err = Store::open(&dir).expect_err("a shared directory must be refused");
        let text = err.to_string();
        match err {
            StoreError::NotPrivate {
                dir: d,
                mode: m,
                fix,
            } => {
                assert_eq!(d, dir);
                assert_eq!(m, bits);
                assert_eq!(fix, format!("chmod 700 {}", dir.display()));
            }
            other => panic!("{bits:o}: expected NotPrivate, got {other:?}"),
        }
        assert!(
            text.contains(&format!("chmod 700 {}", dir.display())),
            "{text}"
        );
        assert!(text.contains(&format!("{bits:04o}")), "{text}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "{bits:o}: the refused open created nothing"
        );
        // What the message says to run fixes it.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let store = Store::open(&dir).unwrap();
        store.append(prop(1), AppendOptions::durable()).unwrap();
        store.close().unwrap();
    }
}

#[test]
fn a_new_store_creates_its_directories_0700_and_its_files_0600() {
    let root = crate::tempdir().unwrap();
    // Whatever the umask (tests run under 022): the store sets the modes.
    let dir = root.path().join("new").join("data");
    let store = Store::open(&dir).unwrap();
    for i in 0..10 {
        store.append(prop(i), AppendOptions::durable()).unwrap();
    }
    store.close().unwrap();
    assert_eq!(mode(&dir), 0o700, "the store directory");
    assert_eq!(mode(&dir.join("segments")), 0o700, "segments/");
    let mut files = vec![
        dir.join("LOCK"),
        dir.join("DURABLE"),
        dir.join("index.snap"),
    ];
    for e in std::fs::read_dir(dir.join("segments")).unwrap() {
        files.push(e.unwrap().path());
    }
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
}

#[test]
fn read_only_tools_read_a_shared_directory_and_verify_says_an_open_would_refuse() {
    let root = crate::tempdir().unwrap();
    let dir = root.path().join("d");
    let store = Store::open(&dir).unwrap();
    for i in 0..3 {
        store.append(prop(i), AppendOptions::durable()).unwrap();
    }
    store.close().unwrap();
    // A store from an older version: made under umask 022.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let rep = batpak_store::verify_dir(&dir).unwrap();
    assert!(!rep.is_sound(), "{rep:?}");
    let why = rep.open_error.unwrap();
    assert!(
        why.contains(&format!("chmod 700 {}", dir.display())),
        "{why}"
    );
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    // `events` reads it without the lock (it changes nothing).
    assert!(!batpak_store::opens_clean(&dir));
    let mut r = batpak_store::LogReader::open(&dir).unwrap();
    let evs = r.poll(usize::MAX).unwrap();
    assert_eq!(evs.len(), 3);
    assert!(evs.iter().all(|e| e.header.kind == "money.deposited"));
}
