//! The sequencer: validates a batch, checks idempotency and optimistic
//! concurrency, assigns sequences, timestamps, ids and chain links, encodes
//! one frame and hands it to the writer thread through a bounded queue.
//! It runs on the caller's thread under one short lock; nothing shared
//! changes unless the whole batch is valid.

use super::durability::Durability;
use super::frame::{begin_frame, finish_frame, FRAME_HEADER, MAX_FRAME_BODY};
use super::index::{FastMap, CHECKPOINT_KIND};
use super::read_path::ReadPath;
use super::segment::{push_event, TAG_BATCH};
use super::{AppendOptions, Checkpoint, StoreError};
use crate::event::{hash_encoded, now_us, ChainLink, EventHeader, EventId, Proposal, Receipt};
use parking_lot::Mutex;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;

/// Entity of checkpoint records is `batpak.cursor:<id>` in this scope.
pub(crate) const SYSTEM_SCOPE: &str = "batpak";

pub(crate) enum Cmd {
    Frame(FrameCmd),
    Shutdown,
}

pub(crate) struct FrameCmd {
    pub bytes: Vec<u8>,
    /// Header and position (relative to the frame start) of each event.
    pub events: Vec<(EventHeader, u32, u32)>,
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

pub(crate) struct Sequencer {
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
    /// A sequencer continuing after sequence `last`, feeding `tx`.
    pub fn new(last: u64, tx: SyncSender<Cmd>) -> Sequencer {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Sequencer {
            tx: Some(tx),
            next_seq: last + 1,
            last_ts: 0,
            id_seed: u64::from_le_bytes(seed),
            id_counter: 0,
            heads: FastMap::default(),
            pending: FastMap::default(),
            pending_keys: FastMap::default(),
            retain_at: 65_536,
        }
    }

    /// Stops accepting batches; returns the queue so the caller can send
    /// the writer its shutdown.
    pub fn close(&mut self) -> Option<SyncSender<Cmd>> {
        self.tx.take()
    }
}

/// What an append needs: the sequencer, the read path (for idempotency,
/// causation and chain heads) and the durability state (to wait).
pub(crate) struct Appender<'a> {
    pub seq: &'a Mutex<Sequencer>,
    pub reads: &'a ReadPath,
    pub dur: &'a Durability,
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
        let mut seq = self.seq.lock();
        if let Some(p) = &self.dur.state.lock().poisoned {
            return Err(self.dur.failure(p));
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
        self.prefetch_heads(&mut seq, &items)?;
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
                self.dur.wait(
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
            let visible = self.dur.state.lock().visible;
            seq.pending.retain(|_, p| p.receipt.sequence > visible);
            seq.pending_keys.retain(|_, r| r.sequence > visible);
            seq.retain_at = (2 * (seq.pending.len() + seq.pending_keys.len())).max(65_536);
        }
        let last = next - 1;
        self.dur.accepted.store(last, Ordering::Release);
        let sent = seq
            .tx
            .as_ref()
            .expect("checked above")
            .send(Cmd::Frame(FrameCmd { bytes, events }));
        drop(seq);
        if sent.is_err() {
            return Err(self.dur.poisoned_or_closed());
        }
        self.dur.wait(
            last.max(max_dedup_seq),
            options.wait_durable(),
            options.wait_visible(),
        )?;
        Ok(receipts)
    }

    fn lookup_key(&self, seq: &Sequencer, key: &str) -> Result<Option<Receipt>, StoreError> {
        if let Some(r) = seq.pending_keys.get(key) {
            return Ok(Some(*r));
        }
        let s = self.reads.index.read().keys.get(key).copied();
        match s {
            Some(s) => self.receipt_at(s).map(Some),
            None => Ok(None),
        }
    }

    fn lookup_id(&self, seq: &Sequencer, id: EventId) -> Result<Option<Receipt>, StoreError> {
        if let Some(p) = seq.pending.get(&id) {
            return Ok(Some(p.receipt));
        }
        let s = self.reads.index.read().by_id.get(&id).copied();
        match s {
            Some(s) => self.receipt_at(s).map(Some),
            None => Ok(None),
        }
    }

    fn receipt_at(&self, s: u64) -> Result<Receipt, StoreError> {
        let ev = self.reads.get_by_sequence(s)?.ok_or_else(|| {
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
        // The index entry carries the correlation: no segment read.
        let ix = self.reads.index.read();
        let s = ix.by_id.get(&cause).copied()?;
        Some(Ok(ix.entry(s).map_or(cause, |e| e.correlation)))
    }

    /// Reads, in one coalesced pass, the last event of every entity in
    /// `items` whose chain head is not cached yet, and caches those heads:
    /// a batch reacting to neighbouring events then costs one segment read
    /// instead of one read per entity.
    fn prefetch_heads(
        &self,
        seq: &mut Sequencer,
        items: &[(Proposal, Option<usize>)],
    ) -> Result<(), StoreError> {
        let mut wanted: Vec<(u64, super::index::Entry)> = {
            let ix = self.reads.index.read();
            // Probe the id table for the batch's explicit ids (dedup) and
            // causes back to back: these probes are cache misses in a large
            // table, and independent ones overlap here instead of costing
            // one full miss each inside the per-event loop below.
            for (p, _) in items {
                if let Some(id) = p.id {
                    std::hint::black_box(ix.by_id.get(&id));
                }
                if let Some(c) = p.causation {
                    std::hint::black_box(ix.by_id.get(&c));
                }
            }
            items
                .iter()
                .filter(|(p, _)| !seq.heads.contains_key(&p.coordinate.entity))
                .filter_map(|(p, _)| {
                    let s = ix
                        .names
                        .get(&p.coordinate.entity)
                        .and_then(|e| ix.by_entity.get(&e))
                        .and_then(|v| v.last().copied())?;
                    ix.entry(s).map(|e| (s, *e))
                })
                .collect()
        };
        if wanted.len() < 2 {
            return Ok(()); // `head` reads a single one as cheaply
        }
        wanted.sort_unstable_by_key(|(s, _)| *s);
        wanted.dedup_by_key(|(s, _)| *s);
        let entries: Vec<super::index::Entry> = wanted.iter().map(|(_, e)| *e).collect();
        let links = self.reads.read_links(&entries)?;
        let ix = self.reads.index.read();
        for (e, link) in entries.iter().zip(links) {
            seq.heads.insert(
                ix.names.name(e.entity).to_string(),
                Head {
                    entity_seq: e.entity_seq,
                    link,
                },
            );
        }
        Ok(())
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
                .and_then(|e| ix.by_entity.get(&e))
                .and_then(|v| v.last().copied())
        };
        let Some(s) = last else { return Ok(None) };
        let ev = self.reads.get_by_sequence(s)?.ok_or_else(|| {
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
}
