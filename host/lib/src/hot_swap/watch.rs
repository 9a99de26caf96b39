//! `run --watch`: notices when a plugin file is replaced, added or removed
//! (through the notify crate, not a polling loop) and turns it into a hot
//! swap, a new runner, or a stopped runner.
//!
//! The watcher thread debounces bursts per file (editors and build tools
//! write several times, or write a new file and rename it over the old) and
//! waits until the file stops changing. The supervisor then compiles it on a
//! worker thread — the old version keeps serving, and `status` shows the
//! swap pending — and swaps it in at a batch boundary.

use notify::{RecursiveMode, Watcher};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

/// How long a file must be quiet before it is looked at.
const QUIET: Duration = Duration::from_millis(120);
/// A file renamed into place is complete (rename is atomic): it is looked at
/// after this much, unless it is written to again meanwhile.
const RENAMED: Duration = Duration::from_millis(3);

/// What the watcher found, for the run loop to act on.
pub enum Change {
    /// A watched file was written (or renamed into place) and has settled:
    /// complete, to be loaded.
    Settled {
        /// The file (absolute).
        path: PathBuf,
    },
    /// A watched file is gone.
    Removed {
        /// The file.
        path: PathBuf,
    },
}

/// The running watcher; dropping it stops watching.
pub struct PluginWatcher {
    _watcher: notify::RecommendedWatcher,
    /// Changes, in the order they settled.
    pub changes: Receiver<Change>,
}

/// True for the file names `run` loads as plugins.
pub fn is_plugin_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("wasm") | Some("wat")
    )
}

/// Absolute form of `p` (files may be gone, so no canonicalize of the file).
pub fn absolute(p: &Path) -> PathBuf {
    let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir
        .map(|d| d.canonicalize().unwrap_or_else(|_| d.to_path_buf()))
        .unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
    match p.file_name() {
        Some(n) => dir.join(n),
        None => dir,
    }
}

impl PluginWatcher {
    /// Watches `files` (each a plugin file) and `dirs` (every plugin file in
    /// them, including new ones).
    ///
    /// # Errors
    /// The OS watcher cannot be set up on one of the directories.
    pub fn start(files: &[PathBuf], dirs: &[PathBuf]) -> anyhow::Result<PluginWatcher> {
        let (raw_tx, raw_rx) = std::sync::mpsc::channel::<notify::Result<notify::Event>>();
        let mut watcher = notify::recommended_watcher(raw_tx)?;
        let files: Vec<PathBuf> = files.iter().map(|f| absolute(f)).collect();
        let dirs: Vec<PathBuf> = dirs
            .iter()
            .map(|d| d.canonicalize().unwrap_or_else(|_| d.clone()))
            .collect();
        // A file replaced by rename gets a new inode: watch its directory.
        let mut watched: Vec<PathBuf> = dirs.clone();
        for f in &files {
            if let Some(d) = f.parent() {
                if !watched.iter().any(|w| w == d) {
                    watched.push(d.to_path_buf());
                }
            }
        }
        for d in &watched {
            watcher
                .watch(d, RecursiveMode::NonRecursive)
                .map_err(|e| anyhow::anyhow!("--watch: cannot watch {}: {e}", d.display()))?;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("plugin-watcher".into())
            .spawn(move || settle(raw_rx, files, dirs, tx))?;
        Ok(PluginWatcher {
            _watcher: watcher,
            changes: rx,
        })
    }
}

/// The watcher thread: collects raw events per file, and once a file has
/// been quiet for [`QUIET`] and its size is stable, reports it settled.
fn settle(
    raw: Receiver<notify::Result<notify::Event>>,
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    out: Sender<Change>,
) {
    let wanted = |p: &Path| -> bool {
        is_plugin_file(p)
            && (files.iter().any(|f| f == p)
                || p.parent().is_some_and(|d| dirs.iter().any(|w| w == d)))
    };
    // Per file: when it is due, and whether it arrived by rename (complete).
    let mut pending: HashMap<PathBuf, (Instant, bool)> = HashMap::new();
    loop {
        let wait = pending
            .values()
            .map(|(t, _)| t.saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(Duration::from_secs(3600));
        match raw.recv_timeout(wait) {
            Ok(Ok(ev)) => {
                if matches!(ev.kind, notify::EventKind::Access(_)) {
                    continue;
                }
                use notify::event::{ModifyKind, RenameMode};
                let renamed = matches!(
                    ev.kind,
                    notify::EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
                );
                for p in ev.paths {
                    let p = absolute(&p);
                    if wanted(&p) {
                        // With `Both`, paths are [from, to]: only `to` is due.
                        let entry = if renamed {
                            (Instant::now() + RENAMED, true)
                        } else {
                            (Instant::now() + QUIET, false)
                        };
                        pending.insert(p, entry);
                    }
                }
            }
            Ok(Err(e)) => eprintln!("warning: --watch: {e}"),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        let due: Vec<(PathBuf, bool)> = pending
            .iter()
            .filter(|(_, (t, _))| *t <= now)
            .map(|(p, (_, r))| (p.clone(), *r))
            .collect();
        for (p, renamed) in due {
            pending.remove(&p);
            let change = match std::fs::metadata(&p) {
                Err(_) => Change::Removed { path: p.clone() },
                Ok(m) => {
                    // Still growing: look again once it is quiet. (A file
                    // renamed into place was complete before the rename.)
                    if !renamed {
                        std::thread::sleep(Duration::from_millis(20));
                        if std::fs::metadata(&p).map(|n| n.len()).ok() != Some(m.len()) {
                            pending.insert(p, (Instant::now() + QUIET, false));
                            continue;
                        }
                    }
                    Change::Settled { path: p.clone() }
                }
            };
            if out.send(change).is_err() {
                return;
            }
        }
    }
}

/// The plugin files to load and, with `watch`, the directories to watch for
/// new ones: a directory stands for the plugin files in it.
///
/// # Errors
/// A directory without `watch` (the message says to add `--watch`), or a
/// directory that cannot be read.
pub fn expand_plugin_args(
    plugins: &[PathBuf],
    watch: bool,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), String> {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for p in plugins {
        if p.is_dir() {
            if !watch {
                return Err(format!(
                    "{} is a directory; pass plugin files, or add --watch to run every plugin file in it",
                    p.display()
                ));
            }
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("reading {}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && is_plugin_file(f))
                .collect();
            found.sort();
            files.extend(found);
            dirs.push(p.clone());
        } else {
            files.push(p.clone());
        }
    }
    Ok((files, dirs))
}
