//! Small vocabulary types: tags, stream sequence numbers, protocol and queue identifiers.

use core::fmt;

/// The per-command tag a protocol puts on the wire so that data finds its command: NVMe/TCP's
/// command identifier, iSCSI's initiator task tag.
///
/// Tags are opaque to the core; the [`Limits::tag_range`](crate::Limits::tag_range) of a backend
/// says which values it can track.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct Tag(pub u32);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tag {:#x}", self.0)
    }
}

/// A 32-bit TCP sequence number, compared with wrapping (serial number) arithmetic.
///
/// ```
/// use ulp_ddp_core::TcpSeq;
///
/// let a = TcpSeq(u32::MAX - 1);
/// let b = a.wrapping_add(4);
/// assert_eq!(b, TcpSeq(2));
/// assert_eq!(a.distance_to(b), 4);
/// assert_eq!(b.distance_to(a), -4);
/// ```
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
pub struct TcpSeq(pub u32);

impl TcpSeq {
    /// The sequence number `bytes` further along the stream.
    #[inline]
    pub fn wrapping_add(self, bytes: u32) -> Self {
        Self(self.0.wrapping_add(bytes))
    }

    /// Signed distance from `self` to `other`: positive when `other` lies ahead.
    #[inline]
    pub fn distance_to(self, other: Self) -> i32 {
        // Serial number arithmetic (RFC 1982): the wrapped difference read as two's complement.
        other.0.wrapping_sub(self.0) as i32
    }
}

impl fmt::Display for TcpSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {}", self.0)
    }
}

/// Names a protocol plugin, so that a backend can say which protocols it offloads.
///
/// The core defines no protocol; each protocol crate exports its own constant.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub struct ProtocolId(pub &'static str);

impl fmt::Display for ProtocolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Identifies a queue (one TCP connection) within a backend.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct QueueId(pub u32);

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "queue {}", self.0)
    }
}
