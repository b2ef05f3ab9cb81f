//! `connect ca get-config|set-config`: the Connect CA's configuration, printed and
//! read as Consul's CLI does (`get-config` prints the JSON indented with tabs;
//! `set-config -config-file F` sends the file's `Provider` and `Config`).

use tribune_client::{CaConfig, QueryOptions};
use tribune_types::goflag::FlagSet;

use super::http::{client_flags, parse_client, server_flags};
use super::{group, Ctx};

const SUBCOMMANDS: &[(&str, &str)] = &[(
    "ca",
    "Interact with the Consul Connect Certificate Authority (CA)",
)];

const HELP: &str = r#"Usage: tribune connect <subcommand> [options] [args]

  This command has subcommands for interacting with Consul Connect.

  Here are some simple examples, and more detailed examples are available
  in the subcommands or the documentation.

  Get the CA configuration:

      $ tribune connect ca get-config"#;

const CA_SUBCOMMANDS: &[(&str, &str)] = &[
    (
        "get-config",
        "Display the current Connect Certificate Authority (CA) configuration",
    ),
    ("set-config", "Modify the current Connect CA configuration"),
];

const CA_HELP: &str = r#"Usage: tribune connect ca <subcommand> [options] [args]

  This command has subcommands for interacting with Consul Connect's
  Certificate Authority (CA).

  Get the configuration:

      $ tribune connect ca get-config

  Update the configuration:

      $ tribune connect ca set-config -config-file ca.json"#;

/// `connect ...`
pub(crate) async fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    let rest = match group(args, HELP, SUBCOMMANDS, ctx) {
        Ok((_, rest)) => rest,
        Err(code) => return code,
    };
    match group(rest, CA_HELP, CA_SUBCOMMANDS, ctx) {
        Ok(("get-config", rest)) => get_config(rest, ctx).await,
        Ok((_, rest)) => set_config(rest, ctx).await,
        Err(code) => code,
    }
}

const GET_HELP: &str = "Usage: tribune connect ca get-config [options]

  Displays the current Connect Certificate Authority (CA) configuration.";

async fn get_config(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = server_flags(client_flags(FlagSet::new("connect ca get-config")));
    let (p, client) = match parse_client(&flags, args, GET_HELP, ctx) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let opts = QueryOptions {
        stale: p.is_set("stale"),
        ..Default::default()
    };
    match client.connect_ca().get_config(&opts).await {
        Ok((config, _)) => {
            ctx.info(super::format::indented(&config, b"\t"));
            0
        }
        Err(err) => {
            ctx.error(&format!("Error querying CA configuration: {err}"));
            1
        }
    }
}

const SET_HELP: &str = "Usage: tribune connect ca set-config [options]

  Modifies the current Connect Certificate Authority (CA) configuration.";

async fn set_config(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = server_flags(client_flags(
        FlagSet::new("connect ca set-config")
            .value("config-file", "The path to the config file to use.")
            .bool(
                "force-without-cross-signing",
                "Indicates that the CA reconfiguration should go ahead even if the current CA is unable to cross sign certificates.",
            ),
    ));
    let (p, client) = match parse_client(&flags, args, SET_HELP, ctx) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(path) = p.get("config-file").filter(|f| !f.is_empty()) else {
        ctx.error("The -config-file flag is required");
        return 1;
    };
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) => {
            ctx.error(&format!("Error reading config file: {e}"));
            return 1;
        }
    };
    let mut config: CaConfig = match serde_json::from_slice(&text) {
        Ok(c) => c,
        Err(e) => {
            ctx.error(&format!("Error parsing config file: {e}"));
            return 1;
        }
    };
    config.force_without_cross_signing = p.is_set("force-without-cross-signing");
    match client.connect_ca().set_config(&config).await {
        Ok(()) => {
            ctx.info("Configuration updated!");
            0
        }
        Err(err) => {
            ctx.error(&format!("Error setting CA configuration: {err}"));
            1
        }
    }
}
