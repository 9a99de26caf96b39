//! The durability protocol: the progress watermarks, who waits for them and
//! how they are woken, and fail-stop.
//!
//! Appenders wait for `visible` (condvar) or `durable` (parked threads, each
//! unparked exactly when `durable` covers it: a condvar `notify_all` woke all
//! of them on every fsync, and with many appenders on few cores those
//! wake-ups that find nothing to do were the cost, not the disk). Once the
//! store fails (an I/O error, a panicking thread, a replaced LOCK file) it is
//! *poisoned*: every waiter wakes with that error and no write is attempted
//! again until the store is reopened — after a failed fsync the page cache
//! can no longer be trusted to say what is on disk (PostgreSQL's lesson).

use super::disk::DiskFile;
use super::durable_mark::Position;
use super::StoreError;
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::Instant;

/// Watermarks and waiters, under one lock.
pub(crate) struct State {
    pub written: u64,
    /// Where the last written frame ends.
    pub written_pos: Position,
    pub visible: u64,
    pub durable: u64,
    pub durable_requested: u64,
    pub poisoned: Option<String>,
    pub sync_file: Arc<dyn DiskFile>,
    pub unsynced_since: Option<Instant>,
    pub shutdown: bool,
    /// Appenders waiting for `durable` to reach a sequence.
    pub durable_waiters: Vec<(u64, Thread)>,
    /// The sync thread sleeps with a deadline (the `sync_interval` timer):
    /// it wakes by itself, so a written frame nobody waits for need not
    /// wake it.
    pub sync_timed: bool,
}

impl State {
    /// Removes and returns the durable waiters that can stop waiting: those
    /// covered by `durable`, or all of them once the store failed or shut
    /// down. Unpark them after releasing the state lock, so they do not wake
    /// only to block on it.
    pub fn take_done_waiters(&mut self) -> Vec<Thread> {
        let all = self.poisoned.is_some() || self.shutdown;
        let durable = self.durable;
        let mut done = Vec::new();
        self.durable_waiters.retain(|(s, t)| {
            let keep = !all && *s > durable;
            if !keep {
                done.push(t.clone());
            }
            keep
        });
        done
    }

    /// Whether a request or a written frame should wake the sync thread:
    /// there is something to sync and someone waits for it, or the sync
    /// thread sleeps without a deadline and must start its timer.
    pub fn sync_should_wake(&self) -> bool {
        self.written > self.durable && (self.durable_requested > self.durable || !self.sync_timed)
    }
}

/// Wakes parked durable waiters.
pub(crate) fn unpark_all(threads: Vec<Thread>) {
    for t in threads {
        t.unpark();
    }
}

/// Why a wait for progress ended without it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// The store was closed.
    Closed,
    /// The store failed (poisoned), with why.
    Failed(String),
}

/// The shared progress state of one open store.
pub(crate) struct Durability {
    pub state: Mutex<State>,
    /// Highest sequence handed to the writer.
    pub accepted: AtomicU64,
    /// Set when the store failed because its LOCK file was lost.
    pub lock_lost: AtomicBool,
    /// Signalled when `visible` advances or the store fails or closes.
    pub visible_cv: Condvar,
    /// Signalled when `durable` advances or the store fails or closes.
    pub durable_cv: Condvar,
    /// Wakes the sync thread.
    pub sync_cv: Condvar,
}

impl Durability {
    pub fn new(last: u64, at: Position, sync_file: Arc<dyn DiskFile>) -> Durability {
        Durability {
            state: Mutex::new(State {
                written: last,
                written_pos: at,
                visible: last,
                durable: last,
                durable_requested: 0,
                poisoned: None,
                sync_file,
                unsynced_since: None,
                shutdown: false,
                durable_waiters: Vec::new(),
                sync_timed: false,
            }),
            accepted: AtomicU64::new(last),
            lock_lost: AtomicBool::new(false),
            visible_cv: Condvar::new(),
            durable_cv: Condvar::new(),
            sync_cv: Condvar::new(),
        }
    }

    /// The error every refused operation returns once the store failed:
    /// [`StoreError::LockLost`] when that was the cause, else
    /// [`StoreError::Poisoned`].
    pub fn failure(&self, why: &str) -> StoreError {
        if self.lock_lost.load(Ordering::Acquire) {
            StoreError::LockLost(why.to_string())
        } else {
            StoreError::Poisoned(why.to_string())
        }
    }

    /// Marks the store failed because its LOCK file is no longer its own.
    pub fn poison_lock_lost(&self, why: String) {
        let first = self.state.lock().poisoned.is_none();
        if first {
            self.lock_lost.store(true, Ordering::Release);
        }
        self.poison(why);
    }

    /// Marks the store failed (first reason wins) and wakes every waiter.
    pub fn poison(&self, why: String) {
        let mut st = self.state.lock();
        if st.poisoned.is_none() {
            st.poisoned = Some(why);
        }
        let waiters = st.take_done_waiters();
        drop(st);
        unpark_all(waiters);
        self.visible_cv.notify_all();
        self.durable_cv.notify_all();
        self.sync_cv.notify_all();
    }

    /// Marks the store shut down and wakes every waiter.
    pub fn shut_down(&self) {
        let mut st = self.state.lock();
        st.shutdown = true;
        let waiters = st.take_done_waiters();
        drop(st);
        unpark_all(waiters);
        self.visible_cv.notify_all();
        self.durable_cv.notify_all();
        self.sync_cv.notify_all();
    }

    /// The error for a write refused because the store failed or closed.
    pub fn poisoned_or_closed(&self) -> StoreError {
        match &self.state.lock().poisoned {
            Some(p) => self.failure(p),
            None => StoreError::Closed,
        }
    }

    /// `Err` when the store failed.
    pub fn check(&self) -> Result<(), StoreError> {
        match &self.state.lock().poisoned {
            Some(p) => Err(self.failure(p)),
            None => Ok(()),
        }
    }

    /// Blocks until `seq` is visible (and durable when asked).
    pub fn wait(&self, seq: u64, durable: bool, visible: bool) -> Result<(), StoreError> {
        if !durable && !visible {
            return Ok(());
        }
        let mut st = self.state.lock();
        loop {
            if durable {
                self.park_until_durable(&mut st, seq, None);
            }
            if let Some(p) = &st.poisoned {
                return Err(self.failure(p));
            }
            if st.visible >= seq && (!durable || st.durable >= seq) {
                return Ok(());
            }
            if st.shutdown {
                return Err(StoreError::Closed);
            }
            if !durable {
                self.visible_cv.wait(&mut st);
            }
        }
    }

    /// Asks for `durable >= seq` and waits for it (state lock held on entry
    /// and return, released while parked) until then, a failure, shutdown
    /// or `deadline`. Whoever advances `durable` past `seq` unparks exactly
    /// this thread (see [`State::take_done_waiters`]); a spurious unpark
    /// just loops.
    pub fn park_until_durable(
        &self,
        st: &mut MutexGuard<'_, State>,
        seq: u64,
        deadline: Option<Instant>,
    ) {
        if st.durable >= seq {
            return;
        }
        if st.durable_requested < seq {
            st.durable_requested = seq;
        }
        let mut registered = false;
        while st.durable < seq && st.poisoned.is_none() && !st.shutdown {
            if !registered {
                st.durable_waiters.push((seq, std::thread::current()));
                registered = true;
            }
            // Our frame may be written already (then the writer's publish
            // found no request to wake the sync thread for).
            if st.sync_should_wake() {
                self.sync_cv.notify_one();
            }
            let timed_out = MutexGuard::unlocked(st, || match deadline {
                None => {
                    std::thread::park();
                    false
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return true;
                    }
                    std::thread::park_timeout(d - now);
                    false
                }
            });
            if timed_out {
                break;
            }
        }
        if registered {
            let me = std::thread::current().id();
            st.durable_waiters.retain(|(_, t)| t.id() != me);
        }
    }
}
