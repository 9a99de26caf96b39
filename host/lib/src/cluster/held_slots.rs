//! What one cluster host holds, as its HTTP API and `/metrics` see it:
//! the reactors it runs, the (reactor, partition) slots it holds now with
//! their runners' live counters, and per slot how often it was acquired,
//! how many checkpointed commits it stored and how many of its runners were
//! fenced (refused whole after another host took the slot over). The host's
//! lease loop writes it; service threads read it, without waiting on the
//! network.

use batpak_runtime::ReactorStatus;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Counters of one (reactor, partition) on this host since it started.
#[derive(Default, Debug)]
pub struct SlotCounters {
    /// Times this host acquired the slot.
    pub acquired: u64,
    /// Runners of the slot fenced by a takeover.
    pub fenced: u64,
    /// Checkpointed commits stored by this host's runners of the slot.
    pub commits: Arc<AtomicU64>,
    /// The runner's live counters while this host holds the slot.
    pub held: Option<Arc<ReactorStatus>>,
}

/// The shared view (see the module docs).
#[derive(Default, Debug)]
pub struct HeldSlots {
    /// This host's id in the leases bucket.
    id: Mutex<String>,
    reactors: Mutex<Vec<String>>,
    slots: Mutex<BTreeMap<(String, u32), SlotCounters>>,
}

impl HeldSlots {
    /// This host's id in the leases bucket and the reactors it runs.
    pub fn set_host(&self, id: &str, reactors: Vec<String>) {
        *self.id.lock() = id.to_string();
        *self.reactors.lock() = reactors;
    }

    /// This host's id in the leases bucket.
    pub fn host_id(&self) -> String {
        self.id.lock().clone()
    }

    /// The reactors this host runs.
    pub fn reactors(&self) -> Vec<String> {
        self.reactors.lock().clone()
    }

    /// The commit counter of `reactor`'s slot in `partition`, for its next
    /// runner's log.
    pub fn commits(&self, reactor: &str, partition: u32) -> Arc<AtomicU64> {
        self.slots
            .lock()
            .entry((reactor.to_string(), partition))
            .or_default()
            .commits
            .clone()
    }

    /// This host acquired the slot and runs it with `status`.
    pub fn acquired(&self, reactor: &str, partition: u32, status: Arc<ReactorStatus>) {
        let mut slots = self.slots.lock();
        let c = slots.entry((reactor.to_string(), partition)).or_default();
        c.acquired += 1;
        c.held = Some(status);
    }

    /// This host no longer holds slot `slot` (`reactor/<name>/<partition>`);
    /// `fenced` when its runner's commit was refused by a takeover.
    pub fn released(&self, slot: &str, fenced: bool) {
        let Some((name, p)) = slot
            .strip_prefix("reactor/")
            .and_then(|r| r.rsplit_once('/'))
            .and_then(|(n, p)| Some((n, p.parse::<u32>().ok()?)))
        else {
            return;
        };
        if let Some(c) = self.slots.lock().get_mut(&(name.to_string(), p)) {
            c.held = None;
            c.fenced += u64::from(fenced);
        }
    }

    /// Reads every slot's counters (in reactor, partition order) under the
    /// lock: `f` must not block.
    pub fn with_slots<T>(&self, f: impl FnOnce(&BTreeMap<(String, u32), SlotCounters>) -> T) -> T {
        f(&self.slots.lock())
    }
}
