//! The `?cached` read path against a fake server whose answer the test changes.

use super::*;
use async_trait::async_trait;
use tokio::sync::watch;
use tribune_rpc::ServerStatus;
use tribune_types::model::ops::{WriteOutcome, WriteRequest};
use tribune_types::model::Node;

/// Answers every read with `n` nodes at index `n`; blocking reads wait
/// for `n` to move.
struct Fake {
    n: watch::Sender<u64>,
    reads: Mutex<Vec<QueryOptions>>,
    /// Every read fails (after any wait) while set.
    failing: std::sync::atomic::AtomicBool,
}

impl Fake {
    fn new(n: u64) -> Arc<Fake> {
        Arc::new(Fake {
            n: watch::channel(n).0,
            reads: Mutex::new(Vec::new()),
            failing: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn fail(&self, on: bool) {
        self.failing.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait]
impl ServerApi for Fake {
    async fn write(&self, _: WriteRequest) -> Result<(WriteOutcome, u64), RpcError> {
        Err(RpcError::NoLeader)
    }
    async fn read(
        &self,
        _req: ReadRequest,
        opts: QueryOptions,
    ) -> Result<(ReadResult, QueryMeta), RpcError> {
        self.reads.lock().push(opts);
        let mut rx = self.n.subscribe();
        if opts.min_index > 0 {
            let _ = tokio::time::timeout(opts.max_wait, rx.wait_for(|n| *n > opts.min_index)).await;
        }
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(RpcError::Transport("unreachable".into()));
        }
        let n = *rx.borrow();
        let nodes = (0..n).map(|_| Node::default()).collect();
        Ok((
            ReadResult::Nodes(nodes),
            QueryMeta {
                index: n,
                ..QueryMeta::default()
            },
        ))
    }
    async fn status(&self) -> Result<ServerStatus, RpcError> {
        Err(RpcError::NoLeader)
    }
}

fn count(r: &ReadResult) -> usize {
    match r {
        ReadResult::Nodes(v) => v.len(),
        other => panic!("{other:?}"),
    }
}

fn web() -> ReadRequest {
    ReadRequest::CatalogService {
        service: "web".into(),
    }
}

#[tokio::test]
async fn a_miss_fills_the_cache_and_the_refresher_keeps_it_current() {
    let fake = Fake::new(2);
    let servers: Arc<dyn ServerApi> = fake.clone();
    let cache = Arc::new(ReadCache::default());
    let opts = QueryOptions::default();

    let (r, meta) = ReadCache::read(&cache, &servers, web(), opts)
        .await
        .unwrap();
    assert_eq!((count(&r), meta.cache), (2, Some(CacheStatus::Miss)));
    let (r, meta) = ReadCache::read(&cache, &servers, web(), opts)
        .await
        .unwrap();
    assert_eq!(
        (count(&r), meta.index, meta.cache),
        (
            2,
            2,
            Some(CacheStatus::Hit {
                age: Duration::ZERO
            })
        )
    );

    // The catalog changes: the refresher's blocking query returns and the entry
    // follows (retried, bounded: the refresher is its own task).
    fake.n.send_replace(3);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (r, meta) = ReadCache::read(&cache, &servers, web(), opts)
            .await
            .unwrap();
        assert_eq!(
            meta.cache,
            Some(CacheStatus::Hit {
                age: Duration::ZERO
            })
        );
        if count(&r) == 3 {
            assert_eq!(meta.index, 3);
            break;
        }
        assert!(Instant::now() < deadline, "the refresh never landed");
        tokio::task::yield_now().await;
    }
    // One fetch, then only blocking refreshes past the index held.
    let reads = fake.reads.lock().clone();
    assert_eq!(reads[0].min_index, 0);
    assert!(
        reads.iter().all(|o| o.consistency == Consistency::Stale),
        "cache fetches are stale reads"
    );
    assert!(reads[1..]
        .iter()
        .all(|o| o.min_index >= 2 && o.max_wait == REFRESH_WAIT));
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn blocking_and_uncached_kinds_pass_through() {
    let fake = Fake::new(1);
    let servers: Arc<dyn ServerApi> = fake.clone();
    let cache = Arc::new(ReadCache::default());
    let blocking = QueryOptions {
        min_index: 0,
        ..QueryOptions::default()
    };
    let (_, meta) = ReadCache::read(&cache, &servers, ReadRequest::CatalogNodes, blocking)
        .await
        .unwrap();
    assert_eq!(meta.cache, None);
    let blocking = QueryOptions {
        min_index: 1,
        max_wait: Duration::from_millis(1),
        ..QueryOptions::default()
    };
    let (_, meta) = ReadCache::read(&cache, &servers, web(), blocking)
        .await
        .unwrap();
    assert_eq!(meta.cache, None);
    assert_eq!(cache.len(), 0);
}

#[tokio::test]
async fn the_refresher_ends_with_the_cache() {
    let fake = Fake::new(1);
    let servers: Arc<dyn ServerApi> = fake.clone();
    let cache = Arc::new(ReadCache::default());
    ReadCache::read(&cache, &servers, web(), QueryOptions::default())
        .await
        .unwrap();
    drop(cache);
    // Its blocking query returns on the next change and finds no cache: it ends,
    // dropping its handle on the server.
    fake.n.send_replace(2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&fake) > 2 {
        assert!(
            Instant::now() < deadline,
            "the refresher outlived the cache"
        );
        tokio::task::yield_now().await;
    }
}

/// While the servers cannot be reached the entry is still served, with `Age`
/// counting from the servers' last answer; once they answer again it is current.
#[tokio::test(start_paused = true)]
async fn a_failing_refresh_serves_the_last_answer_with_its_age() {
    let fake = Fake::new(2);
    let servers: Arc<dyn ServerApi> = fake.clone();
    let cache = Arc::new(ReadCache::default());
    let opts = QueryOptions::default();
    ReadCache::read(&cache, &servers, web(), opts)
        .await
        .unwrap();

    fake.fail(true);
    fake.n.send_replace(3);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (r, meta) = ReadCache::read(&cache, &servers, web(), opts)
        .await
        .unwrap();
    assert_eq!(count(&r), 2, "the last answer the servers gave");
    match meta.cache {
        Some(CacheStatus::Hit { age }) => assert!(age >= Duration::from_secs(10), "{age:?}"),
        other => panic!("{other:?}"),
    }

    fake.fail(false);
    tokio::time::sleep(Duration::from_secs(120)).await;
    let (r, meta) = ReadCache::read(&cache, &servers, web(), opts)
        .await
        .unwrap();
    assert_eq!(count(&r), 3);
    assert_eq!(
        meta.cache,
        Some(CacheStatus::Hit {
            age: Duration::ZERO
        })
    );
}
