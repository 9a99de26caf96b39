//! Helpers shared by the NATS cluster tests and the host-level cluster
//! scenarios (`tests/e2e/cluster_hosts.rs` includes this file by path):
//! client options, `cluster init` of a test cluster, the seeded generator,
//! rounds, reading a partition, appending until acknowledged.

use crate::harness::Cluster;
use batpak_nats::{init_cluster, Appended, InitSpec, LogError, NatsLog, NatsOptions};
use batpak_store::{Event, Proposal};
use std::time::{Duration, Instant};

/// Options for the tests: short timeouts, so a failover shows up as
/// retries rather than one long wait.
pub fn options() -> NatsOptions {
    NatsOptions {
        timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(5),
        ping_interval: Duration::from_secs(1),
    }
}

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

/// A seeded generator (xorshift64*); the seed comes from `BATPAK_SEED`
/// or the clock, and is printed so a failure can be replayed.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded as described; prints `seed=…` with `what`.
    pub fn seeded(what: &str) -> Rng {
        let seed = std::env::var("BATPAK_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{what}: seed={seed} (replay with BATPAK_SEED={seed})");
        Rng(seed | 1)
    }

    /// The next number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// How many rounds a failure scenario runs: `BATPAK_NATS_ROUNDS` (default
/// 1; the long run asks for 50 or more).
pub fn rounds() -> usize {
    std::env::var("BATPAK_NATS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// Every event of partition `p`, in order (an error when a read fails, so
/// a caller can retry while a replica catches up).
pub fn all_events(log: &NatsLog, p: u32) -> Result<Vec<Event>, String> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let b = log.read(p, after, 1000).map_err(|e| e.to_string())?;
        if b.events.is_empty() {
            return Ok(out);
        }
        after = b.scanned;
        out.extend(b.events);
    }
}

/// Appends `p`, retrying an unknown or unavailable outcome (a leader
/// change) every 50 ms for at most 60 s; the proposal keeps its id, so a
/// retry of an append that landed is de-duplicated. Counts the retries.
pub fn append_until_acked(log: &NatsLog, p: &Proposal, retries: &mut u64) -> Appended {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        match log.append(p) {
            Ok(r) => return r,
            Err(LogError::Unknown { .. } | LogError::Unavailable { .. }) => {
                *retries += 1;
                assert!(Instant::now() < give_up, "no ack for 60 s");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("append failed: {e}"),
        }
    }
}
