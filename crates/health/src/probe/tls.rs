//! TLS client settings for HTTPS, gRPC-over-TLS and H2PING-over-TLS checks, as
//! Consul's `OutgoingTLSConfigForCheck(TLSSkipVerify, TLSServerName)` builds them
//! when the agent has no TLS of its own for checks (`enable_agent_tls_for_checks`,
//! which this build does not have):
//!
//! - certificates are verified against the system's trust store (Go's
//!   `SystemCertPool`), loaded once per process;
//! - `tls_skip_verify` accepts any certificate (Go's `InsecureSkipVerify`); the
//!   handshake signatures are still checked, so the peer must hold the key of the
//!   certificate it sent;
//! - `tls_server_name` is the name the certificate must match instead of the
//!   target's host.
//!
//! rustls with the `ring` provider: no system OpenSSL, nothing to link.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::sync::{Arc, OnceLock};

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

/// What a check's TLS settings make of the server's certificate.
#[derive(Debug)]
enum Trust {
    /// `tls_skip_verify`.
    Anything,
    /// Verify against the system roots; `name` replaces the name the connection
    /// was opened for (`tls_server_name`), when given.
    System {
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
            Trust::System { verifier: None, .. } => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
            Trust::System {
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
/// connections for the URL's host); `alpn` is offered as is.
pub(crate) fn client_config(
    skip_verify: bool,
    verify_name: Option<ServerName<'static>>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, String> {
    let trust = if skip_verify {
        Trust::Anything
    } else {
        Trust::System {
            verifier: system_verifier(),
            name: verify_name,
        }
    };
    let verifier = CheckVerifier {
        trust,
        algorithms: provider().signature_verification_algorithms,
    };
    let mut config = ClientConfig::builder_with_provider(Arc::clone(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
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

/// Opens a TLS session over `stream` for a check: the name sent (SNI) and checked
/// is `tls_server_name` when set, else the host of `addr`.
pub(crate) async fn connect(
    stream: tokio::net::TcpStream,
    addr: &str,
    skip_verify: bool,
    tls_server_name: &str,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let name = if tls_server_name.is_empty() {
        host_of(addr)
    } else {
        tls_server_name
    };
    let name = server_name(name)?;
    let config = client_config(skip_verify, None, alpn)?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| format!("tls: {}", super::error_chain(&e)))
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
            trust: Trust::System {
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
