//! iSCSI PDU codec (RFC 7143 §11): typed views and `Repr`s for every PDU an initiator handles.
//!
//! Layout follows the smoltcp pattern: [`bhs::Packet`] is a zero-copy view of the 48-byte Basic
//! Header Segment, and each opcode module has a `Repr` with `parse`, `emit`, `emit_header` and
//! `buffer_len`. [`bhs::frame`] computes the full PDU length from a BHS so a byte-stream deframer
//! knows how much to wait for.
//!
//! All multi-byte fields are big-endian, except the CRC32C digests, which travel
//! least-significant byte first. The header digest covers BHS and AHS; the data digest covers the
//! data segment *and* its 0–3 pad bytes.
//!
//! # Panic contract
//!
//! Nothing in this module panics on wire input: every `parse` and [`bhs::frame`] returns an
//! [`Error`] for short, oversized or malformed bytes, and every `emit` returns an error when the
//! output buffer is too small or a field cannot be encoded. The only panicking functions are the
//! unchecked [`bhs::Packet`] accessors used on a buffer that was not checked with
//! [`bhs::Packet::new_checked`] (or that is shorter than [`bhs::BHS_LEN`]), and
//! [`bhs::Packet::word`] with an index outside the BHS; both are programming errors.

use core::fmt;

pub mod ahs;
pub mod async_msg;
pub mod bhs;
pub mod data_in;
pub mod data_out;
pub mod login;
pub mod logout;
pub mod nop;
pub mod r2t;
pub mod reject;
pub mod scsi_cmd;
pub mod scsi_rsp;
pub mod snack;
pub mod task_mgmt;
pub mod text;

use ulp_ddp_core::digest::{Crc32c, parts_digest};

use self::bhs::{BHS_LEN, Packet};

/// Result alias for the wire layer.
pub type Result<T> = core::result::Result<T, Error>;

/// A wire-level decoding or encoding error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The input ends before the PDU does: `need` bytes are required, `have` are present.
    Truncated {
        /// Bytes required.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The input holds more bytes than the PDU its header describes.
    TrailingBytes {
        /// Length of the PDU described by the header.
        pdu_len: usize,
        /// Bytes present.
        have: usize,
    },
    /// The output buffer is too small for the PDU (or header) being emitted.
    BufferTooSmall {
        /// Bytes required.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The opcode is not one this codec knows.
    UnknownOpcode(u8),
    /// An opcode that travels the other way: a target sent an initiator opcode (or an
    /// initiator a target opcode).
    WrongDirection(Opcode),
    /// The opcode is valid but not the one the caller's `Repr` decodes.
    UnexpectedOpcode {
        /// Opcode the `Repr` handles.
        expected: Opcode,
        /// Opcode found in the BHS.
        found: Opcode,
    },
    /// DataSegmentLength is not allowed for this PDU (non-zero where the RFC forbids data, too
    /// short for the content, or larger than 2^24 − 1 on emit).
    BadDataSegmentLength,
    /// An Additional Header Segment is malformed, unknown, duplicated or not allowed here.
    BadAhs,
    /// A reserved bit or byte that must be zero is not, at this BHS offset.
    Reserved {
        /// Byte offset in the BHS.
        offset: u8,
    },
    /// A field holds a value the RFC does not allow, at this BHS offset.
    InvalidValue {
        /// Byte offset in the BHS.
        offset: u8,
    },
    /// Two flags that exclude each other are both set (T and C, O and U, S without F, …), in
    /// the byte at this BHS offset.
    FlagConflict {
        /// Byte offset in the BHS.
        offset: u8,
    },
    /// The header digest does not match the BHS and AHS.
    HeaderDigestMismatch,
    /// The data digest does not match the data segment and its padding.
    DataDigestMismatch,
    /// The SCSI Response SenseLength exceeds the data segment (or does not fit on emit).
    BadSenseLength,
    /// Malformed text (key=value) data.
    Text(text::TextError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { need, have } => {
                write!(f, "truncated PDU: need {need} bytes, have {have}")
            }
            Self::TrailingBytes { pdu_len, have } => {
                write!(f, "{have} bytes given for a PDU of {pdu_len} bytes")
            }
            Self::BufferTooSmall { need, have } => {
                write!(f, "output buffer too small: need {need} bytes, have {have}")
            }
            Self::UnknownOpcode(op) => write!(f, "unknown opcode {op:#04x}"),
            Self::WrongDirection(op) => write!(
                f,
                "{} (opcode {:#04x}) travels only from {}",
                op.name(),
                u8::from(op),
                if op.from_initiator() {
                    "initiator to target"
                } else {
                    "target to initiator"
                }
            ),
            Self::UnexpectedOpcode { expected, found } => write!(
                f,
                "expected {} (opcode {:#04x}), found {} (opcode {:#04x})",
                expected.name(),
                expected.code(),
                found.name(),
                found.code()
            ),
            Self::BadDataSegmentLength => f.write_str("invalid DataSegmentLength"),
            Self::BadAhs => f.write_str("invalid additional header segment"),
            Self::Reserved { offset } => write!(f, "reserved field non-zero at offset {offset}"),
            Self::InvalidValue { offset } => write!(f, "invalid field value at offset {offset}"),
            Self::FlagConflict { offset } => write!(f, "conflicting flags at offset {offset}"),
            Self::HeaderDigestMismatch => f.write_str("header digest mismatch"),
            Self::DataDigestMismatch => f.write_str("data digest mismatch"),
            Self::BadSenseLength => f.write_str("invalid SenseLength"),
            Self::Text(e) => write!(f, "text data: {e}"),
        }
    }
}

impl core::error::Error for Error {}

impl Error {
    /// The BHS byte offset of the field the error is about, when it is about one.
    pub fn field_offset(&self) -> Option<u8> {
        match *self {
            Self::Reserved { offset }
            | Self::InvalidValue { offset }
            | Self::FlagConflict { offset } => Some(offset),
            Self::UnknownOpcode(_) | Self::WrongDirection(_) | Self::UnexpectedOpcode { .. } => {
                Some(0)
            }
            Self::BadAhs => Some(4),
            Self::BadDataSegmentLength => Some(5),
            _ => None,
        }
    }
}

impl From<text::TextError> for Error {
    fn from(e: text::TextError) -> Self {
        Self::Text(e)
    }
}

impl From<ulp_ddp_core::BufferTooSmall> for Error {
    fn from(e: ulp_ddp_core::BufferTooSmall) -> Self {
        Self::BufferTooSmall {
            need: e.need,
            have: e.have,
        }
    }
}

ulp_ddp_core::wire_codes! {
    /// iSCSI opcodes (RFC 7143 §11.2.1.2), the low six bits of BHS byte 0.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Opcode: u8 {
        /// NOP-Out (initiator).
        NopOut = 0x00 => "NOP-Out",
        /// SCSI Command (initiator).
        ScsiCommand = 0x01 => "SCSI Command",
        /// Task Management Function Request (initiator).
        TaskMgmtRequest = 0x02 => "Task Management Function Request",
        /// Login Request (initiator).
        LoginRequest = 0x03 => "Login Request",
        /// Text Request (initiator).
        TextRequest = 0x04 => "Text Request",
        /// SCSI Data-Out (initiator).
        DataOut = 0x05 => "SCSI Data-Out",
        /// Logout Request (initiator).
        LogoutRequest = 0x06 => "Logout Request",
        /// SNACK Request (initiator).
        SnackRequest = 0x10 => "SNACK Request",
        /// NOP-In (target).
        NopIn = 0x20 => "NOP-In",
        /// SCSI Response (target).
        ScsiResponse = 0x21 => "SCSI Response",
        /// Task Management Function Response (target).
        TaskMgmtResponse = 0x22 => "Task Management Function Response",
        /// Login Response (target).
        LoginResponse = 0x23 => "Login Response",
        /// Text Response (target).
        TextResponse = 0x24 => "Text Response",
        /// SCSI Data-In (target).
        DataIn = 0x25 => "SCSI Data-In",
        /// Logout Response (target).
        LogoutResponse = 0x26 => "Logout Response",
        /// Ready To Transfer (target).
        R2t = 0x31 => "R2T",
        /// Asynchronous Message (target).
        AsyncMessage = 0x32 => "Asynchronous Message",
        /// Reject (target).
        Reject = 0x3F => "Reject",
    }
    unknown(raw) -> Error => Error::UnknownOpcode(raw);
}

impl Opcode {
    /// Whether an initiator sends this opcode (else a target does).
    pub const fn from_initiator(self) -> bool {
        (self as u8) < 0x20
    }
}

/// Which CRC32C digests were negotiated (HeaderDigest / DataDigest keys): the core's
/// [`Digests`], shared with NVMe/TCP. Login PDUs never carry digests; their `Repr`s ignore
/// this value.
pub use ulp_ddp_core::Digests;

/// Logical Unit Number: eight opaque bytes, copied as-is into BHS bytes 8..16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lun(pub [u8; 8]);

impl Lun {
    /// The single-level LUN `n` (< 256) in the flat addressing the reference describes.
    pub const fn single_level(n: u8) -> Self {
        Self([0, n, 0, 0, 0, 0, 0, 0])
    }
}

/// Initiator Task Tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Itt(pub u32);

impl Itt {
    /// The reserved value 0xFFFFFFFF (no task).
    pub const RESERVED: Self = Self(0xFFFF_FFFF);
}

/// Target Transfer Tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ttt(pub u32);

impl Ttt {
    /// The reserved value 0xFFFFFFFF (no transfer tag / unsolicited data).
    pub const RESERVED: Self = Self(0xFFFF_FFFF);
}

/// Where the parts of an emitted header sit, returned by the `emit_header` helpers.
///
/// A writer sends `buf[..header_len]`, then the data segment from its own storage, then
/// `pad_len` zero bytes, then `data_digest` if present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmittedHeader {
    /// Bytes written: BHS + AHS + header digest.
    pub header_len: usize,
    /// DataSegmentLength written into the BHS.
    pub data_len: usize,
    /// Zero bytes to send after the data segment (0..=3).
    pub pad_len: usize,
    /// Data digest (wire order) to send after the pad, when data digests are on and data is
    /// non-empty.
    pub data_digest: Option<[u8; 4]>,
    /// Full PDU length: `header_len + data_len + pad_len + 4 * data_digest.is_some()`.
    pub total_len: usize,
}

/// Zero bytes for padding data segments.
pub const PAD: [u8; 3] = [0; 3];

/// Largest DataSegmentLength (24 bits).
pub const MAX_DATA_SEGMENT_LEN: usize = 0x00FF_FFFF;

/// Pad length that brings `len` to a multiple of four.
pub const fn pad_len(len: usize) -> usize {
    (4 - (len % 4)) % 4
}

/// What each opcode module implements; the generic parse/emit machinery drives it.
pub(crate) trait Body<'a>: Sized {
    /// Opcode of this PDU.
    const OPCODE: Opcode;
    /// Whether digests are never present (Login PDUs).
    const NO_DIGESTS: bool = false;

    /// Decodes the opcode-specific parts. `ahs` is the raw AHS area, `data` the data segment
    /// (without pad). The opcode, lengths and digests were already checked.
    fn parse_body(pkt: &Packet<&'a [u8]>, ahs: &'a [u8], data: &'a [u8]) -> Result<Self>;

    /// Checks that the `Repr` can be encoded; called before anything is written.
    fn check(&self) -> Result<()> {
        Ok(())
    }

    /// Writes everything except byte 0 bits 0x3F (opcode), TotalAHSLength and
    /// DataSegmentLength into a zeroed BHS. Byte 0 bit 0x40 (I) is the body's to set.
    fn emit_bhs(&self, pkt: &mut Packet<&mut [u8]>);

    /// Length of the AHS area (multiple of 4, at most 1020).
    fn ahs_len(&self) -> usize {
        0
    }

    /// Writes the AHS area into `buf` (exactly `ahs_len()` bytes, zeroed).
    fn emit_ahs(&self, _buf: &mut [u8]) {}

    /// Calls `f` with the data segment as a list of pieces.
    fn with_data<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R;
}

fn effective<'a, B: Body<'a>>(digests: Digests) -> Digests {
    if B::NO_DIGESTS {
        Digests::NONE
    } else {
        digests
    }
}

/// Parses a complete PDU of type `B` from exactly `buf`.
pub(crate) fn parse_pdu<'a, B: Body<'a>>(buf: &'a [u8], digests: Digests) -> Result<B> {
    let digests = effective::<B>(digests);
    let frame = bhs::frame(buf, digests)?;
    if buf.len() < frame.total_len {
        return Err(Error::Truncated {
            need: frame.total_len,
            have: buf.len(),
        });
    }
    if buf.len() > frame.total_len {
        return Err(Error::TrailingBytes {
            pdu_len: frame.total_len,
            have: buf.len(),
        });
    }
    let pkt = Packet::new_checked(buf)?;
    let found = pkt.opcode()?;
    if found != B::OPCODE {
        return Err(Error::UnexpectedOpcode {
            expected: B::OPCODE,
            found,
        });
    }
    if pkt.reserved_bit() {
        return Err(Error::Reserved { offset: 0 });
    }
    let header_end = BHS_LEN + frame.ahs_len;
    let ahs = buf.get(BHS_LEN..header_end).ok_or(Error::BadAhs)?;
    if digests.header {
        let wire = read_digest(buf, header_end)?;
        let mut crc = Crc32c::new();
        crc.update(buf.get(..header_end).ok_or(Error::BadAhs)?);
        if !crc.matches_wire(wire) {
            return Err(Error::HeaderDigestMismatch);
        }
    }
    let data_start = frame.header_len;
    let data_end = data_start + frame.data_len;
    let data = buf
        .get(data_start..data_end)
        .ok_or(Error::BadDataSegmentLength)?;
    if frame.data_digest {
        let padded_end = data_end + frame.pad_len;
        let wire = read_digest(buf, padded_end)?;
        let mut crc = Crc32c::new();
        crc.update(
            buf.get(data_start..padded_end)
                .ok_or(Error::BadDataSegmentLength)?,
        );
        if !crc.matches_wire(wire) {
            return Err(Error::DataDigestMismatch);
        }
    }
    B::parse_body(&pkt, ahs, data)
}

fn read_digest(buf: &[u8], at: usize) -> Result<[u8; 4]> {
    let need = at.checked_add(4).ok_or(Error::BadDataSegmentLength)?;
    buf.get(at..need)
        .and_then(|s| s.try_into().ok())
        .ok_or(Error::Truncated {
            need,
            have: buf.len(),
        })
}

/// Writes BHS, AHS and header digest of `body` into `buf`, computing the data digest.
pub(crate) fn emit_header<'a, B: Body<'a>>(
    body: &B,
    buf: &mut [u8],
    digests: Digests,
) -> Result<EmittedHeader> {
    body.with_data(|parts| emit_header_parts(body, buf, digests, parts))
}

/// [`emit_header`] with the data segment given as `parts` (pieces of a scatter-gather write
/// buffer) instead of the body's own data: DataSegmentLength and the data digest cover the
/// parts, in order. The body's data is not used.
pub(crate) fn emit_header_parts<'a, B: Body<'a>>(
    body: &B,
    buf: &mut [u8],
    digests: Digests,
    parts: &[&[u8]],
) -> Result<EmittedHeader> {
    let digests = effective::<B>(digests);
    body.check()?;
    let ahs_len = body.ahs_len();
    if ahs_len % 4 != 0 || ahs_len > 255 * 4 {
        return Err(Error::BadAhs);
    }
    let data_len = parts.iter().map(|p| p.len()).sum::<usize>();
    if data_len > MAX_DATA_SEGMENT_LEN {
        return Err(Error::BadDataSegmentLength);
    }
    let pad = pad_len(data_len);
    let header_len = BHS_LEN + ahs_len + if digests.header { 4 } else { 0 };
    let has_dd = digests.data && data_len > 0;
    let total_len = header_len + data_len + pad + if has_dd { 4 } else { 0 };
    let out = ulp_ddp_core::transmit::header_space(buf, header_len)?;
    let (bhs_buf, rest) = out.split_at_mut(BHS_LEN);
    {
        let mut pkt = Packet::new_unchecked(&mut *bhs_buf);
        body.emit_bhs(&mut pkt);
        pkt.set_opcode(B::OPCODE);
        // Bounded above: ahs_len <= 1020, so the word count fits in a byte.
        pkt.set_total_ahs_len_words((ahs_len / 4) as u8);
        // Bounded above: data_len <= MAX_DATA_SEGMENT_LEN.
        pkt.set_data_segment_len(data_len as u32);
    }
    let (ahs_buf, digest_buf) = rest.split_at_mut(ahs_len);
    body.emit_ahs(ahs_buf);
    if digests.header {
        digest_buf.copy_from_slice(&parts_digest([&*bhs_buf, &*ahs_buf]));
    }
    // The data digest covers the pad too.
    let data_digest = has_dd.then(|| parts_digest(parts.iter().copied().chain([&PAD[..pad]])));
    Ok(EmittedHeader {
        header_len,
        data_len,
        pad_len: pad,
        data_digest,
        total_len,
    })
}

/// Writes the whole PDU of `body` into `buf`; returns the bytes written.
pub(crate) fn emit_pdu<'a, B: Body<'a>>(
    body: &B,
    buf: &mut [u8],
    digests: Digests,
) -> Result<usize> {
    ulp_ddp_core::transmit::check_space(buf, buffer_len(body, digests))?;
    let h = emit_header(body, buf, digests)?;
    let mut at = h.header_len;
    body.with_data(|parts| {
        for p in parts {
            // In bounds: buf.len() >= total_len, which counts every data piece.
            buf[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
    });
    // In bounds: total_len counts the pad and the digest.
    buf[at..at + h.pad_len].fill(0);
    at += h.pad_len;
    if let Some(d) = h.data_digest {
        buf[at..at + 4].copy_from_slice(&d);
        at += 4;
    }
    Ok(at)
}

/// Full encoded length of `body` (saturating; an unencodable body fails in `emit`).
pub(crate) fn buffer_len<'a, B: Body<'a>>(body: &B, digests: Digests) -> usize {
    let digests = effective::<B>(digests);
    let data_len = body.with_data(|parts| parts.iter().map(|p| p.len()).sum::<usize>());
    let mut n = BHS_LEN.saturating_add(body.ahs_len());
    if digests.header {
        n = n.saturating_add(4);
    }
    n = n.saturating_add(data_len).saturating_add(pad_len(data_len));
    if digests.data && data_len > 0 {
        n = n.saturating_add(4);
    }
    n
}

/// Generates the public `parse`/`emit`/`emit_header`/`buffer_len` methods of a `Repr`.
///
/// `impl_pdu!(Name)` for a `Repr<'a>` that borrows its data segment, `impl_pdu!(Name, 'static)`
/// for a `Repr` with no lifetime (PDUs without data).
macro_rules! impl_pdu {
    ($ty:ident) => {
        impl<'a> $ty<'a> {
            $crate::wire::pdu_methods!('a);
        }
    };
    ($ty:ident, 'static) => {
        impl $ty {
            $crate::wire::pdu_methods!('_);
        }
    };
}

macro_rules! pdu_methods {
    ($lt:lifetime) => {
        /// Parses exactly one PDU of this type from `buf`, checking the opcode, lengths,
        /// reserved fields and (per `digests`) the header and data digests.
        ///
        /// # Errors
        ///
        /// Any [`Error`](crate::wire::Error) describing why the bytes are not such a PDU.
        pub fn parse(buf: &$lt [u8], digests: $crate::wire::Digests) -> $crate::wire::Result<Self> {
            $crate::wire::parse_pdu(buf, digests)
        }

        /// Writes the whole PDU (BHS, AHS, header digest, data, zero pad, data digest)
        /// into `buf` and returns the number of bytes written.
        ///
        /// # Errors
        ///
        /// [`Error::BufferTooSmall`](crate::wire::Error::BufferTooSmall) or an error for a
        /// field that cannot be encoded.
        pub fn emit(&self, buf: &mut [u8], digests: $crate::wire::Digests) -> $crate::wire::Result<usize> {
            $crate::wire::emit_pdu(self, buf, digests)
        }

        /// Writes only BHS, AHS and header digest into `buf` and returns where the data,
        /// pad and data digest go, so a large data segment can be sent without copying.
        ///
        /// # Errors
        ///
        /// As for `emit`, but `buf` only needs to hold the header.
        pub fn emit_header(
            &self,
            buf: &mut [u8],
            digests: $crate::wire::Digests,
        ) -> $crate::wire::Result<$crate::wire::EmittedHeader> {
            $crate::wire::emit_header(self, buf, digests)
        }

        /// Length of the whole encoded PDU.
        pub fn buffer_len(&self, digests: $crate::wire::Digests) -> usize {
            $crate::wire::buffer_len(self, digests)
        }
    };
}
pub(crate) use impl_pdu;
pub(crate) use pdu_methods;

/// Any PDU, decoded by opcode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pdu<'a> {
    /// NOP-Out.
    NopOut(nop::NopOutRepr<'a>),
    /// SCSI Command.
    ScsiCommand(scsi_cmd::ScsiCmdRepr<'a>),
    /// Task Management Function Request.
    TaskMgmtRequest(task_mgmt::TmfRequestRepr),
    /// Login Request.
    LoginRequest(login::LoginRequestRepr<'a>),
    /// Text Request.
    TextRequest(text::TextRequestRepr<'a>),
    /// SCSI Data-Out.
    DataOut(data_out::DataOutRepr<'a>),
    /// Logout Request.
    LogoutRequest(logout::LogoutRequestRepr),
    /// SNACK Request.
    SnackRequest(snack::SnackRepr),
    /// NOP-In.
    NopIn(nop::NopInRepr<'a>),
    /// SCSI Response.
    ScsiResponse(scsi_rsp::ScsiRspRepr<'a>),
    /// Task Management Function Response.
    TaskMgmtResponse(task_mgmt::TmfResponseRepr),
    /// Login Response.
    LoginResponse(login::LoginResponseRepr<'a>),
    /// Text Response.
    TextResponse(text::TextResponseRepr<'a>),
    /// SCSI Data-In.
    DataIn(data_in::DataInRepr<'a>),
    /// Logout Response.
    LogoutResponse(logout::LogoutResponseRepr),
    /// R2T.
    R2t(r2t::R2tRepr),
    /// Asynchronous Message.
    AsyncMessage(async_msg::AsyncMsgRepr<'a>),
    /// Reject.
    Reject(reject::RejectRepr<'a>),
}

impl<'a> Pdu<'a> {
    /// Parses exactly one PDU of any supported opcode from `buf`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownOpcode`] for an opcode not listed in [`Opcode`], else as the `Repr`.
    pub fn parse(buf: &'a [u8], digests: Digests) -> Result<Self> {
        let pkt = Packet::new_checked(buf)?;
        Ok(match pkt.opcode()? {
            Opcode::NopOut => Self::NopOut(parse_pdu(buf, digests)?),
            Opcode::ScsiCommand => Self::ScsiCommand(parse_pdu(buf, digests)?),
            Opcode::TaskMgmtRequest => Self::TaskMgmtRequest(parse_pdu(buf, digests)?),
            Opcode::LoginRequest => Self::LoginRequest(parse_pdu(buf, digests)?),
            Opcode::TextRequest => Self::TextRequest(parse_pdu(buf, digests)?),
            Opcode::DataOut => Self::DataOut(parse_pdu(buf, digests)?),
            Opcode::LogoutRequest => Self::LogoutRequest(parse_pdu(buf, digests)?),
            Opcode::SnackRequest => Self::SnackRequest(parse_pdu(buf, digests)?),
            Opcode::NopIn => Self::NopIn(parse_pdu(buf, digests)?),
            Opcode::ScsiResponse => Self::ScsiResponse(parse_pdu(buf, digests)?),
            Opcode::TaskMgmtResponse => Self::TaskMgmtResponse(parse_pdu(buf, digests)?),
            Opcode::LoginResponse => Self::LoginResponse(parse_pdu(buf, digests)?),
            Opcode::TextResponse => Self::TextResponse(parse_pdu(buf, digests)?),
            Opcode::DataIn => Self::DataIn(parse_pdu(buf, digests)?),
            Opcode::LogoutResponse => Self::LogoutResponse(parse_pdu(buf, digests)?),
            Opcode::R2t => Self::R2t(parse_pdu(buf, digests)?),
            Opcode::AsyncMessage => Self::AsyncMessage(parse_pdu(buf, digests)?),
            Opcode::Reject => Self::Reject(parse_pdu(buf, digests)?),
        })
    }

    /// Decodes a PDU from its parts as a receive engine delivers them: `bhs` (48 bytes, framed:
    /// lengths and header digest already checked), `ahs` (the AHS area) and `data` (the data
    /// segment without pad, its digest already checked). Checks the opcode, the reserved bit
    /// and every opcode-specific field, once; nothing is copied.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownOpcode`], [`Error::Reserved`], else as the `Repr`.
    pub fn from_parts(bhs: &'a [u8], ahs: &'a [u8], data: &'a [u8]) -> Result<Self> {
        let pkt = Packet::new_checked(bhs)?;
        if pkt.reserved_bit() {
            return Err(Error::Reserved { offset: 0 });
        }
        let (p, a, d) = (&pkt, ahs, data);
        Ok(match pkt.opcode()? {
            Opcode::NopOut => Self::NopOut(Body::parse_body(p, a, d)?),
            Opcode::ScsiCommand => Self::ScsiCommand(Body::parse_body(p, a, d)?),
            Opcode::TaskMgmtRequest => Self::TaskMgmtRequest(Body::parse_body(p, a, d)?),
            Opcode::LoginRequest => Self::LoginRequest(Body::parse_body(p, a, d)?),
            Opcode::TextRequest => Self::TextRequest(Body::parse_body(p, a, d)?),
            Opcode::DataOut => Self::DataOut(Body::parse_body(p, a, d)?),
            Opcode::LogoutRequest => Self::LogoutRequest(Body::parse_body(p, a, d)?),
            Opcode::SnackRequest => Self::SnackRequest(Body::parse_body(p, a, d)?),
            Opcode::NopIn => Self::NopIn(Body::parse_body(p, a, d)?),
            Opcode::ScsiResponse => Self::ScsiResponse(Body::parse_body(p, a, d)?),
            Opcode::TaskMgmtResponse => Self::TaskMgmtResponse(Body::parse_body(p, a, d)?),
            Opcode::LoginResponse => Self::LoginResponse(Body::parse_body(p, a, d)?),
            Opcode::TextResponse => Self::TextResponse(Body::parse_body(p, a, d)?),
            Opcode::DataIn => Self::DataIn(Body::parse_body(p, a, d)?),
            Opcode::LogoutResponse => Self::LogoutResponse(Body::parse_body(p, a, d)?),
            Opcode::R2t => Self::R2t(Body::parse_body(p, a, d)?),
            Opcode::AsyncMessage => Self::AsyncMessage(Body::parse_body(p, a, d)?),
            Opcode::Reject => Self::Reject(Body::parse_body(p, a, d)?),
        })
    }

    /// Writes the PDU into `buf`; returns the bytes written.
    ///
    /// # Errors
    ///
    /// As the `Repr`'s `emit`.
    pub fn emit(&self, buf: &mut [u8], digests: Digests) -> Result<usize> {
        match self {
            Self::NopOut(r) => r.emit(buf, digests),
            Self::ScsiCommand(r) => r.emit(buf, digests),
            Self::TaskMgmtRequest(r) => r.emit(buf, digests),
            Self::LoginRequest(r) => r.emit(buf, digests),
            Self::TextRequest(r) => r.emit(buf, digests),
            Self::DataOut(r) => r.emit(buf, digests),
            Self::LogoutRequest(r) => r.emit(buf, digests),
            Self::SnackRequest(r) => r.emit(buf, digests),
            Self::NopIn(r) => r.emit(buf, digests),
            Self::ScsiResponse(r) => r.emit(buf, digests),
            Self::TaskMgmtResponse(r) => r.emit(buf, digests),
            Self::LoginResponse(r) => r.emit(buf, digests),
            Self::TextResponse(r) => r.emit(buf, digests),
            Self::DataIn(r) => r.emit(buf, digests),
            Self::LogoutResponse(r) => r.emit(buf, digests),
            Self::R2t(r) => r.emit(buf, digests),
            Self::AsyncMessage(r) => r.emit(buf, digests),
            Self::Reject(r) => r.emit(buf, digests),
        }
    }
}

/// Rejects a non-empty data segment for PDUs that carry none.
pub(crate) fn no_data(data: &[u8]) -> Result<()> {
    if data.is_empty() {
        Ok(())
    } else {
        Err(Error::BadDataSegmentLength)
    }
}

/// Rejects any AHS for PDUs that define none.
pub(crate) fn no_ahs(ahs: &[u8]) -> Result<()> {
    if ahs.is_empty() {
        Ok(())
    } else {
        Err(Error::BadAhs)
    }
}

/// Checks that the bits of `mask` in BHS byte `offset` are zero.
pub(crate) fn reserved_bits(pkt: &Packet<&[u8]>, offset: u8, mask: u8) -> Result<()> {
    if pkt.byte(usize::from(offset)) & mask == 0 {
        Ok(())
    } else {
        Err(Error::Reserved { offset })
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Shared fixtures and proptest strategies.
    use proptest::prelude::*;

    use super::{Itt, Lun, Ttt};

    pub(crate) fn lun() -> impl Strategy<Value = Lun> {
        any::<[u8; 8]>().prop_map(Lun)
    }
    pub(crate) fn itt() -> impl Strategy<Value = Itt> {
        any::<u32>().prop_map(Itt)
    }
    pub(crate) fn ttt() -> impl Strategy<Value = Ttt> {
        any::<u32>().prop_map(Ttt)
    }
    pub(crate) fn data() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..70)
    }
    pub(crate) fn digests() -> impl Strategy<Value = super::Digests> {
        (any::<bool>(), any::<bool>()).prop_map(|(header, data)| super::Digests { header, data })
    }

    /// Builds a 48-byte BHS from 12 big-endian words.
    pub(crate) fn bhs_from_words(words: [u32; 12]) -> [u8; 48] {
        let mut b = [0u8; 48];
        for (i, w) in words.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        b
    }
}

#[cfg(test)]
mod tests;
