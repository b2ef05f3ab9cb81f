//! The request pipeline: one decoded request in, one response out.
//!
//! classify the question ([`query`](crate::query)) → read the catalog through
//! [`Lookup`] → build the records ([`answer`](crate::answer)) → set the header and
//! EDNS → fit the transport ([`trim`](crate::trim)); or forward to the recursors. The
//! time and the RNG seed come in as values, so a request with the same catalog, time
//! and seed always gets the same bytes back.

use crate::answer::{self, Answer, Ctx, ServiceSpec};
use crate::cache::{self, Entry};
use crate::query::{self, Question, Zone, Zones};
use crate::recursor;
use crate::response::Response;
use crate::server::Transport;
use crate::trim::{self, DEFAULT_UDP_SIZE, MAX_UDP_SIZE};
use crate::{DnsConfig, Lookup, LookupError};
use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::net::IpAddr;
use std::sync::Arc;
use tracing::{debug, warn};

#[cfg(test)]
mod tests;

/// A decoded request, as the transport hands it over.
pub(crate) struct Inbound<'a> {
    /// The request header.
    pub metadata: Metadata,
    /// Its questions, in their original case. Only the first is answered (Consul).
    pub queries: Vec<Query>,
    /// Its OPT record.
    pub edns: Option<&'a Edns>,
    /// How it arrived.
    pub transport: Transport,
    /// Its bytes, forwarded as they are to the recursors.
    pub raw: &'a [u8],
    /// The asker's address (prepared queries may sort from the node that has it).
    pub client: Option<IpAddr>,
}

/// What to do with a question.
enum Step {
    /// Answer with these records; a service answer carries what its cache entry
    /// depends on.
    Answer(Answer, Option<Watch>),
    Recurse,
    Refuse,
    NotImplemented,
}

/// What a cached service answer depends on: the watcher blocks on this service's
/// index and drops the entry when it moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Watch {
    /// The datacenter asked for (`None`: ours).
    pub dc: Option<String>,
    /// The service, as looked up.
    pub service: String,
    /// Connect-capable instances rather than the service's own.
    pub connect: bool,
    /// The catalog index of the answer.
    pub index: u64,
}

/// A cache entry made by a request: the question's bytes, the encoded answer, what
/// invalidates it.
#[derive(Debug)]
pub(crate) struct Fill {
    pub question: Box<[u8]>,
    pub entry: Entry,
    pub watch: Watch,
}

/// The DNS server's logic, shared by every listener.
pub(crate) struct Engine {
    cfg: DnsConfig,
    zones: Zones,
    lookup: Arc<dyn Lookup>,
}

impl Engine {
    pub fn new(cfg: DnsConfig, lookup: Arc<dyn Lookup>) -> Engine {
        Engine {
            zones: Zones::from_config(&cfg),
            cfg,
            lookup,
        }
    }

    /// Answers one request. `now` is Unix time (the SOA serial); `seed` drives the
    /// shuffling of answers and the recursor order.
    #[cfg(test)]
    pub async fn handle(&self, req: &Inbound<'_>, now: u32, seed: u64) -> Response {
        self.handle_and_fill(req, now, seed).await.0
    }

    /// [`Engine::handle`], plus the cache entry the answer makes when it can be
    /// cached.
    pub async fn handle_and_fill(
        &self,
        req: &Inbound<'_>,
        now: u32,
        seed: u64,
    ) -> (Response, Option<Fill>) {
        let mut rng = StdRng::seed_from_u64(seed);
        if req.metadata.op_code != OpCode::Query {
            // NOTIFY, UPDATE, ...: as miekg/dns answers them for Consul.
            return (self.error(req, ResponseCode::NotImp), None);
        }
        let Some(query) = req.queries.first() else {
            return (self.error(req, ResponseCode::FormErr), None);
        };
        let qtype = query.query_type();
        let parsed = query::parse(query.name(), qtype, &self.zones);
        let ctx = Ctx {
            cfg: &self.cfg,
            qname: query.name(),
            qtype,
            zone: self.zones.labels(parsed.zone),
            now,
            client: req.client,
        };
        match self.resolve(&ctx, &parsed.question, &mut rng).await {
            Step::Answer(answer, watch) => {
                let fill = watch.and_then(|watch| self.fill(req, qtype, &answer, watch));
                (self.finish(req, qtype, answer), fill)
            }
            Step::Recurse => (self.recurse(req, &mut rng).await, None),
            Step::Refuse => (self.error(req, ResponseCode::Refused), None),
            Step::NotImplemented => (self.error(req, ResponseCode::NotImp), None),
        }
    }

    /// The cache entry for a service answer, when the fast path can serve it: a
    /// positive answer, not cut by `a_record_limit`, to a request the fast path
    /// parses.
    fn fill(
        &self,
        req: &Inbound<'_>,
        qtype: RecordType,
        answer: &Answer,
        watch: Watch,
    ) -> Option<Fill> {
        // SRV answers are not subject to a_record_limit.
        let limited = qtype != RecordType::SRV
            && self.cfg.a_record_limit != 0
            && answer.answers.len() >= self.cfg.a_record_limit;
        if answer.rcode != ResponseCode::NoError
            || !answer.authority.is_empty()
            || limited
            || self.cfg.disable_compression
        {
            return None;
        }
        let question = cache::parse(req.raw)?.question;
        // The size the engine's trimming measures for the untrimmed answer.
        let draft = Response {
            metadata: Metadata::response_from_request(&req.metadata),
            queries: req.queries.clone(),
            answers: answer.answers.clone(),
            authority: Vec::new(),
            additional: answer.additional.clone(),
            edns: None,
        };
        let engine_size = draft.len(true);
        let entry = Entry::build(
            question,
            &answer.answers,
            &answer.additional,
            engine_size,
            watch.index,
        )?;
        Some(Fill {
            question: question.into(),
            entry,
            watch,
        })
    }

    async fn resolve(&self, ctx: &Ctx<'_>, question: &Question, rng: &mut StdRng) -> Step {
        let qtype = ctx.qtype;
        let mut watch = None;
        let answer = match question {
            Question::OutOfZone if self.cfg.recursion_available() => return Step::Recurse,
            Question::OutOfZone => return Step::Refuse,
            Question::Ptr { ip } => return self.reverse(ctx, *ip).await,
            _ if matches!(qtype, RecordType::AXFR | RecordType::IXFR) => {
                return Step::NotImplemented
            }
            // SOA and NS questions get the zone's SOA and NS records whatever the
            // name, as in Consul's handleQuery.
            _ if matches!(qtype, RecordType::SOA | RecordType::NS) => {
                let servers = self.lookup.servers().await.unwrap_or_else(|error| {
                    warn!(%error, "cannot list servers for NS records");
                    Vec::new()
                });
                let dc = self.lookup.datacenter();
                Ok(if qtype == RecordType::SOA {
                    answer::soa(ctx, &servers, &dc, rng)
                } else {
                    answer::ns(ctx, &servers, &dc, rng)
                })
            }
            // The apex exists (it holds SOA and NS): NODATA. Consul answers NXDOMAIN,
            // which resolvers may take to mean the whole zone is gone (RFC 8020).
            Question::Apex => Ok(Answer::no_data(ctx)),
            Question::Node { name, dc } => {
                self.lookup
                    .node(dc.as_deref(), name)
                    .await
                    .map(|node| match node {
                        Some(node) => answer::node(ctx, &node),
                        None => Answer::name_error(ctx),
                    })
            }
            Question::Service { name, tag, dc } => {
                let spec = (name.as_str(), tag.as_deref(), dc.as_deref(), false);
                self.service(ctx, spec, rng, &mut watch).await
            }
            Question::Rfc2782 {
                service,
                tag_or_proto,
                dc,
            } => {
                // `_tcp` is the protocol everyone asks for, not a tag.
                let tag = (tag_or_proto != "tcp").then_some(tag_or_proto.as_str());
                let spec = (service.as_str(), tag, dc.as_deref(), false);
                self.service(ctx, spec, rng, &mut watch).await
            }
            Question::Connect { service, dc } => {
                let spec = (service.as_str(), None, dc.as_deref(), true);
                self.service(ctx, spec, rng, &mut watch).await
            }
            Question::Addr { ip, .. } => Ok(answer::addr(ctx, *ip)),
            Question::Query { name, dc } => self.prepared_query(ctx, name, dc.as_deref()).await,
            // Virtual IPs and ingress gateways are not implemented: answered as
            // Consul answers a name it does not know.
            Question::Virtual { .. } | Question::Ingress { .. } | Question::Invalid => {
                Ok(Answer::name_error(ctx))
            }
        };
        match answer {
            Ok(answer) => Step::Answer(answer, watch),
            Err(error) => Step::Answer(lookup_failure(ctx, error), None),
        }
    }

    /// A service question: `(name, tag, dc, connect)`. Sets `watch` when the catalog
    /// reported the index the answer was built from.
    async fn service(
        &self,
        ctx: &Ctx<'_>,
        (name, tag, dc, connect): (&str, Option<&str>, Option<&str>, bool),
        rng: &mut StdRng,
        watch: &mut Option<Watch>,
    ) -> Result<Answer, LookupError> {
        let (entries, index) = self
            .lookup
            .health_service_indexed(dc, name, connect)
            .await?;
        *watch = index.map(|index| Watch {
            dc: dc.map(str::to_owned),
            service: name.to_owned(),
            connect,
            index,
        });
        let dc = dc.map_or_else(|| self.lookup.datacenter(), str::to_owned);
        let spec = ServiceSpec { name, tag, dc: &dc };
        Ok(answer::service(ctx, &spec, entries, rng))
    }

    /// A prepared query question: the query run on the servers, its TTL from the
    /// query's `DNS.TTL`, else the agent's service TTL for the service it asked
    /// about. A query that does not exist is NXDOMAIN.
    async fn prepared_query(
        &self,
        ctx: &Ctx<'_>,
        name: &str,
        dc: Option<&str>,
    ) -> Result<Answer, LookupError> {
        let Some(run) = self.lookup.prepared_query(dc, name, ctx.client).await? else {
            return Ok(Answer::name_error(ctx));
        };
        let ttl = if run.dns.ttl.is_empty() {
            self.cfg.ttl_for_service(&run.service)
        } else {
            // Checked when the query was written; Consul answers with 0 otherwise.
            tribune_types::parse_go_duration(&run.dns.ttl).unwrap_or_default()
        };
        let dc = dc.map_or_else(|| self.lookup.datacenter(), str::to_owned);
        let spec = ServiceSpec {
            name: &run.service,
            tag: None,
            dc: &dc,
        };
        Ok(answer::query(ctx, &spec, &run.nodes, ttl))
    }

    /// A reverse lookup: a node with that address, else a service instance with it as
    /// its own address (Consul's `handlePtr`), else the recursors or NXDOMAIN.
    async fn reverse(&self, ctx: &Ctx<'_>, ip: IpAddr) -> Step {
        match self.ptr_target(ip).await {
            Ok(Some(target)) => Step::Answer(answer::ptr(ctx, target), None),
            Ok(None) if self.cfg.recursion_available() => Step::Recurse,
            Ok(None) => Step::Answer(Answer::name_error(ctx), None),
            Err(error) => Step::Answer(lookup_failure(ctx, error), None),
        }
    }

    async fn ptr_target(&self, ip: IpAddr) -> Result<Option<Name>, LookupError> {
        // PTR targets are always in the primary domain (Consul).
        let primary = self.zones.labels(Zone::Primary);
        let local = self.lookup.datacenter();
        let nodes = self.lookup.nodes(None).await?;
        if let Some(node) = nodes
            .iter()
            .find(|n| answer::parse_ip(&n.address) == Some(ip))
        {
            let dc = if node.datacenter.is_empty() {
                &local
            } else {
                &node.datacenter
            };
            return Ok(answer::node_fqdn(node.node.as_str(), dc, primary));
        }
        let services = self.lookup.services_at(None, ip).await?;
        Ok(services
            .iter()
            .find(|s| answer::parse_ip(&s.address) == Some(ip))
            .and_then(|s| answer::service_fqdn(&s.service, &local, primary)))
    }

    /// An authoritative answer: header, EDNS, then trimmed to the transport.
    fn finish(&self, req: &Inbound<'_>, qtype: RecordType, answer: Answer) -> Response {
        let mut metadata = Metadata::response_from_request(&req.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = self.cfg.recursion_available();
        metadata.response_code = answer.rcode;
        let mut response = Response {
            metadata,
            queries: req.queries.clone(),
            answers: answer.answers,
            authority: answer.authority,
            additional: answer.additional,
            edns: response_edns(req.edns),
        };
        let compress = !self.cfg.disable_compression;
        let before = response.answers.len();
        let trimmed = match req.transport {
            Transport::Udp => trim::trim_udp(
                &mut response,
                udp_limit(req.edns),
                self.cfg.udp_answer_limit,
                compress,
            ),
            Transport::Tcp => trim::trim_tcp(&mut response, qtype, compress),
        };
        if trimmed {
            debug!(
                transport = %req.transport,
                kept = response.answers.len(),
                of = before,
                "DNS response too large, trimmed"
            );
            // Consul leaves TC clear unless asked: HAProxy and friends treat it as an
            // error instead of retrying over TCP.
            response.metadata.truncation = self.cfg.enable_truncate;
        }
        response
    }

    /// A response without records.
    fn error(&self, req: &Inbound<'_>, rcode: ResponseCode) -> Response {
        let mut metadata = Metadata::response_from_request(&req.metadata);
        metadata.response_code = rcode;
        Response {
            metadata,
            queries: req.queries.clone(),
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
            edns: response_edns(req.edns),
        }
    }

    async fn recurse(&self, req: &Inbound<'_>, rng: &mut StdRng) -> Response {
        match recursor::forward(&self.cfg, req.raw, req.transport, rng).await {
            Ok(reply) => relay(req, reply),
            Err(error) => {
                warn!(%error, "recursion failed");
                let mut response = self.error(req, ResponseCode::ServFail);
                response.metadata.recursion_available = true;
                response
            }
        }
    }
}

/// SERVFAIL when the catalog is unreachable; NXDOMAIN for an unreachable datacenter
/// (Consul's `rCodeFromError`).
fn lookup_failure(ctx: &Ctx<'_>, error: LookupError) -> Answer {
    match error {
        LookupError::NoPathToDatacenter => Answer::name_error(ctx),
        LookupError::Unavailable(_) => {
            warn!(%error, name = %ctx.qname, "DNS lookup failed");
            Answer::server_failure()
        }
    }
}

/// The upstream reply with the requester's ID. Its OPT record is kept (it answers the
/// requester's options, which were forwarded), advertising the requester's own buffer
/// size so the encoder does not cut a reply sized for it.
fn relay(req: &Inbound<'_>, reply: Message) -> Response {
    let mut metadata = reply.metadata;
    metadata.id = req.metadata.id;
    metadata.message_type = MessageType::Response;
    let edns = req.edns.map(|asked| {
        let mut edns = reply.edns.clone().unwrap_or_default();
        edns.set_max_payload(asked.max_payload());
        edns
    });
    Response {
        metadata,
        queries: req.queries.clone(),
        answers: reply.answers,
        authority: reply.authorities,
        additional: reply.additionals,
        edns,
    }
}

/// The UDP size a response must fit: the requester's EDNS buffer when above 512, at
/// most [`MAX_UDP_SIZE`] (Consul's `trimUDPResponse`).
fn udp_limit(edns: Option<&Edns>) -> usize {
    match edns {
        Some(edns) if usize::from(edns.max_payload()) > DEFAULT_UDP_SIZE => {
            usize::from(edns.max_payload()).min(MAX_UDP_SIZE)
        }
        _ => DEFAULT_UDP_SIZE,
    }
}

/// The OPT record of a response to an EDNS request (Consul's `setEDNS`): version 0,
/// the requester's buffer size echoed (at least 512), a client-subnet option echoed
/// with scope 0 because these answers do not depend on the requester's address.
/// Other options (cookies, padding, ...) are ignored.
fn response_edns(asked: Option<&Edns>) -> Option<Edns> {
    let asked = asked?;
    let mut edns = Edns::new();
    edns.set_max_payload(asked.max_payload());
    if let Some(EdnsOption::Subnet(subnet)) = asked.option(EdnsCode::Subnet) {
        edns.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(
                subnet.addr(),
                subnet.source_prefix(),
                0,
            )));
    }
    Some(edns)
}
