//! `test`: one plugin on fixture events in a scratch store.

pub mod harness;
