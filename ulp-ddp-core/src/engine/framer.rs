//! Framing the stream: header, then gap, data, pad and data digest of each PDU, in pieces cut
//! anywhere; each header framed, digest-checked and parsed once.

use crate::backend::DdpBackend;
use crate::buffer::SgBuffer;
use crate::digest::Crc32c;
use crate::error::Error;
use crate::protocol::{HeaderFrame, Parsed, PduLayout, Protocol};
use crate::types::{Tag, TcpSeq};

use super::event::{DigestStatus, Event};
use super::{Engine, HeaderBytes};

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum Stage {
    Header,
    Gap,
    Data,
    Pad,
    Digest,
}

#[derive(Debug)]
pub(super) enum Sink {
    /// Data goes to a registered buffer.
    Place { tag: Tag, offloaded: bool },
    /// Data is buffered for a control event.
    Control(Vec<u8>),
    /// Data is discarded (the error was reported when the header arrived).
    Discard,
}

/// The PDU being received, once its header is parsed.
#[derive(Debug)]
pub(super) struct Pdu<H> {
    pub(super) layout: PduLayout,
    /// The typed header, handed on in the PDU's event.
    header: Option<H>,
    seq: TcpSeq,
    pub(super) sink: Sink,
    /// Data bytes of this PDU received so far.
    data_done: u32,
    /// The framer's running digest covers all data (and pad) so far.
    crc_complete: bool,
    /// Every byte of data, pad and digest so far came with the backend's "digest ok".
    all_ok: bool,
    pad: [u8; 4],
    pad_done: u8,
    digest: [u8; 4],
    digest_done: u8,
}

impl<H> Pdu<H> {
    /// Command offset of the PDU's next data byte.
    pub(super) fn offset(&self) -> u64 {
        self.layout.placement.map_or(0, |p| p.offset) + u64::from(self.data_done)
    }

    /// Makes the running digest `crc` cover all data received so far, recomputing it from the
    /// buffer when earlier bytes were skipped because the backend had vouched for them (the
    /// fallback the kernel also takes: a second pass, only when the device's verdict turns out
    /// incomplete).
    #[inline]
    fn ensure_crc(&mut self, crc: &mut Crc32c, buffer: &SgBuffer) {
        if !self.crc_complete {
            self.recompute_crc(crc, buffer);
        }
    }

    #[cold]
    fn recompute_crc(&mut self, crc: &mut Crc32c, buffer: &SgBuffer) {
        crc.reset();
        let start = self.layout.placement.map_or(0, |p| p.offset);
        let _ = buffer.read_with(start, u64::from(self.data_done), |p| crc.update(p));
        if self.layout.digest_covers_pad {
            let pad = (self.pad_done as usize).min(4);
            crc.update(&self.pad[..pad]);
        }
        self.crc_complete = true;
    }
}

/// Where the stream stands between and within PDUs.
#[derive(Debug)]
pub(super) struct Framer<H> {
    pub(super) stage: Stage,
    /// The current header's bytes, when it arrives split across pieces.
    pub(super) header: HeaderBytes,
    /// What the current header's prefix said, once it was framed.
    pub(super) frame: Option<HeaderFrame>,
    pub(super) pdu: Option<Pdu<H>>,
    /// Bytes left in the current stage (gap, data, pad).
    pub(super) stage_left: u32,
    /// Stream bytes consumed since the queue's first.
    pub(super) stream_pos: u64,
    /// Whether the current PDU's first byte was seen.
    started: bool,
    /// The running data digest of the PDU being received (one state, reset per PDU: a digest
    /// state is hundreds of bytes, not worth building and moving for every PDU).
    pub(super) crc: Crc32c,
}

impl<H> Default for Framer<H> {
    fn default() -> Self {
        Self {
            stage: Stage::Header,
            header: HeaderBytes::new(),
            frame: None,
            pdu: None,
            stage_left: 0,
            stream_pos: 0,
            started: false,
            crc: Crc32c::new(),
        }
    }
}

impl<H> Framer<H> {
    /// Whether a PDU is partly received (the stream is not at a PDU boundary).
    pub(super) fn is_mid_pdu(&self) -> bool {
        self.stage != Stage::Header || self.started
    }

    /// The command and buffer offset the next stream byte belongs to, when it is payload of a
    /// registered command.
    pub(super) fn at_payload(&self) -> Option<(Tag, u64)> {
        match &self.pdu {
            Some(
                pdu @ Pdu {
                    sink: Sink::Place { tag, .. },
                    ..
                },
            ) if self.stage == Stage::Data && self.stage_left > 0 => Some((*tag, pdu.offset())),
            _ => None,
        }
    }
}

impl<P: Protocol, B: DdpBackend> Engine<P, B> {
    pub(super) fn receive_bytes(
        &mut self,
        mut data: &[u8],
        digest_ok: bool,
    ) -> Result<(), Error<P::Error>> {
        while !data.is_empty() {
            let n = match self.framer.stage {
                Stage::Header => self.take_header(data, digest_ok)?,
                Stage::Gap => {
                    let n = data.len().min(self.framer.stage_left as usize);
                    self.framer.stage_left -= n as u32;
                    n
                }
                Stage::Data => self.take_data(data, digest_ok),
                Stage::Pad => self.take_pad(data, digest_ok),
                Stage::Digest => self.take_digest(data, digest_ok),
            };
            data = &data[n..];
            self.framer.stream_pos += n as u64;
            self.advance();
        }
        Ok(())
    }

    /// `at` is where a device says it placed the bytes; `None` for the reader path, where the
    /// engine itself chose the destination.
    pub(super) fn receive_placed(
        &mut self,
        mut len: u32,
        digest_ok: bool,
        mut at: Option<(Tag, u64)>,
    ) -> Result<(), Error<P::Error>> {
        while len > 0 {
            if self.framer.stage != Stage::Data {
                return Err(Error::BackendViolation("placed bytes outside PDU data"));
            }
            let n = len.min(self.framer.stage_left);
            self.take_placed(n, digest_ok, at)?;
            if let Some((_, offset)) = &mut at {
                *offset = offset.wrapping_add(u64::from(n));
            }
            len -= n;
            self.framer.stream_pos += u64::from(n);
            self.advance();
        }
        Ok(())
    }

    /// Takes header bytes. A header that lies whole in `data` is framed, checked and parsed
    /// where it is; one split across pieces is collected first.
    fn take_header(&mut self, data: &[u8], digest_ok: bool) -> Result<usize, Error<P::Error>> {
        if !self.framer.started {
            self.framer.started = true;
            self.on_pdu_start();
        }
        let prefix = self.protocol.prefix_len();
        if self.framer.header.is_empty() && data.len() >= prefix {
            let frame = self.frame(&data[..prefix])?;
            if data.len() >= frame.len {
                self.on_header(&data[..frame.len], frame)?;
                let rest = self.take_whole_rest(&data[frame.len..], digest_ok);
                return Ok(frame.len + rest);
            }
        }
        let need = self.framer.frame.map_or(prefix, |f| f.len);
        let n = data.len().min(need - self.framer.header.len());
        self.framer.header.extend_from_slice(&data[..n]);
        if self.framer.header.len() < need {
            return Ok(n);
        }
        let header = core::mem::take(&mut self.framer.header);
        let result = match self.frame(&header[..prefix]) {
            Ok(frame) if frame.len > header.len() => {
                // The prefix is in; the rest of the header follows.
                self.framer.header = header;
                return Ok(n);
            }
            Ok(frame) => self.on_header(&header[..frame.len], frame),
            Err(e) => Err(e),
        };
        self.framer.header = header;
        self.framer.header.clear();
        result.map(|()| n)
    }

    /// Just after a header taken whole from a piece: when the rest of the PDU (gap, data, pad,
    /// digest) lies in `rest` too, takes it in one go and finishes the PDU, without going
    /// through the stages one call at a time (the common case for small PDUs arriving in large
    /// pieces). Returns the bytes taken: all of the PDU's rest, or none.
    fn take_whole_rest(&mut self, rest: &[u8], digest_ok: bool) -> usize {
        let Some(pdu) = &self.framer.pdu else {
            return 0;
        };
        let l = pdu.layout;
        let digest = if l.data_digest { 4 } else { 0 };
        // In u64: a hostile length must not wrap a 32-bit usize.
        let need = u64::from(self.framer.stage_left)
            + u64::from(l.data_len)
            + u64::from(l.data_pad)
            + digest;
        if (rest.len() as u64) < need {
            return 0;
        }
        // All of it lies in `rest`, so each part fits a usize.
        let gap = self.framer.stage_left as usize;
        let (data, pad, digest) = (l.data_len as usize, l.data_pad as usize, digest as usize);
        let mut at = gap;
        self.framer.stage = Stage::Data;
        self.framer.stage_left = l.data_len;
        if data > 0 {
            at += self.take_data(&rest[at..at + data], digest_ok);
        }
        if pad > 0 {
            self.framer.stage = Stage::Pad;
            self.framer.stage_left = l.data_pad;
            at += self.take_pad(&rest[at..at + pad], digest_ok);
        }
        if digest > 0 {
            self.framer.stage = Stage::Digest;
            self.framer.stage_left = 0;
            at += self.take_digest(&rest[at..at + digest], digest_ok);
        }
        self.finish_pdu();
        at
    }

    /// Frames a header from its prefix, once per PDU, and checks the length it claims.
    fn frame(&mut self, prefix: &[u8]) -> Result<HeaderFrame, Error<P::Error>> {
        if let Some(frame) = self.framer.frame {
            return Ok(frame);
        }
        let frame = self.protocol.frame(prefix).map_err(Error::Protocol)?;
        let max = self.protocol.max_header_len();
        if frame.len > max {
            return Err(Error::HeaderTooLong {
                len: frame.len,
                max,
            });
        }
        let min = prefix.len() + if frame.digest { 4 } else { 0 };
        if frame.len < min {
            return Err(Error::HeaderTooShort {
                len: frame.len,
                min,
            });
        }
        self.framer.frame = Some(frame);
        Ok(frame)
    }

    /// A whole header is in: verify its digest, parse it, decide where its data goes.
    fn on_header(&mut self, header: &[u8], frame: HeaderFrame) -> Result<(), Error<P::Error>> {
        self.framer.frame = None;
        let body = if frame.digest {
            let (body, digest) = header.split_at(header.len() - 4);
            let computed = crate::digest::crc32c(body);
            self.stats.digests_computed += 1;
            let received = crate::digest::from_wire([digest[0], digest[1], digest[2], digest[3]]);
            if computed != received {
                self.stats.digests_failed += 1;
                return Err(Error::HeaderDigest { computed, received });
            }
            body
        } else {
            header
        };
        let Parsed { layout, header } = self.protocol.parse(body).map_err(Error::Protocol)?;
        layout.total_len(frame.len).map_err(Error::BadLayout)?;
        self.stats.pdus += 1;
        let sink = match layout.placement {
            Some(placement) => match self.tags.admit(placement, layout.data_len) {
                Ok(offloaded) => Sink::Place {
                    tag: placement.tag,
                    offloaded,
                },
                Err(error) => {
                    self.stats.errors += 1;
                    self.events.push_back(Event::Error(error));
                    Sink::Discard
                }
            },
            None if layout.data_len > self.options.max_control_data => {
                return Err(Error::ControlTooLarge {
                    len: layout.data_len,
                    max: self.options.max_control_data,
                });
            }
            None => Sink::Control(Vec::with_capacity(layout.data_len as usize)),
        };
        self.framer.crc.reset();
        self.framer.pdu = Some(Pdu {
            layout,
            header: Some(header),
            seq: self.pdu_start,
            sink,
            data_done: 0,
            crc_complete: true,
            all_ok: true,
            pad: [0; 4],
            pad_done: 0,
            digest: [0; 4],
            digest_done: 0,
        });
        self.framer.stage = Stage::Gap;
        // total_len checked that the data starts after the header.
        self.framer.stage_left = layout.data_offset - frame.len as u32;
        Ok(())
    }

    /// Moves to the next stage when the current one is done; finishes the PDU at its end.
    fn advance(&mut self) {
        loop {
            let Some(pdu) = &self.framer.pdu else { return };
            let layout = pdu.layout;
            let done = match self.framer.stage {
                Stage::Header => return,
                Stage::Gap | Stage::Data | Stage::Pad => self.framer.stage_left == 0,
                Stage::Digest => pdu.digest_done == 4,
            };
            if !done {
                return;
            }
            let (next, left) = match self.framer.stage {
                Stage::Gap => (Stage::Data, layout.data_len),
                Stage::Data => (Stage::Pad, layout.data_pad),
                Stage::Pad if layout.data_digest => (Stage::Digest, 4),
                _ => {
                    self.finish_pdu();
                    return;
                }
            };
            self.framer.stage = next;
            self.framer.stage_left = left;
        }
    }

    fn take_data(&mut self, data: &[u8], digest_ok: bool) -> usize {
        let n = data.len().min(self.framer.stage_left as usize);
        let src = &data[..n];
        self.framer.stage_left -= n as u32;
        let Framer { pdu, crc, .. } = &mut self.framer;
        let Some(pdu) = pdu.as_mut() else {
            return n;
        };
        let digest = pdu.layout.data_digest;
        if digest {
            pdu.all_ok &= digest_ok;
        }
        match &mut pdu.sink {
            Sink::Place { tag, .. } => {
                let (tag, at) = (*tag, pdu.offset());
                if let Some(entry) = self.tags.get_mut(tag) {
                    if digest && !pdu.all_ok {
                        pdu.ensure_crc(crc, &entry.buffer);
                        // The range was checked against the buffer when the header arrived.
                        let _ = entry
                            .buffer
                            .write_with(at, src, |d, s| B::copy_with_crc(d, s, Some(crc)));
                    } else {
                        pdu.crc_complete &= !digest;
                        let _ = entry
                            .buffer
                            .write_with(at, src, |d, s| B::copy_with_crc(d, s, None));
                    }
                    self.stats.bytes_copied += n as u64;
                }
            }
            Sink::Control(buf) => {
                buf.extend_from_slice(src);
                if digest {
                    crc.update(src);
                }
            }
            Sink::Discard => {}
        }
        pdu.data_done += n as u32;
        n
    }

    fn take_placed(
        &mut self,
        n: u32,
        digest_ok: bool,
        at: Option<(Tag, u64)>,
    ) -> Result<(), Error<P::Error>> {
        let read = at.is_none();
        self.framer.stage_left -= n;
        let Framer { pdu, crc, .. } = &mut self.framer;
        let Some(pdu) = pdu.as_mut() else {
            return Err(Error::BackendViolation("placed bytes outside a PDU"));
        };
        if let (Some(at), Sink::Place { tag, .. }) = (at, &pdu.sink)
            && at != (*tag, pdu.offset())
        {
            return Err(Error::BackendViolation(
                "placed bytes elsewhere than the stream puts them",
            ));
        }
        let digest = pdu.layout.data_digest;
        if digest {
            pdu.all_ok &= digest_ok;
        }
        match pdu.sink {
            Sink::Place { tag, offloaded } => {
                if !offloaded && !read {
                    return Err(Error::BackendViolation(
                        "placed bytes for an unmapped command",
                    ));
                }
                let at = pdu.offset();
                if let Some(entry) = self.tags.get(tag) {
                    if digest && !pdu.all_ok {
                        pdu.ensure_crc(crc, &entry.buffer);
                        let _ = entry.buffer.read_with(at, u64::from(n), |p| crc.update(p));
                    } else {
                        pdu.crc_complete &= !digest;
                    }
                }
                if read {
                    self.stats.bytes_read_in_place += u64::from(n);
                } else {
                    self.stats.bytes_placed += u64::from(n);
                }
            }
            // A device may still place for a command whose teardown is in flight; the bytes
            // landed in a buffer the engine still owns and are ignored.
            Sink::Discard => {}
            Sink::Control(_) => {
                return Err(Error::BackendViolation("placed bytes of a control PDU"));
            }
        }
        pdu.data_done += n;
        Ok(())
    }

    fn take_pad(&mut self, data: &[u8], digest_ok: bool) -> usize {
        let n = data.len().min(self.framer.stage_left as usize);
        self.framer.stage_left -= n as u32;
        let Framer { pdu, crc, .. } = &mut self.framer;
        if let Some(pdu) = pdu.as_mut() {
            let digest = pdu.layout.data_digest
                && pdu.layout.digest_covers_pad
                && !matches!(pdu.sink, Sink::Discard);
            for &b in &data[..n] {
                if let Some(slot) = pdu.pad.get_mut(pdu.pad_done as usize) {
                    *slot = b;
                }
                pdu.pad_done = pdu.pad_done.saturating_add(1);
            }
            if digest {
                pdu.all_ok &= digest_ok;
                if pdu.crc_complete {
                    crc.update(&data[..n]);
                }
            }
        }
        n
    }

    fn take_digest(&mut self, data: &[u8], digest_ok: bool) -> usize {
        let Some(pdu) = self.framer.pdu.as_mut() else {
            return data.len();
        };
        let n = data.len().min(4 - pdu.digest_done as usize);
        let start = pdu.digest_done as usize;
        pdu.digest[start..start + n].copy_from_slice(&data[..n]);
        pdu.digest_done += n as u8;
        pdu.all_ok &= digest_ok;
        n
    }

    fn finish_pdu(&mut self) {
        let Some(mut pdu) = self.framer.pdu.take() else {
            return;
        };
        self.framer.stage = Stage::Header;
        self.framer.stage_left = 0;
        self.framer.started = false;
        if matches!(pdu.sink, Sink::Discard) {
            // Refused data (reported when its header arrived): none of it was digested, so it
            // has no verdict and counts in no digest statistic.
            return;
        }
        let verdict = if !pdu.layout.data_digest {
            DigestStatus::Absent
        } else if pdu.all_ok {
            self.stats.digests_offloaded += 1;
            DigestStatus::Offloaded
        } else {
            if let Sink::Place { tag, .. } = pdu.sink
                && let Some(entry) = self.tags.get(tag)
            {
                pdu.ensure_crc(&mut self.framer.crc, &entry.buffer);
            }
            self.stats.digests_computed += 1;
            let received = crate::digest::from_wire(pdu.digest);
            let computed = self.framer.crc.value();
            if computed == received {
                DigestStatus::Computed
            } else {
                self.stats.digests_failed += 1;
                DigestStatus::Mismatch { computed, received }
            }
        };
        let Some(header) = pdu.header.take() else {
            return;
        };
        let event = match pdu.sink {
            Sink::Place { tag, .. } => {
                self.stats.data_pdus += 1;
                Event::Data {
                    header,
                    tag,
                    // Place sinks always come from a layout with a placement.
                    offset: pdu.layout.placement.map_or(0, |p| p.offset),
                    len: pdu.layout.data_len,
                    digest: verdict,
                }
            }
            Sink::Control(data) => Event::Control {
                header,
                data,
                digest: verdict,
                seq: pdu.seq,
            },
            Sink::Discard => return,
        };
        self.events.push_back(event);
    }

    /// Bytes from here up to the next payload that could be read in place: the rest of the
    /// current PDU when none of it can, plus the next PDU's typical header (reading a little
    /// too far only costs a small copy; reading too little costs a system call).
    pub(super) fn bytes_to_next_payload(&self) -> usize {
        let next_header = self
            .protocol
            .typical_header_len()
            .max(self.protocol.prefix_len());
        let f = &self.framer;
        let Some(pdu) = &f.pdu else {
            // In a header: the rest of what is needed now, or the typical header if longer.
            let need = f
                .frame
                .map_or_else(|| self.protocol.prefix_len(), |fr| fr.len)
                - f.header.len();
            return if f.header.is_empty() {
                need.max(next_header)
            } else {
                need
            };
        };
        // After a command's last data (its buffer is whole once this PDU's data is in): the
        // header-only PDUs the plugin expects (its response), then the next header. Asked
        // here, once per read on the reader path, rather than per PDU.
        let expected = self.protocol.expected_after();
        let next_header = match pdu.sink {
            Sink::Place { tag, .. } if expected > 0 && self.tags.is_whole(tag) => {
                next_header + expected
            }
            _ => next_header,
        };
        let l = pdu.layout;
        let digest = if l.data_digest { 4 } else { 0 };
        let placeable = matches!(pdu.sink, Sink::Place { .. }) && l.data_len > 0;
        let rest_after_data = (l.data_pad + digest) as usize;
        match f.stage {
            Stage::Header => 0,
            Stage::Gap if placeable => f.stage_left as usize,
            // Saturating: a hostile data length must not wrap a 32-bit usize (a read is capped
            // by the receive buffer anyway).
            Stage::Gap => (f.stage_left as usize)
                .saturating_add(l.data_len as usize)
                .saturating_add(rest_after_data)
                .saturating_add(next_header),
            Stage::Data => f.stage_left as usize + rest_after_data + next_header,
            Stage::Pad => f.stage_left as usize + digest as usize + next_header,
            Stage::Digest => (4 - pdu.digest_done as usize) + next_header,
        }
    }

    /// Payload bytes the PDU being received may still bring into a registered buffer: all of
    /// its data while the data is still to come or coming, else 0.
    pub(super) fn current_payload(&self) -> u64 {
        match &self.framer.pdu {
            Some(pdu) if matches!(pdu.sink, Sink::Place { .. }) => match self.framer.stage {
                Stage::Header | Stage::Gap | Stage::Data => u64::from(pdu.layout.data_len),
                Stage::Pad | Stage::Digest => 0,
            },
            _ => 0,
        }
    }

    /// Makes the PDU in flight for `tag` (if any) discard the rest of its data.
    pub(super) fn discard_in_flight(&mut self, tag: Tag) {
        if let Some(pdu) = &mut self.framer.pdu
            && matches!(pdu.sink, Sink::Place { tag: t, .. } if t == tag)
        {
            pdu.sink = Sink::Discard;
        }
    }
}
