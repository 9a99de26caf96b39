//! `append` on a cluster: the embedded command's argument forms (one event
//! from flags, or `--jsonl`), checked the same way, each event appended to
//! its entity's partition and acknowledged once the partition's quorum has
//! fsynced it. Receipts name the partition and the sequence there.
//!
//! Why not through [`crate::StoreAccess`]: its `--jsonl` path is one bulk
//! transaction (all of the file or none), and a cluster has no transaction
//! across partitions. So on a cluster every line is checked first (nothing
//! is written when one is bad), then appended in order, its receipt printed
//! as soon as it is durable; a failure stops there and says which lines
//! are stored. Re-running the file is safe for lines that carry an `"id"`
//! or `"idempotency_key"` (de-duplicated within the partition's 2-minute
//! window).

use crate::cluster::address::ClusterAddress;
use crate::cluster::connect::open_log;
use crate::store_commands::append::single_event;
use crate::store_commands::jsonl_input::{parse_line, Source};
use crate::store_commands::AppendArgs;
use anyhow::bail;
use batpak_nats::{Appended, LogError, NatsLog};
use batpak_store::{EventId, Proposal};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// A receipt as the cluster's `append` prints it: the embedded receipt's
/// fields the cluster knows, plus `partition`; `seq` is the sequence
/// within that partition. A duplicate names the first copy (its id and
/// entity sequence, read back), as the embedded store's receipt does.
pub fn receipt(log: &NatsLog, a: &Appended, p: &Proposal) -> Value {
    let mut a = *a;
    if a.duplicate {
        if let Ok(Some(first)) = log.get_by_sequence(a.partition, a.sequence) {
            a.id = first.header.id;
            a.entity_sequence = first.header.entity_sequence;
        }
    }
    json!({
        "id": a.id.to_string(),
        "partition": a.partition,
        "seq": a.sequence,
        "entity": p.coordinate.entity,
        "scope": p.coordinate.scope,
        "kind": p.kind,
        "entity_seq": a.entity_sequence,
        "deduplicated": a.duplicate,
    })
}

/// Why one event was not appended to the cluster (typed: the HTTP API
/// maps each to its status).
#[derive(Debug, thiserror::Error)]
pub enum ClusterAppendError {
    /// The causation names no event of the cluster and no earlier event
    /// sent with it.
    #[error(
        "causation {0} is neither an event in any partition of the cluster nor the \"id\" of an \
         earlier line (event) sent with it"
    )]
    UnknownCausation(EventId),
    /// The log refused it or could not say (see [`LogError`]).
    #[error(transparent)]
    Log(#[from] LogError),
}

/// The causes already seen (earlier events' ids) and their correlations.
#[derive(Default)]
pub(crate) struct Causes(HashMap<EventId, EventId>);

impl Causes {
    /// Checks `p`'s causation (an earlier event or an event in some
    /// partition) and, without a correlation, inherits the cause's, as the
    /// embedded store does.
    pub(crate) fn settle(
        &mut self,
        log: &NatsLog,
        p: &mut Proposal,
    ) -> Result<(), ClusterAppendError> {
        if let Some(c) = p.causation {
            let correlation = match self.0.get(&c) {
                Some(corr) => *corr,
                None => match log.lookup(c)? {
                    Some((_, e)) => e.header.correlation,
                    None => return Err(ClusterAppendError::UnknownCausation(c)),
                },
            };
            p.correlation.get_or_insert(correlation);
        }
        Ok(())
    }

    /// Appends `p` (its causation settled first) once durable, remembers
    /// its id for later events' causations, and returns its receipt.
    pub(crate) fn append(
        &mut self,
        log: &NatsLog,
        mut p: Proposal,
    ) -> Result<Value, ClusterAppendError> {
        self.settle(log, &mut p)?;
        let done = log.append(&p)?;
        p.id = Some(done.id);
        self.remember(&p);
        Ok(receipt(log, &done, &p))
    }

    /// Records `p`'s id (when it has one) as a cause later events may name.
    pub(crate) fn remember(&mut self, p: &Proposal) {
        if let Some(id) = p.id {
            let corr = p.correlation.unwrap_or(id);
            self.0.insert(id, corr);
        }
    }
}

/// `append` on the cluster at `at`; receipts to `out`, one JSON line each.
///
/// # Errors
/// Bad flags ([`Usage`]), a refused append (typed
/// [`batpak_nats::LogError`]), the cluster unreachable.
pub fn cluster_append(
    at: &ClusterAddress,
    a: AppendArgs,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    if let Some(src) = &a.jsonl {
        return append_jsonl(at, src, out);
    }
    let (_, p) = single_event(a)?;
    let log = open_log(at)?;
    let r = Causes::default().append(&log, p)?;
    writeln!(out, "{r}")?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `append --jsonl` on a cluster: every line checked, then each appended
/// in order (see the module docs for why not all-or-nothing).
fn append_jsonl(at: &ClusterAddress, src: &Path, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let source = Source::new(src)?;
    let name = source.name.clone();
    let log = open_log(at)?;
    // Pass 1: syntax, rules and causes (an earlier line's "id" or an event
    // in some partition), every line; nothing is written.
    let mut errors = Vec::new();
    let mut causes = Causes::default();
    let mut total = 0usize;
    source.for_each_text(|n, text| {
        total += 1;
        let checked = text.and_then(parse_line).and_then(|mut p| {
            causes.settle(&log, &mut p)?;
            causes.remember(&p);
            Ok(())
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
    // Pass 2: in order, each receipt printed once durable.
    let mut causes = Causes::default();
    let mut stored = 0usize;
    let mut result = Ok(());
    source.for_each_text(|n, text| {
        let step = text.and_then(parse_line).and_then(|p| {
            let r = causes.append(&log, p)?;
            writeln!(out, "{r}")?;
            out.flush()?;
            Ok(())
        });
        match step {
            Ok(()) => {
                stored += 1;
                Ok(true)
            }
            Err(e) => {
                result = Err(e.context(format!(
                    "{name}:{n}: not appended; the {stored} line(s) before it are stored (their \
                     receipts are above), the rest were not sent. On a cluster a file is \
                     appended line by line, not as one transaction: lines with an \"id\" or \
                     \"idempotency_key\" can be sent again (de-duplicated within 2 minutes)"
                )));
                Ok(false)
            }
        }
    })?;
    result?;
    Ok(ExitCode::SUCCESS)
}
