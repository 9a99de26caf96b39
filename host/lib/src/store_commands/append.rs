//! `append`, `events` and `verify` on a store this process opens.

use anyhow::{bail, Context};
use batpak_service::NewEvent;
use batpak_store::{hex, Coordinate, Event, EventId, Proposal, Receipt};
use batpak_store::{verify_dir, AppendOptions, LogReader, Store, StoreError};
use batpak_store::{Lookup, Region};
use clap::Args;
use serde::Deserialize;
use serde_json::json;
use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `batpak-host append`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["jsonl", "entity"])))]
pub struct AppendArgs {
    /// Entity of the event (e.g. `order:42`).
    #[arg(long, requires_all = ["scope", "kind"], conflicts_with = "jsonl")]
    pub entity: Option<String>,
    /// Scope of the event (e.g. `shop`).
    #[arg(long)]
    pub scope: Option<String>,
    /// Kind of the event (e.g. `order.placed`); `batpak.*` is reserved.
    #[arg(long)]
    pub kind: Option<String>,
    /// Payload as JSON (e.g. '{"sku":"widget","qty":2}'), stored exactly as
    /// typed; text that is not valid JSON is refused (use --payload-text
    /// for that). Default: no payload (empty).
    #[arg(long, value_name = "JSON", conflicts_with = "payload_text")]
    pub payload: Option<String>,
    /// Payload as raw text, stored verbatim and not checked as JSON (for
    /// payloads that are not JSON, e.g. plain text).
    #[arg(long, value_name = "TEXT")]
    pub payload_text: Option<String>,
    /// Id (32 hex digits) of the event that caused this one.
    #[arg(long)]
    pub causation: Option<String>,
    /// Correlation id (32 hex digits); default: inherited from the cause.
    #[arg(long)]
    pub correlation: Option<String>,
    /// A retry with the same key returns the first receipt and appends nothing.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Append events from a JSON-lines file (`-` for stdin), one event per
    /// line: {"entity","scope","kind","payload"[,"id","causation",
    /// "correlation","idempotency_key"]}. Every line is checked — syntax,
    /// rules, causation (to the store or an earlier line's "id"), expected
    /// sequences — before anything is appended: a bad line appends nothing.
    /// The file is then appended as one bulk transaction: all of it or none
    /// of it, even after kill -9, a power cut, a signal or a closed stdout;
    /// receipts are printed once all of it is durable.
    #[arg(long, value_name = "FILE|-")]
    pub jsonl: Option<PathBuf>,
}

/// Arguments of `batpak-host events`.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Only this entity (exact name).
    #[arg(long)]
    pub entity: Option<String>,
    /// Only entities starting with this prefix.
    #[arg(long, conflicts_with = "entity")]
    pub entity_prefix: Option<String>,
    /// Only this scope.
    #[arg(long)]
    pub scope: Option<String>,
    /// Only events carrying this correlation id (32 hex digits).
    #[arg(long)]
    pub correlation: Option<String>,
    /// Only the direct reactions of this event (its id, 32 hex digits).
    #[arg(long)]
    pub caused_by: Option<String>,
    /// Only this kind (repeatable); a `batpak.*` kind selects just that
    /// kind of host record.
    #[arg(long)]
    pub kind: Vec<String>,
    /// Only events with a global sequence greater than this.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// Print at most this many events.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Keep printing new events as they are written (Ctrl-C to stop).
    #[arg(long)]
    pub follow: bool,
    /// Include the host's own `batpak.*` events (checkpoints, denials,
    /// parking). With `--kind`, only the kinds listed are printed, host
    /// records or not.
    #[arg(long)]
    pub system: bool,
    /// `json`: one JSON object per line; `pretty`: one readable line per
    /// event (ISO-8601 UTC time, payload as stored).
    #[arg(long, value_enum, default_value_t = EventFormat::Json)]
    pub format: EventFormat,
}

/// How `events` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EventFormat {
    /// JSON lines.
    Json,
    /// Readable lines.
    Pretty,
}

/// Writes one event (as `event_json` shapes it) in `format`; `raw` is the
/// payload's stored bytes when at hand (else the JSON payload is printed
/// compactly, text verbatim). A stored JSON payload is printed as its
/// stored bytes, never re-encoded (a number stays as the client wrote it);
/// in the JSON format its line breaks, which JSON allows only as spacing,
/// become spaces so that each event stays one line.
pub fn write_event(
    out: &mut dyn Write,
    v: &serde_json::Value,
    raw: Option<&[u8]>,
    format: EventFormat,
) -> std::io::Result<()> {
    let raw_json = raw
        .and_then(|b| std::str::from_utf8(b).ok())
        .filter(|t| batpak_service::RawJson::parse(t).is_ok());
    match format {
        EventFormat::Json => match (raw_json, v.as_object()) {
            (Some(p), Some(fields)) => {
                let mut line = String::from("{");
                for (i, (k, val)) in fields.iter().enumerate() {
                    if i > 0 {
                        line.push(',');
                    }
                    line.push_str(&serde_json::Value::from(k.as_str()).to_string());
                    line.push(':');
                    if k == "payload" {
                        line.push_str(&p.trim().replace(['\n', '\r'], " "));
                    } else {
                        line.push_str(&val.to_string());
                    }
                }
                line.push('}');
                writeln!(out, "{line}")
            }
            _ => writeln!(out, "{v}"),
        },
        EventFormat::Pretty => {
            let s = |k: &str| v[k].as_str().unwrap_or("");
            let payload = match raw {
                Some(b) => String::from_utf8_lossy(b).into_owned(),
                None => match &v["payload"] {
                    serde_json::Value::String(t) => t.clone(),
                    p => p.to_string(),
                },
            };
            let cause = match v["causation"].as_str() {
                Some(c) => format!(" cause={c}"),
                None => String::new(),
            };
            writeln!(
                out,
                "{} #{} {} {}/{} id={}{cause} corr={} {payload}",
                batpak_store::iso_time(v["timestamp_us"].as_u64().unwrap_or(0)),
                v["seq"],
                s("kind"),
                s("entity"),
                s("scope"),
                s("id"),
                s("correlation"),
            )
        }
    }
}

fn parse_id(flag: &str, s: &str) -> anyhow::Result<EventId> {
    s.parse::<EventId>()
        .map_err(|_| anyhow::anyhow!("{flag}: {s:?} is not an event id; expected 32 hex digits as printed in a receipt's \"id\""))
}

fn receipt_json(r: &Receipt, p: &Coordinate, kind: &str) -> serde_json::Value {
    json!({
        "id": r.id.to_string(),
        "seq": r.sequence,
        "entity": p.entity,
        "scope": p.scope,
        "kind": kind,
        "entity_seq": r.entity_sequence,
        "timestamp_us": r.timestamp_us,
        "hash": hex(&r.hash),
        "deduplicated": r.deduplicated,
    })
}

/// One `--jsonl` line, the same with or without a running host.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    id: Option<String>,
    entity: String,
    scope: String,
    kind: String,
    /// Checked here, kept as sent: the raw text is sliced from the line.
    #[allow(dead_code)]
    payload: serde::de::IgnoredAny,
    #[serde(default)]
    causation: Option<String>,
    #[serde(default)]
    correlation: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

pub const LINE_HELP: &str = r#"each line must be a JSON object {"entity","scope","kind","payload"} with optional "id", "causation", "correlation" (32 hex digits) and "idempotency_key""#;

/// Longest accepted `--jsonl` line: a maximal payload, JSON-escaped, plus
/// the other fields. Longer lines are refused, never buffered.
const MAX_LINE: usize = 4 * batpak_store::MAX_PAYLOAD_LEN + (64 << 10);

/// Parses one `--jsonl` line into the event a client sends (syntax only).
/// A key given twice (in the line's object or in its payload) is refused;
/// the payload is kept as the exact text of the line (`payload_text`), so
/// it is stored byte for byte — numbers, key order and spacing unchanged —
/// with or without a running host.
pub fn parse_line_event(text: &str) -> anyhow::Result<NewEvent> {
    let checked = batpak_service::RawJson::parse(text);
    // Syntax errors are reported by the typed parse below.
    if let Err(batpak_service::JsonError::DuplicateKey { key, column, .. }) = &checked {
        bail!(
            "the key {key:?} appears twice (the second at column {column}); give each key once, in the line's object and in its payload"
        );
    }
    let l: Line = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{}; {LINE_HELP}",
            e.to_string().replace("at line 1 column", "at column")
        )
    })?;
    let payload = checked
        .ok()
        .and_then(|j| j.fields())
        .and_then(|f| f.into_iter().find(|(k, _)| k == "payload"))
        .map(|(_, raw)| raw.to_string())
        .ok_or_else(|| anyhow::anyhow!("the line's \"payload\" could not be read; {LINE_HELP}"))?;
    Ok(NewEvent {
        id: l.id,
        entity: l.entity,
        scope: l.scope,
        kind: l.kind,
        payload_text: Some(payload),
        causation: l.causation,
        correlation: l.correlation,
        idempotency_key: l.idempotency_key,
        ..NewEvent::default()
    })
}

/// Parses and checks one `--jsonl` line (everything but the store).
fn parse_line(text: &str) -> anyhow::Result<Proposal> {
    let event = parse_line_event(text)?;
    batpak_service::proposal(0, event)
        .map_err(|e| anyhow::anyhow!("{}", e.message.trim_start_matches("event 0: ")))
}

/// The payload of a single-event `append`, checked the same way with or
/// without a running host: `--payload` must be valid JSON and is stored as
/// typed, `--payload-text` is stored verbatim, neither is an empty payload.
///
/// # Errors
/// For `--payload` that is not JSON: a message naming the parse error, its
/// line and column, and the two fixes (quote it as JSON, or `--payload-text`).
pub fn single_payload(a: &AppendArgs) -> Result<String, String> {
    if let Some(text) = &a.payload_text {
        return Ok(text.clone());
    }
    let Some(json) = &a.payload else {
        return Ok(String::new());
    };
    if json.trim().is_empty() {
        return Err("--payload is empty, which is not valid JSON: omit --payload for an event without a payload, give JSON (e.g. --payload '{}'), or pass text with --payload-text".into());
    }
    let e = match batpak_service::RawJson::parse(json) {
        Ok(_) => return Ok(json.clone()),
        Err(batpak_service::JsonError::DuplicateKey { key, line, column }) => {
            return Err(format!(
                "--payload gives the key {key:?} twice (the second at line {line}, column {column}); a payload is stored as sent, so give each key once"
            ))
        }
        Err(batpak_service::JsonError::Syntax(_)) => {
            match serde_json::from_str::<serde::de::IgnoredAny>(json) {
                Err(e) => e,
                Ok(_) => return Ok(json.clone()),
            }
        }
    };
    // Show the offending line with a caret under the column serde names
    // (a byte column; counted in characters here so the caret lines up).
    let line = json.lines().nth(e.line().saturating_sub(1)).unwrap_or("");
    let mut byte = e.column().saturating_sub(1).min(line.len());
    while !line.is_char_boundary(byte) {
        byte -= 1;
    }
    let at = line[..byte].chars().count();
    let start = at.saturating_sub(40);
    let shown: String = line.chars().skip(start).take(80).collect();
    let caret = " ".repeat(at - start);
    let what = e.to_string();
    let what = what.split(" at line ").next().unwrap_or(&what).to_string();
    Err(format!(
        "--payload is not valid JSON: {what} at line {}, column {}:\n  {shown}\n  {caret}^\n\
         JSON needs double-quoted keys and strings, e.g. --payload '{{\"sku\":\"widget\",\"qty\":1}}'. \
         To store this text as it is (not JSON), pass it with --payload-text instead",
        e.line().max(1),
        e.column().max(1),
    ))
}

pub fn append(data: &Path, a: AppendArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if let Some(src) = &a.jsonl {
        return append_jsonl(data, src, &mut out);
    }
    let payload = match single_payload(&a) {
        Ok(p) => p,
        Err(m) => return Err(crate::usage::Usage(m).into()),
    };
    let (Some(entity), Some(scope), Some(kind)) = (a.entity, a.scope, a.kind) else {
        bail!("append needs --entity, --scope and --kind (or --jsonl FILE)");
    };
    let coordinate = Coordinate::new(entity, scope)?;
    let mut p = Proposal::new(coordinate.clone(), kind.clone(), payload.into_bytes());
    p.causation = a
        .causation
        .as_deref()
        .map(|s| parse_id("--causation", s))
        .transpose()?;
    p.correlation = a
        .correlation
        .as_deref()
        .map(|s| parse_id("--correlation", s))
        .transpose()?;
    p.idempotency_key = a.idempotency_key;
    p.validate(false)?;
    let store = Store::open(data)?;
    report_recovery(&store);
    let r = store.append(p, AppendOptions::durable())?;
    store.close()?;
    writeln!(out, "{}", receipt_json(&r, &coordinate, &kind))?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Reads one line (without its newline) into `buf`, refusing lines longer
/// than [`MAX_LINE`] without buffering them. `Ok(false)` at end of input.
fn read_line_bounded(r: &mut impl BufRead, buf: &mut Vec<u8>) -> anyhow::Result<bool> {
    buf.clear();
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok(!buf.is_empty());
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if buf.len() + take > MAX_LINE + 1 {
            bail!("line is longer than {MAX_LINE} bytes; split the event or shorten its payload");
        }
        buf.extend_from_slice(&chunk[..take]);
        r.consume(take);
        if done {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(true);
        }
    }
}

/// Where the `--jsonl` input can be read twice from: the file itself, or a
/// spooled copy of stdin / a pipe (removed on drop).
pub struct Source {
    path: PathBuf,
    /// How the input is named in messages (`stdin` or the path).
    pub name: String,
    spooled: bool,
}

impl Drop for Source {
    fn drop(&mut self) {
        if self.spooled {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Source {
    pub fn new(src: &Path) -> anyhow::Result<Source> {
        let stdin = src == Path::new("-");
        let name = if stdin {
            "stdin".to_string()
        } else {
            src.display().to_string()
        };
        let regular = !stdin
            && std::fs::metadata(src)
                .with_context(|| format!("opening --jsonl file {}", src.display()))?
                .is_file();
        if regular {
            return Ok(Source {
                path: src.to_path_buf(),
                name,
                spooled: false,
            });
        }
        // A stream can be read once: copy it aside, so it can be checked
        // whole before the first event is appended.
        let path = std::env::temp_dir().join(format!(
            "batpak-jsonl-{}-{}",
            std::process::id(),
            batpak_store::now_us()
        ));
        // Owner-only: it holds every payload of the input.
        let mut spool = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| {
                format!("creating a spool file {} for --jsonl input", path.display())
            })?;
        let source = Source {
            path,
            name: name.clone(),
            spooled: true,
        };
        interrupt::remove_on_signal(&source.path);
        let mut input: Box<dyn std::io::Read> = if stdin {
            Box::new(std::io::stdin())
        } else {
            Box::new(
                std::fs::File::open(src)
                    .with_context(|| format!("opening --jsonl file {}", src.display()))?,
            )
        };
        std::io::copy(&mut input, &mut spool).with_context(|| format!("reading {name}"))?;
        Ok(source)
    }

    /// Calls `f(line_number, proposal)` for every non-empty line.
    fn for_each(
        &self,
        mut f: impl FnMut(usize, anyhow::Result<Proposal>) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        self.for_each_text(|n, text| f(n, text.and_then(parse_line)))
    }

    /// Calls `f(line_number, text)` for every non-empty line (an error for
    /// a line that is too long or not UTF-8); stops when `f` says `false`.
    pub fn for_each_text(
        &self,
        mut f: impl FnMut(usize, anyhow::Result<&str>) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let mut r = std::io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(&self.path).with_context(|| format!("opening {}", self.name))?,
        );
        let mut buf = Vec::new();
        let mut n = 0usize;
        loop {
            n += 1;
            match read_line_bounded(&mut r, &mut buf) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => {
                    f(n, Err(e))?;
                    return Ok(());
                }
            }
            if buf.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let text = std::str::from_utf8(&buf).map_err(|_| anyhow::anyhow!("line is not UTF-8"));
            if !f(n, text)? {
                return Ok(());
            }
        }
    }
}

/// What a SIGINT, SIGTERM or SIGHUP does to `append --jsonl`, by phase: a
/// signal never leaves part of the input appended, and always says what
/// happened.
pub mod interrupt {
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

    /// Nothing is written yet (reading, checking): a signal exits at once.
    const CHECKING: u8 = 0;
    /// The append is under way or done: a signal is noted, and the append
    /// stops at the next safe point (before its commit: nothing kept; after:
    /// everything kept, printing stops).
    const WRITING: u8 = 1;

    static PHASE: AtomicU8 = AtomicU8::new(CHECKING);
    static SIGNALLED: AtomicBool = AtomicBool::new(false);
    /// A spool file to remove when a signal ends the process at once.
    static SPOOL: parking_lot::Mutex<Option<std::path::PathBuf>> = parking_lot::Mutex::new(None);

    /// Removes `path` (a spooled copy of stdin) if a signal ends the process
    /// while checking.
    pub fn remove_on_signal(path: &std::path::Path) {
        *SPOOL.lock() = Some(path.to_path_buf());
    }

    /// Exit status after a signal when nothing was appended (128 + SIGINT,
    /// as shells report an interrupted command).
    pub const EXIT_NOTHING_APPENDED: u8 = 130;

    /// Handles signals from now on (phase: checking), and makes a write to
    /// a closed stdout an error (`EPIPE`) instead of a silent death, so the
    /// command can say what it appended.
    pub fn install() {
        // SAFETY: changing one signal's disposition has no other effect.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        PHASE.store(CHECKING, Ordering::SeqCst);
        if let Err(e) = ctrlc::set_handler(on_signal) {
            eprintln!("warning: cannot handle Ctrl-C/SIGTERM ({e}); a signal ends `append` at once (still all or nothing)");
        }
    }

    /// From now on a signal is noted, not fatal.
    pub fn writing() {
        PHASE.store(WRITING, Ordering::SeqCst);
    }

    /// Whether a signal arrived.
    pub fn signalled() -> bool {
        SIGNALLED.load(Ordering::SeqCst)
    }

    fn on_signal() {
        // ctrlc runs this on its own thread, not in signal context.
        SIGNALLED.store(true, Ordering::SeqCst);
        if PHASE.load(Ordering::SeqCst) == CHECKING {
            if let Some(p) = SPOOL.lock().take() {
                let _ = std::fs::remove_file(p);
            }
            eprintln!("append: stopped by a signal while reading and checking the input; nothing was appended");
            std::process::exit(i32::from(EXIT_NOTHING_APPENDED));
        }
    }
}

/// Events per part of the bulk transaction `append --jsonl` writes (and
/// at most `CHUNK_BYTES` of payload): memory stays one part, whatever the
/// size of the file.
pub const CHUNK_EVENTS: usize = 4096;
pub const CHUNK_BYTES: usize = 8 << 20;

/// A temporary file for the receipts of an append not yet committed: they
/// are printed only once all of it is. Its name is removed as soon as it is
/// created, so nothing is left behind even after a kill -9.
pub struct ReceiptSpool {
    /// Where receipts are written until the commit.
    pub out: std::io::BufWriter<std::fs::File>,
}

impl ReceiptSpool {
    pub fn new() -> anyhow::Result<ReceiptSpool> {
        let path = std::env::temp_dir().join(format!(
            "batpak-receipts-{}-{}",
            std::process::id(),
            batpak_store::now_us()
        ));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating a receipt spool file {}", path.display()))?;
        let _ = std::fs::remove_file(&path);
        Ok(ReceiptSpool {
            out: std::io::BufWriter::new(f),
        })
    }

    /// Prints the spooled receipts (see [`print_receipts`]).
    pub fn print(
        self,
        out: &mut dyn Write,
        name: &str,
        total: usize,
    ) -> anyhow::Result<ExitCode> {
        use std::io::Seek;
        let mut f = self
            .out
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing the receipt spool: {}", e.error()))?;
        f.rewind().context("reading back the receipt spool")?;
        let mut lines = std::io::BufReader::new(f);
        print_receipts(&mut lines, out, name, total)
    }
}

/// Prints `lines` (receipts of an append that is complete) to `out`; on a
/// closed stdout or a signal, stops and says on stderr that all `total`
/// events were appended. Exit 0 either way: everything was appended.
pub fn print_receipts(
    lines: &mut dyn BufRead,
    out: &mut dyn Write,
    name: &str,
    total: usize,
) -> anyhow::Result<ExitCode> {
    let mut printed = 0usize;
    let mut line = String::new();
    let stopped = loop {
        if interrupt::signalled() {
            break "stopped by a signal";
        }
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            break "";
        }
        if out.write_all(line.as_bytes()).is_err() {
            break "stdout was closed";
        }
        printed += 1;
    };
    if stopped.is_empty() && out.flush().is_ok() && !interrupt::signalled() {
        return Ok(ExitCode::SUCCESS);
    }
    let why = if stopped.is_empty() {
        "stdout was closed"
    } else {
        stopped
    };
    eprintln!(
        "append: {why} after {printed} receipt(s); all {total} events from {name} were appended (`batpak-host events` shows them)"
    );
    Ok(ExitCode::SUCCESS)
}

fn append_jsonl(data: &Path, src: &Path, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    interrupt::install();
    let source = Source::new(src)?;
    let name = source.name.clone();
    let store = Store::open(data)?;
    report_recovery(&store);
    // Pass 1: check every line against the store and the lines before it,
    // keeping only ids and counters; nothing is written.
    let mut plan = store.plan();
    let mut errors = Vec::new();
    let mut total = 0usize;
    source.for_each(|n, p| {
        total += 1;
        let checked = p.and_then(|p| {
            plan.check(&p).map_err(|e| match e {
                StoreError::Invalid { source, .. } => anyhow::anyhow!("{source}"),
                StoreError::UnknownCausation { id, .. } => anyhow::anyhow!(
                "causation {id} is neither an event in this store nor the \"id\" of an earlier line"
            ),
                e => e.into(),
            })
        });
        if let Err(e) = checked {
            errors.push(format!("{name}:{n}: {e:#}"));
            if errors.len() >= 20 {
                errors.push("(stopped after 20 errors)".into());
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    drop(plan);
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: {e}");
        }
        store.close()?;
        bail!(
            "{name}: {} bad line(s); nothing was appended. Fix the lines above and run again",
            errors.len().min(20)
        );
    }
    if total == 0 {
        store.close()?;
        eprintln!("{name}: no events (empty input); nothing appended");
        return Ok(ExitCode::SUCCESS);
    }
    // Pass 2: one bulk transaction — parts of `CHUNK_EVENTS` events, then
    // one commit: after a crash, a kill -9 or a signal the store holds all
    // of the file or none of it. Receipts are spooled and printed only
    // once the commit is durable.
    let mut spool = ReceiptSpool::new()?;
    interrupt::writing();
    let started = Instant::now();
    // Progress after the first part, then at most twice a second: a
    // large append says from its start that nothing is committed yet.
    let mut last_report: Option<Instant> = None;
    let mut done = 0usize;
    let mut chunk: Vec<Proposal> = Vec::new();
    // The line number of each event of the chunk being built.
    let mut lines: Vec<usize> = Vec::new();
    let mut bytes = 0usize;
    let mut bulk = store.begin_bulk()?;
    let mut flush = |chunk: &mut Vec<Proposal>, lines: &mut Vec<usize>| -> anyhow::Result<()> {
        if interrupt::signalled() {
            bail!("stopped by a signal");
        }
        if chunk.is_empty() {
            return Ok(());
        }
        let meta: Vec<(Coordinate, String)> = chunk
            .iter()
            .map(|p| (p.coordinate.clone(), p.kind.clone()))
            .collect();
        // Pass 1 knew keys and ids but not the content behind them: a
        // reused key with other content is found here, named by its line.
        let rs = bulk.append(std::mem::take(chunk)).map_err(|e| match &e {
            StoreError::IdempotencyConflict(c) => match lines.get(c.index) {
                Some(line) => {
                    let msg = e.to_string();
                    let why = msg.split_once(": ").map_or(msg.as_str(), |(_, w)| w);
                    anyhow::anyhow!("{name}:{line}: {why}")
                }
                None => e.into(),
            },
            _ => e.into(),
        })?;
        lines.clear();
        for (r, (c, k)) in rs.iter().zip(meta) {
            writeln!(spool.out, "{}", receipt_json(r, &c, &k))?;
        }
        done += rs.len();
        if total > 10_000 && last_report.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
            eprintln!(
                "append: {done}/{total} events written ({}%), not yet committed",
                done * 100 / total
            );
            last_report = Some(Instant::now());
        }
        Ok(())
    };
    let written = source
        .for_each(|n, p| {
            let p = p?;
            if !chunk.is_empty()
                && (chunk.len() >= CHUNK_EVENTS || bytes + p.payload.len() > CHUNK_BYTES)
            {
                flush(&mut chunk, &mut lines)?;
                bytes = 0;
            }
            bytes += p.payload.len() + 128;
            chunk.push(p);
            lines.push(n);
            Ok(true)
        })
        .and_then(|()| flush(&mut chunk, &mut lines))
        .and_then(|()| spool.out.flush().map_err(Into::into));
    if let Err(e) = written {
        // Abandoned: the abort frame makes the parts written so far dead.
        bulk.abort();
        let _ = store.close();
        if interrupt::signalled() {
            eprintln!(
                "append: stopped by a signal before the append committed; nothing was appended"
            );
            return Ok(ExitCode::from(interrupt::EXIT_NOTHING_APPENDED));
        }
        return Err(e.context(format!("{name}: nothing was appended")));
    }
    let appended = bulk.commit().with_context(|| {
        format!("{name}: the store failed while committing the append; reopen it (e.g. `batpak-host events`) to see whether all or none of the events were kept")
    })?;
    store.close()?;
    if total > 10_000 {
        let dedup = if appended < total as u64 {
            format!(
                " ({appended} new, {} already in the store by id or idempotency key)",
                total as u64 - appended
            )
        } else {
            String::new()
        };
        eprintln!(
            "append: {total} events durable in {:.2} s{dedup}",
            started.elapsed().as_secs_f64()
        );
    }
    spool.print(out, &name, total)
}

/// What opening the store had to cut, in words (one line each): a torn
/// tail, a bulk append that never committed.
pub fn recovery_notes(store: &Store) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some((segment, offset, bytes)) = store.recovery().truncated_tail {
        notes.push(format!(
            "batpak: recovered the store: cut a torn write of {bytes} byte(s) at segment {segment:08} offset {offset} (never acknowledged as durable); recorded as a {} event",
            batpak_store::RECOVERED_KIND
        ));
    }
    if let Some((segment, offset, events)) = store.recovery().dropped_transaction {
        notes.push(format!(
            "batpak: recovered the store: dropped a bulk append of {events} event(s) at segment {segment:08} offset {offset} that never committed (its writer stopped); none of it counts; recorded as a {} event",
            batpak_store::RECOVERED_KIND
        ));
    }
    notes
}

/// Tells the user on stderr what opening the store had to cut.
fn report_recovery(store: &Store) {
    for n in recovery_notes(store) {
        eprintln!("{n}");
    }
}

/// One event as a JSON line: the same shape through a running host and
/// without one.
pub use batpak_service::event_json;

/// The ids `events` filters on, checked before anything is read.
struct IdFilters {
    correlation: Option<EventId>,
    caused_by: Option<EventId>,
}

impl IdFilters {
    fn parse(a: &EventsArgs) -> anyhow::Result<IdFilters> {
        Ok(IdFilters {
            correlation: a
                .correlation
                .as_deref()
                .map(|s| parse_id("--correlation", s))
                .transpose()?,
            caused_by: a
                .caused_by
                .as_deref()
                .map(|s| parse_id("--caused-by", s))
                .transpose()?,
        })
    }

    fn matches(&self, e: &Event) -> bool {
        self.correlation.is_none_or(|c| e.header.correlation == c)
            && self.caused_by.is_none_or(|c| e.header.causation == Some(c))
    }
}

/// Whether every host record is printed besides the region's kinds:
/// `--system` without `--kind` (listed kinds always filter, `batpak.*` ones
/// included).
fn include_system(a: &EventsArgs) -> bool {
    a.system && a.kind.is_empty()
}

fn events_region(a: &EventsArgs) -> Region {
    let mut region = Region::all().kinds(a.kind.clone());
    region.scope = a.scope.clone();
    region.entity_prefix = a.entity_prefix.clone();
    region
}

/// `events` through the store's indexes (this process holds the store):
/// by caused-by, correlation or entity when given, else from `--after` —
/// never a walk of the log from its start.
fn events_indexed(store: &Store, a: &EventsArgs, ids: &IdFilters) -> anyhow::Result<()> {
    let region = events_region(a);
    let lookup = if let Some(c) = ids.caused_by {
        Lookup::CausedBy(c)
    } else if let Some(c) = ids.correlation {
        Lookup::Correlation(c)
    } else if let Some(e) = &a.entity {
        Lookup::Entity(e.clone())
    } else {
        Lookup::All
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let limit = a.limit.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let mut after = a.after;
    const CHUNK: usize = 4096;
    while printed < limit {
        let want = (limit - printed).min(CHUNK as u64) as usize;
        let batch = store.lookup(&lookup, &region, after, want, include_system(a))?;
        for e in &batch {
            let ok = ids.matches(e)
                && a.entity
                    .as_ref()
                    .is_none_or(|en| &e.header.coordinate.entity == en);
            if !ok {
                continue;
            }
            if write_event(&mut out, &event_json(e), Some(&e.payload), a.format).is_err() {
                return Ok(()); // reader went away (e.g. `| head`)
            }
            printed += 1;
        }
        match batch.last() {
            Some(e) if batch.len() == want => after = e.header.sequence,
            _ => break,
        }
    }
    let _ = out.flush();
    Ok(())
}

pub fn events(data: &Path, a: EventsArgs) -> anyhow::Result<ExitCode> {
    let ids = IdFilters::parse(&a)?;
    // Without --follow, and when opening repairs nothing, hold the store
    // for the read and go through its index. Otherwise — `--follow`, a torn
    // or unacknowledged tail, damage, or a store held by a `run` serving no
    // socket — read the segments lock-free (a scan): `events` never repairs
    // the store, reports what it finds, and never keeps `run` from starting.
    if !a.follow && batpak_store::opens_clean(data) {
        if let Ok(store) = Store::open(data) {
            let r = events_indexed(&store, &a, &ids);
            store.close()?;
            r?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    let region = events_region(&a);
    // A listed `batpak.*` kind matches by itself; `--system` adds every host
    // record (as through a running host).
    let include_system = include_system(&a);
    let matches = |e: &Event| {
        let h = &e.header;
        if h.sequence <= a.after || !ids.matches(e) {
            return false;
        }
        if let Some(en) = &a.entity {
            if &h.coordinate.entity != en {
                return false;
            }
        }
        region.matches_parts_or_system(
            &h.coordinate.entity,
            &h.coordinate.scope,
            &h.kind,
            include_system,
        )
    };
    let mut reader = LogReader::open(data)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let limit = a.limit.unwrap_or(u64::MAX);
    loop {
        let batch = reader.poll(16 << 20)?;
        let empty = batch.is_empty();
        for e in batch.iter().filter(|e| matches(e)) {
            if printed >= limit {
                out.flush()?;
                return Ok(ExitCode::SUCCESS);
            }
            if write_event(&mut out, &event_json(e), Some(&e.payload), a.format).is_err() {
                return Ok(ExitCode::SUCCESS); // reader went away (e.g. `| head`)
            }
            printed += 1;
        }
        if empty {
            if !a.follow {
                break;
            }
            out.flush()?;
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    out.flush()?;
    if let Some((segment, offset)) = reader.incomplete_tail() {
        // Maybe a write in progress: look again a few times (bounded).
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(50));
            let more = reader.poll(16 << 20)?;
            for e in more.iter().filter(|e| matches(e)) {
                if printed >= limit {
                    break;
                }
                write_event(&mut out, &event_json(e), Some(&e.payload), a.format)?;
                printed += 1;
            }
            if reader.incomplete_tail().is_none() {
                break;
            }
        }
        out.flush()?;
        if reader.incomplete_tail().is_some() {
            eprintln!(
                "events: the log ends with an incomplete write at segment {segment:08} offset {offset}, never acknowledged as durable; the next open of the store cuts it (`batpak-host verify` shows it)"
            );
        }
    }
    if let Some((segment, offset)) = reader.uncommitted_transaction() {
        eprintln!(
            "events: the log ends with a bulk append not committed (yet) at segment {segment:08} offset {offset}; none of its events are shown (if its writer stopped, the next open of the store drops it)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn verify(data: &Path) -> anyhow::Result<ExitCode> {
    if !data.join("segments").is_dir() {
        bail!(
            "{} holds no store (no segments directory); check --data",
            data.display()
        );
    }
    // Read-only: never opens (or repairs) the store, takes no lock, writes
    // nothing; it reports what an open would do.
    let report = verify_dir(data)?;
    let sound = report.is_sound();
    let v = batpak_service::verify_json(&report);
    let problems: Vec<String> = v["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    println!("{v}");
    if let Some((segment, offset, bytes)) = report.tail_to_cut {
        eprintln!(
            "verify: the log ends with a torn write of {bytes} byte(s) at segment {segment:08} offset {offset}, never acknowledged as durable; the next open cuts it and records a {} event",
            batpak_store::RECOVERED_KIND
        );
    }
    if let Some((segment, offset, events)) = report.uncommitted_to_drop {
        eprintln!(
            "verify: the log ends with a bulk append of {events} event(s) at segment {segment:08} offset {offset} that never committed (its writer stopped); the next open drops all of it and records a {} event",
            batpak_store::RECOVERED_KIND
        );
    }
    if sound {
        eprintln!(
            "verify: sound — {} events in {} frames across {} segment(s)",
            report.events, report.frames, report.segments
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            eprintln!("verify: {p}");
        }
        Ok(ExitCode::FAILURE)
    }
}
