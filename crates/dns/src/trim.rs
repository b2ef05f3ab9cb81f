//! Fitting an answer into the transport: Consul's `trimUDPResponse` and
//! `trimTCPResponse`.
//!
//! Answers are dropped from the end (they are already in random order) together with
//! the additional records only they needed, until the encoded message fits. Pure: the
//! size is measured by encoding the message with hickory, exactly as it will be sent.

use crate::response::Response as Draft;
use hickory_proto::rr::{RData, Record, RecordType};
use std::collections::{HashMap, HashSet};

/// UDP answers hold at most this many records when the requester did not advertise a
/// bigger buffer, whatever `udp_answer_limit` says (Consul's `maxUDPAnswerLimit`).
pub(crate) const MAX_UDP_ANSWER_LIMIT: usize = 8;
/// The classic UDP payload limit (RFC 1035 §4.2.1).
pub(crate) const DEFAULT_UDP_SIZE: usize = 512;
/// The largest EDNS buffer honoured: 64 KiB less IP and UDP headers (Consul's
/// `maxUDPDatagramSize`).
pub(crate) const MAX_UDP_SIZE: usize = 65535 - 68;
/// The largest TCP answer: 64 KiB less some DNS overhead (Consul's 65523).
pub(crate) const MAX_TCP_SIZE: usize = 65523;

/// The first additional record of every owner name (lower case), as Consul's
/// `indexRRs` keeps them.
struct ExtraIndex(HashMap<String, Record>);

fn key(name: &hickory_proto::rr::Name) -> String {
    name.to_lowercase().to_ascii()
}

impl ExtraIndex {
    fn new(additional: &[Record]) -> Option<ExtraIndex> {
        if additional.is_empty() {
            return None;
        }
        let mut index = HashMap::new();
        for record in additional {
            index
                .entry(key(&record.name))
                .or_insert_with(|| record.clone());
        }
        Some(ExtraIndex(index))
    }

    /// Consul's `syncExtra`: the additional records become exactly those the
    /// remaining SRV answers point at (following CNAMEs). Anything else in the
    /// additional section (node meta TXT) goes, as in Consul.
    fn sync(&self, draft: &mut Draft) {
        let mut extra = Vec::new();
        let mut resolved = HashSet::new();
        for answer in &draft.answers {
            let RData::SRV(srv) = &answer.data else {
                continue;
            };
            let mut target = key(&srv.target);
            while resolved.insert(target.clone()) {
                let Some(record) = self.0.get(&target) else {
                    break;
                };
                extra.push(record.clone());
                match &record.data {
                    RData::CNAME(cname) => target = key(&cname.0),
                    _ => break,
                }
            }
        }
        draft.additional = extra;
    }
}

/// Drops answers from the end until the message fits `limit` bytes, keeping at least
/// one (an oversized single record is sent anyway and truncated by the encoder). The
/// authority section goes first. Returns whether anything was dropped.
fn shrink(draft: &mut Draft, limit: usize, compress: bool, index: Option<&ExtraIndex>) -> bool {
    if draft.answers.len() <= 1 || draft.len(compress) <= limit {
        return false;
    }
    draft.authority.clear();
    let all = std::mem::take(&mut draft.answers);
    let fits = |n: usize, draft: &mut Draft| {
        draft.answers = all[..n].to_vec();
        if let Some(index) = index {
            index.sync(draft);
        }
        draft.len(compress) <= limit
    };
    // The largest count that fits; the size grows with the count.
    let (mut lo, mut hi) = (1, all.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid, draft) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    fits(lo, draft);
    lo < all.len()
}

/// Consul's `trimUDPResponse`. `max_size` is the requester's EDNS buffer (512 without
/// EDNS, at most [`MAX_UDP_SIZE`]). Without a bigger buffer the answer is first cut to
/// `udp_answer_limit` records (at most 8) and measured uncompressed, to stay under
/// 512 bytes even through a middlebox that decompresses. Returns whether answers were
/// dropped.
pub(crate) fn trim_udp(
    draft: &mut Draft,
    max_size: usize,
    udp_answer_limit: usize,
    compress: bool,
) -> bool {
    let count = draft.answers.len();
    let index = ExtraIndex::new(&draft.additional);
    // A limit of 0 would answer nothing; Consul's config never yields it.
    let max_answers = match udp_answer_limit {
        0 => MAX_UDP_ANSWER_LIMIT,
        n => n.min(MAX_UDP_ANSWER_LIMIT),
    };
    let mut compress = compress;
    if max_size == DEFAULT_UDP_SIZE && count > max_answers {
        compress = false;
        draft.answers.truncate(max_answers);
        if let Some(index) = &index {
            index.sync(draft);
        }
    }
    // Consul keeps 8 bytes spare (its comment: the UDP header).
    shrink(draft, max_size - 8, compress, index.as_ref());
    draft.answers.len() < count
}

/// Consul's `trimTCPResponse`: at most 4096 answers (1024 SRV records, which is all
/// 64 KiB holds), then whatever fits in [`MAX_TCP_SIZE`].
pub(crate) fn trim_tcp(draft: &mut Draft, qtype: RecordType, compress: bool) -> bool {
    let count = draft.answers.len();
    let index = ExtraIndex::new(&draft.additional);
    let cap = if qtype == RecordType::SRV { 1024 } else { 4096 };
    if count > cap {
        draft.answers.truncate(cap);
        if let Some(index) = &index {
            index.sync(draft);
        }
    }
    shrink(draft, MAX_TCP_SIZE, compress, index.as_ref());
    draft.answers.len() < count
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, Metadata, OpCode, Query};
    use hickory_proto::rr::rdata::{A, SRV, TXT};
    use hickory_proto::rr::Name;
    use std::net::Ipv4Addr;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn draft(qname: &str, qtype: RecordType) -> Draft {
        Draft {
            metadata: Metadata::new(1, MessageType::Response, OpCode::Query),
            queries: vec![Query::query(name(qname), qtype)],
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
            edns: None,
        }
    }

    fn a_records(owner: &str, n: u8) -> Vec<Record> {
        (0..n)
            .map(|i| Record::from_rdata(name(owner), 0, RData::A(A(Ipv4Addr::new(10, 0, 0, i)))))
            .collect()
    }

    /// `n` SRV answers, each with an A and a TXT under its target.
    fn srv_draft(n: u8) -> Draft {
        let mut d = draft("web.service.consul.", RecordType::SRV);
        for i in 0..n {
            let target = name(&format!("node-{i:03}.node.dc1.consul."));
            d.answers.push(Record::from_rdata(
                name("web.service.consul."),
                0,
                RData::SRV(SRV::new(1, 1, 8080, target.clone())),
            ));
            d.additional.push(Record::from_rdata(
                target.clone(),
                0,
                RData::A(A(Ipv4Addr::new(10, 0, 0, i))),
            ));
            d.additional.push(Record::from_rdata(
                target,
                0,
                RData::TXT(TXT::new(vec!["k=v".into()])),
            ));
        }
        d
    }

    #[test]
    fn small_answers_are_untouched() {
        let mut d = draft("web.service.consul.", RecordType::A);
        d.answers = a_records("web.service.consul.", 3);
        let before = d.clone();
        assert!(!trim_udp(&mut d, 512, 3, true));
        assert_eq!(d.answers, before.answers);
    }

    #[test]
    fn udp_without_edns_is_cut_to_the_answer_limit() {
        let mut d = draft("web.service.consul.", RecordType::A);
        d.answers = a_records("web.service.consul.", 20);
        assert!(trim_udp(&mut d, 512, 3, true));
        assert_eq!(d.answers.len(), 3);

        let mut d = draft("web.service.consul.", RecordType::A);
        d.answers = a_records("web.service.consul.", 20);
        assert!(trim_udp(&mut d, 512, 50, true));
        assert_eq!(d.answers.len(), MAX_UDP_ANSWER_LIMIT);
    }

    #[test]
    fn udp_with_edns_is_cut_by_size_only() {
        let mut d = draft("web.service.consul.", RecordType::A);
        d.answers = a_records("web.service.consul.", 100);
        assert!(!trim_udp(&mut d, 4096, 3, true));
        assert_eq!(d.answers.len(), 100);

        // 1232 bytes hold many compressed A records but not 100.
        assert!(trim_udp(&mut d, 1232, 3, true));
        let n = d.answers.len();
        assert!(n > 8 && n < 100, "{n}");
        assert!(d.len(true) <= 1232 - 8);
        d.answers.extend(a_records("web.service.consul.", 1));
        assert!(d.len(true) > 1232 - 8, "one more would not have fitted");
    }

    #[test]
    fn srv_trimming_keeps_only_the_targets_addresses() {
        let mut d = srv_draft(40);
        assert!(trim_udp(&mut d, 512, 3, true));
        assert_eq!(d.answers.len(), 3);
        // One A per remaining target; the TXT records go, as in Consul.
        assert_eq!(d.additional.len(), 3);
        assert!(d
            .additional
            .iter()
            .all(|r| r.record_type() == RecordType::A));
        assert!(d.len(false) <= 504);

        let mut d = srv_draft(200);
        assert!(trim_udp(&mut d, 1232, 3, true));
        assert_eq!(d.additional.len(), d.answers.len());
        assert!(d.len(true) <= 1224);
    }

    #[test]
    fn tcp_keeps_everything_that_fits() {
        let mut d = srv_draft(200);
        assert!(!trim_tcp(&mut d, RecordType::SRV, true));
        assert_eq!(d.answers.len(), 200);
        assert_eq!(d.additional.len(), 400);

        let mut d = draft("web.service.consul.", RecordType::A);
        d.answers = (0..5000u32)
            .map(|i| {
                Record::from_rdata(
                    name("web.service.consul."),
                    0,
                    RData::A(A(Ipv4Addr::from(0x0a00_0000 + i))),
                )
            })
            .collect();
        assert!(trim_tcp(&mut d, RecordType::A, true));
        assert!(d.answers.len() <= 4096);
        assert!(d.len(true) <= MAX_TCP_SIZE);
    }

    #[test]
    fn authority_goes_first_when_trimming() {
        let mut d = draft("web.service.consul.", RecordType::A);
        d.answers = a_records("web.service.consul.", 100);
        d.authority = a_records("consul.", 1);
        assert!(trim_udp(&mut d, 600, 3, true));
        assert!(d.authority.is_empty());
    }
}
