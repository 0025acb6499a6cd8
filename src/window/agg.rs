//! Aggregate state: one accumulator per aggregation function, small and **mergeable** — the
//! merge of two partial states equals the state of the concatenated input (exactly for
//! count/sum/avg/min/max/arg_max/arg_min, within the sketches' documented error for
//! dcount/percentile). Panes of a sliding window are merged at read time, and partial
//! results of several partitions or replicas combine the same way.

use std::cmp::Ordering;

use crate::kql::eval::{eval, is_true, Context};
use crate::kql::plan::{AggFunc, Aggregate};
use crate::value::{Type, Value};

use super::sketch::{hash64, DistinctCount, Quantiles};

#[derive(Debug, Clone)]
pub enum AggState {
    Count(i64),
    SumLong(i64),
    SumReal(f64),
    Avg {
        sum: f64,
        count: u64,
    },
    Min(Option<Value>),
    Max(Option<Value>),
    DCount(Box<DistinctCount>),
    /// Boxed: it is the largest state, and every other one of every pane would pay for it.
    Arg(Box<Arg>),
    Percentile(Box<Quantiles>),
    /// `make_set` / `make_list`: the values so far (boxed: most states are 32 bytes).
    Collect(Box<Vec<Value>>),
    /// Count, mean and sum of squared deviations (Welford), merged with Chan's formula.
    Spread {
        n: u64,
        mean: f64,
        m2: f64,
    },
}

/// The aggregate states of one series, pane or bin: one per aggregate of the query, in the
/// query's order. Most queries have a single aggregate, and its state is held inline: a
/// boxed slice of one would allocate as much again, for every pane of every series.
#[derive(Debug, Clone)]
pub enum States {
    One(AggState),
    Many(Box<[AggState]>),
}

impl States {
    pub fn into_vec(self) -> Vec<AggState> {
        match self {
            States::One(s) => vec![s],
            States::Many(all) => all.into_vec(),
        }
    }
}

impl From<Vec<AggState>> for States {
    fn from(mut all: Vec<AggState>) -> States {
        match all.len() {
            1 => States::One(all.pop().expect("one state")),
            _ => States::Many(all.into_boxed_slice()),
        }
    }
}

impl FromIterator<AggState> for States {
    /// One state without a vector in between: new panes and series are made per row.
    fn from_iter<I: IntoIterator<Item = AggState>>(iter: I) -> States {
        let mut iter = iter.into_iter();
        let Some(first) = iter.next() else {
            return States::Many(Box::default());
        };
        match iter.next() {
            None => States::One(first),
            Some(second) => {
                let mut all = vec![first, second];
                all.extend(iter);
                States::Many(all.into_boxed_slice())
            }
        }
    }
}

impl std::ops::Deref for States {
    type Target = [AggState];

    fn deref(&self) -> &[AggState] {
        match self {
            States::One(s) => std::slice::from_ref(s),
            States::Many(all) => all,
        }
    }
}

impl std::ops::DerefMut for States {
    fn deref_mut(&mut self) -> &mut [AggState] {
        match self {
            States::One(s) => std::slice::from_mut(s),
            States::Many(all) => all,
        }
    }
}

/// `arg_max` / `arg_min`: the best value so far and the columns it carries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Arg {
    pub best: Option<Value>,
    pub carried: Vec<Value>,
}

impl AggState {
    pub fn new(agg: &Aggregate) -> AggState {
        match agg.func {
            AggFunc::Count | AggFunc::CountIf => AggState::Count(0),
            AggFunc::Sum | AggFunc::SumIf => match agg.arg_type {
                Some(Type::Long | Type::TimeSpan) => AggState::SumLong(0),
                _ => AggState::SumReal(0.0),
            },
            AggFunc::Avg | AggFunc::AvgIf => AggState::Avg { sum: 0.0, count: 0 },
            AggFunc::Min => AggState::Min(None),
            AggFunc::Max => AggState::Max(None),
            AggFunc::DCount { precision } => {
                AggState::DCount(Box::new(DistinctCount::new(precision)))
            }
            AggFunc::ArgMax | AggFunc::ArgMin => AggState::Arg(Box::default()),
            AggFunc::Percentile { .. } => AggState::Percentile(Box::default()),
            AggFunc::Collect { .. } => AggState::Collect(Box::default()),
            AggFunc::Spread { .. } => AggState::Spread {
                n: 0,
                mean: 0.0,
                m2: 0.0,
            },
        }
    }

    /// Adds one row.
    pub fn update(&mut self, agg: &Aggregate, row: &[Value], cx: &Context) {
        if let Some(p) = &agg.predicate {
            if !is_true(p, row, cx) {
                return;
            }
        }
        let arg = || {
            agg.arg
                .as_ref()
                .map(|e| eval(e, row, cx))
                .unwrap_or_default()
        };
        match self {
            AggState::Count(n) => *n += 1,
            AggState::SumLong(s) => match arg() {
                Value::Long(v) | Value::TimeSpan(v) => *s = s.wrapping_add(v),
                Value::Real(v) => *s = s.wrapping_add(v as i64),
                _ => {}
            },
            AggState::SumReal(s) => {
                if let Some(v) = numeric(&arg()) {
                    *s += v;
                }
            }
            AggState::Avg { sum, count } => {
                let v = arg();
                let x = match v {
                    Value::TimeSpan(t) => Some(t as f64),
                    other => numeric(&other),
                };
                if let Some(x) = x {
                    *sum += x;
                    *count += 1;
                }
            }
            AggState::Min(best) => keep(best, arg(), Ordering::Less),
            AggState::Max(best) => keep(best, arg(), Ordering::Greater),
            AggState::DCount(d) => {
                let v = arg();
                if !v.is_null() {
                    d.insert_hash(hash_value(&v));
                }
            }
            AggState::Arg(a) => {
                let Arg { best, carried } = &mut **a;
                let v = arg();
                if v.is_null() {
                    return;
                }
                let want = if agg.func == AggFunc::ArgMax {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
                let better = match best {
                    None => true,
                    Some(b) => compare(&v, b) == Some(want),
                };
                if better {
                    *best = Some(v);
                    carried.clear();
                    carried.extend(agg.carried.iter().map(|e| eval(e, row, cx)));
                }
            }
            AggState::Percentile(q) => {
                if let Some(x) = numeric(&arg()) {
                    q.insert(x);
                }
            }
            AggState::Collect(items) => {
                let AggFunc::Collect { distinct, cap, bag } = agg.func else {
                    unreachable!("collect state")
                };
                let v = arg();
                if bag {
                    absorb_bag(items, &v, cap);
                } else if !v.is_null() {
                    collect(items, v, distinct, cap);
                }
            }
            AggState::Spread { n, mean, m2 } => {
                if let Some(x) = numeric(&arg()) {
                    *n += 1;
                    let delta = x - *mean;
                    *mean += delta / *n as f64;
                    *m2 += delta * (x - *mean);
                }
            }
        }
    }

    /// Folds another partial state of the same aggregate into this one.
    pub fn merge(&mut self, other: &AggState, func: AggFunc) {
        match (self, other) {
            (AggState::Count(a), AggState::Count(b)) => *a += b,
            (AggState::SumLong(a), AggState::SumLong(b)) => *a = a.wrapping_add(*b),
            (AggState::SumReal(a), AggState::SumReal(b)) => *a += b,
            (AggState::Avg { sum, count }, AggState::Avg { sum: s2, count: c2 }) => {
                *sum += s2;
                *count += c2;
            }
            (AggState::Min(a), AggState::Min(b)) => {
                if let Some(b) = b {
                    keep(a, b.clone(), Ordering::Less)
                }
            }
            (AggState::Max(a), AggState::Max(b)) => {
                if let Some(b) = b {
                    keep(a, b.clone(), Ordering::Greater)
                }
            }
            (AggState::DCount(a), AggState::DCount(b)) => a.merge(b),
            (AggState::Arg(a), AggState::Arg(o)) => {
                let Arg { best, carried } = &mut **a;
                let Some(b) = &o.best else { return };
                let c = &o.carried;
                let want = if func == AggFunc::ArgMax {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
                let better = match best {
                    None => true,
                    Some(x) => compare(b, x) == Some(want),
                };
                if better {
                    *best = Some(b.clone());
                    *carried = c.clone();
                }
            }
            (AggState::Percentile(a), AggState::Percentile(b)) => a.merge(b),
            (AggState::Collect(a), AggState::Collect(b)) => {
                let AggFunc::Collect { distinct, cap, bag } = func else {
                    unreachable!("collect state")
                };
                for v in b.iter() {
                    if bag {
                        absorb_bag(a, v, cap);
                    } else {
                        collect(a, v.clone(), distinct, cap);
                    }
                }
            }
            (
                AggState::Spread { n, mean, m2 },
                AggState::Spread {
                    n: nb,
                    mean: mb,
                    m2: m2b,
                },
            ) => {
                if *nb == 0 {
                    return;
                }
                let total = *n + nb;
                let delta = mb - *mean;
                let (na, nb) = (*n as f64, *nb as f64);
                *mean += delta * nb / total as f64;
                *m2 += m2b + delta * delta * na * nb / total as f64;
                *n = total;
            }
            _ => debug_assert!(false, "merging states of different aggregates"),
        }
    }

    /// Appends the aggregate's output column(s).
    pub fn finish(&self, agg: &Aggregate, out: &mut Vec<Value>) {
        match self {
            AggState::Count(n) => out.push(Value::Long(*n)),
            AggState::SumLong(s) => out.push(if agg.arg_type == Some(Type::TimeSpan) {
                Value::TimeSpan(*s)
            } else {
                Value::Long(*s)
            }),
            AggState::SumReal(s) => out.push(Value::Real(*s)),
            AggState::Avg { sum, count } => out.push(if *count == 0 {
                Value::Null
            } else if agg.arg_type == Some(Type::TimeSpan) {
                Value::TimeSpan((*sum / *count as f64) as i64)
            } else {
                Value::Real(*sum / *count as f64)
            }),
            AggState::Min(v) | AggState::Max(v) => out.push(v.clone().unwrap_or_default()),
            AggState::DCount(d) => out.push(Value::Long(d.estimate() as i64)),
            AggState::Arg(a) => {
                let Arg { best, carried } = &**a;
                out.push(best.clone().unwrap_or_default());
                if carried.is_empty() {
                    out.extend(std::iter::repeat_n(Value::Null, agg.carried.len()));
                } else {
                    out.extend(carried.iter().cloned());
                }
            }
            AggState::Percentile(q) => {
                let AggFunc::Percentile { p } = agg.func else {
                    unreachable!("percentile state")
                };
                out.push(match q.quantile(p) {
                    None => Value::Null,
                    Some(x) if agg.arg_type == Some(Type::Long) => Value::Long(x.round() as i64),
                    Some(x) => Value::Real(x),
                })
            }
            AggState::Collect(items) => out.push(match agg.func {
                // make_bag: its one bag, or an empty one.
                AggFunc::Collect { bag: true, .. } => items.first().cloned().unwrap_or_else(|| {
                    Value::Dynamic(std::sync::Arc::new(serde_json::Value::Object(
                        serde_json::Map::new(),
                    )))
                }),
                _ => Value::Dynamic(std::sync::Arc::new(serde_json::Value::Array(
                    items.iter().map(Value::to_json).collect(),
                ))),
            }),
            AggState::Spread { n, m2, .. } => {
                let AggFunc::Spread { root, sample } = agg.func else {
                    unreachable!("spread state")
                };
                // No value: null. One value spreads nowhere: 0, sample or not.
                let variance = match (*n, sample) {
                    (0, _) => None,
                    (1, _) => Some(0.0),
                    (n, true) => Some(m2 / (n - 1) as f64),
                    (n, false) => Some(m2 / n as f64),
                };
                out.push(match variance {
                    None => Value::Null,
                    Some(v) if root => Value::Real(v.max(0.0).sqrt()),
                    Some(v) => Value::Real(v.max(0.0)),
                });
            }
        }
    }
}

fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Long(x) => Some(*x as f64),
        Value::Real(x) if !x.is_nan() => Some(*x),
        Value::Dynamic(d) => d.as_f64(),
        _ => None,
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Long(x), Value::Long(y)) => Some(x.cmp(y)),
        (Value::DateTime(x), Value::DateTime(y)) | (Value::TimeSpan(x), Value::TimeSpan(y)) => {
            Some(x.cmp(y))
        }
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        _ => numeric(a)?.partial_cmp(&numeric(b)?),
    }
}

/// Keeps the extreme of `best` and `v` in the direction `want` (nulls never win).
fn keep(best: &mut Option<Value>, v: Value, want: Ordering) {
    if v.is_null() {
        return;
    }
    match best {
        None => *best = Some(v),
        Some(b) => {
            if compare(&v, b) == Some(want) {
                *best = Some(v);
            }
        }
    }
}

/// A stable hash of a value for distinct counting; equal values of one type hash alike on
/// every replica.
pub fn hash_value(v: &Value) -> u64 {
    let mut buf = Vec::with_capacity(24);
    match v {
        Value::Null => buf.push(0),
        Value::Bool(b) => buf.extend([1, *b as u8]),
        Value::Long(x) => {
            buf.push(2);
            buf.extend(x.to_le_bytes())
        }
        Value::Real(x) => {
            buf.push(3);
            buf.extend(x.to_bits().to_le_bytes())
        }
        Value::DateTime(x) => {
            buf.push(4);
            buf.extend(x.to_le_bytes())
        }
        Value::TimeSpan(x) => {
            buf.push(5);
            buf.extend(x.to_le_bytes())
        }
        Value::Str(s) => {
            buf.push(6);
            buf.extend(s.as_bytes())
        }
        Value::Dynamic(d) => {
            buf.push(7);
            buf.extend(d.to_string().as_bytes())
        }
    }
    hash64(&buf)
}

/// Adds `v` to a `make_set` / `make_list` state: once for a set, and while under `cap`.
/// `make_bag`: the properties of bag `v` added to the state's one bag (`items[0]`), a key
/// already there kept, at most `cap` keys; anything but a bag is ignored.
fn absorb_bag(items: &mut Vec<Value>, v: &Value, cap: u32) {
    let Value::Dynamic(d) = v else { return };
    let serde_json::Value::Object(props) = &**d else {
        return;
    };
    if items.is_empty() {
        items.push(Value::Dynamic(std::sync::Arc::new(
            serde_json::Value::Object(serde_json::Map::new()),
        )));
    }
    let Value::Dynamic(acc) = &mut items[0] else {
        return;
    };
    let serde_json::Value::Object(acc) = std::sync::Arc::make_mut(acc) else {
        return;
    };
    for (k, x) in props {
        if acc.len() >= cap as usize {
            break;
        }
        acc.entry(k.clone()).or_insert_with(|| x.clone());
    }
}

fn collect(items: &mut Vec<Value>, v: Value, distinct: bool, cap: u32) {
    if items.len() >= cap as usize || (distinct && items.contains(&v)) {
        return;
    }
    items.push(v);
}
