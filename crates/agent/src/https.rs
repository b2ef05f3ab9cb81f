//! The HTTPS API's TLS settings (`tls.https`, which falls back to `tls.defaults`
//! and the legacy top-level keys): the certificate and key the listener
//! presents, and with `verify_incoming` the CAs a client certificate must chain
//! to, as Consul's `IncomingHTTPSConfig` sets them.
//!
//! An HTTPS port without a certificate is not an error (Consul's test helper
//! gives every agent one): the listener binds and every handshake fails.

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use std::sync::Arc;
use tribune_health::{AgentTls, AgentTlsError, AgentTlsFiles};

use crate::config::TlsProtocol;

/// Why the HTTPS listener cannot be configured; the agent refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    /// A file named in `tls.https` cannot be used.
    #[error("{0}")]
    Files(#[from] AgentTlsError),
    /// `verify_incoming` without a CA to verify against.
    #[error("VerifyIncoming set but no CA certificates were provided")]
    NoCa,
    /// `verify_incoming` without a certificate to present.
    #[error("VerifyIncoming requires either a Cert and Key pair in the configuration file, or auto_encrypt/auto_config be enabled")]
    NoCertificate,
    /// `tls_min_version` is not one of Consul's names.
    #[error("tls.https.tls_min_version: invalid TLS version: no matching TLS version found for {0}, please specify one of [TLS_AUTO, TLSv1_0, TLSv1_1, TLSv1_2, TLSv1_3]")]
    Version(String),
    /// rustls refused the settings.
    #[error("cannot configure TLS for the HTTPS API: {0}")]
    Rustls(String),
}

/// Presents the one configured certificate, or none (the handshake then fails).
#[derive(Debug)]
struct Certificate(Option<Arc<CertifiedKey>>);

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.clone()
    }
}

/// The rustls configuration for the HTTPS listener. TLS 1.2 and 1.3 are offered
/// (rustls has nothing older, so Consul's `TLSv1_0`/`TLSv1_1` minimums mean 1.2);
/// `TLSv1_3` offers 1.3 only. `tls_cipher_suites` chooses the TLS 1.2 suites
/// (see [`crate::tls_suites`]). ALPN offers HTTP/2 and HTTP/1.1, as Consul's listener does.
pub fn server_config(tls: &TlsProtocol) -> Result<Arc<ServerConfig>, HttpsError> {
    let loaded = AgentTls::load(&AgentTlsFiles {
        ca_file: tls.ca_file.clone(),
        ca_path: tls.ca_path.clone(),
        cert_file: tls.cert_file.clone(),
        key_file: tls.key_file.clone(),
    })?;
    let (provider, tls13_only) = crate::tls_suites::protocol(
        tls.tls_min_version.as_deref(),
        tls.tls_cipher_suites.as_deref(),
    )
    .map_err(HttpsError::Version)?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = if tls13_only {
        &[&rustls::version::TLS13]
    } else {
        rustls::ALL_VERSIONS
    };
    let provider = Arc::new(provider);
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| HttpsError::Rustls(e.to_string()))?;
    let cert = loaded.certified_key();
    let builder = if tls.verify_incoming {
        if loaded.ca_certificates().is_empty() {
            return Err(HttpsError::NoCa);
        }
        if cert.is_none() {
            return Err(HttpsError::NoCertificate);
        }
        builder.with_client_cert_verifier(client_verifier(&loaded, provider)?)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_cert_resolver(Arc::new(Certificate(cert)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn client_verifier(
    loaded: &AgentTls,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, HttpsError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(loaded.ca_certificates().iter().cloned());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| HttpsError::Rustls(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused_with_consuls_words() {
        // No certificate at all is a listener whose handshakes fail, not an error.
        assert!(server_config(&TlsProtocol::default()).is_ok());
        let bad_version = TlsProtocol {
            tls_min_version: Some("tls9".into()),
            ..TlsProtocol::default()
        };
        assert!(server_config(&bad_version).err().is_some_and(|e| e
            .to_string()
            .contains("no matching TLS version found for tls9")));
        let verify = TlsProtocol {
            verify_incoming: true,
            ..TlsProtocol::default()
        };
        assert_eq!(
            server_config(&verify)
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("VerifyIncoming set but no CA certificates were provided")
        );
        let missing = TlsProtocol {
            cert_file: Some("/nonexistent/cert.pem".into()),
            key_file: Some("/nonexistent/key.pem".into()),
            ..TlsProtocol::default()
        };
        assert!(server_config(&missing)
            .err()
            .is_some_and(|e| e.to_string().contains("/nonexistent/cert.pem")));
    }

    #[test]
    fn verify_incoming_needs_a_certificate_and_tls13_alone_is_accepted() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap_or_else(|e| panic!("{e}"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        let (ca, pem_key) = (dir.path().join("ca.pem"), dir.path().join("key.pem"));
        std::fs::write(&ca, cert.pem()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&pem_key, key.serialize_pem()).unwrap_or_else(|e| panic!("{e}"));
        let only_ca = TlsProtocol {
            ca_file: Some(ca.clone()),
            verify_incoming: true,
            ..TlsProtocol::default()
        };
        assert!(matches!(
            server_config(&only_ca),
            Err(HttpsError::NoCertificate)
        ));
        let full = TlsProtocol {
            cert_file: Some(ca.clone()),
            key_file: Some(pem_key),
            tls_min_version: Some("TLSv1_3".into()),
            ..only_ca
        };
        assert!(server_config(&full).is_ok());
    }
}

#[cfg(test)]
mod suites {
    use super::*;
    use rustls::crypto::ring::cipher_suite as ring;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, ServerConnection};

    /// Whether a client offering `suites` over `versions` completes a
    /// handshake with `server` (in memory).
    fn handshake(
        server: Arc<ServerConfig>,
        ca: &rcgen::Certificate,
        suites: &[rustls::SupportedCipherSuite],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> bool {
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = suites.to_vec();
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let client = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            if s.read_tls(&mut buf.as_slice()).is_err() || s.process_new_packets().is_err() {
                return false;
            }
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            if c.read_tls(&mut buf.as_slice()).is_err() || c.process_new_packets().is_err() {
                return false;
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                return true;
            }
        }
        false
    }

    #[test]
    fn tls_1_2_offers_only_the_suites_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &cert, &ca_key)
            .unwrap();
        let (pem, pem_key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&pem, leaf.pem()).unwrap();
        std::fs::write(&pem_key, key.serialize_pem()).unwrap();
        let server = |suites: &str| {
            server_config(&TlsProtocol {
                cert_file: Some(pem.clone()),
                key_file: Some(pem_key.clone()),
                tls_cipher_suites: Some(suites.to_owned()),
                ..TlsProtocol::default()
            })
            .unwrap()
        };
        let tls12 = &[&rustls::version::TLS12];
        let aes256 = server("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");
        let offered = [ring::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384];
        let other = [ring::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256];
        assert!(handshake(aes256.clone(), &cert, &offered, tls12));
        assert!(!handshake(aes256.clone(), &cert, &other, tls12));
        // TLS 1.3 is not touched.
        let tls13 = [ring::TLS13_AES_128_GCM_SHA256];
        assert!(handshake(aes256, &cert, &tls13, &[&rustls::version::TLS13]));
        // CBC suites alone leave TLS 1.2 nothing: TLS 1.3 only, even for a
        // client offering every TLS 1.2 suite there is.
        let every_tls12: Vec<_> = rustls::crypto::ring::default_provider()
            .cipher_suites
            .into_iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .collect();
        assert!(
            handshake(server(""), &cert, &every_tls12, tls12),
            "the defaults"
        );
        let cbc = server("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA");
        assert!(!handshake(cbc.clone(), &cert, &every_tls12, tls12));
        assert!(handshake(cbc, &cert, &tls13, &[&rustls::version::TLS13]));
    }
}
