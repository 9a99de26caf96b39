//! Builder helpers for the WIT `descriptor`, `region`, `coordinate` and
//! `proposal` records.

use crate::wit::{CanalKind, Causation, Coordinate, Descriptor, Proposal, Region};
use crate::EventId;

impl Descriptor {
    /// A descriptor with this reactor `name` (1 to 64 of `a-z 0-9 - _`; it
    /// keys the checkpoint, so keep it across versions) and `version`
    /// (usually `env!("CARGO_PKG_VERSION")`).
    ///
    /// Defaults: consumes every non-system kind, emits nothing, canal
    /// [`CanalKind::CursorGuaranteed`], `max_batch` 0 (the host chooses).
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Descriptor {
            name: name.into(),
            version: version.into(),
            region: Region::default(),
            canal: CanalKind::CursorGuaranteed,
            emits: Vec::new(),
            max_batch: 0,
        }
    }

    /// Adds event kinds to deliver (an empty list means every non-system
    /// kind).
    pub fn consumes<I, S>(mut self, kinds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.region.kinds.extend(kinds.into_iter().map(Into::into));
        self
    }

    /// Only deliver events of entities whose name starts with `prefix`.
    pub fn entity_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.region.entity_prefix = Some(prefix.into());
        self
    }

    /// Only deliver events of exactly this scope.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.region.scope = Some(scope.into());
        self
    }

    /// Adds kinds this reactor may propose; the host's capability gate denies
    /// every other kind.
    pub fn emits<I, S>(mut self, kinds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.emits.extend(kinds.into_iter().map(Into::into));
        self
    }

    /// Chooses how events are delivered.
    pub fn canal(mut self, canal: CanalKind) -> Self {
        self.canal = canal;
        self
    }

    /// The largest batch this reactor wants (0 lets the host choose).
    pub fn max_batch(mut self, max: u32) -> Self {
        self.max_batch = max;
        self
    }
}

impl Default for Region {
    /// Every non-system kind, any entity, any scope.
    fn default() -> Self {
        Region {
            kinds: Vec::new(),
            entity_prefix: None,
            scope: None,
        }
    }
}

impl Default for CanalKind {
    /// [`CanalKind::CursorGuaranteed`].
    fn default() -> Self {
        CanalKind::CursorGuaranteed
    }
}

impl Coordinate {
    /// An entity inside a scope. Both must be non-empty UTF-8 of at most 256
    /// bytes with no control characters and no leading or trailing
    /// whitespace, or the host refuses the proposal.
    pub fn new(entity: impl Into<String>, scope: impl Into<String>) -> Self {
        Coordinate {
            entity: entity.into(),
            scope: scope.into(),
        }
    }
}

impl Proposal {
    /// A proposal reacting to the event at batch index `source`, caused by
    /// that event. Most code uses [`Output::emit`](crate::Output::emit)
    /// instead.
    pub fn new(
        source: u32,
        entity: impl Into<String>,
        scope: impl Into<String>,
        kind: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> Self {
        Proposal {
            source,
            coordinate: Coordinate::new(entity, scope),
            kind: kind.into(),
            payload: payload.into(),
            causation: Causation::Source,
        }
    }
}

impl Causation {
    /// The new event is caused by `id`, an existing event.
    pub fn event(id: EventId) -> Self {
        Causation::Event(id.into())
    }
}

/// Whether a reactor name is valid: 1 to 64 characters of `a-z`, `0-9`, `-`,
/// `_`.
pub fn is_valid_reactor_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Whether `s` is a valid entity or scope name: non-empty UTF-8 of at most
/// 256 bytes, no control characters, no leading or trailing whitespace.
pub fn is_valid_coordinate_part(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control) && s.trim() == s
}
