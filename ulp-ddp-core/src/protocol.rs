//! The protocol plugin contract: how a request-response protocol frames its PDUs.

use core::fmt;

use crate::types::{ProtocolId, Tag};

/// Where a PDU's data goes when it belongs to a command's registered buffer.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Placement {
    /// The command the data belongs to.
    pub tag: Tag,
    /// Offset of the first data byte within the command's buffer.
    pub offset: u64,
}

/// The layout of one PDU, read from its header by a [`Protocol`].
///
/// A PDU is, in order: `header_len` header bytes (ending in a 4-byte header digest when
/// `header_digest`), alignment padding up to `data_offset` (covered by no digest), `data_len`
/// data bytes, `data_pad` trailing pad bytes (covered by the data digest when
/// `digest_covers_pad`), and a 4-byte data digest when `data_digest`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct PduLayout {
    /// Header bytes, including the header digest if present.
    pub header_len: u32,
    /// The last four header bytes are a CRC32C over the header bytes before them.
    pub header_digest: bool,
    /// Offset of the first data byte from the start of the PDU (at least `header_len`).
    pub data_offset: u32,
    /// Data bytes.
    pub data_len: u32,
    /// Pad bytes after the data.
    pub data_pad: u32,
    /// A 4-byte CRC32C follows the data (and pad). Protocols omit it when there is no data.
    pub data_digest: bool,
    /// The data digest covers the trailing pad bytes too (iSCSI: yes).
    pub digest_covers_pad: bool,
    /// `Some` when the data goes into a command's registered buffer; `None` when it is part of a
    /// control PDU handed to the caller.
    pub placement: Option<Placement>,
}

impl PduLayout {
    /// A PDU made of a header only.
    pub fn header_only(header_len: u32, header_digest: bool) -> Self {
        Self {
            header_len,
            header_digest,
            data_offset: header_len,
            data_len: 0,
            data_pad: 0,
            data_digest: false,
            digest_covers_pad: false,
            placement: None,
        }
    }

    /// Total bytes of the PDU on the wire.
    ///
    /// # Errors
    ///
    /// [`HeaderError::LengthOverflow`] if the parts do not add up within 64 bits or contradict
    /// each other (data before the end of the header, a digest inside a header too short to hold
    /// one).
    pub fn total_len(&self) -> Result<u64, HeaderError> {
        if self.data_offset < self.header_len || (self.header_digest && self.header_len < 4) {
            return Err(HeaderError::LengthOverflow);
        }
        let digest = if self.data_digest { 4 } else { 0 };
        Ok(u64::from(self.data_offset)
            + u64::from(self.data_len)
            + u64::from(self.data_pad)
            + digest)
    }
}

/// Why a protocol rejected a PDU header. Always fatal for the connection: the stream can no
/// longer be framed.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum HeaderError {
    /// The PDU type or opcode is not one this side may receive.
    UnknownType(u8),
    /// A field holds a value the protocol forbids.
    InvalidField {
        /// Byte offset of the field within the header.
        offset: u16,
        /// What is wrong, for logs.
        reason: &'static str,
    },
    /// Lengths overflow or contradict each other.
    LengthOverflow,
    /// The header is longer than the protocol's maximum.
    TooLong {
        /// The length the header claims.
        len: u32,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownType(t) => write!(f, "unknown PDU type {t:#04x}"),
            Self::InvalidField { offset, reason } => {
                write!(f, "invalid header field at byte {offset}: {reason}")
            }
            Self::LengthOverflow => f.write_str("PDU lengths overflow or contradict"),
            Self::TooLong { len } => write!(f, "header of {len} bytes is too long"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// A protocol plugin: frames the PDUs of one request-response protocol for the receive engine.
///
/// The engine calls [`header_len`](Protocol::header_len) once it holds
/// [`prefix_len`](Protocol::prefix_len) bytes of a PDU, then [`parse`](Protocol::parse) once it
/// holds the whole header. Both take untrusted bytes and must not panic. The plugin is stateful
/// (`&mut self`) because what a header means can depend on negotiation (digests switch on after
/// login); the protocol's connection state machine adjusts it through
/// [`Engine::protocol_mut`](crate::Engine::protocol_mut).
pub trait Protocol {
    /// The protocol's identifier, for backends' limits.
    fn id(&self) -> ProtocolId;

    /// Bytes needed to know a header's full length (NVMe/TCP: the 8-byte common header; iSCSI:
    /// the 48-byte basic header segment).
    fn prefix_len(&self) -> usize;

    /// The longest header the plugin accepts, digest included.
    fn max_header_len(&self) -> usize;

    /// The length of the header most PDUs have, digest included (NVMe/TCP's data PDUs: 24 or
    /// 28 bytes; iSCSI: 48 or 52). The reader path reads this much ahead when a header comes
    /// next, to need one `read` per header instead of two. Never more than the shortest header
    /// that can follow would be ideal; more only costs a small copy. Defaults to
    /// [`prefix_len`](Protocol::prefix_len).
    fn typical_header_len(&self) -> usize {
        self.prefix_len()
    }

    /// From the first [`prefix_len`](Protocol::prefix_len) bytes of a PDU, its header length
    /// including any header digest.
    ///
    /// # Errors
    ///
    /// A [`HeaderError`] if the prefix is invalid.
    fn header_len(&mut self, prefix: &[u8]) -> Result<usize, HeaderError>;

    /// From the complete header (digest included and already verified by the engine when
    /// [`has_header_digest`](Protocol::has_header_digest) said there is one), the PDU's layout.
    ///
    /// # Errors
    ///
    /// A [`HeaderError`] if any field is invalid.
    fn parse(&mut self, header: &[u8]) -> Result<PduLayout, HeaderError>;

    /// Whether the header (of the length [`header_len`](Protocol::header_len) returned) ends in
    /// a header digest. The engine verifies it before calling [`parse`](Protocol::parse).
    fn has_header_digest(&self, header: &[u8]) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_len_adds_every_part() {
        let layout = PduLayout {
            header_len: 24,
            header_digest: true,
            data_offset: 32,
            data_len: u32::MAX,
            data_pad: 3,
            data_digest: true,
            digest_covers_pad: true,
            placement: None,
        };
        assert_eq!(layout.total_len(), Ok(32 + u64::from(u32::MAX) + 3 + 4));
        assert_eq!(PduLayout::header_only(48, false).total_len(), Ok(48));
    }

    #[test]
    fn contradictory_lengths_are_refused() {
        let data_before_header_end = PduLayout {
            data_offset: 8,
            ..PduLayout::header_only(24, false)
        };
        assert_eq!(
            data_before_header_end.total_len(),
            Err(HeaderError::LengthOverflow)
        );
        assert_eq!(
            PduLayout::header_only(3, true).total_len(),
            Err(HeaderError::LengthOverflow)
        );
    }
}
