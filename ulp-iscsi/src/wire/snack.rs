//! SNACK Request (0x10), RFC 7143 §11.16.
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 1 | 1 | 0x80 \| Type (mask 0x0F) |
//! | 8 | 8 | LUN |
//! | 16 | 4 | ITT |
//! | 20 | 4 | TTT or SNACK Tag |
//! | 28 | 4 | ExpStatSN |
//! | 40 | 4 | BegRun |
//! | 44 | 4 | RunLength |

use super::bhs::{FINAL_BIT, Packet};
use super::{Body, Error, Itt, Lun, Opcode, Result, Ttt, impl_pdu, no_ahs, no_data, reserved_bits};

ulp_ddp_core::wire_codes! {
    /// SNACK types.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum SnackType: u8 {
        /// Data/R2T SNACK.
        DataR2t = 0 => "Data/R2T SNACK",
        /// Status SNACK.
        Status = 1 => "status SNACK",
        /// DataACK.
        DataAck = 2 => "DataACK",
        /// R-Data SNACK.
        RData = 3 => "R-Data SNACK",
    }
    unknown(raw) -> Error => Error::InvalidValue { offset: 1 };
}

/// A SNACK Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnackRepr {
    /// Type.
    pub snack_type: SnackType,
    /// LUN.
    pub lun: Lun,
    /// ITT.
    pub itt: Itt,
    /// TTT (DataACK) or SNACK Tag (R-Data).
    pub ttt: Ttt,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// BegRun.
    pub beg_run: u32,
    /// RunLength.
    pub run_length: u32,
}

impl<'a> Body<'a> for SnackRepr {
    const OPCODE: Opcode = Opcode::SnackRequest;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        no_ahs(ahs)?;
        no_data(data)?;
        reserved_bits(pkt, 0, 0x40)?;
        reserved_bits(pkt, 1, 0x70)?;
        if !pkt.final_flag() {
            return Err(Error::InvalidValue { offset: 1 });
        }
        Ok(Self {
            snack_type: SnackType::try_from(pkt.flags() & 0x0F)?,
            lun: pkt.lun(),
            itt: pkt.itt(),
            ttt: Ttt(pkt.word(5)),
            exp_stat_sn: pkt.word(7),
            beg_run: pkt.word(10),
            run_length: pkt.word(11),
        })
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        pkt.set_flags(FINAL_BIT | self.snack_type as u8);
        pkt.set_lun(self.lun);
        pkt.set_itt(self.itt);
        pkt.set_word(5, self.ttt.0);
        pkt.set_word(7, self.exp_stat_sn);
        pkt.set_word(10, self.beg_run);
        pkt.set_word(11, self.run_length);
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[])
    }
}

impl_pdu!(SnackRepr, 'static);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::Digests;
    use crate::wire::test_util::{bhs_from_words, digests, itt, lun, ttt};

    #[test]
    fn status_snack() {
        let b = bhs_from_words([0x1081_0000, 0, 0, 0, 0xFFFF_FFFF, 0, 0, 9, 0, 0, 7, 2]);
        let r = SnackRepr::parse(&b, Digests::NONE).unwrap();
        assert_eq!(
            (r.snack_type, r.beg_run, r.run_length),
            (SnackType::Status, 7, 2)
        );
        let mut out = [0u8; 48];
        r.emit(&mut out, Digests::NONE).unwrap();
        assert_eq!(out, b);
        let bad = bhs_from_words([0x1084_0000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            SnackRepr::parse(&bad, Digests::NONE),
            Err(Error::InvalidValue { offset: 1 })
        );
    }

    proptest! {
        #[test]
        fn round_trip(t in 0u8..4, lun in lun(), itt in itt(), ttt in ttt(),
                      w in any::<[u32; 3]>(), dg in digests()) {
            let r = SnackRepr {
                snack_type: SnackType::try_from(t).unwrap(), lun, itt, ttt, exp_stat_sn: w[0],
                beg_run: w[1], run_length: w[2],
            };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(SnackRepr::parse(&buf, dg), Ok(r));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100),
                              dg in digests()) {
            let _ = SnackRepr::parse(&bytes, dg);
        }
    }
}
