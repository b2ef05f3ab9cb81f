//! `tribune-server`: `tribune agent -server` with the same flags.
fn main() -> std::process::ExitCode {
    tribune::main_with(&["agent", "-server"])
}
