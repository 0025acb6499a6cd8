//! KQL parser: tokens → [`Query`]. Recursive descent with one function per precedence level,
//! lowest first: `or`, `and`, comparisons (non-associative), `+ -`, `* / %`, unary `- +`, then
//! postfix calls, `.member` and `[index]`.
//!
//! It reports every error it can. A failing operator records one diagnostic and the parser
//! skips to the next `|`, so the operators after it are still checked and a user fixes the
//! whole query in one round.

use super::ast::*;
use super::diag::Diagnostic;
use super::lexer::{lex, position, Token, TokenKind as T};

/// The operators the engine runs, as named in the "unsupported operator" message.
const SUPPORTED: &str = "where, extend, project, project-away, project-rename, project-reorder, summarize, count, distinct, take, limit, sort, order, top, as, render, union, join, lookup, parse, search, mv-expand";

/// Words Kusto reserves: a name spelled like one is written `['first']` (those Kusto.Language
/// refuses as a `let` name).
const KEYWORDS: &[&str] = &[
    "and",
    "as",
    "asc",
    "between",
    "by",
    "contains",
    "datatable",
    "date",
    "datetime",
    "decimal",
    "desc",
    "dynamic",
    "endswith",
    "false",
    "find",
    "first",
    "has",
    "in",
    "int",
    "invoke",
    "isfuzzy",
    "kind",
    "last",
    "like",
    "long",
    "materialize",
    "of",
    "or",
    "print",
    "project",
    "real",
    "sample",
    "search",
    "set",
    "startswith",
    "string",
    "time",
    "timespan",
    "title",
    "to",
    "toscalar",
    "totable",
    "true",
    "union",
    "where",
    "withsource",
];

/// The comparisons the engine runs, as named in the "unsupported operator" message.
const COMPARISONS: &str = "== != < <= > >= =~ !~, has contains startswith endswith and their ! and _cs forms, has_any, has_all, matches regex, in, !in, in~, !in~, between, !between";

/// Limits that keep any query from overflowing the stack, which would crash the service.
/// Parsing recurses once per level of parentheses, calls and signs (several frames each);
/// and a tree is dropped, compared and checked recursively, so its depth — at most its count
/// of operator nodes, since `a or b or ...` chains deepen it without nesting — is capped too.
pub(super) const MAX_DEPTH: usize = 100;
pub(super) const MAX_NODES: usize = 1_000;
/// Parenthesized tabular expressions (`union`, `join` sides) inside one another.
const MAX_TABULAR_DEPTH: usize = 16;

/// An error whose diagnostic is already recorded (by the parser, or by the lexer for an
/// error token), so callers only unwind.
struct Reported;

type PResult<T> = Result<T, Reported>;

/// Parses a whole query. On failure returns every diagnostic found, in source order.
pub fn parse(source: &str) -> Result<Query, Vec<Diagnostic>> {
    let (tokens, mut diags) = lex(source);
    let mut parser = Parser {
        src: source,
        tokens,
        pos: 0,
        last_end: 0,
        depth: 0,
        nodes: 0,
        tabular_depth: 0,
        diags: Vec::new(),
    };
    let query = parser.query();
    diags.append(&mut parser.diags);
    diags.sort_by_key(|d| d.span.start);
    match query {
        Ok(query) if diags.is_empty() => Ok(query),
        _ => Err(diags),
    }
}

/// What follows the left operand of a comparison.
enum Comparison {
    Binary(BinaryOp),
    In {
        negated: bool,
        case_insensitive: bool,
    },
    Between {
        negated: bool,
    },
    /// `matches regex "…"`.
    MatchesRegex,
    /// `has_any (…)` / `has_all (…)`: `has` against each term, joined by `or` / `and`.
    HasList {
        all: bool,
        cs: bool,
    },
    /// `=` where `==` was meant.
    Assign,
    /// A string operator KQL has but this engine does not (`hasprefix`, `matches regex`, ...).
    Unsupported,
    /// `!` glued to a word that is no operator.
    Unknown,
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    /// Index of the next token; never moves past the final `Eof`.
    pos: usize,
    /// End of the last consumed token: where an operator or expression ends.
    last_end: usize,
    /// Current nesting (see [`MAX_DEPTH`]).
    depth: usize,
    /// Operator nodes built in the current top-level expression (see [`MAX_NODES`]).
    nodes: usize,
    /// Current nesting of tabular expressions (see [`MAX_TABULAR_DEPTH`]).
    tabular_depth: usize,
    diags: Vec<Diagnostic>,
}

impl Parser<'_> {
    // ---- token cursor ----

    fn peek(&self) -> &T {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &T {
        let last = self.tokens.len() - 1;
        &self.tokens[(self.pos + ahead).min(last)].kind
    }

    fn span(&self) -> Span {
        self.tokens[self.pos].span
    }

    /// Consumes the current token and returns its span.
    fn bump(&mut self) -> Span {
        let token = &self.tokens[self.pos];
        if token.kind != T::Eof {
            self.pos += 1;
            self.last_end = token.span.end;
        }
        token.span
    }

    fn eat(&mut self, kind: &T) -> bool {
        let found = self.peek() == kind;
        if found {
            self.bump();
        }
        found
    }

    fn at_word(&self, word: &str) -> bool {
        matches!(self.peek(), T::Word(w) if w == word)
    }

    /// The current token as a user sees it in a message.
    fn describe(&self) -> String {
        let span = self.span();
        match self.peek() {
            T::Eof => "end of query".to_string(),
            _ => {
                let text = self.text(span);
                let short: String = text.chars().take(40).collect();
                let more = if short.len() < text.len() { "…" } else { "" };
                format!("'{short}{more}'")
            }
        }
    }

    // ---- errors ----

    fn fail<X>(&mut self, span: Span, message: impl Into<String>) -> PResult<X> {
        self.diags.push(Diagnostic::new(span, message));
        Err(Reported)
    }

    /// Records "expected X, found Y" at the current token; nothing for an error token, which
    /// the lexer has already reported.
    fn report_expected(&mut self, what: &str) {
        if *self.peek() != T::Error {
            let message = format!("expected {what}, found {}", self.describe());
            self.diags.push(Diagnostic::new(self.span(), message));
        }
    }

    fn expected<X>(&mut self, what: &str) -> PResult<X> {
        self.report_expected(what);
        Err(Reported)
    }

    fn expect(&mut self, kind: T, what: &str) -> PResult<Span> {
        if *self.peek() == kind {
            return Ok(self.bump());
        }
        self.expected(what)
    }

    /// The `)` or `]` closing `opener` (as written, e.g. `tostring(`), which starts at `open`.
    fn close(&mut self, kind: T, open: Span, opener: &str) -> PResult<Span> {
        let closer = if kind == T::RBracket { "]" } else { ")" };
        let what = format!(
            "'{closer}' to close '{opener}' opened at {}",
            position(self.src, open.start)
        );
        self.expect(kind, &what)
    }

    /// Skips to the next `|` (or the end) after an error, so the next operator is checked.
    fn recover(&mut self) {
        while !matches!(self.peek(), T::Pipe | T::Eof) {
            self.bump();
        }
    }

    // ---- query and operators ----

    fn query(&mut self) -> PResult<Query> {
        let mut ok = true;
        let mut lets = Vec::new();
        while self.at_word("let") {
            match self.let_statement() {
                Ok(binding) => lets.push(binding),
                Err(Reported) => {
                    ok = false;
                    while !matches!(self.peek(), T::Semicolon | T::Eof) {
                        self.bump();
                    }
                    self.eat(&T::Semicolon);
                }
            }
        }
        if *self.peek() == T::Eof {
            return self.fail(self.span(), "empty query: expected a table name");
        }
        let body = self.tabular(true);
        ok &= body.is_ok();
        if *self.peek() == T::RParen {
            ok = false;
            self.report_expected("'|' or the end of the query");
        } else if self.eat(&T::Semicolon) && *self.peek() != T::Eof {
            ok = false;
            self.report_expected("end of query after ';' (only one query is supported)");
        }
        match body {
            Ok(body) if ok => Ok(Query { lets, body }),
            _ => Err(Reported),
        }
    }

    /// `let Name = Expr;` or `let Name = Tabular;`. A bare name stays a scalar here: whether
    /// it is a table is for the checker to say.
    fn let_statement(&mut self) -> PResult<Let> {
        self.bump();
        self.not_keyword()?;
        let Some(name) = self.name() else {
            return self.expected("a name after 'let'");
        };
        self.expect(T::Assign, "'=' after the name of the 'let'")?;
        let function = matches!(
            (self.peek(), self.peek_at(1), self.peek_at(2)),
            (T::LParen, T::RParen, T::LBrace) | (T::LParen, T::Word(_), T::Colon)
        );
        if function {
            let value = LetValue::Function(self.function()?);
            if *self.peek() != T::Semicolon {
                return self.expected("';' after the 'let' statement");
            }
            self.bump();
            return Ok(Let { name, value });
        }
        let value = if self.at_tabular(None) {
            LetValue::Tabular(self.tabular(false)?)
        } else {
            LetValue::Scalar(self.top_expr()?)
        };
        if *self.peek() != T::Semicolon {
            return self.expected("';' after the 'let' statement");
        }
        self.bump();
        Ok(Let { name, value })
    }

    /// `(name: type [= default], …) { body }`
    fn function(&mut self) -> PResult<Function> {
        let open = self.bump();
        let mut params = Vec::new();
        while *self.peek() != T::RParen {
            self.not_keyword()?;
            let Some(name) = self.name() else {
                return self.expected("a parameter name");
            };
            self.expect(T::Colon, "':' and a type after the parameter name")?;
            let Some(ty) = self.name() else {
                return self.expected("a parameter type");
            };
            let default = if self.eat(&T::Assign) {
                Some(self.expr()?)
            } else {
                None
            };
            params.push(Param { name, ty, default });
            if !self.eat(&T::Comma) {
                break;
            }
        }
        self.close(T::RParen, open, "(")?;
        let brace = self.expect(T::LBrace, "'{' and the function's body")?;
        let body = if self.at_tabular(Some(&T::RBrace)) {
            FunctionBody::Tabular(self.tabular(false)?)
        } else {
            FunctionBody::Scalar(self.top_expr()?)
        };
        let what = format!(
            "'}}' to close the body opened at {}",
            position(self.src, brace.start)
        );
        self.expect(T::RBrace, &what)?;
        Ok(Function { params, body })
    }

    /// Whether a tabular expression starts here: `union …`, a name piped on (`T | …`) or
    /// right before `end` (a function's body of one table), or one in parentheses. A name
    /// alone stays a scalar: whether it is a table is for the checker to say.
    fn at_tabular(&self, end: Option<&T>) -> bool {
        match (self.peek(), self.peek_at(1)) {
            (T::Word(w), _) if w == "union" => true,
            (T::Word(_), T::Pipe) => true,
            (T::Word(_), next) => end == Some(next),
            (T::LParen, _) => self.paren_is_tabular(),
            _ => false,
        }
    }

    /// Whether the `(` here opens a tabular expression (`(T | where …)`) rather than a
    /// scalar one (`(1d)`): a name followed by `|`, `)` and then `|`, or `union`.
    fn paren_is_tabular(&self) -> bool {
        match (self.peek_at(1), self.peek_at(2)) {
            (T::Word(w), _) if w == "union" => true,
            (T::Word(_), T::Pipe) => true,
            (T::LParen, _) => true,
            _ => false,
        }
    }

    /// `Source | op | op …`. At the top of the query an operator's error skips to the next
    /// `|`, so that the operators after it are still checked; inside parentheses the first
    /// error ends the expression.
    fn tabular(&mut self, top: bool) -> PResult<Tabular> {
        self.tabular_depth += 1;
        if self.tabular_depth > MAX_TABULAR_DEPTH {
            return self.fail(
                self.span(),
                format!("tabular expressions nested deeper than {MAX_TABULAR_DEPTH}"),
            );
        }
        let mut ok = true;
        let source = match self.source() {
            Ok(source) => Some(source),
            Err(Reported) if top => {
                ok = false;
                self.recover();
                None
            }
            Err(Reported) => return Err(Reported),
        };
        if source.is_some()
            && !matches!(
                self.peek(),
                T::Pipe | T::Semicolon | T::Eof | T::RParen | T::RBrace
            )
        {
            ok = false;
            self.report_expected("'|' after the table name");
            if !top {
                return Err(Reported);
            }
            self.recover();
        }
        let mut ops = Vec::new();
        while *self.peek() == T::Pipe {
            let pipe = self.bump();
            match self.operator(pipe) {
                Ok(op) => ops.push(op),
                Err(Reported) if top => {
                    ok = false;
                    self.recover();
                }
                Err(Reported) => return Err(Reported),
            }
        }
        self.tabular_depth -= 1;
        match source {
            Some(source) if ok => Ok(Tabular { source, ops }),
            _ => Err(Reported),
        }
    }

    /// A table (or tabular `let`) name, `union …`, `search …`, or `( Tabular )`.
    fn source(&mut self) -> PResult<Source> {
        if self.at_word("search") && !matches!(self.peek_at(1), T::Pipe | T::Eof) {
            return self.search_source();
        }
        if self.at_word("union") && !matches!(self.peek_at(1), T::Pipe | T::Eof) {
            self.bump();
            return Ok(Source::Union(self.union_args()?));
        }
        if *self.peek() == T::LParen {
            let open = self.bump();
            let inner = self.tabular(false)?;
            self.close(T::RParen, open, "(")?;
            return Ok(Source::Sub(Box::new(inner)));
        }
        let Some(name) = self.name() else {
            return self.expected("a table name");
        };
        if *self.peek() == T::LParen {
            let open = self.bump();
            let mut args = Vec::new();
            while *self.peek() != T::RParen {
                args.push(self.expr()?);
                if !self.eat(&T::Comma) {
                    break;
                }
            }
            self.close(T::RParen, open, &format!("{}(", name.name))?;
            return Ok(Source::Call { name, args });
        }
        Ok(Source::Name(name))
    }

    /// What follows `mv-expand`.
    fn mv_expand(&mut self) -> PResult<MvExpand> {
        let mut out = MvExpand {
            items: Vec::new(),
            bags_as_arrays: false,
            index: None,
            limit: None,
        };
        while let (T::Word(option), T::Assign) = (self.peek().clone(), self.peek_at(1)) {
            if option != "bagexpansion" && option != "with_itemindex" && option != "kind" {
                break;
            }
            let at = self.bump();
            self.bump();
            match (option.as_str(), self.name()) {
                ("bagexpansion" | "kind", Some(k)) if k.name == "bag" => out.bags_as_arrays = false,
                ("bagexpansion" | "kind", Some(k)) if k.name == "array" => {
                    out.bags_as_arrays = true
                }
                ("with_itemindex", Some(n)) => out.index = Some(n),
                _ => {
                    return self.fail(
                        at,
                        "'mv-expand' takes bagexpansion=bag|array and with_itemindex=Name",
                    )
                }
            }
        }
        loop {
            let named = self.named_expr()?;
            let ty = if self.at_word("to") {
                self.bump();
                self.expect_word("typeof", "'typeof(Type)' after 'to'")?;
                let open = self.expect(T::LParen, "'(' after 'typeof'")?;
                let Some(t) = self.name() else {
                    return self.expected("a type name");
                };
                self.close(T::RParen, open, "typeof(")?;
                Some(t)
            } else {
                None
            };
            out.items.push((named, ty));
            if !self.eat(&T::Comma) {
                break;
            }
        }
        if self.at_word("limit") {
            self.bump();
            out.limit = Some(self.top_expr()?);
        }
        Ok(out)
    }

    /// `search [kind = case_sensitive | case_insensitive] Predicate`: a string alone is a
    /// term any string column has (`* has "…"`); anything else is a `where`.
    fn search(&mut self) -> PResult<OperatorKind> {
        let mut cs = false;
        if let (T::Word(option), T::Assign) = (self.peek().clone(), self.peek_at(1)) {
            let at = self.bump();
            self.bump();
            match (option.as_str(), self.name()) {
                ("kind", Some(k)) if k.name == "case_sensitive" => cs = true,
                ("kind", Some(k)) if k.name == "case_insensitive" => cs = false,
                _ => return self.fail(
                    at,
                    "the only option of 'search' is kind=case_sensitive or kind=case_insensitive",
                ),
            }
        }
        Ok(OperatorKind::Where(self.search_filter(cs)?))
    }

    /// The predicate of `search`: a string alone is `* has "…"`.
    fn search_filter(&mut self, cs: bool) -> PResult<Expr> {
        let e = self.top_expr()?;
        let kind = match &e.kind {
            ExprKind::Literal(Literal::String(_)) => ExprKind::Binary {
                op: BinaryOp::Str {
                    op: StrOp::Has,
                    negated: false,
                    cs,
                },
                lhs: Box::new(Expr {
                    kind: ExprKind::Star,
                    span: e.span,
                }),
                rhs: Box::new(e.clone()),
            },
            _ => return Ok(e),
        };
        Ok(Expr { kind, span: e.span })
    }

    /// What follows `parse`: `[kind = simple | regex] [flags = …] Expr with Pattern`.
    fn parse_args(&mut self) -> PResult<Parse> {
        let mut regex = false;
        let mut flags = String::new();
        while let (T::Word(option), T::Assign) = (self.peek().clone(), self.peek_at(1)) {
            let at = self.bump();
            self.bump();
            match option.as_str() {
                "kind" => match self.name() {
                    Some(k) if k.name == "regex" => regex = true,
                    Some(k) if k.name == "simple" => regex = false,
                    _ => return self.fail(at, "'kind' of 'parse' is 'simple' or 'regex'"),
                },
                "flags" => match self.name() {
                    Some(f) if f.name.chars().all(|c| "imsU".contains(c)) => flags = f.name,
                    _ => return self.fail(at, "'flags' of 'parse' are letters of i, m, s and U"),
                },
                _ => {
                    return self.fail(
                        at,
                        format!("unknown 'parse' option '{option}' (known: kind, flags)"),
                    )
                }
            }
        }
        let expr = self.top_expr()?;
        self.expect_word(
            "with",
            "'with' and a pattern after the expression of 'parse'",
        )?;
        let mut pattern = Vec::new();
        loop {
            match self.peek().clone() {
                T::Star => {
                    self.bump();
                    pattern.push(ParsePart::Any);
                }
                T::Literal(Literal::String(text)) => {
                    self.bump();
                    pattern.push(ParsePart::Literal(text));
                }
                T::Word(_) | T::LBracket => {
                    self.not_keyword()?;
                    let Some(column) = self.name() else {
                        return self.expected("a column name in the pattern of 'parse'");
                    };
                    let ty = if self.eat(&T::Colon) {
                        match self.name() {
                            Some(t) => Some(t),
                            None => return self.expected("a type after ':'"),
                        }
                    } else {
                        None
                    };
                    pattern.push(ParsePart::Column(column, ty));
                }
                _ if !pattern.is_empty() => break,
                _ => return self.expected("a pattern after 'with': strings, columns and '*'"),
            }
            // `parse … with "a" x, "b" y` is written with commas too.
            self.eat(&T::Comma);
        }
        Ok(Parse {
            expr,
            regex,
            flags,
            pattern,
        })
    }

    /// `search [kind = …] [in (T, …)] Predicate` at the start of a query: a union of the
    /// tables (every table without `in`) with a `$table` column, filtered as `| search`
    /// filters.
    fn search_source(&mut self) -> PResult<Source> {
        let start = self.bump();
        // `kind=` is read by `search()` below, after the tables.
        let mut kind = None;
        if let (T::Word(option), T::Assign) = (self.peek().clone(), self.peek_at(1)) {
            if option == "kind" {
                kind = Some((self.bump(), self.bump(), self.name()));
            }
        }
        let mut legs = Vec::new();
        if self.at_word("in") {
            self.bump();
            let open = self.expect(T::LParen, "'(' and the tables after 'search in'")?;
            loop {
                legs.push(self.leg("a table")?);
                if !self.eat(&T::Comma) {
                    break;
                }
            }
            self.close(T::RParen, open, "in (")?;
        }
        let cs =
            match kind {
                None => false,
                Some((_, _, Some(k))) if k.name == "case_sensitive" => true,
                Some((_, _, Some(k))) if k.name == "case_insensitive" => false,
                Some((at, ..)) => return self.fail(
                    at,
                    "the only option of 'search' is kind=case_sensitive or kind=case_insensitive",
                ),
            };
        let filter = self.search_filter(cs)?;
        let span = Span::new(start.start, self.last_end);
        Ok(Source::Sub(Box::new(Tabular {
            source: Source::Union(Union {
                inner: false,
                withsource: Some(Ident {
                    name: "$table".to_string(),
                    span: start,
                }),
                legs,
            }),
            ops: vec![Operator {
                kind: OperatorKind::Where(filter),
                span,
            }],
        })))
    }

    /// What follows `union`: its options, then the legs.
    fn union_args(&mut self) -> PResult<Union> {
        let mut union = Union {
            inner: false,
            withsource: None,
            legs: Vec::new(),
        };
        while let (T::Word(option), T::Assign) = (self.peek().clone(), self.peek_at(1)) {
            let at = self.bump();
            self.bump();
            match option.as_str() {
                "kind" => match self.name() {
                    Some(k) if k.name == "inner" => union.inner = true,
                    Some(k) if k.name == "outer" => union.inner = false,
                    _ => return self.fail(at, "'kind' of 'union' is 'inner' or 'outer'"),
                },
                "withsource" => match self.name() {
                    Some(n) => union.withsource = Some(n),
                    None => return self.expected("a column name after 'withsource='"),
                },
                "isfuzzy" => {
                    if !matches!(self.peek(), T::Literal(Literal::Bool(_))) {
                        return self.expected("true or false after 'isfuzzy='");
                    }
                    self.bump();
                }
                _ => {
                    return self.fail(
                        at,
                        format!(
                            "unknown 'union' option '{option}' (known: kind, withsource, isfuzzy)"
                        ),
                    )
                }
            }
        }
        loop {
            // A table name with `*` in it (`Aml*`, `*`) names every table it matches.
            if *self.peek() == T::Star {
                let span = self.bump();
                union.legs.push(Tabular {
                    source: Source::Name(Ident {
                        name: "*".to_string(),
                        span,
                    }),
                    ops: Vec::new(),
                });
            } else {
                let mut leg = self.leg("a table or '(' after 'union'")?;
                if let Source::Name(n) = &mut leg.source {
                    while *self.peek() == T::Star && self.span().start == n.span.end {
                        n.span = n.span.to(self.bump());
                        n.name.push('*');
                        if let T::Word(w) = self.peek().clone() {
                            if self.span().start == n.span.end {
                                n.span = n.span.to(self.bump());
                                n.name.push_str(&w);
                            }
                        }
                    }
                }
                union.legs.push(leg);
            }
            if !self.eat(&T::Comma) {
                return Ok(union);
            }
        }
    }

    /// One input of `union`, `join` or `lookup`: a name or a parenthesized expression.
    fn leg(&mut self, what: &str) -> PResult<Tabular> {
        if *self.peek() == T::LParen {
            let open = self.bump();
            let inner = self.tabular(false)?;
            self.close(T::RParen, open, "(")?;
            return Ok(inner);
        }
        match self.name() {
            Some(ident) => Ok(Tabular {
                source: Source::Name(ident),
                ops: Vec::new(),
            }),
            None => self.expected(what),
        }
    }

    /// What follows `join` or `lookup`: `[kind = K] [hint.… = …] Right on Key, …`.
    fn join_args(&mut self, lookup: bool) -> PResult<(JoinKind, Tabular, Vec<JoinKey>)> {
        let op = if lookup { "lookup" } else { "join" };
        let mut kind = if lookup {
            JoinKind::LeftOuter
        } else {
            JoinKind::InnerUnique
        };
        while let (T::Word(option), T::Assign) = (self.peek().clone(), self.peek_at(1)) {
            let at = self.bump();
            self.bump();
            if option == "kind" {
                let found = self.name();
                let known = found
                    .as_ref()
                    .and_then(|k| JoinKind::ALL.iter().find(|(n, _)| *n == k.name));
                match known {
                    Some((_, k))
                        if !lookup || matches!(k, JoinKind::LeftOuter | JoinKind::Inner) =>
                    {
                        kind = *k
                    }
                    _ if lookup => {
                        return self.fail(at, "'kind' of 'lookup' is 'leftouter' or 'inner'")
                    }
                    _ => {
                        let names: Vec<&str> = JoinKind::ALL.iter().map(|(n, _)| *n).collect();
                        return self.fail(
                            at,
                            format!("unknown join kind (known: {})", names.join(", ")),
                        );
                    }
                }
            } else if option.starts_with("hint.") {
                // Hints tune Kusto's distribution strategy; they never change the result.
                self.bump();
            } else {
                return self.fail(
                    at,
                    format!("unknown '{op}' option '{option}' (known: kind, hint.*)"),
                );
            }
        }
        let right = self.leg(&format!("the right side of '{op}': a table or '(…)'"))?;
        self.expect_word("on", &format!("'on' after the right side of '{op}'"))?;
        let mut on = Vec::new();
        loop {
            let e = self.top_expr()?;
            match join_key(&e) {
                Some(key) => on.push(key),
                None => {
                    return self.fail(
                        e.span,
                        format!("'{op} on' takes column names or '$left.A == $right.B'"),
                    )
                }
            }
            if !self.eat(&T::Comma) {
                return Ok((kind, right, on));
            }
        }
    }

    /// Refuses a keyword where a new name is written (`let kind = …`, `extend first = …`), as
    /// Kusto does: `['kind']` is the name.
    fn not_keyword(&mut self) -> PResult<()> {
        if let T::Word(w) = self.peek() {
            if KEYWORDS.contains(&w.as_str()) {
                let w = w.clone();
                return self.fail(
                    self.span(),
                    format!("'{w}' is a KQL keyword: write ['{w}'] to use it as a name"),
                );
            }
        }
        Ok(())
    }

    /// A plain name or a bracketed one (`['Name with spaces']`).
    fn name(&mut self) -> Option<Ident> {
        let (name, tokens) = match (self.peek(), self.peek_at(1), self.peek_at(2)) {
            (T::Word(name), _, _) => (name.clone(), 1),
            (T::LBracket, T::Literal(Literal::String(name)), T::RBracket) => (name.clone(), 3),
            _ => return None,
        };
        let mut span = self.span();
        for _ in 0..tokens {
            span = span.to(self.bump());
        }
        Some(Ident { name, span })
    }

    /// The operator after the `|` at `pipe`, checking that it ends where the next `|` starts.
    fn operator(&mut self, pipe: Span) -> PResult<Operator> {
        if matches!(self.peek(), T::Eof | T::Semicolon | T::Pipe) {
            return self.fail(pipe, "expected an operator after '|'");
        }
        let (name, name_span) = match self.peek() {
            T::Word(_) => self.operator_name(),
            _ => return self.expected("an operator name after '|'"),
        };
        let kind = match name.as_str() {
            "where" | "filter" => OperatorKind::Where(self.top_expr()?),
            "extend" => OperatorKind::Extend(self.named_list()?),
            "project" => OperatorKind::Project(self.named_list()?),
            "project-away" => OperatorKind::ProjectAway(self.column_list()?),
            "summarize" => self.summarize()?,
            "count" => OperatorKind::Count,
            "take" | "limit" => OperatorKind::Take(self.top_expr()?),
            "sort" | "order" => {
                self.expect_word("by", &format!("'by' after '{name}'"))?;
                OperatorKind::Sort(self.sort_keys()?)
            }
            "top" => {
                let count = self.top_expr()?;
                self.expect_word("by", "'by' after the number of rows of 'top'")?;
                OperatorKind::Top {
                    count,
                    by: self.sort_keys()?,
                }
            }
            "project-rename" => OperatorKind::ProjectRename(self.renames()?),
            "distinct" => OperatorKind::Distinct(self.column_list()?),
            "project-reorder" => OperatorKind::ProjectReorder(self.column_list()?),
            "as" => match self.name() {
                Some(name) => OperatorKind::As(name),
                None => return self.expected("a name after 'as'"),
            },
            "render" => self.render()?,
            "union" => OperatorKind::Union(self.union_args()?),
            "parse" => OperatorKind::Parse(self.parse_args()?),
            "mv-expand" => OperatorKind::MvExpand(self.mv_expand()?),
            "search" => self.search()?,
            "join" => {
                let (kind, right, on) = self.join_args(false)?;
                OperatorKind::Join { kind, right, on }
            }
            "lookup" => {
                let (kind, right, on) = self.join_args(true)?;
                OperatorKind::Lookup { kind, right, on }
            }
            _ => {
                return self.fail(
                    name_span,
                    format!("unsupported operator '{name}' (supported: {SUPPORTED})"),
                )
            }
        };
        if !matches!(
            self.peek(),
            T::Pipe | T::Semicolon | T::Eof | T::RParen | T::RBrace
        ) {
            return self.expected(&format!(
                "'|' or the end of the query after the '{name}' operator"
            ));
        }
        Ok(Operator {
            kind,
            span: Span::new(name_span.start, self.last_end),
        })
    }

    /// An operator name, joining hyphenated ones written without spaces (`project-away`,
    /// `mv-expand`). Done here rather than in the lexer because in an expression `a-b` is a
    /// subtraction.
    fn operator_name(&mut self) -> (String, Span) {
        let mut span = self.bump();
        while *self.peek() == T::Minus
            && self.span().start == span.end
            && matches!(self.peek_at(1), T::Word(_))
            && self.tokens[self.pos + 1].span.start == span.end + 1
        {
            self.bump();
            span = span.to(self.bump());
        }
        (self.text(span).to_string(), span)
    }

    fn expect_word(&mut self, word: &str, what: &str) -> PResult<Span> {
        if self.at_word(word) {
            return Ok(self.bump());
        }
        self.expected(what)
    }

    /// `Expr [asc | desc] [nulls first | nulls last], ...`
    fn sort_keys(&mut self) -> PResult<Vec<SortKey>> {
        let mut keys = Vec::new();
        loop {
            let expr = self.top_expr()?;
            let desc = if self.at_word("asc") {
                self.bump();
                false
            } else {
                if self.at_word("desc") {
                    self.bump();
                }
                true
            };
            let nulls_first = if self.at_word("nulls") {
                self.bump();
                if self.at_word("first") {
                    self.bump();
                    true
                } else {
                    self.expect_word("last", "'first' or 'last' after 'nulls'")?;
                    false
                }
            } else {
                !desc
            };
            keys.push(SortKey {
                expr,
                desc,
                nulls_first,
            });
            if !self.eat(&T::Comma) {
                return Ok(keys);
            }
        }
    }

    /// `New = Old, ...` for `project-rename`.
    fn renames(&mut self) -> PResult<Vec<(Ident, Ident)>> {
        let mut list = Vec::new();
        loop {
            self.not_keyword()?;
            let Some(new) = self.name() else {
                return self.expected("a new column name");
            };
            self.expect(
                T::Assign,
                "'=' after the new name ('project-rename New = Old')",
            )?;
            let Some(old) = self.name() else {
                return self.expected("the column to rename");
            };
            list.push((new, old));
            if !self.eat(&T::Comma) {
                return Ok(list);
            }
        }
    }

    /// `render Chart [with (Name = Value, ...)]`. The properties only shape the chart, so
    /// they are read past (balanced parentheses) and not kept.
    fn render(&mut self) -> PResult<OperatorKind> {
        let Some(chart) = self.name() else {
            return self.expected(
                "a chart kind after 'render' (timechart, barchart, piechart, table, ...)",
            );
        };
        if self.at_word("with") {
            self.bump();
            self.expect(T::LParen, "'(' after 'with'")?;
            let mut depth = 1;
            while depth > 0 {
                match self.peek() {
                    T::LParen => depth += 1,
                    T::RParen => depth -= 1,
                    T::Eof => return self.expected("')' closing the 'render' properties"),
                    _ => {}
                }
                self.bump();
            }
        }
        if *self.peek() == T::Pipe {
            return self.fail(
                self.span(),
                "'render' must be the last operator of the query",
            );
        }
        Ok(OperatorKind::Render(chart))
    }

    fn summarize(&mut self) -> PResult<OperatorKind> {
        let aggregates = if self.at_word("by") {
            Vec::new()
        } else {
            self.named_list()?
        };
        let by = if self.at_word("by") {
            self.bump();
            self.named_list()?
        } else {
            Vec::new()
        };
        Ok(OperatorKind::Summarize { aggregates, by })
    }

    /// `[Name =] Expr, ...` (at least one).
    fn named_list(&mut self) -> PResult<Vec<NamedExpr>> {
        let mut list = vec![self.named_expr()?];
        while self.eat(&T::Comma) {
            list.push(self.named_expr()?);
        }
        Ok(list)
    }

    fn named_expr(&mut self) -> PResult<NamedExpr> {
        let named = match self.peek() {
            T::Word(_) => *self.peek_at(1) == T::Assign,
            T::LBracket => *self.peek_at(3) == T::Assign && *self.peek_at(2) == T::RBracket,
            _ => false,
        };
        if named {
            self.not_keyword()?;
        }
        let name = if named { self.name() } else { None };
        if name.is_some() {
            self.bump();
        }
        Ok(NamedExpr {
            name,
            expr: self.top_expr()?,
        })
    }

    /// `Col, ...` for `project-away`.
    fn column_list(&mut self) -> PResult<Vec<Ident>> {
        let mut list = Vec::new();
        loop {
            match self.name() {
                Some(ident) => list.push(ident),
                None => return self.expected("a column name"),
            }
            if !self.eat(&T::Comma) {
                return Ok(list);
            }
        }
    }

    // ---- expressions, lowest precedence first ----

    /// An expression that is a whole operator argument; the node budget starts afresh.
    fn top_expr(&mut self) -> PResult<Expr> {
        self.nodes = 0;
        self.expr()
    }

    /// Builds an operator node, counted against [`MAX_NODES`].
    fn node(&mut self, kind: ExprKind, span: Span) -> PResult<Expr> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            let message = format!("expression too large: more than {MAX_NODES} operators");
            return self.fail(span, message);
        }
        Ok(Expr { kind, span })
    }

    fn binary(&mut self, op: BinaryOp, lhs: Expr, rhs: Expr) -> PResult<Expr> {
        let span = lhs.span.to(rhs.span);
        let (lhs, rhs) = (Box::new(lhs), Box::new(rhs));
        self.node(ExprKind::Binary { op, lhs, rhs }, span)
    }

    fn expr(&mut self) -> PResult<Expr> {
        let mut lhs = self.and_expr()?;
        while self.at_word("or") {
            self.bump();
            let rhs = self.and_expr()?;
            lhs = self.binary(BinaryOp::Or, lhs, rhs)?;
        }
        Ok(lhs)
    }

    fn and_expr(&mut self) -> PResult<Expr> {
        let mut lhs = self.comparison()?;
        while self.at_word("and") {
            self.bump();
            let rhs = self.comparison()?;
            lhs = self.binary(BinaryOp::And, lhs, rhs)?;
        }
        Ok(lhs)
    }

    fn comparison(&mut self) -> PResult<Expr> {
        let lhs = self.additive()?;
        let Some(op) = self.comparison_op() else {
            return Ok(lhs);
        };
        let op_span = self.bump();
        let op_text = self.text(op_span).to_string();
        let expr = match op {
            Comparison::Binary(op) => {
                let rhs = self.additive()?;
                self.binary(op, lhs, rhs)?
            }
            Comparison::In {
                negated,
                case_insensitive,
            } => {
                let open = self.expect(T::LParen, &format!("'(' after '{op_text}'"))?;
                let mut list = vec![self.expr()?];
                while self.eat(&T::Comma) {
                    list.push(self.expr()?);
                }
                let close = self.close(T::RParen, open, &format!("{op_text} ("))?;
                let span = lhs.span.to(close);
                let expr = Box::new(lhs);
                let kind = ExprKind::In {
                    expr,
                    list,
                    negated,
                    case_insensitive,
                };
                self.node(kind, span)?
            }
            Comparison::MatchesRegex => {
                self.expect_word("regex", "'regex' after 'matches'")?;
                let pattern = self.additive()?;
                let span = lhs.span.to(pattern.span);
                let kind = ExprKind::MatchesRegex {
                    expr: Box::new(lhs),
                    pattern: Box::new(pattern),
                };
                self.node(kind, span)?
            }
            Comparison::HasList { all, cs } => {
                let open = self.expect(T::LParen, &format!("'(' after '{op_text}'"))?;
                let mut terms = vec![self.expr()?];
                while self.eat(&T::Comma) {
                    terms.push(self.expr()?);
                }
                let close = self.close(T::RParen, open, &format!("{op_text} ("))?;
                let span = lhs.span.to(close);
                let join = if all { BinaryOp::And } else { BinaryOp::Or };
                let mut joined: Option<Expr> = None;
                for term in terms {
                    let has = BinaryOp::Str {
                        op: StrOp::Has,
                        negated: false,
                        cs,
                    };
                    let one = self.binary(has, lhs.clone(), term)?;
                    joined = Some(match joined {
                        None => one,
                        Some(prev) => {
                            let kind = ExprKind::Binary {
                                op: join,
                                lhs: Box::new(prev),
                                rhs: Box::new(one),
                            };
                            self.node(kind, span)?
                        }
                    });
                }
                let mut joined = joined.expect("at least one term");
                joined.span = span;
                joined
            }
            Comparison::Between { negated } => {
                let open = self.expect(T::LParen, &format!("'(' after '{op_text}'"))?;
                let low = Box::new(self.additive()?);
                self.expect(
                    T::DotDot,
                    "'..' between the bounds, as in between (1 .. 10)",
                )?;
                let high = Box::new(self.additive()?);
                let close = self.close(T::RParen, open, &format!("{op_text} ("))?;
                let span = lhs.span.to(close);
                let kind = ExprKind::Between {
                    expr: Box::new(lhs),
                    low,
                    high,
                    negated,
                };
                self.node(kind, span)?
            }
            Comparison::Assign => {
                return self.fail(op_span, "'=' names a column; compare with '=='")
            }
            Comparison::Unsupported | Comparison::Unknown => {
                let what = if matches!(op, Comparison::Unknown) {
                    "unknown"
                } else {
                    "unsupported"
                };
                let message = format!("{what} operator '{op_text}' (supported: {COMPARISONS})");
                return self.fail(op_span, message);
            }
        };
        if self.comparison_op().is_some() {
            return self.fail(
                self.span(),
                "comparisons cannot be chained: join them with 'and' or 'or', or add parentheses",
            );
        }
        Ok(expr)
    }

    /// The comparison operator at the current token, if any (not consumed).
    fn comparison_op(&self) -> Option<Comparison> {
        use BinaryOp as B;
        let (word, negated) = match self.peek() {
            T::EqEq => return Some(Comparison::Binary(B::Eq)),
            T::NotEq => return Some(Comparison::Binary(B::Ne)),
            T::Lt => return Some(Comparison::Binary(B::Lt)),
            T::Le => return Some(Comparison::Binary(B::Le)),
            T::Gt => return Some(Comparison::Binary(B::Gt)),
            T::Ge => return Some(Comparison::Binary(B::Ge)),
            T::EqTilde => return Some(Comparison::Binary(B::EqTilde)),
            T::NotTilde => return Some(Comparison::Binary(B::NeTilde)),
            T::Assign => return Some(Comparison::Assign),
            T::Word(w) => (w.as_str(), false),
            T::NotWord(w) => (w.as_str(), true),
            _ => return None,
        };
        let (base, cs) = match word.strip_suffix("_cs") {
            Some(base) => (base, true),
            None => (word, false),
        };
        let op = match base {
            "in" if !cs => {
                return Some(Comparison::In {
                    negated,
                    case_insensitive: false,
                })
            }
            "in~" if !cs => {
                return Some(Comparison::In {
                    negated,
                    case_insensitive: true,
                })
            }
            "between" if !cs => return Some(Comparison::Between { negated }),
            "has" => StrOp::Has,
            "contains" => StrOp::Contains,
            "startswith" => StrOp::StartsWith,
            "endswith" => StrOp::EndsWith,
            "has_any" | "has_all" if !negated && !cs => {
                return Some(Comparison::HasList {
                    all: base == "has_all",
                    cs,
                })
            }
            "matches" if !negated && !cs => return Some(Comparison::MatchesRegex),
            "hasprefix" | "hassuffix" | "like" | "notlike" => return Some(Comparison::Unsupported),
            // `!` glued to a word only ever means a negated operator.
            _ if negated => return Some(Comparison::Unknown),
            _ => return None,
        };
        Some(Comparison::Binary(B::Str { op, negated, cs }))
    }

    fn additive(&mut self) -> PResult<Expr> {
        let mut lhs = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                T::Plus => BinaryOp::Add,
                T::Minus => BinaryOp::Sub,
                _ => return Ok(lhs),
            };
            self.bump();
            let rhs = self.multiplicative()?;
            lhs = self.binary(op, lhs, rhs)?;
        }
    }

    fn multiplicative(&mut self) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek() {
                T::Star => BinaryOp::Mul,
                T::Slash => BinaryOp::Div,
                T::Percent => BinaryOp::Mod,
                _ => return Ok(lhs),
            };
            self.bump();
            let rhs = self.unary()?;
            lhs = self.binary(op, lhs, rhs)?;
        }
    }

    /// Every nested expression passes through here, so this is where depth is bounded.
    fn unary(&mut self) -> PResult<Expr> {
        if self.depth >= MAX_DEPTH {
            return self.fail(
                self.span(),
                format!("expression nested more than {MAX_DEPTH} levels deep"),
            );
        }
        self.depth += 1;
        let result = self.unary_inner();
        self.depth -= 1;
        result
    }

    fn unary_inner(&mut self) -> PResult<Expr> {
        let op = match self.peek() {
            T::Minus => UnaryOp::Neg,
            T::Plus => UnaryOp::Plus,
            _ => return self.postfix(),
        };
        let start = self.bump();
        let operand = self.unary()?;
        let span = start.to(operand.span);
        let expr = Box::new(operand);
        self.node(ExprKind::Unary { op, expr }, span)
    }

    fn postfix(&mut self) -> PResult<Expr> {
        let mut expr = self.primary()?;
        loop {
            match self.peek() {
                T::Dot => {
                    self.bump();
                    let T::Word(name) = self.peek().clone() else {
                        return self.expected("a property name after '.'");
                    };
                    let end = self.bump();
                    let span = expr.span.to(end);
                    expr = self.node(
                        ExprKind::Member {
                            expr: Box::new(expr),
                            name,
                        },
                        span,
                    )?;
                }
                T::LBracket => {
                    let open = self.bump();
                    let index = self.expr()?;
                    let close = self.close(T::RBracket, open, "[")?;
                    let span = expr.span.to(close);
                    let kind = ExprKind::Index {
                        expr: Box::new(expr),
                        index: Box::new(index),
                    };
                    expr = self.node(kind, span)?;
                }
                _ => return Ok(expr),
            }
        }
    }

    fn primary(&mut self) -> PResult<Expr> {
        let span = self.span();
        // `* has "x"`: every string column (the checker expands it).
        if *self.peek() == T::Star && matches!(self.peek_at(1), T::Word(_) | T::NotWord(_)) {
            self.bump();
            return Ok(Expr {
                kind: ExprKind::Star,
                span,
            });
        }
        match self.peek().clone() {
            T::Literal(literal) => {
                self.bump();
                Ok(Expr {
                    kind: ExprKind::Literal(literal),
                    span,
                })
            }
            T::Word(name) => {
                self.bump();
                if *self.peek() == T::LParen {
                    return self.call(Ident { name, span });
                }
                Ok(Expr {
                    kind: ExprKind::Column(name),
                    span,
                })
            }
            T::LBracket => match self.name() {
                Some(ident) => Ok(Expr {
                    kind: ExprKind::Column(ident.name),
                    span: ident.span,
                }),
                None => self.expected("an expression"),
            },
            T::LParen => {
                let open = self.bump();
                let inner = self.expr()?;
                let close = self.close(T::RParen, open, "(")?;
                // No node for parentheses: widen the inner span so it covers them.
                Ok(Expr {
                    span: open.to(close),
                    ..inner
                })
            }
            _ => self.expected("an expression"),
        }
    }

    /// `name(args...)`; the current token is the `(`.
    fn call(&mut self, name: Ident) -> PResult<Expr> {
        let open = self.bump();
        let mut args = Vec::new();
        if *self.peek() != T::RParen {
            loop {
                args.push(self.argument()?);
                if !self.eat(&T::Comma) {
                    break;
                }
            }
        }
        let close = self.close(T::RParen, open, &format!("{}(", name.name))?;
        let span = name.span.to(close);
        self.node(ExprKind::Call { name, args }, span)
    }

    /// A call argument: an expression, or a lone `*` (`arg_max(TimeGenerated, *)`).
    fn argument(&mut self) -> PResult<Expr> {
        if *self.peek() == T::Star && matches!(self.peek_at(1), T::Comma | T::RParen) {
            let span = self.bump();
            return Ok(Expr {
                kind: ExprKind::Star,
                span,
            });
        }
        self.expr()
    }

    fn text(&self, span: Span) -> &str {
        self.src.get(span.start..span.end).unwrap_or("")
    }
}

/// A join key from its expression: `Col`, or `$left.A == $right.B` either way round.
fn join_key(e: &Expr) -> Option<JoinKey> {
    let side = |e: &Expr| match &e.kind {
        ExprKind::Member { expr, name } => match &expr.kind {
            ExprKind::Column(s) if s == "$left" || s == "$right" => Some((
                s == "$left",
                Ident {
                    name: name.clone(),
                    span: e.span,
                },
            )),
            _ => None,
        },
        _ => None,
    };
    match &e.kind {
        ExprKind::Column(name) if !name.starts_with('$') => Some(JoinKey {
            left: Ident {
                name: name.clone(),
                span: e.span,
            },
            right: Ident {
                name: name.clone(),
                span: e.span,
            },
        }),
        ExprKind::Binary {
            op: BinaryOp::Eq,
            lhs,
            rhs,
        } => match (side(lhs)?, side(rhs)?) {
            ((true, left), (false, right)) | ((false, right), (true, left)) => {
                Some(JoinKey { left, right })
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The five queries from Azure's Machine Learning monitoring docs, verbatim.
    const DOCS: [&str; 5] = [
        "AmlComputeJobEvent\n| where TimeGenerated > ago(5d) and EventType == \"JobFailed\"\n| project  TimeGenerated , ClusterId , EventType , ExecutionState , ToolType",
        "AmlComputeJobEvent\n| where JobName == \"automl_a9940991-dedb-4262-9763-2fd08b79d8fb_setup\"\n| project  TimeGenerated , ClusterId , EventType , ExecutionState , ToolType",
        "AmlComputeClusterEvent\n| where TimeGenerated > ago(4d) and VmSize == \"STANDARD_D1_V2\"\n| project  ClusterName , InitialNodeCount , MaximumNodeCount , QuotaAllocated , QuotaUtilized",
        "AmlComputeClusterEvent\n| where TimeGenerated > ago(8d) and TargetNodeCount  > CurrentNodeCount\n| project TimeGenerated, ClusterName, CurrentNodeCount, TargetNodeCount",
        "AmlComputeClusterEvent\n| where TimeGenerated > ago(1d)\n| summarize avgRunningNodes=avg(TargetNodeCount), maxRunningNodes=max(TargetNodeCount)\n         by Workspace=tostring(split(_ResourceId, \"/\")[8]), ClusterName, ClusterType, VmSize, VmPriority",
    ];

    /// The tree without spans, as compact text: `(op lhs rhs)`, `(f args)`, `name=expr`.
    fn show(e: &Expr) -> String {
        let list = |items: &[Expr]| items.iter().map(show).collect::<Vec<_>>().join(" ");
        match &e.kind {
            ExprKind::Literal(Literal::Long(v)) => v.to_string(),
            ExprKind::Literal(Literal::String(s)) => format!("{s:?}"),
            ExprKind::Literal(Literal::TimeSpan(t)) => format!("ts:{t}"),
            ExprKind::Literal(other) => format!("{other:?}"),
            ExprKind::Column(name) => name.clone(),
            ExprKind::Call { name, args } => {
                format!("({} {})", name.name, list(args)).replace(" )", ")")
            }
            ExprKind::Star => "*".to_string(),
            ExprKind::Unary { op, expr } => format!(
                "({} {})",
                if *op == UnaryOp::Neg { "neg" } else { "plus" },
                show(expr)
            ),
            ExprKind::Binary { op, lhs, rhs } => {
                format!("({} {} {})", op_text(*op), show(lhs), show(rhs))
            }
            ExprKind::In {
                expr,
                list: items,
                negated,
                case_insensitive,
            } => {
                let op = format!(
                    "{}in{}",
                    if *negated { "!" } else { "" },
                    if *case_insensitive { "~" } else { "" }
                );
                format!("({op} {} {})", show(expr), list(items))
            }
            ExprKind::Between {
                expr,
                low,
                high,
                negated,
            } => {
                format!(
                    "({}between {} {} {})",
                    if *negated { "!" } else { "" },
                    show(expr),
                    show(low),
                    show(high)
                )
            }
            ExprKind::Member { expr, name } => format!("(. {} {name})", show(expr)),
            ExprKind::Index { expr, index } => format!("([] {} {})", show(expr), show(index)),
            ExprKind::MatchesRegex { expr, pattern } => {
                format!("(matches-regex {} {})", show(expr), show(pattern))
            }
        }
    }

    fn op_text(op: BinaryOp) -> String {
        use BinaryOp as B;
        let s = match op {
            B::Add => "+",
            B::Sub => "-",
            B::Mul => "*",
            B::Div => "/",
            B::Mod => "%",
            B::Eq => "==",
            B::Ne => "!=",
            B::Lt => "<",
            B::Le => "<=",
            B::Gt => ">",
            B::Ge => ">=",
            B::EqTilde => "=~",
            B::NeTilde => "!~",
            B::And => "and",
            B::Or => "or",
            B::Str { op, negated, cs } => {
                let base = match op {
                    StrOp::Has => "has",
                    StrOp::Contains => "contains",
                    StrOp::StartsWith => "startswith",
                    StrOp::EndsWith => "endswith",
                };
                return format!(
                    "{}{base}{}",
                    if negated { "!" } else { "" },
                    if cs { "_cs" } else { "" }
                );
            }
        };
        s.to_string()
    }

    fn show_named(list: &[NamedExpr]) -> String {
        let one = |n: &NamedExpr| match &n.name {
            Some(name) => format!("{}={}", name.name, show(&n.expr)),
            None => show(&n.expr),
        };
        list.iter().map(one).collect::<Vec<_>>().join(", ")
    }

    fn show_keys(keys: &[SortKey]) -> String {
        keys.iter()
            .map(|k| {
                format!(
                    "{} {} nulls {}",
                    show(&k.expr),
                    if k.desc { "desc" } else { "asc" },
                    if k.nulls_first { "first" } else { "last" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn show_query(q: &Query) -> String {
        show_tabular(&q.body)
    }

    fn show_union(u: &Union) -> String {
        let mut out = String::new();
        if u.inner {
            out += "kind=inner ";
        }
        if let Some(w) = &u.withsource {
            out += &format!("withsource={} ", w.name);
        }
        let legs: Vec<String> = u.legs.iter().map(show_leg).collect();
        out + &legs.join(", ")
    }

    fn show_leg(t: &Tabular) -> String {
        match (&t.source, t.ops.is_empty()) {
            (Source::Name(n), true) => n.name.clone(),
            _ => format!("({})", show_tabular(t)),
        }
    }

    fn show_join(kind: JoinKind, right: &Tabular, on: &[JoinKey]) -> String {
        let keys: Vec<String> = on
            .iter()
            .map(|k| format!("{}={}", k.left.name, k.right.name))
            .collect();
        format!("kind={kind:?} {} on {}", show_leg(right), keys.join(", "))
    }

    fn show_tabular(t: &Tabular) -> String {
        let mut out = match &t.source {
            Source::Name(n) => n.name.clone(),
            Source::Union(u) => format!("union {}", show_union(u)),
            Source::Sub(inner) => format!("({})", show_tabular(inner)),
            Source::Call { name, args } => format!(
                "{}({})",
                name.name,
                args.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
        };
        for op in &t.ops {
            out += &match &op.kind {
                OperatorKind::Where(e) => format!(" | where {}", show(e)),
                OperatorKind::Extend(l) => format!(" | extend {}", show_named(l)),
                OperatorKind::Project(l) => format!(" | project {}", show_named(l)),
                OperatorKind::ProjectAway(l) => {
                    format!(
                        " | project-away {}",
                        l.iter()
                            .map(|i| i.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
                OperatorKind::Summarize { aggregates, by } => {
                    format!(
                        " | summarize {} by {}",
                        show_named(aggregates),
                        show_named(by)
                    )
                }
                OperatorKind::Count => " | count".to_string(),
                OperatorKind::Take(e) => format!(" | take {}", show(e)),
                OperatorKind::Sort(keys) => format!(" | sort by {}", show_keys(keys)),
                OperatorKind::Top { count, by } => {
                    format!(" | top {} by {}", show(count), show_keys(by))
                }
                OperatorKind::ProjectRename(pairs) => format!(
                    " | project-rename {}",
                    pairs
                        .iter()
                        .map(|(n, o)| format!("{}={}", n.name, o.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                OperatorKind::Render(chart) => format!(" | render {}", chart.name),
                OperatorKind::ProjectReorder(cols) => format!(
                    " | project-reorder {}",
                    cols.iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                OperatorKind::As(name) => format!(" | as {}", name.name),
                OperatorKind::Union(u) => format!(" | union {}", show_union(u)),
                OperatorKind::MvExpand(m) => format!(" | mv-expand {m:?}"),
                OperatorKind::Parse(p) => format!(
                    " | parse regex={} {} with {:?}",
                    p.regex,
                    show(&p.expr),
                    p.pattern
                ),
                OperatorKind::Join { kind, right, on } => {
                    format!(" | join {}", show_join(*kind, right, on))
                }
                OperatorKind::Lookup { kind, right, on } => {
                    format!(" | lookup {}", show_join(*kind, right, on))
                }
                OperatorKind::Distinct(cols) => format!(
                    " | distinct {}",
                    cols.iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
        }
        out
    }

    fn parsed(src: &str) -> Query {
        match parse(src) {
            Ok(q) => q,
            Err(diags) => panic!("{src:?} failed: {diags:?}"),
        }
    }

    fn shape(src: &str) -> String {
        show_query(&parsed(src))
    }

    /// The expression of `T | where <src>`.
    fn expr(src: &str) -> String {
        shape(&format!("T | where {src}"))
            .trim_start_matches("T | where ")
            .to_string()
    }

    /// Every diagnostic as (line, column, message).
    fn errors(src: &str) -> Vec<(usize, usize, String)> {
        match parse(src) {
            Ok(q) => panic!("{src:?} parsed: {q:?}"),
            Err(diags) => diags
                .iter()
                .map(|d| {
                    let (line, col) = d.line_col(src);
                    (line, col, d.message.clone())
                })
                .collect(),
        }
    }

    fn one_error(src: &str) -> (usize, usize, String) {
        let all = errors(src);
        assert_eq!(all.len(), 1, "{all:?}");
        all.into_iter().next().unwrap_or_default()
    }

    const FIVE_DAYS: i64 = 5 * 864_000_000_000;

    #[test]
    fn docs_queries_parse_to_the_expected_trees() {
        let project = "project TimeGenerated, ClusterId, EventType, ExecutionState, ToolType";
        assert_eq!(
            shape(DOCS[0]),
            format!("AmlComputeJobEvent | where (and (> TimeGenerated (ago ts:{FIVE_DAYS})) (== EventType \"JobFailed\")) | {project}")
        );
        assert_eq!(
            shape(DOCS[1]),
            format!("AmlComputeJobEvent | where (== JobName \"automl_a9940991-dedb-4262-9763-2fd08b79d8fb_setup\") | {project}")
        );
        assert_eq!(
            shape(DOCS[2]),
            format!(
                "AmlComputeClusterEvent | where (and (> TimeGenerated (ago ts:{})) (== VmSize \"STANDARD_D1_V2\")) \
                 | project ClusterName, InitialNodeCount, MaximumNodeCount, QuotaAllocated, QuotaUtilized",
                4 * 864_000_000_000i64
            )
        );
        assert_eq!(
            shape(DOCS[3]),
            format!(
                "AmlComputeClusterEvent | where (and (> TimeGenerated (ago ts:{})) (> TargetNodeCount CurrentNodeCount)) \
                 | project TimeGenerated, ClusterName, CurrentNodeCount, TargetNodeCount",
                8 * 864_000_000_000i64
            )
        );
        assert_eq!(
            shape(DOCS[4]),
            "AmlComputeClusterEvent | where (> TimeGenerated (ago ts:864000000000)) \
             | summarize avgRunningNodes=(avg TargetNodeCount), maxRunningNodes=(max TargetNodeCount) \
             by Workspace=(tostring ([] (split _ResourceId \"/\") 8)), ClusterName, ClusterType, VmSize, VmPriority"
        );
    }

    #[test]
    fn docs_query_spans_point_at_the_text() {
        let src = DOCS[4];
        let q = parsed(src);
        assert_eq!(
            match &q.body.source {
                Source::Name(t) => &src[t.span.start..t.span.end],
                other => panic!("{other:?}"),
            },
            "AmlComputeClusterEvent"
        );
        let summarize = &q.body.ops[1];
        assert!(
            src[summarize.span.start..summarize.span.end].starts_with("summarize avgRunningNodes")
        );
        assert!(src[..summarize.span.end].ends_with("VmPriority"));
        let OperatorKind::Summarize { by, .. } = &summarize.kind else {
            panic!("{summarize:?}")
        };
        let workspace = &by[0];
        let name = workspace
            .name
            .as_ref()
            .map(|n| &src[n.span.start..n.span.end]);
        assert_eq!(name, Some("Workspace"));
        assert_eq!(
            &src[workspace.expr.span.start..workspace.expr.span.end],
            "tostring(split(_ResourceId, \"/\")[8])"
        );
        let OperatorKind::Where(pred) = &q.body.ops[0].kind else {
            panic!()
        };
        assert_eq!(
            &src[pred.span.start..pred.span.end],
            "TimeGenerated > ago(1d)"
        );
        assert_eq!(
            &src[q.body.ops[0].span.start..q.body.ops[0].span.end],
            "where TimeGenerated > ago(1d)"
        );
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(expr("a or b and c"), "(or a (and b c))");
        assert_eq!(expr("a and b or c"), "(or (and a b) c)");
        assert_eq!(expr("-x * y + z"), "(+ (* (neg x) y) z)");
        assert_eq!(
            expr("x == 1 and y in (\"a\",\"b\")"),
            "(and (== x 1) (in y \"a\" \"b\"))"
        );
        assert_eq!(expr("a - b - c"), "(- (- a b) c)");
        assert_eq!(expr("a + b * c % d / e"), "(+ a (/ (% (* b c) d) e))");
        assert_eq!(expr("(a + b) * c"), "(* (+ a b) c)");
        assert_eq!(expr("a + 1 > b * 2"), "(> (+ a 1) (* b 2))");
        assert_eq!(expr("- -+x"), "(neg (neg (plus x)))");
        assert_eq!(expr("-a.b"), "(neg (. a b))");
        assert_eq!(expr("not(a == 1 or b)"), "(not (or (== a 1) b))");
    }

    #[test]
    fn every_comparison_operator() {
        for (src, want) in [
            ("==", "=="),
            ("!=", "!="),
            ("<>", "!="),
            ("<", "<"),
            ("<=", "<="),
            (">", ">"),
            (">=", ">="),
            ("=~", "=~"),
            ("!~", "!~"),
        ] {
            assert_eq!(expr(&format!("a {src} b")), format!("({want} a b)"));
        }
        for base in ["has", "contains", "startswith", "endswith"] {
            for word in [base.to_string(), format!("{base}_cs")] {
                for op in [word.clone(), format!("!{word}")] {
                    assert_eq!(expr(&format!("a {op} \"x\"")), format!("({op} a \"x\")"));
                }
            }
        }
    }

    #[test]
    fn in_and_between_forms() {
        assert_eq!(expr("a in (1, 2, 3)"), "(in a 1 2 3)");
        assert_eq!(expr("a !in (1)"), "(!in a 1)");
        assert_eq!(expr("a in~ (\"x\", \"y\")"), "(in~ a \"x\" \"y\")");
        assert_eq!(expr("a !in~ (\"x\")"), "(!in~ a \"x\")");
        assert_eq!(expr("a between (1 .. 10)"), "(between a 1 10)");
        assert_eq!(expr("a !between (1..10)"), "(!between a 1 10)");
        assert_eq!(
            expr("t between (ago(1h) .. now())"),
            "(between t (ago ts:36000000000) (now))"
        );
        let src = "T | where a !in~ (\"x\") and b";
        let q = parsed(src);
        let OperatorKind::Where(Expr {
            kind: ExprKind::Binary { lhs, .. },
            ..
        }) = &q.body.ops[0].kind
        else {
            panic!()
        };
        assert_eq!(&src[lhs.span.start..lhs.span.end], "a !in~ (\"x\")");
    }

    #[test]
    fn member_index_and_call_chains() {
        assert_eq!(
            expr("d.a.b[0][\"k\"] == 1"),
            "(== ([] ([] (. (. d a) b) 0) \"k\") 1)"
        );
        assert_eq!(
            expr("split(_ResourceId, \"/\")[-1]"),
            "([] (split _ResourceId \"/\") (neg 1))"
        );
        assert_eq!(
            expr("parse_json(Props).items[0].name"),
            "(. ([] (. (parse_json Props) items) 0) name)"
        );
        assert_eq!(
            expr("['Name with spaces'] == [\"x\"]"),
            "(== Name with spaces x)"
        );
        assert_eq!(expr("now()"), "(now)");
        assert_eq!(expr("ago (5m)"), "(ago ts:3000000000)");
    }

    #[test]
    fn operator_forms() {
        assert_eq!(
            shape("T | project-away A, ['B c']"),
            "T | project-away A, B c"
        );
        assert_eq!(shape("T | summarize by X, Y"), "T | summarize  by X, Y");
        assert_eq!(shape("T | summarize count()"), "T | summarize (count) by ");
        assert_eq!(
            shape("T | summarize arg_max(TimeGenerated, *) by bin(TimeGenerated, 5m)"),
            "T | summarize (arg_max TimeGenerated *) by (bin TimeGenerated ts:3000000000)"
        );
        assert_eq!(shape("T | count"), "T | count");
        assert_eq!(shape("T | take 10 | limit 5;"), "T | take 10 | take 5");
        assert_eq!(shape("T | filter a"), "T | where a");
        assert_eq!(
            shape("T | extend x = a * 2, ['y z'] = b, c"),
            "T | extend x=(* a 2), y z=b, c"
        );
        assert_eq!(
            shape("// leading comment\nT // the table\n| count // done\n"),
            "T | count"
        );
        assert_eq!(shape("T"), "T");
        assert_eq!(shape("['My Table'] | count"), "My Table | count");
        // `a-b` inside an expression is still a subtraction.
        assert_eq!(
            shape("T | extend d = project-away"),
            "T | extend d=(- project away)"
        );
    }

    #[test]
    fn operator_spans_run_from_keyword_to_last_argument() {
        let src = "T\n| project-away  A , B  \n| take 5 ";
        let q = parsed(src);
        let texts: Vec<&str> = q
            .body
            .ops
            .iter()
            .map(|op| &src[op.span.start..op.span.end])
            .collect();
        assert_eq!(texts, ["project-away  A , B", "take 5"]);
        let OperatorKind::ProjectAway(cols) = &q.body.ops[0].kind else {
            panic!()
        };
        assert_eq!(&src[cols[1].span.start..cols[1].span.end], "B");
    }

    #[test]
    fn two_errors_in_two_operators_are_both_reported() {
        let src = "T\n| where a == \n| extend x = f(1\n| project y";
        assert_eq!(
            errors(src),
            [
                (3, 1, "expected an expression, found '|'".to_string()),
                (
                    4,
                    1,
                    "expected ')' to close 'f(' opened at line 3, column 15, found '|'".to_string()
                ),
            ]
        );
    }

    #[test]
    fn syntax_errors_point_at_the_offending_token() {
        let supported = format!("(supported: {SUPPORTED})");
        assert_eq!(
            one_error("T\n| evaluate bag_unpack(x)"),
            (2, 3, format!("unsupported operator 'evaluate' {supported}"))
        );
        assert_eq!(
            one_error("T | mv-expand x to typeof(long"),
            (
                1,
                31,
                "expected ')' to close 'typeof(' opened at line 1, column 26, found end of query"
                    .to_string()
            )
        );
        assert_eq!(
            one_error("T | mv-apply a"),
            (1, 5, format!("unsupported operator 'mv-apply' {supported}"))
        );
        assert_eq!(
            one_error("T\n| extend s = tostring(x\n| count"),
            (
                3,
                1,
                "expected ')' to close 'tostring(' opened at line 2, column 22, found '|'"
                    .to_string()
            )
        );
        assert_eq!(
            one_error("T | where x > 1 |"),
            (1, 17, "expected an operator after '|'".to_string())
        );
        assert_eq!(
            one_error("T | where x > 1 | "),
            (1, 17, "expected an operator after '|'".to_string())
        );
        assert_eq!(
            one_error(""),
            (1, 1, "empty query: expected a table name".to_string())
        );
        assert_eq!(
            one_error("  // nothing\n"),
            (2, 1, "empty query: expected a table name".to_string())
        );
        assert_eq!(
            one_error("T | where a = 1"),
            (1, 13, "'=' names a column; compare with '=='".to_string())
        );
        assert_eq!(
            one_error("T | where 1 < a < 3"),
            (
                1,
                17,
                "comparisons cannot be chained: join them with 'and' or 'or', or add parentheses"
                    .to_string()
            )
        );
        assert_eq!(
            one_error("T | where a b"),
            (
                1,
                13,
                "expected '|' or the end of the query after the 'where' operator, found 'b'"
                    .to_string()
            )
        );
        assert_eq!(
            one_error("T where a"),
            (
                1,
                3,
                "expected '|' after the table name, found 'where'".to_string()
            )
        );
        assert_eq!(
            one_error("T | where a in 1"),
            (1, 16, "expected '(' after 'in', found '1'".to_string())
        );
        assert_eq!(
            one_error("T | where a between (1, 2)"),
            (
                1,
                23,
                "expected '..' between the bounds, as in between (1 .. 10), found ','".to_string()
            )
        );
        assert_eq!(
            one_error("T | where a hasprefix \"x\"").2,
            format!("unsupported operator 'hasprefix' (supported: {COMPARISONS})")
        );
        assert_eq!(
            one_error("T | where a !foo b").2,
            format!("unknown operator '!foo' (supported: {COMPARISONS})")
        );
        assert_eq!(
            one_error("T | where x[1"),
            (
                1,
                14,
                "expected ']' to close '[' opened at line 1, column 12, found end of query"
                    .to_string()
            )
        );
        assert_eq!(
            one_error("let x = 1;"),
            (1, 11, "empty query: expected a table name".to_string())
        );
        assert_eq!(
            one_error("T | count; T"),
            (
                1,
                12,
                "expected end of query after ';' (only one query is supported), found 'T'"
                    .to_string()
            )
        );
        assert_eq!(
            one_error("T | take"),
            (
                1,
                9,
                "expected an expression, found end of query".to_string()
            )
        );
        assert_eq!(
            one_error("T | project a,"),
            (
                1,
                15,
                "expected an expression, found end of query".to_string()
            )
        );
        assert_eq!(
            one_error("T | project-away a + b"),
            (
                1,
                20,
                "expected '|' or the end of the query after the 'project-away' operator, found '+'"
                    .to_string()
            )
        );
        assert_eq!(
            one_error("T | summarize"),
            (
                1,
                14,
                "expected an expression, found end of query".to_string()
            )
        );
    }

    #[test]
    fn lexer_errors_are_reported_once_and_parsing_goes_on() {
        assert_eq!(
            errors("T\n| where a == \"abc\n| evaluate x"),
            [
                (2, 14, "unterminated string literal".to_string()),
                (
                    3,
                    3,
                    format!("unsupported operator 'evaluate' (supported: {SUPPORTED})")
                ),
            ]
        );
        assert_eq!(one_error("T | where t > ago(2w)"), (1, 20, "unknown timespan unit 'w' (units: d, h, m, s, ms, microsecond, tick and their long names)".to_string()));
        assert_eq!(
            errors("T | where t > datetime(2024-01-01 | where x = 1 | count"),
            [
                (
                    1,
                    35,
                    "expected ')' to close 'datetime(' opened at line 1, column 23".to_string()
                ),
                (1, 45, "'=' names a column; compare with '=='".to_string()),
            ]
        );
    }

    #[test]
    fn no_prefix_of_the_docs_queries_panics() {
        for src in DOCS {
            for end in (0..=src.len()).filter(|&i| src.is_char_boundary(i)) {
                let _ = parse(&src[..end]);
            }
        }
        let kitchen_sink = "T | where a !in~ ('x', @\"y\"\"z\") and b between (datetime(2024-01-01) .. time(1.02:03:04.5)) \
                            | extend d = dynamic({\"a\": [1, \")\"]}), r = real(-1.5e3), s = h'\\u00e9\\n' \
                            | summarize x = arg_max(t, *) by ['é'] = split(s, \"/\")[-1].k | take 10;";
        assert!(parse(kitchen_sink).is_ok(), "{:?}", parse(kitchen_sink));
        for end in (0..=kitchen_sink.len()).filter(|&i| kitchen_sink.is_char_boundary(i)) {
            let _ = parse(&kitchen_sink[..end]);
        }
    }

    #[test]
    fn random_token_soup_never_panics() {
        const PIECES: &[&str] = &[
            "T",
            " ",
            "\n",
            "|",
            "where",
            "project-away",
            "-",
            "summarize",
            "by",
            "x",
            "=",
            "==",
            "(",
            ")",
            "[",
            "]",
            "\"",
            "'",
            "@",
            "h",
            "\\",
            "u",
            "datetime(",
            "dynamic(",
            "time(",
            "5",
            "1.5",
            "e",
            "m",
            "w",
            ":",
            ".",
            "..",
            "!",
            "!in~",
            "between",
            "in",
            "and",
            "or",
            ",",
            "*",
            "é",
            "//",
            ";",
            "has_cs",
            "long(",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut src = String::new();
            for _ in 0..(seed % 24) {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                src.push_str(PIECES[(seed >> 33) as usize % PIECES.len()]);
            }
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            if let Err(diags) = parse(&src) {
                assert!(!diags.is_empty(), "{src:?}");
                for d in diags {
                    assert!(
                        d.span.start <= d.span.end && d.span.end <= src.len(),
                        "{src:?}: {d:?}"
                    );
                    let _ = d.render(&src);
                }
            }
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("T | where {}a{}", "(".repeat(10_000), ")".repeat(10_000));
        let (_, _, message) = one_error(&deep);
        assert_eq!(
            message,
            format!("expression nested more than {MAX_DEPTH} levels deep")
        );
        let shallow = format!("T | where {}a{}", "(".repeat(50), ")".repeat(50));
        assert_eq!(shape(&shallow), "T | where a");
        let _ = parse(&format!("T | where {}", "-".repeat(10_000)));
        // Long chains deepen the tree without nesting; they are capped too.
        let chain = |n: usize| format!("T | where a{}", " or a".repeat(n));
        assert_eq!(
            one_error(&chain(100_000)).2,
            format!("expression too large: more than {MAX_NODES} operators")
        );
        assert!(parse(&chain(MAX_NODES)).is_ok());
        let _ = parse(&format!("T | where {}", "f(".repeat(10_000)));
    }

    #[test]
    fn sort_top_rename_and_render_parse_with_kustos_defaults() {
        assert_eq!(
            shape("T | sort by a, b asc | order by c desc nulls first, d asc nulls last"),
            "T | sort by a desc nulls last, b asc nulls first | sort by c desc nulls first, d asc nulls last"
        );
        assert_eq!(
            shape("T | top 3 by n | project-rename Nodes = n, ['w x'] = w | render timechart with (title = \"a (b)\", ytitle = 'n')"),
            "T | top 3 by n desc nulls last | project-rename Nodes=n, w x=w | render timechart"
        );
    }

    #[test]
    fn sort_top_and_render_mistakes_are_named() {
        assert_eq!(
            one_error("T | sort a").2,
            "expected 'by' after 'sort', found 'a'"
        );
        assert_eq!(
            one_error("T | top 3 n").2,
            "expected 'by' after the number of rows of 'top', found 'n'"
        );
        assert_eq!(
            one_error("T | sort by a nulls middle").2,
            "expected 'first' or 'last' after 'nulls', found 'middle'"
        );
        assert_eq!(
            one_error("T | render timechart | take 1"),
            (
                1,
                22,
                "'render' must be the last operator of the query".to_string()
            )
        );
        assert_eq!(
            one_error("T | project-rename a b").2,
            "expected '=' after the new name ('project-rename New = Old'), found 'b'"
        );
    }

    #[test]
    fn let_statements_come_first_each_ended_by_a_semicolon() {
        let q = parsed("let a = 1d;\nlet ['b c'] = strcat('x', 'y'); // note\nT | take 1");
        let names: Vec<&str> = q.lets.iter().map(|l| l.name.name.as_str()).collect();
        assert_eq!(names, ["a", "b c"]);
        let LetValue::Scalar(e) = &q.lets[1].value else {
            panic!("{q:?}")
        };
        assert_eq!(show(e), "(strcat \"x\" \"y\")");
        let q = parsed("let t = T | where x; let u = (T | take 2); let v = T; t | take 1");
        assert!(matches!(&q.lets[0].value, LetValue::Tabular(t) if t.ops.len() == 1));
        assert!(
            matches!(&q.lets[1].value, LetValue::Tabular(t) if matches!(t.source, Source::Sub(_)))
        );
        assert!(matches!(&q.lets[2].value, LetValue::Scalar(e) if show(e) == "T"));
        assert_eq!(
            one_error("let t = T | where x t; t | take 1").2,
            "expected '|' or the end of the query after the 'where' operator, found 't'"
        );
        assert_eq!(
            one_error("let a 1; T").2,
            "expected '=' after the name of the 'let', found '1'"
        );
    }

    #[test]
    fn has_any_and_has_all_are_has_against_each_term() {
        assert_eq!(expr("a has_any (\"x\", b)"), "(or (has a \"x\") (has a b))");
        assert_eq!(
            expr("a has_all (\"x\", \"y\", \"z\")"),
            "(and (and (has a \"x\") (has a \"y\")) (has a \"z\"))"
        );
        assert_eq!(expr("f(a) has_any (\"x\")"), "(has (f a) \"x\")");
        assert_eq!(
            one_error("T | where a has_any \"x\"").2,
            "expected '(' after 'has_any', found '\"x\"'"
        );
    }

    #[test]
    fn matches_regex_takes_a_pattern() {
        assert_eq!(
            expr(r#"a matches regex "^gpu-[0-9]+$" and b"#),
            r#"(and (matches-regex a "^gpu-[0-9]+$") b)"#
        );
        assert_eq!(
            one_error("T | where a matches \"x\"").2,
            "expected 'regex' after 'matches', found '\"x\"'"
        );
    }

    #[test]
    fn project_reorder_and_as_parse() {
        assert_eq!(
            shape("T | project-reorder b, a | as Result"),
            "T | project-reorder b, a | as Result"
        );
        assert_eq!(
            one_error("T | as").2,
            "expected a name after 'as', found end of query"
        );
    }
}
