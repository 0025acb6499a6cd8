//! Which partitions this replica reads, when replicas share an event hub through ownership
//! records in the checkpoint store (the Azure SDKs' blob layout): every `interval` (with
//! jitter) it renews its claims, lists everyone's, and claims toward its fair share —
//! free and expired partitions first, then one from an over-loaded replica
//! ([`balance::plan`]). A claim is conditional on the record's version, so two replicas
//! never both win a partition. Ownership is the only failure detector: a replica that stops
//! renewing loses its partitions once `expiry` passes; at shutdown it relinquishes them so
//! that the others take them at their next cycle.
//!
//! This owns the claims and reports changes; the source starts and stops the partition
//! readers (and the engine restores and drops the partitions' window state).
//!
//! [`balance::plan`]: crate::checkpoint::balance::plan

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;

use super::config::OwnershipSettings;
use crate::blob::BlobError;
use crate::checkpoint::balance;
use crate::checkpoint::{Claim, OwnershipStore};
use crate::rng::SplitMix64;
use crate::telemetry::metrics::OwnershipMetrics;

/// How long after a claim's expiry the cycle that takes it runs (the service's clock and
/// ours differ by a little).
const EXPIRY_GRACE: Duration = Duration::from_millis(100);

/// After a lost race for a claim, the next cycle comes after about this long (±50 %).
const RACE_RETRY: Duration = Duration::from_millis(150);

/// What one cycle changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Partitions won this cycle: restore their state, then read them.
    pub won: Vec<String>,
    /// Partitions another replica holds now: stop reading them, drop their state.
    pub lost: Vec<String>,
}

pub struct Claims {
    store: Arc<dyn OwnershipStore>,
    source: String,
    settings: OwnershipSettings,
    partitions: Vec<String>,
    /// Owned partitions and the version of their record this replica last wrote.
    owned: BTreeMap<String, String>,
    rng: SplitMix64,
    metrics: OwnershipMetrics,
    /// How long until the soonest claim of another replica expires (at the last listing).
    soonest_expiry: Option<Duration>,
    /// A claim of the last cycle lost a race.
    raced: bool,
}

impl Claims {
    pub fn new(
        store: Arc<dyn OwnershipStore>,
        source: &str,
        settings: OwnershipSettings,
        partitions: Vec<String>,
        metrics: OwnershipMetrics,
    ) -> Claims {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (std::process::id() as u64).rotate_left(32);
        metrics.partitions.with_label_values(&[source]).set(0);
        // Every kind of change exported from 0, so that increase() sees the first claims
        // (a counter series born at 4 shows no increase).
        for change in ["claimed", "stolen", "lost", "relinquished"] {
            metrics.changes.with_label_values(&[source, change]);
        }
        metrics.failures.with_label_values(&[source]);
        Claims {
            store,
            source: source.to_string(),
            settings,
            partitions,
            owned: BTreeMap::new(),
            rng: SplitMix64(seed),
            metrics,
            soonest_expiry: None,
            raced: false,
        }
    }

    pub fn owner_id(&self) -> &str {
        &self.settings.owner_id
    }

    /// How long until the next cycle: the interval, ±20 % so replicas do not move in step;
    /// sooner if another replica's claim expires before that, so that a dead replica's
    /// partitions are taken as soon as its claims lapse, not up to an interval later.
    pub fn next_delay(&mut self) -> Duration {
        if self.raced {
            return RACE_RETRY.mul_f64(0.5 + self.rng.unit());
        }
        let interval = self.settings.interval.mul_f64(0.8 + 0.4 * self.rng.unit());
        match self.soonest_expiry {
            Some(expiry) => interval.min(expiry + EXPIRY_GRACE),
            None => interval,
        }
    }

    /// One cycle: renew, list, claim. A store failure ends the cycle early; claims already
    /// held stand (they expire only if the failures last).
    pub async fn cycle(&mut self) -> Result<Changes, BlobError> {
        let mut changes = Changes::default();
        let r = self.run_cycle(&mut changes).await;
        if r.is_err() {
            self.metrics
                .failures
                .with_label_values(&[&self.source])
                .inc();
        }
        self.publish();
        r.map(|()| changes)
    }

    async fn run_cycle(&mut self, changes: &mut Changes) -> Result<(), BlobError> {
        let me = self.settings.owner_id.clone();
        // Renew everything held, at once.
        let held: Vec<(String, String)> = self
            .owned
            .iter()
            .map(|(p, v)| (p.clone(), v.clone()))
            .collect();
        let renewals = join_all(held.iter().map(|(p, version)| {
            self.store
                .claim(&self.source, p, &me, Some(version.as_str()))
        }))
        .await;
        let mut first_error = None;
        for ((p, _), r) in held.into_iter().zip(renewals) {
            match r {
                Ok(Claim::Won(props)) => {
                    self.owned.insert(p, props.etag);
                }
                Ok(Claim::Lost) => {
                    self.lose(&p);
                    changes.lost.push(p);
                }
                // Transient: the claim stands until it expires.
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }

        let listed = self.store.list_ownership(&self.source).await?;
        // A record that names another owner than the one this replica believes in (it was
        // taken while a renewal failed) is lost too.
        for o in &listed {
            if o.owner != me && self.owned.contains_key(&o.partition) {
                self.lose(&o.partition);
                changes.lost.push(o.partition.clone());
            }
        }
        // Records in this replica's name that it does not hold: it restarted under the same
        // id (a StatefulSet pod) and takes them back at once, against their listed version.
        let mine: Vec<(String, String)> = listed
            .iter()
            .filter(|o| o.owner == me && !self.owned.contains_key(&o.partition))
            .filter(|o| self.partitions.contains(&o.partition))
            .map(|o| (o.partition.clone(), o.props.etag.clone()))
            .collect();
        for (p, version) in mine {
            if let Claim::Won(props) = self
                .store
                .claim(&self.source, &p, &me, Some(&version))
                .await?
            {
                self.won(&p, props.etag, "claimed", None);
                changes.won.push(p);
            }
        }
        let now = SystemTime::now();
        self.soonest_expiry = listed
            .iter()
            .filter(|o| !o.owner.is_empty() && o.owner != me)
            .filter_map(|o| {
                let age = now
                    .duration_since(o.props.last_modified)
                    .unwrap_or_default();
                self.settings.expiry.checked_sub(age)
            })
            .min();
        let view = balance::View::of(
            &self.partitions,
            &listed,
            &me,
            SystemTime::now(),
            self.settings.expiry,
        );
        self.metrics
            .replicas
            .with_label_values(&[&self.source])
            .set(view.replicas() as i64);
        let choices = view.choose(&mut self.rng);
        self.raced = false;
        for choice in choices {
            let claimed = self
                .store
                .claim(
                    &self.source,
                    &choice.partition,
                    &me,
                    choice.version.as_deref(),
                )
                .await?;
            if claimed == Claim::Lost {
                // Another replica got there first: plan again soon from a fresh listing
                // rather than an interval later (what is still free goes to whoever asks).
                self.raced = true;
            }
            if let Claim::Won(props) = claimed {
                let change = if choice.steal_from.is_some() {
                    "stolen"
                } else {
                    "claimed"
                };
                self.won(
                    &choice.partition,
                    props.etag,
                    change,
                    choice.steal_from.as_deref(),
                );
                changes.won.push(choice.partition);
            }
        }
        Ok(())
    }

    fn won(&mut self, partition: &str, version: String, change: &str, from: Option<&str>) {
        tracing::info!(source = %self.source, partition, from, "partition claimed");
        self.metrics
            .changes
            .with_label_values(&[&self.source, change])
            .inc();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.metrics
            .acquired
            .with_label_values(&[&self.source, partition])
            .set(now);
        self.owned.insert(partition.to_string(), version);
    }

    /// Forgets a partition another replica took (its reader was displaced, or a renewal
    /// lost).
    pub fn lose(&mut self, partition: &str) {
        if self.owned.remove(partition).is_some() {
            tracing::warn!(source = %self.source, partition, "partition taken by another replica");
            self.metrics
                .changes
                .with_label_values(&[&self.source, "lost"])
                .inc();
            let _ = self
                .metrics
                .acquired
                .remove_label_values(&[&self.source, partition]);
            self.publish();
        }
    }

    /// Gives every claim up (at shutdown, once their positions and state are stored), so
    /// that the other replicas take the partitions at their next cycle instead of after
    /// the expiry.
    pub async fn relinquish_all(&mut self) {
        let held: Vec<(String, String)> = std::mem::take(&mut self.owned).into_iter().collect();
        let results = join_all(held.iter().map(|(p, version)| {
            self.store
                .claim(&self.source, p, "", Some(version.as_str()))
        }))
        .await;
        let mut given = 0;
        for ((p, _), r) in held.iter().zip(results) {
            match r {
                Ok(Claim::Won(_)) => given += 1,
                Ok(Claim::Lost) => {}
                Err(e) => tracing::warn!(source = %self.source, partition = %p, error = %e,
                    "relinquishing a partition failed; it is free once its claim expires"),
            }
            let _ = self
                .metrics
                .acquired
                .remove_label_values(&[&self.source, p]);
        }
        self.metrics
            .changes
            .with_label_values(&[&self.source, "relinquished"])
            .inc_by(given);
        self.publish();
        tracing::info!(source = %self.source, partitions = given, "partitions relinquished");
    }

    fn publish(&self) {
        self.metrics
            .partitions
            .with_label_values(&[&self.source])
            .set(self.owned.len() as i64);
    }
}
