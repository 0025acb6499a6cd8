//! The checker: resolves a parsed query against the table definitions, types every
//! expression, reports every error at once (with its place), and compiles the query into a
//! [`Plan`] for the streaming engine.

use std::sync::Arc;

use super::ast::{
    self, BinaryOp, ExprKind, JoinKind, Literal, LiteralType, OperatorKind, Source, Span,
};
use super::diag::{nearest, Diagnostic, Diagnostics};
use super::parser::{MAX_DEPTH, MAX_NODES};
use super::plan::{
    AggFunc, Aggregate, Calendar, Expr, Func, Input, Join, MathFn, MvExpand, OutColumn, Plan,
    RowOp, SortBy, Stage, Summarize, TableOp, Window,
};

/// The chart kinds `render` takes (Kusto's list).
const CHARTS: &[&str] = &[
    "anomalychart",
    "areachart",
    "barchart",
    "card",
    "columnchart",
    "graph",
    "ladderchart",
    "linechart",
    "piechart",
    "pivotchart",
    "plotly",
    "scatterchart",
    "stackedareachart",
    "table",
    "timechart",
    "timepivot",
    "treemap",
];
use crate::schema::{Schemas, TableId};
use crate::time;
use crate::value::{Type, Value};
use crate::window::sketch::DistinctCount;

/// Parses and checks `source`; on failure every problem found is in the [`Diagnostics`].
pub fn compile(source: &str, schemas: &Schemas) -> Result<Plan, Diagnostics> {
    let fail = |items| Diagnostics {
        source: source.to_string(),
        items,
    };
    let query = super::parser::parse(source).map_err(fail)?;
    let mut checker = Checker {
        schemas,
        diags: Vec::new(),
        scalars: Vec::new(),
        scalar_spans: Vec::new(),
        tabulars: Vec::new(),
        functions: Vec::new(),
        inputs: Vec::new(),
        side_windows: Vec::new(),
    };
    let plan = checker.query(&query);
    match plan {
        Some(plan) if checker.diags.is_empty() => Ok(plan),
        _ => Err(fail(checker.diags)),
    }
}

#[derive(Debug, Clone)]
struct Col {
    name: Arc<str>,
    /// `None`: the type of a null literal (fits anything).
    ty: Option<Type>,
    /// The source row's `TimeGenerated`, unchanged.
    is_time: bool,
    is_key: bool,
}

type Scope = Vec<Col>;

/// A checked expression and its type (`None` = untyped null).
struct Typed {
    expr: Expr,
    ty: Option<Type>,
}

struct Checker<'a> {
    schemas: &'a Schemas,
    diags: Vec<Diagnostic>,
    /// Scalar `let`s so far, each with the earlier ones already put in, and where each
    /// was named.
    scalars: Vec<(String, ast::Expr)>,
    scalar_spans: Vec<Span>,
    /// Tabular `let`s so far, with the earlier ones already put in.
    tabulars: Vec<(String, ast::Tabular)>,
    /// `let` functions so far, with the earlier `let`s already put in their bodies.
    functions: Vec<(String, ast::Function)>,
    /// The plan's inputs, as they are found.
    inputs: Vec<Input>,
    /// The windows of the right sides of joins, as they are found.
    side_windows: Vec<Option<Window>>,
}

/// How a tabular expression's operators compile.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// The query's own rows, streamed: a `summarize` keeps its series as rows arrive.
    Stream,
    /// Rows are kept as they arrive, and what follows the row-by-row operators runs on
    /// them when the result is read: a query with a join, and the right side of one.
    Batch,
    /// A leg of a `union`: row-by-row operators only.
    Leg,
}

/// A compiled tabular expression.
struct Piped {
    /// Its inputs (indexes into `Checker::inputs`).
    inputs: Vec<usize>,
    window: Option<Window>,
    /// `take` before any operator that needs all rows: the rows kept.
    limit: Option<usize>,
    /// `top N by …` as the first operator that needs all rows.
    top: Option<(Vec<SortBy>, usize)>,
    /// The streamed `summarize` (`Mode::Stream` only).
    stage: Option<Summarize>,
    post: Vec<TableOp>,
    scope: Scope,
    render: Option<Arc<str>>,
}

/// Most tables one query reads (`union` legs and join sides together, `let`s expanded).
const MAX_INPUTS: usize = 32;

/// `t` with parenthesized sources opened: `(T | a) | b` is `T | a | b`.
fn flatten(t: &ast::Tabular) -> ast::Tabular {
    match &t.source {
        Source::Sub(inner) => {
            let mut out = flatten(inner);
            out.ops.extend(t.ops.iter().cloned());
            out
        }
        _ => t.clone(),
    }
}

/// How many table names a tabular expression holds (its size after expansion).
fn sources(t: &ast::Tabular) -> usize {
    let source = match &t.source {
        Source::Name(_) | Source::Call { .. } => 1,
        Source::Sub(inner) => sources(inner),
        Source::Union(u) => u.legs.iter().map(sources).sum(),
    };
    let ops: usize = t
        .ops
        .iter()
        .map(|op| match &op.kind {
            OperatorKind::Union(u) => u.legs.iter().map(sources).sum(),
            OperatorKind::Join { right, .. } | OperatorKind::Lookup { right, .. } => sources(right),
            _ => 0,
        })
        .sum();
    source.saturating_add(ops)
}

/// A regular expression as the checker compiles every one (RE2 syntax, size-limited), or
/// the reason it is not one.
fn compile_regex(text: &str) -> Result<Arc<regex::Regex>, String> {
    regex::RegexBuilder::new(text)
        .size_limit(1 << 20)
        .build()
        .map(Arc::new)
        .map_err(|e| {
            let why = e.to_string();
            why.lines().last().unwrap_or("").trim().to_string()
        })
}

/// A union leg naming tables by a pattern (`Aml*`).
fn is_wildcard(t: &ast::Tabular) -> bool {
    matches!(&t.source, Source::Name(n) if n.name.contains('*')) && t.ops.is_empty()
}

/// Whether table `name` matches `pattern`, whose `*` stand for any text (case-sensitive,
/// as table names are): `union Aml*` in a query or a route.
pub(crate) fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == name;
    }
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Where a leg of a union starts, for messages.
fn leg_span(t: &ast::Tabular) -> Span {
    match &t.source {
        Source::Name(n) | Source::Call { name: n, .. } => n.span,
        Source::Sub(inner) => leg_span(inner),
        Source::Union(u) => u.legs.first().map_or(Span::default(), leg_span),
    }
}

#[derive(PartialEq, Clone, Copy)]
enum Phase {
    Pre,
    Post,
}

impl Checker<'_> {
    fn err(&mut self, span: Span, msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(span, msg));
    }

    fn query(&mut self, q: &ast::Query) -> Option<Plan> {
        for l in &q.lets {
            self.define(l);
        }
        if !self.diags.is_empty() {
            return None;
        }
        let mut body = q.body.clone();
        self.expand(&mut body)?;
        let body = flatten(&body);
        // A join keeps its sides' rows and runs on them when the result is read, and so does
        // everything after the rows arrive in a query that has one.
        let joins = body.ops.iter().any(|op| {
            matches!(
                op.kind,
                OperatorKind::Join { .. } | OperatorKind::Lookup { .. }
            )
        });
        let mode = if joins { Mode::Batch } else { Mode::Stream };
        let p = self.tabular(&body, 0, mode)?;
        let stage = match p.stage {
            Some(s) => Stage::Summarize(s),
            None => Stage::Rows { limit: p.limit },
        };
        let mut inputs = std::mem::take(&mut self.inputs);
        for input in &mut inputs {
            let table = &self.schemas.tables[input.table];
            let mut reads = vec![false; table.columns.len()];
            reads[table.time_column()] = true;
            let stage = match input.side {
                0 => &stage,
                _ => &Stage::Rows { limit: None },
            };
            mark_reads(&input.pre, stage, reads.len(), &mut reads);
            input.reads = reads;
        }
        let output = p
            .scope
            .iter()
            .map(|c| OutColumn {
                name: c.name.clone(),
                ty: c.ty.unwrap_or(Type::String),
                is_key: c.is_key,
            })
            .collect();
        Some(Plan {
            inputs,
            window: p.window,
            side_windows: std::mem::take(&mut self.side_windows),
            stage,
            top: p.top,
            post: p.post,
            output,
            render: p.render,
        })
    }

    /// Records a `let`: a scalar (inlined into the expressions after it), or a tabular
    /// expression (put in place of its name). `let T = AzureMetrics;` names a table.
    fn define(&mut self, l: &ast::Let) {
        let name = l.name.name.clone();
        let tabular = match &l.value {
            ast::LetValue::Scalar(e) => match &e.kind {
                ExprKind::Column(n)
                    if self.schemas.table(n).is_some() || self.tabular_let(n).is_some() =>
                {
                    ast::Tabular {
                        source: Source::Name(ast::Ident {
                            name: n.clone(),
                            span: e.span,
                        }),
                        ops: Vec::new(),
                    }
                }
                _ => {
                    let mut e = e.clone();
                    inline(&mut e, &self.scalars);
                    self.call_functions(&mut e);
                    let (nodes, depth) = extent(&e);
                    if nodes > MAX_NODES || depth > MAX_DEPTH {
                        self.err(
                            l.name.span,
                            format!("'let' {name} expands to too large an expression"),
                        );
                        return;
                    }
                    self.scalars.push((name, e));
                    self.scalar_spans.push(l.name.span);
                    return;
                }
            },
            ast::LetValue::Tabular(t) => t.clone(),
            ast::LetValue::Function(f) => {
                let mut f = f.clone();
                let params: Vec<&str> = f.params.iter().map(|p| p.name.name.as_str()).collect();
                match &mut f.body {
                    ast::FunctionBody::Scalar(e) => {
                        // Earlier scalars and functions, but not over the parameters' names.
                        let visible: Vec<(String, ast::Expr)> = self
                            .scalars
                            .iter()
                            .filter(|(n, _)| !params.contains(&n.as_str()))
                            .cloned()
                            .collect();
                        inline(e, &visible);
                        self.call_functions(e);
                    }
                    ast::FunctionBody::Tabular(t) => {
                        if self.expand(t).is_none() {
                            return;
                        }
                    }
                }
                self.functions.push((name, f));
                return;
            }
        };
        let mut t = tabular;
        if self.expand(&mut t).is_some() {
            if sources(&t) > MAX_INPUTS {
                self.err(
                    l.name.span,
                    format!("'let' {name} reads more than {MAX_INPUTS} tables"),
                );
                return;
            }
            self.tabulars.push((name, t));
        }
    }

    fn tabular_let(&self, name: &str) -> Option<&ast::Tabular> {
        self.tabulars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
    }

    /// Puts each tabular `let`'s expression in place of its name, in `t` and in every
    /// expression inside it (union legs, join sides).
    fn expand(&mut self, t: &mut ast::Tabular) -> Option<()> {
        match &mut t.source {
            Source::Name(n) => {
                if let Some(def) = self.tabular_let(&n.name) {
                    t.source = Source::Sub(Box::new(def.clone()));
                }
            }
            Source::Call { name, args } => {
                let body = self.tabular_call(name, args)?;
                t.source = Source::Sub(Box::new(body));
            }
            Source::Sub(inner) => self.expand(inner)?,
            Source::Union(u) => {
                for leg in &mut u.legs {
                    self.expand(leg)?;
                }
            }
        }
        for op in &mut t.ops {
            match &mut op.kind {
                OperatorKind::Union(u) => {
                    for leg in &mut u.legs {
                        self.expand(leg)?;
                    }
                }
                OperatorKind::Join { right, .. } | OperatorKind::Lookup { right, .. } => {
                    self.expand(right)?
                }
                _ => {}
            }
        }
        Some(())
    }

    /// The body of tabular function `name` with `args` in place of its parameters.
    fn tabular_call(&mut self, name: &ast::Ident, args: &[ast::Expr]) -> Option<ast::Tabular> {
        let Some((_, f)) = self.functions.iter().rev().find(|(n, _)| *n == name.name) else {
            let names = self
                .functions
                .iter()
                .map(|(n, _)| n.as_str())
                .chain(self.tabulars.iter().map(|(n, _)| n.as_str()));
            let hint = nearest(&name.name, names)
                .map(|n| format!(" (did you mean '{n}'?)"))
                .unwrap_or_default();
            self.err(name.span, format!("unknown function '{}'{hint}", name.name));
            return None;
        };
        let ast::FunctionBody::Tabular(body) = &f.body else {
            self.err(
                name.span,
                format!("'{}' returns a value, not a table", name.name),
            );
            return None;
        };
        let mut body = body.clone();
        let bindings = self.bind(name, &f.params.clone(), args)?;
        each_expr_mut(&mut body, &mut |e| inline(e, &bindings));
        Some(body)
    }

    /// Parameters bound to arguments (or their defaults), for a call of `name`.
    fn bind(
        &mut self,
        name: &ast::Ident,
        params: &[ast::Param],
        args: &[ast::Expr],
    ) -> Option<Vec<(String, ast::Expr)>> {
        let required = params.iter().filter(|p| p.default.is_none()).count();
        if args.len() < required || args.len() > params.len() {
            self.err(
                name.span,
                format!(
                    "'{}' takes {} argument(s), got {}",
                    name.name,
                    if required == params.len() {
                        required.to_string()
                    } else {
                        format!("{required} to {}", params.len())
                    },
                    args.len()
                ),
            );
            return None;
        }
        Some(
            params
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let value = args
                        .get(i)
                        .cloned()
                        .or_else(|| p.default.clone())
                        .expect("arity checked");
                    (p.name.name.clone(), value)
                })
                .collect(),
        )
    }

    /// Calls of scalar `let` functions in `e` replaced by their bodies.
    fn call_functions(&mut self, e: &mut ast::Expr) {
        for c in e.children_mut() {
            self.call_functions(c);
        }
        let ExprKind::Call { name, args } = &e.kind else {
            return;
        };
        let Some((_, f)) = self.functions.iter().rev().find(|(n, _)| *n == name.name) else {
            return;
        };
        let ast::FunctionBody::Scalar(body) = &f.body else {
            let name = name.clone();
            self.err(
                name.span,
                format!("'{}' returns a table, not a value", name.name),
            );
            return;
        };
        let (mut body, params) = (body.clone(), f.params.clone());
        let (name, args) = (name.clone(), args.clone());
        if let Some(bindings) = self.bind(&name, &params, &args) {
            inline(&mut body, &bindings);
            *e = body;
        }
    }

    /// Compiles a tabular expression (flattened: see [`flatten`]) whose rows belong to
    /// `side`.
    fn tabular(&mut self, t: &ast::Tabular, side: usize, mode: Mode) -> Option<Piped> {
        let t = flatten(t);
        let (mut inputs, mut scope, mut window) = match &t.source {
            Source::Name(n) => {
                let table = self.table(n)?;
                (
                    vec![self.input(table, side)?],
                    self.table_scope(table),
                    None,
                )
            }
            Source::Union(u) => self.union(None, u, side)?,
            Source::Sub(_) => unreachable!("flattened"),
            // `expand` put every call's body in its place.
            Source::Call { name, .. } => {
                self.err(name.span, format!("unknown function '{}'", name.name));
                return None;
            }
        };
        let source_name: Arc<str> = match &t.source {
            Source::Name(n) if t.ops.is_empty() || mode != Mode::Leg => Arc::from(n.name.as_str()),
            _ => Arc::from("union_arg0"),
        };

        let mut phase = Phase::Pre;
        let mut top = None;
        let mut stage: Option<Summarize> = None;
        let mut limit: Option<usize> = None;
        let mut post = Vec::new();
        let mut render = None;
        // Whether the result phase began with a sort of raw rows (not a `summarize`).
        let mut rows_sorted = false;

        let inlined;
        let ops = if self.scalars.is_empty() && self.functions.is_empty() {
            &t.ops
        } else {
            inlined = self.inline_lets(&t.ops, &scope, &source_name)?;
            &inlined
        };
        for op in ops {
            // A union leg filters and shapes rows; what needs all of them comes after it.
            let row_op = matches!(
                op.kind,
                OperatorKind::Where(_)
                    | OperatorKind::Extend(_)
                    | OperatorKind::Project(_)
                    | OperatorKind::ProjectAway(_)
                    | OperatorKind::ProjectRename(_)
                    | OperatorKind::ProjectReorder(_)
                    | OperatorKind::As(_)
                    | OperatorKind::Union(_)
                    | OperatorKind::Parse(_)
                    | OperatorKind::MvExpand(_)
            );
            if mode == Mode::Leg && !row_op {
                self.err(
                    op.span,
                    "inside a 'union', only row-by-row operators (where, extend, project, …) are supported: put this one after the union",
                );
                continue;
            }
            match &op.kind {
                OperatorKind::Where(pred) => {
                    let mut rest = Vec::new();
                    for conjunct in conjuncts(pred) {
                        if phase == Phase::Pre {
                            if let Some(w) = self.time_filter(conjunct, &scope) {
                                window = Some(match window {
                                    Some(old) if old.length <= w.length => old,
                                    _ => w,
                                });
                                continue;
                            }
                        }
                        rest.push(conjunct);
                    }
                    let mut compiled: Option<Expr> = None;
                    for c in rest {
                        let Some(t) = self.expr(c, &scope) else {
                            continue;
                        };
                        self.expect_bool(&t, c.span, "a 'where' predicate");
                        compiled = Some(match compiled {
                            None => t.expr,
                            Some(prev) => Expr::And(Box::new(prev), Box::new(t.expr)),
                        });
                    }
                    if let Some(e) = compiled {
                        self.emit(phase, &inputs, &mut post, RowOp::Filter(e));
                    }
                }
                OperatorKind::Extend(items) => {
                    let mut out = Vec::new();
                    let mut counter = 0;
                    for item in items {
                        let Some(t) = self.expr(&item.expr, &scope) else {
                            continue;
                        };
                        let name = item
                            .name
                            .as_ref()
                            .map(|n| Arc::from(n.name.as_str()))
                            .unwrap_or_else(|| {
                                derive_name(&item.expr).map(Arc::from).unwrap_or_else(|| {
                                    counter += 1;
                                    Arc::from(format!("Column{counter}"))
                                })
                            });
                        let existing = scope.iter().position(|c| c.name == name);
                        let col = Col {
                            name,
                            ty: t.ty,
                            is_time: false,
                            is_key: false,
                        };
                        match existing {
                            Some(i) => scope[i] = col,
                            None => scope.push(col),
                        }
                        out.push((existing, t.expr));
                    }
                    self.emit(phase, &inputs, &mut post, RowOp::Extend(out));
                }
                OperatorKind::Project(items) => {
                    let (exprs, new_scope) = self.project(items, &scope);
                    scope = new_scope;
                    self.emit(phase, &inputs, &mut post, RowOp::Project(exprs));
                }
                OperatorKind::ProjectAway(names) => {
                    let mut keep: Vec<bool> = vec![true; scope.len()];
                    for n in names {
                        match scope.iter().position(|c| *c.name == *n.name) {
                            Some(i) => keep[i] = false,
                            None => self.unknown_column(n.span, &n.name, &scope),
                        }
                    }
                    let exprs: Vec<Expr> = (0..scope.len())
                        .filter(|i| keep[*i])
                        .map(Expr::Column)
                        .collect();
                    scope = scope
                        .into_iter()
                        .zip(keep)
                        .filter(|(_, k)| *k)
                        .map(|(c, _)| c)
                        .collect();
                    self.emit(phase, &inputs, &mut post, RowOp::Project(exprs));
                }
                OperatorKind::Summarize { aggregates, by } => {
                    if rows_sorted && mode == Mode::Stream {
                        self.err(
                            op.span,
                            "'summarize' after 'sort' or 'top' is not supported: sort its result instead (move the sort after it)",
                        );
                        continue;
                    }
                    let (mut s, new_scope, after) = self.summarize(aggregates, by, &scope);
                    if phase == Phase::Pre && mode == Mode::Stream {
                        stage = Some(s);
                    } else {
                        s.bin = None;
                        post.push(TableOp::Summarize(s));
                    }
                    scope = new_scope;
                    post.extend(after);
                    phase = Phase::Post;
                }
                OperatorKind::Count => {
                    if phase == Phase::Pre && mode == Mode::Stream {
                        stage = Some(Summarize {
                            keys: vec![],
                            bin: None,
                            aggregates: vec![Aggregate {
                                func: AggFunc::Count,
                                arg: None,
                                predicate: None,
                                carried: vec![],
                                arg_type: None,
                            }],
                            widths: vec![1],
                        });
                    } else {
                        post.push(TableOp::Count);
                    }
                    scope = vec![Col {
                        name: Arc::from("Count"),
                        ty: Some(Type::Long),
                        is_time: false,
                        is_key: false,
                    }];
                    phase = Phase::Post;
                }
                OperatorKind::Take(n) => {
                    let Some(n) = self.row_count(n, "take") else {
                        continue;
                    };
                    // What follows a `take` works on the rows it kept, as in Kusto.
                    match phase {
                        Phase::Pre => {
                            limit = Some(n);
                            phase = Phase::Post;
                        }
                        Phase::Post => post.push(TableOp::Take(n)),
                    }
                }
                // On raw rows, a sort orders the rows the query retains (its window, within
                // `max_rows`) when the result is read: what follows it works on the result.
                OperatorKind::Sort(keys) => {
                    if let Some(keys) = self.sort_keys(keys, &scope) {
                        post.push(TableOp::Sort(keys));
                    }
                    rows_sorted |= phase == Phase::Pre;
                    phase = Phase::Post;
                }
                OperatorKind::Top { count, by } => {
                    let n = self.row_count(count, "top");
                    if let (Some(keys), Some(n)) = (self.sort_keys(by, &scope), n) {
                        if phase == Phase::Pre && mode == Mode::Stream && side == 0 {
                            top = Some((keys.clone(), n));
                        }
                        post.push(TableOp::Sort(keys));
                        post.push(TableOp::Take(n));
                    }
                    rows_sorted |= phase == Phase::Pre;
                    phase = Phase::Post;
                }
                OperatorKind::ProjectRename(pairs) => {
                    for (new, old) in pairs {
                        match scope.iter().position(|c| *c.name == *old.name) {
                            Some(i) => scope[i].name = Arc::from(new.name.as_str()),
                            None => self.unknown_column(old.span, &old.name, &scope),
                        }
                    }
                    let mut seen = std::collections::HashSet::new();
                    if let Some(c) = scope.iter().find(|c| !seen.insert(c.name.clone())) {
                        self.err(
                            op.span,
                            format!("'project-rename' makes two columns named '{}'", c.name),
                        );
                    }
                }
                // On raw rows `distinct` is `summarize by` its columns: a series per distinct
                // combination, windowed and capped like any other. On a result, it keeps the
                // first of equal rows.
                OperatorKind::Distinct(cols) => {
                    let by: Vec<ast::NamedExpr> = cols
                        .iter()
                        .map(|c| ast::NamedExpr {
                            name: None,
                            expr: ast::Expr {
                                kind: ExprKind::Column(c.name.clone()),
                                span: c.span,
                            },
                        })
                        .collect();
                    match phase {
                        Phase::Pre => {
                            let (mut s, new_scope, _) = self.summarize(&[], &by, &scope);
                            if mode == Mode::Stream {
                                stage = Some(s);
                            } else {
                                s.bin = None;
                                post.push(TableOp::Summarize(s));
                            }
                            scope = new_scope;
                            phase = Phase::Post;
                        }
                        Phase::Post => {
                            let (exprs, new_scope) = self.project(&by, &scope);
                            scope = new_scope;
                            post.push(TableOp::Project(exprs));
                            post.push(TableOp::Distinct);
                        }
                    }
                }
                OperatorKind::ProjectReorder(cols) => {
                    let mut first: Vec<usize> = Vec::new();
                    for c in cols {
                        match scope.iter().position(|s| *s.name == *c.name) {
                            Some(i) if !first.contains(&i) => first.push(i),
                            Some(_) => {}
                            None => self.unknown_column(c.span, &c.name, &scope),
                        }
                    }
                    let order: Vec<usize> = first
                        .iter()
                        .copied()
                        .chain((0..scope.len()).filter(|i| !first.contains(i)))
                        .collect();
                    let exprs: Vec<Expr> = order.iter().map(|&i| Expr::Column(i)).collect();
                    scope = order.iter().map(|&i| scope[i].clone()).collect();
                    self.emit(phase, &inputs, &mut post, RowOp::Project(exprs));
                }
                OperatorKind::As(_) => {}
                OperatorKind::Render(chart) => {
                    if CHARTS.contains(&chart.name.as_str()) {
                        render = Some(Arc::from(chart.name.as_str()));
                    } else {
                        self.err(
                            chart.span,
                            format!(
                                "unknown chart '{}' (known: {})",
                                chart.name,
                                CHARTS.join(", ")
                            ),
                        );
                    }
                }
                OperatorKind::MvExpand(m) => {
                    if let Some(x) = self.mv_expand(m, &mut scope) {
                        self.emit(phase, &inputs, &mut post, RowOp::MvExpand(x));
                    }
                }
                OperatorKind::Parse(p) => {
                    if let Some(items) = self.parse(p, &mut scope) {
                        self.emit(phase, &inputs, &mut post, RowOp::Extend(items));
                    }
                }
                OperatorKind::Union(u) => {
                    if phase == Phase::Post || limit.is_some() {
                        self.err(
                            op.span,
                            "'union' after 'summarize', 'sort', 'top' or 'take' is not supported: union the rows first",
                        );
                        continue;
                    }
                    let first = (inputs, scope, window, source_name.clone());
                    (inputs, scope, window) = self.union(Some(first), u, side)?;
                }
                OperatorKind::Join { kind, right, on }
                | OperatorKind::Lookup { kind, right, on } => {
                    if mode != Mode::Batch {
                        self.err(op.span, "a join inside a 'union' leg is not supported");
                        continue;
                    }
                    if let Some(n) = limit.take() {
                        post.push(TableOp::Take(n));
                    }
                    let lookup = matches!(op.kind, OperatorKind::Lookup { .. });
                    let (join, new_scope) = self.join(*kind, right, on, lookup, &scope)?;
                    post.push(TableOp::Join(join));
                    scope = new_scope;
                    phase = Phase::Post;
                }
            }
        }
        if mode != Mode::Stream && side > 0 {
            // The right side of a join: its `take` is one more operator on its rows.
            if let Some(n) = limit.take() {
                post.insert(0, TableOp::Take(n));
            }
        }
        Some(Piped {
            inputs,
            window,
            limit,
            top,
            stage,
            post,
            scope,
            render,
        })
    }

    /// `parse`: one regular expression for the whole pattern, anchored at both ends (a `*`
    /// or a final column takes the rest). Literals match as written (`kind=simple`) or as
    /// regular expressions (`kind=regex`); a column takes the shortest text that lets the
    /// rest match (the last one, all that is left), a `long` or `real` one only a number.
    /// Each new column becomes one capture group, converted to its type; a string that does
    /// not match gives nulls.
    fn parse(&mut self, p: &ast::Parse, scope: &mut Scope) -> Option<Vec<(Option<usize>, Expr)>> {
        let text = self.expr(&p.expr, scope)?;
        let mut re = String::from("(?s)");
        if p.regex && !p.flags.is_empty() {
            re += &format!("(?{})", p.flags);
        }
        re.push('^');
        let last = p.pattern.len() - 1;
        let mut columns: Vec<(&ast::Ident, Type)> = Vec::new();
        for (i, part) in p.pattern.iter().enumerate() {
            match part {
                ast::ParsePart::Any => re += ".*?",
                ast::ParsePart::Literal(l) if p.regex => {
                    // Each literal must be a whole expression of its own, or it could swallow
                    // what follows it (an open `[`, a `(?x)#` comment).
                    if let Err(why) = compile_regex(l) {
                        self.err(
                            p.expr.span,
                            format!("'{l}' in the pattern of 'parse' is not a valid regular expression: {why}"),
                        );
                        return None;
                    }
                    re += &format!("(?:{l})");
                }
                ast::ParsePart::Literal(l) => re += &regex::escape(l),
                ast::ParsePart::Column(name, ty) => {
                    let ty = match ty {
                        None => Type::String,
                        Some(t) => self.type_named(t)?,
                    };
                    // Named, so that groups of a `kind=regex` literal do not shift them.
                    let group = format!("(?P<hubwatch{}>", columns.len());
                    re += &group;
                    re += match ty {
                        Type::Long => r"[-+]?\d+)",
                        Type::Real => r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)",
                        _ if i == last => ".*)",
                        _ => ".*?)",
                    };
                    columns.push((name, ty));
                }
            }
        }
        re.push('$');
        let compiled = match compile_regex(&re) {
            Ok(r) => r,
            Err(why) => {
                self.err(
                    p.expr.span,
                    format!("the pattern of 'parse' is not a valid regular expression: {why}"),
                );
                return None;
            }
        };
        let mut items = Vec::new();
        for (n, (name, ty)) in columns.into_iter().enumerate() {
            let wanted = format!("hubwatch{n}");
            let Some(group) = compiled
                .capture_names()
                .position(|g| g == Some(wanted.as_str()))
            else {
                self.err(
                    p.expr.span,
                    "the regular expressions of this 'parse' pattern hide its columns (a flag such as (?x) changes how the rest reads)",
                );
                return None;
            };
            let cut = Expr::Regex {
                re: compiled.clone(),
                text: Box::new(text.expr.clone()),
                group: Some(group),
            };
            let func = match ty {
                Type::Long => Some(Func::ToLong),
                Type::Real => Some(Func::ToReal),
                Type::DateTime => Some(Func::ToDateTime),
                Type::TimeSpan => Some(Func::ToTimeSpan),
                Type::Bool => Some(Func::ToBool),
                Type::Dynamic => Some(Func::ParseJson),
                Type::String => None,
            };
            let expr = match func {
                Some(func) => Expr::Call {
                    func,
                    args: vec![cut],
                },
                None => cut,
            };
            let name: Arc<str> = Arc::from(name.name.as_str());
            let existing = scope.iter().position(|c| c.name == name);
            let col = Col {
                name,
                ty: Some(ty),
                is_time: false,
                is_key: false,
            };
            match existing {
                Some(i) => scope[i] = col,
                None => scope.push(col),
            }
            items.push((existing, expr));
        }
        Some(items)
    }

    /// A type as written in `parse … Col:type` and `to typeof(type)`.
    fn type_named(&mut self, t: &ast::Ident) -> Option<Type> {
        let ty = Type::from_schema_name(&t.name);
        if ty.is_none() {
            self.err(t.span, format!("unknown type '{}' (known: string, long, int, real, double, decimal, datetime, timespan, bool, dynamic, guid)", t.name));
        }
        ty
    }

    /// `mv-expand`: each item replaces its column (a bare column, or a name already taken)
    /// or is appended, typed as `to typeof(…)` says or dynamic; `with_itemindex` last.
    fn mv_expand(&mut self, m: &ast::MvExpand, scope: &mut Scope) -> Option<MvExpand> {
        let limit = match &m.limit {
            None => DEFAULT_EXPAND,
            Some(e) => match &e.kind {
                ExprKind::Literal(Literal::Long(n)) if (1..=MAX_EXPAND as i64).contains(n) => {
                    *n as usize
                }
                _ => {
                    self.err(
                        e.span,
                        format!("mv-expand's limit must be a whole number from 1 to {MAX_EXPAND}"),
                    );
                    return None;
                }
            },
        };
        let mut items = Vec::new();
        for (item, ty) in &m.items {
            let t = self.expr(&item.expr, scope)?;
            if !matches!(t.ty, Some(Type::Dynamic) | None) {
                self.err(
                    item.expr.span,
                    format!(
                        "mv-expand expands a dynamic array or bag, got {}",
                        tyname(t.ty)
                    ),
                );
                return None;
            }
            let ty = match ty {
                Some(t) => Some(self.type_named(t)?),
                None => None,
            };
            let name: Arc<str> = match &item.name {
                Some(n) => Arc::from(n.name.as_str()),
                None => match derive_name(&item.expr) {
                    Some(n) => Arc::from(n),
                    None => unique(scope, Arc::from("Column1")),
                },
            };
            let slot = scope.iter().position(|c| c.name == name);
            let col = Col {
                name,
                ty: Some(ty.unwrap_or(Type::Dynamic)),
                is_time: false,
                is_key: false,
            };
            match slot {
                Some(i) => scope[i] = col,
                None => scope.push(col),
            }
            items.push((slot, t.expr, ty));
        }
        if let Some(n) = &m.index {
            scope.push(Col {
                name: unique(scope, Arc::from(n.name.as_str())),
                ty: Some(Type::Long),
                is_time: false,
                is_key: false,
            });
        }
        Some(MvExpand {
            items,
            bags_as_arrays: m.bags_as_arrays,
            index: m.index.is_some(),
            limit,
        })
    }

    /// A row-at-a-time operator: on every input's rows as they arrive, or on the result.
    fn emit(&mut self, phase: Phase, inputs: &[usize], post: &mut Vec<TableOp>, op: RowOp) {
        match phase {
            Phase::Pre => {
                for &i in inputs {
                    self.inputs[i].pre.push(op.clone());
                }
            }
            Phase::Post => post.push(match op {
                RowOp::Filter(e) => TableOp::Filter(e),
                RowOp::Extend(items) => TableOp::Extend(items),
                RowOp::Project(exprs) => TableOp::Project(exprs),
                RowOp::MvExpand(m) => TableOp::MvExpand(m),
            }),
        }
    }

    fn table(&mut self, n: &ast::Ident) -> Option<TableId> {
        if let Some(id) = self.schemas.table(&n.name) {
            return Some(id);
        }
        let names = self
            .schemas
            .tables
            .iter()
            .map(|t| &*t.name)
            .chain(self.tabulars.iter().map(|(n, _)| n.as_str()));
        let hint = match self.schemas.table_ignore_case(&n.name) {
            Some(t) => format!(
                " (did you mean '{}'? table names are case-sensitive)",
                t.name
            ),
            None => match nearest(&n.name, names) {
                Some(near) => format!(" (did you mean '{near}'?)"),
                None => " (add a definition under schemas/tables/ to query it)".to_string(),
            },
        };
        self.err(n.span, format!("unknown table '{}'{hint}", n.name));
        None
    }

    fn input(&mut self, table: TableId, side: usize) -> Option<usize> {
        if self.inputs.len() >= MAX_INPUTS {
            self.err(
                Span::default(),
                format!("the query reads more than {MAX_INPUTS} tables"),
            );
            return None;
        }
        self.inputs.push(Input {
            table,
            reads: Vec::new(),
            pre: Vec::new(),
            side,
        });
        Some(self.inputs.len() - 1)
    }

    fn table_scope(&self, table: TableId) -> Scope {
        let table = &self.schemas.tables[table];
        let time_column = table.time_column();
        table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| Col {
                name: c.name.clone(),
                ty: Some(c.ty),
                is_time: i == time_column,
                is_key: false,
            })
            .collect()
    }

    /// The legs of a `union` (after `first`, the rows piped into `| union`), each projected
    /// onto the union's columns: all of them by name (`kind=outer`), null where a leg has
    /// none, or those every leg has (`kind=inner`); `withsource=` first.
    #[allow(clippy::type_complexity)]
    fn union(
        &mut self,
        first: Option<(Vec<usize>, Scope, Option<Window>, Arc<str>)>,
        u: &ast::Union,
        side: usize,
    ) -> Option<(Vec<usize>, Scope, Option<Window>)> {
        let mut legs: Vec<(Vec<usize>, Scope, Option<Window>, Arc<str>)> =
            first.into_iter().collect();
        // `search` without `in (…)`: every table.
        let every;
        let u_legs = if u.legs.is_empty() {
            every = self
                .schemas
                .tables
                .iter()
                .map(|t| ast::Tabular {
                    source: Source::Name(ast::Ident {
                        name: t.name.to_string(),
                        span: Span::default(),
                    }),
                    ops: Vec::new(),
                })
                .collect::<Vec<_>>();
            &every
        } else if u.legs.iter().any(is_wildcard) {
            // `Aml*`: the tables whose names match, in the schemas' order.
            let mut legs = Vec::new();
            for leg in &u.legs {
                let Source::Name(n) = &leg.source else {
                    legs.push(leg.clone());
                    continue;
                };
                if !is_wildcard(leg) {
                    legs.push(leg.clone());
                    continue;
                }
                let before = legs.len();
                for t in &self.schemas.tables {
                    if glob(&n.name, &t.name) {
                        legs.push(ast::Tabular {
                            source: Source::Name(ast::Ident {
                                name: t.name.to_string(),
                                span: n.span,
                            }),
                            ops: Vec::new(),
                        });
                    }
                }
                if legs.len() == before {
                    self.err(n.span, format!("no table matches '{}'", n.name));
                    return None;
                }
            }
            every = legs;
            &every
        } else {
            &u.legs
        };
        for (i, leg) in u_legs.iter().enumerate() {
            let p = self.tabular(leg, side, Mode::Leg)?;
            let name = match (&leg.source, leg.ops.is_empty()) {
                (Source::Name(n), true) => Arc::from(n.name.as_str()),
                _ => Arc::from(format!("union_arg{}", legs.len().max(i))),
            };
            legs.push((p.inputs, p.scope, p.window, name));
        }
        let window = legs[0].2;
        if legs.iter().any(|l| l.2 != window) {
            let span = u.legs.first().map_or(Span::default(), leg_span);
            self.err(
                span,
                "the legs of this 'union' filter 'TimeGenerated > ago(…)' differently: filter once, after the union",
            );
            return None;
        }
        let mut cols: Scope = Vec::new();
        if let Some(ws) = &u.withsource {
            cols.push(Col {
                name: Arc::from(ws.name.as_str()),
                ty: Some(Type::String),
                is_time: false,
                is_key: false,
            });
        }
        let from = cols.len();
        // One column per name and type: a name two legs give different types becomes one
        // column per type, `Name_type` (as Kusto's `union` does).
        let mut origin: Vec<Arc<str>> = Vec::new();
        // Whether leg column `c` goes to union column `k`, first given by a leg as `name`.
        let fits = |k: &Col, name: &Arc<str>, c: &Col| c.name == *name && unify(k.ty, c.ty).is_ok();
        for (_, scope, _, _) in &legs {
            for c in scope {
                let found = cols[from..]
                    .iter()
                    .zip(&origin)
                    .position(|(k, o)| fits(k, o, c));
                match found {
                    Some(at) => {
                        let k = &mut cols[from + at];
                        k.ty = unify(k.ty, c.ty).unwrap_or(k.ty);
                    }
                    None => {
                        origin.push(c.name.clone());
                        cols.push(Col {
                            is_key: false,
                            ..c.clone()
                        });
                    }
                }
            }
        }
        for i in 0..origin.len() {
            if origin.iter().filter(|o| **o == origin[i]).count() > 1 {
                let c = &mut cols[from + i];
                c.name = Arc::from(format!("{}_{}", origin[i], tyname(c.ty)));
            }
        }
        // A column is the event time only if every leg's is.
        let leg_has = |scope: &Scope, k: &Col, o: &Arc<str>| scope.iter().any(|s| fits(k, o, s));
        for (c, o) in cols[from..].iter_mut().zip(&origin) {
            c.is_time = legs.iter().all(|(_, scope, _, _)| {
                scope
                    .iter()
                    .any(|s| s.name == *o && s.is_time && unify(c.ty, s.ty).is_ok())
            });
        }
        if u.inner {
            let keep: Vec<bool> = cols[from..]
                .iter()
                .zip(&origin)
                .map(|(c, o)| legs.iter().all(|(_, scope, _, _)| leg_has(scope, c, o)))
                .collect();
            let mut i = 0;
            cols.retain(|_| {
                i += 1;
                i <= from || keep[i - 1 - from]
            });
            let mut j = 0;
            origin.retain(|_| {
                j += 1;
                keep[j - 1]
            });
        }
        let mut all = Vec::new();
        for (inputs, scope, _, name) in legs {
            let exprs: Vec<Expr> = (0..cols.len())
                .map(|i| {
                    if i < from {
                        return Expr::Literal(Value::Str(name.clone()));
                    }
                    let (c, o) = (&cols[i], &origin[i - from]);
                    match scope.iter().position(|s| fits(c, o, s)) {
                        Some(at) => Expr::Column(at),
                        None => Expr::Literal(Value::Null),
                    }
                })
                .collect();
            for &i in &inputs {
                self.inputs[i].pre.push(RowOp::Project(exprs.clone()));
            }
            all.extend(inputs);
        }
        Some((all, cols, window))
    }

    /// `join`/`lookup` of the rows so far (`left`) with `right`, whose rows are kept as a
    /// side of their own.
    fn join(
        &mut self,
        kind: JoinKind,
        right: &ast::Tabular,
        on: &[ast::JoinKey],
        lookup: bool,
        left: &Scope,
    ) -> Option<(Join, Scope)> {
        let side = self.side_windows.len() + 1;
        self.side_windows.push(None);
        let r = self.tabular(right, side, Mode::Batch)?;
        self.side_windows[side - 1] = r.window;
        let mut keys = Vec::new();
        for k in on {
            let l = left.iter().position(|c| *c.name == *k.left.name);
            let ri = r.scope.iter().position(|c| *c.name == *k.right.name);
            if l.is_none() {
                self.unknown_column(k.left.span, &k.left.name, left);
            }
            if ri.is_none() {
                self.unknown_column(k.right.span, &k.right.name, &r.scope);
            }
            let (Some(l), Some(ri)) = (l, ri) else {
                continue;
            };
            let (lt, rt) = (left[l].ty, r.scope[ri].ty);
            if lt.is_some() && rt.is_some() && lt != rt && unify(lt, rt).is_err() {
                self.err(
                    k.left.span,
                    format!(
                        "join key '{}' is {} on the left and {} on the right",
                        k.left.name,
                        tyname(lt),
                        tyname(rt)
                    ),
                );
            }
            keys.push((l, ri));
        }
        let (scope, right_columns) = match kind {
            JoinKind::LeftSemi | JoinKind::LeftAnti => (left.clone(), Vec::new()),
            JoinKind::RightSemi | JoinKind::RightAnti => (r.scope.clone(), Vec::new()),
            _ => {
                let mut scope = left.clone();
                let mut cols = Vec::new();
                for (i, c) in r.scope.iter().enumerate() {
                    if lookup && keys.iter().any(|(_, ri)| *ri == i) {
                        continue;
                    }
                    scope.push(Col {
                        name: unique(&scope, c.name.clone()),
                        ty: c.ty,
                        is_time: false,
                        is_key: c.is_key,
                    });
                    cols.push(i);
                }
                (scope, cols)
            }
        };
        let join = Join {
            kind,
            side,
            right: r.post,
            keys,
            right_columns,
        };
        Some((join, scope))
    }

    /// Operators with every scalar `let` name replaced by its expression (each `let`
    /// sees those before it; a later one of the same name wins), so that
    /// `TimeGenerated > ago(window)` is a sliding window as `ago(1d)` is. A name that is
    /// also a column of the table, or that an operator gives to a column, is refused
    /// rather than guessed at; so is an expansion past the parser's size limits.
    fn inline_lets(
        &mut self,
        ops: &[ast::Operator],
        columns: &Scope,
        table: &str,
    ) -> Option<Vec<ast::Operator>> {
        let before = self.diags.len();
        let lets = std::mem::take(&mut self.scalars);
        for ((name, _), span) in lets.iter().zip(&self.scalar_spans) {
            if columns.iter().any(|c| *c.name == **name) {
                self.diags.push(Diagnostic::new(
                    *span,
                    format!("'let' name '{name}' is also a column of {table}: rename it"),
                ));
            }
        }
        let is_let = |n: &ast::Ident| lets.iter().any(|(l, _)| *l == n.name);
        let taken = |n: &Option<ast::Ident>| {
            n.as_ref()
                .filter(|n| is_let(n))
                .map(|n| (n.name.clone(), n.span))
        };
        let mut ops = ops.to_vec();
        for op in &mut ops {
            let mut exprs: Vec<&mut ast::Expr> = Vec::new();
            let mut names: Vec<(String, Span)> = Vec::new();
            match &mut op.kind {
                OperatorKind::Where(e) | OperatorKind::Take(e) => exprs.push(e),
                OperatorKind::MvExpand(m) => {
                    for (item, _) in &mut m.items {
                        names.extend(taken(&item.name));
                        exprs.push(&mut item.expr);
                    }
                }
                OperatorKind::Parse(p) => {
                    exprs.push(&mut p.expr);
                    for part in &p.pattern {
                        if let ast::ParsePart::Column(c, _) = part {
                            names.extend(taken(&Some(c.clone())));
                        }
                    }
                }
                OperatorKind::Extend(items) | OperatorKind::Project(items) => {
                    for item in items {
                        names.extend(taken(&item.name));
                        exprs.push(&mut item.expr);
                    }
                }
                OperatorKind::Summarize { aggregates, by } => {
                    for item in aggregates.iter_mut().chain(by) {
                        names.extend(taken(&item.name));
                        exprs.push(&mut item.expr);
                    }
                }
                OperatorKind::Sort(keys) => exprs.extend(keys.iter_mut().map(|k| &mut k.expr)),
                OperatorKind::Top { count, by } => {
                    exprs.push(count);
                    exprs.extend(by.iter_mut().map(|k| &mut k.expr));
                }
                OperatorKind::ProjectRename(pairs) => {
                    names.extend(
                        pairs
                            .iter()
                            .filter(|(new, _)| is_let(new))
                            .map(|(new, _)| (new.name.clone(), new.span)),
                    );
                }
                // Their own operators are inlined when they are compiled.
                OperatorKind::Union(_)
                | OperatorKind::Join { .. }
                | OperatorKind::Lookup { .. }
                | OperatorKind::ProjectAway(_)
                | OperatorKind::Count
                | OperatorKind::Render(_)
                | OperatorKind::Distinct(_)
                | OperatorKind::ProjectReorder(_)
                | OperatorKind::As(_) => {}
            }
            for (name, span) in names {
                self.diags.push(Diagnostic::new(
                    span,
                    format!("'{name}' names a 'let' and a column: rename one of them"),
                ));
            }
            for e in exprs {
                inline(e, &lets);
                self.call_functions(e);
                let (nodes, depth) = extent(e);
                if nodes > 10 * MAX_NODES || depth > 2 * MAX_DEPTH {
                    self.diags.push(Diagnostic::new(
                        e.span,
                        "with its 'let' names replaced, this expression is too large",
                    ));
                }
            }
        }
        self.scalars = lets;
        (self.diags.len() == before).then_some(ops)
    }

    /// The number of rows of `take` or `top`: a whole number, not negative.
    fn row_count(&mut self, n: &ast::Expr, op: &str) -> Option<usize> {
        match &n.kind {
            ExprKind::Literal(Literal::Long(v)) if *v >= 0 => Some(*v as usize),
            _ => {
                self.err(n.span, format!("'{op}' needs a non-negative whole number"));
                None
            }
        }
    }

    fn sort_keys(&mut self, keys: &[ast::SortKey], scope: &Scope) -> Option<Vec<SortBy>> {
        let mut out = Vec::new();
        for k in keys {
            let t = self.expr(&k.expr, scope)?;
            out.push(SortBy {
                expr: t.expr,
                desc: k.desc,
                nulls_first: k.nulls_first,
            });
        }
        Some(out)
    }

    /// `TimeGenerated > ago(X)`, `>= ago(X)`, `ago(X) < TimeGenerated`, and
    /// `TimeGenerated between (ago(X) .. now())` become the query's sliding window.
    fn time_filter(&mut self, e: &ast::Expr, scope: &Scope) -> Option<Window> {
        let is_time = |e: &ast::Expr| match &e.kind {
            ExprKind::Column(n) => scope.iter().any(|c| *c.name == **n && c.is_time),
            _ => false,
        };
        let is_now = |e: &ast::Expr| matches!(&e.kind, ExprKind::Call { name, args } if name.name == "now" && args.is_empty());
        // `ago(X)` and its spelled-out form `now() - X`.
        let ago = |e: &ast::Expr| -> Option<i64> {
            match &e.kind {
                ExprKind::Call { name, args } if name.name == "ago" && args.len() == 1 => {
                    match &args[0].kind {
                        ExprKind::Literal(Literal::TimeSpan(t)) if *t > 0 => Some(*t),
                        _ => None,
                    }
                }
                ExprKind::Binary {
                    op: BinaryOp::Sub,
                    lhs,
                    rhs,
                } if is_now(lhs) => match &rhs.kind {
                    ExprKind::Literal(Literal::TimeSpan(t)) if *t > 0 => Some(*t),
                    _ => None,
                },
                _ => None,
            }
        };
        match &e.kind {
            ExprKind::Binary { op, lhs, rhs } => {
                let (op, other) = if is_time(lhs) {
                    (*op, rhs)
                } else if is_time(rhs) {
                    // `ago(X) < TimeGenerated` is `TimeGenerated > ago(X)`, and
                    // `ago(X) > TimeGenerated` is `TimeGenerated < ago(X)` (not a window).
                    let flipped = match op {
                        BinaryOp::Lt => BinaryOp::Gt,
                        BinaryOp::Le => BinaryOp::Ge,
                        BinaryOp::Gt => BinaryOp::Lt,
                        BinaryOp::Ge => BinaryOp::Le,
                        other => *other,
                    };
                    (flipped, lhs)
                } else {
                    return None;
                };
                let length = ago(other)?;
                match op {
                    BinaryOp::Gt => Some(Window {
                        length,
                        inclusive: false,
                    }),
                    BinaryOp::Ge => Some(Window {
                        length,
                        inclusive: true,
                    }),
                    _ => None,
                }
            }
            ExprKind::Between {
                expr,
                low,
                high,
                negated: false,
            } if is_time(expr) && is_now(high) => Some(Window {
                length: ago(low)?,
                inclusive: true,
            }),
            _ => None,
        }
    }

    fn project(&mut self, items: &[ast::NamedExpr], scope: &Scope) -> (Vec<Expr>, Scope) {
        let mut exprs = Vec::new();
        let mut out: Scope = Vec::new();
        let mut counter = 0;
        for item in items {
            let Some(t) = self.expr(&item.expr, scope) else {
                continue;
            };
            let (name, span) = match &item.name {
                Some(n) => (Arc::from(n.name.as_str()), n.span),
                None => (
                    derive_name(&item.expr).map(Arc::from).unwrap_or_else(|| {
                        counter += 1;
                        Arc::from(format!("Column{counter}"))
                    }),
                    item.expr.span,
                ),
            };
            // A name derived from an expression gets a number when taken (Kusto's
            // `CoreCount1`); one written, or a column projected twice, is an error.
            let derived = item.name.is_none() && !matches!(item.expr.kind, ExprKind::Column(_));
            let name = if derived { unique(&out, name) } else { name };
            if out.iter().any(|c: &Col| c.name == name) {
                self.err(span, format!("column '{name}' is projected twice"));
                continue;
            }
            // A bare column keeps what it was (the event time, a summarize key).
            let (is_time, is_key) = match &t.expr {
                Expr::Column(i) => (scope[*i].is_time, scope[*i].is_key),
                _ => (false, false),
            };
            out.push(Col {
                name,
                ty: t.ty,
                is_time,
                is_key,
            });
            exprs.push(t.expr);
        }
        (exprs, out)
    }

    fn summarize(
        &mut self,
        aggregates: &[ast::NamedExpr],
        by: &[ast::NamedExpr],
        scope: &Scope,
    ) -> (Summarize, Scope, Vec<TableOp>) {
        let mut out: Scope = Vec::new();
        let mut keys = Vec::new();
        let mut bin = None;
        let mut counter = 0;
        for item in by {
            let Some(t) = self.expr(&item.expr, scope) else {
                continue;
            };
            if let Expr::Call {
                func: Func::Bin | Func::Floor,
                args,
            } = &t.expr
            {
                if let (Expr::Column(c), Some(Expr::Literal(Value::TimeSpan(w)))) =
                    (&args[0], args.get(1))
                {
                    if scope[*c].is_time && *w > 0 && bin.is_none() {
                        bin = Some((keys.len(), *w));
                    }
                }
            }
            let name: Arc<str> = match &item.name {
                Some(n) => Arc::from(n.name.as_str()),
                None => derive_name(&item.expr).map(Arc::from).unwrap_or_else(|| {
                    counter += 1;
                    Arc::from(format!("Column{counter}"))
                }),
            };
            let is_time = bin.is_some_and(|(k, _)| k == keys.len());
            out.push(Col {
                name: unique(&out, name),
                ty: t.ty,
                is_time,
                is_key: true,
            });
            keys.push(t.expr);
        }
        let mut aggs = Vec::new();
        let mut widths = Vec::new();
        // Aggregates inside expressions (`round(avg(x), 1)`, `100.0 * countif(p) / count()`)
        // are computed as hidden columns; the expressions over them run on the result, which
        // stays mergeable since only the aggregates are kept per series.
        let key_count = out.len();
        // Per aggregate item, in order: the columns it shows (direct aggregates), or the
        // index of its expression in `computed`.
        let mut shows: Vec<Result<Vec<usize>, usize>> = Vec::new();
        let mut computed: Vec<(Arc<str>, ast::Expr)> = Vec::new();
        let mut hidden = 0;
        // `percentiles(x, 50, 95)`: one `percentile` per level (named after the first one
        // for a named item, as Kusto names them).
        let expanded: Vec<ast::NamedExpr> = aggregates
            .iter()
            .flat_map(|item| match &item.expr.kind {
                ExprKind::Call { name, args } if name.name == "percentiles" && args.len() >= 2 => {
                    args[1..]
                        .iter()
                        .enumerate()
                        .map(|(i, p)| ast::NamedExpr {
                            name: if i == 0 { item.name.clone() } else { None },
                            expr: ast::Expr {
                                kind: ExprKind::Call {
                                    name: ast::Ident {
                                        name: "percentile".to_string(),
                                        span: name.span,
                                    },
                                    args: vec![args[0].clone(), p.clone()],
                                },
                                span: item.expr.span,
                            },
                        })
                        .collect::<Vec<_>>()
                }
                _ => vec![item.clone()],
            })
            .collect();
        for item in &expanded {
            if is_aggregate_call(&item.expr) {
                let Some((agg, cols)) = self.aggregate(item, scope, &out) else {
                    continue;
                };
                widths.push(cols.len());
                let mut at = Vec::new();
                for c in cols {
                    let name = unique(&out, c.name.clone());
                    at.push(out.len());
                    out.push(Col { name, ..c });
                }
                shows.push(Ok(at));
                aggs.push(agg);
                continue;
            }
            let mut expr = item.expr.clone();
            let mut inner = Vec::new();
            lift_aggregates(&mut expr, &mut hidden, &mut inner);
            if inner.is_empty() && matches!(item.expr.kind, ExprKind::Call { .. }) {
                // Not an aggregation (a typo, a scalar function): its own message says so.
                let _ = self.aggregate(item, scope, &out);
                continue;
            }
            if inner.is_empty() {
                self.err(
                    item.expr.span,
                    format!(
                        "expected an aggregation function ({}), or an expression of them",
                        AGGREGATES.join(", ")
                    ),
                );
                continue;
            }
            let mut lifted = true;
            for (name, call) in inner {
                let hidden_item = ast::NamedExpr {
                    name: Some(ast::Ident {
                        name,
                        span: call.span,
                    }),
                    expr: call,
                };
                let Some((agg, cols)) = self.aggregate(&hidden_item, scope, &out) else {
                    lifted = false;
                    continue;
                };
                if cols.len() != 1 {
                    self.err(
                        hidden_item.expr.span,
                        "arg_max() and arg_min() cannot be part of an expression",
                    );
                    lifted = false;
                    continue;
                }
                widths.push(1);
                out.extend(cols);
                aggs.push(agg);
            }
            if !lifted {
                continue;
            }
            let name = match &item.name {
                Some(n) => Arc::from(n.name.as_str()),
                None => derive_name(&item.expr)
                    .map(Arc::from)
                    .unwrap_or_else(|| Arc::from(format!("Column{}", computed.len() + 1))),
            };
            shows.push(Err(computed.len()));
            computed.push((name, expr));
        }
        let mut after = Vec::new();
        if !computed.is_empty() {
            let mut extend = Vec::new();
            let mut columns = Vec::new();
            for (name, expr) in &computed {
                let t = self.expr(expr, &out);
                let ty = t.as_ref().and_then(|t| t.ty);
                extend.push((None, t.map_or(Expr::Literal(Value::Null), |t| t.expr)));
                columns.push(out.len());
                let name = unique(&out, name.clone());
                out.push(Col {
                    name,
                    ty,
                    is_time: false,
                    is_key: false,
                });
            }
            // Keys first, then every aggregate column in the order written.
            let order: Vec<usize> = (0..key_count)
                .chain(shows.iter().flat_map(|s| match s {
                    Ok(at) => at.clone(),
                    Err(k) => vec![columns[*k]],
                }))
                .collect();
            after.push(TableOp::Extend(extend));
            after.push(TableOp::Project(
                order.iter().map(|&i| Expr::Column(i)).collect(),
            ));
            out = order.iter().map(|&i| out[i].clone()).collect();
        }
        (
            Summarize {
                keys,
                bin,
                aggregates: aggs,
                widths,
            },
            out,
            after,
        )
    }

    fn aggregate(
        &mut self,
        item: &ast::NamedExpr,
        scope: &Scope,
        keys: &Scope,
    ) -> Option<(Aggregate, Vec<Col>)> {
        let ExprKind::Call { name, args } = &item.expr.kind else {
            self.err(
                item.expr.span,
                format!(
                    "expected an aggregation function ({})",
                    AGGREGATES.join(", ")
                ),
            );
            return None;
        };
        let fname = name.name.as_str();
        let arity = |this: &mut Checker, lo: usize, hi: usize| -> bool {
            if args.len() < lo || args.len() > hi {
                let want = if lo == hi {
                    format!("{lo}")
                } else {
                    format!("{lo} to {hi}")
                };
                this.err(
                    item.expr.span,
                    format!("{fname}() takes {want} argument(s), got {}", args.len()),
                );
                false
            } else {
                true
            }
        };
        let named = |default: String| -> Arc<str> {
            item.name
                .as_ref()
                .map(|n| Arc::from(n.name.as_str()))
                .unwrap_or_else(|| Arc::from(default))
        };
        let arg_name = |i: usize| args.get(i).and_then(derive_name).unwrap_or_default();
        let col = |name: Arc<str>, ty: Type| Col {
            name,
            ty: Some(ty),
            is_time: false,
            is_key: false,
        };
        let mk = |func, arg: Option<Expr>, predicate: Option<Expr>, arg_type| Aggregate {
            func,
            arg,
            predicate,
            carried: vec![],
            arg_type,
        };
        match fname {
            "count" => {
                if !arity(self, 0, 0) {
                    return None;
                }
                Some((
                    mk(AggFunc::Count, None, None, None),
                    vec![col(named("count_".into()), Type::Long)],
                ))
            }
            "countif" => {
                if !arity(self, 1, 1) {
                    return None;
                }
                let p = self.expr(&args[0], scope)?;
                self.expect_bool(&p, args[0].span, "countif()'s predicate");
                Some((
                    mk(AggFunc::CountIf, None, Some(p.expr), None),
                    vec![col(named("countif_".into()), Type::Long)],
                ))
            }
            "sum" | "sumif" | "avg" | "avgif" => {
                let is_if = fname.ends_with("if");
                if !arity(self, 1 + is_if as usize, 1 + is_if as usize) {
                    return None;
                }
                let a = self.expr(&args[0], scope)?;
                let ty = match a.ty {
                    Some(t @ (Type::Long | Type::Real | Type::TimeSpan)) => t,
                    Some(Type::Dynamic) | None => Type::Real,
                    Some(other) => {
                        self.err(
                            args[0].span,
                            format!("{fname}() needs a number or timespan, got {other}"),
                        );
                        return None;
                    }
                };
                let predicate = if is_if {
                    let p = self.expr(&args[1], scope)?;
                    self.expect_bool(&p, args[1].span, "the predicate");
                    Some(p.expr)
                } else {
                    None
                };
                let is_avg = fname.starts_with("avg");
                let out_ty = if is_avg && ty != Type::TimeSpan {
                    Type::Real
                } else {
                    ty
                };
                let func = match (is_avg, is_if) {
                    (false, false) => AggFunc::Sum,
                    (false, true) => AggFunc::SumIf,
                    (true, false) => AggFunc::Avg,
                    (true, true) => AggFunc::AvgIf,
                };
                let name = named(format!("{fname}_{}", arg_name(0)));
                Some((
                    mk(func, Some(a.expr), predicate, Some(ty)),
                    vec![col(name, out_ty)],
                ))
            }
            // `take_any`: any value of the group; the least is one, and merges exactly.
            "min" | "max" | "take_any" => {
                if !arity(self, 1, 1) {
                    return None;
                }
                let a = self.expr(&args[0], scope)?;
                let ty = a.ty.unwrap_or(Type::Real);
                if ty == Type::Dynamic || ty == Type::Bool {
                    self.err(
                        args[0].span,
                        format!("{fname}() needs a number, string, datetime or timespan, got {ty}"),
                    );
                    return None;
                }
                let func = if fname == "max" {
                    AggFunc::Max
                } else {
                    AggFunc::Min
                };
                // Kusto names `take_any(x)` after `x` itself.
                let name = if fname == "take_any" {
                    named(arg_name(0))
                } else {
                    named(format!("{fname}_{}", arg_name(0)))
                };
                Some((mk(func, Some(a.expr), None, Some(ty)), vec![col(name, ty)]))
            }
            "dcount" | "dcountif" => {
                let is_if = fname == "dcountif";
                if !arity(self, 1 + is_if as usize, 2 + is_if as usize) {
                    return None;
                }
                let a = self.expr(&args[0], scope)?;
                let predicate = if is_if {
                    let p = self.expr(&args[1], scope)?;
                    self.expect_bool(&p, args[1].span, "dcountif()'s predicate");
                    Some(p.expr)
                } else {
                    None
                };
                let level_at = 1 + is_if as usize;
                let level = match args.get(level_at).map(|e| &e.kind) {
                    None => 1,
                    Some(ExprKind::Literal(Literal::Long(l))) if (0..=4).contains(l) => *l,
                    Some(_) => {
                        self.err(
                            args[level_at].span,
                            format!("{fname}()'s accuracy must be a whole number from 0 to 4"),
                        );
                        return None;
                    }
                };
                let precision = DistinctCount::precision_for_accuracy(level);
                let name = named(format!("{fname}_{}", arg_name(0)));
                Some((
                    mk(AggFunc::DCount { precision }, Some(a.expr), predicate, a.ty),
                    vec![col(name, Type::Long)],
                ))
            }
            "make_set" | "make_list" | "make_bag" => {
                if !arity(self, 1, 2) {
                    return None;
                }
                let a = self.expr(&args[0], scope)?;
                let bag = fname == "make_bag";
                if bag && !matches!(a.ty, Some(Type::Dynamic) | None) {
                    self.err(
                        args[0].span,
                        format!("make_bag() needs a bag (dynamic), got {}", tyname(a.ty)),
                    );
                    return None;
                }
                let cap = match args.get(1).map(|e| &e.kind) {
                    None => DEFAULT_COLLECT,
                    Some(ExprKind::Literal(Literal::Long(n)))
                        if (1..=MAX_COLLECT as i64).contains(n) =>
                    {
                        *n as u32
                    }
                    Some(_) => {
                        self.err(
                            args[1].span,
                            format!("{fname}()'s size must be a whole number from 1 to {MAX_COLLECT} (hubwatch keeps it per series)"),
                        );
                        return None;
                    }
                };
                let distinct = fname == "make_set";
                let prefix = match fname {
                    "make_set" => "set",
                    "make_bag" => "bag",
                    _ => "list",
                };
                let name = named(format!("{prefix}_{}", arg_name(0)));
                Some((
                    mk(
                        AggFunc::Collect { distinct, cap, bag },
                        Some(a.expr),
                        None,
                        a.ty,
                    ),
                    vec![col(name, Type::Dynamic)],
                ))
            }
            "stdev" | "stdevp" | "variance" | "variancep" => {
                if !arity(self, 1, 1) {
                    return None;
                }
                let a = self.expr(&args[0], scope)?;
                if !matches!(a.ty, Some(Type::Long | Type::Real | Type::Dynamic) | None) {
                    self.err(
                        args[0].span,
                        format!("{fname}() needs a number, got {}", tyname(a.ty)),
                    );
                    return None;
                }
                let func = AggFunc::Spread {
                    root: fname.starts_with("stdev"),
                    sample: !fname.ends_with('p'),
                };
                let name = named(format!("{fname}_{}", arg_name(0)));
                Some((
                    mk(func, Some(a.expr), None, a.ty),
                    vec![col(name, Type::Real)],
                ))
            }
            "percentile" => {
                if !arity(self, 2, 2) {
                    return None;
                }
                let a = self.expr(&args[0], scope)?;
                let ty = match a.ty {
                    Some(t @ (Type::Long | Type::Real)) => t,
                    Some(Type::Dynamic) | None => Type::Real,
                    Some(other) => {
                        self.err(
                            args[0].span,
                            format!("percentile() needs a number, got {other}"),
                        );
                        return None;
                    }
                };
                let p = match &args[1].kind {
                    ExprKind::Literal(Literal::Long(v)) => *v as f64,
                    ExprKind::Literal(Literal::Real(v)) => *v,
                    _ => f64::NAN,
                };
                if !(0.0..=100.0).contains(&p) {
                    self.err(
                        args[1].span,
                        "percentile()'s second argument must be a number from 0 to 100",
                    );
                    return None;
                }
                let suffix = crate::value::format_real(p).replace('.', "_");
                let name = named(format!("percentile_{}_{suffix}", arg_name(0)));
                Some((
                    mk(AggFunc::Percentile { p }, Some(a.expr), None, Some(ty)),
                    vec![col(name, ty)],
                ))
            }
            "arg_max" | "arg_min" => {
                if args.len() < 2 {
                    self.err(item.expr.span, format!("{fname}() takes the expression to maximize and the columns to return (or *)"));
                    return None;
                }
                let a = self.expr(&args[0], scope)?;
                let ty = a.ty.unwrap_or(Type::Real);
                let first_name: Arc<str> = item
                    .name
                    .as_ref()
                    .map(|n| Arc::from(n.name.as_str()))
                    .or_else(|| derive_name(&args[0]).map(Arc::from))
                    .unwrap_or_else(|| Arc::from(if fname == "arg_max" { "max_" } else { "min_" }));
                let mut cols = vec![col(first_name.clone(), ty)];
                let mut carried = Vec::new();
                for extra in &args[1..] {
                    if matches!(extra.kind, ExprKind::Star) {
                        for (i, c) in scope.iter().enumerate() {
                            let dup = c.name == first_name || keys.iter().any(|k| k.name == c.name);
                            if !dup && !cols.iter().any(|x| x.name == c.name) {
                                carried.push(Expr::Column(i));
                                cols.push(Col {
                                    name: c.name.clone(),
                                    ty: c.ty,
                                    is_time: false,
                                    is_key: false,
                                });
                            }
                        }
                        continue;
                    }
                    let Some(t) = self.expr(extra, scope) else {
                        continue;
                    };
                    let name = derive_name(extra)
                        .map(Arc::from)
                        .unwrap_or_else(|| Arc::from(format!("Column{}", carried.len() + 1)));
                    carried.push(t.expr);
                    cols.push(Col {
                        name,
                        ty: t.ty,
                        is_time: false,
                        is_key: false,
                    });
                }
                let func = if fname == "arg_max" {
                    AggFunc::ArgMax
                } else {
                    AggFunc::ArgMin
                };
                let mut agg = mk(func, Some(a.expr), None, Some(ty));
                agg.carried = carried;
                Some((agg, cols))
            }
            other => {
                let msg = if scalar_func(other).is_some() {
                    format!("'{other}' is not an aggregation function; summarize needs count, sum, avg, min, max, dcount, arg_max, percentile, …")
                } else {
                    match nearest(other, AGGREGATES.iter().copied()) {
                        Some(near) => {
                            format!(
                                "unknown aggregation function '{other}' (did you mean '{near}'?)"
                            )
                        }
                        None => format!("unknown aggregation function '{other}'"),
                    }
                };
                self.err(name.span, msg);
                None
            }
        }
    }

    fn expect_bool(&mut self, t: &Typed, span: Span, what: &str) {
        if let Some(ty) = t.ty {
            if ty != Type::Bool && ty != Type::Dynamic {
                self.err(span, format!("{what} must be a bool, got {ty}"));
            }
        }
    }

    fn unknown_column(&mut self, span: Span, name: &str, scope: &Scope) {
        // A union split it by type: `DurationMs_long`, `DurationMs_string`.
        let split: Vec<String> = scope
            .iter()
            .filter(|c| {
                c.name
                    .strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .is_some_and(|ty| Some(ty) == c.ty.map(Type::name))
            })
            .map(|c| format!("'{}'", c.name))
            .collect();
        if !split.is_empty() {
            self.err(
                span,
                format!(
                    "unknown column '{name}': the union has one column per type of it, {}",
                    split.join(", ")
                ),
            );
            return;
        }
        let hint = match scope.iter().find(|c| c.name.eq_ignore_ascii_case(name)) {
            Some(c) => format!(
                " (did you mean '{}'? column names are case-sensitive)",
                c.name
            ),
            None => match nearest(name, scope.iter().map(|c| &*c.name)) {
                Some(near) => format!(" (did you mean '{near}'?)"),
                None => String::new(),
            },
        };
        self.err(span, format!("unknown column '{name}'{hint}"));
    }

    /// A regular expression given as a string literal, compiled (RE2 syntax, as Kusto's).
    fn regex(&mut self, pattern: &ast::Expr, what: &str) -> Option<Arc<regex::Regex>> {
        let ExprKind::Literal(Literal::String(text)) = &pattern.kind else {
            self.err(
                pattern.span,
                format!("{what} needs its pattern as a string literal"),
            );
            return None;
        };
        match compile_regex(text) {
            Ok(re) => Some(re),
            Err(why) => {
                self.err(pattern.span, format!("invalid regular expression: {why}"));
                None
            }
        }
    }

    fn expr(&mut self, e: &ast::Expr, scope: &Scope) -> Option<Typed> {
        let typed = |expr, ty| Some(Typed { expr, ty });
        match &e.kind {
            ExprKind::MatchesRegex { expr, pattern } => {
                let text = self.expr(expr, scope)?;
                let re = self.regex(pattern, "'matches regex'")?;
                typed(
                    Expr::Regex {
                        re,
                        text: Box::new(text.expr),
                        group: None,
                    },
                    Some(Type::Bool),
                )
            }
            ExprKind::Literal(lit) => {
                let (v, ty) = self.literal(lit, e.span)?;
                typed(Expr::Literal(v), ty)
            }
            ExprKind::Column(name) => match scope.iter().position(|c| *c.name == **name) {
                Some(i) => typed(Expr::Column(i), scope[i].ty),
                None => {
                    self.unknown_column(e.span, name, scope);
                    None
                }
            },
            ExprKind::Star => {
                self.err(
                    e.span,
                    "'*' is only allowed as an argument of arg_max()/arg_min() and before a string operator ('* has \"x\"')",
                );
                None
            }
            ExprKind::Unary { op, expr } => {
                let t = self.expr(expr, scope)?;
                match t.ty {
                    Some(Type::Long | Type::Real | Type::TimeSpan | Type::Dynamic) | None => {}
                    Some(other) => {
                        self.err(
                            e.span,
                            format!("unary minus needs a number or timespan, got {other}"),
                        );
                        return None;
                    }
                }
                typed(
                    Expr::Unary {
                        neg: *op == ast::UnaryOp::Neg,
                        expr: Box::new(t.expr),
                    },
                    t.ty,
                )
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, e.span, scope),
            ExprKind::In {
                expr,
                list,
                negated,
                case_insensitive,
            } => {
                let t = self.expr(expr, scope)?;
                let mut items = Vec::new();
                for item in list {
                    let Some(mut it) = self.expr(item, scope) else {
                        continue;
                    };
                    if let (Some(Type::Long | Type::Real), Expr::Literal(Value::Str(s))) =
                        (t.ty, &it.expr)
                    {
                        if let Some(n) = numeric_literal(s) {
                            it = Typed {
                                expr: Expr::Literal(n.0),
                                ty: Some(n.1),
                            };
                        }
                    }
                    if !comparable(t.ty, it.ty) {
                        self.err(
                            item.span,
                            format!("cannot compare {} with {}", tyname(t.ty), tyname(it.ty)),
                        );
                    }
                    items.push(it.expr);
                }
                typed(
                    Expr::In {
                        expr: Box::new(t.expr),
                        list: items,
                        negated: *negated,
                        case_insensitive: *case_insensitive,
                    },
                    Some(Type::Bool),
                )
            }
            ExprKind::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let t = self.expr(expr, scope)?;
                let lo = self.expr(low, scope)?;
                let hi = self.expr(high, scope)?;
                for (x, span) in [(&lo, low.span), (&hi, high.span)] {
                    if !comparable(t.ty, x.ty) {
                        self.err(
                            span,
                            format!("cannot compare {} with {}", tyname(t.ty), tyname(x.ty)),
                        );
                    }
                }
                typed(
                    Expr::Between {
                        expr: Box::new(t.expr),
                        low: Box::new(lo.expr),
                        high: Box::new(hi.expr),
                        negated: *negated,
                    },
                    Some(Type::Bool),
                )
            }
            ExprKind::Member { expr, name } => {
                let t = self.expr(expr, scope)?;
                if !matches!(t.ty, Some(Type::Dynamic) | None) {
                    self.err(
                        e.span,
                        format!("'.{name}' needs a dynamic value, got {}", tyname(t.ty)),
                    );
                    return None;
                }
                typed(
                    Expr::Member {
                        expr: Box::new(t.expr),
                        name: Arc::from(name.as_str()),
                    },
                    Some(Type::Dynamic),
                )
            }
            ExprKind::Index { expr, index } => {
                let t = self.expr(expr, scope)?;
                let i = self.expr(index, scope)?;
                if !matches!(t.ty, Some(Type::Dynamic) | None) {
                    self.err(
                        e.span,
                        format!(
                            "indexing needs a dynamic value (an array or object), got {}",
                            tyname(t.ty)
                        ),
                    );
                    return None;
                }
                if !matches!(i.ty, Some(Type::Long | Type::String | Type::Dynamic) | None) {
                    self.err(
                        index.span,
                        format!(
                            "an index must be a whole number or a string, got {}",
                            tyname(i.ty)
                        ),
                    );
                    return None;
                }
                typed(
                    Expr::Index {
                        expr: Box::new(t.expr),
                        index: Box::new(i.expr),
                    },
                    Some(Type::Dynamic),
                )
            }
            ExprKind::Call { name, args } => self.call(name, args, e.span, scope),
        }
    }

    fn literal(&mut self, lit: &Literal, span: Span) -> Option<(Value, Option<Type>)> {
        Some(match lit {
            Literal::Null(t) => (
                Value::Null,
                t.map(|t| match t {
                    LiteralType::Bool => Type::Bool,
                    LiteralType::Long => Type::Long,
                    LiteralType::Real => Type::Real,
                    LiteralType::String => Type::String,
                    LiteralType::DateTime => Type::DateTime,
                    LiteralType::TimeSpan => Type::TimeSpan,
                }),
            ),
            Literal::Bool(b) => (Value::Bool(*b), Some(Type::Bool)),
            Literal::Long(v) => (Value::Long(*v), Some(Type::Long)),
            Literal::Real(v) => (Value::Real(*v), Some(Type::Real)),
            Literal::String(s) => (Value::str(s), Some(Type::String)),
            Literal::TimeSpan(t) => (Value::TimeSpan(*t), Some(Type::TimeSpan)),
            Literal::DateTime(text) => match time::parse_datetime(text) {
                Some((t, _)) => (Value::DateTime(t), Some(Type::DateTime)),
                None => {
                    self.err(span, format!("invalid datetime literal '{text}' (expected e.g. datetime(2024-01-31T12:00:00Z))"));
                    return None;
                }
            },
            Literal::Dynamic(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(v) => (Value::Dynamic(Arc::new(v)), Some(Type::Dynamic)),
                Err(err) => {
                    self.err(span, format!("invalid dynamic literal: {err}"));
                    return None;
                }
            },
        })
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        lhs: &ast::Expr,
        rhs: &ast::Expr,
        span: Span,
        scope: &Scope,
    ) -> Option<Typed> {
        // `* has "x"`: any string column has it (`* !has "x"`: none has it).
        if let (ExprKind::Star, Str { negated, .. }) = (&lhs.kind, op) {
            let r = self.expr(rhs, scope)?;
            let mut acc: Option<Expr> = None;
            for (i, c) in scope.iter().enumerate() {
                if c.ty != Some(Type::String) {
                    continue;
                }
                let e = Expr::Binary {
                    op,
                    lhs: Box::new(Expr::Column(i)),
                    rhs: Box::new(r.expr.clone()),
                };
                acc = Some(match acc {
                    None => e,
                    Some(a) if negated => Expr::And(Box::new(a), Box::new(e)),
                    Some(a) => Expr::Or(Box::new(a), Box::new(e)),
                });
            }
            return Some(Typed {
                expr: acc.unwrap_or(Expr::Literal(Value::Bool(negated))),
                ty: Some(Type::Bool),
            });
        }
        let l = self.expr(lhs, scope);
        let r = self.expr(rhs, scope);
        let (mut l, mut r) = (l?, r?);
        use BinaryOp::*;
        let ty = match op {
            And | Or => {
                self.expect_bool(
                    &l,
                    lhs.span,
                    &format!(
                        "the left side of '{}'",
                        if op == And { "and" } else { "or" }
                    ),
                );
                self.expect_bool(
                    &r,
                    rhs.span,
                    &format!(
                        "the right side of '{}'",
                        if op == And { "and" } else { "or" }
                    ),
                );
                let expr = if op == And {
                    Expr::And(Box::new(l.expr), Box::new(r.expr))
                } else {
                    Expr::Or(Box::new(l.expr), Box::new(r.expr))
                };
                return Some(Typed {
                    expr,
                    ty: Some(Type::Bool),
                });
            }
            Eq | Ne | Lt | Le | Gt | Ge => {
                // Log Analytics samples compare int columns with string literals
                // (`ResponseCode != "200"`): a numeric literal string is taken as the number.
                if let (Some(Type::Long | Type::Real), Expr::Literal(Value::Str(s))) =
                    (l.ty, &r.expr)
                {
                    if let Some((v, t)) = numeric_literal(s) {
                        r = Typed {
                            expr: Expr::Literal(v),
                            ty: Some(t),
                        };
                    }
                }
                if let (Expr::Literal(Value::Str(s)), Some(Type::Long | Type::Real)) =
                    (&l.expr, r.ty)
                {
                    if let Some((v, t)) = numeric_literal(s) {
                        l = Typed {
                            expr: Expr::Literal(v),
                            ty: Some(t),
                        };
                    }
                }
                if !comparable(l.ty, r.ty) {
                    self.err(
                        span,
                        format!("cannot compare {} with {}", tyname(l.ty), tyname(r.ty)),
                    );
                    return None;
                }
                Some(Type::Bool)
            }
            EqTilde | NeTilde | Str { .. } => Some(Type::Bool),
            Add | Sub | Mul | Div | Mod => match arith_type(op, l.ty, r.ty) {
                Ok(t) => t,
                Err(()) => {
                    let sym = match op {
                        Add => "+",
                        Sub => "-",
                        Mul => "*",
                        Div => "/",
                        _ => "%",
                    };
                    self.err(
                        span,
                        format!(
                            "cannot apply '{sym}' to {} and {}",
                            tyname(l.ty),
                            tyname(r.ty)
                        ),
                    );
                    return None;
                }
            },
        };
        Some(Typed {
            expr: Expr::Binary {
                op,
                lhs: Box::new(l.expr),
                rhs: Box::new(r.expr),
            },
            ty,
        })
    }

    fn call(
        &mut self,
        name: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
        scope: &Scope,
    ) -> Option<Typed> {
        let fname = name.name.as_str();
        if fname == "extract" {
            // extract(regex, group, text): the group's text in the first match, or null.
            if args.len() != 3 {
                self.err(
                    span,
                    format!("extract() takes 3 argument(s), got {}", args.len()),
                );
                return None;
            }
            let re = self.regex(&args[0], "extract()")?;
            let group = match &args[1].kind {
                ExprKind::Literal(Literal::Long(g))
                    if (0..=re.captures_len() as i64 - 1).contains(g) =>
                {
                    *g as usize
                }
                _ => {
                    self.err(
                        args[1].span,
                        format!(
                            "extract()'s group must be a whole number from 0 to {}",
                            re.captures_len() - 1
                        ),
                    );
                    return None;
                }
            };
            let text = self.expr(&args[2], scope)?;
            return Some(Typed {
                expr: Expr::Regex {
                    re,
                    text: Box::new(text.expr),
                    group: Some(group),
                },
                ty: Some(Type::String),
            });
        }
        if let "trim" | "trim_start" | "trim_end" = fname {
            // trim(regex, text): the text without the matches at its start and/or end: the
            // middle group of one expression around the user's.
            if args.len() != 2 {
                self.err(
                    span,
                    format!("{fname}() takes 2 argument(s), got {}", args.len()),
                );
                return None;
            }
            let ExprKind::Literal(Literal::String(pattern)) = &args[0].kind else {
                self.err(
                    args[0].span,
                    format!("{fname}() needs its regular expression as a string literal"),
                );
                return None;
            };
            let (start, end) = match fname {
                "trim_start" => (true, false),
                "trim_end" => (false, true),
                _ => (true, true),
            };
            if let Err(why) = compile_regex(pattern) {
                self.err(args[0].span, format!("invalid regular expression: {why}"));
                return None;
            }
            let around = |on: bool| {
                if on {
                    format!("(?:{pattern})*")
                } else {
                    String::new()
                }
            };
            let middle = if end { ".*?" } else { ".*" };
            let full = format!(
                "(?s)^{}(?P<hubwatch_trimmed>{middle}){}$",
                around(start),
                around(end)
            );
            let re = match compile_regex(&full) {
                Ok(re) => re,
                Err(why) => {
                    self.err(args[0].span, format!("invalid regular expression: {why}"));
                    return None;
                }
            };
            let Some(group) = re
                .capture_names()
                .position(|g| g == Some("hubwatch_trimmed"))
            else {
                self.err(
                    args[0].span,
                    format!("{fname}()'s regular expression changes how what follows it reads (a flag such as (?x))"),
                );
                return None;
            };
            let text = self.expr(&args[1], scope)?;
            return Some(Typed {
                expr: Expr::Regex {
                    re,
                    text: Box::new(text.expr),
                    group: Some(group),
                },
                ty: Some(Type::String),
            });
        }
        if fname == "now" {
            if !args.is_empty() {
                self.err(span, "now() takes no arguments (offsets: now() - 1h)");
                return None;
            }
            return Some(Typed {
                expr: Expr::Now,
                ty: Some(Type::DateTime),
            });
        }
        let Some((func, lo, hi)) = scalar_func(fname) else {
            let msg = if is_aggregate(fname) {
                format!("aggregation function '{fname}' is only allowed in 'summarize'")
            } else {
                let names = SCALARS.iter().map(|(n, ..)| *n).chain([
                    "now",
                    "extract",
                    "trim",
                    "trim_start",
                    "trim_end",
                ]);
                match nearest(fname, names) {
                    Some(near) => format!("unknown function '{fname}' (did you mean '{near}'?)"),
                    None => format!("unknown function '{fname}'"),
                }
            };
            self.err(name.span, msg);
            return None;
        };
        if args.len() < lo || args.len() > hi {
            let want = if lo == hi {
                format!("{lo}")
            } else if hi == usize::MAX {
                format!("at least {lo}")
            } else {
                format!("{lo} to {hi}")
            };
            self.err(
                span,
                format!("{fname}() takes {want} argument(s), got {}", args.len()),
            );
            return None;
        }
        let mut typed_args = Vec::with_capacity(args.len());
        let mut failed = false;
        for a in args {
            match self.expr(a, scope) {
                Some(t) => typed_args.push(t),
                None => failed = true,
            }
        }
        if failed {
            return None;
        }
        let ty = |i: usize| typed_args[i].ty;
        let bad = |this: &mut Checker, i: usize, want: &str| {
            this.err(
                args[i].span,
                format!(
                    "{fname}() needs {want} here, got {}",
                    tyname(typed_args[i].ty)
                ),
            );
        };
        let out: Option<Type> = match func {
            Func::Ago => {
                if !matches!(ty(0), Some(Type::TimeSpan) | None) {
                    bad(self, 0, "a timespan (e.g. 5m, 1d)");
                    return None;
                }
                Some(Type::DateTime)
            }
            Func::Bin | Func::Floor => {
                let ok = matches!(
                    (ty(0), ty(1)),
                    (Some(Type::DateTime | Type::TimeSpan), Some(Type::TimeSpan))
                        | (
                            Some(Type::Long | Type::Real | Type::Dynamic) | None,
                            Some(Type::Long | Type::Real)
                        )
                );
                if !ok {
                    bad(self, 1, "a bin size matching the value (a timespan for datetimes, a number for numbers)");
                    return None;
                }
                ty(0)
            }
            Func::Iif => {
                self.expect_bool(&typed_args[0], args[0].span, "iif()'s condition");
                match unify(ty(1), ty(2)) {
                    Ok(t) => t,
                    Err(()) => {
                        self.err(
                            span,
                            format!(
                                "iif() branches have different types: {} and {}",
                                tyname(ty(1)),
                                tyname(ty(2))
                            ),
                        );
                        return None;
                    }
                }
            }
            Func::Case => {
                if args.len().is_multiple_of(2) {
                    self.err(
                        span,
                        "case() takes condition/value pairs and a final else value",
                    );
                    return None;
                }
                let mut t: Option<Type> = None;
                for i in (0..args.len() - 1).step_by(2) {
                    self.expect_bool(&typed_args[i], args[i].span, "case()'s condition");
                }
                for i in (1..args.len())
                    .step_by(2)
                    .chain(std::iter::once(args.len() - 1))
                {
                    t = match unify(t, ty(i)) {
                        Ok(t) => t,
                        Err(()) => {
                            self.err(
                                args[i].span,
                                format!(
                                    "case() values have different types: {} and {}",
                                    tyname(t),
                                    tyname(ty(i))
                                ),
                            );
                            return None;
                        }
                    };
                }
                t
            }
            Func::Not => {
                self.expect_bool(&typed_args[0], args[0].span, "not()'s argument");
                Some(Type::Bool)
            }
            Func::ToString | Func::StrCat | Func::ToLower | Func::ToUpper => Some(Type::String),
            Func::ToLong => Some(Type::Long),
            Func::ToReal => Some(Type::Real),
            Func::ToBool => Some(Type::Bool),
            Func::ToDateTime => Some(Type::DateTime),
            Func::ToTimeSpan => Some(Type::TimeSpan),
            Func::Split => {
                if args.len() == 3 && !matches!(ty(2), Some(Type::Long) | None) {
                    bad(self, 2, "a whole number");
                    return None;
                }
                Some(Type::Dynamic)
            }
            Func::IsEmpty | Func::IsNotEmpty | Func::IsNull | Func::IsNotNull => Some(Type::Bool),
            Func::StrLen => Some(Type::Long),
            Func::Abs => {
                if !matches!(
                    ty(0),
                    Some(Type::Long | Type::Real | Type::TimeSpan | Type::Dynamic) | None
                ) {
                    bad(self, 0, "a number");
                    return None;
                }
                ty(0)
            }
            Func::Round => {
                if !matches!(ty(0), Some(Type::Long | Type::Real | Type::Dynamic) | None) {
                    bad(self, 0, "a number");
                    return None;
                }
                // A whole number rounds to a whole number (the evaluator returns a long).
                match ty(0) {
                    Some(Type::Long) => Some(Type::Long),
                    _ => Some(Type::Real),
                }
            }
            Func::ParseJson => Some(Type::Dynamic),
            Func::BinAt => {
                let ok = match (ty(0), ty(1), ty(2)) {
                    (Some(Type::DateTime), Some(Type::TimeSpan), Some(Type::DateTime))
                    | (Some(Type::TimeSpan), Some(Type::TimeSpan), Some(Type::TimeSpan)) => true,
                    (a, b, c) => [a, b, c]
                        .iter()
                        .all(|t| matches!(t, Some(Type::Long | Type::Real) | None)),
                };
                if !ok {
                    bad(self, 1, "a bin size and a fixed point matching the value (a timespan and a datetime for datetimes)");
                    return None;
                }
                match (ty(0), ty(1), ty(2)) {
                    (Some(Type::Long), Some(Type::Long), Some(Type::Long)) => Some(Type::Long),
                    (Some(t @ (Type::DateTime | Type::TimeSpan)), _, _) => Some(t),
                    _ => Some(Type::Real),
                }
            }
            Func::DateTimeDiff => {
                let known = matches!(&args[0].kind, ExprKind::Literal(Literal::String(p)) if DATETIME_PARTS.contains(&p.as_str()));
                if !known {
                    self.err(
                        args[0].span,
                        format!(
                            "datetime_diff() needs its period as a string literal, one of {}",
                            DATETIME_PARTS.join(", ")
                        ),
                    );
                    return None;
                }
                for i in [1, 2] {
                    if !matches!(ty(i), Some(Type::DateTime) | None) {
                        bad(self, i, "a datetime");
                        return None;
                    }
                }
                Some(Type::Long)
            }
            Func::StartOf(_) | Func::EndOf(_) => {
                if !matches!(ty(0), Some(Type::DateTime) | None) {
                    bad(self, 0, "a datetime");
                    return None;
                }
                if args.len() == 2 && !matches!(ty(1), Some(Type::Long) | None) {
                    bad(self, 1, "a whole number of periods");
                    return None;
                }
                Some(Type::DateTime)
            }
            Func::DateTimePart | Func::DateTimeAdd => {
                let parts: &[&str] = if func == Func::DateTimePart {
                    &[
                        "year",
                        "quarter",
                        "month",
                        "week_of_year",
                        "day",
                        "dayofyear",
                        "hour",
                        "minute",
                        "second",
                        "millisecond",
                        "microsecond",
                        "nanosecond",
                    ]
                } else {
                    DATETIME_PARTS
                };
                let known = matches!(&args[0].kind, ExprKind::Literal(Literal::String(p)) if parts.contains(&p.to_ascii_lowercase().as_str()));
                if !known {
                    self.err(
                        args[0].span,
                        format!(
                            "{fname}() needs its part as a string literal, one of {}",
                            parts.join(", ")
                        ),
                    );
                    return None;
                }
                let at = if func == Func::DateTimeAdd {
                    if !matches!(ty(1), Some(Type::Long) | None) {
                        bad(self, 1, "a whole number");
                        return None;
                    }
                    2
                } else {
                    1
                };
                if !matches!(ty(at), Some(Type::DateTime) | None) {
                    bad(self, at, "a datetime");
                    return None;
                }
                Some(if func == Func::DateTimeAdd {
                    Type::DateTime
                } else {
                    Type::Long
                })
            }
            Func::Part(_) | Func::DayOfWeek => {
                if !matches!(ty(0), Some(Type::DateTime) | None) {
                    bad(self, 0, "a datetime");
                    return None;
                }
                Some(if func == Func::DayOfWeek {
                    Type::TimeSpan
                } else {
                    Type::Long
                })
            }
            Func::FormatDateTime => {
                if !matches!(ty(0), Some(Type::DateTime) | None) {
                    bad(self, 0, "a datetime");
                    return None;
                }
                if !matches!(&args[1].kind, ExprKind::Literal(Literal::String(f)) if f.len() <= 100)
                {
                    self.err(
                        args[1].span,
                        "format_datetime() needs its format as a string literal (at most 100 characters)",
                    );
                    return None;
                }
                Some(Type::String)
            }
            Func::Math(m) => {
                if !matches!(ty(0), Some(Type::Long | Type::Real | Type::Dynamic) | None) {
                    bad(self, 0, "a number");
                    return None;
                }
                match (m, ty(0)) {
                    (MathFn::Ceiling, Some(Type::Long)) => Some(Type::Long),
                    _ => Some(Type::Real),
                }
            }
            Func::Pow => {
                for i in 0..2 {
                    if !matches!(ty(i), Some(Type::Long | Type::Real | Type::Dynamic) | None) {
                        bad(self, i, "a number");
                        return None;
                    }
                }
                Some(Type::Real)
            }
            Func::Substring | Func::IndexOf => {
                let from = if func == Func::Substring { 1 } else { 2 };
                for i in from..args.len() {
                    if !matches!(ty(i), Some(Type::Long) | None) {
                        bad(self, i, "a whole number");
                        return None;
                    }
                }
                Some(if func == Func::Substring {
                    Type::String
                } else {
                    Type::Long
                })
            }
            Func::Reverse => Some(Type::String),
            // Kusto's documented values are of strings and datetimes; those are the ones
            // hashed the same way here.
            Func::Hash => {
                if !matches!(ty(0), Some(Type::String | Type::DateTime) | None) {
                    bad(self, 0, "a string or a datetime");
                    return None;
                }
                if args.len() == 2 && !matches!(ty(1), Some(Type::Long) | None) {
                    bad(self, 1, "a whole number");
                    return None;
                }
                Some(Type::Long)
            }
            Func::ArrayLength => Some(Type::Long),
            Func::PackArray => Some(Type::Dynamic),
            Func::BagPack => {
                if !args.len().is_multiple_of(2) {
                    self.err(span, format!("{fname}() takes key/value pairs"));
                    return None;
                }
                Some(Type::Dynamic)
            }
            Func::FromUnixTime(_) => {
                if !matches!(ty(0), Some(Type::Long | Type::Real | Type::Dynamic) | None) {
                    bad(self, 0, "a number");
                    return None;
                }
                Some(Type::DateTime)
            }
            Func::ReplaceString => Some(Type::String),
            Func::StrCatArray => {
                if !matches!(ty(0), Some(Type::Dynamic) | None) {
                    bad(self, 0, "an array (dynamic)");
                    return None;
                }
                Some(Type::String)
            }
            Func::Coalesce | Func::MinOf | Func::MaxOf => {
                let mut t = None;
                for i in 0..args.len() {
                    t = match unify(t, ty(i)) {
                        Ok(t) => t,
                        Err(()) => {
                            bad(
                                self,
                                i,
                                &format!("the same type as the other arguments ({})", tyname(t)),
                            );
                            return None;
                        }
                    };
                }
                t
            }
        };
        // Branches of mixed long and real: the long ones are converted, so that the value
        // has the type the checker gave it.
        let widen =
            out == Some(Type::Real) && matches!(func, Func::Iif | Func::Case | Func::Coalesce);
        let args = typed_args
            .into_iter()
            .map(|t| match t.ty {
                Some(Type::Long) if widen => Expr::Call {
                    func: Func::ToReal,
                    args: vec![t.expr],
                },
                _ => t.expr,
            })
            .collect();
        Some(Typed {
            expr: Expr::Call { func, args },
            ty: out,
        })
    }
}

/// Splits `a and b and c` into its conjuncts.
fn conjuncts(e: &ast::Expr) -> Vec<&ast::Expr> {
    match &e.kind {
        ExprKind::Binary {
            op: BinaryOp::And,
            lhs,
            rhs,
        } => {
            let mut v = conjuncts(lhs);
            v.extend(conjuncts(rhs));
            v
        }
        _ => vec![e],
    }
}

/// Whether an expression is one aggregation call (not an expression of several).
fn is_aggregate_call(e: &ast::Expr) -> bool {
    matches!(&e.kind, ExprKind::Call { name, .. } if is_aggregate(&name.name))
}

/// Moves every aggregation call inside `e` out, as `(hidden name, call)`, leaving a column
/// reference to its hidden name in its place.
fn lift_aggregates(e: &mut ast::Expr, hidden: &mut usize, out: &mut Vec<(String, ast::Expr)>) {
    if !is_aggregate_call(e) {
        for c in e.children_mut() {
            lift_aggregates(c, hidden, out);
        }
        return;
    }
    let name = format!("__aggregate{}", *hidden);
    *hidden += 1;
    let column = ast::Expr {
        kind: ExprKind::Column(name.clone()),
        span: e.span,
    };
    out.push((name, std::mem::replace(e, column)));
}

/// Every expression of a tabular expression, its legs and join sides included.
fn each_expr_mut(t: &mut ast::Tabular, f: &mut dyn FnMut(&mut ast::Expr)) {
    match &mut t.source {
        Source::Name(_) => {}
        Source::Call { args, .. } => args.iter_mut().for_each(&mut *f),
        Source::Sub(inner) => each_expr_mut(inner, f),
        Source::Union(u) => u.legs.iter_mut().for_each(|l| each_expr_mut(l, f)),
    }
    for op in &mut t.ops {
        match &mut op.kind {
            OperatorKind::Where(e) | OperatorKind::Take(e) => f(e),
            OperatorKind::Extend(items) | OperatorKind::Project(items) => {
                items.iter_mut().for_each(|i| f(&mut i.expr))
            }
            OperatorKind::Summarize { aggregates, by } => {
                aggregates.iter_mut().chain(by).for_each(|i| f(&mut i.expr))
            }
            OperatorKind::Sort(keys) => keys.iter_mut().for_each(|k| f(&mut k.expr)),
            OperatorKind::Top { count, by } => {
                f(count);
                by.iter_mut().for_each(|k| f(&mut k.expr));
            }
            OperatorKind::Parse(p) => f(&mut p.expr),
            OperatorKind::MvExpand(m) => {
                m.items.iter_mut().for_each(|(i, _)| f(&mut i.expr));
                if let Some(l) = &mut m.limit {
                    f(l);
                }
            }
            OperatorKind::Union(u) => u.legs.iter_mut().for_each(|l| each_expr_mut(l, f)),
            OperatorKind::Join { right, .. } | OperatorKind::Lookup { right, .. } => {
                each_expr_mut(right, f)
            }
            OperatorKind::ProjectAway(_)
            | OperatorKind::ProjectRename(_)
            | OperatorKind::ProjectReorder(_)
            | OperatorKind::Distinct(_)
            | OperatorKind::Count
            | OperatorKind::As(_)
            | OperatorKind::Render(_) => {}
        }
    }
}

/// Replaces the `let` names in `e` by their expressions (the last binding of a name wins).
fn inline(e: &mut ast::Expr, lets: &[(String, ast::Expr)]) {
    if let ExprKind::Column(name) = &e.kind {
        if let Some((_, v)) = lets.iter().rev().find(|(n, _)| n == name) {
            *e = v.clone();
        }
        return;
    }
    for c in e.children_mut() {
        inline(c, lets);
    }
}

/// (nodes, depth) of an expression tree.
fn extent(e: &ast::Expr) -> (usize, usize) {
    e.children()
        .into_iter()
        .map(extent)
        .fold((1, 1), |(n, d), (cn, cd)| (n + cn, d.max(cd + 1)))
}

/// Scalar functions: (name, function, min args, max args). `now` is handled apart.
const SCALARS: &[(&str, Func, usize, usize)] = &[
    ("ago", Func::Ago, 1, 1),
    ("bin", Func::Bin, 2, 2),
    ("floor", Func::Floor, 2, 2),
    ("iif", Func::Iif, 3, 3),
    ("iff", Func::Iif, 3, 3),
    ("case", Func::Case, 3, usize::MAX),
    ("not", Func::Not, 1, 1),
    ("tostring", Func::ToString, 1, 1),
    ("toint", Func::ToLong, 1, 1),
    ("tolong", Func::ToLong, 1, 1),
    ("todouble", Func::ToReal, 1, 1),
    ("toreal", Func::ToReal, 1, 1),
    ("tobool", Func::ToBool, 1, 1),
    ("toboolean", Func::ToBool, 1, 1),
    ("todatetime", Func::ToDateTime, 1, 1),
    ("totimespan", Func::ToTimeSpan, 1, 1),
    ("split", Func::Split, 2, 3),
    ("strcat", Func::StrCat, 1, 64),
    ("tolower", Func::ToLower, 1, 1),
    ("toupper", Func::ToUpper, 1, 1),
    ("isempty", Func::IsEmpty, 1, 1),
    ("isnotempty", Func::IsNotEmpty, 1, 1),
    ("isnull", Func::IsNull, 1, 1),
    ("isnotnull", Func::IsNotNull, 1, 1),
    ("strlen", Func::StrLen, 1, 1),
    ("abs", Func::Abs, 1, 1),
    ("round", Func::Round, 1, 2),
    ("coalesce", Func::Coalesce, 2, 64),
    ("todecimal", Func::ToReal, 1, 1),
    ("parse_json", Func::ParseJson, 1, 1),
    ("todynamic", Func::ParseJson, 1, 1),
    ("parsejson", Func::ParseJson, 1, 1),
    ("startofday", Func::StartOf(Calendar::Day), 1, 2),
    ("startofweek", Func::StartOf(Calendar::Week), 1, 2),
    ("startofmonth", Func::StartOf(Calendar::Month), 1, 2),
    ("startofyear", Func::StartOf(Calendar::Year), 1, 2),
    ("endofday", Func::EndOf(Calendar::Day), 1, 2),
    ("endofweek", Func::EndOf(Calendar::Week), 1, 2),
    ("endofmonth", Func::EndOf(Calendar::Month), 1, 2),
    ("endofyear", Func::EndOf(Calendar::Year), 1, 2),
    ("datetime_part", Func::DateTimePart, 2, 2),
    ("getyear", Func::Part("year"), 1, 1),
    ("getmonth", Func::Part("month"), 1, 1),
    ("monthofyear", Func::Part("month"), 1, 1),
    ("dayofmonth", Func::Part("day"), 1, 1),
    ("dayofyear", Func::Part("dayofyear"), 1, 1),
    ("hourofday", Func::Part("hour"), 1, 1),
    ("week_of_year", Func::Part("week_of_year"), 1, 1),
    ("weekofyear", Func::Part("week_of_year"), 1, 1),
    ("dayofweek", Func::DayOfWeek, 1, 1),
    ("datetime_add", Func::DateTimeAdd, 3, 3),
    ("format_datetime", Func::FormatDateTime, 2, 2),
    ("ceiling", Func::Math(MathFn::Ceiling), 1, 1),
    ("sqrt", Func::Math(MathFn::Sqrt), 1, 1),
    ("log", Func::Math(MathFn::Ln), 1, 1),
    ("log10", Func::Math(MathFn::Log10), 1, 1),
    ("log2", Func::Math(MathFn::Log2), 1, 1),
    ("exp", Func::Math(MathFn::Exp), 1, 1),
    ("exp2", Func::Math(MathFn::Exp2), 1, 1),
    ("exp10", Func::Math(MathFn::Exp10), 1, 1),
    ("pow", Func::Pow, 2, 2),
    ("min_of", Func::MinOf, 2, 64),
    ("max_of", Func::MaxOf, 2, 64),
    ("substring", Func::Substring, 2, 3),
    ("indexof", Func::IndexOf, 2, 3),
    ("reverse", Func::Reverse, 1, 1),
    ("hash", Func::Hash, 1, 2),
    ("hash_xxhash64", Func::Hash, 1, 2),
    ("array_length", Func::ArrayLength, 1, 1),
    ("pack_array", Func::PackArray, 1, 64),
    ("bag_pack", Func::BagPack, 2, 64),
    ("pack", Func::BagPack, 2, 64),
    (
        "unixtime_seconds_todatetime",
        Func::FromUnixTime(crate::time::TICKS_PER_SECOND),
        1,
        1,
    ),
    (
        "unixtime_milliseconds_todatetime",
        Func::FromUnixTime(crate::time::TICKS_PER_MILLISECOND),
        1,
        1,
    ),
    (
        "unixtime_microseconds_todatetime",
        Func::FromUnixTime(crate::time::TICKS_PER_MICROSECOND),
        1,
        1,
    ),
    ("replace_string", Func::ReplaceString, 3, 3),
    ("strcat_array", Func::StrCatArray, 2, 2),
    ("bin_at", Func::BinAt, 3, 3),
    ("datetime_diff", Func::DateTimeDiff, 3, 3),
];

fn scalar_func(name: &str) -> Option<(Func, usize, usize)> {
    SCALARS
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|&(_, f, lo, hi)| (f, lo, hi))
}

/// The periods `datetime_diff` counts.
pub(crate) const DATETIME_PARTS: &[&str] = &[
    "year",
    "quarter",
    "month",
    "week",
    "day",
    "hour",
    "minute",
    "second",
    "millisecond",
    "microsecond",
    "nanosecond",
];

/// Aggregation functions (allowed in `summarize` only).
const AGGREGATES: &[&str] = &[
    "count",
    "countif",
    "sum",
    "sumif",
    "avg",
    "avgif",
    "min",
    "max",
    "take_any",
    "dcount",
    "dcountif",
    "arg_max",
    "arg_min",
    "percentile",
    "stdev",
    "stdevp",
    "variance",
    "variancep",
    "make_set",
    "make_list",
    "make_bag",
    "percentiles",
];

/// How many values `make_set` and `make_list` keep per series without a size (Kusto's
/// default, 1,048,576, would let one series hold megabytes), and the most they may be
/// asked to keep.
const DEFAULT_COLLECT: u32 = 1024;
/// Rows `mv-expand` makes of one row without a `limit`, and the largest `limit`.
const DEFAULT_EXPAND: usize = 1024;
const MAX_EXPAND: usize = 65_536;
const MAX_COLLECT: u32 = 65_536;

fn is_aggregate(name: &str) -> bool {
    AGGREGATES.contains(&name)
}

fn tyname(t: Option<Type>) -> &'static str {
    t.map(Type::name).unwrap_or("null")
}

fn comparable(a: Option<Type>, b: Option<Type>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => true,
        (Some(Type::Dynamic), _) | (_, Some(Type::Dynamic)) => true,
        (Some(x), Some(y)) => x == y || (x.is_numeric() && y.is_numeric()),
    }
}

fn unify(a: Option<Type>, b: Option<Type>) -> Result<Option<Type>, ()> {
    match (a, b) {
        (None, t) | (t, None) => Ok(t),
        (Some(x), Some(y)) if x == y => Ok(Some(x)),
        (Some(x), Some(y)) if x.is_numeric() && y.is_numeric() => Ok(Some(Type::Real)),
        (Some(Type::Dynamic), _) | (_, Some(Type::Dynamic)) => Ok(Some(Type::Dynamic)),
        _ => Err(()),
    }
}

fn arith_type(op: BinaryOp, a: Option<Type>, b: Option<Type>) -> Result<Option<Type>, ()> {
    use BinaryOp::*;
    use Type::*;
    let (Some(a), Some(b)) = (a, b) else {
        return Ok(a.or(b));
    };
    Ok(Some(match (op, a, b) {
        (_, Dynamic, _) | (_, _, Dynamic) => Dynamic,
        (_, Long, Long) => Long,
        (_, Long | Real, Long | Real) => Real,
        (Add, DateTime, TimeSpan) | (Add, TimeSpan, DateTime) | (Sub, DateTime, TimeSpan) => {
            DateTime
        }
        (Sub, DateTime, DateTime) => TimeSpan,
        (Add | Sub, TimeSpan, TimeSpan) => TimeSpan,
        (Mul, TimeSpan, Long | Real)
        | (Mul, Long | Real, TimeSpan)
        | (Div, TimeSpan, Long | Real) => TimeSpan,
        (Div, TimeSpan, TimeSpan) => Real,
        _ => return Err(()),
    }))
}

fn numeric_literal(s: &str) -> Option<(Value, Type)> {
    let s = s.trim();
    if let Ok(v) = s.parse::<i64>() {
        return Some((Value::Long(v), Type::Long));
    }
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|v| (Value::Real(v), Type::Real))
}

/// The column name Kusto gives an unnamed expression: a column's own name, `a_b` for `a.b`,
/// and the name of the first argument of conversions and `bin()`.
/// The name Kusto gives an unnamed column, as Kusto.Language derives it: a column's own;
/// `x.a`, `x["a"]` and `x[8]` as `x_a`, `x_8`; the functions that keep their first
/// argument's name (conversions, rounding, `bin`); `strlen_x`; an aggregation's own (`sum_x`,
/// `count_`), also inside those functions. Anything else has none (`Column1`, …).
fn derive_name(e: &ast::Expr) -> Option<String> {
    match &e.kind {
        ExprKind::Column(n) => Some(n.clone()),
        ExprKind::Member { expr, name } => Some(format!("{}_{name}", derive_name(expr)?)),
        ExprKind::Index { expr, index } => match &index.kind {
            ExprKind::Literal(Literal::String(k)) => Some(format!("{}_{k}", derive_name(expr)?)),
            ExprKind::Literal(Literal::Long(i)) if *i >= 0 => {
                Some(format!("{}_{i}", derive_name(expr)?))
            }
            _ => Some(format!("{}_", derive_name(expr)?)),
        },
        ExprKind::Call { name, args } => {
            let arg = |i: usize| args.get(i).and_then(derive_name).unwrap_or_default();
            match name.name.as_str() {
                "bin" | "bin_at" | "floor" | "ceiling" | "round" | "abs" | "sqrt" | "log"
                | "log10" | "log2" | "exp" | "exp2" | "exp10" | "pow" | "startofday"
                | "format_datetime" | "tostring" | "toint" | "tolong" | "todouble" | "toreal"
                | "todecimal" | "tobool" | "toboolean" | "todatetime" | "totimespan"
                | "todynamic" | "toobject" | "parse_json" | "parsejson" | "split" => {
                    args.first().and_then(derive_name)
                }
                "strlen" => Some(format!("strlen_{}", arg(0))),
                "count" => Some("count_".to_string()),
                "countif" => Some("countif_".to_string()),
                "take_any" => args.first().and_then(derive_name),
                "make_set" => Some(format!("set_{}", arg(0))),
                "make_list" => Some(format!("list_{}", arg(0))),
                "make_bag" => Some(format!("bag_{}", arg(0))),
                "percentile" => {
                    let p = match args.get(1).map(|a| &a.kind) {
                        Some(ExprKind::Literal(Literal::Long(p))) => p.to_string(),
                        Some(ExprKind::Literal(Literal::Real(p))) => {
                            p.to_string().replace('.', "_")
                        }
                        _ => String::new(),
                    };
                    Some(format!("percentile_{}_{p}", arg(0)))
                }
                f if is_aggregate(f) && !f.starts_with("arg_") => Some(format!("{f}_{}", arg(0))),
                _ => None,
            }
        }
        _ => None,
    }
}

fn unique(scope: &Scope, name: Arc<str>) -> Arc<str> {
    if !scope.iter().any(|c| c.name == name) {
        return name;
    }
    (1..)
        .map(|i| Arc::from(format!("{name}{i}")))
        .find(|n: &Arc<str>| !scope.iter().any(|c| c.name == *n))
        .unwrap_or(name)
}

/// Marks the source columns that expressions read before the first `project`.
fn mark_reads(pre: &[RowOp], stage: &Stage, width: usize, reads: &mut [bool]) {
    // Column indexes below `width` refer to the source row until the first projection;
    // extends only append (or replace) and so keep source indexes valid.
    let mut projected = false;
    let mut replaced = vec![false; width];
    let visit = |e: &Expr, projected: bool, replaced: &[bool], reads: &mut [bool]| {
        if !projected {
            walk(e, &mut |i| {
                if i < width && !replaced[i] {
                    reads[i] = true;
                }
            });
        }
    };
    for op in pre {
        match op {
            RowOp::Filter(e) => visit(e, projected, &replaced, reads),
            RowOp::Extend(items) => {
                for (slot, e) in items {
                    visit(e, projected, &replaced, reads);
                    if let Some(i) = slot {
                        if *i < width {
                            replaced[*i] = true;
                        }
                    }
                }
            }
            RowOp::Project(exprs) => {
                for e in exprs {
                    visit(e, projected, &replaced, reads);
                }
                projected = true;
            }
            RowOp::MvExpand(m) => {
                for (slot, e, _) in &m.items {
                    visit(e, projected, &replaced, reads);
                    if let Some(i) = slot {
                        if *i < width {
                            replaced[*i] = true;
                        }
                    }
                }
            }
        }
    }
    if let Stage::Summarize(s) = stage {
        for e in &s.keys {
            visit(e, projected, &replaced, reads);
        }
        for a in &s.aggregates {
            for e in a.arg.iter().chain(&a.predicate).chain(&a.carried) {
                visit(e, projected, &replaced, reads);
            }
        }
    } else if !projected {
        // Rows are returned whole: every column is output.
        for (i, r) in reads.iter_mut().enumerate() {
            if !replaced[i] {
                *r = true;
            }
        }
    }
}

fn walk(e: &Expr, f: &mut impl FnMut(usize)) {
    match e {
        Expr::Literal(_) | Expr::Now => {}
        Expr::Column(i) => f(*i),
        Expr::Unary { expr, .. } | Expr::Member { expr, .. } => walk(expr, f),
        Expr::Binary { lhs, rhs, .. }
        | Expr::And(lhs, rhs)
        | Expr::Or(lhs, rhs)
        | Expr::Index {
            expr: lhs,
            index: rhs,
        } => {
            walk(lhs, f);
            walk(rhs, f)
        }
        Expr::In { expr, list, .. } => {
            walk(expr, f);
            list.iter().for_each(|e| walk(e, f));
        }
        Expr::Between {
            expr, low, high, ..
        } => {
            walk(expr, f);
            walk(low, f);
            walk(high, f)
        }
        Expr::Call { args, .. } => args.iter().for_each(|e| walk(e, f)),
        Expr::Regex { text, .. } => walk(text, f),
    }
}
