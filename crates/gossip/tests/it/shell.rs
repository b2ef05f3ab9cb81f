//! Real gossips on loopback UDP/TCP sockets (port 0). Every wait is on the event
//! channel with a timeout; timings are shortened so failures are detected in
//! about a second.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio::time::Instant;
use tribune_gossip::config::CoreConfig;
use tribune_gossip::core::{Event, MemberEventKind};
use tribune_gossip::error::GossipError;
use tribune_gossip::keyring::{keygen, Keyring};
use tribune_gossip::{Gossip, GossipConfig, GossipEvent};
use tribune_types::model::Member;

const WAIT: Duration = Duration::from_secs(20);

fn fast() -> CoreConfig {
    CoreConfig {
        probe_interval: Duration::from_millis(200),
        probe_timeout: Duration::from_millis(100),
        gossip_interval: Duration::from_millis(50),
        suspicion_mult: 3,
        push_pull_interval: Duration::from_secs(2),
        reconnect_interval: Duration::from_secs(1),
        tcp_timeout: Duration::from_secs(2),
        broadcast_timeout: Duration::from_secs(2),
        leave_propagate_delay: Duration::ZERO,
        dead_node_reclaim_time: Duration::ZERO,
        ..CoreConfig::local()
    }
}

fn config(name: &str, keyring: Option<Keyring>) -> GossipConfig {
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut cfg = GossipConfig::new(name, bind, Default::default());
    cfg.core = fast();
    cfg.keyring = keyring;
    cfg
}

async fn start(name: &str, keyring: Option<Keyring>) -> (Gossip, Receiver<GossipEvent>) {
    let g = Gossip::start(config(name, keyring)).await.unwrap();
    let rx = g.subscribe();
    (g, rx)
}

fn addr_of(g: &Gossip) -> String {
    g.local_addr().to_string()
}

/// Wait, event by event, until `done` holds for `g`'s member list.
async fn wait_members(
    g: &Gossip,
    rx: &mut Receiver<GossipEvent>,
    mut done: impl FnMut(&[Member]) -> bool,
) -> bool {
    let deadline = Instant::now() + WAIT;
    loop {
        if done(&g.members()) {
            return true;
        }
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return done(&g.members()),
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
            Ok(Err(RecvError::Closed)) => return false,
        }
    }
}

/// Wait for an event matching `want`; returns it.
async fn wait_event(
    rx: &mut Receiver<GossipEvent>,
    mut want: impl FnMut(&GossipEvent) -> bool,
) -> Option<GossipEvent> {
    let deadline = Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return None,
            Ok(Ok(ev)) if want(&ev) => return Some(ev),
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
            Ok(Err(RecvError::Closed)) => return None,
        }
    }
}

fn status(members: &[Member], name: &str) -> Option<u8> {
    members.iter().find(|m| m.name == name).map(|m| m.status)
}

fn all_alive<'a>(names: &'a [&'a str]) -> impl FnMut(&[Member]) -> bool + 'a {
    move |ms| names.iter().all(|n| status(ms, n) == Some(1))
}

fn is_member_event(kind: MemberEventKind, name: &str) -> impl FnMut(&GossipEvent) -> bool + '_ {
    move |ev| matches!(ev, Event::Member { kind: k, member } if *k == kind && member.name == name)
}

/// Start `names`, join all to the first, and wait until everyone sees everyone.
async fn cluster(names: &[&str], keyring: Option<Keyring>) -> Vec<(Gossip, Receiver<GossipEvent>)> {
    let mut nodes = Vec::new();
    for name in names {
        nodes.push(start(name, keyring.clone()).await);
    }
    let seed = addr_of(&nodes[0].0);
    for (g, _) in &nodes[1..] {
        assert_eq!(g.join(std::slice::from_ref(&seed)).await.unwrap(), 1);
    }
    for (g, rx) in &mut nodes {
        assert!(
            wait_members(g, rx, all_alive(names)).await,
            "{:?}",
            g.members()
        );
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_and_see_each_other_alive() {
    let nodes = cluster(&["a", "b", "c", "d"], None).await;
    let (a, _) = &nodes[0];
    let members = a.members();
    assert_eq!(members.len(), 4);
    let b = members.iter().find(|m| m.name == "b").unwrap();
    assert_eq!(b.addr, "127.0.0.1");
    assert_eq!(b.port, nodes[1].0.local_addr().port());
    assert_ne!(b.port, 0);
    for (g, _) in &nodes {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_member_is_failed_then_force_left() {
    let mut nodes = cluster(&["a", "b", "c", "d"], None).await;
    let (d, _) = nodes.pop().unwrap();
    d.shutdown().await; // no leave: a crash as far as the others can tell
    for (g, rx) in &mut nodes {
        let ev = wait_event(rx, is_member_event(MemberEventKind::Failed, "d")).await;
        assert!(ev.is_some(), "no failure seen");
        assert_eq!(status(&g.members(), "d"), Some(4));
    }
    nodes[0].0.force_leave("d", false).await.unwrap();
    let (b, rx_b) = &mut nodes[1];
    assert!(
        wait_event(rx_b, is_member_event(MemberEventKind::Leave, "d"))
            .await
            .is_some()
    );
    assert_eq!(status(&b.members(), "d"), Some(3));
    assert!(matches!(
        nodes[0].0.force_leave("nobody", false).await,
        Err(GossipError::UnknownMember { .. })
    ));
    for (g, _) in &nodes {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_leave_is_left_not_failed() {
    let mut nodes = cluster(&["a", "b", "c"], None).await;
    let (c, _) = nodes.pop().unwrap();
    c.leave().await.unwrap();
    assert_eq!(status(&c.members(), "c"), Some(3));
    c.shutdown().await;
    for (g, rx) in &mut nodes {
        let ev = wait_event(rx, |ev| {
            matches!(ev, Event::Member { kind: MemberEventKind::Leave | MemberEventKind::Failed, member } if member.name == "c")
        })
        .await;
        let Some(Event::Member { kind, .. }) = ev else {
            panic!("no event for c");
        };
        assert_eq!(kind, MemberEventKind::Leave);
        assert_eq!(status(&g.members(), "c"), Some(3));
    }
    for (g, _) in &nodes {
        g.shutdown().await;
    }
}

/// Encryption rolled out on a running pool, as Consul documents it: first
/// the key with both verifications off (everyone still speaks plaintext),
/// then `encrypt_verify_outgoing` (encrypted out, plaintext still taken),
/// then both on, where a node without the key is shut out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_is_rolled_out_on_a_running_pool() {
    let key = Keyring::new(&keygen()).unwrap();
    let step = |name: &str, keyring: Option<Keyring>, incoming: bool, outgoing: bool| {
        let mut c = config(name, keyring);
        c.verify_incoming = incoming;
        c.verify_outgoing = outgoing;
        async move {
            let g = Gossip::start(c).await.unwrap();
            let rx = g.subscribe();
            (g, rx)
        }
    };
    let (plain, mut rx_plain) = start("plain", None).await;
    let (first, _) = step("first", Some(key.clone()), false, false).await;
    assert_eq!(first.join(&[addr_of(&plain)]).await.unwrap(), 1);
    assert!(wait_members(&plain, &mut rx_plain, all_alive(&["plain", "first"])).await);

    // Encrypting what it sends, and still taking plaintext: it talks with
    // `first`, which has the key.
    let (second, mut rx_second) = step("second", Some(key.clone()), false, true).await;
    assert_eq!(second.join(&[addr_of(&first)]).await.unwrap(), 1);
    assert!(
        wait_members(&second, &mut rx_second, |m| m
            .iter()
            .any(|m| m.name == "first"))
        .await
    );

    // Both on: plaintext is refused.
    let (strict, _) = step("strict", Some(key), true, true).await;
    assert!(plain.join(&[addr_of(&strict)]).await.is_err());
    assert!(strict.stats().plaintext_rejected >= 1);
    for g in [plain, first, second, strict] {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_keys_do_not_join_and_bad_packets_are_dropped() {
    let k1 = Keyring::new(&keygen()).unwrap();
    let k2 = Keyring::new(&keygen()).unwrap();
    let (a, mut rx_a) = start("a", Some(k1.clone())).await;
    let (b, _) = start("b", Some(k2)).await;
    let (plain, _) = start("plain", None).await;
    let seed = addr_of(&a);

    let err = b.join(std::slice::from_ref(&seed)).await.unwrap_err();
    assert!(
        matches!(err, GossipError::JoinFailed { attempted: 1, .. }),
        "{err}"
    );
    assert!(plain.join(std::slice::from_ref(&seed)).await.is_err());
    let stats = a.stats();
    assert!(stats.decrypt_failures >= 1, "{stats:?}");
    assert!(stats.plaintext_rejected >= 1, "{stats:?}");

    // Garbage datagrams: counted, never fatal.
    let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for payload in [&b""[..], b"\x81short", b"\x01\x91\xc4\x01", &[0x81; 200]] {
        junk.send_to(payload, a.local_addr()).await.unwrap();
    }

    // A member with the right key still joins, and nobody else got in.
    let (c, _) = start("c", Some(k1)).await;
    assert_eq!(c.join(&[seed]).await.unwrap(), 1);
    assert!(wait_members(&a, &mut rx_a, all_alive(&["a", "c"])).await);
    assert_eq!(a.members().len(), 2);
    assert!(a.stats().decrypt_failures >= 3, "{:?}", a.stats());
    for g in [&a, &b, &plain, &c] {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_keeps_members_alive_and_events_flowing() {
    let old = keygen();
    let new = keygen();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("serf").join("local.keyring");
    let names = ["a", "b", "c"];
    let mut nodes = Vec::new();
    for name in names {
        let mut cfg = config(name, Some(Keyring::new(&old).unwrap()));
        if name == "a" {
            cfg.keyring_file = Some(file.clone());
        }
        let g = Gossip::start(cfg).await.unwrap();
        let rx = g.subscribe();
        nodes.push((g, rx));
    }
    let seed = addr_of(&nodes[0].0);
    for (g, _) in &nodes[1..] {
        g.join(std::slice::from_ref(&seed)).await.unwrap();
    }
    for (g, rx) in &mut nodes {
        assert!(wait_members(g, rx, all_alive(&names)).await);
    }

    for (g, _) in &nodes {
        g.install_key(&new).unwrap();
    }
    for (g, _) in &nodes {
        g.use_key(&new).unwrap();
    }
    for (g, _) in &nodes {
        assert!(matches!(
            g.remove_key(&new),
            Err(GossipError::RemovePrimaryKey)
        ));
        g.remove_key(&old).unwrap();
        assert_eq!(g.list_keys().unwrap(), vec![new.clone()]);
    }
    let saved: Vec<String> = keys_in_file(&file);
    assert_eq!(saved, vec![new.clone()]);

    // Traffic after the rotation flows only under the new key.
    nodes[0].0.fire_event("deploy", b"v2").await.unwrap();
    for (_, rx) in &mut nodes {
        let ev = wait_event(rx, |ev| matches!(ev, Event::User(u) if u.name == "deploy")).await;
        let Some(Event::User(u)) = ev else {
            panic!("event not delivered");
        };
        assert_eq!(u.payload, b"v2");
    }
    // A push/pull round trip under the new key, and nobody was failed meanwhile.
    let stats_before = nodes[0].0.stats().stream_errors;
    nodes[2].0.join(&[seed]).await.unwrap();
    assert_eq!(nodes[0].0.stats().stream_errors, stats_before);
    for (g, rx) in &mut nodes {
        while let Ok(ev) = rx.try_recv() {
            assert!(
                !matches!(
                    ev,
                    Event::Member {
                        kind: MemberEventKind::Failed,
                        ..
                    }
                ),
                "{ev:?}"
            );
        }
        assert!(all_alive(&names)(&g.members()));
    }
    assert!(matches!(
        nodes[0].0.fire_event("big", &[0; 600]).await,
        Err(GossipError::UserEventTooLarge { .. })
    ));
    for (g, _) in &nodes {
        g.shutdown().await;
    }

    // A restart finds the rotated keyring in its file and ignores the stale key.
    let mut cfg = config("a", Some(Keyring::new(&old).unwrap()));
    cfg.keyring_file = Some(file);
    let a = Gossip::start(cfg).await.unwrap();
    assert_eq!(a.list_keys().unwrap(), vec![new]);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyring_ops_without_encryption_are_refused_and_tags_update() {
    let mut nodes = cluster(&["a", "b"], None).await;
    let (b, mut rx_b) = nodes.pop().unwrap();
    let (a, _) = &nodes[0];
    assert!(matches!(
        a.install_key(&keygen()),
        Err(GossipError::EncryptionDisabled)
    ));
    assert!(matches!(
        a.list_keys(),
        Err(GossipError::EncryptionDisabled)
    ));
    let tags = [("role".to_string(), "node".to_string())].into();
    a.set_tags(tags).await.unwrap();
    let ev = wait_event(&mut rx_b, is_member_event(MemberEventKind::Update, "a")).await;
    assert!(ev.is_some());
    let seen = b.members().into_iter().find(|m| m.name == "a").unwrap();
    assert_eq!(seen.tags.get("role").map(String::as_str), Some("node"));
    a.shutdown().await;
    b.shutdown().await;
}

fn keys_in_file(path: &std::path::Path) -> Vec<String> {
    Keyring::load(path).unwrap().unwrap().list()
}
