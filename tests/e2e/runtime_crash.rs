//! Effectively-once under `kill -9`: run is killed at random moments many
//! times while orders keep arriving; in the end every order has exactly one
//! reaction per reactor, none is missing or duplicated, the checkpoints are
//! consistent and the log verifies.

use crate::common::*;
use batpak_store::Store;
use serde_json::Value;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

/// xorshift64*: reproducible randomness without a dependency; the seed is
/// printed so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn kill_minus_nine_never_loses_or_duplicates_a_reaction() {
    let seed = std::env::var("BATPAK_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test seed: {seed} (set BATPAK_CRASH_SEED to repeat)");
    let mut rng = Rng(seed);
    let rounds: u64 = std::env::var("BATPAK_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);

    let dir = tempdir();
    let data = dir.path().join("data");
    let cfg = write_file(
        dir.path(),
        "plugins.json",
        r#"{"plugins": {"inventory": {"config": {"stock": {"widget": 1000000}}}}}"#,
    );
    let (inv, ship) = (plugin("inventory"), plugin("shipping"));
    let run_args = |until_idle: bool| {
        let mut v = vec![
            "--data".to_string(),
            data.display().to_string(),
            "run".into(),
            "--quiet".into(),
            "--max-batch".into(),
            "7".into(),
            "--plugin-config".into(),
            cfg.display().to_string(),
        ];
        if until_idle {
            v.push("--until-idle".into());
        }
        v.push(inv.display().to_string());
        v.push(ship.display().to_string());
        v
    };

    let mut next_order = 1u64;
    for round in 0..rounds {
        // New orders arrive between runs (one process owns the store).
        let n = 20 + rng.next() % 100;
        let batch: Vec<Value> = (next_order..next_order + n)
            .map(|i| order(i, "widget", 1))
            .collect();
        next_order += n;
        append(&data, &batch);

        let mut child = Command::new(bin())
            .args(run_args(false))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting run");
        // Half the kills land early, while the run is loading and catching
        // up (appending reactions); the rest anywhere, idle included.
        let delay = if rng.next().is_multiple_of(2) {
            rng.next() % 150
        } else {
            rng.next() % 500
        };
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("kill -9"); // SIGKILL on Unix
        let status = child.wait().expect("reaping run");
        eprintln!("round {round}: {n} new orders, killed after {delay} ms ({status})");
    }

    // The final run catches up and exits; bounded, so a hang fails the
    // test (with the seed to repeat it) instead of blocking the suite.
    let mut child = Command::new(bin())
        .args(run_args(true))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("final run");
    let mut lines = Lines::new(child.stderr.take().expect("stderr"));
    let status = wait_exit(&mut child, Duration::from_secs(300));
    let err = lines.finish(Duration::from_secs(60));
    assert!(status.success(), "final run failed (seed {seed}): {err}");

    let all = all_events(&data);
    let orders: Vec<&Value> = all.iter().filter(|e| e["kind"] == "order.placed").collect();
    assert_eq!(orders.len() as u64, next_order - 1, "seed {seed}");
    let mut ids = std::collections::HashSet::new();
    for e in &all {
        assert!(
            ids.insert(e["id"].as_str().unwrap().to_string()),
            "duplicate id {}",
            e["id"]
        );
    }
    let mut by_cause: HashMap<(String, String), u32> = HashMap::new();
    for e in all
        .iter()
        .filter(|e| e["meta"]["reactor"].is_string() && e["causation"].is_string())
    {
        if e["kind"].as_str().unwrap().starts_with("batpak.") {
            continue;
        }
        *by_cause
            .entry((
                e["meta"]["reactor"].as_str().unwrap().into(),
                e["causation"].as_str().unwrap().into(),
            ))
            .or_default() += 1;
    }
    let reserved: Vec<&Value> = all
        .iter()
        .filter(|e| e["kind"] == "inventory.reserved")
        .collect();
    assert_eq!(
        reserved.len(),
        orders.len(),
        "every order reserved once (stock is ample)"
    );
    for o in &orders {
        let k = (
            "inventory".to_string(),
            o["id"].as_str().unwrap().to_string(),
        );
        assert_eq!(
            by_cause.get(&k),
            Some(&1),
            "order {} has {:?} inventory reactions (seed {seed})",
            o["id"],
            by_cause.get(&k)
        );
    }
    for r in &reserved {
        let k = (
            "shipping".to_string(),
            r["id"].as_str().unwrap().to_string(),
        );
        assert_eq!(
            by_cause.get(&k),
            Some(&1),
            "reservation {} has {:?} shipments (seed {seed})",
            r["id"],
            by_cause.get(&k)
        );
    }
    assert!(
        all.iter().all(|e| e["kind"] != "batpak.reactor.parked"),
        "nothing parked"
    );

    host_ok(&data, &["verify"]);
    // Checkpoints: each names an event that is really at its sequence, and
    // nothing the reactor consumes lies beyond it.
    let store = Store::open(&data).expect("open");
    for (cursor, kind) in [
        ("reactor.inventory", "order.placed"),
        ("reactor.shipping", "inventory.reserved"),
    ] {
        let cp = store
            .checkpoint(cursor)
            .unwrap_or_else(|| panic!("no checkpoint for {cursor}"));
        let at = store
            .get_by_sequence(cp.sequence)
            .unwrap()
            .expect("checkpointed event exists");
        assert_eq!(at.id(), cp.event_id);
        let last = all
            .iter()
            .filter(|e| e["kind"] == kind)
            .map(|e| e["seq"].as_u64().unwrap())
            .max()
            .unwrap();
        assert!(
            cp.sequence >= last,
            "{cursor} checkpoint {} is behind its last event {last}",
            cp.sequence
        );
    }
    store.close().unwrap();
}
