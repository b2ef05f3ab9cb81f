//! The newest raft log entries, kept in memory as they are written.
//!
//! raft-rs reads entries back from storage as soon as they are persisted: the
//! leader to build appends for followers and to learn terms while counting
//! acknowledgements (`maybe_commit`), every server to apply what was committed.
//! Under load that is a RocksDB lookup and a protobuf decode per entry, several
//! times over, for entries written microseconds earlier. This cache holds a
//! contiguous tail of the log (bounded in bytes) so those reads are copies.

use std::collections::VecDeque;

use prost011::Message as _;
use raft::eraftpb::Entry;

/// Bytes of entries kept at most (encoded size).
const MAX_BYTES: usize = 8 << 20;

/// A contiguous run of the newest log entries.
#[derive(Debug, Default)]
pub(super) struct EntryCache {
    entries: VecDeque<Entry>,
    bytes: usize,
}

impl EntryCache {
    /// Records entries just made durable. They replace any cached entries at or
    /// after their first index (a new leader overwriting a conflicting suffix);
    /// if they do not continue the cached run, the run starts over with them.
    pub(super) fn append(&mut self, new: &[Entry]) {
        let Some(first) = new.first() else {
            return;
        };
        match self.first_index() {
            Some(start) if first.index >= start && first.index <= self.next_index() => {
                while self.next_index() > first.index {
                    self.pop_back();
                }
            }
            _ => self.clear(),
        }
        for e in new {
            self.bytes += e.encoded_len();
            self.entries.push_back(e.clone());
        }
        while self.bytes > MAX_BYTES && self.entries.len() > 1 {
            self.pop_front();
        }
    }

    /// The term of the entry at `index`, if cached.
    pub(super) fn term(&self, index: u64) -> Option<u64> {
        self.get(index).map(|e| e.term)
    }

    /// Entries `[low, high)`, limited to `max_size` encoded bytes (but always at
    /// least one), if the cache holds all of them.
    pub(super) fn slice(&self, low: u64, high: u64, max_size: u64) -> Option<Vec<Entry>> {
        let start = self.first_index()?;
        if low < start || high > self.next_index() || low >= high {
            return None;
        }
        let mut out = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        for e in self
            .entries
            .range((low - start) as usize..(high - start) as usize)
        {
            size += e.encoded_len() as u64;
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e.clone());
        }
        Some(out)
    }

    /// Forgets entries at or below `index` (compacted away).
    pub(super) fn compact_to(&mut self, index: u64) {
        while self.first_index().is_some_and(|f| f <= index) {
            self.pop_front();
        }
    }

    /// Forgets everything (the log was reset under a snapshot).
    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    fn get(&self, index: u64) -> Option<&Entry> {
        let start = self.first_index()?;
        let offset = usize::try_from(index.checked_sub(start)?).ok()?;
        self.entries.get(offset)
    }

    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.index)
    }

    /// The index after the newest cached entry (meaningless when empty).
    fn next_index(&self) -> u64 {
        self.entries.back().map_or(0, |e| e.index + 1)
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.encoded_len();
        }
    }

    fn pop_back(&mut self) {
        if let Some(e) = self.entries.pop_back() {
            self.bytes -= e.encoded_len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, len: usize) -> Entry {
        Entry {
            index,
            term,
            data: vec![7; len],
            ..Default::default()
        }
    }

    fn indexes(v: &[Entry]) -> Vec<(u64, u64)> {
        v.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn serves_only_what_it_holds_whole() {
        let mut c = EntryCache::default();
        assert_eq!(c.slice(1, 2, u64::MAX), None);
        c.append(&[entry(5, 1, 10), entry(6, 1, 10), entry(7, 2, 10)]);
        assert_eq!(c.term(6), Some(1));
        assert_eq!(c.term(4), None);
        assert_eq!(c.term(8), None);
        assert_eq!(
            indexes(&c.slice(5, 8, u64::MAX).unwrap()),
            [(5, 1), (6, 1), (7, 2)]
        );
        assert_eq!(c.slice(4, 6, u64::MAX), None, "starts before the cache");
        assert_eq!(c.slice(6, 9, u64::MAX), None, "ends after the cache");
        // The size limit keeps at least one entry.
        assert_eq!(indexes(&c.slice(5, 8, 1).unwrap()), [(5, 1)]);
        c.compact_to(5);
        assert_eq!(c.term(5), None);
        assert_eq!(c.term(6), Some(1));
    }

    #[test]
    fn a_conflicting_suffix_is_replaced_and_a_gap_restarts() {
        let mut c = EntryCache::default();
        c.append(&[entry(1, 1, 1), entry(2, 1, 1), entry(3, 1, 1)]);
        c.append(&[entry(2, 2, 1)]);
        assert_eq!(indexes(&c.slice(1, 3, u64::MAX).unwrap()), [(1, 1), (2, 2)]);
        assert_eq!(c.term(3), None, "overwritten suffix is gone");
        c.append(&[entry(3, 2, 1)]);
        assert_eq!(c.term(3), Some(2));
        c.append(&[entry(10, 3, 1)]);
        assert_eq!(c.term(3), None, "a gap starts a new run");
        assert_eq!(c.term(10), Some(3));
        c.clear();
        assert_eq!(c.term(10), None);
    }

    #[test]
    fn stays_within_its_byte_budget() {
        let mut c = EntryCache::default();
        let big = MAX_BYTES / 4;
        for i in 1..=10 {
            c.append(&[entry(i, 1, big)]);
        }
        assert!(c.bytes <= MAX_BYTES);
        assert_eq!(c.term(10), Some(1));
        assert_eq!(c.term(1), None);
        // One entry larger than the budget is still kept (it is the tail).
        c.append(&[entry(11, 1, MAX_BYTES + 1)]);
        assert_eq!(c.term(11), Some(1));
    }
}
