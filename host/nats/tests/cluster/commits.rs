//! Appends and commits on a 3-node cluster (R3): all-or-nothing batches,
//! a zombie's batch refused whole, de-duplication, reads, look-ups, waits.

use crate::harness::{serial, Cluster};
use crate::{init, options, proposal};
use batpak_nats::{partition, Commit, LogError, NatsLog, Resolution};
use std::time::{Duration, Instant};

/// Ten reactions for entities of partition `p`.
fn reactions(log: &NatsLog, p: u32, tag: &str) -> Vec<batpak_store::Proposal> {
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < 10 {
        let entity = format!("item:{i}");
        i += 1;
        if log.partition_of(&entity) == p {
            out.push(proposal(&entity, "stock.reserved", tag.as_bytes()));
        }
    }
    out
}

#[test]
fn a_batch_lands_whole_and_a_zombie_instances_batch_is_refused_whole() {
    let _one = serial();
    let cluster = Cluster::start(3);
    let live = init(&cluster, 2, 3);
    // A second instance of the same reactor, on its own connection and
    // client thread: it read the checkpoint, then "paused".
    let zombie = NatsLog::open(&cluster.servers(), options()).unwrap();
    let p = 1;
    assert_eq!(live.checkpoint(p, "low-stock").unwrap(), None);
    assert_eq!(zombie.checkpoint(p, "low-stock").unwrap(), None);

    // The live instance commits 10 reactions + checkpoint (fence: none yet).
    let first = Commit::new(
        p,
        "low-stock",
        reactions(&live, p, "live"),
        b"pos=5".to_vec(),
        0,
    );
    let done = live.commit(&first).unwrap();
    assert_eq!(done.reactions.len(), 10);
    let seqs: Vec<u64> = done.reactions.iter().map(|r| r.1).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "one batch, consecutive");
    assert_eq!(done.checkpoint, 11);
    let read = live.read(p, 0, 100).unwrap();
    assert_eq!(read.events.len(), 10, "checkpoints are not events");
    assert_eq!(read.scanned, 10);
    for (e, (id, seq)) in read.events.iter().zip(&done.reactions) {
        assert_eq!((e.id(), e.sequence()), (*id, *seq));
        assert_eq!(&*e.payload, b"live");
        assert_eq!(
            e.header.entity_sequence, 1,
            "each reaction starts its entity"
        );
    }
    let ck = live.checkpoint(p, "low-stock").unwrap().unwrap();
    assert_eq!((ck.sequence, ck.payload.as_slice()), (11, &b"pos=5"[..]));
    assert_eq!(live.resolve_commit(&first).unwrap(), Resolution::Landed(11));

    // The zombie resumes and commits what it computed from the old
    // checkpoint: refused whole, nothing of it stored.
    let stale = Commit::new(
        p,
        "low-stock",
        reactions(&live, p, "zombie"),
        b"pos=5".to_vec(),
        0,
    );
    match zombie.commit(&stale) {
        Err(LogError::Fenced {
            partition: 1,
            expected: 0,
            ..
        }) => {}
        other => panic!("the zombie's batch was not fenced: {other:?}"),
    }
    assert_eq!(
        zombie.last_sequence(p).unwrap(),
        11,
        "nothing of the batch stored"
    );
    for r in &stale.reactions {
        assert_eq!(live.lookup(r.id.unwrap()).unwrap(), None);
    }
    assert!(matches!(
        zombie.resolve_commit(&stale).unwrap(),
        Resolution::NotLanded { checkpoint: Some(c), sealed: false } if c.sequence == 11
    ));

    // The live instance carries its fence on; the zombie, re-reading,
    // would get the new fence (and, as not the owner, stop).
    let second = Commit::new(
        p,
        "low-stock",
        reactions(&live, p, "live2"),
        b"pos=9".to_vec(),
        11,
    );
    let done2 = live.commit(&second).unwrap();
    assert_eq!(done2.checkpoint, 22);
    // A retry of a commit that landed stores nothing and answers as the
    // commit did (its checkpoint carries the commit's token), and it
    // resolves as landed.
    let again = live.commit(&second).unwrap();
    assert_eq!(
        (again.reactions.clone(), again.checkpoint),
        (done2.reactions.clone(), 22)
    );
    assert_eq!(live.last_sequence(p).unwrap(), 22, "nothing stored twice");
    assert_eq!(
        live.resolve_commit(&second).unwrap(),
        Resolution::Landed(22)
    );

    // The other partition saw nothing. Reactions for another partition's
    // entities go to this partition's outbox in the same fenced batch (not
    // events of either partition until a relay forwards them); one with an
    // `expected_sequence` is refused before anything is sent (it can only
    // be checked in its own partition).
    assert_eq!(live.last_sequence(0).unwrap(), 0);
    let mut foreign = reactions(&live, 0, "x");
    foreign[3].expected_sequence = Some(0);
    let wrong = Commit::new(p, "low-stock", foreign.clone(), vec![], 22);
    assert!(matches!(
        live.commit(&wrong),
        Err(LogError::Unsupported { .. })
    ));
    assert_eq!(live.last_sequence(p).unwrap(), 22);
    foreign[3].expected_sequence = None;
    let ids: Vec<_> = foreign.iter().map(|r| r.id.unwrap()).collect();
    let boxed = live
        .commit(&Commit::new(p, "low-stock", foreign, vec![], 22))
        .unwrap();
    assert!(boxed.reactions.is_empty());
    assert_eq!(
        boxed.outbox,
        ids.into_iter()
            .zip(23..)
            .map(|(id, s)| (id, 0, s))
            .collect::<Vec<_>>()
    );
    assert_eq!(boxed.checkpoint, 33);
    assert_eq!(live.last_sequence(0).unwrap(), 0);
    assert_eq!(live.read(p, 22, 100).unwrap().events.len(), 0);
    assert_eq!(live.read_outbox(p, 0, 0, 100).unwrap().len(), 10);
}

#[test]
fn host_records_land_as_one_batch_and_a_cursor_state_round_trips_through_a_checkpoint() {
    let _one = serial();
    let cluster = Cluster::start(3);
    let log = init(&cluster, 2, 3);
    let p = 0;
    let records = reactions(&log, p, "parked");
    let ids: Vec<_> = records.iter().map(|r| r.id.unwrap()).collect();
    let landed = log.append_batch(p, &records).unwrap();
    assert_eq!(
        landed,
        ids.into_iter().zip(1..=10).collect::<Vec<_>>(),
        "one batch, in order, consecutive"
    );
    assert_eq!(log.last_known(p), 10, "known without a round trip");
    assert_eq!(log.last_known(1), 0);
    // The same batch again (a retry after an unknown outcome, another
    // instance deriving the same ids): stored once, its copy answered.
    assert_eq!(log.append_batch(p, &records).unwrap(), landed);
    assert_eq!(log.last_sequence(p).unwrap(), 10, "nothing stored again");
    // All of one partition or nothing is sent (without a checkpoint there
    // is no outbox).
    let mut mixed = reactions(&log, p, "x");
    mixed.extend(reactions(&log, 1, "y"));
    assert!(matches!(
        log.append_batch(p, &mixed),
        Err(LogError::Unsupported { .. })
    ));
    assert_eq!(log.last_sequence(p).unwrap(), 10);

    // The store's cursor state as the checkpoint's bytes.
    let update = batpak_store::CheckpointUpdate {
        cursor: "inventory".into(),
        region: batpak_store::Region::all().fingerprint(),
        sequence: 10,
        event_id: landed[9].0,
    };
    let c = Commit::new(
        p,
        "inventory",
        vec![],
        batpak_nats::encode_cursor(&update),
        0,
    );
    log.commit(&c).unwrap();
    let ck = log.checkpoint(p, "inventory").unwrap().unwrap();
    let state = batpak_nats::decode_cursor("inventory", &ck.payload).unwrap();
    assert_eq!(
        (state.sequence, state.event_id, state.region),
        (10, landed[9].0, update.region)
    );
}

#[test]
fn a_repeated_msg_id_is_stored_once_and_reads_lookups_and_waits_see_appends() {
    let _one = serial();
    let cluster = Cluster::start(3);
    let log = init(&cluster, 2, 3);
    let p0 = proposal("order:1", "order.placed", br#"{"qty":2}"#);
    let p = log.partition_of("order:1");
    assert_eq!(p, partition::partition_of("order:1", 2));
    let a = log.append(&p0).unwrap();
    assert!(!a.duplicate);
    // The same id again (a retry after an unknown outcome): de-duplicated.
    let b = log.append(&p0).unwrap();
    assert!(b.duplicate, "second append of one id was stored again");
    assert_eq!(b.sequence, a.sequence);
    // An idempotency key is the Msg-Id when given, whatever the id.
    let mut k1 = proposal("order:1", "order.paid", b"1");
    k1.idempotency_key = Some("pay-1".into());
    let mut k2 = proposal("order:1", "order.paid", b"1");
    k2.idempotency_key = Some("pay-1".into());
    let first = log.append(&k1).unwrap();
    let again = log.append(&k2).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.sequence, first.sequence);
    let read = log.read(p, 0, 10).unwrap();
    assert_eq!(read.events.len(), 2, "{:?}", read.events);
    assert_eq!(&*read.events[0].payload, br#"{"qty":2}"#);
    assert_eq!(read.events[0].coordinate().entity, "order:1");
    assert_eq!(read.events[1].header.entity_sequence, 2);

    let (fp, found) = log
        .lookup(p0.id.unwrap())
        .unwrap()
        .expect("looked up by id");
    assert_eq!((fp, found.sequence()), (p, a.sequence));
    assert_eq!(log.lookup(batpak_store::EventId(12345)).unwrap(), None);

    // Nothing new: the wait ends at its deadline with false.
    let next = read.scanned;
    let t = Instant::now();
    assert!(!log.wait(p, next, Duration::from_millis(600)).unwrap());
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(550) && waited < Duration::from_secs(3));
    // An append from another client wakes it.
    let servers = cluster.servers();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let other = NatsLog::open(&servers, options()).unwrap();
        other
            .append(&proposal("order:1", "order.shipped", b""))
            .unwrap()
    });
    let t = Instant::now();
    assert!(log.wait(p, next, Duration::from_secs(10)).unwrap());
    assert!(t.elapsed() < Duration::from_secs(5));
    let shipped = writer.join().unwrap();
    assert_eq!(
        log.read(p, next, 10).unwrap().events[0].sequence(),
        shipped.sequence
    );
}

/// Every event of `entity`, checked as a chain: entity sequences 1, 2, …
/// and each `prev` naming the event before (id and hash).
fn assert_chain(log: &NatsLog, entity: &str, len: usize) {
    let events = log.entity_events(entity, 0, 10_000).unwrap();
    assert_eq!(events.len(), len, "{entity}: {} events", events.len());
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.header.entity_sequence, i as u64 + 1, "{entity} #{i}");
        match i {
            0 => assert_eq!(e.header.prev, None),
            _ => {
                let prev = e.header.prev.expect("a link");
                assert_eq!(
                    (prev.id, prev.hash),
                    (events[i - 1].id(), events[i - 1].hash)
                );
            }
        }
    }
}

#[test]
fn entity_chains_hold_across_writers_and_expected_sequence_is_checked() {
    let _one = serial();
    let cluster = Cluster::start(3);
    let a = init(&cluster, 2, 3);
    let b = NatsLog::open(&cluster.servers(), options()).unwrap();
    // Two writers with their own (soon stale) heads on one entity: every
    // write is chained onto the real last event.
    for i in 0..6 {
        let w = if i % 2 == 0 { &a } else { &b };
        let got = w.append(&proposal("order:7", "order.noted", b"n")).unwrap();
        assert_eq!(got.entity_sequence, i + 1);
    }
    assert_chain(&a, "order:7", 6);

    // Optimistic concurrency as in the embedded store.
    let mut ok = proposal("order:7", "order.paid", b"");
    ok.expected_sequence = Some(6);
    assert_eq!(a.append(&ok).unwrap().entity_sequence, 7);
    let mut stale = proposal("order:7", "order.paid", b"");
    stale.expected_sequence = Some(6);
    let before = b.last_sequence(b.partition_of("order:7")).unwrap();
    match b.append(&stale) {
        Err(LogError::Conflict {
            expected: 6,
            actual: 7,
            ..
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(b.last_sequence(b.partition_of("order:7")).unwrap(), before);
    let mut fresh = proposal("order:new", "order.placed", b"");
    fresh.expected_sequence = Some(0);
    assert_eq!(b.append(&fresh).unwrap().entity_sequence, 1);

    // A commit with two reactions to one entity, after the other writer
    // moved that entity on behind this instance's back: chained again,
    // the checkpoint fence untouched.
    let p = a.partition_of("order:7");
    a.append(&proposal("order:7", "x", b"")).unwrap(); // a's head is fresh
    b.append(&proposal("order:7", "x", b"")).unwrap(); // a's head is stale now
    let c = Commit::new(
        p,
        "shipping",
        vec![
            proposal("order:7", "shipment.requested", b"1"),
            proposal("order:7", "shipment.requested", b"2"),
        ],
        b"ck".to_vec(),
        0,
    );
    let done = a.commit(&c).unwrap();
    assert_eq!(done.reactions.len(), 2);
    assert_chain(&a, "order:7", 11);
    // The region read keeps its filter and moves past what it left out.
    let region = batpak_store::Region {
        kinds: vec!["shipment.requested".into()],
        ..Default::default()
    };
    let r = a.read_region(p, &region, 0, 1000).unwrap();
    assert_eq!(r.events.len(), 2);
    assert_eq!(r.scanned, done.reactions[1].1);
    assert_eq!(
        a.get_by_sequence(p, done.reactions[0].1)
            .unwrap()
            .unwrap()
            .id(),
        done.reactions[0].0
    );
    assert_eq!(
        a.get_by_sequence(p, done.checkpoint).unwrap(),
        None,
        "a checkpoint is no event"
    );
}

#[test]
fn a_live_feed_delivers_stored_matching_events_never_a_refused_batch_and_cuts_off_a_laggard() {
    use batpak_store::{Canal, CloseReason, Region};
    let _one = serial();
    let cluster = Cluster::start(3);
    let log = init(&cluster, 1, 3);
    let placed = Region {
        kinds: vec!["order.placed".into()],
        ..Default::default()
    };
    let mut feed = log.subscribe(0, &placed, 100).unwrap();
    // A batch refused by its fence: its messages went out, none is stored,
    // none reaches the feed.
    let ok = Commit::new(0, "r", vec![], b"1".to_vec(), 0);
    log.commit(&ok).unwrap();
    let refused = Commit::new(
        0,
        "r",
        vec![proposal("order:9", "order.placed", b"never")],
        b"2".to_vec(),
        0,
    );
    assert!(matches!(log.commit(&refused), Err(LogError::Fenced { .. })));
    assert!(feed
        .pull_batch(10, Duration::from_millis(500))
        .unwrap()
        .is_empty());
    // Stored events arrive, filtered, in order.
    let a = log
        .append(&proposal("order:1", "order.placed", b"a"))
        .unwrap();
    log.append(&proposal("order:1", "order.paid", b"-"))
        .unwrap();
    let b = log
        .append(&proposal("order:2", "order.placed", b"b"))
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 2 && Instant::now() < deadline {
        got.extend(
            feed.pull_batch(10, Duration::from_millis(200))
                .unwrap()
                .into_vec(),
        );
    }
    let seen: Vec<u64> = got.iter().map(|e| e.sequence()).collect();
    assert_eq!(seen, vec![a.sequence, b.sequence]);

    // A feed of 2 that is not pulled while 5 arrive is cut off, after
    // handing out what it buffered.
    let mut slow = log.subscribe(0, &placed, 2).unwrap();
    for i in 0..5 {
        log.append(&proposal("order:3", "order.placed", &[i]))
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut delivered = 0;
    let reason = loop {
        assert!(Instant::now() < deadline, "the laggard was never cut off");
        match slow.pull_batch(10, Duration::from_millis(200)) {
            Ok(b) => delivered += b.len(),
            Err(closed) => break closed.reason,
        }
    };
    assert_eq!(delivered, 2);
    assert!(
        matches!(reason, CloseReason::Lagged { missed } if missed >= 1),
        "{reason:?}"
    );
}
