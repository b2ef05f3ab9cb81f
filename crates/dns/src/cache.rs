//! The answer cache behind the UDP fast path.
//!
//! Why it exists: answering a service question through the engine (catalog read,
//! health filtering, record building, trimming, encoding) costs tens of microseconds
//! of CPU, several times what a plain authoritative server spends, while the same
//! few questions repeat thousands of times a second between catalog changes. So the
//! engine's answer to a service question is kept here pre-encoded, keyed by the
//! question (name lower-cased, type, class), and a repeated question costs a header
//! parse, a hash lookup, a shuffle and a copy. The question is echoed from the request
//! and names that repeat it point at it, so every response carries the asked case.
//!
//! An entry stays valid as long as the catalog index it was built from: the server
//! runs a watcher per entry that blocks on that service's index and drops the entry
//! when it moves (see `server.rs`). The engine stays the reference: the fast path
//! serves only requests whose answer the engine would send whole (no trimming), with
//! no EDNS option the engine acts on, and every other request goes through the
//! engine unchanged.
//!
//! The records are encoded so that they do not depend on where they land in the
//! message: names point only into the question (always at offset 12) or are written
//! in full (SRV targets always are, RFC 2782), and an additional record owned by an
//! SRV target points at that target, wherever the shuffle put its SRV record. Answers
//! are therefore shuffled per response, as the engine shuffles them. Whether the
//! engine would trim is decided by the size the engine measured when the entry was
//! made, not by this encoding's.

use hickory_proto::rr::{Name, RData, Record, RecordType};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::server::Transport;
use crate::trim::{DEFAULT_UDP_SIZE, MAX_TCP_SIZE, MAX_UDP_ANSWER_LIMIT, MAX_UDP_SIZE};

/// Answers with more records than this are not cached: a bigger answer is trimmed
/// over UDP anyway, and which records survive is the engine's business.
pub(crate) const MAX_CACHED_ANSWERS: usize = 64;
/// Entries kept at most; questions past this go through the engine.
const MAX_ENTRIES: usize = 4096;
/// Compression pointers reach 14 bits into the message.
const MAX_POINTER: usize = 0x3FFF;
/// The question's name starts right after the header.
const QUESTION_OFFSET: usize = 12;
/// DNS header flag bits (RFC 1035 §4.1.1, RFC 4035 §3.2).
const QR: u8 = 0x80;
const OPCODE: u8 = 0x78;
const AA: u8 = 0x04;
const RD: u8 = 0x01;
const RA: u8 = 0x80;
const CD: u8 = 0x10;
/// RR type of the EDNS OPT pseudo-record.
const OPT: u16 = 41;

/// A request the fast path can answer: one question in class IN, at most an OPT
/// record with options the engine ignores, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parsed<'a> {
    /// The question: name (uncompressed, as asked), type, class.
    pub question: &'a [u8],
    /// The requester's EDNS buffer size, when it sent an OPT record.
    pub edns: Option<u16>,
}

/// Parses the requests the fast path handles; `None` for anything else (the engine
/// then answers, or rejects, it).
pub(crate) fn parse(pkt: &[u8]) -> Option<Parsed<'_>> {
    let header = pkt.get(..QUESTION_OFFSET)?;
    if header[2] & (QR | OPCODE) != 0 || header[4..10] != [0, 1, 0, 0, 0, 0] {
        return None;
    }
    let additional = u16::from_be_bytes([header[10], header[11]]);
    if additional > 1 {
        return None;
    }
    let mut at = QUESTION_OFFSET;
    let mut name_len = 1;
    loop {
        let len = usize::from(*pkt.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        // Pointers and the obsolete label types go the long way.
        if len > 63 {
            return None;
        }
        name_len += len + 1;
        if name_len > 255 {
            return None;
        }
        at += len;
    }
    let end = at + 4;
    let class = pkt.get(at + 2..end)?;
    if class != [0, 1] {
        return None;
    }
    let question = &pkt[QUESTION_OFFSET..end];
    let rest = &pkt[end..];
    let edns = match additional {
        0 if rest.is_empty() => None,
        1 => Some(parse_opt(rest)?),
        _ => return None,
    };
    Some(Parsed { question, edns })
}

/// The requester's buffer size from its OPT record: root owner, version 0, options
/// well formed. The DO bit is accepted and not echoed, as the engine does (it signs
/// nothing). Options the engine ignores (cookies, padding, keepalive, ...) are skipped;
/// those it echoes or that hickory validates (NSID, the DNSSEC algorithm lists, client
/// subnet) leave the request to the engine.
fn parse_opt(opt: &[u8]) -> Option<u16> {
    if opt.len() < 11
        || opt[0] != 0
        || u16::from_be_bytes([opt[1], opt[2]]) != OPT
        || opt[6] != 0
        || usize::from(u16::from_be_bytes([opt[9], opt[10]])) != opt.len() - 11
    {
        return None;
    }
    let mut options = &opt[11..];
    while !options.is_empty() {
        let code = u16::from_be_bytes([*options.first()?, *options.get(1)?]);
        let len = usize::from(u16::from_be_bytes([*options.get(2)?, *options.get(3)?]));
        if matches!(code, 3 | 5..=8) {
            return None;
        }
        options = options.get(4 + len..)?;
    }
    Some(u16::from_be_bytes([opt[3], opt[4]]))
}

/// The longest question: a 255-byte name, type and class.
const MAX_QUESTION: usize = 255 + 4;

/// The cache key of a question: its name lower-cased (DNS names are
/// case-insensitive, and resolvers that randomise case must not each get an entry),
/// its type and class as they are. Label length bytes (below 64) are never letters.
fn lower<'a>(question: &[u8], buf: &'a mut [u8; MAX_QUESTION]) -> &'a [u8] {
    let key = &mut buf[..question.len()];
    key.copy_from_slice(question);
    let name = question.len().saturating_sub(4);
    key[..name].make_ascii_lowercase();
    key
}

/// The labels of the question's name with their offsets in the message.
struct QuestionName<'a> {
    labels: Vec<(usize, &'a [u8])>,
}

impl<'a> QuestionName<'a> {
    fn new(question: &'a [u8]) -> Option<QuestionName<'a>> {
        let mut labels = Vec::new();
        let mut at = 0;
        loop {
            let len = usize::from(*question.get(at)?);
            if len == 0 {
                return Some(QuestionName { labels });
            }
            labels.push((QUESTION_OFFSET + at, question.get(at + 1..at + 1 + len)?));
            at += 1 + len;
        }
    }

    /// Writes `name`, pointing into the question for the longest suffix they share
    /// (compared case-insensitively, as name compression may). Returns whether the
    /// whole name is the question's.
    fn write(&self, name: &Name, out: &mut Vec<u8>) -> bool {
        let labels: Vec<&[u8]> = name.iter().collect();
        let shared = labels
            .iter()
            .rev()
            .zip(self.labels.iter().rev())
            .take_while(|(a, (_, b))| a.eq_ignore_ascii_case(b))
            .count();
        for label in &labels[..labels.len() - shared] {
            out.push(label.len() as u8);
            out.extend_from_slice(label);
        }
        if shared == 0 {
            out.push(0);
        } else {
            let offset = self.labels[self.labels.len() - shared].0;
            out.extend_from_slice(&pointer(offset));
        }
        shared == labels.len() && shared == self.labels.len()
    }
}

/// A name in full, uncompressed.
fn write_full(name: &Name, out: &mut Vec<u8>) {
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
}

fn pointer(offset: usize) -> [u8; 2] {
    [0xC0 | (offset >> 8) as u8, offset as u8]
}

/// An answer record, owned by the question's name.
#[derive(Debug)]
struct AnswerRr {
    /// The whole record, its owner a pointer to the question.
    bytes: Box<[u8]>,
    /// For SRV records: where the target name starts within `bytes`.
    target: Option<usize>,
    /// For SRV records: the target, to find the additional records it owns.
    target_name: Option<Name>,
}

/// Who owns an additional record.
#[derive(Debug)]
enum Owner {
    /// The target of this answer (an index into the entry's answers).
    Target(usize),
    /// Some other name, encoded.
    Name(Box<[u8]>),
}

/// An additional record: its owner, then type, class, TTL and data.
#[derive(Debug)]
struct ExtraRr {
    owner: Owner,
    rest: Box<[u8]>,
}

/// One cached answer.
#[derive(Debug)]
pub(crate) struct Entry {
    answers: Vec<AnswerRr>,
    extras: Vec<ExtraRr>,
    /// Encoded size of all the records, as written here.
    body: usize,
    /// The size the engine measures for the whole answer (header, question and
    /// records, compressed its way, without OPT): what its trimming compares.
    engine_size: usize,
    /// The catalog index the answer was built from.
    pub index: u64,
    /// Set on every hit, cleared by the watcher: an entry nobody asked for during a
    /// whole watch is dropped.
    used: AtomicBool,
}

/// Type, class and TTL, then the data behind a length.
fn write_rr(record: &Record, q: &QuestionName<'_>, out: &mut Vec<u8>) -> Option<Option<usize>> {
    out.extend_from_slice(&u16::from(record.record_type()).to_be_bytes());
    out.extend_from_slice(&u16::from(record.dns_class).to_be_bytes());
    out.extend_from_slice(&record.ttl.to_be_bytes());
    let length_at = out.len();
    out.extend_from_slice(&[0, 0]);
    let mut target = None;
    match &record.data {
        RData::A(a) => out.extend_from_slice(&a.0.octets()),
        RData::AAAA(aaaa) => out.extend_from_slice(&aaaa.0.octets()),
        RData::SRV(srv) => {
            out.extend_from_slice(&srv.priority.to_be_bytes());
            out.extend_from_slice(&srv.weight.to_be_bytes());
            out.extend_from_slice(&srv.port.to_be_bytes());
            // Never compressed (RFC 2782), as hickory writes it too.
            target = Some(out.len());
            write_full(&srv.target, out);
        }
        RData::CNAME(cname) => {
            q.write(&cname.0, out);
        }
        RData::TXT(txt) => {
            for string in txt.txt_data.iter() {
                out.push(u8::try_from(string.len()).ok()?);
                out.extend_from_slice(string);
            }
        }
        _ => return None,
    }
    let length = u16::try_from(out.len() - length_at - 2).ok()?;
    out[length_at..length_at + 2].copy_from_slice(&length.to_be_bytes());
    Some(target)
}

impl Entry {
    /// Encodes the engine's answer to `question` (the bytes [`parse`] returned), or
    /// `None` when its shape is not one the fast path reproduces (records not owned
    /// by the question, a CNAME (the engine picks one of several per answer), record
    /// types it does not encode, too many answers). `engine_size` is the size the
    /// engine measures for the untrimmed answer without OPT.
    pub fn build(
        question: &[u8],
        answers: &[Record],
        additional: &[Record],
        engine_size: usize,
        index: u64,
    ) -> Option<Entry> {
        if answers.is_empty()
            || answers.len() > MAX_CACHED_ANSWERS
            || answers.iter().any(|a| a.record_type() == RecordType::CNAME)
        {
            return None;
        }
        let q = QuestionName::new(question)?;
        let mut body = 0;
        let mut cached = Vec::with_capacity(answers.len());
        for record in answers {
            let mut bytes = Vec::with_capacity(64);
            if !q.write(&record.name, &mut bytes) {
                // A CNAME chain (the owner of the A record is the CNAME's target).
                return None;
            }
            let offset = write_rr(record, &q, &mut bytes)?;
            let target_name = match &record.data {
                RData::SRV(srv) => Some(srv.target.clone()),
                _ => None,
            };
            body += bytes.len();
            cached.push(AnswerRr {
                bytes: bytes.into(),
                target: offset,
                target_name,
            });
        }
        let mut extras = Vec::with_capacity(additional.len());
        for record in additional {
            if record.record_type() == RecordType::OPT {
                return None;
            }
            let owner = match cached
                .iter()
                .position(|a| a.target_name.as_ref() == Some(&record.name))
            {
                Some(i) => {
                    body += 2;
                    Owner::Target(i)
                }
                None => {
                    let mut name = Vec::new();
                    q.write(&record.name, &mut name);
                    body += name.len();
                    Owner::Name(name.into())
                }
            };
            let mut rest = Vec::with_capacity(32);
            if write_rr(record, &q, &mut rest)?.is_some() {
                // SRV records in the additional section are not something we send.
                return None;
            }
            body += rest.len();
            extras.push(ExtraRr {
                owner,
                rest: rest.into(),
            });
        }
        Some(Entry {
            answers: cached,
            extras,
            body,
            engine_size,
            index,
            used: AtomicBool::new(false),
        })
    }

    /// Writes the response to `pkt` into `out`, or returns false when the engine
    /// must answer instead (the answer would need trimming).
    fn write(
        &self,
        pkt: &[u8],
        req: &Parsed<'_>,
        transport: Transport,
        cfg: &FastConfig,
        rng: &mut Rng,
        out: &mut Vec<u8>,
    ) -> bool {
        let count = self.answers.len();
        let opt_len = if req.edns.is_some() { 11 } else { 0 };
        let total = QUESTION_OFFSET + req.question.len() + self.body + opt_len;
        // What the engine's trimming compares with: the requester's buffer less 8
        // bytes (Consul's margin) over UDP, and at 512 bytes (no EDNS, or EDNS asking
        // no more) a first cut to `udp_answer_limit` answers. When the engine would
        // send every record, so can we, provided our encoding fits too.
        let limit = match (transport, req.edns) {
            (Transport::Tcp, _) => MAX_TCP_SIZE,
            (Transport::Udp, Some(size)) if usize::from(size) > DEFAULT_UDP_SIZE => {
                usize::from(size).min(MAX_UDP_SIZE) - 8
            }
            (Transport::Udp, _) if count > cfg.max_udp_answers => return false,
            (Transport::Udp, _) => DEFAULT_UDP_SIZE - 8,
        };
        if self.engine_size.saturating_add(opt_len) > limit || total > limit || total > MAX_POINTER
        {
            return false;
        }
        out.clear();
        out.extend_from_slice(&pkt[..2]);
        out.push(QR | AA | (pkt[2] & RD));
        out.push(if cfg.recursion_available { RA } else { 0 } | (pkt[3] & CD));
        out.extend_from_slice(&[0, 1]);
        out.extend_from_slice(&(count as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        let additional = self.extras.len() + usize::from(req.edns.is_some());
        out.extend_from_slice(&(additional as u16).to_be_bytes());
        out.extend_from_slice(req.question);

        let mut order = [0u8; MAX_CACHED_ANSWERS];
        let order = &mut order[..count];
        for (i, slot) in order.iter_mut().enumerate() {
            *slot = i as u8;
        }
        // Fisher–Yates.
        for i in (1..count).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut targets = [0usize; MAX_CACHED_ANSWERS];
        for &i in order.iter() {
            let rr = &self.answers[usize::from(i)];
            if let Some(at) = rr.target {
                targets[usize::from(i)] = out.len() + at;
            }
            out.extend_from_slice(&rr.bytes);
        }
        for extra in &self.extras {
            match &extra.owner {
                Owner::Target(i) => out.extend_from_slice(&pointer(targets[*i])),
                Owner::Name(name) => out.extend_from_slice(name),
            }
            out.extend_from_slice(&extra.rest);
        }
        if let Some(size) = req.edns {
            // The engine's OPT: the requester's size (at least 512), version 0, no
            // flags, no options.
            out.extend_from_slice(&[0, 0, OPT as u8]);
            out.extend_from_slice(&size.max(DEFAULT_UDP_SIZE as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        }
        self.used.store(true, Ordering::Relaxed);
        true
    }
}

/// What the fast path needs of the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FastConfig {
    /// RA in every answer.
    pub recursion_available: bool,
    /// Answers allowed in a 512-byte UDP answer (`udp_answer_limit`, at most 8).
    pub max_udp_answers: usize,
}

impl FastConfig {
    pub fn new(recursion_available: bool, udp_answer_limit: usize) -> FastConfig {
        FastConfig {
            recursion_available,
            max_udp_answers: match udp_answer_limit {
                0 => MAX_UDP_ANSWER_LIMIT,
                n => n.min(MAX_UDP_ANSWER_LIMIT),
            },
        }
    }
}

/// The cached answers, shared by the listeners and the watchers.
#[derive(Debug)]
pub(crate) struct AnswerCache {
    cfg: FastConfig,
    entries: RwLock<HashMap<Box<[u8]>, Arc<Entry>>>,
}

impl AnswerCache {
    pub fn new(cfg: FastConfig) -> AnswerCache {
        AnswerCache {
            cfg,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// Answers `pkt`, which came over `transport`, from the cache into `out`; false
    /// when the engine must.
    pub fn answer(
        &self,
        pkt: &[u8],
        transport: Transport,
        rng: &mut Rng,
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(req) = parse(pkt) else {
            return false;
        };
        let mut buf = [0u8; MAX_QUESTION];
        let key = lower(req.question, &mut buf);
        let entries = self.entries.read();
        entries
            .get(key)
            .is_some_and(|entry| entry.write(pkt, &req, transport, &self.cfg, rng, out))
    }

    /// Keeps `entry` for `question` unless an entry at least as recent is there or
    /// the cache is full. Returns the entry kept, for its watcher.
    pub fn insert(&self, question: &[u8], entry: Entry) -> Option<Arc<Entry>> {
        let mut buf = [0u8; MAX_QUESTION];
        let question = lower(question, &mut buf);
        let mut entries = self.entries.write();
        match entries.get(question) {
            Some(old) if old.index >= entry.index => return None,
            Some(_) => {}
            None if entries.len() >= MAX_ENTRIES => return None,
            None => {}
        }
        let entry = Arc::new(entry);
        entries.insert(question.into(), Arc::clone(&entry));
        Some(entry)
    }

    /// Whether `entry` is still the one cached for `question` and was used since the
    /// last call; clears its mark.
    pub fn still_used(&self, question: &[u8], entry: &Arc<Entry>) -> bool {
        let mut buf = [0u8; MAX_QUESTION];
        let question = lower(question, &mut buf);
        let entries = self.entries.read();
        entries
            .get(question)
            .is_some_and(|current| Arc::ptr_eq(current, entry))
            && entry.used.swap(false, Ordering::Relaxed)
    }

    /// Drops `entry` if it is still the one cached for `question`.
    pub fn remove(&self, question: &[u8], entry: &Arc<Entry>) {
        let mut buf = [0u8; MAX_QUESTION];
        let question = lower(question, &mut buf);
        let mut entries = self.entries.write();
        if entries
            .get(question)
            .is_some_and(|current| Arc::ptr_eq(current, entry))
        {
            entries.remove(question);
        }
    }

    /// How many answers are cached.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.read().len()
    }
}

/// A small, fast generator for the per-response shuffle (wyrand): the order only
/// spreads load, it protects nothing.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        (t >> 64) as u64 ^ t as u64
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2⁻⁵⁰ here).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests;
