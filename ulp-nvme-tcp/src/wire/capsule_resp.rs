//! CapsuleResp (type 0x05): a 16-byte NVMe completion queue entry, HLEN 24, no data.
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 0 | 8 | CH (HLEN 24, PDO 0, FLAGS: HDGSTF only; PLEN 24 or 28) |
//! | 8 | 4 | CQE DW0: command-specific result |
//! | 12 | 4 | CQE DW1 |
//! | 16 | 2 | SQHD (0xFFFF when SQ flow control is disabled) |
//! | 18 | 2 | SQID |
//! | 20 | 2 | CID |
//! | 22 | 2 | Status: bit 0 phase, bits 8:1 SC, 11:9 SCT, 13:12 CRD, 14 M, 15 DNR |

use super::common::{self, Emitted, Layout};
use super::{Digests, Error, Pda, PduType, le_fields, view_common};

/// HLEN of a CapsuleResp.
pub const HEADER_LEN: usize = 24;

/// Length of a CQE.
pub const CQE_LEN: usize = 16;

mod field {
    pub(super) const DW0: usize = 8;
    pub(super) const DW1: usize = 12;
    pub(super) const SQHD: usize = 16;
    pub(super) const SQID: usize = 18;
    pub(super) const CID: usize = 20;
    pub(super) const STATUS: usize = 22;
}

/// A view over a CapsuleResp header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

view_common!(Packet, HEADER_LEN);

le_fields! { Packet;
    /// CQE DW0.
    dw0 / set_dw0: u32 = field::DW0;
    /// CQE DW1.
    dw1 / set_dw1: u32 = field::DW1;
    /// SQ head pointer.
    sqhd / set_sqhd: u16 = field::SQHD;
    /// SQ identifier.
    sqid / set_sqid: u16 = field::SQID;
    /// Command identifier.
    cid / set_cid: u16 = field::CID;
    /// Status field including the phase bit.
    status / set_status: u16 = field::STATUS;
}

/// An NVMe completion queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Cqe {
    /// DW0: command-specific result (Connect: CNTLID; Property Get: value, low half).
    pub dw0: u32,
    /// DW1 (Property Get of 8 bytes: value, high half).
    pub dw1: u32,
    /// SQ head pointer.
    pub sqhd: u16,
    /// SQ identifier.
    pub sqid: u16,
    /// Command identifier.
    pub cid: u16,
    /// The raw 16-bit status field, phase tag in bit 0.
    pub status: u16,
}

impl Cqe {
    /// Decodes the 16 CQE bytes.
    pub fn from_bytes(b: &[u8; CQE_LEN]) -> Self {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        Self {
            dw0: u32_at(0),
            dw1: u32_at(4),
            sqhd: u16_at(8),
            sqid: u16_at(10),
            cid: u16_at(12),
            status: u16_at(14),
        }
    }

    /// Encodes the 16 CQE bytes.
    pub fn to_bytes(&self) -> [u8; CQE_LEN] {
        let mut b = [0u8; CQE_LEN];
        b[0..4].copy_from_slice(&self.dw0.to_le_bytes());
        b[4..8].copy_from_slice(&self.dw1.to_le_bytes());
        b[8..10].copy_from_slice(&self.sqhd.to_le_bytes());
        b[10..12].copy_from_slice(&self.sqid.to_le_bytes());
        b[12..14].copy_from_slice(&self.cid.to_le_bytes());
        b[14..16].copy_from_slice(&self.status.to_le_bytes());
        b
    }

    /// Phase tag (bit 0; meaningless over fabrics).
    pub const fn phase(&self) -> bool {
        self.status & 1 != 0
    }

    /// Status Code (bits 8:1).
    pub const fn status_code(&self) -> u8 {
        ((self.status >> 1) & 0xFF) as u8
    }

    /// Status Code Type (bits 11:9).
    pub const fn status_code_type(&self) -> u8 {
        ((self.status >> 9) & 0x7) as u8
    }

    /// Command Retry Delay (bits 13:12).
    pub const fn crd(&self) -> u8 {
        ((self.status >> 12) & 0x3) as u8
    }

    /// More (bit 14).
    pub const fn more(&self) -> bool {
        self.status & 0x4000 != 0
    }

    /// Do Not Retry (bit 15).
    pub const fn dnr(&self) -> bool {
        self.status & 0x8000 != 0
    }

    /// Whether the command succeeded: every status bit except the phase tag is zero.
    pub const fn is_success(&self) -> bool {
        self.status >> 1 == 0
    }
}

/// A validated CapsuleResp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The completion.
    pub cqe: Cqe,
}

impl Repr {
    /// Parses a CapsuleResp from `bytes` (header and HDGST if negotiated; further bytes are
    /// ignored). Verifies the header digest.
    ///
    /// # Errors
    ///
    /// Any [`Layout::parse`] error, [`Error::UnexpectedPduType`], [`Error::Truncated`] or
    /// [`Error::HeaderDigestMismatch`].
    pub fn parse(bytes: &[u8], digests: Digests) -> Result<(Self, Layout), Error> {
        let layout = common::parse_header(bytes, digests, PduType::CapsuleResp)?;
        Ok((Self::decode(bytes, &layout)?, layout))
    }

    /// Decodes the PDU-specific header fields from `header` (at least HLEN bytes), whose common
    /// header was already validated into `layout` and whose header digest (if any) was already
    /// verified: the receive engine's path, where each header is checked once.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`].
    pub fn decode(header: &[u8], _layout: &Layout) -> Result<Self, Error> {
        let p = Packet::new_checked(header)?;
        let cqe = Cqe {
            dw0: p.dw0(),
            dw1: p.dw1(),
            sqhd: p.sqhd(),
            sqid: p.sqid(),
            cid: p.cid(),
            status: p.status(),
        };
        Ok(Self { cqe })
    }

    fn fill(&self, header: &mut [u8]) {
        let mut p = Packet::new_unchecked(header);
        p.set_dw0(self.cqe.dw0);
        p.set_dw1(self.cqe.dw1);
        p.set_sqhd(self.cqe.sqhd);
        p.set_sqid(self.cqe.sqid);
        p.set_cid(self.cqe.cid);
        p.set_status(self.cqe.status);
    }

    /// Writes the CapsuleResp (header and HDGST if negotiated) into `buf`.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`].
    pub fn emit_header(&self, buf: &mut [u8], digests: Digests) -> Result<Emitted, Error> {
        common::emit_header(buf, PduType::CapsuleResp, 0, digests, Pda::ZERO, &[], |h| {
            self.fill(h)
        })
    }

    /// Appends the CapsuleResp to `out`.
    ///
    /// # Errors
    ///
    /// None in practice; the signature matches the other PDUs.
    pub fn emit(&self, out: &mut Vec<u8>, digests: Digests) -> Result<Layout, Error> {
        common::emit_vec(out, PduType::CapsuleResp, 0, digests, Pda::ZERO, &[], |h| {
            self.fill(h)
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use ulp_ddp_core::digest::crc32c;

    use super::*;

    /// Connect response: CNTLID 1 in DW0, SQHD 0xFFFF, SQID 0, CID 0x000A, success.
    static RESP: [u8; 24] = [
        0x05, 0x00, 0x18, 0x00, 0x18, 0x00, 0x00, 0x00, // CH
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // DW0, DW1
        0xFF, 0xFF, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x00, // SQHD, SQID, CID, STATUS
    ];

    fn repr() -> Repr {
        Repr {
            cqe: Cqe {
                dw0: 1,
                dw1: 0,
                sqhd: 0xFFFF,
                sqid: 0,
                cid: 0x0A,
                status: 0,
            },
        }
    }

    #[test]
    fn deconstruct() {
        let (r, l) = Repr::parse(&RESP, Digests::NONE).unwrap();
        assert_eq!(r, repr());
        assert!(r.cqe.is_success());
        assert_eq!(l.plen, 24);
        assert_eq!(
            Cqe::from_bytes(&RESP[8..24].try_into().unwrap()),
            repr().cqe
        );
    }

    #[test]
    fn construct() {
        let mut out = Vec::new();
        repr().emit(&mut out, Digests::NONE).unwrap();
        assert_eq!(out, RESP);
        assert_eq!(repr().cqe.to_bytes()[..], RESP[8..]);
    }

    #[test]
    fn status_bits() {
        // SCT 0, SC 0x04 (Data Transfer Error), DNR, phase set.
        let cqe = Cqe {
            status: 0x8000 | (0x04 << 1) | 1,
            ..Cqe::default()
        };
        assert!(cqe.phase() && cqe.dnr() && !cqe.more() && !cqe.is_success());
        assert_eq!(
            (cqe.status_code(), cqe.status_code_type(), cqe.crd()),
            (0x04, 0, 0)
        );
        // Connect Invalid Host: SCT 1, SC 0x84, M, CRD 2.
        let cqe = Cqe {
            status: 0x4000 | (2 << 12) | (1 << 9) | (0x84 << 1),
            ..Cqe::default()
        };
        assert_eq!(
            (cqe.status_code(), cqe.status_code_type(), cqe.crd()),
            (0x84, 1, 2)
        );
        assert!(cqe.more());
        // Phase alone is still success.
        assert!(
            Cqe {
                status: 1,
                ..Cqe::default()
            }
            .is_success()
        );
    }

    #[test]
    fn header_digest() {
        let mut out = Vec::new();
        repr().emit(&mut out, Digests::BOTH).unwrap();
        assert_eq!(out.len(), 28);
        assert_eq!(out[24..], crc32c(&out[..24]).to_le_bytes());
        assert_eq!(Repr::parse(&out, Digests::BOTH).unwrap().0, repr());
        out[20] ^= 1;
        assert!(matches!(
            Repr::parse(&out, Digests::BOTH),
            Err(Error::HeaderDigestMismatch { .. })
        ));
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Repr::parse(&RESP[..23], Digests::NONE),
            Err(Error::Truncated { need: 24, have: 23 })
        );
    }

    #[test]
    fn impossible_len() {
        let mut b = RESP;
        b[4] = 28; // PLEN 28 without HDGSTF
        assert!(matches!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::BadPlen { .. })
        ));
        let mut b = RESP;
        b[1] = 0x02; // DDGSTF on a PDU without data
        assert!(matches!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::InvalidFlags { .. })
        ));
        let mut b = RESP;
        b[2] = 72;
        assert!(matches!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::BadHlen { .. })
        ));
    }

    #[test]
    fn endianness() {
        let r = Repr {
            cqe: Cqe {
                dw0: 0x0000_0104,
                ..repr().cqe
            },
        };
        let mut out = Vec::new();
        r.emit(&mut out, Digests::NONE).unwrap();
        assert_eq!(out[8..12], [0x04, 0x01, 0x00, 0x00]);
    }

    proptest! {
        #[test]
        fn round_trip(dw0 in any::<u32>(), dw1 in any::<u32>(), sqhd in any::<u16>(),
                      sqid in any::<u16>(), cid in any::<u16>(), status in any::<u16>(),
                      h in any::<bool>()) {
            let r = Repr { cqe: Cqe { dw0, dw1, sqhd, sqid, cid, status } };
            let digests = Digests { header: h, data: false };
            let mut out = Vec::new();
            let l = r.emit(&mut out, digests).unwrap();
            prop_assert_eq!(out.len(), l.plen);
            prop_assert_eq!(Repr::parse(&out, digests), Ok((r, l)));
            prop_assert_eq!(Cqe::from_bytes(&r.cqe.to_bytes()), r.cqe);
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..40),
                              h in any::<bool>()) {
            let _ = Repr::parse(&bytes, Digests { header: h, data: true });
        }
    }
}
