//! Little-endian integers at a byte offset: how every fixed field of the
//! store's files (segment headers, frames, bodies, snapshot entries, the
//! durable marker) is read, in one place.

/// The `u32` at `at`. Panics when `b` is shorter than `at + 4`: callers
/// check the length first (a short buffer is damage they report).
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The `u64` at `at`. Panics when `b` is shorter than `at + 8`.
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The `u128` at `at`. Panics when `b` is shorter than `at + 16`.
pub(crate) fn u128_at(b: &[u8], at: usize) -> u128 {
    u128::from_le_bytes(b[at..at + 16].try_into().expect("16 bytes"))
}
