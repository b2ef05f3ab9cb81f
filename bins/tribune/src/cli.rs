//! The `consul`-compatible client commands (`kv`, `catalog`, `members`, `operator`,
//! `snapshot`, ...).
//!
//! Every command talks to an agent over the HTTP API through [`tribune_client`] and
//! prints what Consul prints, byte for byte where scripts are known to depend on it
//! (`Success! Data written to: foo`, `Error! No key exists at: foo`, the `members`
//! table). Flags follow Go's `flag` package ([`tribune_types::goflag`]); the HTTP
//! flags and `CONSUL_HTTP_*` variables are shared by all commands (module `http`).
//!
//! A command runs against a `Ctx` that supplies environment variables and stdin and
//! collects stdout/stderr, so tests can drive commands without touching the process.
//! Long-running commands (`lock`) write through to the process's streams instead, so
//! their messages appear when they happen.

mod catalog;
mod config;
mod connect;
mod event;
mod exec;
mod format;
mod http;
mod intention;
mod keyring;
mod kv;
mod lock;
mod maint;
mod members;
mod monitor;
mod node;
mod operator;
mod rtt;
mod services;
mod snapshot;
mod tls;
mod validate;
mod version;
mod watch;

pub use version::CONSUL_VERSION;

use std::io::{Read, Write};

use tribune_types::goflag::{FlagError, FlagSet, Parsed};

/// Commands this module implements, with their one-line synopses (for help text).
pub const COMMANDS: &[(&str, &str)] = &[
    ("catalog", "Interact with the catalog"),
    (
        "config",
        "Interact with Consul's Centralized Configurations",
    ),
    ("connect", "Interact with Consul Connect"),
    ("event", "Fire a new event"),
    ("exec", "Executes a command on Consul nodes"),
    (
        "force-leave",
        "Forces a member of the cluster to enter the \"left\" state",
    ),
    ("info", "Provides debugging information for operators."),
    ("intention", "Interact with Connect service intentions"),
    ("join", "Tell Consul agent to join cluster"),
    ("keygen", "Generates a new encryption key"),
    ("keyring", "Manages gossip layer encryption keys"),
    ("kv", "Interact with the key-value store"),
    (
        "leave",
        "Gracefully leaves the Consul cluster and shuts down",
    ),
    ("lock", "Execute a command holding a lock"),
    ("maint", "Controls node or service maintenance mode"),
    ("members", "Lists the members of a Consul cluster"),
    ("monitor", "Stream logs from a Consul agent"),
    (
        "operator",
        "Provides cluster-level tools for Consul operators",
    ),
    ("reload", "Triggers the agent to reload configuration files"),
    ("rtt", "Estimates network round trip time between nodes"),
    ("services", "Interact with services"),
    (
        "snapshot",
        "Saves, restores and inspects snapshots of Consul server state",
    ),
    ("tls", "Builtin helpers for creating CAs and certificates"),
    ("validate", "Validate config files/directories"),
    ("version", "Prints the Consul version"),
    ("watch", "Watch for changes in Consul"),
];

/// Commands whose output streams as it happens rather than when they finish.
const STREAMING: &[&str] = &["exec", "lock", "monitor", "watch"];

/// Runs a non-agent subcommand (`args` excludes the program name and the command name).
/// Returns the exit code.
pub async fn run(command: &str, args: &[String]) -> anyhow::Result<i32> {
    let mut ctx = Ctx::process();
    ctx.live = STREAMING.contains(&command);
    let code = dispatch(command, args, &mut ctx).await;
    // Other commands' output is written once they are done (a no-op for streaming ones).
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&ctx.out)?;
    stdout.flush()?;
    let mut stderr = std::io::stderr().lock();
    stderr.write_all(&ctx.err)?;
    stderr.flush()?;
    Ok(code)
}

/// Runs `command` against `ctx` and returns its exit code.
pub(crate) async fn dispatch(command: &str, args: &[String], ctx: &mut Ctx) -> i32 {
    match command {
        "catalog" => catalog::run(args, ctx).await,
        "config" => config::run(args, ctx).await,
        "connect" => connect::run(args, ctx).await,
        "event" => event::event(args, ctx).await,
        "exec" => exec::run(args, ctx).await,
        "force-leave" => event::force_leave(args, ctx).await,
        "info" => node::info(args, ctx).await,
        "intention" => intention::run(args, ctx).await,
        "join" => node::join(args, ctx).await,
        "keygen" => event::keygen(args, ctx),
        "keyring" => keyring::run(args, ctx).await,
        "kv" => kv::run(args, ctx).await,
        "leave" => node::leave(args, ctx).await,
        "lock" => lock::run(args, ctx).await,
        "maint" => maint::run(args, ctx).await,
        "members" => members::run(args, ctx).await,
        "monitor" => monitor::run(args, ctx).await,
        "operator" => operator::run(args, ctx).await,
        "reload" => node::reload(args, ctx).await,
        "rtt" => rtt::run(args, ctx).await,
        "services" => services::run(args, ctx).await,
        "snapshot" => snapshot::run(args, ctx).await,
        "tls" => tls::run(args, ctx),
        "validate" => validate::run(args, ctx).await,
        "version" => version::run(args, ctx),
        "watch" => watch::run(args, ctx).await,
        other => {
            ctx.error(&format!("Unknown command: {other}"));
            1
        }
    }
}

/// Looks up an environment variable.
type VarLookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Environment, stdin and captured output of one command run.
pub(crate) struct Ctx {
    vars: VarLookup,
    /// Stdin contents for tests; `None` reads the process's stdin.
    stdin: Option<Vec<u8>>,
    /// What the command printed to stdout.
    pub(crate) out: Vec<u8>,
    /// What the command printed to stderr.
    pub(crate) err: Vec<u8>,
    /// Write output straight to the process's stdout/stderr instead of collecting it.
    live: bool,
}

impl Ctx {
    /// The real process environment and stdin.
    pub(crate) fn process() -> Self {
        Ctx {
            vars: Box::new(|name| std::env::var(name).ok()),
            stdin: None,
            out: Vec::new(),
            err: Vec::new(),
            live: false,
        }
    }

    /// A context with fixed variables and stdin, for tests.
    #[cfg(test)]
    pub(crate) fn fake(vars: &[(&str, &str)], stdin: &[u8]) -> Self {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Ctx {
            vars: Box::new(move |name| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            }),
            stdin: Some(stdin.to_vec()),
            out: Vec::new(),
            err: Vec::new(),
            live: false,
        }
    }

    /// An environment variable.
    pub(crate) fn var(&self, name: &str) -> Option<String> {
        (self.vars)(name)
    }

    /// All of stdin.
    pub(crate) fn read_stdin(&mut self) -> std::io::Result<Vec<u8>> {
        match self.stdin.take() {
            Some(data) => Ok(data),
            None => {
                let mut data = Vec::new();
                std::io::stdin().read_to_end(&mut data)?;
                Ok(data)
            }
        }
    }

    /// Prints a line to stdout (Consul's `UI.Info`/`UI.Output`). Bytes, not text:
    /// `kv get` prints stored values as they are.
    pub(crate) fn info(&mut self, line: impl AsRef<[u8]>) {
        if self.live {
            write_line(&mut std::io::stdout().lock(), line.as_ref());
            return;
        }
        self.out.extend_from_slice(line.as_ref());
        self.out.push(b'\n');
    }

    /// Prints a line to stderr (Consul's `UI.Error`).
    pub(crate) fn error(&mut self, line: &str) {
        if self.live {
            write_line(&mut std::io::stderr().lock(), line.as_bytes());
            return;
        }
        self.err.extend_from_slice(line.as_bytes());
        self.err.push(b'\n');
    }

    /// Stdout as text (tests).
    #[cfg(test)]
    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }

    /// Stderr as text (tests).
    #[cfg(test)]
    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err).into_owned()
    }
}

/// Writes one line and flushes. Errors are ignored: there is nowhere left to report a
/// broken stdout or stderr, and Go's `UI` ignores them too.
fn write_line(out: &mut impl Write, line: &[u8]) {
    let _ = out.write_all(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Full help for a command: its description and its flags.
pub(crate) fn help_text(help: &str, flags: &FlagSet) -> String {
    let usage = flags.usage();
    // `FlagSet::usage` starts with its own "Usage:" line; keep only the flag list.
    let options = usage.split_once("\n\n").map_or("", |(_, rest)| rest);
    if options.trim().is_empty() {
        help.trim_end().to_owned()
    } else {
        format!("{}\n\nOptions:\n\n{}", help.trim_end(), options.trim_end())
    }
}

/// Parses a command line. On `-h`/`-help` prints help to stdout and yields exit code 0;
/// on a bad flag prints the error and help to stderr and yields 1 (Go's behaviour).
pub(crate) fn parse(
    flags: &FlagSet,
    args: &[String],
    help: &str,
    ctx: &mut Ctx,
) -> Result<Parsed, i32> {
    // Consul's CLI framework treats a help flag anywhere before `--` as a help request,
    // even after positional arguments, where Go's flag parser would no longer see it.
    let wants_help = args
        .iter()
        .take_while(|a| a.as_str() != "--")
        .any(|a| matches!(a.as_str(), "-h" | "-help" | "--help"));
    if wants_help {
        ctx.info(help_text(help, flags));
        return Err(0);
    }
    match flags.parse(args) {
        Ok(parsed) => Ok(parsed),
        Err(FlagError::Help) => {
            ctx.info(help_text(help, flags));
            Err(0)
        }
        Err(err) => Err(flag_error(ctx, flags, help, &err.to_string())),
    }
}

/// Reports a flag whose value does not parse, like Go's `flag` package, and returns 1.
pub(crate) fn flag_error(ctx: &mut Ctx, flags: &FlagSet, help: &str, message: &str) -> i32 {
    ctx.error(message);
    ctx.error(&help_text(help, flags));
    1
}

/// Parses a numeric flag (Go's `Uint64Var`, `IntVar`): `Ok(None)` when absent.
pub(crate) fn number_flag<T: std::str::FromStr>(
    parsed: &Parsed,
    name: &str,
) -> Result<Option<T>, String> {
    match parsed.get(name) {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| format!("invalid value {text:?} for flag -{name}: parse error")),
    }
}

/// Parses a repeatable `key=value` flag (Consul's `FlagMapValue`); later keys win.
pub(crate) fn map_flag(parsed: &Parsed, name: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for item in parsed.all(name) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!(
                "invalid value {item:?} for flag -{name}: Missing \"=\" value in argument: {item}"
            ));
        };
        pairs.retain(|(k, _)| k != key);
        pairs.push((key.to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

/// Help for a command group (`kv`, `catalog`, `services`): description plus subcommands.
pub(crate) fn group_help(help: &str, subcommands: &[(&str, &str)]) -> String {
    let width = subcommands
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0);
    let mut text = format!("{}\n\nSubcommands:\n", help.trim_end());
    for (name, synopsis) in subcommands {
        text.push_str(&format!("    {name:<width$}    {synopsis}\n"));
    }
    text.trim_end().to_owned()
}

/// Runs a command group: `-h` prints help (exit 0); a missing or unknown subcommand
/// prints help and exits 1, as Consul does. Returns `Ok((subcommand, rest))` otherwise.
pub(crate) fn group<'a>(
    args: &'a [String],
    help: &str,
    subcommands: &[(&str, &str)],
    ctx: &mut Ctx,
) -> Result<(&'a str, &'a [String]), i32> {
    match args.split_first() {
        Some((sub, rest)) if subcommands.iter().any(|(name, _)| name == sub) => {
            Ok((sub.as_str(), rest))
        }
        Some((flag, _)) if matches!(flag.as_str(), "-h" | "-help" | "--help") => {
            ctx.info(group_help(help, subcommands));
            Err(0)
        }
        _ => {
            ctx.info(group_help(help, subcommands));
            Err(1)
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn help_anywhere_before_double_dash() {
        let flags = FlagSet::new("kv get").bool("recurse", "Recurse.");
        let mut ctx = Ctx::fake(&[], b"");
        assert_eq!(
            parse(&flags, &strings(&["foo", "-h"]), "Usage: x", &mut ctx).unwrap_err(),
            0
        );
        assert!(ctx
            .stdout()
            .starts_with("Usage: x\n\nOptions:\n\n  -recurse\n"));
        let mut ctx = Ctx::fake(&[], b"");
        let parsed = parse(&flags, &strings(&["--", "-h"]), "Usage: x", &mut ctx).unwrap();
        assert_eq!(parsed.args, ["-h"]);
    }

    #[test]
    fn unknown_flag_is_exit_1_with_go_message() {
        let flags = FlagSet::new("kv get");
        let mut ctx = Ctx::fake(&[], b"");
        assert_eq!(
            parse(&flags, &strings(&["-nope"]), "Usage: x", &mut ctx).unwrap_err(),
            1
        );
        assert!(ctx
            .stderr()
            .starts_with("flag provided but not defined: -nope\n"));
        assert!(ctx.out.is_empty());
    }

    #[test]
    fn typed_flags() {
        let flags = FlagSet::new("t").value("flags", "").multi("meta", "");
        let p = flags
            .parse(&strings(&[
                "-flags",
                "18446744073709551615",
                "-meta",
                "a=1",
                "-meta=b=x=y",
                "-meta",
                "a=2",
            ]))
            .unwrap();
        assert_eq!(number_flag::<u64>(&p, "flags").unwrap(), Some(u64::MAX));
        assert_eq!(
            map_flag(&p, "meta").unwrap(),
            [
                ("b".to_owned(), "x=y".to_owned()),
                ("a".to_owned(), "2".to_owned())
            ]
        );
        let p = flags
            .parse(&strings(&["-flags=-1", "-meta", "novalue"]))
            .unwrap();
        assert_eq!(
            number_flag::<u64>(&p, "flags").unwrap_err(),
            "invalid value \"-1\" for flag -flags: parse error"
        );
        assert_eq!(
            map_flag(&p, "meta").unwrap_err(),
            "invalid value \"novalue\" for flag -meta: Missing \"=\" value in argument: novalue"
        );
    }

    #[test]
    fn groups_print_help() {
        let subs = [("get", "Gets"), ("delete", "Deletes")];
        let mut ctx = Ctx::fake(&[], b"");
        assert_eq!(group(&[], "Usage: g", &subs, &mut ctx).unwrap_err(), 1);
        assert_eq!(
            ctx.stdout(),
            "Usage: g\n\nSubcommands:\n    get       Gets\n    delete    Deletes\n"
        );
        let mut ctx = Ctx::fake(&[], b"");
        assert_eq!(
            group(&strings(&["-h"]), "Usage: g", &subs, &mut ctx).unwrap_err(),
            0
        );
        let args = strings(&["get", "x"]);
        let mut ctx = Ctx::fake(&[], b"");
        let (sub, rest) = group(&args, "Usage: g", &subs, &mut ctx).unwrap();
        assert_eq!((sub, rest.len()), ("get", 1));
    }

    #[test]
    fn commands_are_dispatched() {
        for (name, synopsis) in COMMANDS {
            assert!(!synopsis.is_empty(), "{name}");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut ctx = Ctx::fake(&[], b"");
        assert_eq!(rt.block_on(dispatch("bogus", &[], &mut ctx)), 1);
        assert_eq!(ctx.stderr(), "Unknown command: bogus\n");
    }
}
