//! A Bloom filter over the keys of a table's base, so a lookup of a key the base
//! does not hold skips the B-tree descent.
//!
//! Why: a write first looks its key up (to keep the row's create index, lock
//! index and session). On a large table a miss in the base is the most expensive
//! read there is — four levels of 64-wide nodes, a binary search in each through
//! keys behind pointers, mostly cache misses — and it is exactly what every write
//! of a new key pays (profiles of a follower at 64 writing clients: about 8% of
//! its CPU). One cache line of filter answers "certainly not there" for all but
//! about one in a hundred such keys.
//!
//! The filter only ever gains bits, so every clone of a table can share it: a
//! table's base only ever inserts keys it also adds here, and a set of bits that
//! is a superset of a base's keys is still a correct filter for that base (it can
//! only give more false positives). Old read snapshots, rolled-back working
//! copies and the newest state all hold the same array. Keys deleted from the
//! base stay in it until the table outgrows the filter and builds a new one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bits of filter per key it is sized for.
const BITS_PER_KEY: usize = 10;
/// Bits set (and tested) per key, all within one 512-bit block.
const PROBES: u32 = 4;
/// 64-bit words per block: one cache line.
const BLOCK_WORDS: usize = 8;

/// A blocked Bloom filter shared by every clone of a table.
#[derive(Debug, Clone)]
pub(crate) struct Bloom {
    words: Arc<[AtomicU64]>,
    /// Blocks minus one (their number is a power of two).
    block_mask: u64,
    /// Keys this filter is sized for; past that its false-positive rate climbs
    /// and the owner builds a bigger one.
    capacity: usize,
    /// Keys added since it was built that set at least one new bit (so keys
    /// written again do not count; later-deleted ones do).
    added: usize,
}

impl Bloom {
    /// An empty filter sized for `capacity` keys.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let bits = (capacity.max(1) * BITS_PER_KEY).next_power_of_two();
        let blocks = (bits / (64 * BLOCK_WORDS)).max(1);
        let words = (0..blocks * BLOCK_WORDS)
            .map(|_| AtomicU64::new(0))
            .collect();
        Bloom {
            words,
            block_mask: blocks as u64 - 1,
            capacity,
            added: 0,
        }
    }

    /// Whether more keys were added than the filter is sized for.
    pub(crate) fn is_full(&self) -> bool {
        self.added > self.capacity
    }

    /// Adds `key`, for this table and every clone sharing the filter.
    pub(crate) fn add(&mut self, key: &str) {
        let (block, mut bits) = self.locate(key);
        let mut new_bit = false;
        for _ in 0..PROBES {
            let bit = bits & 511;
            bits >>= 9;
            let word = &self.words[block + (bit >> 6) as usize];
            let mask = 1 << (bit & 63);
            // A key written again finds its bits set: a plain load then, not a
            // locked read-modify-write.
            if word.load(Ordering::Relaxed) & mask == 0 {
                word.fetch_or(mask, Ordering::Relaxed);
                new_bit = true;
            }
        }
        // Only keys that changed the filter count toward rebuilding it: a table
        // that keeps overwriting its keys must not rebuild (a walk of the whole
        // base on the raft thread) every couple of million writes.
        if new_bit {
            self.added += 1;
        }
    }

    /// False if `key` was certainly never added.
    pub(crate) fn may_contain(&self, key: &str) -> bool {
        let (block, mut bits) = self.locate(key);
        (0..PROBES).all(|_| {
            let bit = bits & 511;
            bits >>= 9;
            self.words[block + (bit >> 6) as usize].load(Ordering::Relaxed) & (1 << (bit & 63)) != 0
        })
    }

    /// The first word of `key`'s block, and the hash bits that pick its probes.
    fn locate(&self, key: &str) -> (usize, u64) {
        let h = hash(key.as_bytes());
        let block = (h & self.block_mask) as usize * BLOCK_WORDS;
        // The high half picks the bits: independent of the low bits that picked
        // the block.
        (block, h >> 28)
    }
}

/// A fast 64-bit hash of a short byte string: eight bytes at a time through a
/// multiply, then a full avalanche so every output bit depends on every input
/// bit (the block and probe positions use disjoint bit ranges).
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().unwrap_or_default());
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(buf))
            .wrapping_mul(K)
            .rotate_left(29);
    }
    // murmur3's finaliser.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_keys_are_always_found_and_few_others_are() {
        let n = 50_000;
        let mut b = Bloom::with_capacity(n);
        for i in 0..n {
            b.add(&format!("bench/put-64/{}/{i}", i % 64));
        }
        assert!(!b.is_full());
        for i in 0..n {
            assert!(b.may_contain(&format!("bench/put-64/{}/{i}", i % 64)));
        }
        let false_positives = (0..n)
            .filter(|i| b.may_contain(&format!("bench/put-64/{}/{}", i % 64, i + n)))
            .count();
        // About 1% expected at 10 bits per key with 4 probes in one block.
        assert!(false_positives < n / 40, "{false_positives} of {n}");
        // Keys added again (and a few false positives among the first) leave
        // the count alone.
        let counted = b.added;
        assert!(counted <= n && counted > n - n / 40, "{counted}");
        for i in 0..n {
            b.add(&format!("bench/put-64/{}/{i}", i % 64));
        }
        assert_eq!(b.added, counted);
    }

    #[test]
    fn clones_share_what_is_added_after_they_were_taken() {
        let mut a = Bloom::with_capacity(10);
        let snapshot = a.clone();
        a.add("later");
        assert!(snapshot.may_contain("later"));
        assert!(!Bloom::with_capacity(10).may_contain("later"));
    }

    #[test]
    fn short_and_long_keys_hash_apart() {
        let keys = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "abcdefgh",
            "abcdefghi",
            "abcdefgh\0",
        ];
        let hashes: std::collections::HashSet<u64> =
            keys.iter().map(|k| hash(k.as_bytes())).collect();
        assert_eq!(hashes.len(), keys.len());
    }
}
