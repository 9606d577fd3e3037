//! The receive side of a [`Connection`]: the engine's events turned into completions, R2T
//! answers and, for a misbehaving controller, the termination its violation calls for.

use ulp_ddp_core::{DataError, DdpBackend, Event as EngineEvent, SgBuffer, Tag};

use super::{
    Cmd, Completion, Connection, ConnectionError, Event, Negotiated, State, Tx, Violation,
};
use crate::nvme::Status;
use crate::plugin::ControllerPdu;
use crate::wire::{
    Cqe, Digests, Error as WireError, FatalErrorStatus, MAX_TERM_REQ_DATA, R2tRepr,
    TermReqDirection, TermReqRepr,
};

impl<B: DdpBackend> Connection<B> {
    pub(super) fn process(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            if self.state == State::Closed {
                if let EngineEvent::Released {
                    tag,
                    buffer,
                    offloaded,
                } = event
                {
                    self.release(tag, buffer, offloaded);
                }
                continue;
            }
            match event {
                EngineEvent::Control { header, data, .. } => self.on_control(header, &data),
                EngineEvent::Data {
                    header,
                    tag,
                    len,
                    digest,
                    ..
                } => self.on_data(header, tag, len, digest.is_ok()),
                EngineEvent::Released {
                    tag,
                    buffer,
                    offloaded,
                } => self.release(tag, buffer, offloaded),
                EngineEvent::Error(e) => {
                    let cid = e.tag().0 as u16;
                    let v = match e {
                        DataError::OutOfRange { .. } => Violation::DataOutOfRange(cid),
                        DataError::Duplicate { .. } => Violation::DuplicateData(cid),
                        DataError::TooFragmented { .. } => Violation::TooFragmented(cid),
                        // No buffer registered under this CID: say why.
                        _ => match self.cmd(cid) {
                            Some(c) if c.done.is_none() && !c.sent => Violation::NotSent {
                                pdu: "C2HData",
                                cid,
                            },
                            Some(c) if c.done.is_none() && c.read_len.is_none() => {
                                Violation::DataForNonRead(cid)
                            }
                            _ => Violation::UnknownCid {
                                pdu: "C2HData",
                                cid,
                            },
                        },
                    };
                    self.violation(v, None);
                }
                _ => {}
            }
        }
    }

    pub(super) fn on_engine_fatal(&mut self, e: ulp_ddp_core::Error<WireError>) {
        use ulp_ddp_core::Error as E;
        let fes = match e {
            E::Protocol(w) => {
                let fes = w
                    .fatal_error()
                    .unwrap_or((FatalErrorStatus::InvalidHeaderField, 0));
                return self.fail(ConnectionError::Wire(w), Some(fes), None);
            }
            E::HeaderDigest { received, .. } => {
                Some((FatalErrorStatus::HeaderDigestError, received))
            }
            E::HeaderTooLong { .. } | E::HeaderTooShort { .. } => {
                Some((FatalErrorStatus::InvalidHeaderField, 2))
            }
            E::BadLayout(_) => Some((FatalErrorStatus::InvalidHeaderField, 3)),
            E::ControlTooLarge { .. } => Some((FatalErrorStatus::InvalidHeaderField, 4)),
            _ => None,
        };
        self.fail(ConnectionError::Engine(e), fes, None);
    }

    fn violation(&mut self, v: Violation, pdu: Option<&ControllerPdu>) {
        let fes = v.fatal_error();
        self.fail(ConnectionError::Protocol(v), Some(fes), pdu);
    }

    /// Ends the connection: queues an H2CTermReq when `fes` is given (carrying the header of
    /// the PDU in error, when there is one), aborts every command (completions after teardown)
    /// and reports `error`.
    pub(super) fn fail(
        &mut self,
        error: ConnectionError,
        fes: Option<(FatalErrorStatus, u32)>,
        pdu: Option<&ControllerPdu>,
    ) {
        if self.state == State::Closed {
            return;
        }
        let header = pdu.map_or_else(Vec::new, |p| {
            let digests = self.negotiated.map_or(Digests::NONE, |n| n.digests);
            p.header_bytes(digests, self.config.hpda)
        });
        self.state = State::Closed;
        self.tx.clear();
        if let Some((fes, fei)) = fes {
            let repr = TermReqRepr::new(TermReqDirection::HostToController, fes, fei);
            let mut pdu = Vec::new();
            let data = &header[..header.len().min(MAX_TERM_REQ_DATA)];
            if repr.emit(&mut pdu, data).is_ok() {
                self.tx.push_back(Tx::Raw(pdu));
            }
        }
        for slot in 0..self.cmds.len() {
            let Some(cmd) = self.cmds[slot].as_mut() else {
                continue;
            };
            if cmd.done.is_none() {
                cmd.done = Some((Status::ABORTED, 0, false));
                let cid = cmd.cid;
                if cmd.is_registered() {
                    // Registered, not finished: the teardown succeeds.
                    let _ = self.engine.teardown(Tag(u32::from(cid)));
                } else {
                    self.finish(cid, None, false);
                }
            }
        }
        self.process();
        self.events.push_back(Event::Closed(error));
    }

    fn on_control(&mut self, pdu: ControllerPdu, data: &[u8]) {
        match (pdu, self.state) {
            (ControllerPdu::IcResp(r), State::AwaitIcResp) => {
                if r.digests != self.config.digests {
                    return self.violation(
                        Violation::DigestsRefused {
                            requested: self.config.digests,
                            enabled: r.digests,
                        },
                        Some(&pdu),
                    );
                }
                let n = Negotiated {
                    digests: r.digests,
                    cpda: r.cpda,
                    maxh2cdata: r.maxh2cdata,
                };
                self.engine.protocol_mut().set_digests(r.digests);
                self.negotiated = Some(n);
                self.state = State::Ready;
                if let Some(interval) = self.config.keep_alive {
                    // Due one interval after the next time the connection learns the time.
                    self.keep_alive.start(interval);
                }
                self.events.push_back(Event::Connected(n));
            }
            (ControllerPdu::TermReq(r), _) => {
                let _ = data;
                // No H2CTermReq in answer to a C2HTermReq: the connection just closes.
                self.fail(
                    ConnectionError::PeerTerminated {
                        fes: r.fes,
                        fei: r.fei,
                    },
                    None,
                    None,
                );
            }
            (ControllerPdu::CapsuleResp(r), State::Ready) => self.on_response(r.cqe, &pdu),
            (ControllerPdu::R2t(r), State::Ready) => self.on_r2t(r, &pdu),
            _ => self.violation(Violation::UnexpectedPdu(pdu.pdu_type().into()), Some(&pdu)),
        }
    }

    /// The unfinished command `cid` names.
    fn cmd_mut(&mut self, cid: u16) -> Option<&mut Cmd> {
        self.cmd_entry(cid).filter(|c| c.done.is_none())
    }

    /// The command a controller PDU names: outstanding and sent, or the violation it is.
    fn answered(&mut self, cid: u16, pdu: &'static str) -> Result<&mut Cmd, Violation> {
        match self.cmd_mut(cid) {
            None => Err(Violation::UnknownCid { pdu, cid }),
            Some(c) if !c.sent => Err(Violation::NotSent { pdu, cid }),
            Some(c) => Ok(c),
        }
    }

    fn on_response(&mut self, cqe: Cqe, pdu: &ControllerPdu) {
        let cmd = match self.answered(cqe.cid, "CapsuleResp") {
            Ok(cmd) => cmd,
            Err(v) => return self.violation(v, Some(pdu)),
        };
        let mut status = Status::from_cqe(cqe.status);
        if cmd.internal && !status.is_success() {
            // Linux resets the controller when Keep Alive fails.
            return self.fail(ConnectionError::KeepAliveFailed(status), None, None);
        }
        if status.is_success() && cmd.digest_error {
            status = Status::DATA_TRANSFER_ERROR;
        }
        if status.is_success() && cmd.read_len.is_some_and(|l| cmd.received != l) {
            // Short data-in: the buffer does not hold what the command asked for.
            status = Status::DATA_TRANSFER_ERROR;
        }
        let result = u64::from(cqe.dw0) | (u64::from(cqe.dw1) << 32);
        self.complete(cqe.cid, status, result, false);
    }

    fn on_r2t(&mut self, r: R2tRepr, pdu: &ControllerPdu) {
        let cid = r.cccid;
        let maxh2c = self.negotiated.map_or(4096, |n| n.maxh2cdata).max(4);
        let cmd = match self.answered(cid, "R2T") {
            Ok(cmd) => cmd,
            Err(v) => return self.violation(v, Some(pdu)),
        };
        let Some(total) = cmd
            .write
            .as_ref()
            .filter(|_| !cmd.in_capsule)
            .map(SgBuffer::len)
        else {
            return self.violation(Violation::NotAWrite(cid), Some(pdu));
        };
        let v = if cmd.r2t_active {
            Some(Violation::R2tLimit(cid))
        } else if r.r2tl == 0 {
            Some(Violation::EmptyR2t(cid))
        } else if r.r2to != cmd.next_r2to {
            Some(Violation::R2tOffset {
                cid,
                expected: cmd.next_r2to,
                got: r.r2to,
            })
        } else if r
            .r2to
            .checked_add(r.r2tl)
            .is_none_or(|end| u64::from(end) > total)
        {
            Some(Violation::R2tOutOfRange(cid))
        } else {
            None
        };
        if let Some(v) = v {
            return self.violation(v, Some(pdu));
        }
        let end = r.r2to + r.r2tl;
        cmd.r2t_active = true;
        cmd.next_r2to = end;
        let mut offset = r.r2to;
        while offset < end {
            let len = (end - offset).min(maxh2c);
            self.tx.push_back(Tx::H2c {
                cid,
                ttag: r.ttag,
                offset,
                len,
                last: offset + len == end,
            });
            offset += len;
        }
    }

    fn on_data(&mut self, pdu: ControllerPdu, tag: Tag, len: u32, digest_ok: bool) {
        let cid = tag.0 as u16;
        let ControllerPdu::C2hData(r) = pdu else {
            // The plugin places only C2HData.
            return self.violation(Violation::UnexpectedPdu(pdu.pdu_type().into()), Some(&pdu));
        };
        let cmd = match self.answered(cid, "C2HData") {
            Ok(cmd) => cmd,
            Err(v) => return self.violation(v, Some(&pdu)),
        };
        if cmd.read_len.is_none() {
            return self.violation(Violation::DataForNonRead(cid), Some(&pdu));
        }
        if cmd.last_seen {
            return self.violation(Violation::DataAfterLast(cid), Some(&pdu));
        }
        cmd.received += u64::from(len);
        if !digest_ok {
            // Like Linux: the command fails with Data Transfer Error, the connection stays.
            cmd.digest_error = true;
        }
        if r.last_pdu {
            cmd.last_seen = true;
        }
        if r.success {
            let status = if cmd.digest_error || cmd.read_len != Some(cmd.received) {
                Status::DATA_TRANSFER_ERROR
            } else {
                Status::SUCCESS
            };
            self.complete(cid, status, 0, true);
        }
    }

    /// A command is finished: its buffer's teardown starts; the completion follows the release.
    fn complete(&mut self, cid: u16, status: Status, result: u64, by_success: bool) {
        let solicited = self
            .cmd(cid)
            .is_some_and(|c| c.write.is_some() && !c.in_capsule);
        if solicited {
            // H2CData still queued for it goes no more.
            self.tx
                .retain(|t| !matches!(t, Tx::H2c { cid: c, .. } if *c == cid));
        }
        let Some(cmd) = self.cmd_mut(cid) else { return };
        cmd.done = Some((status, result, by_success));
        if cmd.is_registered() {
            // The tag is registered and not finished (done was None), so this succeeds; the
            // release event completes the command.
            let _ = self.engine.teardown(Tag(u32::from(cid)));
        } else {
            self.finish(cid, None, false);
        }
    }

    fn release(&mut self, tag: Tag, buffer: SgBuffer, offloaded: bool) {
        let cid = tag.0 as u16;
        if self.cmd(cid).is_some() {
            self.finish(cid, Some(buffer), offloaded);
        }
    }

    fn finish(&mut self, cid: u16, buffer: Option<SgBuffer>, offloaded: bool) {
        if self.cmd(cid).is_none() {
            return;
        }
        let slot = self.slot(cid);
        let Some(cmd) = self.cmds[slot].take() else {
            return;
        };
        let (status, result, by_success_flag) = cmd.done.unwrap_or((Status::ABORTED, 0, false));
        if cmd.timed_out {
            // Its timeout, if not taken yet, is void now.
            self.events
                .retain(|e| !matches!(e, Event::TimedOut { cid: c, .. } if *c == cid));
        }
        if cmd.internal {
            self.free.push_back(slot as u16);
            return;
        }
        // The CID stays taken until the caller takes this event.
        self.unclaimed += 1;
        self.events.push_back(Event::Completed(Completion {
            cid,
            status,
            result,
            buffer: buffer.or(cmd.write).or(cmd.read),
            offloaded,
            by_success_flag,
        }));
    }
}

impl Cmd {
    /// The command's read buffer is registered with the engine (it went out and has not been
    /// released).
    fn is_registered(&self) -> bool {
        self.read_len.is_some() && self.read.is_none() && self.sent
    }
}
