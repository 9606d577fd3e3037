//! The 48-byte Basic Header Segment (RFC 7143 §11.2.1) and PDU framing.
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 0 | 1 | 0x80 reserved, 0x40 I (immediate), 0x3F opcode |
//! | 1 | 1 | 0x80 F (final) + opcode-specific flags |
//! | 2 | 2 | opcode-specific |
//! | 4 | 1 | TotalAHSLength (4-byte words) |
//! | 5 | 3 | DataSegmentLength (big-endian 24-bit) |
//! | 8 | 8 | LUN or opcode-specific |
//! | 16 | 4 | Initiator Task Tag |
//! | 20 | 28 | opcode-specific |

use super::{Digests, Error, Itt, Lun, Opcode, Result, pad_len};

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;

mod field {
    use core::ops::Range;

    pub(super) const OPCODE: usize = 0;
    pub(super) const FLAGS: usize = 1;
    pub(super) const TOTAL_AHS_LEN: usize = 4;
    pub(super) const DATA_SEGMENT_LEN: Range<usize> = 5..8;
    pub(super) const LUN: Range<usize> = 8..16;
    pub(super) const ITT: Range<usize> = 16..20;
}

/// Byte 0 mask: reserved bit.
pub const RESERVED_BIT: u8 = 0x80;
/// Byte 0 mask: immediate delivery.
pub const IMMEDIATE_BIT: u8 = 0x40;
/// Byte 0 mask: opcode.
pub const OPCODE_MASK: u8 = 0x3F;
/// Byte 1 mask: final bit.
pub const FINAL_BIT: u8 = 0x80;

/// A read/write view of a BHS over any byte buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking its length; accessors panic if it is shorter than
    /// [`BHS_LEN`].
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if `buffer` is shorter than [`BHS_LEN`].
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds a whole BHS.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if it does not.
    pub fn check_len(&self) -> Result<()> {
        let have = self.buffer.as_ref().len();
        if have < BHS_LEN {
            Err(Error::Truncated {
                need: BHS_LEN,
                have,
            })
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The first [`BHS_LEN`] bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..BHS_LEN]
    }

    /// Byte `i` of the BHS.
    pub fn byte(&self, i: usize) -> u8 {
        self.as_bytes()[i]
    }

    fn u16_at(&self, off: usize) -> u16 {
        let b = self.as_bytes();
        u16::from_be_bytes([b[off], b[off + 1]])
    }

    fn u32_at(&self, off: usize) -> u32 {
        let b = self.as_bytes();
        u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
    }

    /// Reserved bit 0x80 of byte 0.
    pub fn reserved_bit(&self) -> bool {
        self.byte(field::OPCODE) & RESERVED_BIT != 0
    }

    /// I bit: immediate delivery.
    pub fn immediate(&self) -> bool {
        self.byte(field::OPCODE) & IMMEDIATE_BIT != 0
    }

    /// The six opcode bits, undecoded.
    pub fn opcode_raw(&self) -> u8 {
        self.byte(field::OPCODE) & OPCODE_MASK
    }

    /// The decoded opcode.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownOpcode`] for an opcode not in [`Opcode`].
    pub fn opcode(&self) -> Result<Opcode> {
        Opcode::try_from(self.opcode_raw())
    }

    /// F bit (byte 1, 0x80).
    pub fn final_flag(&self) -> bool {
        self.byte(field::FLAGS) & FINAL_BIT != 0
    }

    /// Byte 1: F bit plus opcode-specific flags.
    pub fn flags(&self) -> u8 {
        self.byte(field::FLAGS)
    }

    /// TotalAHSLength in 4-byte words.
    pub fn total_ahs_len_words(&self) -> u8 {
        self.byte(field::TOTAL_AHS_LEN)
    }

    /// TotalAHSLength in bytes.
    pub fn total_ahs_len(&self) -> usize {
        usize::from(self.total_ahs_len_words()) * 4
    }

    /// DataSegmentLength (24-bit, excludes padding).
    pub fn data_segment_len(&self) -> u32 {
        let b = &self.as_bytes()[field::DATA_SEGMENT_LEN];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// LUN field (bytes 8..16); opcode-specific for some PDUs.
    pub fn lun(&self) -> Lun {
        let mut l = [0u8; 8];
        l.copy_from_slice(&self.as_bytes()[field::LUN]);
        Lun(l)
    }

    /// Initiator Task Tag.
    pub fn itt(&self) -> Itt {
        Itt(self.u32_at(field::ITT.start))
    }

    /// Big-endian 32-bit word `index` (0..12) of the BHS, e.g. 5 for bytes 20..24.
    ///
    /// # Panics
    ///
    /// If `index >= 12`.
    pub fn word(&self, index: usize) -> u32 {
        self.u32_at(index * 4)
    }

    /// Big-endian 16-bit half-word `index` (0..24) of the BHS, e.g. 10 for bytes 20..22.
    ///
    /// # Panics
    ///
    /// If `index >= 24`.
    pub fn half_word(&self, index: usize) -> u16 {
        self.u16_at(index * 2)
    }

    /// Bytes 20..48, the opcode-specific tail.
    pub fn opcode_specific(&self) -> &[u8] {
        &self.as_bytes()[20..BHS_LEN]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[..BHS_LEN]
    }

    /// Sets byte `i` of the BHS.
    pub fn set_byte(&mut self, i: usize, v: u8) {
        self.bytes_mut()[i] = v;
    }

    /// Sets or clears the I bit.
    pub fn set_immediate(&mut self, on: bool) {
        let b = &mut self.bytes_mut()[field::OPCODE];
        *b = if on {
            *b | IMMEDIATE_BIT
        } else {
            *b & !IMMEDIATE_BIT
        };
    }

    /// Sets the opcode bits, keeping the I bit and clearing the reserved bit.
    pub fn set_opcode(&mut self, op: Opcode) {
        let b = &mut self.bytes_mut()[field::OPCODE];
        *b = (*b & IMMEDIATE_BIT) | u8::from(op);
    }

    /// Sets byte 1 (F bit plus opcode-specific flags).
    pub fn set_flags(&mut self, v: u8) {
        self.set_byte(field::FLAGS, v);
    }

    /// Sets TotalAHSLength in words.
    pub fn set_total_ahs_len_words(&mut self, words: u8) {
        self.set_byte(field::TOTAL_AHS_LEN, words);
    }

    /// Sets DataSegmentLength; bits above the low 24 are ignored.
    pub fn set_data_segment_len(&mut self, len: u32) {
        let b = len.to_be_bytes();
        self.bytes_mut()[field::DATA_SEGMENT_LEN].copy_from_slice(&b[1..]);
    }

    /// Sets the LUN field.
    pub fn set_lun(&mut self, lun: Lun) {
        self.bytes_mut()[field::LUN].copy_from_slice(&lun.0);
    }

    /// Sets the Initiator Task Tag.
    pub fn set_itt(&mut self, itt: Itt) {
        self.set_word(field::ITT.start / 4, itt.0);
    }

    /// Sets big-endian word `index` (0..12).
    ///
    /// # Panics
    ///
    /// If `index >= 12`.
    pub fn set_word(&mut self, index: usize, v: u32) {
        self.bytes_mut()[index * 4..index * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets big-endian half-word `index` (0..24).
    ///
    /// # Panics
    ///
    /// If `index >= 24`.
    pub fn set_half_word(&mut self, index: usize, v: u16) {
        self.bytes_mut()[index * 2..index * 2 + 2].copy_from_slice(&v.to_be_bytes());
    }
}

/// Lengths of one PDU, derived from its BHS and the negotiated digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// AHS bytes (TotalAHSLength × 4).
    pub ahs_len: usize,
    /// BHS + AHS + header digest; the data segment starts here.
    pub header_len: usize,
    /// DataSegmentLength.
    pub data_len: usize,
    /// Zero pad after the data segment (0..=3).
    pub pad_len: usize,
    /// Whether a data digest follows the pad.
    pub data_digest: bool,
    /// The whole PDU.
    pub total_len: usize,
}

/// Computes the framing of the PDU whose BHS starts `buf` (only the first 48 bytes are read).
///
/// The data digest is present only when `digests.data` is set and DataSegmentLength > 0.
///
/// # Errors
///
/// [`Error::Truncated`] if `buf` is shorter than the BHS; [`Error::BadDataSegmentLength`] if
/// the arithmetic would overflow `usize` (only possible on 16-bit targets).
///
/// ```
/// use ulp_iscsi::wire::{bhs, Digests};
/// let mut b = [0u8; 48];
/// b[7] = 5; // DataSegmentLength 5, padded to 8
/// let f = bhs::frame(&b, Digests::BOTH).unwrap();
/// assert_eq!((f.header_len, f.total_len), (52, 52 + 8 + 4));
/// ```
pub fn frame(buf: &[u8], digests: Digests) -> Result<Frame> {
    let pkt = Packet::new_checked(buf)?;
    let ahs_len = pkt.total_ahs_len();
    let data_len =
        usize::try_from(pkt.data_segment_len()).map_err(|_| Error::BadDataSegmentLength)?;
    let pad = pad_len(data_len);
    let data_digest = digests.data && data_len > 0;
    let overflow = Error::BadDataSegmentLength;
    let header_len = BHS_LEN
        .checked_add(ahs_len)
        .and_then(|n| n.checked_add(if digests.header { 4 } else { 0 }))
        .ok_or(overflow)?;
    let total_len = header_len
        .checked_add(data_len)
        .and_then(|n| n.checked_add(pad))
        .and_then(|n| n.checked_add(if data_digest { 4 } else { 0 }))
        .ok_or(overflow)?;
    Ok(Frame {
        ahs_len,
        header_len,
        data_len,
        pad_len: pad,
        data_digest,
        total_len,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::test_util::bhs_from_words;

    /// RFC 3720 B.4: the 48-byte SCSI Read command whose CRC32C is 0xD9963A56.
    static RFC_READ_CMD: [u8; 48] = [
        0x01, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00,
        0x00, 0x18, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&RFC_READ_CMD[..]).unwrap();
        assert_eq!(p.opcode(), Ok(Opcode::ScsiCommand));
        assert!(!p.immediate());
        assert!(p.final_flag());
        assert_eq!(p.flags(), 0xC0);
        assert_eq!(p.total_ahs_len(), 0);
        assert_eq!(p.data_segment_len(), 0);
        assert_eq!(p.itt(), Itt(0x1400_0000));
        assert_eq!(p.word(5), 0x0000_0400);
        assert_eq!(p.word(6), 0x14);
        assert_eq!(p.word(7), 0x18);
        assert_eq!(p.opcode_specific()[12], 0x28);
    }

    #[test]
    fn rfc_header_digest_vector() {
        assert_eq!(ulp_ddp_core::digest::crc32c(&RFC_READ_CMD), 0xD996_3A56);
        assert_eq!(
            ulp_ddp_core::digest::to_wire(0xD996_3A56),
            [0x56, 0x3A, 0x96, 0xD9]
        );
    }

    #[test]
    fn construct() {
        let mut b = [0xAAu8; 48];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_byte(0, 0);
        p.set_opcode(Opcode::TextRequest);
        p.set_immediate(true);
        p.set_flags(0x80);
        p.set_total_ahs_len_words(2);
        p.set_data_segment_len(0x0001_0203);
        p.set_lun(Lun([1, 2, 3, 4, 5, 6, 7, 8]));
        p.set_itt(Itt(0xDEAD_BEEF));
        p.set_half_word(10, 0x1234);
        assert_eq!(
            &b[..20],
            &[
                0x44, 0x80, 0xAA, 0xAA, 2, 1, 2, 3, 1, 2, 3, 4, 5, 6, 7, 8, 0xDE, 0xAD, 0xBE, 0xEF
            ]
        );
        assert_eq!(&b[20..22], &[0x12, 0x34]);
    }

    #[test]
    fn endianness() {
        let mut b = [0u8; 48];
        Packet::new_unchecked(&mut b[..]).set_data_segment_len(0x0104);
        assert_eq!(&b[4..8], &[0x00, 0x00, 0x01, 0x04]);
        assert_eq!(&b[5..8], &[0x00, 0x01, 0x04]);
        assert_eq!(Packet::new_unchecked(&b[..]).data_segment_len(), 0x104);
        let w = bhs_from_words([0, 0x00FF_FFFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Packet::new_unchecked(&w[..]).data_segment_len(), 0xFF_FFFF);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&[0u8; 47][..]),
            Err(Error::Truncated { need: 48, have: 47 })
        );
        assert_eq!(
            frame(&[0u8; 10], Digests::NONE),
            Err(Error::Truncated { need: 48, have: 10 })
        );
    }

    #[test]
    fn framing() {
        let mut b = [0u8; 48];
        assert_eq!(frame(&b, Digests::BOTH).unwrap().total_len, 52); // no data: no data digest
        b[4] = 3;
        b[5..8].copy_from_slice(&[0, 0x01, 0x01]);
        let f = frame(&b, Digests::BOTH).unwrap();
        assert_eq!(
            f,
            Frame {
                ahs_len: 12,
                header_len: 64,
                data_len: 257,
                pad_len: 3,
                data_digest: true,
                total_len: 64 + 257 + 3 + 4
            }
        );
        let f = frame(&b, Digests::NONE).unwrap();
        assert_eq!((f.header_len, f.total_len), (60, 60 + 260));
    }

    #[test]
    fn impossible_len() {
        // Largest possible header fields still frame without overflow.
        let mut b = [0u8; 48];
        b[4] = 0xFF;
        b[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
        let f = frame(&b, Digests::BOTH).unwrap();
        assert_eq!(f.total_len, 48 + 1020 + 4 + 0xFF_FFFF + 1 + 4);
    }

    proptest! {
        #[test]
        fn frame_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64),
                              h in any::<bool>(), d in any::<bool>()) {
            let _ = frame(&bytes, Digests { header: h, data: d });
        }

        #[test]
        fn frame_total_is_aligned(words in any::<[u32; 12]>(), h in any::<bool>(), d in any::<bool>()) {
            let b = bhs_from_words(words);
            let f = frame(&b, Digests { header: h, data: d }).unwrap();
            prop_assert_eq!(f.total_len % 4, 0);
            prop_assert!(f.total_len >= f.header_len + f.data_len);
        }
    }
}
