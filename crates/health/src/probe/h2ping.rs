//! H2PING checks, as Consul's `CheckH2PING`: open an HTTP/2 connection and send a
//! PING frame; an acknowledgement carrying the same 8 bytes is passing.
//!
//! hyper's HTTP/2 client does not expose PING, so the few frames involved are
//! spoken here directly (RFC 9113 §3.4, §6.5, §6.7, §6.8): a pure [`PingExchange`]
//! decides what to send for each frame received, and [`probe`] moves the bytes.
//! With `h2ping_use_tls` (Consul's default for checks registered over the API or in
//! config files) the connection is TLS offering ALPN `h2` (module `tls`); like Go's `tls.Dialer`,
//! the negotiated protocol is not enforced — a server that does not speak HTTP/2
//! fails the exchange instead. Without it, the connection is cleartext with prior
//! knowledge (Go's `AllowHTTP`). A TLS handshake failure is a dial failure, as in
//! Consul (`Failed to dial to <addr>: ...`).

use super::tls;
use crate::plan::TlsSpec;
use crate::probe::AgentTls;
use crate::status::Probe;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE's initial value: we advertise no other, so a larger frame
/// is a protocol error. It is also what turns an HTTP/1 reply ("HTTP/1.1 400 ...",
/// read as a 4.7 MB frame length) into a clear failure.
const MAX_FRAME_LEN: u32 = 16_384;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHeader {
    len: u32,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl FrameHeader {
    fn parse(b: &[u8; HEADER_LEN]) -> FrameHeader {
        FrameHeader {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5] & 0x7f, b[6], b[7], b[8]]),
        }
    }
}

fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    // Every frame we send is a connection-level frame (stream 0) of at most 8 bytes.
    let len = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&[len[1], len[2], len[3], kind, flags, 0, 0, 0, 0]);
    out.extend_from_slice(payload);
    out
}

/// What to do after a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Keep reading.
    Continue,
    /// Send these bytes, then keep reading.
    Reply(Vec<u8>),
    /// Our PING was acknowledged.
    Acked,
    /// The exchange failed.
    Failed(String),
}

/// The client side of one PING exchange, without I/O.
#[derive(Debug, Clone)]
struct PingExchange {
    payload: [u8; 8],
}

impl PingExchange {
    fn new(payload: [u8; 8]) -> PingExchange {
        PingExchange { payload }
    }

    /// Preface, an empty SETTINGS (all defaults) and our PING, in one write.
    fn opening(&self) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        out.extend(frame(SETTINGS, 0, &[]));
        out.extend(frame(PING, 0, &self.payload));
        out
    }

    /// Rejects a frame before its payload is read.
    fn check_header(&self, h: &FrameHeader) -> Result<(), String> {
        if h.len > MAX_FRAME_LEN {
            return Err(format!(
                "http2: frame too large ({} bytes; is the server speaking HTTP/2?)",
                h.len
            ));
        }
        Ok(())
    }

    fn on_frame(&mut self, h: &FrameHeader, payload: &[u8]) -> Step {
        match h.kind {
            SETTINGS if h.flags & ACK == 0 => Step::Reply(frame(SETTINGS, ACK, &[])),
            PING if payload.len() != 8 || h.stream != 0 => {
                Step::Failed("http2: malformed PING frame".to_owned())
            }
            PING if h.flags & ACK != 0 => {
                if payload == self.payload {
                    Step::Acked
                } else {
                    Step::Continue
                }
            }
            // The server's own PING: answer it, as any HTTP/2 endpoint must.
            PING => Step::Reply(frame(PING, ACK, payload)),
            GOAWAY => {
                let code = payload
                    .get(4..8)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                Step::Failed(format!(
                    "http2: server sent GOAWAY and closed the connection; ErrCode={}",
                    error_code_name(code)
                ))
            }
            _ => Step::Continue,
        }
    }
}

fn error_code_name(code: u32) -> String {
    let name = match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        other => return format!("unknown error code 0x{other:x}"),
    };
    name.to_owned()
}

pub(crate) async fn probe(
    addr: &str,
    tls: Option<&TlsSpec>,
    agent: Option<&AgentTls>,
    timeout: Duration,
) -> Probe {
    let deadline = Instant::now() + timeout;
    let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => {
            return Probe::critical(format!(
                "Failed to dial to {addr}: dial tcp {addr}: i/o timeout"
            ))
        }
        Ok(Err(e)) => {
            return Probe::critical(format!("Failed to dial to {addr}: dial tcp {addr}: {e}"))
        }
        Ok(Ok(s)) => s,
    };
    let mut exchange = PingExchange::new(rand::random());
    let result = match tls {
        None => tokio::time::timeout_at(deadline, run(stream, &mut exchange)).await,
        Some(tls) => {
            let handshake = tls::connect(
                stream,
                addr,
                tls.skip_verify,
                &tls.server_name,
                &[tls::ALPN_H2],
                agent,
            );
            let stream = match tokio::time::timeout_at(deadline, handshake).await {
                Err(_) => {
                    return Probe::critical(format!(
                        "Failed to dial to {addr}: tls: handshake timed out"
                    ))
                }
                Ok(Err(e)) => return Probe::critical(format!("Failed to dial to {addr}: {e}")),
                Ok(Ok(s)) => s,
            };
            tokio::time::timeout_at(deadline, run(stream, &mut exchange)).await
        }
    };
    match result {
        Err(_) => Probe::critical("HTTP2 ping failed: context deadline exceeded"),
        Ok(Err(msg)) => Probe::critical(format!("HTTP2 ping failed: {msg}")),
        Ok(Ok(())) => Probe::passing("HTTP2 ping was successful"),
    }
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    exchange: &mut PingExchange,
) -> Result<(), String> {
    let io = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "connection closed before the PING was acknowledged".to_owned()
        } else {
            e.to_string()
        }
    };
    stream.write_all(&exchange.opening()).await.map_err(io)?;
    loop {
        let mut header = [0u8; HEADER_LEN];
        stream.read_exact(&mut header).await.map_err(io)?;
        let header = FrameHeader::parse(&header);
        exchange.check_header(&header)?;
        let len = usize::try_from(header.len).map_err(|e| e.to_string())?;
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await.map_err(io)?;
        match exchange.on_frame(&header, &payload) {
            Step::Continue => {}
            Step::Reply(bytes) => stream.write_all(&bytes).await.map_err(io)?,
            Step::Acked => {
                // Go's `ClientConn.Shutdown`: a polite GOAWAY(NO_ERROR), best effort.
                let _ = stream.write_all(&frame(GOAWAY, 0, &[0; 8])).await;
                // Over TLS, the close_notify alert; best effort too.
                let _ = stream.shutdown().await;
                return Ok(());
            }
            Step::Failed(msg) => return Err(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: [u8; 8] = *b"tribune!";

    fn header(len: u32, kind: u8, flags: u8) -> FrameHeader {
        FrameHeader {
            len,
            kind,
            flags,
            stream: 0,
        }
    }

    #[test]
    fn opening_is_preface_settings_ping() {
        let bytes = PingExchange::new(OURS).opening();
        assert!(bytes.starts_with(PREFACE));
        let rest = &bytes[PREFACE.len()..];
        assert_eq!(&rest[..9], &[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]);
        assert_eq!(&rest[9..18], &[0, 0, 8, PING, 0, 0, 0, 0, 0]);
        assert_eq!(&rest[18..], &OURS);
    }

    #[test]
    fn header_parsing_masks_the_reserved_bit() {
        let h = FrameHeader::parse(&[0, 1, 2, PING, ACK, 0x80, 0, 0, 5]);
        assert_eq!(
            h,
            FrameHeader {
                len: 258,
                kind: PING,
                flags: ACK,
                stream: 5
            }
        );
    }

    #[test]
    fn a_typical_server_exchange() {
        let mut ex = PingExchange::new(OURS);
        // Server SETTINGS: acknowledged.
        assert_eq!(
            ex.on_frame(&header(6, SETTINGS, 0), &[0, 3, 0, 0, 0, 100]),
            Step::Reply(vec![0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0])
        );
        // ACK of our SETTINGS, a WINDOW_UPDATE: nothing to do.
        assert_eq!(ex.on_frame(&header(0, SETTINGS, ACK), &[]), Step::Continue);
        assert_eq!(
            ex.on_frame(&header(4, 0x8, 0), &[0, 0, 1, 0]),
            Step::Continue
        );
        // The server pings us: echoed back with ACK.
        let mut echo = vec![0, 0, 8, PING, ACK, 0, 0, 0, 0];
        echo.extend_from_slice(b"12345678");
        assert_eq!(
            ex.on_frame(&header(8, PING, 0), b"12345678"),
            Step::Reply(echo)
        );
        // An ACK of someone else's ping is ignored; ours ends the exchange.
        assert_eq!(
            ex.on_frame(&header(8, PING, ACK), b"12345678"),
            Step::Continue
        );
        assert_eq!(ex.on_frame(&header(8, PING, ACK), &OURS), Step::Acked);
    }

    #[test]
    fn goaway_and_malformed_frames_fail() {
        let mut ex = PingExchange::new(OURS);
        assert_eq!(
            ex.on_frame(&header(8, GOAWAY, 0), &[0, 0, 0, 0, 0, 0, 0, 1]),
            Step::Failed(
                "http2: server sent GOAWAY and closed the connection; ErrCode=PROTOCOL_ERROR"
                    .to_owned()
            )
        );
        assert!(matches!(
            ex.on_frame(&header(4, PING, ACK), &[1, 2, 3, 4]),
            Step::Failed(_)
        ));
        // An HTTP/1 status line read as a frame header.
        let h = FrameHeader::parse(b"HTTP/1.1 ");
        assert!(ex.check_header(&h).unwrap_err().contains("frame too large"));
    }
}
