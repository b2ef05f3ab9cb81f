//! Per-client connection counting: `limits.http_max_conns_per_client` and
//! `limits.rpc_max_conns_per_client`.
//!
//! Consul counts the open connections of each client IP address and turns away
//! a new one once that address holds the limit (0 means no limit). The listeners
//! (`http-api`, `rpc`) ask [`ConnLimiter::admit`] on every accepted connection and
//! keep the returned [`ConnPermit`] for as long as the connection lives; dropping
//! it frees the slot. The limit can be changed on reload: a lower limit turns
//! away new connections only, as in Consul, and open ones stay until they close.
//!
//! Connections on a unix socket have no address; Consul keys them all alike, so
//! they share one count here too ([`ClientKey::Unix`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Whose connections are counted together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// A TCP client, by IP address (ports do not matter).
    Ip(IpAddr),
    /// Any client on a unix socket.
    Unix,
}

impl ClientKey {
    /// The key of a TCP peer. A dual-stack listener sees IPv4 clients as
    /// `::ffff:a.b.c.d`; they are the same clients as over IPv4 (Go's address
    /// shows them so too).
    pub fn of(peer: std::net::SocketAddr) -> Self {
        ClientKey::Ip(peer.ip().to_canonical())
    }
}

/// Counts open connections per client and admits new ones up to a limit.
#[derive(Debug, Default)]
pub struct ConnLimiter {
    /// The limit; 0 admits everything.
    max: AtomicU32,
    /// Open admitted connections per client; entries at 0 are removed, so the
    /// map holds only clients with connections open.
    open: Mutex<HashMap<ClientKey, u32>>,
}

/// What [`ConnLimiter::admit`] decided.
#[derive(Debug)]
pub enum Admission {
    /// The connection may be served; keep the permit as long as it is open.
    Admitted(ConnPermit),
    /// The client already holds `limit` open connections.
    LimitReached {
        /// The limit in force.
        limit: u32,
    },
}

/// One admitted connection's slot, freed on drop.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    key: ClientKey,
}

impl ConnLimiter {
    /// A limiter admitting `max` connections per client (0: no limit).
    pub fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            max: AtomicU32::new(max),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Changes the limit for connections admitted from now on.
    pub fn set_max(&self, max: u32) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// The limit in force (0: none).
    pub fn max(&self) -> u32 {
        self.max.load(Ordering::Relaxed)
    }

    /// Admits a new connection of `key`, or refuses it if `key` is at the limit.
    pub fn admit(self: &Arc<Self>, key: ClientKey) -> Admission {
        // Counted even without a limit, so that one set by a reload applies to
        // the connections already open.
        let limit = self.max();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if limit != 0 && *n >= limit {
            return Admission::LimitReached { limit };
        }
        *n += 1;
        Admission::Admitted(ConnPermit {
            limiter: Arc::clone(self),
            key,
        })
    }

    /// How many counted connections `key` holds open.
    pub fn open(&self, key: ClientKey) -> u32 {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&key).copied().unwrap_or(0)
    }

    fn release(&self, key: ClientKey) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&key);
            }
        }
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.limiter.release(self.key);
    }
}

/// The text Consul's limiter answers an HTTP client over the limit with (after
/// `429 Too Many Requests`).
pub const TOO_MANY_CONNS: &str =
    "Your IP is issuing too many concurrent connections, please rate limit your calls\n";

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: ClientKey = ClientKey::Ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
    const B: ClientKey = ClientKey::Ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));

    fn admitted(a: Admission) -> ConnPermit {
        match a {
            Admission::Admitted(p) => p,
            Admission::LimitReached { limit } => panic!("refused at {limit}"),
        }
    }

    #[test]
    fn each_client_gets_its_own_count_and_closing_frees_a_slot() {
        let l = ConnLimiter::new(2);
        let a1 = admitted(l.admit(A));
        let _a2 = admitted(l.admit(A));
        assert!(matches!(l.admit(A), Admission::LimitReached { limit: 2 }));
        // Another address is not affected, nor is the unix socket.
        let _b = admitted(l.admit(B));
        let _u = admitted(l.admit(ClientKey::Unix));
        assert_eq!(l.open(A), 2);
        drop(a1);
        assert_eq!(l.open(A), 1);
        let _a3 = admitted(l.admit(A));
        assert!(matches!(l.admit(A), Admission::LimitReached { .. }));
    }

    #[test]
    fn zero_means_no_limit_and_a_limit_set_later_counts_open_connections() {
        let l = ConnLimiter::new(0);
        let mut permits: Vec<_> = (0..1000).map(|_| admitted(l.admit(A))).collect();
        assert_eq!(l.open(A), 1000);
        l.set_max(999);
        assert!(matches!(l.admit(A), Admission::LimitReached { limit: 999 }));
        permits.truncate(998);
        let _p = admitted(l.admit(A));
        drop(permits);
        assert_eq!(l.open(A), 1);
    }

    #[test]
    fn a_lowered_limit_refuses_new_connections_and_keeps_open_ones() {
        let l = ConnLimiter::new(3);
        let permits: Vec<_> = (0..3).map(|_| admitted(l.admit(A))).collect();
        l.set_max(1);
        assert!(matches!(l.admit(A), Admission::LimitReached { limit: 1 }));
        assert_eq!(l.open(A), 3);
        drop(permits);
        // Back under the new limit: one at a time.
        let _p = admitted(l.admit(A));
        assert!(matches!(l.admit(A), Admission::LimitReached { limit: 1 }));
    }

    #[test]
    fn refused_clients_leave_no_entry_behind() {
        let l = ConnLimiter::new(1);
        let p = admitted(l.admit(A));
        for _ in 0..10 {
            assert!(matches!(l.admit(A), Admission::LimitReached { .. }));
        }
        drop(p);
        assert!(l.open.lock().unwrap().is_empty());
    }
}
