//! `batpak-host test`: runs one plugin on fixture events in a scratch store,
//! with the real runtime and gates, and prints what it did: reactions,
//! denials, parked events (its log lines go to stderr as in `run`).
//!
//! It then runs the same input again in one-event batches and says plainly
//! when the reactions differ: a rule over "the events of one batch" changes
//! with the batch size the host picks and with bisection after a failure,
//! so a reactor whose reactions depend on batching keeps state in the wrong
//! place (durable state belongs in the log, read through `read-entity`).

use anyhow::{bail, Context};
use batpak_runtime::{
    self, CompileSource, FailurePolicy, LogLevel, ParkedEvent, Plugin, PluginSettings, Reactor,
    RunState, RunnerSettings, Runtime,
};
use batpak_store::{
    AppendOptions, CanalHandle, Coordinate, Event, EventId, LogReader, Proposal, Store, DENIED_KIND,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `batpak-host test`.
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct TestArgs {
    /// Plugin component (`.wasm`, or component text `.wat`).
    pub plugin: PathBuf,
    /// Input events, one JSON object a line:
    /// {"entity","scope","kind","payload"} (the `append --jsonl` format).
    #[cfg_attr(feature = "cli", arg(long, value_name = "EVENTS.jsonl"))]
    pub input: PathBuf,
    /// Expected reactions, one JSON object a line, as this command prints
    /// them: {"source": <0-based input line>, "entity", "scope", "kind",
    /// "payload"}. On a mismatch the command prints a diff and exits 1.
    #[cfg_attr(feature = "cli", arg(long, value_name = "REACTIONS.jsonl"))]
    pub expect: Option<PathBuf>,
    /// JSON file whose content is handed to the plugin's `init`
    /// (default `{}`).
    #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
    pub config: Option<PathBuf>,
    /// Kinds the operator grants (default: every kind the plugin declares),
    /// to see the capability gate deny the rest.
    #[cfg_attr(feature = "cli", arg(long, value_name = "KIND", value_delimiter = ','))]
    pub grant: Option<Vec<String>>,
    /// Largest batch of the first run.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 256, value_name = "N"))]
    pub max_batch: usize,
    /// Calls of a failing batch before it is bisected and the failing event
    /// parked.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 2, value_name = "N"))]
    pub attempts: u32,
    /// Give up when a run has not caught up after this long.
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value_t = 300, value_name = "SECONDS")
    )]
    pub timeout_s: u64,
    /// Lowest level of log lines printed (trace, debug, info, warn, error,
    /// off).
    #[cfg_attr(
        feature = "cli",
        arg(long, default_value = "info", value_name = "LEVEL")
    )]
    pub log_level: LogLevel,
    /// The compile cache: a second `test` of an unchanged plugin loads its
    /// compiled code from there instead of compiling it again.
    #[cfg_attr(feature = "cli", command(flatten))]
    pub cache: crate::plugins::compile_cache::CacheOptions,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLine {
    entity: String,
    scope: String,
    kind: String,
    payload: Value,
}

/// What one run produced.
struct Outcome {
    reactions: Vec<Value>,
    denials: Vec<Value>,
    parked: Vec<Value>,
    /// Where the plugin's compiled code came from, and how long that took.
    compiled: (CompileSource, Duration),
    /// The reactor's name and version.
    reactor: (String, String),
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("batpak-test-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the scratch directory {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Largest `--input` or `--expect` file read: refused from its size first.
const MAX_FIXTURE_FILE_BYTES: u64 = 256 << 20;

fn read_input(path: &Path) -> anyhow::Result<Vec<Proposal>> {
    // A regular file, checked on the open descriptor before reading.
    let (file, _) = batpak_runtime::open_regular(path, MAX_FIXTURE_FILE_BYTES)
        .map_err(|e| anyhow::anyhow!("--input {e}"))?;
    let file = std::io::Read::take(file, MAX_FIXTURE_FILE_BYTES);
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("--input {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let l: InputLine = serde_json::from_str(&line).with_context(|| {
            format!(
                "--input {} line {}: expected {{\"entity\",\"scope\",\"kind\",\"payload\"}}",
                path.display(),
                i + 1
            )
        })?;
        let p = Proposal::new(
            Coordinate::new(l.entity, l.scope)
                .with_context(|| format!("--input {} line {}", path.display(), i + 1))?,
            l.kind,
            serde_json::to_vec(&l.payload)?,
        );
        p.validate(false)
            .with_context(|| format!("--input {} line {}", path.display(), i + 1))?;
        out.push(p);
    }
    if out.is_empty() {
        bail!("--input {}: no events", path.display());
    }
    Ok(out)
}

fn read_jsonl(path: &Path, flag: &str) -> anyhow::Result<Vec<Value>> {
    let text = batpak_runtime::read_regular_text(path, MAX_FIXTURE_FILE_BYTES)
        .map_err(|e| anyhow::anyhow!("{flag} {e}"))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{flag} {} line {}: not JSON", path.display(), i + 1))
        })
        .collect()
}

/// A payload as JSON when it is JSON, else as a string.
fn payload_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

fn meta<'a>(e: &'a Event, key: &str) -> Option<&'a str> {
    e.header
        .meta
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn parked_json(p: &ParkedEvent, index: &HashMap<String, usize>) -> Value {
    let r = &p.record;
    json!({
        "parked": index.get(&r.event).copied(),
        "kind": r.kind,
        "entity": r.entity,
        "failure": r.failure,
        "cause": r.cause,
        "attempts": r.attempts,
    })
}

/// Runs the plugin once over `input` in a fresh store under `dir`.
fn run_once(
    rt: &Runtime,
    a: &TestArgs,
    config: &str,
    input: &[Proposal],
    dir: &Path,
    max_batch: usize,
) -> anyhow::Result<Outcome> {
    let plugin = Plugin::load(
        rt,
        &a.plugin,
        PluginSettings {
            config: config.to_string(),
            log_level: a.log_level,
            ..PluginSettings::default()
        },
    )?;
    let name = plugin.descriptor().name.clone();
    let reactor = (name.clone(), plugin.descriptor().version.clone());
    let compiled = plugin.compile_info();
    let store = Store::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let settings = RunnerSettings {
        max_batch,
        grant_emits: a.grant.clone(),
        policy: FailurePolicy {
            attempts: a.attempts,
            backoff: Duration::from_millis(10),
            ..FailurePolicy::default()
        },
        log_level: a.log_level,
        ..RunnerSettings::default()
    };
    let boxed: Box<dyn Reactor> = Box::new(plugin);
    let handle = batpak_runtime::spawn(&store, boxed, settings)?;
    let status = handle.status().clone();
    let deadline = Instant::now() + Duration::from_secs(a.timeout_s);
    // The input is appended once the runner has started, so a
    // lossy-subscription reactor (live events only) sees it too; a cursor
    // reactor reads from the start either way.
    while matches!(status.state(), RunState::Starting) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let receipts = store.append_batch(input.to_vec(), AppendOptions::durable())?;
    let index: HashMap<String, usize> = receipts
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.to_string(), i))
        .collect();
    loop {
        let durable = store.watermarks().durable;
        if status.is_idle_at(durable)
            || matches!(status.state(), RunState::Stopped | RunState::Failed)
        {
            break;
        }
        if Instant::now() >= deadline {
            let _ = Box::new(handle).stop_and_join();
            bail!(
                "reactor {name} did not catch up within {} s (--timeout-s)",
                a.timeout_s
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Box::new(handle)
        .stop_and_join()
        .with_context(|| format!("reactor {name}"))?;
    let parked = batpak_runtime::parked_events(&store, Some(&name))?
        .iter()
        .map(|p| parked_json(p, &index))
        .collect();
    store.close()?;

    let mut reactions = Vec::new();
    let mut denials = Vec::new();
    let mut reader = LogReader::open(dir)?;
    loop {
        let events = reader.poll(64 << 20)?;
        if events.is_empty() {
            break;
        }
        for e in &events {
            let h = &e.header;
            if h.kind == DENIED_KIND {
                denials.push(payload_json(&e.payload));
            } else if meta(e, "reactor") == Some(name.as_str())
                && !batpak_store::is_system_kind(&h.kind)
            {
                let source = h
                    .causation
                    .as_ref()
                    .map(EventId::to_string)
                    .and_then(|c| index.get(&c).copied());
                reactions.push(json!({
                    "source": source,
                    "entity": h.coordinate.entity,
                    "scope": h.coordinate.scope,
                    "kind": h.kind,
                    "payload": payload_json(&e.payload),
                }));
            }
        }
    }
    Ok(Outcome {
        reactions,
        denials,
        parked,
        compiled,
        reactor,
    })
}

/// Lines only in `want` (`-`) or only in `got` (`+`), in order, by a
/// longest-common-subsequence walk.
fn diff(want: &[String], got: &[String]) -> Vec<String> {
    let (n, m) = (want.len(), got.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if want[i] == got[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && want[i] == got[j] {
            out.push(format!("  {}", want[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+ {}", got[j]));
            j += 1;
        } else {
            out.push(format!("- {}", want[i]));
            i += 1;
        }
    }
    out
}

fn lines(values: &[Value]) -> Vec<String> {
    values.iter().map(Value::to_string).collect()
}

/// `data` is the `--data` given on the command line, if one was: `test`
/// reads and writes no store of the user's (it runs in a scratch store of
/// its own, and compiled plugins go to the user's compile cache), so a note
/// says it is not used.
pub fn test(data: Option<&Path>, a: TestArgs) -> anyhow::Result<ExitCode> {
    if a.max_batch == 0 || a.attempts == 0 || a.timeout_s == 0 {
        eprintln!("error: --max-batch, --attempts and --timeout-s must be at least 1");
        return Ok(ExitCode::from(2));
    }
    if let Some(d) = data {
        eprintln!(
            "test | --data {} is not used: test runs the plugin in a scratch store of its own (compiled plugins are cached in the compile cache; see --cache-dir)",
            d.display()
        );
    }
    let input = read_input(&a.input)?;
    let expect = a
        .expect
        .as_deref()
        .map(|p| read_jsonl(p, "--expect"))
        .transpose()?;
    let config = match &a.config {
        Some(p) => {
            let text = batpak_runtime::read_regular_text(
                p,
                crate::plugins::plugin_config::MAX_CONFIG_FILE_BYTES,
            )
            .map_err(|e| anyhow::anyhow!("--config {e}"))?;
            let v: Value = serde_json::from_str(&text)
                .with_context(|| format!("--config {}: not JSON", p.display()))?;
            v.to_string()
        }
        None => "{}".to_string(),
    };
    let scratch = Scratch::new()?;
    // The user's compile cache: a second `test` of the same component loads
    // it at once (and the second run below does too). Without one (--no-cache),
    // one in the scratch directory, removed at the end, so the two runs below
    // still compile once.
    let mut rt_config = a.cache.runtime_config()?;
    let persistent = rt_config.cache_dir.is_some();
    if !persistent {
        rt_config.cache_dir = Some(scratch.0.join("cache"));
    }
    let rt = Runtime::new(rt_config)?;

    let first = run_once(
        &rt,
        &a,
        &config,
        &input,
        &scratch.0.join("batched"),
        a.max_batch,
    )?;
    let ((name, version), (source, took)) = (&first.reactor, first.compiled);
    let ms = took.as_secs_f64() * 1e3;
    match (source, rt.cache().filter(|_| persistent)) {
        (CompileSource::Cached, Some(c)) => eprintln!(
            "test | {name} {version}: loaded from the compile cache in {ms:.1} ms ({})",
            c.dir().display()
        ),
        (CompileSource::Compiled, Some(c)) => eprintln!(
            "test | {name} {version}: compiled in {ms:.1} ms (kept in the compile cache {} for the next run)",
            c.dir().display()
        ),
        (_, None) => eprintln!("test | {name} {version}: compiled in {ms:.1} ms (no compile cache)"),
    }
    for r in &first.reactions {
        println!("{}", json!({ "reaction": r }));
    }
    for d in &first.denials {
        println!("{}", json!({ "denied": d }));
    }
    for p in &first.parked {
        println!("{}", json!({ "parked": p }));
    }
    eprintln!(
        "test | {} input events, {} reactions, {} denied, {} parked",
        input.len(),
        first.reactions.len(),
        first.denials.len(),
        first.parked.len()
    );
    let mut ok = true;
    if let Some(want) = &expect {
        let (want, got) = (lines(want), lines(&first.reactions));
        if want == got {
            eprintln!(
                "test | reactions match {}",
                a.expect.as_ref().unwrap().display()
            );
        } else {
            ok = false;
            eprintln!(
                "test | FAILED: reactions differ from {} (- expected, + got):",
                a.expect.as_ref().unwrap().display()
            );
            for l in diff(&want, &got) {
                eprintln!("  {l}");
            }
        }
    }

    let single = run_once(&rt, &a, &config, &input, &scratch.0.join("single"), 1)?;
    let (batched, one) = (lines(&first.reactions), lines(&single.reactions));
    if batched == one && first.parked.len() == single.parked.len() {
        eprintln!("test | same reactions in one-event batches");
    } else {
        ok = false;
        eprintln!(
            "test | FAILED: the reactions depend on batching: batches of up to {} and one-event \
             batches gave different results (- batched, + one event a batch). The host chooses \
             batch sizes and splits failing batches, so keep durable state in the log (read it \
             with host.read-entity), not in the events of one batch:",
            a.max_batch
        );
        for l in diff(&batched, &one) {
            eprintln!("  {l}");
        }
        if first.parked.len() != single.parked.len() {
            eprintln!(
                "  parked: {} batched, {} one event a batch",
                first.parked.len(),
                single.parked.len()
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
