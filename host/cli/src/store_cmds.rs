//! `append`, `events` and `verify`.

use anyhow::{bail, Context};
use batpak_store::Region;
use batpak_store::{hex, Coordinate, Event, EventId, Proposal, Receipt};
use batpak_store::{verify_dir, AppendOptions, LogReader, Store, StoreError};
use clap::Args;
use serde::Deserialize;
use serde_json::json;
use std::io::{BufRead, Write};
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
    /// Payload text, stored as given (default: empty).
    #[arg(long)]
    pub payload: Option<String>,
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
    /// line: {"entity","scope","kind","payload"[,"causation","correlation",
    /// "idempotency_key"]}. Every line is checked before anything is appended.
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
    /// Only this kind (repeatable).
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
    /// Include the host's own `batpak.*` events (checkpoints, denials, parking).
    #[arg(long)]
    pub system: bool,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    entity: String,
    scope: String,
    kind: String,
    payload: serde_json::Value,
    #[serde(default)]
    causation: Option<String>,
    #[serde(default)]
    correlation: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

const LINE_HELP: &str = r#"each line must be a JSON object {"entity","scope","kind","payload"} with optional "causation", "correlation" (32 hex digits) and "idempotency_key""#;

fn parse_line(text: &str) -> anyhow::Result<Proposal> {
    let l: Line = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{}; {LINE_HELP}",
            e.to_string().replace("at line 1 column", "at column")
        )
    })?;
    let coordinate = Coordinate::new(l.entity, l.scope)?;
    let mut p = Proposal::new(coordinate, l.kind, serde_json::to_vec(&l.payload)?);
    p.causation = l
        .causation
        .as_deref()
        .map(|s| parse_id("causation", s))
        .transpose()?;
    p.correlation = l
        .correlation
        .as_deref()
        .map(|s| parse_id("correlation", s))
        .transpose()?;
    p.idempotency_key = l.idempotency_key;
    p.validate(false)?;
    Ok(p)
}

pub(crate) fn append(data: &Path, a: AppendArgs) -> anyhow::Result<ExitCode> {
    // service (issue 8): through the running host when there is one.
    if let Some(c) = batpak_service::Client::connect(data)? {
        return crate::remote::append(c, a);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if let Some(src) = &a.jsonl {
        return append_jsonl(data, src, &mut out);
    }
    let (Some(entity), Some(scope), Some(kind)) = (a.entity, a.scope, a.kind) else {
        bail!("append needs --entity, --scope and --kind (or --jsonl FILE)");
    };
    let coordinate = Coordinate::new(entity, scope)?;
    let mut p = Proposal::new(
        coordinate.clone(),
        kind.clone(),
        a.payload.unwrap_or_default().into_bytes(),
    );
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
    let r = store.append(p, AppendOptions::durable())?;
    store.close()?;
    writeln!(out, "{}", receipt_json(&r, &coordinate, &kind))?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn append_jsonl(data: &Path, src: &Path, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let reader: Box<dyn BufRead> = if src == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(src)
                .with_context(|| format!("opening --jsonl file {}", src.display()))?,
        ))
    };
    let name = if src == Path::new("-") {
        "stdin".to_string()
    } else {
        src.display().to_string()
    };
    // Check every line before appending anything: a bad batch appends nothing.
    let mut props: Vec<(usize, Proposal)> = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{name}: reading line {}", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(&line) {
            Ok(p) => props.push((i + 1, p)),
            Err(e) => {
                errors.push(format!("{name}:{}: {e:#}", i + 1));
                if errors.len() >= 20 {
                    errors.push("(stopped after 20 errors)".into());
                    break;
                }
            }
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: {e}");
        }
        bail!(
            "{name}: {} bad line(s); nothing was appended. Fix the lines above and run again",
            errors.len().min(20)
        );
    }
    if props.is_empty() {
        eprintln!("{name}: no events (empty input); nothing appended");
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::open(data)?;
    let total = props.len();
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut done = 0usize;
    let mut pending: Vec<(Receipt, Coordinate, String)> = Vec::new();
    let mut iter = props.into_iter().peekable();
    let mut failure = None;
    while iter.peek().is_some() {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        let mut first_line = 0;
        while let Some((ln, p)) = iter.peek() {
            if !chunk.is_empty() && (chunk.len() >= 4096 || bytes + p.payload.len() > 8 << 20) {
                break;
            }
            if chunk.is_empty() {
                first_line = *ln;
            }
            bytes += p.payload.len() + 128;
            chunk.push(iter.next().expect("peeked").1);
        }
        let meta: Vec<(Coordinate, String)> = chunk
            .iter()
            .map(|p| (p.coordinate.clone(), p.kind.clone()))
            .collect();
        let n = chunk.len();
        match store.append_batch(chunk, AppendOptions::accepted()) {
            Ok(rs) => {
                for (r, (c, k)) in rs.into_iter().zip(meta) {
                    pending.push((r, c, k));
                }
            }
            Err(e) => {
                let detail = match &e {
                    StoreError::Invalid { index, .. }
                    | StoreError::UnknownCausation { index, .. } => {
                        format!("line {}: ", first_line + index)
                    }
                    _ => String::new(),
                };
                failure = Some(anyhow::anyhow!(
                    "{name}: {detail}{e}; the batch starting at line {first_line} ({n} events) and everything after it were not appended"
                ));
                break;
            }
        }
        done += n;
        if total > 10_000 && last_report.elapsed() > Duration::from_millis(500) {
            eprintln!("append: {done}/{total} events ({}%)", done * 100 / total);
            last_report = Instant::now();
        }
    }
    // Receipts are printed only once what they describe is durable.
    store.sync()?;
    for (r, c, k) in &pending {
        writeln!(out, "{}", receipt_json(r, c, k))?;
    }
    out.flush()?;
    store.close()?;
    if total > 10_000 {
        eprintln!(
            "append: {} events durable in {:.2} s",
            pending.len(),
            started.elapsed().as_secs_f64()
        );
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// One event as a JSON line.
pub(crate) fn event_json(e: &Event) -> serde_json::Value {
    let h = &e.header;
    let payload = match serde_json::from_slice::<serde_json::Value>(&e.payload) {
        Ok(v) => v,
        Err(_) => serde_json::Value::String(String::from_utf8_lossy(&e.payload).into_owned()),
    };
    let mut v = json!({
        "id": h.id.to_string(),
        "seq": h.sequence,
        "entity": h.coordinate.entity,
        "scope": h.coordinate.scope,
        "kind": h.kind,
        "entity_seq": h.entity_sequence,
        "causation": h.causation.map(|c| c.to_string()),
        "correlation": h.correlation.to_string(),
        "timestamp_us": h.timestamp_us,
        "payload": payload,
    });
    if !h.meta.is_empty() {
        v["meta"] = h
            .meta
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    v
}

pub(crate) fn events(data: &Path, a: EventsArgs) -> anyhow::Result<ExitCode> {
    // service (issue 8): through the running host when there is one.
    if let Some(c) = batpak_service::Client::connect(data)? {
        return crate::remote::events(c, &a);
    }
    let mut region = Region::all().kinds(a.kind.clone());
    region.scope = a.scope.clone();
    region.entity_prefix = a.entity_prefix.clone();
    let include_system = a.system || a.kind.iter().any(|k| batpak_store::is_system_kind(k));
    let matches = |e: &Event| {
        let h = &e.header;
        if h.sequence <= a.after {
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
            if writeln!(out, "{}", event_json(e)).is_err() {
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
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn verify(data: &Path) -> anyhow::Result<ExitCode> {
    // service (issue 8): through the running host when there is one.
    if let Some(c) = batpak_service::Client::connect(data)? {
        return crate::remote::verify(c);
    }
    if !data.join("segments").is_dir() {
        bail!(
            "{} holds no store (no segments directory); check --data",
            data.display()
        );
    }
    let (report, open_error) = match Store::open(data) {
        Ok(store) => {
            let r = store.verify()?;
            store.close()?;
            (r, None)
        }
        Err(e @ StoreError::Locked { .. }) => return Err(e.into()),
        Err(e) => (verify_dir(data)?, Some(e)),
    };
    let sound = report.is_sound() && open_error.is_none();
    let mut problems = report.problems.clone();
    if let Some(e) = &open_error {
        problems.insert(0, format!("the store does not open: {e}"));
    }
    println!(
        "{}",
        json!({
            "sound": sound,
            "segments": report.segments,
            "frames": report.frames,
            "events": report.events,
            "problems": problems,
        })
    );
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
