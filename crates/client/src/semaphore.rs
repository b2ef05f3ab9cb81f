//! A distributed counting semaphore under a KV prefix, interoperable with the Go
//! client's `api.Semaphore`.
//!
//! The protocol (`api/semaphore.go`):
//!
//! 1. Get a session (a new one is `"Consul API Semaphore"`, TTL 15 s, behavior
//!    `delete`), and lock a contender key `<prefix>/<session>` with it
//!    (`?acquire=`, flags [`SEMAPHORE_FLAG_VALUE`]). The contender key lives exactly
//!    as long as the session, so it proves the session is alive.
//! 2. List the prefix. The coordination key `<prefix>/.lock` holds
//!    `{"Limit":N,"Holders":{"<session>":true,...}}` ([`SemaphoreDoc`]). Holders
//!    whose session holds no key under the prefix any more are dead and pruned.
//! 3. If fewer than `Limit` holders remain, add ourselves and write the document back
//!    with `?cas=<ModifyIndex>` (0 = create); a lost race just reads again. Otherwise
//!    block on the prefix (`?index=`) and read again.
//! 4. Held: a monitor task blocks on the prefix and fires [`LockLost`] once we are no
//!    longer a live holder.
//!
//! All contenders must agree on the limit ([`LockError::LimitConflict`]), and the
//! coordination key carries different flags from a [`Lock`](crate::Lock)'s, so a
//! lock and a semaphore on the same prefix report a conflict instead of mixing.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::coord::{
    self, attempt_wait, monitor, next_index, path_join, Attempt, Held, DEFAULT_MONITOR_RETRY_TIME,
    DEFAULT_SESSION_TTL, DEFAULT_WAIT_TIME,
};
use crate::serde_util::null_default;
use crate::{
    AcquireOutcome, Client, DestroyOutcome, KvDeleteOptions, KvPair, KvPutOptions, LockError,
    LockLost, QueryOptions, SessionBehavior, SessionCreateOptions,
};

/// Flags stored on semaphore keys (the Go client's `SemaphoreFlagValue`).
pub const SEMAPHORE_FLAG_VALUE: u64 = 0xe0f6_9a2b_aa41_4de0;

/// Name of the coordination key inside the prefix (the Go client's
/// `DefaultSemaphoreKey`). `tribune lock` also uses it for plain locks, so the two
/// conflict visibly on one prefix.
pub const SEMAPHORE_LOCK_KEY: &str = ".lock";

/// Name of the session a [`Semaphore`] creates for itself (the Go client's
/// `DefaultSemaphoreSessionName`).
pub const DEFAULT_SEMAPHORE_SESSION_NAME: &str = "Consul API Semaphore";

/// The coordination document at `<prefix>/.lock`, byte-compatible with the Go
/// client's `semaphoreLock` (`{"Limit":2,"Holders":{"<session>":true}}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SemaphoreDoc {
    /// The agreed number of holders. Signed because it is Go's `int`; a document
    /// written by a misbehaving client may say anything.
    #[serde(default)]
    pub limit: i64,
    /// Holder sessions. A set in practice: membership is what counts, whatever the
    /// value (Go writes `true`). Go writes `null` for a nil map, read as empty.
    #[serde(default, deserialize_with = "null_default")]
    pub holders: BTreeMap<String, bool>,
}

impl SemaphoreDoc {
    /// An empty document for `limit` holders.
    pub fn new(limit: u32) -> Self {
        SemaphoreDoc {
            limit: i64::from(limit),
            holders: BTreeMap::new(),
        }
    }

    /// Parses a stored document.
    pub fn decode(bytes: &[u8]) -> Result<Self, LockError> {
        serde_json::from_slice(bytes).map_err(LockError::DecodeLock)
    }

    /// The stored form (compact JSON, keys in Go's order).
    pub fn encode(&self) -> Vec<u8> {
        // Serializing a struct of an integer and a string-keyed map cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Whether `session` is listed as a holder.
    pub fn is_holder(&self, session: &str) -> bool {
        self.holders.contains_key(session)
    }

    /// Drops holders whose session holds no key in `pairs` (the listing of the
    /// prefix): their contender key is gone, so their session is dead.
    pub fn prune_dead_holders(&mut self, pairs: &[KvPair]) {
        let alive: BTreeSet<&str> = pairs
            .iter()
            .filter_map(|p| p.session.as_deref())
            .filter(|s| !s.is_empty())
            .collect();
        self.holders
            .retain(|holder, _| alive.contains(holder.as_str()));
    }
}

/// How to set up a [`Semaphore`]. [`SemaphoreOptions::new`] gives the Go client's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SemaphoreOptions {
    /// The KV prefix; the token needs write access under it.
    pub prefix: String,
    /// How many holders at once; every contender must use the same value.
    pub limit: u32,
    /// Value of this contender's key.
    pub value: Vec<u8>,
    /// Contend with this existing session instead of creating one; it is then neither
    /// renewed nor destroyed. It should have behavior `delete`, or a dead contender's
    /// key stays behind and keeps counting as alive.
    pub session: Option<String>,
    /// Name of the session the semaphore creates.
    pub session_name: String,
    /// TTL of the session the semaphore creates; renewed every `session_ttl / 2`.
    pub session_ttl: Duration,
    /// Retryable errors the monitor rides out before calling the slot lost (0 = none).
    pub monitor_retries: u32,
    /// Pause between monitor retries.
    pub monitor_retry_time: Duration,
    /// How long each blocking read waits while acquiring; with `try_once`, the total
    /// time to try.
    pub wait_time: Duration,
    /// Give up with [`AcquireOutcome::TimedOut`] after `wait_time`.
    pub try_once: bool,
}

impl Default for SemaphoreOptions {
    /// The Go client's defaults, with an empty (invalid) prefix and a limit of 1.
    fn default() -> Self {
        SemaphoreOptions {
            prefix: String::new(),
            limit: 1,
            value: Vec::new(),
            session: None,
            session_name: DEFAULT_SEMAPHORE_SESSION_NAME.to_owned(),
            session_ttl: DEFAULT_SESSION_TTL,
            monitor_retries: 0,
            monitor_retry_time: DEFAULT_MONITOR_RETRY_TIME,
            wait_time: DEFAULT_WAIT_TIME,
            try_once: false,
        }
    }
}

impl SemaphoreOptions {
    /// Defaults for a semaphore of `limit` holders under `prefix`.
    pub fn new(prefix: impl Into<String>, limit: u32) -> Self {
        SemaphoreOptions {
            prefix: prefix.into(),
            limit,
            ..Default::default()
        }
    }
}

/// The coordination entry among a listing of the prefix.
pub(crate) fn find_lock<'a>(pairs: &'a [KvPair], lock_key: &str) -> Option<&'a KvPair> {
    pairs.iter().find(|p| p.key == lock_key)
}

/// The document of a coordination entry; a fresh one for `limit` if there is none yet.
pub(crate) fn decode_doc(pair: Option<&KvPair>, limit: u32) -> Result<SemaphoreDoc, LockError> {
    match pair.and_then(|p| p.value.as_deref()) {
        None => Ok(SemaphoreDoc::new(limit)),
        Some(bytes) => SemaphoreDoc::decode(bytes),
    }
}

/// Step 3 of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AcquireStep {
    /// All slots are taken by live holders: block on the prefix.
    Full,
    /// Write `value` to the coordination key if its `ModifyIndex` is still `cas`.
    Join { value: Vec<u8>, cas: u64 },
}

/// Decides step 3 from a listing of the prefix.
pub(crate) fn acquire_step(
    pairs: &[KvPair],
    lock_key: &str,
    limit: u32,
    session: &str,
) -> Result<AcquireStep, LockError> {
    let lock = find_lock(pairs, lock_key);
    if lock.is_some_and(|p| p.flags != SEMAPHORE_FLAG_VALUE) {
        return Err(LockError::SemaphoreConflict);
    }
    let mut doc = decode_doc(lock, limit)?;
    if doc.limit != i64::from(limit) {
        return Err(LockError::LimitConflict {
            lock: doc.limit,
            local: limit,
        });
    }
    doc.prune_dead_holders(pairs);
    // Compared as Go does, even when we are already listed: a full semaphore is full.
    if doc.holders.len() as u64 >= u64::from(limit) {
        return Ok(AcquireStep::Full);
    }
    doc.holders.insert(session.to_owned(), true);
    Ok(AcquireStep::Join {
        value: doc.encode(),
        cas: lock.map_or(0, |p| p.modify_index),
    })
}

/// Whether `session` still holds a slot, from a listing of the prefix. An undecodable
/// document counts as lost, as in the Go monitor.
pub(crate) fn slot_held(pairs: &[KvPair], lock_key: &str, limit: u32, session: &str) -> bool {
    match decode_doc(find_lock(pairs, lock_key), limit) {
        Ok(mut doc) => {
            doc.prune_dead_holders(pairs);
            doc.is_holder(session)
        }
        Err(_) => false,
    }
}

/// For `release`: the document without `session` and the index to CAS against, or
/// `None` if `session` is not listed (nothing to write).
pub(crate) fn release_step(
    lock: Option<&KvPair>,
    limit: u32,
    session: &str,
) -> Result<Option<(Vec<u8>, u64)>, LockError> {
    let mut doc = decode_doc(lock, limit)?;
    if doc.holders.remove(session).is_none() {
        return Ok(None);
    }
    Ok(Some((doc.encode(), lock.map_or(0, |p| p.modify_index))))
}

/// What `destroy` should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DestroyStep {
    Absent,
    InUse,
    Delete(u64),
}

/// Decides `destroy` from a listing of the prefix.
pub(crate) fn destroy_step(
    pairs: &[KvPair],
    lock_key: &str,
    limit: u32,
) -> Result<DestroyStep, LockError> {
    let Some(lock) = find_lock(pairs, lock_key) else {
        return Ok(DestroyStep::Absent);
    };
    if lock.flags != SEMAPHORE_FLAG_VALUE {
        return Err(LockError::SemaphoreConflict);
    }
    let mut doc = decode_doc(Some(lock), limit)?;
    doc.prune_dead_holders(pairs);
    if doc.holders.is_empty() {
        Ok(DestroyStep::Delete(lock.modify_index))
    } else {
        Ok(DestroyStep::InUse)
    }
}

/// A distributed semaphore: at most `limit` holders under one prefix (see the module
/// docs for the protocol). Used like [`Lock`](crate::Lock).
///
/// Dropping a holding `Semaphore` stops its monitor and renewal; a session it created
/// is then destroyed in the background, deleting its contender key, so the slot is
/// pruned by the next contender.
#[derive(Debug)]
pub struct Semaphore {
    client: Client,
    opts: SemaphoreOptions,
    lock_key: String,
    held: Option<Held>,
}

impl Semaphore {
    /// A semaphore handle; nothing is sent until [`Semaphore::acquire`].
    pub fn new(client: Client, opts: SemaphoreOptions) -> Result<Self, LockError> {
        if opts.prefix.is_empty() {
            return Err(LockError::MissingPrefix);
        }
        if opts.limit == 0 {
            return Err(LockError::InvalidLimit);
        }
        if opts.session.is_none() && opts.session_ttl.is_zero() {
            return Err(LockError::InvalidSessionTtl);
        }
        let lock_key = path_join(&[&opts.prefix, SEMAPHORE_LOCK_KEY]);
        Ok(Semaphore {
            client,
            opts,
            lock_key,
            held: None,
        })
    }

    /// The options the semaphore was made with.
    pub fn options(&self) -> &SemaphoreOptions {
        &self.opts
    }

    /// The coordination key, `<prefix>/.lock`.
    pub fn lock_key(&self) -> &str {
        &self.lock_key
    }

    /// The contender key of `session`, `<prefix>/<session>`.
    pub fn contender_key(&self, session: &str) -> String {
        path_join(&[&self.opts.prefix, session])
    }

    /// The session holding the slot, while this handle holds one.
    pub fn session(&self) -> Option<&str> {
        self.held.as_ref().map(|h| h.session.as_str())
    }

    /// Whether this handle holds a slot (it may have been lost since; see [`LockLost`]).
    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// Blocks until a slot is held, `stop` completes, or (try-once) the wait time runs
    /// out; see [`Lock::acquire`](crate::Lock::acquire) for the contract. Errors
    /// include [`LockError::SemaphoreConflict`] and [`LockError::LimitConflict`].
    pub async fn acquire(
        &mut self,
        stop: impl Future<Output = ()>,
    ) -> Result<AcquireOutcome, LockError> {
        if self.held.is_some() {
            return Err(LockError::SemaphoreHeld);
        }
        let (session, own) =
            coord::acquire_session(&self.client, self.opts.session.as_deref(), || {
                let create = SessionCreateOptions {
                    name: Some(self.opts.session_name.clone()),
                    ttl: Some(self.opts.session_ttl),
                    // The contender key must vanish with the session.
                    behavior: Some(SessionBehavior::Delete),
                    ..Default::default()
                };
                (create, self.opts.session_ttl)
            })
            .await?;
        let result = Attempt::race(self.acquire_inner(&session), stop).await;
        match result {
            Ok(Attempt::Held) => {
                let (tx, lost) = LockLost::channel();
                let monitor = tokio::spawn(monitor_prefix(
                    self.client.clone(),
                    self.opts.prefix.clone(),
                    self.lock_key.clone(),
                    self.opts.limit,
                    session.clone(),
                    self.opts.monitor_retries,
                    self.opts.monitor_retry_time,
                    tx,
                ));
                self.held = Some(Held {
                    session,
                    own,
                    monitor,
                });
                Ok(AcquireOutcome::Acquired(lost))
            }
            other => {
                match own {
                    // Its `delete` behavior removes the contender key with it.
                    Some(own) => own.close().await,
                    None => {
                        let key = self.contender_key(&session);
                        let _ = self
                            .client
                            .kv()
                            .delete(&key, &KvDeleteOptions::default())
                            .await;
                    }
                }
                other.map(Attempt::not_held)
            }
        }
    }

    /// Steps 1 (contender key) to 3 until held (`true`) or out of time (`false`).
    async fn acquire_inner(&self, session: &str) -> Result<bool, LockError> {
        let kv = self.client.kv();
        let contender = KvPutOptions {
            flags: SEMAPHORE_FLAG_VALUE,
            acquire: Some(session.to_owned()),
            ..Default::default()
        };
        let made = kv
            .put(&self.contender_key(session), &self.opts.value, &contender)
            .await
            .map_err(LockError::ContenderEntry)?;
        if !made {
            return Err(LockError::ContenderRefused);
        }
        let (try_once, wait_time) = (self.opts.try_once, self.opts.wait_time);
        let start = Instant::now();
        let mut attempts = 0;
        let mut index = 0;
        loop {
            let Some(wait) = attempt_wait(try_once, attempts, start.elapsed(), wait_time) else {
                return Ok(false);
            };
            attempts += 1;
            let opts = QueryOptions {
                index,
                wait: Some(wait),
                ..Default::default()
            };
            let (pairs, meta) = kv
                .list(&self.opts.prefix, &opts)
                .await
                .map_err(LockError::ReadPrefix)?;
            match acquire_step(&pairs, &self.lock_key, self.opts.limit, session)? {
                AcquireStep::Full => index = next_index(index, meta.index),
                AcquireStep::Join { value, cas } => {
                    let put = KvPutOptions {
                        flags: SEMAPHORE_FLAG_VALUE,
                        cas: Some(cas),
                        ..Default::default()
                    };
                    if kv
                        .put(&self.lock_key, &value, &put)
                        .await
                        .map_err(LockError::UpdateLock)?
                    {
                        return Ok(true);
                    }
                    // Lost a race with another contender: read again. The index is
                    // left alone; the winner's write has moved past it already.
                }
            }
        }
    }

    /// Gives the slot up: removes this session from the document (CAS, retried on
    /// races), deletes the contender key, and destroys the session if the semaphore
    /// created it. The handle counts as not holding afterwards even on error.
    pub async fn release(&mut self) -> Result<(), LockError> {
        let Some(mut held) = self.held.take() else {
            return Err(LockError::SemaphoreNotHeld);
        };
        held.monitor.abort();
        let result = self.release_inner(&held.session).await;
        if let Some(own) = held.own.take() {
            own.close().await;
        }
        result
    }

    async fn release_inner(&self, session: &str) -> Result<(), LockError> {
        let kv = self.client.kv();
        loop {
            let (lock, _) = kv.get(&self.lock_key, &QueryOptions::default()).await?;
            let Some((value, cas)) = release_step(lock.as_ref(), self.opts.limit, session)? else {
                break;
            };
            let put = KvPutOptions {
                flags: SEMAPHORE_FLAG_VALUE,
                cas: Some(cas),
                ..Default::default()
            };
            if kv
                .put(&self.lock_key, &value, &put)
                .await
                .map_err(LockError::UpdateLock)?
            {
                break;
            }
        }
        kv.delete(&self.contender_key(session), &KvDeleteOptions::default())
            .await?;
        Ok(())
    }

    /// Deletes the coordination key if no live holder is listed; not needed for
    /// correctness. Fails with [`LockError::SemaphoreHeld`] while this handle holds a
    /// slot and [`LockError::SemaphoreConflict`] if the key is not a semaphore's.
    pub async fn destroy(&mut self) -> Result<DestroyOutcome, LockError> {
        if self.held.is_some() {
            return Err(LockError::SemaphoreHeld);
        }
        let kv = self.client.kv();
        let (pairs, _) = kv
            .list(&self.opts.prefix, &QueryOptions::default())
            .await
            .map_err(LockError::ReadPrefix)?;
        match destroy_step(&pairs, &self.lock_key, self.opts.limit)? {
            DestroyStep::Absent => Ok(DestroyOutcome::Absent),
            DestroyStep::InUse => Ok(DestroyOutcome::InUse),
            DestroyStep::Delete(index) => {
                let opts = KvDeleteOptions {
                    cas: Some(index),
                    ..Default::default()
                };
                let deleted = kv
                    .delete(&self.lock_key, &opts)
                    .await
                    .map_err(LockError::RemoveSemaphore)?;
                Ok(if deleted {
                    DestroyOutcome::Destroyed
                } else {
                    DestroyOutcome::InUse
                })
            }
        }
    }
}

/// The monitor task of a held slot.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
async fn monitor_prefix(
    client: Client,
    prefix: String,
    lock_key: String,
    limit: u32,
    session: String,
    retries: u32,
    retry_time: Duration,
    lost: tokio::sync::watch::Sender<bool>,
) {
    let read = |index| {
        let client = client.clone();
        let prefix = prefix.clone();
        async move {
            let opts = QueryOptions {
                index,
                consistent: true,
                ..Default::default()
            };
            client.kv().list(&prefix, &opts).await
        }
    };
    let held = |pairs: &Vec<KvPair>| slot_held(pairs, &lock_key, limit, &session);
    monitor(read, held, retries, retry_time, lost).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK_KEY: &str = "svc/.lock";

    fn contender(session: &str) -> KvPair {
        KvPair {
            key: format!("svc/{session}"),
            flags: SEMAPHORE_FLAG_VALUE,
            session: Some(session.to_owned()),
            ..Default::default()
        }
    }

    fn lock_pair(doc: &str, modify_index: u64) -> KvPair {
        KvPair {
            key: LOCK_KEY.into(),
            flags: SEMAPHORE_FLAG_VALUE,
            value: Some(doc.as_bytes().to_vec()),
            modify_index,
            ..Default::default()
        }
    }

    #[test]
    fn flag_value_and_key_are_the_go_clients() {
        assert_eq!(SEMAPHORE_FLAG_VALUE, 16210313421097356768);
        assert_eq!(path_join(&["svc/", SEMAPHORE_LOCK_KEY]), LOCK_KEY);
    }

    #[test]
    fn document_round_trips_in_go_shape() {
        let mut doc = SemaphoreDoc::new(2);
        doc.holders.insert("b-session".into(), true);
        doc.holders.insert("a-session".into(), true);
        let bytes = doc.encode();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"Limit":2,"Holders":{"a-session":true,"b-session":true}}"#
        );
        assert_eq!(SemaphoreDoc::decode(&bytes).unwrap(), doc);
        // Go writes a nil map as null; missing fields are zero values.
        let doc = SemaphoreDoc::decode(br#"{"Limit":3,"Holders":null}"#).unwrap();
        assert_eq!((doc.limit, doc.holders.len()), (3, 0));
        assert_eq!(
            SemaphoreDoc::decode(b"{}").unwrap(),
            SemaphoreDoc::default()
        );
        assert!(matches!(
            SemaphoreDoc::decode(b""),
            Err(LockError::DecodeLock(_))
        ));
        assert!(matches!(
            SemaphoreDoc::decode(br#"{"Limit":"two"}"#),
            Err(LockError::DecodeLock(_))
        ));
    }

    #[test]
    fn pruning_keeps_only_sessions_holding_a_key() {
        let mut doc =
            SemaphoreDoc::decode(br#"{"Limit":3,"Holders":{"a":true,"b":true,"c":false}}"#)
                .unwrap();
        let mut released = contender("c");
        released.session = Some(String::new());
        doc.prune_dead_holders(&[contender("a"), released, lock_pair("{}", 1)]);
        assert_eq!(doc.holders.keys().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn first_contender_creates_the_document() {
        let pairs = [contender("me")];
        let step = acquire_step(&pairs, LOCK_KEY, 2, "me").unwrap();
        assert_eq!(
            step,
            AcquireStep::Join {
                value: br#"{"Limit":2,"Holders":{"me":true}}"#.to_vec(),
                cas: 0
            }
        );
    }

    #[test]
    fn full_semaphore_waits_until_a_holder_dies() {
        let doc = r#"{"Limit":2,"Holders":{"a":true,"b":true}}"#;
        let mut pairs = vec![
            contender("a"),
            contender("b"),
            contender("me"),
            lock_pair(doc, 9),
        ];
        assert_eq!(
            acquire_step(&pairs, LOCK_KEY, 2, "me").unwrap(),
            AcquireStep::Full
        );
        // b's session died: its contender key went with it.
        pairs.remove(1);
        assert_eq!(
            acquire_step(&pairs, LOCK_KEY, 2, "me").unwrap(),
            AcquireStep::Join {
                value: br#"{"Limit":2,"Holders":{"a":true,"me":true}}"#.to_vec(),
                cas: 9
            }
        );
    }

    #[test]
    fn conflicts_are_errors() {
        let pairs = [lock_pair(r#"{"Limit":3,"Holders":{}}"#, 4)];
        assert!(matches!(
            acquire_step(&pairs, LOCK_KEY, 2, "me"),
            Err(LockError::LimitConflict { lock: 3, local: 2 })
        ));
        let mut lock = lock_pair(r#"{"Limit":2}"#, 4);
        lock.flags = crate::LOCK_FLAG_VALUE;
        assert!(matches!(
            acquire_step(&[lock.clone()], LOCK_KEY, 2, "me"),
            Err(LockError::SemaphoreConflict)
        ));
        assert!(matches!(
            destroy_step(&[lock], LOCK_KEY, 2),
            Err(LockError::SemaphoreConflict)
        ));
        let garbage = lock_pair("not json", 4);
        assert!(matches!(
            acquire_step(&[garbage], LOCK_KEY, 2, "me"),
            Err(LockError::DecodeLock(_))
        ));
    }

    #[test]
    fn monitor_decision() {
        let doc = r#"{"Limit":2,"Holders":{"me":true}}"#;
        let pairs = vec![contender("me"), lock_pair(doc, 3)];
        assert!(slot_held(&pairs, LOCK_KEY, 2, "me"));
        // Contender key gone (session invalidated), document gone, or garbage: lost.
        assert!(!slot_held(&pairs[1..], LOCK_KEY, 2, "me"));
        assert!(!slot_held(&pairs[..1], LOCK_KEY, 2, "me"));
        assert!(!slot_held(
            &[contender("me"), lock_pair("x", 3)],
            LOCK_KEY,
            2,
            "me"
        ));
    }

    #[test]
    fn release_and_destroy_decisions() {
        let doc = r#"{"Limit":2,"Holders":{"a":true,"me":true}}"#;
        let lock = lock_pair(doc, 12);
        assert_eq!(
            release_step(Some(&lock), 2, "me").unwrap(),
            Some((br#"{"Limit":2,"Holders":{"a":true}}"#.to_vec(), 12))
        );
        assert_eq!(release_step(Some(&lock), 2, "zz").unwrap(), None);
        assert_eq!(release_step(None, 2, "me").unwrap(), None);

        assert_eq!(destroy_step(&[], LOCK_KEY, 2).unwrap(), DestroyStep::Absent);
        assert_eq!(
            destroy_step(&[contender("a"), lock.clone()], LOCK_KEY, 2).unwrap(),
            DestroyStep::InUse
        );
        // Listed holders whose sessions are dead do not keep it in use.
        assert_eq!(
            destroy_step(&[lock], LOCK_KEY, 2).unwrap(),
            DestroyStep::Delete(12)
        );
    }

    #[test]
    fn options_are_validated() {
        let client = Client::new(crate::Config::default()).unwrap();
        assert!(matches!(
            Semaphore::new(client.clone(), SemaphoreOptions::default()),
            Err(LockError::MissingPrefix)
        ));
        assert!(matches!(
            Semaphore::new(client.clone(), SemaphoreOptions::new("p", 0)),
            Err(LockError::InvalidLimit)
        ));
        let sem = Semaphore::new(client, SemaphoreOptions::new("svc/", 3)).unwrap();
        assert_eq!(sem.lock_key(), "svc/.lock");
        assert_eq!(sem.contender_key("abc"), "svc/abc");
    }
}
