//! [`spawn`] and the [`RunnerHandle`]: starting a runner thread, stopping
//! it, handing it a replacement reactor, and collecting its result.

use super::error::{RunnerError, SwapError};
use super::settings::{cursor_id, RunnerSettings};
use super::worker::{admission_for, Feed, Worker};
use crate::reactor::Reactor;
use crate::services::HostServices;
use crate::status::ReactorStatus;
use batpak_store::{CanalHandle, Cursor, ReactorCanal, Store, Subscription};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Handle to a running reactor. Implements [`CanalHandle`]: `stop` lets the
/// batch in flight finish and commits the checkpoint; `join` waits.
pub struct RunnerHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), RunnerError>>>,
    status: Arc<ReactorStatus>,
    swap: Arc<Mutex<Option<Box<dyn Reactor>>>>,
    name: String,
}

impl std::fmt::Debug for RunnerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerHandle")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RunnerHandle {
    /// The runner's live counters.
    pub fn status(&self) -> &Arc<ReactorStatus> {
        &self.status
    }

    /// The reactor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True once the thread has exited.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Hands the runner a replacement reactor, picked up between two batches
    /// (the position stays where it is). The name and region must match.
    ///
    /// # Errors
    /// [`SwapError::OtherName`] when the replacement has another name (a
    /// replacement with another region or canal is refused, and logged, when
    /// the runner picks it up).
    pub fn swap(&self, reactor: Box<dyn Reactor>) -> Result<(), SwapError> {
        if reactor.descriptor().name != self.name {
            return Err(SwapError::OtherName {
                running: self.name.clone(),
                offered: reactor.descriptor().name.clone(),
            });
        }
        *self.swap.lock() = Some(reactor);
        Ok(())
    }

    fn join_inner(&mut self) -> Result<(), RunnerError> {
        match self.thread.take() {
            None => Ok(()),
            Some(t) => match t.join() {
                Ok(r) => r,
                Err(p) => {
                    let msg = batpak_store::panic_message(p.as_ref());
                    Err(RunnerError::Panicked {
                        reactor: self.name.clone(),
                        message: msg.to_string(),
                    })
                }
            },
        }
    }
}

impl CanalHandle for RunnerHandle {
    type Error = RunnerError;

    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn join(mut self: Box<Self>) -> Result<(), RunnerError> {
        self.join_inner()
    }

    fn stop_and_join(mut self: Box<Self>) -> Result<(), RunnerError> {
        self.stop.store(true, Ordering::SeqCst);
        self.join_inner()
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.join_inner();
    }
}

/// Starts a runner thread for `reactor` over `store`.
///
/// The canal is opened here, so a checkpoint that no longer fits the
/// reactor's region is reported at once.
///
/// # Errors
/// An invalid descriptor, a cursor that cannot be opened, or a thread that
/// cannot be started.
pub fn spawn(
    store: &Store,
    mut reactor: Box<dyn Reactor>,
    settings: RunnerSettings,
) -> Result<RunnerHandle, RunnerError> {
    let d = reactor.descriptor().clone();
    d.validate().map_err(RunnerError::InvalidDescriptor)?;
    let feed = match d.canal {
        ReactorCanal::CursorGuaranteed => Feed::Cursor(
            Cursor::open(store, &cursor_id(&d.name), d.region.clone()).map_err(|source| {
                RunnerError::OpenCursor {
                    reactor: d.name.clone(),
                    source,
                }
            })?,
        ),
        ReactorCanal::LossySubscription => Feed::Lossy(Subscription::new(
            store,
            d.region.clone(),
            settings.subscription_capacity.max(1),
        )),
    };
    let admission = Arc::new(admission_for(reactor.as_ref(), &settings));
    reactor.attach(HostServices {
        store: store.clone(),
        admission: admission.clone(),
    });
    let status = Arc::new(ReactorStatus::new(
        &d.name,
        &d.version,
        d.canal == ReactorCanal::LossySubscription,
    ));
    if let Feed::Cursor(c) = &feed {
        status.set_position(c.position());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let swap: Arc<Mutex<Option<Box<dyn Reactor>>>> = Arc::new(Mutex::new(None));
    let max_batch = match d.max_batch {
        0 => settings.max_batch,
        n => settings.max_batch.min(n as usize),
    }
    .max(1);
    let worker = Worker {
        store: store.clone(),
        reactor,
        admission,
        feed,
        max_batch,
        settings,
        status: status.clone(),
        stop: stop.clone(),
        swap: swap.clone(),
        unsaved: None,
        unsaved_batches: 0,
        last_commit: Instant::now(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("reactor-{}", d.name))
        .spawn({
            let status = status.clone();
            let name = d.name.clone();
            move || {
                // A panic in the runner (a bug, or a native reactor's) must
                // still mark it failed, or `--until-idle` would wait on it.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run())) {
                    Ok(r) => r,
                    Err(p) => {
                        let msg = batpak_store::panic_message(p.as_ref());
                        status.fail(format!("panicked: {msg}"));
                        Err(RunnerError::Panicked {
                            reactor: name,
                            message: msg.to_string(),
                        })
                    }
                }
            }
        })
        .map_err(RunnerError::Thread)?;
    Ok(RunnerHandle {
        stop,
        thread: Some(thread),
        status,
        swap,
        name: d.name,
    })
}
