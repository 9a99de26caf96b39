//! Hot swap, the supervisor's part: a swap asked for (by a command or a
//! watched file) is compiled off the supervisor's thread, handed to the
//! runner once it runs, and answered when the runner took it at a batch
//! boundary; a refusal is recorded on the reactor's stream (or logged).

use super::core::Supervisor;
use crate::control_error::ControlError;
use crate::hot_swap::pending_op::{answer, file_size, Compiled, HandedSwap, Origin, Reply, SwapOp};
use crate::hot_swap::watch::absolute;
use batpak_runtime::{LoadError, LogLevel, SwapOutcome, SwapRefusal};
use std::path::Path;
use std::time::{Duration, Instant};

impl Supervisor {
    /// Hot swap: compiles `path` (config re-read) off this thread for
    /// running reactor `name` and hands it over at the next batch boundary;
    /// `reply` gets the outcome (see [`Control::swap`]). A swap still
    /// compiling for the reactor is superseded by this one.
    pub(super) fn request_swap(
        &mut self,
        name: &str,
        path: &Path,
        origin: Origin,
        reply: Option<Reply<SwapOutcome>>,
    ) {
        let i = match self.slot(name) {
            Ok(i) => i,
            Err(ControlError::Instances { instances, .. }) => {
                // A reactor run as several instances: every instance swaps,
                // each at its own batch boundary; `reply` gets the first
                // instance's outcome, the others are logged and listed.
                let mut reply = reply;
                for label in instances {
                    self.request_swap(&label, path, origin, reply.take());
                }
                return;
            }
            Err(e) => {
                answer(reply, Err(e));
                return;
            }
        };
        if !self.slots[i].running() && self.slots[i].life.is_none() {
            let r = SwapRefusal::NotRunning {
                name: name.to_string(),
            };
            if let Some(reply) = reply {
                let _ = reply.send(Err(r.into()));
            } else {
                self.loader.log(LogLevel::Warn, &r.to_string());
            }
            return;
        }
        let job = match self.compile(path) {
            Ok(j) => j,
            Err(e) => {
                answer(reply, Err(e));
                return;
            }
        };
        let op = SwapOp {
            job,
            file: path.to_path_buf(),
            bytes: file_size(path),
            since: Instant::now(),
            origin,
            ready: None,
            took: Duration::ZERO,
            reply,
        };
        if let Some(old) = self.slots[i].swap.replace(op) {
            self.refuse_swap(
                i,
                old.reply,
                SwapRefusal::Superseded {
                    name: name.to_string(),
                },
            );
        }
    }

    /// Records (when the reactor runs) or logs refusal `r` and answers it.
    pub(super) fn refuse_swap(&self, i: usize, reply: Option<Reply<SwapOutcome>>, r: SwapRefusal) {
        match self.slots[i].handle.as_ref().filter(|h| !h.is_finished()) {
            Some(h) => h.record_refusal(&r),
            None => self
                .loader
                .log(LogLevel::Warn, &format!("swap refused: {r}")),
        }
        answer(reply, Err(r.into()));
    }

    pub(super) fn on_swap_compiled(&mut self, i: usize, c: Compiled) {
        let mut op = self.slots[i].swap.take().expect("checked by the caller");
        op.took = c.took;
        match c.result {
            Err(e) => {
                let r = load_refusal(&c.path, &e);
                self.refuse_swap(i, op.reply, r);
            }
            Ok(mut loaded) => {
                loaded.path = c.path;
                if op.origin == Origin::Watch
                    && self.slots[i].digest() == loaded.plugin.component_digest()
                {
                    // Touched, not changed.
                    return;
                }
                op.ready = Some(Box::new(loaded));
                self.slots[i].swap = Some(op);
                self.hand_over(i);
            }
        }
    }

    /// A compiled swap goes to the runner once it runs (a start in progress
    /// is waited for); a reactor that does not run refuses it.
    pub(super) fn hand_over(&mut self, i: usize) {
        let slot = &self.slots[i];
        if slot.swap.as_ref().is_none_or(|op| op.ready.is_none()) || slot.life.is_some() {
            return;
        }
        let mut op = self.slots[i].swap.take().expect("checked above");
        let loaded = *op.ready.take().expect("checked above");
        let Some(h) = self.slots[i].handle.as_ref().filter(|h| !h.is_finished()) else {
            let name = self.slots[i].name.clone();
            if op.origin == Origin::Watch && self.slots[i].removed && loaded.name() == name {
                // Put back while its removal stopped it: started again
                // from its checkpoint (every instance, each with a fresh
                // plugin instance).
                let path = loaded.path.clone();
                let others: Vec<usize> = (0..self.slots.len())
                    .filter(|&j| j != i && self.slots[j].name == name && self.slots[j].removed)
                    .collect();
                for j in others {
                    let fresh =
                        loaded
                            .plugin
                            .fresh()
                            .map(|plugin| crate::plugins::loader::Loaded {
                                plugin,
                                path: loaded.path.clone(),
                                settings: loaded.settings.clone(),
                            });
                    let label = self.slots[j].label();
                    match fresh
                        .map_err(|e| ControlError::Spawn(e.to_string()))
                        .and_then(|l| self.restart_with(j, l))
                    {
                        Ok(()) => self.loader.log(
                            LogLevel::Info,
                            &format!("started reactor {label} again from {}", path.display()),
                        ),
                        Err(e) => self.loader.log(
                            LogLevel::Error,
                            &format!("reactor {label} not started: {e}"),
                        ),
                    }
                }
                match self.restart_with(i, loaded) {
                    Ok(()) => self.loader.log(
                        LogLevel::Info,
                        &format!("started reactor {name} again from {}", path.display()),
                    ),
                    Err(e) => self
                        .loader
                        .log(LogLevel::Error, &format!("reactor {name} not started: {e}")),
                }
                return;
            }
            return self.refuse_swap(i, op.reply, SwapRefusal::NotRunning { name });
        };
        let grant = loaded.settings.grant_emits.clone();
        match h.request_swap(Box::new(loaded.plugin), grant) {
            // Recorded and logged by the runtime.
            Err(r) => {
                answer(op.reply, Err(r.into()));
            }
            Ok(ticket) => self.slots[i].handed.push(HandedSwap {
                ticket,
                file: loaded.path,
                bytes: op.bytes,
                since: op.since,
                origin: op.origin,
                took: op.took,
                reply: op.reply,
            }),
        }
    }

    /// Swaps handed to slot `i`'s runner: answers those it has taken.
    pub(super) fn poll_handed(&mut self, i: usize) {
        while let Some(first) = self.slots[i].handed.first() {
            let result = match self.slots[i].handle.as_ref() {
                Some(h) => match h.poll_swap(&first.ticket) {
                    Some(r) => r,
                    None => return,
                },
                None => Err(SwapRefusal::NotRunning {
                    name: self.slots[i].name.clone(),
                }),
            };
            let done = self.slots[i].handed.remove(0);
            // A refusal is recorded and logged by the runtime.
            if let Ok(outcome) = &result {
                let slot = &mut self.slots[i];
                slot.path = done.file.clone();
                slot.digest = outcome.new_digest.clone();
                let from = match (done.origin, &slot.watched) {
                    (Origin::Command, Some(w)) if absolute(&done.file) != *w => format!(
                        "; {} stays watched: a new file there swaps again",
                        w.display()
                    ),
                    _ => String::new(),
                };
                self.loader.log(
                    LogLevel::Info,
                    &format!(
                        "swapped reactor {} {} -> {} at position {} (loaded in {:.1} ms){from}",
                        slot.label(),
                        outcome.old_version,
                        outcome.new_version,
                        outcome.position,
                        done.took.as_secs_f64() * 1e3,
                    ),
                );
            }
            answer(done.reply, result.map_err(ControlError::from));
        }
    }
}

/// The refusal for a plugin file that did not load: typed from the
/// runtime's [`LoadError`] when there is one (another WIT version is
/// [`SwapRefusal::UnsupportedWit`]).
fn load_refusal(path: &Path, e: &anyhow::Error) -> SwapRefusal {
    match e.downcast_ref::<LoadError>() {
        Some(le) => batpak_runtime::refusal_for(path, le),
        None => SwapRefusal::Unloadable {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        },
    }
}
