//! [`IdTable`]: event id → sequence in 4 bytes a slot. The table holds only
//! sequences; an id is found by probing from its hash and comparing with
//! the index's own id column (`ids[seq - 1]`), so a hit is always
//! confirmed against the full 128-bit id and no collision can answer for
//! another event. Open addressing with linear probing, a power-of-two
//! number of slots, at most 7/8 full (about 6.7 bytes per event at 10M).

use crate::event::EventId;

/// Slots (sequences; 0 is empty) of an open-addressing table.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub(crate) struct IdTable {
    slots: Vec<u32>,
    len: usize,
}

/// Fibonacci hashing of the id folded to 64 bits: generated ids differ in
/// their low bits, derived ones everywhere; the multiply spreads both into
/// the top bits, which pick the slot.
fn hash(id: EventId) -> u64 {
    let x = (id.0 as u64) ^ ((id.0 >> 64) as u64).rotate_left(29);
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl IdTable {
    /// Ids held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes of the slots.
    pub fn heap_bytes(&self) -> u64 {
        (self.slots.capacity() * 4) as u64
    }

    fn home(&self, id: EventId) -> usize {
        let bits = self.slots.len().trailing_zeros();
        (hash(id) >> (64 - bits)) as usize
    }

    /// The sequence of `id`, where `ids[seq - 1]` is the id of `seq`.
    pub fn get(&self, id: EventId, ids: &[EventId]) -> Option<u64> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(id);
        loop {
            let s = self.slots[i];
            if s == 0 {
                return None;
            }
            if ids.get(s as usize - 1) == Some(&id) {
                return Some(s as u64);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `id` at `seq` (`ids[seq - 1] == id`); an id already present
    /// now names `seq` (the last one wins, as events are added in order).
    pub fn insert(&mut self, id: EventId, seq: u32, ids: &[EventId]) {
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow(ids, (self.slots.len() * 2).max(16));
        }
        self.place(id, seq, ids);
    }

    fn place(&mut self, id: EventId, seq: u32, ids: &[EventId]) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(id);
        loop {
            let s = self.slots[i];
            if s == 0 {
                self.slots[i] = seq;
                self.len += 1;
                return;
            }
            if ids[s as usize - 1] == id {
                self.slots[i] = seq;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Rehashes into `slots` slots (a power of two).
    fn grow(&mut self, ids: &[EventId], slots: usize) {
        let old = std::mem::replace(&mut self.slots, vec![0; slots]);
        let mut seqs: Vec<u32> = old.into_iter().filter(|&s| s != 0).collect();
        seqs.sort_unstable();
        self.len = 0;
        self.fill(ids, seqs.into_iter());
    }

    /// Inserts `seqs` (ascending) in about the table's own order: one random
    /// insert per event into a table of tens of megabytes was most of a
    /// large reopen (a cache and TLB miss each). The sequences are spread
    /// into bins by the top bits of their home slot (a counting sort, stable
    /// so equal ids keep sequence order and the last one wins), then
    /// inserted bin by bin, so the writes of one bin stay close together.
    fn fill(&mut self, ids: &[EventId], seqs: impl ExactSizeIterator<Item = u32> + Clone) {
        const BIN_BITS: u32 = 12;
        let n = seqs.len();
        let bits = self.slots.len().trailing_zeros();
        if n < 1 << 16 || bits <= BIN_BITS {
            for s in seqs {
                self.place(ids[s as usize - 1], s, ids);
            }
            return;
        }
        let shift = 64 - BIN_BITS;
        let bin = |s: u32| (hash(ids[s as usize - 1]) >> shift) as usize;
        let mut starts = vec![0usize; (1 << BIN_BITS) + 1];
        for s in seqs.clone() {
            starts[bin(s) + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        let mut order = vec![0u32; n];
        for s in seqs {
            let b = bin(s);
            order[starts[b]] = s;
            starts[b] += 1;
        }
        for s in order {
            self.place(ids[s as usize - 1], s, ids);
        }
    }

    /// A table of every id in `ids` (sequence = position + 1), sized for
    /// them.
    pub fn build(ids: &[EventId]) -> IdTable {
        let mut slots = 16usize;
        while ids.len() * 8 > slots * 7 {
            slots *= 2;
        }
        let mut t = IdTable {
            slots: vec![0; slots],
            len: 0,
        };
        t.fill(ids, 1..ids.len() as u32 + 1);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Built in bulk or one at a time, the table finds every id, finds no
    /// absent one, and a repeated id names its last sequence.
    #[test]
    fn id_table_finds_every_id_and_the_last_of_a_repeat() {
        let n = 100_000u32;
        let mut ids: Vec<EventId> = (1..=n)
            .map(|i| EventId((i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_0000_0001) | 1 << 100))
            .collect();
        ids.push(ids[41]); // a repeat of sequence 42
        let mut one = IdTable::default();
        for (i, id) in ids.iter().enumerate() {
            one.insert(*id, i as u32 + 1, &ids[..=i]);
        }
        let bulk = IdTable::build(&ids);
        for t in [&one, &bulk] {
            assert_eq!(t.len(), n as usize);
            for (i, id) in ids.iter().enumerate().take(n as usize) {
                let want = if i == 41 { n as u64 + 1 } else { i as u64 + 1 };
                assert_eq!(t.get(*id, &ids), Some(want));
            }
            assert_eq!(t.get(EventId(7), &ids), None);
        }
    }
}
