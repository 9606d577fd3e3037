//! What goes into and comes out of a [`Controller`](super::Controller): its options, the
//! transfers, their completions and errors, and what recovery did.

use std::fmt;
use std::time::Duration;

use ulp_ddp_core::SgBuffer;

use crate::nvme::{self, Status};

/// The most data one command carries when the controller reports no limit (MDTS 0): 1 MiB,
/// below the 1280 KiB the Linux block layer sends per request by default (`max_sectors_kb`).
/// Linux's nvmet-tcp fails larger commands with Data SGL Length Invalid.
pub const TRANSPORT_MAX_TRANSFER: u64 = 1 << 20;

/// A transfer for the I/O queue.
#[derive(Debug)]
#[non_exhaustive]
pub enum Io {
    /// Read `buffer.len()` bytes at block `slba` into `buffer`.
    Read {
        /// First block.
        slba: u64,
        /// Destination; handed back in the completion.
        buffer: SgBuffer,
    },
    /// Write `data` at block `slba`.
    Write {
        /// First block.
        slba: u64,
        /// Source; handed back in the completion.
        data: SgBuffer,
    },
    /// Flush the namespace.
    Flush,
}

/// Names a command given to [`Controller::submit`](super::Controller::submit); it stays the same when the command is
/// issued again after a reconnect or split into several NVMe commands.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u64);

/// Why a command failed.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum IoError {
    /// The controller completed it (or one of its parts) with an error status.
    Status {
        /// The CID of the failing NVMe command.
        cid: u16,
        /// Its status.
        status: Status,
    },
    /// The controller was lost, or the command failed as often as it may be retried.
    Lost(String),
}

/// A finished [`Io`].
#[derive(Debug)]
#[non_exhaustive]
pub struct IoCompletion {
    /// The command.
    pub id: CommandId,
    /// Its name ("Read", "Write", "Flush").
    pub command: &'static str,
    /// Its first block.
    pub slba: u64,
    /// Its bytes.
    pub len: u64,
    /// Its buffer, the caller's again (a read's with the data in it).
    pub buffer: Option<SgBuffer>,
    /// Success, or why it failed.
    pub result: Result<(), IoError>,
}

impl IoCompletion {
    /// Whether it succeeded.
    pub fn is_success(&self) -> bool {
        self.result.is_ok()
    }

    /// Why it failed, in words naming the command (`None` on success).
    pub fn error_message(&self) -> Option<String> {
        let e = self.result.as_ref().err()?;
        let what = format!(
            "{} of {} bytes at LBA {}",
            self.command, self.len, self.slba
        );
        Some(match e {
            IoError::Status { cid, status } => format!(
                "{what} failed: {}, CID {cid}",
                status.describe(self.command)
            ),
            IoError::Lost(reason) => format!("{what} failed: {reason}"),
        })
    }
}

/// What the controller's recovery did, for the caller to log ([`Controller::take_events`](super::Controller::take_events)).
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum ControllerEvent {
    /// A command passed `io_timeout`.
    TimedOut {
        /// Its name.
        command: &'static str,
        /// Its CID.
        cid: u16,
        /// How long it had been outstanding.
        waited: Duration,
    },
    /// The controller aborted a timed-out command at the host's request.
    Aborted {
        /// Its CID.
        cid: u16,
    },
    /// The association was torn down; reconnecting.
    Reset {
        /// Why, in words.
        reason: String,
    },
    /// Reconnected after a reset.
    Reconnected {
        /// Attempts it took.
        attempts: u32,
        /// Time from the loss to the reconnect.
        after: Duration,
        /// Commands issued again.
        reissued: usize,
    },
    /// Gave up: the controller was not back within `ctrl_loss_tmo`.
    Lost {
        /// Why, in words.
        reason: String,
    },
    /// The controller reported an asynchronous event (an Asynchronous Event Request
    /// completed); the host read the log page it names, which re-arms it, and asked again.
    AsyncEvent(nvme::AsyncEvent),
}

impl fmt::Display for ControllerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut {
                command,
                cid,
                waited,
            } => write!(
                f,
                "{command} (CID {cid}) timed out after {:.1} s; aborting it",
                waited.as_secs_f64()
            ),
            Self::Aborted { cid } => write!(f, "the controller aborted CID {cid}"),
            Self::Reset { reason } => write!(f, "resetting the controller: {reason}"),
            Self::Reconnected {
                attempts,
                after,
                reissued,
            } => write!(
                f,
                "reconnected after {:.1} s ({attempts} attempt{}); {reissued} command{} issued again",
                after.as_secs_f64(),
                if *attempts == 1 { "" } else { "s" },
                if *reissued == 1 { "" } else { "s" },
            ),
            Self::Lost { reason } => write!(f, "controller lost: {reason}"),
            Self::AsyncEvent(e) => write!(f, "asynchronous event: {e}"),
        }
    }
}
