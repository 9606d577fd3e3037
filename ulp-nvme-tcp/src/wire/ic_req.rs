//! ICReq (type 0x00): the host's Initialize Connection Request, 128 bytes, no digests.
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 0 | 8 | CH (HLEN = PLEN = 128, PDO 0, FLAGS 0) |
//! | 8 | 2 | PFV (0) |
//! | 10 | 1 | HPDA (0's-based dwords, ≤ 31) |
//! | 11 | 1 | DGST: bit 0 header digest, bit 1 data digest |
//! | 12 | 4 | MAXR2T (0's-based) |
//! | 16 | 112 | reserved |

use super::common::{self, Emitted, Layout};
use super::{Digests, Error, Pda, PduType, le_fields, view_common};

/// Length of an ICReq.
pub const HEADER_LEN: usize = 128;

mod field {
    pub(super) const PFV: usize = 8;
    pub(super) const HPDA: usize = 10;
    pub(super) const DGST: usize = 11;
    pub(super) const MAXR2T: usize = 12;
}

/// A view over an ICReq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

view_common!(Packet, HEADER_LEN);

le_fields! { Packet;
    /// PDU format version.
    pfv / set_pfv: u16 = field::PFV;
    /// Host PDU data alignment (0's-based dwords), raw.
    hpda / set_hpda: u8 = field::HPDA;
    /// Requested digests, raw DGST byte.
    dgst / set_dgst: u8 = field::DGST;
    /// Maximum outstanding R2Ts per command, 0's-based.
    maxr2t / set_maxr2t: u32 = field::MAXR2T;
}

/// A validated ICReq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Alignment the host asks for the data of PDUs the controller sends.
    pub hpda: Pda,
    /// Digests the host requests.
    pub digests: Digests,
    /// Maximum outstanding R2Ts per command, 0's-based (0 = one).
    pub maxr2t: u32,
}

impl Repr {
    /// Parses an ICReq from `bytes` (at least 128 bytes; extra bytes are ignored). `digests` is
    /// accepted for uniformity and ignored: ICReq never carries digests.
    ///
    /// # Errors
    ///
    /// Any [`Layout::parse`] error, [`Error::UnexpectedPduType`], [`Error::Truncated`],
    /// [`Error::UnsupportedPfv`] or [`Error::BadPda`].
    pub fn parse(bytes: &[u8], digests: Digests) -> Result<(Self, Layout), Error> {
        let layout = common::parse_header(bytes, digests, PduType::IcReq)?;
        // parse_header checked that `bytes` holds HLEN = 128 bytes.
        let p = Packet::new_checked(bytes)?;
        if p.pfv() != 0 {
            return Err(Error::UnsupportedPfv(p.pfv()));
        }
        let repr = Self {
            hpda: Pda::new(p.hpda())?,
            digests: super::digests_from_dgst(p.dgst()),
            maxr2t: p.maxr2t(),
        };
        Ok((repr, layout))
    }

    fn fill(&self, header: &mut [u8]) {
        let mut p = Packet::new_unchecked(header);
        p.set_hpda(self.hpda.get());
        p.set_dgst(super::dgst_byte(self.digests));
        p.set_maxr2t(self.maxr2t);
    }

    /// Writes the 128-byte ICReq into `buf`.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`].
    pub fn emit_header(&self, buf: &mut [u8]) -> Result<Emitted, Error> {
        common::emit_header(buf, PduType::IcReq, 0, Digests::NONE, Pda::ZERO, &[], |h| {
            self.fill(h)
        })
    }

    /// Appends the 128-byte ICReq to `out`.
    ///
    /// # Errors
    ///
    /// None in practice; the signature matches the other PDUs.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<Layout, Error> {
        common::emit_vec(out, PduType::IcReq, 0, Digests::NONE, Pda::ZERO, &[], |h| {
            self.fill(h)
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Linux host ICReq: HPDA 0, both digests, MAXR2T 0.
    fn fixture() -> [u8; 128] {
        let mut b = [0u8; 128];
        b[..16].copy_from_slice(&[
            0x00, 0x00, 0x80, 0x00, 0x80, 0x00, 0x00, 0x00, // CH
            0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, // PFV, HPDA, DGST, MAXR2T
        ]);
        b
    }

    #[test]
    fn deconstruct() {
        let b = fixture();
        let (r, l) = Repr::parse(&b, Digests::NONE).unwrap();
        assert_eq!(
            r,
            Repr {
                hpda: Pda::ZERO,
                digests: Digests::BOTH,
                maxr2t: 0
            }
        );
        assert_eq!(l.plen, 128);
        assert_eq!(l.header_len(), 128);
        // Digests negotiated elsewhere change nothing for ICReq.
        assert_eq!(Repr::parse(&b, Digests::BOTH).unwrap().0, r);
    }

    #[test]
    fn construct() {
        let r = Repr {
            hpda: Pda::ZERO,
            digests: Digests::BOTH,
            maxr2t: 0,
        };
        let mut out = Vec::new();
        let l = r.emit(&mut out).unwrap();
        assert_eq!(out[..], fixture()[..]);
        assert_eq!(l.plen, 128);
        let mut small = [0u8; 127];
        assert_eq!(
            r.emit_header(&mut small),
            Err(Error::BufferTooSmall {
                need: 128,
                have: 127
            })
        );
    }

    #[test]
    fn truncated() {
        let b = fixture();
        assert_eq!(
            Repr::parse(&b[..127], Digests::NONE),
            Err(Error::Truncated {
                need: 128,
                have: 127
            })
        );
        assert_eq!(
            Repr::parse(&b[..3], Digests::NONE),
            Err(Error::Truncated { need: 8, have: 3 })
        );
    }

    #[test]
    fn invalid_fields() {
        let mut b = fixture();
        b[8] = 1;
        assert_eq!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::UnsupportedPfv(1))
        );
        let mut b = fixture();
        b[10] = 32;
        assert_eq!(Repr::parse(&b, Digests::NONE), Err(Error::BadPda(32)));
        let mut b = fixture();
        b[4] = 132;
        assert!(matches!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::BadPlen { .. })
        ));
        let mut b = fixture();
        b[1] = 0x01;
        assert!(matches!(
            Repr::parse(&b, Digests::BOTH),
            Err(Error::InvalidFlags { .. })
        ));
        let mut b = fixture();
        b[0] = 0x01;
        assert_eq!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::UnexpectedPduType {
                expected: 0,
                found: 1
            })
        );
    }

    #[test]
    fn endianness() {
        let r = Repr {
            hpda: Pda::ZERO,
            digests: Digests::NONE,
            maxr2t: 0x0000_0104,
        };
        let mut out = Vec::new();
        r.emit(&mut out).unwrap();
        assert_eq!(out[12..16], [0x04, 0x01, 0x00, 0x00]);
    }

    proptest! {
        #[test]
        fn round_trip(hpda in 0u8..32, dgst in 0u8..4, maxr2t in any::<u32>()) {
            let r = Repr { hpda: Pda::new(hpda).unwrap(), digests: crate::wire::digests_from_dgst(dgst), maxr2t };
            let mut out = Vec::new();
            r.emit(&mut out).unwrap();
            prop_assert_eq!(Repr::parse(&out, Digests::NONE).map(|x| x.0), Ok(r));
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..160)) {
            let _ = Repr::parse(&bytes, Digests::NONE);
            let _ = Repr::parse(&bytes, Digests::BOTH);
        }

        #[test]
        fn parse_mutated_never_panics(idx in 0usize..128, v in any::<u8>()) {
            let mut b = fixture();
            b[idx] = v;
            let _ = Repr::parse(&b, Digests::NONE);
        }
    }
}
