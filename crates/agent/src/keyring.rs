//! Cluster-wide gossip keyring operations (`/v1/operator/keyring`, `tribune keyring`).
//!
//! Consul sends a keyring operation to every member as a Serf query and tallies the
//! replies. Our gossip has no queries, so the two halves travel differently:
//!
//! - **The change goes out as an internal user event** named [`KEYRING_EVENT`]
//!   (`tribune:keyring`), payload `{"Op":"Install"|"Use"|"Remove","Key":"<base64>"}`.
//!   Consul user events are always named `consul:event:<name>`, so `/v1/event/fire`
//!   can never forge this one and `/v1/event/list` never shows it. Every member
//!   applies it to the keyring of the pool it arrived in (LAN, or a server's WAN),
//!   which persists it in `serf/local.keyring` / `serf/remote.keyring`.
//! - **The answers come back as a keyring digest in the member's tags**: tag
//!   [`DIGEST_TAG`] (`kr`) holds the fingerprints of the member's keys, primary first
//!   (`fp1,fp2,…`; a fingerprint is the first 12 hex digits of the key's SHA-256, so
//!   the tag, which `/v1/agent/members` shows, never reveals a key). A member
//!   republishes it whenever its keyring changes, and tags reach everyone by gossip.
//!
//! A listing is then a read of what the pool's alive members report: `NumNodes` is the
//! alive members, a key's count is how many of their digests hold it, and a member
//! without a digest has not answered (Consul's "k/N nodes reported success"). A
//! fingerprint is turned back into its key from the keys this agent has held or
//! relayed; one it cannot name is reported in `Messages`.
//!
//! A change is checked first against every alive member's digest: `use` of a key some
//! member lacks, or `remove` of a key some member encrypts with, is refused with the
//! message that member's keyring would give, and nothing changes — where a Serf query
//! would have applied it on the members that accept it and split the cluster. Then the
//! answering agent applies it locally, fires the event, and waits until every alive
//! member's digest shows the change, at most twice Serf's query timeout (the change
//! and the digest each travel by gossip, where a Serf reply goes straight back).
//! Members that did not confirm by then make the answer "k/N nodes reported success".
//!
//! `relay-factor` is accepted and has no effect: there are no direct replies to relay.
//! A client agent acts on its LAN pool only (Consul's client forwards to a server,
//! which also covers the WAN pool).

use crate::agent::Agent;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tribune_gossip::{Gossip, GossipError, GossipEvent};
use tribune_http_api::{BackendError, KeyringOp, KeyringPool, KeyringRequest};
use tribune_types::model::Member;

/// Gossip user event name of a keyring change.
pub(crate) const KEYRING_EVENT: &str = "tribune:keyring";
/// Member tag holding the keyring digest.
pub(crate) const DIGEST_TAG: &str = "kr";
/// Hex digits of SHA-256 kept in a fingerprint: 48 bits, so the handful of keys a
/// cluster holds never collide, and a ten-key digest still fits the 512-byte tag limit.
const FINGERPRINT_HEX: usize = 12;
/// Serf's `QueryTimeoutMult`.
const QUERY_TIMEOUT_MULT: u32 = 16;
/// The least time given to confirmations, so that a pool with very short gossip
/// timings on a loaded machine is not reported as failing while it converges.
const MIN_CONFIRM: Duration = Duration::from_secs(5);

// The members' messages, as Serf's internal query handlers and memberlist word them.
const NO_KEYRING_LIST: &str = "Keyring is empty (encryption not enabled)";
const NO_KEYRING_MODIFY: &str = "No keyring to modify (encryption not enabled)";
const NOT_INSTALLED: &str = "Requested key is not in the keyring";
const REMOVE_PRIMARY: &str = "Removing the primary key is not allowed";
const BAD_SIZE: &str = "key size must be 16, 24 or 32 bytes";

/// The agent's keyring bookkeeping.
#[derive(Default)]
pub(crate) struct KeyringState {
    /// Fingerprint → base64 of every key this agent has held or relayed, to name the
    /// keys in other members' digests.
    names: parking_lot::Mutex<HashMap<String, String>>,
    /// The digest last published per pool (`[LAN, WAN]`). Held across `set_tags`, so
    /// publications are ordered; this agent is the only writer of its tags after start.
    published: tokio::sync::Mutex<[Option<String>; 2]>,
}

/// A keyring change, as the event carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Op", content = "Key")]
enum Change {
    Install(String),
    Use(String),
    Remove(String),
}

impl Change {
    fn from_op(op: &KeyringOp) -> Option<Change> {
        match op {
            KeyringOp::List => None,
            KeyringOp::Install(k) => Some(Change::Install(k.clone())),
            KeyringOp::Use(k) => Some(Change::Use(k.clone())),
            KeyringOp::Remove(k) => Some(Change::Remove(k.clone())),
        }
    }

    fn key(&self) -> &str {
        match self {
            Change::Install(k) | Change::Use(k) | Change::Remove(k) => k,
        }
    }

    fn with_key(&self, key: String) -> Change {
        match self {
            Change::Install(_) => Change::Install(key),
            Change::Use(_) => Change::Use(key),
            Change::Remove(_) => Change::Remove(key),
        }
    }

    /// The member's answer judged from its digest: the message its keyring would
    /// refuse the change with, if any. Removing an absent key is fine (memberlist).
    fn refusal(&self, fp: &str, d: &Digest) -> Option<&'static str> {
        match self {
            Change::Install(_) => None,
            Change::Use(_) => (!d.holds(fp)).then_some(NOT_INSTALLED),
            Change::Remove(_) => (d.primary() == fp).then_some(REMOVE_PRIMARY),
        }
    }

    /// Whether the digest shows the change applied.
    fn shown_by(&self, fp: &str, d: &Digest) -> bool {
        match self {
            Change::Install(_) => d.holds(fp),
            Change::Use(_) => d.primary() == fp,
            Change::Remove(_) => !d.holds(fp),
        }
    }
}

/// A fingerprint of raw key bytes.
fn fingerprint(raw: &[u8]) -> String {
    let mut hex = hex::encode(Sha256::digest(raw));
    hex.truncate(FINGERPRINT_HEX);
    hex
}

/// A key's bytes, or Go's `base64` error text (`illegal base64 data at input byte N`).
fn decode_key(b64: &str) -> Result<Vec<u8>, String> {
    use base64::DecodeError as E;
    STANDARD.decode(b64).map_err(|e| {
        let at = match e {
            E::InvalidByte(at, _) | E::InvalidLastSymbol(at, _) | E::InvalidLength(at) => at,
            E::InvalidPadding => b64.len(),
        };
        format!("illegal base64 data at input byte {at}")
    })
}

/// A member's reported keyring: fingerprints, primary first.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Digest(Vec<String>);

impl Digest {
    /// The digest of base64 keys, primary first (as `Gossip::list_keys` gives them).
    fn of_keys(keys: &[String]) -> Digest {
        Digest(
            keys.iter()
                .map(|k| fingerprint(&decode_key(k).unwrap_or_else(|_| k.as_bytes().to_vec())))
                .collect(),
        )
    }

    fn parse(tag: &str) -> Option<Digest> {
        let fps: Vec<String> = tag
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        (!fps.is_empty()).then_some(Digest(fps))
    }

    fn of_member(m: &Member) -> Option<Digest> {
        m.tags.get(DIGEST_TAG).and_then(|t| Digest::parse(t))
    }

    fn encode(&self) -> String {
        self.0.join(",")
    }

    fn primary(&self) -> &str {
        self.0.first().map_or("", String::as_str)
    }

    fn holds(&self, fp: &str) -> bool {
        self.0.iter().any(|f| f == fp)
    }
}

/// Serf's `DefaultQueryTimeout` (gossip interval × 16 × ⌈log10(N+1)⌉), doubled
/// because the change and its confirmation both travel by gossip.
fn confirm_timeout(gossip_interval: Duration, members: usize) -> Duration {
    let scale = ((members + 1) as f64).log10().ceil().max(1.0) as u32;
    (gossip_interval * QUERY_TIMEOUT_MULT * scale * 2).max(MIN_CONFIRM)
}

fn alive(members: Vec<Member>) -> Vec<Member> {
    members.into_iter().filter(|m| m.status == 1).collect()
}

/// Every alive member reported as refusing with `msg`: this node has no
/// keyring to list or change (in a staged rollout, where members with and
/// without the key share a pool, keyring commands belong on a member with it).
fn fail_all(mut pool: KeyringPool, alive: &[Member], msg: &str) -> KeyringPool {
    pool.messages = alive
        .iter()
        .map(|m| (m.name.clone(), msg.to_owned()))
        .collect();
    pool.error = format!("{n}/{n} nodes reported failure", n = alive.len());
    pool
}

/// Applies a change to this node's keyring of one pool, with the members' texts.
fn apply(g: &Gossip, change: &Change) -> Result<(), String> {
    let result = match change {
        Change::Install(k) => g.install_key(k),
        Change::Use(k) => g.use_key(k),
        Change::Remove(k) => g.remove_key(k),
    };
    match result {
        Ok(()) => Ok(()),
        Err(GossipError::KeyNotInstalled) if matches!(change, Change::Remove(_)) => Ok(()),
        Err(GossipError::KeyNotInstalled) => Err(NOT_INSTALLED.into()),
        Err(GossipError::RemovePrimaryKey) => Err(REMOVE_PRIMARY.into()),
        Err(GossipError::EncryptionDisabled) => Err(NO_KEYRING_MODIFY.into()),
        Err(GossipError::InvalidKey { .. }) => Err(BAD_SIZE.into()),
        Err(e) => Err(e.to_string()),
    }
}

impl Agent {
    /// This agent's member name in a pool (`<node>.<dc>` on the WAN).
    fn pool_member_name(&self, wan: bool) -> String {
        if wan {
            format!("{}.{}", self.cfg.node_name, self.cfg.datacenter)
        } else {
            self.cfg.node_name.clone()
        }
    }

    /// Remembers the name of a key so digests holding it can be listed.
    fn learn(&self, b64: &str) {
        if let Ok(raw) = decode_key(b64) {
            self.keyring
                .names
                .lock()
                .insert(fingerprint(&raw), STANDARD.encode(raw));
        }
    }

    /// `/v1/operator/keyring`: one answer per pool, the WAN pool first on servers.
    pub(crate) async fn keyring_operation(
        &self,
        req: KeyringRequest,
    ) -> Result<Vec<KeyringPool>, BackendError> {
        let Some(lan) = self.pool(false) else {
            return Err(BackendError::Unavailable(
                "this agent is not in a gossip pool".into(),
            ));
        };
        let mut out = Vec::new();
        if !req.local_only {
            if let Some(wan) = self.pool(true) {
                out.push(self.keyring_in_pool(&wan, true, &req.op).await);
            }
        }
        out.push(self.keyring_in_pool(&lan, false, &req.op).await);
        Ok(out)
    }

    async fn keyring_in_pool(&self, g: &Gossip, wan: bool, op: &KeyringOp) -> KeyringPool {
        let pool = KeyringPool {
            wan,
            datacenter: self.cfg.datacenter.clone(),
            ..Default::default()
        };
        match Change::from_op(op) {
            None => self.list_pool(g, wan, pool),
            Some(change) => self.change_pool(g, wan, &change, pool).await,
        }
    }

    /// The listing of one pool from its alive members' digests.
    fn list_pool(&self, g: &Gossip, wan: bool, mut pool: KeyringPool) -> KeyringPool {
        let alive = alive(g.members());
        pool.num_nodes = alive.len();
        let Ok(local) = g.list_keys() else {
            return fail_all(pool, &alive, NO_KEYRING_LIST);
        };
        for k in &local {
            self.learn(k);
        }
        let names = self.keyring.names.lock().clone();
        let me = self.pool_member_name(wan);
        let mut answered = 0;
        for m in &alive {
            // Our own keyring is read directly: our tag may still be on its way.
            let digest = if m.name == me {
                Some(Digest::of_keys(&local))
            } else {
                Digest::of_member(m)
            };
            let Some(digest) = digest else { continue };
            answered += 1;
            for (i, fp) in digest.0.iter().enumerate() {
                let Some(key) = names.get(fp) else {
                    pool.messages.insert(
                        m.name.clone(),
                        format!("holds a key unknown to this agent (fingerprint {fp})"),
                    );
                    continue;
                };
                *pool.keys.entry(key.clone()).or_default() += 1;
                if i == 0 {
                    *pool.primary_keys.entry(key.clone()).or_default() += 1;
                }
            }
        }
        if answered < alive.len() {
            pool.error = format!("{answered}/{} nodes reported success", alive.len());
        }
        pool
    }

    /// Checks, applies, broadcasts and confirms one change in one pool.
    async fn change_pool(
        &self,
        g: &Gossip,
        wan: bool,
        change: &Change,
        mut pool: KeyringPool,
    ) -> KeyringPool {
        let alive = alive(g.members());
        pool.num_nodes = alive.len();
        // A malformed key fails the request before any member sees it (Serf's
        // `handleKeyRequest` decodes it first).
        let raw = match decode_key(change.key()) {
            Ok(raw) => raw,
            Err(e) => {
                pool.error = e;
                return pool;
            }
        };
        let Ok(local) = g.list_keys() else {
            return fail_all(pool, &alive, NO_KEYRING_MODIFY);
        };
        if !matches!(raw.len(), 16 | 24 | 32) {
            return fail_all(pool, &alive, BAD_SIZE);
        }
        let change = change.with_key(STANDARD.encode(&raw));
        let fp = fingerprint(&raw);
        let me = self.pool_member_name(wan);
        let local = Digest::of_keys(&local);
        for m in &alive {
            let digest = if m.name == me {
                Some(local.clone())
            } else {
                Digest::of_member(m)
            };
            if let Some(why) = digest.and_then(|d| change.refusal(&fp, &d)) {
                pool.messages.insert(m.name.clone(), why.to_owned());
            }
        }
        if !pool.messages.is_empty() {
            pool.error = format!(
                "{}/{} nodes reported failure",
                pool.messages.len(),
                alive.len()
            );
            return pool;
        }
        self.learn(change.key());
        // Subscribed before anything is sent, so no confirmation can be missed.
        let mut events = g.subscribe();
        if let Err(why) = apply(g, &change) {
            pool.messages.insert(me, why);
            pool.error = format!("1/{} nodes reported failure", alive.len());
            return pool;
        }
        self.publish_digest(wan).await;
        let payload = match serde_json::to_vec(&change) {
            Ok(p) => p,
            Err(e) => {
                pool.error = e.to_string();
                return pool;
            }
        };
        if let Err(e) = g.fire_event(KEYRING_EVENT, &payload).await {
            pool.error = e.to_string();
            return pool;
        }
        let deadline =
            tokio::time::Instant::now() + confirm_timeout(g.gossip_interval(), alive.len());
        loop {
            let (total, pending) = self.unconfirmed(g, &me, &change, &fp);
            pool.num_nodes = total;
            if pending == 0 {
                return pool;
            }
            // Any gossip event may be the digest we wait for (or a member leaving).
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) => {
                    pool.error = "gossip is shut down".into();
                    return pool;
                }
                Err(_) => {
                    pool.error = format!("{}/{total} nodes reported success", total - pending);
                    return pool;
                }
            }
        }
    }

    /// Alive members, and how many of them do not show `change` yet.
    fn unconfirmed(&self, g: &Gossip, me: &str, change: &Change, fp: &str) -> (usize, usize) {
        let alive = alive(g.members());
        let pending = alive
            .iter()
            .filter(|m| {
                let digest = if m.name == me {
                    g.list_keys().ok().map(|k| Digest::of_keys(&k))
                } else {
                    Digest::of_member(m)
                };
                !digest.is_some_and(|d| change.shown_by(fp, &d))
            })
            .count();
        (alive.len(), pending)
    }

    /// Puts this node's keyring digest of a pool into its tags, if it changed. Does
    /// nothing without encryption.
    pub(crate) async fn publish_digest(&self, wan: bool) {
        let Some(g) = self.pool(wan) else { return };
        let mut published = self.keyring.published.lock().await;
        let Ok(keys) = g.list_keys() else { return };
        for k in &keys {
            self.learn(k);
        }
        let digest = Digest::of_keys(&keys).encode();
        let slot = &mut published[usize::from(wan)];
        if slot.as_deref() == Some(digest.as_str()) {
            return;
        }
        let me = self.pool_member_name(wan);
        let Some(mut tags) = g
            .members()
            .into_iter()
            .find(|m| m.name == me)
            .map(|m| m.tags)
        else {
            return;
        };
        tags.insert(DIGEST_TAG.to_owned(), digest.clone());
        match g.set_tags(tags).await {
            Ok(()) => *slot = Some(digest),
            Err(e) => tracing::warn!(error = %e, wan, "publishing the keyring digest failed"),
        }
    }

    /// Applies a change received from the pool, then republishes the digest.
    async fn apply_received(&self, wan: bool, change: &Change) {
        let Some(g) = self.pool(wan) else { return };
        self.learn(change.key());
        if let Err(why) = apply(&g, change) {
            // The digest still tells the requester the truth: it stays unconfirmed.
            tracing::warn!(wan, error = %why, "keyring change from the cluster not applied");
        }
        self.publish_digest(wan).await;
    }
}

/// Applies the keyring changes that arrive in one pool, for as long as the agent lives.
pub(crate) async fn follow(
    agent: Weak<Agent>,
    wan: bool,
    mut events: broadcast::Receiver<GossipEvent>,
) {
    loop {
        let user = match events.recv().await {
            Ok(GossipEvent::User(user)) if user.name == KEYRING_EVENT => user,
            Ok(_) => continue,
            Err(RecvError::Lagged(n)) => {
                // A change may have been missed; the digest still shows what we hold,
                // so the requester sees this node unconfirmed rather than a wrong count.
                tracing::warn!(
                    missed = n,
                    wan,
                    "gossip events dropped: keyring changes may be missed"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let Some(a) = agent.upgrade() else { return };
        match serde_json::from_slice::<Change>(&user.payload) {
            Ok(change) => a.apply_received(wan, &change).await,
            Err(e) => tracing::warn!(error = %e, "undecodable keyring change dropped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn key(fill: u8) -> String {
        STANDARD.encode([fill; 32])
    }

    fn member(name: &str, status: u8, keys: Option<&[String]>) -> Member {
        let mut tags = BTreeMap::new();
        if let Some(keys) = keys {
            tags.insert(DIGEST_TAG.to_owned(), Digest::of_keys(keys).encode());
        }
        Member {
            name: name.into(),
            status,
            tags,
            ..Default::default()
        }
    }

    #[test]
    fn digests_round_trip_and_hide_keys() {
        let (k1, k2) = (key(1), key(2));
        let d = Digest::of_keys(&[k1.clone(), k2.clone()]);
        let tag = d.encode();
        assert_eq!(tag.len(), 2 * FINGERPRINT_HEX + 1);
        assert!(!tag.contains(&k1[..8]));
        assert_eq!(Digest::parse(&tag), Some(d.clone()));
        assert_eq!(Digest::parse(""), None);
        let fp1 = fingerprint(&[1; 32]);
        assert_eq!(d.primary(), fp1);
        assert!(d.holds(&fingerprint(&[2; 32])));
        assert_eq!(
            Digest::of_member(&member("a", 1, Some(&[k2]))).map(|d| d.0.len()),
            Some(1)
        );
        assert_eq!(Digest::of_member(&member("a", 1, None)), None);
    }

    #[test]
    fn refusals_and_confirmations_follow_memberlist() {
        let (fp1, fp2) = (fingerprint(&[1; 32]), fingerprint(&[2; 32]));
        let old = Digest(vec![fp1.clone()]);
        let both = Digest(vec![fp1.clone(), fp2.clone()]);
        let new = Digest(vec![fp2.clone(), fp1.clone()]);
        let (install, use_, remove) = (
            Change::Install(key(2)),
            Change::Use(key(2)),
            Change::Remove(key(1)),
        );
        assert_eq!(install.refusal(&fp2, &old), None);
        assert_eq!(use_.refusal(&fp2, &old), Some(NOT_INSTALLED));
        assert_eq!(use_.refusal(&fp2, &both), None);
        assert_eq!(remove.refusal(&fp1, &both), Some(REMOVE_PRIMARY));
        assert_eq!(remove.refusal(&fp1, &new), None);
        assert!(!install.shown_by(&fp2, &old) && install.shown_by(&fp2, &both));
        assert!(!use_.shown_by(&fp2, &both) && use_.shown_by(&fp2, &new));
        assert!(!remove.shown_by(&fp1, &new) && remove.shown_by(&fp1, &Digest(vec![fp2])));
    }

    #[test]
    fn change_payload_and_key_errors() {
        let c = Change::Use(key(3));
        let bytes = serde_json::to_vec(&c).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            format!(r#"{{"Op":"Use","Key":"{}"}}"#, key(3))
        );
        assert_eq!(serde_json::from_slice::<Change>(&bytes).unwrap(), c);
        assert_eq!(
            decode_key("abc!").unwrap_err(),
            "illegal base64 data at input byte 3"
        );
        assert_eq!(decode_key(&key(1)).unwrap().len(), 32);
    }

    #[test]
    fn failures_name_every_alive_member() {
        let members = alive(vec![
            member("a", 1, None),
            member("b", 4, None),
            member("c", 1, None),
        ]);
        let pool = fail_all(KeyringPool::default(), &members, NO_KEYRING_MODIFY);
        assert_eq!(pool.error, "2/2 nodes reported failure");
        assert_eq!(pool.messages.len(), 2);
        assert_eq!(pool.messages["c"], NO_KEYRING_MODIFY);
    }

    #[test]
    fn confirmation_time_scales_like_serf() {
        let ms = Duration::from_millis;
        assert_eq!(confirm_timeout(ms(200), 3), ms(6400));
        assert_eq!(confirm_timeout(ms(200), 10), ms(12800));
        assert_eq!(confirm_timeout(ms(50), 3), MIN_CONFIRM);
    }
}
