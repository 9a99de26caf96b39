//! Hosts on a real 3-node JetStream cluster (loopback; the provisioned
//! `nats-server`, see `host/nats/tests/cluster/`): three `batpak-host run
//! --store nats://…` processes run the `passthrough` reactor (one
//! `bench.out` per `bench.in`, on the input's entity, so in its partition)
//! over 2 partitions while a client appends through `NatsLog`. Each
//! scenario ends by checking, per partition, that every acknowledged
//! append is present once and has its reaction exactly once, and nothing
//! reacts to anything else:
//!
//! - `kill -9` of a host holding a slot while inputs flow: a standby takes
//!   the slot over (after the lease TTL);
//! - SIGSTOP of a host holding a slot past its lease: another host takes it
//!   over and seals its checkpoint; on SIGCONT the paused host's runner is
//!   refused by the fence (its stderr says so) and drops the slot;
//! - `kill -9` of a partition's stream leader while the hosts run;
//! - SIGSTOP of a stream leader for 6 s (past the election), then SIGCONT;
//! - `kill -9` of every node at once, then all restarted.
//!
//! - `swap passthrough NEW.wasm --store …` from another process right
//!   after one of two hosts was killed (-9): every partition's instance
//!   moves to the new version (as
//!   `status` shows), each host says it swapped its slots, and the swap
//!   records are stored.
//!
//!   Then `pause` cluster-wide (no host runs it; inputs wait) and
//!   `resume` (they get their reactions, exactly once).
//!
//! Rounds: `BATPAK_NATS_ROUNDS` (default 1); the seed (entities, which
//! host) is printed and replayed with `BATPAK_SEED`.

use crate::common::{
    bin, passthrough_variant, plugin, spawn_cluster_host, tempdir, wait_exit, KeptLines,
    CLUSTER_HOST_TTL_MS,
};
use crate::harness::{serial, Cluster};
use crate::nats_shared::{all_events, append_until_acked, init, options, rounds, Rng};
use batpak_nats::{partition::stream_name, NatsLog};
use batpak_store::{Coordinate, Event, EventId, Proposal};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const INPUT: &str = "bench.in";
const OUTPUT: &str = "bench.out";
const PARTITIONS: u32 = 4;
/// The hosts' lease TTL: failovers cost about this much.
const TTL_MS: &str = CLUSTER_HOST_TTL_MS;

/// One `batpak-host run --store …` process and its stderr (every line
/// kept, read on its own thread so no wait on it is unbounded).
struct HostProc {
    id: String,
    child: Option<Child>,
    lines: KeptLines,
    _data: tempfile::TempDir,
}

impl HostProc {
    fn start(cluster: &Cluster, id: &str) -> HostProc {
        HostProc::start_with(cluster, id, &plugin("passthrough"))
    }

    fn start_with(cluster: &Cluster, id: &str, file: &std::path::Path) -> HostProc {
        HostProc::start_all(cluster, id, &[file.to_path_buf()])
    }

    fn start_all(cluster: &Cluster, id: &str, files: &[std::path::PathBuf]) -> HostProc {
        let data = tempdir();
        let store = cluster.servers().join(",");
        let (child, lines) = spawn_cluster_host(
            Some(data.path()),
            &store,
            files,
            id,
            std::iter::empty::<&str>(),
        );
        HostProc {
            id: id.to_string(),
            child: Some(child),
            lines,
            _data: data,
        }
    }

    fn text(&self) -> String {
        self.lines.text()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {}", self.id);
    }

    /// Waits at most `limit` for a line after the first `from` lines that
    /// satisfies `pred`.
    fn wait_line(
        &self,
        from: usize,
        what: &str,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let who = format!("host {}", self.id);
        self.lines
            .wait_map(&who, from, what, limit, |l| pred(l).then(|| l.to_string()))
    }

    /// The reactor slots this host holds now, by its acquire/release lines.
    fn holds(&self) -> Vec<String> {
        let mut held = self.holds_all();
        held.retain(|s| s.starts_with("reactor/"));
        held
    }

    /// Every slot (reactor and relay) this host holds now.
    fn holds_all(&self) -> Vec<String> {
        let prefix = format!("cluster | {} ", self.id);
        let mut held: Vec<String> = Vec::new();
        for l in self.lines.lock().iter() {
            let Some(rest) = l.strip_prefix(&prefix) else {
                continue;
            };
            if let Some(s) = rest.strip_prefix("acquired ") {
                held.push(s.split_whitespace().next().unwrap_or("").to_string());
            } else if let Some(s) = rest.strip_prefix("released ") {
                let s = s.split_whitespace().next().unwrap_or("");
                held.retain(|h| h != s);
            }
        }
        held
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.lines.join();
    }

    /// SIGTERM, then the exit (at most 60 s), which must be 0; its stderr.
    fn stop(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let ok = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok);
            let status = wait_exit(&mut c, Duration::from_secs(60));
            self.lines.join();
            assert!(
                status.success(),
                "host {} exited {status:?}:\n{}",
                self.id,
                self.text()
            );
        }
        self.text()
    }
}

/// Every host's stderr, each under a `--- ID` line: what a failure shows.
fn hosts_text(hosts: &[HostProc]) -> String {
    hosts
        .iter()
        .map(|h| format!("--- {}\n{}", h.id, h.text()))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for HostProc {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A stopped process dies of SIGKILL too.
            let _ = Command::new("kill")
                .args(["-KILL", &c.id().to_string()])
                .status();
        }
        self.kill9();
    }
}

/// Waits (bounded) until every slot is held by one of `hosts`; returns
/// slot → host index.
fn wait_all_held(hosts: &[HostProc], limit: Duration) -> HashMap<String, usize> {
    let deadline = Instant::now() + limit;
    loop {
        let mut by: HashMap<String, usize> = HashMap::new();
        for (i, h) in hosts.iter().enumerate() {
            if h.child.is_none() {
                continue;
            }
            for s in h.holds() {
                by.insert(s, i);
            }
        }
        if by.len() == PARTITIONS as usize {
            return by;
        }
        assert!(
            Instant::now() < deadline,
            "not every slot held within {limit:?}: {by:?}\n{}",
            hosts_text(hosts)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (bounded) until every slot is held by the host `preferred` names
/// among the running hosts.
fn wait_spread(hosts: &[HostProc], limit: Duration) {
    let ids: Vec<String> = hosts.iter().map(|h| h.id.clone()).collect();
    let deadline = Instant::now() + limit;
    loop {
        let held = wait_all_held(hosts, limit);
        let wrong: Vec<String> = held
            .iter()
            .filter(|(slot, h)| batpak_nats::preferred(slot, &ids) != Some(&ids[**h]))
            .map(|(slot, h)| format!("{slot} on {}", ids[*h]))
            .collect();
        if wrong.is_empty() {
            let mut on: Vec<&String> = held.values().map(|h| &ids[*h]).collect();
            on.sort();
            on.dedup();
            eprintln!("slots spread over {} host(s): {held:?}", on.len());
            return;
        }
        assert!(
            Instant::now() < deadline,
            "slots not on their preferred hosts within {limit:?}: {wrong:?}\n{}",
            hosts_text(hosts)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn cluster_hosts_run_refuses_a_cluster_that_was_not_initialised_naming_cluster_init() {
    let _one = serial();
    plugin("passthrough");
    let cluster = Cluster::start(1);
    let store = cluster.servers().join(",");
    for args in [
        vec![
            "run".to_string(),
            plugin("passthrough").display().to_string(),
        ],
        vec!["status".to_string()],
    ] {
        let out = Command::new(bin())
            .arg("--store")
            .arg(&store)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("running batpak-host");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("not initialised") && err.contains("batpak-host cluster init"),
            "{args:?}: {err}"
        );
    }
}

/// `status --store … --json`, parsed.
fn status_json(cluster: &Cluster) -> Vec<serde_json::Value> {
    let out = Command::new(bin())
        .arg("--store")
        .arg(cluster.servers().join(","))
        .args(["status", "--json"])
        .output()
        .expect("running status");
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json")
}

/// The passthrough component, new digest per `k` (see
/// [`passthrough_variant`]).
fn variant(k: u32) -> Vec<u8> {
    passthrough_variant("cluster-swap-test", k)
}

#[test]
fn cluster_hosts_swap_pause_and_resume_from_any_machine_move_every_partition_exactly_once() {
    let _one = serial();
    plugin("passthrough");
    let mut rng = Rng::seeded("cluster hosts, swap");
    let cluster = Cluster::start(3);
    let log = init(&cluster, PARTITIONS, 3);
    let mut entities: Vec<String> = Vec::new();
    while (0..PARTITIONS).any(|p| !entities.iter().any(|e| log.partition_of(e) == p))
        || entities.len() < 6
    {
        entities.push(format!("item:{}", rng.below(100_000)));
    }
    let files = tempdir();
    // The second host starts with another build of the reactor: the
    // cluster's version (the first host's, published first) wins.
    let other = files.path().join("passthrough-other.wasm");
    std::fs::write(&other, variant(7)).unwrap();
    let mut hosts = vec![HostProc::start(&cluster, "ha")];
    hosts[0].wait_line(0, "publishing the reactor", Duration::from_secs(90), |l| {
        l.contains("published reactor passthrough")
    });
    hosts.push(HostProc::start_with(&cluster, "hb", &other));
    hosts[1].wait_line(
        0,
        "adopting the cluster's version",
        Duration::from_secs(90),
        |l| l.contains("the cluster runs reactor passthrough"),
    );
    wait_all_held(&hosts, Duration::from_secs(90));
    let first: Vec<String> = status_json(&cluster)
        .iter()
        .map(|s| s["digest"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(first.windows(2).all(|w| w[0] == w[1]), "{first:?}");
    let writer = Writer::start(
        NatsLog::open(&cluster.servers(), options()).unwrap(),
        entities,
    );
    writer.wait_more(40, Duration::from_secs(60));
    // The swap meets a host failure: one host dies (-9) just before it;
    // the other takes its slots over when their leases expire and runs
    // them on the new version.
    // The victim is the host holding fewer slots, so the survivor has
    // instances to swap.
    let victim = usize::from(hosts[1].holds().len() <= hosts[0].holds().len());
    let survivor_held = hosts[1 - victim].holds().len();
    hosts[victim].kill9();
    let new = files.path().join("passthrough-v2.wasm");
    std::fs::write(&new, variant(1)).unwrap();
    let out = Command::new(bin())
        .arg("--store")
        .arg(cluster.servers().join(","))
        .arg("swap")
        .arg("passthrough")
        .arg(&new)
        .output()
        .expect("running swap");
    assert!(
        out.status.success(),
        "swap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("swap's JSON");
    let digest = answer["new_digest"]
        .as_str()
        .expect("new_digest")
        .to_string();
    assert_ne!(digest, first[0]);
    let swapped_at = Instant::now();
    // Every partition's instance moves to it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = status_json(&cluster);
        if list.len() == PARTITIONS as usize && list.iter().all(|s| s["digest"] == digest.as_str())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every partition moved to {digest}: {list:?}\n{}\n{}",
            hosts[0].text(),
            hosts[1].text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "cluster-wide swap: every partition on the new version {} ms after `swap` returned",
        swapped_at.elapsed().as_millis()
    );
    // It comes back with its old file: it runs the cluster's new version.
    let back = if victim == 1 {
        other.clone()
    } else {
        plugin("passthrough")
    };
    let id = hosts[victim].id.clone();
    hosts[victim] = HostProc::start_with(&cluster, &id, &back);
    writer.wait_more(40, Duration::from_secs(60));
    let mut acked = writer.finish();
    wait_exactly_once(&log, &acked, &cluster, &hosts);
    // Pause cluster-wide: no host runs it, inputs appended meanwhile wait;
    // resume: they get their reactions, exactly once.
    let cli = |args: &[&str]| {
        let out = Command::new(bin())
            .arg("--store")
            .arg(cluster.servers().join(","))
            .args(args)
            .output()
            .expect("running batpak-host");
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).expect("JSON list")
    };
    let list = cli(&["pause", "passthrough"]);
    assert_eq!(list.len(), PARTITIONS as usize);
    assert!(list.iter().all(|s| s["host"].is_null()), "{list:?}");
    let more = Writer::start(
        NatsLog::open(&cluster.servers(), options()).unwrap(),
        vec![
            "item:paused-1".into(),
            "item:paused-2".into(),
            "item:paused-3".into(),
        ],
    );
    more.wait_more(20, Duration::from_secs(60));
    let paused_inputs = more.finish();
    std::thread::sleep(Duration::from_millis(1500)); // three lease ticks
    let reacted = (0..PARTITIONS)
        .flat_map(|p| all_events(&log, p).unwrap())
        .filter(|e| e.kind() == OUTPUT)
        .filter(|e| {
            paused_inputs
                .iter()
                .any(|a| Some(a.0) == e.header.causation)
        })
        .count();
    assert_eq!(reacted, 0, "a paused reactor reacted");
    let list = cli(&["resume", "passthrough"]);
    assert_eq!(list.len(), PARTITIONS as usize);
    acked.extend(paused_inputs);
    wait_exactly_once(&log, &acked, &cluster, &hosts);
    let mut swapped_lines = 0;
    for h in &mut hosts {
        let text = h.stop();
        swapped_lines += text
            .lines()
            .filter(|l| l.contains("swapped reactor/passthrough/"))
            .count();
    }
    // The survivor swapped the instances it ran; the victim's, taken over
    // after the swap, started on the new version (as `status` showed)
    // unless one was taken over before the survivor followed the new
    // version, and then swapped too.
    assert!(
        (survivor_held.max(1)..=PARTITIONS as usize).contains(&swapped_lines),
        "{swapped_lines} swaps for {survivor_held} instances the survivor ran at the swap"
    );
    // The swap records: each instance writes its own into its partition,
    // on that partition's copy of the reactor's stream.
    let mut records = 0;
    for p in 0..PARTITIONS {
        for e in all_events(&log, p).unwrap() {
            if e.kind() == "batpak.plugin.swapped" {
                let entity = &e.header.coordinate.entity;
                assert!(
                    entity.starts_with(&format!("reactor:passthrough/p{p}")),
                    "a swap record of partition {p} on {entity}"
                );
                records += 1;
            }
        }
    }
    assert!(records >= 1, "no batpak.plugin.swapped record stored");
    wait_exactly_once(&log, &acked, &cluster, &hosts);
    eprintln!(
        "cluster-wide swap: {} inputs acknowledged, each with its reaction exactly once; {swapped_lines} instances swapped, {records} swap records",
        acked.len()
    );
}

/// `status --store … --json` while the hosts run: every partition's slot
/// held by one of them with the other two standing by, the passthrough
/// version and digest, a position past the first inputs. Polled (at most
/// 30 s): a restarted host takes slots back moments after it starts, and
/// a slot being handed over is briefly held by nobody.
fn check_status(cluster: &Cluster, hosts: &[HostProc]) {
    let ids: Vec<&str> = hosts.iter().map(|h| h.id.as_str()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = status_json(cluster);
        let text = serde_json::to_string(&list).unwrap();
        let settled = list.len() == PARTITIONS as usize
            && list.iter().enumerate().all(|(p, s)| {
                s["reactor"] == "passthrough"
                    && s["partition"] == p as u64
                    && ids.contains(&s["host"].as_str().unwrap_or(""))
                    && s["standbys"] == 2
                    && s["digest"].as_str().is_some_and(|d| d.len() >= 12)
                    && s["position"].as_u64().is_some_and(|n| n > 0)
            });
        if settled {
            eprintln!("status --store: {text}");
            return;
        }
        assert!(Instant::now() < deadline, "status never settled: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An acknowledged input: id, partition, payload.
type Acked = (EventId, u32, String);

struct Writer {
    acked: Arc<Mutex<Vec<Acked>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(log: NatsLog, entities: Vec<String>) -> Writer {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (acked.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0usize;
            while !s.load(Ordering::Relaxed) {
                let payload = format!("in{n}");
                let mut p = Proposal::new(
                    Coordinate::new(&entities[n % entities.len()], "bench").unwrap(),
                    INPUT,
                    payload.clone().into_bytes(),
                );
                p.id = Some(EventId::generate());
                n += 1;
                let r = append_until_acked(&log, &p, &mut 0);
                a.lock()
                    .unwrap()
                    .push((p.id.unwrap(), r.partition, payload));
                std::thread::sleep(Duration::from_millis(10));
            }
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

    fn wait_more(&self, n: usize, limit: Duration) {
        let target = self.count() + n;
        let deadline = Instant::now() + limit;
        while self.count() < target {
            assert!(
                Instant::now() < deadline,
                "appends stalled at {}",
                self.count()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(mut self) -> Vec<Acked> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("writer panicked");
        self.acked.lock().unwrap().clone()
    }
}

/// Partition `p` holds each of its acknowledged inputs once with its
/// reaction exactly once, and no other reaction.
fn check_partition(log: &NatsLog, p: u32, acked: &[Acked]) -> Result<usize, String> {
    let mut inputs: HashMap<EventId, u32> = HashMap::new();
    let mut outs: HashMap<EventId, Vec<String>> = HashMap::new();
    for e in all_events(log, p)? {
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
    for (id, _, payload) in &mine {
        if inputs.get(id) != Some(&1) {
            return Err(format!(
                "input {payload} present {:?} times",
                inputs.get(id)
            ));
        }
        let got = outs.remove(id).unwrap_or_default();
        if got != vec![payload.clone()] {
            return Err(format!(
                "input {payload}: reactions {got:?}, want exactly one"
            ));
        }
    }
    if !outs.is_empty() {
        return Err(format!(
            "{} reactions to causes not acknowledged",
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
    Ok(mine.len())
}

/// Every event of partition `p` that a read shows more than once: inputs
/// by id, reactions by cause; each copy as (id, stream sequence).
fn duplicates(log: &NatsLog, p: u32) -> Result<Vec<Vec<(EventId, u64)>>, String> {
    let mut inputs: HashMap<EventId, Vec<(EventId, u64)>> = HashMap::new();
    let mut outs: HashMap<EventId, Vec<(EventId, u64)>> = HashMap::new();
    for e in all_events(log, p)? {
        let copy = (e.id(), e.header.sequence);
        match e.kind() {
            INPUT => inputs.entry(e.id()).or_default().push(copy),
            OUTPUT => outs
                .entry(e.header.causation.ok_or("a reaction without a cause")?)
                .or_default()
                .push(copy),
            _ => {}
        }
    }
    Ok(inputs
        .into_values()
        .chain(outs.into_values())
        .filter(|v| v.len() > 1)
        .collect())
}

/// What the stream leader holds for each copy a read showed twice: the
/// event at each copy's sequence (leader-served), and the last sequence
/// of each id's subject. Tells a duplicate stored in the stream from a
/// replica's view.
fn leader_view(log: &NatsLog, p: u32, dups: &[Vec<(EventId, u64)>]) -> String {
    let mut out = String::new();
    for copies in dups {
        for (id, seq) in copies {
            let at = match log.get_by_sequence(p, *seq) {
                Ok(Some(e)) => format!(
                    "leader has {} ({}, cause {:?}) at {seq}",
                    e.id(),
                    e.kind(),
                    e.header.causation
                ),
                Ok(None) => format!("leader has NO event at {seq}"),
                Err(e) => format!("leader read at {seq} failed: {e}"),
            };
            let by_id = match log.lookup_in(p, *id) {
                Ok(Some(e)) => format!("its id's last copy at {}", e.header.sequence),
                Ok(None) => "its id not found by subject".to_string(),
                Err(e) => format!("lookup failed: {e}"),
            };
            out.push_str(&format!("\n  copy {id} read at {seq}: {at}; {by_id}"));
        }
    }
    // The stream around the copies as the leader holds it: which commit
    // (token) put each checkpoint there, and at which position.
    let seqs: Vec<u64> = dups.iter().flatten().map(|(_, s)| *s).collect();
    if let (Some(lo), Some(hi)) = (seqs.iter().min(), seqs.iter().max()) {
        for s in lo.saturating_sub(8).max(1)..=hi + 3 {
            match log.message_at(p, s) {
                Ok(Some(m)) if !m.subject.contains(".e.") => {
                    out.push_str(&format!(
                        "\n  {s}: {} token {:?} {}",
                        m.subject,
                        m.token,
                        String::from_utf8_lossy(&m.bytes)
                    ));
                }
                Ok(Some(m)) => out.push_str(&format!("\n  {s}: {}", m.subject)),
                Ok(None) => out.push_str(&format!("\n  {s}: none")),
                Err(e) => out.push_str(&format!("\n  {s}: read failed: {e}")),
            }
        }
    }
    out
}

/// Right after a round's failure: no read of any partition shows an event
/// twice (bounded: a read that fails or shows a duplicate is retried for
/// 60 s; what the leader holds is printed for every duplicate seen).
fn no_duplicates(log: &NatsLog, round: usize, cluster: &Cluster, hosts: &[HostProc]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for p in 0..PARTITIONS {
        let mut shown = false;
        loop {
            match duplicates(log, p) {
                Ok(d) if d.is_empty() => {
                    if shown {
                        eprintln!("  round {round}: partition {p}: the duplicate view cleared");
                    }
                    break;
                }
                Ok(d) => {
                    if !shown {
                        eprintln!(
                            "  round {round}: partition {p}: a read shows copies twice: {}",
                            leader_view(log, p, &d)
                        );
                        shown = true;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "round {round}: partition {p}: copies read twice for 60 s: {}\n{}\n{}",
                        leader_view(log, p, &d),
                        cluster.logs(),
                        hosts_text(hosts)
                    );
                }
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "round {round}: partition {p}: reads fail: {e}"
                ),
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Waits (bounded) until every partition passes [`check_partition`].
fn wait_exactly_once(log: &NatsLog, acked: &[Acked], cluster: &Cluster, hosts: &[HostProc]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for p in 0..PARTITIONS {
        loop {
            match check_partition(log, p, acked) {
                Ok(_) => break,
                Err(e) if Instant::now() >= deadline => panic!(
                    "partition {p}: {e}{}\n{}\n{}",
                    duplicates(log, p)
                        .map(|d| leader_view(log, p, &d))
                        .unwrap_or_default(),
                    cluster.logs(),
                    hosts_text(hosts)
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// kill -9 of a host holding a slot.
    KillHost,
    /// SIGSTOP of a host holding a slot past its lease, SIGCONT after the
    /// takeover.
    PauseHost,
    /// kill -9 of a partition's stream leader (restarted later).
    KillLeader,
    /// SIGSTOP of a partition's stream leader for longer than the
    /// election timeout, then SIGCONT.
    PauseNode,
    /// kill -9 of every node at once, then all restarted.
    RestartCluster,
}

#[test]
fn cluster_hosts_a_standby_takes_over_a_host_killed_with_sigkill_exactly_once() {
    scenario(Failure::KillHost);
}

#[test]
fn cluster_hosts_a_paused_host_resumed_after_a_takeover_is_fenced_exactly_once() {
    scenario(Failure::PauseHost);
}

#[test]
fn cluster_hosts_run_exactly_once_across_kill_9_of_the_stream_leader() {
    scenario(Failure::KillLeader);
}

#[test]
fn cluster_hosts_run_exactly_once_across_sigstop_of_a_node_past_the_election() {
    scenario(Failure::PauseNode);
}

#[test]
fn cluster_hosts_run_exactly_once_across_a_restart_of_the_whole_cluster() {
    scenario(Failure::RestartCluster);
}

fn scenario(failure: Failure) {
    let _one = serial();
    plugin("passthrough"); // built before the clock of any wait starts
    let mut rng = Rng::seeded(&format!("cluster hosts, {failure:?}"));
    let mut cluster = Cluster::start(3);
    let log = init(&cluster, PARTITIONS, 3);
    let mut entities: Vec<String> = Vec::new();
    while (0..PARTITIONS).any(|p| !entities.iter().any(|e| log.partition_of(e) == p))
        || entities.len() < 6
    {
        entities.push(format!("item:{}", rng.below(100_000)));
    }
    let mut hosts: Vec<HostProc> = ["ha", "hb", "hc"]
        .iter()
        .map(|id| HostProc::start(&cluster, id))
        .collect();
    wait_all_held(&hosts, Duration::from_secs(90));
    // Spread: each slot settles on its rendezvous-preferred host (the first
    // host up took every slot; the others' heartbeats make it hand back).
    wait_spread(&hosts, Duration::from_secs(60));
    let writer = Writer::start(
        NatsLog::open(&cluster.servers(), options()).unwrap(),
        entities,
    );
    let mut fenced_seen = 0;
    for round in 0..rounds() {
        writer.wait_more(30 + rng.below(40) as usize, Duration::from_secs(60));
        let held = wait_all_held(&hosts, Duration::from_secs(60));
        match failure {
            Failure::KillHost | Failure::PauseHost => {
                // A host holding a slot, chosen by the seed.
                let mut owners: Vec<usize> = held.values().copied().collect();
                owners.sort();
                owners.dedup();
                let victim = owners[rng.below(owners.len() as u64) as usize];
                let slots: Vec<String> = held
                    .iter()
                    .filter(|(_, h)| **h == victim)
                    .map(|(s, _)| s.clone())
                    .collect();
                let id = hosts[victim].id.clone();
                if failure == Failure::KillHost {
                    hosts[victim].kill9();
                } else {
                    hosts[victim].signal("-STOP");
                }
                let seen_before = hosts[victim].lines.lock().len();
                let at = Instant::now();
                eprintln!("round {}: {failure:?} of {id} holding {slots:?}", round + 1);
                // Another host takes each of its slots over.
                let deadline = Instant::now() + Duration::from_secs(60);
                'slots: for slot in &slots {
                    loop {
                        for (i, h) in hosts.iter().enumerate() {
                            if i != victim && h.child.is_some() && h.holds().contains(slot) {
                                continue 'slots;
                            }
                        }
                        assert!(
                            Instant::now() < deadline,
                            "nobody took {slot} over from {id}"
                        );
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                eprintln!(
                    "  every slot of {id} taken over {} ms after the {failure:?} (lease TTL {TTL_MS} ms)",
                    at.elapsed().as_millis()
                );
                writer.wait_more(30, Duration::from_secs(60));
                if failure == Failure::KillHost {
                    hosts[victim] = HostProc::start(&cluster, &id);
                } else {
                    hosts[victim].signal("-CONT");
                    // Its runner's next commit is refused by the seal.
                    let line = hosts[victim].wait_line(
                        seen_before,
                        "saying the paused host's commit was refused (fenced)",
                        Duration::from_secs(60),
                        |l| l.contains("fenced") || l.contains("lost its lease"),
                    );
                    eprintln!("  {id} after SIGCONT: {line}");
                    if line.contains("fenced") {
                        fenced_seen += 1;
                    }
                }
            }
            Failure::KillLeader => {
                let p = round as u32 % PARTITIONS;
                let leader = cluster.wait_stream_leader(&stream_name(p), Duration::from_secs(20));
                cluster.kill(leader);
                eprintln!(
                    "round {}: kill -9 of the leader of partition {p}",
                    round + 1
                );
                writer.wait_more(40, Duration::from_secs(90));
                cluster.restart(leader);
                cluster.wait_ready(Duration::from_secs(30));
                no_duplicates(&log, round + 1, &cluster, &hosts);
            }
            Failure::PauseNode => {
                let p = round as u32 % PARTITIONS;
                let leader = cluster.wait_stream_leader(&stream_name(p), Duration::from_secs(20));
                cluster.pause(leader);
                eprintln!(
                    "round {}: SIGSTOP of {} (leader of partition {p}) for 6 s",
                    round + 1,
                    cluster.nodes[leader].name
                );
                // Past the election timeout: the others elect a new leader
                // and the appends go on.
                std::thread::sleep(Duration::from_secs(6));
                writer.wait_more(20, Duration::from_secs(90));
                cluster.resume(leader);
                cluster.wait_ready(Duration::from_secs(30));
                no_duplicates(&log, round + 1, &cluster, &hosts);
            }
            Failure::RestartCluster => {
                for i in 0..cluster.nodes.len() {
                    cluster.kill(i);
                }
                eprintln!("round {}: kill -9 of every node", round + 1);
                std::thread::sleep(Duration::from_millis(500 + rng.below(1500)));
                for i in 0..cluster.nodes.len() {
                    cluster.restart(i);
                }
                cluster.wait_ready(Duration::from_secs(60));
                writer.wait_more(40, Duration::from_secs(120));
            }
        }
    }
    let acked = writer.finish();
    wait_exactly_once(&log, &acked, &cluster, &hosts);
    if failure == Failure::KillHost {
        check_status(&cluster, &hosts);
    }
    let mut texts = Vec::new();
    for h in &mut hosts {
        texts.push(h.stop());
    }
    // After the hosts committed and left: still exactly once.
    wait_exactly_once(&log, &acked, &cluster, &hosts);
    eprintln!(
        "cluster hosts, {failure:?}: {} rounds, {} inputs acknowledged, each with its reaction exactly once; fenced refusals seen: {fenced_seen}",
        rounds(),
        acked.len()
    );
    if failure == Failure::PauseHost {
        assert!(
            fenced_seen > 0 || texts.iter().any(|t| t.contains("fenced")),
            "no paused host's commit was refused by the fence:\n{}",
            texts.join("\n---\n")
        );
    }
}

/// The demo's three reactors on two hosts over a 4-partition cluster:
/// `inventory` reacts to `order.placed` (entity `order:N`) with
/// `inventory.reserved` on `sku:<sku>` — most in another partition, so
/// through the source's outbox and the target's relay — and `shipping`
/// reacts to that with `shipment.requested` back on the order's entity,
/// again across partitions. A host is killed (-9) half-way; its reactor
/// and relay slots move to the other host. Every order gets exactly one
/// inventory reaction, every reservation exactly one shipment.
#[test]
fn cluster_hosts_the_demo_reactors_react_across_partitions_exactly_once_through_a_host_kill() {
    let _one = serial();
    let files: Vec<std::path::PathBuf> = ["inventory", "shipping", "low_stock"]
        .iter()
        .map(|p| plugin(p))
        .collect();
    let mut rng = Rng::seeded("cluster hosts, the demo's reactors");
    let cluster = Cluster::start(3);
    let log = init(&cluster, PARTITIONS, 3);
    let mut hosts: Vec<HostProc> = ["da", "db"]
        .iter()
        .map(|id| HostProc::start_all(&cluster, id, &files))
        .collect();
    let relays_held = |hosts: &[HostProc]| {
        hosts
            .iter()
            .filter(|h| h.child.is_some())
            .flat_map(|h| h.holds_all())
            .filter(|s| s.starts_with("relay/"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while relays_held(&hosts) < PARTITIONS as usize {
        assert!(
            Instant::now() < deadline,
            "not every relay slot held:\n{}\n{}",
            hosts[0].text(),
            hosts[1].text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let skus = ["widget", "gadget", "gizmo"];
    let mut orders: Vec<EventId> = Vec::new();
    let place = |n: usize, rng: &mut Rng, orders: &mut Vec<EventId>| {
        for _ in 0..n {
            let i = orders.len();
            let sku = skus[rng.below(skus.len() as u64) as usize];
            let mut p = Proposal::new(
                Coordinate::new(format!("order:{i}"), "shop").unwrap(),
                "order.placed",
                format!(r#"{{"sku":"{sku}","qty":1}}"#).into_bytes(),
            );
            p.id = Some(EventId::generate());
            append_until_acked(&log, &p, &mut 0);
            orders.push(p.id.unwrap());
        }
    };
    place(12, &mut rng, &mut orders);
    // Kill the host holding the most slots once the first orders flow.
    std::thread::sleep(Duration::from_millis(500));
    let victim = usize::from(hosts[1].holds_all().len() > hosts[0].holds_all().len());
    eprintln!(
        "kill -9 of {} holding {:?}",
        hosts[victim].id,
        hosts[victim].holds_all()
    );
    hosts[victim].kill9();
    place(12, &mut rng, &mut orders);
    // Read every partition until each order has one inventory reaction
    // and each reservation one shipment (bounded).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut events: Vec<(u32, Event)> = Vec::new();
        for p in 0..PARTITIONS {
            if let Ok(all) = all_events(&log, p) {
                events.extend(all.into_iter().map(|e| (p, e)));
            }
        }
        let by_cause = |kinds: &[&str]| {
            let mut m: HashMap<EventId, Vec<(u32, EventId)>> = HashMap::new();
            for (p, e) in &events {
                if kinds.contains(&e.kind()) {
                    if let Some(c) = e.header.causation {
                        m.entry(c).or_default().push((*p, e.id()));
                    }
                }
            }
            m
        };
        let inventory = by_cause(&["inventory.reserved", "inventory.rejected"]);
        let shipments = by_cause(&["shipment.requested"]);
        let reserved: Vec<(u32, EventId)> = events
            .iter()
            .filter(|(_, e)| e.kind() == "inventory.reserved")
            .map(|(p, e)| (*p, e.id()))
            .collect();
        let twice: Vec<_> = inventory
            .values()
            .chain(shipments.values())
            .filter(|v| v.len() > 1)
            .collect();
        assert!(twice.is_empty(), "reactions stored twice: {twice:?}");
        let done = orders.iter().all(|o| inventory.contains_key(o))
            && reserved.iter().all(|(_, r)| shipments.contains_key(r));
        if done {
            let order_partition: HashMap<EventId, u32> = events
                .iter()
                .filter(|(_, e)| e.kind() == "order.placed")
                .map(|(p, e)| (e.id(), *p))
                .collect();
            let crossed = inventory
                .iter()
                .filter(|(o, r)| order_partition.get(o) != Some(&r[0].0))
                .count();
            eprintln!(
                "{} orders: {} reserved ({} of the inventory reactions in another partition than \
                 their order), each with one shipment; all exactly once",
                orders.len(),
                reserved.len(),
                crossed
            );
            assert!(crossed > 0, "no reaction crossed partitions");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every order reacted to within 120 s ({} of {} orders, {} reserved, {} \
             shipments)\n{}\n{}",
            orders.iter().filter(|o| inventory.contains_key(o)).count(),
            orders.len(),
            reserved.len(),
            shipments.len(),
            hosts[0].text(),
            hosts[1].text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let survivor = 1 - victim;
    let text = hosts[survivor].stop();
    assert!(
        text.contains("acquired relay/"),
        "the surviving host never ran a relay:\n{text}"
    );
}
