//! HTTPS, gRPC-over-TLS and H2PING-over-TLS checks against loopback servers holding
//! certificates made for the test:
//!
//! - a self-signed certificate: `tls_skip_verify` passes, the default
//!   (verification against the system's trust store) fails on the certificate;
//! - a server that records the SNI it receives: `tls_server_name` is what an HTTPS
//!   check sends, else the URL's host, while `Host` stays the URL's host;
//! - a test CA that signs the server's certificate and the agent's client
//!   certificate, the server requiring one: only checks lent the agent's TLS
//!   (`enable_agent_tls_for_checks`) pass.

use crate::grpc::{health_server_with, Statuses};
use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HOST;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;
use tribune_health::probe::ServingStatus;
use tribune_health::{AgentTls, AgentTlsError, AgentTlsFiles};
use tribune_types::HealthStatus::{Critical, Passing};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn key_der(key: &rcgen::KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(key.serialize_der().into())
}

/// A server configuration with a fresh self-signed certificate for `localhost` and
/// 127.0.0.1, offering `alpn`.
fn acceptor(alpn: &[&[u8]]) -> TlsAcceptor {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("self-signed certificate");
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key_der(&cert.key_pair))
        .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsAcceptor::from(Arc::new(config))
}

/// An HTTPS/1.1 server with a self-signed certificate (see [`https_server_with`]).
async fn https_server() -> SocketAddr {
    https_server_with(acceptor(&[b"http/1.1"])).await
}

/// An HTTPS/1.1 server answering every request `200 OK` with `ok`, except
/// `/host`, answered with the request's `Host` header.
async fn https_server_with(tls: TlsAcceptor) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(stream).await else {
                    return;
                };
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = if req.uri().path() == "/host" {
                        let host = req.headers().get(HOST).map(|h| h.as_bytes().to_vec());
                        Bytes::from(host.unwrap_or_default())
                    } else {
                        Bytes::from_static(b"ok")
                    };
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Hands out one certificate and reports the SNI of every handshake (`None`: the
/// client sent none).
#[derive(Debug)]
struct SniRecorder {
    key: Arc<CertifiedKey>,
    seen: mpsc::UnboundedSender<Option<String>>,
}

impl ResolvesServerCert for SniRecorder {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let _ = self.seen.send(hello.server_name().map(str::to_owned));
        Some(Arc::clone(&self.key))
    }
}

/// An HTTPS server (self-signed) reporting the SNI of each connection.
async fn sni_server() -> (SocketAddr, mpsc::UnboundedReceiver<Option<String>>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let key = CertifiedKey::from_der(
        vec![cert.cert.der().clone()],
        key_der(&cert.key_pair),
        &provider(),
    )
    .expect("certified key");
    let (seen, snis) = mpsc::unbounded_channel();
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniRecorder {
            key: Arc::new(key),
            seen,
        }));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let addr = https_server_with(TlsAcceptor::from(Arc::new(config))).await;
    (addr, snis)
}

async fn next_sni(snis: &mut mpsc::UnboundedReceiver<Option<String>>) -> Option<String> {
    tokio::time::timeout(WAIT, snis.recv())
        .await
        .expect("a handshake in time")
        .expect("server running")
}

/// A directory of its own under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "tribune-health-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).expect("temporary directory");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("directory");
        }
        std::fs::write(&path, text).expect("write");
        path
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test CA, a server certificate it signed for `localhost` and 127.0.0.1, and a
/// client certificate it signed for the agent.
struct Pki {
    ca: rcgen::Certificate,
    server: (rcgen::Certificate, rcgen::KeyPair),
    client: (rcgen::Certificate, rcgen::KeyPair),
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Tribune test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = params.self_signed(&ca_key).expect("CA certificate");
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("leaf key");
            let mut params = CertificateParams::new(names).expect("leaf params");
            params.extended_key_usages = vec![usage];
            let cert = params
                .signed_by(&key, &ca, &ca_key)
                .expect("leaf certificate");
            (cert, key)
        };
        let server = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = leaf(
            vec!["agent.test".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Pki { ca, server, client }
    }

    /// A server with the CA-signed certificate that requires a client certificate
    /// signed by the CA, offering `alpn`.
    fn mutual_acceptor(&self, alpn: &[&[u8]]) -> TlsAcceptor {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).expect("CA root");
        let clients = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .expect("client verifier");
        let chain: Vec<CertificateDer<'static>> = vec![self.server.0.der().clone()];
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_client_cert_verifier(clients)
            .with_single_cert(chain, key_der(&self.server.1))
            .expect("server config");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsAcceptor::from(Arc::new(config))
    }

    /// The agent's files: the CA, and the client certificate and key.
    fn agent_files(&self, dir: &TempDir) -> AgentTlsFiles {
        AgentTlsFiles {
            ca_file: Some(dir.write("ca.pem", &self.ca.pem())),
            ca_path: None,
            cert_file: Some(dir.write("client.pem", &self.client.0.pem())),
            key_file: Some(dir.write("client-key.pem", &self.client.1.serialize_pem())),
        }
    }
}

#[tokio::test]
async fn https_passes_with_skip_verify_and_fails_on_an_untrusted_certificate() {
    let addr = https_server().await;
    let url = format!("https://{addr}/health");
    let (runner, mut rx) = runner(false);
    let mut skip = def("skip");
    skip.http = url.clone();
    skip.tls_skip_verify = true;
    let mut verify = def("verify");
    verify.http = url.clone();
    // The name the certificate is made for: the failure is about its issuer.
    verify.tls_server_name = "localhost".into();
    runner.add(&skip).expect("add");
    runner.add(&verify).expect("add");

    let r = next_for(&mut rx, "skip").await;
    assert_eq!(
        (r.status, r.output),
        (Passing, format!("HTTP GET {url}: 200 OK Output: ok"))
    );
    let r = next_for(&mut rx, "verify").await;
    assert_eq!(r.status, Critical);
    assert!(
        r.output.starts_with(&format!("Get \"{url}\": ")),
        "{}",
        r.output
    );
    assert!(r.output.contains("certificate"), "{}", r.output);
    runner.shutdown().await;
}

#[tokio::test]
async fn grpc_over_tls_passes_with_skip_verify_only() {
    let statuses: Statuses = Arc::default();
    statuses
        .lock()
        .expect("lock")
        .insert(String::new(), ServingStatus::Serving);
    let addr = health_server_with(statuses, Some(acceptor(&[b"h2"]))).await;
    let (runner, mut rx) = runner(false);
    let mut skip = def("grpc-skip");
    skip.grpc = addr.to_string();
    skip.grpc_use_tls = true;
    skip.tls_skip_verify = true;
    let mut verify = def("grpc-verify");
    verify.grpc = addr.to_string();
    verify.grpc_use_tls = true;
    let mut cleartext = def("grpc-cleartext");
    cleartext.grpc = addr.to_string();
    for d in [&skip, &verify, &cleartext] {
        runner.add(d).expect("add");
    }

    let r = next_for(&mut rx, "grpc-skip").await;
    assert_eq!(
        (r.status, r.output),
        (Passing, format!("gRPC check {addr}: success"))
    );
    let r = next_for(&mut rx, "grpc-verify").await;
    assert_eq!(r.status, Critical);
    assert!(
        r.output
            .starts_with("rpc error: code = Unavailable desc = connection error: "),
        "{}",
        r.output
    );
    assert!(r.output.contains("certificate"), "{}", r.output);
    // Cleartext HTTP/2 against a TLS port is a failure, not a hang.
    let r = next_for(&mut rx, "grpc-cleartext").await;
    assert_eq!(r.status, Critical);
    runner.shutdown().await;
}

#[tokio::test]
async fn h2ping_over_tls_passes_with_skip_verify_only() {
    let addr = health_server_with(Arc::default(), Some(acceptor(&[b"h2"]))).await;
    let (runner, mut rx) = runner(false);
    let mut skip = def("h2-skip");
    skip.h2ping = addr.to_string();
    skip.h2ping_use_tls = true;
    skip.tls_skip_verify = true;
    let mut verify = def("h2-verify");
    verify.h2ping = addr.to_string();
    verify.h2ping_use_tls = true;
    verify.tls_server_name = "localhost".into();
    runner.add(&skip).expect("add");
    runner.add(&verify).expect("add");

    let r = next_for(&mut rx, "h2-skip").await;
    assert_eq!(
        (r.status, r.output.as_str()),
        (Passing, "HTTP2 ping was successful")
    );
    let r = next_for(&mut rx, "h2-verify").await;
    assert_eq!(r.status, Critical);
    assert!(
        r.output
            .starts_with(&format!("Failed to dial to {addr}: tls: ")),
        "{}",
        r.output
    );
    assert!(r.output.contains("certificate"), "{}", r.output);
    runner.shutdown().await;
}

/// As Go's `tls.Config.ServerName`: `tls_server_name` is the SNI (and `Host` stays
/// the URL's); without it the SNI is the URL's host, and an IP address sends none.
#[tokio::test]
async fn https_sends_tls_server_name_in_sni() {
    let (named_addr, mut named) = sni_server().await;
    let (host_addr, mut host) = sni_server().await;
    let (ip_addr, mut ip) = sni_server().await;
    let named_url = format!("https://localhost:{}/host", named_addr.port());
    let (runner, mut rx) = runner(false);
    let mut with_name = def("named");
    with_name.http = named_url.clone();
    with_name.tls_server_name = "svc.example".into();
    with_name.tls_skip_verify = true;
    let mut without = def("host");
    without.http = format!("https://localhost:{}/", host_addr.port());
    without.tls_skip_verify = true;
    let mut by_ip = def("ip");
    by_ip.http = format!("https://{ip_addr}/");
    by_ip.tls_skip_verify = true;
    for d in [&with_name, &without, &by_ip] {
        runner.add(d).expect("add");
    }

    assert_eq!(next_sni(&mut named).await.as_deref(), Some("svc.example"));
    assert_eq!(next_sni(&mut host).await.as_deref(), Some("localhost"));
    assert_eq!(next_sni(&mut ip).await, None);
    let r = next_for(&mut rx, "named").await;
    assert_eq!(
        (r.status, r.output),
        (
            Passing,
            format!(
                "HTTP GET {named_url}: 200 OK Output: localhost:{}",
                named_addr.port()
            )
        )
    );
    assert_eq!(next_for(&mut rx, "host").await.status, Passing);
    assert_eq!(next_for(&mut rx, "ip").await.status, Passing);
    runner.shutdown().await;
}

/// `enable_agent_tls_for_checks`: the agent's CA verifies the server and its
/// certificate satisfies a server that requires one; without it the same check
/// fails on the issuer, and skipping verification does not make up for the
/// missing client certificate.
#[tokio::test]
async fn https_with_agent_tls_trusts_its_ca_and_presents_its_certificate() {
    let pki = Pki::new();
    let dir = TempDir::new();
    let agent = Arc::new(AgentTls::load(&pki.agent_files(&dir)).expect("agent TLS"));
    let addr = https_server_with(pki.mutual_acceptor(&[b"http/1.1"])).await;
    let url = format!("https://localhost:{}/health", addr.port());
    let check = |id: &str| {
        let mut d = def(id);
        d.http = url.clone();
        d
    };

    let (with_agent, mut rx) = runner_with(false, Some(agent));
    with_agent.add(&check("agent")).expect("add");
    let r = next_for(&mut rx, "agent").await;
    assert_eq!(
        (r.status, r.output),
        (Passing, format!("HTTP GET {url}: 200 OK Output: ok"))
    );
    with_agent.shutdown().await;

    let (without, mut rx) = runner(false);
    let mut skip = check("skip");
    skip.tls_skip_verify = true;
    without.add(&check("system")).expect("add");
    without.add(&skip).expect("add");
    let r = next_for(&mut rx, "system").await;
    assert_eq!(r.status, Critical);
    assert!(
        r.output.starts_with(&format!("Get \"{url}\": tls: ")),
        "{}",
        r.output
    );
    assert!(r.output.contains("UnknownIssuer"), "{}", r.output);
    assert_eq!(next_for(&mut rx, "skip").await.status, Critical);
    without.shutdown().await;
}

/// The agent's TLS reaches gRPC and H2PING checks over TLS too.
#[tokio::test]
async fn grpc_and_h2ping_over_tls_use_agent_tls() {
    let pki = Pki::new();
    let dir = TempDir::new();
    let agent = Arc::new(AgentTls::load(&pki.agent_files(&dir)).expect("agent TLS"));
    let statuses: Statuses = Arc::default();
    statuses
        .lock()
        .expect("lock")
        .insert(String::new(), ServingStatus::Serving);
    let addr = health_server_with(statuses, Some(pki.mutual_acceptor(&[b"h2"]))).await;
    let (runner, mut rx) = runner_with(false, Some(agent));
    let mut grpc = def("grpc");
    grpc.grpc = addr.to_string();
    grpc.grpc_use_tls = true;
    let mut h2 = def("h2");
    h2.h2ping = addr.to_string();
    h2.h2ping_use_tls = true;
    runner.add(&grpc).expect("add");
    runner.add(&h2).expect("add");

    let r = next_for(&mut rx, "grpc").await;
    assert_eq!(
        (r.status, r.output),
        (Passing, format!("gRPC check {addr}: success"))
    );
    let r = next_for(&mut rx, "h2").await;
    assert_eq!(
        (r.status, r.output.as_str()),
        (Passing, "HTTP2 ping was successful")
    );
    runner.shutdown().await;
}

/// Loading follows Consul's `tlsutil`: `ca_path` is walked when there is no
/// `ca_file`, and each bad file is named in the error.
#[test]
fn agent_tls_loading_reports_bad_files() {
    let pki = Pki::new();
    let dir = TempDir::new();
    let files = pki.agent_files(&dir);

    let cas = dir.write("cas/nested/ca.pem", &pki.ca.pem());
    let by_path = AgentTlsFiles {
        ca_file: None,
        ca_path: Some(dir.path().join("cas")),
        ..files.clone()
    };
    let by_file = AgentTls::load(&files).expect("by ca_file");
    assert_eq!(AgentTls::load(&by_path).expect("by ca_path"), by_file);

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let err = AgentTls::load(&AgentTlsFiles {
        ca_path: Some(empty.clone()),
        ..AgentTlsFiles::default()
    })
    .expect_err("empty ca_path");
    assert!(matches!(err, AgentTlsError::EmptyCaPath { .. }), "{err}");

    let not_pem = dir.write("cas/readme.txt", "not a certificate");
    let err = AgentTls::load(&by_path).expect_err("a file without certificates");
    assert_eq!(
        err.to_string(),
        format!("no usable CA certificate in {}", not_pem.display())
    );
    std::fs::remove_file(&not_pem).expect("rm");
    assert!(cas.exists());

    // The server's key with the client's certificate.
    let wrong_key = dir.write("server-key.pem", &pki.server.1.serialize_pem());
    let err = AgentTls::load(&AgentTlsFiles {
        key_file: Some(wrong_key),
        ..files.clone()
    })
    .expect_err("mismatched key");
    assert!(matches!(err, AgentTlsError::KeyPair { .. }), "{err}");

    let err = AgentTls::load(&AgentTlsFiles {
        key_file: files.cert_file.clone(),
        ..files.clone()
    })
    .expect_err("no key");
    assert!(matches!(err, AgentTlsError::NoKey { .. }), "{err}");
}

/// The TLS handshake is part of the run's timeout: a server that never answers
/// the ClientHello gives the HTTP client's timeout message.
#[tokio::test]
async fn https_handshakes_count_against_the_timeout() {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            // Read (and ignore) until the client gives up, answering nothing.
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    let url = format!("https://{addr}/");
    let spec = tribune_health::ProbeSpec::Http(tribune_health::plan::HttpSpec {
        url: url.clone(),
        tls_skip_verify: true,
        ..Default::default()
    });
    let p = tribune_health::probe::run(&spec, std::time::Duration::from_millis(200), 4096).await;
    assert_eq!(
        p,
        tribune_health::Probe::critical(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        ))
    );
}
