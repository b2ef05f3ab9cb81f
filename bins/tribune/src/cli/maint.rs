//! `maint`: list, enable or disable node and service maintenance mode, with
//! `consul maint`'s flags, checks and messages.

use tribune_types::goflag::FlagSet;

use super::http::{client, client_flags};
use super::{parse, Ctx};

const HELP: &str = r#"Usage: tribune maint [options]

  Places a node or service into maintenance mode. During maintenance mode,
  the node or service will be excluded from all queries through the DNS
  or API interfaces, effectively taking it out of the pool of available
  nodes. This is done by registering an additional critical health check.

  When enabling maintenance mode for a node or service, you may optionally
  specify a reason string. This string will appear in the "Notes" field
  of the critical health check which is registered against the node or
  service. If no reason is provided, a default value will be used.

  Maintenance mode is persistent, and will be restored in the event of an
  agent restart. It is therefore required to disable maintenance mode on
  a given node or service before it will be placed back into the pool.

  By default, we operate on the node as a whole. By specifying the
  "-service" argument, this behavior can be changed to enable or disable
  only a specific service.

  If no arguments are given, the agent's maintenance status will be shown.
  This will return blank if nothing is currently under maintenance."#;

/// `maint [-enable|-disable] [-reason R] [-service ID]`.
pub(crate) async fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = client_flags(
        FlagSet::new("maint")
            .bool("enable", "Enable maintenance mode.")
            .bool("disable", "Disable maintenance mode.")
            .value("reason", "Text describing the maintenance reason.")
            .value(
                "service",
                "Control maintenance mode for a specific service ID.",
            ),
    );
    let p = match parse(&flags, args, HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (enable, disable) = (p.is_set("enable"), p.is_set("disable"));
    let reason = p.get("reason").unwrap_or_default().to_owned();
    let service = p.get("service").unwrap_or_default().to_owned();
    if enable && disable {
        ctx.error("Only one of -enable or -disable may be provided");
        return 1;
    }
    if !enable && !reason.is_empty() {
        ctx.error("Reason may only be provided with -enable");
        return 1;
    }
    if !enable && !disable && !service.is_empty() {
        ctx.error("Service requires either -enable or -disable");
        return 1;
    }
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let agent = client.agent();
    let node_name = match agent.self_().await {
        Ok(me) => me.config.node_name,
        Err(err) => {
            ctx.error(&format!("Error querying Consul agent: {err}"));
            return 1;
        }
    };
    if !enable && !disable {
        let checks = match agent.checks().await {
            Ok(c) => c,
            Err(err) => {
                ctx.error(&format!("Error getting checks: {err}"));
                return 1;
            }
        };
        for check in checks.values() {
            if check.check_id == "_node_maintenance" {
                ctx.info("Node:");
                ctx.info(format!("  Name:   {node_name}"));
                ctx.info(format!("  Reason: {}", check.notes));
                ctx.info("");
            } else if check.check_id.starts_with("_service_maintenance:") {
                ctx.info("Service:");
                ctx.info(format!("  ID:     {}", check.service_id));
                ctx.info(format!("  Reason: {}", check.notes));
                ctx.info("");
            }
        }
        return 0;
    }
    let target = (!service.is_empty()).then_some(service.as_str());
    let verb = if enable { "enabl" } else { "disabl" };
    let kind = if target.is_some() { "service" } else { "node" };
    match agent.maintenance(target, enable, &reason).await {
        Ok(()) => {
            let state = if enable { "enabled" } else { "disabled" };
            match target {
                None => ctx.info(format!("Node maintenance is now {state}")),
                // Go's %q.
                Some(id) => ctx.info(format!("Service maintenance is now {state} for {id:?}")),
            }
            0
        }
        Err(err) => {
            ctx.error(&format!("Error {verb}ing {kind} maintenance: {err}"));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fake, ok, run_at, status};

    #[tokio::test]
    async fn list_enable_disable_and_flag_rules() {
        let fake = fake(|req| match (req.method.as_str(), req.path()) {
            ("GET", "/v1/agent/self") => ok(r#"{"Config":{"NodeName":"n1"}}"#),
            ("GET", "/v1/agent/checks") => ok(
                r#"{"_node_maintenance":{"CheckID":"_node_maintenance","Notes":"patching"},
                    "_service_maintenance:web":{"CheckID":"_service_maintenance:web","ServiceID":"web","Notes":"deploy"},
                    "other":{"CheckID":"other"}}"#,
            ),
            ("PUT", "/v1/agent/service/maintenance/nope") => {
                status(404, "No service registered with ID \"nope\"")
            }
            ("PUT", _) => ok(""),
            _ => status(404, ""),
        })
        .await;
        let a = fake.addr.as_str();
        let r = run_at(a, "maint", &[], b"").await;
        assert_eq!(r.code, 0);
        assert_eq!(
            r.out,
            "Node:\n  Name:   n1\n  Reason: patching\n\nService:\n  ID:     web\n  Reason: deploy\n\n"
        );
        let r = run_at(a, "maint", &["-enable", "-reason", "kernel upgrade"], b"").await;
        assert_eq!(
            (r.code, r.out.as_str()),
            (0, "Node maintenance is now enabled\n")
        );
        let last = fake.requests().last().cloned().unwrap();
        assert_eq!(
            last.target,
            "/v1/agent/maintenance?enable=true&reason=kernel+upgrade"
        );
        let r = run_at(a, "maint", &["-disable", "-service=web"], b"").await;
        assert_eq!(
            (r.code, r.out.as_str()),
            (0, "Service maintenance is now disabled for \"web\"\n")
        );
        let r = run_at(a, "maint", &["-enable", "-service=nope"], b"").await;
        assert_eq!(r.code, 1);
        assert!(
            r.err
                .starts_with("Error enabling service maintenance: Unexpected response code: 404"),
            "{}",
            r.err
        );
        for (args, msg) in [
            (
                &["-enable", "-disable"][..],
                "Only one of -enable or -disable may be provided",
            ),
            (
                &["-reason=x"][..],
                "Reason may only be provided with -enable",
            ),
            (
                &["-service=web"][..],
                "Service requires either -enable or -disable",
            ),
        ] {
            let r = run_at(a, "maint", args, b"").await;
            assert_eq!((r.code, r.err.trim_end()), (1, msg));
        }
    }
}
