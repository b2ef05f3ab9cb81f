//! gRPC checks, as Consul's `CheckGRPC` / `GrpcHealthProbe`: the standard health
//! protocol (`grpc.health.v1.Health/Check`) against `host:port[/service]`, where the
//! part after the first `/` is the service to ask about (empty = the whole server).
//! `SERVING` is passing; any other status, or any RPC error, is critical.
//!
//! The two messages are written out here with `prost` derives rather than generated,
//! to keep `tonic-build` out of this crate, and called through tonic's generic
//! client. With `grpc_use_tls` the connection is TLS offering ALPN `h2`, opened by
//! our own connector so `tls_skip_verify`, `tls_server_name` and the agent's TLS
//! for checks apply (tonic's TLS settings have no way to skip verification).

use super::{error_chain, tls};
use crate::plan::TlsSpec;
use crate::probe::AgentTls;
use crate::status::Probe;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// The RPC's path.
pub const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct HealthCheckRequest {
    /// The service to ask about; empty for the server as a whole.
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct HealthCheckResponse {
    /// A [`ServingStatus`] as its wire number.
    #[prost(enumeration = "ServingStatus", tag = "1")]
    pub status: i32,
}

/// `grpc.health.v1.HealthCheckResponse.ServingStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ServingStatus {
    /// `UNKNOWN`.
    Unknown = 0,
    /// `SERVING`: the only passing status.
    Serving = 1,
    /// `NOT_SERVING`.
    NotServing = 2,
    /// `SERVICE_UNKNOWN` (used by `Watch` only).
    ServiceUnknown = 3,
}

impl ServingStatus {
    /// The proto enum name, as Go's generated `String()` prints it.
    pub fn proto_name(self) -> &'static str {
        match self {
            ServingStatus::Unknown => "UNKNOWN",
            ServingStatus::Serving => "SERVING",
            ServingStatus::NotServing => "NOT_SERVING",
            ServingStatus::ServiceUnknown => "SERVICE_UNKNOWN",
        }
    }
}

/// Go's gRPC status error text.
fn rpc_error(code: Code, desc: &str) -> String {
    format!("rpc error: code = {code:?} desc = {desc}")
}

pub(crate) async fn probe(
    target: &str,
    tls: Option<&TlsSpec>,
    agent: Option<&AgentTls>,
    timeout: Duration,
) -> Probe {
    let (server, service) = target.split_once('/').unwrap_or((target, ""));
    let run = async {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{server}"))
            .map_err(|e| format!("invalid gRPC target {target:?}: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout);
        let channel = connect(&endpoint, server, tls, agent)
            .await
            .map_err(|e| rpc_error(Code::Unavailable, &format!("connection error: {e}")))?;
        let mut client = tonic::client::Grpc::new(channel);
        client.ready().await.map_err(|e| {
            rpc_error(
                Code::Unavailable,
                &format!("connection error: {}", error_chain(&e)),
            )
        })?;
        let codec = tonic::codec::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
        let request = tonic::Request::new(HealthCheckRequest {
            service: service.to_owned(),
        });
        let response = client
            .unary(request, PathAndQuery::from_static(HEALTH_CHECK_PATH), codec)
            .await
            .map_err(|s| rpc_error(s.code(), s.message()))?;
        Ok::<i32, String>(response.into_inner().status)
    };
    match tokio::time::timeout(timeout, run).await {
        Err(_) => Probe::critical(rpc_error(
            Code::DeadlineExceeded,
            "context deadline exceeded",
        )),
        Ok(Err(msg)) => Probe::critical(msg),
        Ok(Ok(status)) => match ServingStatus::try_from(status) {
            Ok(ServingStatus::Serving) => Probe::passing(format!("gRPC check {target}: success")),
            Ok(other) => Probe::critical(format!(
                "gRPC {target} serving status: {}",
                other.proto_name()
            )),
            Err(_) => Probe::critical(format!("gRPC {target} serving status: {status}")),
        },
    }
}

/// A channel to `server`, in cleartext or over TLS with the check's settings.
async fn connect(
    endpoint: &Endpoint,
    server: &str,
    tls: Option<&TlsSpec>,
    agent: Option<&AgentTls>,
) -> Result<Channel, String> {
    let Some(tls) = tls else {
        return endpoint.connect().await.map_err(|e| error_chain(&e));
    };
    // Readied once for the channel's connections (a run makes one).
    let connector = tls::Connector::new(
        tls::host_of(server),
        tls.skip_verify,
        &tls.server_name,
        &[tls::ALPN_H2],
        agent,
    )?;
    let connector = std::sync::Arc::new(connector);
    let server = server.to_owned();
    let connect = tower::service_fn(move |_uri| {
        let server = server.clone();
        let connector = std::sync::Arc::clone(&connector);
        async move {
            let tcp = tokio::net::TcpStream::connect(&server).await?;
            let stream = connector
                .connect(tcp)
                .await
                .map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    endpoint
        .connect_with_connector(connect)
        .await
        .map_err(|e| error_chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn messages_match_the_proto_wire_format() {
        // field 1, wire type 2 (length-delimited), "db"
        let req = HealthCheckRequest {
            service: "db".into(),
        };
        assert_eq!(req.encode_to_vec(), vec![0x0a, 2, b'd', b'b']);
        // field 1, wire type 0 (varint), 2 = NOT_SERVING
        let resp = HealthCheckResponse::decode(&[0x08, 2][..]).unwrap();
        assert_eq!(
            ServingStatus::try_from(resp.status),
            Ok(ServingStatus::NotServing)
        );
        assert_eq!(ServingStatus::NotServing.proto_name(), "NOT_SERVING");
        // An empty message is UNKNOWN (proto3 default).
        assert_eq!(HealthCheckResponse::decode(&[][..]).unwrap().status, 0);
    }
}
