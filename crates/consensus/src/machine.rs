//! The replicated state machine interface the raft thread drives.

use crate::error::{ApplyError, RestoreError};

/// The replicated state machine, owned by the raft thread.
///
/// Every method runs on the raft thread, so long-running work here delays
/// heartbeats; keep `apply` cheap and make `snapshot` a copy of in-memory state.
pub trait StateMachine: Send + 'static {
    /// What [`StateMachine::apply`] hands back to the proposer.
    type Output: Send + 'static;

    /// Apply one committed normal entry (data = what was proposed), deterministically.
    ///
    /// Never called for raft's own empty no-op entries or for membership changes.
    /// An `Err` means the entry cannot be applied at all (e.g. it does not decode):
    /// the raft thread stops with [`crate::ConsensusError::Apply`] before marking the
    /// entry applied, so no later entry is applied and no snapshot covers it.
    fn apply(&mut self, index: u64, data: &[u8]) -> Result<Self::Output, ApplyError>;

    /// Called before the `apply` calls for the entries committed in one cycle of the
    /// raft loop, and [`StateMachine::end_batch`] after them (also when an `apply`
    /// failed). No proposer of a normal entry hears its outcome before `end_batch`
    /// returns, so a machine may make the batch's effects visible there, all at
    /// once, instead of after every entry. Both do nothing by default.
    fn begin_batch(&mut self) {}

    /// See [`StateMachine::begin_batch`].
    fn end_batch(&mut self) {}

    /// Serialise the whole state as of the last applied index.
    fn snapshot(&self) -> Vec<u8>;

    /// [`StateMachine::snapshot`] as work for another thread: the task must
    /// serialise the state as of this call (the last applied index) whatever is
    /// applied while it runs. A machine whose state is a persistent structure
    /// captures a cheap clone here, so the raft thread does not stall for the
    /// serialisation (hundreds of milliseconds for a large state: longer than an
    /// election timeout). The default serialises right away.
    fn snapshot_task(&self) -> SnapshotTask {
        let data = self.snapshot();
        Box::new(move |out| out.write_all(&data))
    }

    /// Replace the whole state with a snapshot taken at `index`.
    fn restore(&mut self, index: u64, data: &[u8]) -> Result<(), RestoreError>;
}

/// Serialises a state captured by [`StateMachine::snapshot_task`] into the
/// snapshot file, at the sink's position. Everything from there to the end of
/// the file is the snapshot's data, which the file's own header and checksum
/// then cover.
pub type SnapshotTask = Box<dyn FnOnce(&mut dyn SnapshotSink) -> std::io::Result<()> + Send>;

/// Where a [`SnapshotTask`] writes: the data region of a snapshot file being
/// written. Positions are relative to the region's start, so a task may seek
/// back within its own bytes to fill in a length it knows only at the end.
pub trait SnapshotSink: std::io::Write + std::io::Seek {}

impl<T: std::io::Write + std::io::Seek + ?Sized> SnapshotSink for T {}

/// A proposal's result: where it landed in the log and what `apply` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<O> {
    /// Log index of the entry.
    pub index: u64,
    /// The state machine's output for it.
    pub output: O,
}
