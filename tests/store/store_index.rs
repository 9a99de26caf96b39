//! Indexed reads (`Store::lookup`): by entity, correlation, caused-by, id
//! and position, each checked against a brute-force filter of the whole log
//! on a random causal graph — live, after a reopen from the snapshot, and
//! after a rebuild from the segments. The seed is printed; set
//! `BATPAK_INDEX_SEED` to replay one.

use batpak_store::{AppendOptions, Coordinate, Event, EventId, Lookup, Proposal, Region, Store};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const KINDS: [&str; 3] = ["order.placed", "stock.reserved", "batpak.reactor.parked"];

fn build(store: &Store, rng: &mut Rng, n: usize) -> Vec<Event> {
    let mut ids: Vec<EventId> = Vec::new();
    for i in 0..n {
        let kind = KINDS[rng.below(3) as usize];
        let entity = format!("e:{}", rng.below(7));
        let mut p = Proposal::new(
            Coordinate::new(entity, if rng.below(2) == 0 { "a" } else { "b" }).unwrap(),
            kind,
            format!("{{\"i\":{i}}}").into_bytes(),
        );
        if !ids.is_empty() && rng.below(3) > 0 {
            p.causation = Some(ids[rng.below(ids.len() as u64) as usize]);
        }
        if rng.below(10) == 0 && !ids.is_empty() {
            // An explicit correlation, not the cause's.
            p.correlation = Some(ids[rng.below(ids.len() as u64) as usize]);
        }
        if rng.below(12) == 0 {
            // A correlation no event carries as its id (yet): shared by a few.
            p.correlation = Some(EventId((0xC0 << 120) | rng.below(4) as u128));
        }
        if rng.below(40) == 0 {
            // An event whose id an earlier correlation already used.
            let want = EventId((0xC0 << 120) | rng.below(4) as u128);
            if !ids.contains(&want) {
                p.id = Some(want);
            }
        }
        let r = store
            .append_system(vec![p], AppendOptions::visible())
            .unwrap();
        ids.push(r[0].id);
    }
    store.sync().unwrap();
    store.scan(&Region::all(), 0, usize::MAX, true).unwrap()
}

fn seqs(v: &[Event]) -> Vec<u64> {
    v.iter().map(|e| e.header.sequence).collect()
}

/// A brute-force predicate standing for one lookup.
type Pred = Box<dyn Fn(&Event) -> bool>;

/// Every lookup agrees with filtering the whole log.
fn check(store: &Store, log: &[Event], rng: &mut Rng, seed: u64) {
    for round in 0..300 {
        let pick = &log[rng.below(log.len() as u64) as usize];
        let (lookup, pred): (Lookup, Pred) = match rng.below(5) {
            0 => {
                let en = pick.header.coordinate.entity.clone();
                (
                    Lookup::Entity(en.clone()),
                    Box::new(move |e: &Event| e.header.coordinate.entity == en),
                )
            }
            1 => {
                let c = pick.header.correlation;
                (
                    Lookup::Correlation(c),
                    Box::new(move |e: &Event| e.header.correlation == c),
                )
            }
            2 => {
                let c = pick.header.id;
                (
                    Lookup::CausedBy(c),
                    Box::new(move |e: &Event| e.header.causation == Some(c)),
                )
            }
            3 => {
                let c = pick.header.id;
                (Lookup::Id(c), Box::new(move |e: &Event| e.header.id == c))
            }
            _ => (Lookup::All, Box::new(|_: &Event| true)),
        };
        let mut region = Region::all();
        if rng.below(2) == 0 {
            region = region.kinds([KINDS[rng.below(3) as usize]]);
        }
        if rng.below(3) == 0 {
            region = region.scope("a");
        }
        let system = rng.below(2) == 0;
        let after = rng.below(log.len() as u64 + 2);
        let limit = if rng.below(2) == 0 {
            usize::MAX
        } else {
            1 + rng.below(5) as usize
        };
        let want: Vec<u64> = log
            .iter()
            .filter(|e| {
                e.header.sequence > after
                    && pred(e)
                    && region.matches_parts_or_system(
                        &e.header.coordinate.entity,
                        &e.header.coordinate.scope,
                        &e.header.kind,
                        system,
                    )
            })
            .take(limit)
            .map(|e| e.header.sequence)
            .collect();
        let got = store
            .lookup(&lookup, &region, after, limit, system)
            .unwrap();
        assert_eq!(
            seqs(&got),
            want,
            "seed {seed} round {round}: {lookup:?} {region:?} after {after} limit {limit} system {system}"
        );
        for (g, w) in got
            .iter()
            .zip(log.iter().filter(|e| want.contains(&e.header.sequence)))
        {
            assert_eq!(g.payload, w.payload, "seed {seed}: payload differs");
        }
    }
}

#[test]
fn lookups_agree_with_a_full_scan_live_after_reopen_and_after_rebuild() {
    let seed = std::env::var("BATPAK_INDEX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| batpak_store::now_us() | 1);
    println!("BATPAK_INDEX_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = build(&store, &mut rng, 600);
    check(&store, &log, &mut rng, seed);
    store.close().unwrap();

    // From the snapshot (BPKSNAP4 carries correlations).
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.recovery().replayed, 0, "the snapshot is used");
    check(&store, &log, &mut rng, seed);
    store.close().unwrap();

    // Rebuilt from the segments.
    std::fs::remove_file(dir.path().join("index.snap")).unwrap();
    let store = Store::open(dir.path()).unwrap();
    check(&store, &log, &mut rng, seed);
    store.close().unwrap();
}

#[test]
fn unknown_ids_and_entities_find_nothing() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append(
            Proposal::new(Coordinate::new("a:1", "s").unwrap(), "x.y", b"1".to_vec()),
            AppendOptions::durable(),
        )
        .unwrap();
    let r = Region::all();
    for l in [
        Lookup::Entity("nobody".into()),
        Lookup::Correlation(EventId(7)),
        Lookup::CausedBy(EventId(7)),
        Lookup::Id(EventId(7)),
    ] {
        assert!(
            store.lookup(&l, &r, 0, 10, true).unwrap().is_empty(),
            "{l:?}"
        );
    }
    assert_eq!(
        store.lookup(&Lookup::All, &r, 0, 10, true).unwrap().len(),
        1
    );
}

/// A lookup reading a few events out of a large frame checks each by its
/// own hash: a damaged byte in an event handed on is still reported.
#[test]
fn sparse_reads_from_a_large_frame_report_a_damaged_event() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // One batch = one frame of ~600 KB.
    let batch: Vec<Proposal> = (0..3000)
        .map(|i| {
            Proposal::new(
                Coordinate::new(format!("e:{}", i % 30), "s").unwrap(),
                "x.y",
                format!("payload-{i:06}-{}", "z".repeat(180)).into_bytes(),
            )
        })
        .collect();
    let rs = store.append_batch(batch, AppendOptions::durable()).unwrap();
    let r = Region::all();
    let before = store
        .lookup(&Lookup::Entity("e:7".into()), &r, 0, usize::MAX, false)
        .unwrap();
    assert_eq!(before.len(), 100);
    // Damage one byte of event 1507's payload (entity e:7) on disk.
    crate::damage_payload(dir.path(), b"payload-001507-");
    let err = store
        .lookup(&Lookup::Entity("e:7".into()), &r, 0, usize::MAX, false)
        .unwrap_err();
    assert!(
        matches!(err, batpak_store::StoreError::Corrupt { .. }),
        "{err}"
    );
    assert!(matches!(
        store.get(rs[1507].id),
        Err(batpak_store::StoreError::Corrupt { .. })
    ));
    // An undamaged event of another entity in the same frame still reads.
    let ok = store.get(rs[1508].id).unwrap().unwrap();
    assert_eq!(ok.header.id, rs[1508].id);
}

/// `opens_clean`: true after a clean close, false when an open would have
/// to repair (a torn tail after the durable marker).
#[test]
fn opens_clean_tells_when_an_open_repairs_nothing() {
    let dir = crate::tempdir().unwrap();
    assert!(!batpak_store::opens_clean(dir.path()), "no store yet");
    let store = Store::open(dir.path()).unwrap();
    for i in 0..5 {
        store
            .append(
                Proposal::new(
                    Coordinate::new("a:1", "s").unwrap(),
                    "x.y",
                    format!("{i}").into_bytes(),
                ),
                AppendOptions::durable(),
            )
            .unwrap();
    }
    store.close().unwrap();
    assert!(batpak_store::opens_clean(dir.path()), "closed cleanly");
    let seg = dir.path().join("segments").join("00000001.seg");
    let mut b = std::fs::read(&seg).unwrap();
    b.extend_from_slice(b"BPKF\x10\x00");
    std::fs::write(&seg, &b).unwrap();
    assert!(!batpak_store::opens_clean(dir.path()), "a torn tail");
}

/// Fills a store the way the memory benchmark does (100 entities, ~100-byte
/// payloads, batches of 1000), reopens it from its snapshot and returns the
/// index's heap bytes per event, computed from its structures' capacities.
fn index_bytes_per_event(n: u64) -> f64 {
    let payload = vec![b'x'; 100];
    index_bytes_per_event_of(n, &mut |k| {
        Proposal::new(
            Coordinate::new(format!("bench:{}", k % 100), "bench").unwrap(),
            "bench.event",
            payload.clone(),
        )
    })
}

/// [`index_bytes_per_event`] for events made by `make(k)`, appended in
/// batches of 1000 (a proposal may name an earlier event of its batch as
/// its cause only through an explicit id).
fn index_bytes_per_event_of(n: u64, make: &mut dyn FnMut(u64) -> Proposal) -> f64 {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut i = 0u64;
    while i < n {
        let batch: Vec<Proposal> = (i..(i + 1000).min(n)).map(&mut *make).collect();
        i += batch.len() as u64;
        store.append_batch(batch, AppendOptions::default()).unwrap();
    }
    let live = store.index_memory();
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let m = store.index_memory();
    assert_eq!(m.events, n);
    println!(
        "{n} events: index {:.1} B/event after reopen ({:.1} live): entries {} / by_id {} / by_entity {} / children {} / correlation {} / names {} / keys {}",
        m.per_event(),
        live.per_event(),
        m.entries, m.by_id, m.by_entity, m.children, m.correlation, m.names, m.keys
    );
    store.close().unwrap();
    m.per_event().max(live.per_event())
}

/// The compact index holds at most 64 bytes per event (issue 20 item 3),
/// live and after a reopen from the snapshot.
#[test]
fn the_index_holds_at_most_64_bytes_per_event_at_1m_events() {
    let per = index_bytes_per_event(1_000_000);
    assert!(per <= 64.0, "{per:.1} B/event");
}

/// An order-like store: an entity per three events (an order and two
/// reactions, each caused by the one before and sharing its correlation).
/// Names and per-entity lists cost more per event here than with 100 busy
/// entities (an interned name costs about 90 bytes); the bound this shape
/// is held to is 112 bytes per event.
#[test]
fn an_order_like_index_holds_at_most_112_bytes_per_event_at_1m_events() {
    let id = |k: u64| EventId((0xAB << 120) | (k as u128 + 1));
    let per = index_bytes_per_event_of(999_999, &mut |k| {
        let mut p = Proposal::new(
            Coordinate::new(format!("order:{}", k / 3), "shop").unwrap(),
            ["order.placed", "stock.reserved", "shipment.requested"][(k % 3) as usize],
            br#"{"sku":"widget-0042","qty":3}"#.to_vec(),
        );
        p.id = Some(id(k));
        if k % 3 > 0 {
            p.causation = Some(id(k - 1));
        }
        p
    });
    assert!(per <= 112.0, "{per:.1} B/event");
}

/// The same at 10M events (minutes and about 2 GB of disk): run with
/// `--ignored` to print the figure.
#[test]
#[ignore]
fn the_index_holds_at_most_64_bytes_per_event_at_10m_events() {
    let per = index_bytes_per_event(10_000_000);
    assert!(per <= 64.0, "{per:.1} B/event");
}
