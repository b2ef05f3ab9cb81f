//! Persistent tables with a max index and tombstones.
//!
//! Rows and keys are kept behind `Arc`: a write to a table a reader's snapshot still
//! shares copies the B-tree path down to the leaf, and a leaf chunk holds up to 64
//! rows. With rows inline that copy deep-cloned every key string and value of the
//! chunk (kilobytes and ~190 allocations per KV write, half of the raft thread's time
//! under load); behind `Arc` it is reference-count bumps.
//!
//! Even as reference-count bumps that copy was the largest single cost of applying
//! a write: the state is published after every applied batch, so the next batch's
//! writes find every node shared again, and each write to a large table copied a
//! whole path (four levels of 64-wide nodes, ~700 counted references, and as many
//! again when the old path is freed). So a table keeps recent changes in a small
//! second map, the *delta*, in front of the big *base*: a write copies at most the
//! delta's short path, and the base is changed only when the delta is folded into
//! it, every [`DELTA_MAX`] changes, when one copy of each touched path serves many
//! writes. Reads look in the delta first; scans merge the two in key order.
//!
//! A base of more than [`BLOOM_FROM`] rows also has a Bloom filter of its keys
//! (module `bloom`), so looking up a key the base does not hold — what every
//! write of a new key does first — rarely descends the B-tree.

use std::cmp::Ordering;
use std::iter::Peekable;
use std::sync::Arc;

use imbl::OrdMap;

use crate::bloom::Bloom;

/// Changes held in a table's delta before they are folded into its base. Small
/// enough that the delta stays two levels deep (cheap to copy per write) and a
/// a fold (done within one write) a short pause of the raft thread, large
/// enough that a fold's path copies are shared by many writes. (4,096 cut the
/// apply bench's cost per write about 2.6-fold when writes spread over 512 key
/// ranges, but gained nothing in the cluster benchmark, whose 64-client rows
/// were if anything slower: BENCHMARKS.md, "State store apply".)
pub const DELTA_MAX: usize = 256;

/// Base rows from which a table keeps a Bloom filter of them: below this the
/// B-tree is two or three levels, mostly in cache, and hashing would cost more
/// than the lookups it saves.
pub const BLOOM_FROM: usize = 4096;

/// A deleted key's last index, kept so prefix indexes never go backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tombstone {
    /// The index of the delete.
    pub index: u64,
}

/// A table of rows keyed by string.
///
/// Cloning is O(1) (structural sharing), which is what makes read snapshots cheap.
#[derive(Debug, Clone)]
pub struct Table<V: Clone> {
    /// Rows as of the last fold.
    base: OrdMap<Arc<str>, Arc<V>>,
    /// Changes since the last fold: `Some` a row inserted or replaced, `None` a row
    /// of `base` deleted.
    delta: OrdMap<Arc<str>, Option<Arc<V>>>,
    /// Live rows, counting both maps.
    len: usize,
    tombstones: OrdMap<Arc<str>, Tombstone>,
    keep_tombstones: bool,
    max_index: u64,
    /// Every key the base held since the filter was built, once it is large.
    bloom: Option<Bloom>,
}

impl<V: Clone> Default for Table<V> {
    fn default() -> Self {
        Self::new(false)
    }
}

impl<V: Clone> Table<V> {
    /// An empty table; with `keep_tombstones`, deletes leave a [`Tombstone`].
    pub fn new(keep_tombstones: bool) -> Self {
        Self {
            base: OrdMap::new(),
            delta: OrdMap::new(),
            len: 0,
            tombstones: OrdMap::new(),
            keep_tombstones,
            max_index: 0,
            bloom: None,
        }
    }

    /// The highest index at which this table changed (inserts, updates, deletes).
    pub fn max_index(&self) -> u64 {
        self.max_index
    }

    /// Raises the table index (used when a change elsewhere must be visible here).
    pub fn bump(&mut self, index: u64) {
        self.max_index = self.max_index.max(index);
    }

    /// Number of live rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no live rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One row.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.get_arc(key).map(|v| &**v)
    }

    fn get_arc(&self, key: &str) -> Option<&Arc<V>> {
        match self.delta.get(key) {
            Some(change) => change.as_ref(),
            None => self.base_get(key),
        }
    }

    /// A row of the base, asking the Bloom filter (if any) first.
    fn base_get(&self, key: &str) -> Option<&Arc<V>> {
        if self.bloom.as_ref().is_some_and(|b| !b.may_contain(key)) {
            return None;
        }
        self.base.get(key)
    }

    /// Inserts or replaces a row at `index`; a tombstone for the key is cleared.
    pub fn insert(&mut self, key: String, value: V, index: u64) -> Option<V> {
        self.max_index = self.max_index.max(index);
        if self.keep_tombstones {
            self.tombstones.remove(key.as_str());
        }
        let key: Arc<str> = Arc::from(key);
        let old = match self.delta.insert(key.clone(), Some(Arc::new(value))) {
            Some(change) => change,
            None => self.base_get(&key).cloned(),
        };
        if old.is_none() {
            self.len += 1;
        }
        self.fold_if_full();
        old.map(Arc::unwrap_or_clone)
    }

    /// [`Table::insert`] for a caller that has just looked `key` up: `existed` says
    /// whether it found a row. Saves `insert`'s second lookup of the key in the
    /// base (on a large table, key comparisons down four levels, mostly cache
    /// misses) and the copy of the old row it returns.
    pub fn insert_known(&mut self, key: String, value: V, index: u64, existed: bool) {
        debug_assert_eq!(self.get(&key).is_some(), existed, "insert_known({key})");
        self.max_index = self.max_index.max(index);
        if self.keep_tombstones {
            self.tombstones.remove(key.as_str());
        }
        self.delta.insert(Arc::from(key), Some(Arc::new(value)));
        if !existed {
            self.len += 1;
        }
        self.fold_if_full();
    }

    /// Deletes a row at `index`, leaving a tombstone if the table keeps them.
    pub fn remove(&mut self, key: &str, index: u64) -> Option<V> {
        // Where the row was found says whether the base holds the key, without a
        // second lookup there.
        let (old, in_base) = match self.delta.get(key) {
            Some(change) => (change.clone(), None),
            None => (self.base_get(key).cloned(), Some(true)),
        };
        if old.is_some() {
            self.len -= 1;
            if in_base.unwrap_or_else(|| self.base_get(key).is_some()) {
                self.delta.insert(Arc::from(key), None);
            } else {
                // Only ever in the delta: nothing to hide in the base.
                self.delta.remove(key);
            }
            self.fold_if_full();
            self.max_index = self.max_index.max(index);
            if self.keep_tombstones {
                self.tombstones.insert(Arc::from(key), Tombstone { index });
            }
        }
        old.map(Arc::unwrap_or_clone)
    }

    /// Rows whose key starts with `prefix`, in key order.
    pub fn prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a V)> + 'a {
        let from = (
            std::ops::Bound::Included(prefix),
            std::ops::Bound::Unbounded,
        );
        Merged::new(
            self.base.range::<_, str>(from),
            self.delta.range::<_, str>(from),
        )
        .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// Rows whose key starts with `prefix` (an owned prefix, so the iterator does not
    /// borrow a temporary).
    pub fn prefix_owned(&self, prefix: String) -> impl Iterator<Item = (&str, &V)> + '_ {
        let start: Arc<str> = Arc::from(prefix.as_str());
        Merged::new(self.base.range(start.clone()..), self.delta.range(start..))
            .take_while(move |(k, _)| k.starts_with(prefix.as_str()))
    }

    /// Every row in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        Merged::new(self.base.iter(), self.delta.iter())
    }

    /// Folds the delta into the base once it holds [`DELTA_MAX`] changes.
    fn fold_if_full(&mut self) {
        if self.delta.len() < DELTA_MAX {
            return;
        }
        // By reference, not `into_iter`: imbl's consuming iterator clones the
        // root node twice and grows a stack per call, which cost more than the
        // folding itself (apply bench profile: 11% of all samples); here the
        // clones are reference-count bumps, undone when the old delta drops.
        let delta = std::mem::take(&mut self.delta);
        for (key, change) in delta.iter() {
            match change {
                Some(row) => {
                    if let Some(bloom) = &mut self.bloom {
                        bloom.add(key);
                    }
                    self.base.insert(key.clone(), row.clone());
                }
                None => {
                    self.base.remove(&**key);
                }
            }
        }
        drop(delta);
        if self.base.len() >= BLOOM_FROM && self.bloom.as_ref().is_none_or(Bloom::is_full) {
            // Sized for twice the rows, so the next build is after as many
            // inserts again: the builds' cost stays proportional to the inserts.
            let mut bloom = Bloom::with_capacity(self.base.len() * 2);
            for key in self.base.keys() {
                bloom.add(key);
            }
            self.bloom = Some(bloom);
        }
    }

    /// Tombstones whose key starts with `prefix`.
    pub fn tombstones_under<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Tombstone)> + 'a {
        self.tombstones
            .range::<_, str>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, t)| (&**k, t))
    }

    /// Every tombstone.
    pub fn tombstones(&self) -> impl Iterator<Item = (&str, &Tombstone)> {
        self.tombstones.iter().map(|(k, t)| (&**k, t))
    }

    /// Restores a tombstone (snapshot restore).
    pub fn restore_tombstone(&mut self, key: String, index: u64) {
        self.max_index = self.max_index.max(index);
        self.tombstones.insert(Arc::from(key), Tombstone { index });
    }

    /// Drops tombstones at or below `index` (the leader's tombstone GC).
    pub fn reap_tombstones(&mut self, index: u64) -> usize {
        let dead: Vec<Arc<str>> = self
            .tombstones
            .iter()
            .filter(|(_, t)| t.index <= index)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &dead {
            self.tombstones.remove(&**k);
        }
        dead.len()
    }
}

/// The rows of a base and a delta iterator over the same key range, in key
/// order: a key in the delta hides the base's row, and a deleted (`None`) one is
/// skipped.
struct Merged<'a, V, B, D>
where
    B: Iterator<Item = (&'a Arc<str>, &'a Arc<V>)>,
    D: Iterator<Item = (&'a Arc<str>, &'a Option<Arc<V>>)>,
    V: 'a,
{
    base: Peekable<B>,
    delta: Peekable<D>,
}

impl<'a, V, B, D> Merged<'a, V, B, D>
where
    B: Iterator<Item = (&'a Arc<str>, &'a Arc<V>)>,
    D: Iterator<Item = (&'a Arc<str>, &'a Option<Arc<V>>)>,
{
    fn new(base: B, delta: D) -> Self {
        Merged {
            base: base.peekable(),
            delta: delta.peekable(),
        }
    }
}

impl<'a, V, B, D> Iterator for Merged<'a, V, B, D>
where
    B: Iterator<Item = (&'a Arc<str>, &'a Arc<V>)>,
    D: Iterator<Item = (&'a Arc<str>, &'a Option<Arc<V>>)>,
{
    type Item = (&'a str, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.base.peek(), self.delta.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((b, _)), Some((d, _))) => b.cmp(d),
            };
            if order == Ordering::Less {
                return self.base.next().map(|(k, v)| (&**k, &**v));
            }
            if order == Ordering::Equal {
                // The delta's change replaces the base's row.
                self.base.next();
            }
            if let Some((k, Some(v))) = self.delta.next() {
                return Some((&**k, &**v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_scan_and_tombstones() {
        let mut t: Table<u32> = Table::new(true);
        t.insert("a/1".into(), 1, 5);
        t.insert("a/2".into(), 2, 6);
        t.insert("b".into(), 3, 7);
        assert_eq!(t.prefix("a/").count(), 2);
        assert_eq!(t.remove("a/2", 8), Some(2));
        assert_eq!(t.max_index(), 8);
        assert_eq!(
            t.tombstones_under("a/").map(|(_, t)| t.index).max(),
            Some(8)
        );
        t.insert("a/2".into(), 9, 9);
        assert_eq!(t.tombstones_under("a/").count(), 0);
        t.remove("a/2", 10);
        assert_eq!(t.reap_tombstones(9), 0);
        assert_eq!(t.reap_tombstones(10), 1);
    }

    #[test]
    fn clone_is_a_snapshot() {
        let mut t: Table<u32> = Table::new(false);
        t.insert("k".into(), 1, 1);
        let snap = t.clone();
        t.insert("k".into(), 2, 2);
        assert_eq!(snap.get("k"), Some(&1));
        assert_eq!(t.get("k"), Some(&2));
        // Removing a missing key does not move the index.
        t.remove("zz", 50);
        assert_eq!(t.max_index(), 2);
    }

    /// The table against a `BTreeMap` under a seeded mix of inserts, replaces and
    /// deletes over a small key space, across many folds, with snapshots taken
    /// along the way checked to stay as they were.
    #[test]
    fn base_and_delta_behave_as_one_map() {
        let t = behaves_as_one_map(120, DELTA_MAX as u64 * 12);
        assert!(t.bloom.is_none());
        assert!(!t.base.is_empty(), "no fold happened");
    }

    /// The same over a key space large enough for many folds and a base with a
    /// Bloom filter, rebuilt as it grows, deletes included (their keys stay in
    /// the filter).
    #[test]
    fn a_base_with_a_bloom_filter_behaves_as_one_map() {
        let t = behaves_as_one_map(4000, BLOOM_FROM as u64 * 8);
        assert!(t.bloom.is_some());
        assert!(t.len() > BLOOM_FROM);
        // Folds happened, deletes of base rows among them.
        assert!(t.base.len() > DELTA_MAX);
        assert!(t.delta.values().any(Option::is_none));
    }

    /// Two copies of a large table written apart (a read snapshot's, a rolled-back
    /// working copy's) share one filter that both add to: each still finds
    /// exactly its own rows.
    #[test]
    fn diverging_copies_sharing_a_filter_keep_their_own_rows() {
        let mut a: Table<u64> = Table::new(false);
        for i in 0..(BLOOM_FROM as u64 + DELTA_MAX as u64) {
            a.insert(format!("k/{i}"), i, i);
        }
        assert!(a.bloom.is_some());
        let mut b = a.clone();
        for i in 0..(DELTA_MAX as u64 * 3) {
            a.insert(format!("a/{i}"), i, i);
            b.insert(format!("b/{i}"), i, i);
        }
        for i in 0..(DELTA_MAX as u64 * 3) {
            assert_eq!(a.get(&format!("a/{i}")), Some(&i));
            assert_eq!(a.get(&format!("b/{i}")), None);
            assert_eq!(b.get(&format!("b/{i}")), Some(&i));
            assert_eq!(b.get(&format!("a/{i}")), None);
        }
        assert_eq!(a.get("k/7"), Some(&7));
        assert_eq!(b.get("k/7"), Some(&7));
    }

    /// Runs `steps` seeded operations over keys `k/<0..8>/<0..per_dir>`; returns
    /// the table.
    fn behaves_as_one_map(per_dir: u64, steps: u64) -> Table<u64> {
        use std::collections::BTreeMap;
        let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut t: Table<u64> = Table::new(true);
        let mut model: BTreeMap<String, u64> = BTreeMap::new();
        let mut snaps: Vec<(Table<u64>, BTreeMap<String, u64>)> = Vec::new();
        for step in 1..=steps {
            let key = format!("k/{:02}/{}", next(8), next(per_dir));
            if next(3) == 0 {
                assert_eq!(t.remove(&key, step), model.remove(&key), "remove {key}");
            } else if next(2) == 0 {
                let existed = t.get(&key).is_some();
                t.insert_known(key.clone(), step, step, existed);
                model.insert(key, step);
            } else {
                assert_eq!(t.insert(key.clone(), step, step), model.insert(key, step));
            }
            assert_eq!(t.len(), model.len());
            if step % (steps / 30) == 0 {
                snaps.push((t.clone(), model.clone()));
            }
            if step % 31 == 0 {
                let p = format!("k/{:02}/", next(8));
                let got: Vec<(String, u64)> =
                    t.prefix(&p).map(|(k, v)| (k.to_owned(), *v)).collect();
                let want: Vec<(String, u64)> = model
                    .range(p.clone()..)
                    .take_while(|(k, _)| k.starts_with(&p))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                assert_eq!(got, want, "prefix {p} at step {step}");
                assert_eq!(t.prefix_owned(p).count(), want.len());
            }
        }
        for (snap, want) in snaps.iter().chain(std::iter::once(&(t.clone(), model))) {
            // Keys never written are absent (the filter's false positives fall
            // through to the B-tree).
            assert!((0..200).all(|i| snap.get(&format!("k/00/x{i}")).is_none()));
            let got: Vec<(String, u64)> = snap.iter().map(|(k, v)| (k.to_owned(), *v)).collect();
            let want: Vec<(String, u64)> = want.iter().map(|(k, v)| (k.clone(), *v)).collect();
            assert_eq!(got, want);
            assert_eq!(snap.len(), want.len());
            for (k, v) in &want {
                assert_eq!(snap.get(k), Some(v));
            }
        }
        t
    }
}
