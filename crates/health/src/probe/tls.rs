//! TLS client settings for HTTPS, gRPC-over-TLS and H2PING-over-TLS checks, as
//! Consul's `OutgoingTLSConfigForCheck(TLSSkipVerify, TLSServerName)` builds them:
//!
//! - the name sent in SNI *and* the name the certificate must match is the check's
//!   `tls_server_name` when set, else the target's host (Go's `tls.Config.ServerName`;
//!   an IP address is matched against the certificate's IP addresses and, as in Go,
//!   sent in no SNI);
//! - certificates are verified against the system's trust store (Go's
//!   `SystemCertPool`), loaded once per process, unless the agent lends its own
//!   TLS settings ([`AgentTls`], `enable_agent_tls_for_checks`): then its CAs
//!   (`ca_file`, else every file under `ca_path`) are the roots, and its
//!   `cert_file`/`key_file` pair is presented to servers that ask for a client
//!   certificate;
//! - `tls_skip_verify` accepts any certificate (Go's `InsecureSkipVerify`); the
//!   handshake signatures are still checked, so the peer must hold the key of the
//!   certificate it sent, and the agent's client certificate is still presented;
//! - every connection is a full handshake: Go keeps no session cache for checks,
//!   and a resumed session would skip verifying the server's current certificate.
//!
//! rustls with the `ring` provider: no system OpenSSL, nothing to link.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// ALPN for HTTP/2 (gRPC, H2PING).
pub(crate) const ALPN_H2: &[u8] = b"h2";
/// ALPN for HTTP/1.1 (the HTTP client here speaks only HTTP/1).
pub(crate) const ALPN_HTTP1: &[u8] = b"http/1.1";

fn provider() -> &'static Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// The system trust store's verifier, or `None` when the store has no usable
/// certificate (then every verified handshake fails with an unknown issuer, which
/// is what Go reports for an empty pool too).
fn system_verifier() -> Option<Arc<WebPkiServerVerifier>> {
    static VERIFIER: OnceLock<Option<Arc<WebPkiServerVerifier>>> = OnceLock::new();
    VERIFIER
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            for e in &loaded.errors {
                tracing::warn!(error = %e, "cannot read a system CA certificate for TLS checks");
            }
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
            tracing::debug!(added, ignored, "system CA certificates for TLS checks");
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider()))
                .build()
                .map_err(
                    |e| tracing::warn!(error = %e, "no trusted CA certificates for TLS checks"),
                )
                .ok()
        })
        .clone()
}

/// Where the agent's own TLS material for checks is (`enable_agent_tls_for_checks`).
/// Consul takes it from its internal-RPC TLS settings (`tls.internal_rpc`, which
/// inherits `tls.defaults` and the legacy top-level keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentTlsFiles {
    /// `ca_file`: PEM certificates to trust; wins over `ca_path`.
    pub ca_file: Option<PathBuf>,
    /// `ca_path`: a directory whose files (recursively) are PEM certificates to trust.
    pub ca_path: Option<PathBuf>,
    /// `cert_file`: the PEM certificate chain presented as a client certificate.
    pub cert_file: Option<PathBuf>,
    /// `key_file`: the PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// Why the agent's TLS material for checks cannot be used. Each message names the
/// file at fault, so the agent can refuse to start with it (as Consul does).
#[derive(Debug, thiserror::Error)]
pub enum AgentTlsError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not well-formed PEM.
    #[error("invalid PEM in {}: {detail}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        detail: String,
    },
    /// A CA file holds no certificate that can be trusted.
    #[error("no usable CA certificate in {}", path.display())]
    NoCa {
        /// The file.
        path: PathBuf,
    },
    /// `ca_path` holds no file.
    #[error("no CA certificates found in ca_path {}", path.display())]
    EmptyCaPath {
        /// The directory.
        path: PathBuf,
    },
    /// `cert_file` holds no certificate.
    #[error("no certificate in {}", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// `key_file` holds no private key.
    #[error("no private key in {}", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key cannot be used, or is not the certificate's.
    #[error("cannot use the key pair {} / {}: {detail}", cert.display(), key.display())]
    KeyPair {
        /// `cert_file`.
        cert: PathBuf,
        /// `key_file`.
        key: PathBuf,
        /// rustls's complaint.
        detail: String,
    },
}

/// The agent's own TLS settings lent to TLS checks (`enable_agent_tls_for_checks`):
/// its CAs replace the system's trust store, and its certificate is presented when
/// a server asks for one. Loaded once at agent start ([`AgentTls::load`]) and
/// shared by every check through [`crate::RunnerConfig::agent_tls`].
pub struct AgentTls {
    /// The agent's CA certificates; empty when it has none (the system's trust store
    /// is used then, as Go's nil `RootCAs`).
    cas: Vec<CertificateDer<'static>>,
    /// A verifier over `cas`, built once.
    verifier: Option<Arc<WebPkiServerVerifier>>,
    /// The client certificate and its key.
    client: Option<Arc<CertifiedKey>>,
    /// Tells loads apart in the HTTP client cache (module `http`), which outlives them.
    id: u64,
}

impl std::fmt::Debug for AgentTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key; the counts say what was loaded.
        f.debug_struct("AgentTls")
            .field("cas", &self.cas.len())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

/// Equal when they trust the same CAs and present the same certificate (a key is
/// checked against its certificate when loaded, so the same certificate means the
/// same key).
impl PartialEq for AgentTls {
    fn eq(&self, other: &Self) -> bool {
        self.cas == other.cas
            && self.client.as_ref().map(|c| &c.cert) == other.client.as_ref().map(|c| &c.cert)
    }
}

impl Eq for AgentTls {}

impl AgentTls {
    /// Reads the files as Consul's `tlsutil` does: `ca_file` when set, else every
    /// file under `ca_path` (each must hold a certificate); the key pair only when
    /// both `cert_file` and `key_file` are set. Nothing set gives the system's trust
    /// store and no client certificate, as in Consul.
    pub fn load(files: &AgentTlsFiles) -> Result<AgentTls, AgentTlsError> {
        let cas = match (&files.ca_file, &files.ca_path) {
            (Some(file), _) => ca_certificates(file)?,
            (None, Some(dir)) => {
                let mut found = Vec::new();
                walk(dir, &mut found)?;
                if found.is_empty() {
                    return Err(AgentTlsError::EmptyCaPath { path: dir.clone() });
                }
                let mut cas = Vec::new();
                for file in &found {
                    cas.extend(ca_certificates(file)?);
                }
                cas
            }
            (None, None) => Vec::new(),
        };
        let verifier = if cas.is_empty() {
            None
        } else {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(cas.iter().cloned());
            let origin = files.ca_file.as_ref().or(files.ca_path.as_ref());
            let built = WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::clone(provider()),
            )
            .build()
            .map_err(|_| AgentTlsError::NoCa {
                path: origin.cloned().unwrap_or_default(),
            })?;
            Some(built)
        };
        let client = match (&files.cert_file, &files.key_file) {
            (Some(cert), Some(key)) => Some(Arc::new(key_pair(cert, key)?)),
            (None, None) => None,
            _ => {
                // Consul ignores half a pair the same way; say so, since a server
                // that wants a client certificate will then refuse the checks.
                tracing::warn!(
                    "cert_file and key_file must both be set for checks to present a client certificate; presenting none"
                );
                None
            }
        };
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Ok(AgentTls {
            cas,
            verifier,
            client,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Identifies this load for caches of clients built from it.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The CA certificates loaded (empty when none was configured). The HTTPS
    /// listener verifies client certificates against them.
    pub fn ca_certificates(&self) -> &[CertificateDer<'static>] {
        &self.cas
    }

    /// The certificate and key loaded (`cert_file`/`key_file`): what checks
    /// present as a client, and what the HTTPS listener presents as a server.
    pub fn certified_key(&self) -> Option<Arc<CertifiedKey>> {
        self.client.clone()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, AgentTlsError> {
    std::fs::read(path).map_err(|source| AgentTlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM file; other sections are skipped, as Go does.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, AgentTlsError> {
    let pem = read(path)?;
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AgentTlsError::Pem {
            path: path.to_owned(),
            detail: e.to_string(),
        })
}

/// A CA file's certificates: at least one must be usable as a trust anchor (Go's
/// `AppendCertsFromPEM` fails only when none is).
fn ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, AgentTlsError> {
    let certs = certificates(path)?;
    let mut probe = RootCertStore::empty();
    let (added, ignored) = probe.add_parsable_certificates(certs.iter().cloned());
    if added == 0 {
        return Err(AgentTlsError::NoCa {
            path: path.to_owned(),
        });
    }
    if ignored > 0 {
        tracing::warn!(file = %path.display(), ignored, "CA certificates for checks that cannot be parsed were skipped");
    }
    Ok(certs)
}

/// The files under `dir`, recursively, in name order (Go's `filepath.Walk`).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), AgentTlsError> {
    let err = |source| AgentTlsError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        // Not following links to directories, as `filepath.Walk`.
        let is_dir = entry.file_type().map_err(err)?.is_dir();
        if is_dir {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn key_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, AgentTlsError> {
    let chain = certificates(cert)?;
    if chain.is_empty() {
        return Err(AgentTlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let pem = read(key)?;
    let private = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => AgentTlsError::NoKey {
            path: key.to_owned(),
        },
        other => AgentTlsError::Pem {
            path: key.to_owned(),
            detail: other.to_string(),
        },
    })?;
    CertifiedKey::from_der(chain, private, provider()).map_err(|e| AgentTlsError::KeyPair {
        cert: cert.to_owned(),
        key: key.to_owned(),
        detail: e.to_string(),
    })
}

/// Presents the agent's certificate whatever the server hints, as Go's
/// `GetClientCertificate` in Consul's configurator does.
#[derive(Debug)]
struct AgentClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for AgentClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// What a check's TLS settings make of the server's certificate.
#[derive(Debug)]
enum Trust {
    /// `tls_skip_verify`.
    Anything,
    /// Verify against the agent's CAs or the system roots; `name` replaces the name
    /// the connection was opened for (`tls_server_name`), when given.
    Roots {
        verifier: Option<Arc<WebPkiServerVerifier>>,
        name: Option<ServerName<'static>>,
    },
}

#[derive(Debug)]
struct CheckVerifier {
    trust: Trust,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for CheckVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.trust {
            Trust::Anything => Ok(ServerCertVerified::assertion()),
            Trust::Roots { verifier: None, .. } => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
            Trust::Roots {
                verifier: Some(v),
                name,
            } => v.verify_server_cert(
                end_entity,
                intermediates,
                name.as_ref().unwrap_or(server_name),
                ocsp_response,
                now,
            ),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `tls_server_name` as a rustls name (a DNS name or an IP address).
pub(crate) fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_owned())
        .map_err(|e| format!("invalid TLS server name {name:?}: {e}"))
}

/// A client configuration for one check's TLS settings. `verify_name` overrides the
/// name certificates are checked against (for the HTTP client, which opens
/// connections for the URL's host); `alpn` is offered as is; `agent` is the agent's
/// TLS for checks, when enabled.
pub(crate) fn client_config(
    skip_verify: bool,
    verify_name: Option<ServerName<'static>>,
    alpn: &[&[u8]],
    agent: Option<&AgentTls>,
) -> Result<ClientConfig, String> {
    let trust = if skip_verify {
        Trust::Anything
    } else {
        Trust::Roots {
            verifier: match agent.and_then(|a| a.verifier.as_ref()) {
                Some(v) => Some(Arc::clone(v)),
                None => system_verifier(),
            },
            name: verify_name,
        }
    };
    let verifier = CheckVerifier {
        trust,
        algorithms: provider().signature_verification_algorithms,
    };
    let builder = ClientConfig::builder_with_provider(Arc::clone(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match agent.and_then(|a| a.client.as_ref()) {
        Some(key) => builder.with_client_cert_resolver(Arc::new(AgentClientCert(Arc::clone(key)))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// The host part of `host:port` (brackets of an IPv6 literal removed), the name a
/// TLS connection to it is opened for unless the check sets `tls_server_name` (Go's
/// `tls.Dial` takes `ServerName` from the address the same way).
pub(crate) fn host_of(addr: &str) -> &str {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => addr,
    };
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// A check's TLS client, readied once: its configuration and the name it sends
/// (SNI) and verifies.
pub(crate) struct Connector {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// The client for a target whose host (no port, no brackets) is `host`: the name
    /// sent and checked is `tls_server_name` when set, else `host`.
    pub(crate) fn new(
        host: &str,
        skip_verify: bool,
        tls_server_name: &str,
        alpn: &[&[u8]],
        agent: Option<&AgentTls>,
    ) -> Result<Connector, String> {
        let name = if tls_server_name.is_empty() {
            host
        } else {
            tls_server_name
        };
        let name = server_name(name)?;
        // The connection is opened for `name` itself, so rustls checks it as is.
        let config = client_config(skip_verify, None, alpn, agent)?;
        Ok(Connector {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// Opens a TLS session over `stream`; errors read `tls: <cause>`.
    pub(crate) async fn connect(&self, stream: TcpStream) -> Result<TlsStream<TcpStream>, String> {
        self.connector
            .connect(self.name.clone(), stream)
            .await
            .map_err(|e| format!("tls: {}", super::error_chain(&e)))
    }
}

/// Opens a TLS session over `stream` for a check: the name sent (SNI) and checked
/// is `tls_server_name` when set, else the host of `addr`.
pub(crate) async fn connect(
    stream: TcpStream,
    addr: &str,
    skip_verify: bool,
    tls_server_name: &str,
    alpn: &[&[u8]],
    agent: Option<&AgentTls>,
) -> Result<TlsStream<TcpStream>, String> {
    Connector::new(host_of(addr), skip_verify, tls_server_name, alpn, agent)?
        .connect(stream)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_the_port_and_brackets() {
        assert_eq!(host_of("example.com:443"), "example.com");
        assert_eq!(host_of("127.0.0.1:8443"), "127.0.0.1");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(host_of("example.com"), "example.com");
    }

    /// `tls_server_name` replaces the name the connection was opened for; without it
    /// a certificate for another name is refused.
    #[test]
    fn the_server_name_is_what_the_certificate_must_match() {
        let cert = rcgen::generate_simple_self_signed(vec!["svc.internal".into()]).unwrap();
        let der = cert.cert.der().clone();
        let mut roots = RootCertStore::empty();
        roots.add(der.clone()).unwrap();
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider()))
                .build()
                .unwrap();
        let verifier = |name: Option<&str>| CheckVerifier {
            trust: Trust::Roots {
                verifier: Some(Arc::clone(&inner)),
                name: name.map(|n| server_name(n).unwrap()),
            },
            algorithms: provider().signature_verification_algorithms,
        };
        let dialed = server_name("127.0.0.1").unwrap();
        let verify = |v: CheckVerifier| {
            v.verify_server_cert(&der, &[], &dialed, &[], UnixTime::now())
                .map(|_| ())
        };
        assert_eq!(verify(verifier(Some("svc.internal"))), Ok(()));
        assert!(matches!(
            verify(verifier(None)),
            Err(rustls::Error::InvalidCertificate(_))
        ));
        assert!(matches!(
            verify(verifier(Some("other.internal"))),
            Err(rustls::Error::InvalidCertificate(_))
        ));
        let skip = CheckVerifier {
            trust: Trust::Anything,
            algorithms: provider().signature_verification_algorithms,
        };
        assert_eq!(verify(skip), Ok(()));
    }

    #[test]
    fn server_names_are_dns_names_or_addresses() {
        assert!(matches!(
            server_name("api.internal"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("10.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(server_name("not a name").is_err());
    }
}
