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
//!
//! It also serves the discovery subsystem: an admin Connect to
//! [`DISCOVERY_NQN`](ulp_nvme_tcp::nvme::DISCOVERY_NQN) makes a discovery controller
//! (Identify Controller CNTRLTYPE 2), whose Discovery Log Page (Get Log Page 70h, offset and
//! length honoured) has one entry: this target's subsystem at its listening address (TCP,
//! port id 1, dynamic controller model, ASQSZ 32). An I/O queue Connect to the discovery NQN is
//! refused with Connect Invalid Parameters (the connection stays; nothing is recorded).
//!
//! Asynchronous events: each controller holds up to AERL + 1 = 4 Asynchronous Event Requests
//! (Identify AERL 3; one more fails with Asynchronous Event Request Limit Exceeded).
//! [`Target::notify_namespace_changed`] adds namespace 1 to every I/O controller's Changed
//! Namespace List and reports a Notice, Namespace Attribute Changed (log page 04h): it
//! completes an outstanding request, or waits for the next one. As on Linux's target the notice
//! is enabled from the start (Set Features 0Bh, bit 8, turns it off) and, once reported, stays
//! masked until the host reads log page 04h without RAE.
//!
//! Abort and shutdown: [`Target::hold_reads`] makes the target keep Read commands unanswered;
//! an Abort (admin opcode 08h) of a held read completes it with Command Abort Requested (SCT 0h
//! SC 07h, no DNR) and reports it aborted (DW0 bit 0 cleared), an Abort of anything else (or
//! of anything, after [`Target::refuse_aborts`]) reports it not aborted (DW0 bit 0 set).
//! Setting CC.SHN makes CSTS.SHST report shutdown complete ([`Target::shutdowns`] counts
//! them).

mod abort;
mod admin;
mod conn;
mod ctrl;
mod namespace;
mod rw;
mod tls;
mod writer;

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ulp_nvme_tcp::nvme::{self, AsyncEvent};
use ulp_nvme_tcp::wire::Pda;

use ctrl::Ctrl;
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
    /// NVMe TP 8011's secure channel: TLS 1.3 with this PSK (`None`: plaintext only).
    pub tls: Option<TargetTls>,
}

/// The embedded target's TLS settings.
#[derive(Clone)]
pub struct TargetTls {
    /// The PSK identity the host must offer (e.g. `NVMe0R01 <hostnqn> <subnqn>`).
    pub identity: String,
    /// The key (32 bytes for TLS_AES_128_GCM_SHA256).
    pub key: Vec<u8>,
    /// `treq`: `true` (required) closes plaintext connections, as Linux's target on a
    /// `treq=required` port; `false` (not required) serves plaintext too, told apart by the
    /// first byte (0x16, a TLS handshake record, or 0x00, an ICReq).
    pub required: bool,
}

impl std::fmt::Debug for TargetTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetTls")
            .field("identity", &self.identity)
            .field(
                "key",
                &format_args!("<{} bytes, not shown>", self.key.len()),
            )
            .field("required", &self.required)
            .finish()
    }
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
            tls: None,
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

struct Shared {
    config: TargetConfig,
    /// The listening address (what the discovery log names).
    addr: SocketAddr,
    ns: Mutex<Namespace>,
    violations: Mutex<Vec<String>>,
    capture: Mutex<Vec<CapturedPdu>>,
    next_cntlid: AtomicU16,
    /// Every controller, by CNTLID (from its admin Connect on).
    ctrls: Mutex<HashMap<u16, Ctrl>>,
    stop: AtomicBool,
    /// Answers the reader thread began writing itself and left to the writer thread.
    handed_off: AtomicU64,
    /// Read commands still to hold unanswered (`u32::MAX`: every one).
    hold_reads: AtomicU32,
    /// The reads held now.
    held: Mutex<Vec<abort::HeldRead>>,
    /// How many (updated under the lock of `held`).
    held_count: AtomicUsize,
    /// Answer every Abort "not aborted".
    refuse_aborts: AtomicBool,
    /// Abort commands received.
    aborts: AtomicU64,
    /// Commands aborted.
    aborted: AtomicU64,
    /// Shutdowns requested (CC.SHN set).
    shutdowns: AtomicU64,
    /// TLS connections refused, in words (failed handshakes, plaintext on a TLS-only port).
    tls_log: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
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
            addr,
            capture: Mutex::new(Vec::new()),
            next_cntlid: AtomicU16::new(1),
            ctrls: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            handed_off: AtomicU64::new(0),
            hold_reads: AtomicU32::new(0),
            held: Mutex::new(Vec::new()),
            held_count: AtomicUsize::new(0),
            refuse_aborts: AtomicBool::new(false),
            aborts: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            shutdowns: AtomicU64::new(0),
            tls_log: Mutex::new(Vec::new()),
        });
        let secure = match &shared.config.tls {
            None => None,
            Some(t) => {
                let (identity, key) = (t.identity.clone().into_bytes(), t.key.clone());
                let server = ulp_tls::PskServer::with_cipher_suites(
                    move |offered: &[u8]| (offered == identity).then(|| key.clone()),
                    &[ulp_tls::CipherSuite::Aes128GcmSha256],
                )
                .map_err(io::Error::other)?;
                Some(Arc::new(tls::Secure {
                    server,
                    required: t.required,
                }))
            }
        };
        let s = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("nvme-target-accept".into())
            .spawn(move || accept_loop(&listener, &s, secure.as_ref()))?;
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

    /// Namespace 1's attributes changed: adds it to the Changed Namespace List of every
    /// connected I/O controller and reports a Notice, Namespace Attribute Changed (log page
    /// 04h), to those that have it enabled and not masked (reported before, and log page 04h
    /// not read since): the oldest outstanding Asynchronous Event Request completes with it,
    /// or the next one will. Returns how many controllers it was reported to.
    pub fn notify_namespace_changed(&self) -> usize {
        let mut ctrls = lock(&self.shared.ctrls);
        let mut reported = 0;
        for ctrl in ctrls
            .values_mut()
            .filter(|c| !c.discovery && c.link.is_some())
        {
            if !ctrl.changed_ns.contains(&1) {
                ctrl.changed_ns.push(1);
            }
            if ctrl.raise(
                &self.shared,
                nvme::AEC_NAMESPACE_ATTRIBUTE,
                AsyncEvent::NAMESPACE_ATTRIBUTE_CHANGED,
            ) {
                reported += 1;
            }
        }
        reported
    }

    /// Holds the next `count` Read commands (on any I/O queue) unanswered, as a controller with
    /// stuck commands does, until an Abort takes them (they then complete with Command Abort
    /// Requested) or their connection ends; `u32::MAX` holds every Read until changed, 0 stops
    /// holding (reads held already stay held).
    pub fn hold_reads(&self, count: u32) {
        self.shared.hold_reads.store(count, Ordering::SeqCst);
    }

    /// Read commands held unanswered now.
    pub fn held_reads(&self) -> usize {
        lock(&self.shared.held).len()
    }

    /// Makes the target answer every Abort "not aborted" (DW0 bit 0 set), held reads included,
    /// as a controller may; `false` aborts held reads again.
    pub fn refuse_aborts(&self, refuse: bool) {
        self.shared.refuse_aborts.store(refuse, Ordering::SeqCst);
    }

    /// Abort commands received.
    pub fn aborts(&self) -> u64 {
        self.shared.aborts.load(Ordering::SeqCst)
    }

    /// Commands aborted at the host's request (completed with Command Abort Requested).
    pub fn aborted(&self) -> u64 {
        self.shared.aborted.load(Ordering::SeqCst)
    }

    /// Shutdowns requested: Property Set CC with CC.SHN set, over all controllers (each
    /// reports CSTS.SHST shutdown complete from then on).
    pub fn shutdowns(&self) -> u64 {
        self.shared.shutdowns.load(Ordering::SeqCst)
    }

    /// TLS connections the target refused, in words: failed handshakes (a wrong key, an
    /// unknown identity) and plaintext connections to a port that requires TLS.
    pub fn tls_refusals(&self) -> Vec<String> {
        lock(&self.shared.tls_log).clone()
    }

    /// Asynchronous Event Requests the target holds outstanding, over all controllers.
    pub fn async_event_requests(&self) -> usize {
        lock(&self.shared.ctrls)
            .values()
            .map(|c| c.aers.len())
            .sum()
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

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, secure: Option<&Arc<tls::Secure>>) {
    let mut n = 0u32;
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let s = Arc::clone(shared);
                let conn = n;
                n += 1;
                let secure = secure.cloned();
                let _ = std::thread::Builder::new()
                    .name("nvme-target-conn".into())
                    .spawn(move || match secure {
                        Some(secure) => tls::serve(stream, &s, &secure, conn),
                        None => conn::serve(stream, &s, conn),
                    });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}
