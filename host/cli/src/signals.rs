//! Ctrl-C / SIGTERM / SIGHUP for `run`, handled from its first moment.
//!
//! While plugins load nothing has been started and the store is not open, so
//! a signal ends the process at once with exit 0 and a message (compiling a
//! large component can take a while; nobody should wait for it). Once the
//! store is being opened, the first signal asks the supervisor to finish the
//! batches in flight, commit and exit 0; a second one exits at once with 130
//! (everything committed so far is safe: commits are atomic).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Once;

const LOADING: u8 = 0;
const RUNNING: u8 = 1;

static PHASE: AtomicU8 = AtomicU8::new(LOADING);
static STOP: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Installs the handler (once per process) and enters the loading phase.
pub(crate) fn install() {
    PHASE.store(LOADING, Ordering::SeqCst);
    STOP.store(false, Ordering::SeqCst);
    INSTALL.call_once(|| {
        if let Err(e) = ctrlc::set_handler(on_signal) {
            eprintln!("warning: cannot handle Ctrl-C/SIGTERM ({e}); a signal ends `run` at once");
        }
    });
}

/// From now on a signal asks for a clean stop instead of exiting.
pub(crate) fn enter_running() {
    PHASE.store(RUNNING, Ordering::SeqCst);
}

/// True once a stop was asked for.
pub(crate) fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

fn on_signal() {
    // ctrlc runs this on its own thread, not in signal context: printing and
    // exiting are safe here.
    if PHASE.load(Ordering::SeqCst) == LOADING {
        eprintln!("run: stopped by a signal while loading plugins; nothing was started");
        std::process::exit(0);
    }
    if STOP.swap(true, Ordering::SeqCst) {
        eprintln!("run: second signal; exiting now (everything committed so far is safe)");
        std::process::exit(130);
    }
}
