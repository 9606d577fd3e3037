//! CHAP (RFC 1994) with MD5 for iSCSI login authentication (RFC 7143 §12.1.3), one-way and
//! mutual. MD5 is RustCrypto's `md-5` crate.

use core::fmt;

use md5::{Digest, Md5};

/// CHAP_A value for MD5.
pub const CHAP_MD5: u8 = 5;

/// Longest challenge accepted (RFC 7143 allows large binary values; 1024 bytes is plenty).
pub const MAX_CHALLENGE: usize = 1024;

/// Why a CHAP value was refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum ChapError {
    /// Not a `0x`-hex or `0b`-base64 binary value.
    BadEncoding,
    /// The value is empty or longer than [`MAX_CHALLENGE`].
    BadLength,
    /// CHAP_I is not a number in 0..=255.
    BadIdentifier,
}

impl fmt::Display for ChapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadEncoding => "CHAP value is not hex (0x) or base64 (0b)",
            Self::BadLength => "CHAP value is empty or too long",
            Self::BadIdentifier => "CHAP_I is not in 0..=255",
        })
    }
}

impl std::error::Error for ChapError {}

/// Decodes an iSCSI binary value: `0x` + hex digits or `0b` + base64.
///
/// # Errors
///
/// [`ChapError`] for any malformed value.
pub fn decode_binary(value: &str) -> Result<Vec<u8>, ChapError> {
    let out = if let Some(hex) = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        let digits = hex.as_bytes();
        // An odd digit count has an implied leading zero.
        let mut out = Vec::with_capacity(digits.len().div_ceil(2));
        let mut iter = digits.iter().map(|&d| hex_val(d));
        if digits.len() % 2 == 1 {
            out.push(iter.next().flatten().ok_or(ChapError::BadEncoding)?);
        }
        while let Some(hi) = iter.next() {
            let lo = iter.next().flatten().ok_or(ChapError::BadEncoding)?;
            out.push((hi.ok_or(ChapError::BadEncoding)? << 4) | lo);
        }
        out
    } else if let Some(b64) = value
        .strip_prefix("0b")
        .or_else(|| value.strip_prefix("0B"))
    {
        decode_base64(b64)?
    } else {
        return Err(ChapError::BadEncoding);
    };
    if out.is_empty() || out.len() > MAX_CHALLENGE {
        return Err(ChapError::BadLength);
    }
    Ok(out)
}

fn hex_val(d: u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    }
}

fn decode_base64(s: &str) -> Result<Vec<u8>, ChapError> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(ChapError::BadEncoding),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

/// Encodes bytes as an iSCSI hex binary value (`0x…`).
pub fn encode_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Parses CHAP_I.
///
/// # Errors
///
/// [`ChapError::BadIdentifier`] unless it is a decimal (or `0x` hex) number in 0..=255.
pub fn parse_identifier(value: &str) -> Result<u8, ChapError> {
    let n = if let Some(h) = value.strip_prefix("0x") {
        u32::from_str_radix(h, 16).ok()
    } else {
        value.parse::<u32>().ok()
    };
    n.and_then(|n| u8::try_from(n).ok())
        .ok_or(ChapError::BadIdentifier)
}

/// The CHAP response: MD5(identifier ‖ secret ‖ challenge).
pub fn response(identifier: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([identifier]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_values() {
        assert_eq!(decode_binary("0x0102ff"), Ok(vec![1, 2, 255]));
        assert_eq!(decode_binary("0xabc"), Ok(vec![0x0a, 0xbc]));
        assert_eq!(decode_binary("0bAQL/"), Ok(vec![1, 2, 255]));
        assert_eq!(decode_binary("0x"), Err(ChapError::BadLength));
        assert_eq!(decode_binary("0xzz"), Err(ChapError::BadEncoding));
        assert_eq!(decode_binary("12"), Err(ChapError::BadEncoding));
        assert_eq!(encode_hex(&[0, 0xab]), "0x00ab");
        assert_eq!(parse_identifier("255"), Ok(255));
        assert_eq!(parse_identifier("256"), Err(ChapError::BadIdentifier));
        assert_eq!(parse_identifier("x"), Err(ChapError::BadIdentifier));
    }

    #[test]
    fn response_is_md5_of_id_secret_challenge() {
        let r = response(1, b"secret", &[9, 9]);
        let whole: [u8; 16] = Md5::digest([1, b's', b'e', b'c', b'r', b'e', b't', 9, 9]).into();
        assert_eq!(r, whole);
        // RFC 1321's test vector, so the crate is the MD5 the targets compute.
        let abc: [u8; 16] = Md5::digest(b"abc").into();
        assert_eq!(encode_hex(&abc), "0x900150983cd24fb0d6963f7d28e17f72");
    }
}
