//! [`SeqList`]: an ascending list of `u32` sequences that holds up to six
//! inline (32 bytes, no allocation) and grows on the heap past that. Most
//! entities of an order-like store have a handful of events, and a vector
//! per entity cost a table slot plus a heap block (about 80 bytes per
//! entity, 25 per event at three events an entity).

/// Sequences, ascending; inline while few.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SeqList {
    Inline { len: u8, seqs: [u32; INLINE] },
    Heap(Vec<u32>),
}

const INLINE: usize = 6;

impl Default for SeqList {
    fn default() -> Self {
        SeqList::Inline {
            len: 0,
            seqs: [0; INLINE],
        }
    }
}

impl SeqList {
    /// The sequences.
    pub fn as_slice(&self) -> &[u32] {
        match self {
            SeqList::Inline { len, seqs } => &seqs[..*len as usize],
            SeqList::Heap(v) => v,
        }
    }

    /// Appends `seq` (greater than every sequence held).
    pub fn push(&mut self, seq: u32) {
        match self {
            SeqList::Inline { len, seqs } if (*len as usize) < INLINE => {
                seqs[*len as usize] = seq;
                *len += 1;
            }
            SeqList::Inline { seqs, .. } => {
                let mut v = Vec::with_capacity(2 * INLINE);
                v.extend_from_slice(&seqs[..]);
                v.push(seq);
                *self = SeqList::Heap(v);
            }
            SeqList::Heap(v) => push(v, seq),
        }
    }

    /// Removes and returns the last sequence (an aborted bulk
    /// transaction's event leaving the index).
    pub fn pop(&mut self) -> Option<u32> {
        match self {
            SeqList::Inline { len, seqs } => {
                let n = (*len as usize).checked_sub(1)?;
                *len -= 1;
                Some(seqs[n])
            }
            SeqList::Heap(v) => v.pop(),
        }
    }

    /// Heap bytes held (0 inline).
    pub fn heap_bytes(&self) -> u64 {
        match self {
            SeqList::Inline { .. } => 0,
            SeqList::Heap(v) => (v.capacity() * 4) as u64,
        }
    }

    /// Trims the heap block to the length.
    pub fn shrink_to_fit(&mut self) {
        if let SeqList::Heap(v) = self {
            v.shrink_to_fit();
        }
    }
}

/// Pushes onto a column or list growing it by a sixteenth when full (at
/// least 16), not by doubling: a column of 10M events would otherwise hold
/// up to twice its length (large reallocations are remapped, not copied).
pub(crate) fn push<T>(v: &mut Vec<T>, x: T) {
    if v.len() == v.capacity() {
        // Doubling while small (a short list stays short), then by 1/16.
        v.reserve_exact(if v.len() < 256 {
            v.len().max(4)
        } else {
            v.len() / 16
        });
    }
    v.push(x);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seq_list_keeps_order_inline_and_on_the_heap() {
        let mut l = SeqList::default();
        assert!(l.as_slice().is_empty());
        for s in 1..=100u32 {
            l.push(s * 3);
            let want: Vec<u32> = (1..=s).map(|x| x * 3).collect();
            assert_eq!(l.as_slice(), &want[..]);
            assert_eq!(l.heap_bytes() == 0, s as usize <= INLINE);
        }
        assert_eq!(std::mem::size_of::<SeqList>(), 32);
    }
}
