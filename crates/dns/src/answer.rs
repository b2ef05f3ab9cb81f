//! Answer building: the records for one in-zone question, from catalog data.
//!
//! Pure and deterministic: catalog data comes in as values, randomness through the
//! caller's RNG, the time (the SOA serial) as a number. Each function mirrors one of
//! Consul's `agent/dns.go` builders and says where it departs from it.

use crate::query::encode_hex_ip;
use crate::DnsConfig;
use crate::ServerInfo;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;
use tribune_types::model::ops::HealthEntry;
use tribune_types::model::{Check, Node, Service};
use tribune_types::HealthStatus;

#[cfg(test)]
mod tests;

/// What one question is being answered with.
pub(crate) struct Ctx<'a> {
    /// The configuration.
    pub cfg: &'a DnsConfig,
    /// The question name as asked: the owner of answer records, so its case is echoed.
    pub qname: &'a Name,
    /// The question type.
    pub qtype: RecordType,
    /// Labels of the zone the question was asked in (lower case): SOA owner and the
    /// suffix of generated names.
    pub zone: &'a [String],
    /// Unix time, the SOA serial.
    pub now: u32,
    /// The asker's address, if known.
    pub client: Option<std::net::IpAddr>,
}

/// The sections and response code of an answer (header flags and EDNS are the
/// caller's).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

impl Answer {
    fn empty(rcode: ResponseCode) -> Answer {
        Answer {
            rcode,
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
        }
    }

    /// NXDOMAIN with the SOA in the authority section (RFC 2308 negative caching).
    pub fn name_error(ctx: &Ctx<'_>) -> Answer {
        let mut a = Answer::empty(ResponseCode::NXDomain);
        a.authority.extend(soa_record(ctx));
        a
    }

    /// NOERROR, no records of the asked type, the SOA in the authority section.
    pub fn no_data(ctx: &Ctx<'_>) -> Answer {
        Answer::empty(ResponseCode::NoError).soa_if_empty(ctx)
    }

    /// SERVFAIL: the catalog could not be read.
    pub fn server_failure() -> Answer {
        Answer::empty(ResponseCode::ServFail)
    }

    /// A NOERROR answer with nothing in the answer section is a NODATA response and
    /// carries the SOA (Consul's `errNoData`). Consul omits it for node questions of
    /// other types; adding it there too is what RFC 2308 asks for.
    fn soa_if_empty(mut self, ctx: &Ctx<'_>) -> Answer {
        if self.rcode == ResponseCode::NoError && self.answers.is_empty() {
            self.authority.extend(soa_record(ctx));
        }
        self
    }
}

/// A duration as a TTL in seconds.
fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// A name from dotted parts (`["web", "node", "dc1"]` plus the zone), keeping case and
/// accepting any byte a catalog name may hold. `None` if a label or the whole name is
/// too long for DNS: such an entry is skipped rather than answered wrongly.
fn dotted_name<'s>(parts: impl IntoIterator<Item = &'s str>) -> Option<Name> {
    let labels: Vec<&[u8]> = parts
        .into_iter()
        .flat_map(|p| p.split('.'))
        .filter(|l| !l.is_empty())
        .map(str::as_bytes)
        .collect();
    let mut name = Name::from_labels(labels).ok()?;
    name.set_fqdn(true);
    Some(name)
}

fn zone_name(ctx: &Ctx<'_>) -> Option<Name> {
    dotted_name(ctx.zone.iter().map(String::as_str))
}

/// The zone's SOA (Consul's `makeSOARecord`): `ns.<domain>`, `hostmaster.<domain>`, the
/// current Unix time as serial, the record's own TTL equal to the minimum TTL so a
/// negative answer is cached no longer than configured.
pub(crate) fn soa_record(ctx: &Ctx<'_>) -> Option<Record> {
    let zone = zone_name(ctx)?;
    let soa = &ctx.cfg.soa;
    let i32_of = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    let rdata = SOA::new(
        zone.prepend_label("ns").ok()?,
        zone.prepend_label("hostmaster").ok()?,
        ctx.now,
        i32_of(soa.refresh),
        i32_of(soa.retry),
        i32_of(soa.expire),
        soa.min_ttl,
    );
    Some(Record::from_rdata(zone, soa.min_ttl, RData::SOA(rdata)))
}

/// Which address families a question accepts (Consul's `TranslateAddressAccept`: a
/// hostname is always acceptable, so it can become a CNAME).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    V4,
    V6,
    Any,
}

fn accept_for(qtype: RecordType) -> Accept {
    match qtype {
        RecordType::A => Accept::V4,
        RecordType::AAAA => Accept::V6,
        _ => Accept::Any,
    }
}

/// Go's `net.ParseIP` + `To4`: an IPv4-mapped IPv6 address counts as IPv4.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) => Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)),
        v4 => Some(v4),
    }
}

/// Consul's `translateAddressAccept`: the `lan_ipv6` / `lan_ipv4` tagged address
/// when the question wants that family, else the default address if it is of an
/// acceptable family or a hostname; `""` when nothing fits.
fn translate<'a>(accept: Accept, def: &'a str, v4: &'a str, v6: &'a str) -> &'a str {
    if accept != Accept::V4 && !v6.is_empty() {
        return v6;
    }
    if accept != Accept::V6 && !v4.is_empty() {
        return v4;
    }
    if accept == Accept::Any {
        return def;
    }
    match parse_ip(def) {
        Some(IpAddr::V4(_)) if accept == Accept::V4 => def,
        Some(IpAddr::V6(_)) if accept == Accept::V6 => def,
        None => def,
        Some(_) => "",
    }
}

fn node_address(node: &Node, accept: Accept) -> &str {
    let tagged = |k: &str| node.tagged_addresses.get(k).map_or("", String::as_str);
    translate(
        accept,
        &node.address,
        tagged("lan_ipv4"),
        tagged("lan_ipv6"),
    )
}

fn service_address(svc: &Service, accept: Accept) -> &str {
    let tagged = |k: &str| {
        svc.tagged_addresses
            .get(k)
            .map_or("", |a| a.address.as_str())
    };
    translate(accept, &svc.address, tagged("lan_ipv4"), tagged("lan_ipv6"))
}

/// The A or AAAA data for `ip`, if the question type takes it. Consul's
/// `makeARecord` also answers TXT and NS questions about services with addresses;
/// Tribune answers those NODATA instead.
fn address_rdata(qtype: RecordType, ip: IpAddr) -> Option<RData> {
    match (ip, qtype) {
        (IpAddr::V4(v4), RecordType::A | RecordType::ANY | RecordType::SRV) => {
            Some(RData::A(A(v4)))
        }
        (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY | RecordType::SRV) => {
            Some(RData::AAAA(AAAA(v6)))
        }
        _ => None,
    }
}

/// An address record whatever the question type (glue, `.addr` extras).
fn any_address(owner: Name, ip: IpAddr, ttl: u32) -> Record {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner, ttl, rdata)
}

/// RFC 1464 `key=value`, Consul's `encodeKVasRFC1464`: in the key, backquotes and `=`
/// are escaped with a backquote, and so is every leading and trailing space; in the
/// value only backquotes are.
pub(crate) fn encode_rfc1464(key: &str, value: &str) -> String {
    let key = key.replace('`', "``").replace('=', "`=");
    let leading = key.len() - key.trim_start_matches(' ').len();
    let key = format!("{}{}", "` ".repeat(leading), &key[leading..]);
    let trailing = key.len() - key.trim_end_matches(' ').len();
    let key = format!("{}{}", &key[..key.len() - trailing], "` ".repeat(trailing));
    format!("{key}={}", value.replace('`', "``"))
}

/// One TXT record per node meta entry (Consul's `makeTXTRecordFromNodeMeta`): keys
/// starting `rfc1035-` give their value only, the others `k=v`. A text longer than a
/// character-string (255 bytes) is split over several strings of the one record.
fn meta_txt(owner: &Name, node: &Node, ttl: u32) -> Vec<Record> {
    node.meta
        .iter()
        .map(|(key, value)| {
            let text = if key.to_ascii_lowercase().starts_with("rfc1035-") {
                value.clone()
            } else {
                encode_rfc1464(key, value)
            };
            let mut chunks: Vec<&[u8]> = text.as_bytes().chunks(255).collect();
            if chunks.is_empty() {
                chunks.push(b"");
            }
            Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::from_bytes(chunks)))
        })
        .collect()
}

/// A node's own A/AAAA (or CNAME to its hostname) under `owner` (Consul's
/// `makeRecordFromNode`). The CNAME target is not chased.
fn node_records(qtype: RecordType, node: &Node, owner: &Name, ttl: u32) -> Vec<Record> {
    let addr = node_address(node, accept_for(qtype));
    if addr.is_empty() {
        return Vec::new();
    }
    match parse_ip(addr) {
        Some(ip) => address_rdata(qtype, ip)
            .map(|rdata| Record::from_rdata(owner.clone(), ttl, rdata))
            .into_iter()
            .collect(),
        None => dotted_name([addr])
            .map(|target| Record::from_rdata(owner.clone(), ttl, RData::CNAME(CNAME(target))))
            .into_iter()
            .collect(),
    }
}

/// `<node>.node <dc>` question: the node's address and, as Consul does, its meta as
/// TXT records (in the answer for TXT and ANY questions, else in the additional
/// section when `enable_additional_node_meta_txt`).
pub(crate) fn node(ctx: &Ctx<'_>, node: &Node) -> Answer {
    let qtype = ctx.qtype;
    if !matches!(
        qtype,
        RecordType::A | RecordType::AAAA | RecordType::ANY | RecordType::TXT
    ) {
        return Answer::no_data(ctx);
    }
    let ttl = secs(ctx.cfg.node_ttl);
    let mut answer = Answer::empty(ResponseCode::NoError);
    if qtype != RecordType::TXT {
        answer
            .answers
            .extend(node_records(qtype, node, ctx.qname, ttl));
    }
    let meta_answers = matches!(qtype, RecordType::TXT | RecordType::ANY);
    if ctx.cfg.enable_additional_node_meta_txt || meta_answers {
        let txt = meta_txt(ctx.qname, node, ttl);
        if meta_answers {
            answer.answers.extend(txt);
        } else {
            answer.additional.extend(txt);
        }
    }
    answer.soa_if_empty(ctx)
}

/// A `<hex>.addr` question: the decoded address. A question for the other family gets
/// NODATA with the address in the additional section, as Consul puts it there.
pub(crate) fn addr(ctx: &Ctx<'_>, ip: IpAddr) -> Answer {
    let record = any_address(ctx.qname.clone(), ip, secs(ctx.cfg.node_ttl));
    let mut answer = Answer::empty(ResponseCode::NoError);
    if address_rdata(ctx.qtype, ip).is_some() && ctx.qtype != RecordType::SRV {
        answer.answers.push(record);
    } else {
        answer.additional.push(record);
    }
    answer.soa_if_empty(ctx)
}

/// A reverse lookup that matched `target`. Consul's PTR records have TTL 0.
pub(crate) fn ptr(ctx: &Ctx<'_>, target: Name) -> Answer {
    if !matches!(ctx.qtype, RecordType::PTR | RecordType::ANY) {
        return Answer::no_data(ctx);
    }
    let mut answer = Answer::empty(ResponseCode::NoError);
    answer.answers.push(Record::from_rdata(
        ctx.qname.clone(),
        0,
        RData::PTR(PTR(target)),
    ));
    answer
}

/// `<node>.node.<dc>.<zone>`, the name Consul gives a node in answers.
pub(crate) fn node_fqdn(node: &str, dc: &str, zone: &[String]) -> Option<Name> {
    let dc = dc.to_ascii_lowercase();
    dotted_name(
        [node, "node", dc.as_str()]
            .into_iter()
            .chain(zone.iter().map(String::as_str)),
    )
}

/// `<service>.service.<dc>.<zone>`, the PTR target of a service address.
pub(crate) fn service_fqdn(service: &str, dc: &str, zone: &[String]) -> Option<Name> {
    let dc = dc.to_ascii_lowercase();
    dotted_name(
        [service, "service", dc.as_str()]
            .into_iter()
            .chain(zone.iter().map(String::as_str)),
    )
}

/// Consul's `dnsLabelRegex`/`InvalidNameRe`: servers whose names are not plain DNS
/// labels are left out of NS records.
fn valid_label(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Up to three random servers as NS records of the zone, with glue (Consul's
/// `getNameserversAndNodeRecord`).
fn nameservers(
    ctx: &Ctx<'_>,
    servers: &[ServerInfo],
    dc: &str,
    rng: &mut impl Rng,
) -> (Vec<Record>, Vec<Record>) {
    let Some(zone) = zone_name(ctx) else {
        return (Vec::new(), Vec::new());
    };
    let ttl = secs(ctx.cfg.node_ttl);
    let mut servers: Vec<&ServerInfo> = servers.iter().collect();
    servers.shuffle(rng);
    let mut ns = Vec::new();
    let mut glue = Vec::new();
    for server in servers {
        if !valid_label(&server.name) {
            continue;
        }
        let lower = server.name.to_ascii_lowercase();
        let Some(fqdn) = node_fqdn(&lower, dc, ctx.zone) else {
            continue;
        };
        ns.push(Record::from_rdata(
            zone.clone(),
            ttl,
            RData::NS(NS(fqdn.clone())),
        ));
        glue.push(any_address(fqdn, server.addr, ttl));
        if ns.len() >= 3 {
            break;
        }
    }
    (ns, glue)
}

/// An SOA question (for any name in the zone, as Consul answers it): the SOA, the NS
/// records in the authority section, their glue as additional records.
pub(crate) fn soa(ctx: &Ctx<'_>, servers: &[ServerInfo], dc: &str, rng: &mut impl Rng) -> Answer {
    let (ns, glue) = nameservers(ctx, servers, dc, rng);
    let mut answer = Answer::empty(ResponseCode::NoError);
    answer.answers.extend(soa_record(ctx));
    answer.authority = ns;
    answer.additional = glue;
    answer
}

/// An NS question (for any name in the zone, as Consul answers it).
pub(crate) fn ns(ctx: &Ctx<'_>, servers: &[ServerInfo], dc: &str, rng: &mut impl Rng) -> Answer {
    let (ns, glue) = nameservers(ctx, servers, dc, rng);
    let mut answer = Answer::empty(ResponseCode::NoError);
    answer.answers = ns;
    answer.additional = glue;
    answer.soa_if_empty(ctx)
}

/// What a service question selects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServiceSpec<'a> {
    /// Service name (the TTL is looked up by it).
    pub name: &'a str,
    /// Tag filter (case-insensitive).
    pub tag: Option<&'a str>,
    /// The datacenter asked about (or ours): `.addr` targets carry it.
    pub dc: &'a str,
}

/// The checks that bear on an instance: its node's and its own.
fn own_checks(entry: &HealthEntry) -> impl Iterator<Item = &Check> {
    entry
        .checks
        .iter()
        .filter(|c| c.service_id.is_empty() || c.service_id == entry.service.id.as_str())
}

/// Consul's `CheckServiceNodes.Filter`: any critical check (maintenance is stored
/// critical) drops the instance, and with `only_passing` anything not passing does.
fn healthy(entry: &HealthEntry, only_passing: bool) -> bool {
    own_checks(entry).all(|c| match c.status {
        HealthStatus::Passing => true,
        HealthStatus::Warning => !only_passing,
        HealthStatus::Critical | HealthStatus::Maintenance => false,
    })
}

/// The instances a service question answers with: tag-filtered (Consul's catalog
/// compares tags case-insensitively) and healthy.
pub(crate) fn select(
    entries: Vec<HealthEntry>,
    tag: Option<&str>,
    only_passing: bool,
) -> Vec<HealthEntry> {
    let tagged = |e: &HealthEntry| match tag {
        None => true,
        Some(tag) => e.service.has_tag(tag),
    };
    entries
        .into_iter()
        .filter(|e| tagged(e) && healthy(e, only_passing))
        .collect()
}

/// SRV weight from the instance's `Weights` and its aggregated status (Consul's
/// `findWeight`; critical instances never get here).
fn weight(entry: &HealthEntry) -> u16 {
    let warning = own_checks(entry).any(|c| c.status == HealthStatus::Warning);
    let w = if warning {
        entry.service.weights.warning
    } else {
        entry.service.weights.passing
    };
    u16::try_from(w.max(0)).unwrap_or(u16::MAX)
}

/// Records of one instance: answers and (for SRV) additional records. Consul's
/// `makeNodeServiceRecords` and the three `makeRecordFrom*` it picks from.
fn instance_records(
    ctx: &Ctx<'_>,
    spec: &ServiceSpec<'_>,
    entry: &HealthEntry,
    ttl: u32,
) -> (Vec<Record>, Vec<Record>) {
    let qtype = ctx.qtype;
    let accept = accept_for(qtype);
    let node = &entry.node;
    let svc = &entry.service;
    let service_addr = service_address(svc, accept);
    let node_addr = node_address(node, accept);
    if service_addr.is_empty() && node_addr.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let node_ip = parse_ip(node_addr);
    let service_ip = parse_ip(service_addr);
    let node_dc = if node.datacenter.is_empty() {
        spec.dc
    } else {
        node.datacenter.as_str()
    };

    // The target an address is published under for SRV answers.
    enum Target<'t> {
        /// `<node>.node.<dc>.<zone>`.
        Node,
        /// `<hex>.addr.<dc>.<zone>`.
        Addr,
        /// A hostname, published as is (SRV) or as a CNAME.
        Host(&'t str),
    }
    let (target, ip) = if service_addr.is_empty() {
        match node_ip {
            // A translated (tagged) node address is not the node's name's address.
            Some(ip) if node.address == node_addr => (Target::Node, Some(ip)),
            Some(ip) => (Target::Addr, Some(ip)),
            None => (Target::Host(node_addr), None),
        }
    } else if let Some(ip) = service_ip {
        // Any explicit service IP is published under `.addr`, even one equal to the
        // node's (Consul's docs: "configured with an explicit IP address").
        (Target::Addr, Some(ip))
    } else if dotted_name([service_addr]).is_some_and(|n| n.eq_ignore_root_case(ctx.qname))
        && node_ip.is_some()
    {
        // A service whose address is the very name asked: use the node's address.
        (Target::Node, node_ip)
    } else {
        (Target::Host(service_addr), None)
    };

    let owner = ctx.qname.clone();
    if let Target::Host(host) = target {
        let Some(host) = dotted_name([host]) else {
            return (Vec::new(), Vec::new());
        };
        if qtype == RecordType::SRV {
            let srv = SRV::new(1, weight(entry), svc.port, host);
            return (
                vec![Record::from_rdata(owner, ttl, RData::SRV(srv))],
                Vec::new(),
            );
        }
        return (
            vec![Record::from_rdata(owner, ttl, RData::CNAME(CNAME(host)))],
            Vec::new(),
        );
    }
    let Some(ip) = ip else {
        return (Vec::new(), Vec::new());
    };
    let Some(rdata) = address_rdata(qtype, ip) else {
        return (Vec::new(), Vec::new());
    };
    if qtype != RecordType::SRV {
        return (vec![Record::from_rdata(owner, ttl, rdata)], Vec::new());
    }
    let target = match target {
        Target::Node => node_fqdn(node.node.as_str(), node_dc, ctx.zone),
        _ => {
            let hex = encode_hex_ip(ip);
            let dc = spec.dc.to_ascii_lowercase();
            dotted_name(
                [hex.as_str(), "addr", dc.as_str()]
                    .into_iter()
                    .chain(ctx.zone.iter().map(String::as_str)),
            )
        }
    };
    let Some(target) = target else {
        return (Vec::new(), Vec::new());
    };
    let srv = SRV::new(1, weight(entry), svc.port, target.clone());
    (
        vec![Record::from_rdata(owner, ttl, RData::SRV(srv))],
        vec![Record::from_rdata(target, ttl, rdata)],
    )
}

/// Two records are the same answer when type and data match (Consul dedupes on the
/// record's text, whose owner and TTL are the same for every instance).
fn record_key(record: &Record) -> String {
    format!("{:?} {:?}", record.record_type(), record.data)
}

/// A service question (`.service`, RFC 2782, `.connect`): healthy instances in random
/// order; SRV records with their targets' addresses (and node meta TXT) as additional
/// records for SRV questions, A/AAAA records (or a CNAME) otherwise. No healthy
/// instance is NXDOMAIN; healthy instances without a record of the asked type, NODATA.
pub(crate) fn service(
    ctx: &Ctx<'_>,
    spec: &ServiceSpec<'_>,
    entries: Vec<HealthEntry>,
    rng: &mut impl Rng,
) -> Answer {
    let mut entries = select(entries, spec.tag, ctx.cfg.only_passing);
    if entries.is_empty() {
        return Answer::name_error(ctx);
    }
    entries.shuffle(rng);
    let ttl = secs(ctx.cfg.ttl_for_service(spec.name));
    let answer = if ctx.qtype == RecordType::SRV {
        srv_answer(ctx, spec, &entries, ttl)
    } else {
        address_answer(ctx, spec, &entries, ttl)
    };
    answer.soa_if_empty(ctx)
}

/// A prepared query's answer (Consul's `preparedQueryLookup`): the instances the
/// query kept, in the order it gave them (filtered, shuffled or sorted by
/// distance on the server); the agent's `only_passing` does not apply. No
/// instance at all is NXDOMAIN, as for a service.
pub(crate) fn query(
    ctx: &Ctx<'_>,
    spec: &ServiceSpec<'_>,
    entries: &[HealthEntry],
    ttl: Duration,
) -> Answer {
    if entries.is_empty() {
        return Answer::name_error(ctx);
    }
    let ttl = secs(ttl);
    let answer = if ctx.qtype == RecordType::SRV {
        srv_answer(ctx, spec, entries, ttl)
    } else {
        address_answer(ctx, spec, entries, ttl)
    };
    answer.soa_if_empty(ctx)
}

/// Consul's `addServiceNodeRecordsToMessage`: one record per distinct address, a
/// hostname's CNAME only when no instance has an address, at most `a_record_limit`
/// instances.
fn address_answer(
    ctx: &Ctx<'_>,
    spec: &ServiceSpec<'_>,
    entries: &[HealthEntry],
    ttl: u32,
) -> Answer {
    let mut answer = Answer::empty(ResponseCode::NoError);
    let mut seen = HashSet::new();
    let mut cname: Option<Vec<Record>> = None;
    let mut count = 0usize;
    for entry in entries {
        let (records, _) = instance_records(ctx, spec, entry, ttl);
        let Some(first) = records.first() else {
            continue;
        };
        if !seen.insert(record_key(first)) {
            continue;
        }
        if first.record_type() == RecordType::CNAME {
            cname.get_or_insert(records);
            continue;
        }
        answer.answers.extend(records);
        count += 1;
        if count == ctx.cfg.a_record_limit {
            break;
        }
    }
    if answer.answers.is_empty() {
        answer.answers = cname.unwrap_or_default();
    }
    answer
}

/// Consul's `addServiceSRVRecordsToMessage`: one SRV per distinct node, address and
/// port; additional records for the targets and, when
/// `enable_additional_node_meta_txt`, the nodes' meta under their node names.
fn srv_answer(ctx: &Ctx<'_>, spec: &ServiceSpec<'_>, entries: &[HealthEntry], ttl: u32) -> Answer {
    let mut answer = Answer::empty(ResponseCode::NoError);
    let mut seen = HashSet::new();
    let mut extra_seen = HashSet::new();
    for entry in entries {
        let tuple = (
            entry.node.node.as_str().to_owned(),
            service_address(&entry.service, Accept::Any).to_owned(),
            entry.service.port,
        );
        if !seen.insert(tuple) {
            continue;
        }
        let (answers, mut extra) = instance_records(ctx, spec, entry, ttl);
        answer.answers.extend(answers);
        if ctx.cfg.enable_additional_node_meta_txt {
            let dc = if entry.node.datacenter.is_empty() {
                spec.dc
            } else {
                entry.node.datacenter.as_str()
            };
            if let Some(owner) = node_fqdn(entry.node.node.as_str(), dc, ctx.zone) {
                extra.extend(meta_txt(&owner, &entry.node, ttl));
            }
        }
        // Two instances on one node would repeat the node's records.
        for record in extra {
            if extra_seen.insert(format!("{} {}", record.name, record_key(&record))) {
                answer.additional.push(record);
            }
        }
    }
    answer
}
