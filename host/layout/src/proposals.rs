//! The proposals buffer `react` returns: an 8-byte header (`count` u32 at
//! 0, 4 reserved bytes that must be 0), one 56-byte record per proposal,
//! then names and payloads anywhere after the records (records may share
//! bytes). An empty buffer means no proposals. Record fields are in
//! [`proposal_field`].
//!
//! [`decode_proposals`] checks every structural rule of the contract and
//! returns views into the buffer: it copies nothing, so a buffer whose
//! records all point at one huge range costs the host nothing before it is
//! refused.

use crate::bytes::{put_u32, put_u64, u32_at, u64_at};
use std::fmt;

/// Bytes of the proposals header.
pub const PROPOSALS_HEADER_LEN: usize = 8;
/// Bytes of one proposal record.
pub const PROPOSAL_RECORD_LEN: usize = 56;
/// Causation tag: caused by the source event.
pub const CAUSATION_SOURCE: u32 = 0;
/// Causation tag: caused by the event id in the record's cause fields.
pub const CAUSATION_EVENT: u32 = 1;
/// Causation tag: no causation.
pub const CAUSATION_NONE: u32 = 2;

/// Byte offsets of a proposal record's fields. A range is (offset from the
/// start of the buffer, length), two u32s; an empty entity or scope range
/// means "the source event's".
pub mod proposal_field {
    /// Index of the source event in the batch (u32).
    pub const SOURCE: usize = 0;
    /// Index of the kind in the reactor's declared `emits` (u32).
    pub const KIND: usize = 4;
    /// Entity range (offset u32, length u32).
    pub const ENTITY: usize = 8;
    /// Scope range (offset u32, length u32).
    pub const SCOPE: usize = 16;
    /// Payload range (offset u32, length u32).
    pub const PAYLOAD: usize = 24;
    /// Causation tag (u32): one of the `CAUSATION_*` constants.
    pub const CAUSATION: usize = 32;
    /// Reserved (u32), must be 0.
    pub const RESERVED: usize = 36;
    /// High 64 bits of the cause (u64), with [`CAUSATION_EVENT`](crate::CAUSATION_EVENT).
    pub const CAUSE_HI: usize = 40;
    /// Low 64 bits of the cause (u64), with [`CAUSATION_EVENT`](crate::CAUSATION_EVENT).
    pub const CAUSE_LO: usize = 48;
}

/// Writes the proposals header for `count` records into the first
/// [`PROPOSALS_HEADER_LEN`] bytes of `buf` (reserved bytes 0).
///
/// # Panics
/// `buf` is shorter than the header.
pub fn write_proposals_header(buf: &mut [u8], count: u32) {
    put_u32(buf, 0, count);
    put_u32(buf, 4, 0);
}

/// One proposal record's fields as written: ranges are (offset, length)
/// into the whole buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProposalRecord {
    /// Index of the source event in the batch.
    pub source: u32,
    /// Index of the kind in the reactor's `emits`.
    pub kind: u32,
    /// Entity range; empty for the source event's entity.
    pub entity: (u32, u32),
    /// Scope range; empty for the source event's scope.
    pub scope: (u32, u32),
    /// Payload range.
    pub payload: (u32, u32),
    /// Causation tag (`CAUSATION_*`).
    pub causation: u32,
    /// The cause (high, low) with [`CAUSATION_EVENT`].
    pub cause: (u64, u64),
}

/// Writes `p` into `rec`, one record of [`PROPOSAL_RECORD_LEN`] bytes
/// (reserved bytes 0).
///
/// # Panics
/// `rec` is shorter than a record.
pub fn write_proposal_record(rec: &mut [u8], p: &ProposalRecord) {
    use proposal_field as f;
    put_u32(rec, f::SOURCE, p.source);
    put_u32(rec, f::KIND, p.kind);
    put_u32(rec, f::ENTITY, p.entity.0);
    put_u32(rec, f::ENTITY + 4, p.entity.1);
    put_u32(rec, f::SCOPE, p.scope.0);
    put_u32(rec, f::SCOPE + 4, p.scope.1);
    put_u32(rec, f::PAYLOAD, p.payload.0);
    put_u32(rec, f::PAYLOAD + 4, p.payload.1);
    put_u32(rec, f::CAUSATION, p.causation);
    put_u32(rec, f::RESERVED, 0);
    put_u64(rec, f::CAUSE_HI, p.cause.0);
    put_u64(rec, f::CAUSE_LO, p.cause.1);
}

/// The budgets [`decode_proposals`] enforces, set by the caller (the host's
/// limits per call and the store's name limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProposalLimits {
    /// Events in the batch the proposals answer: a source index must be
    /// below it.
    pub batch_len: usize,
    /// Most proposals one buffer may hold.
    pub max_proposals: usize,
    /// Most payload bytes all proposals together may hold.
    pub max_payload_bytes: usize,
    /// Longest entity or scope name, in bytes.
    pub max_name_len: usize,
}

/// What caused a proposed event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Causation {
    /// The source event.
    Source,
    /// The event with this id (high, low).
    Event(u64, u64),
    /// Nothing.
    None,
}

/// One decoded proposal, borrowing its names and payload from the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal<'a> {
    /// Index of the source event in the batch (below `batch_len`).
    pub source: u32,
    /// Index into the reactor's `emits`, unchecked: an index past it is the
    /// caller's to refuse.
    pub kind: u32,
    /// The entity, valid UTF-8 within the name limit; empty for the source
    /// event's.
    pub entity: &'a str,
    /// The scope, valid UTF-8 within the name limit; empty for the source
    /// event's.
    pub scope: &'a str,
    /// The payload bytes.
    pub payload: &'a [u8],
    /// The causation.
    pub causation: Causation,
}

/// Which name of a proposal a [`ProposalsError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameField {
    /// The entity range.
    Entity,
    /// The scope range.
    Scope,
    /// The payload range.
    Payload,
}

impl fmt::Display for NameField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameField::Entity => "entity",
            NameField::Scope => "scope",
            NameField::Payload => "payload",
        })
    }
}

/// The first structural rule a proposals buffer breaks. `proposal` is the
/// 0-based index of the record at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProposalsError {
    /// Non-empty but shorter than the header.
    ShortHeader {
        /// Bytes in the buffer.
        len: usize,
    },
    /// Header bytes 4..8 are not 0.
    ReservedHeader {
        /// The value found there.
        found: u32,
    },
    /// More proposals than [`ProposalLimits::max_proposals`].
    TooMany {
        /// The header's count.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The records the header announces do not fit in the buffer.
    Truncated {
        /// The header's count.
        count: usize,
        /// Bytes the header and records need.
        needed: u64,
        /// Bytes in the buffer.
        len: usize,
    },
    /// A source index past the batch.
    SourceOutOfRange {
        /// The record.
        proposal: usize,
        /// Its source index.
        source: u32,
        /// Events in the batch.
        batch_len: usize,
    },
    /// A causation tag other than the three defined.
    BadCausation {
        /// The record.
        proposal: usize,
        /// Its tag.
        tag: u32,
    },
    /// Record bytes 36..40 are not 0.
    ReservedRecord {
        /// The record.
        proposal: usize,
        /// The value found there.
        found: u32,
    },
    /// A range that ends past the buffer.
    RangeOutside {
        /// The record.
        proposal: usize,
        /// Which range.
        field: NameField,
        /// Its start.
        start: u64,
        /// Its end.
        end: u64,
        /// Bytes in the buffer.
        len: usize,
    },
    /// The payloads so far add up to more than
    /// [`ProposalLimits::max_payload_bytes`].
    PayloadBudget {
        /// The record at which the total passed the limit.
        proposal: usize,
        /// The limit.
        limit: usize,
    },
    /// An entity or scope longer than [`ProposalLimits::max_name_len`].
    NameTooLong {
        /// The record.
        proposal: usize,
        /// Which name.
        field: NameField,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// An entity or scope that is not UTF-8.
    NotUtf8 {
        /// The record.
        proposal: usize,
        /// Which name.
        field: NameField,
        /// Why.
        error: std::str::Utf8Error,
    },
}

impl fmt::Display for ProposalsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposalsError::ShortHeader { len } => write!(
                f,
                "{len} bytes is shorter than the {PROPOSALS_HEADER_LEN}-byte header (an empty buffer means no proposals)"
            ),
            ProposalsError::ReservedHeader { found } => write!(
                f,
                "header bytes 4..8 are reserved and must be 0, found {found}"
            ),
            ProposalsError::TooMany { count, limit } => {
                write!(f, "{count} proposals; the limit is {limit} per call")
            }
            ProposalsError::Truncated { count, needed, len } => write!(
                f,
                "the header announces {count} proposal(s), which need {needed} bytes, but the buffer has {len}"
            ),
            ProposalsError::SourceOutOfRange {
                proposal,
                source,
                batch_len,
            } => write!(
                f,
                "proposal {proposal} names source event {source} but the batch has {batch_len} event(s) (source is a 0-based index into the batch)"
            ),
            ProposalsError::BadCausation { proposal, tag } => write!(
                f,
                "proposal {proposal}: causation is {tag}; it must be 0 (the source event), 1 (the event id at offset 40) or 2 (none)"
            ),
            ProposalsError::ReservedRecord { proposal, found } => write!(
                f,
                "proposal {proposal}: record bytes 36..40 are reserved and must be 0, found {found}"
            ),
            ProposalsError::RangeOutside {
                proposal,
                field,
                start,
                end,
                len,
            } => write!(
                f,
                "proposal {proposal}: its {field} range [{start}, {end}) falls outside the {len}-byte buffer"
            ),
            ProposalsError::PayloadBudget { proposal, limit } => write!(
                f,
                "more than {limit} payload bytes (at proposal {proposal}); the limit is {limit} per call"
            ),
            ProposalsError::NameTooLong {
                proposal,
                field,
                len,
                limit,
            } => write!(
                f,
                "proposal {proposal}: its {field} is {len} bytes; the limit is {limit} (MAX_NAME_LEN: an entity or scope name is at most {limit} bytes)"
            ),
            ProposalsError::NotUtf8 {
                proposal,
                field,
                error,
            } => write!(
                f,
                "proposal {proposal}: its {field} is not valid UTF-8 ({error})"
            ),
        }
    }
}

impl std::error::Error for ProposalsError {}

/// Decodes a proposals buffer, checking every structural rule in record
/// order and within `limits`. Names and payloads are views into `buf`:
/// nothing is copied, so the caller copies only what passed every check.
///
/// # Errors
/// The first rule the buffer breaks.
pub fn decode_proposals<'a>(
    buf: &'a [u8],
    limits: &ProposalLimits,
) -> Result<Vec<Proposal<'a>>, ProposalsError> {
    use proposal_field as f;
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    if buf.len() < PROPOSALS_HEADER_LEN {
        return Err(ProposalsError::ShortHeader { len: buf.len() });
    }
    let count = u32_at(buf, 0) as usize;
    let reserved = u32_at(buf, 4);
    if reserved != 0 {
        return Err(ProposalsError::ReservedHeader { found: reserved });
    }
    if count > limits.max_proposals {
        return Err(ProposalsError::TooMany {
            count,
            limit: limits.max_proposals,
        });
    }
    let needed = PROPOSALS_HEADER_LEN as u64 + PROPOSAL_RECORD_LEN as u64 * count as u64;
    if (buf.len() as u64) < needed {
        return Err(ProposalsError::Truncated {
            count,
            needed,
            len: buf.len(),
        });
    }
    // Ranges are checked against the whole buffer: records may share bytes.
    let range =
        |proposal: usize, r: &[u8], at: usize, field: NameField| -> Result<&[u8], ProposalsError> {
            let (off, len) = (u32_at(r, at) as u64, u32_at(r, at + 4) as u64);
            if off + len > buf.len() as u64 {
                return Err(ProposalsError::RangeOutside {
                    proposal,
                    field,
                    start: off,
                    end: off + len,
                    len: buf.len(),
                });
            }
            Ok(&buf[off as usize..(off + len) as usize])
        };
    // Length first, then UTF-8: a long name is refused without reading it.
    fn name(proposal: usize, bytes: &[u8], field: NameField) -> Result<&str, ProposalsError> {
        std::str::from_utf8(bytes).map_err(|error| ProposalsError::NotUtf8 {
            proposal,
            field,
            error,
        })
    }
    let mut payload_total = 0usize;
    let mut out = Vec::with_capacity(count);
    for k in 0..count {
        let at = PROPOSALS_HEADER_LEN + PROPOSAL_RECORD_LEN * k;
        let r = &buf[at..at + PROPOSAL_RECORD_LEN];
        let source = u32_at(r, f::SOURCE);
        if source as usize >= limits.batch_len {
            return Err(ProposalsError::SourceOutOfRange {
                proposal: k,
                source,
                batch_len: limits.batch_len,
            });
        }
        let causation = match u32_at(r, f::CAUSATION) {
            CAUSATION_SOURCE => Causation::Source,
            CAUSATION_EVENT => Causation::Event(u64_at(r, f::CAUSE_HI), u64_at(r, f::CAUSE_LO)),
            CAUSATION_NONE => Causation::None,
            tag => return Err(ProposalsError::BadCausation { proposal: k, tag }),
        };
        let reserved = u32_at(r, f::RESERVED);
        if reserved != 0 {
            return Err(ProposalsError::ReservedRecord {
                proposal: k,
                found: reserved,
            });
        }
        let entity = range(k, r, f::ENTITY, NameField::Entity)?;
        let scope = range(k, r, f::SCOPE, NameField::Scope)?;
        let payload = range(k, r, f::PAYLOAD, NameField::Payload)?;
        payload_total += payload.len();
        if payload_total > limits.max_payload_bytes {
            return Err(ProposalsError::PayloadBudget {
                proposal: k,
                limit: limits.max_payload_bytes,
            });
        }
        for (bytes, field) in [(entity, NameField::Entity), (scope, NameField::Scope)] {
            if bytes.len() > limits.max_name_len {
                return Err(ProposalsError::NameTooLong {
                    proposal: k,
                    field,
                    len: bytes.len(),
                    limit: limits.max_name_len,
                });
            }
        }
        out.push(Proposal {
            source,
            kind: u32_at(r, f::KIND),
            entity: name(k, entity, NameField::Entity)?,
            scope: name(k, scope, NameField::Scope)?,
            payload,
            causation,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ProposalLimits = ProposalLimits {
        batch_len: 1,
        max_proposals: 4,
        max_payload_bytes: 8,
        max_name_len: 5,
    };

    /// A buffer of `records` with `tail` after them; ranges in the records
    /// are absolute.
    fn buffer(records: &[ProposalRecord], tail: &[u8]) -> Vec<u8> {
        let n = records.len();
        let mut b = vec![0u8; PROPOSALS_HEADER_LEN + PROPOSAL_RECORD_LEN * n];
        write_proposals_header(&mut b, n as u32);
        for (k, r) in records.iter().enumerate() {
            let at = PROPOSALS_HEADER_LEN + PROPOSAL_RECORD_LEN * k;
            write_proposal_record(&mut b[at..at + PROPOSAL_RECORD_LEN], r);
        }
        b.extend_from_slice(tail);
        b
    }

    #[test]
    fn written_records_decode_to_views_of_the_buffer() {
        let tail_at = (PROPOSALS_HEADER_LEN + PROPOSAL_RECORD_LEN * 2) as u32;
        let b = buffer(
            &[
                ProposalRecord {
                    kind: 3,
                    entity: (tail_at, 3),
                    payload: (tail_at + 3, 2),
                    causation: CAUSATION_EVENT,
                    cause: (7, 8),
                    ..Default::default()
                },
                ProposalRecord {
                    scope: (tail_at, 3),
                    causation: CAUSATION_NONE,
                    ..Default::default()
                },
            ],
            b"e:1{}",
        );
        let p = decode_proposals(&b, &LIMITS).unwrap();
        assert_eq!(
            p,
            [
                Proposal {
                    source: 0,
                    kind: 3,
                    entity: "e:1",
                    scope: "",
                    payload: b"{}",
                    causation: Causation::Event(7, 8),
                },
                Proposal {
                    source: 0,
                    kind: 0,
                    entity: "",
                    scope: "e:1",
                    payload: b"",
                    causation: Causation::None,
                },
            ]
        );
        assert!(decode_proposals(&[], &LIMITS).unwrap().is_empty());
    }

    #[test]
    fn each_rule_has_its_own_error() {
        let d = |b: &[u8]| decode_proposals(b, &LIMITS).unwrap_err();
        assert_eq!(d(&[1]), ProposalsError::ShortHeader { len: 1 });
        assert_eq!(
            d(&[0, 0, 0, 0, 1, 0, 0, 0]),
            ProposalsError::ReservedHeader { found: 1 }
        );
        assert_eq!(
            d(&[5, 0, 0, 0, 0, 0, 0, 0]),
            ProposalsError::TooMany { count: 5, limit: 4 }
        );
        assert_eq!(
            d(&[1, 0, 0, 0, 0, 0, 0, 0]),
            ProposalsError::Truncated {
                count: 1,
                needed: 64,
                len: 8
            }
        );
        let one = |r: ProposalRecord, tail: &[u8]| d(&buffer(&[r], tail));
        let base = ProposalRecord::default();
        assert!(matches!(
            one(ProposalRecord { source: 1, ..base }, b""),
            ProposalsError::SourceOutOfRange { source: 1, .. }
        ));
        assert!(matches!(
            one(
                ProposalRecord {
                    causation: 3,
                    ..base
                },
                b""
            ),
            ProposalsError::BadCausation { tag: 3, .. }
        ));
        let mut b = buffer(&[base], b"");
        b[PROPOSALS_HEADER_LEN + proposal_field::RESERVED] = 2;
        assert!(matches!(
            d(&b),
            ProposalsError::ReservedRecord { found: 2, .. }
        ));
        let e = one(
            ProposalRecord {
                payload: (u32::MAX, u32::MAX),
                ..base
            },
            b"",
        );
        assert_eq!(
            e.to_string(),
            "proposal 0: its payload range [4294967295, 8589934590) falls outside the 64-byte buffer"
        );
        assert!(matches!(
            one(
                ProposalRecord {
                    payload: (0, 9),
                    ..base
                },
                b""
            ),
            ProposalsError::PayloadBudget { limit: 8, .. }
        ));
        assert!(matches!(
            one(
                ProposalRecord {
                    scope: (0, 6),
                    ..base
                },
                b""
            ),
            ProposalsError::NameTooLong {
                field: NameField::Scope,
                len: 6,
                ..
            }
        ));
        assert!(matches!(
            one(
                ProposalRecord {
                    entity: (64, 1),
                    ..base
                },
                &[0xff]
            ),
            ProposalsError::NotUtf8 {
                field: NameField::Entity,
                ..
            }
        ));
    }
}
