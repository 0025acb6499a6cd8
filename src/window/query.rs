//! The running state of one query: rows flow in (`ingest`), the clock moves (`advance`), and
//! the result is read at any time (`result`, `export`).
//!
//! Streaming semantics (also in the README):
//! - `where TimeGenerated > ago(X)` is a sliding window of length X relative to the
//!   event-time clock (the largest record time seen). A record older than the window when it
//!   arrives is ignored and counted (`outside_window`); state that leaves the window is
//!   dropped as the clock advances.
//! - Sliding aggregates keep per-series *panes*. A pane starts as one event time and is only
//!   coarsened (neighbours merged) when a series has more than `max_panes` of them, so the
//!   window's trailing edge is exact unless a series was coarsened (`pane_merges`).
//! - `summarize … by bin(TimeGenerated, X)` makes tumbling bins, closed once the watermark
//!   (clock − allowed lateness) passes their end; a record for a closed bin is late, ignored
//!   and counted. The result shows closed bins; metrics export the last closed bin.
//! - Without a time filter a query covers everything since start.
//! - A record ahead of the clock (one the clock's guard held: `pipeline/engine/clock.rs`)
//!   waits in its place: results show its pane or row once the clock gets there, and its bin
//!   closes with the watermark as any other. Only a total since start counts it at once.
//! - State is bounded: at most `max_series` series (new ones beyond are dropped and
//!   counted) and `max_rows` retained rows for queries without `summarize`.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

use crate::kql::eval::{eval, is_true, Context};
use crate::kql::plan::{
    Aggregate, Join, JoinKind, MvExpand, OutColumn, Plan, RowOp, SortBy, Stage, Summarize, TableOp,
};
use crate::parse::Row;
use crate::time;
use crate::value::{compare_for_sort, Type, Value};

use super::agg::{AggState, States};
use super::series::SeriesTable;

#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Series (groups) kept per query; beyond, new series are dropped and counted.
    pub max_series: usize,
    /// Rows kept by a query without `summarize` (the most recent ones).
    pub max_rows: usize,
    /// Panes per series of a sliding window before neighbours are merged.
    pub max_panes: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_series: 10_000,
            max_rows: 1_000,
            max_panes: 512,
        }
    }
}

/// Counts since start (the engine reports deltas to Prometheus).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryStats {
    /// Rows of the query's table offered to it.
    pub rows_in: u64,
    /// Rows that passed the filters and were absorbed.
    pub matched: u64,
    /// Rows older than the sliding window when they arrived.
    pub outside_window: u64,
    /// Rows for a tumbling bin that was already closed.
    pub late: u64,
    /// Rows dropped because their series would exceed `max_series`.
    pub series_dropped: u64,
    /// Retained rows pushed out by newer ones (`max_rows` or `take`).
    pub rows_evicted: u64,
    /// Times a series' panes were coarsened.
    pub pane_merges: u64,
}

impl QueryStats {
    pub fn add(&mut self, other: &QueryStats) {
        self.rows_in += other.rows_in;
        self.matched += other.matched;
        self.outside_window += other.outside_window;
        self.late += other.late;
        self.series_dropped += other.series_dropped;
        self.rows_evicted += other.rows_evicted;
        self.pane_merges += other.pane_merges;
    }
}

/// Which closed tumbling bins a result shows (other kinds of query ignore it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bins {
    /// Every closed bin inside the window: the query's result.
    All,
    /// The newest closed bin over every part: what metrics export.
    Last,
    /// The bin starting at this time: a bin routed when it closes.
    At(i64),
}

/// A query result: columns and rows, in output order.
#[derive(Debug, Clone)]
pub struct ResultTable {
    pub columns: Vec<OutColumn>,
    pub rows: Vec<Vec<Value>>,
    /// Rows a join made beyond its bound ([`join_bound`]) and left out: the result is then
    /// incomplete.
    pub join_dropped: u64,
}

/// The most rows one join makes: 16 × `max_rows` (its sides hold `max_rows` each, and a
/// key every row shares would otherwise square them).
pub fn join_bound(limits: &QueryLimits) -> usize {
    limits.max_rows.max(64).saturating_mul(16)
}

pub(super) type Key = Box<[Value]>;
/// Retained rows by (event time, arrival).
pub(super) type RowMap = BTreeMap<(i64, u64), Vec<Value>>;
/// A sliding series' panes, oldest first. A boxed slice, grown and shrunk exactly: most
/// series hold one pane or two, and spare room would be paid by each of a million.
pub(super) type Panes = Box<[Pane]>;
/// A closed tumbling bin: each series' key and its aggregate states. States rather than
/// finished values, so that the same bin of several partitions still merges exactly.
pub(super) type ClosedBin = Vec<(Key, States)>;

#[derive(Debug)]
pub(super) struct Pane {
    pub(super) min: i64,
    pub(super) max: i64,
    pub(super) states: States,
}

#[derive(Debug)]
pub(super) enum Store {
    /// No streamed `summarize`: each side's rows by (time, arrival). One side, or one
    /// more per join, whose right side's rows are kept here too.
    Rows(Vec<RowMap>),
    /// `summarize` without window or bins.
    Total(SeriesTable<States>),
    /// `summarize` over a sliding window.
    Sliding(SeriesTable<Panes>),
    /// `summarize … by bin(TimeGenerated, X)`.
    Tumbling {
        open: BTreeMap<i64, HashMap<Key, States, FxBuildHasher>>,
        closed: BTreeMap<i64, ClosedBin>,
        width: i64,
    },
}

pub struct QueryState {
    pub(super) plan: Arc<Plan>,
    pub(super) limits: QueryLimits,
    pub(super) store: Store,
    /// Series held (summarize stores); recomputed, not trusted, when restored.
    pub(super) series: usize,
    /// Arrival counter of retained rows.
    pub(super) seq: u64,
    /// Sliding windows: a lower bound on the end of every series' oldest pane (`i64::MIN`:
    /// not known, e.g. after a restore). `advance` visits the series only once that pane
    /// may have left the window, not on every batch: with a million series a visit takes
    /// milliseconds, and the clock moves with nearly every batch.
    pub(super) oldest: i64,
    /// `top N by …` on rows: what prunes them (see [`Plan::top`]).
    pub(super) top: Option<TopIndex>,
    pub stats: QueryStats,
}

/// The retained rows of a query that begins with `top N by …`, by rank, and how many newer
/// rows beat each. A row beaten by N newer rows is out of the top for as long as it stays
/// in the window (they leave it after it does), so it is dropped; what remains is the
/// top's every possible answer, often far fewer rows than the window holds.
pub(super) struct TopIndex {
    n: u32,
    dirs: Arc<[(bool, bool)]>,
    ranked: std::collections::BTreeSet<Ranked>,
    /// Each row's sort keys and how many newer rows beat it.
    beaten: HashMap<RowId, (Box<[Value]>, u32), FxBuildHasher>,
}

/// A retained row: (event time, arrival).
type RowId = (i64, u64);

/// A row's place in the top: its sort keys in the key's order (best first), then arrival.
#[derive(Clone)]
struct Ranked {
    keys: Box<[Value]>,
    id: (i64, u64),
    /// (descending, nulls first) per key.
    dirs: Arc<[(bool, bool)]>,
}

impl Ranked {
    fn order_keys(&self, other: &Ranked) -> std::cmp::Ordering {
        self.keys
            .iter()
            .zip(other.keys.iter())
            .zip(self.dirs.iter())
            .map(|((a, b), &(desc, nulls_first))| order_by(desc, nulls_first, a, b))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order_keys(other).then(self.id.cmp(&other.id))
    }
}

impl TopIndex {
    fn new(keys: &[SortBy], n: usize) -> TopIndex {
        TopIndex {
            n: n.min(u32::MAX as usize) as u32,
            dirs: keys.iter().map(|k| (k.desc, k.nulls_first)).collect(),
            ranked: Default::default(),
            beaten: HashMap::default(),
        }
    }

    /// Places row `id` with sort keys `keys`: whether it can still be in the top, and the
    /// rows it pushes out of it. `newest`: no retained row arrived after it (the usual
    /// case, in which no row can beat it).
    fn admit(
        &mut self,
        id: (i64, u64),
        keys: Box<[Value]>,
        newest: bool,
    ) -> (bool, Vec<(i64, u64)>) {
        let me = Ranked {
            keys,
            id,
            dirs: self.dirs.clone(),
        };
        // Newer rows that beat it.
        let above = if newest {
            0
        } else {
            self.ranked
                .iter()
                .take_while(|r| me.order_keys(r).is_gt())
                .filter(|r| r.id > id)
                .count() as u32
        };
        if above >= self.n {
            return (false, Vec::new());
        }
        // Older rows it beats.
        let mut out = Vec::new();
        for r in self
            .ranked
            .iter()
            .rev()
            .take_while(|r| me.order_keys(r).is_lt())
        {
            if let (true, Some(entry)) = (r.id < id, self.beaten.get_mut(&r.id)) {
                entry.1 += 1;
                if entry.1 >= self.n {
                    out.push(r.id);
                }
            }
        }
        for gone in &out {
            self.remove(*gone);
        }
        self.beaten.insert(id, (me.keys.clone(), above));
        self.ranked.insert(me);
        (true, out)
    }

    fn remove(&mut self, id: (i64, u64)) {
        if let Some((keys, _)) = self.beaten.remove(&id) {
            self.ranked.remove(&Ranked {
                keys,
                id,
                dirs: self.dirs.clone(),
            });
        }
    }
}

impl QueryState {
    pub fn new(plan: Arc<Plan>, limits: QueryLimits) -> QueryState {
        let top = plan_top(&plan);
        let store = match &plan.stage {
            Stage::Rows { .. } => Store::Rows(vec![BTreeMap::new(); plan.sides()]),
            Stage::Summarize(s) => match (s.bin, plan.window) {
                (Some((_, width)), _) => Store::Tumbling {
                    open: BTreeMap::new(),
                    closed: BTreeMap::new(),
                    width,
                },
                (None, Some(_)) => Store::Sliding(SeriesTable::default()),
                (None, None) => Store::Total(SeriesTable::default()),
            },
        };
        QueryState {
            plan,
            limits,
            store,
            series: 0,
            seq: 0,
            oldest: i64::MIN,
            top,
            stats: QueryStats::default(),
        }
    }

    /// Builds the top's index over rows restored from a snapshot, oldest first, dropping
    /// those it shows can no longer be in the top.
    pub(super) fn reindex_top(&mut self) {
        let (Some((keys, _)), Store::Rows(sides)) = (&self.plan.top, &mut self.store) else {
            return;
        };
        let Some(index) = &mut self.top else { return };
        let cx = Context { now: i64::MAX };
        let ids: Vec<(i64, u64)> = sides[0].keys().copied().collect();
        for id in ids {
            let Some(row) = sides[0].get(&id) else {
                continue;
            };
            let sort_keys = keys.iter().map(|k| eval(&k.expr, row, &cx)).collect();
            let (keep, beaten) = index.admit(id, sort_keys, true);
            for gone in beaten {
                sides[0].remove(&gone);
            }
            if !keep {
                sides[0].remove(&id);
            }
        }
    }

    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// Series (or retained rows) held now.
    pub fn series(&self) -> usize {
        match &self.store {
            Store::Rows(sides) => sides.iter().map(BTreeMap::len).sum(),
            _ => self.series,
        }
    }

    /// Offers one row of the query's table. `clock` is the event-time clock after this
    /// record, `watermark` the clock less the allowed lateness. A row may be ahead of the
    /// clock: one the clock's guard held (`pipeline/engine/clock.rs`). It takes its place
    /// like any other — a tumbling bin that stays open until the watermark passes it, a
    /// sliding pane or a retained row that results show once the clock gets there — and only
    /// a query without a time filter counts it at once.
    pub fn ingest(&mut self, row: &Row, clock: i64, watermark: i64) {
        self.ingest_from(row, 0, clock, watermark)
    }

    /// [`ingest`](Self::ingest) from the plan's input `input`: a query may read a table
    /// more than once (several `union` legs, both sides of a join), each its own way.
    pub fn ingest_from(&mut self, row: &Row, input: usize, clock: i64, watermark: i64) {
        self.stats.rows_in += 1;
        let plan = self.plan.clone();
        let input = &plan.inputs[input];
        if let Some(w) = plan.side_window(input.side) {
            if !w.contains(row.time, clock) {
                self.stats.outside_window += 1;
                return;
            }
        }
        let cx = Context { now: clock };
        // Each row the operators make of it (none when filtered out, several after an
        // `mv-expand`), borrowed unless an operator changed it.
        apply_pre_each(&input.pre, Cow::Borrowed(&row.values), &cx, &mut |frame| {
            self.absorb(&plan, input.side, row.time, frame, &cx, watermark)
        });
    }

    /// One row after the input's row-by-row operators: kept, or summarized.
    fn absorb(
        &mut self,
        plan: &Plan,
        side: usize,
        time: i64,
        frame: Cow<'_, [Value]>,
        cx: &Context,
        watermark: i64,
    ) {
        match (&plan.stage, &mut self.store) {
            (Stage::Rows { limit }, Store::Rows(sides)) => {
                self.stats.matched += 1;
                self.seq += 1;
                let rows = &mut sides[side];
                let id = (time, self.seq);
                if let (Some(index), 0, Some((keys, _))) = (&mut self.top, side, &plan.top) {
                    let sort_keys = keys.iter().map(|k| eval(&k.expr, &frame, cx)).collect();
                    let newest = rows.last_key_value().is_none_or(|(last, _)| *last < id);
                    let (keep, beaten) = index.admit(id, sort_keys, newest);
                    for gone in beaten {
                        rows.remove(&gone);
                    }
                    if !keep {
                        return;
                    }
                }
                rows.insert(id, frame.into_owned());
                let limit = limit.filter(|_| side == 0);
                let cap = limit.map_or(self.limits.max_rows, |l| l.min(self.limits.max_rows));
                while rows.len() > cap {
                    if let Some((gone, _)) = rows.pop_first() {
                        if let (Some(index), 0) = (&mut self.top, side) {
                            index.remove(gone);
                        }
                    }
                    self.stats.rows_evicted += 1;
                }
            }
            (Stage::Summarize(s), _) => self.summarize(s, time, &frame, cx, watermark),
            _ => unreachable!("store matches stage"),
        }
    }

    fn summarize(
        &mut self,
        s: &Summarize,
        time: i64,
        frame: &[Value],
        cx: &Context,
        watermark: i64,
    ) {
        let bin_key = s.bin.map(|(i, _)| i);
        let key: Key = s
            .keys
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != bin_key)
            .map(|(_, e)| eval(e, frame, cx))
            .collect();
        let new_states = || -> States { s.aggregates.iter().map(AggState::new).collect() };
        let update = |states: &mut States| {
            for (st, agg) in states.iter_mut().zip(&s.aggregates) {
                st.update(agg, frame, cx);
            }
        };
        let max_series = self.limits.max_series;
        let series = &mut self.series;
        let dropped = &mut self.stats.series_dropped;
        // A new series within the cap is counted; one beyond is dropped, and counted.
        let admit = |series: &mut usize, dropped: &mut u64| {
            if *series >= max_series {
                *dropped += 1;
                return false;
            }
            *series += 1;
            true
        };
        match &mut self.store {
            Store::Total(table) => {
                match table.get_or_insert(key, || admit(series, dropped), new_states) {
                    Some(states) => update(states),
                    None => return,
                }
            }
            Store::Sliding(table) => {
                let Some(panes) =
                    table.get_or_insert(key, || admit(series, dropped), Panes::default)
                else {
                    return;
                };
                let at = panes.partition_point(|p| p.max < time);
                if panes.get(at).is_none_or(|p| p.min > time) {
                    self.oldest = self.oldest.min(time);
                    let pane = Pane {
                        min: time,
                        max: time,
                        states: new_states(),
                    };
                    reshape(panes, |v| v.insert(at, pane));
                }
                update(&mut panes[at].states);
                if panes.len() > self.limits.max_panes {
                    reshape(panes, |v| coarsen(v, &s.aggregates));
                    self.stats.pane_merges += 1;
                }
            }
            Store::Tumbling {
                open,
                closed,
                width,
                ..
            } => {
                let start = time::bin(time, *width);
                // A bin closed early (the end of a finite input closes every bin) takes no
                // more rows either: it must never be both open and closed.
                if start.saturating_add(*width) <= watermark || closed.contains_key(&start) {
                    self.stats.late += 1;
                    return;
                }
                match open.entry(start).or_default().entry(key) {
                    Entry::Occupied(e) => update(e.into_mut()),
                    Entry::Vacant(v) => {
                        // Finished bins yield to live ones (as in `advance`): otherwise a query
                        // without a window would stop counting once its history filled the cap.
                        while *series >= max_series {
                            match closed.pop_first() {
                                Some((_, rows)) => *series -= rows.len(),
                                None => break,
                            }
                        }
                        if !admit(series, dropped) {
                            return;
                        }
                        update(v.insert(new_states()));
                    }
                }
            }
            Store::Rows(_) => unreachable!("rows store with summarize"),
        }
        self.stats.matched += 1;
    }

    /// Moves the clock: drops what left the window and closes bins behind the watermark.
    pub fn advance(&mut self, clock: i64, watermark: i64) {
        let window = self.plan.window;
        match &mut self.store {
            Store::Rows(sides) => {
                for (side, rows) in sides.iter_mut().enumerate() {
                    if let Some(w) = self.plan.side_window(side) {
                        while rows
                            .first_key_value()
                            .is_some_and(|((t, _), _)| !w.contains(*t, clock))
                        {
                            if let Some((gone, _)) = rows.pop_first() {
                                if let (Some(index), 0) = (&mut self.top, side) {
                                    index.remove(gone);
                                }
                            }
                        }
                    }
                }
            }
            Store::Total(_) => {}
            Store::Sliding(table) => {
                let Some(w) = window else { return };
                // Panes only merge into later ones, so a front pane's end never moves back.
                if self.oldest != i64::MIN && w.contains(self.oldest, clock) {
                    return;
                }
                let before = table.len();
                let mut oldest = i64::MAX;
                table.retain(|_, panes| {
                    let gone = panes
                        .iter()
                        .take_while(|p| !w.contains(p.max, clock))
                        .count();
                    if gone > 0 {
                        reshape(panes, |v| drop(v.drain(..gone)));
                    }
                    if let Some(p) = panes.first() {
                        oldest = oldest.min(p.max);
                    }
                    !panes.is_empty()
                });
                self.oldest = oldest;
                self.series -= before - table.len();
            }
            Store::Tumbling {
                open,
                closed,
                width,
                ..
            } => {
                while let Some(entry) = open.first_entry() {
                    if entry.key().saturating_add(*width) > watermark {
                        break;
                    }
                    let (start, series) = entry.remove_entry();
                    closed.insert(start, series.into_iter().collect());
                }
                // Closed bins are kept while they overlap the window, and within the series cap.
                if let Some(w) = window {
                    while closed
                        .first_key_value()
                        .is_some_and(|(start, _)| !w.contains(start + *width - 1, clock))
                    {
                        if let Some((_, rows)) = closed.pop_first() {
                            self.series -= rows.len();
                        }
                    }
                }
                while self.series > self.limits.max_series {
                    match closed.pop_first() {
                        Some((_, rows)) => self.series -= rows.len(),
                        None => break,
                    }
                }
            }
        }
    }

    /// Closes every open bin (end of input). The window is still judged by the real clock
    /// when the result is read.
    pub fn flush(&mut self) {
        if let Store::Tumbling { open, closed, .. } = &mut self.store {
            for (start, series) in std::mem::take(open) {
                closed.insert(start, series.into_iter().collect());
            }
        }
    }

    /// The current result, after the operators that follow `summarize`.
    pub fn result(&self, clock: i64) -> ResultTable {
        Self::merged(&self.plan, &self.limits, &[self], clock, Bins::All)
    }

    /// What metrics export: like [`result`](Self::result), but for tumbling bins only the
    /// last closed bin.
    pub fn export(&self, clock: i64) -> ResultTable {
        Self::merged(&self.plan, &self.limits, &[self], clock, Bins::Last)
    }

    /// The starts of the closed tumbling bins after `after` (all of them for `None`), oldest
    /// first; none for other kinds of query.
    pub fn closed_bins(&self, after: Option<i64>) -> impl DoubleEndedIterator<Item = i64> + '_ {
        let closed = match &self.store {
            Store::Tumbling { closed, .. } => Some(closed),
            _ => None,
        };
        let from = match after {
            Some(a) => std::ops::Bound::Excluded(a),
            None => std::ops::Bound::Unbounded,
        };
        closed
            .into_iter()
            .flat_map(move |c| c.range((from, std::ops::Bound::Unbounded)).map(|(k, _)| *k))
    }

    /// The result of one query over several partitions' states (each built from the same
    /// plan): their partial aggregates merged by key, as if one state had absorbed every
    /// partition's rows — exactly for count/sum/avg/min/max/arg_max/arg_min, and for the
    /// sketches as [`AggState::merge`] says. No parts is the result over no rows.
    ///
    /// Retained rows (no `summarize`) are merged by time (ties: partition order, then
    /// arrival), keeping the most recent `max_rows` (or `take`) of them all.
    pub fn merged(
        plan: &Plan,
        limits: &QueryLimits,
        parts: &[&QueryState],
        clock: i64,
        bins: Bins,
    ) -> ResultTable {
        let mut rows: Vec<Vec<Value>> = match &plan.stage {
            Stage::Rows { limit } => retained(plan, limits, parts, clock, 0, *limit),
            Stage::Summarize(s) => summarized(s, plan, parts, clock, bins),
        };
        let read = Read {
            plan,
            limits,
            parts,
            cx: Context { now: clock },
            join_dropped: std::cell::Cell::new(0),
        };
        for op in &plan.post {
            rows = apply_post(op, rows, &read);
        }
        ResultTable {
            columns: plan.output.clone(),
            rows,
            join_dropped: read.join_dropped.get(),
        }
    }
}

/// What operators on a result may need besides its rows: the other sides' retained rows
/// (a join) and the clock.
struct Read<'a> {
    plan: &'a Plan,
    limits: &'a QueryLimits,
    parts: &'a [&'a QueryState],
    cx: Context,
    /// Rows joins left out beyond their bound.
    join_dropped: std::cell::Cell<u64>,
}

/// The rows a side retains, over every part: merged by time (ties: partition order, then
/// arrival), inside the side's window and not ahead of the clock, the most recent
/// `max_rows` (or `limit`) of them.
fn retained(
    plan: &Plan,
    limits: &QueryLimits,
    parts: &[&QueryState],
    clock: i64,
    side: usize,
    limit: Option<usize>,
) -> Vec<Vec<Value>> {
    let window = plan.side_window(side);
    let cap = limit.map_or(limits.max_rows, |l| l.min(limits.max_rows));
    let mut all: Vec<(i64, usize, u64, &Vec<Value>)> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if let Store::Rows(sides) = &part.store {
            // Rows ahead of the clock (held: see `ingest`) wait for it.
            all.extend(
                sides[side]
                    .range(..=(clock, u64::MAX))
                    .filter(|((t, _), _)| window.is_none_or(|w| w.contains(*t, clock)))
                    .map(|((t, seq), r)| (*t, i, *seq, r)),
            );
        }
    }
    all.sort_unstable_by_key(|(t, i, seq, _)| (*t, *i, *seq));
    let skip = all.len().saturating_sub(cap);
    all[skip..].iter().map(|(.., r)| (*r).clone()).collect()
}

/// One series' partial state in one partition: its bin (tumbling only), key and states.
type Partial<'a> = (Option<i64>, &'a [Value], Cow<'a, [AggState]>);

/// The partial states a part contributes to the result: every series of a total; each
/// sliding series' live panes folded into one; the closed bins inside the window (only the
/// one starting at `only` when given).
fn partials<'a>(
    part: &'a QueryState,
    aggs: &'a [Aggregate],
    window: Option<crate::kql::plan::Window>,
    clock: i64,
    only: Option<i64>,
) -> Box<dyn Iterator<Item = Partial<'a>> + 'a> {
    match &part.store {
        Store::Total(table) => Box::new(
            table
                .iter()
                .map(|(k, st)| (None, &k[..], Cow::Borrowed(&st[..]))),
        ),
        Store::Sliding(table) => {
            let Some(w) = window else {
                return Box::new(std::iter::empty());
            };
            Box::new(table.iter().filter_map(move |(k, panes)| {
                // Panes ahead of the clock (held records) wait for it.
                let mut live = panes
                    .iter()
                    .filter(|p| w.contains(p.max, clock) && p.min <= clock);
                let first = live.next()?;
                let mut acc: Option<States> = None;
                for p in live {
                    let acc = acc.get_or_insert_with(|| first.states.clone());
                    merge_states(acc, &p.states, aggs);
                }
                let states = match acc {
                    Some(acc) => Cow::Owned(acc.into_vec()),
                    None => Cow::Borrowed(&first.states[..]),
                };
                Some((None, &k[..], states))
            }))
        }
        Store::Tumbling { closed, width, .. } => {
            let width = *width;
            let range = match only {
                Some(start) => closed.range(start..=start),
                None => closed.range(..),
            };
            Box::new(
                range
                    .filter(move |(start, _)| {
                        window.is_none_or(|w| w.contains(**start + width - 1, clock))
                    })
                    .flat_map(|(start, series)| {
                        series
                            .iter()
                            .map(move |(k, st)| (Some(*start), &k[..], Cow::Borrowed(&st[..])))
                    }),
            )
        }
        Store::Rows(_) => Box::new(std::iter::empty()),
    }
}

/// The rows of a `summarize`, from the partials of every part, merged by (bin, key) when
/// there is more than one part.
fn summarized(
    s: &Summarize,
    plan: &Plan,
    parts: &[&QueryState],
    clock: i64,
    bins: Bins,
) -> Vec<Vec<Value>> {
    let aggs = &s.aggregates[..];
    // The last closed bin over every part: a part whose newest bin is older contributes
    // nothing to it, as a single state would not have had its rows in that bin either.
    let only = match bins {
        Bins::All => None,
        Bins::Last => parts
            .iter()
            .filter_map(|p| p.closed_bins(None).next_back())
            .max(),
        Bins::At(start) => Some(start),
    };
    let bin_index = s.bin.map(|(i, _)| i);
    let row = |bin: Option<i64>, key: &[Value], states: &[AggState]| -> (i64, Vec<Value>) {
        let at = bin_index
            .zip(bin)
            .map(|(i, start)| (i, Value::DateTime(start)));
        (bin.unwrap_or(0), with_key(key, at, finish(states, aggs)))
    };
    let mut out: Vec<(i64, Vec<Value>)> = if let [part] = parts {
        partials(part, aggs, plan.window, clock, only)
            .map(|(bin, key, states)| row(bin, key, &states))
            .collect()
    } else {
        let mut merged: HashMap<(Option<i64>, &[Value]), States, FxBuildHasher> =
            HashMap::default();
        for part in parts {
            for (bin, key, states) in partials(part, aggs, plan.window, clock, only) {
                match merged.entry((bin, key)) {
                    Entry::Occupied(e) => merge_states(e.into_mut(), &states, aggs),
                    Entry::Vacant(v) => {
                        v.insert(States::from(states.into_owned()));
                    }
                }
            }
        }
        merged
            .iter()
            .map(|((bin, key), states)| row(*bin, key, states))
            .collect()
    };
    // Kusto: `summarize count()` without `by` over no rows is one row of zeros (not for
    // bins: no bin, no row).
    if out.is_empty() && s.keys.is_empty() {
        let empty: States = aggs.iter().map(AggState::new).collect();
        out.push((0, finish(&empty, aggs)));
    }
    out.sort_by(|(a_bin, a), (b_bin, b)| a_bin.cmp(b_bin).then_with(|| compare_rows(a, b)));
    out.into_iter().map(|(_, r)| r).collect()
}

fn merge_states(acc: &mut [AggState], other: &[AggState], aggs: &[Aggregate]) {
    for ((a, b), agg) in acc.iter_mut().zip(other).zip(aggs) {
        a.merge(b, agg.func);
    }
}

/// Row-at-a-time operators; borrows the row unless an operator must change it. After an
/// `mv-expand` (which routes refuse) only its first row goes on.
pub(crate) fn apply_pre<'a>(
    ops: &[RowOp],
    row: &'a [Value],
    cx: &Context,
) -> Option<Cow<'a, [Value]>> {
    let mut frame: Cow<'a, [Value]> = Cow::Borrowed(row);
    for (at, op) in ops.iter().enumerate() {
        match op {
            RowOp::MvExpand(_) => {
                let mut first = None;
                apply_pre_each(&ops[at..], frame, cx, &mut |f| {
                    first.get_or_insert_with(|| f.into_owned());
                });
                return first.map(Cow::Owned);
            }
            RowOp::Filter(p) => {
                if !is_true(p, &frame, cx) {
                    return None;
                }
            }
            RowOp::Extend(items) => {
                let f = frame.to_mut();
                extend(f, items, cx);
            }
            RowOp::Project(exprs) => {
                let next: Vec<Value> = exprs.iter().map(|e| eval(e, &frame, cx)).collect();
                frame = Cow::Owned(next);
            }
        }
    }
    Some(frame)
}

/// Row-at-a-time operators, `mv-expand` among them: `f` gets each row they make of `frame`.
pub(crate) fn apply_pre_each<F: FnMut(Cow<'_, [Value]>)>(
    ops: &[RowOp],
    mut frame: Cow<'_, [Value]>,
    cx: &Context,
    f: &mut F,
) {
    for (at, op) in ops.iter().enumerate() {
        match op {
            RowOp::Filter(p) => {
                if !is_true(p, &frame, cx) {
                    return;
                }
            }
            RowOp::Extend(items) => extend(frame.to_mut(), items, cx),
            RowOp::Project(exprs) => {
                frame = Cow::Owned(exprs.iter().map(|e| eval(e, &frame, cx)).collect());
            }
            RowOp::MvExpand(m) => {
                for row in mv_expand(m, &frame, cx) {
                    apply_pre_each(&ops[at + 1..], Cow::Owned(row), cx, f);
                }
                return;
            }
        }
    }
    f(frame)
}

/// The rows `mv-expand` makes of one row.
fn mv_expand(m: &MvExpand, row: &[Value], cx: &Context) -> Vec<Vec<Value>> {
    let lists: Vec<Vec<Value>> = m
        .items
        .iter()
        .map(|(_, e, ty)| elements(eval(e, row, cx), m.bags_as_arrays, *ty))
        .collect();
    let n = lists.iter().map(Vec::len).max().unwrap_or(0).min(m.limit);
    (0..n)
        .map(|i| {
            let mut out = row.to_vec();
            for ((slot, ..), list) in m.items.iter().zip(&lists) {
                let v = list.get(i).cloned().unwrap_or_default();
                match slot {
                    Some(s) => out[*s] = v,
                    None => out.push(v),
                }
            }
            if m.index {
                out.push(Value::Long(i as i64));
            }
            out
        })
        .collect()
}

/// An array's elements, a bag's properties (`{key: value}`, or `[key, value]`), or the
/// value itself; converted to `ty` when given.
fn elements(v: Value, bags_as_arrays: bool, ty: Option<Type>) -> Vec<Value> {
    let json: Vec<serde_json::Value> = match &v {
        Value::Dynamic(d) => match &**d {
            serde_json::Value::Array(items) => items.clone(),
            serde_json::Value::Object(bag) => bag
                .iter()
                .map(|(k, x)| {
                    if bags_as_arrays {
                        serde_json::json!([k, x])
                    } else {
                        serde_json::json!({ k: x })
                    }
                })
                .collect(),
            _ => return vec![cast(v, ty)],
        },
        _ => return vec![cast(v, ty)],
    };
    json.into_iter()
        .map(|j| match ty {
            None => Value::Dynamic(Arc::new(j)),
            Some(_) => cast(Value::from_json(&j), ty),
        })
        .collect()
}

fn cast(v: Value, ty: Option<Type>) -> Value {
    match ty {
        None | Some(Type::Dynamic) => match v {
            Value::Null | Value::Dynamic(_) => v,
            other => Value::Dynamic(Arc::new(other.to_json())),
        },
        Some(t) => crate::kql::eval::convert(v, t),
    }
}

fn extend(f: &mut Vec<Value>, items: &[(Option<usize>, crate::kql::plan::Expr)], cx: &Context) {
    for (slot, e) in items {
        let v = eval(e, f, cx);
        match slot {
            Some(i) => f[*i] = v,
            None => f.push(v),
        }
    }
}

fn apply_post(op: &TableOp, rows: Vec<Vec<Value>>, read: &Read<'_>) -> Vec<Vec<Value>> {
    let cx = &read.cx;
    match op {
        TableOp::Summarize(s) => summarize_rows(s, &rows, cx),
        TableOp::MvExpand(m) => rows.iter().flat_map(|r| mv_expand(m, r, cx)).collect(),
        TableOp::Join(j) => {
            let mut right = retained(read.plan, read.limits, read.parts, cx.now, j.side, None);
            for op in &j.right {
                right = apply_post(op, right, read);
            }
            let (out, dropped) = join(j, rows, right, join_bound(read.limits));
            read.join_dropped.set(read.join_dropped.get() + dropped);
            out
        }
        TableOp::Filter(p) => rows.into_iter().filter(|r| is_true(p, r, cx)).collect(),
        TableOp::Extend(items) => rows
            .into_iter()
            .map(|mut r| {
                extend(&mut r, items, cx);
                r
            })
            .collect(),
        TableOp::Project(exprs) => rows
            .iter()
            .map(|r| exprs.iter().map(|e| eval(e, r, cx)).collect())
            .collect(),
        TableOp::Take(n) => rows.into_iter().take(*n).collect(),
        TableOp::Count => vec![vec![Value::Long(rows.len() as i64)]],
        TableOp::Distinct => {
            // Which rows come first among their equals, without cloning any.
            let first: Vec<bool> = {
                let mut seen = std::collections::HashSet::new();
                rows.iter().map(|r| seen.insert(&r[..])).collect()
            };
            rows.into_iter()
                .zip(first)
                .filter_map(|(r, first)| first.then_some(r))
                .collect()
        }
        TableOp::Sort(keys) => {
            let mut keyed: Vec<(Vec<Value>, Vec<Value>)> = rows
                .into_iter()
                .map(|r| (keys.iter().map(|k| eval(&k.expr, &r, cx)).collect(), r))
                .collect();
            keyed.sort_by(|(a, _), (b, _)| {
                keys.iter()
                    .zip(a.iter().zip(b))
                    .map(|(k, (x, y))| sort_order(k, x, y))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            keyed.into_iter().map(|(_, r)| r).collect()
        }
    }
}

/// `summarize` over a result's rows: its groups in key order, as a streamed one gives them.
fn summarize_rows(s: &Summarize, rows: &[Vec<Value>], cx: &Context) -> Vec<Vec<Value>> {
    let mut groups: HashMap<Key, States, FxBuildHasher> = HashMap::default();
    for row in rows {
        let key: Key = s.keys.iter().map(|e| eval(e, row, cx)).collect();
        let states = groups
            .entry(key)
            .or_insert_with(|| s.aggregates.iter().map(AggState::new).collect());
        for (st, agg) in states.iter_mut().zip(&s.aggregates) {
            st.update(agg, row, cx);
        }
    }
    if groups.is_empty() && s.keys.is_empty() {
        let empty: States = s.aggregates.iter().map(AggState::new).collect();
        return vec![finish(&empty, &s.aggregates)];
    }
    let mut out: Vec<Vec<Value>> = groups
        .iter()
        .map(|(key, states)| with_key(key, None, finish(states, &s.aggregates)))
        .collect();
    out.sort_by(|a, b| compare_rows(a, b));
    out
}

/// A join of a result's rows (left) with a side's (right), by equal keys; a null key
/// matches nothing. Left rows keep their order, each followed by its matches in the
/// right's order; then (outer kinds) the right rows nothing matched.
fn join(
    j: &Join,
    left: Vec<Vec<Value>>,
    right: Vec<Vec<Value>>,
    bound: usize,
) -> (Vec<Vec<Value>>, u64) {
    let mut dropped = 0u64;
    // Counts what the bound leaves out instead of making it.
    let mut room = |made: usize, n: usize| -> usize {
        let fits = n.min(bound.saturating_sub(made));
        dropped += (n - fits) as u64;
        fits
    };
    let key_of = |row: &[Value], left_side: bool| -> Option<Vec<Value>> {
        j.keys
            .iter()
            .map(|&(l, r)| {
                let v = &row[if left_side { l } else { r }];
                (!v.is_null()).then(|| v.clone())
            })
            .collect()
    };
    let mut index: HashMap<Vec<Value>, Vec<usize>, FxBuildHasher> = HashMap::default();
    for (i, r) in right.iter().enumerate() {
        if let Some(k) = key_of(r, false) {
            index.entry(k).or_default().push(i);
        }
    }
    let left_width = left.first().map_or(0, Vec::len);
    let pick = |r: Option<&Vec<Value>>| -> Vec<Value> {
        j.right_columns
            .iter()
            .map(|&c| r.map_or(Value::Null, |r| r[c].clone()))
            .collect()
    };
    let mut matched_right = vec![false; right.len()];
    let mut out = Vec::new();
    let mut seen: std::collections::HashSet<Vec<Value>> = Default::default();
    for l in left {
        let key = key_of(&l, true);
        if j.kind == JoinKind::InnerUnique {
            match &key {
                Some(k) if !seen.insert(k.clone()) => continue,
                _ => {}
            }
        }
        let matches: &[usize] = key
            .as_ref()
            .and_then(|k| index.get(k))
            .map_or(&[], |m| &m[..]);
        for &m in matches {
            matched_right[m] = true;
        }
        match j.kind {
            JoinKind::LeftSemi if !matches.is_empty() => out.push(l),
            JoinKind::LeftAnti if matches.is_empty() => out.push(l),
            JoinKind::LeftSemi | JoinKind::LeftAnti | JoinKind::RightSemi | JoinKind::RightAnti => {
            }
            JoinKind::LeftOuter | JoinKind::FullOuter if matches.is_empty() => {
                if room(out.len(), 1) == 1 {
                    let mut row = l;
                    row.extend(pick(None));
                    out.push(row);
                }
            }
            _ => {
                let fits = room(out.len(), matches.len());
                for &m in &matches[..fits] {
                    let mut row = l.clone();
                    row.extend(pick(Some(&right[m])));
                    out.push(row);
                }
            }
        }
    }
    let out = match j.kind {
        JoinKind::RightSemi | JoinKind::RightAnti => {
            let semi = j.kind == JoinKind::RightSemi;
            right
                .into_iter()
                .zip(matched_right)
                .filter(|(_, m)| *m == semi)
                .map(|(r, _)| r)
                .collect()
        }
        JoinKind::RightOuter | JoinKind::FullOuter => {
            for (r, m) in right.iter().zip(matched_right) {
                if !m && room(out.len(), 1) == 1 {
                    let mut row = vec![Value::Null; left_width];
                    row.extend(pick(Some(r)));
                    out.push(row);
                }
            }
            out
        }
        _ => out,
    };
    (out, dropped)
}

/// Kusto's order for one sort key: nulls where the key says, the rest by value, reversed
/// when descending.
fn sort_order(key: &SortBy, a: &Value, b: &Value) -> std::cmp::Ordering {
    order_by(key.desc, key.nulls_first, a, b)
}

/// [`sort_order`] by a key's direction alone.
fn order_by(desc: bool, nulls_first: bool, a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_null(), b.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) if nulls_first => Ordering::Less,
        (true, false) => Ordering::Greater,
        (false, true) => order_by(desc, nulls_first, b, a).reverse(),
        (false, false) if desc => compare_for_sort(a, b).reverse(),
        (false, false) => compare_for_sort(a, b),
    }
}

fn finish(states: &[AggState], aggs: &[Aggregate]) -> Vec<Value> {
    let mut out = Vec::with_capacity(states.len());
    for (st, agg) in states.iter().zip(aggs) {
        st.finish(agg, &mut out);
    }
    out
}

/// Output row: the `by` columns (with the bin start put back at its place), then aggregates.
fn with_key(key: &[Value], bin: Option<(usize, Value)>, aggs: Vec<Value>) -> Vec<Value> {
    let mut row = Vec::with_capacity(key.len() + 1 + aggs.len());
    row.extend(key.iter().cloned());
    if let Some((i, v)) = bin {
        row.insert(i.min(row.len()), v);
    }
    row.extend(aggs);
    row
}

fn compare_rows(a: &[Value], b: &[Value]) -> std::cmp::Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| compare_for_sort(x, y))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

fn plan_top(plan: &Plan) -> Option<TopIndex> {
    let (keys, n) = plan.top.as_ref()?;
    Some(TopIndex::new(keys, *n))
}

/// Changes a series' panes as a vector, and boxes them again without spare room.
fn reshape(panes: &mut Panes, change: impl FnOnce(&mut Vec<Pane>)) {
    let mut v = std::mem::take(panes).into_vec();
    // Growing by exactly one: doubling would leave up to half of every series' panes
    // unused (a million series, two panes each: 64 MB).
    v.reserve_exact(1);
    change(&mut v);
    *panes = v.into_boxed_slice();
}

/// Halves a series' panes by merging neighbours, so that its memory stays bounded.
fn coarsen(panes: &mut Vec<Pane>, aggs: &[Aggregate]) {
    let old = std::mem::take(panes);
    let mut it = old.into_iter();
    while let Some(mut a) = it.next() {
        if let Some(b) = it.next() {
            merge_states(&mut a.states, &b.states, aggs);
            a.max = b.max;
        }
        panes.push(a);
    }
}
