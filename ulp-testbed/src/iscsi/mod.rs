//! A strict in-process iSCSI target with a RAM LUN, for tests, the CLI and hostile-peer tests.
//!
//! It listens on 127.0.0.1 (an ephemeral port; [`Target::start_on`] another address such as
//! `[::1]:0`), serves each connection on its own thread, checks
//! every digest and sequence number it receives (closing the connection on a bad one, as tgtd
//! and LIO do), negotiates like LIO when asked ([`TargetConfig::propose_keys`]: it proposes the
//! session keys the initiator did not offer and replies T=0), and can misbehave on purpose
//! ([`Misbehave`]) to exercise the initiator's defences.

mod login;
mod scsi;
mod session;
mod tmf;
mod write;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use session::Session;
use ulp_iscsi::wire::task_mgmt::TmfRequestRepr;

/// A deliberate protocol violation, applied to READ commands (or writes, where it says so).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum Misbehave {
    /// Behave.
    #[default]
    None,
    /// Data-In at a Buffer Offset past the end of the command's buffer.
    OffsetOutsideCommand,
    /// Data-In whose data runs past the end of the command's buffer.
    LengthOutsideCommand,
    /// Data-In for an ITT the initiator never used.
    UnknownItt,
    /// DataSN skips a value.
    DataSnGap,
    /// The same data twice (same offset, next DataSN).
    DuplicateData,
    /// A corrupt data digest (needs DataDigest=CRC32C).
    BadDataDigest,
    /// A corrupt header digest (needs HeaderDigest=CRC32C).
    BadHeaderDigest,
    /// Reject every READ (reason Invalid PDU Field).
    RejectReads,
    /// A Data-In segment longer than the initiator's MaxRecvDataSegmentLength.
    OversizedSegment,
    /// Data-In with S set and F clear.
    StatusWithoutFinal,
    /// A PDU with an initiator opcode (SCSI Command).
    InitiatorOpcode,
    /// Data-In for a WRITE command's ITT.
    DataInForWrite,
    /// An R2T asking for bytes beyond the write.
    R2tBeyondWrite,
    /// Close the connection in the middle of a Data-In.
    TruncatedPdu,
}

/// How the target answers Task Management Function Requests (ABORT TASK, LOGICAL UNIT
/// RESET), to exercise the initiator's recovery ladder.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum TmfPolicy {
    /// Answer as RFC 7143 says: the held or running task is aborted ("Function complete"), an
    /// unknown one is "Task does not exist"; a LOGICAL UNIT RESET ends every task on the LUN.
    #[default]
    Answer,
    /// Never answer ABORT TASK; answer LOGICAL UNIT RESET.
    IgnoreAbortTask,
    /// Answer ABORT TASK with "Function rejected" (255); answer LOGICAL UNIT RESET.
    RejectAbortTask,
    /// Never answer any task management request.
    IgnoreAll,
    /// Answer every task management request with "Function rejected".
    RejectAll,
}

/// The embedded target's configuration.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    /// Target IQN.
    pub iqn: String,
    /// LUN number.
    pub lun: u8,
    /// Size of the RAM LUN in bytes (a multiple of `block_len`).
    pub size: u64,
    /// Logical block length.
    pub block_len: u32,
    /// CHAP user and secret the initiator must present.
    pub chap: Option<(String, Vec<u8>)>,
    /// Mutual CHAP: the name and secret the target answers the initiator's challenge with. The
    /// initiator must then challenge (as LIO with mutual credentials set requires).
    pub mutual_chap: Option<(String, Vec<u8>)>,
    /// Propose un-offered session keys with T=0 and omit the answers RFC 7143 §6.2.1 lets a
    /// target omit (InitialR2T=Yes, DataPDUInOrder=Yes, DataSequenceInOrder=Yes,
    /// ImmediateData=No), as LIO does.
    pub propose_keys: bool,
    /// Answer the first command with UNIT ATTENTION (tgtd).
    pub unit_attention: bool,
    /// The target's MaxRecvDataSegmentLength (tgtd: 8192).
    pub max_recv_data_segment_len: u32,
    /// Largest MaxBurstLength accepted.
    pub max_burst_len: u32,
    /// Largest FirstBurstLength accepted.
    pub first_burst_len: u32,
    /// The target's InitialR2T (OR with the initiator's).
    pub initial_r2t: bool,
    /// The target's ImmediateData (AND with the initiator's).
    pub immediate_data: bool,
    /// Deliberate violations.
    pub misbehave: Misbehave,
    /// How many READ commands (the first ones, per connection) the target holds without any
    /// answer until an ABORT TASK or LOGICAL UNIT RESET ends them: a stalled LUN.
    pub stall_reads: usize,
    /// How task management requests are answered.
    pub tmf: TmfPolicy,
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self {
            iqn: "iqn.2024-01.io.ulp-ddp:embedded".into(),
            lun: 0,
            size: 16 << 20,
            block_len: 512,
            chap: None,
            mutual_chap: None,
            propose_keys: false,
            unit_attention: true,
            max_recv_data_segment_len: 8192,
            max_burst_len: 262_144,
            first_burst_len: 65536,
            initial_r2t: false,
            immediate_data: true,
            misbehave: Misbehave::None,
            stall_reads: 0,
            tmf: TmfPolicy::Answer,
        }
    }
}

/// A running embedded target; stopped (threads joined) on drop.
#[derive(Debug)]
pub struct Target {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    disk: Arc<Mutex<Vec<u8>>>,
    tmfs: Arc<Mutex<Vec<TmfRequestRepr>>>,
    thread: Option<JoinHandle<()>>,
    iqn: String,
    lun: u8,
}

impl Target {
    /// Starts a target on 127.0.0.1 with an ephemeral port.
    ///
    /// # Errors
    ///
    /// If the listener cannot be bound.
    pub fn start(config: TargetConfig) -> io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config)
    }

    /// Starts a target listening on `bind` (e.g. `[::1]:0` for the IPv6 loopback; port 0
    /// for an ephemeral one).
    ///
    /// # Errors
    ///
    /// If the listener cannot be bound (an address the machine does not have).
    pub fn start_on(bind: SocketAddr, config: TargetConfig) -> io::Result<Self> {
        let listener = TcpListener::bind(bind)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let len = usize::try_from(config.size).map_err(|_| io::ErrorKind::InvalidInput)?;
        let disk = Arc::new(Mutex::new(vec![0u8; len]));
        let (iqn, lun) = (config.iqn.clone(), config.lun);
        let config = Arc::new(config);
        let tmfs = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, disk, tmfs) = (Arc::clone(&stop), Arc::clone(&disk), Arc::clone(&tmfs));
            std::thread::spawn(move || accept_loop(&listener, addr, &stop, &disk, &tmfs, &config))
        };
        Ok(Self {
            addr,
            stop,
            disk,
            tmfs,
            thread: Some(thread),
            iqn,
            lun,
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The target IQN.
    pub fn iqn(&self) -> &str {
        &self.iqn
    }

    /// `iscsi://127.0.0.1:PORT/IQN/LUN` (`iscsi://[::1]:PORT/...` on the IPv6 loopback).
    pub fn url(&self) -> String {
        format!("iscsi://{}/{}/{}", self.addr, self.iqn, self.lun)
    }

    /// The Task Management Function Requests received so far, in order.
    pub fn tmf_requests(&self) -> Vec<TmfRequestRepr> {
        self.tmfs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A copy of `len` bytes of the LUN at `offset` (empty if out of range).
    pub fn contents(&self, offset: usize, len: usize) -> Vec<u8> {
        let d = self.disk.lock().unwrap_or_else(PoisonError::into_inner);
        d.get(offset..offset.saturating_add(len))
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    addr: SocketAddr,
    stop: &Arc<AtomicBool>,
    disk: &Arc<Mutex<Vec<u8>>>,
    tmfs: &Arc<Mutex<Vec<TmfRequestRepr>>>,
    config: &Arc<TargetConfig>,
) {
    let mut workers = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (stop, disk, config) = (Arc::clone(stop), Arc::clone(disk), Arc::clone(config));
                let tmfs = Arc::clone(tmfs);
                workers.push(std::thread::spawn(move || {
                    let mut s = Session::new(stream, addr, &config, &disk, &stop);
                    s.tmf_log = Some(tmfs);
                    let _ = s.run();
                }));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    for w in workers {
        let _ = w.join();
    }
}
