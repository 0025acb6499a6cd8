//! The compact binary encoding of window state for checkpoint snapshots: a [`Writer`] and a
//! [`Reader`] of primitives, the [`Encode`] / [`Decode`] traits, and their impls for the
//! standard types and for values. Aggregate states and sketches encode themselves with these
//! (`window/encode.rs`), so this module depends on nothing but [`crate::value`].
//!
//! Integers are LEB128 varints (signed ones zigzagged first), because the counts and sums in
//! window state are mostly small; reals and datetimes are fixed 8 bytes, where a varint would
//! only cost more. Decoding treats the input as hostile even though the file carries a CRC: it
//! never panics, never reads past the end, and checks every length against the bytes left
//! *before* allocating, so a corrupt count cannot ask for gigabytes.

use std::sync::Arc;

use crate::value::Value;

/// Why a snapshot could not be decoded. Either way the snapshot is unusable: it was cut short,
/// damaged, or written by an incompatible build; the offsets point at the first bad byte.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "snapshot ends at byte {at} where {wanted} was expected; it was cut short or is corrupt"
    )]
    Truncated { at: usize, wanted: &'static str },
    #[error("snapshot claims {len} {what} at byte {at}, but only {remaining} bytes follow; it is corrupt")]
    TooLong {
        at: usize,
        what: &'static str,
        len: u64,
        remaining: usize,
    },
    #[error(
        "invalid snapshot data at byte {at}: {what}; it is corrupt or from an incompatible build"
    )]
    Invalid { at: usize, what: String },
}

/// Appends encoded values to a growing buffer. Writing cannot fail.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    #[inline]
    pub fn put_u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    #[inline]
    pub fn put_bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    #[inline]
    pub fn put_u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    #[inline]
    pub fn put_u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// LEB128: seven bits per byte, low first, high bit set on all but the last.
    #[inline]
    pub fn put_uvar(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// Zigzag (0, -1, 1, -2, … → 0, 1, 2, 3, …) so small negatives stay short too.
    #[inline]
    pub fn put_ivar(&mut self, v: i64) {
        self.put_uvar(((v << 1) ^ (v >> 63)) as u64);
    }

    /// The IEEE bits, so NaN payloads, infinities and -0.0 come back bit for bit.
    #[inline]
    pub fn put_f64(&mut self, v: f64) {
        self.put_u64(v.to_bits());
    }

    /// Length (uvar) then the bytes.
    #[inline]
    pub fn put_bytes(&mut self, v: &[u8]) {
        self.put_uvar(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    #[inline]
    pub fn put_str(&mut self, v: &str) {
        self.put_bytes(v.as_bytes());
    }
}

/// Reads encoded values from a byte slice, front to back. Every getter either returns a
/// value and advances, or returns an error naming the offset it stopped at.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far: the offset the next getter reads from.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// An `Invalid` error at `at`, for decoders that find a well-formed but wrong value.
    pub fn invalid(&self, at: usize, what: impl Into<String>) -> DecodeError {
        DecodeError::Invalid {
            at,
            what: what.into(),
        }
    }

    /// Errs if bytes are left over: a snapshot holds exactly what its decoder reads.
    pub fn expect_end(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.invalid(
                self.pos,
                format!("{} bytes left over after the end", self.remaining()),
            ))
        }
    }

    #[inline]
    fn take(&mut self, n: usize, wanted: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                at: self.buf.len(),
                wanted,
            });
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    #[inline]
    fn take_array<const N: usize>(&mut self, wanted: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, wanted)?);
        Ok(out)
    }

    #[inline]
    pub fn get_u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take_array::<1>("a byte")?[0])
    }

    #[inline]
    pub fn get_bool(&mut self) -> Result<bool, DecodeError> {
        let at = self.pos;
        match self.take_array::<1>("a bool")?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.invalid(at, format!("bool byte {b:#04x}, not 0 or 1"))),
        }
    }

    #[inline]
    pub fn get_u32(&mut self) -> Result<u32, DecodeError> {
        self.take_array("a 4-byte integer").map(u32::from_le_bytes)
    }

    #[inline]
    pub fn get_u64(&mut self) -> Result<u64, DecodeError> {
        self.take_array("an 8-byte integer").map(u64::from_le_bytes)
    }

    #[inline]
    pub fn get_uvar(&mut self) -> Result<u64, DecodeError> {
        let at = self.pos;
        // Most varints in window state are one byte.
        match self.buf.get(at) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                return Ok(u64::from(b));
            }
            None => {
                return Err(DecodeError::Truncated {
                    at,
                    wanted: "a varint",
                })
            }
            Some(_) => {}
        }
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take_array::<1>("the rest of a varint")?[0];
            // The tenth byte holds only bit 63; anything more does not fit in a u64.
            if shift == 63 && b > 1 {
                return Err(self.invalid(at, "varint longer than 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.invalid(at, "varint longer than 64 bits"))
    }

    #[inline]
    pub fn get_ivar(&mut self) -> Result<i64, DecodeError> {
        let z = self.get_uvar()?;
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    #[inline]
    pub fn get_f64(&mut self) -> Result<f64, DecodeError> {
        self.take_array("an 8-byte real")
            .map(|b| f64::from_bits(u64::from_le_bytes(b)))
    }

    /// A length-prefixed byte string, borrowed from the input.
    #[inline]
    pub fn get_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let len = self.get_uvar()?;
        if len > self.remaining() as u64 {
            return Err(DecodeError::TooLong {
                at,
                what: "bytes",
                len,
                remaining: self.remaining(),
            });
        }
        self.take(len as usize, "bytes")
    }

    #[inline]
    pub fn get_str(&mut self) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        let bytes = self.get_bytes()?;
        std::str::from_utf8(bytes).map_err(|e| self.invalid(at, format!("string: {e}")))
    }

    /// A uvar item count, rejected unless `count` items of at least `min_item_bytes` each
    /// could fit in the bytes left. Decode every collection through this, then allocate.
    pub fn get_len(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let at = self.pos;
        let count = self.get_uvar()?;
        let per_item = min_item_bytes.max(1) as u64;
        let fits = count
            .checked_mul(per_item)
            .is_some_and(|need| need <= self.remaining() as u64);
        if !fits {
            return Err(DecodeError::TooLong {
                at,
                what: "items",
                len: count,
                remaining: self.remaining(),
            });
        }
        Ok(count as usize)
    }
}

/// A type with a snapshot encoding.
pub trait Encode {
    fn encode(&self, w: &mut Writer);
}

/// A type that decodes from its [`Encode`] form, checking everything it reads.
pub trait Decode: Sized {
    /// The fewest bytes any encoding of `Self` takes; collections pass it to
    /// [`Reader::get_len`] so that their counts are checked against the input size.
    const MIN_ENCODED_LEN: usize = 1;

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

macro_rules! primitive {
    ($t:ty, $put:ident, $get:ident, $min:expr) => {
        impl Encode for $t {
            #[inline]
            fn encode(&self, w: &mut Writer) {
                w.$put(*self);
            }
        }
        impl Decode for $t {
            const MIN_ENCODED_LEN: usize = $min;
            #[inline]
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                r.$get()
            }
        }
    };
}

primitive!(bool, put_bool, get_bool, 1);
primitive!(u8, put_u8, get_u8, 1);
primitive!(u64, put_uvar, get_uvar, 1);
primitive!(i64, put_ivar, get_ivar, 1);
primitive!(f64, put_f64, get_f64, 8);

impl Encode for str {
    fn encode(&self, w: &mut Writer) {
        w.put_str(self);
    }
}

impl Encode for String {
    fn encode(&self, w: &mut Writer) {
        w.put_str(self);
    }
}

impl Decode for String {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.get_str().map(String::from)
    }
}

impl Encode for Arc<str> {
    fn encode(&self, w: &mut Writer) {
        w.put_str(self);
    }
}

impl Decode for Arc<str> {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.get_str().map(Arc::from)
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, w: &mut Writer) {
        match self {
            None => w.put_u8(0),
            Some(v) => {
                w.put_u8(1);
                v.encode(w);
            }
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        match r.get_u8()? {
            0 => Ok(None),
            1 => T::decode(r).map(Some),
            b => Err(r.invalid(at, format!("option tag {b}, not 0 or 1"))),
        }
    }
}

/// Count then items; `Vec<T>` and `Box<[T]>` share this form.
impl<T: Encode> Encode for [T] {
    fn encode(&self, w: &mut Writer) {
        w.put_uvar(self.len() as u64);
        for item in self {
            item.encode(w);
        }
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, w: &mut Writer) {
        self.as_slice().encode(w);
    }
}

impl<T: Decode> Decode for Vec<T> {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.get_len(T::MIN_ENCODED_LEN)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(T::decode(r)?);
        }
        Ok(items)
    }
}

impl<T: Encode> Encode for Box<[T]> {
    fn encode(&self, w: &mut Writer) {
        (**self).encode(w);
    }
}

impl<T: Decode> Decode for Box<[T]> {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        // The Vec was allocated at its exact length, so this does not reallocate.
        Vec::decode(r).map(Vec::into_boxed_slice)
    }
}

impl<A: Encode, B: Encode> Encode for (A, B) {
    fn encode(&self, w: &mut Writer) {
        self.0.encode(w);
        self.1.encode(w);
    }
}

impl<A: Decode, B: Decode> Decode for (A, B) {
    const MIN_ENCODED_LEN: usize = A::MIN_ENCODED_LEN + B::MIN_ENCODED_LEN;

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok((A::decode(r)?, B::decode(r)?))
    }
}

// Value: one tag byte, then the payload. Tags are part of the format: never renumber.
const VALUE_NULL: u8 = 0;
const VALUE_BOOL: u8 = 1;
const VALUE_LONG: u8 = 2;
const VALUE_REAL: u8 = 3;
const VALUE_DATETIME: u8 = 4;
const VALUE_TIMESPAN: u8 = 5;
const VALUE_STR: u8 = 6;
const VALUE_DYNAMIC: u8 = 7;

impl Encode for Value {
    fn encode(&self, w: &mut Writer) {
        match self {
            Value::Null => w.put_u8(VALUE_NULL),
            Value::Bool(b) => {
                w.put_u8(VALUE_BOOL);
                w.put_bool(*b);
            }
            Value::Long(v) => {
                w.put_u8(VALUE_LONG);
                w.put_ivar(*v);
            }
            Value::Real(v) => {
                w.put_u8(VALUE_REAL);
                w.put_f64(*v);
            }
            // Present-day ticks are about 2^59, which zigzag makes a 9-byte varint.
            Value::DateTime(t) => {
                w.put_u8(VALUE_DATETIME);
                w.put_u64(*t as u64);
            }
            Value::TimeSpan(t) => {
                w.put_u8(VALUE_TIMESPAN);
                w.put_ivar(*t);
            }
            Value::Str(s) => {
                w.put_u8(VALUE_STR);
                w.put_str(s);
            }
            Value::Dynamic(d) => {
                w.put_u8(VALUE_DYNAMIC);
                put_json(w, d);
            }
        }
    }
}

impl Decode for Value {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        Ok(match r.get_u8()? {
            VALUE_NULL => Value::Null,
            VALUE_BOOL => Value::Bool(r.get_bool()?),
            VALUE_LONG => Value::Long(r.get_ivar()?),
            VALUE_REAL => Value::Real(r.get_f64()?),
            VALUE_DATETIME => Value::DateTime(r.get_u64()? as i64),
            VALUE_TIMESPAN => Value::TimeSpan(r.get_ivar()?),
            VALUE_STR => Value::Str(Arc::from(r.get_str()?)),
            VALUE_DYNAMIC => Value::Dynamic(Arc::new(get_json(r, 0)?)),
            tag => return Err(r.invalid(at, format!("unknown value tag {tag}"))),
        })
    }
}

// Dynamic values: the JSON tree itself, a tag per node. Not JSON text, because text does not
// round-trip: serde_json is built without `float_roundtrip` (it would slow the hot parser), so
// about a third of floats would come back one ULP off, and a dynamic group key would restore
// as another series. Numbers keep serde_json's own three kinds. Never renumber.
const JSON_NULL: u8 = 0;
const JSON_FALSE: u8 = 1;
const JSON_TRUE: u8 = 2;
const JSON_U64: u8 = 3;
const JSON_I64: u8 = 4;
const JSON_F64: u8 = 5;
const JSON_STR: u8 = 6;
const JSON_ARRAY: u8 = 7;
const JSON_OBJECT: u8 = 8;

/// The deepest nesting of arrays and objects a decoded dynamic value may have, so that a
/// corrupt snapshot cannot recurse the decoder off the stack. serde_json's parser stops
/// sooner (a test pins it), so every dynamic value hubwatch holds fits; that same bound is
/// why the encoder may recurse unchecked.
const MAX_JSON_DEPTH: usize = 128;

fn put_json(w: &mut Writer, v: &serde_json::Value) {
    use serde_json::Value as J;
    match v {
        J::Null => w.put_u8(JSON_NULL),
        J::Bool(b) => w.put_u8(if *b { JSON_TRUE } else { JSON_FALSE }),
        // In this order, so that integers stay integers, exactly.
        J::Number(n) => {
            if let Some(u) = n.as_u64() {
                w.put_u8(JSON_U64);
                w.put_uvar(u);
            } else if let Some(i) = n.as_i64() {
                w.put_u8(JSON_I64);
                w.put_ivar(i);
            } else {
                w.put_u8(JSON_F64);
                // Always `Some` without serde_json's `arbitrary_precision`. Were that to
                // change, NaN makes the decoder refuse the value instead of altering it.
                w.put_f64(n.as_f64().unwrap_or(f64::NAN));
            }
        }
        J::String(s) => {
            w.put_u8(JSON_STR);
            w.put_str(s);
        }
        J::Array(items) => {
            w.put_u8(JSON_ARRAY);
            w.put_uvar(items.len() as u64);
            for item in items {
                put_json(w, item);
            }
        }
        // In the map's own order, so that a restored map encodes to the same bytes.
        J::Object(map) => {
            w.put_u8(JSON_OBJECT);
            w.put_uvar(map.len() as u64);
            for (key, value) in map {
                w.put_str(key);
                put_json(w, value);
            }
        }
    }
}

/// One JSON node whose containers are nested `depth` deep.
fn get_json(r: &mut Reader<'_>, depth: usize) -> Result<serde_json::Value, DecodeError> {
    use serde_json::Value as J;
    let at = r.position();
    Ok(match r.get_u8()? {
        JSON_NULL => J::Null,
        JSON_FALSE => J::Bool(false),
        JSON_TRUE => J::Bool(true),
        JSON_U64 => J::from(r.get_uvar()?),
        JSON_I64 => J::from(r.get_ivar()?),
        JSON_F64 => {
            let x = r.get_f64()?;
            let n = serde_json::Number::from_f64(x)
                .ok_or_else(|| r.invalid(at, format!("dynamic number {x} is not finite")))?;
            J::Number(n)
        }
        JSON_STR => J::String(r.get_str()?.to_owned()),
        JSON_ARRAY | JSON_OBJECT if depth == MAX_JSON_DEPTH => {
            return Err(r.invalid(
                at,
                format!("dynamic value nested deeper than {MAX_JSON_DEPTH}"),
            ))
        }
        // Both grow as items decode instead of reserving for the count: nested containers
        // could each claim all the bytes left, and reserving for each would multiply them.
        JSON_ARRAY => {
            // An item takes a byte at least: its tag.
            let n = r.get_len(1)?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(get_json(r, depth + 1)?);
            }
            J::Array(items)
        }
        JSON_OBJECT => {
            // An entry takes two bytes at least: its key's length and its value's tag.
            let n = r.get_len(2)?;
            let mut map = serde_json::Map::new();
            for _ in 0..n {
                let key_at = r.position();
                let key = r.get_str()?;
                if map
                    .insert(key.to_owned(), get_json(r, depth + 1)?)
                    .is_some()
                {
                    return Err(r.invalid(key_at, format!("dynamic object repeats key {key:?}")));
                }
            }
            J::Object(map)
        }
        tag => return Err(r.invalid(at, format!("unknown dynamic value tag {tag}"))),
    })
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
