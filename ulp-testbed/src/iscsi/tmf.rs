//! Task management (RFC 7143 §11.5, §11.6): ABORT TASK and LOGICAL UNIT RESET of held reads
//! and running writes, answered (or not) as [`TmfPolicy`] says. After "Function complete" the
//! target sends nothing more for the tasks it ended.

use std::io;
use std::sync::PoisonError;

use ulp_iscsi::wire::Lun;
use ulp_iscsi::wire::task_mgmt::{TmfFunction, TmfRequestRepr, TmfResponseRepr, response};

use super::TmfPolicy;
use super::session::{Session, bad};

impl Session<'_> {
    pub(super) fn on_tmf(&mut self, r: &TmfRequestRepr) -> io::Result<()> {
        if let Some(log) = &self.tmf_log {
            log.lock().unwrap_or_else(PoisonError::into_inner).push(*r);
        }
        if !r.immediate {
            // A non-immediate request takes its CmdSN like any command.
            self.check_cmd_sn_of_tmf(r.cmd_sn)?;
        }
        let abort = r.function == TmfFunction::AbortTask;
        let code = match (self.config.tmf, abort) {
            (TmfPolicy::IgnoreAll, _) | (TmfPolicy::IgnoreAbortTask, true) => return Ok(()),
            (TmfPolicy::RejectAll, _) | (TmfPolicy::RejectAbortTask, true) => response::REJECTED,
            _ => match r.function {
                TmfFunction::AbortTask => self.abort_task(r),
                TmfFunction::LogicalUnitReset => self.lun_reset(r.lun),
                _ => response::NOT_SUPPORTED,
            },
        };
        let rsp = TmfResponseRepr {
            response: code,
            itt: r.itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
        };
        let mut b = vec![0u8; rsp.buffer_len(self.digests)];
        rsp.emit(&mut b, self.digests).map_err(|_| bad())?;
        self.send(&b)
    }

    fn check_cmd_sn_of_tmf(&mut self, cmd_sn: u32) -> io::Result<()> {
        if cmd_sn != self.exp_cmd_sn {
            return Err(bad());
        }
        self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
        Ok(())
    }

    /// RFC 7143 §11.5.1: the referenced task is ended; one the target does not hold is "Task
    /// does not exist" unless its RefCmdSN lies in the window before the request's CmdSN (the
    /// command is then considered received, and ended: "Function complete").
    fn abort_task(&mut self, r: &TmfRequestRepr) -> u8 {
        let rtt = r.ref_task_tag.0;
        if let Some(&(cmd_sn, lun)) = self.held.get(&rtt) {
            if cmd_sn != r.ref_cmd_sn || lun != r.lun {
                return response::NO_TASK;
            }
            self.held.remove(&rtt);
            return response::COMPLETE;
        }
        if self.writes.remove(&rtt).is_some() {
            self.aborted.insert(rtt);
            return response::COMPLETE;
        }
        let in_window = ulp_iscsi::serial::le(self.exp_cmd_sn, r.ref_cmd_sn)
            && ulp_iscsi::serial::lt(r.ref_cmd_sn, r.cmd_sn);
        if in_window {
            response::COMPLETE
        } else {
            response::NO_TASK
        }
    }

    /// Every held read and running write on `lun` ends.
    fn lun_reset(&mut self, lun: Lun) -> u8 {
        if lun != Lun::single_level(self.config.lun) {
            return response::NO_LUN;
        }
        self.held.retain(|_, (_, l)| *l != lun);
        let ended: Vec<u32> = self.writes.keys().copied().collect();
        for itt in ended {
            self.writes.remove(&itt);
            self.aborted.insert(itt);
        }
        response::COMPLETE
    }
}
