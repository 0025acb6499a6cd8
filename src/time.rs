//! Datetimes and timespans as 100-nanosecond ticks: parsing the forms Azure Monitor exports
//! actually contain, formatting them the way KQL prints them, and binning.
//!
//! A datetime is an `i64` count of 100 ns ticks since 1970-01-01T00:00:00Z (negative before
//! it); a timespan is an `i64` count of ticks. Ticks rather than seconds-plus-nanos because
//! KQL's `datetime` and `timespan` have exactly 100 ns resolution: keeping the same unit means
//! `bin()`, comparisons and round trips through text never lose or invent precision.
//!
//! Everything here is pure and total: bad input yields `None`, never a panic, because it comes
//! straight off the wire.

pub const TICKS_PER_MICROSECOND: i64 = 10;
pub const TICKS_PER_MILLISECOND: i64 = 10_000;
pub const TICKS_PER_SECOND: i64 = 10_000_000;
pub const TICKS_PER_MINUTE: i64 = 60 * TICKS_PER_SECOND;
pub const TICKS_PER_HOUR: i64 = 60 * TICKS_PER_MINUTE;
pub const TICKS_PER_DAY: i64 = 24 * TICKS_PER_HOUR;

/// How a datetime string was written, so the caller can count repairs of non-standard forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeForm {
    /// ISO 8601 / RFC 3339 with a zone designator (`Z` or an offset).
    Rfc3339,
    /// ISO 8601 date and time without a zone; read as UTC.
    NoZone,
    /// `M/D/YYYY H:MM:SS [AM|PM] [+hh:mm]`, as some resource providers emit; read as UTC
    /// unless an offset is given.
    UsFormat,
    /// `YYYY-MM-DD` alone; midnight UTC.
    DateOnly,
}

/// Parses a datetime in any of the forms listed on [`TimeForm`] (surrounding whitespace is
/// ignored) into ticks since the epoch, reporting which form it was.
///
/// Fractions keep 100 ns precision: digits beyond the seventh are truncated, not rounded, so
/// that a value never moves into the next tick (and so the next `bin()`). Years must lie in
/// 0001–9999; anything else that does not match a form exactly, including trailing text,
/// yields `None`.
pub fn parse_datetime(s: &str) -> Option<(i64, TimeForm)> {
    let s = s.trim();
    let mut c = Cursor::new(s);
    // The two families are told apart by the first separator, so no backtracking is needed.
    let us = s.bytes().find(|b| !b.is_ascii_digit()) == Some(b'/');
    let out = if us {
        parse_us(&mut c)?
    } else {
        parse_iso(&mut c)?
    };
    c.at_end().then_some(out)
}

/// `YYYY-MM-DD[(T|t| )hh:mm[:ss[.f…]][Z|z|±hh[[:]mm]]]`
fn parse_iso(c: &mut Cursor) -> Option<(i64, TimeForm)> {
    let y = c.digits(4, 4)?;
    c.expect(b'-')?;
    let m = c.digits(2, 2)?;
    c.expect(b'-')?;
    let d = c.digits(2, 2)?;
    let days = checked_date(y, m, d)?;
    if c.at_end() {
        return Some((days * TICKS_PER_DAY, TimeForm::DateOnly));
    }
    if !(c.eat(b'T') || c.eat(b't') || c.eat(b' ')) {
        return None;
    }
    let h = c.digits(2, 2)?;
    c.expect(b':')?;
    let mi = c.digits(2, 2)?;
    let (mut sec, mut frac) = (0, 0);
    if c.eat(b':') {
        sec = c.digits(2, 2)?;
        if c.eat(b'.') {
            frac = c.fraction()?;
        }
    }
    let local = days * TICKS_PER_DAY + clock_ticks(h, mi, sec)? + frac;
    if c.at_end() {
        return Some((local, TimeForm::NoZone));
    }
    let offset = if c.eat(b'Z') || c.eat(b'z') {
        0
    } else {
        c.offset()?
    };
    Some((local - offset, TimeForm::Rfc3339))
}

/// `M/D/YYYY[ H:MM[:SS[.f…]][ AM| PM][ ±hh:mm]]`, month before day.
fn parse_us(c: &mut Cursor) -> Option<(i64, TimeForm)> {
    let m = c.digits(1, 2)?;
    c.expect(b'/')?;
    let d = c.digits(1, 2)?;
    c.expect(b'/')?;
    let y = c.digits(4, 4)?;
    let days = checked_date(y, m, d)?;
    if c.at_end() {
        return Some((days * TICKS_PER_DAY, TimeForm::UsFormat));
    }
    if c.spaces() == 0 {
        return None;
    }
    let mut h = c.digits(1, 2)?;
    c.expect(b':')?;
    let mi = c.digits(2, 2)?;
    let (mut sec, mut frac) = (0, 0);
    if c.eat(b':') {
        sec = c.digits(2, 2)?;
        if c.eat(b'.') {
            frac = c.fraction()?;
        }
    }
    let mut spaced = c.spaces() > 0;
    if let Some(pm) = c.meridiem() {
        // A 12-hour clock runs 12, 1, …, 11: 12 AM is midnight and 12 PM is noon.
        if !(1..=12).contains(&h) {
            return None;
        }
        h = h % 12 + if pm { 12 } else { 0 };
        spaced = c.spaces() > 0;
    }
    let mut offset = 0;
    if spaced && matches!(c.peek(), Some(b'+' | b'-')) {
        offset = c.offset()?;
    }
    let local = days * TICKS_PER_DAY + clock_ticks(h, mi, sec)? + frac;
    Some((local - offset, TimeForm::UsFormat))
}

/// Days since the epoch for a validated calendar date in years 0001–9999.
fn checked_date(y: u32, m: u32, d: u32) -> Option<i64> {
    let y = i64::from(y);
    if !(1..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

fn clock_ticks(h: u32, mi: u32, s: u32) -> Option<i64> {
    // No 24:00 and no leap second 60: .NET (and so KQL) rejects both, and accepting them would
    // make two spellings of one instant.
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    Some(
        i64::from(h) * TICKS_PER_HOUR
            + i64::from(mi) * TICKS_PER_MINUTE
            + i64::from(s) * TICKS_PER_SECOND,
    )
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A byte cursor over ASCII text; every reader returns `None` rather than panicking.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor {
            b: s.as_bytes(),
            i: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn at_end(&self) -> bool {
        self.i >= self.b.len()
    }

    fn eat(&mut self, want: u8) -> bool {
        let hit = self.peek() == Some(want);
        self.i += usize::from(hit);
        hit
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        self.eat(want).then_some(())
    }

    fn spaces(&mut self) -> usize {
        let start = self.i;
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
        self.i - start
    }

    /// Between `min` and `max` decimal digits (greedy), as a number.
    fn digits(&mut self, min: usize, max: usize) -> Option<u32> {
        let mut n = 0u32;
        let mut len = 0;
        while len < max {
            match self.peek() {
                Some(b @ b'0'..=b'9') => {
                    n = n * 10 + u32::from(b - b'0');
                    len += 1;
                    self.i += 1;
                }
                _ => break,
            }
        }
        (len >= min).then_some(n)
    }

    /// One or more fraction digits after the point, as ticks: the first seven count, the rest
    /// are read and dropped (truncation, see `parse_datetime`).
    fn fraction(&mut self) -> Option<i64> {
        let mut ticks = 0i64;
        let mut len = 0;
        while let Some(b @ b'0'..=b'9') = self.peek() {
            if len < 7 {
                ticks = ticks * 10 + i64::from(b - b'0');
            }
            len += 1;
            self.i += 1;
        }
        if len == 0 {
            return None;
        }
        for _ in len..7 {
            ticks *= 10;
        }
        Some(ticks)
    }

    /// `±hh`, `±hhmm` or `±hh:mm`, as signed ticks east of UTC.
    fn offset(&mut self) -> Option<i64> {
        let sign = match self.peek()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        self.i += 1;
        let h = self.digits(2, 2)?;
        let m = if self.eat(b':') || !self.at_end() {
            self.digits(2, 2)?
        } else {
            0
        };
        if h > 23 || m > 59 {
            return None;
        }
        Some(sign * (i64::from(h) * TICKS_PER_HOUR + i64::from(m) * TICKS_PER_MINUTE))
    }

    /// `AM` / `PM` in any case: `Some(true)` for PM. Consumes nothing if absent.
    fn meridiem(&mut self) -> Option<bool> {
        let pair = self.b.get(self.i..self.i + 2)?;
        let pm = match pair[0].to_ascii_uppercase() {
            b'A' => false,
            b'P' => true,
            _ => return None,
        };
        if !pair[1].eq_ignore_ascii_case(&b'M') {
            return None;
        }
        self.i += 2;
        Some(pm)
    }
}

/// The wall clock in ticks since the Unix epoch (0 for a clock set before 1970, which is
/// misconfigured; callers use it only for information).
pub fn now_ticks() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64 * TICKS_PER_SECOND + i64::from(d.subsec_nanos()) / 100,
        Err(_) => 0,
    }
}

/// `YYYY-MM-DDTHH:MM:SS.fffffffZ` in UTC, always seven fraction digits (KQL's rendering), so
/// that equal instants always print identically.
pub fn format_datetime(ticks: i64) -> String {
    let mut out = Vec::with_capacity(28);
    push_datetime(&mut out, ticks);
    // Only ASCII digits and separators were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Year, month, day, hour, minute, second and ticks within the second.
fn datetime_fields(ticks: i64) -> (i64, u32, u32, i64, i64, i64, i64) {
    let days = ticks.div_euclid(TICKS_PER_DAY);
    let mut rem = ticks.rem_euclid(TICKS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let h = rem / TICKS_PER_HOUR;
    rem %= TICKS_PER_HOUR;
    let mi = rem / TICKS_PER_MINUTE;
    rem %= TICKS_PER_MINUTE;
    (
        y,
        m,
        d,
        h,
        mi,
        rem / TICKS_PER_SECOND,
        rem % TICKS_PER_SECOND,
    )
}

/// [`format_datetime`] appended to `out`, without allocating: written once per routed
/// row and datetime column.
pub fn push_datetime(out: &mut Vec<u8>, ticks: i64) {
    let (y, m, d, h, mi, s, f) = datetime_fields(ticks);
    if !(0..=9999).contains(&y) {
        // Years beyond four digits (or before year 0) as `format!` pads them.
        let text = format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{f:07}Z");
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let mut b = *b"0000-00-00T00:00:00.0000000Z";
    let mut digits = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    digits(0, 4, y);
    digits(5, 2, m as i64);
    digits(8, 2, d as i64);
    digits(11, 2, h);
    digits(14, 2, mi);
    digits(17, 2, s);
    digits(20, 7, f);
    out.extend_from_slice(&b);
}

/// Parses KQL timespan text: a number and a unit (`5m`, `1.5h`, `100ms`, `2tick`, …) or a clock
/// form `[d.]hh:mm[:ss[.f…]]`, either with an optional leading `-`.
///
/// Units (lower case, as KQL writes them): `d day days`, `h hr hrs hour hours`,
/// `m min mins minute minutes`, `s sec secs second seconds`,
/// `ms milli millis millisecond milliseconds`, `microsecond microseconds`, `tick ticks`.
/// Fractional amounts are computed in integers and truncated to whole ticks. A bare number,
/// an unknown unit, out-of-range clock fields or an overflow yield `None`.
pub fn parse_timespan(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let ticks = if body.contains(':') {
        parse_clock_span(body)?
    } else {
        parse_unit_span(body)?
    };
    if neg {
        ticks.checked_neg()
    } else {
        Some(ticks)
    }
}

fn parse_clock_span(body: &str) -> Option<i64> {
    let mut parts = body.split(':');
    let (head, mi, rest) = (parts.next()?, parts.next()?, parts.next());
    if parts.next().is_some() {
        return None;
    }
    let (days, h) = match head.split_once('.') {
        Some((d, h)) => (all_digits(d, 1, 8)?, h),
        None => (0, head),
    };
    let h = all_digits(h, 1, 2)?;
    let mi = all_digits(mi, 2, 2)?;
    let (sec, frac) = match rest {
        None => (0, 0),
        Some(sec) => match sec.split_once('.') {
            None => (all_digits(sec, 2, 2)?, 0),
            Some((whole, f)) => {
                let mut c = Cursor::new(f);
                let frac = c.fraction()?;
                if !c.at_end() {
                    return None;
                }
                (all_digits(whole, 2, 2)?, frac)
            }
        },
    };
    let clock = clock_ticks(h as u32, mi as u32, sec as u32)?;
    days.checked_mul(TICKS_PER_DAY)?.checked_add(clock + frac)
}

/// A non-empty run of only ASCII digits, `min..=max` long.
fn all_digits(s: &str, min: usize, max: usize) -> Option<i64> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_unit_span(body: &str) -> Option<i64> {
    let split = body.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = body.split_at(split);
    let unit_ticks: i128 = match unit {
        "d" | "day" | "days" => TICKS_PER_DAY,
        "h" | "hr" | "hrs" | "hour" | "hours" => TICKS_PER_HOUR,
        "m" | "min" | "mins" | "minute" | "minutes" => TICKS_PER_MINUTE,
        "s" | "sec" | "secs" | "second" | "seconds" => TICKS_PER_SECOND,
        "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => TICKS_PER_MILLISECOND,
        "microsecond" | "microseconds" => TICKS_PER_MICROSECOND,
        "tick" | "ticks" => 1,
        _ => return None,
    }
    .into();
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) if !f.is_empty() => (w, f),
        Some(_) => return None,
        None => (number, ""),
    };
    // Decimal arithmetic in integers so `1.1h` is exactly 39_600_000_000 ticks, not a binary
    // approximation of it. Twenty integer digits already overflow i64 ticks; eighteen fraction
    // digits are finer than a tick for every unit.
    let whole = i128::from(u64::try_from(all_digits(whole, 1, 19)?).ok()?);
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac = &frac[..frac.len().min(18)];
    let mut ticks = whole * unit_ticks;
    if !frac.is_empty() {
        let scale = 10i128.pow(frac.len() as u32);
        ticks += frac.parse::<i128>().ok()? * unit_ticks / scale;
    }
    i64::try_from(ticks).ok()
}

/// KQL's timespan rendering `[-][d.]hh:mm:ss[.fffffff]`: the day part only when non-zero, the
/// fraction (always seven digits) only when non-zero — `1.00:00:00`, `00:05:00`,
/// `00:00:01.5000000`.
pub fn format_timespan(ticks: i64) -> String {
    let sign = if ticks < 0 { "-" } else { "" };
    // unsigned_abs so i64::MIN formats instead of overflowing.
    let t = ticks.unsigned_abs();
    let per = |unit: i64| unit as u64;
    let days = t / per(TICKS_PER_DAY);
    let h = t % per(TICKS_PER_DAY) / per(TICKS_PER_HOUR);
    let mi = t % per(TICKS_PER_HOUR) / per(TICKS_PER_MINUTE);
    let s = t % per(TICKS_PER_MINUTE) / per(TICKS_PER_SECOND);
    let f = t % per(TICKS_PER_SECOND);
    let days = if days > 0 {
        format!("{days}.")
    } else {
        String::new()
    };
    let frac = if f > 0 {
        format!(".{f:07}")
    } else {
        String::new()
    };
    format!("{sign}{days}{h:02}:{mi:02}:{s:02}{frac}")
}

/// Days since 1970-01-01 for a proleptic Gregorian date (year 0 = 1 BC).
///
/// Uses the era decomposition popularised by Howard Hinnant's `chrono`-compatible date
/// algorithms: counting years from March puts the leap day last, so each 400-year era has a
/// fixed 146 097 days and no table lookups are needed. Out-of-range months are folded modulo
/// 12 and the sums saturate, so nonsense input gives a nonsense number, not a panic; callers
/// validate first.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y.saturating_sub(1) } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let month_from_march = (i64::from(m % 12) + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(d) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era.saturating_mul(146_097)
        .saturating_add(day_of_era - 719_468)
}

/// The proleptic Gregorian date `(year, month, day)` of a day number since 1970-01-01; the
/// inverse of [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let d = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let m = (if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    }) as u32;
    let y = year_of_era + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Start of the bin of width `width` that contains `ticks`: the floor, so `-1` falls in the
/// bin starting at `-width`, as KQL's `bin()` does for pre-epoch times.
///
/// A non-positive `width` is meaningless; it returns `ticks` unchanged rather than dividing by
/// zero. The one unrepresentable case (a bin starting below `i64::MIN`) saturates.
pub fn bin(ticks: i64, width: i64) -> i64 {
    if width <= 0 {
        return ticks;
    }
    ticks
        .checked_sub(ticks.rem_euclid(width))
        .unwrap_or(i64::MIN)
}

/// `datetime_diff(period, a, b)`: how many period boundaries lie between `b` and `a`, as
/// Kusto counts them (calendar years, quarters and months; weeks from Sunday; the rest by
/// the clock). `None` for an unknown period.
pub fn periods_between(period: &str, a: i64, b: i64) -> Option<i64> {
    let day = |t: i64| t.div_euclid(TICKS_PER_DAY);
    let civil = |t: i64| civil_from_days(day(t));
    let units = |unit: i64| a.div_euclid(unit) - b.div_euclid(unit);
    Some(match period {
        "year" => civil(a).0 - civil(b).0,
        "quarter" | "month" => {
            let per = if period == "quarter" { 3 } else { 1 };
            let index = |t: i64| {
                let (y, m, _) = civil(t);
                y * (12 / per) + i64::from(m - 1) / per
            };
            index(a) - index(b)
        }
        // 1970-01-01 was a Thursday: day 0 is 4 days into its Sunday-based week.
        "week" => (day(a) + 4).div_euclid(7) - (day(b) + 4).div_euclid(7),
        "day" => units(TICKS_PER_DAY),
        "hour" => units(TICKS_PER_HOUR),
        "minute" => units(TICKS_PER_MINUTE),
        "second" => units(TICKS_PER_SECOND),
        "millisecond" => units(TICKS_PER_MILLISECOND),
        "microsecond" => units(TICKS_PER_MICROSECOND),
        "nanosecond" => a.saturating_sub(b).saturating_mul(100),
        _ => return None,
    })
}

/// The calendar units of `startof…`/`endof…` and `datetime_add`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calendar {
    Year,
    Quarter,
    Month,
    /// Weeks start on Sunday, as Kusto's do.
    Week,
    Day,
}

/// The start of the `unit` containing `t`, moved by `offset` units (`startofmonth(t, -1)`).
pub fn start_of(unit: Calendar, t: i64, offset: i64) -> i64 {
    let day = t.div_euclid(TICKS_PER_DAY);
    let days = match unit {
        Calendar::Day => day.saturating_add(offset),
        // 1970-01-01 was a Thursday: 4 days after its week's Sunday.
        Calendar::Week => (day + 4).div_euclid(7).saturating_add(offset) * 7 - 4,
        Calendar::Month | Calendar::Quarter | Calendar::Year => {
            let (y, m, _) = civil_from_days(day);
            let per = match unit {
                Calendar::Year => 12,
                Calendar::Quarter => 3,
                _ => 1,
            };
            let index = (y * 12 + i64::from(m - 1)) / per * per + offset.saturating_mul(per);
            days_from_civil(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1)
        }
    };
    days.saturating_mul(TICKS_PER_DAY)
}

/// The last tick of the `unit` containing `t`, moved by `offset` units.
pub fn end_of(unit: Calendar, t: i64, offset: i64) -> i64 {
    start_of(unit, t, offset.saturating_add(1)).saturating_sub(1)
}

/// `datetime_add`: `t` moved by `amount` of `part`; a month (quarter, year) later keeps the
/// day of the month, or the month's last day when it has fewer (Jan 31 + 1 month: Feb 28 or 29).
pub fn add_periods(part: &str, amount: i64, t: i64) -> Option<i64> {
    let fixed = |unit: i64| Some(t.saturating_add(amount.saturating_mul(unit)));
    match part {
        "year" | "quarter" | "month" => {
            let months = amount.saturating_mul(match part {
                "year" => 12,
                "quarter" => 3,
                _ => 1,
            });
            let day = t.div_euclid(TICKS_PER_DAY);
            let within = t.rem_euclid(TICKS_PER_DAY);
            let (y, m, d) = civil_from_days(day);
            let index = (y * 12 + i64::from(m - 1)).checked_add(months)?;
            let (y, m) = (index.div_euclid(12), index.rem_euclid(12) as u32 + 1);
            let d = d.min(days_in_month(y, m));
            days_from_civil(y, m, d)
                .checked_mul(TICKS_PER_DAY)?
                .checked_add(within)
        }
        "week" => fixed(7 * TICKS_PER_DAY),
        "day" => fixed(TICKS_PER_DAY),
        "hour" => fixed(TICKS_PER_HOUR),
        "minute" => fixed(TICKS_PER_MINUTE),
        "second" => fixed(TICKS_PER_SECOND),
        "millisecond" => fixed(TICKS_PER_MILLISECOND),
        "microsecond" => fixed(TICKS_PER_MICROSECOND),
        "nanosecond" => Some(t.saturating_add(amount / 100)),
        _ => None,
    }
}

/// `datetime_part`: one field of `t` (`week_of_year` is the ISO 8601 week).
pub fn date_part(part: &str, t: i64) -> Option<i64> {
    let day = t.div_euclid(TICKS_PER_DAY);
    let within = t.rem_euclid(TICKS_PER_DAY);
    let (y, m, d) = civil_from_days(day);
    Some(match part {
        "year" => y,
        "quarter" => i64::from(m - 1) / 3 + 1,
        "month" => i64::from(m),
        "week_of_year" | "weekofyear" => iso_week(day),
        "day" => i64::from(d),
        "dayofyear" => day - days_from_civil(y, 1, 1) + 1,
        "hour" => within / TICKS_PER_HOUR,
        "minute" => within / TICKS_PER_MINUTE % 60,
        "second" => within / TICKS_PER_SECOND % 60,
        "millisecond" => within / TICKS_PER_MILLISECOND % 1000,
        "microsecond" => within / TICKS_PER_MICROSECOND % 1_000_000,
        "nanosecond" => within % TICKS_PER_SECOND * 100,
        _ => return None,
    })
}

/// The ISO 8601 week number of a day since the epoch: weeks start on Monday, and week 1 is
/// the one with the year's first Thursday.
fn iso_week(day: i64) -> i64 {
    // Monday = 0; 1970-01-01 was a Thursday (3).
    let weekday = (day + 3).rem_euclid(7);
    let thursday = day - weekday + 3;
    let (y, _, _) = civil_from_days(thursday);
    (thursday - days_from_civil(y, 1, 1)) / 7 + 1
}

/// `format_datetime(t, format)`: .NET-style specifiers (`yyyy yy MM M dd d HH H hh h mm m ss s
/// f…fffffff F…FFFFFFF tt`); any other character is copied. `None` for a format longer than
/// 100 characters.
pub fn format_with(t: i64, format: &str) -> Option<String> {
    if format.len() > 100 {
        return None;
    }
    let day = t.div_euclid(TICKS_PER_DAY);
    let within = t.rem_euclid(TICKS_PER_DAY);
    let (y, mo, d) = civil_from_days(day);
    let (h, mi, s) = (
        within / TICKS_PER_HOUR,
        within / TICKS_PER_MINUTE % 60,
        within / TICKS_PER_SECOND % 60,
    );
    let fraction = within % TICKS_PER_SECOND;
    let chars: Vec<char> = format.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let pad = |v: i64, width: usize| format!("{v:0width$}");
        let text = match c {
            'y' if run >= 4 => pad(y, run),
            'y' if run == 1 => (y % 100).to_string(),
            'y' => pad(y % 100, 2),
            'M' => pad(i64::from(mo), run.min(2)),
            'd' => pad(i64::from(d), run.min(2)),
            'H' => pad(h, run.min(2)),
            'h' => pad((h + 11) % 12 + 1, run.min(2)),
            'm' => pad(mi, run.min(2)),
            's' => pad(s, run.min(2)),
            'f' | 'F' => {
                let digits = run.min(7);
                let text = pad(fraction / 10i64.pow(7 - digits as u32), digits);
                if c == 'F' {
                    text.trim_end_matches('0').to_string()
                } else {
                    text
                }
            }
            't' => (if h < 12 { "AM" } else { "PM" })[..run.min(2)].to_string(),
            other => std::iter::repeat_n(other, run).collect(),
        };
        out += &text;
        i += run;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Days since the epoch by walking years and months: slow, obvious, and independent of the
    /// era arithmetic it checks.
    fn naive_days(y: i64, m: u32, d: u32) -> i64 {
        let mut days = 0i64;
        if y >= 1970 {
            for yy in 1970..y {
                days += if is_leap(yy) { 366 } else { 365 };
            }
        } else {
            for yy in y..1970 {
                days -= if is_leap(yy) { 366 } else { 365 };
            }
        }
        for mm in 1..m {
            days += i64::from(days_in_month(y, mm));
        }
        days + i64::from(d) - 1
    }

    fn at(y: i64, m: u32, d: u32, h: i64, mi: i64, s: i64, frac: i64) -> i64 {
        naive_days(y, m, d) * TICKS_PER_DAY
            + h * TICKS_PER_HOUR
            + mi * TICKS_PER_MINUTE
            + s * TICKS_PER_SECOND
            + frac
    }

    fn dt(s: &str) -> (i64, TimeForm) {
        parse_datetime(s).unwrap_or_else(|| panic!("should parse: {s:?}"))
    }

    #[test]
    fn anchors_agree_with_date_command() {
        // Values from `date -u -d ... +%s`.
        assert_eq!(
            dt("2019-07-15T18:00:22Z").0,
            1_563_213_622 * TICKS_PER_SECOND
        );
        assert_eq!(dt("1900-03-01").0, -2_203_891_200 * TICKS_PER_SECOND);
        assert_eq!(
            dt("9999-12-31T23:59:59Z").0,
            253_402_300_799 * TICKS_PER_SECOND
        );
        assert_eq!(dt("0001-01-01").0, -62_135_596_800 * TICKS_PER_SECOND);
        assert_eq!(dt("1970-01-01T00:00:00Z").0, 0);
    }

    #[test]
    fn civil_conversions_match_naive_counting() {
        for y in [
            1, 4, 100, 400, 1600, 1899, 1900, 1969, 1970, 1971, 2000, 2024, 2100, 9999,
        ] {
            for m in 1..=12 {
                for d in [1, days_in_month(y, m)] {
                    let days = days_from_civil(y, m, d);
                    assert_eq!(days, naive_days(y, m, d), "{y}-{m}-{d}");
                    assert_eq!(civil_from_days(days), (y, m, d));
                }
            }
        }
        // Every day from 0001-01-01 to 9999-12-31 round-trips and days are consecutive.
        let first = days_from_civil(1, 1, 1);
        let last = days_from_civil(9999, 12, 31);
        let mut prev = civil_from_days(first);
        assert_eq!(prev, (1, 1, 1));
        for day in first + 1..=last {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
            let next_expected = if prev.2 < days_in_month(prev.0, prev.1) {
                (prev.0, prev.1, prev.2 + 1)
            } else if prev.1 < 12 {
                (prev.0, prev.1 + 1, 1)
            } else {
                (prev.0 + 1, 1, 1)
            };
            assert_eq!((y, m, d), next_expected);
            prev = (y, m, d);
        }
        assert_eq!(prev, (9999, 12, 31));
    }

    #[test]
    fn rfc3339_forms() {
        let base = at(2019, 7, 15, 18, 0, 22, 0);
        assert_eq!(
            dt("2019-07-15T18:00:22.6235064Z"),
            (base + 6_235_064, TimeForm::Rfc3339)
        );
        assert_eq!(dt("2019-07-15T18:00:22Z"), (base, TimeForm::Rfc3339));
        assert_eq!(dt("2019-07-15t18:00:22z"), (base, TimeForm::Rfc3339));
        assert_eq!(dt("2019-07-15 18:00:22Z"), (base, TimeForm::Rfc3339));
        assert_eq!(
            dt("  2019-07-15T18:00:22.5Z \n"),
            (base + 5_000_000, TimeForm::Rfc3339)
        );
        assert_eq!(dt("2019-07-15T18:00:22.123Z").0, base + 1_230_000);
        assert_eq!(dt("2019-07-15T18:00:22.0000001Z").0, base + 1);
        assert_eq!(
            dt("2024-01-01T10:00Z"),
            (at(2024, 1, 1, 10, 0, 0, 0), TimeForm::Rfc3339)
        );
        assert_eq!(
            dt("2007-01-09T09:41:00"),
            (at(2007, 1, 9, 9, 41, 0, 0), TimeForm::NoZone)
        );
        assert_eq!(
            dt("2007-01-09 09:41:00.25").0,
            at(2007, 1, 9, 9, 41, 0, 2_500_000)
        );
        assert_eq!(dt("2007-01-09T09:41").1, TimeForm::NoZone);
    }

    #[test]
    fn fractions_beyond_seven_digits_truncate() {
        let base = at(2021, 3, 4, 5, 6, 0, 0);
        assert_eq!(dt("2021-03-04T05:06:00.535404056Z").0, base + 5_354_040);
        assert_eq!(dt("2021-03-04T05:06:00.99999999999Z").0, base + 9_999_999);
        assert_eq!(
            format_datetime(dt("2021-03-04T05:06:00.535404056Z").0),
            "2021-03-04T05:06:00.5354040Z"
        );
    }

    #[test]
    fn offsets_move_to_utc() {
        let utc = at(2024, 6, 1, 10, 0, 0, 0);
        assert_eq!(dt("2024-06-01T10:00:00+00:00"), (utc, TimeForm::Rfc3339));
        assert_eq!(dt("2024-06-01T12:00:00+02:00").0, utc);
        assert_eq!(dt("2024-06-01T12:00:00+0200").0, utc);
        assert_eq!(dt("2024-06-01T12:00:00+02").0, utc);
        assert_eq!(dt("2024-06-01T04:30:00-05:30").0, utc);
        assert_eq!(dt("2024-06-01T12:00+02:00").0, utc);
        // An offset can carry the instant across midnight and the year boundary.
        assert_eq!(
            dt("2024-01-01T01:00:00+02:00").0,
            at(2023, 12, 31, 23, 0, 0, 0)
        );
    }

    #[test]
    fn us_forms() {
        let us = |s: &str| {
            let (t, form) = dt(s);
            assert_eq!(form, TimeForm::UsFormat, "{s}");
            t
        };
        assert_eq!(us("10/10/2023 13:26:34"), at(2023, 10, 10, 13, 26, 34, 0));
        assert_eq!(us("02/20/2026 14:54:26"), at(2026, 2, 20, 14, 54, 26, 0));
        assert_eq!(us("01/09/2007 09:41:00"), at(2007, 1, 9, 9, 41, 0, 0));
        assert_eq!(us("1/9/2007 9:41:00 AM"), at(2007, 1, 9, 9, 41, 0, 0));
        assert_eq!(
            us("1/9/2007 10:41:00 AM +01:00"),
            at(2007, 1, 9, 9, 41, 0, 0)
        );
        assert_eq!(
            us("11/3/2020 9:06:42 AM +00:00"),
            at(2020, 11, 3, 9, 6, 42, 0)
        );
        assert_eq!(us("7/28/2016 7:14:57 PM"), at(2016, 7, 28, 19, 14, 57, 0));
        assert_eq!(us("7/28/2016 7:14:57 pm"), at(2016, 7, 28, 19, 14, 57, 0));
        assert_eq!(
            us("7/28/2016 7:14:57.125 PM"),
            at(2016, 7, 28, 19, 14, 57, 1_250_000)
        );
        assert_eq!(
            us("7/28/2016 19:14:57 -05:00"),
            at(2016, 7, 29, 0, 14, 57, 0)
        );
        assert_eq!(us("7/28/2016 7:14 PM"), at(2016, 7, 28, 19, 14, 0, 0));
        assert_eq!(us("7/28/2016"), at(2016, 7, 28, 0, 0, 0, 0));
    }

    #[test]
    fn twelve_hour_edges() {
        let t = |s: &str| dt(s).0;
        assert_eq!(t("1/1/2020 12:00:00 AM"), at(2020, 1, 1, 0, 0, 0, 0));
        assert_eq!(t("1/1/2020 12:59:59 AM"), at(2020, 1, 1, 0, 59, 59, 0));
        assert_eq!(t("1/1/2020 12:00:00 PM"), at(2020, 1, 1, 12, 0, 0, 0));
        assert_eq!(t("1/1/2020 12:30:00 PM"), at(2020, 1, 1, 12, 30, 0, 0));
        assert_eq!(t("1/1/2020 1:00:00 AM"), at(2020, 1, 1, 1, 0, 0, 0));
        assert_eq!(t("1/1/2020 11:59:59 PM"), at(2020, 1, 1, 23, 59, 59, 0));
        assert_eq!(parse_datetime("1/1/2020 13:00:00 PM"), None);
        assert_eq!(parse_datetime("1/1/2020 0:30:00 AM"), None);
    }

    #[test]
    fn leap_days_and_pre_epoch() {
        assert_eq!(
            dt("2024-02-29"),
            (at(2024, 2, 29, 0, 0, 0, 0), TimeForm::DateOnly)
        );
        assert_eq!(dt("2000-02-29T00:00:00Z").0, at(2000, 2, 29, 0, 0, 0, 0));
        assert_eq!(parse_datetime("2023-02-29"), None);
        assert_eq!(parse_datetime("1900-02-29"), None);
        assert_eq!(parse_datetime("2/29/2023 10:00:00"), None);
        assert_eq!(dt("1969-12-31T23:59:59.9999999Z").0, -1);
        assert_eq!(dt("1960-02-29T12:00:00Z").0, at(1960, 2, 29, 12, 0, 0, 0));
        assert!(dt("1960-02-29T12:00:00Z").0 < 0);
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "   ",
            "garbage",
            "2024-13-01",
            "2024-00-10",
            "2024-01-32",
            "2024-02-30",
            "2024-01-01T24:00:00Z",
            "2024-01-01T23:60:00Z",
            "2024-01-01T23:59:60Z",
            "2024-01-01T10:00:00Zjunk",
            "2024-01-01T10:00:00Z Z",
            "2024-01-01T10:00:00.Z",
            "2024-01-01T10:00:00+2:00",
            "2024-01-01T10:00:00+24:00",
            "2024-01-01T10",
            "2024-01-01X10:00:00",
            "0000-01-01",
            "10000-01-01",
            "24-01-01",
            "2024-1-01",
            "13/01/2024 10:00:00",
            "01/32/2024 10:00:00",
            "01/01/2024 24:00:00",
            "01/01/2024 10:00:00 XM",
            "01/01/2024 10:00:00 junk",
            "01/01/2024T10:00:00",
            "01/01/24 10:00:00",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad:?} should be rejected");
        }
    }

    #[test]
    fn datetime_round_trips() {
        for s in [
            "2019-07-15T18:00:22.6235064Z",
            "1970-01-01T00:00:00.0000000Z",
            "1969-12-31T23:59:59.9999999Z",
            "0001-01-01T00:00:00.0000000Z",
            "9999-12-31T23:59:59.9999999Z",
            "2024-02-29T12:34:56.0000001Z",
            "1600-03-01T00:00:00.0000000Z",
        ] {
            assert_eq!(format_datetime(dt(s).0), s);
        }
        for t in [
            0,
            1,
            -1,
            15_632_136_226_235_064,
            -621_355_968_000_000_000,
            i64::MAX,
            i64::MIN,
        ] {
            let text = format_datetime(t);
            if let Some((back, _)) = parse_datetime(&text) {
                assert_eq!(back, t, "{text}");
            }
        }
    }

    #[test]
    fn bin_floors_negatives() {
        let h = TICKS_PER_HOUR;
        assert_eq!(bin(0, h), 0);
        assert_eq!(bin(h - 1, h), 0);
        assert_eq!(bin(h, h), h);
        assert_eq!(bin(-1, h), -h);
        assert_eq!(bin(-h, h), -h);
        assert_eq!(bin(-h - 1, h), -2 * h);
        let t = dt("1969-12-31T23:59:30Z").0;
        assert_eq!(bin(t, TICKS_PER_MINUTE), dt("1969-12-31T23:59:00Z").0);
        assert_eq!(
            bin(dt("2024-05-05T13:47:12.5Z").0, 5 * TICKS_PER_MINUTE),
            dt("2024-05-05T13:45:00Z").0
        );
        assert_eq!(bin(123, 0), 123);
        assert_eq!(bin(123, -5), 123);
        assert_eq!(bin(i64::MIN, 7), i64::MIN);
        assert_eq!(bin(i64::MAX, 1), i64::MAX);
    }

    #[test]
    fn datetimes_are_written_digit_by_digit_as_format_would_pad_them() {
        let by_format = |ticks: i64| {
            let (y, m, d, h, mi, s, f) = datetime_fields(ticks);
            format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{f:07}Z")
        };
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut samples = vec![
            0,
            -1,
            1,
            i64::MIN / 2,
            i64::MAX / 2,
            253_402_300_799 * TICKS_PER_SECOND,
        ];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly within years 0..9999, some far outside.
            samples.push((x as i64) % (400 * 365 * TICKS_PER_DAY * 30));
        }
        for t in samples {
            assert_eq!(format_datetime(t), by_format(t), "{t}");
        }
        assert_eq!(format_datetime(0), "1970-01-01T00:00:00.0000000Z");
    }

    #[test]
    fn timespan_formatting() {
        assert_eq!(format_timespan(0), "00:00:00");
        assert_eq!(format_timespan(1), "00:00:00.0000001");
        assert_eq!(format_timespan(5 * TICKS_PER_MINUTE), "00:05:00");
        assert_eq!(format_timespan(TICKS_PER_DAY), "1.00:00:00");
        assert_eq!(
            format_timespan(15 * TICKS_PER_SECOND / 10),
            "00:00:01.5000000"
        );
        let mixed =
            TICKS_PER_DAY + 2 * TICKS_PER_HOUR + 3 * TICKS_PER_MINUTE + 45 * TICKS_PER_SECOND / 10;
        assert_eq!(format_timespan(mixed), "1.02:03:04.5000000");
        assert_eq!(format_timespan(-5 * TICKS_PER_MINUTE), "-00:05:00");
        assert_eq!(format_timespan(-mixed), "-1.02:03:04.5000000");
        assert_eq!(format_timespan(i64::MIN), "-10675199.02:48:05.4775808");
        assert_eq!(format_timespan(i64::MAX), "10675199.02:48:05.4775807");
    }

    #[test]
    fn timespan_units() {
        let cases: &[(&str, i64)] = &[
            ("5m", 5 * TICKS_PER_MINUTE),
            ("1d", TICKS_PER_DAY),
            ("1.5h", 3 * TICKS_PER_HOUR / 2),
            ("100ms", 100 * TICKS_PER_MILLISECOND),
            ("10s", 10 * TICKS_PER_SECOND),
            ("2tick", 2),
            ("1ticks", 1),
            ("30sec", 30 * TICKS_PER_SECOND),
            ("1hr", TICKS_PER_HOUR),
            ("3days", 3 * TICKS_PER_DAY),
            ("5microseconds", 50),
            ("1microsecond", 10),
            ("2day", 2 * TICKS_PER_DAY),
            ("2h", 2 * TICKS_PER_HOUR),
            ("2hrs", 2 * TICKS_PER_HOUR),
            ("2hour", 2 * TICKS_PER_HOUR),
            ("2hours", 2 * TICKS_PER_HOUR),
            ("2min", 2 * TICKS_PER_MINUTE),
            ("2mins", 2 * TICKS_PER_MINUTE),
            ("2minute", 2 * TICKS_PER_MINUTE),
            ("2minutes", 2 * TICKS_PER_MINUTE),
            ("2s", 2 * TICKS_PER_SECOND),
            ("2secs", 2 * TICKS_PER_SECOND),
            ("2second", 2 * TICKS_PER_SECOND),
            ("2seconds", 2 * TICKS_PER_SECOND),
            ("2milli", 2 * TICKS_PER_MILLISECOND),
            ("2millis", 2 * TICKS_PER_MILLISECOND),
            ("2millisecond", 2 * TICKS_PER_MILLISECOND),
            ("2milliseconds", 2 * TICKS_PER_MILLISECOND),
            ("1.1h", 39_600_000_000),
            ("0.5tick", 0),
            ("0.25ms", 2_500),
            ("-5m", -5 * TICKS_PER_MINUTE),
            (" 7d ", 7 * TICKS_PER_DAY),
        ];
        for &(text, want) in cases {
            assert_eq!(parse_timespan(text), Some(want), "{text}");
        }
    }

    #[test]
    fn timespan_clock_forms() {
        let cases: &[(&str, i64)] = &[
            ("00:05", 5 * TICKS_PER_MINUTE),
            ("01:30", 90 * TICKS_PER_MINUTE),
            ("00:05:00", 5 * TICKS_PER_MINUTE),
            (
                "1:02:03",
                TICKS_PER_HOUR + 2 * TICKS_PER_MINUTE + 3 * TICKS_PER_SECOND,
            ),
            ("00:00:01.5", 15 * TICKS_PER_SECOND / 10),
            ("00:00:00.0000001", 1),
            ("00:00:00.123456789", 1_234_567),
            ("1.00:00:00", TICKS_PER_DAY),
            (
                "1.02:03:04.5000000",
                TICKS_PER_DAY
                    + 2 * TICKS_PER_HOUR
                    + 3 * TICKS_PER_MINUTE
                    + 45 * TICKS_PER_SECOND / 10,
            ),
            ("-00:05:00", -5 * TICKS_PER_MINUTE),
            ("-1.00:00:00", -TICKS_PER_DAY),
        ];
        for &(text, want) in cases {
            assert_eq!(parse_timespan(text), Some(want), "{text}");
        }
        // Formatting and parsing agree.
        for t in [
            0,
            1,
            -1,
            5 * TICKS_PER_MINUTE,
            3 * TICKS_PER_DAY + 17,
            -TICKS_PER_DAY - TICKS_PER_SECOND,
        ] {
            assert_eq!(parse_timespan(&format_timespan(t)), Some(t));
        }
    }

    #[test]
    fn timespan_rejects() {
        for bad in [
            "",
            "-",
            "5",
            "m",
            "5x",
            "5 m",
            "5M",
            "1.h",
            ".5h",
            "1..5h",
            "5m5",
            "--5m",
            "1e3s",
            "24:00:00",
            "00:60:00",
            "00:00:60",
            "1:2:3",
            "00:00:00.",
            "a.00:00:00",
            "00:00:00:00",
            "1.2.00:00:00",
            "99999999999999999999d",
            "9999999999999d",
        ] {
            assert_eq!(parse_timespan(bad), None, "{bad:?} should be rejected");
        }
    }

    #[test]
    fn calendar_periods_start_end_add_and_parts() {
        let at = |s: &str| parse_datetime(s).unwrap().0;
        // A Thursday of a leap year (day 60; ISO week 9), with a fraction of a second.
        let t = at("2024-02-29T13:45:07.1234560Z");
        let cases = [
            (Calendar::Day, 0, "2024-02-29T00:00:00Z"),
            (Calendar::Week, 0, "2024-02-25T00:00:00Z"),
            (Calendar::Week, 1, "2024-03-03T00:00:00Z"),
            (Calendar::Month, 0, "2024-02-01T00:00:00Z"),
            (Calendar::Month, -1, "2024-01-01T00:00:00Z"),
            (Calendar::Month, 11, "2025-01-01T00:00:00Z"),
            (Calendar::Quarter, 0, "2024-01-01T00:00:00Z"),
            (Calendar::Year, 0, "2024-01-01T00:00:00Z"),
        ];
        for (unit, offset, want) in cases {
            assert_eq!(start_of(unit, t, offset), at(want), "{unit:?} {offset}");
        }
        assert_eq!(
            end_of(Calendar::Day, t, 0),
            at("2024-02-29T23:59:59.9999999Z")
        );
        assert_eq!(
            end_of(Calendar::Month, t, 0),
            at("2024-02-29T23:59:59.9999999Z")
        );
        assert_eq!(
            end_of(Calendar::Year, t, 0),
            at("2024-12-31T23:59:59.9999999Z")
        );

        let adds = [
            ("month", 1, "2024-01-31T10:00:00Z", "2024-02-29T10:00:00Z"),
            ("year", 1, "2024-02-29T00:00:00Z", "2025-02-28T00:00:00Z"),
            ("month", -1, "2024-03-31T00:00:00Z", "2024-02-29T00:00:00Z"),
            ("quarter", 1, "2024-11-30T00:00:00Z", "2025-02-28T00:00:00Z"),
            (
                "day",
                2,
                "2024-02-29T13:45:07.1234560Z",
                "2024-03-02T13:45:07.1234560Z",
            ),
        ];
        for (part, n, from, want) in adds {
            assert_eq!(
                add_periods(part, n, at(from)),
                Some(at(want)),
                "{part} {n} {from}"
            );
        }
        assert_eq!(add_periods("fortnight", 1, t), None);

        let parts = [
            ("year", 2024),
            ("quarter", 1),
            ("month", 2),
            ("week_of_year", 9),
            ("day", 29),
            ("dayofyear", 60),
            ("hour", 13),
            ("minute", 45),
            ("second", 7),
            ("millisecond", 123),
            ("microsecond", 123_456),
            ("nanosecond", 123_456_000),
        ];
        for (part, want) in parts {
            assert_eq!(date_part(part, t), Some(want), "{part}");
        }
        // ISO weeks at a year's edges (checked with Python's isocalendar()).
        for (day, week) in [
            ("2021-01-03", 53),
            ("2020-12-31", 53),
            ("2021-01-04", 1),
            ("2026-12-08", 50),
        ] {
            let t = at(&format!("{day}T12:00:00Z"));
            assert_eq!(date_part("week_of_year", t), Some(week), "{day}");
        }

        assert_eq!(
            format_with(t, "yyyy-MM-dd HH:mm:ss.fff").unwrap(),
            "2024-02-29 13:45:07.123"
        );
        assert_eq!(format_with(t, "M/d/yy h:mm tt").unwrap(), "2/29/24 1:45 PM");
        assert_eq!(format_with(t, "[yyyy] FFFFFFF").unwrap(), "[2024] 123456");
        assert_eq!(format_with(t, &"y".repeat(101)), None);
    }
}
