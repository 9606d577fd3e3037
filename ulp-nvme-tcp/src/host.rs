//! The sans-IO NVMe/TCP host queue: one TCP connection (admin or I/O queue) as a state machine.
//!
//! Bytes in ([`HostQueue::handle_bytes`], or the reader path: a driver reads straight into the
//! command's buffer through [`HostQueue::engine_mut`] and reports with
//! [`HostQueue::handle_received`]; this module does no I/O), PDUs out
//! ([`HostQueue::poll_transmit`]: a header in a small buffer, then a payload slice borrowed from
//! the command, then a data digest), events out ([`HostQueue::poll_event`]), time in
//! ([`HostQueue::handle_timeout`]). It owns the receive [`Engine`] and with it every read
//! buffer from [`HostQueue::submit`] until the command's completion, which is delivered only
//! once the engine reported [`Event::Released`] for it.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::time::{Duration, Instant};

use ulp_ddp_core::{
    DataError, DdpBackend, Engine, EngineOptions, Event, Piece, QueueConfig, QueueId, SgBuffer,
    Stats, Tag,
};

use crate::nvme::{self, Status};
use crate::plugin::{ControllerPdu, NVME_TCP, NvmeTcpHost};
use crate::wire::capsule_cmd::{SGL_ID_DATA_BLOCK_OFFSET, SGL_ID_TRANSPORT_DATA_BLOCK, SQE_LEN};
use crate::wire::{
    CapsuleCmdRepr, Cqe, Digests, Error as WireError, FatalErrorStatus, H2cDataRepr, IcReqRepr,
    MAX_HEADER_SPACE, MAX_TERM_REQ_DATA, Pda, R2tRepr, SglDescriptor, Sqe, TermReqDirection,
    TermReqRepr,
};

/// How a host queue is set up.
#[derive(Clone, Copy, Debug)]
pub struct HostConfig {
    /// The queue's identifier within the DDP backend (unique per backend).
    pub queue_id: QueueId,
    /// NVMe queue identifier (0: admin queue).
    pub qid: u16,
    /// Most commands outstanding at once; CIDs are `0..queue_depth`.
    pub queue_depth: u16,
    /// Digests to request in ICReq. The controller must enable exactly these (as Linux
    /// requires).
    pub digests: Digests,
    /// Alignment the host asks for C2HData payload (HPDA).
    pub hpda: Pda,
    /// Most write data sent in the command capsule; larger writes wait for R2T. Fabrics
    /// commands always carry their data in the capsule.
    pub in_capsule_limit: usize,
    /// Send Keep Alive this often (the admin queue; half the KATO given to Connect).
    pub keep_alive: Option<Duration>,
}

impl HostConfig {
    /// An admin queue configuration (qid 0, depth 32, 8 KiB in-capsule like Linux).
    pub fn admin(queue_id: QueueId, digests: Digests) -> Self {
        Self {
            queue_id,
            qid: 0,
            queue_depth: 32,
            digests,
            hpda: Pda::ZERO,
            in_capsule_limit: 8192,
            keep_alive: None,
        }
    }

    /// An I/O queue configuration; `in_capsule_limit` comes from Identify (IOCCSZ).
    pub fn io(queue_id: QueueId, qid: u16, queue_depth: u16, digests: Digests) -> Self {
        Self {
            queue_id,
            qid,
            queue_depth,
            digests,
            hpda: Pda::ZERO,
            in_capsule_limit: 0,
            keep_alive: None,
        }
    }
}

/// What ICResp negotiated.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Negotiated {
    /// Digests in use.
    pub digests: Digests,
    /// The controller's required alignment for data the host sends.
    pub cpda: Pda,
    /// Most data per H2CData PDU.
    pub maxh2cdata: u32,
}

/// Data of a command.
#[derive(Debug)]
pub enum Data {
    /// No data.
    None,
    /// Data from the controller lands in this buffer (registered with the engine until the
    /// command completes).
    Read(SgBuffer),
    /// Data to the controller (in the capsule or solicited by R2T).
    Write(Vec<u8>),
}

/// A finished command. Its buffer is the caller's again.
#[derive(Debug)]
pub struct Completion {
    /// The command identifier it ran under.
    pub cid: u16,
    /// NVMe status (synthesized for SUCCESS completions, data digest errors and aborts).
    pub status: Status,
    /// Command-specific result (CQE DW0, DW1).
    pub result: u64,
    /// The read buffer, with the data placed.
    pub buffer: Option<SgBuffer>,
    /// The write data, handed back.
    pub write: Option<Vec<u8>>,
    /// Whether the backend mapped the read buffer (else the CPU placed its data).
    pub offloaded: bool,
    /// The controller completed it with C2HData SUCCESS (no CapsuleResp).
    pub by_success_flag: bool,
}

/// What a host queue reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum HostEvent {
    /// ICResp accepted: commands flow.
    Connected(Negotiated),
    /// A command finished.
    Completed(Completion),
    /// The connection is over: close the socket once [`HostQueue::poll_transmit`] returns
    /// `None` (it may still have an H2CTermReq to send). Outstanding commands complete with
    /// [`Status::ABORTED`] first.
    Terminated(HostError),
}

/// A protocol violation by the controller.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Violation {
    /// A PDU of this type arrived when it may not (before ICResp, a second ICResp...).
    UnexpectedPdu(u8),
    /// ICResp enabled other digests than requested.
    DigestsRefused {
        /// Requested.
        requested: Digests,
        /// Enabled by the controller.
        enabled: Digests,
    },
    /// A PDU names a CID with no outstanding command (or one already finished).
    UnknownCid(u16),
    /// R2T for a command that has no data to solicit.
    NotAWrite(u16),
    /// A second R2T while one is in progress (MAXR2T is 0).
    R2tLimit(u16),
    /// R2T with R2TL 0.
    EmptyR2t(u16),
    /// R2TO is not where the previous R2T ended.
    R2tOffset {
        /// The command.
        cid: u16,
        /// Expected offset.
        expected: u32,
        /// R2TO on the wire.
        got: u32,
    },
    /// R2TO + R2TL passes the end of the command's data.
    R2tOutOfRange(u16),
    /// C2HData beyond the command's buffer.
    DataOutOfRange(u16),
    /// C2HData overlapping data already received.
    DuplicateData(u16),
    /// C2HData after the command's LAST_PDU.
    DataAfterLast(u16),
    /// C2HData for a command whose earlier data arrived in too many separate pieces.
    TooFragmented(u16),
}

impl Violation {
    /// The FES and FEI of the H2CTermReq this violation calls for.
    pub fn fatal_error(&self) -> (FatalErrorStatus, u32) {
        use FatalErrorStatus::*;
        match self {
            Self::UnexpectedPdu(_) | Self::DataAfterLast(_) => (PduSequenceError, 0),
            Self::DigestsRefused { .. } => (UnsupportedParameter, 11),
            Self::UnknownCid(_) | Self::NotAWrite(_) => (InvalidHeaderField, 8),
            Self::R2tLimit(_) => (DataTransferLimitExceeded, 0),
            Self::EmptyR2t(_) => (InvalidHeaderField, 16),
            Self::R2tOffset { .. } | Self::DuplicateData(_) | Self::TooFragmented(_) => {
                (InvalidHeaderField, 12)
            }
            Self::R2tOutOfRange(_) | Self::DataOutOfRange(_) => (DataTransferOutOfRange, 0),
        }
    }
}

/// Why a host queue's connection ended.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum HostError {
    /// The receive engine could not frame or trust the stream (header digest, lengths...).
    Engine(ulp_ddp_core::Error<WireError>),
    /// A PDU did not parse.
    Wire(WireError),
    /// The controller broke the protocol.
    Protocol(Violation),
    /// The controller sent C2HTermReq.
    PeerTerminated {
        /// Fatal error status.
        fes: u16,
        /// Fatal error information.
        fei: u32,
    },
    /// The peer closed the connection.
    Eof,
    /// The caller closed the queue.
    Closed,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Engine(e) => write!(f, "receive engine: {e}"),
            Self::Wire(e) => write!(f, "bad PDU: {e}"),
            Self::Protocol(v) => write!(f, "protocol violation: {v:?}"),
            Self::PeerTerminated { fes, fei } => {
                write!(f, "controller terminated: FES {fes:#x} FEI {fei:#x}")
            }
            Self::Eof => f.write_str("connection closed by the controller"),
            Self::Closed => f.write_str("queue closed"),
        }
    }
}

impl std::error::Error for HostError {}

/// Why [`HostQueue::submit`] refused a command (its data comes back with the error).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum SubmitError {
    /// Every CID is in use.
    QueueFull,
    /// The connection is over.
    Closed,
    /// The data is longer than an SGL can describe (4 GiB).
    TooLarge,
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::QueueFull => "no free command identifier",
            Self::Closed => "the queue is closed",
            Self::TooLarge => "data too large for one command",
        })
    }
}

impl std::error::Error for SubmitError {}

/// One PDU [`HostQueue::poll_transmit`] produced: send the header it wrote, then
/// [`HostQueue::payload`], then `ddgst`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Transmit {
    /// The command and the range of its write data that follows the header.
    pub payload: Option<(u16, Range<usize>)>,
    /// The data digest that follows the payload.
    pub ddgst: Option<[u8; 4]>,
}

#[derive(Debug)]
enum Tx {
    Raw(Vec<u8>),
    Capsule(u16),
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
    sqe: [u8; SQE_LEN],
    write: Option<Vec<u8>>,
    in_capsule: bool,
    read_len: Option<u64>,
    received: u64,
    last_seen: bool,
    digest_error: bool,
    r2t_active: bool,
    next_r2to: u32,
    internal: bool,
    /// Set once the command is finished and its buffer's teardown started.
    done: Option<(Status, u64, bool)>,
}

/// The NVMe/TCP host side of one queue. See the [module documentation](self).
pub struct HostQueue<B: DdpBackend> {
    engine: Engine<NvmeTcpHost, B>,
    config: HostConfig,
    state: State,
    negotiated: Option<Negotiated>,
    cmds: Vec<Option<Cmd>>,
    free: VecDeque<u16>,
    /// Completions queued as events and not yet taken (their CIDs are not free yet).
    unclaimed: usize,
    tx: VecDeque<Tx>,
    events: VecDeque<HostEvent>,
    next_keep_alive: Option<Instant>,
    keep_alives: u64,
}

impl<B: DdpBackend> fmt::Debug for HostQueue<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostQueue")
            .field("qid", &self.config.qid)
            .field("state", &self.state)
            .field("outstanding", &self.outstanding())
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl<B: DdpBackend> HostQueue<B> {
    /// A queue about to connect: its first transmit is the ICReq. The engine offers the queue
    /// to `backend` with the requested digests.
    pub fn new(backend: B, config: HostConfig) -> Self {
        let depth = config.queue_depth.max(1);
        let mut qc = QueueConfig::new(NVME_TCP, config.queue_id);
        qc.header_digest = config.digests.header;
        qc.data_digest = config.digests.data;
        qc.data_alignment = config.hpda.alignment() as u32;
        qc.queue_depth = u32::from(depth);
        let engine = Engine::new(NvmeTcpHost::new(), backend, qc, EngineOptions::default());
        // CIDs 0..depth, no generation bits; only those the backend can map when it offloads.
        let range = engine
            .limits()
            .filter(|_| engine.is_offloaded())
            .map(|l| l.tag_range);
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
            unclaimed: 0,
            tx,
            events: VecDeque::new(),
            next_keep_alive: None,
            keep_alives: 0,
        }
    }

    // ----- getters -----

    /// The configuration.
    pub fn config(&self) -> &HostConfig {
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

    /// Whether the connection is over (close the socket once nothing is left to transmit).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Commands outstanding: including those waiting for their buffer's teardown, and finished
    /// ones whose [`HostEvent::Completed`] was not taken yet.
    pub fn outstanding(&self) -> usize {
        self.cmds.iter().filter(|c| c.is_some()).count() + self.unclaimed
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
        self.submit_inner(sqe, data, false)
    }

    fn submit_inner(
        &mut self,
        mut sqe: [u8; SQE_LEN],
        data: Data,
        internal: bool,
    ) -> Result<u16, (SubmitError, Data)> {
        if self.state == State::Closed {
            return Err((SubmitError::Closed, data));
        }
        let len = match &data {
            Data::None => 0,
            Data::Read(b) => b.len(),
            Data::Write(w) => w.len() as u64,
        };
        let Ok(len32) = u32::try_from(len) else {
            return Err((SubmitError::TooLarge, data));
        };
        let Some(cid) = self.free.pop_front() else {
            return Err((SubmitError::QueueFull, data));
        };
        let fabrics = sqe[0] == nvme::OPC_FABRICS;
        let mut cmd = Cmd {
            sqe,
            write: None,
            in_capsule: false,
            read_len: None,
            received: 0,
            last_seen: false,
            digest_error: false,
            r2t_active: false,
            next_r2to: 0,
            internal,
            done: None,
        };
        let id = match data {
            Data::None => SGL_ID_TRANSPORT_DATA_BLOCK,
            Data::Read(buffer) => {
                if let Err((_, buffer)) = self.engine.setup(Tag(u32::from(cid)), buffer) {
                    // A CID is free only after its buffer was released, so this is unreachable;
                    // give the data back rather than lose it.
                    self.free.push_back(cid);
                    return Err((SubmitError::QueueFull, Data::Read(buffer)));
                }
                cmd.read_len = Some(len);
                SGL_ID_TRANSPORT_DATA_BLOCK
            }
            Data::Write(w) => {
                cmd.in_capsule = fabrics || w.len() <= self.config.in_capsule_limit;
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
        self.cmds[usize::from(cid)] = Some(cmd);
        self.tx.push_back(Tx::Capsule(cid));
        Ok(cid)
    }

    /// Ends the connection from the host side: every outstanding command completes with
    /// [`Status::ABORTED`] (after its buffer's teardown), then [`HostEvent::Terminated`] with
    /// [`HostError::Closed`].
    pub fn close(&mut self) {
        self.fail(HostError::Closed, None, None);
    }

    /// Reports that the peer closed the connection.
    pub fn handle_eof(&mut self) {
        self.fail(HostError::Eof, None, None);
    }

    // ----- input -----

    /// Consumes received bytes (any split).
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        if let Err(e) = self.engine.receive(Piece::bytes(bytes)) {
            self.on_engine_fatal(e);
        }
        self.process();
    }

    /// Whether the queue still takes input (it is not closed).
    pub fn is_open(&self) -> bool {
        self.state != State::Closed
    }

    /// The receive engine, for a driver's reader path: it reads socket bytes where
    /// [`Engine::read_target`] says (straight into a command's buffer for C2HData payload),
    /// hands them over with [`Engine::receive`] or [`Engine::commit_in_place`] (for example
    /// through `ulp_backend_sw::SocketReader`), then calls
    /// [`handle_received`](HostQueue::handle_received).
    pub fn engine_mut(&mut self) -> &mut Engine<NvmeTcpHost, B> {
        &mut self.engine
    }

    /// Processes what the driver fed the engine through the reader path: `Ok(0)` is the end of
    /// the stream, `Ok(n)` that `n` bytes went in, `Err` a fatal engine error (the queue
    /// terminates with the termination request the error calls for).
    pub fn handle_received(&mut self, result: Result<usize, ulp_ddp_core::Error<WireError>>) {
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

    /// Runs timers: sends Keep Alive when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(interval) = self.config.keep_alive else {
            return;
        };
        if self.state != State::Ready {
            return;
        }
        match self.next_keep_alive {
            None => self.next_keep_alive = Some(now + interval),
            Some(due) if now >= due => {
                self.next_keep_alive = Some(now + interval);
                let pending = self.cmds.iter().flatten().any(|c| c.internal);
                if !pending
                    && self
                        .submit_inner(nvme::keep_alive(), Data::None, true)
                        .is_ok()
                {
                    self.keep_alives += 1;
                }
            }
            Some(_) => {}
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_keep_alive.filter(|_| self.state == State::Ready)
    }

    // ----- output -----

    /// The next event. A command's CID becomes free for a new command when its
    /// [`HostEvent::Completed`] is taken here (or by
    /// [`poll_completion`](Self::poll_completion)), never earlier, so a caller that keys its
    /// own state by CID cannot confuse a finished command with the next one.
    pub fn poll_event(&mut self) -> Option<HostEvent> {
        if self.events.is_empty() {
            self.process();
        }
        let event = self.events.pop_front();
        if let Some(HostEvent::Completed(c)) = &event {
            self.claimed(c.cid);
        }
        event
    }

    /// Takes the first ready completion (of command `cid`, or of any command with `None`),
    /// leaving other events queued; its CID becomes free.
    pub fn poll_completion(&mut self, cid: Option<u16>) -> Option<Completion> {
        self.process();
        let i = self.events.iter().position(
            |e| matches!(e, HostEvent::Completed(c) if cid.is_none_or(|cid| c.cid == cid)),
        )?;
        match self.events.remove(i) {
            Some(HostEvent::Completed(c)) => {
                self.claimed(c.cid);
                Some(c)
            }
            _ => None,
        }
    }

    /// Takes the first event that is not a completion (completions stay queued for
    /// [`poll_completion`](Self::poll_completion)).
    pub fn poll_other_event(&mut self) -> Option<HostEvent> {
        self.process();
        let i = self
            .events
            .iter()
            .position(|e| !matches!(e, HostEvent::Completed(_)))?;
        self.events.remove(i)
    }

    /// The caller took `cid`'s completion: the CID is free again.
    fn claimed(&mut self, cid: u16) {
        self.unclaimed = self.unclaimed.saturating_sub(1);
        self.free.push_back(cid);
    }

    /// The next PDU to send: clears `header` and writes the PDU's header (and pad) into it;
    /// the returned [`Transmit`] names the payload and digest that follow. `None` when nothing
    /// can be sent now.
    pub fn poll_transmit(&mut self, header: &mut Vec<u8>) -> Option<Transmit> {
        header.clear();
        loop {
            let ready = self.state == State::Ready;
            let front = self.tx.front()?;
            if !ready && !matches!(front, Tx::Raw(_)) {
                return None;
            }
            let item = self.tx.pop_front()?;
            if let Some(t) = self.emit(item, header) {
                return Some(t);
            }
        }
    }

    /// The payload bytes a [`Transmit`] names (empty if none).
    pub fn payload(&self, t: &Transmit) -> &[u8] {
        t.payload
            .as_ref()
            .and_then(|(cid, range)| {
                self.cmds
                    .get(usize::from(*cid))?
                    .as_ref()?
                    .write
                    .as_ref()?
                    .get(range.clone())
            })
            .unwrap_or(&[])
    }

    /// Appends every PDU ready to send, whole, to `out` (copies payload: for tests and
    /// captures; drivers use [`poll_transmit`](Self::poll_transmit)).
    pub fn transmit_all(&mut self, out: &mut Vec<u8>) {
        let mut header = Vec::new();
        while let Some(t) = self.poll_transmit(&mut header) {
            out.extend_from_slice(&header);
            out.extend_from_slice(self.payload(&t));
            if let Some(d) = t.ddgst {
                out.extend_from_slice(&d);
            }
        }
    }

    fn emit(&mut self, item: Tx, out: &mut Vec<u8>) -> Option<Transmit> {
        let digests = self.negotiated.map_or(Digests::NONE, |n| n.digests);
        let cpda = self.negotiated.map_or(Pda::ZERO, |n| n.cpda);
        out.resize(MAX_HEADER_SPACE, 0);
        let result = match item {
            Tx::Raw(bytes) => {
                out.clear();
                out.extend_from_slice(&bytes);
                return Some(Transmit {
                    payload: None,
                    ddgst: None,
                });
            }
            Tx::Capsule(cid) => {
                let cmd = self.cmds.get(usize::from(cid))?.as_ref()?;
                let data: &[u8] = match (&cmd.write, cmd.in_capsule) {
                    (Some(w), true) => w,
                    _ => &[],
                };
                let repr = CapsuleCmdRepr { sqe: cmd.sqe };
                repr.emit_header(out, digests, cpda, data)
                    .map(|e| (e, (!data.is_empty()).then_some((cid, 0..data.len()))))
            }
            Tx::H2c {
                cid,
                ttag,
                offset,
                len,
                last,
            } => {
                let cmd = self.cmds.get_mut(usize::from(cid))?.as_mut()?;
                if cmd.done.is_some() {
                    return None;
                }
                if last {
                    cmd.r2t_active = false;
                }
                let range = offset as usize..(offset as usize + len as usize);
                let data = cmd.write.as_ref()?.get(range.clone())?;
                let repr = H2cDataRepr {
                    cccid: cid,
                    ttag,
                    datao: offset,
                    datal: len,
                    last_pdu: last,
                };
                repr.emit_header(out, digests, cpda, data)
                    .map(|e| (e, Some((cid, range))))
            }
        };
        match result {
            Ok((e, payload)) => {
                out.truncate(e.header_len);
                Some(Transmit {
                    payload,
                    ddgst: e.ddgst,
                })
            }
            Err(_) => {
                // Lengths were checked at submit; nothing to send for this item.
                out.clear();
                None
            }
        }
    }

    // ----- receive processing -----

    fn process(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            if self.state == State::Closed {
                if let Event::Released {
                    tag,
                    buffer,
                    offloaded,
                } = event
                {
                    self.release(tag, buffer, offloaded);
                }
                continue;
            }
            match event {
                Event::Control { header, data, .. } => self.on_control(header, &data),
                Event::Data {
                    header,
                    tag,
                    len,
                    digest,
                    ..
                } => self.on_data(header, tag, len, digest.is_ok()),
                Event::Released {
                    tag,
                    buffer,
                    offloaded,
                } => self.release(tag, buffer, offloaded),
                Event::Error(e) => {
                    let cid = e.tag().0 as u16;
                    let v = match e {
                        DataError::OutOfRange { .. } => Violation::DataOutOfRange(cid),
                        DataError::Duplicate { .. } => Violation::DuplicateData(cid),
                        DataError::TooFragmented { .. } => Violation::TooFragmented(cid),
                        _ => Violation::UnknownCid(cid),
                    };
                    self.violation(v, None);
                }
                _ => {}
            }
        }
    }

    fn on_engine_fatal(&mut self, e: ulp_ddp_core::Error<WireError>) {
        use ulp_ddp_core::Error as E;
        let fes = match e {
            E::Protocol(w) => {
                let fes = w
                    .fatal_error()
                    .unwrap_or((FatalErrorStatus::InvalidHeaderField, 0));
                return self.fail(HostError::Wire(w), Some(fes), None);
            }
            E::HeaderDigest { received, .. } => {
                Some((FatalErrorStatus::HeaderDigestError, received))
            }
            E::HeaderTooLong { .. } | E::HeaderTooShort { .. } => {
                Some((FatalErrorStatus::InvalidHeaderField, 2))
            }
            E::BadLayout(_) => Some((FatalErrorStatus::InvalidHeaderField, 3)),
            E::ControlTooLarge { .. } => Some((FatalErrorStatus::InvalidHeaderField, 4)),
            _ => None,
        };
        self.fail(HostError::Engine(e), fes, None);
    }

    fn violation(&mut self, v: Violation, pdu: Option<&ControllerPdu>) {
        let fes = v.fatal_error();
        self.fail(HostError::Protocol(v), Some(fes), pdu);
    }

    /// Ends the connection: queues an H2CTermReq when `fes` is given (carrying the header of
    /// the PDU in error, when there is one), aborts every command (completions after teardown)
    /// and reports `error`.
    fn fail(
        &mut self,
        error: HostError,
        fes: Option<(FatalErrorStatus, u32)>,
        pdu: Option<&ControllerPdu>,
    ) {
        if self.state == State::Closed {
            return;
        }
        let header = pdu.map_or_else(Vec::new, |p| {
            let digests = self.negotiated.map_or(Digests::NONE, |n| n.digests);
            p.header_bytes(digests, self.config.hpda)
        });
        self.state = State::Closed;
        self.tx.clear();
        if let Some((fes, fei)) = fes {
            let repr = TermReqRepr::new(TermReqDirection::HostToController, fes, fei);
            let mut pdu = Vec::new();
            let data = &header[..header.len().min(MAX_TERM_REQ_DATA)];
            if repr.emit(&mut pdu, data).is_ok() {
                self.tx.push_back(Tx::Raw(pdu));
            }
        }
        for cid in 0..self.cmds.len() {
            let Some(cmd) = self.cmds[cid].as_mut() else {
                continue;
            };
            if cmd.done.is_none() {
                cmd.done = Some((Status::ABORTED, 0, false));
                if cmd.read_len.is_some() {
                    // Registered, not finished: the teardown succeeds.
                    let _ = self.engine.teardown(Tag(cid as u32));
                } else {
                    self.finish(cid as u16, None, false);
                }
            }
        }
        self.process();
        self.events.push_back(HostEvent::Terminated(error));
    }

    fn on_control(&mut self, pdu: ControllerPdu, data: &[u8]) {
        match (pdu, self.state) {
            (ControllerPdu::IcResp(r), State::AwaitIcResp) => {
                if r.digests != self.config.digests {
                    return self.violation(
                        Violation::DigestsRefused {
                            requested: self.config.digests,
                            enabled: r.digests,
                        },
                        Some(&pdu),
                    );
                }
                let n = Negotiated {
                    digests: r.digests,
                    cpda: r.cpda,
                    maxh2cdata: r.maxh2cdata,
                };
                self.engine.protocol_mut().set_digests(r.digests);
                self.negotiated = Some(n);
                self.state = State::Ready;
                self.events.push_back(HostEvent::Connected(n));
            }
            (ControllerPdu::TermReq(r), _) => {
                let _ = data;
                // No H2CTermReq in answer to a C2HTermReq: the connection just closes.
                self.fail(
                    HostError::PeerTerminated {
                        fes: r.fes,
                        fei: r.fei,
                    },
                    None,
                    None,
                );
            }
            (ControllerPdu::CapsuleResp(r), State::Ready) => self.on_response(r.cqe, &pdu),
            (ControllerPdu::R2t(r), State::Ready) => self.on_r2t(r, &pdu),
            _ => self.violation(Violation::UnexpectedPdu(pdu.pdu_type().into()), Some(&pdu)),
        }
    }

    fn cmd_mut(&mut self, cid: u16) -> Option<&mut Cmd> {
        self.cmds
            .get_mut(usize::from(cid))?
            .as_mut()
            .filter(|c| c.done.is_none())
    }

    fn on_response(&mut self, cqe: Cqe, pdu: &ControllerPdu) {
        let Some(cmd) = self.cmd_mut(cqe.cid) else {
            return self.violation(Violation::UnknownCid(cqe.cid), Some(pdu));
        };
        let mut status = Status::from_cqe(cqe.status);
        if status.is_success() && cmd.digest_error {
            status = Status::DATA_TRANSFER_ERROR;
        }
        if status.is_success() && cmd.read_len.is_some_and(|l| cmd.received != l) {
            // Short data-in: the buffer does not hold what the command asked for.
            status = Status::DATA_TRANSFER_ERROR;
        }
        let result = u64::from(cqe.dw0) | (u64::from(cqe.dw1) << 32);
        self.complete(cqe.cid, status, result, false);
    }

    fn on_r2t(&mut self, r: R2tRepr, pdu: &ControllerPdu) {
        let cid = r.cccid;
        let maxh2c = self.negotiated.map_or(4096, |n| n.maxh2cdata).max(4);
        let Some(cmd) = self.cmd_mut(cid) else {
            return self.violation(Violation::UnknownCid(cid), Some(pdu));
        };
        let Some(total) = cmd.write.as_ref().filter(|_| !cmd.in_capsule).map(Vec::len) else {
            return self.violation(Violation::NotAWrite(cid), Some(pdu));
        };
        let v = if cmd.r2t_active {
            Some(Violation::R2tLimit(cid))
        } else if r.r2tl == 0 {
            Some(Violation::EmptyR2t(cid))
        } else if r.r2to != cmd.next_r2to {
            Some(Violation::R2tOffset {
                cid,
                expected: cmd.next_r2to,
                got: r.r2to,
            })
        } else if r
            .r2to
            .checked_add(r.r2tl)
            .is_none_or(|end| end as usize > total)
        {
            Some(Violation::R2tOutOfRange(cid))
        } else {
            None
        };
        if let Some(v) = v {
            return self.violation(v, Some(pdu));
        }
        let end = r.r2to + r.r2tl;
        cmd.r2t_active = true;
        cmd.next_r2to = end;
        let mut offset = r.r2to;
        while offset < end {
            let len = (end - offset).min(maxh2c);
            self.tx.push_back(Tx::H2c {
                cid,
                ttag: r.ttag,
                offset,
                len,
                last: offset + len == end,
            });
            offset += len;
        }
    }

    fn on_data(&mut self, pdu: ControllerPdu, tag: Tag, len: u32, digest_ok: bool) {
        let cid = tag.0 as u16;
        let ControllerPdu::C2hData(r) = pdu else {
            // The plugin places only C2HData.
            return self.violation(Violation::UnexpectedPdu(pdu.pdu_type().into()), Some(&pdu));
        };
        let Some(cmd) = self.cmd_mut(cid) else {
            return self.violation(Violation::UnknownCid(cid), Some(&pdu));
        };
        if cmd.last_seen {
            return self.violation(Violation::DataAfterLast(cid), Some(&pdu));
        }
        cmd.received += u64::from(len);
        if !digest_ok {
            // Like Linux: the command fails with Data Transfer Error, the connection stays.
            cmd.digest_error = true;
        }
        if r.last_pdu {
            cmd.last_seen = true;
        }
        if r.success {
            let status = if cmd.digest_error || cmd.read_len != Some(cmd.received) {
                Status::DATA_TRANSFER_ERROR
            } else {
                Status::SUCCESS
            };
            self.complete(cid, status, 0, true);
        }
    }

    /// A command is finished: its buffer's teardown starts; the completion follows the release.
    fn complete(&mut self, cid: u16, status: Status, result: u64, by_success: bool) {
        self.tx
            .retain(|t| !matches!(t, Tx::H2c { cid: c, .. } if *c == cid));
        let Some(cmd) = self.cmd_mut(cid) else { return };
        cmd.done = Some((status, result, by_success));
        if cmd.read_len.is_some() {
            // The tag is registered and not finished (done was None), so this succeeds; the
            // release event completes the command.
            let _ = self.engine.teardown(Tag(u32::from(cid)));
        } else {
            self.finish(cid, None, false);
        }
    }

    fn release(&mut self, tag: Tag, buffer: SgBuffer, offloaded: bool) {
        let cid = tag.0 as u16;
        if self.cmds.get(usize::from(cid)).is_some_and(Option::is_some) {
            self.finish(cid, Some(buffer), offloaded);
        }
    }

    fn finish(&mut self, cid: u16, buffer: Option<SgBuffer>, offloaded: bool) {
        let Some(cmd) = self.cmds.get_mut(usize::from(cid)).and_then(Option::take) else {
            return;
        };
        let (status, result, by_success_flag) = cmd.done.unwrap_or((Status::ABORTED, 0, false));
        if cmd.internal {
            self.free.push_back(cid);
            return;
        }
        // The CID stays taken until the caller takes this event.
        self.unclaimed += 1;
        self.events.push_back(HostEvent::Completed(Completion {
            cid,
            status,
            result,
            buffer,
            write: cmd.write,
            offloaded,
            by_success_flag,
        }));
    }
}
