//! The sequencer: validates a batch, checks idempotency and optimistic
//! concurrency, assigns sequences, timestamps, ids and chain links, encodes
//! one frame and queues it for writing. It runs on the caller's thread
//! under one short lock; nothing shared changes unless the whole batch is
//! valid.
//!
//! Who writes the queue (the *drain role*, held by one thread at a time,
//! decided under this lock): an appender that waits for its write takes the
//! role when it is free and writes every queued frame itself (its own and
//! whatever others queued: combining), so `Wait::Visible` costs a write, not
//! a hand-off to another thread and back. An appender that does not wait
//! (`Wait::Accepted`) leaves its frame for the flusher thread, or writes the
//! queue itself once it holds `FLUSH_FRAMES` frames, so a stream of such
//! appends is written in large writes. Invariant: a non-empty queue has a
//! drainer or a flusher asked to drain it.

use super::durability::Durability;
use super::frame::{begin_frame, finish_frame, FRAME_HEADER, MAX_FRAME_BODY};
use super::index::FastMap;
use super::le_bytes::u32_at;
use super::read_path::ReadPath;
use super::segment::{push_event, PART_PREFIX, TAG_BATCH, TAG_TXN_PART};
use super::{AppendOptions, Checkpoint, StoreError, Wait};
use crate::event::{hash_encoded, now_us, ChainLink, EventHeader, EventId, Proposal, Receipt};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::Ordering;

use crate::system::{CHECKPOINT_KIND, CURSOR_ENTITY_PREFIX, SYSTEM_SCOPE};

/// The pending maps (accepted, not yet visible) are pruned of visible
/// entries once they hold this many: small enough to stay in cache (an
/// insert into a map of 65,536 entries of ~112 bytes missed it every time).
const PENDING_PRUNE_AT: usize = 4096;

/// Chain heads cached before those the index already holds are dropped
/// (they are read back from the log on next use): one cached head per
/// entity ever appended to grew without bound (about 200 MB for a million
/// entities).
pub(crate) const HEADS_CACHE_MAX: usize = 65_536;

/// An accepted-only appender writes the queue itself once it holds this
/// many frames (or `FLUSH_BYTES`), instead of leaving it to the flusher.
const FLUSH_FRAMES: usize = 256;
const FLUSH_BYTES: usize = 1 << 20;

/// Frames sequenced and not yet written, encoded back to back in one
/// buffer: no buffer per frame, and the drainer writes them with one write
/// and no copy.
#[derive(Default)]
pub(crate) struct Queue {
    pub bytes: Vec<u8>,
    /// Each frame's end offset in `bytes` and the end index of its events
    /// in `events`, in order.
    pub frames: Vec<(usize, usize)>,
    /// Each event's header, the offset in `bytes` of its `header_len` field
    /// and its header's length.
    pub events: Vec<(EventHeader, usize, u32)>,
}

/// One queued event as the writer and a bulk transaction index it: its
/// header, where its frame and the event itself start in the queue's
/// bytes, its encoded header's length, its hash and its payload.
pub(crate) struct QueuedEvent<'q> {
    pub header: &'q EventHeader,
    pub frame_at: usize,
    pub at: usize,
    pub header_len: u32,
    pub hash: [u8; 32],
    pub payload: &'q [u8],
}

impl Queue {
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Calls `f` on each event of the frames `frames` (indexes into
    /// `self.frames`), in order, stopping at its first error. The one walk
    /// of the queue's layout, shared by the writer and bulk transactions.
    pub fn visit<E>(
        &self,
        frames: std::ops::Range<usize>,
        mut f: impl FnMut(QueuedEvent<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let (mut frame_at, mut ev) = match frames.start {
            0 => (0, 0),
            i => self.frames[i - 1],
        };
        for &(frame_end, frame_events) in &self.frames[frames] {
            for (header, at, header_len) in &self.events[ev..frame_events] {
                let hash_at = at + 4 + *header_len as usize;
                let len_at = hash_at + 32;
                let len = u32_at(&self.bytes, len_at) as usize;
                f(QueuedEvent {
                    header,
                    frame_at,
                    at: *at,
                    header_len: *header_len,
                    hash: self.bytes[hash_at..len_at].try_into().expect("32 bytes"),
                    payload: &self.bytes[len_at + 4..len_at + 4 + len],
                })?;
            }
            (frame_at, ev) = (frame_end, frame_events);
        }
        Ok(())
    }

    /// Empties the queue, keeping modest buffers for reuse.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.frames.clear();
        self.events.clear();
        if self.bytes.capacity() > 8 << 20 {
            self.bytes = Vec::new();
        }
        if self.events.capacity() > 1 << 16 {
            self.events = Vec::new();
        }
    }
}

/// The head of an entity's chain.
#[derive(Clone, Copy)]
struct Head {
    entity_seq: u64,
    link: ChainLink,
}

/// One change a batch made to the sequencer's maps, to undo when the
/// batch is refused after it (events are referred to by their index in the
/// batch, whose header holds the entity name and key).
enum Undo {
    /// The entity of event `.0` had this head before (`None`: none cached).
    Head(usize, Option<Head>),
    /// A pending id was added.
    Pending(EventId),
    /// The idempotency key of event `.0` was added.
    Key(usize),
}

/// Reverts a refused batch's changes (its undo log), newest first; its
/// events are still in the queue.
/// Closes the frame begun at `fstart` (its events from `ev0` in the
/// queue) once its events are sequenced with result `r`: on an error, or a
/// body over [`MAX_FRAME_BODY`], every trace of it is undone; with no event
/// left (all deduplicated) the frame is dropped; otherwise its count is
/// written, its CRC sealed and it joins the queue. Returns the number of
/// events it holds. `[what, holder, fix]` word the refusal: "{what}
/// encodes to N bytes; {holder} holds at most M bytes — {fix}".
fn close_frame(
    seq: &mut Sequencer,
    r: Result<(), StoreError>,
    fstart: usize,
    ev0: usize,
    [what, holder, fix]: [&str; 3],
) -> Result<usize, StoreError> {
    let r = r.and_then(|()| {
        let body = seq.queue.bytes.len() - fstart - FRAME_HEADER;
        if body > MAX_FRAME_BODY {
            Err(StoreError::BadBatch(format!(
                "{what} encodes to {body} bytes; {holder} holds at most {MAX_FRAME_BODY} bytes — {fix}"
            )))
        } else {
            Ok(())
        }
    });
    if let Err(e) = r {
        undo_batch(seq);
        seq.queue.bytes.truncate(fstart);
        seq.queue.events.truncate(ev0);
        return Err(e);
    }
    seq.undo.clear();
    let added = seq.queue.events.len() - ev0;
    let q = &mut seq.queue;
    if added == 0 {
        q.bytes.truncate(fstart);
        return Ok(0);
    }
    q.bytes[fstart + FRAME_HEADER + 1..fstart + FRAME_HEADER + 5]
        .copy_from_slice(&(added as u32).to_le_bytes());
    finish_frame(&mut q.bytes, fstart);
    let ends = (q.bytes.len(), q.events.len());
    q.frames.push(ends);
    Ok(added)
}

fn undo_batch(seq: &mut Sequencer) {
    let undo = std::mem::take(&mut seq.undo);
    let events = &seq.queue.events;
    for u in undo.iter().rev() {
        match u {
            Undo::Head(at, Some(h)) => {
                if let Some(cur) = seq.heads.get_mut(&events[*at].0.coordinate.entity) {
                    *cur = *h;
                }
            }
            Undo::Head(at, None) => {
                seq.heads.remove(&events[*at].0.coordinate.entity);
            }
            Undo::Pending(id) => {
                seq.pending.remove(id);
            }
            Undo::Key(at) => {
                if let Some(k) = &events[*at].0.idempotency_key {
                    seq.pending_keys.remove(k);
                }
            }
        }
    }
    let mut undo = undo;
    undo.clear();
    seq.undo = undo;
}

struct Pending {
    receipt: Receipt,
    correlation: EventId,
    /// The event's [`content_digest`] when a strict append gave it an
    /// idempotency key or an explicit id (an event not yet visible cannot
    /// be read back, so a repeated key or id is checked against this);
    /// `None` for an event with a generated id, or from a non-strict append
    /// (the host's reactions), which costs no digest: a strict append that
    /// names it takes the digest from its queued bytes
    /// ([`Appender::queued_digest`]).
    content: Option<Digest>,
}

/// A 128-bit digest of what makes two appends "the same event" for
/// idempotency (see [`content_digest`]).
type Digest = [u8; 16];

/// The digest of an event's content for idempotency: entity, scope, kind,
/// causation and payload bytes — not the id or key (they are what matched),
/// not what the store assigns (sequence, timestamp, chain link), not the
/// correlation (inherited from the causation when not given) and not the
/// meta (lineage: a reactor's new version carries another digest).
/// blake3, so a client cannot craft different content with an equal digest.
fn content_digest(
    entity: &str,
    scope: &str,
    kind: &str,
    causation: Option<EventId>,
    payload: &[u8],
) -> Digest {
    let mut h = blake3::Hasher::new();
    for part in [entity.as_bytes(), scope.as_bytes(), kind.as_bytes()] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    match causation {
        Some(c) => h.update(&[1]).update(&c.0.to_le_bytes()),
        None => h.update(&[0]),
    };
    h.update(&(payload.len() as u64).to_le_bytes());
    h.update(payload);
    let mut d = [0u8; 16];
    d.copy_from_slice(&h.finalize().as_bytes()[..16]);
    d
}

/// An earlier event an idempotency key or explicit id matched: its
/// receipt and content digest (see [`Pending::content`]).
type Known = (Receipt, Option<Digest>);

pub(crate) struct Sequencer {
    /// Set by close: no more batches.
    pub closed: bool,
    /// Frames sequenced and not yet taken by a drainer, in sequence order.
    pub queue: Queue,
    /// Frames the queue may hold before an appender must wait for (or do)
    /// the writing (backpressure).
    pub capacity: usize,
    /// A thread holds the drain role (see the module note).
    pub draining: bool,
    /// The flusher thread was asked to drain the queue.
    pub flush_asked: bool,
    /// A bulk transaction is open (`bulk.rs`): it holds the drain role, and
    /// every other append waits on `Core::bulk_cv` until it ends.
    pub bulk_open: bool,
    pub(crate) next_seq: u64,
    last_ts: u64,
    id_seed: u64,
    id_counter: u64,
    heads: FastMap<String, Head>,
    /// Cached heads above which [`Appender::trim_heads`] runs next.
    heads_trim_at: usize,
    pending: FastMap<EventId, Pending>,
    pending_keys: FastMap<String, EventId>,
    retain_at: usize,
    /// Reused scratch: one encoded header, a batch's undo log.
    hbuf: Vec<u8>,
    undo: Vec<Undo>,
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

impl Sequencer {
    /// A sequencer continuing after sequence `last` whose queue holds up to
    /// `capacity` frames.
    pub fn new(last: u64, capacity: usize) -> Sequencer {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Sequencer {
            closed: false,
            queue: Queue::default(),
            capacity: capacity.max(1),
            draining: false,
            flush_asked: false,
            bulk_open: false,
            next_seq: last + 1,
            last_ts: 0,
            id_seed: u64::from_le_bytes(seed),
            id_counter: 0,
            heads: FastMap::default(),
            heads_trim_at: HEADS_CACHE_MAX,
            pending: FastMap::default(),
            pending_keys: FastMap::default(),
            retain_at: PENDING_PRUNE_AT,
            hbuf: Vec::with_capacity(256),
            undo: Vec::new(),
        }
    }

    /// Forgets what an abandoned bulk transaction sequenced from sequence
    /// `first` on: the next event gets `first` again. Chain heads are a
    /// cache of the index (which never saw the transaction), so they are
    /// dropped and reloaded.
    pub fn rewind(&mut self, first: u64) {
        self.next_seq = first;
        self.heads.clear();
        self.pending.retain(|_, p| p.receipt.sequence < first);
        let pending = &self.pending;
        self.pending_keys
            .retain(|_, id| pending.get(id).is_some_and(|p| p.receipt.sequence < first));
        self.queue.clear();
        self.undo.clear();
    }

    /// Forgets the pending entries of `events`, which the index now holds
    /// (a bulk transaction's part, indexed uncommitted: `uncommitted.rs`),
    /// so an open transaction keeps no pending entry per event.
    pub fn forget_pending(&mut self, events: &[(EventHeader, usize, u32)]) {
        for (h, ..) in events {
            self.pending.remove(&h.id);
            if let Some(k) = &h.idempotency_key {
                self.pending_keys.remove(k);
            }
        }
    }

    /// Pending entries (ids and keys) and cached chain heads held: what
    /// the sequencer keeps beyond the index.
    #[cfg(test)]
    pub fn held(&self) -> (usize, usize) {
        (
            self.pending.len() + self.pending_keys.len(),
            self.heads.len(),
        )
    }

    /// Stops accepting batches; true the first time.
    pub fn close(&mut self) -> bool {
        !std::mem::replace(&mut self.closed, true)
    }
}

/// What an append needs: the sequencer, the read path (for idempotency,
/// causation and chain heads), the durability state (to wait), and the
/// flusher's wake-up and the writer's drain (to get the queue written).
pub(crate) struct Appender<'a> {
    pub seq: &'a Mutex<Sequencer>,
    pub reads: &'a ReadPath,
    pub dur: &'a Durability,
    /// Wakes the flusher thread (asked to write the queue).
    pub flush_cv: &'a Condvar,
    /// Writes the queue on this thread, the drain role taken
    /// (`Core::drain`; passed in so that this module does not depend on
    /// the writer's).
    pub drain: &'a dyn Fn(bool),
    /// Signalled (with the `seq` lock) when a bulk transaction ends.
    pub bulk_cv: &'a Condvar,
}

/// What an appender does about the queue after adding its frame.
enum Role {
    /// Someone else writes it (a drainer or the asked flusher).
    None,
    /// Take the drain role: write the queue on this thread.
    Drain,
    /// Ask the flusher thread to drain.
    AskFlusher,
    /// The queue is full and another thread is writing: wait for this
    /// frame's write.
    Backpressure,
}

impl Appender<'_> {
    pub fn append(
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
        let _durable = options
            .wait_durable()
            .then(|| super::durability::DurableAppend::enter(self.dur()));
        let mut seq = self.seq.lock();
        // A bulk transaction owns the log until it commits or aborts: this
        // append goes after it (bulk.rs).
        while seq.bulk_open {
            self.bulk_cv.wait(&mut seq);
        }
        if let Some(p) = &self.dur().state.lock().poisoned {
            return Err(self.dur().failure(p));
        }
        if seq.closed {
            return Err(StoreError::Closed);
        }
        let payload_bytes: usize = proposals.iter().map(|p| p.payload.len() + 256).sum();
        if payload_bytes > MAX_FRAME_BODY {
            return Err(StoreError::BadBatch(format!(
                "batch of {n} events is about {payload_bytes} bytes; one atomic batch holds at most {MAX_FRAME_BODY} bytes — split it"
            )));
        }
        let mut receipts: Vec<Receipt> = Vec::with_capacity(n);
        let fstart = seq.queue.bytes.len();
        let ev0 = seq.queue.events.len();
        seq.queue.bytes.reserve(payload_bytes + FRAME_HEADER + 8);
        begin_frame(&mut seq.queue.bytes);
        seq.queue.bytes.push(TAG_BATCH);
        seq.queue.bytes.extend_from_slice(&0u32.to_le_bytes());
        let first = seq.next_seq;
        // One timestamp per batch (never behind the last one): a clock read
        // per event showed in profiles and bought nothing.
        let ts = now_us().max(seq.last_ts);
        let mut max_dedup_seq = 0u64;
        // The batch writes the sequencer's maps directly (no per-batch maps
        // merged afterwards) and logs what it changed, so a refused batch
        // is undone and leaves no trace.
        let checkpoint = options.checkpoint.as_ref().map(|cp| {
            let rec = Checkpoint {
                cursor: cp.cursor.clone(),
                region: cp.region,
                sequence: cp.sequence,
                event_id: cp.event_id,
            };
            let coord = crate::event::Coordinate {
                entity: format!("{CURSOR_ENTITY_PREFIX}{}", cp.cursor),
                scope: SYSTEM_SCOPE.into(),
            };
            (
                Proposal::new(coord, CHECKPOINT_KIND, rec.to_record()),
                false,
            )
        });
        self.prefetch_heads(&mut seq, &proposals)?;
        let items = proposals.into_iter().map(|p| (p, true)).chain(checkpoint);
        let r = self.sequence_items(
            &mut seq,
            items,
            n,
            ts,
            &mut receipts,
            &mut max_dedup_seq,
            !system,
        );
        let added = match close_frame(
            &mut seq,
            r,
            fstart,
            ev0,
            ["batch", "one atomic batch", "split it"],
        ) {
            Ok(added) => added,
            Err(e) => {
                drop(seq);
                return Err(self.name_original(e));
            }
        };
        if added == 0 {
            drop(seq);
            if max_dedup_seq > 0 {
                self.dur().wait(
                    max_dedup_seq,
                    options.wait_durable(),
                    options.wait_visible(),
                )?;
            }
            return Ok(receipts);
        }
        let next = first + added as u64;
        // Commit the sequencer's view: from here the batch is accepted.
        seq.next_seq = next;
        seq.last_ts = ts;
        // Forget what the index now answers for; the threshold doubles with
        // what stays pending so a lagging writer never makes this quadratic.
        if seq.pending.len() + seq.pending_keys.len() > seq.retain_at {
            let visible = self.dur().state.lock().visible;
            seq.pending.retain(|_, p| p.receipt.sequence > visible);
            let Sequencer {
                pending,
                pending_keys,
                ..
            } = &mut *seq;
            pending_keys.retain(|_, id| pending.contains_key(id));
            seq.retain_at =
                (2 * (seq.pending.len() + seq.pending_keys.len())).max(PENDING_PRUNE_AT);
        }
        let last = next - 1;
        self.dur().accepted.store(last, Ordering::Release);
        let frames = seq.queue.frames.len();
        let role = if seq.draining {
            if frames > seq.capacity {
                Role::Backpressure
            } else {
                Role::None
            }
        } else if options.wait != Wait::Accepted
            || frames >= FLUSH_FRAMES.min(seq.capacity)
            || seq.queue.bytes.len() >= FLUSH_BYTES
        {
            seq.draining = true;
            Role::Drain
        } else if !seq.flush_asked {
            seq.flush_asked = true;
            Role::AskFlusher
        } else {
            Role::None
        };
        drop(seq);
        let (durable, visible) = (options.wait_durable(), options.wait_visible());
        match role {
            Role::None => {}
            Role::Drain => (self.drain)(durable),
            Role::AskFlusher => {
                self.flush_cv.notify_one();
            }
            Role::Backpressure => self.dur().wait(last, false, true)?,
        }
        self.dur().wait(last.max(max_dedup_seq), durable, visible)?;
        Ok(receipts)
    }

    fn dur(&self) -> &Durability {
        self.dur
    }

    /// Fills in the entity and kind of an idempotency conflict's original
    /// event when it was being written as the conflict was found: waits
    /// (the sequencer lock released) until it is visible and reads it.
    fn name_original(&self, mut e: StoreError) -> StoreError {
        if let StoreError::IdempotencyConflict(c) = &mut e {
            if c.original_entity.is_empty()
                && self.dur().wait(c.original_sequence, false, true).is_ok()
            {
                if let Ok(ev) = self.read_at(c.original_sequence) {
                    c.original_entity.clone_from(&ev.header.coordinate.entity);
                    c.original_kind.clone_from(&ev.header.kind);
                }
            }
        }
        e
    }

    /// Sequences `proposals` (validated by the caller) as part `part` of
    /// bulk transaction `txn`: one part frame encoded into the queue, which
    /// the caller (holding the drain role and the bulk flag) writes without
    /// publishing. Returns the receipts and how many events the frame holds
    /// (0: all deduplicated, no frame). A refused part leaves no trace.
    pub fn sequence_part(
        &self,
        seq: &mut Sequencer,
        proposals: Vec<Proposal>,
        txn: u64,
        part: u32,
    ) -> Result<(Vec<Receipt>, usize), StoreError> {
        let n = proposals.len();
        let payload_bytes: usize = proposals.iter().map(|p| p.payload.len() + 256).sum();
        if payload_bytes > MAX_FRAME_BODY {
            return Err(StoreError::BadBatch(format!(
                "bulk part of {n} events is about {payload_bytes} bytes; one part holds at most {MAX_FRAME_BODY} bytes — append it in smaller parts"
            )));
        }
        let mut receipts: Vec<Receipt> = Vec::with_capacity(n);
        let fstart = seq.queue.bytes.len();
        let ev0 = seq.queue.events.len();
        seq.queue
            .bytes
            .reserve(payload_bytes + FRAME_HEADER + PART_PREFIX);
        begin_frame(&mut seq.queue.bytes);
        seq.queue.bytes.push(TAG_TXN_PART);
        seq.queue.bytes.extend_from_slice(&0u32.to_le_bytes());
        seq.queue.bytes.extend_from_slice(&txn.to_le_bytes());
        seq.queue.bytes.extend_from_slice(&part.to_le_bytes());
        let first = seq.next_seq;
        let ts = now_us().max(seq.last_ts);
        let mut max_dedup_seq = 0u64;
        self.prefetch_heads(seq, &proposals)?;
        let items = proposals.into_iter().map(|p| (p, true));
        let r = self.sequence_items(seq, items, n, ts, &mut receipts, &mut max_dedup_seq, true);
        let added = close_frame(
            seq,
            r,
            fstart,
            ev0,
            ["bulk part", "one part", "append it in smaller parts"],
        )?;
        if added == 0 {
            return Ok((receipts, 0));
        }
        seq.next_seq = first + added as u64;
        seq.last_ts = ts;
        Ok((receipts, added))
    }

    /// Sequences and encodes `items` (proposals, flagged `true`, then the
    /// checkpoint record) into the queue, writing the sequencer's heads and
    /// pending maps directly and logging each change in its undo log (the
    /// caller undoes them if this or a later check fails). `strict`: a
    /// known key or id with other content is an
    /// [`StoreError::IdempotencyConflict`] (clients' appends); otherwise
    /// the known event's receipt is returned whatever the content (the
    /// host's own appends).
    #[allow(clippy::too_many_arguments)]
    fn sequence_items(
        &self,
        seq: &mut Sequencer,
        items: impl Iterator<Item = (Proposal, bool)>,
        n: usize,
        ts: u64,
        receipts: &mut Vec<Receipt>,
        max_dedup_seq: &mut u64,
        strict: bool,
    ) -> Result<(), StoreError> {
        let mut hbuf = std::mem::take(&mut seq.hbuf);
        let r = self.sequence_into(
            seq,
            items,
            n,
            ts,
            receipts,
            max_dedup_seq,
            strict,
            &mut hbuf,
        );
        seq.hbuf = hbuf;
        r
    }

    /// [`sequence_items`](Self::sequence_items) with the header scratch
    /// buffer taken out of the sequencer.
    #[allow(clippy::too_many_arguments)]
    fn sequence_into(
        &self,
        seq: &mut Sequencer,
        items: impl Iterator<Item = (Proposal, bool)>,
        n: usize,
        ts: u64,
        receipts: &mut Vec<Receipt>,
        max_dedup_seq: &mut u64,
        strict: bool,
        hbuf: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let mut next = seq.next_seq;
        for (p, is_proposal) in items {
            let i = if is_proposal { receipts.len() } else { n };
            // Idempotency: a known key, else a known explicit id, returns the
            // original receipt and appends nothing.
            let mut known = match &p.idempotency_key {
                Some(k) => self.lookup_key(seq, k)?,
                None => None,
            };
            if let (None, Some(id)) = (known, p.id) {
                known = self.lookup_id(seq, id)?;
            }
            // Only an event with a key or an explicit id can be named again
            // by a later one, and only a strict append compares content:
            // only those pay for a digest.
            let content = (strict && (p.idempotency_key.is_some() || p.id.is_some())).then(|| {
                content_digest(
                    &p.coordinate.entity,
                    &p.coordinate.scope,
                    &p.kind,
                    p.causation,
                    &p.payload,
                )
            });
            if let Some((r, original)) = known {
                let original = match original {
                    Some(d) => Some(d),
                    None if strict => Some(self.queued_digest(seq, i, r)?),
                    None => None,
                };
                // A client's retry must be the same event (Stripe's and
                // Kafka's rule); the host's own appends (reactions, whose
                // ids are derived from reactor, source event and position)
                // keep the committed event when a new version proposes
                // other content — see DESIGN.md, "Idempotency".
                if strict && (original != content || p.id.is_some_and(|id| id != r.id)) {
                    return Err(self.conflict(seq, i, &p, r));
                }
                *max_dedup_seq = (*max_dedup_seq).max(r.sequence);
                if is_proposal {
                    receipts.push(Receipt {
                        deduplicated: true,
                        ..r
                    });
                }
                continue;
            }
            let head = self.head(seq, &p.coordinate.entity)?;
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
            let id = match (p.id, &p.idempotency_key) {
                (Some(id), _) => id,
                (None, Some(k)) => EventId::derive(&[b"idempotency-key", k.as_bytes()]),
                (None, None) => seq.next_id(ts),
            };
            let correlation = match (p.correlation, p.causation) {
                (Some(c), Some(cause)) => {
                    self.correlation_of(seq, cause).ok_or_else(|| {
                        StoreError::UnknownCausation {
                            index: i,
                            id: cause.to_string(),
                        }
                    })??;
                    c
                }
                (Some(c), None) => c,
                (None, Some(cause)) => self.correlation_of(seq, cause).ok_or_else(|| {
                    StoreError::UnknownCausation {
                        index: i,
                        id: cause.to_string(),
                    }
                })??,
                (None, None) => id,
            };
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
            let hbytes =
                postcard::to_extend(&header, std::mem::take(hbuf)).map_err(|e| StoreError::Io {
                    context: "encoding an event header".into(),
                    source: std::io::Error::other(e),
                })?;
            let hash = hash_encoded(&hbytes, &p.payload);
            let at_bytes = seq.queue.bytes.len();
            push_event(&mut seq.queue.bytes, &hbytes, &hash, &p.payload);
            let receipt = Receipt {
                id,
                sequence: next,
                entity_sequence: cur + 1,
                timestamp_us: ts,
                hash,
                deduplicated: false,
            };
            let new_head = Head {
                entity_seq: cur + 1,
                link: ChainLink { id, hash },
            };
            let at = seq.queue.events.len();
            match seq.heads.get_mut(&header.coordinate.entity) {
                Some(h) => {
                    let old = *h;
                    *h = new_head;
                    seq.undo.push(Undo::Head(at, Some(old)));
                }
                None => {
                    seq.undo.push(Undo::Head(at, None));
                    seq.heads.insert(header.coordinate.entity.clone(), new_head);
                }
            }
            seq.pending.insert(
                id,
                Pending {
                    receipt,
                    correlation,
                    content,
                },
            );
            seq.undo.push(Undo::Pending(id));
            if let Some(k) = &header.idempotency_key {
                seq.pending_keys.insert(k.clone(), id);
                seq.undo.push(Undo::Key(at));
            }
            let hlen = hbytes.len() as u32;
            seq.queue.events.push((header, at_bytes, hlen));
            *hbuf = hbytes;
            if is_proposal {
                receipts.push(receipt);
            }
            next += 1;
        }
        Ok(())
    }

    fn lookup_key(&self, seq: &Sequencer, key: &str) -> Result<Option<Known>, StoreError> {
        if let Some(p) = seq.pending_keys.get(key).and_then(|id| seq.pending.get(id)) {
            return Ok(Some((p.receipt, p.content)));
        }
        let s = self.reads.index.read().keys.get(key).copied();
        match s {
            Some(s) => self.known_at(s).map(Some),
            None => Ok(None),
        }
    }

    fn lookup_id(&self, seq: &Sequencer, id: EventId) -> Result<Option<Known>, StoreError> {
        if let Some(p) = seq.pending.get(&id) {
            return Ok(Some((p.receipt, p.content)));
        }
        let s = self.reads.index.read().seq_of_any(id);
        match s {
            Some(s) => self.known_at(s).map(Some),
            None => Ok(None),
        }
    }

    /// The receipt and content digest of the visible event at sequence
    /// `s`, read back from the log (the index keeps no digest: memory per
    /// event stays small, and only a repeated key or id pays this read).
    fn known_at(&self, s: u64) -> Result<Known, StoreError> {
        let ev = self.read_at(s)?;
        let h = &ev.header;
        let content = content_digest(
            &h.coordinate.entity,
            &h.coordinate.scope,
            &h.kind,
            h.causation,
            &ev.payload,
        );
        let receipt = Receipt {
            id: h.id,
            sequence: s,
            entity_sequence: h.entity_sequence,
            timestamp_us: h.timestamp_us,
            hash: ev.hash,
            deduplicated: true,
        };
        Ok((receipt, Some(content)))
    }

    /// The content digest of pending event `original`, which has a
    /// generated id (no digest kept), from its bytes still in the queue.
    /// Once a drainer has taken them it is neither in the queue nor
    /// readable until visible: the batch is refused, to be retried.
    fn queued_digest(
        &self,
        seq: &Sequencer,
        index: usize,
        original: Receipt,
    ) -> Result<Digest, StoreError> {
        let q = &seq.queue;
        let at = q
            .events
            .binary_search_by_key(&original.sequence, |(h, _, _)| h.sequence)
            .ok();
        let found = at.and_then(|at| {
            let (h, off, hlen) = &q.events[at];
            let len_at = off + 4 + *hlen as usize + 32;
            let len = u32::from_le_bytes(q.bytes.get(len_at..len_at + 4)?.try_into().ok()?);
            let payload = q.bytes.get(len_at + 4..len_at + 4 + len as usize)?;
            Some(content_digest(
                &h.coordinate.entity,
                &h.coordinate.scope,
                &h.kind,
                h.causation,
                payload,
            ))
        });
        found.ok_or_else(|| {
            StoreError::BadBatch(format!(
                "proposal {index}: id {} names the event at sequence {}, which is being written right now; retry once it is visible",
                original.id, original.sequence
            ))
        })
    }

    /// The event at sequence `s`, read back from the log; an open bulk
    /// transaction's events included (indexed, not yet visible to readers:
    /// `uncommitted.rs`).
    fn read_at(&self, s: u64) -> Result<crate::event::Event, StoreError> {
        let entry = self.reads.index.read().entry_any(s);
        let ev = match entry {
            Some(e) => self.reads.read_entries(&[e])?.pop(),
            None => None,
        };
        ev.ok_or_else(|| {
            StoreError::BadBatch(format!("index names sequence {s} but it cannot be read"))
        })
    }

    /// The refusal of proposal `index` (`p`), whose key or id names the
    /// earlier event `original` with other content. The original's entity
    /// and kind come from the queue or the log; an original being written
    /// right now is in neither, and [`append`](Self::append) fills them in
    /// once it is visible.
    fn conflict(
        &self,
        seq: &Sequencer,
        index: usize,
        p: &Proposal,
        original: Receipt,
    ) -> StoreError {
        let queued = seq
            .queue
            .events
            .binary_search_by_key(&original.sequence, |(h, _, _)| h.sequence)
            .ok()
            .map(|at| &seq.queue.events[at].0);
        let (entity, kind) = match queued {
            Some(h) => (h.coordinate.entity.clone(), h.kind.clone()),
            None => match self.read_at(original.sequence) {
                Ok(ev) => (ev.header.coordinate.entity.clone(), ev.header.kind.clone()),
                Err(_) => (String::new(), String::new()),
            },
        };
        StoreError::IdempotencyConflict(Box::new(super::IdempotencyConflict {
            index,
            key: p.idempotency_key.clone(),
            id: p.id.filter(|_| p.idempotency_key.is_none()),
            original_id: original.id,
            original_sequence: original.sequence,
            original_entity: entity,
            original_kind: kind,
        }))
    }

    fn correlation_of(
        &self,
        seq: &Sequencer,
        cause: EventId,
    ) -> Option<Result<EventId, StoreError>> {
        if let Some(p) = seq.pending.get(&cause) {
            return Some(Ok(p.correlation));
        }
        // The index entry carries the correlation: no segment read.
        let ix = self.reads.index.read();
        let s = ix.seq_of_any(cause)?;
        Some(Ok(ix.entry_any(s).map_or(cause, |e| e.correlation)))
    }

    /// Reads, in one coalesced pass, the last event of every entity in
    /// `items` whose chain head is not cached yet, and caches those heads:
    /// a batch reacting to neighbouring events then costs one segment read
    /// instead of one read per entity.
    fn prefetch_heads(&self, seq: &mut Sequencer, items: &[Proposal]) -> Result<(), StoreError> {
        self.trim_heads(seq);
        let mut wanted: Vec<(u64, super::index::Entry, u64)> = {
            let ix = self.reads.index.read();
            // Probe the id table for the batch's explicit ids (dedup) and
            // causes back to back: these probes are cache misses in a large
            // table, and independent ones overlap here instead of costing
            // one full miss each inside the per-event loop below.
            for p in items {
                if let Some(id) = p.id {
                    std::hint::black_box(ix.seq_of_any(id));
                }
                if let Some(c) = p.causation {
                    std::hint::black_box(ix.seq_of_any(c));
                }
            }
            items
                .iter()
                .filter(|p| !seq.heads.contains_key(&p.coordinate.entity))
                .filter_map(|p| {
                    let seqs = ix.entity_seqs_any(ix.names.get(&p.coordinate.entity)?);
                    // The entity sequence is the position in the list.
                    let s = *seqs.last()? as u64;
                    ix.entry_any(s).map(|e| (s, e, seqs.len() as u64))
                })
                .collect()
        };
        if wanted.len() < 2 {
            return Ok(()); // `head` reads a single one as cheaply
        }
        wanted.sort_unstable_by_key(|(s, ..)| *s);
        wanted.dedup_by_key(|(s, ..)| *s);
        let entries: Vec<super::index::Entry> = wanted.iter().map(|(_, e, _)| *e).collect();
        let links = self.reads.read_links(&entries)?;
        let ix = self.reads.index.read();
        for ((_, e, entity_seq), link) in wanted.iter().zip(links) {
            seq.heads.insert(
                ix.names.name(e.entity).to_string(),
                Head {
                    entity_seq: *entity_seq,
                    link,
                },
            );
        }
        Ok(())
    }

    /// Drops the cached chain heads the index already holds once more than
    /// [`HEADS_CACHE_MAX`] are cached (called between batches, when no
    /// undo log refers to them). Heads the index does not hold yet —
    /// queued, or written but not visible — are kept: they cannot be read
    /// back (an open bulk transaction's written parts are in the index,
    /// uncommitted, so theirs are dropped too). The next trim waits until the
    /// cache has doubled, so a cache of such heads is not rescanned per
    /// batch.
    fn trim_heads(&self, seq: &mut Sequencer) {
        if seq.heads.len() <= seq.heads_trim_at {
            return;
        }
        let ix = self.reads.index.read();
        seq.heads.retain(|entity, h| {
            let indexed = ix
                .names
                .get(entity)
                .map_or(0, |e| ix.entity_seqs_any(e).len() as u64);
            indexed < h.entity_seq
        });
        seq.heads.shrink_to_fit();
        seq.heads_trim_at = (2 * seq.heads.len()).max(HEADS_CACHE_MAX);
    }

    /// The chain head of `entity`, loading it from the log on first use.
    fn head(&self, seq: &mut Sequencer, entity: &str) -> Result<Option<Head>, StoreError> {
        if let Some(h) = seq.heads.get(entity) {
            return Ok(Some(*h));
        }
        let last = {
            let ix = self.reads.index.read();
            ix.names
                .get(entity)
                .and_then(|e| ix.entity_seqs_any(e).last().map(|&s| s as u64))
        };
        let Some(s) = last else { return Ok(None) };
        let ev = self.read_at(s)?;
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
}

#[cfg(test)]
mod heads_cache_tests {
    use super::HEADS_CACHE_MAX;
    use crate::event::{Coordinate, Proposal};
    use crate::store::{AppendOptions, SimDisk, Store, StoreOptions};
    use std::sync::Arc;

    /// The chain-head cache stays bounded however many entities are
    /// appended to, and an entity whose head was dropped continues its
    /// chain from the log (entity sequence and `prev` link).
    #[test]
    fn the_chain_head_cache_is_bounded_and_dropped_heads_are_read_back() {
        let disk = SimDisk::new(3);
        let options = StoreOptions {
            disk: Arc::new(disk),
            ..StoreOptions::default()
        };
        let store = Store::open_with("/sim/heads", options).unwrap();
        let n = 3 * HEADS_CACHE_MAX + 1000;
        let prop = |e: usize| {
            Proposal::new(
                Coordinate::new(format!("order:{e}"), "shop").unwrap(),
                "order.placed",
                b"{}".to_vec(),
            )
        };
        let mut most = 0;
        for start in (0..n).step_by(1000) {
            let batch: Vec<Proposal> = (start..(start + 1000).min(n)).map(prop).collect();
            store.append_batch(batch, AppendOptions::visible()).unwrap();
            most = most.max(store.inner.core.seq.lock().heads.len());
        }
        assert!(
            most <= 2 * HEADS_CACHE_MAX + 1000,
            "{most} heads cached for {n} entities"
        );
        // Order 0's head was dropped long ago: its second event follows the
        // first in the chain.
        let r = store.append(prop(0), AppendOptions::visible()).unwrap();
        assert_eq!(r.entity_sequence, 2);
        let chain = store.entity_events("order:0", 0, 10).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1].header.prev.map(|l| l.id), Some(chain[0].header.id));
        let rep = store.verify().unwrap();
        assert!(rep.problems.is_empty(), "{:?}", rep.problems);
        store.close().unwrap();
    }
}
