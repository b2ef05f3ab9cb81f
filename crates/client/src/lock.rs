//! A distributed mutex on one KV key, interoperable with the Go client's `api.Lock`.
//!
//! The protocol (Consul's leader-election recipe, as `api/lock.go` implements it):
//!
//! 1. Get a session: the caller's, or a new one (`"Consul API Lock"`, TTL 15 s) that
//!    is renewed at half its TTL and destroyed on release.
//! 2. Read the key. Flags other than [`LOCK_FLAG_VALUE`] mean the key is not a lock
//!    (a semaphore uses the same `.lock` name with other flags): fail with
//!    [`LockError::LockConflict`]. Held by another session: block on the key
//!    (`?index=`) and read again.
//! 3. Free: `PUT ?acquire=<session>&flags=<LOCK_FLAG_VALUE>` with the lock's value.
//!    Refused while the key shows no holder means a lock-delay is in force: pause
//!    5 s and retry.
//! 4. Held: a monitor task blocks on the key (`?consistent`) and fires [`LockLost`]
//!    as soon as the key is gone or its `Session` is no longer ours (taken over,
//!    released, or the session invalidated).
//!
//! Because every step is plain KV traffic with the Go client's key, flags and value,
//! a Rust holder and a Go holder exclude each other on the same key.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::coord::{
    self, attempt_wait, lock_delay_pause, monitor, next_index, Attempt, Held,
    DEFAULT_MONITOR_RETRY_TIME, DEFAULT_SESSION_TTL, DEFAULT_WAIT_TIME,
};
use crate::{
    AcquireOutcome, Client, DestroyOutcome, KvDeleteOptions, KvPair, KvPutOptions, LockError,
    LockLost, QueryOptions, SessionCreateOptions,
};

/// Flags stored on a lock key, so locks and semaphores on the same key detect each
/// other (the Go client's `LockFlagValue`).
pub const LOCK_FLAG_VALUE: u64 = 0x2ddc_cbc0_58a5_0c18;

/// Name of the session a [`Lock`] creates for itself (the Go client's
/// `DefaultLockSessionName`).
pub const DEFAULT_LOCK_SESSION_NAME: &str = "Consul API Lock";

/// How to set up a [`Lock`]. [`LockOptions::new`] gives the Go client's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockOptions {
    /// The key to lock; the token needs write access to it.
    pub key: String,
    /// Value written to the key while it is held (`LockOptions.Value`).
    pub value: Vec<u8>,
    /// Hold the lock with this existing session instead of creating one. It is then
    /// neither renewed nor destroyed by the lock.
    pub session: Option<String>,
    /// Full options for the session the lock creates; when set, `session_name` and
    /// `lock_delay` are ignored, and a missing `ttl` is filled from `session_ttl`
    /// (the lock renews its session, which needs a TTL).
    pub session_options: Option<SessionCreateOptions>,
    /// Name of the session the lock creates.
    pub session_name: String,
    /// TTL of the session the lock creates; it is renewed every `session_ttl / 2`.
    pub session_ttl: Duration,
    /// Lock-delay of the session the lock creates; `None` = server default (15 s).
    pub lock_delay: Option<Duration>,
    /// Retryable errors (agent unreachable, 500) the monitor rides out before calling
    /// the lock lost. 0, the Go default, gives up at the first error.
    pub monitor_retries: u32,
    /// Pause between monitor retries.
    pub monitor_retry_time: Duration,
    /// How long each blocking read waits while acquiring; with `lock_try_once`, the
    /// total time to try.
    pub lock_wait_time: Duration,
    /// Give up with [`AcquireOutcome::TimedOut`] after `lock_wait_time` instead of
    /// waiting forever.
    pub lock_try_once: bool,
}

impl Default for LockOptions {
    /// The Go client's defaults, with an empty (invalid) key to fill in.
    fn default() -> Self {
        LockOptions {
            key: String::new(),
            value: Vec::new(),
            session: None,
            session_options: None,
            session_name: DEFAULT_LOCK_SESSION_NAME.to_owned(),
            session_ttl: DEFAULT_SESSION_TTL,
            lock_delay: None,
            monitor_retries: 0,
            monitor_retry_time: DEFAULT_MONITOR_RETRY_TIME,
            lock_wait_time: DEFAULT_WAIT_TIME,
            lock_try_once: false,
        }
    }
}

impl LockOptions {
    /// Defaults for a lock on `key`.
    pub fn new(key: impl Into<String>) -> Self {
        LockOptions {
            key: key.into(),
            ..Default::default()
        }
    }

    /// The create request for the lock's own session, and the TTL to renew it with.
    fn own_session(&self) -> (SessionCreateOptions, Duration) {
        match &self.session_options {
            Some(opts) => {
                let mut opts = opts.clone();
                let ttl = *opts.ttl.get_or_insert(self.session_ttl);
                (opts, ttl)
            }
            None => (
                SessionCreateOptions {
                    name: Some(self.session_name.clone()),
                    ttl: Some(self.session_ttl),
                    lock_delay: self.lock_delay,
                    ..Default::default()
                },
                self.session_ttl,
            ),
        }
    }
}

/// What the lock key says, from the point of view of `session`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyState {
    /// Absent, or present without a holder: try to acquire.
    Free,
    /// Already ours (re-acquiring with an existing session).
    HeldByUs,
    /// Someone else holds it: wait for a change.
    HeldByOther,
    /// Not a lock key (wrong flags).
    Conflict,
}

/// The holder of a key; Go treats an empty `Session` as none.
fn holder(pair: &KvPair) -> Option<&str> {
    pair.session.as_deref().filter(|s| !s.is_empty())
}

/// Decides step 2 of the protocol for the key's current entry.
pub(crate) fn key_state(pair: Option<&KvPair>, session: &str) -> KeyState {
    let Some(pair) = pair else {
        return KeyState::Free;
    };
    if pair.flags != LOCK_FLAG_VALUE {
        return KeyState::Conflict;
    }
    match holder(pair) {
        Some(h) if h == session => KeyState::HeldByUs,
        Some(_) => KeyState::HeldByOther,
        None => KeyState::Free,
    }
}

/// Why an acquire was refused, judged from a fresh read of the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Someone got there first: block on the key.
    HeldByOther,
    /// Nobody holds it, so a lock-delay is in force: a blocking read would return at
    /// once, so pause instead.
    LockDelay,
}

/// Classifies a refused acquire.
pub(crate) fn refusal(pair: Option<&KvPair>) -> Refusal {
    match pair.and_then(holder) {
        Some(_) => Refusal::HeldByOther,
        None => Refusal::LockDelay,
    }
}

/// Whether `session` still holds the lock, given the key's entry. Deleted, released
/// and taken over all count as lost (flags are not checked, as in the Go monitor).
pub(crate) fn still_held(pair: Option<&KvPair>, session: &str) -> bool {
    pair.and_then(holder) == Some(session)
}

/// What `destroy` should do about the key's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DestroyStep {
    /// Nothing to delete.
    Absent,
    /// Not a lock key.
    Conflict,
    /// Held by someone.
    InUse,
    /// Delete it if unchanged since this `ModifyIndex`.
    Delete(u64),
}

/// Decides `destroy` for the key's entry.
pub(crate) fn destroy_step(pair: Option<&KvPair>) -> DestroyStep {
    match pair {
        None => DestroyStep::Absent,
        Some(p) if p.flags != LOCK_FLAG_VALUE => DestroyStep::Conflict,
        Some(p) if holder(p).is_some() => DestroyStep::InUse,
        Some(p) => DestroyStep::Delete(p.modify_index),
    }
}

/// A distributed mutex on one KV key (see the module docs for the protocol).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use tribune_client::{AcquireOutcome, Client, Config, Lock, LockOptions};
///
/// let client = Client::new(Config::from_env())?;
/// let mut lock = Lock::new(client, LockOptions::new("service/leader"))?;
/// if let AcquireOutcome::Acquired(mut lost) = lock.acquire(std::future::pending()).await? {
///     tokio::select! {
///         () = lost.wait() => eprintln!("lost the lock"),
///         () = do_leader_work() => {}
///     }
///     lock.release().await?;
/// }
/// # Ok(()) }
/// # async fn do_leader_work() {}
/// ```
///
/// Dropping a held `Lock` stops its monitor and its session renewal; a session the
/// lock created is then destroyed in the background, which frees the key.
#[derive(Debug)]
pub struct Lock {
    client: Client,
    opts: LockOptions,
    held: Option<Held>,
}

impl Lock {
    /// A lock handle; nothing is sent until [`Lock::acquire`].
    pub fn new(client: Client, opts: LockOptions) -> Result<Self, LockError> {
        if opts.key.is_empty() {
            return Err(LockError::MissingKey);
        }
        if opts.session.is_none() && opts.session_ttl.is_zero() {
            return Err(LockError::InvalidSessionTtl);
        }
        Ok(Lock {
            client,
            opts,
            held: None,
        })
    }

    /// The options the lock was made with.
    pub fn options(&self) -> &LockOptions {
        &self.opts
    }

    /// The session holding the lock, while this handle holds it.
    pub fn session(&self) -> Option<&str> {
        self.held.as_ref().map(|h| h.session.as_str())
    }

    /// Whether this handle holds the lock (it may have been lost since; see [`LockLost`]).
    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// Blocks until the lock is held, `stop` completes, or (try-once) the wait time runs
    /// out. Pass [`std::future::pending`] to wait indefinitely.
    ///
    /// On [`AcquireOutcome::Acquired`] the returned [`LockLost`] fires whenever the lock
    /// is lost; it is NOT safe to assume the lock is held until [`Lock::release`]
    /// unless the session has no health checks. Errors: [`LockError::LockHeld`] if this
    /// handle already holds it, [`LockError::LockConflict`] if the key is not a lock,
    /// and the read/write failures. A session created here is destroyed again on any
    /// outcome but `Acquired`, which also frees the key if `stop` interrupted an
    /// acquire request that the server had already granted. With a caller-supplied
    /// session that cannot be done, so such a stop may leave the key held by it.
    pub async fn acquire(
        &mut self,
        stop: impl Future<Output = ()>,
    ) -> Result<AcquireOutcome, LockError> {
        if self.held.is_some() {
            return Err(LockError::LockHeld);
        }
        let (session, own) =
            coord::acquire_session(&self.client, self.opts.session.as_deref(), || {
                self.opts.own_session()
            })
            .await?;
        let result = Attempt::race(self.acquire_loop(&session), stop).await;
        match result {
            Ok(Attempt::Held) => {
                let (tx, lost) = LockLost::channel();
                let monitor = tokio::spawn(monitor_key(
                    self.client.clone(),
                    self.opts.key.clone(),
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
                // Destroying our session also frees the key if a cancelled acquire
                // went through on the server after all.
                if let Some(own) = own {
                    own.close().await;
                }
                other.map(Attempt::not_held)
            }
        }
    }

    /// Steps 2 and 3 of the protocol until held (`true`) or out of time (`false`).
    async fn acquire_loop(&self, session: &str) -> Result<bool, LockError> {
        let kv = self.client.kv();
        let key = self.opts.key.as_str();
        let (try_once, wait_time) = (self.opts.lock_try_once, self.opts.lock_wait_time);
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
            let (pair, meta) = kv.get(key, &opts).await.map_err(LockError::ReadLock)?;
            match key_state(pair.as_ref(), session) {
                KeyState::Conflict => return Err(LockError::LockConflict),
                KeyState::HeldByUs => return Ok(true),
                KeyState::HeldByOther => {
                    index = next_index(index, meta.index);
                    continue;
                }
                KeyState::Free => {}
            }
            let put = KvPutOptions {
                flags: LOCK_FLAG_VALUE,
                acquire: Some(session.to_owned()),
                ..Default::default()
            };
            if kv
                .put(key, &self.opts.value, &put)
                .await
                .map_err(LockError::Acquire)?
            {
                return Ok(true);
            }
            // Refused: find out why with a non-blocking read.
            let opts = QueryOptions {
                wait: Some(wait),
                ..Default::default()
            };
            let (pair, meta) = kv.get(key, &opts).await.map_err(LockError::ReadLock)?;
            match refusal(pair.as_ref()) {
                Refusal::HeldByOther => index = next_index(0, meta.index),
                Refusal::LockDelay => {
                    index = 0;
                    let pause = lock_delay_pause(try_once, start.elapsed(), wait_time);
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// Gives the lock up: `PUT ?release=<session>` (with the lock's flags and value),
    /// then destroys the session if the lock created it. The handle counts as not
    /// holding the lock afterwards even if the release request fails, as in Go; the
    /// session's invalidation frees the key in that case.
    pub async fn release(&mut self) -> Result<(), LockError> {
        let Some(mut held) = self.held.take() else {
            return Err(LockError::LockNotHeld);
        };
        held.monitor.abort();
        let put = KvPutOptions {
            flags: LOCK_FLAG_VALUE,
            release: Some(held.session.clone()),
            ..Default::default()
        };
        // `false` (not the holder any more) is fine: the lock is not ours either way.
        let result = self
            .client
            .kv()
            .put(&self.opts.key, &self.opts.value, &put)
            .await
            .map(drop)
            .map_err(LockError::Release);
        if let Some(own) = held.own.take() {
            own.close().await;
        }
        result
    }

    /// Deletes the lock key if nobody holds it; not needed for correctness, only to
    /// leave no key behind. Fails with [`LockError::LockHeld`] while this handle holds
    /// it and [`LockError::LockConflict`] if the key is not a lock.
    pub async fn destroy(&mut self) -> Result<DestroyOutcome, LockError> {
        if self.held.is_some() {
            return Err(LockError::LockHeld);
        }
        let kv = self.client.kv();
        let (pair, _) = kv
            .get(&self.opts.key, &QueryOptions::default())
            .await
            .map_err(LockError::ReadLock)?;
        match destroy_step(pair.as_ref()) {
            DestroyStep::Absent => Ok(DestroyOutcome::Absent),
            DestroyStep::Conflict => Err(LockError::LockConflict),
            DestroyStep::InUse => Ok(DestroyOutcome::InUse),
            DestroyStep::Delete(index) => {
                let opts = KvDeleteOptions {
                    cas: Some(index),
                    ..Default::default()
                };
                let deleted = kv
                    .delete(&self.opts.key, &opts)
                    .await
                    .map_err(LockError::RemoveLock)?;
                Ok(if deleted {
                    DestroyOutcome::Destroyed
                } else {
                    DestroyOutcome::InUse
                })
            }
        }
    }
}

/// The monitor task of a held lock.
async fn monitor_key(
    client: Client,
    key: String,
    session: String,
    retries: u32,
    retry_time: Duration,
    lost: tokio::sync::watch::Sender<bool>,
) {
    let read = |index| {
        let client = client.clone();
        let key = key.clone();
        async move {
            let opts = QueryOptions {
                index,
                consistent: true,
                ..Default::default()
            };
            client.kv().get(&key, &opts).await
        }
    };
    let held = |pair: &Option<KvPair>| still_held(pair.as_ref(), &session);
    monitor(read, held, retries, retry_time, lost).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(flags: u64, session: Option<&str>) -> KvPair {
        KvPair {
            key: "svc/.lock".into(),
            flags,
            session: session.map(str::to_owned),
            modify_index: 42,
            ..Default::default()
        }
    }

    #[test]
    fn flag_value_is_the_go_clients() {
        assert_eq!(LOCK_FLAG_VALUE, 3304740253564472344);
    }

    #[test]
    fn key_state_decisions() {
        let me = "s-me";
        assert_eq!(key_state(None, me), KeyState::Free);
        assert_eq!(
            key_state(Some(&pair(LOCK_FLAG_VALUE, None)), me),
            KeyState::Free
        );
        // Go treats an empty Session as no holder.
        assert_eq!(
            key_state(Some(&pair(LOCK_FLAG_VALUE, Some(""))), me),
            KeyState::Free
        );
        assert_eq!(
            key_state(Some(&pair(LOCK_FLAG_VALUE, Some(me))), me),
            KeyState::HeldByUs
        );
        assert_eq!(
            key_state(Some(&pair(LOCK_FLAG_VALUE, Some("s-other"))), me),
            KeyState::HeldByOther
        );
        // A plain key, or a semaphore's `.lock`, is a conflict even when free.
        assert_eq!(key_state(Some(&pair(0, None)), me), KeyState::Conflict);
        assert_eq!(
            key_state(Some(&pair(crate::SEMAPHORE_FLAG_VALUE, Some(me))), me),
            KeyState::Conflict
        );
    }

    #[test]
    fn refusal_reasons() {
        assert_eq!(
            refusal(Some(&pair(LOCK_FLAG_VALUE, Some("s-other")))),
            Refusal::HeldByOther
        );
        assert_eq!(
            refusal(Some(&pair(LOCK_FLAG_VALUE, None))),
            Refusal::LockDelay
        );
        assert_eq!(refusal(None), Refusal::LockDelay);
    }

    #[test]
    fn lost_when_deleted_released_or_taken_over() {
        let me = "s-me";
        assert!(still_held(Some(&pair(LOCK_FLAG_VALUE, Some(me))), me));
        assert!(!still_held(None, me));
        assert!(!still_held(Some(&pair(LOCK_FLAG_VALUE, None)), me));
        assert!(!still_held(Some(&pair(LOCK_FLAG_VALUE, Some("s-2"))), me));
        // The monitor ignores flags, as Go's does: someone rewriting the value and
        // flags under our session does not take the lock away.
        assert!(still_held(Some(&pair(7, Some(me))), me));
    }

    #[test]
    fn destroy_decisions() {
        assert_eq!(destroy_step(None), DestroyStep::Absent);
        assert_eq!(
            destroy_step(Some(&pair(LOCK_FLAG_VALUE, None))),
            DestroyStep::Delete(42)
        );
        assert_eq!(
            destroy_step(Some(&pair(LOCK_FLAG_VALUE, Some("s")))),
            DestroyStep::InUse
        );
        assert_eq!(destroy_step(Some(&pair(1, None))), DestroyStep::Conflict);
    }

    #[test]
    fn own_session_request() {
        let opts = LockOptions::new("k");
        let (create, ttl) = opts.own_session();
        assert_eq!(ttl, Duration::from_secs(15));
        assert_eq!(
            create.body(),
            serde_json::json!({"Name": "Consul API Lock", "TTL": "15s"})
        );
        let opts = LockOptions {
            session_options: Some(SessionCreateOptions {
                node_checks: Some(vec![]),
                ..Default::default()
            }),
            session_ttl: Duration::from_secs(20),
            ..LockOptions::new("k")
        };
        let (create, ttl) = opts.own_session();
        assert_eq!(ttl, Duration::from_secs(20));
        assert_eq!(
            create.body(),
            serde_json::json!({"NodeChecks": [], "TTL": "20s"})
        );
    }

    #[test]
    fn options_are_validated() {
        let client = Client::new(crate::Config::default()).unwrap();
        assert!(matches!(
            Lock::new(client.clone(), LockOptions::default()),
            Err(LockError::MissingKey)
        ));
        let opts = LockOptions {
            session_ttl: Duration::ZERO,
            ..LockOptions::new("k")
        };
        assert!(matches!(
            Lock::new(client.clone(), opts),
            Err(LockError::InvalidSessionTtl)
        ));
        // With the caller's session the TTL does not matter.
        let opts = LockOptions {
            session: Some("s".into()),
            session_ttl: Duration::ZERO,
            ..LockOptions::new("k")
        };
        assert!(Lock::new(client, opts).is_ok());
    }
}
