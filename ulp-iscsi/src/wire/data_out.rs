//! SCSI Data-Out (0x05), RFC 7143 §11.8.
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 0 | 1 | 0x05 (never immediate) |
//! | 1 | 1 | F 0x80 on the last PDU of the sequence |
//! | 8 | 8 | LUN |
//! | 16 | 4 | ITT |
//! | 20 | 4 | TTT from the R2T, or 0xFFFFFFFF for unsolicited data |
//! | 28 | 4 | ExpStatSN |
//! | 36 | 4 | DataSN |
//! | 40 | 4 | Buffer Offset |

use super::bhs::{FINAL_BIT, Packet};
use super::{Body, Itt, Lun, Opcode, Result, Ttt, impl_pdu, no_ahs, reserved_bits};

/// A SCSI Data-Out PDU.
///
/// To send a large payload without copying it, use [`DataOutRepr::emit_header`] and send
/// `data` from its own buffer, followed by the pad and data digest it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataOutRepr<'a> {
    /// F bit: last PDU of the R2T or unsolicited sequence.
    pub final_: bool,
    /// LUN.
    pub lun: Lun,
    /// ITT.
    pub itt: Itt,
    /// TTT.
    pub ttt: Ttt,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// DataSN (restarts at 0 for each sequence).
    pub data_sn: u32,
    /// Buffer Offset.
    pub buffer_offset: u32,
    /// Data.
    pub data: &'a [u8],
}

impl<'a> Body<'a> for DataOutRepr<'a> {
    const OPCODE: Opcode = Opcode::DataOut;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        no_ahs(ahs)?;
        reserved_bits(pkt, 0, 0x40)?;
        reserved_bits(pkt, 1, 0x7F)?;
        Ok(Self {
            final_: pkt.final_flag(),
            lun: pkt.lun(),
            itt: pkt.itt(),
            ttt: Ttt(pkt.word(5)),
            exp_stat_sn: pkt.word(7),
            data_sn: pkt.word(9),
            buffer_offset: pkt.word(10),
            data,
        })
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        pkt.set_flags(if self.final_ { FINAL_BIT } else { 0 });
        pkt.set_lun(self.lun);
        pkt.set_itt(self.itt);
        pkt.set_word(5, self.ttt.0);
        pkt.set_word(7, self.exp_stat_sn);
        pkt.set_word(9, self.data_sn);
        pkt.set_word(10, self.buffer_offset);
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[self.data])
    }
}

impl_pdu!(DataOutRepr);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::test_util::{bhs_from_words, data, digests, itt, lun, ttt};
    use crate::wire::{Digests, Error};

    #[test]
    fn parse_emit() {
        let mut b = bhs_from_words([0x0580_0000, 3, 0, 0, 9, 0x77, 0, 5, 0, 1, 0x1000, 0]).to_vec();
        b.extend_from_slice(&[0xAA, 0xBB, 0xCC, 0]);
        let r = DataOutRepr::parse(&b, Digests::NONE).unwrap();
        assert_eq!(
            r,
            DataOutRepr {
                final_: true,
                lun: Lun::default(),
                itt: Itt(9),
                ttt: Ttt(0x77),
                exp_stat_sn: 5,
                data_sn: 1,
                buffer_offset: 0x1000,
                data: &[0xAA, 0xBB, 0xCC],
            }
        );
        let mut out = [0u8; 52];
        assert_eq!(r.emit(&mut out, Digests::NONE), Ok(52));
        assert_eq!(out[..], b[..]);
        b[0] = 0x45;
        assert_eq!(
            DataOutRepr::parse(&b, Digests::NONE),
            Err(Error::Reserved { offset: 0 })
        );
    }

    #[test]
    fn header_only_emit_for_zero_copy() {
        let payload = vec![0x5Au8; 8193];
        let r = DataOutRepr {
            final_: true,
            lun: Lun::single_level(2),
            itt: Itt(1),
            ttt: Ttt::RESERVED,
            exp_stat_sn: 0,
            data_sn: 0,
            buffer_offset: 0,
            data: &payload,
        };
        let mut hdr = [0u8; 52];
        let h = r.emit_header(&mut hdr, Digests::BOTH).unwrap();
        assert_eq!((h.header_len, h.data_len, h.pad_len), (52, 8193, 3));
        // Reassemble what a writer would send and parse it back.
        let mut wire = hdr[..h.header_len].to_vec();
        wire.extend_from_slice(&payload);
        wire.extend_from_slice(&crate::wire::PAD[..h.pad_len]);
        wire.extend_from_slice(&h.data_digest.unwrap());
        assert_eq!(wire.len(), h.total_len);
        assert_eq!(DataOutRepr::parse(&wire, Digests::BOTH), Ok(r));
        assert_eq!(
            r.emit_header(&mut [0u8; 51], Digests::BOTH),
            Err(Error::BufferTooSmall { need: 52, have: 51 })
        );
    }

    proptest! {
        #[test]
        fn round_trip(final_ in any::<bool>(), lun in lun(), itt in itt(), ttt in ttt(),
                      w in any::<[u32; 3]>(), d in data(), dg in digests()) {
            let r = DataOutRepr {
                final_, lun, itt, ttt, exp_stat_sn: w[0], data_sn: w[1], buffer_offset: w[2],
                data: &d,
            };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(DataOutRepr::parse(&buf, dg), Ok(r));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128),
                              dg in digests()) {
            let _ = DataOutRepr::parse(&bytes, dg);
        }
    }
}
