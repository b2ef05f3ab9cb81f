//! `intention create|check|delete|get|list|match`: Consul's `consul intention`
//! commands over `/v1/connect/intentions`, with Consul's output and exit codes
//! (`check` prints `Allowed` and exits 0, or `Denied` and exits 1; `list` exits 2
//! when there are none).

use tribune_client::{Client, Intention, QueryOptions};
use tribune_types::goflag::FlagSet;
use tribune_types::model::intention_target;
use tribune_types::utc::UtcDateTime;

use super::format::columnize;
use super::http::{client_flags, parse_client, server_flags};
use super::{group, map_flag, Ctx};

const SUBCOMMANDS: &[(&str, &str)] = &[
    (
        "check",
        "Check whether a connection between two services is allowed.",
    ),
    ("create", "Create intentions for service connections."),
    ("delete", "Delete an intention."),
    ("get", "Show information about an intention."),
    ("list", "List connect intentions"),
    (
        "match",
        "Show intentions that match a source or destination.",
    ),
];

const HELP: &str = r#"Usage: tribune intention <subcommand> [options] [args]

  This command has subcommands for interacting with intentions. Intentions
  are permissions describing which services are allowed to communicate via
  Connect.

  Create an intention to allow "web" to talk to "db":

      $ tribune intention create web db

  Test whether a "web" is allowed to connect to "db":

      $ tribune intention check web db

  Find all intentions for communicating to the "db" service:

      $ tribune intention match db

  For more examples, ask for subcommand help or view the documentation."#;

/// `intention ...`
pub(crate) async fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    match group(args, HELP, SUBCOMMANDS, ctx) {
        Ok(("check", rest)) => check(rest, ctx).await,
        Ok(("create", rest)) => create(rest, ctx).await,
        Ok(("delete", rest)) => delete(rest, ctx).await,
        Ok(("get", rest)) => get(rest, ctx).await,
        Ok(("list", rest)) => list(rest, ctx).await,
        Ok((_, rest)) => matching(rest, ctx).await,
        Err(code) => code,
    }
}

fn flags(name: &str) -> FlagSet {
    server_flags(client_flags(FlagSet::new(name)))
}

const CHECK_HELP: &str = "Usage: tribune intention check [options] SRC DST

  Check whether a connection between SRC and DST would be allowed by
  Connect given the current Consul configuration.

      $ tribune intention check web db";

async fn check(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = flags("intention check");
    let (p, client) = match parse_client(&flags, args, CHECK_HELP, ctx) {
        Ok(x) => x,
        // Help is 0; a bad flag is 2, as Consul's check exits.
        Err(code) => return if code == 0 { 0 } else { 2 },
    };
    let [src, dst] = p.args.as_slice() else {
        ctx.error("Error: command requires exactly two arguments: src and dst");
        return 2;
    };
    match client
        .intentions()
        .check(src, dst, &QueryOptions::default())
        .await
    {
        Ok(true) => {
            ctx.info("Allowed");
            0
        }
        Ok(false) => {
            ctx.info("Denied");
            1
        }
        Err(err) => {
            ctx.error(&format!("Error checking the connection: {err}"));
            2
        }
    }
}

const CREATE_HELP: &str = r#"Usage: tribune intention create [options] SRC DST
Usage: tribune intention create [options] -file FILE...

  Create one or more intentions. The data can be specified as a single
  source and destination pair or via a set of files when the "-file" flag
  is specified.

      $ tribune intention create web db

  An "allow" intention is created by default (allowlist). To create a
  "deny" intention, the "-deny" flag should be specified.

  If a conflicting intention is found, creation will fail. To replace any
  conflicting intentions, specify the "-replace" flag."#;

async fn create(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = flags("intention create")
        .bool("allow", "Create an intention that allows when matched.")
        .bool("deny", "Create an intention that denies when matched.")
        .bool("file", "Read intention data from one or more files.")
        .bool("replace", "Replace matching intentions.")
        .multi(
            "meta",
            "Metadata to set on the intention, formatted as key=value. This flag may be specified multiple times to set multiple meta fields.",
        );
    let (p, client) = match parse_client(&flags, args, CREATE_HELP, ctx) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let deny = p.is_set("deny");
    if deny && p.is_set("allow") {
        ctx.error("Only one of -allow or -deny may be specified.");
        return 1;
    }
    let meta = match map_flag(&p, "meta") {
        Ok(m) => m.into_iter().collect(),
        Err(e) => {
            ctx.error(&e);
            return 1;
        }
    };
    let ixns = if p.is_set("file") {
        let mut ixns = Vec::new();
        for path in &p.args {
            let text = if path == "-" {
                match ctx.read_stdin() {
                    Ok(data) => String::from_utf8_lossy(&data).into_owned(),
                    Err(e) => {
                        ctx.error(&format!("Error: reading stdin: {e}"));
                        return 1;
                    }
                }
            } else {
                match std::fs::read_to_string(path) {
                    Ok(t) => t,
                    Err(e) => {
                        ctx.error(&format!("Error: open {path}: {e}"));
                        return 1;
                    }
                }
            };
            match serde_json::from_str::<Intention>(&text) {
                Ok(ixn) if ixn.permissions.as_ref().is_some_and(|p| !p.is_null()) => {
                    ctx.error(&format!(
                        "Error: cannot create L7 intention from file {path:?} using this CLI; use 'consul config write' instead"
                    ));
                    return 1;
                }
                Ok(ixn) => ixns.push(ixn),
                Err(e) => {
                    ctx.error(&format!("Error: {e}"));
                    return 1;
                }
            }
        }
        ixns
    } else {
        let [src, dst] = p.args.as_slice() else {
            ctx.error("Error: Must specify two arguments: source and destination");
            return 1;
        };
        let (src, dst) = match (intention_target(src), intention_target(dst)) {
            (Ok(s), Ok(d)) => (s.to_owned(), d.to_owned()),
            (Err(e), _) => {
                ctx.error(&format!("Error: Invalid intention source: {e}"));
                return 1;
            }
            (_, Err(e)) => {
                ctx.error(&format!("Error: Invalid intention destination: {e}"));
                return 1;
            }
        };
        vec![Intention {
            source_name: src,
            destination_name: dst,
            source_type: "consul".into(),
            action: if deny { "deny" } else { "allow" }.into(),
            meta,
            ..Default::default()
        }]
    };
    for ixn in ixns {
        let result = if p.is_set("replace") {
            replace(&client, &ixn).await
        } else {
            client.intentions().create(&ixn).await.map(|_| ())
        };
        if let Err(err) = result {
            ctx.error(&format!(
                "Error creating intention {:?}: {err}",
                ixn.summary()
            ));
            return 1;
        }
        ctx.info(format!("Created: {}", ixn.summary()));
    }
    0
}

/// `create -replace`, as Consul does it: an intention already there for the pair
/// is updated in place (keeping its ID), otherwise one is created.
async fn replace(client: &Client, ixn: &Intention) -> Result<(), tribune_client::Error> {
    let existing = client
        .intentions()
        .get_exact(
            &ixn.source_name,
            &ixn.destination_name,
            &QueryOptions::default(),
        )
        .await?
        .0;
    match existing {
        Some(old) if !old.id.is_empty() => client.intentions().update(&old.id, ixn).await,
        // Made by name (no ID): replaced by name.
        Some(_) => client.intentions().upsert(ixn).await,
        None => client.intentions().create(ixn).await.map(|_| ()),
    }
}

const DELETE_HELP: &str = "Usage: tribune intention delete [options] SRC DST
Usage: tribune intention delete [options] ID

  Delete an intention. This cannot be reversed. The intention can be looked
  up via an exact source/destination match or via the unique intention ID.

      $ tribune intention delete web db";

async fn delete(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = flags("intention delete");
    let (p, client) = match parse_client(&flags, args, DELETE_HELP, ctx) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let result = match p.args.as_slice() {
        [id] => client.intentions().delete(id).await,
        [src, dst] => client.intentions().delete_exact(src, dst).await,
        _ => {
            ctx.error("command requires exactly 1 or 2 arguments");
            return 1;
        }
    };
    match result {
        Ok(()) => {
            ctx.info("Intention deleted.");
            0
        }
        Err(err) => {
            ctx.error(&format!("Error deleting the intention: {err}"));
            1
        }
    }
}

const GET_HELP: &str = "Usage: tribune intention get [options] SRC DST
Usage: tribune intention get [options] ID

  Read and show the details about an intention. The intention can be looked
  up via an exact source/destination match or via the unique intention ID.

      $ tribune intention get web db";

async fn get(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = flags("intention get");
    let (p, client) = match parse_client(&flags, args, GET_HELP, ctx) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let opts = QueryOptions::default();
    let found = match p.args.as_slice() {
        [id] => client
            .intentions()
            .get(id, &opts)
            .await
            .map(|(i, _)| i.ok_or(format!("Intention not found with ID {id:?}"))),
        [src, dst] => client
            .intentions()
            .get_exact(src, dst, &opts)
            .await
            .map(|(i, _)| {
                i.ok_or(format!(
                    "Intention not found with source {src:?} and destination {dst:?}"
                ))
            }),
        _ => {
            ctx.error("command requires exactly 1 or 2 arguments");
            return 1;
        }
    };
    let ixn = match found {
        Ok(Ok(ixn)) => ixn,
        Ok(Err(message)) => {
            ctx.error(&message);
            return 1;
        }
        Err(err) => {
            ctx.error(&format!("Error reading the intention: {err}"));
            return 1;
        }
    };
    let mut rows = vec![
        vec!["Source:".to_owned(), ixn.source_name.clone()],
        vec!["Destination:".to_owned(), ixn.destination_name.clone()],
    ];
    if !ixn.action.is_empty() {
        rows.push(vec!["Action:".into(), ixn.action.clone()]);
    }
    if !ixn.id.is_empty() {
        rows.push(vec!["ID:".into(), ixn.id.clone()]);
    }
    if !ixn.description.is_empty() {
        rows.push(vec!["Description:".into(), ixn.description.clone()]);
    }
    for (k, v) in &ixn.meta {
        rows.push(vec![format!("Meta[{k}]:"), v.clone()]);
    }
    rows.push(vec!["Created At:".into(), rfc850(&ixn.created_at)]);
    ctx.info(columnize(&rows));
    if let Some(perms) = ixn.permissions.as_ref().filter(|p| !p.is_null()) {
        let text = serde_json::to_string_pretty(perms).unwrap_or_default();
        ctx.info(format!("Permissions:\n{text}"));
    }
    0
}

/// Go's `time.RFC850` of an RFC 3339 UTC time: `Monday, 02-Jan-06 15:04:05 UTC`.
fn rfc850(t: &str) -> String {
    const DAYS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // A time the server did not give in RFC 3339 is shown as it came.
    let Some(d) = UtcDateTime::parse_rfc3339(t) else {
        return t.to_owned();
    };
    let month = MONTHS[usize::try_from(d.month - 1).unwrap_or(0)];
    format!(
        "{}, {:02}-{month}-{:02} {:02}:{:02}:{:02} UTC",
        DAYS[d.weekday()],
        d.day,
        d.year.rem_euclid(100),
        d.hour,
        d.minute,
        d.second
    )
}

const LIST_HELP: &str = "Usage: tribune intention list

  List all consul connect intentions.";

async fn list(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = flags("intention list");
    let (_, client) = match parse_client(&flags, args, LIST_HELP, ctx) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let ixns = match client.intentions().list(&QueryOptions::default()).await {
        Ok((ixns, _)) => ixns,
        Err(err) => {
            ctx.error(&format!("Failed to retrieve the intentions list: {err}"));
            return 1;
        }
    };
    if ixns.is_empty() {
        ctx.error("There are no intentions.");
        return 2;
    }
    let mut rows = vec![vec![
        "ID".to_owned(),
        "Source".into(),
        "Action".into(),
        "Destination".into(),
        "Precedence".into(),
    ]];
    for i in &ixns {
        rows.push(vec![
            i.id.clone(),
            i.source_name.clone(),
            i.action.clone(),
            i.destination_name.clone(),
            i.precedence.to_string(),
        ]);
    }
    ctx.info(columnize(&rows));
    0
}

const MATCH_HELP: &str = "Usage: tribune intention match [options] SRC|DST

  Show the list of intentions that would be enforced for a given source
  or destination. The intentions are listed in the order they would be
  evaluated.

      $ tribune intention match db
      $ tribune intention match -source web";

async fn matching(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = flags("intention match")
        .bool("source", "Match intentions with the given source.")
        .bool(
            "destination",
            "Match intentions with the given destination.",
        );
    let (p, client) = match parse_client(&flags, args, MATCH_HELP, ctx) {
        Ok(x) => x,
        Err(code) => return if code == 0 { 0 } else { 2 },
    };
    let [name] = p.args.as_slice() else {
        ctx.error("Error: command requires exactly one argument: src or dst");
        return 1;
    };
    let by_source = p.is_set("source");
    if by_source && p.is_set("destination") {
        ctx.error("Error: only one of -source or -destination may be specified");
        return 1;
    }
    match client
        .intentions()
        .matching(name, by_source, &QueryOptions::default())
        .await
    {
        Ok((ixns, _)) => {
            for i in ixns {
                ctx.info(i.summary());
            }
            0
        }
        Err(err) => {
            ctx.error(&format!("Error matching the connection: {err}"));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc850_as_go_prints_it() {
        assert_eq!(
            rfc850("0001-01-01T00:00:00Z"),
            "Monday, 01-Jan-01 00:00:00 UTC"
        );
        assert_eq!(
            rfc850("2026-12-01T11:40:05Z"),
            "Tuesday, 01-Dec-26 11:40:05 UTC"
        );
        assert_eq!(
            rfc850("2000-02-29T23:59:59Z"),
            "Tuesday, 29-Feb-00 23:59:59 UTC"
        );
    }
}
