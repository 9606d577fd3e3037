//! WRITE commands: immediate and unsolicited data, R2Ts within MaxBurstLength, checking each
//! Data-Out PDU, and committing the data to the LUN once all of it is in.

use std::io;
use std::sync::PoisonError;

use ulp_iscsi::wire::data_in::DataInRepr;
use ulp_iscsi::wire::r2t::R2tRepr;
use ulp_iscsi::wire::scsi_cmd::ScsiCmdRepr;
use ulp_iscsi::wire::{Itt, Lun, Ttt};

use super::Misbehave;
use super::session::{Session, bad};

pub(super) struct WriteTask {
    lun: Lun,
    offset: u64,
    buf: Vec<u8>,
    got: u64,
    /// Unsolicited data may still come (command without F).
    unsolicited_open: bool,
    unsolicited_sn: u32,
    /// Outstanding R2T: TTT, offset, length, received, next DataSN.
    r2t: Option<(u32, u32, u32, u32, u32)>,
    next_r2t_offset: u32,
    r2t_sn: u32,
}

impl Session<'_> {
    pub(super) fn start_write(
        &mut self,
        r: &ScsiCmdRepr<'_>,
        off: u64,
        len: u64,
    ) -> io::Result<()> {
        if self.config.misbehave == Misbehave::DataInForWrite {
            let repr = DataInRepr {
                final_: true,
                ack: false,
                status: None,
                lun: Lun::default(),
                itt: r.itt,
                ttt: Ttt::RESERVED,
                exp_cmd_sn: self.exp_cmd_sn,
                max_cmd_sn: self.max_cmd_sn(),
                data_sn: 0,
                buffer_offset: 0,
                data: &[0u8; 512],
            };
            return self.emit_data_in(&repr, |_| {});
        }
        let imm = r.data.len();
        if imm > 0 && (!self.immediate_data || imm > self.first_burst as usize || imm as u64 > len)
        {
            return Err(bad());
        }
        let mut task = WriteTask {
            lun: r.lun,
            offset: off,
            buf: vec![0u8; len as usize],
            got: imm as u64,
            unsolicited_open: !r.final_,
            unsolicited_sn: 0,
            r2t: None,
            next_r2t_offset: 0,
            r2t_sn: 0,
        };
        task.buf[..imm].copy_from_slice(r.data);
        if task.unsolicited_open && self.initial_r2t {
            return Err(bad());
        }
        task.next_r2t_offset = if self.initial_r2t {
            imm as u32
        } else {
            (len.min(u64::from(self.first_burst))) as u32
        }
        .max(imm as u32);
        self.writes.insert(r.itt.0, task);
        self.advance_write(r.itt.0)
    }

    fn advance_write(&mut self, itt: u32) -> io::Result<()> {
        let Some(task) = self.writes.get_mut(&itt) else {
            return Ok(());
        };
        let total = task.buf.len() as u64;
        if task.unsolicited_open || task.r2t.is_some() {
            return Ok(());
        }
        if task.got >= total && u64::from(task.next_r2t_offset) >= total {
            let task = self.writes.remove(&itt).ok_or_else(bad)?;
            {
                let mut d = self.disk.lock().unwrap_or_else(PoisonError::into_inner);
                let o = task.offset as usize;
                d[o..o + task.buf.len()].copy_from_slice(&task.buf);
            }
            return self.status(Itt(itt), 0, None, None);
        }
        let offset = task.next_r2t_offset;
        let mut desired = ((total - u64::from(offset)).min(u64::from(self.max_burst))) as u32;
        let ttt = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1);
        task.r2t = Some((ttt, offset, desired, 0, 0));
        task.next_r2t_offset = offset + desired;
        let r2t_sn = task.r2t_sn;
        task.r2t_sn += 1;
        let lun = task.lun;
        if self.config.misbehave == Misbehave::R2tBeyondWrite {
            desired += 4096;
        }
        let repr = R2tRepr {
            lun,
            itt: Itt(itt),
            ttt: Ttt(ttt),
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            r2t_sn,
            buffer_offset: offset,
            desired_len: desired,
        };
        let mut b = vec![0u8; repr.buffer_len(self.digests)];
        repr.emit(&mut b, self.digests).map_err(|_| bad())?;
        self.send(&b)
    }

    pub(super) fn on_data_out(
        &mut self,
        r: &ulp_iscsi::wire::data_out::DataOutRepr<'_>,
    ) -> io::Result<()> {
        if self.aborted.contains(&r.itt.0) {
            // Data-Out the initiator sent before it learnt that task management ended the
            // write: discarded.
            return Ok(());
        }
        let (mrdsl, first_burst) = (self.config.max_recv_data_segment_len, self.first_burst);
        let task = self.writes.get_mut(&r.itt.0).ok_or_else(bad)?;
        if r.data.len() > mrdsl as usize {
            return Err(bad());
        }
        let off = r.buffer_offset as usize;
        let end = off.checked_add(r.data.len()).ok_or_else(bad)?;
        if r.ttt == Ttt::RESERVED {
            if !task.unsolicited_open
                || r.data_sn != task.unsolicited_sn
                || end > first_burst as usize
            {
                return Err(bad());
            }
            task.unsolicited_sn += 1;
            if r.final_ {
                task.unsolicited_open = false;
            }
        } else {
            let Some((ttt, o, len, got, sn)) = task.r2t.as_mut() else {
                return Err(bad());
            };
            if r.ttt.0 != *ttt
                || r.data_sn != *sn
                || off != (*o + *got) as usize
                || end > (*o + *len) as usize
                || r.lun != task.lun
            {
                return Err(bad());
            }
            *got += r.data.len() as u32;
            *sn += 1;
            let done = *got == *len;
            if r.final_ != done {
                return Err(bad());
            }
            if done {
                task.r2t = None;
            }
        }
        let dst = task.buf.get_mut(off..end).ok_or_else(bad)?;
        dst.copy_from_slice(r.data);
        task.got += r.data.len() as u64;
        self.advance_write(r.itt.0)
    }
}
