//! [`SessionEvent`]: what the session's recovery did, in words.

use core::fmt;
use std::time::Duration;

use super::secs;

/// What the session's recovery did, for the caller to log
/// ([`Session::take_events`](super::Session::take_events)); its `Display` says it in words.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The connection ended without the caller asking; the session is being reinstated.
    ConnectionLost {
        /// Why, in words (the connection's error).
        cause: String,
        /// Commands that will be issued again once it is reinstated.
        to_reissue: usize,
        /// Commands that failed with the cause (not retry-safe, or out of retries).
        failed: usize,
    },
    /// A reinstatement attempt starts: a new TCP connection and a login with the same ISID,
    /// TSIH 0.
    Reinstating {
        /// Which attempt (1 for the first).
        attempt: u32,
        /// Time since the loss.
        after: Duration,
    },
    /// A reinstatement attempt failed; another follows after the reconnect delay.
    AttemptFailed {
        /// Which attempt.
        attempt: u32,
        /// Why, in words.
        error: String,
    },
    /// The session was reinstated and the outstanding retry-safe commands issued again.
    Reinstated {
        /// Time from the loss to the login.
        after: Duration,
        /// Attempts it took.
        attempts: u32,
        /// Commands issued again.
        reissued: usize,
        /// The new session's TSIH.
        tsih: u16,
    },
    /// Gave up: every outstanding and queued command failed with `reason`, its buffer handed
    /// back; new commands are refused.
    Lost {
        /// Why, in words.
        reason: String,
        /// Commands failed.
        failed: usize,
    },
    /// A warning: at logout the target closed the connection instead of answering the Logout
    /// Request, after every command had completed; the session is closed all the same.
    LogoutUnanswered {
        /// What happened instead of the Logout Response.
        cause: String,
    },
    /// A step of the connection's own recovery (task deadline, ABORT TASK, LOGICAL UNIT
    /// RESET), in the connection's words.
    Recovery(String),
    /// An Asynchronous Message that does not end the connection (a SCSI asynchronous event,
    /// a vendor-specific or reserved event), in words. Those that end it (logout or
    /// renegotiation request, connection or session drop) are the cause of
    /// [`ConnectionLost`](Self::ConnectionLost).
    TargetEvent(String),
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl fmt::Display for SessionEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConnectionLost {
                cause,
                to_reissue,
                failed,
            } => {
                write!(
                    f,
                    "connection lost: {cause}; reinstating the session ({} to issue again",
                    plural(*to_reissue, "command", "commands")
                )?;
                if *failed > 0 {
                    write!(
                        f,
                        ", {} failed: not retry-safe or out of retries",
                        plural(*failed, "command", "commands")
                    )?;
                }
                f.write_str(")")
            }
            Self::Reinstating { attempt, after } => write!(
                f,
                "reinstatement attempt {attempt}, {} after the loss: new TCP connection, login \
                 with the same ISID and TSIH 0",
                secs(*after)
            ),
            Self::AttemptFailed { attempt, error } => {
                write!(f, "reinstatement attempt {attempt} failed: {error}")
            }
            Self::Reinstated {
                after,
                attempts,
                reissued,
                tsih,
            } => write!(
                f,
                "session reinstated {} after the loss ({}, new TSIH {tsih}); {} issued again",
                secs(*after),
                plural(*attempts as usize, "attempt", "attempts"),
                plural(*reissued, "command", "commands"),
            ),
            Self::Lost { reason, failed } => write!(
                f,
                "session lost: {reason}; {} failed, every buffer handed back",
                plural(*failed, "command", "commands")
            ),
            Self::LogoutUnanswered { cause } => write!(
                f,
                "warning: the target did not answer the Logout Request ({cause}); every command \
                 had completed, the session is closed"
            ),
            Self::Recovery(step) => f.write_str(step),
            Self::TargetEvent(what) => write!(f, "the target reported: {what}"),
        }
    }
}
