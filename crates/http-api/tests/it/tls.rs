//! The HTTPS listener (`serve_tls`) with client certificates required: a client
//! that has none must learn why, not see its connection reset.

use std::io::{Read as _, Write as _};
use std::sync::Arc;

use tokio_rustls::rustls;

/// A CA, and a server certificate for 127.0.0.1 it signed: (CA DER, server
/// certificate DER, server key DER).
fn certificates() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.der().to_vec(), cert.der().to_vec(), key.serialize_der())
}

/// Serves a router answering `ok` at `/` over HTTPS with `server`, at most
/// `max_conns` connections per client (0: no limit): its address, and the
/// configuration's sender, to keep while the server is used.
async fn serve(
    server: rustls::ServerConfig,
    max_conns: u32,
) -> (
    std::net::SocketAddr,
    tokio::sync::watch::Sender<Arc<rustls::ServerConfig>>,
) {
    let (keep, config) = tokio::sync::watch::channel(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = tribune_http_api::Api::new(
        axum::Router::new().route("/", axum::routing::get(|| async { "ok" })),
        &tribune_http_api::HttpConfig::default(),
    );
    tokio::spawn(tribune_http_api::serve_tls(
        tribune_http_api::TlsListener::Tcp(listener),
        router,
        config,
        std::time::Duration::from_secs(10),
        tribune_http_api::ConnLimiter::new(max_conns),
        std::future::pending(),
    ));
    (addr, keep)
}

/// With TLS 1.3 a client sends its request right after its side of the
/// handshake, before the server has refused its (missing) certificate. The
/// server must end the connection so that the client reads the
/// `certificate_required` alert: closing with the request unread would reset
/// the connection, and the Go client's `TestAPI_ClientTLSOptions` then saw
/// "broken pipe" about one run in five. The client here waits for the alert
/// before it writes, the order in which the reset used to hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_reads_the_alert() {
    let (ca, cert, key) = certificates();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone().into()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots.clone()),
        Arc::clone(&provider),
    )
    .build()
    .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .unwrap();
    let (addr, _keep) = serve(server, 0).await;
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    tokio::task::spawn_blocking(move || {
        for attempt in 0..5 {
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let mut conn = rustls::ClientConnection::new(Arc::clone(&client), name).unwrap();
            let mut tcp = std::net::TcpStream::connect(addr).unwrap();
            // The client's side of the handshake, which ends with its Finished.
            while conn.is_handshaking() {
                conn.complete_io(&mut tcp).unwrap();
            }
            // Wait until the server has answered it (with its alert), as a client
            // that sets up its HTTP connection first would.
            tcp.peek(&mut [0u8; 1]).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            // The request, in two writes: had the server closed its socket, the
            // first would have drawn a reset and the second would fail.
            for part in ["GET / HTTP/1.1\r\n", "Host: x\r\n\r\n"] {
                tls.write_all(part.as_bytes())
                    .and_then(|()| tls.flush())
                    .unwrap_or_else(|e| panic!("attempt {attempt}: write: {e}"));
            }
            let mut buf = Vec::new();
            let err = tls
                .read_to_end(&mut buf)
                .expect_err("the server must refuse a client without a certificate");
            let alert = err
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .cloned();
            assert_eq!(
                alert,
                Some(rustls::Error::AlertReceived(
                    rustls::AlertDescription::CertificateRequired
                )),
                "attempt {attempt}: {err}"
            );
        }
    })
    .await
    .unwrap();
}

/// `limits.http_max_conns_per_client` on HTTPS: as Consul does, the refusal
/// is written over TLS, so the client reads the 429 rather than a failed
/// handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_the_connection_limit_reads_the_429_over_tls() {
    let (ca, cert, key) = certificates();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .unwrap();
    let (addr, _keep) = serve(server, 1).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.into()).unwrap();
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    tokio::task::spawn_blocking(move || {
        let connect = || {
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let conn = rustls::ClientConnection::new(Arc::clone(&client), name).unwrap();
            let tcp = std::net::TcpStream::connect(addr).unwrap();
            rustls::StreamOwned::new(conn, tcp)
        };
        // The first connection is served and kept open.
        let mut first = connect();
        first
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut head = [0u8; 15];
        first.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200 OK");
        // The second is answered with the 429 and closed.
        let mut second = connect();
        second
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        second.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 429 Too Many Requests\r\n")
                && answer.ends_with(
                    "\r\n\r\nYour IP is issuing too many concurrent connections, please rate limit your calls\n"
                ),
            "{answer}"
        );
        drop(first);
    })
    .await
    .unwrap();
}
