//! The `tribune` binaries: the CLI (`tribune`, also usable as `consul`), and the
//! `tribune-server` / `tribune-agent` shortcuts for `tribune agent [-server]`.
//!
//! Thin by design: parse the command line, set up logging, call into the library
//! crates, and map errors to exit codes. [`agent_cmd`] composes a server node (the
//! `server` crate behind the `agent` crate's HTTP API, in process); [`cli`] holds
//! every other command.

// Every binary of this crate allocates through mimalloc: see ARCHITECTURE.md
// ("Memory allocator") for the measurements behind the choice.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod agent_cmd;
pub mod cli;
mod config_watch;
mod logfile;
mod logging;
mod syslog;

use std::process::ExitCode;

/// Consul's top-level usage text, with our command list.
fn usage() -> String {
    let mut out = String::from(
        "Usage: consul [--version] [--help] <command> [<args>]\n\nAvailable commands are:\n",
    );
    out.push_str("    agent          Runs a Consul agent\n");
    for (name, help) in cli::COMMANDS {
        out.push_str(&format!("    {name:<14} {help}\n"));
    }
    out
}

/// Runs the process: `prefix` is prepended to the arguments (`["agent", "-server"]`
/// for `tribune-server`).
pub fn main_with(prefix: &[&str]) -> ExitCode {
    let mut args: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
    args.extend(std::env::args().skip(1));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("failed to start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async move {
        let Some(command) = args.first().cloned() else {
            eprint!("{}", usage());
            return 1;
        };
        let rest = &args[1..];
        let result = match command.as_str() {
            "agent" => agent_cmd::run(rest).await,
            "-v" | "-version" | "--version" => cli::run("version", rest).await,
            "-h" | "-help" | "--help" | "help" => {
                print!("{}", usage());
                Ok(0)
            }
            other if cli::COMMANDS.iter().any(|(n, _)| *n == other) => cli::run(other, rest).await,
            other => {
                eprintln!("Unknown command: {other:?}\n\n{}", usage());
                Ok(1)
            }
        };
        match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("Error: {e:#}");
                1
            }
        }
    });
    // Background tasks (blocked queries, timers) must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
