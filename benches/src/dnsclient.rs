//! A closed-loop DNS client for the latency rows of `dns`: each client sends one
//! query, waits for its answer, and sends the next, over UDP or one TCP
//! connection, through the same driver as the HTTP workloads.
//!
//! dnsperf gives per-query latencies too (see [`crate::dnsperf`]), but over TCP
//! its own pacing dominates them: at 10,000 queries/s it reported a p50 of
//! 0.11 ms for Tribune and for unbound alike (0.41 ms with four connections),
//! where this client sees ~0.025 ms for unbound and ~0.05 ms for Tribune. This client is the same for
//! both transports and both servers, so what differs between rows is the server.
//!
//! Queries are built by hand (header, question, an EDNS0 OPT record): the
//! benchmark has no DNS library, and a fixed question needs none. An answer
//! counts only if it is a NOERROR response to that query with the expected
//! number of answer records.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::driver::{self, Ctx, Measured, Plan};
use crate::sys::Sampler;

/// Record types asked for.
pub const TYPE_A: u16 = 1;
/// SRV.
pub const TYPE_SRV: u16 = 33;
/// The EDNS buffer size advertised (dig's default, DNS Flag Day 2020's); every
/// answer here is far smaller.
const EDNS_UDP_SIZE: u16 = 1232;
/// How long to wait for one answer before counting the query as failed.
const TIMEOUT: Duration = Duration::from_secs(1);

/// The wire form of a query for `name` (dotted, no trailing dot needed) and
/// `qtype`, with recursion desired (as dig and dnsperf send) and an OPT record.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    for count in [1u16, 0, 0, 1] {
        m.extend_from_slice(&count.to_be_bytes()); // QD, AN, NS, AR
    }
    for label in name.trim_end_matches('.').split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes()); // class IN
                                              // OPT: root name, type 41, class = UDP size, TTL 0 (no flags), no options.
    m.push(0);
    m.extend_from_slice(&41u16.to_be_bytes());
    m.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    m
}

/// Fails unless `resp` answers query `id` with NOERROR and `answers` records.
fn check(resp: &[u8], id: u16, answers: u16) -> Result<()> {
    if resp.len() < 12 {
        bail!("short response ({} bytes)", resp.len());
    }
    let rid = u16::from_be_bytes([resp[0], resp[1]]);
    let qr = resp[2] & 0x80 != 0;
    let rcode = resp[3] & 0x0f;
    let ancount = u16::from_be_bytes([resp[6], resp[7]]);
    if rid != id || !qr {
        bail!("response id {rid} (qr {qr}) to query {id}");
    }
    if rcode != 0 || ancount != answers {
        bail!("rcode {rcode} with {ancount} answers, expected NOERROR with {answers}");
    }
    Ok(())
}

/// One client's transport.
enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

impl Conn {
    async fn open(server: SocketAddr, tcp: bool) -> Result<Conn> {
        Ok(if tcp {
            let s = TcpStream::connect(server).await?;
            // Without it the length prefix and the query could wait on Nagle.
            s.set_nodelay(true)?;
            Conn::Tcp(s)
        } else {
            let s = UdpSocket::bind("127.0.0.1:0").await?;
            s.connect(server).await?;
            Conn::Udp(s)
        })
    }

    /// Send `q` and read the answer to it into `buf`; returns its length.
    async fn ask(&mut self, q: &[u8], id: u16, buf: &mut [u8]) -> Result<usize> {
        match self {
            Conn::Udp(s) => {
                s.send(q).await?;
                loop {
                    let n = s.recv(buf).await?;
                    // A late answer to an earlier, timed-out query: skip it.
                    if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) != id {
                        continue;
                    }
                    return Ok(n);
                }
            }
            Conn::Tcp(s) => {
                let mut framed = Vec::with_capacity(q.len() + 2);
                framed.extend_from_slice(&(q.len() as u16).to_be_bytes());
                framed.extend_from_slice(q);
                s.write_all(&framed).await?;
                let len = s.read_u16().await? as usize;
                s.read_exact(&mut buf[..len]).await?;
                Ok(len)
            }
        }
    }
}

/// `clients` closed-loop clients, each asking `questions` in turn, one at a
/// time; every answer must carry `answers` records.
pub async fn closed_loop(
    server: SocketAddr,
    tcp: bool,
    clients: usize,
    questions: &[(&str, u16)],
    answers: u16,
    plan: Plan,
    sampler: &Sampler,
) -> Result<Measured> {
    let questions: Vec<(String, u16)> =
        questions.iter().map(|(n, t)| (n.to_string(), *t)).collect();
    driver::run(clients, plan, sampler, move |i, mut ctx: Ctx| {
        let questions = questions.clone();
        async move {
            let mut conn = Conn::open(server, tcp)
                .await
                .with_context(|| format!("connecting to {server}"))?;
            // The largest DNS message, UDP or TCP.
            let mut buf = vec![0u8; 65535];
            ctx.ready().await?;
            let mut id = (i as u16).wrapping_mul(7919);
            let mut k = 0;
            while let Some(t0) = ctx.begin() {
                id = id.wrapping_add(1);
                let (name, qtype) = &questions[k % questions.len()];
                k += 1;
                let q = query(id, name, *qtype);
                let res = tokio::time::timeout(TIMEOUT, conn.ask(&q, id, &mut buf)).await;
                match res
                    .map_err(|_| anyhow::anyhow!("no answer within {TIMEOUT:?}"))
                    .and_then(|r| r)
                    .and_then(|n| check(&buf[..n], id, answers))
                {
                    Ok(()) => ctx.done(t0),
                    Err(e) => {
                        ctx.failed(t0, e);
                        // A TCP stream may be mid-message after a timeout.
                        if tcp {
                            conn = Conn::open(server, tcp).await?;
                        }
                    }
                }
            }
            Ok(ctx)
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_query_dig_would_send() {
        let q = query(0x1234, "web.service.consul", TYPE_SRV);
        assert_eq!(&q[..12], &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&q[12..32], b"\x03web\x07service\x06consul\x00");
        assert_eq!(&q[32..36], &[0, 33, 0, 1]);
        assert_eq!(&q[36..], &[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn checks_the_answer() {
        let mut r = vec![0x12, 0x34, 0x84, 0x00, 0, 1, 0, 5, 0, 0, 0, 1];
        assert!(check(&r, 0x1234, 5).is_ok());
        assert!(check(&r, 0x1235, 5).is_err());
        assert!(check(&r, 0x1234, 3).is_err());
        r[3] = 3; // NXDOMAIN
        assert!(check(&r, 0x1234, 5).is_err());
    }
}
