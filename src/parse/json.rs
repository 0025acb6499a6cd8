//! Borrowed views of JSON objects: a record is scanned once into `(key, raw value)` pairs
//! that point into the body, and only the values a query needs are decoded. This is why the
//! parser is faster than building a `serde_json::Value` per record.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
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
    pub items: Vec<(Key<'a>, &'a RawValue)>,
    /// How many `"": …` entries were dropped (a quirk seen in real exports).
    pub empty_keys: u32,
}

impl<'a> Fields<'a> {
    /// The first value whose key equals `name` ignoring ASCII case.
    pub fn get_ci(&self, name: &str) -> Option<&'a RawValue> {
        self.items
            .iter()
            .find(|(k, _)| k.0.len() == name.len() && k.0.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
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
            empty_keys: 0,
        };
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            if key.0.is_empty() {
                fields.empty_keys += 1;
            } else {
                fields.items.push((key, value));
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
                while let Some(key) = map.next_key::<Key<'de>>()? {
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
                        fields.items.push((key, value));
                    }
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
