//! What the server RPC listener admits: `limits.rpc_max_conns_per_client` and
//! `limits.rpc_handshake_timeout`, applied to each accepted connection before
//! gRPC sees it.
//!
//! As in Consul, a client address already holding the limit has its new
//! connection closed at once (there is no protocol answer to give on a raw
//! RPC connection), and a connection that sends nothing within the handshake
//! timeout is closed, so idle sockets cannot pile up against the limit. Each
//! connection waits for its first byte in its own task: a slow client never
//! delays the accept loop. That byte also says whether the client speaks TLS
//! (see [`crate::tls`]); the TLS handshake runs in the same task, within the
//! same timeout.

use rustls::pki_types::CertificateDer;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::transport::server::Connected;
use tribune_types::connlimit::{Admission, ClientKey, ConnLimiter, ConnPermit};

use crate::tls::{Conn, RpcTls, ServerTls};

/// The listener's limits. The default has none.
#[derive(Debug, Clone)]
pub struct ListenLimits {
    /// `limits.rpc_max_conns_per_client`, shared so a reload can change it.
    pub conns: Arc<ConnLimiter>,
    /// `limits.rpc_handshake_timeout`: how long a new connection may stay
    /// silent (zero: no limit, as in Consul).
    pub handshake_timeout: Duration,
}

impl Default for ListenLimits {
    fn default() -> Self {
        Self {
            conns: ConnLimiter::new(0),
            handshake_timeout: Duration::ZERO,
        }
    }
}

/// An admitted connection, in the clear or over TLS; its slot is freed when
/// gRPC drops it.
pub struct Admitted {
    io: Conn<ServerTls>,
    _permit: ConnPermit,
}

/// What a request's handler can learn about its connection (a request
/// extension).
#[derive(Debug, Clone)]
pub struct RpcConnectInfo {
    /// The client's address.
    pub remote: Option<SocketAddr>,
    /// The client's certificate chain, end entity first, when it presented
    /// one over TLS (verified against the CAs with `verify_incoming`).
    pub(crate) peer_certificates: Option<Arc<[CertificateDer<'static>]>>,
}

/// How many admitted connections may wait for gRPC to take them.
const BACKLOG: usize = 64;

/// The connections `listener` admits under `limits`, until the returned
/// receiver is dropped or the task accepting them (returned too) is aborted.
pub(crate) fn admit(
    listener: TcpListener,
    limits: ListenLimits,
    tls: Arc<RpcTls>,
) -> (
    mpsc::Receiver<io::Result<Admitted>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(BACKLOG);
    let accepting = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    // Out of descriptors and the like: back off instead of
                    // spinning on an error the next accept would repeat.
                    tracing::warn!(%error, "RPC accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let permit = match limits.conns.admit(ClientKey::of(peer)) {
                Admission::Admitted(permit) => permit,
                Admission::LimitReached { limit } => {
                    tracing::warn!(%peer, limit, "rejecting RPC connection: rpc_max_conns_per_client reached");
                    continue;
                }
            };
            // Answers are small and written in more than one piece: with
            // Nagle's algorithm on, the second piece waits for the client's
            // delayed ACK (up to 40 ms per RPC).
            let _ = stream.set_nodelay(true);
            let tx = tx.clone();
            let timeout = limits.handshake_timeout;
            let tls = Arc::clone(&tls);
            tokio::spawn(async move {
                // One deadline for the first byte and the TLS handshake.
                let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
                let handshake = async {
                    let first = first_byte(&stream, peer, deadline).await?;
                    let opened = tls.accept(stream, first);
                    let opened = match deadline {
                        None => opened.await,
                        Some(deadline) => tokio::time::timeout_at(deadline, opened)
                            .await
                            .unwrap_or_else(|_| Err("TLS handshake timed out".to_owned())),
                    };
                    opened
                        .map_err(|why| tracing::warn!(%peer, "closing RPC connection: {why}"))
                        .ok()
                };
                // Ends with the server too, so no accepted socket (nor its
                // slot) outlives it, even without a handshake timeout.
                let opened = tokio::select! {
                    opened = handshake => opened,
                    () = tx.closed() => None,
                };
                let Some(io) = opened else {
                    return;
                };
                let conn = Admitted {
                    io,
                    _permit: permit,
                };
                let _ = tx.send(Ok(conn)).await;
            });
        }
    });
    (rx, accepting)
}

/// The first byte `stream` sends before `deadline` (`None`: waits as long as
/// it takes), or `None` if it sends nothing. The byte is only peeked at: TLS
/// or gRPC reads it.
async fn first_byte(
    stream: &TcpStream,
    peer: SocketAddr,
    deadline: Option<tokio::time::Instant>,
) -> Option<u8> {
    let mut byte = [0u8; 1];
    let peek = stream.peek(&mut byte);
    let peeked = match deadline {
        None => peek.await,
        Some(deadline) => match tokio::time::timeout_at(deadline, peek).await {
            Ok(peeked) => peeked,
            Err(_) => {
                tracing::debug!(%peer, "closing RPC connection: nothing sent within rpc_handshake_timeout");
                return None;
            }
        },
    };
    matches!(peeked, Ok(n) if n > 0).then_some(byte[0])
}

impl Connected for Admitted {
    type ConnectInfo = RpcConnectInfo;

    fn connect_info(&self) -> RpcConnectInfo {
        RpcConnectInfo {
            remote: self.io.peer_addr(),
            peer_certificates: self.io.peer_certificates(),
        }
    }
}

impl AsyncRead for Admitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    async fn listener() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        (l, addr)
    }

    /// Waits until `key` holds `n` counted connections.
    async fn open_becomes(conns: &ConnLimiter, key: ClientKey, n: u32) {
        while conns.open(key) != n {
            tokio::task::yield_now().await;
        }
    }

    /// Reads until the server closes the connection.
    async fn closed_by_server(mut s: TcpStream) {
        let mut buf = [0u8; 16];
        loop {
            match tokio::io::AsyncReadExt::read(&mut s, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// Over the limit, a new connection is closed unserved; a connection
    /// waiting for its first byte holds its slot until it closes.
    #[tokio::test]
    async fn connections_over_the_limit_are_closed() {
        let (l, addr) = listener().await;
        let conns = ConnLimiter::new(2);
        let (mut admitted, _accepting) = admit(
            l,
            ListenLimits {
                conns: conns.clone(),
                handshake_timeout: Duration::ZERO,
            },
            RpcTls::new(crate::RpcTlsConfig::plain()),
        );
        let key = ClientKey::of(addr);
        let mut talker = TcpStream::connect(addr).await.unwrap();
        talker.write_all(b"P").await.unwrap();
        let first = admitted.recv().await.unwrap().unwrap();
        let silent = TcpStream::connect(addr).await.unwrap();
        open_becomes(&conns, key, 2).await;
        closed_by_server(TcpStream::connect(addr).await.unwrap()).await;
        assert_eq!(conns.open(key), 2);
        drop(silent);
        open_becomes(&conns, key, 1).await;
        drop(first);
        open_becomes(&conns, key, 0).await;
    }

    /// A connection that sends nothing within the handshake timeout is
    /// closed; one that speaks at once is served.
    #[tokio::test]
    async fn silent_connections_are_closed_after_the_handshake_timeout() {
        let (l, addr) = listener().await;
        let (mut admitted, _accepting) = admit(
            l,
            ListenLimits {
                conns: ConnLimiter::new(0),
                handshake_timeout: Duration::from_millis(100),
            },
            RpcTls::new(crate::RpcTlsConfig::plain()),
        );
        let silent = TcpStream::connect(addr).await.unwrap();
        let mut talker = TcpStream::connect(addr).await.unwrap();
        talker.write_all(b"P").await.unwrap();
        let mut served = admitted.recv().await.unwrap().unwrap();
        let mut byte = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut served, &mut byte)
            .await
            .unwrap();
        assert_eq!(&byte, b"P", "the peeked byte is still there for gRPC");
        closed_by_server(silent).await;
    }
}
