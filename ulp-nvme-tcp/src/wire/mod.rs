//! NVMe/TCP PDU codec: typed views over PDU bytes and validated representations.
//!
//! Every PDU on an NVMe/TCP byte stream is `CH | PSH | [HDGST] | [PAD] | [DATA] | [DDGST]`
//! (NVMe/TCP 1.0 §3.6). This module has one submodule per PDU, each in the smoltcp shape:
//!
//! * a `Packet<T: AsRef<[u8]>>` view with getters (and setters when `T: AsMut<[u8]>`) over the
//!   fixed header, built with `new_unchecked`, `new_checked` or `check_len`;
//! * a `Repr`, a small validated value with `parse(bytes, digests)` and `emit(..)`.
//!
//! [`common`] holds the 8-byte common header, the [`Layout`] of a whole PDU (header, header
//! digest, pad, data, data digest) with every length identity checked, and [`pdu_len`] for framing
//! a stream: read 8 bytes, then the rest of the PDU.
//!
//! # Panic contract
//!
//! * `Repr::parse` and [`Layout::parse`] never panic, whatever the input bytes: every failure is an
//!   [`Error`]. Lengths are computed with checked arithmetic.
//! * A `Packet` accessor never panics once `check_len` (or `new_checked`) has succeeded on the same
//!   buffer. Accessors on a `Packet` built with `new_unchecked` over a too-short buffer may panic;
//!   untrusted input must go through `new_checked` or `Repr::parse`.
//! * `emit` functions never panic: a too-small output buffer or an impossible combination of
//!   fields is reported as an [`Error`].
//! * Do not use `new_checked` on emit buffers (a reused buffer holds stale length fields); emit
//!   through a `Repr`, or use `new_unchecked` on a buffer of at least `HEADER_LEN` bytes.
//!
//! # Digests
//!
//! Header and data digests are CRC32C, stored least-significant byte first. `parse` verifies the
//! header digest (a mismatch is fatal for the connection). The data digest is *not* verified by
//! `parse`, because data may be placed elsewhere (DDP) or arrive later and a data-digest mismatch
//! is not connection-fatal; use [`Layout::verify_data_digest`] or [`data_digest`].
//!
//! # Example
//!
//! ```
//! use ulp_nvme_tcp::wire::{C2hDataRepr, Digests, Pda};
//!
//! let repr = C2hDataRepr { cccid: 7, datao: 0, datal: 4, last_pdu: true, success: false };
//! let digests = Digests { header: true, data: true };
//! let mut pdu = Vec::new();
//! repr.emit(&mut pdu, digests, Pda::ZERO, b"abcd").unwrap();
//! let (parsed, layout) = C2hDataRepr::parse(&pdu, digests).unwrap();
//! assert_eq!(parsed, repr);
//! assert_eq!(layout.data(&pdu).unwrap(), b"abcd");
//! layout.verify_data_digest(&pdu).unwrap();
//! ```

use core::fmt;

pub mod c2h_data;
pub mod capsule_cmd;
pub mod capsule_resp;
pub mod common;
pub mod h2c_data;
pub mod ic_req;
pub mod ic_resp;
pub mod r2t;
pub mod term_req;

pub use c2h_data::{Packet as C2hDataPacket, Repr as C2hDataRepr};
pub use capsule_cmd::{Packet as CapsuleCmdPacket, Repr as CapsuleCmdRepr, SglDescriptor, Sqe};
pub use capsule_resp::{Cqe, Packet as CapsuleRespPacket, Repr as CapsuleRespRepr};
pub use common::{
    Emitted, Layout, MAX_HEADER_SPACE, Packet as CommonPacket, data_digest, header_len, pdu_len,
};
pub use h2c_data::{Packet as H2cDataPacket, Repr as H2cDataRepr};
pub use ic_req::{Packet as IcReqPacket, Repr as IcReqRepr};
pub use ic_resp::{Packet as IcRespPacket, Repr as IcRespRepr};
pub use r2t::{Packet as R2tPacket, Repr as R2tRepr};
pub use term_req::{
    FatalErrorStatus, Packet as TermReqPacket, Repr as TermReqRepr, TermReqDirection,
};

/// FLAGS bit 0: a header digest follows the header.
pub const HDGSTF: u8 = 0x01;
/// FLAGS bit 1: a data digest follows the data.
pub const DDGSTF: u8 = 0x02;
/// FLAGS bit 2 (H2CData, C2HData): last data PDU of the R2T (H2C) or of the command (C2H).
pub const LAST_PDU: u8 = 0x04;
/// FLAGS bit 3 (C2HData only, with [`LAST_PDU`]): the command succeeded; no CapsuleResp follows.
pub const SUCCESS: u8 = 0x08;
/// FLAGS bits 4..=7 are reserved.
pub const RESERVED_FLAGS: u8 = 0xF0;

/// Largest error-data length of an H2CTermReq or C2HTermReq.
pub const MAX_TERM_REQ_DATA: usize = 128;

/// Which of the two digests an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestKind {
    /// The header digest (HDGST, flag [`HDGSTF`]).
    Header,
    /// The data digest (DDGST, flag [`DDGSTF`]).
    Data,
}

/// A wire-level NVMe/TCP error: malformed, truncated or inconsistent PDU bytes, or an emit request
/// that cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The buffer holds `have` bytes but `need` are required.
    Truncated {
        /// Bytes required.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The PDU-Type byte is not a known NVMe/TCP PDU type.
    UnknownPduType(u8),
    /// A PDU type that travels the other way: a controller sent a host-to-controller PDU (or a
    /// host a controller-to-host one).
    WrongDirection(PduType),
    /// A known PDU type, but not the one this parser handles.
    UnexpectedPduType {
        /// The type this parser handles.
        expected: u8,
        /// The type on the wire.
        found: u8,
    },
    /// HLEN is not the fixed header length of the PDU type.
    BadHlen {
        /// PDU type.
        pdu_type: u8,
        /// HLEN on the wire.
        hlen: u8,
        /// HLEN required for the type.
        expected: u8,
    },
    /// PDO is inconsistent with HLEN, the header digest or PLEN.
    BadPdo {
        /// PDU type.
        pdu_type: u8,
        /// PDO on the wire.
        pdo: u8,
        /// HLEN plus the header digest length: the smallest PDO for a PDU with data.
        header_len: usize,
    },
    /// PDO is not a multiple of the data alignment `(PDA + 1) * 4`.
    MisalignedPdo {
        /// PDO on the wire.
        pdo: u8,
        /// The required alignment in bytes.
        alignment: usize,
    },
    /// PLEN is outside the range the header allows.
    BadPlen {
        /// PDU type.
        pdu_type: u8,
        /// PLEN on the wire.
        plen: u32,
        /// Smallest allowed PLEN.
        min: usize,
        /// Largest allowed PLEN.
        max: usize,
    },
    /// FLAGS has a reserved bit, or a bit not valid for this PDU type, set.
    InvalidFlags {
        /// PDU type.
        pdu_type: u8,
        /// FLAGS on the wire.
        flags: u8,
    },
    /// A digest flag disagrees with the negotiated digests (NVMe/TCP requires the flag on every
    /// PDU that may carry the digest once negotiated, and forbids it otherwise).
    DigestFlag {
        /// PDU type.
        pdu_type: u8,
        /// Which digest.
        which: DigestKind,
        /// Whether that digest was negotiated.
        negotiated: bool,
    },
    /// The received header digest does not match the header.
    HeaderDigestMismatch {
        /// CRC32C computed over the received header.
        expected: u32,
        /// Digest received.
        received: u32,
    },
    /// The received data digest does not match the data.
    DataDigestMismatch {
        /// CRC32C computed over the received data.
        expected: u32,
        /// Digest received.
        received: u32,
    },
    /// C2HData with SUCCESS set but LAST_PDU clear.
    SuccessWithoutLastPdu,
    /// DATAL disagrees with the data length that PLEN and PDO give (parse), or with the payload
    /// passed to emit.
    DatalMismatch {
        /// DATAL field.
        datal: u32,
        /// Data length from the framing or the payload.
        data_len: usize,
    },
    /// DATAO + DATAL (or R2TO + R2TL) overflows 32 bits.
    DataRangeOverflow {
        /// Offset field.
        offset: u32,
        /// Length field.
        len: u32,
    },
    /// ICReq/ICResp PFV other than 0.
    UnsupportedPfv(u16),
    /// HPDA/CPDA above 31.
    BadPda(u8),
    /// ICResp MAXH2CDATA not a multiple of 4 or below 4096.
    BadMaxH2cData(u32),
    /// TermReq FES value not defined by NVMe/TCP.
    UnknownFes(u16),
    /// Emit: a payload length the PDU type cannot carry (data on a PDU without data, empty data
    /// on a data PDU, more than 128 bytes of TermReq error data, or PLEN above `u32::MAX`).
    BadDataLen {
        /// PDU type.
        pdu_type: u8,
        /// Payload length requested.
        len: usize,
    },
    /// Emit: the output buffer is too small.
    BufferTooSmall {
        /// Bytes required.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { need, have } => {
                write!(f, "truncated PDU: need {need} bytes, have {have}")
            }
            Self::UnknownPduType(t) => write!(f, "unknown PDU type {t:#04x}"),
            Self::WrongDirection(t) => write!(
                f,
                "{} (PDU type {:#04x}) travels only from {}",
                t.name(),
                u8::from(t),
                if t.from_host() {
                    "host to controller"
                } else {
                    "controller to host"
                }
            ),
            Self::UnexpectedPduType { expected, found } => {
                write!(f, "expected PDU type {expected:#04x}, found {found:#04x}")
            }
            Self::BadHlen {
                pdu_type,
                hlen,
                expected,
            } => write!(
                f,
                "{}: HLEN {hlen}, expected {expected}",
                type_name(pdu_type)
            ),
            Self::BadPdo {
                pdu_type,
                pdo,
                header_len,
            } => write!(
                f,
                "{}: bad PDO {pdo} (header plus digest is {header_len})",
                type_name(pdu_type)
            ),
            Self::MisalignedPdo { pdo, alignment } => {
                write!(
                    f,
                    "PDO {pdo} is not a multiple of the {alignment}-byte data alignment (PDA) \
                     the receiver asked for"
                )
            }
            Self::BadPlen {
                pdu_type,
                plen,
                min,
                max,
            } => write!(
                f,
                "{}: PLEN {plen} outside {min}..={max}",
                type_name(pdu_type)
            ),
            Self::InvalidFlags { pdu_type, flags } => {
                write!(f, "{}: invalid FLAGS {flags:#04x}", type_name(pdu_type))
            }
            Self::DigestFlag {
                pdu_type,
                which,
                negotiated,
            } => write!(
                f,
                "{}: {which} digest flag {} but digest {}negotiated",
                type_name(pdu_type),
                if negotiated { "clear" } else { "set" },
                if negotiated { "" } else { "not " },
            ),
            Self::HeaderDigestMismatch { expected, received } => write!(
                f,
                "header digest mismatch: computed {expected:#010x}, received {received:#010x}"
            ),
            Self::DataDigestMismatch { expected, received } => write!(
                f,
                "data digest mismatch: computed {expected:#010x}, received {received:#010x}"
            ),
            Self::SuccessWithoutLastPdu => f.write_str("C2HData SUCCESS set without LAST_PDU"),
            Self::DatalMismatch { datal, data_len } => {
                write!(f, "DATAL {datal} but the PDU carries {data_len} data bytes")
            }
            Self::DataRangeOverflow { offset, len } => {
                write!(f, "offset {offset} + length {len} overflows 32 bits")
            }
            Self::UnsupportedPfv(pfv) => write!(f, "unsupported PDU format version {pfv}"),
            Self::BadPda(pda) => write!(f, "PDA {pda} above 31"),
            Self::BadMaxH2cData(v) => {
                write!(f, "MAXH2CDATA {v} is not a multiple of 4 of at least 4096")
            }
            Self::UnknownFes(fes) => write!(f, "unknown fatal error status {fes:#06x}"),
            Self::BadDataLen { pdu_type, len } => {
                write!(f, "{} cannot carry {len} data bytes", type_name(pdu_type))
            }
            Self::BufferTooSmall { need, have } => {
                write!(f, "output buffer too small: need {need} bytes, have {have}")
            }
        }
    }
}

impl core::error::Error for Error {}

impl From<ulp_ddp_core::BufferTooSmall> for Error {
    fn from(e: ulp_ddp_core::BufferTooSmall) -> Self {
        Self::BufferTooSmall {
            need: e.need,
            have: e.have,
        }
    }
}

/// A PDU type in words: its name and code ("C2HData (PDU type 0x07)"), or the code alone.
fn type_name(pdu_type: u8) -> String {
    match PduType::try_from(pdu_type) {
        Ok(t) => format!("{t} (PDU type {pdu_type:#04x})"),
        Err(_) => format!("PDU type {pdu_type:#04x}"),
    }
}

impl fmt::Display for DigestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Header => "header",
            Self::Data => "data",
        })
    }
}

ulp_ddp_core::wire_codes! {
    /// NVMe/TCP PDU types, in specification order.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum PduType: u8 {
        /// Initialize Connection Request (host to controller).
        IcReq = 0x00 => "ICReq",
        /// Initialize Connection Response (controller to host).
        IcResp = 0x01 => "ICResp",
        /// Host-to-controller Terminate Connection Request.
        H2cTermReq = 0x02 => "H2CTermReq",
        /// Controller-to-host Terminate Connection Request.
        C2hTermReq = 0x03 => "C2HTermReq",
        /// Command capsule (SQE plus optional in-capsule data).
        CapsuleCmd = 0x04 => "CapsuleCmd",
        /// Response capsule (CQE).
        CapsuleResp = 0x05 => "CapsuleResp",
        /// Host-to-controller data (write data solicited by an R2T).
        H2cData = 0x06 => "H2CData",
        /// Controller-to-host data (read data).
        C2hData = 0x07 => "C2HData",
        /// Ready to Transfer.
        R2t = 0x09 => "R2T",
    }
    unknown(raw) -> Error => Error::UnknownPduType(raw);
}

/// How a PDU type carries data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataKind {
    /// Never carries data (PDO 0, PLEN = HLEN + HDGST).
    None,
    /// TermReq error data right after the header, PDO 0, no digests.
    TermReq,
    /// Optional data at PDO (CapsuleCmd).
    Optional,
    /// Mandatory data at PDO (H2CData, C2HData).
    Required,
}

impl PduType {
    /// Whether a host sends this type (else a controller does).
    pub const fn from_host(self) -> bool {
        matches!(
            self,
            Self::IcReq | Self::H2cTermReq | Self::CapsuleCmd | Self::H2cData
        )
    }

    /// The fixed HLEN (common header plus PDU-specific header) of this type.
    pub const fn hlen(self) -> u8 {
        match self {
            Self::IcReq | Self::IcResp => 128,
            Self::CapsuleCmd => 72,
            Self::H2cTermReq
            | Self::C2hTermReq
            | Self::CapsuleResp
            | Self::H2cData
            | Self::C2hData
            | Self::R2t => 24,
        }
    }

    /// Whether this type may carry a header digest.
    pub const fn allows_hdgst(self) -> bool {
        matches!(
            self,
            Self::CapsuleCmd | Self::CapsuleResp | Self::H2cData | Self::C2hData | Self::R2t
        )
    }

    /// Whether this type may carry a data digest (when it carries data).
    pub const fn allows_ddgst(self) -> bool {
        matches!(self, Self::CapsuleCmd | Self::H2cData | Self::C2hData)
    }

    /// The FLAGS bits that may be set on this type.
    pub const fn allowed_flags(self) -> u8 {
        match self {
            Self::IcReq | Self::IcResp | Self::H2cTermReq | Self::C2hTermReq => 0,
            Self::CapsuleCmd => HDGSTF | DDGSTF,
            Self::CapsuleResp | Self::R2t => HDGSTF,
            Self::H2cData => HDGSTF | DDGSTF | LAST_PDU,
            Self::C2hData => HDGSTF | DDGSTF | LAST_PDU | SUCCESS,
        }
    }

    pub(crate) const fn data_kind(self) -> DataKind {
        match self {
            Self::IcReq | Self::IcResp | Self::CapsuleResp | Self::R2t => DataKind::None,
            Self::H2cTermReq | Self::C2hTermReq => DataKind::TermReq,
            Self::CapsuleCmd => DataKind::Optional,
            Self::H2cData | Self::C2hData => DataKind::Required,
        }
    }
}

/// The digests negotiated by ICReq/ICResp for every PDU after ICResp (the core's [`Digests`],
/// shared with iSCSI).
pub use ulp_ddp_core::Digests;

/// Decodes the ICReq/ICResp DGST byte (bit 0 header, bit 1 data; other bits ignored).
pub const fn digests_from_dgst(dgst: u8) -> Digests {
    Digests {
        header: dgst & 0x01 != 0,
        data: dgst & 0x02 != 0,
    }
}

/// Encodes the ICReq/ICResp DGST byte.
pub const fn dgst_byte(digests: Digests) -> u8 {
    (digests.header as u8) | ((digests.data as u8) << 1)
}

/// A PDU data alignment (HPDA or CPDA): a 0's-based count of dwords, 0..=31.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Pda(u8);

impl Pda {
    /// No alignment beyond a dword (PDA 0, alignment 4 bytes).
    pub const ZERO: Self = Self(0);
    /// The largest PDA, 31 (alignment 128 bytes).
    pub const MAX: Self = Self(31);

    /// A PDA from its wire value.
    ///
    /// # Errors
    ///
    /// [`Error::BadPda`] if `value > 31`.
    pub const fn new(value: u8) -> Result<Self, Error> {
        if value > 31 {
            Err(Error::BadPda(value))
        } else {
            Ok(Self(value))
        }
    }

    /// The wire value.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The alignment in bytes, `(PDA + 1) * 4`.
    pub const fn alignment(self) -> usize {
        (self.0 as usize + 1) * 4
    }
}

/// Reads `N` bytes at `off`. Panics if `b` is too short; callers establish the length first
/// (`check_len`), which is the `Packet` accessor contract.
#[inline]
pub(crate) fn read_array<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[off..off + N]);
    a
}

/// Defines `new_unchecked`, `new_checked`, `check_len`, `into_inner` and `as_bytes` for a view
/// type with a `buffer: T` field whose fixed length is `$len`.
macro_rules! view_common {
    ($name:ident, $len:expr) => {
        impl<T: AsRef<[u8]>> $name<T> {
            /// Wraps a buffer without checking its length.
            #[inline]
            pub const fn new_unchecked(buffer: T) -> Self {
                Self { buffer }
            }

            /// Wraps a buffer after [`check_len`](Self::check_len).
            ///
            /// # Errors
            ///
            /// [`Error::Truncated`](crate::wire::Error::Truncated) if the buffer is too short.
            #[inline]
            pub fn new_checked(buffer: T) -> Result<Self, crate::wire::Error> {
                let view = Self::new_unchecked(buffer);
                view.check_len()?;
                Ok(view)
            }

            /// Checks that the buffer holds the whole fixed-size structure; after this succeeds no
            /// accessor panics.
            ///
            /// # Errors
            ///
            /// [`Error::Truncated`](crate::wire::Error::Truncated) if the buffer is too short.
            #[inline]
            pub fn check_len(&self) -> Result<(), crate::wire::Error> {
                let have = self.buffer.as_ref().len();
                if have < $len {
                    Err(crate::wire::Error::Truncated { need: $len, have })
                } else {
                    Ok(())
                }
            }

            /// Unwraps the buffer.
            #[inline]
            pub fn into_inner(self) -> T {
                self.buffer
            }

            /// The whole underlying buffer.
            #[inline]
            pub fn as_bytes(&self) -> &[u8] {
                self.buffer.as_ref()
            }
        }
    };
}
pub(crate) use view_common;

/// Defines little-endian getters and setters at fixed byte offsets on a view type with a
/// `buffer: T` field.
macro_rules! le_fields {
    ($name:ident; $( $(#[$m:meta])* $get:ident / $set:ident : $ty:ty = $off:expr ; )*) => {
        impl<T: AsRef<[u8]>> $name<T> {
            $(
                $(#[$m])*
                #[inline]
                pub fn $get(&self) -> $ty {
                    <$ty>::from_le_bytes(crate::wire::read_array(self.buffer.as_ref(), $off))
                }
            )*
        }
        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            $(
                #[doc = concat!("Sets the field read by [`", stringify!($get), "`](Self::",
                    stringify!($get), ").")]
                #[inline]
                pub fn $set(&mut self, value: $ty) {
                    let bytes = value.to_le_bytes();
                    self.buffer.as_mut()[$off..$off + bytes.len()].copy_from_slice(&bytes);
                }
            )*
        }
    };
}
pub(crate) use le_fields;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdu_type_codes_round_trip() {
        for code in 0u8..=255 {
            match PduType::try_from(code) {
                Ok(t) => assert_eq!(u8::from(t), code),
                Err(e) => {
                    assert_eq!(e, Error::UnknownPduType(code));
                    assert!(code == 0x08 || code > 0x09);
                }
            }
        }
    }

    #[test]
    fn type_table() {
        assert_eq!(PduType::CapsuleCmd.hlen(), 72);
        assert_eq!(PduType::IcResp.hlen(), 128);
        assert!(!PduType::C2hTermReq.allows_hdgst());
        assert!(PduType::R2t.allows_hdgst());
        assert!(!PduType::R2t.allows_ddgst());
        assert!(!PduType::CapsuleResp.allows_ddgst());
    }

    #[test]
    fn digests_byte() {
        for b in 0u8..4 {
            assert_eq!(dgst_byte(digests_from_dgst(b)), b);
        }
        assert_eq!(digests_from_dgst(0xFC), Digests::NONE);
    }

    #[test]
    fn pda() {
        assert_eq!(Pda::ZERO.alignment(), 4);
        assert_eq!(Pda::MAX.alignment(), 128);
        assert_eq!(Pda::new(32), Err(Error::BadPda(32)));
        assert_eq!(Pda::new(5).map(Pda::get), Ok(5));
    }

    /// Parses `bytes` with every parser; none may panic.
    fn parse_all(bytes: &[u8], digests: Digests) {
        let _ = ic_req::Repr::parse(bytes, digests);
        let _ = ic_resp::Repr::parse(bytes, digests);
        let _ = term_req::Repr::parse(bytes, digests);
        let _ = capsule_cmd::Repr::parse(bytes, digests);
        let _ = capsule_resp::Repr::parse(bytes, digests);
        let _ = h2c_data::Repr::parse(bytes, digests);
        let _ = r2t::Repr::parse(bytes, digests);
        let _ = pdu_len(bytes);
        if let Ok((_, l)) = c2h_data::Repr::parse(bytes, digests) {
            let _ = l.data(bytes);
            let _ = l.verify_data_digest(bytes);
        }
    }

    proptest::proptest! {
        /// Valid PDUs of every type with one byte mutated (and optionally cut short): every parser
        /// returns without panicking. Random bytes alone rarely get past the type and HLEN checks.
        #[test]
        fn mutated_pdus_never_panic(kind in 0usize..9, idx in 0usize..200, v in 0u8..=255,
                                    cut in 0usize..200, h in proptest::bool::ANY,
                                    d in proptest::bool::ANY) {
            let digests = Digests { header: h, data: d };
            let data = [0x5Au8; 40];
            let mut pdu = Vec::new();
            let _ = match kind {
                0 => ic_req::Repr { hpda: Pda::ZERO, digests, maxr2t: 0 }.emit(&mut pdu),
                1 => ic_resp::Repr { cpda: Pda::MAX, digests, maxh2cdata: 8192 }.emit(&mut pdu),
                2 => term_req::Repr::new(
                    TermReqDirection::ControllerToHost,
                    FatalErrorStatus::PduSequenceError,
                    0,
                )
                .emit(&mut pdu, &data),
                3 => capsule_cmd::Repr { sqe: [1; 64] }.emit(&mut pdu, digests, Pda::MAX, &data),
                4 => capsule_resp::Repr { cqe: Cqe::default() }.emit(&mut pdu, digests),
                5 => h2c_data::Repr { cccid: 1, ttag: 2, datao: 3, datal: 40, last_pdu: true }
                    .emit(&mut pdu, digests, Pda::new(3).unwrap_or(Pda::ZERO), &data),
                6 => c2h_data::Repr { cccid: 1, datao: 3, datal: 40, last_pdu: true, success: true }
                    .emit(&mut pdu, digests, Pda::ZERO, &data),
                7 => r2t::Repr { cccid: 1, ttag: 2, r2to: 3, r2tl: 4 }.emit(&mut pdu, digests),
                _ => Ok(Layout::for_emit(PduType::R2t, digests, Pda::ZERO, 0).unwrap()),
            };
            if !pdu.is_empty() {
                let i = idx % pdu.len();
                pdu[i] = v;
                parse_all(&pdu, digests);
                parse_all(&pdu[..cut.min(pdu.len())], digests);
            }
        }
    }

    #[test]
    fn errors_display() {
        let e = Error::Truncated { need: 8, have: 3 };
        assert_eq!(e.to_string(), "truncated PDU: need 8 bytes, have 3");
        let e = Error::DigestFlag {
            pdu_type: 7,
            which: DigestKind::Header,
            negotiated: true,
        };
        assert!(e.to_string().contains("clear"));
    }
}
