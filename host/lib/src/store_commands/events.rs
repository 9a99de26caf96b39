//! `events`, once for a local store and a running host: pages of event
//! lines over [`StoreAccess`] (the host's own read). Only when no host
//! serves the store and it cannot be read through its indexes (`--follow`,
//! a torn or uncommitted tail, a `run` holding it without a socket) are its
//! segments scanned lock-free instead, never repairing anything.

use crate::store_commands::access::StoreAccess;
use crate::store_commands::append::parse_id;
use crate::store_commands::args::{EventFormat, EventsArgs};
use batpak_service::{event_line, Client, Query};
use batpak_store::{Event, EventId, LogReader, Region};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Writes one event in `format`, from its line as `events` prints it
/// ([`batpak_service::event_line`], the same from a local store and through
/// a running host): the JSON format is the line itself; the pretty one
/// shows the payload as stored (`raw`, when at hand, else as the line
/// carries it).
pub fn write_event(
    out: &mut dyn Write,
    line: &str,
    raw: Option<&[u8]>,
    format: EventFormat,
) -> std::io::Result<()> {
    match format {
        EventFormat::Json => writeln!(out, "{line}"),
        EventFormat::Pretty => {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            let s = |k: &str| v[k].as_str().unwrap_or("");
            let payload = match (raw, &v["payload"]) {
                (Some(b), _) => String::from_utf8_lossy(b).into_owned(),
                (None, serde_json::Value::String(t)) => t.clone(),
                (None, _) => batpak_service::RawJson::parse(line)
                    .ok()
                    .and_then(|j| j.fields())
                    .and_then(|f| f.into_iter().find(|(k, _)| k == "payload"))
                    .map(|(_, p)| p.to_string())
                    .unwrap_or_default(),
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

/// The ids `events` filters on, checked before anything is read.
pub(crate) struct IdFilters {
    correlation: Option<EventId>,
    caused_by: Option<EventId>,
}

impl IdFilters {
    pub(crate) fn parse(a: &EventsArgs) -> anyhow::Result<IdFilters> {
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

    pub(crate) fn matches(&self, e: &Event) -> bool {
        self.correlation.is_none_or(|c| e.header.correlation == c)
            && self.caused_by.is_none_or(|c| e.header.causation == Some(c))
    }
}

/// Whether every host record is printed besides the region's kinds:
/// `--system` without `--kind` (listed kinds always filter, `batpak.*` ones
/// included).
pub(crate) fn include_system(a: &EventsArgs) -> bool {
    a.system && a.kind.is_empty()
}

pub(crate) fn events_region(a: &EventsArgs) -> Region {
    let mut region = Region::all().kinds(a.kind.clone());
    region.scope = a.scope.clone();
    region.entity_prefix = a.entity_prefix.clone();
    region
}

/// `events` on the store in `data` (through the host running on it when
/// there is one), printed to `out`.
///
/// # Errors
/// A bad filter, a store or connection failure.
pub fn events(data: &Path, a: EventsArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    if let Some(p) = a.partition {
        return Err(crate::usage::Usage(format!(
            "--partition {p}: the embedded store in {} has one order and no partitions; \
             --partition selects one on a cluster (--store nats://…)",
            data.display()
        ))
        .into());
    }
    // Checked here first, so a bad id gets the same message either way.
    let ids = IdFilters::parse(&a)?;
    let access: Option<Box<dyn StoreAccess>> = match Client::connect(data)? {
        Some(c) => Some(Box::new(c)),
        // Without --follow, and when opening repairs nothing, hold the
        // store for the read and go through its index.
        None if !a.follow && batpak_store::opens_clean(data) => super::LocalStore::open(data)
            .ok()
            .map(|s| Box::new(s) as Box<dyn StoreAccess>),
        None => None,
    };
    match access {
        Some(access) => paged(access, &a, out),
        None => scanned(data, &a, &ids, out),
    }
}

/// Pages of event lines from `access`, printed as they come.
fn paged(
    mut access: Box<dyn StoreAccess>,
    a: &EventsArgs,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let mut q = Query {
        entity: a.entity.clone(),
        entity_prefix: a.entity_prefix.clone(),
        scope: a.scope.clone(),
        correlation: a.correlation.clone(),
        caused_by: a.caused_by.clone(),
        id: None,
        kinds: a.kind.clone(),
        after: a.after,
        partition: None,
        limit: None,
        system: a.system,
        wait_ms: if a.follow { 1000 } else { 0 },
    };
    let limit = a.limit.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let mut out = std::io::BufWriter::new(out);
    let result = loop {
        q.limit = Some((limit - printed).min(batpak_service::MAX_PAGE as u64));
        let page = match access.read(&q) {
            Ok(p) => p,
            Err(e) => break Err(e),
        };
        q.after = page.next_after;
        let mut gone = false;
        for e in &page.events {
            if write_event(&mut out, e.get(), None, a.format).is_err() {
                gone = true; // reader went away (e.g. `| head`)
                break;
            }
            printed += 1;
        }
        if gone || printed >= limit || (!page.more && !a.follow) {
            break Ok(());
        }
        if page.events.is_empty() && out.flush().is_err() {
            break Ok(());
        }
    };
    let _ = out.flush();
    access.close()?;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The segments read lock-free: no lock, no repair; reports what it finds.
fn scanned(
    data: &Path,
    a: &EventsArgs,
    ids: &IdFilters,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let region = events_region(a);
    // A listed `batpak.*` kind matches by itself; `--system` adds every host
    // record (as through a running host).
    let include_system = include_system(a);
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
    let mut out = std::io::BufWriter::new(out);
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
            if write_event(&mut out, &event_line(e), None, a.format).is_err() {
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
                write_event(&mut out, &event_line(e), None, a.format)?;
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
