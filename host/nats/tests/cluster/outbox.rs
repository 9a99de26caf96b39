//! Reactions to other partitions: the transactional outbox (records of
//! another partition committed as outbox messages in the source's fenced
//! batch) and the fenced relay that forwards them into their partition.
//! Each scenario asserts every forwarded record present exactly once in
//! its own partition (same id, entity chains valid) and nothing else, and
//! prints its counts:
//!
//! - the real runner whose reactions go to the other partition, relays for
//!   both partitions, reads of the other partition through `PartitionLog`;
//! - kill -9 (or SIGSTOP) of the target's stream leader while a relay
//!   forwards, that relay stopped mid-run and a successor started;
//! - a forward whose answer is lost to a paused target leader, the relay
//!   left there and a new one started after SIGCONT;
//! - two relays for one target at once (a zombie): the loser fenced;
//! - a stale relay resuming after the de-duplication window has passed
//!   (the window set to 1 s on the stream).

use crate::harness::{serial, Cluster};
use crate::{all_events, append_until_acked, init, options, proposal, Rng};
use batpak_log::{EventLog, SharedLog};
use batpak_nats::{
    partition::stream_name, Commit, LogError, NatsLog, PartitionLog, Relay, RelayHandle,
    RelaySettings, RelayState, Resolution,
};
use batpak_runtime::{
    cursor_id, Descriptor, FailureKind, FailurePolicy, LogLevel, ReactFailure, Reaction, Reactor,
    RunState, RunnerSettings,
};
use batpak_store::{CanalHandle, Event, EventId, EventView};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const INPUT: &str = "order.placed";
const LOCAL: &str = "order.confirmed";
const REMOTE: &str = "inventory.reserved";

/// `n` distinct entities `tag:<i>` of partition `p`.
fn entities_in(log: &NatsLog, p: u32, tag: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{tag}:{i}"))
        .filter(|e| log.partition_of(e) == p)
        .take(n)
        .collect()
}

/// Every event of every partition, with its partition; ids unique across
/// the cluster and every entity's chain whole (entity sequences 1..n, each
/// `prev` the previous event's id and hash).
fn everything(log: &NatsLog) -> Result<Vec<(u32, Event)>, String> {
    let mut out = Vec::new();
    for p in 0..log.layout().partitions {
        out.extend(all_events(log, p)?.into_iter().map(|e| (p, e)));
    }
    let mut seen = HashMap::new();
    let mut chains: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
    for (p, e) in &out {
        if let Some(q) = seen.insert(e.id(), *p) {
            return Err(format!(
                "id {:?} stored twice (partitions {q} and {p})",
                e.id()
            ));
        }
        if log.partition_of(&e.coordinate().entity) != *p {
            return Err(format!("{:?} stored outside its partition", e.coordinate()));
        }
        chains
            .entry(e.coordinate().entity.clone())
            .or_default()
            .push(e);
    }
    for (entity, events) in &mut chains {
        events.sort_by_key(|e| e.header.entity_sequence);
        let mut prev = None;
        for (i, e) in events.iter().enumerate() {
            if e.header.entity_sequence != i as u64 + 1 || e.header.prev != prev {
                return Err(format!(
                    "{entity}: event {} of its chain is entity sequence {} with prev {:?}, want \
                     {} after {prev:?}",
                    i + 1,
                    e.header.entity_sequence,
                    e.header.prev,
                    i + 1
                ));
            }
            prev = Some(batpak_store::ChainLink {
                id: e.id(),
                hash: e.hash,
            });
        }
    }
    Ok(out)
}

/// The forwarded records (by id, with their entity) are each stored
/// exactly once, in their own partition, and no other `kind` event exists.
fn check_forwarded(
    log: &NatsLog,
    kind: &str,
    want: &HashMap<EventId, String>,
) -> Result<usize, String> {
    let all = everything(log)?;
    let mut got = 0;
    for (_, e) in all.iter().filter(|(_, e)| e.kind() == kind) {
        match want.get(&e.id()) {
            Some(entity) if *entity == e.coordinate().entity => got += 1,
            Some(entity) => {
                return Err(format!(
                    "{:?} stored on {:?}, not {entity:?}",
                    e.id(),
                    e.coordinate().entity
                ))
            }
            None => return Err(format!("{:?} ({kind}) was never committed", e.id())),
        }
    }
    if got != want.len() {
        return Err(format!("{got} of {} records forwarded", want.len()));
    }
    Ok(got)
}

/// Retries `check` (a replica serving reads may trail) for at most 30 s.
fn eventually<T>(cluster: &Cluster, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("{e}\n{}", cluster.logs()),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Waits (at most `limit`) until `relay` has forwarded every outbox
/// message for its target that exists now.
fn caught_up(log: &NatsLog, relay: &RelayHandle, target: u32, limit: Duration, cluster: &Cluster) {
    let heads: Vec<(u32, u64)> = (0..log.layout().partitions)
        .filter(|p| *p != target)
        .map(|p| {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match log.outbox_head(p, target) {
                    Ok(h) => return (p, h),
                    Err(e) => assert!(Instant::now() < deadline, "outbox head: {e}"),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .collect();
    let deadline = Instant::now() + limit;
    loop {
        let s = relay.status();
        assert_eq!(
            s.state,
            RelayState::Running,
            "the relay for {target} stopped: {:?}",
            s.error
        );
        let done = heads.iter().all(|(p, h)| {
            s.sources
                .iter()
                .any(|x| x.partition == *p && x.position >= *h)
        });
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the relay for {target} did not catch up within {limit:?}: {s:?}, heads {heads:?}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn relay_settings(max_batch: usize) -> RelaySettings {
    RelaySettings {
        max_batch,
        idle_wait: Duration::from_millis(200),
        ..RelaySettings::default()
    }
}

// ---------------------------------------------------------------- (a)

/// The demo's shape: an input `order.placed` on `order:<n>` with payload
/// `<n> <sku>` gets `order.confirmed` on its own entity and
/// `inventory.reserved` on the sku (another partition); it also reads the
/// sku's events (another partition) before reacting.
struct Reserver {
    d: Descriptor,
    log: PartitionLog,
    reads: Arc<Mutex<u64>>,
}

impl Reactor for Reserver {
    fn descriptor(&self) -> &Descriptor {
        &self.d
    }
    fn digest(&self) -> &str {
        "native-reserver"
    }
    fn react(&mut self, batch: &[EventView]) -> Result<Vec<Reaction>, ReactFailure> {
        let mut out = Vec::new();
        for (i, e) in batch.iter().enumerate() {
            let text = String::from_utf8_lossy(&e.payload).into_owned();
            let (n, sku) = text.split_once(' ').expect("`<n> <sku>`");
            // A read of another partition's entity (the sku's stock).
            self.log.entity_events(sku, 0, 1000).map_err(|err| {
                ReactFailure::new(FailureKind::Error, format!("reading {sku}: {err}"))
            })?;
            *self.reads.lock().unwrap() += 1;
            let c = e.coordinate();
            out.push(Reaction::new(i as u32, c.entity, c.scope, LOCAL, n));
            out.push(Reaction::new(i as u32, sku, c.scope, REMOTE, n));
        }
        Ok(out)
    }
}

#[test]
fn outbox_reactions_to_another_partition_reach_it_exactly_once_through_the_relay() {
    let _one = serial();
    let mut rng = Rng::seeded("outbox: the runner reacting into another partition");
    let cluster = Cluster::start(3);
    let log = Arc::new(init(&cluster, 2, 3));
    let orders: Vec<Vec<String>> = (0..2).map(|p| entities_in(&log, p, "order", 3)).collect();
    let skus: Vec<Vec<String>> = (0..2).map(|p| entities_in(&log, p, "sku", 3)).collect();
    let parts = PartitionLog::all(&log);
    let reads = Arc::new(Mutex::new(0u64));
    let runners: Vec<_> = parts
        .iter()
        .map(|p| {
            let mut d = Descriptor::new("reserver", "1.0.0");
            d.region = batpak_store::Region::all().kinds([INPUT]);
            d.emits = vec![LOCAL.into(), REMOTE.into()];
            let reactor = Reserver {
                d,
                log: p.clone(),
                reads: reads.clone(),
            };
            let shared: SharedLog = Arc::new(p.clone());
            batpak_runtime::spawn(shared, Box::new(reactor), runner_settings())
                .unwrap_or_else(|e| panic!("{}: {e}", p.describe()))
        })
        .collect();
    let relays: Vec<RelayHandle> = (0..2)
        .map(|q| Relay::spawn(log.clone(), q, relay_settings(64)).unwrap())
        .collect();
    // Inputs on both partitions, each naming a sku of the other.
    let writer = NatsLog::open(&cluster.servers(), options()).unwrap();
    let mut inputs = Vec::new();
    let mut retries = 0;
    for n in 0..200u64 {
        let p = rng.below(2) as usize;
        let order = &orders[p][rng.below(3) as usize];
        let sku = &skus[1 - p][rng.below(3) as usize];
        let prop = proposal(order, INPUT, format!("{n} {sku}").as_bytes());
        let r = append_until_acked(&writer, &prop, &mut retries);
        inputs.push((
            prop.id.unwrap(),
            r.partition,
            r.sequence,
            order.clone(),
            sku.clone(),
        ));
    }
    // Each runner reaches its last input, then each relay its outbox head.
    let deadline = Instant::now() + Duration::from_secs(120);
    for (part, h) in parts.iter().zip(&runners) {
        let p = part.partition();
        let last = inputs
            .iter()
            .filter(|i| i.1 == p)
            .map(|i| i.2)
            .max()
            .unwrap();
        loop {
            let status = h.status();
            assert_ne!(status.state(), RunState::Stopped, "{:?}", status.error());
            let at = part
                .checkpoint(&cursor_id("reserver"))
                .ok()
                .flatten()
                .map_or(0, |c| c.sequence);
            if at >= last {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "partition {p}: checkpoint at {at} of {last}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for (q, relay) in relays.iter().enumerate() {
        caught_up(&log, relay, q as u32, Duration::from_secs(60), &cluster);
    }
    for (part, h) in parts.iter().zip(runners) {
        Box::new(h)
            .stop_and_join()
            .unwrap_or_else(|e| panic!("{}: {e}", part.describe()));
    }
    let statuses: Vec<_> = relays.iter().map(RelayHandle::status).collect();
    for r in relays {
        r.stop_and_join().unwrap();
    }
    // Every input: its local reaction once in its partition, its sku
    // reaction once in the sku's partition; nothing else.
    let (locals, remotes) = eventually(&cluster, || {
        let all = everything(&log)?;
        let mut by_cause: HashMap<EventId, Vec<(u32, &Event)>> = HashMap::new();
        for (p, e) in &all {
            if e.kind() != INPUT {
                let cause = e.header.causation.ok_or("a reaction without a cause")?;
                by_cause.entry(cause).or_default().push((*p, e));
            }
        }
        let (mut locals, mut remotes) = (0, 0);
        for (id, p, _, order, sku) in &inputs {
            let got = by_cause.remove(id).unwrap_or_default();
            let local: Vec<_> = got.iter().filter(|(_, e)| e.kind() == LOCAL).collect();
            let remote: Vec<_> = got.iter().filter(|(_, e)| e.kind() == REMOTE).collect();
            if local.len() != 1 || remote.len() != 1 || got.len() != 2 {
                return Err(format!(
                    "input {id:?}: {} local, {} remote reactions, want 1 + 1",
                    local.len(),
                    remote.len()
                ));
            }
            let (lp, le) = local[0];
            let (rp, re) = remote[0];
            if *lp != *p || le.coordinate().entity != *order {
                return Err(format!("input {id:?}: local reaction in partition {lp}"));
            }
            if *rp == *p || re.coordinate().entity != *sku {
                return Err(format!(
                    "input {id:?}: sku reaction on {:?} in partition {rp}",
                    re.coordinate().entity
                ));
            }
            locals += 1;
            remotes += 1;
        }
        if !by_cause.is_empty() {
            return Err(format!("{} reactions to unknown causes", by_cause.len()));
        }
        Ok((locals, remotes))
    });
    // Reads of the other partition through a PartitionLog: the sku's
    // events (forwarded), and a forwarded event by id.
    let sku = &skus[1][0];
    let seen = parts[0].entity_events(sku, 0, 1000).unwrap();
    let want = inputs.iter().filter(|i| i.4 == *sku).count();
    assert_eq!(seen.len(), want, "{sku}'s events read from partition 0");
    if let Some(e) = seen.first() {
        let got = parts[0].get(e.id()).unwrap().expect("found in partition 1");
        assert_eq!(got.id(), e.id());
    }
    let forwarded: u64 = statuses
        .iter()
        .flat_map(|s| s.sources.iter().map(|x| x.forwarded))
        .sum();
    eprintln!(
        "outbox runner: {} inputs ({retries} append retries), {locals} local and {remotes} \
         cross-partition reactions each exactly once; relays forwarded {forwarded} (fenced {}, \
         resolved {}); {} reads of the other partition",
        inputs.len(),
        statuses.iter().map(|s| s.fenced).sum::<u64>(),
        statuses.iter().map(|s| s.resolved).sum::<u64>(),
        reads.lock().unwrap()
    );
    assert_eq!(forwarded, remotes as u64, "each forwarded once");
}

fn runner_settings() -> RunnerSettings {
    RunnerSettings {
        pull_wait: Duration::from_millis(50),
        max_batch: 16,
        policy: FailurePolicy {
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            ..FailurePolicy::default()
        },
        log_level: LogLevel::Warn,
        log_retry: Duration::from_secs(60),
        ..RunnerSettings::default()
    }
}

// ------------------------------------------------------- (b), (c), (d)

/// Commits `commit` until it is settled: an unknown outcome resolved
/// (landed → done; sealed → retried on the seal with a fresh token).
/// Returns the new checkpoint's sequence and how many tries it took.
fn commit_until_done(log: &NatsLog, mut commit: Commit) -> (u64, u32) {
    let give_up = Instant::now() + Duration::from_secs(120);
    let mut tries = 0;
    loop {
        assert!(Instant::now() < give_up, "no commit for 120 s");
        tries += 1;
        match log.commit(&commit) {
            Ok(done) => return (done.checkpoint, tries),
            Err(LogError::Unknown { .. } | LogError::Unavailable { .. }) => loop {
                match log.resolve_commit(&commit) {
                    Ok(Resolution::Landed(s)) => return (s, tries),
                    Ok(Resolution::NotLanded {
                        checkpoint,
                        sealed: true,
                    }) => {
                        commit = Commit::new(
                            commit.partition,
                            commit.reactor.clone(),
                            commit.reactions.clone(),
                            commit.checkpoint.clone(),
                            checkpoint.map_or(0, |c| c.sequence),
                        );
                        break;
                    }
                    Ok(other) => panic!("one writer, yet {other:?}"),
                    Err(_) => {
                        assert!(Instant::now() < give_up, "unresolved for 120 s");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            },
            Err(e) => panic!("commit failed: {e}"),
        }
    }
}

/// A source reactor in partition `p` committing batches of `per` records
/// for `targets` (entities of another partition) plus one of its own.
struct Source {
    p: u32,
    fence: u64,
    n: u64,
    own: String,
    targets: Vec<String>,
    /// Forwarded-record id → its entity.
    want: HashMap<EventId, String>,
    tries: u32,
}

impl Source {
    fn new(log: &NatsLog, p: u32, targets: Vec<String>) -> Source {
        Source {
            p,
            fence: 0,
            n: 0,
            own: entities_in(log, p, "own", 1).remove(0),
            targets,
            want: HashMap::new(),
            tries: 0,
        }
    }

    fn commit(&mut self, log: &NatsLog, per: usize, rng: &mut Rng) {
        let mut records = vec![proposal(&self.own, LOCAL, b"own")];
        let mut these = Vec::new();
        for _ in 0..per {
            let entity = &self.targets[rng.below(self.targets.len() as u64) as usize];
            let r = proposal(entity, REMOTE, format!("{}", self.n).as_bytes());
            self.n += 1;
            these.push((r.id.unwrap(), entity.clone()));
            records.push(r);
        }
        let commit = Commit::new(
            self.p,
            "reactor.source",
            records,
            self.n.to_string().into_bytes(),
            self.fence,
        );
        let (fence, tries) = commit_until_done(log, commit);
        self.fence = fence;
        self.tries += tries;
        self.want.extend(these);
    }
}

/// What happens to the target partition's stream leader while a relay
/// forwards into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// `kill -9`, restarted later.
    Kill,
    /// SIGSTOP past the election timeout (the relay's forward gets no
    /// answer: unknown, resolved), SIGCONT later with that forward's first
    /// copy still in its input.
    Pause,
}

#[test]
fn outbox_a_relay_stopped_mid_forward_across_kill_9_of_the_target_leader_forwards_exactly_once() {
    relay_failover(Failure::Kill);
}

#[test]
fn outbox_a_relay_whose_forward_meets_a_paused_target_leader_forwards_exactly_once() {
    relay_failover(Failure::Pause);
}

fn relay_failover(failure: Failure) {
    let _one = serial();
    let mut rng = Rng::seeded(&format!(
        "outbox: relay stopped mid-forward, {failure:?} of the target leader"
    ));
    let mut cluster = Cluster::start(3);
    let log = Arc::new(init(&cluster, 2, 3));
    let (p, q) = (0, 1);
    let targets = entities_in(&log, q, "sku", 4);
    // The source commits from its own thread and connection.
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(Mutex::new(0u64));
    let writer = {
        let (stop, commits, servers) = (stop.clone(), commits.clone(), cluster.servers());
        let seed = rng.below(u64::MAX);
        std::thread::spawn(move || {
            let log = NatsLog::open(&servers, options()).unwrap();
            let mut rng = Rng(seed | 1);
            let mut source = Source::new(&log, p, targets);
            while !stop.load(Ordering::Relaxed) {
                source.commit(&log, 5, &mut rng);
                *commits.lock().unwrap() += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            source
        })
    };
    let relay_a = Relay::spawn(log.clone(), q, relay_settings(7)).unwrap();
    // Forwarding under way, then the target's leader fails, and the relay
    // is stopped once its forwarding met the failure.
    let deadline = Instant::now() + Duration::from_secs(60);
    while relay_a.status().sources[0].forwarded < 60 {
        assert!(Instant::now() < deadline, "{:?}", relay_a.status());
        std::thread::sleep(Duration::from_millis(10));
    }
    let leader = cluster.wait_stream_leader(&stream_name(q), Duration::from_secs(20));
    match failure {
        Failure::Kill => cluster.kill(leader),
        Failure::Pause => cluster.pause(leader),
    }
    // Stopped once it met the failure (a failed or resolved step), or
    // once it forwarded through the new leader (it may have been idle
    // through the election when the source's leader failed too).
    let before = relay_a.status().sources[0].forwarded;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = relay_a.status();
        if s.retries + s.resolved > 0 || s.sources[0].forwarded >= before + 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "relay A neither met the {failure:?} nor went on: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    relay_a.stop();
    let deadline = Instant::now() + Duration::from_secs(180);
    while relay_a.status().state != RelayState::Stopped {
        assert!(Instant::now() < deadline, "relay A did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let a = relay_a.status();
    relay_a.join().unwrap();
    let relay_b = Relay::spawn(log.clone(), q, relay_settings(7)).unwrap();
    let at = *commits.lock().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while *commits.lock().unwrap() < at + 20 {
        assert!(
            Instant::now() < deadline,
            "the source stalled\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    match failure {
        Failure::Kill => cluster.restart(leader),
        Failure::Pause => cluster.resume(leader),
    }
    cluster.wait_ready(Duration::from_secs(30));
    // More forwards after the old leader is back (a paused one with relay
    // A's forward still in its input).
    let at = *commits.lock().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while *commits.lock().unwrap() < at + 20 {
        assert!(
            Instant::now() < deadline,
            "the source stalled\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let source = writer.join().expect("the source panicked");
    caught_up(&log, &relay_b, q, Duration::from_secs(120), &cluster);
    let b = relay_b.status();
    relay_b.stop_and_join().unwrap();
    let stored = eventually(&cluster, || check_forwarded(&log, REMOTE, &source.want));
    eprintln!(
        "outbox {failure:?}: {} source commits ({} tries) holding {} records for partition {q}; \
         relay A forwarded {} (resolved {}, retries {}, last error {:?}) before {failure:?} of {} \
         and its stop, relay B {} (fenced {}, resolved {}, retries {}); {stored} stored, each \
         exactly once",
        *commits.lock().unwrap(),
        source.tries,
        source.want.len(),
        a.sources[0].forwarded,
        a.resolved,
        a.retries,
        a.error,
        cluster.nodes[leader].name,
        b.sources[0].forwarded,
        b.fenced,
        b.resolved,
        b.retries
    );
    // A forward whose outcome stayed unknown (relay A stopped before it
    // could resolve it) may have landed without being counted by anyone.
    let counted = a.sources[0].forwarded + b.sources[0].forwarded;
    eprintln!(
        "  {} landed from a forward whose outcome relay A never learned",
        stored as u64 - counted.min(stored as u64)
    );
    assert!(counted <= stored as u64, "no forward counted twice");
}

/// A forward whose answer never comes: the target partition's stream
/// leader is paused (SIGSTOP) while a relay forwards, so the relay's
/// commit ends without an answer, with the batch still in the paused
/// server's input; it is resolved (or left unknown and the relay dropped
/// there). After SIGCONT a new relay instance takes over (and the old one
/// is stepped again too): each record lands once.
#[test]
fn outbox_a_forward_whose_answer_is_lost_lands_once_across_a_relay_restart() {
    let _one = serial();
    let mut rng = Rng::seeded("outbox: a forward whose answer is lost");
    let cluster = Cluster::start(3);
    let log = Arc::new(init(&cluster, 2, 3));
    let (p, q) = (0, 1);
    // The relay has forwarded to the one target entity before the leader
    // is paused (its checkpoint and the entity's head known, no read
    // needed), so its next forward goes straight to the paused leader.
    let mut first = Relay::new(log.clone(), q, relay_settings(100)).unwrap();
    let mut source = Source::new(&log, p, entities_in(&log, q, "sku", 1));
    source.commit(&log, 5, &mut rng);
    // Stepped until the 5 are forwarded (bounded): on a cluster that just
    // started, a read can meet a replica still catching up, or an election.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut forwarded = 0;
    while forwarded < 5 {
        match first.step() {
            Ok(r) => forwarded += r.forwarded,
            Err(e) => eprintln!("first forward, retried: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the first 5 not forwarded within 30 s ({forwarded})\n{}",
            cluster.logs()
        );
        if forwarded < 5 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(forwarded, 5);
    for _ in 0..4 {
        source.commit(&log, 5, &mut rng);
    }
    let leader = cluster.wait_stream_leader(&stream_name(q), Duration::from_secs(20));
    cluster.pause(leader);
    // Stepped until a forward went out and got no answer (a step whose
    // read of the source met the paused replica fails before sending; one
    // that reached a new leader already is reported as such).
    let deadline = Instant::now() + Duration::from_secs(60);
    let lost = loop {
        match first.step() {
            Err(e @ LogError::Unknown { .. }) => break format!("unknown: {e}"),
            Ok(r) if r.resolved > 0 => break format!("resolved: {r:?}"),
            Ok(r) if r.forwarded > 0 => break format!("answered by a new leader: {r:?}"),
            other => {
                eprintln!("  step while paused: {other:?}");
                assert!(
                    Instant::now() < deadline,
                    "no forward met the paused leader: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    cluster.resume(leader);
    cluster.wait_ready(Duration::from_secs(30));
    let mut second = Relay::new(log.clone(), q, relay_settings(100)).unwrap();
    let mut forwarded = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = second.step();
        let f = first.step();
        match (&s, &f) {
            (Ok(s), Ok(f)) => {
                forwarded.0 += s.forwarded;
                forwarded.1 += f.forwarded;
                if s.forwarded == 0 && f.forwarded == 0 {
                    break;
                }
            }
            _ => {
                assert!(Instant::now() < deadline, "steps failed: {s:?} {f:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    let stored = eventually(&cluster, || check_forwarded(&log, REMOTE, &source.want));
    eprintln!(
        "outbox lost answer: {} records from partition {p} for {q}; the forward to the paused \
         leader: {lost}; afterwards the new relay forwarded {}, the old one {}; {stored} \
         stored, each exactly once",
        source.want.len(),
        forwarded.0,
        forwarded.1,
    );
}

#[test]
fn outbox_two_relays_for_one_target_forward_exactly_once_and_the_zombie_is_fenced() {
    let _one = serial();
    let mut rng = Rng::seeded("outbox: two relays for one target");
    let cluster = Cluster::start(1);
    let log = Arc::new(init(&cluster, 3, 1));
    let q = 2;
    let targets = entities_in(&log, q, "sku", 3);
    let mut sources: Vec<Source> = (0..2)
        .map(|p| Source::new(&log, p, targets.clone()))
        .collect();
    // Deterministic: the zombie reads its checkpoints, the successor
    // forwards, then the zombie's forward (from the old position, on the
    // old fence) is refused whole.
    let mut zombie = Relay::new(log.clone(), q, relay_settings(50)).unwrap();
    let mut successor = Relay::new(log.clone(), q, relay_settings(50)).unwrap();
    assert_eq!(zombie.step().unwrap().forwarded, 0);
    for s in &mut sources {
        s.commit(&log, 10, &mut rng);
    }
    assert_eq!(successor.step().unwrap().forwarded, 20);
    let refused = zombie.step().unwrap();
    assert_eq!((refused.forwarded, refused.fenced), (0, 2), "{refused:?}");
    // Re-read, nothing left for it.
    assert_eq!(zombie.step().unwrap().forwarded, 0);
    // Then both on threads at once while the sources commit.
    let one = Relay::spawn(log.clone(), q, relay_settings(3)).unwrap();
    let two = Relay::spawn(log.clone(), q, relay_settings(3)).unwrap();
    for round in 0..40 {
        sources[round % 2].commit(&log, 1 + rng.below(6) as usize, &mut rng);
    }
    caught_up(&log, &one, q, Duration::from_secs(60), &cluster);
    caught_up(&log, &two, q, Duration::from_secs(60), &cluster);
    let (s1, s2) = (one.status(), two.status());
    one.stop_and_join().unwrap();
    two.stop_and_join().unwrap();
    let mut want = HashMap::new();
    for s in &sources {
        want.extend(s.want.clone());
    }
    let stored = eventually(&cluster, || check_forwarded(&log, REMOTE, &want));
    let f = |s: &batpak_nats::RelayStatus| s.sources.iter().map(|x| x.forwarded).sum::<u64>();
    eprintln!(
        "outbox zombie: {} records for partition {q} from 2 sources; step-driven: successor 20, \
         zombie fenced {}; threaded: relay one forwarded {} (fenced {}), relay two {} (fenced \
         {}); {stored} stored, each exactly once",
        want.len(),
        refused.fenced,
        f(&s1),
        s1.fenced,
        f(&s2),
        s2.fenced
    );
    assert_eq!(
        f(&s1) + f(&s2) + 20,
        stored as u64,
        "every forward counted once"
    );
}

#[test]
fn outbox_a_relay_resuming_after_the_deduplication_window_forwards_exactly_once() {
    let _one = serial();
    let mut rng = Rng::seeded("outbox: relay after the de-duplication window");
    let cluster = Cluster::start(1);
    let log = Arc::new(init(&cluster, 2, 1));
    let (p, q) = (0, 1);
    let window = set_duplicate_window(&cluster, q, Duration::from_secs(1));
    let targets = entities_in(&log, q, "sku", 2);
    let mut source = Source::new(&log, p, targets);
    // A relay reads its checkpoint and stops there (a relay that went down).
    let mut stale = Relay::new(log.clone(), q, relay_settings(100)).unwrap();
    assert_eq!(stale.step().unwrap().forwarded, 0);
    for _ in 0..5 {
        source.commit(&log, 8, &mut rng);
    }
    // Its successor forwards everything.
    let mut successor = Relay::new(log.clone(), q, relay_settings(100)).unwrap();
    assert_eq!(successor.step().unwrap().forwarded, 40);
    // Past the window, the stale relay resumes with its old position: the
    // server would no longer de-duplicate anything; the fence refuses it.
    std::thread::sleep(window * 3);
    let resumed = stale.step().unwrap();
    assert_eq!((resumed.forwarded, resumed.fenced), (0, 1), "{resumed:?}");
    // More records, then a fresh relay started after the window: it
    // forwards only what is new.
    for _ in 0..2 {
        source.commit(&log, 8, &mut rng);
    }
    std::thread::sleep(window * 2);
    let mut late = Relay::new(log.clone(), q, relay_settings(100)).unwrap();
    let l = late.step().unwrap();
    assert_eq!(l.forwarded, 16);
    let again = stale.step().unwrap();
    assert_eq!(again.forwarded, 0, "{again:?}");
    let stored = eventually(&cluster, || check_forwarded(&log, REMOTE, &source.want));
    eprintln!(
        "outbox window: duplicate window {window:?}; {} records; successor forwarded 40, the \
         stale relay resumed after {:?}: fenced {}, forwarded 0; a relay started later \
         forwarded {}; {stored} stored, each exactly once",
        source.want.len(),
        window * 3,
        resumed.fenced,
        l.forwarded
    );
}

/// Sets partition `p`'s stream's duplicate window to `window` (through
/// the client directly: the log never changes stream settings) and
/// returns what the server reports.
fn set_duplicate_window(cluster: &Cluster, p: u32, window: Duration) -> Duration {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let servers = cluster.servers();
    rt.block_on(async move {
        let client = async_nats::connect(servers.join(",")).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(stream_name(p)).await.unwrap();
        let mut config = stream.info().await.unwrap().config.clone();
        config.duplicate_window = window;
        let info = js.update_stream(config).await.unwrap();
        info.config.duplicate_window
    })
}
