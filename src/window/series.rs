//! The series of a `summarize`, by key, packed for a million of them.
//!
//! A `HashMap<Key, V>` keeps each entry in its bucket array, which holds between 1.1 and
//! 2.3 buckets per entry: with 48-byte entries that was a third of a series' memory. Here
//! the entries sit densely in a vector and the hash table holds only their 4-byte places.
//! Removing an entry moves the last one into its place (and fixes that one's place in the
//! table), so the vector never has holes.
//!
//! Key strings are shared: a new series takes the table's copy of each string of its key
//! if it has one. Keys repeat their values across series (the workspace of each of its
//! clusters, the cluster of each of its jobs), and each row otherwise brings a fresh copy.
//! Strings no series uses any more are let go once the table has lost half its series.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use crate::value::Value;

use super::query::Key;

pub(super) struct SeriesTable<V> {
    places: HashTable<u32>,
    entries: Vec<(Key, V)>,
    strings: Strings,
}

impl<V> Default for SeriesTable<V> {
    fn default() -> Self {
        SeriesTable {
            places: HashTable::new(),
            entries: Vec::new(),
            strings: Strings::default(),
        }
    }
}

fn hash(key: &[Value]) -> u64 {
    FxBuildHasher.hash_one(key)
}

impl<V> SeriesTable<V> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The series of `key`, made with `new` if it is not held and `admit` allows.
    pub fn get_or_insert(
        &mut self,
        key: Key,
        admit: impl FnOnce() -> bool,
        new: impl FnOnce() -> V,
    ) -> Option<&mut V> {
        let h = hash(&key);
        let entries = &self.entries;
        let found = self
            .places
            .find(h, |&at| entries[at as usize].0 == key)
            .copied();
        let at = match found {
            Some(at) => at as usize,
            None => {
                if !admit() {
                    return None;
                }
                self.push(h, key, new())
            }
        };
        Some(&mut self.entries[at].1)
    }

    /// Adds a series (a snapshot's); false, and nothing changes, if its key is held.
    pub fn insert_new(&mut self, key: Key, value: V) -> bool {
        if self.contains(&key) {
            return false;
        }
        self.push(hash(&key), key, value);
        true
    }

    /// Room for `n` more series (at most a snapshot's count: the caller bounds it).
    pub fn reserve(&mut self, n: usize) {
        self.entries.reserve_exact(n);
        let entries = &self.entries;
        self.places.reserve(n, |&i| hash(&entries[i as usize].0));
    }

    pub fn contains(&self, key: &[Value]) -> bool {
        self.places
            .find(hash(key), |&at| &self.entries[at as usize].0[..] == key)
            .is_some()
    }

    fn push(&mut self, h: u64, mut key: Key, value: V) -> usize {
        let at = self.entries.len();
        let place = u32::try_from(at).expect("fewer than 2^32 series (max_series bounds them)");
        self.strings.share(&mut key);
        let entries = &self.entries;
        self.places
            .insert_unique(h, place, |&i| hash(&entries[i as usize].0));
        self.entries.push((key, value));
        at
    }

    /// Keeps the series for which `keep` is true (it may change them).
    pub fn retain(&mut self, mut keep: impl FnMut(&Key, &mut V) -> bool) {
        let before = self.entries.len();
        let mut at = 0;
        while at < self.entries.len() {
            let (key, value) = &mut self.entries[at];
            if keep(key, value) {
                at += 1;
            } else {
                self.remove(at);
            }
        }
        if self.entries.len() < before {
            self.strings
                .released(before - self.entries.len(), &self.entries);
            // Give memory back after a large drop, not after every small one.
            if self.entries.len() < self.entries.capacity() / 4 {
                self.entries.shrink_to(self.entries.len() * 2);
                let entries = &self.entries;
                self.places
                    .shrink_to(entries.len(), |&i| hash(&entries[i as usize].0));
            }
        }
    }

    /// Removes the entry at `at`; the last one takes its place.
    fn remove(&mut self, at: usize) {
        let last = self.entries.len() - 1;
        let h = hash(&self.entries[at].0);
        let place = at as u32;
        match self.places.find_entry(h, |&i| i == place) {
            Ok(entry) => {
                entry.remove();
            }
            Err(_) => unreachable!("every entry has its place"),
        }
        if at != last {
            let moved = hash(&self.entries[last].0);
            let from = last as u32;
            if let Some(p) = self.places.find_mut(moved, |&i| i == from) {
                *p = place;
            }
        }
        self.entries.swap_remove(at);
    }
}

/// The strings of the keys held, one copy of each, per key column.
#[derive(Default)]
struct Strings {
    columns: Vec<Column>,
    /// Series removed since the last sweep.
    released: usize,
}

#[derive(Default)]
struct Column {
    set: HashSet<Arc<str>, FxBuildHasher>,
    /// New series whose string was held already, and those that brought a new one.
    shared: u64,
    new: u64,
    /// The column's values hardly repeat (an id per series): holding them would only add
    /// the set's entry to each.
    off: bool,
}

/// New strings a column is judged on.
const TRIAL: u64 = 4096;

impl Strings {
    /// Replaces each string of `key` by the held copy, or holds it.
    fn share(&mut self, key: &mut Key) {
        if self.columns.len() < key.len() {
            self.columns.resize_with(key.len(), Column::default);
        }
        for (v, column) in key.iter_mut().zip(&mut self.columns) {
            let Value::Str(s) = v else { continue };
            if column.off {
                continue;
            }
            match column.set.get(&**s) {
                Some(held) => {
                    *s = held.clone();
                    column.shared += 1;
                }
                None => {
                    column.set.insert(s.clone());
                    column.new += 1;
                    // A shared string saves about what a held one costs (its set entry):
                    // worth it while most new series find theirs.
                    if column.new == TRIAL && column.shared < column.new {
                        column.off = true;
                        column.set = HashSet::default();
                    }
                }
            }
        }
    }

    /// Counts `n` removed series; once the table has lost as many as it still holds (and
    /// at least a thousand), lets go of the strings no key uses (only the set holds them).
    fn released<V>(&mut self, n: usize, left: &[(Key, V)]) {
        self.released += n;
        if self.released >= left.len().max(1024) {
            for column in &mut self.columns {
                column.set.retain(|s| Arc::strong_count(s) > 1);
            }
            self.released = 0;
        }
    }

    fn held(&self) -> usize {
        self.columns.iter().map(|c| c.set.len()).sum()
    }
}

impl<V> std::fmt::Debug for SeriesTable<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesTable")
            .field("series", &self.entries.len())
            .field("strings", &self.strings.held())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: &[&str]) -> Key {
        parts.iter().map(|s| Value::str(s)).collect()
    }

    #[test]
    fn entries_are_found_after_others_move_into_their_place() {
        let mut t: SeriesTable<usize> = SeriesTable::default();
        for i in 0..1000 {
            let k = key(&[&format!("ws-{}", i / 10), &format!("c-{i}")]);
            *t.get_or_insert(k, || true, || 0).unwrap() = i;
        }
        t.retain(|_, v| *v % 3 != 0);
        assert_eq!(t.len(), 666);
        for i in 0..1000 {
            let k = key(&[&format!("ws-{}", i / 10), &format!("c-{i}")]);
            assert_eq!(t.contains(&k), i % 3 != 0, "series {i}");
            if i % 3 != 0 {
                assert_eq!(*t.get_or_insert(k, || false, || 0).unwrap(), i);
            }
        }
        let mut seen: Vec<usize> = t.iter().map(|(_, v)| *v).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).filter(|i| i % 3 != 0).collect::<Vec<_>>());
    }

    #[test]
    fn admit_decides_for_new_series_only() {
        let mut t: SeriesTable<u8> = SeriesTable::default();
        assert!(t.get_or_insert(key(&["a"]), || false, || 1).is_none());
        assert_eq!(t.len(), 0);
        t.get_or_insert(key(&["a"]), || true, || 1);
        assert_eq!(
            t.get_or_insert(key(&["a"]), || panic!("not asked"), || 2),
            Some(&mut 1)
        );
    }

    #[test]
    fn keys_share_their_strings_and_unused_ones_are_let_go() {
        let mut t: SeriesTable<()> = SeriesTable::default();
        for c in 0..3000 {
            t.get_or_insert(key(&["workspace", &format!("cluster-{c}")]), || true, || ());
        }
        let first = t.entries[0].0[0].clone();
        let last = t.entries[2999].0[0].clone();
        match (first, last) {
            (Value::Str(a), Value::Str(b)) => assert!(Arc::ptr_eq(&a, &b), "one copy"),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.strings.held(), 3001);
        t.retain(|k, _| k[1] == Value::str("cluster-7"));
        assert_eq!(t.len(), 1);
        assert_eq!(t.strings.held(), 2, "only the strings of the series left");
        assert!(t.contains(&key(&["workspace", "cluster-7"])));
    }

    #[test]
    fn a_column_of_ids_is_not_held() {
        let mut t: SeriesTable<()> = SeriesTable::default();
        for i in 0..2 * TRIAL {
            let k = key(&[&format!("ws-{}", i % 10), &format!("job-{i}")]);
            t.get_or_insert(k, || true, || ());
        }
        assert!(!t.strings.columns[0].off);
        assert!(t.strings.columns[1].off, "every job is new");
        assert_eq!(t.strings.held(), 10, "the workspaces only");
        assert!(t.contains(&key(&["ws-3", "job-8003"])));
    }
}
