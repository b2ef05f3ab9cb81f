//! Raft status: `/v1/status/leader` and `/v1/status/peers`.

use crate::{Client, Error, QueryOptions};

/// The `/v1/status` endpoints. Obtained from [`Client::status`].
#[derive(Clone, Copy, Debug)]
pub struct Status<'a> {
    client: &'a Client,
}

impl<'a> Status<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Status { client }
    }

    /// The leader's RPC address (`ip:port`); empty when there is no leader.
    pub async fn leader(&self) -> Result<String, Error> {
        let (leader, _) = self
            .client
            .get_json::<Option<String>>("/v1/status/leader", &QueryOptions::default(), &[])
            .await?;
        Ok(leader.unwrap_or_default())
    }

    /// The RPC addresses of the Raft voters.
    pub async fn peers(&self) -> Result<Vec<String>, Error> {
        let (peers, _) = self
            .client
            .get_json::<Option<Vec<String>>>("/v1/status/peers", &QueryOptions::default(), &[])
            .await?;
        Ok(peers.unwrap_or_default())
    }
}
