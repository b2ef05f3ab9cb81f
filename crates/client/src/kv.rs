//! The key/value store: `/v1/kv/{key}`.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::serde_util::base64_opt;
use crate::{escape_path, Client, Error, QueryMeta, QueryOptions};

/// One key as `GET /v1/kv/{key}` returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct KvPair {
    /// The full key.
    pub key: String,
    /// Raft index of the key's creation.
    pub create_index: u64,
    /// Raft index of the last change; the value to pass as [`KvPutOptions::cas`].
    pub modify_index: u64,
    /// How many times the key's lock has been acquired.
    pub lock_index: u64,
    /// Opaque client flags: a full `u64` (the Go lock and semaphore use values above 2^63).
    pub flags: u64,
    /// The value; `None` when the key holds no data (`"Value": null`).
    #[serde(with = "base64_opt")]
    pub value: Option<Vec<u8>>,
    /// The session holding the key's lock, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Enterprise namespace, if reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Enterprise partition, if reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
}

/// Options for [`Kv::put`]. `Default` is an unconditional write with flags 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvPutOptions {
    /// Flags stored with the key (`?flags=`).
    pub flags: u64,
    /// Check-and-set (`?cas=`): 0 = only if absent, N = only if `ModifyIndex == N`.
    pub cas: Option<u64>,
    /// Acquire the key's lock for this session (`?acquire=`).
    pub acquire: Option<String>,
    /// Release the key's lock held by this session (`?release=`).
    pub release: Option<String>,
    /// Datacenter override.
    pub datacenter: Option<String>,
    /// Token override.
    pub token: Option<String>,
}

/// Options for [`Kv::delete`]. `Default` deletes one key unconditionally.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvDeleteOptions {
    /// Delete every key with this prefix (`?recurse`).
    pub recurse: bool,
    /// Delete only if `ModifyIndex` equals this (`?cas=`; Consul never deletes on 0).
    pub cas: Option<u64>,
    /// Datacenter override.
    pub datacenter: Option<String>,
    /// Token override.
    pub token: Option<String>,
}

/// The `/v1/kv` endpoints. Obtained from [`Client::kv`].
#[derive(Clone, Copy, Debug)]
pub struct Kv<'a> {
    client: &'a Client,
}

/// `/v1/kv/<key>`, with one leading `/` dropped as the Go client does (keys never start with one).
fn kv_path(key: &str) -> String {
    format!(
        "/v1/kv/{}",
        escape_path(key.strip_prefix('/').unwrap_or(key))
    )
}

impl<'a> Kv<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Kv { client }
    }

    /// Reads one key; `None` when it does not exist (Consul answers 404).
    pub async fn get(
        &self,
        key: &str,
        opts: &QueryOptions,
    ) -> Result<(Option<KvPair>, QueryMeta), Error> {
        let path = kv_path(key);
        let (pairs, meta) = self
            .client
            .get_json_opt::<Vec<KvPair>>(&path, opts, &[])
            .await?;
        Ok((pairs.and_then(|p| p.into_iter().next()), meta))
    }

    /// Reads every key under `prefix` (`?recurse`); empty when there are none.
    pub async fn list(
        &self,
        prefix: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<KvPair>, QueryMeta), Error> {
        let path = kv_path(prefix);
        let (pairs, meta) = self
            .client
            .get_json_opt::<Option<Vec<KvPair>>>(&path, opts, &[("recurse", String::new())])
            .await?;
        Ok((pairs.flatten().unwrap_or_default(), meta))
    }

    /// Lists key names under `prefix` (`?keys`); with a `separator`, names are cut after
    /// the first separator past the prefix ("directories" end with it).
    pub async fn keys(
        &self,
        prefix: &str,
        separator: Option<&str>,
        opts: &QueryOptions,
    ) -> Result<(Vec<String>, QueryMeta), Error> {
        let path = kv_path(prefix);
        let mut params = vec![("keys", String::new())];
        if let Some(sep) = separator.filter(|s| !s.is_empty()) {
            params.push(("separator", sep.to_owned()));
        }
        let (keys, meta) = self
            .client
            .get_json_opt::<Option<Vec<String>>>(&path, opts, &params)
            .await?;
        Ok((keys.flatten().unwrap_or_default(), meta))
    }

    /// Writes `value` at `key`. `false` means a CAS, acquire or release condition failed.
    pub async fn put(&self, key: &str, value: &[u8], opts: &KvPutOptions) -> Result<bool, Error> {
        let path = kv_path(key);
        let mut params: Vec<(&str, String)> = Vec::new();
        if opts.flags != 0 {
            params.push(("flags", opts.flags.to_string()));
        }
        if let Some(cas) = opts.cas {
            params.push(("cas", cas.to_string()));
        }
        if let Some(session) = &opts.acquire {
            params.push(("acquire", session.clone()));
        }
        if let Some(session) = &opts.release {
            params.push(("release", session.clone()));
        }
        let req = self
            .client
            .request(
                Method::PUT,
                &path,
                opts.datacenter.as_deref(),
                opts.token.as_deref(),
            )
            .query(&params)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(value.to_vec());
        self.client.write_bool(req, &path).await
    }

    /// Deletes `key` (or, with [`KvDeleteOptions::recurse`], every key under it).
    /// `false` means the CAS condition failed.
    pub async fn delete(&self, key: &str, opts: &KvDeleteOptions) -> Result<bool, Error> {
        let path = kv_path(key);
        let mut params: Vec<(&str, String)> = Vec::new();
        if opts.recurse {
            params.push(("recurse", String::new()));
        }
        if let Some(cas) = opts.cas {
            params.push(("cas", cas.to_string()));
        }
        let req = self
            .client
            .request(
                Method::DELETE,
                &path,
                opts.datacenter.as_deref(),
                opts.token.as_deref(),
            )
            .query(&params);
        self.client.write_bool(req, &path).await
    }
}
