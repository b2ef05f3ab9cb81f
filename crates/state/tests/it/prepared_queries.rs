//! Prepared queries on the state machine: the apply rules, session linkage, lookup
//! order and templates, and what running a query keeps and in which order.

use super::{check, register};
use std::collections::BTreeMap;
use tribune_state::{Command, StateStore};
use tribune_store::WatchSet;
use tribune_types::model::coordinate::{Coordinate, CoordinateEntry};
use tribune_types::model::ops::*;
use tribune_types::model::query::*;
use tribune_types::model::*;
use tribune_types::{HealthStatus, SessionId};

const ID1: &str = "11111111-2222-3333-4444-555555555555";
const ID2: &str = "aaaaaaaa-2222-3333-4444-555555555555";
const ID3: &str = "bbbbbbbb-2222-3333-4444-555555555555";

struct S {
    store: StateStore,
    index: u64,
}

impl S {
    fn new() -> S {
        S {
            store: StateStore::new(),
            index: 0,
        }
    }

    fn apply(&mut self, req: WriteRequest) -> Result<WriteOutcome, WriteRejected> {
        self.index += 1;
        self.store.apply(self.index, &Command::Request(req))
    }

    fn cmd(&mut self, cmd: Command) {
        self.index += 1;
        self.store.apply(self.index, &cmd).unwrap();
    }

    fn set(&mut self, q: PreparedQuery, create: bool) -> Result<WriteOutcome, WriteRejected> {
        self.apply(WriteRequest::QuerySet { query: q, create })
    }

    fn list(&self) -> (Vec<PreparedQuery>, u64) {
        match self.store.read(&ReadRequest::QueryList, None) {
            (ReadResult::Queries(q), i) => (q, i),
            other => panic!("{other:?}"),
        }
    }

    fn run(
        &self,
        id_or_name: &str,
        source: QuerySource,
        limit: usize,
    ) -> QueryOutcome<QueryExecution> {
        let req = ReadRequest::QueryExecute {
            id_or_name: id_or_name.into(),
            source,
            limit,
            connect: false,
        };
        match self.store.read(&req, None).0 {
            ReadResult::QueryExecuted(o) => o,
            other => panic!("{other:?}"),
        }
    }

    fn nodes(&self, id_or_name: &str) -> Vec<String> {
        match self.run(id_or_name, QuerySource::default(), 0) {
            QueryOutcome::Found(run) => {
                let mut names: Vec<String> = run
                    .nodes
                    .iter()
                    .map(|e| e.node.node.as_str().to_owned())
                    .collect();
                names.sort();
                names
            }
            other => panic!("{other:?}"),
        }
    }

    fn explain(&self, id_or_name: &str) -> QueryOutcome<PreparedQuery> {
        let req = ReadRequest::QueryExplain {
            id_or_name: id_or_name.into(),
            source: QuerySource::default(),
        };
        match self.store.read(&req, None).0 {
            ReadResult::QueryExplained(o) => *o,
            other => panic!("{other:?}"),
        }
    }
}

fn query(id: &str, name: &str, service: &str) -> PreparedQuery {
    PreparedQuery {
        id: id.into(),
        name: name.into(),
        service: ServiceQuery {
            service: service.into(),
            ..ServiceQuery::default()
        },
        ..PreparedQuery::default()
    }
}

fn template(id: &str, prefix: &str, service: &str) -> PreparedQuery {
    PreparedQuery {
        template: QueryTemplate {
            kind: TEMPLATE_NAME_PREFIX_MATCH.into(),
            ..QueryTemplate::default()
        },
        ..query(id, prefix, service)
    }
}

fn failed(r: Result<WriteOutcome, WriteRejected>) -> String {
    match r {
        Err(WriteRejected::Failed(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn writes_follow_consuls_rules() {
    let mut s = S::new();
    let mut ws = WatchSet::new();
    s.store.read(&ReadRequest::QueryList, Some(&mut ws));
    assert_eq!(
        s.set(query(ID1, "Redis", "redis"), true),
        Ok(WriteOutcome::Done)
    );
    assert!(
        ws.wait(std::time::Duration::from_secs(5)).await,
        "a list blocking on queries is woken"
    );
    let (list, index) = s.list();
    assert_eq!(index, 1);
    assert_eq!(
        (list[0].raft.create_index, list[0].raft.modify_index),
        (1, 1)
    );

    // Names are unique regardless of case; an update keeps its own name.
    assert_eq!(
        failed(s.set(query(ID2, "redis", "redis"), true)),
        "name 'redis' aliases an existing query name"
    );
    assert_eq!(
        s.set(query(ID1, "redis", "db"), false),
        Ok(WriteOutcome::Done)
    );
    let (list, index) = s.list();
    assert_eq!(
        (list[0].raft.create_index, list[0].raft.modify_index, index),
        (1, 3, 3)
    );
    assert_eq!(list[0].service.service, "db", "replaced whole");

    // Updating or deleting what does not exist is refused.
    assert_eq!(
        failed(s.set(query(ID2, "x", "x"), false)),
        format!("Cannot modify non-existent prepared query: '{ID2}'")
    );
    assert_eq!(
        failed(s.apply(WriteRequest::QueryDelete { id: ID2.into() })),
        format!("Cannot modify non-existent prepared query: '{ID2}'")
    );
    // A name may not shadow an ID.
    assert_eq!(
        failed(s.set(query(ID2, &ID1.to_uppercase(), "x"), true)),
        format!("name '{}' aliases an existing query ID", ID1.to_uppercase())
    );
    // One catch-all template only.
    s.set(template(ID2, "", "${name.full}"), true).unwrap();
    assert_eq!(
        failed(s.set(template(ID3, "", "x"), true)),
        "a query template with an empty name already exists"
    );
    // Templates are compiled when written.
    let mut bad = template(ID3, "t-", "${nope}");
    assert_eq!(
        failed(s.set(bad.clone(), true)),
        "failed compiling template: Bad evaluation for '${nope}' in Service.Service: unknown variable accessed: nope"
    );
    bad.service.service = "x".into();
    bad.template.kind = "other".into();
    assert_eq!(
        failed(s.set(bad, true)),
        "failed compiling template: Bad Template.Type 'other'"
    );
    // The session must exist.
    let mut bound = query(ID3, "", "redis");
    bound.session = "11111111-0000-0000-0000-000000000000".into();
    assert_eq!(
        failed(s.set(bound, true)),
        "invalid session \"11111111-0000-0000-0000-000000000000\""
    );
    // A server checks the definition itself too.
    assert_eq!(
        failed(s.set(query(ID3, "no-service", ""), true)),
        "Invalid prepared query: Must provide a Service name to query"
    );
    // Refused writes changed nothing.
    assert_eq!(s.list().0.len(), 2);

    assert_eq!(
        s.apply(WriteRequest::QueryDelete { id: ID1.into() }),
        Ok(WriteOutcome::Done)
    );
    assert_eq!(s.list().0.len(), 1);
}

#[test]
fn a_query_goes_with_its_session() {
    let mut s = S::new();
    s.cmd(register(
        "n1",
        None,
        vec![check("serfHealth", "", HealthStatus::Passing)],
    ));
    let id = SessionId(uuid::Uuid::from_u128(9));
    s.apply(WriteRequest::SessionCreate(Session {
        id,
        node: "n1".into(),
        node_checks: vec!["serfHealth".into()],
        ..Session::default()
    }))
    .unwrap();
    let mut bound = query(ID1, "", "redis");
    bound.session = id.to_string();
    s.set(bound, true).unwrap();
    s.set(query(ID2, "free", "redis"), true).unwrap();
    assert_eq!(s.list().0.len(), 2);
    // The session's check going critical invalidates it, and the query with it.
    s.cmd(register(
        "n1",
        None,
        vec![check("serfHealth", "", HealthStatus::Critical)],
    ));
    let (list, index) = s.list();
    assert_eq!(
        list.iter().map(|q| q.id.as_str()).collect::<Vec<_>>(),
        [ID2]
    );
    assert_eq!(index, s.index, "the delete moved the table's index");
}

/// Three nodes with `redis`: n1 passing (tags primary, v1), n2 warning (v1),
/// n3 critical (v2), each with node and service meta.
fn catalog(s: &mut S) {
    for (node, tags, status, rack) in [
        ("n1", vec!["primary", "v1"], HealthStatus::Passing, "r1"),
        ("n2", vec!["V1"], HealthStatus::Warning, "r2"),
        ("n3", vec!["v2"], HealthStatus::Critical, "r1"),
    ] {
        s.cmd(Command::Request(WriteRequest::Register(Registration {
            node: Node {
                node: node.into(),
                address: format!("10.0.0.{}", &node[1..]),
                meta: BTreeMap::from([("rack".to_owned(), rack.to_owned())]),
                ..Default::default()
            },
            service: Some(Service {
                id: "redis".into(),
                service: "redis".into(),
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                meta: BTreeMap::from([("version".to_owned(), node.to_owned())]),
                ..Default::default()
            }),
            checks: vec![check(&format!("{node}-check"), "redis", status)],
            skip_node_update: false,
        })));
    }
}

#[test]
fn running_filters_by_health_meta_and_tags() {
    let mut s = S::new();
    catalog(&mut s);
    let mut q = query(ID1, "q", "REDIS");
    s.set(q.clone(), true).unwrap();
    assert_eq!(
        s.nodes("q"),
        ["n1", "n2"],
        "critical dropped, name case-insensitive"
    );
    q.service.only_passing = true;
    s.set(q.clone(), false).unwrap();
    assert_eq!(s.nodes("q"), ["n1"]);
    q.service.only_passing = false;
    q.service.ignore_check_ids = Some(vec!["n3-check".into()]);
    s.set(q.clone(), false).unwrap();
    assert_eq!(s.nodes("q"), ["n1", "n2", "n3"]);
    q.service.tags = Some(vec!["v1".into()]);
    s.set(q.clone(), false).unwrap();
    assert_eq!(
        s.nodes("q"),
        ["n1", "n2"],
        "tags compare case-insensitively"
    );
    q.service.tags = Some(vec!["!primary".into()]);
    s.set(q.clone(), false).unwrap();
    assert_eq!(s.nodes("q"), ["n2", "n3"]);
    q.service.tags = None;
    q.service.node_meta = Some(BTreeMap::from([("rack".to_owned(), "r1".to_owned())]));
    s.set(q.clone(), false).unwrap();
    assert_eq!(s.nodes("q"), ["n1", "n3"]);
    q.service.service_meta = Some(BTreeMap::from([("version".to_owned(), "n3".to_owned())]));
    s.set(q.clone(), false).unwrap();
    assert_eq!(s.nodes(ID1), ["n3"], "by ID too");

    // Limit, and a service nobody runs: found, with no instances.
    q.service.node_meta = None;
    q.service.service_meta = None;
    s.set(q.clone(), false).unwrap();
    let QueryOutcome::Found(run) = s.run("q", QuerySource::default(), 2) else {
        panic!()
    };
    assert_eq!(
        (run.nodes.len(), run.service.as_str(), run.failovers),
        (2, "REDIS", 0)
    );
    s.set(query(ID2, "none", "nothing"), true).unwrap();
    assert_eq!(s.nodes("none"), Vec::<String>::new());
    assert_eq!(
        s.run("missing", QuerySource::default(), 0),
        QueryOutcome::NotFound
    );
}

#[test]
fn the_source_node_comes_first_and_coordinates_sort_the_rest() {
    let mut s = S::new();
    catalog(&mut s);
    let mut q = query(ID1, "q", "redis");
    q.service.ignore_check_ids = Some(vec!["n3-check".into()]);
    q.service.near = "_agent".into();
    s.set(q, true).unwrap();
    let order = |s: &S, source: QuerySource| match s.run("q", source, 0) {
        QueryOutcome::Found(run) => run
            .nodes
            .iter()
            .map(|e| e.node.node.as_str().to_owned())
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    // Without coordinates the agent's node (`_agent`, the query's Near) is moved
    // to the front; the rest stay shuffled.
    for _ in 0..10 {
        let source = QuerySource {
            agent_node: "n2".into(),
            ..QuerySource::default()
        };
        assert_eq!(order(&s, source)[0], "n2");
    }
    // `?near` overrides the query's Near; `_ip` finds the node by address.
    for _ in 0..10 {
        let near_n3 = QuerySource {
            agent_node: "n2".into(),
            near: "n3".into(),
            ..QuerySource::default()
        };
        assert_eq!(order(&s, near_n3)[0], "n3");
        // An IPv4-mapped address is the node's IPv4 address.
        let by_ip = QuerySource {
            near: "_ip".into(),
            ip: "::ffff:10.0.0.1".into(),
            ..QuerySource::default()
        };
        assert_eq!(order(&s, by_ip)[0], "n1");
    }

    // With coordinates: n1 at the origin, n3 near it, n2 far.
    let at = |node: &str, x: f64| CoordinateEntry {
        node: node.into(),
        segment: String::new(),
        coord: Coordinate {
            vec: vec![x, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            ..Coordinate::origin()
        },
    };
    s.apply(WriteRequest::CoordinateBatchUpdate {
        updates: vec![at("n1", 0.0), at("n2", 0.5), at("n3", 0.01)],
    })
    .unwrap();
    for _ in 0..10 {
        let source = QuerySource {
            near: "n1".into(),
            use_coordinates: true,
            ..QuerySource::default()
        };
        assert_eq!(order(&s, source), ["n1", "n3", "n2"]);
    }
}

#[test]
fn names_resolve_before_templates_and_the_longest_prefix_wins() {
    let mut s = S::new();
    catalog(&mut s);
    s.set(template(ID1, "", "${name.full}"), true).unwrap();
    let mut geo = template(ID2, "geo-", "${match(1)}");
    geo.template.regexp = "^geo-(.*)$".into();
    geo.service.tags = Some(vec!["!${name.suffix}".into(), "".into()]);
    geo.template.remove_empty_tags = true;
    s.set(geo, true).unwrap();
    s.set(query(ID3, "geo-exact", "exact"), true).unwrap();

    let rendered = |s: &S, name: &str| match s.explain(name) {
        QueryOutcome::Found(q) => (q.id, q.service.service, q.service.tags),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        rendered(&s, "geo-redis"),
        (
            ID2.to_owned(),
            "redis".to_owned(),
            Some(vec!["!redis".to_owned()])
        )
    );
    assert_eq!(
        rendered(&s, "GEO-EXACT").1,
        "exact",
        "a name beats a template"
    );
    assert_eq!(rendered(&s, "web").1, "web", "the catch-all");
    assert_eq!(rendered(&s, ID3).1, "exact", "by ID");
    // Templates are found by name only.
    assert_eq!(
        s.explain(ID2),
        QueryOutcome::Refused(
            "prepared query templates can only be resolved up by name, not by ID".into()
        )
    );
    // A template runs as its rendering (no instance has the excluded tag).
    assert_eq!(s.nodes("geo-redis"), ["n1", "n2"]);
    assert_eq!(s.nodes("redis"), ["n1", "n2"]);
    // An unknown UUID falls through to names (and here to the catch-all).
    assert_eq!(
        rendered(&s, "cccccccc-2222-3333-4444-555555555555").1,
        "cccccccc-2222-3333-4444-555555555555"
    );
}

#[test]
fn queries_survive_a_snapshot() {
    let mut s = S::new();
    s.set(template(ID1, "t-", "${name.suffix}"), true).unwrap();
    let snap = s.store.snapshot();
    let t = StateStore::new();
    t.restore(&snap).unwrap();
    match t.read(&ReadRequest::QueryList, None) {
        (ReadResult::Queries(q), index) => {
            assert_eq!((q.len(), index), (1, 1));
            assert!(q[0].is_template());
        }
        other => panic!("{other:?}"),
    }
    let contents = StateStore::inspect_snapshot(&snap).unwrap();
    assert!(contents.records.iter().any(|r| r.name == "PreparedQuery"));
}
