//! Reject (0x3F), RFC 7143 §11.17.
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 1 | 1 | 0x80 |
//! | 2 | 1 | Reason |
//! | 16 | 4 | 0xFFFFFFFF |
//! | 24 | 4 | StatSN |
//! | 28 | 4 | ExpCmdSN |
//! | 32 | 4 | MaxCmdSN |
//! | 36 | 4 | DataSN/R2TSN |
//!
//! The data segment is the complete header (BHS, and AHS if any) of the rejected PDU.

use super::bhs::{BHS_LEN, FINAL_BIT, Packet};
use super::{Body, Error, Itt, Opcode, Result, impl_pdu, no_ahs, reserved_bits};

ulp_ddp_core::wire_codes! {
    /// Reject reasons (byte 2).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum RejectReason: u8 {
        /// Reserved (0x01).
        Reserved = 0x01 => "reserved reason",
        /// Data (payload) digest error.
        DataDigestError = 0x02 => "data digest error",
        /// SNACK reject.
        SnackReject = 0x03 => "SNACK reject",
        /// Protocol error.
        ProtocolError = 0x04 => "protocol error",
        /// Command not supported.
        CommandNotSupported = 0x05 => "command not supported",
        /// Immediate command reject (too many immediate commands).
        ImmediateCommandReject = 0x06 => "immediate command reject",
        /// Task in progress.
        TaskInProgress = 0x07 => "task in progress",
        /// Invalid data ack.
        InvalidDataAck = 0x08 => "invalid data ack",
        /// Invalid PDU field.
        InvalidPduField = 0x09 => "invalid PDU field",
        /// Long operation reject (out of resources for a TTT).
        LongOperationReject = 0x0A => "long operation reject",
        /// Deprecated (RFC 3720 "Negotiation Reset").
        NegotiationReset = 0x0B => "negotiation reset",
        /// Waiting for Logout.
        WaitingForLogout = 0x0C => "waiting for logout",
    }
    unknown(raw) -> Error => Error::InvalidValue { offset: 2 };
}

/// A Reject PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectRepr<'a> {
    /// Reason.
    pub reason: RejectReason,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// DataSN/R2TSN.
    pub data_sn: u32,
    /// Header of the rejected PDU (at least [`BHS_LEN`] bytes).
    pub rejected_header: &'a [u8],
}

impl<'a> RejectRepr<'a> {
    /// A view of the rejected PDU's BHS (e.g. for its ITT).
    pub fn rejected_bhs(&self) -> Packet<&'a [u8]> {
        // `rejected_header` holds at least BHS_LEN bytes after parse; `new_checked` on a
        // hand-built `Repr` with a short header would fail, so use the checked slice.
        Packet::new_unchecked(self.rejected_header.get(..BHS_LEN).unwrap_or(&[0; BHS_LEN]))
    }
}

impl<'a> Body<'a> for RejectRepr<'a> {
    const OPCODE: Opcode = Opcode::Reject;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        no_ahs(ahs)?;
        reserved_bits(pkt, 0, 0x40)?;
        if pkt.flags() != FINAL_BIT {
            return Err(Error::Reserved { offset: 1 });
        }
        if pkt.itt() != Itt::RESERVED {
            return Err(Error::InvalidValue { offset: 16 });
        }
        if data.len() < BHS_LEN {
            return Err(Error::BadDataSegmentLength);
        }
        Ok(Self {
            reason: RejectReason::try_from(pkt.byte(2))?,
            stat_sn: pkt.word(6),
            exp_cmd_sn: pkt.word(7),
            max_cmd_sn: pkt.word(8),
            data_sn: pkt.word(9),
            rejected_header: data,
        })
    }

    fn check(&self) -> Result<()> {
        if self.rejected_header.len() < BHS_LEN {
            return Err(Error::BadDataSegmentLength);
        }
        Ok(())
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        pkt.set_flags(FINAL_BIT);
        pkt.set_byte(2, self.reason as u8);
        pkt.set_itt(Itt::RESERVED);
        pkt.set_word(6, self.stat_sn);
        pkt.set_word(7, self.exp_cmd_sn);
        pkt.set_word(8, self.max_cmd_sn);
        pkt.set_word(9, self.data_sn);
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[self.rejected_header])
    }
}

impl_pdu!(RejectRepr);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::Digests;
    use crate::wire::test_util::{bhs_from_words, digests};

    #[test]
    fn parse_emit() {
        let mut b =
            bhs_from_words([0x3F80_0900, 48, 0, 0, 0xFFFF_FFFF, 0, 5, 6, 37, 0, 0, 0]).to_vec();
        let rejected = bhs_from_words([0x0180_0000, 0, 0, 0, 0x1234, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&rejected);
        let r = RejectRepr::parse(&b, Digests::NONE).unwrap();
        assert_eq!(r.reason, RejectReason::InvalidPduField);
        assert_eq!(r.rejected_bhs().itt(), Itt(0x1234));
        let mut out = vec![0u8; 96];
        assert_eq!(r.emit(&mut out, Digests::NONE), Ok(96));
        assert_eq!(out, b);
        // Too short a rejected header.
        let mut short =
            bhs_from_words([0x3F80_0900, 4, 0, 0, 0xFFFF_FFFF, 0, 0, 0, 0, 0, 0, 0]).to_vec();
        short.extend_from_slice(&[0; 4]);
        assert_eq!(
            RejectRepr::parse(&short, Digests::NONE),
            Err(Error::BadDataSegmentLength)
        );
        // Unknown reason.
        b[2] = 0x0D;
        assert_eq!(
            RejectRepr::parse(&b, Digests::NONE),
            Err(Error::InvalidValue { offset: 2 })
        );
    }

    proptest! {
        #[test]
        fn round_trip(reason in 1u8..=0x0C, w in any::<[u32; 4]>(),
                      hdr in proptest::collection::vec(any::<u8>(), 48..80), dg in digests()) {
            let r = RejectRepr {
                reason: RejectReason::try_from(reason).unwrap(), stat_sn: w[0], exp_cmd_sn: w[1],
                max_cmd_sn: w[2], data_sn: w[3], rejected_header: &hdr,
            };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(RejectRepr::parse(&buf, dg), Ok(r));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128),
                              dg in digests()) {
            let _ = RejectRepr::parse(&bytes, dg);
        }
    }
}
