//! Shadow replay: runs a candidate version of a reactor over events the
//! running version already handled, in a scratch store (nothing is appended
//! to the real log), and compares per source event what the candidate
//! proposes — after the capability gate — with what was actually appended.
//!
//! Only source events the running version handled are compared (the
//! version stamped on their reactions, or in effect by the reactor's swap
//! records): what an earlier version appended says nothing about the
//! running one, so those events are counted apart, not reported as
//! differences.
//!
//! The real log is read with [`LogReader`], without the lock, so this works
//! while `run` owns the store. The scratch store receives a copy of the log
//! up to each source event before the candidate sees it, so its host reads
//! (`get-event`, `read-entity`) see what the running version saw.

use crate::admission::{Admission, Judged};
use crate::capability_gate::{CapabilityGate, ReactorInfo};
use crate::reactor::Reactor;
use crate::runner::swap::{ROLLED_BACK_KIND, SWAPPED_KIND};
use crate::services::HostServices;
use crate::shadow_error::ShadowError;
use batpak_log::{Commit, Durability, SharedLog};
use batpak_store::{
    is_system_kind, Event, EventId, EventView, GateSet, LogReader, Proposal, Store, DENIED_KIND,
};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which handled events to replay.
#[derive(Clone, Debug, Default)]
pub struct ShadowRange {
    /// Only source events at or after this sequence.
    pub from: Option<u64>,
    /// Only the last N handled source events.
    pub last: Option<usize>,
}

/// How one source event compares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiffKind {
    /// A reaction at the same position differs in kind, coordinate or payload.
    Changed,
    /// The candidate proposes a reaction the running version did not append.
    Added,
    /// The running version appended a reaction the candidate does not propose.
    Missing,
    /// The gates would decide differently (admitted vs. denied counts).
    Verdict,
    /// The candidate failed on the event (error, trap, timeout...).
    Failed,
}

/// One difference, readable.
#[derive(Clone, Debug, Serialize)]
pub struct ShadowDiff {
    /// What differs.
    pub diff: DiffKind,
    /// The source event's id.
    pub source: String,
    /// Its sequence.
    pub sequence: u64,
    /// Position among that source's reactions.
    pub ordinal: usize,
    /// What the running version appended (kind, entity, scope, payload).
    pub actual: Option<serde_json::Value>,
    /// What the candidate proposes.
    pub proposed: Option<serde_json::Value>,
}

/// The result of a shadow run.
#[derive(Clone, Debug, Serialize)]
pub struct ShadowReport {
    /// The reactor.
    pub reactor: String,
    /// The candidate's digest.
    pub candidate_digest: String,
    /// Source events replayed.
    pub events: u64,
    /// Source events whose output is identical.
    pub identical: u64,
    /// Reactions changed.
    pub changed: u64,
    /// Reactions added.
    pub added: u64,
    /// Reactions missing.
    pub missing: u64,
    /// Source events whose gate verdicts differ.
    pub verdicts: u64,
    /// Source events the candidate failed on.
    pub failed: u64,
    /// Handled source events in the window that an earlier version (another
    /// digest than the running one's) handled: not compared, since what
    /// they caused says nothing about the running version. Counted, not
    /// part of `events`.
    pub other_version: u64,
    /// The digest of the version whose reactions the candidate is compared
    /// with: the running one (the last the log shows for this reactor).
    pub running_digest: Option<String>,
    /// Every difference, in log order.
    pub diffs: Vec<ShadowDiff>,
    /// Wall time of the replay.
    #[serde(skip)]
    pub elapsed: Duration,
}

impl ShadowReport {
    /// True when the candidate behaves like the running version on every
    /// replayed event.
    pub fn is_identical(&self) -> bool {
        self.diffs.is_empty()
    }
}

fn shown(kind: &str, entity: &str, scope: &str, payload: &[u8]) -> serde_json::Value {
    let payload = match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(v) => v,
        Err(_) => serde_json::Value::String(String::from_utf8_lossy(payload).into_owned()),
    };
    serde_json::json!({"kind": kind, "entity": entity, "scope": scope, "payload": payload})
}

use batpak_store::system::CHECKPOINT_KIND;

/// What the running version left for one source event.
#[derive(Default)]
struct Actual {
    reactions: Vec<Event>,
    denials: usize,
    /// The digest stamped on what it left (reactions, denial and parking
    /// records carry the lineage of the version that handled the event).
    digest: Option<String>,
}

/// The `component` digest in an event's lineage.
fn component_of(e: &Event) -> Option<&str> {
    e.header
        .meta
        .iter()
        .find(|(k, _)| k == "component")
        .map(|(_, v)| v.as_str())
}

/// Which version handled each position, from the reactor's swap and
/// rollback records: each says "after `position`, the version stamped on
/// me"; the first swap also names the version before it.
#[derive(Default)]
struct Versions {
    first: Option<String>,
    changes: Vec<(u64, String)>,
}

impl Versions {
    fn add(&mut self, e: &Event) {
        if e.kind() != SWAPPED_KIND && e.kind() != ROLLED_BACK_KIND {
            return;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&e.payload) else {
            return;
        };
        let (Some(position), Some(digest)) = (v["position"].as_u64(), component_of(e)) else {
            return;
        };
        if self.changes.is_empty() {
            self.first = v["old_digest"].as_str().map(String::from);
        }
        self.changes.push((position, digest.to_string()));
    }

    /// The version that handled the event at `seq`, when the records say.
    fn at(&self, seq: u64) -> Option<&str> {
        match self.changes.iter().rev().find(|(p, _)| *p < seq) {
            Some((_, d)) => Some(d),
            None => self.first.as_deref(),
        }
    }
}

/// Replays `candidate` over the events reactor `name` handled in the store
/// in `data`, in a scratch store under `scratch` (created, then removed).
/// `grant_emits` is the operator's grant (`None`: everything declared).
///
/// # Errors
/// [`ShadowError::OtherReactor`] when the candidate has another name;
/// [`ShadowError::Store`] when the log cannot be read or the scratch store
/// cannot be written.
pub fn shadow(
    mut candidate: Box<dyn Reactor>,
    data: &Path,
    scratch: &Path,
    name: &str,
    grant_emits: Option<&[String]>,
    range: &ShadowRange,
) -> Result<ShadowReport, ShadowError> {
    let d = candidate.descriptor().clone();
    if d.name != name {
        return Err(ShadowError::OtherReactor {
            candidate: d.name.clone(),
            expected: name.to_string(),
        });
    }
    let started = Instant::now();
    let mut reader = LogReader::open(data).map_err(ShadowError::store("opening the log"))?;
    let mut log: Vec<Event> = Vec::new();
    loop {
        let batch = reader
            .poll(64 << 20)
            .map_err(ShadowError::store("reading the log"))?;
        if batch.is_empty() {
            break;
        }
        log.extend(batch);
    }
    let by_name = |e: &Event| {
        e.header
            .meta
            .iter()
            .any(|(k, v)| k == "reactor" && v == name)
    };
    let mut actual: HashMap<EventId, Actual> = HashMap::new();
    let mut last_handled = 0u64;
    let seq_of: HashMap<EventId, u64> = log.iter().map(|e| (e.id(), e.sequence())).collect();
    // The running version: the last one the log shows for this reactor
    // (every reaction and record it writes carries its lineage).
    let mut running: Option<String> = None;
    let mut versions = Versions::default();
    // Handled: up to the reactor's checkpoint too, so events that caused
    // nothing count (a version that proposes nothing handled them as well).
    // Any of its instances' cursors: of a reactor run as several, each
    // instance's checkpoint covers its share.
    for e in log.iter().filter(|e| e.kind() == CHECKPOINT_KIND) {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&e.payload) {
            let cursor = v["cursor"].as_str().unwrap_or("");
            if crate::runner::Instance::of_cursor(name, cursor).is_some() {
                last_handled = last_handled.max(v["sequence"].as_u64().unwrap_or(0));
            }
        }
    }
    for e in log.iter().filter(|e| by_name(e)) {
        if let Some(c) = component_of(e) {
            running = Some(c.to_string());
        }
        versions.add(e);
        let Some(cause) = e.header.causation else {
            continue;
        };
        if let Some(&s) = seq_of.get(&cause) {
            last_handled = last_handled.max(s);
        }
        let a = actual.entry(cause).or_default();
        if a.digest.is_none() {
            a.digest = component_of(e).map(String::from);
        }
        if e.kind() == DENIED_KIND {
            a.denials += 1;
        } else if !is_system_kind(e.kind()) {
            a.reactions.push(e.clone());
        }
    }
    // Only what the running version handled is compared: an earlier
    // version's output is no evidence of how the running one behaves (the
    // candidate identical to the running version must show no difference
    // however far back the window reaches).
    let mut other_version = 0u64;
    let mut sources: Vec<usize> = Vec::new();
    for (i, e) in log.iter().enumerate() {
        if is_system_kind(e.kind())
            || !d.region.matches(&e.header)
            || e.sequence() > last_handled
            || range.from.is_some_and(|f| e.sequence() < f)
        {
            continue;
        }
        let handler = actual
            .get(&e.id())
            .and_then(|a| a.digest.as_deref())
            .or_else(|| versions.at(e.sequence()));
        match (handler, running.as_deref()) {
            (Some(h), Some(r)) if h != r => other_version += 1,
            _ => sources.push(i),
        }
    }
    if let Some(n) = range.last {
        let skip = sources.len().saturating_sub(n);
        sources.drain(..skip);
    }

    let _ = std::fs::remove_dir_all(scratch);
    let store = Store::open(scratch).map_err(ShadowError::store("opening the scratch store"))?;
    // The candidate, its gates and the copies reach the scratch store
    // through the log seam, like a runner.
    let scratch_log: SharedLog = Arc::new(store.clone());
    let info = ReactorInfo {
        name: d.name.clone(),
        version: d.version.clone(),
        digest: candidate.digest().to_string(),
    };
    let admission = Arc::new(Admission::new(
        info,
        CapabilityGate::new(&d.name, &d.emits, grant_emits),
        Arc::new(GateSet::new()),
    ));
    candidate.attach(HostServices {
        log: scratch_log.clone(),
        admission: admission.clone(),
    });
    let mut report = ShadowReport {
        reactor: name.to_string(),
        candidate_digest: candidate.digest().to_string(),
        events: 0,
        identical: 0,
        changed: 0,
        added: 0,
        missing: 0,
        verdicts: 0,
        failed: 0,
        other_version,
        running_digest: running,
        diffs: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let mut copied = 0usize;
    let none = Actual::default();
    for &i in &sources {
        // The scratch log catches up to the source event (inclusive).
        let copies: Vec<Proposal> = log[copied..=i].iter().map(copy_of).collect();
        for chunk in copies.chunks(1024) {
            scratch_log
                .commit(&mut Commit::records(chunk.to_vec()).durability(Durability::Visible))
                .map_err(ShadowError::commit(
                    "copying the log into the scratch store",
                ))?;
        }
        copied = i + 1;
        let src = &log[i];
        let view = EventView::from(src);
        report.events += 1;
        let a = actual.get(&src.id()).unwrap_or(&none);
        let before = report.diffs.len();
        match candidate.react(std::slice::from_ref(&view)) {
            Err(f) => {
                candidate.reset();
                report.failed += 1;
                report.diffs.push(ShadowDiff {
                    diff: DiffKind::Failed,
                    source: src.id().to_string(),
                    sequence: src.sequence(),
                    ordinal: 0,
                    actual: None,
                    proposed: Some(serde_json::Value::String(f.to_string())),
                });
            }
            Ok(reactions) => {
                let mut admitted = Vec::new();
                let mut denials = 0usize;
                for (ordinal, r) in reactions.into_iter().enumerate() {
                    match admission.judge(&*scratch_log, r, &view, ordinal as u32) {
                        Judged::Admitted(p) => admitted.push(p),
                        Judged::Denied { .. } => denials += 1,
                    }
                }
                let n = admitted.len().max(a.reactions.len());
                for k in 0..n {
                    let got = admitted.get(k).map(|p| {
                        (
                            p.kind.as_str(),
                            p.coordinate.entity.as_str(),
                            p.coordinate.scope.as_str(),
                            &p.payload[..],
                        )
                    });
                    let had = a.reactions.get(k).map(|e| {
                        (
                            e.kind(),
                            e.coordinate().entity.as_str(),
                            e.coordinate().scope.as_str(),
                            &e.payload[..],
                        )
                    });
                    let diff = match (had, got) {
                        (Some(x), Some(y)) if x == y => continue,
                        (Some(_), Some(_)) => DiffKind::Changed,
                        (None, Some(_)) => DiffKind::Added,
                        (Some(_), None) => DiffKind::Missing,
                        (None, None) => continue,
                    };
                    match diff {
                        DiffKind::Changed => report.changed += 1,
                        DiffKind::Added => report.added += 1,
                        _ => report.missing += 1,
                    }
                    report.diffs.push(ShadowDiff {
                        diff,
                        source: src.id().to_string(),
                        sequence: src.sequence(),
                        ordinal: k,
                        actual: had.map(|(k, e, s, p)| shown(k, e, s, p)),
                        proposed: got.map(|(k, e, s, p)| shown(k, e, s, p)),
                    });
                }
                if denials != a.denials {
                    report.verdicts += 1;
                    report.diffs.push(ShadowDiff {
                        diff: DiffKind::Verdict,
                        source: src.id().to_string(),
                        sequence: src.sequence(),
                        ordinal: 0,
                        actual: Some(serde_json::json!({"denied": a.denials})),
                        proposed: Some(serde_json::json!({"denied": denials})),
                    });
                }
            }
        }
        if report.diffs.len() == before {
            report.identical += 1;
        }
    }
    drop(scratch_log);
    store
        .close()
        .map_err(ShadowError::store("closing the scratch store"))?;
    let _ = std::fs::remove_dir_all(scratch);
    report.elapsed = started.elapsed();
    Ok(report)
}

/// A copy of a logged event for the scratch store (same id, kind, place,
/// payload, causation and lineage).
fn copy_of(e: &Event) -> Proposal {
    let mut p = Proposal::new(e.coordinate().clone(), e.kind(), e.payload.to_vec());
    p.id = Some(e.id());
    p.causation = e.header.causation;
    p.correlation = Some(e.header.correlation);
    p.meta = e.header.meta.clone();
    p
}
