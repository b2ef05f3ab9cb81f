//! Three servers in one process, wired by an in-memory transport: membership
//! changes, snapshot transfer to joining servers, replication, and failover.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tribune_consensus::{start, MembershipChange, ProposeError, Raft, RaftInbox, Transport};

use crate::support::{config, propose_many, wait_for, KvMachine, KvState};

type Router = Arc<Mutex<HashMap<u64, RaftInbox<KvMachine>>>>;

/// Delivers messages straight into the peer's inbox (or drops them if the peer
/// is not running), like a network that never reorders.
struct MemTransport {
    router: Router,
}

impl Transport for MemTransport {
    fn send(&mut self, to: u64, msg_bytes: Vec<u8>) {
        let inbox = self.router.lock().unwrap().get(&to).cloned();
        if let Some(inbox) = inbox {
            let _ = inbox.step(&msg_bytes);
        }
    }
}

struct Node {
    raft: Raft<KvMachine>,
    state: Arc<Mutex<KvState>>,
    _dir: tempfile::TempDir,
}

fn spawn(router: &Router, id: u64, bootstrap: bool, threshold: u64) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), id, bootstrap);
    cfg.snapshot_threshold = threshold;
    cfg.trailing_logs = 5;
    let (sm, state) = KvMachine::new();
    let raft = start(
        cfg,
        sm,
        MemTransport {
            router: router.clone(),
        },
    )
    .unwrap();
    router.lock().unwrap().insert(id, raft.inbox());
    Node {
        raft,
        state,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_replicate_and_fail_over() {
    let router: Router = Arc::default();
    // A low threshold on the first server so joiners must be sent a snapshot.
    let n1 = spawn(&router, 1, true, 20);
    wait_for(&n1.raft, "n1 leadership", |s| s.is_leader).await;
    propose_many(&n1.raft, "pre", 60, 5).await;
    assert!(
        n1.raft.status().first_index > 1,
        "log should be compacted before joins"
    );

    let n2 = spawn(&router, 2, false, 20);
    let n3 = spawn(&router, 3, false, 20);
    n1.raft
        .change_membership(MembershipChange::AddVoter(2))
        .await
        .unwrap();
    n1.raft
        .change_membership(MembershipChange::AddVoter(3))
        .await
        .unwrap();
    let last = propose_many(&n1.raft, "post", 40, 5).await;

    for n in [&n1, &n2, &n3] {
        let s = wait_for(&n.raft, "catch up", |s| s.applied >= last).await;
        assert_eq!(s.voters, vec![1, 2, 3]);
    }
    let expected = n1.state.lock().unwrap().clone();
    assert_eq!(expected.map.len(), 100);
    for n in [&n2, &n3] {
        assert_eq!(n.state.lock().unwrap().map, expected.map);
        assert!(n.raft.metrics().snapshots_installed >= 1);
        let s = n.raft.status();
        assert_eq!(s.leader_id, Some(1));
        assert!(
            s.last_contact.is_some_and(|d| d < Duration::from_secs(2)),
            "{s:?}"
        );
        assert_eq!(
            n.raft.propose(b"f=1".to_vec()).await,
            Err(ProposeError::NotLeader { leader: Some(1) })
        );
    }

    // Leader goes away; one of the others takes over and keeps the data.
    router.lock().unwrap().remove(&1);
    n1.raft.shutdown().await;
    let new_leader = tokio::select! {
        s = wait_for(&n2.raft, "failover", |s| s.is_leader) => { let _ = s; &n2 }
        s = wait_for(&n3.raft, "failover", |s| s.is_leader) => { let _ = s; &n3 }
    };
    let applied = new_leader
        .raft
        .propose(b"after=failover".to_vec())
        .await
        .unwrap();
    for n in [&n2, &n3] {
        wait_for(&n.raft, "replicate after failover", |s| {
            s.applied >= applied.index
        })
        .await;
        assert_eq!(
            n.state.lock().unwrap().map.get("after").map(String::as_str),
            Some("failover")
        );
    }
    n2.raft.shutdown().await;
    n3.raft.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_membership_is_persisted() {
    let router: Router = Arc::default();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1, true);
    let (sm, _) = KvMachine::new();
    let raft = start(
        cfg.clone(),
        sm,
        MemTransport {
            router: router.clone(),
        },
    )
    .unwrap();
    wait_for(&raft, "leadership", |s| s.is_leader).await;
    // A learner does not count towards quorum, so a lone voter keeps committing
    // even though server 9 never answers.
    raft.change_membership(MembershipChange::AddLearner(9))
        .await
        .unwrap();
    // Whoever made the change reads it back at once (the operator API does).
    assert_eq!(raft.status().learners, vec![9]);
    raft.propose(b"k=v".to_vec()).await.unwrap();
    assert_eq!(raft.status().learners, vec![9]);
    // A second change while... nothing pending: removing works too.
    raft.change_membership(MembershipChange::Remove(9))
        .await
        .unwrap();
    raft.change_membership(MembershipChange::AddLearner(8))
        .await
        .unwrap();
    raft.snapshot_now().await.unwrap();
    raft.shutdown().await;

    let (sm, _) = KvMachine::new();
    let raft = start(cfg, sm, MemTransport { router }).unwrap();
    let s = wait_for(&raft, "leadership after restart", |s| s.is_leader).await;
    assert_eq!(s.voters, vec![1]);
    assert_eq!(s.learners, vec![8]);
    raft.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_bootstrap_together_read_linearizably_and_transfer_leadership() {
    let router: Router = Arc::default();
    let nodes: Vec<Node> = (1..=3).map(|id| spawn(&router, id, false, 0)).collect();
    // Unformed servers never elect anyone.
    for n in &nodes {
        assert!(n.raft.status().voters.is_empty());
    }
    for n in &nodes {
        n.raft.bootstrap(vec![3, 2, 1]).await.unwrap();
    }
    let leader = tokio::select! {
        _ = wait_for(&nodes[0].raft, "leader", |s| s.is_leader) => 0,
        _ = wait_for(&nodes[1].raft, "leader", |s| s.is_leader) => 1,
        _ = wait_for(&nodes[2].raft, "leader", |s| s.is_leader) => 2,
    };
    let l = &nodes[leader].raft;
    // A second bootstrap is refused: a cluster is formed once.
    assert!(matches!(
        l.bootstrap(vec![1, 2, 3]).await,
        Err(tribune_consensus::ConsensusError::AlreadyBootstrapped)
    ));
    let applied = l.propose(b"k=v".to_vec()).await.unwrap();
    // Many concurrent consistent reads: each sees at least the acknowledged write.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let r = l.clone();
        set.spawn(async move { r.read_index().await });
    }
    while let Some(res) = set.join_next().await {
        assert!(res.unwrap().unwrap() >= applied.index);
    }
    let follower = (leader + 1) % 3;
    assert!(matches!(
        nodes[follower].raft.read_index().await,
        Err(ProposeError::NotLeader { .. })
    ));
    let progress = l.progress().await;
    assert_eq!(progress.len(), 3);
    assert!(progress.iter().all(|p| p.voter));
    let to = nodes[follower].raft.id();
    wait_for(&nodes[follower].raft, "catch up", |s| {
        s.applied >= applied.index
    })
    .await;
    l.transfer_leader(to).await.unwrap();
    wait_for(&nodes[follower].raft, "transferred leadership", |s| {
        s.is_leader
    })
    .await;
    for n in &nodes {
        n.raft.shutdown().await;
    }
}
