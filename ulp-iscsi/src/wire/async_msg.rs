//! Asynchronous Message (0x32), RFC 7143 §11.9.
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 1 | 1 | 0x80 |
//! | 8 | 8 | LUN |
//! | 16 | 4 | 0xFFFFFFFF |
//! | 24 | 4 | StatSN |
//! | 28 | 4 | ExpCmdSN |
//! | 32 | 4 | MaxCmdSN |
//! | 36 | 1 | AsyncEvent |
//! | 37 | 1 | AsyncVCode |
//! | 38 | 2 | Parameter1 |
//! | 40 | 2 | Parameter2 |
//! | 42 | 2 | Parameter3 |
//!
//! The data segment holds sense data (with its 2-byte length) and iSCSI event data; it is kept
//! raw here.

use super::bhs::{FINAL_BIT, Packet};
use super::{Body, Error, Itt, Lun, Opcode, Result, impl_pdu, no_ahs, reserved_bits};

/// AsyncEvent codes.
pub mod event {
    /// SCSI asynchronous event (sense data in the data segment).
    pub const SCSI: u8 = 0;
    /// Target requests logout.
    pub const LOGOUT_REQUEST: u8 = 1;
    /// Target will drop the connection.
    pub const CONNECTION_DROP: u8 = 2;
    /// Target will drop all connections.
    pub const SESSION_DROP: u8 = 3;
    /// Target requests parameter renegotiation.
    pub const RENEGOTIATE: u8 = 4;
    /// Vendor-specific.
    pub const VENDOR: u8 = 255;
}

/// An Asynchronous Message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncMsgRepr<'a> {
    /// LUN.
    pub lun: Lun,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// AsyncEvent (see [`event`]).
    pub event: u8,
    /// AsyncVCode.
    pub vcode: u8,
    /// Parameter1, Parameter2, Parameter3.
    pub params: [u16; 3],
    /// Sense data and iSCSI event data, raw.
    pub data: &'a [u8],
}

impl<'a> Body<'a> for AsyncMsgRepr<'a> {
    const OPCODE: Opcode = Opcode::AsyncMessage;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        no_ahs(ahs)?;
        reserved_bits(pkt, 0, 0x40)?;
        if pkt.flags() != FINAL_BIT {
            return Err(Error::Reserved { offset: 1 });
        }
        if pkt.itt() != Itt::RESERVED {
            return Err(Error::InvalidValue { offset: 16 });
        }
        Ok(Self {
            lun: pkt.lun(),
            stat_sn: pkt.word(6),
            exp_cmd_sn: pkt.word(7),
            max_cmd_sn: pkt.word(8),
            event: pkt.byte(36),
            vcode: pkt.byte(37),
            params: [pkt.half_word(19), pkt.half_word(20), pkt.half_word(21)],
            data,
        })
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        pkt.set_flags(FINAL_BIT);
        pkt.set_lun(self.lun);
        pkt.set_itt(Itt::RESERVED);
        pkt.set_word(6, self.stat_sn);
        pkt.set_word(7, self.exp_cmd_sn);
        pkt.set_word(8, self.max_cmd_sn);
        pkt.set_byte(36, self.event);
        pkt.set_byte(37, self.vcode);
        for (i, p) in self.params.iter().enumerate() {
            pkt.set_half_word(19 + i, *p);
        }
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[self.data])
    }
}

impl_pdu!(AsyncMsgRepr);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::Digests;
    use crate::wire::test_util::{bhs_from_words, data, digests, lun};

    #[test]
    fn logout_request_event() {
        let b = bhs_from_words([
            0x3280_0000,
            0,
            0,
            0,
            0xFFFF_FFFF,
            0,
            8,
            9,
            40,
            0x0100_0000,
            0x0002_0014,
            0,
        ]);
        let r = AsyncMsgRepr::parse(&b, Digests::NONE).unwrap();
        assert_eq!(r.event, event::LOGOUT_REQUEST);
        assert_eq!(r.params, [0, 2, 20]);
        let mut out = [0u8; 48];
        r.emit(&mut out, Digests::NONE).unwrap();
        assert_eq!(out, b);
        let bad = bhs_from_words([0x3280_0000, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            AsyncMsgRepr::parse(&bad, Digests::NONE),
            Err(Error::InvalidValue { offset: 16 })
        );
    }

    proptest! {
        #[test]
        fn round_trip(lun in lun(), w in any::<[u32; 3]>(), e in any::<[u8; 2]>(),
                      params in any::<[u16; 3]>(), d in data(), dg in digests()) {
            let r = AsyncMsgRepr {
                lun, stat_sn: w[0], exp_cmd_sn: w[1], max_cmd_sn: w[2], event: e[0],
                vcode: e[1], params, data: &d,
            };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(AsyncMsgRepr::parse(&buf, dg), Ok(r));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128),
                              dg in digests()) {
            let _ = AsyncMsgRepr::parse(&bytes, dg);
        }
    }
}
