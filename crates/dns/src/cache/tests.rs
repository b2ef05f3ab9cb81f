//! The fast path against the engine: for every request shape the cache serves, the
//! cached response must decode to what the engine sends (records compared as sets,
//! since both shuffle); for every shape it does not serve, it must decline.

use super::*;
use crate::engine::{Engine, Inbound};
use crate::server::Transport;
use crate::{DnsConfig, Lookup, LookupError, MemLookup, ServerInfo};
use async_trait::async_trait;
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::Name;
use std::collections::BTreeMap;
use std::net::IpAddr;
use tribune_types::model::ops::HealthEntry;
use tribune_types::model::{Node, Service};

const NOW: u32 = 1_700_000_000;

/// A [`MemLookup`] that reports a fixed catalog index, so its answers are cached.
struct Indexed(MemLookup);

#[async_trait]
impl Lookup for Indexed {
    fn datacenter(&self) -> String {
        self.0.datacenter()
    }
    async fn health_service(
        &self,
        dc: Option<&str>,
        service: &str,
        connect: bool,
    ) -> Result<Vec<HealthEntry>, LookupError> {
        self.0.health_service(dc, service, connect).await
    }
    async fn health_service_indexed(
        &self,
        dc: Option<&str>,
        service: &str,
        connect: bool,
    ) -> Result<(Vec<HealthEntry>, Option<u64>), LookupError> {
        Ok((self.0.health_service(dc, service, connect).await?, Some(7)))
    }
    async fn node(&self, dc: Option<&str>, name: &str) -> Result<Option<Node>, LookupError> {
        self.0.node(dc, name).await
    }
    async fn nodes(&self, dc: Option<&str>) -> Result<Vec<Node>, LookupError> {
        self.0.nodes(dc).await
    }
    async fn servers(&self) -> Result<Vec<ServerInfo>, LookupError> {
        self.0.servers().await
    }
    async fn services_at(
        &self,
        dc: Option<&str>,
        addr: IpAddr,
    ) -> Result<Vec<Service>, LookupError> {
        self.0.services_at(dc, addr).await
    }
}

use crate::fixtures::{node, service};

/// Three `web` instances (one node with meta), a `db` with its own address, an IPv6
/// service, a service on a node named by hostname, and 40 instances of `big`.
fn catalog() -> MemLookup {
    let mut foo = node("foo", "10.0.0.1");
    foo.meta = BTreeMap::from([("key".to_owned(), "value".to_owned())]);
    let mut lookup = MemLookup::new("dc1")
        .with_node(foo)
        .with_node(node("bar", "10.0.0.2"))
        .with_node(node("baz", "10.0.0.3"))
        .with_node(node("v6", "2001:db8::6"))
        .with_node(node("ext", "www.example.org"))
        .with_service(Service {
            tags: vec!["v1".into()],
            ..service("foo", "web", 8080)
        })
        .with_service(service("bar", "web", 8080))
        .with_service(service("baz", "web", 8081))
        .with_service(Service {
            address: "192.0.2.10".into(),
            ..service("foo", "db", 5432)
        })
        .with_service(service("v6", "ipv6", 80))
        .with_service(service("ext", "external", 443));
    for i in 0..40u16 {
        let name = format!("n{i}");
        lookup = lookup
            .with_node(node(&name, &format!("10.1.0.{i}")))
            .with_service(service(&name, "big", 9000 + i));
    }
    for i in 0..20u16 {
        let name = format!("node-{i:02}");
        lookup = lookup
            .with_node(node(&name, &format!("10.2.0.{i}")))
            .with_service(service(&name, "twenty", 7000 + i));
    }
    lookup
}

struct Harness {
    engine: Engine,
    cache: AnswerCache,
}

/// What both paths produced for one request.
struct Both {
    slow: Message,
    fast: Option<(Message, Vec<u8>)>,
}

impl Harness {
    fn new(cfg: DnsConfig) -> Harness {
        let fast = FastConfig::new(cfg.recursion_available(), cfg.udp_answer_limit);
        Harness {
            engine: Engine::new(cfg, Arc::new(Indexed(catalog()))),
            cache: AnswerCache::new(fast),
        }
    }

    /// Asks the engine over UDP, caches what it offers, then asks the cache.
    async fn ask(&self, name: &str, qtype: RecordType, edns: Option<u16>) -> Both {
        self.ask_over(Transport::Udp, name, qtype, edns).await
    }

    /// [`Harness::ask`] over `transport`.
    async fn ask_over(
        &self,
        transport: Transport,
        name: &str,
        qtype: RecordType,
        edns: Option<u16>,
    ) -> Both {
        let mut query = Message::query();
        query.metadata.id = 0x5151;
        query.metadata.recursion_desired = true;
        query.metadata.checking_disabled = true;
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            query.set_edns(e);
        }
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
        let (response, fill) = self.engine.handle_and_fill(&inbound, NOW, 3).await;
        let max = match transport {
            Transport::Udp => response.edns.as_ref().map_or(512, Edns::max_payload),
            Transport::Tcp => u16::MAX,
        };
        let (_, bytes) = response.encode(max, true).unwrap();
        let slow = Message::from_vec(&bytes).unwrap();
        if let Some(fill) = fill {
            self.cache.insert(&fill.question, fill.entry);
        }
        let mut out = Vec::new();
        let fast = self
            .cache
            .answer(&raw, transport, &mut Rng::new(11), &mut out)
            .then(|| (Message::from_vec(&out).unwrap(), out));
        Both { slow, fast }
    }
}

/// A record as text, for comparing sections whatever their order and name case.
fn texts(records: &[Record]) -> Vec<String> {
    let mut v: Vec<String> = records
        .iter()
        .map(|r| r.to_string().to_ascii_lowercase())
        .collect();
    v.sort();
    v
}

fn assert_same(both: &Both) {
    let (fast, _) = both.fast.as_ref().expect("answered from the cache");
    let slow = &both.slow;
    assert_eq!(fast.metadata, slow.metadata, "header");
    assert_eq!(fast.queries, slow.queries, "question");
    assert_eq!(texts(&fast.answers), texts(&slow.answers), "answers");
    assert!(fast.authorities.is_empty() && slow.authorities.is_empty());
    assert_eq!(
        texts(&fast.additionals),
        texts(&slow.additionals),
        "additional"
    );
    assert_eq!(fast.edns, slow.edns, "EDNS");
}

#[tokio::test]
async fn cached_answers_match_the_engine() {
    let h = Harness::new(DnsConfig::default());
    for (name, qtype, edns) in [
        ("web.service.consul.", RecordType::A, Some(4096)),
        ("web.service.consul.", RecordType::SRV, Some(4096)),
        ("web.service.consul.", RecordType::A, None),
        ("web.service.consul.", RecordType::SRV, Some(1232)),
        ("v1.web.service.dc1.consul.", RecordType::SRV, Some(1232)),
        ("_web._tcp.service.consul.", RecordType::SRV, Some(1232)),
        ("db.service.consul.", RecordType::SRV, Some(1232)),
        ("db.service.consul.", RecordType::A, Some(600)),
        ("ipv6.service.consul.", RecordType::AAAA, Some(1232)),
        ("ipv6.service.consul.", RecordType::SRV, Some(1232)),
        ("big.service.consul.", RecordType::A, Some(4096)),
        ("big.service.consul.", RecordType::SRV, Some(8192)),
    ] {
        let both = h.ask(name, qtype, edns).await;
        assert!(!both.slow.answers.is_empty(), "{name} {qtype}");
        assert_same(&both);
    }
}

#[tokio::test]
async fn tcp_answers_are_whole_without_edns() {
    let h = Harness::new(DnsConfig::default());
    for qtype in [RecordType::A, RecordType::SRV] {
        let both = h
            .ask_over(Transport::Tcp, "big.service.consul.", qtype, None)
            .await;
        assert_eq!(both.slow.answers.len(), 40);
        assert_same(&both);
    }
    // The entry made over TCP is not sent whole over UDP without EDNS.
    let both = h.ask("big.service.consul.", RecordType::A, None).await;
    assert!(both.fast.is_none());
}

#[tokio::test]
async fn the_question_is_echoed_in_the_case_asked() {
    let h = Harness::new(DnsConfig::default());
    let both = h
        .ask("WeB.SerVice.Consul.", RecordType::SRV, Some(1232))
        .await;
    assert_same(&both);
    let (fast, _) = both.fast.unwrap();
    assert_eq!(fast.queries[0].name().to_ascii(), "WeB.SerVice.Consul.");
    // Another case is the same question: answered from that entry, in its own case.
    let mut out = Vec::new();
    let mut other = Message::query();
    other.add_query(Query::query(
        Name::from_ascii("WEB.service.CONSUL.").unwrap(),
        RecordType::SRV,
    ));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    other.set_edns(e);
    assert!(h.cache.answer(
        &other.to_vec().unwrap(),
        Transport::Udp,
        &mut Rng::new(1),
        &mut out
    ));
    let reply = Message::from_vec(&out).unwrap();
    assert_eq!(reply.queries[0].name().to_ascii(), "WEB.service.CONSUL.");
    assert_eq!(reply.answers.len(), 3);
}

#[tokio::test]
async fn answers_the_engine_would_trim_are_left_to_it() {
    let h = Harness::new(DnsConfig::default());
    // Without EDNS, more answers than udp_answer_limit (3).
    let both = h.ask("big.service.consul.", RecordType::A, None).await;
    assert_eq!(both.slow.answers.len(), 3);
    assert!(both.fast.is_none());
    // A 512-byte buffer 40 SRV records do not fit in.
    let both = h
        .ask("big.service.consul.", RecordType::SRV, Some(512))
        .await;
    assert!(both.slow.answers.len() < 40);
    assert!(both.fast.is_none());
    // EDNS asking for 512 bytes is cut to udp_answer_limit like no EDNS (Consul).
    let two = Harness::new(DnsConfig {
        udp_answer_limit: 2,
        ..DnsConfig::default()
    });
    let both = two
        .ask("web.service.consul.", RecordType::A, Some(512))
        .await;
    assert_eq!(both.slow.answers.len(), 2);
    assert!(both.fast.is_none());
    let both = two
        .ask("web.service.consul.", RecordType::A, Some(513))
        .await;
    assert_same(&both);
    // The same entry serves a bigger buffer.
    let both = h
        .ask("big.service.consul.", RecordType::SRV, Some(8192))
        .await;
    assert_same(&both);
}

/// Near the limit, whether the cache answers is exactly whether the engine would
/// have sent the whole answer, for every buffer size.
#[tokio::test]
async fn at_the_size_limit_the_cache_follows_the_engine() {
    let h = Harness::new(DnsConfig::default());
    let (mut whole, mut cut) = (0, 0);
    for size in (520..1600).step_by(8) {
        let both = h
            .ask("twenty.service.consul.", RecordType::SRV, Some(size))
            .await;
        if both.slow.answers.len() == 20 {
            whole += 1;
            assert_same(&both);
        } else {
            cut += 1;
            assert!(both.fast.is_none(), "at {size} the engine trims");
        }
    }
    assert!(
        whole > 0 && cut > 0,
        "both sides of the limit: {whole} / {cut}"
    );
}

#[tokio::test]
async fn negative_and_limited_answers_are_not_cached() {
    let h = Harness::new(DnsConfig::default());
    let both = h
        .ask("nope.service.consul.", RecordType::A, Some(1232))
        .await;
    assert!(both.fast.is_none());
    let both = h.ask("foo.node.consul.", RecordType::A, Some(1232)).await;
    assert!(both.fast.is_none(), "node answers are not cached");
    assert_eq!(h.cache.len(), 0);

    let limited = Harness::new(DnsConfig {
        a_record_limit: 2,
        ..DnsConfig::default()
    });
    let both = limited
        .ask("web.service.consul.", RecordType::A, Some(1232))
        .await;
    assert_eq!(both.slow.answers.len(), 2);
    assert!(both.fast.is_none(), "a cut answer must not be replayed");
}

#[tokio::test]
async fn cached_answers_are_shuffled_per_response() {
    let h = Harness::new(DnsConfig::default());
    let both = h
        .ask("web.service.consul.", RecordType::SRV, Some(1232))
        .await;
    assert!(both.fast.is_some());
    let mut q = Message::query();
    q.add_query(Query::query(
        Name::from_ascii("web.service.consul.").unwrap(),
        RecordType::SRV,
    ));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    q.set_edns(e);
    let q = q.to_vec().unwrap();
    let mut rng = Rng::new(99);
    let mut first = BTreeMap::<String, usize>::new();
    for _ in 0..300 {
        let mut out = Vec::new();
        assert!(h.cache.answer(&q, Transport::Udp, &mut rng, &mut out));
        let m = Message::from_vec(&out).unwrap();
        let RData::SRV(srv) = &m.answers[0].data else {
            panic!("an SRV answer");
        };
        // Additional records follow their target wherever it lands.
        assert_eq!(m.additionals.len(), 4, "3 A records and foo's TXT");
        for extra in &m.additionals {
            assert!(m
                .answers
                .iter()
                .any(|a| matches!(&a.data, RData::SRV(s) if s.target == extra.name)));
        }
        *first.entry(srv.target.to_ascii()).or_default() += 1;
    }
    assert_eq!(
        first.len(),
        3,
        "every instance comes first sometimes: {first:?}"
    );
    assert!(first.values().all(|&n| n > 60), "{first:?}");
}

#[test]
fn only_plain_queries_are_parsed() {
    let mut q = Message::query();
    q.metadata.id = 1;
    q.add_query(Query::query(
        Name::from_ascii("web.service.consul.").unwrap(),
        RecordType::A,
    ));
    let plain = q.to_vec().unwrap();
    let parsed = parse(&plain).unwrap();
    assert_eq!(parsed.edns, None);
    assert_eq!(parsed.question, &plain[12..]);

    let mut with_edns = q.clone();
    let mut e = Edns::new();
    e.set_max_payload(1400);
    with_edns.set_edns(e);
    assert_eq!(
        parse(&with_edns.to_vec().unwrap()).unwrap().edns,
        Some(1400)
    );

    // Options the engine ignores (a cookie, padding) are skipped.
    let mut cookie = with_edns.clone();
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.options_mut()
        .insert(EdnsOption::Unknown(10, vec![1, 2, 3, 4, 5, 6, 7, 8]));
    e.options_mut().insert(EdnsOption::Unknown(12, vec![0; 5]));
    cookie.set_edns(e);
    assert_eq!(parse(&cookie.to_vec().unwrap()).unwrap().edns, Some(1232));

    // A response, another opcode, two questions, trailing bytes, class CH, a
    // compressed name, an OPT with an option the engine acts on (client subnet,
    // NSID), options overrunning the OPT, EDNS version 1: all the engine's.
    let mut response = plain.clone();
    response[2] |= 0x80;
    let mut notify = plain.clone();
    notify[2] |= 4 << 3;
    let mut two = q.clone();
    two.add_query(Query::query(
        Name::from_ascii("x.consul.").unwrap(),
        RecordType::A,
    ));
    let mut trailing = plain.clone();
    trailing.push(0);
    let mut chaos = plain.clone();
    let n = chaos.len();
    chaos[n - 1] = 3;
    let pointer = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
    let with_option = |code: u16, data: &[u8]| {
        let mut bytes = with_edns.to_vec().unwrap();
        let n = bytes.len();
        bytes[n - 1] = (4 + data.len()) as u8;
        bytes.extend_from_slice(&code.to_be_bytes());
        bytes.extend_from_slice(&(data.len() as u16).to_be_bytes());
        bytes.extend_from_slice(data);
        bytes
    };
    let subnet = with_option(8, &[0, 1, 24, 0, 10, 0, 0]);
    let nsid = with_option(3, &[]);
    let mut overrun = with_option(10, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let n = overrun.len();
    overrun[n - 9] = 20;
    let mut v1 = with_edns.to_vec().unwrap();
    let n = v1.len();
    v1[n - 5] = 1;
    for bad in [
        response,
        notify,
        two.to_vec().unwrap(),
        trailing,
        chaos,
        pointer.to_vec(),
        subnet,
        nsid,
        overrun,
        v1,
        plain[..11].to_vec(),
        plain[..plain.len() - 1].to_vec(),
    ] {
        assert_eq!(parse(&bad), None, "{bad:?}");
    }
}

#[tokio::test]
async fn entries_are_replaced_only_by_newer_ones_and_removed_only_by_their_owner() {
    let h = Harness::new(DnsConfig::default());
    let both = h
        .ask("web.service.consul.", RecordType::A, Some(1232))
        .await;
    assert!(both.fast.is_some());
    let question = parse(&{
        let mut q = Message::query();
        let mut e = Edns::new();
        e.set_max_payload(1232);
        q.add_query(Query::query(
            Name::from_ascii("web.service.consul.").unwrap(),
            RecordType::A,
        ));
        q.set_edns(e);
        q.to_vec().unwrap()
    })
    .unwrap()
    .question
    .to_vec();
    let a = vec![Record::from_rdata(
        Name::from_ascii("web.service.consul.").unwrap(),
        0,
        RData::A("10.9.9.9".parse().unwrap()),
    )];
    let older = Entry::build(&question, &a, &[], 0, 7).unwrap();
    assert!(h.cache.insert(&question, older).is_none(), "same index");
    let newer = Entry::build(&question, &a, &[], 0, 8).unwrap();
    let newer = h.cache.insert(&question, newer).expect("newer index");
    let stale = Arc::new(Entry::build(&question, &a, &[], 0, 7).unwrap());
    h.cache.remove(&question, &stale);
    assert_eq!(h.cache.len(), 1, "not the cached entry");
    assert!(!h.cache.still_used(&question, &newer), "unused yet");
    newer.used.store(true, Ordering::Relaxed);
    assert!(h.cache.still_used(&question, &newer));
    assert!(
        !h.cache.still_used(&question, &newer),
        "the mark is cleared"
    );
    h.cache.remove(&question, &newer);
    assert_eq!(h.cache.len(), 0);
}
