//! The gRPC client and service round-trip requests, results and errors over loopback.

use async_trait::async_trait;
use std::sync::Arc;
use tribune_rpc::{serve, GrpcClient, RpcError, ServerApi, ServerStatus};
use tribune_types::model::ops::*;
use tribune_types::model::KvEntry;

struct Fake;

#[async_trait]
impl ServerApi for Fake {
    async fn write(&self, req: WriteRequest) -> Result<(WriteOutcome, u64), RpcError> {
        match req {
            WriteRequest::KvDelete { .. } => Err(WriteRejected::BadRequest("nope".into()).into()),
            _ => Ok((WriteOutcome::NotApplied, 42)),
        }
    }
    async fn read(
        &self,
        req: ReadRequest,
        opts: QueryOptions,
    ) -> Result<(ReadResult, QueryMeta), RpcError> {
        let key = match req {
            ReadRequest::KvGet { key } => key,
            // Echo the session, so a test can tell whose answer a caller got.
            ReadRequest::SessionRenew { id } => id.to_string(),
            _ => return Err(RpcError::NoLeader),
        };
        let entry = KvEntry {
            key,
            flags: u64::MAX,
            ..Default::default()
        };
        Ok((
            ReadResult::Kv(vec![entry]),
            QueryMeta {
                index: opts.min_index + 1,
                ..Default::default()
            },
        ))
    }
    async fn status(&self) -> Result<ServerStatus, RpcError> {
        Ok(ServerStatus {
            leader: "127.0.0.1:8300".into(),
            peers: vec!["127.0.0.1:8300".into()],
            known_leader: true,
            last_contact_ms: 0,
        })
    }
}

#[tokio::test]
async fn round_trip() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        Arc::new(Fake),
        Default::default(),
        Default::default(),
        async {
            let _ = rx.await;
        },
    ));
    let client = GrpcClient::new(&format!("http://{addr}")).unwrap();
    let entry = KvEntry {
        key: "k".into(),
        ..Default::default()
    };
    assert_eq!(
        client
            .write(WriteRequest::KvSet {
                entry,
                mode: KvSetMode::Set
            })
            .await,
        Ok((WriteOutcome::NotApplied, 42))
    );
    assert_eq!(
        client
            .write(WriteRequest::KvDelete {
                key: "k".into(),
                mode: KvDeleteMode::Key
            })
            .await,
        Err(RpcError::Rejected(WriteRejected::BadRequest("nope".into())))
    );
    let opts = QueryOptions {
        min_index: 9,
        ..Default::default()
    };
    let (res, meta) = client
        .read(ReadRequest::KvGet { key: "a".into() }, opts)
        .await
        .unwrap();
    assert_eq!(meta.index, 10);
    let ReadResult::Kv(v) = res else { panic!() };
    assert_eq!(v[0].flags, u64::MAX);
    assert_eq!(
        client.read(ReadRequest::CatalogNodes, opts).await,
        Err(RpcError::NoLeader)
    );
    assert_eq!(client.status().await.unwrap().leader, "127.0.0.1:8300");
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// A write the server refused with "no leader" was not applied, so the pool may try it
/// on the next server; a refused connection likewise. Reads fail over the same way, and
/// the dead server stops being preferred.
#[tokio::test]
async fn pool_fails_over_to_a_live_server() {
    use tribune_rpc::ServerPool;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        Arc::new(Fake),
        Default::default(),
        Default::default(),
        async {
            let _ = rx.await;
        },
    ));
    let pool = ServerPool::new();
    assert!(pool
        .read(
            ReadRequest::KvGet { key: "k".into() },
            QueryOptions::default()
        )
        .await
        .is_err());
    pool.set_servers(&[dead.to_string(), live.to_string()]);
    let (res, meta) = pool
        .read(
            ReadRequest::KvGet { key: "k".into() },
            QueryOptions::default(),
        )
        .await
        .unwrap();
    assert!(matches!(res, ReadResult::Kv(ref v) if v[0].key == "k"));
    assert_eq!(meta.index, 1);
    assert_eq!(
        pool.servers()[0],
        live.to_string(),
        "the live server is now preferred"
    );
    // A write to a dead server is retried only because the connection was refused.
    pool.set_servers(&[dead.to_string(), live.to_string()]);
    let write = WriteRequest::KvSet {
        entry: KvEntry::default(),
        mode: KvSetMode::Set,
    };
    let (outcome, index) = pool.write(write).await.unwrap();
    assert_eq!((outcome, index), (WriteOutcome::NotApplied, 42));
    // A refusal from the server itself is final, not retried.
    let err = pool
        .write(WriteRequest::KvDelete {
            key: "k".into(),
            mode: KvDeleteMode::Key,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RpcError::Rejected(WriteRejected::BadRequest("nope".into()))
    );
    let _ = tx.send(());
    server.await.unwrap().unwrap();
}

/// Renewals ride one stream: many at once each get their own answer; a server
/// shutdown ends the stream (and does not wait on it), and the next renewal after a
/// restart opens a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_share_a_stream_that_survives_a_server_restart() {
    use tribune_types::ids::SessionId;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let start = |listener| {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            Arc::new(Fake),
            Default::default(),
            Default::default(),
            async {
                let _ = rx.await;
            },
        ));
        (tx, server)
    };
    let renew = |client: GrpcClient| async move {
        let id = SessionId(uuid::Uuid::new_v4());
        let got = client
            .read(ReadRequest::SessionRenew { id }, QueryOptions::default())
            .await?;
        match got {
            (ReadResult::Kv(v), _) if v[0].key == id.to_string() => Ok(()),
            other => panic!("renewal of {id} answered with {other:?}"),
        }
    };
    let (stop, server) = start(listener);
    let client = GrpcClient::new(&format!("http://{addr}")).unwrap();
    let all = (0..200).map(|_| tokio::spawn(renew(client.clone())));
    for r in futures::future::join_all(all).await {
        r.unwrap().unwrap();
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();

    let (stop, server) = start(tokio::net::TcpListener::bind(addr).await.unwrap());
    // The broken stream fails at most the renewal that finds it broken.
    let mut failures = 0;
    while let Err(e) = renew(client.clone()).await {
        assert!(matches!(e, RpcError::Transport(_)), "{e:?}");
        failures += 1;
        assert!(failures < 3, "still failing after a reconnect: {e:?}");
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
