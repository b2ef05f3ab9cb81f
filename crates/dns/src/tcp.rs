//! The TCP listener: length-prefixed requests (RFC 1035 §4.2.2, RFC 7766), answered
//! from the cache in place or through the engine concurrently.
//!
//! Why not hickory-server's TCP loop: it spawns a task per request and queues every
//! encoded answer through a channel, which costs more than a whole cached answer. Here
//! a connection's task reads requests, writes cache hits itself, and spawns a task
//! only for requests that need the engine ([`slow`](crate::slow)); those write their
//! answers when ready, so pipelined questions are answered out of order as RFC 7766
//! allows. A connection idle for [`TCP_IDLE_TIMEOUT`] is closed (miekg/dns's default,
//! which Consul inherits).

use crate::cache::{AnswerCache, Rng};
use crate::server::Transport;
use crate::slow::{self, Peer};
use hickory_server::server::RequestHandler;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Mutex, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// How long a TCP connection may stay idle between requests.
pub(crate) const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(8);
/// Requests of one connection in the engine at once; the connection stops reading
/// while this many are pending.
const IN_FLIGHT: usize = 32;
/// Pause after an accept error that is not about one connection (out of file
/// descriptors, say), so the loop does not spin on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections until `stopped` turns true, then closes them all.
pub(crate) async fn serve<H: RequestHandler + Clone>(
    listener: TcpListener,
    cache: Arc<AnswerCache>,
    handler: H,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|stopped| *stopped) => break,
        };
        match accepted {
            Ok((stream, src)) => {
                connections.spawn(connection(stream, src, Arc::clone(&cache), handler.clone()));
            }
            Err(error) => match error.kind() {
                io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted => debug!(%error, "DNS TCP accept"),
                _ => {
                    warn!(%error, "DNS TCP accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

/// One connection: requests until the peer closes, errs or idles out.
async fn connection<H: RequestHandler + Clone>(
    stream: TcpStream,
    src: SocketAddr,
    cache: Arc<AnswerCache>,
    handler: H,
) {
    // Answers are whole messages: nothing is gained by waiting to coalesce them.
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let writer = Arc::new(Mutex::new(writer));
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut rng = Rng::new(rand::random());
    let mut out = Vec::with_capacity(512);
    // The engine's answers in progress: they end with the connection (dropping the
    // set aborts them), but a peer that closes its side after asking still gets them.
    let mut engine = JoinSet::new();
    loop {
        while engine.try_join_next().is_some() {}
        let bytes = match tokio::time::timeout(TCP_IDLE_TIMEOUT, read_frame(&mut reader)).await {
            Ok(Ok(Some(bytes))) => bytes,
            Ok(Ok(None)) => {
                let drain = async { while engine.join_next().await.is_some() {} };
                let _ = tokio::time::timeout(TCP_IDLE_TIMEOUT, drain).await;
                return;
            }
            Err(_) => return,
            Ok(Err(error)) => {
                debug!(%error, %src, "DNS TCP read");
                return;
            }
        };
        if cache.answer(&bytes, Transport::Tcp, &mut rng, &mut out) {
            if write_frame(&writer, &out).await.is_err() {
                return;
            }
            continue;
        }
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        let handler = handler.clone();
        let writer = Arc::clone(&writer);
        engine.spawn(async move {
            slow::answer(handler, bytes, Peer::Tcp { writer, src }).await;
            drop(permit);
        });
    }
}

/// The next request; `None` when the peer closed the connection between requests.
async fn read_frame(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let mut bytes = vec![0u8; usize::from(u16::from_be_bytes(len))];
    reader.read_exact(&mut bytes).await?;
    Ok(Some(bytes))
}

/// Writes one message behind its length, in one write so a concurrent answer cannot
/// land between the two. A peer that stops reading gets [`TCP_IDLE_TIMEOUT`] to
/// drain before the write fails (and the connection with it).
pub(crate) async fn write_frame(writer: &Mutex<OwnedWriteHalf>, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "DNS message over 64 KiB"))?;
    let mut frame = Vec::with_capacity(2 + message.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(message);
    let write = async { writer.lock().await.write_all(&frame).await };
    tokio::time::timeout(TCP_IDLE_TIMEOUT, write)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "peer not reading")))
}
