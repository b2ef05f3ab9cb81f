//! The state snapshot format, used by raft snapshots and operator archives (`/v1/snapshot`).
//!
//! Layout: `b"TRIBSNAP"`, format version (u32 BE), applied index (u64 BE), body length
//! (u64 BE), MessagePack body with named fields (so fields can be added), CRC-32 of
//! everything before it (u32 BE). A file that is truncated, has a bad checksum or a
//! newer version is rejected before any state is touched.

use crate::db::{pair, Db, StateStore};
use serde::{Deserialize, Serialize};
use std::io::{BufWriter, Cursor, Seek, SeekFrom, Write};
use std::sync::atomic::Ordering;
use tribune_types::model::coordinate::CoordinateEntry;
use tribune_types::model::operator::AutopilotSettings;
use tribune_types::model::query::PreparedQuery;
use tribune_types::model::{CaConfig, CaRoot, Check, ConfigEntry, KvEntry, Node, Service, Session};

const MAGIC: &[u8; 8] = b"TRIBSNAP";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 8;

/// A snapshot that cannot be restored. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not a Tribune snapshot, or cut short.
    #[error("snapshot is truncated or not a Tribune snapshot ({len} bytes)")]
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// Written by a newer version.
    #[error("unsupported snapshot format version {0}")]
    Version(u32),
    /// The checksum does not match.
    #[error("snapshot checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// Stored CRC.
        stored: u32,
        /// Computed CRC.
        computed: u32,
    },
    /// The body does not decode.
    #[error("snapshot body is malformed")]
    Body(#[source] rmp_serde::decode::Error),
}

// Serialize only for the test that pins the encoder to this form.
#[derive(Deserialize, Default)]
#[cfg_attr(test, derive(Serialize))]
#[serde(default)]
struct Body {
    nodes: Vec<Node>,
    services: Vec<Service>,
    checks: Vec<Check>,
    kv: Vec<KvEntry>,
    tombstones: Vec<(String, u64)>,
    config: Vec<ConfigEntry>,
    ca_roots: Vec<CaRoot>,
    ca_index: u64,
    service_index: Vec<(String, u64)>,
    table_index: Vec<(String, u64)>,
    sessions: Vec<Session>,
    lock_delays: Vec<(String, u64)>,
    autopilot: Option<AutopilotSettings>,
    coordinates: Vec<CoordinateEntry>,
    ca_config: Option<CaConfig>,
    queries: Vec<PreparedQuery>,
}

impl StateStore {
    /// Serialises the whole state at its last applied index.
    pub fn snapshot(&self) -> Vec<u8> {
        // A little larger than the previous snapshot: growing the buffer by
        // doubling up to hundreds of MiB copied it repeatedly and had the kernel
        // zero every new page (a third of the time).
        let hint = self.snapshot_len.load(Ordering::Relaxed);
        let mut out = Cursor::new(Vec::with_capacity(
            (hint + hint / 8).max(HEADER + 4 + 64 * 1024),
        ));
        match write_snapshot(&self.snapshot_db(), &mut out) {
            Ok(len) => debug_assert_eq!(len, out.get_ref().len() as u64),
            Err(e) => unreachable!("writing to memory failed: {e}"),
        }
        let out = out.into_inner();
        self.snapshot_len.store(out.len(), Ordering::Relaxed);
        out
    }

    /// [`StateStore::snapshot`] split in two, and written to any seekable
    /// output instead of memory (a server's raft snapshots go straight into
    /// their file): the state is captured now (a reference-count bump); the
    /// returned job serialises it later, on any thread, unaffected by what is
    /// applied meanwhile.
    pub fn snapshot_job(&self) -> SnapshotJob {
        SnapshotJob {
            db: self.snapshot_db(),
        }
    }
}

/// One version of the state, to be serialised ([`StateStore::snapshot_job`]).
pub struct SnapshotJob {
    db: std::sync::Arc<Db>,
}

impl SnapshotJob {
    /// The raft index of the version it holds.
    pub fn index(&self) -> u64 {
        self.db.index
    }

    /// Writes the snapshot at `out`'s position, in the same bytes as
    /// [`StateStore::snapshot`]; returns their length.
    ///
    /// Straight into `out` rather than into memory first: a buffer would be as
    /// large as the serialised state, on top of the state itself, for as long as
    /// the snapshot takes (hundreds of MiB for a large KV store, every snapshot).
    pub fn write_to<W: Write + Seek + ?Sized>(self, out: &mut W) -> std::io::Result<u64> {
        write_snapshot(&self.db, out)
    }
}

/// Serialises one version of the state at `out`'s position; returns the length.
///
/// The body is written straight from the tables, behind the header: collecting
/// owned rows first (as [`Body`] holds them for decoding) would copy every key
/// and value of the state, twice its size in memory and most of the time a
/// snapshot takes. Its length is known only at the end, so the header's length
/// field is filled in by seeking back, and the checksum over the header and body
/// is the header's combined with the body's, which is computed as it is written.
fn write_snapshot<W: Write + Seek + ?Sized>(db: &Db, out: &mut W) -> std::io::Result<u64> {
    let body = BodyRef {
        nodes: Seq(db.nodes.len(), || db.nodes.iter().map(|(_, v)| v)),
        services: Seq(db.services.len(), || db.services.iter().map(|(_, v)| v)),
        checks: Seq(db.checks.len(), || db.checks.iter().map(|(_, v)| v)),
        kv: Seq(db.kv.len(), || db.kv.iter().map(|(_, v)| v)),
        tombstones: Seq(db.kv.tombstones().count(), || {
            db.kv.tombstones().map(|(k, t)| (k, t.index))
        }),
        config: Seq(db.config.len(), || db.config.iter().map(|(_, v)| v)),
        ca_roots: &db.ca_roots,
        ca_index: db.ca_index,
        service_index: Seq(db.service_index.len(), || {
            db.service_index.iter().map(|(k, v)| (k.as_str(), *v))
        }),
        table_index: [
            ("kv", db.kv.max_index()),
            ("nodes", db.nodes.max_index()),
            ("services", db.services.max_index()),
            ("checks", db.checks.max_index()),
            ("config", db.config.max_index()),
            ("sessions", db.sessions.max_index()),
            ("coordinates", db.coordinates.max_index()),
            ("queries", db.queries.max_index()),
        ],
        sessions: Seq(db.sessions.len(), || db.sessions.iter().map(|(_, v)| v)),
        lock_delays: Seq(db.lock_delays.len(), || {
            db.lock_delays.iter().map(|(k, v)| (k.as_str(), *v))
        }),
        autopilot: &db.autopilot,
        coordinates: Seq(db.coordinates.len(), || {
            db.coordinates.iter().map(|(_, v)| v)
        }),
        ca_config: &db.ca_config,
        queries: Seq(db.queries.len(), || db.queries.iter().map(|(_, v)| v)),
    };
    let start = out.stream_position()?;
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_be_bytes());
    header[12..20].copy_from_slice(&db.index.to_be_bytes());
    // [20..28]: the body's length, filled in below.
    out.write_all(&header)?;
    // The encoder writes a few bytes at a time: buffered here, the checksum and
    // `out` (a file, through a `dyn` sink) see large pieces.
    let mut sink = BufWriter::with_capacity(
        64 * 1024,
        Counted {
            out: &mut *out,
            crc: crc32fast::Hasher::new(),
            len: 0,
            failed: None,
        },
    );
    if let Err(e) = rmp_serde::encode::write_named(&mut sink, &body) {
        if let Some(io) = sink.get_mut().failed.take() {
            return Err(io);
        }
        // Only a table whose length disagrees with its rows gets here: a bug, and
        // a snapshot with an empty body would lose the state, so stop.
        panic!("state snapshot failed to serialise: {e}");
    }
    sink.flush()?;
    let Counted {
        crc: body_crc, len, ..
    } = sink.into_parts().0;
    header[20..28].copy_from_slice(&len.to_be_bytes());
    out.seek(SeekFrom::Start(start + 20))?;
    out.write_all(&header[20..28])?;
    out.seek(SeekFrom::Start(start + HEADER as u64 + len))?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header);
    crc.combine(&body_crc);
    out.write_all(&crc.finalize().to_be_bytes())?;
    Ok(HEADER as u64 + len + 4)
}

/// A writer that counts and checksums what passes through it, and keeps the
/// first I/O error (the encoder's own error type does not hand it back).
struct Counted<'a, W: Write + ?Sized> {
    out: &'a mut W,
    crc: crc32fast::Hasher,
    len: u64,
    failed: Option<std::io::Error>,
}

impl<W: Write + ?Sized> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.out.write(buf) {
            Ok(n) => {
                self.crc.update(&buf[..n]);
                self.len += n as u64;
                Ok(n)
            }
            // `write_all` retries an interrupted write itself: not a failure.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let copy = std::io::Error::new(e.kind(), e.to_string());
                self.failed.get_or_insert(e);
                Err(copy)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// [`Body`] by reference: the same field names and encodings.
#[derive(Serialize)]
struct BodyRef<'a, N, S, C, K, T, F, SI, SE, LD, CO, PQ> {
    nodes: N,
    services: S,
    checks: C,
    kv: K,
    tombstones: T,
    config: F,
    ca_roots: &'a Vec<CaRoot>,
    ca_index: u64,
    service_index: SI,
    table_index: [(&'static str, u64); 8],
    sessions: SE,
    lock_delays: LD,
    autopilot: &'a Option<AutopilotSettings>,
    coordinates: CO,
    ca_config: &'a Option<CaConfig>,
    queries: PQ,
}

/// A sequence of `.0` items, serialised from the iterator `.1` makes: the array
/// length goes first in MessagePack, so it must be known up front.
struct Seq<F>(usize, F);

impl<F, I> Serialize for Seq<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = s.serialize_seq(Some(self.0))?;
        let mut n = 0;
        for item in (self.1)() {
            seq.serialize_element(&item)?;
            n += 1;
        }
        if n != self.0 {
            return Err(S::Error::custom(format!(
                "{n} items serialised where {} were announced",
                self.0
            )));
        }
        seq.end()
    }
}

impl StateStore {
    /// Replaces the whole state with a snapshot; returns its index. On error nothing changes.
    pub fn restore(&self, bytes: &[u8]) -> Result<u64, SnapshotError> {
        let db = decode_db(bytes)?;
        let index = db.index;
        self.replace(db);
        Ok(index)
    }

    /// Checks that `bytes` is a whole snapshot in this build's format (magic,
    /// version, length, checksum) and returns its index, without decoding the
    /// body: that would build a second copy of the state next to the one
    /// being served. A body that passes and still does not decode is refused
    /// where the state would be replaced ([`StateStore::restore_at`]), on every
    /// server alike, so it changes nothing either.
    pub fn verify_snapshot(bytes: &[u8]) -> Result<u64, SnapshotError> {
        frame(bytes).map(|(index, _)| index)
    }
}

/// One kind of record in a snapshot, as `snapshot inspect` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordStats {
    /// Consul's name for the kind (`Register`, `KVS`, `Session`, ...), so that
    /// the listing reads as Consul's; `LockDelay` is Tribune's own.
    pub name: &'static str,
    /// Records of this kind.
    pub count: usize,
    /// Their encoded size in bytes.
    pub size: usize,
}

/// What a snapshot holds ([`StateStore::inspect_snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotContents {
    /// The raft index the state was taken at.
    pub index: u64,
    /// Records by kind, kinds with no records left out.
    pub records: Vec<RecordStats>,
    /// Every KV entry's key and encoded size, for a breakdown by key prefix.
    pub kv: Vec<(String, usize)>,
}

impl StateStore {
    /// Lists what a snapshot holds, without building a state from it: records
    /// are decoded, measured (encoded again, as the snapshot has them) and
    /// dropped. For `tribune snapshot inspect`.
    pub fn inspect_snapshot(bytes: &[u8]) -> Result<SnapshotContents, SnapshotError> {
        let (index, end) = frame(bytes)?;
        let body: Body = rmp_serde::from_slice(&bytes[HEADER..end]).map_err(SnapshotError::Body)?;
        let mut records = Vec::new();
        let mut add = |name: &'static str, sizes: Vec<usize>| {
            if !sizes.is_empty() {
                records.push(RecordStats {
                    name,
                    count: sizes.len(),
                    size: sizes.iter().sum(),
                });
            }
        };
        fn sizes<T: Serialize>(rows: &[T]) -> Vec<usize> {
            rows.iter().map(encoded_len).collect()
        }
        // Consul's snapshot has one `Register` record per node, service and check.
        let mut register = sizes(&body.nodes);
        register.extend(sizes(&body.services));
        register.extend(sizes(&body.checks));
        add("Register", register);
        let kv: Vec<(String, usize)> = body
            .kv
            .iter()
            .map(|e| (e.key.clone(), encoded_len(e)))
            .collect();
        add("KVS", kv.iter().map(|(_, n)| *n).collect());
        add("Tombstone", sizes(&body.tombstones));
        add("Session", sizes(&body.sessions));
        add("LockDelay", sizes(&body.lock_delays));
        add("ConfigEntry", sizes(&body.config));
        add("ConnectCA", sizes(&body.ca_roots));
        add("ConnectCAConfig", sizes(body.ca_config.as_slice()));
        add("Autopilot", sizes(body.autopilot.as_slice()));
        add("CoordinateBatchUpdate", sizes(&body.coordinates));
        add("PreparedQuery", sizes(&body.queries));
        let mut indexes = sizes(&body.table_index);
        indexes.extend(sizes(&body.service_index));
        add("Index", indexes);
        Ok(SnapshotContents { index, records, kv })
    }
}

/// Bytes `value` takes in a snapshot body.
fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Plain data into a counter: cannot fail.
    let _ = rmp_serde::encode::write_named(&mut count, value);
    count.0
}

/// Checks a snapshot's frame; returns its index and where its body ends.
fn frame(bytes: &[u8]) -> Result<(u64, usize), SnapshotError> {
    let truncated = || SnapshotError::Truncated { len: bytes.len() };
    if bytes.len() < HEADER + 4 || &bytes[..8] != MAGIC {
        return Err(truncated());
    }
    let version = u32::from_be_bytes(bytes[8..12].try_into().map_err(|_| truncated())?);
    if version != VERSION {
        return Err(SnapshotError::Version(version));
    }
    let index = u64::from_be_bytes(bytes[12..20].try_into().map_err(|_| truncated())?);
    let len = u64::from_be_bytes(bytes[20..28].try_into().map_err(|_| truncated())?);
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| HEADER.checked_add(l))
        .filter(|e| e + 4 == bytes.len())
        .ok_or_else(truncated)?;
    let stored = u32::from_be_bytes(bytes[end..end + 4].try_into().map_err(|_| truncated())?);
    let computed = crc32fast::hash(&bytes[..end]);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    Ok((index, end))
}

/// Decodes and verifies a snapshot into a state.
pub(crate) fn decode_db(bytes: &[u8]) -> Result<Db, SnapshotError> {
    {
        let (index, end) = frame(bytes)?;
        let body: Body = rmp_serde::from_slice(&bytes[HEADER..end]).map_err(SnapshotError::Body)?;
        let mut db = Db {
            index,
            kv: tribune_store::Table::new(true),
            ..Db::default()
        };
        for n in body.nodes {
            db.nodes
                .insert(n.node.as_str().to_owned(), n.clone(), n.raft.modify_index);
        }
        for s in body.services {
            let key = pair(s.node.as_str(), s.id.as_str());
            db.by_service
                .entry(s.service.clone())
                .or_default()
                .insert(key.clone(), ());
            let idx = s.raft.modify_index;
            db.services.insert(key, s, idx);
        }
        for c in body.checks {
            let idx = c.raft.modify_index;
            db.checks
                .insert(pair(c.node.as_str(), c.check_id.as_str()), c, idx);
        }
        for e in body.kv {
            let idx = e.raft.modify_index;
            db.kv.insert(e.key.clone(), e, idx);
        }
        for (k, i) in body.tombstones {
            db.kv.restore_tombstone(k, i);
        }
        for e in body.config {
            let idx = e.raft.modify_index;
            db.config.insert(pair(&e.kind, &e.name), e, idx);
        }
        for c in body.coordinates {
            db.coordinates.insert(pair(&c.node, &c.segment), c, 0);
        }
        for sess in body.sessions {
            let idx = sess.raft.modify_index;
            db.sessions.insert(sess.id.to_string(), sess, idx);
        }
        for q in body.queries {
            let idx = q.raft.modify_index;
            db.queries.insert(q.id.clone(), q, idx);
        }
        db.lock_delays = body.lock_delays.into_iter().collect();
        crate::session::rebuild_indexes(&mut db);
        db.ca_roots = body.ca_roots;
        db.ca_index = body.ca_index;
        db.autopilot = body.autopilot;
        db.ca_config = body.ca_config;
        db.service_index = body.service_index.into_iter().collect();
        for (table, idx) in body.table_index {
            match table.as_str() {
                "kv" => db.kv.bump(idx),
                "nodes" => db.nodes.bump(idx),
                "services" => db.services.bump(idx),
                "checks" => db.checks.bump(idx),
                "config" => db.config.bump(idx),
                "sessions" => db.sessions.bump(idx),
                "coordinates" => db.coordinates.bump(idx),
                "queries" => db.queries.bump(idx),
                _ => {}
            }
        }
        Ok(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Command;
    use tribune_types::model::ops::{KvDeleteMode, KvSetMode, Registration, WriteRequest};

    /// The body as the encoder wrote it before it serialised from references:
    /// owned rows collected into [`Body`]. Snapshots written by earlier builds are
    /// in this form, so the two must stay byte-identical.
    fn collected(db: &Db) -> Vec<u8> {
        let body = Body {
            nodes: db.nodes.iter().map(|(_, v)| v.clone()).collect(),
            services: db.services.iter().map(|(_, v)| v.clone()).collect(),
            checks: db.checks.iter().map(|(_, v)| v.clone()).collect(),
            kv: db.kv.iter().map(|(_, v)| v.clone()).collect(),
            tombstones: db
                .kv
                .tombstones()
                .map(|(k, t)| (k.to_owned(), t.index))
                .collect(),
            config: db.config.iter().map(|(_, v)| v.clone()).collect(),
            ca_roots: db.ca_roots.clone(),
            ca_index: db.ca_index,
            service_index: db
                .service_index
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            table_index: vec![
                ("kv".into(), db.kv.max_index()),
                ("nodes".into(), db.nodes.max_index()),
                ("services".into(), db.services.max_index()),
                ("checks".into(), db.checks.max_index()),
                ("config".into(), db.config.max_index()),
                ("sessions".into(), db.sessions.max_index()),
                ("coordinates".into(), db.coordinates.max_index()),
                ("queries".into(), db.queries.max_index()),
            ],
            sessions: db.sessions.iter().map(|(_, v)| v.clone()).collect(),
            lock_delays: db
                .lock_delays
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            autopilot: db.autopilot.clone(),
            coordinates: db.coordinates.iter().map(|(_, v)| v.clone()).collect(),
            ca_config: db.ca_config.clone(),
            queries: db.queries.iter().map(|(_, v)| v.clone()).collect(),
        };
        rmp_serde::to_vec_named(&body).unwrap()
    }

    #[test]
    fn the_body_is_written_as_the_collected_rows_were() {
        let s = StateStore::new();
        let mut index = 0;
        let mut apply = |req: WriteRequest| {
            index += 1;
            s.apply(index, &Command::Request(req)).unwrap();
        };
        for i in 0..300 {
            apply(WriteRequest::KvSet {
                entry: KvEntry {
                    key: format!("k/{i:03}"),
                    value: vec![i as u8; 10],
                    flags: i,
                    ..Default::default()
                },
                mode: KvSetMode::Set,
            });
        }
        for i in (0..300).step_by(7) {
            apply(WriteRequest::KvDelete {
                key: format!("k/{i:03}"),
                mode: KvDeleteMode::Key,
            });
        }
        for n in ["n1", "n2"] {
            apply(WriteRequest::Register(Registration {
                node: Node {
                    node: n.into(),
                    address: "127.0.0.1".into(),
                    ..Default::default()
                },
                service: Some(Service {
                    id: "web".into(),
                    service: "web".into(),
                    ..Default::default()
                }),
                checks: vec![Check {
                    check_id: "c".into(),
                    name: "c".into(),
                    ..Default::default()
                }],
                skip_node_update: false,
            }));
        }
        apply(WriteRequest::ConfigSet {
            entry: ConfigEntry {
                kind: "service-defaults".into(),
                name: "web".into(),
                ..Default::default()
            },
            cas: None,
        });
        apply(WriteRequest::SessionCreate(Session {
            id: tribune_types::SessionId(uuid::Uuid::from_u128(7)),
            node: "n1".into(),
            ..Default::default()
        }));
        apply(WriteRequest::AutopilotSet {
            config: AutopilotSettings::default(),
            cas: None,
        });
        apply(WriteRequest::CoordinateBatchUpdate {
            updates: vec![tribune_types::model::coordinate::CoordinateEntry {
                node: "n2".into(),
                segment: String::new(),
                coord: Default::default(),
            }],
        });
        apply(WriteRequest::CaSetConfig {
            config: CaConfig {
                provider: "consul".into(),
                config_json: r#"{"LeafCertTTL":"24h"}"#.into(),
                ..Default::default()
            },
            cas: Some(0),
        });
        apply(WriteRequest::QuerySet {
            query: PreparedQuery {
                id: "4f3a9e4e-3a5b-4bb4-9f3b-1c2d3e4f5a6b".into(),
                name: "web-q".into(),
                session: uuid::Uuid::from_u128(7).to_string(),
                service: tribune_types::model::query::ServiceQuery {
                    service: "web".into(),
                    tags: Some(vec!["!old".into()]),
                    ..Default::default()
                },
                ..Default::default()
            },
            create: true,
        });
        let mut db = (*s.snapshot_db()).clone();
        db.lock_delays.insert("k/001".into(), 99);
        db.ca_roots.push(CaRoot::default());
        assert!(!db.kv.is_empty() && db.kv.tombstones().count() > 0);
        assert!(!db.nodes.is_empty() && !db.services.is_empty() && !db.checks.is_empty());
        assert!(!db.config.is_empty() && !db.sessions.is_empty());
        assert!(!db.service_index.is_empty() && db.autopilot.is_some());
        assert_eq!(db.coordinates.len(), 1);
        assert!(db.ca_config.is_some());
        assert_eq!(db.queries.len(), 1);

        let encode = |db: &Db| {
            let mut out = Cursor::new(Vec::new());
            write_snapshot(db, &mut out).unwrap();
            out.into_inner()
        };
        let snap = encode(&db);
        assert_eq!(&snap[HEADER..snap.len() - 4], collected(&db).as_slice());
        // The checksum combined from the header's and the body's is the one
        // over the bytes.
        let end = snap.len() - 4;
        assert_eq!(crc32fast::hash(&snap[..end]).to_be_bytes(), snap[end..]);
        let back = decode_db(&snap).unwrap();
        assert_eq!(encode(&back), snap);
    }
}
