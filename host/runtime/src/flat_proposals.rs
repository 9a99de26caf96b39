//! Decoding the `batpak:reactor@0.2.0` proposals buffer (see `react` in
//! `wit/reactor.wit`) into [`Reaction`]s. The layout and every structural
//! check the contract names are `batpak_layout::decode_proposals`, run here
//! with the host's budgets. A buffer that breaks the layout is malformed
//! output: the call fails as a whole ([`FailureKind::Malformed`]), nothing
//! is kept. A well-formed proposal whose kind index is not in `emits`
//! becomes a reaction the capability gate denies on its own, like an
//! undeclared kind in 0.1.0.

use super::failure::{FailureKind, ReactFailure};
use super::reaction::{Reaction, ReactionCause};
use super::runner::{MAX_OUTPUT_BYTES, MAX_PROPOSALS_PER_CALL};
use batpak_layout::{decode_proposals, Causation, ProposalLimits};
use batpak_store::{Coordinate, EventId, EventView, MAX_NAME_LEN};

/// The kind a proposal with an out-of-range kind index is given: not a
/// declarable kind, so the capability gate denies it as undeclared and the
/// denial record names the index the reactor wrote.
pub(crate) fn undeclared_kind(index: u32) -> String {
    format!("emits[{index}]")
}

/// Decodes `buf`, the output of `react` for `batch`, by a reactor that
/// declared `emits`. Every check runs before anything is copied: the host
/// keeps at most `MAX_NAME_LEN` bytes per name and `MAX_OUTPUT_BYTES` of
/// payload per call (see `MAX_OUTPUT_HOST_BYTES`), however the records
/// share ranges.
///
/// # Errors
/// A [`FailureKind::Malformed`] failure naming the first broken rule.
pub(crate) fn decode(
    buf: &[u8],
    batch: &[EventView],
    emits: &[String],
) -> Result<Vec<Reaction>, ReactFailure> {
    let limits = ProposalLimits {
        batch_len: batch.len(),
        max_proposals: MAX_PROPOSALS_PER_CALL,
        max_payload_bytes: MAX_OUTPUT_BYTES,
        max_name_len: MAX_NAME_LEN,
    };
    let proposals = decode_proposals(buf, &limits).map_err(|e| {
        ReactFailure::new(
            FailureKind::Malformed,
            format!("malformed proposals buffer (batpak:reactor@0.2.0 layout): {e}"),
        )
    })?;
    Ok(proposals
        .into_iter()
        .map(|p| {
            // `decode_proposals` checked the source index against the batch.
            let c = batch[p.source as usize].coordinate();
            let or_source = |name: &str, source: &str| {
                if name.is_empty() {
                    source.to_string()
                } else {
                    name.to_string()
                }
            };
            Reaction {
                source: p.source,
                coordinate: Coordinate {
                    entity: or_source(p.entity, c.entity),
                    scope: or_source(p.scope, c.scope),
                },
                kind: match emits.get(p.kind as usize) {
                    Some(kind) => kind.clone(),
                    None => undeclared_kind(p.kind),
                },
                payload: p.payload.to_vec(),
                causation: match p.causation {
                    Causation::Source => ReactionCause::Source,
                    Causation::Event(hi, lo) => ReactionCause::Event(EventId::from_parts(hi, lo)),
                    Causation::None => ReactionCause::None,
                },
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flat_batch::tests::ev;
    use batpak_layout::{
        proposal_field, PROPOSALS_HEADER_LEN as HEADER_LEN, PROPOSAL_RECORD_LEN as RECORD_LEN,
    };

    /// One proposal record: (source, kind, entity, scope, payload,
    /// causation tag, reserved, cause) with names and payload appended after
    /// the records.
    struct P<'a> {
        source: u32,
        kind: u32,
        entity: &'a str,
        scope: &'a str,
        payload: &'a [u8],
        tag: u32,
        reserved: u32,
        cause: (u64, u64),
    }

    fn p(source: u32, kind: u32) -> P<'static> {
        P {
            source,
            kind,
            entity: "",
            scope: "",
            payload: b"",
            tag: 0,
            reserved: 0,
            cause: (0, 0),
        }
    }

    fn encode(ps: &[P<'_>]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(ps.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        let mut tail = Vec::new();
        let tail_at = 8 + 56 * ps.len();
        let push = |bytes: &[u8], tail: &mut Vec<u8>| -> [u8; 8] {
            let off = (tail_at + tail.len()) as u32;
            tail.extend_from_slice(bytes);
            let mut r = [0u8; 8];
            r[..4].copy_from_slice(&off.to_le_bytes());
            r[4..].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
            r
        };
        for x in ps {
            b.extend_from_slice(&x.source.to_le_bytes());
            b.extend_from_slice(&x.kind.to_le_bytes());
            b.extend_from_slice(&push(x.entity.as_bytes(), &mut tail));
            b.extend_from_slice(&push(x.scope.as_bytes(), &mut tail));
            b.extend_from_slice(&push(x.payload, &mut tail));
            b.extend_from_slice(&x.tag.to_le_bytes());
            b.extend_from_slice(&x.reserved.to_le_bytes());
            b.extend_from_slice(&x.cause.0.to_le_bytes());
            b.extend_from_slice(&x.cause.1.to_le_bytes());
        }
        b.extend_from_slice(&tail);
        b
    }

    fn emits() -> Vec<String> {
        vec!["a.out".to_string(), "a.other".to_string()]
    }

    #[test]
    fn proposals_decode_with_defaults_from_the_source_event() {
        let batch = vec![ev(1, "order:1", "k", b"x"), ev(2, "order:2", "k", b"y")];
        let buf = encode(&[
            P {
                payload: b"{\"a\":1}",
                ..p(1, 0)
            },
            P {
                entity: "other:9",
                scope: "elsewhere",
                tag: 1,
                cause: (3, 4),
                ..p(0, 1)
            },
            P { tag: 2, ..p(0, 7) },
        ]);
        let r = decode(&buf, &batch, &emits()).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].source, 1);
        assert_eq!(r[0].coordinate.entity, "order:2");
        assert_eq!(r[0].coordinate.scope, "shop");
        assert_eq!(r[0].kind, "a.out");
        assert_eq!(r[0].payload, b"{\"a\":1}");
        assert_eq!(r[0].causation, ReactionCause::Source);
        assert_eq!(r[1].coordinate.entity, "other:9");
        assert_eq!(r[1].coordinate.scope, "elsewhere");
        assert_eq!(r[1].kind, "a.other");
        assert_eq!(
            r[1].causation,
            ReactionCause::Event(EventId::from_parts(3, 4))
        );
        // Out-of-range kind index: kept, with a kind the gate cannot admit.
        assert_eq!(r[2].kind, undeclared_kind(7));
        assert!(!emits().contains(&r[2].kind));
        assert_eq!(r[2].causation, ReactionCause::None);
        assert!(decode(&[], &batch, &emits()).unwrap().is_empty());
        assert!(decode(&encode(&[]), &batch, &emits()).unwrap().is_empty());
    }

    fn fails(buf: &[u8], needle: &str) {
        let batch = vec![ev(1, "order:1", "k", b"x")];
        let f = decode(buf, &batch, &emits()).unwrap_err();
        assert_eq!(f.kind, FailureKind::Malformed, "{f}");
        assert!(f.message.contains(needle), "{f} lacks {needle:?}");
    }

    #[test]
    fn every_structural_rule_fails_the_call() {
        fails(&[1, 0, 0], "shorter than the 8-byte header");
        let mut b = encode(&[p(0, 0)]);
        b[4] = 1;
        fails(&b, "header bytes 4..8 are reserved");
        fails(&encode(&[p(0, 0)])[..8 + 55], "need 64 bytes");
        fails(&encode(&[p(1, 0)]), "names source event 1");
        fails(&encode(&[P { tag: 3, ..p(0, 0) }]), "causation is 3");
        fails(
            &encode(&[P {
                reserved: 9,
                ..p(0, 0)
            }]),
            "bytes 36..40 are reserved",
        );
        let mut b = encode(&[P {
            entity: "e",
            ..p(0, 0)
        }]);
        b[8 + 8..8 + 12].copy_from_slice(&1000u32.to_le_bytes());
        fails(&b, "entity range [1000, 1001)");
        let mut b = encode(&[P {
            payload: b"pp",
            ..p(0, 0)
        }]);
        b[8 + 28..8 + 32].copy_from_slice(&u32::MAX.to_le_bytes());
        fails(&b, "payload range");
        fails(
            &encode(&[P {
                scope: "\u{ff}",
                ..p(0, 0)
            }])
            .iter()
            .map(|&x| if x == 0xc3 { 0xff } else { x })
            .collect::<Vec<_>>(),
            "not valid UTF-8",
        );
        let mut b = vec![0u8; 8];
        b[..4].copy_from_slice(&(MAX_PROPOSALS_PER_CALL as u32 + 1).to_le_bytes());
        fails(&b, "proposals; the limit is 10000");
        let long = "e".repeat(MAX_NAME_LEN + 1);
        fails(
            &encode(&[P {
                entity: &long,
                ..p(0, 0)
            }]),
            "proposal 0: its entity is 257 bytes; the limit is 256",
        );
        fails(
            &encode(&[P {
                scope: &long,
                ..p(0, 0)
            }]),
            "proposal 0: its scope is 257 bytes; the limit is 256",
        );
        // A name at the limit is fine.
        let batch = vec![ev(1, "order:1", "k", b"x")];
        let max = "e".repeat(MAX_NAME_LEN);
        let r = decode(
            &encode(&[P {
                entity: &max,
                ..p(0, 0)
            }]),
            &batch,
            &emits(),
        )
        .unwrap();
        assert_eq!(r[0].coordinate.entity, max);
    }

    /// The amplifier of issue 16: every record of a full buffer points at
    /// one large range. It is refused at the first record, before a single
    /// name is copied (the old decoder copied 10,000 × 1 MiB = 10 GB).
    #[test]
    fn many_records_sharing_one_huge_name_are_refused_before_copying() {
        let batch = vec![ev(1, "order:1", "k", b"x")];
        let n = MAX_PROPOSALS_PER_CALL;
        let big = 1usize << 20;
        let mut b = Vec::with_capacity(HEADER_LEN + RECORD_LEN * n + big);
        b.extend_from_slice(&(n as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        let name_at = (HEADER_LEN + RECORD_LEN * n) as u32;
        for _ in 0..n {
            let mut r = [0u8; RECORD_LEN];
            r[proposal_field::ENTITY..proposal_field::ENTITY + 4]
                .copy_from_slice(&name_at.to_le_bytes());
            r[proposal_field::ENTITY + 4..proposal_field::ENTITY + 8]
                .copy_from_slice(&(big as u32).to_le_bytes());
            b.extend_from_slice(&r);
        }
        b.resize(b.len() + big, b'e');
        let f = decode(&b, &batch, &emits()).unwrap_err();
        assert_eq!(f.kind, FailureKind::Malformed);
        assert!(
            f.message
                .contains("proposal 0: its entity is 1048576 bytes; the limit is 256"),
            "{f}"
        );
    }

    mod arbitrary {
        use super::*;
        use proptest::prelude::*;

        fn batch() -> Vec<EventView> {
            vec![
                ev(1, "order:1", "a.in", b"{}"),
                ev(2, "order:2", "a.in", b"[1]"),
            ]
        }

        /// Whatever a plugin returns, `decode` gives reactions within the
        /// contract's limits or a malformed failure: never a panic.
        fn check(buf: &[u8]) {
            if let Ok(rs) = decode(buf, &batch(), &emits()) {
                assert!(rs.len() <= MAX_PROPOSALS_PER_CALL);
                for r in &rs {
                    assert!((r.source as usize) < batch().len());
                    assert!(r.coordinate.entity.len() <= batpak_store::MAX_NAME_LEN);
                    assert!(r.coordinate.scope.len() <= batpak_store::MAX_NAME_LEN);
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..1024)) {
                check(&buf);
            }

            /// A valid header and records of arbitrary words, so the
            /// decoder gets past the header and exercises every field's
            /// range checks (small words hit valid ranges often).
            #[test]
            fn arbitrary_records_never_panic(
                count in 0u32..12,
                words in prop::collection::vec(prop_oneof![0u32..64, any::<u32>()], 0..12 * 14),
                tail in prop::collection::vec(any::<u8>(), 0..256),
            ) {
                let mut buf = Vec::new();
                buf.extend_from_slice(&count.to_le_bytes());
                buf.extend_from_slice(&0u32.to_le_bytes());
                for w in &words {
                    buf.extend_from_slice(&w.to_le_bytes());
                }
                buf.extend_from_slice(&tail);
                check(&buf);
            }
        }
    }
}
