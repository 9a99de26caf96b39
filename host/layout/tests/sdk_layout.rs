//! The Python and C SDKs carry the layout as constants of their own
//! (`guest-sdk/python/batpak_guest/layout.py`, `guest-sdk/c/batpak.h`):
//! this test parses both and fails if any constant disagrees with this
//! crate, is missing, or is one the crate does not have.

use batpak_layout::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Every layout constant of the crate, named as the SDKs name them.
fn expected() -> BTreeMap<String, u64> {
    let mut m: BTreeMap<String, u64> = BTreeMap::new();
    let mut put = |name: &str, v: u64| {
        m.insert(name.to_string(), v);
    };
    put("BATCH_HEADER_LEN", BATCH_HEADER_LEN as u64);
    put("BATCH_RECORD_LEN", BATCH_RECORD_LEN as u64);
    put("STRING_ENTRY_LEN", STRING_ENTRY_LEN as u64);
    put("FLAG_HAS_CAUSATION", FLAG_HAS_CAUSATION as u64);
    put("PROPOSALS_HEADER_LEN", PROPOSALS_HEADER_LEN as u64);
    put("PROPOSAL_RECORD_LEN", PROPOSAL_RECORD_LEN as u64);
    put("CAUSATION_SOURCE", CAUSATION_SOURCE as u64);
    put("CAUSATION_EVENT", CAUSATION_EVENT as u64);
    put("CAUSATION_NONE", CAUSATION_NONE as u64);
    {
        use batch_field::*;
        for (n, v) in [
            ("ID_HI", ID_HI),
            ("ID_LO", ID_LO),
            ("SEQUENCE", SEQUENCE),
            ("ENTITY_SEQUENCE", ENTITY_SEQUENCE),
            ("CORRELATION_HI", CORRELATION_HI),
            ("CORRELATION_LO", CORRELATION_LO),
            ("CAUSATION_HI", CAUSATION_HI),
            ("CAUSATION_LO", CAUSATION_LO),
            ("TIMESTAMP_US", TIMESTAMP_US),
            ("ENTITY", ENTITY),
            ("SCOPE", SCOPE),
            ("KIND", KIND),
            ("FLAGS", FLAGS),
            ("PAYLOAD_OFFSET", PAYLOAD_OFFSET),
            ("PAYLOAD_LEN", PAYLOAD_LEN),
        ] {
            put(&format!("BATCH_FIELD_{n}"), v as u64);
        }
    }
    {
        use proposal_field::*;
        for (n, v) in [
            ("SOURCE", SOURCE),
            ("KIND", KIND),
            ("ENTITY", ENTITY),
            ("SCOPE", SCOPE),
            ("PAYLOAD", PAYLOAD),
            ("CAUSATION", CAUSATION),
            ("RESERVED", RESERVED),
            ("CAUSE_HI", CAUSE_HI),
            ("CAUSE_LO", CAUSE_LO),
        ] {
            put(&format!("PROPOSAL_FIELD_{n}"), v as u64);
        }
    }
    m
}

fn sdk_file(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `NAME = 123` lines at the start of a line (module-level constants).
fn python_constants(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(" = ")?;
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            Some((name.to_string(), value.trim().parse().ok()?)).filter(|_| ok)
        })
        .collect()
}

/// `#define BATPAK_NAME 123` lines (numeric ones only: the layout).
fn c_constants(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "#define").then_some(())?;
            let name = words.next()?.strip_prefix("BATPAK_")?;
            let value: u64 = words.next()?.trim_end_matches(['u', 'U']).parse().ok()?;
            words.next().is_none().then(|| (name.to_string(), value))
        })
        .collect()
}

fn assert_agrees(sdk: &str, got: &BTreeMap<String, u64>) {
    let want = expected();
    let mut problems = Vec::new();
    for (name, v) in &want {
        match got.get(name) {
            None => problems.push(format!("{name} is missing (batpak-layout: {v})")),
            Some(g) if g != v => problems.push(format!("{name} = {g}, batpak-layout says {v}")),
            _ => {}
        }
    }
    for name in got.keys().filter(|n| !want.contains_key(*n)) {
        problems.push(format!("{name} is not a batpak-layout constant"));
    }
    assert!(
        problems.is_empty(),
        "{sdk} disagrees with batpak-layout:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn python_sdk_layout_agrees_with_the_crate() {
    let got = python_constants(&sdk_file("guest-sdk/python/batpak_guest/layout.py"));
    assert_agrees("guest-sdk/python/batpak_guest/layout.py", &got);
}

#[test]
fn c_sdk_layout_agrees_with_the_crate() {
    let got = c_constants(&sdk_file("guest-sdk/c/batpak.h"));
    assert_agrees("guest-sdk/c/batpak.h", &got);
}

#[test]
fn the_parsers_see_a_wrong_constant() {
    // The check above must be able to fail: a changed offset is reported.
    let py = sdk_file("guest-sdk/python/batpak_guest/layout.py")
        .replace("BATCH_FIELD_KIND = 80", "BATCH_FIELD_KIND = 81");
    let c = sdk_file("guest-sdk/c/batpak.h").replace(
        "#define BATPAK_PROPOSAL_RECORD_LEN 56",
        "#define BATPAK_PROPOSAL_RECORD_LEN 57",
    );
    for (sdk, got) in [("python", python_constants(&py)), ("c", c_constants(&c))] {
        let r = std::panic::catch_unwind(|| assert_agrees(sdk, &got));
        assert!(r.is_err(), "{sdk}: a wrong constant went unnoticed");
    }
}
