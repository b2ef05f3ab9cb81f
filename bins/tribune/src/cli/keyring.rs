//! `keyring`: consul's gossip key management, over `/v1/operator/keyring`.
//!
//! Output follows `command/keyring/keyring.go`: an `==> ` progress line, then per pool
//! a blank line, `dc1 (LAN):` or `WAN:`, the members' messages (`  ===> node: msg`)
//! and the keys with `[holders/members]`. Consul walks Go maps, so its order is
//! random; ours is sorted.

use tribune_client::{KeyringOptions, KeyringResponse};
use tribune_types::goflag::FlagSet;

use super::http::{client, client_flags};
use super::{help_text, number_flag, parse, Ctx};

const HELP: &str = "Usage: tribune keyring [options]

  Manages encryption keys used for gossip messages. Gossip encryption is
  optional. When enabled, this command may be used to examine active encryption
  keys in the cluster, add new keys, and remove old ones. When combined, this
  functionality provides the ability to perform key rotation cluster-wide,
  without disrupting the cluster.

  All operations performed by this command affect both the LAN and WAN
  keyrings in lock-step.

  All variations of the keyring command return 0 if all nodes reply and there
  are no errors. If any node fails to reply or reports failure, the exit code
  will be 1.";

/// The one action a command line asks for.
enum Action {
    List { primary: bool },
    Install(String),
    Use(String),
    Remove(String),
}

/// One pool as Consul prints it (`formatResponse`), without the trailing newline.
fn format_pool(pool: &KeyringResponse, primary: bool) -> String {
    let mut out = String::from("\n");
    out.push_str(if pool.wan { "WAN" } else { &pool.datacenter });
    if !pool.wan {
        out.push_str(" (LAN)");
    }
    if !pool.segment.is_empty() {
        out.push_str(&format!(" [{}]", pool.segment));
    }
    out.push_str(":\n");
    for (from, msg) in &pool.messages {
        out.push_str(&format!("  ===> {from}: {msg}\n"));
    }
    let keys = if primary {
        &pool.primary_keys
    } else {
        &pool.keys
    };
    for (key, n) in keys {
        out.push_str(&format!("  {key} [{n}/{}]\n", pool.num_nodes));
    }
    out.trim_end_matches('\n').to_owned()
}

/// `keyring -list | -list-primary | -install K | -use K | -remove K`.
pub(crate) async fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = client_flags(
        FlagSet::new("keyring")
            .value(
                "install",
                "Install a new encryption key. This will broadcast the new key to all members in the cluster.",
            )
            .value(
                "use",
                "Change the primary encryption key, which is used to encrypt messages. The key must already be installed before this operation can succeed.",
            )
            .value(
                "remove",
                "Remove the given key from the cluster. This operation may only be performed on keys which are not currently the primary key.",
            )
            .bool("list", "List all keys currently in use within the cluster.")
            .bool(
                "list-primary",
                "List all primary keys currently in use within the cluster.",
            )
            .value(
                "relay-factor",
                "Setting this to a non-zero value will cause nodes to relay their response to the operation through this many randomly-chosen other nodes in the cluster. The maximum allowed value is 5.",
            )
            .bool(
                "local-only",
                "Setting this to true will force the keyring query to only hit local servers (no WAN traffic). This flag can only be set for list queries.",
            ),
    );
    let p = match parse(&flags, args, HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let value = |name: &str| p.get(name).filter(|v| !v.is_empty()).map(str::to_owned);
    let mut actions = Vec::new();
    if p.is_set("list") {
        actions.push(Action::List { primary: false });
    }
    if p.is_set("list-primary") {
        actions.push(Action::List { primary: true });
    }
    actions.extend(value("install").map(Action::Install));
    actions.extend(value("use").map(Action::Use));
    actions.extend(value("remove").map(Action::Remove));
    let action = match actions.len() {
        0 => {
            ctx.error(&help_text(HELP, &flags));
            return 1;
        }
        1 => actions.remove(0),
        _ => {
            ctx.error("Only a single action is allowed");
            return 1;
        }
    };
    let relay: i64 = match number_flag(&p, "relay-factor") {
        Ok(n) => n.unwrap_or(0),
        Err(message) => {
            ctx.error(&message);
            ctx.error(&help_text(HELP, &flags));
            return 1;
        }
    };
    let Some(relay_factor) = u8::try_from(relay).ok().filter(|n| *n <= 5) else {
        ctx.error("Error parsing relay factor: Relay factor must be in range: [0, 5]");
        return 1;
    };
    let local_only = p.is_set("local-only");
    // Consul validates `-local-only` against `-list` only, so `-list-primary
    // -local-only` is refused too.
    if local_only && !p.is_set("list") {
        ctx.error("Error validating local-only: local-only can only be set for list requests");
        return 1;
    }
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let opts = KeyringOptions {
        relay_factor,
        local_only,
        token: None,
    };
    let operator = client.operator();
    let result = match &action {
        Action::List { primary } => {
            ctx.info(if *primary {
                "==> Gathering installed primary encryption keys..."
            } else {
                "==> Gathering installed encryption keys..."
            });
            match operator.keyring_list(&opts).await {
                Ok(pools) => {
                    for pool in &pools {
                        ctx.info(format_pool(pool, *primary));
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        Action::Install(key) => {
            ctx.info("==> Installing new gossip encryption key...");
            operator.keyring_install(key, &opts).await
        }
        Action::Use(key) => {
            ctx.info("==> Changing primary gossip encryption key...");
            operator.keyring_use(key, &opts).await
        }
        Action::Remove(key) => {
            ctx.info("==> Removing gossip encryption key...");
            operator.keyring_remove(key, &opts).await
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            ctx.error(&format!("error: {e}"));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fake, ok, run_at, status};

    const LIST: &str = r#"[
      {"WAN":true,"Datacenter":"dc1","Segment":"","Messages":{},
       "Keys":{"K1=":1},"PrimaryKeys":{"K1=":1},"NumNodes":1},
      {"WAN":false,"Datacenter":"dc1","Segment":"","Messages":{"c2":"holds a key unknown"},
       "Keys":{"K1=":3,"K2=":2},"PrimaryKeys":{"K1=":3},"NumNodes":3}
    ]"#;

    #[tokio::test]
    async fn list_install_use_remove_and_flag_checks() {
        let fake = fake(|req| match (req.method.as_str(), req.path()) {
            ("GET", "/v1/operator/keyring") => ok(LIST),
            ("DELETE", "/v1/operator/keyring") => status(
                500,
                "1 error occurred:\n\t* dc1 (LAN) error: 1/3 nodes reported failure\n\n",
            ),
            (_, "/v1/operator/keyring") => ok(""),
            _ => status(404, ""),
        })
        .await;
        let a = fake.addr.as_str();
        let r = run_at(a, "keyring", &["-list"], b"").await;
        assert_eq!(r.code, 0, "{}", r.err);
        assert_eq!(
            r.out,
            "==> Gathering installed encryption keys...\n\nWAN:\n  K1= [1/1]\n\ndc1 (LAN):\n  ===> c2: holds a key unknown\n  K1= [3/3]\n  K2= [2/3]\n"
        );
        let r = run_at(a, "keyring", &["-list-primary", "-relay-factor=2"], b"").await;
        assert_eq!(
            r.out,
            "==> Gathering installed primary encryption keys...\n\nWAN:\n  K1= [1/1]\n\ndc1 (LAN):\n  ===> c2: holds a key unknown\n  K1= [3/3]\n"
        );
        assert_eq!(fake.requests().last().unwrap().query(), "relay-factor=2");

        let r = run_at(a, "keyring", &["-install", "K2="], b"").await;
        assert_eq!(
            (r.code, r.out.as_str()),
            (0, "==> Installing new gossip encryption key...\n")
        );
        let req = fake.requests().last().cloned().unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(String::from_utf8_lossy(&req.body), r#"{"Key":"K2="}"#);
        let r = run_at(a, "keyring", &["-use", "K2="], b"").await;
        assert_eq!(r.code, 0);
        assert_eq!(fake.requests().last().unwrap().method, "PUT");
        let r = run_at(a, "keyring", &["-remove", "K1="], b"").await;
        assert_eq!(r.code, 1);
        assert_eq!(r.out, "==> Removing gossip encryption key...\n");
        assert_eq!(
            r.err,
            "error: Unexpected response code: 500 (1 error occurred:\n\t* dc1 (LAN) error: 1/3 nodes reported failure)\n"
        );

        let r = run_at(a, "keyring", &["-list", "-install", "K="], b"").await;
        assert_eq!(
            (r.code, r.err.as_str()),
            (1, "Only a single action is allowed\n")
        );
        let r = run_at(a, "keyring", &[], b"").await;
        assert!(r.err.starts_with("Usage: tribune keyring"), "{}", r.err);
        let r = run_at(a, "keyring", &["-list", "-relay-factor=9"], b"").await;
        assert_eq!(
            r.err,
            "Error parsing relay factor: Relay factor must be in range: [0, 5]\n"
        );
        let r = run_at(a, "keyring", &["-use", "K=", "-local-only"], b"").await;
        assert_eq!(
            (r.code, r.err.as_str()),
            (
                1,
                "Error validating local-only: local-only can only be set for list requests\n"
            )
        );
    }
}
