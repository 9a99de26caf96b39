//! The write path and the shared state behind a [`Store`](super::Store).
//!
//! Three roles, three locks, one direction:
//! 1. **Sequencer** (caller threads, `Core::seq` mutex): validates a batch,
//!    checks idempotency and optimistic concurrency, assigns sequences,
//!    timestamps and chain links, encodes one frame and sends it down the
//!    bounded queue. Nothing shared changes unless the whole batch is valid.
//! 2. **Writer thread**: drains the queue, writes every queued frame with one
//!    `write`, publishes the entries to the index (visible), notifies
//!    subscribers, rotates segments and writes snapshots when idle.
//! 3. **Sync thread**: fsyncs what was written and advances the durable
//!    watermark; every durable waiter queued meanwhile shares that fsync.
//!
//! Readers take the index lock only to copy entries, never across I/O.

use super::fanout::SubscriberQueue;
use super::frame::{begin_frame, finish_frame, FRAME_HEADER, MAX_FRAME_BODY};
use super::index::{Entry, FastMap, Index, CHECKPOINT_KIND};
use super::recovery::{recover, verify_dir};
use super::segment::{
    create_segment, decode_event_at, decode_header, push_event, segment_path, TAG_BATCH,
};
use super::{snapshot, AppendOptions, StoreError, StoreOptions, VerifyReport, Watermarks};
use super::{Checkpoint, Region};
use crate::event::{
    hash_encoded, now_us, ChainLink, Event, EventHeader, EventId, Proposal, Receipt,
};
use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// Entity of checkpoint records is `batpak.cursor:<id>` in this scope.
pub(crate) const SYSTEM_SCOPE: &str = "batpak";

enum Cmd {
    Frame(FrameCmd),
    Shutdown,
}

struct FrameCmd {
    bytes: Vec<u8>,
    /// Header and position (relative to the frame start) of each event.
    events: Vec<(EventHeader, u32, u32)>,
}

/// The head of an entity's chain.
#[derive(Clone, Copy)]
struct Head {
    entity_seq: u64,
    link: ChainLink,
}

struct Pending {
    receipt: Receipt,
    correlation: EventId,
}

struct Sequencer {
    tx: Option<SyncSender<Cmd>>,
    next_seq: u64,
    last_ts: u64,
    id_seed: u64,
    id_counter: u64,
    heads: FastMap<String, Head>,
    pending: FastMap<EventId, Pending>,
    pending_keys: FastMap<String, Receipt>,
    retain_at: usize,
}

struct State {
    written: u64,
    visible: u64,
    durable: u64,
    durable_requested: u64,
    poisoned: Option<String>,
    sync_file: Arc<File>,
    unsynced_since: Option<Instant>,
    shutdown: bool,
    /// Appenders waiting for `durable` to reach a sequence. Whoever advances
    /// `durable` unparks exactly the ones now satisfied: a condvar
    /// `notify_all` woke all of them on every fsync, and with many appenders
    /// on few cores those wake-ups that find nothing to do were the cost
    /// (context switches), not the disk.
    durable_waiters: Vec<(u64, Thread)>,
    /// The sync thread sleeps with a deadline (the `sync_interval` timer):
    /// it wakes by itself, so a written frame nobody waits for need not wake
    /// it.
    sync_timed: bool,
}

impl State {
    /// Removes and returns the durable waiters that can stop waiting: those
    /// covered by `durable`, or all of them once the store failed or shut
    /// down. Unpark them after releasing the state lock, so they do not wake
    /// only to block on it.
    fn take_done_waiters(&mut self) -> Vec<Thread> {
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
    /// thread sleeps without a deadline and must start its
    /// `sync_interval` timer.
    fn sync_should_wake(&self) -> bool {
        self.written > self.durable && (self.durable_requested > self.durable || !self.sync_timed)
    }
}

fn unpark_all(threads: Vec<Thread>) {
    for t in threads {
        t.unpark();
    }
}

/// State shared by store handles and the writer and sync threads.
pub(crate) struct Core {
    pub seg_dir: PathBuf,
    pub options: StoreOptions,
    pub store_id: u128,
    pub index: RwLock<Index>,
    seq: Mutex<Sequencer>,
    accepted: AtomicU64,
    state: Mutex<State>,
    /// Signalled when `visible` advances or the store fails or closes.
    visible_cv: Condvar,
    /// Signalled when `durable` advances or the store fails or closes.
    durable_cv: Condvar,
    sync_cv: Condvar,
    readers: RwLock<HashMap<u32, Arc<File>>>,
    subscribers: Mutex<Vec<Arc<SubscriberQueue>>>,
    has_subscribers: AtomicBool,
}

/// What every [`Store`](super::Store) clone holds.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub core: Arc<Core>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
    pub recovery: super::RecoveryInfo,
    _lock: File,
}

fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    std::fs::create_dir_all(dir).map_err(StoreError::io(format!(
        "creating store directory {}",
        dir.display()
    )))?;
    let path = dir.join("LOCK");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(StoreError::io(format!("opening {}", path.display())))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            return Err(StoreError::Locked {
                dir: dir.to_path_buf(),
                holder: if holder.is_empty() {
                    "unknown holder".into()
                } else {
                    holder.to_string()
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(StoreError::Io {
                context: format!("locking {}", path.display()),
                source: e,
            })
        }
    }
    let me = format!(
        "pid {} ({}) since {}",
        std::process::id(),
        std::env::args().take(2).collect::<Vec<_>>().join(" "),
        now_us() / 1_000_000
    );
    let _ = f.set_len(0).and_then(|_| f.write_at(me.as_bytes(), 0));
    Ok(f)
}

/// Opens the store in `dir`: lock, recover, start the threads.
pub(crate) fn open(dir: &Path, options: StoreOptions) -> Result<Arc<Shared>, StoreError> {
    let lock = lock_dir(dir)?;
    let rec = recover(dir)?;
    let seg_dir = dir.join("segments");
    let mut readers = HashMap::new();
    for n in super::segment::list_segments(&seg_dir)? {
        let p = segment_path(&seg_dir, n);
        readers.insert(
            n,
            Arc::new(File::open(&p).map_err(StoreError::io(format!("opening {}", p.display())))?),
        );
    }
    let active_path = segment_path(&seg_dir, rec.last_segment);
    let active = std::fs::OpenOptions::new()
        .append(true)
        .open(&active_path)
        .map_err(StoreError::io(format!("opening {}", active_path.display())))?;
    let active = Arc::new(active);
    let last = rec.index.last_sequence();
    let mut seed = [0u8; 8];
    let _ = getrandom::fill(&mut seed);
    let (tx, rx) = sync_channel(options.queue_capacity.max(1));
    let core = Arc::new(Core {
        seg_dir,
        store_id: rec.store_id,
        index: RwLock::new(rec.index),
        seq: Mutex::new(Sequencer {
            tx: Some(tx),
            next_seq: last + 1,
            last_ts: 0,
            id_seed: u64::from_le_bytes(seed),
            id_counter: 0,
            heads: FastMap::default(),
            pending: FastMap::default(),
            pending_keys: FastMap::default(),
            retain_at: 65_536,
        }),
        accepted: AtomicU64::new(last),
        state: Mutex::new(State {
            written: last,
            visible: last,
            durable: last,
            durable_requested: 0,
            poisoned: None,
            sync_file: active.clone(),
            unsynced_since: None,
            shutdown: false,
            durable_waiters: Vec::new(),
            sync_timed: false,
        }),
        visible_cv: Condvar::new(),
        durable_cv: Condvar::new(),
        sync_cv: Condvar::new(),
        readers: RwLock::new(readers),
        subscribers: Mutex::new(Vec::new()),
        has_subscribers: AtomicBool::new(false),
        options,
    });
    let w = Writer {
        core: core.clone(),
        dir: dir.to_path_buf(),
        segment: rec.last_segment,
        file: active,
        len: rec.end_offset,
        since_snapshot: rec.replayed,
    };
    let wt = std::thread::Builder::new()
        .name("batpak-writer".into())
        .spawn(move || w.run(rx))
        .map_err(StoreError::io("starting the writer thread"))?;
    let c2 = core.clone();
    let st = std::thread::Builder::new()
        .name("batpak-sync".into())
        .spawn(move || sync_loop(&c2))
        .map_err(StoreError::io("starting the sync thread"))?;
    Ok(Arc::new(Shared {
        dir: dir.to_path_buf(),
        core,
        threads: Mutex::new(vec![wt, st]),
        closed: AtomicBool::new(false),
        recovery: super::RecoveryInfo {
            replayed: rec.replayed,
            truncated_tail: rec.truncated,
        },
        _lock: lock,
    }))
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Sequencer {
    /// A time-ordered id: 48 bits of milliseconds, 80 bits of a per-open
    /// random seed mixed with a counter (unique within the open, random
    /// across processes) — no syscall per id.
    fn next_id(&mut self, ts_us: u64) -> EventId {
        self.id_counter += 1;
        let r = splitmix(self.id_seed ^ splitmix(self.id_counter));
        let hi16 = (splitmix(self.id_seed.rotate_left(17) ^ self.id_counter) & 0xffff) as u128;
        let ms = (ts_us / 1000) as u128 & 0xffff_ffff_ffff;
        EventId((ms << 80) | (hi16 << 64) | r as u128)
    }
}

impl Shared {
    pub(crate) fn append(
        &self,
        proposals: Vec<Proposal>,
        options: AppendOptions,
        system: bool,
    ) -> Result<Vec<Receipt>, StoreError> {
        self.core.append(proposals, options, system)
    }

    pub(crate) fn close(&self) -> Result<(), StoreError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let tx = self.core.seq.lock().tx.take();
        if let Some(tx) = tx {
            let _ = tx.send(Cmd::Shutdown);
        }
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        // Wake everyone blocked on progress: pulls see the store closed.
        self.core.visible_cv.notify_all();
        self.core.durable_cv.notify_all();
        for s in self.core.subscribers.lock().drain(..) {
            s.close_store();
        }
        match &self.core.state.lock().poisoned {
            Some(p) => Err(StoreError::Poisoned(p.clone())),
            None => Ok(()),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl std::ops::Deref for Shared {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl Core {
    fn append(
        &self,
        proposals: Vec<Proposal>,
        options: AppendOptions,
        system: bool,
    ) -> Result<Vec<Receipt>, StoreError> {
        if proposals.is_empty() && options.checkpoint.is_none() {
            return Err(StoreError::BadBatch(
                "empty batch: nothing to append".into(),
            ));
        }
        for (index, p) in proposals.iter().enumerate() {
            p.validate(system)
                .map_err(|source| StoreError::Invalid { index, source })?;
        }
        if let Some(cp) = &options.checkpoint {
            super::validate_cursor_id(&cp.cursor).map_err(|source| StoreError::Invalid {
                index: proposals.len(),
                source,
            })?;
        }
        let n = proposals.len();
        let mut seq = self.seq.lock();
        if let Some(p) = &self.state.lock().poisoned {
            return Err(StoreError::Poisoned(p.clone()));
        }
        if seq.tx.is_none() {
            return Err(StoreError::Closed);
        }
        let payload_bytes: usize = proposals.iter().map(|p| p.payload.len() + 256).sum();
        if payload_bytes > MAX_FRAME_BODY {
            return Err(StoreError::BadBatch(format!(
                "batch of {n} events is about {payload_bytes} bytes; one atomic batch holds at most {MAX_FRAME_BODY} bytes — split it"
            )));
        }
        let mut receipts: Vec<Option<Receipt>> = vec![None; n];
        let mut heads: FastMap<String, Head> = FastMap::default();
        let mut local: FastMap<EventId, (Receipt, EventId)> = FastMap::default();
        let mut local_keys: FastMap<String, Receipt> = FastMap::default();
        let mut bytes = Vec::with_capacity(payload_bytes + FRAME_HEADER + 8);
        let fstart = begin_frame(&mut bytes);
        bytes.push(TAG_BATCH);
        bytes.extend_from_slice(&0u32.to_le_bytes());
        let mut events: Vec<(EventHeader, u32, u32)> = Vec::with_capacity(n + 1);
        let mut next = seq.next_seq;
        let mut ts = now_us().max(seq.last_ts);
        let mut max_dedup_seq = 0u64;
        let mut hbuf = Vec::with_capacity(256);

        let mut items: Vec<(Proposal, Option<usize>)> = proposals
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p, Some(i)))
            .collect();
        if let Some(cp) = &options.checkpoint {
            let rec = Checkpoint {
                cursor: cp.cursor.clone(),
                region: cp.region,
                sequence: cp.sequence,
                event_id: cp.event_id,
            };
            let coord = crate::event::Coordinate {
                entity: format!("batpak.cursor:{}", cp.cursor),
                scope: SYSTEM_SCOPE.into(),
            };
            items.push((Proposal::new(coord, CHECKPOINT_KIND, rec.to_record()), None));
        }
        for (p, slot) in items {
            let i = slot.unwrap_or(n);
            // Idempotency: a known key, else a known explicit id, returns the
            // original receipt and appends nothing.
            let mut known = match &p.idempotency_key {
                Some(k) => match local_keys.get(k) {
                    Some(r) => Some(*r),
                    None => self.lookup_key(&seq, k)?,
                },
                None => None,
            };
            if let (None, Some(id)) = (known, p.id) {
                known = match local.get(&id) {
                    Some((r, _)) => Some(*r),
                    None => self.lookup_id(&seq, id)?,
                };
            }
            if let Some(r) = known {
                max_dedup_seq = max_dedup_seq.max(r.sequence);
                receipts[i] = Some(Receipt {
                    deduplicated: true,
                    ..r
                });
                continue;
            }
            let head = match heads.get(&p.coordinate.entity) {
                Some(h) => Some(*h),
                None => self.head(&mut seq, &p.coordinate.entity)?,
            };
            let cur = head.map_or(0, |h| h.entity_seq);
            if let Some(exp) = p.expected_sequence {
                if exp != cur {
                    return Err(StoreError::SequenceConflict {
                        entity: p.coordinate.entity.clone(),
                        expected: exp,
                        actual: cur,
                    });
                }
            }
            ts = ts.max(now_us());
            let id = match (p.id, &p.idempotency_key) {
                (Some(id), _) => id,
                (None, Some(k)) => EventId::derive(&[b"idempotency-key", k.as_bytes()]),
                (None, None) => seq.next_id(ts),
            };
            let correlation = match (p.correlation, p.causation) {
                (Some(c), Some(cause)) => {
                    self.correlation_of(&seq, &local, cause).ok_or_else(|| {
                        StoreError::UnknownCausation {
                            index: i,
                            id: cause.to_string(),
                        }
                    })??;
                    c
                }
                (Some(c), None) => c,
                (None, Some(cause)) => {
                    self.correlation_of(&seq, &local, cause).ok_or_else(|| {
                        StoreError::UnknownCausation {
                            index: i,
                            id: cause.to_string(),
                        }
                    })??
                }
                (None, None) => id,
            };
            let entity = p.coordinate.entity.clone();
            let header = EventHeader {
                id,
                sequence: next,
                entity_sequence: cur + 1,
                coordinate: p.coordinate,
                kind: p.kind,
                causation: p.causation,
                correlation,
                timestamp_us: ts,
                prev: head.map(|h| h.link),
                idempotency_key: p.idempotency_key,
                meta: p.meta,
            };
            hbuf.clear();
            let hbytes = postcard::to_extend(&header, std::mem::take(&mut hbuf)).map_err(|e| {
                StoreError::Io {
                    context: "encoding an event header".into(),
                    source: std::io::Error::other(e),
                }
            })?;
            let hash = hash_encoded(&hbytes, &p.payload);
            let rel = (bytes.len() - fstart) as u32;
            push_event(&mut bytes, &hbytes, &hash, &p.payload);
            let receipt = Receipt {
                id,
                sequence: next,
                entity_sequence: cur + 1,
                timestamp_us: ts,
                hash,
                deduplicated: false,
            };
            heads.insert(
                entity,
                Head {
                    entity_seq: cur + 1,
                    link: ChainLink { id, hash },
                },
            );
            local.insert(id, (receipt, correlation));
            if let Some(k) = &header.idempotency_key {
                local_keys.insert(k.clone(), receipt);
            }
            events.push((header, rel, hbytes.len() as u32));
            hbuf = hbytes;
            if slot.is_some() {
                receipts[i] = Some(receipt);
            }
            next += 1;
        }
        let receipts: Vec<Receipt> = receipts
            .into_iter()
            .map(|r| r.expect("every proposal has a receipt"))
            .collect();
        if events.is_empty() {
            drop(seq);
            if max_dedup_seq > 0 {
                self.wait(
                    max_dedup_seq,
                    options.wait_durable(),
                    options.wait_visible(),
                )?;
            }
            return Ok(receipts);
        }
        let count = events.len() as u32;
        bytes[fstart + FRAME_HEADER + 1..fstart + FRAME_HEADER + 5]
            .copy_from_slice(&count.to_le_bytes());
        if bytes.len() - fstart - FRAME_HEADER > MAX_FRAME_BODY {
            return Err(StoreError::BadBatch(format!(
                "batch encodes to {} bytes; one atomic batch holds at most {MAX_FRAME_BODY} bytes — split it",
                bytes.len()
            )));
        }
        finish_frame(&mut bytes, fstart);
        // Commit the sequencer's view: from here the batch is accepted.
        seq.next_seq = next;
        seq.last_ts = ts;
        seq.heads.extend(heads);
        for (id, (receipt, correlation)) in local {
            seq.pending.insert(
                id,
                Pending {
                    receipt,
                    correlation,
                },
            );
        }
        seq.pending_keys.extend(local_keys);
        // Forget what the index now answers for; the threshold doubles with
        // what stays pending so a lagging writer never makes this quadratic.
        if seq.pending.len() + seq.pending_keys.len() > seq.retain_at {
            let visible = self.state.lock().visible;
            seq.pending.retain(|_, p| p.receipt.sequence > visible);
            seq.pending_keys.retain(|_, r| r.sequence > visible);
            seq.retain_at = (2 * (seq.pending.len() + seq.pending_keys.len())).max(65_536);
        }
        let last = next - 1;
        self.accepted.store(last, Ordering::Release);
        let sent = seq
            .tx
            .as_ref()
            .expect("checked above")
            .send(Cmd::Frame(FrameCmd { bytes, events }));
        drop(seq);
        if sent.is_err() {
            return Err(self.poisoned_or_closed());
        }
        self.wait(
            last.max(max_dedup_seq),
            options.wait_durable(),
            options.wait_visible(),
        )?;
        Ok(receipts)
    }

    fn poisoned_or_closed(&self) -> StoreError {
        match &self.state.lock().poisoned {
            Some(p) => StoreError::Poisoned(p.clone()),
            None => StoreError::Closed,
        }
    }

    /// Blocks until `seq` is visible (and durable when asked).
    fn wait(&self, seq: u64, durable: bool, visible: bool) -> Result<(), StoreError> {
        if !durable && !visible {
            return Ok(());
        }
        let mut st = self.state.lock();
        loop {
            if durable {
                self.park_until_durable(&mut st, seq, None);
            }
            if let Some(p) = &st.poisoned {
                return Err(StoreError::Poisoned(p.clone()));
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
    /// this thread (see `State::take_done_waiters`); a spurious unpark just
    /// loops.
    fn park_until_durable(
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

    fn lookup_key(&self, seq: &Sequencer, key: &str) -> Result<Option<Receipt>, StoreError> {
        if let Some(r) = seq.pending_keys.get(key) {
            return Ok(Some(*r));
        }
        let s = self.index.read().keys.get(key).copied();
        match s {
            Some(s) => self.receipt_at(s).map(Some),
            None => Ok(None),
        }
    }

    fn lookup_id(&self, seq: &Sequencer, id: EventId) -> Result<Option<Receipt>, StoreError> {
        if let Some(p) = seq.pending.get(&id) {
            return Ok(Some(p.receipt));
        }
        let s = self.index.read().by_id.get(&id).copied();
        match s {
            Some(s) => self.receipt_at(s).map(Some),
            None => Ok(None),
        }
    }

    fn receipt_at(&self, s: u64) -> Result<Receipt, StoreError> {
        let ev = self.get_by_sequence(s)?.ok_or_else(|| {
            StoreError::BadBatch(format!("index names sequence {s} but it cannot be read"))
        })?;
        Ok(Receipt {
            id: ev.header.id,
            sequence: s,
            entity_sequence: ev.header.entity_sequence,
            timestamp_us: ev.header.timestamp_us,
            hash: ev.hash,
            deduplicated: true,
        })
    }

    fn correlation_of(
        &self,
        seq: &Sequencer,
        local: &FastMap<EventId, (Receipt, EventId)>,
        cause: EventId,
    ) -> Option<Result<EventId, StoreError>> {
        if let Some((_, c)) = local.get(&cause) {
            return Some(Ok(*c));
        }
        if let Some(p) = seq.pending.get(&cause) {
            return Some(Ok(p.correlation));
        }
        let s = self.index.read().by_id.get(&cause).copied()?;
        Some(
            self.get_by_sequence(s)
                .map(|e| e.map_or(cause, |e| e.header.correlation)),
        )
    }

    /// The chain head of `entity`, loading it from the log on first use.
    fn head(&self, seq: &mut Sequencer, entity: &str) -> Result<Option<Head>, StoreError> {
        if let Some(h) = seq.heads.get(entity) {
            return Ok(Some(*h));
        }
        let last = {
            let ix = self.index.read();
            ix.names
                .get(entity)
                .and_then(|e| ix.by_entity.get(&e))
                .and_then(|v| v.last().copied())
        };
        let Some(s) = last else { return Ok(None) };
        let ev = self.get_by_sequence(s)?.ok_or_else(|| {
            StoreError::BadBatch(format!("index names sequence {s} but it cannot be read"))
        })?;
        let h = Head {
            entity_seq: ev.header.entity_sequence,
            link: ChainLink {
                id: ev.header.id,
                hash: ev.hash,
            },
        };
        seq.heads.insert(entity.to_string(), h);
        Ok(Some(h))
    }

    // ---- reads -------------------------------------------------------------

    fn reader(&self, segment: u32) -> Result<Arc<File>, StoreError> {
        if let Some(f) = self.readers.read().get(&segment) {
            return Ok(f.clone());
        }
        let p = segment_path(&self.seg_dir, segment);
        let f =
            Arc::new(File::open(&p).map_err(StoreError::io(format!("opening {}", p.display())))?);
        self.readers.write().insert(segment, f.clone());
        Ok(f)
    }

    fn decode_at(&self, e: &Entry, buf: &[u8], at: usize) -> Result<Event, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            segment: e.segment,
            offset: e.offset,
            reason,
        };
        let raw = decode_event_at(buf, at).map_err(corrupt)?;
        let header = decode_header(raw.header_bytes).map_err(corrupt)?;
        if header.id != e.id {
            return Err(corrupt(format!(
                "expected event {} but found {}",
                e.id, header.id
            )));
        }
        Ok(Event {
            header: Arc::new(header),
            payload: Arc::from(raw.payload),
            hash: raw.hash,
        })
    }

    /// Reads the events of `entries`, coalescing neighbouring reads.
    pub(crate) fn read_entries(&self, entries: &[Entry]) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::with_capacity(entries.len());
        let mut i = 0;
        let mut buf = Vec::new();
        while i < entries.len() {
            // Extend the run while the next entry sits close after this one.
            let first = entries[i];
            let mut end = first.offset + first.disk_len();
            let mut j = i + 1;
            while j < entries.len()
                && entries[j].segment == first.segment
                && entries[j].offset >= end
                && entries[j].offset - end <= 4096
                && entries[j].offset + entries[j].disk_len() - first.offset <= 8 << 20
            {
                end = entries[j].offset + entries[j].disk_len();
                j += 1;
            }
            let f = self.reader(first.segment)?;
            buf.resize((end - first.offset) as usize, 0);
            f.read_exact_at(&mut buf, first.offset)
                .map_err(StoreError::io(format!(
                    "reading segment {:08} at offset {}",
                    first.segment, first.offset
                )))?;
            for e in &entries[i..j] {
                out.push(self.decode_at(e, &buf, (e.offset - first.offset) as usize)?);
            }
            i = j;
        }
        Ok(out)
    }

    pub(crate) fn get_by_sequence(&self, s: u64) -> Result<Option<Event>, StoreError> {
        let e = match self.index.read().entry(s) {
            Some(e) => *e,
            None => return Ok(None),
        };
        Ok(self.read_entries(&[e])?.pop())
    }

    pub(crate) fn get(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        let s = self.index.read().by_id.get(&id).copied();
        match s {
            Some(s) => self.get_by_sequence(s),
            None => Ok(None),
        }
    }

    pub(crate) fn entity_events(
        &self,
        entity: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let entries: Vec<Entry> = {
            let ix = self.index.read();
            let Some(eid) = ix.names.get(entity) else {
                return Ok(Vec::new());
            };
            let Some(seqs) = ix.by_entity.get(&eid) else {
                return Ok(Vec::new());
            };
            // Entity sequences are 1-based positions in this list.
            seqs.iter()
                .skip(after.min(seqs.len() as u64) as usize)
                .take(max)
                .filter_map(|s| ix.entry(*s).copied())
                .collect()
        };
        self.read_entries(&entries)
    }

    pub(crate) fn caused_by(&self, id: EventId) -> Vec<EventId> {
        self.index
            .read()
            .children
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// Matching entries with sequence in `(after, upto]`, at most `limit`.
    pub(crate) fn scan_entries(
        &self,
        region: &Region,
        after: u64,
        limit: usize,
        include_system: bool,
        upto: u64,
    ) -> (Vec<Entry>, u64) {
        let ix = self.index.read();
        let end = ix.last_sequence().min(upto);
        let mut out = Vec::new();
        let mut s = after;
        let mut cache: FastMap<(u32, u32, u32), bool> = FastMap::default();
        while s < end && out.len() < limit {
            s += 1;
            let e = ix.entry(s).expect("in range");
            let m = *cache.entry((e.entity, e.scope, e.kind)).or_insert_with(|| {
                let (en, sc, k) = (
                    ix.names.name(e.entity),
                    ix.names.name(e.scope),
                    ix.names.name(e.kind),
                );
                region.matches_parts_or_system(en, sc, k, include_system)
            });
            if m {
                out.push(*e);
            }
            if cache.len() > 65_536 {
                cache.clear();
            }
        }
        (out, s)
    }

    pub(crate) fn scan(
        &self,
        region: &Region,
        after: u64,
        limit: usize,
        include_system: bool,
        upto: u64,
    ) -> Result<Vec<Event>, StoreError> {
        let (entries, _) = self.scan_entries(region, after, limit, include_system, upto);
        self.read_entries(&entries)
    }

    pub(crate) fn watermarks(&self) -> Watermarks {
        let st = self.state.lock();
        Watermarks {
            accepted: self.accepted.load(Ordering::Acquire),
            written: st.written,
            visible: st.visible,
            durable: st.durable,
        }
    }

    /// `min(visible, durable)`: what a cursor may deliver. `Err` when the
    /// store failed or closed.
    pub(crate) fn deliverable(&self) -> Result<u64, String> {
        let st = self.state.lock();
        if let Some(p) = &st.poisoned {
            return Err(p.clone());
        }
        Ok(st.visible.min(st.durable))
    }

    /// Waits until more than `after` is deliverable, the deadline passes or
    /// the store closes. Returns the deliverable watermark.
    pub(crate) fn wait_deliverable(&self, after: u64, deadline: Instant) -> Result<u64, String> {
        let mut st = self.state.lock();
        loop {
            if let Some(p) = &st.poisoned {
                return Err(p.clone());
            }
            let d = st.visible.min(st.durable);
            if d > after || st.shutdown {
                if st.shutdown && d <= after {
                    return Err("the store was closed".into());
                }
                return Ok(d);
            }
            if self.durable_cv.wait_until(&mut st, deadline).timed_out() {
                return Ok(st.visible.min(st.durable));
            }
        }
    }

    pub(crate) fn wait_durable(&self, s: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        self.park_until_durable(&mut st, s, Some(deadline));
        st.durable >= s
    }

    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        let s = self.accepted.load(Ordering::Acquire);
        self.wait(s, true, true)
    }

    pub(crate) fn checkpoint(&self, id: &str) -> Option<Checkpoint> {
        self.index.read().checkpoints.get(id).cloned()
    }

    pub(crate) fn checkpoints(&self) -> Vec<Checkpoint> {
        let mut v: Vec<Checkpoint> = self.index.read().checkpoints.values().cloned().collect();
        v.sort_by(|a, b| a.cursor.cmp(&b.cursor));
        v
    }

    pub(crate) fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.sync()?;
        let ix = self.index.read();
        verify_dir(
            self.seg_dir.parent().expect("segments dir has a parent"),
            Some(&ix),
        )
    }

    pub(crate) fn add_subscriber(&self, q: Arc<SubscriberQueue>) {
        let mut subs = self.subscribers.lock();
        subs.push(q);
        self.has_subscribers.store(true, Ordering::Release);
    }

    fn poison(&self, why: String) {
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
}

struct Writer {
    core: Arc<Core>,
    dir: PathBuf,
    segment: u32,
    file: Arc<File>,
    len: u64,
    since_snapshot: u64,
}

impl Writer {
    fn run(mut self, rx: Receiver<Cmd>) {
        let mut batch: Vec<FrameCmd> = Vec::new();
        let mut shutdown = false;
        while !shutdown {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(Cmd::Frame(f)) => batch.push(f),
                Ok(Cmd::Shutdown) | Err(RecvTimeoutError::Disconnected) => shutdown = true,
                Err(RecvTimeoutError::Timeout) => {
                    if self.since_snapshot >= self.core.options.snapshot_every {
                        if let Err(e) = self.snapshot() {
                            eprintln!("batpak: periodic index snapshot failed (the log is unaffected): {e}");
                        }
                    }
                    continue;
                }
            }
            // Group everything already queued into one write.
            let mut bytes = batch.first().map_or(0, |f| f.bytes.len());
            while bytes < 16 << 20 && !shutdown {
                match rx.try_recv() {
                    Ok(Cmd::Frame(f)) => {
                        bytes += f.bytes.len();
                        batch.push(f);
                    }
                    Ok(Cmd::Shutdown) | Err(TryRecvError::Disconnected) => shutdown = true,
                    Err(TryRecvError::Empty) => break,
                }
            }
            if !batch.is_empty() {
                if let Err(e) = self.write(&mut batch) {
                    self.core.poison(e.to_string());
                    // Keep draining so blocked senders are released.
                    while rx.recv().is_ok() {}
                    return;
                }
            }
        }
        // Clean shutdown: make everything durable, then snapshot.
        let synced = self.file.sync_data();
        let mut st = self.core.state.lock();
        if synced.is_ok() {
            st.durable = st.written;
        } else if st.poisoned.is_none() {
            st.poisoned = Some("final fsync failed".into());
        }
        let ok = st.poisoned.is_none();
        let waiters = st.take_done_waiters();
        drop(st);
        unpark_all(waiters);
        if ok && self.since_snapshot > 0 {
            if let Err(e) = self.snapshot() {
                eprintln!("batpak: index snapshot on close failed (the log is unaffected): {e}");
            }
        }
        let mut st = self.core.state.lock();
        st.shutdown = true;
        let waiters = st.take_done_waiters();
        drop(st);
        unpark_all(waiters);
        self.core.visible_cv.notify_all();
        self.core.durable_cv.notify_all();
        self.core.sync_cv.notify_all();
    }

    fn snapshot(&mut self) -> Result<(), StoreError> {
        self.file
            .sync_data()
            .map_err(StoreError::io("syncing before an index snapshot"))?;
        let ix = self.core.index.read();
        snapshot::save(&self.dir, self.core.store_id, &ix, self.segment, self.len)?;
        self.since_snapshot = 0;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(StoreError::io(format!(
            "syncing segment {:08} before rotation",
            self.segment
        )))?;
        let n = self.segment + 1;
        let f = Arc::new(create_segment(&self.core.seg_dir, self.core.store_id, n)?);
        let p = segment_path(&self.core.seg_dir, n);
        let r =
            Arc::new(File::open(&p).map_err(StoreError::io(format!("opening {}", p.display())))?);
        self.core.readers.write().insert(n, r);
        {
            // Everything in the old segment is durable now.
            let mut st = self.core.state.lock();
            st.durable = st.durable.max(st.written);
            st.sync_file = f.clone();
            let waiters = st.take_done_waiters();
            drop(st);
            unpark_all(waiters);
            self.core.durable_cv.notify_all();
        }
        self.file = f;
        self.segment = n;
        self.len = super::segment::SEGMENT_HEADER;
        Ok(())
    }

    fn write(&mut self, batch: &mut Vec<FrameCmd>) -> Result<(), StoreError> {
        let mut out: Vec<u8> = Vec::new();
        let mut placed: Vec<(u32, u64, FrameCmd)> = Vec::with_capacity(batch.len());
        for f in batch.drain(..) {
            let fl = f.bytes.len() as u64;
            if self.len + out.len() as u64 + fl > self.core.options.segment_size
                && self.len + out.len() as u64 > super::segment::SEGMENT_HEADER
            {
                self.flush(&mut out)?;
                self.publish(&mut placed)?;
                self.rotate()?;
            }
            let base = self.len + out.len() as u64;
            out.extend_from_slice(&f.bytes);
            placed.push((self.segment, base, f));
        }
        self.flush(&mut out)?;
        self.publish(&mut placed)
    }

    fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), StoreError> {
        if out.is_empty() {
            return Ok(());
        }
        (&*self.file)
            .write_all(out)
            .map_err(StoreError::io(format!(
                "writing segment {:08}",
                self.segment
            )))?;
        self.len += out.len() as u64;
        out.clear();
        Ok(())
    }

    /// Publishes written frames to the index, watermarks and subscribers.
    fn publish(&mut self, placed: &mut Vec<(u32, u64, FrameCmd)>) -> Result<(), StoreError> {
        if placed.is_empty() {
            return Ok(());
        }
        let mut last = 0;
        let subs = self.core.has_subscribers.load(Ordering::Acquire);
        let mut notify: Vec<Event> = Vec::new();
        {
            let mut ix = self.core.index.write();
            for (seg, base, f) in placed.iter() {
                for (h, rel, hlen) in &f.events {
                    let at = *rel as usize;
                    let plen_at = at + 4 + *hlen as usize + 32;
                    let plen = u32::from_le_bytes(
                        f.bytes[plen_at..plen_at + 4].try_into().expect("4 bytes"),
                    ) as usize;
                    let payload = &f.bytes[plen_at + 4..plen_at + 4 + plen];
                    ix.insert(h, *seg, base + *rel as u64, *hlen, payload)
                        .map_err(|reason| StoreError::Corrupt {
                            segment: *seg,
                            offset: base + *rel as u64,
                            reason,
                        })?;
                    last = h.sequence;
                    if subs {
                        let hash: [u8; 32] = f.bytes[at + 4 + *hlen as usize..plen_at]
                            .try_into()
                            .expect("32 bytes");
                        notify.push(Event {
                            header: Arc::new(h.clone()),
                            payload: Arc::from(payload),
                            hash,
                        });
                    }
                }
            }
        }
        self.since_snapshot += placed.iter().map(|p| p.2.events.len() as u64).sum::<u64>();
        placed.clear();
        {
            let mut st = self.core.state.lock();
            st.written = last;
            st.visible = last;
            st.unsynced_since.get_or_insert_with(Instant::now);
            if st.sync_should_wake() {
                self.core.sync_cv.notify_one();
            }
            self.core.visible_cv.notify_all();
        }
        if subs {
            let mut list = self.core.subscribers.lock();
            list.retain(|s| !s.is_dropped());
            for s in list.iter() {
                s.push_all(&notify);
            }
            self.core
                .has_subscribers
                .store(!list.is_empty(), Ordering::Release);
        }
        Ok(())
    }
}

fn sync_loop(core: &Core) {
    let interval = core.options.sync_interval;
    loop {
        let (target, file) = {
            let mut st = core.state.lock();
            loop {
                if st.poisoned.is_some() || (st.shutdown && st.written <= st.durable) {
                    return;
                }
                let dirty = st.written > st.durable;
                let due = st.unsynced_since.is_some_and(|t| t.elapsed() >= interval);
                if dirty && (st.durable_requested > st.durable || due || st.shutdown) {
                    break;
                }
                let wake = st.unsynced_since.filter(|_| dirty).map(|t| t + interval);
                st.sync_timed = wake.is_some();
                match wake {
                    Some(t) => {
                        let _ = core.sync_cv.wait_until(&mut st, t);
                    }
                    None => core.sync_cv.wait(&mut st),
                }
            }
            st.unsynced_since = None;
            (st.written, st.sync_file.clone())
        };
        let r = file.sync_data();
        let mut st = core.state.lock();
        match r {
            Ok(()) => {
                st.durable = st.durable.max(target);
                if st.written > st.durable {
                    st.unsynced_since.get_or_insert_with(Instant::now);
                }
            }
            Err(e) => {
                if st.poisoned.is_none() {
                    st.poisoned = Some(format!("fsync failed: {e}"));
                }
            }
        }
        let waiters = st.take_done_waiters();
        drop(st);
        unpark_all(waiters);
        core.durable_cv.notify_all();
    }
}
