//! The batch buffer the host hands to `react`: a 16-byte header, one
//! 96-byte record per event, an interned string table (one 8-byte entry per
//! name, then the names back to back), then every payload back to back.
//!
//! Header: `count` u32 at 0, `string_count` u32 at 4, `strings_offset` u32
//! at 8 (where the table starts), `payloads_offset` u32 at 12 (where the
//! payload area starts). A string entry is (offset from the end of the
//! table, length), two u32s. Record fields are in [`batch_field`].

use crate::bytes::{put_u32, put_u64};

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
}
