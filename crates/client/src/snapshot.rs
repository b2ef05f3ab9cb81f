//! `/v1/snapshot`: take and restore point-in-time snapshots of the servers' state
//! (`api.Snapshot()` in the Go client).
//!
//! The body is opaque here: Tribune's archive format
//! ([`tribune_types::archive::Archive`]), which callers verify with
//! `Archive::decode` before trusting a download or sending a restore. It is moved
//! as one buffer, not streamed: the archive is checked as a whole anyway, and the
//! servers hold the same state in memory.

use reqwest::header::CONTENT_TYPE;
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

    /// `GET /v1/snapshot`: a new snapshot's bytes, and the metadata whose `index`
    /// (`X-Consul-Index`) is the Raft index it was taken at. `opts.stale` lets any
    /// server answer, which works without a leader.
    pub async fn save(&self, opts: &QueryOptions) -> Result<(Vec<u8>, QueryMeta), Error> {
        let resp = self
            .client
            .send(self.client.query_request(SNAPSHOT, opts, &[]), false)
            .await?;
        let meta = QueryMeta::from_headers(resp.headers())?;
        let bytes = resp.bytes().await.map_err(Error::transport)?;
        Ok((bytes.to_vec(), meta))
    }

    /// `PUT /v1/snapshot`: replaces the servers' whole state with `archive`. The
    /// servers refuse a damaged archive with a 4xx/5xx, which is [`Error::Status`].
    pub async fn restore(&self, archive: Vec<u8>) -> Result<(), Error> {
        let req = self
            .client
            .request(Method::PUT, SNAPSHOT, None, None)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(archive);
        self.client.write_unit(req).await
    }
}
