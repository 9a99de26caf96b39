//! `run --watch`, the supervisor's part: what the plugin watcher settled
//! is applied between two ticks — a replaced file is swapped in, a new file
//! starts its reactor, a removed file stops it (checkpoint kept).

use super::core::Supervisor;
use crate::hot_swap::pending_op::{LifeOp, Origin};
use crate::hot_swap::watch::{absolute, Change, PluginWatcher};
use crate::plugins::loader::Loaded;
use batpak_runtime::{LogLevel, SwapRefusal};
use std::path::{Path, PathBuf};

impl Supervisor {
    /// `run --watch`: watches `files` and the plugin files in `dirs`; what
    /// settles is applied between two ticks of [`run`](Self::run), and the
    /// run no longer ends when every reactor has. Each reactor started from
    /// one of `files` keeps that file as its watched source.
    ///
    /// # Errors
    /// A directory cannot be watched.
    pub fn watch(&mut self, files: &[PathBuf], dirs: &[PathBuf]) -> anyhow::Result<()> {
        let watched: Vec<PathBuf> = files.iter().map(|f| absolute(f)).collect();
        for s in &mut self.slots {
            let p = absolute(&s.path);
            if watched.contains(&p) {
                s.watched = Some(p);
            }
        }
        self.watcher = Some(PluginWatcher::start(files, dirs)?);
        Ok(())
    }

    /// The slot whose watched file (or, without one, whose file) is `path`.
    pub(super) fn slot_watching(&self, path: &Path) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.watched.as_deref() == Some(path))
            .or_else(|| {
                self.slots
                    .iter()
                    .position(|s| s.watched.is_none() && absolute(&s.path) == path)
            })
    }

    /// Acts on one settled change of a watched file: swap, start or stop.
    pub(super) fn apply(&mut self, change: Change) {
        match change {
            Change::Removed { path } => {
                let Some(i) = self.slot_watching(&path) else {
                    return;
                };
                // Stops at a batch boundary and writes the checkpoint, so
                // putting the file back resumes where it was.
                // Every instance of the reactor stops.
                let name = self.slots[i].name.clone();
                let labels: Vec<String> = self
                    .slots
                    .iter()
                    .filter(|s| s.name == name && s.running())
                    .map(|s| s.label())
                    .collect();
                for label in labels {
                    self.request_stop(&label, None, true);
                }
            }
            Change::Settled { path } => self.apply_settled(path),
        }
    }

    pub(super) fn apply_settled(&mut self, path: PathBuf) {
        let Some(i) = self.slot_watching(&path) else {
            // A new file: compiled, then started unless its name is taken.
            if let Ok(job) = self.compile(&path) {
                self.new_files.retain(|(_, p, r)| *p != path || r.is_some());
                self.new_files.push((job, path, None));
            }
            return;
        };
        let slot = &mut self.slots[i];
        slot.watched = Some(path.clone());
        let name = slot.name.clone();
        if slot.running() || matches!(slot.life, Some(LifeOp::Starting { .. })) {
            return self.request_swap(&name, &path, Origin::Watch, None);
        }
        if slot.stopped_by_operator && !slot.removed {
            // Started from the watched file when the operator starts it.
            slot.path = path.clone();
            self.loader.log(
                LogLevel::Info,
                &format!(
                    "{} changed; reactor {name} was stopped by the operator and runs it when started",
                    path.display()
                ),
            );
            return;
        }
        // Put back after a removal (or changed after the reactor ended):
        // started again from its checkpoint — every instance of it.
        let labels: Vec<String> = self
            .slots
            .iter_mut()
            .filter(|s| s.name == name && !s.running())
            .map(|s| {
                s.path = path.clone();
                s.label()
            })
            .collect();
        for label in labels {
            self.request_start(&label, None);
        }
    }

    /// `run --watch`: a new file compiled: its reactor starts, unless the
    /// name is taken (refused, and recorded on that reactor's stream).
    pub(super) fn start_new_file(&mut self, loaded: Loaded) {
        let path = loaded.path.clone();
        let name = loaded.name().to_string();
        if let Some(j) = self.slots.iter().position(|s| s.name == name) {
            let r = SwapRefusal::Unloadable {
                path: path.clone(),
                reason: format!(
                    "reactor {name} already runs from {}; each reactor needs its own name",
                    self.slots[j]
                        .watched
                        .as_deref()
                        .unwrap_or(&self.slots[j].path)
                        .display()
                ),
            };
            return self.refuse_swap(j, None, r);
        }
        match self.add(loaded) {
            Ok(()) => {
                if let Some(s) = self.slots.last_mut() {
                    s.watched = Some(path.clone());
                }
                self.loader.log(
                    LogLevel::Info,
                    &format!("started reactor {name} from new file {}", path.display()),
                )
            }
            Err(e) => self.loader.log(
                LogLevel::Error,
                &format!("new plugin {} not started: {e:#}", path.display()),
            ),
        }
    }
}
