//! Where a partition's receiver opens, and how each received sequence number relates to
//! the last one handed on.
//!
//! The rule that keeps delivery exactly-once across reconnects: a partition remembers the
//! sequence number of the last event it handed to the pipeline, and every (re)open is
//! `x-opt-sequence-number > last`. Before the first event, the open is the checkpoint
//! (strictly after it) or the configured start; `Latest` is resolved once to the partition's
//! last enqueued sequence number, so that a reconnect before the first event still resumes
//! where the first open began rather than at a later "latest".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use azure_messaging_eventhubs::{StartLocation, StartPosition as SdkStart};

use super::config::StartPosition;
use crate::checkpoint::Checkpoint;
use crate::time::TICKS_PER_MILLISECOND;

/// Where a receiver opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenAt {
    /// The oldest retained event.
    Earliest,
    /// Strictly after this sequence number.
    After(i64),
    /// At this sequence number (inclusive).
    From(i64),
    /// Events enqueued at or after this time (ticks).
    EnqueuedFrom(i64),
    /// Not resolved yet: ask the partition for its last enqueued sequence number.
    Latest,
}

impl OpenAt {
    /// The first open of a partition: strictly after its checkpoint, else the configured start.
    pub fn initial(checkpoint: Option<&Checkpoint>, start: StartPosition) -> OpenAt {
        match (checkpoint, start) {
            (Some(cp), _) => OpenAt::After(cp.sequence_number),
            (None, StartPosition::Earliest) => OpenAt::Earliest,
            (None, StartPosition::Latest) => OpenAt::Latest,
            (None, StartPosition::EnqueuedTime(t)) => OpenAt::EnqueuedFrom(t),
            (None, StartPosition::SequenceNumber(n)) => OpenAt::From(n),
        }
    }

    /// `Latest`, made concrete from the partition's properties. An empty partition (or a
    /// fresh one, which reports −1) starts at the beginning: whatever arrives is new.
    pub fn resolve_latest(last_enqueued_sequence_number: i64, is_empty: bool) -> OpenAt {
        if is_empty || last_enqueued_sequence_number < 0 {
            OpenAt::Earliest
        } else {
            OpenAt::After(last_enqueued_sequence_number)
        }
    }

    /// The sequence number the next event is expected to carry, when this position says.
    pub fn expected_next(self) -> Option<i64> {
        match self {
            OpenAt::After(s) => Some(s.saturating_add(1)),
            OpenAt::From(n) => Some(n),
            _ => None,
        }
    }

    /// The sequence number of the last event before this position, for the lag baseline.
    pub fn before(self) -> Option<i64> {
        self.expected_next().map(|n| n - 1)
    }

    /// How many events the partition holds at or after this position, from its
    /// properties (0 when that cannot be told, e.g. for a start time).
    pub fn waiting(self, begin: i64, last_enqueued: i64, is_empty: bool) -> i64 {
        match self {
            OpenAt::After(s) => last_enqueued - s,
            OpenAt::From(n) => last_enqueued - n.max(begin) + 1,
            OpenAt::Earliest if !is_empty => last_enqueued - begin + 1,
            _ => 0,
        }
        .max(0)
    }

    /// The SDK's start position. `Latest` must be resolved first (it maps to the SDK's
    /// latest only as a fallback).
    pub fn to_sdk(self) -> SdkStart {
        let (location, inclusive) = match self {
            OpenAt::Earliest => (StartLocation::Earliest, false),
            OpenAt::Latest => (StartLocation::Latest, false),
            OpenAt::After(s) => (StartLocation::SequenceNumber(s), false),
            OpenAt::From(n) => (StartLocation::SequenceNumber(n), true),
            OpenAt::EnqueuedFrom(ticks) => {
                // Enqueued times are whole milliseconds, and .NET never sends '>=' for
                // them (the service may not take it): "at or after t" is "after the last
                // millisecond before t".
                let ms = ticks.div_euclid(TICKS_PER_MILLISECOND)
                    + i64::from(ticks.rem_euclid(TICKS_PER_MILLISECOND) != 0);
                if ms <= 0 {
                    (StartLocation::Earliest, false)
                } else {
                    let at = UNIX_EPOCH + Duration::from_millis((ms - 1) as u64);
                    (StartLocation::EnqueuedTime(at), false)
                }
            }
        };
        SdkStart {
            location,
            inclusive,
        }
    }
}

/// How a received sequence number relates to the last one handed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The next one, or the first one where nothing is expected.
    Next,
    /// Already handed on (a replay): dropped.
    Duplicate,
    /// Events were skipped — `missing` of them (expired retention, or a broker quirk).
    Gap { missing: i64 },
}

/// Compares `seq` with what is expected after `last` (the last sequence number handed on or
/// batched, if any) or, before any event, with what the open position promises.
pub fn check(seq: i64, last: Option<i64>, opened_at: OpenAt) -> Seen {
    let expected = match last {
        Some(l) => Some(l.saturating_add(1)),
        None => opened_at.expected_next(),
    };
    match expected {
        Some(e) if seq < e => Seen::Duplicate,
        Some(e) if seq > e => Seen::Gap { missing: seq - e },
        _ => Seen::Next,
    }
}

/// Ticks since the Unix epoch of a `SystemTime` (negative before it).
pub fn ticks(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_nanos() / 100).min(i64::MAX as u128) as i64,
        Err(e) => -((e.duration().as_nanos() / 100).min(i64::MAX as u128) as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(seq: i64) -> Checkpoint {
        Checkpoint {
            offset: seq * 100,
            sequence_number: seq,
        }
    }

    #[test]
    fn a_checkpoint_wins_and_resumes_strictly_after() {
        for start in [
            StartPosition::Earliest,
            StartPosition::Latest,
            StartPosition::EnqueuedTime(5),
            StartPosition::SequenceNumber(3),
        ] {
            assert_eq!(OpenAt::initial(Some(&cp(41)), start), OpenAt::After(41));
        }
        let sdk = OpenAt::After(41).to_sdk();
        assert_eq!(sdk.location, StartLocation::SequenceNumber(41));
        assert!(!sdk.inclusive, "strictly after the checkpoint");
        assert_eq!(OpenAt::After(41).expected_next(), Some(42));
    }

    #[test]
    fn without_a_checkpoint_the_configured_start_applies() {
        assert_eq!(
            OpenAt::initial(None, StartPosition::Earliest),
            OpenAt::Earliest
        );
        assert_eq!(OpenAt::initial(None, StartPosition::Latest), OpenAt::Latest);
        assert_eq!(
            OpenAt::initial(None, StartPosition::SequenceNumber(7)),
            OpenAt::From(7)
        );
        let sdk = OpenAt::From(7).to_sdk();
        assert_eq!(sdk.location, StartLocation::SequenceNumber(7));
        assert!(sdk.inclusive);
        assert_eq!(OpenAt::From(7).before(), Some(6));
        assert_eq!(OpenAt::Earliest.to_sdk().location, StartLocation::Earliest);
    }

    #[test]
    fn latest_is_resolved_once_to_a_sequence_number() {
        assert_eq!(OpenAt::resolve_latest(99, false), OpenAt::After(99));
        assert_eq!(OpenAt::resolve_latest(-1, false), OpenAt::Earliest);
        assert_eq!(OpenAt::resolve_latest(5, true), OpenAt::Earliest);
    }

    #[test]
    fn enqueued_time_means_at_or_after_to_the_millisecond() {
        // 2024-01-01T00:00:00.0005Z: the first whole millisecond at or after it is .001,
        // so the filter is "after .000".
        let t = 1_704_067_200_000 * TICKS_PER_MILLISECOND + 5_000;
        let sdk = OpenAt::EnqueuedFrom(t).to_sdk();
        assert!(!sdk.inclusive);
        assert_eq!(
            sdk.location,
            StartLocation::EnqueuedTime(UNIX_EPOCH + Duration::from_millis(1_704_067_200_000))
        );
        // Exactly on a millisecond: "after the millisecond before".
        let t = 1_704_067_200_000 * TICKS_PER_MILLISECOND;
        assert_eq!(
            OpenAt::EnqueuedFrom(t).to_sdk().location,
            StartLocation::EnqueuedTime(UNIX_EPOCH + Duration::from_millis(1_704_067_199_999))
        );
        // At or before the epoch: everything.
        assert_eq!(
            OpenAt::EnqueuedFrom(-5).to_sdk().location,
            StartLocation::Earliest
        );
    }

    #[test]
    fn sequence_checks_drop_replays_and_report_gaps() {
        assert_eq!(check(42, None, OpenAt::After(41)), Seen::Next);
        assert_eq!(check(41, None, OpenAt::After(41)), Seen::Duplicate);
        assert_eq!(check(45, None, OpenAt::After(41)), Seen::Gap { missing: 3 });
        assert_eq!(check(0, None, OpenAt::Earliest), Seen::Next);
        assert_eq!(check(900, None, OpenAt::EnqueuedFrom(1)), Seen::Next);
        assert_eq!(check(10, Some(9), OpenAt::Earliest), Seen::Next);
        assert_eq!(check(3, Some(9), OpenAt::Earliest), Seen::Duplicate);
        assert_eq!(check(9, Some(9), OpenAt::After(100)), Seen::Duplicate);
        assert_eq!(
            check(12, Some(9), OpenAt::Earliest),
            Seen::Gap { missing: 2 }
        );
    }

    #[test]
    fn events_waiting_after_a_position() {
        assert_eq!(OpenAt::After(41).waiting(0, 50, false), 9);
        assert_eq!(OpenAt::After(50).waiting(0, 50, false), 0);
        assert_eq!(OpenAt::From(10).waiting(0, 50, false), 41);
        assert_eq!(
            OpenAt::From(10).waiting(20, 50, false),
            31,
            "expired ones do not wait"
        );
        assert_eq!(OpenAt::Earliest.waiting(5, 50, false), 46);
        assert_eq!(OpenAt::Earliest.waiting(0, -1, true), 0);
        assert_eq!(OpenAt::EnqueuedFrom(1).waiting(0, 50, false), 0, "unknown");
    }

    #[test]
    fn ticks_of_system_times() {
        assert_eq!(ticks(UNIX_EPOCH + Duration::from_millis(1)), 10_000);
        assert_eq!(ticks(UNIX_EPOCH - Duration::from_micros(1)), -10);
    }
}
