//! The Connect CA's configuration: `/v1/connect/ca/configuration`.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Client, Error, QueryMeta, QueryOptions};

/// The CA configuration (Go's `api.CAConfig`), fields in its order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CaConfig {
    /// The provider (`consul`).
    pub provider: String,
    /// The provider's configuration as stored (durations as strings or
    /// nanosecond numbers).
    pub config: BTreeMap<String, Value>,
    /// Read-only provider state.
    pub state: Option<BTreeMap<String, String>>,
    /// Go ahead with a CA change the old CA cannot cross-sign.
    pub force_without_cross_signing: bool,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// The CA endpoints. Obtained from [`Client::connect_ca`].
#[derive(Clone, Copy, Debug)]
pub struct ConnectCa<'a> {
    client: &'a Client,
}

impl<'a> ConnectCa<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        ConnectCa { client }
    }

    /// The current configuration.
    pub async fn get_config(&self, opts: &QueryOptions) -> Result<(CaConfig, QueryMeta), Error> {
        self.client
            .get_json("/v1/connect/ca/configuration", opts, &[])
            .await
    }

    /// Replaces the configuration (`State` and the indexes are not sent).
    pub async fn set_config(&self, config: &CaConfig) -> Result<(), Error> {
        let body = serde_json::json!({
            "Provider": config.provider,
            "Config": config.config,
            "ForceWithoutCrossSigning": config.force_without_cross_signing,
        });
        let req = self
            .client
            .request(Method::PUT, "/v1/connect/ca/configuration", None, None)
            .json(&body);
        self.client.write_unit(req).await
    }
}
