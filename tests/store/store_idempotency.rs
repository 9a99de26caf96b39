//! Idempotency is Stripe's and Kafka's rule: the same key or id with the
//! same content returns the original receipt; with other content it is a
//! typed conflict naming the original, and nothing is written — before and
//! after the original is visible, and after a restart. The host's own
//! appends (reactions) keep the committed event.

use batpak_store::{AppendOptions, Coordinate, EventId, Proposal, Region, Store, StoreError};

fn prop(entity: &str, kind: &str, payload: &str) -> Proposal {
    Proposal::new(
        Coordinate::new(entity, "bank").unwrap(),
        kind,
        payload.as_bytes().to_vec(),
    )
}

fn count(store: &Store) -> usize {
    store
        .scan(&Region::all(), 0, usize::MAX, false)
        .unwrap()
        .len()
}

#[test]
fn a_reused_key_with_other_content_is_a_conflict_naming_the_original() {
    let dir = crate::tempdir().unwrap();
    let deposit = || prop("acct:1", "money.deposited", r#"{"n":5}"#).idempotency_key("k1");
    let original = {
        let store = Store::open(dir.path()).unwrap();
        let original = store.append(deposit(), AppendOptions::durable()).unwrap();
        let again = store.append(deposit(), AppendOptions::durable()).unwrap();
        assert!(again.deduplicated);
        assert_eq!(again.id, original.id);
        assert_eq!(again.sequence, original.sequence);
        store.close().unwrap();
        original
    };
    // After a restart the original comes from the index and the log.
    let store = Store::open(dir.path()).unwrap();
    let other = [
        prop("acct:2", "money.withdrawn", r#"{"n":5}"#),
        prop("acct:1", "money.withdrawn", r#"{"n":5}"#),
        prop("acct:1", "money.deposited", r#"{"n":6}"#),
        prop("acct:1", "money.deposited", r#"{"n": 5}"#),
        Proposal::new(
            Coordinate::new("acct:1", "other").unwrap(),
            "money.deposited",
            br#"{"n":5}"#.to_vec(),
        ),
    ];
    for p in other {
        let what = format!("{p:?}");
        let r = store.append(p.idempotency_key("k1"), AppendOptions::durable());
        match r {
            Err(StoreError::IdempotencyConflict(c)) => {
                assert_eq!(c.index, 0);
                assert_eq!(c.key.as_deref(), Some("k1"));
                assert_eq!(c.original_id, original.id);
                assert_eq!(c.original_sequence, original.sequence);
                assert_eq!(c.original_entity, "acct:1");
                assert_eq!(c.original_kind, "money.deposited");
            }
            other => panic!("{what}: expected an idempotency conflict, got {other:?}"),
        }
    }
    let e = store
        .append(
            prop("acct:2", "money.withdrawn", "{}").idempotency_key("k1"),
            AppendOptions::durable(),
        )
        .unwrap_err();
    let msg = e.to_string();
    for part in [
        "idempotency key \"k1\"",
        &original.id.to_string(),
        "sequence 1",
        "\"acct:1\"",
        "\"money.deposited\"",
    ] {
        assert!(msg.contains(part), "{msg} lacks {part}");
    }
    assert_eq!(count(&store), 1, "a conflict wrote something");
    assert!(store.entity_events("acct:2", 0, 10).unwrap().is_empty());
    // The identical retry still deduplicates after the restart.
    let again = store.append(deposit(), AppendOptions::durable()).unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.sequence, original.sequence);
}

#[test]
fn a_conflict_with_a_pending_original_in_the_same_batch_or_not_yet_visible_is_refused() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // The original is sequenced in the same batch: never visible yet.
    let r = store.append_batch(
        vec![
            prop("acct:1", "money.deposited", "1").idempotency_key("k"),
            prop("acct:2", "money.withdrawn", "1").idempotency_key("k"),
        ],
        AppendOptions::durable(),
    );
    match r {
        Err(StoreError::IdempotencyConflict(c)) => {
            assert_eq!(c.index, 1);
            assert_eq!(c.original_entity, "acct:1");
            assert_eq!(c.original_kind, "money.deposited");
        }
        other => panic!("expected an idempotency conflict, got {other:?}"),
    }
    assert_eq!(count(&store), 0, "the refused batch wrote something");
    // The same key twice with the same content in one batch: one event.
    let rs = store
        .append_batch(
            vec![
                prop("acct:1", "money.deposited", "1").idempotency_key("k"),
                prop("acct:1", "money.deposited", "1").idempotency_key("k"),
            ],
            AppendOptions::accepted(),
        )
        .unwrap();
    assert!(!rs[0].deduplicated && rs[1].deduplicated);
    // Right after an accepted-only append (maybe not yet visible), a
    // different event under its key is refused.
    let r = store.append(
        prop("acct:2", "money.withdrawn", "1").idempotency_key("k"),
        AppendOptions::accepted(),
    );
    assert!(
        matches!(r, Err(StoreError::IdempotencyConflict(ref c)) if c.original_entity == "acct:1"),
        "{r:?}"
    );
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(count(&store), 1);
}

#[test]
fn an_explicit_id_with_other_content_is_a_conflict_and_with_the_same_content_dedupes() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = EventId::derive(&[b"explicit"]);
    let with_id = |entity: &str, payload: &str| {
        let mut p = prop(entity, "k", payload);
        p.id = Some(id);
        p
    };
    let first = store
        .append(with_id("a", "1"), AppendOptions::visible())
        .unwrap();
    assert_eq!(first.id, id);
    let again = store
        .append(with_id("a", "1"), AppendOptions::visible())
        .unwrap();
    assert!(again.deduplicated);
    let r = store.append(with_id("a", "2"), AppendOptions::visible());
    match r {
        Err(StoreError::IdempotencyConflict(c)) => {
            assert_eq!(c.key, None);
            assert_eq!(c.id, Some(id));
            assert_eq!(c.original_id, id);
        }
        other => panic!("expected an idempotency conflict, got {other:?}"),
    }
    // A key naming the original but another explicit id is another event.
    let keyed = store
        .append(
            prop("b", "k", "1").idempotency_key("kb"),
            AppendOptions::visible(),
        )
        .unwrap();
    let mut p = prop("b", "k", "1").idempotency_key("kb");
    p.id = Some(EventId::derive(&[b"another"]));
    let r = store.append(p, AppendOptions::visible());
    assert!(
        matches!(r, Err(StoreError::IdempotencyConflict(ref c)) if c.original_id == keyed.id),
        "{r:?}"
    );
    assert_eq!(count(&store), 2);
    // A generated id echoed back right after an accepted-only append (its
    // digest is not kept: it is read from the queue or the log).
    for _ in 0..200 {
        let auto = store
            .append(prop("c", "k", "1"), AppendOptions::accepted())
            .unwrap();
        let mut same = prop("c", "k", "1");
        same.id = Some(auto.id);
        let mut other = prop("c", "k", "2");
        other.id = Some(auto.id);
        match store.append(other, AppendOptions::accepted()) {
            Err(StoreError::IdempotencyConflict(c)) => assert_eq!(c.original_id, auto.id),
            // Taken by a drainer that very moment: refused, retried.
            Err(StoreError::BadBatch(m)) if m.contains("being written") => {}
            r => panic!("expected an idempotency conflict, got {r:?}"),
        }
        match store.append(same, AppendOptions::accepted()) {
            Ok(r) => assert!(r.deduplicated && r.sequence == auto.sequence),
            Err(StoreError::BadBatch(m)) if m.contains("being written") => {}
            r => panic!("expected the original receipt, got {r:?}"),
        }
    }
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(count(&store), 202);
}

#[test]
fn the_hosts_own_appends_keep_the_committed_event_under_a_reused_id() {
    // A reaction's id is derived from (reactor, source event, position): a
    // reactor's new version may propose other content for a reaction that
    // is already committed; the committed one stands and the runner goes on.
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = EventId::derive(&[b"reaction"]);
    let reaction = |payload: &str| {
        let mut p = prop("stock:1", "stock.reserved", payload);
        p.id = Some(id);
        p
    };
    let first = store
        .append_system(vec![reaction("v1")], AppendOptions::durable())
        .unwrap();
    let second = store
        .append_system(vec![reaction("v2")], AppendOptions::durable())
        .unwrap();
    assert!(second[0].deduplicated);
    assert_eq!(second[0].sequence, first[0].sequence);
    let stored = store.get(id).unwrap().unwrap();
    assert_eq!(&stored.payload[..], b"v1");
}
