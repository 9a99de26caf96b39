//! Node failures under a stream of appends on a 3-node cluster (one
//! partition, R3): kill -9 of the stream leader, SIGSTOP of the leader past
//! the election timeout. Every acknowledged append must be there
//! afterwards, once; a new leader must serve within a bound.

use crate::harness::{serial, Cluster};
use crate::{append_until_acked, init, options, proposal, Rng};
use batpak_nats::{partition::stream_name, Commit, LogError, NatsLog, Resolution};
use batpak_store::EventId;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a failover may take, from the failure to the next
/// acknowledged append (measured here: about 4 s).
const FAILOVER_BOUND: Duration = Duration::from_secs(25);

/// Appends from a thread until stopped; every acknowledged id with the
/// time of its ack. An append whose outcome was unknown (or that found no
/// leader) is retried with the same id until acknowledged.
struct Writer {
    acked: Arc<Mutex<Vec<(EventId, Instant)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Writer {
    fn start(log: NatsLog, rng: &mut Rng) -> Writer {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (acked.clone(), stop.clone());
        let entities: Vec<String> = (0..4)
            .map(|_| format!("order:{}", rng.below(1000)))
            .collect();
        let sizes: Vec<usize> = (0..16).map(|_| rng.below(2048) as usize).collect();
        let thread = std::thread::spawn(move || {
            let mut retries = 0u64;
            let mut n = 0usize;
            while !s.load(Ordering::Relaxed) {
                let p = proposal(
                    &entities[n % entities.len()],
                    "order.placed",
                    &vec![b'x'; sizes[n % sizes.len()]],
                );
                n += 1;
                append_until_acked(&log, &p, &mut retries);
                a.lock().unwrap().push((p.id.unwrap(), Instant::now()));
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

    /// Waits (bounded) until `n` appends are acknowledged.
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

    /// The longest pause between consecutive acks from `t` on (the first
    /// gap starts at `t`): how long appends stopped around a failure. An
    /// ack already in flight at `t` does not hide the gap that follows.
    fn longest_gap_after(&self, t: Instant) -> Duration {
        let acked = self.acked.lock().unwrap();
        let mut prev = t;
        let mut longest = Duration::ZERO;
        for at in acked.iter().map(|x| x.1).filter(|at| *at > t) {
            longest = longest.max(at - prev);
            prev = at;
        }
        longest
    }

    fn finish(mut self) -> (Vec<EventId>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let retries = self.thread.take().unwrap().join().expect("writer panicked");
        let ids = self.acked.lock().unwrap().iter().map(|x| x.0).collect();
        (ids, retries)
    }
}

/// Every id in `acked` is in the partition, and nothing is there twice.
fn assert_all_present_once(log: &NatsLog, acked: &[EventId], cluster: &Cluster) {
    for id in acked {
        let found = (0..20).find_map(|_| match log.lookup(*id) {
            Ok(Some(e)) => Some(e),
            _ => {
                std::thread::sleep(Duration::from_millis(250));
                None
            }
        });
        assert!(
            found.is_some(),
            "acknowledged append {id:?} is missing\n{}",
            cluster.logs()
        );
    }
    // Read everything back (from the leader's view: retry until a replica
    // serving the direct get has caught up with the leader's last sequence).
    let last = log.last_sequence(0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let b = log.read(0, after, 1000).unwrap();
            if b.events.is_empty() {
                break;
            }
            after = b.scanned;
            seen.extend(b.events.into_iter().map(|e| e.id()));
        }
        if after >= last || Instant::now() >= deadline {
            let unique: HashSet<_> = seen.iter().collect();
            assert_eq!(unique.len(), seen.len(), "an append is stored twice");
            assert!(
                after >= last,
                "read stopped at {after}, the leader has {last}"
            );
            let want: HashSet<_> = acked.iter().collect();
            assert!(want.is_subset(&unique));
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Rounds of the kill scenarios: `BATPAK_NATS_ROUNDS` (the long-run mode,
/// e.g. 50), 1 by default.
fn rounds() -> usize {
    std::env::var("BATPAK_NATS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

#[test]
fn kill_9_of_the_stream_leader_mid_appends_loses_no_acknowledged_append() {
    let _one = serial();
    let mut rng = Rng::seeded("kill -9 of the stream leader");
    let mut cluster = Cluster::start(3);
    let log = init(&cluster, 1, 3);
    let writer = Writer::start(
        NatsLog::open(&cluster.servers(), options()).unwrap(),
        &mut rng,
    );
    let rounds = rounds();
    let mut worst = Duration::ZERO;
    for round in 0..rounds {
        let leader = cluster.wait_stream_leader(&stream_name(0), Duration::from_secs(20));
        let before = writer.count() + 30 + rng.below(50) as usize;
        writer.wait_for(before, Duration::from_secs(60), &cluster);
        let killed_at = Instant::now();
        cluster.kill(leader);
        let acked_at_kill = writer.count();
        writer.wait_for(acked_at_kill + 30, Duration::from_secs(60), &cluster);
        let failover = writer.longest_gap_after(killed_at);
        let new_leader = cluster.wait_stream_leader(&stream_name(0), Duration::from_secs(20));
        assert_ne!(new_leader, leader);
        eprintln!(
            "round {}/{rounds}: kill -9 of leader {}: appends stopped for {:.2} s at most",
            round + 1,
            cluster.nodes[leader].name,
            failover.as_secs_f64()
        );
        assert!(failover < FAILOVER_BOUND, "failover took {failover:?}");
        worst = worst.max(failover);
        // The killed node comes back on its store and catches up.
        cluster.restart(leader);
        cluster.wait_ready(Duration::from_secs(30));
    }
    let (acked, retries) = writer.finish();
    eprintln!(
        "leader failover over {rounds} round(s): appends stopped for {:.2} s at most; {} acked, {} retries",
        worst.as_secs_f64(),
        acked.len(),
        retries
    );
    assert_all_present_once(&log, &acked, &cluster);
}

#[test]
fn kill_9_of_every_node_at_once_then_restart_loses_no_acknowledged_append() {
    let _one = serial();
    let mut rng = Rng::seeded("kill -9 of the whole cluster");
    let mut cluster = Cluster::start(3);
    let log = init(&cluster, 1, 3);
    let writer = Writer::start(
        NatsLog::open(&cluster.servers(), options()).unwrap(),
        &mut rng,
    );
    for round in 0..rounds() {
        let before = writer.count() + 30 + rng.below(100) as usize;
        writer.wait_for(before, Duration::from_secs(60), &cluster);
        // Every node dies with writes in flight: only what was fsynced by a
        // quorum was acknowledged, and that must all come back.
        for i in 0..3 {
            cluster.kill(i);
        }
        let acked_at_kill = writer.count();
        std::thread::sleep(Duration::from_millis(rng.below(1000)));
        for i in 0..3 {
            cluster.restart(i);
        }
        cluster.wait_ready(Duration::from_secs(60));
        writer.wait_for(acked_at_kill + 30, Duration::from_secs(90), &cluster);
        eprintln!(
            "round {}: whole cluster killed at {acked_at_kill} acks, serving again",
            round + 1
        );
    }
    let (acked, retries) = writer.finish();
    eprintln!(
        "whole-cluster kill: {} acked, {} retries",
        acked.len(),
        retries
    );
    assert_all_present_once(&log, &acked, &cluster);
}

#[test]
fn sigstop_of_the_stream_leader_past_the_election_timeout_then_sigcont() {
    let _one = serial();
    let mut rng = Rng::seeded("SIGSTOP of the stream leader");
    let cluster = Cluster::start(3);
    let log = init(&cluster, 1, 3);
    let leader = cluster.wait_stream_leader(&stream_name(0), Duration::from_secs(20));
    let writer = Writer::start(
        NatsLog::open(&cluster.servers(), options()).unwrap(),
        &mut rng,
    );
    writer.wait_for(30, Duration::from_secs(30), &cluster);
    let paused_at = Instant::now();
    cluster.pause(leader);
    let acked_at_pause = writer.count();
    // Past the election timeout (JetStream's Raft: at most about 9 s).
    writer.wait_for(acked_at_pause + 20, Duration::from_secs(60), &cluster);
    let remaining = Duration::from_secs(12).saturating_sub(paused_at.elapsed());
    std::thread::sleep(remaining);
    let failover = writer.longest_gap_after(paused_at);
    cluster.resume(leader);
    // After SIGCONT the old leader finds a newer term and follows; appends
    // go on.
    let resumed_count = writer.count();
    writer.wait_for(resumed_count + 30, Duration::from_secs(60), &cluster);
    let (acked, retries) = writer.finish();
    eprintln!(
        "SIGSTOP of leader {} for 12 s: appends stopped for {:.2} s at most; {} acked, {} retries",
        cluster.nodes[leader].name,
        failover.as_secs_f64(),
        acked.len(),
        retries
    );
    assert!(failover < FAILOVER_BOUND, "failover took {failover:?}");
    let now_leader = cluster.wait_stream_leader(&stream_name(0), Duration::from_secs(20));
    eprintln!("leader after SIGCONT: {}", cluster.nodes[now_leader].name);
    assert_all_present_once(&log, &acked, &cluster);
}

/// A commit whose answer is lost to a paused stream leader; the leader
/// resumes before (`resume_first`) or after the outcome is resolved. Either
/// way the resolution is final and the batch lands exactly once.
fn lost_answer(resume_first: bool) {
    let _one = serial();
    let cluster = Cluster::start(3);
    let log = init(&cluster, 1, 3);
    let leader = cluster.wait_stream_leader(&stream_name(0), Duration::from_secs(20));
    let batch = |tag: &str| {
        (0..10)
            .map(|i| proposal(&format!("item:{i}"), "stock.reserved", tag.as_bytes()))
            .collect::<Vec<_>>()
    };
    // Right after the stream's creation the leader may not serve yet ("no
    // responders"): a typed, transient Unavailable, retried as the runner
    // does, within a bound.
    let first = {
        let deadline = Instant::now() + Duration::from_secs(20);
        let first = Commit::new(0, "low-stock", batch("a"), b"1".to_vec(), 0);
        loop {
            match log.commit(&first) {
                Err(LogError::Unavailable { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => break other.unwrap(),
            }
        }
    };
    // The leader stops answering while the commit is in flight: no answer
    // within the client's timeout.
    cluster.pause(leader);
    let mut second = Commit::new(0, "low-stock", batch("b"), b"2".to_vec(), first.checkpoint);
    let outcome = log.commit(&second);
    if resume_first {
        cluster.resume(leader);
    }
    match &outcome {
        Err(LogError::Unknown { .. }) => {}
        other => panic!("a commit to a paused leader ended in {other:?}, not Unknown"),
    }
    // Resolve (retrying while the cluster settles), then retry only when it
    // did not land, on the fence the resolution hands back.
    let deadline = Instant::now() + Duration::from_secs(60);
    let landed_how = loop {
        assert!(Instant::now() < deadline, "unresolved\n{}", cluster.logs());
        match log.resolve_commit(&second) {
            Ok(Resolution::Landed(_)) => break "the first try landed",
            Ok(Resolution::NotLanded {
                checkpoint: Some(c),
                sealed: true,
            }) => {
                assert_eq!(c.payload, b"1", "a seal keeps the cursor where it was");
                if !resume_first {
                    // The old leader comes back with the first try still
                    // in its input: it must not land now.
                    cluster.resume(leader);
                    std::thread::sleep(Duration::from_secs(1));
                }
                second.expected = c.sequence;
                match log.commit(&second) {
                    Ok(_) => break "sealed, then a retry on the new fence landed it",
                    Err(LogError::Unknown { .. } | LogError::Unavailable { .. }) => {}
                    Err(e) => panic!("retry failed: {e}"),
                }
            }
            Ok(other) => panic!("the checkpoint moved elsewhere: {other:?}"),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !resume_first && landed_how == "the first try landed" {
        cluster.resume(leader);
    }
    eprintln!("unknown commit outcome resolved: {landed_how} ({outcome:?})");
    // Exactly once: 20 reactions, the second batch's ten each once.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = log.read(0, 0, 1000).unwrap().events;
        let b: Vec<_> = events.iter().filter(|e| &*e.payload == b"b").collect();
        if events.len() == 20 && b.len() == 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} events, {} of the second batch",
            events.len(),
            b.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let ck = log.checkpoint(0, "low-stock").unwrap().unwrap();
    assert_eq!(ck.token.as_deref(), Some(second.token.as_str()));
    assert_eq!(ck.payload, b"2");
}

#[test]
fn a_commit_whose_answer_is_lost_is_resolved_after_the_leader_resumes_and_lands_once() {
    lost_answer(true);
}

#[test]
fn a_commit_whose_answer_is_lost_is_sealed_while_the_leader_is_paused_and_lands_once() {
    lost_answer(false);
}

/// A reactor's commit loop as the runtime will run it: read inputs after
/// the checkpoint, commit their reactions with the new checkpoint, fenced;
/// resolve an unknown outcome from the checkpoint before anything else.
/// Returns when every input up to `last_input` is handled, with how many
/// commit tries did not simply succeed. `pace` stands for the work per
/// batch (the reactor's own time).
fn react_until(log: &NatsLog, last_input: u64, pace: Duration, deadline: Instant) -> u32 {
    let region = batpak_store::Region {
        kinds: vec!["order.placed".into()],
        ..Default::default()
    };
    let (mut fence, mut pos) = match log.checkpoint(0, "reserve").unwrap() {
        None => (0, 0),
        Some(c) => (
            c.sequence,
            String::from_utf8(c.payload).unwrap().parse().unwrap(),
        ),
    };
    let mut unknowns = 0;
    while pos < last_input {
        assert!(
            Instant::now() < deadline,
            "reactor stuck at {pos} of {last_input}"
        );
        let input = match log.read_region(0, &region, pos, 5) {
            Ok(b) => b,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if input.events.is_empty() {
            pos = pos.max(input.scanned);
            continue;
        }
        let reactions = input
            .events
            .iter()
            .map(|e| {
                let mut r = proposal(&e.coordinate().entity, "stock.reserved", b"");
                r.id = Some(EventId::derive(&[b"reserve", &e.id().0.to_le_bytes()]));
                r.causation = Some(e.id());
                r
            })
            .collect();
        let upto = input.events.last().unwrap().sequence();
        let mut commit = Commit::new(
            0,
            "reserve",
            reactions,
            upto.to_string().into_bytes(),
            fence,
        );
        let mut outcome = log.commit(&commit).map(|c| c.checkpoint);
        loop {
            match outcome {
                Ok(seq) => {
                    fence = seq;
                    pos = upto;
                    std::thread::sleep(pace);
                    break;
                }
                Err(LogError::Unavailable { .. } | LogError::Contended { .. }) => {
                    unknowns += 1;
                    std::thread::sleep(Duration::from_millis(100));
                    outcome = log.commit(&commit).map(|c| c.checkpoint);
                }
                Err(LogError::Unknown { .. } | LogError::Fenced { .. }) => {
                    unknowns += 1;
                    assert!(Instant::now() < deadline, "unresolved commit");
                    match log.resolve_commit(&commit) {
                        Ok(Resolution::Landed(seq)) => outcome = Ok(seq),
                        Ok(Resolution::NotLanded { checkpoint, sealed }) => {
                            assert!(sealed, "another instance moved the checkpoint");
                            fence = checkpoint.map_or(0, |c| c.sequence);
                            commit.expected = fence;
                            outcome = log.commit(&commit).map(|c| c.checkpoint);
                        }
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(100));
                            outcome = Err(LogError::Unknown {
                                op: "commit",
                                reason: "still resolving".into(),
                                resolve: "",
                            });
                        }
                    }
                }
                Err(e) => panic!("commit failed: {e}"),
            }
        }
    }
    unknowns
}

#[test]
fn reactor_commits_across_a_leader_kill_land_every_reaction_exactly_once() {
    let _one = serial();
    let mut rng = Rng::seeded("reactor across a leader kill");
    let mut cluster = Cluster::start(3);
    let log = init(&cluster, 1, 3);
    let inputs = 60 + rng.below(40);
    let mut last_input = 0;
    for i in 0..inputs {
        let p = proposal(
            &format!("order:{}", rng.below(20)),
            "order.placed",
            &[i as u8],
        );
        last_input = log.append(&p).unwrap().sequence;
    }
    let leader = cluster.wait_stream_leader(&stream_name(0), Duration::from_secs(20));
    let servers = cluster.servers();
    let reactor = std::thread::spawn(move || {
        let log = NatsLog::open(&servers, options()).unwrap();
        react_until(
            &log,
            last_input,
            Duration::from_millis(100),
            Instant::now() + Duration::from_secs(120),
        )
    });
    // Kill the leader while the reactor is committing.
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.checkpoint(0, "reserve").unwrap().is_none() {
        assert!(Instant::now() < deadline, "the reactor never committed");
        std::thread::sleep(Duration::from_millis(10));
    }
    cluster.kill(leader);
    let unknowns = reactor.join().expect("the reactor panicked");
    cluster.restart(leader);
    cluster.wait_ready(Duration::from_secs(30));
    // Exactly one reaction per input.
    let mut reactions = Vec::new();
    let mut after = 0;
    loop {
        let b = log.read(0, after, 1000).unwrap();
        if b.events.is_empty() {
            break;
        }
        after = b.scanned;
        reactions.extend(
            b.events
                .into_iter()
                .filter(|e| e.kind() == "stock.reserved")
                .map(|e| e.header.causation.unwrap()),
        );
    }
    let unique: HashSet<_> = reactions.iter().collect();
    eprintln!(
        "reactor across a leader kill: {inputs} inputs, {} reactions, {unknowns} commit tries failed, unknown or fenced (resolved)",
        reactions.len()
    );
    assert!(unknowns > 0, "the kill did not hit the reactor's commits");
    assert_eq!(unique.len(), reactions.len(), "a reaction landed twice");
    assert_eq!(reactions.len() as u64, inputs, "a reaction is missing");
}
