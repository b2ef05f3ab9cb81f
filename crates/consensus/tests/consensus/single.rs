//! Single-server behaviour: durability, group commit, routing of outputs,
//! shutdown semantics.

use std::time::{Duration, Instant};

use tribune_consensus::{start, ConsensusError, NoopTransport, ProposeError};

use crate::support::{config, propose_many, single, single_with, wait_for, KvMachine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_voter_leads_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (raft, _) = single(dir.path()).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    let s = raft.status();
    assert_eq!(s.leader_id, Some(1));
    assert_eq!(s.last_contact, Some(Duration::ZERO));
    assert_eq!(s.voters, vec![1]);
    raft.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, state) = single(dir.path()).await;
    let last = propose_many(&raft, "k", 1000, 25).await;
    let before = state.lock().unwrap().clone();
    assert_eq!(before.applies, 1000);
    assert_eq!(before.map.len(), 1000);
    raft.shutdown().await;

    let (raft, state) = single(dir.path()).await;
    wait_for(&raft, "replay", |s| s.applied >= last).await;
    assert_eq!(*state.lock().unwrap(), before, "replayed state differs");
    // Still writable, and the new entry lands after the old ones.
    let applied = raft.propose(b"after=restart".to_vec()).await.unwrap();
    assert!(applied.index > last);
    assert_eq!(state.lock().unwrap().applies, 1001);
    raft.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_without_shutdown_keeps_acknowledged_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, state) = single(dir.path()).await;
    let last = propose_many(&raft, "d", 200, 20).await;
    let before = state.lock().unwrap().clone();
    // No shutdown: the handle just goes away, as close to a crash as we can get
    // in-process (the real kill -9 test lives with the server binary).
    drop(raft);

    let (raft, state) = single(dir.path()).await;
    wait_for(&raft, "replay", |s| s.applied >= last).await;
    assert_eq!(*state.lock().unwrap(), before);
    raft.shutdown().await;
}

// Current-thread runtime: the 200 tasks all send their proposal in one burst
// when the test task first yields, as concurrent RPC handlers would.
#[tokio::test]
async fn group_commit_batches_concurrent_proposals() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, state) = single(dir.path()).await;
    let syncs_before = raft.metrics().sync_batches;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..200 {
        let r = raft.clone();
        set.spawn(async move { r.propose(format!("g{i}=x").into_bytes()).await });
    }
    while let Some(res) = set.join_next().await {
        res.unwrap().unwrap();
    }
    let syncs = raft.metrics().sync_batches - syncs_before;
    assert_eq!(state.lock().unwrap().applies, 200);
    assert!(syncs >= 1);
    eprintln!("group commit: 200 proposals, {syncs} synced batches");
    assert!(
        syncs <= 20,
        "200 concurrent proposals took {syncs} fsync'd batches"
    );
    raft.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_are_routed_to_their_proposer() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, _) = single(dir.path()).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..150 {
        let r = raft.clone();
        set.spawn(async move {
            let data = format!("route{i}=payload-{i}").into_bytes();
            (data.clone(), r.propose(data).await)
        });
    }
    let mut indexes = std::collections::HashSet::new();
    while let Some(res) = set.join_next().await {
        let (data, result) = res.unwrap();
        let applied = result.unwrap();
        assert_eq!(applied.output.echo, data, "got someone else's output");
        assert_eq!(applied.output.index, applied.index);
        assert!(
            indexes.insert(applied.index),
            "index {} handed out twice",
            applied.index
        );
    }
    // Overwriting returns the previous value to the proposer.
    let out = raft.propose(b"route7=new".to_vec()).await.unwrap();
    assert_eq!(out.output.previous.as_deref(), Some("payload-7"));
    raft.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_fails_later_calls_and_releases_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, _) = single(dir.path()).await;
    let clone = raft.clone();
    raft.propose(b"a=1".to_vec()).await.unwrap();
    raft.shutdown().await;
    raft.shutdown().await; // idempotent
    assert_eq!(
        clone.propose(b"b=2".to_vec()).await,
        Err(ProposeError::Shutdown)
    );
    assert!(matches!(
        clone.snapshot_now().await,
        Err(ConsensusError::Shutdown)
    ));
    let s = clone.status();
    assert!(!s.running);
    assert!(!s.is_leader);
    assert!(raft.fatal_error().is_none());
    // The directory is free again while the old handles still exist.
    let (again, state) = single(dir.path()).await;
    wait_for(&again, "replay", |s| s.applied >= 2).await;
    assert_eq!(
        state.lock().unwrap().map.get("a").map(String::as_str),
        Some("1")
    );
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1, true);
    cfg.max_proposal_bytes = 16;
    let (raft, _) = single_with(cfg).await;
    assert_eq!(raft.propose(Vec::new()).await, Err(ProposeError::Empty));
    assert_eq!(
        raft.propose(vec![b'x'; 17]).await,
        Err(ProposeError::TooLarge { size: 17, max: 16 })
    );
    assert!(matches!(
        raft.step(&[0xff, 0xff, 0xff]),
        Err(ConsensusError::DecodeMessage(_))
    ));
    raft.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbootstrapped_server_waits_and_refuses_proposals() {
    let dir = tempfile::tempdir().unwrap();
    let (sm, _) = KvMachine::new();
    let raft = start(config(dir.path(), 1, false), sm, NoopTransport).unwrap();
    let s = raft.status();
    assert!(!s.is_leader);
    assert_eq!(s.leader_id, None);
    assert_eq!(s.last_contact, None);
    assert!(s.voters.is_empty());
    assert_eq!(
        raft.propose(b"x=1".to_vec()).await,
        Err(ProposeError::NotLeader { leader: None })
    );
    raft.shutdown().await;
    // Nothing raft-related was written while unconfigured, so the directory
    // still counts as empty and a later bootstrap proceeds.
    let (raft, _) = single(dir.path()).await;
    assert_eq!(raft.status().voters, vec![1]);
    raft.shutdown().await;
}

#[test]
fn invalid_config_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1, true);
    cfg.election_tick = 1;
    let (sm, _) = KvMachine::new();
    assert!(matches!(
        start(cfg, sm, NoopTransport),
        Err(ConsensusError::Config(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_the_machine_cannot_apply_stops_the_node_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, state) = single(dir.path()).await;
    raft.propose(b"a=1".to_vec()).await.unwrap();
    let err = raft.propose(b"poison".to_vec()).await.unwrap_err();
    assert_eq!(err, ProposeError::Fatal);
    wait_for(&raft, "stop", |s| !s.running).await;
    assert!(matches!(
        raft.fatal_error().as_deref(),
        Some(ConsensusError::Apply { .. })
    ));
    // Nothing after the bad entry is applied, and it is not counted as applied.
    assert!(raft.propose(b"b=2".to_vec()).await.is_err());
    assert_eq!(state.lock().unwrap().applies, 1);
    assert!(!state.lock().unwrap().map.contains_key("b"));
}
