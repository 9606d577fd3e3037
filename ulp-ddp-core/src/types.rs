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

/// Hashes small integer identifiers ([`Tag`], [`QueueId`]) with one multiplication (Fibonacci
/// hashing) instead of SipHash: tag tables are looked up on every data PDU, and their keys are
/// identifiers the local side chose, so there is no flooding to defend against (a peer's values
/// only ever look up).
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

impl core::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by identifiers the local side chose, hashed with [`IdHasher`].
pub type IdMap<K, V> = std::collections::HashMap<K, V, core::hash::BuildHasherDefault<IdHasher>>;

/// A set of identifiers the local side chose, hashed with [`IdHasher`].
pub type IdSet<K> = std::collections::HashSet<K, core::hash::BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_map_spreads_dense_and_sparse_tags() {
        let mut m: IdMap<Tag, u32> = IdMap::default();
        for t in (0..1000u32).chain((0..1000).map(|i| i << 20)) {
            m.insert(Tag(t), t);
        }
        assert_eq!(m.len(), 2000 - 1, "tag 0 appears in both ranges");
        assert_eq!(m.get(&Tag(999)), Some(&999));
        assert_eq!(m.get(&Tag(5 << 20)), Some(&(5 << 20)));
        assert_eq!(m.get(&Tag(1001)), None);
    }
}
