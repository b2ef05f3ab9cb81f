//! `exec`: runs a command on the agents an event's filters select (`consul
//! exec`), over the KV store and a user event; the agents' side is the agent
//! crate's `rexec` module, which describes the keys.
//!
//! The command creates a session (`Remote Exec`, TTL 15 s, renewed every 5 s,
//! behaviour `delete`), stores the job under `<prefix>/<session>/job`, waits
//! `-wait-repl` so that agents can read it with a stale read, fires `_rexec`,
//! then follows `<prefix>/<session>/` with blocking key listings, printing each
//! node's acknowledgement (with `-verbose`), output and exit code, until nothing
//! has arrived for `-wait` (twice that while a node that acknowledged has not
//! finished). It then destroys the session and deletes the job's keys. Exit
//! code: 0, 1 on an error, 2 when a node failed or did not finish.

use std::time::Duration;

use base64::Engine as _;
use tokio::sync::mpsc;
use tribune_client::{
    Client, KvDeleteOptions, KvPutOptions, QueryOptions, SessionBehavior, SessionCreateOptions,
    UserEvent,
};
use tribune_types::duration::parse_go_duration;
use tribune_types::goflag::{FlagSet, Parsed};

use super::event::{check_filters, filter_flags};
use super::http::{client_flags, reachable_client, server_flags};
use super::lock::{shutdown, Sig};
use super::{help_text, parse, Ctx};

const HELP: &str = "Usage: tribune exec [options] [-|command...]

  Evaluates a command on remote Consul nodes. The nodes responding can
  be filtered using regular expressions on node name, service, and tag
  definitions. If a command is '-', stdin will be read until EOF
  and used as a script input.";

// The wire format is the agent's, which runs the jobs.
use tribune_agent::rexec::{
    job_dir, Spec, ACK_KEY, EVENT_NAME as EVENT, EXIT_KEY, JOB_KEY as JOB, OUTPUT_DIR,
};
const SESSION_TTL: Duration = Duration::from_secs(15);
const RENEW_INTERVAL: Duration = Duration::from_secs(5);

/// The settings of one run.
struct Settings {
    prefix: String,
    node: String,
    service: String,
    tag: String,
    wait: Duration,
    repl_wait: Duration,
    verbose: bool,
    /// The job as agents read it.
    spec: Spec,
}

/// What the key listing found.
enum Found {
    Ack(String),
    Heartbeat(String),
    Output(String, Vec<u8>),
    Exit(String, i64),
    /// A key that could not be read or understood (printed, then ignored).
    Problem(String),
    /// Reading failed; the run ends with exit code 1.
    Failed(String),
}

/// `exec [options] [-|command...]`.
pub(crate) async fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = server_flags(client_flags(
        filter_flags(FlagSet::new("exec"))
            .value("prefix", "Prefix in the KV store to use for request data.")
            .bool("shell", "Use a shell to run the command.")
            .value(
                "wait",
                "Period to wait with no responses before terminating execution.",
            )
            .value(
                "wait-repl",
                "Period to wait for replication before firing event. This is an \
                 optimization to allow stale reads to be performed.",
            )
            .bool("verbose", "Enables verbose output."),
    ));
    let p = match parse(&flags, args, HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let settings = match settings(&p, ctx) {
        Ok(s) => s,
        Err(Some(message)) => {
            ctx.error(&message);
            return 1;
        }
        Err(None) => {
            ctx.error("Must specify a command to execute");
            ctx.error("");
            ctx.error(&help_text(HELP, &flags));
            return 1;
        }
    };
    match reachable_client(&p, ctx).await {
        Ok(client) => execute(&client, &settings, ctx).await,
        Err(code) => code,
    }
}

/// Reads and checks the command line: `Err(None)` when there is no command.
fn settings(p: &Parsed, ctx: &mut Ctx) -> Result<Settings, Option<String>> {
    let duration = |name: &str, default: Duration| match p.get(name) {
        None => Ok(default),
        Some(text) => parse_go_duration(text)
            .map_err(|e| Some(format!("invalid value {text:?} for flag -{name}: {e}"))),
    };
    let wait = duration("wait", Duration::from_secs(2))?;
    let repl_wait = duration("wait-repl", Duration::from_millis(200))?;
    let shell = p.flag("shell").unwrap_or(true);
    let joined = p.args.join(" ");
    let (mut command, mut args, mut script) = (joined.clone(), Vec::new(), Vec::new());
    if joined == "-" {
        if !shell {
            return Err(Some(
                "Cannot configure -shell=false when reading from stdin".into(),
            ));
        }
        command.clear();
        script = ctx
            .read_stdin()
            .map_err(|e| Some(format!("Failed to read stdin: {e}")))?;
    } else if !shell {
        command.clear();
        args = p.args.clone();
    }
    if command.is_empty() && script.is_empty() && args.is_empty() {
        return Err(None);
    }
    let get = |k: &str| p.get(k).unwrap_or_default().to_owned();
    let (node, service, tag) = (get("node"), get("service"), get("tag"));
    check_filters(&node, &service, &tag).map_err(Some)?;
    let spec = Spec {
        command,
        args: (!args.is_empty()).then_some(args),
        script: (!script.is_empty())
            .then(|| base64::engine::general_purpose::STANDARD.encode(&script)),
        wait: i64::try_from(wait.as_nanos()).unwrap_or(i64::MAX),
    };
    Ok(Settings {
        prefix: p.get("prefix").unwrap_or(EVENT).to_owned(),
        node,
        service,
        tag,
        wait,
        repl_wait,
        verbose: p.is_set("verbose"),
        spec,
    })
}

/// The node of `<node>/<name>`.
fn under_node<'a>(key: &'a str, name: &str) -> Option<&'a str> {
    key.strip_suffix(name)?.strip_suffix('/')
}

async fn execute(client: &Client, s: &Settings, ctx: &mut Ctx) -> i32 {
    // SIGINT/SIGTERM end the wait with exit code 1 and the cleanup below still
    // runs, as Consul's deferred session destroy and key deletion do.
    let (tx, mut signals) = mpsc::unbounded_channel();
    let _listener = match super::lock::listen(tx) {
        Ok(l) => l,
        Err(err) => {
            ctx.error(&format!("Error setting up signal handlers: {err}"));
            return 1;
        }
    };
    let session = match client
        .session()
        .create(&SessionCreateOptions {
            name: Some("Remote Exec".into()),
            behavior: Some(SessionBehavior::Delete),
            ttl: Some(SESSION_TTL),
            ..SessionCreateOptions::default()
        })
        .await
    {
        Ok(id) => id,
        Err(e) => {
            ctx.error(&format!("Failed to create session: {e}"));
            return 1;
        }
    };
    if s.verbose {
        ctx.info(format!("Created remote execution session: {session}"));
    }
    let renewal = {
        let client = client.clone();
        let session = session.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RENEW_INTERVAL);
            every.tick().await;
            loop {
                every.tick().await;
                if let Err(e) = client.session().renew(&session).await {
                    // Nowhere better to say it: the run goes on, as Consul's does.
                    eprintln!("Session renew failed: {e}");
                    return;
                }
            }
        })
    };
    let dir = job_dir(&s.prefix, &session);
    let code = run_job(client, s, &session, &dir, &mut signals, ctx).await;
    // The session first: its keys are deleted with it, and no agent can write
    // after that (each write acquires with it); then whatever is left.
    renewal.abort();
    let _ = client.session().destroy(&session).await;
    let delete = KvDeleteOptions {
        recurse: true,
        ..KvDeleteOptions::default()
    };
    let _ = client.kv().delete(&dir, &delete).await;
    code
}

async fn run_job(
    client: &Client,
    s: &Settings,
    session: &str,
    dir: &str,
    signals: &mut mpsc::UnboundedReceiver<Sig>,
    ctx: &mut Ctx,
) -> i32 {
    let spec = serde_json::to_vec(&s.spec).unwrap_or_default();
    let put = KvPutOptions {
        acquire: Some(session.to_owned()),
        ..KvPutOptions::default()
    };
    match client.kv().put(&format!("{dir}/{JOB}"), &spec, &put).await {
        Ok(true) => {}
        Ok(false) => {
            ctx.error(&format!(
                "Failed to create job file: failed to acquire key {dir}/{JOB}"
            ));
            return 1;
        }
        Err(e) => {
            ctx.error(&format!("Failed to create job file: {e}"));
            return 1;
        }
    }
    if s.verbose {
        ctx.info("Uploaded remote execution spec");
    }
    // Consul's heuristic: give the job time to reach every server, so that the
    // agents' stale reads find it.
    tokio::select! {
        () = tokio::time::sleep(s.repl_wait) => {}
        () = shutdown(signals) => return 1,
    }
    let payload = serde_json::json!({"Prefix": s.prefix, "Session": session}).to_string();
    let event = UserEvent {
        name: EVENT.into(),
        payload: Some(payload.into_bytes()),
        node_filter: s.node.clone(),
        service_filter: s.service.clone(),
        tag_filter: s.tag.clone(),
        ..UserEvent::default()
    };
    match client.event().fire(&event).await {
        Ok(id) => {
            if s.verbose {
                ctx.info(format!("Fired remote execution event: {id}"));
            }
        }
        Err(e) => {
            ctx.error(&format!("Failed to fire event: {e}"));
            return 1;
        }
    }
    let (tx, mut rx) = mpsc::channel(128);
    let follower = tokio::spawn(follow(client.clone(), format!("{dir}/"), s.wait, tx));
    let code = wait_for_job(s, &mut rx, signals, ctx).await;
    follower.abort();
    code
}

/// Prints what arrives until the job has been quiet long enough.
async fn wait_for_job(
    s: &Settings,
    rx: &mut mpsc::Receiver<Found>,
    signals: &mut mpsc::UnboundedReceiver<Sig>,
    ctx: &mut Ctx,
) -> i32 {
    let start = std::time::Instant::now();
    let (mut acks, mut exits, mut bad) = (0u32, 0u32, 0u32);
    loop {
        // A node that acknowledged and has not finished gets a longer window.
        let quiet = if acks > exits { s.wait * 2 } else { s.wait };
        let next = tokio::select! {
            next = tokio::time::timeout(quiet, rx.recv()) => next,
            () = shutdown(signals) => return 1,
        };
        let found = match next {
            Ok(Some(found)) => found,
            Ok(None) | Err(_) => {
                ctx.info(format!("{exits} / {acks} node(s) completed / acknowledged"));
                if s.verbose {
                    ctx.info(format!(
                        "Completed in {:.2} seconds",
                        start.elapsed().as_secs_f64()
                    ));
                }
                if exits < acks {
                    bad += 1;
                }
                break;
            }
        };
        match found {
            Found::Ack(node) => {
                acks += 1;
                if s.verbose {
                    ctx.info(targeted(true, &node, "acknowledged"));
                }
            }
            Found::Heartbeat(node) => {
                if s.verbose {
                    ctx.info(targeted(true, &node, "heartbeat received"));
                }
            }
            Found::Output(node, bytes) => {
                ctx.info(targeted(false, &node, &String::from_utf8_lossy(&bytes)));
            }
            Found::Exit(node, code) => {
                exits += 1;
                ctx.info(targeted(
                    true,
                    &node,
                    &format!("finished with exit code {code}"),
                ));
                if code != 0 {
                    bad += 1;
                }
            }
            Found::Problem(message) => ctx.error(&message),
            Found::Failed(message) => {
                ctx.error(&message);
                return 1;
            }
        }
    }
    if bad > 0 {
        2
    } else {
        0
    }
}

/// Consul's `TargetedUI`: every line of `message` prefixed with the node,
/// after `==>` for status lines and blanks for output, trailing whitespace
/// trimmed (so output ending in a newline shows one empty `node:` line, as in
/// Consul).
fn targeted(arrow: bool, node: &str, message: &str) -> String {
    let arrow = if arrow { "==>" } else { "   " };
    let mut out = String::new();
    for line in message.split('\n') {
        out.push_str(&format!("{arrow} {node}: {line}\n"));
    }
    out.trim_end().to_owned()
}

/// Follows the job's keys with blocking listings, reporting each new key once.
async fn follow(client: Client, dir: String, wait: Duration, tx: mpsc::Sender<Found>) {
    let mut seen = std::collections::HashSet::new();
    let mut opts = QueryOptions {
        wait: Some(wait),
        ..QueryOptions::default()
    };
    loop {
        let (keys, meta) = match client.kv().keys(&dir, None, &opts).await {
            Ok(r) => r,
            Err(e) => {
                let _ = tx
                    .send(Found::Failed(format!("Failed to read results: {e}")))
                    .await;
                return;
            }
        };
        if meta.index == opts.index {
            continue;
        }
        opts.index = meta.index;
        for full in keys {
            if !seen.insert(full.clone()) {
                continue;
            }
            let key = full.strip_prefix(&dir).unwrap_or(&full).to_owned();
            let found = if key == JOB {
                continue;
            } else if let Some(node) = under_node(&key, ACK_KEY) {
                Found::Ack(node.to_owned())
            } else if let Some(node) = under_node(&key, EXIT_KEY) {
                match value(&client, &full).await {
                    Ok(v) => match String::from_utf8_lossy(&v).trim().parse::<i32>() {
                        Ok(code) => Found::Exit(node.to_owned(), i64::from(code)),
                        Err(e) => Found::Problem(format!(
                            "Failed to parse exit code '{}': {e}",
                            String::from_utf8_lossy(&v)
                        )),
                    },
                    Err(problem) => problem,
                }
            } else if let Some(at) = key.rfind(&format!("/{OUTPUT_DIR}/")) {
                let node = key[..at].to_owned();
                match value(&client, &full).await {
                    Ok(v) if v.is_empty() => Found::Heartbeat(node),
                    Ok(v) => Found::Output(node, v),
                    Err(problem) => problem,
                }
            } else {
                Found::Problem(format!("Unknown key '{key}', ignoring."))
            };
            if tx.send(found).await.is_err() {
                return;
            }
        }
    }
}

/// A key's value (empty when it has none), or the problem to print.
async fn value(client: &Client, key: &str) -> Result<Vec<u8>, Found> {
    match client.kv().get(key, &QueryOptions::default()).await {
        Ok((Some(pair), _)) => Ok(pair.value.unwrap_or_default()),
        Ok((None, _)) => Err(Found::Problem(format!("Failed to read key '{key}': <nil>"))),
        Err(e) => Err(Found::Problem(format!("Failed to read key '{key}': {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_are_prefixed_like_consuls_targeted_ui() {
        assert_eq!(
            targeted(false, "web1", "hello\nworld\n"),
            "    web1: hello\n    web1: world\n    web1:"
        );
        assert_eq!(
            targeted(true, "web1", "finished with exit code 0"),
            "==> web1: finished with exit code 0"
        );
    }

    #[test]
    fn the_job_spec_is_what_consul_writes() {
        let flags = FlagSet::new("exec")
            .bool("shell", "")
            .value("wait", "")
            .value("prefix", "")
            .value("node", "")
            .value("service", "")
            .value("tag", "")
            .value("wait-repl", "")
            .bool("verbose", "");
        let mut ctx = Ctx::fake(&[], b"echo from stdin\n");
        let p = flags.parse(&["-wait=1s", "uptime", "-a"]).unwrap();
        let s = settings(&p, &mut ctx).ok().unwrap();
        let json = |spec: &Spec| serde_json::to_value(spec).unwrap();
        assert_eq!(
            json(&s.spec),
            serde_json::json!({"Command": "uptime -a", "Wait": 1_000_000_000u64})
        );
        let p = flags.parse(&["-shell=false", "ls", "-l"]).unwrap();
        let s = settings(&p, &mut ctx).ok().unwrap();
        assert_eq!(
            json(&s.spec),
            serde_json::json!({"Args": ["ls", "-l"], "Wait": 2_000_000_000u64})
        );
        let p = flags.parse(&["-"]).unwrap();
        let s = settings(&p, &mut ctx).ok().unwrap();
        assert_eq!(json(&s.spec)["Script"], "ZWNobyBmcm9tIHN0ZGluCg==");
        assert_eq!(s.prefix, "_rexec");

        let p = flags.parse(&["-shell=false", "-"]).unwrap();
        assert_eq!(
            settings(&p, &mut ctx).err(),
            Some(Some(
                "Cannot configure -shell=false when reading from stdin".into()
            ))
        );
        let p = flags.parse::<&str>(&[]).unwrap();
        assert_eq!(settings(&p, &mut ctx).err(), Some(None));
        let p = flags.parse(&["-tag=x", "true"]).unwrap();
        assert_eq!(
            settings(&p, &mut ctx).err(),
            Some(Some(
                "Cannot provide tag filter without service filter.".into()
            ))
        );
        assert_eq!(job_dir("_rexec/", "abc"), "_rexec/abc");
    }
}
