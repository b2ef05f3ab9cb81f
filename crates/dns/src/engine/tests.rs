//! Question → answer through the whole pipeline, without sockets: a request is
//! encoded and decoded as a client and hickory-server would, answered from a
//! [`MemLookup`] at a fixed time with a fixed seed, and the response encoded as
//! hickory-server encodes it and decoded again.

use super::*;
use crate::MemLookup;
use hickory_proto::op::Message;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{RData, Record};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tribune_types::model::{Check, Service, ServiceAddress, Weights};
use tribune_types::HealthStatus;

const NOW: u32 = 1_700_000_000;
const SEED: u64 = 7;

use crate::fixtures::{node, service};

fn check(node: &str, service_id: &str, status: HealthStatus) -> Check {
    Check {
        node: node.into(),
        check_id: format!("{node}-{service_id}-check").into(),
        status,
        service_id: service_id.into(),
        ..Check::default()
    }
}

/// Three healthy `web` instances on nodes with meta, a `db` with its own address.
fn catalog() -> MemLookup {
    let mut foo = node("foo", "10.0.0.1");
    foo.meta = BTreeMap::from([
        ("key".to_owned(), "value".to_owned()),
        ("rfc1035-00".to_owned(), "value only".to_owned()),
    ]);
    MemLookup::new("dc1")
        .with_node(foo)
        .with_node(node("bar", "10.0.0.2"))
        .with_node(node("baz", "10.0.0.3"))
        .with_node(node("v6", "2001:db8::6"))
        .with_node(node("ext", "www.example.org"))
        .with_service(Service {
            tags: vec!["v1".into(), "Primary".into()],
            ..service("foo", "web", 8080)
        })
        .with_service(service("bar", "web", 8080))
        .with_service(Service {
            tags: vec!["v2".into(), "tag.with.dots".into()],
            ..service("baz", "web", 8081)
        })
        .with_service(Service {
            address: "192.0.2.10".into(),
            ..service("foo", "db", 5432)
        })
        .with_service(service("v6", "ipv6", 80))
        .with_service(service("ext", "external", 443))
        .with_server(ServerInfo {
            name: "foo".into(),
            addr: "10.0.0.1".parse().unwrap(),
        })
}

use crate::ServerInfo;

struct Harness {
    engine: Engine,
}

struct Reply {
    message: Message,
    size: usize,
}

impl Harness {
    fn new(cfg: DnsConfig, lookup: MemLookup) -> Harness {
        Harness {
            engine: Engine::new(cfg, Arc::new(lookup)),
        }
    }

    fn default_catalog() -> Harness {
        Harness::new(DnsConfig::default(), catalog())
    }

    async fn ask(&self, name: &str, qtype: RecordType) -> Message {
        self.ask_with(name, qtype, Transport::Udp, None, SEED)
            .await
            .message
    }

    async fn ask_with(
        &self,
        name: &str,
        qtype: RecordType,
        transport: Transport,
        edns: Option<Edns>,
        seed: u64,
    ) -> Reply {
        let mut query = Message::query();
        query.metadata.id = 4242;
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some(edns) = edns {
            query.set_edns(edns);
        }
        self.send(query, transport, seed).await
    }

    async fn send(&self, query: Message, transport: Transport, seed: u64) -> Reply {
        let raw = query.to_vec().unwrap();
        let decoded = Message::from_vec(&raw).unwrap();
        let inbound = Inbound {
            metadata: decoded.metadata,
            queries: decoded.queries.clone(),
            edns: decoded.edns.as_ref(),
            transport,
            raw: &raw,
            client: None,
        };
        let response = self.engine.handle(&inbound, NOW, seed).await;
        // hickory-server's limits: the OPT size (or 512) on UDP, 64 KiB on TCP.
        let max = match transport {
            Transport::Udp => response.edns.as_ref().map_or(512, Edns::max_payload),
            Transport::Tcp => u16::MAX,
        };
        let (_, bytes) = response.encode(max, true).unwrap();
        Reply {
            message: Message::from_vec(&bytes).unwrap(),
            size: bytes.len(),
        }
    }
}

fn edns(size: u16) -> Option<Edns> {
    let mut edns = Edns::new();
    edns.set_max_payload(size);
    Some(edns)
}

fn ips(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn txts(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect()
}

fn srvs(records: &[Record]) -> Vec<(u16, u16, u16, String)> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.priority, s.weight, s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect()
}

/// Asserts the response is a negative answer with our SOA in the authority section.
fn assert_soa_authority(m: &Message, zone: &str) {
    assert_eq!(m.authorities.len(), 1, "{m:?}");
    let soa = &m.authorities[0];
    assert_eq!(soa.name.to_ascii(), zone);
    let RData::SOA(data) = &soa.data else {
        panic!("not an SOA: {soa:?}");
    };
    assert_eq!(data.mname.to_ascii(), format!("ns.{zone}"));
    assert_eq!(data.rname.to_ascii(), format!("hostmaster.{zone}"));
    assert_eq!(data.serial, NOW);
    assert_eq!(soa.ttl, 0);
}

#[tokio::test]
async fn node_lookup_any_a_and_txt() {
    let h = Harness::default_catalog();

    let m = h.ask("foo.node.consul.", RecordType::ANY).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert!(!m.metadata.recursion_available);
    assert_eq!(ips(&m.answers), ["10.0.0.1"]);
    assert_eq!(txts(&m.answers), ["key=value", "value only"]);
    assert!(m.additionals.is_empty());

    // An A question gets the meta as additional records.
    let m = h.ask("foo.node.dc1.consul.", RecordType::A).await;
    assert_eq!(ips(&m.answers), ["10.0.0.1"]);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(txts(&m.additionals), ["key=value", "value only"]);

    let m = h.ask("foo.node.dc1.dc.consul.", RecordType::TXT).await;
    assert_eq!(m.answers.len(), 2);
    assert_eq!(txts(&m.answers), ["key=value", "value only"]);

    let quiet = Harness::new(
        DnsConfig {
            enable_additional_node_meta_txt: false,
            ..DnsConfig::default()
        },
        catalog(),
    );
    let m = quiet.ask("foo.node.consul.", RecordType::A).await;
    assert_eq!(m.answers.len(), 1);
    assert!(m.additionals.is_empty());
    // TXT and ANY questions still get the meta.
    let m = quiet.ask("foo.node.consul.", RecordType::TXT).await;
    assert_eq!(m.answers.len(), 2);
}

#[tokio::test]
async fn names_match_case_insensitively_and_echo_the_asked_case() {
    let h = Harness::default_catalog();
    let m = h.ask("fOO.NoDe.Dc1.CoNsUl.", RecordType::A).await;
    assert_eq!(m.queries[0].name().to_ascii(), "fOO.NoDe.Dc1.CoNsUl.");
    assert_eq!(m.answers[0].name.to_ascii(), "fOO.NoDe.Dc1.CoNsUl.");
    assert_eq!(ips(&m.answers), ["10.0.0.1"]);

    let m = h.ask("WEB.Service.CONSUL.", RecordType::A).await;
    assert_eq!(m.answers.len(), 3);
    assert!(m
        .answers
        .iter()
        .all(|r| r.name.to_ascii() == "WEB.Service.CONSUL."));
}

#[tokio::test]
async fn node_negative_answers() {
    let h = Harness::default_catalog();

    let m = h.ask("nofoo.node.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert!(m.answers.is_empty());
    assert_soa_authority(&m, "consul.");

    // The node exists but has no IPv6 address: NODATA.
    let m = h.ask("bar.node.consul.", RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_soa_authority(&m, "consul.");

    let m = h.ask("v6.node.consul.", RecordType::AAAA).await;
    assert_eq!(ips(&m.answers), ["2001:db8::6"]);

    let m = h.ask("bar.node.consul.", RecordType::MX).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_soa_authority(&m, "consul.");
}

#[tokio::test]
async fn a_hostname_address_is_a_cname() {
    let h = Harness::default_catalog();
    let m = h.ask("ext.node.consul.", RecordType::A).await;
    let RData::CNAME(target) = &m.answers[0].data else {
        panic!("{m:?}");
    };
    assert_eq!(target.0.to_ascii(), "www.example.org.");

    let m = h.ask("external.service.consul.", RecordType::A).await;
    assert!(matches!(m.answers[0].data, RData::CNAME(_)));
    let m = h.ask("external.service.consul.", RecordType::SRV).await;
    assert_eq!(srvs(&m.answers), [(1, 1, 443, "www.example.org.".into())]);
    assert!(m.additionals.is_empty());
}

#[tokio::test]
async fn service_a_records_in_random_order() {
    let h = Harness::default_catalog();
    let mut orders = BTreeSet::new();
    for seed in 0..20 {
        let r = h
            .ask_with(
                "web.service.consul.",
                RecordType::A,
                Transport::Udp,
                None,
                seed,
            )
            .await;
        assert_eq!(
            sorted(ips(&r.message.answers)),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        );
        orders.insert(ips(&r.message.answers));
    }
    assert!(orders.len() > 1, "answers are shuffled");

    // Same seed, same answer.
    let a = h.ask("web.service.consul.", RecordType::A).await;
    let b = h.ask("web.service.consul.", RecordType::A).await;
    assert_eq!(a, b);
}

#[tokio::test]
async fn service_srv_records_and_additional_addresses() {
    let h = Harness::default_catalog();
    let m = h.ask("web.service.consul.", RecordType::SRV).await;
    let mut got = srvs(&m.answers);
    got.sort();
    assert_eq!(
        got,
        [
            (1, 1, 8080, "bar.node.dc1.consul.".to_owned()),
            (1, 1, 8080, "foo.node.dc1.consul.".to_owned()),
            (1, 1, 8081, "baz.node.dc1.consul.".to_owned()),
        ]
    );
    // Each target's A record, plus foo's meta under its node name.
    let mut extra: Vec<(String, String)> = m
        .additionals
        .iter()
        .map(|r| (r.name.to_ascii(), format!("{}", r.record_type())))
        .collect();
    extra.sort();
    assert_eq!(
        extra,
        [
            ("bar.node.dc1.consul.".to_owned(), "A".to_owned()),
            ("baz.node.dc1.consul.".to_owned(), "A".to_owned()),
            ("foo.node.dc1.consul.".to_owned(), "A".to_owned()),
            ("foo.node.dc1.consul.".to_owned(), "TXT".to_owned()),
            ("foo.node.dc1.consul.".to_owned(), "TXT".to_owned()),
        ]
    );

    // A service address is published under `.addr`.
    let m = h.ask("db.service.consul.", RecordType::SRV).await;
    assert_eq!(
        srvs(&m.answers),
        [(1, 1, 5432, "c000020a.addr.dc1.consul.".into())]
    );
    assert_eq!(
        m.additionals[0].name.to_ascii(),
        "c000020a.addr.dc1.consul."
    );
    assert_eq!(ips(&m.additionals), ["192.0.2.10"]);
    let m = h.ask("db.service.consul.", RecordType::A).await;
    assert_eq!(ips(&m.answers), ["192.0.2.10"]);

    let m = h.ask("ipv6.service.consul.", RecordType::SRV).await;
    assert_eq!(srvs(&m.answers), [(1, 1, 80, "v6.node.dc1.consul.".into())]);
    assert_eq!(ips(&m.additionals), ["2001:db8::6"]);
}

#[tokio::test]
async fn ipv6_service_address_gets_a_32_digit_addr_target() {
    let lookup = catalog().with_service(Service {
        address: "2607:20:4005:808::200e".into(),
        ..service("foo", "six", 1)
    });
    let h = Harness::new(DnsConfig::default(), lookup);
    let m = h.ask("six.service.consul.", RecordType::SRV).await;
    assert_eq!(
        srvs(&m.answers)[0].3,
        "2607002040050808000000000000200e.addr.dc1.consul."
    );
    assert_eq!(ips(&m.additionals), ["2607:20:4005:808::200e"]);
}

#[tokio::test]
async fn tags_rfc2782_and_legacy_dotted_tags() {
    let h = Harness::default_catalog();
    let count = |m: &Message| m.answers.len();

    let m = h.ask("_web._tcp.service.consul.", RecordType::SRV).await;
    assert_eq!(count(&m), 3, "_tcp is no tag filter");
    let m = h.ask("_web._tcp.consul.", RecordType::SRV).await;
    assert_eq!(count(&m), 3);
    let m = h.ask("_web._v1.service.consul.", RecordType::SRV).await;
    assert_eq!(srvs(&m.answers)[0].3, "foo.node.dc1.consul.");
    let m = h.ask("v2.web.service.consul.", RecordType::A).await;
    assert_eq!(ips(&m.answers), ["10.0.0.3"]);
    // Tags compare case-insensitively.
    let m = h.ask("primary.web.service.consul.", RecordType::A).await;
    assert_eq!(ips(&m.answers), ["10.0.0.1"]);
    let m = h
        .ask("tag.with.dots.web.service.consul.", RecordType::A)
        .await;
    assert_eq!(ips(&m.answers), ["10.0.0.3"]);

    let m = h.ask("nope.web.service.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_soa_authority(&m, "consul.");
}

#[tokio::test]
async fn health_filtering_and_only_passing() {
    let lookup = catalog()
        // foo's web instance has a warning check: kept unless only_passing.
        .with_check(check("foo", "web-8080", HealthStatus::Warning))
        // bar's node is critical: everything on it goes.
        .with_check(check("bar", "", HealthStatus::Critical))
        // baz's instance passes.
        .with_check(check("baz", "web-8081", HealthStatus::Passing));
    let h = Harness::new(DnsConfig::default(), lookup.clone());
    let m = h.ask("web.service.consul.", RecordType::A).await;
    assert_eq!(sorted(ips(&m.answers)), ["10.0.0.1", "10.0.0.3"]);

    let strict = Harness::new(
        DnsConfig {
            only_passing: true,
            ..DnsConfig::default()
        },
        lookup.clone(),
    );
    let m = strict.ask("web.service.consul.", RecordType::A).await;
    assert_eq!(ips(&m.answers), ["10.0.0.3"]);

    // Maintenance counts as critical.
    let h = Harness::new(
        DnsConfig::default(),
        lookup.with_check(check("baz", "web-8081", HealthStatus::Maintenance)),
    );
    let m = h.ask("web.service.consul.", RecordType::A).await;
    assert_eq!(ips(&m.answers), ["10.0.0.1"]);

    // Nothing healthy: NXDOMAIN.
    let h = Harness::new(
        DnsConfig::default(),
        catalog().with_check(check("foo", "db-5432", HealthStatus::Critical)),
    );
    let m = h.ask("db.service.consul.", RecordType::SRV).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_soa_authority(&m, "consul.");
}

#[tokio::test]
async fn srv_weights_follow_health() {
    let lookup = catalog()
        .with_service(Service {
            weights: Weights {
                passing: 10,
                warning: 2,
            },
            ..service("foo", "weighted", 1)
        })
        .with_check(check("foo", "weighted-1", HealthStatus::Warning));
    let h = Harness::new(DnsConfig::default(), lookup);
    let m = h.ask("weighted.service.consul.", RecordType::SRV).await;
    assert_eq!(srvs(&m.answers)[0].1, 2);
}

#[tokio::test]
async fn ttls_from_config() {
    let cfg = DnsConfig {
        node_ttl: Duration::from_secs(10),
        service_ttl: BTreeMap::from([
            ("*".to_owned(), Duration::from_secs(5)),
            ("we*".to_owned(), Duration::from_secs(15)),
            ("db".to_owned(), Duration::from_secs(30)),
        ]),
        ..DnsConfig::default()
    };
    let h = Harness::new(cfg, catalog());
    let m = h.ask("foo.node.consul.", RecordType::ANY).await;
    assert!(m.answers.iter().all(|r| r.ttl == 10));
    let m = h.ask("web.service.consul.", RecordType::SRV).await;
    assert!(m.answers.iter().chain(&m.additionals).all(|r| r.ttl == 15));
    let m = h.ask("db.service.consul.", RecordType::A).await;
    assert_eq!(m.answers[0].ttl, 30);
    let m = h.ask("ipv6.service.consul.", RecordType::AAAA).await;
    assert_eq!(m.answers[0].ttl, 5);
    let m = h.ask("c000020a.addr.consul.", RecordType::A).await;
    assert_eq!(m.answers[0].ttl, 10);
}

#[tokio::test]
async fn a_record_limit_caps_address_answers() {
    let h = Harness::new(
        DnsConfig {
            a_record_limit: 2,
            ..DnsConfig::default()
        },
        catalog(),
    );
    let m = h
        .ask_with(
            "web.service.consul.",
            RecordType::A,
            Transport::Tcp,
            None,
            SEED,
        )
        .await
        .message;
    assert_eq!(m.answers.len(), 2);
    // SRV answers are not limited by it.
    let m = h.ask("web.service.consul.", RecordType::SRV).await;
    assert_eq!(m.answers.len(), 3);
}

#[tokio::test]
async fn ipv4_only_service_has_no_aaaa() {
    let h = Harness::default_catalog();
    let m = h.ask("web.service.consul.", RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_soa_authority(&m, "consul.");
    // Unknown types are NODATA too.
    let m = h
        .ask("web.service.consul.", RecordType::Unknown(65280))
        .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_soa_authority(&m, "consul.");
}

/// A catalog with `n` healthy instances of `big`, on nodes with long names.
fn big_catalog(n: u16) -> MemLookup {
    let mut lookup = MemLookup::new("dc1");
    for i in 0..n {
        let name = format!("node-with-a-rather-long-name-{i:04}");
        let addr = format!("10.1.{}.{}", i / 250, i % 250 + 1);
        lookup = lookup
            .with_node(node(&name, &addr))
            .with_service(service(&name, "big", 8000 + i));
    }
    lookup
}

#[tokio::test]
async fn udp_answers_are_trimmed_without_setting_tc() {
    let h = Harness::new(DnsConfig::default(), big_catalog(100));

    // No EDNS: udp_answer_limit (3) answers, under 512 bytes, TC clear.
    let r = h
        .ask_with(
            "big.service.consul.",
            RecordType::SRV,
            Transport::Udp,
            None,
            SEED,
        )
        .await;
    assert_eq!(r.message.answers.len(), 3);
    assert_eq!(r.message.additionals.len(), 3);
    assert!(r.size <= 512);
    assert!(!r.message.metadata.truncation);
    let targets: BTreeSet<_> = srvs(&r.message.answers).into_iter().map(|s| s.3).collect();
    let extras: BTreeSet<_> = r
        .message
        .additionals
        .iter()
        .map(|r| r.name.to_ascii())
        .collect();
    assert_eq!(
        targets, extras,
        "additional records follow the kept answers"
    );

    // An EDNS buffer of 512 is no bigger than the classic limit, so Consul applies
    // the answer-count limit too.
    let r = h
        .ask_with(
            "big.service.consul.",
            RecordType::A,
            Transport::Udp,
            edns(512),
            SEED,
        )
        .await;
    assert_eq!(r.message.answers.len(), 3);
    assert!(r.message.edns.is_some());

    // EDNS 1232 (dig's default): as many as fit.
    let r = h
        .ask_with(
            "big.service.consul.",
            RecordType::SRV,
            Transport::Udp,
            edns(1232),
            SEED,
        )
        .await;
    let n = r.message.answers.len();
    assert!(n > 3 && n < 100, "{n}");
    assert!(r.size <= 1232);
    assert!(!r.message.metadata.truncation);
    assert_eq!(r.message.edns.as_ref().unwrap().max_payload(), 1232);

    // EDNS 65000: everything.
    let r = h
        .ask_with(
            "big.service.consul.",
            RecordType::SRV,
            Transport::Udp,
            edns(65000),
            SEED,
        )
        .await;
    assert_eq!(r.message.answers.len(), 100);

    // TCP: complete.
    let r = h
        .ask_with(
            "big.service.consul.",
            RecordType::SRV,
            Transport::Tcp,
            None,
            SEED,
        )
        .await;
    assert_eq!(r.message.answers.len(), 100);
    assert_eq!(r.message.additionals.len(), 100);
    assert!(r.size > 512);
}

#[tokio::test]
async fn enable_truncate_sets_tc_on_trimmed_answers() {
    let h = Harness::new(
        DnsConfig {
            enable_truncate: true,
            ..DnsConfig::default()
        },
        big_catalog(20),
    );
    let m = h.ask("big.service.consul.", RecordType::A).await;
    assert_eq!(m.answers.len(), 3);
    assert!(m.metadata.truncation);
    let m = h
        .ask(
            "node-with-a-rather-long-name-0001.node.consul.",
            RecordType::A,
        )
        .await;
    assert!(!m.metadata.truncation);
}

#[tokio::test]
async fn reverse_lookups() {
    let h = Harness::default_catalog();
    let m = h.ask("1.0.0.10.in-addr.arpa.", RecordType::PTR).await;
    assert!(m.metadata.authoritative);
    let RData::PTR(target) = &m.answers[0].data else {
        panic!("{m:?}");
    };
    assert_eq!(target.0.to_ascii(), "foo.node.dc1.consul.");
    assert_eq!(m.answers[0].name.to_ascii(), "1.0.0.10.in-addr.arpa.");

    let m = h
        .ask(
            &query::arpa_name("2001:db8::6".parse().unwrap()),
            RecordType::PTR,
        )
        .await;
    let RData::PTR(target) = &m.answers[0].data else {
        panic!("{m:?}");
    };
    assert_eq!(target.0.to_ascii(), "v6.node.dc1.consul.");

    // A service's own address.
    let m = h.ask("10.2.0.192.in-addr.arpa.", RecordType::PTR).await;
    let RData::PTR(target) = &m.answers[0].data else {
        panic!("{m:?}");
    };
    assert_eq!(target.0.to_ascii(), "db.service.dc1.consul.");

    // Always answered in the primary domain.
    let alt = Harness::new(
        DnsConfig {
            alt_domain: Some("example.com.".into()),
            ..DnsConfig::default()
        },
        catalog(),
    );
    let m = alt.ask("1.0.0.10.in-addr.arpa.", RecordType::PTR).await;
    let RData::PTR(target) = &m.answers[0].data else {
        panic!("{m:?}");
    };
    assert_eq!(target.0.to_ascii(), "foo.node.dc1.consul.");

    // Unknown without recursors: NXDOMAIN with the SOA.
    let m = h.ask("9.9.9.9.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_soa_authority(&m, "consul.");
}

#[tokio::test]
async fn apex_soa_and_ns() {
    let lookup = catalog()
        .with_node(node("srv2", "10.0.0.9"))
        .with_server(ServerInfo {
            name: "srv2".into(),
            addr: "2001:db8::9".parse().unwrap(),
        })
        // Not a DNS label: left out, as Consul does.
        .with_server(ServerInfo {
            name: "bad_name".into(),
            addr: "10.0.0.8".parse().unwrap(),
        });
    let h = Harness::new(
        DnsConfig {
            soa: crate::SoaConfig {
                refresh: 1,
                retry: 2,
                expire: 3,
                min_ttl: 4,
            },
            ..DnsConfig::default()
        },
        lookup,
    );
    let m = h.ask("consul.", RecordType::SOA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    let RData::SOA(soa) = &m.answers[0].data else {
        panic!("{m:?}");
    };
    assert_eq!(m.answers[0].ttl, 4);
    assert_eq!(
        (soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum),
        (NOW, 1, 2, 3, 4)
    );
    let mut ns: Vec<String> = m
        .authorities
        .iter()
        .map(|r| match &r.data {
            RData::NS(ns) => ns.0.to_ascii(),
            other => panic!("{other:?}"),
        })
        .collect();
    ns.sort();
    assert_eq!(ns, ["foo.node.dc1.consul.", "srv2.node.dc1.consul."]);
    assert_eq!(sorted(ips(&m.additionals)), ["10.0.0.1", "2001:db8::9"]);

    let m = h.ask("consul.", RecordType::NS).await;
    assert_eq!(m.answers.len(), 2);
    assert!(m.answers.iter().all(|r| r.name.to_ascii() == "consul."));
    assert_eq!(m.additionals.len(), 2);

    // Consul answers SOA questions about any name in the zone the same way.
    let m = h.ask("web.service.consul.", RecordType::SOA).await;
    assert_eq!(m.answers[0].name.to_ascii(), "consul.");

    // The apex exists: other types are NODATA, not NXDOMAIN.
    let m = h.ask("consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
}

#[tokio::test]
async fn alt_domain_answers_in_the_domain_asked() {
    let h = Harness::new(
        DnsConfig {
            alt_domain: Some("example.com.".into()),
            ..DnsConfig::default()
        },
        catalog(),
    );
    let m = h.ask("web.service.example.com.", RecordType::SRV).await;
    assert!(srvs(&m.answers)
        .iter()
        .all(|s| s.3.ends_with(".node.dc1.example.com.")));
    let m = h.ask("nope.service.example.com.", RecordType::A).await;
    assert_soa_authority(&m, "example.com.");
    let m = h.ask("nope.service.consul.", RecordType::A).await;
    assert_soa_authority(&m, "consul.");
}

#[tokio::test]
async fn addr_lookups() {
    let h = Harness::default_catalog();
    let m = h.ask("c000020a.addr.dc1.consul.", RecordType::A).await;
    assert_eq!(ips(&m.answers), ["192.0.2.10"]);
    let m = h
        .ask(
            "20010db800010002cafe000000001337.addr.consul.",
            RecordType::AAAA,
        )
        .await;
    assert_eq!(ips(&m.answers), ["2001:db8:1:2:cafe::1337"]);
    // The other family: NODATA, the address in the additional section.
    let m = h.ask("c000020a.addr.consul.", RecordType::AAAA).await;
    assert!(m.answers.is_empty());
    assert_eq!(ips(&m.additionals), ["192.0.2.10"]);
    let m = h.ask("c00002.addr.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn connect_lookups_return_proxies() {
    let lookup = catalog().with_service(Service {
        kind: "connect-proxy".into(),
        proxy_destination: "web".into(),
        ..service("bar", "web-sidecar-proxy", 21000)
    });
    let h = Harness::new(DnsConfig::default(), lookup);
    let m = h.ask("web.connect.consul.", RecordType::SRV).await;
    assert_eq!(
        srvs(&m.answers),
        [(1, 1, 21000, "bar.node.dc1.consul.".into())]
    );
    let m = h.ask("db.connect.consul.", RecordType::SRV).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn unsupported_and_invalid_names_are_nxdomain() {
    let h = Harness::default_catalog();
    for name in [
        "myquery.query.consul.",
        "web.virtual.consul.",
        "web.ingress.consul.",
        "service.consul.",
        "node.consul.",
        "foo.node.dc1.extra.more.consul.",
        "web.service.phx1.peer.consul.",
        "nothing.here.consul.",
    ] {
        let m = h.ask(name, RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert_soa_authority(&m, "consul.");
    }
}

#[tokio::test]
async fn lookup_failures() {
    let h = Harness::new(
        DnsConfig::default(),
        catalog().failing(LookupError::Unavailable("no leader".into())),
    );
    let m = h.ask("web.service.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);

    let h = Harness::default_catalog();
    let m = h.ask("web.service.dc9.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_soa_authority(&m, "consul.");
}

#[tokio::test]
async fn out_of_zone_without_recursors_is_refused() {
    let h = Harness::default_catalog();
    let m = h.ask("www.example.org.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
    assert!(!m.metadata.recursion_available);
    assert_eq!(m.metadata.id, 4242);
}

#[tokio::test]
async fn recursion_available_when_recursors_exist() {
    let h = Harness::new(
        DnsConfig {
            recursors: vec!["127.0.0.1:1".parse().unwrap()],
            ..DnsConfig::default()
        },
        catalog(),
    );
    let m = h.ask("web.service.consul.", RecordType::A).await;
    assert!(m.metadata.recursion_available);
    assert!(m.metadata.recursion_desired);
}

#[tokio::test]
async fn edns_is_echoed_and_client_subnet_scoped_globally() {
    let h = Harness::default_catalog();
    let m = h.ask("web.service.consul.", RecordType::A).await;
    assert!(m.edns.is_none());

    let mut asked = Edns::new();
    asked.set_max_payload(1232);
    asked
        .options_mut()
        .insert(EdnsOption::Subnet(ClientSubnet::new(
            "192.0.2.0".parse().unwrap(),
            24,
            0,
        )));
    // An unknown option (a cookie) is ignored.
    asked
        .options_mut()
        .insert(EdnsOption::Unknown(10, vec![1, 2, 3, 4, 5, 6, 7, 8]));
    let r = h
        .ask_with(
            "web.service.consul.",
            RecordType::A,
            Transport::Udp,
            Some(asked),
            SEED,
        )
        .await;
    let edns = r.message.edns.expect("OPT echoed");
    assert_eq!(edns.max_payload(), 1232);
    assert_eq!(edns.version(), 0);
    let Some(EdnsOption::Subnet(subnet)) = edns.option(EdnsCode::Subnet) else {
        panic!("{edns:?}");
    };
    assert_eq!(subnet.source_prefix(), 24);
    assert_eq!(subnet.scope_prefix(), 0);
    assert!(edns.option(EdnsCode::Unknown(10)).is_none());
    assert_eq!(r.message.answers.len(), 3);
}

#[tokio::test]
async fn opcodes_zone_transfers_and_empty_questions() {
    let h = Harness::default_catalog();

    let mut notify = Message::query();
    notify.metadata.op_code = OpCode::Notify;
    notify.add_query(Query::query(
        Name::from_ascii("consul.").unwrap(),
        RecordType::SOA,
    ));
    let m = h.send(notify, Transport::Udp, SEED).await.message;
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);

    let m = h
        .ask_with("consul.", RecordType::AXFR, Transport::Tcp, None, SEED)
        .await
        .message;
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);

    let m = h.send(Message::query(), Transport::Udp, SEED).await.message;
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
}

#[tokio::test]
async fn service_tagged_lan_addresses_answer_their_family() {
    let lookup = catalog().with_service(Service {
        tagged_addresses: BTreeMap::from([
            (
                "lan_ipv4".to_owned(),
                ServiceAddress {
                    address: "192.0.2.4".into(),
                    port: 1,
                },
            ),
            (
                "lan_ipv6".to_owned(),
                ServiceAddress {
                    address: "2001:db8::4".into(),
                    port: 1,
                },
            ),
        ]),
        ..service("foo", "dual", 1)
    });
    let h = Harness::new(DnsConfig::default(), lookup);
    let m = h.ask("dual.service.consul.", RecordType::A).await;
    assert_eq!(ips(&m.answers), ["192.0.2.4"]);
    let m = h.ask("dual.service.consul.", RecordType::AAAA).await;
    assert_eq!(ips(&m.answers), ["2001:db8::4"]);
}
