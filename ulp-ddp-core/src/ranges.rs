//! A small set of disjoint byte ranges: which parts of a command's buffer received data.

use smallvec::SmallVec;

/// Disjoint, non-adjacent half-open ranges, sorted. Data normally arrives in order, so the set
/// stays at one range and every operation is O(1); hostile or reordered data costs O(n).
#[derive(Clone, Debug, Default)]
pub(crate) struct RangeSet {
    ranges: SmallVec<[(u64, u64); 2]>,
}

impl RangeSet {
    /// Inserts `start..end` unless it overlaps a range already present; returns whether it did.
    pub(crate) fn insert_disjoint(&mut self, start: u64, end: u64) -> bool {
        if start >= end {
            return true;
        }
        // First range that ends after `start`.
        let i = self.ranges.partition_point(|&(_, e)| e <= start);
        if let Some(&(s, _)) = self.ranges.get(i)
            && s < end
        {
            return false;
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
            (false, false) => self.ranges.insert(i, (start, end)),
        }
        true
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
        assert!(set.insert_disjoint(10, 20));
        assert!(set.insert_disjoint(0, 10));
        assert!(set.insert_disjoint(30, 40));
        assert!(!set.insert_disjoint(19, 21));
        assert!(!set.insert_disjoint(35, 36));
        assert!(!set.insert_disjoint(0, 100));
        assert!(set.insert_disjoint(20, 30));
        assert_eq!(set.ranges.as_slice(), &[(0, 40)]);
        assert_eq!(set.covered(), 40);
        assert!(set.insert_disjoint(40, 40));
    }
}
