//! The receive engine: tracks PDUs in a queue's in-order byte stream and drives a backend.

use std::collections::VecDeque;

use smallvec::SmallVec;

use crate::backend::{BackendError, BackendEvent, DdpBackend, DdpIo};
use crate::buffer::SgBuffer;
use crate::config::QueueConfig;
use crate::digest::Crc32c;
use crate::error::Error;
use crate::limits::{Decline, Limits};
use crate::protocol::{PduLayout, Placement, Protocol};
use crate::ranges::{RangeSet, Refused};
use crate::stats::Stats;
use crate::types::{IdMap, Tag, TcpSeq};

/// A PDU header as received (digest included), kept inline up to 72 bytes.
pub type HeaderBytes = SmallVec<[u8; 72]>;

/// One piece of the in-order byte stream, with the backend's annotations.
#[derive(Clone, Copy, Debug)]
pub enum Piece<'a> {
    /// Bytes in a receive buffer (the CPU places whatever of them is payload).
    Bytes {
        /// The bytes.
        data: &'a [u8],
        /// The backend verified every digest these bytes belong to (the kernel's `ulp_crc`).
        digest_ok: bool,
    },
    /// `len` payload bytes the backend already wrote into `tag`'s buffer at `offset` (the
    /// kernel's "source equals destination" skip). The engine checks that this is where the
    /// stream puts them: a device that disagrees with the engine's framing breaks the contract.
    Placed {
        /// The command whose buffer holds the bytes.
        tag: Tag,
        /// Offset of the first byte in that buffer.
        offset: u64,
        /// Bytes placed.
        len: u32,
        /// The backend verified every digest these bytes belong to.
        digest_ok: bool,
    },
}

impl<'a> Piece<'a> {
    /// Plain bytes without annotations.
    pub fn bytes(data: &'a [u8]) -> Self {
        Self::Bytes {
            data,
            digest_ok: false,
        }
    }

    /// Stream bytes this piece stands for.
    pub fn len(&self) -> usize {
        match self {
            Self::Bytes { data, .. } => data.len(),
            Self::Placed { len, .. } => *len as usize,
        }
    }

    /// Whether the piece stands for no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The verdict on a PDU's data digest.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum DigestStatus {
    /// The PDU carries no data digest.
    Absent,
    /// The backend verified it; the CPU computed nothing.
    Offloaded,
    /// The engine computed it (fused with placement where it could) and it matched.
    Computed,
    /// It did not match.
    Mismatch {
        /// The digest of the received data.
        computed: u32,
        /// The digest on the wire.
        received: u32,
    },
}

impl DigestStatus {
    /// Whether the data may be trusted: absent, offloaded or computed and matching.
    pub fn is_ok(&self) -> bool {
        !matches!(self, Self::Mismatch { .. })
    }
}

/// What the engine reports, polled with [`Engine::poll_event`] in the order it happened.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A PDU whose data (if any) is not for a registered buffer: the protocol handles it.
    Control {
        /// The header, digest included.
        header: HeaderBytes,
        /// The data, without padding or digest.
        data: Vec<u8>,
        /// The verdict on the data digest.
        digest: DigestStatus,
        /// Stream sequence number of the PDU's first byte.
        seq: TcpSeq,
    },
    /// A data PDU's payload is in the command's buffer.
    Data {
        /// The header, digest included (it carries the protocol's flags, e.g. "last").
        header: HeaderBytes,
        /// The command.
        tag: Tag,
        /// Offset of the data in the command's buffer.
        offset: u64,
        /// Data bytes.
        len: u32,
        /// The verdict on the data digest.
        digest: DigestStatus,
    },
    /// A teardown completed: the buffer is the caller's again.
    Released {
        /// The command.
        tag: Tag,
        /// Its buffer, with whatever data was placed.
        buffer: SgBuffer,
        /// Whether the backend had mapped it (else the CPU placed all of its data).
        offloaded: bool,
    },
    /// A PDU was refused for this reason and its payload discarded: the CPU wrote none of it.
    /// (A device that places by tag may already have written it, but only into that same
    /// command's registered range, as hardware does; the protocol fails the command.) See
    /// [`Error::is_fatal`]: these never are.
    Error(Error),
}

/// What [`Engine::setup`] did with a command's buffer. Either way the engine holds it until
/// [`Event::Released`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SetupOutcome {
    /// The backend mapped the buffer; the device may place data directly.
    Offloaded,
    /// The engine places the data by copying, for this reason.
    Copied(Decline),
}

/// Where the next bytes read from a socket should go; see [`Engine::read_target`].
#[derive(Debug)]
pub enum ReadTarget<'a> {
    /// Payload of a registered command: read into this slice of its buffer, then call
    /// [`Engine::commit_in_place`].
    InPlace(&'a mut [u8]),
    /// Not payload of a registered command: read at most this many bytes into a receive buffer
    /// and pass them to [`Engine::receive`]. Reading more is allowed but may pull payload through
    /// the receive buffer (a CPU copy).
    Bytes(usize),
}

/// Engine settings beyond the queue's configuration.
#[derive(Clone, Copy, Debug)]
pub struct EngineOptions {
    /// Most data bytes buffered for one control PDU.
    pub max_control_data: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_control_data: 1 << 20,
        }
    }
}

/// How many recent PDU starts are remembered to answer late resync requests.
const RECENT_STARTS: usize = 32;

#[derive(Debug)]
struct TagEntry {
    buffer: SgBuffer,
    offloaded: bool,
    finished: bool,
    received: RangeSet,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Stage {
    Header,
    Gap,
    Data,
    Pad,
    Digest,
}

#[derive(Debug)]
enum Sink {
    /// Data goes to a registered buffer.
    Place { tag: Tag, offloaded: bool },
    /// Data is buffered for a control event.
    Control(Vec<u8>),
    /// Data is discarded (the error was reported when the header arrived).
    Discard,
}

/// The PDU being received, once its header is known.
#[derive(Debug)]
struct Pdu {
    layout: PduLayout,
    seq: TcpSeq,
    sink: Sink,
    /// Data bytes of this PDU received so far.
    data_done: u32,
    /// Running digest; covers all data (and pad) so far when `crc_complete`.
    crc: Crc32c,
    crc_complete: bool,
    /// Every byte of data, pad and digest so far came with the backend's "digest ok".
    all_ok: bool,
    pad: [u8; 4],
    pad_done: u8,
    digest: [u8; 4],
    digest_done: u8,
}

/// The receive engine of one queue (one TCP connection): the sans-IO heart of the contract.
///
/// It owns the protocol plugin, the backend handle and every registered buffer. Input comes in
/// through [`receive`](Engine::receive) (stream pieces, possibly annotated by the backend) or
/// the reader path ([`read_target`](Engine::read_target) +
/// [`commit_in_place`](Engine::commit_in_place)); commands through [`setup`](Engine::setup)
/// and [`teardown`](Engine::teardown); output through [`poll_event`](Engine::poll_event). It
/// does no I/O, reads no clock and spawns nothing.
///
/// # Example
///
/// See the crate-level documentation.
pub struct Engine<P: Protocol, B: DdpBackend> {
    protocol: P,
    backend: B,
    config: QueueConfig,
    options: EngineOptions,
    limits: Option<Limits>,
    offloaded: bool,
    tags: IdMap<Tag, TagEntry>,
    stage: Stage,
    header: HeaderBytes,
    /// Bytes of the current header needed before the next step (prefix, then full length).
    header_need: usize,
    pdu: Option<Pdu>,
    /// Bytes left in the current stage (gap, data, pad).
    stage_left: u32,
    stream_pos: u64,
    /// Sequence number of the current PDU's first byte.
    pdu_start: TcpSeq,
    pending_resync: Option<TcpSeq>,
    /// The window the last [`Engine::read_target`] handed out: command, offset, length.
    offered: Option<(Tag, u64, usize)>,
    /// Teardowns the backend refused to start (out of resources): the device may still write,
    /// so the buffers stay here and the teardowns are retried on every poll.
    teardown_retry: Vec<Tag>,
    recent_starts: VecDeque<TcpSeq>,
    events: VecDeque<Event>,
    stats: Stats,
    failed: bool,
}

impl<P: Protocol, B: DdpBackend> Engine<P, B> {
    /// Creates the engine of one queue and offers the queue to the backend (the kernel's
    /// `sk_add`). A backend that declines the protocol or the queue is not an error: the queue
    /// then runs in software, with every command copied.
    pub fn new(protocol: P, mut backend: B, config: QueueConfig, options: EngineOptions) -> Self {
        let mut stats = Stats::default();
        let limits = backend.limits(protocol.id());
        let offloaded = match limits {
            Some(limits) if config.queue_depth <= limits.max_queue_depth => {
                backend.queue_add(&config).is_ok()
            }
            _ => false,
        };
        if offloaded {
            stats.queues_added += 1;
        } else {
            stats.queues_add_failed += 1;
        }
        let header_need = protocol.prefix_len();
        Self {
            protocol,
            backend,
            config,
            options,
            limits,
            offloaded,
            tags: IdMap::default(),
            stage: Stage::Header,
            header: HeaderBytes::new(),
            header_need,
            pdu: None,
            stage_left: 0,
            stream_pos: 0,
            pdu_start: config.rx_seq,
            pending_resync: None,
            offered: None,
            teardown_retry: Vec::new(),
            recent_starts: VecDeque::with_capacity(RECENT_STARTS),
            events: VecDeque::new(),
            stats,
            failed: false,
        }
    }

    // ----- getters -----

    /// The queue's configuration.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Whether the backend offloads this queue.
    pub fn is_offloaded(&self) -> bool {
        self.offloaded
    }

    /// The backend's limits for this queue's protocol, if it offloads it.
    pub fn limits(&self) -> Option<&Limits> {
        self.limits.as_ref()
    }

    /// This queue's counters (the backend's device-wide ones: [`DdpBackend::stats`]).
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The protocol plugin.
    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    /// The protocol plugin, to apply negotiated settings (digests, alignment).
    pub fn protocol_mut(&mut self) -> &mut P {
        &mut self.protocol
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, e.g. for a device model to deliver packets. Mapping and unmapping must go
    /// through the engine.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// TCP sequence number of the next stream byte the engine expects.
    pub fn next_seq(&self) -> TcpSeq {
        self.config.rx_seq.wrapping_add(self.stream_pos as u32)
    }

    /// Bytes of `tag`'s buffer that received data so far, or `None` if no buffer is registered.
    pub fn received(&self, tag: Tag) -> Option<u64> {
        self.tags.get(&tag).map(|e| e.received.covered())
    }

    /// The most payload bytes one PDU may still bring into a registered buffer: for the PDU
    /// being received, all of its data (even once part of it is in, so that a large PDU is
    /// read in place to its end); for a command not yet torn down, its buffer's length minus
    /// what has arrived (a protocol may tear its command down as soon as the last PDU's header
    /// is in). 0 with nothing registered. A reader chooses how to read with it: while every
    /// outstanding command is small, one large read through a receive buffer (copying those
    /// small payloads) costs less than a system call per header and one per payload.
    /// O(commands registered).
    pub fn max_expected_payload(&self) -> u64 {
        let current = match &self.pdu {
            Some(pdu) if matches!(pdu.sink, Sink::Place { .. }) => match self.stage {
                Stage::Header | Stage::Gap | Stage::Data => u64::from(pdu.layout.data_len),
                Stage::Pad | Stage::Digest => 0,
            },
            _ => 0,
        };
        self.tags
            .values()
            .filter(|e| !e.finished)
            .map(|e| e.buffer.len().saturating_sub(e.received.covered()))
            .fold(current, u64::max)
    }

    /// For the reader path, while a PDU's data is being received: the data bytes it has left,
    /// and how many bytes after them a read may take into a receive buffer (for
    /// [`receive`](Self::receive)) without pulling the next PDU's payload through it (the pad
    /// and data digest, and the next PDU's typical header). `None` outside PDU data. When the
    /// in-place window from [`read_target`](Self::read_target) covers all the data left, one
    /// vectored read into the window and a receive buffer saves the separate read of what
    /// follows the payload.
    pub fn after_payload(&self) -> Option<(usize, usize)> {
        match (&self.pdu, self.stage) {
            (Some(_), Stage::Data) => {
                let left = self.stage_left as usize;
                Some((left, self.bytes_to_next_payload() - left))
            }
            _ => None,
        }
    }

    /// Whether the engine failed (a fatal error) and takes no more input.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Whether a PDU is partly received (the stream is not at a PDU boundary).
    pub fn is_mid_pdu(&self) -> bool {
        self.stage != Stage::Header || !self.header.is_empty()
    }

    /// Number of tags holding a buffer (including those whose teardown is pending).
    pub fn registered(&self) -> usize {
        self.tags.len()
    }

    /// A registered buffer, for a device model that writes payload into it (direct memory
    /// access). Only for `tag`s the backend mapped.
    pub fn dma_buffer(&mut self, tag: Tag) -> Option<&mut SgBuffer> {
        self.tags
            .get_mut(&tag)
            .filter(|e| e.offloaded)
            .map(|e| &mut e.buffer)
    }

    // ----- input -----

    /// Consumes the next piece of the in-order byte stream. The piece may end anywhere, even
    /// within a header or a digest.
    ///
    /// # Errors
    ///
    /// A fatal [`Error`]: the stream cannot be framed or trusted any more; the engine takes no
    /// more input. Per-PDU problems are reported as [`Event::Error`] instead.
    pub fn receive(&mut self, piece: Piece<'_>) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        self.offered = None;
        self.drain_backend();
        let result = match piece {
            Piece::Bytes { data, digest_ok } => self.receive_bytes(data, digest_ok),
            Piece::Placed {
                tag,
                offset,
                len,
                digest_ok,
            } => self.receive_placed(len, digest_ok, Some((tag, offset))),
        };
        if let Err(error) = result {
            self.failed = true;
            self.stats.errors += 1;
            self.stats.drops += 1;
            return Err(error);
        }
        Ok(())
    }

    /// Where the next socket bytes should be read to: straight into a command's buffer when the
    /// stream is at payload of a registered command, else into a receive buffer. This is the
    /// reader path: payload never passes through an intermediate buffer.
    pub fn read_target(&mut self) -> ReadTarget<'_> {
        let window = self.at_payload();
        let bytes = self.bytes_to_next_payload();
        let left = self.stage_left as usize;
        self.offered = None;
        match window.and_then(|(tag, at)| Some((tag, self.tags.get_mut(&tag)?, at))) {
            Some((tag, entry, at)) => {
                let slice = entry.buffer.contiguous_mut(at, left);
                self.offered = Some((tag, at, slice.len()));
                ReadTarget::InPlace(slice)
            }
            None => ReadTarget::Bytes(bytes),
        }
    }

    /// Records that `n` bytes were read into the slice [`read_target`](Engine::read_target)
    /// returned. The bytes are digested now, while they are hot in cache.
    ///
    /// # Errors
    ///
    /// As [`receive`](Engine::receive); also [`Error::BackendViolation`] if `n` exceeds what
    /// `read_target` offered.
    pub fn commit_in_place(&mut self, n: usize) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        let offered = self.offered.take();
        let result = match offered {
            _ if n == 0 => Ok(()),
            Some((tag, at, window)) if n <= window && self.at_payload() == Some((tag, at)) => {
                // `n` fits the window, which fits the PDU's data, so it fits a u32.
                self.receive_placed(n as u32, false, None)
            }
            _ => Err(Error::BackendViolation(
                "commit beyond the window read_target offered",
            )),
        };
        if let Err(error) = result {
            self.failed = true;
            self.stats.errors += 1;
            return Err(error);
        }
        Ok(())
    }

    /// The command and buffer offset the next stream byte belongs to, when it is payload of a
    /// registered command.
    fn at_payload(&self) -> Option<(Tag, u64)> {
        match &self.pdu {
            Some(
                pdu @ Pdu {
                    sink: Sink::Place { tag, .. },
                    ..
                },
            ) if self.stage == Stage::Data && self.stage_left > 0 => Some((*tag, pdu_offset(pdu))),
            _ => None,
        }
    }

    // ----- commands -----

    /// Registers `buffer` for `tag`'s data, before the command is sent. The engine offers it to
    /// the backend when the backend's limits admit it; otherwise, or if the backend refuses, the
    /// engine places the data by copying. Either way the buffer is the engine's until
    /// [`Event::Released`] hands it back.
    ///
    /// # Errors
    ///
    /// [`Error::TagInUse`] if `tag` still holds a buffer (its teardown may not have completed);
    /// the buffer comes back with the error.
    pub fn setup(&mut self, tag: Tag, buffer: SgBuffer) -> Result<SetupOutcome, (Error, SgBuffer)> {
        self.drain_backend();
        if self.tags.contains_key(&tag) {
            return Err((Error::TagInUse(tag), buffer));
        }
        let outcome = self.offer(tag, &buffer);
        let offloaded = outcome == SetupOutcome::Offloaded;
        self.tags.insert(
            tag,
            TagEntry {
                buffer,
                offloaded,
                finished: false,
                received: RangeSet::default(),
            },
        );
        Ok(outcome)
    }

    /// Ends `tag`'s command: data for it is refused from now on, and the buffer comes back in
    /// [`Event::Released`] once the backend's teardown completed (at once for copied commands
    /// and synchronous backends).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTag`] if no buffer is registered, [`Error::TagFinished`] if the teardown
    /// already started.
    pub fn teardown(&mut self, tag: Tag) -> Result<(), Error> {
        let entry = self.tags.get_mut(&tag).ok_or(Error::UnknownTag(tag))?;
        if entry.finished {
            return Err(Error::TagFinished(tag));
        }
        entry.finished = true;
        self.stats.teardowns += 1;
        // Data of a PDU in flight for this command goes nowhere from now on.
        if let Some(pdu) = &mut self.pdu
            && matches!(pdu.sink, Sink::Place { tag: t, .. } if t == tag)
        {
            pdu.sink = Sink::Discard;
        }
        if !entry.offloaded {
            self.release(tag);
            return Ok(());
        }
        self.start_teardown(tag);
        self.drain_backend();
        Ok(())
    }

    /// Asks the backend to unmap `tag`. Only a backend that holds no mapping for it
    /// (`UnknownTag`) lets the buffer go at once; any other refusal means the device may still
    /// write into it, so the engine keeps it and retries on the next poll.
    fn start_teardown(&mut self, tag: Tag) {
        let result = self.backend.teardown(self.config.queue_id, tag);
        match result {
            Ok(()) => {}
            Err(BackendError::UnknownTag(_)) => self.release(tag),
            Err(_) => self.teardown_retry.push(tag),
        }
    }

    /// Offers the queue to the backend again with `config` (queue delete, then add): for
    /// settings negotiated after the engine was created, such as digests agreed at login. The
    /// kernel likewise offloads a socket only once the connection is set up. Returns whether
    /// the backend now offloads the queue.
    ///
    /// The stream position carries over: `config.rx_seq` is replaced by
    /// [`next_seq`](Engine::next_seq), so a device starts tracking at the next PDU.
    ///
    /// # Errors
    ///
    /// [`Error::Busy`] unless the stream is between PDUs and no command holds a buffer (a
    /// device must not lose mappings or a PDU in flight); nothing changes then.
    pub fn reconfigure(&mut self, mut config: QueueConfig) -> Result<bool, Error> {
        if self.is_mid_pdu() || !self.tags.is_empty() {
            return Err(Error::Busy);
        }
        config.rx_seq = self.next_seq();
        if self.offloaded {
            self.backend.queue_del(self.config.queue_id);
            self.stats.queues_deleted += 1;
            self.offloaded = false;
        }
        self.pending_resync = None;
        self.recent_starts.clear();
        self.limits = self.backend.limits(self.protocol.id());
        self.offloaded = match self.limits {
            Some(limits) if config.queue_depth <= limits.max_queue_depth => {
                self.backend.queue_add(&config).is_ok()
            }
            _ => false,
        };
        if self.offloaded {
            self.stats.queues_added += 1;
        } else {
            self.stats.queues_add_failed += 1;
        }
        self.config = config;
        Ok(self.offloaded)
    }

    /// Tears down every command still registered (for closing the connection).
    pub fn teardown_all(&mut self) {
        let tags: Vec<Tag> = self
            .tags
            .iter()
            .filter(|(_, e)| !e.finished)
            .map(|(t, _)| *t)
            .collect();
        for tag in tags {
            // Every tag in the list is registered and not finished, so teardown succeeds.
            let _ = self.teardown(tag);
        }
    }

    // ----- output -----

    /// The next event, if any. Also collects the backend's completions.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events.is_empty() {
            self.drain_backend();
        }
        self.events.pop_front()
    }

    // ----- private: backend -----

    fn offer(&mut self, tag: Tag, buffer: &SgBuffer) -> SetupOutcome {
        let decline = match &self.limits {
            _ if !self.offloaded => Some(Decline::QueueNotOffloaded),
            Some(limits) => limits.decline_reason(
                tag,
                buffer.len(),
                buffer.segment_count(),
                self.config.queue_depth,
            ),
            None => Some(Decline::QueueNotOffloaded),
        };
        if let Some(reason) = decline {
            self.stats.setups_declined += 1;
            return SetupOutcome::Copied(reason);
        }
        match self
            .backend
            .setup(self.config.queue_id, &DdpIo { tag, buffer })
        {
            Ok(()) => {
                self.stats.setups += 1;
                SetupOutcome::Offloaded
            }
            Err(e) => {
                self.stats.setup_failures += 1;
                SetupOutcome::Copied(Decline::Backend(e))
            }
        }
    }

    fn drain_backend(&mut self) {
        if !self.offloaded {
            return;
        }
        if !self.teardown_retry.is_empty() {
            for tag in core::mem::take(&mut self.teardown_retry) {
                self.start_teardown(tag);
            }
        }
        while let Some(event) = self.backend.poll_event(self.config.queue_id) {
            match event {
                BackendEvent::ResyncRequest { seq } => {
                    self.stats.resync_requests += 1;
                    self.on_resync_request(seq);
                }
                BackendEvent::TeardownDone { tag } => {
                    if self
                        .tags
                        .get(&tag)
                        .is_some_and(|e| e.finished && e.offloaded)
                    {
                        self.release(tag);
                    }
                }
            }
        }
    }

    fn release(&mut self, tag: Tag) {
        if let Some(entry) = self.tags.remove(&tag) {
            self.stats.teardowns_completed += 1;
            self.events.push_back(Event::Released {
                tag,
                buffer: entry.buffer,
                offloaded: entry.offloaded,
            });
        }
    }

    fn on_resync_request(&mut self, seq: TcpSeq) {
        let here = self.next_seq();
        let ahead = here.distance_to(seq);
        let at_boundary = !self.is_mid_pdu();
        if ahead > 0 {
            // Not reached yet: answer when the stream gets there.
            self.pending_resync = Some(seq);
        } else if ahead == 0 {
            // The next byte starts a PDU exactly when the stream is between PDUs.
            self.answer_resync(seq, at_boundary);
        } else {
            // Already passed: answer from memory of recent PDU starts.
            let known = self.recent_starts.contains(&seq);
            self.answer_resync(seq, known);
        }
    }

    fn answer_resync(&mut self, seq: TcpSeq, pdu_starts_here: bool) {
        self.pending_resync = None;
        if pdu_starts_here {
            self.stats.resync_confirmed += 1;
        } else {
            self.stats.resync_refused += 1;
        }
        self.backend
            .resync_response(self.config.queue_id, seq, pdu_starts_here);
    }

    /// Called at the first byte of every PDU.
    fn on_pdu_start(&mut self) {
        let here = self.next_seq();
        self.pdu_start = here;
        if self.recent_starts.len() == RECENT_STARTS {
            self.recent_starts.pop_front();
        }
        self.recent_starts.push_back(here);
        if let Some(seq) = self.pending_resync {
            match here.distance_to(seq) {
                0 => self.answer_resync(seq, true),
                d if d < 0 => self.answer_resync(seq, false),
                _ => {}
            }
        }
    }

    // ----- private: framing -----

    fn receive_bytes(&mut self, mut data: &[u8], digest_ok: bool) -> Result<(), Error> {
        while !data.is_empty() {
            let n = match self.stage {
                Stage::Header => self.take_header(data)?,
                Stage::Gap => {
                    let n = data.len().min(self.stage_left as usize);
                    self.stage_left -= n as u32;
                    n
                }
                Stage::Data => self.take_data(data, digest_ok),
                Stage::Pad => self.take_pad(data, digest_ok),
                Stage::Digest => self.take_digest(data, digest_ok),
            };
            data = &data[n..];
            self.stream_pos += n as u64;
            self.advance();
        }
        Ok(())
    }

    /// `at` is where a device says it placed the bytes; `None` for the reader path, where the
    /// engine itself chose the destination.
    fn receive_placed(
        &mut self,
        mut len: u32,
        digest_ok: bool,
        mut at: Option<(Tag, u64)>,
    ) -> Result<(), Error> {
        while len > 0 {
            if self.stage != Stage::Data {
                return Err(Error::BackendViolation("placed bytes outside PDU data"));
            }
            let n = len.min(self.stage_left);
            self.take_placed(n, digest_ok, at)?;
            if let Some((_, offset)) = &mut at {
                *offset += u64::from(n);
            }
            len -= n;
            self.stream_pos += u64::from(n);
            self.advance();
        }
        Ok(())
    }

    fn take_header(&mut self, data: &[u8]) -> Result<usize, Error> {
        if self.header.is_empty() {
            self.on_pdu_start();
        }
        let n = data.len().min(self.header_need - self.header.len());
        self.header.extend_from_slice(&data[..n]);
        if self.header.len() < self.header_need {
            return Ok(n);
        }
        if self.header.len() == self.protocol.prefix_len() && self.pdu.is_none() {
            let full = self.protocol.header_len(&self.header)?;
            let max = self.protocol.max_header_len();
            if full > max {
                return Err(Error::HeaderTooLong { len: full, max });
            }
            if full < self.header.len() {
                return Err(Error::Header(crate::HeaderError::LengthOverflow));
            }
            self.header_need = full;
            if full > self.header.len() {
                return Ok(n);
            }
        }
        self.on_header()?;
        Ok(n)
    }

    fn on_header(&mut self) -> Result<(), Error> {
        let seq = self.pdu_start;
        if self.protocol.has_header_digest(&self.header) {
            let (body, digest) = self.header.split_at(self.header.len() - 4);
            let mut crc = Crc32c::new();
            crc.update(body);
            self.stats.digests_computed += 1;
            let received = crate::digest::from_wire([digest[0], digest[1], digest[2], digest[3]]);
            if crc.value() != received {
                self.stats.digests_failed += 1;
                return Err(Error::HeaderDigest {
                    computed: crc.value(),
                    received,
                });
            }
        }
        let layout = self.protocol.parse(&self.header)?;
        layout.total_len()?;
        if layout.header_len as usize != self.header.len() {
            return Err(Error::Header(crate::HeaderError::LengthOverflow));
        }
        self.stats.pdus += 1;
        let sink = match layout.placement {
            Some(placement) => self.place_sink(placement, layout.data_len),
            None if layout.data_len > self.options.max_control_data => {
                return Err(Error::ControlTooLarge {
                    len: layout.data_len,
                    max: self.options.max_control_data,
                });
            }
            None => Sink::Control(Vec::with_capacity(layout.data_len as usize)),
        };
        self.pdu = Some(Pdu {
            layout,
            seq,
            sink,
            data_done: 0,
            crc: Crc32c::new(),
            crc_complete: true,
            all_ok: true,
            pad: [0; 4],
            pad_done: 0,
            digest: [0; 4],
            digest_done: 0,
        });
        self.stage = Stage::Gap;
        self.stage_left = layout.data_offset - layout.header_len;
        Ok(())
    }

    fn place_sink(&mut self, placement: Placement, len: u32) -> Sink {
        let Placement { tag, offset } = placement;
        let error = match self.tags.get_mut(&tag) {
            None => Error::UnknownTag(tag),
            Some(entry) if entry.finished => Error::TagFinished(tag),
            Some(entry) => match entry.buffer.check_range(offset, u64::from(len)) {
                Err(e) => Error::DataOutOfRange {
                    tag,
                    offset,
                    len,
                    buffer_len: e.buffer_len,
                },
                Ok(()) => match entry
                    .received
                    .insert_disjoint(offset, offset + u64::from(len))
                {
                    Err(Refused::Overlap) => Error::DuplicateData { tag, offset, len },
                    Err(Refused::TooMany) => Error::TooFragmented { tag },
                    Ok(()) => {
                        return Sink::Place {
                            tag,
                            offloaded: entry.offloaded,
                        };
                    }
                },
            },
        };
        self.stats.errors += 1;
        self.events.push_back(Event::Error(error));
        Sink::Discard
    }

    /// Moves to the next stage when the current one is done; finishes the PDU at its end.
    fn advance(&mut self) {
        loop {
            let Some(pdu) = &self.pdu else { return };
            let layout = pdu.layout;
            let done = match self.stage {
                Stage::Header => return,
                Stage::Gap | Stage::Data | Stage::Pad => self.stage_left == 0,
                Stage::Digest => pdu.digest_done == 4,
            };
            if !done {
                return;
            }
            let (next, left) = match self.stage {
                Stage::Gap => (Stage::Data, layout.data_len),
                Stage::Data => (Stage::Pad, layout.data_pad),
                Stage::Pad if layout.data_digest => (Stage::Digest, 4),
                _ => {
                    self.finish_pdu();
                    return;
                }
            };
            self.stage = next;
            self.stage_left = left;
        }
    }

    fn take_data(&mut self, data: &[u8], digest_ok: bool) -> usize {
        let n = data.len().min(self.stage_left as usize);
        let src = &data[..n];
        self.stage_left -= n as u32;
        let Some(pdu) = self.pdu.as_mut() else {
            return n;
        };
        let digest = pdu.layout.data_digest;
        if digest {
            pdu.all_ok &= digest_ok;
        }
        match &mut pdu.sink {
            Sink::Place { tag, .. } => {
                let (tag, at) = (*tag, pdu_offset(pdu));
                if let Some(entry) = self.tags.get_mut(&tag) {
                    if digest && !pdu.all_ok {
                        ensure_crc(pdu, &entry.buffer);
                        let crc = &mut pdu.crc;
                        // The range was checked against the buffer when the header arrived.
                        let _ = entry
                            .buffer
                            .write_with(at, src, |d, s| B::copy_with_crc(d, s, Some(crc)));
                    } else {
                        pdu.crc_complete &= !digest;
                        let _ = entry
                            .buffer
                            .write_with(at, src, |d, s| B::copy_with_crc(d, s, None));
                    }
                    self.stats.bytes_copied += n as u64;
                }
            }
            Sink::Control(buf) => {
                buf.extend_from_slice(src);
                if digest {
                    pdu.crc.update(src);
                }
            }
            Sink::Discard => {}
        }
        pdu.data_done += n as u32;
        n
    }

    fn take_placed(
        &mut self,
        n: u32,
        digest_ok: bool,
        at: Option<(Tag, u64)>,
    ) -> Result<(), Error> {
        let read = at.is_none();
        self.stage_left -= n;
        let Some(pdu) = self.pdu.as_mut() else {
            return Err(Error::BackendViolation("placed bytes outside a PDU"));
        };
        if let (Some(at), Sink::Place { tag, .. }) = (at, &pdu.sink)
            && at != (*tag, pdu_offset(pdu))
        {
            return Err(Error::BackendViolation(
                "placed bytes elsewhere than the stream puts them",
            ));
        }
        let digest = pdu.layout.data_digest;
        if digest {
            pdu.all_ok &= digest_ok;
        }
        match pdu.sink {
            Sink::Place { tag, offloaded } => {
                if !offloaded && !read {
                    return Err(Error::BackendViolation(
                        "placed bytes for an unmapped command",
                    ));
                }
                let at = pdu_offset(pdu);
                if let Some(entry) = self.tags.get(&tag) {
                    if digest && !pdu.all_ok {
                        ensure_crc(pdu, &entry.buffer);
                        let crc = &mut pdu.crc;
                        let _ = entry.buffer.read_with(at, u64::from(n), |p| crc.update(p));
                    } else {
                        pdu.crc_complete &= !digest;
                    }
                }
                if read {
                    self.stats.bytes_read_in_place += u64::from(n);
                } else {
                    self.stats.bytes_placed += u64::from(n);
                }
            }
            // A device may still place for a command whose teardown is in flight; the bytes
            // landed in a buffer the engine still owns and are ignored.
            Sink::Discard => {}
            Sink::Control(_) => {
                return Err(Error::BackendViolation("placed bytes of a control PDU"));
            }
        }
        pdu.data_done += n;
        Ok(())
    }

    fn take_pad(&mut self, data: &[u8], digest_ok: bool) -> usize {
        let n = data.len().min(self.stage_left as usize);
        self.stage_left -= n as u32;
        if let Some(pdu) = self.pdu.as_mut() {
            let digest = pdu.layout.data_digest && pdu.layout.digest_covers_pad;
            for &b in &data[..n] {
                if let Some(slot) = pdu.pad.get_mut(pdu.pad_done as usize) {
                    *slot = b;
                }
                pdu.pad_done = pdu.pad_done.saturating_add(1);
            }
            if digest {
                pdu.all_ok &= digest_ok;
                if pdu.crc_complete {
                    pdu.crc.update(&data[..n]);
                }
            }
        }
        n
    }

    fn take_digest(&mut self, data: &[u8], digest_ok: bool) -> usize {
        let Some(pdu) = self.pdu.as_mut() else {
            return data.len();
        };
        let n = data.len().min(4 - pdu.digest_done as usize);
        let start = pdu.digest_done as usize;
        pdu.digest[start..start + n].copy_from_slice(&data[..n]);
        pdu.digest_done += n as u8;
        pdu.all_ok &= digest_ok;
        n
    }

    fn finish_pdu(&mut self) {
        let Some(mut pdu) = self.pdu.take() else {
            return;
        };
        let header = core::mem::take(&mut self.header);
        self.header_need = self.protocol.prefix_len();
        self.stage = Stage::Header;
        self.stage_left = 0;
        let verdict = if !pdu.layout.data_digest {
            DigestStatus::Absent
        } else if pdu.all_ok {
            self.stats.digests_offloaded += 1;
            DigestStatus::Offloaded
        } else {
            if let Sink::Place { tag, .. } = pdu.sink
                && let Some(entry) = self.tags.get(&tag)
            {
                ensure_crc(&mut pdu, &entry.buffer);
            }
            self.stats.digests_computed += 1;
            let received = crate::digest::from_wire(pdu.digest);
            let computed = pdu.crc.value();
            if computed == received {
                DigestStatus::Computed
            } else {
                self.stats.digests_failed += 1;
                DigestStatus::Mismatch { computed, received }
            }
        };
        let event = match pdu.sink {
            Sink::Place { tag, .. } => {
                self.stats.data_pdus += 1;
                Event::Data {
                    header,
                    tag,
                    // Place sinks always come from a layout with a placement.
                    offset: pdu.layout.placement.map_or(0, |p| p.offset),
                    len: pdu.layout.data_len,
                    digest: verdict,
                }
            }
            Sink::Control(data) => Event::Control {
                header,
                data,
                digest: verdict,
                seq: pdu.seq,
            },
            Sink::Discard => return,
        };
        self.events.push_back(event);
    }

    /// Bytes from here up to the next payload that could be read in place: the rest of the
    /// current PDU when none of it can, plus the next PDU's typical header (reading a little
    /// too far only costs a small copy; reading too little costs a system call).
    fn bytes_to_next_payload(&self) -> usize {
        let next_header = self
            .protocol
            .typical_header_len()
            .max(self.protocol.prefix_len());
        let Some(pdu) = &self.pdu else {
            // In a header: the rest of what is needed now, or the typical header if longer.
            let need = self.header_need - self.header.len();
            return if self.header.is_empty() {
                need.max(next_header)
            } else {
                need
            };
        };
        let l = pdu.layout;
        let digest = if l.data_digest { 4 } else { 0 };
        let placeable = matches!(pdu.sink, Sink::Place { .. }) && l.data_len > 0;
        let rest_after_data = (l.data_pad + digest) as usize;
        match self.stage {
            Stage::Header => self.header_need - self.header.len(),
            Stage::Gap if placeable => self.stage_left as usize,
            Stage::Gap => {
                self.stage_left as usize + l.data_len as usize + rest_after_data + next_header
            }
            Stage::Data => self.stage_left as usize + rest_after_data + next_header,
            Stage::Pad => self.stage_left as usize + digest as usize + next_header,
            Stage::Digest => (4 - pdu.digest_done as usize) + next_header,
        }
    }
}

impl<P: Protocol, B: DdpBackend> Drop for Engine<P, B> {
    fn drop(&mut self) {
        if self.offloaded {
            self.backend.queue_del(self.config.queue_id);
        }
    }
}

impl<P: Protocol, B: DdpBackend> core::fmt::Debug for Engine<P, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Engine")
            .field("queue", &self.config.queue_id)
            .field("offloaded", &self.offloaded)
            .field("registered", &self.tags.len())
            .field("next_seq", &self.next_seq())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// Command offset of the PDU's next data byte.
fn pdu_offset(pdu: &Pdu) -> u64 {
    pdu.layout.placement.map_or(0, |p| p.offset) + u64::from(pdu.data_done)
}

/// Makes the running digest cover all data received so far, recomputing it from the buffer
/// when earlier bytes were skipped because the backend had vouched for them (the fallback the
/// kernel also takes: a second pass, only when the device's verdict turns out incomplete).
fn ensure_crc(pdu: &mut Pdu, buffer: &SgBuffer) {
    if pdu.crc_complete {
        return;
    }
    let mut crc = Crc32c::new();
    let start = pdu.layout.placement.map_or(0, |p| p.offset);
    let _ = buffer.read_with(start, u64::from(pdu.data_done), |p| crc.update(p));
    if pdu.layout.digest_covers_pad {
        let pad = (pdu.pad_done as usize).min(4);
        crc.update(&pdu.pad[..pad]);
    }
    pdu.crc = crc;
    pdu.crc_complete = true;
}
