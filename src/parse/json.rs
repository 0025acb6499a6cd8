//! Borrowed views of JSON objects: a record is scanned once into `(key, raw value)` pairs
//! that point into the body, and only the values a query needs are decoded. This is why the
//! parser is faster than building a `serde_json::Value` per record.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// An object key, borrowed from the body unless it contained escapes.
#[derive(Debug)]
pub struct Key<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The fields of one JSON object, in document order, values undecoded.
#[derive(Debug, Default)]
pub struct Fields<'a> {
    /// Added with [`push`](Self::push) only, which keeps `buckets` right.
    pub items: Vec<(Key<'a>, &'a RawValue)>,
    /// How many `"": …` entries were dropped (a quirk seen in real exports).
    pub empty_keys: u32,
    /// Keys by [`bucket`]: bit `b` of `.0` is set when a key falls in bucket `b`, of `.1`
    /// when two or more do. A name whose bucket holds at most one key can only be there
    /// once, so its lookup stops at the first match; only a shared bucket (a repeated key,
    /// or two keys alike by length and first letter) needs the whole scan.
    buckets: (u64, u64),
    /// A lookup found its key more than once (ignoring ASCII case) with different values.
    /// A `Cell` because lookups borrow the fields shared; the record parser reads it once
    /// the record is done and counts one `duplicate_key` repair.
    pub conflict: Cell<bool>,
}

impl<'a> Fields<'a> {
    /// The value whose key equals `name` ignoring ASCII case; when several do, the **last**
    /// one, as `JSON.parse`, Python's `json` and `serde_json::Value` (the `dynamic` columns)
    /// keep it. An earlier one with a different value sets [`conflict`](Self::conflict):
    /// whichever is taken, the other is lost, so that must be visible.
    ///
    /// Duplicates are looked for here, only among the keys a query reads, rather than in
    /// the visitor for every key: that is O(keys) per lookup, where a check of every pair
    /// while scanning would be O(keys²) per object (an attacker's 32 MiB object of short
    /// keys included). The buckets keep the usual lookup as cheap as a plain first match.
    #[inline]
    pub fn get_ci(&self, name: &str) -> Option<&'a RawValue> {
        if self.buckets.1 & (1 << bucket(name)) == 0 {
            return self
                .items
                .iter()
                .find(|(k, _)| k.0.len() == name.len() && k.0.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v);
        }
        self.get_ci_shared(name)
    }

    /// [`get_ci`](Self::get_ci) when `name`'s bucket holds several keys: every key is looked at.
    #[inline(never)]
    fn get_ci_shared(&self, name: &str) -> Option<&'a RawValue> {
        let same = |k: &Key<'_>| k.0.len() == name.len() && k.0.eq_ignore_ascii_case(name);
        let mut earlier = self.items.iter().rev();
        let (_, last) = earlier.find(|(k, _)| same(k))?;
        if earlier.any(|(k, v)| same(k) && v.get() != last.get()) {
            self.conflict.set(true);
        }
        Some(*last)
    }

    /// Adds a field (a non-empty key).
    pub fn push(&mut self, key: Key<'a>, value: &'a RawValue) {
        let bit = 1u64 << bucket(&key.0);
        if self.buckets.0 & bit != 0 {
            self.buckets.1 |= bit;
        }
        self.buckets.0 |= bit;
        self.items.push((key, value));
    }

    /// Carries another object's conflict (nested, or decoded from these fields) over to
    /// these fields, the record's.
    pub fn absorb_conflict(&self, other: &Fields<'_>) {
        if other.conflict.get() {
            self.conflict.set(true);
        }
    }
}

/// A key's bucket (0..64) for [`Fields::buckets`]: from its length and its first byte,
/// ASCII case folded, so that keys equal ignoring ASCII case share a bucket. Cheap rather
/// than well spread: it runs for every key of every object.
#[inline]
fn bucket(name: &str) -> u32 {
    let first = name.as_bytes().first().map_or(0, |c| u32::from(c | 0x20));
    (name.len() as u32 ^ (first << 2)) & 63
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields {
            items: Vec::with_capacity(16),
            ..Fields::default()
        };
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            if key.0.is_empty() {
                fields.empty_keys += 1;
            } else {
                fields.push(key, value);
            }
        }
        Ok(fields)
    }
}

/// One top-level JSON value of a body.
pub enum Top<'a> {
    /// An object: either an envelope (`records` is `Some`) or a single record.
    Object {
        fields: Fields<'a>,
        records: Option<Records<'a>>,
    },
    /// A bare array (of records, or of envelopes).
    Array(Vec<&'a RawValue>),
    /// Anything else (number, string, bool, null).
    Scalar,
}

/// The value of a `records` key.
pub enum Records<'a> {
    Array(Vec<&'a RawValue>),
    NotArray,
    /// The object has `records` this many times (in any letter case): which one holds the
    /// body's records is anybody's guess (JSON parsers keep the last, hubwatch used to keep
    /// the first), so the body is rejected rather than half-read.
    Repeated(usize),
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
                let mut fields = Fields::default();
                let mut records = None;
                let mut records_keys = 0usize;
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    if key.0.eq_ignore_ascii_case("records") {
                        records_keys += 1;
                    }
                    // The envelope's array is decoded straight into raw records, so the body
                    // is scanned once here and each record once more by the record parser.
                    if records.is_none() && key.0 == "records" {
                        records = Some(map.next_value::<RecordsDe<'de>>()?.0);
                        continue;
                    }
                    let value: &'de RawValue = map.next_value()?;
                    if key.0.is_empty() {
                        fields.empty_keys += 1;
                    } else {
                        fields.push(key, value);
                    }
                }
                if records.is_some() && records_keys > 1 {
                    records = Some(Records::Repeated(records_keys));
                }
                Ok(Top::Object { fields, records })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top<'de>, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element::<&'de RawValue>()? {
                    items.push(v);
                }
                Ok(Top::Array(items))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Top<'de>, E> {
                Ok(Top::Scalar)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Top<'de>, E> {
                Ok(Top::Scalar)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Top<'de>, E> {
                Ok(Top::Scalar)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Top<'de>, E> {
                Ok(Top::Scalar)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Top<'de>, E> {
                Ok(Top::Scalar)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Top<'de>, E> {
                Ok(Top::Scalar)
            }
        }
        d.deserialize_any(V)
    }
}

struct RecordsDe<'a>(Records<'a>);

impl<'de> Deserialize<'de> for RecordsDe<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RecordsDe<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of records")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RecordsDe<'de>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(8));
                while let Some(v) = seq.next_element::<&'de RawValue>()? {
                    items.push(v);
                }
                Ok(RecordsDe(Records::Array(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RecordsDe<'de>, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(RecordsDe(Records::NotArray))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<RecordsDe<'de>, E> {
                Ok(RecordsDe(Records::NotArray))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<RecordsDe<'de>, E> {
                Ok(RecordsDe(Records::NotArray))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<RecordsDe<'de>, E> {
                Ok(RecordsDe(Records::NotArray))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<RecordsDe<'de>, E> {
                Ok(RecordsDe(Records::NotArray))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<RecordsDe<'de>, E> {
                Ok(RecordsDe(Records::NotArray))
            }
            fn visit_unit<E: de::Error>(self) -> Result<RecordsDe<'de>, E> {
                Ok(RecordsDe(Records::NotArray))
            }
        }
        d.deserialize_any(V)
    }
}

/// Decodes JSON text into a `serde_json::Value` exactly as `serde_json::from_str` does (a
/// repeated key keeps its last value), and sets `conflict` when a repeated key, at any depth,
/// had a different value: the `dynamic` columns' counterpart of [`Fields::get_ci`].
pub fn value(text: &str, conflict: &Cell<bool>) -> Option<serde_json::Value> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = ValueSeed(conflict).deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(v)
}

struct ValueSeed<'c>(&'c Cell<bool>);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = serde_json::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<serde_json::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = serde_json::Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<serde_json::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<serde_json::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(ValueSeed(self.0))? {
            items.push(v);
        }
        Ok(serde_json::Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<serde_json::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ValueSeed(self.0))?;
            match object.entry(key) {
                serde_json::map::Entry::Vacant(e) => {
                    e.insert(value);
                }
                serde_json::map::Entry::Occupied(mut e) => {
                    if *e.get() != value {
                        self.0.set(true);
                    }
                    e.insert(value);
                }
            }
        }
        Ok(serde_json::Value::Object(object))
    }
}

/// A raw JSON string's contents, borrowed when it has no escapes.
pub fn raw_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(text).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// What kind of JSON value a raw value is, from its first byte (serde_json guarantees the
/// raw text is trimmed and valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawKind {
    String,
    Number,
    Bool,
    Null,
    Object,
    Array,
}

pub fn kind(raw: &RawValue) -> RawKind {
    match raw.get().as_bytes().first() {
        Some(b'"') => RawKind::String,
        Some(b't' | b'f') => RawKind::Bool,
        Some(b'n') => RawKind::Null,
        Some(b'{') => RawKind::Object,
        Some(b'[') => RawKind::Array,
        _ => RawKind::Number,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_borrow_keys_and_drop_empty_ones() {
        let f: Fields = serde_json::from_str(r#"{"a":1,"":"","B\u0043":{"x":[1]}}"#).unwrap();
        assert_eq!(f.items.len(), 2);
        assert_eq!(f.empty_keys, 1);
        assert!(matches!(f.items[0].0 .0, Cow::Borrowed("a")));
        assert_eq!(f.get_ci("bc").unwrap().get(), r#"{"x":[1]}"#);
    }

    #[test]
    fn a_repeated_key_gives_its_last_value_and_notes_a_conflict() {
        // Enough keys that unrelated ones share buckets too.
        let mut text = String::from("{");
        for i in 0..200 {
            text.push_str(&format!("\"k{i}\":{i},"));
        }
        text.push_str(r#""Name":"a","other":1,"NAME":"b","same":1,"Same":1}"#);
        let f: Fields = serde_json::from_str(&text).unwrap();
        for i in 0..200 {
            assert_eq!(f.get_ci(&format!("K{i}")).unwrap().get(), i.to_string());
        }
        assert!(!f.conflict.get(), "no key of those is repeated");
        assert_eq!(f.get_ci("same").unwrap().get(), "1");
        assert!(
            !f.conflict.get(),
            "repeated with the same value: nothing lost"
        );
        assert_eq!(f.get_ci("name").unwrap().get(), r#""b""#);
        assert!(f.conflict.get());
        assert_eq!(bucket("NaMe"), bucket("name"));
    }

    #[test]
    fn top_level_shapes() {
        let t: Top = serde_json::from_str(r#"{"records":[{"a":1},2]}"#).unwrap();
        assert!(
            matches!(t, Top::Object { records: Some(Records::Array(ref v)), .. } if v.len() == 2)
        );
        let t: Top = serde_json::from_str(r#"{"records":5}"#).unwrap();
        assert!(matches!(
            t,
            Top::Object {
                records: Some(Records::NotArray),
                ..
            }
        ));
        let t: Top = serde_json::from_str(r#"[1,2]"#).unwrap();
        assert!(matches!(t, Top::Array(ref v) if v.len() == 2));
        let t: Top = serde_json::from_str("7").unwrap();
        assert!(matches!(t, Top::Scalar));
    }

    #[test]
    fn raw_strings_decode_escapes() {
        let r: &RawValue = serde_json::from_str(r#""a\"b""#).unwrap();
        assert_eq!(raw_str(r).unwrap(), "a\"b");
        let r: &RawValue = serde_json::from_str(r#""plain""#).unwrap();
        assert!(matches!(raw_str(r).unwrap(), Cow::Borrowed("plain")));
    }
}
