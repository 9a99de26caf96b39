//! Real crashes: a child process appends durable events in a loop from
//! several threads and reports each acknowledgement on stdout; the parent
//! kills it with SIGKILL at random moments, many times over. After every
//! restart each acknowledged event must be present exactly once, in the
//! order it was acknowledged per thread, and `verify` must pass.

use batpak_store::Region;
use batpak_store::{AppendOptions, Store};
use batpak_store::{Coordinate, Proposal};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const THREADS: usize = 4;

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// The child: appends forever until killed. Not a real test (ignored); the
/// parent runs it through the test harness with `--ignored --exact`.
#[test]
#[ignore]
fn child_append_loop() {
    let Ok(dir) = std::env::var("BATPAK_CRASH_DIR") else {
        return;
    };
    let round: u64 = std::env::var("BATPAK_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let store = Store::open(&dir).unwrap();
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let store = store.clone();
        let out = out.clone();
        handles.push(std::thread::spawn(move || {
            for n in 0u64.. {
                // Mix single durable appends (group commit) and batches.
                let size = if t % 2 == 0 { 1 } else { 1 + (n % 7) as usize };
                let keys: Vec<String> = (0..size)
                    .map(|i| format!("r{round}-t{t}-n{n}-{i}"))
                    .collect();
                let batch = keys
                    .iter()
                    .map(|k| {
                        Proposal::new(
                            Coordinate::new(format!("entity-{t}"), "crash").unwrap(),
                            "tick",
                            k.as_bytes().to_vec(),
                        )
                        .idempotency_key(k.clone())
                    })
                    .collect();
                store.append_batch(batch, AppendOptions::durable()).unwrap();
                let mut o = out.lock().unwrap();
                for k in &keys {
                    writeln!(o, "ACK {k}").unwrap();
                }
                o.flush().unwrap();
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn acknowledged_durable_events_survive_kill_9_exactly_once() {
    let dir = crate::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let rounds = 25;
    // The kill moments follow one seed, printed so a failure reproduces
    // (`BATPAK_SEED=<seed>`).
    let seed = std::env::var("BATPAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand_u64);
    eprintln!("kill -9 schedule seed {seed} (BATPAK_SEED={seed} reproduces it)");
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut acked: Vec<String> = Vec::new();
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "store_crash::child_append_loop",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("BATPAK_CRASH_DIR", dir.path())
            .env("BATPAK_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut keys = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(k) = line.strip_prefix("ACK ") {
                    keys.push(k.to_string());
                }
            }
            keys
        });
        std::thread::sleep(Duration::from_millis(30 + next() % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        acked.extend(reader.join().unwrap());

        let store = Store::open(dir.path()).unwrap();
        let events = store.scan(&Region::all(), 0, usize::MAX, false).unwrap();
        let mut seen: HashMap<String, u64> = HashMap::new();
        for e in &events {
            let k = String::from_utf8(e.payload.to_vec()).unwrap();
            assert!(
                seen.insert(k.clone(), e.sequence()).is_none(),
                "round {round}: {k} appears twice"
            );
        }
        for k in &acked {
            assert!(
                seen.contains_key(k),
                "round {round} (seed {seed}): acknowledged {k} is missing"
            );
        }
        // Per thread, acknowledged order is log order.
        let mut last: HashMap<String, u64> = HashMap::new();
        for k in &acked {
            if let Some(round_thread) = k.split("-n").next() {
                let s = seen[k];
                if let Some(prev) = last.insert(round_thread.to_string(), s) {
                    assert!(prev < s, "round {round}: {k} is out of order");
                }
            }
        }
        let report = store.verify().unwrap();
        assert!(report.is_sound(), "round {round}: {:?}", report.problems);
        store.close().unwrap();
    }
    let unique: HashSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len());
    assert!(
        acked.len() > rounds,
        "the child acknowledged too little to test anything: {}",
        acked.len()
    );
    eprintln!(
        "{} acknowledged events checked across {rounds} kill -9 rounds",
        acked.len()
    );
}
