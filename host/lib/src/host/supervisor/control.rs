//! The handle other threads use to operate the supervisor's reactors, and
//! the requests it sends; each call has a deadline.

use crate::control_error::ControlError;
use crate::hot_swap::pending_op::Reply;
use crate::views::ReactorView;
use batpak_runtime::SwapOutcome;
use batpak_store::{ReactorRunState, Store};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Duration;

/// How long a listing may take (the supervisor answers it between two ticks).
pub const LIST_DEADLINE: Duration = Duration::from_secs(10);
/// How long a stop may take: the runner finishes its batch in flight, which
/// a plugin's timeouts and retries can stretch. Past it the stop goes on
/// and `status` shows it.
pub const STOP_DEADLINE: Duration = Duration::from_secs(60);
/// How long a swap or a start may take: compiling the plugin (a Python
/// component takes tens of seconds cold) and, for a swap, the next batch
/// boundary. Past it the work goes on and `status` shows it.
pub const LOAD_DEADLINE: Duration = Duration::from_secs(300);

pub(super) enum Request {
    List(Reply<Vec<ReactorView>>),
    Add(PathBuf, Reply<ReactorView>),
    Stop(String, Reply<ReactorView>),
    Start(String, Reply<ReactorView>),
    Swap(String, PathBuf, Reply<SwapOutcome>),
    Shutdown,
}

/// A handle other threads use to operate the running reactors. Cheap to
/// clone; every call blocks until the supervisor has answered it, at most
/// for the call's deadline.
#[derive(Clone)]
pub struct Control {
    pub(super) tx: Sender<Request>,
    pub(super) store: Store,
}

#[allow(dead_code)] // The control channel (local socket, HTTP) calls these.
impl Control {
    pub(super) fn call<T>(
        &self,
        what: impl FnOnce() -> String,
        deadline: Duration,
        make: impl FnOnce(Reply<T>) -> Request,
    ) -> Result<T, ControlError> {
        let (tx, rx) = mpsc::channel();
        self.tx.send(make(tx)).map_err(|_| ControlError::Gone)?;
        match rx.recv_timeout(deadline) {
            Ok(r) => r,
            Err(RecvTimeoutError::Disconnected) => Err(ControlError::Gone),
            Err(RecvTimeoutError::Timeout) => Err(ControlError::TimedOut {
                what: what(),
                after: deadline,
            }),
        }
    }

    /// The store the reactors run against (appends, reads and parked-event
    /// queries need no round trip through the supervisor).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Every reactor, in the order they were started.
    pub fn reactors(&self) -> Result<Vec<ReactorView>, ControlError> {
        self.call(
            || "listing the reactors".into(),
            LIST_DEADLINE,
            Request::List,
        )
    }

    /// Stops reactor `name` after its batch in flight (checkpoint committed).
    /// Stopping a reactor an operator stopped already is not an error.
    pub fn stop(&self, name: &str) -> Result<ReactorView, ControlError> {
        self.call(
            || format!("stopping reactor {name} (its batch in flight)"),
            STOP_DEADLINE,
            |r| Request::Stop(name.to_string(), r),
        )
    }

    /// Starts stopped reactor `name` again, reloading its plugin file.
    pub fn start(&self, name: &str) -> Result<ReactorView, ControlError> {
        self.call(
            || format!("starting reactor {name} (compiling its plugin)"),
            LOAD_DEADLINE,
            |r| Request::Start(name.to_string(), r),
        )
    }

    /// Hot swap: loads `path` beside running reactor `name` and swaps it in
    /// at the next batch boundary, with the operator's config re-read.
    /// Returns where it was swapped (the log position) and the old and new
    /// version and digest; the listing then shows the swap.
    ///
    /// # Errors
    /// [`ControlError::Swap`] with the typed refusal (a file that does not
    /// load, another name, region or canal, a reactor that does not run);
    /// [`ControlError::UnknownReactor`]; [`ControlError::TimedOut`] when it
    /// takes longer than [`LOAD_DEADLINE`] (the swap stays pending).
    pub fn swap(&self, name: &str, path: &Path) -> Result<SwapOutcome, ControlError> {
        self.call(
            || format!("swapping reactor {name} to {}", path.display()),
            LOAD_DEADLINE,
            |r| Request::Swap(name.to_string(), path.to_path_buf(), r),
        )
    }

    /// Every reactor as it is now (the same as [`Control::reactors`]).
    pub fn status(&self) -> Result<Vec<ReactorView>, ControlError> {
        self.reactors()
    }

    /// Pauses reactor `name` at a batch boundary: its checkpoint keeps the
    /// position ([`Control::stop`]).
    pub fn pause(&self, name: &str) -> Result<ReactorView, ControlError> {
        self.stop(name)
    }

    /// Resumes paused reactor `name` from its checkpoint
    /// ([`Control::start`]).
    pub fn resume(&self, name: &str) -> Result<ReactorView, ControlError> {
        self.start(name)
    }

    /// Starts a new reactor from the plugin file `path` (compiled off the
    /// supervisor's thread, configured by `--plugin-config`); returns its
    /// view once it runs.
    ///
    /// # Errors
    /// [`ControlError::Load`] for a file that does not load,
    /// [`ControlError::NameTaken`] when a reactor of that name runs here,
    /// [`ControlError::TimedOut`] past [`LOAD_DEADLINE`].
    pub fn add(&self, path: &Path) -> Result<ReactorView, ControlError> {
        self.call(
            || format!("adding a reactor from {}", path.display()),
            LOAD_DEADLINE,
            |r| Request::Add(path.to_path_buf(), r),
        )
    }

    /// Moves paused reactor `name`'s checkpoint to `to`, recorded as a
    /// `batpak.reactor.reset` event.
    ///
    /// # Errors
    /// [`ControlError::MustPause`] while it runs,
    /// [`ControlError::NoCheckpoint`] for a lossy subscription,
    /// [`ControlError::Reset`] when the store refuses the move.
    pub fn reset(
        &self,
        name: &str,
        to: batpak_service::ResetTo,
    ) -> Result<batpak_service::ResetOutcome, ControlError> {
        let v = self
            .reactors()?
            .into_iter()
            .find(|v| v.label() == name)
            .ok_or_else(|| ControlError::UnknownReactor(name.to_string()))?;
        if v.lossy {
            return Err(ControlError::NoCheckpoint(name.to_string()));
        }
        if !v.paused
            && matches!(
                v.state,
                ReactorRunState::Starting | ReactorRunState::Running
            )
        {
            return Err(ControlError::MustPause(name.to_string()));
        }
        let instance = v
            .instance
            .map_or_else(batpak_runtime::Instance::default, |i| {
                batpak_runtime::Instance {
                    index: i.index,
                    count: i.count,
                }
            });
        batpak_service::reset_checkpoint(
            &self.store,
            &v.name,
            &instance.cursor_id(&v.name),
            // The slot's region is its instance's shard.
            v.region.fingerprint(),
            to,
        )
        .map_err(ControlError::Reset)
    }

    /// Asks for the same clean shutdown as Ctrl-C (returns at once).
    pub fn shutdown(&self) {
        let _ = self.tx.send(Request::Shutdown);
    }
}
