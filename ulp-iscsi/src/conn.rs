//! The sans-IO iSCSI initiator connection: login, command sequencing and the receive path.
//!
//! [`Connection`] owns the receive [`Engine`] (and through it every registered buffer). Bytes
//! go in through the engine ([`Connection::receive`], or the reader path on
//! [`Connection::engine_mut`] followed by [`Connection::handle_events`]); PDUs to send come out
//! of [`Connection::poll_transmit`] as header, payload and trailer slices; what happened comes
//! out of [`Connection::poll_event`]. No I/O, no clock, no thread.

use core::fmt;
use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use ulp_ddp_core::{
    DataError, DdpBackend, Engine, EngineOptions, Event, Piece, QueueConfig, QueueId, SgBuffer,
    Tag, TagRange,
};

use crate::chap;
use crate::keys::{NegotiationError, Negotiator, Params, Wanted};
use crate::plugin::{ISCSI, IscsiInitiator, TargetPdu};
use crate::scsi::{Cdb, Sense};
use crate::serial;
use crate::wire::bhs::BHS_LEN;
use crate::wire::data_out::DataOutRepr;
use crate::wire::login::{LoginRequestRepr, Stage, Stages};
use crate::wire::logout::{LogoutReason, LogoutRequestRepr, LogoutResponse};
use crate::wire::nop::NopOutRepr;
use crate::wire::reject::RejectReason;
use crate::wire::scsi_cmd::{ScsiCmdRepr, TaskAttr};
use crate::wire::text::{TextIter, TextRequestRepr};
use crate::wire::{self, Digests, EmittedHeader, Itt, Lun, Pdu, Ttt};

/// Most login rounds before the initiator gives up on a target that never transits.
const MAX_LOGIN_ROUNDS: u32 = 16;
/// Most bytes of text accumulated across continued (C bit) responses.
const MAX_TEXT: usize = 64 * 1024;

/// CHAP credentials.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ChapCredentials {
    /// CHAP_N.
    pub user: String,
    /// The shared secret.
    pub secret: Vec<u8>,
}

/// Everything a login needs.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LoginConfig {
    /// InitiatorName.
    pub initiator_name: String,
    /// TargetName for a normal session; `None` for a discovery session.
    pub target_name: Option<String>,
    /// ISID (random format by default).
    pub isid: [u8; 6],
    /// Operational keys wanted.
    pub wanted: Wanted,
    /// CHAP credentials, if the target requires authentication.
    pub chap: Option<ChapCredentials>,
}

impl LoginConfig {
    /// A normal session to `target_name`.
    pub fn normal(initiator_name: &str, target_name: &str) -> Self {
        Self {
            initiator_name: initiator_name.into(),
            target_name: Some(target_name.into()),
            isid: [0x80, 0x12, 0x34, 0x56, 0x00, 0x01],
            wanted: Wanted::default(),
            chap: None,
        }
    }

    /// A discovery session.
    pub fn discovery(initiator_name: &str) -> Self {
        Self {
            target_name: None,
            ..Self::normal(initiator_name, "")
        }
    }
}

/// Identifies a submitted command (SCSI command, ping, text request or logout).
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq, PartialOrd, Ord)]
pub struct CommandId(pub u64);

/// A SCSI command's data transfer.
#[derive(Debug)]
pub enum DataDir {
    /// No data.
    None,
    /// Data-In into this buffer (its length is the Expected Data Transfer Length). The engine
    /// owns it from submission until the command completes.
    Read(SgBuffer),
    /// Data-Out from these bytes (sent without copying).
    Write(Bytes),
}

/// A SCSI command to submit.
#[derive(Debug)]
pub struct Command {
    /// The logical unit.
    pub lun: Lun,
    /// The CDB.
    pub cdb: Cdb,
    /// The data transfer.
    pub data: DataDir,
}

/// Residual count of a completed command.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum Residual {
    /// None reported.
    #[default]
    None,
    /// The target transferred this many bytes fewer than expected.
    Underflow(u32),
    /// The target had this many bytes more than expected.
    Overflow(u32),
}

/// How a SCSI command ended at the target.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ScsiOutcome {
    /// SCSI status (0 GOOD, 2 CHECK CONDITION ...).
    pub status: u8,
    /// Sense data, when the status carried some.
    pub sense: Option<Sense>,
    /// Raw sense bytes.
    pub sense_data: Vec<u8>,
    /// Residual count.
    pub residual: Residual,
    /// Data-In bytes placed into the buffer.
    pub data_in: u64,
}

impl ScsiOutcome {
    /// Whether the status is GOOD.
    pub fn is_good(&self) -> bool {
        self.status == 0
    }

    /// Whether the status is CHECK CONDITION with UNIT ATTENTION sense.
    pub fn is_unit_attention(&self) -> bool {
        self.status == 2
            && self
                .sense
                .is_some_and(|s| s.key == crate::scsi::UNIT_ATTENTION)
    }
}

/// Why a command did not complete at the target.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum CommandError {
    /// The target rejected the command's PDU.
    Rejected(RejectReason),
    /// The target answered with a non-zero iSCSI Response (target failure).
    TargetFailure(u8),
    /// The connection failed (or logged out) before the command completed.
    ConnectionLost,
    /// The command cannot be sent (too much immediate data, unusable tag).
    Invalid(&'static str),
    /// A read completed with GOOD status but its Data-In did not deliver the transfer length
    /// less the underflow residual (the iSCSI analogue of NVMe's Data Transfer Error): the
    /// buffer does not hold the data the status vouches for.
    ShortData {
        /// Bytes the status vouches for (Expected Data Transfer Length less the residual).
        expected: u64,
        /// Bytes received.
        received: u64,
    },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(r) => write!(f, "rejected by the target: {r:?}"),
            Self::TargetFailure(r) => write!(f, "target failure (response {r:#04x})"),
            Self::ConnectionLost => f.write_str("connection lost"),
            Self::Invalid(why) => write!(f, "invalid command: {why}"),
            Self::ShortData { expected, received } => write!(
                f,
                "GOOD status with {received} of {expected} data bytes received"
            ),
        }
    }
}

impl std::error::Error for CommandError {}

/// A completed command. The buffer of a read is the caller's again.
#[derive(Debug)]
pub struct Completion {
    /// The command.
    pub id: CommandId,
    /// Its outcome.
    pub result: Result<ScsiOutcome, CommandError>,
    /// The Data-In buffer, for reads.
    pub buffer: Option<SgBuffer>,
}

/// A target found by SendTargets.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct DiscoveredTarget {
    /// TargetName.
    pub name: String,
    /// TargetAddress values (`host:port,tpgt`).
    pub addresses: Vec<String>,
}

/// A fatal connection error: the protocol's answer is to drop the connection (ErrorRecovery
/// Level 0).
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ConnError {
    /// The receive engine could not frame or trust the stream (header digest, lengths).
    Engine(ulp_ddp_core::Error<wire::Error>),
    /// The receive engine refused a Data-In's data (unknown tag, outside the command's buffer,
    /// duplicate).
    Data(DataError),
    /// A PDU did not decode.
    Wire(wire::Error),
    /// A data digest did not match (ITT of the PDU, if any).
    DataDigest {
        /// The PDU's ITT.
        itt: u32,
    },
    /// The target broke a protocol rule.
    Protocol(&'static str),
    /// A Data-In's Buffer Offset is not where the previous one ended although
    /// DataPDUInOrder=Yes was negotiated.
    DataOffset {
        /// Expected (bytes received so far for the command).
        expected: u64,
        /// Received Buffer Offset.
        received: u32,
    },
    /// Data-In DataSN out of order.
    DataSn {
        /// Expected.
        expected: u32,
        /// Received.
        received: u32,
    },
    /// The login failed with this status class and detail.
    LoginFailed {
        /// Status-Class.
        class: u8,
        /// Status-Detail.
        detail: u8,
    },
    /// Negotiation failed.
    Negotiation(NegotiationError),
    /// CHAP failed.
    Chap(&'static str),
    /// The target rejected a PDU not tied to a command.
    Rejected(RejectReason),
    /// The target dropped the connection (Asynchronous Message) or closed the socket.
    Closed,
    /// The connection is not in a state that allows this.
    NotReady,
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Engine(e) => write!(f, "receive engine: {e}"),
            Self::Data(e) => write!(f, "Data-In refused: {e}"),
            Self::Wire(e) => write!(f, "PDU: {e}"),
            Self::DataDigest { itt } => write!(f, "data digest mismatch (ITT {itt:#x})"),
            Self::Protocol(what) => write!(f, "protocol error: {what}"),
            Self::DataSn { expected, received } => {
                write!(f, "DataSN {received}, expected {expected}")
            }
            Self::DataOffset { expected, received } => {
                write!(f, "Data-In Buffer Offset {received}, expected {expected}")
            }
            Self::LoginFailed { class, detail } => {
                write!(f, "login failed: status {class:#04x}/{detail:#04x}")
            }
            Self::Negotiation(e) => write!(f, "negotiation: {e}"),
            Self::Chap(what) => write!(f, "CHAP: {what}"),
            Self::Rejected(r) => write!(f, "target sent Reject {r:?}"),
            Self::Closed => f.write_str("connection closed"),
            Self::NotReady => f.write_str("connection not ready"),
        }
    }
}

impl std::error::Error for ConnError {}

/// What the connection reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionEvent {
    /// Login reached full feature phase.
    LoggedIn,
    /// A SCSI command completed.
    Completed(Completion),
    /// A ping (NOP-Out) was answered.
    Pong {
        /// The ping.
        id: CommandId,
        /// Echoed data.
        data: Vec<u8>,
    },
    /// SendTargets answered.
    Discovered {
        /// The text request.
        id: CommandId,
        /// The targets.
        targets: Vec<DiscoveredTarget>,
    },
    /// The target sent an Asynchronous Message with this event code.
    Async {
        /// AsyncEvent.
        event: u8,
    },
    /// Logout completed; the connection is closed.
    LoggedOut,
    /// The connection failed; every command has completed with an error.
    Failed(ConnError),
}

/// A PDU to send: write `header`, then `data`, then `trailer` (pad and data digest).
#[derive(Clone, Debug)]
pub struct Transmit {
    /// BHS (+ header digest).
    pub header: Vec<u8>,
    /// The data segment (a slice of the caller's write buffer: no copy).
    pub data: Bytes,
    /// Zero pad and data digest.
    pub trailer: Vec<u8>,
}

impl Transmit {
    /// The three parts in order.
    pub fn slices(&self) -> [&[u8]; 3] {
        [&self.header, &self.data, &self.trailer]
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.header.len() + self.data.len() + self.trailer.len()
    }

    /// Whether there is nothing to send (never the case for a real PDU).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The connection's phase.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Phase {
    /// Created; [`Connection::start_login`] not called yet.
    Idle,
    /// Logging in.
    Login,
    /// Full feature phase.
    FullFeature,
    /// Logout sent.
    LoggingOut,
    /// Logged out.
    Closed,
    /// Failed.
    Failed,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum ChapStep {
    Offered,
    SentAlgorithm,
    SentResponse,
}

#[derive(Debug)]
struct LoginState {
    stage: Stage,
    chap: Option<ChapStep>,
    rounds: u32,
    text: Vec<u8>,
    itt: u32,
}

#[derive(Debug)]
struct ScsiTask {
    lun: Lun,
    expected_len: u32,
    write: Option<Bytes>,
    registered: bool,
    next_data_sn: u32,
    next_r2t_sn: u32,
    data_in: u64,
    outcome: Option<Result<ScsiOutcome, CommandError>>,
    tearing_down: bool,
}

#[derive(Debug)]
enum TaskKind {
    Scsi(Box<ScsiTask>),
    Nop,
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
}

/// The initiator side of one iSCSI connection (a single-connection session).
pub struct Connection<B: DdpBackend> {
    engine: Engine<IscsiInitiator, B>,
    config: LoginConfig,
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
    transmit: VecDeque<Transmit>,
    events: VecDeque<SessionEvent>,
    next_id: u64,
    failure: Option<ConnError>,
    login_rounds: u32,
    login_framer: LoginFramer,
}

/// Where the PDU being received during login ends. While logging in, [`Connection::receive`]
/// feeds the engine one PDU at a time, so that the settings the final Login Response
/// negotiates (header and data digests, MaxRecvDataSegmentLength) frame exactly the PDUs after
/// it, also those that arrived in the same read.
#[derive(Debug, Default)]
struct LoginFramer {
    /// The current PDU's BHS, as far as received.
    bhs: Vec<u8>,
    /// Bytes of the current PDU after its BHS not yet fed.
    rest: usize,
}

impl LoginFramer {
    /// How many of `data`'s first bytes belong to the current PDU (at least one).
    fn take(&mut self, data: &[u8]) -> usize {
        if self.bhs.len() < BHS_LEN {
            let n = (BHS_LEN - self.bhs.len()).min(data.len());
            self.bhs.extend_from_slice(&data[..n]);
            if self.bhs.len() == BHS_LEN {
                // Login-phase PDUs carry no digests. A BHS that does not frame is refused by
                // the engine too (and fails the connection); treat it as header-only here.
                self.rest = wire::bhs::frame(&self.bhs, Digests::NONE)
                    .map_or(0, |f| f.total_len.saturating_sub(BHS_LEN));
                if self.rest == 0 {
                    self.bhs.clear();
                }
            }
            return n;
        }
        let n = self.rest.min(data.len());
        self.rest -= n;
        if self.rest == 0 {
            self.bhs.clear();
        }
        n
    }
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
    /// A connection over `backend`, queue `queue_id`, at most `queue_depth` tasks outstanding.
    ///
    /// The engine is created here, before login, because it frames the login PDUs; the queue it
    /// offers the backend then carries the digests the login can only end with. When the login
    /// completes, the queue is offered again ([`Engine::reconfigure`]) with the negotiated
    /// digests, between PDUs and before any command holds a buffer, as the kernel offloads a
    /// socket only once the connection is set up.
    pub fn new(config: LoginConfig, backend: B, queue_id: QueueId, queue_depth: u32) -> Self {
        let mut qc = QueueConfig::new(ISCSI, queue_id);
        qc.queue_depth = queue_depth.max(2);
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
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
            failure: None,
            login_rounds: 0,
            login_framer: LoginFramer::default(),
        }
    }

    // ----- getters -----

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The negotiated parameters (valid in full feature phase).
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The receive engine (statistics, the reader path).
    pub fn engine(&self) -> &Engine<IscsiInitiator, B> {
        &self.engine
    }

    /// The receive engine, for the reader path ([`Engine::read_target`] and
    /// [`Engine::commit_in_place`], or [`ulp_backend_sw::SocketReader`]); call
    /// [`handle_events`](Connection::handle_events) after feeding it. Do not set up or tear
    /// down tags directly. Use it in full feature phase only: during login, feed bytes with
    /// [`receive`](Connection::receive), which applies the negotiated digests and
    /// MaxRecvDataSegmentLength exactly at the PDU after the final Login Response.
    ///
    /// [`ulp_backend_sw::SocketReader`]: https://docs.rs/ulp-backend-sw
    pub fn engine_mut(&mut self) -> &mut Engine<IscsiInitiator, B> {
        &mut self.engine
    }

    /// Tasks outstanding (commands, pings, text, logout) plus commands waiting for the window.
    pub fn outstanding(&self) -> usize {
        self.tasks.len() + self.queued.len()
    }

    /// Login Responses received so far (security and operational rounds; LIO needs at least
    /// three).
    pub fn login_rounds(&self) -> u32 {
        self.login_rounds
    }

    /// Why the connection failed, once it has.
    pub fn failure(&self) -> Option<&ConnError> {
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

    /// The next PDU to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmit.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    // ----- input -----

    /// Feeds received bytes (the copy path) and processes what they completed.
    ///
    /// During login the bytes go to the engine one PDU at a time and each PDU is processed
    /// before the next is framed: the digests and MaxRecvDataSegmentLength negotiated by the
    /// final Login Response apply from the very next PDU, even one in the same `data`.
    ///
    /// # Errors
    ///
    /// The fatal error, if the connection failed (also reported as [`SessionEvent::Failed`]).
    pub fn receive(&mut self, mut data: &[u8]) -> Result<(), ConnError> {
        while self.phase == Phase::Login && !data.is_empty() {
            let n = self.login_framer.take(data);
            let (now, rest) = data.split_at(n);
            self.feed(now);
            data = rest;
        }
        if !data.is_empty() {
            self.feed(data);
        }
        self.result()
    }

    fn feed(&mut self, data: &[u8]) {
        if let Err(e) = self.engine.receive(Piece::bytes(data)) {
            self.fail(engine_error(e));
        }
        self.handle_events();
    }

    /// Reports a fatal error of the reader path (from [`Engine::commit_in_place`] or
    /// [`Engine::receive`]) or the end of the byte stream (`None`).
    pub fn on_receive_error(&mut self, error: Option<ulp_ddp_core::Error<wire::Error>>) {
        let err = error.map_or(ConnError::Closed, engine_error);
        if self.phase != Phase::Closed {
            self.fail(err);
        }
        self.handle_events();
    }

    fn result(&self) -> Result<(), ConnError> {
        if self.phase == Phase::Failed {
            Err(self.failure.clone().unwrap_or(ConnError::Closed))
        } else {
            Ok(())
        }
    }

    /// Processes what the engine reported: PDUs, placed data, released buffers.
    pub fn handle_events(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            match event {
                Event::Released { tag, buffer, .. } => self.on_released(tag.0, buffer),
                _ if self.phase == Phase::Failed => {}
                Event::Control {
                    header,
                    data,
                    digest,
                    ..
                } => {
                    if digest.is_ok() {
                        self.on_control(&header, &data);
                    } else {
                        self.fail(ConnError::DataDigest {
                            itt: header.itt().0,
                        });
                    }
                }
                Event::Data {
                    header: TargetPdu::DataIn(r),
                    tag,
                    len,
                    digest,
                    ..
                } => {
                    if digest.is_ok() {
                        self.on_data_in(&r, tag.0, len);
                    } else {
                        self.fail(ConnError::DataDigest { itt: tag.0 });
                    }
                }
                Event::Error(e) => self.fail(ConnError::Data(e)),
                _ => {}
            }
        }
        self.flush_queued();
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

/// Largest header the initiator emits: BHS and header digest (CDBs of at most 16 bytes).
const TX_HEADER: usize = BHS_LEN + 4;

fn transmit(mut header: Vec<u8>, h: EmittedHeader, data: Bytes) -> Transmit {
    header.truncate(h.header_len);
    let mut trailer = vec![0u8; h.pad_len];
    if let Some(d) = h.data_digest {
        trailer.extend_from_slice(&d);
    }
    Transmit {
        header,
        data,
        trailer,
    }
}

impl<B: DdpBackend> Connection<B> {
    fn new_id(&mut self) -> CommandId {
        let id = CommandId(self.next_id);
        self.next_id += 1;
        id
    }

    fn window_open(&self) -> bool {
        serial::le(self.cmd_sn, self.max_cmd_sn)
    }

    fn update_window(&mut self, exp: u32, max: u32) {
        if serial::lt(max, exp.wrapping_sub(1)) {
            return;
        }
        if serial::gt(exp, self.exp_cmd_sn) {
            self.exp_cmd_sn = exp;
        }
        if serial::gt(max, self.max_cmd_sn) {
            self.max_cmd_sn = max;
        }
    }

    /// Accepts the StatSN of a status-carrying PDU.
    fn take_stat_sn(&mut self, sn: u32) -> bool {
        if serial::lt(sn, self.exp_stat_sn) {
            self.fail(ConnError::Protocol("StatSN went backwards"));
            return false;
        }
        self.exp_stat_sn = sn.wrapping_add(1);
        true
    }

    fn push_pdu(
        &mut self,
        emit: impl FnOnce(&mut [u8], Digests) -> wire::Result<EmittedHeader>,
        data: Bytes,
    ) -> Result<(), CommandError> {
        let mut header = vec![0u8; TX_HEADER];
        let h = emit(&mut header, self.digests).map_err(|_| CommandError::Invalid("encode"))?;
        self.transmit.push_back(transmit(header, h, data));
        Ok(())
    }

    // ----- login -----

    /// Starts the login: queues the first Login Request (security stage).
    ///
    /// # Errors
    ///
    /// [`ConnError::NotReady`] unless the connection is new.
    pub fn start_login(&mut self) -> Result<(), ConnError> {
        if self.phase != Phase::Idle {
            return Err(ConnError::NotReady);
        }
        let itt = self.free_tags.pop_front().ok_or(ConnError::NotReady)?;
        self.phase = Phase::Login;
        let chap = self.config.chap.is_some();
        self.login = Some(LoginState {
            stage: Stage::Security,
            chap: chap.then_some(ChapStep::Offered),
            rounds: 0,
            text: Vec::new(),
            itt,
        });
        let mut keys: Vec<(String, String)> =
            vec![("InitiatorName".into(), self.config.initiator_name.clone())];
        match &self.config.target_name {
            Some(t) => {
                keys.push(("SessionType".into(), "Normal".into()));
                keys.push(("TargetName".into(), t.clone()));
            }
            None => keys.push(("SessionType".into(), "Discovery".into())),
        }
        keys.push((
            "AuthMethod".into(),
            if chap { "CHAP" } else { "None" }.into(),
        ));
        let next = if chap { None } else { Some(Stage::Operational) };
        self.send_login(Stage::Security, next, &keys);
        Ok(())
    }

    fn send_login<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        current: Stage,
        next: Option<Stage>,
        keys: &[(K, V)],
    ) {
        let Some(itt) = self.login.as_ref().map(|l| l.itt) else {
            return;
        };
        let text = Bytes::from(encode_text(keys));
        let repr = LoginRequestRepr {
            stages: Stages {
                cont: false,
                current,
                next,
            },
            version_max: 0,
            version_min: 0,
            isid: self.config.isid,
            tsih: 0,
            itt: Itt(itt),
            cid: 0,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: &text,
        };
        let mut header = vec![0u8; TX_HEADER];
        match repr.emit_header(&mut header, Digests::NONE) {
            Ok(h) => {
                let t = transmit(header, h, text.clone());
                self.transmit.push_back(t);
            }
            Err(_) => self.fail(ConnError::Protocol("login text too long")),
        }
    }

    fn on_login_response(&mut self, r: &wire::login::LoginResponseRepr<'_>) {
        let Some(login) = self.login.as_mut() else {
            return self.fail(ConnError::Protocol("unexpected Login Response"));
        };
        if r.itt.0 != login.itt {
            return self.fail(ConnError::Protocol("Login Response for another ITT"));
        }
        if r.status_class != 0 {
            return self.fail(ConnError::LoginFailed {
                class: r.status_class,
                detail: r.status_detail,
            });
        }
        if r.stages.current != login.stage {
            return self.fail(ConnError::Protocol("Login Response in another stage"));
        }
        login.rounds += 1;
        self.login_rounds = login.rounds;
        if login.rounds > MAX_LOGIN_ROUNDS {
            return self.fail(ConnError::Protocol("login does not converge"));
        }
        if login.text.len() + r.data.len() > MAX_TEXT {
            return self.fail(ConnError::Protocol("login text too long"));
        }
        login.text.extend_from_slice(r.data);
        let stage = login.stage;
        self.exp_stat_sn = r.stat_sn.wrapping_add(1);
        if r.stages.cont {
            // More text follows: ask for it with an empty request.
            return self.send_login::<&str, &str>(stage, None, &[]);
        }
        let text = core::mem::take(&mut login.text);
        match stage {
            Stage::Security => self.on_security_response(r, &text),
            Stage::Operational => self.on_operational_response(r, &text),
            Stage::FullFeature => self.fail(ConnError::Protocol("login in full feature stage")),
        }
    }

    fn on_security_response(&mut self, r: &wire::login::LoginResponseRepr<'_>, text: &[u8]) {
        let mut auth = None;
        let (mut chap_a, mut chap_i, mut chap_c) = (None, None, None);
        for pair in TextIter::with_max_value_len(text, 8192) {
            let Ok((k, v)) = pair else {
                return self.fail(ConnError::Protocol("malformed login text"));
            };
            match k {
                "AuthMethod" => auth = Some(v.to_string()),
                "CHAP_A" => chap_a = Some(v.to_string()),
                "CHAP_I" => chap_i = Some(v.to_string()),
                "CHAP_C" => chap_c = Some(v.to_string()),
                _ => {
                    if let Err(e) = self.negotiator.on_key(k, v) {
                        return self.fail(ConnError::Negotiation(e));
                    }
                }
            }
        }
        let step = self.login.as_ref().and_then(|l| l.chap);
        let transit_op = r.stages.next == Some(Stage::Operational);
        if r.stages.next == Some(Stage::FullFeature) {
            return self.fail(ConnError::Protocol("target skipped the operational stage"));
        }
        match step {
            None => {
                if auth.as_deref().is_some_and(|a| a != "None") {
                    return self.fail(ConnError::Chap("target requires authentication"));
                }
                if transit_op {
                    self.begin_operational();
                } else {
                    self.send_login::<&str, &str>(Stage::Security, Some(Stage::Operational), &[]);
                }
            }
            Some(ChapStep::Offered) => {
                if auth.as_deref() != Some("CHAP") {
                    return self.fail(ConnError::Chap("target did not select CHAP"));
                }
                self.set_chap(ChapStep::SentAlgorithm);
                self.send_login(Stage::Security, None, &[("CHAP_A", "5")]);
            }
            Some(ChapStep::SentAlgorithm) => {
                let Some(creds) = self.config.chap.clone() else {
                    return self.fail(ConnError::Chap("no credentials"));
                };
                if chap_a.as_deref() != Some("5") {
                    return self.fail(ConnError::Chap("target did not select MD5"));
                }
                let id = chap_i.as_deref().map(chap::parse_identifier);
                let challenge = chap_c.as_deref().map(chap::decode_binary);
                let (Some(Ok(id)), Some(Ok(challenge))) = (id, challenge) else {
                    return self.fail(ConnError::Chap("bad CHAP_I or CHAP_C"));
                };
                let resp = chap::response(id, &creds.secret, &challenge);
                self.set_chap(ChapStep::SentResponse);
                let keys = [
                    ("CHAP_N".to_string(), creds.user),
                    ("CHAP_R".to_string(), chap::encode_hex(&resp)),
                ];
                self.send_login(Stage::Security, Some(Stage::Operational), &keys);
            }
            Some(ChapStep::SentResponse) => {
                if transit_op {
                    self.begin_operational();
                } else {
                    self.fail(ConnError::Chap("target did not accept the CHAP response"));
                }
            }
        }
    }

    fn set_chap(&mut self, step: ChapStep) {
        if let Some(l) = self.login.as_mut() {
            l.chap = Some(step);
        }
    }

    fn begin_operational(&mut self) {
        if let Some(l) = self.login.as_mut() {
            l.stage = Stage::Operational;
        }
        let keys = self.negotiator.offer();
        // Data segments up to the declared length are acceptable from now on; login responses
        // may still use the 8192-byte default until the full feature phase.
        let mrdsl = self
            .config
            .wanted
            .max_recv_data_segment_len
            .max(crate::plugin::DEFAULT_MAX_RECV_DATA_SEGMENT_LEN);
        self.engine
            .protocol_mut()
            .set_max_recv_data_segment_len(mrdsl);
        self.send_login(Stage::Operational, Some(Stage::FullFeature), &keys);
    }

    fn on_operational_response(&mut self, r: &wire::login::LoginResponseRepr<'_>, text: &[u8]) {
        let answers = match self.negotiator.on_response(text) {
            Ok(a) => a,
            Err(e) => return self.fail(ConnError::Negotiation(e)),
        };
        if r.stages.next != Some(Stage::FullFeature) {
            // The target proposed keys (LIO) or wants another round: answer and transit again.
            return self.send_login(Stage::Operational, Some(Stage::FullFeature), &answers);
        }
        if let Some((key, _)) = answers.into_iter().next() {
            return self.fail(ConnError::Negotiation(NegotiationError::LateProposal {
                key,
            }));
        }
        let params = match self.negotiator.finish() {
            Ok(p) => p,
            Err(e) => return self.fail(ConnError::Negotiation(e)),
        };
        self.digests = Digests {
            header: params.header_digest,
            data: params.data_digest,
        };
        self.engine.protocol_mut().set_digests(self.digests);
        self.engine
            .protocol_mut()
            .set_max_recv_data_segment_len(params.max_recv_data_segment_len);
        // Re-offer the queue with what was negotiated. Login feeds the engine one PDU at a time
        // and registers no buffer, so the engine is between PDUs and idle; if it were not, the
        // queue would simply keep its first configuration (the engine frames correctly either
        // way).
        let negotiated = QueueConfig {
            header_digest: self.digests.header,
            data_digest: self.digests.data,
            ..*self.engine.config()
        };
        let _ = self.engine.reconfigure(negotiated);
        self.params = params;
        self.tsih = r.tsih;
        self.cmd_sn = r.exp_cmd_sn;
        self.exp_cmd_sn = r.exp_cmd_sn;
        self.max_cmd_sn = r.max_cmd_sn;
        if let Some(l) = self.login.take() {
            self.free_tags.push_back(l.itt);
        }
        self.phase = Phase::FullFeature;
        self.events.push_back(SessionEvent::LoggedIn);
    }

    // ----- commands -----

    /// Submits a SCSI command. It is sent when the CmdSN window and a tag allow; a read's
    /// buffer is registered with the engine just before. The outcome arrives as
    /// [`SessionEvent::Completed`].
    pub fn submit(&mut self, cmd: Command) -> CommandId {
        let id = self.new_id();
        if !matches!(self.phase, Phase::FullFeature) {
            self.reject_queued(Queued::Scsi(id, cmd), CommandError::ConnectionLost);
            return id;
        }
        self.queued.push_back(Queued::Scsi(id, cmd));
        self.flush_queued();
        id
    }

    /// Sends SendTargets=All (discovery sessions); the answer arrives as
    /// [`SessionEvent::Discovered`].
    ///
    /// # Errors
    ///
    /// [`ConnError::NotReady`] outside full feature phase.
    pub fn send_targets(&mut self) -> Result<CommandId, ConnError> {
        if self.phase != Phase::FullFeature {
            return Err(ConnError::NotReady);
        }
        let id = self.new_id();
        self.queued
            .push_back(Queued::Text(id, encode_text(&[("SendTargets", "All")])));
        self.flush_queued();
        Ok(id)
    }

    /// Sends a ping (immediate NOP-Out); the answer arrives as [`SessionEvent::Pong`].
    ///
    /// # Errors
    ///
    /// [`ConnError::NotReady`] outside full feature phase or with every tag in use.
    pub fn ping(&mut self, data: Vec<u8>) -> Result<CommandId, ConnError> {
        if self.phase != Phase::FullFeature
            || data.len() > self.params.max_xmit_data_segment_len as usize
        {
            return Err(ConnError::NotReady);
        }
        let tag = self.free_tags.pop_front().ok_or(ConnError::NotReady)?;
        let id = self.new_id();
        let data = Bytes::from(data);
        let repr = NopOutRepr {
            immediate: true,
            lun: Lun::default(),
            itt: Itt(tag),
            ttt: Ttt::RESERVED,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: &data,
        };
        let pushed = self.push_pdu(|b, d| repr.emit_header(b, d), data.clone());
        if pushed.is_err() {
            self.free_tags.push_back(tag);
            return Err(ConnError::NotReady);
        }
        self.tasks.insert(
            tag,
            Task {
                id,
                kind: TaskKind::Nop,
            },
        );
        Ok(id)
    }

    /// Starts a logout (close the session). Commands still outstanding complete first at the
    /// target; [`SessionEvent::LoggedOut`] follows the Logout Response.
    ///
    /// # Errors
    ///
    /// [`ConnError::NotReady`] outside full feature phase.
    pub fn logout(&mut self) -> Result<CommandId, ConnError> {
        if self.phase != Phase::FullFeature {
            return Err(ConnError::NotReady);
        }
        let tag = self.free_tags.pop_front().ok_or(ConnError::NotReady)?;
        let id = self.new_id();
        let repr = LogoutRequestRepr {
            immediate: true,
            reason: LogoutReason::CloseSession,
            itt: Itt(tag),
            cid: 0,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        if self
            .push_pdu(|b, d| repr.emit_header(b, d), Bytes::new())
            .is_err()
        {
            self.free_tags.push_back(tag);
            return Err(ConnError::NotReady);
        }
        self.tasks.insert(
            tag,
            Task {
                id,
                kind: TaskKind::Logout,
            },
        );
        self.phase = Phase::LoggingOut;
        Ok(id)
    }

    fn reject_queued(&mut self, q: Queued, error: CommandError) {
        match q {
            Queued::Scsi(id, cmd) => {
                let buffer = match cmd.data {
                    DataDir::Read(b) => Some(b),
                    _ => None,
                };
                self.events.push_back(SessionEvent::Completed(Completion {
                    id,
                    result: Err(error),
                    buffer,
                }));
            }
            Queued::Text(..) => {}
        }
    }

    fn flush_queued(&mut self) {
        while self.phase == Phase::FullFeature
            && self.window_open()
            && !self.queued.is_empty()
            && !self.free_tags.is_empty()
        {
            let (Some(q), Some(tag)) = (self.queued.pop_front(), self.free_tags.pop_front()) else {
                return;
            };
            match q {
                Queued::Scsi(id, cmd) => self.start_scsi(id, cmd, tag),
                Queued::Text(id, text) => self.start_text(id, text, tag),
            }
        }
    }

    fn start_text(&mut self, id: CommandId, text: Vec<u8>, tag: u32) {
        self.tasks.insert(
            tag,
            Task {
                id,
                kind: TaskKind::Text(Vec::new()),
            },
        );
        self.send_text(tag, Ttt::RESERVED, Bytes::from(text));
    }

    fn send_text(&mut self, tag: u32, ttt: Ttt, text: Bytes) {
        let repr = TextRequestRepr {
            immediate: false,
            final_: true,
            cont: false,
            lun: Lun::default(),
            itt: Itt(tag),
            ttt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: &text,
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        if self
            .push_pdu(|b, d| repr.emit_header(b, d), text.clone())
            .is_err()
        {
            self.fail(ConnError::Protocol("text request too long"));
        }
    }

    fn start_scsi(&mut self, id: CommandId, cmd: Command, tag: u32) {
        let Command { lun, cdb, data } = cmd;
        let (expected_len, write, registered) = match data {
            DataDir::None => (0u32, None, false),
            DataDir::Read(buffer) if buffer.is_empty() => (0, None, false),
            DataDir::Read(buffer) => {
                let Ok(len) = u32::try_from(buffer.len()) else {
                    self.free_tags.push_back(tag);
                    let q = Queued::Scsi(
                        id,
                        Command {
                            lun,
                            cdb,
                            data: DataDir::Read(buffer),
                        },
                    );
                    return self.reject_queued(q, CommandError::Invalid("buffer over 4 GiB"));
                };
                // The buffer is the engine's from here until Event::Released.
                if let Err((_, buffer)) = self.engine.setup(Tag(tag), buffer) {
                    self.free_tags.push_back(tag);
                    let q = Queued::Scsi(
                        id,
                        Command {
                            lun,
                            cdb,
                            data: DataDir::Read(buffer),
                        },
                    );
                    return self.reject_queued(q, CommandError::Invalid("tag busy"));
                }
                (len, None, true)
            }
            DataDir::Write(bytes) => {
                let Ok(len) = u32::try_from(bytes.len()) else {
                    self.free_tags.push_back(tag);
                    return self.reject_queued(
                        Queued::Scsi(
                            id,
                            Command {
                                lun,
                                cdb,
                                data: DataDir::None,
                            },
                        ),
                        CommandError::Invalid("write over 4 GiB"),
                    );
                };
                (len, Some(bytes), false)
            }
        };
        let p = &self.params;
        let write_len = write.as_ref().map_or(0, Bytes::len);
        let immediate = if p.immediate_data {
            write_len
                .min(p.first_burst_len as usize)
                .min(p.max_xmit_data_segment_len as usize)
        } else {
            0
        };
        let unsolicited_end = if p.initial_r2t {
            immediate
        } else {
            write_len.min(p.first_burst_len as usize)
        };
        let imm = write
            .as_ref()
            .map_or_else(Bytes::new, |w| w.slice(..immediate));
        let repr = ScsiCmdRepr {
            immediate: false,
            final_: unsolicited_end <= immediate,
            read: registered,
            write: write.is_some(),
            attr: TaskAttr::Simple,
            lun,
            itt: Itt(tag),
            expected_len,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: cdb.bytes,
            ext_cdb: &[],
            bidi_read_len: None,
            data: &imm,
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        if self
            .push_pdu(|b, d| repr.emit_header(b, d), imm.clone())
            .is_err()
        {
            return self.fail(ConnError::Protocol("command does not encode"));
        }
        if let Some(w) = &write
            && unsolicited_end > immediate
        {
            let w = w.clone();
            self.send_data_out(
                tag,
                Lun::default(),
                Ttt::RESERVED,
                &w,
                immediate,
                unsolicited_end,
            );
        }
        self.tasks.insert(
            tag,
            Task {
                id,
                kind: TaskKind::Scsi(Box::new(ScsiTask {
                    lun,
                    expected_len,
                    write,
                    registered,
                    next_data_sn: 0,
                    next_r2t_sn: 0,
                    data_in: 0,
                    outcome: None,
                    tearing_down: false,
                })),
            },
        );
    }

    /// Queues Data-Out PDUs carrying `data[from..to]`, each within the target's
    /// MaxRecvDataSegmentLength, DataSN from 0, F on the last.
    fn send_data_out(
        &mut self,
        tag: u32,
        lun: Lun,
        ttt: Ttt,
        data: &Bytes,
        from: usize,
        to: usize,
    ) {
        let max = (self.params.max_xmit_data_segment_len as usize).max(512);
        let mut at = from;
        let mut data_sn = 0u32;
        while at < to {
            let end = (at + max).min(to);
            let piece = data.slice(at..end);
            let repr = DataOutRepr {
                final_: end == to,
                lun,
                itt: Itt(tag),
                ttt,
                exp_stat_sn: self.exp_stat_sn,
                data_sn,
                // `at` < `to` <= the write length, which fits in u32.
                buffer_offset: at as u32,
                data: &piece,
            };
            if self
                .push_pdu(|b, d| repr.emit_header(b, d), piece.clone())
                .is_err()
            {
                return self.fail(ConnError::Protocol("Data-Out does not encode"));
            }
            data_sn = data_sn.wrapping_add(1);
            at = end;
        }
    }

    // ----- receive side -----

    fn on_control(&mut self, header: &TargetPdu, data: &[u8]) {
        // The BHS was framed and checked by the plugin; its opcode-specific fields are decoded
        // here with the data segment, once, in place.
        match header.decode(data) {
            Ok(pdu) => self.on_pdu(&pdu),
            Err(e) => self.fail(ConnError::Wire(e)),
        }
        self.flush_queued();
    }

    fn on_pdu(&mut self, pdu: &Pdu<'_>) {
        if self.phase == Phase::Login && !matches!(pdu, Pdu::LoginResponse(_) | Pdu::Reject(_)) {
            return self.fail(ConnError::Protocol("non-login PDU during login"));
        }
        match pdu {
            Pdu::LoginResponse(r) => {
                if self.phase != Phase::Login {
                    return self.fail(ConnError::Protocol("Login Response after login"));
                }
                self.on_login_response(r);
            }
            Pdu::ScsiResponse(r) => {
                self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
                if !self.take_stat_sn(r.stat_sn) {
                    return;
                }
                let Some(task) = self.scsi_task(r.itt.0) else {
                    return self.fail(ConnError::Protocol("SCSI Response for an unknown ITT"));
                };
                let expected_len = task.expected_len;
                let data_in = task.data_in;
                let read = task.registered;
                let result = if r.response != 0 {
                    Err(CommandError::TargetFailure(r.response))
                } else {
                    let residual = match (r.underflow, r.overflow) {
                        (true, _) if r.residual > expected_len => {
                            return self.fail(ConnError::Protocol("underflow beyond the transfer"));
                        }
                        (true, _) => Residual::Underflow(r.residual),
                        (_, true) => Residual::Overflow(r.residual),
                        _ => Residual::None,
                    };
                    match short_data(read, expected_len, r.status, residual, data_in) {
                        Some(e) => Err(e),
                        None => Ok(ScsiOutcome {
                            status: r.status,
                            sense: Sense::parse(r.sense),
                            sense_data: r.sense.to_vec(),
                            residual,
                            data_in,
                        }),
                    }
                };
                self.finish_scsi(r.itt.0, result);
            }
            Pdu::NopIn(r) => {
                self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
                if r.itt == Itt::RESERVED {
                    if r.ttt != Ttt::RESERVED {
                        self.answer_target_ping(r);
                    }
                    return;
                }
                if !self.take_stat_sn(r.stat_sn) {
                    return;
                }
                match self.tasks.get(&r.itt.0) {
                    Some(Task {
                        kind: TaskKind::Nop,
                        id,
                    }) => {
                        let id = *id;
                        self.tasks.remove(&r.itt.0);
                        self.free_tags.push_back(r.itt.0);
                        self.events.push_back(SessionEvent::Pong {
                            id,
                            data: r.data.to_vec(),
                        });
                    }
                    _ => self.fail(ConnError::Protocol("NOP-In for an unknown ITT")),
                }
            }
            Pdu::TextResponse(r) => {
                self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
                if !self.take_stat_sn(r.stat_sn) {
                    return;
                }
                let itt = r.itt.0;
                let Some(Task {
                    id,
                    kind: TaskKind::Text(acc),
                }) = self.tasks.get_mut(&itt)
                else {
                    return self.fail(ConnError::Protocol("Text Response for an unknown ITT"));
                };
                if acc.len() + r.data.len() > MAX_TEXT {
                    return self.fail(ConnError::Protocol("text response too long"));
                }
                acc.extend_from_slice(r.data);
                let id = *id;
                if r.cont || !r.final_ {
                    return self.send_text(itt, r.ttt, Bytes::new());
                }
                let text = match self.tasks.remove(&itt) {
                    Some(Task {
                        kind: TaskKind::Text(t),
                        ..
                    }) => t,
                    _ => Vec::new(),
                };
                self.free_tags.push_back(itt);
                match parse_send_targets(&text) {
                    Some(targets) => self
                        .events
                        .push_back(SessionEvent::Discovered { id, targets }),
                    None => self.fail(ConnError::Protocol("malformed SendTargets text")),
                }
            }
            Pdu::LogoutResponse(r) => {
                self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
                if !self.take_stat_sn(r.stat_sn) {
                    return;
                }
                if !matches!(
                    self.tasks.get(&r.itt.0),
                    Some(Task {
                        kind: TaskKind::Logout,
                        ..
                    })
                ) {
                    return self.fail(ConnError::Protocol("Logout Response for an unknown ITT"));
                }
                if r.response != LogoutResponse::Success {
                    return self.fail(ConnError::Protocol("logout refused"));
                }
                self.close(ConnError::Closed, true);
            }
            Pdu::R2t(r) => {
                self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
                self.on_r2t(r);
            }
            Pdu::AsyncMessage(r) => {
                self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
                if !self.take_stat_sn(r.stat_sn) {
                    return;
                }
                self.events
                    .push_back(SessionEvent::Async { event: r.event });
                match r.event {
                    wire::async_msg::event::LOGOUT_REQUEST => {
                        let _ = self.logout();
                    }
                    wire::async_msg::event::CONNECTION_DROP
                    | wire::async_msg::event::SESSION_DROP => self.fail(ConnError::Closed),
                    _ => {}
                }
            }
            Pdu::Reject(r) => {
                self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
                if self.phase != Phase::Login && !self.take_stat_sn(r.stat_sn) {
                    return;
                }
                let itt = r.rejected_bhs().itt().0;
                if r.reason == RejectReason::WaitingForLogout {
                    let _ = self.logout();
                }
                if self.scsi_task(itt).is_some() {
                    self.finish_scsi(itt, Err(CommandError::Rejected(r.reason)));
                } else {
                    self.fail(ConnError::Rejected(r.reason));
                }
            }
            _ => self.fail(ConnError::Protocol("PDU an initiator does not accept")),
        }
    }

    fn answer_target_ping(&mut self, r: &wire::nop::NopInRepr<'_>) {
        let data = Bytes::copy_from_slice(r.data);
        let repr = NopOutRepr {
            immediate: true,
            lun: r.lun,
            itt: Itt::RESERVED,
            ttt: r.ttt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: &data,
        };
        if self
            .push_pdu(|b, d| repr.emit_header(b, d), data.clone())
            .is_err()
        {
            self.fail(ConnError::Protocol("NOP-Out does not encode"));
        }
    }

    fn scsi_task(&mut self, itt: u32) -> Option<&mut ScsiTask> {
        match self.tasks.get_mut(&itt) {
            Some(Task {
                kind: TaskKind::Scsi(t),
                ..
            }) => Some(t),
            _ => None,
        }
    }

    fn on_data_in(&mut self, r: &wire::data_in::DataInRepr<'_>, tag: u32, len: u32) {
        self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
        if r.ack {
            return self.fail(ConnError::Protocol("Data-In asks for an ack at ERL 0"));
        }
        let in_order = self.params.data_pdu_in_order;
        let Some(task) = self.scsi_task(tag) else {
            return self.fail(ConnError::Protocol("Data-In for a task that is not a read"));
        };
        if task.outcome.is_some() {
            return self.fail(ConnError::Protocol("Data-In after the status"));
        }
        if r.data_sn != task.next_data_sn {
            let expected = task.next_data_sn;
            return self.fail(ConnError::DataSn {
                expected,
                received: r.data_sn,
            });
        }
        // DataPDUInOrder=Yes: each Data-In starts where the previous one ended (the engine has
        // already refused overlaps and data outside the buffer).
        if in_order && u64::from(r.buffer_offset) != task.data_in {
            let expected = task.data_in;
            return self.fail(ConnError::DataOffset {
                expected,
                received: r.buffer_offset,
            });
        }
        task.next_data_sn = task.next_data_sn.wrapping_add(1);
        task.data_in += u64::from(len);
        let (expected_len, data_in, read) = (task.expected_len, task.data_in, task.registered);
        if let Some(s) = r.status {
            if !self.take_stat_sn(s.stat_sn) {
                return;
            }
            let residual = if s.underflow {
                if s.residual > expected_len {
                    return self.fail(ConnError::Protocol("underflow beyond the transfer"));
                }
                Residual::Underflow(s.residual)
            } else if s.overflow {
                Residual::Overflow(s.residual)
            } else {
                Residual::None
            };
            let result = match short_data(read, expected_len, s.status, residual, data_in) {
                Some(e) => Err(e),
                None => Ok(ScsiOutcome {
                    status: s.status,
                    sense: None,
                    sense_data: Vec::new(),
                    residual,
                    data_in,
                }),
            };
            self.finish_scsi(tag, result);
        }
    }

    fn on_r2t(&mut self, r: &wire::r2t::R2tRepr) {
        let max_burst = self.params.max_burst_len;
        let tag = r.itt.0;
        let Some(task) = self.scsi_task(tag) else {
            return self.fail(ConnError::Protocol("R2T for an unknown ITT"));
        };
        let Some(write) = task.write.clone() else {
            return self.fail(ConnError::Protocol("R2T for a command without write data"));
        };
        if task.outcome.is_some() {
            return self.fail(ConnError::Protocol("R2T after the status"));
        }
        if r.r2t_sn != task.next_r2t_sn {
            return self.fail(ConnError::Protocol("R2TSN out of order"));
        }
        let end = u64::from(r.buffer_offset) + u64::from(r.desired_len);
        if r.desired_len == 0 || r.desired_len > max_burst || end > write.len() as u64 {
            return self.fail(ConnError::Protocol("R2T outside the write"));
        }
        task.next_r2t_sn = task.next_r2t_sn.wrapping_add(1);
        let lun = task.lun;
        self.send_data_out(
            tag,
            lun,
            r.ttt,
            &write,
            r.buffer_offset as usize,
            end as usize,
        );
    }

    /// Records the outcome of a SCSI command; it completes once its buffer is released.
    fn finish_scsi(&mut self, tag: u32, result: Result<ScsiOutcome, CommandError>) {
        let Some(task) = self.scsi_task(tag) else {
            return;
        };
        if task.outcome.is_some() {
            return self.fail(ConnError::Protocol("second status for a command"));
        }
        task.outcome = Some(result);
        if task.registered {
            if !task.tearing_down {
                task.tearing_down = true;
                // Registered and not torn down yet, so this succeeds; Released follows.
                let _ = self.engine.teardown(Tag(tag));
            }
        } else {
            self.complete(tag, None);
        }
    }

    fn on_released(&mut self, tag: u32, buffer: SgBuffer) {
        self.complete(tag, Some(buffer));
    }

    fn complete(&mut self, tag: u32, buffer: Option<SgBuffer>) {
        let Some(task) = self.tasks.remove(&tag) else {
            return;
        };
        self.free_tags.push_back(tag);
        if let TaskKind::Scsi(t) = task.kind {
            self.events.push_back(SessionEvent::Completed(Completion {
                id: task.id,
                result: t.outcome.unwrap_or(Err(CommandError::ConnectionLost)),
                buffer,
            }));
        }
    }

    /// Fails the connection: every command completes with [`CommandError::ConnectionLost`]
    /// once its buffer is back.
    pub fn fail(&mut self, error: ConnError) {
        self.close(error, false);
    }

    fn close(&mut self, error: ConnError, logged_out: bool) {
        if matches!(self.phase, Phase::Failed | Phase::Closed) {
            return;
        }
        self.phase = if logged_out {
            Phase::Closed
        } else {
            Phase::Failed
        };
        self.transmit.clear();
        self.events.push_back(if logged_out {
            SessionEvent::LoggedOut
        } else {
            self.failure = Some(error.clone());
            SessionEvent::Failed(error)
        });
        let tags: Vec<u32> = self.tasks.keys().copied().collect();
        for tag in tags {
            match self.tasks.get_mut(&tag) {
                Some(Task {
                    kind: TaskKind::Scsi(t),
                    ..
                }) => {
                    if t.outcome.is_none() {
                        t.outcome = Some(Err(CommandError::ConnectionLost));
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
            self.reject_queued(q, CommandError::ConnectionLost);
        }
        self.handle_released();
    }

    fn handle_released(&mut self) {
        // Collect the releases of torn-down buffers; other events are moot after a failure.
        while let Some(event) = self.engine.poll_event() {
            if let Event::Released { tag, buffer, .. } = event {
                self.on_released(tag.0, buffer);
            }
        }
    }
}

/// The connection error for a fatal engine error: the codec's own error when the plugin
/// refused a header.
fn engine_error(e: ulp_ddp_core::Error<wire::Error>) -> ConnError {
    match e {
        ulp_ddp_core::Error::Protocol(w) => ConnError::Wire(w),
        other => ConnError::Engine(other),
    }
}

/// The error a read's GOOD status earns when its Data-In did not deliver every byte the status
/// vouches for: the Expected Data Transfer Length less an underflow residual.
fn short_data(
    read: bool,
    expected_len: u32,
    status: u8,
    residual: Residual,
    data_in: u64,
) -> Option<CommandError> {
    if !read || status != 0 {
        return None;
    }
    let underflow = match residual {
        Residual::Underflow(n) => u64::from(n),
        _ => 0,
    };
    let expected = u64::from(expected_len).saturating_sub(underflow);
    (data_in != expected).then_some(CommandError::ShortData {
        expected,
        received: data_in,
    })
}

fn parse_send_targets(text: &[u8]) -> Option<Vec<DiscoveredTarget>> {
    let mut out: Vec<DiscoveredTarget> = Vec::new();
    for pair in TextIter::new(text) {
        let (k, v) = pair.ok()?;
        match k {
            "TargetName" => out.push(DiscoveredTarget {
                name: v.to_string(),
                addresses: Vec::new(),
            }),
            "TargetAddress" => out.last_mut()?.addresses.push(v.to_string()),
            _ => {}
        }
    }
    Some(out)
}
