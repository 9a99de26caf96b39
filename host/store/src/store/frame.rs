//! Frames: the unit of atomicity on disk.
//!
//! `[magic "BPKF" 4][len u32 LE][crc32 u32 LE][body: len bytes]`, where the
//! CRC covers the length bytes and the body. A batch of events is one frame,
//! so after a crash a batch is either whole (CRC matches) or absent.

use super::le_bytes::u32_at;

/// Bytes before the body.
pub const FRAME_HEADER: usize = 12;
/// Frame magic.
pub const FRAME_MAGIC: [u8; 4] = *b"BPKF";
/// Largest frame body accepted, in bytes.
pub const MAX_FRAME_BODY: usize = 256 << 20;

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the frame claims (a torn write, or the end).
    #[error("truncated frame: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes the frame needs.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The magic is wrong: not the start of a frame.
    #[error("bad frame magic")]
    BadMagic,
    /// The length field is beyond the limit.
    #[error("frame length {0} exceeds the limit")]
    BadLength(usize),
    /// The CRC does not match.
    #[error("frame checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    BadCrc {
        /// CRC in the frame.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
}

fn crc(len: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(body);
    h.finalize()
}

/// Appends one frame holding `body` to `out`.
pub fn encode_frame(body: &[u8], out: &mut Vec<u8>) {
    assert!(body.len() <= MAX_FRAME_BODY, "frame body too large");
    let len = (body.len() as u32).to_le_bytes();
    out.extend_from_slice(&FRAME_MAGIC);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc(&len, body).to_le_bytes());
    out.extend_from_slice(body);
}

/// Starts a frame in `out` whose body is written in place afterwards; call
/// [`finish_frame`] with the returned start offset once the body is written.
pub(crate) fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    start
}

/// Fills in the header of a frame begun with [`begin_frame`].
pub(crate) fn finish_frame(out: &mut [u8], start: usize) {
    let body_len = out.len() - start - FRAME_HEADER;
    assert!(body_len <= MAX_FRAME_BODY, "frame body too large");
    let len = (body_len as u32).to_le_bytes();
    let c = crc(&len, &out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&FRAME_MAGIC);
    out[start + 4..start + 8].copy_from_slice(&len);
    out[start + 8..start + 12].copy_from_slice(&c.to_le_bytes());
}

/// Decodes the frame at the start of `buf`: its body and its total length.
///
/// # Errors
/// Why the bytes are not a whole, intact frame.
pub fn decode_frame(buf: &[u8]) -> Result<(&[u8], usize), FrameError> {
    if buf.len() < FRAME_HEADER {
        return Err(FrameError::Truncated {
            need: FRAME_HEADER,
            have: buf.len(),
        });
    }
    if buf[..4] != FRAME_MAGIC {
        return Err(FrameError::BadMagic);
    }
    let len = u32_at(buf, 4) as usize;
    if len > MAX_FRAME_BODY {
        return Err(FrameError::BadLength(len));
    }
    let total = FRAME_HEADER + len;
    if buf.len() < total {
        return Err(FrameError::Truncated {
            need: total,
            have: buf.len(),
        });
    }
    let stored = u32_at(buf, 8);
    let body = &buf[FRAME_HEADER..total];
    let computed = crc(&buf[4..8], body);
    if stored != computed {
        return Err(FrameError::BadCrc { stored, computed });
    }
    Ok((body, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips_any_body(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut out = Vec::new();
            encode_frame(&body, &mut out);
            let (b, n) = decode_frame(&out).unwrap();
            prop_assert_eq!(b, &body[..]);
            prop_assert_eq!(n, out.len());
        }

        #[test]
        fn any_single_bit_flip_is_detected(body in proptest::collection::vec(any::<u8>(), 1..512), bit in any::<usize>()) {
            let mut out = Vec::new();
            encode_frame(&body, &mut out);
            let i = bit % (out.len() * 8);
            out[i / 8] ^= 1 << (i % 8);
            let undetected = decode_frame(&out).is_ok();
            prop_assert!(!undetected, "flip at bit {} went unnoticed", i);
        }

        #[test]
        fn every_truncation_is_detected(body in proptest::collection::vec(any::<u8>(), 0..512), cut in any::<usize>()) {
            let mut out = Vec::new();
            encode_frame(&body, &mut out);
            let cut = cut % out.len();
            let is_truncated = matches!(decode_frame(&out[..cut]), Err(FrameError::Truncated { .. }));
            prop_assert!(is_truncated);
        }

        #[test]
        fn in_place_frames_equal_encoded_frames(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut a = Vec::new();
            encode_frame(&body, &mut a);
            let mut b = vec![7u8; 3];
            let s = begin_frame(&mut b);
            b.extend_from_slice(&body);
            finish_frame(&mut b, s);
            prop_assert_eq!(&b[3..], &a[..]);
        }
    }
}
