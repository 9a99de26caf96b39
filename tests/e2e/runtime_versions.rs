//! Contract versions: the host runs `batpak:reactor@0.1.0` and `@0.2.0`
//! components side by side, decodes 0.2.0's flat proposals buffer with every
//! structural check (a broken buffer fails the call and parks the event),
//! refuses versions it does not offer naming the ones it does, and prints
//! the contract texts it offers (`batpak-host wit`).

use crate::common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// The 0.2.0 pass-through reactor in component text.
const PASSTHROUGH_WAT: &str = include_str!("../../plugins/passthrough-wat/reactor.wat");
/// Its 0.1.0 twin, kept as a fixture.
const PASSTHROUGH_WAT_0_1_0: &str =
    include_str!("../../plugins/fixtures/passthrough-wat-0.1.0.wat");

/// `text` with `old` replaced by `new` exactly once (a template change
/// fails here rather than producing a silently different component).
fn edit(text: &str, old: &str, new: &str) -> String {
    assert_eq!(text.matches(old).count(), 1, "template changed: {old}");
    text.replacen(old, new, 1)
}

/// The 0.2.0 pass-through renamed to `name` (15 characters, the length of
/// `passthrough-wat`, so the descriptor's lengths stay right).
fn passthrough_named(text: &str, name: &str) -> String {
    assert_eq!(name.len(), 15);
    edit(text, "\"passthrough-wat\"", &format!("\"{name}\""))
}

/// Pseudo-random inputs from a printed seed (xorshift), so a failure
/// reproduces.
fn inputs(seed: u64, n: usize) -> Vec<Value> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let r = next();
            let entity = format!("item:{}", r % 7);
            let scope = if r % 3 == 0 { "east" } else { "west" };
            let payload = match r % 4 {
                0 => serde_json::json!({"n": i, "text": "é ✓ naïve"}),
                1 => serde_json::json!({"n": i, "pad": "x".repeat((r % 300) as usize)}),
                2 => serde_json::json!([]),
                _ => serde_json::json!({"n": i}),
            };
            serde_json::json!({"entity": entity, "scope": scope, "kind": "bench.in", "payload": payload})
        })
        .collect()
}

#[test]
fn a_0_1_0_component_and_its_0_2_0_twin_react_alike_in_one_run() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    let dir = tempdir();
    let data = dir.path().join("data");
    let v1 = write_file(
        dir.path(),
        "v1.wat",
        &edit(
            PASSTHROUGH_WAT_0_1_0,
            "\"passthrough-wat\"",
            "\"passthrough-v01\"",
        ),
    );
    let v2 = write_file(
        dir.path(),
        "v2.wat",
        &passthrough_named(PASSTHROUGH_WAT, "passthrough-v02"),
    );
    let events = inputs(seed, 300);
    let receipts = append(&data, &events);
    // Small batches for one, large for the other: reactions must not depend
    // on batching or on the contract version.
    let out = host_ok(
        &data,
        &[
            "run",
            "--until-idle",
            "--max-batch",
            "7",
            v1.to_str().unwrap(),
            v2.to_str().unwrap(),
        ],
    );
    let err = stderr(&out);
    assert!(err.contains("passthrough-v01: in 300, out 300"), "{err}");
    assert!(err.contains("passthrough-v02: in 300, out 300"), "{err}");

    let all = all_events(&data);
    let by = |reactor: &str| -> HashMap<String, Value> {
        all.iter()
            .filter(|e| e["meta"]["reactor"] == reactor)
            .map(|e| (e["causation"].as_str().unwrap().to_string(), e.clone()))
            .collect()
    };
    let (r1, r2) = (by("passthrough-v01"), by("passthrough-v02"));
    assert_eq!((r1.len(), r2.len()), (300, 300));
    let inputs_by_id: HashMap<&str, &Value> = all
        .iter()
        .filter(|e| e["kind"] == "bench.in")
        .map(|e| (e["id"].as_str().unwrap(), e))
        .collect();
    for r in &receipts {
        let id = r["id"].as_str().unwrap();
        let (a, b) = (&r1[id], &r2[id]);
        let src = inputs_by_id[id];
        for field in ["kind", "entity", "scope", "payload", "correlation"] {
            assert_eq!(a[field], b[field], "{field} differs for source {id}");
        }
        assert_eq!(b["kind"], "bench.out");
        assert_eq!(b["entity"], src["entity"]);
        assert_eq!(b["scope"], src["scope"]);
        assert_eq!(b["payload"], src["payload"]);
        assert_eq!(b["correlation"], src["correlation"]);
        assert_ne!(a["id"], b["id"], "ids are per reactor");
    }
    assert!(all.iter().all(|e| e["kind"] != "batpak.gate.denied"));
    host_ok(&data, &["verify"]);
}

/// Runs `wat` (named `passthrough-wat`) over one event with one attempt and
/// returns the parked records and stderr.
fn run_one(dir: &Path, file: &str, wat: &str) -> (Vec<Value>, Vec<Value>, String) {
    let data = dir.join(format!("{file}.data"));
    let plugin = write_file(dir, file, wat);
    append(
        &data,
        &[
            serde_json::json!({"entity": "item:1", "scope": "s", "kind": "bench.in", "payload": {"n": 1}}),
        ],
    );
    let out = host_ok(
        &data,
        &[
            "run",
            "--until-idle",
            "--attempts",
            "1",
            "--backoff-ms",
            "1",
            plugin.to_str().unwrap(),
        ],
    );
    let parked = json_lines(&host_ok(&data, &["parked", "--plugin", "passthrough-wat"]).stdout);
    (parked, all_events(&data), stderr(&out))
}

#[test]
fn malformed_0_2_0_outputs_fail_the_call_and_park_the_event() {
    let dir = tempdir();
    let cases = [
        (
            "source.wat",
            edit(
                PASSTHROUGH_WAT,
                "(i32.store (local.get $p) (local.get $i))           ;; source",
                "(i32.store (local.get $p) (i32.add (local.get $i) (i32.const 1000)))",
            ),
            "names source event 1000 but the batch has 1 event(s)",
        ),
        (
            "tag.wat",
            edit(
                PASSTHROUGH_WAT,
                "(i64.store offset=32 (local.get $p) (i64.const 0))  ;; causation 0, reserved 0",
                "(i64.store offset=32 (local.get $p) (i64.const 7))",
            ),
            "causation is 7; it must be 0",
        ),
        (
            "short.wat",
            edit(
                PASSTHROUGH_WAT,
                "(i32.store (i32.const 3080) (i32.add (local.get $tail) (i32.sub (local.get $len) (local.get $po))))",
                "(i32.store (i32.const 3080) (i32.const 20))",
            ),
            "the header announces 1 proposal(s), which need 64 bytes, but the buffer has 20",
        ),
        (
            "range.wat",
            edit(
                PASSTHROUGH_WAT,
                "(i32.store offset=28 (local.get $p) (i32.load offset=92 (local.get $e)))",
                "(i32.store offset=28 (local.get $p) (i32.const 100000))",
            ),
            "its payload range",
        ),
    ];
    for (file, wat, needle) in &cases {
        let (parked, all, err) = run_one(dir.path(), file, wat);
        assert_eq!(parked.len(), 1, "{file}: {parked:?}\n{err}");
        let p = &parked[0];
        assert_eq!(p["failure"], "malformed-output", "{file}: {p}");
        let cause = p["cause"].as_str().unwrap();
        assert!(
            cause.contains("malformed proposals buffer") && cause.contains(needle),
            "{file}: {cause:?} lacks {needle:?}"
        );
        assert!(
            all.iter().all(|e| e["kind"] != "bench.out"),
            "{file}: nothing of a malformed output is kept"
        );
    }
}

#[test]
fn an_out_of_range_kind_index_is_denied_on_its_own_and_recorded() {
    let dir = tempdir();
    let wat = edit(
        PASSTHROUGH_WAT,
        "(i32.store offset=4 (local.get $p) (i32.const 0))   ;; kind: emits[0]",
        "(i32.store offset=4 (local.get $p) (local.get $i))",
    );
    let data = dir.path().join("data");
    let plugin = write_file(dir.path(), "kinds.wat", &wat);
    // In one batch: event 0 proposes emits[0] (declared), event 1 emits[1]
    // (past the one declared kind).
    append(
        &data,
        &[
            serde_json::json!({"entity": "a", "scope": "s", "kind": "bench.in", "payload": {}}),
            serde_json::json!({"entity": "b", "scope": "s", "kind": "bench.in", "payload": {}}),
        ],
    );
    host_ok(&data, &["run", "--until-idle", plugin.to_str().unwrap()]);
    let all = all_events(&data);
    let out: Vec<&Value> = all.iter().filter(|e| e["kind"] == "bench.out").collect();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["entity"], "a");
    let denied: Vec<&Value> = all
        .iter()
        .filter(|e| e["kind"] == "batpak.gate.denied")
        .collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["payload"]["code"], "kind-not-declared");
    assert_eq!(denied[0]["payload"]["kind"], "emits[1]");
    assert!(all.iter().all(|e| e["kind"] != "batpak.reactor.parked"));
}

#[test]
fn a_component_targeting_an_unoffered_version_is_refused_naming_the_offered_ones() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let wat = PASSTHROUGH_WAT.replace("@0.2.0", "@0.3.0");
    assert_ne!(wat, PASSTHROUGH_WAT);
    let file = write_file(dir.path(), "v3.wat", &wat);
    let out = host(&data, &["run", "--until-idle", file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in [
        file.to_str().unwrap(),
        "targets batpak:reactor@0.3.0",
        "offers batpak:reactor@0.1.0, batpak:reactor@0.2.0",
        "batpak-host wit --list",
    ] {
        assert!(err.contains(needle), "{needle:?} missing:\n{err}");
    }
    // inspect refuses it the same way.
    let out = host(&data, &["inspect", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("offers batpak:reactor@0.1.0, batpak:reactor@0.2.0"));
}

#[test]
fn the_host_prints_the_contracts_it_offers() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let list = host_ok(&data, &["wit", "--list"]);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        "batpak:reactor@0.1.0\nbatpak:reactor@0.2.0 (current)\n"
    );
    let root = workspace();
    let current = std::fs::read_to_string(root.join("wit/reactor.wit")).unwrap();
    let old = std::fs::read_to_string(root.join("wit/0.1.0/reactor.wit")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&host_ok(&data, &["wit"]).stdout),
        current
    );
    for spelling in ["0.2.0", "@0.2.0", "batpak:reactor@0.2.0"] {
        assert_eq!(
            String::from_utf8_lossy(&host_ok(&data, &["wit", spelling]).stdout),
            current
        );
    }
    assert_eq!(
        String::from_utf8_lossy(&host_ok(&data, &["wit", "0.1.0"]).stdout),
        old
    );
    let out = host(&data, &["wit", "0.3.0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("it offers 0.1.0, 0.2.0"));
    // The printed text is a working contract: the 0.2.0 WAT reactor built
    // against it loads and reports that version.
    let p = write_file(dir.path(), "p.wat", PASSTHROUGH_WAT);
    let v: Value =
        serde_json::from_slice(&host_ok(&data, &["inspect", p.to_str().unwrap()]).stdout).unwrap();
    assert_eq!(v["wit_version"], "0.2.0");
    assert_eq!(v["world"], "batpak:reactor/reactor-plugin@0.2.0");
    assert!(
        !data.join("segments").exists(),
        "wit and inspect open no store"
    );
}
