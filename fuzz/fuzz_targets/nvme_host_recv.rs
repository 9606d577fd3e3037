//! The host queue (`ulp_nvme_tcp::Connection`) driven by a script: arbitrary controller bytes
//! and well-formed controller PDUs for the commands in flight, delivered in arbitrary pieces,
//! interleaved with time advances (with Keep Alive and command timeouts configured on some
//! runs), transmits, new commands, event polling and close. The script format is in
//! `fuzz/README.md`.
//!
//! Invariants: never a panic; `outstanding() + free_slots()` is the queue depth; no timer
//! earlier than the latest time given, and after `handle_timeout(now)` none due at `now`; a
//! command times out only once, not before its deadline, and always once its deadline
//! passed; an unanswered Keep Alive ends the connection at the keep-alive timeout; capsules go
//! out once per command, with the command's data; every completion is for an outstanding
//! command and hands back the buffer submitted, whole; the connection ends once, after every
//! command completed; after the end every buffer is back, nothing is registered with the
//! engine, nothing is outstanding.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use ulp_backend_sw::SwBackend;
use ulp_ddp_core::{DdpBackend, Limits, NoOffload, QueueId, SansIo, SgBuffer, TagRange};
use ulp_nvme_tcp::wire::{
    C2hDataRepr, CapsuleRespRepr, Cqe, Digests, IcRespRepr, Pda, R2tRepr, TermReqDirection,
    TermReqRepr,
};
use ulp_nvme_tcp::{
    Connection, ConnectionConfig, ConnectionError, Data, Event, NVME_TCP, Status, nvme,
};

/// `NVME_HOST_RECV_TRACE=1` prints the script's operations (to read a reproducer).
fn tracing() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("NVME_HOST_RECV_TRACE").is_some())
}

macro_rules! trace {
    ($($arg:tt)*) => {
        if tracing() {
            eprintln!($($arg)*);
        }
    };
}

/// A TimedOut left behind by a completion taken out of order fails the run (fixed in the
/// connection: a command's queued TimedOut is voided when it finishes);
/// `NVME_HOST_RECV_LENIENT=1` accepts it, to fuzz an older connection.
fn strict() -> bool {
    static STRICT: OnceLock<bool> = OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("NVME_HOST_RECV_LENIENT").is_none())
}

/// PDU types the host sends.
const ICREQ: u8 = 0x00;
const H2C_TERM_REQ: u8 = 0x02;
const CAPSULE_CMD: u8 = 0x04;
const H2C_DATA: u8 = 0x06;

/// Biggest command buffer the script asks for (keeps executions fast).
const MAX_BUFFER: usize = 16 * 1024;

const KEEP_ALIVE_INTERVALS: [Duration; 8] = [
    Duration::from_millis(1),
    Duration::from_millis(7),
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_millis(2500),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(60),
];

const COMMAND_TIMEOUTS: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_millis(1),
    Duration::from_millis(10),
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(60),
];

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

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Kind {
    Read,
    Write,
    Flush,
}

/// When a command's deadline started.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Sent {
    No,
    /// Its capsule went out before the connection was told any time: the deadline starts at
    /// the next `handle_timeout`.
    BeforeTime,
    At(Instant),
}

/// What the harness knows of a command it submitted (until its completion is taken).
#[derive(Debug)]
struct Cmd {
    kind: Kind,
    len: usize,
    fill: u8,
    sent: Sent,
    timed_out: bool,
    /// Where the next injected R2T / C2HData would continue.
    r2t_next: u32,
    c2h_next: u32,
}

fn pattern(fill: u8, offset: usize, len: usize) -> impl Iterator<Item = u8> {
    (offset..offset + len).map(move |i| fill ^ (i as u8) ^ ((i >> 8) as u8))
}

fn write_buffer(fill: u8, len: usize, segments: usize) -> SgBuffer {
    let data: Vec<u8> = pattern(fill, 0, len).collect();
    split(data, segments)
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

struct Harness<B: DdpBackend> {
    q: Connection<B>,
    cfg: ConnectionConfig,
    depth: usize,
    base: Instant,
    /// The latest time given to `handle_timeout`.
    now: Option<Instant>,
    cmds: BTreeMap<u16, Cmd>,
    /// The last Keep Alive whose capsule went out, and when.
    keep_alive: Option<(u16, Instant)>,
    /// Bytes waiting to be delivered to the connection.
    rx: Vec<u8>,
    fills: u8,
    icreq_sent: bool,
    connected_seen: bool,
    closed_seen: bool,
    /// The Closed event was taken in order (poll_event): nothing may follow it.
    closed_in_order: bool,
    closed_locally: bool,
    /// CIDs whose completion was taken out of order past their deadline, unreported: a
    /// TimedOut for them may still be queued.
    stale: Vec<u16>,
}

impl<B: DdpBackend> Harness<B> {
    fn new(cfg: ConnectionConfig, backend: B) -> Self {
        static BASE: OnceLock<Instant> = OnceLock::new();
        let base = *BASE.get_or_init(Instant::now);
        Self {
            q: Connection::new(cfg, backend),
            cfg,
            depth: usize::from(
                cfg.queue_depth
                    .clamp(1, ulp_nvme_tcp::connection::MAX_SLOTS),
            ),
            base,
            now: None,
            cmds: BTreeMap::new(),
            keep_alive: None,
            rx: Vec::new(),
            fills: 0,
            icreq_sent: false,
            connected_seen: false,
            closed_seen: false,
            closed_in_order: false,
            closed_locally: false,
            stale: Vec::new(),
        }
    }

    fn digests(&self) -> Digests {
        self.cfg.digests
    }

    // ----- time -----

    fn advance(&mut self, s: &mut Script) {
        let kind = s.u8();
        let v = s.u16();
        let now = self.now.unwrap_or(self.base);
        let at = match kind & 3 {
            0 => now + Duration::from_micros(u64::from(v)),
            1 => now + Duration::from_millis(u64::from(v)),
            2 => now + Duration::from_millis(u64::from(v) * 10),
            _ => match self.q.poll_timeout() {
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
            self.check_deadlines_honoured(at);
        }
    }

    fn handle_timeout(&mut self, at: Instant) {
        let open = self.q.is_open();
        trace!("handle_timeout(+{:?})", at - self.base);
        self.q.handle_timeout(at);
        if open && self.now.is_none() {
            // The deadlines of capsules sent before any time was known start now.
            for c in self.cmds.values_mut() {
                if c.sent == Sent::BeforeTime {
                    c.sent = Sent::At(at);
                }
            }
        }
        self.now = Some(at);
        // After handle_timeout(at) nothing is due at `at` any more.
        if let Some(t) = self.q.poll_timeout() {
            assert!(
                t > at,
                "poll_timeout {:?} not after the time just handled",
                t - self.base
            );
        }
        self.check();
    }

    /// After `handle_timeout(at)` and taking every event: every command whose deadline passed
    /// was reported, and an unanswered Keep Alive ended the connection at the KATO.
    fn check_deadlines_honoured(&self, at: Instant) {
        if let Some(timeout) = self.cfg.command_timeout {
            for (cid, c) in &self.cmds {
                if let Sent::At(sent) = c.sent {
                    assert!(
                        c.timed_out || sent + timeout > at,
                        "CID {cid:#06x} sent at {:?} is past its deadline ({timeout:?}) at {:?} and not reported",
                        sent - self.base,
                        at - self.base,
                    );
                }
            }
        }
        if let (Some(interval), Some((cid, sent))) = (self.cfg.keep_alive, self.keep_alive) {
            assert!(
                !self.keep_alive_live(cid) || sent + 2 * interval > at,
                "Keep Alive {cid:#06x} sent at {:?} unanswered at {:?} (KATO {:?})",
                sent - self.base,
                at - self.base,
                2 * interval
            );
        }
    }

    /// Whether Keep Alive `cid` went out and is not answered (without generation bits, a
    /// user command may have its CID since).
    fn keep_alive_live(&self, cid: u16) -> bool {
        self.q.is_sent(cid)
            && self
                .q
                .command_sqe(cid)
                .is_some_and(|sqe| sqe[0] == nvme::OPC_KEEP_ALIVE)
    }

    // ----- invariants -----

    fn check(&self) {
        let q = &self.q;
        let outstanding = q.outstanding();
        assert_eq!(
            outstanding + q.free_slots(),
            self.depth,
            "slots lost or doubled"
        );
        assert!(
            outstanding >= self.cmds.len(),
            "fewer outstanding than submitted"
        );
        let internal = outstanding - self.cmds.len();
        assert!(
            internal <= usize::from(self.cfg.keep_alive.is_some()),
            "{internal} internal commands"
        );
        let sent_reads = self
            .cmds
            .values()
            .filter(|c| c.kind == Kind::Read && c.sent != Sent::No)
            .count();
        assert!(
            q.engine().registered() <= sent_reads,
            "a buffer registered without its read sent"
        );
        let timeout = q.poll_timeout();
        if !q.is_connected() || self.now.is_none() {
            assert_eq!(
                timeout, None,
                "a timer while not connected or before any time"
            );
            return;
        }
        if let Some(t) = timeout
            && let Some(now) = self.now
        {
            assert!(
                t >= now,
                "poll_timeout {:?} before the latest time {:?}",
                t - self.base,
                now - self.base
            );
        }
        if self.cfg.keep_alive.is_some() {
            assert!(timeout.is_some(), "connected with Keep Alive and no timer");
        }
        let now = self.now.expect("time");
        if let (Some(interval), Some((cid, sent))) = (self.cfg.keep_alive, self.keep_alive)
            && self.keep_alive_live(cid)
            && sent + 2 * interval > now
        {
            assert!(
                timeout.is_some_and(|t| t <= sent + 2 * interval),
                "Keep Alive {cid:#06x} due at {:?}, poll_timeout {:?}",
                sent + 2 * interval - self.base,
                timeout.map(|t| t - self.base)
            );
        }
        if let Some(d) = self.cfg.command_timeout {
            for (cid, c) in &self.cmds {
                // (A deadline already passed may be in a TimedOut event not taken yet.)
                if let Sent::At(sent) = c.sent
                    && !c.timed_out
                    && q.is_sent(*cid)
                    && sent + d > now
                {
                    assert!(
                        timeout.is_some_and(|t| t <= sent + d),
                        "CID {cid:#06x} due at {:?}, poll_timeout {:?}",
                        sent + d - self.base,
                        timeout.map(|t| t - self.base)
                    );
                }
            }
        }
    }

    // ----- commands -----

    fn submit(&mut self, s: &mut Script, kind: Kind) {
        let len = 1 + usize::from(s.u16()) % MAX_BUFFER;
        let segments = usize::from(s.u8() % 4) + 1;
        let blocks = len.div_ceil(512) as u32;
        self.fills = self.fills.wrapping_add(1);
        let fill = self.fills;
        let (sqe, data) = match kind {
            Kind::Read => (
                nvme::read(1, 0, blocks),
                Data::Read(split(vec![0; len], segments)),
            ),
            Kind::Write => (
                nvme::write(1, 0, blocks),
                Data::Write(write_buffer(fill, len, segments)),
            ),
            Kind::Flush => (nvme::flush(1), Data::None),
        };
        let len = if kind == Kind::Flush { 0 } else { len };
        let free = self.q.free_slots();
        let open = self.q.is_open();
        let result = self.q.submit(sqe, data);
        trace!(
            "submit {kind:?} len {len}: {:?}",
            result.as_ref().map_err(|e| e.0)
        );
        match result {
            Ok(cid) => {
                assert!(
                    open && free > 0,
                    "submit accepted on a closed or full queue"
                );
                assert!(
                    !self.cmds.contains_key(&cid),
                    "CID {cid:#06x} handed out twice"
                );
                if self.q.has_generations() {
                    assert!(
                        usize::from(cid & 0x0FFF) < self.depth,
                        "CID {cid:#06x} outside the queue"
                    );
                } else {
                    assert!(
                        usize::from(cid) < self.depth,
                        "CID {cid:#06x} outside the queue"
                    );
                }
                self.cmds.insert(
                    cid,
                    Cmd {
                        kind,
                        len,
                        fill,
                        sent: Sent::No,
                        timed_out: false,
                        r2t_next: 0,
                        c2h_next: 0,
                    },
                );
            }
            Err((e, data)) => {
                use ulp_nvme_tcp::SubmitError;
                match e {
                    SubmitError::Closed => assert!(!open),
                    SubmitError::QueueFull => assert!(open && free == 0),
                    other => panic!("submit refused: {other:?}"),
                }
                let back = match data {
                    Data::None => 0,
                    Data::Read(b) | Data::Write(b) => b.len() as usize,
                };
                assert_eq!(back, len, "refused data not handed back whole");
            }
        }
    }

    // ----- events -----

    fn events(&mut self, s: &mut Script) {
        match s.u8() % 5 {
            0 => match self.q.poll_event() {
                Some(e) => self.event(e, true),
                None => self.stale.clear(),
            },
            1 => self.drain(),
            2 => {
                if let Some(c) = self.q.poll_completion(None) {
                    self.event(Event::Completed(c), false);
                }
            }
            3 => {
                let pick = usize::from(s.u8());
                let cid = self.cmds.keys().nth(pick % self.cmds.len().max(1)).copied();
                if let Some(c) = self.q.poll_completion(Some(cid.unwrap_or(0))) {
                    self.event(Event::Completed(c), false);
                }
            }
            _ => match self.q.poll_other_event() {
                Some(e) => {
                    assert!(!matches!(e, Event::Completed(_)));
                    self.event(e, false);
                }
                None => self.stale.clear(),
            },
        }
        self.check();
    }

    fn drain(&mut self) {
        while let Some(e) = self.q.poll_event() {
            self.event(e, true);
        }
        self.stale.clear();
        if self.closed_seen {
            self.check_ended();
        }
        self.check();
    }

    fn check_ended(&self) {
        assert!(!self.q.is_open());
        assert!(
            self.cmds.is_empty(),
            "commands left after the end: {:?}",
            self.cmds
        );
        assert_eq!(
            self.q.engine().registered(),
            0,
            "buffers registered after the end"
        );
        assert_eq!(self.q.outstanding(), 0, "outstanding after the end");
        assert_eq!(self.q.poll_timeout(), None);
    }

    fn event(&mut self, e: Event, in_order: bool) {
        trace!("event {e:?}");
        assert!(!self.closed_in_order, "{e:?} after Closed");
        match e {
            Event::Connected(n) => {
                assert!(!self.connected_seen, "connected twice");
                self.connected_seen = true;
                assert_eq!(n.digests, self.cfg.digests);
            }
            Event::Completed(c) => {
                let cmd = self
                    .cmds
                    .remove(&c.cid)
                    .unwrap_or_else(|| panic!("completion of CID {:#06x}, not outstanding", c.cid));
                if !in_order
                    && !cmd.timed_out
                    && let (Some(timeout), Sent::At(sent), Some(now)) =
                        (self.cfg.command_timeout, cmd.sent, self.now)
                    && sent + timeout <= now
                {
                    // Its TimedOut may still be queued behind (see the TimedOut arm).
                    self.stale.push(c.cid);
                }
                if c.status == Status::SUCCESS {
                    assert_ne!(cmd.sent, Sent::No, "CID {:#06x} succeeded unsent", c.cid);
                }
                if c.by_success_flag {
                    assert_eq!(cmd.kind, Kind::Read);
                }
                match cmd.kind {
                    Kind::Flush => assert!(c.buffer.is_none()),
                    Kind::Read => {
                        let b = c.buffer.expect("read buffer back");
                        assert_eq!(b.len(), cmd.len as u64, "read buffer size");
                    }
                    Kind::Write => {
                        let b = c.buffer.expect("write buffer back");
                        assert_eq!(b.len(), cmd.len as u64, "write buffer size");
                        assert!(
                            b.to_vec().into_iter().eq(pattern(cmd.fill, 0, cmd.len)),
                            "write buffer changed"
                        );
                    }
                }
            }
            Event::TimedOut { cid, waited, .. } => {
                let now = self.now.expect("a timeout before any time");
                let timeout = self
                    .cfg
                    .command_timeout
                    .expect("a timeout without command_timeout");
                // How long it was really outstanding: the timeout, plus how late the time
                // that found it came.
                assert!(waited >= timeout, "waited {waited:?} < timeout {timeout:?}");
                if let Some(i) = self.stale.iter().position(|&c| c == cid) {
                    // Fixed (see fuzz/README.md): a command's completion taken with
                    // poll_completion ahead of its queued TimedOut leaves that TimedOut behind,
                    // naming a CID that is free again (or already another command's).
                    assert!(
                        !strict(),
                        "TimedOut for CID {cid:#06x} after its completion was taken"
                    );
                    self.stale.remove(i);
                    return;
                }
                let cmd = self
                    .cmds
                    .get_mut(&cid)
                    .unwrap_or_else(|| panic!("TimedOut for CID {cid:#06x}, not outstanding"));
                assert!(!cmd.timed_out, "CID {cid:#06x} timed out twice");
                cmd.timed_out = true;
                match cmd.sent {
                    Sent::At(sent) => {
                        assert!(sent + timeout <= now, "CID {cid:#06x} timed out early");
                        assert!(waited <= now - sent, "CID {cid:#06x} waited {waited:?}");
                    }
                    other => panic!("CID {cid:#06x} timed out, sent: {other:?}"),
                }
            }
            Event::Closed(error) => {
                assert!(!self.closed_seen, "closed twice");
                assert!(!self.q.is_open());
                self.closed_seen = true;
                self.closed_in_order = in_order;
                match error {
                    ConnectionError::KeepAliveTimedOut { waited } => {
                        let interval = self.cfg.keep_alive.expect("Keep Alive not configured");
                        assert!(waited >= 2 * interval, "waited {waited:?}");
                    }
                    ConnectionError::KeepAliveFailed(status) => {
                        assert!(self.cfg.keep_alive.is_some());
                        assert!(!status.is_success());
                    }
                    ConnectionError::LocallyClosed => assert!(self.closed_locally),
                    _ => {}
                }
                let _ = error.to_string();
            }
            other => panic!("unexpected event {other:?}"),
        }
    }

    // ----- transmit -----

    fn transmit(&mut self, all: bool) {
        loop {
            let open = self.q.is_open();
            let connected = self.q.is_connected();
            let Some(pdu) = self.q.poll_transmit().map(|t| t.to_vec()) else {
                break;
            };
            self.transmitted(&pdu, open, connected);
            if !all {
                break;
            }
        }
        self.check();
    }

    fn transmitted(&mut self, pdu: &[u8], open: bool, connected: bool) {
        assert!(pdu.len() >= 8);
        let ty = pdu[0];
        trace!(
            "transmit type {ty:#04x}: {:02x?}",
            &pdu[..pdu.len().min(24)]
        );
        let plen = u32::from_le_bytes([pdu[4], pdu[5], pdu[6], pdu[7]]) as usize;
        assert_eq!(plen, pdu.len(), "PLEN");
        if !open {
            assert_eq!(ty, H2C_TERM_REQ, "only H2CTermReq after the end");
            return;
        }
        if !self.icreq_sent {
            assert_eq!(ty, ICREQ, "ICReq first");
            self.icreq_sent = true;
            return;
        }
        assert!(connected, "PDU type {ty:#04x} before ICResp");
        let pdo = usize::from(pdu[3]);
        let ddgst = if pdu[1] & 0x02 != 0 { 4 } else { 0 };
        let data = if pdo == 0 {
            &[][..]
        } else {
            &pdu[pdo..plen - ddgst]
        };
        match ty {
            CAPSULE_CMD => {
                let opcode = pdu[8];
                let cid = u16::from_le_bytes([pdu[10], pdu[11]]);
                let sgl_len = u32::from_le_bytes([pdu[40], pdu[41], pdu[42], pdu[43]]) as usize;
                let sent = match self.now {
                    Some(now) => Sent::At(now),
                    None => Sent::BeforeTime,
                };
                if opcode == nvme::OPC_KEEP_ALIVE {
                    assert!(
                        self.cfg.keep_alive.is_some(),
                        "Keep Alive without keep_alive"
                    );
                    assert!(!self.cmds.contains_key(&cid));
                    let now = self.now.expect("Keep Alive before any time");
                    self.keep_alive = Some((cid, now));
                    return;
                }
                let cmd = self
                    .cmds
                    .get_mut(&cid)
                    .unwrap_or_else(|| panic!("capsule for CID {cid:#06x}, not outstanding"));
                assert_eq!(cmd.sent, Sent::No, "capsule of CID {cid:#06x} sent twice");
                cmd.sent = sent;
                let expected = match cmd.kind {
                    Kind::Read => nvme::OPC_READ,
                    Kind::Write => nvme::OPC_WRITE,
                    Kind::Flush => nvme::OPC_FLUSH,
                };
                assert_eq!(opcode, expected);
                assert_eq!(sgl_len, cmd.len, "SGL length");
                let in_capsule = cmd.kind == Kind::Write && cmd.len <= self.cfg.in_capsule_limit;
                assert_eq!(
                    data.len(),
                    if in_capsule { cmd.len } else { 0 },
                    "in-capsule data"
                );
                assert!(
                    data.iter().copied().eq(pattern(cmd.fill, 0, data.len())),
                    "in-capsule data"
                );
            }
            H2C_DATA => {
                let cid = u16::from_le_bytes([pdu[8], pdu[9]]);
                let datao = u32::from_le_bytes([pdu[12], pdu[13], pdu[14], pdu[15]]) as usize;
                let datal = u32::from_le_bytes([pdu[16], pdu[17], pdu[18], pdu[19]]) as usize;
                let cmd = self
                    .cmds
                    .get(&cid)
                    .unwrap_or_else(|| panic!("H2CData for CID {cid:#06x}, not outstanding"));
                assert_eq!(cmd.kind, Kind::Write);
                assert_ne!(cmd.sent, Sent::No, "H2CData before the capsule");
                assert_eq!(datal, data.len());
                assert!(datao + datal <= cmd.len, "H2CData beyond the write");
                assert!(
                    cmd.len > self.cfg.in_capsule_limit,
                    "H2CData for an in-capsule write"
                );
                let maxh2cdata = self.q.negotiated().expect("negotiated").maxh2cdata;
                assert!(datal as u32 <= maxh2cdata.max(4), "H2CData over MAXH2CDATA");
                assert!(
                    data.iter().copied().eq(pattern(cmd.fill, datao, datal)),
                    "H2CData data"
                );
            }
            other => panic!("host sent PDU type {other:#04x}"),
        }
    }

    // ----- controller PDUs -----

    /// A CID for an injected PDU: an outstanding command's (sometimes with another
    /// generation), the last Keep Alive's, or any.
    fn target(&self, s: &mut Script) -> u16 {
        let pick = usize::from(s.u8());
        let generation = s.u8();
        let n = self.cmds.len() + 1;
        let cid = match pick % (n + 1) {
            i if i < self.cmds.len() => *self.cmds.keys().nth(i).expect("index"),
            i if i == self.cmds.len() => self.keep_alive.map_or(0, |k| k.0),
            _ => return s.u16(),
        };
        if generation & 0x80 != 0 {
            cid ^ (u16::from(generation & 0x0F) << 12)
        } else {
            cid
        }
    }

    /// Digests for an injected PDU: the configured ones, or now and then others.
    fn pdu_digests(&self, flags: u8) -> Digests {
        if flags & 0x40 != 0 {
            ulp_nvme_tcp::wire::digests_from_dgst(flags & 3)
        } else {
            self.digests()
        }
    }

    fn inject_resp(&mut self, s: &mut Script) {
        let cid = self.target(s);
        let flags = s.u8();
        let status = if flags & 0x80 != 0 {
            s.u16()
        } else if flags & 0x20 != 0 {
            Status::generic(nvme::SC_INVALID_FIELD).to_cqe()
        } else {
            0
        };
        let dw0 = if flags & 0x10 != 0 { s.u32() } else { 0 };
        let cqe = Cqe {
            cid,
            status,
            dw0,
            ..Cqe::default()
        };
        let digests = self.pdu_digests(flags);
        trace!("inject CapsuleResp {cqe:?}");
        let _ = CapsuleRespRepr { cqe }.emit(&mut self.rx, digests);
    }

    fn inject_c2h(&mut self, s: &mut Script) {
        let cid = self.target(s);
        let flags = s.u8();
        let (len, next) = self
            .cmds
            .get(&cid)
            .map_or((4096, 0), |c| (c.len as u32, c.c2h_next));
        let datao = match (flags >> 2) & 3 {
            0 => next,
            1 => 0,
            2 => u32::from(s.u16()),
            _ => s.u32(),
        };
        let rest = len.saturating_sub(datao).max(1);
        let datal = match (flags >> 4) & 3 {
            0 => rest,
            1 => rest.min(u32::from(s.u16() % 4096) + 1),
            2 => u32::from(s.u16()) + 1,
            _ => 1,
        };
        let datal = datal.min(MAX_BUFFER as u32 + 1);
        let last = flags & 0x40 != 0 || datao.saturating_add(datal) >= len;
        let success = last && flags & 0x80 != 0;
        let fill = s.u8();
        let corrupt = flags & 0x03 == 0x03;
        let pda = if flags & 0x02 != 0 && !corrupt {
            Pda::ZERO
        } else {
            self.cfg.hpda
        };
        let payload = vec![fill; datal as usize];
        let start = self.rx.len();
        let repr = C2hDataRepr {
            cccid: cid,
            datao,
            datal,
            last_pdu: last,
            success,
        };
        let digests = self.digests();
        trace!("inject {repr:?} corrupt {corrupt}");
        if repr.emit(&mut self.rx, digests, pda, &payload).is_ok() {
            if let Some(c) = self.cmds.get_mut(&cid) {
                c.c2h_next = datao.saturating_add(datal);
            }
            if corrupt {
                // A bad data digest (or, without one, a changed last data byte).
                let end = self.rx.len();
                if end > start {
                    self.rx[end - 1] ^= 0x5A;
                }
            }
        }
    }

    fn inject_r2t(&mut self, s: &mut Script) {
        let cid = self.target(s);
        let flags = s.u8();
        let (len, next) = self
            .cmds
            .get(&cid)
            .map_or((8192, 0), |c| (c.len as u32, c.r2t_next));
        let r2to = match flags & 3 {
            0 | 1 => next,
            2 => 0,
            _ => s.u32(),
        };
        let rest = len.saturating_sub(r2to);
        let r2tl = match (flags >> 2) & 3 {
            0 => rest,
            1 => rest.min(u32::from(s.u16())),
            2 => u32::from(s.u16()),
            _ => s.u32(),
        };
        let ttag = s.u16();
        let repr = R2tRepr {
            cccid: cid,
            ttag,
            r2to,
            r2tl,
        };
        let digests = self.pdu_digests(flags);
        trace!("inject {repr:?}");
        if repr.emit(&mut self.rx, digests).is_ok()
            && let Some(c) = self.cmds.get_mut(&cid)
        {
            c.r2t_next = r2to.saturating_add(r2tl);
        }
    }

    fn inject_other(&mut self, s: &mut Script) {
        let flags = s.u8();
        match flags & 3 {
            0 | 1 => {
                let digests = if flags & 0x04 != 0 {
                    ulp_nvme_tcp::wire::digests_from_dgst(flags >> 3)
                } else {
                    self.digests()
                };
                let cpda = Pda::new((flags >> 5) & 7).unwrap_or(Pda::ZERO);
                let maxh2cdata = if flags & 1 != 0 {
                    4096 * (u32::from(s.u8() % 8) + 1)
                } else {
                    4096
                };
                let repr = IcRespRepr {
                    cpda,
                    digests,
                    maxh2cdata,
                };
                trace!("inject {repr:?}");
                let _ = repr.emit(&mut self.rx);
            }
            2 => {
                let repr = TermReqRepr {
                    direction: TermReqDirection::ControllerToHost,
                    fes: u16::from(flags >> 2) % 8,
                    fei: s.u32(),
                };
                let len = usize::from(s.u8() % 140);
                let data = vec![0xEE; len];
                trace!("inject {repr:?}");
                let _ = repr.emit(&mut self.rx, &data);
            }
            _ => {
                // A PDU the host never receives, or truncated garbage of a known type.
                let ty = s.u8() % 12;
                let mut pdu = vec![ty, 0, 24, 0, 24, 0, 0, 0];
                pdu.resize(24, s.u8());
                trace!("inject {pdu:02x?}");
                self.rx.extend_from_slice(&pdu);
            }
        }
    }

    // ----- bytes in -----

    fn deliver(&mut self, n: usize) {
        let n = n.min(self.rx.len());
        let bytes: Vec<u8> = self.rx.drain(..n).collect();
        trace!("deliver {n} bytes");
        self.q.handle_bytes(&bytes);
        self.check();
    }

    fn deliver_all(&mut self, piece: usize) {
        let bytes = std::mem::take(&mut self.rx);
        trace!("deliver all {} bytes in pieces of {piece}", bytes.len());
        for chunk in bytes.chunks(piece.max(1)) {
            self.q.handle_bytes(chunk);
            self.check();
        }
    }

    fn close(&mut self) {
        trace!("close");
        if self.q.is_open() {
            self.closed_locally = true;
        }
        self.q.close();
        assert!(!self.q.is_open());
        self.check();
    }

    fn run(&mut self, s: &mut Script, connect: bool) {
        trace!("{:?}", self.cfg);
        self.check();
        self.transmit(true);
        if connect {
            let _ = IcRespRepr {
                cpda: Pda::ZERO,
                digests: self.digests(),
                maxh2cdata: 8192,
            }
            .emit(&mut self.rx);
            self.deliver_all(usize::MAX);
        }
        let mut ops = 0;
        while !s.is_empty() && ops < 4096 {
            ops += 1;
            match s.u8() % 16 {
                0 => {
                    let n = usize::from(s.u8()) + 1;
                    let raw = s.bytes(n);
                    trace!("raw {raw:02x?}");
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
                3 | 4 => self.advance(s),
                5 => self.transmit(true),
                6 => self.transmit(false),
                7 => self.submit(s, Kind::Read),
                8 => self.submit(s, Kind::Write),
                9 => self.submit(s, Kind::Flush),
                10 => self.events(s),
                11 => self.inject_resp(s),
                12 => self.inject_c2h(s),
                13 => self.inject_r2t(s),
                14 => self.inject_other(s),
                _ => match s.u8() % 8 {
                    0 => {
                        trace!("end of stream");
                        self.q.handle_received(Ok(0));
                        self.check();
                    }
                    1 => self.close(),
                    2 => {
                        // A changed byte in what is queued: bad header digests, near-valid
                        // headers.
                        let at = usize::from(s.u16());
                        let x = s.u8() | 1;
                        if !self.rx.is_empty() {
                            let i = at % self.rx.len();
                            trace!("flip byte {i} of the receive queue with {x:#04x}");
                            self.rx[i] ^= x;
                        }
                    }
                    _ => self.drain(),
                },
            }
        }
        // The end: every buffer comes back.
        self.close();
        self.transmit(true);
        self.drain();
        assert!(self.closed_seen, "no Closed event");
        self.check_ended();
        assert_eq!(self.q.free_slots(), self.depth);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut s = Script { data };
    let (b0, b1, b2) = (s.u8(), s.u8(), s.u8());
    let digests = ulp_nvme_tcp::wire::digests_from_dgst(b0 & 3);
    let mut cfg = if b0 & 0x04 != 0 {
        ConnectionConfig::admin(QueueId(0), digests)
    } else {
        ConnectionConfig::io(QueueId(1), 1, 4, digests)
    };
    cfg.queue_depth = [1, 2, 3, 4, 6, 8, 16, 32][usize::from(b1 & 7)];
    cfg.in_capsule_limit = [0, 512, 4096, 8192][usize::from((b1 >> 3) & 3)];
    cfg.hpda = Pda::new([0, 0, 1, 3][usize::from(b0 >> 6)]).expect("pda");
    cfg.keep_alive = (b2 & 0x08 != 0).then(|| KEEP_ALIVE_INTERVALS[usize::from(b2 & 7)]);
    cfg.command_timeout = match b2 >> 4 {
        0..=3 => match b1 >> 5 {
            0 => None,
            _ => Some(if cfg.qid == 0 {
                ulp_nvme_tcp::connection::DEFAULT_ADMIN_TIMEOUT
            } else {
                ulp_nvme_tcp::connection::DEFAULT_IO_TIMEOUT
            }),
        },
        n => Some(COMMAND_TIMEOUTS[usize::from(n & 7)]),
    };
    let connect = b0 & 0x20 != 0;
    match (b0 >> 3) & 3 {
        1 => {
            // A device that maps only CIDs below the queue depth, and only large buffers in
            // few segments: no generation bits; some reads copied.
            let mut limits = Limits::unlimited(NVME_TCP);
            limits.tag_range = TagRange::BelowQueueDepth;
            limits.io_threshold = 4096;
            limits.max_segments = 2;
            Harness::new(cfg, SwBackend::with_limits(limits)).run(&mut s, connect);
        }
        2 => Harness::new(cfg, NoOffload).run(&mut s, connect),
        _ => Harness::new(cfg, SwBackend::new()).run(&mut s, connect),
    }
});
