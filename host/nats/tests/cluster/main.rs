//! batpak-nats on a real JetStream cluster (loopback): the server is
//! provisioned from PyPI into `<target>/toolchains/nats`, clusters run one
//! test at a time. `cargo test --release -p batpak-nats`.

mod commits;
mod failover;
mod harness;
mod init;
mod measure;
mod outbox;
mod provision;
mod runner;
mod seam;
mod shared;

use batpak_store::{Coordinate, EventId, Proposal};
pub use shared::{all_events, append_until_acked, init, options, rounds, Rng};

/// A proposal for `entity` with an explicit id (so a retry is
/// de-duplicated).
pub fn proposal(entity: &str, kind: &str, payload: &[u8]) -> Proposal {
    let mut p = Proposal::new(
        Coordinate::new(entity, "test").unwrap(),
        kind,
        payload.to_vec(),
    );
    p.id = Some(EventId::generate());
    p
}
