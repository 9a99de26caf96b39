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

use batpak_nats::{init_cluster, InitSpec, NatsLog};
use batpak_store::{Coordinate, EventId, Proposal};
use harness::Cluster;
pub use shared::{all_events, append_until_acked, options, rounds, Rng};

/// `cluster init` of `cluster` with `partitions` × `replicas`, then a log
/// opened on it.
pub fn init(cluster: &Cluster, partitions: u32, replicas: u32) -> NatsLog {
    let spec = InitSpec {
        servers: cluster.servers(),
        monitors: cluster.monitors(),
        partitions,
        replicas,
    };
    init_cluster(&spec, options()).unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    NatsLog::open(&cluster.servers(), options()).unwrap()
}

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
