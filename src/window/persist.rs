//! A query's window state in a snapshot: [`QueryState::encode`] writes everything a restart
//! needs to go on as if it had never stopped (retained rows, every series' aggregate states,
//! sliding panes, open and closed bins), and [`QueryState::decode`] reads it back against
//! the query's plan.
//!
//! Decoding trusts nothing it can check cheaply: the store must be the one the plan builds,
//! every series must carry one state per aggregate, of that aggregate's kind, and keys must
//! have one value per `by` column. A snapshot that fails is refused with the place of the
//! fault, so that a mismatch can never become a wrong merge later. Series counts are
//! recomputed from what was read; the counters (`stats`) start from zero, as every
//! Prometheus counter does after a restart.

use std::collections::{BTreeMap, HashMap};
use std::mem::discriminant;
use std::sync::Arc;

use super::agg::AggState;
use super::agg::States;
use super::query::{ClosedBin, Key, Pane, QueryLimits, QueryState, Store};
use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::kql::plan::{Plan, Stage, Summarize};
use crate::value::Value;

const ROWS: u8 = 0;
const TOTAL: u8 = 1;
const SLIDING: u8 = 2;
const TUMBLING: u8 = 3;

impl QueryState {
    /// Appends this state to `w`.
    pub fn encode(&self, w: &mut Writer) {
        match &self.store {
            // One side's rows after another's: the plan says how many sides there are.
            Store::Rows(sides) => {
                w.put_u8(ROWS);
                w.put_uvar(self.seq);
                for rows in sides {
                    w.put_uvar(rows.len() as u64);
                    for ((time, seq), row) in rows {
                        w.put_ivar(*time);
                        w.put_uvar(*seq);
                        row.encode(w);
                    }
                }
            }
            Store::Total(map) => {
                w.put_u8(TOTAL);
                w.put_uvar(map.len() as u64);
                for (key, states) in map.iter() {
                    key.encode(w);
                    states.encode(w);
                }
            }
            Store::Sliding(map) => {
                w.put_u8(SLIDING);
                w.put_uvar(map.len() as u64);
                for (key, panes) in map.iter() {
                    key.encode(w);
                    w.put_uvar(panes.len() as u64);
                    for p in panes {
                        w.put_ivar(p.min);
                        w.put_ivar(p.max);
                        p.states.encode(w);
                    }
                }
            }
            Store::Tumbling {
                open,
                closed,
                width,
            } => {
                w.put_u8(TUMBLING);
                w.put_ivar(*width);
                w.put_uvar(open.len() as u64);
                for (start, series) in open {
                    w.put_ivar(*start);
                    w.put_uvar(series.len() as u64);
                    for (key, states) in series {
                        key.encode(w);
                        states.encode(w);
                    }
                }
                w.put_uvar(closed.len() as u64);
                for (start, series) in closed {
                    w.put_ivar(*start);
                    series.encode(w);
                }
            }
        }
    }

    /// Reads a state written by [`encode`](Self::encode) for a query with this plan.
    pub fn decode(
        plan: Arc<Plan>,
        limits: QueryLimits,
        r: &mut Reader<'_>,
    ) -> Result<QueryState, DecodeError> {
        let mut state = QueryState::new(plan.clone(), limits);
        let at = r.position();
        let tag = r.get_u8()?;
        let expected = match &state.store {
            Store::Rows(_) => ROWS,
            Store::Total(_) => TOTAL,
            Store::Sliding(_) => SLIDING,
            Store::Tumbling { .. } => TUMBLING,
        };
        if tag != expected {
            return Err(r.invalid(
                at,
                format!("a state of kind {tag}, where this query keeps kind {expected}"),
            ));
        }
        let check = Check::new(&plan);
        match &mut state.store {
            Store::Rows(sides) => {
                let mut seq = r.get_uvar()?;
                for rows in sides {
                    let n = r.get_len(3)?;
                    for _ in 0..n {
                        let time = r.get_ivar()?;
                        let s = r.get_uvar()?;
                        let row = Vec::<Value>::decode(r)?;
                        seq = seq.max(s);
                        rows.insert((time, s), row);
                    }
                }
                state.seq = seq;
                state.reindex_top();
            }
            Store::Total(map) => {
                let n = r.get_len(2)?;
                map.reserve(n);
                for _ in 0..n {
                    let at = r.position();
                    let key = check.key(r)?;
                    let states = check.states(r)?;
                    if !map.insert_new(key, states) {
                        return Err(r.invalid(at, "a series twice"));
                    }
                }
                state.series = map.len();
            }
            Store::Sliding(map) => {
                let n = r.get_len(3)?;
                map.reserve(n);
                for _ in 0..n {
                    let series_at = r.position();
                    let key = check.key(r)?;
                    let count = r.get_len(3)?;
                    let mut panes = Vec::with_capacity(count);
                    for _ in 0..count {
                        let at = r.position();
                        let (min, max) = (r.get_ivar()?, r.get_ivar()?);
                        if min > max || panes.last().is_some_and(|p: &Pane| p.max >= min) {
                            return Err(r.invalid(at, "panes out of order"));
                        }
                        let states = check.states(r)?;
                        panes.push(Pane { min, max, states });
                    }
                    if !panes.is_empty() && !map.insert_new(key, panes.into_boxed_slice()) {
                        return Err(r.invalid(series_at, "a series twice"));
                    }
                }
                state.series = map.len();
            }
            Store::Tumbling {
                open,
                closed,
                width,
            } => {
                let at = r.position();
                if r.get_ivar()? != *width {
                    return Err(r.invalid(at, "a bin width other than the query's"));
                }
                let mut series = 0;
                let bins = r.get_len(2)?;
                for _ in 0..bins {
                    let start = r.get_ivar()?;
                    let n = r.get_len(2)?;
                    let mut map: HashMap<Key, States, _> = HashMap::default();
                    map.reserve(n);
                    for _ in 0..n {
                        let key = check.key(r)?;
                        let states = check.states(r)?;
                        map.insert(key, states);
                    }
                    series += map.len();
                    open.insert(start, map);
                }
                let bins = r.get_len(2)?;
                let mut done: BTreeMap<i64, ClosedBin> = BTreeMap::new();
                for _ in 0..bins {
                    let start = r.get_ivar()?;
                    let n = r.get_len(2)?;
                    let mut bin = Vec::with_capacity(n);
                    for _ in 0..n {
                        bin.push((check.key(r)?, check.states(r)?));
                    }
                    series += bin.len();
                    done.insert(start, bin);
                }
                *closed = done;
                state.series = series;
            }
        }
        Ok(state)
    }
}

/// What the plan says a series must look like.
struct Check<'a> {
    summarize: Option<&'a Summarize>,
    /// Values per key: the `by` columns without the bin.
    key_len: usize,
    /// The state each aggregate starts from (compared by kind).
    fresh: Vec<AggState>,
}

impl<'a> Check<'a> {
    fn new(plan: &'a Plan) -> Check<'a> {
        let summarize = match &plan.stage {
            Stage::Summarize(s) => Some(s),
            Stage::Rows { .. } => None,
        };
        Check {
            summarize,
            key_len: summarize.map_or(0, |s| s.keys.len() - usize::from(s.bin.is_some())),
            fresh: summarize.map_or_else(Vec::new, |s| {
                s.aggregates.iter().map(AggState::new).collect()
            }),
        }
    }

    fn key(&self, r: &mut Reader<'_>) -> Result<Key, DecodeError> {
        let at = r.position();
        let key = Key::decode(r)?;
        if key.len() != self.key_len {
            return Err(r.invalid(
                at,
                format!(
                    "a key of {} values, where the query groups by {}",
                    key.len(),
                    self.key_len
                ),
            ));
        }
        Ok(key)
    }

    fn states(&self, r: &mut Reader<'_>) -> Result<States, DecodeError> {
        let at = r.position();
        let states = States::decode(r)?;
        let fits = self.summarize.is_some()
            && states.len() == self.fresh.len()
            && states
                .iter()
                .zip(&self.fresh)
                .all(|(a, b)| discriminant(a) == discriminant(b));
        if !fits {
            return Err(r.invalid(
                at,
                "aggregate states that do not match the query's aggregates",
            ));
        }
        Ok(states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kql::check::compile;
    use crate::parse::Row;
    use crate::schema::Schemas;

    fn plan(kql: &str) -> Arc<Plan> {
        Arc::new(compile(kql, &Schemas::embedded()).expect("compiles"))
    }

    /// A state of `kql` after a few rows, encoded.
    fn encoded(kql: &str) -> Vec<u8> {
        let schemas = Schemas::embedded();
        let table = schemas.table("AmlComputeClusterEvent").unwrap();
        let t = &schemas.tables[table];
        let mut q = QueryState::new(plan(kql), QueryLimits::default());
        let t0 = crate::time::parse_datetime("2024-03-01T10:00:00Z")
            .unwrap()
            .0;
        for i in 0..5i64 {
            let mut values = vec![Value::Null; t.columns.len()];
            let time = t0 + i * crate::time::TICKS_PER_MINUTE;
            values[t.time_column()] = Value::DateTime(time);
            values[t.column("ClusterName").unwrap()] =
                Value::str(if i % 2 == 0 { "a" } else { "b" });
            values[t.column("TargetNodeCount").unwrap()] = Value::Long(i);
            q.ingest(
                &Row {
                    table,
                    time,
                    values,
                },
                time,
                time,
            );
        }
        let mut w = Writer::new();
        q.encode(&mut w);
        w.into_inner()
    }

    fn decode(kql: &str, bytes: &[u8]) -> Result<QueryState, DecodeError> {
        let mut r = Reader::new(bytes);
        let q = QueryState::decode(plan(kql), QueryLimits::default(), &mut r)?;
        r.expect_end()?;
        Ok(q)
    }

    fn refused(kql: &str, bytes: &[u8]) -> String {
        match decode(kql, bytes) {
            Ok(_) => panic!("{kql}: a state of another query was accepted"),
            Err(e) => e.to_string(),
        }
    }

    const BY_CLUSTER: &str =
        "AmlComputeClusterEvent | summarize n = count(), m = max(TargetNodeCount) by ClusterName";

    #[test]
    fn every_store_round_trips_to_the_same_result() {
        for kql in [
            BY_CLUSTER,
            "AmlComputeClusterEvent | where TimeGenerated > ago(1h) | summarize count() by ClusterName",
            "AmlComputeClusterEvent | summarize count() by bin(TimeGenerated, 2m), ClusterName",
            "AmlComputeClusterEvent | project TimeGenerated, ClusterName",
        ] {
            let bytes = encoded(kql);
            let q = decode(kql, &bytes).unwrap_or_else(|e| panic!("{kql}: {e}"));
            let mut again = Writer::new();
            q.encode(&mut again);
            assert_eq!(again.into_inner(), bytes, "{kql}");
        }
    }

    #[test]
    fn a_series_named_twice_is_refused() {
        let as_bytes = |v: &str| {
            let mut w = Writer::new();
            Value::str(v).encode(&mut w);
            w.into_inner()
        };
        let (a, b) = (as_bytes("a"), as_bytes("b"));
        for kql in [
            BY_CLUSTER,
            "AmlComputeClusterEvent | where TimeGenerated > ago(1h) | summarize count() by ClusterName",
        ] {
            let mut bytes = encoded(kql);
            let at = bytes
                .windows(b.len())
                .position(|w| w == &b[..])
                .expect("series b");
            bytes[at..at + b.len()].copy_from_slice(&a);
            let err = refused(kql, &bytes);
            assert!(err.contains("a series twice"), "{kql}: {err}");
        }
    }

    #[test]
    fn a_state_that_does_not_fit_the_plan_is_refused_with_the_reason() {
        let bytes = encoded(BY_CLUSTER);
        let kind = refused("AmlComputeClusterEvent | project ClusterName", &bytes);
        assert!(kind.contains("kind"), "{kind}");
        let keys = refused("AmlComputeClusterEvent | summarize n = count(), m = max(TargetNodeCount) by ClusterName, VmSize", &bytes);
        assert!(keys.contains("groups by 2"), "{keys}");
        let aggs = refused("AmlComputeClusterEvent | summarize n = count(), a = avg(TargetNodeCount) by ClusterName", &bytes);
        assert!(aggs.contains("do not match"), "{aggs}");
        let bins = encoded(
            "AmlComputeClusterEvent | summarize count() by bin(TimeGenerated, 2m), ClusterName",
        );
        let width = refused(
            "AmlComputeClusterEvent | summarize count() by bin(TimeGenerated, 5m), ClusterName",
            &bins,
        );
        assert!(width.contains("bin width"), "{width}");
    }

    #[test]
    fn panes_out_of_order_are_refused() {
        let kql = "AmlComputeClusterEvent | where TimeGenerated > ago(1h) | summarize count() by ClusterName";
        let mut q = QueryState::new(plan(kql), QueryLimits::default());
        if let Store::Sliding(map) = &mut q.store {
            let states: States = States::One(AggState::Count(1));
            let pane = |t| Pane {
                min: t,
                max: t,
                states: states.clone(),
            };
            map.insert_new(
                vec![Value::str("a")].into_boxed_slice(),
                Box::new([pane(20), pane(10)]),
            );
        }
        let mut w = Writer::new();
        q.encode(&mut w);
        let err = refused(kql, &w.into_inner());
        assert!(err.contains("out of order"), "{err}");
    }
}
