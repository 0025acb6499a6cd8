//! Evaluates typed expressions over one row. Types were checked when the query was loaded,
//! so a mismatch here can only come from `dynamic` values; it yields null, as in Kusto.

use std::sync::Arc;

use super::ast::BinaryOp;
use super::plan::{str_op_matches, Expr, Func, MathFn};
use crate::time;
use crate::value::Value;

/// What an expression can see besides its row.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// The event-time clock (`now()`), in ticks.
    pub now: i64,
}

pub fn eval(expr: &Expr, row: &[Value], cx: &Context) -> Value {
    match expr {
        Expr::Literal(v) => v.clone(),
        Expr::Column(i) => row.get(*i).cloned().unwrap_or_default(),
        Expr::Now => Value::DateTime(cx.now),
        Expr::Unary { neg, expr } => {
            let v = eval(expr, row, cx);
            if !*neg {
                return v;
            }
            match v {
                Value::Long(x) => Value::Long(x.wrapping_neg()),
                Value::Real(x) => Value::Real(-x),
                Value::TimeSpan(x) => Value::TimeSpan(x.wrapping_neg()),
                _ => Value::Null,
            }
        }
        Expr::And(a, b) => match truth(&eval(a, row, cx)) {
            Some(false) => Value::Bool(false),
            l => match (l, truth(&eval(b, row, cx))) {
                (_, Some(false)) => Value::Bool(false),
                (Some(true), Some(true)) => Value::Bool(true),
                _ => Value::Null,
            },
        },
        Expr::Or(a, b) => match truth(&eval(a, row, cx)) {
            Some(true) => Value::Bool(true),
            l => match (l, truth(&eval(b, row, cx))) {
                (_, Some(true)) => Value::Bool(true),
                (Some(false), Some(false)) => Value::Bool(false),
                _ => Value::Null,
            },
        },
        Expr::Binary { op, lhs, rhs } => binary(*op, eval(lhs, row, cx), eval(rhs, row, cx)),
        Expr::Regex { re, text, group } => {
            let text = eval(text, row, cx).to_text();
            match group {
                None => Value::Bool(re.is_match(&text)),
                Some(g) => re
                    .captures(&text)
                    .and_then(|c| c.get(*g))
                    .map_or(Value::Null, |m| Value::str(m.as_str())),
            }
        }
        Expr::In {
            expr,
            list,
            negated,
            case_insensitive,
        } => {
            let v = eval(expr, row, cx);
            if v.is_null() {
                return Value::Bool(*negated);
            }
            let found = list.iter().any(|item| {
                let item = eval(item, row, cx);
                if *case_insensitive {
                    matches!((v.as_str(), item.as_str()), (Some(a), Some(b)) if eq_ci(a, b))
                } else {
                    compare_eq(&v, &item) == Some(true)
                }
            });
            Value::Bool(found != *negated)
        }
        Expr::Between {
            expr,
            low,
            high,
            negated,
        } => {
            let v = eval(expr, row, cx);
            let lo = eval(low, row, cx);
            let hi = eval(high, row, cx);
            match (order(&v, &lo), order(&v, &hi)) {
                (Some(a), Some(b)) => {
                    let inside = a != std::cmp::Ordering::Less && b != std::cmp::Ordering::Greater;
                    Value::Bool(inside != *negated)
                }
                _ => Value::Null,
            }
        }
        Expr::Member { expr, name } => match eval(expr, row, cx) {
            Value::Dynamic(d) => d.get(&**name).map(Value::from_json).unwrap_or_default(),
            _ => Value::Null,
        },
        Expr::Index { expr, index } => index_value(eval(expr, row, cx), eval(index, row, cx)),
        Expr::Call { func, args } => call(*func, args, row, cx),
    }
}

/// A predicate's outcome: null and non-bool count as false.
pub fn is_true(expr: &Expr, row: &[Value], cx: &Context) -> bool {
    truth(&eval(expr, row, cx)) == Some(true)
}

fn truth(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Dynamic(d) => d.as_bool(),
        _ => None,
    }
}

fn eq_ci(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
        || (!a.is_ascii() || !b.is_ascii()) && a.to_lowercase() == b.to_lowercase()
}

/// Unwraps a dynamic scalar into a plain value so that `d.x == 5` compares numbers.
fn plain(v: Value) -> Value {
    match v {
        Value::Dynamic(d) if !d.is_object() && !d.is_array() => Value::from_json(&d),
        other => other,
    }
}

fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Long(x), Value::Long(y)) => Some(x.cmp(y)),
        (Value::Long(_) | Value::Real(_), Value::Long(_) | Value::Real(_)) => {
            a.as_f64()?.partial_cmp(&b.as_f64()?)
        }
        (Value::DateTime(x), Value::DateTime(y)) | (Value::TimeSpan(x), Value::TimeSpan(y)) => {
            Some(x.cmp(y))
        }
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Dynamic(_), _) | (_, Value::Dynamic(_)) => {
            let (a, b) = (plain(a.clone()), plain(b.clone()));
            if matches!(a, Value::Dynamic(_)) || matches!(b, Value::Dynamic(_)) {
                return None;
            }
            order(&a, &b)
        }
        _ => None,
    }
}

/// Equality as Kusto defines it for nulls: `null == x` is false (so `null != x` is true) and
/// `null == null` is null. Strings have no null in Kusto, so a missing string equals `""`.
fn compare_eq(a: &Value, b: &Value) -> Option<bool> {
    match (a, b) {
        (Value::Null, Value::Null) => None,
        (Value::Null, Value::Str(s)) | (Value::Str(s), Value::Null) => Some(s.is_empty()),
        (Value::Null, _) | (_, Value::Null) => Some(false),
        (Value::Dynamic(x), Value::Dynamic(y)) => Some(x == y),
        _ => order(a, b).map(|o| o == std::cmp::Ordering::Equal),
    }
}

fn binary(op: BinaryOp, a: Value, b: Value) -> Value {
    use BinaryOp::*;
    match op {
        Eq => compare_eq(&a, &b).map(Value::Bool).unwrap_or_default(),
        Ne => compare_eq(&a, &b)
            .map(|x| Value::Bool(!x))
            .unwrap_or_default(),
        Lt | Le | Gt | Ge => match order(&a, &b) {
            Some(o) => Value::Bool(match op {
                Lt => o.is_lt(),
                Le => o.is_le(),
                Gt => o.is_gt(),
                _ => o.is_ge(),
            }),
            None => Value::Null,
        },
        EqTilde | NeTilde => {
            if a.is_null() || b.is_null() {
                return Value::Null;
            }
            let eq = eq_ci(&a.to_text(), &b.to_text());
            Value::Bool(if op == EqTilde { eq } else { !eq })
        }
        Str { op, negated, cs } => {
            if a.is_null() {
                return Value::Bool(negated);
            }
            let m = str_op_matches(op, cs, &a.to_text(), &b.to_text());
            Value::Bool(m != negated)
        }
        Add | Sub | Mul | Div | Mod => arithmetic(op, plain(a), plain(b)),
        And | Or => Value::Null, // compiled to Expr::And / Expr::Or
    }
}

fn arithmetic(op: BinaryOp, a: Value, b: Value) -> Value {
    use BinaryOp::*;
    use Value::*;
    match (op, a, b) {
        (_, Null, _) | (_, _, Null) => Null,
        (Add, Long(x), Long(y)) => Long(x.wrapping_add(y)),
        (Sub, Long(x), Long(y)) => Long(x.wrapping_sub(y)),
        (Mul, Long(x), Long(y)) => Long(x.wrapping_mul(y)),
        (Div, Long(x), Long(y)) => {
            if y == 0 {
                Null
            } else {
                Long(x.wrapping_div(y))
            }
        }
        (Mod, Long(x), Long(y)) => {
            if y == 0 {
                Null
            } else {
                Long(x.wrapping_rem(y))
            }
        }
        (op, x @ (Long(_) | Real(_)), y @ (Long(_) | Real(_))) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            Real(match op {
                Add => x + y,
                Sub => x - y,
                Mul => x * y,
                Div => x / y,
                _ => x % y,
            })
        }
        (Add, DateTime(t), TimeSpan(s)) | (Add, TimeSpan(s), DateTime(t)) => {
            DateTime(t.wrapping_add(s))
        }
        (Sub, DateTime(t), TimeSpan(s)) => DateTime(t.wrapping_sub(s)),
        (Sub, DateTime(a), DateTime(b)) => TimeSpan(a.wrapping_sub(b)),
        (Add, TimeSpan(a), TimeSpan(b)) => TimeSpan(a.wrapping_add(b)),
        (Sub, TimeSpan(a), TimeSpan(b)) => TimeSpan(a.wrapping_sub(b)),
        (Mul, TimeSpan(a), n @ (Long(_) | Real(_)))
        | (Mul, n @ (Long(_) | Real(_)), TimeSpan(a)) => {
            TimeSpan((a as f64 * n.as_f64().unwrap_or(0.0)) as i64)
        }
        (Div, TimeSpan(a), n @ (Long(_) | Real(_))) => {
            let d = n.as_f64().unwrap_or(0.0);
            if d == 0.0 {
                Null
            } else {
                TimeSpan((a as f64 / d) as i64)
            }
        }
        (Div, TimeSpan(a), TimeSpan(b)) => {
            if b == 0 {
                Null
            } else {
                Real(a as f64 / b as f64)
            }
        }
        _ => Null,
    }
}

fn index_value(base: Value, index: Value) -> Value {
    let Value::Dynamic(d) = base else {
        return Value::Null;
    };
    match (&*d, index) {
        (serde_json::Value::Array(items), Value::Long(i)) => {
            let i = if i < 0 { items.len() as i64 + i } else { i };
            usize::try_from(i)
                .ok()
                .and_then(|i| items.get(i))
                .map(Value::from_json)
                .unwrap_or_default()
        }
        (serde_json::Value::Object(map), Value::Str(k)) => {
            map.get(&*k).map(Value::from_json).unwrap_or_default()
        }
        _ => Value::Null,
    }
}

fn call(func: Func, args: &[Expr], row: &[Value], cx: &Context) -> Value {
    let arg = |i: usize| args.get(i).map(|e| eval(e, row, cx)).unwrap_or_default();
    match func {
        Func::Ago => match arg(0) {
            Value::TimeSpan(s) => Value::DateTime(cx.now.wrapping_sub(s)),
            _ => Value::Null,
        },
        Func::Bin | Func::Floor => match (plain(arg(0)), plain(arg(1))) {
            (Value::DateTime(t), Value::TimeSpan(w)) if w > 0 => Value::DateTime(time::bin(t, w)),
            (Value::TimeSpan(t), Value::TimeSpan(w)) if w > 0 => Value::TimeSpan(time::bin(t, w)),
            (Value::Long(x), Value::Long(w)) if w > 0 => Value::Long(time::bin(x, w)),
            (x @ (Value::Long(_) | Value::Real(_)), w @ (Value::Long(_) | Value::Real(_))) => {
                let (x, w) = (x.as_f64().unwrap_or(0.0), w.as_f64().unwrap_or(0.0));
                if w > 0.0 {
                    Value::Real((x / w).floor() * w)
                } else {
                    Value::Null
                }
            }
            _ => Value::Null,
        },
        Func::Iif => {
            if truth(&arg(0)) == Some(true) {
                arg(1)
            } else {
                arg(2)
            }
        }
        Func::Case => {
            let mut i = 0;
            while i + 1 < args.len() {
                if truth(&arg(i)) == Some(true) {
                    return arg(i + 1);
                }
                i += 2;
            }
            args.last().map(|e| eval(e, row, cx)).unwrap_or_default()
        }
        Func::Not => match truth(&arg(0)) {
            Some(b) => Value::Bool(!b),
            None => Value::Null,
        },
        Func::ToString => match arg(0) {
            Value::Null => Value::str(""),
            v => Value::Str(Arc::from(v.to_text())),
        },
        Func::ToLong => to_long(plain(arg(0))),
        Func::ToReal => match plain(arg(0)) {
            Value::Long(x) => Value::Real(x as f64),
            Value::Real(x) => Value::Real(x),
            Value::Bool(b) => Value::Real(b as i64 as f64),
            Value::Str(s) => s.trim().parse::<f64>().map(Value::Real).unwrap_or_default(),
            _ => Value::Null,
        },
        Func::ToBool => match plain(arg(0)) {
            Value::Bool(b) => Value::Bool(b),
            Value::Long(x) => Value::Bool(x != 0),
            Value::Real(x) => Value::Bool(x != 0.0),
            Value::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => Value::Null,
            },
            _ => Value::Null,
        },
        Func::ToDateTime => match plain(arg(0)) {
            Value::DateTime(t) => Value::DateTime(t),
            Value::Str(s) => time::parse_datetime(&s)
                .map(|(t, _)| Value::DateTime(t))
                .unwrap_or_default(),
            _ => Value::Null,
        },
        Func::ToTimeSpan => match plain(arg(0)) {
            Value::TimeSpan(t) => Value::TimeSpan(t),
            Value::Str(s) => time::parse_timespan(&s)
                .map(Value::TimeSpan)
                .unwrap_or_default(),
            _ => Value::Null,
        },
        Func::Split => {
            let s = arg(0);
            let d = arg(1);
            if s.is_null() {
                return Value::Null;
            }
            let (s, d) = (s.to_text(), d.to_text());
            let parts: Vec<serde_json::Value> = if d.is_empty() {
                vec![serde_json::Value::String(s)]
            } else {
                s.split(d.as_str())
                    .map(|p| serde_json::Value::String(p.to_string()))
                    .collect()
            };
            let arr = serde_json::Value::Array(parts);
            match args.get(2).map(|e| eval(e, row, cx)) {
                Some(Value::Long(i)) => {
                    match index_value(Value::Dynamic(Arc::new(arr)), Value::Long(i)) {
                        Value::Null => Value::Dynamic(Arc::new(serde_json::Value::Array(vec![]))),
                        v => Value::Dynamic(Arc::new(serde_json::Value::Array(vec![v.to_json()]))),
                    }
                }
                _ => Value::Dynamic(Arc::new(arr)),
            }
        }
        Func::StrCat => {
            let mut out = String::new();
            for e in args {
                out.push_str(&eval(e, row, cx).to_text());
            }
            Value::Str(Arc::from(out))
        }
        Func::ToLower => text_map(arg(0), |s| s.to_lowercase()),
        Func::ToUpper => text_map(arg(0), |s| s.to_uppercase()),
        Func::IsEmpty => Value::Bool(is_empty(&arg(0))),
        Func::IsNotEmpty => Value::Bool(!is_empty(&arg(0))),
        Func::IsNull => Value::Bool(
            matches!(arg(0), Value::Null) || matches!(arg(0), Value::Dynamic(ref d) if d.is_null()),
        ),
        Func::IsNotNull => Value::Bool(
            !(matches!(arg(0), Value::Null)
                || matches!(arg(0), Value::Dynamic(ref d) if d.is_null())),
        ),
        Func::StrLen => match arg(0) {
            Value::Null => Value::Null,
            v => Value::Long(v.to_text().chars().count() as i64),
        },
        Func::Abs => match plain(arg(0)) {
            Value::Long(x) => Value::Long(x.wrapping_abs()),
            Value::Real(x) => Value::Real(x.abs()),
            Value::TimeSpan(x) => Value::TimeSpan(x.wrapping_abs()),
            _ => Value::Null,
        },
        Func::Round => {
            let digits = match arg(1) {
                Value::Long(d) => d.clamp(-15, 15) as i32,
                _ => 0,
            };
            match plain(arg(0)) {
                Value::Long(x) if digits >= 0 => Value::Long(x),
                // Whole numbers stay whole (the checker types `round(long)` as long): round
                // half away from zero in integers, exact for any long.
                Value::Long(x) => {
                    let m = 10i64.pow(digits.unsigned_abs());
                    let (q, r) = (x / m, x % m);
                    let q = if r.unsigned_abs() * 2 >= m as u64 {
                        q + x.signum()
                    } else {
                        q
                    };
                    Value::Long(q.saturating_mul(m))
                }
                Value::Real(x) => {
                    let m = 10f64.powi(digits);
                    Value::Real((x * m).round() / m)
                }
                _ => Value::Null,
            }
        }
        Func::Coalesce => args
            .iter()
            .map(|e| eval(e, row, cx))
            .find(|v| !v.is_null() && !matches!(v, Value::Str(s) if s.is_empty()))
            .unwrap_or_default(),
        // A dynamic as it is; a string parsed, or kept as a string when it is not JSON.
        Func::ParseJson => match arg(0) {
            Value::Null => Value::Null,
            d @ Value::Dynamic(_) => d,
            Value::Str(s) => Value::Dynamic(Arc::new(
                serde_json::from_str(&s)
                    .unwrap_or_else(|_| serde_json::Value::String(s.to_string())),
            )),
            other => Value::Dynamic(Arc::new(other.to_json())),
        },
        // bin_at: bins of `bin` that start at `fixed` (and every `bin` before and after it).
        Func::BinAt => match (plain(arg(0)), plain(arg(1)), plain(arg(2))) {
            (Value::DateTime(t), Value::TimeSpan(w), Value::DateTime(f)) if w > 0 => {
                Value::DateTime(time::bin(t.wrapping_sub(f), w).wrapping_add(f))
            }
            (Value::TimeSpan(t), Value::TimeSpan(w), Value::TimeSpan(f)) if w > 0 => {
                Value::TimeSpan(time::bin(t.wrapping_sub(f), w).wrapping_add(f))
            }
            (Value::Long(x), Value::Long(w), Value::Long(f)) if w > 0 => {
                Value::Long(time::bin(x.wrapping_sub(f), w).wrapping_add(f))
            }
            (x, w, f) => match (x.as_f64(), w.as_f64(), f.as_f64()) {
                (Some(x), Some(w), Some(f)) if w > 0.0 => {
                    Value::Real(((x - f) / w).floor() * w + f)
                }
                _ => Value::Null,
            },
        },
        Func::DateTimeDiff => match (arg(0), plain(arg(1)), plain(arg(2))) {
            (Value::Str(period), Value::DateTime(a), Value::DateTime(b)) => {
                time::periods_between(&period, a, b).map_or(Value::Null, Value::Long)
            }
            _ => Value::Null,
        },
        Func::StartOf(unit) | Func::EndOf(unit) => {
            let offset = match arg(1) {
                Value::Long(n) => n,
                _ => 0,
            };
            match plain(arg(0)) {
                Value::DateTime(t) if matches!(func, Func::StartOf(_)) => {
                    Value::DateTime(time::start_of(unit, t, offset))
                }
                Value::DateTime(t) => Value::DateTime(time::end_of(unit, t, offset)),
                _ => Value::Null,
            }
        }
        Func::DateTimePart => match (arg(0), plain(arg(1))) {
            (Value::Str(part), Value::DateTime(t)) => {
                time::date_part(&part.to_ascii_lowercase(), t).map_or(Value::Null, Value::Long)
            }
            _ => Value::Null,
        },
        Func::Part(part) => match plain(arg(0)) {
            Value::DateTime(t) => time::date_part(part, t).map_or(Value::Null, Value::Long),
            _ => Value::Null,
        },
        // 1970-01-01 was a Thursday, 4 days after a Sunday.
        Func::DayOfWeek => match plain(arg(0)) {
            Value::DateTime(t) => Value::TimeSpan(
                (t.div_euclid(time::TICKS_PER_DAY) + 4).rem_euclid(7) * time::TICKS_PER_DAY,
            ),
            _ => Value::Null,
        },
        Func::DateTimeAdd => match (arg(0), plain(arg(1)), plain(arg(2))) {
            (Value::Str(part), Value::Long(n), Value::DateTime(t)) => {
                time::add_periods(&part.to_ascii_lowercase(), n, t)
                    .map_or(Value::Null, Value::DateTime)
            }
            _ => Value::Null,
        },
        Func::FormatDateTime => match (plain(arg(0)), arg(1)) {
            (Value::DateTime(t), Value::Str(f)) => {
                time::format_with(t, &f).map_or(Value::Null, |s| Value::str(&s))
            }
            _ => Value::Null,
        },
        Func::Math(m) => {
            let v = plain(arg(0));
            if let (MathFn::Ceiling, Value::Long(x)) = (m, &v) {
                return Value::Long(*x);
            }
            let Some(x) = v.as_f64() else {
                return Value::Null;
            };
            let y = match m {
                MathFn::Ceiling => x.ceil(),
                MathFn::Sqrt => x.sqrt(),
                MathFn::Ln => x.ln(),
                MathFn::Log10 => x.log10(),
                MathFn::Log2 => x.log2(),
                MathFn::Exp => x.exp(),
                MathFn::Exp2 => x.exp2(),
                MathFn::Exp10 => 10f64.powf(x),
            };
            // Kusto: a result that is not a number is null.
            if y.is_nan() {
                Value::Null
            } else {
                Value::Real(y)
            }
        }
        Func::Pow => match (plain(arg(0)).as_f64(), plain(arg(1)).as_f64()) {
            (Some(x), Some(y)) if !x.powf(y).is_nan() => Value::Real(x.powf(y)),
            _ => Value::Null,
        },
        // The least (greatest) of the values that are not null.
        Func::MinOf | Func::MaxOf => {
            let mut best: Option<Value> = None;
            for e in args {
                let v = plain(eval(e, row, cx));
                if v.is_null() {
                    continue;
                }
                let better = match &best {
                    None => true,
                    Some(b) => {
                        let o = crate::value::compare_for_sort(&v, b);
                        if func == Func::MinOf {
                            o.is_lt()
                        } else {
                            o.is_gt()
                        }
                    }
                };
                if better {
                    best = Some(v);
                }
            }
            best.unwrap_or_default()
        }
        // Characters, not bytes; a start before the text is its start.
        Func::Substring => {
            let text = arg(0);
            if text.is_null() {
                return Value::Null;
            }
            let text = text.to_text();
            let start = match plain(arg(1)) {
                Value::Long(n) => n.max(0) as usize,
                _ => return Value::Null,
            };
            let len = match args.get(2).map(|_| plain(arg(2))) {
                None => usize::MAX,
                Some(Value::Long(n)) => n.max(0) as usize,
                Some(_) => return Value::Null,
            };
            Value::str(&text.chars().skip(start).take(len).collect::<String>())
        }
        Func::IndexOf => {
            let (text, lookup) = (arg(0), arg(1));
            if text.is_null() || lookup.is_null() {
                return Value::Null;
            }
            let (text, lookup) = (text.to_text(), lookup.to_text());
            let start = match args.get(2).map(|_| plain(arg(2))) {
                None => 0,
                Some(Value::Long(n)) if n >= 0 => n as usize,
                Some(_) => return Value::Null,
            };
            let Some((from, _)) = text
                .char_indices()
                .nth(start)
                .or((start == text.chars().count()).then_some((text.len(), ' ')))
            else {
                return Value::Long(-1);
            };
            match text[from..].find(&lookup) {
                Some(at) => Value::Long((start + text[from..from + at].chars().count()) as i64),
                None => Value::Long(-1),
            }
        }
        Func::Hash => {
            // .NET counts ticks from 0001-01-01, 621,355,968,000,000,000 before the epoch.
            let h = match plain(arg(0)) {
                Value::Str(s) => super::xxh64::xxh64(s.as_bytes()),
                Value::DateTime(t) => {
                    super::xxh64::xxh64(&t.wrapping_add(621_355_968_000_000_000).to_le_bytes())
                }
                _ => return Value::Null,
            };
            match args.get(1).map(|_| plain(arg(1))) {
                None => Value::Long(h as i64),
                Some(Value::Long(m)) if m > 0 => Value::Long((h % m as u64) as i64),
                Some(_) => Value::Null,
            }
        }
        Func::Reverse => match arg(0) {
            Value::Null => Value::str(""),
            v => Value::str(&v.to_text().chars().rev().collect::<String>()),
        },
        Func::ArrayLength => match arg(0) {
            Value::Dynamic(d) => match &*d {
                serde_json::Value::Array(a) => Value::Long(a.len() as i64),
                _ => Value::Null,
            },
            _ => Value::Null,
        },
        Func::PackArray => Value::Dynamic(Arc::new(serde_json::Value::Array(
            args.iter().map(|e| eval(e, row, cx).to_json()).collect(),
        ))),
        Func::BagPack => {
            let mut bag = serde_json::Map::new();
            for pair in args.chunks(2) {
                let key = eval(&pair[0], row, cx).to_text();
                bag.insert(key, eval(&pair[1], row, cx).to_json());
            }
            Value::Dynamic(Arc::new(serde_json::Value::Object(bag)))
        }
        Func::FromUnixTime(unit) => match plain(arg(0)) {
            Value::Long(n) => n.checked_mul(unit).map_or(Value::Null, Value::DateTime),
            Value::Real(x) if (x * unit as f64).abs() < 9.2e18 => {
                Value::DateTime((x * unit as f64).round() as i64)
            }
            _ => Value::Null,
        },
        Func::ReplaceString => {
            let (text, lookup, rewrite) = (arg(0), arg(1), arg(2));
            let lookup = lookup.to_text();
            if lookup.is_empty() {
                return text_map(text, |s| s.to_string());
            }
            let rewrite = rewrite.to_text();
            text_map(text, |s| s.replace(&*lookup, &rewrite))
        }
        Func::StrCatArray => match arg(0) {
            Value::Dynamic(d) => match &*d {
                serde_json::Value::Array(items) => {
                    let delim = arg(1).to_text();
                    let parts: Vec<String> = items
                        .iter()
                        .map(|v| match v {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Null => String::new(),
                            other => other.to_string(),
                        })
                        .collect();
                    Value::str(&parts.join(&*delim))
                }
                _ => Value::Null,
            },
            _ => Value::Null,
        },
    }
}

/// `v` converted as `tolong()`, `toreal()`, `tostring()`, … would.
pub fn convert(v: Value, ty: crate::value::Type) -> Value {
    use crate::value::Type as T;
    let func = match ty {
        T::Bool => Func::ToBool,
        T::Long => Func::ToLong,
        T::Real => Func::ToReal,
        T::String => Func::ToString,
        T::DateTime => Func::ToDateTime,
        T::TimeSpan => Func::ToTimeSpan,
        T::Dynamic => Func::ParseJson,
    };
    call(func, &[Expr::Literal(v)], &[], &Context { now: 0 })
}

fn to_long(v: Value) -> Value {
    match v {
        Value::Long(x) => Value::Long(x),
        Value::Real(x) if x.is_finite() => Value::Long(x.trunc() as i64),
        Value::Bool(b) => Value::Long(b as i64),
        Value::DateTime(t) | Value::TimeSpan(t) => Value::Long(t),
        Value::Str(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .map(Value::Long)
                .or_else(|_| {
                    s.parse::<f64>().map(|f| {
                        if f.is_finite() {
                            Value::Long(f.trunc() as i64)
                        } else {
                            Value::Null
                        }
                    })
                })
                .unwrap_or_default()
        }
        _ => Value::Null,
    }
}

fn text_map(v: Value, f: impl Fn(&str) -> String) -> Value {
    match v {
        Value::Null => Value::str(""),
        v => Value::Str(Arc::from(f(&v.to_text()))),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Str(s) => s.is_empty(),
        Value::Dynamic(d) => d.is_null() || d.as_str() == Some(""),
        _ => false,
    }
}
