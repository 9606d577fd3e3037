//! Logout Request (0x06) and Response (0x26), RFC 7143 §11.14–§11.15.
//!
//! | Off | Request | Response |
//! |---|---|---|
//! | 1 | 0x80 \| reason | 0x80 |
//! | 2 | reserved | Response |
//! | 16 | ITT | ITT |
//! | 20 | CID (2 bytes) | reserved |
//! | 24 | CmdSN | StatSN |
//! | 28 | ExpStatSN | ExpCmdSN |
//! | 32 | reserved | MaxCmdSN |
//! | 40 | reserved | Time2Wait (2), Time2Retain (2) |

use super::bhs::{FINAL_BIT, Packet};
use super::{Body, Error, Itt, Opcode, Result, impl_pdu, no_ahs, no_data, reserved_bits};

ulp_ddp_core::wire_codes! {
    /// Logout reason codes (byte 1 mask 0x7F).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum LogoutReason: u8 {
        /// Close the session.
        CloseSession = 0 => "close the session",
        /// Close the connection.
        CloseConnection = 1 => "close the connection",
        /// Remove the connection for recovery.
        RemoveForRecovery = 2 => "remove the connection for recovery",
    }
    unknown(raw) -> Error => Error::InvalidValue { offset: 1 };
}

ulp_ddp_core::wire_codes! {
    /// Logout response codes (byte 2).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum LogoutResponse: u8 {
        /// Connection or session closed successfully.
        Success = 0 => "closed successfully",
        /// CID not found.
        CidNotFound = 1 => "CID not found",
        /// Connection recovery is not supported.
        RecoveryUnsupported = 2 => "connection recovery is not supported",
        /// Cleanup failed for various reasons.
        CleanupFailed = 3 => "cleanup failed",
    }
    unknown(raw) -> Error => Error::InvalidValue { offset: 2 };
}

/// A Logout Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutRequestRepr {
    /// I bit.
    pub immediate: bool,
    /// Reason.
    pub reason: LogoutReason,
    /// ITT.
    pub itt: Itt,
    /// CID of the connection to close.
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

/// A Logout Response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutResponseRepr {
    /// Response.
    pub response: LogoutResponse,
    /// ITT.
    pub itt: Itt,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Time2Wait (seconds).
    pub time2wait: u16,
    /// Time2Retain (seconds).
    pub time2retain: u16,
}

impl<'a> Body<'a> for LogoutRequestRepr {
    const OPCODE: Opcode = Opcode::LogoutRequest;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        no_ahs(ahs)?;
        no_data(data)?;
        if !pkt.final_flag() {
            return Err(Error::InvalidValue { offset: 1 });
        }
        Ok(Self {
            immediate: pkt.immediate(),
            reason: LogoutReason::try_from(pkt.flags() & 0x7F)?,
            itt: pkt.itt(),
            cid: pkt.half_word(10),
            cmd_sn: pkt.word(6),
            exp_stat_sn: pkt.word(7),
        })
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        pkt.set_immediate(self.immediate);
        pkt.set_flags(FINAL_BIT | self.reason as u8);
        pkt.set_itt(self.itt);
        pkt.set_half_word(10, self.cid);
        pkt.set_word(6, self.cmd_sn);
        pkt.set_word(7, self.exp_stat_sn);
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[])
    }
}

impl<'a> Body<'a> for LogoutResponseRepr {
    const OPCODE: Opcode = Opcode::LogoutResponse;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        no_ahs(ahs)?;
        no_data(data)?;
        reserved_bits(pkt, 0, 0x40)?;
        if pkt.flags() != FINAL_BIT {
            return Err(Error::Reserved { offset: 1 });
        }
        Ok(Self {
            response: LogoutResponse::try_from(pkt.byte(2))?,
            itt: pkt.itt(),
            stat_sn: pkt.word(6),
            exp_cmd_sn: pkt.word(7),
            max_cmd_sn: pkt.word(8),
            time2wait: pkt.half_word(20),
            time2retain: pkt.half_word(21),
        })
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        pkt.set_flags(FINAL_BIT);
        pkt.set_byte(2, self.response as u8);
        pkt.set_itt(self.itt);
        pkt.set_word(6, self.stat_sn);
        pkt.set_word(7, self.exp_cmd_sn);
        pkt.set_word(8, self.max_cmd_sn);
        pkt.set_half_word(20, self.time2wait);
        pkt.set_half_word(21, self.time2retain);
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[])
    }
}

impl_pdu!(LogoutRequestRepr, 'static);
impl_pdu!(LogoutResponseRepr, 'static);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::Digests;
    use crate::wire::test_util::{bhs_from_words, digests, itt};

    #[test]
    fn request_and_response() {
        let b = bhs_from_words([0x4680_0000, 0, 0, 0, 5, 0x0001_0000, 30, 31, 0, 0, 0, 0]);
        let r = LogoutRequestRepr::parse(&b, Digests::NONE).unwrap();
        assert_eq!(
            r,
            LogoutRequestRepr {
                immediate: true,
                reason: LogoutReason::CloseSession,
                itt: Itt(5),
                cid: 1,
                cmd_sn: 30,
                exp_stat_sn: 31,
            }
        );
        let mut out = [0u8; 48];
        r.emit(&mut out, Digests::NONE).unwrap();
        assert_eq!(out, b);
        let b = bhs_from_words([0x2680_0000, 0, 0, 0, 5, 0, 31, 31, 62, 0, 0x0002_0014, 0]);
        let r = LogoutResponseRepr::parse(&b, Digests::NONE).unwrap();
        assert_eq!(
            (r.response, r.time2wait, r.time2retain),
            (LogoutResponse::Success, 2, 20)
        );
        r.emit(&mut out, Digests::NONE).unwrap();
        assert_eq!(out, b);
        let bad = bhs_from_words([0x2680_0400, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            LogoutResponseRepr::parse(&bad, Digests::NONE),
            Err(Error::InvalidValue { offset: 2 })
        );
    }

    proptest! {
        #[test]
        fn round_trip(imm in any::<bool>(), reason in 0u8..3, resp in 0u8..4, itt in itt(),
                      cid in any::<u16>(), w in any::<[u32; 3]>(), t in any::<[u16; 2]>(),
                      dg in digests()) {
            let r = LogoutRequestRepr {
                immediate: imm, reason: LogoutReason::try_from(reason).unwrap(), itt, cid,
                cmd_sn: w[0], exp_stat_sn: w[1],
            };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(LogoutRequestRepr::parse(&buf, dg), Ok(r));
            let r = LogoutResponseRepr {
                response: LogoutResponse::try_from(resp).unwrap(), itt, stat_sn: w[0],
                exp_cmd_sn: w[1], max_cmd_sn: w[2], time2wait: t[0], time2retain: t[1],
            };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(LogoutResponseRepr::parse(&buf, dg), Ok(r));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100),
                              dg in digests()) {
            let _ = LogoutRequestRepr::parse(&bytes, dg);
            let _ = LogoutResponseRepr::parse(&bytes, dg);
        }
    }
}
