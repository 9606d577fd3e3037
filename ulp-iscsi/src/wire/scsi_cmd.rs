//! SCSI Command (0x01), RFC 7143 §11.3.
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 0 | 1 | 0x01, optionally with I (0x40) |
//! | 1 | 1 | F 0x80, R 0x40, W 0x20, ATTR 0x07 (0x18 reserved) |
//! | 8 | 8 | LUN |
//! | 16 | 4 | ITT |
//! | 20 | 4 | Expected Data Transfer Length |
//! | 24 | 4 | CmdSN |
//! | 28 | 4 | ExpStatSN |
//! | 32 | 16 | CDB (zero-padded) |
//!
//! CDB bytes beyond 16 travel in an Extended CDB AHS; bidirectional commands carry the read
//! length in an AHS (see [`super::ahs`]). The data segment is immediate data.

use super::ahs::CommandAhs;
use super::bhs::{FINAL_BIT, Packet};
use super::{Body, Error, Itt, Lun, Opcode, Result, impl_pdu, reserved_bits};

/// Byte 1: read bit.
pub const READ_BIT: u8 = 0x40;
/// Byte 1: write bit.
pub const WRITE_BIT: u8 = 0x20;
/// Byte 1: task attribute mask.
pub const ATTR_MASK: u8 = 0x07;

ulp_ddp_core::wire_codes! {
    /// Task attributes (byte 1 mask 0x07).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum TaskAttr: u8 {
        /// Untagged.
        Untagged = 0 => "untagged",
        /// Simple.
        Simple = 1 => "simple",
        /// Ordered.
        Ordered = 2 => "ordered",
        /// Head of queue.
        HeadOfQueue = 3 => "head of queue",
        /// ACA.
        Aca = 4 => "ACA",
    }
    unknown(raw) -> Error => Error::InvalidValue { offset: 1 };
}

/// A SCSI Command PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiCmdRepr<'a> {
    /// I bit.
    pub immediate: bool,
    /// F bit: no unsolicited Data-Out follows.
    pub final_: bool,
    /// R bit: data is expected from the target.
    pub read: bool,
    /// W bit: data is expected from the initiator.
    pub write: bool,
    /// Task attribute.
    pub attr: TaskAttr,
    /// LUN.
    pub lun: Lun,
    /// ITT.
    pub itt: Itt,
    /// Expected Data Transfer Length (bytes).
    pub expected_len: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// First 16 CDB bytes (zero-padded).
    pub cdb: [u8; 16],
    /// CDB bytes beyond 16 (Extended CDB AHS); empty for CDBs of 16 bytes or fewer.
    pub ext_cdb: &'a [u8],
    /// Bidirectional read expected length (AHS type 2).
    pub bidi_read_len: Option<u32>,
    /// Immediate data.
    pub data: &'a [u8],
}

impl ScsiCmdRepr<'_> {
    const fn ahs(&self) -> CommandAhs<'_> {
        CommandAhs {
            ext_cdb: self.ext_cdb,
            bidi_read_len: self.bidi_read_len,
        }
    }
}

impl<'a> Body<'a> for ScsiCmdRepr<'a> {
    const OPCODE: Opcode = Opcode::ScsiCommand;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        let a = CommandAhs::parse(ahs)?;
        reserved_bits(pkt, 1, 0x18)?;
        reserved_bits(pkt, 2, 0xFF)?;
        reserved_bits(pkt, 3, 0xFF)?;
        let flags = pkt.flags();
        let mut cdb = [0u8; 16];
        cdb.copy_from_slice(&pkt.as_bytes()[32..48]);
        Ok(Self {
            immediate: pkt.immediate(),
            final_: flags & FINAL_BIT != 0,
            read: flags & READ_BIT != 0,
            write: flags & WRITE_BIT != 0,
            attr: TaskAttr::try_from(flags & ATTR_MASK)?,
            lun: pkt.lun(),
            itt: pkt.itt(),
            expected_len: pkt.word(5),
            cmd_sn: pkt.word(6),
            exp_stat_sn: pkt.word(7),
            cdb,
            ext_cdb: a.ext_cdb,
            bidi_read_len: a.bidi_read_len,
            data,
        })
    }

    fn check(&self) -> Result<()> {
        self.ahs().check()
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        pkt.set_immediate(self.immediate);
        let mut flags = self.attr as u8;
        if self.final_ {
            flags |= FINAL_BIT;
        }
        if self.read {
            flags |= READ_BIT;
        }
        if self.write {
            flags |= WRITE_BIT;
        }
        pkt.set_flags(flags);
        pkt.set_lun(self.lun);
        pkt.set_itt(self.itt);
        pkt.set_word(5, self.expected_len);
        pkt.set_word(6, self.cmd_sn);
        pkt.set_word(7, self.exp_stat_sn);
        for (i, b) in self.cdb.iter().enumerate() {
            pkt.set_byte(32 + i, *b);
        }
    }

    fn ahs_len(&self) -> usize {
        self.ahs().len()
    }

    fn emit_ahs(&self, buf: &mut [u8]) {
        // Cannot fail: check() ran before and `buf` is exactly ahs_len() bytes.
        let _ = self.ahs().emit(buf);
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[self.data])
    }
}

impl_pdu!(ScsiCmdRepr);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::Digests;
    use crate::wire::test_util::{data, digests, itt, lun};

    /// RFC 3720 B.4 READ(10) command; header CRC32C 0xD9963A56 (wire 56 3A 96 D9).
    static RFC_READ: [u8; 52] = [
        0x01, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00,
        0x00, 0x18, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x56, 0x3A, 0x96, 0xD9,
    ];

    fn rfc_read_repr() -> ScsiCmdRepr<'static> {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x28;
        cdb[8] = 0x02;
        ScsiCmdRepr {
            immediate: false,
            final_: true,
            read: true,
            write: false,
            attr: TaskAttr::Untagged,
            lun: Lun::default(),
            itt: Itt(0x1400_0000),
            expected_len: 0x400,
            cmd_sn: 0x14,
            exp_stat_sn: 0x18,
            cdb,
            ext_cdb: &[],
            bidi_read_len: None,
            data: &[],
        }
    }

    #[test]
    fn parse_rfc_vector_with_header_digest() {
        let d = Digests {
            header: true,
            data: true,
        };
        assert_eq!(ScsiCmdRepr::parse(&RFC_READ, d), Ok(rfc_read_repr()));
        assert_eq!(
            ScsiCmdRepr::parse(&RFC_READ[..48], Digests::NONE),
            Ok(rfc_read_repr())
        );
        let mut bad = RFC_READ;
        bad[51] ^= 0x80;
        assert_eq!(
            ScsiCmdRepr::parse(&bad, d),
            Err(Error::HeaderDigestMismatch)
        );
    }

    #[test]
    fn emit_rfc_vector() {
        let mut buf = [0u8; 52];
        let d = Digests {
            header: true,
            data: false,
        };
        assert_eq!(rfc_read_repr().emit(&mut buf, d), Ok(52));
        assert_eq!(buf, RFC_READ);
    }

    #[test]
    fn reserved_and_attr() {
        let mut b = RFC_READ;
        b[1] |= 0x08;
        assert_eq!(
            ScsiCmdRepr::parse(&b[..48], Digests::NONE),
            Err(Error::Reserved { offset: 1 })
        );
        let mut b = RFC_READ;
        b[1] |= 0x05;
        assert_eq!(
            ScsiCmdRepr::parse(&b[..48], Digests::NONE),
            Err(Error::InvalidValue { offset: 1 })
        );
    }

    #[test]
    fn with_ahs() {
        let ext = [0xC0u8; 16]; // a 32-byte CDB
        let r = ScsiCmdRepr {
            ext_cdb: &ext,
            bidi_read_len: Some(512),
            ..rfc_read_repr()
        };
        let mut buf = [0u8; 128];
        let n = r.emit(&mut buf, Digests::BOTH).unwrap();
        // AHS: 4 + 16 = 20 bytes, then 8 bytes bidi = 28 = 7 words.
        assert_eq!(buf[4], 7);
        assert_eq!(&buf[48..52], &[0, 17, 1, 0]);
        assert_eq!(n, 48 + 28 + 4);
        assert_eq!(ScsiCmdRepr::parse(&buf[..n], Digests::BOTH), Ok(r));
        let too_long = [0u8; 245];
        let r = ScsiCmdRepr {
            ext_cdb: &too_long,
            ..rfc_read_repr()
        };
        assert_eq!(r.emit(&mut [0u8; 1024], Digests::NONE), Err(Error::BadAhs));
    }

    fn attr() -> impl Strategy<Value = TaskAttr> {
        (0u8..5).prop_map(|v| TaskAttr::try_from(v).unwrap())
    }

    proptest! {
        #[test]
        fn round_trip(flags in any::<[bool; 4]>(), attr in attr(), lun in lun(), itt in itt(),
                      w in any::<[u32; 3]>(), cdb in any::<[u8; 16]>(),
                      ext in proptest::collection::vec(any::<u8>(), 0..40),
                      bidi in proptest::option::of(any::<u32>()), d in data(),
                      dg in digests()) {
            let r = ScsiCmdRepr {
                immediate: flags[0], final_: flags[1], read: flags[2], write: flags[3], attr,
                lun, itt, expected_len: w[0], cmd_sn: w[1], exp_stat_sn: w[2], cdb,
                ext_cdb: &ext, bidi_read_len: bidi, data: &d,
            };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(ScsiCmdRepr::parse(&buf, dg), Ok(r));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..160),
                              dg in digests()) {
            let _ = ScsiCmdRepr::parse(&bytes, dg);
        }
    }
}
