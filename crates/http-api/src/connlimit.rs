//! `limits.http_max_conns_per_client` on the HTTP(S) listeners.
//!
//! [`Limited`] wraps a listener: each accepted connection asks the shared
//! [`ConnLimiter`] for a slot and carries its permit until it closes. A client
//! already holding the limit gets Consul's answer, a raw `429 Too Many Requests`
//! with `Connection: close` and the text [`TOO_MANY_CONNS`], written within
//! [`REFUSAL_WRITE_BUDGET`] (Consul's limiter allows 10 ms: a client too slow to
//! take it is not waited for), and the connection is closed after at most
//! [`REFUSAL_DRAIN`] more, in which what the client already sent is read and
//! dropped (Consul closes at once; a close with a request unread can turn into a
//! reset that loses the answer). Over HTTPS the handshake that comes first has
//! [`REFUSAL_HANDSHAKE_BUDGET`]. The refusal runs in its own task, so a flood of
//! refused connections never delays the accept loop.

use crate::conventions::Api;
use axum::serve::Listener;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tribune_types::connlimit::{Admission, ClientKey, ConnLimiter, ConnPermit, TOO_MANY_CONNS};

/// How long the refusal may take to write.
pub(crate) const REFUSAL_WRITE_BUDGET: Duration = Duration::from_millis(10);
/// How long a refused connection is drained after the answer, so that a request
/// the client had already sent does not turn our close into a reset that could
/// discard the answer before the client reads it.
pub(crate) const REFUSAL_DRAIN: Duration = Duration::from_millis(50);
/// How long the TLS handshake before an HTTPS refusal may take.
pub(crate) const REFUSAL_HANDSHAKE_BUDGET: Duration = Duration::from_secs(1);
/// How much of such a request is read (and dropped) meanwhile.
const REFUSAL_DRAIN_BYTES: usize = 16 * 1024;

/// The raw answer to a connection over the limit.
pub(crate) fn refusal() -> String {
    format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{TOO_MANY_CONNS}",
        TOO_MANY_CONNS.len()
    )
}

/// Writes [`refusal`] to a connection over the limit and closes it.
pub(crate) async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) {
    let answer = refusal();
    let wrote = tokio::time::timeout(REFUSAL_WRITE_BUDGET, async {
        io.write_all(answer.as_bytes()).await?;
        io.shutdown().await
    })
    .await;
    if !matches!(wrote, Ok(Ok(()))) {
        return;
    }
    drain(&mut io, REFUSAL_DRAIN, REFUSAL_DRAIN_BYTES).await;
}

/// Reads and drops what the peer still sends, until it closes, for at most
/// `limit` and `max_bytes`: our side has already ended, and closing with data
/// unread would reset the connection.
pub(crate) async fn drain<S: AsyncRead + Unpin>(io: &mut S, limit: Duration, max_bytes: usize) {
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut read = 0;
        while read < max_bytes {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    };
    let _ = tokio::time::timeout(limit, drain).await;
}

/// The key a listener's peer address is counted under.
pub trait PeerKey {
    /// Whose connection this is.
    fn client_key(&self) -> ClientKey;

    /// The client's IP address, if it has one.
    fn client_ip(&self) -> Option<std::net::IpAddr> {
        match self.client_key() {
            ClientKey::Ip(ip) => Some(ip),
            ClientKey::Unix => None,
        }
    }
}

impl PeerKey for std::net::SocketAddr {
    fn client_key(&self) -> ClientKey {
        ClientKey::of(*self)
    }
}

impl PeerKey for tokio::net::unix::SocketAddr {
    fn client_key(&self) -> ClientKey {
        ClientKey::Unix
    }
}

/// Makes one [`Api`] per accepted connection, knowing its client.
#[derive(Clone)]
pub(crate) struct PerConnection(pub(crate) Api);

impl<'a, L> tower::Service<axum::serve::IncomingStream<'a, L>> for PerConnection
where
    L: Listener,
    L::Addr: PeerKey,
{
    type Response = Api;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Api, std::convert::Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, incoming: axum::serve::IncomingStream<'a, L>) -> Self::Future {
        std::future::ready(Ok(self.0.for_client(incoming.remote_addr().client_ip())))
    }
}

/// A listener that admits connections through a [`ConnLimiter`].
pub struct Limited<L> {
    inner: L,
    limiter: Arc<ConnLimiter>,
}

impl<L> Limited<L> {
    /// Wraps `inner`; `limiter` may be shared with other listeners (Consul
    /// counts a client's HTTP and HTTPS connections together).
    pub fn new(inner: L, limiter: Arc<ConnLimiter>) -> Self {
        Self { inner, limiter }
    }
}

impl<L> Listener for Limited<L>
where
    L: Listener,
    L::Addr: PeerKey,
{
    type Io = Counted<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (io, addr) = self.inner.accept().await;
            match self.limiter.admit(addr.client_key()) {
                Admission::Admitted(permit) => return (Counted::new(io, permit), addr),
                Admission::LimitReached { limit } => {
                    tracing::debug!(limit, "HTTP connection over the per-client limit refused");
                    tokio::spawn(refuse(io));
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An admitted connection.
///
/// Its slot is freed as the server ends the connection, before its side is
/// closed (`poll_shutdown`, or the drop: the permit is declared first, so it is
/// dropped before the socket is closed). A client that has seen the close can
/// therefore open a new connection at once without being refused.
pub struct Counted<S> {
    permit: Option<ConnPermit>,
    io: S,
}

impl<S> Counted<S> {
    /// `io`, holding `permit` until it is shut down or dropped.
    pub(crate) fn new(io: S, permit: ConnPermit) -> Self {
        Counted {
            permit: Some(permit),
            io,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.permit = None;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    #[test]
    fn ipv4_clients_on_a_dual_stack_listener_count_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.0.0.7]:5000".parse().unwrap();
        let plain: SocketAddr = "10.0.0.7:6000".parse().unwrap();
        let want = ClientKey::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)));
        assert_eq!(mapped.client_key(), want);
        assert_eq!(plain.client_key(), want);
        let v6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        assert_eq!(v6.client_key(), ClientKey::Ip(v6.ip()));
    }

    #[test]
    fn the_refusal_is_a_complete_response() {
        let r = refusal();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, TOO_MANY_CONNS);
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
    }
}
