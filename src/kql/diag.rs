//! Errors in a query, with the place they point at. The parser and the checker both collect
//! every error they can find before giving up, so a user fixes a query in one round.

use super::ast::Span;
use std::fmt;

/// The candidate nearest to a mistyped `name` (edit distance, ignoring ASCII case), if it is
/// near enough to be the one meant: within 1 edit for names of up to 4 characters, 2 up to
/// 8, 3 beyond. The first of equally near ones.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = match name.chars().count() {
        0..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    let name: Vec<char> = name.chars().map(|c| c.to_ascii_lowercase()).collect();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = distance(&name, c);
        if d <= limit && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Levenshtein distance between `a` (lower-cased) and `b` (lowered here), in one row.
fn distance(a: &[char], b: &str) -> usize {
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diag + usize::from(ca != cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub message: String,
    pub span: Span,
}

impl Diagnostic {
    pub fn new(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            span,
        }
    }

    /// 1-based line and column (in characters) of the span's start within `source`.
    pub fn line_col(&self, source: &str) -> (usize, usize) {
        line_col(source, self.span.start)
    }

    /// `line L, column C: message`, followed by the offending line and a caret.
    pub fn render(&self, source: &str) -> String {
        let (line, col) = self.line_col(source);
        let text = source.lines().nth(line - 1).unwrap_or("");
        let width = source
            .get(self.span.start..self.span.end.min(self.span.start + text.len()))
            .map(|s| s.lines().next().unwrap_or("").chars().count())
            .unwrap_or(1)
            .max(1);
        format!(
            "line {line}, column {col}: {}\n  | {text}\n  | {}{}",
            self.message,
            " ".repeat(col - 1),
            "^".repeat(width)
        )
    }
}

/// 1-based (line, column) of a byte offset; columns count characters, not bytes.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..floor_char_boundary(source, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// All the errors of one query, rendered against its text.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub source: String,
    pub items: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", d.render(&self.source))?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_name_within_a_distance_that_grows_with_length() {
        let names = ["ClusterName", "ClusterType", "VmSize", "Type"];
        assert_eq!(nearest("ClusterNam", names), Some("ClusterName"));
        assert_eq!(
            nearest("clustername", names),
            Some("ClusterName"),
            "case is free"
        );
        assert_eq!(nearest("ClsterTpe", names), Some("ClusterType"));
        assert_eq!(nearest("Typo", names), Some("Type"));
        assert_eq!(nearest("Tpoe", names), None, "two edits in four letters");
        assert_eq!(nearest("VmSizeXYZ1", names), None);
        assert_eq!(distance(&['k', 'i', 't', 't', 'e', 'n'], "sitting"), 3);
    }

    #[test]
    fn line_and_column_are_one_based_and_count_chars() {
        let src = "T\n| where x == \"é\" and y";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 2), (2, 1));
        let y = src.rfind('y').unwrap();
        assert_eq!(line_col(src, y), (2, 22));
    }

    #[test]
    fn render_points_with_a_caret() {
        let src = "T | where Foo";
        let d = Diagnostic::new(Span::new(10, 13), "unknown column 'Foo'");
        let r = d.render(src);
        assert!(
            r.starts_with("line 1, column 11: unknown column 'Foo'"),
            "{r}"
        );
        assert!(r.ends_with("          ^^^"), "{r}");
    }
}
