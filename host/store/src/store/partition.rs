//! Entity → partition: the one stable hash that assigns an entity to one of
//! `K` partitions, shared by the NATS cluster's partitions and a reactor's
//! instances ([`Region::shard`](crate::Region::shard)), so a reactor splits
//! its work the same way on one machine and on many.
//!
//! **FNV-1a, 64 bits**, over the entity's UTF-8 bytes (offset basis
//! `0xcbf29ce484222325`, prime `0x100000001b3`), reduced modulo the count:
//! `partition = fnv1a64(entity) % K`. The scope is not hashed: an entity's
//! events stay in one partition, in one order. The hash is part of the
//! on-disk and on-cluster format (checkpoints of instances, streams of
//! partitions) and is pinned by a test.

/// FNV-1a, 64 bits, of `bytes` (see the module doc).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The partition of `entity` among `partitions` (`fnv1a64(entity) % K`).
/// Panics when `partitions` is 0 (there is always at least one).
pub fn partition_of(entity: &str, partitions: u32) -> u32 {
    assert!(partitions > 0, "there is at least one partition");
    (fnv1a64(entity.as_bytes()) % u64::from(partitions)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented hash, pinned: changing it would move every entity.
    #[test]
    fn the_partition_hash_is_fnv1a64_as_documented() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(partition_of("order:1", 1), 0);
        let p = partition_of("order:1", 4);
        assert_eq!(p as u64, fnv1a64(b"order:1") % 4);
    }
}
