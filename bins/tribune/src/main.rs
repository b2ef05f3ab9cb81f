//! `tribune` (and `consul` when linked under that name): the CLI.
fn main() -> std::process::ExitCode {
    tribune::main_with(&[])
}
