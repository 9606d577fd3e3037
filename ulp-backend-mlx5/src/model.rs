//! [`Model`]: a functional model of the ConnectX-7 NVMe/TCP receive offload, at TCP-segment
//! level, behind the [`Device`] trait.
//!
//! (Just over 800 lines, kept whole: the per-queue receive state machine — tracking, placing,
//! searching, resync — reads as one piece; the fidelity work on it, placement per packet and
//! resync as the series does it, will split it by those concerns.)

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use smallvec::SmallVec;
use ulp_ddp_core::digest::{Crc32c, crc32c};
use ulp_ddp_core::{QueueId, TcpSeq};
use ulp_nvme_tcp::wire::{C2hDataRepr, Digests, Layout, Pda, PduType};

use crate::device::{
    Device, DeviceCaps, DeviceError, IcoCqe, Klm, ProgressParams, QueueResources, RxCqe,
    StaticParams, TrackerState,
};

/// PDUs longer than this are not believed when searching for a header.
const MAX_PLAUSIBLE_PLEN: usize = 16 << 20;

/// Settings of a [`Model`]: start from `ModelConfig::default()` and assign fields (the struct
/// may grow).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct ModelConfig {
    /// The capabilities it reports.
    pub caps: DeviceCaps,
    /// How many polls of a queue's ICOSQ completion queue see nothing before an invalidation
    /// completes (0: the first poll after posting sees it). Models the asynchronous teardown.
    pub invalidate_polls: u32,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            caps: DeviceCaps::default(),
            invalidate_polls: 1,
        }
    }
}

/// A DMA write the model performed: `src` bytes of the received segment go to command offset
/// `offset` of the buffer `ccid`'s memory key maps. The caller (the bus, in
/// [`Nic`](crate::Nic)) carries it out through the receive engine's buffer.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct DmaWrite {
    /// The command whose buffer is written.
    pub ccid: u16,
    /// Offset in the command's buffer.
    pub offset: u64,
    /// The bytes, as a range of the received segment.
    pub src: Range<usize>,
}

/// What the model did, for tests and the documentation's figures.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct ModelStats {
    /// Segments received on offloaded flows.
    pub segments: u64,
    /// Segments (or their tails) processed in order.
    pub in_order: u64,
    /// Segments wholly before the expected sequence number (retransmissions, duplicates).
    pub old: u64,
    /// Gaps: segments beyond the expected sequence number.
    pub gaps: u64,
    /// Times the tracker lost PDU boundaries.
    pub lost_track: u64,
    /// Resync requests raised.
    pub resync_requests: u64,
    /// Resync requests confirmed by software.
    pub resync_confirmed: u64,
    /// Resync requests refused by software.
    pub resync_refused: u64,
    /// Payload bytes placed.
    pub bytes_placed: u64,
    /// Data digests checked and found matching.
    pub digests_ok: u64,
    /// Data digests checked and found wrong.
    pub digests_bad: u64,
}

#[derive(Clone, Copy, Debug)]
struct Mkey {
    len: u64,
}

#[derive(Clone, Debug)]
struct Pdu {
    plen: u32,
    pos: u32,
    data_start: u32,
    data_end: u32,
    ddgst: bool,
    place: Option<(u16, u32)>,
    crc: Crc32c,
    crc_valid: bool,
    digest: [u8; 4],
}

/// Follows PDU boundaries through in-order bytes.
#[derive(Clone, Debug)]
struct Tracker {
    header: SmallVec<[u8; 136]>,
    need: usize,
    pdu: Option<Pdu>,
    /// PDUs whose header completes now are offloaded (placed, digest reported).
    offload: bool,
}

impl Tracker {
    fn new(offload: bool) -> Self {
        Self {
            header: SmallVec::new(),
            need: 8,
            pdu: None,
            offload,
        }
    }

    /// Bytes the device did not see (lost or reordered). Returns whether it still knows where
    /// the next header starts: only when the gap lies within the current PDU's body.
    fn skip(&mut self, n: u32) -> bool {
        let Some(pdu) = &mut self.pdu else {
            return n == 0;
        };
        if n > pdu.plen - pdu.pos {
            return false;
        }
        pdu.pos += n;
        pdu.crc_valid = false;
        if pdu.pos == pdu.plen {
            self.pdu = None;
        }
        true
    }
}

/// Context of one tracker run over a segment.
struct Cx<'b, 'a> {
    emit: &'b mut Emit<'a>,
    /// Emit runs (else the caller emits the bytes as not placed).
    loud: bool,
    digests: Digests,
    zero_copy: bool,
    mkeys: &'b [Option<Mkey>],
    stats: &'b mut ModelStats,
}

impl Tracker {
    /// Feeds in-order bytes. `Err(k)`: the bytes from `k` on are not headers the device
    /// believes; it lost track there.
    fn feed(&mut self, data: &[u8], cx: &mut Cx<'_, '_>) -> Result<(), usize> {
        let mut i = 0;
        while i < data.len() {
            let Some(pdu) = &mut self.pdu else {
                let n = (self.need - self.header.len()).min(data.len() - i);
                self.header.extend_from_slice(&data[i..i + n]);
                if cx.loud {
                    cx.emit.unplaced(n);
                }
                i += n;
                if self.header.len() < self.need {
                    continue;
                }
                if self.need == 8 {
                    let Ok(layout) = Layout::parse(&self.header, cx.digests) else {
                        return Err(i);
                    };
                    self.need = layout.header_len();
                    if self.header.len() < self.need {
                        continue;
                    }
                }
                self.start_pdu(cx).map_err(|()| i)?;
                continue;
            };
            let pos = pdu.pos;
            let end = if pos < pdu.data_start {
                pdu.data_start
            } else if pos < pdu.data_end {
                pdu.data_end
            } else {
                pdu.plen
            };
            let n = ((end - pos) as usize).min(data.len() - i);
            let chunk = &data[i..i + n];
            if pos < pdu.data_start {
                if cx.loud {
                    cx.emit.unplaced(n);
                }
            } else if pos < pdu.data_end {
                if pdu.ddgst {
                    pdu.crc.update(chunk);
                    cx.emit.crc_ok &= pdu.crc_valid;
                }
                match pdu.place {
                    Some((ccid, datao)) if cx.loud => {
                        cx.stats.bytes_placed += n as u64;
                        cx.emit
                            .placed(ccid, u64::from(datao) + u64::from(pos - pdu.data_start), n);
                    }
                    _ if cx.loud => cx.emit.unplaced(n),
                    _ => {}
                }
            } else {
                let at = (pos - pdu.data_end) as usize;
                if let Some(slot) = pdu.digest.get_mut(at..at + n) {
                    slot.copy_from_slice(chunk);
                }
                cx.emit.crc_ok &= pdu.crc_valid;
                if pos + n as u32 == pdu.plen && pdu.crc_valid {
                    if u32::from_le_bytes(pdu.digest) == pdu.crc.value() {
                        cx.stats.digests_ok += 1;
                    } else {
                        cx.stats.digests_bad += 1;
                        cx.emit.crc_ok = false;
                    }
                }
                if cx.loud {
                    cx.emit.unplaced(n);
                }
            }
            pdu.pos += n as u32;
            i += n;
            if pdu.pos == pdu.plen {
                self.pdu = None;
            }
        }
        Ok(())
    }

    /// The whole header is in: read the PDU's layout and whether its data is placed.
    fn start_pdu(&mut self, cx: &mut Cx<'_, '_>) -> Result<(), ()> {
        let header = core::mem::take(&mut self.header);
        self.need = 8;
        let layout = Layout::parse(&header, cx.digests).map_err(|_| ())?;
        if layout.hdgst {
            let (h, d) = header.split_at(layout.hlen);
            let received = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
            if crc32c(h) != received {
                return Err(());
            }
        }
        let mut place = None;
        if layout.pdu_type == PduType::C2hData {
            let (repr, _) = C2hDataRepr::parse(&header, cx.digests).map_err(|_| ())?;
            let mapped = cx
                .mkeys
                .get(usize::from(repr.cccid))
                .copied()
                .flatten()
                .is_some_and(|m| u64::from(repr.datao) + u64::from(repr.datal) <= m.len);
            if self.offload && cx.zero_copy && mapped {
                place = Some((repr.cccid, repr.datao));
            }
        }
        let to_u32 = |n: usize| u32::try_from(n).map_err(|_| ());
        let data_start = to_u32(layout.data_offset)?;
        let data_end = to_u32(layout.data_offset + layout.data_len)?;
        let plen = to_u32(layout.plen)?;
        if data_end > plen || (data_start as usize) < header.len() {
            return Err(());
        }
        let pdu = Pdu {
            plen,
            pos: header.len() as u32,
            data_start,
            data_end,
            ddgst: layout.ddgst,
            place,
            crc: Crc32c::new(),
            crc_valid: self.offload,
            digest: [0; 4],
        };
        if pdu.pos < pdu.plen {
            self.pdu = Some(pdu);
        }
        Ok(())
    }
}

/// The CQE chain of one segment being built.
struct Emit<'a> {
    flow_tag: u32,
    cqes: SmallVec<[RxCqe; 4]>,
    cur: RxCqe,
    pos: usize,
    crc_ok: bool,
    resync: Option<TcpSeq>,
    dma: &'a mut Vec<DmaWrite>,
}

impl<'a> Emit<'a> {
    fn new(flow_tag: u32, dma: &'a mut Vec<DmaWrite>) -> Self {
        Self {
            flow_tag,
            cqes: SmallVec::new(),
            cur: RxCqe::default(),
            pos: 0,
            crc_ok: true,
            resync: None,
            dma,
        }
    }

    fn flush(&mut self) {
        let cqe = core::mem::take(&mut self.cur);
        self.cqes.push(cqe);
    }

    fn unplaced(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if self.cur.cclen > 0 {
            self.flush();
        }
        self.cur.hlen += n as u32;
        self.pos += n;
    }

    /// Everything up to `end` not described yet is left in the receive buffer.
    fn unplaced_until(&mut self, end: usize) {
        if end > self.pos {
            self.unplaced(end - self.pos);
        }
    }

    fn placed(&mut self, ccid: u16, offset: u64, n: usize) {
        if n == 0 {
            return;
        }
        let contiguous = self.cur.ccid == ccid
            && u64::from(self.cur.ccoff) + u64::from(self.cur.cclen) == offset;
        if self.cur.cclen > 0 && !contiguous {
            self.flush();
        }
        if self.cur.cclen == 0 {
            self.cur.ccid = ccid;
            self.cur.ccoff = offset as u32;
            self.cur.zc = true;
        }
        self.cur.cclen += n as u32;
        self.dma.push(DmaWrite {
            ccid,
            offset,
            src: self.pos..self.pos + n,
        });
        self.pos += n;
    }

    fn finish(mut self, crc_offload: bool, cq: &mut VecDeque<RxCqe>) {
        self.flush();
        let n = self.cqes.len();
        for (i, mut cqe) in self.cqes.into_iter().enumerate() {
            cqe.flow_tag = Some(self.flow_tag);
            cqe.crc_ok = self.crc_ok && crc_offload;
            cqe.last = i + 1 == n;
            if i == 0
                && let Some(seq) = self.resync
            {
                cqe.resync = true;
                cqe.resync_tcp_sn = seq;
            }
            cq.push_back(cqe);
        }
    }
}

#[derive(Clone, Debug)]
enum State {
    /// Created; waits for progress params.
    Idle,
    /// Follows PDUs and offloads them.
    Tracking(Tracker),
    /// Lost track: scans for a header. `window` holds the last bytes before `expected`.
    Searching { window: SmallVec<[u8; 8]> },
    /// Asked software whether a PDU starts at `candidate`; follows PDUs from there without
    /// offloading them until the answer.
    Pending { candidate: TcpSeq, tracker: Tracker },
}

#[derive(Debug)]
struct QueueCtx {
    resources: QueueResources,
    statics: Option<StaticParams>,
    digests: Digests,
    pda: Pda,
    expected: TcpSeq,
    state: State,
    mkeys: Vec<Option<Mkey>>,
    /// Invalidations posted: (polls left, ccid, cookie).
    ico_pending: VecDeque<(u32, u16, u64)>,
    ico_cq: VecDeque<IcoCqe>,
}

/// A functional model of ConnectX-7's NVMe/TCP receive offload below TCP.
///
/// It receives TCP segments ([`receive`](Model::receive)) in whatever order the network
/// delivers them. While segments arrive in order it follows NVMe/TCP PDUs (common headers
/// parsed with `ulp-nvme-tcp`'s codec), places C2HData payload of mapped CCIDs (as
/// [`DmaWrite`]s), computes each PDU's CRC32C and marks every segment's digest verdict.
/// Segments before the expected sequence number pass un-offloaded; a gap inside a PDU's body
/// only costs that PDU its digest verdict, a gap that hides a header loses track: the model
/// then scans for a plausible common header (PDU type, HLEN, flags matching the negotiated
/// digests, PDO, PLEN), raises a resync request for it, follows PDUs from there without
/// offloading, and resumes only once software confirms (static params with that sequence
/// number). PDUs whose header passed before the confirmation are not offloaded, so the first
/// digest verdict after a resync is never claimed.
#[derive(Debug, Default)]
pub struct Model {
    config: ModelConfig,
    queues: HashMap<u32, QueueCtx>,
    steering: HashMap<QueueId, u32>,
    rx_cq: VecDeque<RxCqe>,
    stats: ModelStats,
}

impl Model {
    /// A ConnectX-7 model with default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// A model with `config`.
    pub fn with_config(config: ModelConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// What the model did so far.
    pub fn stats(&self) -> ModelStats {
        self.stats
    }

    /// Receives one TCP segment of `connection` starting at `seq`. Completions go to the
    /// receive completion queue ([`Device::poll_rx_cq`]); payload the device places is
    /// appended to `dma` for the bus to carry out.
    pub fn receive(
        &mut self,
        connection: QueueId,
        seq: TcpSeq,
        payload: &[u8],
        dma: &mut Vec<DmaWrite>,
    ) {
        let Some(q) = self
            .steering
            .get(&connection)
            .and_then(|f| self.queues.get_mut(f))
        else {
            // No steering rule: a plain receive.
            self.rx_cq.push_back(RxCqe {
                hlen: payload.len() as u32,
                last: true,
                ..RxCqe::default()
            });
            return;
        };
        self.stats.segments += 1;
        let crc_offload = q
            .statics
            .is_some_and(|s| s.ddgst_offload_en && s.ddgst_en && q.resources.crc);
        let mut emit = Emit::new(q.resources.flow_tag, dma);
        if matches!(q.state, State::Idle) {
            emit.crc_ok = false;
            emit.unplaced_until(payload.len());
            emit.finish(crc_offload, &mut self.rx_cq);
            return;
        }
        let end = seq.wrapping_add(payload.len() as u32);
        let ahead = q.expected.distance_to(seq);
        let mut start = 0usize;
        if ahead < 0 {
            let old = (ahead.unsigned_abs() as usize).min(payload.len());
            emit.crc_ok = false;
            emit.unplaced(old);
            start = old;
            if old == payload.len() {
                self.stats.old += 1;
            }
        } else if ahead > 0 {
            self.stats.gaps += 1;
            q.skip(ahead as u32, &mut self.stats);
        }
        if start < payload.len() {
            self.stats.in_order += 1;
            q.process(
                &payload[start..],
                seq.wrapping_add(start as u32),
                &mut emit,
                &mut self.stats,
            );
            q.expected = end;
        }
        emit.finish(crc_offload, &mut self.rx_cq);
    }
}

impl QueueCtx {
    fn skip(&mut self, n: u32, stats: &mut ModelStats) {
        let keep = match &mut self.state {
            State::Idle => true,
            State::Tracking(t) | State::Pending { tracker: t, .. } => t.skip(n),
            State::Searching { window } => {
                window.clear();
                true
            }
        };
        if !keep {
            stats.lost_track += 1;
            self.state = State::Searching {
                window: SmallVec::new(),
            };
        }
    }

    /// In-order bytes `data` starting at `seq`.
    fn process(&mut self, data: &[u8], seq: TcpSeq, emit: &mut Emit<'_>, stats: &mut ModelStats) {
        let base = emit.pos;
        let zero_copy = self.resources.zero_copy;
        let mut at = 0usize;
        loop {
            match &mut self.state {
                State::Idle => {
                    emit.crc_ok = false;
                    emit.unplaced_until(base + data.len());
                    return;
                }
                State::Tracking(tracker) => {
                    let mut cx = Cx {
                        emit: &mut *emit,
                        loud: true,
                        digests: self.digests,
                        zero_copy,
                        mkeys: &self.mkeys,
                        stats: &mut *stats,
                    };
                    match tracker.feed(&data[at..], &mut cx) {
                        Ok(()) => return,
                        Err(k) => {
                            at += k;
                            stats.lost_track += 1;
                            self.state = State::Searching {
                                window: SmallVec::new(),
                            };
                        }
                    }
                }
                State::Pending { tracker, .. } => {
                    emit.crc_ok = false;
                    emit.unplaced_until(base + data.len());
                    let mut cx = Cx {
                        emit: &mut *emit,
                        loud: false,
                        digests: self.digests,
                        zero_copy,
                        mkeys: &self.mkeys,
                        stats: &mut *stats,
                    };
                    match tracker.feed(&data[at..], &mut cx) {
                        Ok(()) => return,
                        Err(k) => {
                            // The candidate was not a PDU start after all.
                            at += k;
                            self.state = State::Searching {
                                window: SmallVec::new(),
                            };
                        }
                    }
                }
                State::Searching { window } => {
                    emit.crc_ok = false;
                    emit.unplaced_until(base + data.len());
                    let found = search(
                        window,
                        &data[at..],
                        seq.wrapping_add(at as u32),
                        self.digests,
                        self.pda,
                        &self.mkeys,
                        emit,
                        stats,
                    );
                    if let Some((candidate, tracker)) = found {
                        stats.resync_requests += 1;
                        emit.resync = Some(candidate);
                        self.state = State::Pending { candidate, tracker };
                    }
                    return;
                }
            }
        }
    }
}

/// Scans `window ++ data` for a header the device believes; follows PDUs from the first
/// candidate that survives to the end of `data`. Keeps the last bytes in `window` otherwise.
#[allow(clippy::too_many_arguments)]
fn search(
    window: &mut SmallVec<[u8; 8]>,
    data: &[u8],
    data_seq: TcpSeq,
    digests: Digests,
    pda: Pda,
    mkeys: &[Option<Mkey>],
    emit: &mut Emit<'_>,
    stats: &mut ModelStats,
) -> Option<(TcpSeq, Tracker)> {
    let mut bytes: Vec<u8> = Vec::with_capacity(window.len() + data.len());
    bytes.extend_from_slice(window);
    bytes.extend_from_slice(data);
    let bytes_seq = data_seq.wrapping_add(0u32.wrapping_sub(window.len() as u32));
    let mut p = 0usize;
    while p + 8 <= bytes.len() {
        if plausible(&bytes[p..p + 8], digests, pda) {
            let mut tracker = Tracker::new(false);
            let mut cx = Cx {
                emit: &mut *emit,
                loud: false,
                digests,
                zero_copy: false,
                mkeys,
                stats: &mut *stats,
            };
            if tracker.feed(&bytes[p..], &mut cx).is_ok() {
                window.clear();
                return Some((bytes_seq.wrapping_add(p as u32), tracker));
            }
        }
        p += 1;
    }
    let keep = bytes.len().min(7);
    window.clear();
    window.extend_from_slice(&bytes[bytes.len() - keep..]);
    None
}

/// Whether 8 bytes look like the common header of a PDU a host receives on this queue.
fn plausible(ch: &[u8], digests: Digests, pda: Pda) -> bool {
    let Ok(layout) = Layout::parse(ch, digests) else {
        return false;
    };
    let aligned = layout.header_len().div_ceil(pda.alignment()) * pda.alignment();
    let data_ok = match layout.pdu_type {
        PduType::C2hData => layout.data_offset == aligned,
        PduType::CapsuleResp | PduType::R2t | PduType::C2hTermReq => true,
        _ => false,
    };
    data_ok && layout.plen <= MAX_PLAUSIBLE_PLEN
}

impl Device for Model {
    fn caps(&self) -> DeviceCaps {
        self.config.caps
    }

    fn create_queue(&mut self, resources: &QueueResources) -> Result<(), DeviceError> {
        let caps = self.config.caps;
        if self.queues.len() as u64 >= u64::from(caps.max_queue_contexts) {
            return Err(DeviceError::NoResources);
        }
        if resources.depth == 0 || u64::from(resources.depth) > 1u64 << caps.log_max_tag_buffer_size
        {
            return Err(DeviceError::BadParameter("tag buffer table size"));
        }
        if resources.max_klm > caps.max_klm_per_mkey {
            return Err(DeviceError::BadParameter("KLM entries per memory key"));
        }
        if self.queues.contains_key(&resources.flow_tag)
            || self.steering.contains_key(&resources.connection)
        {
            return Err(DeviceError::BadParameter(
                "flow tag or steering rule in use",
            ));
        }
        self.steering
            .insert(resources.connection, resources.flow_tag);
        self.queues.insert(
            resources.flow_tag,
            QueueCtx {
                resources: *resources,
                statics: None,
                digests: Digests::NONE,
                pda: Pda::ZERO,
                expected: TcpSeq(0),
                state: State::Idle,
                mkeys: vec![None; resources.depth as usize],
                ico_pending: VecDeque::new(),
                ico_cq: VecDeque::new(),
            },
        );
        Ok(())
    }

    fn destroy_queue(&mut self, flow_tag: u32) {
        if let Some(q) = self.queues.remove(&flow_tag) {
            self.steering.remove(&q.resources.connection);
        }
    }

    fn post_static_params(
        &mut self,
        flow_tag: u32,
        params: &StaticParams,
    ) -> Result<(), DeviceError> {
        let pda = Pda::new(params.pda).map_err(|_| DeviceError::BadParameter("pda"))?;
        let q = self
            .queues
            .get_mut(&flow_tag)
            .ok_or(DeviceError::UnknownQueue(flow_tag))?;
        let first = q.statics.is_none();
        q.statics = Some(*params);
        q.digests = Digests {
            header: params.hddgst_en,
            data: params.ddgst_en,
        };
        q.pda = pda;
        if first {
            return Ok(());
        }
        // A re-post answers a resync request: resume if it names the candidate.
        if let State::Pending { candidate, tracker } = &mut q.state
            && *candidate == params.resync_tcp_sn
        {
            let mut tracker = core::mem::replace(tracker, Tracker::new(true));
            tracker.offload = true;
            q.state = State::Tracking(tracker);
            self.stats.resync_confirmed += 1;
        }
        Ok(())
    }

    fn post_progress_params(
        &mut self,
        flow_tag: u32,
        params: &ProgressParams,
    ) -> Result<(), DeviceError> {
        let q = self
            .queues
            .get_mut(&flow_tag)
            .ok_or(DeviceError::UnknownQueue(flow_tag))?;
        match params.pdu_tracker_state {
            TrackerState::Start | TrackerState::Tracking => {
                q.expected = params.next_pdu_tcp_sn;
                q.state = State::Tracking(Tracker::new(true));
            }
            TrackerState::Searching => {
                if let State::Pending { candidate, .. } = q.state
                    && candidate == params.next_pdu_tcp_sn
                {
                    q.state = State::Searching {
                        window: SmallVec::new(),
                    };
                    self.stats.resync_refused += 1;
                }
            }
        }
        Ok(())
    }

    fn post_umr_klm(&mut self, flow_tag: u32, ccid: u16, klms: &[Klm]) -> Result<(), DeviceError> {
        let max = self.config.caps.max_klm_per_mkey;
        let q = self
            .queues
            .get_mut(&flow_tag)
            .ok_or(DeviceError::UnknownQueue(flow_tag))?;
        if klms.len() as u64 > u64::from(max.min(q.resources.max_klm)) {
            return Err(DeviceError::BadParameter("KLM entries per memory key"));
        }
        let slot = q
            .mkeys
            .get_mut(usize::from(ccid))
            .ok_or(DeviceError::BadParameter(
                "CCID outside the tag buffer table",
            ))?;
        *slot = Some(Mkey {
            len: klms.iter().map(|k| u64::from(k.len)).sum(),
        });
        Ok(())
    }

    fn post_umr_invalidate(
        &mut self,
        flow_tag: u32,
        ccid: u16,
        cookie: u64,
    ) -> Result<(), DeviceError> {
        let polls = self.config.invalidate_polls;
        let q = self
            .queues
            .get_mut(&flow_tag)
            .ok_or(DeviceError::UnknownQueue(flow_tag))?;
        if usize::from(ccid) >= q.mkeys.len() {
            return Err(DeviceError::BadParameter(
                "CCID outside the tag buffer table",
            ));
        }
        q.ico_pending.push_back((polls, ccid, cookie));
        Ok(())
    }

    fn poll_ico_cq(&mut self, flow_tag: u32) -> Option<IcoCqe> {
        let q = self.queues.get_mut(&flow_tag)?;
        let mut still = VecDeque::with_capacity(q.ico_pending.len());
        for (polls, ccid, cookie) in q.ico_pending.drain(..) {
            if polls == 0 {
                if let Some(slot) = q.mkeys.get_mut(usize::from(ccid)) {
                    *slot = None;
                }
                q.ico_cq.push_back(IcoCqe { cookie });
            } else {
                still.push_back((polls - 1, ccid, cookie));
            }
        }
        q.ico_pending = still;
        q.ico_cq.pop_front()
    }

    fn poll_rx_cq(&mut self) -> Option<RxCqe> {
        self.rx_cq.pop_front()
    }
}
