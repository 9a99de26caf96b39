//! The one thread that runs tokio for the client. Callers stay synchronous:
//! each operation is a future spawned onto this thread's current-thread
//! runtime, and the caller blocks on a channel for its result. Nothing
//! async leaves this crate.

use std::future::Future;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// The dedicated client thread. Dropping it stops the runtime (open
/// connections close) and joins the thread.
pub struct Driver {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The driver thread has stopped (it panicked).
#[derive(Debug)]
pub struct DriverGone;

impl Driver {
    /// Starts the thread (named `batpak-nats`).
    pub fn start() -> std::io::Result<Driver> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("batpak-nats".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Driver {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `fut` on the driver thread and waits for its output. Bound the
    /// wait inside `fut` (every caller in this crate wraps it in a timeout).
    pub fn run<F, T>(&self, fut: F) -> Result<T, DriverGone>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| DriverGone)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
