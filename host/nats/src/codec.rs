//! How an event sits in a NATS message: the body is `BPK1`, the envelope's
//! length (u32, little-endian), the envelope as JSON, then the payload
//! bytes untouched. Keeping names and meta out of NATS headers means no
//! name needs header escaping; the id is also in the subject (look-up).

use crate::error::LogError;
use batpak_store::{Coordinate, EventId, Meta, Proposal};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"BPK1";

/// One event as read back from a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEvent {
    /// The partition holding it.
    pub partition: u32,
    /// Its sequence in the partition's stream (global order is per
    /// partition; sequences of different partitions are not comparable).
    pub sequence: u64,
    /// Its id.
    pub id: EventId,
    /// Entity and scope.
    pub coordinate: Coordinate,
    /// Its kind.
    pub kind: String,
    /// The event that caused it.
    pub causation: Option<EventId>,
    /// Its conversation (itself when it started one).
    pub correlation: EventId,
    /// Microseconds since the Unix epoch, set by the writer.
    pub timestamp_us: u64,
    /// The idempotency key it was appended with.
    pub idempotency_key: Option<String>,
    /// Header metadata (lineage).
    pub meta: Meta,
    /// The payload bytes, as appended.
    pub payload: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    id: String,
    entity: String,
    scope: String,
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    causation: Option<String>,
    correlation: String,
    time_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    meta: Meta,
}

/// The id as 32 lower-case hex digits (its subject token).
pub fn id_hex(id: EventId) -> String {
    format!("{:032x}", id.0)
}

fn parse_id(s: &str) -> Option<EventId> {
    (s.len() == 32)
        .then(|| u128::from_str_radix(s, 16).ok())
        .flatten()
        .map(EventId)
}

/// The message body of `proposal` with id `id`, written at `time_us`.
pub fn encode(proposal: &Proposal, id: EventId, time_us: u64) -> Vec<u8> {
    let envelope = Envelope {
        id: id_hex(id),
        entity: proposal.coordinate.entity.clone(),
        scope: proposal.coordinate.scope.clone(),
        kind: proposal.kind.clone(),
        causation: proposal.causation.map(id_hex),
        correlation: id_hex(proposal.correlation.unwrap_or(id)),
        time_us,
        key: proposal.idempotency_key.clone(),
        meta: proposal.meta.clone(),
    };
    let json = serde_json::to_vec(&envelope).expect("an envelope always serialises");
    let mut body = Vec::with_capacity(8 + json.len() + proposal.payload.len());
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(&(json.len() as u32).to_le_bytes());
    body.extend_from_slice(&json);
    body.extend_from_slice(&proposal.payload);
    body
}

/// The event in a message body read at `partition`, `sequence`.
pub fn decode(partition: u32, sequence: u64, body: &[u8]) -> Result<LogEvent, LogError> {
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
    Ok(LogEvent {
        partition,
        sequence,
        id,
        coordinate: Coordinate {
            entity: e.entity,
            scope: e.scope,
        },
        kind: e.kind,
        causation,
        correlation,
        timestamp_us: e.time_us,
        idempotency_key: e.key,
        meta: e.meta,
        payload: body[8 + len..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_round_trips_and_damage_is_named() {
        let mut p = Proposal::new(
            Coordinate::new("order:1", "shop").unwrap(),
            "order.placed",
            b"{\"qty\":2}\n\x00".to_vec(),
        );
        p.meta = vec![("reactor".into(), "low-stock\nx".into())];
        p.causation = Some(EventId(7));
        let body = encode(&p, EventId(42), 1000);
        let e = decode(3, 9, &body).unwrap();
        assert_eq!((e.partition, e.sequence, e.id), (3, 9, EventId(42)));
        assert_eq!(e.payload, p.payload);
        assert_eq!(e.meta, p.meta);
        assert_eq!(e.correlation, EventId(42));
        assert_eq!(e.causation, Some(EventId(7)));
        assert!(matches!(
            decode(3, 9, b"hello"),
            Err(LogError::Damaged { sequence: 9, .. })
        ));
        let mut cut = body.clone();
        cut[4] = 0xff;
        assert!(matches!(decode(3, 9, &cut), Err(LogError::Damaged { .. })));
    }
}
