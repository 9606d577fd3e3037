//! A blocking `std::net` driver for [`Connection`]: thin on purpose.
//!
//! Receiving uses the reader path ([`SocketReader`]): Data-In payload is read from the socket
//! straight into the command's registered buffer. Sending writes each PDU's header, payload and
//! trailer with one vectored write: write payload is never copied.

use core::fmt;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;
use ulp_backend_sw::SwBackend;
use ulp_ddp_core::reader::{RecvError, SocketReader};
use ulp_ddp_core::{DdpBackend, QueueId, SgBuffer};

use crate::conn::{
    Command, CommandError, CommandId, Completion, ConnError, Connection, DataDir, DiscoveredTarget,
    LoginConfig, Phase, ScsiOutcome, SessionEvent,
};
use crate::pcap::Direction;
use crate::scsi::{self, Capacity, Inquiry, Sense};
use crate::wire::Lun;

/// Driver settings.
#[derive(Clone, Copy, Debug)]
pub struct ClientOptions {
    /// Socket read/write timeout: a silent target fails the connection.
    pub timeout: Duration,
    /// Most tasks outstanding (tags are taken below it).
    pub queue_depth: u32,
    /// Queue identifier within the backend.
    pub queue_id: QueueId,
    /// Keep a copy of every byte sent and received (for pcap files; costs a copy).
    pub capture: bool,
    /// How many times a command answered with UNIT ATTENTION is retried.
    pub unit_attention_retries: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(20),
            queue_depth: 64,
            queue_id: QueueId(1),
            capture: false,
            unit_attention_retries: 4,
        }
    }
}

/// What went wrong for the driver's caller.
#[derive(Debug)]
pub enum ClientError {
    /// The socket failed (or timed out).
    Io(io::Error),
    /// The connection failed.
    Conn(ConnError),
    /// The command did not complete at the target (or its data did not all arrive).
    Command {
        /// Why.
        error: CommandError,
        /// The read's buffer, the caller's again (`None` for other commands).
        buffer: Option<SgBuffer>,
    },
    /// The command completed with a status other than GOOD.
    Status {
        /// SCSI status.
        status: u8,
        /// Sense, if any.
        sense: Option<Sense>,
        /// The read's buffer, the caller's again (`None` for other commands).
        buffer: Option<SgBuffer>,
    },
    /// The returned data could not be decoded.
    BadData(&'static str),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "socket: {e}"),
            Self::Conn(e) => write!(f, "connection: {e}"),
            Self::Command { error, .. } => write!(f, "command: {error}"),
            Self::Status { status, sense, .. } => {
                write!(f, "SCSI status {status:#04x}, sense {sense:?}")
            }
            Self::BadData(what) => write!(f, "bad data: {what}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The read buffer this error hands back (a command error or non-GOOD status of a read).
    pub fn into_buffer(self) -> Option<SgBuffer> {
        match self {
            Self::Command { buffer, .. } | Self::Status { buffer, .. } => buffer,
            _ => None,
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<ConnError> for ClientError {
    fn from(e: ConnError) -> Self {
        Self::Conn(e)
    }
}

/// Tees bytes read from the socket into the capture.
struct Tee<'a> {
    stream: &'a mut TcpStream,
    capture: Option<&'a mut Vec<(Direction, Vec<u8>)>>,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        if let Some(c) = self.capture.as_mut() {
            push_capture(c, Direction::FromTarget, &buf[..n]);
        }
        Ok(n)
    }

    fn read_vectored(&mut self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        let n = self.stream.read_vectored(bufs)?;
        if let Some(c) = self.capture.as_mut() {
            let mut left = n;
            for b in bufs.iter() {
                let k = left.min(b.len());
                push_capture(c, Direction::FromTarget, &b[..k]);
                left -= k;
            }
        }
        Ok(n)
    }
}

fn push_capture(c: &mut Vec<(Direction, Vec<u8>)>, dir: Direction, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    match c.last_mut() {
        Some((d, v)) if *d == dir => v.extend_from_slice(bytes),
        _ => c.push((dir, bytes.to_vec())),
    }
}

/// A logged-in iSCSI session over one blocking TCP connection.
pub struct Client<B: DdpBackend = SwBackend> {
    stream: TcpStream,
    conn: Connection<B>,
    reader: SocketReader,
    events: VecDeque<SessionEvent>,
    capture: Option<Vec<(Direction, Vec<u8>)>>,
    options: ClientOptions,
}

impl<B: DdpBackend> fmt::Debug for Client<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl Client<SwBackend> {
    /// Connects to `addr` and logs in, with the software backend.
    ///
    /// # Errors
    ///
    /// Socket errors and login failures.
    pub fn connect(
        addr: impl ToSocketAddrs,
        config: LoginConfig,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        Self::connect_with(addr, config, SwBackend::new(), options)
    }

    /// Runs a discovery session against `addr`: SendTargets=All, then logout.
    ///
    /// # Errors
    ///
    /// Socket errors, login failures, a malformed answer.
    pub fn discover(
        addr: impl ToSocketAddrs,
        initiator_name: &str,
        options: ClientOptions,
    ) -> Result<Vec<DiscoveredTarget>, ClientError> {
        let mut c = Self::connect(addr, LoginConfig::discovery(initiator_name), options)?;
        let id = c.conn.send_targets()?;
        loop {
            if let Some(i) = c
                .events
                .iter()
                .position(|e| matches!(e, SessionEvent::Discovered { id: got, .. } if *got == id))
                && let Some(SessionEvent::Discovered { targets, .. }) = c.events.remove(i)
            {
                c.logout()?;
                return Ok(targets);
            }
            c.pump()?;
        }
    }
}

impl<B: DdpBackend> Client<B> {
    /// Connects to `addr` and logs in over `backend`.
    ///
    /// # Errors
    ///
    /// Socket errors and login failures.
    pub fn connect_with(
        addr: impl ToSocketAddrs,
        config: LoginConfig,
        backend: B,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(options.timeout))?;
        stream.set_write_timeout(Some(options.timeout))?;
        let conn = Connection::new(config, backend, options.queue_id, options.queue_depth);
        let mut c = Self {
            stream,
            conn,
            reader: SocketReader::new(64 * 1024),
            events: VecDeque::new(),
            capture: options.capture.then(Vec::new),
            options,
        };
        c.conn.start_login()?;
        loop {
            if let Some(i) = c
                .events
                .iter()
                .position(|e| matches!(e, SessionEvent::LoggedIn))
            {
                c.events.remove(i);
                return Ok(c);
            }
            c.pump()?;
        }
    }

    /// The sans-IO connection (parameters, engine statistics).
    pub fn connection(&self) -> &Connection<B> {
        &self.conn
    }

    /// The sans-IO connection, e.g. to submit several commands before waiting.
    pub fn connection_mut(&mut self) -> &mut Connection<B> {
        &mut self.conn
    }

    /// The bytes sent and received so far, by direction, if capturing.
    pub fn capture(&self) -> Option<&[(Direction, Vec<u8>)]> {
        self.capture.as_deref()
    }

    /// Local and peer ports of the TCP connection.
    pub fn ports(&self) -> (u16, u16) {
        let l = self.stream.local_addr().map_or(0, |a| a.port());
        let p = self.stream.peer_addr().map_or(0, |a| a.port());
        (l, p)
    }

    /// Reads small commands' Data-In through the receive buffer: while every outstanding read
    /// expects fewer than `threshold` more bytes, each socket read takes as much as the 64 KiB
    /// receive buffer holds (many PDUs at once) and the payload is copied into the command
    /// buffers; larger reads are still read in place. `0` (the default) reads every payload in
    /// place. See [`SocketReader::copy_small_payloads`].
    pub fn copy_small_payloads(&mut self, threshold: u64) {
        self.reader = SocketReader::new(64 * 1024).copy_small_payloads(threshold);
    }

    fn flush(&mut self) -> Result<(), ClientError> {
        while let Some(t) = self.conn.poll_transmit() {
            let slices = t.slices();
            write_all_vectored(&mut self.stream, &slices)?;
            if let Some(c) = self.capture.as_mut() {
                for s in slices {
                    push_capture(c, Direction::ToTarget, s);
                }
            }
        }
        Ok(())
    }

    /// Sends what is queued, performs one socket read and processes it.
    ///
    /// # Errors
    ///
    /// [`ClientError::Conn`] once the connection failed, [`ClientError::Io`] on a socket error.
    pub fn pump(&mut self) -> Result<(), ClientError> {
        self.flush()?;
        if matches!(self.conn.phase(), Phase::Failed | Phase::Closed) {
            self.collect();
            return Err(match self.conn.phase() {
                Phase::Closed => ClientError::Conn(ConnError::Closed),
                _ => ClientError::Conn(self.conn_error()),
            });
        }
        let mut src = Tee {
            stream: &mut self.stream,
            capture: self.capture.as_mut(),
        };
        let result = if self.conn.phase() == Phase::Login {
            login_read(&mut self.conn, &mut src)
        } else {
            self.reader.read_once(self.conn.engine_mut(), &mut src)
        };
        match result {
            Ok(0) => self.conn.on_receive_error(None),
            Ok(_) => self.conn.handle_events(),
            Err(RecvError::Engine(e)) => self.conn.on_receive_error(Some(e)),
            Err(RecvError::Io(e)) => {
                self.conn.on_receive_error(None);
                self.collect();
                return Err(ClientError::Io(e));
            }
            Err(other) => {
                self.conn.on_receive_error(None);
                self.collect();
                return Err(ClientError::Io(io::Error::other(other.to_string())));
            }
        }
        self.collect();
        self.flush()
    }

    fn conn_error(&self) -> ConnError {
        self.events
            .iter()
            .find_map(|e| match e {
                SessionEvent::Failed(err) => Some(err.clone()),
                _ => None,
            })
            .unwrap_or(ConnError::Closed)
    }

    fn collect(&mut self) {
        while let Some(e) = self.conn.poll_event() {
            self.events.push_back(e);
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
    /// Socket errors; a failed connection still yields the command's completion (with
    /// [`CommandError::ConnectionLost`]) when it was submitted.
    pub fn wait(&mut self, id: CommandId) -> Result<Completion, ClientError> {
        loop {
            if let Some(i) = self
                .events
                .iter()
                .position(|e| matches!(e, SessionEvent::Completed(c) if c.id == id))
                && let Some(SessionEvent::Completed(c)) = self.events.remove(i)
            {
                return Ok(c);
            }
            self.pump()?;
        }
    }

    /// Waits for any command's completion.
    ///
    /// # Errors
    ///
    /// As [`wait`](Client::wait).
    pub fn wait_any(&mut self) -> Result<Completion, ClientError> {
        loop {
            if let Some(i) = self
                .events
                .iter()
                .position(|e| matches!(e, SessionEvent::Completed(_)))
                && let Some(SessionEvent::Completed(c)) = self.events.remove(i)
            {
                return Ok(c);
            }
            self.pump()?;
        }
    }

    /// Runs one command to completion.
    ///
    /// # Errors
    ///
    /// As [`wait`](Client::wait).
    pub fn execute(&mut self, cmd: Command) -> Result<Completion, ClientError> {
        let id = self.submit(cmd);
        self.wait(id)
    }

    /// Runs a command, retrying on UNIT ATTENTION, and requires GOOD status. Returns the outcome
    /// and the read buffer.
    ///
    /// # Errors
    ///
    /// [`ClientError::Status`] for any other status, [`ClientError::Command`] when the command
    /// failed, else as [`wait`](Client::wait); the first two hand back the read buffer
    /// ([`ClientError::into_buffer`]).
    pub fn run(
        &mut self,
        lun: Lun,
        cdb: scsi::Cdb,
        mut data: DataDir,
    ) -> Result<(ScsiOutcome, Option<SgBuffer>), ClientError> {
        let mut tries = 0;
        loop {
            let write = match &data {
                DataDir::Write(b) => Some(b.clone()),
                _ => None,
            };
            let c = self.execute(Command { lun, cdb, data })?;
            let outcome = match c.result {
                Ok(o) => o,
                Err(error) => {
                    return Err(ClientError::Command {
                        error,
                        buffer: c.buffer,
                    });
                }
            };
            if outcome.is_unit_attention() && tries < self.options.unit_attention_retries {
                tries += 1;
                data = match (c.buffer, write) {
                    (Some(b), _) => DataDir::Read(b),
                    (None, Some(w)) => DataDir::Write(w),
                    (None, None) => DataDir::None,
                };
                continue;
            }
            if !outcome.is_good() {
                return Err(ClientError::Status {
                    status: outcome.status,
                    sense: outcome.sense,
                    buffer: c.buffer,
                });
            }
            return Ok((outcome, c.buffer));
        }
    }

    fn run_read(&mut self, lun: Lun, cdb: scsi::Cdb, len: usize) -> Result<Vec<u8>, ClientError> {
        let (outcome, buffer) = self.run(lun, cdb, DataDir::Read(SgBuffer::zeroed(len)))?;
        let mut v = buffer.map(SgBuffer::into_vec).unwrap_or_default();
        v.truncate(usize::try_from(outcome.data_in).unwrap_or(usize::MAX));
        Ok(v)
    }

    /// TEST UNIT READY (unit attentions are retried).
    ///
    /// # Errors
    ///
    /// As [`run`](Client::run).
    pub fn test_unit_ready(&mut self, lun: Lun) -> Result<(), ClientError> {
        self.run(lun, scsi::test_unit_ready(), DataDir::None)
            .map(|_| ())
    }

    /// Standard INQUIRY.
    ///
    /// # Errors
    ///
    /// As [`run`](Client::run), or [`ClientError::BadData`].
    pub fn inquiry(&mut self, lun: Lun) -> Result<Inquiry, ClientError> {
        let d = self.run_read(lun, scsi::inquiry(96), 96)?;
        Inquiry::parse(&d).ok_or(ClientError::BadData("INQUIRY data"))
    }

    /// READ CAPACITY(16).
    ///
    /// # Errors
    ///
    /// As [`run`](Client::run), or [`ClientError::BadData`].
    pub fn read_capacity(&mut self, lun: Lun) -> Result<Capacity, ClientError> {
        let d = self.run_read(lun, scsi::read_capacity_16(), 32)?;
        Capacity::parse_16(&d).ok_or(ClientError::BadData("READ CAPACITY(16) data"))
    }

    /// REPORT LUNS.
    ///
    /// # Errors
    ///
    /// As [`run`](Client::run), or [`ClientError::BadData`].
    pub fn report_luns(&mut self) -> Result<Vec<[u8; 8]>, ClientError> {
        let d = self.run_read(Lun::default(), scsi::report_luns(4096), 4096)?;
        scsi::parse_report_luns(&d).ok_or(ClientError::BadData("REPORT LUNS data"))
    }

    /// Reads `buffer.len()` bytes at `lba` into `buffer` (READ(10), or READ(16) beyond its
    /// range); the data lands in the buffer straight from the socket. Every byte of the
    /// returned buffer was received: fewer (GOOD status with an underflow residual) is an
    /// error, never stale buffer bytes passed off as data.
    ///
    /// # Errors
    ///
    /// As [`run`](Client::run); [`CommandError::ShortData`] when fewer than `buffer.len()`
    /// bytes arrived.
    pub fn read_into(
        &mut self,
        lun: Lun,
        lba: u64,
        block_len: u32,
        buffer: SgBuffer,
    ) -> Result<SgBuffer, ClientError> {
        let blocks = buffer.len() / u64::from(block_len.max(1));
        let cdb = match (u32::try_from(lba), u16::try_from(blocks)) {
            (Ok(l), Ok(b)) => scsi::read_10(l, b),
            _ => scsi::read_16(lba, u32::try_from(blocks).unwrap_or(u32::MAX)),
        };
        let (outcome, b) = self.run(lun, cdb, DataDir::Read(buffer))?;
        let b = b.ok_or(ClientError::BadData("no buffer"))?;
        if outcome.data_in != b.len() {
            return Err(ClientError::Command {
                error: CommandError::ShortData {
                    expected: b.len(),
                    received: outcome.data_in,
                },
                buffer: Some(b),
            });
        }
        Ok(b)
    }

    /// Reads `blocks` blocks at `lba`.
    ///
    /// # Errors
    ///
    /// As [`read_into`](Client::read_into).
    pub fn read(
        &mut self,
        lun: Lun,
        lba: u64,
        blocks: u32,
        block_len: u32,
    ) -> Result<Vec<u8>, ClientError> {
        let len = u64::from(blocks) * u64::from(block_len);
        let len = usize::try_from(len).map_err(|_| ClientError::BadData("too long"))?;
        self.read_into(lun, lba, block_len, SgBuffer::zeroed(len))
            .map(SgBuffer::into_vec)
    }

    /// Writes `data` (whole blocks) at `lba` with WRITE(10), or WRITE(16) beyond its range.
    ///
    /// # Errors
    ///
    /// As [`run`](Client::run).
    pub fn write(
        &mut self,
        lun: Lun,
        lba: u64,
        block_len: u32,
        data: Bytes,
    ) -> Result<(), ClientError> {
        let blocks = data.len() as u64 / u64::from(block_len.max(1));
        let cdb = match (u32::try_from(lba), u16::try_from(blocks)) {
            (Ok(l), Ok(b)) => scsi::write_10(l, b),
            _ => scsi::write_16(lba, u32::try_from(blocks).unwrap_or(u32::MAX)),
        };
        self.run(lun, cdb, DataDir::Write(data)).map(|_| ())
    }

    /// SYNCHRONIZE CACHE(10) of the whole LUN.
    ///
    /// # Errors
    ///
    /// As [`run`](Client::run).
    pub fn synchronize_cache(&mut self, lun: Lun) -> Result<(), ClientError> {
        self.run(lun, scsi::synchronize_cache_10(), DataDir::None)
            .map(|_| ())
    }

    /// Sends a NOP-Out ping and waits for the NOP-In; returns the echoed data.
    ///
    /// # Errors
    ///
    /// Connection and socket errors.
    pub fn ping(&mut self, data: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let id = self.conn.ping(data)?;
        loop {
            if let Some(i) = self
                .events
                .iter()
                .position(|e| matches!(e, SessionEvent::Pong { id: got, .. } if *got == id))
                && let Some(SessionEvent::Pong { data, .. }) = self.events.remove(i)
            {
                return Ok(data);
            }
            self.pump()?;
        }
    }

    /// Logs out and closes the connection.
    ///
    /// # Errors
    ///
    /// Connection and socket errors.
    pub fn logout(&mut self) -> Result<(), ClientError> {
        self.conn.logout()?;
        loop {
            if self
                .events
                .iter()
                .any(|e| matches!(e, SessionEvent::LoggedOut))
            {
                let _ = self.stream.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            match self.pump() {
                Ok(()) => {}
                Err(_) if self.conn.phase() == Phase::Closed => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// One socket read during login, fed through [`Connection::receive`]: it frames one PDU at a
/// time, so the digests negotiated by the final Login Response apply from the next PDU even
/// when it arrived in the same read (the reader path would frame it with the old settings).
fn login_read<B: DdpBackend>(
    conn: &mut Connection<B>,
    src: &mut impl Read,
) -> Result<usize, RecvError<crate::wire::Error>> {
    let mut buf = [0u8; 4096];
    let n = loop {
        match src.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => break other.map_err(RecvError::Io)?,
        }
    };
    // A failure is reported through the connection's events.
    let _ = conn.receive(&buf[..n]);
    Ok(n)
}

/// Writes every slice, in order, with vectored writes.
fn write_all_vectored(w: &mut impl Write, slices: &[&[u8]]) -> io::Result<()> {
    let mut bufs: Vec<IoSlice<'_>> = slices
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| IoSlice::new(s))
        .collect();
    let mut bufs = &mut bufs[..];
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
