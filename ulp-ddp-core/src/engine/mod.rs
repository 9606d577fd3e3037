//! The receive engine: tracks PDUs in a queue's in-order byte stream and drives a backend.
//!
//! [`Engine`] is split by concern: framing the stream (`framer`: header, gap, data, pad,
//! digest; each header framed, digest-checked and parsed once), the tag table (`tags`: every
//! registered buffer from setup to release) and resync (`resync`: answers to a device that lost
//! PDU boundaries). This module holds the engine's public face.

use smallvec::SmallVec;

use crate::backend::{BackendError, BackendEvent, DdpBackend, DdpIo};
use crate::buffer::SgBuffer;
use crate::config::QueueConfig;
use crate::error::Error;
use crate::limits::{Decline, Limits};
use crate::protocol::Protocol;
use crate::stats::Stats;
use crate::types::{Tag, TcpSeq};

mod event;
mod framer;
mod resync;
mod tags;

pub use event::{DigestStatus, EngineOptions, Event, Piece, ReadTarget, SetupOutcome};

use framer::Framer;
use resync::Resync;
use tags::Tags;

/// A PDU header being collected across pieces (digest included), kept inline up to 72 bytes.
pub(crate) type HeaderBytes = SmallVec<[u8; 72]>;

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
    framer: Framer<P::Header>,
    tags: Tags,
    resync: Resync,
    /// Sequence number of the current PDU's first byte.
    pdu_start: TcpSeq,
    /// The window the last [`Engine::read_target`] handed out: command, offset, length.
    offered: Option<(Tag, u64, usize)>,
    events: std::collections::VecDeque<Event<P>>,
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
        let offloaded = add_queue(&mut backend, limits.as_ref(), &config, &mut stats);
        Self {
            protocol,
            backend,
            config,
            options,
            limits,
            offloaded,
            framer: Framer::default(),
            tags: Tags::default(),
            resync: Resync::default(),
            pdu_start: config.rx_seq,
            offered: None,
            events: std::collections::VecDeque::new(),
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
        self.config
            .rx_seq
            .wrapping_add(self.framer.stream_pos as u32)
    }

    /// Bytes of `tag`'s buffer that received data so far, or `None` if no buffer is registered.
    pub fn received(&self, tag: Tag) -> Option<u64> {
        self.tags.get(tag).map(|e| e.received.covered())
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
        self.current_payload().max(self.tags.max_outstanding())
    }

    /// For the reader path, while a PDU's data is being received (placed, collected for a
    /// control event, or discarded): the data bytes it has left, and how many bytes after them
    /// a read may take into a receive buffer (for [`receive`](Self::receive)) without pulling
    /// the next PDU's payload through it (the pad and data digest, the header-only PDUs the
    /// plugin expects after a command's last data ([`Protocol::expected_after`]), and the next
    /// PDU's typical header). `None` outside PDU data. When the in-place window from
    /// [`read_target`](Self::read_target) covers all the data left, one vectored read into the
    /// window and a receive buffer saves the separate read of what follows the payload.
    pub fn after_payload(&self) -> Option<(usize, usize)> {
        match (&self.framer.pdu, self.framer.stage) {
            (Some(_), framer::Stage::Data) => {
                let left = self.framer.stage_left as usize;
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
        self.framer.is_mid_pdu()
    }

    /// Number of tags holding a buffer (including those whose teardown is pending).
    pub fn registered(&self) -> usize {
        self.tags.len()
    }

    /// A registered buffer, for a device model that writes payload into it (direct memory
    /// access). Only for `tag`s the backend mapped.
    pub fn dma_buffer(&mut self, tag: Tag) -> Option<&mut SgBuffer> {
        self.tags
            .get_mut(tag)
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
    pub fn receive(&mut self, piece: Piece<'_>) -> Result<(), Error<P::Error>> {
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
        result.map_err(|e| self.fail(e))
    }

    /// A fatal error: the engine takes no more input, and the PDU it was in is dropped.
    fn fail(&mut self, error: Error<P::Error>) -> Error<P::Error> {
        self.failed = true;
        self.stats.errors += 1;
        self.stats.drops += 1;
        error
    }

    /// Where the next socket bytes should be read to: straight into a command's buffer when the
    /// stream is at payload of a registered command, else into a receive buffer. This is the
    /// reader path: payload never passes through an intermediate buffer.
    pub fn read_target(&mut self) -> ReadTarget<'_> {
        let window = self.framer.at_payload();
        // Computed up front (a few arithmetic operations): the in-place branch borrows the
        // tag table until it returns.
        let bytes = self.bytes_to_next_payload();
        let left = self.framer.stage_left as usize;
        self.offered = None;
        match window.and_then(|(tag, at)| Some((tag, self.tags.get_mut(tag)?, at))) {
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
    pub fn commit_in_place(&mut self, n: usize) -> Result<(), Error<P::Error>> {
        if self.failed {
            return Err(Error::Failed);
        }
        let offered = self.offered.take();
        let result = match offered {
            _ if n == 0 => Ok(()),
            Some((tag, at, window))
                if n <= window && self.framer.at_payload() == Some((tag, at)) =>
            {
                // `n` fits the window, which fits the PDU's data, so it fits a u32.
                self.receive_placed(n as u32, false, None)
            }
            _ => Err(Error::BackendViolation(
                "commit beyond the window read_target offered",
            )),
        };
        result.map_err(|e| self.fail(e))
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
    #[allow(clippy::type_complexity)]
    pub fn setup(
        &mut self,
        tag: Tag,
        buffer: SgBuffer,
    ) -> Result<SetupOutcome, (Error<P::Error>, SgBuffer)> {
        self.drain_backend();
        if self.tags.contains(tag) {
            return Err((Error::TagInUse(tag), buffer));
        }
        let outcome = self.offer(tag, &buffer);
        self.tags
            .insert(tag, buffer, outcome == SetupOutcome::Offloaded);
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
    pub fn teardown(&mut self, tag: Tag) -> Result<(), Error<P::Error>> {
        let entry = self.tags.get_mut(tag).ok_or(Error::UnknownTag(tag))?;
        if entry.finished {
            return Err(Error::TagFinished(tag));
        }
        entry.finished = true;
        let offloaded = entry.offloaded;
        self.stats.teardowns += 1;
        // Data of a PDU in flight for this command goes nowhere from now on.
        self.discard_in_flight(tag);
        if !offloaded {
            self.release(tag);
            return Ok(());
        }
        self.start_teardown(tag);
        self.drain_backend();
        Ok(())
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
    pub fn reconfigure(&mut self, mut config: QueueConfig) -> Result<bool, Error<P::Error>> {
        if self.is_mid_pdu() || !self.tags.is_empty() {
            return Err(Error::Busy);
        }
        config.rx_seq = self.next_seq();
        if self.offloaded {
            self.backend.queue_del(self.config.queue_id);
            self.stats.queues_deleted += 1;
            self.offloaded = false;
        }
        self.resync.clear();
        self.limits = self.backend.limits(self.protocol.id());
        self.offloaded = add_queue(
            &mut self.backend,
            self.limits.as_ref(),
            &config,
            &mut self.stats,
        );
        self.config = config;
        Ok(self.offloaded)
    }

    /// Tears down every command still registered (for closing the connection).
    pub fn teardown_all(&mut self) {
        for tag in self.tags.unfinished() {
            // Every tag in the list is registered and not finished, so teardown succeeds.
            let _ = self.teardown(tag);
        }
    }

    // ----- output -----

    /// The next event, if any. Also collects the backend's completions.
    pub fn poll_event(&mut self) -> Option<Event<P>> {
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

    /// Asks the backend to unmap `tag`. Only a backend that holds no mapping for it
    /// (`UnknownTag`) lets the buffer go at once; any other refusal means the device may still
    /// write into it, so the engine keeps it and retries on the next poll.
    fn start_teardown(&mut self, tag: Tag) {
        match self.backend.teardown(self.config.queue_id, tag) {
            Ok(()) => {}
            Err(BackendError::UnknownTag(_)) => self.release(tag),
            Err(_) => self.tags.retry.push(tag),
        }
    }

    fn drain_backend(&mut self) {
        if !self.offloaded {
            return;
        }
        if !self.tags.retry.is_empty() {
            for tag in core::mem::take(&mut self.tags.retry) {
                self.start_teardown(tag);
            }
        }
        while let Some(event) = self.backend.poll_event(self.config.queue_id) {
            match event {
                BackendEvent::ResyncRequest { seq } => {
                    self.stats.resync_requests += 1;
                    let here = self.next_seq();
                    let at_boundary = !self.is_mid_pdu();
                    if let Some(answer) = self.resync.request(seq, here, at_boundary) {
                        self.answer_resync(seq, answer);
                    }
                }
                BackendEvent::TeardownDone { tag } => {
                    if self
                        .tags
                        .get(tag)
                        .is_some_and(|e| e.finished && e.offloaded)
                    {
                        self.release(tag);
                    }
                }
            }
        }
    }

    fn release(&mut self, tag: Tag) {
        if let Some(entry) = self.tags.remove(tag) {
            self.stats.teardowns_completed += 1;
            self.events.push_back(Event::Released {
                tag,
                buffer: entry.buffer,
                offloaded: entry.offloaded,
            });
        }
    }

    fn answer_resync(&mut self, seq: TcpSeq, pdu_starts_here: bool) {
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
        // Only a device that offloads the queue asks for resync.
        if self.offloaded
            && let Some((seq, answer)) = self.resync.pdu_start(here)
        {
            self.answer_resync(seq, answer);
        }
    }
}

/// Offers a queue to the backend if its limits admit the queue's depth; counts the outcome.
fn add_queue<B: DdpBackend>(
    backend: &mut B,
    limits: Option<&Limits>,
    config: &QueueConfig,
    stats: &mut Stats,
) -> bool {
    let added = match limits {
        Some(limits) if config.queue_depth <= limits.max_queue_depth => {
            backend.queue_add(config).is_ok()
        }
        _ => false,
    };
    if added {
        stats.queues_added += 1;
    } else {
        stats.queues_add_failed += 1;
    }
    added
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
