//! HTTPS, gRPC-over-TLS and H2PING-over-TLS checks against loopback servers holding
//! a self-signed certificate made for the test: `tls_skip_verify` passes, the
//! default (verification against the system's trust store) fails on the
//! certificate.

use crate::grpc::{health_server_with, Statuses};
use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tribune_health::probe::ServingStatus;
use tribune_types::HealthStatus::{Critical, Passing};

/// A server configuration with a fresh self-signed certificate for `localhost` and
/// 127.0.0.1, offering `alpn`.
fn acceptor(alpn: &[&[u8]]) -> TlsAcceptor {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("self-signed certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsAcceptor::from(Arc::new(config))
}

/// An HTTPS/1.1 server answering every request `200 OK` with `ok`.
async fn https_server() -> SocketAddr {
    let tls = acceptor(&[b"http/1.1"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(stream).await else {
                    return;
                };
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
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
