//! The tables and the deterministic apply function.

use crate::command::Command;
use imbl::{OrdMap, OrdSet};
use parking_lot::{Condvar, Mutex, RwLock};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tribune_store::{Table, Watches};
use tribune_types::model::coordinate::CoordinateEntry;
use tribune_types::model::operator::AutopilotSettings;
use tribune_types::model::ops::{
    Deregistration, KvDeleteMode, KvSetMode, Registration, WriteOutcome, WriteRejected,
    WriteRequest,
};
use tribune_types::model::query::PreparedQuery;
use tribune_types::model::{
    CaConfig, CaRoot, Check, ConfigEntry, KvEntry, Node, RaftIndex, Service, Session,
};
use tribune_types::{HealthStatus, SessionId};

pub(crate) const KV: &str = "kv";
pub(crate) const NODES: &str = "nodes";
pub(crate) const SERVICES: &str = "services";
pub(crate) const CHECKS: &str = "checks";
pub(crate) const CONFIG: &str = "config";
pub(crate) const CA: &str = "ca";
pub(crate) const SESSIONS: &str = "sessions";
pub(crate) const COORDINATES: &str = "coordinates";
pub(crate) const QUERIES: &str = "queries";
/// Topic table for per-service-name watches (catalog/health service queries).
pub(crate) const SERVICE_NAME: &str = "service-name";

/// One immutable version of the whole state. Cloning is cheap (persistent maps).
#[derive(Debug, Clone)]
pub(crate) struct Db {
    pub(crate) index: u64,
    pub(crate) kv: Table<KvEntry>,
    pub(crate) nodes: Table<Node>,
    /// Keyed `node \0 service id`.
    pub(crate) services: Table<Service>,
    /// Keyed `node \0 check id`.
    pub(crate) checks: Table<Check>,
    /// Keyed `kind \0 name`.
    pub(crate) config: Table<ConfigEntry>,
    /// Network coordinates, keyed `node \0 segment`.
    pub(crate) coordinates: Table<CoordinateEntry>,
    pub(crate) ca_roots: Vec<CaRoot>,
    pub(crate) ca_index: u64,
    /// Autopilot settings stored by an operator (`None`: the defaults).
    pub(crate) autopilot: Option<AutopilotSettings>,
    /// The Connect CA configuration an operator wrote (`None`: the defaults).
    pub(crate) ca_config: Option<CaConfig>,
    /// Service name → instance keys (`node \0 id`).
    pub(crate) by_service: OrdMap<String, OrdMap<String, ()>>,
    /// Service name → the last index at which anything a health query of it sees changed
    /// (Consul's per-service index, so a change to one service does not wake watchers of others).
    pub(crate) service_index: OrdMap<String, u64>,
    /// Keyed by session ID.
    pub(crate) sessions: Table<Session>,
    /// Prepared queries, keyed by ID.
    pub(crate) queries: Table<PreparedQuery>,
    /// KV key → end of its lock-delay, in the leader-stamped clock (ms since the epoch).
    /// Replicated (unlike Consul's in-memory map) so a new leader honours it too.
    pub(crate) lock_delays: OrdMap<String, u64>,
    /// Derived: node → its sessions (rebuilt on restore).
    pub(crate) sessions_by_node: OrdMap<String, OrdSet<SessionId>>,
    /// Derived: session → the keys whose lock it holds (rebuilt on restore).
    pub(crate) held: OrdMap<SessionId, OrdSet<String>>,
}

impl Default for Db {
    fn default() -> Self {
        Db {
            index: 0,
            // KV keeps tombstones so a prefix's index never goes backwards after deletes.
            kv: Table::new(true),
            nodes: Table::default(),
            services: Table::default(),
            checks: Table::default(),
            config: Table::default(),
            coordinates: Table::default(),
            ca_roots: Vec::new(),
            ca_index: 0,
            autopilot: None,
            ca_config: None,
            by_service: OrdMap::new(),
            service_index: OrdMap::new(),
            sessions: Table::default(),
            queries: Table::default(),
            lock_delays: OrdMap::new(),
            sessions_by_node: OrdMap::new(),
            held: OrdMap::new(),
        }
    }
}

pub(crate) fn pair(a: &str, b: &str) -> String {
    format!("{a}\0{b}")
}

/// The in-memory state machine with watch points for blocking queries.
///
/// **Publication on demand.** Readers get an `Arc` of a whole version of the
/// state (`current`). Publishing a version makes every B-tree node of it shared,
/// so the next write copies the paths it touches (a 64-entry leaf per key, and
/// freeing the old one later): at 512 writing clients that was over a third of
/// every raft thread. So a batch that ends while nobody has read since the last
/// one leaves its state *unpublished*, owned, and the next batch goes on changing
/// it in place. The first reader to find `current` behind publishes the newest
/// state itself; if a batch is being applied at that moment it waits for the
/// batch to end (a reader must see every write acknowledged before it started,
/// and acknowledgements follow `end_batch`). Any read since the last batch makes
/// the next one publish as it ends, as does every 64th batch (`PUBLISH_EVERY`),
/// which bounds what an old published version keeps alive.
#[derive(Debug, Default)]
pub struct StateStore {
    current: RwLock<Arc<Db>>,
    pub(crate) watches: Watches,
    /// Serialises writers; readers never take it.
    write_lock: Mutex<()>,
    /// The batch being applied, between [`StateStore::begin_batch`] and
    /// [`StateStore::end_batch`].
    batch: Mutex<Option<Batch>>,
    /// The newest state when it is ahead of `current`, and whether a batch is
    /// being applied to it.
    newest: Mutex<Newest>,
    /// Signalled when a batch ends, for readers waiting on it.
    batch_ended: Condvar,
    /// Whether `current` is behind the newest applied state.
    stale: AtomicBool,
    /// Whether anything read the state since the last batch ended.
    read_since_batch: AtomicBool,
    /// Restores so far: a blocking query that sees this move returns at once, even
    /// if the index it watches went backwards (Consul's abandon channel).
    restores: AtomicU64,
    /// The length of the last snapshot built in memory, to size the next one's
    /// buffer.
    pub(crate) snapshot_len: std::sync::atomic::AtomicUsize,
}

/// Batches that may end unpublished in a row before one publishes anyway.
pub(crate) const PUBLISH_EVERY: u32 = 64;

/// The newest state while readers have not been given it.
#[derive(Debug, Default)]
struct Newest {
    /// Applied, not yet published, and no batch is changing it.
    unpublished: Option<Db>,
    /// The thread applying a batch, between `begin_batch` and `end_batch`.
    batch_thread: Option<std::thread::ThreadId>,
    /// Batches ended unpublished since the last publication.
    unpublished_batches: u32,
}

/// Commands applied to a working copy that is published once, at the end.
///
/// Why: publishing a new state after every command makes the next command copy the
/// B-tree paths it touches, because the published state still shares them; within
/// a batch the working copy owns its paths after the first write, so later writes
/// change them in place.
#[derive(Debug)]
struct Batch {
    db: Db,
    /// What to wake once the batch is published, with the index that touched it.
    touched: Vec<(&'static str, String, u64)>,
    /// Whether anything was applied (an empty batch publishes nothing).
    changed: bool,
    /// Whether an operator's snapshot replaced the state in this batch.
    restored: bool,
}

/// Keys a write touched, to wake their watchers after the new state is published.
#[derive(Default)]
pub(crate) struct Touched(Vec<(&'static str, String)>);

/// What an apply needs besides the state: the entry's index and the leader's clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct At {
    pub(crate) index: u64,
    /// Leader wall clock at proposal, ms since the epoch (0 for unstamped entries).
    pub(crate) now_ms: u64,
}

impl Touched {
    pub(crate) fn add(&mut self, table: &'static str, key: &str) {
        self.0.push((table, key.to_owned()));
    }
}

impl StateStore {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The newest applied state (see [`StateStore`] on when this publishes it).
    pub(crate) fn snapshot_db(&self) -> Arc<Db> {
        self.read_since_batch.store(true, Ordering::Relaxed);
        if !self.stale.load(Ordering::Acquire) {
            return self.current.read().clone();
        }
        let mut newest = self.newest.lock();
        loop {
            if let Some(db) = newest.unpublished.take() {
                return self.publish(&mut newest, db);
            }
            match newest.batch_thread {
                // The batch's own thread reading would wait for itself; it
                // gets the last published state.
                Some(t) if t != std::thread::current().id() => {
                    self.batch_ended.wait(&mut newest);
                }
                _ => return self.current.read().clone(),
            }
        }
    }

    /// Makes `db` the state readers get. Called with `newest` locked, so no
    /// reader publishes an older one over it.
    fn publish(&self, newest: &mut Newest, db: Db) -> Arc<Db> {
        let db = Arc::new(db);
        *self.current.write() = db.clone();
        newest.unpublished_batches = 0;
        self.stale.store(false, Ordering::Release);
        db
    }

    /// The newest state, owned, to apply changes to: the unpublished one, or a
    /// copy of the published one.
    fn take_newest(&self, newest: &mut Newest) -> Db {
        newest
            .unpublished
            .take()
            .unwrap_or_else(|| (**self.current.read()).clone())
    }

    pub(crate) fn replace(&self, db: Db) {
        // Restores run between raft cycles, never inside a batch, which would
        // otherwise publish its older working copy over the restored state.
        debug_assert!(self.batch.lock().is_none(), "restore during an apply batch");
        let _w = self.write_lock.lock();
        let index = db.index;
        let mut newest = self.newest.lock();
        newest.unpublished = None;
        self.publish(&mut newest, db);
        drop(newest);
        self.restores.fetch_add(1, Ordering::SeqCst);
        // A restore can move any index, including backwards: wake every blocked query
        // so it re-reads and clients see the new index (Consul's abandon channel).
        self.watches.notify_all(index);
    }

    /// The index of the last applied command.
    pub fn last_index(&self) -> u64 {
        self.snapshot_db().index
    }

    /// Applies a decoded command at `index` with no clock stamp (lock-delays cannot
    /// start or be enforced). Tests and tools; the raft state machine uses
    /// [`StateStore::apply_stamped`].
    pub fn apply(&self, index: u64, cmd: &Command) -> Result<WriteOutcome, WriteRejected> {
        self.apply_stamped(index, 0, cmd)
    }

    /// Applies a decoded command at `index`, stamped by the leader with `now_ms`.
    /// Deterministic: the same commands in the same order give the same state and
    /// outcomes on every server.
    pub fn apply_stamped(
        &self,
        index: u64,
        now_ms: u64,
        cmd: &Command,
    ) -> Result<WriteOutcome, WriteRejected> {
        if let Command::Restore { state } = cmd {
            return self.restore_at(index, state);
        }
        let at = At { index, now_ms };
        let mut open = self.batch.lock();
        if let Some(batch) = open.as_mut() {
            // A rejected command must change nothing. The KV writes that dominate
            // the load are decided before they change anything (they never fail);
            // anything else keeps a copy to go back to (cheap to take, but its
            // writes then copy their paths).
            let checkpoint = may_fail_midway(cmd).then(|| batch.db.clone());
            let mut touched = Touched::default();
            let result = apply_command(&mut batch.db, at, cmd, &mut touched);
            if result.is_err() {
                if let Some(before) = checkpoint {
                    batch.db = before;
                }
                touched.0.clear();
            }
            batch.db.index = index;
            batch.changed = true;
            batch
                .touched
                .extend(touched.0.into_iter().map(|(t, k)| (t, k, index)));
            return result;
        }
        drop(open);
        let _w = self.write_lock.lock();
        let mut newest = self.newest.lock();
        let before = self.take_newest(&mut newest);
        let mut db = before.clone();
        let mut touched = Touched::default();
        let result = apply_command(&mut db, at, cmd, &mut touched);
        // A rejected request must change nothing: discard the working copy.
        let mut db = if result.is_ok() {
            db
        } else {
            touched.0.clear();
            before
        };
        db.index = index;
        self.publish(&mut newest, db);
        drop(newest);
        for (table, key) in touched.0 {
            self.watches.notify(table, &key, index);
        }
        result
    }

    /// Starts a batch: until [`StateStore::end_batch`], applied commands change a
    /// working copy that readers do not see. Only the raft thread applies, so
    /// nothing else writes meanwhile.
    pub fn begin_batch(&self) {
        let mut open = self.batch.lock();
        if open.is_none() {
            let mut newest = self.newest.lock();
            let db = self.take_newest(&mut newest);
            newest.batch_thread = Some(std::thread::current().id());
            *open = Some(Batch {
                db,
                touched: Vec::new(),
                changed: false,
                restored: false,
            });
        }
    }

    /// Publishes the batch's state and wakes the watchers of what it touched.
    pub fn end_batch(&self) {
        let Some(batch) = self.batch.lock().take() else {
            return;
        };
        let _w = self.write_lock.lock();
        let index = batch.db.index;
        let mut newest = self.newest.lock();
        newest.batch_thread = None;
        // The batch's state is the newest even if it changed nothing: it may be
        // the unpublished state it started from.
        if self.stale.load(Ordering::Relaxed) || batch.changed {
            newest.unpublished_batches += 1;
            let readers = self.read_since_batch.swap(false, Ordering::Relaxed);
            if readers || batch.restored || newest.unpublished_batches >= PUBLISH_EVERY {
                self.publish(&mut newest, batch.db);
            } else {
                newest.unpublished = Some(batch.db);
                self.stale.store(true, Ordering::Release);
            }
        }
        drop(newest);
        self.batch_ended.notify_all();
        if !batch.changed {
            return;
        }
        if batch.restored {
            self.restores.fetch_add(1, Ordering::SeqCst);
            self.watches.notify_all(index);
        }
        for (table, key, index) in batch.touched {
            self.watches.notify(table, &key, index);
        }
    }

    /// How many restores have replaced the state (see [`StateStore::restores`]'s use
    /// in blocking queries).
    pub fn restores(&self) -> u64 {
        self.restores.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// An operator's snapshot replaces the state as of raft index `index`; bytes
    /// that do not decode change nothing (the same on every server). This is
    /// [`Command::Restore`] applied straight from its state's bytes
    /// (`Command::decode_entry`), which then need not be copied out of the entry.
    pub fn restore_at(&self, index: u64, bytes: &[u8]) -> Result<WriteOutcome, WriteRejected> {
        let mut db = match crate::snapshot::decode_db(bytes) {
            Ok(db) => db,
            Err(e) => {
                // Refused like any other command: nothing changes but the index,
                // which must follow raft's as for every applied entry.
                let mut open = self.batch.lock();
                if let Some(batch) = open.as_mut() {
                    batch.db.index = index;
                    batch.changed = true;
                } else {
                    drop(open);
                    self.advance(index);
                }
                // A 500, as Consul answers a restore that fails.
                return Err(WriteRejected::Failed(format!(
                    "snapshot restore failed: {e}"
                )));
            }
        };
        db.index = index;
        let mut open = self.batch.lock();
        if let Some(batch) = open.as_mut() {
            batch.db = db;
            batch.changed = true;
            batch.restored = true;
            // Everything is woken at publication; earlier keys no longer matter.
            batch.touched.clear();
            return Ok(WriteOutcome::Done);
        }
        drop(open);
        self.replace(db);
        Ok(WriteOutcome::Done)
    }

    /// Whether any KV tombstone is at or below `index` (so reaping would do something).
    pub fn has_tombstones_upto(&self, index: u64) -> bool {
        self.snapshot_db()
            .kv
            .tombstones()
            .any(|(_, t)| t.index <= index)
    }

    /// Records that `index` was applied without a command (raft no-ops, config changes).
    pub fn advance(&self, index: u64) {
        let _w = self.write_lock.lock();
        let mut newest = self.newest.lock();
        let mut db = self.take_newest(&mut newest);
        if index > db.index {
            db.index = index;
            self.publish(&mut newest, db);
        } else if self.stale.load(Ordering::Relaxed) {
            newest.unpublished = Some(db);
        }
    }
}

/// One command against `db`.
fn apply_command(
    db: &mut Db,
    at: At,
    cmd: &Command,
    touched: &mut Touched,
) -> Result<WriteOutcome, WriteRejected> {
    match cmd {
        Command::Request(req) => apply_request(db, at, req, touched),
        Command::ReapTombstones { index: upto } => {
            db.kv.reap_tombstones(*upto);
            Ok(WriteOutcome::Done)
        }
        Command::Ignored { .. } => Ok(WriteOutcome::Done),
        // Replaces the whole state, so `StateStore::apply_stamped` handles it
        // before any working copy is touched.
        Command::Restore { .. } => Err(WriteRejected::Failed(
            "snapshot restore applied to a working copy".into(),
        )),
    }
}

/// Whether applying `cmd` could change something and then fail. Plain KV sets, CAS
/// sets and deletes decide before they write and never fail.
fn may_fail_midway(cmd: &Command) -> bool {
    !matches!(
        cmd,
        Command::Request(
            WriteRequest::KvSet {
                mode: KvSetMode::Set | KvSetMode::Cas(_),
                ..
            } | WriteRequest::KvDelete { .. }
        ) | Command::ReapTombstones { .. }
            | Command::Ignored { .. }
            | Command::Restore { .. }
    )
}

pub(crate) fn apply_request(
    db: &mut Db,
    at: At,
    req: &WriteRequest,
    t: &mut Touched,
) -> Result<WriteOutcome, WriteRejected> {
    let index = at.index;
    match req {
        WriteRequest::KvSet { entry, mode } => kv_set(db, at, entry, mode, t),
        WriteRequest::KvDelete { key, mode } => kv_delete(db, index, key, mode, t),
        WriteRequest::Register(reg) => register(db, at, reg, t),
        WriteRequest::Deregister(dereg) => deregister(db, at, dereg, t),
        WriteRequest::CoordinateBatchUpdate { updates } => {
            coordinate_batch_update(db, index, updates, t);
            Ok(WriteOutcome::Done)
        }
        WriteRequest::SessionCreate(sess) => crate::session::create(db, index, sess, t),
        WriteRequest::SessionDestroy { id } => {
            crate::session::invalidate(db, at, *id, t);
            Ok(WriteOutcome::Done)
        }
        WriteRequest::QuerySet { query, create } => {
            crate::prepared_query::set(db, at, query, *create, t)
        }
        WriteRequest::QueryDelete { id } => crate::prepared_query::delete(db, at, id, t),
        WriteRequest::Txn(ops) => crate::txn::apply(db, at, ops, t)
            .map(WriteOutcome::Txn)
            .map_err(WriteRejected::TxnRolledBack),
        WriteRequest::ConfigSet { entry, cas } => {
            let key = pair(&entry.kind, &entry.name);
            let existing = db.config.get(&key);
            if let Some(cas) = cas {
                let ok = match existing {
                    None => *cas == 0,
                    Some(e) => e.raft.modify_index == *cas,
                };
                if !ok {
                    return Ok(WriteOutcome::NotApplied);
                }
            }
            let create = existing.map_or(index, |e| e.raft.create_index);
            let mut row = entry.clone();
            row.raft = RaftIndex {
                create_index: create,
                modify_index: index,
            };
            db.config.insert(key.clone(), row, index);
            t.add(CONFIG, &key);
            Ok(WriteOutcome::Done)
        }
        WriteRequest::ConfigDelete { kind, name, cas } => {
            let key = pair(kind, name);
            if let Some(cas) = cas {
                match db.config.get(&key) {
                    Some(e) if e.raft.modify_index == *cas => {}
                    _ => return Ok(WriteOutcome::NotApplied),
                }
            }
            if db.config.remove(&key, index).is_some() {
                t.add(CONFIG, &key);
            }
            Ok(WriteOutcome::Done)
        }
        WriteRequest::AutopilotSet { config, cas } => {
            let current = db.autopilot.as_ref().map_or(0, |c| c.raft.modify_index);
            if cas.is_some_and(|cas| cas != current) {
                return Ok(WriteOutcome::NotApplied);
            }
            let mut config = config.clone();
            config.raft.create_index = db.autopilot.as_ref().map_or(index, |c| c.raft.create_index);
            config.raft.modify_index = index;
            db.autopilot = Some(config);
            t.add(CA, "autopilot");
            Ok(WriteOutcome::Done)
        }
        WriteRequest::CaSetConfig { config, cas } => {
            let current = db.ca_config.as_ref().map_or(0, |c| c.raft.modify_index);
            if cas.is_some_and(|cas| cas != current) {
                return Ok(WriteOutcome::NotApplied);
            }
            let mut config = config.clone();
            config.raft.create_index = db.ca_config.as_ref().map_or(index, |c| c.raft.create_index);
            config.raft.modify_index = index;
            db.ca_config = Some(config);
            t.add(CA, "config");
            Ok(WriteOutcome::Done)
        }
        WriteRequest::CaSetRoots { roots } => {
            db.ca_roots = roots
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    if r.raft.create_index == 0 {
                        r.raft.create_index = index;
                    }
                    r.raft.modify_index = index;
                    r
                })
                .collect();
            db.ca_index = index;
            t.add(CA, "");
            Ok(WriteOutcome::Done)
        }
    }
}

/// Writes a KV row, keeping the session → held keys index in step.
pub(crate) fn kv_put(db: &mut Db, row: KvEntry, index: u64, t: &mut Touched) {
    let old = db.kv.get(&row.key).map(|o| o.session);
    kv_put_known(db, row, index, t, old);
}

/// [`kv_put`] for a caller that has just read the key: `old` is `None` if it had
/// no row, else the session holding the row it had.
fn kv_put_known(
    db: &mut Db,
    row: KvEntry,
    index: u64,
    t: &mut Touched,
    old: Option<Option<SessionId>>,
) {
    let key = row.key.clone();
    let new_holder = row.session;
    db.kv.insert_known(key.clone(), row, index, old.is_some());
    let old_holder = old.flatten();
    if old_holder != new_holder {
        if let Some(s) = old_holder {
            unhold(db, s, &key);
        }
        if let Some(s) = new_holder {
            db.held.entry(s).or_default().insert(key.clone());
        }
    }
    t.add(KV, &key);
}

/// Deletes a KV row (leaving a tombstone), keeping the held-keys index in step.
pub(crate) fn kv_del(db: &mut Db, key: &str, index: u64, t: &mut Touched) -> bool {
    match db.kv.remove(key, index) {
        Some(old) => {
            if let Some(s) = old.session {
                unhold(db, s, key);
            }
            t.add(KV, key);
            true
        }
        None => false,
    }
}

fn unhold(db: &mut Db, session: SessionId, key: &str) {
    let now_empty = db.held.get_mut(&session).is_some_and(|keys| {
        keys.remove(key);
        keys.is_empty()
    });
    if now_empty {
        db.held.remove(&session);
    }
}

fn kv_set(
    db: &mut Db,
    at: At,
    entry: &KvEntry,
    mode: &KvSetMode,
    t: &mut Touched,
) -> Result<WriteOutcome, WriteRejected> {
    let index = at.index;
    // Only what the new row keeps of the old one (not a copy of its value).
    let existing = db
        .kv
        .get(&entry.key)
        .map(|e| (e.lock_index, e.session, e.raft));
    let mut row = KvEntry {
        key: entry.key.clone(),
        value: entry.value.clone(),
        flags: entry.flags,
        lock_index: existing.map_or(0, |(lock_index, _, _)| lock_index),
        session: existing.and_then(|(_, session, _)| session),
        raft: RaftIndex {
            create_index: existing.map_or(index, |(_, _, raft)| raft.create_index),
            modify_index: index,
        },
    };
    match mode {
        KvSetMode::Set => {}
        KvSetMode::Cas(cas) => {
            let ok = match existing {
                None => *cas == 0,
                Some((_, _, raft)) => *cas != 0 && raft.modify_index == *cas,
            };
            if !ok {
                return Ok(WriteOutcome::NotApplied);
            }
        }
        KvSetMode::Acquire(session) => {
            return crate::session::acquire(db, at, entry, *session, t);
        }
        KvSetMode::Release(session) => {
            return Ok(crate::session::release(db, index, entry, *session, t));
        }
    }
    row.raft.modify_index = index;
    let old_holder = existing.map(|(_, session, _)| session);
    kv_put_known(db, row, index, t, old_holder);
    Ok(WriteOutcome::Done)
}

pub(crate) fn kv_delete(
    db: &mut Db,
    index: u64,
    key: &str,
    mode: &KvDeleteMode,
    t: &mut Touched,
) -> Result<WriteOutcome, WriteRejected> {
    match mode {
        KvDeleteMode::Key => {
            kv_del(db, key, index, t);
        }
        KvDeleteMode::Cas(cas) => match db.kv.get(key) {
            Some(e) if *cas != 0 && e.raft.modify_index == *cas => {
                kv_del(db, key, index, t);
            }
            _ => return Ok(WriteOutcome::NotApplied),
        },
        KvDeleteMode::Tree => {
            let keys: Vec<String> = db.kv.prefix(key).map(|(k, _)| k.to_owned()).collect();
            for k in keys {
                kv_del(db, &k, index, t);
            }
        }
    }
    Ok(WriteOutcome::Done)
}

/// Bumps the per-service index of every service on `node` (node-level changes are
/// visible in every health query of those services).
fn bump_services_on_node(db: &mut Db, node: &str, index: u64, t: &mut Touched) {
    let prefix = pair(node, "");
    let names: Vec<String> = db
        .services
        .prefix(&prefix)
        .map(|(_, s)| s.service.clone())
        .collect();
    for name in names {
        bump_service(db, &name, index, t);
    }
}

fn bump_service(db: &mut Db, name: &str, index: u64, t: &mut Touched) {
    db.service_index.insert(name.to_owned(), index);
    t.add(SERVICE_NAME, name);
}

pub(crate) fn register(
    db: &mut Db,
    at: At,
    reg: &Registration,
    t: &mut Touched,
) -> Result<WriteOutcome, WriteRejected> {
    let index = at.index;
    let node_name = reg.node.node.as_str().to_owned();
    if node_name.is_empty() {
        return Err(WriteRejected::BadRequest("Must provide node".into()));
    }
    // NUL separates the parts of composite keys (`node \0 id`); a name containing one
    // could alias another node's rows.
    let ids = std::iter::once(node_name.as_str())
        .chain(reg.service.iter().map(|s| s.id.as_str()))
        .chain(reg.checks.iter().map(|c| c.check_id.as_str()));
    for id in ids {
        if id.contains('\0') {
            return Err(WriteRejected::BadRequest(format!(
                "Invalid name {id:?}: contains a NUL byte"
            )));
        }
    }
    let existing_node = db.nodes.get(&node_name).cloned();
    if existing_node.is_none() || !reg.skip_node_update {
        // A missing address is rejected at the rim unless SkipNodeUpdate is set; with it,
        // Consul still creates a missing node (address and all as given), which lets
        // registrations arrive in any order.
        let mut row = reg.node.clone();
        if row.address.is_empty() {
            if let Some(e) = &existing_node {
                row.address = e.address.clone();
            }
        }
        row.raft = existing_node
            .as_ref()
            .map_or(RaftIndex::default(), |e| e.raft);
        if existing_node.as_ref() != Some(&row) {
            row.raft = RaftIndex {
                create_index: existing_node
                    .as_ref()
                    .map_or(index, |e| e.raft.create_index),
                modify_index: index,
            };
            db.nodes.insert(node_name.clone(), row, index);
            t.add(NODES, &node_name);
            bump_services_on_node(db, &node_name, index, t);
        }
    }
    if let Some(svc) = &reg.service {
        let mut row = svc.clone();
        row.node = reg.node.node.clone();
        if row.id.as_str().is_empty() {
            row.id = row.service.clone().into();
        }
        if row.service.is_empty() {
            return Err(WriteRejected::BadRequest(
                "Must provide service name".into(),
            ));
        }
        let key = pair(&node_name, row.id.as_str());
        let existing = db.services.get(&key).cloned();
        row.raft = existing.as_ref().map_or(RaftIndex::default(), |e| e.raft);
        if existing.as_ref() != Some(&row) {
            row.raft = RaftIndex {
                create_index: existing.as_ref().map_or(index, |e| e.raft.create_index),
                modify_index: index,
            };
            if let Some(old) = &existing {
                if old.service != row.service {
                    unindex_service(db, &old.service, &key, index, t);
                }
            }
            let name = row.service.clone();
            db.by_service
                .entry(name.clone())
                .or_default()
                .insert(key.clone(), ());
            db.services.insert(key.clone(), row.clone(), index);
            t.add(SERVICES, &key);
            bump_service(db, &name, index, t);
            refresh_service_checks(db, &row, index, t);
        }
    }
    for check in &reg.checks {
        let mut row = check.clone();
        row.node = reg.node.node.clone();
        if row.check_id.as_str().is_empty() {
            row.check_id = row.name.clone().into();
        }
        if row.check_id.as_str().is_empty() {
            return Err(WriteRejected::BadRequest("Missing check ID".into()));
        }
        if !row.service_id.is_empty() {
            match db.services.get(&pair(&node_name, &row.service_id)) {
                Some(s) => {
                    row.service_name = s.service.clone();
                    row.service_tags = s.tags.clone();
                }
                None => {
                    return Err(WriteRejected::Failed(format!(
                        "Unknown service ID '{}' for check ID '{}'",
                        row.service_id, row.check_id
                    )))
                }
            }
        } else {
            row.service_name.clear();
            row.service_tags.clear();
        }
        let key = pair(&node_name, row.check_id.as_str());
        let existing = db.checks.get(&key).cloned();
        row.raft = existing.as_ref().map_or(RaftIndex::default(), |e| e.raft);
        if existing.as_ref() == Some(&row) {
            continue;
        }
        row.raft = RaftIndex {
            create_index: existing.as_ref().map_or(index, |e| e.raft.create_index),
            modify_index: index,
        };
        let service_name = row.service_name.clone();
        let critical = row.status == HealthStatus::Critical;
        let check_id = row.check_id.as_str().to_owned();
        db.checks.insert(key.clone(), row, index);
        t.add(CHECKS, &key);
        // A critical check invalidates every session bound to it (Consul: liveness over
        // safety, so a failed node's locks are released).
        if critical {
            crate::session::invalidate_bound(db, at, &node_name, &check_id, t);
        }
        bump_check_owner(db, &node_name, &service_name, index, t);
        // A check that moved (node-level <-> service, or between services) also changes
        // what its previous owner's health queries see.
        if let Some(old) = existing.filter(|old| old.service_name != service_name) {
            bump_check_owner(db, &node_name, &old.service_name, index, t);
        }
    }
    Ok(WriteOutcome::Done)
}

/// Bumps whatever a check's status feeds: its service, or every service on the node for
/// a node-level check.
fn bump_check_owner(db: &mut Db, node: &str, service_name: &str, index: u64, t: &mut Touched) {
    if service_name.is_empty() {
        bump_services_on_node(db, node, index, t);
    } else {
        bump_service(db, service_name, index, t);
    }
}

/// Keeps the service name and tags copied into a service's checks in step with it.
fn refresh_service_checks(db: &mut Db, svc: &Service, index: u64, t: &mut Touched) {
    let node = svc.node.as_str().to_owned();
    let stale: Vec<String> = db
        .checks
        .prefix(&pair(&node, ""))
        .filter(|(_, c)| {
            c.service_id == svc.id.as_str()
                && (c.service_name != svc.service || c.service_tags != svc.tags)
        })
        .map(|(k, _)| k.to_owned())
        .collect();
    for key in stale {
        if let Some(mut c) = db.checks.get(&key).cloned() {
            c.service_name = svc.service.clone();
            c.service_tags = svc.tags.clone();
            c.raft.modify_index = index;
            db.checks.insert(key.clone(), c, index);
            t.add(CHECKS, &key);
        }
    }
}

fn unindex_service(db: &mut Db, name: &str, key: &str, index: u64, t: &mut Touched) {
    let now_empty = match db.by_service.get_mut(name) {
        Some(set) => {
            set.remove(key);
            set.is_empty()
        }
        None => false,
    };
    if now_empty {
        // Forget the name entirely; its queries fall back to the services table index,
        // which is already at least this index, so nothing goes backwards.
        db.by_service.remove(name);
        db.service_index.remove(name);
        t.add(SERVICE_NAME, name);
    } else {
        bump_service(db, name, index, t);
    }
}

fn remove_check(db: &mut Db, key: &str, at: At, t: &mut Touched) {
    let index = at.index;
    if let Some(old) = db.checks.remove(key, index) {
        t.add(CHECKS, key);
        crate::session::invalidate_bound(db, at, old.node.as_str(), old.check_id.as_str(), t);
        if old.service_name.is_empty() {
            bump_services_on_node(db, old.node.as_str(), index, t);
        } else {
            bump_service(db, &old.service_name, index, t);
        }
    }
}

fn remove_service(db: &mut Db, node: &str, service_id: &str, at: At, t: &mut Touched) {
    let index = at.index;
    let key = pair(node, service_id);
    let checks: Vec<String> = db
        .checks
        .prefix(&pair(node, ""))
        .filter(|(_, c)| c.service_id == service_id)
        .map(|(k, _)| k.to_owned())
        .collect();
    for ck in checks {
        remove_check(db, &ck, at, t);
    }
    if let Some(old) = db.services.remove(&key, index) {
        t.add(SERVICES, &key);
        unindex_service(db, &old.service, &key, index, t);
    }
}

/// Upserts coordinates, skipping invalid ones and nodes the catalog lacks (an
/// agent may report before it has registered; its next report lands). The table
/// index moves even when every row was skipped, as in Consul.
fn coordinate_batch_update(db: &mut Db, index: u64, updates: &[CoordinateEntry], t: &mut Touched) {
    for u in updates {
        if !u.coord.is_valid() || db.nodes.get(&u.node).is_none() {
            continue;
        }
        db.coordinates
            .insert(pair(&u.node, &u.segment), u.clone(), index);
        t.add(COORDINATES, &u.node);
    }
    db.coordinates.bump(index);
}

pub(crate) fn deregister(
    db: &mut Db,
    at: At,
    d: &Deregistration,
    t: &mut Touched,
) -> Result<WriteOutcome, WriteRejected> {
    let index = at.index;
    let node = d.node.as_str();
    if node.is_empty() {
        return Err(WriteRejected::BadRequest("Must provide node".into()));
    }
    match (&d.service_id, &d.check_id) {
        (Some(sid), _) => remove_service(db, node, sid.as_str(), at, t),
        (None, Some(cid)) => remove_check(db, &pair(node, cid.as_str()), at, t),
        (None, None) => {
            // Services first (they bump service indexes while the node still exists),
            // then node checks, then the node.
            let prefix = pair(node, "");
            let sids: Vec<String> = db
                .services
                .prefix(&prefix)
                .map(|(_, s)| s.id.as_str().to_owned())
                .collect();
            for sid in sids {
                remove_service(db, node, &sid, at, t);
            }
            let cks: Vec<String> = db
                .checks
                .prefix(&prefix)
                .map(|(k, _)| k.to_owned())
                .collect();
            for ck in cks {
                remove_check(db, &ck, at, t);
            }
            if db.nodes.remove(node, index).is_some() {
                t.add(NODES, node);
            }
            // Coordinates are only ever cleaned up with their node (Consul's rule:
            // updates for unknown nodes are dropped, so none can be orphaned).
            let coords: Vec<String> = db
                .coordinates
                .prefix(&prefix)
                .map(|(k, _)| k.to_owned())
                .collect();
            for key in coords {
                db.coordinates.remove(&key, index);
                t.add(COORDINATES, node);
            }
            // Sessions die with their node, whatever checks they are bound to.
            crate::session::invalidate_node(db, at, node, t);
        }
    }
    Ok(WriteOutcome::Done)
}

#[cfg(test)]
mod coordinate_tests {
    use super::*;
    use tribune_types::model::coordinate::Coordinate;
    use tribune_types::model::ops::{ReadRequest, ReadResult};
    use tribune_types::model::Node;

    fn entry(node: &str, x: f64) -> CoordinateEntry {
        let mut coord = Coordinate::origin();
        coord.vec[0] = x;
        CoordinateEntry {
            node: node.into(),
            segment: String::new(),
            coord,
        }
    }

    fn write(s: &StateStore, index: u64, req: WriteRequest) {
        s.apply(index, &Command::Request(req)).unwrap();
    }

    fn coords(s: &StateStore, req: ReadRequest) -> (Vec<CoordinateEntry>, u64) {
        match s.read(&req, None) {
            (ReadResult::Coordinates(c), index) => (c, index),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn updates_land_for_known_nodes_only_and_go_with_the_node() {
        let s = StateStore::new();
        write(
            &s,
            1,
            WriteRequest::Register(Registration {
                node: Node {
                    node: "n1".into(),
                    address: "127.0.0.1".into(),
                    ..Default::default()
                },
                ..Default::default()
            }),
        );
        let mut bad = entry("n1", 0.0);
        bad.coord.height = f64::INFINITY;
        write(
            &s,
            2,
            WriteRequest::CoordinateBatchUpdate {
                updates: vec![entry("n1", 0.25), entry("ghost", 0.5), bad],
            },
        );
        let (all, index) = coords(&s, ReadRequest::Coordinates);
        assert_eq!(all, vec![entry("n1", 0.25)], "unknown node and NaN skipped");
        assert_eq!(index, 2);
        let one = ReadRequest::CoordinateNode { node: "n1".into() };
        assert_eq!(coords(&s, one.clone()).0, vec![entry("n1", 0.25)]);

        // A blocking read of the node's coordinate wakes when its node goes away.
        let mut ws = tribune_store::WatchSet::new();
        s.read(&one, Some(&mut ws));
        write(
            &s,
            3,
            WriteRequest::Deregister(Deregistration {
                node: "n1".into(),
                ..Default::default()
            }),
        );
        assert!(
            ws.wait(std::time::Duration::ZERO).await,
            "deregistration wakes coordinate watchers"
        );
        let (all, index) = coords(&s, ReadRequest::Coordinates);
        assert!(all.is_empty());
        assert_eq!(index, 3);
    }
}

#[cfg(test)]
mod gateway_tests {
    use super::*;
    use tribune_types::model::ops::{GatewayService, ReadRequest, ReadResult};
    use tribune_types::model::{GatewayLink, Node};

    fn register(s: &StateStore, index: u64, name: &str, kind: &str) {
        let reg = Registration {
            node: Node {
                node: "n1".into(),
                address: "127.0.0.1".into(),
                ..Default::default()
            },
            service: Some(Service {
                id: name.into(),
                service: name.into(),
                kind: kind.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        s.apply(index, &Command::Request(WriteRequest::Register(reg)))
            .unwrap();
    }

    fn config(s: &StateStore, index: u64, kind: &str, name: &str, gateway: Vec<GatewayLink>) {
        let entry = ConfigEntry {
            kind: kind.into(),
            name: name.into(),
            body_json: "{}".into(),
            gateway,
            ..Default::default()
        };
        let req = WriteRequest::ConfigSet { entry, cas: None };
        s.apply(index, &Command::Request(req)).unwrap();
    }

    fn link(service: &str) -> GatewayLink {
        GatewayLink {
            service: service.into(),
            ..Default::default()
        }
    }

    #[test]
    fn wildcards_expand_to_typical_services_not_named_and_not_consul() {
        let s = StateStore::new();
        for (i, (name, kind)) in [
            ("redis", ""),
            ("api", ""),
            ("consul", ""),
            ("api-sidecar-proxy", "connect-proxy"),
            ("ing", "ingress-gateway"),
        ]
        .into_iter()
        .enumerate()
        {
            register(&s, i as u64 + 1, name, kind);
        }
        let named = GatewayLink {
            sni: "named".into(),
            ..link("api")
        };
        let wild = GatewayLink {
            sni: "wild".into(),
            ..link("*")
        };
        config(&s, 10, "terminating-gateway", "term", vec![wild, named]);
        let (res, index) = s.read(
            &ReadRequest::GatewayServices {
                gateway: "term".into(),
            },
            None,
        );
        let ReadResult::GatewayServices(rows) = res else {
            panic!("{res:?}")
        };
        let got: Vec<(&str, &str, bool)> = rows
            .iter()
            .map(|g: &GatewayService| {
                (
                    g.link.service.as_str(),
                    g.link.sni.as_str(),
                    g.from_wildcard,
                )
            })
            .collect();
        assert_eq!(got, [("api", "named", false), ("redis", "wild", true)]);
        assert_eq!(index, 10);

        // Health of ingress gateways routing to a service: only gateway instances.
        let ing = GatewayLink {
            port: 8888,
            protocol: "tcp".into(),
            ..link("api")
        };
        config(&s, 11, "ingress-gateway", "ing", vec![ing]);
        let health = |service: &str| match s.read(
            &ReadRequest::HealthIngress {
                service: service.into(),
            },
            None,
        ) {
            (ReadResult::Health(entries), _) => entries
                .iter()
                .map(|e| e.service.service.clone())
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(health("api"), ["ing"]);
        assert!(health("redis").is_empty());
    }
}

#[cfg(test)]
mod publication_tests {
    //! Publication on demand (see [`StateStore`]): readers always see every batch
    //! that ended before they read, however the state was (not) published.

    use super::*;

    fn set(key: &str) -> Command {
        Command::Request(WriteRequest::kv_set(key, b"v".to_vec()))
    }

    fn batch(s: &StateStore, index: u64, key: &str) {
        s.begin_batch();
        s.apply(index, &set(key)).unwrap();
        s.end_batch();
    }

    #[test]
    fn a_batch_nobody_read_after_stays_unpublished_until_a_read() {
        let s = StateStore::new();
        batch(&s, 1, "a");
        batch(&s, 2, "b");
        assert!(
            s.stale.load(Ordering::Relaxed),
            "no reader: nothing published"
        );
        assert_eq!(s.current.read().index, 0);
        let db = s.snapshot_db();
        assert_eq!(db.index, 2);
        assert!(db.kv.get("a").is_some() && db.kv.get("b").is_some());
        assert!(!s.stale.load(Ordering::Relaxed));
        // That read makes the next batch publish as it ends.
        batch(&s, 3, "c");
        assert!(!s.stale.load(Ordering::Relaxed));
        assert_eq!(s.current.read().index, 3);
    }

    #[test]
    fn a_reader_during_a_batch_waits_for_it_when_the_newest_state_is_in_it() {
        let s = Arc::new(StateStore::new());
        batch(&s, 1, "a");
        s.begin_batch();
        s.apply(2, &set("b")).unwrap();
        // The state with `a` is inside the open batch: the reader cannot return
        // before the batch ends, so it sees `b` too.
        let reader = {
            let s = s.clone();
            std::thread::spawn(move || s.snapshot_db())
        };
        // The batch's own thread is not blocked by its own batch.
        assert_eq!(s.snapshot_db().index, 0);
        s.end_batch();
        let db = reader.join().unwrap();
        assert_eq!(db.index, 2);
        assert!(db.kv.get("a").is_some() && db.kv.get("b").is_some());
    }

    #[test]
    fn a_reader_during_a_batch_gets_the_published_state_when_it_is_the_newest() {
        let s = StateStore::new();
        batch(&s, 1, "a");
        assert_eq!(s.snapshot_db().index, 1);
        s.begin_batch();
        s.apply(2, &set("b")).unwrap();
        let reader = std::thread::scope(|scope| scope.spawn(|| s.snapshot_db()).join().unwrap());
        assert_eq!(reader.index, 1, "nothing newer was acknowledged");
        s.end_batch();
    }

    #[test]
    fn unpublished_batches_publish_every_so_often() {
        let s = StateStore::new();
        for i in 1..u64::from(PUBLISH_EVERY) {
            batch(&s, i, &format!("k{i}"));
        }
        assert_eq!(s.current.read().index, 0);
        let last = u64::from(PUBLISH_EVERY);
        batch(&s, last, "last");
        assert_eq!(s.current.read().index, last);
        assert!(!s.stale.load(Ordering::Relaxed));
    }

    #[test]
    fn writes_outside_batches_and_advances_start_from_the_unpublished_state() {
        let s = StateStore::new();
        batch(&s, 1, "a");
        s.advance(2);
        s.apply(3, &set("b")).unwrap();
        let db = s.snapshot_db();
        assert_eq!(db.index, 3);
        assert!(db.kv.get("a").is_some() && db.kv.get("b").is_some());
        // An empty batch over an unpublished state keeps it.
        batch(&s, 4, "c");
        s.begin_batch();
        s.end_batch();
        assert_eq!(s.last_index(), 4);
        assert!(s.snapshot_db().kv.get("c").is_some());
    }
}
