//! Code generated from `/proto` by tonic-build. Nothing hand-written but this re-export.
#![allow(missing_docs, clippy::all)]

/// `tribune.v1`: the internal RPC between agents and servers.
pub mod v1 {
    tonic::include_proto!("tribune.v1");
}
