//! The NVMe/TCP protocol plugin for the receive engine (host side): frames controller-to-host
//! PDUs and sends C2HData payload to the command's buffer by CCCID and DATAO.

use ulp_ddp_core::{HeaderError, PduLayout, Placement, Protocol, ProtocolId, Tag};

use crate::wire::{
    C2hDataPacket, CommonPacket, DDGSTF, Digests, Error, HDGSTF, LAST_PDU, Layout, PduType, SUCCESS,
};

/// The protocol identifier backends use for NVMe/TCP.
pub const NVME_TCP: ProtocolId = ProtocolId("nvme-tcp");

/// Longest header a host receives: ICResp (128 bytes, never with a digest).
const MAX_HEADER: usize = 128;

/// Frames what a host receives: ICResp, C2HTermReq, CapsuleResp, C2HData, R2T. Host-to-
/// controller PDU types are refused (a controller never sends them).
///
/// It starts with digests off (ICResp never carries them); the host applies the negotiated
/// digests with [`set_digests`](NvmeTcpHost::set_digests) once ICResp is accepted. The wire
/// error behind the engine's last [`HeaderError`] is kept in
/// [`last_error`](NvmeTcpHost::last_error), for the termination request it calls for.
#[derive(Clone, Debug, Default)]
pub struct NvmeTcpHost {
    digests: Digests,
    last_error: Option<Error>,
}

impl NvmeTcpHost {
    /// A plugin with digests off.
    pub fn new() -> Self {
        Self::default()
    }

    /// A plugin with `digests` negotiated.
    pub fn with_digests(digests: Digests) -> Self {
        Self {
            digests,
            last_error: None,
        }
    }

    /// Applies the digests negotiated by ICReq/ICResp.
    pub fn set_digests(&mut self, digests: Digests) {
        self.digests = digests;
    }

    /// The negotiated digests.
    pub fn digests(&self) -> Digests {
        self.digests
    }

    /// The wire error behind the last header the plugin rejected.
    pub fn last_error(&self) -> Option<Error> {
        self.last_error
    }

    fn reject(&mut self, error: Error) -> HeaderError {
        self.last_error = Some(error);
        match error {
            Error::UnknownPduType(t) => HeaderError::UnknownType(t),
            Error::UnexpectedPduType { found, .. } => HeaderError::UnknownType(found),
            Error::BadHlen { .. } => field(2, "HLEN"),
            Error::BadPdo { .. } | Error::MisalignedPdo { .. } => field(3, "PDO"),
            Error::BadPlen { .. } | Error::DatalMismatch { .. } => field(4, "PLEN or DATAL"),
            Error::InvalidFlags { .. } | Error::DigestFlag { .. } => field(1, "FLAGS"),
            Error::SuccessWithoutLastPdu => field(1, "SUCCESS without LAST_PDU"),
            Error::DataRangeOverflow { .. } => field(12, "DATAO + DATAL overflow"),
            _ => HeaderError::LengthOverflow,
        }
    }
}

fn field(offset: u16, reason: &'static str) -> HeaderError {
    HeaderError::InvalidField { offset, reason }
}

impl Protocol for NvmeTcpHost {
    fn id(&self) -> ProtocolId {
        NVME_TCP
    }

    fn prefix_len(&self) -> usize {
        crate::wire::common::HEADER_LEN
    }

    fn max_header_len(&self) -> usize {
        MAX_HEADER
    }

    fn typical_header_len(&self) -> usize {
        // C2HData, CapsuleResp, R2T: 24 bytes, plus the header digest when negotiated.
        24 + if self.digests.header { 4 } else { 0 }
    }

    fn header_len(&mut self, prefix: &[u8]) -> Result<usize, HeaderError> {
        let layout = Layout::parse(prefix, self.digests).map_err(|e| self.reject(e))?;
        match layout.pdu_type {
            PduType::IcResp
            | PduType::C2hTermReq
            | PduType::CapsuleResp
            | PduType::C2hData
            | PduType::R2t => Ok(layout.header_len()),
            other => Err(self.reject(Error::UnknownPduType(other.into()))),
        }
    }

    fn has_header_digest(&self, header: &[u8]) -> bool {
        CommonPacket::new_checked(header).is_ok_and(|ch| ch.flags() & HDGSTF != 0)
    }

    fn parse(&mut self, header: &[u8]) -> Result<PduLayout, HeaderError> {
        let layout = Layout::parse(header, self.digests).map_err(|e| self.reject(e))?;
        let to_u32 = |n: usize| u32::try_from(n).map_err(|_| HeaderError::LengthOverflow);
        let mut out = PduLayout {
            header_len: to_u32(layout.header_len())?,
            header_digest: layout.hdgst,
            data_offset: to_u32(layout.data_offset)?,
            data_len: to_u32(layout.data_len)?,
            data_pad: 0,
            data_digest: layout.ddgst,
            digest_covers_pad: false,
            placement: None,
        };
        if layout.pdu_type == PduType::C2hData {
            let p = C2hDataPacket::new_checked(header).map_err(|e| self.reject(e))?;
            let flags = p.flags();
            if flags & SUCCESS != 0 && flags & LAST_PDU == 0 {
                return Err(self.reject(Error::SuccessWithoutLastPdu));
            }
            if p.datal() as usize != layout.data_len {
                return Err(self.reject(Error::DatalMismatch {
                    datal: p.datal(),
                    data_len: layout.data_len,
                }));
            }
            debug_assert_eq!(flags & DDGSTF != 0, layout.ddgst);
            out.placement = Some(Placement {
                tag: Tag(u32::from(p.cccid())),
                offset: u64::from(p.datao()),
            });
        }
        Ok(out)
    }
}

#[cfg(feature = "testkit")]
impl ulp_ddp_core::testkit::KitProtocol for NvmeTcpHost {
    fn with_digests(header: bool, data: bool) -> Self {
        Self::with_digests(Digests { header, data })
    }

    fn encode_data(&self, tag: Tag, offset: u64, data: &[u8]) -> Vec<u8> {
        let repr = crate::wire::C2hDataRepr {
            // The kit's tags are small; larger ones are truncated like a wire field would be.
            cccid: tag.0 as u16,
            datao: u32::try_from(offset).unwrap_or(u32::MAX),
            datal: data.len() as u32,
            last_pdu: false,
            success: false,
        };
        let mut out = Vec::new();
        // The kit's data lengths and offsets fit the wire fields, so emit succeeds.
        let _ = repr.emit(&mut out, self.digests, crate::wire::Pda::ZERO, data);
        out
    }

    fn encode_control(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if data.is_empty() {
            let repr = crate::wire::CapsuleRespRepr {
                cqe: crate::wire::Cqe::default(),
            };
            let _ = repr.emit(&mut out, self.digests);
        } else {
            let repr = crate::wire::TermReqRepr::new(
                crate::wire::TermReqDirection::ControllerToHost,
                crate::wire::FatalErrorStatus::InvalidHeaderField,
                0,
            );
            let _ = repr.emit(
                &mut out,
                &data[..data.len().min(crate::wire::MAX_TERM_REQ_DATA)],
            );
        }
        out
    }

    fn max_data_len(&self) -> usize {
        128 * 1024
    }
}
