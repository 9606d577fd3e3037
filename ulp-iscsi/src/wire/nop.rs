//! NOP-Out (0x00) and NOP-In (0x20), RFC 7143 §11.18 and §11.19.
//!
//! | Off | NOP-Out | NOP-In |
//! |---|---|---|
//! | 1 | 0x80 | 0x80 |
//! | 8 | LUN | LUN |
//! | 16 | ITT | ITT |
//! | 20 | TTT | TTT |
//! | 24 | CmdSN | StatSN |
//! | 28 | ExpStatSN | ExpCmdSN |
//! | 32 | reserved | MaxCmdSN |
//!
//! The data segment is ping data.

use super::bhs::{FINAL_BIT, Packet};
use super::{Body, Error, Itt, Lun, Opcode, Result, Ttt, impl_pdu, no_ahs, reserved_bits};

/// NOP-Out: initiator ping, ping reply, or ExpStatSN update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NopOutRepr<'a> {
    /// I bit.
    pub immediate: bool,
    /// LUN (copied from the NOP-In when answering a target ping).
    pub lun: Lun,
    /// ITT (0xFFFFFFFF when no reply is wanted).
    pub itt: Itt,
    /// TTT (0xFFFFFFFF unless answering a target ping).
    pub ttt: Ttt,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// Ping data.
    pub data: &'a [u8],
}

/// NOP-In: target ping, ping reply, or window update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NopInRepr<'a> {
    /// LUN.
    pub lun: Lun,
    /// ITT (0xFFFFFFFF for a target-initiated NOP-In).
    pub itt: Itt,
    /// TTT (≠ 0xFFFFFFFF when the target wants a NOP-Out reply).
    pub ttt: Ttt,
    /// StatSN (not advanced when ITT is 0xFFFFFFFF).
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Ping data.
    pub data: &'a [u8],
}

fn check_flags(pkt: &Packet<&[u8]>) -> Result<()> {
    if pkt.flags() != FINAL_BIT {
        return Err(Error::Reserved { offset: 1 });
    }
    Ok(())
}

impl<'a> Body<'a> for NopOutRepr<'a> {
    const OPCODE: Opcode = Opcode::NopOut;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        no_ahs(ahs)?;
        check_flags(pkt)?;
        reserved_bits(pkt, 2, 0xFF)?;
        reserved_bits(pkt, 3, 0xFF)?;
        Ok(Self {
            immediate: pkt.immediate(),
            lun: pkt.lun(),
            itt: pkt.itt(),
            ttt: Ttt(pkt.word(5)),
            cmd_sn: pkt.word(6),
            exp_stat_sn: pkt.word(7),
            data,
        })
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        pkt.set_immediate(self.immediate);
        pkt.set_flags(FINAL_BIT);
        pkt.set_lun(self.lun);
        pkt.set_itt(self.itt);
        pkt.set_word(5, self.ttt.0);
        pkt.set_word(6, self.cmd_sn);
        pkt.set_word(7, self.exp_stat_sn);
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[self.data])
    }
}

impl<'a> Body<'a> for NopInRepr<'a> {
    const OPCODE: Opcode = Opcode::NopIn;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        no_ahs(ahs)?;
        check_flags(pkt)?;
        reserved_bits(pkt, 0, 0x40)?;
        Ok(Self {
            lun: pkt.lun(),
            itt: pkt.itt(),
            ttt: Ttt(pkt.word(5)),
            stat_sn: pkt.word(6),
            exp_cmd_sn: pkt.word(7),
            max_cmd_sn: pkt.word(8),
            data,
        })
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        pkt.set_flags(FINAL_BIT);
        pkt.set_lun(self.lun);
        pkt.set_itt(self.itt);
        pkt.set_word(5, self.ttt.0);
        pkt.set_word(6, self.stat_sn);
        pkt.set_word(7, self.exp_cmd_sn);
        pkt.set_word(8, self.max_cmd_sn);
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[self.data])
    }
}

impl_pdu!(NopOutRepr);
impl_pdu!(NopInRepr);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::Digests;
    use crate::wire::test_util::{data, digests, itt, lun, ttt};

    /// Immediate NOP-Out ping, ITT 0x10, 5 bytes of ping data ("hello") + 3 pad bytes.
    static NOP_OUT: [u8; 56] = [
        0x40, 0x80, 0, 0, 0, 0, 0, 5, // I|opcode, F, rsvd, AHS 0, DSL 5
        0, 1, 0, 0, 0, 0, 0, 0, // LUN 1
        0, 0, 0, 0x10, // ITT
        0xFF, 0xFF, 0xFF, 0xFF, // TTT
        0, 0, 0, 7, // CmdSN
        0, 0, 0, 9, // ExpStatSN
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
        b'h', b'e', b'l', b'l', b'o', 0, 0, 0,
    ];

    fn nop_out_repr() -> NopOutRepr<'static> {
        NopOutRepr {
            immediate: true,
            lun: Lun::single_level(1),
            itt: Itt(0x10),
            ttt: Ttt::RESERVED,
            cmd_sn: 7,
            exp_stat_sn: 9,
            data: b"hello",
        }
    }

    #[test]
    fn parse() {
        assert_eq!(
            NopOutRepr::parse(&NOP_OUT, Digests::NONE),
            Ok(nop_out_repr())
        );
    }

    #[test]
    fn emit() {
        let r = nop_out_repr();
        let mut buf = [0xEEu8; 56];
        assert_eq!(r.buffer_len(Digests::NONE), 56);
        assert_eq!(r.emit(&mut buf, Digests::NONE), Ok(56));
        assert_eq!(buf, NOP_OUT);
    }

    #[test]
    fn truncated() {
        for n in [0, 47, 48, 55] {
            assert!(matches!(
                NopOutRepr::parse(&NOP_OUT[..n], Digests::NONE),
                Err(Error::Truncated { .. })
            ));
        }
        let r = nop_out_repr();
        assert_eq!(
            r.emit(&mut [0u8; 55], Digests::NONE),
            Err(Error::BufferTooSmall { need: 56, have: 55 })
        );
    }

    #[test]
    fn digests_and_pad() {
        let r = nop_out_repr();
        let mut buf = [0u8; 64];
        let n = r.emit(&mut buf, Digests::BOTH).unwrap();
        assert_eq!(n, 48 + 4 + 8 + 4);
        let hd = ulp_ddp_core::digest::crc32c(&buf[..48]).to_le_bytes();
        assert_eq!(buf[48..52], hd);
        // The data digest covers the data and the three pad bytes.
        let dd = ulp_ddp_core::digest::crc32c(b"hello\0\0\0").to_le_bytes();
        assert_ne!(dd, ulp_ddp_core::digest::crc32c(b"hello").to_le_bytes());
        assert_eq!(buf[60..64], dd);
        assert_eq!(NopOutRepr::parse(&buf[..n], Digests::BOTH), Ok(r));
        // A non-zero pad byte changes the data digest.
        let mut bad = buf;
        bad[59] = 1;
        assert_eq!(
            NopOutRepr::parse(&bad, Digests::BOTH),
            Err(Error::DataDigestMismatch)
        );
        let mut bad = buf;
        bad[20] ^= 1;
        assert_eq!(
            NopOutRepr::parse(&bad, Digests::BOTH),
            Err(Error::HeaderDigestMismatch)
        );
        // Header only.
        let mut hdr = [0u8; 52];
        let h = r.emit_header(&mut hdr, Digests::BOTH).unwrap();
        assert_eq!(h.header_len, 52);
        assert_eq!((h.data_len, h.pad_len, h.total_len), (5, 3, 64));
        assert_eq!(h.data_digest, Some(dd));
        assert_eq!(hdr[..], buf[..52]);
    }

    #[test]
    fn reserved_flags() {
        let mut b = NOP_OUT;
        b[1] = 0x81;
        assert_eq!(
            NopOutRepr::parse(&b, Digests::NONE),
            Err(Error::Reserved { offset: 1 })
        );
        let mut b = NOP_OUT;
        b[4] = 1; // AHS claimed: the PDU is now 4 bytes longer than given.
        assert!(matches!(
            NopOutRepr::parse(&b, Digests::NONE),
            Err(Error::Truncated { .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip_out(immediate in any::<bool>(), lun in lun(), itt in itt(), ttt in ttt(),
                          cmd_sn in any::<u32>(), exp in any::<u32>(), d in data(),
                          dg in digests()) {
            let r = NopOutRepr { immediate, lun, itt, ttt, cmd_sn, exp_stat_sn: exp, data: &d };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(NopOutRepr::parse(&buf, dg), Ok(r));
        }

        #[test]
        fn round_trip_in(lun in lun(), itt in itt(), ttt in ttt(), sn in any::<[u32; 3]>(),
                         d in data(), dg in digests()) {
            let r = NopInRepr {
                lun, itt, ttt, stat_sn: sn[0], exp_cmd_sn: sn[1], max_cmd_sn: sn[2], data: &d,
            };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(NopInRepr::parse(&buf, dg), Ok(r));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128),
                              dg in digests()) {
            let _ = NopOutRepr::parse(&bytes, dg);
            let _ = NopInRepr::parse(&bytes, dg);
        }
    }
}
