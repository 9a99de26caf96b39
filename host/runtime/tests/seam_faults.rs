//! The real runner over a log that fails: [`MemoryLog`] behind the seam
//! refuses commits, loses them (not applied, outcome unknown), applies them
//! and loses the reply (applied, outcome unknown), is unavailable, fails
//! reads and cuts waits short — scripted, and in seeded random schedules.
//! In every case each source event ends with its reactions exactly once,
//! the parked event with one parked record, and the checkpoint at the last
//! source event.
//!
//! `cargo test --release -p batpak-runtime --test seam_faults`; a random
//! schedule prints its seed, and `BATPAK_SEAM_SEED=N` replays it
//! (`BATPAK_SEAM_ROUNDS=N` runs more rounds).

use batpak_log::{CommitError, EventLog, Fault, FaultPlan, LogError, MemoryLog, Op, SharedLog};
use batpak_runtime::{
    cursor_id, Descriptor, FailurePolicy, LogLevel, ReactFailure, Reaction, Reactor, RunState,
    RunnerError, RunnerSettings,
};
use batpak_store::{CanalHandle, Coordinate, Event, EventId, Proposal, Region};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const NAME: &str = "doubler";
const PARKED_KIND: &str = "batpak.reactor.parked";

/// A latch the test opens; a reactor holding it waits (bounded) until then.
type Latch = Arc<(Mutex<bool>, Condvar)>;

/// Two reactions per `in` event (`<payload>#0`, `<payload>#1`), a failure
/// on `poison`; counts its calls per event.
struct Doubler {
    d: Descriptor,
    calls: Arc<Mutex<HashMap<EventId, u32>>>,
    hold: Option<Latch>,
}

impl Doubler {
    fn new() -> Doubler {
        let mut d = Descriptor::new(NAME, "1.0.0");
        d.region = Region::all().kinds(["in"]);
        d.emits = vec!["out".into()];
        Doubler {
            d,
            calls: Arc::default(),
            hold: None,
        }
    }
}

impl Reactor for Doubler {
    fn descriptor(&self) -> &Descriptor {
        &self.d
    }
    fn digest(&self) -> &str {
        "native-doubler"
    }
    fn react(&mut self, batch: &[Event]) -> Result<Vec<Reaction>, ReactFailure> {
        if let Some(l) = &self.hold {
            let (open, cv) = &**l;
            let g = open.lock().unwrap();
            let _ = cv
                .wait_timeout_while(g, Duration::from_secs(60), |o| !*o)
                .unwrap();
        }
        let mut out = Vec::new();
        for (i, e) in batch.iter().enumerate() {
            *self.calls.lock().unwrap().entry(e.id()).or_default() += 1;
            if &*e.payload == b"poison" {
                return Err(ReactFailure::at(i as u32, "poison payload"));
            }
            let c = e.coordinate();
            for k in 0..2 {
                let mut p = e.payload.to_vec();
                p.extend_from_slice(format!("#{k}").as_bytes());
                out.push(Reaction::new(i as u32, &c.entity, &c.scope, "out", p));
            }
        }
        Ok(out)
    }
}

fn settings() -> RunnerSettings {
    RunnerSettings {
        pull_wait: Duration::from_millis(20),
        max_batch: 8,
        policy: FailurePolicy {
            attempts: 2,
            backoff: Duration::from_millis(1),
            backoff_factor: 2,
            max_backoff: Duration::from_millis(20),
            ..FailurePolicy::default()
        },
        log_level: LogLevel::Error,
        ..RunnerSettings::default()
    }
}

/// Appends `in` events with these payloads (without faults); returns them.
fn put(log: &MemoryLog, payloads: &[&str]) -> Vec<(String, u64)> {
    let before = log.events().len();
    log.append(
        payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Proposal::new(
                    Coordinate::new(format!("e:{}", before + i), "t").unwrap(),
                    "in",
                    p.as_bytes().to_vec(),
                )
            })
            .collect(),
    )
    .unwrap();
    log.events()[before..]
        .iter()
        .map(|e| {
            (
                String::from_utf8_lossy(&e.payload).into_owned(),
                e.sequence(),
            )
        })
        .collect()
}

fn payloads(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn open(latch: &Latch) {
    let (open, cv) = &**latch;
    *open.lock().unwrap() = true;
    cv.notify_all();
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    // A bound only to turn a hang into a failure.
    let until = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < until, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a runner over `log` until it has handled everything, then stops it;
/// returns how it ended.
fn run_to_idle(log: &MemoryLog, reactor: Doubler) -> Result<(), RunnerError> {
    let shared: SharedLog = Arc::new(log.clone());
    let h = batpak_runtime::spawn(shared, Box::new(reactor), settings()).unwrap();
    let status = h.status().clone();
    wait_for("the runner to go idle or stop", || {
        status.is_idle_at(log.heads().durable)
    });
    Box::new(h).stop_and_join()
}

/// Every source event has its two reactions exactly once (the poisoned one
/// a single parked record instead), and the checkpoint is at the last one.
fn assert_exactly_once(log: &MemoryLog, sources: &[(String, u64)]) {
    let events = log.events();
    let mut outs: HashMap<EventId, Vec<String>> = HashMap::new();
    let mut parked: HashMap<EventId, u32> = HashMap::new();
    for e in &events {
        let Some(cause) = e.header.causation else {
            continue;
        };
        match e.kind() {
            "out" => outs
                .entry(cause)
                .or_default()
                .push(String::from_utf8_lossy(&e.payload).into_owned()),
            PARKED_KIND => *parked.entry(cause).or_default() += 1,
            _ => {}
        }
    }
    for (payload, seq) in sources {
        let id = events[*seq as usize - 1].id();
        let got = outs.get(&id).cloned().unwrap_or_default();
        if payload == "poison" {
            assert!(got.is_empty(), "poisoned event {seq} has reactions {got:?}");
            assert_eq!(parked.get(&id), Some(&1), "event {seq} parked once");
        } else {
            assert_eq!(
                got,
                vec![format!("{payload}#0"), format!("{payload}#1")],
                "event {seq} ({payload}): its reactions exactly once"
            );
            assert_eq!(parked.get(&id), None, "event {seq} not parked");
        }
    }
    let last = sources.last().expect("sources").1;
    let cp = log
        .checkpoint(&cursor_id(NAME))
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(cp.sequence, last, "checkpoint at the last source event");
    assert_eq!(cp.event_id, events[last as usize - 1].id());
}

fn only(calls: &Arc<Mutex<HashMap<EventId, u32>>>, log: &MemoryLog, sources: &[(String, u64)]) {
    let calls = calls.lock().unwrap();
    let events = log.events();
    for (_, seq) in sources {
        let id = events[*seq as usize - 1].id();
        assert_eq!(
            calls.get(&id),
            Some(&1),
            "event {seq} handed to the reactor once"
        );
    }
}

#[test]
fn commit_refused_stops_the_runner_and_a_restart_handles_each_event_once() {
    let log = MemoryLog::new();
    let p = payloads("a", 5);
    let sources = put(&log, &p.iter().map(String::as_str).collect::<Vec<_>>());
    log.inject(Op::Commit, Fault::Refuse);
    let r = run_to_idle(&log, Doubler::new());
    assert!(
        matches!(
            r,
            Err(RunnerError::Commit {
                source: CommitError::Refused(_),
                ..
            })
        ),
        "a refused commit stops the runner with a typed error: {r:?}"
    );
    assert!(
        log.events().iter().all(|e| e.kind() != "out"),
        "nothing landed"
    );
    run_to_idle(&log, Doubler::new()).unwrap();
    assert_exactly_once(&log, &sources);
}

#[test]
fn lost_commits_are_resolved_and_retried_without_calling_the_reactor_again() {
    let log = MemoryLog::new();
    let p = payloads("b", 20);
    let sources = put(&log, &p.iter().map(String::as_str).collect::<Vec<_>>());
    for _ in 0..3 {
        log.inject(Op::Commit, Fault::Lose);
    }
    let reactor = Doubler::new();
    let calls = reactor.calls.clone();
    run_to_idle(&log, reactor).unwrap();
    assert_exactly_once(&log, &sources);
    only(&calls, &log, &sources);
    assert_eq!(log.injected().len(), 3);
}

#[test]
fn commits_landed_with_the_reply_lost_are_not_repeated() {
    let log = MemoryLog::new();
    let p = payloads("c", 20);
    let sources = put(&log, &p.iter().map(String::as_str).collect::<Vec<_>>());
    for _ in 0..3 {
        log.inject(Op::Commit, Fault::LoseReply);
    }
    // The reads that resolve the first one fail twice too: injected once
    // the runner has started (and holds its first batch), so they are the
    // first lookups after its start.
    let latch: Latch = Arc::default();
    let mut reactor = Doubler::new();
    reactor.hold = Some(latch.clone());
    let calls = reactor.calls.clone();
    let shared: SharedLog = Arc::new(log.clone());
    let h = batpak_runtime::spawn(shared, Box::new(reactor), settings()).unwrap();
    log.inject(Op::Lookup, Fault::Unavailable);
    log.inject(Op::Lookup, Fault::Unavailable);
    open(&latch);
    let status = h.status().clone();
    wait_for("the runner to go idle", || {
        status.is_idle_at(log.heads().durable)
    });
    Box::new(h).stop_and_join().unwrap();
    let lookups = log
        .injected()
        .iter()
        .filter(|(op, _)| *op == Op::Lookup)
        .count();
    assert_eq!(lookups, 2, "the resolving reads failed and were retried");
    assert_exactly_once(&log, &sources);
    only(&calls, &log, &sources);
    // No checkpoint-only commit was needed to recover: 20 events in
    // batches of 8 → 3 commits, each landed once (the fence moved 3 times,
    // plus the stop's lazy checkpoint when one was pending).
    let fence = log.fence(&cursor_id(NAME)).unwrap();
    assert!(fence.0 <= 4, "each commit landed once: fence {}", fence.0);
}

#[test]
fn an_unavailable_log_is_retried_for_commits_and_reads() {
    let log = MemoryLog::new();
    let p = payloads("d", 12);
    let sources = put(&log, &p.iter().map(String::as_str).collect::<Vec<_>>());
    for _ in 0..3 {
        log.inject(Op::Commit, Fault::Unavailable);
        log.inject(Op::Read, Fault::Unavailable);
    }
    let reactor = Doubler::new();
    let calls = reactor.calls.clone();
    run_to_idle(&log, reactor).unwrap();
    assert_exactly_once(&log, &sources);
    only(&calls, &log, &sources);
}

#[test]
fn a_failed_read_stops_the_runner_and_a_restart_handles_each_event_once() {
    let log = MemoryLog::new();
    let p = payloads("e", 6);
    let sources = put(&log, &p.iter().map(String::as_str).collect::<Vec<_>>());
    log.inject(Op::Read, Fault::Fail);
    let r = run_to_idle(&log, Doubler::new());
    // The first read is the listing of parked events to replay.
    assert!(
        matches!(
            r,
            Err(RunnerError::Log {
                source: LogError::Failed(_),
                ..
            })
        ),
        "a read that fails for good stops the runner: {r:?}"
    );
    // A pull that fails for good does too.
    log.inject(Op::Read, Fault::Unavailable);
    let mut s = settings();
    s.replay_parked = false;
    log.inject(Op::Read, Fault::Fail);
    let shared: SharedLog = Arc::new(log.clone());
    let h = batpak_runtime::spawn(shared, Box::new(Doubler::new()), s).unwrap();
    let r = Box::new(h).join();
    assert!(
        matches!(r, Err(RunnerError::CanalFailed(_))),
        "a pull that fails for good stops the runner: {r:?}"
    );
    run_to_idle(&log, Doubler::new()).unwrap();
    assert_exactly_once(&log, &sources);
}

#[test]
fn waits_that_time_out_change_nothing() {
    let log = MemoryLog::new();
    let p = payloads("f", 10);
    let sources = put(&log, &p.iter().map(String::as_str).collect::<Vec<_>>());
    for _ in 0..20 {
        log.inject(Op::Wait, Fault::Timeout);
    }
    let reactor = Doubler::new();
    let calls = reactor.calls.clone();
    run_to_idle(&log, reactor).unwrap();
    assert_exactly_once(&log, &sources);
    only(&calls, &log, &sources);
}

#[test]
fn a_poisoned_event_is_parked_once_despite_lost_commits() {
    let log = MemoryLog::new();
    let sources = put(&log, &["g0", "poison", "g2"]);
    // The batch fails, is bisected; the park commit and the others are
    // lost or lose their reply.
    for f in [Fault::Lose, Fault::LoseReply, Fault::Lose, Fault::LoseReply] {
        log.inject(Op::Commit, f);
    }
    run_to_idle(&log, Doubler::new()).unwrap();
    assert_exactly_once(&log, &sources);
}

#[test]
fn a_zombie_instance_is_fenced_off() {
    let log = MemoryLog::new();
    let sources = put(&log, &["z0", "z1"]);
    // Instance A takes the batch and hangs in `react`.
    let latch: Latch = Arc::default();
    let mut a = Doubler::new();
    a.hold = Some(latch.clone());
    let shared: SharedLog = Arc::new(log.clone());
    let ha = batpak_runtime::spawn(shared.clone(), Box::new(a), settings()).unwrap();
    // (`calls` counts after the latch: the status shows the batch taken.)
    wait_for("A to take the batch", || {
        ha.status().snapshot(0).events_in > 0
    });
    // Instance B takes over the cursor and handles everything.
    run_to_idle(&log, Doubler::new()).unwrap();
    assert_exactly_once(&log, &sources);
    let before = log.events().len();
    // A wakes up: its commit carries a stale fence and is refused whole.
    open(&latch);
    let r = Box::new(ha).join();
    assert!(
        matches!(
            r,
            Err(RunnerError::Commit {
                source: CommitError::Fenced { .. },
                ..
            })
        ),
        "the zombie's commit is fenced: {r:?}"
    );
    assert_eq!(log.events().len(), before, "nothing of the zombie landed");
    assert_exactly_once(&log, &sources);
}

#[test]
fn seeded_random_fault_schedules_keep_reactions_exactly_once() {
    let base: u64 = std::env::var("BATPAK_SEAM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let rounds: u64 = std::env::var("BATPAK_SEAM_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    for round in 0..rounds {
        let seed = base.wrapping_add(round);
        println!("seam fault schedule: seed {seed} (replay: BATPAK_SEAM_SEED={seed} BATPAK_SEAM_ROUNDS=1)");
        let log = MemoryLog::new();
        let reactor = Doubler::new();
        let shared: SharedLog = Arc::new(log.clone());
        let h = batpak_runtime::spawn(shared, Box::new(reactor), settings()).unwrap();
        log.randomize(FaultPlan {
            seed,
            one_in: 4,
            max_in_a_row: 3,
        });
        let status = h.status().clone();
        // Input arrives while the runner works, one poisoned event among it.
        let mut sources = Vec::new();
        for chunk in 0..10 {
            let mut p = payloads(&format!("r{chunk}."), 9);
            if chunk == 4 {
                p[3] = "poison".into();
            }
            sources.extend(put(&log, &p.iter().map(String::as_str).collect::<Vec<_>>()));
            std::thread::sleep(Duration::from_millis(3));
        }
        wait_for("the runner to handle every event", || {
            status.is_idle_at(log.heads().durable)
        });
        log.calm();
        assert_eq!(
            status.state(),
            RunState::Running,
            "seed {seed}: {:?}",
            status.error()
        );
        Box::new(h)
            .stop_and_join()
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let faults = log.injected();
        println!("seed {seed}: {} faults injected", faults.len());
        assert!(
            !faults.is_empty(),
            "seed {seed}: the schedule injected faults"
        );
        assert_exactly_once(&log, &sources);
    }
}
