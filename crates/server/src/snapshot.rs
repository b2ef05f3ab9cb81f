//! Operator snapshots (`GET` and `PUT /v1/snapshot`): archives of the whole
//! state in Consul's layout (`tribune_types::archive`), streamed both ways.
//!
//! Neither direction holds an archive in memory (a restore holds the state
//! inside it, which raft replicates as one entry). A save serialises one
//! version of the state into an unnamed temporary file (tar needs the state's
//! length before its bytes, and the length is known only once it is written),
//! then compresses that into the response piece by piece; a slow reader holds
//! back the compressor, not a buffer. A restore spools the upload into a
//! temporary file, so that forwarding it to the leader can be sent again when
//! the leader's connection is refused (a new leader after an election), and
//! reads the archive from there: every hash and the state's frame and checksum
//! are checked before one raft entry replaces the cluster's state with it, and
//! a state that still does not decode is refused where it would be applied, on
//! every server alike, so a bad archive changes nothing.
//!
//! The temporary files live in the server's data directory (the system's
//! temporary directory for a dev server): they can be as large as the state,
//! and that is where room for the state was planned.

use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tribune_rpc::{ArchiveStream, RpcError, SnapshotDownload, SnapshotHead};
use tribune_types::archive::{read_archive, write_archive, ArchiveMeta, ArchiveServer, StateSink};
use tribune_types::model::ops::WriteRejected;

use crate::server::{wall_ms, Server};

/// Bytes per piece of a download (and per read of a spooled upload).
const PIECE: usize = 256 << 10;
/// Pieces produced ahead of a slow reader.
const AHEAD: usize = 4;
/// How long a download may go without its reader taking a piece.
const STALL: std::time::Duration = std::time::Duration::from_secs(60);
/// The largest archive a restore accepts, and the largest state inside one:
/// the state travels to every server as one raft entry, which the raft
/// transport caps at 4 GiB (a larger one could never commit).
const MAX_UPLOAD: u64 = 4 << 30;
const MAX_STATE: usize = (4 << 30) - (1 << 20);

/// A refused archive: Consul answers these with a 500 and the reason.
fn bad(msg: String) -> RpcError {
    RpcError::Rejected(WriteRejected::Failed(msg))
}

fn io_failed(what: &str, e: impl std::fmt::Display) -> RpcError {
    bad(format!("{what}: {e}"))
}

impl Server {
    /// An unnamed temporary file next to the server's data.
    fn spool_file(&self) -> io::Result<File> {
        match &self.config.data_dir {
            Some(dir) => tempfile::tempfile_in(dir),
            None => tempfile::tempfile(),
        }
    }

    /// This server's state as an archive, streamed.
    pub(crate) async fn snapshot_download(&self) -> Result<SnapshotDownload, RpcError> {
        let status = self.raft.status();
        let job = self.state.snapshot_job();
        let index = job.index();
        let servers = self
            .raft_configuration()
            .await
            .servers
            .into_iter()
            .map(|s| ArchiveServer {
                suffrage: u8::from(!s.voter),
                id: s.id,
                address: s.address,
            })
            .collect();
        let mut meta = ArchiveMeta::new(index, status.term, wall_ms(), 0);
        meta.configuration.servers = Some(servers);
        meta.configuration_index = status.membership_index;
        let mut spool = self
            .spool_file()
            .map_err(|e| io_failed("creating the snapshot's temporary file", e))?;
        // Written before answering, so that a failure here is an error the
        // client sees as such rather than a body that stops.
        let (spool, size) = tokio::task::spawn_blocking(move || {
            let size = job.write_to(&mut spool)?;
            spool.seek(SeekFrom::Start(0))?;
            io::Result::Ok((spool, size))
        })
        .await
        .map_err(|e| io_failed("writing the snapshot", e))?
        .map_err(|e| io_failed("writing the snapshot", e))?;
        meta.size = size;

        let archive = produce("streaming the snapshot", move |out| {
            let out = write_archive(out, &meta, &mut BufReader::with_capacity(PIECE, spool))?;
            out.finish()
        });
        Ok(SnapshotDownload {
            head: SnapshotHead {
                index: index.max(1),
                known_leader: status.leader_id.is_some(),
                last_contact_ms: status.last_contact.unwrap_or_default().as_millis() as u64,
            },
            archive,
        })
    }

    /// Writes an upload into a temporary file and rewinds it.
    pub(crate) async fn spool_upload(&self, mut archive: ArchiveStream) -> Result<File, RpcError> {
        let file = self
            .spool_file()
            .map_err(|e| io_failed("creating the snapshot's temporary file", e))?;
        let mut out = tokio::io::BufWriter::with_capacity(PIECE, tokio::fs::File::from_std(file));
        let mut len = 0u64;
        while let Some(piece) = archive.next().await {
            let piece = piece?;
            len += piece.len() as u64;
            if len > MAX_UPLOAD {
                return Err(bad(format!(
                    "snapshot larger than the {} GiB a restore accepts",
                    MAX_UPLOAD >> 30
                )));
            }
            tokio::io::AsyncWriteExt::write_all(&mut out, &piece)
                .await
                .map_err(|e| io_failed("storing the uploaded snapshot", e))?;
        }
        tokio::io::AsyncWriteExt::flush(&mut out)
            .await
            .map_err(|e| io_failed("storing the uploaded snapshot", e))?;
        let mut file = out.into_inner().into_std().await;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| io_failed("storing the uploaded snapshot", e))?;
        Ok(file)
    }

    /// Verifies the archive in `spool` and, if it is sound, replaces the
    /// cluster's state with it through raft, so every server restores the same
    /// state at the same index.
    pub(crate) async fn restore_spooled(&self, spool: &File) -> Result<(), RpcError> {
        let _one_at_a_time = self.restoring.lock().await;
        let mut file = spool
            .try_clone()
            .map_err(|e| io_failed("reading the uploaded snapshot", e))?;
        let (meta, state) = tokio::task::spawn_blocking(move || {
            file.seek(SeekFrom::Start(0))
                .map_err(|e| io_failed("reading the uploaded snapshot", e))?;
            let mut state = StateBuffer(Vec::new(), MAX_STATE);
            let meta = read_archive(BufReader::with_capacity(PIECE, file), &mut state)
                .map_err(|e| bad(format!("snapshot verification failed: {e}")))?;
            let state = state.0;
            tribune_state::StateStore::verify_snapshot(&state)
                .map_err(|e| bad(format!("snapshot verification failed: {e}")))?;
            Ok::<_, RpcError>((meta, state))
        })
        .await
        .map_err(|e| io_failed("reading the uploaded snapshot", e))??;
        let entry = tribune_state::Command::Restore { state }.encode(wall_ms());
        // The command's copy of the state is gone before raft takes the entry:
        // the servers' peak is while the entry is applied, next to both states.
        let applied = self
            .raft
            .propose(entry)
            .await
            .map_err(crate::operator::propose_err)?;
        applied.output.map_err(RpcError::Rejected)?;
        tracing::info!(
            index = applied.index,
            from_index = meta.index,
            id = %meta.id,
            "restored the state from an operator snapshot"
        );
        Ok(())
    }
}

/// Whether a forwarded restore failed before reaching the leader (the
/// connection was refused), so sending it again cannot apply it twice.
pub(crate) fn never_reached(e: &RpcError) -> bool {
    matches!(e, RpcError::Transport(m)
        if m.to_ascii_lowercase().contains("connection refused")
            || m.to_ascii_lowercase().contains("tcp connect error"))
}

/// A spooled upload as a stream again, to forward it to the leader.
pub(crate) fn replay(spool: &File) -> Result<ArchiveStream, RpcError> {
    let file = spool
        .try_clone()
        .map_err(|e| io_failed("reading the uploaded snapshot", e))?;
    Ok(produce("reading the uploaded snapshot", move |out| {
        // Positioned reads: the clones share one file offset, and the reader
        // of an attempt that failed may still be running when the next
        // attempt (or a local restore, after an election) starts.
        io::copy(&mut ReadFrom { file, at: 0 }, out)?;
        out.finish()
    }))
}

/// Reads a file from `at` on with positioned reads, leaving its offset alone.
struct ReadFrom {
    file: File,
    at: u64,
}

impl io::Read for ReadFrom {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(&self.file, buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// An archive stream fed by `write` on a blocking thread, through [`Pieces`].
///
/// Whatever stops the writer without a word (a panic, a runtime shutting
/// down), the stream ends with an error rather than looking complete: an HTTP
/// client would otherwise get a 200 and a cut-off archive. A reader that went
/// away stops the writer at its next piece.
fn produce(
    what: &'static str,
    write: impl FnOnce(&mut Pieces) -> io::Result<()> + Send + 'static,
) -> ArchiveStream {
    let (tx, rx) = mpsc::channel(AHEAD);
    // Set once the stream's end is accounted for: the archive complete, or an
    // error sent after what came before.
    let done = Arc::new(AtomicBool::new(false));
    let finished = done.clone();
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut out = Pieces {
            tx: tx.clone(),
            rt,
            buf: Vec::with_capacity(PIECE),
        };
        match write(&mut out) {
            Ok(()) => finished.store(true, Ordering::Release),
            // The reader went away: nobody is left to tell.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            Err(e) => {
                tracing::warn!(error = %e, "{what} failed");
                // Not waited on: if the reader is behind, the guard below
                // ends its stream with an error instead.
                if tx.try_send(Err(io_failed(what, e))).is_ok() {
                    finished.store(true, Ordering::Release);
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
        .chain(
            futures::stream::once(async move {
                (!done.load(Ordering::Acquire))
                    .then(|| Err(io_failed(what, "the archive ended before it was complete")))
            })
            .filter_map(futures::future::ready),
        )
        .boxed()
}

/// Where a restore's state is read: in memory, as raft will carry it, and no
/// larger than raft can.
struct StateBuffer(Vec<u8>, usize);

impl Write for StateBuffer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.0.len() + data.len() > self.1 {
            return Err(io::Error::other(format!(
                "the state is larger than the {} bytes a restore can carry",
                self.1
            )));
        }
        self.0.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl StateSink for StateBuffer {
    fn expect_len(&mut self, len: u64) {
        if len <= self.1 as u64 {
            self.0.expect_len(len);
        }
    }
}

/// A writer that hands its bytes to a download stream in pieces, waiting
/// while the reader is behind.
struct Pieces {
    tx: mpsc::Sender<Result<Bytes, RpcError>>,
    rt: tokio::runtime::Handle,
    buf: Vec<u8>,
}

impl Pieces {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Ok(Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(PIECE),
        )));
        // A reader that keeps its connection open but stops reading would
        // otherwise hold this thread, and the state-sized temporary file,
        // for as long as it likes.
        let sent = self
            .rt
            .block_on(tokio::time::timeout(STALL, self.tx.send(piece)));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the reader took nothing for {} s", STALL.as_secs()),
            )),
        }
    }

    /// Sends what is left; the stream is complete once this returns.
    fn finish(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl Write for Pieces {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(PIECE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PIECE {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Pieces go out when full; the last one in `finish`.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refused_connection_lets_a_restore_be_sent_again() {
        let t = |m: &str| RpcError::Transport(m.into());
        assert!(never_reached(&t(
            "transport error: tcp connect error: Connection refused (os error 111)"
        )));
        assert!(!never_reached(&t("transport error: connection reset")));
        assert!(!never_reached(&RpcError::NoLeader));
        assert!(!never_reached(&t("timeout expired")));
    }

    #[tokio::test]
    async fn a_stream_whose_writer_stops_early_ends_with_an_error() {
        let pieces = |write: fn(&mut Pieces) -> io::Result<()>| async move {
            produce("testing", write).collect::<Vec<_>>().await
        };
        let whole = pieces(|out| {
            out.write_all(b"all of it")?;
            out.finish()
        })
        .await;
        assert_eq!(whole.len(), 1);
        assert_eq!(&whole[0].as_ref().unwrap()[..], b"all of it");
        let failed = pieces(|_| Err(io::Error::other("disk gone"))).await;
        assert_eq!(failed.len(), 1, "the reason, once");
        assert!(matches!(&failed[0], Err(e) if e.to_string().contains("disk gone")));
        let panicked = pieces(|_| panic!("writer bug")).await;
        assert!(
            matches!(panicked.last(), Some(Err(e)) if e.to_string().contains("before it was complete"))
        );
    }

    #[tokio::test]
    async fn a_replayed_upload_is_the_whole_file_wherever_its_offset_is() {
        let data: Vec<u8> = (0..(PIECE * 2 + 1000)).map(|i| (i % 251) as u8).collect();
        let mut spool = tempfile::tempfile().unwrap();
        spool.write_all(&data).unwrap();
        // Left at the end by the upload, or anywhere by an earlier attempt.
        for _ in 0..2 {
            let pieces: Vec<Bytes> = replay(&spool).unwrap().map(|p| p.unwrap()).collect().await;
            assert_eq!(pieces.concat(), data);
            spool.seek(SeekFrom::Start(123)).unwrap();
        }
    }

    #[test]
    fn a_state_larger_than_raft_can_carry_is_refused_while_read() {
        let state = vec![3u8; 1000];
        let archive = write_archive(
            Vec::new(),
            &ArchiveMeta::new(1, 1, 0, state.len() as u64),
            &mut &state[..],
        )
        .unwrap();
        let mut small = StateBuffer(Vec::new(), 999);
        let err = read_archive(&archive[..], &mut small).unwrap_err();
        assert!(
            err.to_string().contains("larger than the 999 bytes"),
            "{err}"
        );
        // A lying size reserves nothing beyond the limit either.
        small.expect_len(u64::MAX);
        assert!(small.0.capacity() <= 999);
        let mut enough = StateBuffer(Vec::new(), 1000);
        read_archive(&archive[..], &mut enough).unwrap();
        assert_eq!(enough.0, state);
    }
}
