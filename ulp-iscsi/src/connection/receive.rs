//! What the target sends, decoded once: responses, Data-In status, R2T, pings, text, logout,
//! asynchronous messages and rejects; each checked against the task it names.

use ulp_ddp_core::{DdpBackend, SgBuffer, Tag};

use super::login::MAX_TEXT;
use super::{
    AsyncEvent, CommandError, Completion, Connection, ConnectionError, DiscoveredTarget, Event,
    Phase, Queued, Residual, ScsiOutcome, ScsiTask, Task, TaskKind, TxPayload, Violation,
};
use crate::plugin::TargetPdu;
use crate::scsi::Sense;
use crate::wire::logout::LogoutResponse;
use crate::wire::nop::NopOutRepr;
use crate::wire::reject::RejectReason;
use crate::wire::text::TextIter;
use crate::wire::{self, Itt, Opcode, Pdu, Ttt};

impl<B: DdpBackend> Connection<B> {
    pub(super) fn on_control(&mut self, header: &TargetPdu, data: &[u8]) {
        // The BHS was framed and checked by the plugin; its opcode-specific fields are decoded
        // here with the data segment, once, in place.
        match header.decode(data) {
            Ok(pdu) => self.on_pdu(&pdu),
            Err(e) => self.fail(ConnectionError::Wire(e)),
        }
        self.flush_queued();
    }

    fn on_pdu(&mut self, pdu: &Pdu<'_>) {
        if self.phase == Phase::Login && !matches!(pdu, Pdu::LoginResponse(_) | Pdu::Reject(_)) {
            let opcode = pdu_opcode(pdu);
            return self.fail(ConnectionError::Protocol(Violation::NonLoginPdu(opcode)));
        }
        match pdu {
            Pdu::LoginResponse(r) => {
                if self.phase != Phase::Login {
                    return self.fail(ConnectionError::Protocol(
                        Violation::LoginResponseAfterLogin,
                    ));
                }
                self.on_login_response(r);
            }
            Pdu::ScsiResponse(r) => {
                self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
                if !self.take_stat_sn(Opcode::ScsiResponse, r.stat_sn) {
                    return;
                }
                if self.request_unsent(r.itt.0) {
                    return self.unknown_itt(Opcode::ScsiResponse, r.itt.0);
                }
                let Some(task) = self.scsi_task(r.itt.0) else {
                    return self.unknown_itt(Opcode::ScsiResponse, r.itt.0);
                };
                let expected_len = task.expected_len;
                let data_in = task.data_in;
                let read = task.registered;
                let result = if r.response != 0 {
                    Err(CommandError::TargetFailure(r.response))
                } else {
                    let residual = match (r.underflow, r.overflow) {
                        (true, _) if r.residual > expected_len => {
                            return self.fail(ConnectionError::Protocol(
                                Violation::UnderflowBeyondTransfer {
                                    opcode: Opcode::ScsiResponse,
                                    itt: r.itt.0,
                                    residual: r.residual,
                                    expected: expected_len,
                                },
                            ));
                        }
                        (true, _) => Residual::Underflow(r.residual),
                        (_, true) => Residual::Overflow(r.residual),
                        _ => Residual::None,
                    };
                    match short_data(read, expected_len, r.status, residual, data_in) {
                        Some(e) => Err(e),
                        None => Ok(ScsiOutcome {
                            status: r.status,
                            sense: Sense::parse(r.sense),
                            sense_data: r.sense.to_vec(),
                            residual,
                            data_in,
                        }),
                    }
                };
                self.finish_scsi(r.itt.0, result, Opcode::ScsiResponse);
            }
            Pdu::NopIn(r) => {
                self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
                if r.itt == Itt::RESERVED {
                    if r.ttt != Ttt::RESERVED {
                        self.answer_target_ping(r);
                    }
                    return;
                }
                if !self.take_stat_sn(Opcode::NopIn, r.stat_sn) {
                    return;
                }
                match self.tasks.get(&r.itt.0) {
                    _ if self.request_unsent(r.itt.0) => self.unknown_itt(Opcode::NopIn, r.itt.0),
                    Some(Task {
                        kind: TaskKind::Nop { internal },
                        id,
                    }) => {
                        let (id, internal) = (*id, *internal);
                        self.tasks.remove(&r.itt.0);
                        self.free_tags.push_back(r.itt.0);
                        if internal {
                            // The connection's own ping: answered, nothing to report.
                            self.ping_deadline.stop();
                        } else {
                            self.events.push_back(Event::Pong {
                                id,
                                data: r.data.to_vec(),
                            });
                        }
                    }
                    _ => self.unknown_itt(Opcode::NopIn, r.itt.0),
                }
            }
            Pdu::TextResponse(r) => {
                self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
                if !self.take_stat_sn(Opcode::TextResponse, r.stat_sn) {
                    return;
                }
                let itt = r.itt.0;
                if self.request_unsent(itt) {
                    return self.unknown_itt(Opcode::TextResponse, itt);
                }
                let Some(Task {
                    id,
                    kind: TaskKind::Text(acc),
                }) = self.tasks.get_mut(&itt)
                else {
                    return self.unknown_itt(Opcode::TextResponse, itt);
                };
                if acc.len() + r.data.len() > MAX_TEXT {
                    return self.fail(ConnectionError::Protocol(Violation::TextTooLong {
                        max: MAX_TEXT,
                    }));
                }
                acc.extend_from_slice(r.data);
                let id = *id;
                if r.cont || !r.final_ {
                    // The next Text Request is non-immediate: it waits for the CmdSN window
                    // (flush_queued, after this PDU), ahead of commands not yet started.
                    self.queued.push_front(Queued::TextContinue {
                        tag: itt,
                        ttt: r.ttt,
                    });
                    return;
                }
                let text = match self.tasks.remove(&itt) {
                    Some(Task {
                        kind: TaskKind::Text(t),
                        ..
                    }) => t,
                    _ => Vec::new(),
                };
                self.free_tags.push_back(itt);
                match parse_send_targets(&text) {
                    Some(targets) => self.events.push_back(Event::Discovered { id, targets }),
                    None => self.fail(ConnectionError::Protocol(Violation::MalformedSendTargets)),
                }
            }
            Pdu::LogoutResponse(r) => {
                self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
                if !self.take_stat_sn(Opcode::LogoutResponse, r.stat_sn) {
                    return;
                }
                if self.request_unsent(r.itt.0)
                    || !matches!(
                        self.tasks.get(&r.itt.0),
                        Some(Task {
                            kind: TaskKind::Logout,
                            ..
                        })
                    )
                {
                    return self.unknown_itt(Opcode::LogoutResponse, r.itt.0);
                }
                if r.response != LogoutResponse::Success {
                    return self.fail(ConnectionError::Protocol(Violation::LogoutRefused(
                        r.response,
                    )));
                }
                match self.logout_cause.take() {
                    // A logout the target asked for: not the user's clean end.
                    Some(cause) => self.fail(cause),
                    None => self.end(ConnectionError::LoggedOut, true),
                }
            }
            Pdu::R2t(r) => {
                self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
                self.on_r2t(r);
            }
            Pdu::TaskMgmtResponse(r) => self.on_tmf_response(r),
            Pdu::AsyncMessage(r) => {
                self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
                if !self.take_stat_sn(Opcode::AsyncMessage, r.stat_sn) {
                    return;
                }
                let event = AsyncEvent::from_message(r);
                self.events.push_back(Event::Async(event.clone()));
                match event {
                    AsyncEvent::LogoutRequest { within } => {
                        self.logout_for(ConnectionError::TargetRequestedLogout {
                            within: Some(within),
                        });
                    }
                    AsyncEvent::ConnectionDrop {
                        time2wait,
                        time2retain,
                        ..
                    } => self.fail(ConnectionError::TargetDroppedConnection {
                        time2wait,
                        time2retain,
                    }),
                    AsyncEvent::SessionDrop {
                        time2wait,
                        time2retain,
                    } => self.fail(ConnectionError::TargetDroppedSession {
                        time2wait,
                        time2retain,
                    }),
                    AsyncEvent::RenegotiationRequest { within } => {
                        self.logout_for(ConnectionError::TargetRequestedRenegotiation { within });
                    }
                    // Reported only: a SCSI event (its sense says what), vendor-specific or
                    // reserved codes.
                    _ => {}
                }
            }
            Pdu::Reject(r) => {
                self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
                if self.phase == Phase::Login {
                    return self.fail(ConnectionError::Rejected(r.reason));
                }
                if !self.take_stat_sn(Opcode::Reject, r.stat_sn) {
                    return;
                }
                let itt = r.rejected_bhs().itt().0;
                if self.tmf_rejected(itt, r.reason) {
                    return;
                }
                self.on_reject(r);
            }
            other => {
                let opcode = pdu_opcode(other);
                self.fail(ConnectionError::Protocol(Violation::UnacceptedPdu(opcode)));
            }
        }
    }

    /// A Reject in full feature phase (RFC 7143 §11.17.1 and §7.2 "Usage of Reject PDU in
    /// Recovery"): the target does not end an active task by rejecting one of its PDUs (it
    /// sends the task's response later), so only a Reject of the PDU that starts a task ends
    /// that task; and only that one.
    fn on_reject(&mut self, r: &wire::reject::RejectRepr<'_>) {
        let bhs = r.rejected_bhs();
        let itt = bhs.itt().0;
        let opcode = bhs.opcode_raw();
        let reason = r.reason;
        let unmapped = ConnectionError::RejectedPdu {
            reason,
            opcode,
            itt,
        };
        let handled = match Opcode::try_from(opcode) {
            // The command never became active at the target: it ends here, its buffer comes
            // back once released. Its CmdSN must match: a tag used again by a later command
            // is not that command.
            Ok(Opcode::ScsiCommand) => {
                let cmd_sn = bhs.word(6);
                let unsent = self.request_unsent(itt);
                match self.scsi_task(itt) {
                    // Not a command whose SCSI Command has not gone out yet either.
                    Some(t) if t.outcome.is_none() && t.cmd_sn == cmd_sn && !unsent => {
                        self.finish_scsi(itt, Err(CommandError::Rejected(reason)), Opcode::Reject);
                        true
                    }
                    _ => false,
                }
            }
            // A Data-Out (a data digest error, say) does not end the task: the target sends
            // its SCSI Response once it has the rest of the data (§11.17.1). The task keeps
            // its tag and waits for it.
            Ok(Opcode::DataOut) => matches!(
                self.scsi_task(itt),
                Some(t) if t.outcome.is_none() && t.write.is_some()
            ),
            // The answer to the target's own ping (ITT reserved): nothing to end.
            Ok(Opcode::NopOut) if itt == Itt::RESERVED.0 => true,
            Ok(Opcode::NopOut) => match self.tasks.get(&itt) {
                Some(Task {
                    id,
                    kind: TaskKind::Nop { internal },
                }) => {
                    let (id, internal) = (*id, *internal);
                    self.tasks.remove(&itt);
                    self.free_tags.push_back(itt);
                    if internal {
                        // The connection's own keep-alive: the target is alive.
                        self.ping_deadline.stop();
                    } else {
                        self.events.push_back(Event::Failed {
                            id,
                            error: CommandError::Rejected(reason),
                        });
                    }
                    true
                }
                _ => false,
            },
            Ok(Opcode::TextRequest) => match self.tasks.get(&itt) {
                Some(Task {
                    id,
                    kind: TaskKind::Text(_),
                }) => {
                    let id = *id;
                    self.tasks.remove(&itt);
                    self.queued
                        .retain(|q| !matches!(q, Queued::TextContinue { tag, .. } if *tag == itt));
                    self.free_tags.push_back(itt);
                    self.events.push_back(Event::Failed {
                        id,
                        error: CommandError::Rejected(reason),
                    });
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if !handled {
            return self.fail(unmapped);
        }
        if reason == RejectReason::WaitingForLogout {
            self.logout_for(ConnectionError::TargetRequestedLogout { within: None });
        }
    }

    /// Logs out because the target asked to (`cause`): the connection ends with `cause` when
    /// the Logout Response arrives, or at once when no Logout can be sent. A logout the user
    /// already started stays the user's.
    fn logout_for(&mut self, cause: ConnectionError) {
        match self.phase {
            Phase::LoggingOut => {}
            Phase::FullFeature => match self.logout() {
                Ok(_) => self.logout_cause = Some(cause),
                Err(_) => self.fail(cause),
            },
            _ => self.fail(cause),
        }
    }

    fn answer_target_ping(&mut self, r: &wire::nop::NopInRepr<'_>) {
        let repr = NopOutRepr {
            immediate: true,
            lun: r.lun,
            itt: Itt::RESERVED,
            ttt: r.ttt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: &[],
        };
        if let Err(e) = self.push_pdu(
            Opcode::NopOut,
            |b, d, parts| wire::emit_header_parts(&repr, b, d, parts),
            TxPayload::Owned(r.data.to_vec()),
        ) {
            self.fail(e);
        }
    }

    fn unknown_itt(&mut self, opcode: Opcode, itt: u32) {
        self.fail(ConnectionError::Protocol(Violation::UnknownItt {
            opcode,
            itt,
        }));
    }

    /// Whether task `itt`'s request (SCSI Command, NOP-Out ping, Text or Logout Request) has not
    /// gone out yet: the target cannot know the task, so an answer naming it is for another (an
    /// earlier task on that tag, a duplicate answer). Accepting it would complete a command the
    /// target never received (and send its request under a tag already free again), or end the
    /// session by a Logout Response to a Logout Request never sent.
    pub(super) fn request_unsent(&self, itt: u32) -> bool {
        const REQUESTS: [Opcode; 5] = [
            Opcode::ScsiCommand,
            Opcode::NopOut,
            Opcode::TextRequest,
            Opcode::LogoutRequest,
            Opcode::TaskMgmtRequest,
        ];
        itt != Itt::RESERVED.0
            && self.tx.iter().any(|p| {
                REQUESTS.iter().any(|&o| o as u8 == p.header[0] & 0x3F)
                    && p.header[16..20] == itt.to_be_bytes()
            })
    }

    fn scsi_task(&mut self, itt: u32) -> Option<&mut ScsiTask> {
        match self.tasks.get_mut(&itt) {
            Some(Task {
                kind: TaskKind::Scsi(t),
                ..
            }) => Some(t),
            _ => None,
        }
    }

    /// A Data-In whose data the engine placed (`digest_ok`: its data digest matched, or none
    /// was negotiated).
    ///
    /// A data digest mismatch fails this command only (RFC 7143 §7.8: the initiator discards
    /// the PDU and either asks for it again by SNACK, which needs ErrorRecoveryLevel 1, or
    /// terminates the command with an error). Its header is still used (the stream is in step
    /// only if it is right; header digests guard it): its DataSN and length are counted and
    /// its status, if it carries one, ends the command, with the digest error.
    pub(super) fn on_data_in(
        &mut self,
        r: &wire::data_in::DataInRepr<'_>,
        tag: u32,
        len: u32,
        digest_ok: bool,
    ) {
        self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
        if r.ack {
            return self.fail(ConnectionError::Protocol(Violation::DataInAck { itt: tag }));
        }
        let in_order = self.params.data_pdu_in_order;
        if self.request_unsent(tag) {
            return self.unknown_itt(Opcode::DataIn, tag);
        }
        let Some(task) = self.scsi_task(tag) else {
            return self.fail(ConnectionError::Protocol(Violation::DataInNotRead {
                itt: tag,
            }));
        };
        if task.outcome.is_some() {
            // The engine placed this Data-In before the connection saw it (PDUs that arrive
            // together are placed together), into a buffer whose status was already taken:
            // the data the status vouched for is not to be trusted any more.
            let error = ConnectionError::Protocol(Violation::DataInAfterStatus { itt: tag });
            task.outcome = Some(Err(CommandError::ConnectionLost(Box::new(error.clone()))));
            return self.fail(error);
        }
        if r.data_sn != task.next_data_sn {
            let expected = task.next_data_sn;
            return self.fail(ConnectionError::Protocol(Violation::DataSn {
                itt: tag,
                expected,
                received: r.data_sn,
            }));
        }
        // DataPDUInOrder=Yes: each Data-In starts where the previous one ended (the engine has
        // already refused overlaps and data outside the buffer).
        if in_order && u64::from(r.buffer_offset) != task.data_in {
            let expected = task.data_in;
            return self.fail(ConnectionError::Protocol(Violation::DataOffset {
                itt: tag,
                expected,
                received: r.buffer_offset,
            }));
        }
        if !digest_ok && task.digest_error.is_none() {
            task.digest_error = Some(CommandError::DataDigest {
                itt: tag,
                data_sn: r.data_sn,
                offset: r.buffer_offset,
            });
        }
        task.next_data_sn = task.next_data_sn.wrapping_add(1);
        task.data_in += u64::from(len);
        let (expected_len, data_in, read) = (task.expected_len, task.data_in, task.registered);
        if let Some(s) = r.status {
            if !self.take_stat_sn(Opcode::DataIn, s.stat_sn) {
                return;
            }
            let residual = if s.underflow {
                if s.residual > expected_len {
                    return self.fail(ConnectionError::Protocol(
                        Violation::UnderflowBeyondTransfer {
                            opcode: Opcode::DataIn,
                            itt: tag,
                            residual: s.residual,
                            expected: expected_len,
                        },
                    ));
                }
                Residual::Underflow(s.residual)
            } else if s.overflow {
                Residual::Overflow(s.residual)
            } else {
                Residual::None
            };
            let result = match short_data(read, expected_len, s.status, residual, data_in) {
                Some(e) => Err(e),
                None => Ok(ScsiOutcome {
                    status: s.status,
                    sense: None,
                    sense_data: Vec::new(),
                    residual,
                    data_in,
                }),
            };
            self.finish_scsi(tag, result, Opcode::DataIn);
        }
    }

    fn on_r2t(&mut self, r: &wire::r2t::R2tRepr) {
        let max_burst = self.params.max_burst_len;
        let tag = r.itt.0;
        if self.request_unsent(tag) {
            return self.unknown_itt(Opcode::R2t, tag);
        }
        let Some(task) = self.scsi_task(tag) else {
            return self.unknown_itt(Opcode::R2t, tag);
        };
        let Some(write_len) = task.write.as_ref().map(SgBuffer::len) else {
            return self.fail(ConnectionError::Protocol(Violation::R2tNotWrite {
                itt: tag,
            }));
        };
        if task.outcome.is_some() {
            return self.fail(ConnectionError::Protocol(Violation::R2tAfterStatus {
                itt: tag,
            }));
        }
        if r.r2t_sn != task.next_r2t_sn {
            let expected = task.next_r2t_sn;
            return self.fail(ConnectionError::Protocol(Violation::R2tSn {
                itt: tag,
                expected,
                received: r.r2t_sn,
            }));
        }
        let end = u64::from(r.buffer_offset) + u64::from(r.desired_len);
        if r.desired_len == 0 || r.desired_len > max_burst || end > write_len {
            return self.fail(ConnectionError::Protocol(Violation::R2tOutsideWrite {
                itt: tag,
                offset: r.buffer_offset,
                len: r.desired_len,
                write_len,
                max_burst,
            }));
        }
        // MaxOutstandingR2T: an R2T is outstanding until the last Data-Out of its sequence
        // has left (poll_transmit handed it out).
        let max = self.params.max_outstanding_r2t;
        if self.r2ts_outstanding(tag) >= max {
            return self.fail(ConnectionError::Protocol(Violation::TooManyR2ts {
                itt: tag,
                r2t_sn: r.r2t_sn,
                max,
            }));
        }
        let Some(task) = self.scsi_task(tag) else {
            return;
        };
        task.next_r2t_sn = task.next_r2t_sn.wrapping_add(1);
        let lun = task.lun;
        self.send_data_out(tag, lun, r.ttt, u64::from(r.buffer_offset), end);
    }

    /// R2Ts of task `tag` whose sequence's last Data-Out (F bit, a TTT from the R2T) is
    /// still queued: not handed out by poll_transmit yet.
    fn r2ts_outstanding(&self, tag: u32) -> u32 {
        let n = self
            .tx
            .iter()
            .filter(|p| {
                let h = &p.header;
                matches!(p.payload, TxPayload::Write { tag: t, .. } if t == tag)
                    && h[0] & 0x3F == Opcode::DataOut as u8
                    && h[1] & 0x80 != 0
                    && h[20..24] != Ttt::RESERVED.0.to_be_bytes()
            })
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Records the outcome of a SCSI command (`opcode` carried it); it completes once its
    /// buffer is released. A Data-In digest error seen earlier overrides the status.
    fn finish_scsi(&mut self, tag: u32, result: Result<ScsiOutcome, CommandError>, opcode: Opcode) {
        let Some(task) = self.scsi_task(tag) else {
            return;
        };
        if task.outcome.is_some() {
            return self.fail(ConnectionError::Protocol(Violation::SecondStatus {
                opcode,
                itt: tag,
            }));
        }
        let result = match task.digest_error.take() {
            Some(e) => Err(e),
            None => result,
        };
        task.outcome = Some(result);
        if task.registered {
            if !task.tearing_down {
                task.tearing_down = true;
                // Registered and not torn down yet, so this succeeds; Released follows.
                let _ = self.engine.teardown(Tag(tag));
            }
        } else {
            self.complete(tag, None);
        }
    }

    pub(super) fn on_released(&mut self, tag: u32, buffer: SgBuffer) {
        self.complete(tag, Some(buffer));
    }

    pub(super) fn complete(&mut self, tag: u32, buffer: Option<SgBuffer>) {
        let Some(task) = self.tasks.remove(&tag) else {
            return;
        };
        // Data-Outs still queued for the task must not go out: the tag is free again, and the
        // next write that takes it would send them with its own buffer.
        self.tx
            .retain(|p| !matches!(p.payload, TxPayload::Write { tag: t, .. } if t == tag));
        self.free_task_tag(tag);
        if let TaskKind::Scsi(t) = task.kind {
            self.events.push_back(Event::Completed(Completion {
                id: task.id,
                result: t.outcome.unwrap_or_else(|| {
                    Err(CommandError::ConnectionLost(Box::new(
                        self.failure.clone().unwrap_or(ConnectionError::PeerClosed),
                    )))
                }),
                buffer: buffer.or(t.write).or(t.empty_read),
            }));
        }
    }
}

/// The error a read's GOOD status earns when its Data-In did not deliver every byte the status
/// vouches for: the Expected Data Transfer Length less an underflow residual.
fn short_data(
    read: bool,
    expected_len: u32,
    status: u8,
    residual: Residual,
    data_in: u64,
) -> Option<CommandError> {
    if !read || status != 0 {
        return None;
    }
    let underflow = match residual {
        Residual::Underflow(n) => u64::from(n),
        _ => 0,
    };
    let expected = u64::from(expected_len).saturating_sub(underflow);
    (data_in != expected).then_some(CommandError::ShortData {
        expected,
        received: data_in,
    })
}

fn parse_send_targets(text: &[u8]) -> Option<Vec<DiscoveredTarget>> {
    let mut out: Vec<DiscoveredTarget> = Vec::new();
    for pair in TextIter::new(text) {
        let (k, v) = pair.ok()?;
        match k {
            "TargetName" => out.push(DiscoveredTarget {
                name: v.to_string(),
                addresses: Vec::new(),
            }),
            "TargetAddress" => out.last_mut()?.addresses.push(v.to_string()),
            _ => {}
        }
    }
    Some(out)
}

/// The opcode of a decoded PDU.
fn pdu_opcode(pdu: &Pdu<'_>) -> Opcode {
    match pdu {
        Pdu::NopOut(_) => Opcode::NopOut,
        Pdu::ScsiCommand(_) => Opcode::ScsiCommand,
        Pdu::TaskMgmtRequest(_) => Opcode::TaskMgmtRequest,
        Pdu::LoginRequest(_) => Opcode::LoginRequest,
        Pdu::TextRequest(_) => Opcode::TextRequest,
        Pdu::DataOut(_) => Opcode::DataOut,
        Pdu::LogoutRequest(_) => Opcode::LogoutRequest,
        Pdu::SnackRequest(_) => Opcode::SnackRequest,
        Pdu::NopIn(_) => Opcode::NopIn,
        Pdu::ScsiResponse(_) => Opcode::ScsiResponse,
        Pdu::TaskMgmtResponse(_) => Opcode::TaskMgmtResponse,
        Pdu::LoginResponse(_) => Opcode::LoginResponse,
        Pdu::TextResponse(_) => Opcode::TextResponse,
        Pdu::DataIn(_) => Opcode::DataIn,
        Pdu::LogoutResponse(_) => Opcode::LogoutResponse,
        Pdu::R2t(_) => Opcode::R2t,
        Pdu::AsyncMessage(_) => Opcode::AsyncMessage,
        Pdu::Reject(_) => Opcode::Reject,
    }
}
