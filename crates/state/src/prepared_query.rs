//! Prepared queries: the apply rules that need the state (Consul's
//! `preparedQuerySetTxn`), lookup by ID, name or template prefix
//! (`PreparedQueryResolve`), and running a query (`PreparedQuery.Execute` for one
//! datacenter). Templates are in [`template`].
//!
//! A query is run on the server from one snapshot, as Consul runs it, so a client
//! agent, the HTTP API and DNS get the same answer for the same state.

pub(crate) mod template;

use crate::db::{At, Db, Touched, QUERIES};
use rand::seq::SliceRandom;
use tribune_types::model::coordinate::distance_or_inf;
use tribune_types::model::ops::{HealthEntry, WriteOutcome, WriteRejected};
use tribune_types::model::query::{
    is_uuid, PreparedQuery, QueryExecution, QueryOutcome, QuerySource, TEMPLATE_NAME_PREFIX_MATCH,
};
use tribune_types::model::RaftIndex;
use tribune_types::HealthStatus;

/// `POST /v1/query` and `PUT /v1/query/{id}`.
pub(crate) fn set(
    db: &mut Db,
    at: At,
    query: &PreparedQuery,
    create: bool,
    t: &mut Touched,
) -> Result<WriteOutcome, WriteRejected> {
    let failed = |m: String| Err(WriteRejected::Failed(m));
    if query.id.is_empty() {
        return failed("Missing Query ID".into());
    }
    // Checked before proposing too; a server does not take an agent's word
    // for it.
    if let Err(e) = query.check() {
        return failed(format!("Invalid prepared query: {e}"));
    }
    let existing = db.queries.get(&query.id);
    match (create, existing) {
        // The ID is drawn at random before proposing; a clash is astronomically
        // unlikely, and must not silently replace another query.
        (true, Some(_)) => {
            return failed(format!(
                "prepared query ID '{}' is already in use",
                query.id
            ))
        }
        (false, None) => {
            return failed(format!(
                "Cannot modify non-existent prepared query: '{}'",
                query.id
            ))
        }
        _ => {}
    }
    let others = || {
        db.queries
            .iter()
            .map(|(_, q)| q)
            .filter(|q| q.id != query.id)
    };
    if !query.name.is_empty() {
        if others().any(|q| q.name.eq_ignore_ascii_case(&query.name)) {
            return failed(format!(
                "name '{}' aliases an existing query name",
                query.name
            ));
        }
    } else if query.is_template() && others().any(|q| q.name.is_empty() && q.is_template()) {
        return failed("a query template with an empty name already exists".into());
    }
    // A name shaped like an ID would shadow that ID on lookup (its own included).
    if is_uuid(&query.name)
        && db
            .queries
            .iter()
            .any(|(_, q)| q.id.eq_ignore_ascii_case(&query.name))
    {
        return failed(format!(
            "name '{}' aliases an existing query ID",
            query.name
        ));
    }
    if !query.session.is_empty() && db.sessions.get(&query.session).is_none() {
        return failed(format!("invalid session {:?}", query.session));
    }
    if query.is_template() {
        template::Template::compile(query)
            .map_err(|e| WriteRejected::Failed(format!("failed compiling template: {e}")))?;
    }
    let create_index = existing.map_or(at.index, |q| q.raft.create_index);
    let mut row = query.clone();
    row.raft = RaftIndex {
        create_index,
        modify_index: at.index,
    };
    db.queries.insert(row.id.clone(), row, at.index);
    t.add(QUERIES, &query.id);
    Ok(WriteOutcome::Done)
}

/// `DELETE /v1/query/{id}`.
pub(crate) fn delete(
    db: &mut Db,
    at: At,
    id: &str,
    t: &mut Touched,
) -> Result<WriteOutcome, WriteRejected> {
    if db.queries.remove(id, at.index).is_none() {
        return Err(WriteRejected::Failed(format!(
            "Cannot modify non-existent prepared query: '{id}'"
        )));
    }
    t.add(QUERIES, id);
    Ok(WriteOutcome::Done)
}

/// Deletes the queries bound to a session that is going away, in the same entry
/// (Consul's `deleteSessionTxn`).
pub(crate) fn delete_for_session(db: &mut Db, at: At, session: &str, t: &mut Touched) {
    let bound: Vec<String> = db
        .queries
        .iter()
        .filter(|(_, q)| q.session == session)
        .map(|(id, _)| id.to_string())
        .collect();
    for id in bound {
        db.queries.remove(&id, at.index);
        t.add(QUERIES, &id);
    }
}

/// Finds the query `id_or_name` names and renders it if it is a template: by ID,
/// then by name (case-insensitively), then the template with the longest name
/// that prefixes it (the empty-named template matching anything).
pub(crate) fn resolve(
    db: &Db,
    id_or_name: &str,
    source: &QuerySource,
) -> QueryOutcome<PreparedQuery> {
    if id_or_name.is_empty() {
        return QueryOutcome::Refused("Missing Query ID".into());
    }
    // A UUID that names no query may still be a name: fall through.
    if is_uuid(id_or_name) {
        if let Some(q) = db.queries.get(&id_or_name.to_ascii_lowercase()) {
            if q.is_template() {
                return QueryOutcome::Refused(
                    "prepared query templates can only be resolved up by name, not by ID".into(),
                );
            }
            return QueryOutcome::Found(q.clone());
        }
    }
    let lower = id_or_name.to_ascii_lowercase();
    let by_name = db
        .queries
        .iter()
        .map(|(_, q)| q)
        .find(|q| !q.name.is_empty() && q.name.to_ascii_lowercase() == lower);
    let found = by_name.or_else(|| {
        db.queries
            .iter()
            .map(|(_, q)| q)
            .filter(|q| q.is_template() && lower.starts_with(&q.name.to_ascii_lowercase()))
            .max_by_key(|q| q.name.len())
    });
    let Some(query) = found else {
        return QueryOutcome::NotFound;
    };
    if !query.is_template() {
        return QueryOutcome::Found(query.clone());
    }
    let rendered = template::Template::stored(query)
        .and_then(|tpl| tpl.render(id_or_name, &source.agent_segment));
    match rendered {
        Ok(q) => QueryOutcome::Found(q),
        Err(e) => QueryOutcome::Refused(e.to_string()),
    }
}

/// Resolves and runs a query: the service's instances, filtered by health, node
/// and service metadata and tags, shuffled, sorted by distance from the source,
/// limited.
pub(crate) fn execute(
    db: &Db,
    id_or_name: &str,
    source: &QuerySource,
    limit: usize,
    connect: bool,
) -> QueryOutcome<QueryExecution> {
    let query = match resolve(db, id_or_name, source) {
        QueryOutcome::Found(q) => q,
        QueryOutcome::NotFound => return QueryOutcome::NotFound,
        QueryOutcome::Refused(e) => return QueryOutcome::Refused(e),
    };
    let svc = &query.service;
    // No cluster peering: a query of a peer's service finds nothing.
    let mut nodes = if svc.peer.is_empty() {
        crate::query::health_entries_ci(db, &svc.service, connect || svc.connect)
    } else {
        Vec::new()
    };
    let ignored = svc.ignore_check_ids.as_deref().unwrap_or_default();
    nodes.retain(|e| {
        healthy(e, svc.only_passing, ignored)
            && meta_matches(svc.node_meta.as_ref(), &e.node.meta)
            && meta_matches(svc.service_meta.as_ref(), &e.service.meta)
            && tags_match(svc.tags.as_deref().unwrap_or_default(), &e.service.tags)
    });
    nodes.shuffle(&mut rand::thread_rng());
    sort_from(db, &mut nodes, &query, source);
    if limit > 0 {
        nodes.truncate(limit);
    }
    // One datacenter and no peers: there is never another place to fail over to
    // (Consul skips unknown datacenters without counting them).
    QueryOutcome::Found(QueryExecution {
        service: query.service.service,
        nodes,
        dns: query.dns,
        failovers: 0,
    })
}

/// Consul's `FilterIgnore`: a critical check (maintenance included) drops the
/// instance, and with `only_passing` anything not passing does; ignored checks do
/// not count.
fn healthy(entry: &HealthEntry, only_passing: bool, ignored: &[String]) -> bool {
    entry
        .checks
        .iter()
        .filter(|c| !ignored.iter().any(|i| *i == c.check_id.as_str()))
        .all(|c| match c.status {
            HealthStatus::Passing => true,
            HealthStatus::Warning => !only_passing,
            HealthStatus::Critical | HealthStatus::Maintenance => false,
        })
}

fn meta_matches(
    want: Option<&std::collections::BTreeMap<String, String>>,
    have: &std::collections::BTreeMap<String, String>,
) -> bool {
    want.is_none_or(|want| want.iter().all(|(k, v)| have.get(k) == Some(v)))
}

/// Tags compare case-insensitively; `!tag` excludes instances that have it.
fn tags_match(want: &[String], have: &[String]) -> bool {
    let has = |tag: &str| {
        have.iter()
            .any(|h| tribune_types::model::tags_match(h, tag))
    };
    want.iter().all(|w| match w.strip_prefix('!') {
        Some(excluded) => !has(excluded),
        None => has(w),
    })
}

/// Orders `nodes` from the source node (`?near=` over the query's `Near`; `_agent`
/// and `_ip` resolved): by estimated round trip when coordinates are on and the
/// source has one, then the source's own instance first if it is among the first
/// ten (Consul's `sortNodesByDistanceFrom` and the swap after it).
fn sort_from(db: &Db, nodes: &mut [HealthEntry], query: &PreparedQuery, source: &QuerySource) {
    let near = if source.near.is_empty() {
        query.service.near.as_str()
    } else {
        source.near.as_str()
    };
    let node = match near {
        "" => return,
        "_agent" => source.agent_node.clone(),
        "_ip" => match db
            .nodes
            .iter()
            .find(|(_, n)| same_ip(&n.address, &source.ip))
        {
            Some((_, n)) => n.node.as_str().to_owned(),
            None => return,
        },
        other => other.to_owned(),
    };
    if node.is_empty() {
        return;
    }
    let coord = |name: &str| {
        db.coordinates
            .get(&crate::db::pair(name, ""))
            .map(|c| &c.coord)
    };
    if source.use_coordinates {
        if let Some(from) = coord(&node) {
            let dist = |e: &HealthEntry| distance_or_inf(Some(from), coord(e.node.node.as_str()));
            nodes.sort_by(|a, b| dist(a).total_cmp(&dist(b)));
        }
    }
    let first = nodes.len().min(10);
    if let Some(pos) = nodes[..first]
        .iter()
        .position(|e| e.node.node.as_str().eq_ignore_ascii_case(&node))
    {
        nodes.swap(0, pos);
    }
}

/// Whether two addresses are the same IP, however written (an IPv4-mapped IPv6
/// address is its IPv4 address, as Go prints it). Host names never match.
fn same_ip(a: &str, b: &str) -> bool {
    let parse = |s: &str| {
        s.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| ip.to_canonical())
    };
    parse(a).is_some_and(|a| Some(a) == parse(b))
}

/// Whether `kind` is a template type Consul knows (for messages in
/// [`template`]).
pub(crate) fn known_template_kind(kind: &str) -> bool {
    kind == TEMPLATE_NAME_PREFIX_MATCH
}
