//! `/v1/coordinate/*` and `?near=` sorting: Consul's shapes, its 404 with an index
//! for a node without a coordinate, its 500s for bad coordinates, its 401 when
//! coordinates are off.

use crate::support::{request, start};
use reqwest::Method;
use serde_json::{json, Value};
use tribune_http_api::DatacenterCoordinates;
use tribune_types::model::coordinate::{Coordinate, CoordinateEntry};
use tribune_types::model::Node;

fn register(backend: &crate::support::FakeBackend, names: &[&str]) {
    let mut st = backend.state();
    for n in names {
        st.nodes.insert(
            (*n).into(),
            Node {
                node: (*n).into(),
                address: "127.0.0.1".into(),
                ..Default::default()
            },
        );
    }
}

fn coord_at(x: f64) -> Value {
    json!({"Vec": [x, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 0.5, "Adjustment": 0.0, "Height": 0.0001})
}

#[tokio::test]
async fn update_then_read_back_by_node_and_in_the_list() {
    let (backend, base) = start().await;
    register(&backend, &["n1"]);
    let body = json!({"Node": "n1", "Coord": coord_at(0.002)}).to_string();
    let (s, _, b) = request(
        Method::PUT,
        &format!("{base}/v1/coordinate/update"),
        Some(&body),
    )
    .await;
    assert_eq!((s, b.as_str()), (200, ""));

    let (s, h, b) = request(Method::GET, &format!("{base}/v1/coordinate/node/n1"), None).await;
    assert_eq!(s, 200, "{b}");
    assert!(h.contains_key("x-consul-index"));
    let got: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        got,
        json!([{"Node": "n1", "Segment": "", "Coord": coord_at(0.002)}])
    );

    let (s, _, b) = request(Method::GET, &format!("{base}/v1/coordinate/nodes"), None).await;
    assert_eq!(s, 200);
    let list: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let other = format!("{base}/v1/coordinate/nodes?segment=alpha");
    let (s, _, b) = request(Method::GET, &other, None).await;
    assert_eq!(
        (s, b.as_str()),
        (200, "[]"),
        "only the default segment is held"
    );

    // No coordinate: an empty 404 that still carries the index (py-consul and the Go
    // client read it and report "not found").
    let (s, h, b) = request(Method::GET, &format!("{base}/v1/coordinate/node/n2"), None).await;
    assert_eq!((s, b.as_str()), (404, ""));
    assert!(h.contains_key("x-consul-index"));
}

#[tokio::test]
async fn bad_updates_are_refused_and_change_nothing() {
    let (backend, base) = start().await;
    register(&backend, &["n1"]);
    let url = format!("{base}/v1/coordinate/update");
    let short = json!({"Node": "n1", "Coord": {"Vec": [0, 0, 0], "Error": 1.5}}).to_string();
    let (s, _, b) = request(Method::PUT, &url, Some(&short)).await;
    assert_eq!((s, b.as_str()), (500, "incompatible coordinate"));
    let none = json!({"Node": "n1"}).to_string();
    let (s, _, b) = request(Method::PUT, &url, Some(&none)).await;
    assert_eq!((s, b.as_str()), (500, "invalid coordinate"));
    let (s, _, b) = request(Method::PUT, &url, Some("{not json")).await;
    assert_eq!(s, 400);
    assert!(b.starts_with("Request decode failed"), "{b}");
    assert!(backend.state().writes.is_empty());
    let (s, _, _) = request(Method::GET, &format!("{base}/v1/coordinate/update"), None).await;
    assert_eq!(s, 405);
}

#[tokio::test]
async fn near_sorts_by_estimated_round_trip() {
    let (backend, base) = start().await;
    register(&backend, &["a", "b", "c", "d"]);
    for (n, x) in [("a", 0.0), ("b", 0.050), ("c", 0.010)] {
        let body = json!({"Node": n, "Coord": coord_at(x)}).to_string();
        let (s, _, _) = request(
            Method::PUT,
            &format!("{base}/v1/coordinate/update"),
            Some(&body),
        )
        .await;
        assert_eq!(s, 200);
    }
    let names = |b: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(b).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n["Node"].as_str().unwrap().to_owned())
            .collect()
    };
    // From b: c (40 ms), a (50 ms), then d, which has no coordinate.
    let (s, _, b) = request(
        Method::GET,
        &format!("{base}/v1/catalog/nodes?near=b"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(names(&b), ["b", "c", "a", "d"]);
    // The agent's node (node1) has no coordinate: it only comes first.
    register(&backend, &["node1"]);
    let (_, _, b) = request(
        Method::GET,
        &format!("{base}/v1/catalog/nodes?near=_agent"),
        None,
    )
    .await;
    assert_eq!(names(&b)[0], "node1");
}

#[tokio::test]
async fn datacenters_shape_and_disabled_coordinates() {
    let (backend, base) = start().await;
    backend.state().datacenters = vec![DatacenterCoordinates {
        datacenter: "dc1".into(),
        area_id: "WAN".into(),
        coordinates: vec![CoordinateEntry {
            node: "node1".into(),
            segment: String::new(),
            coord: Coordinate::origin(),
        }],
    }];
    let (s, _, b) = request(
        Method::GET,
        &format!("{base}/v1/coordinate/datacenters"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v[0]["Datacenter"], "dc1");
    assert_eq!(v[0]["AreaID"], "WAN");
    assert_eq!(v[0]["Coordinates"][0]["Node"], "node1");
    assert_eq!(v[0]["Coordinates"][0]["Coord"]["Error"], 1.5);

    backend.state().info.disable_coordinates = true;
    for path in ["datacenters", "nodes", "node/node1"] {
        let (s, _, b) = request(Method::GET, &format!("{base}/v1/coordinate/{path}"), None).await;
        assert_eq!(
            (s, b.as_str()),
            (401, "Coordinate support disabled"),
            "{path}"
        );
    }
}
