//! `batpak-bench`: the benchmark of batpak-host.
//!
//! - `batpak-bench store` runs the same event-store workloads on
//!   batpak-host's store, on batpak 0.10 (the published crate) and on SQLite,
//!   on the same disk in one run, measures the disk's own fsync rate first,
//!   and prints one table with the targets.
//! - `batpak-bench reactor` runs the reactor benchmark (see `reactor.rs`).
//! - `batpak-bench memory` measures resident memory, index bytes per event,
//!   reopen and replay at scale (see `memory.rs`).
//! - `batpak-bench throughput` runs issue 20's rows in one run, this build
//!   beside a previous release (see `throughput.rs`).
//!
//! See `bench/README.md` for what each workload means and how to read it.

mod batpak_peer;
mod cluster;
mod common;
mod follow_latency;
mod host_store;
mod machine;
mod measured_child;
mod memory;
mod query;
mod reactor;
mod report;
mod service;
mod sqlite;
mod sub_output;
mod swap;
mod throughput;
mod throughput_side;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use common::{cell_of, progress, Cell, Params};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "batpak-bench", version, about = "Benchmarks for batpak-host")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Event-store workloads on batpak-host, batpak 0.10 and SQLite, side by
    /// side, with the disk's fsync rate measured in the same run.
    Store(StoreArgs),
    /// The log on a NATS JetStream cluster (started by the benchmark from
    /// the provisioned nats-server) beside the embedded store: durable
    /// appends/s, the pipeline with 1, 2, 4 partitions, CPU µs per event of
    /// the host and the servers, and the N-machine model they imply.
    Cluster {
        /// Seconds per append cell.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Inputs per pipeline configuration.
        #[arg(long, default_value_t = 3000)]
        inputs: u64,
        /// Directory for the scratch stores (default: current directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The reactor benchmark (wasm reactors over the store).
    Reactor {
        /// Events to push through the reactors.
        #[arg(long, default_value_t = 10_000)]
        events: u64,
        /// Only the pipeline rows (and the store's own durable-batch rate):
        /// no compile, instantiate or boundary rows. For profiling.
        #[arg(long)]
        pipeline_only: bool,
        /// Run the pipeline for only one side: `wasm` or `native`.
        #[arg(long)]
        only: Option<reactor::Side>,
        /// The runners' `durable_window` (0: wait for each batch's fsync
        /// before the next pull, as before it existed).
        #[arg(long, default_value_t = batpak_runtime::DEFAULT_DURABLE_WINDOW)]
        durable_window: u32,
    },
    /// Hot swap under a steady stream: latency (cold compile, cache hit),
    /// longest gap, lost/duplicated, shadow replay speed.
    Swap {
        /// Events per second in the stream.
        #[arg(long, default_value_t = 5_000)]
        rate: u64,
        /// Swaps of each kind.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
    /// Durable appends/s through a running host's control socket and HTTP
    /// API (1 and 16 clients) beside in-process appends and SQLite.
    Service {
        /// Seconds per measured cell.
        #[arg(long, default_value_t = 3)]
        secs: u64,
        /// Directory for the scratch store (default: current directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Indexed read latency (entity, correlation, caused-by, tail) on a
    /// large store, in-process and through the control socket, beside a
    /// segment scan; target ≤ 5 ms.
    Query {
        /// Events in the store.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Directory for the scratch store (default: current directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Diagnostic: where batpak-host's store spends its time in (a) and (b).
    #[command(hide = true)]
    HostSplit {
        /// Events per phase.
        #[arg(long, default_value_t = 50_000)]
        events: u64,
        /// Directory for the scratch store (default: current directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Resident memory of the store with `--events` events open (after
    /// reopen), index bytes per event, reopen and cursor replay at that
    /// scale, and memory per plugin instance.
    Memory {
        /// Store sizes to measure, comma-separated (10M needs ~2 GB of disk
        /// and several GB of memory; CI runs pass a small size).
        #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
        events: Vec<u64>,
        /// Plugin instances to load for the per-instance figure.
        #[arg(long, default_value_t = 20)]
        instances: usize,
        /// Where the scratch stores go (default: the workspace root); removed
        /// at the end.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Issue 20's benchmark in one run: pipeline, `run` with 1 and 2
    /// instances, memory, store (a)-(e), the demo's reactors end to end and
    /// the follow latency, this build beside `--previous DIR`, with MET or
    /// MISSED per target.
    Throughput(Box<throughput::Args>),
    /// Internal: one measurement of `memory` in a fresh process.
    #[command(hide = true)]
    MemoryProbe {
        /// `store` or `plugins`.
        what: String,
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        events: u64,
        #[arg(long)]
        cache: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        instances: usize,
    },
    /// Internal: fill a host store and exit without closing it (used by
    /// `store` to measure the reopen after an unclean stop).
    #[command(hide = true)]
    FillHost {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        events: u64,
    },
}

#[derive(clap::Args)]
struct StoreArgs {
    /// Events in workloads (a), (b) and (c).
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Events in the store that (d) reopens and (e) replays.
    #[arg(long, default_value_t = 1_000_000)]
    reopen_events: u64,
    /// Directory to put the stores in (a fresh temporary directory is made
    /// inside it and removed afterwards). Default: the current directory, so
    /// the numbers are for the disk you run on — not /tmp, which may be
    /// memory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Longest any one timed loop may run, in seconds; a slower system stops
    /// there and its rate is computed over what it completed.
    #[arg(long, default_value_t = 20)]
    cap_secs: u64,
    /// Which systems to run (comma-separated: host, batpak, sqlite).
    #[arg(long, value_delimiter = ',', default_value = "host,batpak,sqlite")]
    systems: Vec<System>,
    /// Which workloads to run (comma-separated: a, b, c, d, e; d and e
    /// share one filled store, so either runs both).
    #[arg(long, value_delimiter = ',', default_value = "a,b,c,d,e")]
    workloads: Vec<String>,
    /// Rounds per row for (a)-(c): the systems take turns on 1/rounds of
    /// the events each, so they see the same disk weather.
    #[arg(long, default_value_t = 4)]
    rounds: u64,
}

/// The three systems compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// batpak-host's store.
    Host,
    /// batpak 0.10 from crates.io.
    Batpak,
    /// SQLite through rusqlite.
    Sqlite,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    eprintln!("batpak-bench: {}", machine::build());
    match cli.cmd {
        Cmd::Store(args) => run_store(args),
        Cmd::Reactor {
            events,
            pipeline_only,
            only,
            durable_window,
        } => reactor::run(events, pipeline_only, only, durable_window),
        Cmd::Swap { rate, rounds } => swap::run(rate, rounds),
        Cmd::Cluster { secs, inputs, dir } => cluster::run(
            &match dir {
                Some(d) => d,
                None => std::env::current_dir()?,
            },
            secs,
            inputs,
        ),
        Cmd::Service { secs, dir } => service::run(
            &match dir {
                Some(d) => d,
                None => std::env::current_dir()?,
            },
            secs,
        ),
        Cmd::Query { events, dir } => query::run(
            &match dir {
                Some(d) => d,
                None => std::env::current_dir()?,
            },
            events,
        ),
        Cmd::HostSplit { events, dir } => {
            let base = match dir {
                Some(d) => d,
                None => std::env::current_dir()?,
            };
            let tmp = tempfile::Builder::new()
                .prefix(".batpak-bench-")
                .tempdir_in(base)?;
            host_store::split(tmp.path(), events)
        }
        Cmd::Throughput(args) => throughput::run(*args),
        Cmd::FillHost { dir, events } => host_store::fill_and_die(&dir, events),
        Cmd::Memory {
            events,
            instances,
            dir,
        } => memory::run(
            &match dir {
                Some(d) => d,
                None => Path::new(env!("CARGO_MANIFEST_DIR"))
                    .parent()
                    .context("workspace root")?
                    .to_path_buf(),
            },
            &events,
            instances,
        ),
        Cmd::MemoryProbe {
            what,
            dir,
            events,
            cache,
            instances,
        } => match (what.as_str(), dir, cache) {
            ("store", Some(dir), _) => memory::probe_store(&dir, events),
            ("plugins", _, Some(cache)) => memory::probe_plugins(&cache, instances),
            _ => anyhow::bail!("memory-probe: `store --dir D` or `plugins --cache C`"),
        },
    }
}

/// One table row: which workload, and one cell per system.
pub struct Row {
    /// Key used by the target logic: "a", "b", "c", "d", "d2", "e".
    pub key: &'static str,
    /// Label shown.
    pub label: String,
    /// batpak-host, batpak 0.10, SQLite.
    pub cells: [Cell; 3],
    /// The disk's fsync rate during this row (short probes interleaved with
    /// the runs), for disk-bound rows.
    pub fsync: Option<f64>,
}

/// Length of each short fsync probe interleaved with the runs of a
/// disk-bound row.
const PROBE: Duration = Duration::from_millis(300);

fn run_store(args: StoreArgs) -> Result<()> {
    let base = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => std::env::current_dir()?,
    };
    let tmp = tempfile::Builder::new()
        .prefix(".batpak-bench-")
        .tempdir_in(&base)
        .with_context(|| format!("making a scratch directory in {}", base.display()))?;
    let root = tmp.path().to_path_buf();
    let p = Params {
        events: args.events,
        reopen_events: args.reopen_events,
        cap: Duration::from_secs(args.cap_secs),
    };
    let on = |s: System| args.systems.contains(&s);
    let want = |w: &str| args.workloads.iter().any(|x| x == w);

    println!("batpak-bench store — one run, one disk, three systems");
    for (k, v) in machine::facts() {
        println!("  {k:<8} {v}");
    }
    let mount = machine::mount_of(&root);
    match &mount {
        Some(m) => println!(
            "  disk     {} (filesystem {} on {}, mounted at {})",
            root.display(),
            m.fstype,
            m.device,
            m.point.display()
        ),
        None => println!("  disk     {}", root.display()),
    }
    if mount.as_ref().is_some_and(machine::Mount::in_memory) {
        println!("  WARNING: this directory is in memory ({}); fsync is free there and nothing here is about a disk. Pass --dir on a real disk.", mount.as_ref().map(|m| m.fstype.as_str()).unwrap_or("?"));
    }
    println!();

    let fsync0 = machine::fsync_rate(&root, Duration::from_millis(1500))?;
    println!(
        "(0) disk fsync rate, single writer (100 B append + fdatasync, {} in {:.2} s): {:.0} fsync/s = {:.2} ms each",
        common::fmt_int(fsync0.count),
        fsync0.elapsed.as_secs_f64(),
        fsync0.per_sec(),
        fsync0.mean_ms()
    );
    println!("    This is the physical bound of (b) and (c). It swings more than tenfold from hour to hour here:");
    println!("    only ratios within this run mean anything.");
    println!();

    let mut rows: Vec<Row> = Vec::new();
    let sub = |name: &str| root.join(name);
    let rounds = args.rounds.max(1);
    let sys = |s: System, w: Workload<'static>| if on(s) { Some(w) } else { None };

    if want("a") {
        eprintln!("(a) {} appends one at a time, durable at the end", p.events);
        let (cells, fsync) = interleaved(
            &root,
            "a",
            rounds,
            &p,
            true,
            [
                sys(System::Host, &|d, p| host_store::single(d, p, true)),
                sys(System::Batpak, &batpak_peer::single),
                sys(System::Sqlite, &sqlite::single),
            ],
        );
        rows.push(Row {
            key: "a",
            label: format!(
                "(a) {} appends, 1 at a time, durable at end",
                short_n(p.events)
            ),
            cells,
            fsync,
        });
        let (cells, _) = interleaved(
            &root,
            "a2",
            rounds,
            &p,
            false,
            [
                sys(System::Host, &|d, p| host_store::single(d, p, false)),
                None,
                None,
            ],
        );
        let [a2, _, _] = cells;
        rows.push(Row {
            key: "a2",
            label: "(a') same, host waiting for each write (Wait::Visible)".into(),
            cells: [
                a2,
                Cell::Na("host-only variant".into()),
                Cell::Na("host-only variant".into()),
            ],
            fsync: None,
        });
    }

    if want("b") {
        eprintln!(
            "(b) {} appends in durable batches of {}",
            p.events,
            common::BATCH
        );
        let (cells, fsync) = interleaved(
            &root,
            "b",
            rounds,
            &p,
            true,
            [
                sys(System::Host, &host_store::batches),
                sys(System::Batpak, &batpak_peer::batches),
                sys(System::Sqlite, &sqlite::batches),
            ],
        );
        rows.push(Row {
            key: "b",
            label: format!("(b) batches of {}, each durable", common::BATCH),
            cells,
            fsync,
        });
    }

    if want("c") {
        eprintln!(
            "(c) {} threads appending durable one at a time",
            common::THREADS
        );
        let (cells, fsync) = interleaved(
            &root,
            "c",
            rounds,
            &p,
            true,
            [
                sys(System::Host, &host_store::threads),
                sys(System::Batpak, &batpak_peer::threads),
                sys(System::Sqlite, &sqlite::threads),
            ],
        );
        rows.push(Row {
            key: "c",
            label: format!("(c) {} threads, each append durable", common::THREADS),
            cells,
            fsync,
        });
    }

    // (d) + (e), one system at a time: fill, reopen, replay, delete.
    if want("d") || want("e") {
        eprintln!(
            "(d)/(e) reopen and replay a store of {} events",
            p.reopen_events
        );
        let (hd, hd2, he) = if on(System::Host) {
            host_reopen_replay(&sub("d-host"), &p)
        } else {
            (Cell::Skipped, Cell::Skipped, Cell::Skipped)
        };
        clean(&root, "d-host");
        let (bd, be) = if on(System::Batpak) {
            batpak_reopen_replay(&sub("d-batpak"), &p)
        } else {
            (Cell::Skipped, Cell::Skipped)
        };
        clean(&root, "d-batpak");
        let (sd, se) = if on(System::Sqlite) {
            sqlite_reopen_replay(&sub("d-sqlite"), &p)
        } else {
            (Cell::Skipped, Cell::Skipped)
        };
        clean(&root, "d-sqlite");
        let n = short_n(p.reopen_events);
        rows.push(Row {
            key: "d",
            label: format!("(d) reopen {n} events after clean close"),
            cells: [hd, bd, sd],
            fsync: None,
        });
        rows.push(Row {
            key: "d2",
            label: format!("(d') reopen {n} events after unclean stop"),
            cells: [
                hd2,
                Cell::Na("not measured (host store only)".into()),
                Cell::Na("not measured (host store only)".into()),
            ],
            fsync: None,
        });
        rows.push(Row {
            key: "e",
            label: format!("(e) cursor replay of {n} events"),
            cells: [he, be, se],
            fsync: None,
        });
    }

    let fsync1 = machine::fsync_rate(&root, Duration::from_millis(1500))?;
    println!();
    report::print(&rows, &fsync0, &fsync1, &p);
    drop(tmp);
    Ok(())
}

/// One system's workload: run in a fresh directory with these parameters.
type Workload<'a> = &'a (dyn Fn(&Path, &Params) -> Result<Cell> + Sync);

const NAMES: [&str; 3] = ["batpak-host", "batpak 0.10", "SQLite"];

/// Runs one row in `rounds` interleaved rounds: each round runs every
/// enabled system on `1/rounds` of the events (and of the time cap) in a
/// fresh directory, host, batpak, SQLite, host, ... so the three systems see
/// the same disk weather. With `probe`, a short fsync probe runs before every
/// system's turn and once at the end; the row's fsync rate is over all of
/// them. Returns the merged cells and that rate.
fn interleaved(
    root: &Path,
    key: &str,
    rounds: u64,
    p: &Params,
    probe: bool,
    systems: [Option<Workload<'_>>; 3],
) -> ([Cell; 3], Option<f64>) {
    let per = Params {
        events: p.events.div_ceil(rounds),
        reopen_events: p.reopen_events,
        cap: p.cap / rounds as u32,
    };
    let mut cells: [Option<Cell>; 3] = [None, None, None];
    let (mut probes, mut probe_secs) = (0u64, 0f64);
    let mut take_probe = || {
        if probe {
            if let Ok(r) = machine::fsync_rate(root, PROBE) {
                probes += r.count;
                probe_secs += r.elapsed.as_secs_f64();
            }
        }
    };
    for round in 0..rounds {
        for (i, w) in systems.iter().enumerate() {
            let Some(w) = w else { continue };
            take_probe();
            let dir = root.join(format!("{key}-{i}-{round}"));
            let c = cell_of(w(&dir, &per));
            let _ = std::fs::remove_dir_all(&dir);
            cells[i] = Some(match cells[i].take() {
                None => c,
                Some(prev) => prev.merge(c),
            });
        }
    }
    take_probe();
    let cells = cells.map(|c| c.unwrap_or(Cell::Skipped));
    for (name, c) in NAMES.iter().zip(&cells) {
        if !matches!(c, Cell::Skipped) {
            progress(format!("{name:<12} {}", c.short()));
        }
    }
    let fsync = (probe_secs > 0.0).then(|| probes as f64 / probe_secs);
    if let Some(f) = fsync {
        progress(format!("disk during this row: {f:.0} fsync/s"));
    }
    (cells, fsync)
}

fn clean(root: &Path, prefix: &str) {
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn short_n(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn host_reopen_replay(dir: &Path, p: &Params) -> (Cell, Cell, Cell) {
    match host_store::reopen(dir, p.reopen_events) {
        Ok(r) => {
            progress(format!(
                "batpak-host  reopen {} (unclean: {})",
                r.clean.short(),
                r.unclean.short()
            ));
            let e = cell_of(host_store::replay(&r.store, p));
            progress(format!("batpak-host  replay {}", e.short()));
            if let Err(err) = r.store.close() {
                progress(format!("batpak-host  close failed: {err}"));
            }
            (r.clean, r.unclean, e)
        }
        Err(e) => {
            let c = Cell::Failed(format!("{e:#}"));
            (c.clone(), c.clone(), c)
        }
    }
}

fn batpak_reopen_replay(dir: &Path, p: &Params) -> (Cell, Cell) {
    let r = batpak_peer::fill(dir, p.reopen_events).and_then(|()| batpak_peer::reopen(dir));
    match r {
        Ok((d, store)) => {
            progress(format!("batpak 0.10  reopen {}", d.short()));
            let e = cell_of(batpak_peer::replay(&store, p));
            progress(format!("batpak 0.10  replay {}", e.short()));
            let _ = store.close();
            (d, e)
        }
        Err(e) => {
            let c = Cell::Failed(format!("{e:#}"));
            (c.clone(), c)
        }
    }
}

fn sqlite_reopen_replay(dir: &Path, p: &Params) -> (Cell, Cell) {
    let r = sqlite::fill(dir, p.reopen_events).and_then(|()| sqlite::reopen(dir, p.reopen_events));
    match r {
        Ok((d, conn)) => {
            progress(format!("SQLite       reopen {}", d.short()));
            let e = cell_of(sqlite::replay(&conn, p));
            progress(format!("SQLite       replay {}", e.short()));
            (d, e)
        }
        Err(e) => {
            let c = Cell::Failed(format!("{e:#}"));
            (c.clone(), c)
        }
    }
}
