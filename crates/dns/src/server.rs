//! The network shell: the UDP ([`udp`](crate::udp)) and TCP ([`tcp`](crate::tcp))
//! listeners, which answer cached questions themselves and hand the rest to the
//! [`Engine`](crate::engine::Engine) through one hickory-server request handler, and
//! the watchers that keep the answer cache ([`cache`](crate::cache)) true to the
//! catalog.

use crate::cache::{AnswerCache, Entry, FastConfig};
use crate::engine::{Engine, Fill, Inbound, Watch};
use crate::tcp;
use crate::udp::UdpWorker;
use crate::{DnsConfig, Lookup};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

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
    /// A UDP listener's socket failed.
    #[error("DNS UDP listener failed: {source}")]
    Udp {
        /// The socket error.
        #[source]
        source: io::Error,
    },
}

/// How long a cache watcher's blocking query waits before checking that its entry is
/// still asked for.
const WATCH_WAIT: Duration = Duration::from_secs(60);

/// A running DNS server: UDP and TCP listeners on every configured address.
///
/// Serving starts in [`DnsServer::bind`]; [`DnsServer::run`] waits for a shutdown
/// signal and stops the listeners. Dropping it stops them too.
pub struct DnsServer {
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
    workers: Vec<UdpWorker>,
    tcp_tasks: Vec<JoinHandle<()>>,
    failed: mpsc::UnboundedReceiver<io::Error>,
    /// Turned true to stop the TCP listeners and the cache watchers; dropping it
    /// stops them too.
    stop: watch::Sender<bool>,
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
            let udp = std::net::UdpSocket::bind(addr).map_err(bind_err(Transport::Udp))?;
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

        let cache = Arc::new(AnswerCache::new(FastConfig::new(
            config.recursion_available(),
            config.udp_answer_limit,
        )));
        let (stop, stopped) = watch::channel(false);
        let handler = Handler {
            inner: Arc::new(Inner {
                engine: Engine::new(config, Arc::clone(&lookup)),
                lookup,
                cache: Arc::clone(&cache),
                stopped: stopped.clone(),
            }),
        };
        let (report, failed) = mpsc::unbounded_channel();
        let mut udp_addrs = Vec::new();
        let mut tcp_addrs = Vec::new();
        let mut workers = Vec::new();
        let mut tcp_tasks = Vec::new();
        for (udp, udp_addr, tcp, tcp_addr) in sockets {
            let worker = UdpWorker::spawn(udp, Arc::clone(&cache), handler.clone(), report.clone())
                .map_err(|source| DnsError::Bind {
                    transport: Transport::Udp,
                    addr: udp_addr,
                    source,
                })?;
            workers.push(worker);
            tcp_tasks.push(tokio::spawn(tcp::serve(
                tcp,
                Arc::clone(&cache),
                handler.clone(),
                stopped.clone(),
            )));
            info!(udp = %udp_addr, tcp = %tcp_addr, "DNS server listening");
            udp_addrs.push(udp_addr);
            tcp_addrs.push(tcp_addr);
        }
        Ok(DnsServer {
            udp: udp_addrs,
            tcp: tcp_addrs,
            workers,
            tcp_tasks,
            failed,
            stop,
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

    /// Serves until `shutdown` completes, then stops the listeners and waits for
    /// them. Returns early with an error if a UDP socket fails.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), DnsError> {
        let DnsServer {
            workers,
            tcp_tasks,
            mut failed,
            stop,
            ..
        } = self;
        let result = tokio::select! {
            Some(source) = failed.recv() => Err(DnsError::Udp { source }),
            () = shutdown => Ok(()),
        };
        let _ = stop.send(true);
        for task in tcp_tasks {
            let _ = task.await;
        }
        for worker in workers {
            worker.stop().await;
        }
        result
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

/// The request handler both transports share: the engine, and the answer cache it
/// fills.
#[derive(Clone)]
struct Handler {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    lookup: Arc<dyn Lookup>,
    cache: Arc<AnswerCache>,
    /// Becomes true when the server stops: the watchers end.
    stopped: watch::Receiver<bool>,
}

impl Inner {
    /// Caches a fresh answer and starts the watcher that drops it once the catalog
    /// moves on.
    fn keep(&self, fill: Fill) {
        let Fill {
            question,
            entry,
            watch,
        } = fill;
        let Some(entry) = self.cache.insert(&question, entry) else {
            return;
        };
        tokio::spawn(watch_entry(
            Arc::clone(&self.cache),
            Arc::clone(&self.lookup),
            question,
            entry,
            watch,
            self.stopped.clone(),
        ));
    }
}

/// Keeps a cache entry while the service's index stays where the answer was built and
/// someone keeps asking; drops it as soon as either stops being true (or the server
/// stops, or the catalog cannot be watched).
async fn watch_entry(
    cache: Arc<AnswerCache>,
    lookup: Arc<dyn Lookup>,
    question: Box<[u8]>,
    entry: Arc<Entry>,
    watch: Watch,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let wait = lookup.wait_service(
            watch.dc.as_deref(),
            &watch.service,
            watch.connect,
            watch.index,
            WATCH_WAIT,
        );
        let changed = tokio::select! {
            result = wait => match result {
                Ok(index) => index != watch.index,
                Err(error) => {
                    debug!(%error, service = %watch.service, "cannot watch a cached DNS answer");
                    true
                }
            },
            _ = stopped.wait_for(|stopped| *stopped) => true,
        };
        if changed || !cache.still_used(&question, &entry) {
            cache.remove(&question, &entry);
            return;
        }
    }
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
            client: Some(request.src().ip()),
        };
        let (response, fill) = self
            .inner
            .engine
            .handle_and_fill(&inbound, unix_now(), rand::random())
            .await;
        if let Some(fill) = fill {
            self.inner.keep(fill);
        }
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
