//! gRPC checks, as Consul's `CheckGRPC` / `GrpcHealthProbe`: the standard health
//! protocol (`grpc.health.v1.Health/Check`) against `host:port[/service]`, where the
//! part after the first `/` is the service to ask about (empty = the whole server).
//! `SERVING` is passing; any other status, or any RPC error, is critical.
//!
//! The two messages are written out here with `prost` derives rather than generated,
//! to keep `tonic-build` out of this crate, and called through tonic's generic
//! client. TLS (`grpc_use_tls`) needs a TLS stack this build does not have and
//! reports critical.

use super::error_chain;
use crate::status::Probe;
use std::time::Duration;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Endpoint;
use tonic::Code;

/// The RPC's path.
pub const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// What a gRPC check with `grpc_use_tls` reports in this build.
pub(crate) const GRPC_TLS_UNSUPPORTED: &str =
    "gRPC checks over TLS are not supported in this build";

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

pub(crate) async fn probe(target: &str, use_tls: bool, timeout: Duration) -> Probe {
    if use_tls {
        return Probe::critical(GRPC_TLS_UNSUPPORTED);
    }
    let (server, service) = target.split_once('/').unwrap_or((target, ""));
    let run = async {
        let endpoint = Endpoint::from_shared(format!("http://{server}"))
            .map_err(|e| format!("invalid gRPC target {target:?}: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout);
        let channel = endpoint.connect().await.map_err(|e| {
            rpc_error(
                Code::Unavailable,
                &format!("connection error: {}", error_chain(&e)),
            )
        })?;
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

    #[tokio::test]
    async fn tls_is_refused_up_front() {
        assert_eq!(
            probe("127.0.0.1:1", true, Duration::from_secs(1)).await,
            Probe::critical(GRPC_TLS_UNSUPPORTED)
        );
    }
}
