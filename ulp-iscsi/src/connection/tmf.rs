//! Task management (RFC 7143 §11.5, §11.6) and the recovery ladder of a command that does not
//! complete: its deadline passes → ABORT TASK → (failed, or no response within
//! `abort_timeout`) LOGICAL UNIT RESET of its LUN → (failed, or no response within
//! `lu_reset_timeout`) the connection fails with [`ConnectionError::LunResetFailed`], which a
//! driver answers by reinstating the session.
//!
//! Decisions (see docs/iscsi.md, "Timers and task management"):
//! - A command's deadline runs from when its SCSI Command PDU was handed out by
//!   `poll_transmit` (the next `handle_timeout` fixes it); commands waiting for the CmdSN
//!   window or a tag do not count.
//! - One task management request is outstanding at a time (as in Linux libiscsi); commands
//!   that time out meanwhile wait for their ABORT TASK in order.
//! - Task management requests never take a command tag: their ITTs come from a range above
//!   every command tag (from [`TMF_ITT_BASE`]), so a queue full of stalled commands can still
//!   be aborted, and a late answer to a request given up on is never taken for a newer one's.
//! - They are immediate (I bit, CmdSN not advanced), so they go out with the window closed.
//! - A command's ABORT TASK answered "Function complete" or "Task does not exist" ends it with
//!   [`CommandError::Aborted`]; its read buffer is torn down and handed back. A SCSI Response
//!   that arrives first completes it normally (the answer to the abort then finds nothing to
//!   do). The target sends nothing for an aborted task after the Task Management Function
//!   Response (RFC 7143 §4.2.3.3, §11.6): a later PDU naming its ITT is a protocol violation
//!   and fails the connection (the tag goes to the back of the free list, reused last). R2Ts
//!   that arrive for it before the response are still answered (RFC 7143's standard
//!   semantics; open-iscsi's FastAbort stops answering them).
//! - A command that completes while its ABORT TASK is outstanding keeps its tag out of use
//!   until that request is over (answered, rejected or given up on): the request names the
//!   ITT, and a new command with it could be the one the target aborts.

use core::fmt;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ulp_ddp_core::timer::{Timer, earliest};
use ulp_ddp_core::{DdpBackend, Tag};

use super::{
    CommandError, CommandId, Connection, ConnectionError, Event, Phase, Task, TaskKind, TxPayload,
    Violation,
};
use crate::wire::reject::RejectReason;
use crate::wire::task_mgmt::{TmfFunction, TmfRequestRepr, TmfResponseRepr, response};
use crate::wire::{self, Itt, Lun, Opcode};

/// The first ITT of task management requests: above every command tag (command tags are
/// below the queue depth).
pub(super) const TMF_ITT_BASE: u32 = 0x8000_0000;

/// How many ITTs of task management requests given up on are remembered (a late answer to
/// one of them is ignored).
const STALE_TMFS: usize = 8;

/// A step of error recovery, reported as [`Event::Recovery`](super::Event::Recovery).
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Recovery {
    /// A SCSI command got no answer within its deadline; an ABORT TASK follows.
    TaskTimedOut {
        /// The command.
        id: CommandId,
        /// Its ITT.
        itt: u32,
        /// Its logical unit.
        lun: Lun,
        /// The deadline (`task_timeout`).
        waited: Duration,
    },
    /// ABORT TASK was sent for a command.
    AbortTaskSent {
        /// The command.
        id: CommandId,
        /// Its ITT (the request's Referenced Task Tag).
        itt: u32,
        /// Its logical unit.
        lun: Lun,
    },
    /// The target answered the ABORT TASK with success: the command is over.
    TaskAborted {
        /// The command.
        id: CommandId,
        /// Its ITT.
        itt: u32,
        /// The Task Management Function Response code (0 Function complete, 1 Task does not
        /// exist).
        response: u8,
        /// The command had completed (its SCSI Response came) before the answer.
        completed_first: bool,
    },
    /// The ABORT TASK failed; a LOGICAL UNIT RESET of the command's LUN follows.
    AbortFailed {
        /// The command.
        id: CommandId,
        /// Its ITT.
        itt: u32,
        /// Its logical unit.
        lun: Lun,
        /// How the ABORT TASK failed.
        failure: TmfFailure,
    },
    /// LOGICAL UNIT RESET was sent.
    LunResetSent {
        /// The logical unit.
        lun: Lun,
        /// Commands outstanding on it, which the reset ends.
        commands: usize,
    },
    /// The LOGICAL UNIT RESET completed: every command it covered ended with
    /// [`CommandError::Aborted`].
    LunResetDone {
        /// The logical unit.
        lun: Lun,
        /// Commands it ended.
        aborted: usize,
    },
    /// The LOGICAL UNIT RESET failed; the connection fails
    /// ([`ConnectionError::LunResetFailed`]).
    LunResetFailed {
        /// The logical unit.
        lun: Lun,
        /// How it failed.
        failure: TmfFailure,
    },
    /// A warning: the Logout Response did not come within the logout timeout, but every SCSI
    /// command had completed, so the session ended cleanly.
    LogoutUnanswered {
        /// The logout timeout.
        waited: Duration,
    },
    /// A warning: the target closed the connection instead of answering the Logout Request,
    /// but every SCSI command had completed, so the session ended cleanly.
    ClosedInsteadOfLogoutResponse,
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TaskTimedOut {
                id,
                itt,
                lun,
                waited,
            } => write!(
                f,
                "command {} (ITT {itt:#x} on {}) got no answer within {:.1} s: aborting it",
                id.0,
                lun_words(*lun),
                waited.as_secs_f64()
            ),
            Self::AbortTaskSent { id, itt, lun } => write!(
                f,
                "ABORT TASK sent for command {} (ITT {itt:#x} on {})",
                id.0,
                lun_words(*lun)
            ),
            Self::TaskAborted {
                id,
                itt,
                response,
                completed_first,
            } => {
                write!(
                    f,
                    "ABORT TASK of ITT {itt:#x} answered \"{}\" ({response}): ",
                    tmf_response_name(*response)
                )?;
                if *completed_first {
                    write!(f, "command {} had completed before", id.0)
                } else {
                    write!(f, "command {} aborted", id.0)
                }
            }
            Self::AbortFailed {
                id,
                itt,
                lun,
                failure,
            } => write!(
                f,
                "ABORT TASK of ITT {itt:#x} (command {}) {failure}: LOGICAL UNIT RESET of {} follows",
                id.0,
                lun_words(*lun)
            ),
            Self::LunResetSent { lun, commands } => write!(
                f,
                "LOGICAL UNIT RESET of {} sent ({commands} command(s) outstanding on it)",
                lun_words(*lun)
            ),
            Self::LunResetDone { lun, aborted } => write!(
                f,
                "LOGICAL UNIT RESET of {} completed: {aborted} command(s) aborted",
                lun_words(*lun)
            ),
            Self::LunResetFailed { lun, failure } => write!(
                f,
                "LOGICAL UNIT RESET of {} {failure}: the connection fails",
                lun_words(*lun)
            ),
            Self::LogoutUnanswered { waited } => write!(
                f,
                "warning: no Logout Response within {:.1} s; every command had completed, so the session ended cleanly",
                waited.as_secs_f64()
            ),
            Self::ClosedInsteadOfLogoutResponse => f.write_str(
                "warning: the target closed the connection instead of answering the Logout Request; every command had completed, so the session ended cleanly",
            ),
        }
    }
}

/// How a task management function failed.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum TmfFailure {
    /// The target answered with this response code (neither Function complete nor, for ABORT
    /// TASK, Task does not exist).
    Response(u8),
    /// No response within this long.
    NoResponse(Duration),
    /// The target rejected the request (Reject PDU).
    Rejected(RejectReason),
}

impl fmt::Display for TmfFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Response(code) => write!(
                f,
                "was answered \"{}\" (response {code})",
                tmf_response_name(*code)
            ),
            Self::NoResponse(waited) => {
                write!(f, "got no response within {:.1} s", waited.as_secs_f64())
            }
            Self::Rejected(reason) => write!(
                f,
                "was rejected by the target: {reason} (reason {:#04x})",
                reason.code()
            ),
        }
    }
}

/// The words of RFC 7143 §11.6.1 for a Task Management Function Response code.
pub fn tmf_response_name(code: u8) -> &'static str {
    match code {
        response::COMPLETE => "Function complete",
        response::NO_TASK => "Task does not exist",
        response::NO_LUN => "LUN does not exist",
        response::TASK_ALLEGIANT => "Task still allegiant",
        response::REASSIGN_UNSUPPORTED => "Task allegiance reassignment not supported",
        response::NOT_SUPPORTED => "Task management function not supported",
        response::AUTH_FAILED => "Function authorization failed",
        response::REJECTED => "Function rejected",
        _ => "unknown response",
    }
}

/// A LUN in words: "LUN n" for a single-level LUN, else its eight bytes in hex.
pub fn lun_words(lun: Lun) -> LunWords {
    LunWords(lun)
}

/// A LUN's [`Display`](fmt::Display) ([`lun_words`]).
#[derive(Clone, Copy, Debug)]
pub struct LunWords(Lun);

impl fmt::Display for LunWords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0.0;
        if b[0] == 0 && b[2..].iter().all(|&x| x == 0) {
            write!(f, "LUN {}", b[1])
        } else {
            f.write_str("LUN ")?;
            for x in b {
                write!(f, "{x:02x}")?;
            }
            Ok(())
        }
    }
}

/// A started SCSI command's deadline.
#[derive(Debug)]
pub(super) struct Clock {
    id: CommandId,
    cmd_sn: u32,
    lun: Lun,
    /// When the deadline started (the first `handle_timeout` after the PDU went out).
    started: Option<Instant>,
    deadline: Timer,
    timed_out: bool,
}

/// The outstanding task management request.
#[derive(Debug)]
struct Outstanding {
    itt: u32,
    function: TmfFunction,
    lun: Lun,
    /// ABORT TASK: the command (tag, id).
    task: (u32, CommandId),
    /// LOGICAL UNIT RESET: the commands it covers (started before it).
    affected: Vec<(u32, CommandId)>,
    /// LOGICAL UNIT RESET: the ABORT TASK that failed before it (ITT of the command, how).
    failed_abort: Option<(u32, TmfFailure)>,
    timer: Timer,
    timeout: Duration,
}

/// Task deadlines, task management, login and logout timers.
#[derive(Debug, Default)]
pub(super) struct RecoveryState {
    clocks: HashMap<u32, Clock>,
    /// Timed-out commands waiting for their ABORT TASK (one request at a time).
    aborts: VecDeque<(u32, CommandId)>,
    tmf: Option<Outstanding>,
    next_itt: u32,
    /// ITTs of requests given up on.
    stale: VecDeque<u32>,
    /// The tag of a command that completed while the outstanding ABORT TASK names it: not
    /// reused until that request is over (answered, rejected or given up on).
    held: Option<u32>,
    pub(super) login_timer: Timer,
    pub(super) login_armed: bool,
    pub(super) logout_timer: Timer,
    pub(super) logout_armed: bool,
}

impl<B: DdpBackend> Connection<B> {
    /// Whether `tag` holds SCSI command `id`, not yet answered.
    fn live(&self, tag: u32, id: CommandId) -> bool {
        live_in(&self.tasks, tag, id)
    }

    /// `poll_transmit` handed out a PDU: a SCSI Command's deadline starts (its ITT, CmdSN and
    /// LUN are read from the header the connection built).
    pub(super) fn handed_out(&mut self, header: &[u8]) {
        let Some(timeout) = self.config.task_timeout else {
            return;
        };
        if header.len() < 48 || header[0] & 0x3F != Opcode::ScsiCommand as u8 {
            return;
        }
        let word = |at: usize| {
            u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let (itt, cmd_sn) = (word(16), word(24));
        let mut lun = [0u8; 8];
        lun.copy_from_slice(&header[8..16]);
        let Some(Task { id, .. }) = self.tasks.get(&itt) else {
            return;
        };
        let mut deadline = Timer::default();
        deadline.start(timeout);
        self.recovery.clocks.insert(
            itt,
            Clock {
                id: *id,
                cmd_sn,
                lun: Lun(lun),
                started: None,
                deadline,
                timed_out: false,
            },
        );
    }

    /// At `handle_timeout` in full feature phase: commands past their deadline are reported
    /// and queued for ABORT TASK; the outstanding request's timeout.
    pub(super) fn expire_tasks(&mut self, now: Instant) {
        let tasks = &self.tasks;
        let clocks = &mut self.recovery.clocks;
        clocks.retain(|tag, c| live_in(tasks, *tag, c.id));
        let mut expired = Vec::new();
        for (tag, c) in clocks.iter_mut() {
            c.started.get_or_insert(now);
            if !c.timed_out && c.deadline.expire(now) {
                c.timed_out = true;
                expired.push((c.id, *tag, c.lun));
            }
        }
        expired.sort_by_key(|e| e.0);
        let waited = self.config.task_timeout.unwrap_or_default();
        for (id, itt, lun) in expired {
            self.events
                .push_back(Event::Recovery(Recovery::TaskTimedOut {
                    id,
                    itt,
                    lun,
                    waited,
                }));
            self.recovery.aborts.push_back((itt, id));
        }
        if let Some(t) = self.recovery.tmf.as_mut()
            && t.timer.expire(now)
        {
            let failure = TmfFailure::NoResponse(t.timeout);
            if let Some(t) = self.recovery.tmf.take() {
                self.release_held();
                self.recovery.stale.push_back(t.itt);
                if self.recovery.stale.len() > STALE_TMFS {
                    self.recovery.stale.pop_front();
                }
                self.tmf_failed(t, failure, Some(now));
            }
        }
        self.next_abort(Some(now));
        // A tag the request held may have come free.
        self.flush_queued();
    }

    /// When the deadlines and the outstanding request need `handle_timeout`.
    pub(super) fn tmf_timeout(&self) -> Option<Instant> {
        let clocks = self
            .recovery
            .clocks
            .iter()
            .filter(|(tag, c)| !c.timed_out && self.live(**tag, c.id))
            .map(|(_, c)| c.deadline.deadline(self.now));
        let tmf = self
            .recovery
            .tmf
            .as_ref()
            .and_then(|t| t.timer.deadline(self.now));
        earliest(clocks.chain([tmf]))
    }

    /// Sends the next queued ABORT TASK unless a request is outstanding.
    fn next_abort(&mut self, now: Option<Instant>) {
        while self.recovery.tmf.is_none() && self.phase == Phase::FullFeature {
            let Some((tag, id)) = self.recovery.aborts.pop_front() else {
                return;
            };
            if !self.live(tag, id) {
                continue;
            }
            let Some(c) = self.recovery.clocks.get(&tag) else {
                continue;
            };
            let (lun, cmd_sn) = (c.lun, c.cmd_sn);
            let timeout = self.config.abort_timeout;
            let Some(itt) = self.send_tmf(TmfFunction::AbortTask, lun, tag, cmd_sn) else {
                return;
            };
            self.recovery.tmf = Some(Outstanding {
                itt,
                function: TmfFunction::AbortTask,
                lun,
                task: (tag, id),
                affected: Vec::new(),
                failed_abort: None,
                timer: timer_from(now, timeout),
                timeout,
            });
            self.events
                .push_back(Event::Recovery(Recovery::AbortTaskSent {
                    id,
                    itt: tag,
                    lun,
                }));
        }
    }

    /// Queues a Task Management Function Request (immediate); its ITT, or `None` when the
    /// connection failed.
    fn send_tmf(
        &mut self,
        function: TmfFunction,
        lun: Lun,
        rtt: u32,
        ref_cmd_sn: u32,
    ) -> Option<u32> {
        let itt = TMF_ITT_BASE | (self.recovery.next_itt % (u32::MAX - TMF_ITT_BASE));
        self.recovery.next_itt = self.recovery.next_itt.wrapping_add(1);
        let repr = TmfRequestRepr {
            immediate: true,
            function,
            lun,
            itt: Itt(itt),
            ref_task_tag: Itt(rtt),
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            ref_cmd_sn,
            exp_data_sn: 0,
        };
        match self.push_pdu(
            Opcode::TaskMgmtRequest,
            |b, d, parts| wire::emit_header_parts(&repr, b, d, parts),
            TxPayload::None,
        ) {
            Ok(()) => Some(itt),
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    /// A Task Management Function Response.
    pub(super) fn on_tmf_response(&mut self, r: &TmfResponseRepr) {
        self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
        if !self.take_stat_sn(Opcode::TaskMgmtResponse, r.stat_sn) {
            return;
        }
        let itt = r.itt.0;
        let Some(t) = self.recovery.tmf.take_if(|t| t.itt == itt) else {
            if self.recovery.stale.contains(&itt) {
                // The answer to a request given up on (the ladder has moved past it).
                return;
            }
            return self.fail(ConnectionError::Protocol(Violation::UnknownItt {
                opcode: Opcode::TaskMgmtResponse,
                itt,
            }));
        };
        self.release_held();
        let success = r.response == response::COMPLETE
            || (t.function == TmfFunction::AbortTask && r.response == response::NO_TASK);
        if !success {
            return self.tmf_failed(t, TmfFailure::Response(r.response), None);
        }
        match t.function {
            TmfFunction::AbortTask => {
                let (tag, id) = t.task;
                let aborted = self.abort_task(tag, id, TmfFunction::AbortTask);
                self.events
                    .push_back(Event::Recovery(Recovery::TaskAborted {
                        id,
                        itt: tag,
                        response: r.response,
                        completed_first: !aborted,
                    }));
            }
            _ => {
                let aborted = t
                    .affected
                    .iter()
                    .filter(|&&(tag, id)| self.abort_task(tag, id, t.function))
                    .count();
                self.events
                    .push_back(Event::Recovery(Recovery::LunResetDone {
                        lun: t.lun,
                        aborted,
                    }));
            }
        }
        self.next_abort(None);
    }

    /// A Reject naming `itt`: when it is the outstanding task management request, the request
    /// failed (and the ladder goes on); when it is a request given up on, it is a late answer
    /// and ignored, like a late response. Returns whether it was either.
    pub(super) fn tmf_rejected(&mut self, itt: u32, reason: RejectReason) -> bool {
        match self.recovery.tmf.take_if(|t| t.itt == itt) {
            Some(t) => {
                self.release_held();
                self.tmf_failed(t, TmfFailure::Rejected(reason), None);
                true
            }
            None => self.recovery.stale.contains(&itt),
        }
    }

    /// The request `t` failed: a failed ABORT TASK is followed by a LOGICAL UNIT RESET, a
    /// failed reset fails the connection.
    fn tmf_failed(&mut self, t: Outstanding, failure: TmfFailure, now: Option<Instant>) {
        match t.function {
            TmfFunction::AbortTask => {
                let (tag, id) = t.task;
                if !self.live(tag, id) {
                    // It completed meanwhile: nothing left to recover.
                    return self.next_abort(now);
                }
                self.events
                    .push_back(Event::Recovery(Recovery::AbortFailed {
                        id,
                        itt: tag,
                        lun: t.lun,
                        failure,
                    }));
                let lun = t.lun;
                let affected: Vec<(u32, CommandId)> = self
                    .tasks
                    .iter()
                    .filter_map(|(tag, task)| match &task.kind {
                        TaskKind::Scsi(s) if s.lun == lun && s.outcome.is_none() => {
                            Some((*tag, task.id))
                        }
                        _ => None,
                    })
                    .collect();
                let timeout = self.config.lu_reset_timeout;
                // Referenced Task Tag and RefCmdSN are ABORT TASK's; reserved (0 for RefCmdSN)
                // for a reset (RFC 7143 §11.5).
                let Some(itt) =
                    self.send_tmf(TmfFunction::LogicalUnitReset, lun, Itt::RESERVED.0, 0)
                else {
                    return;
                };
                self.events
                    .push_back(Event::Recovery(Recovery::LunResetSent {
                        lun,
                        commands: affected.len(),
                    }));
                self.recovery.tmf = Some(Outstanding {
                    itt,
                    function: TmfFunction::LogicalUnitReset,
                    lun,
                    task: t.task,
                    affected,
                    failed_abort: Some((tag, failure)),
                    timer: timer_from(now, timeout),
                    timeout,
                });
            }
            _ => {
                self.events
                    .push_back(Event::Recovery(Recovery::LunResetFailed {
                        lun: t.lun,
                        failure,
                    }));
                let (abort_itt, abort) = t
                    .failed_abort
                    .unwrap_or((t.task.0, TmfFailure::Response(response::REJECTED)));
                self.fail(ConnectionError::LunResetFailed {
                    lun: t.lun,
                    reset: failure,
                    abort_itt,
                    abort,
                });
            }
        }
    }

    /// Ends command `id` (tag `tag`) with [`CommandError::Aborted`] unless it already has an
    /// outcome: a read's buffer is torn down (it completes when the engine releases it).
    /// Returns whether it did.
    fn abort_task(&mut self, tag: u32, id: CommandId, function: TmfFunction) -> bool {
        let outstanding = match (self.recovery.clocks.get(&tag), self.now) {
            (Some(c), Some(now)) if c.id == id => c
                .started
                .map_or(Duration::ZERO, |s| now.saturating_duration_since(s)),
            _ => Duration::ZERO,
        };
        let Some(Task {
            id: tid,
            kind: TaskKind::Scsi(t),
        }) = self.tasks.get_mut(&tag)
        else {
            return false;
        };
        if *tid != id || t.outcome.is_some() {
            return false;
        }
        t.outcome = Some(Err(CommandError::Aborted {
            itt: tag,
            lun: t.lun,
            function,
            outstanding,
        }));
        self.recovery.clocks.remove(&tag);
        if t.registered {
            if !t.tearing_down {
                t.tearing_down = true;
                // Registered and not torn down yet, so this succeeds; Released follows.
                let _ = self.engine.teardown(Tag(tag));
            }
        } else {
            self.complete(tag, None);
        }
        true
    }
}

impl<B: DdpBackend> Connection<B> {
    /// A completed SCSI command's tag becomes free: at once, unless the outstanding ABORT TASK
    /// names it (its Referenced Task Tag). Then it is held until that request is over: a
    /// target that looks the task up by ITT after a new command took the tag would abort the
    /// new command.
    pub(super) fn free_task_tag(&mut self, tag: u32) {
        let named = matches!(
            &self.recovery.tmf,
            Some(t) if t.function == TmfFunction::AbortTask && t.task.0 == tag
        );
        if named {
            self.recovery.held = Some(tag);
        } else {
            self.free_tags.push_back(tag);
        }
    }

    /// The outstanding task management request is over: a tag it held is free again.
    fn release_held(&mut self) {
        if let Some(tag) = self.recovery.held.take() {
            self.free_tags.push_back(tag);
        }
    }
}

/// Whether `tag` holds SCSI command `id` in `tasks`, not yet answered.
fn live_in(tasks: &HashMap<u32, Task>, tag: u32, id: CommandId) -> bool {
    matches!(
        tasks.get(&tag),
        Some(Task { id: tid, kind: TaskKind::Scsi(t) }) if *tid == id && t.outcome.is_none()
    )
}

/// A timer of `timeout` from `now`, or from the next `handle_timeout` when the time is not
/// known (the request went out while bytes were processed).
fn timer_from(now: Option<Instant>, timeout: Duration) -> Timer {
    let mut t = Timer::default();
    match now {
        Some(now) => t.set(now + timeout),
        None => t.start(timeout),
    }
    t
}
