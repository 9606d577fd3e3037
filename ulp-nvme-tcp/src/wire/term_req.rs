//! H2CTermReq (type 0x02) and C2HTermReq (type 0x03): Terminate Connection Request.
//!
//! Both directions share one layout and never carry digests:
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 0 | 8 | CH (HLEN 24, PDO 0, FLAGS 0, PLEN 24..=152) |
//! | 8 | 2 | FES: Fatal Error Status |
//! | 10 | 4 | FEI: Fatal Error Information |
//! | 14 | 10 | reserved |
//! | 24 | ≤ 128 | error data: a copy of the offending PDU header |

use super::common::{self, Emitted, Layout};
use super::{Digests, Error, Pda, PduType, le_fields, view_common};

/// HLEN of a TermReq.
pub const HEADER_LEN: usize = 24;

mod field {
    pub(super) const FES: usize = 8;
    pub(super) const FEI: usize = 10;
}

/// A view over a TermReq header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

view_common!(Packet, HEADER_LEN);

le_fields! { Packet;
    /// Fatal Error Status, raw.
    fes / set_fes: u16 = field::FES;
    /// Fatal Error Information.
    fei / set_fei: u32 = field::FEI;
}

ulp_ddp_core::wire_codes! {
    /// Fatal Error Status codes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum FatalErrorStatus: u16 {
        /// Invalid PDU Header Field; FEI is the byte offset of the field.
        InvalidHeaderField = 0x01 => "invalid PDU header field",
        /// PDU Sequence Error.
        PduSequenceError = 0x02 => "PDU sequence error",
        /// Header Digest Error; FEI is the received header digest.
        HeaderDigestError = 0x03 => "header digest error",
        /// Data Transfer Out Of Range.
        DataTransferOutOfRange = 0x04 => "data transfer out of range",
        /// Data Transfer Limit Exceeded (R2T Limit Exceeded in NVMe/TCP 1.0).
        DataTransferLimitExceeded = 0x05 => "data transfer limit exceeded",
        /// Unsupported Parameter; FEI is the byte offset of the field.
        UnsupportedParameter = 0x06 => "unsupported parameter",
    }
    unknown(raw) -> Error => Error::UnknownFes(raw);
}

impl Error {
    /// The TermReq a receiver should send for this error: the FES and FEI, or `None` when the
    /// error is not a reason to terminate the connection (truncated input, which is just partial;
    /// a data-digest mismatch, which fails the command only; emit-side errors).
    pub const fn fatal_error(&self) -> Option<(FatalErrorStatus, u32)> {
        use FatalErrorStatus::{
            DataTransferOutOfRange, HeaderDigestError, InvalidHeaderField, PduSequenceError,
            UnsupportedParameter,
        };
        match *self {
            Self::UnknownPduType(_) | Self::WrongDirection(_) => Some((InvalidHeaderField, 0)),
            Self::UnexpectedPduType { .. } => Some((PduSequenceError, 0)),
            Self::InvalidFlags { .. } | Self::DigestFlag { .. } | Self::SuccessWithoutLastPdu => {
                Some((InvalidHeaderField, 1))
            }
            Self::BadHlen { .. } => Some((InvalidHeaderField, 2)),
            Self::BadPdo { .. } | Self::MisalignedPdo { .. } => Some((InvalidHeaderField, 3)),
            Self::BadPlen { .. } => Some((InvalidHeaderField, 4)),
            Self::DatalMismatch { .. } => Some((InvalidHeaderField, 16)),
            Self::HeaderDigestMismatch { received, .. } => Some((HeaderDigestError, received)),
            Self::DataRangeOverflow { .. } => Some((DataTransferOutOfRange, 0)),
            Self::UnsupportedPfv(_) => Some((UnsupportedParameter, 8)),
            Self::BadPda(_) => Some((UnsupportedParameter, 10)),
            Self::BadMaxH2cData(_) => Some((InvalidHeaderField, 12)),
            Self::Truncated { .. }
            | Self::DataDigestMismatch { .. }
            | Self::UnknownFes(_)
            | Self::BadDataLen { .. }
            | Self::BufferTooSmall { .. } => None,
        }
    }
}

/// Which TermReq: sent by the host or by the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TermReqDirection {
    /// H2CTermReq (type 0x02).
    HostToController,
    /// C2HTermReq (type 0x03).
    ControllerToHost,
}

impl TermReqDirection {
    /// The PDU type of this direction.
    pub const fn pdu_type(self) -> PduType {
        match self {
            Self::HostToController => PduType::H2cTermReq,
            Self::ControllerToHost => PduType::C2hTermReq,
        }
    }
}

/// A validated TermReq header (the error data is located by the [`Layout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// H2C or C2H.
    pub direction: TermReqDirection,
    /// Fatal Error Status, raw (see [`Repr::fatal_error_status`]); unknown values are kept so a
    /// received TermReq can always be reported.
    pub fes: u16,
    /// Fatal Error Information.
    pub fei: u32,
}

impl Repr {
    /// A TermReq with a known FES.
    pub const fn new(direction: TermReqDirection, fes: FatalErrorStatus, fei: u32) -> Self {
        Self {
            direction,
            fes: fes as u16,
            fei,
        }
    }

    /// The FES as a known code.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownFes`].
    pub fn fatal_error_status(&self) -> Result<FatalErrorStatus, Error> {
        FatalErrorStatus::try_from(self.fes)
    }

    /// Parses an H2CTermReq or C2HTermReq from `bytes` (at least the 24-byte header; the error
    /// data may follow). `digests` is accepted for uniformity and ignored: TermReqs never carry
    /// digests.
    ///
    /// # Errors
    ///
    /// Any [`Layout::parse`] error, [`Error::UnexpectedPduType`] or [`Error::Truncated`].
    pub fn parse(bytes: &[u8], digests: Digests) -> Result<(Self, Layout), Error> {
        let direction = match bytes.first() {
            Some(0x02) => TermReqDirection::HostToController,
            _ => TermReqDirection::ControllerToHost,
        };
        let layout = common::parse_header(bytes, digests, direction.pdu_type())?;
        Ok((Self::decode(bytes, &layout)?, layout))
    }

    /// Decodes the PDU-specific header fields from `header` (at least HLEN bytes), whose common
    /// header was already validated into `layout` and whose header digest (if any) was already
    /// verified: the receive engine's path, where each header is checked once.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`].
    pub fn decode(header: &[u8], layout: &Layout) -> Result<Self, Error> {
        let p = Packet::new_checked(header)?;
        let direction = match layout.pdu_type {
            PduType::H2cTermReq => TermReqDirection::HostToController,
            _ => TermReqDirection::ControllerToHost,
        };
        Ok(Self {
            direction,
            fes: p.fes(),
            fei: p.fei(),
        })
    }

    fn fill(&self, header: &mut [u8]) {
        let mut p = Packet::new_unchecked(header);
        p.set_fes(self.fes);
        p.set_fei(self.fei);
    }

    /// Writes the 24-byte header into `buf` for a TermReq carrying `data` (at most 128 bytes)
    /// after it.
    ///
    /// # Errors
    ///
    /// [`Error::BadDataLen`] or [`Error::BufferTooSmall`].
    pub fn emit_header(&self, buf: &mut [u8], data: &[u8]) -> Result<Emitted, Error> {
        let t = self.direction.pdu_type();
        common::emit_header(buf, t, 0, Digests::NONE, Pda::ZERO, data, |h| self.fill(h))
    }

    /// Appends the TermReq and its error `data` (at most 128 bytes) to `out`.
    ///
    /// # Errors
    ///
    /// [`Error::BadDataLen`].
    pub fn emit(&self, out: &mut Vec<u8>, data: &[u8]) -> Result<Layout, Error> {
        let t = self.direction.pdu_type();
        common::emit_vec(out, t, 0, Digests::NONE, Pda::ZERO, data, |h| self.fill(h))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// C2HTermReq: FES 0x03 (header digest error), FEI 0xE3069283, 4 bytes of error data.
    static TERM: [u8; 28] = [
        0x03, 0x00, 0x18, 0x00, 0x1C, 0x00, 0x00, 0x00, // CH: PLEN 28
        0x03, 0x00, 0x83, 0x92, 0x06, 0xE3, 0x00, 0x00, // FES, FEI, reserved
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
        0x07, 0x00, 0x18, 0x18, // error data
    ];

    fn repr() -> Repr {
        Repr::new(
            TermReqDirection::ControllerToHost,
            FatalErrorStatus::HeaderDigestError,
            0xE306_9283,
        )
    }

    #[test]
    fn deconstruct() {
        let (r, l) = Repr::parse(&TERM, Digests::BOTH).unwrap();
        assert_eq!(r, repr());
        assert_eq!(
            r.fatal_error_status(),
            Ok(FatalErrorStatus::HeaderDigestError)
        );
        assert_eq!((l.data_offset, l.data_len, l.plen), (24, 4, 28));
        assert_eq!(l.data(&TERM), Ok(&[0x07, 0x00, 0x18, 0x18][..]));
        // Only the header is needed.
        assert_eq!(Repr::parse(&TERM[..24], Digests::NONE).unwrap().0, repr());
    }

    #[test]
    fn construct() {
        let mut out = Vec::new();
        repr().emit(&mut out, &TERM[24..]).unwrap();
        assert_eq!(out, TERM);
        let h2c = Repr {
            direction: TermReqDirection::HostToController,
            ..repr()
        };
        let mut out = Vec::new();
        h2c.emit(&mut out, &[]).unwrap();
        assert_eq!(out[0], 0x02);
        assert_eq!(out.len(), 24);
        assert_eq!(Repr::parse(&out, Digests::NONE).unwrap().0, h2c);
    }

    #[test]
    fn limits() {
        assert!(matches!(
            repr().emit(&mut Vec::new(), &[0; 129]),
            Err(Error::BadDataLen { len: 129, .. })
        ));
        let mut out = Vec::new();
        repr().emit(&mut out, &[0; 128]).unwrap();
        assert_eq!(out.len(), 152);
        let mut b = TERM;
        b[4] = 153;
        assert!(matches!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::BadPlen {
                min: 24,
                max: 152,
                ..
            })
        ));
        let mut b = TERM;
        b[1] = 0x01; // never a digest
        assert!(matches!(
            Repr::parse(&b, Digests::BOTH),
            Err(Error::InvalidFlags { .. })
        ));
        // PDO 24 names the same data offset and is tolerated; other PDOs are not.
        let mut b = TERM;
        b[3] = 24;
        assert!(Repr::parse(&b, Digests::NONE).is_ok());
        b[3] = 28;
        assert!(matches!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::BadPdo { .. })
        ));
    }

    #[test]
    fn unknown_fes_is_kept() {
        let mut b = TERM;
        b[8] = 0x7F;
        let (r, _) = Repr::parse(&b, Digests::NONE).unwrap();
        assert_eq!(r.fes, 0x7F);
        assert_eq!(r.fatal_error_status(), Err(Error::UnknownFes(0x7F)));
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Repr::parse(&TERM[..10], Digests::NONE),
            Err(Error::Truncated { need: 24, have: 10 })
        );
        assert_eq!(
            Repr::parse(&[], Digests::NONE),
            Err(Error::Truncated { need: 8, have: 0 })
        );
    }

    #[test]
    fn wrong_type() {
        let mut b = TERM;
        b[0] = 0x05;
        assert_eq!(
            Repr::parse(&b, Digests::NONE),
            Err(Error::UnexpectedPduType {
                expected: 0x03,
                found: 0x05
            })
        );
    }

    #[test]
    fn error_mapping() {
        assert_eq!(
            Error::HeaderDigestMismatch {
                expected: 1,
                received: 2
            }
            .fatal_error(),
            Some((FatalErrorStatus::HeaderDigestError, 2))
        );
        assert_eq!(
            Error::BadPdo {
                pdu_type: 7,
                pdo: 1,
                header_len: 24
            }
            .fatal_error(),
            Some((FatalErrorStatus::InvalidHeaderField, 3))
        );
        assert_eq!(Error::Truncated { need: 1, have: 0 }.fatal_error(), None);
        assert_eq!(
            Error::DataDigestMismatch {
                expected: 1,
                received: 2
            }
            .fatal_error(),
            None
        );
    }

    #[test]
    fn endianness() {
        let r = Repr {
            fei: 0x0000_0104,
            ..repr()
        };
        let mut out = Vec::new();
        r.emit(&mut out, &[]).unwrap();
        assert_eq!(out[10..14], [0x04, 0x01, 0x00, 0x00]);
    }

    proptest! {
        #[test]
        fn round_trip(h2c in any::<bool>(), fes in any::<u16>(), fei in any::<u32>(),
                      data in prop::collection::vec(any::<u8>(), 0..=128)) {
            let direction = if h2c {
                TermReqDirection::HostToController
            } else {
                TermReqDirection::ControllerToHost
            };
            let r = Repr { direction, fes, fei };
            let mut out = Vec::new();
            let l = r.emit(&mut out, &data).unwrap();
            prop_assert_eq!(out.len(), l.plen);
            prop_assert_eq!(Repr::parse(&out, Digests::BOTH), Ok((r, l)));
            prop_assert_eq!(l.data(&out), Ok(&data[..]));
        }

        #[test]
        fn fes_codes(v in any::<u16>()) {
            if let Ok(f) = FatalErrorStatus::try_from(v) {
                prop_assert_eq!(u16::from(f), v);
            }
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..60)) {
            let _ = Repr::parse(&bytes, Digests::NONE);
        }
    }
}
