//! The raft state machine: decodes committed entries and applies them to the state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tribune_consensus::{RestoreError, StateMachine};
use tribune_state::{Command, StateStore};
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

    fn apply(&mut self, index: u64, data: &[u8]) -> ApplyOutput {
        match Command::decode(data) {
            Ok(cmd) => self.state.apply(index, &cmd),
            Err(e) => {
                tracing::error!(index, error = %e, "committed raft entry cannot be decoded; stopping service");
                self.poisoned.store(true, Ordering::SeqCst);
                self.state.advance(index);
                Err(WriteRejected::Failed(format!(
                    "raft entry {index} cannot be decoded: {e}"
                )))
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        self.state.snapshot()
    }

    fn restore(&mut self, _index: u64, data: &[u8]) -> Result<(), RestoreError> {
        self.state
            .restore(data)
            .map(|_| ())
            .map_err(|e| RestoreError::Malformed(Box::new(e)))
    }
}
