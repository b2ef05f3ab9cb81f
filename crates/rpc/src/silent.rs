//! A server for tests that never answers a read (a hung server, as the
//! client sees it) and refuses everything else at once.

use crate::{RpcError, ServerApi, ServerStatus};
use async_trait::async_trait;
use tribune_types::model::ops::{
    QueryMeta, QueryOptions, ReadRequest, ReadResult, WriteOutcome, WriteRequest,
};

/// See the module docs.
pub(crate) struct Silent;

#[async_trait]
impl ServerApi for Silent {
    async fn write(&self, _: WriteRequest) -> Result<(WriteOutcome, u64), RpcError> {
        Err(RpcError::NoLeader)
    }

    async fn read(
        &self,
        _: ReadRequest,
        _: QueryOptions,
    ) -> Result<(ReadResult, QueryMeta), RpcError> {
        std::future::pending().await
    }

    async fn status(&self) -> Result<ServerStatus, RpcError> {
        Err(RpcError::NoLeader)
    }
}
