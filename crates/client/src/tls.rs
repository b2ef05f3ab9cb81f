//! TLS for `https://` agents, as the Go client's `SetupTLSConfig` sets it up:
//! the CAs to trust (`CONSUL_CACERT` / `-ca-file`, else every file under
//! `CONSUL_CAPATH` / `-ca-path`, else the system's), a client certificate
//! (`CONSUL_CLIENT_CERT` + `CONSUL_CLIENT_KEY`), the name to verify
//! (`CONSUL_TLS_SERVER_NAME`, else the address's host) and
//! `CONSUL_HTTP_SSL_VERIFY=false`, which trusts any certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::Error;

/// TLS settings for an `https://` agent (the Go client's `TLSConfig`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM certificates to trust (`CONSUL_CACERT`); wins over `ca_path`.
    pub ca_file: Option<PathBuf>,
    /// A directory of PEM certificates to trust (`CONSUL_CAPATH`).
    pub ca_path: Option<PathBuf>,
    /// The client certificate (`CONSUL_CLIENT_CERT`).
    pub cert_file: Option<PathBuf>,
    /// Its key (`CONSUL_CLIENT_KEY`).
    pub key_file: Option<PathBuf>,
    /// The name the agent's certificate must carry (`CONSUL_TLS_SERVER_NAME`),
    /// instead of the address's host; a port is ignored, as in Go.
    pub server_name: Option<String>,
    /// Trust any certificate (`CONSUL_HTTP_SSL_VERIFY=false`).
    pub insecure_skip_verify: bool,
}

fn tls_error(message: String) -> Error {
    Error::Tls(message)
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| tls_error(format!("{what}: open {}: {e}", path.display())))
}

fn pem_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read(path, what)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    if certs.is_empty() {
        return Err(tls_error(format!(
            "{what}: Couldn't parse PEM in: {}",
            path.display()
        )));
    }
    Ok(certs)
}

/// Every file under `dir`. Symbolic links to directories are not followed
/// (a link loop must not recurse for ever); a link to a file is read.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let failed = |path: &Path, e: std::io::Error| {
        tls_error(format!(
            "Error loading file from CAPath: open {}: {e}",
            path.display()
        ))
    };
    for entry in std::fs::read_dir(dir).map_err(|e| failed(dir, e))? {
        let entry = entry.map_err(|e| failed(dir, e))?;
        let path = entry.path();
        if entry.file_type().map_err(|e| failed(&path, e))?.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn roots(opts: &TlsOptions) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    let certs = match (&opts.ca_file, &opts.ca_path) {
        (Some(file), _) => pem_certificates(file, "Error loading CA File")?,
        (None, Some(dir)) => {
            let mut files = Vec::new();
            walk(dir, &mut files)?;
            files.sort();
            let mut certs = Vec::new();
            for f in files {
                certs.extend(pem_certificates(&f, "Error loading CA Path")?);
            }
            certs
        }
        // Go's nil RootCAs: the system's trust store.
        (None, None) => rustls_native_certs::load_native_certs().certs,
    };
    roots.add_parsable_certificates(certs);
    Ok(roots)
}

/// The rustls configuration for an `https://` agent.
pub(crate) fn client_config(opts: &TlsOptions) -> Result<ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = if opts.insecure_skip_verify {
        Arc::new(TrustAnything(Arc::clone(&provider)))
    } else {
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(opts)?), provider)
            .build()
            .map_err(|e| tls_error(format!("no usable CA certificate: {e}")))?;
        match opts.server_name.as_deref().map(strip_port) {
            Some(name) if !name.is_empty() => {
                let name = ServerName::try_from(name.to_owned())
                    .map_err(|e| tls_error(format!("invalid TLS server name {name:?}: {e}")))?;
                Arc::new(NamedServer { inner, name })
            }
            _ => inner,
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&opts.cert_file, &opts.key_file) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| tls_error(format!("open {}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| tls_error(format!("open {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| tls_error(format!("tls: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(tls_error(
                "both client cert and client key must be provided".into(),
            ))
        }
    };
    // reqwest is built without its `http2` feature here, so offer only HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `host:port` → `host`, `[::1]:80` → `::1` (Go's `net.SplitHostPort`, with the
/// whole text kept when there is no port).
fn strip_port(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            if tail.is_empty() || tail.starts_with(':') {
                return if tail.is_empty() { addr } else { host };
            }
        }
        return addr;
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            host
        }
        _ => addr,
    }
}

/// Verifies the agent's certificate against a configured name rather than the
/// host the request was sent to.
#[derive(Debug)]
struct NamedServer {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Go's `InsecureSkipVerify`: any certificate and name. The handshake's
/// signatures are still checked, so the session is at least with the holder of
/// the certificate's key.
#[derive(Debug)]
struct TrustAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for TrustAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_as_go_does() {
        assert_eq!(strip_port("consul.test"), "consul.test");
        assert_eq!(strip_port("consul.test:8501"), "consul.test");
        assert_eq!(strip_port("127.0.0.1:80"), "127.0.0.1");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
    }

    #[test]
    fn half_a_key_pair_and_missing_files_are_refused() {
        let half = TlsOptions {
            cert_file: Some("/x.crt".into()),
            insecure_skip_verify: true,
            ..TlsOptions::default()
        };
        assert_eq!(
            client_config(&half).err().map(|e| e.to_string()).as_deref(),
            Some("both client cert and client key must be provided")
        );
        let missing = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        assert!(client_config(&missing).err().is_some_and(|e| e
            .to_string()
            .starts_with("Error loading CA File: open /nonexistent/ca.pem")));
    }
}
