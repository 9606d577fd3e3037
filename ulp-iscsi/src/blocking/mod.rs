//! The blocking driver over `std::net::TcpStream`: [`Session`] logs in and runs one sans-IO
//! [`crate::Connection`] with the workspace's one blocking loop
//! ([`ulp_ddp_core::blocking::Driver`]), and reinstates the session when the connection ends
//! without being asked to, as open-iscsi does.
//!
//! Receiving uses the reader path: Data-In payload is read from the socket straight into the
//! command's registered buffer. Sending writes each PDU's header, payload and trailer with one
//! vectored write: write payload is never copied. Waiting sleeps until the connection's next
//! timer (NOP-Out pings) or until the target has been silent for the configured timeout.
//!
//! Recovery ([`Session`] documents it): when the connection ends for any reason other than the
//! caller's own logout (the target closed or reset it, a ping went unanswered, a protocol
//! violation, the connection's own recovery ladder failed, the target asked to log out or
//! dropped it), every command completes with its buffer, the session is reinstated (a new TCP
//! connection, a login with the same ISID and TSIH 0, RFC 7143 §6.3.5) every
//! [`Options::reconnect_delay`] until [`Options::replacement_timeout`], and the retry-safe
//! commands ([`scsi::is_retry_safe`]) are issued again. [`Session::take_events`] says what
//! happened, in words ([`SessionEvent`]).
//!
//! The default backend is [`NoOffload`](ulp_ddp_core::NoOffload): every payload is still read in place by the reader
//! path (0 bytes copied); a DDP backend is chosen with [`Session::connect_with`].

use core::fmt;
use std::io;
use std::time::Duration;

use ulp_ddp_core::SgBuffer;
pub use ulp_ddp_core::blocking::Timeout;

use crate::bringup::BringupError;
use crate::connection::{
    CommandError, Completion, Connection, ConnectionError, Phase, ScsiOutcome,
};
use crate::scsi::{self, Sense};

mod capture;
mod events;
mod recovery;
pub(crate) mod session;

pub use capture::{Capturing, Direction};
pub use events::SessionEvent;
pub use session::Session;

/// Driver settings (start from `Options::default()` and set fields).
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Options {
    /// How long the target may stay silent while the initiator waits for it; also the limit
    /// for the first TCP connection to open, and the most a wait for the Login Response, a
    /// ping's answer, the SendTargets answer or the Logout Response takes in all (a target
    /// that keeps sending other PDUs does not extend it).
    pub timeout: Duration,
    /// Keep a copy of every byte sent and received on the current connection (for pcap files;
    /// costs a copy).
    pub capture: bool,
    /// How many times a command answered with UNIT ATTENTION is retried.
    pub unit_attention_retries: u32,
    /// Reinstate the session when the connection ends without being asked to (default). When
    /// `false` the end reaches the caller as it is: every command completes with
    /// [`CommandError::ConnectionLost`] and its cause, later calls fail.
    pub reinstate: bool,
    /// How long after losing the connection the session may take to be reinstated before
    /// every outstanding and queued command fails (open-iscsi's
    /// `node.session.timeo.replacement_timeout`, 120 s).
    pub replacement_timeout: Duration,
    /// Time between the starts of two reinstatement attempts (open-iscsi's
    /// `ISCSI_CONN_ERR_REOPEN_DELAY`, 3 s, its wait after a failed reconnect).
    pub reconnect_delay: Duration,
    /// The most one reinstatement attempt (TCP connect and login) may take (open-iscsi's
    /// `node.conn[0].timeo.login_timeout`, 15 s in its iscsid.conf).
    pub login_timeout: Duration,
    /// The most times a command is issued again after the connection ended before its status
    /// (the SCSI midlayer's retries, 5).
    pub max_retries: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(20),
            capture: false,
            unit_attention_retries: 4,
            reinstate: true,
            replacement_timeout: Duration::from_secs(120),
            reconnect_delay: Duration::from_secs(3),
            login_timeout: Duration::from_secs(15),
            max_retries: 5,
        }
    }
}

/// Why a blocking operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The socket failed.
    Io(io::Error),
    /// The target sent nothing for a while: what the initiator waited for, and how long.
    Timeout(Timeout),
    /// The connection ended (or the call was refused in its state).
    Connection(ConnectionError),
    /// The command did not complete at the target (or its data did not all arrive).
    Command {
        /// Why.
        error: CommandError,
        /// The command's buffer, the caller's again.
        buffer: Option<SgBuffer>,
    },
    /// The command completed with a status other than GOOD.
    Status {
        /// SCSI status.
        status: u8,
        /// Sense, if any.
        sense: Option<Sense>,
        /// The command's buffer, the caller's again.
        buffer: Option<SgBuffer>,
    },
    /// The returned data could not be decoded.
    BadData(&'static str),
    /// The session did not take the request (it was lost, or nothing was outstanding to wait
    /// for); a command's buffer is handed back.
    Refused {
        /// Why, in words.
        reason: String,
        /// The command's buffer, the caller's again.
        buffer: Option<SgBuffer>,
    },
    /// READ CAPACITY data the initiator does not use (a block length of 0, say): the field and
    /// its value.
    Capacity(scsi::CapacityError),
    /// A post-login check of the bring-up failed ([`crate::bringup`]: a LUN's TEST UNIT READY
    /// or READ CAPACITY, or a LUN that changed across a reinstatement).
    Bringup(BringupError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) if ulp_ddp_core::blocking::is_timeout(e) => {
                f.write_str("socket: the target did not answer before the socket's timeout")
            }
            Self::Io(e) => write!(f, "socket: {e}"),
            Self::Timeout(t) => write!(f, "{t}"),
            Self::Connection(e) => write!(f, "connection: {e}"),
            Self::Command { error, .. } => write!(f, "command: {error}"),
            Self::Status { status, sense, .. } => {
                write!(
                    f,
                    "SCSI status {} ({status:#04x})",
                    scsi::status_name(*status)
                )?;
                if let Some(sense) = sense {
                    write!(f, ", sense {sense}")?;
                }
                Ok(())
            }
            Self::BadData(what) => write!(f, "bad data: {what}"),
            Self::Refused { reason, .. } => write!(f, "refused: {reason}"),
            Self::Capacity(e) => write!(f, "bad data: {e}"),
            Self::Bringup(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Timeout(t) => Some(t),
            Self::Connection(e) => Some(e),
            Self::Command { error, .. } => Some(error),
            Self::Capacity(e) => Some(e),
            Self::Bringup(e) => Some(e),
            _ => None,
        }
    }
}

impl Error {
    /// The buffer this error hands back (a command error, non-GOOD status or refusal).
    pub fn into_buffer(self) -> Option<SgBuffer> {
        match self {
            Self::Command { buffer, .. }
            | Self::Status { buffer, .. }
            | Self::Refused { buffer, .. } => buffer,
            _ => None,
        }
    }

    /// The [`io::ErrorKind`] this error is: [`TimedOut`](io::ErrorKind::TimedOut) for a target
    /// that did not answer in time (also a socket timeout, never `WouldBlock`),
    /// [`ConnectionReset`](io::ErrorKind::ConnectionReset) for a target that closed the
    /// connection, [`ConnectionAborted`](io::ErrorKind::ConnectionAborted) for another end of
    /// the connection, [`NotConnected`](io::ErrorKind::NotConnected) for a lost session,
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for a refused request,
    /// [`InvalidData`](io::ErrorKind::InvalidData) for undecodable data,
    /// [`Other`](io::ErrorKind::Other) for a failed command or status (a command aborted
    /// after its deadline is `TimedOut`).
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Self::Io(e) if ulp_ddp_core::blocking::is_timeout(e) => io::ErrorKind::TimedOut,
            Self::Io(e) => e.kind(),
            Self::Timeout(_) => io::ErrorKind::TimedOut,
            Self::Connection(ConnectionError::PeerClosed) => io::ErrorKind::ConnectionReset,
            Self::Connection(
                ConnectionError::PingTimeout { .. }
                | ConnectionError::LoginTimeout { .. }
                | ConnectionError::LogoutTimeout { .. },
            ) => io::ErrorKind::TimedOut,
            Self::Connection(_) => io::ErrorKind::ConnectionAborted,
            Self::Command {
                error: CommandError::SessionLost(_),
                ..
            } => io::ErrorKind::NotConnected,
            Self::Command {
                error: CommandError::Aborted { .. },
                ..
            } => io::ErrorKind::TimedOut,
            Self::Command { .. } | Self::Status { .. } | Self::Bringup(_) => io::ErrorKind::Other,
            Self::BadData(_) | Self::Capacity(_) => io::ErrorKind::InvalidData,
            Self::Refused { .. } => io::ErrorKind::InvalidInput,
        }
    }
}

/// For callers that speak `io::Result`: the kind from [`Error::kind`], the message in words.
impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) if !ulp_ddp_core::blocking::is_timeout(&e) => e,
            other => Self::new(other.kind(), other.to_string()),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// The login's own errors stay [`Error::Connection`] and [`Error::Timeout`]; the post-login
/// checks' are [`Error::Bringup`].
impl From<BringupError> for Error {
    fn from(e: BringupError) -> Self {
        match e {
            BringupError::Connection(e) => Self::Connection(e),
            BringupError::Timeout(t) => Self::Timeout(t),
            other => Self::Bringup(other),
        }
    }
}

impl From<ConnectionError> for Error {
    fn from(e: ConnectionError) -> Self {
        Self::Connection(e)
    }
}

/// The target did not answer within `waited`.
pub(crate) fn timed_out(waited: Duration, what: String) -> Error {
    Error::Timeout(Timeout {
        peer: "target",
        waited,
        what,
    })
}

/// Seconds with one decimal, for messages.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// What one try of a command came to (both drivers' `run`).
pub(crate) enum Try {
    /// GOOD (the outcome and the buffer), or the error with the buffer.
    Done(Result<(ScsiOutcome, Option<SgBuffer>), Error>),
    /// A unit attention to try again after: the buffer.
    Again(Option<SgBuffer>),
}

/// Judges a completion: GOOD is done, a unit attention is tried again when `retry` allows,
/// anything else is an error in words with the buffer.
pub(crate) fn judge(c: Completion, retry: bool) -> Try {
    let outcome = match c.result {
        Ok(o) => o,
        Err(error) => {
            return Try::Done(Err(Error::Command {
                error,
                buffer: c.buffer,
            }));
        }
    };
    if outcome.is_unit_attention() && retry {
        return Try::Again(c.buffer);
    }
    if !outcome.is_good() {
        return Try::Done(Err(Error::Status {
            status: outcome.status,
            sense: outcome.sense,
            buffer: c.buffer,
        }));
    }
    Try::Done(Ok((outcome, c.buffer)))
}

/// A read's buffer, every byte of it received: fewer (GOOD status with an underflow residual)
/// is [`CommandError::ShortData`], never stale buffer bytes passed off as data.
pub(crate) fn read_back(outcome: &ScsiOutcome, b: Option<SgBuffer>) -> Result<SgBuffer, Error> {
    let b = b.ok_or(Error::BadData("no buffer"))?;
    if outcome.data_in != b.len() {
        return Err(Error::Command {
            error: CommandError::ShortData {
                expected: b.len(),
                received: outcome.data_in,
            },
            buffer: Some(b),
        });
    }
    Ok(b)
}

/// How many blocks of `block_len` bytes `len` bytes are.
pub(crate) fn whole_blocks(block_len: u32, len: u64) -> Result<u64, Error> {
    let block_len = u64::from(block_len.max(1));
    if !len.is_multiple_of(block_len) {
        return Err(Error::BadData("the buffer is not a whole number of blocks"));
    }
    Ok(len / block_len)
}

/// Why `conn` ended, once it has.
pub(crate) fn ended<B: ulp_ddp_core::DdpBackend>(conn: &Connection<B>) -> Option<ConnectionError> {
    use ulp_ddp_core::SansIo;
    if !conn.is_closed() {
        return None;
    }
    Some(match conn.phase() {
        Phase::Closed => ConnectionError::LoggedOut,
        _ => conn
            .failure()
            .cloned()
            .unwrap_or(ConnectionError::PeerClosed),
    })
}
