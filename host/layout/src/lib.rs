//! The `batpak:reactor@0.2.0` flat buffer layout, defined once.
//!
//! Under contract 0.2.0 `react` takes the batch as one byte buffer and
//! returns the proposals as another (the WIT doc of `react` in
//! `wit/reactor.wit` and the SDK's `WIT.md` describe both). This crate holds
//! their sizes, field offsets and flags, and the byte-level code that reads
//! and writes them, for the host (which writes batches and decodes
//! proposals) and the Rust SDK (which reads batches and writes proposals).
//! It has no dependencies and no `unsafe`, and builds for the host and for
//! `wasm32-wasip2`.
//!
//! - Batch buffer: [`BATCH_HEADER_LEN`], [`BATCH_RECORD_LEN`],
//!   [`STRING_ENTRY_LEN`], the record offsets in [`batch_field`],
//!   [`FLAG_HAS_CAUSATION`]; [`BatchHeader`] and [`EventRecord`] with their
//!   writers; [`check_batch`], the check a reader runs before trusting a
//!   batch's strings.
//! - Proposals buffer: [`PROPOSALS_HEADER_LEN`], [`PROPOSAL_RECORD_LEN`], the
//!   record offsets in [`proposal_field`], the causation tags;
//!   [`ProposalRecord`] with its writer, and [`decode_proposals`], the
//!   decoder every structural rule of the contract is checked in (the host
//!   runs it on whatever a plugin returns: it never panics, and it copies
//!   nothing).
#![forbid(unsafe_code)]

mod batch;
mod bytes;
mod proposals;

pub use batch::{
    batch_field, check_batch, write_batch_header, write_event_record, write_string_entry,
    BatchError, BatchHeader, EventRecord, BATCH_HEADER_LEN, BATCH_RECORD_LEN, FLAG_HAS_CAUSATION,
    STRING_ENTRY_LEN,
};
pub use bytes::{put_u32, put_u64, u32_at, u64_at};
pub use proposals::{
    decode_proposals, proposal_field, write_proposal_record, write_proposals_header, Causation,
    NameField, Proposal, ProposalLimits, ProposalRecord, ProposalsError, CAUSATION_EVENT,
    CAUSATION_NONE, CAUSATION_SOURCE, PROPOSALS_HEADER_LEN, PROPOSAL_RECORD_LEN,
};
