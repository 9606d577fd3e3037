//! One `ulp_iscsi::Connection` driven by a script: from the login (the script plays the
//! target's Login Responses) or from an established full-feature session, with arbitrary and
//! well-formed target PDUs (Login Response with keys, SCSI Response, Data-In, R2T, NOP-In,
//! Reject, Async Message, TMF Response, Logout Response, Text Response) delivered in arbitrary
//! pieces, interleaved with time advances (also exactly at and past `poll_timeout()`),
//! transmits, reads, writes, no-data commands, pings, logout, close and event polling. A
//! "serve" operation answers everything outstanding as a well-behaved target would, so the
//! fuzzer reaches deep states quickly. The script format is in `fuzz/README.md`.
//!
//! Invariants: never a panic; every submitted command completes exactly once, its buffer
//! handed back (a read's with its length, a write's unchanged; a read that ended GOOD holds the
//! Data-In bytes when the run delivered only well-formed PDUs); the connection ends with one
//! `Closed`, after every completion of a command submitted before the end; no timer earlier
//! than the latest time given, and after `handle_timeout(t)` none due at `t` (no busy loop);
//! what the initiator sends is well-framed and consistent (each command once, in the CmdSN
//! window; Data-Out only within the write, within an R2T or the first burst, with the write's
//! bytes; NOP-Out answers only to target pings); after the end nothing is sent, nothing is
//! registered with the engine, nothing is outstanding, no timer.
#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use ulp_backend_sw::SwBackend;
use ulp_ddp_core::{DdpBackend, Limits, QueueId, SansIo, SgBuffer, TagRange};
use ulp_iscsi::connection::{ChapCredentials, Phase};
use ulp_iscsi::keys::DigestPref;
use ulp_iscsi::scsi::Cdb;
use ulp_iscsi::wire::async_msg::AsyncMsgRepr;
use ulp_iscsi::wire::data_in::{DataInRepr, DataInStatus};
use ulp_iscsi::wire::login::{LoginResponseRepr, Stage, Stages};
use ulp_iscsi::wire::logout::{LogoutResponse, LogoutResponseRepr};
use ulp_iscsi::wire::nop::NopInRepr;
use ulp_iscsi::wire::r2t::R2tRepr;
use ulp_iscsi::wire::reject::{RejectReason, RejectRepr};
use ulp_iscsi::wire::scsi_rsp::ScsiRspRepr;
use ulp_iscsi::wire::task_mgmt::TmfResponseRepr;
use ulp_iscsi::wire::text::TextResponseRepr;
use ulp_iscsi::wire::{Digests, Itt, Lun, Ttt};
use ulp_iscsi::{
    Command, CommandId, Connection, ConnectionConfig, ConnectionError, Data, Event, ISCSI,
    NoOffload,
};

/// `ISCSI_RECEIVE_TRACE=1` prints the script's operations (to read a reproducer).
fn tracing() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("ISCSI_RECEIVE_TRACE").is_some())
}

/// `ISCSI_RECEIVE_LIVENESS=1` also requires a timer whenever something is outstanding (a
/// login, a command, a logout): login, task and logout timeouts (issue 12). Off by default: the
/// connection on main has none of them.
fn liveness() -> bool {
    static LIVENESS: OnceLock<bool> = OnceLock::new();
    *LIVENESS.get_or_init(|| std::env::var_os("ISCSI_RECEIVE_LIVENESS").is_some())
}

macro_rules! trace {
    ($($arg:tt)*) => {
        if tracing() {
            eprintln!($($arg)*);
        }
    };
}

/// Initiator opcodes.
const NOP_OUT: u8 = 0x00;
const SCSI_CMD: u8 = 0x01;
const TMF_REQ: u8 = 0x02;
const LOGIN_REQ: u8 = 0x03;
const TEXT_REQ: u8 = 0x04;
const DATA_OUT: u8 = 0x05;
const LOGOUT_REQ: u8 = 0x06;
const SNACK_REQ: u8 = 0x10;

const RESERVED: u32 = 0xFFFF_FFFF;
const BHS: usize = 48;

/// Biggest command buffer the script asks for (keeps executions fast).
const MAX_BUFFER: usize = 16 * 1024;
/// What a read buffer holds before any Data-In.
const READ_FILL: u8 = 0xEE;

const DEPTHS: [u32; 8] = [2, 3, 4, 5, 8, 16, 32, 64];
const NOOP_INTERVALS: [Option<Duration>; 8] = [
    None,
    Some(Duration::from_millis(1)),
    Some(Duration::from_millis(10)),
    Some(Duration::from_millis(250)),
    Some(Duration::from_secs(1)),
    Some(Duration::from_secs(5)),
    Some(Duration::from_secs(15)),
    Some(Duration::from_secs(60)),
];
const NOOP_TIMEOUTS: [Duration; 4] = [
    Duration::from_millis(1),
    Duration::from_millis(100),
    Duration::from_secs(5),
    Duration::from_secs(30),
];

/// Values for a mutated key.
const WEIRD: [&str; 16] = [
    "0",
    "1",
    "Yes",
    "No",
    "CRC32C",
    "None",
    "16777216",
    "4294967296",
    "",
    "CRC32C,None",
    "512",
    "65536",
    "Irrelevant",
    "Reject",
    "NotUnderstood",
    "x=y",
];

/// Keys a target may propose (or answer unasked).
const PROPOSALS: [(&str, &str); 24] = [
    ("DefaultTime2Wait", "2"),
    ("DefaultTime2Retain", "20"),
    ("MaxOutstandingR2T", "1"),
    ("DataPDUInOrder", "Yes"),
    ("DataSequenceInOrder", "Yes"),
    ("MaxConnections", "1"),
    ("ErrorRecoveryLevel", "0"),
    ("TargetAlias", "fuzz"),
    ("TargetPortalGroupTag", "1"),
    ("X-com.example.vendor", "v"),
    ("HeaderDigest", "None"),
    ("DataDigest", "CRC32C"),
    ("InitialR2T", "No"),
    ("ImmediateData", "No"),
    ("MaxBurstLength", "16384"),
    ("FirstBurstLength", "512"),
    ("DataPDUInOrder", "No"),
    ("MaxOutstandingR2T", "4"),
    ("OFMarker", "No"),
    ("AuthMethod", "None"),
    ("MaxRecvDataSegmentLength", "512"),
    ("FirstBurstLength", "Irrelevant"),
    ("ErrorRecoveryLevel", "2"),
    ("TaskReporting", "RFC3720"),
];

const TARGET_MRDSL: [u32; 4] = [8192, 512, 262_144, 65536];

/// The fuzz input, read front to back; reads past the end give zeros.
struct Script<'a> {
    data: &'a [u8],
}

impl<'a> Script<'a> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A write's bytes (`fill` XOR a function of the offset; `len` at most `MAX_BUFFER`), from
/// tables built once: the checks compare slices (one memcmp, not a loop the coverage
/// instrumentation slows down).
fn pattern(fill: u8, len: usize) -> &'static [u8] {
    static TABLES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let t = TABLES.get_or_init(|| {
        (0..=255u8)
            .map(|f| {
                (0..MAX_BUFFER)
                    .map(|i| f ^ (i as u8) ^ ((i >> 8) as u8))
                    .collect()
            })
            .collect()
    });
    &t[usize::from(fill)][..len.min(MAX_BUFFER)]
}

/// The bytes every well-formed Data-In carries from Buffer Offset `offset` (`len` at most
/// `MAX_BUFFER + 1`): a function of the offset modulo 64 KiB, from a table built once.
fn data_in_bytes(offset: u64, len: usize) -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    let t = TABLE.get_or_init(|| {
        (0..65536 + MAX_BUFFER + 1)
            .map(|i| (i as u8).wrapping_mul(31) ^ ((i >> 8) as u8) ^ 0xA5)
            .collect()
    });
    let at = (offset % 65536) as usize;
    &t[at..at + len.min(MAX_BUFFER + 1)]
}

/// `len` bytes of [`READ_FILL`] (at most `MAX_BUFFER + 1`).
fn read_fill(len: usize) -> &'static [u8] {
    static FILL: [u8; MAX_BUFFER + 1] = [READ_FILL; MAX_BUFFER + 1];
    &FILL[..len.min(MAX_BUFFER + 1)]
}

fn split(data: Vec<u8>, segments: usize) -> SgBuffer {
    if segments <= 1 || data.len() < segments {
        return SgBuffer::from_vec(data);
    }
    let step = data.len() / segments;
    let mut parts = Vec::new();
    let mut rest = data.as_slice();
    for _ in 1..segments {
        let (a, b) = rest.split_at(step);
        parts.push(a.to_vec());
        rest = b;
    }
    parts.push(rest.to_vec());
    SgBuffer::from_segments(parts)
}

/// Serial number arithmetic (RFC 1982, 32 bits): `a <= b`.
fn serial_le(a: u32, b: u32) -> bool {
    a == b || (a.wrapping_sub(b) as i32) < 0
}

/// A message for the user: words, not a Debug dump.
fn check_words(msg: &str) {
    assert!(!msg.is_empty(), "an empty error message");
    assert!(
        !msg.contains(" { ") && !msg.contains("Some(") && !msg.contains("None)"),
        "a Debug dump in an error message: {msg}"
    );
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Kind {
    Read,
    Write,
    NoData,
}

/// A command the script submitted.
#[derive(Debug)]
struct Cmd {
    id: CommandId,
    kind: Kind,
    len: usize,
    /// A write's bytes.
    expect: &'static [u8],
    sent: bool,
    done: bool,
    /// Submitted after the connection ended: completes at once, after `Closed`.
    after_end: bool,
}

/// What the target side knows of one of the initiator's tasks (by ITT).
#[derive(Debug, Default)]
struct Target {
    /// Next Data-In Buffer Offset and DataSN.
    data_off: u32,
    data_sn: u32,
    /// Next R2TSN, and where the R2Ts so far end.
    r2t_sn: u32,
    r2t_next: u32,
    /// Write bytes received (immediate and Data-Out).
    received: u64,
    /// The harness's serve operation sent the status.
    status_sent: bool,
}

#[derive(Debug)]
enum HostKind {
    Scsi {
        cmd: usize,
        read: bool,
        write: bool,
        len: u32,
    },
    Ping {
        data_len: usize,
    },
    Logout,
    Text,
    Tmf,
    Other,
}

#[derive(Debug)]
struct HostTask {
    kind: HostKind,
    t: Target,
}

/// The last Login Request.
#[derive(Debug, Clone)]
struct LoginReq {
    itt: u32,
    csg: u8,
    nsg: Option<u8>,
    cmd_sn: u32,
    keys: Vec<(String, String)>,
    answered: bool,
}

fn stage(bits: u8) -> Stage {
    match bits & 3 {
        0 => Stage::Security,
        1 => Stage::Operational,
        _ => Stage::FullFeature,
    }
}

fn parse_keys(text: &[u8]) -> Vec<(String, String)> {
    text.split(|&b| b == 0)
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.to_string(), String::new()),
            }
        })
        .collect()
}

fn encode_keys(keys: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in keys {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

struct Harness<B: DdpBackend> {
    c: Connection<B>,
    cfg: ConnectionConfig,
    target_mrdsl: u32,
    base: Instant,
    /// The latest time given to `handle_timeout`.
    now: Option<Instant>,
    cmds: Vec<Cmd>,
    ids: HashMap<CommandId, usize>,
    pings: HashMap<CommandId, bool>,
    texts: HashMap<CommandId, bool>,
    /// The initiator's tasks by ITT, as seen in what it sent.
    tasks: BTreeMap<u32, HostTask>,
    /// R2Ts sent, by TTT: (ITT, offset, length).
    r2ts: HashMap<u32, (u32, u32, u32)>,
    /// TTTs of target NOP-In pings not answered yet.
    target_pings: Vec<u32>,
    /// The last BHSs sent (for Reject).
    recent: Vec<[u8; BHS]>,
    login: Option<LoginReq>,
    login_itt: Option<u32>,
    mrdsl_declared: bool,
    /// Bytes waiting to be delivered.
    rx: Vec<u8>,
    /// The target's next StatSN.
    stat_sn: u32,
    /// The next CmdSN the target expects.
    exp_cmd_sn: u32,
    next_ttt: u32,
    /// Only well-formed PDUs were delivered (no raw bytes, flips, bad digests).
    clean: bool,
    /// A window with arbitrary ExpCmdSN and MaxCmdSN was sent: MaxCmdSN may have moved by
    /// more than 2^31 in steps, so a CmdSN inside the window when queued may look outside it
    /// when sent.
    wild_window: bool,
    transmitted_any: bool,
    /// A PDU other than a Login Request went out.
    ffp_sent: bool,
    connected_seen: bool,
    closed_seen: bool,
    closed_in_order: bool,
    close_called: bool,
    logout_sent: bool,
}

impl<B: DdpBackend> Harness<B> {
    fn new(cfg: ConnectionConfig, backend: B, target_mrdsl: u32) -> Self {
        static BASE: OnceLock<Instant> = OnceLock::new();
        let base = *BASE.get_or_init(Instant::now);
        Self {
            c: Connection::new(cfg.clone(), backend),
            cfg,
            target_mrdsl,
            base,
            now: None,
            cmds: Vec::new(),
            ids: HashMap::new(),
            pings: HashMap::new(),
            texts: HashMap::new(),
            tasks: BTreeMap::new(),
            r2ts: HashMap::new(),
            target_pings: Vec::new(),
            recent: Vec::new(),
            login: None,
            login_itt: None,
            mrdsl_declared: false,
            rx: Vec::new(),
            stat_sn: 0x1000,
            exp_cmd_sn: 1,
            next_ttt: 0x100,
            clean: true,
            wild_window: false,
            transmitted_any: false,
            ffp_sent: false,
            connected_seen: false,
            closed_seen: false,
            closed_in_order: false,
            close_called: false,
            logout_sent: false,
        }
    }

    fn in_login(&self) -> bool {
        matches!(self.c.phase(), Phase::Idle | Phase::Login)
    }

    /// Digests of what the target sends now.
    fn digests(&self) -> Digests {
        if self.in_login() {
            Digests::NONE
        } else {
            let p = self.c.params();
            Digests {
                header: p.header_digest,
                data: p.data_digest,
            }
        }
    }

    // ----- invariants -----

    fn check(&self) {
        let c = &self.c;
        let timeout = c.poll_timeout();
        if let (Some(t), Some(now)) = (timeout, self.now) {
            assert!(
                t >= now,
                "poll_timeout {:?} before the latest time {:?}",
                t - self.base,
                now - self.base
            );
        }
        if c.is_closed() {
            assert_eq!(timeout, None, "a timer after the end");
        }
        let reads_out = self
            .cmds
            .iter()
            .filter(|m| m.kind == Kind::Read && m.len > 0 && !m.done && !m.after_end)
            .count();
        assert!(
            c.engine().registered() <= reads_out,
            "{} buffers registered, {reads_out} reads not completed",
            c.engine().registered()
        );
    }

    fn check_ended(&self) {
        assert!(self.c.is_closed());
        let open: Vec<&Cmd> = self.cmds.iter().filter(|m| !m.done).collect();
        assert!(open.is_empty(), "commands never completed: {open:?}");
        assert_eq!(self.c.engine().registered(), 0, "registered after the end");
        assert_eq!(self.c.outstanding(), 0, "outstanding after the end");
        assert_eq!(self.c.poll_timeout(), None, "a timer after the end");
    }

    // ----- time -----

    fn advance(&mut self, s: &mut Script) {
        let kind = s.u8();
        let v = s.u16();
        let now = self.now.unwrap_or(self.base);
        let at = match kind & 7 {
            0 => now + Duration::from_micros(u64::from(v)),
            1 => now + Duration::from_millis(u64::from(v)),
            2 => now + Duration::from_millis(u64::from(v) * 10),
            4 => now + Duration::from_secs(u64::from(v)),
            _ => match self.c.poll_timeout() {
                Some(t) => {
                    let t = match v % 3 {
                        0 => t,
                        1 => t.checked_sub(Duration::from_nanos(1)).unwrap_or(t),
                        _ => t + Duration::from_nanos(1),
                    };
                    t.max(now)
                }
                None => now + Duration::from_millis(u64::from(v)),
            },
        };
        self.handle_timeout(at);
        if kind & 0x80 != 0 {
            self.drain();
        }
    }

    fn handle_timeout(&mut self, at: Instant) {
        trace!("handle_timeout(+{:?})", at - self.base);
        self.c.handle_timeout(at);
        self.now = Some(at);
        // Nothing is due at `at` any more: no busy loop.
        if let Some(t) = self.c.poll_timeout() {
            assert!(
                t > at,
                "poll_timeout {:?} not after the time just handled ({:?}, phase {:?})",
                t - self.base,
                at - self.base,
                self.c.phase()
            );
        }
        if liveness() && !self.c.is_closed() {
            // Something outstanding and no timer: a target that never answers is a hang.
            let pending = matches!(self.c.phase(), Phase::Login | Phase::LoggingOut)
                || self.c.outstanding() > 0;
            assert!(
                !pending || self.c.poll_timeout().is_some(),
                "no timer with something outstanding (phase {:?}, {} outstanding): a target that never answers is a hang",
                self.c.phase(),
                self.c.outstanding()
            );
        }
        self.check();
    }

    // ----- commands -----

    fn submit(&mut self, s: &mut Script, kind: Kind) {
        let raw = s.u16();
        let seg = usize::from(s.u8() % 4) + 1;
        let len = match kind {
            Kind::NoData => 0,
            // Now and then an empty read.
            Kind::Read if raw == 0xFFFF => 0,
            _ => 1 + usize::from(raw) % MAX_BUFFER,
        };
        let n = self.cmds.len();
        let fill = (n as u8).wrapping_mul(37).wrapping_add(1);
        let mut cdb = [0u8; 16];
        cdb[2..6].copy_from_slice(&(n as u32).to_be_bytes());
        let (cdb, data) = match kind {
            Kind::Read => {
                cdb[0] = 0x28;
                (
                    Cdb {
                        bytes: cdb,
                        len: 10,
                    },
                    Data::Read(split(vec![READ_FILL; len], seg)),
                )
            }
            Kind::Write => {
                cdb[0] = 0x2A;
                (
                    Cdb {
                        bytes: cdb,
                        len: 10,
                    },
                    Data::Write(split(pattern(fill, len).to_vec(), seg)),
                )
            }
            Kind::NoData => (Cdb { bytes: cdb, len: 6 }, Data::None),
        };
        let after_end = self.c.is_closed();
        let id = self.c.submit(Command {
            lun: Lun::default(),
            cdb,
            data,
        });
        trace!("submit {kind:?} #{n} {len} bytes in {seg} -> {id:?}");
        assert!(
            self.ids.insert(id, n).is_none(),
            "CommandId {id:?} given twice"
        );
        self.cmds.push(Cmd {
            id,
            kind,
            len,
            expect: if kind == Kind::Write {
                pattern(fill, len)
            } else {
                &[]
            },
            sent: false,
            done: false,
            after_end,
        });
        self.check();
    }

    fn ping(&mut self, s: &mut Script) {
        let n = usize::from(s.u8());
        let len = if n > 200 { 9000 } else { n };
        let r = self.c.ping(vec![0x5A; len]);
        trace!("ping {len} bytes -> {r:?}");
        match r {
            Ok(id) => {
                assert!(self.pings.insert(id, false).is_none(), "ping id twice");
            }
            Err(e) => check_words(&e.to_string()),
        }
        self.check();
    }

    fn logout(&mut self) {
        let r = self.c.logout();
        trace!("logout -> {r:?}");
        if let Err(e) = r {
            check_words(&e.to_string());
        }
        self.check();
    }

    fn send_targets(&mut self) {
        let r = self.c.send_targets();
        trace!("send_targets -> {r:?}");
        match r {
            Ok(id) => {
                assert!(self.texts.insert(id, false).is_none());
            }
            Err(e) => check_words(&e.to_string()),
        }
        self.check();
    }

    fn close(&mut self) {
        trace!("close");
        self.close_called = true;
        self.c.close();
        assert!(self.c.is_closed());
        self.check();
    }

    // ----- events -----

    fn events(&mut self, s: &mut Script) {
        if s.u8() & 1 == 0 {
            self.drain();
        } else if let Some(e) = self.c.poll_event() {
            self.event(e);
        }
        self.check();
    }

    fn drain(&mut self) {
        while let Some(e) = self.c.poll_event() {
            self.event(e);
        }
        if self.closed_seen {
            self.check_ended();
        }
        self.check();
    }

    fn event(&mut self, e: Event) {
        trace!("event {e:?}");
        match e {
            Event::Connected => {
                assert!(!self.closed_in_order, "Connected after Closed");
                assert!(!self.connected_seen, "Connected twice");
                self.connected_seen = true;
            }
            Event::Completed(done) => {
                let n = *self
                    .ids
                    .get(&done.id)
                    .unwrap_or_else(|| panic!("completion of {:?}, never submitted", done.id));
                let cmd = &mut self.cmds[n];
                assert_eq!(cmd.id, done.id);
                assert!(!cmd.done, "{:?} completed twice", done.id);
                assert!(
                    !self.closed_in_order || cmd.after_end,
                    "completion of {:?} after Closed",
                    done.id
                );
                cmd.done = true;
                let (kind, len) = (cmd.kind, cmd.len);
                match kind {
                    Kind::NoData => assert!(done.buffer.is_none(), "a buffer for no data"),
                    Kind::Read => {
                        let b = done
                            .buffer
                            .as_ref()
                            .unwrap_or_else(|| panic!("read #{n}: buffer not handed back"));
                        assert_eq!(b.len(), len as u64, "read #{n}: buffer size");
                    }
                    Kind::Write => {
                        let b = done
                            .buffer
                            .as_ref()
                            .unwrap_or_else(|| panic!("write #{n}: buffer not handed back"));
                        assert_eq!(b.len(), len as u64, "write #{n}: buffer size");
                        assert!(
                            b.to_vec() == self.cmds[n].expect,
                            "write #{n}: buffer changed"
                        );
                    }
                }
                match &done.result {
                    Err(e) => check_words(&e.to_string()),
                    Ok(o) => {
                        assert!(!self.cmds[n].after_end, "success after the end");
                        // An answer naming a command whose SCSI Command has not gone out is
                        // for another (fixed: the connection took it; see fuzz/README.md).
                        assert!(self.cmds[n].sent, "success of a command never sent");
                        assert!(o.data_in <= len as u64, "more Data-In than the buffer");
                        if kind == Kind::Read
                            && o.is_good()
                            && self.clean
                            && self.c.params().data_pdu_in_order
                            && let Some(b) = &done.buffer
                        {
                            let v = b.to_vec();
                            let placed = o.data_in as usize;
                            assert!(
                                v[..placed] == *data_in_bytes(0, placed),
                                "read #{n}: the buffer does not hold the Data-In bytes"
                            );
                            assert!(
                                v[placed..] == *read_fill(v.len() - placed),
                                "read #{n}: bytes beyond the Data-In changed"
                            );
                        }
                    }
                }
                self.tasks
                    .retain(|_, t| !matches!(t.kind, HostKind::Scsi { cmd, .. } if cmd == n));
            }
            Event::Pong { id, .. } => {
                assert!(!self.closed_in_order, "Pong after Closed");
                let seen = self
                    .pings
                    .get_mut(&id)
                    .unwrap_or_else(|| panic!("Pong for {id:?}, not a ping"));
                assert!(!*seen, "two Pongs for {id:?}");
                *seen = true;
            }
            Event::Discovered { id, .. } => {
                assert!(!self.closed_in_order, "Discovered after Closed");
                let seen = self
                    .texts
                    .get_mut(&id)
                    .unwrap_or_else(|| panic!("Discovered for {id:?}, not a SendTargets"));
                assert!(!*seen, "two answers for {id:?}");
                *seen = true;
            }
            Event::Closed(error) => {
                assert!(!self.closed_seen, "Closed twice");
                assert!(self.c.is_closed(), "Closed while the connection is open");
                self.closed_seen = true;
                self.closed_in_order = true;
                let open: Vec<&Cmd> = self
                    .cmds
                    .iter()
                    .filter(|m| !m.done && !m.after_end)
                    .collect();
                assert!(open.is_empty(), "Closed before the completions of {open:?}");
                match &error {
                    ConnectionError::LocallyClosed => {
                        assert!(self.close_called, "LocallyClosed without close()")
                    }
                    ConnectionError::LoggedOut => {
                        assert!(self.logout_sent, "LoggedOut without a Logout Request")
                    }
                    ConnectionError::PingTimeout { waited } => {
                        assert!(
                            self.cfg.noop_interval.is_some(),
                            "PingTimeout without pings"
                        );
                        assert_eq!(*waited, self.cfg.noop_timeout, "PingTimeout waited");
                    }
                    _ => {}
                }
                check_words(&error.to_string());
            }
            _ => {
                assert!(!self.closed_in_order, "an event after Closed");
            }
        }
    }

    // ----- what the initiator sends -----

    fn transmit(&mut self, all: bool) {
        loop {
            let closed = self.c.is_closed();
            let Some(pdu) = self.c.poll_transmit().map(|t| t.to_vec()) else {
                break;
            };
            assert!(
                !closed,
                "a PDU sent after the end: {:02x?}",
                &pdu[..pdu.len().min(48)]
            );
            self.transmitted(&pdu);
            if !all {
                break;
            }
        }
        self.check();
    }

    fn transmitted(&mut self, pdu: &[u8]) {
        assert!(pdu.len() >= BHS, "a PDU of {} bytes", pdu.len());
        let opcode = pdu[0] & 0x3F;
        let immediate = pdu[0] & 0x40 != 0;
        trace!("transmit {opcode:#04x}: {:02x?}", &pdu[..pdu.len().min(48)]);
        if !self.transmitted_any {
            assert_eq!(opcode, LOGIN_REQ, "the first PDU is a Login Request");
            self.transmitted_any = true;
        }
        let login = opcode == LOGIN_REQ;
        let digests = if login { Digests::NONE } else { self.digests() };
        let ahs = usize::from(pdu[4]) * 4;
        let dsl = (usize::from(pdu[5]) << 16) | (usize::from(pdu[6]) << 8) | usize::from(pdu[7]);
        let data_at = BHS + ahs + if digests.header { 4 } else { 0 };
        let pad = (4 - dsl % 4) % 4;
        let total = data_at
            + dsl
            + if dsl > 0 {
                pad + if digests.data { 4 } else { 0 }
            } else {
                0
            };
        assert_eq!(pdu.len(), total, "PDU {opcode:#04x} length");
        let data = &pdu[data_at..data_at + dsl];
        let itt = be32(pdu, 16);
        let mut bhs = [0u8; BHS];
        bhs.copy_from_slice(&pdu[..BHS]);
        if self.recent.len() == 8 {
            self.recent.remove(0);
        }
        self.recent.push(bhs);
        if !login {
            assert!(
                self.connected_seen || !self.in_login(),
                "PDU {opcode:#04x} during login"
            );
        }
        if !login {
            self.ffp_sent = true;
        }
        let (_, _, max_cmd_sn, _) = self.c.sequence_numbers();
        match opcode {
            LOGIN_REQ => {
                // (One queued during login may go out after the final Login Response was
                // taken, but never after a full-feature PDU.)
                assert!(!self.ffp_sent, "a Login Request after a full-feature PDU");
                match self.login_itt {
                    Some(i) => assert_eq!(i, itt, "Login Request ITT changed"),
                    None => self.login_itt = Some(itt),
                }
                let csg = (pdu[1] >> 2) & 3;
                let nsg = (pdu[1] & 0x80 != 0).then_some(pdu[1] & 3);
                let cmd_sn = be32(pdu, 24);
                self.exp_cmd_sn = cmd_sn;
                self.login = Some(LoginReq {
                    itt,
                    csg,
                    nsg,
                    cmd_sn,
                    keys: parse_keys(data),
                    answered: false,
                });
            }
            SCSI_CMD => {
                let cmd_sn = be32(pdu, 24);
                let edtl = be32(pdu, 20);
                let n = be32(pdu, 34) as usize;
                let cmd = self
                    .cmds
                    .get_mut(n)
                    .unwrap_or_else(|| panic!("SCSI Command for #{n}, never submitted"));
                assert!(!cmd.sent, "SCSI Command #{n} sent twice");
                assert!(!cmd.done, "SCSI Command #{n} sent after its completion");
                cmd.sent = true;
                let read = pdu[1] & 0x40 != 0;
                let write = pdu[1] & 0x20 != 0;
                assert_eq!(read, cmd.kind == Kind::Read && cmd.len > 0, "#{n}: R bit");
                assert_eq!(write, cmd.kind == Kind::Write, "#{n}: W bit");
                assert_eq!(
                    edtl as usize, cmd.len,
                    "#{n}: Expected Data Transfer Length"
                );
                assert!(cmd.expect.get(..dsl) == Some(data), "#{n}: immediate data");
                let p = self.c.params();
                if dsl > 0 {
                    assert!(write, "#{n}: immediate data for a non-write");
                    assert!(
                        p.immediate_data,
                        "#{n}: immediate data with ImmediateData=No"
                    );
                    assert!(
                        dsl as u32 <= p.first_burst_len,
                        "#{n}: immediate data beyond FirstBurstLength"
                    );
                    assert!(
                        dsl as u32 <= p.max_xmit_data_segment_len.max(512),
                        "#{n}: immediate data beyond MaxRecvDataSegmentLength"
                    );
                }
                if !immediate {
                    assert!(
                        !self.clean || self.wild_window || serial_le(cmd_sn, max_cmd_sn),
                        "#{n}: CmdSN {cmd_sn} outside the window (MaxCmdSN {max_cmd_sn})"
                    );
                    self.exp_cmd_sn = cmd_sn.wrapping_add(1);
                }
                let t = Target {
                    received: dsl as u64,
                    ..Target::default()
                };
                self.tasks.insert(
                    itt,
                    HostTask {
                        kind: HostKind::Scsi {
                            cmd: n,
                            read,
                            write,
                            len: edtl,
                        },
                        t,
                    },
                );
            }
            DATA_OUT => {
                let ttt = be32(pdu, 20);
                let offset = be32(pdu, 40);
                let p = self.c.params();
                let (first_burst, initial_r2t, mxdsl) = (
                    p.first_burst_len,
                    p.initial_r2t,
                    p.max_xmit_data_segment_len,
                );
                let task = self
                    .tasks
                    .get_mut(&itt)
                    .unwrap_or_else(|| panic!("Data-Out for ITT {itt:#x}, no task"));
                let HostKind::Scsi {
                    cmd: n, write, len, ..
                } = task.kind
                else {
                    panic!("Data-Out for ITT {itt:#x}, not a SCSI command");
                };
                assert!(write, "Data-Out for a non-write");
                let end = u64::from(offset) + dsl as u64;
                assert!(end <= u64::from(len), "Data-Out beyond the write");
                assert!(dsl > 0, "an empty Data-Out");
                assert!(
                    dsl as u32 <= mxdsl.max(512),
                    "Data-Out beyond MaxRecvDataSegmentLength"
                );
                assert!(!self.cmds[n].done, "Data-Out for a completed command");
                assert!(
                    self.cmds[n].expect.get(offset as usize..end as usize) == Some(data),
                    "Data-Out data of #{n} at {offset}"
                );
                if ttt == RESERVED {
                    assert!(!initial_r2t, "unsolicited Data-Out with InitialR2T=Yes");
                    assert!(
                        end <= u64::from(first_burst),
                        "unsolicited Data-Out beyond FirstBurstLength"
                    );
                } else {
                    // An R2T for this ITT (perhaps sent while the tag was another command's,
                    // delivered after this one took it); any once bytes were changed.
                    let r2t = self.r2ts.get(&ttt);
                    assert!(
                        !self.clean
                            || r2t.is_some_and(|&(i, o, l)| i == itt
                                && offset >= o
                                && end <= u64::from(o) + u64::from(l)),
                        "Data-Out ITT {itt:#x} TTT {ttt:#x} at {offset}+{dsl} answers no R2T (the TTT's: {r2t:?})",
                    );
                }
                task.t.received += dsl as u64;
            }
            NOP_OUT => {
                assert!(immediate, "a NOP-Out without the I bit");
                let ttt = be32(pdu, 20);
                if itt == RESERVED {
                    // An answer to a target ping: a TTT the target sent (any, once raw or
                    // changed bytes went in).
                    match self.target_pings.iter().position(|&t| t == ttt) {
                        Some(i) => {
                            self.target_pings.remove(i);
                        }
                        None => {
                            assert!(!self.clean, "NOP-Out answering TTT {ttt:#x}: no such ping")
                        }
                    }
                } else {
                    assert_eq!(ttt, RESERVED, "a ping with a TTT");
                    self.tasks.insert(
                        itt,
                        HostTask {
                            kind: HostKind::Ping { data_len: dsl },
                            t: Target::default(),
                        },
                    );
                }
            }
            LOGOUT_REQ => {
                self.logout_sent = true;
                self.tasks.insert(
                    itt,
                    HostTask {
                        kind: HostKind::Logout,
                        t: Target::default(),
                    },
                );
            }
            TEXT_REQ => {
                let cmd_sn = be32(pdu, 24);
                if !immediate {
                    assert!(
                        !self.clean || self.wild_window || serial_le(cmd_sn, max_cmd_sn),
                        "Text Request CmdSN {cmd_sn} outside the window (MaxCmdSN {max_cmd_sn})"
                    );
                    self.exp_cmd_sn = cmd_sn.wrapping_add(1);
                }
                self.tasks.insert(
                    itt,
                    HostTask {
                        kind: HostKind::Text,
                        t: Target::default(),
                    },
                );
            }
            TMF_REQ => {
                let cmd_sn = be32(pdu, 24);
                if !immediate {
                    self.exp_cmd_sn = cmd_sn.wrapping_add(1);
                }
                self.tasks.insert(
                    itt,
                    HostTask {
                        kind: HostKind::Tmf,
                        t: Target::default(),
                    },
                );
            }
            SNACK_REQ => {
                self.tasks.insert(
                    itt,
                    HostTask {
                        kind: HostKind::Other,
                        t: Target::default(),
                    },
                );
            }
            other => panic!("the initiator sent opcode {other:#04x}"),
        }
    }

    // ----- target PDUs -----

    /// StatSN for a status PDU: the next one mostly; a repeat, an old one, or any.
    fn stat_sn(&mut self, seq: u8, s: &mut Script) -> u32 {
        match (seq >> 2) & 3 {
            0 | 1 => {
                let n = self.stat_sn;
                self.stat_sn = n.wrapping_add(1);
                n
            }
            2 => self.stat_sn.wrapping_sub(1 + u32::from(s.u8() % 4)),
            _ => {
                let n = s.u32();
                self.stat_sn = n.wrapping_add(1);
                n
            }
        }
    }

    /// (ExpCmdSN, MaxCmdSN): an open window mostly; closed, narrow, or any.
    fn window(&mut self, seq: u8, s: &mut Script) -> (u32, u32) {
        let exp = self.exp_cmd_sn;
        match seq & 3 {
            0 => (exp, exp.wrapping_add(63)),
            1 => (exp, exp.wrapping_add(u32::from(s.u8() % 4))),
            2 => (exp, exp.wrapping_sub(1)),
            _ => {
                self.wild_window = true;
                (s.u32(), s.u32())
            }
        }
    }

    /// An ITT for an injected PDU: one of the initiator's tasks (by `pick`), or any.
    fn itt(&self, pick: u8, s: &mut Script) -> u32 {
        if pick & 0x80 != 0 || self.tasks.is_empty() {
            return if pick & 0x40 != 0 { s.u32() } else { RESERVED };
        }
        *self
            .tasks
            .keys()
            .nth(usize::from(pick) % self.tasks.len())
            .expect("index")
    }

    /// Prefers tasks of one kind (reads for Data-In, writes for R2T).
    fn itt_where(&self, pick: u8, s: &mut Script, f: impl Fn(&HostKind) -> bool) -> u32 {
        let matching: Vec<u32> = self
            .tasks
            .iter()
            .filter(|(_, t)| f(&t.kind))
            .map(|(&i, _)| i)
            .collect();
        if pick & 0x80 != 0 || matching.is_empty() {
            return self.itt(pick, s);
        }
        matching[usize::from(pick) % matching.len()]
    }

    fn push<F>(&mut self, what: &str, len: usize, emit: F)
    where
        F: FnOnce(&mut [u8], Digests) -> ulp_iscsi::wire::Result<usize>,
    {
        let d = self.digests();
        let mut b = vec![0u8; len];
        match emit(&mut b, d) {
            Ok(n) => {
                trace!("inject {what}: {:02x?}", &b[..n.min(48)]);
                self.rx.extend_from_slice(&b[..n]);
            }
            Err(e) => trace!("inject {what}: not emitted ({e})"),
        }
    }

    /// Login Response answering the last Login Request as a well-behaved target would, then
    /// changed by `m` (0: unchanged).
    fn inject_login(&mut self, s: &mut Script, m: u8) {
        let Some(req) = self.login.clone() else {
            // No request seen: a Login Response anyway.
            self.login = Some(LoginReq {
                itt: self.login_itt.unwrap_or(0),
                csg: 0,
                nsg: Some(1),
                cmd_sn: 1,
                keys: Vec::new(),
                answered: false,
            });
            return self.inject_login(s, m);
        };
        let seq = if m != 0 { s.u8() } else { 0 };
        let has = |k: &str| req.keys.iter().any(|(key, _)| key == k);
        let mut keys: Vec<(String, String)> = Vec::new();
        let mut next = req.nsg.map(stage);
        match req.csg {
            0 => {
                if has("CHAP_A") {
                    keys.push(("CHAP_A".into(), "5".into()));
                    keys.push(("CHAP_I".into(), "7".into()));
                    keys.push(("CHAP_C".into(), "0x00112233445566778899aabbccddeeff".into()));
                    next = None;
                } else if has("CHAP_R") {
                } else if let Some((_, v)) = req.keys.iter().find(|(k, _)| k == "AuthMethod") {
                    if v.split(',').any(|a| a == "CHAP") && self.cfg.chap.is_some() {
                        keys.push(("AuthMethod".into(), "CHAP".into()));
                        next = None;
                    } else {
                        keys.push(("AuthMethod".into(), "None".into()));
                        keys.push(("TargetPortalGroupTag".into(), "1".into()));
                    }
                }
            }
            _ => {
                for (k, v) in &req.keys {
                    if matches!(v.as_str(), "NotUnderstood" | "Irrelevant" | "Reject") {
                        continue;
                    }
                    if k == "MaxRecvDataSegmentLength" {
                        continue;
                    }
                    let first = v.split(',').next().unwrap_or("").to_string();
                    keys.push((k.clone(), first));
                }
                if !self.mrdsl_declared {
                    self.mrdsl_declared = true;
                    keys.push((
                        "MaxRecvDataSegmentLength".into(),
                        self.target_mrdsl.to_string(),
                    ));
                }
            }
        }
        // Mutations.
        if m & 1 != 0 {
            let mut out = Vec::new();
            for (k, v) in keys {
                match s.u8() % 8 {
                    0 => out.push((k, v)),
                    1 => {}
                    2 => out.push((k, "Reject".into())),
                    3 => out.push((k, "NotUnderstood".into())),
                    4 => out.push((k, "Irrelevant".into())),
                    5 => {
                        out.push((k.clone(), v.clone()));
                        out.push((k, v));
                    }
                    6 => out.push((k, WEIRD[usize::from(s.u8() % 16)].into())),
                    _ => out.push((k, s.u32().to_string())),
                }
            }
            keys = out;
        }
        if m & 2 != 0 {
            let (k, v) = PROPOSALS[usize::from(s.u8()) % PROPOSALS.len()];
            keys.push((k.into(), v.into()));
        }
        if m & 4 != 0 {
            next = match next {
                Some(_) => None,
                None => Some(stage(s.u8())),
            };
        }
        let mut current = stage(req.csg);
        let mut itt = req.itt;
        if m & 0x20 != 0 {
            let w = s.u8();
            if w & 1 != 0 {
                itt = s.u32();
            } else {
                current = stage(w >> 1);
            }
        }
        if m & 0x80 != 0 && next.is_some() {
            next = Some(stage(s.u8()));
        }
        let (class, detail) = if m & 0x10 != 0 {
            (1 + s.u8() % 3, s.u8() % 12)
        } else {
            (0, 0)
        };
        let (version_max, version_active, tsih) = if m & 0x40 != 0 {
            (s.u8(), s.u8(), s.u16())
        } else {
            (
                0,
                0,
                if next == Some(Stage::FullFeature) {
                    7
                } else {
                    0
                },
            )
        };
        let mut text = encode_keys(&keys);
        if m & 0x80 != 0 {
            let n = usize::from(s.u8() % 32);
            text.extend_from_slice(s.bytes(n));
        }
        let (exp, max) = if seq & 3 == 0 {
            (req.cmd_sn, req.cmd_sn.wrapping_add(63))
        } else {
            self.window(seq, s)
        };
        // The C bit: the text in two PDUs (the initiator asks for the rest).
        let pieces: Vec<(&[u8], bool)> = if m & 8 != 0 && !text.is_empty() {
            let at = text.len() / 2;
            vec![(&text[..at], true), (&text[at..], false)]
        } else {
            vec![(&text[..], false)]
        };
        for (data, cont) in pieces {
            let stat_sn = self.stat_sn(seq, s);
            let r = LoginResponseRepr {
                stages: Stages {
                    cont,
                    current,
                    next: if cont { None } else { next },
                },
                version_max,
                version_active,
                isid: self.cfg.isid,
                tsih,
                itt: Itt(itt),
                stat_sn,
                exp_cmd_sn: exp,
                max_cmd_sn: max,
                status_class: class,
                status_detail: detail,
                data,
            };
            self.push("Login Response", r.buffer_len(Digests::NONE), |b, _| {
                r.emit(b, Digests::NONE)
            });
        }
        if let Some(l) = self.login.as_mut() {
            l.answered = true;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn scsi_response(
        &mut self,
        itt: u32,
        status: u8,
        response: u8,
        residual: (bool, bool, u32),
        sense: &[u8],
        seq: u8,
        s: &mut Script,
    ) {
        let stat_sn = self.stat_sn(seq, s);
        let (exp, max) = self.window(seq, s);
        let mut sense_buf = Vec::new();
        if !sense.is_empty() {
            sense_buf.extend_from_slice(sense);
        }
        let r = ScsiRspRepr {
            bidi_overflow: false,
            bidi_underflow: false,
            overflow: residual.1,
            underflow: residual.0,
            response,
            status,
            itt: Itt(itt),
            snack_tag: 0,
            stat_sn,
            exp_cmd_sn: exp,
            max_cmd_sn: max,
            exp_data_sn: 0,
            bidi_residual: 0,
            residual: residual.2,
            sense: &sense_buf,
            response_data: &[],
        };
        let d = self.digests();
        self.push("SCSI Response", r.buffer_len(d), |b, d| r.emit(b, d));
    }

    fn inject_scsi_response(&mut self, s: &mut Script) {
        let pick = s.u8();
        let itt = self.itt_where(pick, s, |k| matches!(k, HostKind::Scsi { .. }));
        let flags = s.u8();
        let seq = s.u8();
        let (len, done) = match self.tasks.get(&itt) {
            Some(HostTask {
                kind: HostKind::Scsi { len, .. },
                t,
            }) => (*len, u64::from(t.data_off).max(t.received)),
            _ => (0, 0),
        };
        let status = match flags & 3 {
            0 => 0,
            1 => 2,
            2 => [0x08, 0x18, 0x28, 0x30, 0x40][usize::from(s.u8() % 5)],
            _ => s.u8(),
        };
        let response = if flags & 4 != 0 { 1 } else { 0 };
        let residual = match (flags >> 3) & 3 {
            0 => (false, false, 0),
            1 => (true, false, len.saturating_sub(done as u32)),
            2 => (false, true, s.u32() % 0x10000),
            _ => (true, false, s.u32()),
        };
        let sense: Vec<u8> = if status == 2 || flags & 0x20 != 0 {
            let mut v = vec![
                0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0x00, 0, 0, 0, 0,
            ];
            v[2] = s.u8() & 0x0F;
            v[12] = s.u8();
            v[13] = s.u8();
            if flags & 0x40 != 0 {
                let n = usize::from(s.u8() % 20);
                v.truncate(n);
            }
            v
        } else {
            Vec::new()
        };
        self.scsi_response(itt, status, response, residual, &sense, seq, s);
        if let Some(t) = self.tasks.get_mut(&itt) {
            t.t.status_sent = true;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn data_in(
        &mut self,
        itt: u32,
        offset: u32,
        len: u32,
        status: Option<DataInStatus>,
        data_sn: u32,
        ack: bool,
        seq: u8,
        s: &mut Script,
    ) {
        let (exp, max) = self.window(seq, s);
        let payload = data_in_bytes(u64::from(offset), len as usize);
        let r = DataInRepr {
            final_: status.is_some(),
            ack,
            status,
            lun: Lun::default(),
            itt: Itt(itt),
            ttt: if ack { Ttt(1) } else { Ttt::RESERVED },
            exp_cmd_sn: exp,
            max_cmd_sn: max,
            data_sn,
            buffer_offset: offset,
            data: payload,
        };
        let d = self.digests();
        self.push("Data-In", r.buffer_len(d), |b, d| r.emit(b, d));
    }

    fn inject_data_in(&mut self, s: &mut Script) {
        let pick = s.u8();
        let itt = self.itt_where(pick, s, |k| matches!(k, HostKind::Scsi { read: true, .. }));
        let flags = s.u8();
        let seq = s.u8();
        let (len, next, sn) = match self.tasks.get(&itt) {
            Some(HostTask {
                kind: HostKind::Scsi { len, .. },
                t,
            }) => (*len, t.data_off, t.data_sn),
            _ => (4096, 0, 0),
        };
        let offset = match flags & 3 {
            0 | 1 => next,
            2 => 0,
            _ => s.u32() % 0x20000,
        };
        let rest = len.saturating_sub(offset).max(1);
        let mrdsl = self.c.params().max_recv_data_segment_len.max(512);
        let dlen = match (flags >> 2) & 3 {
            0 => rest.min(mrdsl),
            1 => rest.min(u32::from(s.u16() % 4096) + 1),
            2 => u32::from(s.u16()) + 1,
            _ => 0,
        };
        let dlen = dlen.min(MAX_BUFFER as u32 + 1);
        let data_sn = if flags & 0x10 != 0 { s.u32() % 8 } else { sn };
        let last = offset.saturating_add(dlen) >= len;
        let status = if (flags & 0x20 != 0) || (last && flags & 0x40 == 0) {
            let st = s.u8();
            let stat_sn = self.stat_sn(seq, s);
            Some(DataInStatus {
                status: if st & 0x80 != 0 { st & 0x3F } else { 0 },
                stat_sn,
                overflow: st & 0x40 != 0,
                underflow: st & 0x20 != 0,
                residual: if st & 0x20 != 0 {
                    len.saturating_sub(offset.saturating_add(dlen))
                } else {
                    u32::from(st & 0x40)
                },
            })
        } else {
            None
        };
        let ack = flags & 0x80 != 0 && flags & 0x08 != 0;
        self.data_in(itt, offset, dlen, status, data_sn, ack, seq, s);
        if let Some(t) = self.tasks.get_mut(&itt) {
            t.t.data_off = offset.saturating_add(dlen);
            t.t.data_sn = data_sn.wrapping_add(1);
            if status.is_some() {
                t.t.status_sent = true;
            }
        }
        if flags & 0x08 != 0 && flags & 0x80 == 0 {
            // Now and then a bad data digest (or, without one, a changed byte).
            self.clean = false;
            if let Some(last) = self.rx.last_mut() {
                *last ^= 0x5A;
            }
        }
    }

    fn r2t(&mut self, itt: u32, offset: u32, len: u32, r2t_sn: u32, seq: u8, s: &mut Script) {
        let (exp, max) = self.window(seq, s);
        let ttt = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1) & 0x7FFF_FFFF;
        let r = R2tRepr {
            lun: Lun::default(),
            itt: Itt(itt),
            ttt: Ttt(ttt),
            stat_sn: self.stat_sn,
            exp_cmd_sn: exp,
            max_cmd_sn: max,
            r2t_sn,
            buffer_offset: offset,
            desired_len: len,
        };
        let d = self.digests();
        self.push("R2T", r.buffer_len(d), |b, d| r.emit(b, d));
        self.r2ts.insert(ttt, (itt, offset, len));
    }

    fn inject_r2t(&mut self, s: &mut Script) {
        let pick = s.u8();
        let itt = self.itt_where(pick, s, |k| matches!(k, HostKind::Scsi { write: true, .. }));
        let flags = s.u8();
        let seq = s.u8();
        let (len, next, sn) = match self.tasks.get(&itt) {
            Some(HostTask {
                kind: HostKind::Scsi { len, .. },
                t,
            }) => (*len, t.r2t_next.max(t.received as u32), t.r2t_sn),
            _ => (8192, 0, 0),
        };
        let offset = match flags & 3 {
            0 | 1 => next,
            2 => 0,
            _ => s.u32(),
        };
        let rest = len.saturating_sub(offset);
        let max_burst = self.c.params().max_burst_len;
        let rlen = match (flags >> 2) & 3 {
            0 => rest.min(max_burst),
            1 => rest.min(u32::from(s.u16())),
            2 => u32::from(s.u16()),
            _ => s.u32(),
        };
        let r2t_sn = if flags & 0x10 != 0 { s.u32() % 4 } else { sn };
        self.r2t(itt, offset, rlen, r2t_sn, seq, s);
        if let Some(t) = self.tasks.get_mut(&itt) {
            t.t.r2t_next = offset.saturating_add(rlen);
            t.t.r2t_sn = r2t_sn.wrapping_add(1);
        }
    }

    fn nop_in(&mut self, itt: u32, ttt: u32, data_len: usize, seq: u8, s: &mut Script) {
        let stat_sn = if itt == RESERVED {
            self.stat_sn
        } else {
            self.stat_sn(seq, s)
        };
        let (exp, max) = self.window(seq, s);
        let data = vec![0x5A; data_len];
        let r = NopInRepr {
            lun: Lun::default(),
            itt: Itt(itt),
            ttt: Ttt(ttt),
            stat_sn,
            exp_cmd_sn: exp,
            max_cmd_sn: max,
            data: &data,
        };
        let d = self.digests();
        self.push("NOP-In", r.buffer_len(d), |b, d| r.emit(b, d));
    }

    fn inject_nop_in(&mut self, s: &mut Script) {
        let flags = s.u8();
        let seq = s.u8();
        match flags & 3 {
            0 | 1 => {
                let itt = self.itt_where(flags >> 2, s, |k| matches!(k, HostKind::Ping { .. }));
                let len = match self.tasks.get(&itt) {
                    Some(HostTask {
                        kind: HostKind::Ping { data_len },
                        ..
                    }) => *data_len,
                    _ => 0,
                };
                self.nop_in(itt, RESERVED, len, seq, s);
            }
            2 => {
                // The target pings: the initiator must answer with this TTT.
                let ttt = self.next_ttt;
                self.next_ttt = self.next_ttt.wrapping_add(1) & 0x7FFF_FFFF;
                self.target_pings.push(ttt);
                let len = usize::from(s.u8() % 64);
                self.nop_in(RESERVED, ttt, len, seq, s);
            }
            _ => {
                let ttt = if flags & 4 != 0 { s.u32() } else { RESERVED };
                let itt = if flags & 8 != 0 { s.u32() } else { RESERVED };
                if itt == RESERVED && ttt != RESERVED {
                    self.target_pings.push(ttt);
                }
                self.nop_in(itt, ttt, 0, seq, s);
            }
        }
    }

    fn inject_reject(&mut self, s: &mut Script) {
        let pick = s.u8();
        let seq = s.u8();
        let reason = RejectReason::try_from(match pick & 0x0F {
            0 => 0x04,
            n => n.min(0x0C),
        })
        .unwrap_or(RejectReason::ProtocolError);
        let header: [u8; BHS] = if self.recent.is_empty() || pick & 0x80 != 0 {
            let mut h = [0u8; BHS];
            h[0] = s.u8() & 0x3F;
            h[16..20].copy_from_slice(&s.u32().to_be_bytes());
            h
        } else {
            let i = usize::from(pick >> 4) % self.recent.len();
            self.recent[self.recent.len() - 1 - i]
        };
        let stat_sn = self.stat_sn(seq, s);
        let (exp, max) = self.window(seq, s);
        let r = RejectRepr {
            reason,
            stat_sn,
            exp_cmd_sn: exp,
            max_cmd_sn: max,
            data_sn: 0,
            rejected_header: &header,
        };
        let d = self.digests();
        self.push("Reject", r.buffer_len(d), |b, d| r.emit(b, d));
    }

    fn inject_async(&mut self, s: &mut Script) {
        let pick = s.u8();
        let seq = s.u8();
        let event = [0, 1, 2, 3, 4, 255, 5, 0][usize::from(pick & 7)];
        let stat_sn = self.stat_sn(seq, s);
        let (exp, max) = self.window(seq, s);
        let data: Vec<u8> = if event == 0 {
            vec![
                0, 18, 0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 0, 0, 0, 0, 0,
            ]
        } else {
            Vec::new()
        };
        let r = AsyncMsgRepr {
            lun: Lun::default(),
            stat_sn,
            exp_cmd_sn: exp,
            max_cmd_sn: max,
            event,
            vcode: 0,
            params: [u16::from(pick >> 3), 2, 20],
            data: &data,
        };
        let d = self.digests();
        self.push("Async Message", r.buffer_len(d), |b, d| r.emit(b, d));
    }

    fn tmf_response(&mut self, itt: u32, response: u8, seq: u8, s: &mut Script) {
        let stat_sn = self.stat_sn(seq, s);
        let (exp, max) = self.window(seq, s);
        let r = TmfResponseRepr {
            response,
            itt: Itt(itt),
            stat_sn,
            exp_cmd_sn: exp,
            max_cmd_sn: max,
        };
        let d = self.digests();
        self.push("TMF Response", r.buffer_len(d), |b, d| r.emit(b, d));
    }

    fn inject_tmf(&mut self, s: &mut Script) {
        let pick = s.u8();
        let itt = self.itt_where(pick, s, |k| matches!(k, HostKind::Tmf));
        let r = s.u8();
        let seq = s.u8();
        let response = [0, 0, 0, 1, 2, 5, 255, 3][usize::from(r & 7)];
        self.tmf_response(itt, response, seq, s);
    }

    fn logout_response(&mut self, itt: u32, response: LogoutResponse, seq: u8, s: &mut Script) {
        let stat_sn = self.stat_sn(seq, s);
        let (exp, max) = self.window(seq, s);
        let r = LogoutResponseRepr {
            response,
            itt: Itt(itt),
            stat_sn,
            exp_cmd_sn: exp,
            max_cmd_sn: max,
            time2wait: 2,
            time2retain: 20,
        };
        let d = self.digests();
        self.push("Logout Response", r.buffer_len(d), |b, d| r.emit(b, d));
    }

    fn inject_logout(&mut self, s: &mut Script) {
        let pick = s.u8();
        let itt = self.itt_where(pick, s, |k| matches!(k, HostKind::Logout));
        let r = s.u8();
        let seq = s.u8();
        let response = match r & 3 {
            0 => LogoutResponse::Success,
            1 => LogoutResponse::CidNotFound,
            2 => LogoutResponse::RecoveryUnsupported,
            _ => LogoutResponse::CleanupFailed,
        };
        self.logout_response(itt, response, seq, s);
    }

    fn text_response(&mut self, itt: u32, flags: u8, seq: u8, s: &mut Script) {
        let stat_sn = self.stat_sn(seq, s);
        let (exp, max) = self.window(seq, s);
        let text: &[u8] = match flags & 3 {
            0 | 1 => b"TargetName=iqn.2024-01.io.example:disk\0TargetAddress=127.0.0.1:3260,1\0",
            2 => b"",
            _ => b"TargetAddress=x\0",
        };
        let cont = flags & 4 != 0;
        let r = TextResponseRepr {
            final_: !cont,
            cont,
            lun: Lun::default(),
            itt: Itt(itt),
            ttt: if cont { Ttt(5) } else { Ttt::RESERVED },
            stat_sn,
            exp_cmd_sn: exp,
            max_cmd_sn: max,
            data: text,
        };
        let d = self.digests();
        self.push("Text Response", r.buffer_len(d), |b, d| r.emit(b, d));
    }

    fn inject_text(&mut self, s: &mut Script) {
        let pick = s.u8();
        if pick & 0x70 == 0x70 {
            return self.send_targets();
        }
        let itt = self.itt_where(pick, s, |k| matches!(k, HostKind::Text));
        let flags = s.u8();
        let seq = s.u8();
        self.text_response(itt, flags, seq, s);
    }

    /// Answers everything outstanding as a well-behaved target would.
    fn serve(&mut self, pick: u8) {
        let mut z = Script { data: &[] };
        if self.in_login() {
            if self.login.as_ref().is_some_and(|l| !l.answered) {
                self.inject_login(&mut z, 0);
            }
            return;
        }
        let p = self.c.params();
        let (mrdsl, max_burst, first_burst, immediate_data, initial_r2t, mxdsl) = (
            p.max_recv_data_segment_len.clamp(512, 16384),
            p.max_burst_len.max(512),
            p.first_burst_len,
            p.immediate_data,
            p.initial_r2t,
            p.max_xmit_data_segment_len,
        );
        let itts: Vec<u32> = self.tasks.keys().copied().collect();
        for itt in itts {
            let Some(task) = self.tasks.get_mut(&itt) else {
                continue;
            };
            if task.t.status_sent {
                continue;
            }
            match task.kind {
                HostKind::Scsi {
                    read, write, len, ..
                } => {
                    if read {
                        // Every byte left, in MaxRecvDataSegmentLength pieces, the status
                        // with the last.
                        let mut pieces = Vec::new();
                        while task.t.data_off < len {
                            let off = task.t.data_off;
                            let n = (len - off).min(mrdsl);
                            pieces.push((off, n, task.t.data_sn, off + n >= len));
                            task.t.data_off += n;
                            task.t.data_sn += 1;
                        }
                        task.t.status_sent = true;
                        for (off, n, sn, last) in pieces {
                            let status = last.then(|| {
                                let stat_sn = self.stat_sn;
                                self.stat_sn = stat_sn.wrapping_add(1);
                                DataInStatus {
                                    status: 0,
                                    stat_sn,
                                    overflow: false,
                                    underflow: false,
                                    residual: 0,
                                }
                            });
                            self.data_in(itt, off, n, status, sn, false, 0, &mut z);
                        }
                        continue;
                    }
                    if write {
                        let len64 = u64::from(len);
                        let immediate = if immediate_data {
                            len64.min(u64::from(first_burst)).min(u64::from(mxdsl))
                        } else {
                            0
                        };
                        let unsolicited = if initial_r2t {
                            immediate
                        } else {
                            len64.min(u64::from(first_burst))
                        };
                        let received = task.t.received;
                        if received >= len64 {
                            task.t.status_sent = true;
                            self.scsi_response(itt, 0, 0, (false, false, 0), &[], 0, &mut z);
                        } else if received >= unsolicited && u64::from(task.t.r2t_next) <= received
                        {
                            let off = received as u32;
                            let n = (len - off).min(max_burst);
                            let sn = task.t.r2t_sn;
                            task.t.r2t_sn += 1;
                            task.t.r2t_next = off + n;
                            self.r2t(itt, off, n, sn, 0, &mut z);
                        }
                        continue;
                    }
                    task.t.status_sent = true;
                    self.scsi_response(itt, 0, 0, (false, false, 0), &[], 0, &mut z);
                }
                HostKind::Ping { data_len } => {
                    task.t.status_sent = true;
                    self.nop_in(itt, RESERVED, data_len, 0, &mut z);
                }
                HostKind::Logout => {
                    if pick & 4 == 0 {
                        task.t.status_sent = true;
                        self.logout_response(itt, LogoutResponse::Success, 0, &mut z);
                    }
                }
                HostKind::Text => {
                    task.t.status_sent = true;
                    self.text_response(itt, 0, 0, &mut z);
                }
                HostKind::Tmf => {
                    task.t.status_sent = true;
                    self.tmf_response(itt, 0, 0, &mut z);
                }
                HostKind::Other => {}
            }
        }
    }

    // ----- bytes in -----

    fn deliver(&mut self, n: usize) {
        let n = n.min(self.rx.len());
        let bytes: Vec<u8> = self.rx.drain(..n).collect();
        trace!("deliver {n} bytes");
        self.c.handle_bytes(&bytes);
        self.check();
    }

    fn deliver_all(&mut self, piece: usize) {
        let bytes = std::mem::take(&mut self.rx);
        trace!("deliver all {} bytes in pieces of {piece}", bytes.len());
        for chunk in bytes.chunks(piece.max(1)) {
            self.c.handle_bytes(chunk);
            self.check();
        }
    }

    /// The harness as a well-behaved target until full feature phase (or a failure).
    fn establish(&mut self) {
        for _ in 0..8 {
            self.transmit(true);
            if !self.in_login() {
                break;
            }
            self.serve(0);
            self.deliver_all(usize::MAX);
        }
        self.transmit(true);
        self.drain();
    }

    fn run(&mut self, s: &mut Script, established: bool) {
        trace!("{:?}", self.cfg);
        self.check();
        if self.c.start_login().is_err() {
            return;
        }
        assert!(
            self.c.start_login().is_err(),
            "a second start_login accepted"
        );
        if established {
            self.establish();
        }
        let mut ops = 0;
        while !s.is_empty() && ops < 4096 {
            ops += 1;
            let op = s.u8() % 26;
            match op {
                0 => {
                    let n = usize::from(s.u8()) + 1;
                    let raw = s.bytes(n);
                    trace!("raw {raw:02x?}");
                    self.clean = false;
                    self.rx.extend_from_slice(raw);
                }
                1 => {
                    let n = usize::from(s.u16());
                    self.deliver(n);
                }
                2 => {
                    let p = usize::from(s.u8());
                    self.deliver_all(if p == 0 { usize::MAX } else { p });
                }
                3 => self.advance(s),
                4 => self.transmit(true),
                5 => self.transmit(false),
                6 => self.submit(s, Kind::Read),
                7 => self.submit(s, Kind::Write),
                8 => self.submit(s, Kind::NoData),
                9 => self.ping(s),
                10 => self.logout(),
                11 => match s.u8() % 4 {
                    0 => self.close(),
                    1 => {
                        trace!("end of stream");
                        self.c.handle_received(Ok(0));
                        self.check();
                    }
                    2 => {
                        trace!("fail(PeerClosed)");
                        self.c.fail(ConnectionError::PeerClosed);
                        self.check();
                    }
                    _ => {
                        // A changed byte in what is queued.
                        let at = usize::from(s.u16());
                        let x = s.u8() | 1;
                        if !self.rx.is_empty() {
                            let i = at % self.rx.len();
                            trace!("flip byte {i} of the receive queue with {x:#04x}");
                            self.clean = false;
                            self.rx[i] ^= x;
                        }
                    }
                },
                12 => self.events(s),
                13 => {
                    let m = s.u8();
                    self.inject_login(s, m);
                }
                14 => self.inject_scsi_response(s),
                15 => self.inject_data_in(s),
                16 => self.inject_r2t(s),
                17 => self.inject_nop_in(s),
                18 => self.inject_reject(s),
                19 => self.inject_async(s),
                20 => self.inject_tmf(s),
                21 => self.inject_logout(s),
                22 => self.inject_text(s),
                // The common cycle, cheap to reach: serve, deliver, send, time.
                23 => {
                    let f = s.u8();
                    self.serve(f);
                    if f & 1 == 0 {
                        self.deliver_all(usize::MAX);
                    }
                    if f & 2 == 0 {
                        self.transmit(true);
                    }
                }
                24 => {
                    self.transmit(true);
                    self.drain();
                }
                _ => {
                    self.advance(s);
                    self.transmit(true);
                }
            }
        }
        // The end: every buffer comes back, one Closed.
        self.transmit(true);
        self.close();
        self.transmit(true);
        self.drain();
        assert!(self.closed_seen, "no Closed event");
        self.check_ended();
        // After the end: a new command completes at once, with its buffer.
        let mut z = Script {
            data: &[0x10, 0, 1],
        };
        self.submit(&mut z, Kind::Read);
        self.drain();
        self.check_ended();
    }
}

fuzz_target!(|data: &[u8]| {
    let mut s = Script { data };
    let (b0, b1, b2) = (s.u8(), s.u8(), s.u8());
    let discovery = b0 & 0x10 != 0;
    let mut cfg = if discovery {
        ConnectionConfig::discovery("iqn.2024-01.io.example:host")
    } else {
        ConnectionConfig::normal("iqn.2024-01.io.example:host", "iqn.2024-01.io.example:disk")
    };
    cfg.queue_id = QueueId(1);
    cfg.queue_depth = DEPTHS[usize::from(b1 & 7)];
    cfg.noop_interval = NOOP_INTERVALS[usize::from((b1 >> 3) & 7)];
    cfg.noop_timeout = NOOP_TIMEOUTS[usize::from(b1 >> 6)];
    if b0 & 2 != 0 {
        cfg.wanted.header_digest = DigestPref::Require;
    }
    if b0 & 4 != 0 {
        cfg.wanted.data_digest = DigestPref::Require;
    }
    if b0 & 8 != 0 {
        cfg.chap = Some(ChapCredentials {
            user: "user".into(),
            secret: b"secretsecret".to_vec(),
        });
    }
    cfg.wanted.offer_all = b0 & 0x80 != 0;
    cfg.wanted.initial_r2t = b2 & 1 != 0;
    cfg.wanted.immediate_data = b2 & 2 == 0;
    cfg.wanted.max_recv_data_segment_len =
        [ulp_iscsi::keys::MAX_DATA_SEGMENT_LEN, 8192, 512, 65536][usize::from((b2 >> 2) & 3)];
    let (mb, fb) = [
        (262_144, 65536),
        (16384, 16384),
        (4096, 512),
        (65536, 65536),
    ][usize::from((b2 >> 4) & 3)];
    cfg.wanted.max_burst_len = mb;
    cfg.wanted.first_burst_len = fb;
    let target_mrdsl = TARGET_MRDSL[usize::from(b2 >> 6)];
    let established = b0 & 1 != 0;
    match (b0 >> 5) & 3 {
        1 => {
            // A device that maps only tags below the queue depth, and only large buffers in
            // few segments; some reads copied.
            let mut limits = Limits::unlimited(ISCSI);
            limits.tag_range = TagRange::BelowQueueDepth;
            limits.io_threshold = 4096;
            limits.max_segments = 2;
            Harness::new(cfg, SwBackend::with_limits(limits), target_mrdsl).run(&mut s, established)
        }
        2 => Harness::new(cfg, NoOffload, target_mrdsl).run(&mut s, established),
        _ => Harness::new(cfg, SwBackend::new(), target_mrdsl).run(&mut s, established),
    }
});
