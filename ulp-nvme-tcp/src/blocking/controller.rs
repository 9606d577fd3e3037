//! [`Controller`]: queues, commands and recovery (documented on the type).

use std::collections::VecDeque;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use ulp_ddp_core::types::IdMap;
use ulp_ddp_core::{DdpBackend, NoOffload, QueueId, SgBuffer};

use super::bringup::{Queues, bring_up, shutdown};
use super::types::{CommandId, ControllerEvent, Io, IoCompletion, IoError};
use super::{Connection, Error, QueueEvent, timed_out};
use crate::connection::{Completion, Data};
use crate::nvme::{self, ControllerInfo, NamespaceInfo};
use crate::options::Options;
use crate::recovery::{self, Next, Reconnect};
use crate::wire::capsule_cmd::SQE_LEN;

/// One NVMe command of an [`Io`].
#[derive(Debug)]
struct Part {
    id: u64,
    index: usize,
    sqe: [u8; SQE_LEN],
    kind: Kind,
    tries: u8,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Kind {
    Read,
    Write,
    None,
}

impl Kind {
    fn data(self, buffer: Option<SgBuffer>) -> Data {
        match (self, buffer) {
            (Self::Read, Some(b)) => Data::Read(b),
            (Self::Write, Some(b)) => Data::Write(b),
            _ => Data::None,
        }
    }
}

/// An [`Io`] in flight: its parts' buffers as they come back.
#[derive(Debug)]
struct Pending {
    command: &'static str,
    slba: u64,
    len: u64,
    /// One per part (one unless the transfer was split).
    buffers: smallvec::SmallVec<[Option<SgBuffer>; 1]>,
    left: usize,
    error: Option<IoError>,
}

/// A controller: an admin queue (enabled, identified) and one or more I/O queues over blocking
/// sockets, with the recovery ladder Linux's NVMe/TCP host uses.
///
/// Commands go in with [`Controller::submit`] and come out with [`Controller::wait`] as
/// [`IoCompletion`]s, keyed by a [`CommandId`] that survives reconnects. Transfers larger than
/// the controller takes in one command (MDTS, or [`TRANSPORT_MAX_TRANSFER`](super::TRANSPORT_MAX_TRANSFER) when MDTS is 0)
/// are split into several commands and completed as one.
///
/// When things go wrong over time:
///
/// | trigger | step | default |
/// |---|---|---|
/// | a command outstanding for `io_timeout` | Abort on the admin queue; if the controller does not abort it, or it still does not complete, a controller reset | 30 s |
/// | Keep Alive unanswered for the KATO, or failed | controller reset | KATO 5 s, Keep Alive every 2.5 s |
/// | the connection breaks (reset by the peer, a protocol violation, C2HTermReq) | controller reset | |
/// | controller reset | every queue torn down (every buffer back through the engine's release), reconnect after `reconnect_delay`, again every `reconnect_delay` | 10 s |
/// | reconnected | the commands that were not completed and may be retried (no DNR, fewer than `max_retries` tries) are issued again | 5 retries |
/// | `ctrl_loss_tmo` passed without a reconnect | every outstanding command fails with [`IoError::Lost`], its buffer handed back | 600 s |
///
/// [`Controller::close`] shuts the controller down cleanly (CC.SHN, then CSTS.SHST).
pub struct Controller<B: DdpBackend = NoOffload> {
    addr: SocketAddr,
    options: Options,
    backend: Box<dyn FnMut(QueueId) -> B>,
    q: Queues<B>,
    /// Parts issued on the current I/O queues, by [`flight_key`] (queue index and CID).
    inflight: IdMap<u32, Part>,
    /// Parts waiting for a free CID (or for the reconnect), with their data.
    backlog: VecDeque<(Part, Data)>,
    pending: IdMap<u64, Pending>,
    /// Finished commands not taken yet.
    ready: VecDeque<IoCompletion>,
    next_id: u64,
    events: Vec<ControllerEvent>,
    /// Timeouts met while another one was being handled (queue, CID, name, waited).
    deferred: Vec<(usize, u16, &'static str, Duration)>,
    reconnects: u64,
    lost: Option<String>,
}

impl<B: DdpBackend> fmt::Debug for Controller<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("addr", &self.addr)
            .field("cntlid", &self.q.cntlid)
            .field("outstanding", &self.pending.len())
            .field("reconnects", &self.reconnects)
            .finish_non_exhaustive()
    }
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
    /// Controller and Namespace, checked) and one I/O queue (ICReq, Connect). `backend` makes
    /// each queue's backend handle (called with the queue's backend id), again on every
    /// reconnect.
    ///
    /// # Errors
    ///
    /// Any step's failure.
    pub fn connect_with(
        addr: impl ToSocketAddrs,
        options: &Options,
        backend: impl FnMut(QueueId) -> B + 'static,
    ) -> Result<Self, Error> {
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| Error::Setup("the address resolves to nothing".into()))?;
        let mut backend: Box<dyn FnMut(QueueId) -> B> = Box::new(backend);
        let q = bring_up(addr, options, &mut *backend, 0)?;
        Ok(Self {
            addr,
            options: options.clone(),
            backend,
            q,
            inflight: IdMap::default(),
            backlog: VecDeque::new(),
            pending: IdMap::default(),
            ready: VecDeque::new(),
            next_id: 0,
            events: Vec::new(),
            deferred: Vec::new(),
            reconnects: 0,
            lost: None,
        })
    }

    /// Identify Controller, as parsed.
    pub fn info(&self) -> &ControllerInfo {
        &self.q.info
    }

    /// The I/O namespace.
    pub fn namespace(&self) -> NamespaceInfo {
        self.q.ns
    }

    /// The controller id the admin Connect returned.
    pub fn cntlid(&self) -> u16 {
        self.q.cntlid
    }

    /// The admin queue.
    pub fn admin(&mut self) -> &mut Connection<B> {
        &mut self.q.admin
    }

    /// The first I/O queue, for its counters or raw commands (raw commands get no recovery;
    /// do not mix them with [`submit`](Self::submit)).
    pub fn io(&mut self) -> &mut Connection<B> {
        &mut self.q.io[0]
    }

    /// The I/O queues (as many as the controller granted of [`Options::queues`]).
    pub fn io_queues(&self) -> &[Connection<B>] {
        &self.q.io
    }

    /// Sets every I/O queue's small-payload policy
    /// ([`Connection::copy_small_payloads`]).
    pub fn copy_small_payloads(&mut self, threshold: u64) {
        for q in &mut self.q.io {
            q.copy_small_payloads(threshold);
        }
    }

    /// The receive engines' counters, summed over the I/O queues.
    pub fn stats(&self) -> ulp_ddp_core::Stats {
        let mut total = ulp_ddp_core::Stats::default();
        for q in &self.q.io {
            total += q.connection().stats();
        }
        total
    }

    /// How many times the controller was reconnected.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// What recovery did since the last call, for the caller to log.
    pub fn take_events(&mut self) -> Vec<ControllerEvent> {
        std::mem::take(&mut self.events)
    }

    /// The most bytes one NVMe command carries: MDTS, or [`TRANSPORT_MAX_TRANSFER`](super::TRANSPORT_MAX_TRANSFER) when the
    /// controller sets none, and never more than 65536 blocks (NLB is 16 bits).
    pub fn max_transfer(&self) -> u64 {
        crate::bringup::max_transfer(&self.q.info, self.q.cap, self.q.ns)
    }

    /// Commands submitted and not yet taken with [`wait`](Self::wait).
    pub fn outstanding(&self) -> usize {
        self.pending.len() + self.ready.len()
    }

    /// Waits for the completion of I/O command `cid` (or of any, with `None`) on the raw I/O
    /// queue ([`io`](Self::io)), running the admin queue's timers (Keep Alive) whenever they
    /// are due. No recovery: see [`wait`](Self::wait).
    ///
    /// # Errors
    ///
    /// Socket errors, the timeout, either queue's end.
    pub fn wait_io(&mut self, cid: Option<u16>) -> Result<Completion, Error> {
        self.q.io[0].wait_keeping(cid, &mut self.q.admin)
    }

    fn blocks(&self, len: u64) -> Result<u32, Error> {
        let bs = u64::from(self.q.ns.block_size.max(1));
        if len == 0 || !len.is_multiple_of(bs) || len / bs > 65536 {
            return Err(Error::Setup(format!(
                "{len} bytes is not 1..=65536 blocks of {bs} bytes"
            )));
        }
        Ok((len / bs) as u32)
    }

    /// The Read command for `len` bytes at block `slba` (one NVMe command, for [`io`](Self::io)).
    ///
    /// # Errors
    ///
    /// If `len` is not a whole number of blocks (1..=65536).
    pub fn read_cmd(&self, slba: u64, len: u64) -> Result<[u8; SQE_LEN], Error> {
        Ok(nvme::read(self.options.nsid, slba, self.blocks(len)?))
    }

    /// The Write command for `len` bytes at block `slba` (one NVMe command, for
    /// [`io`](Self::io)).
    ///
    /// # Errors
    ///
    /// If `len` is not a whole number of blocks (1..=65536).
    pub fn write_cmd(&self, slba: u64, len: u64) -> Result<[u8; SQE_LEN], Error> {
        Ok(nvme::write(self.options.nsid, slba, self.blocks(len)?))
    }

    /// Queues a transfer; larger than [`max_transfer`](Self::max_transfer), it is split into
    /// several commands (whole buffer segments move without copying, see
    /// [`SgBuffer::split`]). It goes out at the next wait.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] for a length that is not a whole number of blocks or a lost
    /// controller, with the buffer handed back ([`Error::into_buffer`]). A range beyond the
    /// namespace is the controller's to refuse (LBA Out of Range, with the buffer handed back
    /// in the completion).
    pub fn submit(&mut self, io: Io) -> Result<CommandId, Error> {
        let bs = u64::from(self.q.ns.block_size.max(1));
        let (command, slba, kind, buffer) = match io {
            Io::Read { slba, buffer } => ("Read", slba, Kind::Read, Some(buffer)),
            Io::Write { slba, data } => ("Write", slba, Kind::Write, Some(data)),
            Io::Flush => ("Flush", 0, Kind::None, None),
        };
        if let Some(reason) = &self.lost {
            return Err(Error::Refused {
                reason: format!("{command}: the controller was lost: {reason}"),
                buffer,
            });
        }
        let len = buffer.as_ref().map_or(0, SgBuffer::len);
        if kind != Kind::None && (len == 0 || !len.is_multiple_of(bs)) {
            return Err(Error::Refused {
                reason: format!("{command} of {len} bytes: not a whole number of {bs}-byte blocks"),
                buffer,
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        let nsid = self.options.nsid;
        let max = self.max_transfer();
        let pieces: smallvec::SmallVec<[Option<SgBuffer>; 1]> = match buffer {
            Some(b) if b.len() > max => b
                .split(max, kind == Kind::Write)
                .into_iter()
                .map(Some)
                .collect(),
            one => smallvec::smallvec![one],
        };
        let parts = pieces.len();
        let mut lba = slba;
        for (index, piece) in pieces.into_iter().enumerate() {
            let blocks = piece.as_ref().map_or(0, |p| (p.len() / bs) as u32);
            let sqe = match kind {
                Kind::Read => nvme::read(nsid, lba, blocks),
                Kind::Write => nvme::write(nsid, lba, blocks),
                Kind::None => nvme::flush(nsid),
            };
            lba += u64::from(blocks);
            let part = Part {
                id,
                index,
                sqe,
                kind,
                tries: 0,
            };
            self.backlog.push_back((part, kind.data(piece)));
        }
        self.pending.insert(
            id,
            Pending {
                command,
                slba,
                len,
                buffers: (0..parts).map(|_| None).collect(),
                left: parts,
                error: None,
            },
        );
        self.issue();
        Ok(CommandId(id))
    }

    /// Issues backlogged parts while an I/O queue has free CIDs, each to the queue with the
    /// most.
    fn issue(&mut self) {
        while !self.backlog.is_empty() {
            let Some((i, _)) = self
                .q
                .io
                .iter()
                .enumerate()
                .map(|(i, q)| (i, q.connection().free_slots()))
                .filter(|&(_, free)| free > 0)
                .max_by_key(|&(i, free)| (free, usize::MAX - i))
            else {
                break;
            };
            let Some((part, data)) = self.backlog.pop_front() else {
                break;
            };
            match self.q.io[i].connection_mut().submit(part.sqe, data) {
                Ok(cid) => {
                    self.inflight.insert(flight_key(i, cid), part);
                }
                Err((_, data)) => {
                    self.backlog.push_front((part, data));
                    break;
                }
            }
        }
    }

    /// Waits for command `id` (or any, with `None`) to finish, recovering the controller on
    /// the way when it must (see [`Controller`]). A command that fails
    /// comes back as an [`IoCompletion`] with the error, not as `Err`.
    ///
    /// # Errors
    ///
    /// Nothing outstanding (or `id` unknown), or the admin queue failing during an Abort in a
    /// way recovery does not cover.
    pub fn wait(&mut self, id: Option<CommandId>) -> Result<IoCompletion, Error> {
        loop {
            let found = self
                .ready
                .iter()
                .position(|c| id.is_none_or(|id| c.id == id));
            if let Some(c) = found.and_then(|i| self.ready.remove(i)) {
                return Ok(c);
            }
            match id {
                Some(CommandId(i)) if !self.pending.contains_key(&i) => {
                    return Err(Error::Setup(format!("command {i} is not outstanding")));
                }
                None if self.pending.is_empty() => {
                    return Err(Error::Setup("no command is outstanding".into()));
                }
                _ => {}
            }
            if let Some((queue, cid, command, waited)) = self.deferred.pop() {
                self.on_timeout(queue, cid, command, waited);
                continue;
            }
            self.issue();
            let event = self.next_event();
            self.admin_events();
            match event {
                Ok(Some((i, QueueEvent::Completed(c)))) => self.on_completion(i, c),
                Ok(Some((
                    i,
                    QueueEvent::TimedOut {
                        cid,
                        command,
                        waited,
                    },
                ))) => self.on_timeout(i, cid, command, waited),
                Ok(None) => {}
                Err(e) => self.reset(e.to_string()),
            }
        }
    }

    /// The next event of any I/O queue, keeping the admin queue alive meanwhile: one queue
    /// waits in its own blocking loop (payload read in place, no extra system call); several
    /// wait together in poll(2), each drained without blocking when it is readable.
    fn next_event(&mut self) -> Result<Option<(usize, QueueEvent)>, Error> {
        let q = &mut self.q;
        if q.io.len() == 1 {
            return Ok(q.io[0]
                .next_event(Some(&mut q.admin), None)?
                .map(|e| (0, e)));
        }
        let mut last_activity = Instant::now();
        let mut failed: Option<Error> = None;
        loop {
            for (i, io) in q.io.iter_mut().enumerate() {
                if let Some(e) = io.take_event() {
                    return Ok(Some((i, e)));
                }
            }
            // A queue's end is reported once what it received before it is taken.
            if let Some(e) = failed.take() {
                return Err(e);
            }
            for io in &mut q.io {
                io.flush()?;
            }
            let now = Instant::now();
            let due = ulp_ddp_core::timer::earliest(
                q.io.iter()
                    .map(Connection::poll_timeout)
                    .chain([q.admin.poll_timeout()]),
            );
            // Without any timer (io_timeout and KATO both 0) a silent controller is bounded
            // by the bring-up timeout, as one queue is by its silence limit.
            let silent_until = due.is_none().then(|| last_activity + self.options.timeout);
            let wake = due.or(silent_until);
            // Bytes a TLS session already took off a socket do not make its fd readable: a
            // queue holding some is read now, without waiting.
            let buffered: smallvec::SmallVec<[bool; 8]> =
                q.io.iter()
                    .chain([&q.admin])
                    .map(|c| c.buffered() > 0)
                    .collect();
            let wake = if buffered.iter().any(|&b| b) {
                Some(now)
            } else {
                wake
            };
            let readable = {
                use rustix::event::{PollFd, PollFlags, Timespec};
                let mut fds: smallvec::SmallVec<[PollFd<'_>; 8]> =
                    q.io.iter()
                        .map(|c| PollFd::new(c.socket(), PollFlags::IN))
                        .chain([PollFd::new(q.admin.socket(), PollFlags::IN)])
                        .collect();
                let wait = wake.map(|d| {
                    let left = d.saturating_duration_since(now);
                    Timespec {
                        tv_sec: left.as_secs() as _,
                        tv_nsec: left.subsec_nanos().into(),
                    }
                });
                match rustix::event::poll(&mut fds, wait.as_ref()) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(Error::Io(e.into())),
                }
                fds.iter()
                    .zip(&buffered)
                    .map(|(f, &b)| b || !f.revents().is_empty())
                    .collect::<smallvec::SmallVec<[bool; 8]>>()
            };
            let now = Instant::now();
            if readable.iter().any(|&r| r) {
                last_activity = now;
            } else if silent_until.is_some_and(|s| now >= s) {
                return Err(timed_out(
                    self.options.timeout,
                    "a completion on the I/O queues".into(),
                ));
            }
            for (i, io) in q.io.iter_mut().enumerate() {
                if (readable[i] || io.poll_timeout().is_some_and(|t| t <= now))
                    && let Err(e) = io.poll()
                {
                    failed.get_or_insert(e);
                }
            }
            if readable[q.io.len()] || q.admin.poll_timeout().is_some_and(|t| t <= now) {
                q.admin.poll()?;
            }
        }
    }

    /// Takes what the admin queue received meanwhile: an asynchronous event is reported, its
    /// log page read (which re-arms it), and a new request sent; stray admin completions
    /// (an Abort answered late) are dropped.
    fn admin_events(&mut self) {
        if !self.q.admin.has_event() {
            return;
        }
        while let Some(event) = self.q.admin.take_event() {
            let QueueEvent::Completed(c) = event else {
                continue;
            };
            if Some(c.cid) != self.q.aer {
                continue;
            }
            self.q.aer = None;
            if !c.status.is_success() {
                // Refused (limit exceeded, or aborted by a teardown): do not ask again.
                continue;
            }
            let e = nvme::AsyncEvent::from_dw0(c.result as u32);
            self.events.push(ControllerEvent::AsyncEvent(e));
            if e.log_page != 0 {
                let read = Data::Read(SgBuffer::zeroed(4096));
                let _ = self
                    .q
                    .admin
                    .run(nvme::get_log_page(e.log_page, 0xFFFF_FFFF, 4096, 0), read);
            }
            self.q.aer = self
                .q
                .admin
                .connection_mut()
                .submit_untimed(nvme::async_event_request(), Data::None)
                .ok();
            let _ = self.q.admin.flush();
        }
    }

    fn on_completion(&mut self, queue: usize, c: Completion) {
        let Some(part) = self.inflight.remove(&flight_key(queue, c.cid)) else {
            return;
        };
        let status = c.status;
        if recovery::retry_status(status, part.tries, &self.options) {
            let mut part = part;
            part.tries += 1;
            let data = part.kind.data(c.buffer);
            self.backlog.push_back((part, data));
            return;
        }
        let error = (!status.is_success()).then_some(IoError::Status { cid: c.cid, status });
        self.part_done(part, c.buffer, error);
    }

    fn part_done(&mut self, part: Part, buffer: Option<SgBuffer>, error: Option<IoError>) {
        let Some(p) = self.pending.get_mut(&part.id) else {
            return;
        };
        if let Some(slot) = p.buffers.get_mut(part.index) {
            *slot = buffer;
        }
        if p.error.is_none() {
            p.error = error;
        }
        p.left = p.left.saturating_sub(1);
        if p.left == 0
            && let Some(p) = self.pending.remove(&part.id)
        {
            let mut buffers = p.buffers;
            let buffer = if buffers.len() == 1 {
                buffers.pop().flatten()
            } else {
                let parts: Vec<SgBuffer> = buffers.into_iter().flatten().collect();
                (!parts.is_empty()).then(|| SgBuffer::join(parts))
            };
            self.ready.push_back(IoCompletion {
                id: CommandId(part.id),
                command: p.command,
                slba: p.slba,
                len: p.len,
                buffer,
                result: p.error.map_or(Ok(()), Err),
            });
        }
    }

    /// A command passed its deadline: Abort it on the admin queue; if the controller does not
    /// abort it, or it does not complete within the admin timeout after the Abort, reset.
    fn on_timeout(&mut self, queue: usize, cid: u16, command: &'static str, waited: Duration) {
        // Its completion may be in the socket already (the deadline passed while the caller
        // was busy elsewhere, or between two reads of it): take what is there first.
        if self.q.io[queue].poll().is_ok() {
            while let Some(event) = self.q.io[queue].take_event() {
                match event {
                    QueueEvent::Completed(c) => self.on_completion(queue, c),
                    QueueEvent::TimedOut {
                        cid: other,
                        command,
                        waited,
                    } if other != cid => self.deferred.push((queue, other, command, waited)),
                    QueueEvent::TimedOut { .. } => {}
                }
            }
        }
        if !self.inflight.contains_key(&flight_key(queue, cid)) {
            // Completed after all.
            return;
        }
        self.events.push(ControllerEvent::TimedOut {
            command,
            cid,
            waited,
        });
        let qid = self.q.io[queue].connection().config().qid;
        let secs = waited.as_secs_f64();
        let (problem, grace) = match self.q.admin.run(nvme::abort(qid, cid), Data::None) {
            Ok(c) if c.status.is_success() && c.result & 1 == 0 => {
                self.events.push(ControllerEvent::Aborted { cid });
                (
                    format!(
                        "{command} (CID {cid}) did not complete {:.1} s after the controller \
                         aborted it",
                        self.options.timeout.as_secs_f64()
                    ),
                    self.options.timeout,
                )
            }
            // "Not aborted": it may have just completed, its completion on the way; a short
            // wait for it before resetting.
            Ok(c) if c.status.is_success() => (
                format!(
                    "{command} (CID {cid}) timed out after {secs:.1} s and the controller did \
                     not abort it"
                ),
                NOT_ABORTED_GRACE.min(self.options.timeout),
            ),
            Ok(c) => {
                return self.reset(format!(
                    "{command} (CID {cid}) timed out after {secs:.1} s and Abort failed: {}",
                    c.status.describe("Abort")
                ));
            }
            Err(e) => {
                return self.reset(format!(
                    "{command} (CID {cid}) timed out after {secs:.1} s and Abort failed: {e}"
                ));
            }
        };
        // The command's completion follows on its I/O queue; other commands' timeouts met
        // meanwhile are handled after this one.
        let until = Instant::now() + grace;
        loop {
            if !self.inflight.contains_key(&flight_key(queue, cid)) {
                return;
            }
            let q = &mut self.q;
            match q.io[queue].next_event(Some(&mut q.admin), Some(until)) {
                Ok(Some(QueueEvent::Completed(c))) => self.on_completion(queue, c),
                Ok(Some(QueueEvent::TimedOut {
                    cid,
                    command,
                    waited,
                })) => self.deferred.push((queue, cid, command, waited)),
                Ok(None) => return self.reset(problem),
                Err(e) => return self.reset(e.to_string()),
            }
        }
    }

    /// Tears the association down (every buffer back), reconnects every `reconnect_delay`
    /// until `ctrl_loss_tmo`, and issues again what may be retried; or fails everything.
    fn reset(&mut self, reason: String) {
        let (mut policy, event) = Reconnect::new(&self.options, Instant::now(), reason);
        self.events.push(event);
        self.collect_aborted();
        loop {
            match policy.next(Instant::now()) {
                Next::Wait(until) => {
                    std::thread::sleep(until.saturating_duration_since(Instant::now()));
                    continue;
                }
                Next::GiveUp(event) => return self.give_up(event),
                Next::Attempt(_) => {}
            }
            // New backend queue ids: the old queues still exist until they are replaced, and a
            // shared backend keys its queues by id.
            let generation = u32::try_from(self.reconnects + 1).unwrap_or(u32::MAX);
            match bring_up(self.addr, &self.options, &mut *self.backend, generation) {
                Ok(q) => {
                    if let Some(reason) =
                        recovery::namespace_changed(self.options.nsid, q.ns, self.q.ns)
                    {
                        return self.give_up(policy.fatal(reason));
                    }
                    self.q = q;
                    self.reconnects += 1;
                    let event = policy.reconnected(Instant::now(), self.backlog.len());
                    self.events.push(event);
                    self.issue();
                    return;
                }
                Err(e) => policy.attempt_failed(Instant::now(), e.to_string()),
            }
        }
    }

    /// Closes both queues and takes every outstanding part back into the backlog (those that
    /// may be retried) or fails it.
    fn collect_aborted(&mut self) {
        // What each queue received before the end is a real completion: take it as such.
        for i in 0..self.q.io.len() {
            while let Some(event) = self.q.io[i].take_event() {
                if let QueueEvent::Completed(c) = event {
                    self.on_completion(i, c);
                }
            }
        }
        self.q.admin.connection_mut().close();
        let mut back = Vec::new();
        // Closing completes every command once its buffer is released; a backend whose
        // teardown completes later gets up to the bring-up timeout to hand the buffers back.
        let until = Instant::now() + self.options.timeout;
        for (i, io) in self.q.io.iter_mut().enumerate() {
            io.connection_mut().close();
            loop {
                while let Some(c) = io.connection_mut().poll_completion(None) {
                    if let Some(part) = self.inflight.remove(&flight_key(i, c.cid)) {
                        back.push((part, c.buffer));
                    }
                }
                if io.connection().outstanding() == 0 || Instant::now() >= until {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        back.sort_by_key(|(p, _)| (p.id, p.index));
        for (mut part, buffer) in back.into_iter().rev() {
            match recovery::after_loss(part.tries, &self.options) {
                Ok(tries) => {
                    part.tries = tries;
                    let data = part.kind.data(buffer);
                    self.backlog.push_front((part, data));
                }
                Err(reason) => self.part_done(part, buffer, Some(IoError::Lost(reason))),
            }
        }
        // A backend that still holds a buffer after the wait: the device may still write
        // into it, so it cannot come back; the command fails saying so.
        for (_, part) in std::mem::take(&mut self.inflight) {
            let reason = recovery::not_released(self.options.timeout);
            self.part_done(part, None, Some(IoError::Lost(reason)));
        }
    }

    /// Fails every command left with the reason of `event` (a [`ControllerEvent::Lost`]),
    /// buffers back, and refuses new ones.
    fn give_up(&mut self, event: ControllerEvent) {
        let reason = match &event {
            ControllerEvent::Lost { reason } => reason.clone(),
            other => other.to_string(),
        };
        self.events.push(event);
        for (part, data) in std::mem::take(&mut self.backlog) {
            self.part_done(
                part,
                data.into_buffer(),
                Some(IoError::Lost(reason.clone())),
            );
        }
        self.lost = Some(reason);
    }

    /// Reads `buffer.len()` bytes at block `slba` into `buffer`, and hands it back with the
    /// data in it (split into several commands when larger than
    /// [`max_transfer`](Self::max_transfer)).
    ///
    /// # Errors
    ///
    /// Bad length, a lost controller, or a failed status ([`Error::Status`] hands the buffer
    /// back too).
    pub fn read(&mut self, slba: u64, buffer: SgBuffer) -> Result<SgBuffer, Error> {
        let id = self.submit(Io::Read { slba, buffer })?;
        finish(self.wait(Some(id))?)
    }

    /// Writes `data` at block `slba` and hands the buffer back.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    pub fn write(&mut self, slba: u64, data: SgBuffer) -> Result<SgBuffer, Error> {
        let id = self.submit(Io::Write { slba, data })?;
        finish(self.wait(Some(id))?)
    }

    /// Flushes the namespace.
    ///
    /// # Errors
    ///
    /// A lost controller or a failed status.
    pub fn flush(&mut self) -> Result<(), Error> {
        let id = self.submit(Io::Flush)?;
        finish(self.wait(Some(id))?).map(|_| ())
    }

    /// Keeps the association alive without waiting: the admin queue's Keep Alive is sent when
    /// due and its completions are taken. Every wait of this controller does it too; a caller
    /// idle for longer than half the keep-alive timeout calls it itself.
    ///
    /// # Errors
    ///
    /// Socket errors, or the admin queue's error.
    pub fn keep_alive(&mut self) -> Result<(), Error> {
        self.q.admin.poll()?;
        self.admin_events();
        Ok(())
    }

    /// Shuts the controller down cleanly: outstanding commands are waited for (their
    /// completions, with their buffers, are returned), then CC.SHN (normal shutdown) and
    /// CSTS.SHST polled until the controller reports shutdown complete (at most the bring-up
    /// timeout), as Linux does when a controller is deleted.
    ///
    /// # Errors
    ///
    /// The admin queue's failures, or a controller that does not finish its shutdown in time.
    pub fn close(mut self) -> Result<Vec<IoCompletion>, Error> {
        let mut done: Vec<IoCompletion> = self.ready.drain(..).collect();
        while !self.pending.is_empty() {
            done.push(self.wait(None)?);
        }
        if self.lost.is_none() {
            shutdown(&mut self.q.admin, self.options.timeout)?;
        }
        Ok(done)
    }
}

/// How long a command the controller did not abort may still complete before the reset.
const NOT_ABORTED_GRACE: Duration = Duration::from_millis(100);

/// The key of an issued part: its queue's index and its CID.
fn flight_key(queue: usize, cid: u16) -> u32 {
    ((queue as u32) << 16) | u32::from(cid)
}

/// A finished transfer's buffer, or its failure as an [`Error`].
fn finish(c: IoCompletion) -> Result<SgBuffer, Error> {
    match c.result {
        Ok(()) => Ok(c.buffer.unwrap_or_default()),
        Err(IoError::Status { cid, status }) => Err(Error::Status {
            command: c.command,
            cid,
            status,
            buffer: c.buffer,
        }),
        Err(IoError::Lost(reason)) => Err(Error::Lost {
            reason,
            buffer: c.buffer,
        }),
    }
}
