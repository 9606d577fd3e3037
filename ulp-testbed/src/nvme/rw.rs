//! I/O commands on a connection: Read (C2HData straight from the namespace's chunks) and Write
//! (in-capsule, or solicited by R2T and received in H2CData PDUs).

use std::sync::Arc;

use ulp_nvme_tcp::nvme::{self, Status};
use ulp_nvme_tcp::wire::capsule_cmd::SGL_ID_TRANSPORT_DATA_BLOCK;
use ulp_nvme_tcp::wire::{C2hDataRepr, H2cDataRepr, Layout, MAX_HEADER_SPACE, R2tRepr};

use super::conn::{Conn, Fatal};
use super::lock;
use super::namespace::Piece;
use super::writer::Out;

pub(super) struct WriteXfer {
    cqe_cid: u16,
    offset: usize,
    data: Vec<u8>,
    received: u32,
    r2t_end: u32,
    ttag: u16,
}

impl Conn<'_> {
    /// Sends `pieces` (the read's data, in order) as C2HData PDUs of at most `max_c2h` bytes,
    /// each within one piece, then the CapsuleResp (unless the SUCCESS flag completes it).
    pub(super) fn send_read(&mut self, cid: u16, pieces: Vec<Piece>) {
        let cfg = &self.shared.config;
        let max = cfg.max_c2h.max(1) as usize;
        let success = cfg.success_flag;
        let total: usize = pieces.iter().map(|p| p.range.len()).sum();
        let mut off = 0;
        for piece in pieces {
            let mut at = piece.range.start;
            while at < piece.range.end {
                let len = (piece.range.end - at).min(max);
                let last = off + len == total;
                let repr = C2hDataRepr {
                    cccid: cid,
                    datao: off as u32,
                    datal: len as u32,
                    last_pdu: last,
                    success: last && success,
                };
                let mut header = [0u8; MAX_HEADER_SPACE];
                if let Ok(e) = repr.emit_header(
                    &mut header,
                    self.digests,
                    self.hpda,
                    &piece.data[at..at + len],
                ) {
                    self.send_out(Out::Data {
                        header: header[..e.header_len].to_vec(),
                        payload: Piece {
                            data: Arc::clone(&piece.data),
                            range: at..at + len,
                        },
                        ddgst: e.ddgst,
                    });
                }
                at += len;
                off += len;
            }
        }
        if !success || total == 0 {
            self.respond(cid, Status::SUCCESS, 0);
        } else {
            self.advance_sqhd();
        }
    }

    pub(super) fn rw(&mut self, cid: u16, sqe: &[u8; 64], data: &[u8]) -> Result<(), Fatal> {
        let s = ulp_nvme_tcp::wire::Sqe::new_unchecked(&sqe[..]);
        let cfg = &self.shared.config;
        let bs = cfg.block_len as usize;
        let slba = u64::from(s.cdw10()) | (u64::from(s.cdw11()) << 32);
        let blocks = (s.cdw12() & 0xFFFF) as usize + 1;
        let len = blocks * bs;
        let sgl = s.dptr();
        if sgl.length as usize != len {
            return Err(Fatal(format!(
                "cid {cid}: SGL length {} for {len} bytes",
                sgl.length
            )));
        }
        if s.nsid() != 1 {
            self.respond(cid, Status::generic(nvme::SC_INVALID_NS), 0);
            return Ok(());
        }
        let offset = usize::try_from(slba)
            .unwrap_or(usize::MAX)
            .saturating_mul(bs);
        if offset
            .checked_add(len)
            .is_none_or(|end| end as u64 > cfg.size)
        {
            self.respond(cid, Status::generic(nvme::SC_LBA_OUT_OF_RANGE), 0);
            return Ok(());
        }
        if s.opcode() == nvme::OPC_READ {
            if sgl.id != SGL_ID_TRANSPORT_DATA_BLOCK {
                return Err(Fatal(format!("cid {cid}: read with SGL id {:#x}", sgl.id)));
            }
            if self.hold_read(cid) {
                return Ok(());
            }
            let pieces = lock(&self.shared.ns).pieces(offset, len);
            self.send_read(cid, pieces);
            return Ok(());
        }
        if !data.is_empty() {
            lock(&self.shared.ns).write(offset, data);
            self.respond(cid, Status::SUCCESS, 0);
            return Ok(());
        }
        let ttag = self.next_ttag;
        self.next_ttag = self.next_ttag.wrapping_add(1).max(1);
        let x = WriteXfer {
            cqe_cid: cid,
            offset,
            data: vec![0; len],
            received: 0,
            r2t_end: 0,
            ttag,
        };
        self.writes.insert(cid, x);
        self.next_r2t(cid);
        Ok(())
    }

    fn next_r2t(&mut self, cid: u16) {
        let max = self.shared.config.max_r2t.max(4096);
        let digests = self.digests;
        let Some(x) = self.writes.get_mut(&cid) else {
            return;
        };
        let total = x.data.len() as u32;
        let r2tl = (total - x.received).min(max);
        x.r2t_end = x.received + r2tl;
        let repr = R2tRepr {
            cccid: cid,
            ttag: x.ttag,
            r2to: x.received,
            r2tl,
        };
        let mut out = Vec::new();
        if repr.emit(&mut out, digests).is_ok() {
            self.send(out);
        }
    }

    pub(super) fn h2c(&mut self, layout: &Layout, pdu: &[u8]) -> Result<(), Fatal> {
        let (r, _) =
            H2cDataRepr::parse(pdu, self.digests).map_err(|e| Fatal(format!("H2CData: {e}")))?;
        let data = layout
            .data(pdu)
            .map_err(|e| Fatal(format!("H2CData: {e}")))?;
        let maxh2c = self.shared.config.maxh2cdata;
        let Some(x) = self.writes.get_mut(&r.cccid) else {
            return Err(Fatal(format!("H2CData for cid {} without R2T", r.cccid)));
        };
        if r.ttag != x.ttag {
            return Err(Fatal(format!(
                "H2CData TTAG {} expected {}",
                r.ttag, x.ttag
            )));
        }
        if r.datao != x.received {
            return Err(Fatal(format!(
                "H2CData DATAO {} expected {}",
                r.datao, x.received
            )));
        }
        if r.datal > maxh2c {
            return Err(Fatal(format!(
                "H2CData DATAL {} over MAXH2CDATA {maxh2c}",
                r.datal
            )));
        }
        let end = r.datao + r.datal;
        if end > x.r2t_end {
            return Err(Fatal(format!(
                "H2CData past the R2T: {end} > {}",
                x.r2t_end
            )));
        }
        if r.last_pdu != (end == x.r2t_end) {
            return Err(Fatal(format!(
                "H2CData LAST_PDU {} at {end} of {}",
                r.last_pdu, x.r2t_end
            )));
        }
        x.data[r.datao as usize..end as usize].copy_from_slice(data);
        x.received = end;
        if end as usize == x.data.len() {
            if let Some(x) = self.writes.remove(&r.cccid) {
                lock(&self.shared.ns).write(x.offset, &x.data);
                self.respond(x.cqe_cid, Status::SUCCESS, 0);
            }
        } else if r.last_pdu {
            self.next_r2t(r.cccid);
        }
        Ok(())
    }
}
