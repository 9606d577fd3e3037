//! A strict embedded NVMe/TCP target with a RAM namespace (feature `target`), for tests, the
//! CLI and benches: nothing needs to be installed to exercise the host.
//!
//! It listens on a `TcpListener` (normally `127.0.0.1:0`), serves each connection on its own
//! threads (a reader that parses and checks every PDU and writes small answers itself while
//! nothing else is being sent, and a writer that sends large answers and whatever the host is
//! slow to take, so that the reader never waits long on the host), and checks the host's PDUs the way the Linux target
//! does: ICReq first, digests and their flags as negotiated, header and data digests, PDO
//! alignment to CPDA, SGL descriptors matching the data, in-capsule data within IOCCSZ, Connect
//! first on each queue with the right controller id and subsystem, I/O only once CC.EN is set,
//! H2CData only as solicited by R2T (CCCID, TTAG, DATAO in order, DATAL within MAXH2CDATA,
//! LAST_PDU exactly at the end of the R2T). Every violation is recorded
//! ([`Target::violations`]) and closes the connection, as Linux does.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufReader, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::nvme::{self, Status};
use crate::wire::capsule_cmd::{
    SGL_ID_DATA_BLOCK_OFFSET, SGL_ID_TRANSPORT_DATA_BLOCK, SQE_FLAGS_SGL,
};
use crate::wire::{
    C2hDataRepr, CapsuleCmdRepr, CapsuleRespRepr, Cqe, Digests, H2cDataRepr, IcReqRepr, IcRespRepr,
    Layout, MAX_HEADER_SPACE, Pda, PduType, R2tRepr, TermReqRepr,
};

/// The RAM namespace, in chunks shared with the writer threads: a read hands the writer
/// references to the chunks it covers (no copy); a write to a chunk a read still holds copies
/// that chunk first (copy-on-write), so every read sees the data as of its command.
#[derive(Debug)]
struct Namespace {
    chunks: Vec<Arc<Vec<u8>>>,
    len: usize,
}

/// Namespace chunk size.
const NS_CHUNK: usize = 1 << 20;

impl Namespace {
    fn new(len: usize) -> Self {
        let chunks = (0..len.div_ceil(NS_CHUNK))
            .map(|i| Arc::new(vec![0u8; (len - i * NS_CHUNK).min(NS_CHUNK)]))
            .collect();
        Self { chunks, len }
    }

    /// The pieces covering `offset..offset + len` (within the namespace), split at chunks.
    fn pieces(&self, offset: usize, len: usize) -> Vec<Piece> {
        let mut out = Vec::new();
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let (i, within) = (at / NS_CHUNK, at % NS_CHUNK);
            let n = (end - at).min(NS_CHUNK - within);
            out.push(Piece {
                data: Arc::clone(&self.chunks[i]),
                range: within..within + n,
            });
            at += n;
        }
        out
    }

    fn write(&mut self, offset: usize, data: &[u8]) {
        let mut at = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let (i, within) = (at / NS_CHUNK, at % NS_CHUNK);
            let n = rest.len().min(NS_CHUNK - within);
            Arc::make_mut(&mut self.chunks[i])[within..within + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            at += n;
        }
    }

    fn copy(&self, offset: usize, len: usize) -> Vec<u8> {
        let end = offset.saturating_add(len).min(self.len);
        let start = offset.min(end);
        let mut v = Vec::with_capacity(end - start);
        for p in self.pieces(start, end - start) {
            v.extend_from_slice(&p.data[p.range]);
        }
        v
    }
}

/// Bytes of a shared buffer (a namespace chunk, or an Identify page).
#[derive(Clone, Debug)]
struct Piece {
    data: Arc<Vec<u8>>,
    range: Range<usize>,
}

/// What the reader thread hands the writer thread.
enum Out {
    /// A whole PDU.
    Pdu(Vec<u8>),
    /// A C2HData PDU: its header (HDGST and pad included), the payload by reference, the data
    /// digest. Written with one vectored write, the payload never copied.
    Data {
        header: Vec<u8>,
        payload: Piece,
        ddgst: Option<[u8; 4]>,
    },
}

impl Out {
    fn slices(&self) -> [&[u8]; 3] {
        match self {
            Self::Pdu(v) => [v, &[], &[]],
            Self::Data {
                header,
                payload,
                ddgst,
            } => [
                header,
                &payload.data[payload.range.clone()],
                ddgst.as_ref().map_or(&[][..], |d| &d[..]),
            ],
        }
    }
}

/// How the embedded target behaves.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    /// Subsystem NQN.
    pub subnqn: String,
    /// Namespace 1's size in bytes (a multiple of the block size).
    pub ns_bytes: usize,
    /// Logical block size.
    pub block_size: u32,
    /// MAXH2CDATA announced in ICResp.
    pub maxh2cdata: u32,
    /// Largest C2HData PDU (reads are split into PDUs of at most this much data).
    pub max_c2h: u32,
    /// Largest R2T (writes are solicited in R2Ts of at most this much).
    pub max_r2t: u32,
    /// CPDA announced in ICResp.
    pub cpda: Pda,
    /// IOCCSZ (16-byte units, SQE included) announced in Identify Controller.
    pub ioccsz: u32,
    /// Complete reads with C2HData SUCCESS instead of a CapsuleResp.
    pub success_flag: bool,
    /// Record every PDU in both directions ([`Target::capture`]).
    pub capture: bool,
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self {
            subnqn: "nqn.2024-01.io.ulp-ddp:embedded".to_string(),
            ns_bytes: 16 << 20,
            block_size: 512,
            maxh2cdata: 64 * 1024,
            max_c2h: 128 * 1024,
            max_r2t: 512 * 1024,
            cpda: Pda::ZERO,
            ioccsz: (16384 + 64) / 16,
            success_flag: false,
            capture: false,
        }
    }
}

/// One PDU the target received or sent (when capturing).
#[derive(Clone, Debug)]
pub struct CapturedPdu {
    /// Which connection (its number of acceptance, from 0).
    pub conn: u32,
    /// Sent by the host.
    pub from_host: bool,
    /// The whole PDU.
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
struct Shared {
    config: TargetConfig,
    ns: Mutex<Namespace>,
    violations: Mutex<Vec<String>>,
    capture: Mutex<Vec<CapturedPdu>>,
    cc: AtomicU32,
    next_cntlid: AtomicU16,
    cntlids: Mutex<Vec<u16>>,
    stop: AtomicBool,
    /// Answers the reader thread began writing itself and left to the writer thread.
    handed_off: AtomicU64,
}

/// The running target; dropping it stops accepting (connections end when their host closes).
#[derive(Debug)]
pub struct Target {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Target {
    /// Starts a target on `127.0.0.1:0`.
    ///
    /// # Errors
    ///
    /// If the listener cannot be bound.
    pub fn start(config: TargetConfig) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let ns = Namespace::new(config.ns_bytes);
        let shared = Arc::new(Shared {
            config,
            ns: Mutex::new(ns),
            violations: Mutex::new(Vec::new()),
            capture: Mutex::new(Vec::new()),
            cc: AtomicU32::new(0),
            next_cntlid: AtomicU16::new(1),
            cntlids: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            handed_off: AtomicU64::new(0),
        });
        let s = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("nvme-target-accept".into())
            .spawn(move || accept_loop(&listener, &s))?;
        Ok(Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The subsystem NQN.
    pub fn subnqn(&self) -> &str {
        &self.shared.config.subnqn
    }

    /// How many answers the target began writing at once and, as the host was slow to take
    /// them, left to its writer thread to finish (in order).
    pub fn handed_off(&self) -> u64 {
        self.shared.handed_off.load(Ordering::Relaxed)
    }

    /// Protocol violations seen so far (each closed its connection).
    pub fn violations(&self) -> Vec<String> {
        lock(&self.shared.violations).clone()
    }

    /// PDUs captured so far (with [`TargetConfig::capture`]).
    pub fn capture(&self) -> Vec<CapturedPdu> {
        lock(&self.shared.capture).clone()
    }

    /// A copy of `len` namespace bytes at `offset` (clamped to the namespace).
    pub fn ns_bytes(&self, offset: usize, len: usize) -> Vec<u8> {
        lock(&self.shared.ns).copy(offset, len)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut n = 0u32;
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let s = Arc::clone(shared);
                let conn = n;
                n += 1;
                let _ = std::thread::Builder::new()
                    .name("nvme-target-conn".into())
                    .spawn(move || serve(stream, &s, conn));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// A fatal violation: recorded, then the connection closes.
struct Fatal(String);

struct WriteXfer {
    cqe_cid: u16,
    offset: usize,
    data: Vec<u8>,
    received: u32,
    r2t_end: u32,
    ttag: u16,
}

/// Largest answer (bytes) the reader thread writes itself when the writer is idle: small
/// answers go out at once, without a thread hand-off (which at 4 KiB costs more than the write).
const INLINE_MAX: usize = 64 * 1024;
/// How long an inline write waits for the host (the socket's write timeout) before the rest is
/// left to the writer thread, so that the reader goes back to reading.
const INLINE_WAIT: Duration = Duration::from_millis(5);
/// How long the writer thread waits for a host that takes nothing before closing.
const WRITER_PATIENCE: Duration = Duration::from_secs(60);

/// The answers to one PDU and how many of their bytes are already sent.
struct Batch {
    outs: Vec<Out>,
    sent: usize,
}

/// What the reader and the writer thread share about sending: answers waiting in order, and
/// whether one of them is writing now (then the other queues behind it).
#[derive(Default)]
struct TxState {
    queue: VecDeque<Batch>,
    busy: bool,
    closed: bool,
    failed: bool,
}

#[derive(Default)]
struct Tx {
    state: Mutex<TxState>,
    wake: Condvar,
}

impl Tx {
    fn wait<'a>(
        &self,
        guard: std::sync::MutexGuard<'a, TxState>,
    ) -> std::sync::MutexGuard<'a, TxState> {
        self.wake
            .wait(guard)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn out_len(outs: &[Out]) -> usize {
    outs.iter().flat_map(Out::slices).map(<[u8]>::len).sum()
}

/// Writes `batches` (the first from its byte `sent` on, the others whole) in vectored writes
/// and returns how many bytes went out: all of them, or fewer when the socket's write timeout
/// expired and `patience` (a deadline, pushed back by every byte that goes out) is `None` or
/// has passed.
fn write_from(
    w: &mut TcpStream,
    batches: &[Batch],
    patience: Option<Duration>,
) -> io::Result<usize> {
    let mut slices: Vec<IoSlice<'_>> = batches
        .iter()
        .flat_map(|b| b.outs.iter().flat_map(Out::slices))
        .filter(|s| !s.is_empty())
        .map(IoSlice::new)
        .collect();
    let mut rest = &mut slices[..];
    IoSlice::advance_slices(&mut rest, batches.first().map_or(0, |b| b.sent));
    let mut done = 0;
    let mut deadline = patience.map(|p| Instant::now() + p);
    while !rest.is_empty() {
        match w.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                IoSlice::advance_slices(&mut rest, n);
                done += n;
                deadline = patience.map(|p| Instant::now() + p);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                match deadline {
                    Some(d) if Instant::now() < d => {}
                    Some(_) => return Err(e),
                    None => return Ok(done),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The writer thread: sends what the reader queued, in order, until the reader closes, at
/// least 1 MiB per vectored write when that much is queued (fewer system calls than one write
/// per answer; measured ~5 % faster than unbounded batches at 1 MiB reads).
fn writer_loop(mut w: TcpStream, tx: &Tx) {
    loop {
        let (batches, len): (Vec<Batch>, usize) = {
            let mut st = lock(&tx.state);
            while st.busy || st.queue.is_empty() {
                if st.closed && !st.busy {
                    drop(st);
                    let _ = w.shutdown(std::net::Shutdown::Both);
                    return;
                }
                st = tx.wait(st);
            }
            st.busy = true;
            // Everything queued, in writes of about 1 MiB (one vectored write each).
            let mut take = 0;
            let mut bytes = 0;
            for b in &st.queue {
                if take > 0 && bytes >= (1 << 20) {
                    break;
                }
                bytes += out_len(&b.outs) - b.sent;
                take += 1;
            }
            (st.queue.drain(..take).collect(), bytes)
        };
        let ok = write_from(&mut w, &batches, Some(WRITER_PATIENCE)).is_ok_and(|n| n == len);
        let mut st = lock(&tx.state);
        st.busy = false;
        if !ok {
            st.failed = true;
            st.queue.clear();
            drop(st);
            let _ = w.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

struct Conn<'a> {
    shared: &'a Shared,
    conn: u32,
    tx: Arc<Tx>,
    /// The reader's own handle for inline writes.
    wstream: TcpStream,
    /// What answering the current PDU produced (sent together by `flush`).
    pending: Vec<Out>,
    digests: Digests,
    hpda: Pda,
    qid: Option<u16>,
    sqsize: u16,
    sqhd: u16,
    writes: HashMap<u16, WriteXfer>,
    next_ttag: u16,
}

fn serve(stream: TcpStream, shared: &Shared, conn: u32) {
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
        sqsize: 1,
        sqhd: 0,
        writes: HashMap::new(),
        next_ttag: 1,
    };
    // Buffered: the capsules of a batch of commands come in with one read.
    let mut stream = BufReader::with_capacity(64 * 1024, stream);
    let result = c.run(&mut stream);
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

    fn send(&mut self, pdu: Vec<u8>) {
        self.send_out(Out::Pdu(pdu));
    }

    fn send_out(&mut self, out: Out) {
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

    fn respond(&mut self, cid: u16, status: Status, result: u64) {
        self.sqhd = (self.sqhd + 1) % self.sqsize.max(1);
        let cqe = Cqe {
            dw0: result as u32,
            dw1: (result >> 32) as u32,
            sqhd: self.sqhd,
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
        if self.writes.contains_key(&cid) {
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
                self.respond(cid, Status::SUCCESS, 0);
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

    fn expect_read(
        &self,
        cid: u16,
        sgl: &crate::wire::SglDescriptor,
        len: usize,
    ) -> Result<(), Fatal> {
        if len > 0 && (sgl.id != SGL_ID_TRANSPORT_DATA_BLOCK || (sgl.length as usize) < len) {
            return Err(Fatal(format!(
                "cid {cid}: SGL {sgl:?} cannot take {len} bytes"
            )));
        }
        Ok(())
    }

    fn connect(&mut self, cid: u16, sqe: &[u8; 64], data: &[u8]) -> Result<(), Fatal> {
        let qid = u16::from_le_bytes([sqe[42], sqe[43]]);
        let recfmt = u16::from_le_bytes([sqe[40], sqe[41]]);
        let sqsize = u16::from_le_bytes([sqe[44], sqe[45]]);
        if data.len() != nvme::CONNECT_DATA_LEN {
            return Err(Fatal(format!("Connect with {} data bytes", data.len())));
        }
        if recfmt != 0 || sqsize == 0 {
            self.respond(
                cid,
                Status {
                    sct: 1,
                    sc: nvme::SC_CONNECT_INVALID_PARAM as u8,
                    dnr: true,
                },
                0,
            );
            return Err(Fatal(format!("Connect RECFMT {recfmt} SQSIZE {sqsize}")));
        }
        let cntlid = u16::from_le_bytes([data[16], data[17]]);
        let subnqn = String::from_utf8_lossy(&data[256..512])
            .trim_end_matches('\0')
            .to_string();
        if subnqn != self.shared.config.subnqn {
            self.respond(
                cid,
                Status {
                    sct: 1,
                    sc: nvme::SC_CONNECT_INVALID_PARAM as u8,
                    dnr: true,
                },
                0,
            );
            return Err(Fatal(format!("Connect to unknown subsystem {subnqn:?}")));
        }
        let result = if qid == 0 {
            if cntlid != 0xFFFF {
                return Err(Fatal(format!("admin Connect with CNTLID {cntlid:#x}")));
            }
            self.shared.cc.store(0, Ordering::SeqCst);
            let id = self.shared.next_cntlid.fetch_add(1, Ordering::SeqCst);
            lock(&self.shared.cntlids).push(id);
            u64::from(id)
        } else {
            if !lock(&self.shared.cntlids).contains(&cntlid) {
                return Err(Fatal(format!("I/O Connect with unknown CNTLID {cntlid}")));
            }
            if self.shared.cc.load(Ordering::SeqCst) & 1 == 0 {
                return Err(Fatal("I/O Connect before CC.EN".into()));
            }
            if sqsize > 1023 {
                return Err(Fatal(format!("I/O SQSIZE {sqsize} above MQES")));
            }
            u64::from(cntlid)
        };
        self.qid = Some(qid);
        self.sqsize = sqsize + 1;
        self.respond(cid, Status::SUCCESS, result);
        Ok(())
    }

    fn fabrics(&mut self, cid: u16, sqe: &[u8; 64]) -> Result<(), Fatal> {
        let ofst = u32::from_le_bytes([sqe[44], sqe[45], sqe[46], sqe[47]]);
        match sqe[4] {
            nvme::FCTYPE_PROPERTY_GET if self.qid == Some(0) => {
                let cc = self.shared.cc.load(Ordering::SeqCst);
                let value: u64 = match ofst {
                    nvme::REG_CAP => 1023 | (1 << 16) | (15 << 24) | (1 << 37),
                    nvme::REG_VS => 0x0001_0300,
                    nvme::REG_CC => u64::from(cc),
                    nvme::REG_CSTS => u64::from(cc & 1),
                    _ => {
                        self.respond(cid, Status::generic(nvme::SC_INVALID_FIELD), 0);
                        return Ok(());
                    }
                };
                self.respond(cid, Status::SUCCESS, value);
            }
            nvme::FCTYPE_PROPERTY_SET if self.qid == Some(0) => {
                let value = u32::from_le_bytes([sqe[48], sqe[49], sqe[50], sqe[51]]);
                if ofst == nvme::REG_CC {
                    self.shared.cc.store(value, Ordering::SeqCst);
                    self.respond(cid, Status::SUCCESS, 0);
                } else {
                    self.respond(cid, Status::generic(nvme::SC_INVALID_FIELD), 0);
                }
            }
            nvme::FCTYPE_CONNECT => return Err(Fatal("second Connect on a queue".into())),
            _ => self.respond(cid, Status::generic(nvme::SC_INVALID_OPCODE), 0),
        }
        Ok(())
    }

    fn identify(&self, cns: u8, nsid: u32) -> Option<Vec<u8>> {
        let cfg = &self.shared.config;
        let mut d = vec![0u8; nvme::IDENTIFY_LEN];
        match cns {
            nvme::CNS_CONTROLLER => {
                d[4..20].copy_from_slice(b"0123456789abcdef");
                let mn = b"ulp-ddp embedded target";
                d[24..24 + mn.len()].copy_from_slice(mn);
                d[64..69].copy_from_slice(b"0.1.0");
                d[512] = 0x66;
                d[513] = 0x44;
                d[514..516].copy_from_slice(&1024u16.to_le_bytes());
                d[516..520].copy_from_slice(&1u32.to_le_bytes());
                d[536..540].copy_from_slice(&0x0010_0005u32.to_le_bytes());
                let nqn = cfg.subnqn.as_bytes();
                let n = nqn.len().min(255);
                d[768..768 + n].copy_from_slice(&nqn[..n]);
                d[1792..1796].copy_from_slice(&cfg.ioccsz.to_le_bytes());
                d[1796..1800].copy_from_slice(&1u32.to_le_bytes());
                Some(d)
            }
            nvme::CNS_NAMESPACE if nsid == 1 => {
                let blocks = (cfg.ns_bytes / cfg.block_size.max(1) as usize) as u64;
                for at in [0, 8, 16] {
                    d[at..at + 8].copy_from_slice(&blocks.to_le_bytes());
                }
                d[130] = cfg.block_size.trailing_zeros() as u8;
                Some(d)
            }
            nvme::CNS_ACTIVE_NS_LIST => {
                if nsid < 1 {
                    d[..4].copy_from_slice(&1u32.to_le_bytes());
                }
                Some(d)
            }
            _ => None,
        }
    }

    /// Sends `pieces` (the read's data, in order) as C2HData PDUs of at most `max_c2h` bytes,
    /// each within one piece, then the CapsuleResp (unless the SUCCESS flag completes it).
    fn send_read(&mut self, cid: u16, pieces: Vec<Piece>) {
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
            self.sqhd = (self.sqhd + 1) % self.sqsize.max(1);
        }
    }

    fn rw(&mut self, cid: u16, sqe: &[u8; 64], data: &[u8]) -> Result<(), Fatal> {
        let s = crate::wire::Sqe::new_unchecked(&sqe[..]);
        let cfg = &self.shared.config;
        let bs = cfg.block_size as usize;
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
        if offset.checked_add(len).is_none_or(|end| end > cfg.ns_bytes) {
            self.respond(cid, Status::generic(nvme::SC_LBA_OUT_OF_RANGE), 0);
            return Ok(());
        }
        if s.opcode() == nvme::OPC_READ {
            if sgl.id != SGL_ID_TRANSPORT_DATA_BLOCK {
                return Err(Fatal(format!("cid {cid}: read with SGL id {:#x}", sgl.id)));
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

    fn h2c(&mut self, layout: &Layout, pdu: &[u8]) -> Result<(), Fatal> {
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
