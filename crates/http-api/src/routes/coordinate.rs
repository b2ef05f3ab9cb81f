//! Network coordinates: `GET /v1/coordinate/datacenters`, `/nodes`,
//! `/node/{node}` and `PUT /v1/coordinate/update`, plus the `?near=` sorting the
//! catalog and health endpoints share.

use super::{mismatch, AppState};
use crate::error::ApiError;
use crate::json_in::decode;
use crate::params::Params;
use crate::reply;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use tribune_types::model::coordinate::{distance_or_inf, Coordinate, CoordinateEntry};
use tribune_types::model::ops::{Consistency, QueryOptions, ReadRequest, ReadResult, WriteRequest};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/coordinate/datacenters", get(datacenters))
        .route("/v1/coordinate/nodes", get(nodes))
        .route("/v1/coordinate/node/{node}", get(node))
        .route("/v1/coordinate/update", put(update))
}

/// Consul answers every coordinate endpoint this way when `disable_coordinates`
/// is set.
fn check_enabled(st: &AppState) -> Result<(), ApiError> {
    if st.backend.agent_info().disable_coordinates {
        return Err(ApiError::Unauthorized("Coordinate support disabled".into()));
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EntryOut<'a> {
    node: &'a str,
    segment: &'a str,
    coord: &'a Coordinate,
}

impl<'a> From<&'a CoordinateEntry> for EntryOut<'a> {
    fn from(e: &'a CoordinateEntry) -> Self {
        EntryOut {
            node: &e.node,
            segment: &e.segment,
            coord: &e.coord,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DatacenterOut<'a> {
    datacenter: &'a str,
    #[serde(rename = "AreaID")]
    area_id: &'a str,
    coordinates: Vec<EntryOut<'a>>,
}

async fn datacenters(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    check_enabled(&st)?;
    let maps = st.backend.coordinate_datacenters();
    let out: Vec<DatacenterOut> = maps
        .iter()
        .map(|m| DatacenterOut {
            datacenter: &m.datacenter,
            area_id: &m.area_id,
            coordinates: m.coordinates.iter().map(EntryOut::from).collect(),
        })
        .collect();
    Ok(reply::json(&out, p.pretty()))
}

/// `?segment=`: only coordinates of that network segment (Consul's
/// `filterCoordinates`; absent keeps all).
fn by_segment(p: &Params, list: &mut Vec<CoordinateEntry>) {
    if let Some(segment) = p.get("segment") {
        list.retain(|c| c.segment == segment);
    }
}

async fn nodes(State(st): State<AppState>, p: Params) -> Result<Response, ApiError> {
    check_enabled(&st)?;
    let (res, meta) = st.read(&p, ReadRequest::Coordinates).await?;
    let ReadResult::Coordinates(mut list) = res else {
        return Err(mismatch("coordinate nodes"));
    };
    by_segment(&p, &mut list);
    let out: Vec<EntryOut> = list.iter().map(EntryOut::from).collect();
    Ok(reply::json_meta(&out, &meta, p.pretty()))
}

async fn node(
    State(st): State<AppState>,
    Path(node): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    check_enabled(&st)?;
    let req = ReadRequest::CoordinateNode { node: node.into() };
    let (res, meta) = st.read(&p, req).await?;
    let ReadResult::Coordinates(mut list) = res else {
        return Err(mismatch("coordinate node"));
    };
    by_segment(&p, &mut list);
    if list.is_empty() {
        // Consul: an empty 404 that still carries the index, so clients can block.
        let mut resp = reply::json_status(StatusCode::NOT_FOUND, &Value::Null, false);
        *resp.body_mut() = axum::body::Body::empty();
        resp.headers_mut().remove(axum::http::header::CONTENT_TYPE);
        reply::add_meta_headers(resp.headers_mut(), &meta);
        return Ok(resp);
    }
    let out: Vec<EntryOut> = list.iter().map(EntryOut::from).collect();
    Ok(reply::json_meta(&out, &meta, p.pretty()))
}

/// `PUT /v1/coordinate/update` (keys canonicalised by [`decode`]).
#[derive(Deserialize)]
struct UpdateIn {
    #[serde(rename = "node", default)]
    node: String,
    #[serde(rename = "segment", default)]
    segment: String,
    #[serde(rename = "coord")]
    coord: Option<CoordIn>,
}

#[derive(Deserialize)]
struct CoordIn {
    #[serde(rename = "vec", default)]
    vec: Vec<f64>,
    #[serde(rename = "error", default)]
    error: f64,
    #[serde(rename = "adjustment", default)]
    adjustment: f64,
    #[serde(rename = "height", default)]
    height: f64,
}

async fn update(State(st): State<AppState>, p: Params, body: Bytes) -> Result<Response, ApiError> {
    check_enabled(&st)?;
    st.check_dc(&p)?;
    let input: UpdateIn = decode(&body)?;
    // Consul's server refuses these before buffering the update (500).
    let coord = input
        .coord
        .map(|c| Coordinate {
            vec: c.vec,
            error: c.error,
            adjustment: c.adjustment,
            height: c.height,
        })
        .filter(Coordinate::is_valid)
        .ok_or_else(|| ApiError::Internal("invalid coordinate".into()))?;
    if !coord.is_compatible_with(&Coordinate::origin()) {
        return Err(ApiError::Internal("incompatible coordinate".into()));
    }
    st.backend
        .write(WriteRequest::CoordinateBatchUpdate {
            updates: vec![CoordinateEntry {
                node: input.node,
                segment: input.segment,
                coord,
            }],
        })
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// `?near=`: sorts `rows` by estimated round trip from the named node (`_agent`:
/// this agent's), nearest first, those without a coordinate last, stably (Consul's
/// `sortNodesByDistanceFrom`). While the named node has no coordinate yet (a fresh
/// cluster, coordinates off) it only moves that node to the front.
pub(super) async fn sort_near<T>(
    st: &AppState,
    p: &Params,
    rows: &mut [T],
    node_of: impl Fn(&T) -> &str,
) -> Result<(), ApiError> {
    let Some(near) = p.get("near").filter(|n| !n.is_empty()) else {
        return Ok(());
    };
    let info = st.backend.agent_info();
    let target = if near == "_agent" {
        info.node_name
    } else {
        near.to_owned()
    };
    let coords = if info.disable_coordinates || rows.len() < 2 {
        HashMap::new()
    } else {
        // The rows were just read at the caller's consistency; coordinates only
        // order them, so any server's copy will do and this never blocks.
        let opts = QueryOptions {
            consistency: Consistency::Stale,
            ..QueryOptions::default()
        };
        match st.backend.read(ReadRequest::Coordinates, opts).await? {
            (ReadResult::Coordinates(list), _) => list
                .into_iter()
                .filter(|c| c.segment.is_empty())
                .map(|c| (c.node, c.coord))
                .collect(),
            _ => return Err(mismatch("coordinates for ?near")),
        }
    };
    match coords.get(&target) {
        Some(from) => {
            let dist = |r: &T| distance_or_inf(Some(from), coords.get(node_of(r)));
            rows.sort_by(|a, b| dist(a).total_cmp(&dist(b)));
        }
        None => {
            if let Some(pos) = rows.iter().position(|r| node_of(r) == target) {
                rows[..=pos].rotate_right(1);
            }
        }
    }
    Ok(())
}
