//! Commands about the local agent itself: `join`, `leave`, `reload`, `info`.

use tribune_types::goflag::FlagSet;

use super::http::{client, client_flags};
use super::{help_text, parse, Ctx};

const JOIN_HELP: &str = r#"Usage: tribune join [options] address ...

  Tells a running agent to join the cluster by contacting at least one
  existing member."#;

/// `join [-wan] address...`
pub(crate) async fn join(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = client_flags(
        FlagSet::new("join").bool("wan", "Joins a server to another server in the WAN pool."),
    );
    let p = match parse(&flags, args, JOIN_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if p.args.is_empty() {
        ctx.error("At least one address to join must be specified.");
        ctx.error("");
        ctx.error(&help_text(JOIN_HELP, &flags));
        return 1;
    }
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut joins = 0;
    for addr in &p.args {
        match client.agent().join(addr, p.is_set("wan")).await {
            Ok(()) => joins += 1,
            Err(err) => ctx.error(&format!("Error joining address '{addr}': {err}")),
        }
    }
    if joins == 0 {
        ctx.error("Failed to join any nodes.");
        return 1;
    }
    ctx.info(format!(
        "Successfully joined cluster by contacting {joins} nodes."
    ));
    0
}

const LEAVE_HELP: &str = "Usage: tribune leave [options]

  Causes the agent to gracefully leave the cluster and shut down.";

/// `leave`
pub(crate) async fn leave(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = client_flags(FlagSet::new("leave"));
    let p = match parse(&flags, args, LEAVE_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if !p.args.is_empty() {
        // Go's `%v` of a string slice.
        ctx.error(&format!(
            "Error found unexpected args: [{}]",
            p.args.join(" ")
        ));
        ctx.info(help_text(LEAVE_HELP, &flags));
        return 1;
    }
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.agent().leave().await {
        Ok(()) => {
            ctx.info("Graceful leave complete");
            0
        }
        Err(err) => {
            ctx.error(&format!("Error leaving: {err}"));
            1
        }
    }
}

const RELOAD_HELP: &str = "Usage: tribune reload [options]

  Causes the agent to reload its configuration files, like sending it SIGHUP.";

/// `reload`
pub(crate) async fn reload(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = client_flags(FlagSet::new("reload"));
    let p = match parse(&flags, args, RELOAD_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.agent().reload().await {
        Ok(()) => {
            ctx.info("Configuration reload triggered");
            0
        }
        Err(err) => {
            ctx.error(&format!("Error reloading: {err}"));
            1
        }
    }
}

const INFO_HELP: &str = "Usage: tribune info [options]

  Provides debugging information for operators: the agent's statistics by
  section (agent, build, consul, raft, runtime, serf_lan, serf_wan).";

/// `info`: `Stats` of `/v1/agent/self`, sections and keys sorted.
pub(crate) async fn info(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = client_flags(FlagSet::new("info"));
    let p = match parse(&flags, args, INFO_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let me = match client.agent().self_().await {
        Ok(me) => me,
        Err(err) => {
            ctx.error(&format!("Error querying agent: {err}"));
            return 1;
        }
    };
    for (section, values) in &me.stats {
        ctx.info(format!("{section}:"));
        for (key, value) in values {
            // Consul's stats are strings; print anything else as its JSON text.
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            ctx.info(format!("\t{key} = {value}"));
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fake, ok, run_at, status};

    #[tokio::test]
    async fn join_leave_reload_info() {
        let fake = fake(|req| match (req.method.as_str(), req.path()) {
            ("PUT", "/v1/agent/join/10.0.0.9:8301") => status(500, "dial tcp: i/o timeout"),
            ("PUT", _) => ok(""),
            ("GET", "/v1/agent/self") => ok(
                r#"{"Config":{"NodeName":"n1"},"Stats":{"raft":{"state":"Leader","term":"2"},"agent":{"checks":"0","services":3}}}"#,
            ),
            _ => status(404, ""),
        })
        .await;
        let a = fake.addr.as_str();

        let r = run_at(a, "join", &["-wan", "10.0.0.2", "10.0.0.9:8301"], b"").await;
        assert_eq!(r.code, 0);
        assert_eq!(
            r.out,
            "Successfully joined cluster by contacting 1 nodes.\n"
        );
        assert_eq!(
            r.err,
            "Error joining address '10.0.0.9:8301': Unexpected response code: 500 (dial tcp: i/o timeout)\n"
        );
        assert_eq!(fake.requests()[0].target, "/v1/agent/join/10.0.0.2?wan=1");
        let r = run_at(a, "join", &["10.0.0.9:8301"], b"").await;
        assert_eq!(r.code, 1);
        assert!(r.err.ends_with("Failed to join any nodes.\n"));
        let r = run_at(a, "join", &[], b"").await;
        assert_eq!(r.code, 1);
        assert!(r
            .err
            .starts_with("At least one address to join must be specified.\n\nUsage: tribune join"));

        let r = run_at(a, "leave", &[], b"").await;
        assert_eq!((r.code, r.out.as_str()), (0, "Graceful leave complete\n"));
        let r = run_at(a, "leave", &["now", "please"], b"").await;
        assert_eq!(
            (r.code, r.err.as_str()),
            (1, "Error found unexpected args: [now please]\n")
        );
        let r = run_at(a, "reload", &[], b"").await;
        assert_eq!(
            (r.code, r.out.as_str()),
            (0, "Configuration reload triggered\n")
        );

        let r = run_at(a, "info", &[], b"").await;
        assert_eq!(
            r.out,
            "agent:\n\tchecks = 0\n\tservices = 3\nraft:\n\tstate = Leader\n\tterm = 2\n"
        );
    }

    #[tokio::test]
    async fn agent_errors() {
        let fake = fake(|_| status(403, "Permission denied")).await;
        let a = fake.addr.as_str();
        let r = run_at(a, "leave", &[], b"").await;
        assert_eq!(
            r.err,
            "Error leaving: Unexpected response code: 403 (Permission denied)\n"
        );
        let r = run_at(a, "reload", &[], b"").await;
        assert_eq!(
            r.err,
            "Error reloading: Unexpected response code: 403 (Permission denied)\n"
        );
        let r = run_at(a, "info", &[], b"").await;
        assert_eq!(
            r.err,
            "Error querying agent: Unexpected response code: 403 (Permission denied)\n"
        );
    }
}
