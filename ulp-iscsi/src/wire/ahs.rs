//! Additional Header Segments (RFC 7143 §11.2.2).
//!
//! Each AHS: bytes 0..2 AHSLength (big-endian; the AHS-specific bytes after the type byte,
//! excluding padding), byte 2 AHSType, then AHSLength bytes, padded to a 4-byte multiple.
//! Type 1 is the Extended CDB (reserved byte, then CDB bytes 16..), type 2 the Bidirectional Read
//! Expected Data Transfer Length (reserved byte, then a 4-byte value; AHSLength 5).

use super::{Error, Result};

/// AHSType of the Extended CDB AHS.
pub const TYPE_EXTENDED_CDB: u8 = 1;
/// AHSType of the Bidirectional Read Expected Data Transfer Length AHS.
pub const TYPE_BIDI_READ_LEN: u8 = 2;
/// Largest CDB (RFC 7143: CDBs up to 260 bytes), so at most 244 extended bytes.
pub const MAX_EXT_CDB_LEN: usize = 260 - 16;
/// Largest AHS area (TotalAHSLength 255 words).
pub const MAX_AHS_AREA: usize = 255 * 4;

/// One raw AHS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAhs<'a> {
    /// AHSType (byte 2).
    pub ahs_type: u8,
    /// The AHSLength bytes after the type byte (first one is reserved for types 1 and 2).
    pub specific: &'a [u8],
}

/// One decoded AHS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ahs<'a> {
    /// CDB bytes beyond the first 16.
    ExtendedCdb(&'a [u8]),
    /// Expected read length of a bidirectional command.
    BidiReadLen(u32),
}

impl<'a> RawAhs<'a> {
    /// Decodes the two types RFC 7143 defines.
    ///
    /// # Errors
    ///
    /// [`Error::BadAhs`] for an unknown type or a wrong length.
    pub fn decode(&self) -> Result<Ahs<'a>> {
        match self.ahs_type {
            TYPE_EXTENDED_CDB => match self.specific {
                [_reserved, ext @ ..] if !ext.is_empty() && ext.len() <= MAX_EXT_CDB_LEN => {
                    Ok(Ahs::ExtendedCdb(ext))
                }
                _ => Err(Error::BadAhs),
            },
            TYPE_BIDI_READ_LEN => match *self.specific {
                [_reserved, a, b, c, d] => Ok(Ahs::BidiReadLen(u32::from_be_bytes([a, b, c, d]))),
                _ => Err(Error::BadAhs),
            },
            _ => Err(Error::BadAhs),
        }
    }
}

/// Iterator over the AHSs of an AHS area; yields an error (then stops) on a malformed one.
#[derive(Debug, Clone)]
pub struct AhsIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> AhsIter<'a> {
    /// Iterates the AHS area `area` (TotalAHSLength × 4 bytes after the BHS).
    pub const fn new(area: &'a [u8]) -> Self {
        Self {
            rest: area,
            failed: false,
        }
    }
}

impl<'a> Iterator for AhsIter<'a> {
    type Item = Result<RawAhs<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let [l0, l1, ahs_type, ..] = *self.rest else {
                return Err(Error::BadAhs);
            };
            let len = usize::from(u16::from_be_bytes([l0, l1]));
            let used = 3 + len;
            let padded = used + super::pad_len(used);
            let specific = self.rest.get(3..used).ok_or(Error::BadAhs)?;
            let rest = self.rest.get(padded..).ok_or(Error::BadAhs)?;
            Ok((RawAhs { ahs_type, specific }, rest))
        })();
        match parsed {
            Ok((ahs, rest)) => {
                self.rest = rest;
                Some(Ok(ahs))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// The AHSs a SCSI Command may carry, each at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommandAhs<'a> {
    /// CDB bytes beyond 16 (empty if there is no Extended CDB AHS).
    pub ext_cdb: &'a [u8],
    /// Bidirectional read expected length, if that AHS is present.
    pub bidi_read_len: Option<u32>,
}

impl<'a> CommandAhs<'a> {
    /// Parses an AHS area.
    ///
    /// # Errors
    ///
    /// [`Error::BadAhs`] for a malformed, unknown or duplicated AHS.
    pub fn parse(area: &'a [u8]) -> Result<Self> {
        let mut out = Self::default();
        let mut seen_cdb = false;
        for raw in AhsIter::new(area) {
            match raw?.decode()? {
                Ahs::ExtendedCdb(ext) if !seen_cdb => {
                    seen_cdb = true;
                    out.ext_cdb = ext;
                }
                Ahs::BidiReadLen(v) if out.bidi_read_len.is_none() => out.bidi_read_len = Some(v),
                _ => return Err(Error::BadAhs),
            }
        }
        Ok(out)
    }

    /// Bytes the AHS area takes when emitted.
    pub fn len(&self) -> usize {
        let mut n = 0;
        if !self.ext_cdb.is_empty() {
            let used = 4 + self.ext_cdb.len();
            n += used + super::pad_len(used);
        }
        if self.bidi_read_len.is_some() {
            n += 8;
        }
        n
    }

    /// Whether no AHS is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that the AHSs can be encoded.
    ///
    /// # Errors
    ///
    /// [`Error::BadAhs`] if the extended CDB exceeds [`MAX_EXT_CDB_LEN`].
    pub fn check(&self) -> Result<()> {
        if self.ext_cdb.len() > MAX_EXT_CDB_LEN {
            Err(Error::BadAhs)
        } else {
            Ok(())
        }
    }

    /// Writes the AHS area into `buf`, which must be exactly [`len`](Self::len) zero bytes.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] if `buf` is shorter than `len()`; [`Error::BadAhs`] as
    /// [`check`](Self::check).
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        self.check()?;
        ulp_ddp_core::transmit::check_space(buf, self.len())?;
        let mut at = 0;
        if !self.ext_cdb.is_empty() {
            // Bounded by check(): at most 245.
            let len = (1 + self.ext_cdb.len()) as u16;
            buf[0..2].copy_from_slice(&len.to_be_bytes());
            buf[2] = TYPE_EXTENDED_CDB;
            buf[3] = 0;
            buf[4..4 + self.ext_cdb.len()].copy_from_slice(self.ext_cdb);
            let used = 4 + self.ext_cdb.len();
            buf[used..used + super::pad_len(used)].fill(0);
            at = used + super::pad_len(used);
        }
        if let Some(v) = self.bidi_read_len {
            buf[at..at + 4].copy_from_slice(&[0, 5, TYPE_BIDI_READ_LEN, 0]);
            buf[at + 4..at + 8].copy_from_slice(&v.to_be_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Extended CDB of 5 extra bytes (a 21-byte CDB): AHSLength 6, padded from 9 to 12.
    static EXT_CDB_AHS: [u8; 12] = [0, 6, 1, 0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0, 0, 0];
    static BIDI_AHS: [u8; 8] = [0, 5, 2, 0, 0x00, 0x01, 0x00, 0x00];

    #[test]
    fn parse_both() {
        let mut area = [0u8; 20];
        area[..12].copy_from_slice(&EXT_CDB_AHS);
        area[12..].copy_from_slice(&BIDI_AHS);
        let a = CommandAhs::parse(&area).unwrap();
        assert_eq!(a.ext_cdb, &[0xA1, 0xA2, 0xA3, 0xA4, 0xA5]);
        assert_eq!(a.bidi_read_len, Some(0x1_0000));
        assert_eq!(a.len(), 20);
        let mut out = [0u8; 20];
        a.emit(&mut out).unwrap();
        assert_eq!(out, area);
    }

    #[test]
    fn bad_ahs() {
        // Duplicate.
        let mut dup = [0u8; 16];
        dup[..8].copy_from_slice(&BIDI_AHS);
        dup[8..].copy_from_slice(&BIDI_AHS);
        assert_eq!(CommandAhs::parse(&dup), Err(Error::BadAhs));
        // Unknown type.
        assert_eq!(CommandAhs::parse(&[0, 1, 9, 0]), Err(Error::BadAhs));
        // Length past the area.
        assert_eq!(
            CommandAhs::parse(&[0, 9, 1, 0, 1, 2, 3, 4]),
            Err(Error::BadAhs)
        );
        // Bidi with the wrong length.
        assert_eq!(CommandAhs::parse(&[0, 1, 2, 0]), Err(Error::BadAhs));
        // Extended CDB with no CDB bytes.
        assert_eq!(CommandAhs::parse(&[0, 1, 1, 0]), Err(Error::BadAhs));
        // Truncated AHS header.
        assert_eq!(CommandAhs::parse(&[0, 1]), Err(Error::BadAhs));
        let mut it = AhsIter::new(&[0, 1]);
        assert_eq!(it.next(), Some(Err(Error::BadAhs)));
        assert_eq!(it.next(), None);
    }

    proptest! {
        #[test]
        fn round_trip(ext in proptest::collection::vec(any::<u8>(), 0..=MAX_EXT_CDB_LEN),
                      bidi in proptest::option::of(any::<u32>())) {
            let a = CommandAhs { ext_cdb: &ext, bidi_read_len: bidi };
            let mut buf = vec![0u8; a.len()];
            a.emit(&mut buf).unwrap();
            prop_assert_eq!(buf.len() % 4, 0);
            prop_assert_eq!(CommandAhs::parse(&buf).unwrap(), a);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = CommandAhs::parse(&bytes);
            for _ in AhsIter::new(&bytes) {}
        }
    }
}
