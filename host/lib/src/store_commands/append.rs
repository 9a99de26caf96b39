//! `append`, once for a local store and a running host: one event from
//! flags, or a `--jsonl` file as one bulk transaction (all of it or none),
//! over [`StoreAccess`].

use crate::store_commands::access::{PartRefused, StoreAccess};
use crate::store_commands::args::AppendArgs;
use crate::store_commands::jsonl_input::{
    interrupt, parse_line, parse_line_event, ReceiptSpool, Source, CHUNK_BYTES, CHUNK_EVENTS,
};
use crate::usage::Usage;
use anyhow::bail;
use batpak_service::NewEvent;
use batpak_store::{EventId, Proposal};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// `s` as an event id, or an error naming `flag` and the expected form.
///
/// # Errors
/// `s` is not 32 hex digits.
pub fn parse_id(flag: &str, s: &str) -> anyhow::Result<EventId> {
    s.parse::<EventId>()
        .map_err(|_| anyhow::anyhow!("{flag}: {s:?} is not an event id; expected 32 hex digits as printed in a receipt's \"id\""))
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

/// `append` on the store in `data` (through the host running on it when
/// there is one); the receipts go to `out`, one JSON line each.
///
/// # Errors
/// Bad flags ([`Usage`] for a bad `--payload`), a refused append, a store
/// or connection failure.
pub fn append(data: &Path, a: AppendArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    if let Some(src) = &a.jsonl {
        return append_jsonl(data, src, out);
    }
    // Checked before the store is opened (or created): a bad flag gets the
    // same message with or without a host, and leaves nothing behind.
    let (ev, _) = single_event(a)?;
    let mut access = super::open(data)?;
    let receipts = match access.append(vec![ev]) {
        Ok(r) => r,
        Err(e) => {
            let _ = access.close();
            return Err(e);
        }
    };
    access.close()?;
    let mut out = std::io::BufWriter::new(out);
    for r in receipts {
        writeln!(out, "{r}")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The one event of `append --entity … --scope … --kind …` (not
/// `--jsonl`), checked as the store will check it: the event and its
/// proposal. Shared by the embedded store and the cluster.
///
/// # Errors
/// A bad `--payload` ([`Usage`]), a missing flag, a bad id, an event the
/// rules refuse.
pub(crate) fn single_event(a: AppendArgs) -> anyhow::Result<(NewEvent, Proposal)> {
    let payload = single_payload(&a).map_err(Usage)?;
    let (Some(entity), Some(scope), Some(kind)) = (a.entity, a.scope, a.kind) else {
        bail!("append needs --entity, --scope and --kind (or --jsonl FILE)");
    };
    for (flag, id) in [
        ("--causation", &a.causation),
        ("--correlation", &a.correlation),
    ] {
        if let Some(s) = id {
            parse_id(flag, s)?;
        }
    }
    let ev = NewEvent {
        entity,
        scope,
        kind,
        payload_text: Some(payload),
        causation: a.causation,
        correlation: a.correlation,
        idempotency_key: a.idempotency_key,
        ..NewEvent::default()
    };
    let p = batpak_service::proposal(0, ev.clone())
        .map_err(|e| anyhow::anyhow!("{}", e.message.trim_start_matches("event 0: ")))?;
    Ok((ev, p))
}

/// `append --jsonl`, all or nothing however large the file: pass 1 parses
/// and checks every line (against the store and the lines before it when
/// it is local; a running host checks each part as it arrives), nothing
/// written; pass 2 appends the file as one bulk transaction — parts of
/// [`CHUNK_EVENTS`] events, then one commit. A refused part, this process
/// dying or a signal before the commit leave nothing. Receipts are printed
/// once the commit is durable.
fn append_jsonl(data: &Path, src: &Path, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    interrupt::install();
    let source = Source::new(src)?;
    let name = source.name.clone();
    let mut access = super::open(data)?;
    // Pass 1: syntax and rules, every line; nothing is written.
    let mut errors = Vec::new();
    let mut total = 0usize;
    let checked = access.check_all(&mut |check| {
        source.for_each_text(|n, text| {
            total += 1;
            if let Err(e) = text.and_then(parse_line).and_then(|p| check(&p)) {
                errors.push(format!("{name}:{n}: {e:#}"));
                if errors.len() >= 20 {
                    errors.push("(stopped after 20 errors)".into());
                    return Ok(false);
                }
            }
            Ok(true)
        })
    });
    if let Err(e) = checked {
        let _ = access.close();
        return Err(e);
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: {e}");
        }
        access.close()?;
        bail!(
            "{name}: {} bad line(s); nothing was appended. Fix the lines above and run again",
            errors.len().min(20)
        );
    }
    if total == 0 {
        access.close()?;
        eprintln!("{name}: no events (empty input); nothing appended");
        return Ok(ExitCode::SUCCESS);
    }
    // Pass 2: the parts, then the commit.
    let mut spool = ReceiptSpool::new()?;
    interrupt::writing();
    let started = Instant::now();
    let what = match access.served_by() {
        Some(host) => format!("sent to {host}"),
        None => "written".to_string(),
    };
    let mut part: Vec<NewEvent> = Vec::new();
    // The line number of each event of the part being built.
    let mut lines: Vec<usize> = Vec::new();
    let mut bytes = 0usize;
    let mut done = 0usize;
    // Progress after the first part, then at most twice a second: a
    // large append says from its start that nothing is committed yet.
    let mut last_report: Option<Instant> = None;
    let mut send = |access: &mut dyn StoreAccess,
                    part: &mut Vec<NewEvent>,
                    lines: &mut Vec<usize>|
     -> anyhow::Result<()> {
        if interrupt::signalled() {
            bail!("stopped by a signal");
        }
        if part.is_empty() {
            return Ok(());
        }
        let receipts = access
            .bulk_part(std::mem::take(part))
            .map_err(|e| match e {
                PartRefused::Refused(m) => line_error(&name, lines, &m),
                PartRefused::Failed(e) => e.context(name.clone()),
            })?;
        lines.clear();
        done += receipts.len();
        for r in receipts {
            writeln!(spool.out, "{r}")?;
        }
        if total > 10_000 && last_report.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
            eprintln!(
                "append: {done}/{total} events {what} ({}%), not yet committed",
                done * 100 / total
            );
            last_report = Some(Instant::now());
        }
        Ok(())
    };
    let sent = source
        .for_each_text(|n, text| {
            let ev = parse_line_event(text?)?;
            let size = ev.payload_text.as_ref().map_or(0, String::len) + 128;
            if !part.is_empty() && (part.len() >= CHUNK_EVENTS || bytes + size > CHUNK_BYTES) {
                send(&mut *access, &mut part, &mut lines)?;
                bytes = 0;
            }
            lines.push(n);
            bytes += size;
            part.push(ev);
            Ok(true)
        })
        .and_then(|()| send(&mut *access, &mut part, &mut lines))
        .and_then(|()| spool.out.flush().map_err(Into::into));
    if let Err(e) = sent {
        // Abandoned: nothing of it counts (a host abandons the transaction
        // of a connection that closes).
        access.bulk_abort();
        let _ = access.close();
        if interrupt::signalled() {
            eprintln!(
                "append: stopped by a signal before the append committed; nothing was appended"
            );
            return Ok(ExitCode::from(interrupt::EXIT_NOTHING_APPENDED));
        }
        return Err(e.context(format!("{name}: nothing was appended")));
    }
    let appended = access.bulk_commit().map_err(|e| {
        e.context(format!("{name}: the append's commit failed; look (e.g. `batpak-host events`) whether all or none of the events were kept"))
    })?;
    access.close()?;
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
    let mut out = std::io::BufWriter::new(out);
    spool.print(&mut out, &name, total)
}

/// A refused part, naming the input line when the refusal names the event
/// ("proposal N: …" / "event N: …", N its index in the part).
fn line_error(name: &str, lines: &[usize], msg: &str) -> anyhow::Error {
    for prefix in ["proposal ", "event "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            if let Some((i, why)) = rest.split_once(": ") {
                if let Some(line) = i.parse::<usize>().ok().and_then(|i| lines.get(i)) {
                    let why = why.replace(
                        "is not an event in this store",
                        "is neither an event in this store nor the \"id\" of an earlier line",
                    );
                    return anyhow::anyhow!("{name}:{line}: {why}");
                }
            }
        }
    }
    match (lines.first(), lines.last()) {
        (Some(a), Some(b)) => anyhow::anyhow!("{name}:{a}-{b}: {msg}"),
        _ => anyhow::anyhow!("{name}: {msg}"),
    }
}
