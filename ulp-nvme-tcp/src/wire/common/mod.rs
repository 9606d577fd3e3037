//! The 8-byte common header (CH) and the layout of a whole PDU.
//!
//! | Off | Size | Field |
//! |---|---|---|
//! | 0 | 1 | PDU-Type |
//! | 1 | 1 | FLAGS |
//! | 2 | 1 | HLEN (CH + PSH, excludes HDGST) |
//! | 3 | 1 | PDO (offset of DATA; 0 when no data) |
//! | 4 | 4 | PLEN (whole PDU, LE) |
//!
//! Identities checked by [`Layout::parse`]:
//! `PLEN = HLEN + hdgst_len + pad_len + data_len + ddgst_len` and, when data is present,
//! `PDO = HLEN + hdgst_len + pad_len`.

use core::ops::Range;

use ulp_ddp_core::digest::crc32c;

use super::{
    DDGSTF, DataKind, DigestKind, Digests, Error, HDGSTF, MAX_TERM_REQ_DATA, Pda, PduType,
    le_fields, view_common,
};

/// Length of the common header.
pub const HEADER_LEN: usize = 8;

/// Length of a digest (HDGST or DDGST).
pub const DIGEST_LEN: usize = 4;

/// A buffer of this size holds the header, header digest and pad of any PDU (PDO is one byte, and
/// ICReq/ICResp are 128 bytes).
pub const MAX_HEADER_SPACE: usize = 256;

mod field {
    pub(super) const PDU_TYPE: usize = 0;
    pub(super) const FLAGS: usize = 1;
    pub(super) const HLEN: usize = 2;
    pub(super) const PDO: usize = 3;
    pub(super) const PLEN: usize = 4;
}

/// A view over the 8-byte common header at the start of `buffer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

view_common!(Packet, HEADER_LEN);

le_fields! { Packet;
    /// PDU-Type byte (see [`PduType`]).
    pdu_type / set_pdu_type: u8 = field::PDU_TYPE;
    /// FLAGS byte.
    flags / set_flags: u8 = field::FLAGS;
    /// HLEN: common plus PDU-specific header length, excluding HDGST.
    hlen / set_hlen: u8 = field::HLEN;
    /// PDO: offset of the data from the start of the PDU, 0 when there is none.
    pdo / set_pdo: u8 = field::PDO;
    /// PLEN: length of the whole PDU.
    plen / set_plen: u32 = field::PLEN;
}

/// Where each part of a PDU lies, computed from the common header and the negotiated digests.
///
/// All offsets are from the first byte of the PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layout {
    /// PDU type.
    pub pdu_type: PduType,
    /// HLEN (header length without HDGST).
    pub hlen: usize,
    /// PDO as on the wire (0 when no data, and for TermReq).
    pub pdo: u8,
    /// Whether HDGST follows the header at offset `hlen`.
    pub hdgst: bool,
    /// Pad bytes between the header digest and the data.
    pub pad: usize,
    /// Offset of the data (for TermReq error data, `hlen`; without data, the end of the header).
    pub data_offset: usize,
    /// Data bytes.
    pub data_len: usize,
    /// Whether DDGST follows the data.
    pub ddgst: bool,
    /// PLEN: the whole PDU length.
    pub plen: usize,
}

impl Layout {
    /// Validates the common header at the start of `bytes` (only the first 8 bytes are read)
    /// against the PDU type's rules and the negotiated `digests`, and computes the layout.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] (fewer than 8 bytes), [`Error::UnknownPduType`], [`Error::BadHlen`],
    /// [`Error::InvalidFlags`], [`Error::DigestFlag`], [`Error::BadPdo`] or [`Error::BadPlen`].
    pub fn parse(bytes: &[u8], digests: Digests) -> Result<Self, Error> {
        let ch = Packet::new_checked(bytes)?;
        let raw_type = ch.pdu_type();
        let pdu_type = PduType::try_from(raw_type)?;
        let hlen = ch.hlen();
        if hlen != pdu_type.hlen() {
            return Err(Error::BadHlen {
                pdu_type: raw_type,
                hlen,
                expected: pdu_type.hlen(),
            });
        }
        let flags = ch.flags();
        if flags & !pdu_type.allowed_flags() != 0 {
            return Err(Error::InvalidFlags {
                pdu_type: raw_type,
                flags,
            });
        }
        let hdgst = flags & HDGSTF != 0;
        if pdu_type.allows_hdgst() && hdgst != digests.header {
            return Err(Error::DigestFlag {
                pdu_type: raw_type,
                which: DigestKind::Header,
                negotiated: digests.header,
            });
        }
        let ddgst = flags & DDGSTF != 0;
        let hlen = usize::from(hlen);
        let header_len = hlen + if hdgst { DIGEST_LEN } else { 0 };
        let pdo = ch.pdo();
        let raw_plen = ch.plen();
        let bad_plen = |min: usize, max: usize| Error::BadPlen {
            pdu_type: raw_type,
            plen: raw_plen,
            min,
            max,
        };
        let bad_pdo = Error::BadPdo {
            pdu_type: raw_type,
            pdo,
            header_len,
        };
        let plen = usize::try_from(raw_plen).map_err(|_| bad_plen(header_len, usize::MAX))?;
        let no_data = |plen: usize| -> Result<Self, Error> {
            if pdo != 0 {
                return Err(bad_pdo);
            }
            if plen != header_len {
                return Err(bad_plen(header_len, header_len));
            }
            Ok(Self {
                pdu_type,
                hlen,
                pdo,
                hdgst,
                pad: 0,
                data_offset: header_len,
                data_len: 0,
                ddgst: false,
                plen,
            })
        };
        match pdu_type.data_kind() {
            DataKind::None => no_data(plen),
            DataKind::TermReq => {
                // Senders put PDO 0 (SPDK leaves it 0); tolerate PDO = HLEN, which names the same
                // data offset.
                if pdo != 0 && usize::from(pdo) != hlen {
                    return Err(bad_pdo);
                }
                let max = hlen + MAX_TERM_REQ_DATA;
                if plen < hlen || plen > max {
                    return Err(bad_plen(hlen, max));
                }
                Ok(Self {
                    pdu_type,
                    hlen,
                    pdo,
                    hdgst: false,
                    pad: 0,
                    data_offset: hlen,
                    data_len: plen - hlen,
                    ddgst: false,
                    plen,
                })
            }
            DataKind::Optional | DataKind::Required if pdo == 0 => {
                if pdu_type.data_kind() == DataKind::Required {
                    return Err(bad_pdo);
                }
                if ddgst {
                    return Err(Error::InvalidFlags {
                        pdu_type: raw_type,
                        flags,
                    });
                }
                no_data(plen)
            }
            DataKind::Optional | DataKind::Required => {
                let data_offset = usize::from(pdo);
                let pad = data_offset.checked_sub(header_len).ok_or(bad_pdo)?;
                if ddgst != digests.data {
                    return Err(Error::DigestFlag {
                        pdu_type: raw_type,
                        which: DigestKind::Data,
                        negotiated: digests.data,
                    });
                }
                let ddgst_len = if ddgst { DIGEST_LEN } else { 0 };
                // At least one data byte: PDO != 0 announces data.
                let min = data_offset + 1 + ddgst_len;
                let data_len = plen
                    .checked_sub(ddgst_len)
                    .and_then(|end| end.checked_sub(data_offset))
                    .filter(|&len| len > 0)
                    .ok_or_else(|| bad_plen(min, u32::MAX as usize))?;
                Ok(Self {
                    pdu_type,
                    hlen,
                    pdo,
                    hdgst,
                    pad,
                    data_offset,
                    data_len,
                    ddgst,
                    plen,
                })
            }
        }
    }

    /// The layout an emitter produces for `pdu_type` with `data_len` data bytes, the negotiated
    /// `digests` and the peer's data alignment `pda` (CPDA for PDUs the host sends, HPDA for PDUs
    /// the controller sends). `PDO = round_up(HLEN + hdgst_len, (pda + 1) * 4)` when data is
    /// present. ICReq, ICResp and TermReq never carry digests whatever `digests` says.
    ///
    /// # Errors
    ///
    /// [`Error::BadDataLen`] if the type cannot carry `data_len` bytes or PLEN would overflow.
    pub fn for_emit(
        pdu_type: PduType,
        digests: Digests,
        pda: Pda,
        data_len: usize,
    ) -> Result<Self, Error> {
        let hlen = usize::from(pdu_type.hlen());
        let bad_len = Error::BadDataLen {
            pdu_type: pdu_type.into(),
            len: data_len,
        };
        let hdgst = pdu_type.allows_hdgst() && digests.header;
        let header_len = hlen + if hdgst { DIGEST_LEN } else { 0 };
        let no_data = Self {
            pdu_type,
            hlen,
            pdo: 0,
            hdgst,
            pad: 0,
            data_offset: header_len,
            data_len: 0,
            ddgst: false,
            plen: header_len,
        };
        match pdu_type.data_kind() {
            DataKind::None if data_len == 0 => Ok(no_data),
            DataKind::None => Err(bad_len),
            DataKind::TermReq if data_len <= MAX_TERM_REQ_DATA => Ok(Self {
                data_offset: hlen,
                data_len,
                plen: hlen + data_len,
                ..no_data
            }),
            DataKind::TermReq => Err(bad_len),
            DataKind::Optional if data_len == 0 => Ok(no_data),
            DataKind::Required if data_len == 0 => Err(bad_len),
            DataKind::Optional | DataKind::Required => {
                let align = pda.alignment();
                let data_offset = header_len.div_ceil(align) * align;
                // header_len <= 76 and align <= 128, so data_offset <= 128 fits PDO's byte.
                let pdo = u8::try_from(data_offset).map_err(|_| bad_len)?;
                let ddgst = digests.data;
                let plen = data_offset
                    .checked_add(data_len)
                    .and_then(|n| n.checked_add(if ddgst { DIGEST_LEN } else { 0 }))
                    .filter(|&n| u32::try_from(n).is_ok())
                    .ok_or(bad_len)?;
                Ok(Self {
                    pdo,
                    pad: data_offset - header_len,
                    data_offset,
                    data_len,
                    ddgst,
                    plen,
                    ..no_data
                })
            }
        }
    }

    /// Header length including HDGST (the bytes `parse` needs).
    pub const fn header_len(&self) -> usize {
        self.hlen
            .saturating_add(if self.hdgst { DIGEST_LEN } else { 0 })
    }

    /// The byte range of HDGST, if present.
    pub const fn hdgst_range(&self) -> Option<Range<usize>> {
        if self.hdgst {
            Some(self.hlen..self.hlen + DIGEST_LEN)
        } else {
            None
        }
    }

    /// The byte range of the data (empty when there is none).
    pub const fn data_range(&self) -> Range<usize> {
        self.data_offset..self.data_offset.saturating_add(self.data_len)
    }

    /// The byte range of DDGST, if present.
    pub const fn ddgst_range(&self) -> Option<Range<usize>> {
        if self.ddgst {
            let end = self.data_offset.saturating_add(self.data_len);
            Some(end..end.saturating_add(DIGEST_LEN))
        } else {
            None
        }
    }

    /// Checks that the data offset is aligned to `pda` (a receiver's HPDA, or a controller's
    /// CPDA). PDUs without data (and TermReq) always pass.
    ///
    /// # Errors
    ///
    /// [`Error::MisalignedPdo`].
    pub const fn check_alignment(&self, pda: Pda) -> Result<(), Error> {
        let alignment = pda.alignment();
        if self.pdo != 0 && self.data_len != 0 && !self.data_offset.is_multiple_of(alignment) {
            Err(Error::MisalignedPdo {
                pdo: self.pdo,
                alignment,
            })
        } else {
            Ok(())
        }
    }

    /// The data bytes of `pdu`, the PDU this layout was parsed from.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if `pdu` does not reach the end of the data.
    pub fn data<'a>(&self, pdu: &'a [u8]) -> Result<&'a [u8], Error> {
        let range = self.data_range();
        let have = pdu.len();
        pdu.get(range.clone()).ok_or(Error::Truncated {
            need: range.end,
            have,
        })
    }

    /// The received data digest of `pdu`, if the PDU carries one.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if `pdu` does not hold the whole PDU.
    pub fn received_ddgst(&self, pdu: &[u8]) -> Result<Option<u32>, Error> {
        let Some(range) = self.ddgst_range() else {
            return Ok(None);
        };
        let have = pdu.len();
        let bytes = pdu.get(range.clone()).ok_or(Error::Truncated {
            need: range.end,
            have,
        })?;
        Ok(Some(u32::from_le_bytes(super::read_array(bytes, 0))))
    }

    /// Verifies the data digest of `pdu` (CRC32C over the data only, not the pad). Passes when the
    /// PDU carries no data digest.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] or [`Error::DataDigestMismatch`].
    pub fn verify_data_digest(&self, pdu: &[u8]) -> Result<(), Error> {
        let Some(received) = self.received_ddgst(pdu)? else {
            return Ok(());
        };
        let expected = crc32c(self.data(pdu)?);
        if expected == received {
            Ok(())
        } else {
            Err(Error::DataDigestMismatch { expected, received })
        }
    }
}

/// The full PDU length (PLEN) from the common header at the start of `bytes`, for framing a
/// stream: read 8 bytes, call this, then read the rest. Checks the PDU type, HLEN and that PLEN
/// covers HLEN; the full checks happen in [`Layout::parse`]. Callers should also bound the
/// result by their receive limits before buffering.
///
/// # Errors
///
/// [`Error::Truncated`], [`Error::UnknownPduType`], [`Error::BadHlen`] or [`Error::BadPlen`].
///
/// # Examples
///
/// ```
/// // CapsuleResp, HLEN 24, PLEN 24.
/// let ch = [0x05, 0x00, 24, 0, 24, 0, 0, 0];
/// assert_eq!(ulp_nvme_tcp::wire::pdu_len(&ch), Ok(24));
/// ```
pub fn pdu_len(bytes: &[u8]) -> Result<usize, Error> {
    let ch = Packet::new_checked(bytes)?;
    let raw_type = ch.pdu_type();
    let pdu_type = PduType::try_from(raw_type)?;
    let hlen = ch.hlen();
    if hlen != pdu_type.hlen() {
        return Err(Error::BadHlen {
            pdu_type: raw_type,
            hlen,
            expected: pdu_type.hlen(),
        });
    }
    let plen = ch.plen();
    let min = usize::from(hlen);
    match usize::try_from(plen) {
        Ok(n) if n >= min => Ok(n),
        _ => Err(Error::BadPlen {
            pdu_type: raw_type,
            plen,
            min,
            max: u32::MAX as usize,
        }),
    }
}

/// The full header length including HDGST, from the common header at the start of `bytes` and
/// the negotiated digests: how many bytes to read before calling a `Repr::parse`.
///
/// # Errors
///
/// As [`Layout::parse`].
pub fn header_len(bytes: &[u8], digests: Digests) -> Result<usize, Error> {
    Layout::parse(bytes, digests).map(|l| l.header_len())
}

/// The data digest of `data` as sent on the wire (CRC32C, least-significant byte first).
pub fn data_digest(data: &[u8]) -> [u8; 4] {
    crc32c(data).to_le_bytes()
}

/// The DATAL/DATAO rules shared by C2HData and H2CData: DATAL equals the data the PDU carries
/// (`data_len`), and DATAO + DATAL does not overflow.
pub(crate) fn check_data_range(datao: u32, datal: u32, data_len: usize) -> Result<(), Error> {
    if usize::try_from(datal).ok() != Some(data_len) {
        return Err(Error::DatalMismatch { datal, data_len });
    }
    if datao.checked_add(datal).is_none() {
        return Err(Error::DataRangeOverflow {
            offset: datao,
            len: datal,
        });
    }
    Ok(())
}

/// Parses the layout of a PDU of the expected type and verifies its header digest; `bytes` must
/// hold at least the header and HDGST.
pub(crate) fn parse_header(
    bytes: &[u8],
    digests: Digests,
    expected: PduType,
) -> Result<Layout, Error> {
    if let Some(&found) = bytes.first()
        && found != u8::from(expected)
        && PduType::try_from(found).is_ok()
    {
        return Err(Error::UnexpectedPduType {
            expected: expected.into(),
            found,
        });
    }
    let layout = Layout::parse(bytes, digests)?;
    let need = layout.header_len();
    let header = bytes.get(..need).ok_or(Error::Truncated {
        need,
        have: bytes.len(),
    })?;
    if layout.hdgst {
        let (h, d) = header.split_at(layout.hlen);
        let expected = crc32c(h);
        let received = u32::from_le_bytes(super::read_array(d, 0));
        if expected != received {
            return Err(Error::HeaderDigestMismatch { expected, received });
        }
    }
    Ok(layout)
}

/// What [`emit_header`](crate::wire::C2hDataRepr::emit_header) wrote: send `buf[..header_len]`,
/// then the payload, then `ddgst` if present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emitted {
    /// Bytes written: header, HDGST and pad (everything before the data).
    pub header_len: usize,
    /// The data digest to send right after the payload, if data digests apply.
    pub ddgst: Option<[u8; 4]>,
    /// The layout of the PDU.
    pub layout: Layout,
}

/// Writes the common header, the PSH (through `fill_psh`, which gets the `HLEN` header bytes with
/// the common header already written and the rest zeroed),
/// HDGST and zero pad into `buf`, and computes the data digest over `data`.
pub(crate) fn emit_header(
    buf: &mut [u8],
    pdu_type: PduType,
    flags: u8,
    digests: Digests,
    pda: Pda,
    data: &[u8],
    fill_psh: impl FnOnce(&mut [u8]),
) -> Result<Emitted, Error> {
    emit_header_parts(buf, pdu_type, flags, digests, pda, &[data], fill_psh)
}

/// [`emit_header`] for data given in pieces (a scatter-gather write buffer): the data length
/// and digest cover every piece, in order.
pub(crate) fn emit_header_parts(
    buf: &mut [u8],
    pdu_type: PduType,
    flags: u8,
    digests: Digests,
    pda: Pda,
    parts: &[&[u8]],
    fill_psh: impl FnOnce(&mut [u8]),
) -> Result<Emitted, Error> {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut e = emit_header_sized(buf, pdu_type, flags, digests, pda, len, fill_psh)?;
    e.ddgst = e
        .layout
        .ddgst
        .then(|| ulp_ddp_core::digest::parts_digest(parts.iter().copied()));
    Ok(e)
}

/// [`emit_header`] for a PDU of `data_len` data bytes, without the data: the returned
/// [`Emitted`] carries no data digest.
pub(crate) fn emit_header_sized(
    buf: &mut [u8],
    pdu_type: PduType,
    flags: u8,
    digests: Digests,
    pda: Pda,
    data_len: usize,
    fill_psh: impl FnOnce(&mut [u8]),
) -> Result<Emitted, Error> {
    let layout = Layout::for_emit(pdu_type, digests, pda, data_len)?;
    let header_len = if layout.data_len == 0 {
        layout.header_len()
    } else {
        layout.data_offset
    };
    let out = ulp_ddp_core::transmit::header_space(buf, header_len)?;
    let mut flags = flags & !(HDGSTF | DDGSTF);
    if layout.hdgst {
        flags |= HDGSTF;
    }
    if layout.ddgst {
        flags |= DDGSTF;
    }
    let plen = u32::try_from(layout.plen).map_err(|_| Error::BadDataLen {
        pdu_type: pdu_type.into(),
        len: data_len,
    })?;
    let (header, rest) = out.split_at_mut(layout.hlen);
    {
        let mut ch = Packet::new_unchecked(&mut *header);
        ch.set_pdu_type(pdu_type.into());
        ch.set_flags(flags);
        ch.set_hlen(pdu_type.hlen());
        ch.set_pdo(layout.pdo);
        ch.set_plen(plen);
    }
    fill_psh(&mut *header);
    if layout.hdgst {
        rest[..DIGEST_LEN].copy_from_slice(&crc32c(header).to_le_bytes());
    }
    Ok(Emitted {
        header_len,
        ddgst: None,
        layout,
    })
}

/// [`emit_header`] into a fresh stack buffer, then appends header, data and DDGST to `out`.
pub(crate) fn emit_vec(
    out: &mut Vec<u8>,
    pdu_type: PduType,
    flags: u8,
    digests: Digests,
    pda: Pda,
    data: &[u8],
    fill_psh: impl FnOnce(&mut [u8]),
) -> Result<Layout, Error> {
    let mut buf = [0u8; MAX_HEADER_SPACE];
    let e = emit_header(&mut buf, pdu_type, flags, digests, pda, data, fill_psh)?;
    out.reserve(e.layout.plen);
    out.extend_from_slice(&buf[..e.header_len]);
    out.extend_from_slice(data);
    if let Some(d) = e.ddgst {
        out.extend_from_slice(&d);
    }
    Ok(e.layout)
}

#[cfg(test)]
mod tests;
