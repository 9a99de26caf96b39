//! `batpak-bench reactor`: the wasm reactor runtime against the same reactor
//! compiled natively, in one run.
//!
//! 1. **Compile**: the passthrough component compiled cold (empty cache), then
//!    loaded from the compile cache.
//! 2. **Instantiate**: a fresh instance from the pre-linked component (what
//!    every failure costs).
//! 3. **Boundary**: `react` called directly on in-memory batches of 1, 16,
//!    256 and 1024 events, wasm vs native; the difference per event is the
//!    cost of crossing the component boundary (encoding the flat batch
//!    buffer of `batpak:reactor@0.2.0`, copying it into the guest, the SDK's
//!    view and proposals encoding, copying the proposals buffer back and
//!    decoding it). The hand-written pass-through on 0.1.0 and on 0.2.0 is
//!    timed too (informational), to show what the contract itself costs.
//! 4. **Pipeline**: `events` events appended to a store, then consumed by a
//!    runner (cursor, gates, one atomic append of reactions + checkpoint per
//!    256-event batch), wasm plugin vs native reactor, each on its own store
//!    with the same input; then the store's own `append_batch(256, durable)`
//!    rate over as many events, on the same disk, as the bound the pipeline
//!    is compared to.
//!
//! The passthrough plugin emits one `bench.out` per `bench.in`, same entity,
//! scope and payload; the native reactor does exactly the same.

use anyhow::{bail, Context, Result};
use batpak_runtime::{
    self, CompileSource, Descriptor, Plugin, PluginSettings, ReactFailure, Reaction, Reactor,
    RunnerSettings, Runtime, RuntimeConfig,
};
use batpak_store::{AppendOptions, Store};
use batpak_store::{CanalHandle, Region};
use batpak_store::{Coordinate, Event, EventHeader, EventId, EventView, Proposal};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A hand-written component that implements the reactor world and ignores
/// its input (`react` returns no proposals without reading the batch). Timing
/// it isolates the host side of the boundary: encoding the batch buffer,
/// copying it into the guest and the call itself.
const NULL_REACTOR_WAT: &str = include_str!("../../plugins/null-wat/reactor.wat");
/// The hand-written pass-through reactor, `batpak:reactor@0.2.0` (flat
/// buffers), and its `@0.1.0` twin (WIT records): the same work on both
/// contracts, so their difference is what the flat layout saves.
const PASSTHROUGH_WAT_V2: &str = include_str!("../../plugins/passthrough-wat/reactor.wat");
const PASSTHROUGH_WAT_V1: &str = include_str!("../../plugins/fixtures/passthrough-wat-0.1.0.wat");
/// The boundary target per event at 256-event batches (wasm - native).
const BOUNDARY_TARGET_NS: f64 = 50.0;

const PAYLOAD: &[u8] = br#"{"sku":"widget-0042","qty":3,"x":1}"#;
const BOUNDARY_BATCHES: [usize; 4] = [1, 16, 256, 1024];
const PIPELINE_BATCH: usize = 256;

/// The passthrough reactor compiled into the host.
struct NativePassthrough {
    d: Descriptor,
}

impl NativePassthrough {
    fn new() -> Self {
        let mut d = Descriptor::new("passthrough-native", env!("CARGO_PKG_VERSION"));
        d.region = Region::all().kinds(["bench.in"]);
        d.emits = vec!["bench.out".into()];
        NativePassthrough { d }
    }
}

impl Reactor for NativePassthrough {
    fn descriptor(&self) -> &Descriptor {
        &self.d
    }
    fn digest(&self) -> &str {
        "native"
    }
    fn react(&mut self, batch: &[EventView]) -> Result<Vec<Reaction>, ReactFailure> {
        Ok(batch
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let c = e.coordinate();
                Reaction::new(i as u32, c.entity, c.scope, "bench.out", e.payload.to_vec())
            })
            .collect())
    }
}

/// The passthrough component: `BATPAK_PASSTHROUGH`, or the workspace build
/// (built here when missing).
pub(crate) fn passthrough_wasm() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("BATPAK_PASSTHROUGH") {
        return Ok(PathBuf::from(p));
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| ws.join("target"));
    // The plugin is built with the benchmark's own profile (`dist`: not
    // incremental), and always through cargo, which does nothing when it
    // is up to date, so a stale plugin is never measured.
    let profile = env!("BENCH_PROFILE");
    let p = target.join(format!("wasm32-wasip2/{profile}/passthrough.wasm"));
    eprintln!("building the passthrough plugin (profile {profile})...");
    let st = std::process::Command::new("cargo")
        .current_dir(ws)
        .args([
            "build",
            "--profile",
            profile,
            "--target",
            "wasm32-wasip2",
            "-p",
            "passthrough",
        ])
        .status()
        .context("running cargo")?;
    if !st.success() || !p.is_file() {
        bail!("could not build {}", p.display());
    }
    Ok(p)
}

fn synthetic(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let header = EventHeader {
                id: EventId::generate(),
                sequence: i as u64 + 1,
                entity_sequence: 1,
                coordinate: Coordinate::new(format!("bench:{i}"), "bench").expect("valid"),
                kind: "bench.in".into(),
                causation: None,
                correlation: EventId(i as u128 + 1),
                timestamp_us: 1,
                prev: None,
                idempotency_key: None,
                meta: Default::default(),
            };
            Event {
                hash: header.hash(PAYLOAD),
                header: Arc::new(header),
                payload: PAYLOAD.into(),
            }
        })
        .collect()
}

/// Nanoseconds per event of `react` over batches of `size`, for about
/// `total` events (after a warm-up): the best of five rounds, so a burst of
/// load from other processes on a shared machine does not decide the figure.
fn react_ns(
    r: &mut dyn Reactor,
    events: &[Event],
    size: usize,
    total: usize,
    per_event: usize,
) -> Result<f64> {
    const ROUNDS: usize = 5;
    let batch: Vec<EventView> = events[..size].iter().map(EventView::from).collect();
    let batch = &batch[..];
    let calls = (total / size / ROUNDS).max(20);
    for _ in 0..(calls / 10).max(2) {
        r.react(batch).map_err(|f| anyhow::anyhow!("{f}"))?;
    }
    let mut best = f64::INFINITY;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let mut out = 0usize;
        for _ in 0..calls {
            out += r.react(batch).map_err(|f| anyhow::anyhow!("{f}"))?.len();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / (calls * size) as f64);
        if out != calls * size * per_event {
            bail!(
                "expected {per_event} reaction(s) per event, got {out} for {}",
                calls * size
            );
        }
    }
    Ok(best)
}

fn fill(dir: &Path, events: u64) -> Result<(Store, Duration)> {
    let store = Store::open(dir)?;
    let t = Instant::now();
    let mut next = 0u64;
    while next < events {
        let n = (events - next).min(1000);
        let batch: Vec<Proposal> = (next..next + n)
            .map(|i| {
                Proposal::new(
                    Coordinate::new(format!("bench:{i}"), "bench").expect("valid"),
                    "bench.in",
                    PAYLOAD.to_vec(),
                )
            })
            .collect();
        store.append_batch(batch, AppendOptions::visible())?;
        next += n;
    }
    store.sync()?;
    Ok((store, t.elapsed()))
}

/// Runs `reactor` over a store holding `events` inputs; returns the time
/// from start to caught up.
fn pipeline(
    dir: &Path,
    events: u64,
    reactor: Box<dyn Reactor>,
    durable_window: u32,
) -> Result<(Duration, u64)> {
    let (store, _) = fill(dir, events)?;
    // A short pull wait: the runner reports idle only after a pull comes
    // back empty, and that wait would otherwise be timed as work.
    let settings = RunnerSettings {
        max_batch: PIPELINE_BATCH,
        pull_wait: Duration::from_millis(5),
        durable_window,
        ..RunnerSettings::default()
    };
    let t = Instant::now();
    let h = batpak_runtime::spawn(&store, reactor, settings)?;
    let status = h.status().clone();
    loop {
        std::thread::sleep(Duration::from_millis(2));
        let snap = status.snapshot(0);
        if snap.error.is_some() {
            bail!("runner failed: {:?}", snap.error);
        }
        if snap.events_in >= events && status.is_idle_at(store.watermarks().durable) {
            break;
        }
    }
    let took = t.elapsed();
    Box::new(h).stop_and_join()?;
    let out = store
        .scan(&Region::all().kinds(["bench.out"]), 0, usize::MAX, false)?
        .len() as u64;
    store.close()?;
    Ok((took, out))
}

fn rate(n: u64, d: Duration) -> String {
    let r = n as f64 / d.as_secs_f64();
    if r >= 1e6 {
        format!("{:.2}M ev/s", r / 1e6)
    } else {
        format!("{:.1}K ev/s", r / 1e3)
    }
}

/// Which side of the pipeline comparison to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    /// The wasm passthrough component only.
    Wasm,
    /// The native passthrough reactor only.
    Native,
}

/// The store's own rate for durable batches of `PIPELINE_BATCH` proposals
/// shaped like the pipeline's reactions (one writer, waiting for each), over
/// `events` events on a fresh store: the bound the pipeline is compared to.
fn store_durable_batches(dir: &Path, events: u64) -> Result<Duration> {
    let store = Store::open(dir)?;
    let batches: Vec<Vec<Proposal>> = (0..events.div_ceil(PIPELINE_BATCH as u64))
        .map(|b| {
            let lo = b * PIPELINE_BATCH as u64;
            let hi = (lo + PIPELINE_BATCH as u64).min(events);
            (lo..hi)
                .map(|i| {
                    Proposal::new(
                        Coordinate::new(format!("bench:{i}"), "bench").expect("valid"),
                        "bench.out",
                        PAYLOAD.to_vec(),
                    )
                })
                .collect()
        })
        .collect();
    let t = Instant::now();
    for b in batches {
        store.append_batch(b, AppendOptions::durable())?;
    }
    let took = t.elapsed();
    store.close()?;
    Ok(took)
}

/// Runs the reactor benchmark over `events` events; `pipeline_only` skips
/// the compile, instantiate and boundary rows, `only` runs one pipeline side.
///
/// # Errors
/// The plugin cannot be built or loaded, or a store operation fails.
pub fn run(
    events: u64,
    pipeline_only: bool,
    only: Option<Side>,
    durable_window: u32,
) -> Result<()> {
    let wasm = passthrough_wasm()?;
    let tmp = tempfile::Builder::new()
        .prefix("batpak-reactor-bench-")
        .tempdir()?;
    let cache = tmp.path().join("cache");

    // 1. Compile: cold, then from the cache (a new runtime each time, as a
    //    new process would have).
    let rt = Runtime::new(RuntimeConfig::with_cache(&cache))?;
    let plugin = Plugin::load(&rt, &wasm, PluginSettings::default())?;
    let (src, cold) = plugin.compile_info();
    if src != CompileSource::Compiled {
        bail!("expected a cold compile");
    }
    drop(plugin);
    let rt = Runtime::new(RuntimeConfig::with_cache(&cache))?;
    let mut plugin: Plugin = Plugin::load(&rt, &wasm, PluginSettings::default())?;
    let (src, cached) = plugin.compile_info();
    if src != CompileSource::Cached {
        bail!("expected a cache hit");
    }

    // 2. Instantiate.
    let mut inst = Vec::new();
    let mut boundary = Vec::new();
    let mut wat_rows = Vec::new();
    if !pipeline_only {
        for _ in 0..200 {
            inst.push(plugin.measure_instantiate()?);
        }
        inst.sort();

        // 3. Boundary.
        let synthetic = synthetic(*BOUNDARY_BATCHES.iter().max().expect("sizes"));
        let mut native = NativePassthrough::new();
        let null_path = tmp.path().join("null.wat");
        std::fs::write(&null_path, NULL_REACTOR_WAT)?;
        let mut null = Plugin::load(&rt, &null_path, PluginSettings::default())?;
        for &size in &BOUNDARY_BATCHES {
            let total = 200_000;
            let w = react_ns(&mut plugin, &synthetic, size, total, 1)?;
            let n = react_ns(&mut native, &synthetic, size, total, 1)?;
            let z = react_ns(&mut null, &synthetic, size, total, 0)?;
            boundary.push((size, w, n, z));
        }
        // The same hand-written reactor on both contract versions, 256
        // events.
        for (label, text) in [("0.1.0", PASSTHROUGH_WAT_V1), ("0.2.0", PASSTHROUGH_WAT_V2)] {
            let path = tmp.path().join(format!("passthrough-{label}.wat"));
            std::fs::write(&path, text)?;
            let mut p = Plugin::load(&rt, &path, PluginSettings::default())?;
            let w = react_ns(&mut p, &synthetic, 256, 200_000, 1)?;
            let n = react_ns(&mut native, &synthetic, 256, 200_000, 1)?;
            wat_rows.push((label, w, n));
        }
    }

    // 4. Pipeline, each on its own store with the same input; then the
    //    store's own durable-batch rate on the same disk, in the same run.
    let mut wasm_time = None;
    let mut native_time = None;
    if only != Some(Side::Native) {
        eprintln!("pipeline: {events} events through the wasm plugin...");
        let (t, out) = pipeline(
            &tmp.path().join("wasm-store"),
            events,
            Box::new(plugin),
            durable_window,
        )?;
        if out != events {
            bail!("expected {events} reactions from wasm, got {out}");
        }
        wasm_time = Some(t);
    }
    if only != Some(Side::Wasm) {
        eprintln!("pipeline: {events} events through the native reactor...");
        let (t, out) = pipeline(
            &tmp.path().join("native-store"),
            events,
            Box::new(NativePassthrough::new()),
            durable_window,
        )?;
        if out != events {
            bail!("expected {events} reactions from native, got {out}");
        }
        native_time = Some(t);
    }
    eprintln!("store: {events} events in durable batches of {PIPELINE_BATCH}...");
    let store_time = store_durable_batches(&tmp.path().join("batch-store"), events)?;

    let r = |t: Option<Duration>| t.map_or_else(|| "-".to_string(), |t| rate(events, t));
    let met = |ok: bool| if ok { "MET" } else { "MISSED" };
    let per_s = |t: Duration| events as f64 / t.as_secs_f64();
    println!(
        "## Reactor benchmark ({events} events, passthrough, {PIPELINE_BATCH}-event batches, durable window {durable_window})\n"
    );
    println!("| measure | wasm component | native Rust | note |");
    println!("|---|---|---|---|");
    let best = wasm_time.or(native_time).map(per_s);
    println!(
        "| pipeline throughput | {} | {} | {} |",
        r(wasm_time),
        r(native_time),
        match wasm_time {
            Some(w) => format!("wasm target >= 500K ev/s: {}", met(per_s(w) >= 500_000.0)),
            None => "wasm not run".to_string(),
        }
    );
    if let (Some(w), Some(n)) = (wasm_time, native_time) {
        let ratio = per_s(w) / per_s(n);
        println!(
            "| wasm / native | {:.0}% | - | target >= 90%: {} |",
            ratio * 100.0,
            met(ratio >= 0.9)
        );
    }
    let store_rate = per_s(store_time);
    if let Some(b) = best {
        let ratio = b / store_rate;
        println!(
            "| pipeline / store durable batches | {:.0}% | - | {} side vs the store's own append_batch({PIPELINE_BATCH}, durable) at {} in this run; target >= 50%: {} |",
            ratio * 100.0,
            if wasm_time.is_some() { "wasm" } else { "native" },
            rate(events, store_time),
            met(ratio >= 0.5)
        );
    }
    for (size, w, n, z) in &boundary {
        let over = w - n;
        println!(
            "| react, batch of {size} | {w:.0} ns/event | {n:.0} ns/event | boundary (wasm - native) {over:.0} ns/event{}; input side alone (null component) {z:.0} ns/event |",
            if *size == 256 {
                format!(
                    " (target <= {BOUNDARY_TARGET_NS:.0}: {})",
                    if over <= BOUNDARY_TARGET_NS {
                        "MET"
                    } else {
                        "MISSED"
                    }
                )
            } else {
                String::new()
            }
        );
    }
    for (label, w, n) in &wat_rows {
        println!(
            "| react, batch of 256, hand-written WAT on batpak:reactor@{label} | {w:.0} ns/event | {n:.0} ns/event | boundary (wasm - native) {:.0} ns/event (informational: the contract's own cost, no SDK) |",
            w - n
        );
    }
    if let Some(inst_median) = inst.get(inst.len() / 2) {
        println!(
            "| instantiate (median of 200) | {:.1} µs | - | fresh instance from the pre-linked component, no init |",
            inst_median.as_secs_f64() * 1e6
        );
    }
    println!(
        "| compile, cold | {:.1} ms | - | {} ({} KiB) |",
        cold.as_secs_f64() * 1e3,
        wasm.display(),
        std::fs::metadata(&wasm)
            .map(|m| m.len() / 1024)
            .unwrap_or(0)
    );
    println!(
        "| compile, from cache | {:.2} ms | - | read, digest check and deserialize of the cached artifact |",
        cached.as_secs_f64() * 1e3
    );
    println!(
        "\nPipeline = cursor pull, react, capability gate, one durable append of 256 reactions + checkpoint per batch; \
         both runs share the store's fsync cost, which bounds the ratio near 1 when the disk is the bottleneck. \
         The store row appends the same number of reaction-shaped events in durable batches of {PIPELINE_BATCH} from one thread."
    );
    Ok(())
}
