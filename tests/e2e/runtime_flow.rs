//! The example system end to end: orders → inventory → low-stock + shipping,
//! with one gate denial, through the real binary and real plugins.

use crate::common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn by_id(events: &[Value]) -> HashMap<String, Value> {
    events
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

#[test]
fn example_flow_produces_gated_reactions_with_causation_and_lineage() {
    let dir = tempdir();
    let data = dir.path().join("data");
    // Stock: 2 gizmos. Six orders: two reserved (remaining 1, then 0), four
    // rejected.
    let receipts = append(
        &data,
        &(1..=6).map(|n| order(n, "gizmo", 1)).collect::<Vec<_>>(),
    );
    assert_eq!(receipts.len(), 6);
    let cfg = write_file(
        dir.path(),
        "plugins.json",
        r#"{"plugins": {"low-stock": {"grant_emits": ["alert.low-stock"]}, "inventory": {"config": {"stock": {"gizmo": 2}}}}}"#,
    );
    let (inv, low, ship) = (plugin("inventory"), plugin("low_stock"), plugin("shipping"));
    let run = host_ok(
        &data,
        &[
            "run",
            "--until-idle",
            "--plugin-config",
            cfg.to_str().unwrap(),
            inv.to_str().unwrap(),
            low.to_str().unwrap(),
            ship.to_str().unwrap(),
        ],
    );
    let err = stderr(&run);
    assert!(err.contains("summary | inventory: in 6, out 6"), "{err}");

    let all = all_events(&data);
    let ids = by_id(&all);
    let orders: Vec<&Value> = all.iter().filter(|e| e["kind"] == "order.placed").collect();
    assert_eq!(orders.len(), 6);

    // Inventory: exactly one reaction per order, caused by it, same
    // correlation, stamped with lineage.
    let inspect = host_ok(&data, &["inspect", inv.to_str().unwrap()]);
    let inspected: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let digest = inspected["digest"].as_str().unwrap().to_string();
    let mut reserved = Vec::new();
    for o in &orders {
        let reactions: Vec<&Value> = all
            .iter()
            .filter(|e| e["causation"] == o["id"] && e["meta"]["reactor"] == "inventory")
            .collect();
        assert_eq!(
            reactions.len(),
            1,
            "order {} has {} inventory reactions",
            o["id"],
            reactions.len()
        );
        let r = reactions[0];
        assert_eq!(r["correlation"], o["correlation"]);
        assert_eq!(r["meta"]["component"], digest.as_str());
        assert_eq!(r["meta"]["reactor_version"], "0.1.0");
        if r["kind"] == "inventory.reserved" {
            reserved.push(r.clone());
        } else {
            assert_eq!(r["kind"], "inventory.rejected");
        }
    }
    assert_eq!(reserved.len(), 2);

    // Shipping: one shipment per reservation, on the order's entity.
    let shipments: Vec<&Value> = all
        .iter()
        .filter(|e| e["kind"] == "shipment.requested")
        .collect();
    assert_eq!(shipments.len(), 2);
    for s in &shipments {
        let cause = &ids[s["causation"].as_str().unwrap()];
        assert_eq!(cause["kind"], "inventory.reserved");
        assert_eq!(s["correlation"], cause["correlation"]);
        assert_eq!(s["entity"], cause["payload"]["order"]);
        assert_eq!(s["meta"]["reactor"], "shipping");
    }

    // Low stock: an alert for remaining 1 and for remaining 0; the restock
    // request is denied (not granted) and the denial recorded.
    let alerts: Vec<&Value> = all
        .iter()
        .filter(|e| e["kind"] == "alert.low-stock")
        .collect();
    assert_eq!(alerts.len(), 2);
    assert!(all
        .iter()
        .all(|e| e["kind"] != "inventory.restock-requested"));
    let denials: Vec<&Value> = all
        .iter()
        .filter(|e| e["kind"] == "batpak.gate.denied")
        .collect();
    assert_eq!(denials.len(), 1, "{denials:?}");
    let d = denials[0];
    assert_eq!(d["entity"], "reactor:low-stock");
    assert_eq!(d["scope"], "batpak");
    assert_eq!(d["payload"]["gate"], "capability");
    assert_eq!(d["payload"]["code"], "kind-not-granted");
    assert_eq!(d["payload"]["kind"], "inventory.restock-requested");
    assert_eq!(d["payload"]["proposer"], "reactor:low-stock@0.1.0");
    let cause = &ids[d["causation"].as_str().unwrap()];
    assert_eq!(cause["kind"], "inventory.reserved");
    assert_eq!(cause["payload"]["remaining"], 0);
    assert_eq!(d["correlation"], cause["correlation"]);

    // Checkpoints: each reactor's names the last event it consumed.
    let checkpoints: Vec<&Value> = all
        .iter()
        .filter(|e| e["kind"] == "batpak.cursor.checkpoint")
        .collect();
    let last_cp = |cursor: &str| {
        checkpoints
            .iter()
            .rev()
            .find(|c| c["payload"]["cursor"] == cursor)
            .map(|c| (*c).clone())
            .unwrap_or_else(|| panic!("no checkpoint for {cursor}"))
    };
    assert_eq!(
        last_cp("reactor.inventory")["payload"]["event_id"],
        orders[5]["id"]
    );
    let last_reserved = reserved.iter().max_by_key(|r| r["seq"].as_u64()).unwrap();
    assert_eq!(
        last_cp("reactor.shipping")["payload"]["event_id"],
        last_reserved["id"]
    );

    // Running again changes nothing but (at most) checkpoints.
    let before = all
        .iter()
        .filter(|e| e["kind"] != "batpak.cursor.checkpoint")
        .count();
    host_ok(
        &data,
        &[
            "run",
            "--until-idle",
            "--plugin-config",
            cfg.to_str().unwrap(),
            inv.to_str().unwrap(),
            low.to_str().unwrap(),
            ship.to_str().unwrap(),
        ],
    );
    let again = all_events(&data);
    assert_eq!(
        again
            .iter()
            .filter(|e| e["kind"] != "batpak.cursor.checkpoint")
            .count(),
        before
    );
    host_ok(&data, &["verify"]);
}

#[test]
fn inspect_reports_descriptor_world_and_digest() {
    let dir = tempdir();
    let p = plugin("low_stock");
    let out = host_ok(&dir.path().join("nope"), &["inspect", p.to_str().unwrap()]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The Rust SDK builds against the current contract, and inspect says
    // which one the component targets and which ones this host offers.
    assert_eq!(v["world"], "batpak:reactor/reactor-plugin@0.2.0");
    assert_eq!(v["component"]["targets"], "batpak:reactor@0.2.0");
    assert_eq!(v["wit_version"], "0.2.0");
    assert_eq!(
        v["host_offers"],
        serde_json::json!(["batpak:reactor@0.1.0", "batpak:reactor@0.2.0"])
    );
    assert!(v["component"]["exports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "batpak:reactor/reactor@0.2.0"));
    assert!(v["component"]["imports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "batpak:reactor/host@0.2.0"));
    assert_eq!(v["descriptor"]["name"], "low-stock");
    assert_eq!(v["descriptor"]["canal"], "cursor-guaranteed");
    assert_eq!(v["descriptor"]["region"]["kinds"][0], "inventory.reserved");
    assert_eq!(v["init"]["ok"], true);
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(v["digest"], blake3::hash(&bytes).to_hex().to_string());
    // inspect does not need (or create) a store.
    assert!(!dir.path().join("nope").exists());
}

#[test]
fn plugin_config_errors_are_usage_errors_naming_the_field() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let cfg = write_file(
        dir.path(),
        "bad.json",
        r#"{"plugins": {"inventory": {"grant_emit": []}}}"#,
    );
    let inv = plugin("inventory");
    let out = host(
        &data,
        &[
            "run",
            "--until-idle",
            "--plugin-config",
            cfg.to_str().unwrap(),
            inv.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("grant_emit"), "{}", stderr(&out));
    let cfg = write_file(dir.path(), "bad2.json", r#"{"default": {}}"#);
    let out = host(
        &data,
        &[
            "run",
            "--until-idle",
            "--plugin-config",
            cfg.to_str().unwrap(),
            inv.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("default"), "{}", stderr(&out));
}

#[test]
fn a_hand_written_wat_reactor_runs() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let wat = write_file(dir.path(), "null.wat", NULL_REACTOR_WAT);
    let events: Vec<Value> = (0..5)
        .map(|i| serde_json::json!({"entity": format!("b:{i}"), "scope": "s", "kind": "bench.in", "payload": {}}))
        .collect();
    let receipts = append(&data, &events);
    let out = host_ok(&data, &["run", "--until-idle", wat.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("summary | null: in 5, out 0"),
        "{}",
        stderr(&out)
    );
    // Nothing was proposed, but the checkpoint still moved past the input.
    let cps = events_of(&data, "batpak.cursor.checkpoint");
    let last = cps.last().expect("a checkpoint");
    assert_eq!(last["payload"]["cursor"], "reactor.null");
    assert_eq!(last["payload"]["event_id"], receipts[4]["id"]);
}

/// Generous bounds: a loaded CI machine is slow, but never this slow; a
/// hang fails instead of blocking the suite.
const WAIT: Duration = Duration::from_secs(120);

#[test]
fn sigterm_finishes_the_batch_commits_and_exits_zero() {
    let dir = tempdir();
    let data = dir.path().join("data");
    append(
        &data,
        &(1..=10).map(|n| order(n, "widget", 1)).collect::<Vec<_>>(),
    );
    let inv = plugin("inventory");
    let mut child = Command::new(bin())
        .arg("--data")
        .arg(&data)
        .args(["run", inv.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::new(child.stderr.take().unwrap());
    // stderr is a pipe, so the status comes as plain lines.
    lines.wait_for("showing the work done", WAIT, |l| {
        l.starts_with("status | ") && l.contains("inventory: in 10, out 10")
    });
    // `parked` works while `run` owns the store (a lock-free read).
    let listed = host(&data, &["parked"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(listed.stdout.is_empty());
    sigterm(&child);
    let status = wait_exit(&mut child, WAIT);
    let text = lines.finish(WAIT);
    assert!(status.success(), "exit {status}: {text}");
    assert!(
        text.contains("summary | inventory: in 10, out 10"),
        "{text}"
    );
    // Off a terminal the status is plain text: no cursor movement.
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in piped stderr: {text:?}"
    );
    // The store was closed cleanly and holds one reaction per order.
    let all = all_events(&data);
    assert_eq!(
        all.iter()
            .filter(|e| e["meta"]["reactor"] == "inventory")
            .count(),
        10
    );
    host_ok(&data, &["verify"]);
}

/// The null reactor with an `init` that spins until its time limit: loading
/// it takes as long as `--timeout-ms` says.
fn slow_loading_wat() -> String {
    let spin = NULL_REACTOR_WAT.replace(
        r#"(func (export "init") (param i32 i32) (result i32) (global.set $bump (i32.const 65536)) (i32.const 3072))"#,
        r#"(func (export "init") (param i32 i32) (result i32) (loop $spin (br $spin)) (i32.const 3072))"#,
    );
    assert_ne!(
        spin, NULL_REACTOR_WAT,
        "the null reactor's init changed; update this test"
    );
    spin
}

#[test]
fn sigterm_while_plugins_load_exits_zero_and_starts_nothing() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let wat = write_file(dir.path(), "slow.wat", &slow_loading_wat());
    let mut child = Command::new(bin())
        .arg("--data")
        .arg(&data)
        .args(["run", "--log-level", "debug", "--timeout-ms", "600000"])
        .arg(&wat)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::new(child.stderr.take().unwrap());
    lines.wait_for("announcing the load", WAIT, |l| {
        l.contains("[run] debug: loading") && l.contains("slow.wat")
    });
    sigterm(&child);
    // Well before the plugin's 10-minute limit: the load is abandoned.
    let status = wait_exit(&mut child, WAIT);
    let text = lines.finish(WAIT);
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(
        text.contains("stopped by a signal while loading plugins; nothing was started"),
        "{text}"
    );
    assert!(!data.join("segments").exists(), "the store was not opened");
}

#[test]
fn inspect_exits_nonzero_when_init_refuses_its_config() {
    let dir = tempdir();
    let p = plugin("hostile");
    let out = host(
        &dir.path().join("nope"),
        &[
            "inspect",
            p.to_str().unwrap(),
            "--config",
            r#"{"fail_init": true}"#,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // The report is still printed, saying why.
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["init"]["ok"], false);
    assert!(
        stderr(&out).contains("init() refused its config: hostile: init refused by config"),
        "{}",
        stderr(&out)
    );
    // The same plugin with an acceptable config passes.
    host_ok(&dir.path().join("nope"), &["inspect", p.to_str().unwrap()]);
}

/// `n` orders for widgets, reserved by inventory and shipped by shipping,
/// which logs one `info` line per shipment.
fn shipping_run(data: &Path, dir: &Path, n: u64, extra: &[&str], cfg: &str) -> String {
    append(
        data,
        &(1..=n).map(|i| order(i, "widget", 1)).collect::<Vec<_>>(),
    );
    let cfg = write_file(dir, "cfg.json", cfg);
    let (inv, ship) = (plugin("inventory"), plugin("shipping"));
    let mut args = vec![
        "run",
        "--until-idle",
        "--plugin-config",
        cfg.to_str().unwrap(),
    ];
    args.extend(extra);
    args.extend([inv.to_str().unwrap(), ship.to_str().unwrap()]);
    stderr(&host_ok(data, &args))
}

#[test]
fn plugin_log_lines_are_rate_limited_and_the_excess_is_counted() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let n = 400;
    let err = shipping_run(
        &data,
        dir.path(),
        n,
        &["--log-rate", "5"],
        r#"{"plugins": {"inventory": {"config": {"stock": {"widget": 1000}}}}}"#,
    );
    assert!(
        err.contains(&format!("summary | shipping: in {n}, out {n}")),
        "{err}"
    );
    let printed = err
        .lines()
        .filter(|l| l.starts_with("[shipping] info: shipping 1 x widget"))
        .count() as u64;
    let suppressed: u64 = err
        .lines()
        .filter(|l| l.starts_with("[shipping] warn: ") && l.contains("suppressed"))
        .map(|l| {
            l["[shipping] warn: ".len()..]
                .split(' ')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("a count in {l}"))
        })
        .sum();
    assert!(
        printed < n,
        "nothing was suppressed: {printed} lines printed"
    );
    assert_eq!(
        printed + suppressed,
        n,
        "every line printed or counted:\n{err}"
    );
}

#[test]
fn a_reactor_log_level_in_plugin_config_beats_the_flag() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let err = shipping_run(
        &data,
        dir.path(),
        20,
        &["--log-rate", "0", "--log-level", "info"],
        r#"{"plugins": {"inventory": {"config": {"stock": {"widget": 1000}}}, "shipping": {"log_level": "warn"}}}"#,
    );
    assert!(err.contains("summary | shipping: in 20, out 20"), "{err}");
    assert!(!err.contains("[shipping] info"), "{err}");
    // The flag still applies to the others.
    assert!(err.contains("[run] info: loaded inventory"), "{err}");
}

/// Removes terminal control sequences (`ESC [ … letter`) from `s`.
fn strip_csi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn on_a_terminal_the_status_redraws_in_place_within_80_columns() {
    // `script` (util-linux) runs the binary on a pseudo-terminal and copies
    // what it draws to its own stdout.
    let dir = tempdir();
    let data = dir.path().join("data");
    append(
        &data,
        &(1..=200).map(|n| order(n, "widget", 1)).collect::<Vec<_>>(),
    );
    let cfg = write_file(
        dir.path(),
        "cfg.json",
        r#"{"plugins": {"inventory": {"config": {"stock": {"widget": 1000}}}}}"#,
    );
    let command = format!(
        "stty cols 200 rows 40; exec '{}' --data '{}' run --until-idle --log-level warn --plugin-config '{}' '{}' '{}'",
        bin(),
        data.display(),
        cfg.display(),
        plugin("inventory").display(),
        plugin("shipping").display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running script (util-linux)");
    let mut out = Lines::new(child.stdout.take().unwrap());
    let status = wait_exit(&mut child, WAIT);
    let raw = out.finish(WAIT);
    assert!(status.success(), "exit {status}: {raw:?}");
    assert!(raw.contains("\u{1b}["), "no redraw on a terminal: {raw:?}");
    let text = strip_csi(&raw);
    assert!(
        text.contains("batpak-host run: 2 reactor(s)"),
        "no live status: {text:?}"
    );
    assert!(
        !text.contains("status | "),
        "plain lines on a terminal: {text:?}"
    );
    assert!(
        text.contains("summary | inventory: in 200, out 200"),
        "{text:?}"
    );
    // indicatif fills each status line to the terminal's width (200 here,
    // so nothing of ours is hidden by its own cut) and lets the terminal
    // wrap to the next row: a redraw is a run of 200-column rows, each one
    // whole status line whose text takes at most 80 of them.
    let rows: Vec<String> = text
        .split(['\r', '\n'])
        .filter(|p| !p.trim().is_empty())
        .filter(|p| !p.starts_with("summary | ") && !p.starts_with('['))
        .flat_map(|p| {
            let chars: Vec<char> = p.chars().collect();
            chars
                .chunks(200)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
        })
        .filter(|r| !r.trim().is_empty())
        .collect();
    assert!(!rows.is_empty(), "{text:?}");
    for row in &rows {
        assert!(
            ["batpak-host run: ", "inventory ", "shipping "]
                .iter()
                .any(|p| row.starts_with(p))
                && row.trim_end().chars().count() <= 80,
            "a status row that is not one whole line of at most 80 columns: {row:?}\nall rows: {rows:#?}"
        );
    }
}
