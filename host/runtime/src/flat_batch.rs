//! The [`FlatBatch`] encoder: a slice of events laid out as the
//! `batpak:reactor@0.2.0` batch buffer (see `react` in `wit/reactor.wit`):
//! a 16-byte header, one 96-byte record per event, an interned string
//! table, then every payload back to back. One buffer reused from call to
//! call, so crossing the boundary is one memcpy of it into the guest. The
//! layout itself (sizes, offsets, record writer) is `batpak_layout`'s.

use batpak_layout::{
    write_batch_header, write_event_record, write_string_entry, BatchHeader, EventRecord,
    BATCH_HEADER_LEN as HEADER_LEN, BATCH_RECORD_LEN as RECORD_LEN, STRING_ENTRY_LEN,
};
use batpak_store::{EventId, EventView};

/// A 64-bit key for a name: for names of up to 16 bytes two overlapping
/// little-endian loads, mixed (no per-byte loop); longer names are hashed
/// in full. Keys may collide; [`intern`] checks the bytes.
fn name_key(s: &str) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let b = s.as_bytes();
    let n = b.len();
    let (x, y) = if (8..=16).contains(&n) {
        (
            u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            u64::from_le_bytes(b[n - 8..].try_into().expect("8 bytes")),
        )
    } else if n < 8 {
        let mut w = [0u8; 8];
        w[..n].copy_from_slice(b);
        (u64::from_le_bytes(w), 0)
    } else {
        use std::hash::Hasher;
        let mut h = rustc_hash::FxHasher::default();
        h.write(b);
        (h.finish(), 0)
    };
    let h = (x.wrapping_mul(K) ^ y.rotate_left(31) ^ n as u64).wrapping_mul(K);
    // Fold the high bits down: the table indexes by the low bits, which a
    // multiply alone leaves equal for names that differ only at their end.
    (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (h >> 32)
}

/// An open-addressing table from name keys to string indexes: linear
/// probing over a power-of-two array kept from batch to batch (cleared, not
/// freed). Simpler and cheaper per lookup than a general hash map here,
/// where a batch adds at most a few hundred names and never removes one.
#[derive(Default)]
struct InternTable {
    /// (key, string index + 1); index 0 marks an empty slot.
    slots: Vec<(u64, u32)>,
}

impl InternTable {
    /// Empties the table, sized for up to `names` names.
    fn reset(&mut self, names: usize) {
        let want = (names * 2).next_power_of_two().max(16);
        if self.slots.len() < want || self.slots.len() > want * 8 {
            self.slots = vec![(0, 0); want];
        } else {
            self.slots.fill((0, 0));
        }
    }

    /// Doubles the table and re-adds `strings`.
    fn grow(&mut self, strings: &[&str]) {
        self.slots = vec![(0, 0); (self.slots.len() * 2).max(16)];
        let mask = self.slots.len() - 1;
        for (index, s) in strings.iter().enumerate() {
            let key = name_key(s);
            let mut i = (key as usize) & mask;
            // Keep the first string of each key, as `intern` does.
            while self.slots[i].1 != 0 && self.slots[i].0 != key {
                i = (i + 1) & mask;
            }
            if self.slots[i].1 == 0 {
                self.slots[i] = (key, index as u32 + 1);
            }
        }
    }

    /// Index of `s` among `strings`, adding it when new. Slots hold the key
    /// of the first string with it; on a key collision `strings` is searched
    /// in full, so each distinct name is added once.
    fn intern<'a>(&mut self, s: &'a str, strings: &mut Vec<&'a str>) -> u32 {
        // Keep the table at most half full, so probes stay short and an
        // empty slot always exists.
        if (strings.len() + 1) * 2 > self.slots.len() {
            self.grow(strings);
        }
        let key = name_key(s);
        let mask = self.slots.len() - 1;
        let mut i = (key as usize) & mask;
        loop {
            let (k, v) = self.slots[i];
            if v == 0 {
                strings.push(s);
                let index = strings.len() as u32 - 1;
                self.slots[i] = (key, index + 1);
                return index;
            }
            if k == key {
                let index = v - 1;
                if strings[index as usize] == s {
                    return index;
                }
                // A key collision: rare, resolved by a full search.
                if let Some(j) = strings.iter().position(|x| *x == s) {
                    return j as u32;
                }
                strings.push(s);
                return strings.len() as u32 - 1;
            }
            i = (i + 1) & mask;
        }
    }
}

/// Encodes batches into one reused byte buffer.
#[derive(Default)]
pub(crate) struct FlatBatch {
    buf: Vec<u8>,
    /// Name key -> string index, kept (cleared) from one batch to the next
    /// so interning allocates nothing once warm.
    index: InternTable,
}

impl FlatBatch {
    /// Lays out `events` (non-empty, delivery order) and records their ids
    /// in `sources`; returns the buffer to hand to `react`. Names and
    /// payloads are copied straight from the views' stored bytes.
    ///
    /// # Errors
    /// The batch does not fit the layout's 32-bit offsets.
    pub(crate) fn encode(
        &mut self,
        events: &[EventView],
        sources: &mut Vec<EventId>,
    ) -> Result<&[u8], String> {
        let n = events.len();
        sources.clear();
        let buf = &mut self.buf;
        buf.clear();
        buf.resize(HEADER_LEN + RECORD_LEN * n, 0);
        let mut strings: Vec<&str> = Vec::with_capacity(n + 2);
        let index = &mut self.index;
        // Every event may bring a new entity, and scope and kind usually
        // add one or two more.
        index.reset(n + 8);
        // Scope and kind usually repeat from one event to the next: compare
        // with the previous event's before interning.
        let mut last_scope: Option<(&str, u32)> = None;
        let mut last_kind: Option<(&str, u32)> = None;
        let mut payload_at: u64 = 0;
        for (i, e) in events.iter().enumerate() {
            let c = e.coordinate();
            let entity = index.intern(c.entity, &mut strings);
            let scope = match last_scope {
                Some((s, i)) if s == c.scope => i,
                _ => {
                    let i = index.intern(c.scope, &mut strings);
                    last_scope = Some((c.scope, i));
                    i
                }
            };
            let kind_name = e.kind();
            let kind = match last_kind {
                Some((k, i)) if k == kind_name => i,
                _ => {
                    let i = index.intern(kind_name, &mut strings);
                    last_kind = Some((kind_name, i));
                    i
                }
            };
            let r = &mut buf[HEADER_LEN + RECORD_LEN * i..HEADER_LEN + RECORD_LEN * (i + 1)];
            write_event_record(
                r,
                &EventRecord {
                    id: (e.id().hi(), e.id().lo()),
                    sequence: e.sequence(),
                    entity_sequence: e.entity_sequence(),
                    correlation: (e.correlation().hi(), e.correlation().lo()),
                    causation: e.causation().map(|c| (c.hi(), c.lo())),
                    timestamp_us: e.timestamp_us(),
                    entity,
                    scope,
                    kind,
                    payload_offset: payload_at as u32,
                    payload_len: e.payload.len() as u32,
                },
            );
            payload_at += e.payload.len() as u64;
            if payload_at > u32::MAX as u64 {
                return Err(format!(
                    "the batch's payloads total more than {} bytes, more than the 32-bit offsets of the batch layout can address",
                    u32::MAX
                ));
            }
            sources.push(e.id());
        }
        let strings_offset = buf.len();
        let name_bytes: usize = strings.iter().map(|s| s.len()).sum();
        let end = strings_offset as u64
            + (STRING_ENTRY_LEN * strings.len()) as u64
            + name_bytes as u64
            + payload_at;
        if end > u32::MAX as u64 {
            return Err(format!(
                "the batch needs {end} bytes, more than the 32-bit offsets of the batch layout can address"
            ));
        }
        buf.reserve(STRING_ENTRY_LEN * strings.len() + name_bytes + payload_at as usize);
        let mut at = 0u32;
        for s in &strings {
            write_string_entry(buf, at, s.len() as u32);
            at += s.len() as u32;
        }
        for s in &strings {
            buf.extend_from_slice(s.as_bytes());
        }
        let payloads_offset = buf.len();
        for e in events {
            buf.extend_from_slice(&e.payload);
        }
        write_batch_header(
            buf,
            &BatchHeader {
                count: n as u32,
                string_count: strings.len() as u32,
                strings_offset: strings_offset as u32,
                payloads_offset: payloads_offset as u32,
            },
        );
        Ok(buf)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use batpak_store::{Coordinate, Event, EventHeader};
    use std::sync::Arc;

    /// A test event, as the owned event a log without stored bytes hands
    /// out (see `stored` for the same as views of stored bytes).
    pub(crate) fn ev(seq: u64, entity: &str, kind: &str, payload: &[u8]) -> EventView {
        EventView::from(owned(seq, entity, kind, payload))
    }

    pub(crate) fn owned(seq: u64, entity: &str, kind: &str, payload: &[u8]) -> Event {
        let header = EventHeader {
            id: EventId::from_parts(0xA0 + seq, 0xB0 + seq),
            sequence: seq,
            entity_sequence: seq + 10,
            coordinate: Coordinate::new(entity, "shop").unwrap(),
            kind: kind.into(),
            causation: (seq == 2).then(|| EventId::from_parts(7, 8)),
            correlation: EventId::from_parts(5, seq),
            timestamp_us: 1000 + seq,
            prev: None,
            idempotency_key: None,
            meta: Default::default(),
        };
        Event {
            hash: header.hash(payload),
            header: Arc::new(header),
            payload: payload.into(),
        }
    }

    use batpak_layout::{u32_at, u64_at};
    fn string(b: &[u8], j: u32) -> &str {
        let so = u32_at(b, 8) as usize;
        let count = u32_at(b, 4) as usize;
        let e = so + 8 * j as usize;
        let start = so + 8 * count + u32_at(b, e) as usize;
        std::str::from_utf8(&b[start..start + u32_at(b, e + 4) as usize]).unwrap()
    }

    /// Reads the buffer back by the documented layout, field by field.
    fn check_layout(events: &[EventView], b: &[u8]) {
        assert_eq!(u32_at(b, 0) as usize, events.len());
        assert_eq!(u32_at(b, 8) as usize, 16 + 96 * events.len());
        let po = u32_at(b, 12) as usize;
        for (i, e) in events.iter().enumerate() {
            let r = 16 + 96 * i;
            let e = e.to_event();
            let h = &e.header;
            assert_eq!(u64_at(b, r), h.id.hi());
            assert_eq!(u64_at(b, r + 8), h.id.lo());
            assert_eq!(u64_at(b, r + 16), h.sequence);
            assert_eq!(u64_at(b, r + 24), h.entity_sequence);
            assert_eq!(u64_at(b, r + 32), h.correlation.hi());
            assert_eq!(u64_at(b, r + 40), h.correlation.lo());
            let cause = h.causation.map(|c| (c.hi(), c.lo())).unwrap_or((0, 0));
            assert_eq!((u64_at(b, r + 48), u64_at(b, r + 56)), cause);
            assert_eq!(u64_at(b, r + 64), h.timestamp_us);
            assert_eq!(string(b, u32_at(b, r + 72)), h.coordinate.entity);
            assert_eq!(string(b, u32_at(b, r + 76)), h.coordinate.scope);
            assert_eq!(string(b, u32_at(b, r + 80)), h.kind);
            assert_eq!(u32_at(b, r + 84), h.causation.is_some() as u32);
            let (o, l) = (u32_at(b, r + 88) as usize, u32_at(b, r + 92) as usize);
            assert_eq!(&b[po + o..po + o + l], &e.payload[..]);
        }
    }

    #[test]
    fn the_buffer_follows_the_documented_layout_and_interns_names() {
        let mut f = FlatBatch::default();
        let mut ids = Vec::new();
        let evs = vec![
            ev(1, "order:1", "k", b"ab"),
            ev(2, "order:2", "k", b"cde"),
            ev(3, "order:1", "other.kind", b""),
        ];
        let b = f.encode(&evs, &mut ids).unwrap().to_vec();
        check_layout(&evs, &b);
        // order:1, shop, k, order:2, other.kind: each name once.
        assert_eq!(u32_at(&b, 4), 5);
        assert_eq!(ids, evs.iter().map(|e| e.id()).collect::<Vec<_>>());
        // The buffer is reused: a smaller batch leaves nothing behind.
        let one = vec![ev(4, "x", "y", b"z")];
        let b = f.encode(&one, &mut ids).unwrap().to_vec();
        check_layout(&one, &b);
        assert_eq!(b.len(), 16 + 96 + 8 * 3 + "xshopy".len() + 1);
        // A batch large enough to intern through the hash map.
        let many: Vec<EventView> = (0..40)
            .map(|i| ev(i, &format!("e:{}", i % 7), "k", b"{}"))
            .collect();
        let b = f.encode(&many, &mut ids).unwrap().to_vec();
        check_layout(&many, &b);
        assert_eq!(u32_at(&b, 4), 7 + 2);
    }

    #[test]
    fn the_worked_example_of_wit_md_is_what_the_host_sends() {
        let evs = vec![
            ev(1, "order:1", "order.placed", br#"{"q":1}"#),
            ev(3, "order:2", "order.placed", br#"{"q":22}"#),
        ];
        let b = FlatBatch::default()
            .encode(&evs, &mut Vec::new())
            .unwrap()
            .to_vec();
        assert_eq!(
            &b[..16],
            &[2, 0, 0, 0, 4, 0, 0, 0, 0xd0, 0, 0, 0, 0x0e, 1, 0, 0]
        );
        assert_eq!(
            &b[208..240],
            &[
                0, 0, 0, 0, 7, 0, 0, 0, 7, 0, 0, 0, 4, 0, 0, 0, 11, 0, 0, 0, 12, 0, 0, 0, 23, 0, 0,
                0, 7, 0, 0, 0
            ]
        );
        assert_eq!(&b[240..270], b"order:1shoporder.placedorder:2");
        assert_eq!(&b[270..], br#"{"q":1}{"q":22}"#);
    }

    /// Views of a real store's bytes (what the runner hands a reactor)
    /// encode to exactly the buffer the owned events encode to.
    #[test]
    fn stored_views_encode_as_the_owned_events_do() {
        use batpak_store::{AppendOptions, Cursor, Proposal, Region, Store};
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("batpak-flat-views-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let store = Store::open(&dir).unwrap();
        let batch: Vec<Proposal> = (0..50)
            .map(|i| {
                Proposal::new(
                    Coordinate::new(format!("order:{}", i % 7), format!("s{}", i % 2)).unwrap(),
                    format!("k.{}", i % 3),
                    format!("{{\"i\":{i}}}").into_bytes(),
                )
            })
            .collect();
        let first = store.append_batch(batch, AppendOptions::durable()).unwrap()[0].id;
        let caused = Proposal::new(
            Coordinate::new("order:1", "s0").unwrap(),
            "k.x",
            b"{}".to_vec(),
        )
        .caused_by(first);
        store.append(caused, AppendOptions::durable()).unwrap();
        let views = Cursor::new(&store, Region::all(), 0)
            .pull_views(1000, std::time::Duration::ZERO)
            .unwrap()
            .into_vec();
        let owned: Vec<EventView> = store
            .scan(&Region::all(), 0, usize::MAX, false)
            .unwrap()
            .into_iter()
            .map(EventView::from)
            .collect();
        assert_eq!(views.len(), 51);
        let (mut a_ids, mut b_ids) = (Vec::new(), Vec::new());
        let a = FlatBatch::default()
            .encode(&views, &mut a_ids)
            .unwrap()
            .to_vec();
        let b = FlatBatch::default()
            .encode(&owned, &mut b_ids)
            .unwrap()
            .to_vec();
        assert_eq!(a, b);
        assert_eq!(a_ids, b_ids);
        check_layout(&views, &a);
        store.close().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_intern_table_grows_past_one_new_name_per_event() {
        // Three new names per event: more than the table is first sized
        // for, so it grows mid-batch and must still find every name once.
        let evs: Vec<EventView> = (0..100)
            .map(|i| {
                let mut e = owned(i, &format!("entity:{i}"), &format!("kind.{i}"), b"{}");
                let mut h = (*e.header).clone();
                h.coordinate =
                    Coordinate::new(format!("entity:{i}"), format!("scope-{i}")).unwrap();
                e.header = Arc::new(h);
                EventView::from(e)
            })
            .chain((0..100).map(|i| ev(i, &format!("entity:{i}"), &format!("kind.{i}"), b"")))
            .collect();
        let b = FlatBatch::default()
            .encode(&evs, &mut Vec::new())
            .unwrap()
            .to_vec();
        check_layout(&evs, &b);
        // 100 entities, 100 scopes, 100 kinds, and "shop".
        assert_eq!(u32_at(&b, 4), 301);
    }
}
