//! The protocol plugin contract: how a request-response protocol frames its PDUs.
//!
//! The engine asks a plugin two questions per PDU, each once: from the first
//! [`prefix_len`](Protocol::prefix_len) bytes, how long the header is and whether a header
//! digest ends it ([`Protocol::frame`]); from the whole header, digest verified and stripped,
//! what the PDU is ([`Protocol::parse`]): its typed header ([`Protocol::Header`]) and where its
//! data lies ([`PduLayout`]). The typed header travels with the PDU to the state machine in
//! [`Event::Control`](crate::Event::Control) or [`Event::Data`](crate::Event::Data): nothing
//! downstream parses the header again. A refusal is the plugin's own typed error
//! ([`Protocol::Error`]), reported as [`Error::Protocol`](crate::Error::Protocol).

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

/// What a PDU's first bytes say about its header, from [`Protocol::frame`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct HeaderFrame {
    /// Header bytes, including the header digest if there is one.
    pub len: usize,
    /// The last four header bytes are a CRC32C over the bytes before them; the engine verifies
    /// it before [`Protocol::parse`] sees the header.
    pub digest: bool,
}

/// Where the data of one PDU lies, read from its header by [`Protocol::parse`].
///
/// After the header (and its digest), a PDU is: alignment padding up to `data_offset`
/// (covered by no digest), `data_len` data bytes, `data_pad` trailing pad bytes (covered by the
/// data digest when `digest_covers_pad`), and a 4-byte data digest when `data_digest`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct PduLayout {
    /// Offset of the first data byte from the start of the PDU (at least the header's length,
    /// digest included).
    pub data_offset: u32,
    /// Data bytes.
    pub data_len: u32,
    /// Pad bytes after the data (at most [`MAX_PAD`]).
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
    /// A PDU made of a header of `header_len` bytes (digest included) and nothing else.
    pub const fn header_only(header_len: u32) -> Self {
        Self {
            data_offset: header_len,
            data_len: 0,
            data_pad: 0,
            data_digest: false,
            digest_covers_pad: false,
            placement: None,
        }
    }

    /// Total bytes of the PDU on the wire, for a header of `header_len` bytes (digest
    /// included).
    ///
    /// # Errors
    ///
    /// [`LayoutError`] if the data starts inside the header or the pad is longer than
    /// 3 bytes.
    pub fn total_len(&self, header_len: usize) -> Result<u64, LayoutError> {
        if (self.data_offset as usize) < header_len {
            return Err(LayoutError::DataInsideHeader {
                header_len,
                data_offset: self.data_offset,
            });
        }
        if self.data_pad > MAX_PAD {
            return Err(LayoutError::PadTooLong { pad: self.data_pad });
        }
        let digest = if self.data_digest { 4 } else { 0 };
        Ok(u64::from(self.data_offset)
            + u64::from(self.data_len)
            + u64::from(self.data_pad)
            + digest)
    }
}

/// The longest pad a [`PduLayout`] may have: data is padded to a multiple of 4 bytes.
pub const MAX_PAD: u32 = 3;

/// A [`PduLayout`] the engine cannot frame.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum LayoutError {
    /// The data starts inside the header.
    DataInsideHeader {
        /// The header's length, digest included.
        header_len: usize,
        /// Where the layout says data starts.
        data_offset: u32,
    },
    /// The pad is longer than [`MAX_PAD`] bytes.
    PadTooLong {
        /// The pad's length.
        pad: u32,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DataInsideHeader {
                header_len,
                data_offset,
            } => write!(
                f,
                "data offset {data_offset} lies inside the {header_len}-byte header"
            ),
            Self::PadTooLong { pad } => {
                write!(
                    f,
                    "a pad of {pad} bytes (data is padded to 4 bytes: at most 3)"
                )
            }
        }
    }
}

impl std::error::Error for LayoutError {}

/// What [`Protocol::parse`] read from a header: the typed header and the PDU's layout.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Parsed<H> {
    /// Where the PDU's data lies and where it goes.
    pub layout: PduLayout,
    /// The header, decoded: handed on with the PDU's event.
    pub header: H,
}

/// A ready-made error type for simple plugins (tests, examples); real protocols use their
/// codec's own error type as [`Protocol::Error`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum HeaderError {
    /// The PDU type or opcode is not one this side may receive.
    UnknownType(u8),
    /// A field holds a value the protocol forbids.
    InvalidField {
        /// Byte offset of the field within the header.
        offset: u16,
        /// What is wrong, in words.
        reason: &'static str,
    },
    /// Lengths overflow or contradict each other.
    LengthOverflow,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownType(t) => write!(f, "unknown PDU type {t:#04x}"),
            Self::InvalidField { offset, reason } => {
                write!(f, "invalid header field at byte {offset}: {reason}")
            }
            Self::LengthOverflow => f.write_str("PDU lengths overflow or contradict"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// A protocol plugin: frames the PDUs of one request-response protocol for the receive engine.
///
/// The engine calls [`frame`](Protocol::frame) once it holds
/// [`prefix_len`](Protocol::prefix_len) bytes of a PDU, then, once it holds the whole header
/// and has verified its digest, [`parse`](Protocol::parse), exactly once per PDU and in stream
/// order (a plugin may keep what `frame` decoded for `parse`). Both take untrusted bytes and
/// must not panic. The plugin is stateful (`&mut self`) because what a header means can depend
/// on negotiation (digests switch on after login); the protocol's state machine adjusts it
/// through [`Engine::protocol_mut`](crate::Engine::protocol_mut).
pub trait Protocol {
    /// A decoded PDU header, handed to the state machine with the PDU's event.
    type Header: fmt::Debug;
    /// Why the plugin refused a header: the protocol's own wire error, which names the PDU and
    /// field. Always fatal for the connection: the stream can no longer be framed.
    type Error: fmt::Debug + fmt::Display + Clone;

    /// The protocol's identifier, for backends' limits.
    fn id(&self) -> ProtocolId;

    /// Bytes needed to know a header's full length (NVMe/TCP: the 8-byte common header; iSCSI:
    /// the 48-byte basic header segment).
    fn prefix_len(&self) -> usize;

    /// The longest header the plugin accepts, digest included.
    fn max_header_len(&self) -> usize;

    /// The length of the header most PDUs have, digest included (NVMe/TCP's data PDUs: 24 or
    /// 28 bytes; iSCSI: 48 or 52). The reader path reads this much ahead when a header comes
    /// next, to need one `read` per header instead of two. Defaults to
    /// [`prefix_len`](Protocol::prefix_len).
    fn typical_header_len(&self) -> usize {
        self.prefix_len()
    }

    /// Bytes of header-only PDUs the plugin expects right after the PDU it parsed last when
    /// that PDU carries a command's last data (the response: NVMe/TCP's CapsuleResp after a
    /// C2HData with LAST_PDU and without SUCCESS, iSCSI's SCSI Response after a final Data-In
    /// without status). The engine uses it only for a data PDU that completes its command's
    /// buffer; the reader path then reads the response, and the next header, together with
    /// the end of the payload: one `read` per command instead of two. Only a hint: if
    /// something else follows, at most this many of its bytes go through the receive buffer.
    /// Defaults to 0.
    fn expected_after(&self) -> usize {
        0
    }

    /// From the first [`prefix_len`](Protocol::prefix_len) bytes of a PDU: its header's length
    /// (at least `prefix_len`) and whether a header digest ends it.
    ///
    /// # Errors
    ///
    /// The plugin's error if the prefix is invalid.
    fn frame(&mut self, prefix: &[u8]) -> Result<HeaderFrame, Self::Error>;

    /// From the complete header, without its digest (which the engine verified), the typed
    /// header and the PDU's layout.
    ///
    /// # Errors
    ///
    /// The plugin's error if any field is invalid.
    fn parse(&mut self, header: &[u8]) -> Result<Parsed<Self::Header>, Self::Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_len_adds_every_part() {
        let layout = PduLayout {
            data_offset: 32,
            data_len: u32::MAX,
            data_pad: 3,
            data_digest: true,
            digest_covers_pad: true,
            placement: None,
        };
        assert_eq!(layout.total_len(28), Ok(32 + u64::from(u32::MAX) + 3 + 4));
        assert_eq!(PduLayout::header_only(48).total_len(48), Ok(48));
    }

    #[test]
    fn data_inside_the_header_is_refused() {
        let layout = PduLayout {
            data_offset: 8,
            ..PduLayout::header_only(24)
        };
        let err = layout.total_len(24).unwrap_err();
        assert_eq!(
            err,
            LayoutError::DataInsideHeader {
                header_len: 24,
                data_offset: 8
            }
        );
        assert_eq!(
            err.to_string(),
            "data offset 8 lies inside the 24-byte header"
        );
        let long_pad = PduLayout {
            data_len: 5,
            data_pad: 4,
            ..PduLayout::header_only(24)
        };
        assert_eq!(
            long_pad.total_len(24),
            Err(LayoutError::PadTooLong { pad: 4 })
        );
    }
}
