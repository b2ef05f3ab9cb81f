//! The operator snapshot archive: what `GET /v1/snapshot` returns, `PUT
//! /v1/snapshot` restores and `tribune snapshot inspect` reads.
//!
//! The container is Consul's, so tools that look inside a snapshot file (or
//! only check that it is gzip, as py-consul's tests do) find what they expect: a
//! gzip-compressed tar holding, in this order,
//!
//! - `meta.json`: raft's snapshot metadata as Consul writes it (`Version`,
//!   `ID`, `Index`, `Term`, `Peers`, `Configuration`, `ConfigurationIndex`,
//!   `Size`), one JSON object and a newline;
//! - `state.bin`: the state store's own snapshot, itself versioned and
//!   checksummed (not Consul's FSM encoding: archives do not cross between
//!   Consul and Tribune);
//! - `SHA256SUMS`: `sha256sum`-style lines for the other two, checked on read.
//!
//! Both directions stream. [`write_archive`] takes the state from any reader
//! whose length is known up front (tar puts each file's size before its
//! bytes); [`read_archive`] writes the state to any writer and checks every
//! hash before returning, so a truncated download, a flipped bit or a foreign
//! file is refused before anything is restored from it.

use std::io::{self, BufRead, BufReader, Read, Write};

use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `meta.json`'s `Version`: hashicorp/raft's snapshot format version.
pub const VERSION: u32 = 1;
const META: &str = "meta.json";
const STATE: &str = "state.bin";
const SUMS: &str = "SHA256SUMS";
/// Bounds on the two small files, so a hostile archive cannot make a reader
/// buffer gigabytes before its hashes are even checked.
const MAX_META: u64 = 1 << 20;
const MAX_SUMS: u64 = 64 << 10;

/// `meta.json`: hashicorp/raft's `SnapshotMeta`, field for field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArchiveMeta {
    /// Snapshot format version ([`VERSION`]).
    pub version: u32,
    /// `term-index-created_ms`, as raft names snapshots.
    #[serde(rename = "ID")]
    pub id: String,
    /// Raft index the state was taken at.
    pub index: u64,
    /// Raft term at that index.
    pub term: u64,
    /// Raft protocol 1's peer list; always null, kept for the shape.
    #[serde(default)]
    pub peers: Option<String>,
    /// The raft configuration when the snapshot was taken.
    #[serde(default)]
    pub configuration: ArchiveConfiguration,
    /// Index of that configuration.
    #[serde(default)]
    pub configuration_index: u64,
    /// Length of `state.bin`.
    pub size: u64,
}

/// raft's `Configuration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArchiveConfiguration {
    /// The members.
    #[serde(default)]
    pub servers: Option<Vec<ArchiveServer>>,
}

/// raft's `Server`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveServer {
    /// 0 voter, 1 non-voter (raft's `Suffrage`).
    #[serde(rename = "Suffrage")]
    pub suffrage: u8,
    /// Node ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Server RPC address.
    #[serde(rename = "Address")]
    pub address: String,
}

impl ArchiveMeta {
    /// Metadata for a state of `size` bytes taken at `index` in `term`, at
    /// `created_ms` (ms since the Unix epoch).
    pub fn new(index: u64, term: u64, created_ms: u64, size: u64) -> ArchiveMeta {
        ArchiveMeta {
            version: VERSION,
            id: format!("{term}-{index}-{created_ms}"),
            index,
            term,
            peers: None,
            configuration: ArchiveConfiguration::default(),
            configuration_index: 0,
            size,
        }
    }

    /// When the snapshot was taken (ms since the Unix epoch), from its ID.
    pub fn created_ms(&self) -> Option<u64> {
        self.id.rsplit('-').next()?.parse().ok()
    }
}

/// Why bytes are not a usable archive. The texts follow Consul's, so an
/// operator sees the same words from either.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// Not gzip, or the gzip stream is broken.
    #[error("failed to decompress snapshot: {0}")]
    Decompress(String),
    /// The tar inside is truncated or malformed.
    #[error("failed to read snapshot file: failed reading snapshot: {0}")]
    Read(String),
    /// `meta.json` is not raft's metadata.
    #[error("failed to read snapshot file: failed to decode snapshot metadata: {0}")]
    Meta(String),
    /// A file that does not belong in a snapshot.
    #[error("failed to read snapshot file: unexpected file {0:?} in snapshot")]
    UnexpectedFile(String),
    /// A hash is missing or does not match.
    #[error("failed to read snapshot file: failed checking integrity of snapshot: {0}")]
    Integrity(String),
    /// `state.bin` is not as long as `meta.json` says.
    #[error(
        "failed to read snapshot file: state.bin holds {actual} bytes, meta.json says {declared}"
    )]
    Size {
        /// `Size` in `meta.json`.
        declared: u64,
        /// Bytes in `state.bin`.
        actual: u64,
    },
    /// Writing the state out failed (the reader's side, not the archive).
    #[error("failed to store snapshot state: {0}")]
    Output(String),
}

/// Writes an archive of `meta` and the `meta.size` bytes of `state` to `out`,
/// streaming; returns `out` once the gzip trailer is written.
///
/// Fails if `state` ends before `meta.size` bytes (the tar entry's size is
/// already written by then, so a short state cannot be papered over).
pub fn write_archive<W: Write>(out: W, meta: &ArchiveMeta, state: &mut dyn Read) -> io::Result<W> {
    // The fastest level: a large state is mostly values an operator stored, and
    // the archive exists to be restored, so time spent squeezing it is time the
    // save holds a server's CPU.
    let mut tar = tar::Builder::new(GzEncoder::new(out, Compression::fast()));
    // Go's json.Encoder ends the document with a newline; Consul's meta.json has it.
    let mut meta_json = serde_json::to_vec(meta).map_err(io::Error::other)?;
    meta_json.push(b'\n');
    let mtime = meta.created_ms().unwrap_or(0) / 1000;
    tar.append(
        &header(META, meta_json.len() as u64, mtime)?,
        &meta_json[..],
    )?;
    let meta_sum = Sha256::digest(&meta_json);

    let mut body = Hashing::new(state.take(meta.size));
    tar.append(&header(STATE, meta.size, mtime)?, &mut body)?;
    if body.len != meta.size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("state ended after {} of {} bytes", body.len, meta.size),
        ));
    }
    let sums = format!(
        "{}  {META}\n{}  {STATE}\n",
        hex::encode(meta_sum),
        hex::encode(body.hash.finalize())
    );
    tar.append(&header(SUMS, sums.len() as u64, mtime)?, sums.as_bytes())?;
    tar.into_inner()?.finish()
}

fn header(name: &str, size: u64, mtime: u64) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)?;
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// Where [`read_archive`] writes `state.bin`.
pub trait StateSink: Write {
    /// Told `meta.json`'s `Size` before `state.bin` arrives (archives in
    /// Consul's order have it first), so a buffer can be sized once: grown by
    /// doubling instead, a state of hundreds of MiB would leave the allocator
    /// holding about twice that.
    fn expect_len(&mut self, _len: u64) {}
}

impl StateSink for Vec<u8> {
    fn expect_len(&mut self, len: u64) {
        // A lying `Size` fails the check at the end; meanwhile it only costs
        // address space, and a failed reservation falls back to growing.
        if let Ok(len) = usize::try_from(len) {
            let _ = self.try_reserve_exact(len.saturating_sub(self.len()));
        }
    }
}

impl StateSink for io::Sink {}

/// Reads and verifies an archive, writing `state.bin` to `state_out` as it
/// goes; returns the metadata once every hash has matched.
///
/// `state_out` may have received bytes even when this fails: callers write to
/// something they can throw away (a buffer, a temporary file).
pub fn read_archive<R: Read>(
    input: R,
    state_out: &mut dyn StateSink,
) -> Result<ArchiveMeta, ArchiveError> {
    let mut input = BufReader::new(input);
    // Checked here so that "not a snapshot at all" reads as such, rather than as
    // a tar error from deep inside the decompressor.
    let mut magic = [0u8; 2];
    input.read_exact(&mut magic).map_err(|e| {
        ArchiveError::Decompress(match e.kind() {
            io::ErrorKind::UnexpectedEof => "unexpected EOF".into(),
            _ => e.to_string(),
        })
    })?;
    if magic != [0x1f, 0x8b] {
        return Err(ArchiveError::Decompress("gzip: invalid header".into()));
    }
    let mut tar = tar::Archive::new(GzDecoder::new(io::Cursor::new(magic).chain(input)));
    let read_err = |e: io::Error| ArchiveError::Read(e.to_string());
    let mut meta: Option<(ArchiveMeta, String)> = None;
    let mut state: Option<(u64, String)> = None;
    let mut sums: Option<String> = None;
    for entry in tar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let seen = match name.as_str() {
            META => meta.is_some(),
            STATE => state.is_some(),
            SUMS => sums.is_some(),
            _ => false,
        };
        if seen {
            // A second copy would be written out although only one is hashed.
            return Err(ArchiveError::Read(format!("{name} appears twice")));
        }
        match name.as_str() {
            META => {
                let mut buf = Vec::new();
                (&mut entry)
                    .take(MAX_META + 1)
                    .read_to_end(&mut buf)
                    .map_err(read_err)?;
                if buf.len() as u64 > MAX_META {
                    return Err(ArchiveError::Meta("larger than 1 MiB".into()));
                }
                let m: ArchiveMeta =
                    serde_json::from_slice(&buf).map_err(|e| ArchiveError::Meta(e.to_string()))?;
                if state.is_none() {
                    state_out.expect_len(m.size);
                }
                meta = Some((m, hex::encode(Sha256::digest(&buf))));
            }
            STATE => {
                let mut body = Hashing::new(&mut entry);
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = body.read(&mut buf).map_err(read_err)?;
                    if n == 0 {
                        break;
                    }
                    state_out
                        .write_all(&buf[..n])
                        .map_err(|e| ArchiveError::Output(e.to_string()))?;
                }
                state = Some((body.len, hex::encode(body.hash.finalize())));
            }
            SUMS => {
                let mut text = String::new();
                (&mut entry)
                    .take(MAX_SUMS + 1)
                    .read_to_string(&mut text)
                    .map_err(read_err)?;
                if text.len() as u64 > MAX_SUMS {
                    return Err(ArchiveError::Integrity(
                        "SHA256SUMS larger than 64 KiB".into(),
                    ));
                }
                sums = Some(text);
            }
            other => return Err(ArchiveError::UnexpectedFile(other.to_owned())),
        }
    }
    // The tar ends before the gzip stream does: read on to its trailer so a
    // download cut short there, or a corrupted tail, is refused too.
    let mut gz = tar.into_inner();
    io::copy(&mut gz, &mut io::sink()).map_err(|e| ArchiveError::Decompress(e.to_string()))?;
    // Nor anything after the gzip stream, which Go's reader (Consul's) refuses.
    let trailing = gz
        .into_inner()
        .fill_buf()
        .map_err(|e| ArchiveError::Decompress(e.to_string()))?
        .len();
    if trailing > 0 {
        return Err(ArchiveError::Decompress("gzip: invalid header".into()));
    }
    // Consul's rule: every line must name a file we hashed and match it, and
    // every file we expect must have had a line.
    let missing = |f: &str| ArchiveError::Integrity(format!("file missing for {f:?}"));
    let (meta, meta_sum) = meta.ok_or_else(|| missing(META))?;
    let (state_len, state_sum) = state.ok_or_else(|| missing(STATE))?;
    let mut seen = [false; 2];
    for line in sums.unwrap_or_default().lines() {
        let (sum, file) = line
            .split_once("  ")
            .ok_or_else(|| ArchiveError::Integrity(format!("malformed line {line:?}")))?;
        let (slot, want) = match file {
            META => (0, &meta_sum),
            STATE => (1, &state_sum),
            _ => {
                return Err(ArchiveError::Integrity(format!(
                    "list missing hash for {file:?}"
                )))
            }
        };
        if !sum.eq_ignore_ascii_case(want) {
            return Err(ArchiveError::Integrity(format!(
                "hash check failed for {file:?}"
            )));
        }
        seen[slot] = true;
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(missing([META, STATE][i]));
    }
    if meta.size != state_len {
        return Err(ArchiveError::Size {
            declared: meta.size,
            actual: state_len,
        });
    }
    Ok(meta)
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    len: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            len: 0,
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(state: &[u8]) -> Vec<u8> {
        let mut meta = ArchiveMeta::new(42, 3, 1_700_000_000_000, state.len() as u64);
        meta.configuration.servers = Some(vec![ArchiveServer {
            suffrage: 0,
            id: "a1b2".into(),
            address: "127.0.0.1:8300".into(),
        }]);
        meta.configuration_index = 1;
        write_archive(Vec::new(), &meta, &mut &state[..]).unwrap()
    }

    /// Rebuilds an archive's tar with `edit` applied to its files, re-gzipped,
    /// so a test can damage one layer while the others stay well-formed.
    fn retar(bytes: &[u8], edit: impl Fn(&str, Vec<u8>) -> Option<(String, Vec<u8>)>) -> Vec<u8> {
        let mut files = Vec::new();
        let mut ar = tar::Archive::new(GzDecoder::new(bytes));
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            if let Some(f) = edit(&name, data) {
                files.push(f);
            }
        }
        let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (name, data) in files {
            b.append(&header(&name, data.len() as u64, 0).unwrap(), &data[..])
                .unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn round_trips_in_consuls_layout() {
        let state: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let bytes = sample(&state);
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip");
        let mut out = Vec::new();
        let meta = read_archive(&bytes[..], &mut out).unwrap();
        assert_eq!(out, state);
        // Sized once from meta.json, not grown by doubling.
        assert!(
            out.capacity() < state.len() + state.len() / 8,
            "{}",
            out.capacity()
        );
        assert_eq!(meta.id, "3-42-1700000000000");
        assert_eq!((meta.index, meta.term, meta.size), (42, 3, 200_000));
        assert_eq!(meta.created_ms(), Some(1_700_000_000_000));

        // The files, in Consul's order, with Consul's field names.
        let mut names = Vec::new();
        let mut ar = tar::Archive::new(GzDecoder::new(&bytes[..]));
        let mut meta_json = String::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            if name == META {
                e.read_to_string(&mut meta_json).unwrap();
            }
            names.push(name);
        }
        assert_eq!(names, [META, STATE, SUMS]);
        assert!(meta_json.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&meta_json).unwrap();
        assert_eq!(v["ID"], "3-42-1700000000000");
        assert_eq!(v["Size"], 200_000);
        assert_eq!(v["Peers"], serde_json::Value::Null);
        assert_eq!(
            v["Configuration"]["Servers"][0]["Address"],
            "127.0.0.1:8300"
        );
        assert_eq!(v["Configuration"]["Servers"][0]["Suffrage"], 0);
        assert_eq!(v["ConfigurationIndex"], 1);
    }

    #[test]
    fn damaged_archives_are_refused() {
        let state = b"the state".to_vec();
        let bytes = sample(&state);
        let read = |b: &[u8]| read_archive(b, &mut Vec::new());

        for cut in [0, 1, 5, 30, bytes.len() / 2, bytes.len() - 9] {
            assert!(read(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(
            read(b"TRIBSNAP and more"),
            Err(ArchiveError::Decompress("gzip: invalid header".into()))
        );
        // A flipped bit inside the compressed stream: gzip or tar notices.
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x10;
        assert!(read(&flipped).is_err());

        // Well-formed gzip and tar, wrong contents: the hashes notice.
        let changed = retar(&bytes, |name, mut data| {
            if name == STATE {
                data[0] ^= 1;
            }
            Some((name.into(), data))
        });
        assert_eq!(
            read(&changed),
            Err(ArchiveError::Integrity(
                "hash check failed for \"state.bin\"".into()
            ))
        );
        let no_sums = retar(&bytes, |name, data| {
            (name != SUMS).then(|| (name.into(), data))
        });
        assert_eq!(
            read(&no_sums),
            Err(ArchiveError::Integrity(
                "file missing for \"meta.json\"".into()
            ))
        );
        let no_state = retar(&bytes, |name, data| {
            (name != STATE).then(|| (name.into(), data))
        });
        assert_eq!(
            read(&no_state),
            Err(ArchiveError::Integrity(
                "file missing for \"state.bin\"".into()
            ))
        );
        let extra = retar(&bytes, |name, data| {
            Some((
                if name == SUMS {
                    "evil".into()
                } else {
                    name.into()
                },
                data,
            ))
        });
        assert_eq!(
            read(&extra),
            Err(ArchiveError::UnexpectedFile("evil".into()))
        );
        let twice = retar(&bytes, |name, data| {
            Some((
                if name == META {
                    STATE.into()
                } else {
                    name.into()
                },
                data,
            ))
        });
        assert!(matches!(read(&twice), Err(ArchiveError::Read(m)) if m.contains("twice")));
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(b"junk");
        assert_eq!(
            read(&trailing),
            Err(ArchiveError::Decompress("gzip: invalid header".into()))
        );
        // A reader that hands out one byte at a time is still read whole.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut out = Vec::new();
        read_archive(Trickle(&bytes), &mut out).unwrap();
        assert_eq!(out, state);
        let bad_meta = retar(&bytes, |name, data| {
            Some((
                name.into(),
                if name == META { b"{}\n".to_vec() } else { data },
            ))
        });
        assert!(matches!(read(&bad_meta), Err(ArchiveError::Meta(_))));
    }

    #[test]
    fn a_short_state_fails_the_write() {
        let meta = ArchiveMeta::new(1, 1, 0, 100);
        let err = write_archive(Vec::new(), &meta, &mut &b"only this"[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
