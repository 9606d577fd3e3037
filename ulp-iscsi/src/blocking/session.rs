//! [`Session`]: login, commands with a session-level [`CommandId`], waits, logout.

use core::fmt;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use ulp_ddp_core::blocking::{Driver, Turn, is_timeout};
use ulp_ddp_core::{DdpBackend, NoOffload, SgBuffer, SocketReader};

use super::{Capturing, Direction, Error, Options, SessionEvent, secs, timed_out};
use crate::bringup::{Bringup, Ready};
use crate::connection::{
    AsyncEvent, Command, CommandError, CommandId, Completion, ConnectionConfig, ConnectionError,
    Data, DiscoveredTarget, Event, Phase, Recovery, ScsiOutcome,
};
use crate::scsi::{self, Capacity, Inquiry};
use crate::wire::Lun;

/// Where recovery events go as they happen ([`Session::on_event`]).
type EventHook = Box<dyn FnMut(&SessionEvent)>;

/// What a tracked command moves.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Kind {
    Read,
    Write,
    None,
}

impl Kind {
    pub(crate) fn of(data: &Data) -> Self {
        match data {
            Data::Read(_) => Self::Read,
            Data::Write(_) => Self::Write,
            _ => Self::None,
        }
    }

    pub(crate) fn data(self, buffer: Option<SgBuffer>) -> Data {
        match (self, buffer) {
            (Self::Read, Some(b)) => Data::Read(b),
            (Self::Write, Some(b)) => Data::Write(b),
            _ => Data::None,
        }
    }
}

/// A command the session tracks across reinstatements.
#[derive(Debug)]
pub(super) struct Tracked {
    /// The session's id for it (stable across reinstatements).
    pub(super) id: u64,
    pub(super) lun: Lun,
    pub(super) cdb: scsi::Cdb,
    pub(super) kind: Kind,
    /// Times issued again so far.
    pub(super) tries: u32,
}

/// A logged-in iSCSI session over one blocking TCP connection, reinstated when the connection
/// ends without being asked to.
///
/// Commands go in with [`submit`](Self::submit) and come out with [`wait`](Self::wait) or
/// [`wait_any`](Self::wait_any) as [`Completion`]s keyed by the session's [`CommandId`], which
/// stays the same when a command is issued again on a new connection.
///
/// When things go wrong (defaults as open-iscsi's, [`Options`]):
///
/// | trigger | step | default |
/// |---|---|---|
/// | the connection ends without the caller's logout: the target closed or reset it, a NOP-Out ping went unanswered, a protocol violation, the connection's task-management ladder failed, the target asked to log out or dropped it, or it sent nothing for `timeout` while commands were outstanding | every command completes, its buffer back; the retry-safe ones ([`scsi::is_retry_safe`]) tried fewer than `max_retries` times wait for the new connection, the others complete with [`CommandError::ConnectionLost`] and the cause | 5 retries |
/// | the loss | reinstatement: a new TCP connection to the same address and a login with the same ISID and TSIH 0 (RFC 7143 §6.3.5; the target ends the old session's tasks), each attempt bounded by `login_timeout`, one every `reconnect_delay` | 15 s, 3 s |
/// | logged in again | each LUN's READ CAPACITY checked against what it was (a change fails every command rather than write to the wrong blocks), a TEST UNIT READY takes each LUN's unit attention, then the waiting commands go out again | |
/// | `replacement_timeout` after the loss, or a login that cannot succeed (authentication or authorization failure, target not found or removed) | every outstanding and queued command completes with [`CommandError::SessionLost`] in words and its buffer; new commands are refused ([`Error::Refused`], buffer back) | 120 s |
/// | [`logout`](Self::logout) and the target closes the connection instead of answering, after every command completed | a warning ([`SessionEvent::LogoutUnanswered`]), `Ok` | |
///
/// [`take_events`](Self::take_events) reports each step in words.
pub struct Session<B: DdpBackend = NoOffload> {
    pub(super) addr: SocketAddr,
    pub(super) config: ConnectionConfig,
    pub(super) backend: Box<dyn FnMut() -> B>,
    pub(super) conn: crate::Connection<B>,
    pub(super) driver: Driver<Capturing>,
    /// The connection's events other than completions, not taken yet.
    pub(super) events: VecDeque<Event>,
    pub(super) options: Options,
    pub(super) block_lens: HashMap<Lun, u32>,
    /// READ CAPACITY answers, checked again after a reinstatement.
    pub(super) capacities: HashMap<Lun, Capacity>,
    pub(super) copy_below: u64,
    next_id: u64,
    /// Commands issued on the current connection, by the connection's id.
    pub(super) inflight: HashMap<CommandId, Tracked>,
    /// Commands waiting for a (new) connection, with their data.
    pub(super) backlog: VecDeque<(Tracked, Data)>,
    /// Completions not taken yet, with the session's ids.
    pub(super) ready: VecDeque<Completion>,
    pub(super) session_events: Vec<SessionEvent>,
    /// The caller asked the connection to end (logout).
    pub(super) closing: bool,
    /// Why the session was lost, once it was.
    pub(super) lost: Option<String>,
    pub(super) reinstatements: u64,
    /// Where events go as they happen, when set.
    pub(super) hook: Option<EventHook>,
    /// Commands the connection's end failed (not retry-safe, or out of retries) since the
    /// last reinstatement report.
    pub(super) failed_by_end: usize,
}

impl<B: DdpBackend> fmt::Debug for Session<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("addr", &self.addr)
            .field("conn", &self.conn)
            .field("outstanding", &self.outstanding())
            .field("reinstatements", &self.reinstatements)
            .finish_non_exhaustive()
    }
}

impl Session<NoOffload> {
    /// Connects to `addr` and logs in, with the default backend ([`NoOffload`]: payload still
    /// read in place).
    ///
    /// # Errors
    ///
    /// Socket errors, the timeout, and login failures.
    pub fn connect(
        addr: impl ToSocketAddrs,
        config: ConnectionConfig,
        options: Options,
    ) -> Result<Self, Error> {
        Self::connect_with(addr, config, || NoOffload, options)
    }

    /// Runs a discovery session against `addr`: SendTargets=All, then logout.
    ///
    /// # Errors
    ///
    /// Socket errors, the timeout, login failures, a malformed answer.
    pub fn discover(
        addr: impl ToSocketAddrs,
        initiator_name: &str,
        options: Options,
    ) -> Result<Vec<DiscoveredTarget>, Error> {
        let mut s = Self::connect(addr, ConnectionConfig::discovery(initiator_name), options)?;
        let id = s.conn.send_targets()?;
        let targets = s.wait_event(
            &format!("the SendTargets answer (text request {})", id.0),
            |e| match e {
                Event::Discovered { id: got, .. } | Event::Failed { id: got, .. } => *got == id,
                _ => false,
            },
        )?;
        let targets = match targets {
            Event::Discovered { targets, .. } => targets,
            Event::Failed { error, .. } => {
                return Err(Error::Command {
                    error,
                    buffer: None,
                });
            }
            _ => return Err(Error::BadData("SendTargets answer")),
        };
        s.logout()?;
        Ok(targets)
    }
}

/// A new connection over `stream`, its first Login Request queued, and its driver.
fn start_link<B: DdpBackend>(
    config: &ConnectionConfig,
    backend: &mut dyn FnMut() -> B,
    options: &Options,
    stream: TcpStream,
    copy_below: u64,
) -> Result<(crate::Connection<B>, Driver<Capturing>), Error> {
    stream.set_write_timeout(Some(options.timeout))?;
    // Mutual CHAP: a fresh random challenge for every connection.
    let config = config
        .clone()
        .with_random_chap_challenge()
        .map_err(|e| io::Error::other(format!("random CHAP challenge: {e}")))?;
    let mut conn = crate::Connection::new(config, backend());
    conn.start_login()?;
    let mut driver = Driver::new(Capturing {
        stream,
        capture: options.capture.then(Vec::new),
    });
    driver.set_reader(SocketReader::new(64 * 1024).copy_small_payloads(copy_below));
    Ok((conn, driver))
}

/// Opens a TCP connection to `addr` within `limit`, saying so in words when it cannot.
pub(super) fn tcp_connect(addr: SocketAddr, limit: Duration) -> Result<TcpStream, Error> {
    let stream = TcpStream::connect_timeout(&addr, limit).map_err(|e| {
        if is_timeout(&e) {
            timed_out(limit, format!("the TCP connection to {addr} to open"))
        } else {
            Error::Io(e)
        }
    })?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl<B: DdpBackend> Session<B> {
    /// Connects to `addr` and logs in; `backend` makes the connection's DDP backend, again
    /// for each reinstated connection.
    ///
    /// # Errors
    ///
    /// Socket errors, the timeout, and login failures.
    pub fn connect_with(
        addr: impl ToSocketAddrs,
        config: ConnectionConfig,
        backend: impl FnMut() -> B + 'static,
        options: Options,
    ) -> Result<Self, Error> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing");
        let mut found = None;
        for a in addr.to_socket_addrs()? {
            match tcp_connect(a, options.timeout) {
                Ok(s) => {
                    found = Some((a, s));
                    break;
                }
                Err(Error::Io(e)) => last = e,
                Err(e) => return Err(e),
            }
        }
        let (addr, stream) = found.ok_or(Error::Io(last))?;
        let mut backend: Box<dyn FnMut() -> B> = Box::new(backend);
        let (conn, driver) = start_link(&config, &mut *backend, &options, stream, 0)?;
        let mut s = Self {
            addr,
            config,
            backend,
            conn,
            driver,
            events: VecDeque::new(),
            options,
            block_lens: HashMap::new(),
            capacities: HashMap::new(),
            copy_below: 0,
            next_id: 1,
            inflight: HashMap::new(),
            backlog: VecDeque::new(),
            ready: VecDeque::new(),
            session_events: Vec::new(),
            closing: false,
            lost: None,
            reinstatements: 0,
            hook: None,
            failed_by_end: 0,
        };
        let mut bringup = Bringup::new(Instant::now(), s.options.timeout);
        s.bring_up(&mut bringup)?;
        Ok(s)
    }

    /// Replaces the connection with a new one over `stream` and runs `bringup` on it (login
    /// and the checks it holds), within the silence timeout. The old connection is dropped
    /// once the new one exists.
    pub(super) fn relogin(
        &mut self,
        stream: TcpStream,
        bringup: &mut Bringup,
    ) -> Result<Ready, Error> {
        let (conn, driver) = start_link(
            &self.config,
            &mut *self.backend,
            &self.options,
            stream,
            self.copy_below,
        )?;
        self.conn = conn;
        self.driver = driver;
        self.events.clear();
        self.bring_up(bringup)
    }

    /// Runs `bringup` on the new connection (its Login Request queued by
    /// [`start_link`]): the sans-IO steps shared with the tokio driver, over this driver's
    /// socket, with the silence timeout on top. The caller's commands are not issued
    /// meanwhile.
    fn bring_up(&mut self, bringup: &mut Bringup) -> Result<Ready, Error> {
        let mut last_rx = Instant::now();
        let result = loop {
            while let Some(e) = self.conn.poll_event() {
                if let Some(other) = bringup.handle_event(&mut self.conn, e) {
                    self.note_event(other);
                }
            }
            bringup.handle_timeout(Instant::now());
            if let Some(r) = bringup.poll() {
                break r.map_err(Error::from);
            }
            if let Some(end) = self.ended() {
                // Over, every event taken (the bring-up fails on the end it sees; this is
                // the backstop).
                break Err(Error::Connection(end));
            }
            let silent_until = last_rx + self.options.timeout;
            let until = bringup
                .poll_timeout()
                .map_or(silent_until, |d| d.min(silent_until));
            match self.driver.turn(&mut self.conn, Some(until)) {
                Ok(Turn::Read(_)) => last_rx = Instant::now(),
                Ok(Turn::Closed) => {}
                Ok(Turn::Woken) => {
                    if Instant::now() >= silent_until {
                        break Err(timed_out(self.options.timeout, bringup.waiting_for()));
                    }
                }
                Err(e) => break Err(self.socket_error(e)),
            }
        };
        if result.is_err() {
            let _ = self.driver.flush(&mut self.conn);
            bringup.abandon(&mut self.conn);
        }
        result
    }

    /// The sans-IO connection (parameters, engine statistics).
    pub fn connection(&self) -> &crate::Connection<B> {
        &self.conn
    }

    /// The sans-IO connection. Commands submitted on it directly get no recovery and keep the
    /// connection's ids; do not mix them with [`submit`](Self::submit).
    pub fn connection_mut(&mut self) -> &mut crate::Connection<B> {
        &mut self.conn
    }

    /// The bytes sent and received so far on the current connection, by direction, if
    /// capturing.
    pub fn capture(&self) -> Option<&[(Direction, Vec<u8>)]> {
        self.driver.socket().capture.as_deref()
    }

    /// Local and peer ports of the current TCP connection.
    pub fn ports(&self) -> (u16, u16) {
        let s = &self.driver.socket().stream;
        let l = s.local_addr().map_or(0, |a| a.port());
        let p = s.peer_addr().map_or(0, |a| a.port());
        (l, p)
    }

    /// How many times the session was reinstated.
    pub fn reinstatements(&self) -> u64 {
        self.reinstatements
    }

    /// What recovery did since the last call, for the caller to log.
    pub fn take_events(&mut self) -> Vec<SessionEvent> {
        std::mem::take(&mut self.session_events)
    }

    /// Hands each recovery event to `hook` as it happens (e.g. during a reinstatement, while
    /// a wait is still blocked), instead of keeping it for [`take_events`](Self::take_events).
    pub fn on_event(&mut self, hook: impl FnMut(&SessionEvent) + 'static) {
        self.hook = Some(Box::new(hook));
    }

    /// Reports a recovery event: to the hook, or kept for [`take_events`](Self::take_events).
    pub(super) fn report(&mut self, e: SessionEvent) {
        match self.hook.as_mut() {
            Some(hook) => hook(&e),
            None => self.session_events.push(e),
        }
    }

    /// Why the session was lost, once it was: commands are refused from then on.
    pub fn lost(&self) -> Option<&str> {
        self.lost.as_deref()
    }

    /// Commands submitted and not yet taken with [`wait`](Self::wait) or
    /// [`wait_any`](Self::wait_any).
    pub fn outstanding(&self) -> usize {
        self.inflight.len() + self.backlog.len() + self.ready.len()
    }

    /// Reads small commands' Data-In through the receive buffer: while every outstanding read
    /// expects fewer than `threshold` more bytes, each socket read takes as much as the 64 KiB
    /// receive buffer holds (many PDUs at once) and the payload is copied into the command
    /// buffers; larger reads are still read in place. `0` (the default) reads every payload in
    /// place. See [`SocketReader::copy_small_payloads`].
    pub fn copy_small_payloads(&mut self, threshold: u64) {
        self.copy_below = threshold;
        self.driver
            .set_reader(SocketReader::new(64 * 1024).copy_small_payloads(threshold));
    }

    /// Sends what is queued, waits for bytes (no longer than the next timer or the timeout),
    /// and processes them. No recovery: a connection that ended is reinstated by the next wait
    /// for a command.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] once the connection ended, [`Error::Io`] on a socket error.
    pub fn pump(&mut self) -> Result<(), Error> {
        self.issue();
        let deadline = Instant::now() + self.options.timeout;
        let turn = self.driver.turn(&mut self.conn, Some(deadline));
        self.dispatch();
        turn.map_err(|e| self.socket_error(e))?;
        match self.ended() {
            Some(e) => Err(Error::Connection(e)),
            None => Ok(()),
        }
    }

    /// A socket error in words: a timeout (a write the target did not take in time) says so,
    /// never "os error 11".
    fn socket_error(&self, e: io::Error) -> Error {
        if is_timeout(&e) {
            timed_out(
                self.options.timeout,
                "the target to read what the initiator sends (its TCP receive window stayed \
                 full)"
                    .to_string(),
            )
        } else {
            Error::Io(e)
        }
    }

    /// Why the connection ended, once it has.
    pub(super) fn ended(&self) -> Option<ConnectionError> {
        super::ended(&self.conn)
    }

    /// Whether recovery applies to a connection end now.
    pub(super) fn recovering(&self) -> bool {
        self.options.reinstate && !self.closing && self.lost.is_none()
    }

    /// Takes the connection's events: completions are matched to their commands, the rest kept
    /// for [`wait_event`](Self::wait_event).
    pub(super) fn dispatch(&mut self) {
        while let Some(e) = self.conn.poll_event() {
            match e {
                Event::Completed(c) => self.on_completion(c),
                other => self.note_event(other),
            }
        }
    }

    /// A connection event other than a completion: reported (recovery steps, the logout
    /// warnings, asynchronous events that do not end the connection) or kept for
    /// [`wait_event`](Self::wait_event).
    pub(super) fn note_event(&mut self, e: Event) {
        match e {
            Event::Recovery(Recovery::ClosedInsteadOfLogoutResponse) => {
                self.report(SessionEvent::LogoutUnanswered {
                    cause: "the target closed the connection".into(),
                });
            }
            Event::Recovery(Recovery::LogoutUnanswered { waited }) => {
                self.report(SessionEvent::LogoutUnanswered {
                    cause: format!("no Logout Response within {}", secs(waited)),
                });
            }
            Event::Recovery(step) => self.report(SessionEvent::Recovery(step.to_string())),
            // Those that end the connection are its cause (reported with the loss); the
            // others are reported here, not kept where nothing takes them.
            Event::Async(a) => match a {
                AsyncEvent::Scsi { .. }
                | AsyncEvent::Vendor { .. }
                | AsyncEvent::Reserved { .. } => {
                    self.report(SessionEvent::TargetEvent(a.to_string()));
                }
                _ => {}
            },
            other => self.events.push_back(other),
        }
    }

    fn on_completion(&mut self, c: Completion) {
        let Some(mut t) = self.inflight.remove(&c.id) else {
            // Submitted on the connection directly: handed on as it is.
            self.ready.push_back(c);
            return;
        };
        if self.recovering()
            && let Err(e) = &c.result
            && crate::recovery::should_reissue(&t.cdb, t.tries, e, self.options.max_retries)
        {
            t.tries += 1;
            let data = t.kind.data(c.buffer);
            self.backlog.push_back((t, data));
            return;
        }
        if self.recovering() && matches!(c.result, Err(CommandError::ConnectionLost(_))) {
            self.failed_by_end += 1;
        }
        self.ready.push_back(Completion {
            id: CommandId(t.id),
            result: c.result,
            buffer: c.buffer,
        });
    }

    /// Issues the waiting commands on a connection in full feature phase.
    pub(super) fn issue(&mut self) {
        if self.conn.phase() != Phase::FullFeature {
            return;
        }
        while let Some((t, data)) = self.backlog.pop_front() {
            let id = self.conn.submit(Command {
                lun: t.lun,
                cdb: t.cdb,
                data,
            });
            self.inflight.insert(id, t);
        }
        self.dispatch();
    }

    /// Runs the connection until `done` holds, reinstating the session when the connection
    /// ends without being asked to (when `recover`).
    fn run_until(
        &mut self,
        what: &dyn Fn() -> String,
        recover: bool,
        done: impl Fn(&Self) -> bool,
    ) -> Result<(), Error> {
        let mut last_rx = Instant::now();
        loop {
            self.dispatch();
            if done(self) {
                return Ok(());
            }
            if let Some(end) = self.ended() {
                if !(recover && self.recovering()) {
                    let _ = self.driver.flush(&mut self.conn);
                    return Err(Error::Connection(end));
                }
                self.reinstate(&end);
                last_rx = Instant::now();
                continue;
            }
            self.issue();
            let silent_until = last_rx + self.options.timeout;
            let turn = self.driver.turn(&mut self.conn, Some(silent_until));
            self.dispatch();
            let waiting = !self.inflight.is_empty();
            match turn {
                Ok(Turn::Read(_)) => last_rx = Instant::now(),
                Ok(Turn::Closed) => {}
                Ok(Turn::Woken) => {
                    if Instant::now() >= silent_until {
                        if !(recover && self.recovering() && waiting) {
                            return Err(timed_out(self.options.timeout, what()));
                        }
                        self.conn.fail(ConnectionError::Socket(format!(
                            "the target sent nothing for {} while {} waited",
                            secs(self.options.timeout),
                            what()
                        )));
                    }
                }
                Err(e) => {
                    if !(recover && self.recovering()) {
                        return Err(self.socket_error(e));
                    }
                    let words = if is_timeout(&e) {
                        format!(
                            "the target did not read what the initiator sends for {} (its \
                             TCP receive window stayed full)",
                            secs(self.options.timeout)
                        )
                    } else {
                        e.to_string()
                    };
                    self.conn.fail(ConnectionError::Socket(words));
                }
            }
        }
    }

    /// Turns until an event `wanted` accepts arrives (and takes it), the connection ends, or
    /// the timeout passes: in all, not only in silence (a target that answers the
    /// connection's keep-alive pings, or pings itself, but never sends what is waited for
    /// must not hold the caller forever). No recovery.
    fn wait_event(&mut self, what: &str, wanted: impl Fn(&Event) -> bool) -> Result<Event, Error> {
        let deadline = Instant::now() + self.options.timeout;
        self.wait_event_until(what, Some(deadline), wanted)
    }

    fn wait_event_until(
        &mut self,
        what: &str,
        deadline: Option<Instant>,
        wanted: impl Fn(&Event) -> bool,
    ) -> Result<Event, Error> {
        let started = Instant::now();
        let mut last_rx = started;
        loop {
            self.dispatch();
            if let Some(i) = self.events.iter().position(&wanted)
                && let Some(e) = self.events.remove(i)
            {
                return Ok(e);
            }
            if let Some(e) = self.ended() {
                let _ = self.driver.flush(&mut self.conn);
                return Err(Error::Connection(e));
            }
            let silent_until = last_rx + self.options.timeout;
            let until = deadline.map_or(silent_until, |d| d.min(silent_until));
            match self.driver.turn(&mut self.conn, Some(until)) {
                Ok(Turn::Read(_)) => last_rx = Instant::now(),
                Ok(Turn::Closed) => {}
                Ok(Turn::Woken) => {
                    let now = Instant::now();
                    if now >= silent_until {
                        return Err(timed_out(self.options.timeout, what.to_string()));
                    }
                    if deadline.is_some_and(|d| now >= d) {
                        return Err(timed_out(now - started, what.to_string()));
                    }
                }
                Err(e) => {
                    self.dispatch();
                    return Err(self.socket_error(e));
                }
            }
        }
    }

    /// Submits a command without waiting; it goes out at once, or when the session is
    /// reinstated.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] once the session was lost, with the buffer handed back.
    pub fn submit(&mut self, cmd: Command) -> Result<CommandId, Error> {
        if let Some(reason) = &self.lost {
            return Err(Error::Refused {
                reason: format!("the session was lost: {reason}"),
                buffer: cmd.data.into_buffer(),
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        let t = Tracked {
            id,
            lun: cmd.lun,
            cdb: cmd.cdb,
            kind: Kind::of(&cmd.data),
            tries: 0,
        };
        if self.conn.phase() == Phase::FullFeature {
            let cid = self.conn.submit(cmd);
            self.inflight.insert(cid, t);
            self.dispatch();
        } else {
            // The connection ended: the command waits for the reinstatement (or fails with
            // the connection's cause when there is none).
            self.backlog.push_back((t, cmd.data));
            if !self.recovering() {
                let cause = self.ended().unwrap_or(ConnectionError::NotReady);
                self.fail_backlog(&CommandError::ConnectionLost(Box::new(cause)));
            }
        }
        Ok(CommandId(id))
    }

    /// Completes every waiting command with `error`, its buffer handed back.
    pub(super) fn fail_backlog(&mut self, error: &CommandError) -> usize {
        let n = self.backlog.len();
        while let Some((t, data)) = self.backlog.pop_front() {
            self.ready.push_back(Completion {
                id: CommandId(t.id),
                result: Err(error.clone()),
                buffer: data.into_buffer(),
            });
        }
        n
    }

    /// Waits for the completion of `id`, reinstating the session on the way when it must.
    ///
    /// # Errors
    ///
    /// `id` not outstanding ([`Error::Refused`]); the timeout when the target is silent and
    /// recovery is off; socket errors with recovery off. A failed command is a
    /// [`Completion`] with the error and its buffer, not `Err`.
    pub fn wait(&mut self, id: CommandId) -> Result<Completion, Error> {
        let known = |s: &Self| {
            s.ready.iter().any(|c| c.id == id)
                || s.inflight.values().any(|t| t.id == id.0)
                || s.backlog.iter().any(|(t, _)| t.id == id.0)
        };
        if !known(self) {
            return Err(Error::Refused {
                reason: format!("command {} is not outstanding", id.0),
                buffer: None,
            });
        }
        let what = || format!("the completion of command {}", id.0);
        let r = self.run_until(&what, true, |s| {
            s.ready.iter().any(|c| c.id == id) || !known(s)
        });
        self.take_ready(Some(id), r)
    }

    /// Waits for any command's completion, reinstating the session on the way when it must.
    ///
    /// # Errors
    ///
    /// As [`wait`](Session::wait); nothing outstanding is [`Error::Refused`].
    pub fn wait_any(&mut self) -> Result<Completion, Error> {
        if self.ready.is_empty()
            && self.inflight.is_empty()
            && self.backlog.is_empty()
            && self.conn.outstanding() == 0
        {
            return Err(Error::Refused {
                reason: "no command is outstanding".into(),
                buffer: None,
            });
        }
        let r = self.run_until(&|| "a command's completion".to_string(), true, |s| {
            !s.ready.is_empty()
        });
        self.take_ready(None, r)
    }

    /// The completion waited for, when there is one (also after an error ended the wait).
    fn take_ready(
        &mut self,
        id: Option<CommandId>,
        r: Result<(), Error>,
    ) -> Result<Completion, Error> {
        let i = self
            .ready
            .iter()
            .position(|c| id.is_none_or(|id| c.id == id));
        match (i.and_then(|i| self.ready.remove(i)), r) {
            (Some(c), _) => Ok(c),
            (None, Err(e)) => Err(e),
            (None, Ok(())) => Err(Error::Refused {
                reason: "the command is not outstanding".into(),
                buffer: None,
            }),
        }
    }

    /// Runs one command to completion.
    ///
    /// # Errors
    ///
    /// As [`submit`](Session::submit) and [`wait`](Session::wait).
    pub fn execute(&mut self, cmd: Command) -> Result<Completion, Error> {
        let id = self.submit(cmd)?;
        self.wait(id)
    }

    /// Runs a command, retrying on UNIT ATTENTION, and requires GOOD status. Returns the outcome
    /// and the command's buffer.
    ///
    /// # Errors
    ///
    /// [`Error::Status`] for any other status, [`Error::Command`] when the command failed,
    /// else as [`wait`](Session::wait); the first two hand back the buffer
    /// ([`Error::into_buffer`]).
    pub fn run(
        &mut self,
        lun: Lun,
        cdb: scsi::Cdb,
        mut data: Data,
    ) -> Result<(ScsiOutcome, Option<SgBuffer>), Error> {
        let mut tries = 0;
        loop {
            let kind = Kind::of(&data);
            let c = self.execute(Command { lun, cdb, data })?;
            match super::judge(c, tries < self.options.unit_attention_retries) {
                super::Try::Done(r) => return r,
                super::Try::Again(buffer) => {
                    tries += 1;
                    data = kind.data(buffer);
                }
            }
        }
    }

    fn run_read(&mut self, lun: Lun, cdb: scsi::Cdb, len: usize) -> Result<Vec<u8>, Error> {
        let (outcome, buffer) = self.run(lun, cdb, Data::Read(SgBuffer::zeroed(len)))?;
        let mut v = buffer.map(SgBuffer::into_vec).unwrap_or_default();
        v.truncate(usize::try_from(outcome.data_in).unwrap_or(usize::MAX));
        Ok(v)
    }

    /// TEST UNIT READY (unit attentions are retried).
    ///
    /// # Errors
    ///
    /// As [`run`](Session::run).
    pub fn test_unit_ready(&mut self, lun: Lun) -> Result<(), Error> {
        self.run(lun, scsi::test_unit_ready(), Data::None)
            .map(|_| ())
    }

    /// Standard INQUIRY.
    ///
    /// # Errors
    ///
    /// As [`run`](Session::run), or [`Error::BadData`].
    pub fn inquiry(&mut self, lun: Lun) -> Result<Inquiry, Error> {
        let d = self.run_read(lun, scsi::inquiry(96), 96)?;
        Inquiry::parse(&d).ok_or(Error::BadData("INQUIRY data"))
    }

    /// READ CAPACITY(16); remembers the LUN's block length for [`read`](Self::read) and
    /// [`write`](Self::write), and the capacity, checked again after a reinstatement.
    ///
    /// # Errors
    ///
    /// As [`run`](Session::run), or [`Error::BadData`].
    pub fn read_capacity(&mut self, lun: Lun) -> Result<Capacity, Error> {
        let d = self.run_read(lun, scsi::read_capacity_16(), 32)?;
        let c = Capacity::parse_16(&d).map_err(Error::Capacity)?;
        self.block_lens.insert(lun, c.block_len);
        self.capacities.insert(lun, c);
        Ok(c)
    }

    /// The LUN's block length: remembered from READ CAPACITY, which runs on first use.
    ///
    /// # Errors
    ///
    /// As [`read_capacity`](Self::read_capacity).
    pub fn block_len(&mut self, lun: Lun) -> Result<u32, Error> {
        match self.block_lens.get(&lun) {
            Some(&len) => Ok(len),
            None => self.read_capacity(lun).map(|c| c.block_len),
        }
    }

    /// Sets the LUN's block length without asking the target.
    pub fn set_block_len(&mut self, lun: Lun, block_len: u32) {
        self.block_lens.insert(lun, block_len);
    }

    /// REPORT LUNS.
    ///
    /// # Errors
    ///
    /// As [`run`](Session::run), or [`Error::BadData`].
    pub fn report_luns(&mut self) -> Result<Vec<[u8; 8]>, Error> {
        let d = self.run_read(Lun::default(), scsi::report_luns(4096), 4096)?;
        scsi::parse_report_luns(&d).ok_or(Error::BadData("REPORT LUNS data"))
    }

    fn blocks(&mut self, lun: Lun, len: u64) -> Result<u64, Error> {
        super::whole_blocks(self.block_len(lun)?, len)
    }

    /// Reads `buffer.len()` bytes at `lba` into `buffer` (READ(10), or READ(16) beyond its
    /// range) and hands it back: the data lands in the buffer straight from the socket. Every
    /// byte of the returned buffer was received: fewer (GOOD status with an underflow
    /// residual) is an error, never stale buffer bytes passed off as data.
    ///
    /// # Errors
    ///
    /// As [`run`](Session::run); [`CommandError::ShortData`] when fewer than `buffer.len()`
    /// bytes arrived.
    pub fn read(&mut self, lun: Lun, lba: u64, buffer: SgBuffer) -> Result<SgBuffer, Error> {
        let blocks = self.blocks(lun, buffer.len())?;
        let (outcome, b) = self.run(lun, read_cdb(lba, blocks), Data::Read(buffer))?;
        super::read_back(&outcome, b)
    }

    /// Writes `data` (whole blocks) at `lba` with WRITE(10), or WRITE(16) beyond its range, and
    /// hands the buffer back.
    ///
    /// # Errors
    ///
    /// As [`run`](Session::run).
    pub fn write(&mut self, lun: Lun, lba: u64, data: SgBuffer) -> Result<SgBuffer, Error> {
        let blocks = self.blocks(lun, data.len())?;
        let (_, b) = self.run(lun, write_cdb(lba, blocks), Data::Write(data))?;
        Ok(b.unwrap_or_default())
    }

    /// SYNCHRONIZE CACHE(10) of the whole LUN.
    ///
    /// # Errors
    ///
    /// As [`run`](Session::run).
    pub fn synchronize_cache(&mut self, lun: Lun) -> Result<(), Error> {
        self.run(lun, scsi::synchronize_cache_10(), Data::None)
            .map(|_| ())
    }

    /// Sends a NOP-Out ping and waits for the NOP-In; returns the echoed data. No recovery.
    ///
    /// # Errors
    ///
    /// Connection and socket errors, the timeout.
    pub fn ping(&mut self, data: Vec<u8>) -> Result<Vec<u8>, Error> {
        let id = self.conn.ping(data)?;
        match self.wait_event(
            "the NOP-In answering a ping",
            |e| matches!(e, Event::Pong { id: got, .. } | Event::Failed { id: got, .. } if *got == id),
        )? {
            Event::Pong { data, .. } => Ok(data),
            Event::Failed { error, .. } => Err(Error::Command {
                error,
                buffer: None,
            }),
            _ => Err(Error::BadData("NOP-In")),
        }
    }

    /// Logs out and closes the connection. A target that closes the connection instead of
    /// answering the Logout Request, after every command completed, is a warning
    /// ([`SessionEvent::LogoutUnanswered`]) and `Ok`; so is a connection that had already
    /// ended with nothing outstanding.
    ///
    /// # Errors
    ///
    /// Connection and socket errors, the timeout.
    pub fn logout(&mut self) -> Result<(), Error> {
        self.closing = true;
        let idle = self.inflight.is_empty() && self.backlog.is_empty();
        if let Some(end) = self.ended() {
            if end == ConnectionError::LoggedOut || (idle && self.lost.is_none()) {
                if end != ConnectionError::LoggedOut {
                    self.report(SessionEvent::LogoutUnanswered {
                        cause: format!("the connection had already ended: {end}"),
                    });
                }
                return Ok(());
            }
            return Err(Error::Connection(end));
        }
        self.conn.logout()?;
        let result = self.wait_event("the Logout Response", |e| {
            matches!(e, Event::Closed(ConnectionError::LoggedOut))
        });
        let _ = self.driver.socket().stream.shutdown(Shutdown::Both);
        match result {
            Ok(_) | Err(Error::Connection(ConnectionError::LoggedOut)) => Ok(()),
            Err(Error::Connection(
                e @ (ConnectionError::PeerClosed | ConnectionError::Socket(_)),
            )) if idle => {
                self.report(SessionEvent::LogoutUnanswered {
                    cause: e.to_string(),
                });
                Ok(())
            }
            Err(Error::Io(e)) if idle => {
                self.report(SessionEvent::LogoutUnanswered {
                    cause: format!("socket: {e}"),
                });
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// READ(10), or READ(16) beyond its range.
pub(crate) fn read_cdb(lba: u64, blocks: u64) -> scsi::Cdb {
    match (u32::try_from(lba), u16::try_from(blocks)) {
        (Ok(l), Ok(b)) => scsi::read_10(l, b),
        _ => scsi::read_16(lba, u32::try_from(blocks).unwrap_or(u32::MAX)),
    }
}

/// WRITE(10), or WRITE(16) beyond its range.
pub(crate) fn write_cdb(lba: u64, blocks: u64) -> scsi::Cdb {
    match (u32::try_from(lba), u16::try_from(blocks)) {
        (Ok(l), Ok(b)) => scsi::write_10(l, b),
        _ => scsi::write_16(lba, u32::try_from(blocks).unwrap_or(u32::MAX)),
    }
}
