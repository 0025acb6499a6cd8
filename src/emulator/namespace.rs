//! The emulated namespace: its hubs, their partition logs, routing of published events
//! (explicit partition, partition key, round robin), and the receiver registry.
//!
//! Partition logs are written by any producer link and read by any receiver link, across
//! connection tasks, so each sits behind its own std mutex (held for a push or a slice copy,
//! never across an `.await`) next to a `watch` channel that carries the next sequence number:
//! receivers at the end of the log wait on it instead of polling.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use fe2o3_amqp::types::messaging::{Body, Message};
use fe2o3_amqp::types::primitives::Value;
use tokio::sync::watch;

use super::config::{EmulatorConfig, EntraConfig, SasKey, DEFAULT_CONSUMER_GROUP};
use super::hash::partition_for_key;
use super::log::{PartitionLog, PartitionState, StoredEvent};
use super::readers::ReaderRegistry;
use super::EmulatorError;

#[derive(Debug)]
pub struct Namespace {
    /// The configured host name (audiences, connection strings).
    pub host: String,
    /// Every host name a token's resource may name: the namespace, loopback, the bind IP.
    pub hosts: Vec<String>,
    pub keys: Vec<SasKey>,
    /// The key Entra ID test tokens are signed with, if they are accepted (`Debug` redacts).
    pub entra: Option<EntraConfig>,
    hubs: HashMap<String, Hub>,
    pub readers: Arc<ReaderRegistry>,
}

#[derive(Debug)]
pub struct Hub {
    pub name: String,
    pub created_at: SystemTime,
    /// Lower-cased names; consumer groups are matched case-insensitively.
    consumer_groups: Vec<String>,
    partitions: Vec<Partition>,
    round_robin: AtomicU32,
}

#[derive(Debug)]
pub struct Partition {
    log: Mutex<PartitionLog>,
    /// The sequence number the next event will get; bumped after every append.
    tail: watch::Sender<i64>,
}

impl Partition {
    pub fn lock(&self) -> MutexGuard<'_, PartitionLog> {
        // A panic while holding the lock cannot leave the log half-edited in a way that
        // matters to a test broker; keep serving.
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.trim(SystemTime::now());
        log
    }

    /// Watch this to wake when events arrive.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.tail.subscribe()
    }
}

impl Namespace {
    pub fn new(cfg: &EmulatorConfig, bind_ip: std::net::IpAddr) -> Namespace {
        let now = SystemTime::now();
        let hubs = cfg
            .hubs
            .iter()
            .map(|h| {
                let mut groups: Vec<String> = h
                    .consumer_groups
                    .iter()
                    .map(|g| g.to_ascii_lowercase())
                    .collect();
                groups.push(DEFAULT_CONSUMER_GROUP.to_ascii_lowercase());
                groups.sort();
                groups.dedup();
                let partitions = (0..h.partitions)
                    .map(|_| Partition {
                        log: Mutex::new(PartitionLog::new(h.retention.clone())),
                        tail: watch::channel(0).0,
                    })
                    .collect();
                let hub = Hub {
                    name: h.name.clone(),
                    created_at: now,
                    consumer_groups: groups,
                    partitions,
                    round_robin: AtomicU32::new(0),
                };
                (h.name.to_ascii_lowercase(), hub)
            })
            .collect();
        let mut hosts = vec![
            cfg.namespace.clone(),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
            bind_ip.to_string(),
        ];
        hosts.dedup();
        Namespace {
            host: cfg.namespace.clone(),
            hosts,
            keys: cfg.keys.clone(),
            entra: cfg.entra.clone(),
            hubs,
            readers: Arc::new(ReaderRegistry::default()),
        }
    }

    pub fn hub(&self, name: &str) -> Result<&Hub, EmulatorError> {
        self.hubs.get(&name.to_ascii_lowercase()).ok_or_else(|| {
            EmulatorError::NotFound(format!(
                "The messaging entity '{}/{name}' could not be found.",
                self.host
            ))
        })
    }

    pub fn hub_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.hubs.values().map(|h| h.name.clone()).collect();
        names.sort();
        names
    }
}

impl Hub {
    pub fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    pub fn partition(&self, id: u32) -> Result<&Partition, EmulatorError> {
        self.partitions.get(id as usize).ok_or_else(|| {
            EmulatorError::NotFound(format!(
                "The partition '{id}' of event hub '{}' could not be found (it has {} partitions).",
                self.name,
                self.partitions.len()
            ))
        })
    }

    /// Parses a partition id as sent on the wire (`"0"`, `"1"`, …).
    pub fn partition_id(&self, text: &str) -> Result<u32, EmulatorError> {
        let id: u32 = text
            .trim()
            .parse()
            .map_err(|_| EmulatorError::ArgumentError(format!("'{text}' is not a partition id")))?;
        self.partition(id).map(|_| id)
    }

    pub fn check_consumer_group(&self, group: &str) -> Result<String, EmulatorError> {
        let lower = group.to_ascii_lowercase();
        if self.consumer_groups.contains(&lower) {
            Ok(lower)
        } else {
            Err(EmulatorError::NotFound(format!(
                "The messaging entity '{}/ConsumerGroups/{group}' could not be found.",
                self.name
            )))
        }
    }

    /// Where an event goes: the partition asked for, else the key's hash, else round robin.
    pub fn route(&self, partition: Option<u32>, key: Option<&str>) -> Result<u32, EmulatorError> {
        match (partition, key) {
            (Some(p), _) => self.partition(p).map(|_| p),
            (None, Some(k)) => Ok(partition_for_key(k, self.partition_count())),
            (None, None) => {
                Ok(self.round_robin.fetch_add(1, Ordering::Relaxed) % self.partition_count())
            }
        }
    }

    /// Appends to partition `id` and wakes its receivers.
    pub fn append(
        &self,
        id: u32,
        message: Message<Body<Value>>,
        size: u64,
    ) -> Result<Arc<StoredEvent>, EmulatorError> {
        let partition = self.partition(id)?;
        let (event, next) = {
            let mut log = partition.lock();
            let event = log.append(message, size, SystemTime::now());
            (event, log.next_sequence())
        };
        partition.tail.send_replace(next);
        Ok(event)
    }

    pub fn state(&self, id: u32) -> Result<PartitionState, EmulatorError> {
        Ok(self.partition(id)?.lock().state())
    }
}
