//! What goes into the engine (stream pieces) and what comes out (events), with the small types
//! around them.

use core::fmt;

use crate::buffer::SgBuffer;
use crate::error::DataError;
use crate::limits::Decline;
use crate::protocol::Protocol;
use crate::types::{Tag, TcpSeq};

/// One piece of the in-order byte stream, with the backend's annotations.
#[derive(Clone, Copy, Debug)]
pub enum Piece<'a> {
    /// Bytes in a receive buffer (the CPU places whatever of them is payload).
    Bytes {
        /// The bytes.
        data: &'a [u8],
        /// The backend verified every digest these bytes belong to (the kernel's `ulp_crc`).
        digest_ok: bool,
    },
    /// `len` payload bytes the backend already wrote into `tag`'s buffer at `offset` (the
    /// kernel's "source equals destination" skip). The engine checks that this is where the
    /// stream puts them: a device that disagrees with the engine's framing breaks the contract.
    Placed {
        /// The command whose buffer holds the bytes.
        tag: Tag,
        /// Offset of the first byte in that buffer.
        offset: u64,
        /// Bytes placed.
        len: u32,
        /// The backend verified every digest these bytes belong to.
        digest_ok: bool,
    },
}

impl<'a> Piece<'a> {
    /// Plain bytes without annotations.
    pub fn bytes(data: &'a [u8]) -> Self {
        Self::Bytes {
            data,
            digest_ok: false,
        }
    }

    /// Stream bytes this piece stands for.
    pub fn len(&self) -> usize {
        match self {
            Self::Bytes { data, .. } => data.len(),
            Self::Placed { len, .. } => *len as usize,
        }
    }

    /// Whether the piece stands for no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The verdict on a PDU's data digest.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum DigestStatus {
    /// The PDU carries no data digest.
    Absent,
    /// The backend verified it; the CPU computed nothing.
    Offloaded,
    /// The engine computed it (fused with placement where it could) and it matched.
    Computed,
    /// It did not match.
    Mismatch {
        /// The digest of the received data.
        computed: u32,
        /// The digest on the wire.
        received: u32,
    },
}

impl DigestStatus {
    /// Whether the data may be trusted: absent, offloaded or computed and matching.
    pub fn is_ok(&self) -> bool {
        !matches!(self, Self::Mismatch { .. })
    }
}

/// What the engine reports, polled with [`Engine::poll_event`](crate::Engine::poll_event) in
/// the order it happened. `P` is the protocol plugin: events carry its typed header.
#[non_exhaustive]
pub enum Event<P: Protocol> {
    /// A PDU whose data (if any) is not for a registered buffer: the protocol handles it.
    Control {
        /// The header, as the plugin decoded it.
        header: P::Header,
        /// The data, without padding or digest.
        data: Vec<u8>,
        /// The verdict on the data digest.
        digest: DigestStatus,
        /// Stream sequence number of the PDU's first byte.
        seq: TcpSeq,
    },
    /// A data PDU's payload is in the command's buffer.
    Data {
        /// The header, as the plugin decoded it (it carries the protocol's flags, e.g. "last").
        header: P::Header,
        /// The command.
        tag: Tag,
        /// Offset of the data in the command's buffer.
        offset: u64,
        /// Data bytes.
        len: u32,
        /// The verdict on the data digest.
        digest: DigestStatus,
    },
    /// A teardown completed: the buffer is the caller's again.
    Released {
        /// The command.
        tag: Tag,
        /// Its buffer, with whatever data was placed.
        buffer: SgBuffer,
        /// Whether the backend had mapped it (else the CPU placed all of its data).
        offloaded: bool,
    },
    /// A PDU's data was refused for this reason and discarded; the protocol fails the command
    /// (the stream itself is intact).
    Error(DataError),
}

impl<P: Protocol> fmt::Debug for Event<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Control {
                header,
                data,
                digest,
                seq,
            } => f
                .debug_struct("Control")
                .field("header", header)
                .field("data_len", &data.len())
                .field("digest", digest)
                .field("seq", seq)
                .finish(),
            Self::Data {
                header,
                tag,
                offset,
                len,
                digest,
            } => f
                .debug_struct("Data")
                .field("header", header)
                .field("tag", tag)
                .field("offset", offset)
                .field("len", len)
                .field("digest", digest)
                .finish(),
            Self::Released {
                tag,
                buffer,
                offloaded,
            } => f
                .debug_struct("Released")
                .field("tag", tag)
                .field("buffer", buffer)
                .field("offloaded", offloaded)
                .finish(),
            Self::Error(e) => f.debug_tuple("Error").field(e).finish(),
        }
    }
}

/// What [`Engine::setup`](crate::Engine::setup) did with a command's buffer. Either way the
/// engine holds it until [`Event::Released`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SetupOutcome {
    /// The backend mapped the buffer; the device may place data directly.
    Offloaded,
    /// The engine places the data by copying, for this reason.
    Copied(Decline),
}

/// Where the next bytes read from a socket should go; see
/// [`Engine::read_target`](crate::Engine::read_target).
#[derive(Debug)]
pub enum ReadTarget<'a> {
    /// Payload of a registered command: read into this slice of its buffer, then call
    /// [`Engine::commit_in_place`](crate::Engine::commit_in_place).
    InPlace(&'a mut [u8]),
    /// Not payload of a registered command: read at most this many bytes into a receive buffer
    /// and pass them to [`Engine::receive`](crate::Engine::receive). Reading more is allowed
    /// but may pull payload through the receive buffer (a CPU copy).
    Bytes(usize),
}

/// Engine settings beyond the queue's configuration.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct EngineOptions {
    /// Most data bytes buffered for one control PDU.
    pub max_control_data: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_control_data: 1 << 20,
        }
    }
}
