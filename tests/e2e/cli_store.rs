//! The store's command line, driven as a user would: the real binary, real
//! files.

use crate::common::{append_payloads, run};
use serde_json::Value;
use std::process::Output;

fn lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn append_then_events_round_trips_with_filters_and_causation() {
    let d = crate::common::tempdir();
    let o = run(
        d.path(),
        &[
            "append",
            "--entity",
            "order:1",
            "--scope",
            "shop",
            "--kind",
            "order.placed",
            "--payload",
            r#"{"sku":"w","qty":2}"#,
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = &lines(&o)[0];
    let id = r["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(r["seq"], 1);
    let o = run(
        d.path(),
        &[
            "append",
            "--entity",
            "order:1",
            "--scope",
            "shop",
            "--kind",
            "order.paid",
            "--payload-text",
            "plain text",
            "--causation",
            &id,
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(d.path(), &["events"], None);
    let evs = lines(&o);
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0]["payload"]["sku"], "w", "JSON payloads print as JSON");
    assert_eq!(
        evs[1]["payload"], "plain text",
        "other payloads print as strings"
    );
    assert_eq!(evs[1]["causation"], id.as_str());
    assert_eq!(evs[1]["correlation"], id.as_str());
    let o = run(d.path(), &["events", "--kind", "order.paid"], None);
    assert_eq!(lines(&o).len(), 1);
    let o = run(d.path(), &["events", "--after", "1"], None);
    assert_eq!(lines(&o)[0]["seq"], 2);
    let o = run(d.path(), &["events", "--limit", "1"], None);
    assert_eq!(lines(&o).len(), 1);
    let o = run(d.path(), &["verify"], None);
    assert!(o.status.success());
    assert_eq!(lines(&o)[0]["sound"], true);
}

#[test]
fn jsonl_with_a_bad_line_appends_nothing_and_names_the_line() {
    let d = crate::common::tempdir();
    let input = "{\"entity\":\"a\",\"scope\":\"s\",\"kind\":\"k\",\"payload\":1}\n\n{\"entity\":\"a\",\"scope\":\"s\",\"kind\":\"batpak.no\",\"payload\":2}\n";
    let o = run(d.path(), &["append", "--jsonl", "-"], Some(input));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("stdin:3") && err.contains("reserved"), "{err}");
    assert!(err.contains("nothing was appended"), "{err}");
    let o = run(d.path(), &["events", "--system"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(lines(&o).is_empty(), "nothing was appended");

    let good: String = (0..2500)
        .map(|i| format!("{{\"entity\":\"e{}\",\"scope\":\"s\",\"kind\":\"k\",\"payload\":{{\"n\":{i}}},\"idempotency_key\":\"k{i}\"}}\n", i % 10))
        .collect();
    let f = d.path().join("in.jsonl");
    std::fs::write(&f, &good).unwrap();
    let o = run(d.path(), &["append", "--jsonl", f.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lines(&o).len(), 2500);
    // Re-running the same file is a no-op thanks to the keys.
    let o = run(d.path(), &["append", "--jsonl", f.to_str().unwrap()], None);
    assert!(lines(&o).iter().all(|r| r["deduplicated"] == true));
    let o = run(d.path(), &["events"], None);
    assert_eq!(lines(&o).len(), 2500);
}

#[test]
fn bad_arguments_exit_2_with_usage() {
    let d = crate::common::tempdir();
    let o = run(d.path(), &["append", "--entity", "x"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--scope"), "{}", stderr(&o));
    let o = run(
        d.path(),
        &[
            "append",
            "--entity",
            "x",
            "--scope",
            "s",
            "--kind",
            "k",
            "--causation",
            "nothex",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("32 hex digits"), "{}", stderr(&o));
    let o = run(d.path(), &["frobnicate"], None);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_held_store_is_refused_naming_the_holder() {
    let d = crate::common::tempdir();
    let _held = batpak_store::Store::open(d.path()).unwrap();
    let o = run(
        d.path(),
        &["append", "--entity", "x", "--scope", "s", "--kind", "k"],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("pid {}", std::process::id())) && err.contains("--data"),
        "{err}"
    );
    // Since when, as an ISO-8601 UTC time, and how long ago.
    let since = err
        .split(" since ")
        .nth(1)
        .unwrap_or_else(|| panic!("no \"since\": {err}"));
    let t = &since[..since.find('Z').unwrap_or_else(|| panic!("{err}")) + 1];
    assert!(
        t.len() == 20 && t.as_bytes()[4] == b'-' && t.as_bytes()[10] == b'T',
        "not an ISO-8601 time: {t:?} in {err}"
    );
    assert!(
        since[t.len()..].starts_with(", ") && since.contains(" s ago)"),
        "{err}"
    );
}

/// A `--payload` that is not JSON is refused (exit 2, nothing appended)
/// with the parse error's position and the fix; `--payload-text` stores
/// the same text verbatim; a JSON payload is stored as typed.
#[test]
fn a_payload_that_is_not_json_is_refused_unless_given_as_text() {
    let d = crate::common::tempdir();
    let ev = |flag: &str, payload: &str| {
        run(
            d.path(),
            &[
                "append",
                "--entity",
                "order:7",
                "--scope",
                "shop",
                "--kind",
                "order.placed",
                flag,
                payload,
            ],
            None,
        )
    };
    let o = ev("--payload", r#"{sku:"widget"}"#);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("--payload is not valid JSON"), "{err}");
    assert!(err.contains("line 1, column 2"), "{err}");
    assert!(err.contains("  {sku:\"widget\"}\n   ^\n"), "{err}");
    assert!(err.contains("--payload-text"), "{err}");
    assert!(o.stdout.is_empty());
    let o = ev("--payload", "");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--payload is empty"), "{}", stderr(&o));
    let o = run(d.path(), &["events", "--system"], None);
    assert!(lines(&o).is_empty(), "a refused payload appended something");
    // Given as text, the same bytes are stored as they are.
    let o = ev("--payload-text", r#"{sku:"widget"}"#);
    assert!(o.status.success(), "{}", stderr(&o));
    // JSON is stored exactly as typed (spacing included).
    let o = ev("--payload", r#"{"sku": "widget", "qty": 2}"#);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(d.path(), &["events"], None);
    let evs = lines(&o);
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0]["payload"], r#"{sku:"widget"}"#);
    assert_eq!(evs[1]["payload"]["qty"], 2);
    let o = run(d.path(), &["events", "--format", "pretty"], None);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(r#" {"sku": "widget", "qty": 2}"#), "{text}");
    // Both flags at once is a usage error.
    let o = run(
        d.path(),
        &[
            "append",
            "--entity",
            "e",
            "--scope",
            "s",
            "--kind",
            "k",
            "--payload",
            "1",
            "--payload-text",
            "1",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn verify_reports_corruption_with_segment_and_offset() {
    let d = crate::common::tempdir();
    append_payloads(d.path(), (0..4).map(|i| format!("value-{i}")));
    let seg = d.path().join("segments").join("00000001.seg");
    let mut b = std::fs::read(&seg).unwrap();
    let at = b.windows(7).position(|w| w == b"value-1").unwrap();
    b[at + 2] ^= 0x20;
    std::fs::write(&seg, b).unwrap();
    std::fs::remove_file(d.path().join("index.snap")).ok();
    let o = run(d.path(), &["verify"], None);
    assert_eq!(o.status.code(), Some(1));
    let rep = &lines(&o)[0];
    assert_eq!(rep["sound"], false);
    let text = rep["problems"].to_string();
    assert!(
        text.contains("segment 00000001") || text.contains("segment 000001"),
        "{text}"
    );
    assert!(text.contains("offset"), "{text}");
}
