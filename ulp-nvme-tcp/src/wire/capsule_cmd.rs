//! CapsuleCmd (type 0x04): a 64-byte NVMe submission queue entry plus optional in-capsule data.
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 0 | 8 | CH (HLEN 72; FLAGS: HDGSTF, DDGSTF only with data; PDO 0 without data) |
//! | 8 | 64 | SQE |
//! | 72 | 4 | HDGST (if negotiated) |
//! | PDO | … | in-capsule data (PDO aligned to the controller's CPDA), then DDGST |
//!
//! SQE layout (offsets within the SQE): OPC at 0, FLAGS at 1 (PSDT in bits 7:6), CID at 2, NSID
//! at 4, CDW2–3 at 8, MPTR at 16, DPTR (one SGL descriptor) at 24, CDW10–15 at 40.

use super::common::{self, Emitted, Layout};
use super::{Digests, Error, Pda, PduType, le_fields, view_common};

/// HLEN of a CapsuleCmd.
pub const HEADER_LEN: usize = 72;

/// Length of an SQE.
pub const SQE_LEN: usize = 64;

/// SQE FLAGS value with PSDT = 01b (SGL for data, as NVMe over fabrics requires).
pub const SQE_FLAGS_SGL: u8 = 0x40;

/// SGL identifier: Transport SGL Data Block, transport-specific subtype (data moves in C2HData
/// or R2T + H2CData).
pub const SGL_ID_TRANSPORT_DATA_BLOCK: u8 = 0x5A;

/// SGL identifier: Data Block, offset subtype (in-capsule data).
pub const SGL_ID_DATA_BLOCK_OFFSET: u8 = 0x01;

mod field {
    pub(super) const SQE: usize = 8;
}

/// A view over a CapsuleCmd header (CH plus SQE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

view_common!(Packet, HEADER_LEN);

impl<T: AsRef<[u8]>> Packet<T> {
    /// A typed view of the SQE.
    pub fn sqe(&self) -> Sqe<&[u8]> {
        Sqe::new_unchecked(&self.buffer.as_ref()[field::SQE..field::SQE + SQE_LEN])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// A mutable typed view of the SQE.
    pub fn sqe_mut(&mut self) -> Sqe<&mut [u8]> {
        Sqe::new_unchecked(&mut self.buffer.as_mut()[field::SQE..field::SQE + SQE_LEN])
    }
}

/// A 16-byte SGL descriptor (the SQE's DPTR over fabrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SglDescriptor {
    /// Address (or in-capsule offset for [`SGL_ID_DATA_BLOCK_OFFSET`]).
    pub address: u64,
    /// Length in bytes.
    pub length: u32,
    /// SGL identifier, `(type << 4) | subtype`.
    pub id: u8,
}

impl SglDescriptor {
    /// Decodes 16 descriptor bytes (bytes 12..15 are reserved and ignored).
    pub fn from_bytes(b: &[u8; 16]) -> Self {
        let mut addr = [0u8; 8];
        addr.copy_from_slice(&b[0..8]);
        Self {
            address: u64::from_le_bytes(addr),
            length: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            id: b[15],
        }
    }

    /// Encodes 16 descriptor bytes.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&self.address.to_le_bytes());
        b[8..12].copy_from_slice(&self.length.to_le_bytes());
        b[15] = self.id;
        b
    }
}

/// A typed view over a 64-byte NVMe submission queue entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sqe<T: AsRef<[u8]>> {
    buffer: T,
}

view_common!(Sqe, SQE_LEN);

le_fields! { Sqe;
    /// Opcode.
    opcode / set_opcode: u8 = 0;
    /// FLAGS: FUSE in bits 1:0, PSDT in bits 7:6.
    flags / set_flags: u8 = 1;
    /// Command identifier.
    cid / set_cid: u16 = 2;
    /// Namespace identifier.
    nsid / set_nsid: u32 = 4;
    /// Command dword 2.
    cdw2 / set_cdw2: u32 = 8;
    /// Command dword 3.
    cdw3 / set_cdw3: u32 = 12;
    /// Metadata pointer.
    mptr / set_mptr: u64 = 16;
    /// Command dword 10.
    cdw10 / set_cdw10: u32 = 40;
    /// Command dword 11.
    cdw11 / set_cdw11: u32 = 44;
    /// Command dword 12.
    cdw12 / set_cdw12: u32 = 48;
    /// Command dword 13.
    cdw13 / set_cdw13: u32 = 52;
    /// Command dword 14.
    cdw14 / set_cdw14: u32 = 56;
    /// Command dword 15.
    cdw15 / set_cdw15: u32 = 60;
}

impl<T: AsRef<[u8]>> Sqe<T> {
    /// Data pointer, as one SGL descriptor.
    pub fn dptr(&self) -> SglDescriptor {
        SglDescriptor::from_bytes(&crate::wire::read_array(self.buffer.as_ref(), 24))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Sqe<T> {
    /// Sets the data pointer.
    pub fn set_dptr(&mut self, sgl: SglDescriptor) {
        self.buffer.as_mut()[24..40].copy_from_slice(&sgl.to_bytes());
    }
}

/// A validated CapsuleCmd header: the SQE bytes (in-capsule data is located by the [`Layout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The 64-byte submission queue entry.
    pub sqe: [u8; SQE_LEN],
}

impl Repr {
    /// A typed view of the SQE.
    pub fn sqe(&self) -> Sqe<&[u8]> {
        Sqe::new_unchecked(&self.sqe[..])
    }

    /// A mutable typed view of the SQE, for building one.
    pub fn sqe_mut(&mut self) -> Sqe<&mut [u8]> {
        Sqe::new_unchecked(&mut self.sqe[..])
    }

    /// Parses a CapsuleCmd header from `bytes`, which must hold the header and HDGST (if
    /// negotiated); in-capsule data may follow or not. Verifies the header digest, not the data
    /// digest.
    ///
    /// # Errors
    ///
    /// Any [`Layout::parse`] error, [`Error::UnexpectedPduType`], [`Error::Truncated`] or
    /// [`Error::HeaderDigestMismatch`].
    pub fn parse(bytes: &[u8], digests: Digests) -> Result<(Self, Layout), Error> {
        let layout = common::parse_header(bytes, digests, PduType::CapsuleCmd)?;
        let p = Packet::new_checked(bytes)?;
        let mut sqe = [0u8; SQE_LEN];
        sqe.copy_from_slice(p.sqe().as_bytes());
        Ok((Self { sqe }, layout))
    }

    fn fill(&self, header: &mut [u8]) {
        header[field::SQE..field::SQE + SQE_LEN].copy_from_slice(&self.sqe);
    }

    /// Writes header, HDGST and pad into `buf` for a capsule carrying `data` in-capsule (empty
    /// for none), and returns the data digest to send after `data`. `pda` is the controller's
    /// CPDA. The SQE's DPTR is written as given; setting it to describe the in-capsule data is the
    /// caller's job.
    ///
    /// # Errors
    ///
    /// [`Error::BadDataLen`] or [`Error::BufferTooSmall`].
    pub fn emit_header(
        &self,
        buf: &mut [u8],
        digests: Digests,
        pda: Pda,
        data: &[u8],
    ) -> Result<Emitted, Error> {
        common::emit_header(buf, PduType::CapsuleCmd, 0, digests, pda, data, |h| {
            self.fill(h)
        })
    }

    /// [`emit_header`](Self::emit_header) for in-capsule data given in pieces (a scatter-gather
    /// write buffer), sent after the header without copying.
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
        common::emit_header_parts(buf, PduType::CapsuleCmd, 0, digests, pda, parts, |h| {
            self.fill(h)
        })
    }

    /// Appends the whole capsule (header, HDGST, pad, in-capsule `data`, DDGST) to `out`.
    ///
    /// # Errors
    ///
    /// [`Error::BadDataLen`].
    pub fn emit(
        &self,
        out: &mut Vec<u8>,
        digests: Digests,
        pda: Pda,
        data: &[u8],
    ) -> Result<Layout, Error> {
        common::emit_vec(out, PduType::CapsuleCmd, 0, digests, pda, data, |h| {
            self.fill(h)
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use ulp_ddp_core::digest::crc32c;

    use super::*;
    use crate::wire::{DDGSTF, HDGSTF};

    /// A Read (OPC 0x02) of NLB 8 (0's-based 7) at SLBA 0x0000_0001_0000_0000 on NSID 1, CID 3,
    /// DPTR transport data block of 4096 bytes, no in-capsule data, no digests.
    fn fixture() -> [u8; 72] {
        let mut b = [0u8; 72];
        b[..8].copy_from_slice(&[0x04, 0x00, 0x48, 0x00, 0x48, 0x00, 0x00, 0x00]);
        b[8..16].copy_from_slice(&[0x02, 0x40, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00]);
        // DPTR at SQE 24 = PDU 32: address 0, length 0x1000, id 0x5A.
        b[40..44].copy_from_slice(&[0x00, 0x10, 0x00, 0x00]);
        b[47] = 0x5A;
        // CDW10-11 (SLBA) at SQE 40 = PDU 48; CDW12 (NLB) at PDU 56.
        b[48..56].copy_from_slice(&[0, 0, 0, 0, 1, 0, 0, 0]);
        b[56] = 7;
        b
    }

    fn repr() -> Repr {
        let mut r = Repr { sqe: [0; 64] };
        let mut s = r.sqe_mut();
        s.set_opcode(0x02);
        s.set_flags(SQE_FLAGS_SGL);
        s.set_cid(3);
        s.set_nsid(1);
        s.set_dptr(SglDescriptor {
            address: 0,
            length: 4096,
            id: SGL_ID_TRANSPORT_DATA_BLOCK,
        });
        s.set_cdw10(0);
        s.set_cdw11(1);
        s.set_cdw12(7);
        r
    }

    #[test]
    fn deconstruct() {
        let b = fixture();
        let (r, l) = Repr::parse(&b, Digests::NONE).unwrap();
        let s = r.sqe();
        assert_eq!(
            (s.opcode(), s.flags(), s.cid(), s.nsid()),
            (0x02, 0x40, 3, 1)
        );
        assert_eq!(
            s.dptr(),
            SglDescriptor {
                address: 0,
                length: 4096,
                id: SGL_ID_TRANSPORT_DATA_BLOCK
            }
        );
        assert_eq!((s.cdw10(), s.cdw11(), s.cdw12()), (0, 1, 7));
        assert_eq!((s.cdw13(), s.cdw14(), s.cdw15(), s.mptr()), (0, 0, 0, 0));
        assert_eq!((l.pdo, l.data_len, l.plen), (0, 0, 72));
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.sqe().cid(), 3);
    }

    #[test]
    fn construct() {
        let mut out = Vec::new();
        repr()
            .emit(&mut out, Digests::NONE, Pda::ZERO, &[])
            .unwrap();
        assert_eq!(out[..], fixture()[..]);
        // Packet setters build the same bytes.
        let mut buf = fixture();
        buf[8..72].fill(0);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.sqe_mut().copy_from(&repr());
        assert_eq!(buf, fixture());
    }

    impl Sqe<&mut [u8]> {
        fn copy_from(&mut self, r: &Repr) {
            self.buffer.copy_from_slice(&r.sqe);
        }
    }

    #[test]
    fn in_capsule_data_with_digests() {
        // Both digests, no data: PDO 0, no DDGSTF, PLEN 76.
        let mut out = Vec::new();
        let l = repr()
            .emit(&mut out, Digests::BOTH, Pda::ZERO, &[])
            .unwrap();
        assert_eq!((out[1], out[3], l.plen), (HDGSTF, 0, 76));
        assert_eq!(Repr::parse(&out, Digests::BOTH), Ok((repr(), l)));
        // Both digests, 9 bytes in-capsule: PDO 76, DDGSTF, PLEN 76 + 9 + 4.
        let mut out = Vec::new();
        let l = repr()
            .emit(&mut out, Digests::BOTH, Pda::ZERO, b"123456789")
            .unwrap();
        assert_eq!((out[1], out[3], l.plen), (HDGSTF | DDGSTF, 76, 89));
        assert_eq!(out[72..76], crc32c(&out[..72]).to_le_bytes());
        assert_eq!(out[85..], [0x83, 0x92, 0x06, 0xE3]);
        let (r, pl) = Repr::parse(&out, Digests::BOTH).unwrap();
        assert_eq!((r, pl), (repr(), l));
        assert_eq!(pl.data(&out), Ok(&b"123456789"[..]));
        assert_eq!(pl.verify_data_digest(&out), Ok(()));
    }

    #[test]
    fn ddgst_flag_without_data_is_invalid() {
        let mut b = fixture();
        b[1] = DDGSTF;
        assert!(matches!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::InvalidFlags { .. })
        ));
    }

    #[test]
    fn truncated() {
        let b = fixture();
        assert_eq!(
            Repr::parse(&b[..71], Digests::NONE),
            Err(Error::Truncated { need: 72, have: 71 })
        );
    }

    #[test]
    fn impossible_len() {
        let mut b = fixture();
        b[3] = 72; // PDO with PLEN 72: data of length 0
        assert!(matches!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::BadPlen { .. })
        ));
        let mut b = fixture();
        b[4] = 80; // PLEN > HLEN without PDO
        assert!(matches!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::BadPlen { .. })
        ));
        let mut b = fixture();
        b[2] = 24;
        assert!(matches!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::BadHlen { .. })
        ));
    }

    #[test]
    fn endianness() {
        let mut r = repr();
        r.sqe_mut().set_nsid(0x0000_0104);
        assert_eq!(r.sqe[4..8], [0x04, 0x01, 0x00, 0x00]);
        let sgl = SglDescriptor {
            address: 0x0102_0304_0506_0708,
            length: 0x104,
            id: 1,
        };
        assert_eq!(
            sgl.to_bytes(),
            [8, 7, 6, 5, 4, 3, 2, 1, 0x04, 0x01, 0, 0, 0, 0, 0, 1]
        );
    }

    proptest! {
        #[test]
        fn round_trip(sqe in prop::collection::vec(any::<u8>(), 64),
                      data in prop::collection::vec(any::<u8>(), 0..200),
                      h in any::<bool>(), d in any::<bool>(), pda in 0u8..32) {
            let mut r = Repr { sqe: [0; 64] };
            r.sqe.copy_from_slice(&sqe);
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
        fn sgl_round_trip(address in any::<u64>(), length in any::<u32>(), id in any::<u8>()) {
            let s = SglDescriptor { address, length, id };
            prop_assert_eq!(SglDescriptor::from_bytes(&s.to_bytes()), s);
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..100),
                              h in any::<bool>(), d in any::<bool>()) {
            let digests = Digests { header: h, data: d };
            if let Ok((_, l)) = Repr::parse(&bytes, digests) {
                let _ = l.verify_data_digest(&bytes);
            }
        }
    }
}
