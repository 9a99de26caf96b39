//! Parallel instances by key (issue 20, item 1): a reactor run as N
//! instances splits its region by entity with the cluster's partition hash
//! (FNV-1a 64 of the entity modulo N), each instance with its own plugin
//! instance and checkpoint. Every source event gets its reactions exactly
//! once, in order per entity, across `kill -9`; `status` shows each
//! instance; starting another N is refused; the hand-over to another N
//! (`reset NAME --instances M --plugin FILE`) loses and repeats nothing.

use crate::common::*;
use batpak_store::{partition_of, Store};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ENTITIES: u64 = 60;

/// `per_entity` `bench.in` events for each of [`ENTITIES`] entities,
/// interleaved, numbered from `from` within each entity.
fn inputs(from: u64, per_entity: u64) -> Vec<Value> {
    let mut v = Vec::new();
    for n in from..from + per_entity {
        for e in 0..ENTITIES {
            v.push(json!({
                "entity": format!("item:{e}"),
                "scope": "bench",
                "kind": "bench.in",
                "payload": {"n": n},
            }));
        }
    }
    v
}

fn run_args(data: &Path, instances: Option<u32>, until_idle: bool) -> Vec<String> {
    let mut v = vec![
        "--data".to_string(),
        data.display().to_string(),
        "run".into(),
        "--quiet".into(),
        "--max-batch".into(),
        "5".into(),
    ];
    if let Some(n) = instances {
        v.push("--instances".into());
        v.push(format!("passthrough={n}"));
    }
    if until_idle {
        v.push("--until-idle".into());
    }
    v.push(plugin("passthrough").display().to_string());
    v
}

fn spawn_run(data: &Path, instances: Option<u32>) -> Child {
    Command::new(bin())
        .args(run_args(data, instances, false))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting run")
}

/// `run --until-idle` to completion (bounded); returns its stderr.
fn run_until_idle(data: &Path, instances: Option<u32>) -> String {
    let mut child = Command::new(bin())
        .args(run_args(data, instances, true))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run --until-idle");
    let mut lines = Lines::new(child.stderr.take().expect("stderr"));
    let status = wait_exit(&mut child, Duration::from_secs(300));
    let err = lines.finish(Duration::from_secs(60));
    assert!(status.success(), "run --until-idle failed: {err}");
    err
}

/// Every `bench.in` has exactly one `bench.out` caused by it, on its
/// entity with its payload, and each entity's reactions are in the order
/// of their sources. Returns how many inputs there were.
fn assert_exactly_once_in_order(data: &Path) -> usize {
    let all = all_events(data);
    let mut ids = HashSet::new();
    for e in &all {
        assert!(
            ids.insert(e["id"].as_str().unwrap().to_string()),
            "duplicate id {e}"
        );
    }
    let inputs: HashMap<&str, &Value> = all
        .iter()
        .filter(|e| e["kind"] == "bench.in")
        .map(|e| (e["id"].as_str().unwrap(), e))
        .collect();
    let mut caused: HashMap<&str, u32> = HashMap::new();
    let mut last_n: HashMap<&str, i64> = HashMap::new();
    for out in all.iter().filter(|e| e["kind"] == "bench.out") {
        let cause = out["causation"].as_str().expect("a reaction has a cause");
        let src = inputs
            .get(cause)
            .unwrap_or_else(|| panic!("cause of {out} is no input"));
        assert_eq!(out["entity"], src["entity"]);
        assert_eq!(out["payload"], src["payload"]);
        *caused.entry(cause).or_default() += 1;
        // Per entity, reactions appear in the order of their sources.
        let entity = out["entity"].as_str().unwrap();
        let n = src["payload"]["n"].as_i64().unwrap();
        let prev = last_n.insert(entity, n).unwrap_or(-1);
        assert!(n > prev, "{entity}: reaction to n={n} after n={prev}");
    }
    for id in inputs.keys() {
        assert_eq!(caused.get(id).copied().unwrap_or(0), 1, "input {id}");
    }
    inputs.len()
}

/// The checkpoints of reactor `passthrough` as (cursor, position), with
/// the store opened directly (no host runs).
fn checkpoints(data: &Path) -> Vec<(String, u64, bool)> {
    let store = Store::open(data).expect("open the store");
    let mut v: Vec<(String, u64, bool)> = store
        .checkpoints()
        .into_iter()
        .filter(|c| c.cursor.starts_with("reactor.passthrough"))
        .map(|c| {
            let live = c.region != batpak_runtime::RETIRED_REGION;
            (c.cursor, c.sequence, live)
        })
        .collect();
    store.close().unwrap();
    v.sort();
    v
}

fn wait_status(data: &Path, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = host(data, &["status", "--json"]);
        if out.status.success() {
            let v: Vec<Value> = serde_json::from_slice(&out.stdout).expect("status JSON");
            if pred(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "never {what}: {v:?}");
        } else {
            assert!(
                Instant::now() < deadline,
                "status never answered: {}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop_run(mut child: Child) {
    sigterm(&child);
    let st = wait_exit(&mut child, Duration::from_secs(60));
    assert!(st.success(), "run exited {st:?}");
}

#[test]
fn two_instances_split_by_entity_and_react_exactly_once_in_order_across_kill_minus_nine() {
    let dir = tempdir();
    let data = dir.path().join("data");
    // Both shards have entities.
    let shard_sizes: Vec<usize> = (0..2)
        .map(|i| {
            (0..ENTITIES)
                .filter(|e| partition_of(&format!("item:{e}"), 2) == i)
                .count()
        })
        .collect();
    assert!(shard_sizes.iter().all(|&n| n > 0), "{shard_sizes:?}");

    append(&data, &inputs(0, 20));
    for (round, delay) in [150u64, 400, 800].into_iter().enumerate() {
        let mut child = spawn_run(&data, Some(2));
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("kill -9");
        let st = child.wait().expect("reaping run");
        eprintln!("round {round}: killed after {delay} ms ({st})");
        append(&data, &inputs(20 + 10 * round as u64, 10));
    }
    let err = run_until_idle(&data, Some(2));
    assert!(
        err.contains("summary | passthrough#0/2") && err.contains("summary | passthrough#1/2"),
        "{err}"
    );
    assert_eq!(
        assert_exactly_once_in_order(&data),
        (ENTITIES * 50) as usize
    );

    // Each instance has its own checkpoint, both at the head: both worked.
    let cps = checkpoints(&data);
    let names: Vec<&str> = cps.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        ["reactor.passthrough.0-of-2", "reactor.passthrough.1-of-2"]
    );
    assert!(cps.iter().all(|c| c.1 > 0 && c.2), "{cps:?}");

    // `status` shows each instance with its position and lag.
    append(&data, &inputs(50, 2));
    let child = spawn_run(&data, Some(2));
    let list = wait_status(&data, "both instances caught up", |v| {
        v.len() == 2
            && v.iter()
                .enumerate()
                .all(|(i, r)| r["lag"] == 0 && r["events_in"] == json!(2 * shard_sizes[i] as u64))
    });
    for (i, r) in list.iter().enumerate() {
        assert_eq!(r["name"], "passthrough");
        assert_eq!(r["instance"], json!({"index": i, "count": 2}), "{r}");
        assert!(r["position"].as_u64().unwrap() > 0);
        assert_eq!(
            r["events_in"].as_u64().unwrap(),
            2 * shard_sizes[i] as u64,
            "instance {i} handled its shard's new events: {r}"
        );
    }
    let table = String::from_utf8_lossy(&host_ok(&data, &["status"]).stdout).into_owned();
    assert!(
        table.contains("passthrough#0/2") && table.contains("passthrough#1/2"),
        "{table}"
    );
    // A bare name where one instance is meant is refused naming them.
    let out = host(&data, &["pause", "passthrough"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("passthrough#0/2, passthrough#1/2"),
        "{}",
        stderr(&out)
    );
    stop_run(child);
    assert_exactly_once_in_order(&data);
}

#[test]
fn changing_the_number_of_instances_is_refused_and_the_hand_over_loses_and_repeats_nothing() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let wasm = plugin("passthrough").display().to_string();
    append(&data, &inputs(0, 10));
    run_until_idle(&data, Some(2));

    // Another count than the checkpoints record: refused, naming the fix.
    let out = host(
        &data,
        &[
            "run",
            "--quiet",
            "--until-idle",
            "--instances",
            "passthrough=3",
            &wasm,
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("checkpoints record reactor.passthrough.0-of-2 at")
            && err.contains("batpak-host reset passthrough --instances 3 --plugin FILE"),
        "{err}"
    );
    // One instance (no flag) is another count too.
    let out = host(&data, &["run", "--quiet", "--until-idle", &wasm]);
    assert!(
        stderr(&out).contains("run asks for 1 instance(s)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        events_of(&data, "bench.out").len(),
        (ENTITIES * 10) as usize
    );

    // Hand-over 2 -> 3, more input, run with 3.
    let out = host_ok(
        &data,
        &[
            "reset",
            "passthrough",
            "--instances",
            "3",
            "--plugin",
            &wasm,
        ],
    );
    let h: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((h["from"].clone(), h["to"].clone()), (json!([2]), json!(3)));
    assert_eq!(h["retired"].as_array().unwrap().len(), 2);
    append(&data, &inputs(10, 10));
    run_until_idle(&data, Some(3));
    assert_eq!(
        assert_exactly_once_in_order(&data),
        (ENTITIES * 20) as usize
    );

    // A hand-over with the instances at different positions is refused:
    // instance 0 paused, then more input handled by the others.
    let child = spawn_run(&data, Some(3));
    wait_status(&data, "three instances", |v| v.len() == 3);
    host_ok(&data, &["pause", "passthrough#0/3"]);
    append_while_running(&data, &inputs(20, 5));
    wait_status(&data, "the others caught up", |v| {
        v[0]["state"] == "paused"
            && v.iter()
                .skip(1)
                .all(|r| r["lag"] == 0 && r["state"] == "running")
    });
    stop_run(child);
    let out = host(
        &data,
        &[
            "reset",
            "passthrough",
            "--instances",
            "1",
            "--plugin",
            &wasm,
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("not at one position") && err.contains("run --until-idle"),
        "{err}"
    );
    // Doing what it says: every instance catches up, then the hand-over.
    run_until_idle(&data, Some(3));
    host_ok(
        &data,
        &[
            "reset",
            "passthrough",
            "--instances",
            "1",
            "--plugin",
            &wasm,
        ],
    );
    append(&data, &inputs(25, 5));
    run_until_idle(&data, None);
    assert_eq!(
        assert_exactly_once_in_order(&data),
        (ENTITIES * 30) as usize
    );
    let cps = checkpoints(&data);
    let live: Vec<&str> = cps.iter().filter(|c| c.2).map(|c| c.0.as_str()).collect();
    assert_eq!(live, ["reactor.passthrough"], "{cps:?}");
    // The hand-overs are recorded: 3 started + 2 retired, then 1 + 3.
    assert_eq!(events_of(&data, "batpak.reactor.instances").len(), 9);
}

/// Appends through the running host (the store is held by `run`).
fn append_while_running(data: &Path, events: &[Value]) {
    append(data, events);
}

/// The passthrough component, new digest per `k` (see
/// [`passthrough_variant`]).
fn variant(k: u32) -> Vec<u8> {
    passthrough_variant("instances-test", k)
}

#[test]
fn swap_by_name_swaps_every_instance_and_loses_nothing() {
    let dir = tempdir();
    let data = dir.path().join("data");
    append(&data, &inputs(0, 10));
    let child = spawn_run(&data, Some(2));
    let before = wait_status(&data, "both instances caught up", |v| {
        v.len() == 2 && v.iter().all(|r| r["lag"] == 0 && r["state"] == "running")
    });
    let v2 = dir.path().join("v2.wasm");
    std::fs::write(&v2, variant(2)).unwrap();
    // Proven first on the last handled events of every instance.
    let out = host_ok(
        &data,
        &[
            "swap",
            "passthrough",
            v2.to_str().unwrap(),
            "--shadow",
            "40",
        ],
    );
    assert!(stderr(&out).contains("40 identical"), "{}", stderr(&out));
    let outcome: Value = serde_json::from_slice(&out.stdout).expect("outcome JSON");
    let new = outcome["new_digest"].as_str().unwrap().to_string();
    assert_ne!(before[0]["digest"], new.as_str());
    // Every instance swaps at its own batch boundary.
    wait_status(&data, "every instance swapped", |v| {
        v.len() == 2
            && v.iter().all(|r| {
                r["digest"] == new.as_str() && r["last_swap"]["new_digest"] == new.as_str()
            })
    });
    append(&data, &inputs(10, 5));
    wait_status(&data, "the new events handled", |v| {
        v.iter().all(|r| r["lag"] == 0)
            && v.iter()
                .map(|r| r["events_in"].as_u64().unwrap())
                .sum::<u64>()
                == ENTITIES * 15
    });
    stop_run(child);
    assert_eq!(
        assert_exactly_once_in_order(&data),
        (ENTITIES * 15) as usize
    );
    // Each instance recorded its swap.
    assert_eq!(events_of(&data, "batpak.plugin.swapped").len(), 2);
}

#[test]
fn under_watch_removing_the_file_stops_every_instance_and_putting_it_back_starts_every_one() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let pd = dir.path().join("plugins");
    std::fs::create_dir_all(&pd).unwrap();
    let file = pd.join("passthrough.wasm");
    let put = |bytes: &[u8]| {
        let tmp = pd.join(".incoming");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    put(&std::fs::read(plugin("passthrough")).unwrap());
    append(&data, &inputs(0, 5));
    let mut child = Command::new(bin())
        .arg("--data")
        .arg(&data)
        .args(["run", "--watch", "--quiet", "--instances", "passthrough=2"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run --watch");
    wait_status(&data, "both instances caught up", |v| {
        v.len() == 2 && v.iter().all(|r| r["lag"] == 0 && r["state"] == "running")
    });
    std::fs::remove_file(&file).unwrap();
    wait_status(&data, "both instances stopped", |v| {
        v.len() == 2 && v.iter().all(|r| r["state"] == "paused")
    });
    append(&data, &inputs(5, 5));
    put(&std::fs::read(plugin("passthrough")).unwrap());
    wait_status(&data, "both instances running and caught up again", |v| {
        v.len() == 2
            && v.iter().all(|r| r["state"] == "running" && r["lag"] == 0)
            && v.iter()
                .map(|r| r["events_in"].as_u64().unwrap())
                .sum::<u64>()
                == ENTITIES * 5
    });
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(60)).success());
    assert_eq!(
        assert_exactly_once_in_order(&data),
        (ENTITIES * 10) as usize
    );
}
