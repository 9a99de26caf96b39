//! `append`, `events`, `verify` and `parked` through a running host's
//! control socket: same output, same exit codes, same durability promise
//! (a receipt is printed only once its event is durable) as when the CLI
//! opens the store itself. `main` sends these commands here when a host
//! runs (so the local commands never call back into this module).

use crate::parked::{check_plugin_name, report_replay, ParkedAction, ParkedArgs};
use crate::run::usage;
use crate::store_cmds::{interrupt, parse_line_event, print_receipts, AppendArgs, EventsArgs};
use anyhow::bail;
use batpak_service::{Client, NewEvent, Query, MAX_APPEND_EVENTS};
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

/// Most bytes of `--jsonl` input sent to a running host: the file goes as
/// one atomic append, which must fit one control-channel frame.
const MAX_REMOTE_JSONL_BYTES: usize = 48 << 20;

/// `append --jsonl` through a running host: every line is parsed and checked
/// first, then the whole file goes as ONE atomic append — all of it is
/// appended, or nothing (the same promise as the streaming path the CLI
/// uses when it owns the store, which has no size limit).
fn append_jsonl(mut c: Client, src: &Path) -> anyhow::Result<ExitCode> {
    // A signal while reading and checking ends at once (nothing sent);
    // once the batch is sent, the host appends all of it or none, and the
    // reply says which.
    interrupt::install();
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
    let too_big = || {
        anyhow::anyhow!(
            "{name}: through a running host a --jsonl file is appended as one atomic batch of at most {MAX_APPEND_EVENTS} events and {} MiB; nothing was appended. Split the file (each part is all-or-nothing), or stop `run` and append again (the CLI then streams any size, still all-or-nothing)",
            MAX_REMOTE_JSONL_BYTES >> 20
        )
    };
    let mut events: Vec<NewEvent> = Vec::new();
    let mut bytes = 0usize;
    let mut errors = Vec::new();
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(|e| anyhow::anyhow!("{name}: reading line {}: {e}", i + 1))?;
        bytes += line.len();
        if bytes > MAX_REMOTE_JSONL_BYTES {
            return Err(too_big());
        }
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        // Refused as without a host: a payload is never silently altered.
        let checked = std::str::from_utf8(line)
            .map_err(|_| anyhow::anyhow!("line is not UTF-8"))
            .and_then(parse_line_event)
            .and_then(|ev| {
            batpak_service::proposal(0, ev.clone())
                .map(|_| ev)
                .map_err(|e| anyhow::anyhow!("{}", e.message.trim_start_matches("event 0: ")))
        });
        match checked {
            Ok(ev) if events.len() < MAX_APPEND_EVENTS => events.push(ev),
            Ok(_) => return Err(too_big()),
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
    if events.is_empty() {
        eprintln!("{name}: no events (empty input); nothing appended");
        return Ok(ExitCode::SUCCESS);
    }
    // The host checks causation and expected sequences against the store
    // and appends the whole batch in one frame, or refuses all of it.
    interrupt::writing();
    let total = events.len();
    let receipts = c
        .append(events)
        .map_err(|e| anyhow::anyhow!("{name}: {e}; nothing was appended"))?;
    let text: String = receipts.iter().map(|r| format!("{r}\n")).collect();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    print_receipts(&mut text.as_bytes(), &mut out, &name, total)
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

pub(crate) fn parked(mut c: Client, a: ParkedArgs) -> anyhow::Result<ExitCode> {
    let name = match &a.action {
        Some(ParkedAction::Replay { plugin, .. }) => plugin.clone().or(a.plugin.clone()),
        None => a.plugin.clone(),
    };
    if let Err(m) = check_plugin_name("--plugin", &name) {
        return usage(m);
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
