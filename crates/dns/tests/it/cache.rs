//! The answer cache over real sockets, against a catalog that changes: repeated
//! questions are answered without reading the catalog, a change reaches the answers
//! through the watcher, and stopping the server ends the watchers.

use crate::support::*;
use async_trait::async_trait;
use hickory_proto::rr::{RData, RecordType};
use parking_lot::Mutex;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tribune_dns::{DnsConfig, Lookup, LookupError, ServerInfo};
use tribune_types::model::ops::HealthEntry;
use tribune_types::model::Node;

/// A catalog of `web` instances the test edits; every edit moves the index.
struct Shared {
    addrs: Mutex<Vec<String>>,
    index: watch::Sender<u64>,
    reads: AtomicUsize,
    waiting: AtomicUsize,
    wait_ended: Notify,
}

impl Shared {
    fn new(addrs: &[&str]) -> Arc<Shared> {
        Arc::new(Shared {
            addrs: Mutex::new(addrs.iter().map(|a| a.to_string()).collect()),
            index: watch::channel(1).0,
            reads: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            wait_ended: Notify::new(),
        })
    }

    fn set(&self, addrs: &[&str]) {
        *self.addrs.lock() = addrs.iter().map(|a| a.to_string()).collect();
        self.index.send_modify(|i| *i += 1);
    }
}

struct Live(Arc<Shared>);

/// Counts a watcher's blocking query while it is pending.
struct Waiting<'a>(&'a Shared);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
        self.0.wait_ended.notify_waiters();
    }
}

#[async_trait]
impl Lookup for Live {
    fn datacenter(&self) -> String {
        "dc1".into()
    }
    async fn health_service(
        &self,
        dc: Option<&str>,
        service: &str,
        connect: bool,
    ) -> Result<Vec<HealthEntry>, LookupError> {
        Ok(self.health_service_indexed(dc, service, connect).await?.0)
    }
    async fn health_service_indexed(
        &self,
        _dc: Option<&str>,
        service_name: &str,
        _connect: bool,
    ) -> Result<(Vec<HealthEntry>, Option<u64>), LookupError> {
        self.0.reads.fetch_add(1, Ordering::SeqCst);
        let index = *self.0.index.borrow();
        let entries = if service_name == "web" {
            self.0
                .addrs
                .lock()
                .iter()
                .enumerate()
                .map(|(i, addr)| {
                    let name = format!("n{i}");
                    HealthEntry {
                        node: node(&name, addr),
                        service: service(&name, "web", 80),
                        checks: Vec::new(),
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok((entries, Some(index)))
    }
    async fn wait_service(
        &self,
        _dc: Option<&str>,
        _service: &str,
        _connect: bool,
        index: u64,
        wait: Duration,
    ) -> Result<u64, LookupError> {
        self.0.waiting.fetch_add(1, Ordering::SeqCst);
        let _guard = Waiting(&self.0);
        let mut rx = self.0.index.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|i| *i != index)).await;
        let now = *rx.borrow();
        Ok(now)
    }
    async fn node(&self, _dc: Option<&str>, _name: &str) -> Result<Option<Node>, LookupError> {
        Ok(None)
    }
    async fn nodes(&self, _dc: Option<&str>) -> Result<Vec<Node>, LookupError> {
        Ok(Vec::new())
    }
    async fn servers(&self) -> Result<Vec<ServerInfo>, LookupError> {
        Ok(Vec::new())
    }
}

async fn addrs(server: std::net::SocketAddr) -> Vec<IpAddr> {
    let (reply, _) = ask_udp(
        server,
        &query(9, "web.service.consul.", RecordType::A, Some(1232)),
    )
    .await;
    let mut ips: Vec<IpAddr> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

#[tokio::test]
async fn repeated_questions_skip_the_catalog_until_it_changes() {
    let shared = Shared::new(&["10.0.0.1"]);
    let server = TestServer::start(DnsConfig::default(), Live(Arc::clone(&shared))).await;
    let one: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap()];

    assert_eq!(addrs(server.udp).await, one);
    assert_eq!(shared.reads.load(Ordering::SeqCst), 1);
    // The answer was cached before it was sent: these never reach the catalog.
    for _ in 0..20 {
        assert_eq!(addrs(server.udp).await, one);
    }
    assert_eq!(shared.reads.load(Ordering::SeqCst), 1);
    // The same question over TCP is the same entry.
    let (reply, _) = ask_tcp(
        server.tcp,
        &query(3, "web.service.consul.", RecordType::A, Some(1232)),
    )
    .await;
    assert_eq!(reply.metadata.id, 3);
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(shared.reads.load(Ordering::SeqCst), 1);

    // A change wakes the watcher, which drops the entry: the next miss reads the
    // new catalog. (Retried, bounded: the watcher runs on its own task.)
    shared.set(&["10.0.0.1", "10.0.0.2"]);
    let two: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
    let deadline = tokio::time::Instant::now() + WAIT;
    while addrs(server.udp).await != two {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change never showed"
        );
        tokio::task::yield_now().await;
    }
    let reads = shared.reads.load(Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(addrs(server.udp).await, two);
    }
    assert_eq!(shared.reads.load(Ordering::SeqCst), reads, "cached again");

    // Stopping the server ends every watcher's blocking query.
    server.stop().await;
    tokio::time::timeout(WAIT, async {
        loop {
            let ended = shared.wait_ended.notified();
            if shared.waiting.load(Ordering::SeqCst) == 0 {
                return;
            }
            ended.await;
        }
    })
    .await
    .expect("watchers end with the server");
}
