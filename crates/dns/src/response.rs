//! A response as the engine hands it to the transport: header, sections, EDNS.
//!
//! The question section is the request's; hickory-server echoes it from the request's
//! own bytes, so the asked case survives. [`Response::encode`] encodes exactly as
//! hickory-server's response encoder does, so sizes measured here are sizes sent.

use hickory_proto::op::{emit_message_parts, Edns, Header, Metadata, Query};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinEncoder, NameEncoding};
use hickory_proto::ProtoError;

/// A response being assembled or ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// Header fields (the counts are computed when encoding).
    pub metadata: Metadata,
    /// The request's questions, as asked.
    pub queries: Vec<Query>,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section.
    pub authority: Vec<Record>,
    /// Additional section, without the OPT record.
    pub additional: Vec<Record>,
    /// The OPT record, when the request had one.
    pub edns: Option<Edns>,
}

impl Response {
    /// Encodes with `max_size` as the limit past which records are dropped and TC set
    /// (hickory's behaviour for UDP).
    pub fn encode(&self, max_size: u16, compress: bool) -> Result<(Header, Vec<u8>), ProtoError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max_size);
        if !compress {
            encoder.set_name_encoding(NameEncoding::Uncompressed);
        }
        let header = emit_message_parts(
            &self.metadata,
            &mut self.queries.iter(),
            &mut self.answers.iter(),
            &mut self.authority.iter(),
            &mut self.additional.iter(),
            self.edns.as_ref(),
            None,
            &mut encoder,
        )?;
        Ok((header, bytes))
    }

    /// The encoded size; `usize::MAX` when it does not encode whole.
    pub fn len(&self, compress: bool) -> usize {
        match self.encode(u16::MAX, compress) {
            Ok((header, bytes)) if !header.metadata.truncation => bytes.len(),
            _ => usize::MAX,
        }
    }
}
