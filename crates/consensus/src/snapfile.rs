//! Snapshot files under `data_dir/snapshots/`.
//!
//! One file per snapshot, named `<index:020>-<term:020>.snap` so a lexical sort is
//! an index sort. Layout (all integers big-endian):
//!
//! ```text
//! magic "TRIBSNAP" | version u32 | index u64 | term u64 | conf_len u32 | data_len u64
//! | conf_state (protobuf, conf_len bytes) | data (data_len bytes) | crc32 u32
//! ```
//!
//! The CRC covers every byte before it. Files are written to a temporary name,
//! fsync'd, renamed into place and the directory fsync'd, so a crash leaves
//! either the old set of snapshots or the new one, never a half-written file
//! under a real name.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use raft::eraftpb::ConfState;

use crate::codec;
use crate::error::{io_err, ConsensusError, SnapshotFileError};
use crate::machine::SnapshotSink;

const MAGIC: &[u8; 8] = b"TRIBSNAP";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 8 + 4 + 8;
const TRAILER_LEN: usize = 4;
const SUFFIX: &str = ".snap";
const TMP_PREFIX: &str = ".tmp-";

/// A decoded, checksum-verified snapshot file.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotFile {
    /// Last log index covered by the snapshot.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// Cluster membership as of `index`.
    pub conf_state: ConfState,
    /// The state machine's serialised state.
    pub data: Vec<u8>,
}

/// A snapshot file found in the directory (not yet read or verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotRef {
    pub(crate) index: u64,
    pub(crate) term: u64,
    pub(crate) path: PathBuf,
}

/// The snapshot directory of one node.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    /// Open (creating if needed) the directory and remove temporaries left by a
    /// crash mid-write; they were never renamed, so nothing refers to them.
    pub(crate) fn open(dir: PathBuf) -> Result<Self, ConsensusError> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_err(&path))?;
            }
        }
        Ok(SnapshotDir { dir })
    }

    /// All snapshot files, newest (highest index, then term) first.
    pub(crate) fn list(&self) -> Result<Vec<SnapshotRef>, ConsensusError> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name();
            if let Some((index, term)) = parse_name(&name.to_string_lossy()) {
                found.push(SnapshotRef {
                    index,
                    term,
                    path: entry.path(),
                });
            }
        }
        found.sort_by_key(|s| std::cmp::Reverse((s.index, s.term)));
        Ok(found)
    }

    /// Durably write a snapshot and return its path.
    pub(crate) fn write(
        &self,
        index: u64,
        term: u64,
        conf_state: &ConfState,
        data: &[u8],
    ) -> Result<PathBuf, ConsensusError> {
        self.write_with(index, term, conf_state, |out| out.write_all(data))
            .map(|(path, _)| path)
    }

    /// Durably write a snapshot whose data `data` writes into the file itself
    /// (see [`SnapshotSink`]); returns its path and the data's length.
    ///
    /// The data's length is written into the header once known, and the
    /// checksum is computed by reading the file back (from the page cache)
    /// before the trailer is appended: the data may have been patched in place
    /// as it was written, so a checksum taken on the way would not be the file's.
    pub(crate) fn write_with(
        &self,
        index: u64,
        term: u64,
        conf_state: &ConfState,
        data: impl FnOnce(&mut dyn SnapshotSink) -> std::io::Result<()>,
    ) -> Result<(PathBuf, u64), ConsensusError> {
        let name = file_name(index, term);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{TMP_PREFIX}{name}"));
        // Until renamed, the temporary goes if the write fails or the task
        // panics: it can be as large as the state, and `open` only removes
        // leftovers at the next start.
        let mut guard = RemoveOnDrop(Some(&tmp));
        let data_len = write_file(&tmp, index, term, &codec::encode(conf_state), data)
            .map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        guard.0 = None;
        sync_dir(&self.dir)?;
        Ok((path, data_len))
    }

    /// Delete all but the newest `keep` snapshots.
    pub(crate) fn prune(&self, keep: usize) -> Result<(), ConsensusError> {
        for old in self.list()?.into_iter().skip(keep) {
            fs::remove_file(&old.path).map_err(io_err(&old.path))?;
        }
        sync_dir(&self.dir)
    }
}

/// Removes the file it names when dropped, unless it was cleared.
struct RemoveOnDrop<'a>(Option<&'a Path>);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            // Best effort: `SnapshotDir::open` removes leftovers at the next start.
            let _ = fs::remove_file(path);
        }
    }
}

/// Writes a whole snapshot file at `tmp` and syncs it; returns the data's length.
fn write_file(
    tmp: &Path,
    index: u64,
    term: u64,
    conf: &[u8],
    data: impl FnOnce(&mut dyn SnapshotSink) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_be_bytes());
    header[12..20].copy_from_slice(&index.to_be_bytes());
    header[20..28].copy_from_slice(&term.to_be_bytes());
    // A ConfState is a handful of ids; u32 cannot overflow in practice, and if it
    // somehow did the CRC/length check on read would reject the file.
    header[28..32].copy_from_slice(&(conf.len() as u32).to_be_bytes());
    // [32..40]: the data's length, filled in below.
    // Readable too: the checksum is computed by reading the file back.
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(&header)?;
    w.write_all(conf)?;
    let start = (HEADER_LEN + conf.len()) as u64;
    data(&mut DataRegion {
        file: &mut w,
        start,
    })?;
    let data_len = w.seek(SeekFrom::End(0))? - start;
    w.seek(SeekFrom::Start(32))?;
    w.write_all(&data_len.to_be_bytes())?;
    let mut file = w
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)?;
    file.seek(SeekFrom::Start(0))?;
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = start + data_len;
    while left > 0 {
        let n = file.read(&mut buf[..left.min(1 << 20) as usize])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        crc.update(&buf[..n]);
        left -= n as u64;
    }
    file.write_all(&crc.finalize().to_be_bytes())?;
    file.sync_all()?;
    Ok(data_len)
}

/// The data region of a snapshot file being written: positions are relative to
/// its start, and seeking before it is refused.
struct DataRegion<'a> {
    file: &'a mut BufWriter<File>,
    start: u64,
}

impl Write for DataRegion<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for DataRegion<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let before = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the snapshot's data",
            )
        };
        let to = match to {
            SeekFrom::Start(n) => SeekFrom::Start(self.start.checked_add(n).ok_or_else(before)?),
            SeekFrom::Current(d) => {
                let here = self.file.stream_position()?;
                let there = here.checked_add_signed(d).filter(|&p| p >= self.start);
                SeekFrom::Start(there.ok_or_else(before)?)
            }
            SeekFrom::End(d) => {
                let end = self.file.seek(SeekFrom::End(0))?;
                let there = end.checked_add_signed(d).filter(|&p| p >= self.start);
                SeekFrom::Start(there.ok_or_else(before)?)
            }
        };
        Ok(self.file.seek(to)? - self.start)
    }
}

/// Read and verify one snapshot file.
pub fn read_snapshot_file(path: &Path) -> Result<SnapshotFile, SnapshotFileError> {
    let bytes = fs::read(path).map_err(|source| SnapshotFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file = decode(bytes)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    if let Some((index, term)) = name.as_deref().and_then(parse_name) {
        if (index, term) != (file.index, file.term) {
            return Err(SnapshotFileError::NameMismatch {
                index: file.index,
                term: file.term,
            });
        }
    }
    Ok(file)
}

/// Verifies a snapshot file's bytes and keeps its data in the same buffer: a
/// copy would double, for a moment, the memory a large snapshot takes at start
/// and whenever one is sent to a follower.
fn decode(bytes: Vec<u8>) -> Result<SnapshotFile, SnapshotFileError> {
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(SnapshotFileError::TooShort { len: bytes.len() });
    }
    if &bytes[..8] != MAGIC {
        return Err(SnapshotFileError::BadMagic);
    }
    let version = be_u32(&bytes[8..12]);
    if version != VERSION {
        return Err(SnapshotFileError::UnsupportedVersion(version));
    }
    let index = be_u64(&bytes[12..20]);
    let term = be_u64(&bytes[20..28]);
    let conf_len = u64::from(be_u32(&bytes[28..32]));
    let data_len = be_u64(&bytes[32..40]);
    let expected = (HEADER_LEN as u64 + TRAILER_LEN as u64)
        .checked_add(conf_len)
        .and_then(|n| n.checked_add(data_len))
        .unwrap_or(u64::MAX);
    if expected != bytes.len() as u64 {
        return Err(SnapshotFileError::LengthMismatch {
            expected,
            actual: bytes.len() as u64,
        });
    }
    let body_end = bytes.len() - TRAILER_LEN;
    let stored = be_u32(&bytes[body_end..]);
    let computed = crc32fast::hash(&bytes[..body_end]);
    if stored != computed {
        return Err(SnapshotFileError::Checksum { stored, computed });
    }
    // Lengths were checked against the file length above, so these fit.
    let conf_end = HEADER_LEN + conf_len as usize;
    let conf_state =
        codec::decode(&bytes[HEADER_LEN..conf_end]).map_err(SnapshotFileError::ConfState)?;
    Ok(SnapshotFile {
        index,
        term,
        conf_state,
        data: {
            let mut data = bytes;
            data.truncate(body_end);
            data.drain(..conf_end);
            data
        },
    })
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

fn file_name(index: u64, term: u64) -> String {
    format!("{index:020}-{term:020}{SUFFIX}")
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (index, term) = stem.split_once('-')?;
    Some((index.parse().ok()?, term.parse().ok()?))
}

/// fsync a directory so a rename or unlink inside it is durable.
fn sync_dir(dir: &Path) -> Result<(), ConsensusError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> ConfState {
        ConfState {
            voters: vec![1, 2, 3],
            learners: vec![4],
            ..Default::default()
        }
    }

    #[test]
    fn write_read_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SnapshotDir::open(tmp.path().join("snaps")).unwrap();
        let path = dir.write(42, 7, &conf(), b"state bytes").unwrap();
        let file = read_snapshot_file(&path).unwrap();
        assert_eq!(file.index, 42);
        assert_eq!(file.term, 7);
        assert_eq!(file.conf_state, conf());
        assert_eq!(file.data, b"state bytes");
    }

    /// Data written through the sink, patched in place by seeking back, makes
    /// the same file as the same bytes handed over whole.
    #[test]
    fn data_written_through_the_sink_and_patched_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let whole = SnapshotDir::open(tmp.path().join("whole")).unwrap();
        let streamed = SnapshotDir::open(tmp.path().join("streamed")).unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut want = data.clone();
        want[..4].copy_from_slice(b"LEN!");
        let a = whole.write(42, 7, &conf(), &want).unwrap();
        let (b, len) = streamed
            .write_with(42, 7, &conf(), |out| {
                assert_eq!(out.stream_position()?, 0);
                out.write_all(&data)?;
                let end = out.stream_position()?;
                out.seek(SeekFrom::Start(0))?;
                out.write_all(b"LEN!")?;
                out.seek(SeekFrom::Start(end))?;
                Ok(())
            })
            .unwrap();
        assert_eq!(len, want.len() as u64);
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
        assert_eq!(read_snapshot_file(&b).unwrap().data, want);
    }

    /// A task that fails, seeks before its data or panics leaves neither a
    /// snapshot nor a temporary file behind.
    #[test]
    fn a_failed_task_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SnapshotDir::open(tmp.path().to_path_buf()).unwrap();
        let err = dir.write_with(5, 1, &conf(), |out| {
            out.write_all(b"partial")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(err.is_err());
        let err = dir.write_with(6, 1, &conf(), |out| {
            out.write_all(b"abc")?;
            out.seek(SeekFrom::Current(-4)).map(|_| ())
        });
        assert!(err.is_err());
        let panicked = std::panic::catch_unwind(|| {
            dir.write_with(7, 1, &conf(), |out| {
                out.write_all(b"partial")?;
                panic!("serialising failed");
            })
        });
        assert!(panicked.is_err());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SnapshotDir::open(tmp.path().to_path_buf()).unwrap();
        let path = dir.write(3, 2, &conf(), b"abc").unwrap();
        let good = fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(decode(bad).is_err(), "flip at byte {i} went unnoticed");
        }
        assert!(matches!(
            decode(good[..good.len() - 1].to_vec()),
            Err(SnapshotFileError::LengthMismatch { .. })
        ));
        assert!(matches!(
            decode(good[..10].to_vec()),
            Err(SnapshotFileError::TooShort { .. })
        ));
    }

    #[test]
    fn list_sorts_newest_first_and_prune_keeps_two() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SnapshotDir::open(tmp.path().to_path_buf()).unwrap();
        for (i, t) in [(5, 1), (100, 2), (20, 2)] {
            dir.write(i, t, &conf(), b"x").unwrap();
        }
        fs::write(tmp.path().join("unrelated.txt"), b"hi").unwrap();
        let idx: Vec<u64> = dir.list().unwrap().iter().map(|s| s.index).collect();
        assert_eq!(idx, vec![100, 20, 5]);
        dir.prune(2).unwrap();
        let idx: Vec<u64> = dir.list().unwrap().iter().map(|s| s.index).collect();
        assert_eq!(idx, vec![100, 20]);
    }

    #[test]
    fn leftover_temporaries_are_removed_and_renamed_files_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(".tmp-junk.snap"), b"partial").unwrap();
        let dir = SnapshotDir::open(tmp.path().to_path_buf()).unwrap();
        assert!(!tmp.path().join(".tmp-junk.snap").exists());
        let path = dir.write(9, 1, &conf(), b"x").unwrap();
        let renamed = tmp.path().join(file_name(10, 1));
        fs::rename(&path, &renamed).unwrap();
        assert!(matches!(
            read_snapshot_file(&renamed),
            Err(SnapshotFileError::NameMismatch { index: 9, term: 1 })
        ));
    }
}
