//! Bringing an association up and down without I/O: the admin-queue steps every driver
//! shares (the blocking [`Controller`](crate::blocking::Controller)'s connect and every
//! reconnect, [`discover`](crate::blocking::discover), the tokio driver, a third-party
//! runtime's).
//!
//! Each step machine hands out one admin command at a time ([`Steps::poll_command`]) for the
//! driver to submit on a connected [`Connection`](crate::Connection), takes its
//! [`Completion`] ([`Steps::handle_completion`]) and the time ([`Steps::handle_timeout`],
//! [`Steps::poll_timeout`]), and ends with a typed result or a [`BringupError`] naming the step
//! ([`Steps::poll_result`]). No sockets, no clocks, no threads.
//!
//! - [`AdminBringup`]: Fabrics Connect of the admin queue, Property Get CAP, CC.EN and
//!   CSTS.RDY polled (every 10 ms, for at most CAP.TO as Linux's `nvme_wait_ready`),
//!   Identify Controller and Namespace (checked), Set Features Number of Queues; its result
//!   is an [`Association`].
//! - [`IoQueueBringup`]: the Fabrics Connect of one I/O queue.
//! - [`Shutdown`]: CC.SHN, then CSTS.SHST polled until the controller reports shutdown
//!   complete.
//!
//! A driver's loop (the blocking driver's, in words): tell the time, take the command to
//! submit if there is one, wait for its completion (or, with none outstanding, until
//! `poll_timeout`), hand it over, until `poll_result` gives the end.
//!
//! ```
//! use std::time::Instant;
//! use ulp_nvme_tcp::Options;
//! use ulp_nvme_tcp::bringup::{AdminBringup, Steps};
//!
//! let mut steps = AdminBringup::new(&Options::new("nqn.2024-01.io.example:disk"));
//! steps.handle_timeout(Instant::now());
//! let first = steps.poll_command().expect("the admin Connect goes first");
//! assert_eq!(first.name, "admin Connect");
//! assert!(steps.poll_command().is_none(), "one command at a time");
//! ```

use std::fmt;
use std::time::{Duration, Instant};

use ulp_ddp_core::{QueueId, SgBuffer};

use crate::connection::{Completion, ConnectionConfig, Data};
use crate::nvme::{self, ControllerInfo, NamespaceInfo, Status};
use crate::options::Options;
use crate::wire::capsule_cmd::SQE_LEN;

/// How often CSTS is read while waiting for it to change.
pub const CSTS_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A command a step machine asks the driver to submit on the admin queue (or, for
/// [`IoQueueBringup`], on the I/O queue).
#[derive(Debug)]
#[non_exhaustive]
pub struct Command {
    /// The submission entry (CID and data pointer are the connection's to fill in).
    pub sqe: [u8; SQE_LEN],
    /// Its data: Connect data to write, a buffer for Identify to read into, or none.
    pub data: Data,
    /// The step, in words ("admin Connect", "Identify", ...).
    pub name: &'static str,
}

/// Why a bring-up or shutdown step failed, naming the step.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum BringupError {
    /// A command completed with a status other than success.
    Status {
        /// The step's command, by name.
        command: &'static str,
        /// The CID it ran under.
        cid: u16,
        /// Its status.
        status: Status,
    },
    /// The controller did not reach the state waited for (CSTS.RDY, CSTS.SHST) in time.
    Timeout {
        /// How long the host waited.
        waited: Duration,
        /// What it waited for, in words.
        what: &'static str,
    },
    /// Anything else: a fatal controller status, a namespace that cannot be used.
    Setup(String),
}

impl fmt::Display for BringupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status {
                command,
                cid,
                status,
            } => write_failed(f, command, *cid, *status),
            Self::Timeout { waited, what } => ulp_ddp_core::blocking::Timeout {
                peer: "controller",
                waited: *waited,
                what: (*what).into(),
            }
            .fmt(f),
            Self::Setup(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for BringupError {}

/// "`command` (CID `cid`) failed: `status` in words": a failed command, as every driver says it.
pub(crate) fn write_failed(
    f: &mut fmt::Formatter<'_>,
    command: &str,
    cid: u16,
    status: Status,
) -> fmt::Result {
    write!(
        f,
        "{command} (CID {cid}) failed: {}",
        status.describe(command)
    )
}

/// The interface every step machine of this module shares, so one driver loop runs them
/// all.
pub trait Steps {
    /// What the steps end with.
    type Output;

    /// The next command to submit, if one is due (one at a time: `None` while one is
    /// outstanding, while waiting for time to pass, and once ended).
    fn poll_command(&mut self) -> Option<Command>;

    /// The completion of the command handed out last (its buffer comes back in it).
    fn handle_completion(&mut self, c: Completion);

    /// Time passes: the only way time enters. Call it before [`poll_command`](Self::poll_command)
    /// and whenever [`poll_timeout`](Self::poll_timeout) is due.
    fn handle_timeout(&mut self, now: Instant);

    /// When [`handle_timeout`](Self::handle_timeout) is next needed (`None`: only a
    /// completion moves the steps on).
    fn poll_timeout(&self) -> Option<Instant>;

    /// The end: the result, once (then `None`).
    fn poll_result(&mut self) -> Option<Result<Self::Output, BringupError>>;

    /// A driver's loop in one call: tells the time, then says what to do next (submit a
    /// command and hand its completion back, sleep until an instant, or stop).
    fn next_action(&mut self, now: Instant) -> Action<Self::Output> {
        self.handle_timeout(now);
        if let Some(result) = self.poll_result() {
            return Action::Done(result);
        }
        if let Some(command) = self.poll_command() {
            return Action::Submit(command);
        }
        match self.poll_timeout() {
            Some(wake) => Action::Sleep(wake),
            None => Action::Done(Err(BringupError::Setup(
                "bring-up stalled: no command to send and nothing to wait for".into(),
            ))),
        }
    }
}

/// What [`Steps::next_action`] asks the driver to do.
#[derive(Debug)]
pub enum Action<T> {
    /// Submit this command and hand its completion to [`Steps::handle_completion`].
    Submit(Command),
    /// Nothing to send: sleep until then (keeping the connection's own timers running).
    Sleep(Instant),
    /// The end.
    Done(Result<T, BringupError>),
}

/// A stable host identifier derived from the host NQN (the same on every reconnect, as the
/// specification asks of a host): what Fabrics Connect carries as HOSTID.
pub fn host_id(hostnqn: &str) -> [u8; 16] {
    let a = ulp_ddp_core::digest::crc32c(hostnqn.as_bytes());
    let b = ulp_ddp_core::digest::crc32c(&a.to_le_bytes());
    let mut id = [0u8; 16];
    for (i, chunk) in id.chunks_mut(4).enumerate() {
        chunk.copy_from_slice(&(a ^ b.rotate_left(i as u32 * 8)).to_le_bytes());
    }
    id
}

/// The admin queue's connection settings for `options`: Keep Alive every half KATO, the
/// admin command timeout.
pub fn admin_config(options: &Options, queue_id: QueueId) -> ConnectionConfig {
    let keep_alive = (!options.kato.is_zero()).then(|| options.kato / 2);
    ConnectionConfig::admin(queue_id, options.digests)
        .with_keep_alive(keep_alive)
        .with_command_timeout(Some(options.admin_timeout))
}

/// I/O queue `qid`'s connection settings for `options` (its depth as the bring-up granted).
pub fn io_config(options: &Options, queue_id: QueueId, qid: u16, depth: u16) -> ConnectionConfig {
    ConnectionConfig::io(queue_id, qid, depth, options.digests)
        .with_command_timeout((!options.io_timeout.is_zero()).then_some(options.io_timeout))
}

/// The most bytes one NVMe command carries: MDTS, or
/// [`TRANSPORT_MAX_TRANSFER`](crate::blocking::TRANSPORT_MAX_TRANSFER) when the controller sets
/// none, and never more than 65536 blocks (NLB is 16 bits); a whole number of blocks.
pub fn max_transfer(info: &ControllerInfo, cap: u64, ns: NamespaceInfo) -> u64 {
    let bs = u64::from(ns.block_size.max(1));
    let limit = info
        .max_transfer(cap)
        .unwrap_or(crate::blocking::TRANSPORT_MAX_TRANSFER)
        .min(65536 * bs);
    (limit / bs).max(1) * bs
}

/// `c`'s result if it succeeded, else [`BringupError::Status`] naming `command`.
fn check(command: &'static str, c: &Completion) -> Result<u64, BringupError> {
    if c.status.is_success() {
        Ok(c.result)
    } else {
        Err(BringupError::Status {
            command,
            cid: c.cid,
            status: c.status,
        })
    }
}

/// The Fabrics Connect of queue `qid` with its data.
fn connect_command(
    options: &Options,
    subnqn: &str,
    (qid, depth, kato_ms, cntlid): (u16, u16, u32, u16),
) -> Command {
    let data = nvme::connect_data(host_id(&options.hostnqn), cntlid, subnqn, &options.hostnqn);
    Command {
        sqe: nvme::connect(qid, depth, kato_ms, 0),
        data: Data::Write(SgBuffer::from_vec(data)),
        name: if qid == 0 {
            "admin Connect"
        } else {
            "I/O Connect"
        },
    }
}

/// What CSTS must show for a [`CcWait`] to end.
#[derive(Clone, Copy, Debug)]
enum Goal {
    /// CSTS.RDY (CSTS.CFS is an error).
    Ready,
    /// CSTS.SHST = shutdown complete.
    ShutdownComplete,
}

/// Sets CC, then reads CSTS every [`CSTS_POLL_INTERVAL`] until the goal, for at most `limit`
/// (counted from the first time told after CC was set).
#[derive(Debug)]
struct CcWait {
    set_name: &'static str,
    cc: u32,
    goal: Goal,
    limit: Duration,
    what: &'static str,
    set: bool,
    deadline: Option<Instant>,
    next_poll: Option<Instant>,
    /// A CSTS read did not show the goal: schedule the next, check the deadline.
    recheck: bool,
    now: Option<Instant>,
}

impl CcWait {
    fn new(goal: Goal, limit: Duration, now: Option<Instant>) -> Self {
        let (set_name, cc, what) = match goal {
            Goal::Ready => (
                "Property Set CC",
                nvme::CC_ENABLE,
                "CSTS.RDY after setting CC.EN",
            ),
            Goal::ShutdownComplete => (
                "Property Set CC (shutdown)",
                nvme::CC_SHUTDOWN,
                "CSTS.SHST to report shutdown complete after CC.SHN",
            ),
        };
        Self {
            set_name,
            cc,
            goal,
            limit,
            what,
            set: false,
            deadline: None,
            next_poll: None,
            recheck: false,
            now,
        }
    }

    fn command(&self) -> Option<Command> {
        if !self.set {
            return Some(Command {
                sqe: nvme::property_set(nvme::REG_CC, self.cc),
                data: Data::None,
                name: self.set_name,
            });
        }
        let now = self.now?;
        if self.deadline.is_none() || self.recheck {
            return None;
        }
        self.next_poll.is_none_or(|t| now >= t).then(|| Command {
            sqe: nvme::property_get(nvme::REG_CSTS, false),
            data: Data::None,
            name: "Property Get CSTS",
        })
    }

    /// `Ok(true)` once CSTS shows the goal.
    fn completion(&mut self, c: &Completion) -> Result<bool, BringupError> {
        if !self.set {
            check(self.set_name, c)?;
            self.set = true;
            return Ok(false);
        }
        let csts = check("Property Get CSTS", c)?;
        let done = match self.goal {
            Goal::Ready if csts & 2 != 0 => {
                return Err(BringupError::Setup(
                    "the controller reports a fatal status (CSTS.CFS) after enabling".into(),
                ));
            }
            Goal::Ready => csts & 1 != 0,
            Goal::ShutdownComplete => csts & nvme::CSTS_SHST_MASK == nvme::CSTS_SHST_COMPLETE,
        };
        if done {
            return Ok(true);
        }
        // The next read is scheduled, and the deadline checked, at the next time told.
        self.next_poll = None;
        self.recheck = true;
        Ok(false)
    }

    /// `Err` once the deadline passed with CSTS still not showing the goal.
    fn handle_timeout(&mut self, now: Instant) -> Result<(), BringupError> {
        self.now = Some(now);
        if self.set && self.deadline.is_none() {
            self.deadline = Some(now + self.limit);
        }
        if std::mem::take(&mut self.recheck) {
            if self.deadline.is_some_and(|d| now > d) {
                return Err(BringupError::Timeout {
                    waited: self.limit,
                    what: self.what,
                });
            }
            self.next_poll = Some(now + CSTS_POLL_INTERVAL);
        }
        Ok(())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if !self.set {
            return None;
        }
        if self.deadline.is_none() || self.recheck {
            // Due at once: what was decided from a completion needs the time.
            return self.now;
        }
        self.next_poll
    }
}

/// Where an [`AdminBringup`] is.
#[derive(Debug)]
enum Phase {
    Connect,
    Cap,
    Enable(CcWait),
    IdentifyController,
    IdentifyNamespace,
    NumberOfQueues,
    Done,
}

/// What the admin queue's bring-up found: the association's identity and limits.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct Association {
    /// The controller id the admin Connect returned.
    pub cntlid: u16,
    /// The Controller Capabilities register (CAP: MQES, TO, MPSMIN...).
    pub cap: u64,
    /// Identify Controller, as parsed (default for a discovery controller: not identified).
    pub info: ControllerInfo,
    /// The I/O namespace, checked (default for a discovery controller).
    pub ns: NamespaceInfo,
    /// I/O queues to create: as many as asked for in [`Options::queues`] that the
    /// controller granted (0 for a discovery controller).
    pub io_queues: u16,
    /// Each I/O queue's depth: [`Options::queue_depth`] within what CAP.MQES allows.
    pub queue_depth: u16,
}

/// The admin queue's bring-up, as sans-IO steps (see the [module documentation](self)): the
/// admin queue's Connect (the connection's ICReq/ICResp must be done), CAP, CC.EN and
/// CSTS.RDY (for at most CAP.TO), Identify Controller and Namespace, and Set Features
/// Number of Queues when more than one queue is asked for.
#[derive(Debug)]
pub struct AdminBringup {
    options: Options,
    subnqn: String,
    discovery: bool,
    phase: Phase,
    outstanding: bool,
    /// The latest time told.
    now: Option<Instant>,
    found: Association,
    result: Option<Result<Association, BringupError>>,
}

impl AdminBringup {
    /// The bring-up of an I/O controller for `options` (subsystem, host, namespace, KATO,
    /// queues and depth).
    pub fn new(options: &Options) -> Self {
        Self::with_target(options, options.subnqn.clone(), false)
    }

    /// The bring-up of a discovery controller ([`nvme::DISCOVERY_NQN`]): Connect without
    /// keep-alive (as Linux's one-shot `nvme discover`), CAP, CC.EN and CSTS.RDY; no Identify.
    pub fn discovery(options: &Options) -> Self {
        Self::with_target(options, nvme::DISCOVERY_NQN.into(), true)
    }

    fn with_target(options: &Options, subnqn: String, discovery: bool) -> Self {
        Self {
            options: options.clone(),
            subnqn,
            discovery,
            phase: Phase::Connect,
            outstanding: false,
            now: None,
            found: Association::default(),
            result: None,
        }
    }

    fn fail(&mut self, e: BringupError) {
        self.phase = Phase::Done;
        self.result = Some(Err(e));
    }

    fn step(&mut self, c: Completion) -> Result<(), BringupError> {
        self.phase = match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Connect => {
                self.found.cntlid = check("admin Connect", &c)? as u16;
                Phase::Cap
            }
            Phase::Cap => {
                let cap = check("Property Get CAP", &c)?;
                self.found.cap = cap;
                // CAP.TO: the worst case time to ready, in 500 ms units; Linux waits
                // (CAP.TO + 1) * 500 ms.
                let to = Duration::from_millis(500) * (((cap >> 24) & 0xFF) as u32 + 1);
                Phase::Enable(CcWait::new(Goal::Ready, to, self.now))
            }
            Phase::Enable(mut wait) => {
                if !wait.completion(&c)? {
                    Phase::Enable(wait)
                } else if self.discovery {
                    Phase::Done
                } else {
                    Phase::IdentifyController
                }
            }
            Phase::IdentifyController => {
                check("Identify", &c)?;
                self.found.info = ControllerInfo::parse(&identify_data(c));
                Phase::IdentifyNamespace
            }
            Phase::IdentifyNamespace => {
                check("Identify", &c)?;
                let nsid = self.options.nsid;
                self.found.ns = NamespaceInfo::check(&identify_data(c))
                    .map_err(|e| BringupError::Setup(format!("namespace {nsid}: {e}")))?;
                let mqes = (self.found.cap & 0xFFFF) as u16;
                self.found.queue_depth = self
                    .options
                    .queue_depth
                    .clamp(2, mqes.saturating_add(1).max(2));
                self.found.io_queues = self.options.queues.max(1);
                if self.found.io_queues > 1 {
                    Phase::NumberOfQueues
                } else {
                    Phase::Done
                }
            }
            Phase::NumberOfQueues => {
                // The controller answers with what it allocates (0's based NSQA, NCQA).
                let granted = check("Set Features (Number of Queues)", &c)?;
                let nsqa = (granted & 0xFFFF) as u16;
                let ncqa = ((granted >> 16) & 0xFFFF) as u16;
                self.found.io_queues = self.found.io_queues.min(nsqa.min(ncqa).saturating_add(1));
                Phase::Done
            }
            Phase::Done => Phase::Done,
        };
        if matches!(self.phase, Phase::Done) {
            self.result = Some(Ok(std::mem::take(&mut self.found)));
        }
        Ok(())
    }
}

/// An Identify command's data (missing data reads as zeros when parsed).
fn identify_data(c: Completion) -> Vec<u8> {
    c.buffer.map(SgBuffer::into_vec).unwrap_or_default()
}

impl Steps for AdminBringup {
    type Output = Association;

    fn poll_command(&mut self) -> Option<Command> {
        if self.outstanding {
            return None;
        }
        let identify = |cns, nsid| Command {
            sqe: nvme::identify(cns, nsid),
            data: Data::Read(SgBuffer::zeroed(nvme::IDENTIFY_LEN)),
            name: "Identify",
        };
        let command = match &self.phase {
            Phase::Connect => {
                let kato_ms = if self.discovery {
                    0
                } else {
                    u32::try_from(self.options.kato.as_millis()).unwrap_or(u32::MAX)
                };
                connect_command(&self.options, &self.subnqn, (0, 32, kato_ms, 0xFFFF))
            }
            Phase::Cap => Command {
                sqe: nvme::property_get(nvme::REG_CAP, true),
                data: Data::None,
                name: "Property Get CAP",
            },
            Phase::Enable(wait) => wait.command()?,
            Phase::IdentifyController => identify(nvme::CNS_CONTROLLER, 0),
            Phase::IdentifyNamespace => identify(nvme::CNS_NAMESPACE, self.options.nsid),
            Phase::NumberOfQueues => {
                // Set Features, Number of Queues (FID 07h): 0's based NSQR and NCQR.
                let mut sqe = nvme::set_features(nvme::FID_NUMBER_OF_QUEUES);
                let want = u32::from(self.found.io_queues - 1);
                sqe[44..48].copy_from_slice(&(want | (want << 16)).to_le_bytes());
                Command {
                    sqe,
                    data: Data::None,
                    name: "Set Features (Number of Queues)",
                }
            }
            Phase::Done => return None,
        };
        self.outstanding = true;
        Some(command)
    }

    fn handle_completion(&mut self, c: Completion) {
        if !self.outstanding || self.result.is_some() {
            return;
        }
        self.outstanding = false;
        if let Err(e) = self.step(c) {
            self.fail(e);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(now);
        if let Phase::Enable(wait) = &mut self.phase
            && let Err(e) = wait.handle_timeout(now)
        {
            self.fail(e);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Enable(wait) if !self.outstanding => wait.poll_timeout(),
            _ => None,
        }
    }

    fn poll_result(&mut self) -> Option<Result<Association, BringupError>> {
        self.result.take()
    }
}

/// The Fabrics Connect of one I/O queue (its connection's ICReq/ICResp done), to the
/// controller the admin Connect returned.
#[derive(Debug)]
pub struct IoQueueBringup {
    command: Option<Command>,
    result: Option<Result<(), BringupError>>,
}

impl IoQueueBringup {
    /// The Connect of I/O queue `qid` with `depth` entries to controller `cntlid` (from the
    /// [`Association`]).
    pub fn new(options: &Options, qid: u16, depth: u16, cntlid: u16) -> Self {
        Self {
            command: Some(connect_command(
                options,
                &options.subnqn,
                (qid, depth, 0, cntlid),
            )),
            result: None,
        }
    }
}

impl Steps for IoQueueBringup {
    type Output = ();

    fn poll_command(&mut self) -> Option<Command> {
        self.command.take()
    }

    fn handle_completion(&mut self, c: Completion) {
        if self.result.is_none() {
            self.result = Some(check("I/O Connect", &c).map(|_| ()));
        }
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn poll_result(&mut self) -> Option<Result<(), BringupError>> {
        self.result.take()
    }
}

/// A clean shutdown, as Linux does when a controller is deleted: CC.SHN = 01b (normal
/// shutdown), then CSTS.SHST read until it reports shutdown complete, for at most `limit`.
#[derive(Debug)]
pub struct Shutdown {
    wait: CcWait,
    outstanding: bool,
    result: Option<Result<(), BringupError>>,
}

impl Shutdown {
    /// A shutdown that waits at most `limit` for CSTS.SHST.
    pub fn new(limit: Duration) -> Self {
        Self {
            wait: CcWait::new(Goal::ShutdownComplete, limit, None),
            outstanding: false,
            result: None,
        }
    }
}

impl Steps for Shutdown {
    type Output = ();

    fn poll_command(&mut self) -> Option<Command> {
        if self.outstanding || self.result.is_some() {
            return None;
        }
        let c = self.wait.command()?;
        self.outstanding = true;
        Some(c)
    }

    fn handle_completion(&mut self, c: Completion) {
        if !self.outstanding || self.result.is_some() {
            return;
        }
        self.outstanding = false;
        match self.wait.completion(&c) {
            Ok(false) => {}
            Ok(true) => self.result = Some(Ok(())),
            Err(e) => self.result = Some(Err(e)),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.result.is_none()
            && let Err(e) = self.wait.handle_timeout(now)
        {
            self.result = Some(Err(e));
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.outstanding {
            None
        } else {
            self.wait.poll_timeout()
        }
    }

    fn poll_result(&mut self) -> Option<Result<(), BringupError>> {
        self.result.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(result: u64, buffer: Option<SgBuffer>) -> Completion {
        Completion {
            cid: 1,
            status: Status::SUCCESS,
            result,
            buffer,
            offloaded: false,
            by_success_flag: false,
        }
    }

    /// Answers `steps` until CC.EN is set; returns the time then.
    fn to_enabled(steps: &mut AdminBringup, t0: Instant, cap: u64) {
        steps.handle_timeout(t0);
        for (name, result) in [
            ("admin Connect", 7),
            ("Property Get CAP", cap),
            ("Property Set CC", 0),
        ] {
            assert_eq!(steps.poll_command().map(|c| c.name), Some(name));
            steps.handle_completion(done(result, None));
        }
    }

    #[test]
    fn csts_rdy_is_polled_within_cap_to_then_identify_and_queues() {
        let mut options = Options::new("nqn.test");
        options.queues = 4;
        let mut steps = AdminBringup::new(&options);
        let t0 = Instant::now();
        // MQES 15, CAP.TO 1 (1 s).
        to_enabled(&mut steps, t0, 15 | (1 << 24));
        assert_eq!(
            steps.poll_timeout(),
            Some(t0),
            "the deadline needs the time"
        );
        steps.handle_timeout(t0);
        assert_eq!(
            steps.poll_command().map(|c| c.name),
            Some("Property Get CSTS")
        );
        steps.handle_completion(done(0, None));
        steps.handle_timeout(t0);
        assert!(steps.poll_command().is_none(), "the next read waits");
        assert_eq!(steps.poll_timeout(), Some(t0 + CSTS_POLL_INTERVAL));
        steps.handle_timeout(t0 + CSTS_POLL_INTERVAL);
        assert!(steps.poll_command().is_some());
        steps.handle_completion(done(1, None));
        let mut ns = vec![0u8; nvme::IDENTIFY_LEN];
        ns[..8].copy_from_slice(&100u64.to_le_bytes());
        ns[128 + 2] = 9;
        for data in [vec![0u8; nvme::IDENTIFY_LEN], ns] {
            let c = steps.poll_command().expect("Identify");
            assert_eq!(c.name, "Identify");
            steps.handle_completion(done(0, Some(SgBuffer::from_vec(data))));
        }
        let c = steps.poll_command().expect("Set Features");
        assert_eq!(c.name, "Set Features (Number of Queues)");
        steps.handle_completion(done(1 | (1 << 16), None)); // two granted
        let a = steps.poll_result().expect("done").expect("success");
        assert_eq!((a.cntlid, a.io_queues, a.queue_depth), (7, 2, 16));
        assert_eq!((a.ns.nsze, a.ns.block_size), (100, 512));
    }

    #[test]
    fn a_controller_never_ready_fails_after_cap_to_in_words() {
        let mut steps = AdminBringup::new(&Options::new("nqn.test"));
        let t0 = Instant::now();
        to_enabled(&mut steps, t0, 0); // CAP.TO 0: 500 ms
        let mut now = t0;
        let err = loop {
            steps.handle_timeout(now);
            if let Some(r) = steps.poll_result() {
                break r.expect_err("never ready");
            }
            if steps.poll_command().is_some() {
                steps.handle_completion(done(0, None));
            }
            now += Duration::from_millis(100);
        };
        assert_eq!(
            err.to_string(),
            "no answer from the controller in 0.5 s while waiting for CSTS.RDY after setting CC.EN"
        );
        assert!(now - t0 < Duration::from_secs(1), "bounded by CAP.TO");
    }

    #[test]
    fn a_failed_step_is_named() {
        let mut steps = AdminBringup::new(&Options::new("nqn.test"));
        steps.handle_timeout(Instant::now());
        assert!(steps.poll_command().is_some());
        let mut c = done(0, None);
        c.status = Status::generic(nvme::SC_CONNECT_INVALID_PARAM);
        steps.handle_completion(c);
        let err = steps.poll_result().expect("ended").expect_err("refused");
        assert!(err.to_string().starts_with("admin Connect (CID 1) failed:"));
        assert!(steps.poll_command().is_none());
    }

    #[test]
    fn host_id_is_stable_per_nqn() {
        assert_eq!(host_id("nqn.a"), host_id("nqn.a"));
        assert_ne!(host_id("nqn.a"), host_id("nqn.b"));
    }
}
