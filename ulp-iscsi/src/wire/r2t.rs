//! Ready To Transfer (0x31), RFC 7143 §11.8.
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 1 | 1 | 0x80 |
//! | 8 | 8 | LUN |
//! | 16 | 4 | ITT |
//! | 20 | 4 | TTT |
//! | 24 | 4 | StatSN (not advanced) |
//! | 28 | 4 | ExpCmdSN |
//! | 32 | 4 | MaxCmdSN |
//! | 36 | 4 | R2TSN |
//! | 40 | 4 | Buffer Offset |
//! | 44 | 4 | Desired Data Transfer Length |

use super::bhs::{FINAL_BIT, Packet};
use super::{Body, Error, Itt, Lun, Opcode, Result, Ttt, impl_pdu, no_ahs, no_data, reserved_bits};

/// An R2T PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct R2tRepr {
    /// LUN.
    pub lun: Lun,
    /// ITT.
    pub itt: Itt,
    /// TTT to echo in the answering Data-Outs (never 0xFFFFFFFF).
    pub ttt: Ttt,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// R2TSN.
    pub r2t_sn: u32,
    /// Buffer Offset.
    pub buffer_offset: u32,
    /// Desired Data Transfer Length (non-zero).
    pub desired_len: u32,
}

impl<'a> Body<'a> for R2tRepr {
    const OPCODE: Opcode = Opcode::R2t;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        no_ahs(ahs)?;
        no_data(data)?;
        reserved_bits(pkt, 0, 0x40)?;
        if pkt.flags() != FINAL_BIT {
            return Err(Error::Reserved { offset: 1 });
        }
        let ttt = Ttt(pkt.word(5));
        if ttt == Ttt::RESERVED {
            return Err(Error::InvalidValue { offset: 20 });
        }
        //= https://www.rfc-editor.org/rfc/rfc7143#section-11.8.4
        //# The Desired Data Transfer Length MUST NOT be 0
        let desired_len = pkt.word(11);
        if desired_len == 0 {
            return Err(Error::InvalidValue { offset: 44 });
        }
        Ok(Self {
            lun: pkt.lun(),
            itt: pkt.itt(),
            ttt,
            stat_sn: pkt.word(6),
            exp_cmd_sn: pkt.word(7),
            max_cmd_sn: pkt.word(8),
            r2t_sn: pkt.word(9),
            buffer_offset: pkt.word(10),
            desired_len,
        })
    }

    fn check(&self) -> Result<()> {
        if self.ttt == Ttt::RESERVED {
            return Err(Error::InvalidValue { offset: 20 });
        }
        if self.desired_len == 0 {
            return Err(Error::InvalidValue { offset: 44 });
        }
        Ok(())
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        pkt.set_flags(FINAL_BIT);
        pkt.set_lun(self.lun);
        pkt.set_itt(self.itt);
        pkt.set_word(5, self.ttt.0);
        pkt.set_word(6, self.stat_sn);
        pkt.set_word(7, self.exp_cmd_sn);
        pkt.set_word(8, self.max_cmd_sn);
        pkt.set_word(9, self.r2t_sn);
        pkt.set_word(10, self.buffer_offset);
        pkt.set_word(11, self.desired_len);
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[])
    }
}

impl_pdu!(R2tRepr, 'static);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::Digests;
    use crate::wire::test_util::{bhs_from_words, digests, itt, lun};

    static R2T: [u32; 12] = [
        0x3180_0000,
        0,
        0,
        0,
        0x10,
        0xAB,
        4,
        5,
        36,
        0,
        0x2000,
        0x1_0000,
    ];

    #[test]
    fn parse_emit() {
        let b = bhs_from_words(R2T);
        let r = R2tRepr::parse(&b, Digests::NONE).unwrap();
        assert_eq!(
            r,
            R2tRepr {
                lun: Lun::single_level(0),
                itt: Itt(0x10),
                ttt: Ttt(0xAB),
                stat_sn: 4,
                exp_cmd_sn: 5,
                max_cmd_sn: 36,
                r2t_sn: 0,
                buffer_offset: 0x2000,
                desired_len: 0x1_0000,
            }
        );
        let mut out = [0u8; 48];
        assert_eq!(r.emit(&mut out, Digests::NONE), Ok(48));
        assert_eq!(out, b);
    }

    #[test]
    fn invalid() {
        let mut w = R2T;
        w[11] = 0;
        assert_eq!(
            R2tRepr::parse(&bhs_from_words(w), Digests::NONE),
            Err(Error::InvalidValue { offset: 44 })
        );
        let mut w = R2T;
        w[5] = 0xFFFF_FFFF;
        assert_eq!(
            R2tRepr::parse(&bhs_from_words(w), Digests::NONE),
            Err(Error::InvalidValue { offset: 20 })
        );
        let mut w = R2T;
        w[1] = 4; // data segment not allowed
        let mut b = bhs_from_words(w).to_vec();
        b.extend_from_slice(&[0; 4]);
        assert_eq!(
            R2tRepr::parse(&b, Digests::NONE),
            Err(Error::BadDataSegmentLength)
        );
    }

    proptest! {
        #[test]
        fn round_trip(lun in lun(), itt in itt(), ttt in 0u32..u32::MAX, w in any::<[u32; 5]>(),
                      desired in 1u32.., dg in digests()) {
            let r = R2tRepr {
                lun, itt, ttt: Ttt(ttt), stat_sn: w[0], exp_cmd_sn: w[1], max_cmd_sn: w[2],
                r2t_sn: w[3], buffer_offset: w[4], desired_len: desired,
            };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(R2tRepr::parse(&buf, dg), Ok(r));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100),
                              dg in digests()) {
            let _ = R2tRepr::parse(&bytes, dg);
        }
    }
}
