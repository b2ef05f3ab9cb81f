//! The `tribune.v1.Server` gRPC service and client.

use crate::codec::{unwrap, wrap};
use crate::listen::RpcConnectInfo;
use crate::renew::{self, RenewMux, Sent};
use crate::tls::RpcTls;
use crate::{ArchiveStream, RpcError, ServerApi, ServerStatus, SnapshotDownload, SnapshotHead};
use async_trait::async_trait;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};
use tribune_proto::v1::server_client::ServerClient;
use tribune_proto::v1::server_server::{Server as ServerService, ServerServer};
use tribune_proto::v1::{
    Call, Calls, Envelope, RaftAck, RaftChunk, RaftMessages, SnapshotPiece, StatusRequest,
    StatusResponse,
};
use tribune_types::model::operator::{OperatorReply, OperatorRequest};
use tribune_types::model::ops::{
    QueryMeta, QueryOptions, ReadRequest, ReadResult, WriteOutcome, WriteRequest,
};

type WriteReply = Result<(WriteOutcome, u64), RpcError>;

/// Largest message either side accepts: a large read (a whole KV prefix, a
/// big catalog) travels as one message. Raft frames and operator snapshot
/// pieces are far smaller (see `raft` and `snapshot`).
const MAX_MESSAGE: usize = 256 << 20;
type ReadReply = Result<(ReadResult, QueryMeta), RpcError>;

struct Service {
    api: Arc<dyn ServerApi>,
    /// Turns true at shutdown, ending the long-lived renewal streams, which a
    /// graceful shutdown would otherwise wait on forever.
    stopping: tokio::sync::watch::Receiver<bool>,
    /// Who may send raft traffic (see [`crate::tls`]).
    tls: Arc<RpcTls>,
}

impl Service {
    /// Refuses raft traffic from a peer whose certificate does not name it a
    /// server, when the settings ask for that.
    fn authorize_server<T>(&self, req: &Request<T>) -> Result<(), String> {
        let info = req.extensions().get::<RpcConnectInfo>();
        let certs = info.and_then(|i| i.peer_certificates.as_deref());
        self.tls.authorize_server(certs).inspect_err(|why| {
            tracing::warn!(remote = ?info.and_then(|i| i.remote), "refusing raft traffic: {why}");
        })
    }
}

#[tonic::async_trait]
impl ServerService for Service {
    async fn write(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let reply: WriteReply = match unwrap::<WriteRequest>(req.get_ref()) {
            Ok(w) => self.api.write(w).await,
            Err(e) => Err(e),
        };
        Ok(Response::new(wrap(&reply)))
    }

    async fn read(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let reply: ReadReply = match unwrap::<(ReadRequest, QueryOptions)>(req.get_ref()) {
            Ok((r, o)) => self.api.read(r, o).await,
            Err(e) => Err(e),
        };
        Ok(Response::new(wrap(&reply)))
    }

    type RenewStream = renew::ReplyStream;

    async fn renew(
        &self,
        req: Request<Streaming<Call>>,
    ) -> Result<Response<Self::RenewStream>, Status> {
        Ok(Response::new(renew::serve(
            self.api.clone(),
            req.into_inner(),
            self.stopping.clone(),
        )))
    }

    type RenewalsStream = renew::RepliesStream;

    async fn renewals(
        &self,
        req: Request<Streaming<Calls>>,
    ) -> Result<Response<Self::RenewalsStream>, Status> {
        Ok(Response::new(renew::serve_batches(
            self.api.clone(),
            req.into_inner(),
            self.stopping.clone(),
        )))
    }

    async fn operator(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let reply: Result<OperatorReply, RpcError> = match unwrap::<OperatorRequest>(req.get_ref())
        {
            Ok(r) => self.api.operator(r).await,
            Err(e) => Err(e),
        };
        Ok(Response::new(wrap(&reply)))
    }

    type SnapshotSaveStream = crate::snapshot::PieceStream;

    async fn snapshot_save(
        &self,
        req: Request<Envelope>,
    ) -> Result<Response<Self::SnapshotSaveStream>, Status> {
        let download = match unwrap::<bool>(req.get_ref()) {
            Ok(stale) => self.api.snapshot_save(stale).await,
            Err(e) => Err(e),
        };
        Ok(Response::new(crate::snapshot::to_pieces(download)))
    }

    async fn snapshot_restore(
        &self,
        req: Request<Streaming<SnapshotPiece>>,
    ) -> Result<Response<Envelope>, Status> {
        let reply = self
            .api
            .snapshot_restore(crate::snapshot::from_pieces(req.into_inner()))
            .await;
        Ok(Response::new(wrap(&reply)))
    }

    async fn raft(
        &self,
        req: Request<Streaming<RaftMessages>>,
    ) -> Result<Response<RaftAck>, Status> {
        self.authorize_server(&req)
            .map_err(Status::permission_denied)?;
        crate::raft::receive(self.api.as_ref(), req.into_inner(), self.stopping.clone())
            .await
            .map(Response::new)
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<RaftChunk>>,
    ) -> Result<Response<RaftAck>, Status> {
        self.authorize_server(&req)
            .map_err(Status::permission_denied)?;
        crate::raft::receive_large(self.api.as_ref(), req.into_inner())
            .await
            .map(Response::new)
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let s = self
            .api
            .status()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(StatusResponse {
            leader: s.leader,
            peers: s.peers,
            known_leader: s.known_leader,
            last_contact_ms: s.last_contact_ms,
        }))
    }
}

/// Serves `api` on an already-bound listener until `shutdown` resolves,
/// admitting connections under `limits` (see [`crate::ListenLimits`]), in the
/// clear or over TLS as `tls` says at the time each one opens.
pub async fn serve(
    listener: TcpListener,
    api: Arc<dyn ServerApi>,
    limits: crate::ListenLimits,
    tls: Arc<RpcTls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (admitted, accepting) = crate::listen::admit(listener, limits, Arc::clone(&tls));
    let incoming = tokio_stream::wrappers::ReceiverStream::new(admitted);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let served = tonic::transport::Server::builder()
        .add_service(
            ServerServer::new(Service { api, stopping, tls })
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    // The listener is closed by the time this returns, so the port can be
    // bound again at once (a restart in the same process).
    accepting.abort();
    let _ = accepting.await;
    served
}

/// A [`ServerApi`] over gRPC to one server (the channel reconnects on its own).
#[derive(Clone)]
pub struct GrpcClient {
    inner: ServerClient<Channel>,
    /// Session renewals ride one stream (see [`crate::renew`]).
    pub(crate) renewals: Arc<RenewMux>,
}

impl GrpcClient {
    /// A lazily connecting client for `http://ip:port`, in the clear.
    pub fn new(addr: &str) -> Result<Self, RpcError> {
        let ep = Endpoint::from_shared(addr.to_owned())
            .map_err(|e| RpcError::Transport(e.to_string()))?;
        Ok(Self::over(ep.tcp_nodelay(true).connect_lazy()))
    }

    /// A lazily connecting client for the server at `addr` (`ip:port`), each
    /// connection opened as `tls` says then (over TLS with `verify_outgoing`).
    pub fn dial(addr: &str, tls: &Arc<RpcTls>) -> Result<Self, RpcError> {
        let ep = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| RpcError::Transport(e.to_string()))?;
        Ok(Self::over(crate::tls::lazy_channel(tls, addr, ep)))
    }

    fn over(channel: Channel) -> Self {
        Self {
            inner: ServerClient::new(channel).max_decoding_message_size(MAX_MESSAGE),
            renewals: Arc::default(),
        }
    }
}

fn transport(e: Status) -> RpcError {
    RpcError::Transport(e.message().to_owned())
}

#[async_trait]
impl ServerApi for GrpcClient {
    async fn write(&self, req: WriteRequest) -> WriteReply {
        let env = self
            .inner
            .clone()
            .write(wrap(&req))
            .await
            .map_err(transport)?;
        unwrap::<WriteReply>(env.get_ref())?
    }

    async fn read(&self, req: ReadRequest, opts: QueryOptions) -> ReadReply {
        let renewal = matches!(req, ReadRequest::SessionRenew { .. });
        let body = wrap(&(req, opts));
        if renewal {
            match self.renewals.call(&self.inner, body.clone()).await {
                Sent::Done(reply) => return unwrap::<ReadReply>(&reply?)?,
                Sent::Unsupported => {}
            }
        }
        let env = self.inner.clone().read(body).await.map_err(transport)?;
        unwrap::<ReadReply>(env.get_ref())?
    }

    async fn operator(&self, req: OperatorRequest) -> Result<OperatorReply, RpcError> {
        let env = self
            .inner
            .clone()
            .operator(wrap(&req))
            .await
            .map_err(transport)?;
        unwrap::<Result<OperatorReply, RpcError>>(env.get_ref())?
    }

    async fn snapshot_save(&self, stale: bool) -> Result<SnapshotDownload, RpcError> {
        let mut pieces = self
            .inner
            .clone()
            .snapshot_save(wrap(&stale))
            .await
            .map_err(transport)?
            .into_inner();
        let first = pieces.message().await.map_err(transport)?;
        let head = first.and_then(|p| p.head).ok_or_else(|| {
            RpcError::Transport("snapshot stream ended before saying who answered".into())
        })?;
        let head = unwrap::<Result<SnapshotHead, RpcError>>(&head)??;
        Ok(SnapshotDownload {
            head,
            archive: crate::snapshot::from_pieces(pieces),
        })
    }

    async fn snapshot_restore(&self, archive: ArchiveStream) -> Result<(), RpcError> {
        let (pieces, upload_failed) = crate::snapshot::upload(archive);
        let sent = self.inner.clone().snapshot_restore(pieces).await;
        // A broken upload ends the stream early; the server then refuses the
        // truncated archive, but the reason to report is the upload's.
        if let Some(e) = upload_failed.lock().take() {
            return Err(e);
        }
        unwrap::<Result<(), RpcError>>(sent.map_err(transport)?.get_ref())?
    }

    async fn status(&self) -> Result<ServerStatus, RpcError> {
        let s = self
            .inner
            .clone()
            .status(StatusRequest {})
            .await
            .map_err(transport)?
            .into_inner();
        Ok(ServerStatus {
            leader: s.leader,
            peers: s.peers,
            known_leader: s.known_leader,
            last_contact_ms: s.last_contact_ms,
        })
    }
}
