//! Text Request (0x04) / Text Response (0x24), RFC 7143 §11.10–§11.11, and the `key=value\0`
//! text data carried by Text and Login PDUs (RFC 7143 §6.1).
//!
//! | Off | Request | Response |
//! |---|---|---|
//! | 1 | F 0x80, C 0x40 | same |
//! | 8 | LUN | LUN |
//! | 16 | ITT | ITT |
//! | 20 | TTT | TTT |
//! | 24 | CmdSN | StatSN |
//! | 28 | ExpStatSN | ExpCmdSN |
//! | 32 | reserved | MaxCmdSN |
//!
//! A pair may be split across PDUs sent with C = 1; reassemble the data segments before using
//! [`TextIter`].

use core::fmt;

use super::bhs::{FINAL_BIT, Packet};
use super::{Body, Error, Itt, Lun, Opcode, Result, Ttt, impl_pdu, no_ahs, reserved_bits};

/// Byte 1: continue bit.
pub const CONTINUE_BIT: u8 = 0x40;
/// Longest key name (RFC 7143 §6.1: 63 bytes).
pub const MAX_KEY_LEN: usize = 63;
/// Default longest value (Linux VALUE_MAXLEN, RFC 7143 §6.1: 255 bytes).
pub const DEFAULT_MAX_VALUE_LEN: usize = 255;

/// Text data errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TextError {
    /// A pair has no `=`; `offset` is where the pair starts.
    MissingEquals {
        /// Offset of the pair.
        offset: usize,
    },
    /// The last pair is not NUL-terminated.
    Unterminated,
    /// Empty key.
    EmptyKey {
        /// Offset of the pair.
        offset: usize,
    },
    /// Key longer than [`MAX_KEY_LEN`].
    KeyTooLong {
        /// Offset of the pair.
        offset: usize,
    },
    /// Key with a character outside `A-Za-z0-9.-+@_`.
    BadKeyChar {
        /// Offset of the pair.
        offset: usize,
    },
    /// Value longer than the configured limit.
    ValueTooLong {
        /// Offset of the pair.
        offset: usize,
    },
    /// Value not valid UTF-8 or containing a NUL.
    BadValue {
        /// Offset of the pair.
        offset: usize,
    },
    /// Output buffer full.
    BufferFull,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::MissingEquals { offset } => write!(f, "pair at {offset} has no '='"),
            Self::Unterminated => f.write_str("last pair not NUL-terminated"),
            Self::EmptyKey { offset } => write!(f, "empty key at {offset}"),
            Self::KeyTooLong { offset } => write!(f, "key too long at {offset}"),
            Self::BadKeyChar { offset } => write!(f, "invalid key character at {offset}"),
            Self::ValueTooLong { offset } => write!(f, "value too long at {offset}"),
            Self::BadValue { offset } => write!(f, "invalid value at {offset}"),
            Self::BufferFull => f.write_str("text buffer full"),
        }
    }
}

impl core::error::Error for TextError {}

fn check_key(key: &[u8], offset: usize) -> core::result::Result<&str, TextError> {
    if key.is_empty() {
        return Err(TextError::EmptyKey { offset });
    }
    if key.len() > MAX_KEY_LEN {
        return Err(TextError::KeyTooLong { offset });
    }
    if !key
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || b".-+@_".contains(&c))
    {
        return Err(TextError::BadKeyChar { offset });
    }
    core::str::from_utf8(key).map_err(|_| TextError::BadKeyChar { offset })
}

fn check_value(value: &[u8], max: usize, offset: usize) -> core::result::Result<&str, TextError> {
    if value.len() > max {
        return Err(TextError::ValueTooLong { offset });
    }
    if value.contains(&0) {
        return Err(TextError::BadValue { offset });
    }
    core::str::from_utf8(value).map_err(|_| TextError::BadValue { offset })
}

/// Iterator over `key=value\0` pairs; yields an error (then stops) on a malformed pair.
#[derive(Debug, Clone)]
pub struct TextIter<'a> {
    data: &'a [u8],
    pos: usize,
    max_value_len: usize,
    failed: bool,
}

impl<'a> TextIter<'a> {
    /// Iterates `data` with the default value limit ([`DEFAULT_MAX_VALUE_LEN`]).
    pub const fn new(data: &'a [u8]) -> Self {
        Self::with_max_value_len(data, DEFAULT_MAX_VALUE_LEN)
    }

    /// Iterates `data`, allowing values up to `max_value_len` bytes (e.g. 8192 for CHAP).
    pub const fn with_max_value_len(data: &'a [u8], max_value_len: usize) -> Self {
        Self {
            data,
            pos: 0,
            max_value_len,
            failed: false,
        }
    }

    fn pair(&self) -> core::result::Result<(&'a str, &'a str, usize), TextError> {
        let offset = self.pos;
        let rest = self.data.get(offset..).unwrap_or_default();
        let end = rest
            .iter()
            .position(|&c| c == 0)
            .ok_or(TextError::Unterminated)?;
        let pair = &rest[..end];
        let eq = pair
            .iter()
            .position(|&c| c == b'=')
            .ok_or(TextError::MissingEquals { offset })?;
        let key = check_key(&pair[..eq], offset)?;
        let value = check_value(&pair[eq + 1..], self.max_value_len, offset)?;
        Ok((key, value, offset + end + 1))
    }
}

impl<'a> Iterator for TextIter<'a> {
    type Item = core::result::Result<(&'a str, &'a str), TextError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        match self.pair() {
            Ok((k, v, next)) => {
                self.pos = next;
                Some(Ok((k, v)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Checks that all of `data` is well-formed text and returns the number of pairs.
///
/// # Errors
///
/// The first [`TextError`] found.
pub fn validate(data: &[u8]) -> core::result::Result<usize, TextError> {
    TextIter::new(data).try_fold(0, |n, p| p.map(|_| n + 1))
}

/// Looks up the first value of `key` in `data`.
///
/// # Errors
///
/// The first [`TextError`] met before `key` is found.
pub fn find<'a>(data: &'a [u8], key: &str) -> core::result::Result<Option<&'a str>, TextError> {
    for p in TextIter::new(data) {
        let (k, v) = p?;
        if k == key {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// Appends `key=value\0` pairs to a caller-provided buffer.
#[derive(Debug)]
pub struct TextWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    max_value_len: usize,
}

impl<'b> TextWriter<'b> {
    /// Writes into `buf`, with the default value limit.
    pub const fn new(buf: &'b mut [u8]) -> Self {
        Self {
            buf,
            len: 0,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
        }
    }

    /// Sets the value limit (e.g. 8192 for CHAP values).
    pub const fn max_value_len(mut self, max: usize) -> Self {
        self.max_value_len = max;
        self
    }

    /// Appends `key=value\0`. Nothing is written on error.
    ///
    /// # Errors
    ///
    /// A key or value [`TextError`], or [`TextError::BufferFull`].
    pub fn push(&mut self, key: &str, value: &str) -> core::result::Result<(), TextError> {
        check_key(key.as_bytes(), self.len)?;
        check_value(value.as_bytes(), self.max_value_len, self.len)?;
        let need = key.len() + 1 + value.len() + 1;
        let end = self.len.checked_add(need).ok_or(TextError::BufferFull)?;
        let out = self
            .buf
            .get_mut(self.len..end)
            .ok_or(TextError::BufferFull)?;
        let (k, rest) = out.split_at_mut(key.len());
        k.copy_from_slice(key.as_bytes());
        let (eq, rest) = rest.split_at_mut(1);
        eq[0] = b'=';
        let (v, nul) = rest.split_at_mut(value.len());
        v.copy_from_slice(value.as_bytes());
        nul[0] = 0;
        self.len = end;
        Ok(())
    }

    /// Bytes written so far.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The text written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Text Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRequestRepr<'a> {
    /// I bit.
    pub immediate: bool,
    /// F bit.
    pub final_: bool,
    /// C bit (excludes F).
    pub cont: bool,
    /// LUN.
    pub lun: Lun,
    /// ITT.
    pub itt: Itt,
    /// TTT (0xFFFFFFFF to start a new exchange).
    pub ttt: Ttt,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// Text data.
    pub data: &'a [u8],
}

/// Text Response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextResponseRepr<'a> {
    /// F bit.
    pub final_: bool,
    /// C bit (excludes F).
    pub cont: bool,
    /// LUN.
    pub lun: Lun,
    /// ITT.
    pub itt: Itt,
    /// TTT.
    pub ttt: Ttt,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Text data.
    pub data: &'a [u8],
}

fn parse_fc(pkt: &Packet<&[u8]>) -> Result<(bool, bool)> {
    reserved_bits(pkt, 1, 0x3F)?;
    let f = pkt.final_flag();
    let c = pkt.flags() & CONTINUE_BIT != 0;
    //= https://www.rfc-editor.org/rfc/rfc7143#section-11.10.2
    //# If the C bit is set to 1, the F bit MUST be set to 0.
    if f && c {
        return Err(Error::FlagConflict { offset: 1 });
    }
    Ok((f, c))
}

fn fc_bits(f: bool, c: bool) -> u8 {
    (if f { FINAL_BIT } else { 0 }) | if c { CONTINUE_BIT } else { 0 }
}

fn check_fc(f: bool, c: bool) -> Result<()> {
    if f && c {
        Err(Error::FlagConflict { offset: 1 })
    } else {
        Ok(())
    }
}

impl<'a> Body<'a> for TextRequestRepr<'a> {
    const OPCODE: Opcode = Opcode::TextRequest;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        no_ahs(ahs)?;
        let (final_, cont) = parse_fc(pkt)?;
        Ok(Self {
            immediate: pkt.immediate(),
            final_,
            cont,
            lun: pkt.lun(),
            itt: pkt.itt(),
            ttt: Ttt(pkt.word(5)),
            cmd_sn: pkt.word(6),
            exp_stat_sn: pkt.word(7),
            data,
        })
    }

    fn check(&self) -> Result<()> {
        check_fc(self.final_, self.cont)
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        pkt.set_immediate(self.immediate);
        pkt.set_flags(fc_bits(self.final_, self.cont));
        pkt.set_lun(self.lun);
        pkt.set_itt(self.itt);
        pkt.set_word(5, self.ttt.0);
        pkt.set_word(6, self.cmd_sn);
        pkt.set_word(7, self.exp_stat_sn);
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[self.data])
    }
}

impl<'a> Body<'a> for TextResponseRepr<'a> {
    const OPCODE: Opcode = Opcode::TextResponse;

    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        no_ahs(ahs)?;
        reserved_bits(pkt, 0, 0x40)?;
        let (final_, cont) = parse_fc(pkt)?;
        Ok(Self {
            final_,
            cont,
            lun: pkt.lun(),
            itt: pkt.itt(),
            ttt: Ttt(pkt.word(5)),
            stat_sn: pkt.word(6),
            exp_cmd_sn: pkt.word(7),
            max_cmd_sn: pkt.word(8),
            data,
        })
    }

    fn check(&self) -> Result<()> {
        check_fc(self.final_, self.cont)
    }

    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>) {
        pkt.set_flags(fc_bits(self.final_, self.cont));
        pkt.set_lun(self.lun);
        pkt.set_itt(self.itt);
        pkt.set_word(5, self.ttt.0);
        pkt.set_word(6, self.stat_sn);
        pkt.set_word(7, self.exp_cmd_sn);
        pkt.set_word(8, self.max_cmd_sn);
    }

    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[self.data])
    }
}

impl_pdu!(TextRequestRepr);
impl_pdu!(TextResponseRepr);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::Digests;
    use crate::wire::test_util::{bhs_from_words, data, digests, itt, lun, ttt};

    static SEND_TARGETS: &[u8] = b"SendTargets=All\0";

    #[test]
    fn pairs() {
        let d = b"HeaderDigest=CRC32C,None\0MaxRecvDataSegmentLength=262144\0X=\0";
        let v: Vec<_> = TextIter::new(d)
            .collect::<core::result::Result<_, _>>()
            .unwrap();
        assert_eq!(
            v,
            [
                ("HeaderDigest", "CRC32C,None"),
                ("MaxRecvDataSegmentLength", "262144"),
                ("X", "")
            ]
        );
        assert_eq!(validate(d), Ok(3));
        assert_eq!(find(d, "MaxRecvDataSegmentLength"), Ok(Some("262144")));
        assert_eq!(find(d, "DataDigest"), Ok(None));
        assert_eq!(validate(b""), Ok(0));
    }

    #[test]
    fn malformed() {
        assert_eq!(validate(b"A=1"), Err(TextError::Unterminated));
        assert_eq!(
            validate(b"A=1\0B\0"),
            Err(TextError::MissingEquals { offset: 4 })
        );
        assert_eq!(validate(b"=1\0"), Err(TextError::EmptyKey { offset: 0 }));
        assert_eq!(
            validate(b"A B=1\0"),
            Err(TextError::BadKeyChar { offset: 0 })
        );
        assert_eq!(
            validate(b"A=\xFF\0"),
            Err(TextError::BadValue { offset: 0 })
        );
        let mut long_key = vec![b'K'; 64];
        long_key.extend_from_slice(b"=1\0");
        assert_eq!(
            validate(&long_key),
            Err(TextError::KeyTooLong { offset: 0 })
        );
        let mut long_val = b"K=".to_vec();
        long_val.extend(core::iter::repeat_n(b'v', 256));
        long_val.push(0);
        assert_eq!(
            validate(&long_val),
            Err(TextError::ValueTooLong { offset: 0 })
        );
        assert_eq!(TextIter::with_max_value_len(&long_val, 8192).count(), 1);
        // The iterator stops after an error.
        let mut it = TextIter::new(b"A\0B=1\0");
        assert!(matches!(it.next(), Some(Err(_))));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn writer() {
        let mut buf = [0u8; 40];
        let mut w = TextWriter::new(&mut buf);
        w.push("InitiatorName", "iqn.a").unwrap();
        w.push("SessionType", "Normal").unwrap();
        assert_eq!(w.as_bytes(), b"InitiatorName=iqn.a\0SessionType=Normal\0");
        assert_eq!(w.push("X", "1"), Err(TextError::BufferFull));
        assert_eq!(
            w.push("bad key", "1"),
            Err(TextError::BadKeyChar { offset: 39 })
        );
        assert_eq!(w.len(), 39);
        assert_eq!(
            Error::from(TextError::BufferFull).to_string(),
            "text data: text buffer full"
        );
    }

    #[test]
    fn text_request() {
        let mut b =
            bhs_from_words([0x0480_0000, 16, 0, 0, 3, 0xFFFF_FFFF, 1, 1, 0, 0, 0, 0]).to_vec();
        b.extend_from_slice(SEND_TARGETS);
        let r = TextRequestRepr::parse(&b, Digests::NONE).unwrap();
        assert!(r.final_ && !r.cont && !r.immediate);
        assert_eq!(find(r.data, "SendTargets"), Ok(Some("All")));
        let mut out = vec![0u8; b.len()];
        assert_eq!(r.emit(&mut out, Digests::NONE), Ok(64));
        assert_eq!(out, b);
        b[1] = 0xC0;
        assert_eq!(
            TextRequestRepr::parse(&b, Digests::NONE),
            Err(Error::FlagConflict { offset: 1 })
        );
    }

    fn text_data() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(("[A-Za-z0-9.+@_-]{1,63}", "[ -~]{0,255}"), 0..5).prop_map(
            |pairs| {
                let mut out = Vec::new();
                for (k, v) in pairs {
                    out.extend_from_slice(k.as_bytes());
                    out.push(b'=');
                    out.extend_from_slice(v.as_bytes());
                    out.push(0);
                }
                out
            },
        )
    }

    proptest! {
        #[test]
        fn text_round_trip(d in text_data()) {
            let mut buf = vec![0u8; d.len()];
            let mut w = TextWriter::new(&mut buf);
            for p in TextIter::new(&d) {
                let (k, v) = p.unwrap();
                w.push(k, v).unwrap();
            }
            prop_assert_eq!(w.as_bytes(), &d[..]);
        }

        #[test]
        fn text_never_panics(d in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = validate(&d);
        }

        #[test]
        fn round_trip(imm in any::<bool>(), fc in 0u8..3, lun in lun(), itt in itt(),
                      ttt in ttt(), w in any::<[u32; 3]>(), d in data(), dg in digests()) {
            let (final_, cont) = [(false, false), (true, false), (false, true)][usize::from(fc)];
            let r = TextRequestRepr {
                immediate: imm, final_, cont, lun, itt, ttt, cmd_sn: w[0], exp_stat_sn: w[1],
                data: &d,
            };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(TextRequestRepr::parse(&buf, dg), Ok(r));
            let r = TextResponseRepr {
                final_, cont, lun, itt, ttt, stat_sn: w[0], exp_cmd_sn: w[1], max_cmd_sn: w[2],
                data: &d,
            };
            let mut buf = vec![0u8; r.buffer_len(dg)];
            prop_assert_eq!(r.emit(&mut buf, dg), Ok(buf.len()));
            prop_assert_eq!(TextResponseRepr::parse(&buf, dg), Ok(r));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128),
                              dg in digests()) {
            let _ = TextRequestRepr::parse(&bytes, dg);
            let _ = TextResponseRepr::parse(&bytes, dg);
        }
    }
}
