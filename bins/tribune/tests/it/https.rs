//! The HTTPS API next to plain HTTP, reached by the `tribune` CLI with Consul's
//! TLS flags: a CA and certificates made for the test, `verify_incoming`
//! requiring a client certificate, the server name checked, and new certificate
//! files taken on reload.

use crate::support::{bin, cli, free_port, Agent};
use anyhow::Result;
use serde_json::json;
use std::path::Path;

/// A CA (`<prefix>ca.pem`), and signed by it a server certificate for
/// `consul.test` and 127.0.0.1 and a client certificate, written as PEM files
/// into `dir` (`<prefix>server.pem`, `<prefix>server-key.pem`, and so on).
fn certificates(dir: &Path, prefix: &str) -> Result<()> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{prefix}test CA"));
    let ca_cert = ca.self_signed(&ca_key)?;
    std::fs::write(dir.join(format!("{prefix}ca.pem")), ca_cert.pem())?;
    for (name, sans) in [
        (
            "server",
            vec!["consul.test".to_owned(), "127.0.0.1".to_owned()],
        ),
        ("client", vec!["client.dc1.consul".to_owned()]),
    ] {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(sans)?;
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
        std::fs::write(dir.join(format!("{prefix}{name}.pem")), cert.pem())?;
        std::fs::write(
            dir.join(format!("{prefix}{name}-key.pem")),
            key.serialize_pem(),
        )?;
    }
    Ok(())
}

/// An agent in `dir` serving HTTPS with client certificates required: the CA,
/// certificate and key files named, under `dir`. Returns it and its HTTPS URL.
fn https_agent(dir: &Path, ca: &str, cert: &str, key: &str) -> Result<(Agent, String)> {
    let file = |name: &str| dir.join(name).display().to_string();
    let https_port = free_port();
    let agent = Agent::start(
        &dir.join("data"),
        json!({
            "ports": {"https": https_port},
            "tls": {
                "defaults": {
                    "ca_file": file(ca),
                    "cert_file": file(cert),
                    "key_file": file(key),
                },
                "https": {"verify_incoming": true},
            },
        }),
    )?;
    Ok((agent, format!("https://127.0.0.1:{https_port}")))
}

#[test]
fn the_https_api_with_client_certificates() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    certificates(d, "")?;
    // A second, unrelated CA with its own certificates.
    certificates(d, "other-")?;
    let file = |name: &str| d.join(name).display().to_string();
    let (agent, https) = https_agent(d, "ca.pem", "server.pem", "server-key.pem")?;
    let ca = format!("-ca-file={}", file("ca.pem"));
    let cert = format!("-client-cert={}", file("client.pem"));
    let key = format!("-client-key={}", file("client-key.pem"));

    // With the CA and a client certificate: a write, then a read.
    let (code, _, err) = cli("kv put", &https, &[&ca, &cert, &key, "tls/k", "v"])?;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli("kv get", &https, &[&ca, &cert, &key, "tls/k"])?;
    assert_eq!((code, out.trim()), (0, "v"), "{err}");

    // Plain HTTP is still served next to it.
    let (code, out, err) = cli("kv get", &agent.http, &["tls/k"])?;
    assert_eq!((code, out.trim()), (0, "v"), "{err}");

    // verify_incoming: without a client certificate the handshake fails, and so
    // it does with a certificate from another CA.
    let (code, _, err) = cli("kv get", &https, &[&ca, "tls/k"])?;
    // With TLS 1.3 the server's refusal (a `certificate_required` alert)
    // arrives after the client has finished its side of the handshake; our
    // client reports the alert, or a cancelled request when its connection pool
    // sees the connection end first. The same call with the certificate
    // succeeded above.
    assert_eq!(code, 1);
    assert!(err.starts_with("Error querying Consul agent"), "{err}");
    let other_cert = format!("-client-cert={}", file("other-client.pem"));
    let other_key = format!("-client-key={}", file("other-client-key.pem"));
    let (code, _, err) = cli("kv get", &https, &[&ca, &other_cert, &other_key, "tls/k"])?;
    assert_eq!(code, 1, "{err}");

    // The server name is checked: the certificate names consul.test, not x.test.
    let named = |name: &str| format!("-tls-server-name={name}");
    let (code, out, err) = cli(
        "kv get",
        &https,
        &[&ca, &cert, &key, &named("consul.test:8501"), "tls/k"],
    )?;
    assert_eq!((code, out.trim()), (0, "v"), "{err}");
    let (code, _, err) = cli(
        "kv get",
        &https,
        &[&ca, &cert, &key, &named("x.test"), "tls/k"],
    )?;
    assert_eq!(code, 1);
    assert!(err.contains("certificate not valid for name"), "{err}");

    // A CA the server's certificate does not chain to is refused...
    let other_ca = format!("-ca-file={}", file("other-ca.pem"));
    let (code, _, err) = cli("kv get", &https, &[&other_ca, &cert, &key, "tls/k"])?;
    assert_eq!(code, 1);
    assert!(err.contains("UnknownIssuer"), "{err}");
    // ...unless CONSUL_HTTP_SSL_VERIFY=false, which trusts any certificate.
    let out = std::process::Command::new(bin())
        .args(["kv", "get", &format!("-http-addr={https}")])
        .args([&other_ca, &cert, &key, "tls/k"])
        .env("CONSUL_HTTP_SSL_VERIFY", "false")
        .output()?;
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        (Some(0), "v"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // New certificate files take effect on reload, without a restart: the
    // server now presents the other CA's certificate.
    std::fs::copy(d.join("other-server.pem"), d.join("server.pem"))?;
    std::fs::copy(d.join("other-server-key.pem"), d.join("server-key.pem"))?;
    let (code, _, err) = cli("reload", &agent.http, &[])?;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli("kv get", &https, &[&other_ca, &cert, &key, "tls/k"])?;
    assert_eq!((code, out.trim()), (0, "v"), "{err}");
    let (code, _, _) = cli("kv get", &https, &[&ca, &cert, &key, "tls/k"])?;
    assert_eq!(code, 1, "the old CA no longer verifies the server");
    Ok(())
}

/// Runs `tribune tls <args>` in `dir`, where it writes its files.
fn tls(dir: &Path, args: &[&str]) -> Result<()> {
    let out = std::process::Command::new(bin())
        .arg("tls")
        .args(args)
        .current_dir(dir)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "tls {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The files `tls ca create` and `tls cert create` write, under Consul's names,
/// serve the HTTPS API with client certificates required: the server
/// certificate for the agent, the CLI certificate (no extended key usage) for
/// the client, the CA for both.
#[test]
fn certificates_made_by_the_tls_commands() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    tls(d, &["ca", "create"])?;
    tls(d, &["cert", "create", "-server", "-node", "n1"])?;
    tls(d, &["cert", "create", "-cli"])?;
    let file = |name: &str| d.join(name).display().to_string();
    let (agent, https) = https_agent(
        d,
        "consul-agent-ca.pem",
        "dc1-server-consul-0.pem",
        "dc1-server-consul-0-key.pem",
    )?;
    let ca = format!("-ca-file={}", file("consul-agent-ca.pem"));
    let cert = format!("-client-cert={}", file("dc1-cli-consul-0.pem"));
    let key = format!("-client-key={}", file("dc1-cli-consul-0-key.pem"));
    let (code, _, err) = cli("kv put", &https, &[&ca, &cert, &key, "made/k", "v"])?;
    assert_eq!(code, 0, "{err}");
    // The server certificate names the server by its Consul names too.
    let named = "-tls-server-name=n1.server.dc1.consul";
    let (code, out, err) = cli("kv get", &https, &[&ca, &cert, &key, named, "made/k"])?;
    assert_eq!((code, out.trim()), (0, "v"), "{err}");
    let (code, out, err) = cli("kv get", &agent.http, &["made/k"])?;
    assert_eq!((code, out.trim()), (0, "v"), "{err}");
    Ok(())
}
