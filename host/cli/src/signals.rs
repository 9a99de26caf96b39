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
/// `run` has returned (the demo goes on printing): a signal ends the
/// process as it would without a handler.
const DONE: u8 = 2;

static PHASE: AtomicU8 = AtomicU8::new(DONE);
static STOP: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Installs the handler (once per process) and enters the loading phase,
/// until the returned guard drops.
#[must_use = "signals are handled while the guard lives"]
pub(crate) fn install() -> Scope {
    PHASE.store(LOADING, Ordering::SeqCst);
    STOP.store(false, Ordering::SeqCst);
    INSTALL.call_once(|| {
        if let Err(e) = ctrlc::set_handler(on_signal) {
            eprintln!("warning: cannot handle Ctrl-C/SIGTERM ({e}); a signal ends `run` at once");
        }
    });
    Scope(())
}

/// While it lives, signals are `run`'s; dropping it hands them back.
pub(crate) struct Scope(());

impl Drop for Scope {
    fn drop(&mut self) {
        PHASE.store(DONE, Ordering::SeqCst);
    }
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
    match PHASE.load(Ordering::SeqCst) {
        LOADING => {
            eprintln!("run: stopped by a signal while loading plugins; nothing was started");
            std::process::exit(0);
        }
        DONE => std::process::exit(130),
        _ => {}
    }
    if STOP.swap(true, Ordering::SeqCst) {
        eprintln!("run: second signal; exiting now (everything committed so far is safe)");
        std::process::exit(130);
    }
}
