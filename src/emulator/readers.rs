//! Who is reading each (hub, consumer group, partition), and the epoch rules that decide
//! who may: an epoch receiver displaces every receiver with an equal or lower epoch (or
//! none) with `amqp:link:stolen`; a lower epoch, or a non-epoch receiver while an epoch one
//! exists, is refused; without epochs at most five receivers share a partition.
//!
//! One registry per emulator, shared by every connection task; a std mutex suffices
//! because it is only held to edit a short vector, never across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::EmulatorError;

/// At most this many non-epoch receivers per partition and consumer group (service quota).
pub const MAX_NON_EPOCH_READERS: usize = 5;

/// (hub, consumer group), both lower-cased, and partition.
pub type ReaderKey = (String, String, u32);

#[derive(Debug, Default)]
pub struct ReaderRegistry {
    readers: Mutex<HashMap<ReaderKey, Vec<Reader>>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Reader {
    id: u64,
    name: String,
    epoch: Option<i64>,
    /// Fired (with the displacement error) when a newer epoch takes the partition.
    stolen: oneshot::Sender<EmulatorError>,
}

/// A registered receiver. Dropping it unregisters; `stolen` resolves when displaced.
#[derive(Debug)]
pub struct ReaderGuard {
    registry: Arc<ReaderRegistry>,
    key: ReaderKey,
    id: u64,
    pub stolen: oneshot::Receiver<EmulatorError>,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        let mut map = self.registry.lock();
        if let Some(list) = map.get_mut(&self.key) {
            list.retain(|r| r.id != self.id);
            if list.is_empty() {
                map.remove(&self.key);
            }
        }
    }
}

impl ReaderRegistry {
    /// The poisoned case still holds a consistent map: every edit is a single push/retain.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ReaderKey, Vec<Reader>>> {
        self.readers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a receiver, applying the epoch rules. Returns the guard and how many
    /// receivers it displaced.
    pub fn register(
        self: &Arc<Self>,
        key: ReaderKey,
        name: &str,
        epoch: Option<i64>,
    ) -> Result<(ReaderGuard, u64), EmulatorError> {
        let mut map = self.lock();
        let list = map.entry(key.clone()).or_default();
        let highest = list.iter().filter_map(|r| r.epoch).max();
        let mut displaced = 0;
        match epoch {
            Some(e) => {
                if let Some(h) = highest.filter(|h| *h > e) {
                    return Err(EmulatorError::LinkStolen(format!(
                        "Receiver '{name}' with a higher epoch '{h}' already exists. Receiver \
                         '{name}' with epoch {e} cannot be created. Make sure you are creating \
                         receiver with increasing epoch value to ensure connectivity, or ensure \
                         all old epoch receivers are closed or disconnected."
                    )));
                }
                for old in list.drain(..) {
                    let old_epoch = old.epoch.map_or("none".to_string(), |v| v.to_string());
                    let _ = old.stolen.send(EmulatorError::LinkStolen(format!(
                        "New receiver '{name}' with higher epoch of '{e}' is created hence \
                         current receiver '{}' with epoch '{old_epoch}' is getting disconnected. \
                         If you are recreating the receiver, make sure a higher epoch is used.",
                        old.name
                    )));
                    displaced += 1;
                }
            }
            None => {
                if let Some(h) = highest {
                    return Err(EmulatorError::LinkStolen(format!(
                        "At least one receiver for the endpoint is created with epoch of '{h}', \
                         and so non-epoch receiver is not allowed. Either reconnect with a \
                         higher epoch, or make sure all epoch receivers are closed or \
                         disconnected."
                    )));
                }
                if list.len() >= MAX_NON_EPOCH_READERS {
                    return Err(EmulatorError::ResourceLimitExceeded(format!(
                        "Exceeded the maximum number of allowed receivers per partition in a \
                         consumer group which is {MAX_NON_EPOCH_READERS}. Partition: {}, \
                         consumer group: {}",
                        key.2, key.1
                    )));
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        list.push(Reader {
            id,
            name: name.to_string(),
            epoch,
            stolen: tx,
        });
        drop(map);
        Ok((
            ReaderGuard {
                registry: self.clone(),
                key,
                id,
                stolen: rx,
            },
            displaced,
        ))
    }

    /// How many receivers hold (hub, group, partition) now.
    #[cfg(test)]
    pub fn count(&self, key: &ReaderKey) -> usize {
        self.lock().get(key).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ReaderKey {
        ("hub".into(), "$default".into(), 0)
    }

    #[test]
    fn higher_or_equal_epoch_steals_lower_is_refused() {
        let reg = Arc::new(ReaderRegistry::default());
        let (mut zero, _) = reg.register(key(), "a", Some(0)).unwrap();
        let (mut one, displaced) = reg.register(key(), "b", Some(1)).unwrap();
        assert_eq!(displaced, 1);
        assert!(matches!(
            zero.stolen.try_recv(),
            Ok(EmulatorError::LinkStolen(_))
        ));
        let err = reg.register(key(), "c", Some(0)).unwrap_err();
        assert!(matches!(err, EmulatorError::LinkStolen(_)));
        let (_again, displaced) = reg.register(key(), "d", Some(1)).unwrap();
        assert_eq!(displaced, 1, "equal epoch: the later one wins");
        assert!(one.stolen.try_recv().is_ok());
        assert_eq!(reg.count(&key()), 1);
    }

    #[test]
    fn non_epoch_limits() {
        let reg = Arc::new(ReaderRegistry::default());
        let guards: Vec<_> = (0..5)
            .map(|i| reg.register(key(), &i.to_string(), None).unwrap())
            .collect();
        let err = reg.register(key(), "sixth", None).unwrap_err();
        assert!(matches!(err, EmulatorError::ResourceLimitExceeded(_)));
        drop(guards);
        assert_eq!(reg.count(&key()), 0, "guards unregister on drop");

        let (mut plain, _) = reg.register(key(), "plain", None).unwrap();
        let (_epoch, displaced) = reg.register(key(), "epoch", Some(0)).unwrap();
        assert_eq!(displaced, 1);
        assert!(plain.stolen.try_recv().is_ok());
        assert!(matches!(
            reg.register(key(), "late", None),
            Err(EmulatorError::LinkStolen(_))
        ));
    }
}
