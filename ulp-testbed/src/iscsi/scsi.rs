//! SCSI commands: status and sense, the commands the RAM LUN serves, and reads sent as Data-In
//! PDUs (where most of [`Misbehave`]'s violations are applied).

use std::io;
use std::sync::PoisonError;

use ulp_iscsi::scsi::{Sense, op};
use ulp_iscsi::wire::bhs::BHS_LEN;
use ulp_iscsi::wire::data_in::{DataInRepr, DataInStatus};
use ulp_iscsi::wire::reject::RejectReason;
use ulp_iscsi::wire::scsi_cmd::ScsiCmdRepr;
use ulp_iscsi::wire::scsi_rsp::ScsiRspRepr;
use ulp_iscsi::wire::{Itt, Lun, Ttt};

use super::Misbehave;
use super::session::{Session, bad};

impl Session<'_> {
    pub(super) fn status(
        &mut self,
        itt: Itt,
        status: u8,
        sense: Option<Sense>,
        residual: Option<(bool, u32)>,
    ) -> io::Result<()> {
        let sense_bytes = sense.map(Sense::to_fixed);
        let rsp = ScsiRspRepr {
            bidi_overflow: false,
            bidi_underflow: false,
            overflow: residual.is_some_and(|(u, _)| !u),
            underflow: residual.is_some_and(|(u, _)| u),
            response: 0,
            status,
            itt,
            snack_tag: 0,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            exp_data_sn: 0,
            bidi_residual: 0,
            residual: residual.map_or(0, |(_, n)| n),
            sense: sense_bytes.as_ref().map_or(&[][..], |s| &s[..]),
            response_data: &[],
        };
        let mut b = vec![0u8; rsp.buffer_len(self.digests)];
        rsp.emit(&mut b, self.digests).map_err(|_| bad())?;
        self.send(&b)
    }

    fn check(&mut self, itt: Itt, key: u8, asc: u8) -> io::Result<()> {
        self.status(itt, 2, Some(Sense { key, asc, ascq: 0 }), None)
    }

    fn blocks(&self) -> u64 {
        self.config.size / u64::from(self.config.block_len.max(1))
    }

    pub(super) fn on_command(&mut self, r: &ScsiCmdRepr<'_>, raw: &[u8]) -> io::Result<()> {
        let cdb = r.cdb;
        let bl = u64::from(self.config.block_len);
        let is_write = matches!(cdb[0], op::WRITE_10 | op::WRITE_16);
        if self.ua && !is_write && !matches!(cdb[0], op::INQUIRY | op::REPORT_LUNS) {
            self.ua = false;
            return self.status(
                r.itt,
                2,
                Some(Sense {
                    key: ulp_iscsi::scsi::UNIT_ATTENTION,
                    asc: 0x29,
                    ascq: 0,
                }),
                None,
            );
        }
        if r.lun != Lun::single_level(self.config.lun)
            && cdb[0] != op::REPORT_LUNS
            && cdb[0] != op::INQUIRY
        {
            return self.check(r.itt, ulp_iscsi::scsi::ILLEGAL_REQUEST, 0x25);
        }
        match cdb[0] {
            op::TEST_UNIT_READY | op::SYNCHRONIZE_CACHE_10 | op::SYNCHRONIZE_CACHE_16 => {
                self.status(r.itt, 0, None, None)
            }
            op::INQUIRY => {
                let mut d = vec![b' '; 36];
                d[0] = 0;
                d[1] = 0;
                d[2] = 6;
                d[3] = 2;
                d[4] = 31;
                d[7] = 0x02;
                d[8..14].copy_from_slice(b"ULPDDP");
                d[16..23].copy_from_slice(b"RAMDISK");
                d[32..36].copy_from_slice(b"0001");
                let alloc = usize::from(u16::from_be_bytes([cdb[3], cdb[4]]));
                d.truncate(alloc);
                self.data_in(r, &d, false)
            }
            op::REPORT_LUNS => {
                let mut d = vec![0, 0, 0, 8, 0, 0, 0, 0];
                d.extend_from_slice(&Lun::single_level(self.config.lun).0);
                self.data_in(r, &d, false)
            }
            op::SERVICE_ACTION_IN_16 if cdb[1] & 0x1F == 0x10 => {
                let mut d = vec![0u8; 32];
                d[0..8].copy_from_slice(&(self.blocks().saturating_sub(1)).to_be_bytes());
                d[8..12].copy_from_slice(&self.config.block_len.to_be_bytes());
                let alloc = u32::from_be_bytes([cdb[10], cdb[11], cdb[12], cdb[13]]) as usize;
                d.truncate(alloc);
                self.data_in(r, &d, false)
            }
            op::READ_CAPACITY_10 => {
                let last = u32::try_from(self.blocks().saturating_sub(1)).unwrap_or(u32::MAX);
                let mut d = last.to_be_bytes().to_vec();
                d.extend_from_slice(&self.config.block_len.to_be_bytes());
                self.data_in(r, &d, false)
            }
            op::READ_10 | op::READ_16 | op::WRITE_10 | op::WRITE_16 => {
                let (lba, n) = if matches!(cdb[0], op::READ_10 | op::WRITE_10) {
                    (
                        u64::from(u32::from_be_bytes([cdb[2], cdb[3], cdb[4], cdb[5]])),
                        u64::from(u16::from_be_bytes([cdb[7], cdb[8]])),
                    )
                } else {
                    let mut l = [0u8; 8];
                    l.copy_from_slice(&cdb[2..10]);
                    (
                        u64::from_be_bytes(l),
                        u64::from(u32::from_be_bytes([cdb[10], cdb[11], cdb[12], cdb[13]])),
                    )
                };
                if lba.saturating_add(n) > self.blocks() {
                    return self.check(r.itt, ulp_iscsi::scsi::ILLEGAL_REQUEST, 0x21);
                }
                let (off, len) = (lba * bl, n * bl);
                if is_write {
                    if u64::from(r.expected_len) != len || !r.write {
                        return self.check(r.itt, ulp_iscsi::scsi::ILLEGAL_REQUEST, 0x24);
                    }
                    return self.start_write(r, off, len);
                }
                if self.config.misbehave == Misbehave::RejectReads {
                    return self.reject(RejectReason::InvalidPduField, raw);
                }
                if self.stalled < self.config.stall_reads {
                    // A stalled LUN: no answer until task management ends the read.
                    self.stalled += 1;
                    self.held.insert(r.itt.0, (r.cmd_sn, r.lun));
                    return Ok(());
                }
                let data = {
                    let d = self.disk.lock().unwrap_or_else(PoisonError::into_inner);
                    d[off as usize..(off + len) as usize].to_vec()
                };
                self.data_in(r, &data, true)
            }
            _ => self.check(r.itt, ulp_iscsi::scsi::ILLEGAL_REQUEST, 0x20),
        }
    }

    pub(super) fn emit_data_in(
        &mut self,
        repr: &DataInRepr<'_>,
        tweak: impl FnOnce(&mut Vec<u8>),
    ) -> io::Result<()> {
        let mut b = vec![0u8; repr.buffer_len(self.digests)];
        repr.emit(&mut b, self.digests).map_err(|_| bad())?;
        tweak(&mut b);
        self.send(&b)
    }

    /// Sends `data` as Data-In PDUs (segments within the initiator's MaxRecvDataSegmentLength,
    /// sequences within MaxBurstLength), the last one with the status.
    fn data_in(&mut self, r: &ScsiCmdRepr<'_>, data: &[u8], read: bool) -> io::Result<()> {
        let expected = r.expected_len as usize;
        let send_len = data.len().min(expected);
        let residual = match data.len().cmp(&expected) {
            core::cmp::Ordering::Less => Some((true, (expected - data.len()) as u32)),
            core::cmp::Ordering::Greater => Some((false, (data.len() - expected) as u32)),
            core::cmp::Ordering::Equal => None,
        };
        if send_len == 0 {
            return self.status(r.itt, 0, None, residual);
        }
        let mb = if read {
            self.config.misbehave
        } else {
            Misbehave::None
        };
        let seg = self.mrdsl as usize;
        let mut at = 0usize;
        let mut data_sn = 0u32;
        let mut burst = 0usize;
        while at < send_len {
            let mut end = (at + seg).min(send_len);
            if mb == Misbehave::OversizedSegment {
                end = send_len;
            }
            let last = end == send_len;
            burst += end - at;
            let final_ = last || burst >= self.max_burst as usize;
            if final_ {
                burst = 0;
            }
            let status = if last {
                Some(DataInStatus {
                    status: 0,
                    stat_sn: self.next_stat_sn(),
                    overflow: residual.is_some_and(|(u, _)| !u),
                    underflow: residual.is_some_and(|(u, _)| u),
                    residual: residual.map_or(0, |(_, n)| n),
                })
            } else {
                None
            };
            let mut repr = DataInRepr {
                final_,
                ack: false,
                status,
                lun: Lun::default(),
                itt: r.itt,
                ttt: Ttt::RESERVED,
                exp_cmd_sn: self.exp_cmd_sn,
                max_cmd_sn: self.max_cmd_sn(),
                data_sn,
                buffer_offset: at as u32,
                data: &data[at..end],
            };
            match mb {
                Misbehave::OffsetOutsideCommand => repr.buffer_offset = r.expected_len,
                Misbehave::LengthOutsideCommand => repr.buffer_offset = (at + 1) as u32,
                Misbehave::UnknownItt => repr.itt = Itt(r.itt.0 ^ 0x5A5A),
                Misbehave::DataSnGap if data_sn == 1 => repr.data_sn = 2,
                _ => {}
            }
            let digests = self.digests;
            let tweak = |b: &mut Vec<u8>| match mb {
                Misbehave::BadDataDigest => {
                    if let Some(x) = b.last_mut() {
                        *x ^= 0xFF;
                    }
                }
                Misbehave::BadHeaderDigest if digests.header => b[BHS_LEN] ^= 0xFF,
                Misbehave::StatusWithoutFinal => b[1] = 0x01,
                Misbehave::InitiatorOpcode => b[0] = 0x01,
                _ => {}
            };
            if mb == Misbehave::TruncatedPdu {
                let mut b = vec![0u8; repr.buffer_len(self.digests)];
                repr.emit(&mut b, self.digests).map_err(|_| bad())?;
                self.send(&b[..b.len() / 2])?;
                return Err(bad());
            }
            self.emit_data_in(&repr, tweak)?;
            if mb == Misbehave::DuplicateData && data_sn == 0 {
                data_sn += 1;
                let dup = DataInRepr {
                    status: None,
                    final_: false,
                    data_sn,
                    ..repr
                };
                self.emit_data_in(&dup, |_| {})?;
            }
            data_sn += 1;
            at = end;
        }
        Ok(())
    }
}
