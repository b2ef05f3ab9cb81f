//! Turning one source's raw JSON into checked, canonical JSON, and merging sources.
//!
//! Each source (defaults, a file, a flag, an `-hcl` snippet) is normalized on its own so a
//! type error can name the file and key. Normalizing renames keys to their canonical
//! snake_case spelling, coerces flag strings to numbers and booleans, drops `null`s (Go's
//! "not set"), records unknown keys, and maps deprecated keys onto their replacements the
//! way Consul's `applyDeprecatedConfig` does, per source. The results are merged with
//! Consul's rules: later scalars win, objects merge key by key, lists append.

use serde_json::{Map, Value};
use tribune_types::parse_go_duration;

use super::error::{ConfigError, Notes, Origin, ValueError};
use super::schema::{lookup, Field, Kind, ROOT};

/// A JSON object.
pub(crate) type Object = Map<String, Value>;

/// Normalizes one source's top-level object.
pub(crate) fn normalize_source(
    raw: Object,
    origin: &Origin,
    notes: &mut Notes,
) -> Result<Object, ConfigError> {
    let mut normalizer = Normalizer { origin, notes };
    let mut out = normalizer.object(raw, ROOT, "")?;
    apply_deprecated(&mut out, origin, notes);
    Ok(out)
}

struct Normalizer<'a> {
    origin: &'a Origin,
    notes: &'a mut Notes,
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A short description of a JSON value for type errors.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => {
            let short: String = s.chars().take(60).collect();
            format!("string {short:?}")
        }
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

impl Normalizer<'_> {
    fn err(&self, key: &str, source: ValueError) -> ConfigError {
        ConfigError::Value {
            origin: self.origin.clone(),
            key: key.to_owned(),
            source: Box::new(source),
        }
    }

    fn type_err(&self, key: &str, expected: &'static str, found: &Value) -> ConfigError {
        self.err(
            key,
            ValueError::Type {
                expected,
                found: describe(found),
            },
        )
    }

    fn object(
        &mut self,
        input: Object,
        fields: &'static [Field],
        prefix: &str,
    ) -> Result<Object, ConfigError> {
        let mut out = Object::new();
        for (key, value) in input {
            let Some(field) = lookup(fields, &key) else {
                self.notes.unknown(self.origin, join(prefix, &key));
                continue;
            };
            let path = join(prefix, field.name);
            // JSON null is how Go's encoder writes an unset pointer (`segments: null`).
            if value.is_null() {
                continue;
            }
            if let Some(v) = self.value(value, field.kind, &path)? {
                match (out.get_mut(field.name), v) {
                    // `Ports` and `ports` in one file: merge rather than drop one.
                    (Some(existing), v) => merge_value(existing, v, field.kind),
                    (None, v) => {
                        out.insert(field.name.to_owned(), v);
                    }
                }
            }
        }
        Ok(out)
    }

    fn value(
        &mut self,
        value: Value,
        kind: Kind,
        path: &str,
    ) -> Result<Option<Value>, ConfigError> {
        let out = match kind {
            Kind::Bool => Value::Bool(self.boolean(&value, path)?),
            Kind::Int => Value::from(self.int(&value, path)?),
            Kind::UInt => {
                let n = self.int(&value, path)?;
                if n < 0 {
                    return Err(self.err(path, ValueError::Negative { value: n }));
                }
                Value::from(n)
            }
            Kind::Float => match &value {
                Value::Number(n) => match n.as_f64() {
                    Some(x) => Value::from(x),
                    None => return Err(self.type_err(path, "a number", &value)),
                },
                Value::String(s) => match s.trim().parse::<f64>() {
                    Ok(x) if x.is_finite() => Value::from(x),
                    _ => return Err(self.type_err(path, "a number", &value)),
                },
                _ => return Err(self.type_err(path, "a number", &value)),
            },
            Kind::Str => match value {
                Value::String(s) => Value::String(s),
                other => return Err(self.type_err(path, "a string", &other)),
            },
            Kind::Duration => {
                let s = self.string(value, path, "a duration string such as \"10s\"")?;
                self.duration(&s, path)?;
                Value::String(s)
            }
            Kind::Port => {
                let n = self.int(&value, path)?;
                if n > i64::from(u16::MAX) {
                    return Err(self.err(path, ValueError::Port { value: n }));
                }
                Value::from(n)
            }
            Kind::Ip => {
                let s = self.string(value, path, "an IP address string")?;
                if s.trim().is_empty() {
                    // Consul treats an empty address as "not set".
                    return Ok(None);
                }
                let mut addrs = split_addrs(&s, false).map_err(|e| self.err(path, e))?;
                if addrs.len() > 1 {
                    return Err(self.err(path, ValueError::MultipleAddresses { value: s }));
                }
                match addrs.pop() {
                    Some(a) => Value::String(a),
                    None => return Ok(None),
                }
            }
            Kind::IpList => {
                let s = self.string(value, path, "a string of space-separated IP addresses")?;
                let addrs = split_addrs(&s, false).map_err(|e| self.err(path, e))?;
                Value::String(addrs.join(" "))
            }
            Kind::Addrs => {
                let s = self.string(value, path, "a string of addresses")?;
                if s.trim().is_empty() {
                    return Ok(None);
                }
                let addrs = split_addrs(&s, true).map_err(|e| self.err(path, e))?;
                Value::String(addrs.join(" "))
            }
            Kind::StrList => match value {
                Value::String(s) => Value::Array(vec![Value::String(s)]),
                Value::Array(items) => {
                    let mut out = Vec::with_capacity(items.len());
                    for item in items {
                        match item {
                            Value::String(s) => out.push(Value::String(s)),
                            Value::Null => {}
                            other => return Err(self.type_err(path, "a list of strings", &other)),
                        }
                    }
                    Value::Array(out)
                }
                other => return Err(self.type_err(path, "a list of strings", &other)),
            },
            Kind::StrMap => {
                let map = self.object_value(value, path)?;
                let mut out = Object::new();
                for (k, v) in map {
                    let s = match v {
                        Value::Null => continue,
                        Value::String(s) => s,
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => n.to_string(),
                        other => {
                            return Err(self.type_err(&join(path, &k), "a string", &other));
                        }
                    };
                    out.insert(k, Value::String(s));
                }
                Value::Object(out)
            }
            Kind::DurationMap => {
                let map = self.object_value(value, path)?;
                let mut out = Object::new();
                for (k, v) in map {
                    if v.is_null() {
                        continue;
                    }
                    let key = join(path, &k);
                    let s = self.string(v, &key, "a duration string such as \"10s\"")?;
                    self.duration(&s, &key)?;
                    out.insert(k, Value::String(s));
                }
                Value::Object(out)
            }
            Kind::Object(fields) => match value {
                Value::Object(map) => Value::Object(self.object(map, fields, path)?),
                // Repeated HCL blocks (`ports {..} ports {..}`) arrive as a list of objects;
                // Consul's decoder folds a list of maps into one map, so do the same.
                Value::Array(items) => {
                    let mut merged = Object::new();
                    for item in items {
                        match item {
                            Value::Object(map) => {
                                let next = self.object(map, fields, path)?;
                                merge_object(&mut merged, next, fields);
                            }
                            Value::Null => {}
                            other => return Err(self.type_err(path, "an object", &other)),
                        }
                    }
                    Value::Object(merged)
                }
                other => return Err(self.type_err(path, "an object", &other)),
            },
            Kind::RawObject => Value::Object(self.object_value(value, path)?),
            Kind::RawList | Kind::Services | Kind::Checks => {
                let items = match value {
                    Value::Object(map) => vec![Value::Object(map)],
                    Value::Array(items) => items,
                    other => {
                        return Err(self.type_err(path, "an object or a list of objects", &other))
                    }
                };
                let mut out = Vec::with_capacity(items.len());
                for mut item in items {
                    match &mut item {
                        Value::Null => continue,
                        Value::Object(map) => {
                            if matches!(kind, Kind::Services) {
                                fix_service(map);
                            }
                        }
                        other => {
                            let other = other.clone();
                            return Err(self.type_err(path, "a list of objects", &other));
                        }
                    }
                    out.push(item);
                }
                Value::Array(out)
            }
            Kind::Ignored => {
                self.notes.ignored(path.to_owned());
                return Ok(None);
            }
        };
        Ok(Some(out))
    }

    fn object_value(&self, value: Value, path: &str) -> Result<Object, ConfigError> {
        match value {
            Value::Object(map) => Ok(map),
            // A list of one map, as HCL blocks produce.
            Value::Array(items) if items.iter().all(Value::is_object) => {
                let mut merged = Object::new();
                for item in items {
                    if let Value::Object(map) = item {
                        merged.extend(map);
                    }
                }
                Ok(merged)
            }
            other => Err(self.type_err(path, "an object", &other)),
        }
    }

    fn string(
        &self,
        value: Value,
        path: &str,
        expected: &'static str,
    ) -> Result<String, ConfigError> {
        match value {
            Value::String(s) => Ok(s),
            other => Err(self.type_err(path, expected, &other)),
        }
    }

    fn duration(&self, s: &str, path: &str) -> Result<(), ConfigError> {
        parse_go_duration(s).map(|_| ()).map_err(|source| {
            self.err(
                path,
                ValueError::Duration {
                    value: s.to_owned(),
                    source,
                },
            )
        })
    }

    fn boolean(&self, value: &Value, path: &str) -> Result<bool, ConfigError> {
        match value {
            Value::Bool(b) => Ok(*b),
            // Flags arrive as strings; Go's strconv.ParseBool spellings.
            Value::String(s) => tribune_types::goflag::parse_go_bool(s.trim())
                .ok_or_else(|| self.type_err(path, "a boolean", value)),
            other => Err(self.type_err(path, "a boolean", other)),
        }
    }

    fn int(&self, value: &Value, path: &str) -> Result<i64, ConfigError> {
        match value {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    return Ok(i);
                }
                if let Some(x) = n.as_f64() {
                    // `8500.0` is an integer; `1.5` is not.
                    if x.fract() == 0.0 && x.abs() < 9.0e15 {
                        return Ok(x as i64);
                    }
                }
                Err(self.type_err(path, "an integer", value))
            }
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| self.type_err(path, "an integer", value)),
            other => Err(self.type_err(path, "an integer", other)),
        }
    }
}

/// Splits a space-separated address list and checks each entry; `allow_unix` permits
/// `unix://path` entries. Returns the entries in canonical text form.
fn split_addrs(s: &str, allow_unix: bool) -> Result<Vec<String>, ValueError> {
    if s.contains("{{") {
        return Err(ValueError::Template {
            value: s.to_owned(),
        });
    }
    let mut out = Vec::new();
    for part in s.split_whitespace() {
        if let Some(path) = part.strip_prefix("unix://") {
            if !allow_unix {
                return Err(ValueError::UnixSocket);
            }
            if path.is_empty() {
                return Err(ValueError::Ip {
                    value: part.to_owned(),
                });
            }
            out.push(part.to_owned());
            continue;
        }
        match parse_ip(part) {
            Some(ip) => out.push(ip.to_string()),
            None => {
                return Err(ValueError::Ip {
                    value: part.to_owned(),
                })
            }
        }
    }
    Ok(out)
}

/// Parses an IP address, accepting the bracketed IPv6 form (`[::]`) Consul accepts.
pub(crate) fn parse_ip(s: &str) -> Option<std::net::IpAddr> {
    let s = s.trim();
    let inner = s
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(s);
    inner.parse().ok()
}

/// Finds a key in a verbatim JSON object ignoring ASCII case (service definitions may be
/// written `Checks` or `checks`).
fn key_ci(map: &Object, key: &str) -> Option<String> {
    map.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned()
}

/// Wraps a lone object in a list, for keys that are lists in Consul's service schema but
/// arrive as a single HCL block (`checks { .. }` once).
fn wrap_list(map: &mut Object, key: &str) {
    if let Some(k) = key_ci(map, key) {
        if let Some(v) = map.get_mut(&k) {
            if v.is_object() {
                let inner = v.take();
                *v = Value::Array(vec![inner]);
            }
        }
    }
}

fn with_child(map: &mut Object, key: &str, f: impl FnOnce(&mut Object)) {
    if let Some(k) = key_ci(map, key) {
        if let Some(Value::Object(child)) = map.get_mut(&k) {
            f(child);
        }
    }
}

/// Makes an HCL service definition take the shape its JSON form has: the list-valued keys
/// Consul exempts from map-folding (`service.checks`, `proxy.upstreams`, ...) become lists.
fn fix_service(service: &mut Object) {
    wrap_list(service, "checks");
    with_child(service, "proxy", fix_proxy);
    with_child(service, "connect", |connect| {
        with_child(connect, "proxy", fix_proxy);
        with_child(connect, "sidecar_service", fix_service);
    });
}

fn fix_proxy(proxy: &mut Object) {
    wrap_list(proxy, "upstreams");
    with_child(proxy, "expose", |expose| wrap_list(expose, "paths"));
    with_child(proxy, "config", |config| wrap_list(config, "upstreams"));
}

/// Merges `src` into `dst` with Consul's rules, using `fields` to know each key's kind.
pub(crate) fn merge_object(dst: &mut Object, src: Object, fields: &[Field]) {
    for (key, value) in src {
        let kind = lookup(fields, &key).map_or(Kind::Ignored, |fd| fd.kind);
        match dst.get_mut(&key) {
            Some(existing) => merge_value(existing, value, kind),
            None => {
                dst.insert(key, value);
            }
        }
    }
}

fn merge_value(existing: &mut Value, value: Value, kind: Kind) {
    match (kind, existing, value) {
        (Kind::Object(fields), Value::Object(d), Value::Object(s)) => merge_object(d, s, fields),
        // Go map merge: later keys replace earlier ones, one level deep.
        (
            Kind::StrMap | Kind::DurationMap | Kind::RawObject,
            Value::Object(d),
            Value::Object(s),
        ) => {
            d.extend(s);
        }
        (
            Kind::StrList | Kind::RawList | Kind::Services | Kind::Checks,
            Value::Array(d),
            Value::Array(s),
        ) => d.extend(s),
        (_, slot, value) => *slot = value,
    }
}

/// Removes the value at a dotted path.
pub(crate) fn take_path(map: &mut Object, path: &str) -> Option<Value> {
    match path.split_once('.') {
        None => map.remove(path),
        Some((head, rest)) => match map.get_mut(head) {
            Some(Value::Object(child)) => take_path(child, rest),
            _ => None,
        },
    }
}

/// Reads the value at a dotted path.
pub(crate) fn get_path<'a>(map: &'a Object, path: &str) -> Option<&'a Value> {
    match path.split_once('.') {
        None => map.get(path),
        Some((head, rest)) => match map.get(head) {
            Some(Value::Object(child)) => get_path(child, rest),
            _ => None,
        },
    }
}

/// Sets the value at a dotted path, creating objects on the way (replacing non-objects).
pub(crate) fn set_path(map: &mut Object, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            map.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let slot = map
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Object::new()));
            if !slot.is_object() {
                *slot = Value::Object(Object::new());
            }
            if let Value::Object(child) = slot {
                set_path(child, rest, value);
            }
        }
    }
}

/// Moves `old` to `new` when this source did not set `new` itself (Consul gives the new
/// key precedence within one source).
fn rename(
    map: &mut Object,
    origin: &Origin,
    notes: &mut Notes,
    old: &'static str,
    new: &'static str,
) -> bool {
    let Some(value) = take_path(map, old) else {
        return false;
    };
    if get_path(map, new).is_none() {
        set_path(map, new, value);
    }
    notes.deprecated(origin, old, new);
    true
}

fn append_list(map: &mut Object, key: &str, items: Value) {
    let Value::Array(items) = items else { return };
    match map.get_mut(key) {
        Some(Value::Array(existing)) => existing.extend(items),
        _ => {
            map.insert(key.to_owned(), Value::Array(items));
        }
    }
}

/// Consul's `applyDeprecatedConfig`, plus folding `service`/`check` into the lists.
fn apply_deprecated(map: &mut Object, origin: &Origin, notes: &mut Notes) {
    const RENAMES: &[(&str, &str)] = &[
        ("acl.tokens.agent_master", "acl.tokens.agent_recovery"),
        ("acl_agent_master_token", "acl.tokens.agent_recovery"),
        ("acl_agent_token", "acl.tokens.agent"),
        ("acl_token", "acl.tokens.default"),
        ("acl.tokens.master", "acl.tokens.initial_management"),
        ("acl_master_token", "acl.tokens.initial_management"),
        ("enable_acl_replication", "acl.enable_token_replication"),
        ("acl_default_policy", "acl.default_policy"),
        ("acl_down_policy", "acl.down_policy"),
        ("acl_ttl", "acl.token_ttl"),
        ("acl_enable_key_list_policy", "acl.enable_key_list_policy"),
        ("ca_file", "tls.defaults.ca_file"),
        ("ca_path", "tls.defaults.ca_path"),
        ("cert_file", "tls.defaults.cert_file"),
        ("key_file", "tls.defaults.key_file"),
        ("tls_cipher_suites", "tls.defaults.tls_cipher_suites"),
        ("tls_min_version", "tls.defaults.tls_min_version"),
        ("verify_incoming_https", "tls.https.verify_incoming"),
        ("verify_incoming_rpc", "tls.internal_rpc.verify_incoming"),
        ("verify_outgoing", "tls.defaults.verify_outgoing"),
        (
            "verify_server_hostname",
            "tls.internal_rpc.verify_server_hostname",
        ),
        ("ui", "ui_config.enabled"),
        ("ui_dir", "ui_config.dir"),
        ("ui_content_path", "ui_config.content_path"),
        ("non_voting_server", "read_replica"),
    ];
    for (old, new) in RENAMES {
        rename(map, origin, notes, old, new);
    }

    if rename(
        map,
        origin,
        notes,
        "acl_replication_token",
        "acl.tokens.replication",
    ) {
        set_path(map, "acl.enable_token_replication", Value::Bool(true));
    }
    if rename(map, origin, notes, "acl_datacenter", "primary_datacenter") {
        // Setting acl_datacenter used to be how ACLs were switched on.
        set_path(map, "acl.enabled", Value::Bool(true));
    }
    if rename(
        map,
        origin,
        notes,
        "verify_incoming",
        "tls.defaults.verify_incoming",
    ) {
        // Before Consul 1.12 the top-level key never covered the gRPC port.
        if get_path(map, "tls.grpc.verify_incoming").is_none() {
            set_path(map, "tls.grpc.verify_incoming", Value::Bool(false));
        }
    }
    // start_join is folded into retry_join (Consul 1.15+); the original list is kept in
    // start_join so callers can tell where an address came from.
    for (old, new) in [
        ("start_join", "retry_join"),
        ("start_join_wan", "retry_join_wan"),
    ] {
        if let Some(items) = map.get(old).cloned() {
            append_list(map, new, items);
            notes.deprecated(origin, old, new);
        }
    }
    // A single `service`/`check` is appended after the same source's lists, as Consul does.
    for (single, list) in [("service", "services"), ("check", "checks")] {
        if let Some(items) = map.remove(single) {
            append_list(map, list, items);
        }
    }
}
