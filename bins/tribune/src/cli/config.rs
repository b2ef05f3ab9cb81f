//! `config read|write|list|delete`: config entries from the command line, with
//! Consul's messages (`Config entry written: service-defaults/web`).
//!
//! `write` takes a file (or `-` for stdin) in JSON or HCL. Consul decodes it into
//! the kind's typed struct, which turns `snake_case` keys into the API's
//! `CamelCase` and single blocks into one-element lists; Tribune keeps entries
//! untyped, so it does the same two things by rule: every key without an upper
//! case letter is camel-cased (with Consul's acronyms: `tls_min_version` →
//! `TLSMinVersion`), except inside maps whose keys are the user's (`Meta`, the
//! opaque proxy `Config`, header `Add`/`Set`, extension `Arguments`; the keys of
//! `Subsets` and `Failover` are subset names, their values are converted), and
//! an object under a key that Consul's structs hold as a list (`Sources`,
//! `Routes`, `Splits`, `Listeners`, ...) becomes a one-element list.

use std::io::Read as _;

use serde_json::{Map, Value};
use tribune_client::{ConfigEntry, QueryOptions};
use tribune_types::goflag::{FlagSet, Parsed};

use super::http::{client, client_flags, server_flags};
use super::{group, parse, Ctx};

const SUBCOMMANDS: &[(&str, &str)] = &[
    ("delete", "Delete a centralized config entry"),
    ("list", "List centralized config entries of a given kind"),
    ("read", "Read a centralized config entry"),
    ("write", "Create or update a centralized config entry"),
];

const HELP: &str = r#"Usage: tribune config <subcommand> [options] [args]

  This command has subcommands for interacting with Consul's centralized
  configuration system.

  Write a config entry:

      $ tribune config write web.service.hcl

  Read a config entry:

      $ tribune config read -kind service-defaults -name web

  List config entries of a kind:

      $ tribune config list -kind service-defaults

  Delete a config entry:

      $ tribune config delete -kind service-defaults -name web"#;

/// `config ...`
pub(crate) async fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    match group(args, HELP, SUBCOMMANDS, ctx) {
        Ok(("delete", rest)) => delete(rest, ctx).await,
        Ok(("list", rest)) => list(rest, ctx).await,
        Ok(("read", rest)) => read(rest, ctx).await,
        Ok((_, rest)) => write(rest, ctx).await,
        Err(code) => code,
    }
}

/// Consul's field-name acronyms, as `snake_case` parts.
const ACRONYMS: &[(&str, &str)] = &[
    ("acl", "ACL"),
    ("api", "API"),
    ("ca", "CA"),
    ("dns", "DNS"),
    ("grpc", "GRPC"),
    ("http", "HTTP"),
    ("https", "HTTPS"),
    ("id", "ID"),
    ("ip", "IP"),
    ("json", "JSON"),
    ("jwks", "JWKS"),
    ("jwt", "JWT"),
    ("sds", "SDS"),
    ("sni", "SNI"),
    ("tcp", "TCP"),
    ("tls", "TLS"),
    ("ttl", "TTL"),
    ("udp", "UDP"),
    ("uri", "URI"),
    ("url", "URL"),
];

/// Maps whose keys (and everything below) are the user's.
const OPAQUE: &[&str] = &["Meta", "Config", "Add", "Set", "Arguments"];
/// Maps keyed by subset name whose values are structs.
const KEYED: &[&str] = &["Subsets", "Failover"];
/// Fields Consul's structs hold as lists of objects.
const LISTS: &[&str] = &[
    "Sources",
    "Permissions",
    "Routes",
    "Splits",
    "Listeners",
    "Services",
    "Header",
    "QueryParam",
    "Targets",
    "Paths",
    "Overrides",
    "HashPolicies",
    "EnvoyExtensions",
    "Members",
    "Consumers",
    "Locations",
    "Providers",
];

/// `snake_case` → `CamelCase`; a key with an upper case letter is kept.
fn camel(key: &str) -> String {
    if key.chars().any(char::is_uppercase) {
        return key.to_owned();
    }
    key.split(['_', '-'])
        .map(|part| match ACRONYMS.iter().find(|(a, _)| *a == part) {
            Some((_, upper)) => (*upper).to_owned(),
            None => {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|c| c.to_uppercase().chain(chars).collect())
                    .unwrap_or_default()
            }
        })
        .collect()
}

/// An entry's keys as Consul's typed decoding would leave them (see the module doc).
fn translate(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                let key = camel(&k);
                let v = if OPAQUE.contains(&key.as_str()) {
                    v
                } else if KEYED.contains(&key.as_str()) {
                    match v {
                        Value::Object(m) => {
                            Value::Object(m.into_iter().map(|(k, v)| (k, translate(v))).collect())
                        }
                        other => translate(other),
                    }
                } else {
                    let v = translate(v);
                    match v {
                        Value::Object(_) if LISTS.contains(&key.as_str()) => Value::Array(vec![v]),
                        other => other,
                    }
                };
                out.insert(key, v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(translate).collect()),
        other => other,
    }
}

/// Parses a config entry in JSON or HCL and translates its keys.
fn parse_entry(text: &str) -> Result<ConfigEntry, String> {
    let raw = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err("expected an object".into()),
        Err(_) => {
            let origin = tribune_agent::config::Origin::Flag("config entry".into());
            tribune_agent::config::parse_hcl(text, &origin).map_err(|e| e.to_string())?
        }
    };
    let Value::Object(entry) = translate(Value::Object(raw)) else {
        return Err("expected an object".into());
    };
    match entry.get("Kind") {
        None => Err("Payload does not contain a kind/Kind key at the top level".into()),
        Some(Value::String(_)) => Ok(entry),
        Some(_) => Err("Kind value in payload is not a string".into()),
    }
}

/// A flag that must be given: its value, or Consul's message and exit code 1.
fn required(p: &Parsed, name: &str, ctx: &mut Ctx) -> Result<String, i32> {
    match p.get(name).filter(|v| !v.is_empty()) {
        Some(v) => Ok(v.to_owned()),
        None => {
            ctx.error(&format!("Must specify the -{name} parameter"));
            Err(1)
        }
    }
}

/// `-stale` for the reads.
fn read_opts(p: &Parsed) -> QueryOptions {
    QueryOptions {
        stale: p.is_set("stale"),
        ..Default::default()
    }
}

fn kind_name(entry: &ConfigEntry) -> (String, String) {
    let s = |k: &str| {
        entry
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    (s("Kind"), s("Name"))
}

const WRITE_HELP: &str = r#"Usage: tribune config write [options] <configuration>

  Request a config entry to be created or updated. The configuration
  argument is either a file path or '-' to indicate that the config
  should be read from stdin. The data should be either in HCL or
  JSON form.

  Example (from file):

    $ tribune config write web.service.hcl

  Example (from stdin):

    $ tribune config write -"#;

async fn write(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = server_flags(client_flags(
        FlagSet::new("config write")
            .bool(
                "cas",
                "Perform a Check-And-Set operation. Specifying this value also requires the -modify-index flag to be set. The default value is false.",
            )
            .value(
                "modify-index",
                "Unsigned integer representing the ModifyIndex of the config entry. This is used in combination with the -cas flag.",
            ),
    ));
    let p = match parse(&flags, args, WRITE_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let [source] = p.args.as_slice() else {
        ctx.error(
            "Must provide exactly one positional argument to specify the config entry to write",
        );
        return 1;
    };
    let modify_index = match p.get("modify-index").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => match v.parse::<u64>() {
            Ok(i) => i,
            Err(_) => {
                ctx.error(&format!(
                    "invalid value {v:?} for flag -modify-index: parse error"
                ));
                return 1;
            }
        },
    };
    let text = if source == "-" {
        let mut data = String::new();
        match ctx.read_stdin() {
            Ok(bytes) => data.push_str(&String::from_utf8_lossy(&bytes)),
            Err(e) => {
                ctx.error(&format!("Failed to load data: Failed to read stdin: {e}"));
                return 1;
            }
        }
        data
    } else {
        let mut data = String::new();
        let read = std::fs::File::open(source).and_then(|mut f| f.read_to_string(&mut data));
        if let Err(e) = read {
            ctx.error(&format!("Failed to load data: Failed to read file: {e}"));
            return 1;
        }
        data
    };
    let entry = match parse_entry(&text) {
        Ok(e) => e,
        Err(e) => {
            ctx.error(&format!("Failed to decode config entry input: {e}"));
            return 1;
        }
    };
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (kind, name) = kind_name(&entry);
    let cas = p.is_set("cas").then_some(modify_index);
    match client.config_entries().set(&entry, cas).await {
        Ok(true) => {
            ctx.info(format!("Config entry written: {kind}/{name}"));
            0
        }
        Ok(false) => {
            ctx.error(&format!("Config entry not updated: {kind}/{name}"));
            1
        }
        Err(err) => {
            ctx.error(&format!("Error writing config entry {kind}/{name}: {err}"));
            1
        }
    }
}

/// Go's `json.MarshalIndent(v, "", "    ")`.
const READ_HELP: &str = "Usage: tribune config read -kind <config kind> -name <config name>

  Reads the config entry specified by the given kind and name and outputs its
  JSON representation.

  Example:

    $ tribune config read -kind proxy-defaults -name global";

async fn read(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = server_flags(client_flags(
        FlagSet::new("config read")
            .value("kind", "The kind of configuration to read.")
            .value("name", "The name of configuration to read."),
    ));
    let p = match parse(&flags, args, READ_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    // `-kind` is checked first, so only its message shows when both are missing.
    let kind = match required(&p, "kind", ctx) {
        Ok(kind) => kind,
        Err(code) => return code,
    };
    let name = match required(&p, "name", ctx) {
        Ok(name) => name,
        Err(code) => return code,
    };
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client
        .config_entries()
        .get(&kind, &name, &read_opts(&p))
        .await
    {
        Ok((Some(entry), _)) => {
            ctx.info(super::format::indented(&entry, b"    "));
            0
        }
        Ok((None, _)) => {
            ctx.error(&format!(
                "Error reading config entry {kind}/{name}: Unexpected response code: 404 (Config entry not found for {kind:?} / {name:?})"
            ));
            1
        }
        Err(err) => {
            ctx.error(&format!("Error reading config entry {kind}/{name}: {err}"));
            1
        }
    }
}

const LIST_HELP: &str = "Usage: tribune config list -kind <config kind>

  Lists all of the config entries for a given kind.

  Example:

    $ tribune config list -kind service-defaults";

async fn list(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = server_flags(client_flags(
        FlagSet::new("config list").value("kind", "The kind of configurations to list."),
    ));
    let p = match parse(&flags, args, LIST_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let kind = match required(&p, "kind", ctx) {
        Ok(kind) => kind,
        Err(code) => return code,
    };
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.config_entries().list(&kind, &read_opts(&p)).await {
        Ok((entries, _)) => {
            for e in &entries {
                ctx.info(kind_name(e).1);
            }
            0
        }
        Err(err) => {
            ctx.error(&format!(
                "Error listing config entries for kind {kind:?}: {err}"
            ));
            1
        }
    }
}

const DELETE_HELP: &str = "Usage: tribune config delete -kind <config kind> -name <config name>
       tribune config delete -filename <file>

  Deletes the configuration entry specified by the kind and name, or by the
  kind and name in the given file.

  Example:

    $ tribune config delete -kind service-defaults -name web";

async fn delete(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = server_flags(client_flags(
        FlagSet::new("config delete")
            .value("kind", "The kind of configuration to delete.")
            .value("name", "The name of configuration to delete.")
            .value(
                "filename",
                "The file path that contains the configuration entry to delete.",
            )
            .bool(
                "cas",
                "Perform a Check-And-Set operation. Specifying this value also requires the -modify-index flag to be set. The default value is false.",
            )
            .value(
                "modify-index",
                "Unsigned integer representing the ModifyIndex of the config entry. This is used in combination with the -cas flag.",
            ),
    ));
    let p = match parse(&flags, args, DELETE_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut kind = p.get("kind").unwrap_or_default().to_owned();
    let mut name = p.get("name").unwrap_or_default().to_owned();
    let filename = p.get("filename").unwrap_or_default();
    if !filename.is_empty() {
        if !kind.is_empty() || !name.is_empty() {
            ctx.error("filename can't be used with kind or name");
            return 1;
        }
        let entry = std::fs::read_to_string(filename)
            .map_err(|e| format!("Failed to read file: {e}"))
            .and_then(|text| parse_entry(&text));
        match entry {
            Ok(e) => (kind, name) = kind_name(&e),
            Err(e) => {
                ctx.error(&format!("Failed to decode config entry input: {e}"));
                return 1;
            }
        }
    }
    if kind.is_empty() {
        ctx.error("Must specify the -kind parameter");
        return 1;
    }
    if name.is_empty() {
        ctx.error("Must specify the -name parameter");
        return 1;
    }
    let modify_index: u64 = match p.get("modify-index").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => match v.parse() {
            Ok(i) => i,
            Err(_) => {
                ctx.error(&format!(
                    "invalid value {v:?} for flag -modify-index: parse error"
                ));
                return 1;
            }
        },
    };
    let cas = p.is_set("cas");
    if cas && modify_index == 0 {
        ctx.error("Must specify a -modify-index greater than 0 with -cas");
        return 1;
    }
    if modify_index != 0 && !cas {
        ctx.error("Cannot specify -modify-index without -cas");
        return 1;
    }
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client
        .config_entries()
        .delete(&kind, &name, cas.then_some(modify_index))
        .await
    {
        Ok(true) => {
            ctx.info(format!("Config entry deleted: {kind}/{name}"));
            0
        }
        Ok(false) => {
            ctx.error(&format!("Config entry not deleted: {kind}/{name}"));
            1
        }
        Err(err) => {
            ctx.error(&format!("Error deleting config entry {kind}/{name}: {err}"));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hcl_entries_become_the_api_shape() {
        let hcl = r#"
Kind = "service-intentions"
name = "db"
meta { team_name = "data" }
sources {
  name   = "web"
  action = "allow"
}
"#;
        assert_eq!(
            Value::Object(parse_entry(hcl).unwrap()),
            json!({
                "Kind": "service-intentions",
                "Name": "db",
                "Meta": {"team_name": "data"},
                "Sources": [{"Name": "web", "Action": "allow"}],
            })
        );
        let resolver = r#"{"kind": "service-resolver", "name": "web", "connect_timeout": "15s",
            "subsets": {"v1_canary": {"only_passing": true, "filter": "Service.Meta.v == 1"}},
            "redirect": {"service": "api"}}"#;
        assert_eq!(
            Value::Object(parse_entry(resolver).unwrap()),
            json!({
                "Kind": "service-resolver",
                "Name": "web",
                "ConnectTimeout": "15s",
                "Subsets": {"v1_canary": {"OnlyPassing": true, "Filter": "Service.Meta.v == 1"}},
                "Redirect": {"Service": "api"},
            })
        );
        assert_eq!(camel("tls_min_version"), "TLSMinVersion");
        assert_eq!(camel("mutual_tls_mode"), "MutualTLSMode");
        assert_eq!(camel("local_connect_timeout_ms"), "LocalConnectTimeoutMs");
        assert_eq!(camel("PathPrefix"), "PathPrefix");
        assert!(parse_entry(r#"{"Name": "x"}"#)
            .unwrap_err()
            .contains("does not contain a kind"));
    }
}
