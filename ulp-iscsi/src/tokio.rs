//! The tokio driver (feature `tokio`): [`Session`], an iSCSI session over one
//! `tokio::net::TcpStream`, running the same sans-IO [`Connection`] and the same
//! [`Bringup`] as the blocking driver.
//!
//! One task owns the socket and the connection and is fed through a channel: a [`Session`] is
//! a cheap handle (`Clone`, `&self` methods), so many tasks keep many commands in flight at
//! once. The task sleeps until the connection's [`poll_timeout`](SansIo::poll_timeout)
//! (NOP-Out pings on an idle connection, task deadlines and their abort ladder) with
//! `tokio::time::sleep_until`. Receiving uses the reader path: when the socket is readable,
//! Data-In payload is read with `try_read` straight into the command's buffer
//! ([`ulp_ddp_core::Engine::read_target`] / [`commit_in_place`](ulp_ddp_core::Engine::commit_in_place)
//! through [`SocketReader`]); write payload goes out with vectored writes, never copied.
//!
//! Errors are the blocking driver's [`Error`], in words; every failure hands the command's
//! buffer back ([`Error::into_buffer`]).
//!
//! Session reinstatement, as the blocking driver's (the same
//! [`Reinstatement`] policy and [`Options`]): when the
//! connection ends without the caller's logout, the retry-safe commands with retries left keep
//! their buffers and wait, the others complete with [`CommandError::ConnectionLost`] and their
//! buffer; the task sleeps until the policy's deadline, connects again, logs in with the same
//! ISID and TSIH 0, runs the [`Bringup`] checks for the session's LUNs and issues the waiting
//! commands again. A login that cannot succeed ends it at once; past `replacement_timeout`
//! every waiting command completes with [`CommandError::SessionLost`] in words and its buffer,
//! and later requests are [`Error::Refused`] (buffer back). [`Session::take_events`] says what
//! happened. With `Options::reinstate` off, the connection's end fails every outstanding
//! command with its buffer and later requests are refused. `capture` does not apply.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ulp_iscsi::blocking::Error> {
//! use ulp_iscsi::blocking::Options;
//! use ulp_iscsi::tokio::Session;
//! use ulp_iscsi::wire::Lun;
//! use ulp_iscsi::{ConnectionConfig, SgBuffer};
//!
//! let config = ConnectionConfig::normal("iqn.2024-01.io.example:host", "iqn.2024-01.io.example:disk");
//! let session = Session::connect("127.0.0.1:3260", config, Options::default()).await?;
//! let lun = Lun::single_level(0);
//! session.write(lun, 0, SgBuffer::from_vec(vec![7; 4096])).await?;
//! let back = session.read(lun, 0, SgBuffer::zeroed(4096)).await?;
//! assert_eq!(back.into_vec(), vec![7; 4096]);
//! session.logout().await
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, IoSliceMut, Read};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ::tokio::net::{TcpStream, ToSocketAddrs};
use ::tokio::sync::{mpsc, oneshot};
use ::tokio::time::sleep_until;
use ulp_ddp_core::timer::earliest;
use ulp_ddp_core::{NoOffload, RecvError, SansIo, SgBuffer, SocketReader, Stats};

use crate::blocking::session::{Kind, read_cdb, write_cdb};
use crate::blocking::{
    Error, Options, SessionEvent, Try, ended, judge, read_back, secs, timed_out, whole_blocks,
};
use crate::bringup::{Bringup, Ready};
use crate::connection::{
    Command, CommandError, CommandId, Completion, Connection, ConnectionConfig, ConnectionError,
    Data, Event, Phase, ScsiOutcome,
};
use crate::keys::Params;
use crate::recovery::{Failure, Next, Reinstatement, should_reissue};
use crate::scsi::{self, Capacity, Inquiry};
use crate::wire::Lun;

/// What a handle asks the connection's task for.
enum Request {
    Command(Command, oneshot::Sender<Result<Completion, Error>>),
    Ping(Vec<u8>, oneshot::Sender<Result<Vec<u8>, Error>>),
    Logout(oneshot::Sender<Result<(), Error>>),
    Stats(oneshot::Sender<Stats>),
}

/// A command the task tracks across reinstatements: what it needs to issue it again.
struct Tracked {
    /// The session's id for it, stable across reinstatements (the one its [`Completion`]
    /// carries).
    id: u64,
    lun: Lun,
    cdb: scsi::Cdb,
    kind: Kind,
    /// Times issued again so far.
    tries: u32,
    tx: oneshot::Sender<Result<Completion, Error>>,
}

/// Who waits for a connection-level id.
enum Waiter {
    Command(Tracked),
    Ping(oneshot::Sender<Result<Vec<u8>, Error>>),
}

/// What the handles and the task share.
#[derive(Debug, Default)]
struct Shared {
    /// Why requests are refused, in words, once the task ended.
    refusal: Mutex<Option<String>>,
    /// Recovery events not taken yet.
    events: Mutex<Vec<SessionEvent>>,
    /// READ CAPACITY answers, checked again after a reinstatement.
    capacities: Mutex<HashMap<Lun, Capacity>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An iSCSI session driven by a tokio task: a cloneable handle. See the
/// [module documentation](self).
#[derive(Clone, Debug)]
pub struct Session {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::UnboundedSender<Request>,
    options: Options,
    params: Params,
    block_lens: Mutex<HashMap<Lun, u32>>,
    shared: Arc<Shared>,
}

impl Session {
    /// Connects to `addr` and logs in (the shared [`Bringup`]), then hands the connection to
    /// a task spawned on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// Socket errors, the timeout ([`Options::timeout`] for the TCP connection and again for
    /// the login), login failures.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        config: ConnectionConfig,
        options: Options,
    ) -> Result<Self, Error> {
        let stream = ::tokio::time::timeout(options.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out(options.timeout, "the TCP connection to open".into()))??;
        let addr = stream.peer_addr()?;
        let mut link = Link::new(stream, &config)?;
        let mut bringup = Bringup::new(Instant::now(), options.timeout);
        bringup.start(&mut link.conn)?;
        link.bring_up(&mut bringup, options.timeout).await?;
        let params = link.conn.params().clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let task = Task {
            addr,
            config,
            options,
            waiting: HashMap::new(),
            backlog: VecDeque::new(),
            logout: None,
            open: true,
            failed_by_end: 0,
            next_id: 0,
            policy: Reinstatement::new(&options),
            shared: Arc::clone(&shared),
        };
        ::tokio::spawn(task.run(link, rx));
        Ok(Self {
            inner: Arc::new(Inner {
                tx,
                options,
                params,
                block_lens: Mutex::new(HashMap::new()),
                shared,
            }),
        })
    }

    /// What recovery did since the last call (the connection lost, each reinstatement
    /// attempt, the session reinstated or lost), for the caller to log; each says it in words
    /// (`Display`), as the blocking driver's
    /// [`take_events`](crate::blocking::Session::take_events).
    pub fn take_events(&self) -> Vec<SessionEvent> {
        std::mem::take(&mut *lock(&self.inner.shared.events))
    }

    /// The negotiated parameters (digests, burst lengths).
    pub fn params(&self) -> &Params {
        &self.inner.params
    }

    /// The receive engine's counters (payload bytes read in place or copied, digests).
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] once the connection's task ended.
    pub async fn stats(&self) -> Result<Stats, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Stats(tx))?;
        rx.await.map_err(|_| self.refused(None))
    }

    /// The connection's task ended: a request is refused with the connection's end in
    /// words, its buffer back.
    fn refused(&self, buffer: Option<SgBuffer>) -> Error {
        let reason = lock(&self.inner.shared.refusal).clone().unwrap_or_else(|| {
            format!(
                "the session's connection is over: {}",
                ConnectionError::PeerClosed
            )
        });
        Error::Refused { reason, buffer }
    }

    fn send(&self, r: Request) -> Result<(), Error> {
        self.inner.tx.send(r).map_err(|mpsc::error::SendError(r)| {
            self.refused(match r {
                Request::Command(cmd, _) => cmd.data.into_buffer(),
                _ => None,
            })
        })
    }

    /// Runs one command; its completion (GOOD or not, or failed with its buffer).
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] (buffer back) once the connection's task ended.
    pub async fn execute(&self, cmd: Command) -> Result<Completion, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Command(cmd, tx))?;
        rx.await.map_err(|_| self.refused(None))?
    }

    /// Runs a command, retrying on UNIT ATTENTION, and requires GOOD status. Returns the
    /// outcome and the command's buffer.
    ///
    /// # Errors
    ///
    /// As the blocking [`run`](crate::blocking::Session::run): [`Error::Status`] and
    /// [`Error::Command`] hand back the buffer.
    pub async fn run(
        &self,
        lun: Lun,
        cdb: scsi::Cdb,
        mut data: Data,
    ) -> Result<(ScsiOutcome, Option<SgBuffer>), Error> {
        let mut tries = 0;
        loop {
            let kind = Kind::of(&data);
            let c = self.execute(Command { lun, cdb, data }).await?;
            match judge(c, tries < self.inner.options.unit_attention_retries) {
                Try::Done(r) => return r,
                Try::Again(buffer) => {
                    tries += 1;
                    data = kind.data(buffer);
                }
            }
        }
    }

    async fn run_read(&self, lun: Lun, cdb: scsi::Cdb, len: usize) -> Result<Vec<u8>, Error> {
        let (outcome, buffer) = self
            .run(lun, cdb, Data::Read(SgBuffer::zeroed(len)))
            .await?;
        let mut v = buffer.map(SgBuffer::into_vec).unwrap_or_default();
        v.truncate(usize::try_from(outcome.data_in).unwrap_or(usize::MAX));
        Ok(v)
    }

    /// TEST UNIT READY (unit attentions are retried).
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub async fn test_unit_ready(&self, lun: Lun) -> Result<(), Error> {
        self.run(lun, scsi::test_unit_ready(), Data::None)
            .await
            .map(|_| ())
    }

    /// Standard INQUIRY.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run), or [`Error::BadData`].
    pub async fn inquiry(&self, lun: Lun) -> Result<Inquiry, Error> {
        let d = self.run_read(lun, scsi::inquiry(96), 96).await?;
        Inquiry::parse(&d).ok_or(Error::BadData("INQUIRY data"))
    }

    /// READ CAPACITY(16); remembers the LUN's block length for [`read`](Self::read) and
    /// [`write`](Self::write).
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run), or [`Error::Capacity`].
    pub async fn read_capacity(&self, lun: Lun) -> Result<Capacity, Error> {
        let d = self.run_read(lun, scsi::read_capacity_16(), 32).await?;
        let c = Capacity::parse_16(&d).map_err(Error::Capacity)?;
        self.block_lens().insert(lun, c.block_len);
        lock(&self.inner.shared.capacities).insert(lun, c);
        Ok(c)
    }

    /// REPORT LUNS.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run), or [`Error::BadData`].
    pub async fn report_luns(&self) -> Result<Vec<[u8; 8]>, Error> {
        let d = self
            .run_read(Lun::default(), scsi::report_luns(4096), 4096)
            .await?;
        scsi::parse_report_luns(&d).ok_or(Error::BadData("REPORT LUNS data"))
    }

    fn block_lens(&self) -> MutexGuard<'_, HashMap<Lun, u32>> {
        lock(&self.inner.block_lens)
    }

    /// The LUN's block length: remembered from READ CAPACITY, which runs on first use.
    ///
    /// # Errors
    ///
    /// As [`read_capacity`](Self::read_capacity).
    pub async fn block_len(&self, lun: Lun) -> Result<u32, Error> {
        let known = self.block_lens().get(&lun).copied();
        match known {
            Some(len) => Ok(len),
            None => self.read_capacity(lun).await.map(|c| c.block_len),
        }
    }

    /// Reads `buffer.len()` bytes at `lba` into `buffer` and hands it back: the data lands in
    /// the buffer straight from the socket. Every byte of the returned buffer was received.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run); [`CommandError::ShortData`] when fewer bytes arrived. A buffer
    /// that is not a whole number of blocks is [`Error::BadData`] (the buffer is dropped:
    /// check the length first).
    pub async fn read(&self, lun: Lun, lba: u64, buffer: SgBuffer) -> Result<SgBuffer, Error> {
        let blocks = whole_blocks(self.block_len(lun).await?, buffer.len())?;
        let (outcome, b) = self
            .run(lun, read_cdb(lba, blocks), Data::Read(buffer))
            .await?;
        read_back(&outcome, b)
    }

    /// Writes `data` (whole blocks) at `lba` and hands the buffer back.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub async fn write(&self, lun: Lun, lba: u64, data: SgBuffer) -> Result<SgBuffer, Error> {
        let blocks = whole_blocks(self.block_len(lun).await?, data.len())?;
        let (_, b) = self
            .run(lun, write_cdb(lba, blocks), Data::Write(data))
            .await?;
        Ok(b.unwrap_or_default())
    }

    /// SYNCHRONIZE CACHE(10) of the whole LUN.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub async fn synchronize_cache(&self, lun: Lun) -> Result<(), Error> {
        self.run(lun, scsi::synchronize_cache_10(), Data::None)
            .await
            .map(|_| ())
    }

    /// Sends a NOP-Out ping and waits for the NOP-In; returns the echoed data.
    ///
    /// # Errors
    ///
    /// The connection's end, a rejected ping.
    pub async fn ping(&self, data: Vec<u8>) -> Result<Vec<u8>, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Ping(data, tx))?;
        rx.await.map_err(|_| self.refused(None))?
    }

    /// Logs out; the connection's task ends. Commands still outstanding complete first at the
    /// target.
    ///
    /// # Errors
    ///
    /// The connection ended otherwise than by the logout; the task had already ended.
    pub async fn logout(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Logout(tx))?;
        rx.await.map_err(|_| self.refused(None))?
    }
}

/// `try_read` as [`Read`], for the reader path: `WouldBlock` when nothing is there.
struct TryRead<'a>(&'a TcpStream);

impl Read for TryRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.0.try_read_vectored(bufs)
    }
}

/// Writes every part (one PDU's header, payload and trailer) with vectored writes.
async fn write_parts(stream: &TcpStream, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut bufs = &mut slices[..];
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        stream.writable().await?;
        match stream.try_write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sleeps until `at`, or forever.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The socket and the connection: what the task owns.
struct Link {
    stream: TcpStream,
    conn: Connection<NoOffload>,
    reader: SocketReader,
    scratch: Vec<u8>,
    last_rx: Instant,
}

impl Link {
    /// A new connection over `stream`, its login not started.
    fn new(stream: TcpStream, config: &ConnectionConfig) -> Result<Self, Error> {
        stream.set_nodelay(true)?;
        // Mutual CHAP: a fresh random challenge for every connection.
        let config = config
            .clone()
            .with_random_chap_challenge()
            .map_err(|e| io::Error::other(format!("random CHAP challenge: {e}")))?;
        Ok(Self {
            stream,
            conn: Connection::new(config, NoOffload),
            reader: SocketReader::new(64 * 1024),
            scratch: vec![0; 4096],
            last_rx: Instant::now(),
        })
    }

    /// Sends everything the connection has to send.
    async fn flush(&mut self) -> io::Result<()> {
        while let Some(t) = self.conn.poll_transmit() {
            write_parts(&self.stream, t.parts()).await?;
        }
        Ok(())
    }

    /// Reads what arrived (the socket was readable) until it would block: the reader path,
    /// or the copy path while the connection asks for it (login).
    fn read_now(&mut self) -> io::Result<()> {
        // Bounded: each round consumes bytes or stops.
        for _ in 0..256 {
            if self.conn.is_closed() {
                break;
            }
            let r = if self.conn.reader_path() {
                let mut src = TryRead(&self.stream);
                match self.reader.read_once(self.conn.engine_mut(), &mut src) {
                    Ok(n) => {
                        self.conn.handle_received(Ok(n));
                        Ok(n)
                    }
                    Err(RecvError::Engine(e)) => {
                        self.conn.handle_received(Err(e));
                        Ok(1)
                    }
                    Err(RecvError::Io(e)) => Err(e),
                    Err(e) => Err(io::Error::other(e.to_string())),
                }
            } else {
                match self.stream.try_read(&mut self.scratch) {
                    Ok(0) => {
                        self.conn.handle_received(Ok(0));
                        Ok(0)
                    }
                    Ok(n) => {
                        self.conn.handle_bytes(&self.scratch[..n]);
                        Ok(n)
                    }
                    Err(e) => Err(e),
                }
            };
            match r {
                Ok(0) => break,
                Ok(_) => self.last_rx = Instant::now(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Runs `bringup` to its end, with the silence timeout on top.
    async fn bring_up(&mut self, bringup: &mut Bringup, silence: Duration) -> Result<Ready, Error> {
        let result = loop {
            let now = Instant::now();
            self.conn.handle_timeout(now);
            bringup.handle_timeout(now);
            while let Some(e) = self.conn.poll_event() {
                // Other events (recovery steps, asynchronous messages) before full feature
                // phase concern nobody yet.
                let _ = bringup.handle_event(&mut self.conn, e);
            }
            if let Err(e) = self.flush().await {
                break Err(Error::Io(e));
            }
            if let Some(r) = bringup.poll() {
                break r.map_err(Error::from);
            }
            if let Some(end) = ended(&self.conn) {
                break Err(Error::Connection(end));
            }
            let silent_until = self.last_rx + silence;
            let wake = earliest([
                self.conn.poll_timeout(),
                bringup.poll_timeout(),
                Some(silent_until),
            ]);
            ::tokio::select! {
                r = self.stream.readable() => {
                    if let Err(e) = r.and_then(|()| self.read_now()) {
                        break Err(Error::Io(e));
                    }
                }
                () = sleep_until_opt(wake) => {
                    if Instant::now() >= silent_until {
                        break Err(timed_out(silence, bringup.waiting_for()));
                    }
                }
            }
        };
        if result.is_err() {
            bringup.abandon(&mut self.conn);
        }
        result
    }
}

/// The connection's task: the link (replaced on each reinstatement), the commands and who
/// waits for them, and the reinstatement policy shared with the blocking driver.
struct Task {
    /// Where reinstatements connect to.
    addr: SocketAddr,
    config: ConnectionConfig,
    options: Options,
    waiting: HashMap<CommandId, Waiter>,
    /// Commands waiting for a (new) connection, with their data.
    backlog: VecDeque<(Tracked, Data)>,
    logout: Option<oneshot::Sender<Result<(), Error>>>,
    /// Some handle is left.
    open: bool,
    /// Commands the connection's end failed (not retry-safe, or out of retries).
    failed_by_end: usize,
    /// The last session-level command id given.
    next_id: u64,
    policy: Reinstatement,
    shared: Arc<Shared>,
}

impl Task {
    /// Requests in, completions out; on an end the caller did not ask for, the session is
    /// reinstated; until the logout, the session is lost, or every handle is dropped.
    async fn run(mut self, mut link: Link, mut rx: mpsc::UnboundedReceiver<Request>) {
        loop {
            let end = self.serve(&mut link, &mut rx).await;
            let recover = self.options.reinstate && self.open && self.logout.is_none();
            self.sort_the_end(&end, recover);
            if !recover {
                return self.finish(
                    format!("the session's connection is over: {end}"),
                    Some(&end),
                    rx,
                );
            }
            // The target sees the old connection close before the new one logs in.
            drop(link);
            link = match self.reinstate(&mut rx, &end).await {
                Ok(link) => link,
                Err(reason) => {
                    return self.finish(format!("the session was lost: {reason}"), None, rx);
                }
            };
        }
    }

    /// Runs the current connection until it ends; returns why.
    async fn serve(
        &mut self,
        link: &mut Link,
        rx: &mut mpsc::UnboundedReceiver<Request>,
    ) -> ConnectionError {
        let silence = self.options.timeout;
        loop {
            let now = Instant::now();
            link.conn.handle_timeout(now);
            self.issue(link);
            if let Err(e) = link.flush().await {
                link.conn.fail(ConnectionError::Socket(format!(
                    "sending to the target: {e}"
                )));
            }
            while let Some(e) = link.conn.poll_event() {
                self.deliver(e);
            }
            if let Some(end) = ended(&link.conn) {
                return end;
            }
            let commands = self
                .waiting
                .values()
                .filter(|w| matches!(w, Waiter::Command(_)))
                .count();
            let silent_until = (commands > 0).then(|| link.last_rx + silence);
            if silent_until.is_some_and(|s| now >= s) {
                link.conn.fail(ConnectionError::Socket(format!(
                    "the target sent nothing for {} while {commands} command{} waited",
                    secs(silence),
                    if commands == 1 { "" } else { "s" }
                )));
                continue;
            }
            let wake = earliest([link.conn.poll_timeout(), silent_until]);
            ::tokio::select! {
                req = rx.recv(), if self.open => match req {
                    Some(req) => {
                        if self.waiting.is_empty() {
                            // An idle connection's silence is the pings' business; a
                            // command's starts now.
                            link.last_rx = link.last_rx.max(Instant::now());
                        }
                        self.handle(link, req);
                    }
                    None => {
                        // Every handle was dropped: nobody is left to answer.
                        self.open = false;
                        link.conn.close();
                    }
                },
                r = link.stream.readable() => {
                    if let Err(e) = r.and_then(|()| link.read_now()) {
                        link.conn.fail(ConnectionError::Socket(format!("receiving from the target: {e}")));
                    }
                }
                () = sleep_until_opt(wake) => {}
            }
        }
    }

    /// One request from a handle while the connection runs.
    fn handle(&mut self, link: &mut Link, req: Request) {
        let full = link.conn.phase() == Phase::FullFeature;
        match req {
            Request::Command(cmd, tx) if full => {
                self.queue(cmd, tx);
                self.issue(link);
            }
            Request::Ping(data, tx) if full => match link.conn.ping(data) {
                Ok(id) => {
                    self.waiting.insert(id, Waiter::Ping(tx));
                }
                Err(e) => {
                    let _ = tx.send(Err(Error::Connection(e)));
                }
            },
            Request::Logout(tx) if full => match link.conn.logout() {
                Ok(_) => self.logout = Some(tx),
                Err(e) => {
                    let _ = tx.send(Err(Error::Connection(e)));
                }
            },
            Request::Stats(tx) => {
                let _ = tx.send(link.conn.engine().stats());
            }
            other => {
                // Logging out: nothing new goes in.
                let end = ended(&link.conn).unwrap_or(ConnectionError::NotReady);
                refuse(other, &format!("the session's connection is over: {end}"));
            }
        }
    }

    /// A new command waits for the connection, with a session-level id.
    fn queue(&mut self, cmd: Command, tx: oneshot::Sender<Result<Completion, Error>>) {
        self.next_id += 1;
        let t = Tracked {
            id: self.next_id,
            lun: cmd.lun,
            cdb: cmd.cdb,
            kind: Kind::of(&cmd.data),
            tries: 0,
            tx,
        };
        self.backlog.push_back((t, cmd.data));
    }

    /// Issues the waiting commands on a connection in full feature phase (not while logging
    /// out).
    fn issue(&mut self, link: &mut Link) {
        if link.conn.phase() != Phase::FullFeature || self.logout.is_some() {
            return;
        }
        while let Some((t, data)) = self.backlog.pop_front() {
            let id = link.conn.submit(Command {
                lun: t.lun,
                cdb: t.cdb,
                data,
            });
            self.waiting.insert(id, Waiter::Command(t));
        }
    }

    /// Hands one connection event to whoever waits for it; a command the connection's end
    /// (or its task management) interrupted waits for the next connection when it may go
    /// out again.
    fn deliver(&mut self, e: Event) {
        match e {
            Event::Completed(c) => {
                let Some(Waiter::Command(mut t)) = self.waiting.remove(&c.id) else {
                    return;
                };
                let recovering = self.options.reinstate && self.open && self.logout.is_none();
                if let Err(e) = &c.result {
                    if recovering && should_reissue(&t.cdb, t.tries, e, self.options.max_retries) {
                        t.tries += 1;
                        let data = t.kind.data(c.buffer);
                        self.backlog.push_back((t, data));
                        return;
                    }
                    if recovering && matches!(e, CommandError::ConnectionLost(_)) {
                        self.failed_by_end += 1;
                    }
                }
                // A caller that stopped waiting dropped its buffer with its future.
                let _ = t.tx.send(Ok(Completion {
                    id: CommandId(t.id),
                    ..c
                }));
            }
            Event::Pong { id, data } => {
                if let Some(Waiter::Ping(tx)) = self.waiting.remove(&id) {
                    let _ = tx.send(Ok(data));
                }
            }
            Event::Failed { id, error } => {
                if let Some(Waiter::Ping(tx)) = self.waiting.remove(&id) {
                    let _ = tx.send(Err(Error::Command {
                        error,
                        buffer: None,
                    }));
                }
            }
            // The end (Event::Closed) is answered once the task has recorded it, so that a
            // request after the logout's answer is refused in the same words.
            // Recovery steps and asynchronous messages: the connection acts on them itself.
            _ => {}
        }
    }

    /// The connection ended (`end`): what still waits on it learns why. The connection
    /// completed every command it held, with its buffer; one it did not (none with this
    /// driver's backend) fails without. Pings fail with the end.
    fn sort_the_end(&mut self, end: &ConnectionError, recover: bool) {
        for (_, w) in self.waiting.drain() {
            match w {
                Waiter::Command(t) => {
                    self.failed_by_end += usize::from(recover);
                    let _ = t.tx.send(Ok(Completion {
                        id: CommandId(t.id),
                        result: Err(CommandError::ConnectionLost(Box::new(end.clone()))),
                        buffer: None,
                    }));
                }
                Waiter::Ping(tx) => {
                    let _ = tx.send(Err(Error::Connection(end.clone())));
                }
            }
        }
    }

    /// Reinstates the session after the unasked `end`, as the [`Reinstatement`] policy says;
    /// meanwhile new commands wait with the interrupted ones. `Err` with the reason when the
    /// session is lost (every waiting command has failed with it, its buffer back).
    async fn reinstate(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Request>,
        end: &ConnectionError,
    ) -> Result<Link, String> {
        let failed = std::mem::take(&mut self.failed_by_end);
        self.policy
            .on_lost(Instant::now(), end, self.backlog.len(), failed);
        loop {
            let next = self.policy.poll(Instant::now());
            self.publish();
            match next {
                Next::Wait(at) => {
                    ::tokio::select! {
                        req = rx.recv(), if self.open => match req {
                            Some(req) => self.handle_while_down(req, end),
                            None => self.open = false,
                        },
                        () = sleep_until(at.into()) => {}
                    }
                    if !self.open {
                        return Err(self.give_up(
                            "every handle of the session was dropped during its reinstatement"
                                .into(),
                        ));
                    }
                }
                Next::Attempt { limit, .. } => match self.attempt(limit).await {
                    Ok(link) => {
                        self.policy.reinstated(
                            Instant::now(),
                            self.backlog.len(),
                            link.conn.tsih(),
                        );
                        self.publish();
                        return Ok(link);
                    }
                    Err(f) => self.policy.attempt_failed(Instant::now(), f),
                },
                Next::GiveUp(reason) => return Err(self.give_up(reason)),
            }
        }
    }

    /// A request while the session is being reinstated: a command waits for the new
    /// connection; a ping or a logout is answered with the end.
    fn handle_while_down(&mut self, req: Request, end: &ConnectionError) {
        match req {
            Request::Command(cmd, tx) => {
                self.queue(cmd, tx);
            }
            Request::Ping(_, tx) => {
                let _ = tx.send(Err(Error::Connection(end.clone())));
            }
            Request::Logout(tx) => {
                let _ = tx.send(Err(Error::Connection(end.clone())));
            }
            Request::Stats(tx) => {
                // No connection, no engine: nothing counted yet.
                let _ = tx.send(Stats::default());
            }
        }
    }

    /// One reinstatement attempt within `limit`: a TCP connection, then the shared bring-up
    /// ([`Bringup`]): login (same ISID, TSIH 0), each LUN's unit attention taken and its
    /// known capacity checked.
    async fn attempt(&self, limit: Duration) -> Result<Link, Failure> {
        let started = Instant::now();
        let stream = match ::tokio::time::timeout(limit, TcpStream::connect(self.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(Failure::tcp(self.addr, e)),
            Err(_) => {
                return Err(Failure::Retry(
                    timed_out(
                        limit,
                        format!("the TCP connection to {} to open", self.addr),
                    )
                    .to_string(),
                ));
            }
        };
        let mut link =
            Link::new(stream, &self.config).map_err(|e| Failure::Retry(e.to_string()))?;
        let capacities = lock(&self.shared.capacities).clone();
        let mut bringup = crate::recovery::bringup(
            started,
            limit,
            &capacities,
            self.backlog.iter().map(|(t, _)| t.lun),
        );
        let result = match bringup.start(&mut link.conn) {
            Ok(()) => link.bring_up(&mut bringup, limit).await.map(|_| ()),
            Err(e) => Err(Error::from(e)),
        };
        match result {
            Ok(()) => Ok(link),
            Err(e) => {
                let _ = link.flush().await;
                Err(Failure::of_bringup(&e, bringup.logged_in()))
            }
        }
    }

    /// The session is lost: every waiting command fails with `reason`, its buffer back;
    /// reported. Returns the reason.
    fn give_up(&mut self, reason: String) -> String {
        let failed = self.backlog.len();
        for (t, data) in self.backlog.drain(..) {
            let _ = t.tx.send(Ok(Completion {
                id: CommandId(t.id),
                result: Err(CommandError::SessionLost(reason.clone())),
                buffer: data.into_buffer(),
            }));
        }
        self.policy.lost(reason.clone(), failed);
        self.publish();
        reason
    }

    /// Hands the policy's events to the handles.
    fn publish(&mut self) {
        let mut events = lock(&self.shared.events);
        while let Some(e) = self.policy.poll_event() {
            events.push(e);
        }
    }

    /// Over: the logout learns how it went (`end`, when the connection ended), and every
    /// later request is refused with `refusal`, its buffer back.
    fn finish(
        mut self,
        refusal: String,
        end: Option<&ConnectionError>,
        mut rx: mpsc::UnboundedReceiver<Request>,
    ) {
        *lock(&self.shared.refusal) = Some(refusal.clone());
        if let Some(tx) = self.logout.take() {
            let _ = tx.send(match end {
                Some(ConnectionError::LoggedOut) => Ok(()),
                Some(other) => Err(Error::Connection(other.clone())),
                None => Err(Error::Refused {
                    reason: refusal.clone(),
                    buffer: None,
                }),
            });
        }
        rx.close();
        while let Ok(req) = rx.try_recv() {
            refuse(req, &refusal);
        }
    }
}

/// Answers a request the session cannot take: why (`reason`), with the command's buffer.
fn refuse(req: Request, reason: &str) {
    let refused = |buffer| Error::Refused {
        reason: reason.to_string(),
        buffer,
    };
    match req {
        Request::Command(cmd, tx) => {
            let _ = tx.send(Err(refused(cmd.data.into_buffer())));
        }
        Request::Ping(_, tx) => {
            let _ = tx.send(Err(refused(None)));
        }
        Request::Logout(tx) => {
            let _ = tx.send(Err(refused(None)));
        }
        Request::Stats(_) => {}
    }
}
