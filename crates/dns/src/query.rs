//! Question names → typed [`Question`]s, relative to `domain` or `alt_domain`.
//!
//! Pure string work: no catalog, no I/O. Names are matched case-insensitively (every
//! label is lower-cased here); the caller keeps the question's original [`Name`] to
//! echo it as the owner of answer records.
//!
//! The grammar is Consul's `dispatch` (agent/dns.go): the domain is trimmed, then the
//! labels are scanned from the right for the first "kind" label (`service`, `connect`,
//! `virtual`, `ingress`, `node`, `query`, `addr`); what precedes it names the thing,
//! what follows it is the locality (`<dc>` or `<dc>.dc`). For SRV questions a label
//! starting with `_` also ends the scan, so `_web._tcp.consul` needs no `.service`.

use crate::DnsConfig;
use hickory_proto::rr::{Name, RecordType};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which of our two zones a question was asked in. Answers echo it: SRV targets and
/// the SOA of a question asked under `alt_domain` are under `alt_domain` too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// `domain`.
    Primary,
    /// `alt_domain`.
    Alt,
}

/// The zones this server is authoritative for, as lower-cased labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zones {
    primary: Vec<String>,
    alt: Option<Vec<String>>,
}

fn labels_of(domain: &str) -> Vec<String> {
    domain
        .split('.')
        .filter(|l| !l.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

impl Zones {
    /// Zones for `domain` and an optional `alt_domain` (trailing dots optional). An
    /// alternate domain equal to the primary one, or the root, is ignored.
    pub fn new(domain: &str, alt_domain: Option<&str>) -> Zones {
        let primary = labels_of(domain);
        let alt = alt_domain
            .map(labels_of)
            .filter(|alt| !alt.is_empty() && *alt != primary);
        Zones { primary, alt }
    }

    /// Zones of a [`DnsConfig`].
    pub fn from_config(cfg: &DnsConfig) -> Zones {
        Zones::new(&cfg.domain, cfg.alt_domain.as_deref())
    }

    /// The labels of a zone (lower case, without the root).
    pub fn labels(&self, zone: Zone) -> &[String] {
        match (zone, &self.alt) {
            (Zone::Alt, Some(alt)) => alt,
            _ => &self.primary,
        }
    }

    /// Which zone `labels` (lower case) fall in, and how many labels precede it.
    /// Like Consul's `trimDomain`, the longer domain wins when both match.
    fn locate(&self, labels: &[String]) -> Option<(Zone, usize)> {
        let mut candidates = vec![(Zone::Primary, &self.primary)];
        if let Some(alt) = &self.alt {
            candidates.push((Zone::Alt, alt));
        }
        candidates.sort_by_key(|(_, z)| std::cmp::Reverse(z.len()));
        candidates.into_iter().find_map(|(zone, z)| {
            (labels.len() >= z.len() && labels[labels.len() - z.len()..] == z[..])
                .then(|| (zone, labels.len() - z.len()))
        })
    }
}

/// A question name, classified.
///
/// Every string is lower case. `dc: None` means the agent's own datacenter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    /// The domain itself (`consul.`): SOA and NS live here.
    Apex,
    /// `<node>.node[.<dc>[.dc]]`; dots in the node name are allowed
    /// (`foo.bar.node.consul` is node `foo.bar`).
    Node {
        /// Node name.
        name: String,
        /// Datacenter.
        dc: Option<String>,
    },
    /// `[<tag>.]<service>.service[.<dc>[.dc]]`. Every label before the service name is
    /// re-joined with `.` into one tag: Consul ≤0.3's SRV style, kept by Consul.
    Service {
        /// Service name.
        name: String,
        /// Tag filter.
        tag: Option<String>,
        /// Datacenter.
        dc: Option<String>,
    },
    /// `<service>.connect[.<dc>[.dc]]`: the service's Connect-capable endpoints.
    Connect {
        /// Service name.
        service: String,
        /// Datacenter.
        dc: Option<String>,
    },
    /// `_<service>._<tag|proto>[.service][.<dc>[.dc]]` (RFC 2782). `_tcp` means "no
    /// tag filter"; any other second label is a tag filter (so `_udp` filters on tag
    /// `udp`, as in Consul).
    Rfc2782 {
        /// Service name, without the underscore.
        service: String,
        /// The second label without its underscore (`tcp`, or a tag).
        tag_or_proto: String,
        /// Datacenter.
        dc: Option<String>,
    },
    /// `<hex>.addr[.<dc>]`: 8 hex digits are an IPv4 address, 32 an IPv6 one.
    Addr {
        /// The decoded address.
        ip: IpAddr,
        /// Datacenter label, if any (unused: the address is the answer).
        dc: Option<String>,
    },
    /// `<name-or-id>.query[.<dc>]` or `_<name>._<proto>.query[.<dc>]`: a prepared
    /// query. Prepared queries are not implemented yet: answered NXDOMAIN with the
    /// SOA, as Consul answers an unknown query.
    Query {
        /// Query name or ID.
        name: String,
        /// Datacenter.
        dc: Option<String>,
    },
    /// `<d.c.b.a>.in-addr.arpa` or a full 32-nibble `ip6.arpa` name.
    Ptr {
        /// The address asked about.
        ip: IpAddr,
    },
    /// `<service>.virtual[.<peer>]`: virtual IPs are not implemented; NXDOMAIN.
    Virtual {
        /// Service name.
        service: String,
    },
    /// `<service>.ingress[.<dc>[.dc]]`: ingress gateways are not implemented; NXDOMAIN.
    Ingress {
        /// Service name.
        service: String,
    },
    /// Outside `domain` and `alt_domain` (including `arpa` names that are not a whole
    /// address): forwarded to the recursors, or REFUSED.
    OutOfZone,
    /// In our zone but meaningless (`service.consul`, `foo.node.a.b.consul`, a
    /// `.peer` locality, which needs peering): NXDOMAIN with the SOA.
    Invalid,
}

/// A classified question and the zone it was asked in ([`Zone::Primary`] for
/// [`Question::Ptr`], which Consul always answers in the primary domain, and for
/// [`Question::OutOfZone`], where it does not matter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The question.
    pub question: Question,
    /// The zone it was asked in.
    pub zone: Zone,
}

const KINDS: [&str; 7] = [
    "service", "connect", "virtual", "ingress", "node", "query", "addr",
];

/// Classifies a question name. `qtype` matters only for the RFC 2782 form without
/// `.service`, which Consul accepts for SRV questions only.
pub fn parse(name: &Name, qtype: RecordType, zones: &Zones) -> Parsed {
    let labels: Vec<String> = name
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect();
    let Some((zone, n)) = zones.locate(&labels) else {
        let question = parse_arpa(&labels).map_or(Question::OutOfZone, |ip| Question::Ptr { ip });
        return Parsed {
            question,
            zone: Zone::Primary,
        };
    };
    Parsed {
        question: parse_in_zone(&labels[..n], qtype),
        zone,
    }
}

fn parse_in_zone(rest: &[String], qtype: RecordType) -> Question {
    if rest.is_empty() {
        return Question::Apex;
    }
    let srv = qtype == RecordType::SRV;
    let Some(i) = rest
        .iter()
        .rposition(|l| KINDS.contains(&l.as_str()) || (srv && l.starts_with('_')))
    else {
        return Question::Invalid;
    };
    let (kind, parts) = if KINDS.contains(&rest[i].as_str()) {
        (rest[i].as_str(), &rest[..i])
    } else {
        // The RFC 2782 form without `.service`: the `_` label belongs to the name.
        ("service", &rest[..=i])
    };
    let suffix = &rest[i + 1..];
    let Some(last) = parts.last() else {
        return Question::Invalid;
    };
    match kind {
        "service" => {
            let Some(dc) = locality(suffix) else {
                return Question::Invalid;
            };
            if let [svc, tag] = parts {
                if let (Some(svc), Some(tag)) = (svc.strip_prefix('_'), tag.strip_prefix('_')) {
                    if svc.is_empty() {
                        return Question::Invalid;
                    }
                    return Question::Rfc2782 {
                        service: svc.to_owned(),
                        tag_or_proto: tag.to_owned(),
                        dc,
                    };
                }
            }
            let tag = (parts.len() > 1).then(|| parts[..parts.len() - 1].join("."));
            Question::Service {
                name: last.clone(),
                tag,
                dc,
            }
        }
        "connect" => match locality(suffix) {
            Some(dc) => Question::Connect {
                service: last.clone(),
                dc,
            },
            None => Question::Invalid,
        },
        "virtual" => match suffix.len() {
            // `<service>.virtual[.<peer>]`: the optional label names a peer.
            0 | 1 => Question::Virtual {
                service: last.clone(),
            },
            _ => Question::Invalid,
        },
        "ingress" => match locality(suffix) {
            Some(_) => Question::Ingress {
                service: last.clone(),
            },
            None => Question::Invalid,
        },
        "node" => match locality(suffix) {
            Some(dc) => Question::Node {
                name: parts.join("."),
                dc,
            },
            None => Question::Invalid,
        },
        "query" => {
            // Consul's parseDatacenter: nothing or exactly one label.
            let dc = match suffix {
                [] => None,
                [dc] => Some(dc.clone()),
                _ => return Question::Invalid,
            };
            let first_last_underscored = parts.len() >= 2
                && parts[0].starts_with('_')
                && parts[parts.len() - 1].starts_with('_');
            let name = if first_last_underscored {
                // `_<name>._<proto>.query`: the protocol label is ignored.
                parts[..parts.len() - 1].join(".")[1..].to_owned()
            } else {
                parts.join(".")
            };
            Question::Query { name, dc }
        }
        "addr" => {
            // Consul ignores whatever follows `.addr` (the SRV targets it generates
            // always carry the datacenter).
            if parts.len() != 1 {
                return Question::Invalid;
            }
            match decode_hex_ip(last) {
                Some(ip) => Question::Addr {
                    ip,
                    dc: locality(suffix).flatten(),
                },
                None => Question::Invalid,
            }
        }
        _ => Question::Invalid,
    }
}

/// Consul's `parseLocality` without peering: nothing, `<dc>`, or `<dc>.dc`. `None`
/// is invalid (including `<peer>.peer`, which needs cluster peering).
fn locality(suffix: &[String]) -> Option<Option<String>> {
    match suffix {
        [] => Some(None),
        [dc] => Some(Some(dc.clone())),
        [dc, kind] if kind == "dc" => Some(Some(dc.clone())),
        _ => None,
    }
}

/// `c000020a` → 192.0.2.10; 32 digits → IPv6. Anything else is not an address.
fn decode_hex_ip(label: &str) -> Option<IpAddr> {
    if !label.is_ascii() || !label.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Vec<u8> = (0..label.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&label[i..i + 2], 16).ok())
        .collect::<Option<_>>()?;
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&bytes);
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// The hex label of an address, as used in `.addr` SRV targets (`7f000001`).
pub fn encode_hex_ip(ip: IpAddr) -> String {
    let bytes = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A whole address under `in-addr.arpa` (4 decimal labels) or `ip6.arpa` (32 nibble
/// labels); anything shorter or malformed is not one of our names.
fn parse_arpa(labels: &[String]) -> Option<IpAddr> {
    let (zone, rest) = match labels {
        [rest @ .., a, b] if a == "in-addr" && b == "arpa" => ("v4", rest),
        [rest @ .., a, b] if a == "ip6" && b == "arpa" => ("v6", rest),
        _ => return None,
    };
    match zone {
        "v4" => {
            let [d, c, b, a] = rest else {
                return None;
            };
            let octet = |s: &String| {
                if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                s.parse::<u8>().ok()
            };
            Some(IpAddr::V4(Ipv4Addr::new(
                octet(a)?,
                octet(b)?,
                octet(c)?,
                octet(d)?,
            )))
        }
        _ => {
            if rest.len() != 32 {
                return None;
            }
            let mut value: u128 = 0;
            // Nibbles are listed least significant first.
            for nibble in rest.iter().rev() {
                if nibble.len() != 1 {
                    return None;
                }
                value = (value << 4) | u128::from(u8::from_str_radix(nibble, 16).ok()?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(value)))
        }
    }
}

/// The reverse-lookup name of an address (`1.0.0.127.in-addr.arpa.`), lower case.
pub fn arpa_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
        }
        IpAddr::V6(v6) => {
            let mut out = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                out.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            out.push_str("ip6.arpa.");
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones() -> Zones {
        Zones::new("consul.", Some("example.com."))
    }

    fn q(name: &str, qtype: RecordType) -> Parsed {
        parse(&Name::from_ascii(name).unwrap(), qtype, &zones())
    }

    fn a(name: &str) -> Question {
        q(name, RecordType::A).question
    }

    fn srv(name: &str) -> Question {
        q(name, RecordType::SRV).question
    }

    fn s(v: &str) -> String {
        v.to_owned()
    }

    #[test]
    fn nodes_with_and_without_datacenter() {
        let node = |name: &str, dc: Option<&str>| Question::Node {
            name: s(name),
            dc: dc.map(s),
        };
        assert_eq!(a("foo.node.consul."), node("foo", None));
        assert_eq!(a("foo.node.dc1.consul."), node("foo", Some("dc1")));
        assert_eq!(a("foo.node.dc1.dc.consul."), node("foo", Some("dc1")));
        assert_eq!(a("Foo.NODE.Dc1.CONSUL."), node("foo", Some("dc1")));
        assert_eq!(a("foo.bar.node.consul."), node("foo.bar", None));
        assert_eq!(a("foo.node.dc1.extra.more.consul."), Question::Invalid);
        assert_eq!(a("foo.node.phx1.peer.consul."), Question::Invalid);
        assert_eq!(a("node.consul."), Question::Invalid);
    }

    #[test]
    fn services_tags_and_localities() {
        let svc = |name: &str, tag: Option<&str>, dc: Option<&str>| Question::Service {
            name: s(name),
            tag: tag.map(s),
            dc: dc.map(s),
        };
        assert_eq!(a("web.service.consul."), svc("web", None, None));
        assert_eq!(a("v1.web.service.consul."), svc("web", Some("v1"), None));
        assert_eq!(
            a("v1.master.db.service.dc2.consul."),
            svc("db", Some("v1.master"), Some("dc2"))
        );
        assert_eq!(
            a("web.service.dc2.dc.consul."),
            svc("web", None, Some("dc2"))
        );
        assert_eq!(a("service.consul."), Question::Invalid);
        assert_eq!(a("web.service.dc1.extra.more.consul."), Question::Invalid);
        // The rightmost kind label wins, as in Consul.
        assert_eq!(
            a("foo.node.service.consul."),
            svc("node", Some("foo"), None)
        );
    }

    #[test]
    fn rfc2782_forms() {
        let rfc = |svc: &str, tag: &str, dc: Option<&str>| Question::Rfc2782 {
            service: s(svc),
            tag_or_proto: s(tag),
            dc: dc.map(s),
        };
        assert_eq!(srv("_web._tcp.service.consul."), rfc("web", "tcp", None));
        assert_eq!(
            srv("_web._v1.service.dc2.consul."),
            rfc("web", "v1", Some("dc2"))
        );
        // Without `.service`, for SRV questions only.
        assert_eq!(srv("_web._tcp.consul."), rfc("web", "tcp", None));
        assert_eq!(srv("_web._tcp.dc2.consul."), rfc("web", "tcp", Some("dc2")));
        assert_eq!(a("_web._tcp.consul."), Question::Invalid);
        // With `.service`, the form works for any type.
        assert_eq!(a("_web._tcp.service.consul."), rfc("web", "tcp", None));
    }

    #[test]
    fn connect_addr_query_virtual_ingress() {
        assert_eq!(
            a("web.connect.consul."),
            Question::Connect {
                service: s("web"),
                dc: None
            }
        );
        assert_eq!(
            a("7f000001.addr.dc1.consul."),
            Question::Addr {
                ip: "127.0.0.1".parse().unwrap(),
                dc: Some(s("dc1"))
            }
        );
        assert_eq!(
            a("2607002040050808000000000000200e.addr.consul."),
            Question::Addr {
                ip: "2607:20:4005:808::200e".parse().unwrap(),
                dc: None
            }
        );
        assert_eq!(a("7f00001.addr.consul."), Question::Invalid);
        assert_eq!(a("7f00000g.addr.consul."), Question::Invalid);
        assert_eq!(a("a.7f000001.addr.consul."), Question::Invalid);
        assert_eq!(
            a("my.query.dc1.consul."),
            Question::Query {
                name: s("my"),
                dc: Some(s("dc1"))
            }
        );
        assert_eq!(
            srv("_my.query._tcp.query.consul."),
            Question::Query {
                name: s("my.query"),
                dc: None
            }
        );
        assert_eq!(a("query.consul."), Question::Invalid);
        assert_eq!(a("my.query.dc1.extra.consul."), Question::Invalid);
        assert_eq!(
            a("web.virtual.consul."),
            Question::Virtual { service: s("web") }
        );
        assert_eq!(
            a("web.ingress.consul."),
            Question::Ingress { service: s("web") }
        );
    }

    #[test]
    fn apex_alt_domain_and_out_of_zone() {
        assert_eq!(q("consul.", RecordType::SOA).question, Question::Apex);
        assert_eq!(q("CONSUL.", RecordType::NS).question, Question::Apex);
        let alt = q("web.service.example.com.", RecordType::A);
        assert_eq!(alt.zone, Zone::Alt);
        assert!(matches!(alt.question, Question::Service { .. }));
        assert_eq!(q("web.service.consul.", RecordType::A).zone, Zone::Primary);
        assert_eq!(a("www.google.com."), Question::OutOfZone);
        assert_eq!(a("consulx."), Question::OutOfZone);
        assert_eq!(a("."), Question::OutOfZone);
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            a("1.0.0.127.in-addr.arpa."),
            Question::Ptr {
                ip: "127.0.0.1".parse().unwrap()
            }
        );
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(a(&arpa_name(v6)), Question::Ptr { ip: v6 });
        assert_eq!(
            arpa_name("127.0.0.1".parse().unwrap()),
            "1.0.0.127.in-addr.arpa."
        );
        // Partial names are not addresses: recursors' business.
        assert_eq!(a("0.0.127.in-addr.arpa."), Question::OutOfZone);
        assert_eq!(a("256.0.0.127.in-addr.arpa."), Question::OutOfZone);
        assert_eq!(a("1.ip6.arpa."), Question::OutOfZone);
    }

    #[test]
    fn hex_roundtrip() {
        for ip in ["192.0.2.10", "2001:db8:1:2:cafe::1337"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(decode_hex_ip(&encode_hex_ip(ip)), Some(ip));
        }
        assert_eq!(encode_hex_ip("192.0.2.10".parse().unwrap()), "c000020a");
    }
}
