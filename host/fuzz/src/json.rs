//! An event as JSON text: the raw slicer [`RawJson`] (duplicate keys,
//! fields and items as the exact text sent), checked against serde_json,
//! and the path of a `--jsonl` line and an HTTP or socket event
//! (`NewEvent`, its payload kept as the raw text, then `proposal`, the
//! service's validation of names, kinds, ids and payload).

use batpak_service::{proposal, JsonError, NewEvent, RawJson};
use serde_json::Value;

/// Feeds one text.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let checked = RawJson::parse(text);
    let serde = serde_json::from_str::<Value>(text);
    match &checked {
        Ok(j) => {
            let value = serde
                .as_ref()
                .expect("RawJson accepted what serde_json refuses");
            if let Some(fields) = j.fields() {
                let object = value.as_object().expect("fields of a non-object");
                assert_eq!(fields.len(), object.len(), "fields of {text:?}");
                for (key, raw) in &fields {
                    let v: Value = serde_json::from_str(raw).expect("a field is JSON");
                    assert_eq!(Some(&v), object.get(key), "field {key:?} of {text:?}");
                }
            }
            if let Some(items) = j.items() {
                let array = value.as_array().expect("items of a non-array");
                assert_eq!(items.len(), array.len(), "items of {text:?}");
                for (item, v) in items.iter().zip(array) {
                    let got: Value = serde_json::from_str(item.text()).expect("an item is JSON");
                    assert_eq!(&got, v, "item of {text:?}");
                }
            }
        }
        Err(JsonError::Syntax(_)) => {
            assert!(serde.is_err(), "RawJson refused what serde_json accepts");
        }
        Err(_) => {}
    }
    // A `--jsonl` line: the event's fields, the payload as sent.
    if let Ok(mut event) = serde_json::from_str::<NewEvent>(text) {
        let _ = proposal(0, event.clone());
        let raw = checked
            .ok()
            .and_then(|j| j.fields())
            .and_then(|f| f.into_iter().find(|(k, _)| k == "payload"));
        if let Some((_, raw)) = raw {
            event.payload = None;
            event.payload_text = Some(raw.to_string());
            let _ = proposal(0, event);
        }
    }
}

/// Lines as `append --jsonl` reads them and bodies as clients send them.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    [
        ("line", r#"{"entity":"order:1","scope":"shop","kind":"order.placed","payload":{"q":1,"items":[{"sku":"a","n":2}]}}"#),
        ("line-all", r#"{"id":"0123456789abcdef0123456789abcdef","entity":"order:2","scope":"shop","kind":"order.paid","payload":{"n":12345678901234567890123456789,"f":1.0e2,"z":-0},"causation":"00000000000000000000000000000001","correlation":"00000000000000000000000000000002","idempotency_key":"pay-2"}"#),
        ("dup-key", r#"{"entity":"order:2","entity":"order:3","scope":"s","kind":"k","payload":{}}"#),
        ("dup-in-payload", r#"{"entity":"e","scope":"s","kind":"k","payload":{"a":1,"a":2}}"#),
        ("escapes", r#"{"entity":"\u00e9\"x","scope":"s\\t","kind":"k.k","payload":"\ud83d\ude00 \n"}"#),
        ("array", r#"[ {"a":[1,2,{"b":null}]} , true, "x,]}", -1.5e-3 ]"#),
        ("bad", r#"{"entity":"e","scope":"s","kind":"k","payload":{"a":}"#),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), t.as_bytes().to_vec()))
    .collect()
}
