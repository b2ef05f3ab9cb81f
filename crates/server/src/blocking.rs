//! The blocking-query loop: answer, and if the index has not passed the client's,
//! wait on the watch points of exactly what was read, then answer again.

use std::time::Duration;
use tokio::time::Instant;
use tribune_state::StateStore;
use tribune_store::WatchSet;
use tribune_types::model::ops::{QueryOptions, ReadRequest, ReadResult};

/// Runs `req` per `opts`, waiting at most `max_query_time` (`max_query_time`
/// plus the largest jitter the HTTP layer adds); returns the result and its
/// raw index.
pub(crate) async fn run(
    state: &StateStore,
    req: &ReadRequest,
    opts: &QueryOptions,
    max_query_time: Duration,
) -> (ReadResult, u64) {
    if opts.min_index == 0 {
        return state.read(req, None);
    }
    // The wait arrives over the network (agents send it); clamp it here too.
    let max_wait = opts.max_wait.min(max_query_time + max_query_time / 16);
    let deadline = Instant::now() + max_wait;
    let restores = state.restores();
    loop {
        let mut ws = WatchSet::new();
        let (res, index) = state.read(req, Some(&mut ws));
        // Consul returns as soon as the index moved past the client's, or when a
        // snapshot restore replaced the state (its abandon channel): the index may
        // then have gone backwards, and the client, seeing it smaller, resets.
        // A read that watches nothing (a renewal, a read-only transaction, a
        // prepared query run) has nothing to wait for: Consul answers those at once.
        if index > opts.min_index || state.restores() != restores || ws.is_empty() {
            return (res, index);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left == Duration::ZERO {
            return (res, index);
        }
        if !ws.wait(left).await {
            return state.read(req, None);
        }
    }
}
