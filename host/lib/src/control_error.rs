//! Why a request to the running host's supervisor was refused: one typed
//! error shared by the supervisor and the work it runs off its thread.

use batpak_runtime::SwapRefusal;
use std::path::PathBuf;
use std::time::Duration;

/// Why a control request was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No reactor has this name.
    #[error("no reactor named {0:?} runs here")]
    UnknownReactor(String),
    /// A bare reactor name where the reactor runs as several instances
    /// (pause, resume, stop, start and reset act on one instance).
    #[error("reactor {name} runs as {} instances; name one: {}", instances.len(), instances.join(", "))]
    Instances {
        /// The reactor name.
        name: String,
        /// Its instances' names (`name#index/count`).
        instances: Vec<String>,
    },
    /// `start` on a reactor that runs.
    #[error("reactor {0} is already running")]
    AlreadyRunning(String),
    /// `stop` on a reactor that does not run.
    #[error("reactor {0} is not running")]
    NotRunning(String),
    /// Another stop or start of this reactor is in progress.
    #[error("reactor {name}: a {pending} is in progress; wait for it (`batpak-host status` shows it), then try again")]
    Busy {
        /// The reactor.
        name: String,
        /// What is in progress, in words.
        pending: String,
    },
    /// The new plugin names another reactor.
    #[error("plugin {path} is reactor {found}, not {expected}; the name keys the checkpoint")]
    WrongReactor {
        /// The file.
        path: PathBuf,
        /// The reactor asked for.
        expected: String,
        /// The reactor the file is.
        found: String,
    },
    /// Loading, checking or initialising the plugin failed.
    #[error("{0}")]
    Load(String),
    /// The runner could not be started (its cursor does not open, …).
    #[error("{0}")]
    Spawn(String),
    /// The swap was refused (recorded as `batpak.plugin.swap-refused` when
    /// the reactor runs); the running version keeps serving.
    #[error(transparent)]
    Swap(#[from] SwapRefusal),
    /// The answer did not come within the call's deadline. The work goes
    /// on in the host (`status` shows it as pending).
    #[error("{what} did not finish within {} s; it goes on in the host: `batpak-host status` shows what it waits for", after.as_secs())]
    TimedOut {
        /// What was asked, in words.
        what: String,
        /// The deadline.
        after: Duration,
    },
    /// A reactor of that name already runs here (each reactor needs its own
    /// name: it keys the checkpoint).
    #[error("reactor {name} already runs from {}; each reactor needs its own name", path.display())]
    NameTaken {
        /// The name.
        name: String,
        /// The file it runs from.
        path: PathBuf,
    },
    /// A reset of a reactor that reads a lossy subscription.
    #[error("reactor {0} reads a lossy subscription, which has no checkpoint to reset")]
    NoCheckpoint(String),
    /// A reset of a reactor that runs.
    #[error(
        "reactor {0} is running; `batpak-host pause {0}` first, then reset, then `resume {0}`"
    )]
    MustPause(String),
    /// The store refused the checkpoint move.
    #[error(transparent)]
    Reset(batpak_service::OpError),
    /// The supervisor has shut down.
    #[error("the supervisor has shut down")]
    Gone,
}
