//! One connection: the reader thread that reads, parses and checks every host PDU (ICReq, capsule
//! checks, dispatch), answers it, and flushes the answers inline or to the writer thread.

use std::collections::HashMap;
use std::io::{self, BufReader, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use ulp_nvme_tcp::nvme::{self, Status};
use ulp_nvme_tcp::wire::capsule_cmd::{
    SGL_ID_DATA_BLOCK_OFFSET, SGL_ID_TRANSPORT_DATA_BLOCK, SQE_FLAGS_SGL,
};
use ulp_nvme_tcp::wire::{
    CapsuleCmdRepr, CapsuleRespRepr, Cqe, Digests, IcReqRepr, IcRespRepr, Layout, Pda, PduType,
    TermReqRepr,
};

use super::namespace::Piece;
use super::rw::WriteXfer;
use super::writer::{Batch, INLINE_MAX, INLINE_WAIT, Out, Tx, out_len, write_from, writer_loop};
use super::{CapturedPdu, Shared, lock};

/// A fatal violation: recorded, then the connection closes.
pub(super) struct Fatal(pub(super) String);

pub(super) struct Conn<'a> {
    pub(super) shared: &'a Shared,
    pub(super) conn: u32,
    pub(super) tx: Arc<Tx>,
    /// The reader's own handle for inline writes.
    wstream: TcpStream,
    /// What answering the current PDU produced (sent together by `flush`).
    pending: Vec<Out>,
    pub(super) digests: Digests,
    pub(super) hpda: Pda,
    pub(super) qid: Option<u16>,
    /// The controller this queue belongs to (from its Connect on).
    pub(super) cntlid: Option<u16>,
    pub(super) sqsize: u16,
    /// SQ head: advanced when a command's entry is consumed (shared with whoever completes an
    /// Asynchronous Event Request later, from another thread).
    pub(super) sq_head: Arc<AtomicU16>,
    pub(super) writes: HashMap<u16, WriteXfer>,
    pub(super) next_ttag: u16,
}

pub(super) fn serve(stream: TcpStream, shared: &Shared, conn: u32) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = stream.set_write_timeout(Some(INLINE_WAIT));
    let (Ok(wstream), Ok(inline)) = (stream.try_clone(), stream.try_clone()) else {
        return;
    };
    let tx = Arc::new(Tx::default());
    let writer = {
        let tx = Arc::clone(&tx);
        std::thread::spawn(move || writer_loop(wstream, &tx))
    };
    let mut c = Conn {
        shared,
        conn,
        tx: Arc::clone(&tx),
        wstream: inline,
        pending: Vec::new(),
        digests: Digests::NONE,
        hpda: Pda::ZERO,
        qid: None,
        cntlid: None,
        sqsize: 1,
        sq_head: Arc::new(AtomicU16::new(0)),
        writes: HashMap::new(),
        next_ttag: 1,
    };
    // Buffered: the capsules of a batch of commands come in with one read.
    let mut stream = BufReader::with_capacity(64 * 1024, stream);
    let result = c.run(&mut stream);
    c.detach();
    c.drop_held();
    if let Err(Fatal(v)) = result {
        lock(&shared.violations).push(format!("conn {conn}: {v}"));
    }
    c.flush();
    drop(c);
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
    lock(&tx.state).closed = true;
    tx.wake.notify_all();
    let _ = writer.join();
}

impl Conn<'_> {
    fn max_pdu(&self) -> usize {
        let cfg = &self.shared.config;
        (cfg.maxh2cdata as usize)
            .max(cfg.ioccsz as usize * 16)
            .max(8192 + 64)
            + 256
    }

    /// Reads one whole PDU; `None` at a clean end of stream.
    fn read_pdu(&self, s: &mut impl Read) -> Result<Option<(Layout, Vec<u8>)>, Fatal> {
        let mut ch = [0u8; 8];
        match read_full(s, &mut ch) {
            Ok(false) => return Ok(None),
            Ok(true) => {}
            Err(e) => return Err(Fatal(format!("read: {e}"))),
        }
        let layout = Layout::parse(&ch, self.digests).map_err(|e| Fatal(format!("header: {e}")))?;
        if layout.plen > self.max_pdu() {
            return Err(Fatal(format!("PLEN {} too large", layout.plen)));
        }
        let mut pdu = vec![0u8; layout.plen];
        pdu[..8].copy_from_slice(&ch);
        match read_full(s, &mut pdu[8..]) {
            Ok(true) => {}
            Ok(false) => return Err(Fatal("end of stream inside a PDU".into())),
            Err(e) => return Err(Fatal(format!("read: {e}"))),
        }
        if self.shared.config.capture {
            self.record(true, &pdu);
        }
        Ok(Some((layout, pdu)))
    }

    fn record(&self, from_host: bool, pdu: &[u8]) {
        lock(&self.shared.capture).push(CapturedPdu {
            conn: self.conn,
            from_host,
            bytes: pdu.to_vec(),
        });
    }

    pub(super) fn send(&mut self, pdu: Vec<u8>) {
        self.send_out(Out::Pdu(pdu));
    }

    pub(super) fn send_out(&mut self, out: Out) {
        if self.shared.config.capture {
            self.record(false, &out.slices().concat());
        }
        self.pending.push(out);
    }

    /// Sends what answering the last PDU produced: written here at once when it is small and
    /// nothing else is being sent, otherwise queued for the writer thread (which also takes
    /// over the rest of an inline write the host is slow to take). Order is kept either way.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let outs = std::mem::take(&mut self.pending);
        let len = out_len(&outs);
        let mut st = lock(&self.tx.state);
        if st.failed {
            return;
        }
        if st.busy || !st.queue.is_empty() || len > INLINE_MAX {
            st.queue.push_back(Batch { outs, sent: 0 });
            drop(st);
            self.tx.wake.notify_all();
            return;
        }
        st.busy = true;
        drop(st);
        let batch = [Batch { outs, sent: 0 }];
        let result = write_from(&mut self.wstream, &batch, None);
        let [Batch { outs, .. }] = batch;
        let mut st = lock(&self.tx.state);
        st.busy = false;
        match result {
            Ok(n) if n == len => {}
            Ok(n) => {
                self.shared.handed_off.fetch_add(1, Ordering::Relaxed);
                st.queue.push_front(Batch { outs, sent: n });
            }
            Err(_) => {
                st.failed = true;
                let _ = self.wstream.shutdown(std::net::Shutdown::Both);
            }
        }
        drop(st);
        self.tx.wake.notify_all();
    }

    fn run(&mut self, s: &mut impl Read) -> Result<(), Fatal> {
        let Some((_, pdu)) = self.read_pdu(s)? else {
            return Ok(());
        };
        let (ic, _) =
            IcReqRepr::parse(&pdu, Digests::NONE).map_err(|e| Fatal(format!("ICReq: {e}")))?;
        self.digests = ic.digests;
        self.hpda = ic.hpda;
        let mut out = Vec::new();
        let resp = IcRespRepr {
            cpda: self.shared.config.cpda,
            digests: ic.digests,
            maxh2cdata: self.shared.config.maxh2cdata,
        };
        resp.emit(&mut out)
            .map_err(|e| Fatal(format!("ICResp: {e}")))?;
        self.send(out);
        self.flush();
        while let Some((layout, pdu)) = self.read_pdu(s)? {
            let result = self.handle(&layout, &pdu);
            self.flush();
            result?;
        }
        Ok(())
    }

    /// Checks and answers one PDU from the host.
    fn handle(&mut self, layout: &Layout, pdu: &[u8]) -> Result<(), Fatal> {
        layout
            .check_alignment(self.shared.config.cpda)
            .map_err(|e| Fatal(format!("alignment: {e}")))?;
        layout
            .verify_data_digest(pdu)
            .map_err(|e| Fatal(format!("data digest: {e}")))?;
        match layout.pdu_type {
            PduType::CapsuleCmd => self.capsule(layout, pdu),
            PduType::H2cData => self.h2c(layout, pdu),
            PduType::H2cTermReq => {
                let (r, _) = TermReqRepr::parse(pdu, Digests::NONE)
                    .map_err(|e| Fatal(format!("H2CTermReq: {e}")))?;
                Err(Fatal(format!(
                    "host terminated: FES {:#x} FEI {:#x}",
                    r.fes, r.fei
                )))
            }
            other => Err(Fatal(format!("unexpected PDU type {other:?}"))),
        }
    }

    /// Consumes a submission queue entry: the SQ head moves on; its new value.
    pub(super) fn advance_sqhd(&self) -> u16 {
        let next = (self.sq_head.load(Ordering::SeqCst) + 1) % self.sqsize.max(1);
        self.sq_head.store(next, Ordering::SeqCst);
        next
    }

    pub(super) fn respond(&mut self, cid: u16, status: Status, result: u64) {
        let sqhd = self.advance_sqhd();
        let cqe = Cqe {
            dw0: result as u32,
            dw1: (result >> 32) as u32,
            sqhd,
            sqid: self.qid.unwrap_or(0),
            cid,
            status: status.to_cqe(),
        };
        let mut out = Vec::new();
        let repr = CapsuleRespRepr { cqe };
        if repr.emit(&mut out, self.digests).is_ok() {
            self.send(out);
        }
    }

    fn capsule(&mut self, layout: &Layout, pdu: &[u8]) -> Result<(), Fatal> {
        let (repr, _) =
            CapsuleCmdRepr::parse(pdu, self.digests).map_err(|e| Fatal(format!("capsule: {e}")))?;
        let sqe = repr.sqe();
        let cid = sqe.cid();
        let data = layout
            .data(pdu)
            .map_err(|e| Fatal(format!("capsule data: {e}")))?;
        if sqe.flags() & 0xC0 != SQE_FLAGS_SGL {
            return Err(Fatal(format!("cid {cid}: PSDT is not SGL")));
        }
        if self.writes.contains_key(&cid) || self.aer_outstanding(cid) || self.holds(cid) {
            return Err(Fatal(format!("cid {cid} reused while outstanding")));
        }
        let sgl = sqe.dptr();
        let inline_limit = if self.qid == Some(0) || sqe.opcode() == nvme::OPC_FABRICS {
            8192
        } else {
            (self.shared.config.ioccsz as usize * 16).saturating_sub(64)
        };
        if !data.is_empty() {
            if sgl.id != SGL_ID_DATA_BLOCK_OFFSET
                || sgl.address != 0
                || sgl.length as usize != data.len()
            {
                return Err(Fatal(format!(
                    "cid {cid}: in-capsule SGL {sgl:?} for {} bytes",
                    data.len()
                )));
            }
            if data.len() > inline_limit {
                return Err(Fatal(format!(
                    "cid {cid}: {} in-capsule bytes over {inline_limit}",
                    data.len()
                )));
            }
        } else if sgl.id != SGL_ID_TRANSPORT_DATA_BLOCK && sgl.length != 0 {
            return Err(Fatal(format!(
                "cid {cid}: SGL {sgl:?} without in-capsule data"
            )));
        }
        let opcode = sqe.opcode();
        if self.qid.is_none() {
            if opcode != nvme::OPC_FABRICS || repr.sqe[4] != nvme::FCTYPE_CONNECT {
                return Err(Fatal(format!(
                    "cid {cid}: opcode {opcode:#x} before Connect"
                )));
            }
            return self.connect(cid, &repr.sqe, data);
        }
        let admin = self.qid == Some(0);
        match (admin, opcode) {
            (_, nvme::OPC_FABRICS) => self.fabrics(cid, &repr.sqe),
            (true, nvme::OPC_IDENTIFY) => {
                let d = self.identify(sqe.cdw10() as u8, sqe.nsid());
                self.expect_read(cid, &sgl, d.as_ref().map_or(0, Vec::len))?;
                match d {
                    Some(d) => {
                        let range = 0..d.len();
                        self.send_read(
                            cid,
                            vec![Piece {
                                data: Arc::new(d),
                                range,
                            }],
                        );
                    }
                    None => self.respond(cid, Status::generic(nvme::SC_INVALID_FIELD), 0),
                }
                Ok(())
            }
            (true, nvme::OPC_KEEP_ALIVE) => {
                self.respond(cid, Status::SUCCESS, 0);
                Ok(())
            }
            (true, nvme::OPC_SET_FEATURES) => {
                self.set_features(cid, &repr.sqe);
                Ok(())
            }
            (true, nvme::OPC_GET_LOG_PAGE) => self.get_log_page(cid, &repr.sqe),
            (true, nvme::OPC_ASYNC_EVENT_REQUEST) => self.async_event_request(cid),
            (true, nvme::OPC_ABORT) => {
                self.abort(cid, &repr.sqe);
                Ok(())
            }
            (false, nvme::OPC_READ | nvme::OPC_WRITE) => self.rw(cid, &repr.sqe, data),
            (false, nvme::OPC_FLUSH) => {
                let status = if sqe.nsid() == 1 {
                    Status::SUCCESS
                } else {
                    Status::generic(nvme::SC_INVALID_NS)
                };
                self.respond(cid, status, 0);
                Ok(())
            }
            _ => {
                self.respond(cid, Status::generic(nvme::SC_INVALID_OPCODE), 0);
                Ok(())
            }
        }
    }
}

/// Fills `buf`; `Ok(false)` if the stream ended before the first byte.
fn read_full(s: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        match s.read(&mut buf[done..]) {
            Ok(0) if done == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
