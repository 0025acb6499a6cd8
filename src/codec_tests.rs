//! Tests of the snapshot codec: primitives at their edges, every value, aggregate state and
//! sketch round-tripping to the very same bytes, dynamic values exact through a restore, and
//! hostile input (truncated, damaged, huge counts, deep nesting) failing cleanly.

use super::*;

use crate::rng::SplitMix64 as Rng;
// The layouts of aggregate states and sketches (window/encode.rs) are tested here too, with
// the primitives they are made of.
use crate::window::agg::AggState;
use crate::window::encode::{PHASE_EXACT, PHASE_SKETCH};
use crate::window::sketch::{hash64, DistinctCount, QuantileParts, Quantiles};

fn bytes_of<T: Encode + ?Sized>(v: &T) -> Vec<u8> {
    let mut w = Writer::new();
    v.encode(&mut w);
    w.into_inner()
}

fn decode_all<T: Decode>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut r = Reader::new(bytes);
    let v = T::decode(&mut r)?;
    r.expect_end()?;
    Ok(v)
}

/// Decodes `v`'s bytes and checks that the result encodes to the very same bytes: a
/// lost or altered field anywhere changes them.
fn round_trip<T: Encode + Decode>(v: &T) -> T {
    let bytes = bytes_of(v);
    let back: T = decode_all(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bytes_of(&back), bytes);
    back
}

fn dcount(precision: u8, n: u64) -> DistinctCount {
    let mut d = DistinctCount::new(precision);
    for i in 0..n {
        d.insert_hash(hash64(&i.to_le_bytes()));
    }
    d
}

/// Values over many magnitudes of both signs, plus zeros: many buckets in both stores.
fn quantiles(n: usize, seed: u64) -> Quantiles {
    let mut rng = Rng(seed);
    let mut q = Quantiles::new();
    for i in 0..n {
        let x = (3.0 * rng.normal()).exp();
        q.insert(match i % 7 {
            0 => -x,
            1 => 0.0,
            _ => x,
        });
    }
    q
}

fn every_value() -> Vec<Value> {
    let json = serde_json::json!({
        "a": [1, -2.5, null, true, {"b": "ü"}],
        "": {},
        "exact": [u64::MAX, i64::MIN, 0.1 + 0.2, -0.0, 5e-324],
    });
    vec![
        Value::Null,
        Value::Bool(false),
        Value::Bool(true),
        Value::Long(0),
        Value::Long(i64::MIN),
        Value::Long(i64::MAX),
        Value::Real(f64::NAN),
        Value::Real(-0.0),
        Value::Real(f64::NEG_INFINITY),
        Value::Real(1.5e-310),
        Value::DateTime(638_500_000_000_000_000),
        Value::DateTime(-1),
        Value::TimeSpan(-36_000_000_000),
        Value::str(""),
        Value::str("Zürich ✓ 日本 🦀"),
        Value::Dynamic(Arc::new(json)),
        Value::Dynamic(Arc::new(serde_json::json!("just a string"))),
    ]
}

fn every_agg_state() -> Vec<AggState> {
    vec![
        AggState::Count(0),
        AggState::Count(123_456_789),
        AggState::SumLong(-42),
        AggState::SumReal(f64::NAN),
        AggState::Avg {
            sum: -0.0,
            count: u64::MAX,
        },
        AggState::Min(None),
        AggState::Min(Some(Value::str("alpha"))),
        AggState::Max(Some(Value::Real(f64::INFINITY))),
        AggState::DCount(Box::new(dcount(12, 10))),
        AggState::DCount(Box::new(dcount(6, 1_000))),
        AggState::Arg(Box::default()),
        AggState::Arg(Box::new(crate::window::agg::Arg {
            best: Some(Value::Long(7)),
            carried: vec![Value::str("x"), Value::Null, Value::TimeSpan(5)],
        })),
        AggState::Percentile(Box::new(quantiles(20, 1))),
        AggState::Percentile(Box::new(quantiles(500, 2))),
    ]
}

#[test]
fn primitives_round_trip_at_their_edges() {
    let mut w = Writer::with_capacity(64);
    let uvars = [
        0,
        1,
        127,
        128,
        16_383,
        16_384,
        u64::from(u32::MAX),
        u64::MAX,
    ];
    let ivars = [0, -1, 1, -64, 64, i64::MIN, i64::MAX];
    let reals = [
        f64::NAN,
        -f64::NAN,
        -0.0,
        0.0,
        f64::INFINITY,
        f64::MIN_POSITIVE,
    ];
    for &v in &uvars {
        w.put_uvar(v);
    }
    for &v in &ivars {
        w.put_ivar(v);
    }
    for &v in &reals {
        w.put_f64(v);
    }
    w.put_u8(0xab);
    w.put_bool(true);
    w.put_u32(0xdead_beef);
    w.put_u64(u64::MAX - 1);
    w.put_bytes(&[0, 255]);
    w.put_str("");
    w.put_str("ünï");
    let bytes = w.into_inner();
    let mut r = Reader::new(&bytes);
    for &v in &uvars {
        assert_eq!(r.get_uvar().unwrap(), v);
    }
    for &v in &ivars {
        assert_eq!(r.get_ivar().unwrap(), v);
    }
    for &v in &reals {
        assert_eq!(r.get_f64().unwrap().to_bits(), v.to_bits());
    }
    assert_eq!(r.get_u8().unwrap(), 0xab);
    assert!(r.get_bool().unwrap());
    assert_eq!(r.get_u32().unwrap(), 0xdead_beef);
    assert_eq!(r.get_u64().unwrap(), u64::MAX - 1);
    assert_eq!(r.get_bytes().unwrap(), &[0, 255]);
    assert_eq!(r.get_str().unwrap(), "");
    assert_eq!(r.get_str().unwrap(), "ünï");
    assert!(r.is_empty());
    assert_eq!(r.position(), bytes.len());
    // Sizes are the point of varints.
    assert_eq!(bytes_of(&127u64).len(), 1);
    assert_eq!(bytes_of(&128u64).len(), 2);
    assert_eq!(bytes_of(&u64::MAX).len(), 10);
    assert_eq!(bytes_of(&-64i64).len(), 1);
    assert_eq!(bytes_of(&i64::MIN).len(), 10);
}

#[test]
fn generic_impls_round_trip() {
    round_trip(&Some((String::from("k"), 3.25f64)));
    round_trip(&None::<u8>);
    round_trip(&vec![(true, -5i64), (false, 5i64)]);
    let arcs: Box<[Arc<str>]> = vec![Arc::from("a"), Arc::from("")].into_boxed_slice();
    assert_eq!(round_trip(&arcs), arcs);
    let nested: Vec<Vec<u64>> = vec![vec![], vec![1, u64::MAX]];
    assert_eq!(round_trip(&nested), nested);
}

#[test]
fn every_value_round_trips_bit_exactly() {
    for v in every_value() {
        let back = round_trip(&v);
        assert_eq!(back, v, "{v:?}");
        if let (Value::Real(a), Value::Real(b)) = (&v, &back) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
    }
    // Long and TimeSpan share an encoding but not a tag.
    assert_ne!(bytes_of(&Value::Long(5)), bytes_of(&Value::TimeSpan(5)));
}

/// The bytes of a `Value::Dynamic` whose JSON nodes `body` writes.
fn dynamic_bytes(body: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::new();
    w.put_u8(VALUE_DYNAMIC);
    body(&mut w);
    w.into_inner()
}

fn dynamic(json: serde_json::Value) -> Value {
    Value::Dynamic(Arc::new(json))
}

/// `null` inside `depth` nested arrays.
fn nested_arrays(depth: usize) -> serde_json::Value {
    (0..depth).fold(serde_json::Value::Null, |v, _| serde_json::json!([v]))
}

#[test]
fn dynamic_values_are_checked_json() {
    let bad = [
        // Cut short inside an array.
        dynamic_bytes(|w| {
            w.put_u8(JSON_ARRAY);
            w.put_uvar(2);
            w.put_u8(JSON_TRUE);
        }),
        dynamic_bytes(|w| w.put_u8(9)),
        dynamic_bytes(|w| {
            w.put_u8(JSON_F64);
            w.put_f64(f64::NAN);
        }),
        dynamic_bytes(|w| {
            w.put_u8(JSON_F64);
            w.put_f64(f64::NEG_INFINITY);
        }),
        dynamic_bytes(|w| {
            w.put_u8(JSON_OBJECT);
            w.put_uvar(2);
            for _ in 0..2 {
                w.put_str("k");
                w.put_u8(JSON_NULL);
            }
        }),
        dynamic_bytes(|w| {
            w.put_u8(JSON_OBJECT);
            w.put_uvar(1);
            w.put_bytes(&[0xc3, 0x28]);
            w.put_u8(JSON_NULL);
        }),
    ];
    for bytes in &bad {
        let err = decode_all::<Value>(bytes).unwrap_err();
        assert!(!err.to_string().is_empty());
    }
    let err = decode_all::<Value>(&bad[2]).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid { at: 1, .. }), "{err}");
    assert!(err.to_string().contains("not finite"), "{err}");
    let err = decode_all::<Value>(&bad[4]).unwrap_err();
    assert!(err.to_string().contains("repeats key"), "{err}");
}

#[test]
fn dynamic_floats_round_trip_exactly_where_text_does_not() {
    let mut rng = Rng(0x5eed_f10a);
    let mut floats = Vec::with_capacity(100_000);
    while floats.len() < 100_000 {
        let x = f64::from_bits(rng.next_u64());
        if x.is_finite() {
            floats.push(x);
        }
    }
    // The bug this encoding fixes: without `float_roundtrip`, text loses some of them.
    let text_lost = floats
        .iter()
        .filter(|&&x| {
            let text = serde_json::Value::from(x).to_string();
            serde_json::from_str::<f64>(&text).ok().map(f64::to_bits) != Some(x.to_bits())
        })
        .count();
    assert!(text_lost > 1_000, "text lost only {text_lost} floats");

    let mut values = vec![dynamic(serde_json::Value::from(floats[0]))];
    for (i, chunk) in floats.chunks(1_000).enumerate() {
        let array: Vec<serde_json::Value> = chunk.iter().map(|&x| x.into()).collect();
        let object: serde_json::Map<String, serde_json::Value> = chunk
            .iter()
            .enumerate()
            .map(|(j, &x)| (format!("{x}#{j}"), serde_json::json!([{ "x": x }, i])))
            .collect();
        values.push(dynamic(array.into()));
        values.push(dynamic(serde_json::json!({ "chunk": i, "o": object })));
    }
    for v in &values {
        // `round_trip` also checks that the restored value encodes to the same bytes.
        assert_eq!(&round_trip(v), v);
    }
    // Equality holds bit for bit (`==` on JSON numbers would let -0.0 pass for 0.0).
    let bytes = bytes_of(&dynamic(floats.iter().copied().collect()));
    let Value::Dynamic(back) = decode_all::<Value>(&bytes).unwrap() else {
        panic!("should be dynamic")
    };
    let back = back.as_array().unwrap();
    assert!(back
        .iter()
        .zip(&floats)
        .all(|(b, x)| b.as_f64().map(f64::to_bits) == Some(x.to_bits())));
}

#[test]
fn dynamic_integers_stay_exact_integers() {
    let big = u64::MAX - 1;
    let past_i64 = i64::MAX as u64 + 1;
    // Not representable as f64: a detour through floats would change it.
    let odd = (1i64 << 53) + 1;
    let json = serde_json::json!([big, past_i64, i64::MIN, -odd, odd, 0, -1, 1.0, -0.0]);
    let Value::Dynamic(back) = round_trip(&dynamic(json.clone())) else {
        panic!("should be dynamic")
    };
    assert_eq!(*back, json);
    let back = back.as_array().unwrap();
    assert_eq!(back[0].as_u64(), Some(big));
    assert_eq!(back[1].as_u64(), Some(past_i64));
    assert_eq!(back[2].as_i64(), Some(i64::MIN));
    assert_eq!(back[3].as_i64(), Some(-odd));
    assert_eq!(back[4].as_u64(), Some(odd as u64));
    assert!(back[5].is_u64() && back[6].is_i64());
    // Integral floats stay floats, and -0.0 keeps its sign.
    assert!(back[7].is_f64() && back[8].is_f64());
    assert_eq!(
        back[8].as_f64().map(f64::to_bits),
        Some((-0.0f64).to_bits())
    );
    // Each number takes its own tag.
    assert_eq!(
        bytes_of(&dynamic(serde_json::json!(1))),
        [VALUE_DYNAMIC, JSON_U64, 1]
    );
    assert_eq!(
        bytes_of(&dynamic(serde_json::json!(-1))),
        [VALUE_DYNAMIC, JSON_I64, 1]
    );
    assert_eq!(bytes_of(&dynamic(serde_json::json!(1.0)))[1], JSON_F64);
}

#[test]
fn dynamic_nesting_is_limited() {
    // Everything serde_json parses (it stops short of 128 levels) decodes again.
    let parses = |depth: usize| {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        serde_json::from_str::<serde_json::Value>(&text).is_ok()
    };
    let deepest_parsed = (1..=MAX_JSON_DEPTH + 1)
        .take_while(|&d| parses(d))
        .last()
        .unwrap();
    assert!(deepest_parsed <= MAX_JSON_DEPTH, "{deepest_parsed}");
    let deepest = dynamic(nested_arrays(MAX_JSON_DEPTH));
    assert_eq!(round_trip(&deepest), deepest);
    // One level more encodes (the encoder cannot fail) but does not decode.
    let too_deep = bytes_of(&dynamic(nested_arrays(MAX_JSON_DEPTH + 1)));
    let err = decode_all::<Value>(&too_deep).unwrap_err();
    assert!(err.to_string().contains("nested deeper"), "{err}");
    let too_deep_object =
        (0..=MAX_JSON_DEPTH).fold(serde_json::json!(1), |v, _| serde_json::json!({ "k": v }));
    assert!(decode_all::<Value>(&bytes_of(&dynamic(too_deep_object))).is_err());
    // Far deeper: an error, not a stack overflow. (Bytes only: such a value would overflow
    // the stack when dropped.)
    let far = dynamic_bytes(|w| {
        for _ in 0..100_000 {
            w.put_u8(JSON_ARRAY);
            w.put_uvar(1);
        }
        w.put_u8(JSON_NULL);
    });
    assert!(matches!(
        decode_all::<Value>(&far),
        Err(DecodeError::Invalid { .. })
    ));
}

#[test]
fn hostile_dynamic_counts_fail_before_allocating() {
    for tag in [JSON_ARRAY, JSON_OBJECT] {
        let huge = dynamic_bytes(|w| {
            w.put_u8(tag);
            w.put_uvar(u64::MAX);
            w.put_u64(0);
        });
        assert!(matches!(
            decode_all::<Value>(&huge),
            Err(DecodeError::TooLong {
                at: 2,
                len: u64::MAX,
                ..
            })
        ));
    }
    // Five entries of two bytes at least cannot fit in nine.
    let object = dynamic_bytes(|w| {
        w.put_u8(JSON_OBJECT);
        w.put_uvar(5);
        w.put_bytes(&[0; 8]);
    });
    assert!(matches!(
        decode_all::<Value>(&object),
        Err(DecodeError::TooLong { len: 5, .. })
    ));
    // Nested arrays that each claim nearly all the bytes left: every count passes its check,
    // and nothing is reserved for it (else 128 times 32 MB), so the input fails once cut short.
    let claims = dynamic_bytes(|w| {
        for level in 0..MAX_JSON_DEPTH as u64 {
            w.put_u8(JSON_ARRAY);
            w.put_uvar(1_000_000 - 3 * level);
        }
        w.put_u8(JSON_STR);
        w.put_bytes(&[b'x'; 1_000_000]);
    });
    assert!(matches!(
        decode_all::<Value>(&claims),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn every_agg_state_round_trips() {
    for state in every_agg_state() {
        let back = round_trip(&state);
        match (&state, &back) {
            (AggState::DCount(a), AggState::DCount(b)) => assert_eq!(a, b),
            (AggState::Percentile(a), AggState::Percentile(b)) => assert_eq!(a, b),
            _ => assert_eq!(format!("{state:?}"), format!("{back:?}")),
        }
    }
}

#[test]
fn sketches_round_trip_in_both_phases() {
    for p in [
        DistinctCount::MIN_PRECISION,
        10,
        DistinctCount::DEFAULT_PRECISION,
        DistinctCount::MAX_PRECISION,
    ] {
        for n in [0, 1, DistinctCount::EXACT_LIMIT as u64, 5_000] {
            let d = dcount(p, n);
            assert_eq!(d.is_exact(), n <= DistinctCount::EXACT_LIMIT as u64);
            assert_eq!(round_trip(&d), d, "p={p} n={n}");
        }
    }
    let exact = Quantiles::new();
    assert_eq!(round_trip(&exact), exact);
    let mut odd = quantiles(50, 3);
    for x in [-0.0, f64::INFINITY, f64::NEG_INFINITY, 5e-324] {
        odd.insert(x);
    }
    assert!(odd.is_exact());
    assert_eq!(round_trip(&odd), odd);
    for n in [Quantiles::EXACT_LIMIT + 1, 20_000] {
        let q = quantiles(n, 4);
        assert!(!q.is_exact());
        let back = round_trip(&q);
        assert_eq!(back, q);
        assert_eq!(back.quantile(99.0), q.quantile(99.0));
    }
    // Bucket steps keep a full histogram small: about 2 bytes per bucket plus the header.
    let q = quantiles(20_000, 5);
    let QuantileParts::Histogram(h) = q.parts() else {
        panic!("should be a histogram")
    };
    let buckets = h.positive.len() + h.negative.len();
    assert!(bytes_of(&q).len() < 40 + 3 * buckets, "{buckets} buckets");
}

#[test]
fn broken_sketch_invariants_are_errors() {
    fn dcount_bytes(precision: u8, phase: u8, body: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::new();
        w.put_u8(precision);
        w.put_u8(phase);
        body(&mut w);
        w.into_inner()
    }
    let bad_dcounts = [
        dcount_bytes(3, PHASE_EXACT, |w| w.put_uvar(0)),
        dcount_bytes(17, PHASE_EXACT, |w| w.put_uvar(0)),
        dcount_bytes(12, 2, |w| w.put_uvar(0)),
        dcount_bytes(12, PHASE_EXACT, |w| {
            w.put_uvar(2);
            w.put_u64(9);
            w.put_u64(9);
        }),
        dcount_bytes(4, PHASE_SKETCH, |w| w.put_bytes(&[0; 15])),
        dcount_bytes(4, PHASE_SKETCH, |w| {
            let mut registers = [1u8; 16];
            registers[3] = 62;
            w.put_bytes(&registers);
        }),
    ];
    for bytes in &bad_dcounts {
        let err = decode_all::<DistinctCount>(bytes).unwrap_err();
        assert!(matches!(err, DecodeError::Invalid { .. }), "{err}");
    }
    // The largest legal rank at p = 4 is 61.
    let ok = dcount_bytes(4, PHASE_SKETCH, |w| w.put_bytes(&[61; 16]));
    assert!(decode_all::<DistinctCount>(&ok).is_ok());

    fn histogram_bytes(count: u64, min: f64, positive: &[(i64, u64)]) -> Vec<u8> {
        let mut w = Writer::new();
        w.put_u8(PHASE_SKETCH);
        w.put_uvar(count);
        w.put_uvar(1);
        w.put_f64(min);
        w.put_f64(10.0);
        w.put_uvar(positive.len() as u64);
        for &(index_or_step, n) in positive {
            w.put_ivar(index_or_step);
            w.put_uvar(n);
        }
        w.put_uvar(0);
        w.into_inner()
    }
    // Raw ivars for the test: a first index of 5 is ivar 5; a following step of 1 is
    // uvar 1, written here as ivar(-1) (zigzag 1).
    assert!(decode_all::<Quantiles>(&histogram_bytes(4, 0.0, &[(5, 2), (-1, 1)])).is_ok());
    let bad_quantiles = [
        histogram_bytes(5, 0.0, &[(5, 2), (-1, 1)]),
        histogram_bytes(4, f64::NAN, &[(5, 2), (-1, 1)]),
        histogram_bytes(3, 0.0, &[(5, 2), (-1, 0)]),
        histogram_bytes(4, 0.0, &[(5, 2), (0, 1)]),
        histogram_bytes(1, 0.0, &[(5, u64::MAX), (-1, 2)]),
        histogram_bytes(4, 0.0, &[(i64::from(i32::MAX) + 1, 3)]),
    ];
    for bytes in &bad_quantiles {
        let err = decode_all::<Quantiles>(bytes).unwrap_err();
        assert!(matches!(err, DecodeError::Invalid { .. }), "{err}");
    }
    let unsorted = [PHASE_EXACT, 2]
        .into_iter()
        .chain(2.0f64.to_le_bytes())
        .chain(1.0f64.to_le_bytes())
        .collect::<Vec<u8>>();
    assert!(decode_all::<Quantiles>(&unsorted).is_err());
}

#[test]
fn malformed_primitives_are_errors() {
    let overlong = [0xff; 11];
    assert!(Reader::new(&overlong).get_uvar().is_err());
    let too_big = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
    assert!(Reader::new(&too_big).get_uvar().is_err());
    let mut max = too_big;
    max[9] = 0x01;
    assert_eq!(Reader::new(&max).get_uvar().unwrap(), u64::MAX);
    assert!(Reader::new(&[2]).get_bool().is_err());
    assert!(decode_all::<Option<u8>>(&[2, 0]).is_err());
    assert!(Reader::new(&[2, 0xc3, 0x28]).get_str().is_err());
    assert!(decode_all::<Value>(&[200]).is_err());
    assert!(decode_all::<AggState>(&[200]).is_err());
    let err = decode_all::<Value>(&[VALUE_NULL, 0]).unwrap_err();
    assert!(err.to_string().contains("left over"), "{err}");
    let err = Reader::new(&[]).get_f64().unwrap_err();
    assert_eq!(
        err.to_string(),
        "snapshot ends at byte 0 where an 8-byte real was expected; it was cut short or is corrupt"
    );
}

#[test]
fn huge_lengths_fail_before_allocating() {
    let mut w = Writer::new();
    w.put_uvar(u64::MAX);
    w.put_u64(0);
    let huge = w.into_inner();
    assert!(matches!(
        Reader::new(&huge).get_bytes(),
        Err(DecodeError::TooLong { len: u64::MAX, .. })
    ));
    assert!(decode_all::<String>(&huge).is_err());
    assert!(decode_all::<Vec<u8>>(&huge).is_err());
    assert!(decode_all::<Box<[AggState]>>(&huge).is_err());
    // The count alone fits, the count times the item size does not.
    let mut w = Writer::new();
    w.put_uvar(3);
    w.put_bytes(&[0; 20]);
    let three_reals = w.into_inner();
    assert!(decode_all::<Vec<f64>>(&three_reals).is_err());
    assert!(Reader::new(&three_reals).get_len(usize::MAX).is_err());
    assert_eq!(Reader::new(&three_reals).get_len(7).unwrap(), 3);
    assert_eq!(Reader::new(&three_reals).get_len(0).unwrap(), 3);
}

type Series = (Box<[Value]>, Box<[AggState]>);

/// A handful of series holding every value and state kind, as one snapshot would.
fn sample_snapshot() -> Vec<Series> {
    let states = every_agg_state();
    let mut hll = states;
    hll.push(AggState::DCount(Box::new(dcount(8, 300))));
    vec![
        (every_value().into_boxed_slice(), Box::new([])),
        (
            vec![Value::str("host-1"), Value::Long(3)].into_boxed_slice(),
            hll.into_boxed_slice(),
        ),
        (Box::new([]), Box::new([AggState::Count(1)])),
    ]
}

/// What a restored sketch goes through next: inserts, merges across phases and
/// precisions, queries. None of it may panic, whatever passed the decoder.
fn exercise(series: &[Series]) {
    for state in series.iter().flat_map(|(_, states)| states.iter()) {
        match state {
            AggState::DCount(d) => {
                let mut d = (**d).clone();
                for i in 0..100u64 {
                    d.insert_hash(hash64(&i.to_le_bytes()));
                }
                d.merge(&dcount(DistinctCount::MIN_PRECISION, 500));
                d.merge(&d.clone());
                let _ = d.estimate();
            }
            AggState::Percentile(q) => {
                let mut q = (**q).clone();
                q.merge(&quantiles(300, 9));
                q.insert(-1e300);
                for p in [0.0, 1.0, 50.0, 99.0, 100.0] {
                    let _ = q.quantile(p);
                }
            }
            _ => {}
        }
    }
}

#[test]
fn truncated_input_is_always_an_error() {
    let bytes = bytes_of(&sample_snapshot());
    assert!(bytes.len() > 1_000, "{}", bytes.len());
    let whole: Vec<Series> = decode_all(&bytes).unwrap();
    exercise(&whole);
    for end in 0..bytes.len() {
        // Plain decode, no end check: a prefix must fail on its own.
        let mut r = Reader::new(&bytes[..end]);
        assert!(
            Vec::<Series>::decode(&mut r).is_err(),
            "prefix of {end} bytes"
        );
    }
}

#[test]
fn damaged_bytes_never_panic() {
    let bytes = bytes_of(&sample_snapshot());
    let (mut ok, mut err) = (0, 0);
    let mut damaged = bytes.clone();
    for at in 0..bytes.len() {
        let b = bytes[at];
        for replacement in [0x00, 0xff, b ^ 0x55] {
            damaged[at] = replacement;
            match decode_all::<Vec<Series>>(&damaged) {
                Ok(series) => {
                    ok += 1;
                    exercise(&series);
                }
                Err(e) => {
                    err += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        damaged[at] = b;
    }
    // Both outcomes happen: payload bytes change values, structure bytes break decoding.
    assert!(ok > 0 && err > 0, "ok={ok} err={err}");
    // Random runs of garbage, too.
    let mut rng = Rng(7);
    for _ in 0..2_000 {
        let len = rng.below(64) as usize;
        let garbage: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if let Ok(series) = decode_all::<Vec<Series>>(&garbage) {
            exercise(&series);
        }
    }
}
