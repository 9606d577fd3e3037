//! Task Management Function Request (0x02) and Response (0x22), RFC 7143 §11.5–§11.6.
//!
//! | Off | Request | Response |
//! |---|---|---|
//! | 1 | 0x80 \| function | 0x80 |
//! | 2 | reserved | Response |
//! | 8 | LUN | reserved |
//! | 16 | ITT | ITT |
//! | 20 | Referenced Task Tag | reserved |
//! | 24 | CmdSN | StatSN |
//! | 28 | ExpStatSN | ExpCmdSN |
//! | 32 | RefCmdSN | MaxCmdSN |
//! | 36 | ExpDataSN | reserved |
//!
//! Neither carries a data segment.

use super::bhs::{FINAL_BIT, Packet};
use super::{Body, Error, Itt, Lun, Opcode, Result, impl_pdu, no_ahs, no_data, reserved_bits};

ulp_ddp_core::wire_codes! {
    /// Task management functions (byte 1 mask 0x7F).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum TmfFunction: u8 {
        /// ABORT TASK.
        AbortTask = 1 => "ABORT TASK",
        /// ABORT TASK SET.
        AbortTaskSet = 2 => "ABORT TASK SET",
        /// CLEAR ACA.
        ClearAca = 3 => "CLEAR ACA",
        /// CLEAR TASK SET.
        ClearTaskSet = 4 => "CLEAR TASK SET",
        /// LOGICAL UNIT RESET.
        LogicalUnitReset = 5 => "LOGICAL UNIT RESET",
        /// TARGET WARM RESET.
        TargetWarmReset = 6 => "TARGET WARM RESET",
        /// TARGET COLD RESET.
        TargetColdReset = 7 => "TARGET COLD RESET",
        /// TASK REASSIGN.
        TaskReassign = 8 => "TASK REASSIGN",
    }
    unknown(raw) -> Error => Error::InvalidValue { offset: 1 };
}

/// TMF response codes (byte 2 of the response).
pub mod response {
    /// Function complete.
    pub const COMPLETE: u8 = 0;
    /// Task does not exist.
    pub const NO_TASK: u8 = 1;
    /// LUN does not exist.
    pub const NO_LUN: u8 = 2;
    /// Task still allegiant.
    pub const TASK_ALLEGIANT: u8 = 3;
    /// Task allegiance reassignment not supported.
    pub const REASSIGN_UNSUPPORTED: u8 = 4;
    /// Task management function not supported.
    pub const NOT_SUPPORTED: u8 = 5;
    /// Function authorization failed.
    pub const AUTH_FAILED: u8 = 6;
    /// Function rejected.
    pub const REJECTED: u8 = 255;
}

/// A Task Management Function Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TmfRequestRepr {
    /// I bit.
    pub immediate: bool,
    /// Function.
    pub function: TmfFunction,
    /// LUN.
    pub lun: Lun,
    /// ITT of this request.
    pub itt: Itt,
    /// Referenced Task Tag (ITT of the task to abort).
    pub ref_task_tag: Itt,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// RefCmdSN.
    pub ref_cmd_sn: u32,
    /// ExpDataSN.
    pub exp_data_sn: u32,
}

/// A Task Management Function Response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TmfResponseRepr {
    /// Response (see [`response`]).
    pub response: u8,
    /// ITT.
    pub itt: Itt,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

impl<'a> Body<'a> for TmfRequestRepr {
    const OPCODE: Opcode = Opcode::TaskMgmtRequest;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        no_ahs(ahs)?;
        no_data(data)?;
        if !pkt.final_flag() {
            return Err(Error::InvalidValue { offset: 1 });
        }
        Ok(Self {
            immediate: pkt.immediate(),
            function: TmfFunction::try_from(pkt.flags() & 0x7F)?,
            lun: pkt.lun(),
            itt: pkt.itt(),
            ref_task_tag: Itt(pkt.word(5)),
            cmd_sn: pkt.word(6),
            exp_stat_sn: pkt.word(7),
            ref_cmd_sn: pkt.word(8),
            exp_data_sn: pkt.word(9),
        })
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        pkt.set_immediate(self.immediate);
        pkt.set_flags(FINAL_BIT | self.function as u8);
        pkt.set_lun(self.lun);
        pkt.set_itt(self.itt);
        pkt.set_word(5, self.ref_task_tag.0);
        pkt.set_word(6, self.cmd_sn);
        pkt.set_word(7, self.exp_stat_sn);
        pkt.set_word(8, self.ref_cmd_sn);
        pkt.set_word(9, self.exp_data_sn);
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[])
    }
}

impl<'a> Body<'a> for TmfResponseRepr {
    const OPCODE: Opcode = Opcode::TaskMgmtResponse;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        no_ahs(ahs)?;
        no_data(data)?;
        reserved_bits(pkt, 0, 0x40)?;
        if pkt.flags() != FINAL_BIT {
            return Err(Error::Reserved { offset: 1 });
        }
        Ok(Self {
            response: pkt.byte(2),
            itt: pkt.itt(),
            stat_sn: pkt.word(6),
            exp_cmd_sn: pkt.word(7),
            max_cmd_sn: pkt.word(8),
        })
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        pkt.set_flags(FINAL_BIT);
        pkt.set_byte(2, self.response);
        pkt.set_itt(self.itt);
        pkt.set_word(6, self.stat_sn);
        pkt.set_word(7, self.exp_cmd_sn);
        pkt.set_word(8, self.max_cmd_sn);
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[])
    }
}

impl_pdu!(TmfRequestRepr, 'static);
impl_pdu!(TmfResponseRepr, 'static);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::Digests;
    use crate::wire::test_util::{bhs_from_words, digests, itt, lun};

    #[test]
    fn abort_task() {
        let b = bhs_from_words([0x4281_0000, 0, 0x0001_0000, 0, 7, 3, 10, 11, 9, 0, 0, 0]);
        let r = TmfRequestRepr::parse(&b, Digests::NONE).unwrap();
        assert_eq!(
            r,
            TmfRequestRepr {
                immediate: true,
                function: TmfFunction::AbortTask,
                lun: Lun::single_level(1),
                itt: Itt(7),
                ref_task_tag: Itt(3),
                cmd_sn: 10,
                exp_stat_sn: 11,
                ref_cmd_sn: 9,
                exp_data_sn: 0,
            }
        );
        let mut out = [0u8; 48];
        assert_eq!(r.emit(&mut out, Digests::NONE), Ok(48));
        assert_eq!(out, b);
        let bad = bhs_from_words([0x4289_0000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            TmfRequestRepr::parse(&bad, Digests::NONE),
            Err(Error::InvalidValue { offset: 1 })
        );
    }

    #[test]
    fn response() {
        let b = bhs_from_words([0x2280_0500, 0, 0, 0, 7, 0, 12, 11, 40, 0, 0, 0]);
        let r = TmfResponseRepr::parse(&b, Digests::NONE).unwrap();
        assert_eq!(r.response, response::NOT_SUPPORTED);
        let mut out = [0u8; 48];
        assert_eq!(r.emit(&mut out, Digests::NONE), Ok(48));
        assert_eq!(out, b);
        let mut with_data = bhs_from_words([0x2280_0000, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).to_vec();
        with_data.extend_from_slice(&[0; 4]);
        assert_eq!(
            TmfResponseRepr::parse(&with_data, Digests::NONE),
            Err(Error::BadDataSegmentLength)
        );
    }

    proptest! {
        #[test]
        fn round_trip(imm in any::<bool>(), f in 1u8..=8, lun in lun(), itt in itt(),
                      w in any::<[u32; 5]>(), resp in any::<u8>(), dg in digests()) {
            let r = TmfRequestRepr {
                immediate: imm, function: TmfFunction::try_from(f).unwrap(), lun, itt,
                ref_task_tag: Itt(w[0]), cmd_sn: w[1], exp_stat_sn: w[2], ref_cmd_sn: w[3],
                exp_data_sn: w[4],
            };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(TmfRequestRepr::parse(&buf, dg), Ok(r));
            let r = TmfResponseRepr {
                response: resp, itt, stat_sn: w[0], exp_cmd_sn: w[1], max_cmd_sn: w[2],
            };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(TmfResponseRepr::parse(&buf, dg), Ok(r));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100),
                              dg in digests()) {
            let _ = TmfRequestRepr::parse(&bytes, dg);
            let _ = TmfResponseRepr::parse(&bytes, dg);
        }
    }
}
