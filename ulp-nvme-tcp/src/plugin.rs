//! The NVMe/TCP protocol plugin for the receive engine (host side): frames controller-to-host
//! PDUs, decodes each header once into a [`ControllerPdu`], and sends C2HData payload to the
//! command's buffer by CCCID and DATAO.

use ulp_ddp_core::{HeaderFrame, Parsed, PduLayout, Placement, Protocol, ProtocolId, Tag};

use crate::wire::{
    C2hDataRepr, CapsuleRespRepr, Digests, Error, IcRespRepr, Layout, MAX_HEADER_SPACE, Pda,
    PduType, R2tRepr, TermReqRepr,
};

/// The protocol identifier backends use for NVMe/TCP.
pub const NVME_TCP: ProtocolId = ProtocolId("nvme-tcp");

/// Longest header a host receives: ICResp (128 bytes, never with a digest).
const MAX_HEADER: usize = 128;

/// A PDU header a host receives from a controller, decoded once by [`NvmeTcpHost`] and handed to
/// the host's state machine with the PDU's event. The data (TermReq error data) comes with the
/// event; C2HData payload is already in the command's buffer.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ControllerPdu {
    /// ICResp: the connection's parameters.
    IcResp(IcRespRepr),
    /// C2HTermReq: the controller ends the connection.
    TermReq(TermReqRepr),
    /// CapsuleResp: a command's completion queue entry.
    CapsuleResp(CapsuleRespRepr),
    /// C2HData: read data for a command.
    C2hData(C2hDataRepr),
    /// R2T: the controller asks for write data.
    R2t(R2tRepr),
}

impl ControllerPdu {
    /// The PDU type.
    pub fn pdu_type(&self) -> PduType {
        match self {
            Self::IcResp(_) => PduType::IcResp,
            Self::TermReq(_) => PduType::C2hTermReq,
            Self::CapsuleResp(_) => PduType::CapsuleResp,
            Self::C2hData(_) => PduType::C2hData,
            Self::R2t(_) => PduType::R2t,
        }
    }

    /// The command the PDU names, if any (CCCID, or the CQE's CID).
    pub fn cid(&self) -> Option<u16> {
        match self {
            Self::CapsuleResp(r) => Some(r.cqe.cid),
            Self::C2hData(r) => Some(r.cccid),
            Self::R2t(r) => Some(r.cccid),
            Self::IcResp(_) | Self::TermReq(_) => None,
        }
    }

    /// The header re-encoded with `digests` and the host's alignment `hpda`, as the controller
    /// sent it: the data of an H2CTermReq about this PDU (at most 128 bytes).
    pub fn header_bytes(&self, digests: Digests, hpda: Pda) -> Vec<u8> {
        let mut buf = [0u8; MAX_HEADER_SPACE];
        let emitted = match self {
            Self::IcResp(r) => r.emit_header(&mut buf),
            Self::TermReq(r) => r.emit_header(&mut buf, &[]),
            Self::CapsuleResp(r) => r.emit_header(&mut buf, digests),
            Self::C2hData(r) => r.emit_header_for_len(&mut buf, digests, hpda),
            Self::R2t(r) => r.emit_header(&mut buf, digests),
        };
        let len = emitted.map_or(0, |e| e.layout.header_len());
        buf[..len.min(crate::wire::MAX_TERM_REQ_DATA)].to_vec()
    }
}

/// Frames what a host receives: ICResp, C2HTermReq, CapsuleResp, C2HData, R2T. Host-to-
/// controller PDU types are refused ([`Error::WrongDirection`]: a controller never sends them).
///
/// It starts with digests off (ICResp never carries them); the host applies the negotiated
/// digests with [`set_digests`](NvmeTcpHost::set_digests) once ICResp is accepted. The common
/// header is validated once, when the engine frames the PDU, and the PDU-specific fields are
/// decoded once, when it parses the header; a refusal is the codec's own [`Error`], which names
/// the PDU type and field.
#[derive(Clone, Debug, Default)]
pub struct NvmeTcpHost {
    digests: Digests,
    /// The C2HData alignment the host asked for in ICReq.
    hpda: Pda,
    /// The layout [`Protocol::frame`] validated for the PDU being received.
    framed: Option<Layout>,
    /// Header bytes of the CapsuleResp expected after the PDU parsed last (0: none expected).
    resp_after: usize,
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
            hpda: Pda::ZERO,
            framed: None,
            resp_after: 0,
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

    /// Sets the C2HData alignment the host asked for (ICReq HPDA): a C2HData whose PDO is not
    /// a multiple of it is refused ([`Error::MisalignedPdo`]).
    pub fn set_hpda(&mut self, hpda: Pda) {
        self.hpda = hpda;
    }
}

fn to_u32(n: usize, pdu_type: PduType) -> Result<u32, Error> {
    u32::try_from(n).map_err(|_| Error::BadDataLen {
        pdu_type: pdu_type.into(),
        len: n,
    })
}

impl Protocol for NvmeTcpHost {
    type Header = ControllerPdu;
    type Error = Error;

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

    fn expected_after(&self) -> usize {
        self.resp_after
    }

    fn frame(&mut self, prefix: &[u8]) -> Result<HeaderFrame, Error> {
        let layout = Layout::parse(prefix, self.digests)?;
        if layout.pdu_type.from_host() {
            return Err(Error::WrongDirection(layout.pdu_type));
        }
        self.framed = Some(layout);
        Ok(HeaderFrame {
            len: layout.header_len(),
            digest: layout.hdgst,
        })
    }

    fn parse(&mut self, header: &[u8]) -> Result<Parsed<ControllerPdu>, Error> {
        let layout = match self.framed.take() {
            Some(layout) => layout,
            None => Layout::parse(header, self.digests)?,
        };
        let pdu = match layout.pdu_type {
            PduType::C2hData => {
                layout.check_alignment(self.hpda)?;
                ControllerPdu::C2hData(C2hDataRepr::decode(header, &layout)?)
            }
            PduType::CapsuleResp => {
                ControllerPdu::CapsuleResp(CapsuleRespRepr::decode(header, &layout)?)
            }
            PduType::R2t => ControllerPdu::R2t(R2tRepr::decode(header, &layout)?),
            PduType::C2hTermReq => ControllerPdu::TermReq(TermReqRepr::decode(header, &layout)?),
            PduType::IcResp => ControllerPdu::IcResp(IcRespRepr::decode(header, &layout)?),
            other => return Err(Error::WrongDirection(other)),
        };
        let t = layout.pdu_type;
        // The controller answers a command's last C2HData with a CapsuleResp unless SUCCESS
        // says it will not.
        self.resp_after = match pdu {
            ControllerPdu::C2hData(r) if r.last_pdu && !r.success => self.typical_header_len(),
            _ => 0,
        };
        let placement = match pdu {
            ControllerPdu::C2hData(r) => Some(Placement {
                tag: Tag(u32::from(r.cccid)),
                offset: u64::from(r.datao),
            }),
            _ => None,
        };
        Ok(Parsed {
            layout: PduLayout {
                data_offset: to_u32(layout.data_offset, t)?,
                data_len: to_u32(layout.data_len, t)?,
                data_pad: 0,
                data_digest: layout.ddgst,
                digest_covers_pad: false,
                placement,
            },
            header: pdu,
        })
    }
}

#[cfg(feature = "testkit")]
impl ulp_ddp_core::testkit::KitProtocol for NvmeTcpHost {
    fn with_digests(header: bool, data: bool) -> Self {
        Self::with_digests(Digests { header, data })
    }

    fn encode_data(&self, tag: Tag, offset: u64, data: &[u8]) -> Vec<u8> {
        let repr = C2hDataRepr {
            // The kit's tags are small; larger ones are truncated like a wire field would be.
            cccid: tag.0 as u16,
            datao: u32::try_from(offset).unwrap_or(u32::MAX),
            datal: data.len() as u32,
            last_pdu: false,
            success: false,
        };
        let mut out = Vec::new();
        // The kit's data lengths and offsets fit the wire fields, so emit succeeds.
        let _ = repr.emit(&mut out, self.digests, Pda::ZERO, data);
        out
    }

    fn encode_control(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if data.is_empty() {
            let repr = CapsuleRespRepr {
                cqe: crate::wire::Cqe::default(),
            };
            let _ = repr.emit(&mut out, self.digests);
        } else {
            let repr = TermReqRepr::new(
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
