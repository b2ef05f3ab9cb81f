//! Protocol timings and limits for the core, with the LAN, WAN and loopback profiles
//! of hashicorp/memberlist (`DefaultLANConfig`, `DefaultWANConfig`,
//! `DefaultLocalConfig`) and the Serf defaults Consul runs with.
//!
//! Every derived quantity the protocol uses (suspicion timeout, retransmit limit,
//! push/pull scaling) is a pure function here so tests can check the numbers.

use std::time::Duration;

use crate::error::GossipError;

/// Serf's hard cap on a user event (`serf.UserEventSizeLimit`, 9 KiB); the configured
/// limit may not exceed it.
pub const USER_EVENT_SIZE_HARD_LIMIT: usize = 9 * 1024;

/// memberlist's `MetaMaxSize`: encoded tags must fit in this many bytes, so an alive
/// message always fits in one UDP packet.
pub const META_MAX_SIZE: usize = 512;

/// Which family of defaults to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// memberlist `DefaultLANConfig` (Consul's `serf_lan`, port 8301).
    #[default]
    Lan,
    /// memberlist `DefaultWANConfig` (Consul's `serf_wan`, port 8302).
    Wan,
    /// memberlist `DefaultLocalConfig`, for loopback clusters.
    Local,
}

impl Profile {
    /// The core configuration this profile stands for.
    pub fn config(self) -> CoreConfig {
        match self {
            Profile::Lan => CoreConfig::lan(),
            Profile::Wan => CoreConfig::wan(),
            Profile::Local => CoreConfig::local(),
        }
    }
}

/// Timings and limits of the SWIM/Lifeguard protocol and the Serf layer above it.
///
/// All durations are protocol time; the core never reads a clock itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// Interval between probes of one (round-robin) member (LAN 1 s, WAN 5 s).
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking others to probe
    /// (LAN 500 ms, WAN 3 s). Not scaled by awareness, as in memberlist: waiting
    /// longer does not help a lost UDP packet.
    pub probe_timeout: Duration,
    /// Members asked to probe indirectly when a direct probe fails (3).
    pub indirect_checks: usize,
    /// Suspicion multiplier (LAN 4, WAN 6): the minimum suspicion timeout is
    /// `mult × max(1, log10(max(1, n))) × probe_interval` (memberlist's), reached
    /// with `mult − 2` independent confirmations; with three times as many, a
    /// suspicion ends at half that ([`suspicion_floor`], a Tribune extension).
    pub suspicion_mult: u32,
    /// Upper bound of the suspicion timeout as a multiple of the minimum (6); the
    /// timer starts there and falls towards the minimum with independent
    /// confirmations (Lifeguard).
    pub suspicion_max_timeout_mult: u32,
    /// Lifeguard local-health score ceiling (8): probe rounds stretch up to
    /// `probe_interval × 8` while this node looks unhealthy to itself.
    pub awareness_max_multiplier: u32,
    /// Interval between gossip rounds (LAN 200 ms, WAN 500 ms).
    pub gossip_interval: Duration,
    /// Members gossiped to per round (LAN 3, WAN 4).
    pub gossip_nodes: usize,
    /// How long a dead member still receives gossip, so it can learn it was declared
    /// dead and refute (LAN 30 s, WAN 60 s).
    pub gossip_to_the_dead: Duration,
    /// Retransmit multiplier (4): each broadcast is sent
    /// `mult × ceil(log10(n + 1))` times.
    pub retransmit_mult: u32,
    /// Interval between full state exchanges with one random member (LAN 30 s,
    /// WAN 60 s), scaled up for clusters above 32 members. Zero disables them.
    pub push_pull_interval: Duration,
    /// Connect and I/O timeout of one push/pull stream (LAN 10 s, WAN 30 s).
    pub tcp_timeout: Duration,
    /// Largest UDP datagram sent, before encryption overhead (1400 bytes).
    pub udp_buffer_size: usize,
    /// A dead member may come back at a different address after this long
    /// (Consul sets memberlist's `DeadNodeReclaimTime` to 30 s). A left member may
    /// do so at once.
    pub dead_node_reclaim_time: Duration,
    /// Interval between attempts to reach one failed member again (Serf 30 s): this
    /// is what heals a partition once both sides have declared the other dead.
    pub reconnect_interval: Duration,
    /// Failed members are reaped after this long (Consul `reconnect_timeout`, 72 h).
    pub reconnect_timeout: Duration,
    /// Members that left are reaped after this long (Serf `TombstoneTimeout`, 24 h).
    pub tombstone_timeout: Duration,
    /// How often the reaper looks (Serf `ReapInterval`, 15 s).
    pub reap_interval: Duration,
    /// Recent user events remembered for deduplication, by Lamport time
    /// (Serf `EventBuffer`, 512).
    pub event_buffer: usize,
    /// Largest `name + payload` of a user event (Serf `UserEventSizeLimit`, 512).
    pub user_event_size_limit: usize,
    /// User events fired with `coalesce` are held this long and only the newest per
    /// name is delivered (Serf `UserCoalescePeriod`; zero, the default, disables).
    pub user_coalesce_period: Duration,
    /// Coalesced user events are flushed early after this long without a new one
    /// (Serf `UserQuiescentPeriod`).
    pub user_quiescent_period: Duration,
    /// How long a graceful leave waits for its broadcast to go out (Serf
    /// `BroadcastTimeout`, 5 s).
    pub broadcast_timeout: Duration,
    /// Extra wait after the leave broadcast, so it spreads before the sockets close
    /// (Serf `LeavePropagateDelay`, 1 s).
    pub leave_propagate_delay: Duration,
    /// Broadcasts beyond this many are dropped, oldest first (Serf `MaxQueueDepth`).
    pub max_queue_depth: usize,
    /// Keep a Vivaldi network coordinate, learnt from direct probes, and send it
    /// in acks (on; Consul's `disable_coordinates` turns it off).
    pub coordinates: bool,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self::lan()
    }
}

impl CoreConfig {
    /// memberlist `DefaultLANConfig` plus Serf's defaults as Consul sets them.
    pub fn lan() -> Self {
        Self {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            awareness_max_multiplier: 8,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            gossip_to_the_dead: Duration::from_secs(30),
            retransmit_mult: 4,
            push_pull_interval: Duration::from_secs(30),
            tcp_timeout: Duration::from_secs(10),
            udp_buffer_size: 1400,
            dead_node_reclaim_time: Duration::from_secs(30),
            reconnect_interval: Duration::from_secs(30),
            reconnect_timeout: Duration::from_secs(72 * 3600),
            tombstone_timeout: Duration::from_secs(24 * 3600),
            reap_interval: Duration::from_secs(15),
            event_buffer: 512,
            user_event_size_limit: 512,
            user_coalesce_period: Duration::ZERO,
            user_quiescent_period: Duration::ZERO,
            broadcast_timeout: Duration::from_secs(5),
            leave_propagate_delay: Duration::from_secs(1),
            max_queue_depth: 4096,
            coordinates: true,
        }
    }

    /// memberlist `DefaultWANConfig`: slower probes, longer suspicion, one more
    /// gossip target.
    pub fn wan() -> Self {
        Self {
            tcp_timeout: Duration::from_secs(30),
            suspicion_mult: 6,
            push_pull_interval: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(3),
            probe_interval: Duration::from_secs(5),
            gossip_nodes: 4,
            gossip_interval: Duration::from_millis(500),
            gossip_to_the_dead: Duration::from_secs(60),
            ..Self::lan()
        }
    }

    /// memberlist `DefaultLocalConfig`, for clusters on one host.
    pub fn local() -> Self {
        Self {
            tcp_timeout: Duration::from_secs(1),
            indirect_checks: 1,
            retransmit_mult: 2,
            suspicion_mult: 3,
            push_pull_interval: Duration::from_secs(15),
            probe_timeout: Duration::from_millis(200),
            probe_interval: Duration::from_secs(1),
            gossip_interval: Duration::from_millis(100),
            ..Self::lan()
        }
    }

    /// Reject settings the protocol cannot run with.
    pub fn validate(&self) -> Result<(), GossipError> {
        let bad = |field: &'static str, reason: &'static str| {
            Err(GossipError::InvalidConfig { field, reason })
        };
        if self.probe_interval.is_zero() {
            return bad("probe_interval", "must be positive");
        }
        if self.probe_timeout.is_zero() || self.probe_timeout > self.probe_interval {
            return bad(
                "probe_timeout",
                "must be positive and at most probe_interval",
            );
        }
        if self.gossip_interval.is_zero() {
            return bad("gossip_interval", "must be positive");
        }
        if self.suspicion_mult == 0 || self.suspicion_max_timeout_mult == 0 {
            return bad("suspicion_mult", "must be positive");
        }
        if self.awareness_max_multiplier == 0 {
            return bad("awareness_max_multiplier", "must be positive");
        }
        if self.retransmit_mult == 0 {
            return bad("retransmit_mult", "must be positive");
        }
        if self.udp_buffer_size < 512 || self.udp_buffer_size > 65_000 {
            return bad("udp_buffer_size", "must be between 512 and 65000");
        }
        if self.event_buffer == 0 {
            return bad("event_buffer", "must be positive");
        }
        if self.user_event_size_limit > USER_EVENT_SIZE_HARD_LIMIT {
            return bad("user_event_size_limit", "may not exceed 9216 bytes");
        }
        if self.reap_interval.is_zero() || self.reconnect_interval.is_zero() {
            return bad(
                "reap_interval",
                "reap and reconnect intervals must be positive",
            );
        }
        Ok(())
    }
}

/// memberlist's `suspicionTimeout`: `mult × max(1, log10(max(1, n))) × interval`,
/// the minimum time a suspect member has to refute before it is declared dead.
pub fn suspicion_timeout(mult: u32, n: usize, interval: Duration) -> Duration {
    let node_scale = (n.max(1) as f64).log10().max(1.0);
    // Millisecond precision, as memberlist keeps it.
    let ms = f64::from(mult) * node_scale * interval.as_secs_f64() * 1000.0;
    Duration::from_millis(ms.floor() as u64)
}

/// Lifeguard's `k`: independent confirmations that bring a suspicion timer down
/// from the maximum to [`suspicion_timeout`] (`mult − 2`, as memberlist), or none
/// when the cluster is too small to supply them (`n` counts the local node and the
/// suspect).
pub fn suspicion_confirmations(mult: u32, n: usize) -> u32 {
    let k = mult.saturating_sub(2);
    if (n as u32).saturating_sub(2) < k {
        0
    } else {
        k
    }
}

/// Tribune's extension of Lifeguard: confirmations past `k` keep shortening the
/// timer, reaching [`suspicion_floor`] at `3k` — or at however many members other
/// than the suspect and the accuser exist, if fewer (`n` as in
/// [`suspicion_confirmations`]). Equal to `k` (no extension) when `k` is 0 or no
/// member is left to confirm beyond `k`.
pub fn suspicion_floor_confirmations(k: u32, n: usize) -> u32 {
    (3 * k).min((n as u32).saturating_sub(2)).max(k)
}

/// The shortest a suspicion can run once [`suspicion_floor_confirmations`]
/// independent members have confirmed it: half the minimum
/// ([`suspicion_timeout`]), but never under two probe intervals — time for the
/// suspect, if it is running, to be pinged with the accusation and for its
/// refutation to spread — and never above the minimum.
pub fn suspicion_floor(min: Duration, probe_interval: Duration) -> Duration {
    (min / 2).max(probe_interval * 2).min(min)
}

/// How many members, in expectation, probe a member out of turn when they first
/// hear it is suspected: enough to supply the confirmations that take its timer
/// to the floor (twice [`suspicion_floor_confirmations`], at least the
/// `indirect_checks`), and no more, so a suspect that is merely slow (or paused,
/// its receive buffer filling) is not sent a burst of O(n) probes. Each member
/// decides alone, with probability `reprobers / (n − 2)`.
pub fn suspicion_reprobers(k_floor: u32, indirect_checks: usize) -> u32 {
    (2 * k_floor).max(indirect_checks as u32).max(1)
}

/// memberlist's `retransmitLimit`: `mult × ceil(log10(n + 1))`.
pub fn retransmit_limit(mult: u32, n: usize) -> u32 {
    let scale = ((n as f64) + 1.0).log10().ceil() as u32;
    mult * scale
}

/// memberlist's `pushPullScale`: above 32 members the push/pull interval grows by
/// one step per doubling, so the cluster's total TCP load stays flat.
pub fn push_pull_scale(interval: Duration, n: usize) -> Duration {
    const THRESHOLD: usize = 32;
    if n <= THRESHOLD {
        return interval;
    }
    let mult = ((n as f64).log2() - (THRESHOLD as f64).log2()).ceil() + 1.0;
    interval.mul_f64(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_and_wan_defaults_match_memberlist() {
        let lan = CoreConfig::lan();
        assert_eq!(lan.probe_interval, Duration::from_secs(1));
        assert_eq!(lan.probe_timeout, Duration::from_millis(500));
        assert_eq!(lan.gossip_interval, Duration::from_millis(200));
        assert_eq!((lan.gossip_nodes, lan.indirect_checks), (3, 3));
        assert_eq!((lan.suspicion_mult, lan.retransmit_mult), (4, 4));
        assert_eq!(lan.awareness_max_multiplier, 8);
        assert_eq!(lan.push_pull_interval, Duration::from_secs(30));
        let wan = CoreConfig::wan();
        assert_eq!(wan.probe_interval, Duration::from_secs(5));
        assert_eq!(wan.probe_timeout, Duration::from_secs(3));
        assert_eq!(wan.gossip_interval, Duration::from_millis(500));
        assert_eq!((wan.gossip_nodes, wan.suspicion_mult), (4, 6));
        assert_eq!(wan.push_pull_interval, Duration::from_secs(60));
        assert_eq!(wan.reconnect_timeout, Duration::from_secs(72 * 3600));
        lan.validate().unwrap();
        wan.validate().unwrap();
        CoreConfig::local().validate().unwrap();
    }

    #[test]
    fn derived_quantities() {
        let s = Duration::from_secs(1);
        // Small clusters use the floor of one log10 unit.
        assert_eq!(suspicion_timeout(4, 1, s), Duration::from_secs(4));
        assert_eq!(suspicion_timeout(4, 10, s), Duration::from_secs(4));
        assert_eq!(suspicion_timeout(4, 100, s), Duration::from_secs(8));
        assert_eq!(suspicion_timeout(4, 1000, s), Duration::from_secs(12));
        assert_eq!(retransmit_limit(4, 0), 0);
        assert_eq!(retransmit_limit(4, 1), 4);
        assert_eq!(retransmit_limit(4, 9), 4);
        assert_eq!(retransmit_limit(4, 10), 8);
        assert_eq!(retransmit_limit(4, 99), 8);
        assert_eq!(retransmit_limit(4, 100), 12);
        let thirty = Duration::from_secs(30);
        assert_eq!(push_pull_scale(thirty, 32), thirty);
        assert_eq!(push_pull_scale(thirty, 33), Duration::from_secs(60));
        assert_eq!(push_pull_scale(thirty, 64), Duration::from_secs(60));
        assert_eq!(push_pull_scale(thirty, 65), Duration::from_secs(90));
    }

    #[test]
    fn suspicion_beyond_lifeguard() {
        let s = Duration::from_secs(1);
        // memberlist's k, and none in clusters too small to confirm.
        assert_eq!(suspicion_confirmations(4, 64), 2);
        assert_eq!(suspicion_confirmations(4, 4), 2);
        assert_eq!(suspicion_confirmations(4, 3), 0);
        assert_eq!(suspicion_confirmations(2, 64), 0);
        // The floor takes 3k confirmations, fewer in small clusters, never < k.
        assert_eq!(suspicion_floor_confirmations(2, 64), 6);
        assert_eq!(suspicion_floor_confirmations(2, 6), 4);
        assert_eq!(suspicion_floor_confirmations(2, 4), 2);
        assert_eq!(suspicion_floor_confirmations(0, 64), 0);
        // Half the minimum, at least two probe intervals, at most the minimum.
        let min64 = suspicion_timeout(4, 64, s);
        assert_eq!(min64, Duration::from_millis(7_224));
        assert_eq!(suspicion_floor(min64, s), Duration::from_millis(3_612));
        assert_eq!(suspicion_floor(suspicion_timeout(4, 8, s), s), 2 * s);
        assert_eq!(
            suspicion_floor(Duration::from_millis(1_500), s),
            Duration::from_millis(1_500)
        );
        let wan = CoreConfig::wan();
        let wan_min = suspicion_timeout(wan.suspicion_mult, 64, wan.probe_interval);
        assert_eq!(suspicion_floor(wan_min, wan.probe_interval), wan_min / 2);
        assert_eq!(suspicion_reprobers(6, 3), 12);
        assert_eq!(suspicion_reprobers(0, 3), 3);
        assert_eq!(suspicion_reprobers(0, 0), 1);
    }
}
