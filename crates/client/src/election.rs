//! Leader election on top of [`Lock`]: campaign in the background, publish whether
//! this process leads, and campaign again after losing leadership.
//!
//! This is Consul's application leader-election recipe: every candidate tries to
//! acquire the same key; the holder leads and the key's value tells others who leads
//! ([`current_leader`]). Leadership can be lost at any time (session invalidated by a
//! failed health check, the key deleted by an operator, the agent unreachable), so a
//! leader must watch [`LeaderElection::subscribe`] and stop leading when it flips to
//! `false`. Go candidates using `api.Lock` on the same key take part in the same election.

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::coord::DEFAULT_LOCK_RETRY_TIME;
use crate::{AcquireOutcome, Client, Error, KvPair, Lock, LockError, LockOptions, QueryOptions};

/// A background campaign for one lock key. Dropping it resigns (in the background).
#[derive(Debug)]
pub struct LeaderElection {
    leader: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), LockError>>,
}

impl LeaderElection {
    /// Starts campaigning for `opts.key`, writing `opts.value` (typically this
    /// candidate's address or name) while leading. Try-once is ignored: a candidate
    /// campaigns until it resigns. Must be called from within a Tokio runtime.
    pub fn spawn(client: Client, mut opts: LockOptions) -> Result<Self, LockError> {
        opts.lock_try_once = false;
        let lock = Lock::new(client, opts)?;
        let (leader_tx, leader) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(campaign(lock, leader_tx, stop_rx));
        Ok(LeaderElection { leader, stop, task })
    }

    /// Whether this candidate leads right now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// A receiver that sees every change of leadership (`true` = leading).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Whether the campaign has ended (resigned, or failed with a non-retryable error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops campaigning and gives leadership up if held (releasing the key and
    /// destroying the session). Returns the campaign's error if it had failed.
    pub async fn resign(self) -> Result<(), LockError> {
        // An error means the task is gone already; its result says why.
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => Ok(()),
        }
    }
}

/// Resolves once a stop is requested or the [`LeaderElection`] handle is dropped.
async fn stopped(mut stop: watch::Receiver<bool>) {
    // An error means the handle was dropped, which is a resignation too.
    let _ = stop.wait_for(|s| *s).await;
}

async fn campaign(
    mut lock: Lock,
    leader: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
) -> Result<(), LockError> {
    loop {
        match lock.acquire(stopped(stop.clone())).await {
            Ok(AcquireOutcome::Acquired(mut lost)) => {
                leader.send_replace(true);
                let resigned = tokio::select! {
                    () = lost.wait() => false,
                    () = stopped(stop.clone()) => true,
                };
                leader.send_replace(false);
                let released = lock.release().await;
                if resigned {
                    return released;
                }
                // Lost: the session is gone or going, so a failed release changes
                // nothing. Pause before campaigning again, so that a lock that is lost
                // as soon as it is won (say, a token that may write the key but not
                // read it) cannot turn this into a busy loop.
                tokio::select! {
                    () = tokio::time::sleep(DEFAULT_LOCK_RETRY_TIME) => {}
                    () = stopped(stop.clone()) => return Ok(()),
                }
            }
            Ok(AcquireOutcome::Stopped) => return Ok(()),
            Ok(AcquireOutcome::TimedOut) => {}
            Err(err) if err.is_retryable() => {
                tokio::select! {
                    () = tokio::time::sleep(DEFAULT_LOCK_RETRY_TIME) => {}
                    () = stopped(stop.clone()) => return Ok(()),
                }
            }
            Err(err) => return Err(err),
        }
    }
}

/// The current leader's entry for an election key: `None` when nobody holds it.
/// The entry's `value` is what the leader wrote, its `session` the leader's session.
pub async fn current_leader(client: &Client, key: &str) -> Result<Option<KvPair>, Error> {
    let (pair, _) = client.kv().get(key, &QueryOptions::default()).await?;
    Ok(pair.filter(|p| p.session.as_deref().is_some_and(|s| !s.is_empty())))
}
