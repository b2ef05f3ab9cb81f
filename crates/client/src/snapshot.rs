//! `/v1/snapshot`: take and restore point-in-time snapshots of the servers' state
//! (`api.Snapshot()` in the Go client).
//!
//! The body is opaque here: an archive in Consul's layout
//! ([`tribune_types::archive`]), which callers verify with
//! [`tribune_types::archive::read_archive`] before trusting a download or
//! sending a restore. Both directions stream, to and from files: an archive is
//! as large as the servers' state.

use std::io::{Seek, Write};

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::Method;

use crate::{Client, Error, QueryMeta, QueryOptions};

const SNAPSHOT: &str = "/v1/snapshot";

/// The `/v1/snapshot` endpoints. Obtained from [`Client::snapshot`].
#[derive(Clone, Copy, Debug)]
pub struct Snapshot<'a> {
    client: &'a Client,
}

impl<'a> Snapshot<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Snapshot { client }
    }

    /// `GET /v1/snapshot`: writes a new snapshot to `out` as it arrives and
    /// returns the metadata, whose `index` (`X-Consul-Index`) is the Raft index
    /// it was taken at. `opts.stale` lets any server answer, which works
    /// without a leader. A failure part-way leaves part of an archive in `out`.
    pub async fn save(&self, opts: &QueryOptions, out: &mut dyn Write) -> Result<QueryMeta, Error> {
        let mut resp = self
            .client
            .send(self.client.query_request(SNAPSHOT, opts, &[]), false)
            .await?;
        let meta = QueryMeta::from_headers(resp.headers())?;
        while let Some(piece) = resp.chunk().await.map_err(Error::transport)? {
            out.write_all(&piece).map_err(Error::Output)?;
        }
        Ok(meta)
    }

    /// `PUT /v1/snapshot`: replaces the servers' whole state with the archive
    /// in `archive`, read from its current position. The servers refuse a
    /// damaged archive with a 4xx/5xx, which is [`Error::Status`].
    pub async fn restore(&self, mut archive: std::fs::File) -> Result<(), Error> {
        // With its length up front the body goes out as-is, not chunked, which
        // every HTTP server and proxy in the way accepts.
        let len = archive
            .metadata()
            .and_then(|m| Ok(m.len().saturating_sub(archive.stream_position()?)))
            .map_err(Error::Output)?;
        let req = self
            .client
            .request(Method::PUT, SNAPSHOT, None, None)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, len)
            .body(tokio::fs::File::from_std(archive));
        self.client.write_unit(req).await
    }
}
