//! The record builders on their own: encodings and the address rules.

use super::*;
use crate::DnsConfig;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use tribune_types::model::ServiceAddress;

#[test]
fn rfc1464_encoding_matches_consul() {
    // Consul's TestEncodeKVasRFC1464 table (cases from RFC 1464 plus its own).
    let cases = [
        ("color", "blue", "color=blue"),
        ("equation", "a=4", "equation=a=4"),
        ("a=a", "true", "a`=a=true"),
        ("a\\=a", "false", "a\\`=a=false"),
        ("=", "\\=", "`==\\="),
        ("string", "\"Cat\"", "string=\"Cat\""),
        ("string2", "`abc`", "string2=``abc``"),
        ("novalue", "", "novalue="),
        ("a b", "c d", "a b=c d"),
        ("abc ", "123 ", "abc` =123 "),
        (" abc", " 321", "` abc= 321"),
        ("`a", "b", "``a=b"),
    ];
    for (key, value, want) in cases {
        assert_eq!(encode_rfc1464(key, value), want, "{key:?}={value:?}");
    }
}

fn node_with_meta(meta: &[(&str, &str)]) -> Node {
    Node {
        node: "foo".into(),
        address: "10.0.0.1".into(),
        meta: meta
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Node::default()
    }
}

fn texts(records: &[Record]) -> Vec<Vec<Vec<u8>>> {
    records
        .iter()
        .map(|r| match &r.data {
            RData::TXT(t) => t.txt_data.iter().map(|s| s.to_vec()).collect(),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn node_meta_txt() {
    let long = "x".repeat(300);
    let node = node_with_meta(&[
        ("RFC1035-raw", "just this"),
        ("k", "v"),
        ("long", &long),
        ("empty", ""),
    ]);
    let owner = Name::from_ascii("foo.node.consul.").unwrap();
    let got = texts(&meta_txt(&owner, &node, 7));
    // BTreeMap order: upper case sorts first.
    assert_eq!(got[0], [b"just this".to_vec()]);
    assert_eq!(got[1], [b"empty=".to_vec()]);
    assert_eq!(got[2], [b"k=v".to_vec()]);
    // Longer than a character-string: split, never an encoding error.
    assert_eq!(got[3].len(), 2);
    assert_eq!(got[3][0].len(), 255);
    assert_eq!(got[3].concat(), format!("long={long}").into_bytes());
}

#[test]
fn address_translation_follows_consul() {
    assert_eq!(translate(Accept::V4, "10.0.0.1", "", ""), "10.0.0.1");
    assert_eq!(translate(Accept::V6, "10.0.0.1", "", ""), "");
    assert_eq!(
        translate(Accept::V6, "10.0.0.1", "", "2001:db8::1"),
        "2001:db8::1"
    );
    assert_eq!(
        translate(Accept::V4, "2001:db8::1", "10.0.0.2", ""),
        "10.0.0.2"
    );
    assert_eq!(
        translate(Accept::Any, "10.0.0.1", "", "2001:db8::1"),
        "2001:db8::1"
    );
    assert_eq!(
        translate(Accept::Any, "10.0.0.1", "10.0.0.2", ""),
        "10.0.0.2"
    );
    assert_eq!(
        translate(Accept::V4, "host.example", "", ""),
        "host.example"
    );
    assert_eq!(translate(Accept::Any, "", "", ""), "");
    // An IPv4-mapped IPv6 address is IPv4, as for Go's To4.
    assert_eq!(
        parse_ip("::ffff:10.0.0.1"),
        Some("10.0.0.1".parse().unwrap())
    );
}

fn ctx<'a>(cfg: &'a DnsConfig, qname: &'a Name, qtype: RecordType, zone: &'a [String]) -> Ctx<'a> {
    Ctx {
        cfg,
        qname,
        qtype,
        zone,
        now: 1234,
        client: None,
    }
}

#[test]
fn soa_record_fields() {
    let cfg = DnsConfig::default();
    let qname = Name::from_ascii("x.service.consul.").unwrap();
    let zone = ["consul".to_owned()];
    let record = soa_record(&ctx(&cfg, &qname, RecordType::A, &zone)).unwrap();
    assert_eq!(record.name.to_ascii(), "consul.");
    assert_eq!(record.ttl, 0);
    let RData::SOA(soa) = &record.data else {
        panic!()
    };
    assert_eq!(soa.mname.to_ascii(), "ns.consul.");
    assert_eq!(soa.rname.to_ascii(), "hostmaster.consul.");
    assert_eq!(
        (soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum),
        (1234, 3600, 600, 86400, 0)
    );
}

fn entry(node_addr: &str, svc: Service) -> HealthEntry {
    HealthEntry {
        node: Node {
            node: "n1".into(),
            address: node_addr.into(),
            datacenter: "dc1".into(),
            ..Node::default()
        },
        service: Service {
            node: "n1".into(),
            id: "s1".into(),
            service: "s".into(),
            port: 80,
            ..svc
        },
        checks: Vec::new(),
    }
}

#[test]
fn srv_targets_node_name_addr_or_hostname() {
    let cfg = DnsConfig {
        enable_additional_node_meta_txt: false,
        ..DnsConfig::default()
    };
    let qname = Name::from_ascii("s.service.consul.").unwrap();
    let zone = ["consul".to_owned()];
    let c = ctx(&cfg, &qname, RecordType::SRV, &zone);
    let spec = ServiceSpec {
        name: "s",
        tag: None,
        dc: "dc1",
    };
    let target = |e: HealthEntry| {
        let mut rng = StdRng::seed_from_u64(1);
        let a = service(&c, &spec, vec![e], &mut rng);
        match &a.answers[0].data {
            RData::SRV(srv) => (srv.target.to_ascii(), a.additional.len()),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        target(entry("10.0.0.1", Service::default())),
        ("n1.node.dc1.consul.".into(), 1)
    );
    // An explicit service address, even the node's own, is published under `.addr`.
    let own = |a: &str| Service {
        address: a.into(),
        ..Service::default()
    };
    assert_eq!(
        target(entry("10.0.0.1", own("10.0.0.1"))),
        ("0a000001.addr.dc1.consul.".into(), 1)
    );
    assert_eq!(
        target(entry("10.0.0.1", own("db.example."))),
        ("db.example.".into(), 0)
    );
    // A node address translated through `lan_ipv4` is not the node name's address.
    let mut e = entry("10.0.0.1", Service::default());
    e.node.tagged_addresses = BTreeMap::from([("lan_ipv4".to_owned(), "10.9.9.9".to_owned())]);
    assert_eq!(target(e), ("0a090909.addr.dc1.consul.".into(), 1));
    let svc = Service {
        tagged_addresses: BTreeMap::from([(
            "lan_ipv4".to_owned(),
            ServiceAddress {
                address: "10.1.1.1".into(),
                port: 80,
            },
        )]),
        ..Service::default()
    };
    // Only a tagged address on the service: it is the service's own (Consul's docs:
    // "an explicit IP address or addresses in the address or tagged_address").
    assert_eq!(
        target(entry("10.0.0.1", svc)),
        ("0a010101.addr.dc1.consul.".into(), 1)
    );
}

#[test]
fn duplicate_addresses_are_answered_once() {
    let cfg = DnsConfig::default();
    let qname = Name::from_ascii("s.service.consul.").unwrap();
    let zone = ["consul".to_owned()];
    let c = ctx(&cfg, &qname, RecordType::A, &zone);
    let spec = ServiceSpec {
        name: "s",
        tag: None,
        dc: "dc1",
    };
    let mut second = entry("10.0.0.1", Service::default());
    second.service.id = "s2".into();
    second.service.port = 81;
    let mut rng = StdRng::seed_from_u64(1);
    let a = service(
        &c,
        &spec,
        vec![entry("10.0.0.1", Service::default()), second],
        &mut rng,
    );
    assert_eq!(a.answers.len(), 1);
}

#[test]
fn prepared_query_answers_keep_the_servers_order_and_ttl() {
    // `only_passing` is the agent's setting for service lookups; a prepared query
    // filtered by its own rules already.
    let cfg = DnsConfig {
        only_passing: true,
        ..DnsConfig::default()
    };
    let qname = Name::from_ascii("q.query.consul.").unwrap();
    let zone = ["consul".to_owned()];
    let c = ctx(&cfg, &qname, RecordType::A, &zone);
    let spec = ServiceSpec {
        name: "s",
        tag: None,
        dc: "dc1",
    };
    let mut warning = entry("10.0.0.2", Service::default());
    warning.checks.push(Check {
        status: HealthStatus::Warning,
        ..Check::default()
    });
    let entries = [entry("10.0.0.1", Service::default()), warning];
    let a = query(&c, &spec, &entries, Duration::from_secs(7));
    let addrs: Vec<String> = a.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(addrs, ["10.0.0.1", "10.0.0.2"]);
    assert!(a.answers.iter().all(|r| r.ttl == 7));
    let rev = [entries[1].clone(), entries[0].clone()];
    let a = query(&c, &spec, &rev, Duration::from_secs(7));
    assert_eq!(a.answers[0].data.to_string(), "10.0.0.2");
    let none = query(&c, &spec, &[], Duration::ZERO);
    assert_eq!(none.rcode, ResponseCode::NXDomain);
    assert!(!none.authority.is_empty());
}
