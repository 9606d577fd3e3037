//! What goes into and comes out of a [`Connection`](super::Connection): its configuration,
//! commands, completions, events and errors.

use core::fmt;
use std::time::Duration;

use ulp_ddp_core::{DataError, QueueId, SgBuffer};

use crate::keys::{NegotiationError, Wanted};
use crate::scsi::{Cdb, Sense};
use crate::wire::logout::LogoutResponse;
use crate::wire::reject::RejectReason;
use crate::wire::{self, Lun, Opcode};

/// CHAP credentials.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ChapCredentials {
    /// CHAP_N.
    pub user: String,
    /// The shared secret.
    pub secret: Vec<u8>,
}

/// How a connection is set up: who logs in to what, what it negotiates, its queue, and its
/// timers.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct ConnectionConfig {
    /// InitiatorName.
    pub initiator_name: String,
    /// TargetName for a normal session; `None` for a discovery session.
    pub target_name: Option<String>,
    /// ISID (random format by default).
    pub isid: [u8; 6],
    /// Operational keys wanted.
    pub wanted: Wanted,
    /// CHAP credentials, if the target requires authentication.
    pub chap: Option<ChapCredentials>,
    /// The queue's identifier within the DDP backend (unique per backend).
    pub queue_id: QueueId,
    /// Most tasks outstanding (tags are taken below it; at least 2).
    pub queue_depth: u32,
    /// Send a NOP-Out ping when nothing arrived from the target for this long (open-iscsi's
    /// `noop_out_interval`, 5 s); `None`: never. A timer of the state machine.
    pub noop_interval: Option<Duration>,
    /// How long a ping may wait for its NOP-In before the connection fails (open-iscsi's
    /// `noop_out_timeout`, 5 s).
    pub noop_timeout: Duration,
    /// How long a SCSI command may stay outstanding before recovery starts for it (the SCSI
    /// layer's default command timeout, 30 s); `None`: no limit. Enforced by the connection's
    /// recovery ladder (ABORT TASK, LOGICAL UNIT RESET, then the connection's end).
    pub task_timeout: Option<Duration>,
}

impl ConnectionConfig {
    /// A normal session to `target_name`.
    pub fn normal(initiator_name: &str, target_name: &str) -> Self {
        Self {
            initiator_name: initiator_name.into(),
            target_name: Some(target_name.into()),
            isid: [0x80, 0x12, 0x34, 0x56, 0x00, 0x01],
            wanted: Wanted::default(),
            chap: None,
            queue_id: QueueId(1),
            queue_depth: 64,
            noop_interval: Some(Duration::from_secs(5)),
            noop_timeout: Duration::from_secs(5),
            task_timeout: Some(Duration::from_secs(30)),
        }
    }

    /// A discovery session.
    pub fn discovery(initiator_name: &str) -> Self {
        Self {
            target_name: None,
            ..Self::normal(initiator_name, "")
        }
    }
}

/// Identifies a submitted command (SCSI command, ping, text request or logout).
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq, PartialOrd, Ord)]
pub struct CommandId(pub u64);

/// A SCSI command's data transfer: the core's [`Data`](ulp_ddp_core::Data), shared with
/// NVMe/TCP. A read buffer's length is the Expected Data Transfer Length.
pub use ulp_ddp_core::Data;

/// A SCSI command to submit.
#[derive(Debug)]
pub struct Command {
    /// The logical unit.
    pub lun: Lun,
    /// The CDB.
    pub cdb: Cdb,
    /// The data transfer.
    pub data: Data,
}

/// Residual count of a completed command.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum Residual {
    /// None reported.
    #[default]
    None,
    /// The target transferred this many bytes fewer than expected.
    Underflow(u32),
    /// The target had this many bytes more than expected.
    Overflow(u32),
}

/// How a SCSI command ended at the target.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ScsiOutcome {
    /// SCSI status (0 GOOD, 2 CHECK CONDITION ...).
    pub status: u8,
    /// Sense data, when the status carried some.
    pub sense: Option<Sense>,
    /// Raw sense bytes.
    pub sense_data: Vec<u8>,
    /// Residual count.
    pub residual: Residual,
    /// Data-In bytes placed into the buffer.
    pub data_in: u64,
}

impl ScsiOutcome {
    /// Whether the status is GOOD.
    pub fn is_good(&self) -> bool {
        self.status == 0
    }

    /// Whether the status is CHECK CONDITION with UNIT ATTENTION sense.
    pub fn is_unit_attention(&self) -> bool {
        self.status == 2
            && self
                .sense
                .is_some_and(|s| s.key == crate::scsi::UNIT_ATTENTION)
    }
}

/// Why a command did not complete at the target.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum CommandError {
    /// The target rejected the command's PDU.
    Rejected(RejectReason),
    /// The target answered with a non-zero iSCSI Response (target failure).
    TargetFailure(u8),
    /// The connection failed (or logged out) before the command completed: why it ended.
    ConnectionLost(Box<ConnectionError>),
    /// The command cannot be sent (too much data, unusable tag).
    Invalid(&'static str),
    /// A read completed with GOOD status but its Data-In did not deliver the transfer length
    /// less the underflow residual (the iSCSI analogue of NVMe's Data Transfer Error): the
    /// buffer does not hold the data the status vouches for.
    ShortData {
        /// Bytes the status vouches for (Expected Data Transfer Length less the residual).
        expected: u64,
        /// Bytes received.
        received: u64,
    },
    /// The session was lost: not reinstated within the replacement timeout, a login that
    /// cannot succeed, or a LUN that changed across the reinstatement (said in words).
    SessionLost(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(r) => {
                write!(f, "rejected by the target: {r} (reason {:#04x})", r.code())
            }
            Self::TargetFailure(r) => write!(f, "target failure (iSCSI response {r:#04x})"),
            Self::ConnectionLost(cause) => write!(f, "connection lost: {cause}"),
            Self::Invalid(why) => write!(f, "invalid command: {why}"),
            Self::ShortData { expected, received } => write!(
                f,
                "GOOD status with {received} of {expected} data bytes received"
            ),
            Self::SessionLost(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for CommandError {}

/// A completed command. Its buffer is the caller's again.
#[derive(Debug)]
#[non_exhaustive]
pub struct Completion {
    /// The command.
    pub id: CommandId,
    /// Its outcome.
    pub result: Result<ScsiOutcome, CommandError>,
    /// The command's buffer, handed back: a read's with the data placed, a write's as given.
    pub buffer: Option<SgBuffer>,
}

/// A target found by SendTargets.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct DiscoveredTarget {
    /// TargetName.
    pub name: String,
    /// TargetAddress values (`host:port,tpgt`).
    pub addresses: Vec<String>,
}

/// A protocol violation by the target: what RFC 7143 says a target must not do, named.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Violation {
    /// A status-carrying PDU's StatSN lies before the one expected.
    StatSnBackwards {
        /// The PDU.
        opcode: Opcode,
        /// ExpStatSN.
        expected: u32,
        /// StatSN received.
        received: u32,
    },
    /// A Login Response although no login is in progress.
    UnexpectedLoginResponse,
    /// A Login Response for another ITT than the Login Request's.
    LoginResponseItt {
        /// The Login Request's ITT.
        expected: u32,
        /// The Login Response's.
        received: u32,
    },
    /// A Login Response in another stage (CSG) than the request's.
    LoginStage {
        /// The request's stage.
        expected: u8,
        /// The response's.
        received: u8,
    },
    /// More login rounds than the initiator allows without reaching full feature phase.
    LoginDoesNotConverge {
        /// Rounds so far.
        rounds: u32,
    },
    /// Text (login or Text Response) accumulated across continued PDUs beyond the limit.
    TextTooLong {
        /// The limit in bytes.
        max: usize,
    },
    /// Login text that is not `key=value` pairs.
    MalformedLoginText(wire::text::TextError),
    /// A Login Response whose current stage is full feature phase.
    LoginInFullFeatureStage,
    /// The target moved from the security stage straight to full feature phase.
    SkippedOperationalStage,
    /// A PDU other than Login Response or Reject during login.
    NonLoginPdu(Opcode),
    /// A Login Response after login completed.
    LoginResponseAfterLogin,
    /// A PDU names an ITT with no task of its kind outstanding.
    UnknownItt {
        /// The PDU.
        opcode: Opcode,
        /// Its ITT.
        itt: u32,
    },
    /// An underflow residual larger than the command's transfer.
    UnderflowBeyondTransfer {
        /// The command's ITT.
        itt: u32,
        /// The residual.
        residual: u32,
        /// The Expected Data Transfer Length.
        expected: u32,
    },
    /// A SendTargets answer that is not TargetName/TargetAddress text.
    MalformedSendTargets,
    /// The target refused the logout.
    LogoutRefused(LogoutResponse),
    /// An opcode an initiator does not accept at this point (a response to nothing sent).
    UnacceptedPdu(Opcode),
    /// Data-In with the A bit (DataACK), which needs ErrorRecoveryLevel 1.
    DataInAck {
        /// The command's ITT.
        itt: u32,
    },
    /// Data-In for a task that is not a read.
    DataInNotRead {
        /// The task's ITT.
        itt: u32,
    },
    /// Data-In after the command's status.
    DataInAfterStatus {
        /// The command's ITT.
        itt: u32,
    },
    /// Data-In DataSN out of order.
    DataSn {
        /// The command's ITT.
        itt: u32,
        /// Expected.
        expected: u32,
        /// Received.
        received: u32,
    },
    /// A Data-In's Buffer Offset is not where the previous one ended although
    /// DataPDUInOrder=Yes was negotiated.
    DataOffset {
        /// The command's ITT.
        itt: u32,
        /// Expected (bytes received so far for the command).
        expected: u64,
        /// Received Buffer Offset.
        received: u32,
    },
    /// The receive engine refused a Data-In's data (unknown tag, outside the command's buffer,
    /// duplicate, too fragmented).
    Data(DataError),
    /// R2T for a command without write data.
    R2tNotWrite {
        /// The command's ITT.
        itt: u32,
    },
    /// R2T after the command's status.
    R2tAfterStatus {
        /// The command's ITT.
        itt: u32,
    },
    /// R2TSN out of order.
    R2tSn {
        /// The command's ITT.
        itt: u32,
        /// Expected.
        expected: u32,
        /// Received.
        received: u32,
    },
    /// R2T asking for nothing, for more than MaxBurstLength, or beyond the write.
    R2tOutsideWrite {
        /// The command's ITT.
        itt: u32,
        /// Buffer Offset.
        offset: u32,
        /// Desired Data Transfer Length.
        len: u32,
        /// The write's length.
        write_len: u64,
        /// MaxBurstLength negotiated.
        max_burst: u32,
    },
    /// A second status for one command.
    SecondStatus {
        /// The command's ITT.
        itt: u32,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StatSnBackwards {
                opcode,
                expected,
                received,
            } => write!(
                f,
                "{} with StatSN {received}, before the expected {expected}",
                opcode.name()
            ),
            Self::UnexpectedLoginResponse => {
                f.write_str("Login Response although no login is in progress")
            }
            Self::LoginResponseItt { expected, received } => write!(
                f,
                "Login Response for ITT {received:#x}, the request's is {expected:#x}"
            ),
            Self::LoginStage { expected, received } => write!(
                f,
                "Login Response in stage {received}, the request's is {expected}"
            ),
            Self::LoginDoesNotConverge { rounds } => write!(
                f,
                "the login does not reach full feature phase after {rounds} rounds"
            ),
            Self::TextTooLong { max } => {
                write!(f, "text spread over continued PDUs exceeds {max} bytes")
            }
            Self::MalformedLoginText(e) => write!(f, "malformed login text: {e}"),
            Self::LoginInFullFeatureStage => {
                f.write_str("Login Response with full feature phase as its current stage")
            }
            Self::SkippedOperationalStage => f.write_str(
                "the target went from the security stage straight to full feature phase",
            ),
            Self::NonLoginPdu(op) => write!(f, "{} during login", op.name()),
            Self::LoginResponseAfterLogin => f.write_str("Login Response after login"),
            Self::UnknownItt { opcode, itt } => write!(
                f,
                "{} for ITT {itt:#x}, which names no such task",
                opcode.name()
            ),
            Self::UnderflowBeyondTransfer {
                itt,
                residual,
                expected,
            } => write!(
                f,
                "underflow residual {residual} for ITT {itt:#x} exceeds its transfer of {expected} bytes"
            ),
            Self::MalformedSendTargets => {
                f.write_str("SendTargets answer is not TargetName/TargetAddress text")
            }
            Self::LogoutRefused(r) => write!(f, "the target refused the logout: {r}"),
            Self::UnacceptedPdu(op) => {
                write!(
                    f,
                    "{} (opcode {:#04x}) answers nothing the initiator sent",
                    op.name(),
                    *op as u8
                )
            }
            Self::DataInAck { itt } => write!(
                f,
                "Data-In for ITT {itt:#x} asks for an acknowledgement (A bit) at ErrorRecoveryLevel 0"
            ),
            Self::DataInNotRead { itt } => {
                write!(f, "Data-In for ITT {itt:#x}, which is not a read")
            }
            Self::DataInAfterStatus { itt } => {
                write!(f, "Data-In for ITT {itt:#x} after its status")
            }
            Self::DataSn {
                itt,
                expected,
                received,
            } => write!(
                f,
                "Data-In for ITT {itt:#x} with DataSN {received}, expected {expected}"
            ),
            Self::DataOffset {
                itt,
                expected,
                received,
            } => write!(
                f,
                "Data-In for ITT {itt:#x} at Buffer Offset {received}, expected {expected} (DataPDUInOrder=Yes)"
            ),
            Self::Data(e) => write!(f, "Data-In refused: {e}"),
            Self::R2tNotWrite { itt } => {
                write!(f, "R2T for ITT {itt:#x}, which has no write data")
            }
            Self::R2tAfterStatus { itt } => write!(f, "R2T for ITT {itt:#x} after its status"),
            Self::R2tSn {
                itt,
                expected,
                received,
            } => write!(
                f,
                "R2T for ITT {itt:#x} with R2TSN {received}, expected {expected}"
            ),
            Self::R2tOutsideWrite {
                itt,
                offset,
                len,
                write_len,
                max_burst,
            } => write!(
                f,
                "R2T for ITT {itt:#x} asks for {len} bytes at offset {offset} of a {write_len}-byte write (MaxBurstLength {max_burst})"
            ),
            Self::SecondStatus { itt } => write!(f, "a second status for ITT {itt:#x}"),
        }
    }
}

/// Why a connection ended (ErrorRecoveryLevel 0: the protocol's answer to a fault is to drop
/// the connection), or why a call was refused.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The receive engine could not frame or trust the stream (header digest, lengths).
    Engine(ulp_ddp_core::Error<wire::Error>),
    /// A PDU did not decode: the codec's error names the field.
    Wire(wire::Error),
    /// The target broke a protocol rule.
    Protocol(Violation),
    /// A data digest did not match (ITT of the PDU).
    DataDigest {
        /// The PDU's ITT.
        itt: u32,
    },
    /// The login failed with this status class and detail.
    LoginFailed {
        /// Status-Class.
        class: u8,
        /// Status-Detail.
        detail: u8,
    },
    /// Negotiation failed.
    Negotiation(NegotiationError),
    /// CHAP failed.
    Chap(&'static str),
    /// The target rejected a PDU not tied to a command.
    Rejected(RejectReason),
    /// A ping (NOP-Out) got no NOP-In within the ping timeout.
    PingTimeout {
        /// How long the initiator waited.
        waited: Duration,
    },
    /// A PDU could not be encoded (a local limit, not the target's fault).
    Encode {
        /// The PDU.
        opcode: Opcode,
        /// Why.
        error: wire::Error,
    },
    /// The target dropped the connection (Asynchronous Message) or closed the socket.
    PeerClosed,
    /// The initiator closed the connection ([`Connection::close`](super::Connection::close)).
    LocallyClosed,
    /// The session logged out.
    LoggedOut,
    /// The connection is not in a state that allows this call.
    NotReady,
    /// The socket failed, or the target stopped reading or answering (the blocking driver's
    /// words for what it saw).
    Socket(String),
}

/// The words of RFC 7143 §11.13.5 for a Login Response's Status-Class and Status-Detail.
pub fn login_status_name(class: u8, detail: u8) -> &'static str {
    match (class, detail) {
        (0, _) => "success",
        (1, 0x01) => "target moved temporarily",
        (1, 0x02) => "target moved permanently",
        (1, _) => "redirection",
        (2, 0x00) => "initiator error",
        (2, 0x01) => "authentication failure",
        (2, 0x02) => "authorization failure",
        (2, 0x03) => "target not found",
        (2, 0x04) => "target removed",
        (2, 0x05) => "unsupported version",
        (2, 0x06) => "too many connections",
        (2, 0x07) => "missing parameter",
        (2, 0x08) => "cannot include in session",
        (2, 0x09) => "session type not supported",
        (2, 0x0A) => "session does not exist",
        (2, 0x0B) => "invalid request during login",
        (2, _) => "initiator error",
        (3, 0x00) => "target error",
        (3, 0x01) => "service unavailable",
        (3, 0x02) => "out of resources",
        (3, _) => "target error",
        _ => "unknown status class",
    }
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Engine(e) => write!(f, "receive engine: {e}"),
            Self::Wire(e) => write!(f, "bad PDU from the target: {e}"),
            Self::Protocol(v) => write!(f, "protocol violation by the target: {v}"),
            Self::DataDigest { itt } => write!(f, "data digest mismatch (ITT {itt:#x})"),
            Self::LoginFailed { class, detail } => write!(
                f,
                "login failed: {} (status {class:#04x}/{detail:#04x})",
                login_status_name(*class, *detail)
            ),
            Self::Negotiation(e) => write!(f, "negotiation: {e}"),
            Self::Chap(what) => write!(f, "CHAP: {what}"),
            Self::Rejected(r) => {
                write!(f, "the target sent Reject: {r} (reason {:#04x})", r.code())
            }
            Self::PingTimeout { waited } => write!(
                f,
                "the target did not answer a NOP-Out ping within {:.1} s",
                waited.as_secs_f64()
            ),
            Self::Encode { opcode, error } => {
                write!(f, "{} could not be encoded: {error}", opcode.name())
            }
            Self::PeerClosed => f.write_str("the target closed the connection"),
            Self::LocallyClosed => f.write_str("the connection was closed by the initiator"),
            Self::LoggedOut => f.write_str("the session logged out"),
            Self::NotReady => f.write_str("the connection is not in a state that allows this"),
            Self::Socket(what) => write!(f, "socket: {what}"),
        }
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Engine(e) => Some(e),
            Self::Wire(e) | Self::Encode { error: e, .. } => Some(e),
            Self::Negotiation(e) => Some(e),
            _ => None,
        }
    }
}

/// What the connection reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// Login reached full feature phase.
    Connected,
    /// A SCSI command completed.
    Completed(Completion),
    /// A ping (NOP-Out) was answered.
    Pong {
        /// The ping.
        id: CommandId,
        /// Echoed data.
        data: Vec<u8>,
    },
    /// SendTargets answered.
    Discovered {
        /// The text request.
        id: CommandId,
        /// The targets.
        targets: Vec<DiscoveredTarget>,
    },
    /// The target sent an Asynchronous Message with this event code.
    Async {
        /// AsyncEvent.
        event: u8,
    },
    /// The connection is over; every command has completed first.
    /// [`ConnectionError::LoggedOut`] is the clean end.
    Closed(ConnectionError),
}

/// The connection's phase.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Phase {
    /// Created; [`Connection::start_login`](super::Connection::start_login) not called yet.
    Idle,
    /// Logging in.
    Login,
    /// Full feature phase.
    FullFeature,
    /// Logout sent.
    LoggingOut,
    /// Logged out.
    Closed,
    /// Failed.
    Failed,
}
