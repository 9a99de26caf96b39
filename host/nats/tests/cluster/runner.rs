//! The runtime's real runner (`batpak_runtime::spawn`, unchanged) over the
//! cluster through the log seam: one runner per partition, each over that
//! partition's [`PartitionLog`], a native reactor emitting two reactions
//! per input, while a client appends. While a partition's runner holds a
//! batch, that partition's stream leader is killed (-9) and later
//! restarted — or paused (SIGSTOP) past the election timeout, so the
//! runner's commit gets no answer, and resumed with that commit still in
//! its input — once a round (`BATPAK_NATS_ROUNDS`, partitions in turn). Afterwards every acknowledged append is present
//! once, every one has its two reactions exactly once, nothing reacts to
//! anything else, and each runner's checkpoint is at its partition's last
//! input. The seed is printed (`BATPAK_SEED` replays the entity choice and
//! the kill points).

use crate::harness::{serial, Cluster};
use crate::{all_events, append_until_acked, init, options, proposal, rounds, Rng};
use batpak_log::{EventLog, SharedLog};
use batpak_nats::{partition::stream_name, NatsLog, PartitionLog};
use batpak_runtime::{
    cursor_id, Descriptor, FailurePolicy, LogLevel, ReactFailure, Reaction, Reactor, RunState,
    RunnerSettings,
};
use batpak_store::{CanalHandle, EventId, EventView};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const NAME: &str = "confirmer";
const INPUT: &str = "order.placed";
const OUTPUT: &str = "order.confirmed";
const PARTITIONS: u32 = 2;

/// Holds a reactor inside `react` when armed, so the test can kill the
/// leader while the runner has a batch in hand (its commit then meets the
/// failover).
#[derive(Default)]
struct Hold {
    armed: AtomicBool,
    holding: AtomicBool,
    open: (Mutex<bool>, Condvar),
}

impl Hold {
    fn arm(&self) {
        *self.open.0.lock().unwrap() = false;
        self.holding.store(false, Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Waits (bounded) until the reactor is held.
    fn wait_held(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.holding.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the reactor never took a batch");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn release(&self) {
        self.armed.store(false, Ordering::SeqCst);
        *self.open.0.lock().unwrap() = true;
        self.open.1.notify_all();
    }

    fn pass(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.holding.store(true, Ordering::SeqCst);
            let g = self.open.0.lock().unwrap();
            let _ = self
                .open
                .1
                .wait_timeout_while(g, Duration::from_secs(60), |open| !*open)
                .unwrap();
        }
    }
}

/// Two reactions per input (`<payload>#0`, `<payload>#1`), on the input's
/// entity (so in its partition).
struct Confirmer {
    d: Descriptor,
    hold: Arc<Hold>,
}

impl Confirmer {
    fn new(hold: Arc<Hold>) -> Confirmer {
        let mut d = Descriptor::new(NAME, "1.0.0");
        d.region = batpak_store::Region::all().kinds([INPUT]);
        d.emits = vec![OUTPUT.into()];
        Confirmer { d, hold }
    }
}

impl Reactor for Confirmer {
    fn descriptor(&self) -> &Descriptor {
        &self.d
    }
    fn digest(&self) -> &str {
        "native-confirmer"
    }
    fn react(&mut self, batch: &[EventView]) -> Result<Vec<Reaction>, ReactFailure> {
        self.hold.pass();
        let mut out = Vec::new();
        for (i, e) in batch.iter().enumerate() {
            let c = e.coordinate();
            for k in 0..2 {
                let mut p = e.payload.to_vec();
                p.extend_from_slice(format!("#{k}").as_bytes());
                out.push(Reaction::new(i as u32, c.entity, c.scope, OUTPUT, p));
            }
        }
        Ok(out)
    }
}

fn settings() -> RunnerSettings {
    RunnerSettings {
        pull_wait: Duration::from_millis(50),
        max_batch: 16,
        policy: FailurePolicy {
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            ..FailurePolicy::default()
        },
        log_level: LogLevel::Warn,
        // Longer than any election seen here (about 4 s), shorter than the
        // test's own deadlines.
        log_retry: Duration::from_secs(60),
        ..RunnerSettings::default()
    }
}

/// An acknowledged input: id, partition, sequence there, payload.
type Acked = (EventId, u32, u64, String);

/// Appends inputs from a thread until stopped, to `entities` in turn; an
/// append whose outcome was unknown (or found no leader) is retried with
/// the same id until acknowledged.
struct Writer {
    acked: Arc<Mutex<Vec<Acked>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Writer {
    fn start(log: NatsLog, entities: Vec<String>) -> Writer {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (acked.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut retries = 0u64;
            let mut n = 0usize;
            while !s.load(Ordering::Relaxed) {
                let payload = format!("in{n}");
                let p = proposal(&entities[n % entities.len()], INPUT, payload.as_bytes());
                n += 1;
                let r = append_until_acked(&log, &p, &mut retries);
                a.lock()
                    .unwrap()
                    .push((p.id.unwrap(), r.partition, r.sequence, payload));
                // Paced so the run spans the failovers without flooding
                // two shared cores.
                std::thread::sleep(Duration::from_millis(5));
            }
            retries
        });
        Writer {
            acked,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn wait_for(&self, n: usize, limit: Duration, cluster: &Cluster) {
        let deadline = Instant::now() + limit;
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} appends acknowledged within {limit:?}\n{}",
                self.count(),
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(mut self) -> (Vec<Acked>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let retries = self.thread.take().unwrap().join().expect("writer panicked");
        let acked = self.acked.lock().unwrap().clone();
        (acked, retries)
    }
}

/// Partition `p` holds every acknowledged input of it once, each with its
/// two reactions exactly once and nothing else reacting; `last` is the
/// partition's last input.
fn check_partition(log: &NatsLog, p: u32, acked: &[Acked]) -> Result<(), String> {
    let events = all_events(log, p)?;
    let mut inputs: HashMap<EventId, u32> = HashMap::new();
    let mut outs: HashMap<EventId, Vec<String>> = HashMap::new();
    for e in &events {
        match e.kind() {
            INPUT => *inputs.entry(e.id()).or_default() += 1,
            OUTPUT => outs
                .entry(e.header.causation.ok_or("a reaction without a cause")?)
                .or_default()
                .push(String::from_utf8_lossy(&e.payload).into_owned()),
            _ => {}
        }
    }
    let mine: Vec<&Acked> = acked.iter().filter(|a| a.1 == p).collect();
    for (id, _, seq, payload) in &mine {
        match inputs.get(id) {
            Some(1) => {}
            n => return Err(format!("input {id:?} (seq {seq}) present {n:?} times")),
        }
        let mut got = outs.remove(id).unwrap_or_default();
        got.sort();
        let want = vec![format!("{payload}#0"), format!("{payload}#1")];
        if got != want {
            return Err(format!(
                "input {id:?} (seq {seq}, {payload}): reactions {got:?}, want {want:?} exactly once"
            ));
        }
    }
    if !outs.is_empty() {
        return Err(format!(
            "{} reactions to causes that are not acknowledged inputs",
            outs.len()
        ));
    }
    if inputs.len() != mine.len() {
        return Err(format!(
            "{} inputs stored, {} acknowledged",
            inputs.len(),
            mine.len()
        ));
    }
    Ok(())
}

/// What happens to a partition's stream leader while its runner holds a
/// batch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Failure {
    /// `kill -9`, restarted once appends flow again.
    Kill,
    /// SIGSTOP past the election timeout (the runner's commit goes to it
    /// and gets no answer: unknown outcome), SIGCONT once appends flow
    /// again — with the commit's first copy still in its input.
    Pause,
}

#[test]
fn the_runner_over_the_cluster_reacts_exactly_once_across_kill_9_of_the_stream_leader() {
    run(Failure::Kill);
}

#[test]
fn the_runner_over_the_cluster_resolves_a_commit_lost_to_a_paused_leader_exactly_once() {
    run(Failure::Pause);
}

fn run(failure: Failure) {
    let _one = serial();
    let mut rng = Rng::seeded(&format!(
        "the runner over the cluster, {failure:?} of the stream leader"
    ));
    let mut cluster = Cluster::start(3);
    let log = Arc::new(init(&cluster, PARTITIONS, 3));
    // Entities over both partitions (at least one in each).
    let mut entities: Vec<String> = Vec::new();
    while (0..PARTITIONS).any(|p| !entities.iter().any(|e| log.partition_of(e) == p))
        || entities.len() < 6
    {
        entities.push(format!("order:{}", rng.below(100_000)));
    }
    // The runners' warnings (retries, resolved outcomes) are counted.
    let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = warnings.clone();
    batpak_runtime::set_log_sink(Some(Arc::new(move |level, who, line| {
        eprintln!("[{who}] {level:?}: {line}");
        if level >= LogLevel::Warn {
            sink.lock().unwrap().push(line.to_string());
        }
    })));
    let parts = PartitionLog::all(&log);
    let holds: Vec<Arc<Hold>> = parts.iter().map(|_| Arc::default()).collect();
    let runners: Vec<_> = parts
        .iter()
        .zip(&holds)
        .map(|(p, hold)| {
            let shared: SharedLog = Arc::new(p.clone());
            batpak_runtime::spawn(shared, Box::new(Confirmer::new(hold.clone())), settings())
                .unwrap_or_else(|e| panic!("{}: {e}", p.describe()))
        })
        .collect();
    let writer = Writer::start(
        NatsLog::open(&cluster.servers(), options()).unwrap(),
        entities,
    );
    let rounds = rounds();
    for round in 0..rounds {
        let p = round as u32 % PARTITIONS;
        let leader = cluster.wait_stream_leader(&stream_name(p), Duration::from_secs(20));
        let before = writer.count() + 40 + rng.below(60) as usize;
        writer.wait_for(before, Duration::from_secs(60), &cluster);
        // Kill while the partition's runner holds a batch, then let it
        // commit into the election.
        holds[p as usize].arm();
        holds[p as usize].wait_held();
        match failure {
            Failure::Kill => cluster.kill(leader),
            Failure::Pause => cluster.pause(leader),
        }
        holds[p as usize].release();
        let at_kill = writer.count();
        writer.wait_for(at_kill + 40, Duration::from_secs(90), &cluster);
        eprintln!(
            "round {}/{rounds}: {failure:?} of {} (leader of partition {p}) at {at_kill} acks",
            round + 1,
            cluster.nodes[leader].name
        );
        match failure {
            Failure::Kill => cluster.restart(leader),
            Failure::Pause => cluster.resume(leader),
        }
        cluster.wait_ready(Duration::from_secs(30));
    }
    let (acked, retries) = writer.finish();
    // Each runner catches up to its partition's last input.
    let deadline = Instant::now() + Duration::from_secs(120);
    for (part, h) in parts.iter().zip(&runners) {
        let p = part.partition();
        let Some(last) = acked.iter().filter(|a| a.1 == p).map(|a| a.2).max() else {
            continue;
        };
        loop {
            let status = h.status();
            assert_ne!(
                status.state(),
                RunState::Stopped,
                "partition {p}'s runner stopped: {:?}",
                status.error()
            );
            let at = part
                .checkpoint(&cursor_id(NAME))
                .ok()
                .flatten()
                .map_or(0, |c| c.sequence);
            if at >= last {
                assert_eq!(at, last, "partition {p}: checkpoint past the last input");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "partition {p}: checkpoint at {at}, last input at {last}\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for (part, h) in parts.iter().zip(runners) {
        Box::new(h)
            .stop_and_join()
            .unwrap_or_else(|e| panic!("{}: {e}", part.describe()));
    }
    // Read back (retried while a replica serving the reads catches up).
    for part in &parts {
        let p = part.partition();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match check_partition(&log, p, &acked) {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => {
                    panic!("partition {p}: {e}\n{}", cluster.logs())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
        if let Some(last) = acked.iter().filter(|a| a.1 == p).max_by_key(|a| a.2) {
            let cp = part
                .checkpoint(&cursor_id(NAME))
                .unwrap()
                .expect("a checkpoint");
            assert_eq!(
                (cp.sequence, cp.event_id),
                (last.2, last.0),
                "partition {p}: the checkpoint names the last input"
            );
        }
    }
    batpak_runtime::set_log_sink(None);
    let warnings = warnings.lock().unwrap();
    eprintln!(
        "runner over the cluster: {rounds} leader {failure:?}(s), {} inputs acknowledged ({} append retries), each with its 2 reactions exactly once; the runners logged {} retries or resolved outcomes",
        acked.len(),
        retries,
        warnings.len()
    );
    assert!(
        !warnings.is_empty(),
        "the failures never hit a runner's commit or read"
    );
    if failure == Failure::Pause {
        let unknown = warnings.iter().filter(|w| w.contains("unknown")).count();
        eprintln!("  of which {unknown} unknown outcomes, resolved");
        assert!(unknown > 0, "no commit met the paused leader: {warnings:?}");
    }
}
