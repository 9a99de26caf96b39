//! The system records of hot swap, on the reactor's stream: swapped,
//! refused, rolled back. Their payloads are JSON.

use super::outcome::SwapOutcome;
use super::refusal::SwapRefusal;
use crate::capability_gate::{ReactorInfo, REACTOR_STREAM_PREFIX, SYSTEM_SCOPE};
use batpak_store::{Coordinate, EventId, Proposal};
use serde::{Deserialize, Serialize};

pub use batpak_store::system::{ROLLED_BACK_KIND, SWAPPED_KIND, SWAP_REFUSED_KIND};

/// Payload of a `batpak.plugin.swap-refused` record (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapRefusedRecord {
    /// The reactor.
    pub reactor: String,
    /// The running (kept) version's digest.
    pub running_digest: String,
    /// [`SwapRefusal::code`].
    pub code: String,
    /// The full reason.
    pub reason: String,
    /// The offered file, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Payload of a `batpak.plugin.swap-rolled-back` record (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBackRecord {
    /// The reactor.
    pub reactor: String,
    /// The version that failed and was removed.
    pub failed_version: String,
    /// Its digest.
    pub failed_digest: String,
    /// The version restored.
    pub restored_version: String,
    /// Its digest.
    pub restored_digest: String,
    /// Batches the failed version completed before failing.
    pub batches: u32,
    /// Why it was rolled back.
    pub reason: String,
    /// Log position at the rollback (last handled sequence).
    pub position: u64,
}

/// The reactor's system stream, where its swap records go.
fn stream(name: &str) -> Coordinate {
    Coordinate {
        entity: format!("{REACTOR_STREAM_PREFIX}{name}"),
        scope: SYSTEM_SCOPE.to_string(),
    }
}

/// The `batpak.plugin.swapped` record. Its id is derived from the swap (and,
/// for one of several instances, the instance, which the record names), so
/// a retried append after a crash writes it once and two instances swapping
/// at one position each write their own.
pub(crate) fn swapped_proposal(
    outcome: &SwapOutcome,
    new: &ReactorInfo,
    instance: crate::runner::Instance,
) -> Proposal {
    let mut record = serde_json::json!({
            "reactor": outcome.reactor,
            "old_version": outcome.old_version,
            "old_digest": outcome.old_digest,
            "new_version": outcome.new_version,
            "new_digest": outcome.new_digest,
            "position": outcome.position,
            "max_batch": outcome.max_batch,
    });
    let label = instance.label(&outcome.reactor);
    if instance.count > 1 {
        record["instance"] = serde_json::json!({"index": instance.index, "count": instance.count});
    }
    let mut p = Proposal::new(
        stream(&outcome.reactor),
        SWAPPED_KIND,
        serde_json::to_vec(&record).expect("swap record encodes"),
    );
    // `label` is the name for one instance: ids as before instances.
    p.id = Some(EventId::derive(&[
        b"swapped",
        label.as_bytes(),
        outcome.old_digest.as_bytes(),
        outcome.new_digest.as_bytes(),
        &outcome.position.to_le_bytes(),
    ]));
    p.meta = new.lineage();
    p
}

/// The `batpak.plugin.swap-refused` record.
pub(crate) fn refused_proposal(running: &ReactorInfo, refusal: &SwapRefusal) -> Proposal {
    let path = match refusal {
        SwapRefusal::Unloadable { path, .. } | SwapRefusal::UnsupportedWit { path, .. } => {
            Some(path.display().to_string())
        }
        _ => None,
    };
    let rec = SwapRefusedRecord {
        reactor: running.name.clone(),
        running_digest: running.digest.clone(),
        code: refusal.code().to_string(),
        reason: refusal.to_string(),
        path,
    };
    let mut p = Proposal::new(
        stream(&running.name),
        SWAP_REFUSED_KIND,
        serde_json::to_vec(&rec).expect("refusal record encodes"),
    );
    p.meta = running.lineage();
    p
}

/// The `batpak.plugin.swap-rolled-back` record.
pub(crate) fn rolled_back_proposal(rec: &RolledBackRecord, restored: &ReactorInfo) -> Proposal {
    let mut p = Proposal::new(
        stream(&rec.reactor),
        ROLLED_BACK_KIND,
        serde_json::to_vec(rec).expect("rollback record encodes"),
    );
    p.id = Some(EventId::derive(&[
        b"rolled-back",
        rec.reactor.as_bytes(),
        rec.failed_digest.as_bytes(),
        &rec.position.to_le_bytes(),
    ]));
    p.meta = restored.lineage();
    p
}
