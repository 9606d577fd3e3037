//! The sans-IO iSCSI initiator side of one connection (a single-connection session),
//! speaking the workspace's [`SansIo`] verbs.
//!
//! [`Connection`] owns the receive [`Engine`] (and through it every registered buffer). Bytes
//! go in through [`Connection::handle_bytes`] (the copy path, and every byte during login), or
//! the reader path on [`Connection::engine_mut`] followed by [`Connection::handle_received`];
//! PDUs to send come out of [`Connection::poll_transmit`] as header, payload (borrowed from the
//! command's write buffer) and trailer; time goes in through [`Connection::handle_timeout`]
//! ([`Connection::poll_timeout`] says when: NOP-Out pings on an idle connection, and their
//! timeout); what happened comes out of [`Connection::poll_event`]. No I/O, no clock, no thread.
//!
//! The parts: `login` (security and operational stages, CHAP), `window` (CmdSN window,
//! StatSN, the transmit queue), `commands` (SCSI commands, text, pings, logout), `receive`
//! (what the target sends).

use core::fmt;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ulp_ddp_core::timer::{Timer, earliest};
use ulp_ddp_core::{
    DdpBackend, Engine, EngineOptions, Event as EngineEvent, Piece, QueueConfig, SansIo, SgBuffer,
    Tag, TagRange, Transmit,
};

use crate::keys::{Negotiator, Params};
use crate::plugin::{ISCSI, IscsiInitiator, TargetPdu};
use crate::wire::bhs::BHS_LEN;
use crate::wire::login::Stage;
use crate::wire::{self, Digests};

mod async_event;
mod commands;
mod login;
mod receive;
mod timers;
mod tmf;
mod types;
mod window;

pub use tmf::{LunWords, Recovery, TmfFailure, lun_words, tmf_response_name};
pub use types::{
    ChapCredentials, Command, CommandError, CommandId, Completion, ConnectionConfig,
    ConnectionError, Data, DiscoveredTarget, Event, Phase, Residual, ScsiOutcome, Violation,
    login_status_name,
};

pub use async_event::AsyncEvent;

use login::{LoginFramer, LoginState};

/// Largest header the initiator emits: BHS and header digest (CDBs of at most 16 bytes).
const TX_HEADER: usize = BHS_LEN + 4;

#[derive(Debug)]
struct ScsiTask {
    lun: wire::Lun,
    expected_len: u32,
    write: Option<SgBuffer>,
    registered: bool,
    next_data_sn: u32,
    next_r2t_sn: u32,
    data_in: u64,
    outcome: Option<Result<ScsiOutcome, CommandError>>,
    tearing_down: bool,
    /// The SCSI Command's CmdSN: a Reject naming the command must carry it (a Reject for an
    /// earlier command that had the same tag fails nothing).
    cmd_sn: u32,
    /// A Data-In whose data digest did not match: the command fails with this error when its
    /// status arrives.
    digest_error: Option<CommandError>,
    /// An empty read buffer (nothing to register): handed back with the completion.
    empty_read: Option<SgBuffer>,
}

#[derive(Debug)]
enum TaskKind {
    Scsi(Box<ScsiTask>),
    /// A ping: the caller's, or the connection's own keep-alive (`internal`).
    Nop {
        internal: bool,
    },
    Text(Vec<u8>),
    Logout,
}

#[derive(Debug)]
struct Task {
    id: CommandId,
    kind: TaskKind,
}

#[derive(Debug)]
enum Queued {
    Scsi(CommandId, Command),
    Text(CommandId, Vec<u8>),
    /// The next Text Request of text task `tag` (answering a Text Response with the C bit or
    /// without the F bit), waiting for the CmdSN window like any non-immediate PDU.
    TextContinue {
        tag: u32,
        ttt: wire::Ttt,
    },
}

/// What follows a queued PDU's header.
#[derive(Debug)]
enum TxPayload {
    None,
    /// Bytes the connection built (login and text keys, ping data).
    Owned(Vec<u8>),
    /// A range of a SCSI task's write buffer, borrowed when the PDU goes out.
    Write {
        tag: u32,
        offset: u64,
        len: u64,
    },
}

/// A PDU waiting to be sent: header built, payload named, trailer (pad, data digest) built.
#[derive(Debug)]
struct TxPdu {
    header: [u8; TX_HEADER],
    header_len: u8,
    payload: TxPayload,
    trailer: [u8; 7],
    trailer_len: u8,
}

/// The initiator side of one iSCSI connection (a single-connection session).
pub struct Connection<B: DdpBackend> {
    engine: Engine<IscsiInitiator, B>,
    config: ConnectionConfig,
    phase: Phase,
    negotiator: Negotiator,
    params: Params,
    login: Option<LoginState>,
    digests: Digests,
    cmd_sn: u32,
    exp_cmd_sn: u32,
    max_cmd_sn: u32,
    exp_stat_sn: u32,
    tsih: u16,
    free_tags: VecDeque<u32>,
    tasks: HashMap<u32, Task>,
    queued: VecDeque<Queued>,
    tx: VecDeque<TxPdu>,
    /// The PDU the last [`Connection::poll_transmit`] handed out.
    current: Option<TxPdu>,
    events: VecDeque<Event>,
    next_id: u64,
    failure: Option<ConnectionError>,
    login_rounds: u32,
    login_framer: LoginFramer,
    /// The latest time [`Connection::handle_timeout`] was given.
    now: Option<Instant>,
    /// Fires every `noop_interval` in full feature phase: a ping goes out unless something
    /// arrived since the last time.
    ping_timer: Timer,
    /// The outstanding ping's deadline.
    ping_deadline: Timer,
    /// A PDU arrived since the ping timer last fired.
    rx_seen: bool,
    /// Task deadlines, task management (ABORT TASK, LOGICAL UNIT RESET), login and logout
    /// timers (`timers`, `tmf`).
    recovery: tmf::RecoveryState,
    /// Why the target asked for the logout in progress (Asynchronous Message, Reject
    /// "waiting for logout"): the connection ends with it, not with
    /// [`ConnectionError::LoggedOut`], when the Logout Response arrives.
    logout_cause: Option<ConnectionError>,
    /// Operational-stage exchanges of the login.
    operational_rounds: u32,
}

impl<B: DdpBackend> fmt::Debug for Connection<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("phase", &self.phase)
            .field("cmd_sn", &self.cmd_sn)
            .field("exp_stat_sn", &self.exp_stat_sn)
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl<B: DdpBackend> Connection<B> {
    /// A connection over `backend`, with the queue and limits `config` names.
    ///
    /// The engine is created here, before login, because it frames the login PDUs; the queue it
    /// offers the backend then carries the digests the login can only end with. When the login
    /// completes, the queue is offered again ([`Engine::reconfigure`]) with the negotiated
    /// digests, between PDUs and before any command holds a buffer, as the kernel offloads a
    /// socket only once the connection is set up.
    pub fn new(config: ConnectionConfig, backend: B) -> Self {
        let mut qc = QueueConfig::new(ISCSI, config.queue_id);
        qc.queue_depth = config.queue_depth.max(2);
        qc.header_digest = config.wanted.header_digest == crate::keys::DigestPref::Require;
        qc.data_digest = config.wanted.data_digest == crate::keys::DigestPref::Require;
        let engine = Engine::new(IscsiInitiator::new(), backend, qc, EngineOptions::default());
        // Tags: below the queue depth (dense-table devices), within the backend's tag bits.
        let mut depth = qc.queue_depth;
        if let Some(limits) = engine.limits()
            && let TagRange::Bits(bits) = limits.tag_range
            && bits < 32
        {
            depth = depth.min(1u32 << bits);
        }
        let negotiator = Negotiator::new(config.wanted.clone(), config.target_name.is_none());
        Self {
            engine,
            config,
            phase: Phase::Idle,
            params: negotiator.params().clone(),
            negotiator,
            login: None,
            digests: Digests::NONE,
            cmd_sn: 1,
            exp_cmd_sn: 1,
            max_cmd_sn: 1,
            exp_stat_sn: 0,
            tsih: 0,
            free_tags: (0..depth).collect(),
            tasks: HashMap::new(),
            queued: VecDeque::new(),
            tx: VecDeque::new(),
            current: None,
            events: VecDeque::new(),
            next_id: 1,
            failure: None,
            login_rounds: 0,
            login_framer: LoginFramer::default(),
            now: None,
            ping_timer: Timer::default(),
            ping_deadline: Timer::default(),
            rx_seen: false,
            recovery: tmf::RecoveryState::default(),
            logout_cause: None,
            operational_rounds: 0,
        }
    }

    // ----- getters -----

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The configuration.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// The negotiated parameters (valid in full feature phase).
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The receive engine (statistics, the reader path).
    pub fn engine(&self) -> &Engine<IscsiInitiator, B> {
        &self.engine
    }

    /// Tasks outstanding (commands, pings, text, logout) plus commands waiting for the window.
    pub fn outstanding(&self) -> usize {
        self.tasks.len() + self.queued.len()
    }

    /// Login Responses received so far (security and operational rounds, continuations
    /// included; two with LIO since the full key set is offered up front).
    pub fn login_rounds(&self) -> u32 {
        self.login_rounds
    }

    /// Operational-stage exchanges of the login (Login Responses of the operational stage,
    /// continuations not counted): 1 when the target had nothing to propose.
    pub fn operational_rounds(&self) -> u32 {
        self.operational_rounds
    }

    /// Why the connection failed, once it has.
    pub fn failure(&self) -> Option<&ConnectionError> {
        self.failure.as_ref()
    }

    /// The TSIH the target assigned.
    pub fn tsih(&self) -> u16 {
        self.tsih
    }

    /// (CmdSN, ExpCmdSN, MaxCmdSN, ExpStatSN).
    pub fn sequence_numbers(&self) -> (u32, u32, u32, u32) {
        (
            self.cmd_sn,
            self.exp_cmd_sn,
            self.max_cmd_sn,
            self.exp_stat_sn,
        )
    }

    // ----- output -----

    /// The write buffer of SCSI task `tag`, if it has one.
    fn write_of(&self, tag: u32) -> Option<&SgBuffer> {
        match self.tasks.get(&tag) {
            Some(Task {
                kind: TaskKind::Scsi(t),
                ..
            }) => t.write.as_ref(),
            _ => None,
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- input -----

    fn feed(&mut self, data: &[u8]) {
        if self.is_closed() {
            return;
        }
        if let Err(e) = self.engine.receive(Piece::bytes(data)) {
            self.fail(engine_error(e));
        }
        self.handle_events();
    }

    /// Processes what the engine reported: PDUs, placed data, released buffers.
    fn handle_events(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            match event {
                EngineEvent::Released { tag, buffer, .. } => self.on_released(tag.0, buffer),
                _ if self.phase == Phase::Failed => {}
                EngineEvent::Control {
                    header,
                    data,
                    digest,
                    ..
                } => {
                    self.rx_seen = true;
                    if digest.is_ok() {
                        self.on_control(&header, &data);
                    } else {
                        self.fail(ConnectionError::DataDigest {
                            opcode: header.opcode(),
                            itt: header.itt().0,
                        });
                    }
                }
                EngineEvent::Data {
                    header: TargetPdu::DataIn(r),
                    tag,
                    len,
                    digest,
                    ..
                } => {
                    self.rx_seen = true;
                    // A data digest error fails only this command (see on_data_in).
                    self.on_data_in(&r, tag.0, len, digest.is_ok());
                }
                EngineEvent::Error(e) => self.fail(ConnectionError::Protocol(Violation::Data(e))),
                _ => {}
            }
        }
        self.flush_queued();
    }

    // ----- time -----

    /// When the ping timers need [`SansIo::handle_timeout`].
    fn ping_timeout(&self) -> Option<Instant> {
        if self.phase != Phase::FullFeature || self.noop_interval().is_none() {
            return None;
        }
        if !self.ping_timer.is_armed() {
            // Full feature phase began since the last handle_timeout: start the timer now.
            return self.now;
        }
        earliest([
            self.ping_timer.deadline(self.now),
            self.ping_deadline.deadline(self.now),
        ])
    }

    /// The ping interval: `None` when off (a zero interval is off too, as the CLI's
    /// `--noop-interval 0`; a timer due again at every `handle_timeout` would spin a driver).
    fn noop_interval(&self) -> Option<Duration> {
        self.config.noop_interval.filter(|i| !i.is_zero())
    }

    // ----- ending -----

    /// Ends the connection from the initiator's side: every command completes with
    /// [`CommandError::ConnectionLost`] once its buffer is back, then [`Event::Closed`] with
    /// [`ConnectionError::LocallyClosed`]. (For a clean end, [`logout`](Self::logout).)
    pub fn close(&mut self) {
        self.fail(ConnectionError::LocallyClosed);
    }

    /// Fails the connection with `error`: every command completes with
    /// [`CommandError::ConnectionLost`] once its buffer is back.
    pub fn fail(&mut self, error: ConnectionError) {
        self.end(error, false);
    }

    fn end(&mut self, error: ConnectionError, logged_out: bool) {
        if self.is_closed() {
            return;
        }
        self.phase = if logged_out {
            Phase::Closed
        } else {
            Phase::Failed
        };
        self.tx.clear();
        self.ping_timer.stop();
        self.ping_deadline.stop();
        if !logged_out {
            self.failure = Some(error.clone());
        }
        let cause = if logged_out {
            ConnectionError::LoggedOut
        } else {
            error.clone()
        };
        let tags: Vec<u32> = self.tasks.keys().copied().collect();
        for tag in tags {
            match self.tasks.get_mut(&tag) {
                Some(Task {
                    kind: TaskKind::Scsi(t),
                    ..
                }) => {
                    if t.outcome.is_none() {
                        t.outcome =
                            Some(Err(CommandError::ConnectionLost(Box::new(cause.clone()))));
                    }
                    if !t.registered {
                        self.complete(tag, None);
                    } else if !t.tearing_down {
                        t.tearing_down = true;
                        let _ = self.engine.teardown(Tag(tag));
                    }
                }
                Some(_) => {
                    self.tasks.remove(&tag);
                    self.free_tags.push_back(tag);
                }
                None => {}
            }
        }
        while let Some(q) = self.queued.pop_front() {
            self.reject_queued(q, CommandError::ConnectionLost(Box::new(cause.clone())));
        }
        // Collect the releases of torn-down buffers; other events are moot after a failure.
        while let Some(event) = self.engine.poll_event() {
            if let EngineEvent::Released { tag, buffer, .. } = event {
                self.on_released(tag.0, buffer);
            }
        }
        self.events.push_back(Event::Closed(if logged_out {
            ConnectionError::LoggedOut
        } else {
            error
        }));
    }
}

/// The connection error for a fatal engine error: the codec's own error when the plugin
/// refused a header.
fn engine_error(e: ulp_ddp_core::Error<wire::Error>) -> ConnectionError {
    match e {
        ulp_ddp_core::Error::Protocol(w) => ConnectionError::Wire(w),
        other => ConnectionError::Engine(other),
    }
}

impl<B: DdpBackend> SansIo for Connection<B> {
    type Protocol = IscsiInitiator;
    type Backend = B;

    /// Time passes: in full feature phase, a NOP-Out ping goes out when nothing arrived from
    /// the target for the ping interval, and a ping unanswered for the ping timeout fails the
    /// connection ([`ConnectionError::PingTimeout`]).
    fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(now);
        self.handle_recovery_timers(now);
        if self.phase != Phase::FullFeature {
            return;
        }
        if self.ping_deadline.expire(now) {
            return self.fail(ConnectionError::PingTimeout {
                waited: self.config.noop_timeout,
            });
        }
        let Some(interval) = self.noop_interval() else {
            return;
        };
        if !self.ping_timer.is_armed() {
            // The first interval starts now: what arrived before (the login) does not count.
            self.ping_timer.start(interval);
            self.rx_seen = false;
        }
        if self.ping_timer.expire(now) {
            self.ping_timer.set(now + interval);
            if core::mem::take(&mut self.rx_seen) || self.ping_deadline.is_armed() {
                return;
            }
            if self.send_ping(Vec::new(), true).is_ok() {
                self.ping_deadline.set(now + self.config.noop_timeout);
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should run next.
    fn poll_timeout(&self) -> Option<Instant> {
        earliest([self.ping_timeout(), self.recovery_timeout()])
    }

    /// The next PDU to send: its header, the payload (borrowed from the command's write
    /// buffer, or the connection's own text) and the trailer (pad, data digest).
    fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        loop {
            let pdu = self.tx.pop_front()?;
            if let TxPayload::Write { tag, .. } = pdu.payload
                && self.write_of(tag).is_none()
            {
                // Not reached: a task's queued Data-Outs leave the queue when it completes.
                continue;
            }
            self.handed_out(&pdu.header);
            self.current = Some(pdu);
            break;
        }
        let this = &*self;
        let pdu = this.current.as_ref()?;
        let header = &pdu.header[..usize::from(pdu.header_len)];
        let trailer = &pdu.trailer[..usize::from(pdu.trailer_len)];
        Some(match &pdu.payload {
            TxPayload::None => Transmit::new(header, [], trailer),
            TxPayload::Owned(data) => Transmit::new(header, [&data[..]], trailer),
            TxPayload::Write { tag, offset, len } => {
                let slices = this
                    .write_of(*tag)
                    .and_then(|w| w.slices(*offset, *len).ok())
                    .unwrap_or_default();
                Transmit::new(header, slices, trailer)
            }
        })
    }

    /// Feeds received bytes (the copy path) and processes what they completed.
    ///
    /// During login the bytes go to the engine one PDU at a time and each PDU is processed
    /// before the next is framed: the digests and MaxRecvDataSegmentLength negotiated by the
    /// final Login Response apply from the very next PDU, even one in the same `data`.
    fn handle_bytes(&mut self, mut data: &[u8]) {
        while self.phase == Phase::Login && !data.is_empty() {
            let n = self.login_framer.take(data);
            let (now, rest) = data.split_at(n);
            self.feed(now);
            data = rest;
        }
        if !data.is_empty() {
            self.feed(data);
        }
    }

    fn reader_path(&self) -> bool {
        self.phase != Phase::Login && self.phase != Phase::Idle
    }

    /// The receive engine, for the reader path ([`Engine::read_target`] and
    /// [`Engine::commit_in_place`], or [`ulp_ddp_core::SocketReader`]); call
    /// [`handle_received`](Connection::handle_received) after feeding it. Do not set up or tear
    /// down tags directly. Use it in full feature phase only ([`SansIo::reader_path`]): during
    /// login, feed bytes with [`handle_bytes`](Connection::handle_bytes), which applies the
    /// negotiated digests and MaxRecvDataSegmentLength exactly at the PDU after the final
    /// Login Response.
    fn engine_mut(&mut self) -> &mut Engine<IscsiInitiator, B> {
        &mut self.engine
    }

    /// Processes what the reader path fed the engine: `Ok(0)` is the end of the stream,
    /// `Ok(n)` that `n` bytes went in, `Err` a fatal engine error.
    fn handle_received(&mut self, result: Result<usize, ulp_ddp_core::Error<wire::Error>>) {
        match result {
            Ok(0) => {
                self.handle_events();
                if !self.is_closed() {
                    self.peer_closed();
                }
            }
            Ok(_) => {}
            Err(e) => {
                if !self.is_closed() {
                    self.fail(engine_error(e));
                }
            }
        }
        self.handle_events();
    }

    /// Whether the connection is over (failed, or logged out).
    fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Failed | Phase::Closed)
    }
}

/// Encodes `key=value\0` pairs.
fn encode_text<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref().as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_ref().as_bytes());
        out.push(0);
    }
    out
}

/// The stage's number on the wire (for messages).
fn stage_number(stage: Stage) -> u8 {
    match stage {
        Stage::Security => 0,
        Stage::Operational => 1,
        Stage::FullFeature => 3,
    }
}
