//! Hot swap: replacing a running reactor by a new version between two
//! batches, without losing or repeating an event.
//!
//! The runner keeps its canal (cursor and checkpoint) and only exchanges the
//! reactor behind it, so the new version continues exactly where the old one
//! stopped. Reaction ids are derived from (reactor name, source event,
//! ordinal) — not from the version — so a batch redelivered after a crash in
//! the middle of a swap still cannot be appended twice.
//!
//! Every decision is recorded on the reactor's stream (`reactor:<name>`,
//! scope `batpak`): [`SWAPPED_KIND`], [`SWAP_REFUSED_KIND`] and
//! [`ROLLED_BACK_KIND`], so the log itself says which version produced what.

use super::admission::{Admission, ReactorInfo, REACTOR_STREAM_PREFIX, SYSTEM_SCOPE};
use super::bindings::WIT_PACKAGE;
use super::engine::Runtime;
use super::log::LogLevel;
use super::plugin::PluginSettings;
use super::reactor::{Descriptor, HostServices, ReactFailure, Reactor};
use super::runner::{admission_for, batch_limit, RunnerHandle, Worker};
use batpak_store::{AppendOptions, Coordinate, EventId, Proposal};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::Arc;

/// Kind of the record of a completed swap.
pub const SWAPPED_KIND: &str = "batpak.plugin.swapped";
/// Kind of the record of a refused swap (the old version keeps running).
pub const SWAP_REFUSED_KIND: &str = "batpak.plugin.swap-refused";
/// Kind of the record of an automatic rollback (`--swap-rollback`).
pub const ROLLED_BACK_KIND: &str = "batpak.plugin.swap-rolled-back";

/// Why a swap was refused. The running version is untouched in every case.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SwapRefusal {
    /// The new file could not be loaded as a reactor of this host: unreadable,
    /// not a component, a WIT version this host does not offer, a failed
    /// `describe`/`init`, or a file still being written.
    #[error("plugin {path}: cannot be loaded: {reason}; the running version keeps serving")]
    Unloadable {
        /// The file offered.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The new file targets a version of the reactor WIT this host does not
    /// offer.
    #[error("plugin {path}: it targets {found}, but this host offers {supported}; rebuild it against {supported}. The running version keeps serving")]
    UnsupportedWit {
        /// The file offered.
        path: PathBuf,
        /// The package it targets (`batpak:reactor@x.y.z`).
        found: String,
        /// The package this host offers.
        supported: String,
    },
    /// The new version has another reactor name (the name keys the checkpoint).
    #[error("cannot replace reactor {running} with reactor {offered}: the name keys the checkpoint; load it as a plugin of its own instead")]
    NameMismatch {
        /// The running reactor.
        running: String,
        /// The name the new version declares.
        offered: String,
    },
    /// The new version reads another region, so the old checkpoint does not
    /// continue into it.
    #[error("reactor {name}: the new version reads another region ({offered}) than the running one ({running}); its checkpoint would not continue. Give it a new name to start a new cursor")]
    RegionChanged {
        /// The reactor.
        name: String,
        /// The running region, readable.
        running: String,
        /// The offered region, readable.
        offered: String,
    },
    /// The new version asks for another canal (cursor vs. lossy subscription).
    #[error("reactor {name}: the new version asks for another canal ({offered}) than the running one ({running}); a swap keeps the canal")]
    CanalChanged {
        /// The reactor.
        name: String,
        /// The running canal.
        running: String,
        /// The offered canal.
        offered: String,
    },
    /// No runner of that name is running (stopped, failed, or never started).
    #[error("reactor {name} is not running; start it with `run` instead of swapping")]
    NotRunning {
        /// The reactor.
        name: String,
    },
    /// Another swap was asked for before this one was picked up; the later
    /// request wins.
    #[error("reactor {name}: superseded by a later swap request before the next batch boundary")]
    Superseded {
        /// The reactor.
        name: String,
    },
    /// The record of the swap could not be appended, so the swap was not
    /// made (the log must say which version produced what).
    #[error("reactor {name}: the swap record could not be appended ({reason}); keeping the running version")]
    NotRecorded {
        /// The reactor.
        name: String,
        /// The store error.
        reason: String,
    },
}

impl SwapRefusal {
    /// Stable lowercase code, recorded in `batpak.plugin.swap-refused`.
    pub fn code(&self) -> &'static str {
        match self {
            SwapRefusal::Unloadable { .. } => "unloadable",
            SwapRefusal::UnsupportedWit { .. } => "unsupported-wit",
            SwapRefusal::NameMismatch { .. } => "name-mismatch",
            SwapRefusal::RegionChanged { .. } => "region-changed",
            SwapRefusal::CanalChanged { .. } => "canal-changed",
            SwapRefusal::NotRunning { .. } => "not-running",
            SwapRefusal::Superseded { .. } => "superseded",
            SwapRefusal::NotRecorded { .. } => "not-recorded",
        }
    }
}

/// A completed swap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapOutcome {
    /// The reactor.
    pub reactor: String,
    /// Version that was running.
    pub old_version: String,
    /// Its component digest.
    pub old_digest: String,
    /// Version now running.
    pub new_version: String,
    /// Its component digest (stamped on every reaction from now on).
    pub new_digest: String,
    /// Log position of the swap: the last sequence the old version handled
    /// (its checkpoint); the new version handles everything after it.
    pub position: u64,
    /// Largest batch the new version gets (its own `max_batch` applies).
    pub max_batch: usize,
    /// Id of the `batpak.plugin.swapped` record.
    pub record: String,
}

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

/// Checks that `new` can continue `old`'s checkpoint: same name, same
/// region, same canal. (The WIT version was checked when `new` was loaded.)
///
/// # Errors
/// The first rule broken.
pub fn check_swap(old: &Descriptor, new: &Descriptor) -> Result<(), SwapRefusal> {
    if old.name != new.name {
        return Err(SwapRefusal::NameMismatch {
            running: old.name.clone(),
            offered: new.name.clone(),
        });
    }
    if old.region != new.region {
        return Err(SwapRefusal::RegionChanged {
            name: old.name.clone(),
            running: format!("{:?}", old.region),
            offered: format!("{:?}", new.region),
        });
    }
    if old.canal != new.canal {
        return Err(SwapRefusal::CanalChanged {
            name: old.name.clone(),
            running: format!("{:?}", old.canal),
            offered: format!("{:?}", new.canal),
        });
    }
    Ok(())
}

fn stream(name: &str) -> Coordinate {
    Coordinate {
        entity: format!("{REACTOR_STREAM_PREFIX}{name}"),
        scope: SYSTEM_SCOPE.to_string(),
    }
}

/// The `batpak.plugin.swapped` record. Its id is derived from the swap, so a
/// retried append after a crash writes it once.
pub(crate) fn swapped_proposal(outcome: &SwapOutcome, new: &ReactorInfo) -> Proposal {
    let mut p = Proposal::new(
        stream(&outcome.reactor),
        SWAPPED_KIND,
        serde_json::to_vec(&serde_json::json!({
            "reactor": outcome.reactor,
            "old_version": outcome.old_version,
            "old_digest": outcome.old_digest,
            "new_version": outcome.new_version,
            "new_digest": outcome.new_digest,
            "position": outcome.position,
            "max_batch": outcome.max_batch,
        }))
        .expect("swap record encodes"),
    );
    p.id = Some(EventId::derive(&[
        b"swapped",
        outcome.reactor.as_bytes(),
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

/// A swap request on its way to the runner.
pub(crate) struct PendingSwap {
    pub(crate) reactor: Box<dyn Reactor>,
    pub(crate) grant_emits: Option<Vec<String>>,
    pub(crate) reply: Sender<Result<SwapOutcome, SwapRefusal>>,
}

/// The replaced version, kept while the new one is on probation.
pub(crate) struct Probation {
    reactor: Box<dyn Reactor>,
    admission: Arc<Admission>,
    grant_emits: Option<Vec<String>>,
    max_batch: usize,
    /// Batches the new version completed.
    done: u32,
}

impl Worker {
    /// Runs the checks, records the swap and exchanges the reactor. Called
    /// at a batch boundary with the old version's checkpoint written.
    pub(crate) fn apply_swap(
        &mut self,
        mut next: Box<dyn Reactor>,
        grant_emits: Option<Vec<String>>,
        position: u64,
    ) -> Result<SwapOutcome, SwapRefusal> {
        let running = self.admission.info.clone();
        let refuse = |w: &mut Worker, r: SwapRefusal| {
            w.log(LogLevel::Warn, &format!("swap refused: {r}"));
            let _ = w.store.append_system(
                vec![refused_proposal(&running, &r)],
                AppendOptions::durable(),
            );
            Err(r)
        };
        if let Err(r) = check_swap(self.reactor.descriptor(), next.descriptor()) {
            return refuse(self, r);
        }
        let mut settings = self.settings.clone();
        settings.grant_emits = grant_emits;
        let admission = Arc::new(admission_for(next.as_ref(), &settings));
        let max_batch = batch_limit(&settings, next.descriptor());
        let outcome = SwapOutcome {
            reactor: running.name.clone(),
            old_version: running.version.clone(),
            old_digest: running.digest.clone(),
            new_version: next.descriptor().version.clone(),
            new_digest: next.digest().to_string(),
            position,
            max_batch,
            record: String::new(),
        };
        let record = swapped_proposal(&outcome, &admission.info);
        let outcome = SwapOutcome {
            record: record.id.map(|i| i.to_string()).unwrap_or_default(),
            ..outcome
        };
        // Recorded before the first batch of the new version: every
        // reaction after this record carries the new digest.
        if let Err(e) = self
            .store
            .append_system(vec![record], AppendOptions::durable())
        {
            return refuse(
                self,
                SwapRefusal::NotRecorded {
                    name: running.name.clone(),
                    reason: e.to_string(),
                },
            );
        }
        next.attach(HostServices {
            store: self.store.clone(),
            admission: admission.clone(),
        });
        self.log(
            LogLevel::Info,
            &format!(
                "swapped version {} ({}) for version {} ({}) after sequence {position}; max batch {max_batch}",
                outcome.old_version,
                short(&outcome.old_digest),
                outcome.new_version,
                short(&outcome.new_digest),
            ),
        );
        let old = std::mem::replace(&mut self.reactor, next);
        let old_admission = std::mem::replace(&mut self.admission, admission);
        let old_grant = std::mem::replace(&mut self.settings.grant_emits, settings.grant_emits);
        let old_max = std::mem::replace(&mut self.max_batch, max_batch);
        self.previous = (self.settings.swap_rollback > 0).then(|| Probation {
            reactor: old,
            admission: old_admission,
            grant_emits: old_grant,
            max_batch: old_max,
            done: 0,
        });
        self.publish_current();
        Ok(outcome)
    }

    fn publish_current(&mut self) {
        *self.current.lock() = self.admission.info.clone();
        *self.current_descriptor.lock() = self.reactor.descriptor().clone();
        self.status.set_version(&self.reactor.descriptor().version);
    }

    /// Counts a completed batch of a version on probation; past
    /// `swap_rollback` batches the replaced version is dropped.
    pub(crate) fn probation_tick(&mut self) {
        if let Some(p) = &mut self.previous {
            p.done += 1;
            if p.done >= self.settings.swap_rollback {
                self.previous = None;
            }
        }
    }

    /// A failure of a version on probation: restores the replaced version
    /// and records why. Returns false (nothing done) outside probation; the
    /// caller then handles the failure as usual, and otherwise hands the
    /// failing events to the restored version.
    pub(crate) fn roll_back_on(&mut self, failure: &ReactFailure) -> anyhow::Result<bool> {
        let Some(p) = self.previous.take() else {
            return Ok(false);
        };
        let failed = self.admission.info.clone();
        let rec = RolledBackRecord {
            reactor: failed.name.clone(),
            failed_version: failed.version.clone(),
            failed_digest: failed.digest.clone(),
            restored_version: p.admission.info.version.clone(),
            restored_digest: p.admission.info.digest.clone(),
            batches: p.done,
            reason: failure.to_string(),
            position: self.position(),
        };
        self.store
            .append_system(
                vec![rolled_back_proposal(&rec, &p.admission.info)],
                AppendOptions::durable(),
            )
            .map_err(anyhow::Error::new)?;
        self.log(
            LogLevel::Warn,
            &format!(
                "rolled back version {} ({}) to version {} ({}) after {} batch(es): {}",
                rec.failed_version,
                short(&rec.failed_digest),
                rec.restored_version,
                short(&rec.restored_digest),
                rec.batches,
                rec.reason
            ),
        );
        self.reactor = p.reactor;
        self.admission = p.admission;
        self.settings.grant_emits = p.grant_emits;
        self.max_batch = p.max_batch;
        // The restored instance may have been mid-state; start it fresh.
        self.reactor.reset();
        self.publish_current();
        Ok(true)
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

/// Loads `path` and swaps it in for `handle`'s running version: the one call
/// behind `run --watch` and the `swap` command. `settings_for` chooses the
/// new version's settings once `describe` has named it (re-read the config
/// there); `grant_emits` is the operator's grant for it.
///
/// # Errors
/// A [`SwapRefusal`] (recorded and logged): the file does not load, or the
/// checks of [`RunnerHandle::swap`] fail.
pub fn swap_file(
    rt: &Runtime,
    handle: &RunnerHandle,
    path: &Path,
    base: PluginSettings,
    settings_for: impl FnMut(&Descriptor) -> anyhow::Result<PluginSettings>,
    grant_emits: Option<Vec<String>>,
) -> Result<SwapOutcome, SwapRefusal> {
    let plugin = match rt.load_plugin_with(path, base, settings_for) {
        Ok(p) => p,
        Err(e) => {
            let r = unloadable(path, format!("{e:#}"));
            handle.record_refusal(&r);
            return Err(r);
        }
    };
    handle.swap(Box::new(plugin), grant_emits)
}

/// The refusal for a file that did not load: [`SwapRefusal::UnsupportedWit`]
/// when the file names another version of the reactor WIT package in its
/// imports or exports, [`SwapRefusal::Unloadable`] with `reason` otherwise.
/// Decided from the file's own bytes (the interface names a component
/// carries), not from the load error's text.
pub fn unloadable(path: &Path, reason: String) -> SwapRefusal {
    let found = std::fs::read(path)
        .ok()
        .and_then(|bytes| targeted_wit(&bytes));
    match found {
        Some(found) if found != WIT_PACKAGE => SwapRefusal::UnsupportedWit {
            path: path.to_path_buf(),
            found,
            supported: WIT_PACKAGE.to_string(),
        },
        _ => SwapRefusal::Unloadable {
            path: path.to_path_buf(),
            reason,
        },
    }
}

/// `batpak:reactor@<version>` as named by the first `batpak:reactor/...@`
/// interface name in a component (binary or text).
fn targeted_wit(bytes: &[u8]) -> Option<String> {
    const NEEDLE: &[u8] = b"batpak:reactor/";
    let at = bytes.windows(NEEDLE.len()).position(|w| w == NEEDLE)?;
    let rest = &bytes[at + NEEDLE.len()..];
    let name_end = rest.iter().position(|&b| b == b'@')?;
    if name_end > 64
        || !rest[..name_end]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    {
        return None;
    }
    let version: Vec<u8> = rest[name_end + 1..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'.' || **b == b'-' || **b == b'+')
        .copied()
        .take(64)
        .collect();
    if version.is_empty() {
        return None;
    }
    Some(format!(
        "batpak:reactor@{}",
        String::from_utf8_lossy(&version)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use batpak_store::{ReactorCanal, Region};

    #[test]
    fn the_targeted_wit_version_is_read_from_the_interface_names() {
        assert_eq!(
            targeted_wit(b"..\x1abatpak:reactor/reactor@0.9.0\x00.."),
            Some("batpak:reactor@0.9.0".into())
        );
        assert_eq!(
            targeted_wit(b"(import \"batpak:reactor/types@0.1.0\" (instance"),
            Some(WIT_PACKAGE.to_string())
        );
        assert_eq!(targeted_wit(b"\0asm garbage"), None);
    }

    #[test]
    fn swap_checks_name_region_and_canal() {
        let old = Descriptor::new("inv", "1");
        let mut new = Descriptor::new("inv", "2");
        new.max_batch = 7;
        new.emits = vec!["a.b".into()];
        assert_eq!(check_swap(&old, &new), Ok(()));
        let other = Descriptor::new("other", "2");
        assert_eq!(
            check_swap(&old, &other).unwrap_err().code(),
            "name-mismatch"
        );
        let mut region = Descriptor::new("inv", "2");
        region.region = Region::all().kinds(["x.y"]);
        assert_eq!(
            check_swap(&old, &region).unwrap_err().code(),
            "region-changed"
        );
        let mut canal = Descriptor::new("inv", "2");
        canal.canal = ReactorCanal::LossySubscription;
        assert_eq!(
            check_swap(&old, &canal).unwrap_err().code(),
            "canal-changed"
        );
    }
}
