//! Asynchronous Messages (RFC 7143 §11.9.1), decoded into what the target announced.

use core::fmt;
use std::time::Duration;

use crate::scsi::Sense;
use crate::wire::Lun;
use crate::wire::async_msg::{AsyncMsgRepr, event};

/// What a target announced with an Asynchronous Message (RFC 7143 §11.9.1), reported as
/// [`Event::Async`](super::Event::Async). Events 1 to 4 also end the connection (see each).
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum AsyncEvent {
    /// AsyncEvent 0: a SCSI asynchronous event; the sense data says what happened.
    Scsi {
        /// The logical unit it concerns.
        lun: Lun,
        /// The sense data, decoded (`None` when absent or in an unknown format).
        sense: Option<Sense>,
        /// The raw sense bytes.
        sense_data: Vec<u8>,
    },
    /// AsyncEvent 1: the target asks the initiator to log out within `within` (Parameter3).
    /// The connection logs out at once and ends with
    /// [`ConnectionError::TargetRequestedLogout`](super::ConnectionError::TargetRequestedLogout).
    LogoutRequest {
        /// The time the target gives for the Logout Request (Parameter3).
        within: Duration,
    },
    /// AsyncEvent 2: the target will drop the connection `cid` (Parameter1). The connection
    /// ends with
    /// [`ConnectionError::TargetDroppedConnection`](super::ConnectionError::TargetDroppedConnection).
    ConnectionDrop {
        /// The CID of the connection to be dropped (Parameter1).
        cid: u16,
        /// Time2Wait: how long to wait before reconnecting (Parameter2).
        time2wait: Duration,
        /// Time2Retain: how long the target keeps the tasks for reassignment (Parameter3).
        time2retain: Duration,
    },
    /// AsyncEvent 3: the target will drop every connection of the session. The connection
    /// ends with
    /// [`ConnectionError::TargetDroppedSession`](super::ConnectionError::TargetDroppedSession).
    SessionDrop {
        /// Time2Wait (Parameter2).
        time2wait: Duration,
        /// Time2Retain (Parameter3).
        time2retain: Duration,
    },
    /// AsyncEvent 4: the target asks for operational parameters to be renegotiated within
    /// `within` (Parameter3). The initiator answers by logging out; the connection ends with
    /// [`ConnectionError::TargetRequestedRenegotiation`](super::ConnectionError::TargetRequestedRenegotiation),
    /// and the driver's fresh login renegotiates every key.
    RenegotiationRequest {
        /// The time the target gives to start the negotiation (Parameter3).
        within: Duration,
    },
    /// AsyncEvent 255: vendor-specific; AsyncVCode says what.
    Vendor {
        /// AsyncVCode.
        vcode: u8,
        /// Parameter1 to Parameter3.
        params: [u16; 3],
    },
    /// An AsyncEvent code RFC 7143 reserves (5 to 254): reported, otherwise ignored.
    Reserved {
        /// The code.
        code: u8,
    },
}

impl AsyncEvent {
    /// Decodes an Asynchronous Message.
    pub fn from_message(m: &AsyncMsgRepr<'_>) -> Self {
        let secs = |p: u16| Duration::from_secs(u64::from(p));
        let [p1, p2, p3] = m.params;
        match m.event {
            event::SCSI => {
                // SenseLength (2 bytes), sense data, then iSCSI event data.
                let sense_data = m
                    .data
                    .get(..2)
                    .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
                    .and_then(|len| m.data.get(2..2 + len))
                    .unwrap_or_default()
                    .to_vec();
                Self::Scsi {
                    lun: m.lun,
                    sense: Sense::parse(&sense_data),
                    sense_data,
                }
            }
            event::LOGOUT_REQUEST => Self::LogoutRequest { within: secs(p3) },
            event::CONNECTION_DROP => Self::ConnectionDrop {
                cid: p1,
                time2wait: secs(p2),
                time2retain: secs(p3),
            },
            event::SESSION_DROP => Self::SessionDrop {
                time2wait: secs(p2),
                time2retain: secs(p3),
            },
            event::RENEGOTIATE => Self::RenegotiationRequest { within: secs(p3) },
            event::VENDOR => Self::Vendor {
                vcode: m.vcode,
                params: m.params,
            },
            code => Self::Reserved { code },
        }
    }

    /// The AsyncEvent code.
    pub fn code(&self) -> u8 {
        match self {
            Self::Scsi { .. } => event::SCSI,
            Self::LogoutRequest { .. } => event::LOGOUT_REQUEST,
            Self::ConnectionDrop { .. } => event::CONNECTION_DROP,
            Self::SessionDrop { .. } => event::SESSION_DROP,
            Self::RenegotiationRequest { .. } => event::RENEGOTIATE,
            Self::Vendor { .. } => event::VENDOR,
            Self::Reserved { code } => *code,
        }
    }
}

/// Seconds as the RFC's parameters give them.
pub(super) struct Secs(pub Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} s", self.0.as_secs())
    }
}

/// Time2Wait and Time2Retain in words.
pub(super) struct Retry {
    pub time2wait: Duration,
    pub time2retain: Duration,
}

impl fmt::Display for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.time2wait.is_zero() {
            f.write_str("reconnect at once (Time2Wait 0 s)")?;
        } else {
            write!(f, "reconnect after Time2Wait {}", Secs(self.time2wait))?;
        }
        if self.time2retain.is_zero() {
            f.write_str(", the target keeps no tasks (Time2Retain 0 s)")
        } else {
            write!(
                f,
                ", the target keeps the tasks for Time2Retain {}",
                Secs(self.time2retain)
            )
        }
    }
}

impl fmt::Display for AsyncEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scsi {
                lun,
                sense: Some(s),
                ..
            } => write!(
                f,
                "SCSI asynchronous event for LUN {}: {s}",
                lun_number(*lun)
            ),
            Self::Scsi {
                lun, sense_data, ..
            } => write!(
                f,
                "SCSI asynchronous event for LUN {} ({} bytes of sense data in no known format)",
                lun_number(*lun),
                sense_data.len()
            ),
            Self::LogoutRequest { within } => write!(
                f,
                "the target asks the initiator to log out within {}",
                Secs(*within)
            ),
            Self::ConnectionDrop {
                cid,
                time2wait,
                time2retain,
            } => write!(
                f,
                "the target will drop connection {cid}: {}",
                Retry {
                    time2wait: *time2wait,
                    time2retain: *time2retain
                }
            ),
            Self::SessionDrop {
                time2wait,
                time2retain,
            } => write!(
                f,
                "the target will drop every connection of the session: {}",
                Retry {
                    time2wait: *time2wait,
                    time2retain: *time2retain
                }
            ),
            Self::RenegotiationRequest { within } => write!(
                f,
                "the target asks for the operational parameters to be renegotiated within {}",
                Secs(*within)
            ),
            Self::Vendor { vcode, params } => write!(
                f,
                "vendor-specific asynchronous event (AsyncVCode {vcode:#04x}, parameters {}, {}, {})",
                params[0], params[1], params[2]
            ),
            Self::Reserved { code } => {
                write!(f, "asynchronous event with reserved code {code}, ignored")
            }
        }
    }
}

/// The LUN's number for messages: the single-level number when it is one, else its bytes.
pub(super) fn lun_number(lun: Lun) -> String {
    match lun.0 {
        [0, n, 0, 0, 0, 0, 0, 0] => n.to_string(),
        b => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}
