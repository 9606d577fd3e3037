//! SCSI Response (0x21), RFC 7143 §11.4.
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 1 | 1 | 0x80; o 0x10, u 0x08, O 0x04, U 0x02 |
//! | 2 | 1 | Response |
//! | 3 | 1 | Status |
//! | 16 | 4 | ITT |
//! | 20 | 4 | SNACK Tag |
//! | 24 | 4 | StatSN |
//! | 28 | 4 | ExpCmdSN |
//! | 32 | 4 | MaxCmdSN |
//! | 36 | 4 | ExpDataSN |
//! | 40 | 4 | Bidirectional Read Residual Count |
//! | 44 | 4 | Residual Count |
//!
//! Data segment: SenseLength (2 bytes, big-endian), sense data, then response data.

use super::bhs::{FINAL_BIT, Packet};
use super::{Body, Error, Itt, Opcode, Result, impl_pdu, no_ahs, reserved_bits};

/// Byte 1: bidirectional read residual overflow.
pub const BIDI_OVERFLOW_BIT: u8 = 0x10;
/// Byte 1: bidirectional read residual underflow.
pub const BIDI_UNDERFLOW_BIT: u8 = 0x08;
/// Byte 1: residual overflow.
pub const OVERFLOW_BIT: u8 = 0x04;
/// Byte 1: residual underflow.
pub const UNDERFLOW_BIT: u8 = 0x02;

/// Response byte: command completed at target.
pub const RESPONSE_COMPLETED: u8 = 0x00;
/// Response byte: target failure.
pub const RESPONSE_TARGET_FAILURE: u8 = 0x01;

/// SCSI status codes (byte 3 of a SCSI Response, or of a Data-In with S).
pub mod status {
    /// GOOD.
    pub const GOOD: u8 = 0x00;
    /// CHECK CONDITION.
    pub const CHECK_CONDITION: u8 = 0x02;
    /// CONDITION MET.
    pub const CONDITION_MET: u8 = 0x04;
    /// BUSY.
    pub const BUSY: u8 = 0x08;
    /// RESERVATION CONFLICT.
    pub const RESERVATION_CONFLICT: u8 = 0x18;
    /// TASK SET FULL.
    pub const TASK_SET_FULL: u8 = 0x28;
    /// ACA ACTIVE.
    pub const ACA_ACTIVE: u8 = 0x30;
    /// TASK ABORTED.
    pub const TASK_ABORTED: u8 = 0x40;
}

/// A SCSI Response PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiRspRepr<'a> {
    /// o: bidirectional read residual overflow.
    pub bidi_overflow: bool,
    /// u: bidirectional read residual underflow.
    pub bidi_underflow: bool,
    /// O: residual overflow.
    pub overflow: bool,
    /// U: residual underflow.
    pub underflow: bool,
    /// Response (see [`RESPONSE_COMPLETED`]).
    pub response: u8,
    /// SCSI status (see [`status`]); valid only when `response` is 0.
    pub status: u8,
    /// ITT.
    pub itt: Itt,
    /// SNACK Tag.
    pub snack_tag: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// ExpDataSN.
    pub exp_data_sn: u32,
    /// Bidirectional Read Residual Count.
    pub bidi_residual: u32,
    /// Residual Count.
    pub residual: u32,
    /// Sense data (without the 2-byte SenseLength).
    pub sense: &'a [u8],
    /// Response data after the sense data.
    pub response_data: &'a [u8],
}

impl<'a> Body<'a> for ScsiRspRepr<'a> {
    const OPCODE: Opcode = Opcode::ScsiResponse;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        no_ahs(ahs)?;
        reserved_bits(pkt, 0, 0x40)?;
        let flags = pkt.flags();
        if flags & FINAL_BIT == 0 {
            return Err(Error::InvalidValue { offset: 1 });
        }
        reserved_bits(pkt, 1, 0x61)?;
        let bidi_overflow = flags & BIDI_OVERFLOW_BIT != 0;
        let bidi_underflow = flags & BIDI_UNDERFLOW_BIT != 0;
        let overflow = flags & OVERFLOW_BIT != 0;
        let underflow = flags & UNDERFLOW_BIT != 0;
        //= https://www.rfc-editor.org/rfc/rfc7143#section-11.4.5.1
        //# Bits O and U and bits o and u are mutually exclusive
        if (bidi_overflow && bidi_underflow) || (overflow && underflow) {
            return Err(Error::FlagConflict { offset: 1 });
        }
        let (sense, response_data) = match data {
            [] => (&[][..], &[][..]),
            [h, l, rest @ ..] => {
                let n = usize::from(u16::from_be_bytes([*h, *l]));
                if n > rest.len() {
                    return Err(Error::BadSenseLength);
                }
                rest.split_at(n)
            }
            [_] => return Err(Error::BadSenseLength),
        };
        Ok(Self {
            bidi_overflow,
            bidi_underflow,
            overflow,
            underflow,
            response: pkt.byte(2),
            status: pkt.byte(3),
            itt: pkt.itt(),
            snack_tag: pkt.word(5),
            stat_sn: pkt.word(6),
            exp_cmd_sn: pkt.word(7),
            max_cmd_sn: pkt.word(8),
            exp_data_sn: pkt.word(9),
            bidi_residual: pkt.word(10),
            residual: pkt.word(11),
            sense,
            response_data,
        })
    }

    fn check(&self) -> Result<()> {
        if self.sense.len() > usize::from(u16::MAX) {
            return Err(Error::BadSenseLength);
        }
        if (self.bidi_overflow && self.bidi_underflow) || (self.overflow && self.underflow) {
            return Err(Error::FlagConflict { offset: 1 });
        }
        Ok(())
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        let mut flags = FINAL_BIT;
        for (on, bit) in [
            (self.bidi_overflow, BIDI_OVERFLOW_BIT),
            (self.bidi_underflow, BIDI_UNDERFLOW_BIT),
            (self.overflow, OVERFLOW_BIT),
            (self.underflow, UNDERFLOW_BIT),
        ] {
            if on {
                flags |= bit;
            }
        }
        pkt.set_flags(flags);
        pkt.set_byte(2, self.response);
        pkt.set_byte(3, self.status);
        pkt.set_itt(self.itt);
        pkt.set_word(5, self.snack_tag);
        pkt.set_word(6, self.stat_sn);
        pkt.set_word(7, self.exp_cmd_sn);
        pkt.set_word(8, self.max_cmd_sn);
        pkt.set_word(9, self.exp_data_sn);
        pkt.set_word(10, self.bidi_residual);
        pkt.set_word(11, self.residual);
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        if self.sense.is_empty() && self.response_data.is_empty() {
            return f(&[]);
        }
        // Truncation is caught by check(), which runs before any data is written.
        let len = (self.sense.len().min(usize::from(u16::MAX)) as u16).to_be_bytes();
        f(&[&len, self.sense, self.response_data])
    }
}

impl_pdu!(ScsiRspRepr);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::Digests;
    use crate::wire::test_util::{bhs_from_words, data, digests, itt};

    /// CHECK CONDITION with 18 bytes of fixed-format sense (ILLEGAL REQUEST, ASC 0x24),
    /// data segment 20 bytes.
    fn check_condition() -> Vec<u8> {
        let mut b = bhs_from_words([
            0x2180_0002,
            20,
            0,
            0,
            0x0000_0033,
            0,
            100,
            200,
            231,
            0,
            0,
            0,
        ])
        .to_vec();
        let mut sense = [0u8; 18];
        sense[0] = 0x70;
        sense[2] = 0x05;
        sense[7] = 10;
        sense[12] = 0x24;
        b.extend_from_slice(&[0, 18]);
        b.extend_from_slice(&sense);
        b
    }

    #[test]
    fn parse_check_condition() {
        let b = check_condition();
        let r = ScsiRspRepr::parse(&b, Digests::NONE).unwrap();
        assert_eq!(r.response, RESPONSE_COMPLETED);
        assert_eq!(r.status, status::CHECK_CONDITION);
        assert_eq!(r.itt, Itt(0x33));
        assert_eq!((r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn), (100, 200, 231));
        assert_eq!(r.sense.len(), 18);
        assert_eq!(r.sense[12], 0x24);
        assert!(r.response_data.is_empty());
        let mut out = vec![0u8; r.buffer_len(Digests::NONE)];
        assert_eq!(r.emit(&mut out, Digests::NONE), Ok(68));
        assert_eq!(out, b);
    }

    #[test]
    fn bad_sense_length() {
        let mut b = check_condition();
        b[49] = 19;
        assert_eq!(
            ScsiRspRepr::parse(&b, Digests::NONE),
            Err(Error::BadSenseLength)
        );
        let mut b = bhs_from_words([0x2180_0000, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).to_vec();
        b.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            ScsiRspRepr::parse(&b, Digests::NONE),
            Err(Error::BadSenseLength)
        );
    }

    #[test]
    fn flags() {
        let b = bhs_from_words([0x2186_0000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            ScsiRspRepr::parse(&b, Digests::NONE),
            Err(Error::FlagConflict { offset: 1 })
        );
        let b = bhs_from_words([0x2100_0000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            ScsiRspRepr::parse(&b, Digests::NONE),
            Err(Error::InvalidValue { offset: 1 })
        );
        let b = bhs_from_words([0x2182_0000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
        let r = ScsiRspRepr::parse(&b, Digests::NONE).unwrap();
        assert!(r.underflow && !r.overflow);
        assert_eq!(r.residual, 7);
    }

    proptest! {
        #[test]
        fn round_trip(f in 0u8..9, rs in any::<[u8; 2]>(), itt in itt(), w in any::<[u32; 7]>(),
                      sense in data(), rd in data(), dg in digests()) {
            // f encodes a legal (o,u) and (O,U) pair: 3 choices each.
            let (bo, bu) = [(false, false), (true, false), (false, true)][usize::from(f / 3)];
            let (o, u) = [(false, false), (true, false), (false, true)][usize::from(f % 3)];
            let r = ScsiRspRepr {
                bidi_overflow: bo, bidi_underflow: bu, overflow: o, underflow: u,
                response: rs[0], status: rs[1], itt, snack_tag: w[0], stat_sn: w[1],
                exp_cmd_sn: w[2], max_cmd_sn: w[3], exp_data_sn: w[4], bidi_residual: w[5],
                residual: w[6], sense: &sense, response_data: &rd,
            };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(ScsiRspRepr::parse(&buf, dg), Ok(r));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128),
                              dg in digests()) {
            let _ = ScsiRspRepr::parse(&bytes, dg);
        }
    }
}
