//! Command-line parsing with the rules of Go's `flag` package, which Consul's CLI uses.
//!
//! `-name`, `--name`, `-name=value`, and `-name value` for flags that take a value; a
//! boolean flag never consumes the next argument (`-server -bootstrap`), only `-b=false`.
//! Parsing stops at the first non-flag argument or at `--`; the rest are positional.
//! Scripts copied from Consul guides depend on exactly these rules.

use std::collections::BTreeMap;

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// A switch: `-dev`, `-dev=true`, `-dev=false`.
    Bool,
    /// One value; the last occurrence wins.
    Value,
    /// A repeatable value (`-config-file a -config-file b`); all occurrences are kept.
    Multi,
}

/// The flags a command accepts.
#[derive(Debug, Clone, Default)]
pub struct FlagSet {
    command: String,
    flags: BTreeMap<String, (FlagKind, &'static str)>,
}

/// A command line that does not fit its [`FlagSet`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    /// Not one of the command's flags (Go's exact wording).
    #[error("flag provided but not defined: -{0}")]
    Unknown(String),
    /// A value flag at the end of the line.
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    /// `-b=maybe` for a boolean flag.
    #[error("invalid boolean value {value:?} for -{flag}: parse error")]
    BadBool {
        /// The flag.
        flag: String,
        /// What was given.
        value: String,
    },
    /// `-h`, `-help` or `--help` was given.
    #[error("help requested")]
    Help,
}

/// The parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    values: BTreeMap<String, Vec<String>>,
    /// Order in which flags appeared, for "later flag wins" merges.
    pub order: Vec<(String, String)>,
    /// Arguments after the flags.
    pub args: Vec<String>,
}

impl FlagSet {
    /// A flag set for `command` (used in usage text).
    pub fn new(command: &str) -> Self {
        Self {
            command: command.to_owned(),
            flags: BTreeMap::new(),
        }
    }

    /// Adds a boolean flag.
    pub fn bool(mut self, name: &str, help: &'static str) -> Self {
        self.flags.insert(name.to_owned(), (FlagKind::Bool, help));
        self
    }

    /// Adds a single-value flag.
    pub fn value(mut self, name: &str, help: &'static str) -> Self {
        self.flags.insert(name.to_owned(), (FlagKind::Value, help));
        self
    }

    /// Adds a repeatable flag.
    pub fn multi(mut self, name: &str, help: &'static str) -> Self {
        self.flags.insert(name.to_owned(), (FlagKind::Multi, help));
        self
    }

    /// The kind of a declared flag.
    pub fn kind(&self, name: &str) -> Option<FlagKind> {
        self.flags.get(name).map(|(k, _)| *k)
    }

    /// Usage text listing every flag.
    pub fn usage(&self) -> String {
        let mut out = format!("Usage: {} [options]\n\n", self.command);
        for (name, (kind, help)) in &self.flags {
            let arg = if *kind == FlagKind::Bool {
                ""
            } else {
                "=<value>"
            };
            out.push_str(&format!("  -{name}{arg}\n      {help}\n"));
        }
        out
    }

    /// Parses `args` (without the program and command names).
    pub fn parse<S: AsRef<str>>(&self, args: &[S]) -> Result<Parsed, FlagError> {
        let mut parsed = Parsed::default();
        let mut i = 0;
        while i < args.len() {
            let arg = args[i].as_ref();
            if arg == "--" {
                i += 1;
                break;
            }
            if !arg.starts_with('-') || arg == "-" {
                break;
            }
            let body = arg.trim_start_matches('-');
            // Go allows at most two dashes; `---x` is a bad flag syntax.
            if arg.len() - body.len() > 2 || body.is_empty() || body.starts_with('=') {
                return Err(FlagError::Unknown(body.to_owned()));
            }
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (body, None),
            };
            let kind = match self.kind(name) {
                Some(k) => k,
                None if name == "h" || name == "help" => return Err(FlagError::Help),
                None => return Err(FlagError::Unknown(name.to_owned())),
            };
            let value = match (kind, inline) {
                (FlagKind::Bool, None) => "true".to_owned(),
                (FlagKind::Bool, Some(v)) => match parse_go_bool(&v) {
                    Some(b) => b.to_string(),
                    None => {
                        return Err(FlagError::BadBool {
                            flag: name.to_owned(),
                            value: v,
                        })
                    }
                },
                (_, Some(v)) => v,
                (_, None) => {
                    i += 1;
                    match args.get(i) {
                        Some(v) => v.as_ref().to_owned(),
                        None => return Err(FlagError::MissingValue(name.to_owned())),
                    }
                }
            };
            let slot = parsed.values.entry(name.to_owned()).or_default();
            if kind == FlagKind::Multi {
                slot.push(value.clone());
            } else {
                *slot = vec![value.clone()];
            }
            parsed.order.push((name.to_owned(), value));
            i += 1;
        }
        parsed.args = args[i..].iter().map(|s| s.as_ref().to_owned()).collect();
        Ok(parsed)
    }
}

impl Parsed {
    /// The value of a single-value flag, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Every value of a repeatable flag, in order.
    pub fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A boolean flag: `Some(true)`/`Some(false)` if given, `None` if not.
    pub fn flag(&self, name: &str) -> Option<bool> {
        self.get(name).map(|v| v == "true")
    }

    /// True when the boolean flag was given and not set to false.
    pub fn is_set(&self, name: &str) -> bool {
        self.flag(name).unwrap_or(false)
    }

    /// Whether the flag appeared at all.
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }
}

/// Go's `strconv.ParseBool`: the spellings Go's flags and Consul's query
/// parameters accept, `None` for anything else.
pub fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> FlagSet {
        FlagSet::new("agent")
            .bool("server", "")
            .bool("ui", "")
            .bool("dev", "")
            .value("bootstrap-expect", "")
            .value("node", "")
            .value("bind", "")
            .value("data-dir", "")
            .value("client", "")
            .multi("join", "")
            .multi("config-file", "")
    }

    #[test]
    fn guide_command_line_parses_as_go_would() {
        let line = "-server -bootstrap-expect 3 -node=server_01 -bind=192.168.1.129 -ui -data-dir=/var/consul -client 0.0.0.0";
        let args: Vec<&str> = line.split(' ').collect();
        let p = agent().parse(&args).unwrap();
        assert!(p.is_set("server"));
        assert!(p.is_set("ui"));
        assert_eq!(p.get("bootstrap-expect"), Some("3"));
        assert_eq!(p.get("node"), Some("server_01"));
        assert_eq!(p.get("client"), Some("0.0.0.0"));
        assert!(p.args.is_empty());
    }

    #[test]
    fn double_dash_and_repeats_and_positionals() {
        let p = agent()
            .parse(&[
                "--dev",
                "-config-file",
                "a",
                "--config-file=b",
                "rest",
                "-x",
            ])
            .unwrap();
        assert!(p.is_set("dev"));
        assert_eq!(p.all("config-file"), ["a", "b"]);
        assert_eq!(p.args, ["rest", "-x"]);
    }

    #[test]
    fn bool_never_consumes_next_argument() {
        let p = agent().parse(&["-server", "true"]).unwrap();
        assert!(p.is_set("server"));
        assert_eq!(p.args, ["true"]);
        let p = agent().parse(&["-server=false"]).unwrap();
        assert_eq!(p.flag("server"), Some(false));
    }

    #[test]
    fn errors_use_go_wording() {
        assert_eq!(
            agent().parse(&["-nope"]).unwrap_err().to_string(),
            "flag provided but not defined: -nope"
        );
        assert_eq!(
            agent().parse(&["-node"]).unwrap_err().to_string(),
            "flag needs an argument: -node"
        );
        assert_eq!(agent().parse(&["-help"]).unwrap_err(), FlagError::Help);
    }
}
