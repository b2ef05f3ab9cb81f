//! TLS on the server RPC port (`tls.internal_rpc`) between real processes:
//! three servers with `verify_incoming`, `verify_outgoing` and
//! `verify_server_hostname` form a raft cluster over TLS (each taking raft
//! traffic only from a certificate that names a server), a client agent with
//! a client certificate of the same CA reads and writes through them, and one
//! that speaks in the clear is turned away.

use crate::cluster::{agreed_leader, start_cluster_with};
use crate::gossip::{eventually, fast_gossip};
use crate::support::Agent;
use anyhow::Result;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// A CA (`ca.pem`) and, signed by it, `server.pem` for
/// `server.dc1.consul` and `client.pem` for `client.dc1.consul`, with their
/// keys (`<name>-key.pem`), as `consul tls cert create` names them.
fn certificates(dir: &Path) -> Result<()> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key)?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    for (name, san) in [
        ("server", "server.dc1.consul"),
        ("client", "client.dc1.consul"),
    ] {
        let key = rcgen::KeyPair::generate()?;
        let mut params =
            rcgen::CertificateParams::new(vec![san.to_owned(), "localhost".to_owned()])?;
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem())?;
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem())?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_and_client_agents_speak_tls_on_the_rpc_port() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    certificates(d)?;
    let file = |name: &str| d.join(name).display().to_string();
    let tls = |who: &str| {
        json!({
            "defaults": {
                "ca_file": file("ca.pem"),
                "cert_file": file(&format!("{who}.pem")),
                "key_file": file(&format!("{who}-key.pem")),
                "verify_incoming": true,
                "verify_outgoing": true,
            },
            "internal_rpc": {"verify_server_hostname": true},
        })
    };
    let nodes = start_cluster_with(d, 3, json!({"tls": tls("server")}))?;
    let c = reqwest::Client::new();
    // Raft and its elections only run over the servers' TLS connections.
    agreed_leader(&c, &nodes, 3).await?;

    let join = format!(
        "-retry-join=127.0.0.1:{}",
        nodes[0].extra["ports"]["serf_lan"]
    );
    let client = |name: &str, tls: serde_json::Value| {
        let mut config = json!({"gossip_lan": fast_gossip(), "retry_interval": "200ms"});
        if !tls.is_null() {
            config["tls"] = tls;
        }
        Agent::start_opts(&d.join(name), config, &[&format!("-node={name}"), &join])
    };

    let trusted = client("c1", tls("client"))?;
    let put = |http: String, key: &'static str| {
        let c = c.clone();
        async move {
            let r = c
                .put(format!("{http}/v1/kv/{key}"))
                .body("over tls")
                .send()
                .await?;
            Ok::<_, anyhow::Error>((r.status().as_u16(), r.text().await?))
        }
    };
    // Until gossip has shown it the servers, a client agent has none to ask.
    eventually(Duration::from_secs(30), "a write through c1", || async {
        Ok(put(trusted.http.clone(), "tls/k").await? == (200, "true".to_owned()))
    })
    .await?;
    let read = c
        .get(format!("{}/v1/kv/tls/k?raw&stale", nodes[2].http))
        .send()
        .await?;
    assert_eq!(read.text().await?, "over tls");

    // In the clear, the servers close the connection.
    let plain = client("c2", serde_json::Value::Null)?;
    let last = std::sync::Mutex::new(String::new());
    eventually(
        Duration::from_secs(30),
        "c2's write refused by the servers",
        || async {
            let (status, body) = put(plain.http.clone(), "tls/plain").await?;
            let refused = status == 500 && !body.contains("No known Consul servers");
            *last.lock().unwrap() = body;
            Ok(refused)
        },
    )
    .await?;
    let body = last.lock().unwrap().clone();
    assert!(body.contains("rpc error"), "{body}");
    let missing = c
        .get(format!("{}/v1/kv/tls/plain", nodes[0].http))
        .send()
        .await?;
    assert_eq!(missing.status().as_u16(), 404);
    Ok(())
}
