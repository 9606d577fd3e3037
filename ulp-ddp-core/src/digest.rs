//! CRC32C (Castagnoli), the digest both request-response storage protocols use.
//!
//! The crate behind the arithmetic is chosen here and nowhere else: every digest in the workspace
//! goes through [`crc32c`] or [`Crc32c`]. It is `crc-fast` (carry-less multiply folding, measured
//! about twice as fast as the `crc32c` crate's SSE4.2 loop on this project's machines).
//!
//! Digests travel on the wire least-significant byte first in both NVMe/TCP and iSCSI;
//! [`Crc32c::to_wire`] and [`Crc32c::matches_wire`] encode that rule once.

use core::fmt;

use crc_fast::{CrcAlgorithm, Digest};

/// CRC32C of `data` (initial value all ones, final complement), e.g. `0xE306_9283` for
/// `b"123456789"`.
///
/// ```
/// assert_eq!(ulp_ddp_core::digest::crc32c(b"123456789"), 0xE306_9283);
/// ```
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(data)
}

/// Which CRC32C digests a connection carries: a header digest after every header that may
/// have one, a data digest after every data segment. Both protocols negotiate them (NVMe/TCP
/// in ICReq/ICResp, iSCSI with the HeaderDigest and DataDigest keys) and both start without.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
pub struct Digests {
    /// Header digests on.
    pub header: bool,
    /// Data digests on.
    pub data: bool,
}

impl Digests {
    /// No digests.
    pub const NONE: Self = Self {
        header: false,
        data: false,
    };
    /// Both digests.
    pub const BOTH: Self = Self {
        header: true,
        data: true,
    };
}

impl fmt::Display for Digests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.header, self.data) {
            (false, false) => "no digests",
            (true, false) => "header digest",
            (false, true) => "data digest",
            (true, true) => "header and data digests",
        })
    }
}

/// CRC32C of `parts`, in order, as the four bytes sent on the wire: the data digest of a
/// payload sent from a scatter-gather buffer (pad bytes, if covered, are one more part).
///
/// ```
/// use ulp_ddp_core::digest::{crc32c, parts_digest};
///
/// let parts: [&[u8]; 3] = [b"1234", b"", b"56789"];
/// assert_eq!(parts_digest(parts), crc32c(b"123456789").to_le_bytes());
/// ```
pub fn parts_digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> [u8; 4] {
    let mut crc = Crc32c::new();
    for part in parts {
        crc.update(part);
    }
    crc.to_wire()
}

/// A running CRC32C over data that arrives in pieces.
///
/// ```
/// use ulp_ddp_core::digest::{crc32c, Crc32c};
///
/// let mut crc = Crc32c::new();
/// crc.update(b"12345");
/// crc.update(b"6789");
/// assert_eq!(crc.value(), crc32c(b"123456789"));
/// assert!(crc.matches_wire(crc.to_wire()));
/// ```
#[derive(Clone, Copy)]
pub struct Crc32c {
    digest: Digest,
}

impl Crc32c {
    /// A digest over zero bytes so far.
    #[inline]
    pub fn new() -> Self {
        Self {
            digest: Digest::new(CrcAlgorithm::Crc32Iscsi),
        }
    }

    /// Feeds `data` into the digest.
    #[inline]
    pub fn update(&mut self, data: &[u8]) {
        self.digest.update(data);
    }

    /// Back to a digest over zero bytes, without building a new one (cheaper than
    /// [`new`](Self::new): the state carries the algorithm's parameters).
    #[inline]
    pub fn reset(&mut self) {
        self.digest.reset();
    }

    /// The CRC32C of everything fed so far.
    #[inline]
    pub fn value(&self) -> u32 {
        // The digest is 32 bits wide; the upper half of the u64 is always zero.
        (self.digest.finalize() & 0xFFFF_FFFF) as u32
    }

    /// Number of bytes fed so far.
    #[inline]
    pub fn len(&self) -> u64 {
        self.digest.get_amount()
    }

    /// Whether no byte has been fed yet.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The digest as the four bytes sent on the wire (least-significant byte first).
    #[inline]
    pub fn to_wire(&self) -> [u8; 4] {
        self.value().to_le_bytes()
    }

    /// Whether `wire`, four digest bytes as received, equal this digest.
    #[inline]
    pub fn matches_wire(&self, wire: [u8; 4]) -> bool {
        u32::from_le_bytes(wire) == self.value()
    }
}

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Crc32c {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crc32c")
            .field("value", &format_args!("{:#010x}", self.value()))
            .field("len", &self.len())
            .finish()
    }
}

/// Bytes digested before they are copied, per step of [`copy_with_crc`]: small enough that
/// the copy reads the source from L1/L2 cache, large enough to amortise the CRC setup.
pub const COPY_CHUNK: usize = 8 * 1024;

/// Copies `src` into `dst`, feeding the bytes into `crc` when given, reading the source from
/// memory once: each chunk of [`COPY_CHUNK`] bytes is digested, then copied while still in
/// cache. (Digesting the source before the copy measured faster than digesting the
/// destination after it: the copy's stores to a cold destination drain while the next chunk
/// is digested.)
///
/// # Panics
///
/// If the lengths differ.
///
/// ```
/// use ulp_ddp_core::digest::{copy_with_crc, crc32c, Crc32c};
///
/// let src = vec![7u8; 100_000];
/// let mut dst = vec![0u8; 100_000];
/// let mut crc = Crc32c::new();
/// copy_with_crc(&mut dst, &src, Some(&mut crc));
/// assert_eq!(dst, src);
/// assert_eq!(crc.value(), crc32c(&src));
/// ```
#[inline]
pub fn copy_with_crc(dst: &mut [u8], src: &[u8], crc: Option<&mut Crc32c>) {
    assert_eq!(dst.len(), src.len(), "copy_with_crc needs equal lengths");
    match crc {
        None => dst.copy_from_slice(src),
        Some(crc) => {
            for (d, s) in dst.chunks_mut(COPY_CHUNK).zip(src.chunks(COPY_CHUNK)) {
                crc.update(s);
                d.copy_from_slice(s);
            }
        }
    }
}

/// Reads a digest received on the wire (least-significant byte first).
#[inline]
pub fn from_wire(wire: [u8; 4]) -> u32 {
    u32::from_le_bytes(wire)
}

/// Encodes a digest value for the wire (least-significant byte first).
#[inline]
pub fn to_wire(value: u32) -> [u8; 4] {
    value.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        // RFC 3720 B.4: 32 bytes of 0xFF.
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn wire_order_is_lsb_first() {
        let mut crc = Crc32c::new();
        crc.update(b"123456789");
        assert_eq!(crc.to_wire(), [0x83, 0x92, 0x06, 0xE3]);
        assert_eq!(from_wire(crc.to_wire()), 0xE306_9283);
    }

    #[test]
    fn agrees_with_crc32c_crate_over_random_splits() {
        let data: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [0usize, 1, 3, 4, 7, 63, 64, 65, 4096, 8191, 70_000] {
            let want = crc32c::crc32c(&data[..len]);
            assert_eq!(crc32c(&data[..len]), want, "len {len}");
            let mut crc = Crc32c::new();
            for chunk in data[..len].chunks(777) {
                crc.update(chunk);
            }
            assert_eq!(crc.value(), want, "split len {len}");
            assert_eq!(crc.len(), len as u64);
        }
    }
}
