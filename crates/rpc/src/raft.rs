//! Raft traffic between servers over the internal gRPC.
//!
//! Raft sends a steady stream of small messages (appends, heartbeats, votes) to
//! every peer. A unary call per message would cost an HTTP/2 stream with header
//! blocks each way; instead each server keeps one long-lived client stream
//! (`Raft`) per peer and writes every message queued for that peer since the
//! last write as one `RaftMessages` frame, so a busy leader's appends share
//! frames and syscalls.
//!
//! [`RaftLinks`] is the sending side and is called from the raft thread, so it
//! never blocks: each peer has a bounded queue drained by its own task, and a
//! full queue drops (raft retransmits). When a stream breaks the link tells raft
//! the peer is unreachable (raft then probes instead of pipelining), throws away
//! what was queued (stale by the time the peer is back) and reconnects with
//! backoff.
//!
//! Large messages — snapshots, and appends carrying a huge entry — go on their
//! own `InstallSnapshot` call in 1 MiB chunks. The first chunk carries the total
//! length and a CRC-32 so the receiver checks the whole message before raft sees
//! it; raft is told the snapshot's fate once the receiver acknowledges it, which
//! is what lets the leader resume replicating to that peer.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};
use tribune_proto::v1::server_client::ServerClient;
use tribune_proto::v1::{RaftAck, RaftChunk, RaftMessages};

use crate::tls::RpcTls;
use crate::ServerApi;

/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 4096;
/// Messages at least this large travel chunked on their own call.
pub(crate) const LARGE: usize = 4 << 20;
/// Bytes per chunk of a large message.
const CHUNK: usize = 1 << 20;
/// Bytes gathered into one frame at most (below the receiver's decode limit).
const FRAME: usize = 4 << 20;
/// The receiver's decode limit: a frame plus slack for protobuf framing.
pub(crate) const MAX_DECODE: usize = FRAME + (1 << 20);
/// Longest wait between reconnection attempts to an unreachable peer.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The largest message the receiver reassembles: a whole-state snapshot far
/// beyond what a server holds in memory is refused before it is buffered.
const MAX_LARGE: usize = 4 << 30;
/// How long a chunked transfer may take before it counts as failed.
const LARGE_TIMEOUT: Duration = Duration::from_secs(120);

/// What the sending side tells raft about its peers.
pub trait RaftFeedback: Send + Sync + 'static {
    /// A stream to `peer` broke or could not be opened.
    fn unreachable(&self, peer: u64);
    /// A snapshot sent to `peer` was (or was not) received.
    fn snapshot_status(&self, peer: u64, delivered: bool);
}

struct Shared {
    /// Server RPC address (`ip:port`) of each peer, by raft id.
    addrs: Mutex<HashMap<u64, String>>,
    feedback: OnceLock<Arc<dyn RaftFeedback>>,
    /// How connections to peers are opened.
    tls: Arc<RpcTls>,
}

impl Shared {
    fn addr(&self, peer: u64) -> Option<String> {
        self.addrs.lock().get(&peer).cloned()
    }

    fn unreachable(&self, peer: u64) {
        if let Some(f) = self.feedback.get() {
            f.unreachable(peer);
        }
    }
}

/// The sending side of raft traffic: one queue and task per peer.
pub struct RaftLinks {
    shared: Arc<Shared>,
    links: Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for RaftLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftLinks")
            .field("peers", &self.shared.addrs.lock())
            .finish()
    }
}

impl RaftLinks {
    /// Links whose tasks run on `runtime` (the raft thread is not a runtime
    /// thread), connecting to peers as `tls` says.
    pub fn new(runtime: tokio::runtime::Handle, tls: Arc<RpcTls>) -> Self {
        RaftLinks {
            shared: Arc::new(Shared {
                addrs: Mutex::default(),
                feedback: OnceLock::new(),
                tls,
            }),
            links: Mutex::default(),
            runtime,
        }
    }

    /// Where raft hears about unreachable peers and snapshot outcomes; set once,
    /// after raft has started (later calls are ignored).
    pub fn set_feedback(&self, feedback: Arc<dyn RaftFeedback>) {
        let _ = self.shared.feedback.set(feedback);
    }

    /// Records (or replaces) the address of peer `id`.
    pub fn set_addr(&self, id: u64, addr: String) {
        self.shared.addrs.lock().insert(id, addr);
    }

    /// The address of peer `id`, if known.
    pub fn addr(&self, id: u64) -> Option<String> {
        self.shared.addr(id)
    }

    /// Queues an encoded raft message for `to`; never blocks. `snapshot` marks a
    /// snapshot message, whose delivery raft must be told about.
    pub fn send(&self, to: u64, msg: Vec<u8>, snapshot: bool) {
        if snapshot || msg.len() >= LARGE {
            let shared = self.shared.clone();
            self.runtime.spawn(send_large(shared, to, msg, snapshot));
            return;
        }
        let mut links = self.links.lock();
        let tx = links.entry(to).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            self.runtime
                .spawn(run_link(Arc::downgrade(&self.shared), to, rx));
            tx
        });
        match tx.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(to, "raft queue full; dropping a message");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The link task ended (runtime shutting down); forget it so a
                // later send starts a new one.
                links.remove(&to);
            }
        }
    }
}

fn client(addr: &str, tls: &Arc<RpcTls>) -> Result<ServerClient<Channel>, tonic::transport::Error> {
    let ep = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    let channel = crate::tls::lazy_channel(tls, addr, ep);
    Ok(ServerClient::new(channel).max_decoding_message_size(MAX_DECODE))
}

/// Takes `first` and whatever else is queued, up to one frame.
fn gather(first: Vec<u8>, rx: &mut mpsc::Receiver<Vec<u8>>) -> RaftMessages {
    let mut size = first.len();
    let mut messages = vec![first];
    while size < FRAME {
        match rx.try_recv() {
            Ok(m) => {
                size += m.len();
                messages.push(m);
            }
            Err(_) => break,
        }
    }
    RaftMessages { messages }
}

/// One peer's sender: (re)opens the stream when there is something to send and
/// writes gathered frames into it until it breaks.
async fn run_link(shared: Weak<Shared>, to: u64, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut backoff = Duration::from_millis(50);
    while let Some(first) = rx.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let Some(addr) = shared.addr(to) else {
            tracing::debug!(to, "no address for raft peer; dropping a message");
            continue;
        };
        let mut client = match client(&addr, &shared.tls) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(to, %addr, error = %e, "bad raft peer address");
                continue;
            }
        };
        let (frames, body) = mpsc::channel::<RaftMessages>(8);
        let opened = tokio::time::Instant::now();
        let mut call = Box::pin(async move {
            client
                .raft(tokio_stream::wrappers::ReceiverStream::new(body))
                .await
        });
        let mut next = Some(first);
        let outcome = loop {
            if let Some(m) = next.take() {
                if frames.send(gather(m, &mut rx)).await.is_err() {
                    break "stream closed".to_owned();
                }
            }
            tokio::select! {
                res = &mut call => break match res {
                    Ok(_) => "peer ended the stream".to_owned(),
                    Err(e) => e.message().to_owned(),
                },
                m = rx.recv() => match m {
                    Some(m) => next = Some(m),
                    None => return,
                },
            }
        };
        tracing::debug!(to, %addr, reason = %outcome, "raft stream to peer broke");
        shared.unreachable(to);
        drop(shared);
        // What queued up while the stream was failing is stale by now.
        while rx.try_recv().is_ok() {}
        if opened.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_millis(50);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Sends one large message in chunks on its own call and, for a snapshot, tells
/// raft whether the peer received it.
async fn send_large(shared: Arc<Shared>, to: u64, msg: Vec<u8>, snapshot: bool) {
    let delivered = match shared.addr(to) {
        None => false,
        Some(addr) => {
            let sent = tokio::time::timeout(LARGE_TIMEOUT, async {
                let mut client =
                    client(&addr, &shared.tls).map_err(|e| Status::unavailable(e.to_string()))?;
                client.install_snapshot(chunks(msg)).await
            })
            .await;
            match sent {
                Ok(Ok(_)) => true,
                Ok(Err(e)) => {
                    tracing::warn!(to, %addr, error = %e.message(), "sending a large raft message failed");
                    false
                }
                Err(_) => {
                    tracing::warn!(to, %addr, "sending a large raft message timed out");
                    false
                }
            }
        }
    };
    if snapshot {
        if let Some(f) = shared.feedback.get() {
            f.snapshot_status(to, delivered);
        }
    } else if !delivered {
        shared.unreachable(to);
    }
}

/// The chunks of `msg`; the first carries its length and CRC-32.
fn chunks(msg: Vec<u8>) -> impl futures::Stream<Item = RaftChunk> {
    let total_len = msg.len() as u64;
    let crc32 = crc32fast::hash(&msg);
    let pieces: Vec<RaftChunk> = msg
        .chunks(CHUNK)
        .enumerate()
        .map(|(i, data)| RaftChunk {
            data: data.to_vec(),
            total_len: if i == 0 { total_len } else { 0 },
            crc32: if i == 0 { crc32 } else { 0 },
        })
        .collect();
    futures::stream::iter(pieces)
}

/// Receiving side of `Raft`: hands every message to the local raft until the
/// peer closes the stream or this server stops.
pub(crate) async fn receive(
    api: &dyn ServerApi,
    mut inbound: Streaming<RaftMessages>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<RaftAck, Status> {
    loop {
        let frame = tokio::select! {
            _ = stopping.wait_for(|v| *v) => return Ok(RaftAck {}),
            f = inbound.message() => f?,
        };
        let Some(frame) = frame else {
            return Ok(RaftAck {});
        };
        for msg in &frame.messages {
            if let Err(e) = api.raft_step(msg) {
                // Bad bytes from one message must not cut the stream; raft
                // recovers from the loss.
                tracing::debug!(error = %e, "dropping a raft message");
            }
        }
    }
}

/// Receiving side of `InstallSnapshot`: reassembles and verifies the message,
/// then hands it to raft.
pub(crate) async fn receive_large(
    api: &dyn ServerApi,
    mut inbound: Streaming<RaftChunk>,
) -> Result<RaftAck, Status> {
    let Some(first) = inbound.message().await? else {
        return Err(Status::invalid_argument("empty raft message"));
    };
    let total = usize::try_from(first.total_len)
        .ok()
        .filter(|t| *t <= MAX_LARGE)
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "raft message of {} bytes announced; at most {MAX_LARGE} accepted",
                first.total_len
            ))
        })?;
    let crc = first.crc32;
    let mut buf = Vec::with_capacity(total.min(64 << 20));
    buf.extend_from_slice(&first.data);
    while let Some(chunk) = inbound.message().await? {
        buf.extend_from_slice(&chunk.data);
        if buf.len() > total {
            return Err(Status::invalid_argument(
                "raft message longer than announced",
            ));
        }
    }
    if buf.len() != total {
        return Err(Status::invalid_argument(format!(
            "truncated raft message: {} of {total} bytes",
            buf.len()
        )));
    }
    if crc32fast::hash(&buf) != crc {
        return Err(Status::data_loss("raft message checksum mismatch"));
    }
    api.raft_step(&buf)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(RaftAck {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn chunks_carry_length_and_checksum_once() {
        let msg: Vec<u8> = (0..(CHUNK * 2 + 10)).map(|i| i as u8).collect();
        let pieces: Vec<RaftChunk> = chunks(msg.clone()).collect().await;
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[0].total_len, msg.len() as u64);
        assert_eq!(pieces[0].crc32, crc32fast::hash(&msg));
        assert!(pieces[1..].iter().all(|p| p.total_len == 0 && p.crc32 == 0));
        let joined: Vec<u8> = pieces.into_iter().flat_map(|p| p.data).collect();
        assert_eq!(joined, msg);
    }

    #[tokio::test]
    async fn gather_takes_what_is_queued_up_to_a_frame() {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        for i in 0..5u8 {
            tx.try_send(vec![i; 10]).unwrap();
        }
        let first = rx.recv().await.unwrap();
        let frame = gather(first, &mut rx);
        assert_eq!(frame.messages.len(), 5);
        tx.try_send(vec![0; FRAME]).unwrap();
        tx.try_send(vec![1; 1]).unwrap();
        let first = rx.recv().await.unwrap();
        assert_eq!(gather(first, &mut rx).messages.len(), 1);
    }
}
