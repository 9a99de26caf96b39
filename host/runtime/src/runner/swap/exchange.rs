//! Hot swap on the runner thread: picking up a request at a batch
//! boundary, checking and recording it, exchanging the reactor, and rolling
//! a failing new version back while it is on probation (`swap_rollback`).

use super::pending::Probation;
use super::{
    check_swap, refused_proposal, rolled_back_proposal, swapped_proposal, RolledBackRecord,
    SwapOutcome, SwapRefusal,
};
use crate::failure::ReactFailure;
use crate::log::LogLevel;
use crate::reactor::Reactor;
use crate::runner::error::RunnerError;
use crate::runner::feed::Feed;
use crate::runner::settings::batch_limit;
use crate::runner::worker::{admission_for, Worker};
use crate::services::HostServices;
use batpak_log::Commit;
use std::sync::Arc;

impl Worker {
    /// Picks up a replacement reactor handed over by
    /// [`RunnerHandle::swap`](crate::RunnerHandle::swap) and answers it.
    pub(in crate::runner) fn take_swap(&mut self) -> Result<(), RunnerError> {
        let Some(pending) = self.swap.lock().take() else {
            return Ok(());
        };
        // The old version's last output is committed, and its checkpoint
        // written, before the new version sees anything.
        self.save_checkpoint()?;
        let position = self.position();
        let result = self.apply_swap(pending.reactor, pending.grant_emits, position);
        if let Ok(o) = &result {
            *self.last_swap.lock() = Some((o.clone(), std::time::SystemTime::now()));
            // A rollback shown from now on is this swap's.
            *self.last_rollback.lock() = None;
        }
        let _ = pending.reply.send(result);
        Ok(())
    }

    /// The last sequence this runner handled (its checkpoint).
    pub(in crate::runner) fn position(&self) -> u64 {
        match &self.feed {
            Feed::Cursor(_) => self.covered,
            Feed::Lossy(_) => self.log.heads().durable,
        }
    }

    /// Runs the checks, records the swap and exchanges the reactor. Called
    /// at a batch boundary with the old version's checkpoint written.
    pub(in crate::runner) fn apply_swap(
        &mut self,
        mut next: Box<dyn Reactor>,
        grant_emits: Option<Vec<String>>,
        position: u64,
    ) -> Result<SwapOutcome, SwapRefusal> {
        let running = self.admission.info.clone();
        let refuse = |w: &mut Worker, r: SwapRefusal| {
            w.log(LogLevel::Warn, &format!("swap refused: {r}"));
            let _ = w.land(
                Commit::records(vec![refused_proposal(&running, &r)]),
                || "recording the swap refusal".into(),
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
        let record = swapped_proposal(&outcome, &admission.info, settings.instance);
        let outcome = SwapOutcome {
            record: record.id.map(|i| i.to_string()).unwrap_or_default(),
            ..outcome
        };
        // Recorded before the first batch of the new version: every
        // reaction after this record carries the new digest.
        if let Err(e) = self.land(Commit::records(vec![record]), || {
            "recording the swap".into()
        }) {
            return refuse(
                self,
                SwapRefusal::NotRecorded {
                    name: running.name.clone(),
                    reason: match e {
                        RunnerError::Commit { source, .. } => source.to_string(),
                        e => e.to_string(),
                    },
                },
            );
        }
        next.attach(HostServices {
            log: self.log.clone(),
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
    pub(in crate::runner) fn probation_tick(&mut self) {
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
    pub(in crate::runner) fn roll_back_on(
        &mut self,
        failure: &ReactFailure,
    ) -> Result<bool, RunnerError> {
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
        self.land(
            Commit::records(vec![rolled_back_proposal(&rec, &p.admission.info)]),
            || "recording the rollback".into(),
        )?;
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
        *self.last_rollback.lock() = Some((rec, std::time::SystemTime::now()));
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
