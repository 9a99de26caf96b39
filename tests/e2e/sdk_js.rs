//! The JavaScript SDK (`guest-sdk/js`, npm package `batpak-reactor`): its
//! layout constants agree with `batpak-layout`, the one source of the
//! `@0.2.0` offsets, and its unit tests pass under Node's own test runner.

use crate::common::workspace;
use batpak_layout::{batch_field as bf, proposal_field as pf};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// `NAME: number` and `export const NAME = number;` pairs of `layout.js`,
/// keyed `NAME` at top level and `OBJECT.NAME` inside a frozen object.
fn js_constants(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut object: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("export const ") {
            let (name, value) = rest.split_once(" = ").expect("`export const NAME = ...`");
            if value.starts_with("Object.freeze({") {
                object = Some(name.to_string());
            } else {
                let v = value.trim_end_matches(';').parse().expect("a number");
                out.insert(name.to_string(), v);
            }
        } else if line.starts_with("});") {
            object = None;
        } else if let (Some(obj), Some((name, value))) = (&object, line.split_once(": ")) {
            let v = value.trim_end_matches(',').parse().expect("a number");
            out.insert(format!("{obj}.{name}"), v);
        }
    }
    out
}

/// Every constant of the layout crate, by the JS SDK's name for it.
fn rust_constants() -> BTreeMap<String, u64> {
    use batpak_layout::*;
    let all: Vec<(&str, u64)> = vec![
        ("BATCH_HEADER_LEN", BATCH_HEADER_LEN as u64),
        ("BATCH_RECORD_LEN", BATCH_RECORD_LEN as u64),
        ("STRING_ENTRY_LEN", STRING_ENTRY_LEN as u64),
        ("FLAG_HAS_CAUSATION", FLAG_HAS_CAUSATION as u64),
        ("BATCH_FIELD.ID_HI", bf::ID_HI as u64),
        ("BATCH_FIELD.ID_LO", bf::ID_LO as u64),
        ("BATCH_FIELD.SEQUENCE", bf::SEQUENCE as u64),
        ("BATCH_FIELD.ENTITY_SEQUENCE", bf::ENTITY_SEQUENCE as u64),
        ("BATCH_FIELD.CORRELATION_HI", bf::CORRELATION_HI as u64),
        ("BATCH_FIELD.CORRELATION_LO", bf::CORRELATION_LO as u64),
        ("BATCH_FIELD.CAUSATION_HI", bf::CAUSATION_HI as u64),
        ("BATCH_FIELD.CAUSATION_LO", bf::CAUSATION_LO as u64),
        ("BATCH_FIELD.TIMESTAMP_US", bf::TIMESTAMP_US as u64),
        ("BATCH_FIELD.ENTITY", bf::ENTITY as u64),
        ("BATCH_FIELD.SCOPE", bf::SCOPE as u64),
        ("BATCH_FIELD.KIND", bf::KIND as u64),
        ("BATCH_FIELD.FLAGS", bf::FLAGS as u64),
        ("BATCH_FIELD.PAYLOAD_OFFSET", bf::PAYLOAD_OFFSET as u64),
        ("BATCH_FIELD.PAYLOAD_LEN", bf::PAYLOAD_LEN as u64),
        ("PROPOSALS_HEADER_LEN", PROPOSALS_HEADER_LEN as u64),
        ("PROPOSAL_RECORD_LEN", PROPOSAL_RECORD_LEN as u64),
        ("CAUSATION_SOURCE", CAUSATION_SOURCE as u64),
        ("CAUSATION_EVENT", CAUSATION_EVENT as u64),
        ("CAUSATION_NONE", CAUSATION_NONE as u64),
        ("PROPOSAL_FIELD.SOURCE", pf::SOURCE as u64),
        ("PROPOSAL_FIELD.KIND", pf::KIND as u64),
        ("PROPOSAL_FIELD.ENTITY", pf::ENTITY as u64),
        ("PROPOSAL_FIELD.SCOPE", pf::SCOPE as u64),
        ("PROPOSAL_FIELD.PAYLOAD", pf::PAYLOAD as u64),
        ("PROPOSAL_FIELD.CAUSATION", pf::CAUSATION as u64),
        ("PROPOSAL_FIELD.RESERVED", pf::RESERVED as u64),
        ("PROPOSAL_FIELD.CAUSE_HI", pf::CAUSE_HI as u64),
        ("PROPOSAL_FIELD.CAUSE_LO", pf::CAUSE_LO as u64),
    ];
    all.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[test]
fn the_js_sdk_layout_agrees_with_batpak_layout() {
    let path = workspace().join("guest-sdk/js/layout.js");
    let js = js_constants(&std::fs::read_to_string(&path).unwrap());
    let rust = rust_constants();
    assert_eq!(
        js,
        rust,
        "{} disagrees with the batpak-layout crate (host/layout); copy the crate's values",
        path.display()
    );
}

#[test]
fn the_js_constant_reader_sees_a_changed_offset() {
    // The check above would catch an edited offset: the reader parses it.
    let text = std::fs::read_to_string(workspace().join("guest-sdk/js/layout.js")).unwrap();
    let edited = text.replace("  KIND: 80,", "  KIND: 84,");
    assert_ne!(edited, text, "layout.js changed shape");
    assert_ne!(js_constants(&edited), rust_constants());
}

#[test]
fn the_js_sdk_unit_tests_pass_under_node() {
    let dir = workspace().join("guest-sdk/js");
    // Output to files, so a full pipe cannot stall node past the deadline.
    let logs = crate::common::tempdir();
    let (stdout, stderr) = (logs.path().join("out"), logs.path().join("err"));
    let mut child = Command::new("node")
        .args(["--test", "--test-reporter=tap", "test/"])
        .current_dir(&dir)
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("running node (the JS SDK's tests need Node.js 20 or later)");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("node --test ran past 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&stdout).unwrap();
    assert!(
        status.success(),
        "node --test failed in {}:\n{text}\n{}",
        dir.display(),
        std::fs::read_to_string(&stderr).unwrap()
    );
    let passed: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("# pass "))
        .and_then(|n| n.trim().parse().ok())
        .expect("node's summary line `# pass N`");
    assert!(passed >= 10, "only {passed} JS tests ran:\n{text}");
}
