//! Conversions between the WIT records and the host's own types.

use super::descriptor::Descriptor;
use super::log::LogLevel;
use super::reaction::{Reaction, ReactionCause, ReactionVerdict};
use super::wit::types as w;
use batpak_store::{Coordinate, Event, EventId};
use batpak_store::{ReactorCanal, Region};

pub(crate) fn level_from_wit(l: w::Level) -> LogLevel {
    match l {
        w::Level::Trace => LogLevel::Trace,
        w::Level::Debug => LogLevel::Debug,
        w::Level::Info => LogLevel::Info,
        w::Level::Warn => LogLevel::Warn,
        w::Level::Error => LogLevel::Error,
    }
}

pub(crate) fn id_to_wit(id: EventId) -> w::EventId {
    w::EventId {
        hi: id.hi(),
        lo: id.lo(),
    }
}

pub(crate) fn id_from_wit(id: w::EventId) -> EventId {
    EventId::from_parts(id.hi, id.lo)
}

pub(crate) fn stored_event(e: &Event) -> w::StoredEvent {
    let h = &e.header;
    w::StoredEvent {
        id: id_to_wit(h.id),
        sequence: h.sequence,
        entity_sequence: h.entity_sequence,
        coordinate: w::Coordinate {
            entity: h.coordinate.entity.clone(),
            scope: h.coordinate.scope.clone(),
        },
        kind: h.kind.clone(),
        causation: h.causation.map(id_to_wit),
        correlation: id_to_wit(h.correlation),
        timestamp_us: h.timestamp_us,
        payload: e.payload.to_vec(),
    }
}

pub(crate) fn reaction_from_wit(p: w::Proposal) -> Reaction {
    Reaction {
        source: p.source,
        coordinate: Coordinate {
            entity: p.coordinate.entity,
            scope: p.coordinate.scope,
        },
        kind: p.kind,
        payload: p.payload,
        causation: match p.causation {
            w::Causation::Source => ReactionCause::Source,
            w::Causation::Event(id) => ReactionCause::Event(id_from_wit(id)),
            w::Causation::None => ReactionCause::None,
        },
    }
}

pub(crate) fn descriptor_from_wit(d: w::Descriptor) -> Descriptor {
    Descriptor {
        name: d.name,
        version: d.version,
        region: Region {
            kinds: d.region.kinds,
            entity_prefix: d.region.entity_prefix,
            scope: d.region.scope,
            shard: None,
        },
        canal: match d.canal {
            w::CanalKind::CursorGuaranteed => ReactorCanal::CursorGuaranteed,
            w::CanalKind::LossySubscription => ReactorCanal::LossySubscription,
        },
        emits: d.emits,
        max_batch: d.max_batch,
    }
}

pub(crate) fn verdicts_to_wit(v: Vec<ReactionVerdict>) -> Vec<w::ProposalVerdict> {
    v.into_iter()
        .map(|v| w::ProposalVerdict {
            proposal: v.reaction,
            verdict: match v.denial {
                None => w::Verdict::Allowed,
                Some(d) => w::Verdict::Denied(w::Denial {
                    gate: d.gate,
                    code: d.code,
                    message: d.message,
                }),
            },
            appended: v.appended.map(id_to_wit),
        })
        .collect()
}
