//! A toy request-response protocol for the core's tests and the backends' conformance runs. It
//! exercises every layout feature the engine supports: header digests, alignment padding
//! before data, trailing padding covered by the data digest, data digests, control PDUs.
//!
//! PDU: a 16-byte header: type (1 = control, 2 = data), flags (1 = header digest, 2 = data
//! digest), header length (16), data offset (from PDU start; 0 without data), data length (u32
//! LE), tag (u32 LE), buffer offset (u32 LE); then a 4-byte header digest if flagged, zero
//! padding up to the data offset, the data, zero padding to a multiple of 4 (covered by the
//! data digest), and a 4-byte data digest if flagged.

use ulp_ddp_core::digest::{Crc32c, crc32c};
use ulp_ddp_core::testkit::KitProtocol;
use ulp_ddp_core::{
    HeaderError, HeaderFrame, Parsed, PduLayout, Placement, Protocol, ProtocolId, Tag,
};

/// The toy protocol's identifier.
pub const TOY: ProtocolId = ProtocolId("toy");
const HLEN: usize = 16;

/// The toy protocol's plugin (and encoder, for the conformance kit).
#[derive(Clone, Debug)]
pub struct Toy {
    /// Header digests negotiated.
    pub header_digest: bool,
    /// Data digests negotiated.
    pub data_digest: bool,
    /// Data alignment the sender uses (data offset rounded up to this), in bytes.
    pub align: usize,
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

impl Toy {
    /// A plugin with these digests, data aligned to 8 bytes.
    pub fn new(header_digest: bool, data_digest: bool) -> Self {
        Self {
            header_digest,
            data_digest,
            align: 8,
        }
    }

    fn encode(&self, kind: u8, tag: u32, offset: u32, data: &[u8]) -> Vec<u8> {
        let hd = if self.header_digest { 4 } else { 0 };
        let data_offset = if data.is_empty() {
            0
        } else {
            (HLEN + hd).next_multiple_of(self.align)
        };
        let mut flags = 0;
        if self.header_digest {
            flags |= 1;
        }
        if self.data_digest && !data.is_empty() {
            flags |= 2;
        }
        let mut pdu = vec![kind, flags, HLEN as u8, data_offset as u8];
        pdu.extend_from_slice(&(data.len() as u32).to_le_bytes());
        pdu.extend_from_slice(&tag.to_le_bytes());
        pdu.extend_from_slice(&offset.to_le_bytes());
        if self.header_digest {
            let d = crc32c(&pdu);
            pdu.extend_from_slice(&d.to_le_bytes());
        }
        if !data.is_empty() {
            pdu.resize(data_offset, 0);
            pdu.extend_from_slice(data);
            pdu.resize(pdu.len() + pad4(data.len()), 0);
            if self.data_digest {
                let mut crc = Crc32c::new();
                crc.update(&pdu[data_offset..]);
                pdu.extend_from_slice(&crc.to_wire());
            }
        }
        pdu
    }
}

/// A toy header, decoded.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ToyHeader {
    /// 1 = control, 2 = data.
    pub kind: u8,
    /// Data bytes.
    pub data_len: u32,
    /// The command's tag (data PDUs).
    pub tag: u32,
    /// Offset in the command's buffer (data PDUs).
    pub offset: u32,
}

impl Protocol for Toy {
    type Header = ToyHeader;
    type Error = HeaderError;

    fn id(&self) -> ProtocolId {
        TOY
    }

    fn prefix_len(&self) -> usize {
        4
    }

    fn max_header_len(&self) -> usize {
        HLEN + 4
    }

    fn frame(&mut self, prefix: &[u8]) -> Result<HeaderFrame, HeaderError> {
        if !matches!(prefix[0], 1 | 2) {
            return Err(HeaderError::UnknownType(prefix[0]));
        }
        if prefix[2] as usize != HLEN {
            return Err(HeaderError::InvalidField {
                offset: 2,
                reason: "header length must be 16",
            });
        }
        let hd = prefix[1] & 1 == 1;
        if hd != self.header_digest {
            return Err(HeaderError::InvalidField {
                offset: 1,
                reason: "header digest flag disagrees with negotiation",
            });
        }
        Ok(HeaderFrame {
            len: HLEN + if hd { 4 } else { 0 },
            digest: hd,
        })
    }

    fn parse(&mut self, h: &[u8]) -> Result<Parsed<ToyHeader>, HeaderError> {
        let le = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let (data_len, tag, offset) = (le(4), le(8), le(12));
        let header_len = (HLEN + if h[1] & 1 == 1 { 4 } else { 0 }) as u32;
        let header = ToyHeader {
            kind: h[0],
            data_len,
            tag,
            offset,
        };
        if data_len == 0 {
            if h[3] != 0 || h[1] & 2 != 0 {
                return Err(HeaderError::InvalidField {
                    offset: 3,
                    reason: "no data, yet a data offset or digest",
                });
            }
            return Ok(Parsed {
                layout: PduLayout::header_only(header_len),
                header,
            });
        }
        let data_offset = u32::from(h[3]);
        if data_offset < header_len {
            return Err(HeaderError::InvalidField {
                offset: 3,
                reason: "data offset inside the header",
            });
        }
        let dd = h[1] & 2 == 2;
        if dd != self.data_digest {
            return Err(HeaderError::InvalidField {
                offset: 1,
                reason: "data digest flag disagrees with negotiation",
            });
        }
        let layout = PduLayout {
            data_offset,
            data_len,
            data_pad: pad4(data_len as usize) as u32,
            data_digest: dd,
            digest_covers_pad: true,
            placement: (h[0] == 2).then_some(Placement {
                tag: Tag(tag),
                offset: u64::from(offset),
            }),
        };
        Ok(Parsed { layout, header })
    }
}

impl KitProtocol for Toy {
    fn with_digests(header: bool, data: bool) -> Self {
        Self::new(header, data)
    }

    fn encode_data(&self, tag: Tag, offset: u64, data: &[u8]) -> Vec<u8> {
        // Offsets beyond 32 bits cannot be expressed; hostile tests use u32::MAX.
        self.encode(2, tag.0, offset.min(u64::from(u32::MAX)) as u32, data)
    }

    fn encode_control(&self, data: &[u8]) -> Vec<u8> {
        self.encode(1, 0, 0, data)
    }
}
