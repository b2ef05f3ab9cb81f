//! Sessions and KV locks: creation, invalidation (destroy, TTL, node or check failure)
//! with the session's behavior applied to the keys it holds, acquire/release, and
//! lock-delay.
//!
//! Lock-delay is measured against the clock the leader stamped on each raft entry, and
//! its deadlines are part of the replicated state. Consul keeps them in a per-server
//! in-memory map checked only on the leader, so a new leader forgets them; here every
//! server, and every replay, reaches the same verdict.

use crate::db::{kv_put, At, Db, Touched, SESSIONS};
use tribune_types::model::ops::{WriteOutcome, WriteRejected};
use tribune_types::model::{KvEntry, RaftIndex, Session, SessionBehavior, MAX_LOCK_DELAY};
use tribune_types::{HealthStatus, SessionId};

/// Creates a session, after the checks Consul makes: the node and every bound check
/// exist, and no bound check is critical.
pub(crate) fn create(
    db: &mut Db,
    index: u64,
    sess: &Session,
    t: &mut Touched,
) -> Result<WriteOutcome, WriteRejected> {
    let id = sess.id.to_string();
    if sess.id == SessionId::default() {
        return Err(WriteRejected::Failed("Missing session ID".into()));
    }
    if db.sessions.get(&id).is_some() {
        return Err(WriteRejected::Failed(format!(
            "Session {id} already exists"
        )));
    }
    let node = sess.node.as_str();
    if node.is_empty() {
        return Err(WriteRejected::Failed("Must provide Node".into()));
    }
    if db.nodes.get(node).is_none() {
        return Err(WriteRejected::Failed("Missing node registration".into()));
    }
    for check in sess.check_ids() {
        match db.checks.get(&crate::db::pair(node, check)) {
            None => {
                return Err(WriteRejected::Failed(format!(
                    "Missing check '{check}' registration"
                )))
            }
            Some(c) if c.status == HealthStatus::Critical => {
                return Err(WriteRejected::Failed(format!(
                    "Check '{check}' is in critical state"
                )))
            }
            Some(_) => {}
        }
    }
    let mut row = sess.clone();
    row.raft = RaftIndex {
        create_index: index,
        modify_index: index,
    };
    db.sessions.insert(id.clone(), row, index);
    db.sessions_by_node
        .entry(node.to_owned())
        .or_default()
        .insert(sess.id);
    t.add(SESSIONS, &id);
    Ok(WriteOutcome::Done)
}

/// Invalidates a session: removes it, applies its behavior to every key it holds and
/// starts their lock-delay. A no-op for an unknown session (destroy is idempotent).
pub(crate) fn invalidate(db: &mut Db, at: At, id: SessionId, t: &mut Touched) {
    let key = id.to_string();
    let Some(sess) = db.sessions.remove(&key, at.index) else {
        return;
    };
    t.add(SESSIONS, &key);
    crate::prepared_query::delete_for_session(db, at, &key, t);
    let node = sess.node.as_str();
    let node_empty = db.sessions_by_node.get_mut(node).is_some_and(|set| {
        set.remove(&id);
        set.is_empty()
    });
    if node_empty {
        db.sessions_by_node.remove(node);
    }
    let held: Vec<String> = db
        .held
        .get(&id)
        .map(|keys| keys.iter().cloned().collect())
        .unwrap_or_default();
    let delay = sess.lock_delay.min(MAX_LOCK_DELAY);
    let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    for k in held {
        match sess.behavior {
            SessionBehavior::Release => {
                if let Some(mut row) = db.kv.get(&k).cloned() {
                    row.session = None;
                    row.raft.modify_index = at.index;
                    kv_put(db, row, at.index, t);
                }
            }
            SessionBehavior::Delete => {
                crate::db::kv_del(db, &k, at.index, t);
            }
        }
        // Unstamped entries (clock 0) cannot measure a delay; starting one would block
        // the key until the first stamped entry prunes it, so none is started.
        if delay_ms > 0 && at.now_ms > 0 {
            db.lock_delays
                .insert(k.clone(), at.now_ms.saturating_add(delay_ms));
        }
    }
    db.held.remove(&id);
    prune_lock_delays(db, at.now_ms);
}

/// Invalidates the sessions on `node` bound to `check_id` (it went critical or was removed).
pub(crate) fn invalidate_bound(db: &mut Db, at: At, node: &str, check_id: &str, t: &mut Touched) {
    let bound: Vec<SessionId> = db
        .sessions_by_node
        .get(node)
        .map(|ids| {
            ids.iter()
                .filter(|id| {
                    db.sessions
                        .get(&id.to_string())
                        .is_some_and(|s| s.check_ids().any(|c| c == check_id))
                })
                .copied()
                .collect()
        })
        .unwrap_or_default();
    for id in bound {
        invalidate(db, at, id, t);
    }
}

/// Invalidates every session of a node (the node was deregistered).
pub(crate) fn invalidate_node(db: &mut Db, at: At, node: &str, t: &mut Touched) {
    let ids: Vec<SessionId> = db
        .sessions_by_node
        .get(node)
        .map(|ids| ids.iter().copied().collect())
        .unwrap_or_default();
    for id in ids {
        invalidate(db, at, id, t);
    }
}

/// Drops lock-delays that have ended, so the map only holds live ones.
fn prune_lock_delays(db: &mut Db, now_ms: u64) {
    if now_ms == 0 {
        return;
    }
    let ended: Vec<String> = db
        .lock_delays
        .iter()
        .filter(|(_, until)| **until <= now_ms)
        .map(|(k, _)| k.to_owned())
        .collect();
    for k in ended {
        db.lock_delays.remove(&k);
    }
}

/// Why an acquire did not take the lock, for transactions' error texts.
pub(crate) enum AcquireRefused {
    /// The session does not exist (an error, not a `false`).
    InvalidSession(String),
    /// Held by another session, or within lock-delay (`false`).
    Held,
}

/// `?acquire=`: takes the key's lock for `session` (Consul's `kvsLockTxn`). Re-acquiring
/// by the holder updates the value without bumping `LockIndex`.
pub(crate) fn try_acquire(
    db: &mut Db,
    at: At,
    entry: &KvEntry,
    session: SessionId,
    t: &mut Touched,
) -> Result<KvEntry, AcquireRefused> {
    if db.sessions.get(&session.to_string()).is_none() {
        return Err(AcquireRefused::InvalidSession(format!(
            "invalid session \"{session}\""
        )));
    }
    if let Some(until) = db.lock_delays.get(&entry.key) {
        if at.now_ms < *until {
            return Err(AcquireRefused::Held);
        }
    }
    let existing = db.kv.get(&entry.key).cloned();
    let (create_index, lock_index) = match &existing {
        Some(e) if e.session == Some(session) => (e.raft.create_index, e.lock_index),
        Some(e) if e.session.is_some() => return Err(AcquireRefused::Held),
        Some(e) => (e.raft.create_index, e.lock_index + 1),
        None => (at.index, 1),
    };
    let row = KvEntry {
        key: entry.key.clone(),
        value: entry.value.clone(),
        flags: entry.flags,
        lock_index,
        session: Some(session),
        raft: RaftIndex {
            create_index,
            modify_index: at.index,
        },
    };
    db.lock_delays.remove(&entry.key);
    kv_put(db, row.clone(), at.index, t);
    Ok(row)
}

/// The single-operation form of [`try_acquire`]: `false` when held, an error for an
/// unknown session (Consul answers 500 `invalid session "…"`).
pub(crate) fn acquire(
    db: &mut Db,
    at: At,
    entry: &KvEntry,
    session: SessionId,
    t: &mut Touched,
) -> Result<WriteOutcome, WriteRejected> {
    match try_acquire(db, at, entry, session, t) {
        Ok(_) => Ok(WriteOutcome::Done),
        Err(AcquireRefused::Held) => Ok(WriteOutcome::NotApplied),
        Err(AcquireRefused::InvalidSession(msg)) => Err(WriteRejected::Failed(msg)),
    }
}

/// `?release=`: clears the lock if `session` holds it, writing the value; keeps
/// `LockIndex` (Consul's `kvsUnlockTxn`). Returns the new row, or `None` (`false`).
pub(crate) fn try_release(
    db: &mut Db,
    index: u64,
    entry: &KvEntry,
    session: SessionId,
    t: &mut Touched,
) -> Option<KvEntry> {
    let existing = db.kv.get(&entry.key)?.clone();
    if existing.session != Some(session) {
        return None;
    }
    let row = KvEntry {
        key: entry.key.clone(),
        value: entry.value.clone(),
        flags: entry.flags,
        lock_index: existing.lock_index,
        session: None,
        raft: RaftIndex {
            create_index: existing.raft.create_index,
            modify_index: index,
        },
    };
    kv_put(db, row.clone(), index, t);
    Some(row)
}

/// The single-operation form of [`try_release`].
pub(crate) fn release(
    db: &mut Db,
    index: u64,
    entry: &KvEntry,
    session: SessionId,
    t: &mut Touched,
) -> WriteOutcome {
    match try_release(db, index, entry, session, t) {
        Some(_) => WriteOutcome::Done,
        None => WriteOutcome::NotApplied,
    }
}

/// Rebuilds the derived session indexes after a restore.
pub(crate) fn rebuild_indexes(db: &mut Db) {
    db.sessions_by_node = Default::default();
    db.held = Default::default();
    let sessions: Vec<(String, SessionId)> = db
        .sessions
        .iter()
        .map(|(_, s)| (s.node.as_str().to_owned(), s.id))
        .collect();
    for (node, id) in sessions {
        db.sessions_by_node.entry(node).or_default().insert(id);
    }
    let held: Vec<(SessionId, String)> = db
        .kv
        .iter()
        .filter_map(|(k, e)| e.session.map(|s| (s, k.to_owned())))
        .collect();
    for (s, k) in held {
        db.held.entry(s).or_default().insert(k);
    }
}
