//! The hardware interface the driver programs: what `mlx5e_nvmeotcp_*` writes into work queues
//! and reads from completion queues, as a trait, so that a real binding could replace the
//! [`Model`](crate::Model).

use core::fmt;

use ulp_ddp_core::{QueueId, TcpSeq};

/// What the device can do (the `MLX5_CAP_DEV_NVMEOTCP` capability page, reduced to what the
/// driver reads).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct DeviceCaps {
    /// Direct data placement (`zerocopy`).
    pub zerocopy: bool,
    /// Receive data digest verification (`crc_rx`).
    pub crc_rx: bool,
    /// Most KLM translation entries one memory key holds (`1 << log_max_klm_list_size`).
    pub max_klm_per_mkey: u32,
    /// Log2 of the largest tag buffer table (`log_max_nvmeotcp_tag_buffer_size`): the deepest
    /// queue, since every CCID of a queue has an entry.
    pub log_max_tag_buffer_size: u8,
    /// Most queue contexts (TIRs with NVMe/TCP offload) the device holds at once.
    pub max_queue_contexts: u32,
    /// The interface's MTU (`netdev->mtu`), which the driver reads at every setup to check the
    /// buffer's shape ([`validate_sgl`](crate::validate_sgl)).
    pub mtu: u32,
}

impl Default for DeviceCaps {
    /// ConnectX-7 as the driver sees it.
    fn default() -> Self {
        Self {
            zerocopy: true,
            crc_rx: true,
            max_klm_per_mkey: 128,
            log_max_tag_buffer_size: 12,
            max_queue_contexts: 1 << 16,
            mtu: 1500,
        }
    }
}

/// The `transport_static_params` context posted with a UMR WQE (opc_mod TIR_STATIC_PARAMS) at
/// queue creation and again to answer a resync request.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct StaticParams {
    /// The TCP sequence number the software confirmed as a PDU start (`nvme_resync_tcp_sn`);
    /// meaningful when the device waits for a resync answer.
    pub resync_tcp_sn: TcpSeq,
    /// The controller's PDU data alignment, in dwords, 0-based (`pda`).
    pub pda: u8,
    /// Data digests are present on the wire (`ddgst_en`).
    pub ddgst_en: bool,
    /// The device verifies data digests (`ddgst_offload_en`).
    pub ddgst_offload_en: bool,
    /// Header digests are present on the wire (`hddgst_en`).
    pub hddgst_en: bool,
    /// The device verifies header digests (`hdgst_offload_en`; the driver leaves it off).
    pub hdgst_offload_en: bool,
    /// The queue is a target's (`ti = 1`), not an initiator's (`ti = 0`).
    pub target: bool,
    /// The command capsule CID is the tag (`cccid_ttag`).
    pub cccid_ttag: bool,
    /// Place payload directly (`zero_copy_en`).
    pub zero_copy_en: bool,
}

/// The PDU tracker states of the progress parameters.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum TrackerState {
    /// A PDU starts at `next_pdu_tcp_sn`.
    Start,
    /// Tracking PDUs.
    Tracking,
    /// Lost track; searching for a PDU header.
    Searching,
}

/// The progress parameters (SET_PSV WQE, opc_mod TIR_PROGRESS_PARAMS).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ProgressParams {
    /// TCP sequence number of the next PDU start (the socket's `copied_seq` at queue creation).
    pub next_pdu_tcp_sn: TcpSeq,
    /// The tracker state to load.
    pub pdu_tracker_state: TrackerState,
}

/// One KLM translation entry: a run of the command's buffer.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Klm {
    /// Address of the run (a real binding puts the DMA address here; the model reads only
    /// lengths and places through the receive engine's buffer).
    pub addr: u64,
    /// Bytes in the run.
    pub len: u32,
}

/// What the driver asks the device to create for one offloaded queue (`sk_add`): the tag
/// buffer table, one KLM memory key per CCID, the TIR with zero-copy and CRC enabled, and the
/// 5-tuple steering rule that sends the connection to it with the queue's flow tag.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct QueueResources {
    /// The flow tag CQEs of this queue carry (the driver's queue id).
    pub flow_tag: u32,
    /// The connection the steering rule matches (stands for the 5-tuple).
    pub connection: QueueId,
    /// Tag buffer table entries: CCIDs `0..depth` each get a memory key.
    pub depth: u32,
    /// KLM entries reserved per memory key.
    pub max_klm: u32,
    /// The TIR places payload (`nvmeotcp_zero_copy_en`).
    pub zero_copy: bool,
    /// The TIR verifies data digests (`nvmeotcp_crc_en`).
    pub crc: bool,
}

/// A completion on the queue's internal control send queue (ICOSQ): here, an invalidation UMR
/// finished and the memory key is free.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct IcoCqe {
    /// The value the driver attached to the WQE.
    pub cookie: u64,
}

/// A receive completion (the 128-byte CQE with the NVMe/TCP fields).
///
/// The model describes one received TCP segment by a chain of these: each covers `hlen` bytes
/// left in the receive buffer followed by `cclen` bytes placed into the buffer of `ccid` at
/// `ccoff`; the last of the chain has `last` set. ConnectX-7 reports one placed run per packet;
/// the model emits one CQE per run instead, so that a segment holding the end of one PDU and
/// the start of the next is placed in full (see `docs/mlx5.md`).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct RxCqe {
    /// Flow tag of the queue (`sop_drop_qpn & 0xFFFFFF`), `None` when the segment did not hit
    /// an NVMe/TCP TIR (a plain receive).
    pub flow_tag: Option<u32>,
    /// Bytes at the start of this CQE's part left in the receive buffer.
    pub hlen: u32,
    /// Bytes placed after them (`cclen`).
    pub cclen: u32,
    /// Offset of the placed bytes within the command's buffer (`ccoff`).
    pub ccoff: u32,
    /// The command (`ccid`).
    pub ccid: u16,
    /// The placed bytes went to the buffer (`nvmeotcp_zc`).
    pub zc: bool,
    /// Every digest the segment's bytes belong to checked out so far (`nvmeotcp_ddgst`).
    pub crc_ok: bool,
    /// This CQE carries a resync request (`nvmeotcp_resync`).
    pub resync: bool,
    /// The proposed PDU start of a resync request (`resync_tcp_sn`; on the device it shares
    /// its bytes with `ccoff`).
    pub resync_tcp_sn: TcpSeq,
    /// The last CQE of the segment.
    pub last: bool,
}

/// Why the device refused a command.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum DeviceError {
    /// Out of contexts, memory keys or work queue entries.
    NoResources,
    /// No queue context with this flow tag.
    UnknownQueue(u32),
    /// A parameter outside what the device supports.
    BadParameter(&'static str),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoResources => f.write_str("out of device resources"),
            Self::UnknownQueue(t) => write!(f, "no queue context with flow tag {t}"),
            Self::BadParameter(what) => write!(f, "unsupported parameter: {what}"),
        }
    }
}

impl std::error::Error for DeviceError {}

/// The device as the driver programs it. Every method is a work request or a completion-queue
/// poll; none blocks.
pub trait Device {
    /// The capabilities.
    fn caps(&self) -> DeviceCaps;

    /// Creates a queue's resources (tag buffer table, memory keys, TIR, steering rule).
    ///
    /// # Errors
    ///
    /// A [`DeviceError`]; nothing is created then.
    fn create_queue(&mut self, resources: &QueueResources) -> Result<(), DeviceError>;

    /// Destroys a queue's resources synchronously: when it returns the device writes into none
    /// of the queue's buffers and no completion of the queue follows.
    fn destroy_queue(&mut self, flow_tag: u32);

    /// Posts static parameters (a UMR WQE, no completion requested).
    ///
    /// # Errors
    ///
    /// A [`DeviceError`] if the queue does not exist or the send queue is full.
    fn post_static_params(
        &mut self,
        flow_tag: u32,
        params: &StaticParams,
    ) -> Result<(), DeviceError>;

    /// Posts progress parameters (a SET_PSV WQE, no completion requested).
    ///
    /// # Errors
    ///
    /// As [`post_static_params`](Device::post_static_params).
    fn post_progress_params(
        &mut self,
        flow_tag: u32,
        params: &ProgressParams,
    ) -> Result<(), DeviceError>;

    /// Rewrites the memory key of `ccid` with `klms` (KLM UMR WQEs, no completion requested):
    /// from then on the device may place that command's data.
    ///
    /// # Errors
    ///
    /// A [`DeviceError`] if the queue does not exist, `ccid` is outside its table, or there are
    /// more entries than the key holds.
    fn post_umr_klm(&mut self, flow_tag: u32, ccid: u16, klms: &[Klm]) -> Result<(), DeviceError>;

    /// Invalidates the memory key of `ccid` (UMR with `mkey status = FREE`) and requests a
    /// completion carrying `cookie` on the queue's ICOSQ completion queue.
    ///
    /// # Errors
    ///
    /// As [`post_umr_klm`](Device::post_umr_klm).
    fn post_umr_invalidate(
        &mut self,
        flow_tag: u32,
        ccid: u16,
        cookie: u64,
    ) -> Result<(), DeviceError>;

    /// The next ICOSQ completion of the queue, if any.
    fn poll_ico_cq(&mut self, flow_tag: u32) -> Option<IcoCqe>;

    /// The next receive completion, if any (one completion queue for the channel's receive
    /// queue, shared by every flow).
    fn poll_rx_cq(&mut self) -> Option<RxCqe>;
}
