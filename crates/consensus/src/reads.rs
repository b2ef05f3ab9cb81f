//! Linearizable reads through raft's ReadIndex, batched.
//!
//! A `?consistent` read must not answer from a leader that has been deposed
//! without knowing it. ReadIndex asks a quorum "am I still leader?" and yields
//! the commit index at that moment; once the local state machine has applied up
//! to it, any read reflects every write acknowledged before the read started.
//!
//! Every read queued during one raft cycle shares a single ReadIndex round (one
//! heartbeat broadcast), so a thousand concurrent consistent reads cost the
//! quorum what one does.

use std::collections::HashMap;

use tokio::sync::oneshot;

use crate::error::ProposeError;

/// Where a read's outcome goes: the index the caller may read at.
pub(crate) type ReadReply = oneshot::Sender<Result<u64, ProposeError>>;

/// Reads waiting for a round to start, for its answer, or for the apply.
#[derive(Default)]
pub(crate) struct Reads {
    /// Arrived since the last round was started.
    queued: Vec<ReadReply>,
    /// Rounds sent to raft, by request context.
    in_flight: HashMap<u64, Vec<ReadReply>>,
    /// Rounds answered, waiting for the state machine to reach their index.
    ready: Vec<(u64, Vec<ReadReply>)>,
    next_ctx: u64,
}

impl Reads {
    pub(crate) fn queue(&mut self, reply: ReadReply) {
        self.queued.push(reply);
    }

    /// Takes the queued reads as one round; returns its request context for
    /// raft's `read_index`, or `None` if nothing was queued.
    pub(crate) fn start_round(&mut self) -> Option<Vec<u8>> {
        if self.queued.is_empty() {
            return None;
        }
        self.next_ctx += 1;
        let ctx = self.next_ctx;
        self.in_flight.insert(ctx, std::mem::take(&mut self.queued));
        Some(ctx.to_be_bytes().to_vec())
    }

    /// raft answered the round `ctx` with `index`.
    pub(crate) fn answered(&mut self, ctx: &[u8], index: u64) {
        let Ok(bytes) = <[u8; 8]>::try_from(ctx) else {
            return;
        };
        if let Some(waiters) = self.in_flight.remove(&u64::from_be_bytes(bytes)) {
            self.ready.push((index, waiters));
        }
    }

    /// Releases every answered round whose index has been applied.
    pub(crate) fn release(&mut self, applied: u64) {
        self.ready.retain_mut(|(index, waiters)| {
            if *index > applied {
                return true;
            }
            for w in waiters.drain(..) {
                let _ = w.send(Ok(*index));
            }
            false
        });
    }

    /// Fails every read not yet answered (leadership lost, or shutting down).
    /// Answered rounds stay: their index was confirmed by a quorum and only
    /// waits for the local apply.
    pub(crate) fn fail_unanswered(&mut self, err: &ProposeError) {
        for w in self
            .queued
            .drain(..)
            .chain(self.in_flight.drain().flat_map(|(_, w)| w))
        {
            let _ = w.send(Err(err.clone()));
        }
    }

    /// Fails everything (the thread is stopping).
    pub(crate) fn fail_all(&mut self, err: &ProposeError) {
        self.fail_unanswered(err);
        for (_, waiters) in self.ready.drain(..) {
            for w in waiters {
                let _ = w.send(Err(err.clone()));
            }
        }
    }

    pub(crate) fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }

    pub(crate) fn has_unanswered(&self) -> bool {
        !self.queued.is_empty() || !self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_serves_every_read_queued_before_it() {
        let mut reads = Reads::default();
        let (a, mut ra) = oneshot::channel();
        let (b, mut rb) = oneshot::channel();
        reads.queue(a);
        reads.queue(b);
        let ctx = reads.start_round().unwrap();
        assert!(reads.start_round().is_none());
        reads.answered(&ctx, 7);
        reads.release(6);
        assert!(ra.try_recv().is_err());
        reads.release(7);
        assert_eq!(ra.try_recv().unwrap(), Ok(7));
        assert_eq!(rb.try_recv().unwrap(), Ok(7));
    }

    #[test]
    fn losing_leadership_fails_unanswered_reads_only() {
        let mut reads = Reads::default();
        let (a, mut ra) = oneshot::channel();
        let (b, mut rb) = oneshot::channel();
        reads.queue(a);
        let ctx = reads.start_round().unwrap();
        reads.answered(&ctx, 3);
        reads.queue(b);
        reads.fail_unanswered(&ProposeError::Dropped);
        assert_eq!(rb.try_recv().unwrap(), Err(ProposeError::Dropped));
        reads.release(3);
        assert_eq!(ra.try_recv().unwrap(), Ok(3));
        assert!(!reads.has_unanswered());
    }
}
