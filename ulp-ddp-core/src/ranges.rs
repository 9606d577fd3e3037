//! A small set of disjoint byte ranges: which parts of a command's buffer received data.

use smallvec::SmallVec;

/// Most separate ranges one command's data may form. Data normally arrives in order (one
/// range); a peer that scatters more pieces than this is refused, which bounds the cost of
/// every insertion (hostile input cannot make it quadratic).
pub(crate) const MAX_RANGES: usize = 64;

/// Disjoint, non-adjacent half-open ranges, sorted. Data normally arrives in order, so the set
/// stays at one range and every operation is O(1); otherwise O([`MAX_RANGES`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct RangeSet {
    ranges: SmallVec<[(u64, u64); 2]>,
}

/// Why [`RangeSet::insert_disjoint`] refused a range.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Refused {
    /// It overlaps a range already present.
    Overlap,
    /// It would be one range too many.
    TooMany,
}

impl RangeSet {
    /// Inserts `start..end` unless it overlaps a range already present or would make more than
    /// [`MAX_RANGES`] separate ranges.
    #[inline]
    pub(crate) fn insert_disjoint(&mut self, start: u64, end: u64) -> Result<(), Refused> {
        if start >= end {
            return Ok(());
        }
        // In order: the data continues the last range (the common case, O(1)).
        if let Some(last) = self.ranges.last_mut()
            && last.1 == start
        {
            last.1 = end;
            return Ok(());
        }
        // First range that ends after `start`.
        let i = self.ranges.partition_point(|&(_, e)| e <= start);
        if let Some(&(s, _)) = self.ranges.get(i)
            && s < end
        {
            return Err(Refused::Overlap);
        }
        let merge_left = i > 0 && self.ranges[i - 1].1 == start;
        let merge_right = self.ranges.get(i).is_some_and(|&(s, _)| s == end);
        match (merge_left, merge_right) {
            (true, true) => {
                self.ranges[i - 1].1 = self.ranges[i].1;
                self.ranges.remove(i);
            }
            (true, false) => self.ranges[i - 1].1 = end,
            (false, true) => self.ranges[i].0 = start,
            (false, false) if self.ranges.len() >= MAX_RANGES => return Err(Refused::TooMany),
            (false, false) => self.ranges.insert(i, (start, end)),
        }
        Ok(())
    }

    /// Whether the set is exactly `0..len`: every byte of a `len`-byte buffer received.
    pub(crate) fn is_whole(&self, len: u64) -> bool {
        self.ranges.as_slice() == [(0, len)]
    }

    /// Total bytes covered.
    pub(crate) fn covered(&self) -> u64 {
        self.ranges.iter().map(|&(s, e)| e - s).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_rejects_overlap() {
        let mut set = RangeSet::default();
        assert_eq!(set.insert_disjoint(10, 20), Ok(()));
        assert_eq!(set.insert_disjoint(0, 10), Ok(()));
        assert_eq!(set.insert_disjoint(30, 40), Ok(()));
        assert_eq!(set.insert_disjoint(19, 21), Err(Refused::Overlap));
        assert_eq!(set.insert_disjoint(35, 36), Err(Refused::Overlap));
        assert_eq!(set.insert_disjoint(0, 100), Err(Refused::Overlap));
        assert_eq!(set.insert_disjoint(20, 30), Ok(()));
        assert_eq!(set.ranges.as_slice(), &[(0, 40)]);
        assert_eq!(set.covered(), 40);
        assert_eq!(set.insert_disjoint(40, 40), Ok(()));
    }

    #[test]
    fn scattered_data_is_bounded() {
        let mut set = RangeSet::default();
        // Descending, non-adjacent one-byte ranges: the hostile pattern.
        for k in 0..MAX_RANGES as u64 {
            assert_eq!(set.insert_disjoint(1000 - 2 * k, 1001 - 2 * k), Ok(()));
        }
        assert_eq!(set.insert_disjoint(10, 11), Err(Refused::TooMany));
        // Filling a gap still works: it merges, adding no range.
        assert_eq!(set.insert_disjoint(999, 1000), Ok(()));
        assert_eq!(set.ranges.len(), MAX_RANGES - 1);
    }
}
