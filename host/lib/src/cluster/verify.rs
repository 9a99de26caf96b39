//! `verify` on a cluster: every partition read in full, each record
//! decoded and its hash checked as the codec checks it on every read, and
//! each entity's chain checked as the embedded store checks it (entity
//! sequences 1, 2, 3… with no gap, each event's `prev` naming the previous
//! event's id and hash). Damage is reported per partition, never read
//! around silently; exit 1 when anything is wrong.

use crate::cluster::address::ClusterAddress;
use crate::cluster::connect::open_log;
use crate::cluster::partition_scan::scan_partition;
use batpak_store::{ChainLink, EventId};
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

/// `verify` on the cluster at `at`: one JSON report (`sound`, `events`,
/// `problems`, and per partition the same), exit 1 when not sound.
///
/// # Errors
/// The cluster unreachable or a partition unavailable (the check could
/// not run).
pub fn cluster_verify(at: &ClusterAddress, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let log = open_log(at)?;
    let mut all_problems = Vec::new();
    let mut total = 0u64;
    let mut parts = Vec::new();
    for p in 0..log.layout().partitions {
        let mut problems = Vec::new();
        let mut events = 0u64;
        // Entity → (entity sequence, id, hash) of its last event.
        let mut heads: HashMap<String, (u64, EventId, [u8; 32])> = HashMap::new();
        let mut damaged = Vec::new();
        let last = scan_partition(
            &log,
            p,
            0,
            |e| {
                events += 1;
                let h = &e.header;
                let entity = &h.coordinate.entity;
                let head = heads.get(entity).copied();
                let expected_seq = head.map_or(1, |(s, _, _)| s + 1);
                if h.entity_sequence != expected_seq {
                    problems.push(format!(
                        "partition {p}, sequence {}: entity {entity:?} at entity sequence {} \
                         where {expected_seq} was next (a gap or a fork in its chain)",
                        h.sequence, h.entity_sequence
                    ));
                }
                let expected_prev = head.map(|(_, id, hash)| ChainLink { id, hash });
                if h.prev != expected_prev {
                    problems.push(format!(
                        "partition {p}, sequence {}: event {} of entity {entity:?} does not link \
                         to the entity's previous event (its prev names {}, expected {})",
                        h.sequence,
                        h.id,
                        h.prev.map_or("none".into(), |l| l.id.to_string()),
                        expected_prev.map_or("none".into(), |l| l.id.to_string())
                    ));
                }
                heads.insert(entity.clone(), (h.entity_sequence, h.id, e.hash));
                true
            },
            &mut |d| damaged.push(d.to_string()),
        )?;
        problems.extend(damaged);
        total += events;
        parts.push(json!({
            "partition": p,
            "events": events,
            "last_sequence": last,
            "entities": heads.len(),
            "problems": problems,
        }));
        all_problems.extend(problems);
    }
    let sound = all_problems.is_empty();
    let report = json!({
        "sound": sound,
        "store": at.to_string(),
        "partitions": parts,
        "events": total,
        "problems": all_problems,
        "order": "per partition",
    });
    writeln!(out, "{report}")?;
    out.flush()?;
    if !sound {
        eprintln!(
            "verify: {} problem(s) in the cluster's partitions (listed in the report)",
            report["problems"].as_array().map_or(0, Vec::len)
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
