//! What goes into and comes out of a [`Connection`](super::Connection): its configuration,
//! commands, completions, events and errors.

use core::fmt;
use std::time::Duration;

use ulp_ddp_core::{DataError, QueueId, SgBuffer};

use crate::keys::{NegotiationError, Wanted};
use crate::scsi::{Cdb, Sense};
use crate::wire::logout::LogoutResponse;
use crate::wire::reject::RejectReason;
use crate::wire::task_mgmt::TmfFunction;
use crate::wire::{self, Lun, Opcode};

use super::async_event::AsyncEvent;
use super::tmf::{Recovery, TmfFailure, lun_words};

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
    /// `noop_out_interval`, 5 s); `None` (or zero): never. A timer of the state machine.
    pub noop_interval: Option<Duration>,
    /// How long a ping may wait for its NOP-In before the connection fails (open-iscsi's
    /// `noop_out_timeout`, 5 s).
    pub noop_timeout: Duration,
    /// Mutual CHAP: the name (CHAP_N) and secret the target must answer the initiator's
    /// challenge with. Needs [`chap`](Self::chap) and [`chap_challenge`](Self::chap_challenge);
    /// its secret must differ from the initiator's (RFC 7143 §9.2.1).
    pub mutual_chap: Option<ChapCredentials>,
    /// The random bytes of the initiator's challenge to the target (mutual CHAP): CHAP_I is
    /// the first byte, CHAP_C the rest (at least 16). The state machine has no source of
    /// randomness; [`with_random_chap_challenge`](Self::with_random_chap_challenge) fills it
    /// from the operating system, and the blocking driver calls it for every connection.
    pub chap_challenge: Vec<u8>,
    /// How long a SCSI command may stay outstanding before the connection aborts it (ABORT
    /// TASK); `None`: never. Measured from when its SCSI Command PDU was handed out by
    /// `poll_transmit` (commands waiting for the CmdSN window or a free tag do not count,
    /// as in open-iscsi, where the SCSI layer's timer starts when the command enters the
    /// window). Default 30 s, the Linux SCSI layer's command timeout.
    pub task_timeout: Option<Duration>,
    /// How long an ABORT TASK may wait for its Task Management Function Response before a
    /// LOGICAL UNIT RESET follows (open-iscsi's `abort_timeout`, 15 s).
    pub abort_timeout: Duration,
    /// How long a LOGICAL UNIT RESET may wait for its response before the connection fails
    /// (open-iscsi's `lu_reset_timeout`, 30 s).
    pub lu_reset_timeout: Duration,
    /// How long the login may take to reach full feature phase before the connection fails
    /// (open-iscsi's `login_timeout`, 15 s).
    pub login_timeout: Duration,
    /// How long a Logout Request may wait for its response (open-iscsi's `logout_timeout`,
    /// 15 s). Without one, the connection ends: cleanly (with a warning event) when every
    /// SCSI command had completed, else as a failure.
    pub logout_timeout: Duration,
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
            mutual_chap: None,
            chap_challenge: Vec::new(),
            task_timeout: Some(Duration::from_secs(30)),
            abort_timeout: Duration::from_secs(15),
            lu_reset_timeout: Duration::from_secs(30),
            login_timeout: Duration::from_secs(15),
            logout_timeout: Duration::from_secs(15),
        }
    }

    /// The configuration with fresh random challenge bytes ([`chap_challenge`](Self::chap_challenge),
    /// 17: CHAP_I and a 16-byte CHAP_C) when mutual CHAP is configured; unchanged otherwise.
    ///
    /// # Errors
    ///
    /// The operating system's random source failing.
    pub fn with_random_chap_challenge(mut self) -> Result<Self, getrandom::Error> {
        if self.mutual_chap.is_some() {
            let mut bytes = vec![0u8; 17];
            getrandom::fill(&mut bytes)?;
            self.chap_challenge = bytes;
        }
        Ok(self)
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
#[non_exhaustive]
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
    /// The initiator aborted the command with a task management function (its deadline
    /// passed): the target no longer runs it, and it may be issued again.
    Aborted {
        /// The command's ITT.
        itt: u32,
        /// Its logical unit.
        lun: Lun,
        /// The function that ended it: ABORT TASK, or LOGICAL UNIT RESET of its LUN.
        function: TmfFunction,
        /// How long it was outstanding (from when its PDU went out until the function
        /// completed).
        outstanding: Duration,
    },
    /// A Data-In of the read arrived with a data digest that did not match: its data is not
    /// to be trusted, so the command fails once its status arrives (RFC 7143 §7.8: the
    /// initiator discards the PDU and terminates the command with an error; the SNACK that
    /// could ask for it again needs ErrorRecoveryLevel 1). Only this command fails.
    DataDigest {
        /// The command's ITT.
        itt: u32,
        /// The Data-In's DataSN.
        data_sn: u32,
        /// The Data-In's Buffer Offset.
        offset: u32,
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
            Self::Aborted {
                itt,
                lun,
                function,
                outstanding,
            } => match function {
                TmfFunction::AbortTask => write!(
                    f,
                    "aborted (ABORT TASK) after {:.1} s outstanding: ITT {itt:#x} on {} had no answer within its deadline",
                    outstanding.as_secs_f64(),
                    lun_words(*lun)
                ),
                other => write!(
                    f,
                    "aborted ({other} of {}) after {:.1} s outstanding: ITT {itt:#x}",
                    lun_words(*lun),
                    outstanding.as_secs_f64()
                ),
            },
            Self::DataDigest {
                itt,
                data_sn,
                offset,
            } => write!(
                f,
                "data digest mismatch in the SCSI Data-In for ITT {itt:#x} with DataSN {data_sn} \
                 at Buffer Offset {offset}: the data is not trusted and the command failed \
                 (no SNACK at ErrorRecoveryLevel 0, RFC 7143 §7.8)"
            ),
            Self::SessionLost(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for CommandError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::ConnectionLost(cause) => Some(&**cause),
            _ => None,
        }
    }
}

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
#[non_exhaustive]
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
        /// The status-carrying PDU (SCSI Response, or Data-In with status).
        opcode: Opcode,
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
        /// The PDU carrying it.
        opcode: Opcode,
        /// The command's ITT.
        itt: u32,
    },
    /// An R2T beyond MaxOutstandingR2T: the command already had `max` R2Ts whose data was not
    /// all handed out yet.
    TooManyR2ts {
        /// The command's ITT.
        itt: u32,
        /// The R2T's R2TSN.
        r2t_sn: u32,
        /// MaxOutstandingR2T negotiated.
        max: u32,
    },
    /// A successful Login Response whose Version-active lies outside the Version-min ..
    /// Version-max range the initiator offered.
    VersionActive {
        /// Version-active received.
        active: u8,
        /// Version-min offered.
        min: u8,
        /// Version-max offered.
        max: u8,
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
                "Login Response with current stage (CSG) {received}, the request's is {expected}"
            ),
            Self::LoginDoesNotConverge { rounds } => write!(
                f,
                "the Login Responses do not reach full feature phase (NSG 3 with the T bit) \
                 after {rounds} rounds"
            ),
            Self::TextTooLong { max } => write!(
                f,
                "Login or Text Response data segments continued with the C bit exceed {max} \
                 bytes in all"
            ),
            Self::MalformedLoginText(e) => {
                write!(f, "Login Response data segment is not key=value text: {e}")
            }
            Self::LoginInFullFeatureStage => {
                f.write_str("Login Response with full feature phase as its current stage (CSG 3)")
            }
            Self::SkippedOperationalStage => f.write_str(
                "Login Response moving from the security stage (CSG 0) straight to full \
                 feature phase (NSG 3)",
            ),
            Self::NonLoginPdu(op) => write!(f, "{} during login", op.name()),
            Self::LoginResponseAfterLogin => f.write_str("Login Response after login"),
            Self::UnknownItt { opcode, itt } => write!(
                f,
                "{} for ITT {itt:#x}, which names no such task",
                opcode.name()
            ),
            Self::UnderflowBeyondTransfer {
                opcode,
                itt,
                residual,
                expected,
            } => write!(
                f,
                "{} for ITT {itt:#x} with an underflow Residual Count of {residual}, beyond \
                 its Expected Data Transfer Length of {expected} bytes",
                opcode.name()
            ),
            Self::MalformedSendTargets => f.write_str(
                "Text Response to SendTargets: the data segment is not TargetName/TargetAddress \
                 text",
            ),
            Self::LogoutRefused(r) => write!(
                f,
                "Logout Response with Response {} ({r}): the target refused the logout",
                r.code()
            ),
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
                "SCSI Data-In for ITT {itt:#x} asks for an acknowledgement (A bit) at ErrorRecoveryLevel 0"
            ),
            Self::DataInNotRead { itt } => {
                write!(f, "SCSI Data-In for ITT {itt:#x}, which is not a read")
            }
            Self::DataInAfterStatus { itt } => {
                write!(f, "SCSI Data-In for ITT {itt:#x} after its status")
            }
            Self::DataSn {
                itt,
                expected,
                received,
            } => write!(
                f,
                "SCSI Data-In for ITT {itt:#x} with DataSN {received}, expected {expected}"
            ),
            Self::DataOffset {
                itt,
                expected,
                received,
            } => write!(
                f,
                "SCSI Data-In for ITT {itt:#x} at Buffer Offset {received}, expected {expected} (DataPDUInOrder=Yes)"
            ),
            Self::Data(e) => write!(f, "SCSI Data-In refused: {e}"),
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
                "R2T for ITT {itt:#x} with Desired Data Transfer Length {len} at Buffer Offset \
                 {offset}, for a {write_len}-byte write (MaxBurstLength {max_burst})"
            ),
            Self::SecondStatus { opcode, itt } => write!(
                f,
                "{} for ITT {itt:#x} carries a second status for the command",
                opcode.name()
            ),
            Self::TooManyR2ts { itt, r2t_sn, max } => write!(
                f,
                "R2T for ITT {itt:#x} with R2TSN {r2t_sn} beyond MaxOutstandingR2T={max}: the \
                 command's earlier R2Ts are still outstanding"
            ),
            Self::VersionActive { active, min, max } => write!(
                f,
                "Login Response with Version-active {active:#04x}, outside the offered range \
                 Version-min {min:#04x} to Version-max {max:#04x}"
            ),
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
    /// A data digest did not match in a PDU other than Data-In (a response, or an unsolicited
    /// PDU): at ErrorRecoveryLevel 0 the session cannot ask for it again (status SNACK needs
    /// level 1), so it ends (RFC 7143 §7.8 option c).
    DataDigest {
        /// The PDU.
        opcode: Opcode,
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
    /// The target closed the socket (TCP end of stream).
    PeerClosed,
    /// The initiator closed the connection ([`Connection::close`](super::Connection::close)).
    LocallyClosed,
    /// The session logged out.
    LoggedOut,
    /// The connection is not in a state that allows this call.
    NotReady,
    /// The login did not reach full feature phase within the login timeout.
    LoginTimeout {
        /// The stage of the Login Request waiting for its response (0 security, 1
        /// operational).
        stage: u8,
        /// Login Responses received before.
        rounds: u32,
        /// The login timeout.
        waited: Duration,
    },
    /// The Logout Response did not come within the logout timeout while SCSI commands were
    /// still outstanding.
    LogoutTimeout {
        /// The logout timeout.
        waited: Duration,
        /// SCSI commands outstanding (sent or waiting to be sent).
        outstanding: usize,
    },
    /// Task management could not recover a command: its ABORT TASK failed, then the
    /// LOGICAL UNIT RESET of its LUN failed too (the session must be reinstated).
    LunResetFailed {
        /// The LUN reset.
        lun: Lun,
        /// How the LOGICAL UNIT RESET failed.
        reset: TmfFailure,
        /// ITT of the command whose ABORT TASK failed.
        abort_itt: u32,
        /// How the ABORT TASK failed.
        abort: TmfFailure,
    },
    /// The target rejected a PDU the connection cannot tie to a task it can end alone (a
    /// Logout, a Task Management request, a PDU of a task already finished, a PDU the
    /// initiator never sends).
    RejectedPdu {
        /// The Reject's reason.
        reason: RejectReason,
        /// The rejected PDU's opcode (raw: the target's copy of the header).
        opcode: u8,
        /// The rejected PDU's ITT.
        itt: u32,
    },
    /// The target asked the initiator to log out: by Asynchronous Message (event 1, with the
    /// time it gives, `within`), or by rejecting a PDU as "waiting for logout" (`within` is
    /// `None`). The initiator logged out (or could not); the session is to be reinstated.
    TargetRequestedLogout {
        /// Parameter3 of the Asynchronous Message.
        within: Option<Duration>,
    },
    /// The target announced it drops this connection (Asynchronous Message event 2).
    TargetDroppedConnection {
        /// Time2Wait (Parameter2): wait this long before reconnecting.
        time2wait: Duration,
        /// Time2Retain (Parameter3): how long the target keeps the tasks.
        time2retain: Duration,
    },
    /// The target announced it drops every connection of the session (Asynchronous Message
    /// event 3).
    TargetDroppedSession {
        /// Time2Wait (Parameter2).
        time2wait: Duration,
        /// Time2Retain (Parameter3).
        time2retain: Duration,
    },
    /// The target asked for the operational parameters to be renegotiated (Asynchronous
    /// Message event 4). The initiator answers by logging out rather than by a Text
    /// negotiation in full feature phase (RFC 7143 §11.9.1 allows a Logout Request as the
    /// answer): a fresh login (the driver's reinstatement) renegotiates every key, and needs
    /// no second negotiation engine.
    TargetRequestedRenegotiation {
        /// Parameter3: the time the target gave to start the negotiation.
        within: Duration,
    },
    /// The socket failed, or the target stopped reading or answering (the blocking driver's
    /// words for what it saw).
    Socket(String),
}

/// The words of RFC 7143 §11.13.5 for a Login Response's Status-Class and Status-Detail
/// ("Target not found" for 02h/03h).
pub fn login_status_name(class: u8, detail: u8) -> &'static str {
    match (class, detail) {
        (0, _) => "Success",
        (1, 0x01) => "Target moved temporarily",
        (1, 0x02) => "Target moved permanently",
        (1, _) => "Redirection",
        (2, 0x00) => "Initiator error",
        (2, 0x01) => "Authentication failure",
        (2, 0x02) => "Authorization failure",
        (2, 0x03) => "Target not found",
        (2, 0x04) => "Target removed",
        (2, 0x05) => "Unsupported version",
        (2, 0x06) => "Too many connections",
        (2, 0x07) => "Missing parameter",
        (2, 0x08) => "Cannot include in session",
        (2, 0x09) => "Session type not supported",
        (2, 0x0A) => "Session does not exist",
        (2, 0x0B) => "Invalid request during login",
        (2, _) => "Initiator error",
        (3, 0x00) => "Target error",
        (3, 0x01) => "Service unavailable",
        (3, 0x02) => "Out of resources",
        (3, _) => "Target error",
        _ => "Unknown status class",
    }
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Engine(e) => write!(f, "receive engine: {e}"),
            Self::Wire(e) => write!(f, "bad PDU from the target: {e}"),
            Self::Protocol(v) => write!(f, "protocol violation by the target: {v}"),
            Self::DataDigest { opcode, itt } => write!(
                f,
                "data digest mismatch in a {} (ITT {itt:#x}); a PDU the target sends once \
                 cannot be asked for again at ErrorRecoveryLevel 0, so the session ends \
                 (RFC 7143 §7.8)",
                opcode.name()
            ),
            Self::LoginFailed { class, detail } => write!(
                f,
                "login failed: {} ({class:02X}{detail:02X}h)",
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
            Self::LoginTimeout {
                stage,
                rounds,
                waited,
            } => write!(
                f,
                "the login did not reach full feature phase within {:.1} s: no Login Response to the {} request (stage {stage}) after {rounds} responses",
                waited.as_secs_f64(),
                match stage {
                    0 => "security negotiation",
                    _ => "operational negotiation",
                }
            ),
            Self::LogoutTimeout {
                waited,
                outstanding,
            } => write!(
                f,
                "no Logout Response within {:.1} s with {outstanding} SCSI command(s) still outstanding",
                waited.as_secs_f64()
            ),
            Self::LunResetFailed {
                lun,
                reset,
                abort_itt,
                abort,
            } => write!(
                f,
                "LOGICAL UNIT RESET of {} {reset} after ABORT TASK of ITT {abort_itt:#x} {abort}",
                lun_words(*lun)
            ),
            Self::RejectedPdu {
                reason,
                opcode,
                itt,
            } => {
                let name = Opcode::try_from(*opcode).map_or("PDU of unknown opcode", Opcode::name);
                write!(
                    f,
                    "the target rejected a {name} (opcode {opcode:#04x}, ITT {itt:#x}) with \
                     reason {} ({:#04x}), which ends no single task",
                    reason,
                    reason.code()
                )
            }
            Self::TargetRequestedLogout { within: Some(w) } => write!(
                f,
                "the target asked for a logout within {} (Asynchronous Message event 1); the \
                 initiator logged out",
                super::async_event::Secs(*w)
            ),
            Self::TargetRequestedLogout { within: None } => f.write_str(
                "the target rejected a PDU as waiting for logout (Reject reason 0x0c); the \
                 initiator logged out",
            ),
            Self::TargetDroppedConnection {
                time2wait,
                time2retain,
            } => write!(
                f,
                "the target dropped the connection (Asynchronous Message event 2): {}",
                super::async_event::Retry {
                    time2wait: *time2wait,
                    time2retain: *time2retain
                }
            ),
            Self::TargetDroppedSession {
                time2wait,
                time2retain,
            } => write!(
                f,
                "the target dropped the session (Asynchronous Message event 3): {}",
                super::async_event::Retry {
                    time2wait: *time2wait,
                    time2retain: *time2retain
                }
            ),
            Self::TargetRequestedRenegotiation { within } => write!(
                f,
                "the target asked to renegotiate the operational parameters within {} \
                 (Asynchronous Message event 4); the initiator logged out so that a new login \
                 renegotiates them",
                super::async_event::Secs(*within)
            ),
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
    /// The target sent an Asynchronous Message: what it announced.
    Async(AsyncEvent),
    /// The connection is over; every command has completed first.
    /// [`ConnectionError::LoggedOut`] is the clean end.
    Closed(ConnectionError),
    /// A step of error recovery (a command's deadline passed, a task management function
    /// was sent or answered, a logout went unanswered), in words.
    Recovery(Recovery),
    /// A ping ([`Connection::ping`](super::Connection::ping)) or a text request
    /// ([`Connection::send_targets`](super::Connection::send_targets)) failed alone (the
    /// target rejected it); the connection goes on.
    Failed {
        /// The ping or text request.
        id: CommandId,
        /// Why.
        error: CommandError,
    },
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn command_error_names_the_lost_connection_as_its_source() {
        let lost = CommandError::ConnectionLost(Box::new(ConnectionError::Socket(
            "connection reset by peer".into(),
        )));
        let source = lost.source().expect("a lost connection is the source");
        assert_eq!(source.to_string(), "socket: connection reset by peer");
        assert!(CommandError::Invalid("too much data").source().is_none());
    }
}
