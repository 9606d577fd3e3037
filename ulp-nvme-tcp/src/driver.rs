//! A thin blocking driver over `std::net::TcpStream`: [`Connection`] runs one [`HostQueue`],
//! [`Controller`] brings up an admin queue and one I/O queue and reads and writes blocks.
//!
//! Receiving goes through the reader path ([`SocketReader`]): C2HData payload is read from the
//! socket straight into the command's buffer. Sending writes the header, then the payload
//! slice borrowed from the command, then the digest (vectored, no payload copy).

use std::fmt;
use std::io::{self, IoSlice, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use ulp_ddp_core::reader::{RecvError, SocketReader};
use ulp_ddp_core::{DdpBackend, QueueId, SgBuffer};

use crate::host::{Completion, Data, HostConfig, HostError, HostEvent, HostQueue, SubmitError};
use crate::nvme::{self, ControllerInfo, NamespaceInfo, Status};
use crate::wire::Digests;
use crate::wire::capsule_cmd::SQE_LEN;

/// Why a driver operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum DriverError {
    /// The socket failed (including the read timeout).
    Io(io::Error),
    /// The connection ended.
    Host(HostError),
    /// The queue refused the command.
    Submit(SubmitError),
    /// A command of the bring-up failed.
    Status {
        /// Which step.
        step: &'static str,
        /// Its status.
        status: Status,
    },
    /// Something else during bring-up.
    Setup(String),
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "socket: {e}"),
            Self::Host(e) => write!(f, "{e}"),
            Self::Submit(e) => write!(f, "submit: {e}"),
            Self::Status { step, status } => write!(f, "{step} failed: {status}"),
            Self::Setup(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for DriverError {}

impl From<io::Error> for DriverError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// One queue over a blocking TCP connection.
#[derive(Debug)]
pub struct Connection<B: DdpBackend> {
    stream: TcpStream,
    queue: HostQueue<B>,
    reader: SocketReader,
    header: Vec<u8>,
    /// PDUs without payload waiting to go out together (see `flush`).
    gathered: Vec<u8>,
    error: Option<HostError>,
}

impl<B: DdpBackend> Connection<B> {
    /// Connects to `addr`, sends ICReq and waits for ICResp. Every socket read gives up after
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// Socket errors, or the queue's error if the controller refused the connection.
    pub fn connect(
        addr: SocketAddr,
        backend: B,
        config: HostConfig,
        timeout: Duration,
    ) -> Result<Self, DriverError> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut c = Self {
            stream,
            queue: HostQueue::new(backend, config),
            reader: SocketReader::new(4096),
            header: Vec::with_capacity(256),
            gathered: Vec::with_capacity(4096),
            error: None,
        };
        while !c.queue.is_connected() {
            c.step()?;
        }
        Ok(c)
    }

    /// Reads small commands' data through the receive buffer: while every outstanding read
    /// expects fewer than `threshold` more bytes, each socket read takes as much as a 64 KiB
    /// buffer holds (many PDUs at once) and their payload is copied into the command buffers;
    /// larger reads are still read in place. `0` (the default) reads every payload in place.
    /// See [`SocketReader::copy_small_payloads`].
    pub fn copy_small_payloads(&mut self, threshold: u64) {
        self.reader = if threshold == 0 {
            SocketReader::new(4096)
        } else {
            SocketReader::new(64 * 1024).copy_small_payloads(threshold)
        };
    }

    /// The queue.
    pub fn queue(&self) -> &HostQueue<B> {
        &self.queue
    }

    /// The queue, to submit commands or change settings.
    pub fn queue_mut(&mut self) -> &mut HostQueue<B> {
        &mut self.queue
    }

    /// Submits a command (sent at the next [`flush`](Self::flush) or wait).
    ///
    /// # Errors
    ///
    /// [`DriverError::Submit`] (the data is dropped).
    pub fn submit(&mut self, sqe: [u8; SQE_LEN], data: Data) -> Result<u16, DriverError> {
        self.queue
            .submit(sqe, data)
            .map_err(|(e, _)| DriverError::Submit(e))
    }

    /// Sends everything the queue has to send: PDUs without payload (command capsules, for
    /// reads) are gathered and go out with the next PDU that has payload, or at the end, so a
    /// batch of commands costs one system call.
    ///
    /// # Errors
    ///
    /// Socket errors.
    pub fn flush(&mut self) -> Result<(), DriverError> {
        self.gathered.clear();
        while let Some(t) = self.queue.poll_transmit(&mut self.header) {
            let payload = self.queue.payload(&t);
            if payload.is_empty() && t.ddgst.is_none() {
                self.gathered.extend_from_slice(&self.header);
                continue;
            }
            let ddgst = t.ddgst.unwrap_or_default();
            let ddgst = if t.ddgst.is_some() { &ddgst[..] } else { &[] };
            let mut slices = [
                IoSlice::new(&self.gathered),
                IoSlice::new(&self.header),
                IoSlice::new(payload),
                IoSlice::new(ddgst),
            ];
            write_all_vectored(&mut self.stream, &mut slices)?;
            self.gathered.clear();
        }
        if !self.gathered.is_empty() {
            write_all_vectored(&mut self.stream, &mut [IoSlice::new(&self.gathered)])?;
            self.gathered.clear();
        }
        if self.queue.is_closed() {
            let _ = self.stream.shutdown(std::net::Shutdown::Both);
        }
        Ok(())
    }

    /// Runs the queue's timers (a due Keep Alive is submitted and sent) and takes whatever the
    /// controller already sent, without waiting: what a caller that is not otherwise driving
    /// this queue calls to keep it alive.
    ///
    /// # Errors
    ///
    /// Socket errors, or the queue's error if it terminated.
    pub fn poll(&mut self) -> Result<(), DriverError> {
        self.queue.handle_timeout(Instant::now());
        self.flush()?;
        self.stream.set_nonblocking(true)?;
        let mut result = Ok(());
        // Bounded: each round consumes at least one byte or stops.
        for _ in 0..1024 {
            match self.read_once() {
                Ok(0) => break,
                Ok(_) => self.drain(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.stream.set_nonblocking(false)?;
        result?;
        self.drain();
        self.flush()?;
        match self.error {
            Some(e) => Err(DriverError::Host(e)),
            None => Ok(()),
        }
    }

    /// One round: run timers, send what is pending, then read once and collect events.
    fn step(&mut self) -> Result<(), DriverError> {
        self.queue.handle_timeout(Instant::now());
        self.flush()?;
        self.drain();
        if let Some(e) = self.error {
            return Err(DriverError::Host(e));
        }
        let read = self.read_once();
        self.drain();
        self.flush()?;
        if let Some(e) = self.error {
            return Err(DriverError::Host(e));
        }
        read?;
        Ok(())
    }

    /// One read from the socket through the reader path (payload straight into the command's
    /// buffer), reported to the sans-IO queue.
    fn read_once(&mut self) -> io::Result<usize> {
        if !self.queue.is_open() {
            return Ok(0);
        }
        match self
            .reader
            .read_once(self.queue.engine_mut(), &mut self.stream)
        {
            Ok(n) => {
                self.queue.handle_received(Ok(n));
                Ok(n)
            }
            Err(RecvError::Io(e)) => Err(e),
            Err(RecvError::Engine(e)) => {
                self.queue.handle_received(Err(e));
                Ok(0)
            }
            Err(other) => Err(io::Error::other(other.to_string())),
        }
    }

    /// Notes the queue's end; completions stay in the queue until the caller takes them, so
    /// that a CID is not reused while its completion is still unclaimed.
    fn drain(&mut self) {
        while let Some(event) = self.queue.poll_other_event() {
            if let HostEvent::Terminated(e) = event {
                self.error = Some(e);
            }
        }
    }

    /// The next completion, reading from the socket until one arrives.
    ///
    /// # Errors
    ///
    /// Socket errors (including the read timeout) and the connection's end.
    pub fn next_completion(&mut self) -> Result<Completion, DriverError> {
        loop {
            if let Some(c) = self.queue.poll_completion(None) {
                return Ok(c);
            }
            self.step()?;
        }
    }

    /// Waits for command `cid` (other completions are kept for later).
    ///
    /// # Errors
    ///
    /// As [`next_completion`](Self::next_completion).
    pub fn wait(&mut self, cid: u16) -> Result<Completion, DriverError> {
        loop {
            if let Some(c) = self.queue.poll_completion(Some(cid)) {
                return Ok(c);
            }
            self.step()?;
        }
    }

    /// Submits a command and waits for it.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit) and [`wait`](Self::wait).
    pub fn run(&mut self, sqe: [u8; SQE_LEN], data: Data) -> Result<Completion, DriverError> {
        let cid = self.submit(sqe, data)?;
        self.wait(cid)
    }
}

impl<B: DdpBackend> Drop for Connection<B> {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

fn write_all_vectored(w: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match w.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How to reach and set up a controller.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
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
    /// Keep-alive timeout given to Connect, in milliseconds (0: none).
    pub kato_ms: u32,
    /// Socket read timeout, and the limit for CSTS.RDY.
    pub timeout: Duration,
}

impl ControllerOptions {
    /// Options for `subnqn`, namespace 1, digests off, depth 32, no keep-alive, 10 s timeout.
    pub fn new(subnqn: &str) -> Self {
        Self {
            subnqn: subnqn.to_string(),
            hostnqn: "nqn.2014-08.org.nvmexpress:uuid:0c0f7e1d-ulp-ddp-host".to_string(),
            nsid: 1,
            digests: Digests::NONE,
            queue_depth: 32,
            kato_ms: 0,
            timeout: Duration::from_secs(10),
        }
    }
}

/// A controller: admin queue (enabled, identified) and one I/O queue.
#[derive(Debug)]
pub struct Controller<B: DdpBackend> {
    admin: Connection<B>,
    io: Connection<B>,
    info: ControllerInfo,
    ns: NamespaceInfo,
    nsid: u32,
    cntlid: u16,
}

fn check(step: &'static str, c: &Completion) -> Result<(), DriverError> {
    if c.status.is_success() {
        Ok(())
    } else {
        Err(DriverError::Status {
            step,
            status: c.status,
        })
    }
}

fn identify<B: DdpBackend>(
    admin: &mut Connection<B>,
    cns: u8,
    nsid: u32,
) -> Result<Vec<u8>, DriverError> {
    let c = admin.run(
        nvme::identify(cns, nsid),
        Data::Read(SgBuffer::zeroed(nvme::IDENTIFY_LEN)),
    )?;
    check("Identify", &c)?;
    Ok(c.buffer.map(SgBuffer::into_vec).unwrap_or_default())
}

impl<B: DdpBackend> Controller<B> {
    /// Connects the admin queue (ICReq, Connect, enable through CC.EN and CSTS.RDY, Identify
    /// Controller and Namespace) and one I/O queue (ICReq, Connect). `backend` makes each
    /// queue's backend handle (called with the queue's backend id).
    ///
    /// # Errors
    ///
    /// Any step's failure.
    pub fn connect(
        addr: impl ToSocketAddrs,
        options: &ControllerOptions,
        mut backend: impl FnMut(QueueId) -> B,
    ) -> Result<Self, DriverError> {
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| DriverError::Setup("no address".into()))?;
        let t = options.timeout;
        let hostid = host_id(&options.hostnqn);
        let mut admin_cfg = HostConfig::admin(QueueId(0), options.digests);
        if options.kato_ms > 0 {
            admin_cfg.keep_alive = Some(Duration::from_millis(u64::from(options.kato_ms / 2)));
        }
        let mut admin = Connection::connect(addr, backend(QueueId(0)), admin_cfg, t)?;
        let data = nvme::connect_data(hostid, 0xFFFF, &options.subnqn, &options.hostnqn);
        let c = admin.run(nvme::connect(0, 32, options.kato_ms, 0), Data::Write(data))?;
        check("admin Connect", &c)?;
        let cntlid = c.result as u16;
        let c = admin.run(nvme::property_get(nvme::REG_CAP, true), Data::None)?;
        check("Property Get CAP", &c)?;
        let cap = c.result;
        let mqes = (cap & 0xFFFF) as u16;
        let c = admin.run(
            nvme::property_set(nvme::REG_CC, nvme::CC_ENABLE),
            Data::None,
        )?;
        check("Property Set CC", &c)?;
        let deadline = Instant::now() + t;
        loop {
            let c = admin.run(nvme::property_get(nvme::REG_CSTS, false), Data::None)?;
            check("Property Get CSTS", &c)?;
            if c.result & 2 != 0 {
                return Err(DriverError::Setup(
                    "controller fatal status (CSTS.CFS)".into(),
                ));
            }
            if c.result & 1 != 0 {
                break;
            }
            if Instant::now() > deadline {
                return Err(DriverError::Setup("CSTS.RDY did not come up".into()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let info = ControllerInfo::parse(&identify(&mut admin, nvme::CNS_CONTROLLER, 0)?);
        let ns = NamespaceInfo::parse(&identify(&mut admin, nvme::CNS_NAMESPACE, options.nsid)?);
        if ns.block_size == 0 || ns.nsze == 0 {
            return Err(DriverError::Setup(format!(
                "namespace {} is not usable",
                options.nsid
            )));
        }
        let depth = options.queue_depth.clamp(2, mqes.saturating_add(1).max(2));
        let io_cfg = HostConfig::io(QueueId(1), 1, depth, options.digests);
        let mut io = Connection::connect(addr, backend(QueueId(1)), io_cfg, t)?;
        let data = nvme::connect_data(hostid, cntlid, &options.subnqn, &options.hostnqn);
        let c = io.run(nvme::connect(1, depth, 0, 0), Data::Write(data))?;
        check("I/O Connect", &c)?;
        io.queue_mut().set_in_capsule_limit(info.in_capsule_limit());
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

    /// The I/O queue (for pipelined commands).
    pub fn io(&mut self) -> &mut Connection<B> {
        &mut self.io
    }

    fn blocks(&self, len: u64) -> Result<u32, DriverError> {
        let bs = u64::from(self.ns.block_size.max(1));
        if len == 0 || !len.is_multiple_of(bs) || len / bs > 65536 {
            return Err(DriverError::Setup(format!(
                "{len} bytes is not 1..=65536 blocks of {bs}"
            )));
        }
        Ok((len / bs) as u32)
    }

    /// The Read command for `len` bytes at block `slba`.
    ///
    /// # Errors
    ///
    /// If `len` is not a whole number of blocks (1..=65536).
    pub fn read_cmd(&self, slba: u64, len: u64) -> Result<[u8; SQE_LEN], DriverError> {
        Ok(nvme::read(self.nsid, slba, self.blocks(len)?))
    }

    /// The Write command for `len` bytes at block `slba`.
    ///
    /// # Errors
    ///
    /// If `len` is not a whole number of blocks (1..=65536).
    pub fn write_cmd(&self, slba: u64, len: u64) -> Result<[u8; SQE_LEN], DriverError> {
        Ok(nvme::write(self.nsid, slba, self.blocks(len)?))
    }

    /// Keeps the association alive: the admin queue's Keep Alive is sent when due and its
    /// completions are taken, without waiting. This blocking driver has no background thread,
    /// so every I/O operation below calls it first; a caller that stays idle longer than half
    /// the keep-alive timeout must call it itself.
    ///
    /// # Errors
    ///
    /// Socket errors, or the admin queue's error.
    pub fn keep_alive(&mut self) -> Result<(), DriverError> {
        self.admin.poll()
    }

    /// Reads `buffer.len()` bytes at block `slba` into `buffer`; the completion carries it.
    ///
    /// # Errors
    ///
    /// Bad length, connection failure, or a failed status.
    pub fn read(&mut self, slba: u64, buffer: SgBuffer) -> Result<Completion, DriverError> {
        self.keep_alive()?;
        let sqe = self.read_cmd(slba, buffer.len())?;
        let c = self.io.run(sqe, Data::Read(buffer))?;
        check("Read", &c)?;
        Ok(c)
    }

    /// Writes `data` at block `slba`.
    ///
    /// # Errors
    ///
    /// Bad length, connection failure, or a failed status.
    pub fn write(&mut self, slba: u64, data: Vec<u8>) -> Result<Completion, DriverError> {
        self.keep_alive()?;
        let sqe = self.write_cmd(slba, data.len() as u64)?;
        let c = self.io.run(sqe, Data::Write(data))?;
        check("Write", &c)?;
        Ok(c)
    }

    /// Flushes the namespace.
    ///
    /// # Errors
    ///
    /// Connection failure or a failed status.
    pub fn flush(&mut self) -> Result<(), DriverError> {
        self.keep_alive()?;
        let c = self.io.run(nvme::flush(self.nsid), Data::None)?;
        check("Flush", &c)
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
