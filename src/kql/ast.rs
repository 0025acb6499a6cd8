//! The syntax tree of a KQL query, exactly as written: names are not yet resolved against
//! a table and nothing is typed. `check` turns it into a typed plan; the parser produces it.
//!
//! Every node carries a [`Span`] (byte offsets into the query text) so that the checker can
//! point at the exact place of an error.

/// Byte range `[start, end)` in the query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// A name as written (table, column, function, alias).
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// `let …; Tabular`
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// `let Name = …;` statements before the query, in order.
    pub lets: Vec<Let>,
    pub body: Tabular,
}

/// `let Name = Value;`
#[derive(Debug, Clone, PartialEq)]
pub struct Let {
    pub name: Ident,
    pub value: LetValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LetValue {
    /// A scalar: `let window = 1d;`. A bare name (`let T = AzureMetrics;`) is parsed as one
    /// and resolved by the checker, which knows the tables.
    Scalar(Expr),
    /// A tabular expression: `let failed = AmlComputeJobEvent | where …;`.
    Tabular(Tabular),
    /// `let f = (x: long, n: timespan = 1d) { … };`
    Function(Function),
}

/// A `let` function: its parameters and a scalar or tabular body, put in place of each call
/// with the arguments in place of the parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub params: Vec<Param>,
    pub body: FunctionBody,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub ty: Ident,
    pub default: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FunctionBody {
    Scalar(Expr),
    Tabular(Tabular),
}

/// A tabular expression: `Source | op | op …`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tabular {
    pub source: Source,
    pub ops: Vec<Operator>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A table, or the name of a tabular `let`.
    Name(Ident),
    /// `union …` at the start of a tabular expression.
    Union(Union),
    /// `( Tabular )`.
    Sub(Box<Tabular>),
    /// A call of a tabular `let` function: `recent(1d)`.
    Call { name: Ident, args: Vec<Expr> },
}

/// `union [kind = inner | outer] [withsource = Column] Leg, …`
#[derive(Debug, Clone, PartialEq)]
pub struct Union {
    /// `kind=inner`: only the columns every leg has; by default (`outer`) all of them.
    pub inner: bool,
    /// A column naming the table each row came from.
    pub withsource: Option<Ident>,
    pub legs: Vec<Tabular>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MvExpand {
    /// The arrays (or bags) expanded side by side, each with the type its elements take.
    pub items: Vec<(NamedExpr, Option<Ident>)>,
    /// `bagexpansion=array`: a bag's properties as `[key, value]` rather than `{key: value}`.
    pub bags_as_arrays: bool,
    pub index: Option<Ident>,
    pub limit: Option<Expr>,
}

/// `parse`: new columns cut out of a string by a pattern of literals and columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Parse {
    pub expr: Expr,
    /// `kind=regex`: the literals are regular expressions.
    pub regex: bool,
    /// `flags=` of `kind=regex` (`i`, `m`, `s`, `U`).
    pub flags: String,
    pub pattern: Vec<ParsePart>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ParsePart {
    /// `*`: any text, skipped.
    Any,
    Literal(String),
    /// A new column, and its type when given (`Count:long`).
    Column(Ident, Option<Ident>),
}

/// `join`'s and `lookup`'s kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Kusto's default: the left side de-duplicated on the key, then `inner`.
    InnerUnique,
    Inner,
    LeftOuter,
    RightOuter,
    FullOuter,
    LeftAnti,
    RightAnti,
    LeftSemi,
    RightSemi,
}

impl JoinKind {
    pub const ALL: [(&'static str, JoinKind); 12] = [
        ("innerunique", JoinKind::InnerUnique),
        ("inner", JoinKind::Inner),
        ("leftouter", JoinKind::LeftOuter),
        ("rightouter", JoinKind::RightOuter),
        ("fullouter", JoinKind::FullOuter),
        ("leftanti", JoinKind::LeftAnti),
        ("anti", JoinKind::LeftAnti),
        ("leftantisemi", JoinKind::LeftAnti),
        ("rightanti", JoinKind::RightAnti),
        ("rightantisemi", JoinKind::RightAnti),
        ("leftsemi", JoinKind::LeftSemi),
        ("rightsemi", JoinKind::RightSemi),
    ];
}

/// One equality of a join's `on`: `Col` (the same name on both sides) or
/// `$left.A == $right.B`.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinKey {
    pub left: Ident,
    pub right: Ident,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    pub kind: OperatorKind,
    /// From the operator keyword to the end of its last argument.
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OperatorKind {
    /// `where Predicate` (also `filter`).
    Where(Expr),
    /// `extend [Name =] Expr, ...`
    Extend(Vec<NamedExpr>),
    /// `project [Name =] Expr, ...`
    Project(Vec<NamedExpr>),
    /// `project-away Col, ...`
    ProjectAway(Vec<Ident>),
    /// `summarize [Name =] Agg, ... [by [Name =] Expr, ...]`
    Summarize {
        aggregates: Vec<NamedExpr>,
        by: Vec<NamedExpr>,
    },
    /// `count`
    Count,
    /// `take N` / `limit N`
    Take(Expr),
    /// `sort by Key, ...` / `order by Key, ...`
    Sort(Vec<SortKey>),
    /// `top N by Key, ...`: `sort` then `take`.
    Top { count: Expr, by: Vec<SortKey> },
    /// `project-rename New = Old, ...`
    ProjectRename(Vec<(Ident, Ident)>),
    /// `distinct Col, ...`
    Distinct(Vec<Ident>),
    /// `project-reorder Col, ...`: those first, in that order, then the others as they were.
    ProjectReorder(Vec<Ident>),
    /// `as Name`: names the result for later statements; a single query has none.
    As(Ident),
    /// `render Chart [with (...)]`: how Log Analytics draws the result; a hint here, the
    /// result is the same.
    Render(Ident),
    /// `parse [kind = simple | regex [flags = …]] Expr with Pattern`
    Parse(Parse),
    /// `mv-expand [bagexpansion = bag | array] [with_itemindex = Name] [Name =] Expr
    /// [to typeof(Type)], … [limit N]`
    MvExpand(MvExpand),
    /// `| union Leg, …`: the rows piped in, then each leg's.
    Union(Union),
    /// `join [kind = K] (Right) on Key, …`
    Join {
        kind: JoinKind,
        right: Tabular,
        on: Vec<JoinKey>,
    },
    /// `lookup [kind = leftouter | inner] (Right) on Key, …`: a join whose right side is a
    /// (small) dimension table; its key columns are not repeated in the result.
    Lookup {
        kind: JoinKind,
        right: Tabular,
        on: Vec<JoinKey>,
    },
}

/// A sort key: `Expr [asc | desc] [nulls first | nulls last]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub expr: Expr,
    /// Kusto sorts descending unless told `asc`.
    pub desc: bool,
    /// Given, or Kusto's default: nulls first ascending, last descending.
    pub nulls_first: bool,
}

/// `Name = Expr` or a bare `Expr` (the name is then derived from the expression).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedExpr {
    pub name: Option<Ident>,
    pub expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Literal(Literal),
    /// A bare identifier: a column (or, inside brackets, `['Name With Space']`).
    Column(String),
    /// `name(args...)`: scalar functions, aggregations, `not(...)`, `iif(...)`, `case(...)`,
    /// `ago(...)`, `now()`, `bin(...)`, ...
    Call {
        name: Ident,
        args: Vec<Expr>,
    },
    /// `*` as a function argument (`arg_max(TimeGenerated, *)`).
    Star,
    Unary {
        op: UnaryOp,
        expr: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `x in (a, b)`, `x !in (...)`, `x in~ (...)`, `x !in~ (...)`.
    In {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
        case_insensitive: bool,
    },
    /// `x between (lo .. hi)`, `x !between (lo .. hi)`.
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    /// `x.name` (dynamic property access).
    Member {
        expr: Box<Expr>,
        name: String,
    },
    /// `x[i]` or `x["name"]` (dynamic index, `split(...)[8]`, negative indexes too).
    Index {
        expr: Box<Expr>,
        index: Box<Expr>,
    },
    /// `x matches regex "pattern"`.
    MatchesRegex {
        expr: Box<Expr>,
        pattern: Box<Expr>,
    },
}

impl Expr {
    /// The expressions directly inside this one, to walk the tree.
    pub fn children(&self) -> Vec<&Expr> {
        match &self.kind {
            ExprKind::Column(_) | ExprKind::Literal(_) | ExprKind::Star => Vec::new(),
            ExprKind::Call { args, .. } => args.iter().collect(),
            ExprKind::Unary { expr, .. } | ExprKind::Member { expr, .. } => vec![expr],
            ExprKind::Binary { lhs, rhs, .. } => vec![lhs, rhs],
            ExprKind::In { expr, list, .. } => std::iter::once(&**expr).chain(list).collect(),
            ExprKind::Between {
                expr, low, high, ..
            } => vec![expr, low, high],
            ExprKind::Index { expr, index }
            | ExprKind::MatchesRegex {
                expr,
                pattern: index,
            } => vec![expr, index],
        }
    }

    /// [`children`](Self::children), to change them.
    pub fn children_mut(&mut self) -> Vec<&mut Expr> {
        match &mut self.kind {
            ExprKind::Column(_) | ExprKind::Literal(_) | ExprKind::Star => Vec::new(),
            ExprKind::Call { args, .. } => args.iter_mut().collect(),
            ExprKind::Unary { expr, .. } | ExprKind::Member { expr, .. } => vec![expr],
            ExprKind::Binary { lhs, rhs, .. } => vec![lhs, rhs],
            ExprKind::In { expr, list, .. } => std::iter::once(&mut **expr)
                .chain(list.iter_mut())
                .collect(),
            ExprKind::Between {
                expr, low, high, ..
            } => vec![expr, low, high],
            ExprKind::Index { expr, index }
            | ExprKind::MatchesRegex {
                expr,
                pattern: index,
            } => vec![expr, index],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `long(null)`, `datetime(null)`, ... typed nulls; `dynamic(null)` is `Null(None)`.
    Null(Option<LiteralType>),
    Bool(bool),
    Long(i64),
    Real(f64),
    String(String),
    /// The text inside `datetime(...)`, converted (and checked) by the checker.
    DateTime(String),
    /// Ticks of 100 ns: `5m`, `1d`, `1.5h`, `timespan(1d)`, `time(00:05:00)`.
    TimeSpan(i64),
    /// `dynamic(...)`: the JSON-ish text inside, parsed by the checker.
    Dynamic(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiteralType {
    Bool,
    Long,
    Real,
    String,
    DateTime,
    TimeSpan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Plus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `=~` case-insensitive equality
    EqTilde,
    /// `!~`
    NeTilde,
    And,
    Or,
    /// The string operators; `negated` is the `!` form, `cs` the `_cs` (case-sensitive) form.
    Str {
        op: StrOp,
        negated: bool,
        cs: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrOp {
    Has,
    Contains,
    StartsWith,
    EndsWith,
}
