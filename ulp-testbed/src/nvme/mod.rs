//! A strict embedded NVMe/TCP target with a RAM namespace, for tests and the CLI: nothing needs to be installed to exercise the host.
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

mod admin;
mod conn;
mod namespace;
mod rw;
mod writer;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ulp_nvme_tcp::wire::Pda;

use namespace::Namespace;

/// How the embedded target behaves.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    /// Subsystem NQN.
    pub subnqn: String,
    /// Namespace 1's size in bytes (a multiple of the block size).
    pub size: u64,
    /// Logical block length in bytes.
    pub block_len: u32,
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
            size: 16 << 20,
            block_len: 512,
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
        let ns = Namespace::new(usize::try_from(config.size).unwrap_or(usize::MAX));
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
    pub fn contents(&self, offset: usize, len: usize) -> Vec<u8> {
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
                    .spawn(move || conn::serve(stream, &s, conn));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}
