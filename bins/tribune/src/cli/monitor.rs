//! `monitor [-log-level=LEVEL] [-log-json]`: streams the agent's log lines until
//! interrupted (exit 0) or until the agent ends the stream (Consul's "Remote side
//! ended the monitor!", exit 1).

use tribune_types::goflag::FlagSet;

use super::http::{client_flags, parse_client};
use super::lock::{shutdown, signals};
use super::Ctx;

const HELP: &str = "Usage: tribune monitor [options]

  Shows recent log messages of a Consul agent, and attaches to the agent,
  outputting log messages as they occur in real time. The monitor lets you
  listen for log levels that may be filtered out of the Consul agent. For
  example your agent may only be logging at INFO level, but with the monitor
  you can see the DEBUG level logs.";

/// `monitor`
pub(crate) async fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = client_flags(
        FlagSet::new("monitor")
            .value("log-level", "Log level of the agent.")
            .bool("log-json", "Output logs in JSON format."),
    );
    let (p, client) = match parse_client(&flags, args, HELP, ctx) {
        Ok(pc) => pc,
        Err(code) => return code,
    };
    let level = p
        .get("log-level")
        .filter(|l| !l.is_empty())
        .unwrap_or("INFO")
        .to_ascii_lowercase();
    let mut monitor = match client.monitor(&level, p.is_set("log-json")).await {
        Ok(m) => m,
        Err(err) => {
            ctx.error(&format!("Error starting monitor: {err}"));
            return 1;
        }
    };
    let (listener, mut signals) = match signals(ctx) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let code = tokio::select! {
        () = shutdown(&mut signals) => 0,
        () = async {
            // A transport error ends the stream like the agent going away does.
            while let Ok(Some(line)) = monitor.next_line().await {
                ctx.info(line);
            }
        } => {
            ctx.info("");
            ctx.info("Remote side ended the monitor! This usually means that the\nremote side has exited or crashed.");
            1
        }
    };
    listener.abort();
    code
}
