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
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

pub use ulp_ddp_core::blocking::Timeout;
use ulp_ddp_core::blocking::{Driver, Turn};
use ulp_ddp_core::timer::earliest;
use ulp_ddp_core::{DdpBackend, NoOffload, QueueId, SansIo, SgBuffer, SocketReader};

use crate::connection::{Completion, ConnectionConfig, ConnectionError, Data, Event, SubmitError};
use crate::nvme::{self, ControllerInfo, NamespaceInfo, Status};
use crate::wire::Digests;
use crate::wire::capsule_cmd::SQE_LEN;

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
    /// Something else during bring-up, or a request the controller cannot serve.
    Setup(String),
}

impl Error {
    /// The buffer this error hands back (a failed read or write).
    pub fn into_buffer(self) -> Option<SgBuffer> {
        match self {
            Self::Status { buffer, .. } => buffer,
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
            } => write!(
                f,
                "{command} (CID {cid}) failed: {}",
                status.describe(command)
            ),
            Self::Setup(s) => f.write_str(s),
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

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// One queue over a blocking TCP connection.
#[derive(Debug)]
pub struct Connection<B: DdpBackend = NoOffload> {
    conn: crate::Connection<B>,
    driver: Driver<TcpStream>,
    timeout: Duration,
    error: Option<ConnectionError>,
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
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
            if ulp_ddp_core::blocking::is_timeout(&e) {
                timed_out(timeout, format!("the TCP connection to {addr}"))
            } else {
                Error::Io(e)
            }
        })?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(timeout))?;
        let mut c = Self {
            conn: crate::Connection::new(config, backend),
            driver: Driver::new(stream),
            timeout,
            error: None,
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
        if let Err(e) = self.driver.flush(&mut self.conn) {
            return Err(self.socket_error(e));
        }
        if self.conn.is_closed() {
            let _ = self.driver.socket().shutdown(std::net::Shutdown::Both);
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
            if let Event::Closed(e) = event {
                self.error = Some(e);
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

    /// The one wait loop: turns of the blocking driver until what is wanted arrives, the
    /// connection ends, or the controller stays silent for the timeout.
    fn wait_for(
        &mut self,
        want: Want,
        mut other: Option<&mut Self>,
    ) -> Result<Option<Completion>, Error> {
        let mut last_rx = Instant::now();
        loop {
            match want {
                Want::Connected if self.conn.is_connected() => return Ok(None),
                Want::Any => {
                    if let Some(c) = self.conn.poll_completion(None) {
                        return Ok(Some(c));
                    }
                }
                Want::Cid(cid) => {
                    if let Some(c) = self.conn.poll_completion(Some(cid)) {
                        return Ok(Some(c));
                    }
                }
                Want::Connected => {}
            }
            self.note_end();
            if let Some(e) = self.error {
                let _ = self.driver.flush(&mut self.conn);
                let _ = self.driver.socket().shutdown(std::net::Shutdown::Both);
                return Err(Error::Connection(e));
            }
            let silent_until = last_rx + self.timeout;
            let other_due = other.as_ref().and_then(|o| o.poll_timeout());
            let turn = self
                .driver
                .turn(&mut self.conn, earliest([Some(silent_until), other_due]));
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
                    if now >= silent_until {
                        return Err(timed_out(self.timeout, self.waited_for(want)));
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
            timed_out(
                self.timeout,
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
fn timed_out(waited: Duration, what: String) -> Error {
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
        let _ = self.driver.socket().shutdown(std::net::Shutdown::Both);
    }
}

/// How to reach and set up a controller.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// Subsystem NQN.
    pub subnqn: String,
    /// Host NQN.
    pub hostnqn: String,
    /// Namespace for I/O.
    pub nsid: u32,
    /// Digests on both queues.
    pub digests: Digests,
    /// I/O queue depth.
    pub queue_depth: u16,
    /// Keep-alive timeout given to Connect (zero: none). Keep Alive goes out every half of it,
    /// from the admin queue's timer.
    pub kato: Duration,
    /// How long the controller may stay silent while the host waits for it (also the limit
    /// for CSTS.RDY).
    pub timeout: Duration,
}

impl Options {
    /// Options for `subnqn`, namespace 1, digests off, depth 32, no keep-alive, 10 s timeout.
    pub fn new(subnqn: &str) -> Self {
        Self {
            subnqn: subnqn.to_string(),
            hostnqn: "nqn.2014-08.org.nvmexpress:uuid:0c0f7e1d-ulp-ddp-host".to_string(),
            nsid: 1,
            digests: Digests::NONE,
            queue_depth: 32,
            kato: Duration::ZERO,
            timeout: Duration::from_secs(10),
        }
    }
}

/// A controller: admin queue (enabled, identified) and one I/O queue.
#[derive(Debug)]
pub struct Controller<B: DdpBackend = NoOffload> {
    admin: Connection<B>,
    io: Connection<B>,
    info: ControllerInfo,
    ns: NamespaceInfo,
    nsid: u32,
    cntlid: u16,
}

fn check(command: &'static str, c: Completion) -> Result<Completion, Error> {
    if c.status.is_success() {
        Ok(c)
    } else {
        Err(Error::Status {
            command,
            cid: c.cid,
            status: c.status,
            buffer: c.buffer,
        })
    }
}

fn identify<B: DdpBackend>(
    admin: &mut Connection<B>,
    cns: u8,
    nsid: u32,
) -> Result<Vec<u8>, Error> {
    let c = admin.run(
        nvme::identify(cns, nsid),
        Data::Read(SgBuffer::zeroed(nvme::IDENTIFY_LEN)),
    )?;
    let c = check("Identify", c)?;
    Ok(c.buffer.map(SgBuffer::into_vec).unwrap_or_default())
}

impl Controller<NoOffload> {
    /// Connects with the default backend ([`NoOffload`]: payload still read in place).
    ///
    /// # Errors
    ///
    /// As [`connect_with`](Self::connect_with).
    pub fn connect(addr: impl ToSocketAddrs, options: &Options) -> Result<Self, Error> {
        Self::connect_with(addr, options, |_| NoOffload)
    }
}

impl<B: DdpBackend> Controller<B> {
    /// Connects the admin queue (ICReq, Connect, enable through CC.EN and CSTS.RDY, Identify
    /// Controller and Namespace) and one I/O queue (ICReq, Connect). `backend` makes each
    /// queue's backend handle (called with the queue's backend id).
    ///
    /// # Errors
    ///
    /// Any step's failure.
    pub fn connect_with(
        addr: impl ToSocketAddrs,
        options: &Options,
        mut backend: impl FnMut(QueueId) -> B,
    ) -> Result<Self, Error> {
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| Error::Setup("the address resolves to nothing".into()))?;
        let t = options.timeout;
        let hostid = host_id(&options.hostnqn);
        let kato_ms = u32::try_from(options.kato.as_millis()).unwrap_or(u32::MAX);
        let admin_cfg = ConnectionConfig::admin(QueueId(0), options.digests)
            .with_keep_alive((kato_ms > 0).then(|| options.kato / 2));
        let mut admin = Connection::connect(addr, backend(QueueId(0)), admin_cfg, t)?;
        let data = nvme::connect_data(hostid, 0xFFFF, &options.subnqn, &options.hostnqn);
        let c = admin.run(
            nvme::connect(0, 32, kato_ms, 0),
            Data::Write(SgBuffer::from_vec(data)),
        )?;
        let cntlid = check("admin Connect", c)?.result as u16;
        let c = admin.run(nvme::property_get(nvme::REG_CAP, true), Data::None)?;
        let cap = check("Property Get CAP", c)?.result;
        let mqes = (cap & 0xFFFF) as u16;
        let c = admin.run(
            nvme::property_set(nvme::REG_CC, nvme::CC_ENABLE),
            Data::None,
        )?;
        check("Property Set CC", c)?;
        let deadline = Instant::now() + t;
        loop {
            let c = admin.run(nvme::property_get(nvme::REG_CSTS, false), Data::None)?;
            let csts = check("Property Get CSTS", c)?.result;
            if csts & 2 != 0 {
                return Err(Error::Setup(
                    "the controller reports a fatal status (CSTS.CFS) after enabling".into(),
                ));
            }
            if csts & 1 != 0 {
                break;
            }
            if Instant::now() > deadline {
                return Err(timed_out(t, "CSTS.RDY after setting CC.EN".into()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let info = ControllerInfo::parse(&identify(&mut admin, nvme::CNS_CONTROLLER, 0)?);
        let ns = NamespaceInfo::parse(&identify(&mut admin, nvme::CNS_NAMESPACE, options.nsid)?);
        if ns.block_size == 0 || ns.nsze == 0 {
            return Err(Error::Setup(format!(
                "namespace {} is not usable (size 0 or block size 0)",
                options.nsid
            )));
        }
        let depth = options.queue_depth.clamp(2, mqes.saturating_add(1).max(2));
        let io_cfg = ConnectionConfig::io(QueueId(1), 1, depth, options.digests);
        let mut io = Connection::connect(addr, backend(QueueId(1)), io_cfg, t)?;
        let data = nvme::connect_data(hostid, cntlid, &options.subnqn, &options.hostnqn);
        let c = io.run(
            nvme::connect(1, depth, 0, 0),
            Data::Write(SgBuffer::from_vec(data)),
        )?;
        check("I/O Connect", c)?;
        io.connection_mut()
            .set_in_capsule_limit(info.in_capsule_limit());
        Ok(Self {
            admin,
            io,
            info,
            ns,
            nsid: options.nsid,
            cntlid,
        })
    }

    /// Identify Controller, as parsed.
    pub fn info(&self) -> &ControllerInfo {
        &self.info
    }

    /// The I/O namespace.
    pub fn namespace(&self) -> NamespaceInfo {
        self.ns
    }

    /// The controller id the admin Connect returned.
    pub fn cntlid(&self) -> u16 {
        self.cntlid
    }

    /// The admin queue.
    pub fn admin(&mut self) -> &mut Connection<B> {
        &mut self.admin
    }

    /// The I/O queue (for pipelined commands; wait with [`Controller::wait_io`] to keep the
    /// admin queue alive meanwhile).
    pub fn io(&mut self) -> &mut Connection<B> {
        &mut self.io
    }

    /// Waits for the completion of I/O command `cid` (or of any, with `None`), running the
    /// admin queue's timers (Keep Alive) whenever they are due.
    ///
    /// # Errors
    ///
    /// Socket errors, the timeout, either queue's end.
    pub fn wait_io(&mut self, cid: Option<u16>) -> Result<Completion, Error> {
        self.io.wait_keeping(cid, &mut self.admin)
    }

    fn blocks(&self, len: u64) -> Result<u32, Error> {
        let bs = u64::from(self.ns.block_size.max(1));
        if len == 0 || !len.is_multiple_of(bs) || len / bs > 65536 {
            return Err(Error::Setup(format!(
                "{len} bytes is not 1..=65536 blocks of {bs} bytes"
            )));
        }
        Ok((len / bs) as u32)
    }

    /// The Read command for `len` bytes at block `slba`.
    ///
    /// # Errors
    ///
    /// If `len` is not a whole number of blocks (1..=65536).
    pub fn read_cmd(&self, slba: u64, len: u64) -> Result<[u8; SQE_LEN], Error> {
        Ok(nvme::read(self.nsid, slba, self.blocks(len)?))
    }

    /// The Write command for `len` bytes at block `slba`.
    ///
    /// # Errors
    ///
    /// If `len` is not a whole number of blocks (1..=65536).
    pub fn write_cmd(&self, slba: u64, len: u64) -> Result<[u8; SQE_LEN], Error> {
        Ok(nvme::write(self.nsid, slba, self.blocks(len)?))
    }

    /// Keeps the association alive without waiting: the admin queue's Keep Alive is sent when
    /// due and its completions are taken. Every wait of this controller does it too; a caller
    /// idle for longer than half the keep-alive timeout calls it itself.
    ///
    /// # Errors
    ///
    /// Socket errors, or the admin queue's error.
    pub fn keep_alive(&mut self) -> Result<(), Error> {
        self.admin.poll()
    }

    /// Reads `buffer.len()` bytes at block `slba` into `buffer`, and hands it back with the
    /// data in it.
    ///
    /// # Errors
    ///
    /// Bad length, connection failure, or a failed status ([`Error::Status`] hands the buffer
    /// back too).
    pub fn read(&mut self, slba: u64, buffer: SgBuffer) -> Result<SgBuffer, Error> {
        let sqe = self.read_cmd(slba, buffer.len())?;
        let cid = self.io.submit(sqe, Data::Read(buffer))?;
        let c = check("Read", self.wait_io(Some(cid))?)?;
        Ok(c.buffer.unwrap_or_default())
    }

    /// Writes `data` at block `slba` and hands the buffer back.
    ///
    /// # Errors
    ///
    /// Bad length, connection failure, or a failed status ([`Error::Status`] hands the buffer
    /// back too).
    pub fn write(&mut self, slba: u64, data: SgBuffer) -> Result<SgBuffer, Error> {
        let sqe = self.write_cmd(slba, data.len())?;
        let cid = self.io.submit(sqe, Data::Write(data))?;
        let c = check("Write", self.wait_io(Some(cid))?)?;
        Ok(c.buffer.unwrap_or_default())
    }

    /// Flushes the namespace.
    ///
    /// # Errors
    ///
    /// Connection failure or a failed status.
    pub fn flush(&mut self) -> Result<(), Error> {
        let cid = self.io.submit(nvme::flush(self.nsid), Data::None)?;
        check("Flush", self.wait_io(Some(cid))?).map(|_| ())
    }
}

/// A stable host identifier derived from the host NQN.
fn host_id(hostnqn: &str) -> [u8; 16] {
    let a = ulp_ddp_core::digest::crc32c(hostnqn.as_bytes());
    let b = ulp_ddp_core::digest::crc32c(&a.to_le_bytes());
    let mut id = [0u8; 16];
    for (i, chunk) in id.chunks_mut(4).enumerate() {
        chunk.copy_from_slice(&(a ^ b.rotate_left(i as u32 * 8)).to_le_bytes());
    }
    id
}
