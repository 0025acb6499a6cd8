//! KQL lexer: query text → tokens with byte spans. It owns every decision made character by
//! character: comments, strings and their escapes, numbers, timespan units (`5m`, `1.5h`), and
//! the literal keywords whose parentheses hold raw text rather than tokens — `datetime(...)`,
//! `dynamic(...)`, `timespan(...)`/`time(...)` and the typed forms `long(5)`, `real(null)`, ….
//!
//! Lexing never stops at the first error. A piece that cannot be read becomes a
//! [`TokenKind::Error`] token whose diagnostic is already recorded, so the parser can skip to
//! the next operator without reporting the same mistake twice.

use super::ast::{Literal, LiteralType, Span};
use super::diag::{line_col, Diagnostic};
use crate::time::parse_timespan;

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// A name or keyword (`where`, `and`, `has_cs`, `in~`, `TimeGenerated`). Which one it is
    /// depends on where it stands, so the parser decides.
    Word(String),
    /// `!` glued to a word (`!has`, `!in~`, `!between`); holds the word without the `!`.
    NotWord(String),
    Literal(Literal),
    Pipe,
    Comma,
    Semicolon,
    /// `:` (the type of a `parse` column: `Count:long`).
    Colon,
    LParen,
    RParen,
    LBracket,
    /// `{` and `}`: the body of a `let` function.
    LBrace,
    RBrace,
    RBracket,
    Dot,
    DotDot,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    /// `=`: names a column (`extend x = ...`), never a comparison.
    Assign,
    EqEq,
    NotEq,
    EqTilde,
    NotTilde,
    Lt,
    Le,
    Gt,
    Ge,
    /// Text that could not be read; its diagnostic is already recorded.
    Error,
    /// End of input; always the last token.
    Eof,
}

/// Keywords whose parentheses hold literal text (`datetime(2024-01-01 10:00)`) that would not
/// survive being split into tokens. Only when directly followed by `(`; otherwise they are
/// plain names.
const RAW_LITERALS: &[&str] = &[
    "datetime", "dynamic", "timespan", "time", "long", "int", "real", "double", "bool", "boolean",
];

/// Splits `source` into tokens (ending with [`TokenKind::Eof`]) and the errors found on the way.
pub fn lex(source: &str) -> (Vec<Token>, Vec<Diagnostic>) {
    let mut lexer = Lexer {
        src: source,
        bytes: source.as_bytes(),
        pos: 0,
        tokens: Vec::new(),
        diags: Vec::new(),
    };
    lexer.run();
    (lexer.tokens, lexer.diags)
}

/// `line L, column C` of a byte offset, for messages that point back at an opening bracket.
pub(crate) fn position(source: &str, offset: usize) -> String {
    let (line, col) = line_col(source, offset);
    format!("line {line}, column {col}")
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    tokens: Vec<Token>,
    diags: Vec<Diagnostic>,
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$'
}

fn is_word_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

impl Lexer<'_> {
    fn byte(&self, i: usize) -> Option<u8> {
        self.bytes.get(i).copied()
    }

    fn char_at(&self, i: usize) -> Option<char> {
        self.src.get(i..).and_then(|rest| rest.chars().next())
    }

    fn push(&mut self, kind: TokenKind, start: usize, end: usize) {
        self.tokens.push(Token {
            kind,
            span: Span::new(start, end),
        });
        self.pos = end;
    }

    /// Records `diag` and covers `start..end` with an error token.
    fn error(&mut self, diag: Diagnostic, start: usize, end: usize) {
        self.diags.push(diag);
        self.push(TokenKind::Error, start, end);
    }

    /// An error token at `start..end`, with the diagnostic pointing at all of it.
    fn error_here(&mut self, start: usize, end: usize, message: impl Into<String>) {
        self.error(Diagnostic::new(Span::new(start, end), message), start, end);
    }

    fn run(&mut self) {
        loop {
            self.skip_trivia();
            let start = self.pos;
            let Some(b) = self.byte(start) else { break };
            let next = self.byte(start + 1);
            if let Some((kind, len)) = punctuation(b, next) {
                self.push(kind, start, start + len);
                continue;
            }
            let quote_at = |i: usize| matches!(self.byte(i), Some(b'"' | b'\''));
            match b {
                b'!' if next.is_some_and(is_word_start) => self.word(start, start + 1),
                b'"' | b'\'' => self.string(start, start, false),
                b'@' if quote_at(start + 1) => self.string(start, start + 1, true),
                // `h"..."` hides a secret from logs; the value is an ordinary string.
                b'h' | b'H' if quote_at(start + 1) => self.string(start, start + 1, false),
                b'h' | b'H' if next == Some(b'@') && quote_at(start + 2) => {
                    self.string(start, start + 2, true)
                }
                b'0'..=b'9' => self.number(start),
                b if is_word_start(b) => self.word(start, start),
                _ => {
                    let width = self.char_at(start).map_or(1, char::len_utf8);
                    let shown = self.src.get(start..start + width).unwrap_or("?");
                    let message = match b {
                        b'!' => "unexpected '!': KQL negates a predicate with not(...)".to_string(),
                        _ => format!("unexpected character '{shown}'"),
                    };
                    self.error_here(start, start + width, message);
                }
            }
        }
        let end = self.src.len();
        self.tokens.push(Token {
            kind: TokenKind::Eof,
            span: Span::new(end, end),
        });
    }

    /// Skips whitespace (any Unicode space: queries pasted from web pages carry U+00A0) and
    /// `//` comments.
    fn skip_trivia(&mut self) {
        loop {
            match self.char_at(self.pos) {
                Some(c) if c.is_whitespace() => self.pos += c.len_utf8(),
                Some('/') if self.byte(self.pos + 1) == Some(b'/') => {
                    let rest = &self.bytes[self.pos..];
                    self.pos += rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
                }
                _ => return,
            }
        }
    }

    /// A word starting at `name_start`; `start < name_start` when it is glued to a `!`.
    fn word(&mut self, start: usize, name_start: usize) {
        let mut end = name_start;
        while self.byte(end).is_some_and(is_word_char) {
            end += 1;
        }
        let name = &self.src[name_start..end];
        if name == "in" && self.byte(end) == Some(b'~') {
            end += 1;
        }
        let name = &self.src[name_start..end];
        if start < name_start {
            return self.push(TokenKind::NotWord(name.to_string()), start, end);
        }
        if let Some(keyword) = RAW_LITERALS.iter().find(|k| **k == name) {
            let rest = &self.src[end..];
            let open = end + (rest.len() - rest.trim_start().len());
            if self.byte(open) == Some(b'(') {
                return self.raw_literal(start, keyword, open);
            }
        }
        let kind = match name {
            "true" => TokenKind::Literal(Literal::Bool(true)),
            "false" => TokenKind::Literal(Literal::Bool(false)),
            _ => TokenKind::Word(name.to_string()),
        };
        self.push(kind, start, end);
    }

    /// A quoted string whose opening quote is at `quote` (after any `@`/`h` prefix).
    fn string(&mut self, start: usize, quote: usize, verbatim: bool) {
        let q = char::from(self.bytes[quote]);
        let mut value = String::new();
        let mut i = quote + 1;
        while let Some(c) = self.char_at(i) {
            match c {
                '\n' | '\r' => break,
                // In a verbatim string a doubled quote stands for one quote.
                c if c == q && verbatim && self.char_at(i + 1) == Some(q) => {
                    value.push(q);
                    i += 2;
                }
                c if c == q => {
                    return self.push(TokenKind::Literal(Literal::String(value)), start, i + 1);
                }
                '\\' if !verbatim => i = self.escape(i, &mut value),
                c => {
                    value.push(c);
                    i += c.len_utf8();
                }
            }
        }
        self.error_here(start, i, "unterminated string literal");
    }

    /// Decodes the escape whose backslash is at `i` into `out`; returns the offset after it.
    /// A bad escape is reported and skipped: the string itself stays usable.
    fn escape(&mut self, i: usize, out: &mut String) -> usize {
        let Some(c) = self.char_at(i + 1) else {
            return i + 1;
        };
        let simple = match c {
            '"' | '\'' | '\\' => Some(c),
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            // A line break ends the string; leave it for the caller to report unterminated.
            '\n' | '\r' => return i + 1,
            _ => None,
        };
        if let Some(decoded) = simple {
            out.push(decoded);
            return i + 2;
        }
        if c == 'u' {
            if let Some((decoded, end)) = self.unicode_escape(i) {
                out.push(decoded);
                return end;
            }
            self.diags.push(Diagnostic::new(
                Span::new(i, i + 2),
                "invalid \\u escape: expected four hex digits naming a character",
            ));
            return i + 2;
        }
        let end = i + 1 + c.len_utf8();
        self.diags.push(Diagnostic::new(
            Span::new(i, end),
            format!("unknown escape '\\{c}' in string literal (use \\\\ for a backslash, or a verbatim @\"...\" string)"),
        ));
        end
    }

    /// `\uXXXX` at `i`, including a UTF-16 surrogate pair `\uD83D\uDE00`.
    fn unicode_escape(&self, i: usize) -> Option<(char, usize)> {
        let hex4 = |at: usize| -> Option<u32> {
            let digits = self.src.get(at..at + 4)?;
            digits
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
                .then(|| u32::from_str_radix(digits, 16).ok())?
        };
        let unit = hex4(i + 2)?;
        if (0xD800..0xDC00).contains(&unit) && self.src.get(i + 6..i + 8) == Some("\\u") {
            let low = hex4(i + 8).filter(|low| (0xDC00..0xE000).contains(low))?;
            let decoded = char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))?;
            return Some((decoded, i + 12));
        }
        Some((char::from_u32(unit)?, i + 6))
    }

    /// A number, which becomes a timespan when a unit is glued to it (`5m`, `1.5h`).
    fn number(&mut self, start: usize) {
        if self.byte(start) == Some(b'0')
            && matches!(self.byte(start + 1), Some(b'x' | b'X'))
            && self.byte(start + 2).is_some_and(|b| b.is_ascii_hexdigit())
        {
            let mut end = start + 2;
            while self.byte(end).is_some_and(|b| b.is_ascii_hexdigit()) {
                end += 1;
            }
            return match i64::from_str_radix(&self.src[start + 2..end], 16) {
                Ok(v) => self.push(TokenKind::Literal(Literal::Long(v)), start, end),
                Err(_) => {
                    self.error_here(start, end, "hex literal does not fit in a long (64-bit)")
                }
            };
        }
        let end = start + number_end(&self.src[start..]);
        let text = &self.src[start..end];
        if self.byte(end).is_some_and(is_word_start) {
            let mut unit_end = end;
            while self.byte(unit_end).is_some_and(is_word_char) {
                unit_end += 1;
            }
            let text = &self.src[start..unit_end];
            return match parse_timespan(text) {
                Some(ticks) => self.push(
                    TokenKind::Literal(Literal::TimeSpan(ticks)),
                    start,
                    unit_end,
                ),
                None => {
                    let (whole, unit) = (Span::new(start, unit_end), Span::new(end, unit_end));
                    let diag = timespan_error(text, whole, unit, &self.src[end..unit_end]);
                    self.error(diag, start, unit_end)
                }
            };
        }
        let literal = if text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse()
                .ok()
                .map(Literal::Long)
                .ok_or("does not fit in a long (64-bit)")
        } else {
            text.parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .map(Literal::Real)
                .ok_or("is out of range for a real")
        };
        match literal {
            Ok(literal) => self.push(TokenKind::Literal(literal), start, end),
            Err(why) => self.error_here(start, end, format!("number '{text}' {why}")),
        }
    }

    /// `keyword(...)` whose `(` is at `open`: finds the matching `)` and reads the text inside.
    fn raw_literal(&mut self, start: usize, keyword: &str, open: usize) {
        let close = match self.matching_paren(open) {
            Ok(close) => close,
            // Point where the search stopped, and lex on from there so the operators after
            // the `|` are still checked.
            Err(stop) => {
                let at = Span::new(stop, (stop + 1).min(self.src.len()));
                let message = format!(
                    "expected ')' to close '{keyword}(' opened at {}",
                    position(self.src, open)
                );
                return self.error(Diagnostic::new(at, message), start, stop);
            }
        };
        let inner = &self.src[open + 1..close];
        let text = inner.trim();
        let text_start = open + 1 + (inner.len() - inner.trim_start().len());
        match typed_literal(keyword, text, text_start) {
            Ok(literal) => self.push(TokenKind::Literal(literal), start, close + 1),
            Err(diag) => self.error(diag, start, close + 1),
        }
    }

    /// The `)` matching the `(` at `open`, skipping quoted strings so `dynamic({"a": ")"})`
    /// works; else where the search stopped. A `|` outside a string is never valid inside these
    /// literals, so it ends the search: an unclosed `datetime(` does not swallow the query.
    fn matching_paren(&self, open: usize) -> Result<usize, usize> {
        let mut depth = 0usize;
        let mut i = open;
        while let Some(b) = self.byte(i) {
            match b {
                b'|' => return Err(i),
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(i);
                    }
                }
                b'"' | b'\'' => {
                    i = skip_quoted(self.bytes, i, b);
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        Err(self.src.len())
    }
}

/// Operators and punctuation: the token and its length in bytes.
fn punctuation(b: u8, next: Option<u8>) -> Option<(TokenKind, usize)> {
    use TokenKind as T;
    Some(match (b, next) {
        (b'|', _) => (T::Pipe, 1),
        (b',', _) => (T::Comma, 1),
        (b';', _) => (T::Semicolon, 1),
        (b':', _) => (T::Colon, 1),
        (b'(', _) => (T::LParen, 1),
        (b')', _) => (T::RParen, 1),
        (b'[', _) => (T::LBracket, 1),
        (b'{', _) => (T::LBrace, 1),
        (b'}', _) => (T::RBrace, 1),
        (b']', _) => (T::RBracket, 1),
        (b'+', _) => (T::Plus, 1),
        (b'-', _) => (T::Minus, 1),
        (b'*', _) => (T::Star, 1),
        (b'/', _) => (T::Slash, 1),
        (b'%', _) => (T::Percent, 1),
        (b'.', Some(b'.')) => (T::DotDot, 2),
        (b'.', _) => (T::Dot, 1),
        (b'=', Some(b'=')) => (T::EqEq, 2),
        (b'=', Some(b'~')) => (T::EqTilde, 2),
        (b'=', _) => (T::Assign, 1),
        (b'<', Some(b'=')) => (T::Le, 2),
        (b'<', Some(b'>')) => (T::NotEq, 2),
        (b'<', _) => (T::Lt, 1),
        (b'>', Some(b'=')) => (T::Ge, 2),
        (b'>', _) => (T::Gt, 1),
        (b'!', Some(b'=')) => (T::NotEq, 2),
        (b'!', Some(b'~')) => (T::NotTilde, 2),
        _ => return None,
    })
}

/// The literal for `keyword(text)`; `at` is where `text` starts.
fn typed_literal(keyword: &str, text: &str, at: usize) -> Result<Literal, Diagnostic> {
    let span = Span::new(at, at + text.len());
    let expected = |what: &str| {
        let found = if text.is_empty() {
            "nothing".to_string()
        } else {
            format!("'{text}'")
        };
        Diagnostic::new(
            span,
            format!("'{keyword}(...)' expects {what}, found {found}"),
        )
    };
    let null = |ty| Ok(Literal::Null(Some(ty)));
    match (keyword, text) {
        ("dynamic", "null") => Ok(Literal::Null(None)),
        ("dynamic", "") => Err(expected("a JSON value")),
        ("dynamic", _) => Ok(Literal::Dynamic(text.to_string())),
        ("datetime", "null") => null(LiteralType::DateTime),
        ("datetime", "") => Err(expected("a date and time")),
        ("datetime", _) => Ok(Literal::DateTime(text.to_string())),
        ("timespan" | "time", "null") => null(LiteralType::TimeSpan),
        ("timespan" | "time", _) => timespan_text(text, span).map(Literal::TimeSpan),
        ("long" | "int", "null") => null(LiteralType::Long),
        ("long" | "int", _) => text
            .parse()
            .map(Literal::Long)
            .map_err(|_| expected("an integer or null")),
        ("real" | "double", "null") => null(LiteralType::Real),
        ("real" | "double", _) => real_text(text)
            .map(Literal::Real)
            .ok_or_else(|| expected("a number, nan, +inf, -inf or null")),
        (_, "null") => null(LiteralType::Bool),
        (_, "true") => Ok(Literal::Bool(true)),
        (_, "false") => Ok(Literal::Bool(false)),
        _ => Err(expected("true, false or null")),
    }
}

/// Inside `timespan(...)`: `5m`, `15 seconds`, a bare number of days (`2`), or a clock
/// `[d.]hh:mm[:ss[.fffffff]]`; `span` is where `text` stands.
fn timespan_text(text: &str, span: Span) -> Result<i64, Diagnostic> {
    // `parse_timespan` takes a `-` but not a `+`, and no space before the unit.
    let signless = text.strip_prefix('+').unwrap_or(text);
    let digits_from = usize::from(signless.starts_with('-'));
    let amount_len = digits_from + number_end(&signless[digits_from..]);
    let (amount, unit) = signless.split_at(amount_len);
    let unit = unit.trim_start();
    let ticks = if signless.contains(':') {
        parse_timespan(signless)
    } else {
        // A bare number counts days.
        parse_timespan(&format!(
            "{amount}{}",
            if unit.is_empty() { "d" } else { unit }
        ))
    };
    let unit_span = Span::new(span.end - unit.len(), span.end);
    let unit = if amount_len > digits_from { unit } else { "" };
    ticks.ok_or_else(|| timespan_error(text, span, unit_span, unit))
}

/// Why `text` is not a timespan: an unknown unit (pointing at it) or a bad amount.
fn timespan_error(text: &str, whole: Span, unit_span: Span, unit: &str) -> Diagnostic {
    // The unit table lives in `crate::time`; asking it about `1<unit>` tells a bad unit
    // from a bad amount without keeping a second copy of the table here.
    let unit_known = parse_timespan(&format!("1{unit}")).is_some();
    if !unit.is_empty() && !unit.contains(':') && !unit_known {
        return Diagnostic::new(
            unit_span,
            format!("unknown timespan unit '{unit}' (units: d, h, m, s, ms, microsecond, tick and their long names)"),
        );
    }
    Diagnostic::new(whole, format!("invalid timespan '{text}': out of range, or not an amount and unit such as 5m or 1.5h, or a clock such as 1.02:03:04.5"))
}

/// The text of a `real(...)` literal.
fn real_text(text: &str) -> Option<f64> {
    match text {
        "nan" => Some(f64::NAN),
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        // Only digits, signs, `.` and exponents: Rust's parser would also take "infinity".
        _ if text
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

/// Length of the number at the start of `s`: digits, then `.digits`, then an exponent. A `.`
/// not followed by a digit is left alone, so `1..10` is `1`, `..`, `10`.
fn number_end(s: &str) -> usize {
    let b = s.as_bytes();
    let digits = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut end = digits(0);
    if end == 0 {
        return 0;
    }
    if b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit) {
        end = digits(end + 1);
    }
    if matches!(b.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(end + 1), Some(b'+' | b'-')));
        if b.get(end + 1 + sign).is_some_and(u8::is_ascii_digit) {
            end = digits(end + 1 + sign);
        }
    }
    end
}

/// The offset just past the string whose quote `q` is at `i` (or the end of input).
fn skip_quoted(bytes: &[u8], i: usize, q: u8) -> usize {
    let mut j = i + 1;
    while let Some(&b) = bytes.get(j) {
        match b {
            b'\\' => j += 2,
            _ if b == q => return j + 1,
            _ => j += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{TICKS_PER_DAY, TICKS_PER_HOUR, TICKS_PER_MINUTE, TICKS_PER_SECOND};
    use TokenKind as T;

    fn kinds(src: &str) -> Vec<TokenKind> {
        let (tokens, diags) = lex(src);
        assert!(diags.is_empty(), "{src:?}: {diags:?}");
        tokens
            .into_iter()
            .map(|t| t.kind)
            .filter(|k| *k != T::Eof)
            .collect()
    }

    /// The single literal `src` lexes to.
    fn literal(src: &str) -> Literal {
        match kinds(src).as_slice() {
            [T::Literal(l)] => l.clone(),
            other => panic!("{src:?} lexed to {other:?}"),
        }
    }

    /// The one diagnostic of `src`, as (start, end, message).
    fn error(src: &str) -> (usize, usize, String) {
        let (tokens, diags) = lex(src);
        assert_eq!(diags.len(), 1, "{src:?}: {diags:?}");
        assert!(
            tokens.iter().any(|t| t.kind == T::Error) || src.contains('\\'),
            "{tokens:?}"
        );
        (
            diags[0].span.start,
            diags[0].span.end,
            diags[0].message.clone(),
        )
    }

    fn word(w: &str) -> TokenKind {
        T::Word(w.to_string())
    }

    #[test]
    fn operators_words_and_spans() {
        let src =
            "T | where a!=b and c !has_cs 'x' or d in~ (1..2) and e !in~ (f) | project-away g";
        let (tokens, _) = lex(src);
        let texts: Vec<&str> = tokens
            .iter()
            .map(|t| &src[t.span.start..t.span.end])
            .collect();
        assert_eq!(
            texts,
            [
                "T", "|", "where", "a", "!=", "b", "and", "c", "!has_cs", "'x'", "or", "d", "in~",
                "(", "1", "..", "2", ")", "and", "e", "!in~", "(", "f", ")", "|", "project", "-",
                "away", "g", ""
            ]
        );
        assert_eq!(tokens[8].kind, T::NotWord("has_cs".into()));
        assert_eq!(tokens[12].kind, word("in~"));
        assert_eq!(tokens[20].kind, T::NotWord("in~".into()));
        assert_eq!(
            kinds("== =~ !~ <> <= >= < > = + - * / % . , ; [ ]"),
            [
                T::EqEq,
                T::EqTilde,
                T::NotTilde,
                T::NotEq,
                T::Le,
                T::Ge,
                T::Lt,
                T::Gt,
                T::Assign,
                T::Plus,
                T::Minus,
                T::Star,
                T::Slash,
                T::Percent,
                T::Dot,
                T::Comma,
                T::Semicolon,
                T::LBracket,
                T::RBracket
            ]
        );
        assert_eq!(
            kinds("_ResourceId $x a$b"),
            [word("_ResourceId"), word("$x"), word("a$b")]
        );
    }

    #[test]
    fn comments_and_unicode_whitespace_are_skipped() {
        assert_eq!(kinds("a // b | c\n\u{a0}d\t//"), [word("a"), word("d")]);
        assert_eq!(
            kinds("'//not a comment'"),
            [T::Literal(Literal::String("//not a comment".into()))]
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(literal("42"), Literal::Long(42));
        assert_eq!(literal("9223372036854775807"), Literal::Long(i64::MAX));
        assert_eq!(literal("0x1F"), Literal::Long(31));
        assert_eq!(literal("1.5"), Literal::Real(1.5));
        assert_eq!(literal("1e3"), Literal::Real(1000.0));
        assert_eq!(literal("2.5E-1"), Literal::Real(0.25));
        assert_eq!(literal("true"), Literal::Bool(true));
        assert_eq!(literal("false"), Literal::Bool(false));
        assert_eq!(
            kinds("x.5"),
            [word("x"), T::Dot, T::Literal(Literal::Long(5))]
        );
        assert_eq!(
            error("9223372036854775808"),
            (
                0,
                19,
                "number '9223372036854775808' does not fit in a long (64-bit)".into()
            )
        );
        assert_eq!(
            error("1e999").2,
            "number '1e999' is out of range for a real"
        );
    }

    #[test]
    fn every_timespan_unit() {
        let units: [(&[&str], i64); 7] = [
            (&["d", "day", "days"], TICKS_PER_DAY),
            (&["h", "hr", "hrs", "hour", "hours"], TICKS_PER_HOUR),
            (&["m", "min", "mins", "minute", "minutes"], TICKS_PER_MINUTE),
            (&["s", "sec", "secs", "second", "seconds"], TICKS_PER_SECOND),
            (
                &["ms", "milli", "millis", "millisecond", "milliseconds"],
                10_000,
            ),
            (&["microsecond", "microseconds"], 10),
            (&["tick", "ticks"], 1),
        ];
        for (names, ticks) in units {
            for name in names {
                assert_eq!(
                    literal(&format!("3{name}")),
                    Literal::TimeSpan(3 * ticks),
                    "{name}"
                );
            }
        }
        assert_eq!(literal("1.5h"), Literal::TimeSpan(90 * TICKS_PER_MINUTE));
        assert_eq!(literal("0.1s"), Literal::TimeSpan(1_000_000));
        assert_eq!(error("ago(2w)"), (5, 6, "unknown timespan unit 'w' (units: d, h, m, s, ms, microsecond, tick and their long names)".into()));
        assert_eq!(error("5Days").0, 1);
        assert!(error("99999999999999d")
            .2
            .starts_with("invalid timespan '99999999999999d'"));
    }

    #[test]
    fn timespan_datetime_and_dynamic_literals() {
        let ts = |src: &str| literal(src);
        assert_eq!(ts("timespan(5m)"), Literal::TimeSpan(5 * TICKS_PER_MINUTE));
        assert_eq!(ts("time(2d)"), Literal::TimeSpan(2 * TICKS_PER_DAY));
        assert_eq!(ts("time(2)"), Literal::TimeSpan(2 * TICKS_PER_DAY));
        assert_eq!(
            ts("timespan( 15 seconds )"),
            Literal::TimeSpan(15 * TICKS_PER_SECOND)
        );
        assert_eq!(
            ts("time(00:05:00)"),
            Literal::TimeSpan(5 * TICKS_PER_MINUTE)
        );
        assert_eq!(
            ts("timespan(1.02:03:04.5)"),
            Literal::TimeSpan(
                TICKS_PER_DAY
                    + 2 * TICKS_PER_HOUR
                    + 3 * TICKS_PER_MINUTE
                    + 45 * TICKS_PER_SECOND / 10
            )
        );
        assert_eq!(ts("timespan(-1h)"), Literal::TimeSpan(-TICKS_PER_HOUR));
        assert_eq!(ts("time(null)"), Literal::Null(Some(LiteralType::TimeSpan)));
        assert_eq!(error("timespan(5w)"), (10, 11, "unknown timespan unit 'w' (units: d, h, m, s, ms, microsecond, tick and their long names)".into()));
        assert_eq!(error("time(1:99)").2, "invalid timespan '1:99': out of range, or not an amount and unit such as 5m or 1.5h, or a clock such as 1.02:03:04.5");

        assert_eq!(
            ts("datetime( 2024-01-02 03:04:05.6Z )"),
            Literal::DateTime("2024-01-02 03:04:05.6Z".into())
        );
        assert_eq!(
            ts("datetime(2024-01-02T03:04:05+01:00)"),
            Literal::DateTime("2024-01-02T03:04:05+01:00".into())
        );
        assert_eq!(
            ts("datetime(null)"),
            Literal::Null(Some(LiteralType::DateTime))
        );
        assert_eq!(
            ts("dynamic({\"a\": [1, \")|(\"], \"b\": {}})"),
            Literal::Dynamic("{\"a\": [1, \")|(\"], \"b\": {}}".into())
        );
        assert_eq!(ts("dynamic(null)"), Literal::Null(None));
        assert_eq!(
            error("datetime()"),
            (
                9,
                9,
                "'datetime(...)' expects a date and time, found nothing".into()
            )
        );
        assert_eq!(
            error("x > datetime(2024 | y"),
            (
                18,
                19,
                "expected ')' to close 'datetime(' opened at line 1, column 13".into()
            )
        );
        // Without a `(` these are plain names.
        assert_eq!(
            kinds("time + datetime"),
            [word("time"), T::Plus, word("datetime")]
        );
        assert_eq!(
            kinds("todatetime(x)"),
            [word("todatetime"), T::LParen, word("x"), T::RParen]
        );
    }

    #[test]
    fn typed_literals_and_typed_nulls() {
        assert_eq!(literal("long(5)"), Literal::Long(5));
        assert_eq!(literal("int(-5)"), Literal::Long(-5));
        assert_eq!(literal("real(1.5)"), Literal::Real(1.5));
        assert_eq!(literal("double(2)"), Literal::Real(2.0));
        assert_eq!(literal("real(-inf)"), Literal::Real(f64::NEG_INFINITY));
        assert!(matches!(literal("real(nan)"), Literal::Real(v) if v.is_nan()));
        assert_eq!(literal("bool(true)"), Literal::Bool(true));
        assert_eq!(literal("bool(false)"), Literal::Bool(false));
        for (src, ty) in [
            ("long(null)", LiteralType::Long),
            ("int(null)", LiteralType::Long),
            ("real(null)", LiteralType::Real),
            ("double(null)", LiteralType::Real),
            ("bool(null)", LiteralType::Bool),
        ] {
            assert_eq!(literal(src), Literal::Null(Some(ty)), "{src}");
        }
        assert_eq!(
            error("long(x)"),
            (
                5,
                6,
                "'long(...)' expects an integer or null, found 'x'".into()
            )
        );
        assert_eq!(
            error("real(infinity)").2,
            "'real(...)' expects a number, nan, +inf, -inf or null, found 'infinity'"
        );
        assert_eq!(
            error("bool(1)").2,
            "'bool(...)' expects true, false or null, found '1'"
        );
    }

    #[test]
    fn strings_escapes_and_verbatim() {
        let s = |src: &str| match literal(src) {
            Literal::String(s) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(s(r#""a\"b\'c\\d\ne\tf\rg""#), "a\"b'c\\d\ne\tf\rg");
        assert_eq!(s(r"'it\'s'"), "it's");
        assert_eq!(s(r#""\u00e9\ud83d\ude00""#), "é😀");
        assert_eq!(s(r#"@"C:\temp\""#), r"C:\temp\");
        assert_eq!(s(r#"@"say ""hi""""#), "say \"hi\"");
        assert_eq!(s(r"@'it''s'"), "it's");
        assert_eq!(s(r#"h"secret""#), "secret");
        assert_eq!(s(r#"H@'C:\x'"#), r"C:\x");
        assert_eq!(s("'é ü'"), "é ü");
        // Adjacent strings stay two tokens.
        assert_eq!(kinds("'a' 'b'").len(), 2);
        assert_eq!(
            error("x == \"abc"),
            (5, 9, "unterminated string literal".into())
        );
        assert_eq!(
            error("'abc\n| take 1"),
            (0, 4, "unterminated string literal".into())
        );
        assert_eq!(error("@\"a\"\"").2, "unterminated string literal");
        assert_eq!(error(r#""a\qb""#), (2, 4, r#"unknown escape '\q' in string literal (use \\ for a backslash, or a verbatim @"..." string)"#.into()));
        assert_eq!(
            error(r#""\u12""#),
            (
                1,
                3,
                r"invalid \u escape: expected four hex digits naming a character".into()
            )
        );
    }

    #[test]
    fn stray_characters_are_reported_and_skipped() {
        let (tokens, diags) = lex("a ? é ! b");
        let messages: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "unexpected character '?'",
                "unexpected character 'é'",
                "unexpected '!': KQL negates a predicate with not(...)"
            ]
        );
        assert_eq!(tokens.last().map(|t| &t.kind), Some(&T::Eof));
        assert_eq!(tokens[tokens.len() - 2].kind, word("b"));
    }
}
