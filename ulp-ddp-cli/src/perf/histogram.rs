//! Per-command latency in a log-linear histogram (HdrHistogram-like, 5 sub-bucket bits).

/// A log-linear latency histogram in nanoseconds: 32 linear sub-buckets per power of two
/// (relative error below 3 %), no allocation per sample.
#[derive(Clone, Debug)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
    sum: u128,
}

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;

/// The latency percentiles perf reports (fio's and libiscsi's usual set): name, percent.
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("p99.99", 99.99),
];

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; (64 * SUB) as usize],
            count: 0,
            max: 0,
            sum: 0,
        }
    }
}

impl Histogram {
    /// The largest value recorded.
    pub fn max(&self) -> u64 {
        self.max
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // >= SUB_BITS
        let shift = exp - SUB_BITS;
        let sub = (v >> shift) - SUB; // 0..SUB
        ((u64::from(shift) + 1) * SUB + sub) as usize
    }

    /// The largest value of bucket `i` (what a percentile reports).
    fn upper(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let shift = i / SUB - 1;
        let sub = i % SUB;
        ((SUB + sub + 1) << shift) - 1
    }

    /// Records one sample.
    pub fn record(&mut self, nanos: u64) {
        self.buckets[Self::index(nanos)] += 1;
        self.count += 1;
        self.max = self.max.max(nanos);
        self.sum += u128::from(nanos);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value below which a fraction `q` (0..=1) of the samples lie (bucket upper bound,
    /// capped at the maximum seen).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::upper(i).min(self.max);
            }
        }
        self.max
    }

    /// The percentiles the reports show, as (name, nanoseconds): [`PERCENTILES`] in order.
    pub fn percentiles(&self) -> [(&'static str, u64); 5] {
        PERCENTILES.map(|(name, p)| (name, self.quantile(p / 100.0)))
    }

    /// The buckets that hold samples, in increasing order: (lowest, highest value in
    /// nanoseconds, samples).
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(i, &n)| {
                (
                    if i == 0 { 0 } else { Self::upper(i - 1) + 1 },
                    Self::upper(i),
                    n,
                )
            })
    }

    /// The mean.
    pub fn mean(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            (self.sum / u128::from(self.count)) as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_within_bucket_error() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [(0.5, 5_000_000.0), (0.99, 9_900_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.04, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.quantile(1.0), 10_000_000);
        let p = h.percentiles();
        assert_eq!(p.map(|(n, _)| n), ["p50", "p90", "p99", "p99.9", "p99.99"]);
        assert!(p.windows(2).all(|w| w[0].1 <= w[1].1), "{p:?}");
        assert!((p[1].1 as f64 - 9_000_000.0).abs() / 9e6 < 0.04, "{p:?}");
        assert_eq!(p[4].1, 10_000_000, "the top 1 of 10,000 samples");
        for v in [0u64, 1, 31, 32, 33, 1 << 40, u64::MAX / 2] {
            let i = Histogram::index(v);
            assert!(Histogram::upper(i) >= v, "{v}");
        }
    }

    #[test]
    fn buckets_cover_every_sample_once() {
        let mut h = Histogram::default();
        let values = [0u64, 5, 31, 32, 33, 100, 1000, 1001, 1_000_000, 1_000_000];
        for v in values {
            h.record(v);
        }
        let b: Vec<_> = h.buckets().collect();
        assert_eq!(b.iter().map(|&(.., n)| n).sum::<u64>(), values.len() as u64);
        assert!(
            b.windows(2).all(|w| w[0].1 < w[1].0),
            "increasing, disjoint: {b:?}"
        );
        for v in values {
            let holding: Vec<_> = b
                .iter()
                .filter(|&&(lo, hi, _)| lo <= v && v <= hi)
                .collect();
            assert_eq!(holding.len(), 1, "{v} in {b:?}");
        }
        assert_eq!(
            b.last(),
            Some(&(
                Histogram::upper(Histogram::index(1_000_000) - 1) + 1,
                Histogram::upper(Histogram::index(1_000_000)),
                2
            ))
        );
    }
}
