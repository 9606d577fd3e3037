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
//! buffer back ([`Error::into_buffer`]), including the connection's end: when the target closes
//! or resets the connection, every outstanding command fails with
//! [`CommandError::ConnectionLost`] and its buffer.
//!
//! Not here (yet): session reinstatement. The blocking driver reinstates the session when the
//! connection ends; this driver fails every outstanding command with its buffer and refuses
//! later ones ([`Error::Refused`], buffer back): connect again. Of [`Options`], `timeout` and
//! `unit_attention_retries` apply; the reinstatement settings and `capture` do not.
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

use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut, Read};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ::tokio::net::{TcpStream, ToSocketAddrs};
use ::tokio::sync::{mpsc, oneshot};
use ::tokio::time::sleep_until;
use ulp_ddp_core::timer::earliest;
use ulp_ddp_core::{NoOffload, RecvError, SansIo, SgBuffer, SocketReader, Stats};

use crate::blocking::session::{Kind, read_cdb, write_cdb};
use crate::blocking::{
    Error, Options, Try, ended, judge, read_back, secs, timed_out, whole_blocks,
};
use crate::bringup::{Bringup, Ready};
use crate::connection::{
    Command, CommandError, CommandId, Completion, Connection, ConnectionConfig, ConnectionError,
    Data, Event, Phase, ScsiOutcome,
};
use crate::keys::Params;
use crate::scsi::{self, Capacity, Inquiry};
use crate::wire::Lun;

/// What a handle asks the connection's task for.
enum Request {
    Command(Command, oneshot::Sender<Result<Completion, Error>>),
    Ping(Vec<u8>, oneshot::Sender<Result<Vec<u8>, Error>>),
    Logout(oneshot::Sender<Result<(), Error>>),
    Stats(oneshot::Sender<Stats>),
}

/// Who waits for a connection-level id.
enum Waiter {
    Command(oneshot::Sender<Result<Completion, Error>>),
    Ping(oneshot::Sender<Result<Vec<u8>, Error>>),
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
    /// Why the connection ended, once its task did.
    end: Arc<Mutex<Option<ConnectionError>>>,
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
        stream.set_nodelay(true)?;
        // Mutual CHAP: a fresh random challenge for every connection.
        let config = config
            .with_random_chap_challenge()
            .map_err(|e| io::Error::other(format!("random CHAP challenge: {e}")))?;
        let mut link = Link {
            stream,
            conn: Connection::new(config, NoOffload),
            reader: SocketReader::new(64 * 1024),
            scratch: vec![0; 4096],
            last_rx: Instant::now(),
        };
        let mut bringup = Bringup::new(Instant::now(), options.timeout);
        bringup.start(&mut link.conn)?;
        link.bring_up(&mut bringup, options.timeout).await?;
        let params = link.conn.params().clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let end = Arc::new(Mutex::new(None));
        ::tokio::spawn(link.run(rx, options.timeout, Arc::clone(&end)));
        Ok(Self {
            inner: Arc::new(Inner {
                tx,
                options,
                params,
                block_lens: Mutex::new(HashMap::new()),
                end,
            }),
        })
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
        let end = self
            .inner
            .end
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or(ConnectionError::PeerClosed);
        Error::Refused {
            reason: format!("the session's connection is over: {end}"),
            buffer,
        }
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

    fn block_lens(&self) -> std::sync::MutexGuard<'_, HashMap<Lun, u32>> {
        self.inner
            .block_lens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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

    /// The connection's task: requests in, completions out, until the connection ends or
    /// every handle is dropped.
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Request>,
        silence: Duration,
        end_out: Arc<Mutex<Option<ConnectionError>>>,
    ) {
        let mut waiting: HashMap<CommandId, Waiter> = HashMap::new();
        let mut logout: Option<oneshot::Sender<Result<(), Error>>> = None;
        let mut open = true;
        loop {
            let now = Instant::now();
            self.conn.handle_timeout(now);
            if let Err(e) = self.flush().await {
                self.conn.fail(ConnectionError::Socket(format!(
                    "sending to the target: {e}"
                )));
            }
            while let Some(e) = self.conn.poll_event() {
                deliver(e, &mut waiting);
            }
            if self.conn.is_closed() {
                break;
            }
            let commands = waiting
                .values()
                .filter(|w| matches!(w, Waiter::Command(_)))
                .count();
            let silent_until = (commands > 0).then(|| self.last_rx + silence);
            if silent_until.is_some_and(|s| now >= s) {
                self.conn.fail(ConnectionError::Socket(format!(
                    "the target sent nothing for {} while {commands} command{} waited",
                    secs(silence),
                    if commands == 1 { "" } else { "s" }
                )));
                continue;
            }
            let wake = earliest([self.conn.poll_timeout(), silent_until]);
            ::tokio::select! {
                req = rx.recv(), if open => match req {
                    Some(req) => {
                        if waiting.is_empty() {
                            // An idle connection's silence is the pings' business; a
                            // command's starts now.
                            self.last_rx = self.last_rx.max(Instant::now());
                        }
                        self.handle(req, &mut waiting, &mut logout);
                    }
                    None => {
                        // Every handle was dropped: nobody is left to answer.
                        open = false;
                        self.conn.close();
                    }
                },
                r = self.stream.readable() => {
                    if let Err(e) = r.and_then(|()| self.read_now()) {
                        self.conn.fail(ConnectionError::Socket(format!("receiving from the target: {e}")));
                    }
                }
                () = sleep_until_opt(wake) => {}
            }
        }
        // Over: whatever still waits learns why, with its buffer where the connection
        // returned one (it completed every command it held before closing).
        let end = ended(&self.conn).unwrap_or(ConnectionError::PeerClosed);
        *end_out.lock().unwrap_or_else(PoisonError::into_inner) = Some(end.clone());
        for (id, w) in waiting.drain() {
            match w {
                Waiter::Command(tx) => {
                    let _ = tx.send(Ok(Completion {
                        id,
                        result: Err(CommandError::ConnectionLost(Box::new(end.clone()))),
                        buffer: None,
                    }));
                }
                Waiter::Ping(tx) => {
                    let _ = tx.send(Err(Error::Connection(end.clone())));
                }
            }
        }
        if let Some(tx) = logout.take() {
            let _ = tx.send(logout_result(&end));
        }
        rx.close();
        while let Ok(req) = rx.try_recv() {
            refuse(req, &end);
        }
    }

    /// One request from a handle.
    fn handle(
        &mut self,
        req: Request,
        waiting: &mut HashMap<CommandId, Waiter>,
        logout: &mut Option<oneshot::Sender<Result<(), Error>>>,
    ) {
        match req {
            Request::Command(cmd, tx) if self.conn.phase() == Phase::FullFeature => {
                let id = self.conn.submit(cmd);
                waiting.insert(id, Waiter::Command(tx));
            }
            Request::Ping(data, tx) if self.conn.phase() == Phase::FullFeature => {
                match self.conn.ping(data) {
                    Ok(id) => {
                        waiting.insert(id, Waiter::Ping(tx));
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Error::Connection(e)));
                    }
                }
            }
            Request::Logout(tx) if self.conn.phase() == Phase::FullFeature => {
                match self.conn.logout() {
                    Ok(_) => *logout = Some(tx),
                    Err(e) => {
                        let _ = tx.send(Err(Error::Connection(e)));
                    }
                }
            }
            Request::Stats(tx) => {
                let _ = tx.send(self.conn.engine().stats());
            }
            other => {
                // Logging out: nothing new goes in.
                let end = ended(&self.conn).unwrap_or(ConnectionError::NotReady);
                refuse(other, &end);
            }
        }
    }
}

/// Hands one connection event to whoever waits for it.
fn deliver(e: Event, waiting: &mut HashMap<CommandId, Waiter>) {
    match e {
        Event::Completed(c) => {
            if let Some(Waiter::Command(tx)) = waiting.remove(&c.id) {
                // A caller that stopped waiting dropped its buffer with its future.
                let _ = tx.send(Ok(c));
            }
        }
        Event::Pong { id, data } => {
            if let Some(Waiter::Ping(tx)) = waiting.remove(&id) {
                let _ = tx.send(Ok(data));
            }
        }
        Event::Failed { id, error } => {
            if let Some(Waiter::Ping(tx)) = waiting.remove(&id) {
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

fn logout_result(end: &ConnectionError) -> Result<(), Error> {
    match end {
        ConnectionError::LoggedOut => Ok(()),
        other => Err(Error::Connection(other.clone())),
    }
}

/// Answers a request the connection cannot take: why, with the command's buffer.
fn refuse(req: Request, end: &ConnectionError) {
    let reason = format!("the session's connection is over: {end}");
    match req {
        Request::Command(cmd, tx) => {
            let _ = tx.send(Err(Error::Refused {
                reason,
                buffer: cmd.data.into_buffer(),
            }));
        }
        Request::Ping(_, tx) => {
            let _ = tx.send(Err(Error::Refused {
                reason,
                buffer: None,
            }));
        }
        Request::Logout(tx) => {
            let _ = tx.send(Err(Error::Refused {
                reason,
                buffer: None,
            }));
        }
        Request::Stats(_) => {}
    }
}
