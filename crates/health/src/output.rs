//! Check output capture and truncation, with Consul's three different rules:
//!
//! - HTTP bodies and script output go through a ring buffer of `output_max_size`
//!   bytes (Consul's `circbuf`), so the **tail** is kept: the end of a long body or
//!   log is usually the interesting part.
//! - Script output that overflowed is prefixed with
//!   `Captured <max> of <total> bytes\n...\n` (`CheckMonitor`); HTTP output is not.
//! - TTL output set through `/v1/agent/check/update` keeps the **head**, suffixed
//!   with ` ... (captured <max> of <total> bytes)` (`CheckTTL.SetStatus`); the agent
//!   applies it with [`truncate_ttl_output`].

/// Consul's `checks.DefaultBufSize`: the output limit when neither the agent's
/// `check_output_max_size` nor the check's `output_max_size` says otherwise.
pub const DEFAULT_OUTPUT_MAX_SIZE: usize = 4096;

/// The output limit of one check: the agent's `check_output_max_size` (0 = default),
/// lowered to the check's own `output_max_size` when that is set and smaller, as
/// Consul's `agent.addCheck` computes it. Never 0.
pub fn effective_max_size(agent_max: usize, check_max: u32) -> usize {
    let agent_max = if agent_max == 0 {
        DEFAULT_OUTPUT_MAX_SIZE
    } else {
        agent_max
    };
    let check_max = usize::try_from(check_max).unwrap_or(usize::MAX);
    if check_max > 0 && check_max < agent_max {
        check_max
    } else {
        agent_max
    }
}

/// A ring buffer keeping the last `capacity` bytes written, and counting them all.
#[derive(Debug, Clone)]
pub struct TailBuffer {
    capacity: usize,
    bytes: Vec<u8>,
    total: u64,
}

impl TailBuffer {
    /// A buffer keeping at most `capacity` bytes (at least 1).
    pub fn new(capacity: usize) -> TailBuffer {
        TailBuffer {
            capacity: capacity.max(1),
            bytes: Vec::new(),
            total: 0,
        }
    }

    /// Appends bytes, dropping the oldest beyond the capacity.
    pub fn write(&mut self, data: &[u8]) {
        self.total = self
            .total
            .saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
        if data.len() >= self.capacity {
            self.bytes.clear();
            self.bytes
                .extend_from_slice(&data[data.len() - self.capacity..]);
            return;
        }
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > self.capacity {
            let excess = self.bytes.len() - self.capacity;
            self.bytes.drain(..excess);
        }
    }

    /// The kept bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many bytes were written in all.
    pub fn total_written(&self) -> u64 {
        self.total
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether bytes were dropped.
    pub fn overflowed(&self) -> bool {
        self.total > u64::try_from(self.bytes.len()).unwrap_or(u64::MAX)
    }

    /// The kept bytes as text. Invalid UTF-8 (including a character cut in half by
    /// the ring) becomes U+FFFD, as Consul's JSON encoding of the string would.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The output of a script check: the tail, prefixed with
    /// `Captured <capacity> of <total> bytes\n...\n` if anything was dropped.
    pub fn script_output(&self) -> String {
        if self.overflowed() {
            format!(
                "Captured {} of {} bytes\n...\n{}",
                self.capacity,
                self.total,
                self.text()
            )
        } else {
            self.text()
        }
    }
}

/// Truncates a TTL check's output to its head of at most `max` bytes, as Consul's
/// `CheckTTL.SetStatus` does: `<head> ... (captured <kept> of <total> bytes)`. The cut
/// falls on a character boundary (Go cuts bytes; a split character would only become
/// U+FFFD later), so `kept` can be a few bytes under `max`.
pub fn truncate_ttl_output(output: &str, max: usize) -> String {
    let max = if max == 0 {
        DEFAULT_OUTPUT_MAX_SIZE
    } else {
        max
    };
    if output.len() <= max {
        return output.to_owned();
    }
    let mut cut = max;
    while !output.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{} ... (captured {} of {} bytes)",
        &output[..cut],
        cut,
        output.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_tail_and_counts_everything() {
        let mut b = TailBuffer::new(4);
        b.write(b"ab");
        assert!(!b.overflowed());
        assert_eq!(b.script_output(), "ab");
        b.write(b"cde");
        assert_eq!(b.bytes(), b"bcde");
        b.write(b"0123456789");
        assert_eq!(b.bytes(), b"6789");
        assert_eq!(b.total_written(), 15);
        assert!(b.overflowed());
        assert_eq!(b.script_output(), "Captured 4 of 15 bytes\n...\n6789");
        assert_eq!(b.text(), "6789");
    }

    #[test]
    fn exactly_full_is_not_truncated() {
        let mut b = TailBuffer::new(4);
        b.write(b"abcd");
        assert_eq!(b.script_output(), "abcd");
    }

    #[test]
    fn zero_capacity_is_raised_to_one() {
        let mut b = TailBuffer::new(0);
        b.write(b"xyz");
        assert_eq!(b.capacity(), 1);
        assert_eq!(b.text(), "z");
    }

    #[test]
    fn split_characters_become_replacement_chars() {
        let mut b = TailBuffer::new(3);
        b.write("aé€".as_bytes()); // 1 + 2 + 3 bytes: the tail is exactly "€"
        assert_eq!(b.text(), "€");
        b.write("é".as_bytes()); // tail: last byte of € + é
        assert_eq!(b.text(), "\u{fffd}é");
    }

    #[test]
    fn effective_max_size_is_the_smaller_limit() {
        assert_eq!(effective_max_size(0, 0), 4096);
        assert_eq!(effective_max_size(4096, 100), 100);
        assert_eq!(effective_max_size(4096, 10_000), 4096);
        assert_eq!(effective_max_size(8192, 0), 8192);
        assert_eq!(effective_max_size(0, 10), 10);
    }

    #[test]
    fn ttl_output_keeps_the_head() {
        assert_eq!(truncate_ttl_output("short", 10), "short");
        assert_eq!(
            truncate_ttl_output("0123456789abcdef", 10),
            "0123456789 ... (captured 10 of 16 bytes)"
        );
        // "é" straddles byte 2: the cut moves back to byte 1.
        assert_eq!(
            truncate_ttl_output("aébc", 2),
            "a ... (captured 1 of 5 bytes)"
        );
        assert_eq!(truncate_ttl_output("abc", 0), "abc");
    }
}
