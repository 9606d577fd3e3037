//! The iSCSI protocol plugin for the receive engine (initiator side): frames target PDUs,
//! decodes each header once into a [`TargetPdu`], and sends Data-In payload to the command's
//! buffer by Initiator Task Tag and Buffer Offset.

use ulp_ddp_core::{HeaderFrame, Parsed, PduLayout, Placement, Protocol, ProtocolId, Tag};

use crate::wire::bhs::{BHS_LEN, Packet};
use crate::wire::data_in::DataInRepr;
use crate::wire::{self, Digests, Itt, Opcode, Pdu, pad_len};

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

/// A PDU header a target sends, decoded once by [`IscsiInitiator`] and handed to the session
/// with the PDU's event.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum TargetPdu {
    /// SCSI Data-In, every BHS field decoded (its payload is in the command's buffer).
    DataIn(DataInRepr<'static>),
    /// Any other target PDU: its BHS, framed and checked (a target opcode, reserved bit clear,
    /// no AHS). Most of these PDUs carry their meaning partly in the data segment (text, sense,
    /// the rejected header), so their opcode-specific fields are decoded together with the data
    /// by [`decode`](TargetPdu::decode), once.
    Control(Bhs),
}

/// A checked 48-byte Basic Header Segment.
#[derive(Clone, Copy, Eq, PartialEq)]
pub struct Bhs {
    bytes: [u8; BHS_LEN],
    opcode: Opcode,
}

impl Bhs {
    /// The opcode.
    pub fn opcode(&self) -> Opcode {
        self.opcode
    }

    /// The Initiator Task Tag.
    pub fn itt(&self) -> Itt {
        Packet::new_unchecked(&self.bytes[..]).itt()
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; BHS_LEN] {
        &self.bytes
    }
}

impl core::fmt::Debug for Bhs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bhs")
            .field("opcode", &self.opcode)
            .field("itt", &self.itt())
            .finish_non_exhaustive()
    }
}

impl TargetPdu {
    /// The opcode.
    pub fn opcode(&self) -> Opcode {
        match self {
            Self::DataIn(_) => Opcode::DataIn,
            Self::Control(bhs) => bhs.opcode,
        }
    }

    /// The Initiator Task Tag.
    pub fn itt(&self) -> Itt {
        match self {
            Self::DataIn(r) => r.itt,
            Self::Control(bhs) => bhs.itt(),
        }
    }

    /// The whole PDU, decoded with its data segment (from the engine's
    /// [`Event::Control`](ulp_ddp_core::Event::Control)): the opcode-specific fields of the
    /// BHS and of the data are checked here, once, without copying.
    ///
    /// # Errors
    ///
    /// The codec's error for a field the RFC does not allow.
    pub fn decode<'a>(&'a self, data: &'a [u8]) -> wire::Result<Pdu<'a>> {
        match self {
            Self::DataIn(r) => Ok(Pdu::DataIn(DataInRepr { data, ..*r })),
            Self::Control(bhs) => Pdu::from_parts(&bhs.bytes, &[], data),
        }
    }
}

/// Frames what an initiator receives: NOP-In, SCSI Response, Task Management Response, Login
/// Response, Text Response, Data-In, Logout Response, R2T, Asynchronous Message and Reject.
/// Initiator opcodes are refused ([`wire::Error::WrongDirection`]: a target never sends them).
///
/// Digests start off (login PDUs never carry them); the session turns on the negotiated ones
/// with [`set_digests`](IscsiInitiator::set_digests) once the final Login Response is in. The
/// data digest covers the 0–3 pad bytes ([`PduLayout::digest_covers_pad`]). A data segment
/// longer than the MaxRecvDataSegmentLength the initiator declared is a protocol error.
#[derive(Clone, Debug)]
pub struct IscsiInitiator {
    digests: Digests,
    max_recv_data_segment_len: u32,
    /// Header bytes of the SCSI Response expected after the PDU parsed last (0: none).
    response_after: usize,
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
            response_after: 0,
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
}

/// Decodes the fields of a Data-In BHS without its data segment: every flag and reserved field
/// is checked as the codec checks a whole PDU.
fn decode_data_in(pkt: &Packet<&[u8]>) -> wire::Result<DataInRepr<'static>> {
    let r: DataInRepr<'_> = wire::Body::parse_body(pkt, &[], &[])?;
    Ok(DataInRepr { data: &[], ..r })
}

impl Protocol for IscsiInitiator {
    type Header = TargetPdu;
    type Error = wire::Error;

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

    fn expected_after(&self) -> usize {
        self.response_after
    }

    fn frame(&mut self, prefix: &[u8]) -> wire::Result<HeaderFrame> {
        let pkt = Packet::new_checked(prefix)?;
        if pkt.byte(0) & 0xC0 != 0 {
            return Err(wire::Error::Reserved { offset: 0 });
        }
        let op = pkt.opcode()?;
        if op.from_initiator() {
            return Err(wire::Error::WrongDirection(op));
        }
        let digest = self.digests.header;
        Ok(HeaderFrame {
            len: BHS_LEN + pkt.total_ahs_len() + if digest { 4 } else { 0 },
            digest,
        })
    }

    fn parse(&mut self, header: &[u8]) -> wire::Result<Parsed<TargetPdu>> {
        let pkt = Packet::new_checked(header)?;
        if header.len() > BHS_LEN {
            // No target PDU carries an AHS (RFC 7143 §11.2.1.5).
            return Err(wire::Error::BadAhs);
        }
        let op = pkt.opcode()?;
        let data_len = pkt.data_segment_len();
        if data_len > self.max_recv_data_segment_len {
            return Err(wire::Error::BadDataSegmentLength);
        }
        let header_len = (BHS_LEN + if self.digests.header { 4 } else { 0 }) as u32;
        let mut layout = PduLayout {
            data_offset: header_len,
            data_len,
            data_pad: pad_len(data_len as usize) as u32,
            data_digest: self.digests.data && data_len > 0,
            digest_covers_pad: true,
            placement: None,
        };
        let pdu = if op == Opcode::DataIn {
            let r = decode_data_in(&pkt)?;
            if r.itt == Itt::RESERVED {
                return Err(wire::Error::InvalidValue { offset: 16 });
            }
            layout.placement = Some(Placement {
                tag: Tag(r.itt.0),
                offset: u64::from(r.buffer_offset),
            });
            // A final Data-In without status is followed by the command's SCSI Response.
            self.response_after = if r.final_ && r.status.is_none() {
                self.typical_header_len()
            } else {
                0
            };
            TargetPdu::DataIn(r)
        } else {
            self.response_after = 0;
            let mut bytes = [0u8; BHS_LEN];
            bytes.copy_from_slice(&header[..BHS_LEN]);
            TargetPdu::Control(Bhs { bytes, opcode: op })
        };
        Ok(Parsed {
            layout,
            header: pdu,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::data_in::DataInStatus;
    use crate::wire::{Lun, Ttt};

    fn data_in(itt: u32, offset: u32, data: &[u8], d: Digests) -> Vec<u8> {
        data_in_with(itt, offset, data, d, true)
    }

    /// A final Data-In, with the command's status in it or not.
    fn data_in_with(itt: u32, offset: u32, data: &[u8], d: Digests, status: bool) -> Vec<u8> {
        let r = DataInRepr {
            final_: true,
            ack: false,
            status: status.then_some(DataInStatus {
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
        assert_eq!(
            p.frame(&pdu[..48]),
            Ok(HeaderFrame {
                len: 52,
                digest: true
            })
        );
        let Parsed { layout: l, header } = p.parse(&pdu[..48]).unwrap();
        assert!(
            matches!(header, TargetPdu::DataIn(r) if r.itt == Itt(7) && r.buffer_offset == 100)
        );
        assert_eq!(l.data_len, 5);
        assert_eq!(l.data_pad, 3);
        assert!(l.data_digest && l.digest_covers_pad);
        assert_eq!(l.data_offset, 52, "data follows the header digest");
        assert_eq!(
            l.placement,
            Some(Placement {
                tag: Tag(7),
                offset: 100
            })
        );
        assert_eq!(l.total_len(52).unwrap(), pdu.len() as u64);
    }

    #[test]
    fn a_final_data_in_without_status_expects_the_scsi_response() {
        let mut p = IscsiInitiator::with_digests(Digests::BOTH);
        let with_status = data_in(7, 0, &[1; 8], Digests::BOTH);
        p.parse(&with_status[..48]).unwrap();
        assert_eq!(
            p.expected_after(),
            0,
            "status in the Data-In: no response follows"
        );
        let mut without = with_status.clone();
        without[1] = 0x80; // F, no S
        p.parse(&without[..48]).unwrap();
        assert_eq!(p.expected_after(), 52, "a SCSI Response BHS and its digest");
        let mut not_final = without;
        not_final[1] = 0x00;
        p.parse(&not_final[..48]).unwrap();
        assert_eq!(p.expected_after(), 0, "more Data-In follows, with payload");
    }

    /// A target that ends each MaxBurstLength sequence with F and no status (LIO does) sends
    /// more Data-In, not a response: the reader must not read ahead into that payload.
    #[test]
    fn reader_path_reads_no_payload_ahead_at_a_sequence_end() {
        use ulp_ddp_core::{
            Engine, EngineOptions, NoOffload, QueueConfig, QueueId, SgBuffer, SocketReader,
        };
        let mut e = Engine::new(
            IscsiInitiator::new(),
            NoOffload,
            QueueConfig::new(ISCSI, QueueId(1)),
            EngineOptions::default(),
        );
        e.setup(Tag(7), SgBuffer::zeroed(8192)).unwrap();
        let mut stream = data_in_with(7, 0, &[1; 4096], Digests::NONE, false);
        stream.extend(data_in_with(7, 4096, &[2; 4096], Digests::NONE, true));
        let mut src = stream.as_slice();
        let mut reader = SocketReader::new(4096);
        for _ in 0..100 {
            if reader.read_once(&mut e, &mut src).unwrap() == 0 {
                break;
            }
        }
        let s = e.stats();
        assert_eq!((s.bytes_copied, s.bytes_read_in_place), (0, 8192));
    }

    #[test]
    fn refuses_initiator_opcodes_and_bad_fields() {
        let mut p = IscsiInitiator::new();
        let mut h = [0u8; 48];
        h[0] = 0x01;
        let err = p.frame(&h).unwrap_err();
        assert_eq!(err, wire::Error::WrongDirection(Opcode::ScsiCommand));
        assert_eq!(
            err.to_string(),
            "SCSI Command (opcode 0x01) travels only from initiator to target"
        );
        h[0] = 0x1C;
        assert_eq!(p.frame(&h), Err(wire::Error::UnknownOpcode(0x1C)));
        h[0] = 0x65;
        assert_eq!(p.frame(&h), Err(wire::Error::Reserved { offset: 0 }));
        let mut pdu = data_in(7, 0, &[1; 4], Digests::NONE);
        pdu[1] = 0x01; // S without F
        assert_eq!(
            p.parse(&pdu[..48]).map(|_| ()),
            Err(wire::Error::FlagConflict { offset: 1 })
        );
        let mut pdu = data_in(0xFFFF_FFFF, 0, &[1; 4], Digests::NONE);
        assert_eq!(
            p.parse(&pdu[..48]).map(|_| ()),
            Err(wire::Error::InvalidValue { offset: 16 })
        );
        pdu[16..20].copy_from_slice(&[0, 0, 0, 1]);
        pdu[5..8].copy_from_slice(&[0x00, 0x20, 0x01]); // 8193 bytes > 8192
        let err = p.parse(&pdu[..48]).map(|_| ()).unwrap_err();
        assert_eq!(err, wire::Error::BadDataSegmentLength);
        assert_eq!(err.field_offset(), Some(5));
        p.set_max_recv_data_segment_len(1 << 20);
        assert!(p.parse(&pdu[..48]).is_ok());
    }

    #[test]
    fn declared_max_recv_data_segment_len_below_8192_is_enforced() {
        let mut p = IscsiInitiator::new();
        p.set_max_recv_data_segment_len(1024);
        assert_eq!(p.max_recv_data_segment_len(), 1024);
        let ok = data_in(1, 0, &[7; 1024], Digests::NONE);
        assert_eq!(p.parse(&ok[..48]).map(|p| p.layout.data_len), Ok(1024));
        let too_long = data_in(1, 0, &[7; 1025], Digests::NONE);
        assert_eq!(
            p.parse(&too_long[..48]).map(|_| ()),
            Err(wire::Error::BadDataSegmentLength)
        );
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
            if let Ok(f) = p.frame(&h[..48]) {
                let _ = p.parse(&h[..(f.len - 4).min(60)]);
            }
        }
        assert_eq!(p.id(), ISCSI);
    }
}
