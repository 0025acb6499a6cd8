//! The parts of the sketches, for snapshots. `window/encode.rs` writes sketches into
//! checkpoints; it reads them through these views rather than the private fields, and every
//! way back in goes through the checks below. A corrupt snapshot therefore becomes an error
//! at restore, never a sketch that breaks an invariant and panics (or answers nonsense) on
//! its next insert or merge. The checks live beside the sketches (a child module sees their
//! private fields), so that a new invariant cannot miss them.

use super::*;

/// What a [`DistinctCount`] holds, borrowed.
pub(crate) enum DistinctParts<'a> {
    /// Sorted, distinct hashes (the exact phase).
    Exact(&'a [u64]),
    /// `2^precision` HyperLogLog registers.
    Registers(&'a [u8]),
}

/// What a [`Quantiles`] in its histogram phase holds. `B` is `&[(i32, u64)]` when borrowed
/// for writing and `Vec<(i32, u64)>` when read back; buckets are `(index, count)`.
pub(crate) struct HistogramParts<B> {
    pub positive: B,
    pub negative: B,
    pub zeros: u64,
    pub count: u64,
    pub min: f64,
    pub max: f64,
}

/// What a [`Quantiles`] holds, borrowed.
pub(crate) enum QuantileParts<'a> {
    /// Every value, sorted by `f64::total_cmp` (the exact phase).
    Exact(&'a [f64]),
    Histogram(HistogramParts<&'a [(i32, u64)]>),
}

impl DistinctCount {
    pub(crate) fn parts(&self) -> DistinctParts<'_> {
        match &self.repr {
            DistinctRepr::Exact(hashes) => DistinctParts::Exact(hashes),
            DistinctRepr::Hll(registers) => DistinctParts::Registers(registers),
        }
    }

    /// The exact phase from its hashes; `Err` says which invariant they break.
    pub(crate) fn from_hashes(precision: u8, hashes: Vec<u64>) -> Result<Self, String> {
        check_precision(precision)?;
        if hashes.len() > Self::EXACT_LIMIT {
            return Err(format!(
                "{} exact hashes, above the limit of {}",
                hashes.len(),
                Self::EXACT_LIMIT
            ));
        }
        if let Some(at) = hashes.windows(2).position(|w| w[0] >= w[1]) {
            return Err(format!("exact hash {} is not above the one before", at + 1));
        }
        Ok(DistinctCount {
            precision,
            repr: DistinctRepr::Exact(hashes),
        })
    }

    /// The HyperLogLog phase from its registers; `Err` says which invariant they break.
    pub(crate) fn from_registers(precision: u8, registers: Box<[u8]>) -> Result<Self, String> {
        check_precision(precision)?;
        if registers.len() != 1 << precision {
            return Err(format!(
                "{} registers, but precision {precision} needs {}",
                registers.len(),
                1u32 << precision
            ));
        }
        // `hll_insert` never stores a rank above this, and `fold_registers` adds to ranks in
        // a `u8`, so a larger one would overflow there.
        let max_rank = 64 - precision + 1;
        if let Some(at) = registers.iter().position(|&r| r > max_rank) {
            return Err(format!(
                "register {at} holds rank {}, above {max_rank} for precision {precision}",
                registers[at]
            ));
        }
        Ok(DistinctCount {
            precision,
            repr: DistinctRepr::Hll(registers),
        })
    }
}

fn check_precision(precision: u8) -> Result<(), String> {
    let range = DistinctCount::MIN_PRECISION..=DistinctCount::MAX_PRECISION;
    if range.contains(&precision) {
        Ok(())
    } else {
        Err(format!("precision {precision} outside {range:?}"))
    }
}

impl Quantiles {
    pub(crate) fn parts(&self) -> QuantileParts<'_> {
        match &self.repr {
            QuantileRepr::Exact(values) => QuantileParts::Exact(values),
            QuantileRepr::Sketch(sketch) => QuantileParts::Histogram(HistogramParts {
                positive: &sketch.positive.buckets,
                negative: &sketch.negative.buckets,
                zeros: sketch.zeros,
                count: sketch.count,
                min: sketch.min,
                max: sketch.max,
            }),
        }
    }

    /// The exact phase from its values; `Err` says which invariant they break.
    pub(crate) fn from_values(values: Vec<f64>) -> Result<Self, String> {
        if values.len() > Self::EXACT_LIMIT {
            return Err(format!(
                "{} exact values, above the limit of {}",
                values.len(),
                Self::EXACT_LIMIT
            ));
        }
        if let Some(at) = values.iter().position(|v| v.is_nan()) {
            return Err(format!("exact value {at} is NaN"));
        }
        if let Some(at) = values
            .windows(2)
            .position(|w| w[0].total_cmp(&w[1]) == Ordering::Greater)
        {
            return Err(format!("exact value {} is below the one before", at + 1));
        }
        Ok(Quantiles {
            repr: QuantileRepr::Exact(values),
        })
    }

    /// The histogram phase from its parts; `Err` says which invariant they break.
    pub(crate) fn from_histogram(parts: HistogramParts<Vec<(i32, u64)>>) -> Result<Self, String> {
        if parts.min.is_nan() || parts.max.is_nan() {
            return Err("minimum or maximum is NaN".into());
        }
        let positive = bucket_total(&parts.positive, "positive")?;
        let negative = bucket_total(&parts.negative, "negative")?;
        let total = positive
            .checked_add(negative)
            .and_then(|n| n.checked_add(parts.zeros));
        if total != Some(parts.count) {
            return Err(format!(
                "count {} is not the buckets' {positive} + {negative} plus {} zeros",
                parts.count, parts.zeros
            ));
        }
        Ok(Quantiles {
            repr: QuantileRepr::Sketch(Box::new(LogHistogram {
                positive: BucketStore {
                    buckets: parts.positive,
                },
                negative: BucketStore {
                    buckets: parts.negative,
                },
                zeros: parts.zeros,
                count: parts.count,
                min: parts.min,
                max: parts.max,
            })),
        })
    }
}

/// The sum of a store's counts, after checking what `BucketStore::add` and `merge` rely on:
/// at most `MAX_BUCKETS`, indices strictly increasing, no empty bucket (none is ever made).
fn bucket_total(buckets: &[(i32, u64)], sign: &str) -> Result<u64, String> {
    if buckets.len() > Quantiles::MAX_BUCKETS {
        return Err(format!(
            "{} {sign} buckets, above the limit of {}",
            buckets.len(),
            Quantiles::MAX_BUCKETS
        ));
    }
    if let Some(at) = buckets.windows(2).position(|w| w[0].0 >= w[1].0) {
        return Err(format!(
            "{sign} bucket {} is not above the one before",
            at + 1
        ));
    }
    let mut total = 0u64;
    for (at, &(_, n)) in buckets.iter().enumerate() {
        if n == 0 {
            return Err(format!("{sign} bucket {at} is empty"));
        }
        total = total
            .checked_add(n)
            .ok_or_else(|| format!("{sign} bucket counts overflow"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{dcount_of, quantiles_of};
    use super::*;
    use crate::rng::SplitMix64 as Rng;

    #[test]
    fn snapshot_parts_rebuild_equal_sketches_and_reject_broken_invariants() {
        // Parts taken from real sketches rebuild them exactly, in both phases.
        for d in [dcount_of(12, 0..10), dcount_of(6, 0..1_000)] {
            let rebuilt = match d.parts() {
                DistinctParts::Exact(h) => DistinctCount::from_hashes(d.precision(), h.to_vec()),
                DistinctParts::Registers(r) => {
                    DistinctCount::from_registers(d.precision(), r.into())
                }
            };
            assert_eq!(rebuilt.as_ref(), Ok(&d));
        }
        let mut rng = Rng(5);
        let values: Vec<f64> = (0..1_000).map(|_| rng.normal() * 100.0).collect();
        for q in [quantiles_of(&values[..50]), quantiles_of(&values)] {
            let rebuilt = match q.parts() {
                QuantileParts::Exact(v) => Quantiles::from_values(v.to_vec()),
                QuantileParts::Histogram(h) => Quantiles::from_histogram(HistogramParts {
                    positive: h.positive.to_vec(),
                    negative: h.negative.to_vec(),
                    zeros: h.zeros,
                    count: h.count,
                    min: h.min,
                    max: h.max,
                }),
            };
            assert_eq!(rebuilt.as_ref(), Ok(&q));
        }

        let too_many = DistinctCount::EXACT_LIMIT as u64 + 1;
        for (precision, hashes) in [
            (3, vec![]),
            (17, vec![]),
            (12, vec![2, 1]),
            (12, vec![1, 1]),
            (12, (0..too_many).collect()),
        ] {
            assert!(DistinctCount::from_hashes(precision, hashes).is_err());
        }
        assert!(DistinctCount::from_registers(4, vec![0; 15].into()).is_err());
        assert!(DistinctCount::from_registers(4, vec![62; 16].into()).is_err());
        assert!(DistinctCount::from_registers(4, vec![61; 16].into()).is_ok());

        assert!(Quantiles::from_values(vec![1.0, f64::NAN]).is_err());
        assert!(Quantiles::from_values(vec![0.0, -0.0]).is_err());
        assert!(Quantiles::from_values(vec![-0.0, 0.0, 0.0]).is_ok());
        assert!(Quantiles::from_values(vec![0.0; Quantiles::EXACT_LIMIT + 1]).is_err());
        let histogram = |positive: Vec<(i32, u64)>, count: u64, min: f64| HistogramParts {
            positive,
            negative: vec![(3, 1)],
            zeros: 1,
            count,
            min,
            max: 9.0,
        };
        assert!(Quantiles::from_histogram(histogram(vec![(1, 2), (2, 1)], 5, -3.0)).is_ok());
        for broken in [
            histogram(vec![(1, 2), (2, 1)], 6, -3.0),
            histogram(vec![(1, 2), (2, 1)], 5, f64::NAN),
            histogram(vec![(2, 2), (1, 1)], 5, -3.0),
            histogram(vec![(1, 2), (1, 1)], 5, -3.0),
            histogram(vec![(1, 4), (2, 0)], 6, -3.0),
            histogram(vec![(1, u64::MAX), (2, 1)], 1, -3.0),
            histogram(
                (0..=Quantiles::MAX_BUCKETS as i32)
                    .map(|i| (i, 1))
                    .collect(),
                2051,
                -3.0,
            ),
        ] {
            assert!(Quantiles::from_histogram(broken).is_err());
        }
    }
}
