//! Views (`Cursor::pull_views`): events handed out as views of the bytes
//! the cursor read answer exactly what the owned decode answers for the
//! same stored events — over small frames, a large frame pulled in parts,
//! and a few events out of a large frame (the sparse path) — and damage is
//! reported to a view cursor as it is to an owned read, never read around.

use batpak_store::{
    AppendOptions, Canal, CanalBatch, CanalClosed, CloseReason, Coordinate, Cursor, Event,
    EventView, Proposal, Region, Store,
};
use std::time::Duration;

/// Every view of `region` after 0, pulled `max` at a time.
fn pull_all(store: &Store, region: &Region, max: usize) -> Result<Vec<EventView>, CanalClosed> {
    let mut c = Cursor::new(store, region.clone(), 0);
    let mut out = Vec::new();
    loop {
        match c.pull_views(max, Duration::ZERO)? {
            CanalBatch::Empty => return Ok(out),
            b => out.extend(b.into_vec()),
        }
    }
}

/// Asserts every accessor of `v` against the owned event `e`.
fn same(v: &EventView, e: &Event) {
    let h = &e.header;
    assert_eq!(v.id(), h.id);
    assert_eq!(v.sequence(), h.sequence);
    assert_eq!(v.entity_sequence(), h.entity_sequence);
    assert_eq!(v.entity(), h.coordinate.entity);
    assert_eq!(v.scope(), h.coordinate.scope);
    assert_eq!(v.kind(), h.kind);
    assert_eq!(v.causation(), h.causation);
    assert_eq!(v.correlation(), h.correlation);
    assert_eq!(v.timestamp_us(), h.timestamp_us);
    assert_eq!(&*v.payload, &*e.payload);
    assert_eq!(v.hash, e.hash);
    // The whole header (meta, chain link, idempotency key) round-trips.
    assert_eq!(&v.to_event(), e);
    assert_eq!(v, &EventView::from(e));
}

fn fill(store: &Store) {
    // Small frames: single appends with causes, meta and idempotency keys.
    let mut last = None;
    for i in 0..40 {
        let mut p = Proposal::new(
            Coordinate::new(format!("order:{}", i % 5), "shop").unwrap(),
            if i % 3 == 0 {
                "order.placed"
            } else {
                "stock.moved"
            },
            format!("{{\"i\":{i}}}").into_bytes(),
        );
        p.causation = last;
        if i % 4 == 0 {
            p = p.idempotency_key(format!("k{i}"));
        }
        if i % 2 == 0 {
            p.meta = vec![
                ("reactor".into(), "r".into()),
                ("component".into(), format!("digest-{i}")),
            ]
            .into();
        }
        last = Some(store.append(p, AppendOptions::durable()).unwrap().id);
    }
    // One large frame: 3000 events, every 100th of another kind.
    let batch: Vec<Proposal> = (0..3000)
        .map(|i| {
            Proposal::new(
                Coordinate::new(format!("e:{}", i % 30), "s").unwrap(),
                if i % 100 == 7 { "rare.kind" } else { "x.y" },
                format!("payload-{i:06}-{}", "z".repeat(180)).into_bytes(),
            )
        })
        .collect();
    store.append_batch(batch, AppendOptions::durable()).unwrap();
}

#[test]
fn views_answer_what_the_owned_decode_answers() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store);
    for region in [
        Region::all(),
        Region::all().kinds(["order.placed", "rare.kind"]),
        Region::all().entity_prefix("e:1"),
    ] {
        let owned = store.scan(&region, 0, usize::MAX, false).unwrap();
        assert!(!owned.is_empty());
        // 1, 7 and 1024 at a time: one-event batches, pulls that end inside
        // a frame, and pulls served from the cursor's cached frame.
        for max in [1, 7, 1024] {
            let views = pull_all(&store, &region, max).unwrap();
            assert_eq!(views.len(), owned.len(), "max {max}");
            for (v, e) in views.iter().zip(&owned) {
                same(v, e);
            }
        }
        // The owned canal of the same cursor type agrees too.
        let mut c = Cursor::new(&store, region.clone(), 0);
        let b = c.pull_batch(usize::MAX, Duration::ZERO).unwrap();
        assert_eq!(b.into_vec(), owned);
    }
}

/// Damages one payload byte on disk and checks both the whole-frame path
/// (every event) and the sparse path (a few events of the large frame) of
/// a view cursor report it, as the owned read does.
#[test]
fn views_report_a_damaged_frame_instead_of_reading_around_it() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store);
    // Event 1508 of the large frame: of kind x.y, entity e:8.
    crate::damage_payload(dir.path(), b"payload-001508-");
    let failed = |r: Result<Vec<EventView>, CanalClosed>| match r {
        Err(CanalClosed {
            reason: CloseReason::Failed(m),
        }) => assert!(m.contains("corrupt store: segment 00000001"), "{m}"),
        other => panic!("expected a failed canal, got {other:?}"),
    };
    // Whole frames: the frame's CRC.
    failed(pull_all(&store, &Region::all(), 1024));
    assert!(store.scan(&Region::all(), 0, usize::MAX, false).is_err());
    // Sparse: the damaged event's own hash.
    failed(pull_all(&store, &Region::all().entity_prefix("e:8"), 1024));
    // Events of the frame that are not damaged, read sparsely, still
    // read, and equal what the owned sparse read returns.
    let rare = Region::all().kinds(["rare.kind"]);
    let owned = store.scan(&rare, 0, usize::MAX, false).unwrap();
    let views = pull_all(&store, &rare, 1024).unwrap();
    assert_eq!(views.len(), 30);
    for (v, e) in views.iter().zip(&owned) {
        same(v, e);
    }
}
