//! Consul's user event record (`/v1/event/fire`, `/v1/event/list`), as the agent puts
//! it inside a gossip user event.
//!
//! The gossip layer itself treats a user event payload as opaque bytes: it sizes,
//! orders (Lamport time), deduplicates and delivers them. Consul's agent wraps its
//! event in a Serf event named `consul:event:<name>` whose payload is the encoded
//! [`EventMessage`]; node/service/tag filtering happens on receipt, in the agent.
//! This module gives the agent that record and its encoding so every node agrees
//! on it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Prefix Consul gives the gossip event name of a `/v1/event/fire` event.
pub const CONSUL_EVENT_PREFIX: &str = "consul:event:";

/// Consul's `UserEvent` version this crate writes.
pub const EVENT_VERSION: u32 = 1;

/// A Consul user event: `{ID,Name,Payload,NodeFilter,ServiceFilter,TagFilter,Version,LTime}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EventMessage {
    /// Random event ID.
    #[serde(rename = "ID")]
    pub id: Uuid,
    /// Event name (names starting with `_` are reserved by Consul).
    pub name: String,
    /// Opaque payload.
    #[serde(with = "serde_bytes")]
    pub payload: Option<Vec<u8>>,
    /// Regex on node names (empty: all).
    pub node_filter: String,
    /// Regex on service names (empty: all).
    pub service_filter: String,
    /// Regex on service tags; only with a service filter.
    pub tag_filter: String,
    /// Record version (1).
    pub version: u32,
    /// Lamport time. Not meaningful on the sender: receivers overwrite it with the
    /// gossip event's Lamport time, as Consul's agent does.
    #[serde(rename = "LTime")]
    pub ltime: u64,
}

impl Default for EventMessage {
    fn default() -> Self {
        Self {
            id: Uuid::nil(),
            name: String::new(),
            payload: None,
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            version: EVENT_VERSION,
            ltime: 0,
        }
    }
}

impl EventMessage {
    /// A new event with a random ID and no filters.
    pub fn new(name: impl Into<String>, payload: Option<Vec<u8>>) -> Self {
        Self {
            id: Uuid::new_v4(),
            name: name.into(),
            payload,
            ..Self::default()
        }
    }

    /// The gossip event name Consul uses for it.
    pub fn gossip_name(&self) -> String {
        format!("{CONSUL_EVENT_PREFIX}{}", self.name)
    }

    /// Encode as the gossip payload (MessagePack with Consul's field names).
    pub fn to_payload(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        rmp_serde::to_vec_named(self)
    }

    /// Decode a gossip payload, taking `ltime` from the gossip event.
    pub fn from_payload(payload: &[u8], ltime: u64) -> Result<Self, rmp_serde::decode::Error> {
        let mut msg: Self = rmp_serde::from_slice(payload)?;
        msg.ltime = ltime;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_received_ltime() {
        let mut ev = EventMessage::new("deploy", Some(b"v2".to_vec()));
        ev.service_filter = "web".into();
        let bytes = ev.to_payload().unwrap();
        let back = EventMessage::from_payload(&bytes, 42).unwrap();
        assert_eq!(back.ltime, 42);
        assert_eq!(back.id, ev.id);
        assert_eq!(back.payload.as_deref(), Some(&b"v2"[..]));
        assert_eq!(back.service_filter, "web");
        assert_eq!(back.version, 1);
        assert_eq!(ev.gossip_name(), "consul:event:deploy");
        assert!(EventMessage::from_payload(b"\xff\xff", 1).is_err());
    }
}
