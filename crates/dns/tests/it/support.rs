//! A running server on loopback, a raw DNS client, catalog fixtures.

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tribune_dns::{DnsConfig, DnsError, DnsServer, Lookup, MemLookup};
use tribune_types::model::{Node, Service};

/// Every network wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

/// A server bound on 127.0.0.1:0, running until [`TestServer::stop`].
pub struct TestServer {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), DnsError>>,
}

impl TestServer {
    pub async fn start(config: DnsConfig, lookup: impl Lookup) -> TestServer {
        let config = DnsConfig {
            bind: vec!["127.0.0.1:0".parse().unwrap()],
            ..config
        };
        let server = DnsServer::bind(config, Arc::new(lookup)).await.unwrap();
        let udp = server.udp_addrs()[0];
        let tcp = server.tcp_addrs()[0];
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestServer {
            udp,
            tcp,
            stop,
            task,
        }
    }

    /// Signals shutdown and waits for the listeners to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("server stops")
            .expect("server task")
            .expect("server result");
    }
}

/// A query message for `name` / `qtype` with ID `id`.
pub fn query(id: u16, name: &str, qtype: RecordType, edns_size: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns_size {
        let mut edns = Edns::new();
        edns.set_max_payload(size);
        m.set_edns(edns);
    }
    m
}

/// A UDP client socket on loopback.
pub async fn udp_client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Sends raw bytes from `socket` to `server` and waits for one datagram back.
pub async fn udp_raw(socket: &UdpSocket, server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    socket.send_to(bytes, server).await.unwrap();
    udp_recv(socket).await
}

/// Waits for one datagram.
pub async fn udp_recv(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .expect("a UDP reply in time")
        .unwrap();
    buf.truncate(n);
    buf
}

/// One question over UDP: the decoded reply and its size on the wire.
pub async fn ask_udp(server: SocketAddr, msg: &Message) -> (Message, usize) {
    let socket = udp_client().await;
    let bytes = udp_raw(&socket, server, &msg.to_vec().unwrap()).await;
    (Message::from_vec(&bytes).unwrap(), bytes.len())
}

/// One question over TCP: the decoded reply and its size.
pub async fn ask_tcp(server: SocketAddr, msg: &Message) -> (Message, usize) {
    let bytes = msg.to_vec().unwrap();
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.unwrap();
        let len = u16::try_from(bytes.len()).unwrap();
        stream.write_all(&len.to_be_bytes()).await.unwrap();
        stream.write_all(&bytes).await.unwrap();
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.unwrap();
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut reply).await.unwrap();
        reply
    };
    let reply = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("a TCP reply in time");
    (Message::from_vec(&reply).unwrap(), reply.len())
}

pub fn node(name: &str, addr: &str) -> Node {
    Node {
        node: name.into(),
        address: addr.into(),
        datacenter: "dc1".into(),
        ..Node::default()
    }
}

pub fn service(node: &str, name: &str, port: u16) -> Service {
    Service {
        node: node.into(),
        id: format!("{name}-{port}").into(),
        service: name.into(),
        port,
        ..Service::default()
    }
}

/// `n` healthy instances of `big` on nodes with long names, and one `web`.
pub fn catalog(n: u16) -> MemLookup {
    let mut lookup = MemLookup::new("dc1")
        .with_node(node("web1", "10.0.0.1"))
        .with_service(service("web1", "web", 80));
    for i in 0..n {
        let name = format!("node-with-a-rather-long-name-{i:04}");
        let addr = format!("10.1.{}.{}", i / 250, i % 250 + 1);
        lookup = lookup
            .with_node(node(&name, &addr))
            .with_service(service(&name, "big", 8000 + i));
    }
    lookup
}
