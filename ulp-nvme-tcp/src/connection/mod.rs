//! The sans-IO NVMe/TCP host side of one queue: one TCP connection (admin or I/O queue) as a
//! state machine, speaking the workspace's [`SansIo`] verbs.
//!
//! Bytes in ([`Connection::handle_bytes`], or the reader path: a driver reads straight into
//! the command's buffer through [`Connection::engine_mut`] and reports with
//! [`Connection::handle_received`]), PDUs out ([`Connection::poll_transmit`]: header, payload
//! borrowed from the command's write buffer, data digest), events out
//! ([`Connection::poll_event`]), time in ([`Connection::handle_timeout`], with
//! [`Connection::poll_timeout`] saying when). It owns the receive [`Engine`] and with it every
//! read buffer from [`Connection::submit`] until the command's completion, which is delivered
//! only once the engine reported [`ulp_ddp_core::Event::Released`] for it. No I/O, no clock,
//! no thread.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::time::{Duration, Instant};

use ulp_ddp_core::timer::Timer;
use ulp_ddp_core::{
    DdpBackend, Engine, EngineOptions, Piece, QueueConfig, SansIo, SgBuffer, Stats, Tag, Transmit,
};

use crate::nvme::{self, Status};
use crate::plugin::{NVME_TCP, NvmeTcpHost};
use crate::wire::capsule_cmd::{SGL_ID_DATA_BLOCK_OFFSET, SGL_ID_TRANSPORT_DATA_BLOCK, SQE_LEN};
use crate::wire::{
    CapsuleCmdRepr, Digests, Error as WireError, H2cDataRepr, IcReqRepr, MAX_HEADER_SPACE, Pda,
    SglDescriptor, Sqe,
};

mod receive;
mod types;

pub use types::{
    Completion, ConnectionConfig, ConnectionError, DEFAULT_ADMIN_TIMEOUT, DEFAULT_IO_TIMEOUT, Data,
    Event, Negotiated, SubmitError, Violation,
};

/// A CID's low 12 bits index a command slot; the high 4 count the slot's uses (Linux's
/// `nvme_cid` generation counter), so a stale or duplicated PDU never reaches the command that
/// uses the slot next. Backends that map only tags below the queue depth (ConnectX-7) get
/// CIDs without generation bits.
const GEN_SHIFT: u32 = 12;
/// Most command slots a queue has with generation bits.
pub const MAX_SLOTS: u16 = 1 << GEN_SHIFT;

/// A PDU waiting to be sent.
#[derive(Debug)]
enum Tx {
    /// Bytes built when queued (ICReq, H2CTermReq).
    Raw(Vec<u8>),
    /// A command capsule (with its in-capsule data).
    Capsule(u16),
    /// H2CData for part of a write, solicited by R2T.
    H2c {
        cid: u16,
        ttag: u16,
        offset: u32,
        len: u32,
        last: bool,
    },
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum State {
    AwaitIcResp,
    Ready,
    Closed,
}

#[derive(Debug)]
struct Cmd {
    /// The CID on the wire (slot and generation).
    cid: u16,
    sqe: [u8; SQE_LEN],
    write: Option<SgBuffer>,
    /// A read's buffer until the capsule goes out (then it is registered with the engine).
    read: Option<SgBuffer>,
    /// The capsule went out: PDUs for the command are accepted from now on.
    sent: bool,
    /// When the command times out (set when sent; `None` until the time is known).
    deadline: Option<Instant>,
    timed_out: bool,
    in_capsule: bool,
    read_len: Option<u64>,
    received: u64,
    last_seen: bool,
    digest_error: bool,
    r2t_active: bool,
    next_r2to: u32,
    internal: bool,
    /// The command has a deadline (not an Asynchronous Event Request).
    timed: bool,
    /// Set once the command is finished and its buffer's teardown started.
    done: Option<(Status, u64, bool)>,
}

/// The NVMe/TCP host side of one queue. See the [module documentation](self).
pub struct Connection<B: DdpBackend> {
    engine: Engine<NvmeTcpHost, B>,
    config: ConnectionConfig,
    state: State,
    negotiated: Option<Negotiated>,
    /// Command slots, indexed by the CID's low bits.
    cmds: Vec<Option<Cmd>>,
    /// Free slots.
    free: VecDeque<u16>,
    /// Each slot's next generation.
    gens: Vec<u8>,
    /// Whether CIDs carry generation bits.
    generations: bool,
    /// Completions queued as events and not yet taken (their CIDs are not free yet).
    unclaimed: usize,
    tx: VecDeque<Tx>,
    /// The header of the PDU [`Connection::poll_transmit`] handed out last.
    tx_header: Vec<u8>,
    /// Its data digest.
    tx_ddgst: [u8; 4],
    events: VecDeque<Event>,
    /// The latest time [`Connection::handle_timeout`] was given.
    now: Option<Instant>,
    keep_alive: Timer,
    keep_alives: u64,
    /// When the next command may time out (the earliest deadline of the sent commands).
    deadlines: Timer,
}

impl<B: DdpBackend> fmt::Debug for Connection<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("qid", &self.config.qid)
            .field("state", &self.state)
            .field("outstanding", &self.outstanding())
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl<B: DdpBackend> Connection<B> {
    /// A connection about to start: its first transmit is the ICReq. The engine offers the
    /// queue to `backend` with the requested digests.
    pub fn new(config: ConnectionConfig, backend: B) -> Self {
        let depth = config.queue_depth.clamp(1, MAX_SLOTS);
        let mut qc = QueueConfig::new(NVME_TCP, config.queue_id);
        qc.header_digest = config.digests.header;
        qc.data_digest = config.digests.data;
        qc.data_alignment = config.hpda.alignment() as u32;
        qc.queue_depth = u32::from(depth);
        let mut plugin = NvmeTcpHost::new();
        plugin.set_hpda(config.hpda);
        let engine = Engine::new(plugin, backend, qc, EngineOptions::default());
        // Slots 0..depth; when the backend offloads, only CIDs it can map, and generation bits
        // only if it maps every 16-bit CID.
        let range = engine
            .limits()
            .filter(|_| engine.is_offloaded())
            .map(|l| l.tag_range);
        let generations =
            range.is_none_or(|r| r.admits(Tag(u32::from(u16::MAX)), u32::from(depth)));
        let mut free: VecDeque<u16> = (0..depth)
            .filter(|&c| range.is_none_or(|r| r.admits(Tag(u32::from(c)), u32::from(depth))))
            .collect();
        if free.is_empty() {
            free = (0..depth).collect();
        }
        let mut ic = Vec::new();
        let icreq = IcReqRepr {
            hpda: config.hpda,
            digests: config.digests,
            maxr2t: 0,
        };
        // An ICReq always encodes.
        let _ = icreq.emit(&mut ic);
        let mut tx = VecDeque::new();
        tx.push_back(Tx::Raw(ic));
        Self {
            engine,
            config,
            state: State::AwaitIcResp,
            negotiated: None,
            cmds: (0..depth).map(|_| None).collect(),
            free,
            gens: vec![0; usize::from(depth)],
            generations,
            unclaimed: 0,
            tx,
            tx_header: Vec::with_capacity(MAX_HEADER_SPACE),
            tx_ddgst: [0; 4],
            events: VecDeque::new(),
            now: None,
            keep_alive: Timer::default(),
            keep_alives: 0,
            deadlines: Timer::default(),
        }
    }

    // ----- getters -----

    /// The configuration.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// What ICResp negotiated, once connected.
    pub fn negotiated(&self) -> Option<Negotiated> {
        self.negotiated
    }

    /// Whether ICResp was accepted and the connection is up.
    pub fn is_connected(&self) -> bool {
        self.state == State::Ready
    }

    /// Whether the connection still takes input (it is not closed).
    pub fn is_open(&self) -> bool {
        self.state != State::Closed
    }

    /// Commands outstanding: including those waiting for their buffer's teardown, and finished
    /// ones whose [`Event::Completed`] was not taken yet.
    pub fn outstanding(&self) -> usize {
        self.cmds.iter().filter(|c| c.is_some()).count() + self.unclaimed
    }

    /// Whether events are queued for [`poll_event`](Self::poll_event) (as of the last input).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Commands that can still be submitted.
    pub fn free_slots(&self) -> usize {
        self.free.len()
    }

    /// The receive engine's counters.
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }

    /// The receive engine.
    pub fn engine(&self) -> &Engine<NvmeTcpHost, B> {
        &self.engine
    }

    /// Keep Alive commands sent.
    pub fn keep_alives(&self) -> u64 {
        self.keep_alives
    }

    /// The name of outstanding command `cid` (for messages), if any.
    pub fn command_name(&self, cid: u16) -> Option<&'static str> {
        let cmd = self.cmd(cid)?;
        Some(nvme::command_name(&cmd.sqe, self.config.qid == 0))
    }

    /// The submission entry of outstanding command `cid` (with its CID and data pointer as
    /// sent), if any: what a caller re-issues after a reconnect.
    pub fn command_sqe(&self, cid: u16) -> Option<[u8; SQE_LEN]> {
        self.cmd(cid).map(|c| c.sqe)
    }

    /// Whether command `cid`'s capsule went out.
    pub fn is_sent(&self, cid: u16) -> bool {
        self.cmd(cid).is_some_and(|c| c.sent)
    }

    /// Whether CIDs carry generation bits (the backend maps every 16-bit CID).
    pub fn has_generations(&self) -> bool {
        self.generations
    }

    /// The slot a CID names.
    fn slot(&self, cid: u16) -> usize {
        if self.generations {
            usize::from(cid & (MAX_SLOTS - 1))
        } else {
            usize::from(cid)
        }
    }

    /// The command `cid` names (slot and generation), finished or not.
    fn cmd(&self, cid: u16) -> Option<&Cmd> {
        self.cmds
            .get(self.slot(cid))?
            .as_ref()
            .filter(|c| c.cid == cid)
    }

    /// As [`cmd`](Self::cmd), mutable.
    fn cmd_entry(&mut self, cid: u16) -> Option<&mut Cmd> {
        let slot = self.slot(cid);
        self.cmds.get_mut(slot)?.as_mut().filter(|c| c.cid == cid)
    }

    /// Sets the in-capsule write limit (from Identify Controller's IOCCSZ).
    pub fn set_in_capsule_limit(&mut self, bytes: usize) {
        self.config.in_capsule_limit = bytes;
    }

    // ----- commands -----

    /// Queues a command. `sqe` is the 64-byte submission entry; its CID and data pointer are
    /// filled in here. A read buffer is registered with the engine (and offered to the
    /// backend) before the command can be transmitted. Returns the CID.
    ///
    /// # Errors
    ///
    /// [`SubmitError`], with the data handed back.
    pub fn submit(&mut self, sqe: [u8; SQE_LEN], data: Data) -> Result<u16, (SubmitError, Data)> {
        self.submit_inner(sqe, data, false, true)
    }

    /// Queues a command that the controller may legitimately hold for as long as it likes
    /// (an Asynchronous Event Request): it gets no deadline. Otherwise as
    /// [`submit`](Self::submit).
    ///
    /// # Errors
    ///
    /// [`SubmitError`], with the data handed back.
    pub fn submit_untimed(
        &mut self,
        sqe: [u8; SQE_LEN],
        data: Data,
    ) -> Result<u16, (SubmitError, Data)> {
        self.submit_inner(sqe, data, false, false)
    }

    fn submit_inner(
        &mut self,
        mut sqe: [u8; SQE_LEN],
        data: Data,
        internal: bool,
        timed: bool,
    ) -> Result<u16, (SubmitError, Data)> {
        if self.state == State::Closed {
            return Err((SubmitError::Closed, data));
        }
        let len = match &data {
            Data::None => 0,
            Data::Read(b) | Data::Write(b) => b.len(),
        };
        let Ok(len32) = u32::try_from(len) else {
            return Err((SubmitError::TooLarge, data));
        };
        let Some(slot) = self.free.pop_front() else {
            return Err((SubmitError::QueueFull, data));
        };
        let cid = if self.generations {
            let g = &mut self.gens[usize::from(slot)];
            let cid = (u16::from(*g) << GEN_SHIFT) | slot;
            *g = (*g + 1) & 0x0F;
            cid
        } else {
            slot
        };
        let fabrics = sqe[0] == nvme::OPC_FABRICS;
        let mut cmd = Cmd {
            cid,
            sqe,
            write: None,
            read: None,
            sent: false,
            deadline: None,
            timed_out: false,
            in_capsule: false,
            read_len: None,
            received: 0,
            last_seen: false,
            digest_error: false,
            r2t_active: false,
            next_r2to: 0,
            internal,
            timed,
            done: None,
        };
        let id = match data {
            Data::None => SGL_ID_TRANSPORT_DATA_BLOCK,
            Data::Read(buffer) => {
                // Registered with the engine when the capsule goes out.
                cmd.read = Some(buffer);
                cmd.read_len = Some(len);
                SGL_ID_TRANSPORT_DATA_BLOCK
            }
            Data::Write(w) => {
                cmd.in_capsule = fabrics || len <= self.config.in_capsule_limit as u64;
                cmd.write = Some(w);
                if cmd.in_capsule {
                    SGL_ID_DATA_BLOCK_OFFSET
                } else {
                    SGL_ID_TRANSPORT_DATA_BLOCK
                }
            }
        };
        {
            let mut s = Sqe::new_unchecked(&mut sqe[..]);
            s.set_cid(cid);
            s.set_dptr(SglDescriptor {
                address: 0,
                length: len32,
                id,
            });
        }
        cmd.sqe = sqe;
        self.cmds[usize::from(slot)] = Some(cmd);
        self.tx.push_back(Tx::Capsule(cid));
        Ok(cid)
    }

    /// Ends the connection from the host side: every outstanding command completes with
    /// [`Status::ABORTED`] (after its buffer's teardown), then [`Event::Closed`] with
    /// [`ConnectionError::LocallyClosed`].
    pub fn close(&mut self) {
        self.fail(ConnectionError::LocallyClosed, None, None);
    }

    /// Reports that the peer closed the connection.
    pub(crate) fn handle_eof(&mut self) {
        let error = if self.state == State::AwaitIcResp {
            ConnectionError::PeerClosedBeforeIcResp
        } else {
            ConnectionError::PeerClosed
        };
        self.fail(error, None, None);
    }

    // ----- input -----

    // ----- time -----

    // ----- output -----

    /// The next event. A command's CID becomes free for a new command when its
    /// [`Event::Completed`] is taken here (or by
    /// [`poll_completion`](Self::poll_completion)), never earlier, so a caller that keys its
    /// own state by CID cannot confuse a finished command with the next one.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events.is_empty() {
            self.process();
        }
        let event = self.events.pop_front();
        if let Some(Event::Completed(c)) = &event {
            self.claimed(c.cid);
        }
        event
    }

    /// Takes the first ready completion (of command `cid`, or of any command with `None`),
    /// leaving other events queued; its CID becomes free.
    pub fn poll_completion(&mut self, cid: Option<u16>) -> Option<Completion> {
        self.process();
        let i = self
            .events
            .iter()
            .position(|e| matches!(e, Event::Completed(c) if cid.is_none_or(|cid| c.cid == cid)))?;
        match self.events.remove(i) {
            Some(Event::Completed(c)) => {
                self.claimed(c.cid);
                Some(c)
            }
            _ => None,
        }
    }

    /// Takes the first event that is not a completion (completions stay queued for
    /// [`poll_completion`](Self::poll_completion)).
    pub fn poll_other_event(&mut self) -> Option<Event> {
        self.process();
        let i = self
            .events
            .iter()
            .position(|e| !matches!(e, Event::Completed(_)))?;
        self.events.remove(i)
    }

    /// The caller took `cid`'s completion: the CID is free again.
    fn claimed(&mut self, cid: u16) {
        self.unclaimed = self.unclaimed.saturating_sub(1);
        let slot = self.slot(cid) as u16;
        self.free.push_back(slot);
    }

    /// The capsule of `cid` goes out: a read's buffer is registered with the engine (setup
    /// before send, the hardware contract) and the command's deadline starts.
    fn mark_sent(&mut self, cid: u16) -> bool {
        let timeout = self.timeout_of(cid);
        let now = self.now;
        let slot = self.slot(cid);
        let Some(cmd) = self.cmds.get_mut(slot).and_then(Option::as_mut) else {
            return false;
        };
        if cmd.cid != cid || cmd.done.is_some() {
            return false;
        }
        if let Some(buffer) = cmd.read.take()
            && let Err((_, buffer)) = self.engine.setup(Tag(u32::from(cid)), buffer)
        {
            // A CID is registered only while its command is outstanding, so this cannot
            // happen; keep the buffer and send nothing rather than lose it.
            cmd.read = Some(buffer);
            return false;
        }
        cmd.sent = true;
        if let Some(timeout) = timeout {
            match now {
                Some(now) => {
                    let at = now + timeout;
                    cmd.deadline = Some(at);
                    match self.deadlines.deadline(None) {
                        Some(d) if d <= at => {}
                        // Pending: fires at the next time learnt, which recomputes it.
                        None if self.deadlines.is_armed() => {}
                        _ => self.deadlines.set(at),
                    }
                }
                // The deadline is fixed at the next time learnt.
                None => self.deadlines.start(Duration::ZERO),
            }
        }
        true
    }

    /// How long command `cid` may stay unanswered: the keep-alive timeout for Keep Alive, the
    /// configured command timeout for the others.
    fn timeout_of(&self, cid: u16) -> Option<Duration> {
        let cmd = self.cmd(cid)?;
        if !cmd.timed {
            None
        } else if cmd.internal {
            self.config.keep_alive.map(|i| i * 2)
        } else {
            self.config.command_timeout
        }
    }

    /// Finds the commands whose deadline passed: a user command is reported once with
    /// [`Event::TimedOut`]; an unanswered Keep Alive ends the connection.
    fn check_deadlines(&mut self, now: Instant) {
        let mut next: Option<Instant> = None;
        let mut expired = Vec::new();
        for slot in 0..self.cmds.len() {
            let Some(cmd) = self.cmds[slot].as_ref() else {
                continue;
            };
            if !cmd.sent || cmd.done.is_some() || cmd.timed_out {
                continue;
            }
            let cid = cmd.cid;
            let Some(timeout) = self.timeout_of(cid) else {
                continue;
            };
            let Some(cmd) = self.cmds[slot].as_mut() else {
                continue;
            };
            let at = *cmd.deadline.get_or_insert(now + timeout);
            if at <= now {
                cmd.timed_out = true;
                // How long it has really been outstanding (the deadline plus any lateness).
                expired.push((cid, cmd.internal, timeout + (now - at)));
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        match next {
            Some(at) => self.deadlines.set(at),
            None => self.deadlines.stop(),
        }
        for (cid, internal, waited) in expired {
            if internal {
                return self.fail(ConnectionError::KeepAliveTimedOut { waited }, None, None);
            }
            let command = self.command_name(cid).unwrap_or("command");
            self.events.push_back(Event::TimedOut {
                cid,
                command,
                waited,
            });
        }
    }

    /// Writes `item`'s header into `tx_header` (and its data digest into `tx_ddgst`); returns
    /// what follows the header, or `None` if the item has nothing to send any more.
    fn emit(&mut self, item: Tx) -> Option<Payload> {
        if let Tx::Capsule(cid) = item
            && !self.mark_sent(cid)
        {
            return None;
        }
        let digests = self.negotiated.map_or(Digests::NONE, |n| n.digests);
        let cpda = self.negotiated.map_or(Pda::ZERO, |n| n.cpda);
        let slot_mask = if self.generations {
            MAX_SLOTS - 1
        } else {
            u16::MAX
        };
        let out = &mut self.tx_header;
        out.clear();
        out.resize(MAX_HEADER_SPACE, 0);
        let (result, range) = match item {
            Tx::Raw(bytes) => {
                out.clear();
                out.extend_from_slice(&bytes);
                return Some(Payload {
                    range: None,
                    ddgst: false,
                });
            }
            Tx::Capsule(cid) => {
                let cmd = self
                    .cmds
                    .get(usize::from(cid & slot_mask))?
                    .as_ref()
                    .filter(|c| c.cid == cid)?;
                let (parts, len) = match (&cmd.write, cmd.in_capsule) {
                    (Some(w), true) => (w.slices(0, w.len()).ok()?, w.len() as usize),
                    _ => (Default::default(), 0),
                };
                let repr = CapsuleCmdRepr { sqe: cmd.sqe };
                (
                    repr.emit_header_parts(out, digests, cpda, &parts),
                    (len > 0).then_some((cid, 0..len)),
                )
            }
            Tx::H2c {
                cid,
                ttag,
                offset,
                len,
                last,
            } => {
                let cmd = self.cmds.get_mut(usize::from(cid & slot_mask))?.as_mut()?;
                if cmd.cid != cid || cmd.done.is_some() {
                    return None;
                }
                if last {
                    cmd.r2t_active = false;
                }
                let range = offset as usize..(offset as usize + len as usize);
                let parts = cmd
                    .write
                    .as_ref()?
                    .slices(u64::from(offset), u64::from(len))
                    .ok()?;
                let repr = H2cDataRepr {
                    cccid: cid,
                    ttag,
                    datao: offset,
                    datal: len,
                    last_pdu: last,
                };
                (
                    repr.emit_header_parts(out, digests, cpda, &parts),
                    Some((cid, range)),
                )
            }
        };
        match result {
            Ok(e) => {
                out.truncate(e.header_len);
                if let Some(d) = e.ddgst {
                    self.tx_ddgst = d;
                }
                Some(Payload {
                    range,
                    ddgst: e.ddgst.is_some(),
                })
            }
            Err(_) => {
                // Lengths were checked at submit; nothing to send for this item.
                out.clear();
                None
            }
        }
    }
}

/// What follows a transmit's header: a range of a command's write data, and a data digest.
struct Payload {
    range: Option<(u16, Range<usize>)>,
    ddgst: bool,
}

impl<B: DdpBackend> SansIo for Connection<B> {
    type Protocol = NvmeTcpHost;
    type Backend = B;

    /// Time passes: sends Keep Alive when due (and none is outstanding), and starts the
    /// keep-alive timer of a connection that came up since the last call.
    fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(now);
        if self.state != State::Ready {
            return;
        }
        if self.deadlines.expire(now) {
            self.check_deadlines(now);
            if self.state != State::Ready {
                return;
            }
        }
        let Some(interval) = self.config.keep_alive else {
            return;
        };
        if self.keep_alive.expire(now) {
            self.keep_alive.set(now + interval);
            let pending = self.cmds.iter().flatten().any(|c| c.internal);
            if !pending
                && self
                    .submit_inner(nvme::keep_alive(), Data::None, true, true)
                    .is_ok()
            {
                self.keep_alives += 1;
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should run next.
    fn poll_timeout(&self) -> Option<Instant> {
        if self.state != State::Ready {
            return None;
        }
        ulp_ddp_core::timer::earliest([
            self.keep_alive.deadline(self.now),
            self.deadlines.deadline(self.now),
        ])
    }

    /// The next PDU to send: its header, the payload borrowed from the command's write buffer
    /// and the data digest. `None` when nothing can be sent now.
    fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        let payload = loop {
            let ready = self.state == State::Ready;
            let front = self.tx.front()?;
            if !ready && !matches!(front, Tx::Raw(_)) {
                return None;
            }
            let item = self.tx.pop_front()?;
            if let Some(payload) = self.emit(item) {
                break payload;
            }
        };
        let ddgst_len = if payload.ddgst { 4 } else { 0 };
        let this = &*self;
        let slices = match payload.range {
            Some((cid, range)) => this
                .cmd(cid)
                .and_then(|c| c.write.as_ref())
                .and_then(|w| w.slices(range.start as u64, range.len() as u64).ok())
                .unwrap_or_default(),
            None => Default::default(),
        };
        Some(Transmit::new(
            &this.tx_header,
            slices,
            &this.tx_ddgst[..ddgst_len],
        ))
    }

    /// Consumes received bytes (any split).
    fn handle_bytes(&mut self, bytes: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        if let Err(e) = self.engine.receive(Piece::bytes(bytes)) {
            self.on_engine_fatal(e);
        }
        self.process();
    }

    /// The receive engine, for a driver's reader path: it reads socket bytes where
    /// [`Engine::read_target`] says (straight into a command's buffer for C2HData payload),
    /// hands them over with [`Engine::receive`] or [`Engine::commit_in_place`] (for example
    /// through [`ulp_ddp_core::SocketReader`]), then calls
    /// [`handle_received`](Connection::handle_received). Do not set up or tear down tags
    /// directly.
    fn engine_mut(&mut self) -> &mut Engine<NvmeTcpHost, B> {
        &mut self.engine
    }

    /// Processes what the driver fed the engine through the reader path: `Ok(0)` is the end of
    /// the stream, `Ok(n)` that `n` bytes went in, `Err` a fatal engine error (the connection
    /// ends with the termination request the error calls for).
    fn handle_received(&mut self, result: Result<usize, ulp_ddp_core::Error<WireError>>) {
        if self.state == State::Closed {
            return;
        }
        match result {
            Ok(0) => {
                self.process();
                self.handle_eof();
            }
            Ok(_) => {}
            Err(e) => self.on_engine_fatal(e),
        }
        self.process();
    }

    /// Whether the connection is over (close the socket once nothing is left to transmit).
    fn is_closed(&self) -> bool {
        self.state == State::Closed
    }
}
