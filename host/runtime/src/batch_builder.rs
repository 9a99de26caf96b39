//! The [`BatchBuilder`]: builds the WIT `batch` record for a slice of events,
//! interning names and concatenating payloads, reusing its buffers from one
//! call to the next.

use super::convert::id_to_wit;
use super::wit::types as w;
use batpak_store::{EventId, EventView};
use rustc_hash::FxHashMap;

/// Interning index for the names of one batch. FxHash: the keys come from
/// the host's own log, so hash flooding is not a concern here.
type Interner<'a> = FxHashMap<&'a str, u32>;

/// Batches up to this size intern by a linear scan: cheaper than building
/// a hash map for a handful of names.
const LINEAR_INTERN_MAX: usize = 8;

/// Index of `s` in `strings`, adding it when new. Reuses the `String`
/// buffers left in `strings` by the previous batch. `index` is `None` for
/// small batches (linear scan).
fn intern<'a>(
    s: &'a str,
    index: &mut Option<Interner<'a>>,
    strings: &mut Vec<String>,
    used: &mut usize,
) -> u32 {
    match index {
        Some(map) => {
            if let Some(&i) = map.get(s) {
                return i;
            }
        }
        None => {
            if let Some(i) = strings[..*used].iter().position(|x| x == s) {
                return i as u32;
            }
        }
    }
    let i = *used as u32;
    if *used < strings.len() {
        strings[*used].clear();
        strings[*used].push_str(s);
    } else {
        strings.push(s.to_string());
    }
    *used += 1;
    if let Some(map) = index {
        map.insert(s, i);
    }
    i
}

/// Builds the WIT `batch` for a slice of events, reusing its buffers from
/// one call to the next: names are interned once per batch and payloads are
/// concatenated into one byte list, so the canonical-ABI copy makes one
/// guest allocation per distinct name plus three per batch.
#[derive(Default)]
pub(crate) struct BatchBuilder {
    batch: Option<w::Batch>,
    spare_events: Vec<w::Event>,
}

impl BatchBuilder {
    /// Fills the batch for `events` and records their ids in `sources`.
    ///
    /// # Errors
    /// The payloads do not fit the 32-bit offsets of the WIT record.
    pub(crate) fn build(
        &mut self,
        events: &[EventView],
        sources: &mut Vec<EventId>,
    ) -> Result<&w::Batch, String> {
        let mut b = self.batch.take().unwrap_or_else(|| w::Batch {
            strings: Vec::new(),
            payloads: Vec::new(),
            events: w::CanalBatch::Empty,
        });
        let mut list = match std::mem::replace(&mut b.events, w::CanalBatch::Empty) {
            w::CanalBatch::Many(v) => v,
            _ => std::mem::take(&mut self.spare_events),
        };
        list.clear();
        b.payloads.clear();
        sources.clear();
        let mut used = 0usize;
        let mut index: Option<Interner<'_>> = (events.len() > LINEAR_INTERN_MAX)
            .then(|| FxHashMap::with_capacity_and_hasher(events.len() + 8, Default::default()));
        let total: usize = events.iter().map(|e| e.payload.len()).sum();
        if total > u32::MAX as usize {
            self.batch = Some(b);
            self.spare_events = list;
            return Err(format!(
                "the batch's payloads total {total} bytes, more than fit a 32-bit offset"
            ));
        }
        b.payloads.reserve(total);
        // Scope and kind usually repeat from one event to the next: compare
        // with the previous event's before hashing.
        let mut last_scope: (&str, u32) = ("", u32::MAX);
        let mut last_kind: (&str, u32) = ("", u32::MAX);
        for e in events {
            let c = e.coordinate();
            let entity = intern(c.entity, &mut index, &mut b.strings, &mut used);
            let scope = if last_scope.1 != u32::MAX && last_scope.0 == c.scope {
                last_scope.1
            } else {
                let i = intern(c.scope, &mut index, &mut b.strings, &mut used);
                last_scope = (c.scope, i);
                i
            };
            let kind_name = e.kind();
            let kind = if last_kind.1 != u32::MAX && last_kind.0 == kind_name {
                last_kind.1
            } else {
                let i = intern(kind_name, &mut index, &mut b.strings, &mut used);
                last_kind = (kind_name, i);
                i
            };
            let offset = b.payloads.len() as u32;
            b.payloads.extend_from_slice(&e.payload);
            list.push(w::Event {
                id: id_to_wit(e.id()),
                sequence: e.sequence(),
                entity_sequence: e.entity_sequence(),
                entity,
                scope,
                kind,
                causation: e.causation().map(id_to_wit),
                correlation: id_to_wit(e.correlation()),
                timestamp_us: e.timestamp_us(),
                payload_offset: offset,
                payload_len: e.payload.len() as u32,
            });
            sources.push(e.id());
        }
        b.strings.truncate(used);
        b.events = match list.len() {
            0 => {
                self.spare_events = list;
                w::CanalBatch::Empty
            }
            1 => {
                let one = list[0];
                list.clear();
                self.spare_events = list;
                w::CanalBatch::One(one)
            }
            _ => w::CanalBatch::Many(list),
        };
        Ok(self.batch.insert(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The same test events as the 0.2.0 encoder's tests.
    use crate::flat_batch::tests::ev;

    #[test]
    fn batch_builder_interns_and_reuses() {
        let mut b = BatchBuilder::default();
        let mut ids = Vec::new();
        let evs = vec![ev(1, "order:1", "k", b"ab"), ev(2, "order:2", "k", b"cde")];
        let batch = b.build(&evs, &mut ids).unwrap();
        assert_eq!(batch.strings, vec!["order:1", "shop", "k", "order:2"]);
        assert_eq!(batch.payloads, b"abcde");
        match &batch.events {
            w::CanalBatch::Many(v) => {
                assert_eq!(v.len(), 2);
                assert_eq!((v[1].entity, v[1].scope, v[1].kind), (3, 1, 2));
                assert_eq!((v[1].payload_offset, v[1].payload_len), (2, 3));
            }
            _ => panic!("expected many"),
        }
        let one = vec![ev(3, "x", "y", b"z")];
        let batch = b.build(&one, &mut ids).unwrap();
        assert_eq!(batch.strings, vec!["x", "shop", "y"]);
        assert!(matches!(batch.events, w::CanalBatch::One(e) if e.sequence == 3));
        assert_eq!(ids, vec![one[0].id()]);
        let batch = b.build(&evs, &mut ids).unwrap();
        assert!(matches!(&batch.events, w::CanalBatch::Many(v) if v.len() == 2));
    }
}
