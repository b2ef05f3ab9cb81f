//! `/v1/event/*`: fire a user event into the datacenter's gossip pool, and list the
//! events the agent received.

use crate::{escape_segment, Client, Error, QueryMeta, QueryOptions};
use reqwest::Method;
use serde::{Deserialize, Serialize};

/// A user event (`api.UserEvent`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct UserEvent {
    /// ID (set by the agent).
    #[serde(rename = "ID")]
    pub id: String,
    /// Name.
    pub name: String,
    /// Payload (base64 on the wire).
    #[serde(with = "crate::serde_util::base64_opt")]
    pub payload: Option<Vec<u8>>,
    /// Regex on node names.
    pub node_filter: String,
    /// Regex on service names.
    pub service_filter: String,
    /// Regex on service tags.
    pub tag_filter: String,
    /// Record version.
    pub version: u32,
    /// Lamport time.
    #[serde(rename = "LTime")]
    pub ltime: u64,
}

/// The `/v1/event` endpoints. Obtained from [`Client::event`].
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    client: &'a Client,
}

impl<'a> Event<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Event { client }
    }

    /// `PUT /v1/event/fire/{name}`: returns the event's ID.
    pub async fn fire(&self, event: &UserEvent) -> Result<String, Error> {
        let path = format!("/v1/event/fire/{}", escape_segment(&event.name));
        let mut req = self.client.request(Method::PUT, &path, None, None);
        for (k, v) in [
            ("node", &event.node_filter),
            ("service", &event.service_filter),
            ("tag", &event.tag_filter),
        ] {
            if !v.is_empty() {
                req = req.query(&[(k, v)]);
            }
        }
        if let Some(p) = &event.payload {
            req = req.body(p.clone());
        }
        let resp = self.client.send(req, false).await?;
        let out: UserEvent = Client::decode(resp, &path).await?;
        Ok(out.id)
    }

    /// `GET /v1/event/list[?name=N]`: the events the agent received, oldest first.
    /// Blocking with `opts.index`: the index is not a raft index but a hash of the
    /// last event, and the call returns once it differs (Consul's semantics).
    pub async fn list(
        &self,
        name: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<UserEvent>, QueryMeta), Error> {
        let params: Vec<(&str, String)> = if name.is_empty() {
            Vec::new()
        } else {
            vec![("name", name.to_owned())]
        };
        let (events, meta) = self
            .client
            .get_json::<Option<Vec<UserEvent>>>("/v1/event/list", opts, &params)
            .await?;
        Ok((events.unwrap_or_default(), meta))
    }
}
