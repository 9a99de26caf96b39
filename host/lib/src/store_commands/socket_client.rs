//! `append`, `events`, `verify` and `parked` through a running host's
//! control socket: same output, same exit codes, same durability promise
//! (a receipt is printed only once its event is durable) as when the CLI
//! opens the store itself. `main` sends these commands here when a host
//! runs (so the local commands never call back into this module).

use crate::store_commands::parked::{check_plugin_name, report_replay, ParkedAction, ParkedArgs};
use crate::store_commands::append::{
    interrupt, parse_line_event, AppendArgs, EventsArgs, ReceiptSpool, Source, CHUNK_BYTES,
    CHUNK_EVENTS,
};
use crate::usage::Usage;
use anyhow::bail;
use batpak_service::{Client, ClientError, NewEvent, Query};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub fn append(mut c: Client, a: AppendArgs) -> anyhow::Result<ExitCode> {
    if let Some(src) = &a.jsonl {
        return append_jsonl(c, src);
    }
    // The same payload check as without a host; what passes is sent
    // verbatim, so both paths store the same bytes.
    let payload = match crate::store_commands::append::single_payload(&a) {
        Ok(p) => p,
        Err(m) => return Err(Usage(m).into()),
    };
    let (Some(entity), Some(scope), Some(kind)) = (a.entity, a.scope, a.kind) else {
        bail!("append needs --entity, --scope and --kind (or --jsonl FILE)");
    };
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

/// `append --jsonl` through a running host, all or nothing however large
/// the file: every line is parsed and checked here first (nothing sent),
/// then the file goes as one bulk transaction on this connection — parts
/// of [`CHUNK_EVENTS`] events, then one commit. The host checks causation
/// and expected sequences per part; a refused part, this process dying or
/// a signal before the commit leave nothing (the host abandons a
/// transaction whose connection closes). Receipts are printed after the
/// commit, as without a host.
fn append_jsonl(mut c: Client, src: &Path) -> anyhow::Result<ExitCode> {
    interrupt::install();
    let source = Source::new(src)?;
    let name = source.name.clone();
    // Pass 1: syntax and rules, every line; nothing is sent.
    let mut errors = Vec::new();
    let mut total = 0usize;
    source.for_each_text(|n, text| {
        total += 1;
        let checked = text.and_then(parse_line_event).and_then(|ev| {
            batpak_service::proposal(0, ev)
                .map_err(|e| anyhow::anyhow!("{}", e.message.trim_start_matches("event 0: ")))
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
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: {e}");
        }
        bail!(
            "{name}: {} bad line(s); nothing was appended. Fix the lines above and run again",
            errors.len().min(20)
        );
    }
    if total == 0 {
        eprintln!("{name}: no events (empty input); nothing appended");
        return Ok(ExitCode::SUCCESS);
    }
    // Pass 2: the parts, then the commit.
    let mut spool = ReceiptSpool::new()?;
    interrupt::writing();
    let mut part: Vec<NewEvent> = Vec::new();
    // The line number of each event of the part being built.
    let mut lines: Vec<usize> = Vec::new();
    let mut bytes = 0usize;
    let mut done = 0usize;
    // Progress after the first part, then at most twice a second: a
    // large append says from its start that nothing is committed yet.
    let mut last_report: Option<std::time::Instant> = None;
    let mut send = |part: &mut Vec<NewEvent>, lines: &mut Vec<usize>| -> anyhow::Result<()> {
        if interrupt::signalled() {
            bail!("stopped by a signal");
        }
        if part.is_empty() {
            return Ok(());
        }
        let receipts = c.bulk_part(std::mem::take(part)).map_err(|e| match e {
            ClientError::Remote(w) => line_error(&name, lines, &w.message),
            e => anyhow::anyhow!("{name}: {e}"),
        })?;
        lines.clear();
        done += receipts.len();
        for r in receipts {
            writeln!(spool.out, "{r}")?;
        }
        if total > 10_000
            && last_report.is_none_or(|t| t.elapsed() > std::time::Duration::from_millis(500))
        {
            eprintln!(
                "append: {done}/{total} events sent to the running host ({}%), not yet committed",
                done * 100 / total
            );
            last_report = Some(std::time::Instant::now());
        }
        Ok(())
    };
    let sent = source
        .for_each_text(|n, text| {
            let ev = parse_line_event(text?)?;
            let size = ev.payload_text.as_ref().map_or(0, String::len) + 128;
            if !part.is_empty() && (part.len() >= CHUNK_EVENTS || bytes + size > CHUNK_BYTES) {
                send(&mut part, &mut lines)?;
                bytes = 0;
            }
            lines.push(n);
            bytes += size;
            part.push(ev);
            Ok(true)
        })
        .and_then(|()| send(&mut part, &mut lines));
    let committed = sent.and_then(|()| {
        c.bulk_commit()
            .map_err(|e| anyhow::anyhow!("committing: {e}"))
    });
    if let Err(e) = committed {
        // Closing the connection abandons the host's transaction.
        drop(c);
        if interrupt::signalled() {
            eprintln!(
                "append: stopped by a signal before the append committed; nothing was appended"
            );
            return Ok(ExitCode::from(interrupt::EXIT_NOTHING_APPENDED));
        }
        return Err(e.context(format!("{name}: nothing was appended")));
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    spool.print(&mut out, &name, total)
}

/// A host's refusal of a bulk part, naming the input line as the local path
/// does when the host names the event ("proposal N: …" / "event N: …").
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

pub fn events(mut c: Client, a: &EventsArgs) -> anyhow::Result<ExitCode> {
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
            if crate::store_commands::append::write_event(&mut out, e, None, a.format).is_err() {
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

pub fn verify(mut c: Client) -> anyhow::Result<ExitCode> {
    // The same JSON as without a host (`batpak_service::verify_json`).
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

pub fn parked(mut c: Client, a: ParkedArgs) -> anyhow::Result<ExitCode> {
    let name = match &a.action {
        Some(ParkedAction::Replay { plugin, .. }) => plugin.clone().or(a.plugin.clone()),
        None => a.plugin.clone(),
    };
    if let Err(m) = check_plugin_name("--plugin", &name) {
        return Err(Usage(m).into());
    }
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
            Ok(report_replay(
                made.len(),
                event.is_some(),
                "the running host re-delivers them now",
            ))
        }
    }
}
