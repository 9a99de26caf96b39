//! The event model: ids, coordinates, kinds, proposals, stored events and
//! receipts.
//!
//! Everything here is plain data with validation; the store, canals and gates
//! build on these types and never on each other's internals.

use crate::system::is_system_kind;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Longest entity or scope name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest event kind, in bytes.
pub const MAX_KIND_LEN: usize = 128;
/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;
/// Largest payload of one event, in bytes.
pub const MAX_PAYLOAD_LEN: usize = 16 << 20;

/// A 128-bit event id, printed as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct EventId(pub u128);

impl EventId {
    /// Derives a stable id from arbitrary bytes (blake3, first 128 bits).
    /// Equal inputs always give equal ids, which is what makes retries and
    /// replays idempotent.
    pub fn derive(parts: &[&[u8]]) -> EventId {
        let mut h = blake3::Hasher::new();
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        let b = h.finalize();
        let mut x = [0u8; 16];
        x.copy_from_slice(&b.as_bytes()[..16]);
        EventId(u128::from_be_bytes(x))
    }

    /// A fresh, time-ordered id: 48 bits of Unix milliseconds then 80 random
    /// bits (UUIDv7-like), so ids sort roughly by creation time.
    pub fn generate() -> EventId {
        let ms = now_us() / 1000;
        let mut r = [0u8; 10];
        // getrandom only fails on exotic platforms; fall back to a
        // time-and-counter mix so an id is still unique within the process.
        if getrandom::fill(&mut r).is_err() {
            use std::sync::atomic::{AtomicU64, Ordering};
            static C: AtomicU64 = AtomicU64::new(0);
            let c = C.fetch_add(1, Ordering::Relaxed);
            let d = EventId::derive(&[&now_us().to_le_bytes(), &c.to_le_bytes()]);
            r.copy_from_slice(&d.0.to_le_bytes()[..10]);
        }
        let mut x = [0u8; 16];
        x[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        x[6..].copy_from_slice(&r);
        EventId(u128::from_be_bytes(x))
    }

    /// The high 64 bits (as carried across the WIT boundary).
    pub fn hi(self) -> u64 {
        (self.0 >> 64) as u64
    }

    /// The low 64 bits (as carried across the WIT boundary).
    pub fn lo(self) -> u64 {
        self.0 as u64
    }

    /// Rebuilds an id from its two halves.
    pub fn from_parts(hi: u64, lo: u64) -> EventId {
        EventId(((hi as u128) << 64) | lo as u128)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({:032x})", self.0)
    }
}

impl FromStr for EventId {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ValidationError::BadId(s.to_string()));
        }
        u128::from_str_radix(s, 16)
            .map(EventId)
            .map_err(|_| ValidationError::BadId(s.to_string()))
    }
}

/// Where an event lives: an entity inside a scope. Construct with
/// [`Coordinate::new`], which validates both names.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Coordinate {
    /// The aggregate or stream name, e.g. `order:42`.
    pub entity: String,
    /// The namespace, e.g. `shop`.
    pub scope: String,
}

impl Coordinate {
    /// Validates and builds a coordinate.
    ///
    /// # Errors
    /// A name that is empty, longer than [`MAX_NAME_LEN`] bytes, has leading
    /// or trailing whitespace or contains a control or line/paragraph
    /// separator character.
    pub fn new(
        entity: impl Into<String>,
        scope: impl Into<String>,
    ) -> Result<Self, ValidationError> {
        let entity = entity.into();
        let scope = scope.into();
        validate_name("entity", &entity, MAX_NAME_LEN)?;
        validate_name("scope", &scope, MAX_NAME_LEN)?;
        Ok(Coordinate { entity, scope })
    }
}

/// Checks one name (entity, scope, kind, cursor id) against the shared rules.
pub fn validate_name(what: &'static str, s: &str, max: usize) -> Result<(), ValidationError> {
    let bad = |reason: &str| ValidationError::BadName {
        what,
        value: s.chars().take(80).collect(),
        reason: reason.to_string(),
    };
    if s.is_empty() {
        return Err(bad("must not be empty"));
    }
    if s.len() > max {
        return Err(bad(&format!("is {} bytes; the limit is {max}", s.len())));
    }
    if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return Err(bad("must not start or end with whitespace"));
    }
    // Nearly every name is ASCII: one pass over its bytes then.
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(());
    }
    if let Some(c) = s
        .chars()
        .find(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}'))
    {
        return Err(bad(&format!(
            "contains the control or separator character U+{:04X}",
            c as u32
        )));
    }
    Ok(())
}

/// Validates an event kind: a name of at most [`MAX_KIND_LEN`] bytes with no
/// whitespace at all.
pub fn validate_kind(kind: &str) -> Result<(), ValidationError> {
    validate_name("kind", kind, MAX_KIND_LEN)?;
    if kind.chars().any(char::is_whitespace) {
        return Err(ValidationError::BadName {
            what: "kind",
            value: kind.to_string(),
            reason: "must not contain whitespace".into(),
        });
    }
    Ok(())
}

/// Why a proposal or name was refused before reaching the log. More rules
/// may come: match with a wildcard arm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// A name broke the naming rules.
    #[error("invalid {what} {value:?}: {reason}")]
    BadName {
        /// Which field.
        what: &'static str,
        /// The (truncated) offending value.
        value: String,
        /// What rule it broke.
        reason: String,
    },
    /// A caller tried to append a `batpak.*` kind.
    #[error("kind {0:?} is reserved: kinds starting with \"batpak.\" are written only by the host; pick another kind")]
    ReservedKind(String),
    /// A payload over [`MAX_PAYLOAD_LEN`].
    #[error("payload is {0} bytes; the limit is {MAX_PAYLOAD_LEN} bytes")]
    PayloadTooLarge(usize),
    /// An idempotency key that is empty or too long.
    #[error("idempotency key must be 1..={MAX_IDEMPOTENCY_KEY_LEN} bytes, got {0}")]
    BadIdempotencyKey(usize),
    /// Text that is not a 32-hex-digit event id.
    #[error("{0:?} is not an event id: expected 32 hex digits")]
    BadId(String),
}

/// The key/value pairs of metadata carried in an event header, e.g. the
/// reactor and component digest that produced a reaction (lineage).
/// Shared: a reactor stamps the same lineage on every reaction, and
/// cloning it copies nothing. Encoded as a list, exactly as a `Vec` is.
pub type Meta = Arc<[(String, String)]>;

/// An event a caller asks to append. The store assigns sequence numbers,
/// timestamps and the entity chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Where it goes.
    pub coordinate: Coordinate,
    /// What it is.
    pub kind: String,
    /// Opaque payload bytes.
    pub payload: Vec<u8>,
    /// The event that caused this one.
    pub causation: Option<EventId>,
    /// The conversation; `None` inherits the causation's correlation, or
    /// makes the event correlate with itself.
    pub correlation: Option<EventId>,
    /// A key that makes the append idempotent: a second append with the same
    /// key returns the first receipt and appends nothing, also after a
    /// restart.
    pub idempotency_key: Option<String>,
    /// An explicit id (e.g. derived for a reaction). An id that already
    /// exists is treated like a repeated idempotency key.
    pub id: Option<EventId>,
    /// Optimistic concurrency: the entity's current sequence must equal
    /// this (0 for a new entity) or the whole batch is refused.
    pub expected_sequence: Option<u64>,
    /// Extra header metadata (lineage).
    pub meta: Meta,
}

impl Proposal {
    /// A proposal with just coordinate, kind and payload.
    pub fn new(
        coordinate: Coordinate,
        kind: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> Self {
        Proposal {
            coordinate,
            kind: kind.into(),
            payload: payload.into(),
            causation: None,
            correlation: None,
            idempotency_key: None,
            id: None,
            expected_sequence: None,
            meta: Meta::default(),
        }
    }

    /// Sets the causation.
    pub fn caused_by(mut self, id: EventId) -> Self {
        self.causation = Some(id);
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Checks everything that can be checked without the store. `system`
    /// admits `batpak.*` kinds (host-internal callers only).
    pub fn validate(&self, system: bool) -> Result<(), ValidationError> {
        validate_name("entity", &self.coordinate.entity, MAX_NAME_LEN)?;
        validate_name("scope", &self.coordinate.scope, MAX_NAME_LEN)?;
        validate_kind(&self.kind)?;
        if !system && is_system_kind(&self.kind) {
            return Err(ValidationError::ReservedKind(self.kind.clone()));
        }
        if self.payload.len() > MAX_PAYLOAD_LEN {
            return Err(ValidationError::PayloadTooLarge(self.payload.len()));
        }
        if let Some(k) = &self.idempotency_key {
            if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_LEN {
                return Err(ValidationError::BadIdempotencyKey(k.len()));
            }
        }
        Ok(())
    }
}

/// A link in an entity's chain: the predecessor's id and its event hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    /// The previous event of the same entity.
    pub id: EventId,
    /// Its event hash (blake3 over its header and payload).
    pub hash: [u8; 32],
}

/// The header of a stored event, exactly as encoded (postcard) on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventHeader {
    /// Unique id.
    pub id: EventId,
    /// Store-wide commit order, starting at 1.
    pub sequence: u64,
    /// Position within the entity, starting at 1.
    pub entity_sequence: u64,
    /// Entity and scope.
    pub coordinate: Coordinate,
    /// Kind.
    pub kind: String,
    /// Parent in the causal graph.
    pub causation: Option<EventId>,
    /// Conversation id.
    pub correlation: EventId,
    /// Commit time, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// The previous event of this entity (None for the first).
    pub prev: Option<ChainLink>,
    /// Idempotency key, if the append had one.
    pub idempotency_key: Option<String>,
    /// Metadata (lineage).
    #[serde(with = "meta_list")]
    pub meta: Meta,
}

/// [`Meta`] encoded as the list of pairs it is (what a `Vec` encodes to),
/// so the shared form changes nothing on disk.
mod meta_list {
    use super::Meta;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(meta: &Meta, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(meta.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Meta, D::Error> {
        thread_local! {
            /// Most events carry no metadata: they share one empty list
            /// instead of allocating a shared list each (an `Arc<[T]>` of
            /// nothing still allocates its counts).
            static EMPTY: Meta = Meta::from(Vec::new());
        }
        let list = Vec::<(String, String)>::deserialize(d)?;
        Ok(if list.is_empty() {
            EMPTY.with(Meta::clone)
        } else {
            Meta::from(list)
        })
    }
}

impl EventHeader {
    /// The event hash: blake3 over the encoded header and the payload, so the
    /// chain commits to ids, positions and content, never to payload alone.
    pub fn hash(&self, payload: &[u8]) -> [u8; 32] {
        let enc = postcard::to_stdvec(self).expect("header encodes");
        hash_encoded(&enc, payload)
    }
}

/// Hash of an already-encoded header and its payload.
pub(crate) fn hash_encoded(header: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&(header.len() as u64).to_le_bytes());
    h.update(header);
    h.update(payload);
    *h.finalize().as_bytes()
}

/// A stored event: header, hash and payload. Cheap to clone (shared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The header.
    pub header: Arc<EventHeader>,
    /// Payload bytes.
    pub payload: Arc<[u8]>,
    /// The event hash recorded when it was appended.
    pub hash: [u8; 32],
}

impl Event {
    /// The event id.
    pub fn id(&self) -> EventId {
        self.header.id
    }
    /// The global sequence.
    pub fn sequence(&self) -> u64 {
        self.header.sequence
    }
    /// The kind.
    pub fn kind(&self) -> &str {
        &self.header.kind
    }
    /// The coordinate.
    pub fn coordinate(&self) -> &Coordinate {
        &self.header.coordinate
    }
}

/// What the store promises about an accepted append.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The event's id.
    pub id: EventId,
    /// Its global sequence.
    pub sequence: u64,
    /// Its position within the entity.
    pub entity_sequence: u64,
    /// Commit timestamp.
    pub timestamp_us: u64,
    /// The event hash.
    pub hash: [u8; 32],
    /// True when this append was a retry: nothing new was written and this
    /// is the original receipt.
    pub deduplicated: bool,
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Lowercase hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    // By table, not `write!` per byte: receipts and events print a hash
    // each, and formatting was a visible share of a large `append`.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips_through_hex_and_halves() {
        let id = EventId::generate();
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(s.parse::<EventId>().unwrap(), id);
        assert_eq!(EventId::from_parts(id.hi(), id.lo()), id);
        assert!("xyz".parse::<EventId>().is_err());
    }

    #[test]
    fn coordinates_refuse_bad_names() {
        assert!(Coordinate::new("order:1", "shop").is_ok());
        assert!(Coordinate::new("", "shop").is_err());
        assert!(Coordinate::new("a\nb", "shop").is_err());
        assert!(Coordinate::new("a\0b", "shop").is_err());
        assert!(Coordinate::new(" a", "shop").is_err());
        assert!(Coordinate::new("a".repeat(MAX_NAME_LEN + 1), "shop").is_err());
    }

    #[test]
    fn reserved_kinds_are_refused_from_callers() {
        let p = Proposal::new(Coordinate::new("e", "s").unwrap(), "batpak.x", b"".to_vec());
        assert!(matches!(
            p.validate(false),
            Err(ValidationError::ReservedKind(_))
        ));
        assert!(p.validate(true).is_ok());
    }

    #[test]
    fn hash_covers_header_not_only_payload() {
        let c = Coordinate::new("e", "s").unwrap();
        let mk = |seq| EventHeader {
            id: EventId(seq as u128),
            sequence: seq,
            entity_sequence: seq,
            coordinate: c.clone(),
            kind: "k".into(),
            causation: None,
            correlation: EventId(1),
            timestamp_us: 5,
            prev: None,
            idempotency_key: None,
            meta: Meta::default(),
        };
        assert_ne!(mk(1).hash(b"same"), mk(2).hash(b"same"));
    }

    /// The shared metadata list is stored exactly as the `Vec` it
    /// replaced: old segments decode, new ones read with an old binary.
    #[test]
    fn shared_meta_encodes_as_the_list_it_was() {
        #[derive(Serialize)]
        struct Before {
            id: EventId,
            sequence: u64,
            entity_sequence: u64,
            coordinate: Coordinate,
            kind: String,
            causation: Option<EventId>,
            correlation: EventId,
            timestamp_us: u64,
            prev: Option<ChainLink>,
            idempotency_key: Option<String>,
            meta: Vec<(String, String)>,
        }
        let pairs = vec![
            ("reactor".to_string(), "r".to_string()),
            ("k".into(), "v".into()),
        ];
        let h = EventHeader {
            id: EventId(3),
            sequence: 1,
            entity_sequence: 1,
            coordinate: Coordinate::new("e", "s").unwrap(),
            kind: "k".into(),
            causation: None,
            correlation: EventId(3),
            timestamp_us: 5,
            prev: None,
            idempotency_key: None,
            meta: Meta::from(pairs.clone()),
        };
        let before = Before {
            id: h.id,
            sequence: 1,
            entity_sequence: 1,
            coordinate: h.coordinate.clone(),
            kind: "k".into(),
            causation: None,
            correlation: h.correlation,
            timestamp_us: 5,
            prev: None,
            idempotency_key: None,
            meta: pairs,
        };
        let enc = postcard::to_stdvec(&h).unwrap();
        assert_eq!(enc, postcard::to_stdvec(&before).unwrap());
        assert_eq!(postcard::from_bytes::<EventHeader>(&enc).unwrap(), h);
    }
}
