//! `event`, `force-leave` and `keygen`: consul's gossip-related commands.

use tribune_types::goflag::FlagSet;

use super::http::{client, client_flags, reachable_client};
use super::{help_text, parse, Ctx};

const EVENT_HELP: &str = "Usage: tribune event [options] [payload]

  Dispatches a custom user event across a datacenter. An event must provide
  a name, but a payload is optional. Events support filtering using
  regular expressions on node name, service, and tag definitions.";

/// The `-node`, `-service` and `-tag` filters of a user event (`event`, `exec`).
pub(super) fn filter_flags(flags: FlagSet) -> FlagSet {
    flags
        .value("node", "Regular expression to filter on node names.")
        .value(
            "service",
            "Regular expression to filter on service instances.",
        )
        .value(
            "tag",
            "Regular expression to filter on service tags. Must be used with -service.",
        )
}

/// Consul's checks of those filters, with its messages.
pub(super) fn check_filters(node: &str, service: &str, tag: &str) -> Result<(), String> {
    for (what, re) in [("node", node), ("service", service), ("tag", tag)] {
        if let Err(e) = regex::Regex::new(re) {
            return Err(format!("Failed to compile {what} filter regexp: {e}"));
        }
    }
    if !tag.is_empty() && service.is_empty() {
        return Err("Cannot provide tag filter without service filter.".into());
    }
    Ok(())
}

/// `event -name N [-node R] [-service R] [-tag R] [payload]`.
pub(crate) async fn event(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = client_flags(filter_flags(
        FlagSet::new("event").value("name", "Name of the event."),
    ));
    let p = match parse(&flags, args, EVENT_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let get = |k: &str| p.get(k).unwrap_or_default().to_owned();
    let (name, node, service, tag) = (get("name"), get("node"), get("service"), get("tag"));
    if name.is_empty() {
        ctx.error("Event name must be specified");
        ctx.error("");
        ctx.error(&help_text(EVENT_HELP, &flags));
        return 1;
    }
    if let Err(message) = check_filters(&node, &service, &tag) {
        ctx.error(&message);
        return 1;
    }
    let payload = match p.args.as_slice() {
        [] => None,
        [one] => Some(one.as_bytes().to_vec()),
        _ => {
            ctx.error("Too many command line arguments.");
            ctx.error("");
            ctx.error(&help_text(EVENT_HELP, &flags));
            return 1;
        }
    };
    let client = match reachable_client(&p, ctx).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let ev = tribune_client::UserEvent {
        name,
        payload,
        node_filter: node,
        service_filter: service,
        tag_filter: tag,
        ..Default::default()
    };
    match client.event().fire(&ev).await {
        Ok(id) => {
            ctx.info(format!("Event ID: {id}"));
            0
        }
        Err(err) => {
            ctx.error(&format!("Error firing event: {err}"));
            1
        }
    }
}

const FORCE_LEAVE_HELP: &str = "Usage: tribune force-leave [options] name

  Forces a member of a Consul cluster to enter the \"left\" state. Note
  that if the member is still actually alive, it will eventually rejoin
  the cluster.";

/// `force-leave [-prune] [-wan] name`.
pub(crate) async fn force_leave(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = client_flags(
        FlagSet::new("force-leave")
            .bool("prune", "Remove agent forcibly from list of members")
            .bool("wan", "Exclusively leave the agent from the WAN serf pool."),
    );
    let p = match parse(&flags, args, FORCE_LEAVE_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let [node] = p.args.as_slice() else {
        ctx.error("A node name must be specified to force leave.");
        ctx.error("");
        ctx.error(&help_text(FORCE_LEAVE_HELP, &flags));
        return 1;
    };
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client
        .agent()
        .force_leave(node, p.is_set("prune"), p.is_set("wan"))
        .await
    {
        Ok(()) => 0,
        Err(err) => {
            ctx.error(&format!("Error force leaving: {err}"));
            1
        }
    }
}

/// `keygen`: a new base64 32-byte gossip encryption key.
pub(crate) fn keygen(args: &[String], ctx: &mut Ctx) -> i32 {
    if !args.is_empty() {
        ctx.error("Usage: tribune keygen");
        return 1;
    }
    ctx.info(tribune_gossip::keygen());
    0
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fake, ok, run_at, status};

    #[tokio::test]
    async fn event_force_leave_and_keygen() {
        let fake = fake(|req| match (req.method.as_str(), req.path()) {
            ("GET", "/v1/agent/self") => ok(r#"{"Config":{"NodeName":"n1"}}"#),
            ("PUT", "/v1/event/fire/deploy") => ok(r#"{"ID":"5b9d-id","Name":"deploy"}"#),
            ("PUT", "/v1/agent/force-leave/ghost") => {
                status(500, "agent: No node found with name 'ghost'")
            }
            ("PUT", _) => ok(""),
            _ => status(404, ""),
        })
        .await;
        let a = fake.addr.as_str();
        let r = run_at(
            a,
            "event",
            &["-name=deploy", "-service=web", "-tag=v1", "v2"],
            b"",
        )
        .await;
        assert_eq!((r.code, r.out.as_str()), (0, "Event ID: 5b9d-id\n"));
        let fire = fake.requests().last().cloned().unwrap();
        assert_eq!(fire.target, "/v1/event/fire/deploy?service=web&tag=v1");
        let r = run_at(a, "event", &["-name=x", "-tag=v1"], b"").await;
        assert_eq!(
            (r.code, r.err.trim_end()),
            (1, "Cannot provide tag filter without service filter.")
        );
        let r = run_at(a, "event", &[], b"").await;
        assert!(r.err.starts_with("Event name must be specified\n"));
        let r = run_at(a, "event", &["-name=x", "-node=("], b"").await;
        assert!(
            r.err.starts_with("Failed to compile node filter regexp:"),
            "{}",
            r.err
        );

        let r = run_at(a, "force-leave", &["-prune", "c3"], b"").await;
        assert_eq!((r.code, r.out.as_str(), r.err.as_str()), (0, "", ""));
        assert_eq!(
            fake.requests().last().unwrap().target,
            "/v1/agent/force-leave/c3?prune=1"
        );
        let r = run_at(a, "force-leave", &["ghost"], b"").await;
        assert_eq!(r.code, 1);
        assert!(r.err.starts_with("Error force leaving: "), "{}", r.err);
        let r = run_at(a, "force-leave", &[], b"").await;
        assert!(r
            .err
            .starts_with("A node name must be specified to force leave."));

        let r = run_at(a, "keygen", &[], b"").await;
        assert_eq!(r.code, 0);
        assert_eq!(r.out.trim_end().len(), 44, "base64 of 32 bytes");
    }
}
