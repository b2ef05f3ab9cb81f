//! Proposals waiting for their log entry to be applied, keyed by the
//! (index, term) raft assigned when they were proposed.
//!
//! An entry proposed at (i, t) was committed if and only if the entry applied at
//! index i has term t. Leadership changes are resolved eagerly: once the term
//! moves past t the proposer is told `Dropped` (outcome unknown), matching how
//! Consul reports "leadership lost while committing log".

use std::collections::VecDeque;

use tokio::sync::oneshot;

use crate::error::ProposeError;
use crate::machine::Applied;

/// Where to deliver the outcome of one proposal.
pub(crate) enum Waiter<O> {
    /// A normal proposal; receives the state machine's output.
    Normal(oneshot::Sender<Result<Applied<O>, ProposeError>>),
    /// A membership change; receives the index it was applied at.
    ConfChange(oneshot::Sender<Result<u64, ProposeError>>),
}

impl<O> Waiter<O> {
    /// Report a failure. The proposer may have given up waiting, hence the
    /// ignored send result.
    pub(crate) fn fail(self, err: ProposeError) {
        match self {
            Waiter::Normal(tx) => {
                let _ = tx.send(Err(err));
            }
            Waiter::ConfChange(tx) => {
                let _ = tx.send(Err(err));
            }
        }
    }
}

struct Entry<O> {
    index: u64,
    term: u64,
    waiter: Waiter<O>,
}

/// Outstanding proposals in log order (index ascending, term non-decreasing).
pub(crate) struct Pending<O> {
    queue: VecDeque<Entry<O>>,
}

impl<O> Pending<O> {
    pub(crate) fn new() -> Self {
        Pending {
            queue: VecDeque::new(),
        }
    }

    /// Track a proposal raft placed at (index, term). Anything already waiting at
    /// or after `index` was overwritten by this new leader term.
    pub(crate) fn push(&mut self, index: u64, term: u64, waiter: Waiter<O>) {
        while self.queue.back().is_some_and(|e| e.index >= index) {
            if let Some(e) = self.queue.pop_back() {
                e.waiter.fail(ProposeError::Dropped);
            }
        }
        self.queue.push_back(Entry {
            index,
            term,
            waiter,
        });
    }

    /// The waiter for the entry being applied at (index, term), if it is ours.
    /// Waiters for earlier indexes can never be satisfied any more.
    pub(crate) fn take(&mut self, index: u64, term: u64) -> Option<Waiter<O>> {
        while let Some(front) = self.queue.front() {
            if front.index > index {
                return None;
            }
            let e = self.queue.pop_front()?;
            if e.index == index && e.term == term {
                return Some(e.waiter);
            }
            e.waiter.fail(ProposeError::Dropped);
        }
        None
    }

    /// Fail every proposal made in a term before `current_term`.
    pub(crate) fn drop_stale(&mut self, current_term: u64) {
        while self.queue.front().is_some_and(|e| e.term < current_term) {
            if let Some(e) = self.queue.pop_front() {
                e.waiter.fail(ProposeError::Dropped);
            }
        }
    }

    /// Fail everything (shutdown).
    pub(crate) fn fail_all(&mut self, err: ProposeError) {
        for e in self.queue.drain(..) {
            e.waiter.fail(err.clone());
        }
    }

    /// Number of proposals waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal() -> (
        Waiter<u32>,
        oneshot::Receiver<Result<Applied<u32>, ProposeError>>,
    ) {
        let (tx, rx) = oneshot::channel();
        (Waiter::Normal(tx), rx)
    }

    #[test]
    fn matching_term_is_returned_and_mismatch_dropped() {
        let mut p = Pending::new();
        let (w1, _r1) = normal();
        let (w2, mut r2) = normal();
        p.push(5, 2, w1);
        p.push(6, 2, w2);
        assert!(p.take(5, 2).is_some());
        assert!(p.take(6, 3).is_none());
        assert_eq!(r2.try_recv().unwrap(), Err(ProposeError::Dropped));
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn skipped_indexes_and_overwrites_are_dropped() {
        let mut p = Pending::new();
        let (w1, mut r1) = normal();
        let (w2, mut r2) = normal();
        let (w3, _r3) = normal();
        p.push(5, 2, w1);
        p.push(6, 2, w2);
        // A new leader term reuses index 6.
        p.push(6, 3, w3);
        assert_eq!(r2.try_recv().unwrap(), Err(ProposeError::Dropped));
        assert!(p.take(6, 3).is_some());
        assert_eq!(r1.try_recv().unwrap(), Err(ProposeError::Dropped));
    }

    #[test]
    fn stale_terms_are_dropped() {
        let mut p = Pending::new();
        let (w1, mut r1) = normal();
        let (w2, _r2) = normal();
        p.push(5, 2, w1);
        p.push(6, 3, w2);
        p.drop_stale(3);
        assert_eq!(r1.try_recv().unwrap(), Err(ProposeError::Dropped));
        assert_eq!(p.len(), 1);
        p.fail_all(ProposeError::Shutdown);
        assert_eq!(p.len(), 0);
    }
}
