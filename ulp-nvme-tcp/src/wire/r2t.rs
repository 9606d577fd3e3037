//! R2T (type 0x09): Ready to Transfer, controller to host, HLEN 24, no data.
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 0 | 8 | CH (HLEN 24, PDO 0, FLAGS: HDGSTF only) |
//! | 8 | 2 | CCCID (the command's CID) |
//! | 10 | 2 | TTAG (controller-chosen transfer tag) |
//! | 12 | 4 | R2TO: offset the host must send from |
//! | 16 | 4 | R2TL: bytes solicited |
//! | 20 | 4 | reserved |

use super::common::{self, Emitted, Layout};
use super::{Digests, Error, Pda, PduType, le_fields, view_common};

/// HLEN of an R2T.
pub const HEADER_LEN: usize = 24;

mod field {
    pub(super) const CCCID: usize = 8;
    pub(super) const TTAG: usize = 10;
    pub(super) const R2TO: usize = 12;
    pub(super) const R2TL: usize = 16;
}

/// A view over an R2T header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

view_common!(Packet, HEADER_LEN);

le_fields! { Packet;
    /// Command capsule CID.
    cccid / set_cccid: u16 = field::CCCID;
    /// Transfer tag to copy into the H2CData PDUs.
    ttag / set_ttag: u16 = field::TTAG;
    /// R2T offset.
    r2to / set_r2to: u32 = field::R2TO;
    /// R2T length.
    r2tl / set_r2tl: u32 = field::R2TL;
}

/// A validated R2T.
///
/// Whether R2TL is 0 or the range fits the command is the engine's check, not the codec's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Command capsule CID.
    pub cccid: u16,
    /// Transfer tag.
    pub ttag: u16,
    /// Offset in the command's data the host must send from.
    pub r2to: u32,
    /// Bytes solicited.
    pub r2tl: u32,
}

impl Repr {
    /// Parses an R2T from `bytes`, which must hold the header and HDGST (if negotiated); further
    /// bytes are ignored. Verifies the header digest.
    ///
    /// # Errors
    ///
    /// Any [`Layout::parse`] error, [`Error::UnexpectedPduType`], [`Error::Truncated`],
    /// [`Error::HeaderDigestMismatch`] or [`Error::DataRangeOverflow`] (R2TO + R2TL).
    pub fn parse(bytes: &[u8], digests: Digests) -> Result<(Self, Layout), Error> {
        let layout = common::parse_header(bytes, digests, PduType::R2t)?;
        Ok((Self::decode(bytes, &layout)?, layout))
    }

    /// Decodes the PDU-specific header fields from `header` (at least HLEN bytes), whose common
    /// header was already validated into `layout` and whose header digest (if any) was already
    /// verified: the receive engine's path, where each header is checked once.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] or [`Error::DataRangeOverflow`].
    pub fn decode(header: &[u8], _layout: &Layout) -> Result<Self, Error> {
        let p = Packet::new_checked(header)?;
        let repr = Self {
            cccid: p.cccid(),
            ttag: p.ttag(),
            r2to: p.r2to(),
            r2tl: p.r2tl(),
        };
        repr.check()?;
        Ok(repr)
    }

    fn check(&self) -> Result<(), Error> {
        match self.r2to.checked_add(self.r2tl) {
            Some(_) => Ok(()),
            None => Err(Error::DataRangeOverflow {
                offset: self.r2to,
                len: self.r2tl,
            }),
        }
    }

    fn fill(&self, header: &mut [u8]) {
        let mut p = Packet::new_unchecked(header);
        p.set_cccid(self.cccid);
        p.set_ttag(self.ttag);
        p.set_r2to(self.r2to);
        p.set_r2tl(self.r2tl);
    }

    /// Writes the R2T (header and HDGST if negotiated) into `buf`.
    ///
    /// # Errors
    ///
    /// [`Error::DataRangeOverflow`] or [`Error::BufferTooSmall`].
    pub fn emit_header(&self, buf: &mut [u8], digests: Digests) -> Result<Emitted, Error> {
        self.check()?;
        common::emit_header(buf, PduType::R2t, 0, digests, Pda::ZERO, &[], |h| {
            self.fill(h)
        })
    }

    /// Appends the R2T to `out`.
    ///
    /// # Errors
    ///
    /// [`Error::DataRangeOverflow`].
    pub fn emit(&self, out: &mut Vec<u8>, digests: Digests) -> Result<Layout, Error> {
        self.check()?;
        common::emit_vec(out, PduType::R2t, 0, digests, Pda::ZERO, &[], |h| {
            self.fill(h)
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use ulp_ddp_core::digest::crc32c;

    use super::*;
    use crate::wire::HDGSTF;

    /// R2T for CID 0x0102, TTAG 0x0304, R2TO 0x1000, R2TL 0x0002_0000, no digests.
    static R2T: [u8; 24] = [
        0x09, 0x00, 0x18, 0x00, 0x18, 0x00, 0x00, 0x00, // CH
        0x02, 0x01, 0x04, 0x03, 0x00, 0x10, 0x00, 0x00, // CCCID, TTAG, R2TO
        0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, // R2TL, reserved
    ];

    fn repr() -> Repr {
        Repr {
            cccid: 0x0102,
            ttag: 0x0304,
            r2to: 0x1000,
            r2tl: 0x2_0000,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&R2T[..]).unwrap();
        assert_eq!(
            (p.cccid(), p.ttag(), p.r2to(), p.r2tl()),
            (0x0102, 0x0304, 0x1000, 0x2_0000)
        );
        let (r, l) = Repr::parse(&R2T, Digests::NONE).unwrap();
        assert_eq!(r, repr());
        assert_eq!(l.plen, 24);
    }

    #[test]
    fn construct() {
        let mut out = Vec::new();
        repr().emit(&mut out, Digests::NONE).unwrap();
        assert_eq!(out, R2T);
    }

    #[test]
    fn header_digest() {
        let mut out = Vec::new();
        let l = repr().emit(&mut out, Digests::BOTH).unwrap();
        assert_eq!(out.len(), 28);
        assert!(l.hdgst && !l.ddgst);
        assert_eq!(out[1], HDGSTF);
        assert_eq!(out[4], 28);
        assert_eq!(out[24..], crc32c(&out[..24]).to_le_bytes());
        assert_eq!(Repr::parse(&out, Digests::BOTH).unwrap().0, repr());
        // Corrupt one header byte: fatal digest error.
        let mut bad = out.clone();
        bad[9] ^= 0x80;
        assert!(matches!(
            Repr::parse(&bad, Digests::BOTH),
            Err(Error::HeaderDigestMismatch { .. })
        ));
        // Corrupt the digest itself.
        let mut bad = out;
        bad[27] ^= 1;
        assert!(matches!(
            Repr::parse(&bad, Digests::BOTH),
            Err(Error::HeaderDigestMismatch { .. })
        ));
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Repr::parse(&R2T[..20], Digests::NONE),
            Err(Error::Truncated { need: 24, have: 20 })
        );
        let mut out = Vec::new();
        repr().emit(&mut out, Digests::BOTH).unwrap();
        assert_eq!(
            Repr::parse(&out[..26], Digests::BOTH),
            Err(Error::Truncated { need: 28, have: 26 })
        );
        let mut small = [0u8; 27];
        assert_eq!(
            repr().emit_header(&mut small, Digests::BOTH),
            Err(Error::BufferTooSmall { need: 28, have: 27 })
        );
    }

    #[test]
    fn impossible_len() {
        let mut b = R2T;
        b[4] = 32;
        assert!(matches!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::BadPlen { .. })
        ));
        let mut b = R2T;
        b[3] = 24;
        assert!(matches!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::BadPdo { .. })
        ));
        let mut b = R2T;
        b[12..20].copy_from_slice(&[0xFF; 8]);
        assert_eq!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::DataRangeOverflow {
                offset: u32::MAX,
                len: u32::MAX
            })
        );
    }

    #[test]
    fn endianness() {
        let r = Repr {
            r2tl: 0x0000_0104,
            ..repr()
        };
        let mut out = Vec::new();
        r.emit(&mut out, Digests::NONE).unwrap();
        assert_eq!(out[16..20], [0x04, 0x01, 0x00, 0x00]);
    }

    proptest! {
        #[test]
        fn round_trip(cccid in any::<u16>(), ttag in any::<u16>(), r2to in any::<u32>(),
                      r2tl in any::<u32>(), h in any::<bool>(), d in any::<bool>()) {
            let r2tl = r2tl.min(u32::MAX - r2to);
            let r = Repr { cccid, ttag, r2to, r2tl };
            let digests = Digests { header: h, data: d };
            let mut out = Vec::new();
            let l = r.emit(&mut out, digests).unwrap();
            prop_assert_eq!(out.len(), l.plen);
            prop_assert_eq!(Repr::parse(&out, digests), Ok((r, l)));
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..40),
                              h in any::<bool>()) {
            let _ = Repr::parse(&bytes, Digests { header: h, data: false });
        }
    }
}
