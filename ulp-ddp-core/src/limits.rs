//! What a backend can do, per protocol: the kernel's `ulp_ddp_limits`, made explicit.

use crate::types::{ProtocolId, Tag};

/// Which tag values a backend can map to buffers.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum TagRange {
    /// Only tags below the queue depth (`0..queue_depth`): the device indexes a dense table by
    /// tag. This is ConnectX-7's answer to NVMe's "full CCID range" question (it has none), and it
    /// forbids generation bits in the tag.
    BelowQueueDepth,
    /// Any tag that fits in this many low bits.
    Bits(u8),
}

impl TagRange {
    /// Whether `tag` can be mapped on a queue of depth `queue_depth`.
    pub fn admits(self, tag: Tag, queue_depth: u32) -> bool {
        match self {
            Self::BelowQueueDepth => tag.0 < queue_depth,
            Self::Bits(bits) if bits >= 32 => true,
            Self::Bits(bits) => tag.0 >> bits == 0,
        }
    }
}

/// Which digests a backend verifies itself (so the CPU does not have to).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct DigestOffload {
    /// Header digests are verified by the backend.
    pub header: bool,
    /// Data digests are verified by the backend.
    pub data: bool,
}

impl DigestOffload {
    /// The backend verifies header digests if `header`, data digests if `data`.
    pub const fn new(header: bool, data: bool) -> Self {
        Self { header, data }
    }
}

/// A backend's limits for one protocol.
///
/// The receive engine applies them before asking the backend to map a command, so that every
/// backend declines the same commands for the same reasons; the backend may still refuse for
/// its own reasons (resources), which is not an I/O error either: the engine then copies.
///
/// Start from [`Limits::unlimited`] and assign the fields that differ (the struct may grow:
/// other crates cannot build it with a literal).
///
/// ```
/// use ulp_ddp_core::{DigestOffload, Limits, ProtocolId, TagRange};
///
/// let mut limits = Limits::unlimited(ProtocolId("toy"));
/// limits.io_threshold = 32 * 1024;
/// limits.tag_range = TagRange::BelowQueueDepth;
/// limits.digests = DigestOffload::new(false, true);
/// ```
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct Limits {
    /// The protocol these limits are for.
    pub protocol: ProtocolId,
    /// Most scatter-gather segments one command's buffer may have; `0` means no limit
    /// (the kernel's `max_ddp_sgl_len`; ConnectX-7: 128).
    pub max_segments: u32,
    /// Most bytes one command may map; `u64::MAX` means no limit (ConnectX-7: about 512 KiB).
    pub max_io_bytes: u64,
    /// Commands whose buffer is smaller than this are not worth mapping; the engine copies them
    /// (the kernel's `io_threshold`; ConnectX-7: 32 KiB).
    pub io_threshold: u32,
    /// Most queues the backend can offload at once (ConnectX-7 driver: 3,999).
    pub max_queues: u32,
    /// Deepest queue the backend can offload.
    pub max_queue_depth: u32,
    /// Which tag values it can map.
    pub tag_range: TagRange,
    /// Which digests it verifies.
    pub digests: DigestOffload,
    /// Whether the offload works beneath TLS.
    pub tls: bool,
}

impl Limits {
    /// Limits that decline nothing: for backends without hardware constraints.
    pub fn unlimited(protocol: ProtocolId) -> Self {
        Self {
            protocol,
            max_segments: 0,
            max_io_bytes: u64::MAX,
            io_threshold: 0,
            max_queues: u32::MAX,
            max_queue_depth: u32::MAX,
            tag_range: TagRange::Bits(32),
            digests: DigestOffload::default(),
            tls: true,
        }
    }

    /// Why a command of `bytes` bytes in `segments` segments with `tag` on a queue of depth
    /// `queue_depth` would be declined, or `None` if these limits admit it.
    pub fn decline_reason(
        &self,
        tag: Tag,
        bytes: u64,
        segments: usize,
        queue_depth: u32,
    ) -> Option<Decline> {
        if bytes < u64::from(self.io_threshold) {
            return Some(Decline::BelowThreshold);
        }
        if bytes > self.max_io_bytes {
            return Some(Decline::TooLarge);
        }
        if self.max_segments != 0 && segments as u64 > u64::from(self.max_segments) {
            return Some(Decline::TooManySegments);
        }
        if !self.tag_range.admits(tag, queue_depth) {
            return Some(Decline::TagOutOfRange);
        }
        None
    }
}

/// Why a command was not mapped for direct placement. None of these is an I/O error: the engine
/// places the command's data by copying instead.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Decline {
    /// The queue has no offload (the backend declined the queue or the protocol).
    QueueNotOffloaded,
    /// Smaller than the backend's I/O threshold.
    BelowThreshold,
    /// More bytes than the backend maps per command.
    TooLarge,
    /// More scatter-gather segments than the backend maps per command.
    TooManySegments,
    /// The tag is outside the range the backend tracks.
    TagOutOfRange,
    /// The backend refused for its own reasons (resources, a mapping it still holds).
    Backend(crate::error::BackendError),
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ProtocolId = ProtocolId("test");

    #[test]
    fn tag_ranges() {
        assert!(TagRange::BelowQueueDepth.admits(Tag(127), 128));
        assert!(!TagRange::BelowQueueDepth.admits(Tag(128), 128));
        assert!(TagRange::Bits(16).admits(Tag(0xFFFF), 1));
        assert!(!TagRange::Bits(16).admits(Tag(0x1_0000), 1));
        assert!(TagRange::Bits(32).admits(Tag(u32::MAX), 1));
        assert!(!TagRange::Bits(0).admits(Tag(1), 1));
    }

    #[test]
    fn decline_order_and_reasons() {
        let limits = Limits {
            max_segments: 2,
            max_io_bytes: 1 << 20,
            io_threshold: 4096,
            tag_range: TagRange::BelowQueueDepth,
            ..Limits::unlimited(P)
        };
        assert_eq!(
            limits.decline_reason(Tag(0), 4095, 1, 8),
            Some(Decline::BelowThreshold)
        );
        assert_eq!(
            limits.decline_reason(Tag(0), (1 << 20) + 1, 1, 8),
            Some(Decline::TooLarge)
        );
        assert_eq!(
            limits.decline_reason(Tag(0), 8192, 3, 8),
            Some(Decline::TooManySegments)
        );
        assert_eq!(
            limits.decline_reason(Tag(8), 8192, 2, 8),
            Some(Decline::TagOutOfRange)
        );
        assert_eq!(limits.decline_reason(Tag(7), 8192, 2, 8), None);
        assert_eq!(
            Limits::unlimited(P).decline_reason(Tag(u32::MAX), 0, 1000, 1),
            None
        );
    }
}
