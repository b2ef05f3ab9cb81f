//! MessagePack envelopes for the gRPC payloads.

use crate::RpcError;
use serde::{de::DeserializeOwned, Serialize};
use tribune_proto::v1::Envelope;

/// Version of the payload encoding; bumped on incompatible changes.
pub(crate) const VERSION: u32 = 1;

pub(crate) fn wrap<T: Serialize>(value: &T) -> Envelope {
    Envelope {
        version: VERSION,
        payload: rmp_serde::to_vec_named(value).unwrap_or_default(),
    }
}

pub(crate) fn unwrap<T: DeserializeOwned>(env: &Envelope) -> Result<T, RpcError> {
    if env.version != VERSION {
        return Err(RpcError::Malformed(format!(
            "envelope version {} (this server speaks {VERSION})",
            env.version
        )));
    }
    rmp_serde::from_slice(&env.payload).map_err(|e| RpcError::Malformed(e.to_string()))
}
