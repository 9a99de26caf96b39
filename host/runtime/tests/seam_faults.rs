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
use batpak_store::{CanalHandle, Coordinate, Event, EventId, EventView, Proposal, Region};
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
    fn react(&mut self, batch: &[EventView]) -> Result<Vec<Reaction>, ReactFailure> {
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
                out.push(Reaction::new(i as u32, c.entity, c.scope, "out", p));
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

/// Appends `in` events with these payloads (without faults, atomically);
/// returns them: (payload, sequence).
fn put(log: &MemoryLog, payloads: &[&str]) -> Vec<(String, u64)> {
    let done = log
        .append(
            payloads
                .iter()
                .map(|p| {
                    Proposal::new(
                        Coordinate::new(format!("e:{p}"), "t").unwrap(),
                        "in",
                        p.as_bytes().to_vec(),
                    )
                })
                .collect(),
        )
        .unwrap();
    // The append is atomic: its events are the last ones up to `upto`,
    // whatever the runner commits around it.
    let first = done.upto - payloads.len() as u64 + 1;
    payloads
        .iter()
        .zip(first..)
        .map(|(p, seq)| (p.to_string(), seq))
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

#[test]
fn a_swap_whose_record_lost_its_reply_is_recorded_once_and_takes_effect() {
    let log = MemoryLog::new();
    let mut sources = put(&log, &["s0", "s1", "s2"]);
    let shared: SharedLog = Arc::new(log.clone());
    let h = batpak_runtime::spawn(shared, Box::new(Doubler::new()), settings()).unwrap();
    let status = h.status().clone();
    wait_for("the first version to go idle", || {
        status.is_idle_at(log.heads().durable)
    });
    // The swap record's commit lands, but its reply is lost.
    log.inject(Op::Commit, Fault::LoseReply);
    let mut v2 = Doubler::new();
    v2.d.version = "2.0.0".into();
    let outcome = h.swap(Box::new(v2), None).expect("the swap is made");
    assert_eq!(outcome.new_version, "2.0.0");
    sources.extend(put(&log, &["s3", "s4"]));
    wait_for("the new version to go idle", || {
        status.is_idle_at(log.heads().durable)
    });
    Box::new(h).stop_and_join().unwrap();
    assert_exactly_once(&log, &sources);
    let events = log.events();
    let swapped = events
        .iter()
        .filter(|e| e.kind() == batpak_runtime::SWAPPED_KIND)
        .count();
    assert_eq!(swapped, 1, "the swap is recorded once");
    let v2_out = events
        .iter()
        .filter(|e| e.kind() == "out")
        .filter(|e| {
            e.header
                .meta
                .iter()
                .any(|(k, v)| k == "reactor_version" && v == "2.0.0")
        })
        .count();
    assert_eq!(
        v2_out, 4,
        "the events after the swap were handled by the new version"
    );
}

/// A log that lets another instance take the cursor over and commit inside
/// a window of this runner: right after its first read of the cursor's
/// checkpoint or fence (the window a starting runner has between reading
/// its position and its fence), or — `on_commit` — in place of its first
/// checkpointed commit, which is lost (not applied, outcome unknown) after
/// one more event (`t9`) was appended.
#[derive(Debug)]
struct TakeoverAfterFirstRead {
    inner: MemoryLog,
    on_commit: bool,
    fired: std::sync::atomic::AtomicBool,
}

impl TakeoverAfterFirstRead {
    fn maybe_take_over(&self) {
        if !self.on_commit && !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            // A real second instance, to idle: handles what is pending and
            // commits its reactions with the checkpoint.
            run_to_idle(&self.inner, Doubler::new()).unwrap();
        }
    }
}

impl EventLog for TakeoverAfterFirstRead {
    fn describe(&self) -> String {
        "memory log with a takeover".into()
    }
    fn read(
        &self,
        region: &Region,
        after: u64,
        max: usize,
    ) -> Result<batpak_log::RegionBatch, LogError> {
        self.inner.read(region, after, max)
    }
    fn open_cursor(
        &self,
        region: &Region,
        after: u64,
    ) -> Result<Box<dyn batpak_log::LogCursor>, LogError> {
        self.inner.open_cursor(region, after)
    }
    fn subscribe(
        &self,
        region: &Region,
        capacity: usize,
    ) -> Result<
        Box<dyn batpak_store::Canal<Item = Event, Error = batpak_store::CanalClosed>>,
        LogError,
    > {
        self.inner.subscribe(region, capacity)
    }
    fn commit(
        &self,
        commit: &mut batpak_log::Commit,
    ) -> Result<batpak_log::Committed, CommitError> {
        if self.on_commit
            && commit.checkpoint.is_some()
            && !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            put(&self.inner, &["t9"]);
            run_to_idle(&self.inner, Doubler::new()).unwrap();
            return Err(CommitError::Unknown(
                "injected: lost, with a takeover".into(),
            ));
        }
        self.inner.commit(commit)
    }
    fn checkpoint(&self, cursor: &str) -> Result<Option<batpak_store::Checkpoint>, LogError> {
        let read = self.inner.checkpoint(cursor);
        self.maybe_take_over();
        read
    }
    fn fence(&self, cursor: &str) -> Result<batpak_log::Fence, LogError> {
        let read = self.inner.fence(cursor);
        self.maybe_take_over();
        read
    }
    fn get(&self, id: EventId) -> Result<Option<Event>, LogError> {
        self.inner.get(id)
    }
    fn get_by_sequence(&self, sequence: u64) -> Result<Option<Event>, LogError> {
        self.inner.get_by_sequence(sequence)
    }
    fn entity_events(&self, entity: &str, after: u64, max: usize) -> Result<Vec<Event>, LogError> {
        self.inner.entity_events(entity, after, max)
    }
    fn heads(&self) -> batpak_log::Heads {
        self.inner.heads()
    }
    fn wait_durable(&self, sequence: u64, timeout: Duration) -> Result<bool, LogError> {
        self.inner.wait_durable(sequence, timeout)
    }
    fn wait_for_events(&self, after: u64, timeout: Duration) -> Result<u64, LogError> {
        self.inner.wait_for_events(after, timeout)
    }
}

/// A runner starting over a cursor that another instance takes over and
/// commits between the runner's reads of its position and its fence never
/// goes on from the old position with the new fence (which would hand the
/// events in between to the reactor again and store their reactions
/// twice): position and fence come from one consistent read, so the
/// starting runner sees the other instance's position (or, carrying the
/// older fence, is refused as fenced).
#[test]
fn a_takeover_between_reading_the_position_and_the_fence_handles_nothing_twice() {
    let log = MemoryLog::new();
    let mut sources = put(&log, &["t0", "t1"]);
    run_to_idle(&log, Doubler::new()).unwrap();
    // Pending when the starting runner reads its position; the other
    // instance handles them inside that window.
    sources.extend(put(&log, &["t2", "t3", "t4"]));
    let racy = Arc::new(TakeoverAfterFirstRead {
        inner: log.clone(),
        on_commit: false,
        fired: Default::default(),
    });
    let late = Doubler::new();
    let calls = late.calls.clone();
    let shared: SharedLog = racy.clone();
    let h = batpak_runtime::spawn(shared, Box::new(late), settings()).unwrap();
    let status = h.status().clone();
    wait_for("the late runner to go idle or stop", || {
        status.is_idle_at(log.heads().durable) || h.is_finished()
    });
    let ended = Box::new(h).stop_and_join();
    assert!(
        racy.fired.load(std::sync::atomic::Ordering::SeqCst),
        "the other instance took over inside the window"
    );
    assert!(
        matches!(
            ended,
            Ok(())
                | Err(RunnerError::Commit {
                    source: CommitError::Fenced { .. },
                    ..
                })
        ),
        "the late runner ends idle or fenced: {ended:?}"
    );
    assert!(
        calls.lock().unwrap().is_empty(),
        "the late runner handed nothing to its reactor again: {:?}",
        calls.lock().unwrap()
    );
    assert_exactly_once(&log, &sources);
}

/// A runner whose commit was lost (outcome unknown) while another instance
/// took the cursor over and went past it (one more event) does not take
/// the other's checkpoint as its own commit landing and go on from its own
/// position with the other's fence (which would hand that event to the
/// reactor again): it stops as fenced.
#[test]
fn a_lost_commit_overtaken_by_another_instance_stops_the_runner_as_fenced() {
    let log = MemoryLog::new();
    let mut sources = put(&log, &["t0", "t1"]);
    let racy = Arc::new(TakeoverAfterFirstRead {
        inner: log.clone(),
        on_commit: true,
        fired: Default::default(),
    });
    let late = Doubler::new();
    let calls = late.calls.clone();
    let shared: SharedLog = racy.clone();
    let h = batpak_runtime::spawn(shared, Box::new(late), settings()).unwrap();
    wait_for("the late runner to stop", || h.is_finished());
    let ended = Box::new(h).stop_and_join();
    assert!(
        matches!(
            ended,
            Err(RunnerError::Commit {
                source: CommitError::Fenced { .. },
                ..
            })
        ),
        "the overtaken runner stops as fenced: {ended:?}"
    );
    sources.push(("t9".into(), log.heads().durable - 6));
    let t9 = log
        .events()
        .iter()
        .find(|e| &*e.payload == b"t9")
        .map(|e| e.header.sequence)
        .expect("t9 appended");
    sources.last_mut().unwrap().1 = t9;
    assert!(
        calls.lock().unwrap().keys().all(|id| log
            .events()
            .iter()
            .any(|e| e.id() == *id && &*e.payload != b"t9")),
        "the late runner never handled t9"
    );
    assert_exactly_once(&log, &sources);
}
