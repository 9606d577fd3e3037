//! Bring-up: what every driver does between "TCP connected" and "ready for I/O", as sans-IO
//! steps.
//!
//! A [`Bringup`] starts the login on a new [`Connection`], waits for full feature phase, then
//! runs the post-login checks it was asked for, one command at a time: TEST UNIT READY per LUN
//! until it answers without a unit attention (the new I_T nexus's unit attention is taken here,
//! not by a caller's command), and READ CAPACITY(16) per LUN, compared with what the LUN had
//! before (a session reinstatement: a changed LUN fails rather than have commands reach the
//! wrong blocks) or only learned (block length discovery). It submits its own commands on the
//! connection, takes their completions out of the connection's events, and ends in a typed
//! [`Ready`] or a [`BringupError`] in words. Time comes in through
//! [`handle_timeout`](Bringup::handle_timeout); [`poll_timeout`](Bringup::poll_timeout) says
//! when it is next needed.
//!
//! The blocking driver's connect and its session reinstatement run it, and so does the tokio
//! driver (feature `tokio`); a driver on another runtime runs it the same way:
//!
//! 1. [`start`](Bringup::start) once the TCP connection is open (queues the Login Request);
//! 2. hand every event of [`Connection::poll_event`] to [`handle_event`](Bringup::handle_event)
//!    (what it does not take comes back), and tell it the time;
//! 3. send and receive as for any [`SansIo`](ulp_ddp_core::SansIo) connection, sleeping no
//!    later than [`poll_timeout`](Bringup::poll_timeout);
//! 4. until [`poll`](Bringup::poll) gives the result; on an error, [`abandon`](Bringup::abandon)
//!    the connection so that a check command's completion never reaches the caller.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use ulp_iscsi::bringup::Bringup;
//! use ulp_iscsi::wire::Lun;
//! use ulp_iscsi::{Connection, ConnectionConfig, NoOffload, SansIo};
//!
//! let config = ConnectionConfig::normal("iqn.2024-01.io.example:host", "iqn.2024-01.io.example:disk");
//! let mut conn = Connection::new(config, NoOffload);
//! let now = Instant::now();
//! let mut bringup = Bringup::new(now, Duration::from_secs(15)).capacity(Lun::single_level(0), None);
//! bringup.start(&mut conn)?;
//! assert!(conn.poll_transmit().is_some(), "the Login Request");
//! assert!(bringup.poll().is_none(), "waiting for the Login Response");
//! assert_eq!(bringup.waiting_for(), "the Login Response");
//! bringup.handle_timeout(now + Duration::from_secs(16));
//! let e = bringup.poll().unwrap().unwrap_err();
//! assert!(e.to_string().ends_with("while waiting for the Login Response"), "{e}");
//! # Ok::<(), ulp_iscsi::bringup::BringupError>(())
//! ```

use core::fmt;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ulp_ddp_core::blocking::Timeout;
use ulp_ddp_core::{DdpBackend, SgBuffer};

use crate::connection::{
    Command, CommandError, CommandId, Completion, Connection, ConnectionError, Data, Event, Phase,
};
use crate::scsi::{self, Capacity, CapacityError, Sense};
use crate::wire::Lun;

/// How many unit attentions one LUN's check takes before giving up on it.
const UNIT_ATTENTIONS: u32 = 8;

/// One LUN's post-login check.
#[derive(Clone, Copy, Debug)]
struct LunCheck {
    lun: Lun,
    /// READ CAPACITY(16) after the TEST UNIT READY.
    capacity: bool,
    /// What the capacity must still be.
    expected: Option<Capacity>,
}

/// The command a check is waiting for.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Step {
    TestUnitReady,
    ReadCapacity,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Self::TestUnitReady => "TEST UNIT READY",
            Self::ReadCapacity => "READ CAPACITY(16)",
        }
    }
}

/// The check in progress: its LUN, step, command and unit attentions taken.
#[derive(Debug)]
struct Current {
    check: LunCheck,
    step: Step,
    id: CommandId,
    tries: u32,
}

/// A session ready for I/O: what the bring-up learned.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct Ready {
    /// The READ CAPACITY(16) answer of each LUN asked for, in the order asked.
    pub capacities: Vec<(Lun, Capacity)>,
}

impl Ready {
    /// The capacity learned for `lun`, if it was asked for.
    pub fn capacity(&self, lun: Lun) -> Option<Capacity> {
        self.capacities
            .iter()
            .find_map(|&(l, c)| (l == lun).then_some(c))
    }
}

/// Why a bring-up did not end in a session ready for I/O.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum BringupError {
    /// The connection ended (or refused to start) before full feature phase: the login's
    /// error (status class and detail, negotiation, CHAP ...).
    Connection(ConnectionError),
    /// The target did not answer in time: what was waited for.
    Timeout(Timeout),
    /// A check command failed (the connection ended before its status, the target rejected
    /// it ...).
    Command {
        /// The command ("TEST UNIT READY", "READ CAPACITY(16)").
        name: &'static str,
        /// Why.
        error: CommandError,
    },
    /// A check command completed with a status other than GOOD.
    Status {
        /// The command.
        name: &'static str,
        /// SCSI status.
        status: u8,
        /// Sense, if any.
        sense: Option<Sense>,
    },
    /// The LUN answered with unit attention after unit attention.
    UnitAttentions {
        /// The command.
        name: &'static str,
        /// The LUN.
        lun: Lun,
    },
    /// READ CAPACITY data the initiator does not use.
    Capacity(CapacityError),
    /// A LUN's capacity is not what it was.
    Changed {
        /// The LUN.
        lun: Lun,
        /// What it is now.
        now: Capacity,
        /// What it was.
        was: Capacity,
    },
}

impl fmt::Display for BringupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connection(e) => write!(f, "connection: {e}"),
            Self::Timeout(t) => write!(f, "{t}"),
            Self::Command { name, error } => write!(f, "{name} after the login: {error}"),
            Self::Status {
                name,
                status,
                sense,
            } => {
                write!(
                    f,
                    "{name} after the login: SCSI status {} ({status:#04x})",
                    scsi::status_name(*status)
                )?;
                if let Some(sense) = sense {
                    write!(f, ", sense {sense}")?;
                }
                Ok(())
            }
            Self::UnitAttentions { name, lun } => write!(
                f,
                "{name} after the login: unit attention after unit attention on LUN {}",
                lun_number(*lun)
            ),
            Self::Capacity(e) => write!(f, "READ CAPACITY(16) after the login: {e}"),
            Self::Changed { lun, now, was } => write!(
                f,
                "LUN {} changed across the reinstatement ({} blocks of {} bytes, was {} of {}); \
                 commands fail rather than reach the wrong blocks",
                lun_number(*lun),
                now.blocks(),
                now.block_len,
                was.blocks(),
                was.block_len
            ),
        }
    }
}

impl std::error::Error for BringupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connection(e) => Some(e),
            Self::Timeout(t) => Some(t),
            Self::Command { error, .. } => Some(error),
            Self::Capacity(e) => Some(e),
            _ => None,
        }
    }
}

const LOGIN_RESPONSE: &str = "the Login Response";

/// The bring-up of one connection: login, then the post-login checks. See the
/// [module documentation](self).
#[derive(Debug)]
pub struct Bringup {
    started: Instant,
    deadline: Instant,
    checks: VecDeque<LunCheck>,
    current: Option<Current>,
    logged_in: bool,
    ready: Ready,
    outcome: Option<Result<Ready, BringupError>>,
    /// The result was taken.
    taken: bool,
}

impl Bringup {
    /// A bring-up started at `now` that must end within `limit` (login and checks in all).
    pub fn new(now: Instant, limit: Duration) -> Self {
        Self {
            started: now,
            deadline: now + limit,
            checks: VecDeque::new(),
            current: None,
            logged_in: false,
            ready: Ready::default(),
            outcome: None,
            taken: false,
        }
    }

    /// After the login, TEST UNIT READY on `lun` until it answers without a unit attention
    /// (any other status is left to the commands that follow).
    #[must_use]
    pub fn settle(mut self, lun: Lun) -> Self {
        self.checks.push_back(LunCheck {
            lun,
            capacity: false,
            expected: None,
        });
        self
    }

    /// After the login, settle `lun` ([`settle`](Self::settle)), then READ CAPACITY(16): the
    /// answer is in [`Ready::capacities`], and must equal `expected` when given
    /// ([`BringupError::Changed`] otherwise).
    #[must_use]
    pub fn capacity(mut self, lun: Lun, expected: Option<Capacity>) -> Self {
        self.checks.push_back(LunCheck {
            lun,
            capacity: true,
            expected,
        });
        self
    }

    /// Queues the first Login Request on `conn` (a new connection).
    ///
    /// # Errors
    ///
    /// [`BringupError::Connection`] when `conn` is not new.
    pub fn start<B: DdpBackend>(&mut self, conn: &mut Connection<B>) -> Result<(), BringupError> {
        conn.start_login().map_err(|e| {
            self.finish(Err(BringupError::Connection(e.clone())));
            BringupError::Connection(e)
        })
    }

    /// Whether the login reached full feature phase.
    pub fn logged_in(&self) -> bool {
        self.logged_in
    }

    /// What the bring-up waits for, in words (for a driver's own timeout message).
    pub fn waiting_for(&self) -> String {
        match &self.current {
            _ if !self.logged_in => LOGIN_RESPONSE.to_string(),
            Some(c) => format!("the answer to {} after the login", c.step.name()),
            None => "nothing".to_string(),
        }
    }

    /// Takes the bring-up's part of one of `conn`'s events (full feature phase, its own
    /// commands' completions, the connection's end) and hands back every other event.
    pub fn handle_event<B: DdpBackend>(
        &mut self,
        conn: &mut Connection<B>,
        event: Event,
    ) -> Option<Event> {
        if self.outcome.is_some() || self.taken {
            return match event {
                // A check command abandoned with the connection: never the caller's.
                Event::Completed(c) if self.current.as_ref().is_some_and(|cur| cur.id == c.id) => {
                    None
                }
                other => Some(other),
            };
        }
        match event {
            Event::Connected if !self.logged_in => {
                self.logged_in = true;
                self.next_check(conn);
                None
            }
            Event::Completed(c) if self.current.as_ref().is_some_and(|cur| cur.id == c.id) => {
                self.on_completion(conn, c);
                None
            }
            Event::Closed(e) => {
                self.finish(Err(BringupError::Connection(e.clone())));
                Some(Event::Closed(e))
            }
            other => Some(other),
        }
    }

    /// Time passes: past the limit, the bring-up fails with [`BringupError::Timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_none() && !self.taken && now >= self.deadline {
            self.finish(Err(BringupError::Timeout(Timeout {
                peer: "target",
                waited: now - self.started,
                what: self.waiting_for(),
            })));
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must run next: the limit, until done.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.outcome.is_none() && !self.taken).then_some(self.deadline)
    }

    /// The result, once (`None` while the bring-up goes on, and after it was taken).
    pub fn poll(&mut self) -> Option<Result<Ready, BringupError>> {
        let r = self.outcome.take();
        if r.is_some() {
            self.taken = true;
        }
        r
    }

    /// After a failure: ends `conn` if a check command is still outstanding, and drops what
    /// it reports, so that the command's completion (with the connection's id, not a
    /// caller's) never reaches a caller.
    pub fn abandon<B: DdpBackend>(&mut self, conn: &mut Connection<B>) {
        if self.current.take().is_some() {
            conn.close();
            while conn.poll_event().is_some() {}
        }
    }

    fn finish(&mut self, r: Result<Ready, BringupError>) {
        if self.outcome.is_none() && !self.taken {
            self.outcome = Some(r);
        }
    }

    /// Submits the next check's first command, or ends ready.
    fn next_check<B: DdpBackend>(&mut self, conn: &mut Connection<B>) {
        match self.checks.pop_front() {
            Some(check) => self.issue(conn, check, Step::TestUnitReady, 0),
            None => {
                self.current = None;
                let ready = std::mem::take(&mut self.ready);
                self.finish(Ok(ready));
            }
        }
    }

    fn issue<B: DdpBackend>(
        &mut self,
        conn: &mut Connection<B>,
        check: LunCheck,
        step: Step,
        tries: u32,
    ) {
        if conn.phase() != Phase::FullFeature {
            // Ended under the check: the Closed event says why.
            self.current = None;
            return;
        }
        let (cdb, data) = match step {
            Step::TestUnitReady => (scsi::test_unit_ready(), Data::None),
            Step::ReadCapacity => (scsi::read_capacity_16(), Data::Read(SgBuffer::zeroed(32))),
        };
        let id = conn.submit(Command {
            lun: check.lun,
            cdb,
            data,
        });
        self.current = Some(Current {
            check,
            step,
            id,
            tries,
        });
    }

    fn on_completion<B: DdpBackend>(&mut self, conn: &mut Connection<B>, c: Completion) {
        let Some(cur) = self.current.take() else {
            return;
        };
        let name = cur.step.name();
        let outcome = match c.result {
            Ok(o) => o,
            Err(error) => return self.finish(Err(BringupError::Command { name, error })),
        };
        if outcome.is_unit_attention() {
            if cur.tries + 1 < UNIT_ATTENTIONS {
                return self.issue(conn, cur.check, cur.step, cur.tries + 1);
            }
            if cur.step == Step::ReadCapacity {
                return self.finish(Err(BringupError::UnitAttentions {
                    name,
                    lun: cur.check.lun,
                }));
            }
        }
        match cur.step {
            // Not ready or another status: the commands that follow will say so.
            Step::TestUnitReady if cur.check.capacity => {
                self.issue(conn, cur.check, Step::ReadCapacity, 0);
            }
            Step::TestUnitReady => self.next_check(conn),
            Step::ReadCapacity => {
                if !outcome.is_good() {
                    return self.finish(Err(BringupError::Status {
                        name,
                        status: outcome.status,
                        sense: outcome.sense,
                    }));
                }
                let data = c.buffer.map(SgBuffer::into_vec).unwrap_or_default();
                let now = match Capacity::parse_16(&data) {
                    Ok(now) => now,
                    Err(e) => return self.finish(Err(BringupError::Capacity(e))),
                };
                let lun = cur.check.lun;
                if let Some(was) = cur.check.expected
                    && !was.same_geometry(&now)
                {
                    return self.finish(Err(BringupError::Changed { lun, now, was }));
                }
                self.ready.capacities.push((lun, now));
                self.next_check(conn);
            }
        }
    }
}

/// A LUN's number for messages (single-level addressing).
pub(crate) fn lun_number(lun: Lun) -> u16 {
    u16::from_be_bytes([lun.0[0] & 0x3F, lun.0[1]])
}
