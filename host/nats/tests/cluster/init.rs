//! `cluster init`: refusals with the fix, then what it creates.

use crate::harness::{serial, Cluster};
use crate::options;
use batpak_nats::server_check::ServerCheckError;
use batpak_nats::{init_cluster, InitError, InitSpec, NatsLog};

#[test]
fn init_refuses_a_node_without_sync_always_and_an_unchecked_node_then_creates_the_layout() {
    let _one = serial();
    // n2 has JetStream with the default lazy fsync.
    let cluster = Cluster::start_with(3, |i| i != 1);
    let spec = InitSpec {
        servers: cluster.servers(),
        monitors: cluster.monitors(),
        partitions: 2,
        replicas: 3,
    };
    let err = init_cluster(&spec, options()).expect_err("init accepted a lazy-fsync node");
    match &err {
        InitError::Server(ServerCheckError::SyncNotAlways { server }) => assert_eq!(server, "n2"),
        other => panic!("expected SyncNotAlways for n2, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("sync_interval: always"), "{text}");
    // Nothing was created.
    assert!(NatsLog::open(&cluster.servers(), options()).is_err());

    // Leaving n2's endpoint out does not get past the check: it is named.
    let partial = InitSpec {
        monitors: vec![cluster.monitors()[0].clone(), cluster.monitors()[2].clone()],
        ..spec.clone()
    };
    match init_cluster(&partial, options()).expect_err("init skipped an unchecked node") {
        InitError::Server(ServerCheckError::NodeNotChecked { node, .. }) => {
            assert_eq!(node, "n2")
        }
        other => panic!("expected NodeNotChecked n2, got {other:?}"),
    }
    // No monitoring endpoint at all: refused with the fix.
    let none = InitSpec {
        monitors: vec![],
        ..spec
    };
    let e = init_cluster(&none, options()).expect_err("init without checks");
    assert!(
        matches!(e, InitError::Server(ServerCheckError::NoMonitor)),
        "{e}"
    );
}

#[test]
fn init_creates_partitions_idempotently_and_refuses_another_layout() {
    let _one = serial();
    let cluster = Cluster::start(1);
    let spec = InitSpec {
        servers: cluster.servers(),
        monitors: cluster.monitors(),
        partitions: 3,
        replicas: 1,
    };
    let (layout, nodes) = init_cluster(&spec, options()).unwrap();
    assert_eq!((layout.partitions, layout.replicas), (3, 1));
    assert_eq!(nodes[0].version, "2.15.1");
    // Again: same layout, nothing changes.
    init_cluster(&spec, options()).unwrap();
    let log = NatsLog::open(&cluster.servers(), options()).unwrap();
    assert_eq!(log.layout(), layout);
    for p in 0..3 {
        assert_eq!(log.last_sequence(p).unwrap(), 0);
    }
    let other = InitSpec {
        partitions: 4,
        ..spec.clone()
    };
    match init_cluster(&other, options()).expect_err("layout changed") {
        InitError::LayoutMismatch {
            existing_partitions: 3,
            partitions: 4,
            ..
        } => {}
        e => panic!("expected LayoutMismatch, got {e}"),
    }
    let too_many = InitSpec {
        replicas: 3,
        ..spec
    };
    assert!(matches!(
        init_cluster(&too_many, options()),
        Err(InitError::NotEnoughNodes {
            replicas: 3,
            nodes: 1
        })
    ));
}
