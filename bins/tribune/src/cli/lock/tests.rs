//! Tests of `lock`: command-line rules, and whole runs against an in-memory agent
//! (KV with sessions and blocking reads) that run real child processes.
//!
//! The runs drive the command and the test in one current-thread runtime
//! (`tokio::join!`), so "the lock is held and the child started" is observable as "the
//! monitor's blocking read is parked": acquiring, spawning the child and parking are
//! ordered without any sleep.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tribune_types::goflag::FlagSet;

use super::super::testing::{fake_async, Answer, AsyncAnswer, Fake, Req};
use super::*;

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

fn parsed(args: &[&str]) -> Parsed {
    flags().parse(&strings(args)).unwrap()
}

#[test]
fn settings_defaults_and_generated_name() {
    let s = settings(&parsed(&["/app/job", "echo", "hi"])).unwrap();
    assert_eq!(
        s,
        Settings {
            limit: 1,
            prefix: "app/job".into(),
            child: strings(&["echo", "hi"]),
            name: "Consul lock for 'echo hi' at 'app/job'".into(),
            timeout: None,
            monitor_retry: 3,
            shell: true,
            pass_stdin: false,
            child_exit_code: false,
            verbose: false,
        }
    );
    let s = settings(&parsed(&[
        "-n=3",
        "-name",
        "mine",
        "-timeout=1m30s",
        "-monitor-retry=0",
        "-shell=false",
        "-pass-stdin",
        "-child-exit-code",
        "-verbose",
        "p",
        "c",
    ]))
    .unwrap();
    assert_eq!(
        (s.limit, s.name.as_str(), s.timeout, s.monitor_retry),
        (3, "mine", Some(Duration::from_secs(90)), 0)
    );
    assert!(!s.shell && s.pass_stdin && s.child_exit_code && s.verbose);
    // `-try` is the old name of `-timeout`; the later flag wins. 0 means no timeout.
    let s = settings(&parsed(&["-timeout=5s", "-try=2s", "p", "c"])).unwrap();
    assert_eq!(s.timeout, Some(Duration::from_secs(2)));
    let s = settings(&parsed(&["-try=5s", "-timeout=0", "p", "c"])).unwrap();
    assert_eq!(s.timeout, None);
}

#[test]
fn settings_errors_in_consuls_order() {
    let err = |args: &[&str]| settings(&parsed(args)).unwrap_err();
    assert_eq!(
        err(&["-n=0", "p"]),
        Invalid::Usage("Lock holder limit must be positive")
    );
    assert_eq!(
        err(&["p"]),
        Invalid::Usage("Key prefix and child command must be specified")
    );
    assert_eq!(
        err(&["-timeout=-1s", "p", "c"]),
        Invalid::Usage("Timeout must be positive")
    );
    assert_eq!(
        err(&["-monitor-retry=-1", "p", "c"]),
        Invalid::Usage("Number for 'monitor-retry' must be >= 0")
    );
    assert_eq!(
        err(&["-n=two", "p", "c"]),
        Invalid::Flag("invalid value \"two\" for flag -n: parse error".into())
    );
    assert_eq!(
        err(&["-timeout=soon", "p", "c"]),
        Invalid::Flag("invalid value \"soon\" for flag -timeout: parse error".into())
    );
}

#[test]
fn child_command_lines() {
    let child = strings(&["echo", "$HOME", "x"]);
    assert_eq!(
        command_line(true, None, &child),
        ("/bin/sh".to_owned(), strings(&["-c", "echo $HOME x"]))
    );
    assert_eq!(command_line(true, Some("/bin/bash"), &child).0, "/bin/bash");
    assert_eq!(command_line(true, Some(""), &child).0, "/bin/sh");
    assert_eq!(
        command_line(false, Some("/bin/bash"), &child),
        ("echo".to_owned(), strings(&["$HOME", "x"]))
    );
}

#[test]
fn exit_texts_are_gos() {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(exit_text(ExitStatus::from_raw(3 << 8)), "exit status 3");
    assert_eq!(exit_text(ExitStatus::from_raw(15)), "signal: terminated");
    assert_eq!(exit_text(ExitStatus::from_raw(9)), "signal: killed");
    assert_eq!(exit_text(ExitStatus::from_raw(31)), "signal: signal 31");
}

#[test]
fn help_lists_the_flags() {
    let flags: FlagSet = flags();
    let text = super::super::help_text(HELP, &flags);
    for flag in [
        "-child-exit-code",
        "-monitor-retry",
        "-n=<value>",
        "-http-addr",
        "-shell",
    ] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}

/// One stored key of the in-memory agent.
#[derive(Clone, Debug, Default)]
struct Entry {
    value: Vec<u8>,
    flags: u64,
    session: Option<String>,
    modify_index: u64,
}

#[derive(Default)]
struct Data {
    index: u64,
    kv: BTreeMap<String, Entry>,
    /// Session ID -> (behavior, create body).
    sessions: BTreeMap<String, (String, Value)>,
    parked: usize,
    next_session: u64,
}

/// An in-memory agent: KV with acquire/release/cas, sessions, blocking reads on one
/// global index.
struct Sim {
    data: Mutex<Data>,
    version: watch::Sender<u64>,
}

impl Sim {
    async fn start() -> (Arc<Sim>, Fake) {
        let sim = Arc::new(Sim {
            data: Mutex::new(Data {
                index: 1,
                ..Default::default()
            }),
            version: watch::channel(0).0,
        });
        let handler_sim = sim.clone();
        let fake = fake_async(move |req| answer(handler_sim.clone(), req)).await;
        (sim, fake)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Data) -> T) -> T {
        let out = f(&mut self.data.lock().unwrap());
        self.version.send_modify(|v| *v += 1);
        out
    }

    async fn wait_until(&self, what: &str, pred: impl Fn(&Data) -> bool) {
        let mut rx = self.version.subscribe();
        let wait = async {
            while !pred(&self.data.lock().unwrap()) {
                rx.changed().await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
    }
}

impl Data {
    fn write(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    fn invalidate(&mut self, id: &str) {
        let Some((behavior, _)) = self.sessions.remove(id) else {
            return;
        };
        let index = self.write();
        let held: Vec<String> = self
            .kv
            .iter()
            .filter(|(_, e)| e.session.as_deref() == Some(id))
            .map(|(k, _)| k.clone())
            .collect();
        for key in held {
            if behavior == "delete" {
                self.kv.remove(&key);
            } else if let Some(e) = self.kv.get_mut(&key) {
                e.session = None;
                e.modify_index = index;
            }
        }
    }
}

/// Counts a parked blocking read while alive (also when the client hangs up).
struct Parked(Arc<Sim>);

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.with(|d| d.parked -= 1);
    }
}

fn pair_json(key: &str, e: &Entry) -> Value {
    use base64::Engine as _;
    let value =
        (!e.value.is_empty()).then(|| base64::engine::general_purpose::STANDARD.encode(&e.value));
    json!({"Key": key, "Flags": e.flags, "Session": e.session, "Value": value,
           "ModifyIndex": e.modify_index, "CreateIndex": e.modify_index, "LockIndex": 1})
}

fn indexed(code: u16, index: u64, body: String) -> Answer {
    (
        code,
        vec![("X-Consul-Index", index.to_string())],
        body.into_bytes(),
    )
}

fn answer(sim: Arc<Sim>, req: Req) -> AsyncAnswer {
    Box::pin(async move {
        let params: Vec<(String, String)> = req
            .query()
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let num = |name: &str| param(name).map(|v| v.parse::<u64>().unwrap());
        let path = req.path().to_owned();
        if path == "/v1/agent/self" {
            return indexed(200, 1, json!({"Config": {"NodeName": "sim"}}).to_string());
        }
        if path == "/v1/session/create" {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let id = sim.with(|d| {
                d.next_session += 1;
                let id = format!("{:08x}-0000-4000-8000-000000000000", d.next_session);
                let behavior = body["Behavior"].as_str().unwrap_or("release").to_owned();
                d.sessions.insert(id.clone(), (behavior, body.clone()));
                d.write();
                id
            });
            return indexed(200, 1, json!({ "ID": id }).to_string());
        }
        if let Some(id) = path.strip_prefix("/v1/session/destroy/") {
            sim.with(|d| d.invalidate(id));
            return indexed(200, 1, "true".into());
        }
        let Some(key) = path.strip_prefix("/v1/kv/") else {
            return indexed(404, 1, format!("no route {path}"));
        };
        let key = key.to_owned();
        match req.method.as_str() {
            "GET" => {
                let min = num("index").unwrap_or(0);
                if min > 0 {
                    let wait = param("wait")
                        .and_then(|w| w.strip_suffix("ms").map(str::to_owned))
                        .map_or(Duration::from_secs(300), |ms| {
                            Duration::from_millis(ms.parse().unwrap())
                        });
                    let mut rx = sim.version.subscribe();
                    sim.with(|d| d.parked += 1);
                    let _parked = Parked(sim.clone());
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
                let pairs: Vec<Value> = if param("recurse").is_some() {
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
                    indexed(404, d.index, String::new())
                } else {
                    indexed(200, d.index, Value::from(pairs).to_string())
                }
            }
            "PUT" => {
                let ok = sim.with(|d| {
                    let existing = d.kv.get(&key).cloned();
                    if num("cas")
                        .is_some_and(|cas| cas != existing.as_ref().map_or(0, |e| e.modify_index))
                    {
                        return false;
                    }
                    let mut entry = existing.unwrap_or_default();
                    if let Some(s) = param("acquire") {
                        if !d.sessions.contains_key(&s)
                            || entry.session.as_ref().is_some_and(|h| *h != s)
                        {
                            return false;
                        }
                        entry.session = Some(s);
                    }
                    if let Some(s) = param("release") {
                        if entry.session.as_ref() != Some(&s) {
                            return false;
                        }
                        entry.session = None;
                    }
                    entry.modify_index = d.write();
                    entry.flags = num("flags").unwrap_or(0);
                    entry.value = req.body.clone();
                    d.kv.insert(key.clone(), entry);
                    true
                });
                indexed(200, 1, ok.to_string())
            }
            "DELETE" => {
                let ok = sim.with(|d| {
                    if let Some(cas) = num("cas") {
                        if d.kv.get(&key).map(|e| e.modify_index) != Some(cas) {
                            return false;
                        }
                    }
                    d.kv.remove(&key);
                    d.write();
                    true
                });
                indexed(200, 1, ok.to_string())
            }
            other => indexed(405, 1, format!("method {other}")),
        }
    })
}

/// What a run produced.
struct Outcome {
    code: i32,
    out: String,
    err: String,
}

/// Runs `lock args...` against `fake`, with `drive` running alongside in the same
/// task; `drive` gets the sender of shutdown signals.
async fn run_lock<F: std::future::Future<Output = ()>>(
    fake: &Fake,
    args: &[&str],
    drive: impl FnOnce(mpsc::UnboundedSender<Sig>) -> F,
) -> Outcome {
    let mut ctx = Ctx::fake(&[("CONSUL_HTTP_ADDR", fake.addr.as_str())], b"");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let args = strings(args);
    let run = tokio::time::timeout(Duration::from_secs(20), run_with(&args, &mut ctx, &mut rx));
    let (code, ()) = tokio::join!(run, drive(tx));
    Outcome {
        code: code.expect("lock did not finish"),
        out: ctx.stdout(),
        err: ctx.stderr(),
    }
}

#[tokio::test]
async fn child_runs_holding_the_lock_and_the_key_is_cleaned_up() {
    let (sim, fake) = Sim::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("held");
    let child = format!("echo \"$CONSUL_LOCK_HELD\" > {}", file.display());
    let run = run_lock(&fake, &["-verbose", "app/job/", &child], |_tx| async {}).await;
    assert_eq!(run.code, 0, "{}", run.err);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "true\n");
    assert_eq!(
        run.out,
        "Setting up lock at path: app/job/.lock\nAttempting lock acquisition\n\
         Starting handler\nChild terminated, releasing lock\nCleanup succeeded\n"
    );

    // Go's wire protocol: a session named after the command, an acquire with the
    // lock flags on `<prefix>/.lock`, then release and delete.
    let reqs = fake.requests();
    let create = reqs
        .iter()
        .find(|r| r.path() == "/v1/session/create")
        .unwrap();
    let body: Value = serde_json::from_slice(&create.body).unwrap();
    assert_eq!(
        body,
        json!({"Name": format!("Consul lock for '{child}' at 'app/job/'"), "TTL": "15s"})
    );
    let acquire = reqs
        .iter()
        .find(|r| r.method == "PUT" && r.query().contains("acquire="))
        .unwrap();
    assert_eq!(acquire.path(), "/v1/kv/app/job/.lock");
    assert!(acquire.query().contains("flags=3304740253564472344"));
    assert!(reqs
        .iter()
        .any(|r| r.method == "PUT" && r.query().contains("release=")));
    let d = sim.data.lock().unwrap();
    assert!(d.kv.is_empty(), "{:?}", d.kv);
    assert!(d.sessions.is_empty());
}

#[tokio::test]
async fn child_failure_is_exit_2_only_with_child_exit_code() {
    let (_sim, fake) = Sim::start().await;
    let run = run_lock(&fake, &["app", "exit 3"], |_tx| async {}).await;
    assert_eq!(run.code, 0);
    assert_eq!(run.err, "Error running handler: exit status 3\n");
    let run = run_lock(&fake, &["-child-exit-code", "app", "exit 3"], |_tx| async {
    })
    .await;
    assert_eq!(run.code, 2);
    let run = run_lock(&fake, &["-child-exit-code", "app", "true"], |_tx| async {}).await;
    assert_eq!(run.code, 0);
    let run = run_lock(
        &fake,
        &[
            "-child-exit-code",
            "-shell=false",
            "app",
            "/nonexistent/program",
        ],
        |_tx| async {},
    )
    .await;
    assert_eq!(run.code, 2);
    assert!(
        run.err.starts_with("Error starting handler: "),
        "{}",
        run.err
    );
}

#[tokio::test]
async fn lost_lock_terminates_the_child() {
    let (sim, fake) = Sim::start().await;
    let args = ["-verbose", "-shell=false", "app", "sleep", "30"];
    let run = run_lock(&fake, &args, |_tx| {
        let sim = sim.clone();
        async move {
            sim.wait_until("the lock is monitored", |d| d.parked >= 1)
                .await;
            // An operator deletes the lock key.
            sim.with(|d| {
                d.kv.remove("app/.lock");
                d.write();
            });
        }
    })
    .await;
    assert_eq!(run.code, 0, "{}", run.err);
    let out = run.out;
    assert!(
        out.contains("Starting handler\nLock lost, killing child\nTerminating child pid "),
        "{out}"
    );
    assert!(
        out.ends_with("Child terminated\nCleanup succeeded\n"),
        "{out}"
    );
    assert_eq!(run.err, "Error running handler: signal: terminated\n");
    assert!(sim.data.lock().unwrap().sessions.is_empty());
}

#[tokio::test]
async fn shutdown_signal_terminates_the_child_and_releases() {
    let (sim, fake) = Sim::start().await;
    let args = ["-verbose", "-shell=false", "-n=2", "pool", "sleep", "30"];
    let run = run_lock(&fake, &args, |tx| {
        let sim = sim.clone();
        async move {
            sim.wait_until("the slot is monitored", |d| d.parked >= 1)
                .await;
            tx.send(Sig::Interrupt).unwrap();
        }
    })
    .await;
    assert_eq!(run.code, 0, "{}", run.err);
    assert!(run.out.starts_with(
        "Setting up semaphore (limit 2) at prefix: pool\nAttempting lock acquisition\n\
         Starting handler\nShutdown triggered, killing child\nTerminating child pid "
    ));
    assert!(run.out.ends_with("Cleanup succeeded\n"), "{}", run.out);
    // The forwarded SIGINT or our SIGTERM ends it, whichever lands first.
    assert!(
        run.err.starts_with("Error running handler: signal: "),
        "{}",
        run.err
    );
    let d = sim.data.lock().unwrap();
    assert!(d.kv.is_empty(), "{:?}", d.kv);
    assert!(d.sessions.is_empty());
}

#[tokio::test]
async fn semaphore_mode_uses_the_go_layout() {
    let (sim, fake) = Sim::start().await;
    let run = run_lock(&fake, &["-n", "3", "pool", "true"], |_tx| async {}).await;
    assert_eq!(run.code, 0, "{}", run.err);
    let reqs = fake.requests();
    let create = reqs
        .iter()
        .find(|r| r.path() == "/v1/session/create")
        .unwrap();
    let body: Value = serde_json::from_slice(&create.body).unwrap();
    assert_eq!(body["Behavior"], "delete");
    let doc = reqs
        .iter()
        .find(|r| r.path() == "/v1/kv/pool/.lock" && r.method == "PUT")
        .unwrap();
    assert!(doc.query().contains("flags=16210313421097356768"));
    let doc: Value = serde_json::from_slice(&doc.body).unwrap();
    assert_eq!(doc["Limit"], 3);
    assert_eq!(doc["Holders"].as_object().unwrap().len(), 1);
    let d = sim.data.lock().unwrap();
    assert!(d.kv.is_empty(), "{:?}", d.kv);
    assert!(d.sessions.is_empty());
}

#[tokio::test]
async fn busy_lock_times_out_and_conflicts_are_reported() {
    let (sim, fake) = Sim::start().await;
    sim.with(|d| {
        d.sessions
            .insert("other".into(), ("release".into(), json!({})));
        let entry = Entry {
            flags: tribune_client::LOCK_FLAG_VALUE,
            session: Some("other".into()),
            modify_index: d.write(),
            ..Default::default()
        };
        d.kv.insert("busy/.lock".into(), entry);
        let entry = Entry {
            flags: tribune_client::SEMAPHORE_FLAG_VALUE,
            modify_index: d.write(),
            ..Default::default()
        };
        d.kv.insert("sem/.lock".into(), entry);
    });
    let run = run_lock(&fake, &["-timeout=200ms", "busy", "true"], |_tx| async {}).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.err,
        "Shutdown triggered or timeout during lock acquisition\n"
    );
    let run = run_lock(&fake, &["sem", "true"], |_tx| async {}).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.err,
        "Lock acquisition failed: Existing key does not match lock use\n"
    );
    // Only the other holder's session is left.
    assert_eq!(sim.data.lock().unwrap().sessions.len(), 1);
}

#[tokio::test]
async fn usage_errors_and_unreachable_agent() {
    let mut ctx = Ctx::fake(&[("CONSUL_HTTP_ADDR", "127.0.0.1:1")], b"");
    let (_tx, mut rx) = mpsc::unbounded_channel();
    assert_eq!(run_with(&strings(&["p"]), &mut ctx, &mut rx).await, 1);
    assert_eq!(
        ctx.stderr(),
        "Key prefix and child command must be specified\n"
    );

    let mut ctx = Ctx::fake(&[("CONSUL_HTTP_ADDR", "127.0.0.1:1")], b"");
    assert_eq!(
        run_with(&strings(&["-n=x", "p", "c"]), &mut ctx, &mut rx).await,
        1
    );
    assert!(ctx
        .stderr()
        .starts_with("invalid value \"x\" for flag -n: parse error\nUsage: tribune lock"));

    let mut ctx = Ctx::fake(&[("CONSUL_HTTP_ADDR", "127.0.0.1:1")], b"");
    assert_eq!(run_with(&strings(&["p", "c"]), &mut ctx, &mut rx).await, 1);
    assert!(
        ctx.stderr().starts_with("Error querying Consul agent: "),
        "{}",
        ctx.stderr()
    );

    let mut ctx = Ctx::fake(&[], b"");
    assert_eq!(run_with(&strings(&["-h"]), &mut ctx, &mut rx).await, 0);
    assert!(ctx
        .stdout()
        .starts_with("Usage: tribune lock [options] prefix child..."));
}
