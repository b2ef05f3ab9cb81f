//! The network shell: UDP and TCP listeners on hickory-server, feeding the
//! [`Engine`](crate::engine::Engine).
//!
//! hickory-server owns the sockets, TCP framing, idle timeouts and the protocol
//! errors that never reach us: a datagram shorter than a header is dropped, one that
//! does not decode gets FORMERR, a response (QR set) is ignored.

use crate::engine::{Engine, Inbound};
use crate::{DnsConfig, Lookup};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, UdpSocket};
use tracing::{info, warn};

/// How a request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A datagram: answers are trimmed to the requester's buffer.
    Udp,
    /// A stream: answers are complete up to 64 KiB.
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

/// Why the DNS server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// `bind` is empty (the agent does not start DNS when `ports.dns` is -1).
    #[error("no DNS listen address configured")]
    NoListeners,
    /// A listen address could not be bound.
    #[error("binding DNS {transport} listener on {addr}: {source}")]
    Bind {
        /// Which listener.
        transport: Transport,
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// A listener stopped on its own (its socket failed).
    #[error("DNS listener failed: {source}")]
    Serve {
        /// hickory's error.
        #[source]
        source: NetError,
    },
}

/// How long a TCP connection may stay idle between requests (miekg/dns's default
/// idle timeout, which Consul inherits).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(8);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

/// A running DNS server: UDP and TCP listeners on every configured address.
///
/// Serving starts in [`DnsServer::bind`]; [`DnsServer::run`] waits for a shutdown
/// signal and stops the listeners. Dropping it stops them too.
pub struct DnsServer {
    server: Server<Handler>,
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
}

impl fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsServer")
            .field("udp", &self.udp)
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Binds UDP and TCP on every address of `config.bind` and starts answering.
    ///
    /// Port 0 binds an ephemeral port; TCP then tries the port UDP got, so one
    /// address serves both when it can. [`DnsServer::udp_addrs`] and
    /// [`DnsServer::tcp_addrs`] report what was bound. Must be called within a tokio
    /// runtime.
    pub async fn bind(config: DnsConfig, lookup: Arc<dyn Lookup>) -> Result<DnsServer, DnsError> {
        if config.bind.is_empty() {
            return Err(DnsError::NoListeners);
        }
        let mut sockets = Vec::new();
        for addr in config.bind.iter().copied() {
            let bind_err = |transport| {
                move |source| DnsError::Bind {
                    transport,
                    addr,
                    source,
                }
            };
            let udp = UdpSocket::bind(addr)
                .await
                .map_err(bind_err(Transport::Udp))?;
            let udp_addr = udp.local_addr().map_err(bind_err(Transport::Udp))?;
            let tcp = if addr.port() == 0 {
                match TcpListener::bind(udp_addr).await {
                    Ok(tcp) => tcp,
                    Err(_) => TcpListener::bind(addr)
                        .await
                        .map_err(bind_err(Transport::Tcp))?,
                }
            } else {
                TcpListener::bind(addr)
                    .await
                    .map_err(bind_err(Transport::Tcp))?
            };
            let tcp_addr = tcp.local_addr().map_err(bind_err(Transport::Tcp))?;
            sockets.push((udp, udp_addr, tcp, tcp_addr));
        }

        let handler = Handler {
            engine: Arc::new(Engine::new(config, lookup)),
        };
        let mut server = Server::new(handler);
        let mut udp_addrs = Vec::new();
        let mut tcp_addrs = Vec::new();
        for (udp, udp_addr, tcp, tcp_addr) in sockets {
            server.register_socket(udp);
            server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
            info!(udp = %udp_addr, tcp = %tcp_addr, "DNS server listening");
            udp_addrs.push(udp_addr);
            tcp_addrs.push(tcp_addr);
        }
        Ok(DnsServer {
            server,
            udp: udp_addrs,
            tcp: tcp_addrs,
        })
    }

    /// The bound UDP addresses, in `bind` order.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp
    }

    /// The bound TCP addresses, in `bind` order.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp
    }

    /// Serves until `shutdown` completes, then stops accepting and waits for the
    /// listeners to finish. Returns early with an error if a listener fails.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), DnsError> {
        let token = self.server.shutdown_token().clone();
        let done = self.server.block_until_done();
        tokio::pin!(done);
        tokio::pin!(shutdown);
        let result = tokio::select! {
            result = &mut done => result,
            () = &mut shutdown => {
                token.cancel();
                done.await
            }
        };
        result.map_err(|source| DnsError::Serve { source })
    }
}

/// Binds `config.bind` and serves until `shutdown` completes: [`DnsServer::bind`]
/// then [`DnsServer::run`].
pub async fn serve(
    config: DnsConfig,
    lookup: Arc<dyn Lookup>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DnsError> {
    DnsServer::bind(config, lookup).await?.run(shutdown).await
}

/// hickory's side of the engine.
struct Handler {
    engine: Arc<Engine>,
}

fn unix_now() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // The SOA serial is 32 bits; Consul truncates the same way.
    secs as u32
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let transport = match request.protocol() {
            Protocol::Udp => Transport::Udp,
            _ => Transport::Tcp,
        };
        let inbound = Inbound {
            metadata: request.metadata,
            queries: request
                .queries
                .queries()
                .iter()
                .map(|q| q.original().clone())
                .collect(),
            edns: request.edns.as_ref(),
            transport,
            raw: request.as_slice(),
        };
        let response = self
            .engine
            .handle(&inbound, unix_now(), rand::random())
            .await;
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(edns) = &response.edns {
            builder.edns(edns);
        }
        let message = builder.build(
            response.metadata,
            response.answers.iter(),
            response.authority.iter(),
            std::iter::empty(),
            response.additional.iter(),
        );
        match response_handle.send_response(message).await {
            Ok(info) => info,
            Err(error) => {
                warn!(%error, src = %request.src(), "failed to send DNS response");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}
