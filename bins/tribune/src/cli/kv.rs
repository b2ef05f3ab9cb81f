//! `kv get|put|delete|export|import`: the key/value store, with Consul's messages.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;
use tribune_client::{KvDeleteOptions, KvPair, KvPutOptions};
use tribune_types::goflag::FlagSet;

use super::format::tabwrite;
use super::http::{client, client_flags, query, server_flags, tenancy_flags};
use super::{flag_error, group, number_flag, parse, Ctx};

const SUBCOMMANDS: &[(&str, &str)] = &[
    ("delete", "Removes data from the KV store"),
    ("export", "Exports a tree from the KV store as JSON"),
    ("get", "Retrieves or lists data from the KV store"),
    ("import", "Imports a tree stored as JSON to the KV store"),
    ("put", "Sets or updates data in the KV store"),
];

const HELP: &str = r#"Usage: tribune kv <subcommand> [options] [args]

  Subcommands for the key-value store. Write the key "redis/config/connections":

      $ tribune kv put redis/config/connections 5

  Read it back, with its metadata, then delete it:

      $ tribune kv get redis/config/connections
      $ tribune kv get -detailed redis/config/connections
      $ tribune kv delete redis/config/connections

  Ask any subcommand for -help for its options."#;

/// `kv ...`
pub(crate) async fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    let (sub, rest) = match group(args, HELP, SUBCOMMANDS, ctx) {
        Ok(found) => found,
        Err(code) => return code,
    };
    match sub {
        "get" => get(rest, ctx).await,
        "put" => put(rest, ctx).await,
        "delete" => delete(rest, ctx).await,
        "export" => export(rest, ctx).await,
        _ => import(rest, ctx).await,
    }
}

/// Drops one leading `/`: keys never start with one, but users type `/foo`.
fn strip_slash(key: &str) -> &str {
    key.strip_prefix('/').unwrap_or(key)
}

const GET_HELP: &str = r#"Usage: tribune kv get [options] [KEY_OR_PREFIX]

  Prints the value stored at KEY. It is an error if the key does not exist; a key
  without data prints nothing. With -detailed, prints the key's metadata too.
  With -recurse, prints every "key:value" under the prefix; with -keys, only the
  key names, cut after -separator ("/" by default).

      $ tribune kv get foo
      $ tribune kv get -detailed foo
      $ tribune kv get -recurse foo
      $ tribune kv get -keys foo/"#;

fn get_flags() -> FlagSet {
    let flags = FlagSet::new("kv get")
        .bool("base64", "Base64 encode the value. The default value is false.")
        .bool(
            "detailed",
            "Print the key's metadata (ModifyIndex, flags, session, ...) along with the value.",
        )
        .bool(
            "keys",
            "List the keys starting with the prefix, not their values. Usually combined with -separator.",
        )
        .bool("recurse", "Print every key starting with the prefix.")
        .value(
            "separator",
            "Separator at which -keys cuts key names. The default value is \"/\".",
        );
    tenancy_flags(server_flags(client_flags(flags)))
}

async fn get(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = get_flags();
    let p = match parse(&flags, args, GET_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let key = match p.args.as_slice() {
        [] => "",
        [key] => strip_slash(key),
        more => {
            ctx.error(&format!(
                "Too many arguments (expected 1, got {})",
                more.len()
            ));
            return 1;
        }
    };
    let (recurse, keys, detailed, b64) = (
        p.is_set("recurse"),
        p.is_set("keys"),
        p.is_set("detailed"),
        p.is_set("base64"),
    );
    if key.is_empty() && !(recurse || keys) {
        ctx.error("Error! Missing KEY argument");
        return 1;
    }
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let opts = query(&p);
    if keys {
        let separator = p.get("separator").unwrap_or("/");
        return match client.kv().keys(key, Some(separator), &opts).await {
            Ok((keys, _)) => {
                for k in keys {
                    ctx.info(k);
                }
                0
            }
            Err(err) => {
                ctx.error(&format!("Error querying Consul agent: {err}"));
                1
            }
        };
    }
    if recurse {
        let pairs = match client.kv().list(key, &opts).await {
            Ok((pairs, _)) => pairs,
            Err(err) => {
                ctx.error(&format!("Error querying Consul agent: {err}"));
                return 1;
            }
        };
        let count = pairs.len();
        for (i, pair) in pairs.iter().enumerate() {
            if detailed {
                ctx.info(pretty_pair(pair, b64));
                if i + 1 < count {
                    ctx.info("");
                }
            } else {
                let mut line = format!("{}:", pair.key).into_bytes();
                line.extend_from_slice(&value_bytes(pair, b64));
                ctx.info(line);
            }
        }
        return 0;
    }
    match client.kv().get(key, &opts).await {
        Ok((Some(pair), _)) if detailed => {
            ctx.info(pretty_pair(&pair, b64));
            0
        }
        Ok((Some(pair), _)) => {
            ctx.info(value_bytes(&pair, b64));
            0
        }
        Ok((None, _)) => {
            ctx.error(&format!("Error! No key exists at: {key}"));
            1
        }
        Err(err) => {
            ctx.error(&format!("Error querying Consul agent: {err}"));
            1
        }
    }
}

/// The value as printed: raw bytes, or base64 with `-base64`.
fn value_bytes(pair: &KvPair, b64: bool) -> Vec<u8> {
    let value = pair.value.as_deref().unwrap_or_default();
    if b64 {
        STANDARD.encode(value).into_bytes()
    } else {
        value.to_vec()
    }
}

/// `kv get -detailed` layout (Go tabwriter, padding 6). The value goes in last and
/// unaligned, so binary values come out as stored.
fn pretty_pair(pair: &KvPair, b64: bool) -> Vec<u8> {
    let session = pair
        .session
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("-");
    let table = format!(
        "CreateIndex\t{}\nFlags\t{}\nKey\t{}\nLockIndex\t{}\nModifyIndex\t{}\nSession\t{}\nValue\t",
        pair.create_index, pair.flags, pair.key, pair.lock_index, pair.modify_index, session
    );
    let mut out = tabwrite(&table, 6).into_bytes();
    out.extend_from_slice(&value_bytes(pair, b64));
    out
}

const PUT_HELP: &str = r#"Usage: tribune kv put [options] KEY [DATA]

  Writes DATA at KEY. DATA may be given inline, read from a file with "@file",
  or read from stdin with "-". Without DATA, writes an empty value.

      $ tribune kv put config/redis/maxconns 5
      $ tribune kv put config/program/license @license.lic
      $ echo "abcd1234" | tribune kv put config/program/license -

  With -base64, DATA is base64 and is decoded before writing. For a
  check-and-set write, give -cas and the key's current -modify-index:

      $ tribune kv put -cas -modify-index=844 config/redis/maxconns 5"#;

fn put_flags() -> FlagSet {
    let flags = FlagSet::new("kv put")
        .bool(
            "acquire",
            "Obtain a lock on the key (creating it if needed). Requires -session.",
        )
        .bool("base64", "Treat the data as base 64 encoded. The default value is false.")
        .bool(
            "cas",
            "Perform a Check-And-Set operation. Requires -modify-index. The default value is false.",
        )
        .value(
            "flags",
            "Unsigned 64-bit integer stored with the key; not interpreted by the server. Default 0.",
        )
        .value(
            "modify-index",
            "Unsigned integer: the key's ModifyIndex, used with -cas.",
        )
        .bool(
            "release",
            "Forfeit the lock on the key. Requires -session, which must hold the lock.",
        )
        .value(
            "session",
            "Session ID, used with -acquire and -release. The default value is empty.",
        );
    tenancy_flags(server_flags(client_flags(flags)))
}

/// The value of a data argument: inline, `@file` or `-` for stdin.
fn read_data(arg: &str, ctx: &mut Ctx) -> Result<Vec<u8>, String> {
    if let Some(path) = arg.strip_prefix('@') {
        std::fs::read(path).map_err(|e| format!("Failed to read file: {e}"))
    } else if arg == "-" {
        ctx.read_stdin()
            .map_err(|e| format!("Failed to read stdin: {e}"))
    } else {
        Ok(arg.as_bytes().to_vec())
    }
}

async fn put(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = put_flags();
    let p = match parse(&flags, args, PUT_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (kv_flags, modify_index) = match (
        number_flag::<u64>(&p, "flags"),
        number_flag::<u64>(&p, "modify-index"),
    ) {
        (Ok(f), Ok(m)) => (f.unwrap_or(0), m.unwrap_or(0)),
        (Err(msg), _) | (_, Err(msg)) => return flag_error(ctx, &flags, PUT_HELP, &msg),
    };
    let (key, data) = match p.args.as_slice() {
        [] => {
            ctx.error("Error! Missing KEY argument");
            return 1;
        }
        [key] => (key.as_str(), Vec::new()),
        [key, data] => match read_data(data, ctx) {
            Ok(bytes) => (key.as_str(), bytes),
            Err(msg) => {
                ctx.error(&format!("Error! {msg}"));
                return 1;
            }
        },
        more => {
            ctx.error(&format!(
                "Error! Too many arguments (expected 1 or 2, got {})",
                more.len()
            ));
            return 1;
        }
    };
    let data = if p.is_set("base64") {
        // Go's decoder accepts surrounding whitespace in files; trim it likewise.
        match STANDARD.decode(data.trim_ascii()) {
            Ok(bytes) => bytes,
            Err(err) => {
                ctx.error(&format!("Error! Cannot base 64 decode data: {err}"));
                return 1;
            }
        }
    } else {
        data
    };
    let session = p.get("session").unwrap_or("").to_owned();
    let (cas, acquire, release) = (p.is_set("cas"), p.is_set("acquire"), p.is_set("release"));
    if (acquire || release) && session.is_empty() {
        ctx.error("Error! Missing -session (required with -acquire and -release)");
        return 1;
    }
    if cas && modify_index == 0 {
        ctx.error("Must specify -modify-index with -cas!");
        return 1;
    }
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut opts = KvPutOptions {
        flags: kv_flags,
        ..Default::default()
    };
    // Same precedence as Consul: -cas, then -acquire, then -release.
    if cas {
        opts.cas = Some(modify_index);
        return match client.kv().put(key, &data, &opts).await {
            Ok(true) => {
                ctx.info(format!("Success! Data written to: {key}"));
                0
            }
            Ok(false) => {
                ctx.error(&format!("Error! Did not write to {key}: CAS failed"));
                1
            }
            Err(err) => {
                ctx.error(&format!("Error! Did not write to {key}: {err}"));
                1
            }
        };
    }
    if acquire || release {
        let (verb, done) = if acquire {
            opts.acquire = Some(session);
            ("acquire", "acquired on")
        } else {
            opts.release = Some(session);
            ("release", "released on")
        };
        return match client.kv().put(key, &data, &opts).await {
            Ok(true) => {
                ctx.info(format!("Success! Lock {done}: {key}"));
                0
            }
            Ok(false) => {
                ctx.error(&format!("Error! Did not {verb} lock"));
                1
            }
            Err(err) => {
                ctx.error(&format!("Error! Failed writing data: {err}"));
                1
            }
        };
    }
    match client.kv().put(key, &data, &opts).await {
        Ok(_) => {
            ctx.info(format!("Success! Data written to: {key}"));
            0
        }
        Err(err) => {
            ctx.error(&format!("Error! Failed writing data: {err}"));
            1
        }
    }
}

const DELETE_HELP: &str = r#"Usage: tribune kv delete [options] KEY_OR_PREFIX

  Removes the key at the given path; nothing happens if it does not exist.
  With -recurse, removes every key starting with the prefix ("foo", "food" and
  "foo/bar/zip" for prefix "foo").

      $ tribune kv delete foo
      $ tribune kv delete -recurse foo"#;

fn delete_flags() -> FlagSet {
    let flags = FlagSet::new("kv delete")
        .bool(
            "cas",
            "Perform a Check-And-Set operation. Requires -modify-index. The default value is false.",
        )
        .value(
            "modify-index",
            "Unsigned integer: the key's ModifyIndex, used with -cas.",
        )
        .bool(
            "recurse",
            "Recursively delete all keys with the path. The default value is false.",
        );
    tenancy_flags(server_flags(client_flags(flags)))
}

async fn delete(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = delete_flags();
    let p = match parse(&flags, args, DELETE_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let modify_index = match number_flag::<u64>(&p, "modify-index") {
        Ok(m) => m.unwrap_or(0),
        Err(msg) => return flag_error(ctx, &flags, DELETE_HELP, &msg),
    };
    let key = match p.args.as_slice() {
        [] => "",
        [key] => strip_slash(key),
        more => {
            ctx.error(&format!(
                "Too many arguments (expected 1, got {})",
                more.len()
            ));
            return 1;
        }
    };
    let (cas, recurse) = (p.is_set("cas"), p.is_set("recurse"));
    if key.is_empty() && !recurse {
        ctx.error("Error! Missing KEY argument");
        return 1;
    }
    if cas && modify_index == 0 {
        ctx.error(
            "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0.",
        );
        return 1;
    }
    if modify_index != 0 && !cas {
        ctx.error("Cannot specify -modify-index without -cas!");
        return 1;
    }
    if recurse && cas {
        ctx.error("Cannot specify both -cas and -recurse!");
        return 1;
    }
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if recurse {
        let opts = KvDeleteOptions {
            recurse: true,
            ..Default::default()
        };
        return match client.kv().delete(key, &opts).await {
            Ok(_) => {
                ctx.info(format!("Success! Deleted keys with prefix: {key}"));
                0
            }
            Err(err) => {
                ctx.error(&format!("Error! Did not delete prefix {key}: {err}"));
                1
            }
        };
    }
    if cas {
        let opts = KvDeleteOptions {
            cas: Some(modify_index),
            ..Default::default()
        };
        return match client.kv().delete(key, &opts).await {
            Ok(true) => {
                ctx.info(format!("Success! Deleted key: {key}"));
                0
            }
            Ok(false) => {
                ctx.error(&format!("Error! Did not delete key {key}: CAS failed"));
                1
            }
            Err(err) => {
                ctx.error(&format!("Error! Did not delete key {key}: {err}"));
                1
            }
        };
    }
    match client.kv().delete(key, &KvDeleteOptions::default()).await {
        Ok(_) => {
            ctx.info(format!("Success! Deleted key: {key}"));
            0
        }
        Err(err) => {
            ctx.error(&format!("Error deleting key {key}: {err}"));
            1
        }
    }
}

/// One entry of the `kv export` / `kv import` format.
#[derive(Serialize)]
struct Entry<'a> {
    key: &'a str,
    /// Full u64: lock and semaphore flags are above 2^63.
    flags: u64,
    /// Base64 of the value (`""` for an empty value).
    value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<&'a str>,
}

/// JSON as Go's `json.MarshalIndent(v, "", "\t")` writes it, HTML-safe escapes included.
fn go_json_indent(value: &impl Serialize) -> serde_json::Result<String> {
    let text = super::format::marshal_indent(value, b"\t")?;
    // These characters can only occur inside JSON strings, where the escapes are
    // equivalent; Go emits them escaped, so byte-for-byte diffs stay clean.
    Ok(text
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029"))
}

const EXPORT_HELP: &str = r#"Usage: tribune kv export [KEY_OR_PREFIX]

  Prints the key-value pairs under the prefix as JSON, for "tribune kv import"
  (or "consul kv import") to load elsewhere.

      $ tribune kv export vault"#;

async fn export(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = tenancy_flags(server_flags(client_flags(FlagSet::new("kv export"))));
    let p = match parse(&flags, args, EXPORT_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let key = match p.args.as_slice() {
        [] => "",
        [key] => strip_slash(key),
        more => {
            ctx.error(&format!(
                "Too many arguments (expected 1, got {})",
                more.len()
            ));
            return 1;
        }
    };
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let pairs = match client.kv().list(key, &query(&p)).await {
        Ok((pairs, _)) => pairs,
        Err(err) => {
            ctx.error(&format!("Error querying Consul agent: {err}"));
            return 1;
        }
    };
    let entries: Vec<Entry<'_>> = pairs
        .iter()
        .map(|pair| Entry {
            key: &pair.key,
            flags: pair.flags,
            value: STANDARD.encode(pair.value.as_deref().unwrap_or_default()),
            namespace: pair.namespace.as_deref().filter(|s| !s.is_empty()),
            partition: pair.partition.as_deref().filter(|s| !s.is_empty()),
        })
        .collect();
    match go_json_indent(&entries) {
        Ok(text) => {
            ctx.info(text);
            0
        }
        Err(err) => {
            ctx.error(&format!("Error exporting KV data: {err}"));
            1
        }
    }
}

const IMPORT_HELP: &str = r#"Usage: tribune kv import [options] [DATA]

  Writes the key-value pairs of a "kv export" JSON document. DATA is read from a
  file with "@file", from stdin with "-", or given inline. With -prefix, every
  key is written under that prefix.

      $ tribune kv import @filename.json
      $ cat filename.json | tribune kv import -"#;

/// An import entry; fields match case-insensitively, as Go's JSON decoder does.
struct ImportEntry {
    key: String,
    flags: u64,
    value: String,
}

fn parse_import(data: &[u8]) -> Result<Vec<ImportEntry>, String> {
    let doc: serde_json::Value = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    let items = match doc {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Null => Vec::new(),
        other => return Err(format!("expected a JSON array of entries, got {other}")),
    };
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        let serde_json::Value::Object(fields) = item else {
            return Err("every entry must be a JSON object".to_owned());
        };
        let mut entry = ImportEntry {
            key: String::new(),
            flags: 0,
            value: String::new(),
        };
        for (name, value) in fields {
            match name.to_ascii_lowercase().as_str() {
                "key" => entry.key = value.as_str().ok_or("\"key\" must be a string")?.to_owned(),
                // Only exact unsigned integers: a float would silently lose low bits.
                "flags" => {
                    entry.flags = value
                        .as_u64()
                        .ok_or("\"flags\" must be an unsigned 64-bit integer")?
                }
                "value" => {
                    entry.value = value
                        .as_str()
                        .ok_or("\"value\" must be a string")?
                        .to_owned()
                }
                _ => {}
            }
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Go's `path.Join(prefix, key)`: join the non-empty parts with `/` and clean the result.
fn go_path_join(prefix: &str, key: &str) -> String {
    let joined = match (prefix.is_empty(), key.is_empty()) {
        (true, true) => return String::new(),
        (true, false) => key.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}/{key}"),
    };
    go_path_clean(&joined)
}

/// Go's `path.Clean`: collapse `//`, drop `.`, resolve `..`, no trailing `/`.
fn go_path_clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_owned(),
        (false, false) => body,
    }
}

async fn import(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = tenancy_flags(server_flags(client_flags(
        FlagSet::new("kv import").value("prefix", "Key prefix for imported data"),
    )));
    let p = match parse(&flags, args, IMPORT_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let data = match p.args.as_slice() {
        [] => Err("Missing DATA argument".to_owned()),
        [data] if data.is_empty() => Err("Empty DATA argument".to_owned()),
        [data] => read_data(data, ctx),
        more => Err(format!(
            "Too many arguments (expected 1, got {})",
            more.len()
        )),
    };
    let data = match data {
        Ok(d) => d,
        Err(msg) => {
            ctx.error(&format!("Error! {msg}"));
            return 1;
        }
    };
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let entries = match parse_import(&data) {
        Ok(e) => e,
        Err(msg) => {
            ctx.error(&format!("Cannot unmarshal data: {msg}"));
            return 1;
        }
    };
    let prefix = p.get("prefix").unwrap_or("");
    for entry in entries {
        let value = match STANDARD.decode(entry.value.as_bytes()) {
            Ok(v) => v,
            Err(err) => {
                ctx.error(&format!(
                    "Error base 64 decoding value for key {}: {err}",
                    entry.key
                ));
                return 1;
            }
        };
        let mut key = go_path_join(prefix, &entry.key);
        // Keep "directory" keys (ending in `/`), which path.Join would strip.
        if entry.key.ends_with('/') {
            key.push('/');
        }
        let opts = KvPutOptions {
            flags: entry.flags,
            ..Default::default()
        };
        if let Err(err) = client.kv().put(&key, &value, &opts).await {
            ctx.error(&format!("Error! Failed writing data for key {key}: {err}"));
            return 1;
        }
        ctx.info(format!("Imported: {key}"));
    }
    0
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fake, ok, run_at, run_env, status};
    use super::*;

    #[test]
    fn path_join_matches_go() {
        assert_eq!(go_path_join("", "a/b"), "a/b");
        assert_eq!(go_path_join("pre", "a//b/./c"), "pre/a/b/c");
        assert_eq!(go_path_join("pre/", "dir/"), "pre/dir");
        assert_eq!(go_path_join("pre", "../x"), "x");
        assert_eq!(go_path_join("", "../x"), "../x");
        assert_eq!(go_path_join("", ""), "");
        assert_eq!(go_path_join("/", "a"), "/a");
    }

    #[test]
    fn import_entries_are_case_insensitive_and_u64() {
        let entries = parse_import(
            br#"[{"Key":"a","Flags":16210313421097356768,"Value":"MQ=="},{"key":"b","value":""}]"#,
        )
        .unwrap();
        assert_eq!(entries[0].flags, 16_210_313_421_097_356_768);
        assert_eq!(entries[1].key, "b");
        assert!(parse_import(br#"[{"key":"a","flags":1.5e19}]"#).is_err());
        assert!(parse_import(br#"{"key":"a"}"#).is_err());
    }

    #[test]
    fn detailed_layout() {
        let pair = KvPair {
            key: "foo".into(),
            create_index: 5,
            modify_index: 7,
            flags: 42,
            value: Some(b"bar".to_vec()),
            ..Default::default()
        };
        let text = String::from_utf8(pretty_pair(&pair, false)).unwrap();
        assert_eq!(
            text,
            "CreateIndex      5\nFlags            42\nKey              foo\nLockIndex        0\n\
             ModifyIndex      7\nSession          -\nValue            bar"
        );
        let text = String::from_utf8(pretty_pair(&pair, true)).unwrap();
        assert!(text.ends_with("Value            YmFy"));
    }

    #[test]
    fn export_json_matches_go_layout() {
        let entries = vec![Entry {
            key: "a<b>",
            flags: u64::MAX,
            value: "MQ==".into(),
            namespace: None,
            partition: None,
        }];
        assert_eq!(
            go_json_indent(&entries).unwrap(),
            "[\n\t{\n\t\t\"key\": \"a\\u003cb\\u003e\",\n\t\t\"flags\": 18446744073709551615,\n\t\t\"value\": \"MQ==\"\n\t}\n]"
        );
        assert_eq!(go_json_indent(&Vec::<Entry<'_>>::new()).unwrap(), "[]");
    }

    #[tokio::test]
    async fn get_prints_value_or_missing_error() {
        let fake = fake(|req| match req.path() {
            "/v1/kv/foo" => ok(r#"[{"Key":"foo","Value":"YmFy","Flags":0}]"#),
            "/v1/kv/empty" => ok(r#"[{"Key":"empty","Value":null}]"#),
            "/v1/kv/boom" => status(500, "No cluster leader"),
            _ => status(404, ""),
        })
        .await;
        let r = run_at(&fake.addr, "kv", &["get", "/foo"], b"").await;
        assert_eq!((r.code, r.out.as_str(), r.err.as_str()), (0, "bar\n", ""));
        let r = run_at(&fake.addr, "kv", &["get", "empty"], b"").await;
        assert_eq!((r.code, r.out.as_str()), (0, "\n"));
        let r = run_at(&fake.addr, "kv", &["get", "-base64", "foo"], b"").await;
        assert_eq!(r.out, "YmFy\n");
        let r = run_at(&fake.addr, "kv", &["get", "nope"], b"").await;
        assert_eq!(
            (r.code, r.err.as_str()),
            (1, "Error! No key exists at: nope\n")
        );
        let r = run_at(&fake.addr, "kv", &["get", "boom"], b"").await;
        assert_eq!(
            (r.code, r.err.as_str()),
            (
                1,
                "Error querying Consul agent: Unexpected response code: 500 (No cluster leader)\n"
            )
        );
        let r = run_at(&fake.addr, "kv", &["get"], b"").await;
        assert_eq!(
            (r.code, r.err.as_str()),
            (1, "Error! Missing KEY argument\n")
        );
        let r = run_at(&fake.addr, "kv", &["get", "a", "b"], b"").await;
        assert_eq!(r.err, "Too many arguments (expected 1, got 2)\n");
    }

    #[tokio::test]
    async fn get_recurse_keys_and_stale() {
        let fake = fake(|req| {
            if req.query().contains("keys") {
                ok(r#"["app/a","app/dir/"]"#)
            } else {
                ok(
                    r#"[{"Key":"app/a","Value":"MQ==","CreateIndex":1,"ModifyIndex":2},
                        {"Key":"app/b","Value":null,"Session":"s1"}]"#,
                )
            }
        })
        .await;
        let r = run_at(&fake.addr, "kv", &["get", "-recurse", "-stale", "app"], b"").await;
        assert_eq!(r.out, "app/a:1\napp/b:\n");
        let r = run_at(&fake.addr, "kv", &["get", "-keys", "app/"], b"").await;
        assert_eq!(r.out, "app/a\napp/dir/\n");
        let r = run_at(
            &fake.addr,
            "kv",
            &["get", "-recurse", "-detailed", "app"],
            b"",
        )
        .await;
        assert!(
            r.out.contains("Value            1\n\nCreateIndex"),
            "{}",
            r.out
        );
        assert!(r.out.contains("Session          s1\n"));
        let reqs = fake.requests();
        assert_eq!(reqs[0].query(), "stale=&recurse=");
        assert_eq!(reqs[1].query(), "keys=&separator=%2F");
    }

    #[tokio::test]
    async fn put_messages_and_parameters() {
        let fake = fake(|req| {
            if req.query().contains("cas=9") || req.query().contains("acquire=held") {
                ok("false")
            } else {
                ok("true")
            }
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data");
        std::fs::write(&file, b"from file").unwrap();
        let at_file = format!("@{}", file.display());

        let r = run_at(&fake.addr, "kv", &["put", "foo", "bar"], b"").await;
        assert_eq!(
            (r.code, r.out.as_str()),
            (0, "Success! Data written to: foo\n")
        );
        let r = run_at(
            &fake.addr,
            "kv",
            &["put", "-flags=16210313421097356768", "f", &at_file],
            b"",
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.err);
        let r = run_at(&fake.addr, "kv", &["put", "s", "-"], b"from stdin").await;
        assert_eq!(r.code, 0);
        let r = run_at(&fake.addr, "kv", &["put", "-base64", "b", "YmFy"], b"").await;
        assert_eq!(r.code, 0);
        let r = run_at(
            &fake.addr,
            "kv",
            &["put", "-cas", "-modify-index=9", "foo", "x"],
            b"",
        )
        .await;
        assert_eq!(
            (r.code, r.err.as_str()),
            (1, "Error! Did not write to foo: CAS failed\n")
        );
        let r = run_at(
            &fake.addr,
            "kv",
            &["put", "-cas", "-modify-index=8", "foo", "x"],
            b"",
        )
        .await;
        assert_eq!(r.out, "Success! Data written to: foo\n");
        let r = run_at(
            &fake.addr,
            "kv",
            &["put", "-acquire", "-session=s1", "lock"],
            b"",
        )
        .await;
        assert_eq!(r.out, "Success! Lock acquired on: lock\n");
        let r = run_at(
            &fake.addr,
            "kv",
            &["put", "-acquire", "-session=held", "lock"],
            b"",
        )
        .await;
        assert_eq!(
            (r.code, r.err.as_str()),
            (1, "Error! Did not acquire lock\n")
        );
        let r = run_at(
            &fake.addr,
            "kv",
            &["put", "-release", "-session=s1", "lock"],
            b"",
        )
        .await;
        assert_eq!(r.out, "Success! Lock released on: lock\n");

        let reqs = fake.requests();
        assert_eq!(reqs[0].target, "/v1/kv/foo");
        assert_eq!(reqs[0].body, b"bar");
        assert_eq!(reqs[1].query(), "flags=16210313421097356768");
        assert_eq!(reqs[1].body, b"from file");
        assert_eq!(reqs[2].body, b"from stdin");
        assert_eq!(reqs[3].body, b"bar");
        assert_eq!(reqs[4].query(), "cas=9");
        assert_eq!(reqs[6].query(), "acquire=s1");
        assert_eq!(reqs[8].query(), "release=s1");
        assert_eq!(reqs.len(), 9);
    }

    #[tokio::test]
    async fn put_validation_happens_before_any_request() {
        let fake = fake(|_| ok("true")).await;
        let cases: &[(&[&str], &str)] = &[
            (&["put"], "Error! Missing KEY argument\n"),
            (
                &["put", "a", "b", "c"],
                "Error! Too many arguments (expected 1 or 2, got 3)\n",
            ),
            (
                &["put", "-cas", "k", "v"],
                "Must specify -modify-index with -cas!\n",
            ),
            (
                &["put", "-acquire", "k"],
                "Error! Missing -session (required with -acquire and -release)\n",
            ),
            (
                &["put", "k", "@/nonexistent/file"],
                "Error! Failed to read file: ",
            ),
            (
                &["put", "-base64", "k", "!!"],
                "Error! Cannot base 64 decode data: ",
            ),
            (
                &["put", "-flags=-1", "k"],
                "invalid value \"-1\" for flag -flags: parse error\n",
            ),
        ];
        for (args, message) in cases {
            let r = run_at(&fake.addr, "kv", args, b"").await;
            assert_eq!(r.code, 1, "{args:?}");
            assert!(r.err.starts_with(message), "{args:?}: {}", r.err);
        }
        assert!(fake.requests().is_empty());
    }

    #[tokio::test]
    async fn delete_messages() {
        let fake = fake(|req| {
            ok(if req.query().contains("cas=3") {
                "false"
            } else {
                "true"
            })
        })
        .await;
        let r = run_at(&fake.addr, "kv", &["delete", "foo"], b"").await;
        assert_eq!(r.out, "Success! Deleted key: foo\n");
        let r = run_at(&fake.addr, "kv", &["delete", "-recurse", "/foo"], b"").await;
        assert_eq!(r.out, "Success! Deleted keys with prefix: foo\n");
        let r = run_at(
            &fake.addr,
            "kv",
            &["delete", "-cas", "-modify-index=3", "foo"],
            b"",
        )
        .await;
        assert_eq!(
            (r.code, r.err.as_str()),
            (1, "Error! Did not delete key foo: CAS failed\n")
        );
        let r = run_at(
            &fake.addr,
            "kv",
            &["delete", "-cas", "-modify-index=4", "foo"],
            b"",
        )
        .await;
        assert_eq!(r.out, "Success! Deleted key: foo\n");
        let reqs = fake.requests();
        assert_eq!(reqs[0].method, "DELETE");
        assert_eq!(reqs[1].target, "/v1/kv/foo?recurse=");
        assert_eq!(reqs[3].query(), "cas=4");

        for (args, message) in [
            (&["delete"][..], "Error! Missing KEY argument\n"),
            (&["delete", "-cas", "k"][..], "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0.\n"),
            (&["delete", "-modify-index=2", "k"][..], "Cannot specify -modify-index without -cas!\n"),
            (&["delete", "-cas", "-modify-index=2", "-recurse", "k"][..], "Cannot specify both -cas and -recurse!\n"),
        ] {
            let r = run_at(&fake.addr, "kv", args, b"").await;
            assert_eq!((r.code, r.err.as_str()), (1, message));
        }
    }

    #[tokio::test]
    async fn export_then_import_round_trips_flags() {
        let fake = fake(|req| match req.method.as_str() {
            "GET" => ok(
                r#"[{"Key":"app/lock","Flags":16210313421097356768,"Value":"aGVsZA=="},
                            {"Key":"app/dir/","Flags":0,"Value":null}]"#,
            ),
            _ => ok("true"),
        })
        .await;
        let r = run_at(&fake.addr, "kv", &["export", "app"], b"").await;
        assert_eq!(r.code, 0, "{}", r.err);
        assert!(
            r.out.contains("\"flags\": 16210313421097356768"),
            "{}",
            r.out
        );
        assert!(r.out.contains("\"value\": \"\""), "{}", r.out);
        let r = run_at(
            &fake.addr,
            "kv",
            &["import", "-prefix=copy", "-"],
            r.out.as_bytes(),
        )
        .await;
        assert_eq!(
            r.out, "Imported: copy/app/lock\nImported: copy/app/dir/\n",
            "{}",
            r.err
        );
        let puts: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| r.method == "PUT")
            .collect();
        assert_eq!(
            puts[0].target,
            "/v1/kv/copy/app/lock?flags=16210313421097356768"
        );
        assert_eq!(puts[0].body, b"held");
        assert_eq!(puts[1].target, "/v1/kv/copy/app/dir/");

        let r = run_at(&fake.addr, "kv", &["import"], b"").await;
        assert_eq!(r.err, "Error! Missing DATA argument\n");
        let r = run_at(&fake.addr, "kv", &["import", "not json"], b"").await;
        assert!(r.err.starts_with("Cannot unmarshal data: "), "{}", r.err);
        let r = run_at(
            &fake.addr,
            "kv",
            &["import", r#"[{"key":"k","value":"!"}]"#],
            b"",
        )
        .await;
        assert!(
            r.err
                .starts_with("Error base 64 decoding value for key k: "),
            "{}",
            r.err
        );
    }

    #[tokio::test]
    async fn http_flags_and_environment_reach_the_wire() {
        let fake = fake(|_| ok(r#"[{"Key":"k","Value":"dg=="}]"#)).await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "file-token\n").unwrap();
        let env = [
            ("CONSUL_HTTP_TOKEN", "env-token"),
            ("CONSUL_HTTP_AUTH", "user:pass"),
        ];
        let addr = format!("http://{}", fake.addr);
        let r = run_env(
            &env,
            "kv",
            &["get", "-http-addr", &addr, "-datacenter=dc2", "-stale", "k"],
            b"",
        )
        .await;
        assert_eq!(r.out, "v\n", "{}", r.err);
        let token_flag = format!("-token-file={}", token_file.display());
        let r = run_env(
            &env,
            "kv",
            &[
                "get",
                "-http-addr",
                &addr,
                "-token=flag-token",
                &token_flag,
                "k",
            ],
            b"",
        )
        .await;
        assert_eq!(r.code, 0);
        let reqs = fake.requests();
        assert_eq!(reqs[0].query(), "dc=dc2&stale=");
        assert_eq!(
            reqs[0].header("x-consul-token").as_deref(),
            Some("env-token")
        );
        // "user:pass" in base64.
        assert_eq!(
            reqs[0].header("authorization").as_deref(),
            Some("Basic dXNlcjpwYXNz")
        );
        // A non-empty token file beats -token, as in Consul.
        assert_eq!(
            reqs[1].header("x-consul-token").as_deref(),
            Some("file-token")
        );

        let r = run_env(&[], "kv", &["get", "-http-addr=ftp://x", "k"], b"").await;
        assert_eq!(
            (r.code, r.err.as_str()),
            (
                1,
                "Error connecting to Consul agent: Unknown protocol scheme: ftp\n"
            )
        );
    }

    #[tokio::test]
    async fn group_help() {
        let r = run_at("127.0.0.1:1", "kv", &[], b"").await;
        assert_eq!(r.code, 1);
        assert!(r
            .out
            .contains("Subcommands:\n    delete    Removes data from the KV store\n"));
        let r = run_at("127.0.0.1:1", "kv", &["get", "-help"], b"").await;
        assert_eq!(r.code, 0);
        assert!(r.out.starts_with("Usage: tribune kv get"));
        assert!(r.out.contains("  -separator=<value>\n"));
        assert!(r.out.contains("  -http-addr=<value>\n"));
    }
}
