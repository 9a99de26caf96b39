//! `batpak-bench cluster`: the host's log on NATS JetStream beside the
//! embedded store, in one run. The clusters are started by the benchmark
//! ([`batpak_host_lib::LocalCluster`], the provisioned `nats-server` as
//! `cluster dev` and the tests use, every node with `sync_interval:
//! always`) on loopback, and removed afterwards.
//!
//! Rows:
//! - durable appends/s, one writer waiting for each, and 8 writers: the
//!   embedded store (`AppendOptions::durable()`), a 1-node cluster (R1) and
//!   a 3-node cluster (R3), one partition;
//! - the pipeline: the runtime's real runner with a native reactor emitting
//!   two reactions per input (as `host/nats/tests/cluster/runner.rs`), one
//!   runner per partition over `PartitionLog`, on a 3-node cluster with 1,
//!   2 and 4 partitions, and over the embedded store: inputs handled per
//!   second from start to caught up;
//! - CPU per event: this process (utime+stime of `/proc/self/stat`) and the
//!   nats-server processes (`/proc/<pid>/stat`), over each timed phase;
//! - the N-machine model those per-event costs imply, printed as a model.

use anyhow::{bail, Context, Result};
use batpak_host_lib::{default_toolchains, LocalCluster};
use batpak_log::SharedLog;
use batpak_nats::{init_cluster, InitSpec, LogError, NatsLog, NatsOptions, PartitionLog};
use batpak_runtime::{Descriptor, ReactFailure, Reaction, Reactor, RunnerSettings};
use batpak_store::{AppendOptions, CanalHandle, Coordinate, EventId, EventView, Proposal, Store};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INPUT: &str = "bench.in";
const OUTPUT: &str = "bench.out";
const WRITERS: usize = 8;
const PAYLOAD: &[u8] = br#"{"sku":"widget-0042","qty":3}"#;

/// Clock ticks per second of `/proc/*/stat` times (`sysconf(_SC_CLK_TCK)`).
fn ticks() -> f64 {
    // SAFETY: sysconf reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU seconds (user + system) of process `pid` (`self` for this one).
fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 here.
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / ticks()
}

/// CPU seconds of this process and of `servers`, taken together.
#[derive(Clone, Copy)]
struct Cpu {
    host: f64,
    servers: f64,
}

fn cpu(servers: &[u32]) -> Cpu {
    Cpu {
        host: cpu_secs("self"),
        servers: servers.iter().map(|p| cpu_secs(&p.to_string())).sum(),
    }
}

/// One timed phase: events, wall time, CPU of host and servers.
struct Phase {
    events: u64,
    secs: f64,
    host_cpu: f64,
    server_cpu: f64,
}

impl Phase {
    fn measure(servers: &[u32], f: impl FnOnce() -> Result<u64>) -> Result<Phase> {
        let c0 = cpu(servers);
        let t = Instant::now();
        let events = f()?;
        let secs = t.elapsed().as_secs_f64();
        let c1 = cpu(servers);
        Ok(Phase {
            events,
            secs,
            host_cpu: c1.host - c0.host,
            server_cpu: c1.servers - c0.servers,
        })
    }

    fn rate(&self) -> f64 {
        self.events as f64 / self.secs.max(1e-9)
    }

    fn host_us(&self) -> f64 {
        self.host_cpu * 1e6 / self.events.max(1) as f64
    }

    fn server_us(&self) -> f64 {
        self.server_cpu * 1e6 / self.events.max(1) as f64
    }
}

fn proposal(entity: &str, kind: &str) -> Proposal {
    let mut p = Proposal::new(
        Coordinate::new(entity, "bench").expect("valid"),
        kind,
        PAYLOAD.to_vec(),
    );
    p.id = Some(EventId::generate());
    p
}

/// Appends until acknowledged: an unknown or unavailable outcome is sent
/// again with the same id (de-duplicated), bounded to 60 s.
fn append_acked(log: &NatsLog, p: &Proposal) -> Result<()> {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        match log.append(p) {
            Ok(_) => return Ok(()),
            Err(LogError::Unknown { .. } | LogError::Unavailable { .. })
                if Instant::now() < give_up =>
            {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `writers` threads appending one at a time (each waiting for its ack)
/// for `secs` or until `max` appends in all; returns how many.
fn appends<L: Sync>(
    target: &L,
    writers: usize,
    secs: f64,
    max: u64,
    append: impl Fn(&L, usize, u64) -> Result<()> + Sync,
) -> Result<u64> {
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    std::thread::scope(|s| -> Result<()> {
        let hs: Vec<_> = (0..writers)
            .map(|w| {
                let (done, stop, append) = (&done, &stop, &append);
                s.spawn(move || -> Result<()> {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if Instant::now() >= end || done.fetch_add(1, Ordering::Relaxed) >= max {
                            stop.store(true, Ordering::Relaxed);
                            break;
                        }
                        append(target, w, i)?;
                        i += 1;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in hs {
            h.join().expect("writer panicked")?;
        }
        Ok(())
    })?;
    // The counter overshoots by one per writer that stopped on `max`.
    Ok(done.load(Ordering::Relaxed).min(max))
}

/// Two reactions per input, on the input's entity (so in its partition).
struct Confirmer(Descriptor);

impl Confirmer {
    fn boxed(name: &str) -> Box<dyn Reactor> {
        let mut d = Descriptor::new(name, "1.0.0");
        d.region = batpak_store::Region::all().kinds([INPUT]);
        d.emits = vec![OUTPUT.into()];
        Box::new(Confirmer(d))
    }
}

impl Reactor for Confirmer {
    fn descriptor(&self) -> &Descriptor {
        &self.0
    }
    fn digest(&self) -> &str {
        "native-confirmer"
    }
    fn react(&mut self, batch: &[EventView]) -> Result<Vec<Reaction>, ReactFailure> {
        let mut out = Vec::with_capacity(batch.len() * 2);
        for (i, e) in batch.iter().enumerate() {
            let c = e.coordinate();
            for _ in 0..2 {
                out.push(Reaction::new(
                    i as u32,
                    c.entity,
                    c.scope,
                    OUTPUT,
                    PAYLOAD.to_vec(),
                ));
            }
        }
        Ok(out)
    }
}

fn settings() -> RunnerSettings {
    RunnerSettings {
        pull_wait: Duration::from_millis(5),
        max_batch: 64,
        log_level: batpak_runtime::LogLevel::Warn,
        ..RunnerSettings::default()
    }
}

/// Runs reactor `name` as one runner per log in `logs` until their inputs
/// handled reach `inputs`; the count handled.
fn run_pipeline(logs: Vec<SharedLog>, name: &str, inputs: u64) -> Result<u64> {
    let hs = logs
        .into_iter()
        .map(|l| batpak_runtime::spawn(l, Confirmer::boxed(name), settings()))
        .collect::<Result<Vec<_>, _>>()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut handled = 0;
        for h in &hs {
            let snap = h.status().snapshot(0);
            if let Some(e) = snap.error {
                bail!("runner failed: {e:?}");
            }
            handled += snap.events_in;
        }
        if handled >= inputs {
            break;
        }
        if Instant::now() >= deadline {
            bail!("the pipeline handled {handled} of {inputs} inputs in 600 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for h in hs {
        Box::new(h).stop_and_join()?;
    }
    Ok(inputs)
}

/// A base port P with P+i, P+100+i and P+200+i (i < n) free on loopback.
fn free_base(n: u16) -> Result<u16> {
    for _ in 0..200 {
        let p = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if p > 65000 {
            continue;
        }
        let held: Vec<_> = (0..n)
            .flat_map(|i| [p + i, p + 100 + i, p + 200 + i])
            .map(|q| TcpListener::bind(("127.0.0.1", q)))
            .collect();
        if held.iter().all(Result::is_ok) {
            return Ok(p);
        }
    }
    bail!("no free ports on loopback")
}

/// A started and initialised cluster: nodes, K partitions, R = nodes.
struct Bench {
    cluster: LocalCluster,
    log: Arc<NatsLog>,
    servers: Vec<String>,
}

fn start(bin: &Path, dir: &Path, nodes: u16, partitions: u32) -> Result<Bench> {
    let port = free_base(nodes)?;
    let cluster = LocalCluster::start(bin, dir, nodes, port, &|| false)?
        .context("the cluster start was cancelled")?;
    let servers: Vec<String> = cluster.store().split(',').map(String::from).collect();
    let spec = InitSpec {
        servers: servers.clone(),
        monitors: cluster.monitor().split(',').map(String::from).collect(),
        partitions,
        replicas: u32::from(nodes),
    };
    init_cluster(&spec, NatsOptions::default())?;
    let log = Arc::new(NatsLog::open(&servers, NatsOptions::default())?);
    Ok(Bench {
        cluster,
        log,
        servers,
    })
}

/// Entities spread over every partition of `log`, `per` each.
fn entities(log: &NatsLog, per: usize) -> Vec<String> {
    let k = log.layout().partitions;
    let mut counts = vec![0usize; k as usize];
    let mut out = Vec::new();
    let mut i = 0u64;
    while counts.iter().any(|c| *c < per) {
        let e = format!("order:{i}");
        let p = log.partition_of(&e) as usize;
        if counts[p] < per {
            counts[p] += 1;
            out.push(e);
        }
        i += 1;
    }
    out
}

/// Fills `log` with `n` inputs over `entities` from [`WRITERS`] threads.
fn fill_cluster(log: &NatsLog, entities: &[String], n: u64) -> Result<()> {
    let got = appends(log, WRITERS, 600.0, n, |log, w, i| {
        let e = &entities[(w + WRITERS * i as usize) % entities.len()];
        append_acked(log, &proposal(e, INPUT))
    })?;
    if got < n {
        bail!("filled {got} of {n} inputs in 600 s");
    }
    Ok(())
}

/// One printed row.
struct Row {
    what: String,
    phase: Phase,
    note: String,
}

fn print(rows: &[Row]) {
    println!(
        "| {:<58} | {:>12} | {:>7} | {:>11} | {:>13} | note",
        "row", "rate", "events", "host µs/ev", "servers µs/ev"
    );
    println!("|{}|", "-".repeat(140));
    for r in rows {
        println!(
            "| {:<58} | {:>12} | {:>7} | {:>11.1} | {:>13.1} | {}",
            r.what,
            format!("{:.0}/s", r.phase.rate()),
            r.phase.events,
            r.phase.host_us(),
            r.phase.server_us(),
            r.note
        );
    }
}

/// Runs the cluster benchmark: appends for `secs` per cell, `inputs`
/// pipeline inputs per configuration, scratch under `dir`.
///
/// # Errors
/// Provisioning, a cluster that does not start, a failed append or runner.
pub fn run(dir: &Path, secs: f64, inputs: u64) -> Result<()> {
    let toolchains: PathBuf = default_toolchains();
    eprintln!(
        "cluster: nats-server from {}",
        toolchains.join("nats").display()
    );
    let bin = batpak_provision::nats_server::provision(&toolchains, &[])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let tmp = tempfile::Builder::new()
        .prefix(".batpak-bench-cluster-")
        .tempdir_in(dir)?;
    let mut rows = Vec::new();
    let max = u64::MAX;

    // Durable appends: the embedded store.
    {
        let store = Store::open(tmp.path().join("embedded"))?;
        for writers in [1, WRITERS] {
            let phase = Phase::measure(&[], || {
                appends(&store, writers, secs, max, |s, w, i| {
                    s.append(
                        proposal(&format!("order:{w}-{}", i % 16), INPUT),
                        AppendOptions::durable(),
                    )?;
                    Ok(())
                })
            })?;
            rows.push(Row {
                what: format!("durable appends, embedded store, {writers} writer(s)"),
                phase,
                note: "fsync per group commit".into(),
            });
        }
        store.close()?;
    }
    // Durable appends: 1-node and 3-node clusters, one partition.
    for nodes in [1u16, 3] {
        let b = start(&bin, &tmp.path().join(format!("appends-{nodes}")), nodes, 1)?;
        let pids = b.cluster.pids();
        for writers in [1, WRITERS] {
            let log = &*b.log;
            let phase = Phase::measure(&pids, || {
                appends(log, writers, secs, max, |log, w, i| {
                    append_acked(log, &proposal(&format!("order:{w}-{}", i % 16), INPUT))
                })
            })?;
            rows.push(Row {
                what: format!(
                    "durable appends, {nodes}-node cluster (R{nodes}, 1 partition), {writers} writer(s)"
                ),
                phase,
                note: "quorum fsync per ack".into(),
            });
        }
        eprintln!(
            "cluster: appends on {nodes} node(s) done ({})",
            b.servers[0]
        );
    }
    // The pipeline over the embedded store.
    {
        let store = Store::open(tmp.path().join("pipeline-embedded"))?;
        let batch: Vec<Proposal> = (0..inputs)
            .map(|i| proposal(&format!("order:{}", i % 100), INPUT))
            .collect();
        for chunk in batch.chunks(1000) {
            store.append_batch(chunk.to_vec(), AppendOptions::durable())?;
        }
        let shared: SharedLog = Arc::new(store.clone());
        let phase = Phase::measure(&[], || run_pipeline(vec![shared], "confirmer", inputs))?;
        rows.push(Row {
            what: "pipeline (2 reactions/input), embedded store".into(),
            phase,
            note: "one runner".into(),
        });
        store.close()?;
    }
    // The pipeline over a 1-node and a 3-node cluster with 1, 2, 4
    // partitions, run by one host (one connection, every partition's
    // runner) and — with 2 or more partitions — again by two hosts (two
    // connections, half the partitions each: what two `run --store` hosts
    // do; another reactor name, so the same inputs are handled again).
    let mut per_partition = Vec::new();
    for nodes in [1u16, 3] {
        for k in [1u32, 2, 4] {
            let b = start(
                &bin,
                &tmp.path().join(format!("pipeline-{nodes}-{k}")),
                nodes,
                k,
            )?;
            let pids = b.cluster.pids();
            // 16 per partition: a multiple of the writers, so no two writers
            // share an entity (they would contend for its chain).
            let ents = entities(&b.log, 16);
            let fill = Phase::measure(&pids, || {
                fill_cluster(&b.log, &ents, inputs)?;
                Ok(inputs)
            })?;
            rows.push(Row {
                what: format!(
                    "fill for the pipeline, {nodes}-node cluster, {k} partition(s), {WRITERS} writers"
                ),
                phase: fill,
                note: "inputs appended before the runners start".into(),
            });
            let host_counts: &[usize] = if k >= 2 { &[1, 2] } else { &[1] };
            for &hosts in host_counts {
                let name = format!("confirmer-{hosts}h");
                let conns: Vec<Arc<NatsLog>> = (0..hosts)
                    .map(|h| {
                        if h == 0 {
                            Ok(b.log.clone())
                        } else {
                            Ok(Arc::new(NatsLog::open(&b.servers, NatsOptions::default())?))
                        }
                    })
                    .collect::<Result<_>>()?;
                let logs: Vec<SharedLog> = (0..k)
                    .map(|p| {
                        let conn = conns[p as usize % hosts].clone();
                        Ok(Arc::new(PartitionLog::new(conn, p)?) as SharedLog)
                    })
                    .collect::<Result<_>>()?;
                let phase = Phase::measure(&pids, || run_pipeline(logs, &name, inputs))?;
                // Every input's two reactions from this reactor are there.
                let mut outs = 0u64;
                for p in 0..k {
                    let mut after = 0;
                    loop {
                        let r = b.log.read(p, after, batpak_nats::MAX_READ)?;
                        if r.scanned == after {
                            break;
                        }
                        outs += r
                            .events
                            .iter()
                            .filter(|e| {
                                e.kind() == OUTPUT
                                    && e.header
                                        .meta
                                        .iter()
                                        .any(|(k, v)| k == "reactor" && *v == name)
                            })
                            .count() as u64;
                        after = r.scanned;
                    }
                }
                if nodes == 3 && hosts == 1 {
                    per_partition.push((k, phase.host_us(), phase.server_us(), phase.rate()));
                }
                rows.push(Row {
                    what: format!(
                        "pipeline (2 reactions/input), {nodes}-node cluster, {k} partition(s), {hosts} host(s)"
                    ),
                    phase,
                    note: format!(
                        "{k} runner(s), one per partition; {outs} reactions ({} expected)",
                        2 * inputs
                    ),
                });
            }
            eprintln!("cluster: pipeline on {nodes} node(s), {k} partition(s) done");
        }
    }
    println!();
    println!(
        "batpak-bench cluster: nats-server {} on loopback, every node sync_interval: always; {} core(s)",
        batpak_provision::nats_server::NATS_SERVER_VERSION,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    print(&rows);
    // The model: what the measured per-event CPU implies for N machines.
    let append3 = rows
        .iter()
        .find(|r| r.what.starts_with("durable appends, 3-node") && r.what.contains("8 writer"))
        .map(|r| (r.phase.host_us(), r.phase.server_us()));
    println!();
    println!("Model (not a measurement): N machines with C cores each, each running one host and one nats-server node,");
    println!("partitions K >= N*C spread evenly, R = 3. Per input event the cluster spends a (append: client + servers)");
    println!("+ h (the host's runner) + s (servers storing the 2 reactions and the checkpoint) CPU µs, so its");
    println!("throughput is bounded by N * C * 1e6 / (a + h + s) events/s while no single partition saturates");
    println!("(one runner and one stream leader per partition: a partition runs at most its measured 1-partition rate).");
    if let Some((ah, asv)) = append3 {
        for (k, h, s, rate) in &per_partition {
            let a = ah + asv;
            let per = a + h + s;
            println!(
                "  K={k}: a={a:.0} µs (host {ah:.0} + servers {asv:.0}), h={h:.0} µs, s={s:.0} µs -> {:.0} ev/s per core; \
                 N=3, C=2: {:.0} ev/s; N=10, C=8: {:.0} ev/s (measured here on one machine: {rate:.0} ev/s)",
                1e6 / per,
                3.0 * 2.0 * 1e6 / per,
                10.0 * 8.0 * 1e6 / per,
            );
        }
    }
    Ok(())
}
