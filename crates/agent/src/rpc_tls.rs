//! The internal RPC's TLS settings (`tls.internal_rpc`, which falls back to
//! `tls.defaults` and the legacy top-level `ca_file`, `verify_incoming_rpc`,
//! ...), read from their files into what `tribune_rpc::RpcTls` applies to the
//! server port and to every connection to a server.

use tribune_health::{AgentTls, AgentTlsError, AgentTlsFiles};
use tribune_rpc::{RpcTlsConfig, RpcTlsError, RpcTlsSettings};

use crate::config::RuntimeConfig;

/// Why the settings cannot be used; the agent refuses to start (or the
/// reload is refused), as Consul's configurator does.
#[derive(Debug, thiserror::Error)]
pub enum RpcTlsLoadError {
    /// A file named in `tls.internal_rpc` cannot be used.
    #[error("{0}")]
    Files(#[from] AgentTlsError),
    /// `tls_min_version` is not one of Consul's names.
    #[error("tls.internal_rpc.tls_min_version: invalid TLS version: no matching TLS version found for {0}, please specify one of [TLS_AUTO, TLSv1_0, TLSv1_1, TLSv1_2, TLSv1_3]")]
    Version(String),
    /// The settings contradict each other.
    #[error("{0}")]
    Settings(#[from] RpcTlsError),
}

/// `server.<datacenter>.<domain>`: the name servers' certificates carry.
/// Taken once at start: a reload does not move an agent to another
/// datacenter.
pub fn server_name(cfg: &RuntimeConfig) -> String {
    format!(
        "server.{}.{}",
        cfg.datacenter,
        cfg.domain.trim_end_matches('.')
    )
}

/// The internal RPC's TLS as `cfg` sets it, servers being named
/// `server_name`; plain when it sets nothing.
pub fn config(cfg: &RuntimeConfig, server_name: &str) -> Result<RpcTlsConfig, RpcTlsLoadError> {
    let rpc = &cfg.tls.internal_rpc;
    let loaded = AgentTls::load(&AgentTlsFiles {
        ca_file: rpc.ca_file.clone(),
        ca_path: rpc.ca_path.clone(),
        cert_file: rpc.cert_file.clone(),
        key_file: rpc.key_file.clone(),
    })?;
    let (provider, tls13_only) = crate::tls_suites::protocol(
        rpc.tls_min_version.as_deref(),
        rpc.tls_cipher_suites.as_deref(),
    )
    .map_err(RpcTlsLoadError::Version)?;
    Ok(RpcTlsConfig::build(&RpcTlsSettings {
        ca: loaded.ca_certificates().to_vec(),
        cert: loaded.certified_key(),
        verify_incoming: rpc.verify_incoming,
        verify_outgoing: rpc.verify_outgoing,
        verify_server_hostname: rpc.verify_server_hostname,
        server_name: server_name.to_owned(),
        tls13_only,
        provider: Some(std::sync::Arc::new(provider)),
    })?)
}
