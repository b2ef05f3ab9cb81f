//! The way through the engine for requests the cache cannot answer, shared by the
//! UDP and TCP listeners: decoding as hickory-server decodes, and encoding the request
//! handler's response as hickory-server encodes it.
//!
//! A request shorter than a header is dropped, one that does not decode gets FORMERR,
//! a response (QR set) is ignored: reflection starts with answering answers.

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::op::{
    Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder,
};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Mutex;
use tracing::{debug, warn};

/// Where a request came from, and so where its answer goes.
#[derive(Clone)]
pub(crate) enum Peer {
    /// A datagram's sender, answered on the listener's socket.
    Udp {
        socket: Arc<UdpSocket>,
        dst: SocketAddr,
    },
    /// A TCP connection, answered with a length-prefixed frame.
    Tcp {
        writer: Arc<Mutex<OwnedWriteHalf>>,
        src: SocketAddr,
    },
}

impl Peer {
    fn protocol(&self) -> Protocol {
        match self {
            Peer::Udp { .. } => Protocol::Udp,
            Peer::Tcp { .. } => Protocol::Tcp,
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Peer::Udp { dst, .. } => *dst,
            Peer::Tcp { src, .. } => *src,
        }
    }

    /// Sends one message. A full socket buffer is the only way a UDP send blocks,
    /// and then only briefly; the answer is dropped on any error, as a lost
    /// datagram would be.
    async fn send(&self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Peer::Udp { socket, dst } => socket.send_to(bytes, *dst).map(drop),
            Peer::Tcp { writer, .. } => crate::tcp::write_frame(writer, bytes).await,
        }
    }
}

/// A request the cache could not answer: decoded, and answered through the request
/// handler (or with FORMERR, or not at all).
pub(crate) async fn answer<H: RequestHandler>(handler: H, bytes: Vec<u8>, peer: Peer) {
    match decode(bytes, peer.addr(), peer.protocol()) {
        Decoded::Request(request) => {
            handler
                .handle_request::<_, TokioTime>(&request, Reply(peer))
                .await;
        }
        Decoded::Reply(bytes) => {
            let _ = peer.send(&bytes).await;
        }
        Decoded::Drop => {}
    }
}

/// Sends the handler's response back to its peer.
#[derive(Clone)]
struct Reply(Peer);

#[async_trait::async_trait]
impl ResponseHandler for Reply {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let (info, bytes) = encode(response, self.0.protocol());
        self.0.send(&bytes).await?;
        Ok(info)
    }
}

/// What became of a request's bytes.
enum Decoded {
    /// A request for the handler.
    Request(Box<Request>),
    /// Not decodable: this FORMERR goes back.
    Reply(Vec<u8>),
    /// Not worth an answer.
    Drop,
}

/// Decodes a request that arrived over `protocol` from `src`.
fn decode(bytes: Vec<u8>, src: SocketAddr, protocol: Protocol) -> Decoded {
    let header = match Header::read(&mut BinDecoder::new(&bytes)) {
        // A response is never answered, not even with FORMERR.
        Ok(header) if header.metadata.message_type == MessageType::Response => {
            return Decoded::Drop
        }
        Ok(header) => header,
        Err(_) => return Decoded::Drop,
    };
    match Request::from_bytes(bytes, src, protocol) {
        Ok(request) => Decoded::Request(Box::new(request)),
        Err(error) => {
            debug!(%error, %src, "undecodable DNS request");
            let mut metadata = Metadata::response_from_request(&header.metadata);
            metadata.response_code = ResponseCode::FormErr;
            Decoded::Reply(header_only(metadata).1)
        }
    }
}

/// A message of just a header.
fn header_only(metadata: Metadata) -> (ResponseInfo, Vec<u8>) {
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    let mut bytes = Vec::with_capacity(12);
    // A bare header always encodes.
    let _ = header.emit(&mut BinEncoder::new(&mut bytes));
    (ResponseInfo::from(header), bytes)
}

/// Encodes the handler's response for `protocol`: cut at the requester's buffer over
/// UDP (512 without EDNS), whole over TCP; SERVFAIL when it does not encode.
fn encode<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    protocol: Protocol,
) -> (ResponseInfo, Vec<u8>) {
    let id = response.metadata().id;
    let max_size = match protocol {
        Protocol::Udp => response.edns().map_or(512, |edns| edns.max_payload()),
        _ => u16::MAX,
    };
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(max_size);
    match response.destructive_emit(&mut encoder) {
        Ok(info) => (info, bytes),
        Err(error) => {
            warn!(%error, "error encoding DNS response");
            let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
            metadata.response_code = ResponseCode::ServFail;
            header_only(metadata)
        }
    }
}
