//! A batch buffer as a reactor reads it: [`batpak_layout::check_batch`],
//! then every string and payload read the way the Rust SDK reads them. The
//! SDK skips UTF-8 validation on each access (`from_utf8_unchecked`)
//! because `check_batch` passed, so the check here is the promise that
//! makes that sound: after `Ok`, every string of the table is in bounds
//! and valid UTF-8.

use batpak_layout::{
    batch_field, check_batch, u32_at, write_batch_header, write_event_record, write_string_entry,
    BatchHeader, EventRecord, BATCH_HEADER_LEN, BATCH_RECORD_LEN, STRING_ENTRY_LEN,
};

/// Feeds one buffer.
pub fn run(data: &[u8]) {
    let Ok(h) = check_batch(data) else {
        return;
    };
    let (count, strings) = (h.count as usize, h.string_count as usize);
    let names_at = h.strings_offset as usize + STRING_ENTRY_LEN * strings;
    for j in 0..strings {
        let e = h.strings_offset as usize + STRING_ENTRY_LEN * j;
        let start = names_at + u32_at(data, e) as usize;
        let end = start + u32_at(data, e + 4) as usize;
        let bytes = data.get(start..end).expect("a checked string is in bounds");
        assert!(
            std::str::from_utf8(bytes).is_ok(),
            "string {j} passed check_batch but is not UTF-8"
        );
    }
    for i in 0..count {
        let r = BATCH_HEADER_LEN + BATCH_RECORD_LEN * i;
        let record = data
            .get(r..r + BATCH_RECORD_LEN)
            .expect("a checked record fits");
        // Payload ranges are the reader's to check (the SDK reads a bad one
        // as empty): only that this arithmetic cannot overflow.
        let start = (h.payloads_offset as usize)
            .saturating_add(u32_at(record, batch_field::PAYLOAD_OFFSET) as usize);
        let _ = data
            .get(start..start.saturating_add(u32_at(record, batch_field::PAYLOAD_LEN) as usize));
    }
}

/// Lays out a batch of `events` (entity, scope, kind, payload) with the
/// layout's writers, each name once, as the host does.
pub fn encode(events: &[(&str, &str, &str, &[u8])]) -> Vec<u8> {
    let mut strings: Vec<&str> = Vec::new();
    let mut intern = |s| match strings.iter().position(|x| *x == s) {
        Some(i) => i as u32,
        None => {
            strings.push(s);
            strings.len() as u32 - 1
        }
    };
    let mut buf = vec![0u8; BATCH_HEADER_LEN + BATCH_RECORD_LEN * events.len()];
    let mut payload_at = 0u32;
    for (i, (entity, scope, kind, payload)) in events.iter().enumerate() {
        let r = BATCH_HEADER_LEN + BATCH_RECORD_LEN * i;
        let record = EventRecord {
            id: (1, i as u64),
            sequence: i as u64 + 1,
            entity_sequence: 1,
            correlation: (1, i as u64),
            causation: (i > 0).then_some((1, 0)),
            timestamp_us: 1_700_000_000_000_000,
            entity: intern(entity),
            scope: intern(scope),
            kind: intern(kind),
            payload_offset: payload_at,
            payload_len: payload.len() as u32,
        };
        write_event_record(&mut buf[r..r + BATCH_RECORD_LEN], &record);
        payload_at += payload.len() as u32;
    }
    let strings_offset = buf.len() as u32;
    let mut at = 0;
    for s in &strings {
        write_string_entry(&mut buf, at, s.len() as u32);
        at += s.len() as u32;
    }
    for s in &strings {
        buf.extend_from_slice(s.as_bytes());
    }
    let payloads_offset = buf.len() as u32;
    for (_, _, _, p) in events {
        buf.extend_from_slice(p);
    }
    let header = BatchHeader {
        count: events.len() as u32,
        string_count: strings.len() as u32,
        strings_offset,
        payloads_offset,
    };
    write_batch_header(&mut buf, &header);
    buf
}

/// Batches as the host lays them out.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    vec![
        ("empty".into(), encode(&[])),
        (
            "one".into(),
            encode(&[("order:1", "shop", "order.placed", br#"{"q":1}"#)]),
        ),
        (
            "three".into(),
            encode(&[
                ("order:1", "shop", "order.placed", br#"{"q":1}"#),
                ("order:2", "shop", "order.placed", b"[]"),
                ("caf\u{e9}:1", "\u{1f600}", "order.paid", b""),
            ]),
        ),
    ]
}
