"""The `batpak:reactor@0.2.0` flat buffer layout (sizes, offsets, flags).

The one source of these numbers is the Rust crate `batpak-layout`
(`host/layout`); a Rust test (`host/layout/tests/sdk_layout.rs`) fails if
any constant here disagrees with it. Every field is little-endian.
"""

# Batch buffer: header, records, string table, names, payloads.
BATCH_HEADER_LEN = 16
BATCH_RECORD_LEN = 96
STRING_ENTRY_LEN = 8
FLAG_HAS_CAUSATION = 1

# Offsets of an event record's fields.
BATCH_FIELD_ID_HI = 0
BATCH_FIELD_ID_LO = 8
BATCH_FIELD_SEQUENCE = 16
BATCH_FIELD_ENTITY_SEQUENCE = 24
BATCH_FIELD_CORRELATION_HI = 32
BATCH_FIELD_CORRELATION_LO = 40
BATCH_FIELD_CAUSATION_HI = 48
BATCH_FIELD_CAUSATION_LO = 56
BATCH_FIELD_TIMESTAMP_US = 64
BATCH_FIELD_ENTITY = 72
BATCH_FIELD_SCOPE = 76
BATCH_FIELD_KIND = 80
BATCH_FIELD_FLAGS = 84
BATCH_FIELD_PAYLOAD_OFFSET = 88
BATCH_FIELD_PAYLOAD_LEN = 92

# Proposals buffer: header, records, then names and payloads.
PROPOSALS_HEADER_LEN = 8
PROPOSAL_RECORD_LEN = 56
CAUSATION_SOURCE = 0
CAUSATION_EVENT = 1
CAUSATION_NONE = 2

# Offsets of a proposal record's fields.
PROPOSAL_FIELD_SOURCE = 0
PROPOSAL_FIELD_KIND = 4
PROPOSAL_FIELD_ENTITY = 8
PROPOSAL_FIELD_SCOPE = 16
PROPOSAL_FIELD_PAYLOAD = 24
PROPOSAL_FIELD_CAUSATION = 32
PROPOSAL_FIELD_RESERVED = 36
PROPOSAL_FIELD_CAUSE_HI = 40
PROPOSAL_FIELD_CAUSE_LO = 48
