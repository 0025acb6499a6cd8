//! The `apache.org:selector-filter:string` start-position expressions a receiver attaches
//! with, parsed into a [`StartPosition`] the partition log can resolve.
//!
//! The SDKs only ever produce `amqp.annotation.<field> <op> '<value>'` with `op` one of `>`
//! and `>=`, but spell it differently (Rust: no space before the quote; .NET: no quotes;
//! legacy clients: `x-opt-enqueuedtimeutc`), so whitespace and quotes are optional here.

use super::EmulatorError;

/// Where a receiver starts. `inclusive` is `>=`, otherwise `>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// `x-opt-offset`: a byte offset, `-1` (start of stream) or `@latest` (end of stream).
    Offset {
        offset: OffsetValue,
        inclusive: bool,
    },
    /// `x-opt-sequence-number`.
    SequenceNumber { value: i64, inclusive: bool },
    /// `x-opt-enqueued-time`, Unix milliseconds.
    EnqueuedTime { millis: i64, inclusive: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetValue {
    /// `-1`: before the first event.
    Start,
    /// `@latest`: only events enqueued after the attach.
    Latest,
    At(u64),
}

impl StartPosition {
    /// A receiver with no filter reads from the start of the stream.
    pub const EARLIEST: StartPosition = StartPosition::Offset {
        offset: OffsetValue::Start,
        inclusive: false,
    };
}

/// Longest expression accepted (the SDKs send ~60 bytes).
const MAX_EXPRESSION_LEN: usize = 512;

/// Parses one selector expression.
pub fn parse(expression: &str) -> Result<StartPosition, EmulatorError> {
    let bad = |why: &str| {
        EmulatorError::ArgumentError(format!("invalid selector filter {expression:?}: {why}"))
    };
    if expression.len() > MAX_EXPRESSION_LEN {
        return Err(bad("too long"));
    }
    let text = expression.trim();
    let field_end = text
        .find(|c: char| c.is_whitespace() || c == '>' || c == '=' || c == '<')
        .ok_or_else(|| bad("no operator"))?;
    let field = text[..field_end].to_ascii_lowercase();
    let field = field
        .strip_prefix("amqp.annotation.")
        .ok_or_else(|| bad("not an annotation"))?;
    let rest = text[field_end..].trim_start();
    let (inclusive, rest) = if let Some(r) = rest.strip_prefix(">=") {
        (true, r)
    } else if let Some(r) = rest.strip_prefix('>') {
        (false, r)
    } else {
        return Err(bad("only > and >= are supported"));
    };
    let value = unquote(rest.trim()).ok_or_else(|| bad("unbalanced quotes"))?;
    if value.is_empty() {
        return Err(bad("no value"));
    }
    let number = || {
        value
            .parse::<i64>()
            .map_err(|_| bad("the value is not a number"))
    };
    match field {
        "x-opt-offset" => {
            let offset = match value {
                "-1" => OffsetValue::Start,
                v if v.eq_ignore_ascii_case("@latest") => OffsetValue::Latest,
                v => OffsetValue::At(v.parse().map_err(|_| bad("the offset is not a number"))?),
            };
            Ok(StartPosition::Offset { offset, inclusive })
        }
        "x-opt-sequence-number" => Ok(StartPosition::SequenceNumber {
            value: number()?,
            inclusive,
        }),
        "x-opt-enqueued-time" | "x-opt-enqueuedtimeutc" => Ok(StartPosition::EnqueuedTime {
            millis: number()?,
            inclusive,
        }),
        other => Err(bad(&format!("unknown annotation {other:?}"))),
    }
}

fn unquote(v: &str) -> Option<&str> {
    for q in ['\'', '"'] {
        if let Some(inner) = v.strip_prefix(q) {
            return inner.strip_suffix(q);
        }
    }
    if v.contains(['\'', '"']) {
        None
    } else {
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sdk_spelling() {
        use OffsetValue::*;
        use StartPosition::*;
        let cases = [
            (
                "amqp.annotation.x-opt-offset > '-1'",
                Offset {
                    offset: Start,
                    inclusive: false,
                },
            ),
            (
                "amqp.annotation.x-opt-offset > '@latest'",
                Offset {
                    offset: Latest,
                    inclusive: false,
                },
            ),
            (
                "amqp.annotation.x-opt-offset >='1024'",
                Offset {
                    offset: At(1024),
                    inclusive: true,
                },
            ),
            (
                "amqp.annotation.x-opt-sequence-number >'9'",
                SequenceNumber {
                    value: 9,
                    inclusive: false,
                },
            ),
            (
                "amqp.annotation.x-opt-sequence-number >= '9'",
                SequenceNumber {
                    value: 9,
                    inclusive: true,
                },
            ),
            (
                "amqp.annotation.x-opt-sequence-number > 12",
                SequenceNumber {
                    value: 12,
                    inclusive: false,
                },
            ),
            (
                "  AMQP.ANNOTATION.X-OPT-ENQUEUED-TIME>\"1552556128291\" ",
                EnqueuedTime {
                    millis: 1552556128291,
                    inclusive: false,
                },
            ),
            (
                "amqp.annotation.x-opt-enqueuedtimeutc > 1552556128291",
                EnqueuedTime {
                    millis: 1552556128291,
                    inclusive: false,
                },
            ),
            (
                "amqp.annotation.x-opt-sequence-number > '-1'",
                SequenceNumber {
                    value: -1,
                    inclusive: false,
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn rejects_what_it_cannot_honour() {
        for text in [
            "",
            "amqp.annotation.x-opt-offset < '5'",
            "amqp.annotation.x-opt-offset = '5'",
            "amqp.annotation.x-opt-sequence-number > 'abc'",
            "amqp.annotation.x-opt-sequence-number > '5",
            "amqp.annotation.x-opt-color > '5'",
            "x-opt-offset > '5'",
            "amqp.annotation.x-opt-offset >",
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                matches!(err, EmulatorError::ArgumentError(_)),
                "{text}: {err:?}"
            );
        }
    }
}
