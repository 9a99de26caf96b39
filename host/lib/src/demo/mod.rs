//! The demo's job: the example plugins, the sample orders, the trees.

pub mod job;
