//! Per-queue configuration: the kernel's `ulp_ddp_config`, protocol-neutral.

use crate::types::{ProtocolId, QueueId, TcpSeq};

/// How one queue (one TCP connection) is set up, given to the backend when the queue is added.
///
/// Start from [`QueueConfig::new`] and chain the `with_*` setters, or assign fields (the
/// struct may grow: other crates cannot build it with a literal).
///
/// ```
/// use ulp_ddp_core::{ProtocolId, QueueConfig, QueueId};
///
/// let config = QueueConfig::new(ProtocolId("toy"), QueueId(1))
///     .with_digests(true, true)
///     .with_queue_depth(64);
/// assert!(config.header_digest && config.data_digest);
/// ```
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct QueueConfig {
    /// The protocol spoken on the connection.
    pub protocol: ProtocolId,
    /// The queue's identifier within the backend; unique per backend.
    pub queue_id: QueueId,
    /// Header digests are negotiated on this connection.
    pub header_digest: bool,
    /// Data digests are negotiated on this connection.
    pub data_digest: bool,
    /// Alignment, in bytes, of data within a received PDU (NVMe/TCP's CPDA as bytes; 1 for
    /// none). A hint for devices that must find data without parsing every header.
    pub data_alignment: u32,
    /// Most commands outstanding at once; tags of [`TagRange::BelowQueueDepth`] backends are
    /// below this.
    ///
    /// [`TagRange::BelowQueueDepth`]: crate::TagRange::BelowQueueDepth
    pub queue_depth: u32,
    /// The CPU that will process this queue's receive path, if known (the kernel's
    /// `affinity_hint`).
    pub cpu_hint: Option<u32>,
    /// TCP sequence number of the next byte the queue will receive, where the next PDU starts
    /// (the kernel reads the socket's `copied_seq` in `sk_add`). Devices track PDUs from here;
    /// the engine numbers the stream from here for resync.
    pub rx_seq: TcpSeq,
}

impl QueueConfig {
    /// A configuration with no digests, no alignment, depth 128, no CPU hint, and the stream
    /// starting at sequence number 0.
    pub fn new(protocol: ProtocolId, queue_id: QueueId) -> Self {
        Self {
            protocol,
            queue_id,
            header_digest: false,
            data_digest: false,
            data_alignment: 1,
            queue_depth: 128,
            cpu_hint: None,
            rx_seq: TcpSeq(0),
        }
    }

    /// The same configuration with header and data digests as given.
    #[must_use]
    pub fn with_digests(mut self, header: bool, data: bool) -> Self {
        self.header_digest = header;
        self.data_digest = data;
        self
    }

    /// The same configuration with queue depth `depth`.
    #[must_use]
    pub fn with_queue_depth(mut self, depth: u32) -> Self {
        self.queue_depth = depth;
        self
    }

    /// The same configuration with the stream starting at sequence number `seq`.
    #[must_use]
    pub fn with_rx_seq(mut self, seq: TcpSeq) -> Self {
        self.rx_seq = seq;
        self
    }
}
