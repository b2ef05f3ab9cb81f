//! `?cached` reads (Consul's agent cache) for the service queries clients poll:
//! `/v1/catalog/service/{name}` and `/v1/health/service/{name}`.
//!
//! Why: an application that asks its local agent for a service's instances on
//! every request would otherwise send every one of those reads to the servers. Here
//! the first `?cached` read of a service is fetched and kept (`X-Cache: MISS`), and
//! later ones are answered by the agent alone (`X-Cache: HIT`). As Consul's cache
//! does for these types, a background refresher keeps each entry current with
//! blocking queries, so an entry is never older than the servers' answer (`Age: 0`)
//! by more than the time a blocking query takes to return.
//!
//! An entry lives while it is asked for: one not read for [`IDLE`] is dropped when its
//! refresher next wakes. When refreshing fails (the servers are unreachable), the
//! entry keeps being served, as Consul serves it, with `Age` counting from the last
//! answer the servers gave, while the refresher retries with a growing backoff.
//! Fetches and refreshes are stale reads, as Consul's are; `?cached` with
//! `?consistent` is refused. A blocking read (`?index=`) with `?cached` is passed through to the
//! servers uncached. Filters, tags and node-meta selections apply to the cached
//! answer afterwards in the HTTP layer, so one entry serves them all.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
// tokio's clock, so tests can run the refresher on paused time.
use tokio::time::Instant;
use tribune_rpc::{RpcError, ServerApi};
use tribune_types::model::ops::{
    CacheStatus, Consistency, QueryMeta, QueryOptions, ReadRequest, ReadResult,
};

/// An entry not read for this long is dropped (Consul keeps them for 3 days; an
/// entry here also holds a blocking query on the servers, so it goes sooner).
const IDLE: Duration = Duration::from_secs(3600);
/// How long each background blocking query waits (Consul's longest).
const REFRESH_WAIT: Duration = Duration::from_secs(600);
/// The longest a refresh may take: the wait, the servers' jitter (wait/16) and a
/// margin.
const REFRESH_DEADLINE: Duration = Duration::from_secs(600 + 600 / 16 + 30);
/// Entries kept at most; past it, reads go to the servers uncached.
const MAX_ENTRIES: usize = 1024;

/// What is cached: the service reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    CatalogService(String),
    HealthService(String),
}

impl Key {
    fn of(req: &ReadRequest) -> Option<Key> {
        match req {
            ReadRequest::CatalogService { service } => Some(Key::CatalogService(service.clone())),
            ReadRequest::HealthService { service } => Some(Key::HealthService(service.clone())),
            _ => None,
        }
    }

    fn request(&self) -> ReadRequest {
        match self {
            Key::CatalogService(service) => ReadRequest::CatalogService {
                service: service.clone(),
            },
            Key::HealthService(service) => ReadRequest::HealthService {
                service: service.clone(),
            },
        }
    }
}

/// Backoff between failed refreshes: doubling from the first, up to the last.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// One cached answer.
struct Slot {
    answer: Mutex<(ReadResult, QueryMeta)>,
    last_read: Mutex<Instant>,
    /// Set while refreshing fails: when the servers last answered.
    stale_since: Mutex<Option<Instant>>,
}

/// The agent's `?cached` answers.
#[derive(Default)]
pub(crate) struct ReadCache {
    entries: Mutex<HashMap<Key, Arc<Slot>>>,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("entries", &self.entries.lock().len())
            .finish()
    }
}

/// Whether the cache may answer: a non-blocking read of a cached kind.
fn cacheable(req: &ReadRequest, opts: &QueryOptions) -> Option<Key> {
    if opts.min_index != 0 {
        return None;
    }
    Key::of(req)
}

impl ReadCache {
    /// Answers `req` from the cache, or fetches it through `servers` and keeps it
    /// (starting its refresher); reads the cache does not keep go straight through.
    /// `cache` is the cache's own handle, which the refresher holds weakly so that
    /// it ends with the agent.
    pub(crate) async fn read(
        cache: &Arc<ReadCache>,
        servers: &Arc<dyn ServerApi>,
        req: ReadRequest,
        opts: QueryOptions,
    ) -> Result<(ReadResult, QueryMeta), RpcError> {
        let Some(key) = cacheable(&req, &opts) else {
            return servers.read(req, opts).await;
        };
        let hit = cache.entries.lock().get(&key).cloned();
        if let Some(slot) = hit {
            *slot.last_read.lock() = Instant::now();
            let (result, mut meta) = slot.answer.lock().clone();
            let age = slot
                .stale_since
                .lock()
                .map_or(Duration::ZERO, |t| t.elapsed());
            meta.cache = Some(CacheStatus::Hit { age });
            return Ok((result, meta));
        }
        // Always stale, as Consul's cache types read: an answer served from a cache
        // is as stale as the cache anyway, and any server can refresh it.
        let fetch = QueryOptions {
            min_index: 0,
            consistency: Consistency::Stale,
            ..opts
        };
        let (result, meta) = servers.read(req, fetch).await?;
        let slot = Arc::new(Slot {
            answer: Mutex::new((result.clone(), meta)),
            last_read: Mutex::new(Instant::now()),
            stale_since: Mutex::new(None),
        });
        let kept = {
            let mut entries = cache.entries.lock();
            if entries.len() < MAX_ENTRIES && !entries.contains_key(&key) {
                entries.insert(key.clone(), Arc::clone(&slot));
                true
            } else {
                false
            }
        };
        if kept {
            tokio::spawn(refresh(
                Arc::downgrade(cache),
                Arc::clone(servers),
                key,
                slot,
                fetch,
            ));
        }
        let mut meta = meta;
        meta.cache = Some(CacheStatus::Miss);
        Ok((result, meta))
    }

    /// How many answers are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().len()
    }
}

/// Keeps one entry current with blocking queries until it idles or the agent (and
/// with it the cache) is gone. A failed refresh keeps the entry, marks it stale
/// from its last good answer, and is retried after a growing backoff.
async fn refresh(
    cache: Weak<ReadCache>,
    servers: Arc<dyn ServerApi>,
    key: Key,
    slot: Arc<Slot>,
    fetch: QueryOptions,
) {
    let mut last_good = Instant::now();
    let mut backoff = RETRY_FIRST;
    loop {
        let index = slot.answer.lock().1.index;
        let opts = QueryOptions {
            min_index: index,
            max_wait: REFRESH_WAIT,
            ..fetch
        };
        // Bounded here too: a server that vanished without a reset would otherwise
        // leave the entry looking current forever.
        let outcome = tokio::time::timeout(REFRESH_DEADLINE, servers.read(key.request(), opts))
            .await
            .unwrap_or_else(|_| Err(RpcError::Transport("cache refresh timed out".into())));
        let Some(cache) = cache.upgrade() else {
            return;
        };
        if slot.last_read.lock().elapsed() > IDLE {
            let mut entries = cache.entries.lock();
            if entries.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                entries.remove(&key);
            }
            return;
        }
        drop(cache);
        match outcome {
            Ok(answer) => {
                *slot.answer.lock() = answer;
                *slot.stale_since.lock() = None;
                last_good = Instant::now();
                backoff = RETRY_FIRST;
            }
            Err(error) => {
                tracing::debug!(%error, "cached read refresh failed; serving the last answer");
                *slot.stale_since.lock() = Some(last_good);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests;
