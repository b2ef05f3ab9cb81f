//! `operator raft list-peers|remove-peer|transfer-leader` and `operator autopilot
//! get-config|set-config|state`: cluster-level tools over `/v1/operator`.
//!
//! Output follows Consul's `command/operator/...`: `list-peers` is Consul 1.20's
//! table (the commit index and how far each server trails the leader come from the
//! Raft configuration itself), `get-config` prints `Key = value` lines, and `state`
//! is the "pretty" layout (servers sorted by ID, Go's map order being random).
//!
//! These commands report a bad client setup as "Error initializing client", as
//! Consul's operator commands do, rather than the "Error connecting to Consul agent"
//! of most others.

use std::fmt::Write as _;
use std::time::Duration;

use tribune_client::{AutopilotConfiguration, AutopilotServer, AutopilotState, Client};
use tribune_types::duration::{format_go_duration, parse_go_duration};
use tribune_types::goflag::{FlagSet, Parsed};

use super::format::columnize;
use super::http::{client_flags, config, query, server_flags};
use super::{flag_error, group, number_flag, parse, Ctx};

const SUBCOMMANDS: &[(&str, &str)] = &[
    (
        "autopilot",
        "Provides tools for modifying Autopilot configuration",
    ),
    ("raft", "Provides cluster-level tools for Consul operators"),
];

const HELP: &str = "Usage: tribune operator <subcommand> [options]

  Provides cluster-level tools for operators, such as interacting with the Raft
  subsystem. NOTE: Use this command with extreme caution, as improper use could
  lead to an outage and even loss of data.

  If ACLs are enabled then a token with operator privileges may be required in
  order to use this command. Requests are forwarded internally to the leader if
  required, so this can be run from any node in a cluster.

  Run tribune operator <subcommand> with no arguments for help on that
  subcommand.";

const RAFT_SUBCOMMANDS: &[(&str, &str)] = &[
    ("list-peers", "Display the current Raft peer configuration"),
    (
        "remove-peer",
        "Remove a Consul server from the Raft configuration",
    ),
    (
        "transfer-leader",
        "Transfer raft leadership to another node",
    ),
];

const RAFT_HELP: &str = "Usage: tribune operator raft <subcommand> [options]

  The Raft operator command is used to interact with the Raft subsystem. The
  command can be used to verify Raft peers or in rare cases to recover quorum by
  removing invalid peers.";

const AUTOPILOT_SUBCOMMANDS: &[(&str, &str)] = &[
    ("get-config", "Display the current Autopilot configuration"),
    ("set-config", "Modify the current Autopilot configuration"),
    ("state", "Display the current Autopilot state"),
];

const AUTOPILOT_HELP: &str = "Usage: tribune operator autopilot <subcommand> [options]

  The Autopilot operator command is used to interact with the Autopilot
  subsystem. The command can be used to view or modify the current configuration.";

/// `operator ...`
pub(crate) async fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    let (sub, rest) = match group(args, HELP, SUBCOMMANDS, ctx) {
        Ok(found) => found,
        Err(code) => return code,
    };
    if sub == "raft" {
        let (sub, rest) = match group(rest, RAFT_HELP, RAFT_SUBCOMMANDS, ctx) {
            Ok(found) => found,
            Err(code) => return code,
        };
        match sub {
            "list-peers" => list_peers(rest, ctx).await,
            "remove-peer" => remove_peer(rest, ctx).await,
            _ => transfer_leader(rest, ctx).await,
        }
    } else {
        let (sub, rest) = match group(rest, AUTOPILOT_HELP, AUTOPILOT_SUBCOMMANDS, ctx) {
            Ok(found) => found,
            Err(code) => return code,
        };
        match sub {
            "get-config" => get_config(rest, ctx).await,
            "set-config" => set_config(rest, ctx).await,
            _ => state(rest, ctx).await,
        }
    }
}

/// The client, with Consul's operator-command wording on failure.
fn operator_client(parsed: &Parsed, ctx: &mut Ctx) -> Result<Client, i32> {
    Client::new(config(parsed, ctx)).map_err(|err| {
        ctx.error(&format!("Error initializing client: {err}"));
        1
    })
}

/// What every subcommand starts with: its flags parsed and a client built (or the
/// exit code after the error has been printed).
fn setup(
    flags: &FlagSet,
    args: &[String],
    help: &str,
    ctx: &mut Ctx,
) -> Result<(Parsed, Client), i32> {
    let p = parse(flags, args, help, ctx)?;
    let client = operator_client(&p, ctx)?;
    Ok((p, client))
}

/// Go's `%q` for a string: printable characters as they are, the rest escaped.
pub(crate) fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const LIST_PEERS_HELP: &str = "Usage: tribune operator raft list-peers [options]

  Displays the current Raft peer configuration.";

/// `operator raft list-peers [-stale]`
async fn list_peers(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = server_flags(client_flags(FlagSet::new("operator raft list-peers")));
    let (p, client) = match setup(&flags, args, LIST_PEERS_HELP, ctx) {
        Ok(v) => v,
        Err(code) => return code,
    };
    match client.operator().raft_get_configuration(&query(&p)).await {
        Ok(config) => {
            ctx.info(peers_table(&config.servers));
            0
        }
        Err(err) => {
            ctx.error(&format!(
                "Error getting peers: Failed to retrieve raft configuration: {err}"
            ));
            1
        }
    }
}

/// Consul 1.20's `list-peers` table: `Commit Index` is each server's last log
/// index, `Trails Leader By` how far that is behind the leader's (`-` for the
/// leader itself).
fn peers_table(servers: &[tribune_client::RaftServer]) -> String {
    let leader_index = servers
        .iter()
        .find(|s| s.leader)
        .map_or(0, |s| s.last_index);
    let mut rows = vec![[
        "Node",
        "ID",
        "Address",
        "State",
        "Voter",
        "RaftProtocol",
        "Commit Index",
        "Trails Leader By",
    ]
    .map(str::to_owned)
    .to_vec()];
    for s in servers {
        let protocol = if s.protocol_version.is_empty() {
            "<=1".to_owned()
        } else {
            s.protocol_version.clone()
        };
        // Go subtracts unsigned integers and would wrap if a follower reported a
        // higher index than the leader (it can, briefly); saturate instead.
        let trails = leader_index.saturating_sub(s.last_index);
        let trails = if s.leader {
            "-".to_owned()
        } else if trails == 1 {
            "1 commit".to_owned()
        } else {
            format!("{trails} commits")
        };
        rows.push(vec![
            s.node.clone(),
            s.id.clone(),
            s.address.clone(),
            if s.leader { "leader" } else { "follower" }.to_owned(),
            s.voter.to_string(),
            protocol,
            s.last_index.to_string(),
            trails,
        ]);
    }
    columnize(&rows)
}

const REMOVE_PEER_HELP: &str = r#"Usage: tribune operator raft remove-peer [options]

  Remove the server with given -id or -address from the Raft configuration.

  There are rare cases where a peer may be left behind in the Raft quorum even
  though the server is no longer present and known to the cluster. This command
  can be used to remove the failed server so that it no longer affects the Raft
  quorum. If the server still shows in the output of the "tribune members"
  command, it is preferable to clean up by simply running "tribune force-leave"
  instead of this command."#;

/// `operator raft remove-peer -id=ID | -address=IP:PORT`
async fn remove_peer(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = server_flags(client_flags(
        FlagSet::new("operator raft remove-peer")
            .value(
                "address",
                "The address to remove from the Raft configuration.",
            )
            .value("id", "The ID to remove from the Raft configuration."),
    ));
    let (p, client) = match setup(&flags, args, REMOVE_PEER_HELP, ctx) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let address = p.get("address").unwrap_or("");
    let id = p.get("id").unwrap_or("");
    let operator = client.operator();
    let result = match (address.is_empty(), id.is_empty()) {
        (true, true) => {
            ctx.error("Error removing peer: an address or id is required for the peer to remove");
            return 1;
        }
        (false, false) => {
            ctx.error("Error removing peer: cannot give both an address and id");
            return 1;
        }
        (false, true) => operator.raft_remove_peer_by_address(address).await,
        (true, false) => operator.raft_remove_peer_by_id(id).await,
    };
    if let Err(err) = result {
        ctx.error(&format!("Error removing peer: {err}"));
        return 1;
    }
    if address.is_empty() {
        ctx.info(format!("Removed peer with id {}", go_quote(id)));
    } else {
        ctx.info(format!("Removed peer with address {}", go_quote(address)));
    }
    0
}

const TRANSFER_LEADER_HELP: &str = "Usage: tribune operator raft transfer-leader [options]

  Transfer raft leadership to another node: the one with the given -id, or one
  the leader picks.";

/// `operator raft transfer-leader [-id=ID]`
async fn transfer_leader(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = server_flags(client_flags(
        FlagSet::new("operator raft transfer-leader")
            .value("id", "The ID of the node to transfer leadership to."),
    ));
    let (p, client) = match setup(&flags, args, TRANSFER_LEADER_HELP, ctx) {
        Ok(v) => v,
        Err(code) => return code,
    };
    match client
        .operator()
        .raft_leader_transfer(p.get("id"), &query(&p))
        .await
    {
        Ok(true) => {
            ctx.info("Success");
            0
        }
        // Consul's wording, missing colon and all.
        Ok(false) => {
            ctx.error("Error transfering leadership: Failed to transfer leadership");
            1
        }
        Err(err) => {
            ctx.error(&format!(
                "Error transfering leadership: Failed to transfer leadership {err}"
            ));
            1
        }
    }
}

const GET_CONFIG_HELP: &str = "Usage: tribune operator autopilot get-config [options]

  Displays the current Autopilot configuration.";

/// `operator autopilot get-config [-stale]`
async fn get_config(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = server_flags(client_flags(FlagSet::new("operator autopilot get-config")));
    let (p, client) = match setup(&flags, args, GET_CONFIG_HELP, ctx) {
        Ok(v) => v,
        Err(code) => return code,
    };
    match client
        .operator()
        .autopilot_get_configuration(&query(&p))
        .await
    {
        Ok(config) => {
            ctx.info(config_lines(&config));
            0
        }
        Err(err) => {
            ctx.error(&format!("Error querying Autopilot configuration: {err}"));
            1
        }
    }
}

/// `get-config`'s `Key = value` lines (strings quoted as Go's `%q` does).
fn config_lines(c: &AutopilotConfiguration) -> String {
    [
        format!("CleanupDeadServers = {}", c.cleanup_dead_servers),
        format!(
            "LastContactThreshold = {}",
            format_go_duration(c.last_contact_threshold)
        ),
        format!("MaxTrailingLogs = {}", c.max_trailing_logs),
        format!("MinQuorum = {}", c.min_quorum),
        format!(
            "ServerStabilizationTime = {}",
            format_go_duration(c.server_stabilization_time)
        ),
        format!("RedundancyZoneTag = {}", go_quote(&c.redundancy_zone_tag)),
        format!("DisableUpgradeMigration = {}", c.disable_upgrade_migration),
        format!("UpgradeVersionTag = {}", go_quote(&c.upgrade_version_tag)),
    ]
    .join("\n")
}

const SET_CONFIG_HELP: &str = "Usage: tribune operator autopilot set-config [options]

  Modifies the current Autopilot configuration. Only the settings given change;
  the update is a check-and-set against the configuration just read.";

fn set_config_flags() -> FlagSet {
    let flags = FlagSet::new("operator autopilot set-config")
        .bool(
            "cleanup-dead-servers",
            "Controls whether dead servers are removed automatically when new ones are successfully added. Must be one of `true|false`.",
        )
        .value(
            "max-trailing-logs",
            "Controls the maximum number of log entries that a server can trail the leader by before being considered unhealthy.",
        )
        .value(
            "min-quorum",
            "Sets the minimum number of servers required in a cluster before autopilot is allowed to prune dead servers.",
        )
        .value(
            "last-contact-threshold",
            "Controls the maximum amount of time a server can go without contact from the leader before being considered unhealthy. Must be a duration value such as `200ms`.",
        )
        .value(
            "server-stabilization-time",
            "Controls the minimum amount of time a server must be stable in the 'healthy' state before being added to the cluster. Must be a duration value such as `10s`.",
        )
        .value(
            "redundancy-zone-tag",
            "(Enterprise-only) Controls the node_meta tag name used for separating servers into different redundancy zones.",
        )
        .bool(
            "disable-upgrade-migration",
            "(Enterprise-only) Controls whether new servers are held back from promotion until an upgrade migration can be performed. Must be one of `true|false`.",
        )
        .value(
            "upgrade-version-tag",
            "(Enterprise-only) The node_meta tag to use for version info when performing upgrade migrations. If left blank, the server version will be used.",
        );
    server_flags(client_flags(flags))
}

/// Joins the spaced-out forms Consul 1.17+ accepts (hashicorp/consul#19266) into
/// `-flag=value`: `-flag = value`, `-flag= value`, `-flag =value`, and a boolean
/// flag followed by a separate `true`/`false` (which Go's flag package would
/// otherwise take as a positional argument and stop parsing at).
fn join_spaced_values(flags: &FlagSet, args: &[String]) -> Vec<String> {
    use tribune_types::goflag::FlagKind;
    // What Go's `strconv.ParseBool` accepts.
    const BOOL_WORDS: &[&str] = &[
        "1", "t", "T", "true", "TRUE", "True", "0", "f", "F", "false", "FALSE", "False",
    ];
    // Never swallow the next flag as a value: `-redundancy-zone-tag= -min-quorum=3`
    // means an empty tag.
    let is_flag = |s: &str| {
        s.starts_with('-')
            && flags
                .kind(s.trim_start_matches('-').split('=').next().unwrap_or(""))
                .is_some()
    };
    let mut out: Vec<String> = Vec::with_capacity(args.len());
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            out.extend(args[i..].iter().cloned());
            break;
        }
        let name = arg.trim_start_matches('-');
        if !arg.starts_with('-') || name.is_empty() {
            out.push(arg.clone());
            i += 1;
            continue;
        }
        let next = args.get(i + 1).map(String::as_str).filter(|v| !is_flag(v));
        let after = args.get(i + 2).map(String::as_str).filter(|v| !is_flag(v));
        if let Some(bare) = name.strip_suffix('=') {
            // `-flag= value`
            if flags.kind(bare).is_some() {
                if let Some(value) = next {
                    out.push(format!("-{bare}={value}"));
                    i += 2;
                    continue;
                }
            }
        } else if !name.contains('=') && flags.kind(name).is_some() {
            match (next, after) {
                // `-flag = value`
                (Some("="), Some(value)) => {
                    out.push(format!("-{name}={value}"));
                    i += 3;
                    continue;
                }
                // `-flag =value`
                (Some(value), _) if value.starts_with('=') && value.len() > 1 => {
                    out.push(format!("-{name}{value}"));
                    i += 2;
                    continue;
                }
                // `-bool-flag false`
                (Some(value), _)
                    if flags.kind(name) == Some(FlagKind::Bool) && BOOL_WORDS.contains(&value) =>
                {
                    out.push(format!("-{name}={value}"));
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        out.push(arg.clone());
        i += 1;
    }
    out
}

/// A Go duration flag (`flags.DurationValue`): `Ok(None)` when absent.
fn duration_flag(parsed: &Parsed, name: &str) -> Result<Option<Duration>, String> {
    match parsed.get(name) {
        None => Ok(None),
        Some(text) => parse_go_duration(text)
            .map(Some)
            .map_err(|err| format!("invalid value {text:?} for flag -{name}: {err}")),
    }
}

/// The settings `set-config` was given, each `None` when absent.
#[derive(Debug, Default)]
struct ConfigChanges {
    cleanup_dead_servers: Option<bool>,
    max_trailing_logs: Option<u64>,
    min_quorum: Option<u64>,
    last_contact_threshold: Option<Duration>,
    server_stabilization_time: Option<Duration>,
    redundancy_zone_tag: Option<String>,
    disable_upgrade_migration: Option<bool>,
    upgrade_version_tag: Option<String>,
}

impl ConfigChanges {
    fn from_flags(p: &Parsed) -> Result<Self, String> {
        Ok(ConfigChanges {
            cleanup_dead_servers: p.flag("cleanup-dead-servers"),
            max_trailing_logs: number_flag(p, "max-trailing-logs")?,
            min_quorum: number_flag(p, "min-quorum")?,
            last_contact_threshold: duration_flag(p, "last-contact-threshold")?,
            server_stabilization_time: duration_flag(p, "server-stabilization-time")?,
            redundancy_zone_tag: p.get("redundancy-zone-tag").map(str::to_owned),
            disable_upgrade_migration: p.flag("disable-upgrade-migration"),
            upgrade_version_tag: p.get("upgrade-version-tag").map(str::to_owned),
        })
    }

    /// Overwrites what was given and keeps everything else, `ModifyIndex` included
    /// (it is the check-and-set token).
    fn apply(self, config: &mut AutopilotConfiguration) {
        fn set<T>(slot: &mut T, value: Option<T>) {
            if let Some(v) = value {
                *slot = v;
            }
        }
        set(&mut config.cleanup_dead_servers, self.cleanup_dead_servers);
        set(&mut config.max_trailing_logs, self.max_trailing_logs);
        set(&mut config.min_quorum, self.min_quorum);
        set(
            &mut config.last_contact_threshold,
            self.last_contact_threshold,
        );
        set(
            &mut config.server_stabilization_time,
            self.server_stabilization_time,
        );
        set(&mut config.redundancy_zone_tag, self.redundancy_zone_tag);
        set(
            &mut config.disable_upgrade_migration,
            self.disable_upgrade_migration,
        );
        set(&mut config.upgrade_version_tag, self.upgrade_version_tag);
    }
}

/// `operator autopilot set-config [-cleanup-dead-servers=B] [-max-trailing-logs=N] ...`
async fn set_config(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = set_config_flags();
    let args = join_spaced_values(&flags, args);
    let p = match parse(&flags, &args, SET_CONFIG_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let changes = match ConfigChanges::from_flags(&p) {
        Ok(c) => c,
        Err(message) => return flag_error(ctx, &flags, SET_CONFIG_HELP, &message),
    };
    let client = match operator_client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let operator = client.operator();
    // Consul reads without -stale here: the CAS index must be the leader's.
    let opts = tribune_client::QueryOptions::default();
    let mut config = match operator.autopilot_get_configuration(&opts).await {
        Ok(c) => c,
        Err(err) => {
            ctx.error(&format!("Error querying Autopilot configuration: {err}"));
            return 1;
        }
    };
    changes.apply(&mut config);
    match operator.autopilot_cas_configuration(&config).await {
        Ok(true) => {
            ctx.info("Configuration updated!");
            0
        }
        Ok(false) => {
            ctx.info("Configuration could not be atomically updated, please try again");
            1
        }
        Err(err) => {
            ctx.error(&format!("Error setting Autopilot configuration: {err}"));
            1
        }
    }
}

const STATE_HELP: &str = "Usage: tribune operator autopilot state [options]

  Displays the current Autopilot state: cluster health, failure tolerance, the
  leader and voters, and each server's status.";

/// `operator autopilot state [-format=pretty|json]`
async fn state(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = server_flags(client_flags(
        FlagSet::new("operator autopilot state").value("format", "Output format {pretty|json}"),
    ));
    let p = match parse(&flags, args, STATE_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let format = p.get("format").unwrap_or("pretty");
    // Consul checks the format only after the query; checking it first prints the
    // same error without a pointless request.
    if format != "pretty" && format != "json" {
        ctx.error(&format!("Unknown format: {format}"));
        return 1;
    }
    let client = match operator_client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let state = match client.operator().autopilot_state(&query(&p)).await {
        Ok(s) => s,
        Err(err) => {
            ctx.error(&format!("Error querying Autopilot state: {err}"));
            return 1;
        }
    };
    let out = if format == "json" {
        match state_json(&state) {
            Ok(text) => text,
            Err(err) => {
                ctx.error(&format!("Failed to marshal token: {err}"));
                return 1;
            }
        }
    } else {
        state_pretty(&state)
    };
    // Consul's UI.Info adds a newline to text that already ends in one: the pretty
    // form is followed by a blank line.
    ctx.info(out);
    0
}

/// Go's `json.MarshalIndent(state, "", "    ")`.
fn state_json(state: &AutopilotState) -> Result<String, serde_json::Error> {
    super::format::marshal_indent(state, b"    ")
}

/// Consul's "pretty" autopilot state (`command/operator/autopilot/state/formatter.go`).
fn state_pretty(state: &AutopilotState) -> String {
    let mut b = String::new();
    let list = |b: &mut String, indent: &str, values: &[String]| {
        for v in values {
            let _ = writeln!(b, "{indent}{v}");
        }
    };
    let _ = writeln!(b, "Healthy:                      {}", state.healthy);
    let _ = writeln!(
        b,
        "Failure Tolerance:            {}",
        state.failure_tolerance
    );
    let _ = writeln!(
        b,
        "Optimistic Failure Tolerance: {}",
        state.optimistic_failure_tolerance
    );
    let _ = writeln!(b, "Leader:                       {}", state.leader);
    b.push_str("Voters:\n");
    list(&mut b, "   ", &state.voters);
    if !state.read_replicas.is_empty() {
        b.push_str("Read Replicas:\n");
        list(&mut b, "   ", &state.read_replicas);
    }
    if !state.redundancy_zones.is_empty() {
        b.push_str("Redundancy Zones:\n");
        for (name, zone) in &state.redundancy_zones {
            let _ = writeln!(b, "   {name}:");
            let _ = writeln!(b, "      Failure Tolerance: {}", zone.failure_tolerance);
            b.push_str("      Voters:\n");
            list(&mut b, "         ", &zone.voters);
            b.push_str("      Servers:\n");
            list(&mut b, "         ", &zone.servers);
        }
    }
    if let Some(u) = &state.upgrade {
        b.push_str("Upgrade:\n");
        let _ = writeln!(b, "   Status:         {}", u.status);
        let _ = writeln!(b, "   Target Version: {}", u.target_version);
        for (title, values) in [
            ("Target Version Voters", &u.target_version_voters),
            ("Target Version Non-Voters", &u.target_version_non_voters),
            (
                "Target Version ReadReplicas",
                &u.target_version_read_replicas,
            ),
            ("Other Version Voters", &u.other_version_voters),
            ("Other Version Non-Voters", &u.other_version_non_voters),
            ("Other Version ReadReplicas", &u.other_version_read_replicas),
        ] {
            if !values.is_empty() {
                let _ = writeln!(b, "   {title}:");
                list(&mut b, "      ", values);
            }
        }
    }
    b.push_str("Servers:\n");
    for server in state.servers.values() {
        format_server(&mut b, server);
    }
    b
}

fn format_server(b: &mut String, s: &AutopilotServer) {
    let _ = writeln!(b, "   {}", s.id);
    let _ = writeln!(b, "      Name:            {}", s.name);
    let _ = writeln!(b, "      Address:         {}", s.address);
    let _ = writeln!(b, "      Version:         {}", s.version);
    let _ = writeln!(b, "      Status:          {}", s.status);
    let _ = writeln!(b, "      Node Type:       {}", s.node_type);
    let _ = writeln!(b, "      Node Status:     {}", s.node_status);
    let _ = writeln!(b, "      Healthy:         {}", s.healthy);
    let _ = writeln!(
        b,
        "      Last Contact:    {}",
        format_go_duration(s.last_contact)
    );
    let _ = writeln!(b, "      Last Term:       {}", s.last_term);
    let _ = writeln!(b, "      Last Index:      {}", s.last_index);
    if !s.redundancy_zone.is_empty() {
        let _ = writeln!(b, "      Redundancy Zone: {}", s.redundancy_zone);
    }
    if !s.upgrade_version.is_empty() {
        let _ = writeln!(b, "      Upgrade Version: {}", s.upgrade_version);
    }
    if s.read_replica {
        let _ = writeln!(b, "      Read Replica:    {}", s.read_replica);
    }
    if !s.meta.is_empty() {
        b.push_str("      Meta\n");
        for (k, v) in &s.meta {
            let _ = writeln!(b, "         {}: {}", go_quote(k), go_quote(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fake, ok, run_at, status};
    use super::*;

    const PEERS: &str = r#"{"Servers":[
      {"ID":"id-1","Node":"s1","Address":"127.0.0.1:8300","Leader":true,"Voter":true,"ProtocolVersion":"3","LastIndex":123},
      {"ID":"id-2","Node":"s2","Address":"127.0.0.2:8300","Leader":false,"Voter":true,"ProtocolVersion":"3","LastIndex":122},
      {"ID":"id-3","Node":"server-three","Address":"127.0.0.3:8300","Leader":false,"Voter":false,"ProtocolVersion":"","LastIndex":100}
    ],"Index":45}"#;

    const CONFIG: &str = r#"{"CleanupDeadServers":true,"LastContactThreshold":"200ms","MaxTrailingLogs":250,"MinQuorum":0,"ServerStabilizationTime":"10s","RedundancyZoneTag":"","DisableUpgradeMigration":false,"UpgradeVersionTag":"","CreateIndex":4,"ModifyIndex":4}"#;

    /// Consul's `command/operator/autopilot/state/testdata/ce/state.json`.
    const STATE: &str = r#"{"Healthy":true,"FailureTolerance":1,"OptimisticFailureTolerance":0,
      "Servers":{
        "79324811-9588-4311-b208-f272e38aaabf":{"ID":"79324811-9588-4311-b208-f272e38aaabf","Name":"node1","Address":"198.18.0.1:8300","NodeStatus":"alive","Version":"1.9.0","LastContact":"0s","LastTerm":3,"LastIndex":42,"Healthy":true,"StableSince":"2020-11-06T14:51:00Z","Status":"leader","Meta":{"foo":"bar"},"NodeType":"voter"},
        "ae84aefb-a303-4734-8739-5c102d4ee2d9":{"ID":"ae84aefb-a303-4734-8739-5c102d4ee2d9","Name":"node3","Address":"198.18.0.3:8300","NodeStatus":"alive","Version":"1.9.0","LastContact":"2ms","LastTerm":3,"LastIndex":39,"Healthy":true,"StableSince":"2020-11-06T14:53:00Z","Status":"voter","Meta":{"baz":"foo"},"NodeType":"voter"},
        "ef8aee9a-f9d6-4ec4-b383-aac956bdb80f":{"ID":"ef8aee9a-f9d6-4ec4-b383-aac956bdb80f","Name":"node2","Address":"198.18.0.2:8300","NodeStatus":"alive","Version":"1.9.0","LastContact":"1ms","LastTerm":3,"LastIndex":41,"Healthy":true,"StableSince":"2020-11-06T14:52:00Z","Status":"voter","Meta":{"bar":"baz"},"NodeType":"voter"}},
      "Leader":"79324811-9588-4311-b208-f272e38aaabf",
      "Voters":["79324811-9588-4311-b208-f272e38aaabf","ef8aee9a-f9d6-4ec4-b383-aac956bdb80f","ae84aefb-a303-4734-8739-5c102d4ee2d9"]}"#;

    /// Consul's `testdata/ce/pretty.golden` for [`STATE`].
    const STATE_PRETTY: &str = "Healthy:                      true
Failure Tolerance:            1
Optimistic Failure Tolerance: 0
Leader:                       79324811-9588-4311-b208-f272e38aaabf
Voters:
   79324811-9588-4311-b208-f272e38aaabf
   ef8aee9a-f9d6-4ec4-b383-aac956bdb80f
   ae84aefb-a303-4734-8739-5c102d4ee2d9
Servers:
   79324811-9588-4311-b208-f272e38aaabf
      Name:            node1
      Address:         198.18.0.1:8300
      Version:         1.9.0
      Status:          leader
      Node Type:       voter
      Node Status:     alive
      Healthy:         true
      Last Contact:    0s
      Last Term:       3
      Last Index:      42
      Meta
         \"foo\": \"bar\"
   ae84aefb-a303-4734-8739-5c102d4ee2d9
      Name:            node3
      Address:         198.18.0.3:8300
      Version:         1.9.0
      Status:          voter
      Node Type:       voter
      Node Status:     alive
      Healthy:         true
      Last Contact:    2ms
      Last Term:       3
      Last Index:      39
      Meta
         \"baz\": \"foo\"
   ef8aee9a-f9d6-4ec4-b383-aac956bdb80f
      Name:            node2
      Address:         198.18.0.2:8300
      Version:         1.9.0
      Status:          voter
      Node Type:       voter
      Node Status:     alive
      Healthy:         true
      Last Contact:    1ms
      Last Term:       3
      Last Index:      41
      Meta
         \"bar\": \"baz\"
";

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn list_peers_prints_consuls_table() {
        let fake = fake(|req| match req.path() {
            "/v1/operator/raft/configuration" => ok(PEERS),
            _ => status(404, ""),
        })
        .await;
        let r = run_at(
            &fake.addr,
            "operator",
            &["raft", "list-peers", "-stale"],
            b"",
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.err);
        assert_eq!(
            r.out,
            "Node          ID    Address         State     Voter  RaftProtocol  Commit Index  Trails Leader By\n\
             s1            id-1  127.0.0.1:8300  leader    true   3             123           -\n\
             s2            id-2  127.0.0.2:8300  follower  true   3             122           1 commit\n\
             server-three  id-3  127.0.0.3:8300  follower  false  <=1           100           23 commits\n"
        );
        assert_eq!(fake.requests()[0].query(), "stale=");

        let down = run_at("127.0.0.1:1", "operator", &["raft", "list-peers"], b"").await;
        assert_eq!(down.code, 1);
        assert!(
            down.err
                .starts_with("Error getting peers: Failed to retrieve raft configuration: "),
            "{}",
            down.err
        );
    }

    #[tokio::test]
    async fn remove_peer_by_id_or_address_but_not_both() {
        let fake = fake(|req| match (req.method.as_str(), req.path()) {
            ("DELETE", "/v1/operator/raft/peer") if req.query() == "id=gone" => {
                status(500, "id \"gone\" was not found in the Raft configuration")
            }
            ("DELETE", "/v1/operator/raft/peer") => ok(""),
            _ => status(404, ""),
        })
        .await;
        let a = fake.addr.as_str();
        let r = run_at(a, "operator", &["raft", "remove-peer", "-id=abc"], b"").await;
        assert_eq!(
            (r.code, r.out.as_str()),
            (0, "Removed peer with id \"abc\"\n")
        );
        assert_eq!(fake.requests().last().unwrap().query(), "id=abc");
        let r = run_at(
            a,
            "operator",
            &["raft", "remove-peer", "-address", "127.0.0.2:8300"],
            b"",
        )
        .await;
        assert_eq!(
            (r.code, r.out.as_str()),
            (0, "Removed peer with address \"127.0.0.2:8300\"\n")
        );
        assert_eq!(
            fake.requests().last().unwrap().query(),
            "address=127.0.0.2%3A8300"
        );
        let r = run_at(a, "operator", &["raft", "remove-peer", "-id=gone"], b"").await;
        assert_eq!(r.code, 1);
        assert_eq!(
            r.err,
            "Error removing peer: Unexpected response code: 500 (id \"gone\" was not found in the Raft configuration)\n"
        );

        let sent = fake.requests().len();
        let r = run_at(a, "operator", &["raft", "remove-peer"], b"").await;
        assert_eq!(
            (r.code, r.err.as_str()),
            (
                1,
                "Error removing peer: an address or id is required for the peer to remove\n"
            )
        );
        let r = run_at(
            a,
            "operator",
            &["raft", "remove-peer", "-id=x", "-address=1.2.3.4:8300"],
            b"",
        )
        .await;
        assert_eq!(
            (r.code, r.err.as_str()),
            (
                1,
                "Error removing peer: cannot give both an address and id\n"
            )
        );
        assert_eq!(fake.requests().len(), sent, "refused before any request");
    }

    #[tokio::test]
    async fn transfer_leader_reports_success_or_failure() {
        let fake = fake(|req| match (req.method.as_str(), req.path()) {
            ("POST", "/v1/operator/raft/transfer-leader") if req.query() == "id=bad" => {
                ok(r#"{"Success":false}"#)
            }
            ("POST", "/v1/operator/raft/transfer-leader") if req.query() == "id=err" => {
                status(500, "cannot find peer")
            }
            ("POST", "/v1/operator/raft/transfer-leader") => ok(r#"{"Success":true}"#),
            _ => status(404, ""),
        })
        .await;
        let a = fake.addr.as_str();
        let r = run_at(a, "operator", &["raft", "transfer-leader"], b"").await;
        assert_eq!((r.code, r.out.as_str()), (0, "Success\n"));
        assert_eq!(fake.requests().last().unwrap().query(), "");
        let r = run_at(a, "operator", &["raft", "transfer-leader", "-id=n2"], b"").await;
        assert_eq!(r.code, 0);
        assert_eq!(fake.requests().last().unwrap().query(), "id=n2");
        let r = run_at(a, "operator", &["raft", "transfer-leader", "-id=bad"], b"").await;
        assert_eq!(
            (r.code, r.err.as_str()),
            (
                1,
                "Error transfering leadership: Failed to transfer leadership\n"
            )
        );
        let r = run_at(a, "operator", &["raft", "transfer-leader", "-id=err"], b"").await;
        assert_eq!(
            r.err,
            "Error transfering leadership: Failed to transfer leadership Unexpected response code: 500 (cannot find peer)\n"
        );
    }

    #[tokio::test]
    async fn get_config_prints_consuls_lines() {
        let fake = fake(|req| match req.path() {
            "/v1/operator/autopilot/configuration" => ok(CONFIG),
            _ => status(404, ""),
        })
        .await;
        let r = run_at(&fake.addr, "operator", &["autopilot", "get-config"], b"").await;
        assert_eq!(r.code, 0, "{}", r.err);
        assert_eq!(
            r.out,
            "CleanupDeadServers = true\n\
             LastContactThreshold = 200ms\n\
             MaxTrailingLogs = 250\n\
             MinQuorum = 0\n\
             ServerStabilizationTime = 10s\n\
             RedundancyZoneTag = \"\"\n\
             DisableUpgradeMigration = false\n\
             UpgradeVersionTag = \"\"\n"
        );
    }

    #[tokio::test]
    async fn set_config_changes_only_the_given_settings_with_cas() {
        let fake = fake(|req| match (req.method.as_str(), req.path()) {
            ("GET", "/v1/operator/autopilot/configuration") => ok(CONFIG),
            // The index moved under us when asked to set min-quorum 9.
            ("PUT", "/v1/operator/autopilot/configuration")
                if String::from_utf8_lossy(&req.body).contains("\"MinQuorum\":9") =>
            {
                ok("false")
            }
            ("PUT", "/v1/operator/autopilot/configuration") => ok("true"),
            _ => status(404, ""),
        })
        .await;
        let a = fake.addr.as_str();
        let r = run_at(
            a,
            "operator",
            &[
                "autopilot",
                "set-config",
                "-cleanup-dead-servers=false",
                "-max-trailing-logs",
                "300",
                "-last-contact-threshold=1.5s",
                "-redundancy-zone-tag",
                "zone",
            ],
            b"",
        )
        .await;
        assert_eq!(
            (r.code, r.out.as_str()),
            (0, "Configuration updated!\n"),
            "{}",
            r.err
        );
        let put = fake.requests().last().cloned().unwrap();
        assert_eq!((put.method.as_str(), put.query()), ("PUT", "cas=4"));
        assert_eq!(
            String::from_utf8_lossy(&put.body),
            r#"{"CleanupDeadServers":false,"LastContactThreshold":"1.5s","MaxTrailingLogs":300,"MinQuorum":0,"ServerStabilizationTime":"10s","RedundancyZoneTag":"zone","DisableUpgradeMigration":false,"UpgradeVersionTag":"","CreateIndex":4,"ModifyIndex":4}"#
        );

        let r = run_at(
            a,
            "operator",
            &["autopilot", "set-config", "-min-quorum=9"],
            b"",
        )
        .await;
        assert_eq!(
            (r.code, r.out.as_str()),
            (
                1,
                "Configuration could not be atomically updated, please try again\n"
            )
        );

        let sent = fake.requests().len();
        let r = run_at(
            a,
            "operator",
            &["autopilot", "set-config", "-server-stabilization-time=soon"],
            b"",
        )
        .await;
        assert_eq!(r.code, 1);
        assert!(
            r.err.starts_with(
                "invalid value \"soon\" for flag -server-stabilization-time: time: invalid duration \"soon\"\n"
            ),
            "{}",
            r.err
        );
        let r = run_at(
            a,
            "operator",
            &["autopilot", "set-config", "-max-trailing-logs=-1"],
            b"",
        )
        .await;
        assert!(r
            .err
            .starts_with("invalid value \"-1\" for flag -max-trailing-logs: parse error\n"));
        assert_eq!(fake.requests().len(), sent, "bad flags send nothing");
    }

    #[test]
    fn spaced_flag_values_are_joined() {
        let flags = set_config_flags();
        let joined = join_spaced_values(
            &flags,
            &strings(&[
                "-cleanup-dead-servers",
                "false",
                "-min-quorum",
                "=",
                "3",
                "-upgrade-version-tag=",
                "v",
                "-max-trailing-logs",
                "=10",
                "-redundancy-zone-tag=",
                "-disable-upgrade-migration",
                "-stale",
            ]),
        );
        assert_eq!(
            joined,
            [
                "-cleanup-dead-servers=false",
                "-min-quorum=3",
                "-upgrade-version-tag=v",
                "-max-trailing-logs=10",
                "-redundancy-zone-tag=",
                "-disable-upgrade-migration",
                "-stale",
            ]
        );
        let p = flags.parse(&joined).unwrap();
        let mut config = AutopilotConfiguration::default();
        ConfigChanges::from_flags(&p).unwrap().apply(&mut config);
        assert!(!config.cleanup_dead_servers && config.disable_upgrade_migration);
        assert_eq!((config.min_quorum, config.max_trailing_logs), (3, 10));
        assert_eq!(config.upgrade_version_tag, "v");
    }

    #[tokio::test]
    async fn state_prints_consuls_pretty_layout_and_json() {
        let fake = fake(|req| match req.path() {
            "/v1/operator/autopilot/state" => ok(STATE),
            _ => status(404, ""),
        })
        .await;
        let a = fake.addr.as_str();
        let r = run_at(a, "operator", &["autopilot", "state"], b"").await;
        assert_eq!(r.code, 0, "{}", r.err);
        assert_eq!(r.out, format!("{STATE_PRETTY}\n"));

        let r = run_at(a, "operator", &["autopilot", "state", "-format=json"], b"").await;
        assert_eq!(r.code, 0, "{}", r.err);
        assert!(
            r.out
                .starts_with("{\n    \"Healthy\": true,\n    \"FailureTolerance\": 1,\n"),
            "{}",
            r.out
        );
        assert!(r.out.contains("\"LastContact\": \"2ms\""));
        let back: serde_json::Value = serde_json::from_str(&r.out).unwrap();
        assert_eq!(back["Voters"].as_array().unwrap().len(), 3);

        let r = run_at(a, "operator", &["autopilot", "state", "-format=yaml"], b"").await;
        assert_eq!((r.code, r.err.as_str()), (1, "Unknown format: yaml\n"));
    }

    #[tokio::test]
    async fn groups_print_usage() {
        let r = run_at("127.0.0.1:1", "operator", &[], b"").await;
        assert_eq!(r.code, 1);
        assert!(r.out.starts_with("Usage: tribune operator <subcommand>"));
        assert!(
            r.out.contains("\n    autopilot    Provides tools"),
            "{}",
            r.out
        );
        assert!(r.out.contains("\n    raft         Provides"), "{}", r.out);
        let r = run_at("127.0.0.1:1", "operator", &["raft"], b"").await;
        assert_eq!(r.code, 1);
        assert!(
            r.out.contains("    transfer-leader    Transfer"),
            "{}",
            r.out
        );
        let r = run_at("127.0.0.1:1", "operator", &["autopilot", "-h"], b"").await;
        assert_eq!(r.code, 0);
        assert!(r.out.contains("    get-config    Display"), "{}", r.out);
        let r = run_at(
            "127.0.0.1:1",
            "operator",
            &["raft", "list-peers", "-h"],
            b"",
        )
        .await;
        assert_eq!(r.code, 0);
        assert!(r.out.contains("  -stale\n"), "{}", r.out);
    }

    #[test]
    fn go_quote_escapes_like_go() {
        assert_eq!(go_quote(""), "\"\"");
        assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(go_quote("t\tn\n\u{1}é"), "\"t\\tn\\n\\x01é\"");
    }
}
