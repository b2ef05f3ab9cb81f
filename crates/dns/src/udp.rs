//! The UDP listener: a thread per socket that answers cached questions in place and
//! hands everything else to the engine on the tokio runtime.
//!
//! Why not hickory-server's UDP loop: it spawns a task per datagram and passes the
//! encoded answer back through a channel to the socket task, which costs more CPU than
//! a whole cached answer. Here a blocking `recv_from` on a dedicated thread wakes
//! straight from the kernel, a cache hit ([`AnswerCache`]) is answered with one
//! `send_to` without leaving the thread, and a miss is decoded with hickory-server's
//! own `Request` and answered by the same request handler the TCP listener uses
//! ([`slow`](crate::slow)), so both transports give the engine's answers.

use crate::cache::{AnswerCache, Rng};
use crate::server::Transport;
use crate::slow::{self, Peer};
use hickory_server::server::RequestHandler;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::debug;

/// The largest datagram read. Queries are far smaller; a longer one is cut and then
/// fails to decode (FORMERR), as with hickory-server's buffer of the same size.
const MAX_DATAGRAM: usize = 4096;
/// How often an idle listener looks at its stop flag, should the wake-up datagram
/// get lost.
const STOP_POLL: Duration = Duration::from_secs(1);

/// A running UDP listener thread.
#[derive(Debug)]
pub(crate) struct UdpWorker {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpWorker {
    /// Starts answering on `socket`: hits from `cache`, misses through `handler` on
    /// the current tokio runtime. An unrecoverable socket error is sent to `failed`.
    pub fn spawn<H: RequestHandler + Clone>(
        socket: UdpSocket,
        cache: Arc<AnswerCache>,
        handler: H,
        failed: mpsc::UnboundedSender<io::Error>,
    ) -> io::Result<UdpWorker> {
        let addr = socket.local_addr()?;
        socket.set_read_timeout(Some(STOP_POLL))?;
        let stop = Arc::new(AtomicBool::new(false));
        let listener = Listener {
            socket: Arc::new(socket),
            cache,
            handler,
            runtime: tokio::runtime::Handle::current(),
            stop: Arc::clone(&stop),
        };
        let thread = std::thread::Builder::new()
            .name(format!("dns-udp-{}", addr.port()))
            .spawn(move || {
                if let Err(error) = listener.run() {
                    let _ = failed.send(error);
                }
            })?;
        Ok(UdpWorker {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Tells the thread to stop and wakes it with an empty datagram.
    fn signal(&self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        let target = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::from((Ipv4Addr::LOCALHOST, self.addr.port()))
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::from((Ipv6Addr::LOCALHOST, self.addr.port()))
            }
            _ => self.addr,
        };
        let from: SocketAddr = match target {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        // Best effort: the read timeout covers a failed wake-up.
        if let Ok(socket) = UdpSocket::bind(from) {
            let _ = socket.send_to(&[], target);
        }
    }

    /// Stops the thread and waits for it (and so for its socket to close).
    pub async fn stop(mut self) {
        self.signal();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for UdpWorker {
    fn drop(&mut self) {
        self.signal();
    }
}

/// The thread's side.
struct Listener<H> {
    socket: Arc<UdpSocket>,
    cache: Arc<AnswerCache>,
    handler: H,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
}

impl<H: RequestHandler + Clone> Listener<H> {
    fn run(self) -> io::Result<()> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut out = Vec::with_capacity(1500);
        let mut rng = Rng::new(rand::random());
        while !self.stop.load(Ordering::Relaxed) {
            let (len, src) = match self.socket.recv_from(&mut buf) {
                Ok(received) => received,
                Err(error) => match error.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted
                    // An ICMP port unreachable for an earlier answer.
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset => continue,
                    _ => return Err(error),
                },
            };
            // Nobody can be answered at port 0 or an unspecified address.
            if src.port() == 0 || src.ip().is_unspecified() || src.ip().is_multicast() {
                continue;
            }
            let pkt = &buf[..len];
            if self.cache.answer(pkt, Transport::Udp, &mut rng, &mut out) {
                if let Err(error) = self.socket.send_to(&out, src) {
                    debug!(%error, %src, "failed to send DNS response");
                }
                continue;
            }
            if len < 12 {
                continue;
            }
            let handler = self.handler.clone();
            let socket = Arc::clone(&self.socket);
            let bytes = pkt.to_vec();
            let peer = Peer::Udp { socket, dst: src };
            self.runtime.spawn(slow::answer(handler, bytes, peer));
        }
        Ok(())
    }
}
