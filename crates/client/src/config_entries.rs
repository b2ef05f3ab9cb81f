//! Config entries: `PUT /v1/config`, `GET/DELETE /v1/config/{kind}/{name}`,
//! `GET /v1/config/{kind}`.
//!
//! Entries are JSON objects (`Kind`, `Name` and the kind's own fields): there are
//! some twenty kinds, each with its own schema, and the server keeps what it is
//! sent, so the client passes them through rather than modelling every kind.

use reqwest::Method;
use serde_json::{Map, Value};

use crate::{escape_segment, Client, Error, QueryMeta, QueryOptions};

/// A config entry: its JSON object.
pub type ConfigEntry = Map<String, Value>;

/// The config entry endpoints. Obtained from [`Client::config_entries`].
#[derive(Clone, Copy, Debug)]
pub struct ConfigEntries<'a> {
    client: &'a Client,
}

impl<'a> ConfigEntries<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        ConfigEntries { client }
    }

    /// Creates or replaces `entry`; `cas` makes it conditional on the stored
    /// entry's ModifyIndex (0: only if there is none). Whether it was written.
    pub async fn set(&self, entry: &ConfigEntry, cas: Option<u64>) -> Result<bool, Error> {
        let mut req = self.client.request(Method::PUT, "/v1/config", None, None);
        if let Some(index) = cas {
            req = req.query(&[("cas", index)]);
        }
        self.client.write_bool(req.json(entry), "/v1/config").await
    }

    /// The entry `kind`/`name`, if there is one.
    pub async fn get(
        &self,
        kind: &str,
        name: &str,
        opts: &QueryOptions,
    ) -> Result<(Option<ConfigEntry>, QueryMeta), Error> {
        let path = format!(
            "/v1/config/{}/{}",
            escape_segment(kind),
            escape_segment(name)
        );
        self.client.get_json_opt(&path, opts, &[]).await
    }

    /// Every entry of `kind`, sorted by name.
    pub async fn list(
        &self,
        kind: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<ConfigEntry>, QueryMeta), Error> {
        let path = format!("/v1/config/{}", escape_segment(kind));
        let (rows, meta) = self
            .client
            .get_json::<Option<Vec<ConfigEntry>>>(&path, opts, &[])
            .await?;
        Ok((rows.unwrap_or_default(), meta))
    }

    /// Deletes `kind`/`name` (nothing to delete is fine). With `cas`, only if the
    /// stored entry's ModifyIndex matches; whether it was deleted.
    pub async fn delete(&self, kind: &str, name: &str, cas: Option<u64>) -> Result<bool, Error> {
        let path = format!(
            "/v1/config/{}/{}",
            escape_segment(kind),
            escape_segment(name)
        );
        let mut req = self.client.request(Method::DELETE, &path, None, None);
        match cas {
            Some(index) => {
                req = req.query(&[("cas", index)]);
                self.client.write_bool(req, &path).await
            }
            None => self.client.write_unit(req).await.map(|()| true),
        }
    }
}
