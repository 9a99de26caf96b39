//! A hostile plugin misbehaves in every way it can while inventory runs
//! beside it: each bad event is parked or denied with the right cause, the
//! good ones are handled, inventory handles all its orders, and parked events
//! can be listed and replayed.

use crate::common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

const COMMANDS: [&str; 11] = [
    "ok",
    "loop",
    "oom",
    "trap",
    "error",
    "huge",
    "forbidden",
    "reserved",
    "bad-source",
    "ok",
    "sleep",
];

fn cmd(i: usize, c: &str) -> Value {
    json!({"entity": format!("h:{i}:{c}"), "scope": "lab", "kind": "hostile.cmd", "payload": {"do": c}})
}

fn run(data: &Path, memory_mb: &str) -> std::process::Output {
    let (h, inv) = (plugin("hostile"), plugin("inventory"));
    host(
        data,
        &[
            "run",
            "--until-idle",
            "--timeout-ms",
            "250",
            "--memory-mb",
            memory_mb,
            "--attempts",
            "2",
            "--backoff-ms",
            "1",
            "--max-batch",
            "64",
            h.to_str().unwrap(),
            inv.to_str().unwrap(),
        ],
    )
}

fn parked(data: &Path) -> HashMap<String, Value> {
    json_lines(&host_ok(data, &["parked", "--plugin", "hostile"]).stdout)
        .into_iter()
        .map(|p| (p["entity"].as_str().unwrap().to_string(), p))
        .collect()
}

#[test]
fn hostile_plugin_is_contained_and_parked_events_replay() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let mut events: Vec<Value> = COMMANDS
        .iter()
        .enumerate()
        .map(|(i, c)| cmd(i, c))
        .collect();
    // Orders interleaved after the hostile commands: inventory must handle
    // every one of them while hostile fails beside it.
    events.extend((1..=30).map(|n| order(n, "widget", 1)));
    append(&data, &events);

    // 64 MiB: the memory bomb and the 64 MiB payload both hit the limit.
    let out = run(&data, "64");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("summary | inventory: in 30, out 30"), "{err}");

    let all = all_events(&data);
    let ok: Vec<&Value> = all.iter().filter(|e| e["kind"] == "hostile.ok").collect();
    assert_eq!(
        ok.len(),
        3,
        "both ok commands and the day-long sleep (which must return at once) handled"
    );
    let inv = all
        .iter()
        .filter(|e| e["meta"]["reactor"] == "inventory")
        .count();
    assert_eq!(inv, 30);

    let p = parked(&data);
    let cause = |c: &str, i: usize| {
        p.get(&format!("h:{i}:{c}"))
            .unwrap_or_else(|| panic!("{c} not parked: {p:?}"))
    };
    assert_eq!(cause("loop", 1)["failure"], "timeout");
    assert_eq!(cause("oom", 2)["failure"], "out-of-memory");
    assert_eq!(cause("trap", 3)["failure"], "trap");
    assert!(cause("trap", 3)["cause"]
        .as_str()
        .unwrap()
        .contains("hostile: trap requested"));
    assert_eq!(cause("error", 4)["failure"], "error");
    assert!(cause("error", 4)["cause"]
        .as_str()
        .unwrap()
        .contains("error requested"));
    assert_eq!(cause("huge", 5)["failure"], "out-of-memory");
    assert_eq!(cause("bad-source", 8)["failure"], "malformed-output");
    assert!(cause("bad-source", 8)["cause"]
        .as_str()
        .unwrap()
        .contains("source"));
    assert_eq!(p.len(), 6, "{p:?}");
    for v in p.values() {
        assert_eq!(v["reactor"], "hostile");
        assert_eq!(v["kind"], "hostile.cmd");
        assert_eq!(v["replay_requested"], false);
        assert!(v["attempts"].as_u64().unwrap() >= 2);
        // The parked record is caused by the parked event.
        let rec = all.iter().find(|e| e["id"] == v["parked"]).unwrap();
        assert_eq!(rec["causation"], v["event"]);
        assert_eq!(rec["entity"], "reactor:hostile");
    }

    let denied: HashMap<String, Value> = all
        .iter()
        .filter(|e| e["kind"] == "batpak.gate.denied")
        .map(|e| {
            (
                e["payload"]["kind"].as_str().unwrap().to_string(),
                e.clone(),
            )
        })
        .collect();
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert_eq!(
        denied["hostile.forbidden"]["payload"]["code"],
        "kind-not-declared"
    );
    assert_eq!(denied["batpak.fake"]["payload"]["code"], "reserved-kind");
    assert!(all
        .iter()
        .all(|e| e["kind"] != "batpak.fake" && e["kind"] != "hostile.forbidden"));

    // Checkpoint moved past everything: a second run redelivers nothing.
    let before = all
        .iter()
        .filter(|e| e["kind"] != "batpak.cursor.checkpoint")
        .count();
    let out = run(&data, "64");
    assert!(out.status.success(), "{}", stderr(&out));
    let again = all_events(&data);
    assert_eq!(
        again
            .iter()
            .filter(|e| e["kind"] != "batpak.cursor.checkpoint")
            .count(),
        before
    );

    // Replay: with more memory the 64 MiB payload now reaches the gates
    // (and is denied as too large), which resolves it; the others fail
    // again and are parked again.
    let req = json_lines(&host_ok(&data, &["parked", "replay", "--plugin", "hostile"]).stdout);
    assert_eq!(req.len(), 6);
    assert!(parked(&data)
        .values()
        .all(|v| v["replay_requested"] == true));
    // A second request for the same events is not duplicated.
    assert!(
        json_lines(&host_ok(&data, &["parked", "replay", "--plugin", "hostile"]).stdout).is_empty()
    );

    let out = run(&data, "256");
    assert!(out.status.success(), "{}", stderr(&out));
    let all = all_events(&data);
    let unparked: Vec<&Value> = all
        .iter()
        .filter(|e| e["kind"] == "batpak.reactor.unparked")
        .collect();
    assert_eq!(unparked.len(), 1, "{unparked:?}");
    let huge_id = cause("huge", 5)["event"].clone();
    assert_eq!(unparked[0]["payload"]["event"], huge_id);
    assert_eq!(unparked[0]["payload"]["denials"], 1);
    let too_large = all
        .iter()
        .find(|e| e["kind"] == "batpak.gate.denied" && e["causation"] == huge_id)
        .expect("the huge proposal was denied");
    assert_eq!(too_large["payload"]["code"], "invalid-proposal");

    let still = parked(&data);
    assert_eq!(still.len(), 5, "{still:?}");
    assert!(!still.contains_key("h:5:huge"));
    for v in still.values() {
        assert!(
            v["replaces"].is_string(),
            "re-parked records replace the old ones: {v}"
        );
        assert_eq!(v["replay_requested"], false);
    }

    // Replaying one event by id.
    let trap_event = still["h:3:trap"]["event"].as_str().unwrap().to_string();
    let req = json_lines(&host_ok(&data, &["parked", "replay", "--event", &trap_event]).stdout);
    assert_eq!(req.len(), 1);
    assert_eq!(req[0]["event"], trap_event.as_str());
    let listed = parked(&data);
    assert_eq!(listed["h:3:trap"]["replay_requested"], true);
    assert_eq!(listed["h:1:loop"]["replay_requested"], false);
    // An id that is not parked: nothing to do, exit 1.
    let out = host(&data, &["parked", "replay", "--event", &"0".repeat(32)]);
    assert_eq!(out.status.code(), Some(1));
    host_ok(&data, &["verify"]);
}
