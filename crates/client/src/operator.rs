//! `/v1/operator/keyring`: list, install, use and remove gossip encryption keys across
//! the cluster (`api.Operator().Keyring*` in the Go client).

use crate::{Client, Error};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One gossip pool's keys (`api.KeyringResponse`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct KeyringResponse {
    /// The WAN pool rather than a datacenter's LAN pool.
    #[serde(rename = "WAN")]
    pub wan: bool,
    /// The datacenter.
    pub datacenter: String,
    /// The network segment.
    pub segment: String,
    /// Member name → message, for members that reported a problem.
    pub messages: BTreeMap<String, String>,
    /// Base64 key → how many members hold it.
    pub keys: BTreeMap<String, usize>,
    /// Base64 key → how many members encrypt with it.
    pub primary_keys: BTreeMap<String, usize>,
    /// Members in the pool.
    pub num_nodes: usize,
}

/// Options of a keyring operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyringOptions {
    /// `?relay-factor` (0–5).
    pub relay_factor: u8,
    /// `?local-only` (list only): leave the WAN pool out.
    pub local_only: bool,
    /// ACL token for this request.
    pub token: Option<String>,
}

#[derive(Serialize)]
struct KeyBody<'a> {
    #[serde(rename = "Key")]
    key: &'a str,
}

const KEYRING: &str = "/v1/operator/keyring";

/// The `/v1/operator` endpoints. Obtained from [`Client::operator`].
#[derive(Clone, Copy, Debug)]
pub struct Operator<'a> {
    client: &'a Client,
}

impl<'a> Operator<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Operator { client }
    }

    fn keyring_request(&self, method: Method, opts: &KeyringOptions) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .request(method, KEYRING, None, opts.token.as_deref());
        if opts.relay_factor > 0 {
            req = req.query(&[("relay-factor", opts.relay_factor.to_string())]);
        }
        if opts.local_only {
            req = req.query(&[("local-only", "true")]);
        }
        req
    }

    /// `GET`: the keys of every pool.
    pub async fn keyring_list(&self, opts: &KeyringOptions) -> Result<Vec<KeyringResponse>, Error> {
        let resp = self
            .client
            .send(self.keyring_request(Method::GET, opts), false)
            .await?;
        let out: Option<Vec<KeyringResponse>> = Client::decode(resp, KEYRING).await?;
        Ok(out.unwrap_or_default())
    }

    async fn keyring_write(
        &self,
        method: Method,
        key: &str,
        opts: &KeyringOptions,
    ) -> Result<(), Error> {
        let req = self.keyring_request(method, opts).json(&KeyBody { key });
        self.client.write_unit(req).await
    }

    /// `POST`: installs a key everywhere.
    pub async fn keyring_install(&self, key: &str, opts: &KeyringOptions) -> Result<(), Error> {
        self.keyring_write(Method::POST, key, opts).await
    }

    /// `PUT`: makes an installed key the primary everywhere.
    pub async fn keyring_use(&self, key: &str, opts: &KeyringOptions) -> Result<(), Error> {
        self.keyring_write(Method::PUT, key, opts).await
    }

    /// `DELETE`: removes a key that is not the primary everywhere.
    pub async fn keyring_remove(&self, key: &str, opts: &KeyringOptions) -> Result<(), Error> {
        self.keyring_write(Method::DELETE, key, opts).await
    }
}
