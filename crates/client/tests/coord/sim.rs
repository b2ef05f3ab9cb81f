//! A tiny in-memory stand-in for a Consul agent's KV and session endpoints, with real
//! blocking queries, so the lock and semaphore protocols run end to end in a test.
//!
//! It keeps one global index (every write bumps it) and reports it as `X-Consul-Index`
//! on every read: coarser than Consul, which is allowed (a blocking query's return is
//! not a promise of change). No lock-delay, no health checks, no TTL expiry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, Uri};
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::sync::watch;

/// One stored key.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    pub value: Option<Vec<u8>>,
    pub flags: u64,
    pub session: Option<String>,
    pub lock_index: u64,
    pub create_index: u64,
    pub modify_index: u64,
}

/// One live session.
#[derive(Clone, Debug)]
pub struct Sess {
    pub name: String,
    pub behavior: String,
    pub ttl: String,
    /// The create request body as sent.
    pub body: Value,
}

/// One request as seen.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub params: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
pub struct Data {
    pub index: u64,
    pub kv: BTreeMap<String, Entry>,
    pub sessions: BTreeMap<String, Sess>,
    pub requests: Vec<Seen>,
    /// Blocking reads currently parked.
    pub parked: usize,
    next_session: u64,
}

pub struct Sim {
    pub data: Mutex<Data>,
    /// Bumped on every state change (and every request), to wake waiters.
    version: watch::Sender<u64>,
}

impl Sim {
    /// Starts the fake agent on 127.0.0.1 port 0.
    pub async fn start() -> (Arc<Sim>, String) {
        let sim = Arc::new(Sim {
            data: Mutex::new(Data {
                index: 1,
                ..Default::default()
            }),
            version: watch::channel(0).0,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(sim.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (sim, format!("http://{addr}"))
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// Runs `f` on the data and wakes waiters.
    pub fn with<T>(&self, f: impl FnOnce(&mut Data) -> T) -> T {
        let out = f(&mut self.data.lock().unwrap());
        self.bump();
        out
    }

    /// Waits (up to 10 s, then panics) until `pred` holds for the data.
    pub async fn wait_until(&self, what: &str, pred: impl Fn(&Data) -> bool) {
        let mut rx = self.version.subscribe();
        let wait = async {
            loop {
                if pred(&self.data.lock().unwrap()) {
                    return;
                }
                rx.changed().await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
    }

    /// Every request so far matching `method` and `path`.
    pub fn requests(&self, method: &str, path: &str) -> Vec<Seen> {
        self.data
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .cloned()
            .collect()
    }

    /// A key's entry.
    pub fn get(&self, key: &str) -> Option<Entry> {
        self.data.lock().unwrap().kv.get(key).cloned()
    }
}

impl Data {
    fn write(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    /// Invalidates a session the way Consul does: release or delete its keys.
    pub fn invalidate(&mut self, id: &str) -> bool {
        let Some(sess) = self.sessions.remove(id) else {
            return false;
        };
        let index = self.write();
        let held: Vec<String> = self
            .kv
            .iter()
            .filter(|(_, e)| e.session.as_deref() == Some(id))
            .map(|(k, _)| k.clone())
            .collect();
        for key in held {
            if sess.behavior == "delete" {
                self.kv.remove(&key);
            } else if let Some(e) = self.kv.get_mut(&key) {
                e.session = None;
                e.modify_index = index;
            }
        }
        true
    }

    fn session_json(&self, id: &str) -> Option<Value> {
        self.sessions.get(id).map(|s| {
            json!({"ID": id, "Name": s.name, "Node": "sim", "LockDelay": 15_000_000_000u64,
                   "Behavior": s.behavior, "TTL": s.ttl, "NodeChecks": null,
                   "CreateIndex": 1, "ModifyIndex": 1})
        })
    }
}

/// Counts a parked blocking read while alive.
struct Parked<'a>(&'a Sim);

impl<'a> Parked<'a> {
    fn new(sim: &'a Sim) -> Self {
        sim.with(|d| d.parked += 1);
        Parked(sim)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.with(|d| d.parked -= 1);
    }
}

fn pair_json(key: &str, e: &Entry) -> Value {
    let mut v = json!({
        "Key": key, "Flags": e.flags, "LockIndex": e.lock_index,
        "CreateIndex": e.create_index, "ModifyIndex": e.modify_index,
        "Value": e.value.as_ref().map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
    });
    if let Some(s) = &e.session {
        v["Session"] = json!(s);
    }
    v
}

fn reply(status: u16, index: u64, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("X-Consul-Index", index.to_string())
        .header("X-Consul-KnownLeader", "true")
        .header("X-Consul-LastContact", "0")
        .body(Body::from(body))
        .unwrap()
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn parse_wait(text: &str) -> Duration {
    if let Some(ms) = text.strip_suffix("ms") {
        Duration::from_millis(ms.parse().unwrap())
    } else if let Some(s) = text.strip_suffix('s') {
        Duration::from_secs(s.parse().unwrap())
    } else {
        panic!("unexpected wait {text:?}")
    }
}

async fn handle(State(sim): State<Arc<Sim>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = decode(uri.path());
    let params: Vec<(String, String)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let seen = Seen {
        method: method.to_string(),
        path: path.clone(),
        params,
        body: body.to_vec(),
    };
    sim.with(|d| d.requests.push(seen.clone()));
    let has = |name: &str| seen.param(name).is_some();
    let num = |name: &str| seen.param(name).map(|v| v.parse::<u64>().unwrap());

    if let Some(key) = path.strip_prefix("/v1/kv/") {
        let key = key.to_owned();
        return match method {
            Method::GET => {
                let min = num("index").unwrap_or(0);
                if min > 0 {
                    let wait = seen
                        .param("wait")
                        .map(parse_wait)
                        .unwrap_or(Duration::from_secs(300));
                    let mut rx = sim.version.subscribe();
                    // Counted down on drop too: a client that hangs up drops this handler.
                    let _parked = Parked::new(&sim);
                    let _ = tokio::time::timeout(wait, async {
                        loop {
                            if sim.data.lock().unwrap().index > min {
                                return;
                            }
                            if rx.changed().await.is_err() {
                                return;
                            }
                        }
                    })
                    .await;
                }
                let d = sim.data.lock().unwrap();
                let pairs: Vec<Value> = if has("recurse") {
                    d.kv.iter()
                        .filter(|(k, _)| k.starts_with(&key))
                        .map(|(k, e)| pair_json(k, e))
                        .collect()
                } else {
                    d.kv.get(&key)
                        .map(|e| pair_json(&key, e))
                        .into_iter()
                        .collect()
                };
                if pairs.is_empty() {
                    reply(404, d.index, String::new())
                } else {
                    reply(200, d.index, Value::from(pairs).to_string())
                }
            }
            Method::PUT => {
                let ok = sim.with(|d| {
                    let existing = d.kv.get(&key).cloned();
                    if let Some(cas) = num("cas") {
                        let current = existing.as_ref().map_or(0, |e| e.modify_index);
                        if cas != current {
                            return false;
                        }
                    }
                    let mut entry = existing.clone().unwrap_or_default();
                    if let Some(s) = seen.param("acquire") {
                        if !d.sessions.contains_key(s) {
                            return false;
                        }
                        match entry.session.as_deref() {
                            Some(holder) if holder != s => return false,
                            Some(_) => {}
                            None => {
                                entry.lock_index += 1;
                                entry.session = Some(s.to_owned());
                            }
                        }
                    }
                    if let Some(s) = seen.param("release") {
                        if entry.session.as_deref() != Some(s) {
                            return false;
                        }
                        entry.session = None;
                    }
                    let index = d.write();
                    if existing.is_none() {
                        entry.create_index = index;
                    }
                    entry.modify_index = index;
                    entry.flags = num("flags").unwrap_or(0);
                    entry.value = (!seen.body.is_empty()).then(|| seen.body.clone());
                    d.kv.insert(key.clone(), entry);
                    true
                });
                reply(200, 0, ok.to_string())
            }
            Method::DELETE => {
                let ok = sim.with(|d| {
                    if let Some(cas) = num("cas") {
                        match d.kv.get(&key) {
                            Some(e) if e.modify_index == cas => {}
                            _ => return false,
                        }
                    }
                    if has("recurse") {
                        d.kv.retain(|k, _| !k.starts_with(&key));
                    } else {
                        d.kv.remove(&key);
                    }
                    d.write();
                    true
                });
                reply(200, 0, ok.to_string())
            }
            _ => reply(405, 0, String::new()),
        };
    }
    if path == "/v1/session/create" {
        let body: Value = serde_json::from_slice(&seen.body).unwrap();
        let id = sim.with(|d| {
            d.next_session += 1;
            let id = format!("{:08x}-0000-4000-8000-000000000000", d.next_session);
            d.sessions.insert(
                id.clone(),
                Sess {
                    name: body["Name"].as_str().unwrap_or("").to_owned(),
                    behavior: body["Behavior"].as_str().unwrap_or("release").to_owned(),
                    ttl: body["TTL"].as_str().unwrap_or("").to_owned(),
                    body: body.clone(),
                },
            );
            d.write();
            id
        });
        return reply(200, 0, json!({ "ID": id }).to_string());
    }
    if let Some(id) = path.strip_prefix("/v1/session/destroy/") {
        sim.with(|d| d.invalidate(id));
        return reply(200, 0, "true".into());
    }
    if let Some(id) = path.strip_prefix("/v1/session/renew/") {
        let d = sim.data.lock().unwrap();
        return match d.session_json(id) {
            Some(s) => reply(200, d.index, json!([s]).to_string()),
            None => reply(404, 0, format!("Session id '{id}' not found")),
        };
    }
    if let Some(id) = path.strip_prefix("/v1/session/info/") {
        let d = sim.data.lock().unwrap();
        let list: Vec<Value> = d.session_json(id).into_iter().collect();
        return reply(200, d.index, Value::from(list).to_string());
    }
    reply(404, 0, format!("no route {path}"))
}
