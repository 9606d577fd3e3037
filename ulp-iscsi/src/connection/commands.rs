//! Commands the initiator sends: SCSI commands (with immediate and unsolicited data), text
//! requests (SendTargets), pings, logout; and the queue of commands waiting for the CmdSN
//! window or a free tag.

use ulp_ddp_core::{DdpBackend, Tag};

use super::{
    Command, CommandError, CommandId, Completion, Connection, ConnectionError, Data, Event, Phase,
    Queued, ScsiTask, Task, TaskKind, TxPayload, encode_text,
};
use crate::wire::data_out::DataOutRepr;
use crate::wire::logout::{LogoutReason, LogoutRequestRepr};
use crate::wire::nop::NopOutRepr;
use crate::wire::scsi_cmd::{ScsiCmdRepr, TaskAttr};
use crate::wire::text::TextRequestRepr;
use crate::wire::{self, Itt, Lun, Opcode, Ttt};

impl<B: DdpBackend> Connection<B> {
    /// Submits a SCSI command. It is sent when the CmdSN window and a tag allow; a read's
    /// buffer is registered with the engine just before. The outcome arrives as
    /// [`Event::Completed`] (at once, with [`CommandError::ConnectionLost`], outside full
    /// feature phase).
    pub fn submit(&mut self, cmd: Command) -> CommandId {
        let id = self.new_id();
        if !matches!(self.phase, Phase::FullFeature) {
            let cause = self.failure.clone().unwrap_or(match self.phase {
                Phase::Closed => ConnectionError::LoggedOut,
                _ => ConnectionError::NotReady,
            });
            self.reject_queued(
                Queued::Scsi(id, cmd),
                CommandError::ConnectionLost(Box::new(cause)),
            );
            return id;
        }
        self.queued.push_back(Queued::Scsi(id, cmd));
        self.flush_queued();
        id
    }

    /// Sends SendTargets=All (discovery sessions); the answer arrives as
    /// [`Event::Discovered`].
    ///
    /// # Errors
    ///
    /// [`ConnectionError::NotReady`] outside full feature phase.
    pub fn send_targets(&mut self) -> Result<CommandId, ConnectionError> {
        if self.phase != Phase::FullFeature {
            return Err(ConnectionError::NotReady);
        }
        let id = self.new_id();
        self.queued
            .push_back(Queued::Text(id, encode_text(&[("SendTargets", "All")])));
        self.flush_queued();
        Ok(id)
    }

    /// Sends a ping (immediate NOP-Out); the answer arrives as [`Event::Pong`].
    ///
    /// # Errors
    ///
    /// [`ConnectionError::NotReady`] outside full feature phase, with every tag in use, or
    /// with more data than the target accepts.
    pub fn ping(&mut self, data: Vec<u8>) -> Result<CommandId, ConnectionError> {
        self.send_ping(data, false)
    }

    /// A NOP-Out ping: the caller's, or the connection's own (`internal`: answered silently).
    pub(super) fn send_ping(
        &mut self,
        data: Vec<u8>,
        internal: bool,
    ) -> Result<CommandId, ConnectionError> {
        if self.phase != Phase::FullFeature
            || data.len() > self.params.max_xmit_data_segment_len as usize
        {
            return Err(ConnectionError::NotReady);
        }
        let tag = self
            .free_tags
            .pop_front()
            .ok_or(ConnectionError::NotReady)?;
        let id = self.new_id();
        let repr = NopOutRepr {
            immediate: true,
            lun: Lun::default(),
            itt: Itt(tag),
            ttt: Ttt::RESERVED,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: &[],
        };
        let pushed = self.push_pdu(
            Opcode::NopOut,
            |b, d, parts| wire::emit_header_parts(&repr, b, d, parts),
            TxPayload::Owned(data),
        );
        if let Err(e) = pushed {
            self.free_tags.push_back(tag);
            return Err(e);
        }
        self.tasks.insert(
            tag,
            Task {
                id,
                kind: TaskKind::Nop { internal },
            },
        );
        Ok(id)
    }

    /// Starts a logout (close the session). Commands still outstanding complete first at the
    /// target; [`Event::Closed`] with [`ConnectionError::LoggedOut`] follows the Logout
    /// Response.
    ///
    /// # Errors
    ///
    /// [`ConnectionError::NotReady`] outside full feature phase.
    pub fn logout(&mut self) -> Result<CommandId, ConnectionError> {
        if self.phase != Phase::FullFeature {
            return Err(ConnectionError::NotReady);
        }
        let tag = self
            .free_tags
            .pop_front()
            .ok_or(ConnectionError::NotReady)?;
        let id = self.new_id();
        let repr = LogoutRequestRepr {
            immediate: true,
            reason: LogoutReason::CloseSession,
            itt: Itt(tag),
            cid: 0,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        if let Err(e) = self.push_pdu(
            Opcode::LogoutRequest,
            |b, d, parts| wire::emit_header_parts(&repr, b, d, parts),
            TxPayload::None,
        ) {
            self.free_tags.push_back(tag);
            return Err(e);
        }
        self.tasks.insert(
            tag,
            Task {
                id,
                kind: TaskKind::Logout,
            },
        );
        self.phase = Phase::LoggingOut;
        self.ping_timer.stop();
        Ok(id)
    }

    pub(super) fn reject_queued(&mut self, q: Queued, error: CommandError) {
        match q {
            Queued::Scsi(id, cmd) => {
                self.events.push_back(Event::Completed(Completion {
                    id,
                    result: Err(error),
                    buffer: cmd.data.into_buffer(),
                }));
            }
            Queued::Text(..) | Queued::TextContinue { .. } => {}
        }
    }

    /// Sends queued non-immediate PDUs while the CmdSN window allows (RFC 7143 §4.2.2.1:
    /// CmdSN from ExpCmdSN to MaxCmdSN): new commands and text requests also need a free
    /// tag; a text continuation has its task's.
    pub(super) fn flush_queued(&mut self) {
        while self.phase == Phase::FullFeature && self.window_open() {
            match self.queued.front() {
                None => return,
                Some(Queued::TextContinue { .. }) => {
                    if let Some(Queued::TextContinue { tag, ttt }) = self.queued.pop_front() {
                        self.send_text(tag, ttt, Vec::new());
                    }
                }
                Some(_) => {
                    let Some(tag) = self.free_tags.pop_front() else {
                        return;
                    };
                    match self.queued.pop_front() {
                        Some(Queued::Scsi(id, cmd)) => self.start_scsi(id, cmd, tag),
                        Some(Queued::Text(id, text)) => self.start_text(id, text, tag),
                        _ => self.free_tags.push_front(tag),
                    }
                }
            }
        }
    }

    fn start_text(&mut self, id: CommandId, text: Vec<u8>, tag: u32) {
        self.tasks.insert(
            tag,
            Task {
                id,
                kind: TaskKind::Text(Vec::new()),
            },
        );
        self.send_text(tag, Ttt::RESERVED, text);
    }

    /// Sends a Text Request of task `tag` with the next CmdSN; only from
    /// [`flush_queued`](Self::flush_queued), which checked the window.
    fn send_text(&mut self, tag: u32, ttt: Ttt, text: Vec<u8>) {
        let repr = TextRequestRepr {
            immediate: false,
            final_: true,
            cont: false,
            lun: Lun::default(),
            itt: Itt(tag),
            ttt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: &[],
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        if let Err(e) = self.push_pdu(
            Opcode::TextRequest,
            |b, d, parts| wire::emit_header_parts(&repr, b, d, parts),
            TxPayload::Owned(text),
        ) {
            self.fail(e);
        }
    }

    fn start_scsi(&mut self, id: CommandId, cmd: Command, tag: u32) {
        let Command { lun, cdb, data } = cmd;
        let invalid = |data: Data, why: &'static str| {
            (
                Queued::Scsi(id, Command { lun, cdb, data }),
                CommandError::Invalid(why),
            )
        };
        let mut empty_read = None;
        let (expected_len, write, registered) = match data {
            Data::None => (0u32, None, false),
            Data::Read(buffer) if buffer.is_empty() => {
                // Nothing to register, but the buffer is still the caller's to get back.
                empty_read = Some(buffer);
                (0, None, false)
            }
            Data::Read(buffer) => {
                let Ok(len) = u32::try_from(buffer.len()) else {
                    self.free_tags.push_back(tag);
                    let (q, e) = invalid(Data::Read(buffer), "buffer over 4 GiB");
                    return self.reject_queued(q, e);
                };
                // The buffer is the engine's from here until Event::Released.
                if let Err((_, buffer)) = self.engine.setup(Tag(tag), buffer) {
                    self.free_tags.push_back(tag);
                    let (q, e) = invalid(Data::Read(buffer), "tag busy");
                    return self.reject_queued(q, e);
                }
                (len, None, true)
            }
            Data::Write(buffer) => {
                let Ok(len) = u32::try_from(buffer.len()) else {
                    self.free_tags.push_back(tag);
                    let (q, e) = invalid(Data::Write(buffer), "write over 4 GiB");
                    return self.reject_queued(q, e);
                };
                (len, Some(buffer), false)
            }
        };
        let p = &self.params;
        let write_len = u64::from(expected_len) * u64::from(write.is_some());
        let immediate = if p.immediate_data {
            write_len
                .min(u64::from(p.first_burst_len))
                .min(u64::from(p.max_xmit_data_segment_len))
        } else {
            0
        };
        let unsolicited_end = if p.initial_r2t {
            immediate
        } else {
            write_len.min(u64::from(p.first_burst_len))
        };
        let has_write = write.is_some();
        // The task first: the PDUs below borrow its write buffer when they go out.
        self.tasks.insert(
            tag,
            Task {
                id,
                kind: TaskKind::Scsi(Box::new(ScsiTask {
                    lun,
                    expected_len,
                    write,
                    registered,
                    next_data_sn: 0,
                    next_r2t_sn: 0,
                    data_in: 0,
                    outcome: None,
                    tearing_down: false,
                    cmd_sn: self.cmd_sn,
                    digest_error: None,
                    empty_read,
                })),
            },
        );
        let repr = ScsiCmdRepr {
            immediate: false,
            final_: unsolicited_end <= immediate,
            read: registered,
            write: has_write,
            attr: TaskAttr::Simple,
            lun,
            itt: Itt(tag),
            expected_len,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: cdb.bytes,
            ext_cdb: &[],
            bidi_read_len: None,
            data: &[],
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        let payload = if immediate > 0 {
            TxPayload::Write {
                tag,
                offset: 0,
                len: immediate,
            }
        } else {
            TxPayload::None
        };
        if let Err(e) = self.push_pdu(
            Opcode::ScsiCommand,
            |b, d, parts| wire::emit_header_parts(&repr, b, d, parts),
            payload,
        ) {
            return self.fail(e);
        }
        if unsolicited_end > immediate {
            self.send_data_out(
                tag,
                Lun::default(),
                Ttt::RESERVED,
                immediate,
                unsolicited_end,
            );
        }
    }

    /// Queues Data-Out PDUs carrying bytes `from..to` of task `tag`'s write buffer, each
    /// within the target's MaxRecvDataSegmentLength, DataSN from 0, F on the last.
    pub(super) fn send_data_out(&mut self, tag: u32, lun: Lun, ttt: Ttt, from: u64, to: u64) {
        let max = u64::from(self.params.max_xmit_data_segment_len).max(512);
        let mut at = from;
        let mut data_sn = 0u32;
        while at < to {
            let end = (at + max).min(to);
            let repr = DataOutRepr {
                final_: end == to,
                lun,
                itt: Itt(tag),
                ttt,
                exp_stat_sn: self.exp_stat_sn,
                data_sn,
                // `at` < `to` <= the write length, which fits in u32.
                buffer_offset: at as u32,
                data: &[],
            };
            if let Err(e) = self.push_pdu(
                Opcode::DataOut,
                |b, d, parts| wire::emit_header_parts(&repr, b, d, parts),
                TxPayload::Write {
                    tag,
                    offset: at,
                    len: end - at,
                },
            ) {
                return self.fail(e);
            }
            data_sn = data_sn.wrapping_add(1);
            at = end;
        }
    }
}
