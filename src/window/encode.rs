//! How aggregate states and sketches are laid out in a snapshot, with the primitives of
//! [`crate::codec`]. Sketches are rebuilt through their own checked constructors, so a
//! decoded sketch always holds its invariants.

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};

use super::agg::{AggState, States};
use super::sketch::{DistinctCount, DistinctParts, HistogramParts, QuantileParts, Quantiles};

// AggState: one tag byte, then the fields. Never renumber.
const AGG_COUNT: u8 = 0;
const AGG_SUM_LONG: u8 = 1;
const AGG_SUM_REAL: u8 = 2;
const AGG_AVG: u8 = 3;
const AGG_MIN: u8 = 4;
const AGG_MAX: u8 = 5;
const AGG_DCOUNT: u8 = 6;
const AGG_ARG: u8 = 7;
const AGG_PERCENTILE: u8 = 8;
const AGG_SPREAD: u8 = 9;
const AGG_COLLECT: u8 = 10;

impl Encode for AggState {
    fn encode(&self, w: &mut Writer) {
        match self {
            AggState::Count(n) => {
                w.put_u8(AGG_COUNT);
                w.put_ivar(*n);
            }
            AggState::SumLong(s) => {
                w.put_u8(AGG_SUM_LONG);
                w.put_ivar(*s);
            }
            AggState::SumReal(s) => {
                w.put_u8(AGG_SUM_REAL);
                w.put_f64(*s);
            }
            AggState::Avg { sum, count } => {
                w.put_u8(AGG_AVG);
                w.put_f64(*sum);
                w.put_uvar(*count);
            }
            AggState::Min(v) => {
                w.put_u8(AGG_MIN);
                v.encode(w);
            }
            AggState::Max(v) => {
                w.put_u8(AGG_MAX);
                v.encode(w);
            }
            AggState::DCount(d) => {
                w.put_u8(AGG_DCOUNT);
                d.encode(w);
            }
            AggState::Arg(a) => {
                w.put_u8(AGG_ARG);
                a.best.encode(w);
                a.carried.encode(w);
            }
            AggState::Percentile(q) => {
                w.put_u8(AGG_PERCENTILE);
                q.encode(w);
            }
            AggState::Collect(items) => {
                w.put_u8(AGG_COLLECT);
                items.encode(w);
            }
            AggState::Spread { n, mean, m2 } => {
                w.put_u8(AGG_SPREAD);
                w.put_uvar(*n);
                w.put_f64(*mean);
                w.put_f64(*m2);
            }
        }
    }
}

impl Decode for AggState {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        Ok(match r.get_u8()? {
            AGG_COUNT => AggState::Count(r.get_ivar()?),
            AGG_SUM_LONG => AggState::SumLong(r.get_ivar()?),
            AGG_SUM_REAL => AggState::SumReal(r.get_f64()?),
            AGG_AVG => AggState::Avg {
                sum: r.get_f64()?,
                count: r.get_uvar()?,
            },
            AGG_MIN => AggState::Min(Option::decode(r)?),
            AGG_MAX => AggState::Max(Option::decode(r)?),
            AGG_DCOUNT => AggState::DCount(Box::new(DistinctCount::decode(r)?)),
            AGG_ARG => AggState::Arg(Box::new(super::agg::Arg {
                best: Option::decode(r)?,
                carried: Vec::decode(r)?,
            })),
            AGG_PERCENTILE => AggState::Percentile(Box::new(Quantiles::decode(r)?)),
            AGG_COLLECT => AggState::Collect(Box::new(Vec::decode(r)?)),
            AGG_SPREAD => AggState::Spread {
                n: r.get_uvar()?,
                mean: r.get_f64()?,
                m2: r.get_f64()?,
            },
            tag => return Err(r.invalid(at, format!("unknown aggregate tag {tag}"))),
        })
    }
}

// States: as a slice of them (a count, then each), however they are held.
impl Encode for States {
    fn encode(&self, w: &mut Writer) {
        (**self).encode(w);
    }
}

impl Decode for States {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Vec::decode(r).map(States::from)
    }
}

// DistinctCount: precision, a phase byte, then the sorted hashes (fixed 8 bytes: they are
// uniformly spread, so a varint would be longer) or the registers as a byte string.
pub(crate) const PHASE_EXACT: u8 = 0;
pub(crate) const PHASE_SKETCH: u8 = 1;

impl Encode for DistinctCount {
    fn encode(&self, w: &mut Writer) {
        w.put_u8(self.precision());
        match self.parts() {
            DistinctParts::Exact(hashes) => {
                w.put_u8(PHASE_EXACT);
                w.put_uvar(hashes.len() as u64);
                for &h in hashes {
                    w.put_u64(h);
                }
            }
            DistinctParts::Registers(registers) => {
                w.put_u8(PHASE_SKETCH);
                w.put_bytes(registers);
            }
        }
    }
}

impl Decode for DistinctCount {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        let precision = r.get_u8()?;
        let phase_at = r.position();
        let built = match r.get_u8()? {
            PHASE_EXACT => {
                let n = r.get_len(8)?;
                let mut hashes = Vec::with_capacity(n);
                for _ in 0..n {
                    hashes.push(r.get_u64()?);
                }
                DistinctCount::from_hashes(precision, hashes)
            }
            PHASE_SKETCH => DistinctCount::from_registers(precision, r.get_bytes()?.into()),
            phase => return Err(r.invalid(phase_at, format!("unknown dcount phase {phase}"))),
        };
        built.map_err(|why| r.invalid(at, format!("dcount sketch: {why}")))
    }
}

// Quantiles: a phase byte, then the sorted values, or the histogram's counters, extremes and
// two bucket stores. Bucket indices are strictly increasing and mostly adjacent, so each is
// stored as its step from the one before: one byte instead of up to five.
impl Encode for Quantiles {
    fn encode(&self, w: &mut Writer) {
        match self.parts() {
            QuantileParts::Exact(values) => {
                w.put_u8(PHASE_EXACT);
                w.put_uvar(values.len() as u64);
                for &x in values {
                    w.put_f64(x);
                }
            }
            QuantileParts::Histogram(h) => {
                w.put_u8(PHASE_SKETCH);
                w.put_uvar(h.count);
                w.put_uvar(h.zeros);
                w.put_f64(h.min);
                w.put_f64(h.max);
                put_buckets(w, h.positive);
                put_buckets(w, h.negative);
            }
        }
    }
}

fn put_buckets(w: &mut Writer, buckets: &[(i32, u64)]) {
    w.put_uvar(buckets.len() as u64);
    let mut prev = None;
    for &(index, n) in buckets {
        match prev {
            None => w.put_ivar(i64::from(index)),
            Some(p) => w.put_uvar((i64::from(index) - i64::from(p)) as u64),
        }
        w.put_uvar(n);
        prev = Some(index);
    }
}

fn get_buckets(r: &mut Reader<'_>) -> Result<Vec<(i32, u64)>, DecodeError> {
    // Two bytes at least per bucket: its index step and its count.
    let n = r.get_len(2)?;
    let mut buckets = Vec::with_capacity(n);
    let mut prev: Option<i32> = None;
    for _ in 0..n {
        let at = r.position();
        let index = match prev {
            None => i32::try_from(r.get_ivar()?).ok(),
            Some(p) => match r.get_uvar()? {
                0 => return Err(r.invalid(at, "bucket index not above the one before")),
                step => i64::try_from(step)
                    .ok()
                    .and_then(|s| i32::try_from(i64::from(p) + s).ok()),
            },
        }
        .ok_or_else(|| r.invalid(at, "bucket index out of range"))?;
        buckets.push((index, r.get_uvar()?));
        prev = Some(index);
    }
    Ok(buckets)
}

impl Decode for Quantiles {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        let built = match r.get_u8()? {
            PHASE_EXACT => Quantiles::from_values(Vec::decode(r)?),
            PHASE_SKETCH => Quantiles::from_histogram(HistogramParts {
                count: r.get_uvar()?,
                zeros: r.get_uvar()?,
                min: r.get_f64()?,
                max: r.get_f64()?,
                positive: get_buckets(r)?,
                negative: get_buckets(r)?,
            }),
            phase => return Err(r.invalid(at, format!("unknown percentile phase {phase}"))),
        };
        built.map_err(|why| r.invalid(at, format!("percentile sketch: {why}")))
    }
}
