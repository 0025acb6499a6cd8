//! One partition's event log: sequence numbers (+1 per event), byte offsets (the running
//! total of encoded message sizes, as decimal strings on the wire), enqueued times that never
//! go backwards, and retention by count, bytes and age.
//!
//! The log is plain data; its owner ([`super::namespace`]) wraps it in a mutex and wakes
//! waiting receivers. Every method that reads takes `now` so that age retention is applied
//! lazily, by whoever touches the log next, without a background task.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fe2o3_amqp::types::messaging::{Body, Message};
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::Sendable;

use super::config::Retention;
use super::filter::{OffsetValue, StartPosition};
use super::EmulatorError;

/// An event as stored: what the broker assigned, and the producer's message dressed once,
/// at append, as every receiver gets it (so a delivery neither clones nor re-annotates it).
#[derive(Debug)]
pub struct StoredEvent {
    pub sequence_number: i64,
    /// Byte offset of this event in the partition.
    pub offset: u64,
    /// Unix milliseconds.
    pub enqueued_ms: i64,
    /// Encoded size, counted by byte retention and offsets.
    pub size: u64,
    /// The message with the broker's `x-opt-*` annotations, pre-settled.
    pub delivery: Sendable<Body<Value>>,
}

/// A snapshot of a partition, as `$management` reports it. A partition that never held an
/// event reports `-1` for both sequence numbers and the offset, like the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub beginning_sequence_number: i64,
    pub last_sequence_number: i64,
    pub last_offset: String,
    pub last_enqueued_time: Option<SystemTime>,
    pub is_empty: bool,
}

#[derive(Debug)]
pub struct PartitionLog {
    events: VecDeque<Arc<StoredEvent>>,
    next_sequence: i64,
    next_offset: u64,
    bytes: u64,
    retention: Retention,
    /// The last event ever appended (it may since have been trimmed).
    last: Option<(i64, u64, i64)>,
}

impl PartitionLog {
    pub fn new(retention: Retention) -> Self {
        PartitionLog {
            events: VecDeque::new(),
            next_sequence: 0,
            next_offset: 0,
            bytes: 0,
            retention,
            last: None,
        }
    }

    /// Appends one event and applies retention; returns it.
    pub fn append(
        &mut self,
        message: Message<Body<Value>>,
        size: u64,
        now: SystemTime,
    ) -> Arc<StoredEvent> {
        let now_ms = unix_ms(now);
        let enqueued_ms = self.last.map_or(now_ms, |(_, _, t)| now_ms.max(t));
        let (sequence_number, offset) = (self.next_sequence, self.next_offset);
        let message = super::message::for_delivery(message, sequence_number, offset, enqueued_ms);
        let event = Arc::new(StoredEvent {
            sequence_number,
            offset,
            enqueued_ms,
            size,
            delivery: Sendable::builder().message(message).settled(true).build(),
        });
        self.last = Some((event.sequence_number, event.offset, enqueued_ms));
        self.next_sequence += 1;
        self.next_offset += size.max(1);
        self.bytes += size;
        self.events.push_back(event.clone());
        self.trim(now);
        event
    }

    /// Drops the oldest events until every retention limit holds. The newest event is kept
    /// even if it alone exceeds `max_bytes`, so a producer always sees its event stored.
    pub fn trim(&mut self, now: SystemTime) {
        let max_events = self.retention.effective_max_events();
        let max_bytes = self.retention.effective_max_bytes();
        let min_enqueued = self
            .retention
            .max_age
            .map(|age| unix_ms(now) - i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
        while let Some(front) = self.events.front() {
            let too_many = self.events.len() as u64 > max_events;
            let too_big = self.bytes > max_bytes && self.events.len() > 1;
            let too_old = min_enqueued.is_some_and(|min| front.enqueued_ms < min);
            if !(too_many || too_big || too_old) {
                break;
            }
            self.bytes -= front.size;
            self.events.pop_front();
        }
    }

    /// The sequence number the next event will get.
    pub fn next_sequence(&self) -> i64 {
        self.next_sequence
    }

    /// The first sequence number still retained (the next one when the log is empty).
    pub fn begin_sequence(&self) -> i64 {
        self.events
            .front()
            .map_or(self.next_sequence, |e| e.sequence_number)
    }

    pub fn state(&self) -> PartitionState {
        match self.last {
            None => PartitionState {
                beginning_sequence_number: -1,
                last_sequence_number: -1,
                last_offset: "-1".to_string(),
                last_enqueued_time: None,
                is_empty: true,
            },
            Some((seq, offset, ms)) => PartitionState {
                beginning_sequence_number: self.begin_sequence(),
                last_sequence_number: seq,
                last_offset: offset.to_string(),
                last_enqueued_time: Some(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)),
                is_empty: self.events.is_empty(),
            },
        }
    }

    /// The sequence number a receiver attaching at `position` reads first.
    pub fn resolve(&self, position: &StartPosition) -> Result<i64, EmulatorError> {
        let first_where = |pred: &dyn Fn(&StoredEvent) -> bool| {
            self.events
                .iter()
                .find(|e| pred(e))
                .map_or(self.next_sequence, |e| e.sequence_number)
        };
        match *position {
            StartPosition::Offset { offset, inclusive } => Ok(match offset {
                OffsetValue::Start => self.begin_sequence(),
                OffsetValue::Latest => self.next_sequence,
                OffsetValue::At(o) if inclusive => first_where(&|e| e.offset >= o),
                OffsetValue::At(o) => first_where(&|e| e.offset > o),
            }),
            StartPosition::SequenceNumber { value, inclusive } => {
                let start = if inclusive {
                    value
                } else {
                    value.saturating_add(1)
                };
                if start > self.next_sequence {
                    return Err(EmulatorError::ArgumentOutOfRange(format!(
                        "The supplied sequence number '{value}' is invalid. The last sequence \
                         number in the system is '{}'",
                        self.next_sequence - 1
                    )));
                }
                Ok(start.max(self.begin_sequence()))
            }
            StartPosition::EnqueuedTime { millis, inclusive } if inclusive => {
                Ok(first_where(&|e| e.enqueued_ms >= millis))
            }
            StartPosition::EnqueuedTime { millis, .. } => {
                Ok(first_where(&|e| e.enqueued_ms > millis))
            }
        }
    }

    /// Up to `max` events from sequence number `from` on (from the oldest retained one if
    /// `from` was trimmed away).
    pub fn read_from(&self, from: i64, max: usize) -> Vec<Arc<StoredEvent>> {
        let begin = self.begin_sequence();
        let skip = (from.max(begin) - begin) as usize;
        self.events.iter().skip(skip).take(max).cloned().collect()
    }
}

pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Message<Body<Value>> {
        Message::builder()
            .body(Body::Value(fe2o3_amqp::types::messaging::AmqpValue(
                Value::Null,
            )))
            .build()
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn log_with(retention: Retention, sizes: &[u64]) -> PartitionLog {
        let mut log = PartitionLog::new(retention);
        for (i, size) in sizes.iter().enumerate() {
            log.append(msg(), *size, at(1000 + i as u64 * 10));
        }
        log
    }

    #[test]
    fn sequence_numbers_offsets_and_state() {
        let log = log_with(Retention::default(), &[10, 20, 30]);
        let seqs: Vec<_> = log
            .read_from(0, 10)
            .iter()
            .map(|e| (e.sequence_number, e.offset))
            .collect();
        assert_eq!(seqs, vec![(0, 0), (1, 10), (2, 30)]);
        let s = log.state();
        assert_eq!(
            (s.beginning_sequence_number, s.last_sequence_number),
            (0, 2)
        );
        assert_eq!(s.last_offset, "30");
        assert_eq!(s.last_enqueued_time, Some(at(1020)));
        assert!(!s.is_empty);
        assert_eq!(
            PartitionLog::new(Retention::default())
                .state()
                .last_sequence_number,
            -1
        );
    }

    #[test]
    fn enqueued_time_never_goes_backwards() {
        let mut log = PartitionLog::new(Retention::default());
        log.append(msg(), 1, at(5000));
        let e = log.append(msg(), 1, at(4000));
        assert_eq!(e.enqueued_ms, 5000);
    }

    #[test]
    fn retention_by_count_bytes_and_age() {
        let count = log_with(
            Retention {
                max_events: Some(2),
                ..Default::default()
            },
            &[1, 1, 1, 1],
        );
        assert_eq!(count.begin_sequence(), 2);

        let bytes = log_with(
            Retention {
                max_bytes: Some(50),
                ..Default::default()
            },
            &[20, 20, 20],
        );
        assert_eq!(bytes.begin_sequence(), 1);
        let huge = log_with(
            Retention {
                max_bytes: Some(5),
                ..Default::default()
            },
            &[20],
        );
        assert_eq!(
            huge.read_from(0, 10).len(),
            1,
            "the newest event always stays"
        );

        let mut age = log_with(
            Retention {
                max_age: Some(Duration::from_millis(15)),
                ..Default::default()
            },
            &[1, 1, 1],
        );
        age.trim(at(1030));
        assert_eq!(age.begin_sequence(), 2);
        age.trim(at(10_000));
        let s = age.state();
        assert!(s.is_empty);
        assert_eq!(
            (s.beginning_sequence_number, s.last_sequence_number),
            (3, 2)
        );
        // A reader positioned before the retained range starts at the oldest event.
        assert!(age.read_from(0, 10).is_empty());
    }

    #[test]
    fn resolving_start_positions() {
        let log = log_with(Retention::default(), &[10, 10, 10]); // offsets 0, 10, 20
        let r = |p| log.resolve(&p).unwrap();
        use OffsetValue::*;
        use StartPosition::*;
        assert_eq!(
            r(Offset {
                offset: Start,
                inclusive: false
            }),
            0
        );
        assert_eq!(
            r(Offset {
                offset: Latest,
                inclusive: false
            }),
            3
        );
        assert_eq!(
            r(Offset {
                offset: At(10),
                inclusive: false
            }),
            2
        );
        assert_eq!(
            r(Offset {
                offset: At(10),
                inclusive: true
            }),
            1
        );
        assert_eq!(
            r(SequenceNumber {
                value: 1,
                inclusive: false
            }),
            2
        );
        assert_eq!(
            r(SequenceNumber {
                value: 1,
                inclusive: true
            }),
            1
        );
        assert_eq!(
            r(SequenceNumber {
                value: 2,
                inclusive: false
            }),
            3
        );
        assert_eq!(
            r(SequenceNumber {
                value: -1,
                inclusive: false
            }),
            0
        );
        assert_eq!(
            r(EnqueuedTime {
                millis: 1010,
                inclusive: false
            }),
            2
        );
        assert_eq!(
            r(EnqueuedTime {
                millis: 1010,
                inclusive: true
            }),
            1
        );
        let err = log
            .resolve(&SequenceNumber {
                value: 3,
                inclusive: false,
            })
            .unwrap_err();
        assert!(matches!(err, EmulatorError::ArgumentOutOfRange(_)), "{err}");
    }
}
