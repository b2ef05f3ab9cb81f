//! How raft messages leave this server. The transport is owned by the raft
//! thread and must never block it.

/// Delivers encoded raft messages to peers.
///
/// Implementations must be fire-and-forget: queue the bytes and return. Raft
/// tolerates loss, duplication and reordering, so a full queue may drop. Incoming
/// messages on the peer are handed to [`crate::Raft::step`] (or
/// [`crate::RaftInbox::step`]).
pub trait Transport: Send + 'static {
    /// Send `msg_bytes` (an encoded raft `Message`) to server `to`.
    fn send(&mut self, to: u64, msg_bytes: Vec<u8>);

    /// Send a snapshot message. Its delivery (or failure) must be reported with
    /// [`crate::Raft::report_snapshot`], or raft stops replicating to `to`
    /// until it is. The default sends it like any other message.
    fn send_snapshot(&mut self, to: u64, msg_bytes: Vec<u8>) {
        self.send(to, msg_bytes);
    }
}

/// A transport for a single-server cluster: there is never anyone to talk to.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopTransport;

impl Transport for NoopTransport {
    fn send(&mut self, to: u64, _msg_bytes: Vec<u8>) {
        tracing::debug!(to, "dropping raft message: single-server transport");
    }
}
