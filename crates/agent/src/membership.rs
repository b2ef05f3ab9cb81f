//! The agent's gossip side: its LAN pool (and a server's WAN pool), what
//! `/v1/agent/members`, `join` and `force-leave` act on, and Consul user events —
//! fired into the pool as `consul:event:<name>` and, on receipt, kept (at most 256,
//! deduplicated by ID) when this node matches the event's node/service/tag filters.
//! `consul exec`'s `_rexec` events are not kept but run (module `rexec`).
//! Keyring changes travel as gossip events too, but are `keyring`'s.

use crate::agent::Agent;
use crate::rexec;
use regex::Regex;
use std::sync::{Arc, Weak};
use tribune_gossip::{EventMessage, Gossip, GossipEvent, CONSUL_EVENT_PREFIX};
use tribune_http_api::{BackendError, UserEvent};
use tribune_types::model::Member;

/// How many received events the agent keeps (Consul's `eventBuf` of 256).
pub(crate) const EVENT_BUFFER: usize = 256;

/// The gossip pools an agent is in.
#[derive(Default)]
pub(crate) struct Pools {
    pub(crate) lan: Option<Arc<Gossip>>,
    pub(crate) wan: Option<Arc<Gossip>>,
}

fn to_api(m: &EventMessage) -> UserEvent {
    UserEvent {
        id: m.id.to_string(),
        name: m.name.clone(),
        payload: m.payload.clone(),
        node_filter: m.node_filter.clone(),
        service_filter: m.service_filter.clone(),
        tag_filter: m.tag_filter.clone(),
        version: m.version,
        ltime: m.ltime,
    }
}

fn bad_filter(what: &str, e: regex::Error) -> BackendError {
    BackendError::Unavailable(format!("Invalid {what} filter: {e}"))
}

/// How long firing an event waits to see it arrive in this agent's buffer.
const LOCAL_DELIVERY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Consul's `validateUserEventParams`. Its errors are plain ones, which
/// Consul's event endpoint answers with 500.
fn validate(ev: &UserEvent) -> Result<(), BackendError> {
    if ev.name.is_empty() {
        return Err(BackendError::Unavailable("User event missing name".into()));
    }
    if !ev.tag_filter.is_empty() && ev.service_filter.is_empty() {
        return Err(BackendError::Unavailable(
            "Cannot provide tag filter without service filter".into(),
        ));
    }
    for (what, f) in [
        ("node", &ev.node_filter),
        ("service", &ev.service_filter),
        ("tag", &ev.tag_filter),
    ] {
        if !f.is_empty() {
            Regex::new(f).map_err(|e| bad_filter(what, e))?;
        }
    }
    Ok(())
}

impl Agent {
    /// Puts the agent in its gossip pools (LAN; WAN for servers), starts taking user
    /// events from the LAN pool and keyring changes from both, and publishes this
    /// node's keyring digests (see `keyring`).
    pub fn attach_gossip(&self, lan: Arc<Gossip>, wan: Option<Arc<Gossip>>) {
        let events = lan.subscribe();
        tokio::spawn(crate::coordinates::report(self.this.clone(), lan.clone()));
        let lan_keyring = lan.subscribe();
        let wan_keyring = wan.as_ref().map(|w| w.subscribe());
        {
            let mut pools = self.pools.lock();
            pools.lan = Some(lan);
            pools.wan = wan;
        }
        tokio::spawn(ingest(self.this.clone(), events));
        tokio::spawn(crate::keyring::follow(
            self.this.clone(),
            false,
            lan_keyring,
        ));
        if let Some(rx) = wan_keyring {
            tokio::spawn(crate::keyring::follow(self.this.clone(), true, rx));
        }
        let this = self.this.clone();
        tokio::spawn(async move {
            let Some(agent) = this.upgrade() else { return };
            agent.publish_digest(false).await;
            agent.publish_digest(true).await;
        });
    }

    pub(crate) fn lan(&self) -> Option<Arc<Gossip>> {
        self.pools.lock().lan.clone()
    }

    pub(crate) fn pool(&self, wan: bool) -> Option<Arc<Gossip>> {
        let pools = self.pools.lock();
        if wan {
            pools.wan.clone()
        } else {
            pools.lan.clone()
        }
    }

    /// Members of a pool (`None` when the agent has no gossip, e.g. in unit tests).
    pub(crate) fn gossip_members(&self, wan: bool) -> Option<Vec<Member>> {
        self.pool(wan).map(|g| g.members())
    }

    /// `PUT /v1/event/fire`: validates, then broadcasts the event to the pool.
    pub(crate) async fn fire_user_event(&self, ev: UserEvent) -> Result<UserEvent, BackendError> {
        validate(&ev)?;
        let Some(lan) = self.lan() else {
            return Err(BackendError::Unavailable(
                "this agent is not in a gossip pool".into(),
            ));
        };
        let mut msg = EventMessage::new(ev.name.clone(), ev.payload.clone());
        msg.node_filter = ev.node_filter;
        msg.service_filter = ev.service_filter;
        msg.tag_filter = ev.tag_filter;
        let payload = msg
            .to_payload()
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        // This agent receives its own event through the pool like any member,
        // on the ingest task. Clients fire and then list at once (py-consul's
        // tests do), so when the event is for this node the answer waits until
        // it is in the local buffer, with its Lamport time, for a bounded time.
        let mut kept = self.event_tx.subscribe();
        lan.fire_event(&msg.gossip_name(), &payload)
            .await
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        // A remote exec event is never kept (see `ingest`), so there is nothing
        // to wait for.
        if self.targets_me(&msg) && msg.name != rexec::EVENT_NAME {
            let id = msg.id.to_string();
            let arrived = kept.wait_for(|_| self.user_events.lock().iter().any(|e| e.id == id));
            if tokio::time::timeout(LOCAL_DELIVERY_WAIT, arrived)
                .await
                .is_err()
            {
                tracing::debug!(event = %msg.name, "own user event not yet received; answering anyway");
            }
        }
        Ok(to_api(&msg))
    }

    /// Whether this node is a target of the event's filters (Consul's
    /// `shouldProcessUserEvent`): the node filter matches the node name; a service
    /// filter matches a local service name, and with a tag filter one of its tags.
    fn targets_me(&self, m: &EventMessage) -> bool {
        let matches =
            |pattern: &str, text: &str| Regex::new(pattern).is_ok_and(|r| r.is_match(text));
        if !m.node_filter.is_empty() && !matches(&m.node_filter, &self.cfg.node_name) {
            return false;
        }
        if m.service_filter.is_empty() {
            return true;
        }
        let local = self.local.lock();
        local.services.values().any(|s| {
            matches(&m.service_filter, &s.service)
                && (m.tag_filter.is_empty() || s.tags.iter().any(|t| matches(&m.tag_filter, t)))
        })
    }

    /// Runs the job of a `_rexec` event in a task of its own, unless
    /// `disable_remote_exec` is set (see [`rexec`]).
    fn remote_exec(&self, msg: &EventMessage) {
        if self.cfg.disable_remote_exec {
            tracing::info!(event_id = %msg.id, "ignoring remote exec event, disabled.");
            return;
        }
        tracing::debug!(event_id = %msg.id, "received remote exec event");
        let store = Arc::clone(&self.servers);
        let node = self.cfg.node_name.clone();
        let payload = msg.payload.clone().unwrap_or_default();
        tokio::spawn(async move {
            if let Err(e) = rexec::run(&store, &node, &payload).await {
                tracing::error!(error = %e, "remote exec failed");
            }
        });
    }

    fn keep_event(&self, ev: UserEvent) {
        {
            let mut buf = self.user_events.lock();
            if buf.iter().any(|e| e.id == ev.id) {
                return;
            }
            if buf.len() == EVENT_BUFFER {
                buf.pop_front();
            }
            buf.push_back(ev);
        }
        self.event_tx.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub(crate) fn kept_events(&self) -> Vec<UserEvent> {
        self.user_events.lock().iter().cloned().collect()
    }
}

/// Takes Consul user events off the LAN pool for as long as the agent lives.
async fn ingest(agent: Weak<Agent>, mut events: tokio::sync::broadcast::Receiver<GossipEvent>) {
    loop {
        let ev = match events.recv().await {
            Ok(ev) => ev,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "gossip events dropped: the agent fell behind");
                continue;
            }
            Err(_) => return,
        };
        let GossipEvent::User(user) = ev else {
            continue;
        };
        // Consul's agent sends its events as `consul:event:<name>`; other gossip
        // events (none yet) are not user events.
        let Some(name) = user.name.strip_prefix(CONSUL_EVENT_PREFIX) else {
            continue;
        };
        let Some(a) = agent.upgrade() else { return };
        match EventMessage::from_payload(&user.payload, user.ltime) {
            // `consul exec`'s event is Consul's own: run (or refuse) the job,
            // and keep it out of the event list, as Consul's agent does.
            Ok(msg) if !a.targets_me(&msg) => {}
            Ok(msg) if msg.name == rexec::EVENT_NAME => a.remote_exec(&msg),
            Ok(msg) => {
                tracing::debug!(event = name, id = %msg.id, "user event received");
                a.keep_event(to_api(&msg));
            }
            Err(e) => tracing::warn!(event = name, error = %e, "undecodable user event dropped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_parameters_are_validated_like_consul() {
        let ev = |name: &str, node: &str, svc: &str, tag: &str| UserEvent {
            name: name.into(),
            node_filter: node.into(),
            service_filter: svc.into(),
            tag_filter: tag.into(),
            ..Default::default()
        };
        assert!(validate(&ev("deploy", "web.*", "api", "v1")).is_ok());
        assert!(validate(&ev("", "", "", "")).is_err());
        assert_eq!(
            validate(&ev("x", "", "", "v1")),
            Err(BackendError::Unavailable(
                "Cannot provide tag filter without service filter".into()
            ))
        );
        assert!(matches!(
            validate(&ev("x", "(", "", "")),
            Err(BackendError::Unavailable(m)) if m.starts_with("Invalid node filter")
        ));
    }
}
