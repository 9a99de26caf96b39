//! A new version that reads another region is refused with a message a
//! person can act on (issue 15): both regions in words, and the README's
//! fix (`reset NAME --to current|start --plugin NEW.wasm`), whether it is
//! offered as a hot swap or started with `run`.

use crate::common::*;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn assert_readable(msg: &str) {
    for needle in [
        "batpak-host reset null --to current --plugin NEW.wasm",
        "--to start",
        "kind \"bench.ix\"",
    ] {
        assert!(msg.contains(needle), "lacks {needle:?}:\n{msg}");
    }
    for noise in ["Region {", "kinds: [", "new name", "new cursor id"] {
        assert!(!msg.contains(noise), "{noise:?} in:\n{msg}");
    }
}

#[test]
fn a_region_change_is_refused_naming_both_regions_and_the_reset_fix() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let v1 = write_file(dir.path(), "v1.wat", NULL_REACTOR_WAT);
    let v2 = write_file(
        dir.path(),
        "v2.wat",
        &NULL_REACTOR_WAT.replace("\"bench.in\"", "\"bench.ix\""),
    );
    append(
        &data,
        &[json!({"entity": "e:1", "scope": "bench", "kind": "bench.in", "payload": {}})],
    );

    // Offered as a hot swap to the running host.
    let log = dir.path().join("run.stderr");
    let mut child = Command::new(bin())
        .arg("--data")
        .arg(&data)
        .args(["run", "--quiet"])
        .arg(&v1)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let out = host(&data, &["swap", "null", v2.to_str().unwrap()]);
        let err = stderr(&out);
        // Until the host answers on its socket, swap says none is running.
        if !err.contains("no batpak-host is running") {
            assert_eq!(out.status.code(), Some(1), "{err}");
            break err;
        }
        assert!(Instant::now() < deadline, "the host never answered: {err}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_readable(&refused);
    assert!(
        refused.contains("reads kind \"bench.ix\", the running one kind \"bench.in\""),
        "{refused}"
    );
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(60)).success());
    let records = events_of(&data, "batpak.plugin.swap-refused");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["payload"]["code"], "region-changed");
    assert_readable(records[0]["payload"]["reason"].as_str().unwrap());

    // Started with `run` over the old checkpoint.
    let out = host(
        &data,
        &["run", "--until-idle", "--quiet", v2.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert_readable(&stderr(&out));
}
