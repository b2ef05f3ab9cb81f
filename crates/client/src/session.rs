//! Sessions: `/v1/session/...`, plus a background task that keeps one alive.
//!
//! A session is what a KV lock is held by (`PUT /v1/kv/k?acquire=<session>`). It dies
//! on `destroy`, when its TTL runs out without a renewal, or when one of its health
//! checks goes critical; the server then releases (or deletes) every key it holds.
//! [`Session::renew_periodic`] renews at half the TTL like the Go client's
//! `RenewPeriodic`, and destroys the session when told to stop.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::serde_util::null_default;
use crate::{escape_segment, Client, Error, QueryMeta, QueryOptions};

/// What happens to a session's locks when it is invalidated (`Behavior`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SessionBehavior {
    /// Held keys are unlocked and kept (`"release"`, Consul's default).
    #[default]
    Release,
    /// Held keys are deleted (`"delete"`): ephemeral keys, as semaphores use.
    Delete,
}

impl SessionBehavior {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionBehavior::Release => "release",
            SessionBehavior::Delete => "delete",
        }
    }
}

/// A service health check a session is tied to (`ServiceChecks`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ServiceCheck {
    /// The check ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Enterprise namespace of the check's service (empty = default).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// Options for [`Session::create`]. `Default` asks for the server's defaults: the
/// agent's node, `serfHealth` as the only check, 15 s lock-delay, `release`, no TTL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionCreateOptions {
    /// Human-readable name (`Name`).
    pub name: Option<String>,
    /// Node the session belongs to (`Node`); must be registered. Default: the agent's.
    pub node: Option<String>,
    /// TTL (`TTL`, 10 s to 24 h on Consul). `None` = no TTL: the session lives until
    /// destroyed or until a check fails.
    pub ttl: Option<Duration>,
    /// How long a lock this session loses stays unacquirable (`LockDelay`, at most
    /// 60 s). `None` = the server default (15 s); `Some(ZERO)` sends `"0s"`, which
    /// disables the delay (the Go client cannot express that: it omits a zero delay).
    pub lock_delay: Option<Duration>,
    /// What invalidation does to held keys (`Behavior`). `None` = `release`.
    pub behavior: Option<SessionBehavior>,
    /// Node health checks (`NodeChecks`). `None` leaves the server default
    /// (`["serfHealth"]`); `Some(vec![])` sends `"NodeChecks": []`, a session with no
    /// node checks, like the Go client's `CreateNoChecks`.
    pub node_checks: Option<Vec<String>>,
    /// Service health checks (`ServiceChecks`); omitted when empty.
    pub service_checks: Vec<ServiceCheck>,
    /// Datacenter override.
    pub datacenter: Option<String>,
    /// Token override.
    pub token: Option<String>,
}

impl SessionCreateOptions {
    /// The JSON body: only the fields that are set, like the Go client (so the server's
    /// defaults apply to the rest).
    pub(crate) fn body(&self) -> Value {
        let mut body = Map::new();
        if let Some(name) = self.name.as_ref().filter(|n| !n.is_empty()) {
            body.insert("Name".into(), Value::from(name.as_str()));
        }
        if let Some(node) = self.node.as_ref().filter(|n| !n.is_empty()) {
            body.insert("Node".into(), Value::from(node.as_str()));
        }
        if let Some(delay) = self.lock_delay {
            // Go's `durToMsec` sends milliseconds; the server parses any duration string.
            let text = if delay.is_zero() {
                "0s".to_owned()
            } else {
                format!("{}ms", delay.as_millis().max(1))
            };
            body.insert("LockDelay".into(), Value::from(text));
        }
        if let Some(checks) = &self.node_checks {
            body.insert("NodeChecks".into(), Value::from(checks.clone()));
        }
        if !self.service_checks.is_empty() {
            let checks = self
                .service_checks
                .iter()
                .map(|c| {
                    let mut check = Map::new();
                    check.insert("ID".into(), Value::from(c.id.as_str()));
                    if !c.namespace.is_empty() {
                        check.insert("Namespace".into(), Value::from(c.namespace.as_str()));
                    }
                    Value::Object(check)
                })
                .collect();
            body.insert("ServiceChecks".into(), Value::Array(checks));
        }
        if let Some(behavior) = self.behavior {
            body.insert("Behavior".into(), Value::from(behavior.as_str()));
        }
        if let Some(ttl) = self.ttl.filter(|t| !t.is_zero()) {
            body.insert(
                "TTL".into(),
                Value::from(tribune_types::format_go_duration(ttl)),
            );
        }
        Value::Object(body)
    }
}

/// A session as `/v1/session/info|list|node|renew` return it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SessionEntry {
    /// The session ID (a UUID).
    #[serde(rename = "ID")]
    pub id: String,
    /// Name given at creation.
    pub name: String,
    /// Node the session belongs to.
    pub node: String,
    /// Lock-delay. Consul sends integer nanoseconds here; a Go duration string is
    /// accepted too.
    #[serde(deserialize_with = "lock_delay_de", serialize_with = "lock_delay_ser")]
    pub lock_delay: Duration,
    /// `release` or `delete` (kept as text so an unknown value does not fail the read).
    pub behavior: String,
    /// TTL as the server reports it (`"15s"`, or empty for none); see [`SessionEntry::ttl`].
    #[serde(rename = "TTL")]
    pub ttl: String,
    /// Node checks the session depends on.
    #[serde(deserialize_with = "null_default")]
    pub node_checks: Vec<String>,
    /// Service checks the session depends on.
    #[serde(deserialize_with = "null_default")]
    pub service_checks: Vec<ServiceCheck>,
    /// Deprecated combined check list, if the server still sends it.
    #[serde(deserialize_with = "null_default")]
    pub checks: Vec<String>,
    /// Enterprise namespace, if reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

impl SessionEntry {
    /// The TTL as a duration; `None` when the session has none or the text is not a
    /// Go duration.
    pub fn ttl(&self) -> Option<Duration> {
        tribune_types::parse_go_duration(&self.ttl)
            .ok()
            .filter(|t| !t.is_zero())
    }
}

fn lock_delay_de<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(Duration::ZERO),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Duration::from_nanos)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid LockDelay {n}"))),
        Some(Value::String(s)) => tribune_types::parse_go_duration(&s)
            .ok()
            .ok_or_else(|| serde::de::Error::custom(format!("invalid LockDelay {s:?}"))),
        Some(other) => Err(serde::de::Error::custom(format!(
            "invalid LockDelay {other}"
        ))),
    }
}

fn lock_delay_ser<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    // Integer nanoseconds, as Consul writes it; saturate rather than fail on absurd values.
    s.serialize_u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The `/v1/session` endpoints. Obtained from [`Client::session`].
#[derive(Clone, Copy, Debug)]
pub struct Session<'a> {
    client: &'a Client,
}

/// `{"ID": "..."}`, the answer to `/v1/session/create`.
#[derive(Deserialize)]
struct Created {
    #[serde(rename = "ID")]
    id: String,
}

impl<'a> Session<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Session { client }
    }

    /// `PUT /v1/session/create`: returns the new session's ID.
    pub async fn create(&self, opts: &SessionCreateOptions) -> Result<String, Error> {
        let path = "/v1/session/create";
        let req = self
            .client
            .request(
                Method::PUT,
                path,
                opts.datacenter.as_deref(),
                opts.token.as_deref(),
            )
            .json(&opts.body());
        let resp = self.client.send(req, false).await?;
        let created: Created = Client::decode(resp, path).await?;
        Ok(created.id)
    }

    /// `PUT /v1/session/destroy/{id}`: invalidates the session, releasing (or deleting)
    /// its keys. Destroying a session that is already gone succeeds.
    pub async fn destroy(&self, id: &str) -> Result<(), Error> {
        let path = format!("/v1/session/destroy/{}", escape_segment(id));
        let req = self.client.request(Method::PUT, &path, None, None);
        self.client.write_unit(req).await
    }

    /// `PUT /v1/session/renew/{id}`: resets the TTL. `None` when the session no longer
    /// exists (Consul answers 404). The returned entry's TTL may be longer than the one
    /// asked for: the server stretches it under load, and renewers must follow it.
    pub async fn renew(&self, id: &str) -> Result<Option<SessionEntry>, Error> {
        let path = format!("/v1/session/renew/{}", escape_segment(id));
        let req = self.client.request(Method::PUT, &path, None, None);
        let resp = self.client.send(req, true).await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            let _ = resp.bytes().await;
            return Ok(None);
        }
        let entries: Option<Vec<SessionEntry>> = Client::decode(resp, &path).await?;
        Ok(entries.and_then(|e| e.into_iter().next()))
    }

    /// `GET /v1/session/info/{id}`; `None` when there is no such session.
    pub async fn info(
        &self,
        id: &str,
        opts: &QueryOptions,
    ) -> Result<(Option<SessionEntry>, QueryMeta), Error> {
        let path = format!("/v1/session/info/{}", escape_segment(id));
        let (entries, meta) = self
            .client
            .get_json::<Option<Vec<SessionEntry>>>(&path, opts, &[])
            .await?;
        Ok((entries.and_then(|e| e.into_iter().next()), meta))
    }

    /// `GET /v1/session/node/{node}`: the sessions belonging to a node.
    pub async fn node(
        &self,
        node: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<SessionEntry>, QueryMeta), Error> {
        let path = format!("/v1/session/node/{}", escape_segment(node));
        let (entries, meta) = self
            .client
            .get_json::<Option<Vec<SessionEntry>>>(&path, opts, &[])
            .await?;
        Ok((entries.unwrap_or_default(), meta))
    }

    /// `GET /v1/session/list`: every active session.
    pub async fn list(&self, opts: &QueryOptions) -> Result<(Vec<SessionEntry>, QueryMeta), Error> {
        let (entries, meta) = self
            .client
            .get_json::<Option<Vec<SessionEntry>>>("/v1/session/list", opts, &[])
            .await?;
        Ok((entries.unwrap_or_default(), meta))
    }

    /// Starts a task that renews session `id` every `ttl / 2` (following the TTL the
    /// server reports back) until the returned [`SessionRenewal`] is stopped or dropped,
    /// at which point it destroys the session. The task also ends by itself when the
    /// session is gone (renew answers 404) or when renewals have failed for longer than
    /// the TTL. Must be called from within a Tokio runtime.
    ///
    /// Fails with [`Error::InvalidRequest`] for a zero TTL (there is nothing to renew).
    pub fn renew_periodic(&self, id: &str, ttl: Duration) -> Result<SessionRenewal, Error> {
        if ttl.is_zero() {
            return Err(Error::InvalidRequest(
                "session renewal needs a non-zero TTL".to_owned(),
            ));
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(renew_loop(self.client.clone(), id.to_owned(), ttl, stop_rx));
        Ok(SessionRenewal {
            id: id.to_owned(),
            stop: stop_tx,
            task,
        })
    }
}

/// Why a [`SessionRenewal`] task ended without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewEnd {
    /// It was stopped (or its handle dropped) and destroyed the session (best effort).
    Stopped,
    /// The server no longer knows the session: it expired or was destroyed elsewhere.
    SessionGone,
}

/// Handle on a [`Session::renew_periodic`] task. Dropping it stops the task, which then
/// destroys the session in the background; [`SessionRenewal::stop`] does the same and
/// waits for the destroy to be sent.
#[derive(Debug)]
pub struct SessionRenewal {
    id: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<RenewEnd, Error>>,
}

impl SessionRenewal {
    /// The session being renewed.
    pub fn session_id(&self) -> &str {
        &self.id
    }

    /// Whether the task has ended (stopped, session gone, or renewals failing too long).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops renewing, destroys the session, and returns how the task ended. If the
    /// task had already ended by itself, that outcome (or its last error) is returned.
    pub async fn stop(self) -> Result<RenewEnd, Error> {
        // A send error only means the task already finished; its result says why.
        let _ = self.stop.send(());
        join(self.task).await
    }

    /// Waits for the task to end by itself (session gone, or renewals failing for
    /// longer than the TTL), without stopping it.
    pub async fn finished(self) -> Result<RenewEnd, Error> {
        // Keep the stop sender alive while waiting: dropping it would stop the task.
        let SessionRenewal { stop, task, .. } = self;
        let result = join(task).await;
        drop(stop);
        result
    }
}

async fn join(task: JoinHandle<Result<RenewEnd, Error>>) -> Result<RenewEnd, Error> {
    match task.await {
        Ok(result) => result,
        // The task is never aborted, so this is a panic inside it: surface it here.
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Ok(RenewEnd::Stopped),
    }
}

/// How often to renew and when to give up: the time-dependent part of the renewal
/// task, with time passed in so it can be tested without a clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RenewSchedule {
    ttl: Duration,
    last_renewed: Instant,
}

/// Wait after a failed renewal before trying again (the Go client's value).
pub(crate) const RENEW_RETRY: Duration = Duration::from_secs(1);

impl RenewSchedule {
    /// A schedule for a session created (or last renewed) at `now`.
    pub(crate) fn new(ttl: Duration, now: Instant) -> Self {
        RenewSchedule {
            ttl,
            last_renewed: now,
        }
    }

    /// Delay before the first renewal.
    pub(crate) fn first_delay(&self) -> Duration {
        self.ttl / 2
    }

    /// A renewal succeeded at `now`; the server reported `server_ttl` (it may raise the
    /// TTL under load). Returns the delay before the next renewal.
    pub(crate) fn renewed(&mut self, now: Instant, server_ttl: Option<Duration>) -> Duration {
        if let Some(ttl) = server_ttl.filter(|t| !t.is_zero()) {
            self.ttl = ttl;
        }
        self.last_renewed = now;
        self.ttl / 2
    }

    /// A renewal failed at `now`. Returns the delay before retrying, or `None` once the
    /// last success is more than a TTL ago: the server has invalidated the session by
    /// then (or is about to), so renewing further is pointless.
    pub(crate) fn failed(&self, now: Instant) -> Option<Duration> {
        if now.saturating_duration_since(self.last_renewed) > self.ttl {
            None
        } else {
            Some(RENEW_RETRY)
        }
    }
}

async fn renew_loop(
    client: Client,
    id: String,
    ttl: Duration,
    mut stop: oneshot::Receiver<()>,
) -> Result<RenewEnd, Error> {
    let mut schedule = RenewSchedule::new(ttl, Instant::now());
    let mut delay = schedule.first_delay();
    loop {
        tokio::select! {
            // A stop message or a dropped handle alike.
            _ = &mut stop => {
                // Best effort, as in the Go client: the session's TTL is the backstop.
                let _ = client.session().destroy(&id).await;
                return Ok(RenewEnd::Stopped);
            }
            () = tokio::time::sleep(delay) => {}
        }
        match client.session().renew(&id).await {
            Ok(Some(entry)) => delay = schedule.renewed(Instant::now(), entry.ttl()),
            Ok(None) => return Ok(RenewEnd::SessionGone),
            Err(err) => match schedule.failed(Instant::now()) {
                Some(retry) => delay = retry,
                None => return Err(err),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_body_sends_only_what_is_set() {
        assert_eq!(SessionCreateOptions::default().body(), json!({}));
        let opts = SessionCreateOptions {
            name: Some("Consul API Lock".into()),
            node: Some("n1".into()),
            ttl: Some(Duration::from_secs(15)),
            lock_delay: Some(Duration::from_secs(15)),
            behavior: Some(SessionBehavior::Delete),
            node_checks: Some(vec![]),
            service_checks: vec![ServiceCheck {
                id: "web-check".into(),
                namespace: String::new(),
            }],
            ..Default::default()
        };
        assert_eq!(
            opts.body(),
            json!({
                "Name": "Consul API Lock",
                "Node": "n1",
                "LockDelay": "15000ms",
                "NodeChecks": [],
                "ServiceChecks": [{"ID": "web-check"}],
                "Behavior": "delete",
                "TTL": "15s",
            })
        );
        // A zero lock-delay is sent (it disables the delay); a zero TTL means "none".
        let opts = SessionCreateOptions {
            lock_delay: Some(Duration::ZERO),
            ttl: Some(Duration::ZERO),
            ..Default::default()
        };
        assert_eq!(opts.body(), json!({"LockDelay": "0s"}));
        let opts = SessionCreateOptions {
            ttl: Some(Duration::from_millis(10_500)),
            ..Default::default()
        };
        assert_eq!(opts.body(), json!({"TTL": "10.5s"}));
    }

    #[test]
    fn entry_accepts_nanosecond_and_string_lock_delay() {
        let entry: SessionEntry = serde_json::from_str(
            r#"{"ID":"adf4238a-882b-9ddc-4a9d-5b6758e4159e","Name":"test","Node":"n1",
                "LockDelay":15000000000,"Behavior":"release","TTL":"30s",
                "NodeChecks":["serfHealth"],"ServiceChecks":null,"CreateIndex":5,"ModifyIndex":5}"#,
        )
        .unwrap();
        assert_eq!(entry.lock_delay, Duration::from_secs(15));
        assert_eq!(entry.ttl(), Some(Duration::from_secs(30)));
        assert_eq!(entry.node_checks, ["serfHealth"]);
        assert!(entry.service_checks.is_empty());
        let entry: SessionEntry =
            serde_json::from_str(r#"{"ID":"x","LockDelay":"1.5s","TTL":""}"#).unwrap();
        assert_eq!(entry.lock_delay, Duration::from_millis(1500));
        assert_eq!(entry.ttl(), None);
        assert!(serde_json::from_str::<SessionEntry>(r#"{"LockDelay":"soon"}"#).is_err());
        assert!(serde_json::from_str::<SessionEntry>(r#"{"LockDelay":-1}"#).is_err());
        let wire = serde_json::to_value(&entry).unwrap();
        assert_eq!(wire["LockDelay"], 1_500_000_000u64);
    }

    #[test]
    fn renew_schedule_halves_the_ttl_and_follows_the_server() {
        let t0 = Instant::now();
        let mut s = RenewSchedule::new(Duration::from_secs(15), t0);
        assert_eq!(s.first_delay(), Duration::from_millis(7500));
        // The server stretched the TTL: renew at half of the new one.
        let t1 = t0 + Duration::from_secs(7);
        assert_eq!(
            s.renewed(t1, Some(Duration::from_secs(30))),
            Duration::from_secs(15)
        );
        // An unparseable TTL keeps the last known one.
        assert_eq!(s.renewed(t1, None), Duration::from_secs(15));
    }

    #[test]
    fn renew_schedule_gives_up_after_a_ttl_without_success() {
        let t0 = Instant::now();
        let s = RenewSchedule::new(Duration::from_secs(10), t0);
        assert_eq!(s.failed(t0 + Duration::from_secs(5)), Some(RENEW_RETRY));
        assert_eq!(s.failed(t0 + Duration::from_secs(10)), Some(RENEW_RETRY));
        assert_eq!(s.failed(t0 + Duration::from_millis(10_001)), None);
    }
}
