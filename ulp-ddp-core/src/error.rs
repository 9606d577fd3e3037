//! The receive engine's errors, and the backend's.

use core::fmt;

use crate::types::{ProtocolId, QueueId, Tag};

/// A fatal error on a queue's receive path, or a call the engine refused.
///
/// [`is_fatal`](Error::is_fatal) errors mean the stream can no longer be framed or trusted: the
/// engine refuses further input and the protocol must close the connection (after the
/// termination PDU its specification prescribes). `E` is the protocol plugin's own error type
/// ([`Protocol::Error`](crate::Protocol::Error)), carried as is in [`Error::Protocol`]: the
/// state machine learns exactly which PDU and field the plugin refused. Problems with one PDU's
/// data are not errors of this type but [`DataError`]s, reported in
/// [`Event::Error`](crate::Event::Error).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Error<E = crate::HeaderError> {
    /// The protocol plugin refused a header.
    Protocol(E),
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
    /// The plugin framed a header shorter than its own prefix (plus the digest it announced).
    HeaderTooShort {
        /// Claimed length.
        len: usize,
        /// The least it can be.
        min: usize,
    },
    /// The plugin parsed a layout whose data starts inside the header.
    BadLayout(crate::LayoutError),
    /// A control PDU carries more data than the engine buffers.
    ControlTooLarge {
        /// Data bytes claimed.
        len: u32,
        /// The configured maximum.
        max: u32,
    },
    /// The backend broke its contract (placed bytes that are not data of a mapped command).
    BackendViolation(&'static str),
    /// [`Engine::teardown`](crate::Engine::teardown) of a tag that has no registered buffer.
    UnknownTag(Tag),
    /// [`Engine::teardown`](crate::Engine::teardown) of a tag whose teardown already started.
    TagFinished(Tag),
    /// [`Engine::reconfigure`](crate::Engine::reconfigure) while a PDU is partly received or a
    /// command holds a buffer.
    Busy,
    /// [`Engine::setup`](crate::Engine::setup) for a tag that still has a buffer.
    TagInUse(Tag),
    /// The engine failed earlier and takes no more input.
    Failed,
}

impl<E> Error<E> {
    /// Whether the connection's byte stream is beyond repair.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::Protocol(_)
                | Self::HeaderDigest { .. }
                | Self::HeaderTooLong { .. }
                | Self::HeaderTooShort { .. }
                | Self::BadLayout(_)
                | Self::ControlTooLarge { .. }
                | Self::BackendViolation(_)
                | Self::Failed
        )
    }

    /// The same error with the protocol's error converted by `f`.
    pub fn map_protocol<F>(self, f: impl FnOnce(E) -> F) -> Error<F> {
        match self {
            Self::Protocol(e) => Error::Protocol(f(e)),
            Self::HeaderDigest { computed, received } => Error::HeaderDigest { computed, received },
            Self::HeaderTooLong { len, max } => Error::HeaderTooLong { len, max },
            Self::HeaderTooShort { len, min } => Error::HeaderTooShort { len, min },
            Self::BadLayout(e) => Error::BadLayout(e),
            Self::ControlTooLarge { len, max } => Error::ControlTooLarge { len, max },
            Self::BackendViolation(what) => Error::BackendViolation(what),
            Self::UnknownTag(t) => Error::UnknownTag(t),
            Self::TagFinished(t) => Error::TagFinished(t),
            Self::Busy => Error::Busy,
            Self::TagInUse(t) => Error::TagInUse(t),
            Self::Failed => Error::Failed,
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol(e) => write!(f, "bad PDU header: {e}"),
            Self::HeaderDigest { computed, received } => write!(
                f,
                "header digest mismatch: computed {computed:#010x}, received {received:#010x}"
            ),
            Self::HeaderTooLong { len, max } => {
                write!(f, "header of {len} bytes exceeds the maximum of {max}")
            }
            Self::HeaderTooShort { len, min } => {
                write!(
                    f,
                    "header of {len} bytes is shorter than the minimum of {min}"
                )
            }
            Self::BadLayout(e) => write!(f, "bad PDU layout: {e}"),
            Self::ControlTooLarge { len, max } => {
                write!(
                    f,
                    "control PDU with {len} data bytes exceeds the maximum of {max}"
                )
            }
            Self::BackendViolation(what) => write!(f, "backend broke its contract: {what}"),
            Self::UnknownTag(t) => write!(f, "{t} has no registered buffer"),
            Self::TagFinished(t) => write!(f, "{t} is already being torn down"),
            Self::Busy => f.write_str("the queue is busy: a PDU or a command is in flight"),
            Self::TagInUse(t) => write!(f, "{t} already has a buffer"),
            Self::Failed => f.write_str("the receive engine failed earlier"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Protocol(e) => Some(e),
            Self::BadLayout(e) => Some(e),
            _ => None,
        }
    }
}

/// Why the engine refused one PDU's data. The payload was discarded: the CPU wrote none of it
/// (a device that places by tag may already have written it, but only into that same
/// command's registered range, as hardware does). The protocol decides what it means for the
/// command and the connection.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum DataError {
    /// Data for a tag that has no registered buffer.
    UnknownTag(Tag),
    /// Data for a tag whose teardown has started: the command is finished.
    TagFinished(Tag),
    /// Data that would pass the end of the command's buffer.
    OutOfRange {
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
    Duplicate {
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
}

impl DataError {
    /// The command the data named.
    pub fn tag(&self) -> Tag {
        match *self {
            Self::UnknownTag(tag)
            | Self::TagFinished(tag)
            | Self::OutOfRange { tag, .. }
            | Self::Duplicate { tag, .. }
            | Self::TooFragmented { tag } => tag,
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownTag(t) => write!(f, "data for {t}, which has no registered buffer"),
            Self::TagFinished(t) => write!(f, "data for {t}, which is already finished"),
            Self::OutOfRange {
                tag,
                offset,
                len,
                buffer_len,
            } => write!(
                f,
                "{len} data bytes at offset {offset} pass the end of {tag}'s {buffer_len}-byte buffer"
            ),
            Self::Duplicate { tag, offset, len } => {
                write!(
                    f,
                    "{len} data bytes at offset {offset} of {tag} arrived twice"
                )
            }
            Self::TooFragmented { tag } => {
                write!(f, "data for {tag} arrived in too many separate pieces")
            }
        }
    }
}

impl std::error::Error for DataError {}

/// Why a backend refused an operation.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend does not offload this protocol.
    UnsupportedProtocol(ProtocolId),
    /// The queue's configuration is beyond the backend (depth, digests, alignment).
    UnsupportedConfig,
    /// The backend has no room for another queue.
    TooManyQueues,
    /// The queue id is already in use.
    QueueExists(QueueId),
    /// No such queue.
    UnknownQueue(QueueId),
    /// The tag is already mapped (or its teardown has not completed).
    TagBusy(Tag),
    /// The tag is not mapped.
    UnknownTag(Tag),
    /// The buffer has more segments than the backend maps.
    TooManySegments,
    /// The buffer is larger than the backend maps.
    TooLarge,
    /// The buffer's segments are within the count the backend maps but their sizes are not
    /// (ConnectX-7: a received packet could span more of them than a socket buffer has
    /// fragments, `MAX_SKB_FRAGS`).
    SegmentLayout,
    /// The tag is outside the range the backend tracks.
    TagOutOfRange(Tag),
    /// Out of device resources (mapping tables, memory keys, work queue entries).
    NoResources,
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedProtocol(p) => write!(f, "protocol {p} is not offloaded"),
            Self::UnsupportedConfig => f.write_str("queue configuration not supported"),
            Self::TooManyQueues => f.write_str("no room for another queue"),
            Self::QueueExists(q) => write!(f, "{q} already exists"),
            Self::UnknownQueue(q) => write!(f, "{q} does not exist"),
            Self::TagBusy(t) => write!(f, "{t} is still mapped"),
            Self::UnknownTag(t) => write!(f, "{t} is not mapped"),
            Self::TooManySegments => f.write_str("too many scatter-gather segments"),
            Self::TooLarge => f.write_str("buffer too large"),
            Self::SegmentLayout => f.write_str(
                "scatter-gather segments too small: one packet could span more of them than the device places",
            ),
            Self::TagOutOfRange(t) => write!(f, "{t} is outside the tracked range"),
            Self::NoResources => f.write_str("out of device resources"),
        }
    }
}

impl std::error::Error for BackendError {}
