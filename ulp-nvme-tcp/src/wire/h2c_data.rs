//! H2CData (type 0x06): write data, host to controller, HLEN 24.
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 0 | 8 | CH (FLAGS: HDGSTF, DDGSTF, LAST_PDU) |
//! | 8 | 2 | CCCID (the command's CID) |
//! | 10 | 2 | TTAG (copied from the R2T) |
//! | 12 | 4 | DATAO: offset in the command's data buffer |
//! | 16 | 4 | DATAL: bytes of data in this PDU |
//! | 20 | 4 | reserved |
//!
//! DATA starts at PDO (aligned to the controller's CPDA) and DATAL must equal
//! PLEN − PDO − ddgst_len. LAST_PDU marks the last PDU of the data solicited by the current R2T
//! (not of the command). DATAL should not exceed the controller's MAXH2CDATA; that limit is the
//! engine's to enforce.

use super::common::{self, Emitted, Layout};
use super::{Digests, Error, LAST_PDU, Pda, PduType, le_fields, view_common};

/// HLEN of an H2CData PDU.
pub const HEADER_LEN: usize = 24;

mod field {
    pub(super) const FLAGS: usize = 1;
    pub(super) const CCCID: usize = 8;
    pub(super) const TTAG: usize = 10;
    pub(super) const DATAO: usize = 12;
    pub(super) const DATAL: usize = 16;
}

/// A view over an H2CData header.
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
    /// Transfer tag from the R2T.
    ttag / set_ttag: u16 = field::TTAG;
    /// Data offset within the command's data.
    datao / set_datao: u32 = field::DATAO;
    /// Data length of this PDU.
    datal / set_datal: u32 = field::DATAL;
}

/// A validated H2CData header (the data itself is located by the [`Layout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Command capsule CID.
    pub cccid: u16,
    /// Transfer tag from the R2T.
    pub ttag: u16,
    /// Data offset within the command's data.
    pub datao: u32,
    /// Data length of this PDU (at least 1).
    pub datal: u32,
    /// LAST_PDU: the last H2CData of the data solicited by the current R2T.
    pub last_pdu: bool,
}

impl Repr {
    /// Parses a H2CData header from `bytes`, which must hold the header and HDGST (if
    /// negotiated); the data may follow or not. Verifies the header digest, not the data digest
    /// (see [`Layout::verify_data_digest`]).
    ///
    /// # Errors
    ///
    /// Any [`Layout::parse`] error, [`Error::UnexpectedPduType`], [`Error::Truncated`],
    /// [`Error::HeaderDigestMismatch`], [`Error::DatalMismatch`] or
    /// [`Error::DataRangeOverflow`].
    pub fn parse(bytes: &[u8], digests: Digests) -> Result<(Self, Layout), Error> {
        let layout = common::parse_header(bytes, digests, PduType::H2cData)?;
        let p = Packet::new_checked(bytes)?;
        let flags = p.flags();
        let repr = Self {
            cccid: p.cccid(),
            ttag: p.ttag(),
            datao: p.datao(),
            datal: p.datal(),
            last_pdu: flags & LAST_PDU != 0,
        };
        repr.check(layout.data_len)?;
        Ok((repr, layout))
    }

    fn check(&self, data_len: usize) -> Result<(), Error> {
        common::check_data_range(self.datao, self.datal, data_len)
    }

    const fn flags(&self) -> u8 {
        if self.last_pdu { LAST_PDU } else { 0 }
    }

    fn fill(&self, header: &mut [u8]) {
        let mut p = Packet::new_unchecked(header);
        p.set_cccid(self.cccid);
        p.set_ttag(self.ttag);
        p.set_datao(self.datao);
        p.set_datal(self.datal);
    }

    /// Writes header, HDGST and pad into `buf` (at most [`MAX_HEADER_SPACE`] bytes) for a PDU
    /// carrying `data`, and returns the data digest to send after `data`. The caller sends
    /// `buf[..header_len]`, then `data`, then the digest: the payload is never copied. `pda` is
    /// the controller's CPDA.
    ///
    /// [`MAX_HEADER_SPACE`]: crate::wire::MAX_HEADER_SPACE
    ///
    /// # Errors
    ///
    /// [`Error::DatalMismatch`] (`data.len() != datal`), [`Error::DataRangeOverflow`], [`Error::BadDataLen`] or [`Error::BufferTooSmall`].
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
            PduType::H2cData,
            self.flags(),
            digests,
            pda,
            data,
            |h| self.fill(h),
        )
    }

    /// [`emit_header`](Self::emit_header) for data given in pieces (a scatter-gather write
    /// buffer), sent after the header without copying.
    ///
    /// # Errors
    ///
    /// As [`emit_header`](Self::emit_header).
    pub fn emit_header_parts(
        &self,
        buf: &mut [u8],
        digests: Digests,
        pda: Pda,
        parts: &[&[u8]],
    ) -> Result<Emitted, Error> {
        self.check(parts.iter().map(|p| p.len()).sum())?;
        common::emit_header_parts(
            buf,
            PduType::H2cData,
            self.flags(),
            digests,
            pda,
            parts,
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
            PduType::H2cData,
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
    use crate::wire::{DDGSTF, HDGSTF, MAX_HEADER_SPACE, SUCCESS};

    /// H2CData CID 0x0102, TTAG 0x0304, DATAO 0x1000, DATAL 8, LAST_PDU, no digests.
    static H2C: [u8; 32] = [
        0x06, 0x04, 0x18, 0x18, 0x20, 0x00, 0x00, 0x00, // CH: LAST_PDU, PDO 24, PLEN 32
        0x02, 0x01, 0x04, 0x03, 0x00, 0x10, 0x00, 0x00, // CCCID, TTAG, DATAO
        0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // DATAL, reserved
        1, 2, 3, 4, 5, 6, 7, 8, // DATA
    ];

    fn repr() -> Repr {
        Repr {
            cccid: 0x0102,
            ttag: 0x0304,
            datao: 0x1000,
            datal: 8,
            last_pdu: true,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&H2C[..]).unwrap();
        assert_eq!(
            (p.cccid(), p.ttag(), p.datao(), p.datal()),
            (0x0102, 0x0304, 0x1000, 8)
        );
        let (r, l) = Repr::parse(&H2C, Digests::NONE).unwrap();
        assert_eq!(r, repr());
        assert_eq!(l.data(&H2C).unwrap(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(l.received_ddgst(&H2C), Ok(None));
        assert_eq!(l.verify_data_digest(&H2C), Ok(()));
    }

    #[test]
    fn construct() {
        let mut out = Vec::new();
        repr()
            .emit(&mut out, Digests::NONE, Pda::ZERO, &H2C[24..])
            .unwrap();
        assert_eq!(out, H2C);
    }

    #[test]
    fn zero_copy_emit_with_cpda() {
        let data = b"123456789";
        let r = Repr {
            datal: 9,
            last_pdu: false,
            ..repr()
        };
        let mut buf = [0u8; MAX_HEADER_SPACE];
        let pda = Pda::MAX;
        let e = r.emit_header(&mut buf, Digests::BOTH, pda, data).unwrap();
        assert_eq!(e.header_len, 128);
        assert_eq!(e.ddgst, Some([0x83, 0x92, 0x06, 0xE3]));
        assert_eq!(buf[1], HDGSTF | DDGSTF);
        assert_eq!(buf[3], 128);
        assert_eq!(buf[24..28], crc32c(&buf[..24]).to_le_bytes());
        let mut wire = buf[..e.header_len].to_vec();
        wire.extend_from_slice(data);
        wire.extend_from_slice(&e.ddgst.unwrap());
        assert_eq!(wire.len(), e.layout.plen);
        let (p, l) = Repr::parse(&wire, Digests::BOTH).unwrap();
        assert_eq!((p, l), (r, e.layout));
        assert_eq!(l.verify_data_digest(&wire), Ok(()));
    }

    #[test]
    fn success_flag_is_invalid_on_h2c() {
        let mut b = H2C;
        b[1] |= SUCCESS;
        assert!(matches!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::InvalidFlags { .. })
        ));
    }

    #[test]
    fn digest_flags_required_when_negotiated() {
        assert!(matches!(
            Repr::parse(
                &H2C,
                Digests {
                    header: false,
                    data: true
                }
            ),
            Err(Error::DigestFlag { .. })
        ));
        assert!(matches!(
            Repr::parse(
                &H2C,
                Digests {
                    header: true,
                    data: false
                }
            ),
            Err(Error::DigestFlag { .. })
        ));
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Repr::parse(&H2C[..12], Digests::NONE),
            Err(Error::Truncated { need: 24, have: 12 })
        );
        let (_, l) = Repr::parse(&H2C, Digests::NONE).unwrap();
        assert_eq!(
            l.data(&H2C[..30]),
            Err(Error::Truncated { need: 32, have: 30 })
        );
        let mut small = [0u8; 20];
        assert_eq!(
            repr().emit_header(&mut small, Digests::NONE, Pda::ZERO, &H2C[24..]),
            Err(Error::BufferTooSmall { need: 24, have: 20 })
        );
    }

    #[test]
    fn impossible_len() {
        let mut b = H2C;
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::DatalMismatch { .. })
        ));
        let mut b = H2C;
        b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::DataRangeOverflow {
                offset: u32::MAX,
                len: 8
            })
        );
    }

    #[test]
    fn endianness() {
        let r = Repr {
            datao: 0x0000_0104,
            ..repr()
        };
        let mut out = Vec::new();
        r.emit(&mut out, Digests::NONE, Pda::ZERO, &[0; 8]).unwrap();
        assert_eq!(out[12..16], [0x04, 0x01, 0x00, 0x00]);
    }

    proptest! {
        #[test]
        fn round_trip(cccid in any::<u16>(), ttag in any::<u16>(), datao in any::<u32>(),
                      data in prop::collection::vec(any::<u8>(), 1..300), last in any::<bool>(),
                      h in any::<bool>(), d in any::<bool>(), pda in 0u8..32) {
            let datal = data.len() as u32;
            let datao = datao.min(u32::MAX - datal);
            let r = Repr { cccid, ttag, datao, datal, last_pdu: last };
            let digests = Digests { header: h, data: d };
            let pda = Pda::new(pda).unwrap();
            let mut out = Vec::new();
            let l = r.emit(&mut out, digests, pda, &data).unwrap();
            prop_assert_eq!(out.len(), l.plen);
            prop_assert_eq!(Repr::parse(&out, digests), Ok((r, l)));
            prop_assert_eq!(l.data(&out), Ok(&data[..]));
            prop_assert_eq!(l.verify_data_digest(&out), Ok(()));
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64),
                              h in any::<bool>(), d in any::<bool>()) {
            let digests = Digests { header: h, data: d };
            if let Ok((_, l)) = Repr::parse(&bytes, digests) {
                let _ = l.verify_data_digest(&bytes);
            }
        }
    }
}
