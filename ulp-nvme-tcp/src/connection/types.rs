//! What goes into and comes out of a [`Connection`](super::Connection): its configuration,
//! command data, completions, events and errors.

use std::fmt;
use std::time::Duration;

use ulp_ddp_core::{QueueId, SgBuffer};

use crate::nvme::Status;
use crate::wire::{Digests, Error as WireError, FatalErrorStatus, Pda, PduType};

/// How a connection (one NVMe/TCP queue) is set up.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ConnectionConfig {
    /// The queue's identifier within the DDP backend (unique per backend).
    pub queue_id: QueueId,
    /// NVMe queue identifier (0: admin queue).
    pub qid: u16,
    /// Most commands outstanding at once; CIDs are `0..queue_depth`.
    pub queue_depth: u16,
    /// Digests to request in ICReq. The controller must enable exactly these (as Linux
    /// requires).
    pub digests: Digests,
    /// Alignment the host asks for C2HData payload (HPDA).
    pub hpda: Pda,
    /// Most write data sent in the command capsule; larger writes wait for R2T. Fabrics
    /// commands always carry their data in the capsule.
    pub in_capsule_limit: usize,
    /// Send Keep Alive this often once connected (the admin queue; half the KATO given to
    /// Connect). A timer of the state machine: it fires from `handle_timeout` whatever the
    /// caller is doing. A Keep Alive not answered within twice this (the KATO), or answered
    /// with an error, ends the connection ([`ConnectionError::KeepAliveTimedOut`],
    /// [`ConnectionError::KeepAliveFailed`]), as Linux resets the controller then.
    pub keep_alive: Option<Duration>,
    /// How long a command may stay unanswered once its capsule went out before it is reported
    /// with [`Event::TimedOut`] (`None`: never). Linux's defaults: 30 s for I/O queues
    /// (`io_timeout`), 60 s for the admin queue (`admin_timeout`).
    pub command_timeout: Option<Duration>,
}

/// Linux's `nvme_core.io_timeout`: 30 s.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Linux's `nvme_core.admin_timeout`: 60 s.
pub const DEFAULT_ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

impl ConnectionConfig {
    /// An admin queue configuration (qid 0, depth 32, 8 KiB in-capsule like Linux).
    pub fn admin(queue_id: QueueId, digests: Digests) -> Self {
        Self {
            queue_id,
            qid: 0,
            queue_depth: 32,
            digests,
            hpda: Pda::ZERO,
            in_capsule_limit: 8192,
            keep_alive: None,
            command_timeout: Some(DEFAULT_ADMIN_TIMEOUT),
        }
    }

    /// An I/O queue configuration; `in_capsule_limit` comes from Identify (IOCCSZ).
    pub fn io(queue_id: QueueId, qid: u16, queue_depth: u16, digests: Digests) -> Self {
        Self {
            queue_id,
            qid,
            queue_depth,
            digests,
            hpda: Pda::ZERO,
            in_capsule_limit: 0,
            keep_alive: None,
            command_timeout: Some(DEFAULT_IO_TIMEOUT),
        }
    }

    /// The same configuration with Keep Alive sent every `interval`.
    #[must_use]
    pub fn with_keep_alive(mut self, interval: Option<Duration>) -> Self {
        self.keep_alive = interval;
        self
    }

    /// The same configuration with commands reported as timed out after `timeout`.
    #[must_use]
    pub fn with_command_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// The same configuration asking the controller for C2HData alignment `hpda`.
    #[must_use]
    pub fn with_hpda(mut self, hpda: Pda) -> Self {
        self.hpda = hpda;
        self
    }
}

/// What ICResp negotiated.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct Negotiated {
    /// Digests in use.
    pub digests: Digests,
    /// The controller's required alignment for data the host sends.
    pub cpda: Pda,
    /// Most data per H2CData PDU.
    pub maxh2cdata: u32,
}

/// Data of a command: the core's [`Data`](ulp_ddp_core::Data), shared with iSCSI. A write
/// goes in the capsule or is solicited by R2T.
pub use ulp_ddp_core::Data;

/// A finished command. Its buffer is the caller's again.
#[derive(Debug)]
#[non_exhaustive]
pub struct Completion {
    /// The command identifier it ran under.
    pub cid: u16,
    /// NVMe status (synthesized for SUCCESS completions, data digest errors and aborts).
    pub status: Status,
    /// Command-specific result (CQE DW0, DW1).
    pub result: u64,
    /// The command's buffer, handed back: a read's with the data placed, a write's as given.
    pub buffer: Option<SgBuffer>,
    /// Whether the backend mapped the read buffer (else the CPU placed its data).
    pub offloaded: bool,
    /// The controller completed it with C2HData SUCCESS (no CapsuleResp).
    pub by_success_flag: bool,
}

/// What a connection reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// ICResp accepted: commands flow.
    Connected(Negotiated),
    /// A command finished.
    Completed(Completion),
    /// A command's capsule went out `waited` ago and nothing finished it. It stays
    /// outstanding (its buffer still belongs to the connection): the caller aborts it (Abort on
    /// the admin queue) or gives up on the connection ([`Connection::close`](super::Connection::close)),
    /// which completes it with [`Status::ABORTED`]. Reported once per command.
    TimedOut {
        /// The command's CID.
        cid: u16,
        /// The command, by name.
        command: &'static str,
        /// How long it has been outstanding.
        waited: Duration,
    },
    /// The connection is over: close the socket once `poll_transmit` returns `None` (it may
    /// still have an H2CTermReq to send). Outstanding commands complete with
    /// [`Status::ABORTED`] first.
    Closed(ConnectionError),
}

/// A protocol violation by the controller.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Violation {
    /// A PDU of this type arrived when it may not (before ICResp, a second ICResp...).
    UnexpectedPdu(u8),
    /// ICResp enabled other digests than requested.
    DigestsRefused {
        /// Requested.
        requested: Digests,
        /// Enabled by the controller.
        enabled: Digests,
    },
    /// A PDU names a CID with no outstanding command: a stale CID (an earlier generation of a
    /// command slot), one already finished, or one never issued.
    UnknownCid {
        /// The PDU type's name.
        pdu: &'static str,
        /// The CID it names.
        cid: u16,
    },
    /// A PDU answers a command whose capsule has not been sent yet.
    NotSent {
        /// The PDU type's name.
        pdu: &'static str,
        /// The command's CID.
        cid: u16,
    },
    /// C2HData for a command that reads nothing (a write, or a command without data).
    DataForNonRead(u16),
    /// R2T for a command that has no data to solicit.
    NotAWrite(u16),
    /// A second R2T while one is in progress (MAXR2T is 0).
    R2tLimit(u16),
    /// R2T with R2TL 0.
    EmptyR2t(u16),
    /// R2TO is not where the previous R2T ended.
    R2tOffset {
        /// The command.
        cid: u16,
        /// Expected offset.
        expected: u32,
        /// R2TO on the wire.
        got: u32,
    },
    /// R2TO + R2TL passes the end of the command's data.
    R2tOutOfRange(u16),
    /// C2HData beyond the command's buffer.
    DataOutOfRange(u16),
    /// C2HData overlapping data already received.
    DuplicateData(u16),
    /// C2HData after the command's LAST_PDU.
    DataAfterLast(u16),
    /// C2HData for a command whose earlier data arrived in too many separate pieces.
    TooFragmented(u16),
}

impl Violation {
    /// The FES and FEI of the H2CTermReq this violation calls for.
    pub fn fatal_error(&self) -> (FatalErrorStatus, u32) {
        use FatalErrorStatus::*;
        match self {
            Self::UnexpectedPdu(_) | Self::DataAfterLast(_) => (PduSequenceError, 0),
            Self::DigestsRefused { .. } => (UnsupportedParameter, 11),
            Self::UnknownCid { .. } | Self::NotAWrite(_) | Self::DataForNonRead(_) => {
                (InvalidHeaderField, 8)
            }
            Self::NotSent { .. } => (PduSequenceError, 0),
            Self::R2tLimit(_) => (DataTransferLimitExceeded, 0),
            Self::EmptyR2t(_) => (InvalidHeaderField, 16),
            Self::R2tOffset { .. } | Self::DuplicateData(_) | Self::TooFragmented(_) => {
                (InvalidHeaderField, 12)
            }
            Self::R2tOutOfRange(_) | Self::DataOutOfRange(_) => (DataTransferOutOfRange, 0),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnexpectedPdu(t) => match PduType::try_from(t) {
                Ok(t) => write!(f, "{} arrived when the host expects none", t.name()),
                Err(_) => write!(f, "PDU type {t:#04x} arrived when the host expects none"),
            },
            Self::DigestsRefused { requested, enabled } => write!(
                f,
                "ICResp enabled {enabled} where the host asked for {requested}"
            ),
            Self::UnknownCid { pdu, cid } => write!(
                f,
                "{pdu} names CID {cid}, which is not outstanding (stale, finished or never issued)"
            ),
            Self::NotSent { pdu, cid } => write!(
                f,
                "{pdu} for CID {cid}, whose command capsule the host has not sent yet"
            ),
            Self::DataForNonRead(cid) => {
                write!(f, "C2HData for CID {cid}, a command that reads no data")
            }
            Self::NotAWrite(cid) => write!(f, "R2T for CID {cid}, which has no data to send"),
            Self::R2tLimit(cid) => write!(
                f,
                "a second R2T for CID {cid} while one is in progress (the host allows one, MAXR2T 0)"
            ),
            Self::EmptyR2t(cid) => write!(f, "R2T for CID {cid} with R2TL 0"),
            Self::R2tOffset { cid, expected, got } => write!(
                f,
                "R2T for CID {cid} at R2TO {got}, where the previous one ended at {expected}"
            ),
            Self::R2tOutOfRange(cid) => {
                write!(
                    f,
                    "R2T for CID {cid} asks for data beyond the end of the write"
                )
            }
            Self::DataOutOfRange(cid) => {
                write!(f, "C2HData for CID {cid} lies beyond the end of its buffer")
            }
            Self::DuplicateData(cid) => {
                write!(f, "C2HData for CID {cid} repeats data already received")
            }
            Self::DataAfterLast(cid) => {
                write!(f, "C2HData for CID {cid} after its LAST_PDU")
            }
            Self::TooFragmented(cid) => write!(
                f,
                "C2HData for CID {cid} arrived in too many separate pieces"
            ),
        }
    }
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The receive engine could not frame or trust the stream (header digest, lengths...).
    Engine(ulp_ddp_core::Error<WireError>),
    /// A PDU header did not decode: the codec's error names the PDU and field.
    Wire(WireError),
    /// The controller broke the protocol.
    Protocol(Violation),
    /// The controller sent C2HTermReq.
    PeerTerminated {
        /// Fatal error status.
        fes: u16,
        /// Fatal error information.
        fei: u32,
    },
    /// The controller closed the TCP connection.
    PeerClosed,
    /// The controller closed the TCP connection after the host's ICReq, without answering it
    /// with an ICResp: what a port that requires TLS (`treq=required`) does to a plaintext
    /// host, and what a controller refusing the connection does.
    PeerClosedBeforeIcResp,
    /// The host closed the connection ([`Connection::close`](super::Connection::close)).
    LocallyClosed,
    /// A Keep Alive went unanswered for the keep-alive timeout (KATO).
    KeepAliveTimedOut {
        /// How long the host waited.
        waited: Duration,
    },
    /// The controller answered Keep Alive with an error.
    KeepAliveFailed(Status),
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Engine(e) => write!(f, "receive engine: {e}"),
            Self::Wire(e) => write!(f, "bad PDU from the controller: {e}"),
            Self::Protocol(v) => write!(f, "protocol violation by the controller: {v}"),
            Self::PeerTerminated { fes, fei } => {
                f.write_str("the controller ended the connection with C2HTermReq: ")?;
                match FatalErrorStatus::try_from(*fes) {
                    Ok(status) => write!(f, "{status}")?,
                    Err(_) => write!(f, "unknown fatal error status {fes:#06x}")?,
                }
                write!(f, " (FEI {fei:#x})")
            }
            Self::PeerClosed => f.write_str("the controller closed the connection"),
            Self::PeerClosedBeforeIcResp => f.write_str(
                "the controller closed the connection right after the ICReq, without an ICResp: \
                 the port may require TLS (the NVMe/TCP secure channel, TP 8011), which this \
                 connection does not use, or the controller refused the connection",
            ),
            Self::LocallyClosed => f.write_str("the connection was closed by the host"),
            Self::KeepAliveTimedOut { waited } => write!(
                f,
                "the controller did not answer Keep Alive in {:.1} s (the keep-alive timeout)",
                waited.as_secs_f64()
            ),
            Self::KeepAliveFailed(status) => write!(
                f,
                "the controller failed Keep Alive: {}",
                status.describe("Keep Alive")
            ),
        }
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Engine(e) => Some(e),
            Self::Wire(e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`Connection::submit`](super::Connection::submit) refused a command (its data comes
/// back with the error).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum SubmitError {
    /// Every CID is in use.
    QueueFull,
    /// The connection is over.
    Closed,
    /// The data is longer than an SGL can describe (4 GiB).
    TooLarge,
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::QueueFull => "no free command identifier",
            Self::Closed => "the connection is closed",
            Self::TooLarge => "data too large for one command",
        })
    }
}

impl std::error::Error for SubmitError {}
