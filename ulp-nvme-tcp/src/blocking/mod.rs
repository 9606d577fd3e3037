//! The blocking driver over `std::net::TcpStream`: [`Connection`] runs one sans-IO
//! [`crate::Connection`] (one queue) with the workspace's one blocking loop
//! ([`ulp_ddp_core::blocking::Driver`]); [`Controller`] brings up an admin queue and one I/O
//! queue and reads and writes blocks.
//!
//! Receiving goes through the reader path: C2HData payload is read from the socket straight
//! into the command's buffer. Sending writes the header, then the payload slice borrowed from
//! the command, then the digest (vectored, no payload copy). Waiting sleeps until the
//! connection's next timer (Keep Alive) or until the controller has been silent for the
//! configured timeout, which ends the wait with [`Error::Timeout`] saying what was waited for.
//!
//! The default backend is [`NoOffload`]: every payload is still read in place by the reader
//! path (0 bytes copied); a DDP backend (`ulp_backend_sw::SwBackend`, a NIC offload) is chosen
//! with [`Controller::connect_with`].

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};

use std::time::{Duration, Instant};
use stream::Stream;

pub use ulp_ddp_core::blocking::Timeout;
use ulp_ddp_core::blocking::{Driver, Turn};
use ulp_ddp_core::timer::earliest;
use ulp_ddp_core::{DdpBackend, NoOffload, SansIo, SgBuffer, SocketReader};

use crate::connection::{Completion, ConnectionConfig, ConnectionError, Data, Event, SubmitError};
use crate::nvme::Status;
use crate::wire::capsule_cmd::SQE_LEN;

mod bringup;
mod controller;
pub(crate) mod stream;
mod types;

pub use bringup::discover;

pub use crate::options::Options;
pub use controller::Controller;
pub use types::{CommandId, ControllerEvent, Io, IoCompletion, IoError, TRANSPORT_MAX_TRANSFER};

/// Why a blocking operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The socket failed.
    Io(io::Error),
    /// The controller sent nothing for a while: what the host waited for, and how long.
    Timeout(Timeout),
    /// The connection ended.
    Connection(ConnectionError),
    /// The queue refused the command.
    Submit(SubmitError),
    /// A command completed with a status other than success.
    Status {
        /// The command, by name.
        command: &'static str,
        /// The CID it ran under.
        cid: u16,
        /// Its status.
        status: Status,
        /// Its buffer, the caller's again.
        buffer: Option<SgBuffer>,
    },
    /// The TLS handshake (NVMe TP 8011's secure channel) failed: which queue, and why in words
    /// (a wrong key, a target that does not speak TLS on this port).
    Tls(String),
    /// Something else during bring-up, or a request the controller cannot serve.
    Setup(String),
    /// The controller was lost: it could not be reached again within the controller loss
    /// timeout, and commands fail from now on.
    Lost {
        /// Why, in words.
        reason: String,
        /// The command's buffer, the caller's again.
        buffer: Option<SgBuffer>,
    },
    /// The controller took no command: a length that is not a whole number of blocks, or a
    /// controller already lost.
    Refused {
        /// Why, in words.
        reason: String,
        /// The command's buffer, the caller's again.
        buffer: Option<SgBuffer>,
    },
}

impl Error {
    /// The buffer this error hands back (a failed read or write).
    pub fn into_buffer(self) -> Option<SgBuffer> {
        match self {
            Self::Status { buffer, .. }
            | Self::Lost { buffer, .. }
            | Self::Refused { buffer, .. } => buffer,
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "socket: {e}"),
            Self::Timeout(t) => write!(f, "{t}"),
            Self::Connection(e) => write!(f, "{e}"),
            Self::Submit(e) => write!(f, "submit: {e}"),
            Self::Status {
                command,
                cid,
                status,
                ..
            } => crate::bringup::write_failed(f, command, *cid, *status),
            Self::Setup(s) | Self::Tls(s) => f.write_str(s),
            Self::Lost { reason, .. } => write!(f, "controller lost: {reason}"),
            Self::Refused { reason, .. } => write!(f, "refused: {reason}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Timeout(t) => Some(t),
            Self::Connection(e) => Some(e),
            Self::Submit(e) => Some(e),
            _ => None,
        }
    }
}

impl Error {
    /// The closest [`io::ErrorKind`]: [`TimedOut`](io::ErrorKind::TimedOut) for a controller
    /// that did not answer in time, the socket's own kind for socket errors,
    /// [`ConnectionAborted`](io::ErrorKind::ConnectionAborted) for a connection that ended,
    /// [`NotConnected`](io::ErrorKind::NotConnected) for a lost controller,
    /// [`Other`](io::ErrorKind::Other) for a failed status or a refused request.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Self::Io(e) => e.kind(),
            Self::Timeout(_) => io::ErrorKind::TimedOut,
            Self::Connection(
                ConnectionError::PeerClosed | ConnectionError::PeerClosedBeforeIcResp,
            ) => io::ErrorKind::ConnectionReset,
            Self::Connection(_) => io::ErrorKind::ConnectionAborted,
            Self::Lost { .. } => io::ErrorKind::NotConnected,
            Self::Refused { .. } => io::ErrorKind::InvalidInput,
            Self::Tls(_) => io::ErrorKind::ConnectionRefused,
            Self::Submit(_) | Self::Status { .. } | Self::Setup(_) => io::ErrorKind::Other,
        }
    }
}

/// For callers that speak `io::Result`: the kind from [`Error::kind`], the message in words.
impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => e,
            other => Self::new(other.kind(), other.to_string()),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// One queue over a blocking TCP connection.
#[derive(Debug)]
pub struct Connection<B: DdpBackend = NoOffload> {
    conn: crate::Connection<B>,
    driver: Driver<Stream>,
    /// How long the controller may stay silent while the host waits (`None`: the state
    /// machine's command deadlines and Keep Alive decide).
    silence: Option<Duration>,
    error: Option<ConnectionError>,
    /// Commands the state machine reported timed out, not yet handed to the caller.
    timed_out: std::collections::VecDeque<(u16, &'static str, Duration)>,
}

/// What [`Connection::next_event`] returns.
#[derive(Debug)]
#[non_exhaustive]
pub enum QueueEvent {
    /// A command completed.
    Completed(Completion),
    /// A command passed its deadline ([`Event::TimedOut`]); it is still outstanding.
    TimedOut {
        /// Its CID.
        cid: u16,
        /// Its name.
        command: &'static str,
        /// How long it has been outstanding.
        waited: Duration,
    },
}

/// What a wait is for.
#[derive(Clone, Copy)]
enum Want {
    Any,
    Cid(u16),
    Connected,
}

impl<B: DdpBackend> Connection<B> {
    /// Connects to `addr`, sends ICReq and waits for ICResp. A controller silent for `timeout`
    /// while the host waits fails the wait with [`Error::Timeout`].
    ///
    /// # Errors
    ///
    /// Socket errors, the timeout, or the connection's error if the controller refused it.
    pub fn connect(
        addr: SocketAddr,
        backend: B,
        config: ConnectionConfig,
        timeout: Duration,
    ) -> Result<Self, Error> {
        Self::connect_tls(addr, backend, config, timeout, None)
    }

    /// As [`connect`](Self::connect), with NVMe TP 8011's secure channel when `psk` is given:
    /// the TLS 1.3 handshake with that PSK (TLS_AES_128_GCM_SHA256) runs right after the TCP
    /// connect, and ICReq and everything after it go inside the TLS session. Needs the crate's
    /// `tls` feature (without it, a PSK fails with [`Error::Tls`] saying so).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect); [`Error::Tls`] when the handshake fails (in words: a
    /// wrong key, a target that does not speak TLS on this port).
    pub fn connect_tls(
        addr: SocketAddr,
        backend: B,
        config: ConnectionConfig,
        timeout: Duration,
        psk: Option<&crate::psk::TlsPsk>,
    ) -> Result<Self, Error> {
        let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
            if ulp_ddp_core::blocking::is_timeout(&e) {
                timed_out(timeout, format!("the TCP connection to {addr}"))
            } else {
                Error::Io(e)
            }
        })?;
        tcp.set_nodelay(true)?;
        tcp.set_write_timeout(Some(timeout))?;
        let stream = match psk {
            None => Stream::Plain(tcp),
            Some(psk) => stream::handshake(tcp, psk, timeout)
                .map_err(|reason| stream::tls_failed(config.qid, addr, &reason))?,
        };
        let mut c = Self {
            conn: crate::Connection::new(config, backend),
            driver: Driver::new(stream),
            silence: Some(timeout),
            error: None,
            timed_out: Default::default(),
        };
        c.wait_for(Want::Connected, None)?;
        Ok(c)
    }

    /// Reads small commands' data through the receive buffer: while every outstanding read
    /// expects fewer than `threshold` more bytes, each socket read takes as much as a 64 KiB
    /// buffer holds (many PDUs at once) and their payload is copied into the command buffers;
    /// larger reads are still read in place. `0` (the default) reads every payload in place.
    /// See [`SocketReader::copy_small_payloads`].
    pub fn copy_small_payloads(&mut self, threshold: u64) {
        self.driver.set_reader(if threshold == 0 {
            SocketReader::new(4096)
        } else {
            SocketReader::new(64 * 1024).copy_small_payloads(threshold)
        });
    }

    /// The next completion or command timeout already received, without waiting.
    pub fn take_event(&mut self) -> Option<QueueEvent> {
        if let Some(c) = self.conn.poll_completion(None) {
            self.timed_out.retain(|&(cid, ..)| cid != c.cid);
            return Some(QueueEvent::Completed(c));
        }
        self.note_end();
        self.timed_out
            .pop_front()
            .map(|(cid, command, waited)| QueueEvent::TimedOut {
                cid,
                command,
                waited,
            })
    }

    /// Whether [`take_event`](Self::take_event) has something (a completion or a timeout
    /// received by an earlier wait or poll).
    pub fn has_event(&self) -> bool {
        !self.timed_out.is_empty() || self.conn.has_events()
    }

    /// The socket (to wait for it to become readable along with others).
    pub fn socket(&self) -> &TcpStream {
        self.driver.socket().tcp()
    }

    /// Bytes this queue already took off the socket that no read has handed on yet (decrypted
    /// bytes the TLS library holds; 0 over plaintext). A caller that waits for the socket to
    /// become readable along with others checks this first: those bytes will not wake it.
    pub fn buffered(&self) -> usize {
        self.driver.socket().buffered()
    }

    /// Sets how long the controller may stay silent while the host waits before the wait fails
    /// with [`Error::Timeout`]; `None` leaves it to the state machine's timers (command
    /// deadlines, Keep Alive), which is what a controller's queues do once they are up.
    pub fn set_silence_limit(&mut self, limit: Option<Duration>) {
        self.silence = limit;
    }

    /// The sans-IO connection.
    pub fn connection(&self) -> &crate::Connection<B> {
        &self.conn
    }

    /// The sans-IO connection, to submit commands or change settings.
    pub fn connection_mut(&mut self) -> &mut crate::Connection<B> {
        &mut self.conn
    }

    /// Submits a command (sent at the next [`flush`](Self::flush) or wait).
    ///
    /// # Errors
    ///
    /// [`Error::Submit`] (the data is dropped).
    pub fn submit(&mut self, sqe: [u8; SQE_LEN], data: Data) -> Result<u16, Error> {
        self.conn
            .submit(sqe, data)
            .map_err(|(e, _)| Error::Submit(e))
    }

    /// Sends everything the queue has to send: PDUs without payload (command capsules, for
    /// reads) are gathered and go out with the next PDU that has payload, or at the end, so a
    /// batch of commands costs one system call.
    ///
    /// # Errors
    ///
    /// Socket errors.
    pub fn flush(&mut self) -> Result<(), Error> {
        // The state machine learns the time first: a command sent now gets its deadline from
        // now, not from the last time this queue was woken.
        self.conn.handle_timeout(Instant::now());
        if let Err(e) = self.driver.flush(&mut self.conn) {
            return Err(self.socket_error(e));
        }
        if self.conn.is_closed() {
            let _ = self
                .driver
                .socket()
                .tcp()
                .shutdown(std::net::Shutdown::Both);
        }
        Ok(())
    }

    /// Runs the queue's timers (a due Keep Alive is submitted and sent) and takes whatever the
    /// controller already sent, without waiting: what a caller busy with another queue calls
    /// to keep this one alive.
    ///
    /// # Errors
    ///
    /// Socket errors, or the connection's error if it ended.
    pub fn poll(&mut self) -> Result<(), Error> {
        if let Err(e) = self.driver.poll(&mut self.conn) {
            return Err(self.socket_error(e));
        }
        self.note_end();
        match self.error {
            Some(e) => Err(Error::Connection(e)),
            None => Ok(()),
        }
    }

    /// When this queue's timers next need running.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conn.poll_timeout()
    }

    /// Notes the connection's end; completions stay queued until the caller takes them, so
    /// that a CID is not reused while its completion is still unclaimed.
    fn note_end(&mut self) {
        while let Some(event) = self.conn.poll_other_event() {
            match event {
                Event::Closed(e) => self.error = Some(e),
                Event::TimedOut {
                    cid,
                    command,
                    waited,
                } => self.timed_out.push_back((cid, command, waited)),
                _ => {}
            }
        }
    }

    /// The next completion, reading from the socket until one arrives.
    ///
    /// # Errors
    ///
    /// Socket errors, the timeout, and the connection's end.
    pub fn next_completion(&mut self) -> Result<Completion, Error> {
        self.wait_for(Want::Any, None).and_then(completion)
    }

    /// Waits for command `cid` (other completions are kept for later).
    ///
    /// # Errors
    ///
    /// As [`next_completion`](Self::next_completion).
    pub fn wait(&mut self, cid: u16) -> Result<Completion, Error> {
        self.wait_for(Want::Cid(cid), None).and_then(completion)
    }

    /// Waits as [`wait`](Self::wait) while keeping `other` (the admin queue) alive: its timers
    /// run when due, whatever this queue is doing.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait), and `other`'s errors.
    pub fn wait_keeping(
        &mut self,
        cid: Option<u16>,
        other: &mut Self,
    ) -> Result<Completion, Error> {
        let want = cid.map_or(Want::Any, Want::Cid);
        self.wait_for(want, Some(other)).and_then(completion)
    }

    /// Submits a command and waits for it.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit) and [`wait`](Self::wait).
    pub fn run(&mut self, sqe: [u8; SQE_LEN], data: Data) -> Result<Completion, Error> {
        let cid = self.submit(sqe, data)?;
        self.wait(cid)
    }

    /// Waits for the next completion or command timeout of this queue (running `other`'s
    /// timers meanwhile, as [`wait_keeping`](Self::wait_keeping)), or until `until` passes
    /// (`Ok(None)`).
    ///
    /// # Errors
    ///
    /// Socket errors, the silence limit, the connection's end, and `other`'s errors.
    pub fn next_event(
        &mut self,
        other: Option<&mut Self>,
        until: Option<Instant>,
    ) -> Result<Option<QueueEvent>, Error> {
        self.pump(Want::Any, other, until)
    }

    /// The one wait loop: turns of the blocking driver until what is wanted arrives, the
    /// connection ends, the command waited for passes its deadline, or the controller stays
    /// silent for the silence limit.
    fn wait_for(
        &mut self,
        want: Want,
        other: Option<&mut Self>,
    ) -> Result<Option<Completion>, Error> {
        match self.pump(want, other, None)? {
            Some(QueueEvent::Completed(c)) => Ok(Some(c)),
            Some(QueueEvent::TimedOut { cid, waited, .. }) => {
                Err(timed_out(waited, self.waited_for(Want::Cid(cid))))
            }
            None => Ok(None),
        }
    }

    fn pump(
        &mut self,
        want: Want,
        mut other: Option<&mut Self>,
        until: Option<Instant>,
    ) -> Result<Option<QueueEvent>, Error> {
        let mut last_rx = Instant::now();
        loop {
            let completion = match want {
                Want::Connected if self.conn.is_connected() => return Ok(None),
                Want::Connected => None,
                Want::Any => self.conn.poll_completion(None),
                Want::Cid(cid) => self.conn.poll_completion(Some(cid)),
            };
            if let Some(c) = completion {
                // A timeout met by a command that has completed since is void.
                self.timed_out.retain(|&(cid, ..)| cid != c.cid);
                return Ok(Some(QueueEvent::Completed(c)));
            }
            self.note_end();
            let due = self.timed_out.iter().position(|&(cid, ..)| match want {
                Want::Any => true,
                Want::Cid(c) => c == cid,
                Want::Connected => false,
            });
            if let Some((cid, command, waited)) = due.and_then(|i| self.timed_out.remove(i)) {
                return Ok(Some(QueueEvent::TimedOut {
                    cid,
                    command,
                    waited,
                }));
            }
            if let Some(e) = self.error {
                let _ = self.driver.flush(&mut self.conn);
                let _ = self
                    .driver
                    .socket()
                    .tcp()
                    .shutdown(std::net::Shutdown::Both);
                return Err(Error::Connection(e));
            }
            let now = Instant::now();
            if until.is_some_and(|u| now >= u) {
                return Ok(None);
            }
            let silent_until = self.silence.map(|t| last_rx + t);
            let other_due = other.as_ref().and_then(|o| o.poll_timeout());
            let turn = self
                .driver
                .turn(&mut self.conn, earliest([silent_until, other_due, until]));
            match turn.map_err(|e| self.socket_error(e))? {
                Turn::Read(_) => last_rx = Instant::now(),
                Turn::Closed => {}
                Turn::Woken => {
                    let now = Instant::now();
                    if let Some(o) = other.as_deref_mut()
                        && o.poll_timeout().is_some_and(|t| t <= now)
                    {
                        o.poll()?;
                    }
                    if let Some(s) = silent_until
                        && now >= s
                    {
                        let waited = self.silence.unwrap_or_default();
                        return Err(timed_out(waited, self.waited_for(want)));
                    }
                }
            }
        }
    }

    /// The queue, in words.
    fn queue_name(&self) -> String {
        if self.conn.config().qid == 0 {
            "the admin queue".to_string()
        } else {
            format!("I/O queue {}", self.conn.config().qid)
        }
    }

    /// A socket error in words: a write that timed out is a controller that stopped reading.
    fn socket_error(&self, e: io::Error) -> Error {
        if ulp_ddp_core::blocking::is_timeout(&e) {
            let waited = self
                .driver
                .socket()
                .tcp()
                .write_timeout()
                .ok()
                .flatten()
                .unwrap_or_default();
            timed_out(
                waited,
                format!(
                    "the controller to read what the host sends on {} (its TCP receive window \
                     stayed full)",
                    self.queue_name()
                ),
            )
        } else {
            Error::Io(e)
        }
    }

    /// What a wait is for, in words.
    fn waited_for(&self, want: Want) -> String {
        let queue = self.queue_name();
        match want {
            Want::Connected => format!("ICResp on {queue}"),
            Want::Any => format!("a completion on {queue}"),
            Want::Cid(cid) => match self.conn.command_name(cid) {
                Some(name) => format!("the completion of {name} (CID {cid}) on {queue}"),
                None => format!("the completion of CID {cid} on {queue}"),
            },
        }
    }
}

/// The controller did not answer within `waited`.
pub(crate) fn timed_out(waited: Duration, what: String) -> Error {
    Error::Timeout(Timeout {
        peer: "controller",
        waited,
        what,
    })
}

/// The completion a wait for one returns (a wait for a completion ends only with one).
fn completion(c: Option<Completion>) -> Result<Completion, Error> {
    c.ok_or_else(|| Error::Setup("a wait for a completion ended without one".into()))
}

impl<B: DdpBackend> Drop for Connection<B> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .socket()
            .tcp()
            .shutdown(std::net::Shutdown::Both);
    }
}
