//! Fault injection and counters: what tests use to make the emulator misbehave on purpose,
//! and to see what it did.
//!
//! Faults are read on hot paths (every accept, delivery, publish), so each is a small mutex
//! around an `Option` that is copied out at once; dropping connections is a broadcast, so it
//! is a `watch` generation counter every connection task subscribes to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// A cloneable handle on the running emulator's faults.
#[derive(Clone, Debug)]
pub struct FaultHandle {
    inner: Arc<Faults>,
}

#[derive(Debug)]
struct Faults {
    drops: watch::Sender<u64>,
    refuse_until: Mutex<Option<Instant>>,
    busy_until: Mutex<Option<Instant>>,
    delivery_delay: Mutex<Option<Duration>>,
}

impl FaultHandle {
    pub(crate) fn new() -> Self {
        FaultHandle {
            inner: Arc::new(Faults {
                drops: watch::channel(0).0,
                refuse_until: Mutex::new(None),
                busy_until: Mutex::new(None),
                delivery_delay: Mutex::new(None),
            }),
        }
    }

    /// Closes every open connection with `amqp:connection:forced`, as the service does on
    /// maintenance. New connections are accepted as usual.
    pub fn drop_all_connections(&self) {
        self.inner.drops.send_modify(|generation| *generation += 1);
    }

    /// New TCP connections are closed at once, without a protocol header, for `duration`.
    pub fn refuse_connections_for(&self, duration: Duration) {
        *lock(&self.inner.refuse_until) = Some(Instant::now() + duration);
    }

    /// Waits this long before every delivery to a receiver (`None` stops the delay).
    pub fn delay_deliveries(&self, delay: Option<Duration>) {
        *lock(&self.inner.delivery_delay) = delay;
    }

    /// For `duration`, sends are rejected with `com.microsoft:server-busy` and management
    /// requests answered with 503.
    pub fn server_busy_for(&self, duration: Duration) {
        *lock(&self.inner.busy_until) = Some(Instant::now() + duration);
    }

    pub(crate) fn refusing_connections(&self) -> bool {
        lock(&self.inner.refuse_until).is_some_and(|t| Instant::now() < t)
    }

    pub(crate) fn server_busy(&self) -> bool {
        lock(&self.inner.busy_until).is_some_and(|t| Instant::now() < t)
    }

    pub(crate) fn delivery_delay(&self) -> Option<Duration> {
        *lock(&self.inner.delivery_delay)
    }

    /// A receiver that changes whenever [`Self::drop_all_connections`] is called.
    pub(crate) fn subscribe_drops(&self) -> watch::Receiver<u64> {
        self.inner.drops.subscribe()
    }
}

/// The mutexes guard plain `Option`s, so a poisoned one still holds a valid value.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the emulator has done since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmulatorStats {
    pub connections_accepted: u64,
    /// Closed by [`FaultHandle::drop_all_connections`].
    pub connections_dropped: u64,
    /// Closed at once: [`FaultHandle::refuse_connections_for`] or the connection limit.
    pub connections_refused: u64,
    /// Receivers detached with `amqp:link:stolen` by a newer epoch.
    pub links_stolen: u64,
    pub deliveries_sent: u64,
    /// Events stored (a batch counts each event).
    pub events_published: u64,
    pub cbs_tokens_accepted: u64,
    pub cbs_tokens_refused: u64,
}

/// The live counters behind [`EmulatorStats`]; shared by every task, hence atomics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connections_accepted: AtomicU64,
    pub connections_dropped: AtomicU64,
    pub connections_refused: AtomicU64,
    pub links_stolen: AtomicU64,
    pub deliveries_sent: AtomicU64,
    pub events_published: AtomicU64,
    pub cbs_tokens_accepted: AtomicU64,
    pub cbs_tokens_refused: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> EmulatorStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EmulatorStats {
            connections_accepted: get(&self.connections_accepted),
            connections_dropped: get(&self.connections_dropped),
            connections_refused: get(&self.connections_refused),
            links_stolen: get(&self.links_stolen),
            deliveries_sent: get(&self.deliveries_sent),
            events_published: get(&self.events_published),
            cbs_tokens_accepted: get(&self.cbs_tokens_accepted),
            cbs_tokens_refused: get(&self.cbs_tokens_refused),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_expire_and_drops_broadcast() {
        let f = FaultHandle::new();
        let mut rx = f.subscribe_drops();
        assert!(!f.server_busy() && !f.refusing_connections());
        f.server_busy_for(Duration::from_secs(60));
        f.refuse_connections_for(Duration::ZERO);
        assert!(f.server_busy() && !f.refusing_connections());
        f.delay_deliveries(Some(Duration::from_millis(5)));
        assert_eq!(f.clone().delivery_delay(), Some(Duration::from_millis(5)));
        f.drop_all_connections();
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 1);
    }
}
