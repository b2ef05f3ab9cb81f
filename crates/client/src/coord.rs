//! What [`Lock`](crate::Lock) and [`Semaphore`](crate::Semaphore) share: the error
//! type, the outcomes of acquiring and destroying, the lost-lock signal, the session a
//! holder creates for itself, and the timing rules of the Go `api` package they
//! interoperate with (blocking-wait budget, retry delays, monitor retries).

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use crate::{Client, Error, QueryMeta, SessionCreateOptions, SessionRenewal};

/// How long one blocking read waits while trying to acquire (Go's
/// `DefaultLockWaitTime` / `DefaultSemaphoreWaitTime`). It bounds how late a change is
/// noticed only if the server misses a wake-up; stopping is immediate regardless.
pub const DEFAULT_WAIT_TIME: Duration = Duration::from_secs(15);

/// Default TTL of the session a lock or semaphore creates for itself (Go's
/// `DefaultLockSessionTTL`, `"15s"`).
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(15);

/// Pause after an acquire the server refused although nobody holds the key: a
/// lock-delay is in force, and a blocking read would return at once (Go's
/// `DefaultLockRetryTime`).
pub const DEFAULT_LOCK_RETRY_TIME: Duration = Duration::from_secs(5);

/// Pause between monitor retries after a retryable error (Go's `DefaultMonitorRetryTime`).
pub const DEFAULT_MONITOR_RETRY_TIME: Duration = Duration::from_secs(2);

/// Why a lock or semaphore operation failed. Outcomes that are part of normal
/// operation (stopped, timed out, in use) are [`AcquireOutcome`] and
/// [`DestroyOutcome`] values instead. Messages match the Go `api` package's, since
/// `tribune lock` prints them as `consul lock` does.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// [`LockOptions::key`](crate::LockOptions::key) is empty.
    #[error("missing key")]
    MissingKey,
    /// [`SemaphoreOptions::prefix`](crate::SemaphoreOptions::prefix) is empty.
    #[error("missing prefix")]
    MissingPrefix,
    /// A semaphore limit of 0.
    #[error("semaphore limit must be positive")]
    InvalidLimit,
    /// A zero session TTL: the holder renews its own session, which needs a TTL.
    #[error("invalid SessionTTL: must be positive")]
    InvalidSessionTtl,
    /// `acquire` on a lock this handle already holds.
    #[error("Lock already held")]
    LockHeld,
    /// `release` on a lock this handle does not hold.
    #[error("Lock not held")]
    LockNotHeld,
    /// The key exists with flags other than [`LOCK_FLAG_VALUE`](crate::LOCK_FLAG_VALUE):
    /// it is not a lock (perhaps a semaphore's).
    #[error("Existing key does not match lock use")]
    LockConflict,
    /// `acquire` on a semaphore this handle already holds.
    #[error("Semaphore already held")]
    SemaphoreHeld,
    /// `release` on a semaphore this handle does not hold.
    #[error("Semaphore not held")]
    SemaphoreNotHeld,
    /// The coordination key exists with flags other than
    /// [`SEMAPHORE_FLAG_VALUE`](crate::SEMAPHORE_FLAG_VALUE): it is not a semaphore's.
    #[error("Existing key does not match semaphore use")]
    SemaphoreConflict,
    /// The contenders disagree on the semaphore's limit.
    #[error("semaphore limit conflict (lock: {lock}, local: {local})")]
    LimitConflict {
        /// The limit stored in the coordination key.
        lock: i64,
        /// This handle's limit.
        local: u32,
    },
    /// The semaphore's coordination key does not hold the JSON document contenders write.
    #[error("lock decoding failed: {0}")]
    DecodeLock(#[source] serde_json::Error),
    /// Creating the holder's session failed.
    #[error("failed to create session: {0}")]
    SessionCreate(#[source] Error),
    /// Reading the lock key failed.
    #[error("failed to read lock: {0}")]
    ReadLock(#[source] Error),
    /// Listing the semaphore prefix failed.
    #[error("failed to read prefix: {0}")]
    ReadPrefix(#[source] Error),
    /// The `?acquire=` write failed (an error, not a refusal).
    #[error("failed to acquire lock: {0}")]
    Acquire(#[source] Error),
    /// The `?release=` write failed.
    #[error("failed to release lock: {0}")]
    Release(#[source] Error),
    /// Writing the semaphore's coordination key failed.
    #[error("failed to update lock: {0}")]
    UpdateLock(#[source] Error),
    /// Writing the semaphore contender key failed.
    #[error("failed to make contender entry: {0}")]
    ContenderEntry(#[source] Error),
    /// The server refused to lock the contender key for our session (it is invalid, or
    /// in its lock-delay).
    #[error("failed to make contender entry: the acquire was refused")]
    ContenderRefused,
    /// Deleting an unused lock key failed.
    #[error("failed to remove lock: {0}")]
    RemoveLock(#[source] Error),
    /// Deleting an unused semaphore key failed.
    #[error("failed to remove semaphore: {0}")]
    RemoveSemaphore(#[source] Error),
    /// Another request failed (reported as is, like the Go client does).
    #[error(transparent)]
    Client(#[from] Error),
}

impl LockError {
    /// Whether the underlying failure is one worth retrying (an unreachable agent or a
    /// 500), as opposed to a conflict or a misuse.
    pub fn is_retryable(&self) -> bool {
        match self {
            LockError::SessionCreate(e)
            | LockError::ReadLock(e)
            | LockError::ReadPrefix(e)
            | LockError::Acquire(e)
            | LockError::Release(e)
            | LockError::UpdateLock(e)
            | LockError::ContenderEntry(e)
            | LockError::RemoveLock(e)
            | LockError::RemoveSemaphore(e)
            | LockError::Client(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// How an `acquire` ended without an error.
#[derive(Debug)]
pub enum AcquireOutcome {
    /// Held. The signal fires when the hold is lost (or released).
    Acquired(LockLost),
    /// The stop future completed first.
    Stopped,
    /// Try-once mode and the wait time ran out.
    TimedOut,
}

/// How a `destroy` ended without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestroyOutcome {
    /// The key was deleted.
    Destroyed,
    /// There was nothing to delete.
    Absent,
    /// Someone holds it (or changed it meanwhile), so it was left alone.
    InUse,
}

/// Fires when a held lock or semaphore slot is lost: the key was deleted or taken
/// over, the session was invalidated, the agent could not be reached (after the
/// monitor retries), or the holder released it or was dropped.
///
/// Losing a lock is normal: Consul sessions favour liveness over safety, so a holder
/// must be ready to stop acting as one at any time. Clones observe the same hold.
#[derive(Clone, Debug)]
pub struct LockLost {
    rx: watch::Receiver<bool>,
}

impl LockLost {
    /// A signal and the sender that fires it (by sending `true` or by being dropped).
    pub(crate) fn channel() -> (watch::Sender<bool>, LockLost) {
        let (tx, rx) = watch::channel(false);
        (tx, LockLost { rx })
    }

    /// Whether the hold is already known to be lost.
    pub fn is_lost(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Resolves once the hold is lost (at once if it already is).
    pub async fn wait(&mut self) {
        // An error means the monitor is gone, which also means nobody vouches for the hold.
        let _ = self.rx.wait_for(|lost| *lost).await;
    }
}

/// Go's `path.Join`, which the Go client and `consul lock` use to build keys: joins
/// the non-empty parts with `/` and cleans the result (`a//b/./c/..` -> `a/b`), so
/// keys built here are byte-for-byte the ones Go contenders use
/// (`path_join(&["foo/", ".lock"])` = `foo/.lock`).
pub fn path_join(parts: &[&str]) -> String {
    let joined = parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    if joined.is_empty() {
        return String::new();
    }
    let rooted = joined.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for segment in joined.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if matches!(out.last(), Some(last) if *last != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_owned(),
        (false, false) => body,
    }
}

/// The index for the next blocking read, given the one used and the one returned.
/// Consul's rules for clients: start over from 0 if the index went backwards (snapshot
/// restore), and never block on an index below 1, which would return at once forever.
pub(crate) fn next_index(previous: u64, returned: u64) -> u64 {
    if returned < previous {
        0
    } else {
        returned.max(1)
    }
}

/// How long the next blocking read of an acquire loop may wait; `None` = give up.
///
/// Without try-once every read waits `wait_time`. With it, the first attempt always
/// happens and later ones share what is left of `wait_time` since `elapsed` started
/// counting, as in the Go client. Unlike Go, the remainder never goes below 1 ms:
/// a `wait=0ms` would make the server use its 5-minute default.
pub(crate) fn attempt_wait(
    try_once: bool,
    attempts: u32,
    elapsed: Duration,
    wait_time: Duration,
) -> Option<Duration> {
    if !try_once || attempts == 0 {
        return Some(wait_time);
    }
    if elapsed > wait_time {
        return None;
    }
    Some((wait_time - elapsed).max(Duration::from_millis(1)))
}

/// How long to pause when a lock-delay blocks the acquire. In try-once mode the pause
/// is cut to what is left of the wait time, so the give-up comes on time.
pub(crate) fn lock_delay_pause(try_once: bool, elapsed: Duration, wait_time: Duration) -> Duration {
    if try_once {
        DEFAULT_LOCK_RETRY_TIME.min(wait_time.saturating_sub(elapsed))
    } else {
        DEFAULT_LOCK_RETRY_TIME
    }
}

/// A session created by a lock or semaphore for itself, kept alive until it is let go.
#[derive(Debug)]
pub(crate) struct OwnSession {
    pub(crate) id: String,
    client: Client,
    renewal: SessionRenewal,
}

impl OwnSession {
    /// Creates the session and starts renewing it at half its TTL.
    pub(crate) async fn create(
        client: &Client,
        opts: &SessionCreateOptions,
        ttl: Duration,
    ) -> Result<Self, LockError> {
        let id = client
            .session()
            .create(opts)
            .await
            .map_err(LockError::SessionCreate)?;
        match client.session().renew_periodic(&id, ttl) {
            Ok(renewal) => Ok(OwnSession {
                id,
                client: client.clone(),
                renewal,
            }),
            Err(_) => {
                // Only a zero TTL gets here, which the options checks rule out; do not
                // leave the fresh session behind either way.
                let _ = client.session().destroy(&id).await;
                Err(LockError::InvalidSessionTtl)
            }
        }
    }

    /// Stops renewing and destroys the session (which frees anything it still holds).
    /// Best effort, as in the Go client: if the agent is unreachable, the TTL cleans up.
    pub(crate) async fn close(self) {
        if self.renewal.stop().await.is_err() {
            // The renewal had given up on its own (renewals failing for a whole TTL),
            // so it sent no destroy; the session may still exist if the agent was only
            // slow, and must not linger holding keys.
            let _ = self.client.session().destroy(&self.id).await;
        }
    }
}

/// The session an acquire runs under: the caller's (`given`), or one created here from
/// `create()` and renewed until let go. Creation is not raced against the caller's
/// stop: cancelling it midway could leave a session on the server that nobody knows to
/// destroy.
pub(crate) async fn acquire_session(
    client: &Client,
    given: Option<&str>,
    create: impl FnOnce() -> (SessionCreateOptions, Duration),
) -> Result<(String, Option<OwnSession>), LockError> {
    match given {
        Some(id) => Ok((id.to_owned(), None)),
        None => {
            let (opts, ttl) = create();
            let own = OwnSession::create(client, &opts, ttl).await?;
            Ok((own.id.clone(), Some(own)))
        }
    }
}

/// How the racing part of an acquire ended.
pub(crate) enum Attempt {
    /// The lock or slot is held.
    Held,
    /// The wait time ran out (try-once).
    TimedOut,
    /// The caller's stop completed first.
    Stopped,
}

impl Attempt {
    /// Races `attempt` (`true` once held, `false` when out of time) against `stop`.
    pub(crate) async fn race(
        attempt: impl Future<Output = Result<bool, LockError>>,
        stop: impl Future<Output = ()>,
    ) -> Result<Attempt, LockError> {
        tokio::select! {
            r = attempt => r.map(|held| if held { Attempt::Held } else { Attempt::TimedOut }),
            () = stop => Ok(Attempt::Stopped),
        }
    }

    /// The caller's outcome of an attempt that did not end held.
    pub(crate) fn not_held(self) -> AcquireOutcome {
        match self {
            Attempt::Stopped => AcquireOutcome::Stopped,
            // `Held` is handled before this is called; mapping it to a timeout keeps
            // the function total without a panic path.
            Attempt::TimedOut | Attempt::Held => AcquireOutcome::TimedOut,
        }
    }
}

/// Watches a hold until it is lost, then fires `lost`.
///
/// `read(index)` is a blocking read (with `?index=` and `?consistent`) of what decides
/// the hold, and `held` judges its result. Retryable errors (unreachable agent, 500)
/// are retried up to `retries` times, `retry_time` apart, with the count reset after
/// every successful read, so a brief outage does not cost the lock (Go's
/// `MonitorRetries`). Any other error, or running out of retries, counts as lost: the
/// hold can no longer be vouched for.
pub(crate) async fn monitor<T, R, Fut>(
    mut read: R,
    held: impl Fn(&T) -> bool,
    retries: u32,
    retry_time: Duration,
    lost: watch::Sender<bool>,
) where
    R: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<(T, QueryMeta), Error>>,
{
    let mut index = 0;
    let mut retries_left = retries;
    loop {
        match read(index).await {
            Ok((value, meta)) => {
                if !held(&value) {
                    break;
                }
                retries_left = retries;
                index = next_index(index, meta.index);
            }
            Err(err) if retries_left > 0 && err.is_retryable() => {
                retries_left -= 1;
                // Re-read at once after the pause: the state may have changed meanwhile.
                index = 0;
                tokio::time::sleep(retry_time).await;
            }
            Err(_) => break,
        }
    }
    let _ = lost.send(true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    #[test]
    fn path_join_matches_go() {
        assert_eq!(path_join(&["foo", ".lock"]), "foo/.lock");
        assert_eq!(path_join(&["foo/", ".lock"]), "foo/.lock");
        assert_eq!(path_join(&["foo//bar/", "s-1"]), "foo/bar/s-1");
        assert_eq!(path_join(&["", ".lock"]), ".lock");
        assert_eq!(path_join(&["a/b/../c", "./d"]), "a/c/d");
        assert_eq!(path_join(&["../a", "b"]), "../a/b");
        assert_eq!(path_join(&["/x", "y"]), "/x/y");
        assert_eq!(path_join(&["/..", "y"]), "/y");
        assert_eq!(path_join(&["a", ".."]), ".");
        assert_eq!(path_join(&["", ""]), "");
    }

    #[test]
    fn next_index_resets_backwards_and_never_blocks_on_zero() {
        assert_eq!(next_index(0, 7), 7);
        assert_eq!(next_index(7, 9), 9);
        assert_eq!(next_index(7, 7), 7);
        assert_eq!(next_index(9, 3), 0);
        assert_eq!(next_index(0, 0), 1);
    }

    #[test]
    fn attempt_wait_budget() {
        let w = Duration::from_secs(10);
        let s = Duration::from_secs;
        assert_eq!(attempt_wait(false, 5, s(100), w), Some(w));
        assert_eq!(attempt_wait(true, 0, s(100), w), Some(w));
        assert_eq!(attempt_wait(true, 1, s(3), w), Some(s(7)));
        assert_eq!(
            attempt_wait(true, 1, s(10), w),
            Some(Duration::from_millis(1))
        );
        assert_eq!(
            attempt_wait(true, 1, Duration::from_millis(10_001), w),
            None
        );
    }

    #[test]
    fn lock_delay_pause_respects_try_once_budget() {
        let s = Duration::from_secs;
        assert_eq!(
            lock_delay_pause(false, s(100), s(1)),
            DEFAULT_LOCK_RETRY_TIME
        );
        assert_eq!(lock_delay_pause(true, s(1), s(60)), DEFAULT_LOCK_RETRY_TIME);
        assert_eq!(lock_delay_pause(true, s(8), s(10)), s(2));
        assert_eq!(lock_delay_pause(true, s(12), s(10)), Duration::ZERO);
    }

    #[test]
    fn retryable_errors() {
        let status = |code| Error::Status {
            code,
            body: String::new(),
        };
        assert!(LockError::ReadLock(status(500)).is_retryable());
        assert!(LockError::Client(Error::Transport {
            message: "connection refused".into()
        })
        .is_retryable());
        assert!(!LockError::ReadLock(status(403)).is_retryable());
        assert!(!LockError::LockConflict.is_retryable());
    }

    #[test]
    fn error_messages_match_go() {
        assert_eq!(
            LockError::LimitConflict { lock: 3, local: 2 }.to_string(),
            "semaphore limit conflict (lock: 3, local: 2)"
        );
        assert_eq!(
            LockError::ReadLock(Error::Status {
                code: 500,
                body: "No cluster leader".into()
            })
            .to_string(),
            "failed to read lock: Unexpected response code: 500 (No cluster leader)"
        );
    }

    type Read = std::future::Ready<Result<(bool, QueryMeta), Error>>;

    /// Scripted reads for the monitor: each call pops the next answer (`Ok((held,
    /// index))` or `Err(status)`); the second value records the indexes asked for.
    fn script(
        answers: Vec<Result<(bool, u64), u16>>,
    ) -> (impl FnMut(u64) -> Read, Arc<Mutex<Vec<u64>>>) {
        let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let read = move |index| {
            log.lock().unwrap().push(index);
            let next = answers.lock().unwrap().pop_front();
            std::future::ready(match next {
                Some(Ok((held, idx))) => Ok((
                    held,
                    QueryMeta {
                        index: idx,
                        ..Default::default()
                    },
                )),
                Some(Err(code)) => Err(Error::Status {
                    code,
                    body: String::new(),
                }),
                None => Ok((false, QueryMeta::default())),
            })
        };
        (read, seen)
    }

    #[tokio::test]
    async fn monitor_follows_the_index_until_lost() {
        let (read, seen) = script(vec![Ok((true, 5)), Ok((true, 8)), Ok((false, 9))]);
        let (tx, lost) = LockLost::channel();
        monitor(read, |held: &bool| *held, 0, Duration::ZERO, tx).await;
        assert!(lost.is_lost());
        assert_eq!(*seen.lock().unwrap(), [0, 5, 8]);
    }

    #[tokio::test]
    async fn monitor_retries_500s_and_resets_the_budget() {
        // Two retries allowed: 500, 500, ok (budget back to 2), 500, 500, 500 -> lost.
        let (read, seen) = script(vec![
            Ok((true, 4)),
            Err(500),
            Err(500),
            Ok((true, 6)),
            Err(500),
            Err(500),
            Err(500),
        ]);
        let (tx, lost) = LockLost::channel();
        monitor(read, |held: &bool| *held, 2, Duration::ZERO, tx).await;
        assert!(lost.is_lost());
        // After an error the next read starts over from index 0.
        assert_eq!(*seen.lock().unwrap(), [0, 4, 0, 0, 6, 0, 0]);
    }

    #[tokio::test]
    async fn monitor_gives_up_at_once_on_other_errors() {
        let (read, seen) = script(vec![Ok((true, 4)), Err(403)]);
        let (tx, lost) = LockLost::channel();
        monitor(read, |held: &bool| *held, 3, Duration::ZERO, tx).await;
        assert!(lost.is_lost());
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn lost_signal_fires_when_the_monitor_goes_away() {
        let (tx, mut lost) = LockLost::channel();
        let other = lost.clone();
        assert!(!lost.is_lost());
        drop(tx);
        lost.wait().await;
        assert!(other.is_lost());
    }
}

/// What a held lock or semaphore slot owns: its session (and, when the recipe created
/// it, the renewal that keeps it alive) and the monitor task watching for its loss.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) session: String,
    /// `None` when the caller supplied the session.
    pub(crate) own: Option<OwnSession>,
    pub(crate) monitor: tokio::task::JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Stopping the monitor drops its sender, which fires every `LockLost`.
        self.monitor.abort();
    }
}
