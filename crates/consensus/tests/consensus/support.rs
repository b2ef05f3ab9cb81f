//! Test helpers: a key/value state machine whose state the test can inspect,
//! configs with fast ticks, and event-based waiting (no sleeps).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tribune_consensus::{
    start, ApplyError, NoopTransport, Raft, RaftConfig, RaftStatus, RestoreError, StateMachine,
};

/// Inspectable state of [`KvMachine`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvState {
    /// key -> value from `key=value` proposals.
    pub map: BTreeMap<String, String>,
    /// Number of `apply` calls ever made (carried through snapshots), so a
    /// replay that applied something twice or skipped something shows up.
    pub applies: u64,
    /// Index of the last applied entry.
    pub last_index: u64,
}

/// What `apply` returns: enough for a proposer to check it got its own result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvOutput {
    pub index: u64,
    pub echo: Vec<u8>,
    pub previous: Option<String>,
}

/// Key/value state machine sharing its state with the test.
pub struct KvMachine {
    pub state: Arc<Mutex<KvState>>,
}

impl KvMachine {
    pub fn new() -> (Self, Arc<Mutex<KvState>>) {
        let state = Arc::new(Mutex::new(KvState::default()));
        (
            KvMachine {
                state: state.clone(),
            },
            state,
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("bad kv snapshot: {0}")]
struct BadSnapshot(&'static str);

impl StateMachine for KvMachine {
    type Output = KvOutput;

    fn apply(&mut self, index: u64, data: &[u8]) -> Result<KvOutput, ApplyError> {
        // `poison` stands for an entry this state machine cannot apply.
        if data.starts_with(b"poison") {
            return Err(ApplyError(Box::new(BadSnapshot("poisoned entry"))));
        }
        let mut st = self.state.lock().unwrap();
        let text = String::from_utf8_lossy(data);
        let (k, v) = text.split_once('=').unwrap_or((&text, ""));
        let previous = st.map.insert(k.to_string(), v.to_string());
        st.applies += 1;
        st.last_index = index;
        Ok(KvOutput {
            index,
            echo: data.to_vec(),
            previous,
        })
    }

    fn snapshot(&self) -> Vec<u8> {
        let st = self.state.lock().unwrap();
        let mut out = format!("{}\n{}\n", st.applies, st.last_index);
        for (k, v) in &st.map {
            out.push_str(&format!("{k}={v}\n"));
        }
        out.into_bytes()
    }

    fn restore(&mut self, index: u64, data: &[u8]) -> Result<(), RestoreError> {
        let bad = |why| RestoreError::Malformed(Box::new(BadSnapshot(why)));
        let text = std::str::from_utf8(data).map_err(|_| bad("utf8"))?;
        let mut lines = text.lines();
        let applies = lines
            .next()
            .ok_or(bad("applies"))?
            .parse()
            .map_err(|_| bad("applies"))?;
        let last_index: u64 = lines
            .next()
            .ok_or(bad("index"))?
            .parse()
            .map_err(|_| bad("index"))?;
        let mut map = BTreeMap::new();
        for line in lines {
            let (k, v) = line.split_once('=').ok_or(bad("pair"))?;
            map.insert(k.to_string(), v.to_string());
        }
        assert!(last_index <= index, "snapshot data newer than its index");
        *self.state.lock().unwrap() = KvState {
            map,
            applies,
            last_index,
        };
        Ok(())
    }
}

/// A config with fast ticks for tests.
pub fn config(dir: &Path, id: u64, bootstrap: bool) -> RaftConfig {
    let mut c = RaftConfig::new(id, dir);
    c.tick = Duration::from_millis(20);
    c.election_tick = 10;
    c.heartbeat_tick = 1;
    c.bootstrap = bootstrap;
    c
}

/// Wait (on status events, not polling) until `pred` holds.
pub async fn wait_for<S: StateMachine>(
    raft: &Raft<S>,
    what: &str,
    pred: impl FnMut(&RaftStatus) -> bool,
) -> RaftStatus {
    let mut rx = raft.subscribe();
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        rx.wait_for(pred).await.map(|s| s.clone())
    })
    .await;
    match result {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => panic!("status channel closed while waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what}; status {:?}", raft.status()),
    }
}

/// Start a bootstrapped single server and wait until it leads.
pub async fn single(dir: &Path) -> (Raft<KvMachine>, Arc<Mutex<KvState>>) {
    single_with(config(dir, 1, true)).await
}

/// Start a single server with `config` and wait until it leads.
pub async fn single_with(config: RaftConfig) -> (Raft<KvMachine>, Arc<Mutex<KvState>>) {
    let (sm, state) = KvMachine::new();
    let raft = start(config, sm, NoopTransport).expect("start");
    wait_for(&raft, "leadership", |s| s.is_leader).await;
    (raft, state)
}

/// Propose `n` distinct `key=value` entries, `concurrency` at a time.
pub async fn propose_many(
    raft: &Raft<KvMachine>,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> u64 {
    let mut last = 0;
    let mut next = 0;
    while next < n {
        let mut set = tokio::task::JoinSet::new();
        for i in next..(next + concurrency).min(n) {
            let r = raft.clone();
            let data = format!("{prefix}{i:05}=v{i}").into_bytes();
            set.spawn(async move { r.propose(data).await });
        }
        next = (next + concurrency).min(n);
        while let Some(res) = set.join_next().await {
            let applied = res.expect("task").expect("propose");
            last = last.max(applied.index);
        }
    }
    last
}

pub fn snapshot_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    files.sort();
    files
}
