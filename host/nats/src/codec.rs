//! How an event sits in a NATS message: the body is `BPK1`, the envelope's
//! length (u32, little-endian), the envelope as JSON, then the payload
//! bytes untouched. Keeping names and meta out of NATS headers means no
//! name needs header escaping; the id is also in the subject (look-up).
//!
//! The envelope carries the store's [`EventHeader`] fields — entity
//! sequence and chain link included — and the event hash. The hash is the
//! store's ([`EventHeader::hash`]) over the header **with `sequence` 0**:
//! the stream sequence is assigned by the server after the writer hashed,
//! so the chain commits to ids, entity positions and content, and the
//! stream sequence is filled in on read. A body whose hash does not match
//! is reported as damage.

use crate::error::LogError;
use batpak_store::{hex, ChainLink, Coordinate, Event, EventHeader, EventId, Proposal};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const MAGIC: &[u8; 4] = b"BPK1";

#[derive(Serialize, Deserialize)]
struct Link {
    id: String,
    hash: String,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    id: String,
    entity: String,
    scope: String,
    kind: String,
    eseq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prev: Option<Link>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    causation: Option<String>,
    correlation: String,
    time_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    meta: Vec<(String, String)>,
    hash: String,
}

/// The id as 32 lower-case hex digits (its subject token): the store's
/// own text form of an id.
pub fn id_hex(id: EventId) -> String {
    id.to_string()
}

/// An id from its text form, as the store parses it (exactly 32 hex digits).
fn parse_id(s: &str) -> Option<EventId> {
    s.parse().ok()
}

fn parse_hash(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The header `proposal` gets as the `entity_sequence`-th event of its
/// entity after `prev`, with id `id`, written at `time_us` (sequence 0:
/// the stream assigns it).
pub fn header(
    proposal: &Proposal,
    id: EventId,
    entity_sequence: u64,
    prev: Option<ChainLink>,
    time_us: u64,
) -> EventHeader {
    EventHeader {
        id,
        sequence: 0,
        entity_sequence,
        coordinate: proposal.coordinate.clone(),
        kind: proposal.kind.clone(),
        causation: proposal.causation,
        correlation: proposal.correlation.unwrap_or(id),
        timestamp_us: time_us,
        prev,
        idempotency_key: proposal.idempotency_key.clone(),
        meta: proposal.meta.clone(),
    }
}

/// The message body of `header` (sequence 0) and `payload`, and the event
/// hash.
pub fn encode(header: &EventHeader, payload: &[u8]) -> (Vec<u8>, [u8; 32]) {
    debug_assert_eq!(header.sequence, 0);
    let hash = header.hash(payload);
    let envelope = Envelope {
        id: id_hex(header.id),
        entity: header.coordinate.entity.clone(),
        scope: header.coordinate.scope.clone(),
        kind: header.kind.clone(),
        eseq: header.entity_sequence,
        prev: header.prev.map(|l| Link {
            id: id_hex(l.id),
            hash: hex(&l.hash),
        }),
        causation: header.causation.map(id_hex),
        correlation: id_hex(header.correlation),
        time_us: header.timestamp_us,
        key: header.idempotency_key.clone(),
        meta: header.meta.to_vec(),
        hash: hex(&hash),
    };
    let json = serde_json::to_vec(&envelope).expect("an envelope always serialises");
    let mut body = Vec::with_capacity(8 + json.len() + payload.len());
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(&(json.len() as u32).to_le_bytes());
    body.extend_from_slice(&json);
    body.extend_from_slice(payload);
    (body, hash)
}

/// The event in a message body read at `partition`, stream `sequence`;
/// its hash checked.
pub fn decode(partition: u32, sequence: u64, body: &[u8]) -> Result<Event, LogError> {
    let damaged = |reason: String| LogError::Damaged {
        partition,
        sequence,
        reason,
    };
    if body.len() < 8 || &body[..4] != MAGIC {
        return Err(damaged("no BPK1 envelope".into()));
    }
    let len = u32::from_le_bytes(body[4..8].try_into().unwrap()) as usize;
    let Some(json) = body.get(8..8 + len) else {
        return Err(damaged(format!(
            "envelope length {len} runs past the body ({} bytes)",
            body.len()
        )));
    };
    let e: Envelope =
        serde_json::from_slice(json).map_err(|err| damaged(format!("envelope: {err}")))?;
    let id = parse_id(&e.id).ok_or_else(|| damaged(format!("bad id {:?}", e.id)))?;
    let correlation = parse_id(&e.correlation)
        .ok_or_else(|| damaged(format!("bad correlation {:?}", e.correlation)))?;
    let causation = match &e.causation {
        None => None,
        Some(c) => Some(parse_id(c).ok_or_else(|| damaged(format!("bad causation {c:?}")))?),
    };
    let prev = match &e.prev {
        None => None,
        Some(l) => Some(ChainLink {
            id: parse_id(&l.id).ok_or_else(|| damaged(format!("bad prev id {:?}", l.id)))?,
            hash: parse_hash(&l.hash)
                .ok_or_else(|| damaged(format!("bad prev hash {:?}", l.hash)))?,
        }),
    };
    let hash = parse_hash(&e.hash).ok_or_else(|| damaged(format!("bad hash {:?}", e.hash)))?;
    let payload = &body[8 + len..];
    let mut header = EventHeader {
        id,
        sequence: 0,
        entity_sequence: e.eseq,
        coordinate: Coordinate {
            entity: e.entity,
            scope: e.scope,
        },
        kind: e.kind,
        causation,
        correlation,
        timestamp_us: e.time_us,
        prev,
        idempotency_key: e.key,
        meta: e.meta.into(),
    };
    if header.hash(payload) != hash {
        return Err(damaged(
            "the event hash does not match its header and payload".into(),
        ));
    }
    header.sequence = sequence;
    Ok(Event {
        header: Arc::new(header),
        payload: payload.into(),
        hash,
    })
}

/// The body of an outbox message: `proposal` with its derived `id` as an
/// envelope of entity sequence 0 and no chain link (its chain is computed
/// in its own partition when the relay forwards it), written at `time_us`.
pub fn encode_outbox(proposal: &Proposal, id: EventId, time_us: u64) -> Vec<u8> {
    encode(&header(proposal, id, 0, None, time_us), &proposal.payload).0
}

/// The proposal in an outbox message read at `partition`, stream
/// `sequence` (its hash checked): id, entity, scope, kind, causation,
/// correlation, idempotency key, meta and payload as committed.
pub fn decode_outbox(partition: u32, sequence: u64, body: &[u8]) -> Result<Proposal, LogError> {
    let e = decode(partition, sequence, body)?;
    let h = &e.header;
    Ok(Proposal {
        coordinate: h.coordinate.clone(),
        kind: h.kind.clone(),
        payload: e.payload.to_vec(),
        causation: h.causation,
        correlation: Some(h.correlation),
        idempotency_key: h.idempotency_key.clone(),
        id: Some(h.id),
        expected_sequence: None,
        meta: h.meta.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_round_trips_its_chain_and_damage_is_named() {
        let mut p = Proposal::new(
            Coordinate::new("order:1", "shop").unwrap(),
            "order.placed",
            b"{\"qty\":2}\n\x00".to_vec(),
        );
        p.meta = vec![("reactor".into(), "low-stock\nx".into())].into();
        p.causation = Some(EventId(7));
        let prev = ChainLink {
            id: EventId(41),
            hash: [9; 32],
        };
        let h = header(&p, EventId(42), 2, Some(prev), 1000);
        let (body, hash) = encode(&h, &p.payload);
        let e = decode(3, 9, &body).unwrap();
        assert_eq!(
            (e.header.sequence, e.header.entity_sequence, e.id()),
            (9, 2, EventId(42))
        );
        assert_eq!(&*e.payload, &p.payload[..]);
        assert_eq!(e.header.meta, p.meta);
        assert_eq!(e.header.correlation, EventId(42));
        assert_eq!(e.header.causation, Some(EventId(7)));
        assert_eq!(e.header.prev, Some(prev));
        assert_eq!(e.hash, hash);
        assert!(matches!(
            decode(3, 9, b"hello"),
            Err(LogError::Damaged { sequence: 9, .. })
        ));
        let mut cut = body.clone();
        cut[4] = 0xff;
        assert!(matches!(decode(3, 9, &cut), Err(LogError::Damaged { .. })));
        // One payload byte changed: the hash says so.
        let mut flipped = body.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            decode(3, 9, &flipped),
            Err(LogError::Damaged { .. })
        ));
    }

    #[test]
    fn an_outbox_message_carries_the_whole_proposal() {
        let mut p = Proposal::new(
            Coordinate::new("sku:9", "shop").unwrap(),
            "inventory.reserved",
            b"{\"qty\":1}".to_vec(),
        );
        p.causation = Some(EventId(7));
        p.correlation = Some(EventId(5));
        p.idempotency_key = Some("k".into());
        p.meta = vec![("reactor".into(), "inventory".into())].into();
        let body = encode_outbox(&p, EventId(42), 1000);
        let back = decode_outbox(1, 3, &body).unwrap();
        p.id = Some(EventId(42));
        assert_eq!(back, p);
        let mut flipped = body.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            decode_outbox(1, 3, &flipped),
            Err(LogError::Damaged { .. })
        ));
    }
}
