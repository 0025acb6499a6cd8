//! The event-time clock's guard: which record times may move the clock.
//!
//! The clock is the largest record time seen, and every query's `now()`, so one record
//! stamped ahead — a clock-skewed resource, a corrupt time, or the enqueued-time fallback
//! while old exports are replayed through a hub — would move every window and empty them
//! until real time caught up. Two bounds, both `limits.max_future`, keep that from happening:
//!
//! - **Ahead of its arrival.** A record more than `max_future` after its event's enqueued
//!   time (the wall clock for a source without one, such as files) claims to have happened
//!   after it reached the hub: it is refused — kept out of every window, never the clock —
//!   and counted (`ahead_of_arrival`). Routes still forward it as it is. This is the bound
//!   brokers and time-series stores put on producers (Kafka's
//!   `message.timestamp.after.max.ms`, 1 h by default since Kafka 4.0; Mimir's and Loki's
//!   creation grace period). Flink and Kafka Streams have no such bound of their own: their
//!   event time is the largest timestamp seen, and a timestamp assigner must check it. The enqueued time rather than the wall clock, so that a record read again
//!   after a restart is judged as it was the first time.
//! - **Ahead of the stream.** When old data is replayed the wall clock is far ahead of it,
//!   so the first bound cannot catch a record that is ahead of the data but not of today. A
//!   record more than `max_future` ahead of the clock as it stands is therefore *held*: it
//!   is absorbed in its place in time (tumbling bins wait for the watermark, sliding windows
//!   and retained rows show it once the clock gets there) but does not move the clock, and
//!   it is counted (`ahead_of_clock`). Its partition remembers it as a *pending jump*. The
//!   partition's next record that is also more than `max_future` ahead, at another time,
//!   confirms that the stream moved on (a replay passed a gap, a quiet hub woke up): the
//!   clock moves to the earlier of the two. A record that is not ahead cancels the jump (the
//!   stream is still where the clock is), and a copy of the same time confirms nothing (a
//!   body delivered twice). So one record, however often repeated, cannot drag the clock;
//!   two that agree can, and a sparse replay of one record per event, further apart than
//!   `max_future`, runs one record behind.
//!
//!   The bound is against the clock of every partition (the clock as it stands), so records
//!   of a partition that lags the others are never held; the jump waits per partition, so
//!   that it is stored with the partition's snapshot.
//!
//! A record whose time is its event's enqueued time took the parser's fallback (it had no
//! time of its own): that time says when the event arrived, not how far the stream is, so it
//! neither starts nor confirms nor cancels a jump (it still starts a clock that has no time
//! yet, and moves one it is within `max_future` of, as live it always is).
//!
//! The engine's clock is the largest of its partitions' clocks (each the largest time a record
//! of the partition moved the clock to), and the pending jump is part of the partition's
//! snapshot (format version 3): a restored partition judges the events after it as an
//! uninterrupted run would.

use crate::time::TICKS_PER_HOUR;

/// `limits.max_future` when not set.
pub const DEFAULT_MAX_FUTURE: i64 = TICKS_PER_HOUR;

/// Why a record did not move the clock when it arrived: the `reason` label of
/// `hubwatch_event_time_future_records_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ahead {
    /// More than `max_future` after its event arrived: kept out of the windows.
    Arrival,
    /// More than `max_future` ahead of the clock: held until the clock gets there.
    Clock,
}

impl Ahead {
    pub const ALL: [Ahead; 2] = [Ahead::Arrival, Ahead::Clock];

    pub fn as_str(self) -> &'static str {
        match self {
            Ahead::Arrival => "ahead_of_arrival",
            Ahead::Clock => "ahead_of_clock",
        }
    }
}

/// What one record's time did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// At or behind the clock (which it may have moved): an ordinary record.
    Now,
    /// Ahead of the clock, which it did not move: absorbed, shown once the clock gets there.
    Held,
    /// Ahead of its arrival: kept out of the windows.
    Refused,
}

/// Counts of records that did not move the clock, by [`Ahead`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AheadCounts(pub [u64; 2]);

impl AheadCounts {
    pub fn get(&self, why: Ahead) -> u64 {
        self.0[why as usize]
    }

    fn bump(&mut self, why: Ahead) {
        self.0[why as usize] += 1;
    }

    pub fn add(&mut self, other: &AheadCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

/// The guard as one event sees it: the engine's clock, its partition's share of it and
/// pending jump, and when the event arrived.
pub(super) struct Guard<'a> {
    /// The engine's clock (every partition's).
    pub clock: &'a mut Option<i64>,
    /// The largest time this partition moved the clock to (its snapshot's clock).
    pub part_clock: &'a mut Option<i64>,
    /// The partition's pending jump: the time of a held record no later record has
    /// confirmed or cancelled yet.
    pub pending: &'a mut Option<i64>,
    /// When the event arrived: its enqueued time, or the wall clock.
    arrival: i64,
    /// The event's enqueued time (a record time equal to it is the parser's fallback).
    enqueued: Option<i64>,
    max_future: i64,
    pub counts: &'a mut AheadCounts,
}

impl<'a> Guard<'a> {
    pub fn new(
        clock: &'a mut Option<i64>,
        part_clock: &'a mut Option<i64>,
        pending: &'a mut Option<i64>,
        enqueued: Option<i64>,
        max_future: i64,
        counts: &'a mut AheadCounts,
    ) -> Guard<'a> {
        Guard {
            clock,
            part_clock,
            pending,
            arrival: enqueued.unwrap_or_else(crate::time::now_ticks),
            enqueued,
            max_future,
            counts,
        }
    }

    /// Judges one accepted record's time, moving the clock when it may.
    pub fn judge(&mut self, time: i64) -> Verdict {
        if time > self.arrival.saturating_add(self.max_future) {
            self.counts.bump(Ahead::Arrival);
            return Verdict::Refused;
        }
        let Some(clock) = *self.clock else {
            // Nothing to compare with yet: the first record starts the clock.
            self.advance(time);
            return Verdict::Now;
        };
        let fallback = self.enqueued == Some(time);
        if time <= clock.saturating_add(self.max_future) {
            self.advance(time);
            if !fallback {
                *self.pending = None;
            }
            return Verdict::Now;
        }
        if !fallback {
            match *self.pending {
                None => *self.pending = Some(time),
                // A copy of the held record (a body delivered twice) is no second opinion.
                Some(p) if p == time => {}
                Some(p) => {
                    // A second record ahead: the stream has moved on, to the earlier of the
                    // two at least.
                    let (low, high) = (p.min(time), p.max(time));
                    self.advance(low);
                    if high <= self.now().saturating_add(self.max_future) {
                        self.advance(high);
                        *self.pending = None;
                    } else {
                        *self.pending = Some(high);
                    }
                }
            }
        }
        if time <= self.now() {
            Verdict::Now
        } else {
            self.counts.bump(Ahead::Clock);
            Verdict::Held
        }
    }

    /// The clock (set: every caller has advanced it or found it set).
    fn now(&self) -> i64 {
        self.clock.unwrap_or(i64::MIN)
    }

    fn advance(&mut self, time: i64) {
        *self.clock = Some(self.clock.map_or(time, |c| c.max(time)));
        *self.part_clock = Some(self.part_clock.map_or(time, |c| c.max(time)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::TICKS_PER_DAY;

    const H: i64 = TICKS_PER_HOUR;

    /// One partition's guard state, fed event by event.
    #[derive(Default)]
    struct Part {
        clock: Option<i64>,
        part_clock: Option<i64>,
        pending: Option<i64>,
        counts: AheadCounts,
    }

    impl Part {
        /// One event of records at `times`, arriving at `arrival`; the verdicts.
        fn event(&mut self, arrival: i64, times: &[i64]) -> Vec<Verdict> {
            let mut g = Guard::new(
                &mut self.clock,
                &mut self.part_clock,
                &mut self.pending,
                Some(arrival),
                H,
                &mut self.counts,
            );
            times.iter().map(|t| g.judge(*t)).collect()
        }
    }

    /// Old data, replayed long after it happened.
    const ARRIVAL: i64 = 1000 * TICKS_PER_DAY;
    const T: i64 = 900 * TICKS_PER_DAY;

    #[test]
    fn records_within_the_bound_move_the_clock_as_before() {
        let mut p = Part::default();
        use Verdict::*;
        assert_eq!(p.event(ARRIVAL, &[T, T - H, T + H]), [Now, Now, Now]);
        assert_eq!(
            p.clock,
            Some(T + H),
            "exactly max_future ahead still moves it"
        );
        assert_eq!(p.counts, AheadCounts::default());
    }

    #[test]
    fn a_record_after_its_arrival_is_refused_and_never_the_clock() {
        let mut p = Part::default();
        // Arrived at T: up to T + 1 h is believable (a publisher's clock a little fast).
        let v = p.event(T, &[T, T + H + 1, T + 80 * 365 * TICKS_PER_DAY, T + H]);
        assert_eq!(
            v,
            [
                Verdict::Now,
                Verdict::Refused,
                Verdict::Refused,
                Verdict::Now
            ]
        );
        assert_eq!(p.clock, Some(T + H));
        assert_eq!(p.counts.get(Ahead::Arrival), 2);
        // Refused as the very first record too: it does not start the clock.
        let mut q = Part::default();
        assert_eq!(q.event(T, &[T + 2 * H]), [Verdict::Refused]);
        assert_eq!(q.clock, None);
    }

    #[test]
    fn one_record_ahead_of_the_stream_even_repeated_is_held_and_cancelled_by_the_next() {
        let mut p = Part::default();
        p.event(ARRIVAL, &[T]);
        // 17 days ahead of the data, still long before it was replayed; twice in one body.
        let ahead = T + 17 * TICKS_PER_DAY;
        assert_eq!(
            p.event(ARRIVAL, &[ahead, ahead, T + 1]),
            [Verdict::Held, Verdict::Held, Verdict::Now]
        );
        assert_eq!(p.clock, Some(T + 1));
        assert_eq!(p.pending, None, "cancelled by the record behind it");
        // The body delivered again, twice: copies are no second opinion.
        assert_eq!(p.event(ARRIVAL, &[ahead]), [Verdict::Held]);
        assert_eq!(p.event(ARRIVAL, &[ahead]), [Verdict::Held]);
        assert_eq!(p.clock, Some(T + 1));
        assert_eq!(p.event(ARRIVAL, &[T + 2]), [Verdict::Now]);
        assert_eq!(p.clock, Some(T + 2));
        assert_eq!(p.counts.get(Ahead::Clock), 4);
    }

    #[test]
    fn a_second_record_ahead_confirms_the_jump_to_the_earlier_of_the_two() {
        let mut p = Part::default();
        p.event(ARRIVAL, &[T]);
        // The stream resumes 5 h later (a quiet hub, a gap in a replay).
        assert_eq!(p.event(ARRIVAL, &[T + 5 * H]), [Verdict::Held]);
        assert_eq!(p.clock, Some(T));
        assert_eq!(p.pending, Some(T + 5 * H));
        assert_eq!(p.event(ARRIVAL, &[T + 5 * H + 10]), [Verdict::Now]);
        assert_eq!(p.clock, Some(T + 5 * H + 10));
        assert_eq!(p.pending, None);
        // In one body as well: a body of records 3 h on.
        let later = T + 8 * H;
        assert_eq!(
            p.event(ARRIVAL, &[later + 20, later, later + 30]),
            [Verdict::Held, Verdict::Now, Verdict::Now]
        );
        assert_eq!(p.clock, Some(later + 30));
    }

    #[test]
    fn a_sparse_replay_runs_one_record_behind() {
        let mut p = Part::default();
        let times: Vec<i64> = (0..5).map(|i| T + i * 3 * H).collect();
        for (i, t) in times.iter().enumerate() {
            let v = p.event(ARRIVAL, &[*t]);
            assert_eq!(v, [if i == 0 { Verdict::Now } else { Verdict::Held }]);
            assert_eq!(
                p.clock,
                Some(times[i.saturating_sub(1)]),
                "after record {i}"
            );
        }
    }

    #[test]
    fn an_outlier_never_becomes_the_clock_while_the_stream_moves_on_under_it() {
        let mut p = Part::default();
        p.event(ARRIVAL, &[T]);
        let outlier = T + 30 * TICKS_PER_DAY;
        p.event(ARRIVAL, &[outlier]);
        // A sparse stream goes on: each confirms the earlier of the two, never the outlier.
        for i in 1..4 {
            p.event(ARRIVAL, &[T + i * 3 * H]);
            assert_eq!(p.clock, Some(T + i * 3 * H));
            assert_eq!(p.pending, Some(outlier));
        }
    }

    #[test]
    fn the_enqueued_time_fallback_neither_starts_nor_confirms_a_jump() {
        let mut p = Part::default();
        p.event(ARRIVAL, &[T]);
        // Two events whose records had no time: each takes its event's enqueued time.
        assert_eq!(p.event(ARRIVAL, &[ARRIVAL]), [Verdict::Held]);
        assert_eq!(p.event(ARRIVAL + 1, &[ARRIVAL + 1]), [Verdict::Held]);
        assert_eq!(p.clock, Some(T));
        assert_eq!(p.pending, None);
        // Live, the fallback is close to the clock and moves it like any record.
        assert_eq!(p.event(T + 10, &[T + 10]), [Verdict::Now]);
        assert_eq!(p.clock, Some(T + 10));
    }
}
