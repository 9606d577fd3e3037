//! The blocking driver over `std::net::TcpStream`: [`Session`] logs in and runs one sans-IO
//! [`crate::Connection`] with the workspace's one blocking loop
//! ([`ulp_ddp_core::blocking::Driver`]); thin on purpose.
//!
//! Receiving uses the reader path: Data-In payload is read from the socket straight into the
//! command's registered buffer. Sending writes each PDU's header, payload and trailer with one
//! vectored write: write payload is never copied. Waiting sleeps until the connection's next
//! timer (NOP-Out pings) or until the target has been silent for the configured timeout,
//! which ends the wait with [`Error::Timeout`] saying what was waited for.
//!
//! The default backend is [`NoOffload`]: every payload is still read in place by the reader
//! path (0 bytes copied); a DDP backend is chosen with [`Session::connect_with`].

use core::fmt;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

pub use ulp_ddp_core::blocking::Timeout;
use ulp_ddp_core::blocking::{Driver, Socket, Turn};
use ulp_ddp_core::{DdpBackend, NoOffload, SansIo, SgBuffer, SocketReader};

use crate::connection::{
    Command, CommandError, CommandId, Completion, ConnectionConfig, ConnectionError, Data,
    DiscoveredTarget, Event, Phase, ScsiOutcome,
};
use crate::scsi::{self, Capacity, Inquiry, Sense};
use crate::wire::Lun;

/// Which way captured bytes travelled ([`Session::capture`]).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Direction {
    /// Initiator to target.
    ToTarget,
    /// Target to initiator.
    FromTarget,
}

/// Driver settings (start from `Options::default()` and set fields).
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Options {
    /// How long the target may stay silent while the initiator waits for it (also the limit
    /// for the TCP connection to open).
    pub timeout: Duration,
    /// Keep a copy of every byte sent and received (for pcap files; costs a copy).
    pub capture: bool,
    /// How many times a command answered with UNIT ATTENTION is retried.
    pub unit_attention_retries: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(20),
            capture: false,
            unit_attention_retries: 4,
        }
    }
}

/// Why a blocking operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The socket failed.
    Io(io::Error),
    /// The target sent nothing for a while: what the initiator waited for, and how long.
    Timeout(Timeout),
    /// The connection ended (or the call was refused in its state).
    Connection(ConnectionError),
    /// The command did not complete at the target (or its data did not all arrive).
    Command {
        /// Why.
        error: CommandError,
        /// The command's buffer, the caller's again.
        buffer: Option<SgBuffer>,
    },
    /// The command completed with a status other than GOOD.
    Status {
        /// SCSI status.
        status: u8,
        /// Sense, if any.
        sense: Option<Sense>,
        /// The command's buffer, the caller's again.
        buffer: Option<SgBuffer>,
    },
    /// The returned data could not be decoded.
    BadData(&'static str),
    /// READ CAPACITY data the initiator does not use (a block length of 0, say): the field and
    /// its value.
    Capacity(scsi::CapacityError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "socket: {e}"),
            Self::Timeout(t) => write!(f, "{t}"),
            Self::Connection(e) => write!(f, "connection: {e}"),
            Self::Command { error, .. } => write!(f, "command: {error}"),
            Self::Status { status, sense, .. } => {
                write!(
                    f,
                    "SCSI status {} ({status:#04x})",
                    scsi::status_name(*status)
                )?;
                if let Some(sense) = sense {
                    write!(f, ", sense {sense}")?;
                }
                Ok(())
            }
            Self::BadData(what) => write!(f, "bad data: {what}"),
            Self::Capacity(e) => write!(f, "bad data: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Timeout(t) => Some(t),
            Self::Connection(e) => Some(e),
            Self::Command { error, .. } => Some(error),
            Self::Capacity(e) => Some(e),
            _ => None,
        }
    }
}

impl Error {
    /// The buffer this error hands back (a command error or non-GOOD status).
    pub fn into_buffer(self) -> Option<SgBuffer> {
        match self {
            Self::Command { buffer, .. } | Self::Status { buffer, .. } => buffer,
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<ConnectionError> for Error {
    fn from(e: ConnectionError) -> Self {
        Self::Connection(e)
    }
}

/// The target did not answer within `waited`.
fn timed_out(waited: Duration, what: String) -> Error {
    Error::Timeout(Timeout {
        peer: "target",
        waited,
        what,
    })
}

/// A TCP stream that keeps a copy of what crosses it, when asked.
#[derive(Debug)]
pub struct Capturing {
    stream: TcpStream,
    capture: Option<Vec<(Direction, Vec<u8>)>>,
}

impl Capturing {
    fn push(&mut self, dir: Direction, bytes: &[u8]) {
        let Some(c) = self.capture.as_mut() else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        match c.last_mut() {
            Some((d, v)) if *d == dir => v.extend_from_slice(bytes),
            _ => c.push((dir, bytes.to_vec())),
        }
    }
}

impl Read for Capturing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.push(Direction::FromTarget, &buf[..n]);
        Ok(n)
    }

    fn read_vectored(&mut self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        let n = self.stream.read_vectored(bufs)?;
        if self.capture.is_some() {
            let mut left = n;
            for b in bufs.iter() {
                let k = left.min(b.len());
                let piece = b[..k].to_vec();
                self.push(Direction::FromTarget, &piece);
                left -= k;
            }
        }
        Ok(n)
    }
}

impl Write for Capturing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.stream.write(buf)?;
        self.push(Direction::ToTarget, &buf[..n]);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.stream.write_vectored(bufs)?;
        if self.capture.is_some() {
            let mut left = n;
            for b in bufs {
                let k = left.min(b.len());
                self.push(Direction::ToTarget, &b[..k]);
                left -= k;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl Socket for Capturing {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }

    fn set_nonblocking(&mut self, nonblocking: bool) -> io::Result<()> {
        self.stream.set_nonblocking(nonblocking)
    }
}

/// A logged-in iSCSI session over one blocking TCP connection.
pub struct Session<B: DdpBackend = NoOffload> {
    conn: crate::Connection<B>,
    driver: Driver<Capturing>,
    events: VecDeque<Event>,
    options: Options,
    block_lens: HashMap<Lun, u32>,
}

impl<B: DdpBackend> fmt::Debug for Session<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("conn", &self.conn)
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
        Self::connect_with(addr, config, NoOffload, options)
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
        let targets = s.wait_for(
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

impl<B: DdpBackend> Session<B> {
    /// Connects to `addr` and logs in over `backend`.
    ///
    /// # Errors
    ///
    /// Socket errors, the timeout, and login failures.
    pub fn connect_with(
        addr: impl ToSocketAddrs,
        config: ConnectionConfig,
        backend: B,
        options: Options,
    ) -> Result<Self, Error> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing");
        let mut stream = None;
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, options.timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) if ulp_ddp_core::blocking::is_timeout(&e) => {
                    return Err(timed_out(
                        options.timeout,
                        format!("the TCP connection to {a}"),
                    ));
                }
                Err(e) => last = e,
            }
        }
        let stream = stream.ok_or(last)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(options.timeout))?;
        let mut conn = crate::Connection::new(config, backend);
        conn.start_login()?;
        let mut s = Self {
            conn,
            driver: Driver::new(Capturing {
                stream,
                capture: options.capture.then(Vec::new),
            }),
            events: VecDeque::new(),
            options,
            block_lens: HashMap::new(),
        };
        s.driver.set_reader(SocketReader::new(64 * 1024));
        s.wait_for("the Login Response", |e| matches!(e, Event::Connected))?;
        Ok(s)
    }

    /// The sans-IO connection (parameters, engine statistics).
    pub fn connection(&self) -> &crate::Connection<B> {
        &self.conn
    }

    /// The sans-IO connection, e.g. to submit several commands before waiting.
    pub fn connection_mut(&mut self) -> &mut crate::Connection<B> {
        &mut self.conn
    }

    /// The bytes sent and received so far, by direction, if capturing.
    pub fn capture(&self) -> Option<&[(Direction, Vec<u8>)]> {
        self.driver.socket().capture.as_deref()
    }

    /// Local and peer ports of the TCP connection.
    pub fn ports(&self) -> (u16, u16) {
        let s = &self.driver.socket().stream;
        let l = s.local_addr().map_or(0, |a| a.port());
        let p = s.peer_addr().map_or(0, |a| a.port());
        (l, p)
    }

    /// Reads small commands' Data-In through the receive buffer: while every outstanding read
    /// expects fewer than `threshold` more bytes, each socket read takes as much as the 64 KiB
    /// receive buffer holds (many PDUs at once) and the payload is copied into the command
    /// buffers; larger reads are still read in place. `0` (the default) reads every payload in
    /// place. See [`SocketReader::copy_small_payloads`].
    pub fn copy_small_payloads(&mut self, threshold: u64) {
        self.driver
            .set_reader(SocketReader::new(64 * 1024).copy_small_payloads(threshold));
    }

    /// Sends what is queued, waits for bytes (no longer than the next timer or the timeout),
    /// and processes them.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] once the connection ended, [`Error::Io`] on a socket error.
    pub fn pump(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + self.options.timeout;
        self.turn(deadline).map(|_| ())
    }

    /// One turn of the driver; collects the connection's events.
    fn turn(&mut self, deadline: Instant) -> Result<Turn, Error> {
        let turn = self.driver.turn(&mut self.conn, Some(deadline));
        self.collect();
        // Reads that time out are wake-ups; a write that times out is a target that stopped
        // reading.
        let turn = turn.map_err(|e| {
            if ulp_ddp_core::blocking::is_timeout(&e) {
                timed_out(
                    self.options.timeout,
                    "the target to read what the initiator sends (its TCP receive window \
                     stayed full)"
                        .to_string(),
                )
            } else {
                Error::Io(e)
            }
        })?;
        if let Some(e) = self.closed() {
            if e == ConnectionError::LoggedOut {
                return Ok(Turn::Closed);
            }
            return Err(Error::Connection(e));
        }
        Ok(turn)
    }

    /// Why the connection ended, once it has.
    fn closed(&self) -> Option<ConnectionError> {
        if !self.conn.is_closed() {
            return None;
        }
        Some(match self.conn.phase() {
            Phase::Closed => ConnectionError::LoggedOut,
            _ => self
                .conn
                .failure()
                .cloned()
                .unwrap_or(ConnectionError::PeerClosed),
        })
    }

    fn collect(&mut self) {
        while let Some(e) = self.conn.poll_event() {
            self.events.push_back(e);
        }
    }

    /// Turns until an event `wanted` accepts arrives (and takes it), the connection ends, or
    /// the target stays silent for the timeout.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&Event) -> bool) -> Result<Event, Error> {
        let mut last_rx = Instant::now();
        loop {
            if let Some(i) = self.events.iter().position(&wanted)
                && let Some(e) = self.events.remove(i)
            {
                return Ok(e);
            }
            if let Some(e) = self.closed() {
                let _ = self.driver.flush(&mut self.conn);
                return Err(Error::Connection(e));
            }
            let silent_until = last_rx + self.options.timeout;
            match self.turn(silent_until)? {
                Turn::Read(_) => last_rx = Instant::now(),
                Turn::Closed => {}
                Turn::Woken => {
                    if Instant::now() >= silent_until {
                        return Err(timed_out(self.options.timeout, what.to_string()));
                    }
                }
            }
        }
    }

    /// Submits a command without waiting.
    pub fn submit(&mut self, cmd: Command) -> CommandId {
        let id = self.conn.submit(cmd);
        self.collect();
        id
    }

    /// Waits for the completion of `id`.
    ///
    /// # Errors
    ///
    /// Socket errors and the timeout; a failed connection still yields the command's
    /// completion (with [`CommandError::ConnectionLost`]) when it was submitted.
    pub fn wait(&mut self, id: CommandId) -> Result<Completion, Error> {
        let what = format!("the completion of command {}", id.0);
        let wanted = |e: &Event| matches!(e, Event::Completed(c) if c.id == id);
        match self.wait_for(&what, wanted) {
            Ok(Event::Completed(c)) => Ok(c),
            Ok(_) => Err(Error::BadData("completion")),
            Err(Error::Connection(e)) => self
                .completion_after_end(wanted)
                .ok_or(Error::Connection(e)),
            Err(e) => Err(e),
        }
    }

    /// Waits for any command's completion.
    ///
    /// # Errors
    ///
    /// As [`wait`](Session::wait).
    pub fn wait_any(&mut self) -> Result<Completion, Error> {
        let wanted = |e: &Event| matches!(e, Event::Completed(_));
        match self.wait_for("a command's completion", wanted) {
            Ok(Event::Completed(c)) => Ok(c),
            Ok(_) => Err(Error::BadData("completion")),
            Err(Error::Connection(e)) => self
                .completion_after_end(wanted)
                .ok_or(Error::Connection(e)),
            Err(e) => Err(e),
        }
    }

    /// A completion the connection's end produced (every command completes, with its buffer).
    fn completion_after_end(&mut self, wanted: impl Fn(&Event) -> bool) -> Option<Completion> {
        let i = self.events.iter().position(wanted)?;
        match self.events.remove(i)? {
            Event::Completed(c) => Some(c),
            _ => None,
        }
    }

    /// Runs one command to completion.
    ///
    /// # Errors
    ///
    /// As [`wait`](Session::wait).
    pub fn execute(&mut self, cmd: Command) -> Result<Completion, Error> {
        let id = self.submit(cmd);
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
            let write = matches!(data, Data::Write(_));
            let c = self.execute(Command { lun, cdb, data })?;
            let outcome = match c.result {
                Ok(o) => o,
                Err(error) => {
                    return Err(Error::Command {
                        error,
                        buffer: c.buffer,
                    });
                }
            };
            if outcome.is_unit_attention() && tries < self.options.unit_attention_retries {
                tries += 1;
                data = match (c.buffer, write) {
                    (Some(b), true) => Data::Write(b),
                    (Some(b), false) => Data::Read(b),
                    (None, _) => Data::None,
                };
                continue;
            }
            if !outcome.is_good() {
                return Err(Error::Status {
                    status: outcome.status,
                    sense: outcome.sense,
                    buffer: c.buffer,
                });
            }
            return Ok((outcome, c.buffer));
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
    /// [`write`](Self::write).
    ///
    /// # Errors
    ///
    /// As [`run`](Session::run), or [`Error::Capacity`] (a block length or capacity the
    /// initiator does not use, see [`Capacity::parse_16`]).
    pub fn read_capacity(&mut self, lun: Lun) -> Result<Capacity, Error> {
        let d = self.run_read(lun, scsi::read_capacity_16(), 32)?;
        let c = Capacity::parse_16(&d).map_err(Error::Capacity)?;
        self.block_lens.insert(lun, c.block_len);
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
        let block_len = u64::from(self.block_len(lun)?.max(1));
        if !len.is_multiple_of(block_len) {
            return Err(Error::BadData("the buffer is not a whole number of blocks"));
        }
        Ok(len / block_len)
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
        let cdb = match (u32::try_from(lba), u16::try_from(blocks)) {
            (Ok(l), Ok(b)) => scsi::read_10(l, b),
            _ => scsi::read_16(lba, u32::try_from(blocks).unwrap_or(u32::MAX)),
        };
        let (outcome, b) = self.run(lun, cdb, Data::Read(buffer))?;
        let b = b.ok_or(Error::BadData("no buffer"))?;
        if outcome.data_in != b.len() {
            return Err(Error::Command {
                error: CommandError::ShortData {
                    expected: b.len(),
                    received: outcome.data_in,
                },
                buffer: Some(b),
            });
        }
        Ok(b)
    }

    /// Writes `data` (whole blocks) at `lba` with WRITE(10), or WRITE(16) beyond its range, and
    /// hands the buffer back.
    ///
    /// # Errors
    ///
    /// As [`run`](Session::run).
    pub fn write(&mut self, lun: Lun, lba: u64, data: SgBuffer) -> Result<SgBuffer, Error> {
        let blocks = self.blocks(lun, data.len())?;
        let cdb = match (u32::try_from(lba), u16::try_from(blocks)) {
            (Ok(l), Ok(b)) => scsi::write_10(l, b),
            _ => scsi::write_16(lba, u32::try_from(blocks).unwrap_or(u32::MAX)),
        };
        let (_, b) = self.run(lun, cdb, Data::Write(data))?;
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

    /// Sends a NOP-Out ping and waits for the NOP-In; returns the echoed data.
    ///
    /// # Errors
    ///
    /// Connection and socket errors, the timeout.
    pub fn ping(&mut self, data: Vec<u8>) -> Result<Vec<u8>, Error> {
        let id = self.conn.ping(data)?;
        match self.wait_for(
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

    /// Logs out and closes the connection.
    ///
    /// # Errors
    ///
    /// Connection and socket errors, the timeout.
    pub fn logout(&mut self) -> Result<(), Error> {
        self.conn.logout()?;
        let result = self.wait_for("the Logout Response", |e| {
            matches!(e, Event::Closed(ConnectionError::LoggedOut))
        });
        let _ = self
            .driver
            .socket()
            .stream
            .shutdown(std::net::Shutdown::Both);
        match result {
            Ok(_) | Err(Error::Connection(ConnectionError::LoggedOut)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
