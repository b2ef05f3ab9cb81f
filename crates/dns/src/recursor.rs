//! Forwarding questions outside our zones to the configured `recursors`.
//!
//! The request is forwarded byte for byte (so the requester's EDNS buffer size,
//! options and flags reach the upstream), under a fresh random ID that the reply must
//! match. Each recursor is asked over UDP; when the requester came over TCP and the
//! reply is truncated, the same recursor is asked again over TCP. A reply with a
//! failure code (anything but NOERROR and NXDOMAIN) moves on to the next recursor, as
//! Consul's `handleRecurse` does; when every one fails the requester gets SERVFAIL.

use crate::server::Transport;
use crate::{DnsConfig, RecursorStrategy};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::serialize::binary::DecodeError;
use rand::seq::SliceRandom;
use rand::Rng;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tracing::debug;

/// Why one recursor, or all of them, did not answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecurseError {
    /// Socket trouble talking to a recursor.
    #[error("recursor {recursor} over {transport}: {source}")]
    Io {
        recursor: SocketAddr,
        transport: Transport,
        #[source]
        source: io::Error,
    },
    /// No reply within `recursor_timeout`.
    #[error("recursor {recursor} over {transport}: no reply within {timeout:?}")]
    Timeout {
        recursor: SocketAddr,
        transport: Transport,
        timeout: Duration,
    },
    /// The reply did not decode.
    #[error("recursor {recursor}: malformed reply: {source}")]
    Malformed {
        recursor: SocketAddr,
        #[source]
        source: DecodeError,
    },
    /// The reply carried a failure code.
    #[error("recursor {recursor} answered {rcode}")]
    Failed {
        recursor: SocketAddr,
        rcode: ResponseCode,
    },
    /// The request is too short to carry an ID (hickory-server never passes one on).
    #[error("request too short to forward")]
    ShortRequest,
    /// Every recursor was tried; the last failure is the source.
    #[error("all {tried} recursors failed")]
    AllFailed {
        tried: usize,
        #[source]
        last: Option<Box<RecurseError>>,
    },
}

/// Forwards `request` (the raw bytes received) to the recursors and returns the first
/// acceptable reply, with the ID we sent (the caller restores the requester's).
pub(crate) async fn forward(
    cfg: &DnsConfig,
    request: &[u8],
    transport: Transport,
    rng: &mut impl Rng,
) -> Result<Message, RecurseError> {
    if request.len() < 12 {
        return Err(RecurseError::ShortRequest);
    }
    let mut order = cfg.recursors.clone();
    if cfg.recursor_strategy == RecursorStrategy::Random {
        order.shuffle(rng);
    }
    let id: u16 = rng.gen();
    let mut query = request.to_vec();
    query[..2].copy_from_slice(&id.to_be_bytes());

    let mut last = None;
    for recursor in order.iter().copied() {
        let outcome = exchange(recursor, &query, id, transport, cfg.recursor_timeout).await;
        match outcome {
            Ok(reply)
                if matches!(
                    reply.metadata.response_code,
                    ResponseCode::NoError | ResponseCode::NXDomain
                ) =>
            {
                return Ok(reply);
            }
            Ok(reply) => {
                let error = RecurseError::Failed {
                    recursor,
                    rcode: reply.metadata.response_code,
                };
                debug!(%error, "recursor failed, trying the next");
                last = Some(Box::new(error));
            }
            Err(error) => {
                debug!(%error, "recursor failed, trying the next");
                last = Some(Box::new(error));
            }
        }
    }
    Err(RecurseError::AllFailed {
        tried: order.len(),
        last,
    })
}

/// One recursor: UDP, then TCP when a TCP requester would otherwise get a truncated
/// reply (a UDP requester gets the truncated reply and retries over TCP itself).
async fn exchange(
    recursor: SocketAddr,
    query: &[u8],
    id: u16,
    transport: Transport,
    timeout: Duration,
) -> Result<Message, RecurseError> {
    let timed_out = |transport| RecurseError::Timeout {
        recursor,
        transport,
        timeout,
    };
    let reply = tokio::time::timeout(timeout, udp_exchange(recursor, query, id))
        .await
        .map_err(|_| timed_out(Transport::Udp))??;
    if !(reply.metadata.truncation && transport == Transport::Tcp) {
        return Ok(reply);
    }
    match tokio::time::timeout(timeout, tcp_exchange(recursor, query, id)).await {
        Ok(Ok(full)) => Ok(full),
        Ok(Err(error)) => {
            debug!(%error, "TCP retry failed, relaying the truncated reply");
            Ok(reply)
        }
        Err(_) => {
            debug!(error = %timed_out(Transport::Tcp), "relaying the truncated reply");
            Ok(reply)
        }
    }
}

fn decode(recursor: SocketAddr, bytes: &[u8]) -> Result<Message, RecurseError> {
    Message::from_vec(bytes).map_err(|source| RecurseError::Malformed { recursor, source })
}

async fn udp_exchange(
    recursor: SocketAddr,
    query: &[u8],
    id: u16,
) -> Result<Message, RecurseError> {
    let io = |source| RecurseError::Io {
        recursor,
        transport: Transport::Udp,
        source,
    };
    let local: SocketAddr = match recursor {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    // Connected: datagrams from anyone else are filtered by the kernel.
    socket.connect(recursor).await.map_err(io)?;
    socket.send(query).await.map_err(io)?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await.map_err(io)?;
        // A stale or spoofed reply is ignored; the timeout bounds the wait.
        if n < 12 || buf[..2] != id.to_be_bytes() {
            continue;
        }
        let reply = decode(recursor, &buf[..n])?;
        if reply.metadata.message_type == MessageType::Response {
            return Ok(reply);
        }
    }
}

async fn tcp_exchange(
    recursor: SocketAddr,
    query: &[u8],
    id: u16,
) -> Result<Message, RecurseError> {
    let io = |source| RecurseError::Io {
        recursor,
        transport: Transport::Tcp,
        source,
    };
    let len = u16::try_from(query.len()).map_err(|_| {
        io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "query too long",
        ))
    })?;
    let mut stream = TcpStream::connect(recursor).await.map_err(io)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(io)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(io)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.map_err(io)?;
    if buf.len() < 12 || buf[..2] != id.to_be_bytes() {
        return Err(io(io::Error::new(
            io::ErrorKind::InvalidData,
            "reply does not match the query ID",
        )));
    }
    decode(recursor, &buf)
}
