//! Partition load balancing: which partitions this replica should claim now, given the
//! ownership records that all replicas share in the blob container (`blob.rs`). The Azure
//! SDKs' event processors balance the same records by the same kind of rules, so hubwatch
//! replicas and official processors can share one consumer group.
//!
//! The caller runs a cycle every interval: it renews its own records, lists them all, calls
//! [`plan`], and claims what the plan names, each claim conditional on the version it names.
//! Losing a claim is normal (another replica got there first); the next cycle plans again
//! from a fresh listing. This module is only the planning step: it does no I/O and keeps no
//! state between cycles, so a replica that restarts under the same id carries on from the
//! listing alone.
//!
//! The rules:
//! - A record is *active* when it names an owner and was written less than `expiry` ago.
//!   Expiry is the only failure detector: a replica that stops renewing loses its partitions
//!   once its records age out. A record dated in the future counts as active, because the
//!   storage service's clock and ours differ. Records of partitions the hub does not have
//!   are ignored, owner and all.
//! - A partition without an active record (never claimed, relinquished with an empty owner,
//!   or expired) is *claimable*, against the version of its record if there is one.
//! - The owners are the distinct active owners plus this replica. With `n` partitions and
//!   `k` owners, a fair share lies between `min = n / k` and `max = ceil(n / k)`.
//! - Below `max` with something claimable: claim up to `max - mine` claimable partitions,
//!   picked at random, all in this cycle. Greedy, so that a fresh replica, or the survivors
//!   of a dead one, reach their share in one cycle rather than one partition per cycle.
//! - Otherwise, below `min`, or below `max` while another owner holds more than `max`:
//!   steal one partition from the owner holding the most (ties broken at random). One per
//!   cycle, because a steal cuts a working reader off and its recent events get read twice;
//!   and only from an owner holding at least `mine + 2`, so that a steal narrows the gap
//!   instead of moving it (owners at `m` and `m + 1` would otherwise trade a partition
//!   forever).
//! - Nothing else. A replica above its share gives nothing away; the others take from it.
//!
//! Picks are random so that replicas planning from the same listing mostly go for different
//! partitions instead of all losing the race for the first one. The generator is passed in
//! and every candidate list is sorted before a pick, so a seed fixes the plan: neither hash
//! order nor the listing's order leaks into it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use crate::checkpoint::blob::Owned;
use crate::rng::SplitMix64;

/// What to claim this cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub partition: String,
    /// The listed version (ETag) of its ownership record to claim against (`If-Match`),
    /// or None when no record exists (claim with `If-None-Match: *`).
    pub version: Option<String>,
    /// The active owner it is taken from (a steal), if any.
    pub steal_from: Option<String>,
}

/// The replicas' view derived from a listing: who actively holds what, this replica's fair
/// share, and what nobody holds. Also what the caller logs and exports as metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    me: String,
    partitions: usize,
    /// Every active owner's partitions with their record versions, both sorted. `me` is
    /// always an owner, with nothing when it holds nothing.
    held: BTreeMap<String, Vec<(String, String)>>,
    /// Partitions without an active record, sorted, as the claims that would take them.
    claimable: Vec<Choice>,
}

/// Which partitions `me` should claim now (see the module doc for the rules). `me` must be
/// non-empty: an empty owner means "relinquished".
pub fn plan(
    partitions: &[String],
    listed: &[Owned],
    me: &str,
    now: SystemTime,
    expiry: Duration,
    rng: &mut SplitMix64,
) -> Vec<Choice> {
    View::of(partitions, listed, me, now, expiry).choose(rng)
}

/// Whether a record still holds its partition at `now`.
fn is_active(record: &Owned, now: SystemTime, expiry: Duration) -> bool {
    // A future timestamp makes `duration_since` fail: active, since only the clocks differ.
    !record.owner.is_empty()
        && now
            .duration_since(record.props.last_modified)
            .map_or(true, |age| age < expiry)
}

impl View {
    /// Reads a listing. A listing names each partition once (blob names are unique); were
    /// one repeated, its last entry would count.
    pub fn of(
        partitions: &[String],
        listed: &[Owned],
        me: &str,
        now: SystemTime,
        expiry: Duration,
    ) -> View {
        let wanted: BTreeSet<&str> = partitions.iter().map(String::as_str).collect();
        let records: BTreeMap<&str, &Owned> = listed
            .iter()
            .filter(|r| wanted.contains(r.partition.as_str()))
            .map(|r| (r.partition.as_str(), r))
            .collect();
        let mut held: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        held.insert(me.to_string(), Vec::new());
        let mut claimable = Vec::new();
        for &partition in &wanted {
            match records.get(partition) {
                Some(r) if is_active(r, now, expiry) => held
                    .entry(r.owner.clone())
                    .or_default()
                    .push((partition.to_string(), r.props.etag.clone())),
                record => claimable.push(Choice {
                    partition: partition.to_string(),
                    version: record.map(|r| r.props.etag.clone()),
                    steal_from: None,
                }),
            }
        }
        View {
            me: me.to_string(),
            partitions: wanted.len(),
            held,
            claimable,
        }
    }

    /// How many replicas share the partitions: the active owners, this one included.
    pub fn replicas(&self) -> usize {
        self.held.len()
    }

    /// Each active owner (this replica included) with how many partitions it holds, by id.
    pub fn counts(&self) -> impl Iterator<Item = (&str, usize)> {
        self.held.iter().map(|(owner, p)| (owner.as_str(), p.len()))
    }

    /// How many partitions this replica actively holds.
    pub fn mine(&self) -> usize {
        self.held[&self.me].len()
    }

    /// The least fair share.
    pub fn min(&self) -> usize {
        self.partitions / self.replicas()
    }

    /// The greatest fair share.
    pub fn max(&self) -> usize {
        self.partitions.div_ceil(self.replicas())
    }

    /// Partitions nobody actively holds, sorted.
    pub fn claimable(&self) -> &[Choice] {
        &self.claimable
    }

    /// Nothing is claimable and every owner holds its fair share: no replica will claim
    /// anything until the membership changes.
    pub fn is_balanced(&self) -> bool {
        let (min, max) = (self.min(), self.max());
        self.claimable.is_empty() && self.counts().all(|(_, n)| (min..=max).contains(&n))
    }

    /// This cycle's claims: claimable partitions while below the fair share, else at most
    /// one steal.
    pub fn choose(&self, rng: &mut SplitMix64) -> Vec<Choice> {
        let (mine, min, max) = (self.mine(), self.min(), self.max());
        if mine < max && !self.claimable.is_empty() {
            return pick(&self.claimable, max - mine, rng);
        }
        let crowded = self.others().any(|(_, held)| held.len() > max);
        if mine < min || (mine < max && crowded) {
            return self.steal(rng).into_iter().collect();
        }
        Vec::new()
    }

    fn others(&self) -> impl Iterator<Item = (&String, &Vec<(String, String)>)> {
        self.held.iter().filter(|(owner, _)| **owner != self.me)
    }

    /// One random partition of the owner holding the most, if taking it narrows the gap.
    fn steal(&self, rng: &mut SplitMix64) -> Option<Choice> {
        let most = self.others().map(|(_, held)| held.len()).max()?;
        // `choose` only gets here when this holds for a consistent listing (the counts add
        // up to the partitions); checked anyway, since it is what keeps steals from churning.
        if most < self.mine() + 2 {
            return None;
        }
        let victims: Vec<_> = self
            .others()
            .filter(|(_, held)| held.len() == most)
            .collect();
        let (owner, held) = victims[random_index(victims.len(), rng)];
        let (partition, etag) = &held[random_index(held.len(), rng)];
        Some(Choice {
            partition: partition.clone(),
            version: Some(etag.clone()),
            steal_from: Some(owner.clone()),
        })
    }
}

/// Up to `count` distinct entries of `pool`, picked at random (a partial Fisher–Yates shuffle).
fn pick(pool: &[Choice], count: usize, rng: &mut SplitMix64) -> Vec<Choice> {
    let mut pool = pool.to_vec();
    let count = count.min(pool.len());
    for i in 0..count {
        let j = i + random_index(pool.len() - i, rng);
        pool.swap(i, j);
    }
    pool.truncate(count);
    pool
}

/// Uniform in `0..len` (`len` > 0).
fn random_index(len: usize, rng: &mut SplitMix64) -> usize {
    rng.below(len as u64) as usize
}

#[cfg(test)]
#[path = "balance_tests.rs"]
mod tests;
