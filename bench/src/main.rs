//! `batpak-bench`: the benchmark of batpak-host.
//!
//! - `batpak-bench store` runs the same event-store workloads on
//!   batpak-host's store, on batpak 0.10 (the published crate) and on SQLite,
//!   on the same disk in one run, measures the disk's own fsync rate first,
//!   and prints one table with the targets.
//! - `batpak-bench reactor` runs the reactor benchmark (see `reactor.rs`).
//!
//! See `bench/README.md` for what each workload means and how to read it.

mod batpak_peer;
mod common;
#[cfg(feature = "host")]
mod host_store;
mod machine;
mod reactor;
mod report;
mod sqlite;

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
    /// The reactor benchmark (wasm reactors over the store).
    Reactor {
        /// Events to push through the reactors.
        #[arg(long, default_value_t = 10_000)]
        events: u64,
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
    match cli.cmd {
        Cmd::Store(args) => run_store(args),
        Cmd::Reactor { events } => reactor::run(events),
        Cmd::FillHost { dir, events } => fill_host(&dir, events),
    }
}

#[cfg(feature = "host")]
fn fill_host(dir: &Path, events: u64) -> Result<()> {
    host_store::fill_and_die(dir, events)
}

#[cfg(not(feature = "host"))]
fn fill_host(_dir: &Path, _events: u64) -> Result<()> {
    anyhow::bail!("built without the host feature")
}

/// One table row: which workload, and one cell per system.
pub struct Row {
    /// Key used by the target logic: "a", "b", "c", "d", "d2", "e".
    pub key: &'static str,
    /// Label shown.
    pub label: String,
    /// batpak-host, batpak 0.10, SQLite.
    pub cells: [Cell; 3],
}

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

    // (a)
    eprintln!("(a) {} appends one at a time, durable at the end", p.events);
    let a = [
        run_if(on(System::Host), "batpak-host", || {
            host_single(&sub("a-host"), &p)
        }),
        run_if(on(System::Batpak), "batpak 0.10", || {
            batpak_peer::single(&sub("a-batpak"), &p)
        }),
        run_if(on(System::Sqlite), "SQLite", || {
            sqlite::single(&sub("a-sqlite"), &p)
        }),
    ];
    rows.push(Row {
        key: "a",
        label: format!(
            "(a) {} appends, 1 at a time, durable at end",
            short_n(p.events)
        ),
        cells: a,
    });
    clean(&root, "a-");

    // (b)
    eprintln!(
        "(b) {} appends in durable batches of {}",
        p.events,
        common::BATCH
    );
    let b = [
        run_if(on(System::Host), "batpak-host", || {
            host_batches(&sub("b-host"), &p)
        }),
        run_if(on(System::Batpak), "batpak 0.10", || {
            batpak_peer::batches(&sub("b-batpak"), &p)
        }),
        run_if(on(System::Sqlite), "SQLite", || {
            sqlite::batches(&sub("b-sqlite"), &p)
        }),
    ];
    rows.push(Row {
        key: "b",
        label: format!("(b) batches of {}, each durable", common::BATCH),
        cells: b,
    });
    clean(&root, "b-");

    // (c)
    eprintln!(
        "(c) {} threads appending durable one at a time",
        common::THREADS
    );
    let c = [
        run_if(on(System::Host), "batpak-host", || {
            host_threads(&sub("c-host"), &p)
        }),
        run_if(on(System::Batpak), "batpak 0.10", || {
            batpak_peer::threads(&sub("c-batpak"), &p)
        }),
        run_if(on(System::Sqlite), "SQLite", || {
            sqlite::threads(&sub("c-sqlite"), &p)
        }),
    ];
    rows.push(Row {
        key: "c",
        label: format!("(c) {} threads, each append durable", common::THREADS),
        cells: c,
    });
    clean(&root, "c-");

    // (d) + (e), one system at a time: fill, reopen, replay, delete.
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
    });
    rows.push(Row {
        key: "d2",
        label: format!("(d') reopen {n} events after unclean stop"),
        cells: [
            hd2,
            Cell::Na("not measured (host store only)".into()),
            Cell::Na("not measured (host store only)".into()),
        ],
    });
    rows.push(Row {
        key: "e",
        label: format!("(e) cursor replay of {n} events"),
        cells: [he, be, se],
    });

    let fsync1 = machine::fsync_rate(&root, Duration::from_millis(1500))?;
    println!();
    report::print(&rows, &fsync0, &fsync1, &p);
    drop(tmp);
    Ok(())
}

fn run_if(enabled: bool, name: &str, f: impl FnOnce() -> Result<Cell>) -> Cell {
    if !enabled {
        return Cell::Skipped;
    }
    let c = cell_of(f());
    progress(format!("{name:<12} {}", c.short()));
    c
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

#[cfg(feature = "host")]
fn host_single(dir: &Path, p: &Params) -> Result<Cell> {
    host_store::single(dir, p)
}
#[cfg(feature = "host")]
fn host_batches(dir: &Path, p: &Params) -> Result<Cell> {
    host_store::batches(dir, p)
}
#[cfg(feature = "host")]
fn host_threads(dir: &Path, p: &Params) -> Result<Cell> {
    host_store::threads(dir, p)
}
#[cfg(feature = "host")]
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

#[cfg(not(feature = "host"))]
fn host_single(_: &Path, _: &Params) -> Result<Cell> {
    Ok(Cell::Na("built without the host feature".into()))
}
#[cfg(not(feature = "host"))]
fn host_batches(_: &Path, _: &Params) -> Result<Cell> {
    Ok(Cell::Na("built without the host feature".into()))
}
#[cfg(not(feature = "host"))]
fn host_threads(_: &Path, _: &Params) -> Result<Cell> {
    Ok(Cell::Na("built without the host feature".into()))
}
#[cfg(not(feature = "host"))]
fn host_reopen_replay(_: &Path, _: &Params) -> (Cell, Cell, Cell) {
    let c = Cell::Na("built without the host feature".into());
    (c.clone(), c.clone(), c)
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
