//! The compiled form of a query: names resolved to column indexes, every expression typed,
//! and the query split into the three stages the streaming engine runs:
//!
//! 1. `pre`: row-at-a-time operators (`where`, `extend`, `project`) applied as records arrive;
//! 2. `stage`: either keep the matching rows (bounded) or `summarize` them into series;
//! 3. `post`: operators after `summarize`, applied to the result table when it is read.
//!
//! The time filter (`where TimeGenerated > ago(X)`) is lifted out of `pre` into `window`, and
//! a `bin(TimeGenerated, X)` key into `Summarize::bin`: those become event-time windows.

use std::sync::Arc;

use crate::schema::TableId;
use crate::value::{Type, Value};

pub use super::ast::JoinKind;
use super::ast::{BinaryOp, StrOp};
pub use crate::time::Calendar;

#[derive(Debug, Clone)]
pub struct Plan {
    /// Where rows come from: a table, each table of a `union`, and the inputs of the right
    /// side of every `join`.
    pub inputs: Vec<Input>,
    /// The sliding window of the query's own rows (side 0).
    pub window: Option<Window>,
    /// The windows of the right sides of joins: `side_windows[s - 1]` for side `s`.
    pub side_windows: Vec<Option<Window>>,
    pub stage: Stage,
    /// `top N by …` straight on the rows (`Stage::Rows`, side 0): a row that N newer rows
    /// beat can never be in the result again, and is dropped as soon as they arrive.
    pub top: Option<(Vec<SortBy>, usize)>,
    pub post: Vec<TableOp>,
    /// The result's columns, in order.
    pub output: Vec<OutColumn>,
    /// The chart of a final `render` (`timechart`, …): a hint for those who draw the
    /// result, which it does not change.
    pub render: Option<Arc<str>>,
}

/// One table a query reads, and what happens to its rows before they are kept.
#[derive(Debug, Clone)]
pub struct Input {
    pub table: TableId,
    /// The table's columns this input reads (for the parser's projection).
    pub reads: Vec<bool>,
    /// Row-at-a-time operators, applied as records arrive: the input's own, the projection
    /// onto a `union`'s columns, and those after it.
    pub pre: Vec<RowOp>,
    /// 0: the query's own rows, which go to its [`Stage`]; `s` ≥ 1: the rows of the right
    /// side of a join, retained (within their window and `max_rows`) for [`TableOp::Join`].
    pub side: usize,
}

/// A sliding window: rows with `TimeGenerated > clock - length` (or `>=` when inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub length: i64,
    pub inclusive: bool,
}

impl Window {
    /// Whether a row at `time` is inside the window when the clock reads `clock`.
    pub fn contains(&self, time: i64, clock: i64) -> bool {
        let edge = clock.saturating_sub(self.length);
        if self.inclusive {
            time >= edge
        } else {
            time > edge
        }
    }
}

#[derive(Debug, Clone)]
pub struct OutColumn {
    pub name: Arc<str>,
    pub ty: Type,
    /// A `by` column of `summarize` (exported as a Prometheus label).
    pub is_key: bool,
}

#[derive(Debug, Clone)]
pub enum RowOp {
    Filter(Expr),
    /// Appends (or, for an existing name, replaces) columns.
    Extend(Vec<(Option<usize>, Expr)>),
    /// Builds a new row from expressions.
    Project(Vec<Expr>),
    /// One row per element of arrays (or property of bags).
    MvExpand(MvExpand),
}

/// `mv-expand`: a row per element, the arrays side by side (the shorter padded with nulls),
/// at most `limit` rows per row. An empty array gives no row; a value that is neither an
/// array nor a bag, one row with it.
#[derive(Debug, Clone)]
pub struct MvExpand {
    /// Each expanded value: the column it replaces (`None`: appended), its expression, and
    /// the type its elements take (`None`: dynamic).
    pub items: Vec<(Option<usize>, Expr, Option<Type>)>,
    /// A bag's properties as `[key, value]` (`bagexpansion=array`), not `{key: value}`.
    pub bags_as_arrays: bool,
    /// Appends each element's index (`with_itemindex`).
    pub index: bool,
    pub limit: usize,
}

#[derive(Debug, Clone)]
pub enum Stage {
    /// Keep the most recent matching rows (at most `limit`, when `take` asked for fewer than
    /// the configured cap).
    Rows {
        limit: Option<usize>,
    },
    Summarize(Summarize),
}

#[derive(Debug, Clone)]
pub struct Summarize {
    /// `by` expressions, evaluated per row (the bin key, if any, is among them).
    pub keys: Vec<Expr>,
    /// `bin(TimeGenerated, width)`: index into `keys` and the bin width in ticks.
    pub bin: Option<(usize, i64)>,
    pub aggregates: Vec<Aggregate>,
    /// How many output columns each aggregate produces (arg_max/arg_min can produce many).
    pub widths: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Aggregate {
    pub func: AggFunc,
    /// The main argument (absent for `count()` and `countif`'s value).
    pub arg: Option<Expr>,
    /// The predicate of the `*if` forms.
    pub predicate: Option<Expr>,
    /// Columns carried by `arg_max`/`arg_min`.
    pub carried: Vec<Expr>,
    /// Type of the aggregated argument.
    pub arg_type: Option<Type>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggFunc {
    Count,
    CountIf,
    Sum,
    SumIf,
    Avg,
    AvgIf,
    Min,
    Max,
    DCount {
        precision: u8,
    },
    ArgMax,
    ArgMin,
    Percentile {
        p: f64,
    },
    /// `stdev`/`variance` (sample, Bessel's correction) and `stdevp`/`variancep`.
    Spread {
        root: bool,
        sample: bool,
    },
    /// `make_set` (`distinct`) and `make_list`: at most `cap` values, in arrival order;
    /// `make_bag` (`bag`): the properties of the bags, at most `cap` of them, the first
    /// value of a key kept.
    Collect {
        distinct: bool,
        cap: u32,
        bag: bool,
    },
}

#[derive(Debug, Clone)]
pub enum TableOp {
    Filter(Expr),
    Extend(Vec<(Option<usize>, Expr)>),
    Project(Vec<Expr>),
    Take(usize),
    Count,
    /// `sort`/`order by` (and the first half of `top`): stable, so ties keep their order.
    Sort(Vec<SortBy>),
    /// `distinct` of a result: the first of equal rows.
    Distinct,
    /// A `summarize` of the rows so far (after a join, or a second one): its `bin` is
    /// `None`, a bin key being an ordinary expression here.
    Summarize(Summarize),
    MvExpand(MvExpand),
    /// A join with the retained rows of `side`, after the operators `right` applies to
    /// them.
    Join(Join),
}

#[derive(Debug, Clone)]
pub struct Join {
    pub kind: JoinKind,
    pub side: usize,
    pub right: Vec<TableOp>,
    /// Pairs of equal columns: (left, right).
    pub keys: Vec<(usize, usize)>,
    /// The right columns the result carries after the left ones (for kinds that keep both).
    pub right_columns: Vec<usize>,
}

/// One key of a sort: its expression, direction, and where nulls go.
#[derive(Debug, Clone)]
pub struct SortBy {
    pub expr: Expr,
    pub desc: bool,
    pub nulls_first: bool,
}

/// A typed scalar expression over a row.
#[derive(Debug, Clone)]
pub enum Expr {
    Literal(Value),
    Column(usize),
    /// The event-time clock (`now()`).
    Now,
    Unary {
        neg: bool,
        expr: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    In {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
        case_insensitive: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    Member {
        expr: Box<Expr>,
        name: Arc<str>,
    },
    Index {
        expr: Box<Expr>,
        index: Box<Expr>,
    },
    Call {
        func: Func,
        args: Vec<Expr>,
    },
    /// `text matches regex "…"` (a bool), or `extract("…", group, text)` (the group's text).
    Regex {
        re: Arc<regex::Regex>,
        text: Box<Expr>,
        group: Option<usize>,
    },
}

/// Functions of one number that give a real (`ceiling` keeps a whole number whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MathFn {
    Ceiling,
    Sqrt,
    Ln,
    Log10,
    Log2,
    Exp,
    Exp2,
    Exp10,
}

/// Built-in scalar functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Ago,
    Bin,
    Iif,
    Case,
    Not,
    ToString,
    ToLong,
    ToReal,
    ToBool,
    ToDateTime,
    ToTimeSpan,
    Split,
    StrCat,
    ToLower,
    ToUpper,
    IsEmpty,
    IsNotEmpty,
    IsNull,
    IsNotNull,
    StrLen,
    Abs,
    Round,
    Floor,
    Coalesce,
    ParseJson,
    /// `startofday`, `startofweek`, … (an optional offset in units).
    StartOf(Calendar),
    EndOf(Calendar),
    /// `datetime_part(part, t)`.
    DateTimePart,
    /// `getyear`, `getmonth`, `dayofmonth`, `hourofday`, …: one `datetime_part`.
    Part(&'static str),
    /// `dayofweek`: days since Sunday, as a timespan.
    DayOfWeek,
    DateTimeAdd,
    FormatDateTime,
    Math(MathFn),
    Pow,
    MinOf,
    MaxOf,
    Substring,
    IndexOf,
    Reverse,
    ArrayLength,
    PackArray,
    BagPack,
    /// `hash(x[, mod])`: XXH64 of a string's UTF-8 bytes or a datetime's .NET ticks.
    Hash,
    /// `unixtime_seconds_todatetime` and the other units: ticks per unit.
    FromUnixTime(i64),
    ReplaceString,
    StrCatArray,
    BinAt,
    DateTimeDiff,
}

impl Plan {
    /// The window of a side's rows.
    pub fn side_window(&self, side: usize) -> Option<Window> {
        match side {
            0 => self.window,
            s => self.side_windows[s - 1],
        }
    }

    /// How many sides keep rows: 1 plus the right sides of joins.
    pub fn sides(&self) -> usize {
        1 + self.side_windows.len()
    }

    /// The names of the result columns.
    pub fn column_names(&self) -> Vec<Arc<str>> {
        self.output.iter().map(|c| c.name.clone()).collect()
    }
}

/// String operator helper shared by the evaluator: `has` matches whole terms.
pub fn str_op_matches(op: StrOp, cs: bool, haystack: &str, needle: &str) -> bool {
    if cs {
        match op {
            StrOp::Contains => haystack.contains(needle),
            StrOp::StartsWith => haystack.starts_with(needle),
            StrOp::EndsWith => haystack.ends_with(needle),
            StrOp::Has => has_term(haystack, needle, true),
        }
    } else {
        match op {
            StrOp::Contains => contains_ci(haystack, needle),
            StrOp::StartsWith => {
                haystack.len() >= needle.len()
                    && haystack.is_char_boundary(needle.len())
                    && haystack[..needle.len()].eq_ignore_ascii_case(needle)
                    || haystack.to_lowercase().starts_with(&needle.to_lowercase())
            }
            StrOp::EndsWith => {
                let cut = haystack.len().wrapping_sub(needle.len());
                haystack.len() >= needle.len()
                    && haystack.is_char_boundary(cut)
                    && haystack[cut..].eq_ignore_ascii_case(needle)
                    || haystack.to_lowercase().ends_with(&needle.to_lowercase())
            }
            StrOp::Has => has_term(haystack, needle, false),
        }
    }
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if haystack.is_ascii() && needle.is_ascii() {
        let n = needle.as_bytes();
        return haystack
            .as_bytes()
            .windows(n.len())
            .any(|w| w.eq_ignore_ascii_case(n));
    }
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// KQL `has`: the needle occurs as a whole term, i.e. bounded by non-alphanumeric characters
/// (or the ends of the string). An empty needle matches.
fn has_term(haystack: &str, needle: &str, cs: bool) -> bool {
    if needle.is_empty() {
        return true;
    }
    let (h, n) = if cs {
        (haystack.to_string(), needle.to_string())
    } else {
        (haystack.to_lowercase(), needle.to_lowercase())
    };
    let is_word = |c: char| c.is_alphanumeric();
    let mut start = 0;
    while let Some(pos) = h[start..].find(&n) {
        let at = start + pos;
        let before_ok = h[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !is_word(c) || !n.starts_with(is_word));
        let after_ok = h[at + n.len()..]
            .chars()
            .next()
            .is_none_or(|c| !is_word(c) || !n.ends_with(is_word));
        if before_ok && after_ok {
            return true;
        }
        start = at + h[at..].chars().next().map_or(1, |c| c.len_utf8());
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_matches_whole_terms_only() {
        assert!(str_op_matches(
            StrOp::Has,
            false,
            "Job failed: disk full",
            "FAILED"
        ));
        assert!(!str_op_matches(StrOp::Has, false, "Job failedx", "failed"));
        assert!(!str_op_matches(StrOp::Has, true, "Job failed", "FAILED"));
        assert!(str_op_matches(StrOp::Has, false, "a/b/c", "b"));
    }

    #[test]
    fn case_insensitive_prefix_suffix_contains() {
        assert!(str_op_matches(
            StrOp::StartsWith,
            false,
            "STANDARD_D1_V2",
            "standard"
        ));
        assert!(str_op_matches(
            StrOp::EndsWith,
            false,
            "STANDARD_D1_V2",
            "_v2"
        ));
        assert!(str_op_matches(
            StrOp::Contains,
            false,
            "STANDARD_D1_V2",
            "d1"
        ));
        assert!(!str_op_matches(
            StrOp::Contains,
            true,
            "STANDARD_D1_V2",
            "d1"
        ));
        assert!(str_op_matches(StrOp::EndsWith, false, "ä", "Ä"));
    }

    #[test]
    fn window_edges() {
        let w = Window {
            length: 10,
            inclusive: false,
        };
        assert!(!w.contains(90, 100));
        assert!(w.contains(91, 100));
        let w = Window {
            length: 10,
            inclusive: true,
        };
        assert!(w.contains(90, 100));
    }
}
