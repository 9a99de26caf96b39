//! [`Optimisation`]: the Cranelift compile of a component that is served
//! by baseline (Winch) code meanwhile, on a background thread.
//!
//! The result goes through the compile cache like any compile, so the next
//! load of the same component is a cache hit on optimised code; baseline
//! code is never written to the cache. The plugin polls for the result at
//! each batch boundary ([`Optimisation::poll`]) and moves to it there.

use super::log::{log, LogLevel};
use super::runtime::Runtime;
use parking_lot::{Condvar, Mutex};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::Component;

/// The outcome of the background compile: the optimised component and how
/// long compiling it took, or wasmtime's message.
pub(crate) type Optimised = Result<(Component, Duration), String>;

/// One component's optimised compile, running or finished.
pub(crate) struct Optimisation {
    result: Mutex<Option<Optimised>>,
    ready: Condvar,
}

impl Optimisation {
    /// Starts compiling `bytes` (digest `digest`, read from `path`) with
    /// the runtime's optimising engine on a background thread. The runtime
    /// waits for the thread before it goes away, so the result reaches the
    /// cache even when the process stops soon after the load.
    pub(crate) fn start(
        rt: &Runtime,
        path: &Path,
        digest: String,
        bytes: Vec<u8>,
    ) -> Arc<Optimisation> {
        let o = Arc::new(Optimisation {
            result: Mutex::new(None),
            ready: Condvar::new(),
        });
        let engine = rt.engine().clone();
        let cache = rt.cache().cloned();
        let file = path.display().to_string();
        let done = o.clone();
        let work = move || {
            let started = Instant::now();
            let r = match &cache {
                Some(c) => c
                    .load_or_compile(&engine, &digest, &bytes)
                    .map(|(c, _, took)| (c, took)),
                None => Component::new(&engine, &bytes).map(|c| (c, started.elapsed())),
            }
            .map_err(|e| format!("{e:#}"));
            match &r {
                Ok((_, took)) => log(
                    LogLevel::Info,
                    LogLevel::Info,
                    "compile",
                    &format!(
                        "optimised code of {file} ready after {:.1} s (Cranelift, on a background thread){}; its reactor moves to it at the next batch boundary",
                        took.as_secs_f64(),
                        if cache.is_some() { ", written to the compile cache" } else { "" }
                    ),
                ),
                Err(e) => log(
                    LogLevel::Warn,
                    LogLevel::Warn,
                    "compile",
                    &format!("the optimised compile of {file} failed: {e}; its reactor keeps running on baseline code"),
                ),
            }
            *done.result.lock() = Some(r);
            done.ready.notify_all();
        };
        if let Err(e) = rt.spawn_background("batpak-optimise", Box::new(work)) {
            *o.result.lock() = Some(Err(format!(
                "cannot start the optimising compile thread: {e}"
            )));
        }
        o
    }

    /// The result, once the compile has finished (`None` while it runs).
    pub(crate) fn poll(&self) -> Option<Optimised> {
        self.result.lock().clone()
    }

    /// Waits at most `timeout` for the compile to finish; true when it has.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut r = self.result.lock();
        while r.is_none() {
            if self.ready.wait_until(&mut r, deadline).timed_out() {
                break;
            }
        }
        r.is_some()
    }
}
