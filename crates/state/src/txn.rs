//! Transactions (`PUT /v1/txn`): every operation runs through the same functions as its
//! single-operation endpoint, against one working copy of the state; any failure
//! discards the copy (the caller publishes nothing), so a transaction is one raft entry
//! that applies entirely or not at all. Errors carry Consul's texts.

use crate::db::{deregister, kv_delete, pair, register, At, Db, Touched};
use crate::session::{try_acquire, try_release, AcquireRefused};
use tribune_types::model::ops::{
    CatalogVerb, Deregistration, KvDeleteMode, KvSetMode, KvVerb, Registration, TxnError, TxnOp,
    TxnResult, WriteOutcome, WriteRequest,
};
use tribune_types::model::{Check, KvEntry, Node, Service};
use tribune_types::NodeName;

/// Runs `ops` in order on `db`. On any error the caller must discard `db`; every
/// operation still runs so the client hears about each failing one (as Consul does).
pub(crate) fn apply(
    db: &mut Db,
    at: At,
    ops: &[TxnOp],
    t: &mut Touched,
) -> Result<Vec<TxnResult>, Vec<TxnError>> {
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (op_index, op) in ops.iter().enumerate() {
        match run(db, at, op, t) {
            Ok(mut r) => results.append(&mut r),
            Err(what) => errors.push(TxnError { op_index, what }),
        }
    }
    if errors.is_empty() {
        Ok(results)
    } else {
        Err(errors)
    }
}

/// Go's `%q` for the strings in Consul's messages.
fn q(s: &str) -> String {
    format!("{s:?}")
}

fn blank(mut e: KvEntry) -> KvEntry {
    e.value.clear();
    e
}

fn run(db: &mut Db, at: At, op: &TxnOp, t: &mut Touched) -> Result<Vec<TxnResult>, String> {
    match op {
        TxnOp::Kv { verb, entry } => kv(db, at, *verb, entry, t),
        TxnOp::Node { verb, node } => node_op(db, at, *verb, node, t),
        TxnOp::Service {
            verb,
            node,
            service,
        } => service_op(db, at, *verb, node, service, t),
        TxnOp::Check { verb, check } => check_op(db, at, *verb, check, t),
        TxnOp::SessionDelete { id } => {
            if db.sessions.get(&id.to_string()).is_none() {
                return Err("failed to delete session: not found".into());
            }
            // Consul only drops the session row here; invalidating it properly keeps
            // its locks from outliving it.
            crate::session::invalidate(db, at, *id, t);
            Ok(vec![])
        }
    }
}

fn kv_row(db: &Db, key: &str) -> Option<KvEntry> {
    db.kv.get(key).cloned()
}

fn kv(
    db: &mut Db,
    at: At,
    verb: KvVerb,
    entry: &KvEntry,
    t: &mut Touched,
) -> Result<Vec<TxnResult>, String> {
    let key = entry.key.as_str();
    let written = |db: &Db| -> Vec<TxnResult> {
        kv_row(db, key)
            .map(|e| vec![TxnResult::Kv(blank(e))])
            .unwrap_or_default()
    };
    let set = |db: &mut Db, mode: KvSetMode, t: &mut Touched| {
        crate::db::apply_request(
            db,
            at,
            &WriteRequest::KvSet {
                entry: entry.clone(),
                mode,
            },
            t,
        )
    };
    match verb {
        KvVerb::Set => {
            set(db, KvSetMode::Set, t).map_err(|e| e.to_string())?;
            Ok(written(db))
        }
        KvVerb::Cas => match set(db, KvSetMode::Cas(entry.raft.modify_index), t) {
            Ok(WriteOutcome::Done) => Ok(written(db)),
            Ok(_) => Err(format!("failed to set key {}, index is stale", q(key))),
            Err(e) => Err(e.to_string()),
        },
        KvVerb::Lock => {
            let session = entry.session.ok_or("missing session")?;
            match try_acquire(db, at, entry, session, t) {
                Ok(row) => Ok(vec![TxnResult::Kv(blank(row))]),
                Err(AcquireRefused::InvalidSession(msg)) => Err(msg),
                Err(AcquireRefused::Held) => Err(format!(
                    "failed to lock key {}, lock is already held",
                    q(key)
                )),
            }
        }
        KvVerb::Unlock => {
            let session = entry.session.ok_or("missing session")?;
            match try_release(db, at.index, entry, session, t) {
                Some(row) => Ok(vec![TxnResult::Kv(blank(row))]),
                None => Err(format!(
                    "failed to unlock key {}, lock isn't held, or is held by another session",
                    q(key)
                )),
            }
        }
        KvVerb::Get => kv_row(db, key)
            .map(|e| vec![TxnResult::Kv(e)])
            .ok_or_else(|| format!("key {} doesn't exist", q(key))),
        KvVerb::GetOrEmpty => Ok(vec![TxnResult::Kv(kv_row(db, key).unwrap_or_else(|| {
            KvEntry {
                key: key.to_owned(),
                flags: entry.flags,
                ..Default::default()
            }
        }))]),
        KvVerb::GetTree => Ok(db
            .kv
            .prefix(key)
            .map(|(_, e)| TxnResult::Kv(e.clone()))
            .collect()),
        KvVerb::CheckSession => {
            let e = kv_row(db, key)
                .ok_or_else(|| format!("failed to check session, key {} doesn't exist", q(key)))?;
            if e.session != entry.session {
                let show = |s: Option<tribune_types::SessionId>| {
                    q(&s.map(|s| s.to_string()).unwrap_or_default())
                };
                return Err(format!(
                    "failed session check for key {}, current session {} != {}",
                    q(key),
                    show(e.session),
                    show(entry.session)
                ));
            }
            Ok(vec![TxnResult::Kv(blank(e))])
        }
        KvVerb::CheckIndex => {
            let e = kv_row(db, key)
                .ok_or_else(|| format!("failed to check index, key {} doesn't exist", q(key)))?;
            if e.raft.modify_index != entry.raft.modify_index {
                return Err(format!(
                    "failed index check for key {}, current modify index {} != {}",
                    q(key),
                    e.raft.modify_index,
                    entry.raft.modify_index
                ));
            }
            Ok(vec![TxnResult::Kv(blank(e))])
        }
        KvVerb::CheckNotExists => match kv_row(db, key) {
            Some(_) => Err(format!("key {} exists", q(key))),
            None => Ok(vec![]),
        },
        KvVerb::Delete => {
            kv_delete(db, at.index, key, &KvDeleteMode::Key, t).map_err(|e| e.to_string())?;
            Ok(vec![])
        }
        KvVerb::DeleteTree => {
            kv_delete(db, at.index, key, &KvDeleteMode::Tree, t).map_err(|e| e.to_string())?;
            Ok(vec![])
        }
        KvVerb::DeleteCas => {
            // Consul's kvsDeleteCASTxn reports success for a key that is already gone.
            if kv_row(db, key).is_none() {
                return Ok(vec![]);
            }
            match kv_delete(
                db,
                at.index,
                key,
                &KvDeleteMode::Cas(entry.raft.modify_index),
                t,
            ) {
                Ok(WriteOutcome::Done) => Ok(vec![]),
                Ok(_) => Err(format!("failed to delete key {}, index is stale", q(key))),
                Err(e) => Err(e.to_string()),
            }
        }
    }
}

fn node_op(
    db: &mut Db,
    at: At,
    verb: CatalogVerb,
    node: &Node,
    t: &mut Touched,
) -> Result<Vec<TxnResult>, String> {
    let name = node.node.as_str();
    let current = |db: &Db| db.nodes.get(name).cloned();
    let stale = |what: &str| format!("failed to {what} node {}, index is stale", q(name));
    match verb {
        CatalogVerb::Get => current(db)
            .map(|n| vec![TxnResult::Node(n)])
            .ok_or_else(|| format!("node {} doesn't exist", q(name))),
        CatalogVerb::Set | CatalogVerb::Cas => {
            if verb == CatalogVerb::Cas {
                let idx = current(db).map_or(0, |n| n.raft.modify_index);
                if idx != node.raft.modify_index {
                    return Err(stale("set"));
                }
            }
            let reg = Registration {
                node: node.clone(),
                ..Default::default()
            };
            register(db, at, &reg, t).map_err(|e| e.to_string())?;
            Ok(current(db).map(TxnResult::Node).into_iter().collect())
        }
        CatalogVerb::Delete | CatalogVerb::DeleteCas => {
            if verb == CatalogVerb::DeleteCas
                && current(db).map(|n| n.raft.modify_index) != Some(node.raft.modify_index)
            {
                return Err(stale("delete"));
            }
            let d = Deregistration {
                node: node.node.clone(),
                ..Default::default()
            };
            deregister(db, at, &d, t).map_err(|e| e.to_string())?;
            Ok(vec![])
        }
    }
}

fn existing_node(db: &Db, node: &NodeName) -> Result<Node, String> {
    db.nodes
        .get(node.as_str())
        .cloned()
        .ok_or_else(|| "Missing node registration".to_owned())
}

fn service_op(
    db: &mut Db,
    at: At,
    verb: CatalogVerb,
    node: &NodeName,
    svc: &Service,
    t: &mut Touched,
) -> Result<Vec<TxnResult>, String> {
    let id = if svc.id.as_str().is_empty() {
        svc.service.as_str()
    } else {
        svc.id.as_str()
    };
    let key = pair(node.as_str(), id);
    let current = |db: &Db| db.services.get(&key).cloned();
    let on = || format!("service {} on node {}", q(id), q(node.as_str()));
    match verb {
        CatalogVerb::Get => current(db)
            .map(|s| vec![TxnResult::Service(s)])
            .ok_or_else(|| format!("{} doesn't exist", on())),
        CatalogVerb::Set | CatalogVerb::Cas => {
            let n = existing_node(db, node)?;
            if verb == CatalogVerb::Cas {
                let idx = current(db).map_or(0, |s| s.raft.modify_index);
                if idx != svc.raft.modify_index {
                    return Err(format!("failed to set {}, index is stale", on()));
                }
            }
            let reg = Registration {
                node: n,
                service: Some(svc.clone()),
                checks: vec![],
                skip_node_update: true,
            };
            register(db, at, &reg, t).map_err(|e| e.to_string())?;
            Ok(current(db).map(TxnResult::Service).into_iter().collect())
        }
        CatalogVerb::Delete | CatalogVerb::DeleteCas => {
            if verb == CatalogVerb::DeleteCas
                && current(db).map(|s| s.raft.modify_index) != Some(svc.raft.modify_index)
            {
                return Err(format!("failed to delete {}, index is stale", on()));
            }
            let d = Deregistration {
                node: node.clone(),
                service_id: Some(id.into()),
                check_id: None,
            };
            deregister(db, at, &d, t).map_err(|e| e.to_string())?;
            Ok(vec![])
        }
    }
}

fn check_op(
    db: &mut Db,
    at: At,
    verb: CatalogVerb,
    check: &Check,
    t: &mut Touched,
) -> Result<Vec<TxnResult>, String> {
    let node = check.node.as_str();
    let id = check.check_id.as_str();
    let key = pair(node, id);
    let current = |db: &Db| db.checks.get(&key).cloned();
    let on = || format!("check {} on node {}", q(id), q(node));
    match verb {
        CatalogVerb::Get => current(db)
            .map(|c| vec![TxnResult::Check(c)])
            .ok_or_else(|| format!("{} doesn't exist", on())),
        CatalogVerb::Set | CatalogVerb::Cas => {
            let n = existing_node(db, &check.node)?;
            if verb == CatalogVerb::Cas {
                let idx = current(db).map_or(0, |c| c.raft.modify_index);
                if idx != check.raft.modify_index {
                    return Err(format!("failed to set {}, index is stale", on()));
                }
            }
            let reg = Registration {
                node: n,
                service: None,
                checks: vec![check.clone()],
                skip_node_update: true,
            };
            register(db, at, &reg, t).map_err(|e| e.to_string())?;
            Ok(current(db).map(TxnResult::Check).into_iter().collect())
        }
        CatalogVerb::Delete | CatalogVerb::DeleteCas => {
            if verb == CatalogVerb::DeleteCas
                && current(db).map(|c| c.raft.modify_index) != Some(check.raft.modify_index)
            {
                return Err(format!("failed to delete {}, index is stale", on()));
            }
            let d = Deregistration {
                node: check.node.clone(),
                service_id: None,
                check_id: Some(check.check_id.clone()),
            };
            deregister(db, at, &d, t).map_err(|e| e.to_string())?;
            Ok(vec![])
        }
    }
}

/// Runs a read-only transaction against a snapshot; nothing is published.
pub(crate) fn read_only(db: &Db, ops: &[TxnOp]) -> Result<Vec<TxnResult>, Vec<TxnError>> {
    let mut scratch = db.clone();
    let mut t = Touched::default();
    let at = At {
        index: db.index,
        now_ms: 0,
    };
    apply(&mut scratch, at, ops, &mut t)
}
