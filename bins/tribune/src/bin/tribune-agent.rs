//! `tribune-agent`: `tribune agent` with the same flags.
fn main() -> std::process::ExitCode {
    tribune::main_with(&["agent"])
}
