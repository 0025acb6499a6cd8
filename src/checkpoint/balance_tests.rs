//! Tests of the load-balancing planner: the rules case by case, random listings against
//! the rules worked out separately, and replicas simulated against a store with real
//! conditional writes (cold start, races, a dead replica, a joining one, relinquished
//! partitions).

use super::*;
use crate::blob::BlobProps;
use std::time::UNIX_EPOCH;

const EXPIRY: Duration = Duration::from_secs(60);

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

/// A record written `age` seconds before `now()` (negative: after it).
fn record(partition: &str, owner: &str, etag: &str, age: i64) -> Owned {
    let offset = Duration::from_secs(age.unsigned_abs());
    let last_modified = if age >= 0 {
        now() - offset
    } else {
        now() + offset
    };
    Owned {
        partition: partition.to_string(),
        owner: owner.to_string(),
        props: BlobProps {
            etag: etag.to_string(),
            last_modified,
        },
    }
}

/// Fresh records handing out partitions "0", "1", … in order: `(owner, how many)`.
fn dealt(shares: &[(&str, usize)]) -> Vec<Owned> {
    let owners = shares.iter().flat_map(|&(o, n)| std::iter::repeat_n(o, n));
    owners
        .enumerate()
        .map(|(p, o)| record(&p.to_string(), o, &format!("e{p}"), 1))
        .collect()
}

fn plan_for(n: usize, listed: &[Owned], seed: u64) -> Vec<Choice> {
    plan(&ids(n), listed, "me", now(), EXPIRY, &mut SplitMix64(seed))
}

fn partitions_of(choices: &[Choice]) -> BTreeSet<String> {
    choices.iter().map(|c| c.partition.clone()).collect()
}

#[test]
fn a_fresh_replica_alone_claims_everything() {
    let choices = plan_for(8, &[], 1);
    assert_eq!(partitions_of(&choices), ids(8).into_iter().collect());
    assert!(choices
        .iter()
        .all(|c| c.version.is_none() && c.steal_from.is_none()));
}

#[test]
fn a_fresh_replica_claims_claimable_partitions_up_to_max() {
    // "b" holds 0 and 1; with two owners the share of 8 is 4.
    let listed = dealt(&[("b", 2)]);
    let choices = plan_for(8, &listed, 2);
    assert_eq!(choices.len(), 4);
    assert_eq!(partitions_of(&choices).len(), 4);
    assert!(choices
        .iter()
        .all(|c| c.partition.parse::<usize>().unwrap() >= 2 && c.version.is_none()));
}

#[test]
fn expired_and_relinquished_records_are_claimable_with_their_etags() {
    let listed = [
        record("0", "gone", "e0", 60), // exactly `expiry` old: expired
        record("1", "", "e1", 1),      // relinquished
        record("2", "b", "e2", 59),    // just active
        record("3", "c", "e3", -30),   // dated in the future: active
    ];
    let view = View::of(&ids(4), &listed, "me", now(), EXPIRY);
    assert_eq!((view.replicas(), view.min(), view.max()), (3, 1, 2));
    let mut choices = plan_for(4, &listed, 3);
    choices.sort_by(|a, b| a.partition.cmp(&b.partition));
    let claim = |p: &str, etag: &str| Choice {
        partition: p.to_string(),
        version: Some(etag.to_string()),
        steal_from: None,
    };
    assert_eq!(choices, vec![claim("0", "e0"), claim("1", "e1")]);
}

#[test]
fn records_of_unknown_partitions_are_ignored() {
    // Were "z" counted as an owner, the share would be 2 instead of 4.
    let listed = [record("9", "z", "e9", 1)];
    assert_eq!(plan_for(4, &listed, 4).len(), 4);
}

#[test]
fn a_balanced_state_yields_nothing() {
    for shares in [
        [("me", 3), ("b", 3), ("c", 2)],
        [("me", 2), ("b", 3), ("c", 3)],
    ] {
        let listed = dealt(&shares);
        assert!(View::of(&ids(8), &listed, "me", now(), EXPIRY).is_balanced());
        for seed in 0..20 {
            assert_eq!(plan_for(8, &listed, seed), vec![], "{shares:?}");
        }
    }
}

#[test]
fn below_min_steals_one_from_the_largest_owner() {
    // min 2: "me" holds 1; "b" holds partitions 0..5.
    let listed = dealt(&[("b", 5), ("me", 1), ("c", 2)]);
    for seed in 0..20 {
        let choices = plan_for(8, &listed, seed);
        assert_eq!(choices.len(), 1);
        let steal = &choices[0];
        let p: usize = steal.partition.parse().unwrap();
        assert!(p < 5, "{steal:?}");
        assert_eq!(steal.version, Some(format!("e{p}")));
        assert_eq!(steal.steal_from.as_deref(), Some("b"));
    }
}

#[test]
fn at_min_steals_from_an_owner_above_max() {
    // min 2, max 3: "me" is at min, but "b" holds 4.
    let listed = dealt(&[("b", 4), ("me", 2), ("c", 2)]);
    let choices = plan_for(8, &listed, 5);
    assert_eq!(choices.len(), 1);
    assert_eq!(choices[0].steal_from.as_deref(), Some("b"));
}

#[test]
fn ties_for_the_largest_owner_are_broken_at_random() {
    let listed = dealt(&[("b", 4), ("c", 4)]);
    let victims: BTreeSet<_> = (0..40)
        .map(|seed| plan_for(8, &listed, seed)[0].steal_from.clone().unwrap())
        .collect();
    assert_eq!(victims, ["b", "c"].map(String::from).into());
}

#[test]
fn no_steal_when_the_largest_holds_only_one_more() {
    // min 1, max 2: "me" below max, the others at max. Taking one would only swap
    // places with "b" and invite it to take one back.
    let listed = dealt(&[("b", 2), ("c", 2), ("me", 1)]);
    for seed in 0..20 {
        assert_eq!(plan_for(5, &listed, seed), vec![]);
    }
}

#[test]
fn the_plan_depends_on_the_seed_not_on_the_listing_order() {
    let mut listed = dealt(&[("b", 5), ("c", 5)]);
    listed.push(record("10", "", "e10", 1));
    listed.push(record("11", "gone", "e11", 600));
    let first = plan_for(16, &listed, 7);
    listed.reverse();
    listed.swap(0, 5);
    assert_eq!(plan_for(16, &listed, 7), first);
}

/// Random listings, checked against the rules computed here from the raw records.
#[test]
fn random_listings_keep_the_rules() {
    let mut rng = SplitMix64(11);
    for _ in 0..500 {
        let n = 1 + rng.below(16) as usize;
        let owners = ["me", "b", "c", "d"];
        // (partition, owner, age in seconds); a fifth of the partitions have no record.
        let mut made = Vec::new();
        for p in 0..n {
            if rng.chance(0.2) {
                continue;
            }
            let owner = match rng.below(10) {
                0 => "",
                i => owners[i as usize % 4],
            };
            made.push((p.to_string(), owner, rng.below(90) as i64 - 10));
        }
        let listed: Vec<Owned> = made
            .iter()
            .map(|(p, owner, age)| record(p, owner, &format!("e{p}"), *age))
            .collect();
        // Active, by the rules: an owner, and younger than 60 s (or from the future).
        let active: BTreeMap<&str, &str> = made
            .iter()
            .filter(|(_, owner, age)| !owner.is_empty() && *age < 60)
            .map(|(p, owner, _)| (p.as_str(), *owner))
            .collect();
        let count = |o: &str| active.values().filter(|&&owner| owner == o).count();
        let k = 1 + owners[1..].iter().filter(|o| count(o) > 0).count();
        let (mine, max) = (count("me"), n.div_ceil(k));

        let choices = plan_for(n, &listed, rng.next_u64());
        assert_eq!(partitions_of(&choices).len(), choices.len(), "duplicates");
        let steals = choices.iter().filter(|c| c.steal_from.is_some()).count();
        assert!(steals == 0 || choices.len() == 1, "a steal comes alone");
        assert!(choices.len() <= max.saturating_sub(mine).max(1));
        for c in &choices {
            let listed_etag = listed
                .iter()
                .find(|r| r.partition == c.partition)
                .map(|r| r.props.etag.clone());
            assert_eq!(c.version, listed_etag, "{c:?}");
            match (&c.steal_from, active.get(c.partition.as_str())) {
                (None, None) => {}
                (Some(victim), Some(&owner)) if owner == victim && victim != "me" => {
                    assert!(count(victim) >= mine + 2, "{c:?}");
                }
                other => panic!("{c:?} against {other:?}"),
            }
        }
    }
}

// ---- A simulation of replicas sharing a store with the blob service's conditions ----

const INTERVAL: Duration = Duration::from_secs(10);

/// Ownership records with the service's conditional write.
#[derive(Default)]
struct Store {
    records: BTreeMap<String, Owned>,
    writes: u64,
}

impl Store {
    /// Wins only when `version` is the record's current ETag, or is None and there is no
    /// record; a win stamps a new ETag and `now`.
    fn write(
        &mut self,
        p: &str,
        owner: &str,
        version: Option<&str>,
        now: SystemTime,
    ) -> Option<String> {
        let current = self.records.get(p).map(|r| r.props.etag.as_str());
        if current != version {
            return None;
        }
        self.writes += 1;
        let etag = format!("0x{:x}", self.writes);
        let props = BlobProps {
            etag: etag.clone(),
            last_modified: now,
        };
        let (partition, owner) = (p.to_string(), owner.to_string());
        self.records.insert(
            p.to_string(),
            Owned {
                partition,
                owner,
                props,
            },
        );
        Some(etag)
    }

    fn list(&self) -> Vec<Owned> {
        self.records.values().cloned().collect()
    }

    /// Each partition's recorded owner, whether or not the record expired.
    fn owners(&self) -> BTreeMap<String, String> {
        self.records
            .iter()
            .map(|(p, r)| (p.clone(), r.owner.clone()))
            .collect()
    }
}

struct Replica {
    id: String,
    /// What it believes it owns: partition → the version it last wrote.
    held: BTreeMap<String, String>,
    rng: SplitMix64,
    alive: bool,
}

impl Replica {
    /// Renews every record it holds; a failed renewal means it was taken.
    fn renew(&mut self, store: &mut Store, now: SystemTime) {
        self.held
            .retain(|p, etag| match store.write(p, &self.id, Some(etag), now) {
                Some(new) => {
                    *etag = new;
                    true
                }
                None => false,
            });
    }

    fn claim(&mut self, store: &mut Store, choice: &Choice, now: SystemTime) -> bool {
        assert!(
            !self.held.contains_key(&choice.partition),
            "{choice:?} is mine"
        );
        let won = store.write(&choice.partition, &self.id, choice.version.as_deref(), now);
        won.map(|etag| self.held.insert(choice.partition.clone(), etag))
            .is_some()
    }

    /// One planning step against a listing taken just now, so every claim must win.
    fn balance(&mut self, store: &mut Store, partitions: &[String], now: SystemTime) {
        let choices = plan(
            partitions,
            &store.list(),
            &self.id,
            now,
            EXPIRY,
            &mut self.rng,
        );
        for c in &choices {
            assert!(self.claim(store, c, now), "{} lost {c:?}", self.id);
        }
    }

    /// Shuts down politely: hands every record back with an empty owner. A write that
    /// loses was a partition taken since the last renewal, no longer its to hand back.
    fn relinquish(&mut self, store: &mut Store, now: SystemTime) {
        for (p, etag) in std::mem::take(&mut self.held) {
            store.write(&p, "", Some(&etag), now);
        }
        self.alive = false;
    }
}

struct Sim {
    store: Store,
    replicas: Vec<Replica>,
    partitions: Vec<String>,
    now: SystemTime,
    /// Orders the replicas' cycles within a round.
    rng: SplitMix64,
}

impl Sim {
    fn new(replicas: usize, partitions: usize, seed: u64) -> Sim {
        let mut sim = Sim {
            store: Store::default(),
            replicas: Vec::new(),
            partitions: ids(partitions),
            now: now(),
            rng: SplitMix64(seed),
        };
        (0..replicas).for_each(|_| sim.join());
        sim
    }

    fn join(&mut self) {
        let seed = self.rng.next_u64();
        self.replicas.push(Replica {
            id: format!("r{}", self.replicas.len()),
            held: BTreeMap::new(),
            rng: SplitMix64(seed),
            alive: true,
        });
    }

    fn live(&self) -> Vec<usize> {
        (0..self.replicas.len())
            .filter(|&i| self.replicas[i].alive)
            .collect()
    }

    fn shuffled_live(&mut self) -> Vec<usize> {
        let mut order = self.live();
        for i in (1..order.len()).rev() {
            order.swap(i, random_index(i + 1, &mut self.rng));
        }
        order
    }

    /// Every live replica renews, then each plans and claims in turn, in a random order
    /// (the SDKs jitter their intervals, so the order drifts from round to round).
    fn round(&mut self) {
        self.renew_all();
        for i in self.shuffled_live() {
            self.replicas[i].balance(&mut self.store, &self.partitions, self.now);
        }
    }

    /// Like [`Sim::round`], but every replica plans from the same listing before anyone
    /// claims: replicas started together racing for the same partitions. Returns how
    /// many claims lost.
    fn round_together(&mut self) -> usize {
        self.renew_all();
        let listed = self.store.list();
        let mut claims = Vec::new();
        for i in self.live() {
            let r = &mut self.replicas[i];
            let choices = plan(
                &self.partitions,
                &listed,
                &r.id,
                self.now,
                EXPIRY,
                &mut r.rng,
            );
            claims.extend(choices.into_iter().map(|c| (i, c)));
        }
        for i in (1..claims.len()).rev() {
            claims.swap(i, random_index(i + 1, &mut self.rng));
        }
        claims
            .iter()
            .filter(|(i, c)| !self.replicas[*i].claim(&mut self.store, c, self.now))
            .count()
    }

    fn renew_all(&mut self) {
        self.now += INTERVAL;
        for i in self.live() {
            self.replicas[i].renew(&mut self.store, self.now);
        }
        self.assert_exclusive();
    }

    /// After renewals every belief is confirmed by the store, so no two replicas believe
    /// they own the same partition. (Between a steal and the victim's next renewal both
    /// do; the SDKs' processors have the same window.)
    fn assert_exclusive(&self) {
        let mut seen = BTreeMap::new();
        for r in self.replicas.iter().filter(|r| r.alive) {
            for (p, etag) in &r.held {
                let stored = &self.store.records[p];
                assert_eq!((&stored.owner, &stored.props.etag), (&r.id, etag));
                if let Some(other) = seen.insert(p, &r.id) {
                    panic!("{p} is held by {other} and {}", r.id);
                }
            }
        }
    }

    /// Judged from the store, not from the planner's [`View`]: every partition is
    /// recorded to a live replica, and every live replica has a fair share.
    fn balanced(&self) -> bool {
        let live: Vec<&str> = self
            .live()
            .iter()
            .map(|&i| self.replicas[i].id.as_str())
            .collect();
        let owners = self.store.owners();
        let all_owned = self
            .partitions
            .iter()
            .all(|p| owners.get(p).is_some_and(|o| live.contains(&o.as_str())));
        let n = self.partitions.len();
        let (min, max) = (n / live.len(), n.div_ceil(live.len()));
        let fair = |id: &&str| (min..=max).contains(&owners.values().filter(|o| o == id).count());
        all_owned && live.iter().all(fair)
    }

    /// Runs rounds until balanced; how many it took, or None past `limit`.
    fn rounds_to_balance(&mut self, limit: usize) -> Option<usize> {
        (1..=limit).find(|_| {
            self.round();
            self.balanced()
        })
    }

    /// Runs rounds and asserts that no partition changes hands.
    fn assert_still(&mut self, rounds: usize) {
        let before = self.store.owners();
        for _ in 0..rounds {
            self.round();
            assert_eq!(self.store.owners(), before);
        }
    }
}

/// (replicas, partitions) of the simulated deployments.
const SHAPES: [(usize, usize); 2] = [(3, 8), (4, 32)];
const SEEDS: u64 = 25;

/// A balanced deployment, or a failed test.
fn balanced_sim(replicas: usize, partitions: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(replicas, partitions, seed);
    sim.rounds_to_balance(20).expect("balances");
    sim
}

#[test]
fn sim_replicas_balance_from_a_cold_start_then_hold_still() {
    for (replicas, n) in SHAPES {
        for seed in 0..SEEDS {
            let mut sim = Sim::new(replicas, n, seed);
            // The first replica to cycle finds nothing owned and takes everything; each
            // of the others steals one partition per round, from its first round on, so
            // none needs more rounds than the largest share.
            let bound = n.div_ceil(replicas);
            let rounds = sim.rounds_to_balance(bound);
            assert!(rounds.is_some(), "{replicas}×{n} seed {seed}");
            sim.assert_still(5);
        }
    }
}

#[test]
fn sim_replicas_started_together_race_and_one_claim_wins_each() {
    let mut lost = 0;
    for (replicas, n) in SHAPES {
        for seed in 0..SEEDS {
            let mut sim = Sim::new(replicas, n, seed);
            lost += sim.round_together();
            // The racers split the partitions at random; whoever is behind then gains
            // one steal per round, and no one is further behind than a whole share.
            let bound = n.div_ceil(replicas);
            assert!(
                sim.rounds_to_balance(bound).is_some(),
                "{replicas}×{n} seed {seed}"
            );
            sim.assert_still(5);
        }
    }
    assert!(
        lost > 0,
        "the racers never collided: the test proves nothing"
    );
}

#[test]
fn sim_survivors_take_over_a_dead_replica_once_its_records_expire() {
    for (replicas, n) in SHAPES {
        for seed in 0..SEEDS {
            let mut sim = balanced_sim(replicas, n, seed);
            sim.replicas[0].alive = false;
            let expired = sim.now + EXPIRY;
            let before = sim.store.owners();
            while sim.now + INTERVAL < expired {
                sim.round();
                assert_eq!(sim.store.owners(), before, "taken before expiry");
            }
            // Greedy claims: each survivor in turn claims up to its new max, and the
            // maxima cover every partition, so one round does it.
            let rounds = sim.rounds_to_balance(1);
            assert!(rounds.is_some(), "{replicas}×{n} seed {seed}");
        }
    }
}

#[test]
fn sim_a_joining_replica_steals_its_share() {
    for (replicas, n) in SHAPES {
        for seed in 0..SEEDS {
            let mut sim = balanced_sim(replicas, n, seed);
            sim.join();
            // Nothing is claimable, so it gains one steal per round up to its share;
            // its victims (here all above the new max) never take one back.
            let bound = n / (replicas + 1);
            assert!(
                sim.rounds_to_balance(bound).is_some(),
                "{replicas}×{n} seed {seed}"
            );
            sim.assert_still(5);
        }
    }
}

#[test]
fn sim_relinquished_partitions_are_taken_in_the_next_round() {
    for (replicas, n) in SHAPES {
        for seed in 0..SEEDS {
            let mut sim = balanced_sim(replicas, n, seed);
            let now = sim.now;
            sim.replicas[0].relinquish(&mut sim.store, now);
            sim.round();
            let owners = sim.store.owners();
            assert!(
                owners.values().all(|o| !o.is_empty() && o != "r0"),
                "{owners:?}"
            );
            assert!(
                owners.len() == n && sim.balanced(),
                "{replicas}×{n} seed {seed}"
            );
        }
    }
}
