//! [`NameTable`]: interned name → its number, in 8 bytes a slot. A slot
//! holds the number (plus one; 0 is empty) and 32 bits of the name's hash;
//! a name is found by probing from its hash and, on a matching hash, comparing
//! with the interner's own list (like the id table, `id_table.rs`). A map
//! keyed by the `Arc<str>` itself took 24 bytes a slot plus a control byte:
//! about 50 MiB for a million entity names, now 16 MiB. Open addressing with
//! linear probing, a power-of-two number of slots, at most 7/8 full.

use std::hash::BuildHasher;
use std::sync::Arc;

/// Slots (`hash << 32 | number + 1`; 0 is empty) of an open-addressing
/// table over the interner's names.
#[derive(Default, Clone, Debug)]
pub(crate) struct NameTable {
    slots: Vec<u64>,
    len: usize,
}

/// The top 32 bits of the name's hash, spread by a Fibonacci multiply:
/// kept in the slot, and their top bits pick the home slot (so a growing
/// table rehashes from the slots alone, without reading the names).
fn tag(s: &str) -> u64 {
    rustc_hash::FxBuildHasher
        .hash_one(s)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        >> 32
}

impl NameTable {
    /// Heap bytes of the slots.
    pub fn heap_bytes(&self) -> u64 {
        (self.slots.capacity() * 8) as u64
    }

    fn home(&self, tag: u64) -> usize {
        let bits = self.slots.len().trailing_zeros();
        (tag >> (32 - bits)) as usize
    }

    /// The number of `s`, where `names[number]` is `s`.
    pub fn get(&self, s: &str, names: &[Arc<str>]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let t = tag(s);
        let mask = self.slots.len() - 1;
        let mut i = self.home(t);
        loop {
            let v = self.slots[i];
            if v == 0 {
                return None;
            }
            let n = (v as u32).wrapping_sub(1);
            if v >> 32 == t && *names[n as usize] == *s {
                return Some(n);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds name number `n` (`names[n]`, not held yet).
    pub fn insert(&mut self, n: u32, names: &[Arc<str>]) {
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow((self.slots.len() * 2).max(16));
        }
        self.place(tag(&names[n as usize]), n);
    }

    fn place(&mut self, t: u64, n: u32) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(t);
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = (t << 32) | (n as u64 + 1);
        self.len += 1;
    }

    /// Rehashes into `slots` slots (a power of two, at most 2^32).
    fn grow(&mut self, slots: usize) {
        let old = std::mem::replace(&mut self.slots, vec![0; slots]);
        self.len = 0;
        for v in old.into_iter().filter(|&v| v != 0) {
            self.place(v >> 32, (v as u32) - 1);
        }
    }

    /// The table of `names` (all distinct), numbered by position.
    pub fn build(names: &[Arc<str>]) -> NameTable {
        let mut t = NameTable::default();
        for n in 0..names.len() {
            t.insert(n as u32, names);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name is found by its number, no absent one is, through growth
    /// and a rebuild.
    #[test]
    fn name_table_finds_every_name_and_no_other() {
        let names: Vec<Arc<str>> = (0..5000).map(|i| Arc::from(format!("order:{i}"))).collect();
        let mut t = NameTable::default();
        for n in 0..names.len() {
            assert_eq!(t.get(&names[n], &names), None);
            t.insert(n as u32, &names);
        }
        let rebuilt = NameTable::build(&names[..2500]);
        for (n, name) in names.iter().enumerate() {
            assert_eq!(t.get(name, &names), Some(n as u32));
            let want = (n < 2500).then_some(n as u32);
            assert_eq!(rebuilt.get(name, &names), want);
        }
        assert_eq!(t.get("order:5000", &names), None);
        assert!(t.heap_bytes() <= 8 * 8192);
    }
}
