//! SCSI Data-In (0x25), RFC 7143 §11.7.
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 1 | 1 | F 0x80, A 0x40, O 0x04, U 0x02, S 0x01 |
//! | 3 | 1 | Status (valid only if S) |
//! | 8 | 8 | LUN (required when A is set) |
//! | 16 | 4 | ITT |
//! | 20 | 4 | TTT |
//! | 24 | 4 | StatSN (valid only if S) |
//! | 28 | 4 | ExpCmdSN |
//! | 32 | 4 | MaxCmdSN |
//! | 36 | 4 | DataSN |
//! | 40 | 4 | Buffer Offset |
//! | 44 | 4 | Residual Count (valid only if S) |
//!
//! S (status present, "phase collapse") requires F. The status byte, O/U, StatSN and Residual
//! Count are meaningful only with S, so [`DataInRepr::status`] is an `Option`; without S they
//! are ignored on parse and written as zero.

use super::bhs::{FINAL_BIT, Packet};
use super::{Body, Error, Itt, Lun, Opcode, Result, Ttt, impl_pdu, no_ahs, reserved_bits};

/// Byte 1: acknowledge requested.
pub const ACK_BIT: u8 = 0x40;
/// Byte 1: residual overflow.
pub const OVERFLOW_BIT: u8 = 0x04;
/// Byte 1: residual underflow.
pub const UNDERFLOW_BIT: u8 = 0x02;
/// Byte 1: status present.
pub const STATUS_BIT: u8 = 0x01;

/// The status part of a Data-In with S set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataInStatus {
    /// SCSI status (byte 3).
    pub status: u8,
    /// StatSN.
    pub stat_sn: u32,
    /// O: residual overflow.
    pub overflow: bool,
    /// U: residual underflow.
    pub underflow: bool,
    /// Residual Count.
    pub residual: u32,
}

/// A SCSI Data-In PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataInRepr<'a> {
    /// F bit: last PDU of the sequence.
    pub final_: bool,
    /// A bit: the target asks for a DataACK SNACK.
    pub ack: bool,
    /// Status (S bit set) — requires `final_`.
    pub status: Option<DataInStatus>,
    /// LUN.
    pub lun: Lun,
    /// ITT.
    pub itt: Itt,
    /// TTT (0xFFFFFFFF unless A is set).
    pub ttt: Ttt,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// DataSN.
    pub data_sn: u32,
    /// Buffer Offset of the data segment within the command's buffer.
    pub buffer_offset: u32,
    /// Data.
    pub data: &'a [u8],
}

impl<'a> Body<'a> for DataInRepr<'a> {
    const OPCODE: Opcode = Opcode::DataIn;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        no_ahs(ahs)?;
        reserved_bits(pkt, 0, 0x40)?;
        reserved_bits(pkt, 1, 0x38)?;
        let flags = pkt.flags();
        let final_ = flags & FINAL_BIT != 0;
        let status = if flags & STATUS_BIT != 0 {
            //= https://www.rfc-editor.org/rfc/rfc7143#section-11.7.4
            //# If the S bit is set to 1, the F bit MUST also be set to 1.
            if !final_ {
                return Err(Error::FlagConflict { offset: 1 });
            }
            let overflow = flags & OVERFLOW_BIT != 0;
            let underflow = flags & UNDERFLOW_BIT != 0;
            if overflow && underflow {
                return Err(Error::FlagConflict { offset: 1 });
            }
            Some(DataInStatus {
                status: pkt.byte(3),
                stat_sn: pkt.word(6),
                overflow,
                underflow,
                residual: pkt.word(11),
            })
        } else {
            None
        };
        Ok(Self {
            final_,
            ack: flags & ACK_BIT != 0,
            status,
            lun: pkt.lun(),
            itt: pkt.itt(),
            ttt: Ttt(pkt.word(5)),
            exp_cmd_sn: pkt.word(7),
            max_cmd_sn: pkt.word(8),
            data_sn: pkt.word(9),
            buffer_offset: pkt.word(10),
            data,
        })
    }

    fn check(&self) -> Result<()> {
        match self.status {
            Some(_) if !self.final_ => Err(Error::FlagConflict { offset: 1 }),
            Some(s) if s.overflow && s.underflow => Err(Error::FlagConflict { offset: 1 }),
            _ => Ok(()),
        }
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        let mut flags = 0;
        if self.final_ {
            flags |= FINAL_BIT;
        }
        if self.ack {
            flags |= ACK_BIT;
        }
        if let Some(s) = self.status {
            flags |= STATUS_BIT;
            if s.overflow {
                flags |= OVERFLOW_BIT;
            }
            if s.underflow {
                flags |= UNDERFLOW_BIT;
            }
            pkt.set_byte(3, s.status);
            pkt.set_word(6, s.stat_sn);
            pkt.set_word(11, s.residual);
        }
        pkt.set_flags(flags);
        pkt.set_lun(self.lun);
        pkt.set_itt(self.itt);
        pkt.set_word(5, self.ttt.0);
        pkt.set_word(7, self.exp_cmd_sn);
        pkt.set_word(8, self.max_cmd_sn);
        pkt.set_word(9, self.data_sn);
        pkt.set_word(10, self.buffer_offset);
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[self.data])
    }
}

impl_pdu!(DataInRepr);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::Digests;
    use crate::wire::test_util::{bhs_from_words, data, digests, itt, lun, ttt};

    /// Last Data-In of a READ, phase-collapsed GOOD status, 6 data bytes at offset 0x200.
    fn fixture() -> Vec<u8> {
        let mut b = bhs_from_words([
            0x2581_0000,
            6,
            0,
            0,
            0x42,
            0xFFFF_FFFF,
            17,
            30,
            61,
            2,
            0x200,
            0,
        ])
        .to_vec();
        b.extend_from_slice(&[1, 2, 3, 4, 5, 6, 0, 0]);
        b
    }

    #[test]
    fn parse_collapsed() {
        let fx = fixture();
        let r = DataInRepr::parse(&fx, Digests::NONE).unwrap();
        assert!(r.final_ && !r.ack);
        assert_eq!(
            r.status,
            Some(DataInStatus {
                status: 0,
                stat_sn: 17,
                overflow: false,
                underflow: false,
                residual: 0
            })
        );
        assert_eq!((r.itt, r.ttt), (Itt(0x42), Ttt::RESERVED));
        assert_eq!(
            (r.exp_cmd_sn, r.max_cmd_sn, r.data_sn, r.buffer_offset),
            (30, 61, 2, 0x200)
        );
        assert_eq!(r.data, &[1, 2, 3, 4, 5, 6]);
        let mut out = vec![0u8; 56];
        assert_eq!(r.emit(&mut out, Digests::NONE), Ok(56));
        assert_eq!(out, fixture());
    }

    #[test]
    fn s_requires_f() {
        let mut b = fixture();
        b[1] = 0x01;
        assert_eq!(
            DataInRepr::parse(&b, Digests::NONE),
            Err(Error::FlagConflict { offset: 1 })
        );
        let fx = fixture();
        let mut r = DataInRepr::parse(&fx, Digests::NONE).unwrap();
        r.final_ = false;
        assert_eq!(
            r.emit(&mut [0u8; 64], Digests::NONE),
            Err(Error::FlagConflict { offset: 1 })
        );
    }

    #[test]
    fn status_fields_ignored_without_s() {
        let mut b = fixture();
        b[1] = 0x80;
        b[3] = 0x02;
        let r = DataInRepr::parse(&b, Digests::NONE).unwrap();
        assert_eq!(r.status, None);
        assert_eq!(r.data_sn, 2);
    }

    #[test]
    fn truncated_and_impossible() {
        let b = fixture();
        assert_eq!(
            DataInRepr::parse(&b[..55], Digests::NONE),
            Err(Error::Truncated { need: 56, have: 55 })
        );
        let mut b = fixture();
        b[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
        assert!(matches!(
            DataInRepr::parse(&b, Digests::NONE),
            Err(Error::Truncated { .. })
        ));
        // Data digest expected but missing.
        assert!(matches!(
            DataInRepr::parse(&fixture(), Digests::BOTH),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn data_digest_covers_pad() {
        let fx = fixture();
        let r = DataInRepr::parse(&fx, Digests::NONE).unwrap();
        let d = Digests {
            header: false,
            data: true,
        };
        let mut out = [0u8; 60];
        assert_eq!(r.emit(&mut out, d), Ok(60));
        assert_eq!(
            out[56..60],
            ulp_ddp_core::digest::crc32c(&[1, 2, 3, 4, 5, 6, 0, 0]).to_le_bytes()
        );
        let h = r.emit_header(&mut [0u8; 48], d).unwrap();
        assert_eq!(h.data_digest, Some([out[56], out[57], out[58], out[59]]));
    }

    fn status() -> impl Strategy<Value = Option<DataInStatus>> {
        proptest::option::of((any::<u8>(), any::<u32>(), 0u8..3, any::<u32>()).prop_map(
            |(status, stat_sn, ou, residual)| DataInStatus {
                status,
                stat_sn,
                overflow: ou == 1,
                underflow: ou == 2,
                residual,
            },
        ))
    }

    proptest! {
        #[test]
        fn round_trip(final_ in any::<bool>(), ack in any::<bool>(), status in status(),
                      lun in lun(), itt in itt(), ttt in ttt(), w in any::<[u32; 4]>(),
                      d in data(), dg in digests()) {
            let r = DataInRepr {
                final_: final_ || status.is_some(), ack, status, lun, itt, ttt,
                exp_cmd_sn: w[0], max_cmd_sn: w[1], data_sn: w[2], buffer_offset: w[3],
                data: &d,
            };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(DataInRepr::parse(&buf, dg), Ok(r));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128),
                              dg in digests()) {
            let _ = DataInRepr::parse(&bytes, dg);
        }
    }
}
