//! The driver: [`Mlx5Backend`], the `mlx5e_nvmeotcp` logic over a [`Device`].

use std::collections::{HashMap, VecDeque};

use smallvec::SmallVec;
use ulp_ddp_core::digest::Crc32c;
use ulp_ddp_core::{
    BackendError, BackendEvent, DdpBackend, DdpIo, DigestOffload, Limits, ProtocolId, QueueConfig,
    QueueId, Stats, Tag, TagRange, TcpSeq,
};
use ulp_nvme_tcp::NVME_TCP;

use crate::device::{
    Device, DeviceError, Klm, ProgressParams, QueueResources, RxCqe, StaticParams, TrackerState,
};
use crate::sgl::validate_sgl;

/// Most queues the driver offloads: 3,999. The kernel allocates queue ids (which double as
/// flow tags) with `ida_simple_get(&queue_ids, MIN_NUM_NVMEOTCP_QUEUES, MAX_NUM_NVMEOTCP_QUEUES)`,
/// that is from 1 to 4000 with the end exclusive, so ids `1..=3999`.
pub const MAX_QUEUES: u32 = 3999;
/// Most scatter-gather entries per command.
pub const MAX_SGL: u32 = 128;
/// Commands smaller than this are not mapped (`io_threshold`).
pub const IO_THRESHOLD: u32 = 32 * 1024;
/// Most bytes one command maps (128 entries of 4 KiB pages).
pub const MAX_IO_BYTES: u64 = 512 * 1024;

/// The driver's counters: the series' `rx_nvmeotcp_*` statistics (`struct ulp_ddp_stats`,
/// filled by mlx5's `nvmeotcp_stats.c`), counted where `mlx5e_nvmeotcp` counts them.
/// [`named`](Mlx5Stats::named) lists them under the series' names. docs/mlx5.md has the
/// table of names, meanings and where the netlink mapping differs.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct Mlx5Stats {
    /// Queue contexts created (`rx_nvmeotcp_sk_add`, end of `mlx5e_nvmeotcp_queue_init`).
    pub sk_add: u64,
    /// Queue contexts that could not be created (`rx_nvmeotcp_sk_add_fail`, every failure
    /// path of `mlx5e_nvmeotcp_queue_init`).
    pub sk_add_fail: u64,
    /// Queue contexts destroyed (`rx_nvmeotcp_sk_del`).
    pub sk_del: u64,
    /// Commands whose buffer was mapped (`rx_nvmeotcp_ddp_setup`, counted once the KLM UMR is
    /// posted). The series' documentation says "PDUs"; the driver counts commands.
    pub setup: u64,
    /// Commands whose buffer could not be mapped (`rx_nvmeotcp_ddp_setup_fail`): too many
    /// entries, a shape [`validate_sgl`] refuses, and (model only: the kernel has no such
    /// checks) a CCID beyond the queue depth, still mapped, a buffer beyond 512 KiB, or a
    /// UMR the device refuses.
    pub setup_fail: u64,
    /// Invalidation UMRs posted (`rx_nvmeotcp_ddp_teardown`), counted when posted, not when
    /// the completion arrives.
    pub teardown: u64,
    /// Packets dropped in the driver (`rx_nvmeotcp_drop`): completions for a flow tag no queue
    /// has (the series' only case), and (model only) completion chains that do not cover the
    /// segment or place for a CCID the driver has not mapped.
    pub drop: u64,
    /// Completions carrying a resync request (`rx_nvmeotcp_resync`).
    pub resync: u64,
    /// Packets some of whose payload was placed (`rx_nvmeotcp_packets`; before the netlink
    /// interface the ethtool string was `rx_nvmeotcp_offload_packets`).
    pub packets: u64,
    /// Bytes placed into command buffers, the sum of `cclen` (`rx_nvmeotcp_bytes`; ethtool:
    /// `rx_nvmeotcp_offload_bytes`).
    pub bytes: u64,
}

impl Mlx5Stats {
    /// The counters under the series' names, in the order of `struct ulp_ddp_stats`.
    pub fn named(&self) -> [(&'static str, u64); 10] {
        [
            ("rx_nvmeotcp_sk_add", self.sk_add),
            ("rx_nvmeotcp_sk_add_fail", self.sk_add_fail),
            ("rx_nvmeotcp_sk_del", self.sk_del),
            ("rx_nvmeotcp_ddp_setup", self.setup),
            ("rx_nvmeotcp_ddp_setup_fail", self.setup_fail),
            ("rx_nvmeotcp_ddp_teardown", self.teardown),
            ("rx_nvmeotcp_drop", self.drop),
            ("rx_nvmeotcp_resync", self.resync),
            ("rx_nvmeotcp_packets", self.packets),
            ("rx_nvmeotcp_bytes", self.bytes),
        ]
    }
}

/// One run of a received segment as the driver hands it up (the rebuilt skb's fragments).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Run {
    /// `len` bytes left in the receive buffer: the CPU copies whatever of them is payload.
    Bytes {
        /// Bytes in the run.
        len: u32,
    },
    /// `len` payload bytes the device already placed into `tag`'s buffer at `offset`.
    Placed {
        /// The command.
        tag: Tag,
        /// Offset in the command's buffer.
        offset: u32,
        /// Bytes placed.
        len: u32,
    },
}

impl Run {
    /// Stream bytes the run stands for.
    pub fn len(&self) -> u32 {
        match self {
            Self::Bytes { len } | Self::Placed { len, .. } => *len,
        }
    }

    /// Whether the run stands for no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A received segment rebuilt from its completions (the kernel's skb after
/// `mlx5e_nvmeotcp_rebuild_rx_skb`): its runs in order and its digest verdict
/// (`skb->ulp_crc`).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct RxSegment {
    runs: SmallVec<[Run; 4]>,
    crc_ok: bool,
}

impl RxSegment {
    /// A segment of `runs` (adjacent byte runs merged) with digest verdict `crc_ok`.
    pub fn new(runs: impl IntoIterator<Item = Run>, crc_ok: bool) -> Self {
        let mut segment = Self {
            runs: SmallVec::new(),
            crc_ok,
        };
        for run in runs {
            push_run(&mut segment.runs, run);
        }
        segment
    }

    /// The runs, covering the segment's payload in order.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Every data digest the segment's bytes belong to was verified by the device.
    pub fn crc_ok(&self) -> bool {
        self.crc_ok
    }
}

/// What the driver did with a received segment.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum RxOutcome {
    /// Deliver it to the TCP stack.
    Deliver(RxSegment),
    /// The driver dropped it (counted in [`Mlx5Stats::drop`]).
    Dropped,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Ccid {
    Free,
    Mapped { generation: u32 },
    Invalidating { generation: u32 },
}

#[derive(Debug)]
struct Queue {
    flow_tag: u32,
    depth: u32,
    statics: StaticParams,
    ccids: Vec<Ccid>,
    /// Per-CCID generation counter (`ccid_gen`), bumped on every setup.
    generations: Vec<u32>,
    events: VecDeque<BackendEvent>,
    /// The resync request the device raised and software has not answered yet.
    resync_pending: Option<TcpSeq>,
    /// The next completion's digest bit is not trusted (`after_resync_cqe`).
    after_resync_cqe: bool,
}

/// The ConnectX-7 NVMe/TCP receive offload driver over a [`Device`]: implements
/// [`DdpBackend`] the way `mlx5e_nvmeotcp` implements `ulp_ddp_dev_ops`.
///
/// - `queue_add` (`sk_add`): allocates a flow tag in `1..=3999`, creates the queue's resources
///   on the device, posts static params and then, when [`start`](Mlx5Backend::start) gives
///   the stream position, progress params.
/// - `setup`: checks the buffer's shape against the MTU ([`validate_sgl`]), records the CCID's
///   generation and posts a KLM UMR without completion.
/// - `teardown`: posts an invalidation UMR with a completion; `poll_event` turns that
///   completion into [`BackendEvent::TeardownDone`] (the asynchronous `ddp_teardown_done`).
/// - the receive path ([`rx_segment`](Mlx5Backend::rx_segment)) rebuilds each segment from its
///   completions, raises resync requests and distrusts the first digest bit after a resync.
/// - `resync_response`: a confirmation re-posts static params with the confirmed sequence
///   number; a refusal loads progress params in the searching state.
#[derive(Debug)]
pub struct Mlx5Backend<D: Device> {
    device: D,
    queues: HashMap<QueueId, Queue>,
    /// Flow tag to queue (the kernel's rhashtable keyed by queue id).
    flows: HashMap<u32, QueueId>,
    counters: Mlx5Stats,
    teardowns_completed: u64,
}

impl<D: Device> Mlx5Backend<D> {
    /// A driver for `device`.
    pub fn new(device: D) -> Self {
        Self {
            device,
            queues: HashMap::new(),
            flows: HashMap::new(),
            counters: Mlx5Stats::default(),
            teardowns_completed: 0,
        }
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, e.g. for a model to receive packets. Programming it behind the driver's back
    /// breaks the driver's bookkeeping.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The kernel-style counters.
    pub fn counters(&self) -> Mlx5Stats {
        self.counters
    }

    /// Whether `queue` is offloaded.
    pub fn has_queue(&self, queue: QueueId) -> bool {
        self.queues.contains_key(&queue)
    }

    /// Tells the device where the queue's stream stands: the next PDU starts at `next_pdu`.
    /// Queue add does this with the configuration's `rx_seq` (the kernel reads the socket's
    /// `copied_seq` in `sk_add`). Posts progress params with the tracker in the START state.
    ///
    /// # Errors
    ///
    /// [`BackendError::UnknownQueue`] if the queue is not offloaded, or
    /// [`BackendError::NoResources`] if the device refuses the work request.
    pub fn start(&mut self, queue: QueueId, next_pdu: TcpSeq) -> Result<(), BackendError> {
        let q = self
            .queues
            .get(&queue)
            .ok_or(BackendError::UnknownQueue(queue))?;
        let params = ProgressParams {
            next_pdu_tcp_sn: next_pdu,
            pdu_tracker_state: TrackerState::Start,
        };
        self.device
            .post_progress_params(q.flow_tag, &params)
            .map_err(|_| BackendError::NoResources)
    }

    /// Collects the completions of one received segment of `len` bytes and rebuilds it (the
    /// receive handler `mlx5e_nvmeotcp_rebuild_rx_skb` with the resync and digest handling in
    /// front of it).
    pub fn rx_segment(&mut self, len: usize) -> RxOutcome {
        let mut cqes: SmallVec<[RxCqe; 4]> = SmallVec::new();
        while let Some(cqe) = self.device.poll_rx_cq() {
            let last = cqe.last;
            cqes.push(cqe);
            if last {
                break;
            }
        }
        let covered: u64 = cqes
            .iter()
            .map(|c| u64::from(c.hlen) + u64::from(c.cclen))
            .sum();
        let Some(first) = cqes.first() else {
            self.counters.drop += 1;
            return RxOutcome::Dropped;
        };
        if covered != len as u64 || !cqes.last().is_some_and(|c| c.last) {
            self.counters.drop += 1;
            return RxOutcome::Dropped;
        }
        let Some(flow_tag) = first.flow_tag else {
            // Not an offloaded flow: a plain receive.
            return RxOutcome::Deliver(RxSegment::new([Run::Bytes { len: len as u32 }], false));
        };
        let Some(queue) = self
            .flows
            .get(&flow_tag)
            .and_then(|q| self.queues.get_mut(q))
        else {
            self.counters.drop += 1;
            return RxOutcome::Dropped;
        };
        let mut segment = RxSegment {
            runs: SmallVec::new(),
            crc_ok: queue.statics.ddgst_offload_en && cqes.iter().all(|c| c.crc_ok),
        };
        if queue.after_resync_cqe {
            queue.after_resync_cqe = false;
            segment.crc_ok = false;
        }
        let mut placed = 0u64;
        for cqe in &cqes {
            if cqe.resync {
                self.counters.resync += 1;
                queue.resync_pending = Some(cqe.resync_tcp_sn);
                queue.events.push_back(BackendEvent::ResyncRequest {
                    seq: cqe.resync_tcp_sn,
                });
            }
            if cqe.hlen > 0 {
                push_run(&mut segment.runs, Run::Bytes { len: cqe.hlen });
            }
            if cqe.cclen == 0 {
                continue;
            }
            let mapped = usize::from(cqe.ccid) < queue.ccids.len()
                && !matches!(queue.ccids[usize::from(cqe.ccid)], Ccid::Free);
            if cqe.zc && mapped {
                placed += u64::from(cqe.cclen);
                push_run(
                    &mut segment.runs,
                    Run::Placed {
                        tag: Tag(u32::from(cqe.ccid)),
                        offset: cqe.ccoff,
                        len: cqe.cclen,
                    },
                );
            } else {
                // A placement the driver cannot account for: the bytes are lost to the stack.
                self.counters.drop += 1;
                return RxOutcome::Dropped;
            }
        }
        if placed > 0 {
            self.counters.packets += 1;
            self.counters.bytes += placed;
        }
        RxOutcome::Deliver(segment)
    }

    fn check_queue(&self, config: &QueueConfig) -> Result<(Limits, u32), BackendError> {
        let limits = self
            .limits(config.protocol)
            .ok_or(BackendError::UnsupportedProtocol(config.protocol))?;
        if self.queues.contains_key(&config.queue_id) {
            return Err(BackendError::QueueExists(config.queue_id));
        }
        if config.queue_depth == 0 || config.queue_depth > limits.max_queue_depth {
            return Err(BackendError::UnsupportedConfig);
        }
        // cpda: alignment in dwords, 0-based; 1 (none) reads as 0.
        let align = config.data_alignment.max(4);
        if !align.is_multiple_of(4) || align > 128 {
            return Err(BackendError::UnsupportedConfig);
        }
        // The smallest free id in 1..=MAX_QUEUES (the IDA's [1, 4000)).
        let flow_tag = (1..=limits.max_queues)
            .find(|id| !self.flows.contains_key(id))
            .ok_or(BackendError::TooManyQueues)?;
        Ok((limits, flow_tag))
    }

    fn add_queue(&mut self, config: &QueueConfig) -> Result<(), BackendError> {
        let (limits, flow_tag) = self.check_queue(config)?;
        let caps = self.device.caps();
        let resources = QueueResources {
            flow_tag,
            connection: config.queue_id,
            depth: config.queue_depth,
            max_klm: limits.max_segments,
            zero_copy: true,
            crc: caps.crc_rx,
        };
        let statics = StaticParams {
            resync_tcp_sn: TcpSeq(0),
            pda: (config.data_alignment.max(4) / 4 - 1) as u8,
            ddgst_en: config.data_digest,
            ddgst_offload_en: caps.crc_rx && config.data_digest,
            hddgst_en: config.header_digest,
            hdgst_offload_en: false,
            target: false,
            cccid_ttag: true,
            zero_copy_en: true,
        };
        self.device
            .create_queue(&resources)
            .map_err(|_| BackendError::NoResources)?;
        if self.device.post_static_params(flow_tag, &statics).is_err() {
            self.device.destroy_queue(flow_tag);
            return Err(BackendError::NoResources);
        }
        let depth = config.queue_depth as usize;
        self.flows.insert(flow_tag, config.queue_id);
        self.queues.insert(
            config.queue_id,
            Queue {
                flow_tag,
                depth: config.queue_depth,
                statics,
                ccids: vec![Ccid::Free; depth],
                generations: vec![0; depth],
                events: VecDeque::new(),
                resync_pending: None,
                after_resync_cqe: false,
            },
        );
        if self.start(config.queue_id, config.rx_seq).is_err() {
            self.queues.remove(&config.queue_id);
            self.flows.remove(&flow_tag);
            self.device.destroy_queue(flow_tag);
            return Err(BackendError::NoResources);
        }
        Ok(())
    }

    fn map(&mut self, queue: QueueId, io: &DdpIo<'_>) -> Result<(), BackendError> {
        let q = self
            .queues
            .get_mut(&queue)
            .ok_or(BackendError::UnknownQueue(queue))?;
        // No full CCID range: only 0..queue_size has a memory key.
        if io.tag.0 >= q.depth {
            return Err(BackendError::TagOutOfRange(io.tag));
        }
        let ccid = io.tag.0 as usize;
        if q.ccids[ccid] != Ccid::Free {
            return Err(BackendError::TagBusy(io.tag));
        }
        if io.buffer.segment_count() > MAX_SGL as usize {
            return Err(BackendError::TooManySegments);
        }
        if io.buffer.len() > MAX_IO_BYTES {
            return Err(BackendError::TooLarge);
        }
        let klms: SmallVec<[Klm; 16]> = io
            .buffer
            .segments()
            .map(|s| Klm {
                addr: s.as_ptr() as u64,
                len: s.len() as u32,
            })
            .collect();
        // `mlx5e_nvmeotcp_validate_sgl` against the interface's MTU (-EOPNOTSUPP).
        let lens: SmallVec<[u32; 16]> = klms.iter().map(|k| k.len).collect();
        if !validate_sgl(&lens, self.device.caps().mtu) {
            return Err(BackendError::SegmentLayout);
        }
        self.device
            .post_umr_klm(q.flow_tag, ccid as u16, &klms)
            .map_err(|e| match e {
                DeviceError::BadParameter(_) => BackendError::TooManySegments,
                _ => BackendError::NoResources,
            })?;
        q.generations[ccid] = q.generations[ccid].wrapping_add(1);
        q.ccids[ccid] = Ccid::Mapped {
            generation: q.generations[ccid],
        };
        Ok(())
    }

    fn collect_ico(&mut self, queue: QueueId) {
        let Some(q) = self.queues.get_mut(&queue) else {
            return;
        };
        while let Some(cqe) = self.device.poll_ico_cq(q.flow_tag) {
            let ccid = (cqe.cookie >> 32) as usize;
            let generation = cqe.cookie as u32;
            if let Some(slot) = q.ccids.get_mut(ccid)
                && *slot == (Ccid::Invalidating { generation })
            {
                *slot = Ccid::Free;
                self.teardowns_completed += 1;
                q.events.push_back(BackendEvent::TeardownDone {
                    tag: Tag(ccid as u32),
                });
            }
        }
    }
}

fn push_run(runs: &mut SmallVec<[Run; 4]>, run: Run) {
    if let (Some(Run::Bytes { len: a }), Run::Bytes { len: b }) = (runs.last_mut(), run) {
        *a += b;
        return;
    }
    runs.push(run);
}

impl<D: Device> DdpBackend for Mlx5Backend<D> {
    fn limits(&self, protocol: ProtocolId) -> Option<Limits> {
        let caps = self.device.caps();
        if protocol != NVME_TCP || !caps.zerocopy || !caps.crc_rx {
            return None;
        }
        let mut limits = Limits::unlimited(protocol);
        limits.max_segments = MAX_SGL.min(caps.max_klm_per_mkey);
        limits.max_io_bytes = MAX_IO_BYTES;
        limits.io_threshold = IO_THRESHOLD;
        limits.max_queues = MAX_QUEUES.min(caps.max_queue_contexts);
        limits.max_queue_depth = 1 << caps.log_max_tag_buffer_size.min(16);
        // ConnectX-7 maps only CCIDs below the queue depth (no full CCID range, so no
        // generation bits in the CID); the driver also refuses others in `setup`.
        limits.tag_range = TagRange::BelowQueueDepth;
        limits.digests = DigestOffload::new(false, caps.crc_rx);
        limits.tls = false;
        Some(limits)
    }

    fn queue_add(&mut self, config: &QueueConfig) -> Result<(), BackendError> {
        let result = self.add_queue(config);
        match result {
            Ok(()) => self.counters.sk_add += 1,
            Err(_) => self.counters.sk_add_fail += 1,
        }
        result
    }

    fn queue_del(&mut self, queue: QueueId) {
        if let Some(q) = self.queues.remove(&queue) {
            self.device.destroy_queue(q.flow_tag);
            self.flows.remove(&q.flow_tag);
            self.counters.sk_del += 1;
        }
    }

    fn setup(&mut self, queue: QueueId, io: &DdpIo<'_>) -> Result<(), BackendError> {
        let result = self.map(queue, io);
        match result {
            Ok(()) => self.counters.setup += 1,
            Err(_) => self.counters.setup_fail += 1,
        }
        result
    }

    fn teardown(&mut self, queue: QueueId, tag: Tag) -> Result<(), BackendError> {
        let q = self
            .queues
            .get_mut(&queue)
            .ok_or(BackendError::UnknownQueue(queue))?;
        let slot = q
            .ccids
            .get_mut(tag.0 as usize)
            .ok_or(BackendError::UnknownTag(tag))?;
        let Ccid::Mapped { generation } = *slot else {
            return Err(BackendError::UnknownTag(tag));
        };
        let cookie = (u64::from(tag.0) << 32) | u64::from(generation);
        self.device
            .post_umr_invalidate(q.flow_tag, tag.0 as u16, cookie)
            .map_err(|_| BackendError::NoResources)?;
        *slot = Ccid::Invalidating { generation };
        self.counters.teardown += 1;
        Ok(())
    }

    fn resync_response(&mut self, queue: QueueId, seq: TcpSeq, pdu_starts_here: bool) {
        let Some(q) = self.queues.get_mut(&queue) else {
            return;
        };
        if q.resync_pending != Some(seq) {
            // Not the request outstanding (an old one, or none): nothing to tell the device.
            return;
        }
        q.resync_pending = None;
        if pdu_starts_here {
            q.after_resync_cqe = true;
            q.statics.resync_tcp_sn = seq;
            let statics = q.statics;
            let _ = self.device.post_static_params(q.flow_tag, &statics);
        } else {
            let params = ProgressParams {
                next_pdu_tcp_sn: seq,
                pdu_tracker_state: TrackerState::Searching,
            };
            let _ = self.device.post_progress_params(q.flow_tag, &params);
        }
    }

    fn poll_event(&mut self, queue: QueueId) -> Option<BackendEvent> {
        if self.queues.get(&queue)?.events.is_empty() {
            self.collect_ico(queue);
        }
        self.queues.get_mut(&queue)?.events.pop_front()
    }

    fn stats(&self) -> Stats {
        let c = self.counters;
        let mut stats = Stats::default();
        stats.queues_added = c.sk_add;
        stats.queues_add_failed = c.sk_add_fail;
        stats.queues_deleted = c.sk_del;
        stats.setups = c.setup;
        stats.setup_failures = c.setup_fail;
        stats.teardowns = c.teardown;
        stats.teardowns_completed = self.teardowns_completed;
        stats.bytes_placed = c.bytes;
        stats.resync_requests = c.resync;
        stats.drops = c.drop;
        stats
    }

    fn copy_with_crc(dst: &mut [u8], src: &[u8], crc: Option<&mut Crc32c>) {
        ulp_ddp_core::digest::copy_with_crc(dst, src, crc);
    }
}
