//! The durability protocol: the progress watermarks, who waits for them and
//! how they are woken, group commit, and fail-stop.
//!
//! Appenders wait for `visible` (condvar) or `durable`. Durability is
//! leader-based group commit: a durable appender whose frame is written and
//! finds no fsync in flight fsyncs the log itself (covering everything
//! written so far) and records the durable marker; one that finds an fsync
//! in flight parks and is unparked exactly when `durable` covers it — or, if
//! the finished fsync did not cover it, to lead the next one. No hop through
//! a sync thread: with many appenders on few cores those wake-ups were the
//! cost, not the disk. Once the store fails (an I/O error, a panic while
//! writing or syncing, a replaced LOCK file) it is *poisoned*: every waiter
//! wakes with that error and no write is attempted again until the store is
//! reopened — after a failed fsync the page cache can no longer be trusted to
//! say what is on disk (PostgreSQL's lesson).

use super::disk::DiskFile;
use super::durable_mark::{DurableMark, Position};
use super::StoreError;
use crate::panic_message::panic_message;
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Watermarks and waiters, under one lock.
pub(crate) struct State {
    pub written: u64,
    /// Where the last written frame ends.
    pub written_pos: Position,
    pub visible: u64,
    pub durable: u64,
    /// An fsync of the log is in flight (one at a time: its leader clears
    /// this and hands the role on).
    pub syncing: bool,
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
    /// How long the last fsync took: bounds how long a leader gathers.
    pub last_sync: Duration,
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

    /// A durable waiter whose frame is written but not durable, to hand the
    /// next fsync to when none is in flight.
    pub fn next_leader(&self) -> Option<Thread> {
        if self.syncing {
            return None;
        }
        self.durable_waiters
            .iter()
            .find(|(s, _)| *s <= self.written && *s > self.durable)
            .map(|(_, t)| t.clone())
    }

    /// Whether a written frame should wake the sync thread: there is
    /// something to sync and the sync thread sleeps without a deadline, so
    /// it must start its `sync_interval` timer. (Durable appenders fsync
    /// themselves; they never wait for the sync thread.)
    pub fn sync_should_wake(&self) -> bool {
        self.written > self.durable && !self.sync_timed
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
    /// The durable marker, rewritten after each fsync.
    pub mark: DurableMark,
    /// Appends in progress that will wait for durability.
    pub durable_appenders: AtomicUsize,
    /// Signalled when a durable waiter registers while a leader gathers.
    pub gather_cv: Condvar,
}

/// Counts a durable append in progress for as long as it lives.
pub(crate) struct DurableAppend<'a>(&'a AtomicUsize);

impl<'a> DurableAppend<'a> {
    pub fn enter(d: &'a Durability) -> DurableAppend<'a> {
        d.durable_appenders.fetch_add(1, Ordering::AcqRel);
        DurableAppend(&d.durable_appenders)
    }
}

impl Drop for DurableAppend<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Durability {
    pub fn new(
        last: u64,
        at: Position,
        sync_file: Arc<dyn DiskFile>,
        mark: DurableMark,
    ) -> Durability {
        Durability {
            state: Mutex::new(State {
                written: last,
                written_pos: at,
                visible: last,
                durable: last,
                syncing: false,
                poisoned: None,
                sync_file,
                unsynced_since: None,
                shutdown: false,
                durable_waiters: Vec::new(),
                sync_timed: false,
                last_sync: Duration::ZERO,
            }),
            accepted: AtomicU64::new(last),
            lock_lost: AtomicBool::new(false),
            visible_cv: Condvar::new(),
            durable_cv: Condvar::new(),
            sync_cv: Condvar::new(),
            mark,
            durable_appenders: AtomicUsize::new(0),
            gather_cv: Condvar::new(),
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
        self.wake_everyone(st);
    }

    /// Marks the store shut down and wakes every waiter.
    pub fn shut_down(&self) {
        let mut st = self.state.lock();
        st.shutdown = true;
        self.wake_everyone(st);
    }

    /// Releases the state lock and wakes every waiter (the parked durable
    /// appenders and all three condition variables): after a poison or a
    /// shutdown each of them must see it.
    fn wake_everyone(&self, mut st: MutexGuard<'_, State>) {
        let waiters = st.take_done_waiters();
        drop(st);
        unpark_all(waiters);
        self.visible_cv.notify_all();
        self.durable_cv.notify_all();
        self.sync_cv.notify_all();
    }

    /// `Err` when the store failed.
    pub fn check(&self) -> Result<(), StoreError> {
        match &self.state.lock().poisoned {
            Some(p) => Err(self.failure(p)),
            None => Ok(()),
        }
    }

    /// Blocks until `seq` is visible (and durable when asked), fsyncing
    /// the log on this thread when it is the one to lead (see the module
    /// note).
    pub fn wait(&self, seq: u64, durable: bool, visible: bool) -> Result<(), StoreError> {
        if !durable && !visible {
            return Ok(());
        }
        let mut st = self.state.lock();
        loop {
            if let Some(p) = &st.poisoned {
                return Err(self.failure(p));
            }
            if st.visible >= seq && (!durable || st.durable >= seq) {
                if durable {
                    // A frame this thread wrote after the last fsync began
                    // may belong to a parked waiter nobody else will wake
                    // (the writer left it to this thread): hand it the next
                    // fsync.
                    if let Some(t) = st.next_leader() {
                        drop(st);
                        t.unpark();
                    }
                }
                return Ok(());
            }
            if st.shutdown {
                return Err(StoreError::Closed);
            }
            if durable {
                self.make_durable(&mut st, seq, None);
            } else {
                self.visible_cv.wait(&mut st);
            }
        }
    }

    /// One step towards `durable >= seq` (state lock held on entry and
    /// return): lead an fsync when `seq` is written and none is in flight,
    /// else park until unparked — by the fsync that covers it, by a leader
    /// or writer handing it the next fsync to lead, by a failure or
    /// shutdown — or `deadline`. A durable appender whose frame is not
    /// written yet parks here too (once, not first for visibility and then
    /// for durability). Callers loop; a spurious unpark just loops.
    pub fn make_durable(
        &self,
        st: &mut MutexGuard<'_, State>,
        seq: u64,
        deadline: Option<Instant>,
    ) {
        if st.durable >= seq || st.poisoned.is_some() || st.shutdown {
            return;
        }
        if !st.syncing && st.written >= seq {
            self.lead_sync(st);
            return;
        }
        let me = std::thread::current();
        let id = me.id();
        st.durable_waiters.push((seq, me));
        if st.syncing {
            self.gather_cv.notify_one();
        }
        MutexGuard::unlocked(st, || match deadline {
            None => std::thread::park(),
            Some(d) => {
                let now = Instant::now();
                if now < d {
                    std::thread::park_timeout(d - now);
                }
            }
        });
        st.durable_waiters.retain(|(_, t)| t.id() != id);
    }

    /// Fsyncs everything written so far on this thread (state lock held on
    /// entry and return, released during the fsync), records the durable
    /// marker, advances `durable`, wakes the waiters it covers and hands the
    /// leader role to one waiter it does not cover. A failure (or a panic
    /// in the disk layer) poisons the store.
    pub fn lead_sync(&self, st: &mut MutexGuard<'_, State>) {
        st.syncing = true;
        // Group commit with a gathering window: other durable appends in
        // progress (sequencing, writing, or just woken by the last fsync)
        // are likely to want this fsync too. Wait for them to register (and
        // their frames to be written), at most as long as the last fsync
        // took (capped at 2 ms; at worst half the throughput of an fsync
        // nobody joins), instead of fsyncing for one and making the rest
        // wait a whole fsync more. Measured on 16 threads: ≈ 12–15 events
        // per fsync with this window, ≈ 10–11 with half of it.
        let others = |st: &State| {
            self.durable_appenders
                .load(Ordering::Acquire)
                .saturating_sub(1)
                > st.durable_waiters.len()
                || self.accepted.load(Ordering::Acquire) > st.written
        };
        if others(st) && !st.last_sync.is_zero() {
            let until = Instant::now() + st.last_sync.min(Duration::from_millis(2));
            while others(st) && st.poisoned.is_none() && !st.shutdown {
                if self.gather_cv.wait_until(st, until).timed_out() {
                    break;
                }
            }
        }
        st.unsynced_since = None;
        let target = st.written;
        let pos = st.written_pos;
        let file = st.sync_file.clone();
        let began = Instant::now();
        let r = MutexGuard::unlocked(st, || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                file.sync().and_then(|_| self.mark.record(pos))
            }))
        });
        st.last_sync = began.elapsed();
        st.syncing = false;
        match r {
            Ok(Ok(())) => {
                st.durable = st.durable.max(target);
                if st.written > st.durable {
                    st.unsynced_since.get_or_insert_with(Instant::now);
                }
            }
            Ok(Err(e)) => {
                if st.poisoned.is_none() {
                    st.poisoned = Some(format!("fsync of the log failed: {e}"));
                }
            }
            Err(p) => {
                if st.poisoned.is_none() {
                    st.poisoned = Some(format!(
                        "an fsync of the log panicked: {}",
                        panic_message(&*p)
                    ));
                }
            }
        }
        let mut waiters = st.take_done_waiters();
        // Someone still waiting whose frame is written leads the next fsync
        // (one not written yet is handed it by whoever writes it).
        waiters.extend(st.next_leader());
        MutexGuard::unlocked(st, || unpark_all(waiters));
        self.durable_cv.notify_all();
        if st.poisoned.is_some() {
            self.visible_cv.notify_all();
            self.sync_cv.notify_all();
        }
    }
}
