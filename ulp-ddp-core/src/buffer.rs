//! Destination buffers: owned scatter-gather lists that move into the DDP context at setup and
//! come back from the teardown completion.

use core::fmt;

use smallvec::SmallVec;

/// A command's destination buffer: one or more owned segments that together form one contiguous
/// range of command offsets `0..len()`.
///
/// It is moved into [`Engine::setup`](crate::Engine::setup) and handed back only by
/// [`Event::Released`](crate::Event::Released), after the backend's teardown completed: while a
/// device may still write into it, no one else can hold it. The heap allocations never move or
/// resize while the buffer is registered, so a device may be given their addresses.
///
/// ```
/// use ulp_ddp_core::SgBuffer;
///
/// let mut buf = SgBuffer::from_segments(vec![vec![0u8; 3], vec![0u8; 5]]);
/// assert_eq!(buf.len(), 8);
/// buf.write_at(2, b"abcd").unwrap();
/// assert_eq!(buf.to_vec(), b"\0\0abcd\0\0");
/// ```
#[derive(Clone, Default, Eq, PartialEq)]
pub struct SgBuffer {
    segments: SmallVec<[Vec<u8>; 2]>,
    /// `ends[i]` is the command offset one past segment `i`.
    ends: SmallVec<[u64; 2]>,
}

/// The contiguous pieces of a range of an [`SgBuffer`], in order, from
/// [`SgBuffer::slices`]: use it as a `&[&[u8]]` (it derefs to one) or iterate it. Two pieces are
/// held inline (no allocation for buffers of up to two segments).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Slices<'a>(SmallVec<[&'a [u8]; 2]>);

impl<'a> core::ops::Deref for Slices<'a> {
    type Target = [&'a [u8]];

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'a> IntoIterator for Slices<'a> {
    type Item = &'a [u8];
    type IntoIter = SlicesIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        SlicesIter(self.0.into_iter())
    }
}

impl<'a, 'b> IntoIterator for &'b Slices<'a> {
    type Item = &'b &'a [u8];
    type IntoIter = core::slice::Iter<'b, &'a [u8]>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The pieces of a [`Slices`], by value.
#[derive(Debug)]
pub struct SlicesIter<'a>(smallvec::IntoIter<[&'a [u8]; 2]>);

impl<'a> Iterator for SlicesIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

/// A command's data transfer, with its buffer: what both protocols' connections take with a
/// command, and hand back (the same allocations) in its completion.
#[derive(Debug)]
pub enum Data {
    /// No data.
    None,
    /// Data from the peer lands in this buffer (registered with the receive engine until the
    /// command completes).
    Read(SgBuffer),
    /// Data to the peer, sent from this buffer without copying.
    Write(SgBuffer),
}

impl Data {
    /// The buffer, if any.
    pub fn into_buffer(self) -> Option<SgBuffer> {
        match self {
            Self::None => None,
            Self::Read(b) | Self::Write(b) => Some(b),
        }
    }

    /// Bytes to transfer.
    pub fn len(&self) -> u64 {
        match self {
            Self::None => 0,
            Self::Read(b) | Self::Write(b) => b.len(),
        }
    }

    /// Whether there is nothing to transfer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An access outside a buffer's `0..len()`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct OutOfRange {
    /// First offset asked for.
    pub offset: u64,
    /// Bytes asked for.
    pub len: u64,
    /// The buffer's length.
    pub buffer_len: u64,
}

impl SgBuffer {
    /// A buffer made of one segment.
    pub fn from_vec(segment: Vec<u8>) -> Self {
        Self::from_segments(vec![segment])
    }

    /// A buffer of `len` zero bytes in one segment.
    pub fn zeroed(len: usize) -> Self {
        Self::from_vec(vec![0; len])
    }

    /// A buffer made of `segments`, in command-offset order. Empty segments are kept (they
    /// count against a backend's segment limit, as they would in a real scatter-gather list).
    pub fn from_segments(segments: Vec<Vec<u8>>) -> Self {
        let mut ends = SmallVec::with_capacity(segments.len());
        let mut end = 0u64;
        for segment in &segments {
            end += segment.len() as u64;
            ends.push(end);
        }
        Self {
            segments: segments.into_iter().collect(),
            ends,
        }
    }

    /// Total bytes over all segments.
    pub fn len(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// Whether the buffer holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The segments, in order.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.segments.iter().map(Vec::as_slice)
    }

    /// Cuts the buffer into consecutive buffers of `chunk` bytes (the last may be shorter), for
    /// a transfer larger than one command may carry. Whole segments move without copying; a
    /// segment that straddles a cut is split: with `keep_contents` its tail is copied into a new
    /// allocation (data to send), without it the tail becomes a new zeroed allocation (a read's
    /// destination, whose old contents do not matter). A buffer given as segments of at most
    /// `chunk` bytes, cut at multiples of `chunk`, is never copied. `chunk` 0 is taken as 1.
    pub fn split(self, chunk: u64, keep_contents: bool) -> Vec<Self> {
        let chunk = chunk.max(1);
        let mut out = Vec::new();
        let mut current: Vec<Vec<u8>> = Vec::new();
        let mut room = chunk;
        for mut segment in self.segments {
            let len = segment.len() as u64;
            if len <= room {
                room -= len;
                current.push(segment);
            } else {
                // Cut the segment at `room`, `room + chunk`, ...: the pieces after the first
                // are taken off its end, each copied once (or allocated zeroed, for a read),
                // so the whole split is linear in the bytes moved.
                let mut tails = Vec::new();
                while segment.len() as u64 > room {
                    let beyond = segment.len() as u64 - room;
                    let cut = (room + (beyond - 1) / chunk * chunk) as usize;
                    let tail = if keep_contents {
                        segment.split_off(cut)
                    } else {
                        let tail = vec![0; segment.len() - cut];
                        segment.truncate(cut);
                        tail
                    };
                    tails.push(tail);
                }
                if !keep_contents {
                    // Give back what the tails now hold elsewhere.
                    segment.shrink_to_fit();
                }
                current.push(segment);
                out.push(Self::from_segments(std::mem::take(&mut current)));
                // Taken off the end, so last first: the last piece may be short and starts
                // the next part; the others are whole parts.
                let last = if tails.is_empty() {
                    Vec::new()
                } else {
                    tails.remove(0)
                };
                while let Some(piece) = tails.pop() {
                    out.push(Self::from_segments(vec![piece]));
                }
                room = chunk - last.len() as u64;
                current.push(last);
            }
            if room == 0 {
                out.push(Self::from_segments(std::mem::take(&mut current)));
                room = chunk;
            }
        }
        let tail_len: usize = current.iter().map(Vec::len).sum();
        match out.last_mut() {
            // Trailing empty segments stay with the last part.
            Some(last) if tail_len == 0 => {
                for segment in current {
                    let end = last.len();
                    last.segments.push(segment);
                    last.ends.push(end);
                }
            }
            _ if current.is_empty() => {}
            _ => out.push(Self::from_segments(current)),
        }
        out
    }

    /// Joins buffers end to end (their segments, without copying): the inverse of
    /// [`split`](Self::split).
    pub fn join(parts: impl IntoIterator<Item = Self>) -> Self {
        let segments: Vec<Vec<u8>> = parts
            .into_iter()
            .flat_map(|p| p.segments.into_iter())
            .collect();
        Self::from_segments(segments)
    }

    /// Takes the segments back.
    pub fn into_segments(self) -> Vec<Vec<u8>> {
        self.segments.into_vec()
    }

    /// The bytes as one vector; no copy when there is a single segment.
    pub fn into_vec(self) -> Vec<u8> {
        if self.segments.len() == 1 {
            return self.segments.into_iter().next().unwrap_or_default();
        }
        self.to_vec()
    }

    /// A copy of all bytes, in order.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() as usize);
        for segment in &self.segments {
            out.extend_from_slice(segment);
        }
        out
    }

    /// Checks that `offset..offset + len` lies within the buffer.
    pub fn check_range(&self, offset: u64, len: u64) -> Result<(), OutOfRange> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(OutOfRange {
                offset,
                len,
                buffer_len: self.len(),
            }),
        }
    }

    /// The longest contiguous mutable slice starting at command offset `offset`, at most `max`
    /// bytes long. Empty when `offset` is at or past the end.
    #[inline]
    pub fn contiguous_mut(&mut self, offset: u64, max: usize) -> &mut [u8] {
        let Some((index, start)) = self.locate(offset) else {
            return &mut [];
        };
        let segment = &mut self.segments[index][start..];
        let take = segment.len().min(max);
        &mut segment[..take]
    }

    /// The longest contiguous slice starting at command offset `offset`, at most `max` bytes.
    pub fn contiguous(&self, offset: u64, max: usize) -> &[u8] {
        let Some((index, start)) = self.locate(offset) else {
            return &[];
        };
        let segment = &self.segments[index][start..];
        &segment[..segment.len().min(max)]
    }

    /// Copies `src` to command offset `offset`.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`] if the write would pass the end; nothing is written then.
    pub fn write_at(&mut self, offset: u64, src: &[u8]) -> Result<(), OutOfRange> {
        self.write_with(offset, src, |dst, src| dst.copy_from_slice(src))
    }

    /// Writes `src` to command offset `offset` through `copy`, called once per contiguous piece
    /// with a destination and a source of equal length.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`] if the write would pass the end; `copy` is not called then.
    pub fn write_with(
        &mut self,
        offset: u64,
        mut src: &[u8],
        mut copy: impl FnMut(&mut [u8], &[u8]),
    ) -> Result<(), OutOfRange> {
        self.check_range(offset, src.len() as u64)?;
        let mut at = offset;
        while !src.is_empty() {
            let dst = self.contiguous_mut(at, src.len());
            // check_range guarantees the range is inside, so each step makes progress.
            let n = dst.len();
            if n == 0 {
                break;
            }
            let (head, rest) = src.split_at(n);
            copy(dst, head);
            src = rest;
            at += n as u64;
        }
        Ok(())
    }

    /// Calls `visit` on each contiguous piece of `offset..offset + len`, in order.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`] if the range passes the end; `visit` is not called then.
    pub fn read_with(
        &self,
        offset: u64,
        len: u64,
        mut visit: impl FnMut(&[u8]),
    ) -> Result<(), OutOfRange> {
        self.check_range(offset, len)?;
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let piece = self.contiguous(at, usize::try_from(end - at).unwrap_or(usize::MAX));
            if piece.is_empty() {
                break;
            }
            visit(piece);
            at += piece.len() as u64;
        }
        Ok(())
    }

    /// The contiguous pieces of `offset..offset + len`, in order (one for a one-segment
    /// buffer): what a transmit borrows to send a range of write data without copying.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`] if the range passes the end.
    pub fn slices(&self, offset: u64, len: u64) -> Result<Slices<'_>, OutOfRange> {
        self.check_range(offset, len)?;
        let mut pieces = SmallVec::new();
        let (mut at, end) = (offset, offset + len);
        while at < end {
            let piece = self.contiguous(at, usize::try_from(end - at).unwrap_or(usize::MAX));
            if piece.is_empty() {
                break;
            }
            at += piece.len() as u64;
            pieces.push(piece);
        }
        Ok(Slices(pieces))
    }

    /// Segment index and offset within it of command offset `offset`, skipping empty segments.
    #[inline]
    fn locate(&self, offset: u64) -> Option<(usize, usize)> {
        if let [end] = self.ends[..] {
            // One segment, the common case: no search.
            return (offset < end).then_some((0, offset as usize));
        }
        // First segment whose end lies beyond `offset`.
        let index = self.ends.partition_point(|&end| end <= offset);
        let end = *self.ends.get(index)?;
        let start = end - self.segments[index].len() as u64;
        Some((index, (offset - start) as usize))
    }
}

impl From<Vec<u8>> for SgBuffer {
    fn from(segment: Vec<u8>) -> Self {
        Self::from_vec(segment)
    }
}

impl fmt::Debug for SgBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SgBuffer")
            .field("len", &self.len())
            .field("segments", &self.segments.len())
            .finish()
    }
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes at offset {} pass the end of a {}-byte buffer",
            self.len, self.offset, self.buffer_len
        )
    }
}

impl std::error::Error for OutOfRange {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_cuts_a_long_segment_in_order_and_linear() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for (segs, chunk) in [
            (vec![100_000], 4096),
            (vec![3, 99_997], 4096),
            (vec![50_000, 0, 50_000], 1000),
            (vec![99_999, 1], 100_000),
            (vec![100_000], 7),
        ] {
            let mut at = 0;
            let segments: Vec<Vec<u8>> = segs
                .iter()
                .map(|&n| {
                    at += n;
                    data[at - n..at].to_vec()
                })
                .collect();
            let parts = SgBuffer::from_segments(segments.clone()).split(chunk, true);
            let n = parts.len();
            for (i, p) in parts.iter().enumerate() {
                if i + 1 < n {
                    assert_eq!(p.len(), chunk, "{segs:?} / {chunk}: part {i}");
                }
            }
            assert_eq!(SgBuffer::join(parts).to_vec(), data, "{segs:?} / {chunk}");
            let reads = SgBuffer::from_segments(segments).split(chunk, false);
            assert_eq!(reads.iter().map(SgBuffer::len).sum::<u64>(), 100_000);
        }
    }

    #[test]
    fn split_moves_whole_segments_and_cuts_straddling_ones() {
        let data: Vec<u8> = (0..=255).cycle().take(10_000).collect();
        for keep in [true, false] {
            let buf = SgBuffer::from_segments(vec![
                data[..4096].to_vec(),
                data[4096..9000].to_vec(),
                vec![],
                data[9000..].to_vec(),
            ]);
            let parts = buf.split(4096, keep);
            let lens: Vec<u64> = parts.iter().map(SgBuffer::len).collect();
            assert_eq!(lens, vec![4096, 4096, 1808]);
            let joined = SgBuffer::join(parts);
            assert_eq!(joined.len(), 10_000);
            if keep {
                assert_eq!(joined.to_vec(), data);
            }
        }
        // Segments already at the cut are moved, not copied: the first part is the very
        // allocation given.
        let first = vec![1u8; 8];
        let ptr = first.as_ptr();
        let parts = SgBuffer::from_segments(vec![first, vec![2; 8]]).split(8, true);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].segments().next().map(<[u8]>::as_ptr), Some(ptr));
        assert_eq!(SgBuffer::zeroed(5).split(0, true).len(), 5, "chunk 0 is 1");
        assert!(SgBuffer::default().split(4, true).is_empty());
    }

    #[test]
    fn write_across_segments_and_empty_ones() {
        let mut buf = SgBuffer::from_segments(vec![vec![0; 2], vec![], vec![0; 3], vec![0; 1]]);
        assert_eq!(buf.len(), 6);
        assert_eq!(buf.segment_count(), 4);
        buf.write_at(1, b"wxyz").unwrap();
        assert_eq!(buf.to_vec(), b"\0wxyz\0");
        buf.write_at(5, b"!").unwrap();
        assert_eq!(buf.to_vec(), b"\0wxyz!");
        let mut seen = Vec::new();
        buf.read_with(1, 5, |p| seen.push(p.to_vec())).unwrap();
        assert_eq!(seen, vec![b"w".to_vec(), b"xyz".to_vec(), b"!".to_vec()]);
    }

    #[test]
    fn out_of_range_writes_change_nothing() {
        let mut buf = SgBuffer::from_segments(vec![vec![7; 4], vec![7; 4]]);
        let err = buf.write_at(6, b"abc").unwrap_err();
        assert_eq!(
            err,
            OutOfRange {
                offset: 6,
                len: 3,
                buffer_len: 8
            }
        );
        assert_eq!(buf.write_at(u64::MAX, b"a").unwrap_err().buffer_len, 8);
        assert_eq!(buf.to_vec(), vec![7; 8]);
        assert!(buf.read_with(8, 1, |_| ()).is_err());
        assert!(buf.contiguous_mut(8, 10).is_empty());
        buf.write_at(8, b"").unwrap();
    }

    #[test]
    fn into_vec_does_not_copy_one_segment() {
        let v = vec![1u8, 2, 3];
        let ptr = v.as_ptr();
        let buf = SgBuffer::from(v);
        let back = buf.into_vec();
        assert_eq!(back.as_ptr(), ptr);
    }
}
