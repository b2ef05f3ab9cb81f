//! Agent configuration: the `agent` command's flags, JSON/HCL config files and `-hcl`
//! snippets, merged the way Consul merges them into one typed [`RuntimeConfig`].
//!
//! Sources, lowest precedence first (Consul's `agent/config/builder.go`):
//! 1. Consul's built-in defaults, then the `-dev` defaults with `-dev`;
//! 2. list-valued flags (`-retry-join`, `-recursor`, ...), so lists from files append after them;
//! 3. each `-config-file`/`-config-dir` argument in command-line order; a directory gives its
//!    `*.json` and `*.hcl` files in lexical order (not recursing);
//! 4. the other flags;
//! 5. each `-hcl` snippet (Consul applies these after the flags).
//!
//! Later scalars win, objects merge key by key, lists append (`services`, `checks`,
//! `retry_join`, ...). Unknown keys are reported in [`RuntimeConfig::unknown_keys`] and
//! logged, never fatal, because the Go test helper and older deployments write keys Tribune
//! does not know. Deprecated keys (`acl_datacenter`, `acl.tokens.master`, flat `ca_file`,
//! `verify_*`, `ui`, `start_join`, ...) are mapped onto their replacements per source.

mod build;
mod defaults;
mod error;
mod flags;
mod hcl_json;
mod normalize;
mod runtime;
mod schema;
mod sources;
#[cfg(test)]
mod tests;

use tribune_types::goflag::Parsed;

pub use error::{
    ConfigError, EncryptKeyProblem, Invalid, NodeMetaProblem, Origin, ValueError, Warning,
};
pub use flags::agent_flags;
pub use runtime::{
    Acl, AclDownPolicy, AclPolicy, AclTokens, Addresses, Autopilot, Connect, DnsConfig, Gossip,
    HttpConfig, Limits, ListenAddr, Listener, Locality, LogLevel, Ports, RaftTiming,
    RecursorStrategy, RequestLimits, RequestLimitsMode, RuntimeConfig, Soa, Tls, TlsProtocol,
};

/// Parses HCL text as the agent parses its config files: blocks become objects, a
/// block repeated under one name a list. `origin` names the text in errors.
/// `tribune config write` reads config entries written in HCL with it.
pub fn parse_hcl(
    text: &str,
    origin: &Origin,
) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError> {
    hcl_json::parse(text, origin)
}

/// Loads the agent configuration described by parsed [`agent_flags`]: defaults, `-dev`
/// defaults, config files and directories, flags and `-hcl` snippets, merged and validated.
/// Warnings (unknown or deprecated keys, skipped files) are logged and kept in the result.
pub fn load(flags: &Parsed) -> Result<RuntimeConfig, ConfigError> {
    sources::load(flags)
}
