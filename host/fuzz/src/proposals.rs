//! A plugin's `@0.2.0` proposals buffer through
//! [`batpak_layout::decode_proposals`] with the host's budgets. Checks: no
//! panic; a decoded buffer keeps every limit; and re-encoding what was
//! decoded with the layout's writers decodes to the same proposals.

use batpak_layout::{
    decode_proposals, write_proposal_record, write_proposals_header, Causation, Proposal,
    ProposalLimits, ProposalRecord, CAUSATION_EVENT, CAUSATION_NONE, CAUSATION_SOURCE,
    PROPOSALS_HEADER_LEN, PROPOSAL_RECORD_LEN,
};

/// The host's budgets (`MAX_PROPOSALS_PER_CALL`, `MAX_OUTPUT_BYTES`,
/// `MAX_NAME_LEN`), with a batch of three events.
const LIMITS: ProposalLimits = ProposalLimits {
    batch_len: 3,
    max_proposals: 10_000,
    max_payload_bytes: 64 << 20,
    max_name_len: batpak_store::MAX_NAME_LEN,
};

/// Feeds one buffer.
pub fn run(data: &[u8]) {
    let Ok(ps) = decode_proposals(data, &LIMITS) else {
        return;
    };
    assert!(ps.len() <= LIMITS.max_proposals);
    let mut payload = 0;
    for p in &ps {
        assert!((p.source as usize) < LIMITS.batch_len);
        assert!(p.entity.len() <= LIMITS.max_name_len && p.scope.len() <= LIMITS.max_name_len);
        payload += p.payload.len();
    }
    assert!(payload <= LIMITS.max_payload_bytes);
    let again = encode(&ps);
    assert_eq!(decode_proposals(&again, &LIMITS).as_deref(), Ok(&ps[..]));
}

/// Lays `ps` out with the layout's writers: records, then each name and
/// payload after them.
pub fn encode(ps: &[Proposal<'_>]) -> Vec<u8> {
    let records = PROPOSALS_HEADER_LEN + PROPOSAL_RECORD_LEN * ps.len();
    let mut buf = vec![0u8; records];
    if ps.is_empty() {
        // Both spellings of "no proposals": a header with count 0.
        write_proposals_header(&mut buf, 0);
        return buf;
    }
    write_proposals_header(&mut buf, ps.len() as u32);
    for (k, p) in ps.iter().enumerate() {
        let mut span = |bytes: &[u8]| {
            let at = buf.len() as u32;
            buf.extend_from_slice(bytes);
            (at, bytes.len() as u32)
        };
        let entity = span(p.entity.as_bytes());
        let scope = span(p.scope.as_bytes());
        let payload = span(p.payload);
        let (causation, cause) = match p.causation {
            Causation::Source => (CAUSATION_SOURCE, (0, 0)),
            Causation::Event(hi, lo) => (CAUSATION_EVENT, (hi, lo)),
            Causation::None => (CAUSATION_NONE, (0, 0)),
        };
        let at = PROPOSALS_HEADER_LEN + PROPOSAL_RECORD_LEN * k;
        write_proposal_record(
            &mut buf[at..at + PROPOSAL_RECORD_LEN],
            &ProposalRecord {
                source: p.source,
                kind: p.kind,
                entity,
                scope,
                payload,
                causation,
                cause,
            },
        );
    }
    buf
}

/// Buffers as a reactor writes them: none, one with defaults, several
/// sharing names, every causation.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let p = |source, kind, entity, scope, payload, causation| Proposal {
        source,
        kind,
        entity,
        scope,
        payload,
        causation,
    };
    vec![
        ("empty".into(), Vec::new()),
        ("none".into(), encode(&[])),
        (
            "one-default".into(),
            encode(&[p(0, 0, "", "", b"{}", Causation::Source)]),
        ),
        (
            "three".into(),
            encode(&[
                p(0, 0, "order:1", "shop", br#"{"q":1}"#, Causation::Source),
                p(1, 1, "order:2", "shop", b"[1,2]", Causation::Event(7, 8)),
                p(2, 9, "", "other", b"", Causation::None),
            ]),
        ),
    ]
}
