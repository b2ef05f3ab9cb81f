//! Connect intentions: `/v1/connect/intentions` by source and destination
//! (`exact`), the deprecated ID-based calls, `match` and `check`.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::serde_util::null_default;
use crate::{escape_segment, Client, Error, QueryMeta, QueryOptions};

/// An intention (Go's `api.Intention`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Intention {
    /// The legacy ID; empty for intentions made by name.
    #[serde(rename = "ID", skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Free text.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Source namespace (`default`).
    #[serde(rename = "SourceNS")]
    pub source_ns: String,
    /// Source service, or `*`.
    pub source_name: String,
    /// Destination namespace (`default`).
    #[serde(rename = "DestinationNS")]
    pub destination_ns: String,
    /// Destination service, or `*`.
    pub destination_name: String,
    /// `consul`.
    pub source_type: String,
    /// `allow` or `deny`; empty for an L7 intention.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// L7 permissions, as Consul shows them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Value>,
    /// Metadata.
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub meta: BTreeMap<String, String>,
    /// Evaluation precedence (higher first).
    pub precedence: u64,
    /// RFC 3339 creation time (Go's zero time for intentions made by name).
    pub created_at: String,
    /// RFC 3339 time of the last change.
    pub updated_at: String,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

impl Intention {
    /// Consul's `String()`: `web => db (allow)`, or the number of permissions.
    pub fn summary(&self) -> String {
        let detail = match self
            .permissions
            .as_ref()
            .and_then(Value::as_array)
            .map(Vec::len)
        {
            None | Some(0) => self.action.clone(),
            Some(1) => "1 permission".to_owned(),
            Some(n) => format!("{n} permissions"),
        };
        format!(
            "{} => {} ({detail})",
            part(&self.source_ns, &self.source_name),
            part(&self.destination_ns, &self.destination_name)
        )
    }
}

/// A name with its namespace, the default one left out (`partString`).
fn part(ns: &str, name: &str) -> String {
    if ns.is_empty() || ns == "default" {
        name.to_owned()
    } else {
        format!("{ns}/{name}")
    }
}

/// The intentions endpoints. Obtained from [`Client::intentions`].
#[derive(Clone, Copy, Debug)]
pub struct Intentions<'a> {
    client: &'a Client,
}

impl<'a> Intentions<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Intentions { client }
    }

    /// Every intention, in evaluation order.
    pub async fn list(&self, opts: &QueryOptions) -> Result<(Vec<Intention>, QueryMeta), Error> {
        let (rows, meta) = self
            .client
            .get_json::<Option<Vec<Intention>>>("/v1/connect/intentions", opts, &[])
            .await?;
        Ok((rows.unwrap_or_default(), meta))
    }

    /// The intention from `source` to `destination`, if there is one.
    pub async fn get_exact(
        &self,
        source: &str,
        destination: &str,
        opts: &QueryOptions,
    ) -> Result<(Option<Intention>, QueryMeta), Error> {
        let params = [
            ("source", source.to_owned()),
            ("destination", destination.to_owned()),
        ];
        self.client
            .get_json_opt("/v1/connect/intentions/exact", opts, &params)
            .await
    }

    /// The intention with the legacy `id`, if there is one.
    pub async fn get(
        &self,
        id: &str,
        opts: &QueryOptions,
    ) -> Result<(Option<Intention>, QueryMeta), Error> {
        let path = format!("/v1/connect/intentions/{}", escape_segment(id));
        self.client.get_json_opt(&path, opts, &[]).await
    }

    /// Creates or replaces the intention between the given names (the
    /// intention's names, action, permissions and description are used).
    pub async fn upsert(&self, ixn: &Intention) -> Result<(), Error> {
        let req = self
            .client
            .request(Method::PUT, "/v1/connect/intentions/exact", None, None)
            .query(&[
                ("source", ixn.source_name.as_str()),
                ("destination", ixn.destination_name.as_str()),
            ])
            .json(&serde_json::json!({
                "SourceType": if ixn.source_type.is_empty() { "consul" } else { &ixn.source_type },
                "Action": ixn.action,
                "Permissions": ixn.permissions,
                "Description": ixn.description,
            }));
        self.client.write_unit(req).await
    }

    /// Creates an intention through the deprecated ID API; returns its ID.
    pub async fn create(&self, ixn: &Intention) -> Result<String, Error> {
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "ID")]
            id: String,
        }
        let path = "/v1/connect/intentions";
        let req = self
            .client
            .request(Method::POST, path, None, None)
            .json(ixn);
        let resp = self.client.send(req, false).await?;
        let created: Created = Client::decode(resp, path).await?;
        Ok(created.id)
    }

    /// Replaces the intention with the legacy `id` through the deprecated ID API
    /// (its destination cannot change).
    pub async fn update(&self, id: &str, ixn: &Intention) -> Result<(), Error> {
        let path = format!("/v1/connect/intentions/{}", escape_segment(id));
        let req = self
            .client
            .request(Method::PUT, &path, None, None)
            .json(ixn);
        self.client.write_unit(req).await
    }

    /// Deletes the intention between the given names (nothing to delete is fine).
    pub async fn delete_exact(&self, source: &str, destination: &str) -> Result<(), Error> {
        let req = self
            .client
            .request(Method::DELETE, "/v1/connect/intentions/exact", None, None)
            .query(&[("source", source), ("destination", destination)]);
        self.client.write_unit(req).await
    }

    /// Deletes the intention with the legacy `id`.
    pub async fn delete(&self, id: &str) -> Result<(), Error> {
        let path = format!("/v1/connect/intentions/{}", escape_segment(id));
        let req = self.client.request(Method::DELETE, &path, None, None);
        self.client.write_unit(req).await
    }

    /// The intentions that apply to `name` as a source (`by_source`) or a
    /// destination, in evaluation order.
    pub async fn matching(
        &self,
        name: &str,
        by_source: bool,
        opts: &QueryOptions,
    ) -> Result<(Vec<Intention>, QueryMeta), Error> {
        let by = if by_source { "source" } else { "destination" };
        let params = [("by", by.to_owned()), ("name", name.to_owned())];
        let (mut map, meta) = self
            .client
            .get_json::<BTreeMap<String, Vec<Intention>>>(
                "/v1/connect/intentions/match",
                opts,
                &params,
            )
            .await?;
        Ok((map.remove(name).unwrap_or_default(), meta))
    }

    /// Whether a connection from `source` to `destination` is allowed.
    pub async fn check(
        &self,
        source: &str,
        destination: &str,
        opts: &QueryOptions,
    ) -> Result<bool, Error> {
        #[derive(Deserialize)]
        struct Checked {
            #[serde(rename = "Allowed")]
            allowed: bool,
        }
        let params = [
            ("source", source.to_owned()),
            ("destination", destination.to_owned()),
        ];
        let (checked, _) = self
            .client
            .get_json::<Checked>("/v1/connect/intentions/check", opts, &params)
            .await?;
        Ok(checked.allowed)
    }
}
