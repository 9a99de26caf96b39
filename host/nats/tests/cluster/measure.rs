//! Figures on a 3-node cluster (R3, one partition, `sync_interval:
//! always`, loopback, this machine): atomic commit latency (10 reactions +
//! checkpoint) and durable appends per second, one in flight. Printed;
//! asserted only loosely (the machine is shared).

use crate::harness::{serial, Cluster};
use crate::{init, proposal};
use batpak_nats::Commit;
use std::time::{Duration, Instant};

#[test]
fn measure_commit_latency_and_durable_append_rate() {
    let _one = serial();
    for (nodes, replicas) in [(1, 1), (3, 3)] {
        measure(nodes, replicas);
    }
}

fn measure(nodes: usize, replicas: u32) {
    let cluster = Cluster::start(nodes);
    let log = init(&cluster, 1, replicas);
    let mut fence = 0;
    let mut lat = Vec::new();
    for round in 0..60 {
        let reactions = (0..10)
            .map(|i| proposal(&format!("item:{i}"), "stock.reserved", b"{\"qty\":1}"))
            .collect();
        let c = Commit::new(
            0,
            "bench",
            reactions,
            format!("pos={round}").into_bytes(),
            fence,
        );
        let t = Instant::now();
        let done = log.commit(&c).unwrap();
        lat.push(t.elapsed());
        fence = done.checkpoint;
    }
    lat.drain(..10); // warm-up
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "{nodes} node(s), R{replicas}: atomic commit (10 reactions + checkpoint): median {:.2} ms, p90 {:.2} ms, max {:.2} ms over {}",
        ms(lat[lat.len() / 2]),
        ms(lat[lat.len() * 9 / 10]),
        ms(*lat.last().unwrap()),
        lat.len()
    );
    let t = Instant::now();
    let mut n = 0u32;
    while t.elapsed() < Duration::from_secs(3) {
        log.append(&proposal("order:1", "order.placed", &[b'x'; 200]))
            .unwrap();
        n += 1;
    }
    let rate = f64::from(n) / t.elapsed().as_secs_f64();
    eprintln!(
        "{nodes} node(s), R{replicas}: durable appends, one in flight, 200-byte payload: {rate:.0}/s ({n} in 3 s)"
    );
    assert!(lat[lat.len() / 2] < Duration::from_millis(500));
    assert!(n > 10);
}
