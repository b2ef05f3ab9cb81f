//! Persistent tables with a max index and tombstones.
//!
//! Rows and keys are kept behind `Arc`: a write to a table a reader's snapshot still
//! shares copies the B-tree path down to the leaf, and a leaf chunk holds up to 64
//! rows. With rows inline that copy deep-cloned every key string and value of the
//! chunk (kilobytes and ~190 allocations per KV write, half of the raft thread's time
//! under load); behind `Arc` it is reference-count bumps.

use std::sync::Arc;

use imbl::OrdMap;

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
    rows: OrdMap<Arc<str>, Arc<V>>,
    tombstones: OrdMap<Arc<str>, Tombstone>,
    keep_tombstones: bool,
    max_index: u64,
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
            rows: OrdMap::new(),
            tombstones: OrdMap::new(),
            keep_tombstones,
            max_index: 0,
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
        self.rows.len()
    }

    /// Whether there are no live rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// One row.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.rows.get(key).map(|v| &**v)
    }

    /// Inserts or replaces a row at `index`; a tombstone for the key is cleared.
    pub fn insert(&mut self, key: String, value: V, index: u64) -> Option<V> {
        self.max_index = self.max_index.max(index);
        if self.keep_tombstones {
            self.tombstones.remove(key.as_str());
        }
        self.rows
            .insert(Arc::from(key), Arc::new(value))
            .map(Arc::unwrap_or_clone)
    }

    /// Deletes a row at `index`, leaving a tombstone if the table keeps them.
    pub fn remove(&mut self, key: &str, index: u64) -> Option<V> {
        let old = self.rows.remove(key);
        if old.is_some() {
            self.max_index = self.max_index.max(index);
            if self.keep_tombstones {
                self.tombstones.insert(Arc::from(key), Tombstone { index });
            }
        }
        old.map(Arc::unwrap_or_clone)
    }

    /// Rows whose key starts with `prefix`, in key order.
    pub fn prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a V)> + 'a {
        self.rows
            .range::<_, str>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (&**k, &**v))
    }

    /// Rows whose key starts with `prefix` (an owned prefix, so the iterator does not
    /// borrow a temporary).
    pub fn prefix_owned(&self, prefix: String) -> impl Iterator<Item = (&str, &V)> + '_ {
        let start: Arc<str> = Arc::from(prefix.as_str());
        self.rows
            .range(start..)
            .take_while(move |(k, _)| k.starts_with(prefix.as_str()))
            .map(|(k, v)| (&**k, &**v))
    }

    /// Every row in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.rows.iter().map(|(k, v)| (&**k, &**v))
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
}
