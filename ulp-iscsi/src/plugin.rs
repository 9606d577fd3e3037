//! The iSCSI protocol plugin for the receive engine (initiator side): frames target PDUs and
//! sends Data-In payload to the command's buffer by Initiator Task Tag and Buffer Offset.

use ulp_ddp_core::{HeaderError, PduLayout, Placement, Protocol, ProtocolId, Tag};

use crate::wire::bhs::{BHS_LEN, Packet};
use crate::wire::data_in::DataInRepr;
use crate::wire::{self, Digests, Itt, Opcode, pad_len};

/// The protocol identifier backends use for iSCSI.
pub const ISCSI: ProtocolId = ProtocolId("iscsi");

/// Longest header accepted: BHS, the largest AHS area and a header digest.
pub const MAX_HEADER: usize = BHS_LEN + 255 * 4 + 4;

/// MaxRecvDataSegmentLength in force before the initiator declared its own (RFC 7143 §13.12).
pub const DEFAULT_MAX_RECV_DATA_SEGMENT_LEN: u32 = 8192;

/// Smallest MaxRecvDataSegmentLength a party may declare (RFC 7143 §13.12).
pub const MIN_MAX_RECV_DATA_SEGMENT_LEN: u32 = 512;

/// Largest MaxRecvDataSegmentLength a party may declare (2^24 - 1, RFC 7143 §13.12).
pub const MAX_MAX_RECV_DATA_SEGMENT_LEN: u32 = (1 << 24) - 1;

/// Frames what an initiator receives: NOP-In, SCSI Response, Task Management Response, Login
/// Response, Text Response, Data-In, Logout Response, R2T, Asynchronous Message and Reject.
/// Initiator opcodes are refused (a target never sends them).
///
/// Digests start off (login PDUs never carry them); the session turns on the negotiated ones
/// with [`set_digests`](IscsiInitiator::set_digests) once the final Login Response is in. The
/// data digest covers the 0–3 pad bytes ([`PduLayout::digest_covers_pad`]). A data segment
/// longer than the MaxRecvDataSegmentLength the initiator declared is a protocol error.
#[derive(Clone, Debug)]
pub struct IscsiInitiator {
    digests: Digests,
    max_recv_data_segment_len: u32,
    last_error: Option<wire::Error>,
}

impl Default for IscsiInitiator {
    fn default() -> Self {
        Self::new()
    }
}

impl IscsiInitiator {
    /// A plugin with digests off and the default 8192-byte receive limit.
    pub fn new() -> Self {
        Self {
            digests: Digests::NONE,
            max_recv_data_segment_len: DEFAULT_MAX_RECV_DATA_SEGMENT_LEN,
            last_error: None,
        }
    }

    /// A plugin with `digests` on (for tests and fuzzing).
    pub fn with_digests(digests: Digests) -> Self {
        Self {
            digests,
            ..Self::new()
        }
    }

    /// Applies the digests negotiated at login (from the first full-feature PDU on).
    pub fn set_digests(&mut self, digests: Digests) {
        self.digests = digests;
    }

    /// The digests in force.
    pub fn digests(&self) -> Digests {
        self.digests
    }

    /// Sets the longest data segment accepted: the initiator's declared
    /// MaxRecvDataSegmentLength, enforced as declared within the range RFC 7143 §13.12 allows
    /// (512 to 2^24 - 1; values outside are clamped to it). During login the session keeps the
    /// 8192-byte default as a floor; from full feature phase on the declared value holds.
    pub fn set_max_recv_data_segment_len(&mut self, len: u32) {
        self.max_recv_data_segment_len =
            len.clamp(MIN_MAX_RECV_DATA_SEGMENT_LEN, MAX_MAX_RECV_DATA_SEGMENT_LEN);
    }

    /// The longest data segment accepted.
    pub fn max_recv_data_segment_len(&self) -> u32 {
        self.max_recv_data_segment_len
    }

    /// The wire error behind the last header the plugin rejected.
    pub fn last_error(&self) -> Option<wire::Error> {
        self.last_error
    }

    fn reject(&mut self, error: wire::Error) -> HeaderError {
        self.last_error = Some(error);
        match error {
            wire::Error::UnknownOpcode(op) => HeaderError::UnknownType(op),
            wire::Error::UnexpectedOpcode { found, .. } => HeaderError::UnknownType(found.into()),
            wire::Error::Reserved { offset }
            | wire::Error::InvalidValue { offset }
            | wire::Error::FlagConflict { offset } => HeaderError::InvalidField {
                offset: u16::from(offset),
                reason: "reserved, invalid or conflicting field",
            },
            wire::Error::BadDataSegmentLength => HeaderError::InvalidField {
                offset: 5,
                reason: "DataSegmentLength",
            },
            wire::Error::BadAhs => HeaderError::InvalidField {
                offset: 4,
                reason: "TotalAHSLength",
            },
            _ => HeaderError::LengthOverflow,
        }
    }
}

/// Whether `op` is one a target sends.
pub fn is_target_opcode(op: Opcode) -> bool {
    matches!(
        op,
        Opcode::NopIn
            | Opcode::ScsiResponse
            | Opcode::TaskMgmtResponse
            | Opcode::LoginResponse
            | Opcode::TextResponse
            | Opcode::DataIn
            | Opcode::LogoutResponse
            | Opcode::R2t
            | Opcode::AsyncMessage
            | Opcode::Reject
    )
}

/// Decodes the fields of a Data-In header (its BHS, 48 bytes or more) without its data
/// segment: every flag and reserved field is checked as the codec checks a whole PDU.
///
/// # Errors
///
/// Any [`wire::Error`] the codec reports for the BHS.
pub fn data_in_header(header: &[u8]) -> wire::Result<DataInRepr<'static>> {
    let mut bhs = [0u8; BHS_LEN];
    bhs.copy_from_slice(header.get(..BHS_LEN).ok_or(wire::Error::Truncated {
        need: BHS_LEN,
        have: header.len(),
    })?);
    if bhs[4] != 0 {
        return Err(wire::Error::BadAhs);
    }
    bhs[5..8].fill(0);
    let r = DataInRepr::parse(&bhs, Digests::NONE)?;
    Ok(DataInRepr {
        final_: r.final_,
        ack: r.ack,
        status: r.status,
        lun: r.lun,
        itt: r.itt,
        ttt: r.ttt,
        exp_cmd_sn: r.exp_cmd_sn,
        max_cmd_sn: r.max_cmd_sn,
        data_sn: r.data_sn,
        buffer_offset: r.buffer_offset,
        data: &[],
    })
}

impl Protocol for IscsiInitiator {
    fn id(&self) -> ProtocolId {
        ISCSI
    }

    fn prefix_len(&self) -> usize {
        BHS_LEN
    }

    fn typical_header_len(&self) -> usize {
        // The 48-byte BHS (AHS is rare on what a target sends), plus the header digest.
        BHS_LEN + if self.digests.header { 4 } else { 0 }
    }

    fn max_header_len(&self) -> usize {
        MAX_HEADER
    }

    fn header_len(&mut self, prefix: &[u8]) -> Result<usize, HeaderError> {
        let pkt = Packet::new_checked(prefix).map_err(|e| self.reject(e))?;
        if pkt.byte(0) & 0xC0 != 0 {
            return Err(self.reject(wire::Error::Reserved { offset: 0 }));
        }
        let op = pkt.opcode().map_err(|e| self.reject(e))?;
        if !is_target_opcode(op) {
            return Err(self.reject(wire::Error::UnknownOpcode(op.into())));
        }
        let digest = if self.digests.header { 4 } else { 0 };
        Ok(BHS_LEN + pkt.total_ahs_len() + digest)
    }

    fn has_header_digest(&self, _header: &[u8]) -> bool {
        self.digests.header
    }

    fn parse(&mut self, header: &[u8]) -> Result<PduLayout, HeaderError> {
        let pkt = Packet::new_checked(header).map_err(|e| self.reject(e))?;
        let op = pkt.opcode().map_err(|e| self.reject(e))?;
        let data_len = pkt.data_segment_len();
        if data_len > self.max_recv_data_segment_len {
            return Err(self.reject(wire::Error::BadDataSegmentLength));
        }
        let header_len = u32::try_from(header.len()).map_err(|_| HeaderError::LengthOverflow)?;
        let mut layout = PduLayout {
            header_len,
            header_digest: self.digests.header,
            data_offset: header_len,
            data_len,
            data_pad: pad_len(data_len as usize) as u32,
            data_digest: self.digests.data && data_len > 0,
            digest_covers_pad: true,
            placement: None,
        };
        if op == Opcode::DataIn {
            let r = data_in_header(header).map_err(|e| self.reject(e))?;
            if r.itt == Itt::RESERVED {
                return Err(self.reject(wire::Error::InvalidValue { offset: 16 }));
            }
            layout.placement = Some(Placement {
                tag: Tag(r.itt.0),
                offset: u64::from(r.buffer_offset),
            });
        }
        Ok(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::data_in::DataInStatus;
    use crate::wire::{Lun, Ttt};

    fn data_in(itt: u32, offset: u32, data: &[u8], d: Digests) -> Vec<u8> {
        let r = DataInRepr {
            final_: true,
            ack: false,
            status: Some(DataInStatus {
                status: 0,
                stat_sn: 1,
                overflow: false,
                underflow: false,
                residual: 0,
            }),
            lun: Lun::default(),
            itt: Itt(itt),
            ttt: Ttt::RESERVED,
            exp_cmd_sn: 1,
            max_cmd_sn: 2,
            data_sn: 0,
            buffer_offset: offset,
            data,
        };
        let mut out = vec![0; r.buffer_len(d)];
        r.emit(&mut out, d).unwrap();
        out
    }

    #[test]
    fn data_in_layout_with_digests() {
        let mut p = IscsiInitiator::with_digests(Digests::BOTH);
        let pdu = data_in(7, 100, &[1, 2, 3, 4, 5], Digests::BOTH);
        assert_eq!(p.header_len(&pdu[..48]), Ok(52));
        let l = p.parse(&pdu[..52]).unwrap();
        assert_eq!(l.data_len, 5);
        assert_eq!(l.data_pad, 3);
        assert!(l.data_digest && l.digest_covers_pad && l.header_digest);
        assert_eq!(
            l.placement,
            Some(Placement {
                tag: Tag(7),
                offset: 100
            })
        );
        assert_eq!(l.total_len().unwrap(), pdu.len() as u64);
    }

    #[test]
    fn refuses_initiator_opcodes_and_bad_fields() {
        let mut p = IscsiInitiator::new();
        let mut h = [0u8; 48];
        h[0] = 0x01;
        assert_eq!(p.header_len(&h), Err(HeaderError::UnknownType(0x01)));
        h[0] = 0x1C;
        assert_eq!(p.header_len(&h), Err(HeaderError::UnknownType(0x1C)));
        h[0] = 0x65;
        assert!(matches!(
            p.header_len(&h),
            Err(HeaderError::InvalidField { offset: 0, .. })
        ));
        let mut pdu = data_in(7, 0, &[1; 4], Digests::NONE);
        pdu[1] = 0x01; // S without F
        assert!(p.parse(&pdu[..48]).is_err());
        let mut pdu = data_in(0xFFFF_FFFF, 0, &[1; 4], Digests::NONE);
        assert!(p.parse(&pdu[..48]).is_err());
        pdu[16..20].copy_from_slice(&[0, 0, 0, 1]);
        pdu[5..8].copy_from_slice(&[0x00, 0x20, 0x01]); // 8193 bytes > 8192
        assert!(matches!(
            p.parse(&pdu[..48]),
            Err(HeaderError::InvalidField { offset: 5, .. })
        ));
        p.set_max_recv_data_segment_len(1 << 20);
        assert!(p.parse(&pdu[..48]).is_ok());
        assert!(p.last_error().is_some());
    }

    #[test]
    fn declared_max_recv_data_segment_len_below_8192_is_enforced() {
        let mut p = IscsiInitiator::new();
        p.set_max_recv_data_segment_len(1024);
        assert_eq!(p.max_recv_data_segment_len(), 1024);
        let ok = data_in(1, 0, &[7; 1024], Digests::NONE);
        assert_eq!(p.parse(&ok[..48]).map(|l| l.data_len), Ok(1024));
        let too_long = data_in(1, 0, &[7; 1025], Digests::NONE);
        assert!(matches!(
            p.parse(&too_long[..48]),
            Err(HeaderError::InvalidField { offset: 5, .. })
        ));
        // Outside the RFC's range: clamped to it.
        p.set_max_recv_data_segment_len(100);
        assert_eq!(p.max_recv_data_segment_len(), 512);
        p.set_max_recv_data_segment_len(u32::MAX);
        assert_eq!(p.max_recv_data_segment_len(), (1 << 24) - 1);
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut p = IscsiInitiator::with_digests(Digests::BOTH);
        for seed in 0u32..2000 {
            let mut h = [0u8; 60];
            for (i, b) in h.iter_mut().enumerate() {
                *b = (seed.wrapping_mul(2_654_435_761).rotate_left(i as u32) >> 7) as u8;
            }
            h[0] &= 0x3F;
            if let Ok(n) = p.header_len(&h[..48]) {
                let _ = p.parse(&h[..n.min(60)]);
            }
        }
        assert_eq!(p.id(), ISCSI);
    }
}
