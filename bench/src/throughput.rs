//! `batpak-bench throughput`: issue 20's benchmark in one run, this build
//! beside a previous release, one table with a MET/MISSED verdict per
//! target for each side.
//!
//! Each group of rows runs on both sides in turn (this build, then the
//! previous one), so they see the same load and disk weather:
//! - **pipeline**: `batpak-bench reactor --pipeline-only` of each side (the
//!   in-process runner, wasm and native passthrough);
//! - **run**: the real `batpak-host run --until-idle` of each side over a
//!   store of `bench.in` events, the Rust and the Python passthrough with 1
//!   and 2 instances (`--instances NAME=N`), CPU per thread sampled from
//!   `/proc` (see `measured_child.rs`);
//! - **memory**: `batpak-bench memory` of each side (index bytes per event,
//!   RSS, reopen, replay);
//! - **store**: `batpak-bench store` of each side (rows (a)–(e), batpak-host
//!   and SQLite);
//! - **demo**: the demo's three reactors over N orders through each side's
//!   `batpak-host` (`append --jsonl`, then `run --until-idle`), wall time and
//!   peak RSS from `wait4`;
//! - **follow**: the two-reactor follow latency over HTTP (see
//!   `follow_latency.rs`).
//!
//! The previous side is only its two binaries: its `batpak-bench` tables
//! are read by `sub_output.rs`, and a row it does not print shows "n/a".
//! Both sides run the same plugin files.

use crate::common::short_n;
use crate::measured_child::{self, Measured};
use crate::sub_output;
use crate::throughput_side::{Env, Inputs, Side};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The command line of `throughput`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory holding the previous release's `batpak-host` and
    /// `batpak-bench` (release builds); without it only this build runs.
    #[arg(long)]
    pub previous: Option<PathBuf>,
    /// Label of the previous release in the table (default: the name of
    /// the `--previous` directory).
    #[arg(long)]
    pub previous_label: Option<String>,
    /// Events through the Rust pipeline rows (in-process and `run`).
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// Measurements of each `run` row per side (the sides taking turns);
    /// the table shows the best.
    #[arg(long, default_value_t = 2)]
    pub rounds: u32,
    /// Events through the Python reactor rows.
    #[arg(long, default_value_t = 100_000)]
    pub python_events: u64,
    /// Store sizes of the memory rows, comma-separated (10M takes about two
    /// minutes per side and 3 GB of disk).
    #[arg(long, value_delimiter = ',', default_value = "1000000")]
    pub memory_events: Vec<u64>,
    /// Orders through the demo's three reactors (the issue's figure is at
    /// 1,000,000; the time target is scaled linearly to this count).
    #[arg(long, default_value_t = 250_000)]
    pub orders: u64,
    /// Events in store workloads (a)–(c).
    #[arg(long, default_value_t = 50_000)]
    pub store_events: u64,
    /// Systems of the store rows (comma-separated: host, batpak, sqlite);
    /// batpak 0.10 is left out by default to keep the run short.
    #[arg(long, value_delimiter = ',', default_value = "host,sqlite")]
    pub store_systems: Vec<String>,
    /// Events in the store that (d) reopens and (e) replays.
    #[arg(long, default_value_t = 200_000)]
    pub reopen_events: u64,
    /// Seconds of the steady stream of the follow-latency row.
    #[arg(long, default_value_t = 10)]
    pub follow_secs: u64,
    /// Orders per second in that stream.
    #[arg(long, default_value_t = 100)]
    pub follow_rate: u64,
    /// Groups to leave out (comma-separated: pipeline, run, python, memory,
    /// store, demo, follow).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Scratch directory (on the disk to measure; default: the current
    /// directory). Removed at the end.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Directory of the Rust plugins (passthrough.wasm, inventory.wasm,
    /// low_stock.wasm, shipping.wasm); default: this build's
    /// `target/wasm32-wasip2/release`.
    #[arg(long)]
    pub plugins: Option<PathBuf>,
    /// The Python passthrough component; default: this build's
    /// `target/lang-plugins/passthrough_py.wasm` (`plugins/build-examples.sh
    /// target/lang-plugins python`).
    #[arg(long)]
    pub python_plugin: Option<PathBuf>,
}

/// How a row's numbers are shown.
#[derive(Clone, Copy, Debug)]
enum Unit {
    Rate,
    Ms,
    Secs,
    Mib,
    BytesPerEvent,
    UsPerEvent,
    Ratio,
}

fn show(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Rate => crate::common::fmt_rate(v),
        Unit::Ms => crate::common::fmt_ms(v),
        Unit::Secs => format!("{v:.2} s"),
        Unit::Mib => format!("{:.0} MiB", v / (1024.0 * 1024.0)),
        Unit::BytesPerEvent => format!("{v:.1} B/event"),
        Unit::UsPerEvent => format!("{v:.2} µs/event"),
        Unit::Ratio => format!("{v:.2}x"),
    }
}

/// A target: its text and its test.
struct Target {
    text: String,
    ok: Box<dyn Fn(f64) -> bool>,
}

fn at_least(text: impl Into<String>, min: f64) -> Option<Target> {
    Some(Target {
        text: text.into(),
        ok: Box::new(move |v| v >= min),
    })
}

fn at_most(text: impl Into<String>, max: f64) -> Option<Target> {
    Some(Target {
        text: text.into(),
        ok: Box::new(move |v| v <= max),
    })
}

/// One row: a value (or the reason there is none) per side.
struct Row {
    label: String,
    unit: Unit,
    values: Vec<Option<std::result::Result<f64, String>>>,
    target: Option<Target>,
}

/// The table being filled, side by side.
struct Table {
    sides: usize,
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Table {
    fn row(&mut self, label: &str, unit: Unit, target: Option<Target>) -> &mut Row {
        let i = match self.rows.iter().position(|r| r.label == label) {
            Some(i) => i,
            None => {
                self.rows.push(Row {
                    label: label.to_string(),
                    unit,
                    values: (0..self.sides).map(|_| None).collect(),
                    target,
                });
                self.rows.len() - 1
            }
        };
        &mut self.rows[i]
    }

    /// Sets side `side`'s value of the row `label` (made on first use);
    /// `None` is "n/a" (that build does not report it).
    fn put(
        &mut self,
        side: usize,
        label: &str,
        unit: Unit,
        v: Option<f64>,
        target: Option<Target>,
    ) {
        self.row(label, unit, target).values[side] = Some(v.ok_or_else(|| "n/a".to_string()));
    }

    /// Marks every row of a failed group on side `side`.
    fn fail(&mut self, side: usize, label: &str, unit: Unit, err: &anyhow::Error) {
        let n = self.notes.len() + 1;
        self.notes.push(format!("[{n}] {label}: {err:#}"));
        self.row(label, unit, None).values[side] = Some(Err(format!("FAILED [{n}]")));
    }

    fn note(&mut self, s: String) {
        self.notes.push(s);
    }

    fn print(&self, names: &[String]) -> String {
        let mut header = vec!["measure".to_string()];
        header.extend(names.iter().cloned());
        header.push("target".into());
        header.extend(names.iter().map(|n| format!("{n}: verdict")));
        let mut body = Vec::new();
        for r in &self.rows {
            let mut line = vec![r.label.clone()];
            for v in &r.values {
                line.push(match v {
                    Some(Ok(x)) => show(r.unit, *x),
                    Some(Err(e)) => e.clone(),
                    None => "-".into(),
                });
            }
            line.push(r.target.as_ref().map_or(String::new(), |t| t.text.clone()));
            for v in &r.values {
                line.push(match (&r.target, v) {
                    (Some(t), Some(Ok(x))) => if (t.ok)(*x) { "MET" } else { "MISSED" }.into(),
                    (Some(_), _) => "n/a".into(),
                    (None, _) => String::new(),
                });
            }
            body.push(line);
        }
        let cols = header.len();
        let mut w = vec![0usize; cols];
        for l in std::iter::once(&header).chain(&body) {
            for (i, c) in l.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let numeric = |i: usize| i > 0 && i <= self.sides;
        let fmt = |l: &Vec<String>| {
            let mut s = String::from("|");
            for (i, c) in l.iter().enumerate() {
                let pad = " ".repeat(w[i] - c.chars().count());
                if numeric(i) {
                    s.push_str(&format!(" {pad}{c} |"));
                } else {
                    s.push_str(&format!(" {c}{pad} |"));
                }
            }
            s
        };
        let mut out = fmt(&header) + "\n|";
        for (i, wi) in w.iter().enumerate() {
            let end = if numeric(i) { ":" } else { "-" };
            out.push_str(&format!("{}{end}|", "-".repeat(wi + 1)));
        }
        out.push('\n');
        for l in &body {
            out.push_str(&fmt(l));
            out.push('\n');
        }
        out
    }
}

/// Stock per sku in the demo rows: no order is ever refused.
const STOCK: u64 = 1_000_000_000_000;

fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the benchmark binary")?;
    // target/<profile>/batpak-bench
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .context("the benchmark binary is not in a cargo target directory")
}

fn need(p: PathBuf, how: &str) -> Result<PathBuf> {
    if p.is_file() {
        Ok(p)
    } else {
        bail!("{} is missing; {how}", p.display())
    }
}

/// Runs the whole benchmark and prints the table.
///
/// # Errors
/// A binary or plugin is missing, or the scratch directory cannot be made.
/// A failing measurement is a FAILED cell with its error below the table,
/// not an error.
pub fn run(args: Args) -> Result<()> {
    let target = target_dir()?;
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().context("binary directory")?;
    let base = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir()?,
    };
    let tmp = tempfile::Builder::new()
        .prefix(".batpak-throughput-")
        .tempdir_in(&base)
        .with_context(|| format!("making a scratch directory in {}", base.display()))?;
    let root = tmp.path();

    let mut sides = vec![Side {
        name: "this build".into(),
        bench: exe.clone(),
        host: need(
            profile_dir.join("batpak-host"),
            "build it with the benchmark's profile (cargo build --release -p batpak-host, or --profile dist)",
        )?,
        cache: root.join("cache-this"),
    }];
    if let Some(prev) = &args.previous {
        sides.push(Side {
            name: args.previous_label.clone().unwrap_or_else(|| {
                prev.file_name()
                    .map_or("previous".into(), |n| n.to_string_lossy().to_string())
            }),
            bench: need(
                prev.join("batpak-bench"),
                "--previous needs batpak-bench there",
            )?,
            host: need(
                prev.join("batpak-host"),
                "--previous needs batpak-host there",
            )?,
            cache: root.join("cache-previous"),
        });
    }
    for s in &sides {
        std::fs::create_dir_all(&s.cache)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&s.cache, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    let plugins = args
        .plugins
        .clone()
        .unwrap_or_else(|| target.join("wasm32-wasip2/release"));
    let build_rust = "build them: cargo build --release --target wasm32-wasip2 -p passthrough -p inventory -p low-stock -p shipping";
    let shop_config = root.join("shop.json");
    std::fs::write(
        &shop_config,
        serde_json::json!({"plugins": {
            "inventory": {"config": {"stock": {"widget": STOCK, "gadget": STOCK, "gizmo": STOCK}}},
            "low-stock": {"config": {"threshold": 3}, "grant_emits": ["alert.low-stock"]},
            "shipping": {}
        }})
        .to_string(),
    )?;
    let inputs = Inputs {
        passthrough: need(plugins.join("passthrough.wasm"), build_rust)?,
        inventory: need(plugins.join("inventory.wasm"), build_rust)?,
        low_stock: need(plugins.join("low_stock.wasm"), build_rust)?,
        shipping: need(plugins.join("shipping.wasm"), build_rust)?,
        python: {
            let p = args
                .python_plugin
                .clone()
                .unwrap_or_else(|| target.join("lang-plugins/passthrough_py.wasm"));
            if args.skip.iter().any(|g| g == "python") {
                p
            } else {
                need(
                    p,
                    "build it: plugins/build-examples.sh target/lang-plugins python (or pass --python-plugin, or --skip python)",
                )?
            }
        },
        shop_config,
    };

    let names: Vec<String> = sides.iter().map(|s| s.name.clone()).collect();
    let mut t = Table {
        sides: sides.len(),
        rows: Vec::new(),
        notes: Vec::new(),
    };
    let skip = |g: &str| args.skip.iter().any(|s| s == g);
    let load = || {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let mut header = String::new();
    header.push_str(
        "batpak-bench throughput — issue 20's benchmark, each row on every side in turn\n",
    );
    for (k, v) in crate::machine::facts() {
        header.push_str(&format!("  {k:<8} {v}\n"));
    }
    header.push_str(&format!(
        "  load     {} (1/5/15 min at the start; other work on this machine shares its cores)\n",
        load()
    ));
    for s in &sides {
        header.push_str(&format!(
            "  {:<8} {} / {}\n",
            s.name,
            s.host.display(),
            s.bench.display()
        ));
    }
    header.push_str(&format!(
        "  plugins  {}, {}\n",
        plugins.display(),
        inputs.python.display()
    ));
    println!("{header}");
    std::io::stdout().flush().ok();

    let env = Env {
        root,
        inputs: &inputs,
    };
    if !skip("pipeline") {
        for (i, s) in sides.iter().enumerate() {
            eprintln!("throughput: pipeline (reactor --pipeline-only), {}", s.name);
            pipeline(&env, &args, s, i, &mut t);
        }
    }
    if !skip("run") || !skip("python") {
        let rust_in = root.join("bench-in.jsonl");
        let py_in = root.join("bench-in-py.jsonl");
        write_bench_in(&rust_in, args.events)?;
        write_bench_in(&py_in, args.python_events)?;
        // The baselines: the first tenth of each input (the same lines).
        let base_of = |n: u64| (n / 10).max(1);
        let (rust_base, py_base) = (
            root.join("bench-base.jsonl"),
            root.join("bench-base-py.jsonl"),
        );
        write_bench_in(&rust_base, base_of(args.events))?;
        write_bench_in(&py_base, base_of(args.python_events))?;
        type Case<'a> = (&'a str, &'a str, &'a Path, u64, &'a Path, &'a Path);
        let mut cases: Vec<Case> = Vec::new();
        if !skip("run") {
            cases.push((
                "Rust",
                "passthrough",
                &inputs.passthrough,
                args.events,
                &rust_in,
                &rust_base,
            ));
        }
        if !skip("python") {
            cases.push((
                "Python",
                "passthrough-py",
                &inputs.python,
                args.python_events,
                &py_in,
                &py_base,
            ));
        }
        for (lang, name, plugin, n, input, base) in cases {
            let mut rates = vec![[None, None]; sides.len()];
            for instances in [1u32, 2] {
                let label = format!(
                    "`run`, {lang} passthrough, {instances} instance{} ({} events)",
                    if instances > 1 { "s" } else { "" },
                    crate::common::fmt_int(n)
                );
                // Best of `rounds`, the sides taking turns: a burst of other
                // work on the machine does not decide the figure.
                let mut best: Vec<Option<Result<(f64, Measured)>>> =
                    (0..sides.len()).map(|_| None).collect();
                for round in 1..=args.rounds.max(1) {
                    for (i, s) in sides.iter().enumerate() {
                        eprintln!(
                            "throughput: run, {lang} x{instances}, {} (round {round})",
                            s.name
                        );
                        let r = run_reactor(
                            &env,
                            s,
                            name,
                            plugin,
                            instances,
                            (n, input),
                            (base_of(n), base),
                        );
                        let better = match (&best[i], &r) {
                            (None | Some(Err(_)), _) => true,
                            (Some(Ok((b, _))), Ok((x, _))) => x > b,
                            (Some(Ok(_)), Err(_)) => false,
                        };
                        if better {
                            best[i] = Some(r);
                        }
                    }
                }
                for (i, b) in best.into_iter().enumerate() {
                    let target = if lang == "Rust" && instances == 1 {
                        at_least("Rust pipeline >= 500K ev/s", 500e3)
                    } else {
                        None
                    };
                    match b {
                        Some(Ok((rate, m))) => {
                            rates[i][instances as usize - 1] = Some(rate);
                            t.put(i, &label, Unit::Rate, Some(rate), target);
                            if instances == 1 {
                                cpu_rows(
                                    &mut t,
                                    i,
                                    &format!("`run`, {lang} x1"),
                                    &m,
                                    n - base_of(n),
                                );
                            }
                        }
                        Some(Err(e)) => t.fail(i, &label, Unit::Rate, &e),
                        None => {}
                    }
                }
            }
            let label = format!("`run`, {lang}: 2 instances / 1 instance");
            for (i, r) in rates.iter().enumerate() {
                let ratio = match r {
                    [Some(a), Some(b)] => Some(b / a),
                    _ => None,
                };
                let target = if lang == "Python" {
                    at_least("Python 2 instances >= 1.7x one", 1.7)
                } else {
                    None
                };
                t.put(i, &label, Unit::Ratio, ratio, target);
            }
        }
        t.note(
            "`run` rows: the best of --rounds measurements; each is (N - N/10) events / (wall time of `run --until-idle` over a store of \
             the N events - wall time of the same command over a store of their first tenth), so process start, plugin load \
             (compile cache warm), each instance's start and first batches, and exit are not counted; CPU per event is likewise \
             the child's CPU (exact, from wait4) less that of the baseline run, / (N - N/10); \
             per thread name (15 characters, as the kernel keeps them) from /proc/<pid>/task/*/stat sampled every 50 ms."
                .into(),
        );
    }
    if !skip("memory") {
        for (i, s) in sides.iter().enumerate() {
            eprintln!("throughput: memory, {}", s.name);
            memory(&env, &args, s, i, &mut t);
        }
    }
    if !skip("store") {
        for (i, s) in sides.iter().enumerate() {
            eprintln!("throughput: store, {}", s.name);
            store(&env, &args, s, i, &mut t);
        }
    }
    if !skip("demo") {
        let orders = root.join("orders.jsonl");
        write_orders(&orders, args.orders)?;
        for (i, s) in sides.iter().enumerate() {
            eprintln!("throughput: demo over {} orders, {}", args.orders, s.name);
            demo(&env, args.orders, &orders, s, i, &mut t);
        }
    }
    if !skip("follow") {
        for (i, s) in sides.iter().enumerate() {
            eprintln!("throughput: follow latency, {}", s.name);
            follow(&env, &args, s, i, &mut t);
        }
    }

    println!("{}", t.print(&names));
    println!("  load     {} (1/5/15 min at the end)", load());
    if !t.notes.is_empty() {
        println!("\nNotes:");
        for n in &t.notes {
            println!("  {n}");
        }
    }
    Ok(())
}

/// A command of `side`'s `batpak-bench`, run inside `root` (its scratch
/// stores and temporary directories go there, on the measured disk), with
/// the shared passthrough component.
fn bench_cmd(env: &Env, side: &Side) -> Command {
    let mut c = Command::new(&side.bench);
    c.current_dir(env.root)
        .env("TMPDIR", env.root)
        .env("BATPAK_PASSTHROUGH", &env.inputs.passthrough)
        .env("BATPAK_CACHE_DIR", &side.cache);
    c
}

fn pipeline(env: &Env, args: &Args, side: &Side, i: usize, t: &mut Table) {
    let mut c = bench_cmd(env, side);
    c.args([
        "reactor",
        "--pipeline-only",
        "--events",
        &args.events.to_string(),
    ]);
    let n = crate::common::fmt_int(args.events);
    let wasm = format!("pipeline, wasm passthrough, in-process runner ({n} events)");
    let native = format!("pipeline, native passthrough, in-process runner ({n} events)");
    match measured_child::run(c, true) {
        Ok(m) => {
            let (w, nat) = sub_output::reactor_pipeline(&m.stdout);
            t.put(
                i,
                &wasm,
                Unit::Rate,
                w,
                at_least("Rust pipeline >= 500K ev/s", 500e3),
            );
            t.put(i, &native, Unit::Rate, nat, None);
        }
        Err(e) => t.fail(i, &wasm, Unit::Rate, &e),
    }
}

/// `count` `bench.in` events, one entity each, ~100-byte payloads.
fn write_bench_in(path: &Path, count: u64) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..count {
        writeln!(
            f,
            r#"{{"entity":"bench:{i}","scope":"bench","kind":"bench.in","payload":{{"sku":"widget-0042","qty":3,"note":"benchmark payload, one hundred bytes long"}}}}"#
        )?;
    }
    f.flush()?;
    Ok(())
}

/// The demo's orders: `count` `order.placed` events, one order entity each,
/// skus in turn, quantity 1.
fn write_orders(path: &Path, count: u64) -> Result<()> {
    let skus = ["widget", "gadget", "gizmo"];
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..count {
        writeln!(
            f,
            r#"{{"entity":"order:{i}","scope":"shop","kind":"order.placed","payload":{{"sku":"{}","qty":1}}}}"#,
            skus[(i % 3) as usize]
        )?;
    }
    f.flush()?;
    Ok(())
}

/// Sum of `out N` of the `summary | NAME: in N, out N, ...` lines `run`
/// prints on stderr, one per reactor or per instance (`NAME#i/n`).
fn summary_out(stderr: &str, reactor: &str) -> u64 {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("summary | "))
        .filter_map(|l| {
            let (name, rest) = l.split_once(": in ")?;
            if name != reactor && !name.starts_with(&format!("{reactor}#")) {
                return None;
            }
            rest.split(", ")
                .find_map(|f| f.strip_prefix("out ")?.trim().parse::<u64>().ok())
        })
        .sum()
}

/// `side`'s `batpak-host --data DIR` with `args`, measured.
fn host(side: &Side, dir: &Path, args: &[&std::ffi::OsStr], keep: bool) -> Result<Measured> {
    let mut c = side.host_cmd();
    c.arg("--data").arg(dir).args(args);
    measured_child::run(c, keep)
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// `run --until-idle` of `plugins` over an empty store (it fills the
/// side's compile cache), then the baseline: the same command over a store
/// appended from `base` (or over an empty store again); then `append
/// --jsonl input` into a fresh store and `run --until-idle` over it.
/// Returns (append, run, baseline run).
fn run_timed(
    env: &Env,
    side: &Side,
    tag: &str,
    extra: &[&std::ffi::OsStr],
    plugins: &[&Path],
    input: &Path,
    base: Option<&Path>,
) -> Result<(Measured, Measured, Measured)> {
    let mut run_args: Vec<&std::ffi::OsStr> = vec![os("run"), os("--until-idle"), os("--quiet")];
    run_args.extend_from_slice(extra);
    for p in plugins {
        run_args.push(p.as_os_str());
    }
    let empty = env.root.join(format!("{tag}-empty"));
    host(side, &empty, &run_args, false)?;
    let _ = std::fs::remove_dir_all(&empty);
    let base_dir = env.root.join(format!("{tag}-base"));
    if let Some(b) = base {
        host(
            side,
            &base_dir,
            &[os("append"), os("--jsonl"), b.as_os_str()],
            false,
        )?;
    }
    let idle = host(side, &base_dir, &run_args, true)?;
    let _ = std::fs::remove_dir_all(&base_dir);
    let dir = env.root.join(format!("{tag}-store"));
    let append = host(
        side,
        &dir,
        &[os("append"), os("--jsonl"), input.as_os_str()],
        false,
    )?;
    let run = host(side, &dir, &run_args, true)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok((append, run, idle))
}

fn run_reactor(
    env: &Env,
    side: &Side,
    name: &str,
    plugin: &Path,
    instances: u32,
    (events, input): (u64, &Path),
    (base_events, base): (u64, &Path),
) -> Result<(f64, Measured)> {
    let inst = format!("{name}={instances}");
    let extra = [os("--instances"), os(&inst)];
    let (_, run, idle) = run_timed(
        env,
        side,
        &format!("run-{name}-{instances}"),
        &extra,
        &[plugin],
        input,
        Some(base),
    )?;
    for (m, n) in [(&run, events), (&idle, base_events)] {
        let out = summary_out(&m.stderr, name);
        if out != n {
            bail!(
                "expected {n} reactions from {name}, the summary says {out}: {}",
                m.stderr.trim()
            );
        }
    }
    let events = events - base_events;
    let work = run.wall.saturating_sub(idle.wall).as_secs_f64().max(1e-3);
    Ok((events as f64 / work, run.minus(&idle)))
}

/// CPU µs per event of the run, in total and per thread name (threads of
/// the same name summed; a name under 2 % of the total is folded into
/// "other").
fn cpu_rows(t: &mut Table, side: usize, prefix: &str, m: &Measured, events: u64) {
    let per = |secs: f64| Some(secs * 1e6 / events as f64);
    t.put(
        side,
        &format!("{prefix}: CPU per input event, all threads"),
        Unit::UsPerEvent,
        per(m.cpu_secs),
        None,
    );
    let mut groups: BTreeMap<String, f64> = BTreeMap::new();
    for (name, secs) in &m.threads {
        // Numbered threads of one kind (`worker-3`) are one group.
        let base = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '#');
        let key = if *secs < 0.02 * m.cpu_secs {
            "other"
        } else if base.is_empty() {
            name.as_str()
        } else {
            base
        };
        *groups.entry(key.to_string()).or_insert(0.0) += secs;
    }
    for (name, secs) in groups {
        if secs <= 0.0 {
            continue;
        }
        t.put(
            side,
            &format!("{prefix}: CPU per input event, thread `{name}`"),
            Unit::UsPerEvent,
            per(secs),
            None,
        );
    }
}

fn memory(env: &Env, args: &Args, side: &Side, i: usize, t: &mut Table) {
    let sizes: Vec<String> = args.memory_events.iter().map(u64::to_string).collect();
    let mut c = bench_cmd(env, side);
    c.args(["memory", "--instances", "1", "--events", &sizes.join(",")])
        .arg("--dir")
        .arg(env.root);
    let m = measured_child::run(c, true);
    for &n in &args.memory_events {
        let short = short_n(n);
        let big = n >= 10_000_000;
        let label = |what: &str| format!("{what}, {short} events");
        match &m {
            Ok(m) => {
                let r = sub_output::memory_rows(&m.stdout, &short);
                t.put(
                    i,
                    &label("index bytes per event"),
                    Unit::BytesPerEvent,
                    r.index_per_event,
                    at_most("<= 64 B/event", 64.0),
                );
                t.put(
                    i,
                    &label("RSS of the open store"),
                    Unit::Mib,
                    r.rss_open,
                    None,
                );
                t.put(
                    i,
                    &label("reopen after clean close"),
                    Unit::Ms,
                    r.reopen_ms,
                    if big {
                        at_most("<= 2 s at 10M", 2000.0)
                    } else {
                        None
                    },
                );
                t.put(
                    i,
                    &label("cursor replay"),
                    Unit::Rate,
                    r.replay,
                    if big {
                        at_least(">= 2M ev/s at 10M", 2e6)
                    } else {
                        None
                    },
                );
            }
            Err(e) => t.fail(i, &label("index bytes per event"), Unit::BytesPerEvent, e),
        }
    }
}

fn store(env: &Env, args: &Args, side: &Side, i: usize, t: &mut Table) {
    let mut c = bench_cmd(env, side);
    c.args([
        "store",
        "--systems",
        &args.store_systems.join(","),
        "--rounds",
        "2",
        "--cap-secs",
        "10",
        "--events",
        &args.store_events.to_string(),
        "--reopen-events",
        &args.reopen_events.to_string(),
    ])
    .arg("--dir")
    .arg(env.root);
    let (n, r) = (short_n(args.store_events), short_n(args.reopen_events));
    let batpak = args.store_systems.iter().any(|s| s == "batpak");
    // batpak 0.10's cell of a row, beside SQLite's, when it runs.
    let put_batpak = |t: &mut Table, what: &str, unit: Unit, v: Option<f64>| {
        if batpak {
            t.put(i, &format!("store {what}: batpak 0.10"), unit, v, None);
        }
    };
    let label_a = format!("store (a) {n} appends 1 at a time, durable at end: batpak-host");
    let m = match measured_child::run(c, true) {
        Ok(m) => m,
        Err(e) => return t.fail(i, &label_a, Unit::Rate, &e),
    };
    let a = sub_output::store_row(&m.stdout, "a");
    t.put(i, &label_a, Unit::Rate, a.host, None);
    t.put(
        i,
        &format!("store (a) {n}: SQLite"),
        Unit::Rate,
        a.sqlite,
        None,
    );
    put_batpak(t, &format!("(a) {n}"), Unit::Rate, a.batpak);
    let ratio = match (a.host, a.sqlite) {
        (Some(h), Some(s)) if s > 0.0 => Some(h / s),
        _ => None,
    };
    t.put(
        i,
        "store (a): batpak-host / SQLite",
        Unit::Ratio,
        ratio,
        at_least(">= 2x SQLite", 2.0),
    );
    let a2 = sub_output::store_row(&m.stdout, "a'");
    t.put(
        i,
        &format!("store (a') {n} appends, Wait::Visible: batpak-host"),
        Unit::Rate,
        a2.host,
        at_least(">= 500K ev/s", 500e3),
    );
    for (key, what) in [
        ("b", format!("(b) {n} in durable batches of 256")),
        ("c", format!("(c) {n} from 16 threads, each durable")),
    ] {
        let row = sub_output::store_row(&m.stdout, key);
        t.put(
            i,
            &format!("store {what}: batpak-host"),
            Unit::Rate,
            row.host,
            None,
        );
        t.put(
            i,
            &format!("store {what}: SQLite"),
            Unit::Rate,
            row.sqlite,
            None,
        );
        put_batpak(t, &what, Unit::Rate, row.batpak);
    }
    let d = sub_output::store_row(&m.stdout, "d");
    t.put(
        i,
        &format!("store (d) reopen {r} after clean close: batpak-host"),
        Unit::Ms,
        d.host,
        None,
    );
    t.put(
        i,
        &format!("store (d) reopen {r}: SQLite"),
        Unit::Ms,
        d.sqlite,
        None,
    );
    put_batpak(t, &format!("(d) reopen {r}"), Unit::Ms, d.batpak);
    let d2 = sub_output::store_row(&m.stdout, "d'");
    t.put(
        i,
        &format!("store (d') reopen {r} after unclean stop: batpak-host"),
        Unit::Ms,
        d2.host,
        None,
    );
    let e = sub_output::store_row(&m.stdout, "e");
    t.put(
        i,
        &format!("store (e) cursor replay of {r}: batpak-host"),
        Unit::Rate,
        e.host,
        None,
    );
    t.put(
        i,
        &format!("store (e) cursor replay of {r}: SQLite"),
        Unit::Rate,
        e.sqlite,
        None,
    );
    put_batpak(
        t,
        &format!("(e) cursor replay of {r}"),
        Unit::Rate,
        e.batpak,
    );
}

fn demo(env: &Env, orders: u64, input: &Path, side: &Side, i: usize, t: &mut Table) {
    let n = short_n(orders);
    let scale = orders as f64 / 1e6;
    let inputs = env.inputs;
    let cfg = inputs.shop_config.as_os_str();
    let extra = [os("--plugin-config"), cfg];
    let plugins = [
        inputs.inventory.as_path(),
        inputs.low_stock.as_path(),
        inputs.shipping.as_path(),
    ];
    let label = format!("demo, {n} orders: `append --jsonl` time");
    match run_timed(env, side, "demo", &extra, &plugins, input, None) {
        Ok((append, run, idle)) => {
            let (inv, ship) = (
                summary_out(&run.stderr, "inventory"),
                summary_out(&run.stderr, "shipping"),
            );
            if inv != orders || ship != orders {
                t.note(format!(
                    "demo on {}: expected {orders} reservations and shipments, the summary says {inv} and {ship}",
                    side.name
                ));
            }
            t.put(i, &label, Unit::Secs, Some(append.wall.as_secs_f64()), None);
            t.put(
                i,
                &format!("demo, {n} orders: `append --jsonl` peak RSS"),
                Unit::Mib,
                Some(append.max_rss as f64),
                None,
            );
            t.put(
                i,
                &format!("demo, {n} orders: `run --until-idle` time (3 reactors)"),
                Unit::Secs,
                Some(run.wall.as_secs_f64()),
                None,
            );
            t.put(
                i,
                &format!("demo, {n} orders: `run` peak RSS"),
                Unit::Mib,
                Some(run.max_rss as f64),
                at_most("< 512 MiB", 512.0 * 1024.0 * 1024.0),
            );
            cpu_rows(
                t,
                i,
                &format!("demo, {n} orders: `run`"),
                &run.clone().minus(&idle),
                orders,
            );
            t.put(
                i,
                &format!("demo, {n} orders: append + run"),
                Unit::Secs,
                Some((append.wall + run.wall).as_secs_f64()),
                at_most(
                    if orders == 1_000_000 {
                        "<= 10 s".to_string()
                    } else {
                        format!("<= 10 s at 1M, so {:.2} s here", 10.0 * scale)
                    },
                    10.0 * scale,
                ),
            );
        }
        Err(e) => t.fail(i, &label, Unit::Secs, &e),
    }
}

fn follow(env: &Env, args: &Args, side: &Side, i: usize, t: &mut Table) {
    let label = "follow latency p50, POST order -> `shipment.requested` on HTTP follow";
    match crate::follow_latency::measure(env, side, args.follow_secs, args.follow_rate) {
        Ok(l) => {
            t.put(i, label, Unit::Ms, Some(l.p50_ms), None);
            t.put(
                i,
                "follow latency p99, same",
                Unit::Ms,
                Some(l.p99_ms),
                at_most("<= 5 ms", 5.0),
            );
        }
        Err(e) => t.fail(i, label, Unit::Ms, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_out_sums_a_reactors_instances_only() {
        let stderr = "\
[run] info: loaded passthrough-py 0.1.0
summary | passthrough-py#0/2: in 2500, out 2500, denied 0, parked 0, at seq 10020 of 10022, stopped (version 0.1.0)
summary | passthrough-py#1/2: in 2500, out 2499, denied 0, parked 0, at seq 10021 of 10022, stopped (version 0.1.0)
summary | passthrough: in 7, out 7, denied 0, parked 0, stopped (version 0.1.0)
";
        assert_eq!(summary_out(stderr, "passthrough-py"), 4999);
        assert_eq!(summary_out(stderr, "passthrough"), 7);
        assert_eq!(summary_out(stderr, "shipping"), 0);
    }

    #[test]
    fn a_row_missing_on_one_side_is_na_and_has_no_verdict() {
        let mut t = Table {
            sides: 2,
            rows: Vec::new(),
            notes: Vec::new(),
        };
        t.put(0, "x", Unit::Rate, Some(600e3), at_least(">= 500K", 500e3));
        t.put(1, "x", Unit::Rate, None, at_least(">= 500K", 500e3));
        let out = t.print(&["this".into(), "prev".into()]);
        let row = out.lines().find(|l| l.starts_with("| x ")).expect("row");
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[2..7], ["600.0K ev/s", "n/a", ">= 500K", "MET", "n/a"]);
    }
}
