//! Session renewals on one long-lived gRPC stream per client and server.
//!
//! Every TTL session is renewed every TTL/2 (the Go client's `RenewPeriodic`), so ten
//! thousand sessions with 10 s TTLs are 2,000 renewals a second, each a tiny read the
//! leader answers at once. As unary calls each one costs the leader an HTTP/2 stream:
//! header blocks both ways, a task, stream bookkeeping. On a renewal stream each is
//! part of a DATA frame in and out, matched by a call id, and answered inline by the
//! stream's response body — no task per renewal.
//!
//! Clients use the batched `Renewals` stream: renewals sent within [`GATHER`] of each
//! other travel in one `Calls` message and come back in one `Replies`, so the leader
//! pays one read and one write for all of them (the single-call `Renew` stream stays
//! for older clients). Even so, one message per renewal dominated the leader's cost
//! (BENCHMARKS.md): a busy agent's renewals now share them.
//!
//! The client side opens the stream on first use and reopens it after it breaks; the
//! calls in flight when it breaks fail with [`RpcError::Transport`] (a renewal is safe
//! to retry, and the server pool does). A server that does not know `Renewals` (an
//! older version) answers `Unimplemented`, after which this client sends renewals as
//! unary reads for good.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};
use tribune_proto::v1::server_client::ServerClient;
use tribune_proto::v1::{Call, Calls, Envelope, Replies, Reply};
use tribune_types::model::ops::{QueryOptions, ReadRequest};

use crate::codec::{unwrap, wrap};
use crate::{RpcError, ServerApi};

/// Calls queued on a stream before senders wait: far more than are ever in flight.
const QUEUE: usize = 1024;
/// How long the first renewal of a batch waits for others. Renewals run every TTL/2
/// (5 s and more), so a few milliseconds cost nothing, and an agent renewing many
/// sessions sends a fraction of the messages.
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);
/// Renewals in one message at most.
const MAX_BATCH: usize = 256;
/// Batches queued for the stream's request body.
const BATCHES_QUEUED: usize = 16;

/// The server's answer stream for one `Renew` call.
pub(crate) type ReplyStream = Pin<Box<dyn Stream<Item = Result<Reply, Status>> + Send>>;

/// Server side: answers each call as its reply is pulled, in the response body's own
/// task. Only renewals are accepted: anything that could block would hold up every
/// renewal behind it. The stream ends when `stopping` turns true (server shutdown);
/// the client then fails what was in flight and reconnects elsewhere.
pub(crate) fn serve(
    api: Arc<dyn ServerApi>,
    inbound: Streaming<Call>,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> ReplyStream {
    Box::pin(inbound.take_until(stopped(stopping)).then(move |call| {
        let api = api.clone();
        async move { Ok(answer(&api, call?).await) }
    }))
}

/// The server's answer stream for one `Renewals` call.
pub(crate) type RepliesStream = Pin<Box<dyn Stream<Item = Result<Replies, Status>> + Send>>;

/// Server side of the batched stream: each `Calls` message is answered by one
/// `Replies` holding a reply to each of its calls, in order.
pub(crate) fn serve_batches(
    api: Arc<dyn ServerApi>,
    inbound: Streaming<Calls>,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> RepliesStream {
    Box::pin(inbound.take_until(stopped(stopping)).then(move |batch| {
        let api = api.clone();
        async move {
            // Concurrently: while there is no leader each renewal may wait out
            // rpc_hold_timeout, and they should wait together, not in turn.
            let calls = batch?.calls;
            let replies =
                futures::future::join_all(calls.into_iter().map(|c| answer(&api, c))).await;
            Ok(Replies { replies })
        }
    }))
}

/// Resolves when the server starts shutting down.
async fn stopped(mut stopping: tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// One renewal's reply.
async fn answer(api: &Arc<dyn ServerApi>, call: Call) -> Reply {
    let reply = match call
        .body
        .as_ref()
        .map(unwrap::<(ReadRequest, QueryOptions)>)
    {
        Some(Ok((req @ ReadRequest::SessionRenew { .. }, opts))) => api.read(req, opts).await,
        Some(Ok(_)) => Err(RpcError::Malformed(
            "only session renewals travel on the Renew stream".into(),
        )),
        Some(Err(e)) => Err(e),
        None => Err(RpcError::Malformed("call without a body".into())),
    };
    Reply {
        id: call.id,
        body: Some(wrap(&reply)),
    }
}

/// Client side: the renewal stream of one [`crate::GrpcClient`].
#[derive(Default)]
pub(crate) struct RenewMux {
    /// The open stream, if any; opening is serialised so that concurrent first calls
    /// share one stream.
    open: tokio::sync::Mutex<Option<Arc<Conn>>>,
    /// The server answered `Unimplemented`: use unary reads.
    unsupported: AtomicBool,
}

struct Conn {
    tx: mpsc::Sender<Call>,
    next_id: AtomicU64,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, oneshot::Sender<Result<Envelope, RpcError>>>,
    /// The stream ended: no call may wait on it any more.
    closed: bool,
}

/// What [`RenewMux::call`] did.
pub(crate) enum Sent {
    /// The reply envelope (or why there is none).
    Done(Result<Envelope, RpcError>),
    /// The server has no `Renew` stream; send the renewal as a unary read.
    Unsupported,
}

impl RenewMux {
    /// Sends one renewal (`body` is the wrapped `(ReadRequest, QueryOptions)`).
    pub(crate) async fn call(&self, client: &ServerClient<Channel>, body: Envelope) -> Sent {
        if self.unsupported.load(Ordering::Relaxed) {
            return Sent::Unsupported;
        }
        let conn = match self.conn(client).await {
            Ok(c) => c,
            Err(status) if status.code() == Code::Unimplemented => {
                self.unsupported.store(true, Ordering::Relaxed);
                return Sent::Unsupported;
            }
            Err(status) => return Sent::Done(Err(RpcError::Transport(status.message().into()))),
        };
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        let (done, wait) = oneshot::channel();
        {
            let mut p = conn.pending.lock();
            if p.closed {
                return Sent::Done(Err(closed()));
            }
            p.waiting.insert(id, done);
        }
        // Whatever ends this call — its answer, an error, or the caller dropping the
        // future (an HTTP client that hung up) — its entry leaves the pending map.
        let _entry = Entry { conn: &conn, id };
        let call = Call {
            id,
            body: Some(body),
        };
        if conn.tx.send(call).await.is_err() {
            return Sent::Done(Err(closed()));
        }
        Sent::Done(wait.await.unwrap_or_else(|_| Err(closed())))
    }

    /// The open stream, opening one if there is none or the last one closed.
    async fn conn(&self, client: &ServerClient<Channel>) -> Result<Arc<Conn>, Status> {
        let mut open = self.open.lock().await;
        if let Some(c) = open.as_ref().filter(|c| !c.pending.lock().closed) {
            return Ok(c.clone());
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let (batches_tx, batches_rx) = mpsc::channel(BATCHES_QUEUED);
        tokio::spawn(gather(rx, batches_tx));
        let replies = client
            .clone()
            .renewals(tokio_stream::wrappers::ReceiverStream::new(batches_rx))
            .await?
            .into_inner();
        let conn = Arc::new(Conn {
            tx,
            next_id: AtomicU64::new(0),
            pending: Mutex::new(Pending::default()),
        });
        tokio::spawn(read_replies(conn.clone(), replies));
        *open = Some(conn.clone());
        Ok(conn)
    }
}

/// A call's place in the pending map, given up when the call ends however it ends.
struct Entry<'a> {
    conn: &'a Conn,
    id: u64,
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        self.conn.pending.lock().waiting.remove(&self.id);
    }
}

/// Sends the calls queued on `calls` in batches: the first call of a batch waits up
/// to [`GATHER`] for others (or until [`MAX_BATCH`] are there), so that renewals
/// sent close together share one message, one frame and one write each way.
/// Ends when every sender is gone (the connection is dropped).
async fn gather(mut calls: mpsc::Receiver<Call>, batches: mpsc::Sender<Calls>) {
    while let Some(first) = calls.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::sleep(GATHER);
        tokio::pin!(deadline);
        while batch.len() < MAX_BATCH {
            tokio::select! {
                more = calls.recv() => match more {
                    Some(call) => batch.push(call),
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        if batches.send(Calls { calls: batch }).await.is_err() {
            return;
        }
    }
}

/// Hands each reply to its caller until the stream ends, then fails every call still
/// waiting and marks the stream closed (the next call opens a new one).
async fn read_replies(conn: Arc<Conn>, mut replies: Streaming<Replies>) {
    let why = loop {
        match replies.message().await {
            Ok(Some(batch)) => {
                let mut pending = conn.pending.lock();
                for r in batch.replies {
                    if let Some(w) = pending.waiting.remove(&r.id) {
                        let body = r
                            .body
                            .ok_or_else(|| RpcError::Malformed("reply without a body".into()));
                        let _ = w.send(body);
                    }
                }
            }
            Ok(None) => break "closed by the server".to_owned(),
            Err(status) => break status.message().to_owned(),
        }
    };
    let waiting = {
        let mut p = conn.pending.lock();
        p.closed = true;
        std::mem::take(&mut p.waiting)
    };
    if !waiting.is_empty() {
        tracing::debug!(calls = waiting.len(), reason = %why, "renewal stream ended");
    }
    for (_, w) in waiting {
        let _ = w.send(Err(RpcError::Transport(format!(
            "renewal stream ended: {why}"
        ))));
    }
}

fn closed() -> RpcError {
    RpcError::Transport("renewal stream closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GrpcClient;

    #[tokio::test]
    async fn a_cancelled_renewal_leaves_nothing_pending() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(crate::serve(
            listener,
            Arc::new(crate::silent::Silent),
            Default::default(),
            Default::default(),
            async {
                let _ = stopped.await;
            },
        ));
        let client = GrpcClient::new(&format!("http://{addr}")).unwrap();
        let renew = ReadRequest::SessionRenew {
            id: tribune_types::ids::SessionId(uuid::Uuid::new_v4()),
        };
        // Boxed, so that dropping it drops the future itself.
        let mut call = Box::pin(client.read(renew, QueryOptions::default()));
        // Drive the call until it waits on the server's answer, then drop it there.
        let pending = || {
            let open = client.renewals.open.try_lock().ok()?;
            let n = open.as_ref()?.pending.lock().waiting.len();
            Some(n)
        };
        let registered = async {
            while pending() != Some(1) {
                tokio::select! {
                    biased;
                    _ = &mut call => panic!("the stuck server answered"),
                    () = tokio::task::yield_now() => {}
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), registered)
            .await
            .expect("the renewal never reached the stream");
        drop(call);
        assert_eq!(pending(), Some(0));
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    fn call(id: u64) -> Call {
        Call { id, body: None }
    }

    /// Calls queued together leave as one batch; a lone call waits GATHER, no more.
    #[tokio::test(start_paused = true)]
    async fn renewals_sent_together_share_a_message() {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (batches_tx, mut batches) = mpsc::channel(BATCHES_QUEUED);
        tokio::spawn(gather(rx, batches_tx));
        for id in 0..10 {
            tx.send(call(id)).await.unwrap();
        }
        let first = batches.recv().await.unwrap();
        let ids: Vec<u64> = first.calls.iter().map(|c| c.id).collect();
        assert_eq!(ids, (0..10).collect::<Vec<_>>());

        let start = tokio::time::Instant::now();
        tx.send(call(10)).await.unwrap();
        let lone = batches.recv().await.unwrap();
        assert_eq!(lone.calls.len(), 1);
        assert_eq!(start.elapsed(), GATHER, "held exactly the gathering window");

        // A full batch goes at once.
        for id in 0..(MAX_BATCH as u64 + 1) {
            tx.send(call(id)).await.unwrap();
        }
        let start = tokio::time::Instant::now();
        assert_eq!(batches.recv().await.unwrap().calls.len(), MAX_BATCH);
        assert_eq!(start.elapsed(), std::time::Duration::ZERO);
        assert_eq!(batches.recv().await.unwrap().calls.len(), 1);
        drop(tx);
        assert!(batches.recv().await.is_none(), "ends with its senders");
    }
}
