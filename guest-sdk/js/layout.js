// The batpak:reactor@0.2.0 flat buffer layout: sizes, field offsets and tags.
// Copied from the Rust crate batpak-layout (host/layout), the one source of
// these numbers; tests/e2e/sdk_js.rs fails if any value here disagrees.

/** Batch buffer header length (count, string-count, strings-offset, payloads-offset). */
export const BATCH_HEADER_LEN = 16;
/** One event record of the batch buffer. */
export const BATCH_RECORD_LEN = 96;
/** One entry (offset, len) of the batch's string table. */
export const STRING_ENTRY_LEN = 8;
/** Event record flags bit: the event has a causation. */
export const FLAG_HAS_CAUSATION = 1;
/** Field offsets inside one batch event record. */
export const BATCH_FIELD = Object.freeze({
  ID_HI: 0,
  ID_LO: 8,
  SEQUENCE: 16,
  ENTITY_SEQUENCE: 24,
  CORRELATION_HI: 32,
  CORRELATION_LO: 40,
  CAUSATION_HI: 48,
  CAUSATION_LO: 56,
  TIMESTAMP_US: 64,
  ENTITY: 72,
  SCOPE: 76,
  KIND: 80,
  FLAGS: 84,
  PAYLOAD_OFFSET: 88,
  PAYLOAD_LEN: 92,
});
/** Proposals buffer header length (count, reserved). */
export const PROPOSALS_HEADER_LEN = 8;
/** One proposal record of the proposals buffer. */
export const PROPOSAL_RECORD_LEN = 56;
/** Causation tag: the source event. */
export const CAUSATION_SOURCE = 0;
/** Causation tag: the event id in the record's cause field. */
export const CAUSATION_EVENT = 1;
/** Causation tag: none (a new causal chain). */
export const CAUSATION_NONE = 2;
/** Field offsets inside one proposal record. */
export const PROPOSAL_FIELD = Object.freeze({
  SOURCE: 0,
  KIND: 4,
  ENTITY: 8,
  SCOPE: 16,
  PAYLOAD: 24,
  CAUSATION: 32,
  RESERVED: 36,
  CAUSE_HI: 40,
  CAUSE_LO: 48,
});
