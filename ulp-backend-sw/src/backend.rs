//! [`SwBackend`]: mapping bookkeeping, limits, statistics and the CPU data mover.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;

use ulp_ddp_core::digest::{self, Crc32c};
use ulp_ddp_core::types::{IdMap, IdSet};
use ulp_ddp_core::{
    BackendError, BackendEvent, DdpBackend, DdpIo, Limits, ProtocolId, QueueConfig, QueueId, Stats,
    Tag, TcpSeq,
};

#[derive(Debug, Default)]
struct Queue {
    protocol: Option<ProtocolId>,
    depth: u32,
    mapped: IdSet<Tag>,
    events: VecDeque<BackendEvent>,
}

/// How the software backend moves payload bytes on the CPU (its
/// [`DdpBackend::copy_with_crc`]).
pub trait Mover: fmt::Debug + Default + Send + Sync + 'static {
    /// Copies `src` into `dst` (equal lengths), feeding the bytes into `crc` when given.
    fn copy_with_crc(dst: &mut [u8], src: &[u8], crc: Option<&mut Crc32c>);
}

/// Ordinary stores, the destination left in cache
/// ([`copy_with_crc`](ulp_ddp_core::digest::copy_with_crc)): the default, best when the
/// consumer reads the data soon or buffers are small and reused.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cached;

impl Mover for Cached {
    fn copy_with_crc(dst: &mut [u8], src: &[u8], crc: Option<&mut Crc32c>) {
        digest::copy_with_crc(dst, src, crc);
    }
}

/// Streaming (non-temporal) stores, as a DMA engine writes
/// ([`copy_with_crc_streaming`](crate::stream::copy_with_crc_streaming)): best for large
/// command buffers that are not in cache and are not read at once.
#[derive(Clone, Copy, Debug, Default)]
pub struct Streaming;

impl Mover for Streaming {
    fn copy_with_crc(dst: &mut [u8], src: &[u8], crc: Option<&mut Crc32c>) {
        crate::stream::copy_with_crc_streaming(dst, src, crc);
    }
}

/// The software backend. See the [crate documentation](crate).
///
/// By default it offloads every protocol with [`Limits::unlimited`]; [`SwBackend::with_limits`]
/// imposes a device's limits instead (useful to test how a protocol behaves on hardware that
/// declines small or fragmented commands). `M` chooses the CPU data mover: [`Cached`] by
/// default, or [`Streaming`] ([`SwBackend::streaming`]).
#[derive(Debug, Default)]
pub struct SwBackend<M: Mover = Cached> {
    limits: HashMap<ProtocolId, Limits>,
    queues: IdMap<QueueId, Queue>,
    stats: Stats,
    mover: PhantomData<M>,
}

impl SwBackend {
    /// A backend without limits, for every protocol.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend that applies `limits` to their protocol (and no limits to others).
    pub fn with_limits(limits: Limits) -> Self {
        Self::new().limited(limits)
    }

    /// A backend without limits whose data mover uses streaming stores.
    pub fn streaming() -> SwBackend<Streaming> {
        SwBackend::default()
    }
}

impl<M: Mover> SwBackend<M> {
    /// This backend, applying `limits` to their protocol.
    #[must_use]
    pub fn limited(mut self, limits: Limits) -> Self {
        self.limits.insert(limits.protocol, limits);
        self
    }

    /// Number of commands mapped on `queue`.
    pub fn mapped(&self, queue: QueueId) -> usize {
        self.queues.get(&queue).map_or(0, |q| q.mapped.len())
    }
}

impl<M: Mover> DdpBackend for SwBackend<M> {
    fn limits(&self, protocol: ProtocolId) -> Option<Limits> {
        Some(
            self.limits
                .get(&protocol)
                .copied()
                .unwrap_or_else(|| Limits::unlimited(protocol)),
        )
    }

    fn queue_add(&mut self, config: &QueueConfig) -> Result<(), BackendError> {
        let result = self.check_queue(config);
        match result {
            Ok(()) => {
                self.queues.insert(
                    config.queue_id,
                    Queue {
                        protocol: Some(config.protocol),
                        depth: config.queue_depth,
                        ..Queue::default()
                    },
                );
                self.stats.queues_added += 1;
            }
            Err(_) => self.stats.queues_add_failed += 1,
        }
        result
    }

    fn queue_del(&mut self, queue: QueueId) {
        if let Some(q) = self.queues.remove(&queue) {
            self.stats.queues_deleted += 1;
            self.stats.teardowns += q.mapped.len() as u64;
        }
    }

    fn setup(&mut self, queue: QueueId, io: &DdpIo<'_>) -> Result<(), BackendError> {
        let result = self.check_setup(queue, io);
        match result {
            Ok(()) => {
                self.stats.setups += 1;
                if let Some(q) = self.queues.get_mut(&queue) {
                    q.mapped.insert(io.tag);
                }
            }
            Err(_) => self.stats.setup_failures += 1,
        }
        result
    }

    fn teardown(&mut self, queue: QueueId, tag: Tag) -> Result<(), BackendError> {
        let q = self
            .queues
            .get_mut(&queue)
            .ok_or(BackendError::UnknownQueue(queue))?;
        if !q.mapped.remove(&tag) {
            return Err(BackendError::UnknownTag(tag));
        }
        self.stats.teardowns += 1;
        self.stats.teardowns_completed += 1;
        q.events.push_back(BackendEvent::TeardownDone { tag });
        Ok(())
    }

    fn resync_response(&mut self, _queue: QueueId, _seq: TcpSeq, _pdu_starts_here: bool) {
        // The CPU never loses track of PDU boundaries, so it never asks.
    }

    fn poll_event(&mut self, queue: QueueId) -> Option<BackendEvent> {
        self.queues.get_mut(&queue)?.events.pop_front()
    }

    fn stats(&self) -> Stats {
        self.stats
    }

    #[inline]
    fn copy_with_crc(dst: &mut [u8], src: &[u8], crc: Option<&mut Crc32c>) {
        M::copy_with_crc(dst, src, crc);
    }
}

impl<M: Mover> SwBackend<M> {
    fn check_queue(&self, config: &QueueConfig) -> Result<(), BackendError> {
        let limits = self
            .limits(config.protocol)
            .ok_or(BackendError::UnsupportedProtocol(config.protocol))?;
        if self.queues.contains_key(&config.queue_id) {
            return Err(BackendError::QueueExists(config.queue_id));
        }
        if self.queues.len() as u64 >= u64::from(limits.max_queues) {
            return Err(BackendError::TooManyQueues);
        }
        if config.queue_depth > limits.max_queue_depth {
            return Err(BackendError::UnsupportedConfig);
        }
        Ok(())
    }

    fn check_setup(&self, queue: QueueId, io: &DdpIo<'_>) -> Result<(), BackendError> {
        let q = self
            .queues
            .get(&queue)
            .ok_or(BackendError::UnknownQueue(queue))?;
        if q.mapped.contains(&io.tag) {
            return Err(BackendError::TagBusy(io.tag));
        }
        // The engine applies the limits before offering; a direct caller gets the same answer.
        if let Some(limits) = q.protocol.and_then(|p| self.limits.get(&p)) {
            if limits.max_segments != 0
                && io.buffer.segment_count() as u64 > u64::from(limits.max_segments)
            {
                return Err(BackendError::TooManySegments);
            }
            if io.buffer.len() > limits.max_io_bytes {
                return Err(BackendError::TooLarge);
            }
            if !limits.tag_range.admits(io.tag, q.depth) {
                return Err(BackendError::TagOutOfRange(io.tag));
            }
        }
        Ok(())
    }
}
