//! The receive engine's errors.

use core::fmt;

use crate::protocol::HeaderError;
use crate::types::Tag;

/// What went wrong on a queue's receive path or in a call to the engine.
///
/// [`is_fatal`](Error::is_fatal) errors mean the stream can no longer be framed or trusted: the
/// engine refuses further input and the protocol must close the connection (after the
/// termination PDU its specification prescribes). The other receive errors concern one PDU,
/// whose payload the engine discarded without writing a byte; the protocol decides whether the
/// connection survives them.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The protocol rejected a header.
    Header(HeaderError),
    /// A header digest did not match; the header cannot be trusted.
    HeaderDigest {
        /// The digest computed over the received header.
        computed: u32,
        /// The digest received.
        received: u32,
    },
    /// A header claims more bytes than the protocol allows.
    HeaderTooLong {
        /// Claimed length.
        len: usize,
        /// The protocol's maximum.
        max: usize,
    },
    /// A control PDU carries more data than the engine buffers.
    ControlTooLarge {
        /// Data bytes claimed.
        len: u32,
        /// The configured maximum.
        max: u32,
    },
    /// Data for a tag that has no registered buffer.
    UnknownTag(Tag),
    /// Data for a tag whose teardown has started: the command is finished.
    TagFinished(Tag),
    /// Data that would pass the end of the command's buffer.
    DataOutOfRange {
        /// The command.
        tag: Tag,
        /// First offset of the data.
        offset: u64,
        /// Data bytes.
        len: u32,
        /// The registered buffer's length.
        buffer_len: u64,
    },
    /// Data for buffer bytes that already received data.
    DuplicateData {
        /// The command.
        tag: Tag,
        /// First offset of the data.
        offset: u64,
        /// Data bytes.
        len: u32,
    },
    /// Data for a command whose earlier data arrived in too many separate pieces (out of
    /// order, with gaps): refused to bound the engine's work.
    TooFragmented {
        /// The command.
        tag: Tag,
    },
    /// The backend broke its contract (placed bytes that are not data of a mapped command).
    BackendViolation(&'static str),
    /// [`Engine::reconfigure`](crate::Engine::reconfigure) while a PDU is partly received or a
    /// command holds a buffer.
    Busy,
    /// [`Engine::setup`](crate::Engine::setup) for a tag that still has a buffer.
    TagInUse(Tag),
    /// The engine failed earlier and takes no more input.
    Failed,
}

impl Error {
    /// Whether the connection's byte stream is beyond repair.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::Header(_)
                | Self::HeaderDigest { .. }
                | Self::HeaderTooLong { .. }
                | Self::ControlTooLarge { .. }
                | Self::BackendViolation(_)
                | Self::Failed
        )
    }
}

impl From<HeaderError> for Error {
    fn from(e: HeaderError) -> Self {
        Self::Header(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(e) => write!(f, "bad PDU header: {e}"),
            Self::HeaderDigest { computed, received } => write!(
                f,
                "header digest mismatch: computed {computed:#010x}, received {received:#010x}"
            ),
            Self::HeaderTooLong { len, max } => {
                write!(f, "header of {len} bytes exceeds the maximum of {max}")
            }
            Self::ControlTooLarge { len, max } => {
                write!(
                    f,
                    "control PDU with {len} data bytes exceeds the maximum of {max}"
                )
            }
            Self::UnknownTag(t) => write!(f, "data for unknown {t}"),
            Self::TagFinished(t) => write!(f, "data for finished {t}"),
            Self::DataOutOfRange {
                tag,
                offset,
                len,
                buffer_len,
            } => write!(
                f,
                "{len} data bytes at offset {offset} pass the end of {tag}'s {buffer_len}-byte buffer"
            ),
            Self::DuplicateData { tag, offset, len } => {
                write!(
                    f,
                    "{len} data bytes at offset {offset} of {tag} arrived twice"
                )
            }
            Self::TooFragmented { tag } => {
                write!(f, "data for {tag} arrived in too many separate pieces")
            }
            Self::BackendViolation(what) => write!(f, "backend broke its contract: {what}"),
            Self::Busy => f.write_str("the queue is busy: a PDU or a command is in flight"),
            Self::TagInUse(t) => write!(f, "{t} already has a buffer"),
            Self::Failed => f.write_str("the receive engine failed earlier"),
        }
    }
}

impl std::error::Error for Error {}
