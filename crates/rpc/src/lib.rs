//! The internal RPC between agents and servers.
//!
//! - [`ServerApi`]: what an agent needs from the servers (writes, blocking reads, leader
//!   and peers). A server implements it in process; [`GrpcClient`] implements it over
//!   the network, so an agent does not care which it has.
//! - [`serve`]: exposes any [`ServerApi`] as the `tribune.v1.Server` gRPC service.
//! - [`ServerPool`]: a client agent's view of the servers, with failover.
//! - [`RaftLinks`]: raft messages between servers on one long-lived stream per peer,
//!   snapshots in verified chunks (`raft`).
//! - `renew`: session renewals on one long-lived stream per client and server.
//! - `snapshot`: operator snapshot archives streamed in pieces, both ways.
//! - [`RpcTls`]: TLS on the server port and on connections to it
//!   (`tls.internal_rpc`, `tls`).
//! - [`TokenBucket`]: the sans-io token bucket of the request rate limits (`bucket`).
//! - [`RpcError`]: the one error type, with its mapping to and from `tonic::Status`;
//!   it travels serialized, so a variant added here ([`RpcError::RateLimited`]) reads
//!   as a malformed payload on an older peer.

mod bucket;
mod codec;
mod grpc;
mod listen;
mod pool;
mod raft;
mod renew;
#[cfg(test)]
mod silent;
mod snapshot;
mod tls;

pub use bucket::TokenBucket;
pub use grpc::{serve, GrpcClient};
pub use listen::{ListenLimits, RpcConnectInfo};
pub use pool::{not_sent, ServerPool, NO_SERVERS};
pub use raft::{RaftFeedback, RaftLinks};
pub use tls::{RpcTls, RpcTlsConfig, RpcTlsError, RpcTlsSettings};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tribune_types::model::operator::{OperatorReply, OperatorRequest};
use tribune_types::model::ops::{
    QueryMeta, QueryOptions, ReadRequest, ReadResult, WriteOutcome, WriteRejected, WriteRequest,
};

/// Why an RPC failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RpcError {
    /// The write was refused; nothing changed.
    #[error(transparent)]
    Rejected(#[from] WriteRejected),
    /// No leader is known (Consul: 500 "No cluster leader").
    #[error("No cluster leader")]
    NoLeader,
    /// The request named a datacenter we cannot reach.
    #[error("No path to datacenter")]
    NoPathToDatacenter,
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// Transport failure talking to a server.
    #[error("rpc error making call: {0}")]
    Transport(String),
    /// A payload from a newer or broken peer.
    #[error("rpc error: malformed payload: {0}")]
    Malformed(String),
    /// The server does not serve this request in its configuration (Consul's
    /// `ErrConnectNotEnabled`); the text is Consul's.
    #[error("{0}")]
    Refused(String),
    /// The server's request rate limit refused it (`limits.request_limits`).
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
}

/// A request refused by a rate limit, with Consul's texts; the HTTP API answers
/// 503 for [`RateLimited::RetryLater`] and 429 for the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RateLimited {
    /// Another server may serve it (a read, or a write refused by a follower).
    #[error("rate limit exceeded, try again later or against a different server")]
    RetryElsewhere,
    /// Only this server can serve it: a write refused by the leader.
    #[error(
        "rate limit exceeded for operation that can only be performed by the leader, try again later"
    )]
    RetryLater,
    /// A client agent's own limit on its requests to the servers
    /// (`limits.rpc_rate`) refused it before it was sent (HTTP 429).
    #[error("RPC rate limit exceeded")]
    ClientRpc,
}

/// Leader and peer addresses as `/v1/status/*` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServerStatus {
    /// `ip:port` of the leader's server RPC address, empty if none.
    pub leader: String,
    /// `ip:port` of every voter.
    pub peers: Vec<String>,
    /// Whether the answering server knows a leader.
    pub known_leader: bool,
    /// Milliseconds since the answering server heard from the leader.
    pub last_contact_ms: u64,
}

/// Who answered an operator snapshot download (`GET /v1/snapshot`'s headers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHead {
    /// Raft index of the state in the archive.
    pub index: u64,
    /// Whether the answering server knew a leader.
    pub known_leader: bool,
    /// Milliseconds since it heard from the leader.
    pub last_contact_ms: u64,
}

/// A stream of archive bytes. Pieces arrive as they are produced (a download)
/// or received (an upload): an archive is as large as the state, so it is
/// never held whole in memory on its way through.
pub type ArchiveStream = futures::stream::BoxStream<'static, Result<bytes::Bytes, RpcError>>;

/// An operator snapshot on its way out.
pub struct SnapshotDownload {
    /// Who answered.
    pub head: SnapshotHead,
    /// The archive (`tribune_types::archive`); an error ends it early, and the
    /// reader must treat what came before as garbage.
    pub archive: ArchiveStream,
}

/// What an agent needs from the servers.
#[async_trait]
pub trait ServerApi: Send + Sync + 'static {
    /// Applies a write through the leader; returns the outcome and the raft index.
    async fn write(&self, req: WriteRequest) -> Result<(WriteOutcome, u64), RpcError>;
    /// Answers a read, blocking per `opts`.
    async fn read(
        &self,
        req: ReadRequest,
        opts: QueryOptions,
    ) -> Result<(ReadResult, QueryMeta), RpcError>;
    /// Leader and peers.
    async fn status(&self) -> Result<ServerStatus, RpcError>;
    /// An operator request on raft itself (configuration, leadership, health).
    async fn operator(&self, _req: OperatorRequest) -> Result<OperatorReply, RpcError> {
        Err(RpcError::Transport(
            "operator requests are answered by servers".into(),
        ))
    }
    /// An operator snapshot archive of the state: the leader's, or with `stale`
    /// this server's own.
    async fn snapshot_save(&self, _stale: bool) -> Result<SnapshotDownload, RpcError> {
        Err(RpcError::Transport("snapshots are taken by servers".into()))
    }
    /// Verifies an archive and replaces the cluster's state with it; a bad
    /// archive changes nothing.
    async fn snapshot_restore(&self, _archive: ArchiveStream) -> Result<(), RpcError> {
        Err(RpcError::Transport(
            "snapshots are restored by servers".into(),
        ))
    }
    /// Called before this agent leaves the cluster gracefully. A server that leads
    /// hands leadership to another voter first, so the cluster does not wait out
    /// an election timeout; for anything else there is nothing to do.
    async fn prepare_leave(&self) {}
    /// An encoded raft message from a peer server. Only servers take them.
    fn raft_step(&self, _msg: &[u8]) -> Result<(), RpcError> {
        Err(RpcError::Transport(
            "not a server: raft messages refused".into(),
        ))
    }
}
