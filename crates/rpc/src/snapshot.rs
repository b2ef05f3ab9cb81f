//! Operator snapshot archives over gRPC, in pieces.
//!
//! An archive is as large as the state (hundreds of MiB for a big KV store),
//! so neither side holds one whole: a download is a stream whose first piece
//! says who answered (or why nobody could) and whose later pieces are bytes as
//! the server produces them; an upload is bytes only, checked by the server as
//! a whole once the stream ends (`tribune_types::archive` refuses a truncated
//! one), unless its sender gives up with a last piece that carries the reason.

use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};
use parking_lot::Mutex;
use tonic::{Status, Streaming};
use tribune_proto::v1::SnapshotPiece;

use crate::codec::wrap;
use crate::{ArchiveStream, RpcError, SnapshotDownload, SnapshotHead};

/// What the server sends for `SnapshotSave`.
pub(crate) type PieceStream = BoxStream<'static, Result<SnapshotPiece, Status>>;

/// A download (or the reason there is none) as the pieces of `SnapshotSave`.
pub(crate) fn to_pieces(download: Result<SnapshotDownload, RpcError>) -> PieceStream {
    let (head, archive) = match download {
        Ok(d) => (Ok(d.head), Some(d.archive)),
        Err(e) => (Err(e), None),
    };
    let head: Result<SnapshotHead, RpcError> = head;
    let first = stream::once(async move {
        Ok(SnapshotPiece {
            head: Some(wrap(&head)),
            data: Default::default(),
        })
    });
    let rest = stream::iter(archive).flatten().map(data_piece);
    first.chain(rest).boxed()
}

// The item type is tonic's (a server stream yields `Result<_, Status>`), and
// so is the size of its error.
#[allow(clippy::result_large_err)]
fn data_piece(piece: Result<bytes::Bytes, RpcError>) -> Result<SnapshotPiece, Status> {
    match piece {
        Ok(data) => Ok(SnapshotPiece { head: None, data }),
        // Ends the call with an error status, so the receiver cannot take a
        // cut-off archive for a whole one.
        Err(e) => Err(Status::internal(e.to_string())),
    }
}

/// The bytes of a piece stream (after a download's head, or an upload). A
/// later piece carrying a head is an upload's sender giving up (see [`upload`]).
pub(crate) fn from_pieces(pieces: Streaming<SnapshotPiece>) -> ArchiveStream {
    pieces
        .map(|piece| match piece {
            Ok(SnapshotPiece {
                head: Some(abort), ..
            }) => Err(crate::codec::unwrap::<RpcError>(&abort).unwrap_or_else(|e| e)),
            Ok(p) => Ok(p.data),
            Err(e) => Err(RpcError::Transport(e.message().to_owned())),
        })
        .boxed()
}

/// An upload as pieces, and where the first error of `archive` is kept. The
/// error also goes to the server as a last piece carrying a head, so that it
/// stops there rather than taking what came before for the whole archive.
pub(crate) fn upload(
    archive: ArchiveStream,
) -> (
    impl futures::Stream<Item = SnapshotPiece> + Send + 'static,
    Arc<Mutex<Option<RpcError>>>,
) {
    let failed = Arc::new(Mutex::new(None));
    let keep = failed.clone();
    let mut ended = false;
    let pieces = archive
        .map(move |piece| match piece {
            Ok(data) => SnapshotPiece { head: None, data },
            Err(e) => {
                let abort = wrap(&e);
                keep.lock().get_or_insert(e);
                SnapshotPiece {
                    head: Some(abort),
                    data: Default::default(),
                }
            }
        })
        // Nothing after the abort.
        .take_while(move |p| {
            let go = !ended;
            ended |= p.head.is_some();
            futures::future::ready(go)
        });
    (pieces, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_upload_that_fails_ends_with_its_reason() {
        let archive = stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"first")),
            Err(RpcError::Transport("client went away".into())),
            Ok(bytes::Bytes::from_static(b"never sent")),
        ])
        .boxed();
        let (pieces, failed) = upload(archive);
        let pieces: Vec<SnapshotPiece> = pieces.collect().await;
        assert_eq!(pieces.len(), 2);
        assert_eq!(&pieces[0].data[..], b"first");
        let abort = pieces[1].head.as_ref().expect("the abort piece");
        assert_eq!(
            crate::codec::unwrap::<RpcError>(abort).unwrap(),
            RpcError::Transport("client went away".into())
        );
        assert_eq!(
            failed.lock().take(),
            Some(RpcError::Transport("client went away".into()))
        );
    }
}
