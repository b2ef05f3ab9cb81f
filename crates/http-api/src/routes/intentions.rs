//! Connect intentions: `/v1/connect/intentions` (list, and the deprecated
//! create), `/exact`, `/match`, `/check` and the deprecated `/{id}`.
//!
//! As in Consul since 1.9, intentions are not a table of their own: each one is a
//! source of the `service-intentions` config entry named after its destination,
//! so `/v1/config` and these endpoints see the same data. A write reads that
//! entry, changes its `Sources` and writes it back with CAS on its ModifyIndex,
//! retrying when another write got in between, so two intention writes for one
//! destination never lose each other; an entry whose last source goes is
//! deleted. Intentions made through the deprecated ID API keep Consul's
//! `LegacyID`, `LegacyMeta`, `LegacyCreateTime` and `LegacyUpdateTime` in their
//! source.
//!
//! Namespaces and partitions are those of Consul's open-source edition: always
//! `default`. With no matching intention, `check` allows (the default of an agent
//! without ACLs), as `/v1/agent/connect/authorize` does.

use super::{apply_filter, bool_reply, mismatch, AppState};
use crate::error::ApiError;
use crate::json_in::{canonical, get_ci};
use crate::params::Params;
use crate::reply;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use tribune_types::model::ops::{
    QueryMeta, QueryOptions, ReadRequest, ReadResult, WriteOutcome, WriteRequest,
};
use tribune_types::model::{intention_target, ConfigEntry};
use tribune_types::utc::UtcDateTime;

const KIND: &str = "service-intentions";
/// Go's zero `time.Time`, what Consul shows for intentions made as config entries.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// CAS attempts before a write that keeps losing races gives up.
const ATTEMPTS: usize = 16;
const NOT_FOUND: &str = "Intention not found";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/connect/intentions", get(list).post(create))
        .route(
            "/v1/connect/intentions/exact",
            get(exact_get).put(exact_put).delete(exact_delete),
        )
        .route("/v1/connect/intentions/match", get(matches))
        .route("/v1/connect/intentions/check", get(check))
        .route(
            "/v1/connect/intentions/{id}",
            get(id_get).put(id_put).delete(id_delete),
        )
}

/// A key of a JSON object, matched as Consul's decoder does (`SourceName`,
/// `source_name`).
fn str_ci<'a>(obj: &'a Map<String, Value>, name: &str) -> &'a str {
    get_ci(obj, name).and_then(Value::as_str).unwrap_or("")
}

fn non_empty(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::String(s) => !s.is_empty(),
        _ => true,
    })
}

/// Consul's precedence of a source/destination pair in the default namespace:
/// exact names outrank `*`, and the destination counts more than the source.
pub(crate) fn precedence(source: &str, destination: &str) -> u64 {
    match (destination != "*", source != "*") {
        (true, true) => 9,
        (true, false) => 8,
        (false, true) => 6,
        (false, false) => 5,
    }
}

/// One intention: a source of a `service-intentions` entry.
#[derive(Debug, Clone)]
pub(crate) struct Intention {
    pub(crate) source: String,
    pub(crate) destination: String,
    /// The source object as stored.
    src: Map<String, Value>,
    /// The enclosing entry's `Meta`.
    entry_meta: Option<Value>,
    create_index: u64,
    modify_index: u64,
}

impl Intention {
    fn legacy_id(&self) -> &str {
        str_ci(&self.src, "LegacyID")
    }

    pub(crate) fn precedence(&self) -> u64 {
        precedence(&self.source, &self.destination)
    }

    /// L7 intentions carry permissions instead of an action.
    pub(crate) fn is_l7(&self) -> bool {
        non_empty(get_ci(&self.src, "Permissions")).is_some()
    }

    /// `allow` or `deny` (lower-cased), empty for an L7 intention.
    pub(crate) fn action(&self) -> String {
        str_ci(&self.src, "Action").to_ascii_lowercase()
    }

    fn matches(&self, source: &str, destination: &str) -> bool {
        (self.source == source || self.source == "*")
            && (self.destination == destination || self.destination == "*")
    }

    /// The intention as Consul's API shows it (`structs.Intention`).
    fn render(&self) -> Value {
        let mut out = Map::new();
        if !self.legacy_id().is_empty() {
            out.insert("ID".into(), self.legacy_id().into());
        }
        let description = str_ci(&self.src, "Description");
        if !description.is_empty() {
            out.insert("Description".into(), description.into());
        }
        out.insert("SourceNS".into(), "default".into());
        out.insert("SourceName".into(), self.source.clone().into());
        out.insert("DestinationNS".into(), "default".into());
        out.insert("DestinationName".into(), self.destination.clone().into());
        let source_type = match str_ci(&self.src, "Type") {
            "" => "consul",
            t => t,
        };
        out.insert("SourceType".into(), source_type.into());
        let action = self.action();
        if !action.is_empty() {
            out.insert("Action".into(), action.into());
        }
        if let Some(p) = non_empty(get_ci(&self.src, "Permissions")) {
            out.insert("Permissions".into(), p.clone());
        }
        // A legacy intention keeps its own Meta; the others show the entry's.
        let meta = if self.legacy_id().is_empty() {
            non_empty(self.entry_meta.as_ref())
        } else {
            non_empty(get_ci(&self.src, "LegacyMeta"))
        };
        if let Some(m) = meta {
            out.insert("Meta".into(), m.clone());
        }
        out.insert("Precedence".into(), self.precedence().into());
        for (field, legacy) in [
            ("CreatedAt", "LegacyCreateTime"),
            ("UpdatedAt", "LegacyUpdateTime"),
        ] {
            let at = match str_ci(&self.src, legacy) {
                "" => ZERO_TIME,
                t => t,
            };
            out.insert(field.into(), at.into());
        }
        out.insert("CreateIndex".into(), self.create_index.into());
        out.insert("ModifyIndex".into(), self.modify_index.into());
        Value::Object(out)
    }
}

/// The `Sources` array of an entry's body and the key it sits under. Reads take a
/// malformed field as no sources; writes refuse it (see [`writable_sources`]).
fn sources_of(obj: &Map<String, Value>) -> (String, Vec<Value>) {
    let want = canonical("Sources");
    obj.iter()
        .find(|(k, _)| canonical(k) == want)
        .map(|(k, v)| (k.clone(), v.as_array().cloned().unwrap_or_default()))
        .unwrap_or_else(|| ("Sources".to_owned(), Vec::new()))
}

fn body_of(entry: &ConfigEntry) -> Map<String, Value> {
    parse_body(entry).unwrap_or_default()
}

fn parse_body(entry: &ConfigEntry) -> Option<Map<String, Value>> {
    match serde_json::from_str(&entry.body_json) {
        Ok(Value::Object(o)) => Some(o),
        _ => None,
    }
}

/// [`sources_of`] for a read-modify-write: an entry written through `/v1/config`
/// whose body or `Sources` is not what an intention write can edit is refused, so
/// the write cannot replace what it could not read.
fn writable_sources(
    destination: &str,
    body: &Map<String, Value>,
) -> Result<(String, Vec<Value>), ApiError> {
    let want = canonical("Sources");
    match body.iter().find(|(k, _)| canonical(k) == want) {
        Some((_, v)) if !v.is_array() && !v.is_null() => Err(ApiError::Internal(format!(
            "service-intentions entry {destination:?} has a Sources field that is not a list; \
             fix it through /v1/config first"
        ))),
        _ => Ok(sources_of(body)),
    }
}

/// Every intention in `entries`, in Consul's evaluation order: highest
/// precedence first, then by source and destination name. Sources from a peer
/// or a sameness group, or from another namespace or partition, are not local
/// services and are left out (this API's names are always local and `default`).
pub(crate) fn flatten(entries: &[ConfigEntry]) -> Vec<Intention> {
    let mut out = Vec::new();
    for e in entries {
        let body = body_of(e);
        let entry_meta = get_ci(&body, "Meta").cloned();
        for src in sources_of(&body).1 {
            let Value::Object(src) = src else { continue };
            if !is_local(&src) {
                continue;
            }
            out.push(Intention {
                source: str_ci(&src, "Name").to_owned(),
                destination: e.name.clone(),
                src,
                entry_meta: entry_meta.clone(),
                create_index: e.raft.create_index,
                modify_index: e.raft.modify_index,
            });
        }
    }
    sort(&mut out);
    out
}

fn sort(ixns: &mut [Intention]) {
    ixns.sort_by(|a, b| {
        b.precedence()
            .cmp(&a.precedence())
            .then_with(|| a.source.cmp(&b.source))
            .then_with(|| a.destination.cmp(&b.destination))
    });
}

/// The intention that decides whether `source` may reach `destination`, if any.
pub(crate) fn decide<'a>(
    ixns: &'a [Intention],
    source: &str,
    destination: &str,
) -> Option<&'a Intention> {
    // `flatten` sorted them by precedence, so the first match wins.
    ixns.iter().find(|i| i.matches(source, destination))
}

/// All intentions, with the meta of the read.
pub(crate) async fn load(
    st: &AppState,
    p: &Params,
) -> Result<(Vec<Intention>, QueryMeta), ApiError> {
    let (res, meta) = st
        .read(
            p,
            ReadRequest::ConfigList {
                kind: KIND.to_owned(),
            },
        )
        .await?;
    let ReadResult::Config(entries) = res else {
        return Err(mismatch("service intentions"));
    };
    Ok((flatten(&entries), meta))
}

/// The intentions that can apply to `destination`: those of its own entry and of
/// the `*` entry, in evaluation order. Point reads, not the whole list:
/// `/v1/agent/connect/authorize` runs this for every new connection a proxy
/// accepts. The first read carries the request's query options (and may block);
/// the `*` entry is read as it is then.
pub(crate) async fn load_for(
    st: &AppState,
    p: &Params,
    destination: &str,
) -> Result<(Vec<Intention>, QueryMeta), ApiError> {
    let get = |name: &str| ReadRequest::ConfigGet {
        kind: KIND.to_owned(),
        name: name.to_owned(),
    };
    let (res, meta) = st.read(p, get(destination)).await?;
    let ReadResult::Config(mut entries) = res else {
        return Err(mismatch("service intentions"));
    };
    if destination != "*" {
        let (res, _) = st.backend.read(get("*"), QueryOptions::default()).await?;
        let ReadResult::Config(wild) = res else {
            return Err(mismatch("service intentions"));
        };
        entries.extend(wild);
    }
    Ok((flatten(&entries), meta))
}

/// [`intention_target`], owned.
fn parse_name(input: &str) -> Result<String, &'static str> {
    intention_target(input).map(str::to_owned)
}

/// A required `source`/`destination` query parameter (exactly one, not empty),
/// parsed as a name.
fn name_param(p: &Params, which: &str) -> Result<String, ApiError> {
    let raw = match p.all(which).as_slice() {
        [one] if !one.is_empty() => *one,
        _ => {
            return Err(ApiError::Internal(format!(
                "required query parameter '{which}' not set"
            )))
        }
    };
    parse_name(raw).map_err(|e| ApiError::Internal(format!("{which} {raw:?} is invalid: {e}")))
}

/// Consul's `Intention.Validate` for the fields an intention body carries.
fn validate(source: &str, destination: &str, body: &Map<String, Value>) -> Result<(), ApiError> {
    for (field, name) in [("SourceName", source), ("DestinationName", destination)] {
        if name.is_empty() {
            return Err(ApiError::Internal(format!("{field} must be set")));
        }
        if name != "*" && name.contains('*') {
            return Err(ApiError::Internal(format!(
                "{field}: wildcard character '*' cannot be used with partial values"
            )));
        }
    }
    let has_permissions = non_empty(get_ci(body, "Permissions")).is_some();
    let action = str_ci(body, "Action");
    if has_permissions {
        if !action.is_empty() {
            return Err(ApiError::Internal(
                "Action must not be set if Permissions are set".into(),
            ));
        }
    } else if action != "allow" && action != "deny" {
        return Err(ApiError::Internal(
            "Action must be set to 'allow' or 'deny'".into(),
        ));
    }
    match str_ci(body, "SourceType") {
        "" | "consul" => Ok(()),
        _ => Err(ApiError::Internal(
            "SourceType must be set to 'consul'".into(),
        )),
    }
}

/// The source object an intention body becomes (Consul's `ToSourceIntention`).
fn to_source(source: &str, body: &Map<String, Value>) -> Map<String, Value> {
    let mut src = Map::new();
    src.insert("Name".into(), source.into());
    let action = str_ci(body, "Action");
    if !action.is_empty() {
        src.insert("Action".into(), action.into());
    }
    if let Some(p) = non_empty(get_ci(body, "Permissions")) {
        src.insert("Permissions".into(), p.clone());
    }
    let description = str_ci(body, "Description");
    if !description.is_empty() {
        src.insert("Description".into(), description.into());
    }
    src.insert("Type".into(), "consul".into());
    src
}

fn decode_body(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::bad(
            "Request decode failed: expected a JSON object",
        )),
        Err(e) => Err(ApiError::bad(format!("Request decode failed: {e}"))),
    }
}

/// What a change to one destination's sources decided.
enum Change {
    /// Write the sources back.
    Write,
    /// Nothing to write (deleting what is not there).
    Unchanged,
}

/// Reads the entry for `destination`, lets `change` edit its sources (seeing the
/// entry as read, `None` when there is none), and writes it back with CAS,
/// retrying from the read when another write got in first.
async fn update_sources<F>(st: &AppState, destination: &str, mut change: F) -> Result<(), ApiError>
where
    F: FnMut(Option<&Map<String, Value>>, &mut Vec<Value>) -> Result<Change, ApiError>,
{
    for _ in 0..ATTEMPTS {
        let req = ReadRequest::ConfigGet {
            kind: KIND.to_owned(),
            name: destination.to_owned(),
        };
        let (res, _) = st.backend.read(req, QueryOptions::default()).await?;
        let ReadResult::Config(entries) = res else {
            return Err(mismatch("service intentions"));
        };
        let existing = match entries.first() {
            Some(e) => Some(parse_body(e).ok_or_else(|| {
                ApiError::Internal(format!(
                    "service-intentions entry {destination:?} is not a JSON object; \
                     fix it through /v1/config first"
                ))
            })?),
            None => None,
        };
        let (mut body, cas) = match (entries.first(), &existing) {
            (Some(e), Some(b)) => (b.clone(), e.raft.modify_index),
            _ => {
                let mut body = Map::new();
                body.insert("Kind".into(), KIND.into());
                body.insert("Name".into(), destination.into());
                (body, 0)
            }
        };
        let (key, mut sources) = writable_sources(destination, &body)?;
        if let Change::Unchanged = change(existing.as_ref(), &mut sources)? {
            return Ok(());
        }
        let write = if sources.is_empty() {
            if cas == 0 {
                return Ok(());
            }
            WriteRequest::ConfigDelete {
                kind: KIND.to_owned(),
                name: destination.to_owned(),
                cas: Some(cas),
            }
        } else {
            body.insert(key, Value::Array(sources));
            WriteRequest::ConfigSet {
                entry: ConfigEntry {
                    kind: KIND.to_owned(),
                    name: destination.to_owned(),
                    body_json: Value::Object(body).to_string(),
                    raft: Default::default(),
                    gateway: Vec::new(),
                },
                cas: Some(cas),
            }
        };
        let (outcome, _) = st.backend.write(write).await?;
        if outcome == WriteOutcome::Done {
            return Ok(());
        }
    }
    Err(ApiError::Internal(format!(
        "intention write for {destination:?} kept conflicting with other writes"
    )))
}

/// Whether a source names a service of this cluster's default namespace and
/// partition, the only ones this API's names can refer to (not a peer's, a
/// sameness group, or another namespace's).
fn is_local(src: &Map<String, Value>) -> bool {
    let default = |key: &str| matches!(str_ci(src, key), "" | "default");
    str_ci(src, "Peer").is_empty()
        && str_ci(src, "SamenessGroup").is_empty()
        && default("Namespace")
        && default("Partition")
}

/// A local source's name; `""` for anything else, which never matches a name.
fn source_name(v: &Value) -> &str {
    v.as_object()
        .filter(|o| is_local(o))
        .map_or("", |o| str_ci(o, "Name"))
}

fn source_legacy_id(v: &Value) -> &str {
    v.as_object().map_or("", |o| str_ci(o, "LegacyID"))
}

/// Consul's entry validation for a source `name` about to sit at index `at`
/// (appended, or replacing the source there): no other source may have it.
fn duplicate(sources: &[Value], name: &str, at: usize) -> Result<(), ApiError> {
    let other = sources
        .iter()
        .enumerate()
        .position(|(i, s)| i != at && source_name(s) == name);
    match other {
        // Consul names the later of the two.
        Some(j) => Err(ApiError::Internal(format!(
            "Sources[{}] defines \"default/{name}\" more than once",
            at.max(j)
        ))),
        None => Ok(()),
    }
}

/// Consul's intention RPCs refuse to run while Connect is off on the servers
/// ("Connect must be enabled in order to use this endpoint"). The servers
/// decide, so ask them: the CA configuration read is refused exactly then.
async fn require_connect(st: &AppState) -> Result<(), ApiError> {
    st.backend
        .read(ReadRequest::CaConfig, QueryOptions::default())
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

/// `GET /v1/connect/intentions` (blocking, `filter`).
async fn list(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    require_connect(&st).await?;
    let filter = p.filter()?;
    let (ixns, meta) = load(&st, &p).await?;
    let rows = apply_filter(
        ixns.iter().map(Intention::render).collect(),
        filter.as_ref(),
    )?;
    Ok(reply::json_meta(&rows, &meta, p.pretty()))
}

/// `GET /v1/connect/intentions/exact?source=&destination=`.
async fn exact_get(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    require_connect(&st).await?;
    let source = name_param(&p, "source")?;
    let destination = name_param(&p, "destination")?;
    let (ixns, meta) = load_for(&st, &p, &destination).await?;
    match ixns
        .iter()
        .find(|i| i.source == source && i.destination == destination)
    {
        Some(i) => Ok(reply::json_meta(&i.render(), &meta, p.pretty())),
        None => Ok(not_found(&meta)),
    }
}

fn not_found(meta: &QueryMeta) -> Response {
    let mut resp = (axum::http::StatusCode::NOT_FOUND, NOT_FOUND).into_response();
    reply::add_meta_headers(resp.headers_mut(), meta);
    resp
}

/// `PUT /v1/connect/intentions/exact?source=&destination=`: creates or replaces
/// the intention from `source` to `destination`.
async fn exact_put(
    State(st): State<AppState>,
    p: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_connect(&st).await?;
    st.check_dc(&p)?;
    let source = name_param(&p, "source")?;
    let destination = name_param(&p, "destination")?;
    // Consul's handler clears any `ID` in the body: a legacy intention read and
    // sent back by name is an upsert like any other.
    let body = decode_body(&body)?;
    validate(&source, &destination, &body)?;
    let meta = non_empty(get_ci(&body, "Meta")).cloned();
    let src = to_source(&source, &body);
    update_sources(&st, &destination, |entry, sources| {
        // Meta belongs to the enclosing entry: Consul takes it only when it
        // repeats what that entry already has (checked against the entry this
        // write replaces, so a concurrent change cannot slip between).
        if let Some(meta) = &meta {
            match entry {
                None => return Err(ApiError::Internal("Meta must not be specified".into())),
                Some(e) if get_ci(e, "Meta") != Some(meta) => {
                    return Err(ApiError::Internal(
                        "Meta must not be specified, or should be unchanged during an update."
                            .into(),
                    ))
                }
                Some(_) => {}
            }
        }
        match sources.iter().position(|s| source_name(s) == source) {
            Some(i) => {
                // As Consul's `UpdateOver`: an intention made through the ID API
                // keeps its ID and creation time when replaced by name.
                let mut new = src.clone();
                if let Some(old) = sources[i].as_object() {
                    for key in ["LegacyID", "LegacyCreateTime"] {
                        if let Some(v) = non_empty(get_ci(old, key)) {
                            new.insert(key.into(), v.clone());
                        }
                    }
                }
                sources[i] = Value::Object(new);
            }
            None => sources.push(Value::Object(src.clone())),
        }
        Ok(Change::Write)
    })
    .await?;
    Ok(bool_reply(true, p.pretty()))
}

/// `DELETE /v1/connect/intentions/exact?source=&destination=` (idempotent).
async fn exact_delete(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    require_connect(&st).await?;
    st.check_dc(&p)?;
    let source = name_param(&p, "source")?;
    let destination = name_param(&p, "destination")?;
    update_sources(&st, &destination, |_, sources| {
        let before = sources.len();
        sources.retain(|s| source_name(s) != source);
        Ok(if sources.len() == before {
            Change::Unchanged
        } else {
            Change::Write
        })
    })
    .await?;
    Ok(bool_reply(true, p.pretty()))
}

/// `GET /v1/connect/intentions/match?by=source|destination&name=…` (repeatable).
async fn matches(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    require_connect(&st).await?;
    let by = match p.all("by").as_slice() {
        [one] => *one,
        _ => {
            return Err(ApiError::Internal(
                "required query parameter 'by' not set".into(),
            ))
        }
    };
    let by_source = match by {
        "source" => true,
        "destination" => false,
        _ => {
            return Err(ApiError::Internal(
                "'by' parameter must be one of 'source' or 'destination'".into(),
            ))
        }
    };
    let names = p.all("name");
    if names.is_empty() {
        return Err(ApiError::Internal(
            "required query parameter 'name' not set".into(),
        ));
    }
    let mut parsed = Vec::with_capacity(names.len());
    for n in &names {
        parsed.push(
            parse_name(n).map_err(|e| ApiError::Internal(format!("name {n:?} is invalid: {e}")))?,
        );
    }
    let (ixns, meta) = load(&st, &p).await?;
    let mut out = BTreeMap::new();
    for (raw, name) in names.iter().zip(&parsed) {
        let matched: Vec<Value> = ixns
            .iter()
            .filter(|i| {
                let side = if by_source { &i.source } else { &i.destination };
                side == name || side == "*"
            })
            .map(Intention::render)
            .collect();
        out.insert((*raw).to_owned(), matched);
    }
    Ok(reply::json_meta(&out, &meta, p.pretty()))
}

/// `GET /v1/connect/intentions/check?source=&destination=`: `{"Allowed": …}`.
async fn check(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    require_connect(&st).await?;
    if let Some(t) = p.get("source-type") {
        if t != "consul" {
            return Err(ApiError::Internal(format!("unsupported SourceType: {t:?}")));
        }
    }
    let source = name_param(&p, "source")?;
    let destination = name_param(&p, "destination")?;
    let (ixns, meta) = load_for(&st, &p, &destination).await?;
    // An L7 intention cannot answer an L4 question: Consul counts it as deny.
    let allowed =
        decide(&ixns, &source, &destination).is_none_or(|i| !i.is_l7() && i.action() == "allow");
    Ok(reply::json_meta(
        &json!({ "Allowed": allowed }),
        &meta,
        p.pretty(),
    ))
}

/// `POST /v1/connect/intentions` (deprecated): creates an intention with an ID.
async fn create(State(st): State<AppState>, p: Params, body: Bytes) -> Result<Response, ApiError> {
    require_connect(&st).await?;
    st.check_dc(&p)?;
    let body = decode_body(&body)?;
    if !str_ci(&body, "ID").is_empty() {
        return Err(ApiError::Internal(
            "ID must be empty when creating a new intention".into(),
        ));
    }
    let source = str_ci(&body, "SourceName").to_owned();
    let destination = str_ci(&body, "DestinationName").to_owned();
    validate(&source, &destination, &body)?;
    let id = uuid::Uuid::new_v4().to_string();
    let at = UtcDateTime::now().rfc3339();
    let mut src = to_source(&source, &body);
    src.insert("LegacyID".into(), id.clone().into());
    if let Some(m) = non_empty(get_ci(&body, "Meta")) {
        src.insert("LegacyMeta".into(), m.clone());
    }
    src.insert("LegacyCreateTime".into(), at.clone().into());
    src.insert("LegacyUpdateTime".into(), at.into());
    let src = Value::Object(src);
    update_sources(&st, &destination, |_, sources| {
        duplicate(sources, &source, sources.len())?;
        sources.push(src.clone());
        Ok(Change::Write)
    })
    .await?;
    Ok(reply::json(&json!({ "ID": id }), p.pretty()))
}

/// Consul looks IDs up through a UUID index, which refuses anything else.
fn check_uuid(id: &str) -> Result<(), ApiError> {
    if id.len() != 36 {
        return Err(ApiError::Internal("UUID must be 36 characters".into()));
    }
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(ApiError::Internal(format!("invalid UUID {id:?}")));
    }
    Ok(())
}

/// `GET /v1/connect/intentions/{id}` (deprecated).
async fn id_get(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    require_connect(&st).await?;
    // Consul answers a malformed ID on a read as the client's mistake (400).
    check_uuid(&id).map_err(|e| ApiError::bad(e.to_string()))?;
    let (ixns, meta) = load(&st, &p).await?;
    match ixns.iter().find(|i| i.legacy_id() == id) {
        Some(i) => Ok(reply::json_meta(&i.render(), &meta, p.pretty())),
        None => Ok(not_found(&meta)),
    }
}

/// The destination of the legacy intention `id`, read fresh.
async fn legacy_destination(st: &AppState, id: &str) -> Result<Option<String>, ApiError> {
    let (res, _) = st
        .backend
        .read(
            ReadRequest::ConfigList {
                kind: KIND.to_owned(),
            },
            QueryOptions::default(),
        )
        .await?;
    let ReadResult::Config(entries) = res else {
        return Err(mismatch("service intentions"));
    };
    Ok(flatten(&entries)
        .into_iter()
        .find(|i| i.legacy_id() == id)
        .map(|i| i.destination))
}

/// `PUT /v1/connect/intentions/{id}` (deprecated): replaces the intention, keeping
/// its ID and creation time. Its destination cannot change.
async fn id_put(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_connect(&st).await?;
    st.check_dc(&p)?;
    check_uuid(&id)?;
    let body = decode_body(&body)?;
    let Some(destination) = legacy_destination(&st, &id).await? else {
        return Err(ApiError::Internal(format!(
            "Cannot modify non-existent intention: '{id}'"
        )));
    };
    let source = str_ci(&body, "SourceName").to_owned();
    if str_ci(&body, "DestinationName") != destination {
        return Err(ApiError::Internal(
            "Cannot modify Destination partition/namespace/name for an intention once it exists."
                .into(),
        ));
    }
    validate(&source, &destination, &body)?;
    let mut src = to_source(&source, &body);
    src.insert("LegacyID".into(), id.clone().into());
    if let Some(m) = non_empty(get_ci(&body, "Meta")) {
        src.insert("LegacyMeta".into(), m.clone());
    }
    let updated = UtcDateTime::now().rfc3339();
    update_sources(&st, &destination, |_, sources| {
        let Some(i) = sources.iter().position(|s| source_legacy_id(s) == id) else {
            return Err(ApiError::Internal(format!(
                "Cannot modify non-existent intention: '{id}'"
            )));
        };
        duplicate(sources, &source, i)?;
        let mut new = src.clone();
        let created = sources[i]
            .as_object()
            .map(|o| str_ci(o, "LegacyCreateTime").to_owned())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| updated.clone());
        new.insert("LegacyCreateTime".into(), created.into());
        new.insert("LegacyUpdateTime".into(), updated.clone().into());
        sources[i] = Value::Object(new);
        Ok(Change::Write)
    })
    .await?;
    Ok(reply::json(&json!({ "ID": id }), p.pretty()))
}

/// `DELETE /v1/connect/intentions/{id}` (deprecated).
async fn id_delete(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    require_connect(&st).await?;
    st.check_dc(&p)?;
    check_uuid(&id)?;
    let missing = || ApiError::Internal(format!("Cannot delete non-existent intention: '{id}'"));
    let Some(destination) = legacy_destination(&st, &id).await? else {
        return Err(missing());
    };
    update_sources(&st, &destination, |_, sources| {
        let before = sources.len();
        sources.retain(|s| source_legacy_id(s) != id);
        if sources.len() == before {
            return Err(missing());
        }
        Ok(Change::Write)
    })
    .await?;
    Ok(bool_reply(true, p.pretty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_types::model::RaftIndex;

    fn entry(name: &str, body: Value) -> ConfigEntry {
        ConfigEntry {
            kind: KIND.into(),
            name: name.into(),
            body_json: body.to_string(),
            raft: RaftIndex {
                create_index: 3,
                modify_index: 7,
            },
            gateway: Vec::new(),
        }
    }

    #[test]
    fn flattened_in_precedence_order_and_first_match_decides() {
        let entries = vec![
            entry(
                "*",
                json!({"Kind": KIND, "Name": "*", "Sources": [{"Name": "api", "Action": "allow"}]}),
            ),
            entry(
                "db",
                json!({"kind": KIND, "name": "db", "sources": [
                    {"name": "*", "action": "deny"},
                    {"name": "web", "action": "allow", "description": "web to db"},
                    {"name": "ops", "permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}
                ]}),
            ),
        ];
        let ixns = flatten(&entries);
        let order: Vec<(String, String, u64)> = ixns
            .iter()
            .map(|i| (i.source.clone(), i.destination.clone(), i.precedence()))
            .collect();
        assert_eq!(
            order,
            vec![
                ("ops".into(), "db".into(), 9),
                ("web".into(), "db".into(), 9),
                ("*".into(), "db".into(), 8),
                ("api".into(), "*".into(), 6),
            ]
        );
        assert_eq!(decide(&ixns, "web", "db").unwrap().action(), "allow");
        assert_eq!(decide(&ixns, "api", "db").unwrap().action(), "deny");
        assert_eq!(decide(&ixns, "api", "cache").unwrap().action(), "allow");
        assert!(decide(&ixns, "web", "cache").is_none());
        assert!(decide(&ixns, "ops", "db").unwrap().is_l7());

        let web = ixns[1].render();
        assert_eq!(web["Description"], "web to db");
        assert_eq!(web["SourceType"], "consul");
        assert_eq!(web["CreatedAt"], ZERO_TIME);
        assert_eq!(web["CreateIndex"], 3);
        assert!(web.get("ID").is_none() && web.get("Meta").is_none());
        let ops = ixns[0].render();
        assert!(ops.get("Action").is_none());
        assert_eq!(ops["Permissions"][0]["Action"], "allow");
    }

    #[test]
    fn validation_follows_consul() {
        let body = |v: Value| v.as_object().unwrap().clone();
        assert!(validate("web", "db", &body(json!({"Action": "allow"}))).is_ok());
        let err = |s: &str, d: &str, v: Value| validate(s, d, &body(v)).unwrap_err().to_string();
        assert_eq!(
            err("web", "db", json!({"Action": "maybe"})),
            "Action must be set to 'allow' or 'deny'"
        );
        assert_eq!(
            err("", "db", json!({"Action": "allow"})),
            "SourceName must be set"
        );
        assert_eq!(
            err("we*", "db", json!({"Action": "allow"})),
            "SourceName: wildcard character '*' cannot be used with partial values"
        );
        assert_eq!(
            err(
                "web",
                "db",
                json!({"Action": "allow", "Permissions": [{"Action": "deny"}]})
            ),
            "Action must not be set if Permissions are set"
        );
        assert_eq!(parse_name("default/web").unwrap(), "web");
        assert_eq!(parse_name("part/default/web").unwrap(), "web");
        assert!(parse_name("a/b/c/d").is_err());
        assert!(check_uuid("hello")
            .unwrap_err()
            .to_string()
            .contains("UUID"));
    }
}
