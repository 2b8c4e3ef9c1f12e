// SPDX-License-Identifier: GPL-2.0
//! Sample statistics for test and benchmark reports.

/// A sample value with a total order (integers, and floats by `total_cmp`).
pub trait Sample: Copy {
    /// The zero reported for an empty sample set.
    const ZERO: Self;
    /// Total order.
    fn order(&self, other: &Self) -> std::cmp::Ordering;
}

impl Sample for u64 {
    const ZERO: Self = 0;
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        self.cmp(other)
    }
}

impl Sample for f64 {
    const ZERO: Self = 0.0;
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        self.total_cmp(other)
    }
}

/// The `p` quantile (0.0..=1.0, nearest rank) of `v`, sorted in place; zero for an empty slice.
pub fn percentile<T: Sample>(v: &mut [T], p: f64) -> T {
    if v.is_empty() {
        return T::ZERO;
    }
    v.sort_unstable_by(T::order);
    let rank = ((v.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
    v[rank.min(v.len() - 1)]
}

/// Median of `v` (the upper one of an even count), sorted in place; zero for an empty slice.
pub fn median<T: Sample>(v: &mut [T]) -> T {
    if v.is_empty() {
        return T::ZERO;
    }
    v.sort_unstable_by(T::order);
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median::<u64>(&mut []), 0);
        assert_eq!(median(&mut [5u64, 1, 3]), 3);
        assert_eq!(median(&mut [4u64, 1, 3, 2]), 3);
        assert_eq!(median(&mut [2.5f64, f64::NAN, 1.0]), 2.5);
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 0.0), 1.0);
        assert_eq!(percentile(&mut v, 0.99), 99.0);
        assert_eq!(percentile(&mut v, 1.0), 100.0);
        assert_eq!(percentile(&mut v, 7.0), 100.0);
        assert_eq!(percentile::<u64>(&mut [], 0.5), 0);
    }
}
