//! `append`, `events`, `verify` and `parked` through a running host's
//! control socket: same output, same exit codes, same durability promise
//! (a receipt is printed only once its event is durable) as when the CLI
//! opens the store itself.

use crate::parked::{ParkedAction, ParkedArgs};
use crate::store_cmds::{AppendArgs, EventsArgs};
use anyhow::bail;
use batpak_service::{Client, NewEvent, Query, MAX_APPEND_EVENTS};
use serde::Deserialize;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

pub(crate) fn append(mut c: Client, a: AppendArgs) -> anyhow::Result<ExitCode> {
    if let Some(src) = &a.jsonl {
        return append_jsonl(c, src);
    }
    let (Some(entity), Some(scope), Some(kind)) = (a.entity, a.scope, a.kind) else {
        bail!("append needs --entity, --scope and --kind (or --jsonl FILE)");
    };
    let ev = NewEvent {
        entity,
        scope,
        kind,
        payload_text: Some(a.payload.unwrap_or_default()),
        causation: a.causation,
        correlation: a.correlation,
        idempotency_key: a.idempotency_key,
        ..NewEvent::default()
    };
    // Checked here first so a bad flag gets the same message with or
    // without a host.
    batpak_service::proposal(0, ev.clone())
        .map_err(|e| anyhow::anyhow!("{}", e.message.trim_start_matches("event 0: ")))?;
    let receipts = c.append(vec![ev])?;
    let mut out = std::io::stdout().lock();
    for r in receipts {
        writeln!(out, "{r}")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
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

fn append_jsonl(mut c: Client, src: &Path) -> anyhow::Result<ExitCode> {
    let stdin = src == Path::new("-");
    let name = if stdin {
        "stdin".to_string()
    } else {
        src.display().to_string()
    };
    let reader: Box<dyn BufRead> = if stdin {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(std::fs::File::open(src).map_err(
            |e| anyhow::anyhow!("opening --jsonl file {}: {e}", src.display()),
        )?))
    };
    // Every line is checked before anything is appended.
    let mut events: Vec<(usize, NewEvent)> = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| anyhow::anyhow!("{name}: reading line {}: {e}", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let checked = serde_json::from_str::<Line>(&line)
            .map_err(|e| {
                format!(
                    "{}; {LINE_HELP}",
                    e.to_string().replace("at line 1 column", "at column")
                )
            })
            .and_then(|l| {
                let ev = NewEvent {
                    entity: l.entity,
                    scope: l.scope,
                    kind: l.kind,
                    payload: Some(l.payload),
                    causation: l.causation,
                    correlation: l.correlation,
                    idempotency_key: l.idempotency_key,
                    ..NewEvent::default()
                };
                batpak_service::proposal(0, ev.clone())
                    .map(|_| ev)
                    .map_err(|e| e.message.trim_start_matches("event 0: ").to_string())
            });
        match checked {
            Ok(ev) => events.push((i + 1, ev)),
            Err(e) => {
                errors.push(format!("{name}:{}: {e}", i + 1));
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
    if events.is_empty() {
        eprintln!("{name}: no events (empty input); nothing appended");
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut iter = events.into_iter().peekable();
    while iter.peek().is_some() {
        let mut chunk = Vec::new();
        let mut bytes = 0usize;
        let mut first_line = 0;
        while let Some((ln, ev)) = iter.peek() {
            let size = ev.payload.as_ref().map_or(0, |p| p.to_string().len()) + 256;
            if !chunk.is_empty()
                && (chunk.len() >= MAX_APPEND_EVENTS.min(4096) || bytes + size > 8 << 20)
            {
                break;
            }
            if chunk.is_empty() {
                first_line = *ln;
            }
            bytes += size;
            chunk.push(iter.next().expect("peeked").1);
        }
        let n = chunk.len();
        match c.append(chunk) {
            // Durable before the reply: print at once.
            Ok(receipts) => {
                for r in receipts {
                    writeln!(out, "{r}")?;
                }
            }
            Err(e) => {
                out.flush()?;
                bail!("{name}: {e}; the batch starting at line {first_line} ({n} events) and everything after it were not appended");
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn events(mut c: Client, a: &EventsArgs) -> anyhow::Result<ExitCode> {
    let mut q = Query {
        entity: a.entity.clone(),
        entity_prefix: a.entity_prefix.clone(),
        scope: a.scope.clone(),
        correlation: a.correlation.clone(),
        caused_by: a.caused_by.clone(),
        id: None,
        kinds: a.kind.clone(),
        after: a.after,
        limit: None,
        system: a.system,
        wait_ms: if a.follow { 1000 } else { 0 },
    };
    let limit = a.limit.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    loop {
        q.limit = Some((limit - printed).min(batpak_service::MAX_PAGE as u64));
        let page = c.read(&q)?;
        q.after = page.next_after;
        for e in &page.events {
            if crate::store_cmds::write_event(&mut out, e, None, a.format).is_err() {
                return Ok(ExitCode::SUCCESS); // reader went away (e.g. `| head`)
            }
            printed += 1;
        }
        if printed >= limit || (!page.more && !a.follow) {
            break;
        }
        if page.events.is_empty() && out.flush().is_err() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn verify(mut c: Client) -> anyhow::Result<ExitCode> {
    let r = c.verify()?;
    println!("{r}");
    let problems: Vec<String> = r["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if r["sound"].as_bool() == Some(true) {
        eprintln!(
            "verify: sound — {} events in {} frames across {} segment(s) (checked by the running host)",
            r["events"], r["frames"], r["segments"]
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            eprintln!("verify: {p}");
        }
        Ok(ExitCode::FAILURE)
    }
}

pub(crate) fn parked(mut c: Client, a: ParkedArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match a.action {
        None => {
            for p in c.parked(a.plugin.as_deref())? {
                writeln!(out, "{p}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(ParkedAction::Replay { plugin, event }) => {
            let plugin = plugin.or(a.plugin);
            let made = c.parked_replay(plugin.as_deref(), event.as_deref())?;
            for m in &made {
                writeln!(out, "{m}")?;
            }
            drop(out);
            if made.is_empty() {
                eprintln!("no unresolved parked event without a pending replay matches");
                if event.is_some() {
                    return Ok(ExitCode::FAILURE);
                }
            } else {
                eprintln!(
                    "{} replay request(s) recorded; the running host re-delivers them now",
                    made.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
