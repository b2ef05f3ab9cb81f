//! The `agent` command's flags (Consul's `agent/config/flags.go`) and how each maps onto a
//! config key.
//!
//! Every flag Consul documents is accepted, including Enterprise-only ones, so command lines
//! copied from guides parse. Each flag becomes its own tiny config source so an error can
//! name the flag (`flag -http-port: ports.http: expected an integer ...`).

use serde_json::{Map, Value};
use tribune_types::goflag::{FlagSet, Parsed};

use super::error::{ConfigError, Notes, Origin};
use super::normalize::{merge_object, normalize_source, set_path, Object};
use super::schema::ROOT;

/// How a flag takes its value.
#[derive(Clone, Copy)]
enum Arg {
    Bool,
    Value,
    Multi,
}

/// What a flag sets.
#[derive(Clone, Copy)]
enum Target {
    /// A config key (dotted path).
    Key(&'static str),
    /// `-node-meta key:value` entries.
    NodeMeta,
    /// Handled by the loader itself (`-dev`, `-config-file`, `-hcl`, ...).
    Loader,
}

struct Spec {
    name: &'static str,
    arg: Arg,
    target: Target,
    help: &'static str,
}

const fn spec(name: &'static str, arg: Arg, target: Target, help: &'static str) -> Spec {
    Spec {
        name,
        arg,
        target,
        help,
    }
}

use Arg::{Bool, Multi, Value as Val};
use Target::{Key, Loader, NodeMeta};

static SPECS: &[Spec] = &[
    spec("advertise", Val, Key("advertise_addr"), "Sets the advertise address to use."),
    spec("advertise-wan", Val, Key("advertise_addr_wan"), "Sets address to advertise on WAN instead of -advertise address."),
    spec("allow-write-http-from", Multi, Key("http_config.allow_write_http_from"), "Only allow write endpoint calls from given network. CIDR format, can be specified multiple times."),
    spec("alt-domain", Val, Key("alt_domain"), "Alternate domain to use for DNS interface."),
    spec("auto-reload-config", Bool, Key("auto_reload_config"), "Watches config files for changes and auto reloads the files when modified."),
    spec("bind", Val, Key("bind_addr"), "Sets the bind address for cluster communication."),
    spec("bootstrap", Bool, Key("bootstrap"), "Sets server to bootstrap mode."),
    spec("bootstrap-expect", Val, Key("bootstrap_expect"), "Sets server to expect bootstrap mode."),
    spec("check_output_max_size", Val, Key("check_output_max_size"), "Sets the maximum output size for checks on this agent"),
    spec("client", Val, Key("client_addr"), "Sets the address to bind for client access. This includes RPC, DNS, HTTP, HTTPS and gRPC (if configured)."),
    spec("config-dir", Multi, Loader, "Path to a directory to read configuration files from. This will read every file ending in '.json' or '.hcl' as configuration in this directory in alphabetical order. Can be specified multiple times."),
    spec("config-file", Multi, Loader, "Path to a file in JSON or HCL format with a matching file extension. Can be specified multiple times."),
    spec("config-format", Val, Loader, "Config files are in this format irrespective of their extension. Must be 'hcl' or 'json'"),
    spec("data-dir", Val, Key("data_dir"), "Path to a data directory to store agent state."),
    spec("datacenter", Val, Key("datacenter"), "Datacenter of the agent."),
    spec("default-query-time", Val, Key("default_query_time"), "the amount of time a blocking query will wait before Consul will force a response. This value can be overridden by the 'wait' query parameter."),
    spec("dev", Bool, Loader, "Starts the agent in development mode."),
    spec("disable-host-node-id", Bool, Key("disable_host_node_id"), "Setting this to true will prevent Consul from using information from the host to generate a node ID, and will cause Consul to generate a random node ID instead."),
    spec("disable-keyring-file", Bool, Key("disable_keyring_file"), "Disables the backing up of the keyring to a file."),
    spec("dns-port", Val, Key("ports.dns"), "DNS port to use."),
    spec("domain", Val, Key("domain"), "Domain to use for DNS interface."),
    spec("enable-local-script-checks", Bool, Key("enable_local_script_checks"), "Enables health check scripts from configuration file."),
    spec("enable-script-checks", Bool, Key("enable_script_checks"), "Enables health check scripts."),
    spec("encrypt", Val, Key("encrypt"), "Provides the gossip encryption key."),
    spec("grpc-port", Val, Key("ports.grpc"), "Sets the gRPC API port to listen on."),
    spec("grpc-tls-port", Val, Key("ports.grpc_tls"), "Sets the gRPC-TLS API port to listen on."),
    spec("hcl", Multi, Loader, "hcl config fragment. Can be specified multiple times."),
    spec("http-port", Val, Key("ports.http"), "Sets the HTTP API port to listen on."),
    spec("https-port", Val, Key("ports.https"), "Sets the HTTPS API port to listen on."),
    spec("join", Multi, Key("start_join"), "Address of an agent to join at start time. Can be specified multiple times."),
    spec("join-wan", Multi, Key("start_join_wan"), "Address of an agent to join -wan at start time. Can be specified multiple times."),
    spec("log-file", Val, Key("log_file"), "Path to the file the logs get written to"),
    spec("log-json", Bool, Key("log_json"), "Output logs in JSON format."),
    spec("log-level", Val, Key("log_level"), "Log level of the agent."),
    spec("log-rotate-bytes", Val, Key("log_rotate_bytes"), "Maximum number of bytes that should be written to a log file"),
    spec("log-rotate-duration", Val, Key("log_rotate_duration"), "Time after which log rotation needs to be performed"),
    spec("log-rotate-max-files", Val, Key("log_rotate_max_files"), "Maximum number of log file archives to keep"),
    spec("max-query-time", Val, Key("max_query_time"), "the maximum amount of time a blocking query can wait before Consul will force a response. Consul applies jitter to the wait time. The jittered time will be capped to MaxQueryTime."),
    spec("node", Val, Key("node_name"), "Name of this node. Must be unique in the cluster."),
    spec("node-id", Val, Key("node_id"), "A unique ID for this node across space and time. Defaults to a randomly-generated ID that persists in the data-dir."),
    spec("node-meta", Multi, NodeMeta, "An arbitrary metadata key/value pair for this node, of the format `key:value`. Can be specified multiple times."),
    spec("non-voting-server", Bool, Key("read_replica"), "(Enterprise-only) DEPRECATED: -read-replica should be used instead"),
    spec("partition", Val, Key("partition"), "(Enterprise-only) Sets the admin partition to join."),
    spec("pid-file", Val, Key("pid_file"), "Path to file to store agent PID."),
    spec("primary-gateway", Multi, Key("primary_gateways"), "Address of a mesh gateway in the primary datacenter to use to bootstrap WAN federation at start time with retries enabled. Can be specified multiple times."),
    spec("protocol", Val, Key("protocol"), "Sets the protocol version. Defaults to latest."),
    spec("raft-protocol", Val, Key("raft_protocol"), "Sets the Raft protocol version. Defaults to latest."),
    spec("read-replica", Bool, Key("read_replica"), "(Enterprise-only) This flag is used to make the server not participate in the Raft quorum, and have it only receive the data replication stream."),
    spec("recursor", Multi, Key("recursors"), "Address of an upstream DNS server. Can be specified multiple times."),
    spec("rejoin", Bool, Key("rejoin_after_leave"), "Ignores a previous leave and attempts to rejoin the cluster."),
    spec("retry-interval", Val, Key("retry_interval"), "Time to wait between join attempts."),
    spec("retry-interval-wan", Val, Key("retry_interval_wan"), "Time to wait between join -wan attempts."),
    spec("retry-join", Multi, Key("retry_join"), "Address of an agent to join at start time with retries enabled. Can be specified multiple times."),
    spec("retry-join-wan", Multi, Key("retry_join_wan"), "Address of an agent to join -wan at start time with retries enabled. Can be specified multiple times."),
    spec("retry-max", Val, Key("retry_max"), "Maximum number of join attempts. Defaults to 0, which will retry indefinitely."),
    spec("retry-max-wan", Val, Key("retry_max_wan"), "Maximum number of join -wan attempts. Defaults to 0, which will retry indefinitely."),
    spec("segment", Val, Key("segment"), "(Enterprise-only) Sets the network segment to join."),
    spec("serf-lan-allowed-cidrs", Multi, Key("serf_lan_allowed_cidrs"), "Networks (eg: 192.168.1.0/24) allowed for Serf LAN. Can be specified multiple times."),
    spec("serf-lan-bind", Val, Key("serf_lan"), "Address to bind Serf LAN listeners to."),
    spec("serf-lan-port", Val, Key("ports.serf_lan"), "Sets the Serf LAN port to listen on."),
    spec("serf-wan-allowed-cidrs", Multi, Key("serf_wan_allowed_cidrs"), "Networks (eg: 192.168.1.0/24) allowed for Serf WAN (other datacenters). Can be specified multiple times."),
    spec("serf-wan-bind", Val, Key("serf_wan"), "Address to bind Serf WAN listeners to."),
    spec("serf-wan-port", Val, Key("ports.serf_wan"), "Sets the Serf WAN port to listen on."),
    spec("server", Bool, Key("server"), "Switches agent to server mode."),
    spec("server-port", Val, Key("ports.server"), "Sets the server port to listen on."),
    spec("syslog", Bool, Key("enable_syslog"), "Enables logging to syslog."),
    spec("ui", Bool, Key("ui_config.enabled"), "Enables the built-in static web UI server."),
    spec("ui-content-path", Val, Key("ui_config.content_path"), "Sets the external UI path to a string. Defaults to: /ui/ "),
    spec("ui-dir", Val, Key("ui_config.dir"), "Path to directory containing the web UI resources."),
];

/// The flags `tribune agent` accepts: every flag Consul's `agent` command documents.
pub fn agent_flags() -> FlagSet {
    SPECS
        .iter()
        .fold(FlagSet::new("agent"), |set, s| match s.arg {
            Arg::Bool => set.bool(s.name, s.help),
            Arg::Value => set.value(s.name, s.help),
            Arg::Multi => set.multi(s.name, s.help),
        })
}

/// The command-line flags as two config sources, split the way Consul splits them: list
/// values (`-retry-join`, `-recursor`, ...) go before the config files so file lists are
/// appended after them; everything else goes after the files so flags win.
pub(crate) struct FlagSources {
    /// Top-level list values.
    pub(crate) lists: Object,
    /// Everything else.
    pub(crate) values: Object,
}

/// Builds the flag sources from parsed flags.
pub(crate) fn flag_sources(parsed: &Parsed, notes: &mut Notes) -> Result<FlagSources, ConfigError> {
    let mut all = Object::new();
    // Walk flags in command-line order so that, of two flags setting one key
    // (`-non-voting-server`, `-read-replica`), the later one wins.
    let mut seen: Vec<&str> = Vec::new();
    for (name, _) in &parsed.order {
        if seen.contains(&name.as_str()) {
            continue;
        }
        seen.push(name);
        let Some(spec) = SPECS.iter().find(|s| s.name == name) else {
            continue;
        };
        let mut raw = Object::new();
        match spec.target {
            Target::Loader => continue,
            Target::NodeMeta => {
                let mut meta = Map::new();
                for pair in parsed.all(spec.name) {
                    // Consul splits on the first ':'; a missing value is an empty string.
                    let (k, v) = pair.split_once(':').unwrap_or((pair.as_str(), ""));
                    meta.insert(k.to_owned(), Value::String(v.to_owned()));
                }
                raw.insert("node_meta".to_owned(), Value::Object(meta));
            }
            Target::Key(path) => {
                let value = match spec.arg {
                    Arg::Bool => Value::Bool(parsed.is_set(spec.name)),
                    Arg::Value => match parsed.get(spec.name) {
                        Some(v) => Value::String(v.to_owned()),
                        None => continue,
                    },
                    Arg::Multi => Value::Array(
                        parsed
                            .all(spec.name)
                            .iter()
                            .map(|v| Value::String(v.clone()))
                            .collect(),
                    ),
                };
                set_path(&mut raw, path, value);
            }
        }
        let origin = Origin::Flag(spec.name.to_owned());
        let normalized = normalize_source(raw, &origin, notes)?;
        merge_object(&mut all, normalized, ROOT);
    }

    let mut lists = Object::new();
    let mut values = Object::new();
    for (key, value) in all {
        if value.is_array() {
            lists.insert(key, value);
        } else {
            values.insert(key, value);
        }
    }
    Ok(FlagSources { lists, values })
}
