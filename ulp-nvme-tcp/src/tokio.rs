//! The tokio driver (feature `tokio`): [`Controller`], an admin queue and N I/O queues over
//! `tokio::net::TcpStream`, each queue driven by its own task, the same sans-IO
//! [`Connection`](crate::Connection)s and the same [`bringup`] steps as the
//! blocking driver.
//!
//! ```no_run
//! # async fn run() -> Result<(), ulp_nvme_tcp::blocking::Error> {
//! use ulp_nvme_tcp::tokio::{Controller, Options};
//! use ulp_nvme_tcp::SgBuffer;
//!
//! let ctrl = Controller::connect("127.0.0.1:4420", &Options::new("nqn.2024-01.io.example:disk")).await?;
//! let buffer = ctrl.read(0, SgBuffer::zeroed(1 << 20)).await?; // the data lands in it
//! assert_eq!(buffer.len(), 1 << 20);
//! ctrl.close().await?; // CC.SHN, CSTS.SHST
//! # Ok(()) }
//! ```
//!
//! - **Concurrency**: `Controller` is a cheap handle (`Clone`); commands from any number of
//!   tasks go round-robin to the I/O queues, each queue's task submitting as many as it has
//!   CIDs and keeping the rest in order. Transfers larger than the controller takes in one
//!   command are split over several commands (and queues) and completed as one.
//! - **Payload in place**: when the socket is readable, the queue's task reads through the
//!   core's reader path ([`SocketReader`] over `TcpStream::try_read`), so C2HData payload
//!   lands straight in the command's buffer, as with the blocking driver.
//! - **Time**: each task sleeps no later than its connection's `poll_timeout()`
//!   (`tokio::time::sleep_until`), so Keep Alive goes out on the admin queue every half KATO
//!   whatever the caller does, and command deadlines (`io_timeout`) are seen.
//! - **Recovery**, as the blocking driver's and Linux's NVMe/TCP host, deciding through the same
//!   sans-IO [`crate::recovery`] policy: a queue that ends (the controller closed
//!   it, a violation, Keep Alive unanswered, a command past `io_timeout`, which resets as
//!   Linux's nvme-tcp does, without an Abort) ends the association: every queue is closed and
//!   every command it held comes back with its buffer. A supervisor task reconnects every
//!   `reconnect_delay` (tokio's clock), running the same bring-up (admin and I/O queues) on new
//!   sockets, and issues again what was not completed (up to `max_retries` times, as statuses
//!   without DNR); commands sent meanwhile wait in their queue's channel. Not back within
//!   `ctrl_loss_tmo`, every outstanding command fails with [`Error::Lost`] naming it, its
//!   buffer back, and new commands are refused ([`Error::Refused`]). [`Controller::take_events`]
//!   reports each step as the blocking driver's [`ControllerEvent`]s.
//! - **TLS** (features `tokio` + `tls`): with [`Options::tls`], every queue's connection
//!   (reconnects too) runs the TLS 1.3 PSK handshake (`ulp_tls::PskClient::connect_async`)
//!   before ICReq, failing with [`Error::Tls`] in the blocking driver's words; the reader path
//!   is the same, OpenSSL decrypting into the slice it hands (the command's buffer), and a
//!   queue waits on its socket only when OpenSSL holds no decrypted bytes.
//! - **Failures**: every buffer comes back, in the error ([`Error::into_buffer`]).
//! - **Asynchronous events**: the admin queue keeps one Asynchronous Event Request
//!   outstanding (asked again on every association); an event is reported
//!   ([`ControllerEvent::AsyncEvent`]), the log page it names read (which re-arms it), and a
//!   new request sent, as the blocking driver does.
//! - **Not here** (the blocking driver has it): Abort before the reset. A reconnect that
//!   grants a different number of I/O queues gives up (as a changed namespace does in both
//!   drivers).

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::tokio::net::{TcpStream, ToSocketAddrs, lookup_host};
use ::tokio::sync::{mpsc, oneshot, watch};
use ::tokio::task::JoinHandle;
use ulp_ddp_core::timer::earliest;
use ulp_ddp_core::{DdpBackend, NoOffload, QueueId, RecvError, SansIo, SgBuffer, SocketReader};

use crate::blocking::timed_out;
pub use crate::blocking::{ControllerEvent, Error};
use crate::bringup::{self, Action, AdminBringup, IoQueueBringup, Shutdown, Steps};
use crate::connection::{Completion, Data, Event};
use crate::nvme::{self, ControllerInfo, NamespaceInfo, Status};
pub use crate::options::Options;
use crate::recovery::{self, Next, Reconnect};
use crate::wire::capsule_cmd::SQE_LEN;

/// PDUs of at most this many bytes are gathered and sent together.
const GATHER_MAX: usize = 512;

/// A controller driven by tokio tasks; see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Controller {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    options: Options,
    found: bringup::Association,
    /// The controller id of the current association.
    cntlid: Arc<AtomicU16>,
    admin: mpsc::Sender<Msg>,
    io: Vec<mpsc::Sender<Msg>>,
    next: AtomicUsize,
    /// Why the controller ended (given up after `ctrl_loss_tmo`, or closed), once it did.
    ended: Arc<watch::Sender<Option<Ended>>>,
    keep_alives: Arc<AtomicU64>,
    /// What recovery did, not taken yet.
    events: Arc<Mutex<Vec<ControllerEvent>>>,
    reconnects: Arc<AtomicU64>,
    /// The task that runs the queues' tasks and reconnects them.
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

/// A command for a queue's task.
#[derive(Debug)]
struct Request {
    sqe: [u8; SQE_LEN],
    data: Data,
    reply: oneshot::Sender<Outcome>,
    /// Times it was issued again (after a loss, or a status without DNR).
    tries: u8,
}

/// A command issued on a queue: what it takes to issue it again.
#[derive(Debug)]
struct Issued {
    sqe: [u8; SQE_LEN],
    kind: Kind,
    reply: oneshot::Sender<Outcome>,
    tries: u8,
}

impl Issued {
    fn request(self, buffer: Option<SgBuffer>) -> Request {
        Request {
            sqe: self.sqe,
            data: self.kind.data(buffer),
            reply: self.reply,
            tries: self.tries,
        }
    }
}

/// What a queue's task answers.
#[derive(Debug)]
enum Outcome {
    Done(Completion),
    Failed {
        reason: String,
        buffer: Option<SgBuffer>,
    },
}

/// Why the controller ended.
#[derive(Clone, Debug)]
struct Ended {
    reason: String,
    /// By [`Controller::close`] (else given up after `ctrl_loss_tmo`).
    by_close: bool,
}

#[derive(Debug)]
enum Msg {
    Command(Request),
    /// Finish what is outstanding, then end (I/O queues, at close).
    Finish(oneshot::Sender<()>),
    /// CC.SHN and CSTS.SHST, then end (the admin queue, at close).
    Shutdown(oneshot::Sender<Result<(), Error>>),
}

/// How a queue's task ended: what it hands to the next association.
#[derive(Debug)]
struct QueueEnd {
    rx: mpsc::Receiver<Msg>,
    /// Commands issued and aborted by the teardown, their buffers back.
    aborted: Vec<Request>,
    /// Commands not issued yet.
    unsent: Vec<Request>,
    finish: Option<oneshot::Sender<()>>,
    /// Why the association was lost (`None`: the task ended cleanly).
    lost: Option<String>,
}

/// One association's queues, as the bring-up leaves them.
struct Association<B: DdpBackend> {
    admin: Queue<B>,
    io: Vec<Queue<B>>,
    found: bringup::Association,
}

/// Brings an association up: the admin queue ([`AdminBringup`]), then each I/O queue
/// ([`IoQueueBringup`]). Backend queue ids are `generation << 16 | qid`, as the blocking
/// driver's, so that a reconnect's queues do not clash with those they replace.
async fn bring_up<B: DdpBackend, F: FnMut(QueueId) -> B>(
    addr: SocketAddr,
    options: &Options,
    backend: &mut F,
    generation: u32,
) -> Result<Association<B>, Error> {
    let t = options.timeout;
    let queue_id = |qid: u16| QueueId((generation << 16) | u32::from(qid));
    let admin_cfg = bringup::admin_config(options, queue_id(0));
    let tls = options.tls.as_ref();
    let mut admin = Queue::connect(addr, backend(queue_id(0)), admin_cfg, t, tls).await?;
    let found = admin.drive(&mut AdminBringup::new(options), t).await?;
    let mut io = Vec::with_capacity(usize::from(found.io_queues));
    for qid in 1..=found.io_queues {
        let depth = found.queue_depth;
        let cfg = bringup::io_config(options, queue_id(qid), qid, depth);
        let mut q = Queue::connect(addr, backend(queue_id(qid)), cfg, t, tls).await?;
        q.drive(
            &mut IoQueueBringup::new(options, qid, depth, found.cntlid),
            t,
        )
        .await?;
        q.conn.set_in_capsule_limit(found.info.in_capsule_limit());
        io.push(q);
    }
    Ok(Association { admin, io, found })
}

impl Controller {
    /// Connects with the default backend ([`NoOffload`]: payload still read in place).
    ///
    /// # Errors
    ///
    /// As [`connect_with`](Self::connect_with).
    pub async fn connect(addr: impl ToSocketAddrs, options: &Options) -> Result<Self, Error> {
        Self::connect_with(addr, options, |_| NoOffload).await
    }

    /// Connects the admin queue and brings it up ([`AdminBringup`]: Connect, CC.EN and
    /// CSTS.RDY, Identify, Number of Queues), then each I/O queue ([`IoQueueBringup`]), and
    /// starts one task per queue. `backend` makes each queue's backend handle (called with
    /// the queue's backend id).
    ///
    /// # Errors
    ///
    /// Any step's failure, in words naming it.
    pub async fn connect_with<B, F>(
        addr: impl ToSocketAddrs,
        options: &Options,
        mut backend: F,
    ) -> Result<Self, Error>
    where
        B: DdpBackend + Send + 'static,
        F: FnMut(QueueId) -> B + Send + 'static,
    {
        let addr = lookup_host(addr)
            .await?
            .next()
            .ok_or_else(|| Error::Setup("the address resolves to nothing".into()))?;
        let a = bring_up(addr, options, &mut backend, 0).await?;
        let depth = usize::from(a.found.queue_depth);
        let (admin_tx, admin_rx) = mpsc::channel(4);
        let (senders, receivers): (Vec<_>, Vec<_>) =
            a.io.iter().map(|_| mpsc::channel(depth * 2)).unzip();
        let (ended, _) = watch::channel(None);
        let shared = Shared {
            options: options.clone(),
            found: a.found.clone(),
            cntlid: Arc::new(AtomicU16::new(a.found.cntlid)),
            admin: admin_tx,
            io: senders,
            next: AtomicUsize::new(0),
            ended: Arc::new(ended),
            keep_alives: Arc::new(AtomicU64::new(0)),
            events: Arc::default(),
            reconnects: Arc::new(AtomicU64::new(0)),
            supervisor: Mutex::new(None),
        };
        let supervisor = Supervisor {
            addr,
            options: options.clone(),
            backend,
            ns: a.found.ns,
            cntlid: Arc::clone(&shared.cntlid),
            ended: Arc::clone(&shared.ended),
            keep_alives: Arc::clone(&shared.keep_alives),
            events: Arc::clone(&shared.events),
            reconnects: Arc::clone(&shared.reconnects),
            _backend: std::marker::PhantomData,
        };
        let mut rxs = vec![admin_rx];
        rxs.extend(receivers);
        let mut queues = vec![a.admin];
        queues.extend(a.io);
        let handle = ::tokio::spawn(supervisor.run(queues, rxs));
        *lock(&shared.supervisor) = Some(handle);
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// Identify Controller, as parsed.
    pub fn info(&self) -> &ControllerInfo {
        &self.shared.found.info
    }

    /// The I/O namespace.
    pub fn namespace(&self) -> NamespaceInfo {
        self.shared.found.ns
    }

    /// The controller id the admin Connect returned (the last reconnect's).
    pub fn cntlid(&self) -> u16 {
        self.shared.cntlid.load(Ordering::Relaxed)
    }

    /// How many times the controller was reconnected.
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    /// What recovery did since the last call, for the caller to log: the same
    /// [`ControllerEvent`]s, in the same words, as the blocking driver's
    /// ([`Reset`](ControllerEvent::Reset), [`Reconnected`](ControllerEvent::Reconnected),
    /// [`Lost`](ControllerEvent::Lost), [`AsyncEvent`](ControllerEvent::AsyncEvent)).
    pub fn take_events(&self) -> Vec<ControllerEvent> {
        std::mem::take(&mut *lock(&self.shared.events))
    }

    /// How many I/O queues (tasks) there are: as many as the controller granted of
    /// [`Options::queues`].
    pub fn io_queues(&self) -> usize {
        self.shared.io.len()
    }

    /// Keep Alive commands the admin queue has sent.
    pub fn keep_alives(&self) -> u64 {
        self.shared.keep_alives.load(Ordering::Relaxed)
    }

    /// The most bytes one NVMe command carries (larger transfers are split).
    pub fn max_transfer(&self) -> u64 {
        let f = &self.shared.found;
        bringup::max_transfer(&f.info, f.cap, f.ns)
    }

    /// Why the controller ended, once it did: lost (not back within `ctrl_loss_tmo`; new
    /// commands are refused) or closed.
    pub fn ended(&self) -> Option<String> {
        self.shared
            .ended
            .borrow()
            .as_ref()
            .map(|e| e.reason.clone())
    }

    /// Reads `buffer.len()` bytes at block `slba` into `buffer` and hands it back with the
    /// data in it.
    ///
    /// # Errors
    ///
    /// A length that is not a whole number of blocks ([`Error::Refused`]), a failed status
    /// ([`Error::Status`]), a controller lost while the command was outstanding (not back
    /// within `ctrl_loss_tmo`, or the command failed `max_retries` times, [`Error::Lost`]) or
    /// before it ([`Error::Refused`]), or closed ([`Error::Lost`]); each hands the buffer back
    /// ([`Error::into_buffer`]).
    pub async fn read(&self, slba: u64, buffer: SgBuffer) -> Result<SgBuffer, Error> {
        let b = self.transfer(Kind::Read, slba, Some(buffer)).await?;
        Ok(b.unwrap_or_default())
    }

    /// Writes `data` at block `slba` and hands the buffer back.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    pub async fn write(&self, slba: u64, data: SgBuffer) -> Result<SgBuffer, Error> {
        let b = self.transfer(Kind::Write, slba, Some(data)).await?;
        Ok(b.unwrap_or_default())
    }

    /// Flushes the namespace.
    ///
    /// # Errors
    ///
    /// A failed status, or an ended controller.
    pub async fn flush(&self) -> Result<(), Error> {
        self.transfer(Kind::Flush, 0, None).await.map(|_| ())
    }

    /// Shuts the controller down cleanly, as the blocking driver does: the I/O queues finish
    /// what is outstanding and end, then CC.SHN and CSTS.SHST polled until the controller
    /// reports shutdown complete (at most [`Options::timeout`]). Commands sent after (from
    /// other handles) fail with [`Error::Lost`].
    ///
    /// # Errors
    ///
    /// The admin queue's failures, or a controller that does not finish its shutdown in time.
    pub async fn close(self) -> Result<(), Error> {
        for q in &self.shared.io {
            let (tx, rx) = oneshot::channel();
            if q.send(Msg::Finish(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
        let mut lost = false;
        self.shared.ended.send_if_modified(|e| {
            lost = e.is_some();
            e.get_or_insert_with(|| Ended {
                reason: "the controller was closed".into(),
                by_close: true,
            });
            !lost
        });
        // A lost controller has nothing to shut down (as the blocking driver's close).
        let result = if lost {
            Ok(())
        } else {
            let (tx, rx) = oneshot::channel();
            match self.shared.admin.send(Msg::Shutdown(tx)).await {
                Ok(()) => rx.await.unwrap_or_else(|_| Err(ended_admin())),
                Err(_) => Err(ended_admin()),
            }
        };
        let supervisor = lock(&self.shared.supervisor).take();
        if let Some(task) = supervisor {
            let _ = task.await;
        }
        result
    }

    async fn transfer(
        &self,
        kind: Kind,
        slba: u64,
        buffer: Option<SgBuffer>,
    ) -> Result<Option<SgBuffer>, Error> {
        let command = kind.name();
        let len = buffer.as_ref().map_or(0, SgBuffer::len);
        let ended = self.shared.ended.borrow().clone();
        match ended {
            Some(Ended {
                reason,
                by_close: false,
            }) => {
                return Err(Error::Refused {
                    reason: format!("{command}: the controller was lost: {reason}"),
                    buffer,
                });
            }
            Some(Ended { reason, .. }) => {
                return Err(Error::Lost {
                    reason: format!("{command} of {len} bytes at LBA {slba}: {reason}"),
                    buffer,
                });
            }
            None => {}
        }
        let bs = u64::from(self.shared.found.ns.block_size.max(1));
        if kind != Kind::Flush && (len == 0 || !len.is_multiple_of(bs)) {
            return Err(Error::Refused {
                reason: format!("{command} of {len} bytes: not a whole number of {bs}-byte blocks"),
                buffer,
            });
        }
        let max = self.max_transfer();
        let pieces = match buffer {
            Some(b) if b.len() > max => b.split(max, kind == Kind::Write),
            Some(b) => vec![b],
            None => Vec::new(),
        };
        let nsid = self.shared.options.nsid;
        let mut waits = Vec::with_capacity(pieces.len().max(1));
        let mut lba = slba;
        let send = |sqe, data| {
            let (reply, rx) = oneshot::channel();
            let q = &self.shared.io
                [self.shared.next.fetch_add(1, Ordering::Relaxed) % self.shared.io.len().max(1)];
            let msg = Msg::Command(Request {
                sqe,
                data,
                reply,
                tries: 0,
            });
            async move {
                match q.send(msg).await {
                    Ok(()) => Ok(rx),
                    Err(mpsc::error::SendError(m)) => Err(m),
                }
            }
        };
        if pieces.is_empty() {
            waits.push(send(nvme::flush(nsid), Data::None).await);
        }
        for piece in pieces {
            let blocks = (piece.len() / bs) as u32;
            let (sqe, data) = match kind {
                Kind::Read => (nvme::read(nsid, lba, blocks), Data::Read(piece)),
                _ => (nvme::write(nsid, lba, blocks), Data::Write(piece)),
            };
            lba += u64::from(blocks);
            waits.push(send(sqe, data).await);
        }
        let mut buffers = Vec::with_capacity(waits.len());
        let mut error = None;
        for wait in waits {
            let outcome = match wait {
                Ok(rx) => rx.await.unwrap_or_else(|_| Outcome::Failed {
                    reason: "its queue's task ended without answering".into(),
                    buffer: None,
                }),
                Err(Msg::Command(r)) => Outcome::Failed {
                    reason: self
                        .ended()
                        .unwrap_or_else(|| "its I/O queue has ended".into()),
                    buffer: r.data.into_buffer(),
                },
                Err(_) => Outcome::Failed {
                    reason: "its I/O queue has ended".into(),
                    buffer: None,
                },
            };
            match outcome {
                Outcome::Done(c) => {
                    if !c.status.is_success() && error.is_none() {
                        error = Some(Error::Status {
                            command,
                            cid: c.cid,
                            status: c.status,
                            buffer: None,
                        });
                    }
                    buffers.extend(c.buffer);
                }
                Outcome::Failed { reason, buffer } => {
                    error.get_or_insert_with(|| Error::Lost {
                        reason: format!("{command} of {len} bytes at LBA {slba}: {reason}"),
                        buffer: None,
                    });
                    buffers.extend(buffer);
                }
            }
        }
        let buffer = match buffers.len() {
            0 => None,
            1 => buffers.pop(),
            _ => Some(SgBuffer::join(buffers)),
        };
        match error {
            None => Ok(buffer),
            Some(Error::Status {
                command,
                cid,
                status,
                ..
            }) => Err(Error::Status {
                command,
                cid,
                status,
                buffer,
            }),
            Some(Error::Lost { reason, .. }) => Err(Error::Lost { reason, buffer }),
            Some(other) => Err(other),
        }
    }
}

fn ended_admin() -> Error {
    Error::Setup("the admin queue ended before the shutdown".into())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Kind {
    Read,
    Write,
    Flush,
}

impl Kind {
    fn of(data: &Data) -> Self {
        match data {
            Data::Read(_) => Self::Read,
            Data::Write(_) => Self::Write,
            Data::None => Self::Flush,
        }
    }

    fn data(self, buffer: Option<SgBuffer>) -> Data {
        match (self, buffer) {
            (Self::Read, Some(b)) => Data::Read(b),
            (Self::Write, Some(b)) => Data::Write(b),
            _ => Data::None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Read => "Read",
            Self::Write => "Write",
            Self::Flush => "Flush",
        }
    }
}

/// `TcpStream::try_read` as `std::io::Read`, for the core's reader path (`WouldBlock` when
/// nothing is there, which also clears tokio's readiness).
struct TryRead<'a>(&'a TcpStream);

impl Read for TryRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        self.0.try_read_vectored(bufs)
    }
}

/// One TLS session's `poll_read` as `std::io::Read` for the core's reader path: OpenSSL
/// decrypts straight into the slice the reader hands (the command's buffer for payload).
/// Polled once without a waker to wake (`Pending`, nothing decryptable yet, is `WouldBlock`,
/// and tokio's readiness of the socket is cleared as by `try_read`); the queue's task then
/// waits on the socket's readiness itself ([`QueueStream::readable`]).
#[cfg(feature = "tls")]
struct TryReadTls<'a>(&'a mut ulp_tls::AsyncTlsStream<TcpStream>);

#[cfg(feature = "tls")]
impl Read for TryReadTls<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use ::tokio::io::{AsyncRead, ReadBuf};
        use std::task::{Context, Poll, Waker};
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = ReadBuf::new(buf);
        match std::pin::Pin::new(&mut *self.0).poll_read(&mut cx, &mut out) {
            Poll::Ready(Ok(())) => Ok(out.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// One queue's byte stream: the TCP connection, or (feature `tls`) NVMe TP 8011's secure
/// channel, a TLS 1.3 session with a PSK over it.
enum QueueStream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<ulp_tls::AsyncTlsStream<TcpStream>>),
}

impl QueueStream {
    /// TCP connect, and the TLS handshake when `tls` is given, each within `t`.
    async fn connect(
        addr: SocketAddr,
        qid: u16,
        t: Duration,
        tls: Option<&crate::psk::TlsPsk>,
    ) -> Result<Self, Error> {
        let tcp = match ::tokio::time::timeout(t, TcpStream::connect(addr)).await {
            Ok(s) => s?,
            Err(_) => return Err(timed_out(t, format!("the TCP connection to {addr}"))),
        };
        tcp.set_nodelay(true)?;
        let Some(psk) = tls else {
            return Ok(Self::Plain(tcp));
        };
        let failed = |reason: String| crate::blocking::stream::tls_failed(qid, addr, &reason);
        #[cfg(feature = "tls")]
        {
            let client = crate::blocking::stream::client(psk).map_err(failed)?;
            match ::tokio::time::timeout(t, client.connect_async(tcp)).await {
                Ok(Ok(s)) => Ok(Self::Tls(Box::new(s))),
                Ok(Err(e)) => Err(failed(e.to_string())),
                Err(_) => Err(failed(ulp_tls::HandshakeError::TimedOut.to_string())),
            }
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = psk;
            Err(failed(crate::blocking::stream::NO_TLS.into()))
        }
    }

    /// Waits until a read has something to take: bytes in the socket, or (TLS) plaintext the
    /// library already holds, which the socket's readiness would not show.
    async fn readable(&self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.readable().await,
            #[cfg(feature = "tls")]
            Self::Tls(s) if s.pending() > 0 => Ok(()),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.get_ref().readable().await,
        }
    }

    /// One read through the core's reader path (payload straight into the command's buffer).
    fn read_once<B: DdpBackend>(
        &mut self,
        reader: &mut SocketReader,
        conn: &mut crate::Connection<B>,
    ) -> Result<usize, RecvError<<crate::NvmeTcpHost as ulp_ddp_core::Protocol>::Error>> {
        match self {
            Self::Plain(s) => reader.read_once(conn.engine_mut(), &mut TryRead(s)),
            #[cfg(feature = "tls")]
            Self::Tls(s) => reader.read_once(conn.engine_mut(), &mut TryReadTls(s)),
        }
    }

    /// Writes every slice in order, waiting while the socket is full; over TLS, in as few
    /// records as they fit.
    async fn write_all(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let mut storage: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let mut slices = &mut storage[..];
        match self {
            Self::Plain(stream) => {
                while !slices.is_empty() {
                    stream.writable().await?;
                    match stream.try_write_vectored(slices) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => IoSlice::advance_slices(&mut slices, n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            #[cfg(feature = "tls")]
            Self::Tls(tls) => {
                use ::tokio::io::AsyncWrite;
                let mut gathered = Vec::new();
                while !slices.is_empty() {
                    let record = crate::blocking::stream::next_record(slices, &mut gathered);
                    if record.is_empty() {
                        break;
                    }
                    let n = std::future::poll_fn(|cx| {
                        std::pin::Pin::new(&mut **tls).poll_write(cx, record)
                    })
                    .await?;
                    if n == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                    IoSlice::advance_slices(&mut slices, n);
                }
            }
        }
        Ok(())
    }
}

/// One queue: its sans-IO connection and its byte stream.
struct Queue<B: DdpBackend> {
    conn: crate::Connection<B>,
    stream: QueueStream,
    reader: SocketReader,
    gathered: Vec<u8>,
}

impl<B: DdpBackend> Queue<B> {
    /// TCP connect, the TLS handshake when `tls` is given, ICReq, ICResp, each within `t`.
    async fn connect(
        addr: SocketAddr,
        backend: B,
        config: crate::ConnectionConfig,
        t: Duration,
        tls: Option<&crate::psk::TlsPsk>,
    ) -> Result<Self, Error> {
        let stream = QueueStream::connect(addr, config.qid, t, tls).await?;
        let mut q = Self {
            conn: crate::Connection::new(config, backend),
            stream,
            reader: SocketReader::new(4096),
            gathered: Vec::new(),
        };
        q.wait(None, t).await?;
        Ok(q)
    }

    /// The queue, in words.
    fn name(&self) -> String {
        match self.conn.config().qid {
            0 => "the admin queue".into(),
            qid => format!("I/O queue {qid}"),
        }
    }

    /// Sends everything the connection has to send: small PDUs gathered, payload borrowed
    /// from the command's buffer.
    async fn send(&mut self) -> io::Result<()> {
        let Self {
            conn,
            stream,
            gathered,
            ..
        } = self;
        conn.handle_timeout(Instant::now());
        while let Some(t) = conn.poll_transmit() {
            if t.len() <= GATHER_MAX {
                for part in t.parts() {
                    gathered.extend_from_slice(part);
                }
                continue;
            }
            let mut parts = Vec::with_capacity(t.parts().len() + 1);
            if !gathered.is_empty() {
                parts.push(&gathered[..]);
            }
            parts.extend_from_slice(t.parts());
            stream.write_all(&parts).await?;
            gathered.clear();
        }
        if !gathered.is_empty() {
            stream.write_all(&[&gathered[..]]).await?;
            gathered.clear();
        }
        Ok(())
    }

    /// Reads what is there through the reader path (payload straight into the command's
    /// buffer), without waiting.
    fn receive(&mut self) -> io::Result<()> {
        // Bounded: a busy socket leaves its readiness set for the next turn.
        for _ in 0..64 {
            if self.conn.is_closed() {
                break;
            }
            match self.stream.read_once(&mut self.reader, &mut self.conn) {
                Ok(n) => {
                    self.conn.handle_received(Ok(n));
                    if n == 0 {
                        break;
                    }
                }
                Err(RecvError::Engine(e)) => {
                    self.conn.handle_received(Err(e));
                    break;
                }
                Err(RecvError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(RecvError::Io(e)) => return Err(e),
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// One turn: send, then wait for bytes no later than the connection's next timer or
    /// `deadline`, take them, tell the time. Returns whether bytes came.
    async fn turn(&mut self, deadline: Option<Instant>) -> Result<bool, Error> {
        self.send().await?;
        if self.conn.is_closed() {
            return Ok(false);
        }
        let wake = earliest([self.conn.poll_timeout(), deadline]);
        let read = ::tokio::select! {
            r = self.stream.readable() => {
                r?;
                self.receive()?;
                true
            }
            () = sleep(wake) => false,
        };
        self.conn.handle_timeout(Instant::now());
        Ok(read)
    }

    /// Waits for the completion of `cid` (or, with `None`, for ICResp), failing if the
    /// controller stays silent for `silence`.
    async fn wait(
        &mut self,
        cid: Option<u16>,
        silence: Duration,
    ) -> Result<Option<Completion>, Error> {
        let mut until = Instant::now() + silence;
        loop {
            match cid {
                Some(cid) => {
                    if let Some(c) = self.conn.poll_completion(Some(cid)) {
                        return Ok(Some(c));
                    }
                }
                None if self.conn.is_connected() => return Ok(None),
                None => {}
            }
            while let Some(event) = self.conn.poll_other_event() {
                match event {
                    Event::Closed(e) => return Err(Error::Connection(e)),
                    Event::TimedOut {
                        cid: c,
                        command,
                        waited,
                    } if Some(c) == cid => {
                        let what =
                            format!("the completion of {command} (CID {c}) on {}", self.name());
                        return Err(timed_out(waited, what));
                    }
                    _ => {}
                }
            }
            if Instant::now() >= until {
                let what = match cid {
                    Some(cid) => format!("the completion of CID {cid} on {}", self.name()),
                    None => format!("ICResp on {}", self.name()),
                };
                return Err(timed_out(silence, what));
            }
            if self.turn(Some(until)).await? {
                until = Instant::now() + silence;
            }
        }
    }

    /// Runs sans-IO `steps` on this queue to their end (the tokio twin of the blocking
    /// driver's loop).
    async fn drive<S: Steps>(
        &mut self,
        steps: &mut S,
        silence: Duration,
    ) -> Result<S::Output, Error> {
        loop {
            match steps.next_action(Instant::now()) {
                Action::Submit(command) => {
                    let cid = self
                        .conn
                        .submit(command.sqe, command.data)
                        .map_err(|(e, _)| Error::Submit(e))?;
                    let c = self.wait(Some(cid), silence).await?.ok_or_else(|| {
                        Error::Setup("a wait ended without its completion".into())
                    })?;
                    steps.handle_completion(c);
                }
                Action::Sleep(wake) => sleep(Some(wake)).await,
                Action::Done(result) => return result.map_err(Error::from),
            }
        }
    }

    /// Submits an Asynchronous Event Request (untimed); its CID.
    fn request_async_event(&mut self) -> Option<u16> {
        self.conn
            .submit_untimed(nvme::async_event_request(), Data::None)
            .ok()
    }

    /// An Asynchronous Event Request completed: the event is reported, the log page it names
    /// read (which re-arms it; the data is not used), and a new request submitted; its CID.
    fn async_event(&mut self, c: &Completion, events: &Mutex<Vec<ControllerEvent>>) -> Option<u16> {
        let e = nvme::AsyncEvent::from_dw0(c.result as u32);
        lock(events).push(ControllerEvent::AsyncEvent(e));
        if e.log_page != 0 {
            let sqe = nvme::get_log_page(e.log_page, 0xFFFF_FFFF, 4096, 0);
            let _ = self.conn.submit(sqe, Data::Read(SgBuffer::zeroed(4096)));
        }
        self.request_async_event()
    }

    /// The queue's task: takes commands, sends, reads, runs the timers, answers every command
    /// (its buffer back). It ends cleanly at `Finish`/`Shutdown`, or when every handle is gone
    /// and nothing is outstanding; or with the association (its connection's end, a command
    /// past its deadline, another queue's end through `lost`), handing back the commands it
    /// held, buffers in them, for the next association.
    async fn serve(mut self, q: Serve) -> QueueEnd {
        let Serve {
            mut rx,
            lost,
            keep_alives,
            events: async_events,
            options,
            mut backlog,
            mut finish,
        } = q;
        let name = self.name();
        let timeout = options.timeout;
        let mut lost_rx = lost.subscribe();
        let keep_alive_base = keep_alives
            .as_ref()
            .map_or(0, |k| k.load(Ordering::Relaxed));
        let mut waiting: HashMap<u16, Issued> = HashMap::new();
        let mut open = true;
        let mut end: Option<String> = None;
        let mut aborted = Vec::new();
        // The admin queue keeps one Asynchronous Event Request outstanding, as Linux does
        // (NVME_NR_AEN_COMMANDS); it has no deadline.
        let mut aer = async_events
            .as_ref()
            .and_then(|_| self.request_async_event());
        loop {
            while self.conn.free_slots() > 0
                && !self.conn.is_closed()
                && let Some(r) = backlog.pop_front()
            {
                let kind = Kind::of(&r.data);
                match self.conn.submit(r.sqe, r.data) {
                    Ok(cid) => {
                        let issued = Issued {
                            sqe: r.sqe,
                            kind,
                            reply: r.reply,
                            tries: r.tries,
                        };
                        waiting.insert(cid, issued);
                    }
                    Err((e, data)) => {
                        let _ = r.reply.send(Outcome::Failed {
                            reason: format!("{name} refused it: {e}"),
                            buffer: data.into_buffer(),
                        });
                    }
                }
            }
            if let Err(e) = self.send().await {
                end.get_or_insert_with(|| socket_failed(&name, &e));
                self.conn.close();
            }
            if let Some(k) = &keep_alives {
                k.store(keep_alive_base + self.conn.keep_alives(), Ordering::Relaxed);
            }
            let mut events = Vec::new();
            while let Some(event) = self.conn.poll_event() {
                events.push(event);
            }
            for event in &events {
                match event {
                    // As Linux's nvme-tcp (nvme_tcp_timeout): a command past its deadline
                    // starts error recovery, no Abort.
                    Event::TimedOut {
                        cid,
                        command,
                        waited,
                    } => {
                        end.get_or_insert_with(|| {
                            format!(
                                "{command} (CID {cid}) on {name} timed out after {:.1} s",
                                waited.as_secs_f64()
                            )
                        });
                        self.conn.close();
                    }
                    Event::Closed(e) => {
                        end.get_or_insert_with(|| format!("{name}: {e}"));
                    }
                    _ => {}
                }
            }
            // A close queued the aborted completions behind these: take them too.
            while let Some(event) = self.conn.poll_event() {
                events.push(event);
            }
            for event in events {
                let Event::Completed(c) = event else { continue };
                if aer.is_some_and(|cid| cid == c.cid) {
                    aer = None;
                    // Refused (limit exceeded) or aborted by a teardown: not asked again.
                    if let Some(reports) = &async_events
                        && end.is_none()
                        && c.status.is_success()
                    {
                        aer = self.async_event(&c, reports);
                    }
                    continue;
                }
                let Some(issued) = waiting.remove(&c.cid) else {
                    continue;
                };
                if end.is_some() && c.status == Status::ABORTED {
                    // Torn down, not answered: its buffer is back, for the next association.
                    aborted.push(issued.request(c.buffer));
                } else if recovery::retry_status(c.status, issued.tries, &options) {
                    let mut r = issued.request(c.buffer);
                    r.tries += 1;
                    backlog.push_back(r);
                } else {
                    let _ = issued.reply.send(Outcome::Done(c));
                }
            }
            if self.conn.is_closed() {
                let reason = end.unwrap_or_else(|| format!("{name} was closed"));
                lost.send_if_modified(|e| {
                    let first = e.is_none();
                    e.get_or_insert_with(|| reason.clone());
                    first
                });
                // A command still held here had no completion: its backend kept the buffer
                // (a device may still write into it), so it cannot come back.
                for (_, issued) in waiting.drain() {
                    let _ = issued.reply.send(Outcome::Failed {
                        reason: format!("{reason} (the DDP backend did not release its buffer)"),
                        buffer: None,
                    });
                }
                return QueueEnd {
                    rx,
                    aborted,
                    unsent: backlog.into(),
                    finish,
                    lost: Some(reason),
                };
            }
            let idle = waiting.is_empty() && backlog.is_empty();
            if idle && (finish.is_some() || !open) {
                break;
            }
            if !backlog.is_empty() && self.conn.free_slots() > 0 {
                // Completions freed CIDs: issue what waits before waiting again.
                continue;
            }
            let wake = self.conn.poll_timeout();
            ::tokio::select! {
                biased;
                r = lost_rx.changed(), if end.is_none() => {
                    let why = match r {
                        Ok(()) => lost_rx.borrow_and_update().clone(),
                        Err(_) => None,
                    };
                    if let Some(why) = why {
                        end = Some(why);
                        self.conn.close();
                    }
                }
                r = self.stream.readable() => {
                    if let Err(e) = r.and_then(|()| self.receive()) {
                        end.get_or_insert_with(|| socket_failed(&name, &e));
                        self.conn.close();
                    }
                }
                m = rx.recv(), if open && finish.is_none() => match m {
                    Some(Msg::Command(r)) => {
                        backlog.push_back(r);
                        // Take what else is queued: one send for the batch.
                        while backlog.len() < 1024
                            && let Ok(Msg::Command(r)) = rx.try_recv()
                        {
                            backlog.push_back(r);
                        }
                    }
                    Some(Msg::Finish(tx)) => finish = Some(tx),
                    Some(Msg::Shutdown(tx)) => {
                        let result = self.drive(&mut Shutdown::new(timeout), timeout).await;
                        let _ = tx.send(result);
                        break;
                    }
                    None => open = false,
                },
                () = sleep(wake) => {}
            }
            self.conn.handle_timeout(Instant::now());
        }
        if let Some(tx) = finish.take() {
            let _ = tx.send(());
        }
        QueueEnd {
            rx,
            aborted,
            unsent: backlog.into(),
            finish,
            lost: None,
        }
    }
}

/// What a queue's task starts with.
struct Serve {
    rx: mpsc::Receiver<Msg>,
    /// Set by the first queue of the association to end; ends the others.
    lost: Arc<watch::Sender<Option<String>>>,
    /// The admin queue's Keep Alive counter.
    keep_alives: Option<Arc<AtomicU64>>,
    /// Where the admin queue reports asynchronous events (`None` on I/O queues).
    events: Option<Arc<Mutex<Vec<ControllerEvent>>>>,
    options: Options,
    /// Commands to issue first (those of a lost association).
    backlog: VecDeque<Request>,
    finish: Option<oneshot::Sender<()>>,
}

/// Runs an association's queue tasks; when it is lost, reconnects as the [`recovery`]
/// policy says (the same as the blocking driver's) and issues again what it says, or fails
/// everything.
struct Supervisor<B, F> {
    addr: SocketAddr,
    options: Options,
    backend: F,
    ns: NamespaceInfo,
    cntlid: Arc<AtomicU16>,
    ended: Arc<watch::Sender<Option<Ended>>>,
    keep_alives: Arc<AtomicU64>,
    events: Arc<Mutex<Vec<ControllerEvent>>>,
    reconnects: Arc<AtomicU64>,
    _backend: std::marker::PhantomData<fn() -> B>,
}

impl<B, F> Supervisor<B, F>
where
    B: DdpBackend + Send + 'static,
    F: FnMut(QueueId) -> B + Send + 'static,
{
    /// `queues`: the admin queue, then the I/O queues; `rxs` their channels, in that order.
    async fn run(mut self, mut queues: Vec<Queue<B>>, mut rxs: Vec<mpsc::Receiver<Msg>>) {
        let n = queues.len();
        let mut backlogs: Vec<VecDeque<Request>> = (0..n).map(|_| VecDeque::new()).collect();
        let mut finishes: Vec<Option<oneshot::Sender<()>>> = (0..n).map(|_| None).collect();
        let mut generation = 0u32;
        loop {
            let (lost, _) = watch::channel(None);
            let lost = Arc::new(lost);
            let tasks: Vec<_> = queues
                .drain(..)
                .zip(rxs.drain(..))
                .enumerate()
                .map(|(i, (q, rx))| {
                    let serve = Serve {
                        rx,
                        lost: Arc::clone(&lost),
                        keep_alives: (i == 0).then(|| Arc::clone(&self.keep_alives)),
                        events: (i == 0).then(|| Arc::clone(&self.events)),
                        options: self.options.clone(),
                        backlog: std::mem::take(&mut backlogs[i]),
                        finish: finishes[i].take(),
                    };
                    ::tokio::spawn(q.serve(serve))
                })
                .collect();
            let mut aborted = Vec::new();
            let mut unsent = Vec::new();
            let mut reason = None;
            for (i, task) in tasks.into_iter().enumerate() {
                let Ok(end) = task.await else {
                    // A task that panicked took its channel with it: its senders see the
                    // channel closed, its commands' replies dropped.
                    reason.get_or_insert_with(|| "a queue's task panicked".to_string());
                    let (_, rx) = mpsc::channel(1);
                    rxs.push(rx);
                    continue;
                };
                rxs.push(end.rx);
                finishes[i] = end.finish;
                aborted.extend(end.aborted);
                unsent.extend(end.unsent);
                if reason.is_none() {
                    reason = end.lost;
                }
            }
            let first = lost.borrow().clone();
            let Some(reason) = first.or(reason) else {
                return; // every queue ended cleanly
            };
            // Issued again, as the blocking driver decides, or failed, buffers back.
            let mut again = Vec::with_capacity(aborted.len() + unsent.len());
            for mut r in aborted {
                match recovery::after_loss(r.tries, &self.options) {
                    Ok(tries) => {
                        r.tries = tries;
                        again.push(r);
                    }
                    Err(why) => {
                        let _ = r.reply.send(Outcome::Failed {
                            reason: why,
                            buffer: r.data.into_buffer(),
                        });
                    }
                }
            }
            again.extend(unsent);
            let (mut policy, event) = Reconnect::new(&self.options, Instant::now(), reason);
            self.report(event);
            let a = loop {
                match policy.next(Instant::now()) {
                    Next::Wait(t) => sleep(Some(t)).await,
                    Next::GiveUp(event) => return self.give_up(event, again, rxs, finishes),
                    Next::Attempt(_) => {
                        generation = generation.wrapping_add(1);
                        let a = bring_up(self.addr, &self.options, &mut self.backend, generation);
                        match a.await {
                            Ok(a) => break a,
                            Err(e) => policy.attempt_failed(Instant::now(), e.to_string()),
                        }
                    }
                }
            };
            let changed = recovery::namespace_changed(self.options.nsid, a.found.ns, self.ns)
                .or_else(|| {
                    (a.io.len() + 1 != n).then(|| {
                        format!(
                            "the controller granted {} I/O queues across the reconnect, was {}",
                            a.io.len(),
                            n - 1
                        )
                    })
                });
            if let Some(why) = changed {
                let event = policy.fatal(why);
                return self.give_up(event, again, rxs, finishes);
            }
            self.cntlid.store(a.found.cntlid, Ordering::Relaxed);
            self.reconnects.fetch_add(1, Ordering::Relaxed);
            self.report(policy.reconnected(Instant::now(), again.len()));
            for (k, r) in again.into_iter().enumerate() {
                backlogs[1 + k % (n - 1).max(1)].push_back(r);
            }
            queues.push(a.admin);
            queues.extend(a.io);
        }
    }

    fn report(&self, event: ControllerEvent) {
        lock(&self.events).push(event);
    }

    /// Not back within `ctrl_loss_tmo`: every command held or queued fails with the reason,
    /// its buffer back; a close waiting is answered; new commands are refused.
    fn give_up(
        &self,
        event: ControllerEvent,
        held: Vec<Request>,
        rxs: Vec<mpsc::Receiver<Msg>>,
        finishes: Vec<Option<oneshot::Sender<()>>>,
    ) {
        let reason = match &event {
            ControllerEvent::Lost { reason } => reason.clone(),
            other => other.to_string(),
        };
        self.report(event);
        self.ended.send_if_modified(|e| {
            let first = e.is_none();
            e.get_or_insert_with(|| Ended {
                reason: reason.clone(),
                by_close: false,
            });
            first
        });
        let fail = |r: Request| {
            let _ = r.reply.send(Outcome::Failed {
                reason: reason.clone(),
                buffer: r.data.into_buffer(),
            });
        };
        held.into_iter().for_each(fail);
        for mut rx in rxs {
            rx.close();
            while let Ok(m) = rx.try_recv() {
                match m {
                    Msg::Command(r) => fail(r),
                    Msg::Finish(tx) => {
                        let _ = tx.send(());
                    }
                    // Nothing to shut down (as the blocking driver's close of a lost one).
                    Msg::Shutdown(tx) => {
                        let _ = tx.send(Ok(()));
                    }
                }
            }
        }
        for tx in finishes.into_iter().flatten() {
            let _ = tx.send(());
        }
    }
}

/// A socket error that ended a queue, in words (its kind, not the OS's error number; a TLS
/// record stream's failure as `ulp-tls` words it).
fn socket_failed(queue: &str, e: &io::Error) -> String {
    #[cfg(feature = "tls")]
    if let Some(tls) = ulp_tls::StreamError::of(e)
        && !matches!(tls, ulp_tls::StreamError::Io(_))
    {
        return format!("{queue}: {tls}");
    }
    match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
            format!(
                "{queue}: the controller closed the connection ({})",
                e.kind()
            )
        }
        kind => format!("{queue}: the socket failed: {kind}"),
    }
}

/// Sleeps until `t` (tokio's clock), or forever.
async fn sleep(t: Option<Instant>) {
    match t {
        Some(t) => ::tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
