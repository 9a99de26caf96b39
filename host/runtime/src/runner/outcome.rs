//! One `react` call and its judgement: the reactions admitted or denied by
//! the gates, with their verdicts for the reactor.

use super::shape::check_shape;
use super::worker::Worker;
use crate::admission::Judged;
use crate::failure::{FailureKind, ReactFailure};
use crate::log::LogLevel;
use crate::reaction::ReactionVerdict;
use batpak_store::{EventView, Proposal};

/// What one successful `react` call turned into.
pub(super) struct Outcome {
    pub(super) proposals: Vec<Proposal>,
    pub(super) verdicts: Vec<ReactionVerdict>,
    pub(super) reactions: u64,
    pub(super) denials: u64,
}

impl Worker {
    /// Calls `react` and judges its output. Any failure resets the reactor.
    pub(super) fn attempt(&mut self, events: &[EventView]) -> Result<Outcome, ReactFailure> {
        // A native reactor that panics is contained like a wasm trap.
        let called =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.reactor.react(events)));
        let reactions = match called {
            Ok(Ok(r)) => r,
            Ok(Err(f)) => {
                self.reactor.reset();
                return Err(f);
            }
            Err(p) => {
                self.reactor.reset();
                let msg = batpak_store::panic_message(p.as_ref());
                return Err(ReactFailure::new(
                    FailureKind::Trap,
                    format!("the reactor panicked: {msg}"),
                ));
            }
        };
        if let Err(f) = check_shape(&reactions, events.len()) {
            self.reactor.reset();
            return Err(f);
        }
        let mut ordinals = vec![0u32; events.len()];
        let mut out = Outcome {
            proposals: Vec::with_capacity(reactions.len()),
            verdicts: Vec::with_capacity(reactions.len()),
            reactions: 0,
            denials: 0,
        };
        for (i, r) in reactions.into_iter().enumerate() {
            let s = r.source as usize;
            let ordinal = ordinals[s];
            ordinals[s] += 1;
            match self.admission.judge(&*self.log, r, &events[s], ordinal) {
                Judged::Admitted(p) => {
                    out.verdicts.push(ReactionVerdict {
                        reaction: i as u32,
                        denial: None,
                        appended: p.id,
                    });
                    out.proposals.push(p);
                    out.reactions += 1;
                }
                Judged::Denied { denial, record } => {
                    self.log(
                        LogLevel::Info,
                        &format!(
                            "proposal {i} (reacting to event {}) denied: {denial}",
                            events[s].id()
                        ),
                    );
                    out.verdicts.push(ReactionVerdict {
                        reaction: i as u32,
                        denial: Some(denial),
                        appended: None,
                    });
                    out.proposals.push(record);
                    out.denials += 1;
                }
            }
        }
        Ok(out)
    }
}
