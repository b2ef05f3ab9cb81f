//! `watch`: consul's `consul watch` (`command/watch/watch.go`) with the loop of the
//! Go client's watch plan (`api/watch/plan.go`).
//!
//! The plan runs a blocking query with the last index seen. When the index and the
//! result changed, the handler runs: with a child command, the command gets the result
//! as JSON on stdin and `CONSUL_INDEX` in its environment, once per change, until it
//! fails (exit 1) or this process is interrupted (exit 0); without one, the result is
//! printed as indented JSON and the watch ends. A failed query is retried after
//! 5 s × failures² (at most 20 s), as the plan does.
//!
//! Types: `event` (optionally `-name`), `key` (`-key`), `keyprefix` (`-prefix`),
//! `services`, `nodes`, `service` (`-service`, repeatable `-tag`, `-passingonly`:
//! the health entries of its instances) and `checks` (`-service` or `-state`,
//! `any` by default).
//! An event watch gets only the events after the last one it has seen. The event
//! list's index is a hash of the last event's ID, so unlike the Go plan we do not
//! treat a smaller index as "went backwards" (which would replay every kept event).

use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tribune_client::{Client, Error, QueryOptions};
use tribune_types::format_go_duration;
use tribune_types::goflag::{parse_go_bool, FlagSet};

use super::http::{client_flags, reachable_client, server_flags};
use super::lock::{command_line, exit_text, shutdown, signals};
use super::{help_text, parse, Ctx};

const HELP: &str = "Usage: tribune watch [options] [child...]

  Watches for changes in a given data view from Consul. If a child process
  is specified, it will be invoked with the latest results on changes. Otherwise,
  the latest values are dumped to stdout and the watch terminates.

  Providing the watch type is required, and other parameters may be required
  or supported depending on the watch type.";

/// The plan's first retry delay after a failed query (`retryInterval`).
const RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// The plan's longest retry delay (`maxBackoffTime`).
const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// What is watched.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Event {
        name: String,
    },
    Key {
        key: String,
    },
    KeyPrefix {
        prefix: String,
    },
    Services,
    Nodes,
    Service {
        service: String,
        tags: Vec<String>,
        passing_only: bool,
    },
    /// Checks of one service, or (when `service` is empty) checks in `state`.
    Checks {
        service: String,
        state: String,
    },
}

impl Kind {
    fn type_name(&self) -> &'static str {
        match self {
            Kind::Event { .. } => "event",
            Kind::Key { .. } => "key",
            Kind::KeyPrefix { .. } => "keyprefix",
            Kind::Services => "services",
            Kind::Nodes => "nodes",
            Kind::Service { .. } => "service",
            Kind::Checks { .. } => "checks",
        }
    }

    /// Consul's `watch.Parse`: the type's own parameters, and an error for the ones
    /// it does not take (`Invalid parameters: [key]`). `given` lists the non-empty
    /// type-specific flags.
    fn parse(kind: &str, given: &[(&'static str, String)]) -> Result<Kind, String> {
        let take = |name: &str| {
            given
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let (parsed, uses): (Kind, &[&str]) = match kind {
            "event" => (Kind::Event { name: take("name") }, &["name"]),
            "key" => {
                let key = take("key");
                if key.is_empty() {
                    return Err("Must specify a single key to watch".into());
                }
                (Kind::Key { key }, &["key"])
            }
            "keyprefix" => {
                let prefix = take("prefix");
                if prefix.is_empty() {
                    return Err("Must specify a single prefix to watch".into());
                }
                (Kind::KeyPrefix { prefix }, &["prefix"])
            }
            "services" => (Kind::Services, &[]),
            "nodes" => (Kind::Nodes, &[]),
            "service" => {
                let service = take("service");
                if service.is_empty() {
                    return Err("Must specify a single service to watch".into());
                }
                let tags = given
                    .iter()
                    .filter(|(n, _)| *n == "tag")
                    .map(|(_, v)| v.clone())
                    .collect();
                // `run` has already refused a value Go's ParseBool would not take.
                let passing_only = parse_go_bool(&take("passingonly")).unwrap_or(false);
                (
                    Kind::Service {
                        service,
                        tags,
                        passing_only,
                    },
                    &["service", "tag", "passingonly"],
                )
            }
            "checks" => {
                let service = take("service");
                let mut state = take("state");
                if !service.is_empty() && !state.is_empty() {
                    return Err("Cannot specify service and state".into());
                }
                if service.is_empty() && state.is_empty() {
                    state = "any".into();
                }
                (Kind::Checks { service, state }, &["service", "state"])
            }
            "connect_roots" | "connect_leaf" | "agent_service" => {
                return Err(format!(
                    "Unsupported watch type: {kind} (not implemented in this build)"
                ))
            }
            other => return Err(format!("Unsupported watch type: {other}")),
        };
        let mut extra: Vec<&str> = given
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| !uses.contains(n))
            .collect();
        extra.dedup();
        if !extra.is_empty() {
            return Err(format!("Invalid parameters: [{}]", extra.join(" ")));
        }
        Ok(parsed)
    }
}

/// Consul's `IDToIndex`: an event ID's two 64-bit halves XORed, the event list's index.
fn id_to_index(id: &str) -> u64 {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return 0;
    }
    let hi = u64::from_str_radix(&hex[..16], 16).unwrap_or(0);
    let lo = u64::from_str_radix(&hex[16..], 16).unwrap_or(0);
    hi ^ lo
}

/// One run of the watch function: the index to block on next and the result.
async fn fetch(
    client: &Client,
    kind: &Kind,
    stale: bool,
    last: Option<u64>,
) -> Result<(u64, Value), Error> {
    let opts = QueryOptions {
        index: last.unwrap_or(0),
        stale,
        ..Default::default()
    };
    match kind {
        Kind::Event { name } => {
            let (events, meta) = client.event().list(name, &opts).await?;
            // Only the events after the last one already handled (`eventWatch`).
            let start = last
                .and_then(|l| events.iter().position(|e| id_to_index(&e.id) == l))
                .map_or(0, |i| i + 1);
            Ok((meta.index, json(&events[start..].to_vec())))
        }
        Kind::Key { key } => {
            let (pair, meta) = client.kv().get(key, &opts).await?;
            Ok((meta.index, json(&pair)))
        }
        Kind::KeyPrefix { prefix } => {
            let (pairs, meta) = client.kv().list(prefix, &opts).await?;
            // The Go client's `KV().List` is nil (JSON `null`) when nothing matches.
            let pairs = (!pairs.is_empty()).then_some(pairs);
            Ok((meta.index, json(&pairs)))
        }
        // Consul's `servicesWatch` and `nodesWatch`: the catalog listings as they are.
        Kind::Services => {
            let (services, meta) = client.catalog().services(&opts).await?;
            Ok((meta.index, json(&services)))
        }
        Kind::Nodes => {
            let (nodes, meta) = client.catalog().nodes(&opts).await?;
            Ok((meta.index, json(&nodes)))
        }
        // `serviceWatch`: the health entries of the service's instances.
        Kind::Service {
            service,
            tags,
            passing_only,
        } => {
            let (entries, meta) = client
                .health()
                .service(service, tags, *passing_only, &opts)
                .await?;
            Ok((meta.index, json(&entries)))
        }
        // `checksWatch`: a state's checks, or one service's.
        Kind::Checks { service, state } => {
            let (checks, meta) = if service.is_empty() {
                client.health().state(state, &opts).await?
            } else {
                client.health().checks(service, &opts).await?
            };
            Ok((meta.index, json(&checks)))
        }
    }
}

/// A result as JSON. The client's types are plain data that always serialise.
fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Go's `json.MarshalIndent(data, "", "    ")`.
/// Runs the child with the result on stdin; `Err` with Consul's message when it
/// could not be started or did not exit 0.
async fn invoke(
    child: &[String],
    shell: bool,
    shell_var: Option<&str>,
    index: u64,
    data: &Value,
) -> Result<(), String> {
    let (program, args) = command_line(shell, shell_var, child);
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&args)
        .env("CONSUL_INDEX", index.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let mut proc = cmd
        .spawn()
        .map_err(|e| format!("Error starting handler: {e}"))?;
    // Go's `json.Encoder`: compact, one trailing newline.
    let mut input = serde_json::to_vec(data).unwrap_or_default();
    input.push(b'\n');
    if let Some(mut stdin) = proc.stdin.take() {
        // A handler that does not read its input may close stdin early; that is its
        // business, not an error of the watch.
        let _ = stdin.write_all(&input).await;
    }
    let status = proc
        .wait()
        .await
        .map_err(|e| format!("Error executing handler: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("Error executing handler: {}", exit_text(status)))
    }
}

/// `watch -type=T [options] [child...]`.
pub(crate) async fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = server_flags(client_flags(
        FlagSet::new("watch")
            .value(
                "type",
                "Specifies the watch type. One of key, keyprefix, services, nodes, service, checks, or event.",
            )
            .value("key", "Specifies the key to watch. Only for 'key' type.")
            .value(
                "prefix",
                "Specifies the key prefix to watch. Only for 'keyprefix' type.",
            )
            .value(
                "service",
                "Specifies the service to watch. Required for 'service' type, optional for 'checks' type.",
            )
            .multi(
                "tag",
                "Specifies the service tag(s) to filter on. Optional for 'service' type. May be specified multiple times.",
            )
            .value(
                "passingonly",
                "Specifies if only hosts passing all checks are displayed. Optional for 'service' type, must be one of `[true|false]`. Defaults false.",
            )
            .bool(
                "shell",
                "Use a shell to run the command (can set a custom shell via the SHELL environment variable).",
            )
            .value("state", "Specifies the states to watch. Optional for 'checks' type.")
            .value("name", "Specifies an event name to watch. Only for 'event' type."),
    ));
    let p = match parse(&flags, args, HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let watch_type = p.get("type").unwrap_or_default();
    if watch_type.is_empty() {
        ctx.error("Watch type must be specified");
        ctx.error("");
        ctx.error(&help_text(HELP, &flags));
        return 1;
    }
    if let Some(v) = p.get("passingonly").filter(|v| !v.is_empty()) {
        if parse_go_bool(v).is_none() {
            ctx.error(&format!(
                "Failed to parse passingonly flag: strconv.ParseBool: parsing {v:?}: invalid syntax"
            ));
            return 1;
        }
    }
    let mut given: Vec<(&'static str, String)> =
        ["key", "prefix", "service", "passingonly", "state", "name"]
            .into_iter()
            .filter_map(|n| {
                p.get(n)
                    .filter(|v| !v.is_empty())
                    .map(|v| (n, v.to_owned()))
            })
            .collect();
    given.extend(
        p.all("tag")
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| ("tag", t.clone())),
    );
    let kind = match Kind::parse(watch_type, &given) {
        Ok(k) => k,
        Err(message) => {
            ctx.error(&message);
            return 1;
        }
    };
    let client = match reachable_client(&p, ctx).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (listener, mut signals) = match signals(ctx) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let settings = Settings {
        kind,
        stale: p.is_set("stale"),
        child: p.args.clone(),
        shell: p.flag("shell").unwrap_or(true),
        shell_var: ctx.var("SHELL"),
    };
    let code = tokio::select! {
        code = plan(&client, &settings, ctx) => code,
        // Consul's watch stops and exits 0 on SIGINT/SIGTERM.
        () = shutdown(&mut signals) => 0,
    };
    listener.abort();
    code
}

struct Settings {
    kind: Kind,
    stale: bool,
    child: Vec<String>,
    shell: bool,
    shell_var: Option<String>,
}

/// The plan loop; returns the exit code once the watch ends.
async fn plan(client: &Client, s: &Settings, ctx: &mut Ctx) -> i32 {
    let mut last: Option<u64> = None;
    let mut last_result: Option<Value> = None;
    let mut failures: u32 = 0;
    loop {
        let (index, result) = match fetch(client, &s.kind, s.stale, last).await {
            Ok(r) => r,
            Err(err) => {
                failures += 1;
                let retry = (RETRY_INTERVAL * failures.saturating_mul(failures)).min(MAX_BACKOFF);
                ctx.error(&format!(
                    "[ERR] consul.watch: Watch errored: type={} error=\"{err}\" retry={}",
                    s.kind.type_name(),
                    format_go_duration(retry)
                ));
                // Backoff of a product retry loop, as the Go plan does.
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        failures = 0;
        if last == Some(index) {
            continue;
        }
        let old = last;
        last = Some(match (&s.kind, old) {
            // A raft index that went backwards (a restored snapshot) starts over.
            (Kind::Key { .. } | Kind::KeyPrefix { .. }, Some(o)) if index < o => 0,
            _ => index,
        });
        if old.is_some() && last_result.as_ref() == Some(&result) {
            continue;
        }
        last_result = Some(result.clone());
        if s.child.is_empty() {
            ctx.info(super::format::indented(&result, b"    "));
            return 0;
        }
        if let Err(message) =
            invoke(&s.child, s.shell, s.shell_var.as_deref(), index, &result).await
        {
            ctx.error(&message);
            return 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fake, ok, run_at, status};
    use super::*;
    use serde_json::json;

    #[test]
    fn watch_types_and_their_parameters() {
        let name = [("name", "deploy".to_owned())];
        assert_eq!(
            Kind::parse("event", &name),
            Ok(Kind::Event {
                name: "deploy".into()
            })
        );
        assert_eq!(
            Kind::parse("key", &[]),
            Err("Must specify a single key to watch".into())
        );
        assert_eq!(
            Kind::parse("event", &[("key", "k".to_owned())]),
            Err("Invalid parameters: [key]".into())
        );
        assert_eq!(
            Kind::parse("bogus", &[]),
            Err("Unsupported watch type: bogus".into())
        );
        assert_eq!(id_to_index("00000000-0000-0001-0000-000000000003"), 1 ^ 3);
        assert_eq!(
            Kind::parse("service", &[]),
            Err("Must specify a single service to watch".into())
        );
        let web = [
            ("service", "web".to_owned()),
            ("tag", "v1".to_owned()),
            ("tag", "eu".to_owned()),
            ("passingonly", "true".to_owned()),
        ];
        assert_eq!(
            Kind::parse("service", &web),
            Ok(Kind::Service {
                service: "web".into(),
                tags: vec!["v1".into(), "eu".into()],
                passing_only: true,
            })
        );
        assert_eq!(
            Kind::parse("checks", &[]),
            Ok(Kind::Checks {
                service: String::new(),
                state: "any".into()
            })
        );
        assert_eq!(
            Kind::parse(
                "checks",
                &[
                    ("service", "web".to_owned()),
                    ("state", "critical".to_owned())
                ]
            ),
            Err("Cannot specify service and state".into())
        );
        assert_eq!(
            Kind::parse(
                "checks",
                &[("tag", "a".to_owned()), ("tag", "b".to_owned())]
            ),
            Err("Invalid parameters: [tag]".into())
        );
    }

    #[tokio::test]
    async fn service_and_checks_watches_print_health_entries() {
        let fake = fake(|req| match req.path() {
            "/v1/agent/self" => ok(r#"{"Config":{"NodeName":"n1"}}"#),
            "/v1/health/service/web" => {
                // The tags and the passing filter reach the server.
                assert!(req.target.contains("tag=v1") && req.target.contains("tag=eu"));
                assert!(req.target.contains("passing=1"), "{}", req.target);
                ok(r#"[{"Node":{"Node":"n1","Address":"127.0.0.1"},"Service":{"ID":"web1","Service":"web","Tags":["v1","eu"],"Port":80},"Checks":[{"Node":"n1","CheckID":"serfHealth","Status":"passing"}]}]"#)
            }
            "/v1/health/state/any" => ok(
                r#"[{"Node":"n1","CheckID":"serfHealth","Name":"Serf Health Status","Status":"passing","ServiceTags":null}]"#,
            ),
            "/v1/health/checks/web" => ok("[]"),
            _ => status(404, ""),
        })
        .await;
        let args = [
            "-type=service",
            "-service=web",
            "-tag=v1",
            "-tag=eu",
            "-passingonly=true",
        ];
        let r = run_at(&fake.addr, "watch", &args, b"").await;
        assert_eq!(r.code, 0, "{}", r.err);
        let entries: Value = serde_json::from_str(&r.out).unwrap();
        assert_eq!(entries[0]["Service"]["ID"], "web1");
        assert_eq!(entries[0]["Checks"][0]["CheckID"], "serfHealth");
        let r = run_at(&fake.addr, "watch", &["-type=checks"], b"").await;
        assert_eq!(r.code, 0, "{}", r.err);
        let checks: Value = serde_json::from_str(&r.out).unwrap();
        assert_eq!(checks[0]["Name"], "Serf Health Status");
        assert_eq!(checks[0]["ServiceTags"], json!([]));
        let r = run_at(&fake.addr, "watch", &["-type=checks", "-service=web"], b"").await;
        assert_eq!((r.code, r.out.as_str()), (0, "[]\n"));
    }

    #[tokio::test]
    async fn event_watch_without_handler_prints_and_ends() {
        let fake = fake(|req| match req.path() {
            "/v1/agent/self" => ok(r#"{"Config":{"NodeName":"n1"}}"#),
            "/v1/event/list" => ok(
                r#"[{"ID":"00000000-0000-0000-0000-000000000001","Name":"deploy","Payload":"djI=","NodeFilter":"","ServiceFilter":"","TagFilter":"","Version":1,"LTime":4}]"#,
            ),
            _ => status(404, ""),
        })
        .await;
        let r = run_at(&fake.addr, "watch", &["-type=event", "-name=deploy"], b"").await;
        assert_eq!(r.code, 0, "{}", r.err);
        assert_eq!(
            r.out,
            "[\n    {\n        \"ID\": \"00000000-0000-0000-0000-000000000001\",\n        \"Name\": \"deploy\",\n        \"Payload\": \"djI=\",\n        \"NodeFilter\": \"\",\n        \"ServiceFilter\": \"\",\n        \"TagFilter\": \"\",\n        \"Version\": 1,\n        \"LTime\": 4\n    }\n]\n"
        );
        let list = fake
            .requests()
            .into_iter()
            .find(|r| r.path() == "/v1/event/list")
            .unwrap();
        assert_eq!(list.query(), "name=deploy");
        let r = run_at(&fake.addr, "watch", &[], b"").await;
        assert!(r.err.starts_with("Watch type must be specified\n"));
    }

    #[tokio::test]
    async fn services_and_nodes_watches_print_the_catalog_listings() {
        let fake = fake(|req| match req.path() {
            "/v1/agent/self" => ok(r#"{"Config":{"NodeName":"n1"}}"#),
            "/v1/catalog/services" => ok(r#"{"consul":[],"web":["v1"]}"#),
            "/v1/catalog/nodes" => ok(
                r#"[{"ID":"i1","Node":"n1","Address":"127.0.0.1","Datacenter":"dc1","TaggedAddresses":null,"Meta":null,"CreateIndex":5,"ModifyIndex":6}]"#,
            ),
            _ => status(404, ""),
        })
        .await;
        let r = run_at(&fake.addr, "watch", &["-type=services"], b"").await;
        assert_eq!(r.code, 0, "{}", r.err);
        assert_eq!(
            r.out,
            "{\n    \"consul\": [],\n    \"web\": [\n        \"v1\"\n    ]\n}\n"
        );
        let r = run_at(&fake.addr, "watch", &["-type=nodes"], b"").await;
        assert_eq!(r.code, 0, "{}", r.err);
        let nodes: Value = serde_json::from_str(&r.out).unwrap();
        assert_eq!(nodes[0]["Node"], "n1");
        assert_eq!(nodes[0]["ModifyIndex"], 6);
        let r = run_at(&fake.addr, "watch", &["-type=nodes", "-key=k"], b"").await;
        assert_eq!(r.code, 1);
        assert!(r.err.contains("Invalid parameters: [key]"), "{}", r.err);
    }
}
