//! Little-endian integers at byte offsets: every field of both buffers is a
//! little-endian `u32` or `u64`.

/// The little-endian `u32` at `at`.
///
/// # Panics
/// `b` has fewer than `at + 4` bytes (callers check lengths first).
#[inline]
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The little-endian `u64` at `at`.
///
/// # Panics
/// `b` has fewer than `at + 8` bytes (callers check lengths first).
#[inline]
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Writes `v` little-endian at `at`.
///
/// # Panics
/// `b` has fewer than `at + 4` bytes.
#[inline]
pub fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes `v` little-endian at `at`.
///
/// # Panics
/// `b` has fewer than `at + 8` bytes.
#[inline]
pub fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
