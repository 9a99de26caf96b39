//! JSON as the client sent it. serde_json silently keeps the last of two
//! equal keys and turns integers beyond 64 bits into floats; a payload
//! must instead be stored byte for byte as sent. [`RawJson::parse`]
//! validates a text and refuses duplicate keys at any depth; its
//! [`fields`](RawJson::fields) and [`items`](RawJson::items) give the raw
//! text of a top-level object's values and array's items, so a payload is
//! sliced out of its envelope, never re-encoded.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

/// Why a text was refused as JSON.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON: serde_json's message, with line and column.
    #[error("{0}")]
    Syntax(String),
    /// An object names the same key twice (which one would count is a
    /// guess, so neither does).
    #[error("duplicate key {key:?} at line {line}, column {column}: each key may appear once in an object")]
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// Line of the repetition (1-based).
        line: usize,
        /// Column just after the repeated key (1-based, in bytes).
        column: usize,
    },
}

/// A text checked to be one JSON value with no duplicate keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawJson<'a>(&'a str);

impl<'a> RawJson<'a> {
    /// Checks that `text` is one JSON value (surrounding whitespace
    /// allowed) in which no object repeats a key.
    ///
    /// # Errors
    /// [`JsonError`] naming the problem and where it is.
    pub fn parse(text: &'a str) -> Result<RawJson<'a>, JsonError> {
        let dup = RefCell::new(None);
        let mut de = serde_json::Deserializer::from_str(text);
        let r = Check(&dup).deserialize(&mut de).and_then(|()| de.end());
        match r {
            Ok(()) => Ok(RawJson(text)),
            Err(e) => Err(match dup.into_inner() {
                Some(key) => JsonError::DuplicateKey {
                    key,
                    line: e.line(),
                    column: e.column(),
                },
                None => JsonError::Syntax(e.to_string()),
            }),
        }
    }

    /// The text, as given.
    pub fn text(self) -> &'a str {
        self.0
    }

    /// A top-level object's keys (unescaped) with the raw text of each
    /// value, in order; `None` when the value is not an object.
    pub fn fields(self) -> Option<Vec<(String, &'a str)>> {
        self.members(b'{', b'}')?
            .into_iter()
            .map(|(key, value)| Some((key?, value)))
            .collect()
    }

    /// A top-level array's items as raw text, in order; `None` when the
    /// value is not an array.
    pub fn items(self) -> Option<Vec<RawJson<'a>>> {
        // Each item of a checked text is itself checked JSON.
        Some(
            self.members(b'[', b']')?
                .into_iter()
                .map(|(_, item)| RawJson(item))
                .collect(),
        )
    }

    /// The members of a top-level object (`{`…`}`: each with its unescaped
    /// key) or array (`[`…`]`: no key), as slices of the checked text;
    /// `None` when the value is not of that kind.
    fn members(self, open: u8, close: u8) -> Option<Vec<(Option<String>, &'a str)>> {
        let t = self.0;
        let b = t.as_bytes();
        let mut i = skip_ws(b, 0);
        if b.get(i) != Some(&open) {
            return None;
        }
        let mut out = Vec::new();
        i += 1;
        loop {
            i = skip_ws(b, i);
            match b.get(i) {
                Some(c) if *c == close => return Some(out),
                None => return Some(out),
                Some(b',') => {
                    i += 1;
                    continue;
                }
                _ => {}
            }
            let key = if open == b'{' {
                let key_end = string_end(b, i);
                let key = serde_json::from_str::<String>(t.get(i..key_end)?).ok()?;
                i = skip_ws(b, key_end);
                if b.get(i) != Some(&b':') {
                    return None;
                }
                i = skip_ws(b, i + 1);
                Some(key)
            } else {
                None
            };
            let end = value_end(b, i);
            out.push((key, t.get(i..end)?));
            i = end;
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// End (exclusive) of the string starting with the quote at `i`.
fn string_end(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
}

/// End (exclusive) of the value starting at `i` in a checked text.
fn value_end(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(b'"') => string_end(b, i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            b.len()
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            j
        }
    }
}

/// Walks a value without building it, refusing a repeated key (noted in
/// the cell, so the caller reports it as a typed error).
struct Check<'c>(&'c RefCell<Option<String>>);

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Check(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // The keys of a small object (every event line's) are compared in
        // a list, borrowed from the text; a large one's go to a hash set,
        // so a hostile object of many keys stays linear.
        let mut few: Vec<Cow<'de, str>> = Vec::new();
        let mut many: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key_seed(Key)? {
            let repeated = if many.is_empty() && few.len() < SMALL_OBJECT {
                few.contains(&key)
            } else {
                many.extend(few.drain(..));
                many.contains(&key)
            };
            if repeated {
                let msg = format!("duplicate key {key:?}");
                *self.0.borrow_mut() = Some(key.into_owned());
                return Err(de::Error::custom(msg));
            }
            map.next_value_seed(Check(self.0))?;
            if many.is_empty() {
                few.push(key);
            } else {
                many.insert(key);
            }
        }
        Ok(())
    }
}

/// Keys an object may have before they are checked in a hash set instead
/// of a list.
const SMALL_OBJECT: usize = 16;

/// An object key, borrowed from the text when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_sliced_as_sent() {
        let t =
            r#" { "a" : 12345678901234567890123456789 , "p":{"x":[1.0e2,-0,"]}\""]},"z\"q":"s"} "#;
        let f = RawJson::parse(t).unwrap().fields().unwrap();
        assert_eq!(f[0], ("a".to_string(), "12345678901234567890123456789"));
        assert_eq!(f[1], ("p".to_string(), r#"{"x":[1.0e2,-0,"]}\""]}"#));
        assert_eq!(f[2], ("z\"q".to_string(), r#""s""#));
        let items = RawJson::parse("[ 1 ,{\"a\":[]}]").unwrap().items().unwrap();
        let texts: Vec<&str> = items.iter().map(|i| i.text()).collect();
        assert_eq!(texts, ["1", "{\"a\":[]}"]);
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let e = RawJson::parse(r#"{"entity":"a","entity":"b"}"#).unwrap_err();
        assert!(matches!(e, JsonError::DuplicateKey { ref key, .. } if key == "entity"));
        let e = RawJson::parse(r#"{"p":[{"x":1,"x":2}]}"#).unwrap_err();
        assert!(matches!(e, JsonError::DuplicateKey { ref key, .. } if key == "x"));
        assert!(matches!(
            RawJson::parse("{\"a\":1,}"),
            Err(JsonError::Syntax(_))
        ));
        assert!(RawJson::parse(r#"{"a":{"x":1},"b":{"x":1}}"#).is_ok());
    }

    /// A key repeated in an escaped spelling, and in an object past the
    /// size whose keys are checked in a list, is still a repeat.
    #[test]
    fn duplicate_keys_are_found_escaped_and_in_large_objects() {
        let e = RawJson::parse(r#"{"ab":1,"a\u0062":2}"#).unwrap_err();
        assert!(matches!(e, JsonError::DuplicateKey { ref key, .. } if key == "ab"));
        for n in [SMALL_OBJECT - 1, SMALL_OBJECT, SMALL_OBJECT + 1, 100] {
            let keys: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
            let fine = format!("{{{}}}", keys.join(","));
            assert!(RawJson::parse(&fine).is_ok(), "{n} keys");
            for repeat in [0, n / 2, n - 1] {
                let bad = format!("{{{},\"k{repeat}\":0}}", keys.join(","));
                let e = RawJson::parse(&bad).unwrap_err();
                let want = format!("k{repeat}");
                assert!(
                    matches!(e, JsonError::DuplicateKey { ref key, .. } if *key == want),
                    "{n} keys, k{repeat} repeated: {e}"
                );
            }
        }
    }

    mod arbitrary {
        use super::*;
        use proptest::prelude::*;
        use serde_json::Value;

        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Value::from),
                ".{0,8}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::btree_map(".{0,6}", inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            /// Any text: refused, or accepted only when serde_json accepts
            /// it too — never a panic.
            #[test]
            fn any_text_is_refused_or_valid_json(text in "\\PC{0,64}") {
                if RawJson::parse(&text).is_ok() {
                    prop_assert!(serde_json::from_str::<Value>(&text).is_ok());
                }
            }

            /// Every JSON value, compact or pretty, is accepted; its
            /// fields and items are the exact slices of what was sent.
            #[test]
            fn fields_and_items_slice_every_value_exactly(v in value(), pretty in any::<bool>()) {
                let text = if pretty {
                    serde_json::to_string_pretty(&v).unwrap()
                } else {
                    serde_json::to_string(&v).unwrap()
                };
                let raw = RawJson::parse(&text).unwrap();
                match &v {
                    Value::Object(m) => {
                        let fields = raw.fields().unwrap();
                        prop_assert_eq!(fields.len(), m.len());
                        for (k, slice) in fields {
                            let parsed: Value = serde_json::from_str(slice).unwrap();
                            prop_assert_eq!(Some(&parsed), m.get(&k));
                            prop_assert!(text.contains(slice));
                        }
                    }
                    Value::Array(a) => {
                        let items = raw.items().unwrap();
                        prop_assert_eq!(items.len(), a.len());
                        for (item, want) in items.iter().zip(a) {
                            let parsed: Value = serde_json::from_str(item.text()).unwrap();
                            prop_assert_eq!(&parsed, want);
                        }
                    }
                    _ => {
                        prop_assert!(raw.fields().is_none());
                        prop_assert!(raw.items().is_none());
                    }
                }
            }
        }
    }
}
