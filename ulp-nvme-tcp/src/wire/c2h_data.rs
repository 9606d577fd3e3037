//! C2HData (type 0x07): read data, controller to host, HLEN 24.
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 0 | 8 | CH (FLAGS: HDGSTF, DDGSTF, LAST_PDU, SUCCESS) |
//! | 8 | 2 | CCCID (the command's CID) |
//! | 10 | 2 | reserved |
//! | 12 | 4 | DATAO: offset in the command's data buffer |
//! | 16 | 4 | DATAL: bytes of data in this PDU |
//! | 20 | 4 | reserved |
//!
//! DATA starts at PDO (aligned to the host's HPDA) and DATAL must equal PLEN − PDO − ddgst_len.
//! SUCCESS is only valid together with LAST_PDU.

use super::common::{self, Emitted, Layout};
use super::{Digests, Error, LAST_PDU, Pda, PduType, SUCCESS, le_fields, view_common};

/// HLEN of a C2HData PDU.
pub const HEADER_LEN: usize = 24;

mod field {
    pub(super) const FLAGS: usize = 1;
    pub(super) const CCCID: usize = 8;
    pub(super) const DATAO: usize = 12;
    pub(super) const DATAL: usize = 16;
}

/// A view over a C2HData header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

view_common!(Packet, HEADER_LEN);

le_fields! { Packet;
    /// FLAGS byte of the common header.
    flags / set_flags: u8 = field::FLAGS;
    /// Command capsule CID.
    cccid / set_cccid: u16 = field::CCCID;
    /// Data offset within the command's data.
    datao / set_datao: u32 = field::DATAO;
    /// Data length of this PDU.
    datal / set_datal: u32 = field::DATAL;
}

/// A validated C2HData header (the data itself is located by the [`Layout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Command capsule CID.
    pub cccid: u16,
    /// Data offset within the command's data.
    pub datao: u32,
    /// Data length of this PDU (at least 1).
    pub datal: u32,
    /// LAST_PDU: the last C2HData of the command.
    pub last_pdu: bool,
    /// SUCCESS: the command succeeded and no CapsuleResp follows (requires `last_pdu`).
    pub success: bool,
}

impl Repr {
    /// Parses a C2HData header from `bytes`, which must hold the header and HDGST (if
    /// negotiated); the data may follow or not. Verifies the header digest, not the data digest
    /// (see [`Layout::verify_data_digest`]).
    ///
    /// # Errors
    ///
    /// Any [`Layout::parse`] error, [`Error::UnexpectedPduType`], [`Error::Truncated`],
    /// [`Error::HeaderDigestMismatch`], [`Error::SuccessWithoutLastPdu`],
    /// [`Error::DatalMismatch`] or [`Error::DataRangeOverflow`].
    pub fn parse(bytes: &[u8], digests: Digests) -> Result<(Self, Layout), Error> {
        let layout = common::parse_header(bytes, digests, PduType::C2hData)?;
        Ok((Self::decode(bytes, &layout)?, layout))
    }

    /// Decodes the PDU-specific header fields from `header` (at least HLEN bytes), whose common
    /// header was already validated into `layout` and whose header digest (if any) was already
    /// verified: the receive engine's path, where each header is checked once.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`], [`Error::SuccessWithoutLastPdu`], [`Error::DatalMismatch`] or
    /// [`Error::DataRangeOverflow`].
    pub fn decode(header: &[u8], layout: &Layout) -> Result<Self, Error> {
        let p = Packet::new_checked(header)?;
        let flags = p.flags();
        let repr = Self {
            cccid: p.cccid(),
            datao: p.datao(),
            datal: p.datal(),
            last_pdu: flags & LAST_PDU != 0,
            success: flags & SUCCESS != 0,
        };
        repr.check(layout.data_len)?;
        Ok(repr)
    }

    fn check(&self, data_len: usize) -> Result<(), Error> {
        if self.success && !self.last_pdu {
            return Err(Error::SuccessWithoutLastPdu);
        }
        common::check_data_range(self.datao, self.datal, data_len)
    }

    const fn flags(&self) -> u8 {
        (if self.last_pdu { LAST_PDU } else { 0 }) | (if self.success { SUCCESS } else { 0 })
    }

    fn fill(&self, header: &mut [u8]) {
        let mut p = Packet::new_unchecked(header);
        p.set_cccid(self.cccid);
        p.set_datao(self.datao);
        p.set_datal(self.datal);
    }

    /// Writes header, HDGST and pad into `buf` (at most [`MAX_HEADER_SPACE`] bytes) for a PDU
    /// carrying `data`, and returns the data digest to send after `data`. The caller sends
    /// `buf[..header_len]`, then `data`, then the digest: the payload is never copied. `pda` is
    /// the host's HPDA.
    ///
    /// [`MAX_HEADER_SPACE`]: crate::wire::MAX_HEADER_SPACE
    ///
    /// # Errors
    ///
    /// [`Error::SuccessWithoutLastPdu`], [`Error::DatalMismatch`] (`data.len() != datal`),
    /// [`Error::DataRangeOverflow`], [`Error::BadDataLen`] or [`Error::BufferTooSmall`].
    pub fn emit_header(
        &self,
        buf: &mut [u8],
        digests: Digests,
        pda: Pda,
        data: &[u8],
    ) -> Result<Emitted, Error> {
        self.check(data.len())?;
        common::emit_header(
            buf,
            PduType::C2hData,
            self.flags(),
            digests,
            pda,
            data,
            |h| self.fill(h),
        )
    }

    /// Writes header, HDGST and pad into `buf` for a PDU carrying DATAL data bytes, without the
    /// data (so without its digest): a C2HData header re-encoded, e.g. as the error data of an
    /// H2CTermReq. `pda` is the host's HPDA.
    ///
    /// # Errors
    ///
    /// As [`emit_header`](Self::emit_header).
    pub fn emit_header_for_len(
        &self,
        buf: &mut [u8],
        digests: Digests,
        pda: Pda,
    ) -> Result<Emitted, Error> {
        let len = self.datal as usize;
        self.check(len)?;
        common::emit_header_sized(
            buf,
            PduType::C2hData,
            self.flags(),
            digests,
            pda,
            len,
            |h| self.fill(h),
        )
    }

    /// Appends the whole PDU (header, HDGST, pad, `data`, DDGST) to `out`.
    ///
    /// # Errors
    ///
    /// As [`emit_header`](Self::emit_header), except [`Error::BufferTooSmall`].
    pub fn emit(
        &self,
        out: &mut Vec<u8>,
        digests: Digests,
        pda: Pda,
        data: &[u8],
    ) -> Result<Layout, Error> {
        self.check(data.len())?;
        common::emit_vec(
            out,
            PduType::C2hData,
            self.flags(),
            digests,
            pda,
            data,
            |h| self.fill(h),
        )
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use ulp_ddp_core::digest::crc32c;

    use super::*;
    use crate::wire::{DDGSTF, HDGSTF, MAX_HEADER_SPACE};

    /// C2HData CID 5, DATAO 0x100, DATAL 9 ("123456789"), LAST_PDU|SUCCESS, data digest only.
    static C2H: [u8; 37] = [
        0x07, 0x0E, 0x18, 0x18, 0x25, 0x00, 0x00,
        0x00, // CH: flags DDGSTF|LAST|SUCCESS, PLEN 37
        0x05, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, // CCCID, reserved, DATAO
        0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // DATAL, reserved
        b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'8', b'9', // DATA
        0x83, 0x92, 0x06, 0xE3, // DDGST = CRC32C("123456789"), LSB first
    ];
    const DD: Digests = Digests {
        header: false,
        data: true,
    };

    fn repr() -> Repr {
        Repr {
            cccid: 5,
            datao: 0x100,
            datal: 9,
            last_pdu: true,
            success: true,
        }
    }

    #[test]
    fn deconstruct() {
        let (r, l) = Repr::parse(&C2H, DD).unwrap();
        assert_eq!(r, repr());
        assert_eq!(l.data(&C2H).unwrap(), b"123456789");
        assert_eq!(l.received_ddgst(&C2H), Ok(Some(0xE306_9283)));
        assert_eq!(l.verify_data_digest(&C2H), Ok(()));
        // Only the header is needed to parse.
        assert_eq!(Repr::parse(&C2H[..24], DD).unwrap().0, repr());
    }

    #[test]
    fn construct() {
        let mut out = Vec::new();
        repr().emit(&mut out, DD, Pda::ZERO, b"123456789").unwrap();
        assert_eq!(out, C2H);
        let mut buf = [0u8; MAX_HEADER_SPACE];
        let e = repr()
            .emit_header(&mut buf, DD, Pda::ZERO, b"123456789")
            .unwrap();
        assert_eq!(buf[..e.header_len], C2H[..24]);
        assert_eq!(e.ddgst, Some([0x83, 0x92, 0x06, 0xE3]));
    }

    #[test]
    fn data_digest_mismatch_is_not_a_parse_error() {
        let mut b = C2H;
        b[30] ^= 1;
        let (_, l) = Repr::parse(&b, DD).unwrap();
        assert_eq!(
            l.verify_data_digest(&b),
            Err(Error::DataDigestMismatch {
                expected: crc32c(&b[24..33]),
                received: 0xE306_9283
            })
        );
        assert_eq!(
            l.verify_data_digest(&b[..36]),
            Err(Error::Truncated { need: 37, have: 36 })
        );
    }

    #[test]
    fn success_without_last() {
        let mut b = C2H;
        b[1] = DDGSTF | SUCCESS;
        assert_eq!(Repr::parse(&b, DD), Err(Error::SuccessWithoutLastPdu));
        let r = Repr {
            last_pdu: false,
            ..repr()
        };
        assert_eq!(
            r.emit(&mut Vec::new(), DD, Pda::ZERO, b"123456789"),
            Err(Error::SuccessWithoutLastPdu)
        );
    }

    #[test]
    fn datal_mismatch() {
        let mut b = C2H;
        b[16] = 8;
        assert_eq!(
            Repr::parse(&b, DD),
            Err(Error::DatalMismatch {
                datal: 8,
                data_len: 9
            })
        );
        assert_eq!(
            repr().emit(&mut Vec::new(), DD, Pda::ZERO, b"1234"),
            Err(Error::DatalMismatch {
                datal: 9,
                data_len: 4
            })
        );
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Repr::parse(&C2H[..23], DD),
            Err(Error::Truncated { need: 24, have: 23 })
        );
        assert_eq!(
            Repr::parse(&C2H[..5], DD),
            Err(Error::Truncated { need: 8, have: 5 })
        );
    }

    #[test]
    fn impossible_len() {
        // PDO past the data.
        let mut b = C2H;
        b[3] = 40;
        assert!(matches!(Repr::parse(&b, DD), Err(Error::BadPlen { .. })));
        // PDO inside the header.
        let mut b = C2H;
        b[3] = 20;
        assert!(matches!(Repr::parse(&b, DD), Err(Error::BadPdo { .. })));
        // PLEN 0.
        let mut b = C2H;
        b[4] = 0;
        assert!(matches!(Repr::parse(&b, DD), Err(Error::BadPlen { .. })));
        // No data at all.
        let mut b = C2H;
        b[3] = 0;
        assert!(matches!(
            Repr::parse(&b, DD),
            Err(Error::BadPdo { pdo: 0, .. })
        ));
        assert!(matches!(
            Repr { datal: 0, ..repr() }.emit(&mut Vec::new(), DD, Pda::ZERO, &[]),
            Err(Error::BadDataLen { .. })
        ));
    }

    #[test]
    fn hpda_padding_and_header_digest() {
        let data = [0xA5u8; 16];
        let r = Repr {
            datal: 16,
            success: false,
            ..repr()
        };
        let pda = Pda::new(7).unwrap(); // 32-byte alignment
        let mut out = Vec::new();
        let l = r.emit(&mut out, Digests::BOTH, pda, &data).unwrap();
        assert_eq!((l.pdo, l.pad, l.plen), (32, 4, 52));
        assert_eq!(out[1], HDGSTF | DDGSTF | LAST_PDU);
        assert_eq!(out[24..28], crc32c(&out[..24]).to_le_bytes());
        assert_eq!(out[28..32], [0; 4]);
        assert_eq!(out[32..48], data);
        // Data digest covers DATA only, not the pad.
        assert_eq!(out[48..], crc32c(&data).to_le_bytes());
        let (p, pl) = Repr::parse(&out, Digests::BOTH).unwrap();
        assert_eq!((p, pl), (r, l));
        assert_eq!(pl.check_alignment(pda), Ok(()));
        // Pad content is ignored by the receiver.
        out[29] = 0xFF;
        assert_eq!(Repr::parse(&out, Digests::BOTH).unwrap().0, r);
    }

    #[test]
    fn endianness() {
        let data = [0u8; 0x104];
        let r = Repr {
            datal: 0x104,
            ..repr()
        };
        let mut out = Vec::new();
        r.emit(&mut out, Digests::NONE, Pda::ZERO, &data).unwrap();
        assert_eq!(out[16..20], [0x04, 0x01, 0x00, 0x00]);
        assert_eq!(out[4..8], [0x1C, 0x01, 0x00, 0x00]); // PLEN 24 + 0x104
    }

    proptest! {
        #[test]
        fn round_trip(cccid in any::<u16>(), datao in any::<u32>(),
                      data in prop::collection::vec(any::<u8>(), 1..300),
                      last in any::<bool>(), success in any::<bool>(),
                      h in any::<bool>(), d in any::<bool>(), pda in 0u8..32) {
            let datal = data.len() as u32;
            let datao = datao.min(u32::MAX - datal);
            let r = Repr { cccid, datao, datal, last_pdu: last || success, success };
            let digests = Digests { header: h, data: d };
            let pda = Pda::new(pda).unwrap();
            let mut out = Vec::new();
            let l = r.emit(&mut out, digests, pda, &data).unwrap();
            prop_assert_eq!(out.len(), l.plen);
            prop_assert_eq!(Repr::parse(&out, digests), Ok((r, l)));
            prop_assert_eq!(l.data(&out), Ok(&data[..]));
            prop_assert_eq!(l.verify_data_digest(&out), Ok(()));
            prop_assert_eq!(l.check_alignment(pda), Ok(()));
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64),
                              h in any::<bool>(), d in any::<bool>()) {
            let digests = Digests { header: h, data: d };
            if let Ok((_, l)) = Repr::parse(&bytes, digests) {
                let _ = l.data(&bytes);
                let _ = l.verify_data_digest(&bytes);
            }
        }
    }
}
