//! [`SwapRefusal`]: why a swap was refused, typed so callers can match.

use std::path::PathBuf;

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
    /// continue into it. The message names both regions and the fix the
    /// README gives: re-key the checkpoint with `reset --plugin` while the
    /// host is stopped, then start the new version.
    #[error("reactor {name}: the new version reads {offered}, the running one {running}; a swap keeps the checkpoint, which belongs to the old region, so it was refused. To change the region, stop `run`, then `batpak-host reset {name} --to current --plugin NEW.wasm` (continue from the current position) or `--to start` (re-deliver the new region's history), and start `run` with the new version")]
    RegionChanged {
        /// The reactor.
        name: String,
        /// The running region, readable (see [`describe_region`](crate::describe_region)).
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
