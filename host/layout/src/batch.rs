//! The batch buffer the host hands to `react`: a 16-byte header, one
//! 96-byte record per event, an interned string table (one 8-byte entry per
//! name, then the names back to back), then every payload back to back.
//!
//! Header: `count` u32 at 0, `string_count` u32 at 4, `strings_offset` u32
//! at 8 (where the table starts), `payloads_offset` u32 at 12 (where the
//! payload area starts). A string entry is (offset from the end of the
//! table, length), two u32s. Record fields are in [`batch_field`].

use crate::bytes::{put_u32, put_u64, u32_at};
use std::fmt;

/// Bytes of the batch header.
pub const BATCH_HEADER_LEN: usize = 16;
/// Bytes of one event record.
pub const BATCH_RECORD_LEN: usize = 96;
/// Bytes of one string-table entry: offset and length, two u32s.
pub const STRING_ENTRY_LEN: usize = 8;
/// Bit 0 of an event record's flags: the event has a causation.
pub const FLAG_HAS_CAUSATION: u32 = 1;

/// Byte offsets of an event record's fields.
pub mod batch_field {
    /// High 64 bits of the event id (u64).
    pub const ID_HI: usize = 0;
    /// Low 64 bits of the event id (u64).
    pub const ID_LO: usize = 8;
    /// Store-wide sequence (u64).
    pub const SEQUENCE: usize = 16;
    /// Sequence within the entity (u64).
    pub const ENTITY_SEQUENCE: usize = 24;
    /// High 64 bits of the correlation id (u64).
    pub const CORRELATION_HI: usize = 32;
    /// Low 64 bits of the correlation id (u64).
    pub const CORRELATION_LO: usize = 40;
    /// High 64 bits of the causation id (u64; 0 without one).
    pub const CAUSATION_HI: usize = 48;
    /// Low 64 bits of the causation id (u64; 0 without one).
    pub const CAUSATION_LO: usize = 56;
    /// Commit time, microseconds since the Unix epoch (u64).
    pub const TIMESTAMP_US: usize = 64;
    /// String index of the entity (u32).
    pub const ENTITY: usize = 72;
    /// String index of the scope (u32).
    pub const SCOPE: usize = 76;
    /// String index of the kind (u32).
    pub const KIND: usize = 80;
    /// Flags (u32): [`FLAG_HAS_CAUSATION`](crate::FLAG_HAS_CAUSATION).
    pub const FLAGS: usize = 84;
    /// Payload offset from the start of the payload area (u32).
    pub const PAYLOAD_OFFSET: usize = 88;
    /// Payload length (u32).
    pub const PAYLOAD_LEN: usize = 92;
}

/// The batch header's four fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchHeader {
    /// Number of event records.
    pub count: u32,
    /// Number of string-table entries.
    pub string_count: u32,
    /// Where the string table starts (right after the records).
    pub strings_offset: u32,
    /// Where the payload area starts (right after the names).
    pub payloads_offset: u32,
}

/// Writes `h` into the first [`BATCH_HEADER_LEN`] bytes of `buf`.
///
/// # Panics
/// `buf` is shorter than the header.
pub fn write_batch_header(buf: &mut [u8], h: &BatchHeader) {
    put_u32(buf, 0, h.count);
    put_u32(buf, 4, h.string_count);
    put_u32(buf, 8, h.strings_offset);
    put_u32(buf, 12, h.payloads_offset);
}

/// One event record's fields, ids as (high, low) 64-bit halves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventRecord {
    /// The event id.
    pub id: (u64, u64),
    /// Store-wide sequence.
    pub sequence: u64,
    /// Sequence within the entity.
    pub entity_sequence: u64,
    /// Correlation id.
    pub correlation: (u64, u64),
    /// Causation id, if the event has one (sets [`FLAG_HAS_CAUSATION`]).
    pub causation: Option<(u64, u64)>,
    /// Commit time, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// String index of the entity.
    pub entity: u32,
    /// String index of the scope.
    pub scope: u32,
    /// String index of the kind.
    pub kind: u32,
    /// Payload offset in the payload area.
    pub payload_offset: u32,
    /// Payload length.
    pub payload_len: u32,
}

/// Writes `e` into `rec`, one record of [`BATCH_RECORD_LEN`] bytes. Every
/// field is written (causation and flags as 0 without a causation), so
/// `rec` need not be zeroed first.
///
/// # Panics
/// `rec` is shorter than a record.
pub fn write_event_record(rec: &mut [u8], e: &EventRecord) {
    use batch_field as f;
    put_u64(rec, f::ID_HI, e.id.0);
    put_u64(rec, f::ID_LO, e.id.1);
    put_u64(rec, f::SEQUENCE, e.sequence);
    put_u64(rec, f::ENTITY_SEQUENCE, e.entity_sequence);
    put_u64(rec, f::CORRELATION_HI, e.correlation.0);
    put_u64(rec, f::CORRELATION_LO, e.correlation.1);
    let (cause, flags) = match e.causation {
        Some(c) => (c, FLAG_HAS_CAUSATION),
        None => ((0, 0), 0),
    };
    put_u64(rec, f::CAUSATION_HI, cause.0);
    put_u64(rec, f::CAUSATION_LO, cause.1);
    put_u32(rec, f::FLAGS, flags);
    put_u64(rec, f::TIMESTAMP_US, e.timestamp_us);
    put_u32(rec, f::ENTITY, e.entity);
    put_u32(rec, f::SCOPE, e.scope);
    put_u32(rec, f::KIND, e.kind);
    put_u32(rec, f::PAYLOAD_OFFSET, e.payload_offset);
    put_u32(rec, f::PAYLOAD_LEN, e.payload_len);
}

/// Appends one string-table entry: the name's offset from the end of the
/// table and its length.
pub fn write_string_entry(buf: &mut Vec<u8>, offset: u32, len: u32) {
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&len.to_le_bytes());
}

/// Why a buffer is not a valid batch (see [`check_batch`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// Shorter than the header.
    ShortHeader {
        /// Bytes in the buffer.
        len: usize,
    },
    /// The records the header announces do not fit.
    RecordsPastEnd {
        /// The header's count.
        count: usize,
        /// Bytes in the buffer.
        len: usize,
    },
    /// The string table does not fit.
    StringTablePastEnd {
        /// The header's string count.
        string_count: usize,
        /// Where the header says the table starts.
        strings_offset: usize,
        /// Bytes in the buffer.
        len: usize,
    },
    /// The payload area starts past the end.
    PayloadsPastEnd {
        /// Where the header says it starts.
        payloads_offset: usize,
        /// Bytes in the buffer.
        len: usize,
    },
    /// A string ends past the buffer.
    StringPastEnd {
        /// Its index in the table.
        index: usize,
    },
    /// A string is not UTF-8 (or does not start and end on a character
    /// boundary of the names).
    StringNotUtf8 {
        /// Its index in the table.
        index: usize,
    },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::ShortHeader { len } => write!(
                f,
                "{len} bytes is shorter than the {BATCH_HEADER_LEN}-byte header"
            ),
            BatchError::RecordsPastEnd { count, len } => {
                write!(f, "{count} records do not fit in {len} bytes")
            }
            BatchError::StringTablePastEnd {
                string_count,
                strings_offset,
                len,
            } => write!(
                f,
                "a string table of {string_count} entries at {strings_offset} does not fit in {len} bytes"
            ),
            BatchError::PayloadsPastEnd {
                payloads_offset,
                len,
            } => write!(
                f,
                "the payload area starts at {payloads_offset}, past the end ({len} bytes)"
            ),
            BatchError::StringPastEnd { index } => write!(f, "string {index} ends past the buffer"),
            BatchError::StringNotUtf8 { index } => write!(f, "string {index} is not UTF-8"),
        }
    }
}

impl std::error::Error for BatchError {}

/// Checks a batch buffer's header, that every record fits, and that every
/// string of the table is in bounds and valid UTF-8; returns the header.
/// Record fields are not checked (a reader treats a bad string index or
/// payload range itself). After `Ok`, string `j` is the UTF-8 bytes at
/// `strings_offset + STRING_ENTRY_LEN * string_count + offset_j`, of
/// `len_j` bytes, for the entry `(offset_j, len_j)` of the table.
///
/// # Errors
/// The first rule the buffer breaks.
pub fn check_batch(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let len = buf.len();
    if len < BATCH_HEADER_LEN {
        return Err(BatchError::ShortHeader { len });
    }
    let header = BatchHeader {
        count: u32_at(buf, 0),
        string_count: u32_at(buf, 4),
        strings_offset: u32_at(buf, 8),
        payloads_offset: u32_at(buf, 12),
    };
    let count = header.count as usize;
    let string_count = header.string_count as usize;
    let strings_offset = header.strings_offset as usize;
    let payloads_offset = header.payloads_offset as usize;
    let records_end = count
        .checked_mul(BATCH_RECORD_LEN)
        .and_then(|n| n.checked_add(BATCH_HEADER_LEN));
    if records_end.is_none_or(|end| end > len) {
        return Err(BatchError::RecordsPastEnd { count, len });
    }
    let names_at = string_count
        .checked_mul(STRING_ENTRY_LEN)
        .and_then(|n| n.checked_add(strings_offset));
    let Some(names_at) = names_at.filter(|&n| n <= len) else {
        return Err(BatchError::StringTablePastEnd {
            string_count,
            strings_offset,
            len,
        });
    };
    if payloads_offset > len {
        return Err(BatchError::PayloadsPastEnd {
            payloads_offset,
            len,
        });
    }
    // The names normally lie back to back between the table and the
    // payload area: validate that region once, then each string only needs
    // to start and end on a character boundary of it. A string elsewhere
    // is validated on its own.
    let region = (names_at <= payloads_offset)
        .then(|| std::str::from_utf8(&buf[names_at..payloads_offset]).ok())
        .flatten();
    for index in 0..string_count {
        let e = strings_offset + STRING_ENTRY_LEN * index;
        let start = names_at as u64 + u32_at(buf, e) as u64;
        let end = start + u32_at(buf, e + 4) as u64;
        if end > len as u64 {
            return Err(BatchError::StringPastEnd { index });
        }
        let (start, end) = (start as usize, end as usize);
        let ok = match region {
            Some(names) if end <= payloads_offset => {
                names.is_char_boundary(start - names_at) && names.is_char_boundary(end - names_at)
            }
            _ => std::str::from_utf8(&buf[start..end]).is_ok(),
        };
        if !ok {
            return Err(BatchError::StringNotUtf8 { index });
        }
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::{u32_at, u64_at};

    #[test]
    fn a_record_is_written_field_by_field_at_the_documented_offsets() {
        let mut rec = [0xAAu8; BATCH_RECORD_LEN];
        let e = EventRecord {
            id: (1, 2),
            sequence: 3,
            entity_sequence: 4,
            correlation: (5, 6),
            causation: Some((7, 8)),
            timestamp_us: 9,
            entity: 10,
            scope: 11,
            kind: 12,
            payload_offset: 13,
            payload_len: 14,
        };
        write_event_record(&mut rec, &e);
        let words: Vec<u64> = (0..9).map(|i| u64_at(&rec, 8 * i)).collect();
        assert_eq!(words, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let words: Vec<u32> = (0..6).map(|i| u32_at(&rec, 72 + 4 * i)).collect();
        assert_eq!(words, [10, 11, 12, FLAG_HAS_CAUSATION, 13, 14]);
        // Without a causation the id and the flag are zero, whatever was
        // there before.
        write_event_record(
            &mut rec,
            &EventRecord {
                causation: None,
                ..e
            },
        );
        assert_eq!((u64_at(&rec, 48), u64_at(&rec, 56)), (0, 0));
        assert_eq!(u32_at(&rec, 84), 0);
        let mut h = [0u8; BATCH_HEADER_LEN];
        write_batch_header(
            &mut h,
            &BatchHeader {
                count: 1,
                string_count: 2,
                strings_offset: 3,
                payloads_offset: 4,
            },
        );
        assert_eq!(h, [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0]);
        let mut t = Vec::new();
        write_string_entry(&mut t, 7, 9);
        assert_eq!(t, [7, 0, 0, 0, 9, 0, 0, 0]);
    }

    /// A one-event batch with names "ab" and "c", payload "{}".
    fn batch() -> Vec<u8> {
        let mut b = vec![0u8; BATCH_HEADER_LEN + BATCH_RECORD_LEN];
        write_event_record(
            &mut b[BATCH_HEADER_LEN..],
            &EventRecord {
                scope: 1,
                payload_len: 2,
                ..EventRecord::default()
            },
        );
        let strings_offset = b.len() as u32;
        write_string_entry(&mut b, 0, 2);
        write_string_entry(&mut b, 2, 1);
        b.extend_from_slice(b"abc");
        let payloads_offset = b.len() as u32;
        b.extend_from_slice(b"{}");
        let h = BatchHeader {
            count: 1,
            string_count: 2,
            strings_offset,
            payloads_offset,
        };
        write_batch_header(&mut b, &h);
        b
    }

    #[test]
    fn check_batch_accepts_a_written_batch_and_names_each_broken_rule() {
        let b = batch();
        let h = check_batch(&b).unwrap();
        assert_eq!((h.count, h.string_count), (1, 2));
        assert_eq!(
            check_batch(&b[..15]).unwrap_err().to_string(),
            "15 bytes is shorter than the 16-byte header"
        );
        let with = |at: usize, v: u32| {
            let mut c = b.clone();
            c[at..at + 4].copy_from_slice(&v.to_le_bytes());
            check_batch(&c).unwrap_err()
        };
        assert!(matches!(
            with(0, 2),
            BatchError::RecordsPastEnd { count: 2, .. }
        ));
        assert!(matches!(
            with(0, u32::MAX),
            BatchError::RecordsPastEnd { .. }
        ));
        assert!(matches!(with(4, 99), BatchError::StringTablePastEnd { .. }));
        assert!(matches!(with(12, 9999), BatchError::PayloadsPastEnd { .. }));
        let table = BATCH_HEADER_LEN + BATCH_RECORD_LEN;
        assert_eq!(with(table + 4, 99), BatchError::StringPastEnd { index: 0 });
        // "ab" cut inside a two-byte character.
        let mut c = b.clone();
        let names = table + 2 * STRING_ENTRY_LEN;
        c[names..names + 2].copy_from_slice("é".as_bytes());
        c[table + 4..table + 8].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            check_batch(&c).unwrap_err(),
            BatchError::StringNotUtf8 { index: 0 }
        );
    }
}
