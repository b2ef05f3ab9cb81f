//! The tokio shell: binds UDP and TCP on one port, runs one task that owns the
//! [`Core`] and feeds it datagrams, stream exchanges, timer wakeups and API calls,
//! and executes the effects it returns (send, push/pull, deliver events).
//!
//! [`Gossip`] is the handle the agent holds. Reads (`members`, `list_keys`,
//! `local_addr`) come from snapshots and never wait for the driver; operations that
//! change protocol state go to the driver and wait for its answer.

mod transport;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tribune_types::model::coordinate::Coordinate;
use tribune_types::model::Member;

use crate::config::{CoreConfig, Profile};
use crate::core::{Core, CoreStats, Effect, Event, LocalNode};
use crate::error::GossipError;
use crate::keyring::Keyring;
use crate::wire::Tags;
use transport::{Codec, StreamError};

/// What subscribers receive: member changes and user events.
pub type GossipEvent = Event;

/// How to start a gossip pool.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// Unique member name (Consul: the node name; `<node>.<dc>` on the WAN pool).
    pub name: String,
    /// Address to bind UDP and TCP on; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Address to announce, when it differs from the bound one (NAT, or a bind to
    /// `0.0.0.0`, which cannot be announced). A port of 0 means the bound port.
    pub advertise: Option<SocketAddr>,
    /// Initial tags.
    pub tags: Tags,
    /// Protocol timings and limits ([`Profile::config`] or hand-tuned).
    pub core: CoreConfig,
    /// Encryption keys; `None` runs in plaintext.
    pub keyring: Option<Keyring>,
    /// With a keyring, whether plaintext input is refused (Consul
    /// `encrypt_verify_incoming`, memberlist `GossipVerifyIncoming`); off
    /// while encryption is rolled out on a running cluster.
    pub verify_incoming: bool,
    /// With a keyring, whether what this node sends is encrypted (Consul
    /// `encrypt_verify_outgoing`); off in a rollout's first step, so nodes
    /// without the key still understand it.
    pub verify_outgoing: bool,
    /// Where the keyring is persisted (Consul `serf/local.keyring`). An existing
    /// file wins over `keyring`, as Consul ignores `encrypt` once it has a keyring.
    pub keyring_file: Option<PathBuf>,
    /// Capacity of each subscriber's event queue; a subscriber that falls further
    /// behind misses events (and is told so by `broadcast::error::RecvError::Lagged`).
    pub event_capacity: usize,
    /// Seed for the core's RNG; `None` takes one from the OS.
    pub seed: Option<u64>,
    /// Where the member snapshot is kept (Consul `serf/local.snapshot`); on start the
    /// node rejoins the members it lists (see [`crate::snapshot`]).
    pub snapshot_file: Option<PathBuf>,
    /// Rejoin from the snapshot even when the last run ended in a graceful leave
    /// (Consul `-rejoin`, `rejoin_after_leave`).
    pub rejoin_after_leave: bool,
}

impl GossipConfig {
    /// A configuration with a profile's defaults and no tags or encryption.
    pub fn new(name: impl Into<String>, bind: SocketAddr, profile: Profile) -> Self {
        Self {
            name: name.into(),
            bind,
            advertise: None,
            tags: Tags::new(),
            core: profile.config(),
            keyring: None,
            verify_incoming: true,
            verify_outgoing: true,
            keyring_file: None,
            event_capacity: 1024,
            seed: None,
            snapshot_file: None,
            rejoin_after_leave: false,
        }
    }
}

/// Counters for `tribune info`-style reporting and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// The core's counters.
    pub core: CoreStats,
    /// Sealed input no installed key opens.
    pub decrypt_failures: u64,
    /// Plaintext input refused because encryption is on.
    pub plaintext_rejected: u64,
    /// Sealed input refused because encryption is off.
    pub sealed_rejected: u64,
    /// Failed stream exchanges (both directions).
    pub stream_errors: u64,
}

enum Command {
    Join {
        addrs: Vec<SocketAddr>,
        reply: oneshot::Sender<Result<usize, GossipError>>,
    },
    Leave {
        reply: oneshot::Sender<()>,
    },
    ForceLeave {
        name: String,
        prune: bool,
        reply: oneshot::Sender<Result<(), GossipError>>,
    },
    UserEvent {
        name: String,
        payload: Vec<u8>,
        coalesce: bool,
        reply: oneshot::Sender<Result<(), GossipError>>,
    },
    SetTags {
        tags: Tags,
        reply: oneshot::Sender<Result<(), GossipError>>,
    },
    Shutdown,
}

enum Input {
    /// A push/pull request arrived on our listener; answer on `reply`.
    Inbound {
        from: SocketAddr,
        frame: Vec<u8>,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// A push/pull we started finished.
    Outbound {
        to: SocketAddr,
        join: Option<u64>,
        result: Result<Vec<u8>, StreamError>,
    },
}

struct Shared {
    codec: Codec,
    members: RwLock<Vec<Member>>,
    coords: RwLock<Coords>,
    core_stats: Mutex<CoreStats>,
    keyring_file: Option<PathBuf>,
    default_port: u16,
}

/// The coordinates as of the core's last change, for readers off the driver task.
#[derive(Debug, Default)]
struct Coords {
    local: Option<Coordinate>,
    peers: BTreeMap<String, Coordinate>,
}

/// A running gossip pool member. Dropping it stops the node without leaving.
pub struct Gossip {
    name: String,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<GossipEvent>,
    local_addr: SocketAddr,
    advertise: SocketAddr,
    leave_propagate_delay: Duration,
    gossip_interval: Duration,
    snapshot: Option<crate::snapshot::Recorder>,
    driver: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("local_addr", &self.local_addr)
            .field("advertise", &self.advertise)
            .finish_non_exhaustive()
    }
}

impl Gossip {
    /// Bind the sockets and start the node. It is alone until it joins or another
    /// member joins it.
    pub async fn start(cfg: GossipConfig) -> Result<Gossip, GossipError> {
        cfg.core.validate()?;
        if cfg.name.is_empty() {
            return Err(GossipError::InvalidConfig {
                field: "name",
                reason: "must not be empty",
            });
        }
        let keyring = load_keyring(cfg.keyring, cfg.keyring_file.as_deref())?;
        let (udp, tcp) = transport::bind(cfg.bind).await?;
        let local_addr = udp.local_addr().map_err(|source| GossipError::Bind {
            proto: "udp",
            addr: cfg.bind,
            source,
        })?;
        let advertise = match cfg.advertise {
            Some(a) if a.port() == 0 => SocketAddr::new(a.ip(), local_addr.port()),
            Some(a) => a,
            None if local_addr.ip().is_unspecified() => {
                return Err(GossipError::InvalidConfig {
                    field: "advertise",
                    reason: "is required when binding to an unspecified address",
                })
            }
            None => local_addr,
        };
        let seed = cfg.seed.unwrap_or_else(rand::random);
        let name = cfg.name.clone();
        let local = LocalNode {
            name: cfg.name,
            addr: advertise,
            tags: cfg.tags,
        };
        let core = Core::new(cfg.core.clone(), local, seed, Instant::now())?;
        let shared = Arc::new(Shared {
            codec: Codec::new(keyring, cfg.verify_incoming, cfg.verify_outgoing),
            members: RwLock::new(core.members()),
            coords: RwLock::new(Coords {
                local: core.coordinate().cloned(),
                peers: BTreeMap::new(),
            }),
            core_stats: Mutex::new(core.stats()),
            keyring_file: cfg.keyring_file,
            default_port: advertise.port(),
        });
        let (events, _) = broadcast::channel(cfg.event_capacity.max(16));
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (input_tx, input_rx) = mpsc::unbounded_channel();
        let accept = tokio::spawn(accept_loop(
            tcp,
            input_tx.clone(),
            shared.clone(),
            cfg.core.tcp_timeout,
        ));
        let coord_change = core.coordinate_changes();
        let driver = Driver {
            core,
            udp: Arc::new(udp),
            shared: shared.clone(),
            events: events.clone(),
            input_tx,
            joins: HashMap::new(),
            next_join: 0,
            leave: None,
            last_change: u64::MAX,
            last_coord_change: coord_change,
            tcp_timeout: cfg.core.tcp_timeout,
            broadcast_timeout: cfg.core.broadcast_timeout,
        };
        let driver = tokio::spawn(driver.run(command_rx, input_rx, accept));
        let snapshot = match &cfg.snapshot_file {
            Some(path) => Some(start_snapshot(
                path,
                &name,
                cfg.rejoin_after_leave,
                &shared,
                &events,
                &commands,
            )?),
            None => None,
        };
        Ok(Gossip {
            name,
            shared,
            commands,
            events,
            local_addr,
            advertise,
            leave_propagate_delay: cfg.core.leave_propagate_delay,
            gossip_interval: cfg.core.gossip_interval,
            snapshot,
            driver: Mutex::new(Some(driver)),
        })
    }

    /// The bound address (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address announced to other members.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise
    }

    /// How often broadcasts are gossiped: the unit Serf scales its query timeout by,
    /// and so the pace at which anything this node broadcasts reaches the others.
    pub fn gossip_interval(&self) -> Duration {
        self.gossip_interval
    }

    /// Every known member, this one included, by name.
    pub fn members(&self) -> Vec<Member> {
        self.shared.members.read().clone()
    }

    /// This member's name in the pool.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This member's Vivaldi coordinate (`None` when coordinates are off).
    pub fn coordinate(&self) -> Option<Coordinate> {
        self.shared.coords.read().local.clone()
    }

    /// The coordinates peers sent with their latest direct acks, by member name
    /// (Serf's coordinate cache; members reaped are dropped).
    pub fn peer_coordinates(&self) -> BTreeMap<String, Coordinate> {
        self.shared.coords.read().peers.clone()
    }

    /// Receive member and user events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<GossipEvent> {
        self.events.subscribe()
    }

    /// Counters of dropped input and failed exchanges.
    pub fn stats(&self) -> GossipStats {
        let c = &self.shared.codec.counters;
        GossipStats {
            core: *self.shared.core_stats.lock(),
            decrypt_failures: c.decrypt_failures.load(Ordering::Relaxed),
            plaintext_rejected: c.plaintext_rejected.load(Ordering::Relaxed),
            sealed_rejected: c.sealed_rejected.load(Ordering::Relaxed),
            stream_errors: c.stream_errors.load(Ordering::Relaxed),
        }
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, GossipError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || GossipError::NotRunning { state: "shut down" };
        self.commands.send(make(tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())
    }

    /// Join a cluster through any of `addrs` (`host:port`, or `host` for our own
    /// port). Returns how many were contacted; fails if none was.
    pub async fn join(&self, addrs: &[String]) -> Result<usize, GossipError> {
        let mut resolved = Vec::with_capacity(addrs.len());
        let mut errors = Vec::new();
        for a in addrs {
            match transport::resolve(a, self.shared.default_port).await {
                Ok(sa) => resolved.push(sa),
                Err(e) => errors.push(format!("{a}: {e}")),
            }
        }
        if resolved.is_empty() {
            return Err(GossipError::JoinFailed {
                attempted: addrs.len(),
                errors,
            });
        }
        let result = self
            .call(|reply| Command::Join {
                addrs: resolved,
                reply,
            })
            .await?;
        match result {
            Err(GossipError::JoinFailed {
                errors: mut more, ..
            }) => {
                errors.append(&mut more);
                Err(GossipError::JoinFailed {
                    attempted: addrs.len(),
                    errors,
                })
            }
            other => other,
        }
    }

    /// Leave gracefully: announce it, wait until the announcement has gone out (at
    /// most the broadcast timeout), then the propagation delay. The node keeps
    /// answering probes until [`Gossip::shutdown`].
    pub async fn leave(&self) -> Result<(), GossipError> {
        self.call(|reply| Command::Leave { reply }).await?;
        if let Some(snapshot) = &self.snapshot {
            // Before the propagation delay: a restart right after a leave must find it.
            if let Err(e) = snapshot.mark_left() {
                tracing::warn!(error = %e, "leave not recorded in the gossip snapshot");
            }
        }
        if !self.leave_propagate_delay.is_zero() {
            // Protocol delay (Serf `LeavePropagateDelay`), not synchronisation: give
            // the last retransmissions time to land before the sockets close.
            tokio::time::sleep(self.leave_propagate_delay).await;
        }
        Ok(())
    }

    /// Mark a failed member as left; with `prune`, forget it at once.
    pub async fn force_leave(&self, name: &str, prune: bool) -> Result<(), GossipError> {
        let name = name.to_owned();
        self.call(|reply| Command::ForceLeave { name, prune, reply })
            .await?
    }

    /// Fire a user event to every member (this one included). `name + payload` is
    /// limited to `user_event_size_limit` (512 bytes by default).
    pub async fn fire_event(&self, name: &str, payload: &[u8]) -> Result<(), GossipError> {
        self.fire_event_with(name, payload, false).await
    }

    /// [`Gossip::fire_event`] with Serf's `coalesce` flag.
    pub async fn fire_event_with(
        &self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
    ) -> Result<(), GossipError> {
        let (name, payload) = (name.to_owned(), payload.to_vec());
        self.call(|reply| Command::UserEvent {
            name,
            payload,
            coalesce,
            reply,
        })
        .await?
    }

    /// Replace this member's tags.
    pub async fn set_tags(&self, tags: Tags) -> Result<(), GossipError> {
        self.call(|reply| Command::SetTags { tags, reply }).await?
    }

    /// Install a key (base64) for decryption on this node.
    pub fn install_key(&self, key: &str) -> Result<(), GossipError> {
        self.modify_keyring(|ring| ring.install(key))
    }

    /// Make an installed key the one this node encrypts with.
    pub fn use_key(&self, key: &str) -> Result<(), GossipError> {
        self.modify_keyring(|ring| ring.use_key(key))
    }

    /// Remove a key that is not the primary.
    pub fn remove_key(&self, key: &str) -> Result<(), GossipError> {
        self.modify_keyring(|ring| ring.remove(key))
    }

    /// Installed keys, base64, primary first.
    pub fn list_keys(&self) -> Result<Vec<String>, GossipError> {
        self.shared
            .codec
            .keyring()
            .read()
            .as_ref()
            .map(Keyring::list)
            .ok_or(GossipError::EncryptionDisabled)
    }

    /// Apply `op` to a copy, persist it, then swap it in, so a failed write leaves
    /// the keyring in force unchanged.
    fn modify_keyring(
        &self,
        op: impl FnOnce(&mut Keyring) -> Result<(), GossipError>,
    ) -> Result<(), GossipError> {
        let mut guard = self.shared.codec.keyring().write();
        let ring = guard.as_mut().ok_or(GossipError::EncryptionDisabled)?;
        let mut next = ring.clone();
        op(&mut next)?;
        if let Some(path) = &self.shared.keyring_file {
            next.save(path)?;
        }
        *ring = next;
        Ok(())
    }

    /// Stop the node without leaving: others will detect it as failed. Waits for
    /// the driver task to finish.
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
        let handle = self.driver.lock().take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }
}

impl Drop for Gossip {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
    }
}

/// Reads the previous run's member snapshot, starts recording this run's, and
/// rejoins the members it knew (in the background, one attempt, as Serf does; a node
/// that cannot reach any of them is alone until it is joined or retry-joins).
fn start_snapshot(
    path: &std::path::Path,
    name: &str,
    rejoin_after_leave: bool,
    shared: &Arc<Shared>,
    events: &broadcast::Sender<GossipEvent>,
    commands: &mpsc::UnboundedSender<Command>,
) -> Result<crate::snapshot::Recorder, GossipError> {
    use crate::snapshot::{load, member_addr, Recorder};
    let previous = load(path).unwrap_or_else(|e| {
        // Written by rename, so only outside hands can have broken it; starting
        // alone beats refusing to start.
        tracing::warn!(error = %e, "ignoring the gossip snapshot");
        None
    });
    let alive = {
        let shared = shared.clone();
        move || {
            shared
                .members
                .read()
                .iter()
                .filter(|m| m.status == 1)
                .map(|m| (m.name.clone(), member_addr(m)))
                .collect::<Vec<_>>()
        }
    };
    let recorder = Recorder::create(path.to_owned(), name, alive())?;
    tokio::spawn(recorder.clone().run(events.subscribe(), alive));
    let addrs: Vec<SocketAddr> = previous
        .as_ref()
        .map(|p| p.rejoin_addrs(rejoin_after_leave))
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    if previous
        .as_ref()
        .is_some_and(|p| p.left && !rejoin_after_leave)
    {
        tracing::info!("left the pool last time: not rejoining (-rejoin overrides)");
    }
    if !addrs.is_empty() {
        let commands = commands.clone();
        tokio::spawn(async move {
            let (reply, rx) = oneshot::channel();
            let n = addrs.len();
            if commands.send(Command::Join { addrs, reply }).is_err() {
                return;
            }
            match rx.await {
                Ok(Ok(joined)) => tracing::info!(joined, "rejoined previously known members"),
                Ok(Err(e)) => tracing::warn!(known = n, error = %e, "rejoin failed"),
                Err(_) => {}
            }
        });
    }
    Ok(recorder)
}

fn load_keyring(
    configured: Option<Keyring>,
    file: Option<&std::path::Path>,
) -> Result<Option<Keyring>, GossipError> {
    let Some(path) = file else {
        return Ok(configured);
    };
    match (Keyring::load(path)?, configured) {
        (Some(from_file), Some(_)) => {
            tracing::warn!(path = %path.display(), "gossip: keyring file exists; ignoring the configured key");
            Ok(Some(from_file))
        }
        (Some(from_file), None) => Ok(Some(from_file)),
        (None, Some(ring)) => {
            ring.save(path)?;
            Ok(Some(ring))
        }
        (None, None) => Ok(None),
    }
}

async fn accept_loop(
    listener: TcpListener,
    input: mpsc::UnboundedSender<Input>,
    shared: Arc<Shared>,
    timeout: Duration,
) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "gossip: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (input, shared) = (input.clone(), shared.clone());
        tokio::spawn(async move {
            let served = tokio::time::timeout(timeout, serve_stream(stream, from, &input, &shared));
            let failed = match served.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(StreamError::Timeout),
            };
            if let Some(e) = failed {
                shared
                    .codec
                    .counters
                    .stream_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%from, error = %e, "gossip: inbound stream failed");
            }
        });
    }
}

async fn serve_stream(
    mut stream: TcpStream,
    from: SocketAddr,
    input: &mpsc::UnboundedSender<Input>,
    shared: &Shared,
) -> Result<(), StreamError> {
    let raw = transport::read_frame(&mut stream).await?;
    let frame = shared.codec.open(&raw, from).ok_or(StreamError::Rejected)?;
    let (tx, rx) = oneshot::channel();
    if input
        .send(Input::Inbound {
            from,
            frame,
            reply: tx,
        })
        .is_err()
    {
        return Ok(()); // shutting down
    }
    match rx.await {
        Ok(Some(reply)) => transport::write_frame(&mut stream, &shared.codec.seal(reply)).await,
        _ => Err(StreamError::Rejected),
    }
}

struct JoinWait {
    pending: usize,
    ok: usize,
    attempted: usize,
    errors: Vec<String>,
    reply: oneshot::Sender<Result<usize, GossipError>>,
}

struct Driver {
    core: Core,
    udp: Arc<UdpSocket>,
    shared: Arc<Shared>,
    events: broadcast::Sender<GossipEvent>,
    input_tx: mpsc::UnboundedSender<Input>,
    joins: HashMap<u64, JoinWait>,
    next_join: u64,
    leave: Option<(oneshot::Sender<()>, Instant)>,
    last_change: u64,
    /// [`Core::coordinate_changes`] as last published to `shared.coords`.
    last_coord_change: u64,
    tcp_timeout: Duration,
    broadcast_timeout: Duration,
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        accept: JoinHandle<()>,
    ) {
        let mut buf = vec![0u8; 65_536];
        let udp = self.udp.clone();
        self.refresh();
        loop {
            let mut wake = self.core.next_wakeup();
            if let Some((_, deadline)) = &self.leave {
                wake = wake.min(*deadline);
            }
            let effects = tokio::select! {
                recv = udp.recv_from(&mut buf) => match recv {
                    Ok((n, from)) => match self.shared.codec.open(&buf[..n], from) {
                        Some(plain) => self.core.handle_packet(from, &plain, Instant::now()),
                        None => Vec::new(),
                    },
                    Err(e) => {
                        // ICMP errors from earlier sends surface here on some
                        // platforms; they are not fatal to the socket.
                        tracing::debug!(error = %e, "gossip: udp receive error");
                        Vec::new()
                    }
                },
                cmd = commands.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => self.command(cmd),
                },
                Some(input) = inputs.recv() => self.input(input),
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    let now = Instant::now();
                    if self.leave.as_ref().is_some_and(|(_, d)| *d <= now) {
                        tracing::warn!("gossip: leave broadcast not confirmed within the broadcast timeout");
                        if let Some((reply, _)) = self.leave.take() {
                            let _ = reply.send(());
                        }
                    }
                    self.core.tick(now)
                }
            };
            // Snapshot first: a subscriber woken by an event must find the
            // membership it describes.
            self.refresh();
            self.execute(effects).await;
        }
        accept.abort();
        for (_, wait) in self.joins.drain() {
            let _ = wait
                .reply
                .send(Err(GossipError::NotRunning { state: "shut down" }));
        }
    }

    fn refresh(&mut self) {
        let change = self.core.change_counter();
        if change != self.last_change {
            self.last_change = change;
            *self.shared.members.write() = self.core.members();
        }
        let coords = self.core.coordinate_changes();
        if coords != self.last_coord_change {
            self.last_coord_change = coords;
            *self.shared.coords.write() = Coords {
                local: self.core.coordinate().cloned(),
                peers: self.core.peer_coordinates().clone(),
            };
        }
        *self.shared.core_stats.lock() = self.core.stats();
    }

    fn command(&mut self, cmd: Command) -> Vec<Effect> {
        let now = Instant::now();
        match cmd {
            Command::Join { addrs, reply } => {
                let id = self.next_join;
                self.next_join += 1;
                let effects = self.core.join(&addrs, now);
                let pending = effects
                    .iter()
                    .filter(|e| matches!(e, Effect::PushPull { join: true, .. }))
                    .count();
                if pending == 0 {
                    let _ = reply.send(Err(GossipError::NotRunning { state: "leaving" }));
                    return effects;
                }
                self.joins.insert(
                    id,
                    JoinWait {
                        pending,
                        ok: 0,
                        attempted: pending,
                        errors: Vec::new(),
                        reply,
                    },
                );
                let mut rest = Vec::new();
                for effect in effects {
                    match effect {
                        Effect::PushPull {
                            to,
                            request,
                            join: true,
                        } => {
                            self.spawn_exchange(to, request, Some(id));
                        }
                        other => rest.push(other),
                    }
                }
                rest
            }
            Command::Leave { reply } => {
                if !self.core.is_running() {
                    let _ = reply.send(());
                    return Vec::new();
                }
                let effects = self.core.leave(now);
                self.leave = Some((reply, now + self.broadcast_timeout));
                effects
            }
            Command::ForceLeave { name, prune, reply } => {
                respond(reply, self.core.force_leave(&name, prune, now))
            }
            Command::UserEvent {
                name,
                payload,
                coalesce,
                reply,
            } => respond(reply, self.core.user_event(&name, &payload, coalesce, now)),
            Command::SetTags { tags, reply } => respond(reply, self.core.set_tags(tags, now)),
            Command::Shutdown => Vec::new(),
        }
    }

    fn input(&mut self, input: Input) -> Vec<Effect> {
        let now = Instant::now();
        match input {
            Input::Inbound { from, frame, reply } => {
                match self.core.handle_stream(from, &frame, now) {
                    Ok((answer, effects)) => {
                        let _ = reply.send(Some(answer));
                        effects
                    }
                    Err(_) => {
                        let _ = reply.send(None);
                        Vec::new()
                    }
                }
            }
            Input::Outbound { to, join, result } => {
                let outcome = result.map_err(|e| e.to_string()).and_then(|frame| {
                    self.core
                        .handle_stream_reply(to, &frame, join.is_some(), now)
                        .map_err(|e| e.to_string())
                });
                let effects = match &outcome {
                    Ok(effects) => effects.clone(),
                    Err(e) => {
                        self.shared
                            .codec
                            .counters
                            .stream_errors
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%to, error = %e, "gossip: push/pull failed");
                        Vec::new()
                    }
                };
                if let Some(id) = join {
                    self.join_progress(id, to, outcome.map(|_| ()));
                }
                effects
            }
        }
    }

    fn join_progress(&mut self, id: u64, to: SocketAddr, outcome: Result<(), String>) {
        let Some(wait) = self.joins.get_mut(&id) else {
            return;
        };
        wait.pending -= 1;
        match outcome {
            Ok(()) => wait.ok += 1,
            Err(e) => wait.errors.push(format!("{to}: {e}")),
        }
        if wait.pending > 0 {
            return;
        }
        if let Some(wait) = self.joins.remove(&id) {
            let result = if wait.ok > 0 {
                Ok(wait.ok)
            } else {
                Err(GossipError::JoinFailed {
                    attempted: wait.attempted,
                    errors: wait.errors,
                })
            };
            let _ = wait.reply.send(result);
        }
    }

    fn spawn_exchange(&self, to: SocketAddr, request: Vec<u8>, join: Option<u64>) {
        let (shared, input, timeout) =
            (self.shared.clone(), self.input_tx.clone(), self.tcp_timeout);
        tokio::spawn(async move {
            let result = transport::exchange(to, request, &shared.codec, timeout).await;
            let _ = input.send(Input::Outbound { to, join, result });
        });
    }

    async fn execute(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send { to, packet } => {
                    let packet = self.shared.codec.seal(packet);
                    if let Err(e) = self.udp.send_to(&packet, to).await {
                        tracing::debug!(%to, error = %e, "gossip: udp send failed");
                    }
                }
                Effect::PushPull { to, request, .. } => {
                    // Joins are spawned (and counted) by the command that started
                    // them; other exchanges only feed the core.
                    self.spawn_exchange(to, request, None);
                }
                Effect::Event(ev) => {
                    // No subscriber is fine: the agent may not listen yet.
                    let _ = self.events.send(ev);
                }
                Effect::LeaveDone => {
                    if let Some((reply, _)) = self.leave.take() {
                        let _ = reply.send(());
                    }
                }
            }
        }
    }
}

fn respond(
    reply: oneshot::Sender<Result<(), GossipError>>,
    result: Result<Vec<Effect>, GossipError>,
) -> Vec<Effect> {
    match result {
        Ok(effects) => {
            let _ = reply.send(Ok(()));
            effects
        }
        Err(e) => {
            let _ = reply.send(Err(e));
            Vec::new()
        }
    }
}
