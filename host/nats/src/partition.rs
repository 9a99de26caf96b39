//! Entity → partition, and the subjects a partition's stream holds.
//!
//! The hash is part of the on-cluster format: every host, in any language,
//! must send an entity to the same partition, so it is spelled out here and
//! pinned by a test (it lives in `batpak-store`, which a reactor's
//! instances share, and is re-exported here). **FNV-1a, 64 bits**, over the entity's UTF-8 bytes
//! (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`), reduced
//! modulo the partition count: `partition = fnv1a64(entity) % K`. The scope
//! is not hashed: an entity's events stay in one partition, in one order.

pub use batpak_store::{fnv1a64, partition_of};

/// The name of partition `p`'s stream: `BATPAK_P<p>`.
pub fn stream_name(p: u32) -> String {
    format!("BATPAK_P{p}")
}

/// Every subject of partition `p`'s stream: `batpak.p<p>.>`.
pub fn stream_subjects(p: u32) -> String {
    format!("batpak.p{p}.>")
}

/// The subjects of partition `p`'s events (checkpoints left out).
pub fn events_filter(p: u32) -> String {
    format!("batpak.p{p}.e.>")
}

/// The subject of one event: `batpak.p<p>.e.<entity token>.<id hex>`. The
/// id in the subject is what makes a look-up by id one request per
/// partition (last message on `batpak.p<p>.e.*.<id>`).
pub fn event_subject(p: u32, entity: &str, id_hex: &str) -> String {
    format!("batpak.p{p}.e.{}.{id_hex}", token(entity))
}

/// The subjects of one entity's events in partition `p`.
pub fn entity_filter(p: u32, entity: &str) -> String {
    format!("batpak.p{p}.e.{}.*", token(entity))
}

/// The subject matching one event id in partition `p`, whatever its entity.
pub fn id_filter(p: u32, id_hex: &str) -> String {
    format!("batpak.p{p}.e.*.{id_hex}")
}

/// The subject of an outbox message in partition `p` for partition `q`:
/// `batpak.p<p>.o.<q>.<id hex>` — a record of a commit in `p` whose entity
/// lives in `q`, waiting for `q`'s relay (see [`crate::Relay`]). Outside
/// [`events_filter`]: it is not an event of `p`.
pub fn outbox_subject(p: u32, q: u32, id_hex: &str) -> String {
    format!("batpak.p{p}.o.{q}.{id_hex}")
}

/// The outbox messages in partition `p` for partition `q`.
pub fn outbox_filter(p: u32, q: u32) -> String {
    format!("batpak.p{p}.o.{q}.*")
}

/// The outbox messages for partition `q` in every partition (a core
/// subscription on it wakes `q`'s relay).
pub fn outbox_wake(q: u32) -> String {
    format!("batpak.*.o.{q}.*")
}

/// The cursor of `q`'s relay for source partition `p`: its checkpoint (on
/// [`checkpoint_subject`]`(q, "relay.<p>")`) holds how far `p`'s outbox
/// for `q` is forwarded, and fences the forwards. Reactors' cursors are
/// `reactor.<name>`, so the two never meet.
pub fn relay_cursor(p: u32) -> String {
    format!("relay.{p}")
}

/// The subject of reactor `reactor`'s checkpoint in partition `p`: the last
/// message on it is the reactor's cursor there, and its sequence is the
/// fencing token of the next commit.
pub fn checkpoint_subject(p: u32, reactor: &str) -> String {
    format!("batpak.p{p}.ck.{}", token(reactor))
}

/// The entity under which partition `p` (of `partitions`) keeps its own
/// copy of the host's per-reactor stream `base` (`reactor:<name>`,
/// `batpak.reactor:<name>`): `<base>/p<p>`, or `<base>/p<p>.<n>` with the
/// smallest `n ≥ 1` for which the name hashes to `p` ([`partition_of`]). So
/// each partition's instance writes its swap, refusal, parking and reset
/// records into its own partition while every entity still lives in the one
/// partition its hash names. Reactor names have no `/`, so such an entity
/// never is another reactor's stream. Part of the on-cluster format.
pub fn local_entity(base: &str, p: u32, partitions: u32) -> String {
    assert!(p < partitions, "partition {p} of {partitions}");
    let first = format!("{base}/p{p}");
    if partition_of(&first, partitions) == p {
        return first;
    }
    // Each try hits `p` with probability 1/K: found after about K tries.
    (1u64..)
        .map(|n| format!("{base}/p{p}.{n}"))
        .find(|e| partition_of(e, partitions) == p)
        .expect("some salt hashes to every partition")
}

/// A name as one subject token: ASCII letters, digits, `-` and `_` kept,
/// every other byte written `~HH` (upper-case hex), so `.`, `*`, `>`,
/// spaces and `~` itself never reach the subject and the mapping is
/// one-to-one. An empty name is the token `~`.
pub fn token(name: &str) -> String {
    if name.is_empty() {
        return "~".into();
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("~{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outbox's subjects, pinned (part of the on-cluster format): in
    /// the source's stream, outside its events, one filter per target.
    #[test]
    fn outbox_subjects_are_as_documented() {
        assert_eq!(outbox_subject(0, 3, "ab"), "batpak.p0.o.3.ab");
        assert_eq!(outbox_filter(0, 3), "batpak.p0.o.3.*");
        assert_eq!(outbox_wake(3), "batpak.*.o.3.*");
        assert_eq!(
            checkpoint_subject(3, &relay_cursor(0)),
            "batpak.p3.ck.relay~2E0"
        );
        assert!(!outbox_subject(0, 3, "ab").starts_with("batpak.p0.e."));
        assert!(outbox_subject(0, 3, "ab").starts_with(&stream_subjects(0)[..10]));
    }

    /// The per-partition streams, pinned (part of the on-cluster format):
    /// each lives in its partition, and with one partition it is the plain
    /// `<base>/p0`.
    #[test]
    fn local_entities_live_in_their_partition() {
        assert_eq!(
            local_entity("reactor:shipping", 0, 1),
            "reactor:shipping/p0"
        );
        for k in [1u32, 2, 3, 4, 16, 64] {
            for p in 0..k {
                let e = local_entity("reactor:passthrough", p, k);
                assert_eq!(partition_of(&e, k), p, "{e} in {k}");
                assert!(e.starts_with(&format!("reactor:passthrough/p{p}")), "{e}");
                assert_eq!(e, local_entity("reactor:passthrough", p, k));
            }
        }
        let pinned: Vec<String> = (0..4)
            .map(|p| local_entity("reactor:passthrough", p, 4))
            .collect();
        assert_eq!(pinned, PINNED_PASSTHROUGH_4);
    }

    const PINNED_PASSTHROUGH_4: [&str; 4] = [
        "reactor:passthrough/p0.4",
        "reactor:passthrough/p1",
        "reactor:passthrough/p2.4",
        "reactor:passthrough/p3",
    ];

    #[test]
    fn tokens_are_one_to_one_and_subject_safe() {
        assert_eq!(token("order:1"), "order~3A1");
        assert_eq!(token("a.b*c>d e~"), "a~2Eb~2Ac~3Ed~20e~7E");
        assert_ne!(token("a~3A"), token("a:"));
        assert_eq!(token(""), "~");
        assert_eq!(token("é"), "~C3~A9");
    }
}
