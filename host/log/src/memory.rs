//! [`MemoryLog`]: an in-memory [`EventLog`] that injects faults on a
//! script or at random (seeded), for tests of what runs over the seam.
//!
//! It keeps the promises of the seam exactly — a commit lands whole or not
//! at all, explicit ids are deduplicated, fences are checked strictly (a
//! counter per cursor, like a replicated log's checkpoint-record sequence)
//! — and breaks only the transport: a commit refused, lost (not applied,
//! outcome unknown), landed with its reply lost (applied, outcome unknown),
//! unavailable; reads and lookups failing; waits returning at once as if
//! timed out. Everything is durable as soon as it lands.

use crate::commit::{Commit, Committed, Fence};
use crate::cursor::LogCursor;
use crate::error::{CommitError, LogError};
use crate::event_log::{EventLog, Heads, LiveFeed};
use crate::read_cursor::ReadCursor;
use crate::region_batch::RegionBatch;
use batpak_store::{
    now_us, Canal, CanalBatch, CanalClosed, ChainLink, Checkpoint, CloseReason, Event, EventHeader,
    EventId, EventView, Proposal, Region,
};
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The kind of call a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`EventLog::commit`] (and `append_system`).
    Commit,
    /// [`EventLog::read`], and so every cursor pull.
    Read,
    /// `checkpoint`, `fence`, `get`, `get_by_sequence`, `entity_events`.
    Lookup,
    /// `wait_durable`, `wait_for_events`.
    Wait,
}

/// What goes wrong in one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Commit: refused, nothing applied ([`CommitError::Refused`]).
    Refuse,
    /// Commit: nothing applied, [`CommitError::Unavailable`]. Read or
    /// lookup: [`LogError::Unavailable`].
    Unavailable,
    /// Commit: lost on the way — nothing applied — and the caller told
    /// [`CommitError::Unknown`].
    Lose,
    /// Commit: applied, but the reply lost: [`CommitError::Unknown`].
    LoseReply,
    /// Read or lookup: [`LogError::Failed`].
    Fail,
    /// Wait: returns at once as if its timeout had passed.
    Timeout,
}

/// Seeded random faults: each call has a `1 / one_in` chance of a
/// transient fault fitting its kind (never `Refuse` or `Fail`, which stop a
/// runner), and never more than `max_in_a_row` faults in a row.
#[derive(Clone, Copy, Debug)]
pub struct FaultPlan {
    /// The seed; print it, so a failing schedule can be replayed.
    pub seed: u64,
    /// One call in this many is faulted (0: none).
    pub one_in: u32,
    /// Longest run of faulted calls.
    pub max_in_a_row: u32,
}

#[derive(Default)]
struct State {
    events: Vec<Event>,
    by_id: HashMap<EventId, usize>,
    /// Entity → (entity sequence, last link).
    entities: HashMap<String, (u64, ChainLink)>,
    checkpoints: HashMap<String, (Checkpoint, u64)>,
    scripted: HashMap<Op, VecDeque<Fault>>,
    random: Option<(FaultPlan, u64, u32)>,
    injected: Vec<(Op, Fault)>,
    closed: bool,
}

struct Inner {
    state: Mutex<State>,
    grew: Condvar,
}

/// An in-memory log with injected faults; cheap to clone (clones share
/// it).
#[derive(Clone)]
pub struct MemoryLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.state.lock();
        f.debug_struct("MemoryLog")
            .field("events", &st.events.len())
            .field("injected", &st.injected.len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryLog {
    fn default() -> Self {
        MemoryLog::new()
    }
}

impl MemoryLog {
    /// An empty log without faults.
    pub fn new() -> MemoryLog {
        MemoryLog {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                grew: Condvar::new(),
            }),
        }
    }

    /// Queues `fault` for the next call of kind `op` that has none queued
    /// before it (faults of one kind are used in order).
    pub fn inject(&self, op: Op, fault: Fault) {
        self.inner
            .state
            .lock()
            .scripted
            .entry(op)
            .or_default()
            .push_back(fault);
    }

    /// Faults from now on at random, per `plan` (after the scripted ones).
    pub fn randomize(&self, plan: FaultPlan) {
        self.inner.state.lock().random = Some((plan, plan.seed | 1, 0));
    }

    /// Stops random faults (scripted ones still apply).
    pub fn calm(&self) {
        self.inner.state.lock().random = None;
    }

    /// Every fault injected so far, in order.
    pub fn injected(&self) -> Vec<(Op, Fault)> {
        self.inner.state.lock().injected.clone()
    }

    /// Every event in the log, in order.
    pub fn events(&self) -> Vec<Event> {
        self.inner.state.lock().events.clone()
    }

    /// Closes the log: later calls fail with `Closed`, waiters wake.
    pub fn close(&self) {
        self.inner.state.lock().closed = true;
        self.inner.grew.notify_all();
    }

    /// Appends `proposals` without faults (a test's input), atomically.
    ///
    /// # Errors
    /// As [`EventLog::commit`] without faults.
    pub fn append(&self, proposals: Vec<Proposal>) -> Result<Committed, CommitError> {
        let mut st = self.inner.state.lock();
        let r = apply(&mut st, &Commit::records(proposals));
        drop(st);
        self.inner.grew.notify_all();
        r
    }

    fn fault(&self, st: &mut State, op: Op) -> Option<Fault> {
        if let Some(f) = st.scripted.get_mut(&op).and_then(VecDeque::pop_front) {
            st.injected.push((op, f));
            return Some(f);
        }
        let (plan, rng, run) = st.random.as_mut()?;
        if plan.one_in == 0 {
            return None;
        }
        let mut next = || {
            // xorshift64*
            *rng ^= *rng >> 12;
            *rng ^= *rng << 25;
            *rng ^= *rng >> 27;
            rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let roll = next();
        if *run >= plan.max_in_a_row || roll % u64::from(plan.one_in) != 0 {
            *run = 0;
            return None;
        }
        *run += 1;
        let pick = next();
        let f = match op {
            Op::Commit => [Fault::Unavailable, Fault::Lose, Fault::LoseReply][(pick % 3) as usize],
            Op::Read | Op::Lookup => Fault::Unavailable,
            Op::Wait => Fault::Timeout,
        };
        st.injected.push((op, f));
        Some(f)
    }

    fn read_fault(&self, st: &mut State, op: Op) -> Result<(), LogError> {
        if st.closed {
            return Err(LogError::Closed);
        }
        match self.fault(st, op) {
            Some(Fault::Fail) => Err(LogError::Failed("injected: read failed".into())),
            Some(_) => Err(LogError::Unavailable(
                "injected: the log did not answer".into(),
            )),
            None => Ok(()),
        }
    }

    fn wait_until(&self, after: u64, timeout: Duration) -> Result<u64, LogError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.state.lock();
        if st.closed {
            return Err(LogError::Closed);
        }
        if self.fault(&mut st, Op::Wait).is_some() {
            return Ok(st.events.len() as u64);
        }
        while st.events.len() as u64 <= after && !st.closed {
            if self.inner.grew.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        Ok(st.events.len() as u64)
    }
}

/// Lands `commit` whole or not at all: every record checked first.
fn apply(st: &mut State, commit: &Commit) -> Result<Committed, CommitError> {
    if let (Some(f), Some(cp)) = (commit.fence, &commit.checkpoint) {
        let found = st.checkpoints.get(&cp.cursor).map_or(0, |(_, f)| *f);
        if found != f.0 {
            return Err(CommitError::Fenced {
                cursor: cp.cursor.clone(),
                expected: f.0,
                found,
            });
        }
    }
    let mut fresh = Vec::new();
    let mut batch_ids: HashMap<EventId, ()> = HashMap::new();
    for (i, p) in commit.records.iter().enumerate() {
        if p.kind.is_empty() {
            return Err(CommitError::Refused(
                format!("record {i}: empty kind").into(),
            ));
        }
        if let Some(c) = p.causation {
            if !st.by_id.contains_key(&c) && !batch_ids.contains_key(&c) {
                return Err(CommitError::Refused(
                    format!("record {i}: causation {c} is not an event in this log").into(),
                ));
            }
        }
        if let Some(id) = p.id {
            if let Some(&at) = st.by_id.get(&id) {
                let old = &st.events[at];
                if old.header.kind != p.kind
                    || old.header.coordinate != p.coordinate
                    || *old.payload != *p.payload
                {
                    return Err(CommitError::Refused(
                        format!("record {i}: id {id} already names other content").into(),
                    ));
                }
                continue;
            }
            if batch_ids.insert(id, ()).is_some() {
                continue;
            }
        }
        fresh.push(p.clone());
    }
    for p in fresh {
        let id = p.id.unwrap_or_else(EventId::generate);
        let sequence = st.events.len() as u64 + 1;
        let (entity_sequence, prev) = match st.entities.get(&p.coordinate.entity) {
            Some((n, link)) => (n + 1, Some(*link)),
            None => (1, None),
        };
        let correlation = p
            .correlation
            .or_else(|| {
                p.causation
                    .and_then(|c| st.by_id.get(&c))
                    .map(|&at| st.events[at].header.correlation)
            })
            .unwrap_or(id);
        let header = EventHeader {
            id,
            sequence,
            entity_sequence,
            coordinate: p.coordinate.clone(),
            kind: p.kind.clone(),
            causation: p.causation,
            correlation,
            timestamp_us: now_us(),
            prev,
            idempotency_key: p.idempotency_key.clone(),
            meta: p.meta.clone(),
        };
        let hash = header.hash(&p.payload);
        st.entities.insert(
            p.coordinate.entity.clone(),
            (entity_sequence, ChainLink { id, hash }),
        );
        st.by_id.insert(id, st.events.len());
        st.events.push(Event {
            header: Arc::new(header),
            payload: p.payload.into(),
            hash,
        });
    }
    let fence = commit.checkpoint.clone().map(|cp| {
        let next = st.checkpoints.get(&cp.cursor).map_or(0, |(_, f)| *f) + 1;
        st.checkpoints.insert(
            cp.cursor.clone(),
            (
                Checkpoint {
                    cursor: cp.cursor,
                    region: cp.region,
                    sequence: cp.sequence,
                    event_id: cp.event_id,
                },
                next,
            ),
        );
        Fence(next)
    });
    Ok(Committed {
        upto: st.events.len() as u64,
        fence,
    })
}

impl EventLog for MemoryLog {
    fn describe(&self) -> String {
        "memory log".into()
    }

    fn read(&self, region: &Region, after: u64, max: usize) -> Result<RegionBatch, LogError> {
        let mut st = self.inner.state.lock();
        self.read_fault(&mut st, Op::Read)?;
        let max = max.max(1);
        let mut events = Vec::new();
        let mut scanned = after;
        for e in st.events.iter().skip(after as usize) {
            scanned = e.sequence();
            if region.matches(&e.header) {
                events.push(e.clone());
                if events.len() >= max {
                    break;
                }
            }
        }
        Ok(RegionBatch { events, scanned })
    }

    fn open_cursor(&self, region: &Region, after: u64) -> Result<Box<dyn LogCursor>, LogError> {
        Ok(Box::new(ReadCursor::new(
            self.clone(),
            region.clone(),
            after,
        )))
    }

    fn subscribe(&self, region: &Region, _capacity: usize) -> Result<LiveFeed, LogError> {
        let head = self.inner.state.lock().events.len() as u64;
        Ok(Box::new(Live(ReadCursor::new(
            self.clone(),
            region.clone(),
            head,
        ))))
    }

    fn commit(&self, commit: &mut Commit) -> Result<Committed, CommitError> {
        let mut st = self.inner.state.lock();
        if st.closed {
            return Err(CommitError::Closed);
        }
        let r = match self.fault(&mut st, Op::Commit) {
            Some(Fault::Refuse) => Err(CommitError::Refused("injected: refused".into())),
            Some(Fault::Lose) => Err(CommitError::Unknown(
                "injected: the request was lost (not applied)".into(),
            )),
            Some(Fault::LoseReply) => apply(&mut st, commit).and(Err(CommitError::Unknown(
                "injected: the reply was lost (applied)".into(),
            ))),
            Some(_) => Err(CommitError::Unavailable(
                "injected: not connected (not applied)".into(),
            )),
            None => apply(&mut st, commit),
        };
        drop(st);
        self.inner.grew.notify_all();
        r
    }

    fn checkpoint(&self, cursor: &str) -> Result<Option<Checkpoint>, LogError> {
        let mut st = self.inner.state.lock();
        self.read_fault(&mut st, Op::Lookup)?;
        Ok(st.checkpoints.get(cursor).map(|(c, _)| c.clone()))
    }

    fn fence(&self, cursor: &str) -> Result<Fence, LogError> {
        let mut st = self.inner.state.lock();
        self.read_fault(&mut st, Op::Lookup)?;
        Ok(Fence(st.checkpoints.get(cursor).map_or(0, |(_, f)| *f)))
    }

    fn get(&self, id: EventId) -> Result<Option<Event>, LogError> {
        let mut st = self.inner.state.lock();
        self.read_fault(&mut st, Op::Lookup)?;
        Ok(st.by_id.get(&id).map(|&at| st.events[at].clone()))
    }

    fn get_by_sequence(&self, sequence: u64) -> Result<Option<Event>, LogError> {
        let mut st = self.inner.state.lock();
        self.read_fault(&mut st, Op::Lookup)?;
        Ok(sequence
            .checked_sub(1)
            .and_then(|i| st.events.get(i as usize))
            .cloned())
    }

    fn entity_events(&self, entity: &str, after: u64, max: usize) -> Result<Vec<Event>, LogError> {
        let mut st = self.inner.state.lock();
        self.read_fault(&mut st, Op::Lookup)?;
        Ok(st
            .events
            .iter()
            .filter(|e| e.header.coordinate.entity == entity && e.header.entity_sequence > after)
            .take(max)
            .cloned()
            .collect())
    }

    fn heads(&self) -> Heads {
        let n = self.inner.state.lock().events.len() as u64;
        Heads {
            accepted: n,
            durable: n,
        }
    }

    fn wait_durable(&self, sequence: u64, timeout: Duration) -> Result<bool, LogError> {
        let mut st = self.inner.state.lock();
        if st.closed {
            return Err(LogError::Closed);
        }
        if self.fault(&mut st, Op::Wait).is_some() {
            return Ok(false);
        }
        // Everything that landed is durable.
        let _ = timeout;
        Ok(st.events.len() as u64 >= sequence)
    }

    fn wait_for_events(&self, after: u64, timeout: Duration) -> Result<u64, LogError> {
        self.wait_until(after, timeout)
    }
}

/// A lossy feed over the memory log (it never falls behind: it reads).
struct Live(ReadCursor<MemoryLog>);

impl Canal for Live {
    type Item = Event;
    type Error = CanalClosed;

    fn pull_batch(
        &mut self,
        max: usize,
        deadline: Duration,
    ) -> Result<CanalBatch<Event>, CanalClosed> {
        let views = self.0.pull_batch(max, deadline).map_err(|e| CanalClosed {
            reason: match e {
                LogError::Closed => CloseReason::StoreClosed,
                e => CloseReason::Failed(e.to_string()),
            },
        })?;
        // The reader's views are over owned events: taking them back out
        // copies nothing.
        Ok(CanalBatch::from_vec(
            views.into_vec().iter().map(EventView::to_event).collect(),
        ))
    }
}
