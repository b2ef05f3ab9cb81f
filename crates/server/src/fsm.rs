//! The raft state machine: decodes committed entries and applies them to the state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tribune_consensus::{ApplyError, RestoreError, SnapshotTask, StateMachine};
use tribune_state::{Command, Entry, StateStore};
use tribune_types::model::ops::{WriteOutcome, WriteRejected};

/// What applying one entry produced.
pub(crate) type ApplyOutput = Result<WriteOutcome, WriteRejected>;

pub(crate) struct Fsm {
    pub(crate) state: Arc<StateStore>,
    /// Set when a committed entry cannot be decoded: applying past it would fork this
    /// server's state from its peers, so the server stops serving.
    pub(crate) poisoned: Arc<AtomicBool>,
}

impl StateMachine for Fsm {
    type Output = ApplyOutput;

    fn apply(&mut self, index: u64, data: &[u8]) -> Result<ApplyOutput, ApplyError> {
        match Command::decode_entry(data) {
            Ok(Entry::Restore(state)) => Ok(self.state.restore_at(index, state)),
            Ok(Entry::Command(cmd, now_ms)) => Ok(self.state.apply_stamped(index, now_ms, &cmd)),
            Err(e) => {
                // Applying past it would fork this server from its peers: raft stops here,
                // before the entry counts as applied or a snapshot can cover it.
                tracing::error!(index, error = %e, "committed raft entry cannot be decoded; stopping");
                self.poisoned.store(true, Ordering::SeqCst);
                Err(ApplyError(Box::new(e)))
            }
        }
    }

    fn begin_batch(&mut self) {
        self.state.begin_batch();
    }

    fn end_batch(&mut self) {
        self.state.end_batch();
    }

    fn snapshot(&self) -> Vec<u8> {
        self.state.snapshot()
    }

    fn snapshot_task(&self) -> SnapshotTask {
        let job = self.state.snapshot_job();
        Box::new(move |out| job.write_to(out).map(|_| ()))
    }

    fn restore(&mut self, _index: u64, data: &[u8]) -> Result<(), RestoreError> {
        self.state
            .restore(data)
            .map(|_| ())
            .map_err(|e| RestoreError::Malformed(Box::new(e)))
    }
}
