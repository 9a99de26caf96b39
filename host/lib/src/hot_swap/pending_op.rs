//! Work the supervisor has started for a reactor and not finished: a swap
//! (compiling the new file on a worker thread, then waiting for the runner's
//! next batch boundary), a start (compiling) or a stop (waiting for the batch
//! in flight). The supervisor polls them between two ticks, so it never
//! waits on a compile or a batch itself and `status` can say what each one
//! waits for.

use crate::plugins::loader::{Loaded, Loader};
use crate::views::human_bytes;
use crate::views::{PendingView, ReactorView};
use batpak_runtime::{SwapOutcome, SwapTicket};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::control_error::ControlError;

/// Where a control request's answer goes.
pub type Reply<T> = Sender<Result<T, ControlError>>;

/// Sends `result` to whoever asked, if anyone did: work started by the
/// watcher or at start-up has no one waiting, and a requester that gave up
/// waiting (its receiver dropped) is not an error.
pub fn answer<T>(reply: Option<Reply<T>>, result: Result<T, ControlError>) {
    if let Some(r) = reply {
        let _ = r.send(result);
    }
}

/// A plugin file compiled (or refused) on a worker thread.
pub struct Compiled {
    /// The job it answers.
    pub job: u64,
    /// The file.
    pub path: PathBuf,
    /// The plugin, loaded with the config re-read, or why not.
    pub result: anyhow::Result<Loaded>,
    /// How long loading took.
    pub took: Duration,
}

/// Loads `path` with `loader` (the config re-read) on a thread of its own
/// and sends the result, tagged `job`, to `done`.
///
/// # Errors
/// The thread could not be started.
pub fn compile_off_thread(
    loader: &Loader,
    job: u64,
    path: &Path,
    done: Sender<Compiled>,
) -> std::io::Result<()> {
    let mut loader = loader.clone();
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("plugin-compile".into())
        .spawn(move || {
            let started = Instant::now();
            let result = loader.load_fresh(&path);
            // The supervisor may have shut down meanwhile: nothing to do.
            let _ = done.send(Compiled {
                job,
                path,
                result,
                took: started.elapsed(),
            });
        })
        .map(|_| ())
}

/// Who asked for a swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `batpak-host swap` (through the control channel).
    Command,
    /// `run --watch`: the watched file changed.
    Watch,
}

/// A swap being compiled, or compiled and waiting for the reactor to run.
pub struct SwapOp {
    pub job: u64,
    pub file: PathBuf,
    pub bytes: u64,
    pub since: Instant,
    pub origin: Origin,
    /// `None` while compiling; the plugin once compiled, while the reactor
    /// is being started (it is handed over once it runs).
    pub ready: Option<Box<Loaded>>,
    pub took: Duration,
    pub reply: Option<Reply<SwapOutcome>>,
}

/// A swap handed to the runner, waiting for its next batch boundary.
pub struct HandedSwap {
    pub ticket: SwapTicket,
    pub file: PathBuf,
    pub bytes: u64,
    /// When it was asked for (compile included).
    pub since: Instant,
    pub origin: Origin,
    pub took: Duration,
    pub reply: Option<Reply<SwapOutcome>>,
}

/// A stop or start in progress.
pub enum LifeOp {
    /// The runner was told to stop and finishes its batch in flight.
    Stopping {
        since: Instant,
        /// The watched file was removed (putting it back starts it).
        removed: bool,
        replies: Vec<Reply<ReactorView>>,
    },
    /// The plugin file is being compiled to start the reactor again.
    Starting {
        job: u64,
        file: PathBuf,
        bytes: u64,
        since: Instant,
        replies: Vec<Reply<ReactorView>>,
    },
}

impl PendingView {
    fn new(
        action: &'static str,
        file: Option<&Path>,
        bytes: Option<u64>,
        waiting_for: &'static str,
        since: Instant,
    ) -> PendingView {
        let waited = since.elapsed();
        let name = file
            .map(|f| {
                f.file_name()
                    .map_or_else(|| f.display().to_string(), |n| n.to_string_lossy().into())
            })
            .unwrap_or_default();
        let what = match (action, waiting_for) {
            (_, "compiling") => format!(
                "compiling {}",
                bytes.map(human_bytes).unwrap_or_else(|| "?".into())
            ),
            (_, w) => format!("waiting for {w}"),
        };
        let head = match action {
            "swap" => format!("swap to {name}"),
            "start" => format!("start from {name}"),
            a => a.to_string(),
        };
        PendingView {
            action,
            file: file.map(Path::to_path_buf),
            bytes,
            waiting_for,
            for_ms: waited.as_millis() as u64,
            text: format!("{head}: {what}, {} s", waited.as_secs()),
        }
    }

    /// What a swap op waits for.
    pub fn of_swap(op: &SwapOp) -> PendingView {
        let waiting = if op.ready.is_some() {
            "the reactor to start"
        } else {
            "compiling"
        };
        PendingView::new("swap", Some(&op.file), Some(op.bytes), waiting, op.since)
    }

    /// What a swap handed to the runner waits for.
    pub fn of_handed(h: &HandedSwap) -> PendingView {
        PendingView::new(
            "swap",
            Some(&h.file),
            Some(h.bytes),
            "a batch boundary",
            h.since,
        )
    }

    /// What a stop or start waits for.
    pub fn of_life(op: &LifeOp) -> PendingView {
        match op {
            LifeOp::Stopping { since, .. } => {
                PendingView::new("stop", None, None, "the batch in flight", *since)
            }
            LifeOp::Starting {
                file, bytes, since, ..
            } => PendingView::new("start", Some(file), Some(*bytes), "compiling", *since),
        }
    }
}

/// Size of `path` in bytes (0 when it cannot be read: the load says why).
pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_compile_says_what_and_how_big() {
        let v = PendingView::new(
            "swap",
            Some(Path::new("/p/big.wasm")),
            Some(18_200_000),
            "compiling",
            Instant::now() - Duration::from_secs(9),
        );
        assert_eq!(v.text, "swap to big.wasm: compiling 18.2 MB, 9 s");
        let v = PendingView::new(
            "swap",
            Some(Path::new("/p/big.wasm")),
            Some(1),
            "a batch boundary",
            Instant::now(),
        );
        assert_eq!(
            v.text,
            "swap to big.wasm: waiting for a batch boundary, 0 s"
        );
    }
}
