//! ICResp (type 0x01): the controller's Initialize Connection Response, 128 bytes, no digests.
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 0 | 8 | CH (HLEN = PLEN = 128, PDO 0, FLAGS 0) |
//! | 8 | 2 | PFV (0) |
//! | 10 | 1 | CPDA (0's-based dwords, ≤ 31) |
//! | 11 | 1 | DGST: bit 0 header digest, bit 1 data digest (enabled) |
//! | 12 | 4 | MAXH2CDATA: max DATAL per H2CData PDU (multiple of 4, ≥ 4096) |
//! | 16 | 112 | reserved |

use super::common::{self, Emitted, Layout};
use super::{Digests, Error, Pda, PduType, le_fields, view_common};

/// Length of an ICResp.
pub const HEADER_LEN: usize = 128;

/// Smallest valid MAXH2CDATA.
pub const MIN_MAXH2CDATA: u32 = 4096;

mod field {
    pub(super) const PFV: usize = 8;
    pub(super) const CPDA: usize = 10;
    pub(super) const DGST: usize = 11;
    pub(super) const MAXH2CDATA: usize = 12;
}

/// A view over an ICResp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

view_common!(Packet, HEADER_LEN);

le_fields! { Packet;
    /// PDU format version.
    pfv / set_pfv: u16 = field::PFV;
    /// Controller PDU data alignment (0's-based dwords), raw.
    cpda / set_cpda: u8 = field::CPDA;
    /// Enabled digests, raw DGST byte.
    dgst / set_dgst: u8 = field::DGST;
    /// Maximum DATAL of one H2CData PDU.
    maxh2cdata / set_maxh2cdata: u32 = field::MAXH2CDATA;
}

/// A validated ICResp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Alignment the controller requires for the data of PDUs the host sends.
    pub cpda: Pda,
    /// Digests the controller enables.
    pub digests: Digests,
    /// Maximum DATAL of one H2CData PDU (multiple of 4, at least 4096).
    pub maxh2cdata: u32,
}

const fn check_maxh2cdata(v: u32) -> Result<(), Error> {
    if !v.is_multiple_of(4) || v < MIN_MAXH2CDATA {
        Err(Error::BadMaxH2cData(v))
    } else {
        Ok(())
    }
}

impl Repr {
    /// Parses an ICResp from `bytes` (at least 128 bytes; extra bytes are ignored). `digests` is
    /// accepted for uniformity and ignored: ICResp never carries digests.
    ///
    /// Whether the enabled digests equal the requested ones, and whether CPDA is acceptable, is
    /// the caller's policy (the Linux host requires both digests to match exactly and CPDA 0).
    ///
    /// # Errors
    ///
    /// Any [`Layout::parse`] error, [`Error::UnexpectedPduType`], [`Error::Truncated`],
    /// [`Error::UnsupportedPfv`], [`Error::BadPda`] or [`Error::BadMaxH2cData`].
    pub fn parse(bytes: &[u8], digests: Digests) -> Result<(Self, Layout), Error> {
        let layout = common::parse_header(bytes, digests, PduType::IcResp)?;
        Ok((Self::decode(bytes, &layout)?, layout))
    }

    /// Decodes the PDU-specific header fields from `header` (at least HLEN bytes), whose common
    /// header was already validated into `layout` and whose header digest (if any) was already
    /// verified: the receive engine's path, where each header is checked once.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`], [`Error::UnsupportedPfv`], [`Error::BadMaxH2cData`] or
    /// [`Error::BadPda`].
    pub fn decode(header: &[u8], _layout: &Layout) -> Result<Self, Error> {
        let p = Packet::new_checked(header)?;
        if p.pfv() != 0 {
            return Err(Error::UnsupportedPfv(p.pfv()));
        }
        check_maxh2cdata(p.maxh2cdata())?;
        Ok(Self {
            cpda: Pda::new(p.cpda())?,
            digests: super::digests_from_dgst(p.dgst()),
            maxh2cdata: p.maxh2cdata(),
        })
    }

    fn fill(&self, header: &mut [u8]) {
        let mut p = Packet::new_unchecked(header);
        p.set_cpda(self.cpda.get());
        p.set_dgst(super::dgst_byte(self.digests));
        p.set_maxh2cdata(self.maxh2cdata);
    }

    /// Writes the 128-byte ICResp into `buf`.
    ///
    /// # Errors
    ///
    /// [`Error::BadMaxH2cData`] or [`Error::BufferTooSmall`].
    pub fn emit_header(&self, buf: &mut [u8]) -> Result<Emitted, Error> {
        check_maxh2cdata(self.maxh2cdata)?;
        common::emit_header(
            buf,
            PduType::IcResp,
            0,
            Digests::NONE,
            Pda::ZERO,
            &[],
            |h| self.fill(h),
        )
    }

    /// Appends the 128-byte ICResp to `out`.
    ///
    /// # Errors
    ///
    /// [`Error::BadMaxH2cData`].
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<Layout, Error> {
        check_maxh2cdata(self.maxh2cdata)?;
        common::emit_vec(
            out,
            PduType::IcResp,
            0,
            Digests::NONE,
            Pda::ZERO,
            &[],
            |h| self.fill(h),
        )
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// ICResp: CPDA 0, header digest only, MAXH2CDATA 0x0002_0000 (128 KiB).
    fn fixture() -> [u8; 128] {
        let mut b = [0u8; 128];
        b[..16].copy_from_slice(&[
            0x01, 0x00, 0x80, 0x00, 0x80, 0x00, 0x00, 0x00, // CH
            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x02, 0x00, // PFV, CPDA, DGST, MAXH2CDATA
        ]);
        b
    }

    fn repr() -> Repr {
        Repr {
            cpda: Pda::ZERO,
            digests: Digests {
                header: true,
                data: false,
            },
            maxh2cdata: 0x2_0000,
        }
    }

    #[test]
    fn deconstruct() {
        let b = fixture();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.maxh2cdata(), 0x2_0000);
        let (r, l) = Repr::parse(&b, Digests::NONE).unwrap();
        assert_eq!(r, repr());
        assert_eq!(l.plen, 128);
    }

    #[test]
    fn construct() {
        let mut out = Vec::new();
        repr().emit(&mut out).unwrap();
        assert_eq!(out[..], fixture()[..]);
        let mut buf = [0xEEu8; 200];
        let e = repr().emit_header(&mut buf).unwrap();
        assert_eq!(e.header_len, 128);
        assert_eq!(e.ddgst, None);
        assert_eq!(buf[..128], fixture()[..]);
    }

    #[test]
    fn truncated() {
        let b = fixture();
        assert_eq!(
            Repr::parse(&b[..100], Digests::NONE),
            Err(Error::Truncated {
                need: 128,
                have: 100
            })
        );
    }

    #[test]
    fn invalid_fields() {
        let mut b = fixture();
        b[12..16].copy_from_slice(&4094u32.to_le_bytes());
        assert_eq!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::BadMaxH2cData(4094))
        );
        b[12..16].copy_from_slice(&4097u32.to_le_bytes());
        assert_eq!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::BadMaxH2cData(4097))
        );
        let mut b = fixture();
        b[10] = 0xFF;
        assert_eq!(Repr::parse(&b, Digests::NONE), Err(Error::BadPda(0xFF)));
        let bad = Repr {
            maxh2cdata: 100,
            ..repr()
        };
        assert_eq!(bad.emit(&mut Vec::new()), Err(Error::BadMaxH2cData(100)));
    }

    #[test]
    fn endianness() {
        let b = fixture();
        // 0x0002_0000 is 00 00 02 00 on the wire.
        assert_eq!(b[12..16], [0x00, 0x00, 0x02, 0x00]);
    }

    proptest! {
        #[test]
        fn round_trip(cpda in 0u8..32, dgst in 0u8..4, m in 1024u32..=u32::MAX / 4) {
            let r = Repr {
                cpda: Pda::new(cpda).unwrap(),
                digests: crate::wire::digests_from_dgst(dgst),
                maxh2cdata: m * 4,
            };
            let mut out = Vec::new();
            r.emit(&mut out).unwrap();
            prop_assert_eq!(Repr::parse(&out, Digests::BOTH).map(|x| x.0), Ok(r));
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..160)) {
            let _ = Repr::parse(&bytes, Digests::NONE);
        }
    }
}
